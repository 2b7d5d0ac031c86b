//! End-to-end tests of plain containers (seed part 1, claim S1), as root, through the
//! `peapod` binary: real namespaces, mounts, veths, cgroups and processes.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{eth0_addr_mac, ns_inode, Peapod};

fn pid_of(p: &Peapod, name: &str) -> i64 {
    let pid = p.inspect(name)["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{name} has no pid");
    pid
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// S1 exactly as in the seed.
#[test]
fn seed_s1_second_container_joins_first_network_and_volumes() {
    let p = Peapod::new();
    let id1 = p
        .ok(&[
            "run", "-it", "-d", "--name", "test1", "-v", "/shared", "busybox",
        ])
        .trim()
        .to_string();
    assert_eq!(id1.len(), 64, "run -d prints the full id: {id1}");
    let id2 = p
        .ok(&[
            "run",
            "-it",
            "-d",
            "--network",
            "container:test1",
            "--volumes-from",
            "test1",
            "--name",
            "test2",
            "busybox",
        ])
        .trim()
        .to_string();
    assert_eq!(id2.len(), 64);

    let i1 = p.inspect("test1");
    let i2 = p.inspect("test2");
    assert_eq!(i1["Id"], id1.as_str());
    assert_eq!(
        i2["HostConfig"]["NetworkMode"],
        format!("container:{id1}").as_str()
    );
    assert_eq!(i1["HostConfig"]["NetworkMode"], "bridge");
    let ip = i1["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with(&p.subnet_prefix), "{ip}");

    let (pid1, pid2) = (pid_of(&p, "test1"), pid_of(&p, "test2"));
    assert_ne!(pid1, pid2);
    assert_eq!(
        ns_inode(pid1, "net"),
        ns_inode(pid2, "net"),
        "net namespace is shared"
    );
    for ns in ["mnt", "pid", "ipc", "uts"] {
        assert_ne!(
            ns_inode(pid1, ns),
            ns_inode(pid2, ns),
            "{ns} namespace must differ"
        );
    }
    // And the container's net namespace is not the host's.
    assert_ne!(
        ns_inode(pid1, "net"),
        ns_inode(std::process::id() as i64, "net")
    );
    // The namespace inodes are in inspect too.
    assert_eq!(
        i2["Namespaces"]["net"].as_u64().unwrap(),
        ns_inode(pid1, "net")
    );

    let (ip1, mac1) = eth0_addr_mac(&p.ok(&["exec", "test1", "ifconfig"]));
    let (ip2, mac2) = eth0_addr_mac(&p.ok(&["exec", "test2", "ifconfig"]));
    assert_eq!(ip1, ip);
    assert_eq!(ip2, ip);
    assert_eq!(mac1, mac2);
    assert_eq!(
        mac1.to_lowercase(),
        i1["NetworkSettings"]["MacAddress"].as_str().unwrap()
    );

    // A file written into test1's volume is read in test2 through --volumes-from.
    p.ok(&[
        "exec",
        "test1",
        "sh",
        "-c",
        "echo shared-by-test1 > /shared/note",
    ]);
    assert_eq!(
        p.ok(&["exec", "test2", "cat", "/shared/note"]).trim(),
        "shared-by-test1"
    );
    let m2 = &i2["Mounts"][0];
    assert_eq!(m2["Destination"], "/shared");
    assert_eq!(m2["Source"], i1["Mounts"][0]["Source"]);
    assert_eq!(m2["RW"], true);

    // ps shows both Up with Docker's columns.
    let ps = p.ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    for (name, id) in [("test1", &id1), ("test2", &id2)] {
        let line = p.ps_line(name).unwrap();
        assert!(line.starts_with(&id[..12]), "{line}");
        assert!(line.contains("\"sh\"") && line.contains("Up "), "{line}");
    }
}

/// `run -it -d busybox` keeps sh alive (stdin and tty held by the monitor); `stop` ends it.
#[test]
fn tty_shell_stays_up_and_stop_records_exit_status() {
    let p = Peapod::new();
    p.ok(&["run", "-it", "-d", "--name", "shell", "busybox"]);
    std::thread::sleep(Duration::from_millis(1500));
    let line = p.ps_line("shell").unwrap();
    assert!(
        line.contains("Up 1 second") || line.contains("Up 2 seconds"),
        "{line}"
    );
    // sh as PID 1 ignores SIGTERM: stop falls back to SIGKILL after the timeout.
    let t0 = Instant::now();
    assert_eq!(p.ok(&["stop", "-t", "1", "shell"]).trim(), "shell");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    let i = p.inspect("shell");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 137);
    assert!(p.ps_line("shell").unwrap().contains("Exited (137)"));
    assert!(p.ps_line("shell").is_some());
    assert!(
        !p.ok(&["ps"]).contains("shell"),
        "ps without -a hides exited containers"
    );

    // A process that handles SIGTERM exits with its own status.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 3' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    p.ok(&["stop", "-t", "10", "polite"]);
    assert_eq!(p.inspect("polite")["State"]["ExitCode"], 3);

    // start brings an exited container back with the same address.
    let ip_before = p.inspect("shell")["NetworkSettings"]["IPAddress"].clone();
    p.ok(&["start", "shell"]);
    assert!(p.ps_line("shell").unwrap().contains("Up"));
    assert_eq!(
        p.inspect("shell")["NetworkSettings"]["IPAddress"],
        ip_before
    );
    let (ip, _) = eth0_addr_mac(&p.ok(&["exec", "shell", "ifconfig"]));
    assert_eq!(ip, ip_before.as_str().unwrap());
}

/// `rm` leaves no mount, netns, veth, cgroup or IP allocation behind.
#[test]
fn rm_leaves_nothing_behind() {
    let p = Peapod::new();
    let id = p
        .ok(&[
            "run", "-d", "--name", "victim", "-v", "/vol", "busybox", "sleep", "1000",
        ])
        .trim()
        .to_string();
    let i = p.inspect("victim");
    let ip = i["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = i["State"]["Pid"].as_i64().unwrap();
    assert!(
        p.mounts().iter().any(|m| m.contains(&id)),
        "rootfs and netns are mounted while it exists"
    );
    assert_eq!(p.bridge_ports().len(), 1, "one veth on the bridge");
    assert!(
        p.ipam_text().contains(&ip),
        "IP allocated in the IPAM store"
    );
    assert!(
        !p.cgroup_dirs(&id).is_empty(),
        "the container has cgroups while running"
    );
    let (_, err) = p.fails(&["rm", "victim"]);
    assert!(err.contains("container is running"), "{err}");

    p.ok(&["rm", "-f", "-v", "victim"]);
    assert!(p.mounts().is_empty(), "mounts left: {:?}", p.mounts());
    assert!(
        p.bridge_ports().is_empty(),
        "veths left: {:?}",
        p.bridge_ports()
    );
    assert!(
        !p.ipam_text().contains(&ip),
        "IP still allocated: {}",
        p.ipam_text()
    );
    assert!(
        p.cgroup_dirs(&id).is_empty(),
        "cgroups left: {:?}",
        p.cgroup_dirs(&id)
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process survived rm -f"
    );
    assert!(!p.root.join("lib/containers").join(&id).exists());
    assert!(!p.root.join("run/netns").join(&id).exists());
    assert!(p.ps_line("victim").is_none());
    // Idempotent from the user's view: a second rm says it does not exist.
    let (_, err) = p.fails(&["rm", "-f", "victim"]);
    assert!(err.contains("No such container: victim"), "{err}");
}

#[test]
fn exec_and_logs_behave_like_docker() {
    let p = Peapod::new();
    p.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "-e",
        "GREETING=hello",
        "busybox",
        "sh",
        "-c",
        "echo out-$GREETING; echo err >&2; sleep 1000",
    ]);
    assert!(wait_for(Duration::from_secs(5), || p
        .ok(&["logs", "app"])
        .contains("out-hello")));
    let o = p.run(&["logs", "app"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out-hello\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = p.run(&["logs", "--tail", "1", "app"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).len() + String::from_utf8_lossy(&o.stderr).len(),
        4
    );
    // The raw log is in the CRI format.
    let raw = std::fs::read_to_string(p.inspect("app")["LogPath"].as_str().unwrap()).unwrap();
    assert!(
        raw.lines().any(|l| l.ends_with(" stdout F out-hello")),
        "{raw}"
    );

    // Exit codes propagate; env and workdir apply.
    let o = p.run(&["exec", "app", "sh", "-c", "exit 42"]);
    assert_eq!(o.status.code(), Some(42));
    assert_eq!(p.ok(&["exec", "-w", "/tmp", "app", "pwd"]).trim(), "/tmp");
    assert_eq!(
        p.ok(&["exec", "-e", "X=1", "app", "sh", "-c", "echo $X$GREETING"])
            .trim(),
        "1hello"
    );
    // exec -i passes stdin through.
    let mut child = p
        .cmd(&["exec", "-i", "app", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    // The hostname is the short id, and /etc/hosts names it.
    let id = p.inspect("app")["Id"].as_str().unwrap().to_string();
    assert_eq!(p.ok(&["exec", "app", "hostname"]).trim(), &id[..12]);
    assert!(p
        .ok(&["exec", "app", "cat", "/etc/hosts"])
        .contains(&id[..12]));

    // Foreground run: output streamed, exit code returned, --rm removes it.
    let o = p.run(&[
        "run",
        "--rm",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo hi; exit 5",
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert!(p.ps_line("fg").is_none());

    // Foreground -i: stdin reaches the container and its end ends `cat`.
    let mut child = p
        .cmd(&["run", "-i", "--rm", "busybox", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed into run -i\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed into run -i\n");
    // Foreground -t: a terminal in the container, its exit code ours.
    let o = p.run(&["run", "-t", "--rm", "busybox", "sh", "-c", "tty; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/dev/pts/0"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // logs -f ends when the container exits.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ]);
    let o = p.run(&["logs", "-f", "short"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "line1\nline2\nline3\n");
}

#[test]
fn network_modes_none_host_and_published_ports() {
    let p = Peapod::new();
    p.ok(&[
        "run",
        "-d",
        "--name",
        "nonet",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ifc = p.ok(&["exec", "nonet", "ifconfig", "-a"]);
    assert!(!ifc.contains("eth0") && ifc.contains("lo"), "{ifc}");
    assert_eq!(p.inspect("nonet")["HostConfig"]["NetworkMode"], "none");

    p.ok(&[
        "run",
        "-d",
        "--name",
        "hostnet",
        "--network",
        "host",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        ns_inode(pid_of(&p, "hostnet"), "net"),
        ns_inode(std::process::id() as i64, "net")
    );

    // A published port reaches a server in the container through loopback.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let publish = format!("127.0.0.1:{port}:8080");
    p.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo served-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    assert!(p
        .ps_line("web")
        .unwrap()
        .contains(&format!("127.0.0.1:{port}->8080/tcp")));
    let mut body = String::new();
    let got = wait_for(Duration::from_secs(5), || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        body.clear();
        let _ = s.read_to_string(&mut body);
        body.contains("served-from-pod")
    });
    assert!(got, "no answer through the published port: {body}");
    // And directly on the container's IP (a pod IP this test created).
    let ip = p.inspect("web")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let mut s = std::net::TcpStream::connect((ip.as_str(), 8080)).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut direct = String::new();
    s.read_to_string(&mut direct).unwrap();
    assert!(direct.contains("served-from-pod"));
}

#[test]
fn bad_input_gets_clear_errors_and_nothing_is_made() {
    let p = Peapod::new();
    let before = p.ok(&["ps", "-a"]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "-d", "nosuchimage"],
            "Unable to find image 'nosuchimage'",
        ),
        (
            vec!["run", "-d", "-v", "relative/path", "busybox"],
            "invalid volume specification",
        ),
        (
            vec!["run", "-d", "-v", "/a:/b:bogus", "busybox"],
            "invalid volume specification",
        ),
        (
            vec!["run", "-d", "-p", "80", "busybox"],
            "invalid port mapping",
        ),
        (
            vec!["run", "-d", "-p", "99999:80", "busybox"],
            "invalid port mapping",
        ),
        (
            vec!["run", "-d", "--network", "nonsense", "busybox"],
            "invalid --network",
        ),
        (
            vec!["run", "-d", "--network", "container:ghost", "busybox"],
            "No such container: ghost",
        ),
        (
            vec!["run", "-d", "--volumes-from", "ghost", "busybox"],
            "No such container: ghost",
        ),
        (
            vec!["run", "-d", "--name", "bad name", "busybox"],
            "Invalid container name",
        ),
        (
            vec!["--runtime", "no-such-runtime", "run", "-d", "busybox"],
            "OCI runtime \"no-such-runtime\" not found",
        ),
        (
            vec!["--runtime", "/nonexistent/runc", "run", "-d", "busybox"],
            "not found",
        ),
        (vec!["exec", "ghost", "true"], "No such container: ghost"),
        (vec!["stop", "ghost"], "No such container: ghost"),
        (vec!["rm", "ghost"], "No such container: ghost"),
        (vec!["logs", "ghost"], "No such container: ghost"),
        (vec!["start", "ghost"], "No such container: ghost"),
        (vec!["image", "rm", "nosuchimage"], "No such image"),
    ];
    for (args, want) in cases {
        let (code, err) = p.fails(&args);
        assert_ne!(code, 0);
        assert!(
            err.contains(want),
            "peapod {args:?}: expected {want:?} in stderr, got: {err}"
        );
    }
    assert_eq!(
        p.ok(&["ps", "-a"]),
        before,
        "failed commands made no containers"
    );
    assert!(
        p.mounts().is_empty(),
        "failed commands left mounts: {:?}",
        p.mounts()
    );

    // A duplicate name is refused and the first container is untouched.
    p.ok(&["run", "-d", "--name", "dup", "busybox", "sleep", "1000"]);
    let (_, err) = p.fails(&["run", "-d", "--name", "dup", "busybox"]);
    assert!(err.contains("is already in use"), "{err}");
    assert!(p.ps_line("dup").unwrap().contains("Up"));
    // Once removed, the name is free again.
    let first = p.inspect("dup")["Id"].as_str().unwrap().to_string();
    p.ok(&["rm", "-f", "dup"]);
    let second = p.ok(&["run", "-d", "--name", "dup", "busybox", "sleep", "1000"]);
    assert_ne!(second.trim(), first);
    // An unknown command exits 127 like Docker, and leaves a container to inspect/remove.
    let (code, err) = p.fails(&["run", "-d", "--name", "nocmd", "busybox", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    p.ok(&["rm", "-f", "nocmd"]);
    let (code, _) = p.fails(&["exec", "dup", "no-such-command"]);
    assert_ne!(code, 0);
}

/// `kill -9` of the CLI at any moment of `run -d` leaves state that `ps` reports and
/// `rm -f` removes completely.
#[test]
fn cli_killed_during_run_leaves_recoverable_state() {
    let p = Peapod::new();
    for (i, delay_ms) in [0u64, 5, 15, 30, 60, 120, 250].into_iter().enumerate() {
        let name = format!("killed{i}");
        let mut child = p
            .cmd(&["run", "-it", "-d", "--name", &name, "busybox"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever was left, ps reports it and exits 0.
        let ps = p.ok(&["ps", "-a"]);
        if let Some(line) = ps.lines().find(|l| l.ends_with(&name)) {
            assert!(
                line.contains("Up") || line.contains("Created") || line.contains("Exited"),
                "{line}"
            );
        }
    }
    for id in p.ok(&["ps", "-aq"]).lines() {
        p.ok(&["rm", "-f", "-v", id]);
    }
    assert_eq!(p.ok(&["ps", "-aq"]), "");
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
}

/// `kill -9` of a container's monitor: the container keeps running and `ps` says so; once
/// it dies, `ps` reports it exited (status unknown: 255); `rm -f` cleans up.
#[test]
fn monitor_killed_is_reported_truthfully() {
    let p = Peapod::new();
    let id = p
        .ok(&["run", "-d", "--name", "orphan", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let pid = pid_of(&p, "orphan");
    let monitor = find_monitor(&id).expect("monitor process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_for(Duration::from_secs(5), || !std::path::Path::new(
        &format!("/proc/{monitor}/cmdline")
    )
    .exists()
        || std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        p.ps_line("orphan").unwrap().contains("Up"),
        "container still runs: {:?}",
        p.ps_line("orphan")
    );
    // exec still works without the monitor.
    assert_eq!(p.ok(&["exec", "orphan", "echo", "alive"]).trim(), "alive");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || p
            .ps_line("orphan")
            .unwrap()
            .contains("Exited (255)")),
        "{:?}",
        p.ps_line("orphan")
    );
    assert_eq!(p.inspect("orphan")["State"]["ExitCode"], 255);
    p.ok(&["rm", "-f", "orphan"]);
    assert!(p.mounts().is_empty(), "mounts left: {:?}", p.mounts());
    assert!(p.bridge_ports().is_empty());
    assert!(
        p.cgroup_dirs(&id).is_empty(),
        "cgroups left: {:?}",
        p.cgroup_dirs(&id)
    );
}

fn find_monitor(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        (args.iter().any(|a| *a == b"monitor") && args.contains(&id.as_bytes())).then_some(pid)
    })
}

#[test]
fn images_load_list_inspect_and_remove() {
    let p = Peapod::new();
    let ls = p.ok(&["image", "ls"]);
    let mut lines = ls.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().expect("busybox listed");
    assert!(
        row.starts_with("busybox ") && row.contains("latest"),
        "{row}"
    );
    let img = p.inspect("busybox");
    assert_eq!(img["RepoTags"][0], "busybox:latest");
    assert_eq!(img["Config"]["Cmd"][0], "sh");
    // The same image by full reference and by id prefix.
    let id = img["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let by_ref: serde_json::Value =
        serde_json::from_str(&p.ok(&["image", "inspect", "docker.io/library/busybox:latest"]))
            .unwrap();
    assert_eq!(by_ref[0]["Id"], img["Id"]);
    let by_id: serde_json::Value =
        serde_json::from_str(&p.ok(&["image", "inspect", &id[..8]])).unwrap();
    assert_eq!(by_id[0]["Id"], img["Id"]);

    // In use: refused; then removed once the container is gone.
    p.ok(&["run", "-d", "--name", "user", "busybox", "sleep", "1000"]);
    let (_, err) = p.fails(&["image", "rm", "busybox"]);
    assert!(err.contains("being used"), "{err}");
    p.ok(&["rm", "-f", "user"]);
    let out = p.ok(&["image", "rm", "busybox"]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert_eq!(p.ok(&["image", "ls"]).lines().count(), 1);
    assert!(
        std::fs::read_dir(p.root.join("lib/image/layers"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "layers removed with the last image"
    );

    // A truncated archive is refused and leaves the store as it was.
    let data = std::fs::read(common::busybox_archive()).unwrap();
    let bad = p.root.join("truncated.tar");
    std::fs::write(&bad, &data[..data.len() / 2]).unwrap();
    let (_, err) = p.fails(&["image", "load", "-i", bad.to_str().unwrap()]);
    assert!(!err.is_empty());
    assert_eq!(p.ok(&["image", "ls"]).lines().count(), 1);
    let out = p.ok(&["load", "-i", common::busybox_archive().to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
}
