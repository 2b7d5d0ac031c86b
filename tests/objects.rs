//! End-to-end tests of ConfigMaps and Secrets, as root, through the `peapod` binary: one
//! multi-document file whose pod takes env vars, envFrom and volume files from them; a pod
//! waiting for a ConfigMap that does not exist yet; `get`, `describe` and `delete`.

mod common;

use std::time::{Duration, Instant};

use common::{manifest, Peapod};

/// Polls `get pods NAME -o json` until `done` accepts it; fails with `describe` after 60 s.
fn wait_for(p: &Peapod, name: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let o = p.run(&["get", "pods", name, "-o", "json"]);
        if o.status.success() {
            let pod: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if done(&pod) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pod {name} never became {what}:\n{}",
            p.ok(&["describe", "pod", name])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn running(pod: &serde_json::Value) -> bool {
    pod["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|c| c["state"]["running"].is_object()))
}

const ALL_IN_ONE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  greeting: hello
  app.conf: |
    mode=fast
  not-a-var: x
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
data:
  password: aHVudGVyMg==
stringData:
  token: abc123
---
apiVersion: v1
kind: Pod
metadata:
  name: consumer
  labels:
    app: web
    tier: front
spec:
  volumes:
  - name: config
    configMap:
      name: app-config
      items:
      - key: app.conf
        path: conf/app.conf
        mode: 0600
  - name: secret
    secret:
      secretName: app-secret
      defaultMode: 0400
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef:
          fieldPath: metadata.labels
  - name: all
    projected:
      sources:
      - configMap:
          name: app-config
          items: [{key: greeting, path: greeting}]
      - secret:
          name: app-secret
          items: [{key: token, path: token}]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    envFrom:
    - configMapRef:
        name: app-config
      prefix: CFG_
    - secretRef:
        name: app-secret
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {name: app-config, key: greeting}
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: app-secret, key: password}
    - name: MISSING_OK
      valueFrom:
        configMapKeyRef: {name: nowhere, key: x, optional: true}
    volumeMounts:
    - {name: config, mountPath: /etc/config}
    - {name: secret, mountPath: /etc/secret}
    - {name: info, mountPath: /etc/info}
    - {name: all, mountPath: /etc/all}
"#;

/// A ConfigMap, a Secret and a pod using both in every way, from one file, in file order.
#[test]
fn pods_take_env_and_files_from_configmaps_and_secrets() {
    let p = Peapod::new();
    let file = manifest(&p, "all.yaml", ALL_IN_ONE);
    assert_eq!(
        p.ok(&["apply", "-f", &file]),
        "configmap/app-config created\nsecret/app-secret created\npod/consumer created\n"
    );
    wait_for(&p, "consumer", "running", running);

    let env = p.ok(&["exec", "consumer", "-c", "app", "--", "env"]);
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    assert_eq!(var("GREETING").as_deref(), Some("hello"));
    assert_eq!(var("PASSWORD").as_deref(), Some("hunter2"));
    assert_eq!(var("CFG_greeting").as_deref(), Some("hello"));
    assert_eq!(var("CFG_not-a-var").as_deref(), Some("x"));
    assert_eq!(var("token").as_deref(), Some("abc123"));
    assert_eq!(var("password").as_deref(), Some("hunter2"));
    assert_eq!(var("MISSING_OK"), None);

    let cat = |path: &str| p.ok(&["exec", "consumer", "-c", "app", "--", "cat", path]);
    assert_eq!(cat("/etc/config/conf/app.conf"), "mode=fast\n");
    assert_eq!(cat("/etc/secret/password"), "hunter2");
    assert_eq!(cat("/etc/secret/token"), "abc123");
    assert_eq!(cat("/etc/info/labels"), "app=\"web\"\ntier=\"front\"");
    assert_eq!(cat("/etc/all/greeting"), "hello");
    assert_eq!(cat("/etc/all/token"), "abc123");
    // Only the items asked for, behind the kubelet's ..data symlink.
    let ls = p.ok(&[
        "exec",
        "consumer",
        "-c",
        "app",
        "--",
        "ls",
        "-a",
        "/etc/config",
    ]);
    let mut entries: Vec<&str> = ls
        .split_whitespace()
        .filter(|e| !e.starts_with("..2"))
        .collect();
    entries.sort();
    assert_eq!(entries, [".", "..", "..data", "conf"]);
    let mode = |path: &str| {
        p.ok(&[
            "exec", "consumer", "-c", "app", "--", "stat", "-L", "-c", "%a", path,
        ])
        .trim()
        .to_string()
    };
    assert_eq!(mode("/etc/secret/password"), "400");
    assert_eq!(mode("/etc/config/conf/app.conf"), "600");
    assert_eq!(mode("/etc/info/labels"), "644");
    // Read-only, as the kubelet mounts these volumes.
    let o = p.run(&[
        "exec",
        "consumer",
        "-c",
        "app",
        "--",
        "touch",
        "/etc/config/new",
    ]);
    assert!(!o.status.success(), "a configMap volume was writable");

    // Applying the same file again changes nothing.
    assert_eq!(
        p.ok(&["apply", "-f", &file]),
        "configmap/app-config unchanged\nsecret/app-secret unchanged\npod/consumer unchanged\n"
    );
    let changed = ALL_IN_ONE.replace("greeting: hello", "greeting: bonjour");
    assert_eq!(
        p.ok(&["apply", "-f", &manifest(&p, "changed.yaml", &changed)]),
        "configmap/app-config configured\nsecret/app-secret unchanged\npod/consumer unchanged\n"
    );

    assert_eq!(
        p.ok(&["delete", "-f", &file]),
        "configmap \"app-config\" deleted\nsecret \"app-secret\" deleted\npod \"consumer\" deleted\n"
    );
    assert!(p.mounts().is_empty(), "mounts left: {:?}", p.mounts());
    assert_eq!(p.ok(&["ps", "-aq"]), "");
}

/// A pod whose env needs a ConfigMap that does not exist waits in
/// CreateContainerConfigError with the kubelet's message, and starts once it is applied.
#[test]
fn a_missing_configmap_holds_the_container_until_it_is_applied() {
    let p = Peapod::new();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: waiter
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    env:
    - name: LATE
      valueFrom:
        configMapKeyRef: {name: late-config, key: value}
"#;
    p.ok(&["apply", "-f", &manifest(&p, "pod.yaml", pod)]);
    wait_for(&p, "waiter", "CreateContainerConfigError", |pod| {
        let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        waiting["reason"] == "CreateContainerConfigError"
            && waiting["message"] == "configmap \"late-config\" not found"
    });
    let get = p.ok(&["get", "pods", "waiter"]);
    assert!(get.contains("CreateContainerConfigError"), "{get}");

    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late-config\ndata:\n  value: arrived\n";
    assert_eq!(
        p.ok(&["create", "-f", &manifest(&p, "cm.yaml", config)]),
        "configmap/late-config created\n"
    );
    wait_for(&p, "waiter", "running", running);
    let env = p.ok(&["exec", "waiter", "--", "env"]);
    assert!(env.lines().any(|l| l == "LATE=arrived"), "{env}");

    // `create` of an existing one is refused as kubectl words it.
    let (code, stderr) = p.fails(&["create", "-f", &manifest(&p, "cm.yaml", config)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Error from server (AlreadyExists): error when creating")
            && stderr.contains("configmaps \"late-config\" already exists"),
        "{stderr}"
    );
    p.ok(&["delete", "pod", "waiter", "--now"]);
    p.ok(&["delete", "configmap", "late-config"]);
}

/// `get`, `describe` and `delete` of ConfigMaps and Secrets, and what is on disk.
#[test]
fn get_describe_and_delete_configmaps_and_secrets() {
    let p = Peapod::new();
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-a\n  labels: {team: x}\ndata:\n  a: '1'\n  b: '2'\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: sec-a\n  namespace: other\ntype: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: s3cret\n";
    p.ok(&["apply", "-f", &manifest(&p, "objs.yaml", text)]);

    let cm = p.ok(&["get", "cm"]);
    let lines: Vec<Vec<&str>> = cm.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(lines[1][..2], ["cm-a", "2"]);
    let secrets = p.ok(&["get", "secrets", "-n", "other"]);
    let lines: Vec<Vec<&str>> = secrets
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(lines[1][..3], ["sec-a", "kubernetes.io/basic-auth", "2"]);
    let all = p.ok(&["get", "secret", "-A"]);
    assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
    assert_eq!(
        p.ok(&["get", "configmaps", "-o", "name"]),
        "configmap/cm-a\n"
    );

    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["get", "secret", "sec-a", "-n", "other", "-o", "json"]))
            .unwrap();
    assert_eq!(json["kind"], "Secret");
    assert_eq!(json["data"]["password"], "czNjcmV0");
    assert!(json.get("stringData").is_none());
    assert!(json["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(json["metadata"]["creationTimestamp"].is_string());
    let yaml = p.ok(&["get", "configmap", "cm-a", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("team: x"),
        "{yaml}"
    );

    let describe = p.ok(&["describe", "secret", "sec-a", "-n", "other"]);
    assert!(
        describe.contains("Type:  kubernetes.io/basic-auth"),
        "{describe}"
    );
    assert!(describe.contains("password:  6 bytes"), "{describe}");
    assert!(!describe.contains("s3cret"), "{describe}");
    let describe = p.ok(&["describe", "cm", "cm-a"]);
    assert!(describe.contains("a:\n----\n1\n"), "{describe}");

    // Secrets are private on disk.
    use std::os::unix::fs::PermissionsExt;
    let file = p.root.join("lib/objects/other/secrets/sec-a.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    let (_, stderr) = p.fails(&["get", "cm", "nope"]);
    assert!(
        stderr.contains("Error from server (NotFound): configmaps \"nope\" not found"),
        "{stderr}"
    );
    let invalid = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  'a b': x\n";
    let (_, stderr) = p.fails(&["apply", "-f", &manifest(&p, "bad.yaml", invalid)]);
    assert!(
        stderr.contains("The ConfigMap \"bad\" is invalid: data[a b]: Invalid value"),
        "{stderr}"
    );

    assert_eq!(
        p.ok(&["delete", "cm", "cm-a"]),
        "configmap \"cm-a\" deleted\n"
    );
    assert_eq!(
        p.ok(&["delete", "secret", "sec-a", "-n", "other"]),
        "secret \"sec-a\" deleted\n"
    );
    let (_, stderr) = p.fails(&["delete", "secret", "sec-a", "-n", "other"]);
    assert!(stderr.contains("secrets \"sec-a\" not found"), "{stderr}");
    let o = p.run(&["get", "cm"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("No resources found in default namespace."));
}

/// A running `peapod serve` on a free port with a kubeconfig for it (the same harness as
/// tests/kubectl.rs); killed on drop.
struct Server {
    child: std::process::Child,
    kubeconfig: std::path::PathBuf,
    cache: tempfile::TempDir,
}

impl Server {
    fn start(p: &Peapod) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = p
            .cmd(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting peapod serve");
        let mut s = Server {
            child,
            kubeconfig: p.root.join("kubeconfig.yaml"),
            cache: tempfile::tempdir().unwrap(),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve never listened"
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

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real kubectl applies, lists, patches and deletes ConfigMaps and Secrets through
/// `peapod serve`, and the CLI sees the same objects.
#[test]
fn kubectl_applies_and_lists_configmaps_and_secrets() {
    let p = Peapod::new();
    let s = Server::start(&p);
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-cm\ndata:\n  a: '1'\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: kube-sec\ndata:\n  password: cHc=\n";
    let file = manifest(&p, "objs.yaml", text);
    assert_eq!(
        s.ok(&["apply", "-f", &file]),
        "configmap/kube-cm created\nsecret/kube-sec created\n"
    );
    assert_eq!(
        s.ok(&["apply", "-f", &file]),
        "configmap/kube-cm unchanged\nsecret/kube-sec unchanged\n"
    );
    let changed = manifest(&p, "changed.yaml", &text.replace("a: '1'", "a: '2'"));
    assert_eq!(
        s.ok(&["apply", "-f", &changed]),
        "configmap/kube-cm configured\nsecret/kube-sec unchanged\n"
    );
    let cm = s.ok(&["get", "cm"]);
    let rows: Vec<Vec<&str>> = cm.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(rows[1][..2], ["kube-cm", "1"]);
    let sec = s.ok(&["get", "secrets"]);
    assert!(
        sec.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("kube-sec")),
        "{sec}"
    );
    assert!(sec.contains("Opaque"), "{sec}");
    // The CLI reads the same store.
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["get", "cm", "kube-cm", "-o", "json"])).unwrap();
    assert_eq!(json["data"]["a"], "2");
    // `create` of an existing one is a 409 with the API server's words.
    let o = s.kubectl(&["create", "-f", &file]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("Error from server (AlreadyExists)")
            && stderr.contains("configmaps \"kube-cm\" already exists"),
        "{stderr}"
    );
    s.ok(&[
        "patch",
        "configmap",
        "kube-cm",
        "-p",
        r#"{"data":{"b":"3"}}"#,
    ]);
    assert_eq!(
        s.ok(&["get", "cm", "kube-cm", "-o", "jsonpath={.data.b}"]),
        "3"
    );
    assert_eq!(s.ok(&["delete", "-f", &file]).lines().count(), 2);
    let o = s.kubectl(&["get", "cm", "kube-cm"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("NotFound"));
    assert!(p.ok(&["get", "secrets", "-o", "name"]).is_empty());
}
