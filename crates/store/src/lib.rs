//! Durable, crash-safe state on disk: the paths every other crate derives from one root,
//! atomic file replacement (temp, rename; durable ones with fsync of the file and the
//! directory), advisory locks and ids.
//!
//! This crate owns no domain logic: it never starts processes, mounts or touches the network.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An I/O error with the operation and path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    /// What was being done ("create", "rename", ...).
    pub op: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// Wraps `source` with the operation and path.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Errors reading or writing a JSON state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file exists but does not hold the expected JSON.
    #[error("corrupt state file {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// Every directory peapod uses, derived from one root so tests can run in temp dirs.
///
/// Without a root the system paths are used: `/var/lib/peapod`, `/run/peapod`,
/// `/etc/peapod`, `/var/log/peapod`. With `--root R` they become `R/lib`, `R/run`,
/// `R/etc`, `R/log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Persistent state: images, containers, volumes, IPAM.
    pub lib: PathBuf,
    /// Volatile state: runtime state dir, sockets, netns pins.
    pub run: PathBuf,
    /// Configuration: `config.toml`, `cni/net.d/`.
    pub etc: PathBuf,
    /// Container and pod logs.
    pub log: PathBuf,
}

impl Paths {
    /// The system paths.
    pub fn system() -> Self {
        Self {
            lib: "/var/lib/peapod".into(),
            run: "/run/peapod".into(),
            etc: "/etc/peapod".into(),
            log: "/var/log/peapod".into(),
        }
    }

    /// All paths under one root directory.
    pub fn under(root: &Path) -> Self {
        Self {
            lib: root.join("lib"),
            run: root.join("run"),
            etc: root.join("etc"),
            log: root.join("log"),
        }
    }

    /// The image store's directory.
    pub fn images(&self) -> PathBuf {
        self.lib.join("image")
    }

    /// The directory holding one directory per container.
    pub fn containers(&self) -> PathBuf {
        self.lib.join("containers")
    }

    /// Named and anonymous volumes.
    pub fn volumes(&self) -> PathBuf {
        self.lib.join("volumes")
    }

    /// Network state (IPAM).
    pub fn network(&self) -> PathBuf {
        self.lib.join("network")
    }

    /// Where network namespaces are pinned by bind mounts.
    pub fn netns(&self) -> PathBuf {
        self.run.join("netns")
    }

    /// The OCI runtime's state directory (`runc --root`).
    pub fn runtime_state(&self) -> PathBuf {
        self.run.join("runtime")
    }

    /// The configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.etc.join("config.toml")
    }

    /// The CNI configuration directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.etc.join("cni").join("net.d")
    }
}

/// Creates `dir` and its parents.
pub fn create_dir_all(dir: &Path) -> Result<(), IoError> {
    fs::create_dir_all(dir).map_err(|e| IoError::new("create directory", dir, e))
}

/// Replaces `path` with `data` atomically and durably: a reader sees the old content or
/// the new, never a mix, and once this returns the new content survives a crash, power loss
/// included (temp file, fsync, rename, fsync of the directory). For what peapod
/// acknowledges: records of pods, containers, names, addresses, objects.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), IoError> {
    write_then_rename(path, data, true)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` with `data` atomically but without flushing it to the disk (temp file,
/// rename): a reader, or a process killed at any instant, sees the old content or the new,
/// never a mix; only a power loss may bring back older content. For observations and
/// derived files that recovery rewrites anyway (statuses, observed state, events, monitor
/// pids, OCI bundles, a sandbox's /etc files) — as runc writes its own state — so a pod's
/// start-up does not wait on the disk for them.
pub fn replace(path: &Path, data: &[u8]) -> Result<(), IoError> {
    write_then_rename(path, data, false)
}

fn write_then_rename(path: &Path, data: &[u8], durable: bool) -> Result<(), IoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| IoError::new("create", &tmp, e))?;
    let res = f
        .write_all(data)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .map_err(|e| IoError::new("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| IoError::new("rename", path, e)));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Flushes a directory's entries (after a rename or create inside it).
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IoError::new("sync directory", dir, e))
}

/// Serialises `value` as pretty JSON into `path` with [`atomic_write`].
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), IoError> {
    let data = serde_json::to_vec_pretty(value).expect("state types serialise");
    atomic_write(path, &data)
}

/// Serialises `value` as pretty JSON into `path` with [`replace`] (atomic, not flushed).
pub fn replace_json<T: Serialize>(path: &Path, value: &T) -> Result<(), IoError> {
    let data = serde_json::to_vec_pretty(value).expect("state types serialise");
    replace(path, &data)
}

/// Reads a JSON state file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| StateError::Corrupt {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IoError::new("read", path, e).into()),
    }
}

/// An exclusive advisory lock on a file, released when dropped (or when the process dies,
/// so a `kill -9` never leaves a stale lock).
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<File>,
}

impl Lock {
    /// Blocks until the lock on `path` (created if missing) is held.
    pub fn exclusive(path: &Path) -> Result<Self, IoError> {
        if let Some(dir) = path.parent() {
            create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| IoError::new("open lock", path, e))?;
        let flock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| IoError::new("lock", path, e.into()))?;
        Ok(Self { _flock: flock })
    }

    /// Takes the lock on `path` if no one holds it; `Ok(None)` when it is held elsewhere.
    /// The file is created if missing.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>, IoError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| IoError::new("open lock", path, e))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(Self { _flock: flock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(IoError::new("lock", path, e.into())),
        }
    }

    /// Whether another process holds the lock on `path` right now.
    pub fn is_held(path: &Path) -> Result<bool, IoError> {
        if !path.exists() {
            return Ok(false);
        }
        Ok(Self::try_exclusive(path)?.is_none())
    }
}

/// A new random 64-hex-digit id, as Docker's container ids.
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the kernel's random source is available");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn replace_swaps_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        replace_json(&p, &1u32).unwrap();
        replace(&p, b"2").unwrap();
        assert_eq!(read_json::<u32>(&p).unwrap(), Some(2));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.json")]);
        // A directory that is not there fails, naming the file it tried to make.
        let err = replace(&dir.path().join("no/such/file"), b"x").unwrap_err();
        assert!(err.to_string().contains("no/such"), "{err}");
    }

    #[test]
    fn read_json_missing_is_none_and_corrupt_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert!(read_json::<u32>(&p).unwrap().is_none());
        fs::write(&p, b"{not json").unwrap();
        let err = read_json::<u32>(&p).unwrap_err();
        assert!(err.to_string().contains("corrupt state file"), "{err}");
        write_json(&p, &7u32).unwrap();
        assert_eq!(read_json::<u32>(&p).unwrap(), Some(7));
    }

    #[test]
    fn paths_under_root_stay_under_root() {
        let p = Paths::under(Path::new("/tmp/r"));
        for d in [
            p.images(),
            p.containers(),
            p.netns(),
            p.runtime_state(),
            p.config_file(),
            p.log.clone(),
        ] {
            assert!(d.starts_with("/tmp/r"), "{}", d.display());
        }
    }

    #[test]
    fn try_lock_sees_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        assert!(!Lock::is_held(&p).unwrap());
        let held = Lock::exclusive(&p).unwrap();
        // flock locks belong to the open file description, so a second open conflicts even
        // within one process.
        assert!(Lock::is_held(&p).unwrap());
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(!Lock::is_held(&p).unwrap());
    }

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }
}
