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

/// Puts the calling process into the container's cgroup of every hierarchy `libcgroups`
/// leaves out, before the container's processes are forked: they inherit the membership.
///
/// Done before libcontainer moves its intermediate process into the other hierarchies,
/// the kernel's cgroup v1 migrations come in one burst, which pays the writer side of
/// `cgroup_threadgroup_rwsem` (an RCU grace period, about 8–10 ms) once instead of twice.
/// The calling process is `create`'s, which exits right after; [`leave_extra`] undoes this
/// when the create fails.
pub fn join_extra_self(cgroups_path: &Path) -> std::io::Result<()> {
    for dir in extra_dirs(cgroups_path) {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())?;
    }
    Ok(())
}

/// After a failed create: moves the calling process to the root of those hierarchies and
/// removes the container's cgroups there.
pub fn leave_extra(cgroups_path: &Path) {
    let relative = cgroups_path.to_string_lossy();
    let relative = relative.trim_start_matches('/');
    for dir in extra_dirs(cgroups_path) {
        let root = dir
            .to_string_lossy()
            .strip_suffix(relative)
            .map(PathBuf::from);
        if let Some(root) = root {
            let _ = std::fs::write(root.join("cgroup.procs"), std::process::id().to_string());
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Removes those cgroups (empty once the container's processes are gone).
pub fn remove_extra(cgroups_path: &Path) {
    for dir in extra_dirs(cgroups_path) {
        let _ = std::fs::remove_dir(&dir);
    }
}
