//! What a container's status is, as runc decides it: from the saved status and whether the
//! recorded init process is still the same live process (pid plus start time, so a reused
//! pid is not mistaken for the container).

use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use crate::Error;

/// The file, in the container's state directory, holding its init's start time (clock
/// ticks after boot, field 22 of `/proc/PID/stat`).
const INIT_START: &str = "peapod-init-start";

/// A container's status, named as in the OCI state document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` has not finished.
    Creating,
    /// Created; the user process waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen.
    Paused,
    /// The init process exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        })
    }
}

/// The OCI state document as runc prints it (`runc state`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocument {
    pub oci_version: String,
    pub id: String,
    /// 0 once stopped, as runc reports.
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
}

/// The container's state directory, checked to exist and the id to be a plain name.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, Error> {
    // A leading '.' is the runtime's own files' (the seccomp cache, the staged bundles).
    let valid = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if !valid {
        return Err(Error::BadId(id.to_owned()));
    }
    let dir = root.join(id);
    if !dir.join("state.json").exists() {
        return Err(Error::NotExist(id.to_owned()));
    }
    Ok(dir)
}

/// Loads a container's saved state.
pub fn load(root: &Path, id: &str) -> Result<Container, Error> {
    let dir = container_dir(root, id)?;
    Container::load(dir).map_err(Error::container(format!(
        "loading the state of container {id}"
    )))
}

/// Records the init's start time next to the state (after `create`).
pub fn record_init_start(container: &Container) -> Result<(), Error> {
    let Some(pid) = container.pid() else {
        return Ok(());
    };
    let path = container.root.join(INIT_START);
    match start_time(pid.as_raw()) {
        Some(t) => std::fs::write(&path, t.to_string()).map_err(|e| Error::io("write", path, e)),
        None => Ok(()),
    }
}

/// The status now: the saved one while the recorded init lives, else stopped.
pub fn status(container: &Container) -> Status {
    let alive = container.pid().is_some_and(|pid| {
        let now = start_time(pid.as_raw());
        let recorded = std::fs::read_to_string(container.root.join(INIT_START))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        match (now, recorded) {
            (None, _) => false,
            (Some(now), Some(recorded)) => now == recorded,
            (Some(_), None) => true,
        }
    });
    if !alive {
        return Status::Stopped;
    }
    match container.status() {
        ContainerStatus::Creating => Status::Creating,
        ContainerStatus::Created => Status::Created,
        ContainerStatus::Paused => Status::Paused,
        // libcontainer saves "stopped" after any signal it sends: a live init runs.
        ContainerStatus::Running | ContainerStatus::Stopped => Status::Running,
    }
}

/// The state document of a container.
pub fn document(container: &Container) -> Result<StateDocument, Error> {
    let status = status(container);
    let bundle = container.bundle().clone();
    Ok(StateDocument {
        oci_version: container.state.oci_version.clone(),
        id: container.id().to_owned(),
        pid: match status {
            Status::Stopped => 0,
            _ => container.pid().map_or(0, |p| p.as_raw()),
        },
        status,
        rootfs: rootfs_of(&bundle),
        bundle,
        created: container
            .created()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default(),
        owner: String::new(),
    })
}

/// The rootfs the bundle's config.json names (absolute, as runc reports it).
fn rootfs_of(bundle: &Path) -> PathBuf {
    libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json"))
        .ok()
        .and_then(|s| s.root().as_ref().map(|r| r.path().clone()))
        .map(|p| if p.is_absolute() { p } else { bundle.join(p) })
        .unwrap_or_default()
}

/// A live (not zombie) process's start time, from `/proc/PID/stat`.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // After the state (field 3) comes field 4; the start time is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let me = start_time(std::process::id() as i32).expect("start time of this process");
        assert!(me > 0);
        assert_eq!(start_time(std::process::id() as i32), Some(me));
        assert_eq!(start_time(i32::MAX), None);
    }

    #[test]
    fn ids_are_plain_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", ".", "..", ".seccomp", "a/b", "../x", "a b"] {
            assert!(
                matches!(container_dir(dir.path(), bad), Err(Error::BadId(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            container_dir(dir.path(), "c1"),
            Err(Error::NotExist(ref id)) if id == "c1"
        ));
        assert_eq!(
            Error::NotExist("c1".into()).to_string(),
            "container c1 does not exist"
        );
    }

    #[test]
    fn statuses_print_like_runc() {
        assert_eq!(
            serde_json::to_string(&Status::Created).unwrap(),
            "\"created\""
        );
        assert_eq!(Status::Stopped.to_string(), "stopped");
    }
}
