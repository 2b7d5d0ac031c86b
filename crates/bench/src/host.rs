//! What the harness reads from and does to the host: processes and their PSS, mounts,
//! cgroup directories, the machine's description, a free subnet and bridge name, and the
//! busybox rootfs of the floor measurement.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cmd::Logs;

/// One process of the host.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// Its command line.
    pub argv: Vec<String>,
}

/// Every process visible in /proc (those that vanish while being read are skipped).
pub fn processes() -> Vec<Proc> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Proc { pid, ppid, argv })
        })
        .collect()
}

/// `roots` and all their descendants.
pub fn with_descendants(procs: &[Proc], roots: &[i32]) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut stack: Vec<i32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if out.contains(&pid) {
            continue;
        }
        out.push(pid);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    out
}

/// The proportional set size of a process in KiB (`Pss:` of /proc/PID/smaps_rollup).
pub fn pss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no Pss line in {path}"))
}

/// (device, inode) of a file, following symlinks (for /proc/PID/exe: the executable).
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    out.dedup();
    out
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or under `dir`; returns what is still mounted.
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    mounts_under(dir)
}

/// The cgroup hierarchies of this host: the v2 root, or each v1 controller's (and the
/// named/unified) mount.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    std::fs::read_dir(base)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the cgroup directory `name` (relative to each hierarchy) and every cgroup
/// below it, deepest first. Cgroups still holding processes stay (rmdir fails).
pub fn remove_cgroup_tree(name: &str) {
    fn rmdir_tree(p: &Path) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(p);
    }
    if name.is_empty() || name.contains("..") {
        return;
    }
    for h in cgroup_hierarchies() {
        let p = h.join(name);
        if p.exists() {
            rmdir_tree(&p);
        }
    }
}

/// Whether a network interface of that name exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A /24 in 10.240.0.0/16 that no address or route of this host uses, starting the search
/// at an offset derived from our pid.
pub fn free_subnet() -> Result<String> {
    let mut used = String::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("running ip (iproute2)")?;
        used.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let start = std::process::id() as usize % 250;
    for k in 0..250 {
        let x = (start + k) % 250 + 1;
        let prefix = format!("10.240.{x}.");
        if !used.contains(&prefix) {
            return Ok(format!("10.240.{x}.0/24"));
        }
    }
    bail!("no free /24 in 10.240.0.0/16")
}

/// A bridge name (≤ 15 characters) that no interface has.
pub fn free_bridge_name(stem: &str) -> String {
    let pid = std::process::id() % 100_000;
    (0..)
        .map(|n| {
            format!(
                "{stem}{pid}{}",
                if n == 0 { String::new() } else { n.to_string() }
            )
        })
        .find(|b| !link_exists(b))
        .unwrap_or_default()
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Compilers and test runs of others that would make the numbers noise: the names of
/// running `cargo`/`rustc`/`clippy-driver` processes, deduplicated.
pub fn busy_processes() -> Vec<String> {
    let mut out: Vec<String> = processes()
        .iter()
        .filter_map(|p| {
            let name = Path::new(p.argv.first()?)
                .file_name()?
                .to_str()?
                .to_string();
            matches!(
                name.as_str(),
                "cargo" | "rustc" | "clippy-driver" | "cc" | "ld"
            )
            .then_some(name)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// How often other people's compilers or test runs were seen while measuring.
#[derive(Debug, Clone, Default)]
pub struct Noise {
    checks: usize,
    busy: usize,
    names: Vec<String>,
}

impl Noise {
    /// Looks once (between two measurements, untimed).
    pub fn check(&mut self) {
        let found = busy_processes();
        self.checks += 1;
        if !found.is_empty() {
            self.busy += 1;
            self.names.extend(found);
            self.names.sort();
            self.names.dedup();
        }
    }

    /// A note when anything was seen.
    pub fn note(&self) -> Option<String> {
        (self.busy > 0).then(|| {
            format!(
                "other CPU-heavy processes ({}) ran at {} of {} checks between measurements: the numbers are noisier than on an idle machine",
                self.names.join(", "),
                self.busy,
                self.checks
            )
        })
    }
}

/// The machine, as printed above the table.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs available to us.
    pub nproc: usize,
    /// `uname -r`.
    pub kernel: String,
    /// /proc/cpuinfo's first `model name`.
    pub cpu: String,
    /// MemTotal in MiB.
    pub mem_mib: u64,
    /// /etc/os-release PRETTY_NAME.
    pub os: String,
    /// cgroup v2 only, or hybrid/v1.
    pub cgroups: String,
    /// The 1-minute load average when the harness started.
    pub load: String,
}

impl Machine {
    /// Reads it from /proc and /etc.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                matches!(k.trim(), "model name" | "Model" | "cpu model")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into());
        let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "v2".into()
        } else {
            "v1/hybrid".into()
        };
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpu,
            mem_mib: mem_kib / 1024,
            os,
            cgroups,
            load: loadavg(),
        }
    }
}

/// Unpacks the image in `archive` (an OCI layout or `docker save` tar) into `rootfs`: its
/// layers in order, with GNU tar (whiteouts are irrelevant for the one-layer busybox image).
pub fn extract_rootfs(logs: &Logs, archive: &Path, work: &Path, rootfs: &Path) -> Result<()> {
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout)?;
    std::fs::create_dir_all(rootfs)?;
    logs.capture(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&layout),
    )?;
    let read_json = |p: &Path| -> Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    };
    let blob = |digest: &str| -> Result<PathBuf> {
        let (alg, hex) = digest.split_once(':').context("digest without algorithm")?;
        if hex.contains('/') || alg.contains('/') {
            bail!("bad digest {digest}");
        }
        Ok(layout.join("blobs").join(alg).join(hex))
    };
    let layers: Vec<PathBuf> = if layout.join("index.json").exists() {
        let mut v = read_json(&layout.join("index.json"))?;
        // Follow nested indexes down to the first manifest.
        loop {
            let digest = v["manifests"][0]["digest"]
                .as_str()
                .context("index.json without manifests")?
                .to_string();
            v = read_json(&blob(&digest)?)?;
            if v.get("layers").is_some() {
                break;
            }
        }
        v["layers"]
            .as_array()
            .context("manifest without layers")?
            .iter()
            .map(|l| blob(l["digest"].as_str().unwrap_or_default()))
            .collect::<Result<_>>()?
    } else {
        let v = read_json(&layout.join("manifest.json"))?;
        v[0]["Layers"]
            .as_array()
            .context("manifest.json without Layers")?
            .iter()
            .map(|l| layout.join(l.as_str().unwrap_or_default()))
            .collect()
    };
    for layer in layers {
        logs.capture(
            Command::new("tar")
                .arg("-xf")
                .arg(&layer)
                .arg("-C")
                .arg(rootfs)
                .arg("--no-same-owner"),
        )?;
    }
    if !rootfs.join("bin/true").exists() && !rootfs.join("bin/true").is_symlink() {
        bail!("the image has no /bin/true");
    }
    Ok(())
}

/// The floor: one process in fresh pid, mount, uts, ipc and net namespaces, chrooted into
/// the busybox rootfs, running /bin/true.
pub fn floor_command(rootfs: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot",
    ])
    .arg(rootfs)
    .arg("/bin/true");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }

    #[test]
    fn descendants() {
        let p = |pid, ppid| Proc {
            pid,
            ppid,
            argv: vec![],
        };
        let procs = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1)];
        let mut d = with_descendants(&procs, &[10]);
        d.sort();
        assert_eq!(d, vec![10, 11, 12]);
    }
}
