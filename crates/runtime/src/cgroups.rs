//! The cgroup v1 hierarchies `libcgroups` does not manage — named ones such as
//! `name=systemd`, and a hybrid host's controller-less `unified` cgroup2 mount — joined and
//! removed as runc does, so a container is in a cgroup of every mounted hierarchy (what
//! `peapod_oci::cgroups::dirs` lists and teardown checks).

use std::path::{Path, PathBuf};

use peapod_oci::cgroups::{self, CgroupLayout};

const MOUNT: &str = "/sys/fs/cgroup";

/// The container's directories in hierarchies without a controller `libcgroups` handles.
fn extra_dirs(cgroups_path: &Path) -> Vec<PathBuf> {
    let mount = Path::new(MOUNT);
    if cgroups::detect(mount) != CgroupLayout::V1 {
        return Vec::new();
    }
    let relative = cgroups_path.to_string_lossy();
    let relative = relative.trim_start_matches('/');
    let mut dirs: Vec<PathBuf> = cgroups::dirs(mount, CgroupLayout::V1, relative)
        .into_iter()
        .filter(|d| {
            d.strip_prefix(mount)
                .ok()
                .and_then(|p| p.components().next())
                .is_some_and(|h| !is_managed(&h.as_os_str().to_string_lossy()))
        })
        .collect();
    let unified = mount.join("unified");
    if unified.join("cgroup.procs").exists() {
        dirs.push(unified.join(relative));
    }
    dirs
}

/// Whether a v1 hierarchy directory holds a controller `libcgroups` manages.
fn is_managed(hierarchy: &str) -> bool {
    const CONTROLLERS: [&str; 12] = [
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "hugetlb",
        "memory",
        "pids",
        "perf_event",
        "blkio",
        "net_cls",
        "net_prio",
        "freezer",
    ];
    hierarchy.split(',').any(|c| CONTROLLERS.contains(&c))
}

/// Puts `pid` into the container's cgroup of every hierarchy `libcgroups` left out.
pub fn join_extra(cgroups_path: &Path, pid: i32) -> std::io::Result<()> {
    for dir in extra_dirs(cgroups_path) {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    }
    Ok(())
}

/// Removes those cgroups (empty once the container's processes are gone).
pub fn remove_extra(cgroups_path: &Path) {
    for dir in extra_dirs(cgroups_path) {
        let _ = std::fs::remove_dir(&dir);
    }
}
