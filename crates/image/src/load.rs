//! `ImageStore::load`: stage an archive under `tmp/`, verify every blob, unpack each new
//! layer once, then commit by rename and publish with one atomic write of `images.json`.
//!
//! Everything happens under the store lock. On any error the renames already done are
//! undone and the staging directory is removed, so nothing new is visible.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Permissions};
use std::io::{self, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use peapod_store::IoError;

use crate::archive::{self, ArchiveFiles, Blob, ImagePlan};
use crate::digest::{self, HashingReader};
use crate::platform::Platform;
use crate::state::{ImagesFile, Layout, StoredImage};
use crate::unpack::{self, UnpackedLayer};
use crate::{ImageRecord, LoadError, LoadedImage};

/// A load's private directory under `tmp/`, removed when dropped.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(layout: &Layout) -> Result<Self, IoError> {
        let dir = layout
            .tmp()
            .join(format!("load-{}", &peapod_store::new_id()[..16]));
        peapod_store::create_dir_all(&dir.join("files"))?;
        peapod_store::create_dir_all(&dir.join("layers"))?;
        Ok(Self { dir })
    }
    fn files(&self) -> PathBuf {
        self.dir.join("files")
    }
    fn layer(&self, hex: &str) -> PathBuf {
        self.dir.join("layers").join(hex)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: `ImageStore::open` removes whatever is left.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Something renamed into the store, to be renamed back if the commit fails.
enum Committed {
    Blob { committed: PathBuf, staged: PathBuf },
    Layer { committed: PathBuf, staged: PathBuf },
}

pub(crate) fn load(layout: &Layout, archive: &Path) -> Result<Vec<LoadedImage>, LoadError> {
    let _lock = peapod_store::Lock::exclusive(&layout.lock_file())?;
    peapod_store::create_dir_all(&layout.tmp())?;
    let staging = Staging::create(layout)?;
    let files = ArchiveFiles::extract(archive, &staging.files())?;
    let plans = archive::plan_images(&files, &staging.dir, archive, &Platform::host())?;
    let mut state = layout.read()?;

    // Verify every layer against its diffID; unpack the ones the store lacks.
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut verified: HashSet<(String, String)> = HashSet::new();
    let mut new_layers: Vec<String> = Vec::new();
    for plan in &plans {
        for (blob, diff) in plan.layers.iter().zip(&plan.diff_ids) {
            if !verified.insert((blob.hex.clone(), diff.clone())) {
                continue;
            }
            let committed = layout.layer(diff);
            if sizes.contains_key(diff) || committed.is_dir() {
                verify_layer(blob, diff, None)?;
                if !sizes.contains_key(diff) {
                    let size = match state.layer_sizes.get(diff) {
                        Some(s) => *s,
                        None => crate::state::dir_size(&committed)?,
                    };
                    sizes.insert(diff.clone(), size);
                }
            } else {
                let dest = staging.layer(diff);
                fs::create_dir(&dest).map_err(|e| IoError::new("create directory", &dest, e))?;
                fs::set_permissions(&dest, Permissions::from_mode(0o755))
                    .map_err(|e| IoError::new("chmod", &dest, e))?;
                let size = verify_layer(blob, diff, Some(&dest))?.map_or(0, |s| s.size);
                sizes.insert(diff.clone(), size);
                new_layers.push(diff.clone());
            }
        }
    }
    if !new_layers.is_empty() {
        // One syncfs makes every unpacked file durable before the renames commit them.
        let d = File::open(&staging.dir).map_err(|e| IoError::new("open", &staging.dir, e))?;
        nix::unistd::syncfs(&d).map_err(|e| IoError::new("syncfs", &staging.dir, e.into()))?;
    }

    let blobs = archive::distinct_blobs(&plans);
    let new_layers: Vec<(String, PathBuf)> = new_layers
        .into_iter()
        .map(|hex| {
            let staged = staging.layer(&hex);
            (hex, staged)
        })
        .collect();
    publish(layout, &plans, &blobs, &new_layers, &mut state, &sizes)
}

/// Commits staged content and publishes the images of `plans` in `images.json`, under the
/// store lock (the caller holds it): renames `blobs` (those not in the store yet) and
/// `new_layers` (diffID hex, staged directory) into place, then writes the state. On an
/// error before the state is written everything renamed is renamed back; afterwards,
/// garbage is collected (best effort: the images are committed, the next collection
/// retries).
pub(crate) fn publish(
    layout: &Layout,
    plans: &[ImagePlan],
    blobs: &[&Blob],
    new_layers: &[(String, PathBuf)],
    state: &mut ImagesFile,
    sizes: &HashMap<String, u64>,
) -> Result<Vec<LoadedImage>, LoadError> {
    let mut committed = Vec::new();
    match commit(
        layout,
        plans,
        blobs,
        new_layers,
        state,
        sizes,
        &mut committed,
    ) {
        Ok(loaded) => {
            // Re-loads can orphan an older manifest blob; collect it now.
            let _ = layout.collect_garbage(state, false);
            Ok(loaded)
        }
        Err(CommitError {
            error,
            published: true,
        }) => Err(error),
        Err(CommitError {
            error,
            published: false,
        }) => match rollback(committed) {
            Ok(()) => Err(error),
            Err(rollback) => Err(LoadError::Rollback {
                error: Box::new(error),
                rollback,
            }),
        },
    }
}

/// Checks a layer blob's uncompressed stream against `diff` (hex); when `dest` is given,
/// unpacks it there on the way.
pub(crate) fn verify_layer(
    blob: &Blob,
    diff: &str,
    dest: Option<&Path>,
) -> Result<Option<UnpackedLayer>, LoadError> {
    let file = File::open(&blob.path).map_err(|e| IoError::new("open", &blob.path, e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let read_err = |e: io::Error| LoadError::Layer {
        blob: blob.hex.clone(),
        source: unpack::UnpackError::Read(e),
    };
    let head = digest::peek_head(&mut reader).map_err(read_err)?;
    let stream = digest::decompress(reader, &head)
        .map_err(|c| LoadError::UnsupportedCompression {
            what: format!("layer sha256:{}", blob.hex),
            format: c.name(),
        })?
        .map_err(read_err)?;
    let mut hashing = HashingReader::new(stream);
    let stats = match dest {
        Some(dest) => {
            let (stats, h) =
                unpack::unpack_layer(hashing, dest).map_err(|source| LoadError::Layer {
                    blob: blob.hex.clone(),
                    source,
                })?;
            hashing = h;
            Some(stats)
        }
        None => None,
    };
    // The tar's trailing blocks are part of the diffID.
    hashing.drain().map_err(read_err)?;
    let (actual, _) = hashing.finish();
    if actual != diff {
        return Err(LoadError::DiffIdMismatch {
            blob: blob.hex.clone(),
            expected: diff.to_owned(),
            actual,
        });
    }
    Ok(stats)
}

/// A failed commit, and whether `images.json` may already show it (then nothing may be
/// rolled back: the state could reference the committed content).
struct CommitError {
    error: LoadError,
    published: bool,
}

impl From<IoError> for CommitError {
    fn from(e: IoError) -> Self {
        Self {
            error: e.into(),
            published: false,
        }
    }
}

fn commit(
    layout: &Layout,
    plans: &[ImagePlan],
    blobs: &[&Blob],
    new_layers: &[(String, PathBuf)],
    state: &mut ImagesFile,
    sizes: &HashMap<String, u64>,
    committed: &mut Vec<Committed>,
) -> Result<Vec<LoadedImage>, CommitError> {
    for blob in blobs {
        let dst = layout.blob(&blob.hex);
        if dst.exists() {
            continue;
        }
        fs::rename(&blob.path, &dst).map_err(|e| IoError::new("commit blob", &dst, e))?;
        committed.push(Committed::Blob {
            committed: dst,
            staged: blob.path.clone(),
        });
    }
    for (hex, staged) in new_layers {
        let dst = layout.layer(hex);
        fs::rename(staged, &dst).map_err(|e| IoError::new("commit layer", &dst, e))?;
        committed.push(Committed::Layer {
            committed: dst,
            staged: staged.clone(),
        });
    }
    peapod_store::sync_dir(&layout.blobs())?;
    peapod_store::sync_dir(&layout.layers())?;

    let mut loaded = Vec::with_capacity(plans.len());
    for plan in plans {
        let id = format!("sha256:{}", plan.config.hex);
        let refs: Vec<String> = plan.references.iter().map(|r| r.full()).collect();
        for other in state.images.iter_mut().filter(|i| i.record.id != id) {
            other.record.repo_tags.retain(|t| !refs.contains(t));
        }
        for other in state.images.iter_mut().filter(|i| i.record.id != id) {
            other
                .record
                .repo_digests
                .retain(|d| !plan.repo_digests.contains(d));
        }
        let existing = state.images.iter().find(|i| i.record.id == id);
        let mut repo_tags = existing
            .map(|i| i.record.repo_tags.clone())
            .unwrap_or_default();
        for r in &refs {
            if !repo_tags.contains(r) {
                repo_tags.push(r.clone());
            }
        }
        let mut repo_digests = existing
            .map(|i| i.record.repo_digests.clone())
            .unwrap_or_default();
        for d in &plan.repo_digests {
            if !repo_digests.contains(d) {
                repo_digests.push(d.clone());
            }
        }
        let image = StoredImage {
            record: ImageRecord {
                id: id.clone(),
                repo_tags,
                repo_digests,
                manifest_digest: format!("sha256:{}", plan.manifest.hex),
                diff_ids: plan
                    .diff_ids
                    .iter()
                    .map(|d| format!("sha256:{d}"))
                    .collect(),
                created: plan.created.clone(),
                size: plan
                    .diff_ids
                    .iter()
                    .map(|d| sizes.get(d).copied().unwrap_or(0))
                    .sum(),
            },
            layer_blobs: plan
                .layers
                .iter()
                .map(|b| format!("sha256:{}", b.hex))
                .collect(),
        };
        match state.images.iter_mut().find(|i| i.record.id == id) {
            Some(existing) => *existing = image,
            None => state.images.push(image),
        }
        loaded.push(LoadedImage {
            id,
            references: refs,
        });
    }
    for (hex, size) in sizes {
        state.layer_sizes.insert(hex.clone(), *size);
    }
    if let Err(error) = layout.write(state) {
        // The rename inside the atomic write may have happened (a failed directory fsync
        // after it): if the new state is on disk, its content must stay.
        let on_disk = layout
            .read()
            .map(|s| s.images == state.images)
            .unwrap_or(true);
        return Err(CommitError {
            error: error.into(),
            published: on_disk,
        });
    }
    Ok(loaded)
}

/// Undoes a commit's renames, newest first: everything goes back where it was staged (layer
/// directories are so never half-deleted under `layers/`).
fn rollback(committed: Vec<Committed>) -> Result<(), IoError> {
    let mut first_err = None;
    for c in committed.into_iter().rev() {
        let res = match &c {
            Committed::Blob { committed, staged } => fs::rename(committed, staged)
                .map_err(|e| IoError::new("roll back blob", committed, e)),
            Committed::Layer { committed, staged } => fs::rename(committed, staged)
                .map_err(|e| IoError::new("roll back layer", committed, e)),
        };
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
