//! Container root filesystems: overlayfs over an image's layers with the container's own
//! upper and work directories.
//!
//! It mounts and unmounts only the target it is given and creates only the directories it
//! is given (plus an empty lower directory beside `work` for images without layers, and a
//! `lower/` directory of short links to the layers beside `upper`, which keep the mount's
//! options short).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use peapod_store::IoError;

/// The kernel's limit on mount option data (one page).
const MAX_MOUNT_DATA: usize = 4096;
/// Present when the overlay module knows the `index` option (Docker's overlay2 probes the same).
const OVERLAY_INDEX_PARAM: &str = "/sys/module/overlay/parameters/index";

/// Errors mounting or unmounting a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// Creating a directory or mounting failed.
    #[error(transparent)]
    Io(#[from] peapod_store::IoError),
    /// Something other than an overlay is mounted at the target already.
    #[error("{target}: already mounted ({fstype}), not an overlay")]
    AlreadyMounted {
        /// The mount point.
        target: PathBuf,
        /// The filesystem mounted there.
        fstype: String,
    },
    /// A directory's path cannot be given to overlayfs (it holds `,`, `:` or a newline).
    #[error("{0}: path cannot be used in overlay mount options (contains ',', ':' or a newline)")]
    UnusablePath(PathBuf),
    /// Too many or too long layer paths for the kernel's one-page option limit.
    #[error("overlay mount options for {target} are {len} bytes, more than the kernel's {max}")]
    OptionsTooLong {
        /// The mount point.
        target: PathBuf,
        /// Length of the option string.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Mounts overlayfs at `target` (created if missing): `layers` bottom first (an image with
/// no layers gets an empty lower dir, `empty-lower` beside `work`), `upper` and `work` created if missing.
/// Idempotent: an existing overlay mount at `target` is left as is.
///
/// overlayfs wants `lowerdir` top-most first, so the layers are given to it reversed; a
/// single layer is the sole lower dir.
pub fn mount(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    for d in [upper, work, target] {
        peapod_store::create_dir_all(d)?;
    }
    if let Some(fstype) = mounted_fstype(target)? {
        if fstype == "overlay" {
            return Ok(());
        }
        return Err(RootfsError::AlreadyMounted {
            target: target.to_owned(),
            fstype,
        });
    }
    let lowers: Vec<PathBuf> = if layers.is_empty() {
        let empty = work.with_file_name("empty-lower");
        peapod_store::create_dir_all(&empty)?;
        vec![empty]
    } else {
        layers.iter().rev().cloned().collect()
    };
    // Short options: every mountinfo read on the host (every runtime create reads it
    // several times) prints each overlay's options, so with many pods their length is what
    // reading mountinfo costs. Each lower dir gets a symlink `lower/<n>` beside `upper`, and
    // the mount is made from that directory with relative paths (as Docker's overlay2 uses
    // short links): about 50 bytes of options instead of 300 or more.
    let base = upper.parent().filter(|b| work.parent() == Some(*b));
    let mut names: Vec<PathBuf> = Vec::with_capacity(lowers.len() + 2);
    match base {
        Some(base) => {
            let links = base.join("lower");
            peapod_store::create_dir_all(&links)?;
            for (i, lower) in lowers.iter().enumerate() {
                let link = links.join(i.to_string());
                if fs::read_link(&link).ok().as_deref() != Some(lower.as_path()) {
                    let _ = fs::remove_file(&link);
                    std::os::unix::fs::symlink(lower, &link)
                        .map_err(|e| IoError::new("symlink", &link, e))?;
                }
                names.push(PathBuf::from(format!("lower/{i}")));
            }
            for d in [upper, work] {
                names.push(d.file_name().map(PathBuf::from).unwrap_or_default());
            }
        }
        None => names.extend(lowers.iter().cloned().chain([upper.into(), work.into()])),
    }
    let mut strs = Vec::with_capacity(names.len());
    for (p, shown) in names
        .iter()
        .zip(lowers.iter().map(PathBuf::as_path).chain([upper, work]))
    {
        let s = p
            .to_str()
            .ok_or_else(|| RootfsError::UnusablePath(shown.to_owned()))?;
        if s.contains([',', ':', '\n']) {
            return Err(RootfsError::UnusablePath(shown.to_owned()));
        }
        strs.push(s);
    }
    let (upper_s, work_s) = (strs[strs.len() - 2], strs[strs.len() - 1]);
    let mut data = format!(
        "lowerdir={},upperdir={upper_s},workdir={work_s}",
        strs[..strs.len() - 2].join(":")
    );
    // With the inodes index on, overlayfs refuses a lower dir used by another mount with a
    // different upper: layers are shared by every container, so turn it off (as Docker).
    if Path::new(OVERLAY_INDEX_PARAM).exists() {
        data.push_str(",index=off");
    }
    if data.len() >= MAX_MOUNT_DATA {
        return Err(RootfsError::OptionsTooLong {
            target: target.to_owned(),
            len: data.len(),
            max: MAX_MOUNT_DATA,
        });
    }
    let target_abs = std::path::absolute(target).map_err(|e| IoError::new("resolve", target, e))?;
    let mount = || {
        if let Some(base) = base {
            // Relative paths resolve from this thread's own working directory, changed
            // without touching the rest of the process (which may run other threads).
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                .map_err(|e| IoError::new("unshare CLONE_FS for", base, e.into()))?;
            std::env::set_current_dir(base).map_err(|e| IoError::new("chdir", base, e))?;
        }
        nix::mount::mount(
            Some("overlay"),
            &target_abs,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| IoError::new("mount overlay", target, e.into()))
    };
    std::thread::scope(|scope| match base {
        Some(_) => scope.spawn(mount).join().unwrap_or_else(|_| {
            Err(IoError::new(
                "mount overlay",
                target,
                io::Error::other("mount thread panicked"),
            ))
        }),
        None => mount(),
    })?;
    Ok(())
}

/// Unmounts `target` (lazily if busy); not mounted is success.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    // Mounts stacked on the same target come off one by one.
    for _ in 0..16 {
        if mounted_fstype(target)?.is_none() {
            return Ok(());
        }
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH)
                .map_err(|e| IoError::new("unmount (detach)", target, e.into()))?,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(IoError::new("unmount", target, e.into()).into()),
        }
    }
    Ok(())
}

/// The filesystem type mounted at `target` (the top-most mount), from
/// `/proc/self/mountinfo`; None when nothing is mounted there or it does not exist.
pub fn mounted_fstype(target: &Path) -> Result<Option<String>, IoError> {
    let target = match fs::canonicalize(target) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new("resolve", target, e)),
    };
    let info_path = Path::new("/proc/self/mountinfo");
    let info = fs::read_to_string(info_path).map_err(|e| IoError::new("read", info_path, e))?;
    Ok(find_mount(&info, &target))
}

/// The fstype of the last mountinfo line whose mount point is `target`.
fn find_mount(mountinfo: &str, target: &Path) -> Option<String> {
    let target = target.to_str()?;
    let mut found = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else {
            continue;
        };
        if unescape(mount_point) != target {
            continue;
        }
        let mut rest = fields.skip_while(|f| *f != "-");
        rest.next();
        if let Some(fstype) = rest.next() {
            found = Some(fstype.to_owned());
        }
    }
    found
}

/// Decodes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:50 / /tmp/a\\040b rw,relatime shared:40 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
91 22 0:51 / /tmp/c rw - tmpfs tmpfs rw
92 91 0:52 / /tmp/c rw - overlay overlay rw
";

    #[test]
    fn mountinfo_lookup_decodes_escapes_and_takes_the_top_mount() {
        assert_eq!(
            find_mount(INFO, Path::new("/tmp/a b")).as_deref(),
            Some("overlay")
        );
        assert_eq!(
            find_mount(INFO, Path::new("/tmp/c")).as_deref(),
            Some("overlay")
        );
        assert_eq!(find_mount(INFO, Path::new("/")).as_deref(), Some("ext4"));
        assert_eq!(find_mount(INFO, Path::new("/tmp")), None);
    }
}
