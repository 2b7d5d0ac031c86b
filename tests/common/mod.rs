//! Shared harness of the end-to-end tests: a private peapod root per test (its own bridge,
//! subnet and cgroup parent, so tests run in parallel without sharing host-global names),
//! the busybox test image, and a Drop guard that removes everything the test made.

#![allow(dead_code)]

pub mod cri_client;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Panics unless running as root: these tests make namespaces, mounts and veths.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this end-to-end test needs root (namespaces, mounts, veths, cgroups): run the suite as root"
    );
}

/// The busybox test image archive, built once per test binary by the repo's script.
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("creating CARGO_TARGET_TMPDIR");
        let out = dir.join(format!("busybox-{}.tar", std::process::id()));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-image.sh");
        let o = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .expect("running the image script");
        assert!(
            o.status.success(),
            "scripts/build-busybox-image.sh failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    })
}

/// The file name of the OCI runtime binary the harness's peapod runs: `PEAPOD_TEST_RUNTIME`'s
/// (a name or a path), else the built-in runtime's link (the default; `peapod`, `builtin`).
pub fn runtime_binary_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| match std::env::var("PEAPOD_TEST_RUNTIME") {
        Ok(r) if r != "peapod" && r != "builtin" => Path::new(&r)
            .file_name()
            .map_or(r.clone(), |n| n.to_string_lossy().into_owned()),
        _ => "peapod-runtime".to_owned(),
    })
}

/// One test's private peapod.
pub struct Peapod {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    pub bridge: String,
    pub subnet_prefix: String,
    pub cgroup_parent: String,
}

impl Peapod {
    /// A fresh root with its own network and cgroup parent, the busybox image loaded.
    pub fn new() -> Self {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("pp")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let octet = (pid as u64 * 7 + n as u64) % 250;
        let bridge = format!("ppe{}{}", pid % 10000, n);
        let cgroup_parent = format!("peapod-e2e-{pid}-{n}");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // PEAPOD_TEST_RUNTIME runs the suites against another OCI runtime (`peapod`: the
        // built-in one).
        let runtime = std::env::var("PEAPOD_TEST_RUNTIME")
            .map(|r| format!("runtime = {r:?}\n"))
            .unwrap_or_default();
        std::fs::write(
            root.join("etc/config.toml"),
            format!("{runtime}cgroup_parent = \"{cgroup_parent}\"\n[network]\nbridge = \"{bridge}\"\nsubnet = \"10.241.{octet}.0/24\"\n"),
        )
        .unwrap();
        let p = Self {
            root,
            _dir: dir,
            bridge,
            subnet_prefix: format!("10.241.{octet}."),
            cgroup_parent,
        };
        p.ok(&["image", "load", "-i", busybox_archive().to_str().unwrap()]);
        p
    }

    /// A `peapod` command on this root.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_peapod"));
        c.arg("--root").arg(&self.root).args(args);
        c.env_remove("PEAPOD_ROOT").env_remove("PEAPOD_RUNTIME");
        c
    }

    /// Runs and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("running peapod")
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "peapod {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs, asserts failure, returns (code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "peapod {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `inspect` of one object.
    pub fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// Lines of `ps -a` for a container name.
    pub fn ps_line(&self, name: &str) -> Option<String> {
        self.ok(&["ps", "-a"])
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .map(str::to_string)
    }

    /// Every per-container mount under this root (from /proc/self/mountinfo). The pin
    /// directory `run/netns` itself is a shared private mount, as /run/netns is for
    /// `ip netns`, and is not counted.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.root.to_str().unwrap();
        let pin_dir = format!("{root}/run/netns");
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(root) && *m != pin_dir)
            .collect()
    }

    /// Every mount under this root, the pin directory included (for cleanup).
    fn all_mounts(&self) -> Vec<String> {
        let root = self.root.to_str().unwrap();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(root))
            .collect()
    }

    /// Host veths enslaved to this test's bridge.
    pub fn bridge_ports(&self) -> Vec<String> {
        let o = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                l.split(':')
                    .nth(1)
                    .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            })
            .collect()
    }

    /// Cgroup directories of one container that exist now.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        cgroup_controllers()
            .iter()
            .map(|c| c.join(&self.cgroup_parent).join(id))
            .filter(|p| p.exists())
            .collect()
    }

    /// The IPAM state file's text (empty when absent).
    pub fn ipam_text(&self) -> String {
        std::fs::read_to_string(self.root.join("lib/network/ipam.json")).unwrap_or_default()
    }
}

/// The cgroups left under the test root's cgroup parent, in every hierarchy (none once
/// everything the test made is gone).
pub fn cgroups_left(p: &Peapod) -> Vec<PathBuf> {
    cgroup_controllers()
        .iter()
        .flat_map(|c| {
            std::fs::read_dir(c.join(&p.cgroup_parent))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// The cgroup hierarchies of this host (v1 controllers, or the v2 root).
pub fn cgroup_controllers() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    std::fs::read_dir(base)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Peapod {
    fn drop(&mut self) {
        // Delete every pod first (its monitor would otherwise restart its containers).
        if let Ok(o) = self.cmd(&["get", "pods", "-A", "-o", "json"]).output() {
            let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                let ns = item["metadata"]["namespace"].as_str().unwrap_or("default");
                let _ = self
                    .cmd(&["delete", "pod", name, "-n", ns, "--grace-period", "0"])
                    .output();
            }
        }
        // Remove every container (this kills processes and frees mounts, veths, IPs).
        if let Ok(o) = self.cmd(&["ps", "-aq", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", "-v", id]).output();
            }
        }
        // Belt and braces for whatever a failed test left: mounts, bridge, cgroup parent.
        let mut mounts = self.all_mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        for c in cgroup_controllers() {
            let parent = c.join(&self.cgroup_parent);
            if let Ok(rd) = std::fs::read_dir(&parent) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// One of the seed's manifests from `examples/`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name),
    )
    .unwrap()
}

/// Writes a manifest into the test's root and returns its path.
pub fn manifest(p: &Peapod, name: &str, text: &str) -> String {
    let path = p.root.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `get pods NAME -o json`.
pub fn pod_json(p: &Peapod, name: &str) -> Value {
    serde_json::from_str(&p.ok(&["get", "pods", name, "-o", "json"])).unwrap()
}

/// The pod's row of `get pods`.
pub fn get_line(p: &Peapod, name: &str) -> String {
    p.ok(&["get", "pods"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_default()
        .to_string()
}

/// Polls `get pods` until the pod's row matches READY and STATUS, or fails with the last row.
pub fn wait_pod(p: &Peapod, name: &str, ready: &str, status: &str) -> String {
    wait_pod_within(p, name, ready, status, std::time::Duration::from_secs(30))
}

/// [`wait_pod`] with its own limit.
pub fn wait_pod_within(
    p: &Peapod,
    name: &str,
    ready: &str,
    status: &str,
    limit: std::time::Duration,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let line = get_line(p, name);
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) == Some(&ready) && cols.get(2) == Some(&status) {
            return line;
        }
        assert!(
            start.elapsed() < limit,
            "pod {name} never reached {ready} {status}; last: {line:?}\n{}",
            p.ok(&["describe", "pod", name])
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Polls until `f` gives `Some`, or fails after `limit` with `what`.
pub fn eventually<T>(
    limit: std::time::Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// eth0's `inet addr` and `HWaddr` from busybox ifconfig output.
pub fn eth0_addr_mac(ifconfig: &str) -> (String, String) {
    let block: Vec<&str> = ifconfig
        .split("\n\n")
        .filter(|b| b.starts_with("eth0"))
        .collect();
    let block = block
        .first()
        .unwrap_or_else(|| panic!("no eth0 in ifconfig output:\n{ifconfig}"));
    let mac = block
        .split("HWaddr ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("HWaddr")
        .to_string();
    let ip = block
        .split("inet addr:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("inet addr")
        .to_string();
    (ip, mac)
}

/// The inode of `/proc/PID/ns/NS`.
pub fn ns_inode(pid: i64, ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
        .ino()
}
