//! The pure builder from a [`ContainerPlan`] to an OCI runtime [`Spec`]: containerd's and
//! Docker's secure defaults (capabilities, mounts, masked and read-only paths, device
//! allow-list, seccomp) plus what the plan says.
//!
//! No I/O: the same plan always gives the same spec (golden-tested in `tests/spec_golden.rs`).

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxBuilder, LinuxCapabilities, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, Process, RootBuilder, Spec, UserBuilder,
};

use crate::{seccomp, ContainerPlan, Namespace, Seccomp};

/// The OCI runtime spec version the generated configs declare.
pub const OCI_VERSION: &str = "1.0.2";

/// The 14 capabilities Docker and containerd give a container by default, in containerd's
/// order.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from the container (containerd's list plus `/proc/interrupts`): a file gets
/// `/dev/null` mounted over it, a directory an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only inside the container.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Character devices a container may use (type, major, minor; `None` is any minor), on top
/// of a deny-all rule: null, zero, full, random, urandom, tty, console, ptmx, and the pty
/// slaves of its own devpts.
pub const ALLOWED_CHAR_DEVICES: [(i64, Option<i64>); 9] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
];

// derive_builder only fails when a field without a default is missing; every oci-spec
// builder field has a default, so `build()` cannot fail here.
const BUILD: &str = "oci-spec builders have defaults for every field";

/// The pure builder: secure defaults (14 default capabilities, masked and read-only paths,
/// standard /dev, no_new_privs, RuntimeDefault seccomp) plus the plan.
///
/// rlimits are left out, so the container inherits the runtime's (raising a hard limit
/// would need CAP_SYS_RESOURCE). With a terminal, `TERM=xterm` is added unless the
/// environment sets `TERM`, as Docker does. The hostname is set only with a new uts
/// namespace.
pub fn spec_for(plan: &ContainerPlan) -> Spec {
    let hostname = match plan.namespaces.uts {
        Namespace::New => plan.hostname.clone(),
        Namespace::Join(_) | Namespace::Host => None,
    };
    let annotations: Option<HashMap<String, String>> = (!plan.annotations.is_empty()).then(|| {
        plan.annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    // oci-spec's `Default` (which its builders start from too) is a demo container with a
    // hostname, rlimits and inheritable capabilities: pin every field instead.
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_owned())
        .set_root(Some(
            RootBuilder::default()
                .path(&plan.rootfs)
                .readonly(false)
                .build()
                .expect(BUILD),
        ))
        .set_mounts(Some(mounts(plan)))
        .set_process(Some(process(plan)))
        .set_hostname(hostname)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(annotations)
        .set_linux(Some(linux(plan)))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    spec
}

fn process(plan: &ContainerPlan) -> Process {
    let caps: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);
    let mut env = plan.process.env.clone();
    if plan.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    let user = UserBuilder::default()
        .uid(plan.user.uid)
        .gid(plan.user.gid)
        .build()
        .expect(BUILD);
    let mut process = Process::default();
    process
        .set_terminal(Some(plan.terminal))
        .set_console_size(None)
        .set_user(user)
        .set_args(Some(plan.process.args.clone()))
        .set_command_line(None)
        .set_env(Some(env))
        .set_cwd(PathBuf::from(&plan.process.cwd))
        .set_capabilities(Some(capabilities))
        .set_rlimits(None)
        .set_no_new_privileges(Some(true))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    process
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect(BUILD)
}

fn mounts(plan: &ContainerPlan) -> Vec<Mount> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for bind in &plan.mounts {
        let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
        if bind.readonly {
            options.push("ro".to_owned());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&bind.destination)
                .typ("bind")
                .source(&bind.source)
                .options(options)
                .build()
                .expect(BUILD),
        );
    }
    mounts
}

fn namespace(typ: LinuxNamespaceType, ns: &Namespace) -> Option<LinuxNamespace> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    match ns {
        Namespace::New => Some(builder.build().expect(BUILD)),
        Namespace::Join(path) => Some(builder.path(path.clone()).build().expect(BUILD)),
        Namespace::Host => None,
    }
}

fn linux(plan: &ContainerPlan) -> Linux {
    let ns = &plan.namespaces;
    let namespaces: Vec<LinuxNamespace> = [
        (LinuxNamespaceType::Pid, &ns.pid),
        (LinuxNamespaceType::Network, &ns.network),
        (LinuxNamespaceType::Ipc, &ns.ipc),
        (LinuxNamespaceType::Uts, &ns.uts),
        (LinuxNamespaceType::Mount, &Namespace::New),
        (LinuxNamespaceType::Cgroup, &ns.cgroup),
    ]
    .into_iter()
    .filter_map(|(typ, ns)| namespace(typ, ns))
    .collect();

    let mut devices = vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .expect(BUILD)];
    for (major, minor) in ALLOWED_CHAR_DEVICES {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(major)
            .access("rwm");
        if let Some(minor) = minor {
            rule = rule.minor(minor);
        }
        devices.push(rule.build().expect(BUILD));
    }

    let mut builder = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&plan.cgroups_path))
        .resources(resources(&plan.resources, devices))
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec());
    if plan.seccomp == Seccomp::RuntimeDefault {
        builder = builder.seccomp(seccomp::runtime_default());
    }
    builder.build().expect(BUILD)
}

/// The cgroup part of the spec: the device allow-list plus the plan's limits.
fn resources(
    r: &crate::Resources,
    devices: Vec<oci_spec::runtime::LinuxDeviceCgroup>,
) -> oci_spec::runtime::LinuxResources {
    let mut b = LinuxResourcesBuilder::default().devices(devices);
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() {
        let mut cpu = oci_spec::runtime::LinuxCpuBuilder::default();
        if let Some(shares) = r.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some(quota) = r.cpu_quota {
            cpu = cpu.quota(quota).period(r.cpu_period.unwrap_or(100_000));
        }
        b = b.cpu(cpu.build().expect(BUILD));
    }
    if let Some(limit) = r.memory_limit {
        b = b.memory(
            oci_spec::runtime::LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .expect(BUILD),
        );
    }
    if let Some(limit) = r.pids_limit {
        b = b.pids(
            oci_spec::runtime::LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .expect(BUILD),
        );
    }
    b.build().expect(BUILD)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{BindMount, MergedProcess, Namespaces, NumericUser};

    fn plan() -> ContainerPlan {
        ContainerPlan {
            rootfs: "/run/peapod/rootfs/c1".into(),
            process: MergedProcess {
                args: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: "0".into(),
            },
            user: NumericUser {
                uid: 1000,
                gid: 1000,
            },
            terminal: false,
            hostname: Some("c1".into()),
            namespaces: Namespaces {
                network: Namespace::New,
                ipc: Namespace::New,
                uts: Namespace::New,
                pid: Namespace::New,
                cgroup: Namespace::New,
            },
            mounts: vec![],
            cgroups_path: "/peapod/c1".into(),
            seccomp: Seccomp::RuntimeDefault,
            annotations: BTreeMap::new(),
            resources: Default::default(),
        }
    }

    fn ns_entry(spec: &Spec, typ: LinuxNamespaceType) -> Option<LinuxNamespace> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == typ)
            .cloned()
    }

    #[test]
    fn process_is_locked_down() {
        let spec = spec_for(&plan());
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        let caps = p.capabilities().as_ref().unwrap();
        let want: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
        assert_eq!(want.len(), 14);
        assert_eq!(caps.bounding().as_ref(), Some(&want));
        assert_eq!(caps.effective().as_ref(), Some(&want));
        assert_eq!(caps.permitted().as_ref(), Some(&want));
        assert_eq!(caps.inheritable(), &None);
        assert_eq!(caps.ambient(), &None);
        assert_eq!(p.rlimits(), &None);
        assert!(!p
            .env()
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("TERM=")));
    }

    #[test]
    fn terminal_adds_term_unless_set() {
        let mut pl = plan();
        pl.terminal = true;
        let env = spec_for(&pl)
            .process()
            .as_ref()
            .unwrap()
            .env()
            .clone()
            .unwrap();
        assert_eq!(env, ["PATH=/bin", "TERM=xterm"]);
        pl.process.env.push("TERM=vt100".into());
        let env = spec_for(&pl)
            .process()
            .as_ref()
            .unwrap()
            .env()
            .clone()
            .unwrap();
        assert_eq!(env, ["PATH=/bin", "TERM=vt100"]);
    }

    #[test]
    fn masked_readonly_and_devices() {
        let spec = spec_for(&plan());
        let linux = spec.linux().as_ref().unwrap();
        let masked = linux.masked_paths().as_ref().unwrap();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/sys/firmware",
            "/proc/interrupts",
        ] {
            assert!(masked.iter().any(|m| m == p), "{p} masked");
        }
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/sys"));
        let devices = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert!(!devices[0].allow() && devices[0].typ().is_none() && devices[0].major().is_none());
        assert_eq!(devices.len(), 1 + ALLOWED_CHAR_DEVICES.len());
        assert!(devices[1..]
            .iter()
            .all(|d| d.allow() && d.typ() == Some(LinuxDeviceType::C)));
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(std::path::Path::new("/peapod/c1"))
        );
        assert!(linux.seccomp().is_some());
    }

    #[test]
    fn namespaces_follow_the_plan() {
        let mut pl = plan();
        pl.namespaces.network = Namespace::Join("/proc/42/ns/net".into());
        pl.namespaces.ipc = Namespace::Host;
        pl.namespaces.uts = Namespace::Host;
        let spec = spec_for(&pl);
        let net = ns_entry(&spec, LinuxNamespaceType::Network).unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(std::path::Path::new("/proc/42/ns/net"))
        );
        assert!(ns_entry(&spec, LinuxNamespaceType::Ipc).is_none());
        assert!(ns_entry(&spec, LinuxNamespaceType::Uts).is_none());
        assert!(ns_entry(&spec, LinuxNamespaceType::Mount)
            .unwrap()
            .path()
            .is_none());
        assert!(ns_entry(&spec, LinuxNamespaceType::Pid)
            .unwrap()
            .path()
            .is_none());
        assert!(
            spec.hostname().is_none(),
            "no hostname without a uts namespace of its own"
        );
        assert_eq!(spec_for(&plan()).hostname().as_deref(), Some("c1"));
    }

    #[test]
    fn host_network_has_no_net_entry() {
        let mut pl = plan();
        pl.namespaces.network = Namespace::Host;
        let spec = spec_for(&pl);
        assert!(ns_entry(&spec, LinuxNamespaceType::Network).is_none());
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn binds_come_after_the_defaults_in_order() {
        let mut pl = plan();
        pl.mounts = vec![
            BindMount {
                source: "/srv/a".into(),
                destination: "/a".into(),
                readonly: false,
            },
            BindMount {
                source: "/srv/b".into(),
                destination: "/b".into(),
                readonly: true,
            },
        ];
        let spec = spec_for(&pl);
        let mounts = spec.mounts().as_ref().unwrap();
        let dests: Vec<_> = mounts
            .iter()
            .map(|m| m.destination().to_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/a",
                "/b"
            ]
        );
        assert_eq!(
            mounts[7].options().as_deref(),
            Some(&["rbind".into(), "rprivate".into()][..])
        );
        assert_eq!(
            mounts[8].options().as_deref(),
            Some(&["rbind".into(), "rprivate".into(), "ro".into()][..])
        );
        assert_eq!(
            mounts[8].source().as_deref(),
            Some(std::path::Path::new("/srv/b"))
        );
    }

    #[test]
    fn unconfined_has_no_seccomp() {
        let mut pl = plan();
        pl.seccomp = Seccomp::Unconfined;
        assert!(spec_for(&pl).linux().as_ref().unwrap().seccomp().is_none());
    }
}
