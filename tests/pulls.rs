//! End-to-end pulls through the `peapod` binary against a real registry on loopback
//! (Debian's docker-registry, images pushed with skopeo): `peapod pull`, and pods whose
//! imagePullPolicy makes the engine pull (Pulling/Pulled events), or fail to
//! (ErrImagePull, then ImagePullBackOff).

mod common;

#[path = "../crates/image/tests/registry_support/mod.rs"]
#[allow(unused_imports)]
mod registry_support;

use std::time::{Duration, Instant};

use common::{manifest, Peapod};
use registry_support::{Auth, Registry};

#[test]
fn pull_by_cli_and_by_pods() {
    let p = Peapod::new();
    let registry = Registry::start(Auth::None);
    let addr = registry.addr();
    registry.push(common::busybox_archive(), "tools/bb:1.0", "oci", None);

    let reference = format!("{addr}/tools/bb:1.0");
    let out = p.ok(&["pull", &reference]);
    assert!(out.contains("Pulling from tools/bb"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert_eq!(out.lines().last().unwrap(), reference);
    let again = p.ok(&["pull", "-q", &reference]);
    assert_eq!(again.trim(), reference);
    assert!(p.ok(&["images"]).contains(&format!("{addr}/tools/bb")));

    // A pod with imagePullPolicy Always pulls (Pulling/Pulled events) and runs; a pull
    // secret that does not exist is reported, and the pull goes ahead without it.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pulled\nspec:\n  imagePullSecrets:\n  - name: nowhere\n  containers:\n  - name: app\n    image: {addr}/tools/bb:1.0\n    imagePullPolicy: Always\n    command: [\"sleep\", \"1000\"]\n"
    );
    p.ok(&["apply", "--wait", "-f", &manifest(&p, "pulled.yaml", &pod)]);
    let describe = p.ok(&["describe", "pod", "pulled"]);
    assert!(
        describe.contains("Pulling") && describe.contains("Successfully pulled image"),
        "{describe}"
    );
    assert!(
        describe.contains("FailedToRetrieveImagePullSecret")
            && describe.contains("Unable to retrieve some image pull secrets (nowhere)"),
        "{describe}"
    );

    // An image the registry does not have: ErrImagePull, then ImagePullBackOff.
    let missing = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: unpullable\nspec:\n  containers:\n  - name: app\n    image: {addr}/tools/nothing:1.0\n"
    );
    p.ok(&["apply", "-f", &manifest(&p, "missing.yaml", &missing)]);
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        let line = p.ok(&["get", "pods", "unpullable"]);
        for reason in ["ErrImagePull", "ImagePullBackOff"] {
            if line.contains(reason) && !seen.contains(&reason) {
                seen.push(reason);
            }
        }
        if seen.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        seen,
        ["ErrImagePull", "ImagePullBackOff"],
        "{}",
        p.ok(&["describe", "pod", "unpullable"])
    );
    let (_, err) = p.fails(&["pull", &format!("{addr}/tools/nothing:1.0")]);
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "{err}"
    );
    for pod in ["pulled", "unpullable"] {
        p.ok(&["delete", "pod", pod, "--now"]);
    }
}

#[test]
fn login_then_pull_from_a_private_registry_and_prune() {
    let p = Peapod::new();
    let registry = Registry::start(Auth::Basic("alice", "s3cret"));
    let addr = registry.addr();
    registry.push(
        common::busybox_archive(),
        "private/bb:2",
        "v2s2",
        Some("alice:s3cret"),
    );
    let auth_file = p.root.join("auth.json");
    let with_auth = |args: &[&str]| {
        p.cmd(args)
            .env("REGISTRY_AUTH_FILE", &auth_file)
            .stdin(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    let reference = format!("{addr}/private/bb:2");
    let o = with_auth(&["pull", "-q", &reference]);
    assert!(!o.status.success(), "pulled without credentials");
    let o = with_auth(&["login", "-u", "alice", "-p", "s3cret", &addr]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "Login Succeeded");
    let o = with_auth(&["pull", "-q", &reference]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), reference);
    let o = with_auth(&["logout", &addr]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Removing login credentials"));

    // Prune never removes an image a container uses (both tags name the same image here);
    // once unused, `-a` removes it with its layers.
    p.ok(&["run", "-d", "--name", "user", "busybox", "sleep", "1000"]);
    let out = p.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let kept = p.ok(&["images"]);
    assert!(
        kept.contains("private/bb") && kept.contains("busybox"),
        "{kept}"
    );
    p.ok(&["rm", "-f", "user"]);
    p.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(
        p.ok(&["images"]).lines().count(),
        1,
        "only the header is left"
    );
    let layers = std::fs::read_dir(p.root.join("lib/image/layers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(layers, 0);
}

/// `imagePullSecrets`: a dockerconfigjson Secret in the same file as the pod gives the
/// pod's pulls their credentials; the same image without it is refused (ErrImagePull).
#[test]
fn image_pull_secrets_from_the_same_file() {
    let p = Peapod::new();
    let registry = Registry::start(Auth::Basic("bob", "pa55"));
    let addr = registry.addr();
    registry.push(
        common::busybox_archive(),
        "private/bb:3",
        "oci",
        Some("bob:pa55"),
    );
    // No node credentials at all: only the Secret can open the registry.
    let no_auth = p.root.join("no-auth.json");
    let cmd = |args: &[&str]| {
        p.cmd(args)
            .env("REGISTRY_AUTH_FILE", &no_auth)
            .env("HOME", &p.root)
            .output()
            .unwrap()
    };
    let text = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: regcred
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{{"auths":{{"{addr}":{{"username":"bob","password":"pa55"}}}}}}'
---
apiVersion: v1
kind: Pod
metadata:
  name: with-secret
spec:
  imagePullSecrets:
  - name: regcred
  containers:
  - name: app
    image: {addr}/private/bb:3
    imagePullPolicy: Always
    command: ["sleep", "1000"]
"#
    );
    let o = cmd(&[
        "apply",
        "--wait",
        "-f",
        &manifest(&p, "secret-pod.yaml", &text),
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let describe = p.ok(&["describe", "pod", "with-secret"]);
    assert!(describe.contains("Successfully pulled image"), "{describe}");
    let without = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: without-secret\nspec:\n  containers:\n  - name: app\n    image: {addr}/private/bb:3\n    imagePullPolicy: Always\n"
    );
    let o = cmd(&["apply", "-f", &manifest(&p, "plain-pod.yaml", &without)]);
    assert!(o.status.success());
    let start = Instant::now();
    loop {
        let line = p.ok(&["get", "pods", "without-secret"]);
        if line.contains("ErrImagePull") || line.contains("ImagePullBackOff") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pulled without the secret: {line}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let describe = p.ok(&["describe", "pod", "without-secret"]);
    assert!(
        describe.contains("Failed to pull image") && describe.contains("authentication required"),
        "{describe}"
    );
    for pod in ["with-secret", "without-secret"] {
        p.ok(&["delete", "pod", pod, "--now"]);
    }
}
