//! The cgroup v1 hierarchies `libcgroups` does not manage — named ones such as
//! `name=systemd`, and a hybrid host's controller-less `unified` cgroup2 mount — joined and
//! removed as runc does, so a container is in a cgroup of every mounted hierarchy (what
//! `peapod_oci::cgroups::dirs` lists and teardown checks); and the container's v1
//! `/sys/fs/cgroup` mount where libcontainer cannot make it ([`emulate_v1_mount`]).

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Mount, MountBuilder, Spec};
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

/// Where the container's freezer state lives (v1: the `freezer` hierarchy's directory;
/// v2: the container's cgroup), and, on v1, a directory of another hierarchy that exists
/// as long as the container's cgroup does (`pids`, else `memory`).
pub fn freezer_dirs(cgroups_path: &Path) -> (PathBuf, Option<PathBuf>) {
    let mount = Path::new(MOUNT);
    let relative = cgroups_path.to_string_lossy();
    let relative = relative.trim_start_matches('/');
    match cgroups::detect(mount) {
        CgroupLayout::V2 => (mount.join(relative), None),
        CgroupLayout::V1 => {
            let witness = ["pids", "memory"]
                .iter()
                .map(|h| mount.join(h))
                .find(|h| h.is_dir())
                .map(|h| h.join(relative));
            (mount.join("freezer").join(relative), witness)
        }
    }
}

/// For a spec on a cgroup v1 host that mounts `/sys/fs/cgroup` (type `cgroup`) read-only,
/// or whose container joins an existing pid namespace (a pod's shared one) without a cgroup
/// namespace: replaces that mount by binds of the container's cgroups (`cgroups_path`, the
/// path libcontainer puts the container in), and says so.
///
/// libcontainer 0.7 makes that mount read-write whatever its options say (runc honours
/// `ro`), and builds it in the container's init from the cgroups of the host process whose
/// pid is the init's pid *inside* its pid namespace (`Process::new(getpid())` on the host's
/// /proc, because `getppid()` is 0 in a joined namespace). In a namespace of its own that
/// pid is 1, the host's init, as intended; in a joined one it is an unrelated host process
/// or none at all, and the create fails with "failed to prepare rootfs" — where runc
/// succeeds. The replacement is what libcontainer mounts when that lookup works: a tmpfs,
/// then each hierarchy's directory of the container bound at its name (and at each name of
/// a co-mounted one, `cpu,cpuacct`, where libcontainer links), with the original mount's
/// flags (read-only as the spec asks).
pub fn emulate_v1_mount(spec: &mut Spec, cgroups_path: &Path) -> bool {
    if cgroups::detect(Path::new(MOUNT)) != CgroupLayout::V1 {
        return false;
    }
    let Some(index) = spec
        .mounts()
        .as_ref()
        .and_then(|m| m.iter().position(|m| m.typ().as_deref() == Some("cgroup")))
    else {
        return false;
    };
    let readonly = spec
        .mounts()
        .as_ref()
        .is_some_and(|m| is_readonly(&m[index]));
    if !readonly && !joins_pid_namespace(spec) {
        return false;
    }
    let Ok(hierarchies) = libcgroups::v1::util::list_subsystem_mount_points() else {
        return false;
    };
    let hierarchies: Vec<PathBuf> = hierarchies
        .into_iter()
        .filter(|h| h.parent() == Some(Path::new(MOUNT)))
        .collect();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let replacement = emulated_mounts(&mounts[index], &hierarchies, cgroups_path);
    mounts.splice(index..=index, replacement);
    spec.set_mounts(Some(mounts));
    true
}

fn is_readonly(mount: &Mount) -> bool {
    mount
        .options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|o| o == "ro"))
}

/// Whether the spec puts the container in an existing pid namespace and no new cgroup one.
fn joins_pid_namespace(spec: &Spec) -> bool {
    let Some(namespaces) = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()) else {
        return false;
    };
    let pid_path = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_some());
    let cgroup_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup);
    pid_path && !cgroup_ns
}

/// The tmpfs and binds standing for `cgroup_mount`: `hierarchies` are the host's v1 mount
/// points (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu,cpuacct`, ...), `cgroups_path` the
/// container's cgroup in each.
fn emulated_mounts(
    cgroup_mount: &Mount,
    hierarchies: &[PathBuf],
    cgroups_path: &Path,
) -> Vec<Mount> {
    let destination = cgroup_mount.destination();
    let relative = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let readonly = is_readonly(cgroup_mount);
    let mut bind_options: Vec<String> = ["rbind", "nosuid", "noexec", "nodev"]
        .map(String::from)
        .to_vec();
    if readonly {
        bind_options.push("ro".into());
    }
    let tmpfs = MountBuilder::default()
        .destination(destination.clone())
        .typ("tmpfs")
        .source("tmpfs")
        .options(
            ["noexec", "nosuid", "nodev", "mode=755"]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .expect("a tmpfs mount builds");
    let mut out = vec![tmpfs];
    for hierarchy in hierarchies {
        let Some(name) = hierarchy.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut names = vec![name];
        if name.contains(',') {
            names.extend(name.split(','));
        }
        for n in names {
            out.push(
                MountBuilder::default()
                    .destination(destination.join(n))
                    .typ("bind")
                    .source(hierarchy.join(relative))
                    .options(bind_options.clone())
                    .build()
                    .expect("a bind mount builds"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_mount_becomes_a_tmpfs_and_one_bind_per_hierarchy_name() {
        let cgroup = MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(
                ["nosuid", "noexec", "nodev", "relatime", "ro"]
                    .map(String::from)
                    .to_vec(),
            )
            .build()
            .unwrap();
        let hierarchies = [
            PathBuf::from("/sys/fs/cgroup/memory"),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            PathBuf::from("/sys/fs/cgroup/systemd"),
        ];
        let mounts = emulated_mounts(&cgroup, &hierarchies, Path::new("/pp/pod1/c1"));
        let got: Vec<(String, String, String, String)> = mounts
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.typ().clone().unwrap(),
                    m.source().as_ref().unwrap().display().to_string(),
                    m.options().as_ref().unwrap().join(","),
                )
            })
            .collect();
        let bind = |dest: &str, src: &str| {
            (
                format!("/sys/fs/cgroup/{dest}"),
                "bind".to_string(),
                format!("/sys/fs/cgroup/{src}/pp/pod1/c1"),
                "rbind,nosuid,noexec,nodev,ro".to_string(),
            )
        };
        assert_eq!(
            got,
            vec![
                (
                    "/sys/fs/cgroup".to_string(),
                    "tmpfs".to_string(),
                    "tmpfs".to_string(),
                    "noexec,nosuid,nodev,mode=755".to_string()
                ),
                bind("memory", "memory"),
                bind("cpu,cpuacct", "cpu,cpuacct"),
                bind("cpu", "cpu,cpuacct"),
                bind("cpuacct", "cpu,cpuacct"),
                bind("systemd", "systemd"),
            ]
        );
    }

    #[test]
    fn only_a_joined_pid_namespace_without_a_cgroup_one_needs_it() {
        use libcontainer::oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};
        let ns = |typ, path: Option<&str>| {
            let mut b = LinuxNamespaceBuilder::default().typ(typ);
            if let Some(p) = path {
                b = b.path(p);
            }
            b.build().unwrap()
        };
        let spec = |namespaces| {
            SpecBuilder::default()
                .linux(
                    LinuxBuilder::default()
                        .namespaces(namespaces)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        let joined = ns(LinuxNamespaceType::Pid, Some("/proc/42/ns/pid"));
        assert!(joins_pid_namespace(&spec(vec![joined.clone()])));
        assert!(!joins_pid_namespace(&spec(vec![ns(
            LinuxNamespaceType::Pid,
            None
        )])));
        assert!(!joins_pid_namespace(&spec(vec![
            joined,
            ns(LinuxNamespaceType::Cgroup, None)
        ])));
    }
}
