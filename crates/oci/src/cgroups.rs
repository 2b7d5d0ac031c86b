//! Cgroup hierarchies: which layout the host has and where the runtime puts a container's
//! cgroup, so teardown can check that nothing was left behind.
//!
//! Only reads directory listings; creating, populating and removing cgroups is the OCI
//! runtime's job. The one write is `MigrationWarmer`'s, which moves nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name of the hybrid cgroup2 mount inside a v1 layout; it holds no controllers.
const HYBRID_UNIFIED: &str = "unified";

/// Which cgroup layout a host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 controllers under `<mount>/<controller>` (possibly with a hybrid
    /// `unified` cgroup2 mount holding no controllers).
    V1,
    /// cgroup v2 unified at `<mount>`.
    V2,
}

/// Detects the layout of the cgroup filesystem mounted at `mount` (normally /sys/fs/cgroup):
/// v2 when `<mount>/cgroup.controllers` exists, v1 otherwise.
pub fn detect(mount: &Path) -> CgroupLayout {
    if mount.join("cgroup.controllers").exists() {
        CgroupLayout::V2
    } else {
        CgroupLayout::V1
    }
}

/// The directories the runtime creates for an absolute cgroups path (one per v1
/// controller, one for v2) — what teardown must find gone.
///
/// For v1 the hierarchies are the real directories directly under `mount` except the
/// hybrid `unified` mount; symlinks (`cpu` → `cpu,cpuacct`) are skipped so a hierarchy is
/// listed once. The result is sorted. A mount that cannot be read gives no v1 directories.
pub fn dirs(mount: &Path, layout: CgroupLayout, cgroups_path: &str) -> Vec<PathBuf> {
    let relative = cgroups_path.trim_start_matches('/');
    match layout {
        CgroupLayout::V2 => vec![mount.join(relative)],
        CgroupLayout::V1 => {
            let Ok(entries) = std::fs::read_dir(mount) else {
                return Vec::new();
            };
            let mut hierarchies: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| e.file_name() != HYBRID_UNIFIED)
                .map(|e| e.path().join(relative))
                .collect();
            hierarchies.sort();
            hierarchies
        }
    }
}

/// The cgroup files and values a runtime writes for `r` under the given layout, as
/// `(controller dir or "", file, value)`: v1 `cpu.shares`/`cpu.cfs_quota_us`/
/// `memory.limit_in_bytes`/`pids.max`; v2 `cpu.weight` (runc's conversion from shares),
/// `cpu.max`, `memory.max`, `pids.max`. Used to check what the runtime applied.
pub fn settings(
    r: &crate::Resources,
    layout: CgroupLayout,
) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    let period = r.cpu_period.unwrap_or(100_000);
    match layout {
        CgroupLayout::V1 => {
            if let Some(shares) = r.cpu_shares {
                out.push(("cpu", "cpu.shares", shares.to_string()));
            }
            if let Some(quota) = r.cpu_quota {
                out.push(("cpu", "cpu.cfs_quota_us", quota.to_string()));
                out.push(("cpu", "cpu.cfs_period_us", period.to_string()));
            }
            if let Some(limit) = r.memory_limit {
                out.push(("memory", "memory.limit_in_bytes", limit.to_string()));
            }
            if let Some(limit) = r.pids_limit {
                out.push(("pids", "pids.max", limit.to_string()));
            }
        }
        CgroupLayout::V2 => {
            if let Some(shares) = r.cpu_shares {
                out.push(("", "cpu.weight", shares_to_weight(shares).to_string()));
            }
            if let Some(quota) = r.cpu_quota {
                out.push(("", "cpu.max", format!("{quota} {period}")));
            }
            if let Some(limit) = r.memory_limit {
                out.push(("", "memory.max", limit.to_string()));
            }
            if let Some(limit) = r.pids_limit {
                out.push(("", "pids.max", limit.to_string()));
            }
        }
    }
    out
}

/// The `cgroup.procs` file of the cgroup a process is in (`proc_cgroup`: its
/// `/proc/PID/cgroup`) on one hierarchy under `mount`: the unified one on v2; on v1 the
/// `pids` hierarchy if the process has one, else the first of its hierarchies that is
/// mounted as `<mount>/<controllers>` (`cpu,cpuacct`, `systemd` for `name=systemd`).
pub fn own_procs_file(mount: &Path, layout: CgroupLayout, proc_cgroup: &str) -> Option<PathBuf> {
    let entries = proc_cgroup.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((controllers, path.trim_start_matches('/')))
    });
    let file = |dir: PathBuf| Some(dir.join("cgroup.procs")).filter(|f| f.exists());
    match layout {
        CgroupLayout::V2 => entries
            .filter(|(c, _)| c.is_empty())
            .find_map(|(_, path)| file(mount.join(path))),
        CgroupLayout::V1 => {
            let mut v1: Vec<(&str, &str)> = entries
                .filter(|(c, _)| !c.is_empty())
                .map(|(c, path)| (c.strip_prefix("name=").unwrap_or(c), path))
                .collect();
            v1.sort_by_key(|(c, _)| *c != "pids");
            v1.into_iter()
                .find_map(|(c, path)| file(mount.join(c).join(path)))
        }
    }
}

/// Keeps the kernel's cgroup migrations fast while containers start.
///
/// Every OCI runtime `create` and `exec` moves a process into a cgroup, and every such
/// move takes `cgroup_threadgroup_rwsem` for writing: after a quiet moment the first one
/// waits for an RCU grace period while the lock switches to its writer mode (14-37 ms
/// measured on cgroup v1 here; v2 without `favordynmods` or `CLONE_INTO_CGROUP` is the
/// same), later ones take ~0.1 ms until a grace period after the last. A warmer writes its
/// own process's pid to the `cgroup.procs` of the cgroup it is already in (a move that moves
/// nothing but takes the lock like any other) on a thread: once at once, so the grace
/// period passes while the caller does other work, then every `INTERVAL` so the lock stays
/// in writer mode, until dropped or `limit` has passed. Warmers that share a `shared` lock
/// file take turns: only the one holding it writes (100 pods starting at once need one
/// writer, not 100), the others sleep in `flock` until it lets go (a grace period after
/// its last write the lock is still in writer mode, so the next one is in time). The
/// thread is detached: dropping never waits. Where no file is found or writable it does nothing.
pub struct MigrationWarmer {
    stop: Arc<AtomicBool>,
    until: Instant,
}

impl MigrationWarmer {
    /// Less than the shortest grace period, so the lock never leaves writer mode.
    pub const INTERVAL: Duration = Duration::from_millis(2);

    /// Starts warming for at most `limit`, taking turns with the warmers of `shared`.
    pub fn start(limit: Duration, shared: Option<&Path>) -> Self {
        use nix::fcntl::{Flock, FlockArg};
        let stop = Arc::new(AtomicBool::new(false));
        let until = Instant::now() + limit;
        let flag = Arc::clone(&stop);
        let shared = shared.map(Path::to_path_buf);
        let spawned = std::thread::Builder::new()
            .name("cgroup-warm".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                use std::io::Write;
                let mount = Path::new("/sys/fs/cgroup");
                let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
                    return;
                };
                let Some(path) = own_procs_file(mount, detect(mount), &own) else {
                    return;
                };
                let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) else {
                    return;
                };
                // Waits (asleep in flock, no CPU) for its turn; without a lock file it warms
                // alone. Dropped or timed out while waiting: it lets go as soon as it wakes.
                let turn = shared.and_then(|p| {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(p)
                        .ok()?;
                    Flock::lock(f, FlockArg::LockExclusive).ok()
                });
                let pid = std::process::id().to_string();
                while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                    if file.write_all(pid.as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(Self::INTERVAL);
                }
                drop(turn);
            });
        if spawned.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        Self { stop, until }
    }

    /// Whether it still warms (not dropped, its limit not passed).
    pub fn is_warming(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.until
    }
}

impl Drop for MigrationWarmer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// runc's (and the kubelet's) conversion from cgroup v1 shares to a v2 weight.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {

    #[test]
    fn settings_for_v1_and_v2() {
        let r = crate::Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
        };
        let v1 = settings(&r, CgroupLayout::V1);
        assert!(v1.contains(&("cpu", "cpu.shares", "512".into())));
        assert!(v1.contains(&("cpu", "cpu.cfs_quota_us", "50000".into())));
        assert!(v1.contains(&("memory", "memory.limit_in_bytes", "67108864".into())));
        assert!(v1.contains(&("pids", "pids.max", "100".into())));
        let v2 = settings(&r, CgroupLayout::V2);
        assert!(v2.contains(&("", "cpu.weight", "20".into())));
        assert!(v2.contains(&("", "cpu.max", "50000 100000".into())));
        assert!(v2.contains(&("", "memory.max", "67108864".into())));
        assert!(settings(&crate::Resources::default(), CgroupLayout::V2).is_empty());
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
    use std::fs;

    use super::*;

    #[test]
    fn v1_hybrid_layout() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        for c in ["cpu,cpuacct", "memory", "pids", "systemd", "unified"] {
            fs::create_dir(m.join(c)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", m.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", m.join("cpuacct")).unwrap();
        assert_eq!(detect(m), CgroupLayout::V1);
        assert_eq!(
            dirs(m, CgroupLayout::V1, "/peapod/abc"),
            vec![
                m.join("cpu,cpuacct/peapod/abc"),
                m.join("memory/peapod/abc"),
                m.join("pids/peapod/abc"),
                m.join("systemd/peapod/abc"),
            ]
        );
    }

    #[test]
    fn v2_layout() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        fs::write(m.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::create_dir(m.join("system.slice")).unwrap();
        assert_eq!(detect(m), CgroupLayout::V2);
        assert_eq!(
            dirs(m, CgroupLayout::V2, "/peapod/abc"),
            vec![m.join("peapod/abc")]
        );
    }

    #[test]
    fn own_procs_file_on_v1_and_v2() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        for d in ["cpu,cpuacct/user", "pids/user/x", "systemd/session"] {
            fs::create_dir_all(m.join(d)).unwrap();
            fs::write(m.join(d).join("cgroup.procs"), "").unwrap();
        }
        let own = "12:pids:/user/x\n4:cpu,cpuacct:/user\n1:name=systemd:/session\n0::/\n";
        assert_eq!(
            own_procs_file(m, CgroupLayout::V1, own),
            Some(m.join("pids/user/x/cgroup.procs"))
        );
        // Without pids: the first hierarchy that is mounted; `name=` is the directory.
        let no_pids = "9:blkio:/gone\n1:name=systemd:/session\n";
        assert_eq!(
            own_procs_file(m, CgroupLayout::V1, no_pids),
            Some(m.join("systemd/session/cgroup.procs"))
        );
        assert_eq!(own_procs_file(m, CgroupLayout::V1, "0::/\n"), None);
        fs::create_dir_all(m.join("system.slice/peapod.service")).unwrap();
        fs::write(m.join("system.slice/peapod.service/cgroup.procs"), "").unwrap();
        assert_eq!(
            own_procs_file(m, CgroupLayout::V2, "0::/system.slice/peapod.service\n"),
            Some(m.join("system.slice/peapod.service/cgroup.procs"))
        );
        assert_eq!(own_procs_file(m, CgroupLayout::V2, "0::/missing\n"), None);
    }

    #[test]
    fn a_warmer_stops_at_its_limit_or_when_dropped() {
        let w = MigrationWarmer::start(Duration::from_millis(20), None);
        assert!(w.is_warming());
        std::thread::sleep(Duration::from_millis(30));
        assert!(!w.is_warming());
        let w = MigrationWarmer::start(Duration::from_secs(60), None);
        let flag = Arc::clone(&w.stop);
        drop(w);
        assert!(flag.load(Ordering::Relaxed));
    }

    #[test]
    fn warmers_of_one_lock_take_turns() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test writes to the host's cgroup.procs: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("warm.lock");
        let held = || peapod_store::Lock::is_held(&lock).unwrap();
        let eventually = |want: bool| {
            let end = Instant::now() + Duration::from_secs(5);
            while held() != want && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            held() == want
        };
        let a = MigrationWarmer::start(Duration::from_secs(60), Some(&lock));
        assert!(eventually(true), "the first warmer takes the turn");
        let b = MigrationWarmer::start(Duration::from_secs(60), Some(&lock));
        drop(a);
        // The first one's thread lets go within an interval; the second takes over.
        std::thread::sleep(MigrationWarmer::INTERVAL * 5);
        assert!(eventually(true), "the second warmer takes over");
        drop(b);
        assert!(
            eventually(false),
            "no warmer holds the turn once both are dropped"
        );
    }

    #[test]
    fn unreadable_mount_has_no_v1_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(detect(&missing), CgroupLayout::V1);
        assert!(dirs(&missing, CgroupLayout::V1, "/x").is_empty());
    }
}
