//! Network namespaces pinned by a bind mount on a file, as `ip netns` does.
//!
//! A namespace is made by a dedicated short-lived thread that unshares `CLONE_NEWNET`,
//! brings `lo` up and bind-mounts its own `/proc/thread-self/ns/net` onto the pin; the
//! calling thread's (and process's) namespace never changes. The pin directory is made a
//! private mount point so pins do not propagate into other mount namespaces.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use peapod_store::IoError;

use crate::netlink::{Netlink, NlError};

/// Netns errors.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A step failed.
    #[error(transparent)]
    Io(#[from] peapod_store::IoError),
    /// Something already exists at the pin path (remove it first).
    #[error("netns pin {0} already exists")]
    Exists(PathBuf),
    /// Configuring the new namespace over netlink (bringing `lo` up) failed.
    #[error("{op}: {source}")]
    Netlink {
        /// The step and its object.
        op: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

impl From<NlError> for NetnsError {
    fn from(e: NlError) -> Self {
        NetnsError::Netlink {
            op: e.op,
            source: e.source,
        }
    }
}

/// Creates a new network namespace with `lo` up, pinned at `pin`.
pub fn create(pin: &Path) -> Result<(), NetnsError> {
    let dir = pin
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    peapod_store::create_dir_all(dir)?;
    make_private_mount_point(dir)?;
    // Mode 0 as `ip netns` does: the file only ever serves as a mount point.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(pin)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::Exists(pin.to_owned()))
        }
        Err(e) => return Err(IoError::new("create netns pin", pin, e).into()),
    }
    let made = std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("peapod-netns-new".into())
            .spawn_scoped(s, || -> Result<(), NetnsError> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| IoError::new("unshare network namespace for", pin, e.into()))?;
                let nl = Netlink::connect().map_err(|e| NetnsError::Netlink {
                    op: "open netlink socket in the new netns".into(),
                    source: e,
                })?;
                let lo = nl.link("lo")?.ok_or_else(|| NetnsError::Netlink {
                    op: "look up lo in the new netns".into(),
                    source: io::Error::from_raw_os_error(nix::libc::ENODEV),
                })?;
                nl.set_up(lo.header.index, "lo")?;
                let own = Path::new("/proc/thread-self/ns/net");
                mount(Some(own), pin, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| IoError::new("bind-mount the new netns on", pin, e.into()))?;
                Ok(())
            })
            .map_err(|e| IoError::new("spawn a thread to create netns", pin, e))?;
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if made.is_err() {
        // Nothing is mounted (the mount is the last step); the empty file goes.
        let _ = fs::remove_file(pin);
    }
    made
}

/// Unmounts and removes the pin; missing is success.
///
/// The namespace itself lives on while a process is in it or another pin holds it.
pub fn remove(pin: &Path) -> Result<(), NetnsError> {
    // A pin may have been mounted more than once (a crash between two creates); peel every
    // layer so the file can go.
    for _ in 0..16 {
        match umount2(pin, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(e) => return Err(IoError::new("unmount netns pin", pin, e.into()).into()),
        }
    }
    match fs::remove_file(pin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("remove netns pin", pin, e).into()),
    }
}

/// Whether a namespace is pinned at `pin` (an nsfs bind mount on the file), rather than
/// only the empty file being there (its mount went with a reboot or an unmount).
pub fn is_pinned(pin: &Path) -> bool {
    let (Ok(file), Some(parent)) = (fs::metadata(pin), pin.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|dir| dir.dev() != file.dev())
}

/// The inode number of the namespace pinned at `pin` (or of any `/proc/PID/ns/net`), the
/// identity that `ls -l /proc/PID/ns/net` shows.
pub fn inode(pin: &Path) -> io::Result<u64> {
    Ok(fs::metadata(pin)?.ino())
}

/// Runs `f` in a new thread that has entered the network namespace at `netns` (a pin or a
/// `/proc/PID/ns/net`), and returns its result. Sockets that `f` opens belong to that
/// namespace for their whole life; the calling thread's namespace never changes. A panic
/// in `f` is resumed in the caller.
pub fn run_in<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = open(netns)?;
    run_in_file(&file, netns, f)
}

/// Opens a namespace file, for `setns` or `IFLA_NET_NS_FD`.
pub(crate) fn open(netns: &Path) -> Result<File, NetnsError> {
    File::open(netns).map_err(|e| IoError::new("open netns", netns, e).into())
}

/// [`run_in`] with an open namespace file (`path` only names it in errors).
pub(crate) fn run_in_file<T: Send>(
    netns: &File,
    path: &Path,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("peapod-netns".into())
            .spawn_scoped(s, || -> Result<T, NetnsError> {
                setns(netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| IoError::new("enter netns", path, e.into()))?;
                Ok(f())
            })
            .map_err(|e| IoError::new("spawn a thread to enter netns", path, e))?;
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Makes `dir` a private mount point unless it already is a mount point (ours from an
/// earlier call, or one the administrator set up, whose propagation is left alone).
fn make_private_mount_point(dir: &Path) -> Result<(), IoError> {
    let real = fs::canonicalize(dir).map_err(|e| IoError::new("resolve", dir, e))?;
    let mountinfo = Path::new("/proc/self/mountinfo");
    let table = fs::read_to_string(mountinfo).map_err(|e| IoError::new("read", mountinfo, e))?;
    if is_mount_point(&table, &real) {
        return Ok(());
    }
    mount(
        Some(&real),
        &real,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| IoError::new("bind-mount netns directory onto itself", &real, e.into()))?;
    mount(
        None::<&str>,
        &real,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| IoError::new("make netns directory a private mount", &real, e.into()))
}

/// Whether `/proc/self/mountinfo` text lists `dir` as a mount point.
fn is_mount_point(mountinfo: &str, dir: &Path) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(&unescape_mountinfo(mp)) == dir)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
41 30 0:25 /peapod/netns /run/peapod/netns rw,nosuid - tmpfs tmpfs rw
42 22 8:1 /a\\040b /tmp/a\\040b rw - ext4 /dev/sda1 rw
";

    #[test]
    fn mount_points_are_found_with_escapes() {
        assert!(is_mount_point(MOUNTINFO, Path::new("/run/peapod/netns")));
        assert!(is_mount_point(MOUNTINFO, Path::new("/tmp/a b")));
        assert!(!is_mount_point(MOUNTINFO, Path::new("/run/peapod")));
    }

    #[test]
    fn unescape_leaves_plain_text_alone() {
        assert_eq!(unescape_mountinfo("/x\\011y\\134z"), "/x\ty\\z");
        assert_eq!(unescape_mountinfo("/trailing\\04"), "/trailing\\04");
    }
}
