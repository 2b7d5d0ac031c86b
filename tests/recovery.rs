//! End-to-end tests of crash recovery, as root: `kill -9` of the CLI, the pod monitor and
//! the infra process at chosen steps (failpoints, `PEAPOD_FAILPOINTS`), a simulated host
//! reboot (every process of the test's pods killed, every mount under its root undone),
//! and 200 create/delete cycles with injected failures. After each, the next command
//! converges and nothing is left behind.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{manifest, Peapod};
use serde_json::Value;

/// A pod of one long-running app container (`sh` handles SIGTERM, so stops are quick).
fn sleeper(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#
    )
}

/// Runs a peapod command with failpoints set.
fn with_failpoints(p: &Peapod, failpoints: &str, args: &[&str]) -> Output {
    p.cmd(args)
        .env("PEAPOD_FAILPOINTS", failpoints)
        .stdin(Stdio::null())
        .output()
        .expect("running peapod")
}

/// Asserts the command died of SIGKILL at its failpoint.
fn assert_killed(o: &Output, what: &str) {
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{what}: expected death by SIGKILL at the failpoint, got {:?}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn get_line(p: &Peapod, name: &str) -> String {
    p.ok(&["get", "pods"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_default()
        .to_string()
}

fn pod_json(p: &Peapod, name: &str) -> Value {
    serde_json::from_str(&p.ok(&["get", "pods", name, "-o", "json"])).unwrap()
}

/// Polls `get pods` (each run recovers) until the pod's row shows READY and STATUS.
fn wait_pod(p: &Peapod, name: &str, ready: &str, status: &str) -> String {
    let start = Instant::now();
    loop {
        let line = get_line(p, name);
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) == Some(&ready) && cols.get(2) == Some(&status) {
            return line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "pod {name} never reached {ready} {status}; last: {line:?}\n{}",
            String::from_utf8_lossy(&p.run(&["describe", "pod", name]).stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `get pods` until the pod is gone (no pod stays Terminating).
fn wait_gone(p: &Peapod, name: &str) {
    let start = Instant::now();
    while !get_line(p, name).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "pod {name} stuck: {}",
            get_line(p, name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every name in `ps -a` (pod containers included).
fn ps_names(p: &Peapod) -> Vec<String> {
    p.ok(&["ps", "-a"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// No event of the pod reports a name or object that "already exists" or is "already in
/// use" (what re-using an old attempt's names would cause).
fn assert_no_conflict(p: &Peapod, pod: &str) {
    let events = p.ok(&["describe", "pod", pod]);
    assert!(
        !events.contains("already in use") && !events.contains("already exists"),
        "{pod}: a conflict while recovering:\n{events}"
    );
}

/// Entries of `dir`, but for the built-in runtime's own dot entries (its link, seccomp
/// cache) in its state root — a bundle it staged for a create still counts.
fn count_entries(dir: &Path) -> usize {
    let own = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    let staged = dir.join(".bundles");
    own + std::fs::read_dir(&staged).map(|d| d.count()).unwrap_or(0)
}

/// Nothing of any pod or container is left: records, processes' cgroups, mounts, veths,
/// addresses, netns pins, runtime state, CNI attachments, and no pod is listed.
fn assert_no_leftovers(p: &Peapod) {
    let pods = p.run(&["get", "pods", "-A"]);
    assert!(
        String::from_utf8_lossy(&pods.stdout).trim().is_empty(),
        "pods left (stuck Terminating?): {}",
        String::from_utf8_lossy(&pods.stdout)
    );
    assert_eq!(p.ok(&["ps", "-aq"]), "", "containers left");
    assert!(p.mounts().is_empty(), "mounts left: {:?}", p.mounts());
    assert!(
        p.bridge_ports().is_empty(),
        "veths left: {:?}",
        p.bridge_ports()
    );
    let ipam: Value = serde_json::from_str(&p.ipam_text()).unwrap_or(Value::Null);
    assert!(
        ipam["allocations"].as_object().is_none_or(|a| a.is_empty()),
        "IPs left: {}",
        p.ipam_text()
    );
    for (what, dir) in [
        ("netns pins", "run/netns"),
        ("pod records", "lib/pods"),
        ("container records", "lib/containers"),
        ("runtime state", "run/runtime"),
        ("CNI attachments", "lib/network/cni"),
    ] {
        let dir = p.root.join(dir);
        assert_eq!(
            count_entries(&dir),
            0,
            "{what} left in {}: {:?}",
            dir.display(),
            std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default()
        );
    }
    let cgroups = common::cgroups_left(p);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// `kill -9` of the CLI at every step of a pod's creation: the next command finds the pod,
/// makes its sandbox anew and runs it, with no "already exists"; `delete` leaves nothing.
#[test]
fn cli_killed_at_every_creation_step_then_the_pod_runs() {
    let p = Peapod::new();
    for (i, step) in [
        "pod-committed",
        "sandbox-committed",
        "netns-created",
        "network-ipam-committed",
        "network-attach-half",
        "sandbox-ready",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("crash{i}");
        let file = manifest(&p, &format!("{name}.yaml"), &sleeper(&name));
        let o = with_failpoints(&p, &format!("{step}=kill"), &["apply", "-f", &file]);
        assert_killed(&o, step);
        // The pod was committed before the step: it is there and comes up.
        let line = wait_pod(&p, &name, "1/1", "Running");
        assert!(line.contains("Running"), "{step}: {line}");
        assert_no_conflict(&p, &name);
        // The sandbox is the only one, and its attempt was counted up past any made before.
        let uid = pod_json(&p, &name)["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        let sandboxes: Vec<String> = ps_names(&p)
            .into_iter()
            .filter(|n| n.starts_with(&format!("k8s_POD_{name}_default_{uid}_")))
            .collect();
        assert_eq!(sandboxes.len(), 1, "{step}: {sandboxes:?}");
        if step != &"pod-committed" {
            assert!(
                sandboxes[0].ends_with("_1"),
                "{step}: the re-made sandbox is attempt 1: {sandboxes:?}"
            );
        }
        p.ok(&["delete", "pod", &name]);
    }
    assert_no_leftovers(&p);
}

/// An injected failure half way through the network setup fails `apply` with the error,
/// and nothing of the pod is left.
#[test]
fn network_failing_half_way_fails_apply_and_leaves_nothing() {
    let p = Peapod::new();
    for step in [
        "network-ipam-committed",
        "network-attach-half",
        "netns-created",
    ] {
        let file = manifest(&p, "half.yaml", &sleeper("half"));
        let o = with_failpoints(&p, step, &["apply", "-f", &file]);
        assert!(!o.status.success(), "{step}: apply should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("injected failure at failpoint {step}")),
            "{step}: {err}"
        );
        assert!(get_line(&p, "half").is_empty(), "{step}: the pod stayed");
        assert_no_leftovers(&p);
    }
}

/// `kill -9` of the CLI at every step of a deletion: the next commands finish it; no pod
/// stays Terminating and nothing is left.
#[test]
fn cli_killed_at_every_deletion_step_then_the_deletion_finishes() {
    let p = Peapod::new();
    for (i, step) in [
        "delete-marked",
        "delete-signalled",
        "container-teardown-half",
        "teardown-containers-removed",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("del{i}");
        let file = manifest(&p, &format!("{name}.yaml"), &sleeper(&name));
        p.ok(&["apply", "-f", &file]);
        wait_pod(&p, &name, "1/1", "Running");
        let o = with_failpoints(&p, &format!("{step}=kill"), &["delete", "pod", &name]);
        assert_killed(&o, step);
        wait_gone(&p, &name);
    }
    assert_no_leftovers(&p);
}

/// The infra process dying before it reports fails the pod's creation cleanly.
#[test]
fn infra_killed_at_start_fails_apply_and_leaves_nothing() {
    let p = Peapod::new();
    let file = manifest(&p, "inf.yaml", &sleeper("inf"));
    let o = with_failpoints(&p, "infra-start=kill", &["apply", "-f", &file]);
    assert!(!o.status.success(), "apply should fail");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("starting pod inf"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_no_leftovers(&p);
}

/// The infra process dying once the pod runs: its sandbox is re-made (attempt 1) and the
/// pod runs again. Needs the pod monitor that continues from `observed.json` (the old
/// monitor may have made app container records already).
#[test]
fn infra_killed_after_start_the_sandbox_is_remade() {
    let p = Peapod::new();
    let file = manifest(&p, "infd.yaml", &sleeper("infd"));
    let o = with_failpoints(&p, "infra-ready=kill", &["apply", "-f", &file]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_pod(&p, "infd", "1/1", "Running");
    let uid = pod_json(&p, "infd")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ps_names(&p).contains(&format!("k8s_POD_infd_default_{uid}_1")),
        "{:?}",
        ps_names(&p)
    );
    p.ok(&["delete", "pod", "infd"]);
    assert_no_leftovers(&p);
}

/// `kill -9` of a running pod's monitor: the next command re-makes the sandbox and a new
/// monitor restarts the containers per restartPolicy, counting the restart, with new
/// names. Needs the pod monitor that continues from `observed.json`.
#[test]
fn pod_monitor_killed_the_pod_comes_back() {
    let p = Peapod::new();
    let file = manifest(&p, "mon.yaml", &sleeper("mon"));
    p.ok(&["apply", "-f", &file]);
    wait_pod(&p, "mon", "1/1", "Running");
    let uid = pod_json(&p, "mon")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    kill_and_wait(read_pid(
        &p.root.join("lib/pods").join(&uid).join("monitor.pid"),
    ));
    let line = wait_pod(&p, "mon", "1/1", "Running");
    assert_eq!(line.split_whitespace().nth(3), Some("1"), "{line}");
    let names = ps_names(&p);
    assert!(
        names.contains(&format!("k8s_app_mon_default_{uid}_1")),
        "{names:?}"
    );
    assert_no_conflict(&p, "mon");
    p.ok(&["delete", "pod", "mon"]);
    assert_no_leftovers(&p);
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// SIGKILL, then waits until the process has exited (gone or a zombie: its files, and so
/// its locks, are closed), so the next command sees it dead.
fn kill_and_wait(pid: i32) {
    kill_pid(pid);
    common::eventually(Duration::from_secs(10), "the killed process exits", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        matches!(state, None | Some("Z" | "X")).then_some(())
    });
}

/// A host reboot, simulated: every process of this test's root is killed by pid (monitors,
/// infra processes, runtime processes, containers), every mount under the root undone, and
/// the empty cgroups removed, as a reboot leaves things. Only this test's processes: they
/// are found through the root's path on their command line, the pids its records hold, and
/// the processes in its cgroup parent.
fn simulate_reboot(p: &Peapod) {
    let root = p.root.to_str().unwrap().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&root) {
            pids.push(pid);
        }
    }
    for entry in std::fs::read_dir(p.root.join("lib/containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status: Value = std::fs::read(entry.path().join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if let Some(pid) = status["pid"].as_i64().filter(|p| *p > 0) {
            if status["exit_code"].is_null() {
                pids.push(pid as i32);
            }
        }
    }
    // Container processes, the infra's children included, through the cgroups.
    let mut cgroup_dirs = Vec::new();
    for c in common::cgroup_controllers() {
        collect_dirs(&c.join(&p.cgroup_parent), &mut cgroup_dirs);
    }
    for dir in &cgroup_dirs {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids.sort();
    pids.dedup();
    pids.retain(|&pid| pid != std::process::id() as i32);
    for &pid in &pids {
        kill_pid(pid);
    }
    // Reboot-like: wait for them to be gone.
    let start = Instant::now();
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(*pid))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "processes survive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
    cgroup_dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
    for d in cgroup_dirs {
        let _ = std::fs::remove_dir(d);
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            collect_dirs(&e.path(), out);
        }
    }
}

/// After a simulated reboot a plain container is reported exited (exit status unknown, as
/// Docker does after a daemon crash) and starts again: no "already exists", new netns.
#[test]
fn reboot_leaves_plain_containers_exited_and_startable() {
    let p = Peapod::new();
    p.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    simulate_reboot(&p);
    let line = p.ps_line("plain").unwrap();
    assert!(line.contains("Exited (255)"), "{line}");
    p.ok(&["start", "plain"]);
    let line = p.ps_line("plain").unwrap();
    assert!(line.contains("Up"), "{line}");
    let ip = p.inspect("plain")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ip.starts_with(&p.subnet_prefix), "{ip}");
    let ifconfig = p.ok(&["exec", "plain", "ifconfig", "eth0"]);
    assert!(ifconfig.contains(&ip), "{ifconfig}");
    p.ok(&["rm", "-f", "plain"]);
    assert_no_leftovers(&p);
}

/// After a simulated reboot the next `get pods` brings every pod back per restartPolicy:
/// an Always pod with an init container runs again (the init container re-run, the
/// restart counted), a pod that had completed stays Completed; nothing "already exists".
/// Needs the pod monitor that continues from `observed.json`.
#[test]
fn reboot_brings_pods_back_per_restart_policy() {
    let p = Peapod::new();
    let always = r#"
apiVersion: v1
kind: Pod
metadata:
  name: back
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: init
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "date >> /data/init-runs"]
    volumeMounts:
    - name: data
      mountPath: /data
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    emptyDir: {}
"#;
    let done = r#"
apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  restartPolicy: OnFailure
  containers:
  - name: job
    image: busybox
    imagePullPolicy: Never
    command: ["true"]
"#;
    p.ok(&["apply", "-f", &manifest(&p, "back.yaml", always)]);
    p.ok(&["apply", "-f", &manifest(&p, "done.yaml", done)]);
    wait_pod(&p, "back", "1/1", "Running");
    wait_pod(&p, "done", "0/1", "Completed");
    simulate_reboot(&p);
    let line = wait_pod(&p, "back", "1/1", "Running");
    assert_eq!(line.split_whitespace().nth(3), Some("1"), "{line}");
    let uid = pod_json(&p, "back")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let runs = std::fs::read_to_string(
        p.root
            .join("lib/pods")
            .join(&uid)
            .join("volumes/data/init-runs"),
    )
    .unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "the init container ran again: {runs}"
    );
    assert!(get_line(&p, "done").contains("Completed"));
    for pod in ["back", "done"] {
        assert_no_conflict(&p, pod);
    }
    p.ok(&["delete", "pod", "back", "done"]);
    assert_no_leftovers(&p);
}

/// A CNI plugin (the test's own script) that fails ADD, or accepts ADD but fails every
/// DEL: the apply fails cleanly, or the delete still finishes; nothing is left.
fn failing_cni_cycles(cycles: usize) {
    let p = Peapod::new();
    let bin = p.root.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = |name: &str, text: &str| {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "ppfailadd",
        "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected plugin failure\"}'\nexit 1\n",
    );
    script(
        "ppfaildel",
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.99.0.5/24\"}]}'\n  exit 0\nfi\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"DEL refused\"}'\nexit 1\n",
    );
    let config = p.root.join("etc/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text + &format!("cni_plugin_dirs = [\"{}\"]\n", bin.display()),
    )
    .unwrap();
    let net_d = p.root.join("etc/cni/net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    let conflist = |plugin: &str| {
        std::fs::write(
            net_d.join("10-fail.conflist"),
            format!(
                r#"{{"cniVersion":"1.0.0","name":"ppfail","plugins":[{{"type":"{plugin}"}}]}}"#
            ),
        )
        .unwrap();
    };
    let file = manifest(&p, "cni.yaml", &sleeper("cni"));
    for i in 0..cycles {
        if i % 2 == 0 {
            conflist("ppfailadd");
            let (_, err) = p.fails(&["apply", "-f", &file]);
            assert!(err.contains("injected plugin failure"), "{err}");
            assert!(get_line(&p, "cni").is_empty(), "the pod stayed: {err}");
        } else {
            conflist("ppfaildel");
            p.ok(&["apply", "-f", &file]);
            p.ok(&["delete", "pod", "cni", "--grace-period", "0"]);
        }
    }
    assert_no_leftovers(&p);
}

/// One thread's share of the create/delete cycles, with injected failures.
fn cycles(p: &Peapod, thread: usize, count: usize) {
    let stubborn = r#"
apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]
"#;
    for i in 0..count {
        let name = format!("cy{thread}-{i}");
        let text = if i % 40 == 19 {
            stubborn.replace("NAME", &name)
        } else {
            sleeper(&name)
        };
        let file = manifest(p, &format!("{name}.yaml"), &text);
        match i % 10 {
            3 => {
                let o = with_failpoints(p, "network-attach-half", &["apply", "-f", &file]);
                assert!(!o.status.success(), "{name}: apply should fail");
                assert!(get_line(p, &name).is_empty(), "{name} stayed");
            }
            5 => {
                // Its recovery pass may meet the other thread's half-made pod first and
                // die there, before making its own: both are crashes to recover from.
                let o = with_failpoints(p, "network-attach-half=kill", &["apply", "-f", &file]);
                assert_killed(&o, &name);
                p.ok(&[
                    "delete",
                    "pod",
                    &name,
                    "--grace-period",
                    "0",
                    "--ignore-not-found",
                ]);
            }
            7 => {
                p.ok(&["apply", "-f", &file]);
                let o = with_failpoints(
                    p,
                    "delete-signalled=kill",
                    &["delete", "pod", &name, "--grace-period", "0"],
                );
                assert_killed(&o, &name);
                wait_gone(p, &name);
            }
            _ if i % 40 == 19 => {
                // A container ignoring SIGTERM: killed after the grace period.
                p.ok(&["apply", "-f", &file]);
                wait_pod(p, &name, "1/1", "Running");
                p.ok(&["delete", "pod", &name, "--grace-period", "1"]);
            }
            _ => {
                p.ok(&["apply", "-f", &file]);
                p.ok(&["delete", "pod", &name, "--grace-period", "0"]);
            }
        }
        assert!(get_line(p, &name).is_empty(), "{name} is still listed");
    }
}

/// 200 create/delete cycles (two at a time, so recovery also meets the other thread's pods
/// mid-flight), some with the network failing half way, the CLI killed during the network
/// setup and during the deletion, a container ignoring SIGTERM, and a failing CNI plugin:
/// 0 addresses, mounts, veths, netns pins or cgroups are left, and no pod stays Terminating.
#[test]
fn two_hundred_create_delete_cycles_leave_nothing_behind() {
    let p = Peapod::new();
    std::thread::scope(|s| {
        let a = s.spawn(|| cycles(&p, 0, 95));
        let b = s.spawn(|| cycles(&p, 1, 95));
        a.join().unwrap();
        b.join().unwrap();
    });
    assert_no_leftovers(&p);
    failing_cni_cycles(10);
}
