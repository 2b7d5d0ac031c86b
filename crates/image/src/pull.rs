//! `ImageStore::pull`: resolve a reference against its registry (through `registry`), pick
//! the platform's manifest from an index, download what the store lacks into `ingest/`
//! (verified by digest, resumable, each blob written by one pull at a time across
//! processes), unpack new layers there, then commit under the store lock exactly as
//! `load` does.
//!
//! It writes only under `ingest/` until the commit. The ingest area, under the store root:
//! - `ingest/<hex>`: a verified blob, ready to commit;
//! - `ingest/<hex>.partial`: a blob being downloaded (a retry resumes from its length);
//! - `ingest/<hex>.lock`: held by the pull downloading and unpacking that blob;
//! - `ingest/layer-<diffid-hex>/`: a verified, unpacked layer, ready to commit;
//! - `ingest/unpack-<id>/`: a layer being unpacked;
//! - `ingest.lock` (beside `ingest/`): held shared by every pull, so `prune` empties
//!   `ingest/` only when no pull is running.
//!
//! A killed pull leaves only `ingest/` entries: nothing in `images.json`, `blobs/` or
//! `layers/` changes before the commit.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use peapod_store::IoError;
use sha2::{Digest as _, Sha256};

use crate::archive::{self, Blob, DescriptorJson, Kind, ManifestOrIndexJson};
use crate::archive::{MT_DOCKER_CONFIG, MT_OCI_CONFIG};
use crate::auth::Credentials;
use crate::load;
use crate::platform::{self, Platform};
use crate::reference::{is_hex64, DEFAULT_TAG};
use crate::registry::{Client, Endpoint, Fetched, HttpError, MAX_MANIFEST_BYTES};
use crate::state::{self, ImagesFile, Layout};
use crate::{LoadError, Reference, ReferenceError, StoreError};

/// Docker's default number of layers downloaded at once.
const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;
/// How deep indexes may nest.
const MAX_INDEX_DEPTH: usize = 8;
/// How often a pull starts over when a concurrent `prune` or `remove` collected content it
/// was about to commit.
const MAX_COMMIT_ATTEMPTS: usize = 3;
/// Attempts per endpoint for a blob whose transfer fails midway (each resumes).
const MAX_TRANSFER_ATTEMPTS: usize = 3;
/// Minimum time between two progress events of one layer.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries (`host[:port]`) that may be reached without verified TLS: HTTPS without
    /// certificate verification is tried first, then plain HTTP. Registries on loopback
    /// (`localhost`, `127.0.0.0/8`, `::1`) are always reached over plain HTTP, as Docker
    /// treats them.
    pub insecure_registries: Vec<String>,
    /// Mirrors by registry (`docker.io` → `["https://mirror.example"]`), tried in order
    /// before the registry itself. A mirror given without a scheme follows the same rules
    /// as a registry host. Any failure of a mirror falls back to the next.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Credentials by registry (and by mirror host); see [`crate::load_credentials`].
    pub credentials: Credentials,
    /// The platform to pick from an image index; the host's when None.
    pub platform: Option<Platform>,
    /// How many layers download at once; 0 means Docker's default, 3.
    pub max_concurrent_downloads: usize,
}

/// A layer of the image being pulled, as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The (compressed) blob's digest, `sha256:<hex>`; progress events name layers by it.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// Progress of a pull, reported on the calling thread in order for each layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The reference was resolved to an image manifest.
    Resolved {
        /// The manifest's digest (for this platform).
        digest: String,
        /// The layers, bottom first.
        layers: Vec<LayerInfo>,
    },
    /// The layer is in the store already (or was left complete by an earlier pull): it is
    /// not downloaded.
    LayerExists {
        /// The layer blob's digest.
        digest: String,
    },
    /// Another pull (maybe in another process) is fetching this layer; waiting for it.
    LayerWaiting {
        /// The layer blob's digest.
        digest: String,
    },
    /// The download starts, at `offset` when it resumes an interrupted one.
    LayerDownloading {
        /// The layer blob's digest.
        digest: String,
        /// Bytes already there.
        offset: u64,
        /// The blob's size.
        total: u64,
    },
    /// Bytes arrived (at most every 100 ms, and once at the end).
    LayerProgress {
        /// The layer blob's digest.
        digest: String,
        /// Bytes downloaded so far, counting a resumed part.
        done: u64,
        /// The blob's size.
        total: u64,
    },
    /// The blob is complete and matches its digest; it is being unpacked (and its
    /// uncompressed digest checked against the config's diffID).
    LayerExtracting {
        /// The layer blob's digest.
        digest: String,
    },
    /// The layer is downloaded, verified and unpacked, ready to commit.
    LayerDone {
        /// The layer blob's digest.
        digest: String,
    },
}

/// An image that `pull` committed (or found up to date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// Its id, `sha256:<hex>` of the config.
    pub id: String,
    /// The full reference it is tagged with (`registry/repository:tag`); None when pulled
    /// by digest (Docker does not tag those).
    pub tagged: Option<String>,
    /// `registry/repository@sha256:…`: what the name resolved to (an index's digest for
    /// multi-platform images), as Docker prints after `Digest:`.
    pub repo_digest: String,
    /// The image manifest's digest (for this platform).
    pub manifest_digest: String,
    /// The name already referred to this image, which the store had whole: nothing
    /// changed (Docker's `Image is up to date`; else `Downloaded newer image`).
    pub up_to_date: bool,
}

/// Errors of `pull`. Each names the registry or the reference, and the digest involved.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse.
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    /// The registry has no such repository, tag or digest (HTTP 404, `MANIFEST_UNKNOWN`,
    /// `NAME_UNKNOWN`). Kubelet reports it as `ErrImagePull`.
    #[error("manifest for {reference} not found: {message}")]
    NotFound {
        /// The reference pulled.
        reference: String,
        /// The registry's message.
        message: String,
    },
    /// The registry (or its token server) refused access: missing or wrong credentials, or,
    /// as Docker Hub answers for repositories that do not exist, no access.
    #[error("pull access denied for {reference} by {registry}: {message}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The reference pulled.
        reference: String,
        /// The registry's message, with a hint.
        message: String,
    },
    /// The registry answered with an error (`errors[0].code` and `.message` of its JSON).
    #[error("{registry}: {url}: HTTP {status}{}: {message}", if code.is_empty() { String::new() } else { format!(" {code}") })]
    Registry {
        /// The registry.
        registry: String,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error code (`BLOB_UNKNOWN`, `TOOMANYREQUESTS`), maybe empty.
        code: String,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached, or the connection failed (TLS, timeout, reset).
    #[error("{registry}: {url}: {source}")]
    Transport {
        /// The registry.
        registry: String,
        /// The URL requested.
        url: String,
        /// What failed.
        #[source]
        source: HttpError,
    },
    /// An index has no manifest for the platform.
    #[error("{reference}: no image for {platform} in the index (it has {available})")]
    NoMatchingPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A manifest, config or layer of a kind we cannot pull (schema 1 manifests,
    /// artifacts, encrypted layers).
    #[error("{reference}: {what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The reference pulled.
        reference: String,
        /// Which document or descriptor.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A manifest or index that cannot be used (bad JSON, too large, missing fields,
    /// digests other than sha256).
    #[error("{reference}: invalid manifest {digest}: {reason}")]
    InvalidManifest {
        /// The reference pulled.
        reference: String,
        /// The manifest's digest (or tag).
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Content does not match the digest that names it: refused, nothing was stored.
    #[error("{reference}: {what} {expected}: digest mismatch, content is {actual}")]
    DigestMismatch {
        /// The reference pulled.
        reference: String,
        /// `manifest`, `config` or `layer`.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Content is longer or shorter than its descriptor says: refused.
    #[error(
        "{reference}: {what} {digest}: size mismatch, expected {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        /// The reference pulled.
        reference: String,
        /// `manifest`, `config` or `layer`.
        what: String,
        /// Its digest.
        digest: String,
        /// The descriptor's size.
        expected: u64,
        /// The size received (at least, when longer).
        actual: u64,
    },
    /// The image fails the checks `load` applies too: its config, a layer's uncompressed
    /// digest against the config's diffID, or unpacking a layer.
    #[error("{reference}: {source}")]
    Content {
        /// The reference pulled.
        reference: String,
        /// What is wrong.
        #[source]
        source: Box<LoadError>,
    },
    /// Committing to the store failed (and was rolled back, or the rollback failed too).
    #[error("{reference}: committing to the store: {source}")]
    Commit {
        /// The reference pulled.
        reference: String,
        /// What failed.
        #[source]
        source: Box<LoadError>,
    },
    /// Concurrent `prune` or `remove` calls kept collecting content this pull had
    /// downloaded before it could commit it.
    #[error("{reference}: content was removed by concurrent garbage collection {attempts} times; try again")]
    ContentRemoved {
        /// The reference pulled.
        reference: String,
        /// How many times the pull tried.
        attempts: usize,
    },
    /// A file of the store's ingest area could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PullError {
    /// Whether the image does not exist (or may not: access denied), the case kubelet
    /// reports as `ErrImagePull` without retrying sooner than its back-off.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Unauthorized { .. })
    }
}

/// The image manifest's content, validated: what the pull needs to fetch.
struct ImageManifest {
    fetched: Fetched,
    config: DescriptorJson,
    layers: Vec<DescriptorJson>,
}

/// A layer to download and unpack.
#[derive(Debug, Clone)]
struct Job {
    digest: String,
    hex: String,
    size: u64,
    diff: String,
}

/// What the download threads tell the calling thread.
enum Msg {
    Event(PullEvent),
    Unpacked { diff: String, size: u64 },
    Failed(PullError),
}

/// The ingest area's paths.
struct Ingest {
    dir: PathBuf,
}

impl Ingest {
    fn blob(&self, hex: &str) -> PathBuf {
        self.dir.join(hex)
    }
    fn partial(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.partial"))
    }
    fn lock(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.lock"))
    }
    fn layer(&self, diff: &str) -> PathBuf {
        self.dir.join(format!("layer-{diff}"))
    }
    fn unpacking(&self) -> PathBuf {
        self.dir
            .join(format!("unpack-{}", &peapod_store::new_id()[..16]))
    }
}

pub(crate) fn pull(
    layout: &Layout,
    reference: &str,
    opts: &PullOptions,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<PulledImage, PullError> {
    let r = Reference::parse(reference)?;
    let shown = r.familiar();
    let client = Client::new(&r.registry, &r.repository, &shown, opts);
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let wanted = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| DEFAULT_TAG.to_owned());

    let top = first_ok(&client, |ep| client.manifest(ep, &wanted))?;
    let repo_digest = format!("{}@{}", r.name(), top.digest);
    let manifest = resolve_platform(&client, &shown, top, &platform)?;
    let manifest = validate_manifest(&shown, manifest)?;
    progress(PullEvent::Resolved {
        digest: manifest.fetched.digest.clone(),
        layers: manifest
            .layers
            .iter()
            .map(|l| LayerInfo {
                digest: l.digest.clone(),
                size: l.size,
            })
            .collect(),
    });

    let ingest = Ingest {
        dir: layout.ingest(),
    };
    peapod_store::create_dir_all(&ingest.dir)?;
    let session = Session {
        layout,
        client: &client,
        ingest: &ingest,
        shown: &shown,
    };
    let _pulling = lock_file(&layout.ingest_lock(), FlockArg::LockShared)?;

    let references = match r.digest {
        None => vec![Reference {
            digest: None,
            ..r.clone()
        }],
        // Docker does not tag images pulled by digest (even with a tag beside it).
        Some(_) => Vec::new(),
    };
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        let mut plan = stage_metadata(&session, &manifest)?;
        plan.references = references.clone();
        plan.repo_digests = vec![repo_digest.clone()];
        let (jobs, present) = layer_jobs(&session, &manifest, &plan);
        if attempt == 0 {
            for digest in present {
                progress(PullEvent::LayerExists { digest });
            }
        }
        let mut sizes = HashMap::new();
        run_jobs(&session, opts, jobs, &mut sizes, progress)?;

        let _lock = peapod_store::Lock::exclusive(&layout.lock_file())?;
        let mut state = layout.read()?;
        let Some((blobs, new_layers)) = committable(&session, &plan) else {
            continue;
        };
        let id = format!("sha256:{}", plan.config.hex);
        let up_to_date = new_layers.is_empty()
            && state.images.iter().any(|i| {
                i.record.id == id
                    && i.record.repo_digests.contains(&repo_digest)
                    && references
                        .first()
                        .is_none_or(|r| i.record.repo_tags.contains(&r.full()))
            });
        for d in &plan.diff_ids {
            if sizes.contains_key(d) {
                continue;
            }
            let size = match state.layer_sizes.get(d) {
                Some(s) => *s,
                None if layout.layer(d).is_dir() => state::dir_size(&layout.layer(d))?,
                None => state::dir_size(&ingest.layer(d))?,
            };
            sizes.insert(d.clone(), size);
        }
        let loaded =
            publish(layout, &plan, &blobs, &new_layers, &mut state, &sizes).map_err(|source| {
                PullError::Commit {
                    reference: shown.clone(),
                    source: Box::new(source),
                }
            })?;
        // Content the store had already (committed meanwhile by a load or another pull)
        // leaves copies in ingest/: drop them. Layers leave through tmp/, never half
        // removed under a name that says complete.
        for b in &blobs {
            if b.path.starts_with(&ingest.dir) {
                let _ = fs::remove_file(&b.path);
            }
        }
        for d in &plan.diff_ids {
            let staged = ingest.layer(d);
            if staged.is_dir() {
                let gone = layout
                    .tmp()
                    .join(format!("gc-{}", &peapod_store::new_id()[..16]));
                if fs::rename(&staged, &gone).is_ok() {
                    let _ = fs::remove_dir_all(&gone);
                }
            }
        }
        debug_assert!(loaded.iter().all(|l| l.id == id));
        return Ok(PulledImage {
            id,
            tagged: references.first().map(Reference::full),
            repo_digest,
            manifest_digest: manifest.fetched.digest.clone(),
            up_to_date,
        });
    }
    Err(PullError::ContentRemoved {
        reference: shown,
        attempts: MAX_COMMIT_ATTEMPTS,
    })
}

fn publish(
    layout: &Layout,
    plan: &archive::ImagePlan,
    blobs: &[Blob],
    new_layers: &[(String, PathBuf)],
    state: &mut ImagesFile,
    sizes: &HashMap<String, u64>,
) -> Result<Vec<crate::LoadedImage>, LoadError> {
    let blob_refs: Vec<&Blob> = blobs.iter().collect();
    load::publish(
        layout,
        std::slice::from_ref(plan),
        &blob_refs,
        new_layers,
        state,
        sizes,
    )
}

/// Tries `f` on each endpoint in order: a mirror's failure, or a transport failure (the
/// HTTPS half of an insecure registry), falls through to the next. The registry's own
/// error wins over a mirror's.
fn first_ok<T>(
    client: &Client,
    mut f: impl FnMut(&Endpoint) -> Result<T, PullError>,
) -> Result<T, PullError> {
    let mut err: Option<(PullError, bool)> = None;
    for (i, ep) in client.candidates() {
        match f(ep) {
            Ok(v) => {
                client.answered(i);
                return Ok(v);
            }
            Err(e) => {
                let fall_through = ep.mirror || matches!(e, PullError::Transport { .. });
                if !ep.mirror || err.as_ref().is_none_or(|(_, from_mirror)| *from_mirror) {
                    err = Some((e, ep.mirror));
                }
                if !fall_through {
                    break;
                }
            }
        }
    }
    Err(err
        .map(|(e, _)| e)
        .expect("a registry has at least one endpoint"))
}

/// Follows indexes down to the image manifest for `platform`.
fn resolve_platform(
    client: &Client,
    shown: &str,
    mut fetched: Fetched,
    platform: &Platform,
) -> Result<Fetched, PullError> {
    for _ in 0..MAX_INDEX_DEPTH {
        match archive::kind_of(&fetched.media_type) {
            Kind::Manifest => return Ok(fetched),
            Kind::Other => {
                return Err(PullError::UnsupportedMediaType {
                    reference: shown.to_owned(),
                    what: format!("manifest {}", fetched.digest),
                    media_type: fetched.media_type,
                })
            }
            Kind::Index => {}
        }
        let index: ManifestOrIndexJson =
            serde_json::from_slice(&fetched.data).map_err(|e| PullError::InvalidManifest {
                reference: shown.to_owned(),
                digest: fetched.digest.clone(),
                reason: e.to_string(),
            })?;
        let mut entries = index.manifests.unwrap_or_default();
        // Attestations and other artifacts are never pulled.
        entries.retain(|d| !matches!(archive::kind_of(&d.media_type), Kind::Other));
        let Some(i) = platform.select(&entries, |d| d.platform.as_ref()) else {
            let mut available: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(platform::describe)
                .collect();
            available.dedup();
            return Err(PullError::NoMatchingPlatform {
                reference: shown.to_owned(),
                platform: platform.to_string(),
                available: if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                },
            });
        };
        let d = &entries[i];
        check_digest(shown, &fetched.digest, &d.digest)?;
        if d.size > MAX_MANIFEST_BYTES {
            return Err(PullError::InvalidManifest {
                reference: shown.to_owned(),
                digest: d.digest.clone(),
                reason: format!("{} bytes, more than {MAX_MANIFEST_BYTES}", d.size),
            });
        }
        let child = first_ok(client, |ep| client.manifest(ep, &d.digest))?;
        if child.data.len() as u64 != d.size {
            return Err(PullError::SizeMismatch {
                reference: shown.to_owned(),
                what: "manifest".to_owned(),
                digest: d.digest.clone(),
                expected: d.size,
                actual: child.data.len() as u64,
            });
        }
        fetched = child;
    }
    Err(PullError::InvalidManifest {
        reference: shown.to_owned(),
        digest: fetched.digest,
        reason: format!("indexes nested deeper than {MAX_INDEX_DEPTH}"),
    })
}

/// Refuses digests other than `sha256:<64 hex>` (in the document `within`).
fn check_digest(shown: &str, within: &str, digest: &str) -> Result<String, PullError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(hex.to_owned()),
        _ => Err(PullError::InvalidManifest {
            reference: shown.to_owned(),
            digest: within.to_owned(),
            reason: format!("unsupported or invalid digest {digest:?} (only sha256 is supported)"),
        }),
    }
}

fn validate_manifest(shown: &str, fetched: Fetched) -> Result<ImageManifest, PullError> {
    let invalid = |reason: String| PullError::InvalidManifest {
        reference: shown.to_owned(),
        digest: fetched.digest.clone(),
        reason,
    };
    let m: ManifestOrIndexJson =
        serde_json::from_slice(&fetched.data).map_err(|e| invalid(e.to_string()))?;
    if m.schema_version != Some(2) {
        return Err(invalid(format!(
            "schemaVersion {:?}, want 2",
            m.schema_version
        )));
    }
    let config = m.config.ok_or_else(|| invalid("no config".to_owned()))?;
    if config.media_type != MT_OCI_CONFIG && config.media_type != MT_DOCKER_CONFIG {
        return Err(PullError::UnsupportedMediaType {
            reference: shown.to_owned(),
            what: format!("config {}", config.digest),
            media_type: config.media_type,
        });
    }
    check_digest(shown, &fetched.digest, &config.digest)?;
    if config.size > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "config of {} bytes, more than {MAX_MANIFEST_BYTES}",
            config.size
        )));
    }
    let layers = m.layers.unwrap_or_default();
    for l in &layers {
        if !archive::is_layer_media_type(&l.media_type) {
            return Err(PullError::UnsupportedMediaType {
                reference: shown.to_owned(),
                what: format!("layer {}", l.digest),
                media_type: l.media_type.clone(),
            });
        }
        check_digest(shown, &fetched.digest, &l.digest)?;
    }
    Ok(ImageManifest {
        fetched,
        config,
        layers,
    })
}

/// Puts the manifest and config where the commit finds them (the store's copy, else a
/// verified file in `ingest/`) and plans the image: the config is parsed and checked
/// against the layers as `load` does.
fn stage_metadata(
    session: &Session,
    manifest: &ImageManifest,
) -> Result<archive::ImagePlan, PullError> {
    let Session {
        layout,
        client,
        ingest,
        shown,
    } = *session;
    let manifest_hex = state::hex_of(&manifest.fetched.digest).to_owned();
    let manifest_blob = Blob {
        path: stage_bytes(layout, ingest, &manifest_hex, &manifest.fetched.data)?,
        hex: manifest_hex,
        size: manifest.fetched.data.len() as u64,
    };
    let config_hex = state::hex_of(&manifest.config.digest).to_owned();
    let config_path = match [layout.blob(&config_hex), ingest.blob(&config_hex)]
        .into_iter()
        .find(|p| p.is_file())
    {
        Some(p) => p,
        None => {
            let data = first_ok(client, |ep| {
                fetch_small_blob(client, ep, shown, "config", &manifest.config)
            })?;
            stage_bytes(layout, ingest, &config_hex, &data)?
        }
    };
    let config_blob = Blob {
        hex: config_hex,
        path: config_path,
        size: manifest.config.size,
    };
    let layers = manifest
        .layers
        .iter()
        .map(|l| {
            let hex = state::hex_of(&l.digest).to_owned();
            Blob {
                path: ingest.blob(&hex),
                hex,
                size: l.size,
            }
        })
        .collect();
    archive::finish_plan(manifest_blob, config_blob, layers, Vec::new()).map_err(|source| {
        PullError::Content {
            reference: shown.to_owned(),
            source: Box::new(source),
        }
    })
}

/// Downloads a small blob (a config) into memory, verified.
fn fetch_small_blob(
    client: &Client,
    ep: &Endpoint,
    shown: &str,
    what: &str,
    desc: &DescriptorJson,
) -> Result<Vec<u8>, PullError> {
    let body = client.blob(ep, &desc.digest, 0)?;
    let mut data = Vec::new();
    body.reader
        .take(desc.size + 1)
        .read_to_end(&mut data)
        .map_err(|e| PullError::Transport {
            registry: client.registry.clone(),
            url: format!("{}/v2/…/blobs/{}", ep.base, desc.digest),
            source: e.into(),
        })?;
    if data.len() as u64 != desc.size {
        return Err(PullError::SizeMismatch {
            reference: shown.to_owned(),
            what: what.to_owned(),
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: data.len() as u64,
        });
    }
    let actual = format!("sha256:{}", crate::digest::sha256_hex(&data));
    if actual != desc.digest {
        return Err(PullError::DigestMismatch {
            reference: shown.to_owned(),
            what: what.to_owned(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(data)
}

/// The store's copy of a blob, else `ingest/<hex>` holding `data` (written durably under a
/// temporary name first: a reader never sees a partial file under the final name).
fn stage_bytes(
    layout: &Layout,
    ingest: &Ingest,
    hex: &str,
    data: &[u8],
) -> Result<PathBuf, IoError> {
    let committed = layout.blob(hex);
    if committed.is_file() {
        return Ok(committed);
    }
    let dst = ingest.blob(hex);
    if fs::metadata(&dst).is_ok_and(|m| m.len() == data.len() as u64) {
        return Ok(dst);
    }
    let tmp = ingest
        .dir
        .join(format!("{hex}.tmp-{}", &peapod_store::new_id()[..12]));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| IoError::new("create", &tmp, e))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| IoError::new("write", &tmp, e))?;
        fs::rename(&tmp, &dst).map_err(|e| IoError::new("rename", &dst, e))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    Ok(dst)
}

/// The layers to fetch (one per diffID), and the digests of those already there (in the
/// store, or complete in `ingest/`).
fn layer_jobs(
    session: &Session,
    manifest: &ImageManifest,
    plan: &archive::ImagePlan,
) -> (Vec<Job>, Vec<String>) {
    let (layout, ingest) = (session.layout, session.ingest);
    let mut jobs = Vec::new();
    let mut present = Vec::new();
    let mut seen = HashSet::new();
    for (desc, diff) in manifest.layers.iter().zip(&plan.diff_ids) {
        if !seen.insert(diff.clone()) {
            continue;
        }
        if layout.layer(diff).is_dir() || ingest.layer(diff).is_dir() {
            present.push(desc.digest.clone());
        } else {
            jobs.push(Job {
                digest: desc.digest.clone(),
                hex: state::hex_of(&desc.digest).to_owned(),
                size: desc.size,
                diff: diff.clone(),
            });
        }
    }
    (jobs, present)
}

/// Under the store lock: the blobs to commit and the layers to rename into the store, or
/// None when something the image needs has disappeared (collected by a concurrent prune).
#[allow(clippy::type_complexity)]
fn committable(
    session: &Session,
    plan: &archive::ImagePlan,
) -> Option<(Vec<Blob>, Vec<(String, PathBuf)>)> {
    let (layout, ingest) = (session.layout, session.ingest);
    let mut blobs = Vec::new();
    for b in [&plan.manifest, &plan.config] {
        if !b.path.is_file() && !layout.blob(&b.hex).is_file() {
            return None;
        }
        blobs.push(b.clone());
    }
    // A layer blob is stored when this pull (or a killed one) downloaded it; a layer
    // already unpacked in the store is not downloaded again just to keep its blob.
    blobs.extend(plan.layers.iter().filter(|b| b.path.is_file()).cloned());
    let mut new_layers = Vec::new();
    let mut seen = HashSet::new();
    for d in &plan.diff_ids {
        if !seen.insert(d) || layout.layer(d).is_dir() {
            continue;
        }
        let staged = ingest.layer(d);
        if !staged.is_dir() {
            return None;
        }
        new_layers.push((d.clone(), staged));
    }
    Some((blobs, new_layers))
}

/// Downloads and unpacks `jobs` on up to `max_concurrent_downloads` threads, forwarding
/// their events to `progress` on this thread. The first failure stops the others (their
/// partial downloads stay for a retry) and is returned.
fn run_jobs(
    session: &Session,
    opts: &PullOptions,
    jobs: Vec<Job>,
    sizes: &mut HashMap<String, u64>,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<(), PullError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let threads = match opts.max_concurrent_downloads {
        0 => DEFAULT_CONCURRENT_DOWNLOADS,
        n => n,
    }
    .min(jobs.len());
    let queue = Mutex::new(VecDeque::from(jobs));
    let abort = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut first_err = None;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (queue, abort) = (&queue, &abort);
            s.spawn(move || loop {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                let Some(job) = queue.lock().expect("job queue").pop_front() else {
                    break;
                };
                let worker = Worker {
                    session,
                    abort,
                    tx: &tx,
                };
                if let Err(e) = worker.run(&job) {
                    abort.store(true, Ordering::Relaxed);
                    let _ = tx.send(Msg::Failed(e));
                }
            });
        }
        drop(tx);
        for msg in rx {
            match msg {
                Msg::Event(e) => progress(e),
                Msg::Unpacked { diff, size } => {
                    sizes.insert(diff, size);
                }
                Msg::Failed(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    });
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What every step of one pull works with.
#[derive(Clone, Copy)]
struct Session<'a> {
    layout: &'a Layout,
    client: &'a Client,
    ingest: &'a Ingest,
    /// The reference, for messages.
    shown: &'a str,
}

/// One download thread's view of the pull.
struct Worker<'a> {
    session: &'a Session<'a>,
    abort: &'a AtomicBool,
    tx: &'a mpsc::Sender<Msg>,
}

impl Worker<'_> {
    fn event(&self, e: PullEvent) {
        let _ = self.tx.send(Msg::Event(e));
    }

    /// Downloads, verifies and unpacks one layer into `ingest/layer-<diff>`, holding the
    /// blob's ingest lock so no other pull writes the same files meanwhile.
    fn run(&self, job: &Job) -> Result<(), PullError> {
        let lock_path = self.session.ingest.lock(&job.hex);
        let lock = match BlobLock::acquire(&lock_path, false)? {
            Some(l) => l,
            None => {
                self.event(PullEvent::LayerWaiting {
                    digest: job.digest.clone(),
                });
                BlobLock::acquire(&lock_path, true)?.expect("a blocking lock is taken")
            }
        };
        let staged = self.session.ingest.layer(&job.diff);
        if staged.is_dir() || self.session.layout.layer(&job.diff).is_dir() {
            // Another pull finished it while we waited.
            self.event(PullEvent::LayerExists {
                digest: job.digest.clone(),
            });
            drop(lock);
            return Ok(());
        }
        let Some(blob) = self.download(job)? else {
            drop(lock);
            return Ok(());
        };
        self.event(PullEvent::LayerExtracting {
            digest: job.digest.clone(),
        });
        let dest = self.session.ingest.unpacking();
        fs::create_dir(&dest).map_err(|e| IoError::new("create directory", &dest, e))?;
        let unpacked = fs::set_permissions(&dest, Permissions::from_mode(0o755))
            .map_err(|e| LoadError::from(IoError::new("chmod", &dest, e)))
            .and_then(|()| {
                load::verify_layer(
                    &Blob {
                        hex: job.hex.clone(),
                        path: blob,
                        size: job.size,
                    },
                    &job.diff,
                    Some(&dest),
                )
            });
        let stats = match unpacked {
            Ok(s) => s,
            Err(source) => {
                let _ = fs::remove_dir_all(&dest);
                return Err(PullError::Content {
                    reference: self.session.shown.to_owned(),
                    source: Box::new(source),
                });
            }
        };
        // Durable before the rename that makes it count as complete.
        let d = File::open(&dest).map_err(|e| IoError::new("open", &dest, e))?;
        nix::unistd::syncfs(&d).map_err(|e| IoError::new("syncfs", &dest, e.into()))?;
        match fs::rename(&dest, &staged) {
            Ok(()) => peapod_store::sync_dir(&self.session.ingest.dir)?,
            // The same layer from another blob (other compression), unpacked meanwhile.
            Err(_) if staged.is_dir() => {
                let _ = fs::remove_dir_all(&dest);
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dest);
                return Err(IoError::new("rename", &staged, e).into());
            }
        }
        let _ = self.tx.send(Msg::Unpacked {
            diff: job.diff.clone(),
            size: stats.map_or(0, |s| s.size),
        });
        self.event(PullEvent::LayerDone {
            digest: job.digest.clone(),
        });
        drop(lock);
        Ok(())
    }

    /// Fetches the blob into `ingest/<hex>`, resuming `ingest/<hex>.partial`. None when the
    /// pull was aborted meanwhile.
    fn download(&self, job: &Job) -> Result<Option<PathBuf>, PullError> {
        let done = self.session.ingest.blob(&job.hex);
        if fs::metadata(&done).is_ok_and(|m| m.len() == job.size) {
            return Ok(Some(done));
        }
        let partial = self.session.ingest.partial(&job.hex);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&partial)
            .map_err(|e| IoError::new("open", &partial, e))?;
        let (mut hasher, mut have) =
            hash_existing(&mut file, job.size).map_err(|e| IoError::new("read", &partial, e))?;
        let mut last_err = None;
        let mut restarted = have == 0;
        for (_, ep) in self.session.client.candidates() {
            let mut attempts = 0;
            while attempts < MAX_TRANSFER_ATTEMPTS {
                attempts += 1;
                if self.abort.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                if attempts > 1 {
                    // A failed transfer: give the network a moment before resuming.
                    std::thread::sleep(Duration::from_millis(250 * attempts as u64));
                }
                let body = match self.session.client.blob(ep, &job.digest, have) {
                    Ok(b) => b,
                    Err(e @ PullError::Transport { .. }) => {
                        last_err = Some(e);
                        continue;
                    }
                    Err(e) => {
                        last_err = Some(e);
                        break;
                    }
                };
                if body.offset != have {
                    // The registry sends the whole blob: start over.
                    truncate(&mut file, &partial)?;
                    hasher = Sha256::new();
                    have = 0;
                    restarted = true;
                }
                self.event(PullEvent::LayerDownloading {
                    digest: job.digest.clone(),
                    offset: have,
                    total: job.size,
                });
                let url = format!("{}/v2/…/blobs/{}", ep.base, job.digest);
                match self.copy_body(
                    job,
                    body.reader,
                    &mut file,
                    &partial,
                    &mut hasher,
                    &mut have,
                )? {
                    Copy::Aborted => return Ok(None),
                    Copy::Failed(e) => {
                        last_err = Some(PullError::Transport {
                            registry: self.session.client.registry.clone(),
                            url,
                            source: e.into(),
                        });
                        continue;
                    }
                    Copy::Complete => {}
                }
                let actual = hex::encode(std::mem::take(&mut hasher).finalize());
                if actual != job.hex {
                    truncate(&mut file, &partial)?;
                    have = 0;
                    if !restarted {
                        // The resumed part may be what is wrong: one fresh try.
                        restarted = true;
                        attempts -= 1;
                        continue;
                    }
                    drop(file);
                    let _ = fs::remove_file(&partial);
                    return Err(PullError::DigestMismatch {
                        reference: self.session.shown.to_owned(),
                        what: "layer".to_owned(),
                        expected: job.digest.clone(),
                        actual: format!("sha256:{actual}"),
                    });
                }
                file.sync_all()
                    .map_err(|e| IoError::new("fsync", &partial, e))?;
                fs::rename(&partial, &done).map_err(|e| IoError::new("rename", &done, e))?;
                peapod_store::sync_dir(&self.session.ingest.dir)?;
                return Ok(Some(done));
            }
        }
        Err(last_err.expect("a registry has at least one endpoint"))
    }

    /// Appends the body to the partial file, hashing it; refuses more bytes than the
    /// descriptor's size (the partial file is then removed).
    fn copy_body(
        &self,
        job: &Job,
        mut reader: Box<dyn Read + Send>,
        file: &mut File,
        partial: &Path,
        hasher: &mut Sha256,
        have: &mut u64,
    ) -> Result<Copy, PullError> {
        file.seek(SeekFrom::Start(*have))
            .map_err(|e| IoError::new("seek", partial, e))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut last = Instant::now();
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Ok(Copy::Aborted);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Copy::Failed(e)),
            };
            if *have + n as u64 > job.size {
                let _ = fs::remove_file(partial);
                return Err(PullError::SizeMismatch {
                    reference: self.session.shown.to_owned(),
                    what: "layer".to_owned(),
                    digest: job.digest.clone(),
                    expected: job.size,
                    actual: *have + n as u64,
                });
            }
            file.write_all(&buf[..n])
                .map_err(|e| IoError::new("write", partial, e))?;
            hasher.update(&buf[..n]);
            *have += n as u64;
            if last.elapsed() >= PROGRESS_INTERVAL {
                last = Instant::now();
                self.event(PullEvent::LayerProgress {
                    digest: job.digest.clone(),
                    done: *have,
                    total: job.size,
                });
            }
        }
        if *have < job.size {
            return Ok(Copy::Failed(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body ended after {} of {} bytes", *have, job.size),
            )));
        }
        self.event(PullEvent::LayerProgress {
            digest: job.digest.clone(),
            done: *have,
            total: job.size,
        });
        Ok(Copy::Complete)
    }
}

/// How one transfer ended.
enum Copy {
    Complete,
    Aborted,
    Failed(io::Error),
}

/// Hashes what an interrupted download left; a file longer than the blob is emptied.
fn hash_existing(file: &mut File, size: u64) -> io::Result<(Sha256, u64)> {
    let len = file.metadata()?.len();
    let mut hasher = Sha256::new();
    if len > size {
        file.set_len(0)?;
        return Ok((hasher, 0));
    }
    file.seek(SeekFrom::Start(0))?;
    let n = io::copy(&mut file.take(len), &mut HashWriter(&mut hasher))?;
    Ok((hasher, n))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn truncate(file: &mut File, path: &Path) -> Result<(), IoError> {
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .map_err(|e| IoError::new("truncate", path, e))
}

/// Takes a lock on a file (created if missing).
pub(crate) fn lock_file(path: &Path, how: FlockArg) -> Result<Flock<File>, IoError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| IoError::new("open lock", path, e))?;
    Flock::lock(f, how).map_err(|(_, e)| IoError::new("lock", path, e.into()))
}

/// The exclusive lock on `ingest/<hex>.lock`. The file is removed when released, so a
/// holder checks, once locked, that the file it locked is still the one at the path.
struct BlobLock {
    path: PathBuf,
    _flock: Flock<File>,
}

impl BlobLock {
    /// Takes the lock, waiting for it when `wait`; `Ok(None)` when not waiting and it is held.
    fn acquire(path: &Path, wait: bool) -> Result<Option<Self>, IoError> {
        loop {
            let how = if wait {
                FlockArg::LockExclusive
            } else {
                FlockArg::LockExclusiveNonblock
            };
            let flock = match lock_file(path, how) {
                Ok(f) => f,
                Err(e) if !wait && e.source.raw_os_error() == Some(libc_ewouldblock()) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let locked = flock
                .metadata()
                .map_err(|e| IoError::new("stat", path, e))?;
            match fs::metadata(path) {
                Ok(m) if m.ino() == locked.ino() && m.dev() == locked.dev() => {
                    return Ok(Some(Self {
                        path: path.to_owned(),
                        _flock: flock,
                    }))
                }
                // Released and removed by its previous holder meanwhile: lock the new file.
                _ => continue,
            }
        }
    }
}

impl Drop for BlobLock {
    /// Removes the file while still holding the lock (a waiter then finds it gone, and
    /// locks a new one).
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn libc_ewouldblock() -> i32 {
    nix::errno::Errno::EWOULDBLOCK as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_lock_excludes_and_survives_removal_by_the_previous_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let a = BlobLock::acquire(&path, false).unwrap().unwrap();
        assert!(BlobLock::acquire(&path, false).unwrap().is_none());
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || BlobLock::acquire(&path, true).unwrap().unwrap()
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        let b = waiter.join().unwrap();
        assert!(path.exists(), "the waiter locked a fresh file");
        assert!(BlobLock::acquire(&path, false).unwrap().is_none());
        drop(b);
        assert!(!path.exists());
    }

    #[test]
    fn hash_existing_resumes_and_empties_overlong_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.partial");
        fs::write(&p, b"hello").unwrap();
        let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let (h, n) = hash_existing(&mut f, 10).unwrap();
        assert_eq!(n, 5);
        assert_eq!(
            hex::encode(h.finalize()),
            crate::digest::sha256_hex(b"hello")
        );
        let (_, n) = hash_existing(&mut f, 3).unwrap();
        assert_eq!(n, 0);
        assert_eq!(fs::metadata(&p).unwrap().len(), 0);
    }
}
