//! Shared helpers of the sandbox's root tests: unique bridge names and subnets per test
//! (so tests run in parallel and never meet the default peapod0 / 10.42.0.0/16), and a
//! fixture whose `Drop` detaches, removes pins and deletes the test's bridge.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use peapod_sandbox::{netns, NetworkConfig, PodNetwork};

/// These tests create namespaces, bridges and veths: they need root, and must fail (never
/// pass silently) without it.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces, bridges and veths: run it as root (e.g. sudo -E cargo test -p peapod-sandbox)"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SUBNETS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A bridge name unique to this process and call: `ppt<pid%10000><n>`.
pub fn unique_bridge() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("ppt{}{}", std::process::id() % 10000, n);
    assert!(name.len() <= 15, "{name}");
    name
}

/// A third octet `n` for `10.243.n.0/24`: distinct within this process and not already on
/// any host interface (a leftover of an earlier run, or another test process).
pub fn unique_octet() -> u8 {
    let used = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("run ip");
    let used = String::from_utf8_lossy(&used.stdout).into_owned();
    let mut taken = SUBNETS.lock().unwrap();
    let base = std::process::id() % 250;
    for i in 0..250 {
        let n = ((base + i) % 250 + 1) as u8;
        if !taken.contains(&n) && !used.contains(&format!(" 10.243.{n}.")) {
            taken.push(n);
            return n;
        }
    }
    panic!("no free 10.243.n.0/24 test subnet");
}

/// One test's world: a temp dir (state, CNI dir, pins), a bridge name and subnet of its own.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    pub octet: u8,
    pub config: NetworkConfig,
    owners: Mutex<Vec<(String, PathBuf)>>,
    pins: Mutex<Vec<PathBuf>>,
}

impl Fixture {
    /// A /24 test network.
    pub fn new() -> Self {
        Self::with_prefix(24)
    }

    /// A test network `10.243.n.0/prefix`.
    pub fn with_prefix(prefix: u8) -> Self {
        require_root();
        let bridge = unique_bridge();
        let octet = unique_octet();
        let config = NetworkConfig {
            bridge: bridge.clone(),
            subnet: format!("10.243.{octet}.0/{prefix}").parse().unwrap(),
            ..Default::default()
        };
        Self {
            dir: tempfile::tempdir().unwrap(),
            bridge,
            octet,
            config,
            owners: Mutex::default(),
            pins: Mutex::default(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cni_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    /// A PodNetwork on this fixture's state (a new instance each call, as separate
    /// processes would have).
    pub fn network(&self) -> PodNetwork {
        PodNetwork::new(&self.state_dir(), &self.cni_dir(), self.config.clone())
    }

    /// The address `10.243.n.host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 243, self.octet, host)
    }

    /// A new netns pinned in the fixture, removed on drop.
    pub fn netns(&self, name: &str) -> PathBuf {
        let pin = self.pin_dir().join(name);
        netns::create(&pin).unwrap_or_else(|e| panic!("create netns {}: {e}", pin.display()));
        self.pins.lock().unwrap().push(pin.clone());
        pin
    }

    /// Records that `owner` may be attached, so drop detaches it.
    pub fn track(&self, owner: &str, pin: &Path) {
        self.owners
            .lock()
            .unwrap()
            .push((owner.to_owned(), pin.to_owned()));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let net = self.network();
        for (owner, pin) in self.owners.lock().unwrap().drain(..) {
            if let Err(e) = net.detach(&owner, &pin) {
                eprintln!("cleanup: detach {owner}: {e}");
            }
        }
        for pin in self.pins.lock().unwrap().drain(..) {
            if let Err(e) = netns::remove(&pin) {
                eprintln!("cleanup: remove netns {}: {e}", pin.display());
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        // netns::create made the pin directory a private mount point.
        let _ = nix::mount::umount2(&self.pin_dir(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs `ip -j ARGS` inside the netns pinned at `pin` (pins are not in /run/netns, so
/// through nsenter) and parses its JSON; `None` when ip fails (e.g. no such device).
pub fn ip_json_in(pin: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["ip", "-j"])
        .args(args)
        .output()
        .expect("run nsenter");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("ip -j prints JSON"))
}

/// `ip -j ARGS` in the host netns; `None` when it fails.
pub fn ip_json(args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("ip -j prints JSON"))
}

/// Whether a host interface of this name exists.
pub fn host_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run ip")
        .success()
}

/// The IPv4 addresses (`a.b.c.d/p`) of `dev` inside the netns at `pin`.
pub fn addrs_in(pin: &Path, dev: &str) -> Vec<String> {
    let Some(v) = ip_json_in(pin, &["-4", "addr", "show", "dev", dev]) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}
