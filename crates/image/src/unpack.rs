//! Layer unpacking: one layer tar stream into one directory, ready to be an overlayfs lower
//! dir. It owns only the destination directory it is given and never writes outside it.
//!
//! What it writes: regular files, directories, symlinks, hardlinks, character and block
//! devices and fifos (with `mknod`, as containerd does when it runs as root outside a user
//! namespace), with numeric owners, modes (setuid/setgid/sticky included), mtimes and
//! the xattrs of PAX `SCHILY.xattr.*` records. Directory modes and mtimes are applied after
//! their children are written.
//!
//! OCI whiteouts are converted for overlayfs exactly as containerd's overlay snapshotter
//! does: `.wh.NAME` becomes a 0/0 character device `NAME` (owned as the whiteout entry), and
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Other `.wh..wh.*` names
//! are AUFS metadata and are skipped, as Docker does.
//!
//! Path safety: a layer is refused as a whole (the error names the entry) when an entry name
//! is absolute or has a `..` component, when a parent component of an entry is a symlink
//! (`evil -> /etc` then `evil/passwd`), or when a hardlink target is absolute, has `..`,
//! goes through a symlink or does not exist in the layer. Symlink entries themselves may
//! point anywhere: they are resolved inside the container. No operation follows a symlink:
//! every parent component is checked with `lstat`, files are created with `O_EXCL` and
//! `O_NOFOLLOW`, and owners, times and xattrs are set with the `l*` calls.
//!
//! Xattrs named `trusted.overlay.*` in the layer are dropped: only the whiteout conversion
//! above may set overlayfs's own attributes (a layer must not steer overlayfs redirects).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use peapod_store::IoError;
use xattr::FileExt as _;

/// The whiteout prefix of the OCI layer format.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The prefix of AUFS metadata names (and of the opaque marker).
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
/// overlayfs's opaque-directory xattr.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The PAX record prefix carrying xattrs.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Errors unpacking a layer. Each names the entry involved.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer stream could not be read: truncated, corrupt tar or compression.
    #[error("reading the layer stream: {0}")]
    Read(#[source] io::Error),
    /// An entry name is absolute or has a `..` component.
    #[error("unsafe entry {entry:?}: {reason}; refusing the layer")]
    UnsafePath {
        /// The entry name as in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A parent component of an entry is a symlink: writing through it could escape the layer.
    #[error("unsafe entry {entry:?}: its parent {component:?} is a symlink; refusing the layer")]
    SymlinkInPath {
        /// The entry name as in the archive.
        entry: String,
        /// The parent path (relative to the layer) that is a symlink.
        component: String,
    },
    /// A parent component of an entry exists but is not a directory.
    #[error("entry {entry:?}: its parent {component:?} is not a directory")]
    NotADirectory {
        /// The entry name as in the archive.
        entry: String,
        /// The parent path (relative to the layer) that is not a directory.
        component: String,
    },
    /// A hardlink's target is unsafe or not in the layer.
    #[error("unsafe hardlink {entry:?} -> {target:?}: {reason}; refusing the layer")]
    HardlinkTarget {
        /// The entry name as in the archive.
        entry: String,
        /// The link target as in the archive.
        target: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An entry type that a layer cannot hold (e.g. a GNU volume header).
    #[error("entry {entry:?}: unsupported tar entry type {kind}")]
    UnsupportedType {
        /// The entry name as in the archive.
        entry: String,
        /// The tar type flag.
        kind: String,
    },
    /// A header field is invalid (uid beyond 32 bits, missing device numbers, no link name).
    #[error("entry {entry:?}: {reason}")]
    InvalidHeader {
        /// The entry name as in the archive.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the entry to the layer directory failed.
    #[error("entry {entry:?}: {source}")]
    Write {
        /// The entry name as in the archive.
        entry: String,
        /// The failed operation and path.
        #[source]
        source: IoError,
    },
}

/// What unpacking a layer produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// Sum of the sizes of the regular files written (hardlinks counted once), in bytes.
    pub size: u64,
    /// Number of tar entries processed.
    pub entries: u64,
}

/// Unpacks the (uncompressed) layer tar `stream` into `dest`, an existing empty directory.
///
/// Returns the stream back, positioned after the tar's end-of-archive marker, so the
/// caller can read the rest into its diffID hash. On error `dest` holds a partial layer:
/// the caller discards it.
pub fn unpack_layer<R: Read>(stream: R, dest: &Path) -> Result<(UnpackedLayer, R), UnpackError> {
    let mut archive = tar::Archive::new(stream);
    let mut unpacker = LayerUnpacker {
        root: dest.to_owned(),
        dirs: HashMap::new(),
        stats: UnpackedLayer {
            size: 0,
            entries: 0,
        },
    };
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish_dirs()?;
    Ok((unpacker.stats, archive.into_inner()))
}

/// Owners, mode and times of an entry, from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: SystemTime,
    atime: SystemTime,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A directory whose mode and mtime are applied once its children are written.
struct DeferredDir {
    mode: u32,
    mtime: SystemTime,
    atime: SystemTime,
}

/// Writes one layer's entries under `root`.
struct LayerUnpacker {
    root: PathBuf,
    /// Keyed by the path relative to the root; the last entry for a directory wins.
    dirs: HashMap<Vec<Vec<u8>>, DeferredDir>,
    stats: UnpackedLayer,
}

impl LayerUnpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        self.stats.entries += 1;
        let name_bytes = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            return Ok(());
        }
        let comps = split_name(&name_bytes).map_err(|reason| UnpackError::UnsafePath {
            entry: name.clone(),
            reason,
        })?;
        let Some((base, parents)) = comps.split_last() else {
            // The layer root itself ("./"): containerd ignores it; so do we.
            return Ok(());
        };
        // AUFS metadata (hardlink dirs and the like) is not content.
        if comps
            .iter()
            .any(|c| c.starts_with(WHITEOUT_META_PREFIX) && c.as_slice() != WHITEOUT_OPAQUE)
        {
            return Ok(());
        }
        let meta = read_meta(entry, &name)?;
        let parent = self.ensure_parent(parents, &name)?;
        let write_err = |source| UnpackError::Write {
            entry: name.clone(),
            source,
        };

        if base.as_slice() == WHITEOUT_OPAQUE {
            set_xattr_nofollow(&parent, OVERLAY_OPAQUE_XATTR.as_bytes(), b"y")
                .map_err(write_err)?;
            return Ok(());
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(UnpackError::UnsafePath {
                    entry: name,
                    reason: "whiteout of an invalid name",
                });
            }
            let path = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&path).map_err(write_err)?;
            nix::sys::stat::mknod(&path, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| write_err(IoError::new("mknod whiteout", &path, e.into())))?;
            std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                .map_err(|e| write_err(IoError::new("lchown", &path, e)))?;
            return Ok(());
        }

        let path = parent.join(OsStr::from_bytes(base));
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.regular_file(entry, &path, &meta, &name)?;
            }
            T::Directory => {
                let is_dir = fs::symlink_metadata(&path)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if !is_dir {
                    remove_existing(&path).map_err(write_err)?;
                    fs::create_dir(&path)
                        .map_err(|e| write_err(IoError::new("create directory", &path, e)))?;
                }
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .map_err(|e| write_err(IoError::new("lchown", &path, e)))?;
                apply_xattrs(&path, None, &meta.xattrs, false).map_err(write_err)?;
                self.dirs.insert(
                    comps.clone(),
                    DeferredDir {
                        mode: meta.mode,
                        mtime: meta.mtime,
                        atime: meta.atime,
                    },
                );
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        entry: name.clone(),
                        reason: "symlink without a target".to_owned(),
                    })?;
                remove_existing(&path).map_err(write_err)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| write_err(IoError::new("create symlink", &path, e)))?;
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .map_err(|e| write_err(IoError::new("lchown", &path, e)))?;
                apply_xattrs(&path, None, &meta.xattrs, true).map_err(write_err)?;
                set_times_nofollow(&path, &meta).map_err(write_err)?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        entry: name.clone(),
                        reason: "hardlink without a target".to_owned(),
                    })?;
                self.hardlink(&comps, &path, &target, &name)?;
            }
            T::Char | T::Block | T::Fifo => {
                let (sflag, dev) = match kind {
                    T::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let h = entry.header();
                        let major = h.device_major().ok().flatten();
                        let minor = h.device_minor().ok().flatten();
                        let (Some(major), Some(minor)) = (major, minor) else {
                            return Err(UnpackError::InvalidHeader {
                                entry: name,
                                reason: "device without valid major/minor numbers".to_owned(),
                            });
                        };
                        let sflag = if kind == T::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (sflag, nix::sys::stat::makedev(major.into(), minor.into()))
                    }
                };
                remove_existing(&path).map_err(write_err)?;
                nix::sys::stat::mknod(&path, sflag, Mode::empty(), dev)
                    .map_err(|e| write_err(IoError::new("mknod", &path, e.into())))?;
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .map_err(|e| write_err(IoError::new("lchown", &path, e)))?;
                // The node was just created by us in a checked directory: not a symlink.
                fs::set_permissions(&path, Permissions::from_mode(meta.mode))
                    .map_err(|e| write_err(IoError::new("chmod", &path, e)))?;
                apply_xattrs(&path, None, &meta.xattrs, false).map_err(write_err)?;
                set_times_nofollow(&path, &meta).map_err(write_err)?;
            }
            other => {
                return Err(UnpackError::UnsupportedType {
                    entry: name,
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    fn regular_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        meta: &Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        let write_err = |source| UnpackError::Write {
            entry: name.to_owned(),
            source,
        };
        remove_existing(path).map_err(write_err)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| write_err(IoError::new("create", path, e)))?;
        let want = entry.size();
        let mut buf = vec![0u8; 128 * 1024];
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Read(e)),
            };
            file.write_all(&buf[..n])
                .map_err(|e| write_err(IoError::new("write", path, e)))?;
            written += n as u64;
        }
        if written != want {
            return Err(UnpackError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("entry {name:?} truncated: {written} of {want} bytes"),
            )));
        }
        self.stats.size += written;
        // chown before chmod: chown clears setuid/setgid bits.
        std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
            .map_err(|e| write_err(IoError::new("fchown", path, e)))?;
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(|e| write_err(IoError::new("fchmod", path, e)))?;
        apply_xattrs(path, Some(&file), &meta.xattrs, false).map_err(write_err)?;
        file.set_times(
            FileTimes::new()
                .set_accessed(meta.atime)
                .set_modified(meta.mtime),
        )
        .map_err(|e| write_err(IoError::new("set times", path, e)))?;
        Ok(())
    }

    fn hardlink(
        &mut self,
        comps: &[Vec<u8>],
        path: &Path,
        target: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        let target_name = String::from_utf8_lossy(target).into_owned();
        let refuse = |reason| UnpackError::HardlinkTarget {
            entry: name.to_owned(),
            target: target_name.clone(),
            reason,
        };
        if target.starts_with(b"/") {
            return Err(refuse("absolute target"));
        }
        let tcomps = split_name(target).map_err(refuse)?;
        if tcomps.is_empty() {
            return Err(refuse("target is the layer root"));
        }
        if tcomps.as_slice() == comps {
            return Ok(());
        }
        // Every parent of the target must be a real directory of this layer.
        let mut tpath = self.root.clone();
        for c in &tcomps[..tcomps.len() - 1] {
            tpath.push(OsStr::from_bytes(c));
            match fs::symlink_metadata(&tpath) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse("target path goes through a symlink"))
                }
                _ => return Err(refuse("target is not in the layer")),
            }
        }
        tpath.push(OsStr::from_bytes(&tcomps[tcomps.len() - 1]));
        match fs::symlink_metadata(&tpath) {
            Ok(m) if m.is_dir() => return Err(refuse("target is a directory")),
            Ok(_) => {}
            Err(_) => return Err(refuse("target is not in the layer")),
        }
        let write_err = |source| UnpackError::Write {
            entry: name.to_owned(),
            source,
        };
        remove_existing(path).map_err(write_err)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
        fs::hard_link(&tpath, path).map_err(|e| write_err(IoError::new("hardlink", path, e)))
    }

    /// Returns the directory holding an entry, creating missing parents (0755, root owned)
    /// and refusing any parent that is a symlink or not a directory.
    fn ensure_parent(&self, parents: &[Vec<u8>], name: &str) -> Result<PathBuf, UnpackError> {
        let mut path = self.root.clone();
        for (i, c) in parents.iter().enumerate() {
            path.push(OsStr::from_bytes(c));
            let component = || String::from_utf8_lossy(&parents[..=i].join(&b'/')).into_owned();
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::SymlinkInPath {
                        entry: name.to_owned(),
                        component: component(),
                    });
                }
                Ok(_) => {
                    return Err(UnpackError::NotADirectory {
                        entry: name.to_owned(),
                        component: component(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(|e| UnpackError::Write {
                        entry: name.to_owned(),
                        source: IoError::new("create directory", &path, e),
                    })?;
                    fs::set_permissions(&path, Permissions::from_mode(0o755)).map_err(|e| {
                        UnpackError::Write {
                            entry: name.to_owned(),
                            source: IoError::new("chmod", &path, e),
                        }
                    })?;
                }
                Err(e) => {
                    return Err(UnpackError::Write {
                        entry: name.to_owned(),
                        source: IoError::new("lstat", &path, e),
                    });
                }
            }
        }
        Ok(path)
    }

    /// Applies directory modes and mtimes now that their children are written. A directory
    /// later replaced by another entry (or now under a symlink) is skipped.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let mut dirs: Vec<_> = self.dirs.drain().collect();
        // Deepest first, so setting a child's metadata never touches a parent already done.
        dirs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (comps, d) in dirs {
            let Some(path) = self.real_dir(&comps) else {
                continue;
            };
            let name = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            let write_err = |source| UnpackError::Write {
                entry: name.clone(),
                source,
            };
            fs::set_permissions(&path, Permissions::from_mode(d.mode))
                .map_err(|e| write_err(IoError::new("chmod", &path, e)))?;
            let meta = Meta {
                uid: 0,
                gid: 0,
                mode: d.mode,
                mtime: d.mtime,
                atime: d.atime,
                xattrs: Vec::new(),
            };
            set_times_nofollow(&path, &meta).map_err(write_err)?;
        }
        Ok(())
    }

    /// The path of `comps` if it and every parent are real directories (no symlinks).
    fn real_dir(&self, comps: &[Vec<u8>]) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for c in comps {
            path.push(OsStr::from_bytes(c));
            if !fs::symlink_metadata(&path).ok()?.is_dir() {
                return None;
            }
        }
        Some(path)
    }
}

/// Splits an entry name into its components, dropping empty and `.` ones.
/// Refuses absolute names and `..` components.
fn split_name(name: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    if name.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut comps = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path has a '..' component"),
            c => comps.push(c.to_vec()),
        }
    }
    Ok(comps)
}

/// Reads owners, mode, times and xattrs of an entry (PAX records override the header).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let invalid = |reason: String| UnpackError::InvalidHeader {
        entry: name.to_owned(),
        reason,
    };
    let h = entry.header();
    let uid = h.uid().map_err(|e| invalid(format!("bad uid: {e}")))?;
    let gid = h.gid().map_err(|e| invalid(format!("bad gid: {e}")))?;
    let uid = u32::try_from(uid).map_err(|_| invalid(format!("uid {uid} out of range")))?;
    let gid = u32::try_from(gid).map_err(|_| invalid(format!("gid {gid} out of range")))?;
    let mode = h.mode().map_err(|e| invalid(format!("bad mode: {e}")))? & 0o7777;
    let mtime_secs = h.mtime().map_err(|e| invalid(format!("bad mtime: {e}")))?;
    let mut mtime = UNIX_EPOCH + Duration::from_secs(mtime_secs);
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in pax {
            let ext = ext.map_err(UnpackError::Read)?;
            let key = ext.key_bytes();
            if let Some(xname) = key.strip_prefix(PAX_XATTR_PREFIX) {
                xattrs.push((xname.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    mtime = t;
                }
            } else if key == b"atime" {
                atime = parse_pax_time(ext.value_bytes());
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode,
        mtime,
        atime: atime.unwrap_or(mtime),
        xattrs,
    })
}

/// A PAX time: decimal seconds with an optional fraction; times before 1970 clamp to 0.
fn parse_pax_time(v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?;
    if s.starts_with('-') {
        return Some(UNIX_EPOCH);
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, d) in frac.bytes().take(9).enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Removes whatever is at `path` (never following a symlink). Missing is fine.
fn remove_existing(path: &Path) -> Result<(), IoError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).map_err(|e| IoError::new("remove directory", path, e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| IoError::new("remove", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("lstat", path, e)),
    }
}

/// Sets the entry's xattrs (through `file` when given), skipping `trusted.overlay.*`.
/// A filesystem without xattr support for a namespace is not an error (containerd
/// ignores `ENOTSUP` likewise).
fn apply_xattrs(
    path: &Path,
    file: Option<&File>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    symlink: bool,
) -> Result<(), IoError> {
    for (name, value) in xattrs {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let res = match file {
            Some(f) => f.set_xattr(OsStr::from_bytes(name), value),
            None => xattr::set(path, OsStr::from_bytes(name), value),
        };
        match res {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => {}
            // The kernel refuses `user.*` xattrs on symlinks; tar writers record them anyway.
            Err(e) if symlink && e.raw_os_error() == Some(nix::libc::EPERM) => {}
            Err(e) => return Err(IoError::new("set xattr", path, e)),
        }
    }
    Ok(())
}

/// `lsetxattr`: sets one xattr without following a symlink at `path`.
fn set_xattr_nofollow(path: &Path, name: &[u8], value: &[u8]) -> Result<(), IoError> {
    xattr::set(path, OsStr::from_bytes(name), value).map_err(|e| IoError::new("set xattr", path, e))
}

/// `utimensat(AT_SYMLINK_NOFOLLOW)`: sets atime and mtime without following a symlink.
fn set_times_nofollow(path: &Path, meta: &Meta) -> Result<(), IoError> {
    let ts = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        TimeSpec::new(d.as_secs() as i64, i64::from(d.subsec_nanos()))
    };
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts(meta.atime),
        &ts(meta.mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| IoError::new("set times", path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_unsafe_ones_refused() {
        assert_eq!(
            split_name(b"./a//b/./c/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(split_name(b"./").unwrap().is_empty());
        assert_eq!(split_name(b"/etc/x"), Err("absolute path"));
        assert_eq!(split_name(b"a/../../x"), Err("path has a '..' component"));
        assert_eq!(split_name(b".."), Err("path has a '..' component"));
        assert_eq!(
            split_name(b"a/..b").unwrap(),
            vec![b"a".to_vec(), b"..b".to_vec()]
        );
    }

    #[test]
    fn pax_times_parse_with_fractions() {
        assert_eq!(
            parse_pax_time(b"10.5"),
            Some(UNIX_EPOCH + Duration::new(10, 500_000_000))
        );
        assert_eq!(
            parse_pax_time(b"7"),
            Some(UNIX_EPOCH + Duration::from_secs(7))
        );
        assert_eq!(parse_pax_time(b"-3.2"), Some(UNIX_EPOCH));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
