//! From a container plan to an OCI runtime `Spec` (pure, golden-tested), the bundle on disk,
//! and the driver that runs an OCI runtime binary through runc's command line.
//!
//! It does not know about images, networks or pods: the caller hands it paths and values.

pub use oci_spec;

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// The image-side process defaults (from the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProcess {
    /// Image `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// Image `Cmd`.
    pub cmd: Vec<String>,
    /// Image `Env` (`K=V`).
    pub env: Vec<String>,
    /// Image `WorkingDir`.
    pub working_dir: Option<String>,
    /// Image `User`.
    pub user: Option<String>,
}

/// What `run` overrides, with Docker's meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOverrides {
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image name; non-empty replaces the image's Cmd.
    pub cmd: Vec<String>,
    /// `-e K=V` (a bare `K` takes the value from the caller's environment before reaching here).
    pub env: Vec<String>,
    /// `-w DIR`.
    pub working_dir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
}

/// The merged process, before user names are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedProcess {
    /// argv.
    pub args: Vec<String>,
    /// Environment, `PATH` defaulted, overrides winning by key.
    pub env: Vec<String>,
    /// Working directory, `/` by default.
    pub cwd: String,
    /// User spec (`uid[:gid]` or names), `0` by default.
    pub user: String,
}

/// Merging failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Neither the image nor the caller gave a command.
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    /// `-w` must be absolute.
    #[error("the working directory {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
}

/// Docker's rules: `--entrypoint` replaces the image entrypoint and drops the image Cmd;
/// given args replace the Cmd; env merges by key.
pub fn merge_process(image: &ImageProcess, overrides: &ProcessOverrides) -> Result<MergedProcess, MergeError> {
    todo!("{image:?} {overrides:?}")
}

/// A resolved numeric user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumericUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// Resolving a user name failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not in the rootfs' /etc/passwd (or /etc/group).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    /// The group is not in the rootfs' /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
}

/// Resolves `user[:group]` (names or numbers) against the passwd/group files' contents
/// (empty strings when absent), as runc/Docker do. Pure.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<NumericUser, UserError> {
    todo!("{spec} {passwd} {group}")
}

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
}

/// The pure builder: secure defaults (14 default capabilities, masked and read-only paths,
/// standard /dev, no_new_privs, RuntimeDefault seccomp) plus the plan.
pub fn spec_for(plan: &ContainerPlan) -> Spec {
    todo!("{plan:?}")
}

/// Cgroup hierarchies.
pub mod cgroups {
    use std::path::{Path, PathBuf};

    /// Which cgroup layout a host has.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CgroupLayout {
        /// cgroup v1 controllers under `<mount>/<controller>` (possibly with a hybrid
        /// `unified` cgroup2 mount holding no controllers).
        V1,
        /// cgroup v2 unified at `<mount>`.
        V2,
    }

    /// Detects the layout of the cgroup filesystem mounted at `mount` (normally /sys/fs/cgroup).
    pub fn detect(mount: &Path) -> CgroupLayout {
        todo!("{mount:?}")
    }

    /// The directories the runtime creates for an absolute cgroups path (one per v1
    /// controller, one for v2) — what teardown must find gone.
    pub fn dirs(mount: &Path, layout: CgroupLayout, cgroups_path: &str) -> Vec<PathBuf> {
        todo!("{mount:?} {layout:?} {cgroups_path}")
    }
}

/// The OCI runtime driver: runc's command line (create/start/state/kill/delete/exec).
pub mod runtime {
    use std::path::{Path, PathBuf};

    /// A runtime binary plus its state directory (`--root`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Runtime {
        /// Absolute path of the binary.
        pub binary: PathBuf,
        /// The runtime's `--root` state dir (under peapod's run dir, so tests are isolated).
        pub state_root: PathBuf,
    }

    /// Errors running the runtime; each carries the command and the runtime's stderr.
    #[derive(Debug, thiserror::Error)]
    pub enum RuntimeError {
        /// `--runtime` named something not on PATH and not an executable file.
        #[error("OCI runtime {0:?} not found: give a name on PATH (runc, crun, youki) or an executable path")]
        NotFound(String),
        /// The runtime ran and failed.
        #[error("{runtime} {command} failed: {stderr}")]
        Failed {
            /// The runtime binary.
            runtime: String,
            /// The subcommand.
            command: String,
            /// What it printed.
            stderr: String,
        },
        /// The runtime could not be started.
        #[error("running {0}: {1}")]
        Spawn(String, #[source] std::io::Error),
    }

    /// `runc state` output, the parts we use.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RuntimeState {
        /// created, running, paused, stopped.
        pub status: String,
        /// Init pid (0 when stopped).
        pub pid: i32,
    }

    impl Runtime {
        /// Resolves `name_or_path` (None: crun where it works on this host, runc otherwise).
        pub fn resolve(name_or_path: Option<&str>, state_root: &Path) -> Result<Self, RuntimeError> {
            todo!("{name_or_path:?} {state_root:?}")
        }

        /// `create --bundle B --pid-file P [--console-socket S] ID`; the container's stdio is
        /// the given stdio when there is no console socket.
        pub fn create(
            &self,
            id: &str,
            bundle: &Path,
            pid_file: &Path,
            console_socket: Option<&Path>,
            stdio: [std::process::Stdio; 3],
        ) -> Result<(), RuntimeError> {
            todo!("{id} {bundle:?} {pid_file:?} {console_socket:?} {}", stdio.len())
        }

        /// `start ID`.
        pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
            todo!("{id}")
        }

        /// `state ID`; `Ok(None)` when the runtime does not know the container.
        pub fn state(&self, id: &str) -> Result<Option<RuntimeState>, RuntimeError> {
            todo!("{id}")
        }

        /// `kill [--all] ID SIGNAL`; a container that is gone is success.
        pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
            todo!("{id} {signal} {all}")
        }

        /// `delete --force ID`; idempotent.
        pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
            todo!("{id}")
        }

        /// A ready-to-run `exec` command (`runc exec [-t] [--env K=V] [--cwd D] ID ARGS...`),
        /// stdio inherited; its exit status is the process's.
        pub fn exec_command(&self, id: &str, args: &[String], tty: bool, env: &[String], cwd: Option<&str>) -> std::process::Command {
            todo!("{id} {args:?} {tty} {env:?} {cwd:?}")
        }
    }

    /// A listening unix socket for `--console-socket`: the runtime sends the pty master over it.
    #[derive(Debug)]
    pub struct ConsoleSocket {
        path: PathBuf,
        listener: std::os::unix::net::UnixListener,
    }

    impl ConsoleSocket {
        /// Binds at `path` (removing a stale socket).
        pub fn bind(path: &Path) -> std::io::Result<Self> {
            let _ = std::fs::remove_file(path);
            let listener = std::os::unix::net::UnixListener::bind(path)?;
            Ok(Self { path: path.to_owned(), listener })
        }

        /// The socket path to pass to the runtime.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Accepts one connection and receives the pty master it carries (SCM_RIGHTS).
        pub fn receive_pty(&self) -> std::io::Result<std::os::fd::OwnedFd> {
            todo!("{:?}", self.listener)
        }
    }
}

/// Writes `config.json` into `bundle` (created if missing) atomically.
pub fn write_bundle(bundle: &std::path::Path, spec: &Spec) -> Result<(), peapod_store::IoError> {
    todo!("{bundle:?} {spec:?}")
}
