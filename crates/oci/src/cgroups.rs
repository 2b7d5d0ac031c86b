//! Cgroup hierarchies: which layout the host has and where the runtime puts a container's
//! cgroup, so teardown can check that nothing was left behind.
//!
//! Only reads directory listings; creating, populating and removing cgroups is the OCI
//! runtime's job.

use std::path::{Path, PathBuf};

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
    fn unreadable_mount_has_no_v1_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(detect(&missing), CgroupLayout::V1);
        assert!(dirs(&missing, CgroupLayout::V1, "/x").is_empty());
    }
}
