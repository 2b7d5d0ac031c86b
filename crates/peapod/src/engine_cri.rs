//! What the CRI front needs of the engine: pod sandboxes made from a `PodSandboxConfig`
//! and containers made inside them from a `ContainerConfig`, on the same records as every
//! other pod and container.
//!
//! A CRI sandbox is an engine pod without containers of its own: its pod monitor runs only
//! the infra process, and its id (the CRI sandbox id) is the infra record's 64-hex id. The
//! CRI's view of it (the kubelet's metadata, labels, annotations, log directory, namespace
//! modes, whether it was stopped) is `lib/pods/<uid>/cri.json`. A CRI container is an
//! ordinary engine container (its own monitor, `container:<infra>` network, the infra's
//! ipc and uts namespaces by path) whose CRI view is `lib/containers/<id>/cri.json`.
//! Recovery leaves CRI sandboxes alone (the kubelet re-creates sandboxes, with a new
//! attempt) and nothing restarts CRI containers (the kubelet does).
//!
//! It does not speak gRPC: `cri/` maps these records to CRI messages.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use peapod_api::status::{ObservedContainer, ObservedPod, ObservedState};
use peapod_cri::v1 as cri;
use peapod_oci::runtime::Runtime;
use peapod_oci::ProcessOverrides;
use peapod_store::Lock;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{proc_start_time, user_error, wait_until, Container, Engine};
use crate::pod::{container_name, k8s_time};
use crate::record::{ContainerConfig, MountRecord, NetworkMode, Phase, PodLink, State};

/// The file holding the CRI view of a sandbox (in its pod directory) or of a container (in
/// its container directory).
pub const CRI_RECORD: &str = "cri.json";

/// A namespace mode as CRI names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsMode {
    /// The pod's.
    #[default]
    Pod,
    /// The container's own.
    Container,
    /// The node's.
    Node,
    /// Another container's (`target_id`).
    Target,
}

impl NsMode {
    /// From the CRI enum value.
    pub fn from_cri(v: i32) -> Self {
        match cri::NamespaceMode::try_from(v) {
            Ok(cri::NamespaceMode::Container) => Self::Container,
            Ok(cri::NamespaceMode::Node) => Self::Node,
            Ok(cri::NamespaceMode::Target) => Self::Target,
            _ => Self::Pod,
        }
    }

    /// To the CRI enum value.
    pub fn to_cri(self) -> i32 {
        (match self {
            Self::Pod => cri::NamespaceMode::Pod,
            Self::Container => cri::NamespaceMode::Container,
            Self::Node => cri::NamespaceMode::Node,
            Self::Target => cri::NamespaceMode::Target,
        }) as i32
    }
}

/// The CRI view of a sandbox (`lib/pods/<uid>/cri.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriSandbox {
    /// The kubelet's pod name.
    pub name: String,
    /// The kubelet's pod namespace.
    pub namespace: String,
    /// The kubelet's pod uid (not the engine pod's).
    pub kube_uid: String,
    /// The kubelet's sandbox attempt.
    pub attempt: u32,
    /// When RunPodSandbox began (ns since the epoch).
    pub created_at: i64,
    /// Labels as given.
    pub labels: BTreeMap<String, String>,
    /// Annotations as given.
    pub annotations: BTreeMap<String, String>,
    /// Where the kubelet wants container logs (container log paths are relative to it).
    pub log_directory: String,
    /// The runtime handler asked for ("" is the default runtime).
    pub runtime_handler: String,
    /// Network namespace mode (POD or NODE).
    pub network: NsMode,
    /// Pid namespace mode (POD shares one among the containers; CONTAINER; NODE).
    pub pid: NsMode,
    /// Ipc namespace mode (POD or NODE).
    pub ipc: NsMode,
    /// The cgroup parent the kubelet gave ("" when none): containers' cgroups go under it.
    pub cgroup_parent: String,
    /// Namespaced sysctls applied to every container of the sandbox.
    pub sysctls: BTreeMap<String, String>,
    /// Port mappings as asked (protocol, container port, host port, host IP); those with
    /// a host port are published by the pod monitor (`hostport::cri_host_ports`).
    pub port_mappings: Vec<(i32, i32, i32, String)>,
    /// StopPodSandbox was called: the sandbox is NOTREADY for good.
    pub stopped: bool,
}

/// The CRI view of a container (`lib/containers/<id>/cri.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriContainer {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The kubelet's container name.
    pub name: String,
    /// The kubelet's restart attempt.
    pub attempt: u32,
    /// The image as the request named it.
    pub image: String,
    /// The image the user wrote in the pod spec, when the kubelet says.
    pub user_specified_image: String,
    /// The image's digest reference or id.
    pub image_ref: String,
    /// Labels as given.
    pub labels: BTreeMap<String, String>,
    /// Annotations as given.
    pub annotations: BTreeMap<String, String>,
    /// Mounts as given (container path, host path, readonly, propagation).
    pub mounts: Vec<(String, String, bool, i32)>,
    /// The absolute log path ("" when the kubelet gave none).
    pub log_path: String,
    /// The cgroup resources asked for.
    pub resources: Option<(i64, i64, i64, i64)>,
    /// `stdin_once`: the first attached client's end of stdin closes the container's.
    #[serde(default)]
    pub stdin_once: bool,
}

/// One CRI sandbox as stored, with what is observed now.
#[derive(Debug, Clone)]
pub struct SandboxView {
    /// The CRI sandbox id (the infra record's id).
    pub id: String,
    /// The engine pod's uid.
    pub uid: String,
    /// The engine pod's name (what `peapod get pods` shows).
    pub pod_name: String,
    /// The CRI view.
    pub record: CriSandbox,
    /// The infra record.
    pub infra: Option<Container>,
}

impl SandboxView {
    /// SANDBOX_READY: not stopped and its infra process alive.
    pub fn ready(&self) -> bool {
        !self.record.stopped
            && self
                .infra
                .as_ref()
                .is_some_and(|c| matches!(c.state, State::Running { .. }))
    }

    /// The pod IP while the sandbox holds one.
    pub fn ip(&self) -> Option<String> {
        if self.record.stopped {
            return None;
        }
        self.infra
            .as_ref()
            .and_then(|c| c.config.endpoint.as_ref())
            .map(|e| e.ip.to_string())
    }

    /// The infra process's pid while it runs.
    pub fn infra_pid(&self) -> Option<i32> {
        match self.infra.as_ref()?.state {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

/// What ExecSync returns.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit code.
    pub exit_code: i32,
}

/// An ExecSync whose command outlived its timeout (it was killed).
#[derive(Debug, thiserror::Error)]
#[error("command {command:?} timed out after {timeout:?}")]
pub struct ExecTimeout {
    /// The command.
    pub command: Vec<String>,
    /// The timeout.
    pub timeout: Duration,
}

/// Nanoseconds since the epoch, as CRI timestamps are.
pub fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or_default()
}

fn map_of(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// resolv.conf from a CRI DnsConfig (None: keep the host-derived one).
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

/// Every Linux capability, for privileged containers.
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities of peapod's own bounding set, by name: what "every capability" means
/// for a privileged container or `add: ALL` (containerd's `WithAllCurrentCapabilities`: a
/// capability the runtime itself lacks cannot be given, and asking for it fails the start).
pub fn current_capabilities() -> Vec<String> {
    let bounding = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// `NET_RAW`, `net_raw` or `CAP_NET_RAW` → `CAP_NET_RAW`.
fn cap_name(c: &str) -> String {
    let upper = c.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// What a CRI container's security context and sandbox change in the spec the engine
/// built (pure; applied to `config.json` as JSON so every field the engine set stays).
#[derive(Debug, Clone, Default)]
pub struct SpecAdjustments {
    /// Every capability, no masked or read-only paths, no seccomp, `/sys` writable, every
    /// device allowed.
    pub privileged: bool,
    /// What `ALL` and privileged mean (empty: every capability peapod knows).
    pub all_caps: Vec<String>,
    /// Capabilities to add (any spelling; `ALL`).
    pub add_caps: Vec<String>,
    /// Capabilities to drop (any spelling; `ALL`).
    pub drop_caps: Vec<String>,
    /// no_new_privs.
    pub no_new_privs: bool,
    /// A read-only root filesystem.
    pub readonly_rootfs: bool,
    /// Extra groups.
    pub supplemental_groups: Vec<u32>,
    /// Masked paths (None: the engine's defaults).
    pub masked_paths: Option<Vec<String>>,
    /// Read-only paths (None: the engine's defaults).
    pub readonly_paths: Option<Vec<String>>,
    /// None: unconfined; Some(None): the runtime default; Some(Some(profile)): localhost.
    pub seccomp: Option<Option<Value>>,
    /// Bind mount destination → propagation (`rprivate`, `rslave`, `rshared`).
    pub propagation: BTreeMap<String, String>,
    /// Namespaced sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// oom_score_adj.
    pub oom_score_adj: Option<i64>,
    /// Host devices made in the container and allowed by its device cgroup.
    pub devices: Vec<Device>,
    /// Namespaces (`pid`, `ipc`) the container shares with the node: left out of the spec,
    /// so the runtime's own are inherited, as containerd does (joining `/proc/1/ns/*`
    /// needs rights over pid 1 that peapod may not have).
    pub node_namespaces: Vec<String>,
}

/// A host device as the container gets it (containerd's `oci.WithDevices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its path in the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// The host node's permission bits.
    pub file_mode: u32,
    /// The host node's owner.
    pub uid: u32,
    /// The host node's group.
    pub gid: u32,
    /// The device cgroup access (`rwm` or a part of it).
    pub access: String,
}

/// Directories of `/dev` that hold no devices a container should get (containerd skips
/// them when a whole directory is asked for).
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The devices at `host` (a device node, or a directory walked for them), to appear at
/// `container` in the container with `access` in its device cgroup.
pub fn devices_at(host: &str, container: &str, access: &str) -> Result<Vec<Device>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let field = format!("devices: {host:?} -> {container:?}");
    if !container.starts_with('/') {
        bail!(user_error(format!(
            "{field}: container_path must be absolute"
        )));
    }
    let access = if access.is_empty() { "rwm" } else { access };
    if !access.chars().all(|c| "rwm".contains(c)) {
        bail!(user_error(format!(
            "{field}: permissions {access:?} must be made of r, w and m"
        )));
    }
    let resolved =
        fs::canonicalize(host).map_err(|e| user_error(format!("{field}: host_path: {e}")))?;
    let meta =
        fs::metadata(&resolved).map_err(|e| user_error(format!("{field}: host_path: {e}")))?;
    let node = |path: String, m: &fs::Metadata| -> Option<Device> {
        let ft = m.file_type();
        let kind = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            return None;
        };
        let rdev = m.rdev();
        Some(Device {
            path,
            kind,
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            file_mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            access: access.to_string(),
        })
    };
    if !meta.is_dir() {
        return node(container.to_string(), &meta)
            .map(|d| vec![d])
            .ok_or_else(|| user_error(format!("{field}: host_path is not a device")));
    }
    let mut out = Vec::new();
    let mut stack = vec![(resolved, container.trim_end_matches('/').to_string())];
    while let Some((dir, inside)) = stack.pop() {
        let entries = fs::read_dir(&dir)
            .map_err(|e| user_error(format!("{field}: {}: {e}", dir.display())))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                if !SKIPPED_DEV_DIRS.contains(&name.as_str()) {
                    stack.push((e.path(), format!("{inside}/{name}")));
                }
            } else if let Some(d) = node(format!("{inside}/{name}"), &m) {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Applies the adjustments to an OCI spec as JSON.
pub fn adjust_spec(spec: &mut Value, a: &SpecAdjustments) {
    let process = &mut spec["process"];
    let all = || -> Vec<String> {
        if a.all_caps.is_empty() {
            ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
        } else {
            a.all_caps.clone()
        }
    };
    let mut caps: Vec<String> = if a.privileged {
        all()
    } else {
        process["capabilities"]["bounding"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if !a.privileged {
        for d in &a.drop_caps {
            if d.eq_ignore_ascii_case("ALL") {
                caps.clear();
            } else {
                let d = cap_name(d);
                caps.retain(|c| *c != d);
            }
        }
        for add in &a.add_caps {
            if add.eq_ignore_ascii_case("ALL") {
                caps = all();
            } else {
                let add = cap_name(add);
                if !caps.contains(&add) {
                    caps.push(add);
                }
            }
        }
    }
    for set in ["bounding", "effective", "permitted"] {
        process["capabilities"][set] = json!(caps);
    }
    process["noNewPrivileges"] = json!(a.no_new_privs);
    if !a.supplemental_groups.is_empty() {
        let mut gids: Vec<u32> = process["user"]["additionalGids"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|g| g.as_u64().map(|g| g as u32))
                    .collect()
            })
            .unwrap_or_default();
        for g in &a.supplemental_groups {
            if !gids.contains(g) {
                gids.push(*g);
            }
        }
        process["user"]["additionalGids"] = json!(gids);
    }
    if let Some(adj) = a.oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }
    if a.readonly_rootfs {
        spec["root"]["readonly"] = json!(true);
    }
    let linux = &mut spec["linux"];
    if a.privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    } else {
        if let Some(p) = &a.masked_paths {
            linux["maskedPaths"] = json!(p);
        }
        if let Some(p) = &a.readonly_paths {
            linux["readonlyPaths"] = json!(p);
        }
    }
    match (&a.seccomp, a.privileged) {
        (None, _) | (_, true) => {
            if let Some(o) = linux.as_object_mut() {
                o.remove("seccomp");
            }
        }
        (Some(None), false) => {}
        (Some(Some(profile)), false) => linux["seccomp"] = profile.clone(),
    }
    if !a.sysctls.is_empty() {
        linux["sysctl"] = json!(a.sysctls);
    }
    if let Some(list) = linux["namespaces"].as_array_mut() {
        list.retain(|n| {
            !a.node_namespaces
                .iter()
                .any(|t| n["type"].as_str() == Some(t.as_str()))
        });
    }
    for d in &a.devices {
        let kind = d.kind.to_string();
        let node = json!({
            "path": d.path, "type": kind, "major": d.major, "minor": d.minor,
            "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid,
        });
        if !linux["devices"].is_array() {
            linux["devices"] = json!([]);
        }
        if let Some(list) = linux["devices"].as_array_mut() {
            list.retain(|n| n["path"] != d.path.as_str());
            list.push(node);
        }
        if !linux["resources"]["devices"].is_array() {
            linux["resources"]["devices"] = json!([]);
        }
        if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
            rules.push(json!({
                "allow": true, "type": kind, "major": d.major, "minor": d.minor,
                "access": d.access,
            }));
        }
    }
    let mut rootfs_propagation: Option<&str> = None;
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        // The kubelet's own /etc/hosts (and friends) win over the engine's.
        let mut seen = std::collections::BTreeSet::new();
        mounts.retain(|m| {
            let dest = m["destination"].as_str().unwrap_or_default().to_string();
            if ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(&dest.as_str()) {
                return seen.insert(dest);
            }
            true
        });
        for m in mounts.iter_mut() {
            let dest = m["destination"].as_str().unwrap_or_default().to_string();
            if a.privileged && (dest == "/sys" || dest == "/sys/fs/cgroup") {
                if let Some(opts) = m["options"].as_array_mut() {
                    opts.retain(|o| o != "ro");
                    opts.push(json!("rw"));
                }
            }
            let Some(prop) = a.propagation.get(&dest) else {
                continue;
            };
            if m["type"] != "bind" {
                continue;
            }
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| !matches!(o.as_str(), Some("rprivate" | "rslave" | "rshared")));
                opts.push(json!(prop));
            }
            match prop.as_str() {
                "rshared" => rootfs_propagation = Some("rshared"),
                "rslave" if rootfs_propagation.is_none() => rootfs_propagation = Some("rslave"),
                _ => {}
            }
        }
    }
    if let Some(p) = rootfs_propagation {
        spec["linux"]["rootfsPropagation"] = json!(p);
    }
}

/// The adjustments a CRI container asks for.
pub fn adjustments(config: &cri::ContainerConfig, sandbox: &CriSandbox) -> Result<SpecAdjustments> {
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let caps = sc.capabilities.unwrap_or_default();
    let seccomp = match sc.seccomp.as_ref() {
        // No profile: unconfined, as containerd (the kubelet sends one when asked).
        None => None,
        Some(p) => match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => Some(None),
            Ok(cri::security_profile::ProfileType::Localhost) => {
                Some(Some(read_profile(&p.localhost_ref)?))
            }
            _ => None,
        },
    };
    let mut propagation = BTreeMap::new();
    for m in &config.mounts {
        let p = match cri::MountPropagation::try_from(m.propagation) {
            Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(cri::MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        };
        propagation.insert(m.container_path.clone(), p.to_string());
    }
    let groups = sc
        .supplemental_groups
        .iter()
        .map(|g| {
            u32::try_from(*g).map_err(|_| {
                user_error(format!(
                    "linux.security_context.supplemental_groups: {g} is not a valid gid"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut devices = Vec::new();
    for d in &config.devices {
        devices.extend(devices_at(&d.host_path, &d.container_path, &d.permissions)?);
    }
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let mut node_namespaces = Vec::new();
    if NsMode::from_cri(ns.pid) == NsMode::Node {
        node_namespaces.push("pid".to_string());
    }
    if sandbox.ipc == NsMode::Node {
        node_namespaces.push("ipc".to_string());
    }
    Ok(SpecAdjustments {
        devices,
        node_namespaces,
        all_caps: current_capabilities(),
        privileged: sc.privileged,
        add_caps: caps.add_capabilities,
        drop_caps: caps.drop_capabilities,
        no_new_privs: sc.no_new_privs,
        readonly_rootfs: sc.readonly_rootfs,
        supplemental_groups: groups,
        masked_paths: (!sc.masked_paths.is_empty()).then_some(sc.masked_paths),
        readonly_paths: (!sc.readonly_paths.is_empty()).then_some(sc.readonly_paths),
        seccomp,
        propagation,
        sysctls: sandbox.sysctls.clone(),
        oom_score_adj: linux
            .resources
            .as_ref()
            .map(|r| r.oom_score_adj)
            .filter(|v| *v != 0),
    })
}

fn read_profile(path: &str) -> Result<Value> {
    let text = fs::read_to_string(path)
        .map_err(|e| user_error(format!("seccomp localhost profile {path:?}: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| user_error(format!("seccomp localhost profile {path:?}: {e}")))
}

/// The engine's cgroup limits from CRI resources (0: unset).
pub fn resources_of(r: Option<&cri::LinuxContainerResources>) -> peapod_oci::Resources {
    let Some(r) = r else {
        return Default::default();
    };
    peapod_oci::Resources {
        cpu_shares: u64::try_from(r.cpu_shares).ok().filter(|v| *v > 0),
        cpu_quota: Some(r.cpu_quota).filter(|v| *v > 0),
        cpu_period: u64::try_from(r.cpu_period).ok().filter(|v| *v > 0),
        memory_limit: Some(r.memory_limit_in_bytes).filter(|v| *v > 0),
        pids_limit: None,
    }
}

/// The OCI `LinuxResources` of a CRI resources message (zero means "not set", as in
/// containerd), for `runtime update` and the bundle's spec.
pub fn oci_resources(r: &cri::LinuxContainerResources) -> Value {
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), r.cpu_shares.into());
    }
    if r.cpu_quota > 0 {
        cpu.insert("quota".into(), r.cpu_quota.into());
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), r.cpu_period.into());
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), r.cpuset_cpus.clone().into());
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), r.cpuset_mems.clone().into());
    }
    let mut out = serde_json::Map::new();
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if r.memory_limit_in_bytes > 0 {
        let mut mem = serde_json::Map::new();
        mem.insert("limit".into(), r.memory_limit_in_bytes.into());
        if r.memory_swap_limit_in_bytes > 0 {
            mem.insert("swap".into(), r.memory_swap_limit_in_bytes.into());
        }
        out.insert("memory".into(), Value::Object(mem));
    }
    if !r.unified.is_empty() {
        out.insert(
            "unified".into(),
            serde_json::to_value(&r.unified).unwrap_or_default(),
        );
    }
    Value::Object(out)
}

/// Merges `update` (an OCI `LinuxResources` object) into a spec's `linux.resources`.
fn merge_resources(spec: &mut Value, update: &Value) {
    let Some(linux) = spec.get_mut("linux").and_then(Value::as_object_mut) else {
        return;
    };
    let resources = linux
        .entry("resources")
        .or_insert_with(|| Value::Object(Default::default()));
    if !resources.is_object() {
        *resources = Value::Object(Default::default());
    }
    if let (Some(have), Some(new)) = (resources.as_object_mut(), update.as_object()) {
        for (k, v) in new {
            match (
                have.get_mut(k).and_then(Value::as_object_mut),
                v.as_object(),
            ) {
                (Some(inner), Some(vi)) => {
                    for (ik, iv) in vi {
                        inner.insert(ik.clone(), iv.clone());
                    }
                }
                _ => {
                    have.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Checks the sandbox's sysctls as the kubelet and runc would: each must be namespaced
/// (`kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*` in the IPC namespace,
/// `net.*` in the network one, `kernel.hostname`/`kernel.domainname` in the UTS one), its
/// namespace the pod's own, and the kernel must have it (under `proc_sys`).
fn check_sysctls(
    sysctls: &BTreeMap<String, String>,
    network: NsMode,
    ipc: NsMode,
    proc_sys: &Path,
) -> std::result::Result<(), String> {
    for name in sysctls.keys() {
        let dotted = name.replace('/', ".");
        let field = format!("linux.sysctls[{name:?}]");
        let ns = if dotted == "kernel.sem"
            || dotted.starts_with("kernel.shm")
            || dotted.starts_with("kernel.msg")
            || dotted.starts_with("fs.mqueue.")
        {
            Some(("IPC", ipc))
        } else if dotted.starts_with("net.") {
            Some(("network", network))
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            Some(("UTS", NsMode::Pod))
        } else {
            None
        };
        match ns {
            None => {
                return Err(format!(
                    "{field}: not a namespaced sysctl (expected kernel.shm*, kernel.msg*, \
                     kernel.sem, fs.mqueue.*, net.*, kernel.hostname or kernel.domainname)"
                ))
            }
            Some((which, NsMode::Node)) => {
                return Err(format!(
                "{field}: the pod shares the host's {which} namespace; its sysctls are the node's"
            ))
            }
            Some(_) => {}
        }
        let valid = !dotted.is_empty()
            && dotted
                .split('.')
                .all(|part| !part.is_empty() && part != ".." && part != ".");
        if !valid || !proc_sys.join(dotted.replace('.', "/")).exists() {
            return Err(format!("{field}: no such sysctl in this kernel"));
        }
    }
    Ok(())
}

impl Engine {
    /// UpdateContainerResources: the runtime applies the new limits to a running
    /// container's cgroup; the bundle's spec and the CRI record keep them (for status and
    /// a later start).
    pub fn update_cri_resources(
        &self,
        c: &Container,
        r: &cri::LinuxContainerResources,
    ) -> Result<()> {
        if matches!(c.state, State::Exited { .. }) {
            bail!(user_error(format!(
                "container {} is not running or created: cannot update its resources",
                c.config.id
            )));
        }
        let update = oci_resources(r);
        if matches!(c.state, State::Running { .. }) {
            self.runtime_of(&c.config)
                .update(&c.config.id, &update)
                .with_context(|| format!("updating the resources of {}", c.config.id))?;
        }
        let dir = self.container_dir(&c.config.id);
        let spec_path = dir.join("bundle").join("config.json");
        if let Some(mut spec) = peapod_store::read_json::<Value>(&spec_path)? {
            merge_resources(&mut spec, &update);
            peapod_store::write_json(&spec_path, &spec)?;
        }
        let record_path = dir.join(CRI_RECORD);
        if let Some(mut record) = peapod_store::read_json::<CriContainer>(&record_path)? {
            record.resources = Some((
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes,
            ));
            peapod_store::write_json(&record_path, &record)?;
        }
        Ok(())
    }

    fn cri_sandbox_at(&self, uid: &str) -> Result<Option<SandboxView>> {
        let dir = self.pod_dir(uid);
        let Some(record) = peapod_store::read_json::<CriSandbox>(&dir.join(CRI_RECORD))? else {
            return Ok(None);
        };
        let Ok(id) = fs::read_to_string(dir.join("infra.id")) else {
            return Ok(None);
        };
        let id = id.trim().to_string();
        let pod_name = self
            .stored_pod(uid)?
            .and_then(|p| p.metadata.name)
            .unwrap_or_default();
        let infra = self.reload(&id).ok();
        Ok(Some(SandboxView {
            id,
            uid: uid.to_string(),
            pod_name,
            record,
            infra,
        }))
    }

    /// Every CRI sandbox.
    pub fn cri_sandboxes(&self) -> Result<Vec<SandboxView>> {
        let mut out = Vec::new();
        for uid in self.pod_uids()? {
            if let Some(v) = self.cri_sandbox_at(&uid)? {
                out.push(v);
            }
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.record.created_at));
        Ok(out)
    }

    /// A CRI sandbox by id or unique id prefix (None when there is none).
    pub fn cri_sandbox(&self, id: &str) -> Result<Option<SandboxView>> {
        if id.is_empty() {
            bail!(user_error("pod_sandbox_id must not be empty"));
        }
        let all = self.cri_sandboxes()?;
        if let Some(v) = all.iter().find(|v| v.id == id) {
            return Ok(Some(v.clone()));
        }
        let matches: Vec<&SandboxView> = all.iter().filter(|v| v.id.starts_with(id)).collect();
        match matches.as_slice() {
            [one] => Ok(Some((*one).clone())),
            [] => Ok(None),
            _ => bail!(user_error(format!(
                "sandbox id prefix {id:?} matches more than one sandbox"
            ))),
        }
    }

    /// RunPodSandbox: an engine pod with no containers (its monitor runs the infra), made
    /// from the kubelet's config. Idempotent: a retry with the same name, namespace, uid
    /// and attempt returns the sandbox already made (waiting for it when it is being made).
    pub fn create_sandbox_from(
        &self,
        config: &cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| user_error("sandbox config: metadata is required"))?;
        for (field, v) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if v.is_empty() {
                bail!(user_error(format!(
                    "sandbox config: metadata.{field} must not be empty"
                )));
            }
        }
        if !runtime_handler.is_empty() {
            Runtime::resolve(Some(runtime_handler), &self.paths.runtime_state())
                .map_err(|e| user_error(format!("runtime handler {runtime_handler:?}: {e}")))?;
        }
        let linux = config.linux.clone().unwrap_or_default();
        let sc = linux.security_context.clone().unwrap_or_default();
        let ns = sc.namespace_options.clone().unwrap_or_default();
        let record = CriSandbox {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            kube_uid: meta.uid.clone(),
            attempt: meta.attempt,
            created_at: nanos(Utc::now()),
            labels: map_of(&config.labels),
            annotations: map_of(&config.annotations),
            log_directory: config.log_directory.clone(),
            runtime_handler: runtime_handler.to_string(),
            network: NsMode::from_cri(ns.network),
            pid: NsMode::from_cri(ns.pid),
            ipc: NsMode::from_cri(ns.ipc),
            cgroup_parent: linux.cgroup_parent.clone(),
            sysctls: map_of(&linux.sysctls),
            port_mappings: config
                .port_mappings
                .iter()
                .map(|p| (p.protocol, p.container_port, p.host_port, p.host_ip.clone()))
                .collect(),
            stopped: false,
        };
        // Sysctls no container of the sandbox could set, and host ports peapod cannot
        // publish, are refused before anything is made.
        check_sysctls(
            &record.sysctls,
            record.network,
            record.ipc,
            Path::new("/proc/sys"),
        )
        .map_err(|e| user_error(format!("sandbox config: {e}")))?;
        crate::hostport::cri_host_ports(&record.port_mappings, record.network == NsMode::Node)
            .map_err(|e| user_error(format!("sandbox config: {e}")))?;
        let same = |r: &CriSandbox| {
            r.name == record.name
                && r.namespace == record.namespace
                && r.kube_uid == record.kube_uid
                && r.attempt == record.attempt
        };
        // A retry: the sandbox made (or being made) for the same kubelet pod and attempt.
        // A reservation whose maker failed or died is no reservation: the retry makes the
        // sandbox anew (never a "name is reserved" loop).
        let pods_lock = loop {
            let pods_lock = self.pods_lock()?;
            let Some((uid, _)) = self.cri_records()?.into_iter().find(|(uid, r)| {
                same(r)
                    && self
                        .stored_pod(uid)
                        .ok()
                        .flatten()
                        .is_none_or(|p| p.metadata.deletion_timestamp.is_none())
            }) else {
                break pods_lock;
            };
            drop(pods_lock);
            // Held by its maker until the pod monitor runs.
            let _wait = Lock::exclusive(&self.pod_lock_path(&uid))?;
            if let Some(v) = self.cri_sandbox_at(&uid)? {
                if v.infra.is_some() {
                    return Ok(v.id);
                }
            }
            self.drop_failed_sandbox(&uid)?;
        };
        // The engine pod's name is the kubelet's when free in its namespace (an earlier
        // attempt or a pod of the same name may hold it).
        let mut pod_name = meta.name.clone();
        if self.find_pod(&meta.namespace, &pod_name).is_ok() {
            pod_name = format!(
                "{}-{}-{}",
                meta.name,
                meta.uid.chars().take(5).collect::<String>(),
                meta.attempt
            );
            if self.find_pod(&meta.namespace, &pod_name).is_ok() {
                pod_name = format!("{pod_name}-{}", &peapod_store::new_id()[..5]);
            }
        }
        let node = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let host_network = record.network == NsMode::Node;
        let hostname = if config.hostname.is_empty() || host_network {
            node.clone()
        } else {
            config.hostname.clone()
        };
        let uid = new_pod_uid();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                namespace: Some(meta.namespace.clone()),
                uid: Some(uid.clone()),
                creation_timestamp: Some(k8s_time(Utc::now())),
                resource_version: Some("1".into()),
                labels: (!record.labels.is_empty()).then(|| record.labels.clone()),
                annotations: (!record.annotations.is_empty()).then(|| record.annotations.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: Vec::new(),
                hostname: Some(hostname),
                host_network: Some(host_network),
                host_pid: Some(record.pid == NsMode::Node),
                host_ipc: Some(record.ipc == NsMode::Node),
                share_process_namespace: Some(record.pid == NsMode::Pod),
                node_name: Some(node),
                restart_policy: Some("Never".into()),
                termination_grace_period_seconds: Some(0),
                ..Default::default()
            }),
            status: None,
        };
        let staging = self.pods_dir().join(format!(".{uid}"));
        peapod_store::create_dir_all(&staging)?;
        let pod_lock = Lock::exclusive(&staging.join("lifecycle.lock"))?;
        peapod_store::write_json(&staging.join("pod.json"), &pod)?;
        peapod_store::write_json(&staging.join(CRI_RECORD), &record)?;
        fs::rename(&staging, self.pod_dir(&uid))
            .with_context(|| format!("committing sandbox {}/{}", meta.namespace, meta.name))?;
        drop(pods_lock);
        let made = self.start_pod(&pod, &uid, meta.attempt).and_then(|()| {
            let id = fs::read_to_string(self.pod_dir(&uid).join("infra.id"))?;
            let id = id.trim().to_string();
            if let Some(text) = resolv_conf(config.dns_config.as_ref()) {
                peapod_store::atomic_write(
                    &self.container_dir(&id).join("resolv.conf"),
                    text.as_bytes(),
                )?;
            }
            Ok(id)
        });
        match made {
            Ok(id) => {
                drop(pod_lock);
                Ok(id)
            }
            Err(e) => {
                let mut gone = pod.clone();
                gone.metadata.deletion_timestamp = Some(k8s_time(Utc::now()));
                gone.metadata.deletion_grace_period_seconds = Some(0);
                let _ = peapod_store::write_json(&self.pod_dir(&uid).join("pod.json"), &gone);
                let cleanup = self.teardown_pod(&uid);
                drop(pod_lock);
                match cleanup {
                    Ok(()) => Err(e),
                    Err(c) => Err(e.context(format!(
                        "and removing the half-made sandbox failed too: {c:#}"
                    ))),
                }
            }
        }
    }

    /// Removes what a RunPodSandbox that failed or died left of sandbox `uid` (its caller
    /// holds the pod lock): nothing when its maker already tore it down (the lock file the
    /// caller waited on goes too), else the half-made pod, as its maker would have.
    fn drop_failed_sandbox(&self, uid: &str) -> Result<()> {
        let dir = self.pod_dir(uid);
        match self.stored_pod(uid)? {
            None => {
                let _ = fs::remove_dir_all(&dir);
                Ok(())
            }
            Some(mut pod) if pod.metadata.deletion_timestamp.is_none() => {
                pod.metadata.deletion_timestamp = Some(k8s_time(Utc::now()));
                pod.metadata.deletion_grace_period_seconds = Some(0);
                peapod_store::write_json(&dir.join("pod.json"), &pod)?;
                self.teardown_pod(uid)
            }
            Some(_) => self.teardown_pod(uid),
        }
    }

    /// A CRI sandbox's engine pod as `get pods`, `describe` and the API show it: its spec
    /// lists the kubelet's containers (the latest attempt of each name, as the kubelet's
    /// pod does) and its status is computed from their states by the same rules as every
    /// pod's (`1/1 Running`, restarts from the attempt). A stopped sandbox is `NotReady`
    /// (containerd's state name), unless every container completed. Nothing for other pods.
    pub fn cri_pod_status(&self, uid: &str, pod: &mut Pod, observed: &ObservedPod) -> Result<()> {
        let Some(record) =
            peapod_store::read_json::<CriSandbox>(&self.pod_dir(uid).join(CRI_RECORD))?
        else {
            return Ok(());
        };
        let mut latest: BTreeMap<String, (Container, CriContainer)> = BTreeMap::new();
        for c in self.pod_containers(uid)? {
            if c.config.pod.as_ref().is_some_and(|l| l.infra) {
                continue;
            }
            let path = self.container_dir(&c.config.id).join(CRI_RECORD);
            let Some(r) = peapod_store::read_json::<CriContainer>(&path)? else {
                continue;
            };
            let newer = latest.get(&r.name).is_none_or(|(old, or)| {
                (r.attempt, c.config.created) > (or.attempt, old.config.created)
            });
            if newer {
                latest.insert(r.name.clone(), (c, r));
            }
        }
        let mut kept: Vec<(Container, CriContainer)> = latest.into_values().collect();
        kept.sort_by_key(|(c, _)| c.config.created);
        let mut observed = observed.clone();
        observed.sandbox_ready &= !record.stopped;
        if record.stopped {
            observed.pod_ip = None;
        }
        observed.containers = kept
            .iter()
            .map(|(c, r)| {
                let st = c.status.clone().unwrap_or_default();
                let state = match c.state {
                    State::Created => ObservedState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                    },
                    State::Running { .. } => ObservedState::Running {
                        started_at: st.started_at.unwrap_or(c.config.created),
                    },
                    State::Exited { code, finished_at } => ObservedState::Terminated {
                        exit_code: code,
                        signal: None,
                        reason: if st.error.as_deref() == Some("OOMKilled") {
                            "OOMKilled".into()
                        } else if code == 0 {
                            "Completed".into()
                        } else {
                            "Error".into()
                        },
                        message: st.error.clone().filter(|e| e != "OOMKilled"),
                        started_at: st.started_at,
                        finished_at,
                    },
                };
                ObservedContainer {
                    name: r.name.clone(),
                    init: false,
                    container_id: Some(format!("peapod://{}", c.config.id)),
                    image: r.image.clone(),
                    image_id: c.config.image_id.clone(),
                    state,
                    last_state: None,
                    restart_count: i32::try_from(r.attempt).unwrap_or(i32::MAX),
                    ready: None,
                    started: None,
                }
            })
            .collect();
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers = kept
                .iter()
                .map(|(_, r)| k8s_openapi::api::core::v1::Container {
                    name: r.name.clone(),
                    image: Some(r.image.clone()),
                    ..Default::default()
                })
                .collect();
        }
        let mut status = peapod_api::status::pod_status(pod, &observed);
        if record.stopped && status.phase.as_deref() != Some("Succeeded") {
            status.reason = Some("NotReady".into());
        }
        pod.status = Some(status);
        Ok(())
    }

    /// Every CRI sandbox record with its engine pod uid (nothing else is read).
    fn cri_records(&self) -> Result<Vec<(String, CriSandbox)>> {
        let mut out = Vec::new();
        for uid in self.pod_uids()? {
            if let Some(r) =
                peapod_store::read_json::<CriSandbox>(&self.pod_dir(&uid).join(CRI_RECORD))?
            {
                out.push((uid, r));
            }
        }
        Ok(out)
    }

    /// StopPodSandbox: every container of the sandbox killed, then the infra (its pod
    /// monitor ends), the IP released and the netns removed; records stay. Idempotent; a
    /// sandbox that does not exist is already stopped.
    pub fn stop_cri_sandbox(&self, id: &str) -> Result<()> {
        let Some(view) = self.cri_sandbox(id)? else {
            return Ok(());
        };
        let dir = self.pod_dir(&view.uid);
        let _pod_lock = Lock::exclusive(&self.pod_lock_path(&view.uid))?;
        if !view.record.stopped {
            let mut record = view.record.clone();
            record.stopped = true;
            peapod_store::write_json(&dir.join(CRI_RECORD), &record)?;
        }
        let mut errors = Vec::new();
        for c in self.pod_containers(&view.uid)? {
            if c.config.pod.as_ref().is_some_and(|l| l.infra) {
                continue;
            }
            if let Err(e) = self.stop(&c, Duration::ZERO) {
                errors.push(format!("stopping {}: {e:#}", c.config.name));
            }
        }
        let monitor_lock = dir.join("monitor.lock");
        if Lock::is_held(&monitor_lock)? {
            let pid: Option<i32> = fs::read_to_string(dir.join("monitor.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(pid) = pid {
                signal(pid, nix::sys::signal::Signal::SIGTERM);
                if !wait_until(Duration::from_secs(15), || {
                    !Lock::is_held(&monitor_lock).unwrap_or(false)
                }) {
                    signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        // The infra, should its monitor have died without taking it along.
        if let Ok(infra) = self.reload(&view.id) {
            if let (State::Running { pid, .. }, Some(st)) = (&infra.state, &infra.status) {
                if proc_start_time(*pid) == Some(st.pid_start) {
                    signal(*pid, nix::sys::signal::Signal::SIGKILL);
                    wait_until(Duration::from_secs(5), || {
                        proc_start_time(*pid) != Some(st.pid_start)
                    });
                }
            }
            if let (Some(pin), NetworkMode::Bridge) =
                (&infra.config.netns, &infra.config.network_mode)
            {
                if let Err(e) = self.network().detach(&infra.config.id, pin) {
                    errors.push(format!("releasing the sandbox's address: {e}"));
                }
                if let Err(e) = peapod_sandbox::netns::remove(pin) {
                    errors.push(format!("removing {}: {e}", pin.display()));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("stopping sandbox {id}: {}", errors.join("; ")))
        }
    }

    /// RemovePodSandbox: stops it if needed, then removes every container and record of
    /// it. Idempotent.
    pub fn remove_cri_sandbox(&self, id: &str) -> Result<()> {
        let Some(view) = self.cri_sandbox(id)? else {
            return Ok(());
        };
        self.stop_cri_sandbox(&view.id)?;
        let _pod_lock = Lock::exclusive(&self.pod_lock_path(&view.uid))?;
        // Marked deleted first: a teardown that fails half way is finished by recovery.
        if let Some(mut pod) = self.stored_pod(&view.uid)? {
            if pod.metadata.deletion_timestamp.is_none() {
                pod.metadata.deletion_timestamp = Some(k8s_time(Utc::now()));
                pod.metadata.deletion_grace_period_seconds = Some(0);
                peapod_store::write_json(&self.pod_dir(&view.uid).join("pod.json"), &pod)?;
            }
        }
        self.teardown_pod(&view.uid)
    }

    /// Every CRI container with its CRI view, newest first.
    pub fn cri_containers(&self) -> Result<Vec<(Container, CriContainer)>> {
        let mut out = Vec::new();
        for c in self.list()? {
            let path = self.container_dir(&c.config.id).join(CRI_RECORD);
            if let Some(r) = peapod_store::read_json::<CriContainer>(&path)? {
                out.push((c, r));
            }
        }
        Ok(out)
    }

    /// A CRI container by id or unique id prefix.
    pub fn cri_container(&self, id: &str) -> Result<Option<(Container, CriContainer)>> {
        if id.is_empty() {
            bail!(user_error("container_id must not be empty"));
        }
        let all = self.cri_containers()?;
        if let Some(found) = all.iter().find(|(c, _)| c.config.id == id) {
            return Ok(Some(found.clone()));
        }
        let matches: Vec<_> = all
            .iter()
            .filter(|(c, _)| c.config.id.starts_with(id))
            .collect();
        match matches.as_slice() {
            [one] => Ok(Some((*one).clone())),
            [] => Ok(None),
            _ => bail!(user_error(format!(
                "container id prefix {id:?} matches more than one container"
            ))),
        }
    }

    /// CreateContainer: an engine container in the sandbox's namespaces, logging where the
    /// kubelet asks, with the security context applied to its spec.
    pub fn create_in_sandbox(
        &self,
        sandbox_id: &str,
        config: &cri::ContainerConfig,
    ) -> Result<String> {
        let sandbox = self
            .cri_sandbox(sandbox_id)?
            .ok_or_else(|| user_error(format!("sandbox {sandbox_id:?} not found")))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| user_error("container config: metadata is required"))?;
        if meta.name.is_empty() {
            bail!(user_error(
                "container config: metadata.name must not be empty"
            ));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            bail!(user_error(
                "container config: image.image must not be empty"
            ));
        }
        let rec = &sandbox.record;
        let name = container_name(
            &meta.name,
            &rec.name,
            &rec.namespace,
            &rec.kube_uid,
            meta.attempt,
        );
        // A retried CreateContainer: the one made already, if it was never started.
        if let Some((c, r)) = self
            .cri_containers()?
            .into_iter()
            .find(|(c, _)| c.config.name == name)
        {
            if r.sandbox_id == sandbox.id && c.state == State::Created {
                return Ok(c.config.id);
            }
            bail!(user_error(format!(
                "the container name {name:?} is already in use by {}",
                c.config.id
            )));
        }
        let Some(infra_pid) = sandbox.infra_pid().filter(|_| sandbox.ready()) else {
            bail!(user_error(format!(
                "sandbox {} is not ready: cannot create containers in it",
                sandbox.id
            )));
        };
        let infra = sandbox
            .infra
            .as_ref()
            .expect("a ready sandbox has its infra");
        let adjust = adjustments(config, rec)?;
        let images = self.images()?;
        let image = images
            .resolve(&image_name)
            .map_err(|e| user_error(format!("image {image_name:?} not found: {e}")))?;
        let ic = images.config(&image)?.config().clone().unwrap_or_default();
        let image_process = crate::engine::image_process(&ic);
        let argv: Option<Vec<String>> = match (config.command.is_empty(), config.args.is_empty()) {
            (false, _) => Some(config.command.iter().chain(&config.args).cloned().collect()),
            (true, false) => Some(
                image_process
                    .entrypoint
                    .iter()
                    .chain(&config.args)
                    .cloned()
                    .collect(),
            ),
            (true, true) => None,
        };
        let linux = config.linux.clone().unwrap_or_default();
        let sc = linux.security_context.clone().unwrap_or_default();
        let user_part = match (&sc.run_as_user, sc.run_as_username.as_str()) {
            (Some(u), _) => Some(u.value.to_string()),
            (None, n) if !n.is_empty() => Some(n.to_string()),
            _ => None,
        };
        let user = match (user_part, &sc.run_as_group) {
            (Some(u), Some(g)) => Some(format!("{u}:{}", g.value)),
            (Some(u), None) => Some(u),
            (None, Some(g)) => Some(format!(
                "{}:{}",
                image_process
                    .user
                    .clone()
                    .unwrap_or_default()
                    .split(':')
                    .next()
                    .unwrap_or(""),
                g.value
            )),
            (None, None) => None,
        };
        let overrides = ProcessOverrides {
            entrypoint: argv.as_ref().map(|_| String::new()),
            cmd: argv.unwrap_or_default(),
            env: config
                .envs
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect(),
            working_dir: Some(config.working_dir.clone()).filter(|w| !w.is_empty()),
            user,
        };
        let process = peapod_oci::merge_process(&image_process, &overrides)
            .map_err(|e| user_error(e.to_string()))?;
        let mut mounts = Vec::new();
        for m in &config.mounts {
            if !m.container_path.starts_with('/') || m.host_path.is_empty() {
                bail!(user_error(format!(
                    "mount {:?} -> {:?}: container_path must be absolute and host_path set",
                    m.host_path, m.container_path
                )));
            }
            mounts.push(MountRecord {
                kind: "bind".into(),
                name: None,
                source: PathBuf::from(&m.host_path),
                destination: m.container_path.clone(),
                rw: !m.readonly,
                mode: if m.readonly {
                    "ro".into()
                } else {
                    String::new()
                },
                anonymous: false,
            });
        }
        let ns = sc.namespace_options.clone().unwrap_or_default();
        let ns_of = |pid: i32, ns: &str| Some(PathBuf::from(format!("/proc/{pid}/ns/{ns}")));
        let pid_ns = match NsMode::from_cri(ns.pid) {
            NsMode::Node => ns_of(1, "pid"),
            NsMode::Pod if rec.pid == NsMode::Pod => {
                let init = pid_ns_init(infra_pid).ok_or_else(|| {
                    anyhow!("the sandbox's shared pid namespace has no init process")
                })?;
                ns_of(init, "pid")
            }
            NsMode::Target => {
                let (target, _) = self.cri_container(&ns.target_id)?.ok_or_else(|| {
                    user_error(format!("target container {:?} not found", ns.target_id))
                })?;
                let State::Running { pid, .. } = target.state else {
                    bail!(user_error(format!(
                        "target container {} is not running",
                        ns.target_id
                    )));
                };
                ns_of(pid, "pid")
            }
            _ => None,
        };
        let ipc_owner = if rec.ipc == NsMode::Node {
            1
        } else {
            infra_pid
        };
        let runtime = Runtime::resolve(
            Some(rec.runtime_handler.as_str())
                .filter(|h| !h.is_empty())
                .or(self.runtime_override.as_deref())
                .or(self.config.runtime.as_deref()),
            &self.paths.runtime_state(),
        )
        .map_err(|e| user_error(e.to_string()))?;
        let id = peapod_store::new_id();
        let cgroup_parent = if rec.cgroup_parent.is_empty() {
            self.pod_cgroup(&sandbox.uid)
        } else {
            format!("/{}", rec.cgroup_parent.trim_matches('/'))
        };
        let log_path = (!rec.log_directory.is_empty() && !config.log_path.is_empty())
            .then(|| Path::new(&rec.log_directory).join(&config.log_path));
        let mut labels = map_of(&config.labels);
        labels.insert("io.kubernetes.pod.name".into(), rec.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), rec.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), rec.kube_uid.clone());
        labels.insert("io.kubernetes.container.name".into(), meta.name.clone());
        let resources = resources_of(linux.resources.as_ref());
        let cc = ContainerConfig {
            id: id.clone(),
            name: String::new(),
            created: Utc::now(),
            image: image_name.clone(),
            image_id: image.id.clone(),
            args: process.args.clone(),
            env: process.env.clone(),
            cwd: process.cwd.clone(),
            user: process.user.clone(),
            tty: config.tty,
            open_stdin: config.stdin,
            auto_remove: false,
            hostname: infra.config.hostname.clone(),
            network_mode: if rec.network == NsMode::Node {
                NetworkMode::Host
            } else {
                NetworkMode::Container(sandbox.id.clone())
            },
            netns: None,
            endpoint: None,
            mounts,
            ports: Vec::new(),
            runtime: runtime.binary.clone(),
            cgroups_path: format!("{cgroup_parent}/{id}"),
            phase: Phase::Creating,
            labels: labels.clone(),
            pod: Some(PodLink {
                uid: sandbox.uid.clone(),
                namespace: rec.namespace.clone(),
                pod_name: sandbox.pod_name.clone(),
                container_name: meta.name.clone(),
                infra: false,
                init: false,
                attempt: meta.attempt,
                ipc: ns_of(ipc_owner, "ipc"),
                uts: ns_of(infra_pid, "uts"),
                pid: pid_ns,
            }),
            log_path: log_path.clone(),
            resources,
        };
        let made = self.commit_and_make(cc, Some(&name), &image, &images, &process)?;
        let record = CriContainer {
            sandbox_id: sandbox.id.clone(),
            name: meta.name.clone(),
            attempt: meta.attempt,
            image: image_name,
            user_specified_image: config
                .image
                .as_ref()
                .map(|i| i.user_specified_image.clone())
                .unwrap_or_default(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            labels: map_of(&config.labels),
            annotations: map_of(&config.annotations),
            mounts: config
                .mounts
                .iter()
                .map(|m| {
                    (
                        m.container_path.clone(),
                        m.host_path.clone(),
                        m.readonly,
                        m.propagation,
                    )
                })
                .collect(),
            log_path: log_path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: linux.resources.as_ref().map(|r| {
                (
                    r.cpu_shares,
                    r.cpu_quota,
                    r.cpu_period,
                    r.memory_limit_in_bytes,
                )
            }),
            stdin_once: config.stdin_once,
        };
        let dir = self.container_dir(&id);
        let finish = || -> Result<()> {
            let spec_path = dir.join("bundle").join("config.json");
            let mut spec: Value = peapod_store::read_json(&spec_path)?
                .ok_or_else(|| anyhow!("{} is missing", spec_path.display()))?;
            adjust_spec(&mut spec, &adjust);
            peapod_store::write_json(&spec_path, &spec)?;
            peapod_store::write_json(&dir.join(CRI_RECORD), &record)?;
            Ok(())
        };
        if let Err(e) = finish() {
            let _ = self.teardown(&made, true);
            return Err(e);
        }
        Ok(id)
    }

    /// ReopenContainerLog: the container's monitor reopens the log at its path (after the
    /// kubelet renamed it away); returns once the new file exists.
    pub fn reopen_log(&self, c: &Container) -> Result<()> {
        if !matches!(c.state, State::Running { .. }) {
            bail!(user_error(format!(
                "container {} is not running",
                c.config.id
            )));
        }
        let dir = self.container_dir(&c.config.id);
        let pid: i32 = fs::read_to_string(dir.join("monitor.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|_| Lock::is_held(&dir.join("monitor.lock")).unwrap_or(false))
            .ok_or_else(|| anyhow!("container {} has no live monitor", c.config.id))?;
        signal(pid, nix::sys::signal::Signal::SIGHUP);
        let path = self.log_path(&c.config);
        if !wait_until(Duration::from_secs(5), || path.exists()) {
            bail!("the log {} was not reopened within 5 s", path.display());
        }
        Ok(())
    }

    /// ExecSync: runs `cmd` in the container, collecting its output; past `timeout` the
    /// command is killed (with its process tree) and [`ExecTimeout`] returned.
    pub fn exec_sync(
        &self,
        c: &Container,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        if !matches!(c.state, State::Running { .. }) {
            bail!(user_error(format!(
                "container {} is not running",
                c.config.id
            )));
        }
        if cmd.is_empty() {
            bail!(user_error("cmd must not be empty"));
        }
        let mut command = self.runtime_of(&c.config).exec_command(
            &c.config.id,
            cmd,
            false,
            &c.config.env,
            Some(&c.config.cwd),
        );
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", c.config.runtime.display()))?;
        let reader = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        };
        let out = reader(Box::new(child.stdout.take().expect("piped")));
        let err = reader(Box::new(child.stderr.take().expect("piped")));
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break Some(st);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                crate::engine::kill_tree(child.id() as i32);
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        match status {
            Some(st) => Ok(ExecOutput {
                stdout,
                stderr,
                exit_code: crate::engine::exit_code(st),
            }),
            None => Err(ExecTimeout {
                command: cmd.to_vec(),
                timeout: timeout.unwrap_or_default(),
            }
            .into()),
        }
    }
}

/// A new random pod uid in the RFC 4122 version 4 form.
fn new_pod_uid() -> String {
    let h = peapod_store::new_id();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// The init of the pid namespace the infra made for the pod (its child), if any.
fn pid_ns_init(infra_pid: i32) -> Option<i32> {
    let children =
        fs::read_to_string(format!("/proc/{infra_pid}/task/{infra_pid}/children")).ok()?;
    children.split_whitespace().find_map(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {

    #[test]
    fn resource_updates_become_oci_resources_merged_into_the_spec() {
        let r = cri::LinuxContainerResources {
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 1 << 26,
            ..Default::default()
        };
        let update = oci_resources(&r);
        assert_eq!(
            update,
            serde_json::json!({"cpu": {"quota": 50000, "period": 100000}, "memory": {"limit": 67108864}})
        );
        let mut spec = serde_json::json!({"linux": {"resources": {"cpu": {"shares": 512}, "pids": {"limit": 10}}}});
        merge_resources(&mut spec, &update);
        assert_eq!(
            spec["linux"]["resources"],
            serde_json::json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000}, "pids": {"limit": 10}, "memory": {"limit": 67108864}})
        );
        assert_eq!(oci_resources(&Default::default()), serde_json::json!({}));
    }

    use super::*;

    fn spec() -> Value {
        json!({
            "process": {
                "user": {"uid": 0, "gid": 0},
                "capabilities": {
                    "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"],
                    "effective": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"],
                    "permitted": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "/r", "readonly": false},
            "mounts": [
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "ro"]},
                {"destination": "/etc/hosts", "type": "bind", "source": "/kubelet/hosts", "options": ["rbind", "rprivate"]},
                {"destination": "/data", "type": "bind", "source": "/host", "options": ["rbind", "rprivate"]},
                {"destination": "/etc/hosts", "type": "bind", "source": "/infra/hosts", "options": ["rbind", "rprivate"]}
            ],
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}, "maskedPaths": ["/proc/kcore"], "resources": {"devices": []}}
        })
    }

    #[test]
    fn capabilities_are_added_and_dropped_in_any_spelling() {
        let mut s = spec();
        adjust_spec(
            &mut s,
            &SpecAdjustments {
                drop_caps: vec!["NET_RAW".into(), "cap_kill".into()],
                add_caps: vec!["SYS_TIME".into()],
                seccomp: Some(None),
                ..Default::default()
            },
        );
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(
                s["process"]["capabilities"][set],
                json!(["CAP_CHOWN", "CAP_SYS_TIME"])
            );
        }
        assert_eq!(s["process"]["noNewPrivileges"], json!(false));
        assert!(s["linux"]["seccomp"].is_object(), "runtime default kept");
        let mut s = spec();
        adjust_spec(
            &mut s,
            &SpecAdjustments {
                drop_caps: vec!["ALL".into()],
                ..Default::default()
            },
        );
        assert_eq!(s["process"]["capabilities"]["bounding"], json!([]));
        assert!(
            s["linux"].get("seccomp").is_none(),
            "no profile: unconfined"
        );
    }

    #[test]
    fn privileged_opens_everything() {
        let mut s = spec();
        adjust_spec(
            &mut s,
            &SpecAdjustments {
                privileged: true,
                seccomp: Some(None),
                ..Default::default()
            },
        );
        assert_eq!(
            s["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            ALL_CAPABILITIES.len()
        );
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
        assert!(s["linux"].get("seccomp").is_none());
        let sys = &s["mounts"][0]["options"];
        assert!(!sys.as_array().unwrap().contains(&json!("ro")), "{sys}");
        assert_eq!(
            s["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
    }

    #[test]
    fn mounts_rootfs_users_and_the_kubelets_etc_files() {
        let mut s = spec();
        adjust_spec(
            &mut s,
            &SpecAdjustments {
                readonly_rootfs: true,
                supplemental_groups: vec![1234, 5678],
                propagation: BTreeMap::from([("/data".to_string(), "rslave".to_string())]),
                sysctls: BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
                ..Default::default()
            },
        );
        assert_eq!(s["root"]["readonly"], json!(true));
        assert_eq!(s["process"]["user"]["additionalGids"], json!([1234, 5678]));
        let mounts = s["mounts"].as_array().unwrap();
        let hosts: Vec<_> = mounts
            .iter()
            .filter(|m| m["destination"] == "/etc/hosts")
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0]["source"], "/kubelet/hosts");
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(data["options"], json!(["rbind", "rslave"]));
        assert_eq!(s["linux"]["rootfsPropagation"], "rslave");
        assert_eq!(s["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
    }

    #[test]
    fn devices_become_nodes_and_cgroup_rules() {
        let null = devices_at("/dev/null", "/dev/mydev", "rw").unwrap();
        assert_eq!(null.len(), 1);
        assert_eq!(
            (
                null[0].path.as_str(),
                null[0].kind,
                null[0].major,
                null[0].minor
            ),
            ("/dev/mydev", 'c', 1, 3)
        );
        let err = devices_at("/etc/hostname", "/dev/x", "").unwrap_err();
        assert!(format!("{err:#}").contains("is not a device"), "{err:#}");
        let err = devices_at("/dev/null", "/dev/x", "rwx").unwrap_err();
        assert!(format!("{err:#}").contains("permissions"), "{err:#}");
        let mut s = spec();
        adjust_spec(
            &mut s,
            &SpecAdjustments {
                devices: null,
                ..Default::default()
            },
        );
        assert_eq!(
            s["linux"]["devices"],
            json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
                    "fileMode": 0o666, "uid": 0, "gid": 0}])
        );
        assert_eq!(
            s["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
        );
    }

    #[test]
    fn dns_config_makes_resolv_conf() {
        assert_eq!(resolv_conf(None), None);
        assert_eq!(resolv_conf(Some(&cri::DnsConfig::default())), None);
        let text = resolv_conf(Some(&cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        }))
        .unwrap();
        assert_eq!(
            text,
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn resources_zero_means_unset() {
        let r = resources_of(Some(&cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 0,
            ..Default::default()
        }));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, None);
    }

    #[test]
    fn sysctls_must_be_namespaced_the_pods_own_and_known() {
        let proc_sys = tempfile::tempdir().unwrap();
        for f in ["net/ipv4/ip_forward", "kernel/shm_rmid_forced"] {
            let path = proc_sys.path().join(f);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "0\n").unwrap();
        }
        let check = |names: &[&str], network, ipc| {
            let map = names.iter().map(|n| (n.to_string(), "1".into())).collect();
            check_sysctls(&map, network, ipc, proc_sys.path())
        };
        let pod = NsMode::Pod;
        assert_eq!(
            check(&["net.ipv4.ip_forward", "kernel/shm_rmid_forced"], pod, pod),
            Ok(())
        );
        let err = |names: &[&str], network, ipc| check(names, network, ipc).unwrap_err();
        assert!(err(&["net.ipv4.no_such"], pod, pod).contains("no such sysctl"));
        assert!(err(&["net.ipv4..ip_forward"], pod, pod).contains("no such sysctl"));
        assert!(err(&["vm.swappiness"], pod, pod).contains("not a namespaced sysctl"));
        let e = err(&["net.ipv4.ip_forward"], NsMode::Node, pod);
        assert!(e.contains("host's network namespace"), "{e}");
        let e = err(&["kernel.shm_rmid_forced"], pod, NsMode::Node);
        assert!(
            e.contains("linux.sysctls[\"kernel.shm_rmid_forced\"]"),
            "{e}"
        );
    }
}
