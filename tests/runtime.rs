//! The built-in OCI runtime (`runtime = "peapod"`: the peapod binary re-executed as
//! `peapod-runtime`) end to end, as root, whatever `PEAPOD_TEST_RUNTIME` says: a container's
//! run, exec, stop and rm; a two-container tty pod reaching Running; a foreground tty; the
//! seccomp profile in the init and in exec'd processes, compiled once and loaded from the
//! state root's cache (also in a process exec'd without no_new_privs); `update` of a
//! container's limits; a shared pid namespace's cgroup mount; mounts' propagation
//! options; and `runc_stays_selectable` keeps runc, which `runtime = "runc"` selects, proved
//! whatever the default.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{example, manifest, pod_json, wait_pod, Peapod};

/// A harness root whose config selects the built-in runtime.
fn builtin() -> Peapod {
    with_runtime("peapod")
}

/// A harness root whose config selects `runtime`, whatever `PEAPOD_TEST_RUNTIME` says.
fn with_runtime(runtime: &str) -> Peapod {
    let p = Peapod::new();
    let config = p.root.join("etc/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let rest: String = text
        .lines()
        .filter(|l| !l.starts_with("runtime ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, format!("runtime = {runtime:?}\n{rest}")).unwrap();
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

/// Runs the built-in runtime's `update --resources -` on a container, as peapod's driver
/// (`Runtime::update`, CRI UpdateContainerResources) does.
fn runtime_update(p: &Peapod, id: &str, resources: &str) -> std::process::Output {
    use std::io::Write;
    let state = p.root.join("run/runtime");
    let mut child = std::process::Command::new(state.join(".bin/peapod-runtime"))
        .arg("--root")
        .arg(&state)
        .args(["update", "--resources", "-", id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(resources.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The value of a container's cgroup file: `v1` (`controller/file`) on a v1 host, `v2`
/// (`file`) on a v2 one.
fn cgroup_value(p: &Peapod, id: &str, v1: &str, v2: &str) -> String {
    let dirs = p.cgroup_dirs(id);
    let path = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        dirs[0].join(v2)
    } else {
        let (controller, file) = v1.split_once('/').unwrap();
        dirs.iter()
            .find(|d| d.starts_with(Path::new("/sys/fs/cgroup").join(controller)))
            .unwrap_or_else(|| panic!("no {controller} cgroup in {dirs:?}"))
            .join(file)
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn update_sets_memory_cpu_and_pids_limits_of_a_running_container() {
    let p = builtin();
    let id = p
        .ok(&["run", "-d", "--name", "lim", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();

    let o = runtime_update(
        &p,
        &id,
        r#"{"memory":{"limit":67108864},"cpu":{"quota":20000,"period":100000},"pids":{"limit":4}}"#,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let memory = || cgroup_value(&p, &id, "memory/memory.limit_in_bytes", "memory.max");
    assert_eq!(memory(), "67108864");
    if v2 {
        assert_eq!(cgroup_value(&p, &id, "", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(cgroup_value(&p, &id, "cpu/cpu.cfs_quota_us", ""), "20000");
        assert_eq!(cgroup_value(&p, &id, "cpu/cpu.cfs_period_us", ""), "100000");
    }
    assert_eq!(cgroup_value(&p, &id, "pids/pids.max", "pids.max"), "4");
    // The limit holds for the container's processes: a fifth cannot be forked.
    let o = p.run(&[
        "exec",
        "lim",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do sleep 5 & done; wait",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("can't fork"), "{err}");

    // A later update changes what it names and keeps the rest, as runc's does.
    let o = runtime_update(&p, &id, r#"{"pids":{"limit":100}}"#);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cgroup_value(&p, &id, "pids/pids.max", "pids.max"), "100");
    assert_eq!(memory(), "67108864");
    p.ok(&[
        "exec",
        "lim",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do true & done; wait",
    ]);

    // Bad input and unknown containers are refused, naming what is wrong; nothing changes.
    let o = runtime_update(&p, &id, r#"{"memory":5}"#);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("invalid --resources"),
        "{err}"
    );
    assert_eq!(memory(), "67108864");
    let o = runtime_update(&p, "no-such-container", "{}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("container no-such-container does not exist"),
        "{err}"
    );

    p.ok(&["rm", "-f", "lim"]);
    assert!(runtime_states(&p).is_empty(), "{:?}", runtime_states(&p));
}

/// A container joining the pod's shared pid namespace gets its own cgroup mounted at
/// /sys/fs/cgroup, whatever its pid there (libcontainer alone fails when no host process
/// has that pid: the init container below pushes the app's pid past the host's low ones).
#[test]
fn a_container_in_a_shared_pid_namespace_sees_its_own_cgroup() {
    let p = builtin();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: shared-cg
spec:
  shareProcessNamespace: true
  initContainers:
  - name: burn
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while [ $i -lt 150 ]; do /bin/true; i=$((i+1)); done"]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    resources:
      limits: {memory: 48Mi}
"#;
    p.ok(&["apply", "-f", &manifest(&p, "shared-cg.yaml", pod)]);
    wait_pod(&p, "shared-cg", "1/1", "Running");
    let pid = p.ok(&[
        "exec",
        "shared-cg",
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        "echo $$",
    ]);
    assert!(pid.trim().parse::<u32>().unwrap() > 150, "{pid}");
    let v1 = !Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let file = if v1 {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    } else {
        "/sys/fs/cgroup/memory.max"
    };
    let limit = p.ok(&["exec", "shared-cg", "-c", "app", "--", "cat", file]);
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    if v1 {
        // Read-only, as the spec's cgroup mount asks.
        let (_, err) = p.fails(&[
            "exec",
            "shared-cg",
            "-c",
            "app",
            "--",
            "mkdir",
            "/sys/fs/cgroup/memory/x",
        ]);
        assert!(err.contains("Read-only file system"), "{err}");
    }
    p.ok(&["delete", "pod", "shared-cg", "--grace-period", "0"]);
    common::eventually(Duration::from_secs(10), "runtime state removed", || {
        runtime_states(&p).is_empty().then_some(())
    });
}

/// `runtime = "runc"` still selects runc: a container's run, exec, stop and rm, and a
/// two-container pod's start and delete, the record naming runc's binary.
#[test]
fn runc_stays_selectable() {
    let p = with_runtime("runc");
    let id = p
        .ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let runtime = p.inspect("web")["HostConfig"]["Runtime"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        Path::new(&runtime).file_name().unwrap(),
        "runc",
        "{runtime}"
    );
    assert_eq!(runtime_states(&p), std::slice::from_ref(&id));
    assert_eq!(
        p.ok(&["exec", "web", "sh", "-c", "echo $((6 * 7))"]).trim(),
        "42"
    );
    p.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(p.inspect("web")["State"]["ExitCode"], 137);
    p.ok(&["rm", "web"]);
    assert!(p.cgroup_dirs(&id).is_empty(), "{:?}", p.cgroup_dirs(&id));

    let file = manifest(&p, "two.yaml", &example("two-containers.yaml"));
    p.ok(&["apply", "-f", &file, "--wait"]);
    wait_pod(&p, "two-containers", "2/2", "Running");
    let out = p.ok(&[
        "exec",
        "two-containers",
        "-c",
        "my-test-container2",
        "--",
        "hostname",
    ]);
    assert_eq!(out.trim(), "two-containers");
    p.ok(&["delete", "pod", "two-containers", "--grace-period", "0"]);
    common::eventually(Duration::from_secs(10), "runtime state removed", || {
        runtime_states(&p).is_empty().then_some(())
    });
}

/// Force-deletes a container of the built-in runtime's state root on drop.
struct RuntimeContainer<'a> {
    p: &'a Peapod,
    id: &'a str,
}

impl RuntimeContainer<'_> {
    fn runtime(&self, args: &[&str]) -> std::process::Output {
        let state = self.p.root.join("run/runtime");
        std::process::Command::new(state.join(".bin/peapod-runtime"))
            .arg("--root")
            .arg(&state)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for RuntimeContainer<'_> {
    fn drop(&mut self) {
        let _ = self.runtime(&["delete", "--force", self.id]);
    }
}

/// Runs, with the built-in runtime directly, a copy of a running peapod container's bundle
/// with its own id and cgroup, `script` as its process and `edit` applied to its spec; the
/// process's stdout. The probe is deleted (and checked gone) before this returns.
fn probe(p: &Peapod, script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    probe_with(p, script, edit, |_| {})
}

/// [`probe`], calling `running` with the probe (its id in `id`) once it is started.
fn probe_with(
    p: &Peapod,
    script: &str,
    edit: impl FnOnce(&mut serde_json::Value),
    running: impl FnOnce(&RuntimeContainer),
) -> String {
    let id = p
        .ok(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let state = p.root.join("run/runtime");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join(&id).join("state.json")).unwrap())
            .unwrap();
    let bundle = Path::new(saved["bundle"].as_str().unwrap()).to_owned();
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();

    let probe = format!("probe-{}-{}", std::process::id(), &id[..12]);
    let rootfs = bundle.join(spec["root"]["path"].as_str().unwrap());
    spec["root"]["path"] = rootfs.to_str().unwrap().into();
    let cgroups_path = spec["linux"]["cgroupsPath"].as_str().unwrap().to_owned();
    spec["linux"]["cgroupsPath"] = cgroups_path.replace(&id, &probe).into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    spec["process"]["terminal"] = false.into();
    edit(&mut spec);
    let probe_bundle = p.root.join(&probe);
    std::fs::create_dir_all(&probe_bundle).unwrap();
    std::fs::write(
        probe_bundle.join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();

    let c = RuntimeContainer { p, id: &probe };
    // Files, not pipes: the container's init keeps the stdio `create` is given.
    let (out_path, err_path) = (probe_bundle.join("out"), probe_bundle.join("err"));
    let created = std::process::Command::new(state.join(".bin/peapod-runtime"))
        .arg("--root")
        .arg(&state)
        .args(["create", "--bundle"])
        .arg(&probe_bundle)
        .arg(&probe)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    assert!(
        created.success(),
        "{}",
        std::fs::read_to_string(&err_path).unwrap()
    );
    let started = c.runtime(&["start", &probe]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    running(&c);
    common::eventually(Duration::from_secs(10), "the probe stopped", || {
        let o = c.runtime(&["state", &probe]);
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (doc["status"] == "stopped").then_some(())
    });
    let deleted = c.runtime(&["delete", &probe]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(
        p.cgroup_dirs(&probe).is_empty(),
        "{:?}",
        p.cgroup_dirs(&probe)
    );
    drop(c);
    p.ok(&["rm", "-f", &id]);
    assert!(runtime_states(p).is_empty(), "{:?}", runtime_states(p));
    std::fs::read_to_string(&out_path).unwrap()
}

/// A recursive `linux.rootfsPropagation` (`rslave`, which CRI writes for a
/// HOST_TO_CONTAINER mount) is taken, as runc takes it.
#[test]
fn a_recursive_rootfs_propagation_is_taken() {
    let p = builtin();
    let out = probe(&p, "echo probed", |spec| {
        spec["linux"]["rootfsPropagation"] = "rslave".into();
    });
    assert_eq!(out, "probed\n");
}

/// `process.noNewPrivileges: false` (which CRI writes) with a seccomp profile: the process
/// runs confined by the profile, without no_new_privs, as with runc; so does a process
/// exec'd into it, with the init's capabilities (CAP_SYS_ADMIN, which it holds only to
/// load the filter, dropped).
#[test]
fn a_seccomp_profile_without_no_new_privileges_is_loaded() {
    let p = builtin();
    let out = probe(
        &p,
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        |spec| {
            assert!(spec["linux"]["seccomp"].is_object(), "{spec}");
            spec["process"]["noNewPrivileges"] = false.into();
        },
    );
    assert_eq!(out, "NoNewPrivs:\t0\nSeccomp:\t2\n");

    let mut exec = None;
    let out = probe_with(
        &p,
        "grep -E '^(Seccomp|NoNewPrivs|Cap...):' /proc/self/status; sleep 1000",
        |spec| spec["process"]["noNewPrivileges"] = false.into(),
        |c| {
            let script = "grep -E '^(Seccomp|NoNewPrivs|Cap...):' /proc/self/status; \
                          unshare -U true";
            exec = Some(c.runtime(&["exec", c.id, "sh", "-c", script]));
            let killed = c.runtime(&["kill", c.id, "KILL"]);
            assert!(killed.status.success(), "{killed:?}");
        },
    );
    let exec = exec.unwrap();
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert!(
        !exec.status.success() && stderr.contains("Operation not permitted"),
        "unshare is refused by the profile: {exec:?}"
    );
    let status = String::from_utf8_lossy(&exec.stdout);
    assert_eq!(field(&status, "Seccomp:"), "2", "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), "0", "{status}");
    for cap in ["CapEff:", "CapPrm:", "CapBnd:", "CapInh:", "CapAmb:"] {
        assert_eq!(
            field(&status, cap),
            field(&out, cap),
            "{cap} {status} {out}"
        );
    }
    let sys_admin = 1u64 << 21;
    let eff = u64::from_str_radix(&field(&status, "CapEff:"), 16).unwrap();
    assert_eq!(eff & sys_admin, 0, "{status}");
}

/// A container's cgroup files are read-only, as the spec's `/sys/fs/cgroup` mount says
/// (`ro`; libcontainer 0.7 ignores it on a cgroup v1 host, runc does not).
#[test]
fn a_containers_cgroup_mount_is_read_only() {
    let p = builtin();
    p.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"]);
    let file = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    // Readable, and the container's own: no limit set.
    assert_eq!(p.ok(&["exec", "web", "cat", file]).trim(), "max");
    let (_, err) = p.fails(&["exec", "web", "sh", "-c", &format!("echo 64 > {file}")]);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(p.ok(&["exec", "web", "cat", file]).trim(), "max");
    p.ok(&["rm", "-f", "web"]);
}

/// A mount's propagation option is applied as runc applies it: under a shared host mount,
/// an `rprivate` bind does not see a mount the host makes later while an `rslave` one
/// does, and an `rbind` with `rprivate` still binds the mounts below its source.
#[test]
fn a_mounts_propagation_option_is_applied() {
    let p = builtin();
    let (src, sync) = (p.root.join("prop-src"), p.root.join("prop-sync"));
    let (pre, sub) = (src.join("pre"), src.join("sub"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&sync).unwrap();
    let sh = |script: &str| {
        let ok = std::process::Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap();
        assert!(ok.success(), "{script}");
    };
    sh(&format!(
        "mount -t tmpfs prop-src {0} && mount --make-shared {0} && mkdir {0}/pre {0}/sub \
         && mount -t tmpfs pre {0}/pre && echo below > {0}/pre/x",
        src.display()
    ));
    // The host mounts on `sub` once the container is up, then lets it look.
    let host = {
        let (sync, sub) = (sync.clone(), sub.clone());
        std::thread::spawn(move || {
            common::eventually(Duration::from_secs(30), "the probe is up", || {
                sync.join("ready").exists().then_some(())
            });
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "sub"])
                .arg(&sub)
                .status()
                .unwrap();
            assert!(ok.success());
            std::fs::write(sub.join("hello"), "from the host\n").unwrap();
            std::fs::write(sync.join("go"), "").unwrap();
        })
    };
    let bind = |source: &Path, destination: &str, propagation: &str| {
        serde_json::json!({
            "destination": destination, "type": "bind", "source": source,
            "options": ["rbind", propagation],
        })
    };
    let script = "touch /sync/ready; i=0; \
                  while [ ! -e /sync/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
                  echo slave:; cat /slave/sub/hello /slave/pre/x; \
                  echo private:; ls /private/sub; cat /private/pre/x";
    let out = probe(&p, script, |spec| {
        let mounts = spec["mounts"].as_array_mut().unwrap();
        mounts.push(bind(&src, "/private", "rprivate"));
        mounts.push(bind(&src, "/slave", "rslave"));
        mounts.push(bind(&sync, "/sync", "rprivate"));
    });
    host.join().unwrap();
    for m in [&sub, &pre, &src] {
        let ok = std::process::Command::new("umount")
            .arg(m)
            .status()
            .unwrap();
        assert!(ok.success(), "umount {}", m.display());
    }
    assert_eq!(
        out, "slave:\nfrom the host\nbelow\nprivate:\nbelow\n",
        "the rprivate bind sees nothing of the later mount"
    );
}
