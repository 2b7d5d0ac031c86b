//! The store's state file `images.json` (image records, their tags and layer blobs, and
//! the unpacked size of each layer) and the garbage collection of blobs and layer
//! directories no image references any more.
//!
//! Callers hold the store lock while they change state or collect garbage.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use peapod_store::IoError;
use serde::{Deserialize, Serialize};

use crate::{ImageRecord, StoreError};

/// The content of `images.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct ImagesFile {
    /// Every image, in load order.
    #[serde(default)]
    pub(crate) images: Vec<StoredImage>,
    /// Unpacked bytes of each layer by diffID hex, so a layer shared with a new image
    /// need not be measured again.
    #[serde(default)]
    pub(crate) layer_sizes: BTreeMap<String, u64>,
}

/// One image as stored: its public record plus what garbage collection needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredImage {
    /// What `list` and `resolve` return.
    #[serde(flatten)]
    pub(crate) record: ImageRecord,
    /// The layer blobs (as the manifest names them: maybe compressed), hex, bottom first.
    #[serde(default)]
    pub(crate) layer_blobs: Vec<String>,
}

/// The paths of a store root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
}

impl Layout {
    pub(crate) fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub(crate) fn blob(&self, hex: &str) -> PathBuf {
        self.blobs().join(hex)
    }
    pub(crate) fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub(crate) fn layer(&self, hex: &str) -> PathBuf {
        self.layers().join(hex)
    }
    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn state_file(&self) -> PathBuf {
        self.root.join("images.json")
    }
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// Downloads of pulls in progress (or interrupted), see `pull`.
    pub(crate) fn ingest(&self) -> PathBuf {
        self.root.join("ingest")
    }
    /// Held shared by every pull, exclusively by `prune` while it empties `ingest/`.
    pub(crate) fn ingest_lock(&self) -> PathBuf {
        self.root.join("ingest.lock")
    }

    pub(crate) fn read(&self) -> Result<ImagesFile, StoreError> {
        Ok(peapod_store::read_json(&self.state_file())?.unwrap_or_default())
    }

    /// Writes `state` (atomically), dropping sizes of layers no image uses any more.
    pub(crate) fn write(&self, state: &mut ImagesFile) -> Result<(), StoreError> {
        let used: HashSet<&str> = state
            .images
            .iter()
            .flat_map(|i| i.record.diff_ids.iter())
            .map(|d| hex_of(d))
            .collect();
        state.layer_sizes.retain(|k, _| used.contains(k.as_str()));
        peapod_store::write_json(&self.state_file(), state)?;
        Ok(())
    }

    /// Removes blobs and layer directories that no image of `state` references. Layer
    /// directories are first renamed into `tmp/` so a half-deleted layer is never visible
    /// under `layers/` (where a later load would take it as complete). Returns the
    /// removed layers' diffIDs (`sha256:<hex>`) and, when `measure`, the bytes freed
    /// (blob files, and the regular files of each removed layer).
    pub(crate) fn collect_garbage(
        &self,
        state: &ImagesFile,
        measure: bool,
    ) -> Result<Garbage, IoError> {
        let mut bytes = 0;
        let mut blobs: HashSet<&str> = HashSet::new();
        let mut layers: HashSet<&str> = HashSet::new();
        for i in &state.images {
            blobs.insert(hex_of(&i.record.id));
            blobs.insert(hex_of(&i.record.manifest_digest));
            blobs.extend(i.layer_blobs.iter().map(|b| hex_of(b)));
            layers.extend(i.record.diff_ids.iter().map(|d| hex_of(d)));
        }
        for name in list_dir(&self.blobs())? {
            if !blobs.contains(name.as_str()) {
                let p = self.blob(&name);
                if measure {
                    bytes += fs::symlink_metadata(&p).map_or(0, |m| m.len());
                }
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(IoError::new("remove blob", &p, e)),
                }
            }
        }
        let mut removed = Vec::new();
        let mut names = list_dir(&self.layers())?;
        names.sort();
        for name in names {
            if layers.contains(name.as_str()) {
                continue;
            }
            let from = self.layer(&name);
            let to = self
                .tmp()
                .join(format!("gc-{}", &peapod_store::new_id()[..16]));
            fs::rename(&from, &to)
                .map_err(|e| IoError::new("rename layer out of the store", &from, e))?;
            if measure {
                bytes += dir_size(&to).unwrap_or(0);
            }
            fs::remove_dir_all(&to).map_err(|e| IoError::new("remove layer", &to, e))?;
            removed.push(format!("sha256:{name}"));
        }
        Ok(Garbage {
            layers: removed,
            bytes,
        })
    }

    /// Empties `ingest/` (partial and unused downloads) unless a pull is running; returns
    /// the bytes freed, or None when a pull holds the ingest lock. Directories are renamed
    /// into `tmp/` before removal, so a half-removed `layer-*` is never taken as complete.
    pub(crate) fn clear_ingest(&self) -> Result<Option<u64>, IoError> {
        let lock = match crate::pull::lock_file(
            &self.ingest_lock(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(l) => l,
            Err(e) if e.source.raw_os_error() == Some(nix::errno::Errno::EWOULDBLOCK as i32) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut bytes = 0;
        let dir = self.ingest();
        for name in list_dir(&dir)? {
            let p = dir.join(&name);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                let to = self
                    .tmp()
                    .join(format!("gc-{}", &peapod_store::new_id()[..16]));
                fs::rename(&p, &to).map_err(|e| IoError::new("rename out of ingest", &p, e))?;
                bytes += dir_size(&to).unwrap_or(0);
                fs::remove_dir_all(&to).map_err(|e| IoError::new("remove", &to, e))?;
            } else {
                bytes += m.len();
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(IoError::new("remove", &p, e)),
                }
            }
        }
        drop(lock);
        Ok(Some(bytes))
    }
}

/// What a garbage collection removed.
#[derive(Debug, Default)]
pub(crate) struct Garbage {
    /// The removed layers' diffIDs, `sha256:<hex>`.
    pub(crate) layers: Vec<String>,
    /// Bytes freed, when measured.
    pub(crate) bytes: u64,
}

/// The hex of `sha256:<hex>` (or the string itself without the prefix).
pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The names in a directory; a missing directory is empty.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>, IoError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoError::new("read directory", dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| IoError::new("read directory", dir, e))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Sum of the sizes of the regular files under `dir` (each inode once), never following
/// symlinks. Used for a layer whose size the state file does not record.
pub(crate) fn dir_size(dir: &Path) -> Result<u64, IoError> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(|e| IoError::new("read directory", &d, e))?;
        for e in rd {
            let e = e.map_err(|e| IoError::new("read directory", &d, e))?;
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(|e| IoError::new("lstat", &p, e))?;
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Ok(total)
}
