//! The image store: references, content-addressed blobs, archive load, layer unpacking and
//! container root filesystems (overlayfs over the unpacked layers).
//!
//! It does not start processes, build OCI runtime specs or touch the network.
//!
//! On disk (under the store's root, `<lib>/image`):
//! - `blobs/sha256/<hex>`: manifests, configs and compressed layers, committed by digest;
//! - `layers/<diffid-hex>/`: each layer unpacked once, shared by every image and container;
//! - `images.json`: the image records and their tags.

pub use oci_spec;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A normalised image reference: `busybox` is `docker.io/library/busybox:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// Registry host, e.g. `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, e.g. `latest` (None when the reference is by digest only).
    pub tag: Option<String>,
    /// Digest `sha256:<hex>` when given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference as Docker does.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        todo!("{s}")
    }

    /// The full form, e.g. `docker.io/library/busybox:latest`.
    pub fn full(&self) -> String {
        todo!()
    }

    /// The REPOSITORY column of `image ls`: `busybox` for docker.io/library, else `registry/repository`
    /// (`docker.io/` is dropped as Docker does).
    pub fn familiar_repository(&self) -> String {
        todo!()
    }
}

/// A string that is not a valid image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: `sha256:<hex>` of its config blob (as Docker).
    pub id: String,
    /// Full references pointing at it, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// Layer diffIDs (`sha256:<hex>` of the uncompressed tar), bottom first.
    pub diff_ids: Vec<String>,
    /// The config's `created`, RFC 3339.
    pub created: Option<String>,
    /// Total unpacked size in bytes.
    pub size: u64,
}

/// An image that `load` added or re-tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Its id, `sha256:<hex>`.
    pub id: String,
    /// Full references it was tagged with (may be empty for untagged images).
    pub references: Vec<String>,
}

/// The image store. Cheap to open; safe against concurrent peapod processes (a lock file).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`; also removes leftovers of interrupted loads.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        todo!("{}", root.display())
    }

    /// Loads an OCI-layout or `docker save` archive (plain, gzip or zstd compressed), with
    /// every image it holds. All or nothing: on any error nothing new is visible.
    pub fn load(&self, archive: &Path) -> Result<Vec<LoadedImage>, LoadError> {
        todo!("{}", archive.display())
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        todo!()
    }

    /// Finds an image by reference (normalised), full id, or unique id prefix (with or
    /// without `sha256:`).
    pub fn resolve(&self, name_or_id: &str) -> Result<ImageRecord, ResolveError> {
        todo!("{name_or_id}")
    }

    /// Removes a reference; the image and its unreferenced layers go with its last tag (or at
    /// once when given by id). `in_use` holds image ids used by containers: removing one of
    /// those fails unless `force`. Returns Docker's `Untagged: …` / `Deleted: …` lines.
    pub fn remove(&self, name_or_id: &str, in_use: &[String], force: bool) -> Result<Vec<String>, RemoveError> {
        todo!("{name_or_id} {in_use:?} {force}")
    }

    /// The image configuration (Entrypoint, Cmd, Env, WorkingDir, User, Volumes, ...).
    pub fn config(&self, image: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        todo!("{image:?}")
    }

    /// The unpacked layer directories, bottom first, for overlayfs `lowerdir`.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        todo!("{image:?}")
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
    /// Placeholder until implemented.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// The store could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Container root filesystems: overlayfs over an image's layers with the container's own
/// upper and work directories.
pub mod rootfs {
    use std::path::Path;

    /// Errors mounting or unmounting a rootfs.
    #[derive(Debug, thiserror::Error)]
    pub enum RootfsError {
        /// Creating a directory or mounting failed.
        #[error(transparent)]
        Io(#[from] peapod_store::IoError),
    }

    /// Mounts overlayfs at `target` (created if missing): `layers` bottom first (an image with
    /// no layers gets an empty lower dir), `upper` and `work` created if missing.
    /// Idempotent: an existing overlay mount at `target` is left as is.
    pub fn mount(layers: &[std::path::PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), RootfsError> {
        todo!("{layers:?} {upper:?} {work:?} {target:?}")
    }

    /// Unmounts `target` (lazily if busy); not mounted is success.
    pub fn unmount(target: &Path) -> Result<(), RootfsError> {
        todo!("{target:?}")
    }
}
