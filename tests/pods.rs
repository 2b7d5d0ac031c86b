//! End-to-end tests of pods (seed parts 2 and 3, claims S2–S7), as root, through the
//! `peapod` binary with the seed's manifests from `examples/`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eth0_addr_mac, example, get_line, manifest, ns_inode, pod_json, wait_pod, Peapod};
use serde_json::Value;

fn ps_k8s(p: &Peapod, pod: &str) -> Vec<String> {
    p.ok(&["ps", "-a"])
        .lines()
        .filter(|l| l.contains(&format!("_{pod}_default_")))
        .map(str::to_string)
        .collect()
}

fn pid(p: &Peapod, container: &str) -> i64 {
    p.inspect(container)["State"]["Pid"].as_i64().unwrap()
}

/// The docker-style name of a pod container (from `ps -a`).
fn k8s_name(p: &Peapod, pod: &str, container: &str) -> String {
    let prefix = format!("k8s_{container}_{pod}_default_");
    ps_k8s(p, pod)
        .iter()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in ps -a"))
}

/// S2–S5: the seed's two-container pod.
#[test]
fn seed_s2_to_s5_two_containers_share_the_sandbox() {
    let p = Peapod::new();
    let file = manifest(&p, "two.yaml", &example("two-containers.yaml"));
    assert_eq!(
        p.ok(&["apply", "-f", &file]).trim(),
        "pod/two-containers created"
    );
    // S2
    let line = wait_pod(&p, "two-containers", "2/2", "Running");
    assert!(line.split_whitespace().nth(3) == Some("0"), "{line}");
    let header = p.ok(&["get", "pods"]).lines().next().unwrap().to_string();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );

    // S3: three k8s_ entries, the infra among them, named as the kubelet names them.
    let uid = pod_json(&p, "two-containers")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = ps_k8s(&p, "two-containers");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for c in ["POD", "my-test-container1", "my-test-container2"] {
        let want = format!("k8s_{c}_two-containers_default_{uid}_0");
        assert!(
            rows.iter().any(|r| r.ends_with(&want) && r.contains("Up ")),
            "{want} not in {rows:#?}"
        );
    }

    // S4: net, ipc, uts shared with the infra; mnt and pid private.
    let infra = k8s_name(&p, "two-containers", "POD");
    let c1 = k8s_name(&p, "two-containers", "my-test-container1");
    let c2 = k8s_name(&p, "two-containers", "my-test-container2");
    let (pi, p1, p2) = (pid(&p, &infra), pid(&p, &c1), pid(&p, &c2));
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_inode(pi, ns), ns_inode(p1, ns), "{ns}: infra vs c1");
        assert_eq!(ns_inode(pi, ns), ns_inode(p2, ns), "{ns}: infra vs c2");
    }
    for ns in ["mnt", "pid"] {
        assert_ne!(ns_inode(p1, ns), ns_inode(p2, ns), "{ns}: c1 vs c2");
        assert_ne!(ns_inode(pi, ns), ns_inode(p1, ns), "{ns}: infra vs c1");
    }
    // Not the host's namespaces, and no process of the pod has the host's mount namespace.
    let me = std::process::id() as i64;
    for ns in ["net", "ipc", "uts", "mnt"] {
        assert_ne!(ns_inode(pi, ns), ns_inode(me, ns), "{ns}: infra vs host");
    }
    assert_eq!(
        p.ok(&[
            "exec",
            "two-containers",
            "-c",
            "my-test-container2",
            "--",
            "hostname"
        ])
        .trim(),
        "two-containers"
    );
    assert_eq!(
        p.inspect(&c1)["HostConfig"]["NetworkMode"],
        format!("container:{}", p.inspect(&infra)["Id"].as_str().unwrap()).as_str()
    );

    // S5: one IP; eth0 identical in both containers; equal to status.podIP and describe.
    let pod_ip = pod_json(&p, "two-containers")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pod_ip.starts_with(&p.subnet_prefix), "{pod_ip}");
    let (ip1, mac1) = eth0_addr_mac(&p.ok(&[
        "exec",
        "two-containers",
        "-c",
        "my-test-container1",
        "--",
        "ifconfig",
    ]));
    let (ip2, mac2) = eth0_addr_mac(&p.ok(&[
        "exec",
        "two-containers",
        "-c",
        "my-test-container2",
        "--",
        "ifconfig",
    ]));
    assert_eq!(
        (ip1.as_str(), ip2.as_str()),
        (pod_ip.as_str(), pod_ip.as_str())
    );
    assert_eq!(mac1, mac2);
    let describe = p.ok(&["describe", "pod", "two-containers"]);
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with("IP:") && l.ends_with(&pod_ip)),
        "{describe}"
    );
    // The default container is the first, with kubectl's notice.
    let o = p.run(&["exec", "two-containers", "--", "true"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(
        "Defaulted container \"my-test-container1\" out of: my-test-container1, my-test-container2"
    ));

    // Re-applying the same manifest changes nothing.
    assert_eq!(
        p.ok(&["apply", "-f", &file]).trim(),
        "pod/two-containers unchanged"
    );
    let (_, err) = p.fails(&["create", "-f", &file]);
    assert!(err.contains("already exists"), "{err}");
    // A label is a permitted change; a new command is not (kubectl's Forbidden).
    let labelled = example("two-containers.yaml").replace(
        "  name: two-containers\n",
        "  name: two-containers\n  labels:\n    tier: demo\n",
    );
    assert_eq!(
        p.ok(&["apply", "-f", &manifest(&p, "two-l.yaml", &labelled)])
            .trim(),
        "pod/two-containers configured"
    );
    assert_eq!(
        pod_json(&p, "two-containers")["metadata"]["labels"]["tier"],
        "demo"
    );
    let changed = labelled.replace(
        "    tty: true\n  - name: my-test-container2",
        "    tty: true\n    command: [\"sleep\", \"1\"]\n  - name: my-test-container2",
    );
    assert_ne!(changed, labelled);
    let (_, err) = p.fails(&["apply", "-f", &manifest(&p, "two-c.yaml", &changed)]);
    assert!(
        err.contains("spec: Forbidden: pod updates may not change fields"),
        "{err}"
    );
}

/// S6: a hostPath volume is one directory shared by both containers and the host.
#[test]
fn seed_s6_host_path_volume_is_shared() {
    let p = Peapod::new();
    let data = p.root.join("hostdata");
    let text = example("two-containers-volume.yaml")
        .replace("path: /data", &format!("path: {}", data.display()));
    let file = manifest(&p, "vol.yaml", &text);
    p.ok(&["apply", "-f", &file]);
    wait_pod(&p, "two-containers-volume", "2/2", "Running");
    p.ok(&[
        "exec",
        "two-containers-volume",
        "-c",
        "c1",
        "--",
        "sh",
        "-c",
        "echo from-c1 > /data/shared.txt",
    ]);
    assert_eq!(
        p.ok(&[
            "exec",
            "two-containers-volume",
            "-c",
            "c2",
            "--",
            "cat",
            "/data/shared.txt"
        ])
        .trim(),
        "from-c1"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("shared.txt"))
            .unwrap()
            .trim(),
        "from-c1"
    );
    let describe = p.ok(&["describe", "pod", "two-containers-volume"]);
    assert_eq!(
        describe.matches("/data from shared-data (rw)").count(),
        2,
        "{describe}"
    );
    assert!(
        describe.contains("HostPath (bare host directory volume)"),
        "{describe}"
    );
    let infra = k8s_name(&p, "two-containers-volume", "POD");
    assert_eq!(p.inspect(&infra)["Mounts"], Value::Array(vec![]));
    let c1 = k8s_name(&p, "two-containers-volume", "c1");
    let m = &p.inspect(&c1)["Mounts"][0];
    assert_eq!(m["Type"], "bind");
    assert_eq!(m["Source"], data.to_str().unwrap());
    assert_eq!(m["Destination"], "/data");
    assert_eq!(m["RW"], true);
    assert_eq!(m["Propagation"], "rprivate");

    // Deleting the pod keeps the hostPath content and removes everything else.
    assert_eq!(
        p.ok(&["delete", "pod", "two-containers-volume", "--now"])
            .trim(),
        "pod \"two-containers-volume\" deleted"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("shared.txt"))
            .unwrap()
            .trim(),
        "from-c1"
    );
    assert_no_leftovers(&p);
}

/// S7: the init container runs to completion first; its emptyDir output is seen by the app.
#[test]
fn seed_s7_init_container_then_app() {
    let p = Peapod::new();
    // The seed's manifest, repeatedly: it must come up every time (Podman fails 2 of 3).
    for round in 0..3 {
        let file = manifest(&p, "init.yaml", &example("init-container.yaml"));
        p.ok(&["apply", "-f", &file]);
        wait_pod(&p, "init-container-test", "1/1", "Running");
        assert_eq!(
            p.ok(&["exec", "init-container-test", "--", "ls", "/data"])
                .trim(),
            "test.txt",
            "round {round}"
        );
        let rows = ps_k8s(&p, "init-container-test");
        assert_eq!(rows.len(), 3, "{rows:#?}");
        let init_row = rows
            .iter()
            .find(|r| r.contains("k8s_data-container_"))
            .unwrap();
        assert!(
            init_row.contains("Exited (0)") && init_row.contains("\"touch /data/test.txt\""),
            "{init_row}"
        );
        let init = p.inspect(&k8s_name(&p, "init-container-test", "data-container"));
        let app = p.inspect(&k8s_name(&p, "init-container-test", "app-container"));
        let finished = init["State"]["FinishedAt"].as_str().unwrap().to_string();
        let started = app["State"]["StartedAt"].as_str().unwrap().to_string();
        assert!(
            finished <= started,
            "init finished {finished} after the app started {started}"
        );
        let status = pod_json(&p, "init-container-test")["status"].clone();
        assert_eq!(
            status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        assert_eq!(status["phase"], "Running");
        p.ok(&["delete", "pod", "init-container-test", "--now"]);
        assert_no_leftovers(&p);
    }
}

#[test]
fn failing_init_under_never_fails_the_pod_and_missing_image_never_pulls() {
    let p = Peapod::new();
    let failing = r#"
apiVersion: v1
kind: Pod
metadata:
  name: init-fails
spec:
  restartPolicy: Never
  initContainers:
  - name: boom
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "exit 3"]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
"#;
    p.ok(&["apply", "-f", &manifest(&p, "fail.yaml", failing)]);
    wait_pod(&p, "init-fails", "0/1", "Init:Error");
    let status = pod_json(&p, "init-fails")["status"].clone();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    // The app container never ran.
    assert!(ps_k8s(&p, "init-fails")
        .iter()
        .all(|r| !r.contains("k8s_app_")));

    let missing = r#"
apiVersion: v1
kind: Pod
metadata:
  name: no-image
spec:
  containers:
  - name: app
    image: example.com/not/here:1.0
    imagePullPolicy: Never
"#;
    p.ok(&["apply", "-f", &manifest(&p, "missing.yaml", missing)]);
    wait_pod(&p, "no-image", "0/1", "ErrImageNeverPull");
    assert_eq!(pod_json(&p, "no-image")["status"]["phase"], "Pending");
    let describe = p.ok(&["describe", "pod", "no-image"]);
    assert!(describe.contains("ErrImageNeverPull"), "{describe}");

    for pod in ["init-fails", "no-image"] {
        p.ok(&["delete", "pod", pod]);
    }
    assert_no_leftovers(&p);
}

#[test]
fn invalid_manifests_are_refused_and_nothing_is_made() {
    let p = Peapod::new();
    let cases = [
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: c\n    imagee: busybox\n", "unknown field \"spec.containers[0].imagee\""),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: Bad_Name\n    image: busybox\n", "spec.containers[0].name: Invalid value: \"Bad_Name\""),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: c\n    image: busybox\n    volumeMounts:\n    - name: nope\n      mountPath: /d\n", "Not found: \"nope\""),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let (code, err) = p.fails(&["apply", "-f", &manifest(&p, &format!("bad{i}.yaml"), text)]);
        assert_ne!(code, 0);
        assert!(err.contains(want), "expected {want:?} in: {err}");
    }
    let (_, err) = p.fails(&["apply", "-f", "/nonexistent/pod.yaml"]);
    assert!(err.contains("/nonexistent/pod.yaml"), "{err}");
    let (_, err) = p.fails(&["get", "pods", "ghost"]);
    assert!(err.contains("pods \"ghost\" not found"), "{err}");
    let (_, err) = p.fails(&["delete", "pod", "ghost"]);
    assert!(err.contains("pods \"ghost\" not found"), "{err}");
    let o = p.run(&["get", "pods"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("No resources found in default namespace."));
    assert_eq!(p.ok(&["ps", "-aq"]), "");
    assert!(p.mounts().is_empty());
}

fn assert_no_leftovers(p: &Peapod) {
    assert_eq!(p.ok(&["ps", "-aq"]), "", "containers left");
    assert!(p.mounts().is_empty(), "mounts left: {:?}", p.mounts());
    assert!(
        p.bridge_ports().is_empty(),
        "veths left: {:?}",
        p.bridge_ports()
    );
    assert!(
        !p.ipam_text().contains(&p.subnet_prefix),
        "IPs left: {}",
        p.ipam_text()
    );
    let netns_left = std::fs::read_dir(p.root.join("run/netns"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(netns_left, 0, "netns pins left");
    let cgroups = common::cgroups_left(p);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let pods_left = std::fs::read_dir(p.root.join("lib/pods"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pods_left, 0, "pod records left");
}

/// Restarts with back-off: a failing init container is retried (Init:CrashLoopBackOff) and
/// a crashing app container shows CrashLoopBackOff with its restart count and previous logs.
#[test]
fn crash_loops_back_off_and_keep_previous_logs() {
    let p = Peapod::new();
    let init_loop = r#"
apiVersion: v1
kind: Pod
metadata:
  name: init-loop
spec:
  initContainers:
  - name: flaky
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "exit 1"]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
"#;
    p.ok(&["apply", "-f", &manifest(&p, "init-loop.yaml", init_loop)]);
    wait_pod(&p, "init-loop", "0/1", "Init:CrashLoopBackOff");
    let crash = r#"
apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "echo attempt-output; exit 2"]
"#;
    p.ok(&["apply", "-f", &manifest(&p, "crash.yaml", crash)]);
    let line = wait_pod(&p, "crasher", "0/1", "CrashLoopBackOff");
    assert!(
        line.split_whitespace().nth(3).unwrap().starts_with('1'),
        "one restart counted: {line}"
    );
    let status = pod_json(&p, "crasher")["status"].clone();
    assert_eq!(
        status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        2
    );
    assert_eq!(status["phase"], "Running");
    assert_eq!(p.ok(&["logs", "crasher"]).trim(), "attempt-output");
    let describe = p.ok(&["describe", "pod", "crasher"]);
    for want in ["BackOff", "Started", "Created", "Pulled", "Scheduled"] {
        assert!(describe.contains(want), "event {want} missing:\n{describe}");
    }
    // -o yaml round-trips the manifest's spec.
    let yaml = p.ok(&["get", "pod", "crasher", "-o", "yaml"]);
    assert!(
        yaml.contains("name: crasher") && yaml.contains("attempt-output"),
        "{yaml}"
    );
    for pod in ["init-loop", "crasher"] {
        p.ok(&["delete", "pod", pod, "--now"]);
    }
    assert_no_leftovers(&p);
}

/// emptyDir on tmpfs with a size limit, subPath, readOnly, and hostPath type checks.
#[test]
fn volume_kinds_and_their_checks() {
    let p = Peapod::new();
    let host = p.root.join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("config.txt"), "from-host\n").unwrap();
    let text = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: vols
spec:
  volumes:
  - name: mem
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
  - name: conf
    hostPath:
      path: {host}
      type: Directory
  - name: made
    hostPath:
      path: {host}/made
      type: DirectoryOrCreate
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    volumeMounts:
    - name: mem
      mountPath: /mem
    - name: conf
      mountPath: /conf
      readOnly: true
    - name: made
      mountPath: /sub
      subPath: deeper
"#,
        host = host.display()
    );
    p.ok(&["apply", "-f", &manifest(&p, "vols.yaml", &text)]);
    wait_pod(&p, "vols", "1/1", "Running");
    let df = p.ok(&[
        "exec",
        "vols",
        "--",
        "sh",
        "-c",
        "grep ' /mem ' /proc/mounts",
    ]);
    assert!(
        df.starts_with("tmpfs /mem tmpfs") && df.contains("size=1024k"),
        "{df}"
    );
    let o = p.run(&[
        "exec",
        "vols",
        "--",
        "dd",
        "if=/dev/zero",
        "of=/mem/big",
        "bs=1024",
        "count=2048",
    ]);
    assert!(!o.status.success(), "writing past sizeLimit must fail");
    assert_eq!(
        p.ok(&["exec", "vols", "--", "cat", "/conf/config.txt"])
            .trim(),
        "from-host"
    );
    assert!(
        !p.run(&["exec", "vols", "--", "touch", "/conf/nope"])
            .status
            .success(),
        "readOnly mount is writable"
    );
    p.ok(&["exec", "vols", "--", "touch", "/sub/x"]);
    assert!(
        host.join("made/deeper/x").exists(),
        "subPath writes land in the volume's subdirectory"
    );
    let describe = p.ok(&["describe", "pod", "vols"]);
    assert!(describe.contains("/conf from conf (ro)"), "{describe}");
    assert!(
        describe.contains("EmptyDir (a temporary directory that shares a pod's lifetime)"),
        "{describe}"
    );

    // A hostPath of type File that does not exist keeps the pod from starting.
    let bad = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: badpath\nspec:\n  volumes:\n  - name: f\n    hostPath:\n      path: {}/missing\n      type: File\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: Never\n    volumeMounts:\n    - name: f\n      mountPath: /f\n",
        host.display()
    );
    p.ok(&["apply", "-f", &manifest(&p, "bad.yaml", &bad)]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pod_json(&p, "badpath")["status"]["phase"], "Pending");
    let describe = p.ok(&["describe", "pod", "badpath"]);
    assert!(
        describe.contains("FailedMount") && describe.contains("is not a file"),
        "{describe}"
    );

    for pod in ["vols", "badpath"] {
        p.ok(&["delete", "pod", pod, "--now"]);
    }
    assert!(
        host.join("config.txt").exists(),
        "hostPath content is untouched"
    );
    assert_no_leftovers(&p);
}

/// shareProcessNamespace: one pid namespace for the pod, whose init is peapod's infra;
/// hostNetwork: the host's network namespace.
#[test]
fn shared_process_namespace_and_host_network() {
    let p = Peapod::new();
    let shared = r#"
apiVersion: v1
kind: Pod
metadata:
  name: shared-pid
spec:
  shareProcessNamespace: true
  containers:
  - name: a
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1001"]
  - name: b
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1002"]
"#;
    p.ok(&["apply", "-f", &manifest(&p, "shared.yaml", shared)]);
    wait_pod(&p, "shared-pid", "2/2", "Running");
    let (pa, pb) = (
        pid(&p, &k8s_name(&p, "shared-pid", "a")),
        pid(&p, &k8s_name(&p, "shared-pid", "b")),
    );
    assert_eq!(ns_inode(pa, "pid"), ns_inode(pb, "pid"));
    let ps = p.ok(&["exec", "shared-pid", "-c", "b", "--", "ps"]);
    assert!(
        ps.contains("sleep 1001") && ps.contains("sleep 1002"),
        "{ps}"
    );
    // PID 1 of the pod is peapod's infra, not a container.
    let comm = p.ok(&[
        "exec",
        "shared-pid",
        "-c",
        "a",
        "--",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert!(comm.contains("infra"), "{comm:?}");

    let hostnet = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hostnet
spec:
  hostNetwork: true
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
"#;
    p.ok(&["apply", "-f", &manifest(&p, "hostnet.yaml", hostnet)]);
    wait_pod(&p, "hostnet", "1/1", "Running");
    let app = pid(&p, &k8s_name(&p, "hostnet", "app"));
    assert_eq!(
        ns_inode(app, "net"),
        ns_inode(std::process::id() as i64, "net")
    );
    assert_ne!(
        ns_inode(app, "uts"),
        ns_inode(std::process::id() as i64, "uts")
    );
    for pod in ["shared-pid", "hostnet"] {
        p.ok(&["delete", "pod", pod, "--now"]);
    }
    assert_no_leftovers(&p);
}

/// `apply --wait` returns once every container runs, and fails fast when a pod cannot start.
#[test]
fn apply_wait_returns_once_running_or_fails() {
    let p = Peapod::new();
    let file = manifest(&p, "two.yaml", &example("two-containers.yaml"));
    assert_eq!(
        p.ok(&["apply", "--wait", "-f", &file]).trim(),
        "pod/two-containers created"
    );
    // No polling: the pod is already running when apply returns.
    let line = get_line(&p, "two-containers");
    assert!(line.contains("2/2") && line.contains("Running"), "{line}");
    // A pod this command did not start (applied before, still initializing): the wait
    // follows its records rather than its monitor's report pipe, and still returns only
    // once the app container runs.
    let slow = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: slow\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"1\"]\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"1000\"]\n";
    let slow_file = manifest(&p, "slow.yaml", slow);
    assert_eq!(
        p.ok(&["apply", "-f", &slow_file]).trim(),
        "pod/slow created"
    );
    assert_eq!(
        p.ok(&["apply", "--wait", "-f", &slow_file]).trim(),
        "pod/slow unchanged"
    );
    let line = get_line(&p, "slow");
    assert!(line.contains("1/1") && line.contains("Running"), "{line}");
    let missing = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nope\nspec:\n  containers:\n  - name: app\n    image: not/here:1\n    imagePullPolicy: Never\n";
    let (code, err) = p.fails(&["apply", "--wait", "-f", &manifest(&p, "nope.yaml", missing)]);
    assert_eq!(code, 1);
    assert!(err.contains("ErrImageNeverPull"), "{err}");
    let failing = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dies\nspec:\n  restartPolicy: Never\n  initContainers:\n  - name: i\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"false\"]\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: Never\n";
    let (_, err) = p.fails(&["apply", "--wait", "-f", &manifest(&p, "dies.yaml", failing)]);
    assert!(err.contains("pod dies failed: Init:Error"), "{err}");
    // `delete pods --all`, as kubectl: every pod of the namespace, each named.
    let (code, err) = p.fails(&["delete", "pod", "dies", "--all"]);
    assert_eq!(code, 1);
    assert!(err.contains("--all takes one resource type"), "{err}");
    let out = p.ok(&["delete", "pods", "--all", "--grace-period", "0"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "pod \"dies\" deleted",
            "pod \"nope\" deleted",
            "pod \"slow\" deleted",
            "pod \"two-containers\" deleted"
        ]
    );
    let o = p.run(&["delete", "pods", "--all"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No resources found"));
    assert_no_leftovers(&p);
}

/// Requests and limits become the container's cgroup settings; an OOM kill is reported as
/// the kubelet reports it (reason OOMKilled, exit code 137).
#[test]
fn resources_become_cgroup_limits_and_oom_kills_are_reported() {
    let p = Peapod::new();
    let limited = r#"
apiVersion: v1
kind: Pod
metadata:
  name: limited
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    resources:
      requests:
        cpu: 250m
      limits:
        cpu: 500m
        memory: 64Mi
"#;
    p.ok(&[
        "apply",
        "--wait",
        "-f",
        &manifest(&p, "limited.yaml", limited),
    ]);
    let id = p.inspect(&k8s_name(&p, "limited", "app"))["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let uid = pod_json(&p, "limited")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let base = Path::new("/sys/fs/cgroup");
    let read = |controller: &str, file: &str| {
        let dir = if base.join("cgroup.controllers").exists() {
            base.to_path_buf()
        } else {
            base.join(controller)
        };
        // The container's cgroup sits under its pod's, as the kubelet's pod<uid>.
        let path = dir
            .join(&p.cgroup_parent)
            .join(format!("pod{uid}"))
            .join(&id)
            .join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    };
    if base.join("cgroup.controllers").exists() {
        assert_eq!(read("", "cpu.max"), "50000 100000");
        assert_eq!(read("", "memory.max"), "67108864");
    } else {
        assert_eq!(read("cpu", "cpu.shares"), "256");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    }
    assert_eq!(pod_json(&p, "limited")["status"]["qosClass"], "Burstable");

    let hog = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["tail", "/dev/zero"]
    resources:
      limits:
        memory: 16Mi
"#;
    p.ok(&["apply", "-f", &manifest(&p, "hog.yaml", hog)]);
    let line = wait_pod(&p, "hog", "0/1", "OOMKilled");
    assert!(line.contains("OOMKilled"), "{line}");
    let term = pod_json(&p, "hog")["status"]["containerStatuses"][0]["state"]["terminated"].clone();
    assert_eq!(term["reason"], "OOMKilled");
    assert_eq!(term["exitCode"], 137);
    assert_eq!(pod_json(&p, "hog")["status"]["qosClass"], "Burstable");
    for pod in ["limited", "hog"] {
        p.ok(&["delete", "pod", pod, "--now"]);
    }
    assert_no_leftovers(&p);
}

/// Environment from the downward API: fieldRef and resourceFieldRef.
#[test]
fn env_from_the_downward_api() {
    let p = Peapod::new();
    let text = r#"
apiVersion: v1
kind: Pod
metadata:
  name: downward
  labels:
    app: web
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    resources:
      limits:
        memory: 64Mi
    env:
    - name: LITERAL
      value: plain
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_NS
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: POD_UID
      valueFrom: {fieldRef: {fieldPath: metadata.uid}}
    - name: APP
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: MEM_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
"#;
    p.ok(&[
        "apply",
        "--wait",
        "-f",
        &manifest(&p, "downward.yaml", text),
    ]);
    let pod = pod_json(&p, "downward");
    let env = p.ok(&["exec", "downward", "--", "env"]);
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get("LITERAL"), "plain");
    assert_eq!(get("POD_NAME"), "downward");
    assert_eq!(get("POD_NS"), "default");
    assert_eq!(get("POD_UID"), pod["metadata"]["uid"].as_str().unwrap());
    assert_eq!(get("APP"), "web");
    assert_eq!(get("POD_IP"), pod["status"]["podIP"].as_str().unwrap());
    assert_eq!(get("NODE"), pod["spec"]["nodeName"].as_str().unwrap());
    assert_eq!(get("MEM_MI"), "64");
    p.ok(&["delete", "pod", "downward", "--now"]);
    assert_no_leftovers(&p);
}

/// The command lines of the processes whose arguments name `needle`.
fn cmdlines_naming(needle: &str) -> Vec<Vec<String>> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .filter(|argv| argv.iter().any(|a| a.contains(needle)))
        .collect()
}

/// The pod's infra is the small `peapod-infra` installed beside peapod; a peapod installed
/// without it runs its own `peapod infra` instead, and the pod works the same.
#[test]
fn the_infra_is_peapod_infra_or_peapod_itself() {
    let p = Peapod::new();
    let netns_dir = p.root.join("run/netns");
    let netns_dir = netns_dir.to_str().unwrap();
    let file = manifest(&p, "two.yaml", &example("two-containers.yaml"));
    p.ok(&["apply", "--wait", "-f", &file]);
    let infra = cmdlines_naming(netns_dir);
    assert_eq!(infra.len(), 1, "{infra:?}");
    assert!(infra[0][0].ends_with("/peapod-infra"), "{infra:?}");
    p.ok(&["delete", "pod", "two-containers", "--now"]);

    // peapod alone in a directory (a hard link: /proc/self/exe names the link's path).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alone = dir.join("peapod");
    let _ = std::fs::remove_file(&alone);
    std::fs::hard_link(env!("CARGO_BIN_EXE_peapod"), &alone).unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir);
    let out = std::process::Command::new(&alone)
        .arg("--root")
        .arg(&p.root)
        .args(["apply", "--wait", "-f", &file])
        .env_remove("PEAPOD_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_pod(&p, "two-containers", "2/2", "Running");
    let infra = cmdlines_naming(netns_dir);
    assert_eq!(infra.len(), 1, "{infra:?}");
    assert_eq!(infra[0][1], "infra", "{infra:?}");
    p.ok(&["delete", "pod", "two-containers", "--now"]);
    assert_no_leftovers(&p);
}
