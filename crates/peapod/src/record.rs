//! A container's durable records and the pure rules that turn them, plus what is observed
//! of its processes, into the status `ps` and `inspect` report.
//!
//! Two files per container, each with one writer: `config.json` (written by the CLI while
//! holding the container's lock) and `status.json` (written by the container's monitor, or
//! by the CLI reconciling after the monitor died).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use peapod_sandbox::ports::PortMapping;
use peapod_sandbox::Endpoint;
use serde::{Deserialize, Serialize};

/// How a container is attached to the network (`--network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The built-in bridge network (or the CNI conflist), with its own netns and IP.
    Bridge,
    /// Its own netns with only `lo`.
    None,
    /// The host's network namespace.
    Host,
    /// Another container's network namespace (the full id).
    Container(String),
}

impl NetworkMode {
    /// Docker's `HostConfig.NetworkMode` string.
    pub fn docker_name(&self) -> String {
        match self {
            Self::Bridge => "bridge".into(),
            Self::None => "none".into(),
            Self::Host => "host".into(),
            Self::Container(id) => format!("container:{id}"),
        }
    }
}

/// One mount a container gets, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// "bind" or "volume".
    pub kind: String,
    /// Volume name (volumes only).
    pub name: Option<String>,
    /// Host path.
    pub source: PathBuf,
    /// Path in the container.
    pub destination: String,
    /// Writable.
    pub rw: bool,
    /// The mode string given (`ro`, `rw` or empty).
    pub mode: String,
    /// Whether peapod made the volume for this container alone (removed by `rm -v`).
    pub anonymous: bool,
}

/// The lifecycle step the CLI reached; lets the next command finish or undo a half-made
/// container after `kill -9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Resources are being made; any of them may exist.
    Creating,
    /// Everything is made; the container can be started.
    Created,
}

/// What the user asked for and what was made for it. Written by the CLI only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// 64 hex digits.
    pub id: String,
    /// Unique name, without Docker's leading slash.
    pub name: String,
    /// When `create`/`run` began.
    pub created: DateTime<Utc>,
    /// The image as the user named it.
    pub image: String,
    /// The image id (`sha256:…`).
    pub image_id: String,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// User as given or from the image.
    pub user: String,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// Hostname.
    pub hostname: String,
    /// `--network`.
    pub network_mode: NetworkMode,
    /// The netns pin this container owns (bridge and none modes).
    pub netns: Option<PathBuf>,
    /// The network attachment, once made.
    pub endpoint: Option<Endpoint>,
    /// Mounts (volumes, binds, `--volumes-from`).
    pub mounts: Vec<MountRecord>,
    /// `-p`.
    pub ports: Vec<PortMapping>,
    /// OCI runtime binary.
    pub runtime: PathBuf,
    /// Absolute cgroups path.
    pub cgroups_path: String,
    /// How far creation got.
    pub phase: Phase,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Set for the containers of a pod (and its infra).
    #[serde(default)]
    pub pod: Option<PodLink>,
    /// Where the log goes when not the default `log/containers/<id>.log` (pod containers).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// Cgroup limits.
    #[serde(default)]
    pub resources: peapod_oci::Resources,
}

/// How a container belongs to a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodLink {
    /// The pod's uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The container's name in the pod spec (`POD` for the infra).
    pub container_name: String,
    /// Whether this is the pod's infra process (not run by the OCI runtime).
    pub infra: bool,
    /// Whether this is an init container.
    #[serde(default)]
    pub init: bool,
    /// Restart attempt.
    #[serde(default)]
    pub attempt: u32,
    /// The infra's ipc namespace to join.
    pub ipc: Option<PathBuf>,
    /// The infra's uts namespace to join.
    pub uts: Option<PathBuf>,
    /// A pid namespace to join (the host's for `hostPID`); none: a new one.
    #[serde(default)]
    pub pid: Option<PathBuf>,
}

/// What the monitor recorded about the container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Host pid of the container's init while running.
    pub pid: i32,
    /// The pid's start time (clock ticks since boot, /proc/PID/stat field 22), so a
    /// recycled pid is never mistaken for the container.
    pub pid_start: u64,
    /// When the process started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Exit code (128+signal when killed by a signal; 255 when unknown).
    pub exit_code: Option<i32>,
    /// Why it ended when not a plain exit ("monitor died", "runtime error: …").
    pub error: Option<String>,
}

/// The state `ps` shows, derived from the records and what is observed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Made, never started (or being made).
    Created,
    /// Process alive.
    Running {
        /// Host pid.
        pid: i32,
        /// Since.
        started_at: DateTime<Utc>,
    },
    /// Process gone.
    Exited {
        /// Exit code.
        code: i32,
        /// When.
        finished_at: DateTime<Utc>,
    },
}

impl State {
    /// Docker's `State.Status`.
    pub fn docker_status(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running { .. } => "running",
            Self::Exited { .. } => "exited",
        }
    }

    /// The STATUS column of `ps`.
    pub fn ps_status(&self, now: DateTime<Utc>) -> String {
        match self {
            Self::Created => "Created".into(),
            Self::Running { started_at, .. } => {
                format!("Up {}", crate::format::human_duration(now - *started_at))
            }
            Self::Exited { code, finished_at } => {
                format!("Exited ({code}) {}", crate::format::ago(*finished_at, now))
            }
        }
    }
}

/// What is observed of a container's processes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The recorded pid is alive with the recorded start time.
    pub process_alive: bool,
    /// The monitor still holds its lock.
    pub monitor_alive: bool,
}

/// The rule: a recorded exit is final; a recorded start is `Running` while the process
/// lives; a process that is gone with no recorded exit and no monitor to record one ended
/// in an unknown way — reported as exit 255 (as Docker does when its shim died), to be
/// recorded by the caller (`Reconcile`).
pub fn derive_state(
    status: Option<&ContainerStatus>,
    observed: Observed,
    now: DateTime<Utc>,
) -> (State, bool) {
    let Some(st) = status else {
        return (State::Created, false);
    };
    if let (Some(code), Some(finished_at)) = (st.exit_code, st.finished_at) {
        return (State::Exited { code, finished_at }, false);
    }
    let Some(started_at) = st.started_at else {
        return (State::Created, false);
    };
    if observed.process_alive || observed.monitor_alive {
        return (
            State::Running {
                pid: st.pid,
                started_at,
            },
            false,
        );
    }
    (
        State::Exited {
            code: 255,
            finished_at: now,
        },
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn derive_state_table() {
        let running = ContainerStatus {
            pid: 42,
            pid_start: 7,
            started_at: Some(t(0)),
            ..Default::default()
        };
        let exited = ContainerStatus {
            exit_code: Some(3),
            finished_at: Some(t(5)),
            ..running.clone()
        };
        let both = Observed {
            process_alive: true,
            monitor_alive: true,
        };
        let none = Observed {
            process_alive: false,
            monitor_alive: false,
        };
        let only_proc = Observed {
            process_alive: true,
            monitor_alive: false,
        };
        let only_mon = Observed {
            process_alive: false,
            monitor_alive: true,
        };
        let cases: Vec<(Option<&ContainerStatus>, Observed, State, bool)> = vec![
            (None, none, State::Created, false),
            (
                Some(&running),
                both,
                State::Running {
                    pid: 42,
                    started_at: t(0),
                },
                false,
            ),
            // Monitor killed, container still alive: still running, nothing to record.
            (
                Some(&running),
                only_proc,
                State::Running {
                    pid: 42,
                    started_at: t(0),
                },
                false,
            ),
            // The process just died and the monitor is about to record it.
            (
                Some(&running),
                only_mon,
                State::Running {
                    pid: 42,
                    started_at: t(0),
                },
                false,
            ),
            // Both gone and no exit recorded: unknown exit, must be reconciled.
            (
                Some(&running),
                none,
                State::Exited {
                    code: 255,
                    finished_at: t(100),
                },
                true,
            ),
            (
                Some(&exited),
                none,
                State::Exited {
                    code: 3,
                    finished_at: t(5),
                },
                false,
            ),
            (
                Some(&exited),
                both,
                State::Exited {
                    code: 3,
                    finished_at: t(5),
                },
                false,
            ),
        ];
        for (st, obs, want, reconcile) in cases {
            assert_eq!(
                derive_state(st, obs, t(100)),
                (want, reconcile),
                "{st:?} {obs:?}"
            );
        }
    }

    #[test]
    fn ps_status_strings() {
        assert_eq!(
            State::Running {
                pid: 1,
                started_at: t(0)
            }
            .ps_status(t(3)),
            "Up 3 seconds"
        );
        assert_eq!(
            State::Exited {
                code: 0,
                finished_at: t(0)
            }
            .ps_status(t(37)),
            "Exited (0) 37 seconds ago"
        );
        assert_eq!(State::Created.ps_status(t(0)), "Created");
    }
}
