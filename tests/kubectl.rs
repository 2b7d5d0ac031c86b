//! End-to-end tests of `peapod serve` with the real kubectl (`/usr/bin/kubectl`, which the
//! gcloud dispatcher resolves to the kubectl matching the server's minor, 1.32), as root:
//! the seed's manifests applied, listed, described, exec'd into and deleted through the
//! Kubernetes API, and the CLI and the server seeing the same pods at every moment.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eth0_addr_mac, example, manifest, Peapod};

const KUBECTL: &str = "/usr/bin/kubectl";

/// A running `peapod serve` on a free port, with a kubeconfig for it; killed on drop.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(p: &Peapod) -> Self {
        let port = free_port();
        let child = p
            .cmd(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting peapod serve");
        let cache = tempfile::tempdir().unwrap();
        let kubeconfig = p.root.join("kubeconfig.yaml");
        let mut s = Server {
            child,
            kubeconfig,
            cache,
            port,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "peapod serve never listened on {port}"
            );
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("peapod serve exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = p.ok(&[
            "kubeconfig",
            "--server",
            &format!("https://127.0.0.1:{port}"),
        ]);
        std::fs::write(&s.kubeconfig, text).unwrap();
        s
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        self.kubectl_at(Path::new(KUBECTL), args)
    }

    /// A given kubectl binary (another version) pointed at this server.
    fn kubectl_at(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env_remove("KUBECONFIG");
        c
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Polls `kubectl get pods` until NAME shows READY and STATUS.
    fn wait_pod(&self, name: &str, ready: &str, status: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.ok(&["get", "pods", "-o", "wide"]);
            let line = out
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_default()
                .to_string();
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(1) == Some(&ready) && cols.get(2) == Some(&status) {
                return line;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "pod {name} never reached {ready} {status}; last: {line:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seed's three manifests (the hostPath under the test's root).
fn seed_manifests(p: &Peapod) -> Vec<String> {
    let data = p.root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    vec![
        manifest(p, "two-containers.yaml", &example("two-containers.yaml")),
        manifest(p, "init-container.yaml", &example("init-container.yaml")),
        manifest(
            p,
            "two-containers-volume.yaml",
            &example("two-containers-volume.yaml")
                .replace("path: /data", &format!("path: {}", data.display())),
        ),
    ]
}

#[test]
fn kubectl_drives_the_seed_pods() {
    let p = Peapod::new();
    let s = Server::start(&p);
    assert!(s.ok(&["version"]).contains("Server Version: v1.32.0"));

    let files = seed_manifests(&p);
    let mut args = vec!["apply"];
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    let out = s.ok(&args);
    for name in [
        "two-containers",
        "init-container-test",
        "two-containers-volume",
    ] {
        assert!(out.contains(&format!("pod/{name} created")), "{out}");
    }
    s.wait_pod("two-containers", "2/2", "Running");
    s.wait_pod("init-container-test", "1/1", "Running");
    let line = s.wait_pod("two-containers-volume", "2/2", "Running");
    assert!(line.contains(&p.subnet_prefix), "no pod IP in {line:?}");

    // Re-apply: nothing changed.
    let again = s.ok(&["apply", "-f", &files[0]]);
    assert_eq!(again.trim(), "pod/two-containers unchanged");

    // describe: IP, mounts, volumes and events.
    let d = s.ok(&["describe", "pod", "two-containers-volume"]);
    assert!(
        d.lines()
            .any(|l| l.starts_with("IP:") && l.contains(&p.subnet_prefix)),
        "{d}"
    );
    assert!(d.contains("/data from shared-data"), "{d}");
    assert!(d.contains("HostPath"), "{d}");
    assert!(d.contains("Scheduled") && d.contains("Started"), "{d}");

    // exec: both containers share one network namespace.
    let a = s.ok(&[
        "exec",
        "two-containers",
        "-c",
        "my-test-container1",
        "--",
        "ifconfig",
    ]);
    let b = s.ok(&[
        "exec",
        "two-containers",
        "-c",
        "my-test-container2",
        "--",
        "ifconfig",
    ]);
    let (ip1, mac1) = eth0_addr_mac(&a);
    let (ip2, mac2) = eth0_addr_mac(&b);
    assert_eq!((&ip1, &mac1), (&ip2, &mac2));
    assert!(ip1.starts_with(&p.subnet_prefix), "{ip1}");
    let ls = s.ok(&["exec", "init-container-test", "--", "ls", "/data"]);
    assert_eq!(ls.trim(), "test.txt");

    // Exit codes and stderr come back.
    let o = s.kubectl(&[
        "exec",
        "two-containers",
        "--",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("oops"));

    // stdin, closed at EOF.
    let mut child = s
        .kubectl_cmd(&[
            "exec",
            "-i",
            "two-containers",
            "-c",
            "my-test-container2",
            "--",
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n");

    // exec -it through a pty, driven by tmux: the terminal size arrives, resizes too.
    exec_it_in_tmux(&s);

    // The CLI and the server see the same pods at once.
    let cli = manifest(
        &p,
        "cli.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: from-cli\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo hello from cli; sleep 3600\"]\n",
    );
    p.ok(&["apply", "-f", &cli]);
    assert!(s.ok(&["get", "pods"]).contains("from-cli"));
    s.wait_pod("from-cli", "1/1", "Running");
    let start = Instant::now();
    loop {
        let logs = s.ok(&["logs", "from-cli"]);
        if logs == "hello from cli\n" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ts = s.ok(&["logs", "from-cli", "--timestamps", "--tail=1"]);
    assert!(
        ts.ends_with(" hello from cli\n") && ts.starts_with("20"),
        "{ts:?}"
    );

    // kubectl delete returns once the pod is gone, for the CLI too.
    let del = s.ok(&["delete", "pod", "from-cli", "--grace-period=1"]);
    assert!(del.contains("pod \"from-cli\" deleted"), "{del}");
    assert!(!p.ok(&["get", "pods"]).contains("from-cli"));
    let o = s.kubectl(&["get", "pod", "from-cli"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("Error from server (NotFound): pods \"from-cli\" not found"));

    // What kubectl makes, the CLI sees.
    s.ok(&[
        "run",
        "from-kubectl",
        "--image=busybox",
        "--image-pull-policy=Never",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(p.ok(&["get", "pods"]).contains("from-kubectl"));
    s.ok(&["delete", "pod", "from-kubectl", "--grace-period=1"]);
    assert!(!p.ok(&["get", "pods"]).contains("from-kubectl"));
}

/// `kubectl exec -it … -- sh` in a detached tmux session of 120x40, then 100x30.
fn exec_it_in_tmux(s: &Server) {
    let session = format!("kx{}", s.port);
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .output()
            .expect("running tmux")
    };
    let cmd = format!(
        "{KUBECTL} --kubeconfig {} --cache-dir {} exec -it two-containers -c my-test-container2 -- sh; sleep 30",
        s.kubeconfig.display(),
        s.cache.path().display()
    );
    let o = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
    assert!(o.status.success(), "{o:?}");
    let pane = |want: &str| -> String {
        let start = Instant::now();
        loop {
            let text =
                String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
                    .into_owned();
            if text.contains(want) || start.elapsed() > Duration::from_secs(15) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let text = pane("/ #");
    assert!(text.contains("/ #"), "no prompt: {text}");
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "stty size; echo $((6*7)); tty",
        "Enter",
    ]);
    let text = pane("/dev/pts/");
    assert!(text.contains("\n42\n"), "{text}");
    assert!(text.contains("40 120"), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    tmux(&["resize-window", "-t", &session, "-x", "100", "-y", "30"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["send-keys", "-t", &session, "stty size", "Enter"]);
    let text = pane("30 100");
    assert!(text.contains("30 100"), "{text}");
    tmux(&["send-keys", "-t", &session, "exit", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["kill-server"]);
}

#[test]
fn tokens_errors_patches_and_watches() {
    let p = Peapod::new();
    let s = Server::start(&p);

    // Without the token: 401 as a Status.
    let o = Command::new(KUBECTL)
        .args([
            "--server",
            &format!("https://127.0.0.1:{}", s.port),
            "--insecure-skip-tls-verify",
            "--token=wrong",
            "--cache-dir",
        ])
        .arg(s.cache.path())
        .args(["get", "pods"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("You must be logged in to the server"), "{err}");

    // Bad manifests: kubectl's usual texts.
    let bad = manifest(
        &p,
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    let o = s.kubectl(&["apply", "-f", &bad]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("The Pod \"Bad_Name\" is invalid") && err.contains("metadata.name"),
        "{err}"
    );
    let unknown = manifest(
        &p,
        "unknown.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: u\nspec:\n  containers:\n  - name: c\n    imagee: busybox\n",
    );
    let o = s.kubectl(&["apply", "-f", &unknown]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.containers[0].imagee\""),
        "{err}"
    );

    // A watch sees ADDED, MODIFIED and DELETED.
    let mut watch = s
        .kubectl_cmd(&["get", "pods", "-w", "--output-watch-events"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let web = manifest(
        &p,
        "web.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n  - name: sidecar\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n",
    );
    assert_eq!(s.ok(&["apply", "-f", &web]).trim(), "pod/web created");
    s.wait_pod("web", "2/2", "Running");
    assert_eq!(s.ok(&["apply", "-f", &web]).trim(), "pod/web unchanged");
    // A changed manifest goes through strategic merge.
    let web2 = manifest(
        &p,
        "web2.yaml",
        &std::fs::read_to_string(&web)
            .unwrap()
            .replace("app: web\n", "app: web\n    tier: front\n"),
    );
    assert_eq!(s.ok(&["apply", "-f", &web2]).trim(), "pod/web configured");
    assert_eq!(s.ok(&["apply", "-f", &web2]).trim(), "pod/web unchanged");
    // diff: a server-side dry run of the same patch finds nothing to change.
    let o = s.kubectl(&["diff", "-f", &web2]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // Immutable fields are refused with 422.
    let web3 = manifest(
        &p,
        "web3.yaml",
        &std::fs::read_to_string(&web2)
            .unwrap()
            .replacen("\"3600\"", "\"3601\"", 1),
    );
    let o = s.kubectl(&["apply", "-f", &web3]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Forbidden"));
    // Labels (merge patch), selectors, server-side apply.
    s.ok(&["label", "pod", "web", "extra=yes"]);
    let sel = s.ok(&["get", "pods", "-l", "tier=front,extra=yes", "-o", "name"]);
    assert_eq!(sel.trim(), "pod/web");
    assert!(s
        .ok(&["get", "pods", "-l", "tier=back", "-o", "name"])
        .is_empty());
    let ssa = manifest(
        &p,
        "ssa.yaml",
        &std::fs::read_to_string(&web)
            .unwrap()
            .replace("name: web\n", "name: ssa\n"),
    );
    let out = s.ok(&["apply", "--server-side", "-f", &ssa]);
    assert_eq!(out.trim(), "pod/ssa serverside-applied");
    s.wait_pod("ssa", "2/2", "Running");
    let y = s.ok(&["get", "pod", "ssa", "-o", "yaml"]);
    assert!(y.contains("name: sidecar") && y.contains("app: web"), "{y}");
    s.ok(&["wait", "--for=condition=Ready", "pod/ssa", "--timeout=30s"]);
    s.ok(&["delete", "pod", "ssa", "web", "--grace-period=1"]);

    // The server's watch notices a removal on its next poll (every 200 ms): give it a
    // moment to send the DELETED before the watch is stopped.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let o = watch.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&o.stdout);
    for kind in ["ADDED", "MODIFIED", "DELETED"] {
        assert!(
            events
                .lines()
                .any(|l| l.starts_with(kind) && l.contains("web")),
            "no {kind} for web in:\n{events}"
        );
    }

    // logs -f ends when the container exits.
    let counter = manifest(
        &p,
        "counter.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: counter\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"sleep 1; for i in 1 2 3; do echo line $i; sleep 0.3; done\"]\n",
    );
    s.ok(&["apply", "-f", &counter]);
    let start = Instant::now();
    let followed = loop {
        let o = s.kubectl(&["logs", "-f", "counter"]);
        if o.status.success() {
            break String::from_utf8(o.stdout).unwrap();
        }
        // Still ContainerCreating: kubectl refuses until the container started.
        assert!(start.elapsed() < Duration::from_secs(30), "{o:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(followed, "line 1\nline 2\nline 3\n");
    assert_eq!(s.ok(&["logs", "counter", "--tail=1"]), "line 3\n");
    assert_eq!(s.ok(&["logs", "counter", "--limit-bytes=4"]), "line");
    s.wait_pod("counter", "0/1", "Completed");

    // The unix socket serves the same API without a token.
    let sock = p.root.join("run/api.sock");
    let o = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(&sock)
        .arg("http://localhost/api/v1/namespaces/default/pods")
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "counter");
    let mode = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // Graceful deletion runs in the background: pods whose process ignores SIGTERM go in
    // one grace period together, and --wait=false returns at once with the pod Terminating.
    let slow = |name: &str| {
        manifest(
            &p,
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 3\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n"),
        )
    };
    for n in ["slow1", "slow2", "slow3"] {
        s.ok(&["apply", "-f", &slow(n)]);
    }
    for n in ["slow1", "slow2", "slow3"] {
        s.wait_pod(n, "1/1", "Running");
    }
    let t = Instant::now();
    s.ok(&["delete", "pod", "slow1", "slow2"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(5500),
        "{took:?}"
    );
    let cli = p.ok(&["get", "pods"]);
    assert!(!cli.contains("slow1") && !cli.contains("slow2"), "{cli}");
    let t = Instant::now();
    s.ok(&["delete", "pod", "slow3", "--wait=false"]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(s.ok(&["get", "pod", "slow3"]).contains("Terminating"));
    let start = Instant::now();
    while s.kubectl(&["get", "pod", "slow3"]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "slow3 never went"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Nodes, namespaces, events.
    let nodes = s.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        nodes.contains("Ready") && nodes.contains("peapod://0.1.0"),
        "{nodes}"
    );
    assert!(s.ok(&["get", "namespaces"]).contains("default"));
    let ev = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=counter",
    ]);
    assert!(ev.contains("pod/counter") && ev.contains("Started"), "{ev}");
    assert!(!ev.contains("pod/web"), "{ev}");
}

/// kubectl 1.30, 1.31 and 1.33 (the gcloud SDK's bundled builds, where installed) do the
/// core flows too: apply, get with the server's Table, exec with an exit code, logs, delete.
#[test]
fn other_kubectl_versions() {
    let p = Peapod::new();
    let s = Server::start(&p);
    let dir = Path::new("/usr/lib/google-cloud-sdk/bin");
    let mut tried = 0;
    for v in ["1.30", "1.31", "1.33"] {
        let bin = dir.join(format!("kubectl.{v}"));
        if !bin.exists() {
            eprintln!("kubectl {v} is not installed: skipped");
            continue;
        }
        tried += 1;
        let k = |args: &[&str]| -> Output {
            s.kubectl_at(&bin, args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let name = format!("v{}", v.replace('.', "-"));
        let m = manifest(
            &p,
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo hi {v}; sleep 3600\"]\n"),
        );
        let o = k(&["apply", "-f", &m]);
        assert!(o.status.success(), "{v}: {o:?}");
        let start = Instant::now();
        loop {
            let out = String::from_utf8_lossy(&k(&["get", "pods", &name]).stdout).into_owned();
            if out.contains("1/1") && out.contains("Running") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{v}: {out}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let o = k(&["exec", &name, "--", "sh", "-c", "exit 3"]);
        assert_eq!(o.status.code(), Some(3), "{v}: {o:?}");
        let o = k(&["exec", &name, "--", "hostname"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            name,
            "{v}: {o:?}"
        );
        let start = Instant::now();
        while String::from_utf8_lossy(&k(&["logs", &name]).stdout) != format!("hi {v}\n") {
            assert!(start.elapsed() < Duration::from_secs(10), "{v}: no logs");
            std::thread::sleep(Duration::from_millis(100));
        }
        let o = k(&["delete", "pod", &name, "--grace-period=1"]);
        assert!(o.status.success(), "{v}: {o:?}");
    }
    eprintln!("tried {tried} other kubectl versions");
}

/// `kubectl attach -i` and `peapod attach -i` relay a running pod container's stdin and
/// output through its pod monitor's attach socket; a client's end of stdin does not close
/// the container's (`stdinOnce: false`); the container's exit ends the session with its
/// code, and a detached client leaves the container running.
#[test]
fn kubectl_and_peapod_attach_relay_stdin_and_output() {
    let p = Peapod::new();
    let server = Server::start(&p);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: echoer
spec:
  restartPolicy: Never
  containers:
  - name: cat
    image: busybox
    imagePullPolicy: Never
    stdin: true
    command: ["sh", "-c", "while read line; do [ \"$line\" = exit ] && break; echo got:$line; done; echo stdin-closed; exit 3"]
  - name: ticker
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
"#;
    server.ok(&["apply", "-f", &manifest(&p, "echoer.yaml", pod)]);
    server.wait_pod("echoer", "2/2", "Running");
    // Output only, then leave: the container keeps running.
    let mut watcher = server
        .kubectl_cmd(&["attach", "echoer", "-c", "ticker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = watcher.stdout.take().unwrap();
    let mut first = [0u8; 5];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"tick\n");
    watcher.kill().unwrap();
    let _ = watcher.wait();
    // stdin through kubectl: each line echoed back.
    let mut k = server
        .kubectl_cmd(&["attach", "-i", "echoer", "-c", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kin = k.stdin.take().unwrap();
    let mut kout = std::io::BufReader::new(k.stdout.take().unwrap());
    let mut line = String::new();
    let start = Instant::now();
    // The stream may open after the first write: repeat until one comes back.
    loop {
        kin.write_all(b"one\n").unwrap();
        std::io::BufRead::read_line(&mut kout, &mut line).unwrap();
        if line.trim() == "got:one" || start.elapsed() > Duration::from_secs(20) {
            break;
        }
        line.clear();
    }
    assert_eq!(line.trim(), "got:one");
    drop(kin);
    drop(kout);
    let _ = k.kill();
    let _ = k.wait();
    // Through the CLI: stdin's end reaches the container, which exits 3; attach returns 3.
    let mut c = p
        .cmd(&["attach", "-i", "echoer", "-c", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"two\nexit\n").unwrap();
    let o = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("got:two") && stdout.contains("stdin-closed"),
        "{stdout}"
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, err) = p.fails(&["attach", "echoer", "-c", "cat"]);
    assert_ne!(code, 0);
    assert!(err.contains("stopped container"), "{err}");
    server.ok(&["delete", "pod", "echoer", "--grace-period=0", "--force"]);
}

/// kubectl 1.27–1.29 exec and attach over SPDY/3.1 (their only transport; later versions
/// fall back to it): stdout and stderr apart, stdin, and the exit code through the v4 error
/// stream.
#[test]
fn old_kubectl_exec_over_spdy() {
    let p = Peapod::new();
    let s = Server::start(&p);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: spdy\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n  - name: echo\n    image: busybox\n    imagePullPolicy: Never\n    stdin: true\n    command: [\"sh\", \"-c\", \"while read l; do echo got:$l; done\"]\n";
    s.ok(&["apply", "-f", &manifest(&p, "spdy.yaml", pod)]);
    s.wait_pod("spdy", "2/2", "Running");
    let dir = Path::new("/usr/lib/google-cloud-sdk/bin");
    let mut tried = 0;
    for v in ["1.27", "1.28", "1.29"] {
        let bin = dir.join(format!("kubectl.{v}"));
        if !bin.exists() {
            eprintln!("kubectl {v} is not installed: skipped");
            continue;
        }
        tried += 1;
        let k = |args: &[&str], stdin: &[u8]| -> Output {
            let mut c = s
                .kubectl_at(&bin, args)
                // 1.29 would try WebSocket first with this set; SPDY is what is tested.
                .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(stdin).unwrap();
            c.wait_with_output().unwrap()
        };
        let o = k(
            &[
                "exec",
                "spdy",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            b"",
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n", "{v}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("err"),
            "{v}: {o:?}"
        );
        assert_eq!(o.status.code(), Some(3), "{v}: {o:?}");
        let o = k(&["exec", "-i", "spdy", "--", "cat"], b"through stdin\n");
        assert!(o.status.success(), "{v}: {o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n", "{v}");
        // attach: the line comes back echoed; kubectl stays attached (the container runs
        // on) until it is stopped.
        let mut a = s
            .kubectl_at(&bin, &["attach", "-i", "spdy", "-c", "echo"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut input = a.stdin.take().unwrap();
        let mut out = std::io::BufReader::new(a.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) > 0 {
                if line.contains("got:") {
                    let _ = tx.send(line.clone());
                    return;
                }
                line.clear();
            }
        });
        let start = Instant::now();
        let echoed = loop {
            input.write_all(b"hello\n").unwrap();
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
                break l;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{v}: no echo");
        };
        assert_eq!(echoed.trim(), "got:hello", "{v}");
        let _ = a.kill();
        let _ = a.wait();
    }
    assert!(tried > 0, "no kubectl 1.27–1.29 installed");
    s.ok(&["delete", "pod", "spdy", "--grace-period=0", "--force"]);
}
