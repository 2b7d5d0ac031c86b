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

#[cfg(test)]
mod tests {
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
