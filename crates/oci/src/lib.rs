//! From a container plan to an OCI runtime `Spec` (pure, golden-tested), the bundle on disk,
//! and the driver that runs an OCI runtime binary through runc's command line.
//!
//! It does not know about images, networks or pods: the caller hands it paths and values.

pub use oci_spec;

pub mod cgroups;
mod process;
pub mod runtime;
pub mod seccomp;
mod spec;

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

pub use process::{
    merge_process, resolve_user, ImageProcess, MergeError, MergedProcess, NumericUser,
    ProcessOverrides, UserError, DEFAULT_PATH,
};
pub use spec::{
    spec_for, ALLOWED_CHAR_DEVICES, DEFAULT_CAPABILITIES, MASKED_PATHS, OCI_VERSION, READONLY_PATHS,
};

/// How the container gets one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Namespace {
    /// A new namespace of its own.
    New,
    /// Join the namespace pinned or exposed at this path (`/proc/PID/ns/net`, a bind mount).
    Join(PathBuf),
    /// Stay in the host's namespace.
    Host,
}

/// Namespaces of a container (mount is always new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    /// net.
    pub network: Namespace,
    /// ipc.
    pub ipc: Namespace,
    /// uts.
    pub uts: Namespace,
    /// pid.
    pub pid: Namespace,
    /// cgroup.
    pub cgroup: Namespace,
}

/// One mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// Seccomp choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// The RuntimeDefault profile (Docker's / containerd's default).
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
}

/// Everything `spec_for` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// The rootfs path (already mounted).
    pub rootfs: PathBuf,
    /// argv, env, cwd.
    pub process: MergedProcess,
    /// Numeric user.
    pub user: NumericUser,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Hostname to set (only meaningful with a new uts namespace).
    pub hostname: Option<String>,
    /// Namespaces.
    pub namespaces: Namespaces,
    /// Volumes, binds and the /etc/hosts, /etc/resolv.conf, /etc/hostname files.
    pub mounts: Vec<BindMount>,
    /// Absolute cgroups path, e.g. `/peapod/<id>`.
    pub cgroups_path: String,
    /// Seccomp profile.
    pub seccomp: Seccomp,
    /// Annotations to carry.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// CPU, memory and pids limits (none: unlimited).
    #[serde(default)]
    pub resources: Resources,
}

/// Cgroup limits of a container in the runtime's terms (cgroup v1 units; the runtime, and
/// `cgroups::settings` for v2, convert them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `cpu.shares` (2..=262144).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of pids.
    pub pids_limit: Option<i64>,
}

/// Writes `config.json` into `bundle` (created if missing) atomically.
pub fn write_bundle(bundle: &std::path::Path, spec: &Spec) -> Result<(), peapod_store::IoError> {
    peapod_store::create_dir_all(bundle)?;
    peapod_store::replace_json(&bundle.join("config.json"), spec)
}
