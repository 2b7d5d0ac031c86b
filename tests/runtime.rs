//! The built-in OCI runtime (`runtime = "peapod"`: the peapod binary re-executed as
//! `peapod-runtime`) end to end, as root, whatever `PEAPOD_TEST_RUNTIME` says: a container's
//! run, exec, stop and rm; a two-container tty pod reaching Running; a foreground tty; the
//! seccomp profile in the init and in exec'd processes, compiled once and loaded from the
//! state root's cache. The whole `containers` and `pods`
//! suites run against it with `PEAPOD_TEST_RUNTIME=peapod`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{example, manifest, pod_json, wait_pod, Peapod};

/// A harness root whose config selects the built-in runtime.
fn builtin() -> Peapod {
    let p = Peapod::new();
    let config = p.root.join("etc/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let rest: String = text
        .lines()
        .filter(|l| !l.starts_with("runtime ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, format!("runtime = \"peapod\"\n{rest}")).unwrap();
    p
}

/// The container ids the runtime holds state for.
fn runtime_states(p: &Peapod) -> Vec<String> {
    std::fs::read_dir(p.root.join("run/runtime"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
        .to_string()
}

#[test]
fn container_run_exec_stop_and_rm() {
    let p = builtin();
    let id = p
        .ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    assert!(p.ps_line("web").unwrap().contains("Up"));

    // The record names a link, in the runtime's state root, to this very peapod binary.
    let runtime = p.inspect("web")["HostConfig"]["Runtime"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        Path::new(&runtime).file_name().unwrap(),
        "peapod-runtime",
        "{runtime}"
    );
    assert_eq!(
        std::fs::canonicalize(&runtime).unwrap(),
        std::fs::canonicalize(env!("CARGO_BIN_EXE_peapod")).unwrap()
    );
    assert_eq!(runtime_states(&p), std::slice::from_ref(&id));
    assert!(
        !p.cgroup_dirs(&id).is_empty(),
        "no cgroup for the container"
    );

    // exec: exit status, --env and --workdir, the container's namespaces.
    let o = p.run(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(
        p.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "web",
            "sh",
            "-c",
            "echo $X $(pwd)"
        ])
        .trim(),
        "1 /tmp"
    );
    assert_eq!(
        p.ok(&["exec", "web", "cat", "/proc/1/cmdline"]),
        "sleep\u{0}1000\u{0}"
    );
    let (code, err) = p.fails(&["exec", "web", "no-such-command"]);
    assert_ne!(code, 0);
    assert!(err.contains("executable file not found"), "{err}");

    // Both the init and an exec'd process are confined: seccomp filter, no_new_privs and
    // Docker's 14 default capabilities.
    let status = p.ok(&["exec", "web", "cat", "/proc/1/status", "/proc/self/status"]);
    let (init, exec) = status.split_at(status.rfind("Name:").unwrap());
    for s in [init, exec] {
        assert_eq!(field(s, "Seccomp:"), "2", "{s}");
        assert_eq!(field(s, "NoNewPrivs:"), "1", "{s}");
        assert_eq!(field(s, "CapEff:"), "00000000a80425fb", "{s}");
    }

    // sleep as PID 1 ignores SIGTERM: stop falls back to SIGKILL.
    p.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(p.inspect("web")["State"]["ExitCode"], 137);
    p.ok(&["rm", "web"]);
    assert!(runtime_states(&p).is_empty(), "{:?}", runtime_states(&p));
    assert!(p.cgroup_dirs(&id).is_empty(), "{:?}", p.cgroup_dirs(&id));
}

#[test]
fn tty_container_in_the_foreground() {
    let p = builtin();
    let o = p.run(&["run", "-t", "--rm", "busybox", "sh", "-c", "tty; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/0"), "{out}");

    // exec -t relays a fresh pty of the container even when peapod's stdin is no terminal.
    p.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    let out = p.ok(&["exec", "-t", "box", "sh", "-c", "tty; echo done"]);
    assert!(out.contains("/dev/pts/") && out.contains("done"), "{out:?}");
    p.ok(&["rm", "-f", "box"]);
    assert!(runtime_states(&p).is_empty());
}

#[test]
fn two_container_tty_pod_runs_and_is_deleted() {
    let p = builtin();
    let file = manifest(&p, "two.yaml", &example("two-containers.yaml"));
    p.ok(&["apply", "-f", &file, "--wait"]);
    wait_pod(&p, "two-containers", "2/2", "Running");
    assert_eq!(runtime_states(&p).len(), 2, "{:?}", runtime_states(&p));
    // Both containers have their tty (the pod monitor holds the pty masters) and share the
    // pod's network.
    for c in ["my-test-container1", "my-test-container2"] {
        let out = p.ok(&[
            "exec",
            "two-containers",
            "-c",
            c,
            "--",
            "sh",
            "-c",
            "readlink /proc/1/fd/0; hostname",
        ]);
        assert!(out.starts_with("/dev/pts/0\n"), "{c}: {out:?}");
        assert_eq!(out.lines().nth(1), Some("two-containers"), "{c}: {out:?}");
    }
    let ip = pod_json(&p, "two-containers")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with(&p.subnet_prefix), "{ip}");
    p.ok(&["delete", "pod", "two-containers", "--grace-period", "0"]);
    common::eventually(Duration::from_secs(10), "runtime state removed", || {
        runtime_states(&p).is_empty().then_some(())
    });
}

/// The compiled seccomp programs in the runtime's cache.
fn cached_programs(p: &Peapod) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(p.root.join("run/runtime/.seccomp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "bpf"))
                .collect()
        })
        .unwrap_or_default()
}

/// `unshare -U` needs no capability (an unprivileged user namespace), so only seccomp
/// (Docker's profile allows `unshare` with CAP_SYS_ADMIN only) makes it fail.
fn unshare_user_ns(p: &Peapod, container: &str) -> (bool, String) {
    let o = p.run(&["exec", container, "unshare", "-U", "true"]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn seccomp_filter_is_compiled_once_and_loaded_from_the_cache() {
    use std::os::unix::fs::MetadataExt;
    let p = builtin();
    p.ok(&["run", "-d", "--name", "first", "busybox", "sleep", "1000"]);
    let programs = cached_programs(&p);
    assert_eq!(programs.len(), 1, "{programs:?}");
    let program = programs[0].clone();
    let compiled = std::fs::read(&program).unwrap();
    assert!(
        !compiled.is_empty() && compiled.len().is_multiple_of(8),
        "{}",
        compiled.len()
    );
    let inode = std::fs::metadata(&program).unwrap().ino();
    // No staged bundle outlives its create.
    let staged = p.root.join("run/runtime/.bundles");
    assert!(
        std::fs::read_dir(&staged).map_or(true, |mut d| d.next().is_none()),
        "{staged:?} not empty"
    );

    let (ok, err) = unshare_user_ns(&p, "first");
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
    let o = p.run(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Operation not permitted"),
        "{err}"
    );

    // A second container with the same profile loads the same file: not compiled again.
    p.ok(&["run", "-d", "--name", "second", "busybox", "sleep", "1000"]);
    assert_eq!(cached_programs(&p), std::slice::from_ref(&program));
    assert_eq!(std::fs::metadata(&program).unwrap().ino(), inode);
    let status = p.ok(&["exec", "second", "cat", "/proc/1/status"]);
    assert_eq!(field(&status, "Seccomp:"), "2", "{status}");

    // What the file holds is what containers get: an allow-all program in its place (one
    // instruction, `BPF_RET|BPF_K SECCOMP_RET_ALLOW`) lets the user namespace through, in
    // an exec and in a new container's init.
    let allow_all: Vec<u8> = [
        0x06u16.to_ne_bytes().as_slice(),
        &[0, 0],
        &0x7fff_0000u32.to_ne_bytes(),
    ]
    .concat();
    let tmp = program.with_extension("tmp");
    std::fs::write(&tmp, &allow_all).unwrap();
    std::fs::rename(&tmp, &program).unwrap();
    let (ok, err) = unshare_user_ns(&p, "first");
    assert!(ok, "{err}");
    let o = p.run(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Without the file the profile is compiled again, to the same program.
    std::fs::remove_file(&program).unwrap();
    let (ok, err) = unshare_user_ns(&p, "first");
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
    assert_eq!(std::fs::read(&program).unwrap(), compiled);

    // A create that fails (in the container's init) leaves no cgroup, state or staged
    // bundle behind, although `create` joined the named hierarchies before forking.
    let (code, err) = p.fails(&["run", "--name", "bad", "busybox", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    let bad = p.inspect("bad")["Id"].as_str().unwrap().to_owned();
    assert!(p.cgroup_dirs(&bad).is_empty(), "{:?}", p.cgroup_dirs(&bad));
    assert!(!runtime_states(&p).contains(&bad));
    assert!(
        std::fs::read_dir(&staged).map_or(true, |mut d| d.next().is_none()),
        "{staged:?} not empty"
    );

    p.ok(&["rm", "-f", "first", "second", "bad"]);
    assert!(runtime_states(&p).is_empty(), "{:?}", runtime_states(&p));
}
