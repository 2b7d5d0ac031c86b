//! The image store: references, content-addressed blobs, archive load, pulls from OCI
//! registries, layer unpacking, garbage collection and container root filesystems
//! (overlayfs over the unpacked layers).
//!
//! It does not start processes or build OCI runtime specs; it touches the network only in
//! [`ImageStore::pull`] (the registry client is private: `registry`), and reads or writes
//! credential files only when asked ([`load_credentials`], [`save_credentials`]).
//!
//! On disk (under the store's root, `<lib>/image`):
//! - `blobs/sha256/<hex>`: manifests, configs and compressed layers, committed by digest;
//! - `layers/<diffid-hex>/`: each layer unpacked once, shared by every image and container;
//! - `images.json`: the image records and their tags;
//! - `tmp/`: staging of loads in progress (and layers being deleted);
//! - `ingest/`: downloads of pulls in progress or interrupted (resumed by the next pull,
//!   emptied by [`ImageStore::prune`]); `ingest.lock` is held shared by every pull;
//! - `lock`: held by every writer (load, remove, prune, and the commit of a pull).
//!
//! Content is committed in two phases, as containerd's content store does: a load stages
//! and verifies everything under `tmp/` (a pull under `ingest/`), renames blobs and layer
//! directories into place, and only then rewrites `images.json`; until that last atomic
//! write nothing new is visible, and an interrupted load or pull leaves only `tmp/` or
//! `ingest/` entries or unreferenced content (removed by the next garbage collection).
//!
//! For the CLI: `peapod pull` is [`ImageStore::pull`] with [`PullOptions`] (credentials
//! from [`load_credentials`]`(&`[`default_credential_paths`]`())`, mirrors and insecure
//! registries from config.toml) and a closure drawing [`PullEvent`]s; `peapod login` is
//! [`save_credentials`]; `peapod image prune` is [`ImageStore::prune`]. A pod's
//! `imagePullSecrets` parse with [`Credentials::from_docker_config`].

pub use oci_spec;

mod archive;
mod auth;
mod digest;
mod load;
mod platform;
mod pull;
mod reference;
mod registry;
pub mod rootfs;
mod state;
pub mod unpack;

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use auth::{
    default_credential_paths, load_credentials, registry_key, remove_credentials, save_credentials,
    Credential, Credentials, CredentialsError,
};
pub use platform::{Platform, PlatformError};
pub use pull::{LayerInfo, PullError, PullEvent, PullOptions, PulledImage};
pub use reference::{Reference, ReferenceError, DEFAULT_REGISTRY, DEFAULT_TAG};
pub use registry::HttpError;
pub use unpack::UnpackError;

use reference::is_lower_hex;
use state::{hex_of, Layout};

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: `sha256:<hex>` of its config blob (as Docker).
    pub id: String,
    /// Full references pointing at it, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Full references by digest it was pulled by (Docker's RepoDigests), e.g.
    /// `docker.io/library/busybox@sha256:…`: the digest of what the registry served for the
    /// name, an index's digest for multi-platform images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// Layer diffIDs (`sha256:<hex>` of the uncompressed tar), bottom first.
    pub diff_ids: Vec<String>,
    /// The config's `created`, RFC 3339.
    pub created: Option<String>,
    /// Total unpacked size in bytes: the sum, over its layers, of the sizes of the regular
    /// files each layer holds (hardlinks once), i.e. uncompressed like Docker's SIZE column,
    /// not the compressed blob sizes.
    pub size: u64,
}

impl ImageRecord {
    /// The first 12 hex digits of the id, as `image ls` shows it.
    pub fn short_id(&self) -> &str {
        let hex = hex_of(&self.id);
        &hex[..hex.len().min(12)]
    }
}

/// An image that `load` added or re-tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Its id, `sha256:<hex>`.
    pub id: String,
    /// Full references it was tagged with (may be empty for untagged images).
    pub references: Vec<String>,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The references removed with their images (familiar form, Docker's `untagged:`).
    pub untagged: Vec<String>,
    /// The ids of the images removed.
    pub images: Vec<String>,
    /// The diffIDs of the unpacked layers removed.
    pub layers: Vec<String>,
    /// Bytes freed: blob files, the regular files of removed layers, leftover downloads.
    pub reclaimed_bytes: u64,
    /// A pull was running, so `ingest/` (its downloads) was left alone.
    pub pulls_in_progress: bool,
}

/// The image store. Cheap to open; safe against concurrent peapod processes (a lock file).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// How `resolve` matched a name: removal by tag untags, removal by id deletes.
enum Match {
    /// By a tag reference (the full reference).
    Tag(String),
    /// By id, id prefix or digest.
    Id,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`; also removes leftovers of interrupted loads.
    ///
    /// Leftovers are removed only when no other process holds the store lock (a load in
    /// progress elsewhere owns its `tmp/` entry); opening never waits for the lock.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let store = Self {
            root: root.to_owned(),
        };
        let layout = store.layout();
        for d in [layout.blobs(), layout.layers(), layout.tmp()] {
            peapod_store::create_dir_all(&d)?;
        }
        let lock_path = layout.lock_file();
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| peapod_store::IoError::new("open lock", &lock_path, e))?;
        if let Ok(_lock) = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            let tmp = layout.tmp();
            for name in state::list_dir(&tmp)? {
                let p = tmp.join(name);
                let res = match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                    Ok(_) => fs::remove_file(&p),
                    Err(e) => Err(e),
                };
                match res {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(peapod_store::IoError::new("remove leftover", &p, e).into())
                    }
                }
            }
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layout(&self) -> Layout {
        Layout {
            root: self.root.clone(),
        }
    }

    /// Loads an OCI-layout or `docker save` archive (plain, gzip or zstd compressed), with
    /// every image it holds. All or nothing: on any error nothing new is visible.
    ///
    /// Names come from `manifest.json`'s `RepoTags` or from the index annotations
    /// `io.containerd.image.name` / `org.opencontainers.image.ref.name` (the latter only when
    /// it is a whole reference). A name given to a new image is taken from the image that
    /// had it, as `docker load` does; that image stays, untagged, if it has no other name.
    pub fn load(&self, archive: &Path) -> Result<Vec<LoadedImage>, LoadError> {
        load::load(&self.layout(), archive)
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let state = self.layout().read()?;
        // Newest loaded first among equal (or missing) creation times.
        let mut records: Vec<ImageRecord> =
            state.images.into_iter().rev().map(|i| i.record).collect();
        records.sort_by_key(|r| std::cmp::Reverse(created_key(r)));
        Ok(records)
    }

    /// Finds an image by reference (normalised), full id, or unique id prefix (with or
    /// without `sha256:`).
    pub fn resolve(&self, name_or_id: &str) -> Result<ImageRecord, ResolveError> {
        let state = self.layout().read()?;
        let (i, _) = resolve_in(&state.images, name_or_id)?;
        Ok(state.images[i].record.clone())
    }

    /// Removes a reference; the image and its unreferenced layers go with its last tag (or at
    /// once when given by id). `in_use` holds image ids used by containers: removing one of
    /// those fails unless `force`. Returns Docker's `Untagged: …` / `Deleted: …` lines.
    ///
    /// Docker's rules: by id, an image with several tags is refused unless `force`, else
    /// every tag goes and then the image. An image in use keeps existing even when forced
    /// (its tags are removed, it stays as an untagged image) because containers still use its
    /// layers; so removing an untagged image in use fails even when forced. `Deleted:` lines name the image id, then each layer directory removed (by
    /// diffID).
    pub fn remove(
        &self,
        name_or_id: &str,
        in_use: &[String],
        force: bool,
    ) -> Result<Vec<String>, RemoveError> {
        let layout = self.layout();
        let _lock = peapod_store::Lock::exclusive(&layout.lock_file()).map_err(StoreError::from)?;
        let mut state = layout.read()?;
        let (idx, how) = resolve_in(&state.images, name_or_id)?;
        let image = &mut state.images[idx].record;
        let id = image.id.clone();
        let used = in_use.iter().any(|u| hex_of(u) == hex_of(&id));
        let familiar = |t: &str| {
            Reference::parse(t)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| t.to_owned())
        };
        let mut lines = Vec::new();
        match how {
            Match::Tag(full) => {
                if used && !force && image.repo_tags.len() == 1 {
                    return Err(RemoveError::InUse(name_or_id.to_owned()));
                }
                image.repo_tags.retain(|t| *t != full);
                lines.push(format!("Untagged: {}", familiar(&full)));
                if !image.repo_tags.is_empty() || used {
                    layout.write(&mut state)?;
                    return Ok(lines);
                }
            }
            Match::Id => {
                if image.repo_tags.len() > 1 && !force {
                    return Err(RemoveError::MultipleReferences(image.short_id().to_owned()));
                }
                if used && (!force || image.repo_tags.is_empty()) {
                    return Err(RemoveError::InUse(name_or_id.to_owned()));
                }
                for t in image.repo_tags.drain(..) {
                    lines.push(format!("Untagged: {}", familiar(&t)));
                }
                if used {
                    layout.write(&mut state)?;
                    return Ok(lines);
                }
            }
        }
        state.images.remove(idx);
        layout.write(&mut state)?;
        lines.push(format!("Deleted: {id}"));
        // The removal is committed; a failed collection only leaves garbage that the next
        // load or remove collects.
        if let Ok(garbage) = layout.collect_garbage(&state, false) {
            lines.extend(garbage.layers.into_iter().map(|l| format!("Deleted: {l}")));
        }
        Ok(lines)
    }

    /// Pulls an image from its registry (the OCI distribution protocol, HTTPS or, for
    /// loopback and insecure registries, plain HTTP) and commits it to the store, tagged
    /// with `reference` unless pulled by digest. Accepts OCI and Docker schema-2 manifests
    /// and indexes (the manifest for `opts.platform`, else the host's, is picked).
    ///
    /// Layers already in the store are not downloaded. Blobs are verified against their
    /// digests and layers against the config's diffIDs before anything is committed; the
    /// commit, under the store lock, is all or nothing as for [`ImageStore::load`]. A pull
    /// that is killed leaves only partial downloads under `ingest/`, which the next pull
    /// of the same content resumes; two pulls of the same layer (in any processes) fetch it
    /// once, the second waiting for the first. `progress` is called on this thread.
    pub fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<PulledImage, PullError> {
        pull::pull(&self.layout(), reference, opts, progress)
    }

    /// Removes unused images and collects the garbage: dangling (untagged) images, or with
    /// `all` every image, except those whose ids are in `in_use` (images of containers and
    /// pods, as for [`ImageStore::remove`]); then every blob and unpacked layer no remaining
    /// image references, and leftover downloads in `ingest/` unless a pull is running.
    pub fn prune(&self, in_use: &[String], all: bool) -> Result<PruneReport, StoreError> {
        let layout = self.layout();
        let _lock = peapod_store::Lock::exclusive(&layout.lock_file())?;
        let mut state = layout.read()?;
        let used = |id: &str| in_use.iter().any(|u| hex_of(u) == hex_of(id));
        let mut report = PruneReport::default();
        let before = state.images.len();
        state.images.retain(|i| {
            let r = &i.record;
            if used(&r.id) || !(all || r.repo_tags.is_empty()) {
                return true;
            }
            report.untagged.extend(r.repo_tags.iter().map(|t| {
                Reference::parse(t)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| t.clone())
            }));
            report.images.push(r.id.clone());
            false
        });
        if state.images.len() != before {
            layout.write(&mut state)?;
        }
        let garbage = layout.collect_garbage(&state, true)?;
        report.layers = garbage.layers;
        report.reclaimed_bytes = garbage.bytes;
        match layout.clear_ingest()? {
            Some(bytes) => report.reclaimed_bytes += bytes,
            None => report.pulls_in_progress = true,
        }
        Ok(report)
    }

    /// The image configuration (Entrypoint, Cmd, Env, WorkingDir, User, Volumes, ...).
    pub fn config(
        &self,
        image: &ImageRecord,
    ) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        let path = self.layout().blob(hex_of(&image.id));
        let data =
            fs::read(&path).map_err(|e| peapod_store::IoError::new("read config", &path, e))?;
        serde_json::from_slice(&data)
            .map_err(|source| peapod_store::StateError::Corrupt { path, source }.into())
    }

    /// The unpacked layer directories, bottom first, for overlayfs `lowerdir`.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        let layout = self.layout();
        image
            .diff_ids
            .iter()
            .map(|d| layout.layer(hex_of(d)))
            .collect()
    }
}

/// Sort key of `list`: the creation time, images without one last.
fn created_key(r: &ImageRecord) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    r.created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
}

/// Docker's lookup order: `sha256:<hex…>` is an id (prefix); then a tag (or, with a digest,
/// the manifest digest); then a bare hex string is an id prefix.
fn resolve_in(images: &[state::StoredImage], name: &str) -> Result<(usize, Match), ResolveError> {
    let by_prefix = |prefix: &str, shown: &str| -> Result<(usize, Match), ResolveError> {
        let mut found = images
            .iter()
            .enumerate()
            .filter(|(_, i)| hex_of(&i.record.id).starts_with(prefix));
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Ok((i, Match::Id)),
            (Some(_), Some(_)) => Err(ResolveError::Ambiguous(prefix.to_owned())),
            (None, _) => Err(ResolveError::NotFound(shown.to_owned())),
        }
    };
    let hexish = |s: &str| !s.is_empty() && s.len() <= 64 && is_lower_hex(s);
    if let Some(rest) = name.strip_prefix("sha256:") {
        if hexish(rest) {
            return by_prefix(rest, name);
        }
        return Err(ResolveError::NotFound(name.to_owned()));
    }
    match Reference::parse(name) {
        Ok(r) => {
            if let Some(d) = &r.digest {
                let by_digest = format!("{}@{d}", r.name());
                return images
                    .iter()
                    .position(|i| {
                        i.record.manifest_digest == *d
                            || i.record.id == *d
                            || i.record.repo_digests.contains(&by_digest)
                    })
                    .map(|i| (i, Match::Id))
                    .ok_or_else(|| ResolveError::NotFound(r.familiar()));
            }
            let full = r.full();
            if let Some(i) = images
                .iter()
                .position(|i| i.record.repo_tags.contains(&full))
            {
                return Ok((i, Match::Tag(full)));
            }
            if hexish(name) {
                return match by_prefix(name, name) {
                    Err(ResolveError::NotFound(_)) => Err(ResolveError::NotFound(r.familiar())),
                    other => other,
                };
            }
            Err(ResolveError::NotFound(r.familiar()))
        }
        Err(_) if hexish(name) => by_prefix(name, name),
        Err(e) => Err(ResolveError::InvalidReference(e)),
    }
}

/// Errors opening or reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store could not be read or written.
    #[error(transparent)]
    Io(#[from] peapod_store::IoError),
    /// A state file is corrupt.
    #[error(transparent)]
    State(#[from] peapod_store::StateError),
}

/// Errors of `load`. Each names the archive entry or digest involved.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written (the archive itself, or staging in the store).
    #[error(transparent)]
    Io(#[from] peapod_store::IoError),
    /// The archive is not a readable tar (truncated, corrupt, or a corrupt compression).
    #[error("reading archive {path}: {source}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The archive or a layer is compressed with a format we do not read (xz, bzip2).
    #[error("{what}: {format} compression is not supported (use gzip, zstd or none)")]
    UnsupportedCompression {
        /// The archive or layer.
        what: String,
        /// The format found.
        format: &'static str,
    },
    /// The archive has neither `manifest.json` (docker save) nor `index.json` (OCI layout).
    #[error("{path}: not an image archive (no manifest.json or index.json)")]
    NotAnImageArchive {
        /// The archive.
        path: PathBuf,
    },
    /// The archive holds no image for this platform.
    #[error("{path}: no image for {platform} in the archive")]
    NoImages {
        /// The archive.
        path: PathBuf,
        /// The host platform.
        platform: String,
    },
    /// An index has no manifest for this platform.
    #[error("index {index} has no manifest for {platform}")]
    NoMatchingPlatform {
        /// The index digest.
        index: String,
        /// The host platform.
        platform: String,
    },
    /// `oci-layout` names a layout version other than 1.0.0.
    #[error("unsupported OCI layout version {version:?}")]
    UnsupportedLayout {
        /// The version found.
        version: String,
    },
    /// A file the manifests name is not in the archive.
    #[error("archive has no {name}")]
    MissingBlob {
        /// The archive name (and what it is).
        name: String,
    },
    /// A JSON document of the archive does not parse.
    #[error("invalid {what}: {source}")]
    InvalidJson {
        /// Which document (`index.json`, `manifest sha256:…`, `config sha256:…`).
        what: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A document parses but is not what an image needs.
    #[error("invalid {what}: {reason}")]
    InvalidContent {
        /// Which document.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A media type that is not an image manifest, config or layer.
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// Which descriptor.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A digest that is not `sha256:<64 hex>`.
    #[error("unsupported or invalid digest {digest:?} (only sha256 is supported)")]
    UnsupportedDigest {
        /// The digest as written.
        digest: String,
    },
    /// A blob's content does not match the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch {
        /// Which blob.
        what: String,
        /// The digest the archive gives.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A blob's size does not match its descriptor.
    #[error("{what}: size mismatch: expected {expected} bytes, content has {actual}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// The content's size.
        actual: u64,
    },
    /// A layer's uncompressed content does not match the config's `rootfs.diff_ids`.
    #[error("layer sha256:{blob}: uncompressed digest is sha256:{actual}, config diff_id says sha256:{expected}")]
    DiffIdMismatch {
        /// The layer blob's digest hex.
        blob: String,
        /// The config's diffID hex.
        expected: String,
        /// The digest hex of the uncompressed stream.
        actual: String,
    },
    /// A name in the archive is not a valid reference.
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    /// A layer could not be unpacked (unsafe or invalid entry, corrupt stream); nothing of it
    /// was kept.
    #[error("layer sha256:{blob}: {source}")]
    Layer {
        /// The layer blob's digest hex.
        blob: String,
        /// What went wrong, naming the entry.
        #[source]
        source: UnpackError,
    },
    /// The load failed, and undoing its partial commit failed too.
    #[error("{error}; rolling back also failed: {rollback}")]
    Rollback {
        /// Why the load failed.
        error: Box<LoadError>,
        /// Why the rollback failed.
        rollback: peapod_store::IoError,
    },
}

/// Errors of `resolve`.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No image matches; Docker's wording: `No such image: busybox:latest`.
    #[error("No such image: {0}")]
    NotFound(String),
    /// An id prefix matches several images.
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// The name is neither a valid reference nor an id.
    #[error(transparent)]
    InvalidReference(ReferenceError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of `remove`.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// Nothing to remove.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A container uses the image.
    #[error("unable to remove image {0}: image is being used by a container (use --force)")]
    InUse(String),
    /// Removal by id of an image with several tags, without force (Docker's wording; the
    /// short id).
    #[error(
        "unable to delete {0} (must be forced) - image is referenced in multiple repositories"
    )]
    MultipleReferences(String),
    /// The store could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}
