//! Image archives: reading an OCI image-layout or `docker save` tar (plain, gzip or zstd)
//! into a private staging directory, and turning it into verified image plans (manifest,
//! config and layer blobs, each checked against its sha256 digest and size).
//!
//! It writes only inside the staging directory it is given; the store's committed content
//! is never touched here.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use peapod_store::IoError;
use serde::Deserialize;

use crate::digest::{self, Compression, HashingReader};
use crate::platform::{Platform, PlatformJson};
use crate::reference::is_hex64;
use crate::{LoadError, Reference};

/// `io.containerd.image.name`: the full reference of an image in an OCI index.
pub(crate) const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// `org.opencontainers.image.ref.name`: a tag, or (as some tools write) a full reference.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

pub(crate) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Manifests, indexes and configs larger than this are refused (they are read into memory).
const MAX_METADATA_BYTES: u64 = 16 << 20;
/// How deep indexes may nest.
const MAX_INDEX_DEPTH: usize = 8;
/// How many symlinks in a row an archive name may go through.
const MAX_LINK_HOPS: usize = 16;

/// One regular file of the archive, copied into the staging directory and hashed.
#[derive(Debug, Clone)]
pub(crate) struct StagedFile {
    /// Where it was copied.
    pub(crate) path: PathBuf,
    /// Lowercase hex sha256 of its content.
    pub(crate) sha256: String,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// The files of an archive, by normalised name (`blobs/sha256/…`, `manifest.json`).
#[derive(Debug, Default)]
pub(crate) struct ArchiveFiles {
    files: HashMap<String, StagedFile>,
    /// Symlinks and hardlinks between archive names (docker save's shared layers).
    links: HashMap<String, String>,
}

impl ArchiveFiles {
    /// Copies every regular file of `archive` (plain, gzip or zstd tar) into `dir`, named by
    /// a counter (archive names are never used as paths), hashing each on the way.
    pub(crate) fn extract(archive: &Path, dir: &Path) -> Result<Self, LoadError> {
        let bad = |source: io::Error| LoadError::Archive {
            path: archive.to_owned(),
            source,
        };
        let file = File::open(archive).map_err(|e| IoError::new("open", archive, e))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let head = digest::peek_head(&mut reader).map_err(bad)?;
        let stream = digest::decompress(reader, &head)
            .map_err(|c| LoadError::UnsupportedCompression {
                what: archive.display().to_string(),
                format: c.name(),
            })?
            .map_err(bad)?;
        let mut tar = tar::Archive::new(stream);
        let mut out = Self::default();
        let mut buf = vec![0u8; 256 * 1024];
        for (n, entry) in tar.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let Some(name) = normalise(&String::from_utf8_lossy(&entry.path_bytes())) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let path = dir.join(format!("f{n}"));
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&path)
                    .map_err(|e| IoError::new("create", &path, e))?;
                let want = entry.size();
                let mut hashing = HashingReader::new(&mut entry);
                loop {
                    let k = match hashing.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(bad(e)),
                    };
                    f.write_all(&buf[..k])
                        .map_err(|e| IoError::new("write", &path, e))?;
                }
                let (sha256, size) = hashing.finish();
                if size != want {
                    return Err(bad(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry {name:?} truncated: {size} of {want} bytes"),
                    )));
                }
                // Durable before the rename that commits it (the caller commits by rename).
                f.sync_all().map_err(|e| IoError::new("fsync", &path, e))?;
                out.links.remove(&name);
                out.files.insert(name, StagedFile { path, sha256, size });
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalise(&format!("{dir}/{target}"))
                } else {
                    normalise(&target)
                };
                if let Some(resolved) = resolved {
                    out.files.remove(&name);
                    out.links.insert(name, resolved);
                }
            }
        }
        Ok(out)
    }

    /// The staged file for an archive name, following links.
    pub(crate) fn get(&self, name: &str) -> Option<&StagedFile> {
        let mut name = normalise(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&name) {
                return Some(f);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Normalises an archive name lexically: no leading `/` or `./`, no empty or `.`
/// components, `..` applied. None for the root or a name escaping it.
fn normalise(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A blob of the archive verified against its digest.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    /// Lowercase hex sha256.
    pub(crate) hex: String,
    /// The staged file.
    pub(crate) path: PathBuf,
    /// Size in bytes.
    pub(crate) size: u64,
}

/// One image of the archive, every blob verified, ready to be unpacked and committed.
#[derive(Debug)]
pub(crate) struct ImagePlan {
    /// The manifest (synthesised, in OCI form, for `docker save` archives).
    pub(crate) manifest: Blob,
    /// The config blob; its digest is the image id.
    pub(crate) config: Blob,
    /// The config's `created`.
    pub(crate) created: Option<String>,
    /// The config's `rootfs.diff_ids`, lowercase hex, bottom first.
    pub(crate) diff_ids: Vec<String>,
    /// The layer blobs as stored (maybe compressed), bottom first.
    pub(crate) layers: Vec<Blob>,
    /// The names the archive gives the image.
    pub(crate) references: Vec<Reference>,
    /// Full references by digest (`registry/repository@sha256:…`) it was pulled by.
    pub(crate) repo_digests: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescriptorJson {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) platform: Option<PlatformJson>,
    #[serde(default)]
    pub(crate) annotations: Option<HashMap<String, String>>,
}

/// An index or a manifest: which one is told by the media type, or by the fields present.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestOrIndexJson {
    #[serde(default)]
    pub(crate) schema_version: Option<u32>,
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) manifests: Option<Vec<DescriptorJson>>,
    #[serde(default)]
    pub(crate) config: Option<DescriptorJson>,
    #[serde(default)]
    pub(crate) layers: Option<Vec<DescriptorJson>>,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    #[serde(default)]
    created: Option<String>,
    rootfs: RootfsJson,
}

#[derive(Debug, Deserialize)]
struct RootfsJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutJson {
    image_layout_version: String,
}

/// Turns the archive's files into image plans: `docker save` form when it has
/// `manifest.json` (Docker 25+ writes both it and `index.json`; the former is used),
/// else the OCI image layout.
pub(crate) fn plan_images(
    files: &ArchiveFiles,
    staging: &Path,
    archive: &Path,
    host: &Platform,
) -> Result<Vec<ImagePlan>, LoadError> {
    let plans = if files.contains("manifest.json") {
        plan_docker(files, staging)?
    } else if files.contains("index.json") {
        plan_oci(files, host)?
    } else {
        return Err(LoadError::NotAnImageArchive {
            path: archive.to_owned(),
        });
    };
    if plans.is_empty() {
        return Err(LoadError::NoImages {
            path: archive.to_owned(),
            platform: host.to_string(),
        });
    }
    Ok(plans)
}

fn plan_oci(files: &ArchiveFiles, host: &Platform) -> Result<Vec<ImagePlan>, LoadError> {
    if let Some(layout) = files.get("oci-layout") {
        let layout: OciLayoutJson = read_json(layout, "oci-layout")?;
        if layout.image_layout_version != "1.0.0" {
            return Err(LoadError::UnsupportedLayout {
                version: layout.image_layout_version,
            });
        }
    }
    let index_file = files
        .get("index.json")
        .ok_or_else(|| LoadError::MissingBlob {
            name: "index.json".to_owned(),
        })?;
    let index: ManifestOrIndexJson = read_json(index_file, "index.json")?;
    let mut plans = Vec::new();
    for desc in index.manifests.unwrap_or_default() {
        if let Some(p) = &desc.platform {
            if host.rank(p).is_none() {
                continue;
            }
        }
        let references = names_from_annotations(desc.annotations.as_ref())?;
        let manifest = match kind_of(&desc.media_type) {
            Kind::Index => match pick_from_index(files, &desc, host, 1)? {
                Some(m) => m,
                None => {
                    return Err(LoadError::NoMatchingPlatform {
                        index: desc.digest,
                        platform: host.to_string(),
                    });
                }
            },
            Kind::Manifest => desc,
            // Artifacts and other non-image content: not images, not loaded.
            Kind::Other => continue,
        };
        plans.push(plan_manifest(files, &manifest, references)?);
    }
    Ok(plans)
}

pub(crate) enum Kind {
    Index,
    Manifest,
    Other,
}

pub(crate) fn kind_of(media_type: &str) -> Kind {
    match media_type {
        MT_OCI_INDEX | MT_DOCKER_LIST => Kind::Index,
        MT_OCI_MANIFEST | MT_DOCKER_MANIFEST => Kind::Manifest,
        _ => Kind::Other,
    }
}

/// The manifest of `index_desc` (an index) for the host platform, recursing into nested
/// indexes. Entries with the host platform win over entries without a platform.
fn pick_from_index(
    files: &ArchiveFiles,
    index_desc: &DescriptorJson,
    host: &Platform,
    depth: usize,
) -> Result<Option<DescriptorJson>, LoadError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(LoadError::InvalidContent {
            what: format!("index {}", index_desc.digest),
            reason: format!("indexes nested deeper than {MAX_INDEX_DEPTH}"),
        });
    }
    let blob = verified_blob(files, index_desc, "index")?;
    let index: ManifestOrIndexJson =
        read_json_blob(&blob, &format!("index {}", index_desc.digest))?;
    let mut entries = index.manifests.unwrap_or_default();
    // Entries that are not images (attestations, artifacts) are never picked.
    entries.retain(|d| !matches!(kind_of(&d.media_type), Kind::Other));
    let Some(i) = host.select(&entries, |d| d.platform.as_ref()) else {
        return Ok(None);
    };
    let chosen = entries.swap_remove(i);
    match kind_of(&chosen.media_type) {
        Kind::Index => pick_from_index(files, &chosen, host, depth + 1),
        Kind::Manifest => Ok(Some(chosen)),
        Kind::Other => Err(LoadError::UnsupportedMediaType {
            what: format!("index entry {}", chosen.digest),
            media_type: chosen.media_type,
        }),
    }
}

/// Names from an index entry's annotations: `io.containerd.image.name` (a full reference),
/// else `org.opencontainers.image.ref.name` when it is a reference and not a bare tag (a tag
/// alone cannot name an image: the image stays untagged).
fn names_from_annotations(
    annotations: Option<&HashMap<String, String>>,
) -> Result<Vec<Reference>, LoadError> {
    let Some(a) = annotations else {
        return Ok(Vec::new());
    };
    if let Some(name) = a.get(ANNOTATION_CONTAINERD_NAME) {
        return Ok(vec![Reference::parse(name)?]);
    }
    if let Some(name) = a.get(ANNOTATION_REF_NAME) {
        if name.contains(['/', ':', '@']) {
            if let Ok(r) = Reference::parse(name) {
                return Ok(vec![r]);
            }
        }
    }
    Ok(Vec::new())
}

/// Verifies a manifest, its config and its layers, and plans the image.
fn plan_manifest(
    files: &ArchiveFiles,
    desc: &DescriptorJson,
    references: Vec<Reference>,
) -> Result<ImagePlan, LoadError> {
    let what = format!("manifest {}", desc.digest);
    let manifest = verified_blob(files, desc, "manifest")?;
    let m: ManifestOrIndexJson = read_json_blob(&manifest, &what)?;
    if m.schema_version != Some(2) {
        return Err(LoadError::InvalidContent {
            what,
            reason: format!("schemaVersion {:?}, want 2", m.schema_version),
        });
    }
    if let Some(mt) = &m.media_type {
        if !matches!(kind_of(mt), Kind::Manifest) {
            return Err(LoadError::UnsupportedMediaType {
                what,
                media_type: mt.clone(),
            });
        }
    }
    let config_desc = m.config.ok_or_else(|| LoadError::InvalidContent {
        what: what.clone(),
        reason: "no config".to_owned(),
    })?;
    if config_desc.media_type != MT_OCI_CONFIG && config_desc.media_type != MT_DOCKER_CONFIG {
        return Err(LoadError::UnsupportedMediaType {
            what: format!("config {}", config_desc.digest),
            media_type: config_desc.media_type,
        });
    }
    let config = verified_blob(files, &config_desc, "config")?;
    let layer_descs = m.layers.unwrap_or_default();
    let mut layers = Vec::with_capacity(layer_descs.len());
    for l in &layer_descs {
        if !is_layer_media_type(&l.media_type) {
            return Err(LoadError::UnsupportedMediaType {
                what: format!("layer {}", l.digest),
                media_type: l.media_type.clone(),
            });
        }
        layers.push(verified_blob(files, l, "layer")?);
    }
    finish_plan(manifest, config, layers, references)
}

/// Parses the config and checks it describes the layers.
pub(crate) fn finish_plan(
    manifest: Blob,
    config: Blob,
    layers: Vec<Blob>,
    references: Vec<Reference>,
) -> Result<ImagePlan, LoadError> {
    let what = format!("config sha256:{}", config.hex);
    let data = read_limited(&config.path, config.size, &what)?;
    let parsed: ConfigJson =
        serde_json::from_slice(&data).map_err(|source| LoadError::InvalidJson {
            what: what.clone(),
            source,
        })?;
    // `ImageStore::config` reads it as an OCI ImageConfiguration: make sure that works now.
    serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&data).map_err(|source| {
        LoadError::InvalidJson {
            what: what.clone(),
            source,
        }
    })?;
    if parsed.rootfs.kind != "layers" {
        return Err(LoadError::InvalidContent {
            what,
            reason: format!("rootfs type {:?}, want \"layers\"", parsed.rootfs.kind),
        });
    }
    let mut diff_ids = Vec::with_capacity(parsed.rootfs.diff_ids.len());
    for d in &parsed.rootfs.diff_ids {
        match d.strip_prefix("sha256:") {
            Some(hex) if is_hex64(hex) => diff_ids.push(hex.to_owned()),
            _ => return Err(LoadError::UnsupportedDigest { digest: d.clone() }),
        }
    }
    if diff_ids.len() != layers.len() {
        return Err(LoadError::InvalidContent {
            what,
            reason: format!("{} diff_ids for {} layers", diff_ids.len(), layers.len()),
        });
    }
    Ok(ImagePlan {
        manifest,
        config,
        created: parsed.created,
        diff_ids,
        layers,
        references,
        repo_digests: Vec::new(),
    })
}

/// Layer media types we unpack (OCI, non-distributable and Docker forms); the compression
/// itself is told by the magic bytes.
pub(crate) fn is_layer_media_type(mt: &str) -> bool {
    const OK: &[&str] = &[
        MT_OCI_LAYER,
        MT_OCI_LAYER_GZIP,
        MT_OCI_LAYER_ZSTD,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ];
    OK.contains(&mt)
}

/// The blob a descriptor names, checked against its sha256 and size.
fn verified_blob(
    files: &ArchiveFiles,
    desc: &DescriptorJson,
    what: &str,
) -> Result<Blob, LoadError> {
    let hex = match desc.digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => hex,
        _ => {
            return Err(LoadError::UnsupportedDigest {
                digest: desc.digest.clone(),
            })
        }
    };
    let name = format!("blobs/sha256/{hex}");
    let f = files.get(&name).ok_or_else(|| LoadError::MissingBlob {
        name: format!("{name} ({what})"),
    })?;
    if f.sha256 != hex {
        return Err(LoadError::DigestMismatch {
            what: format!("{what} {name}"),
            expected: desc.digest.clone(),
            actual: format!("sha256:{}", f.sha256),
        });
    }
    if f.size != desc.size {
        return Err(LoadError::SizeMismatch {
            what: format!("{what} {name}"),
            expected: desc.size,
            actual: f.size,
        });
    }
    Ok(Blob {
        hex: hex.to_owned(),
        path: f.path.clone(),
        size: f.size,
    })
}

fn plan_docker(files: &ArchiveFiles, staging: &Path) -> Result<Vec<ImagePlan>, LoadError> {
    let manifest_file = files
        .get("manifest.json")
        .ok_or_else(|| LoadError::MissingBlob {
            name: "manifest.json".to_owned(),
        })?;
    let entries: Vec<DockerManifestEntry> = read_json(manifest_file, "manifest.json")?;
    let mut plans = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let config = docker_file(files, &entry.config, "config")?;
        let mut layers = Vec::with_capacity(entry.layers.len());
        let mut layer_descs = Vec::with_capacity(entry.layers.len());
        for name in &entry.layers {
            let blob = docker_file(files, name, "layer")?;
            let media_type = match sniff_file(&blob.path)? {
                Compression::Gzip => MT_OCI_LAYER_GZIP,
                Compression::Zstd => MT_OCI_LAYER_ZSTD,
                Compression::None => MT_OCI_LAYER,
                c => {
                    return Err(LoadError::UnsupportedCompression {
                        what: format!("layer {name}"),
                        format: c.name(),
                    })
                }
            };
            layer_descs.push(serde_json::json!({
                "mediaType": media_type,
                "digest": format!("sha256:{}", blob.hex),
                "size": blob.size,
            }));
            layers.push(blob);
        }
        let mut references = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            references.push(Reference::parse(&tag)?);
        }
        // An OCI manifest for the image, so the store holds the same kinds of blobs
        // whatever the archive format (containerd does the same on import).
        let manifest_json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {
                "mediaType": MT_OCI_CONFIG,
                "digest": format!("sha256:{}", config.hex),
                "size": config.size,
            },
            "layers": layer_descs,
        });
        let data = serde_json::to_vec(&manifest_json).expect("JSON values serialise");
        let path = staging.join(format!("manifest-{i}.json"));
        let mut f = File::create(&path).map_err(|e| IoError::new("create", &path, e))?;
        f.write_all(&data)
            .and_then(|()| f.sync_all())
            .map_err(|e| IoError::new("write", &path, e))?;
        let manifest = Blob {
            hex: digest::sha256_hex(&data),
            path,
            size: data.len() as u64,
        };
        plans.push(finish_plan(manifest, config, layers, references)?);
    }
    Ok(plans)
}

/// A file named in a `docker save` manifest. Names that carry a digest
/// (`blobs/sha256/<hex>`, legacy `<hex>.json` configs) are verified against it; layers
/// are verified against the config's diff_ids when unpacked.
fn docker_file(files: &ArchiveFiles, name: &str, what: &str) -> Result<Blob, LoadError> {
    let f = files.get(name).ok_or_else(|| LoadError::MissingBlob {
        name: format!("{name} ({what})"),
    })?;
    let normalised = normalise(name).unwrap_or_default();
    let expected = normalised
        .strip_prefix("blobs/sha256/")
        .or_else(|| {
            normalised
                .strip_suffix(".json")
                .filter(|_| what == "config")
        })
        .filter(|h| is_hex64(h));
    if let Some(hex) = expected {
        if f.sha256 != hex {
            return Err(LoadError::DigestMismatch {
                what: format!("{what} {name}"),
                expected: format!("sha256:{hex}"),
                actual: format!("sha256:{}", f.sha256),
            });
        }
    }
    Ok(Blob {
        hex: f.sha256.clone(),
        path: f.path.clone(),
        size: f.size,
    })
}

/// The compression of a staged file, from its magic bytes.
pub(crate) fn sniff_file(path: &Path) -> Result<Compression, LoadError> {
    let mut f = File::open(path).map_err(|e| IoError::new("open", path, e))?;
    let mut head = [0u8; 8];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IoError::new("read", path, e).into()),
        }
    }
    Ok(Compression::sniff(&head[..n]))
}

fn read_limited(path: &Path, size: u64, what: &str) -> Result<Vec<u8>, LoadError> {
    if size > MAX_METADATA_BYTES {
        return Err(LoadError::InvalidContent {
            what: what.to_owned(),
            reason: format!(
                "{size} bytes, more than the {MAX_METADATA_BYTES} allowed for metadata"
            ),
        });
    }
    fs::read(path).map_err(|e| IoError::new("read", path, e).into())
}

fn read_json<T: serde::de::DeserializeOwned>(f: &StagedFile, what: &str) -> Result<T, LoadError> {
    let data = read_limited(&f.path, f.size, what)?;
    serde_json::from_slice(&data).map_err(|source| LoadError::InvalidJson {
        what: what.to_owned(),
        source,
    })
}

fn read_json_blob<T: serde::de::DeserializeOwned>(b: &Blob, what: &str) -> Result<T, LoadError> {
    let data = read_limited(&b.path, b.size, what)?;
    serde_json::from_slice(&data).map_err(|source| LoadError::InvalidJson {
        what: what.to_owned(),
        source,
    })
}

/// The distinct blobs of several plans, by digest.
pub(crate) fn distinct_blobs(plans: &[ImagePlan]) -> Vec<&Blob> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in plans {
        for b in std::iter::once(&p.manifest)
            .chain(std::iter::once(&p.config))
            .chain(&p.layers)
        {
            if seen.insert(b.hex.as_str()) {
                out.push(b);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_normalise_lexically() {
        assert_eq!(
            normalise("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            normalise("/manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("../x"), None);
        assert_eq!(normalise("./"), None);
    }

    #[test]
    fn ref_name_annotation_is_used_only_when_it_is_a_reference() {
        let ann = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        let names = |a| {
            names_from_annotations(Some(&a))
                .unwrap()
                .iter()
                .map(Reference::full)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(ann(ANNOTATION_REF_NAME, "latest")),
            Vec::<String>::new()
        );
        assert_eq!(
            names(ann(ANNOTATION_REF_NAME, "1.36")),
            Vec::<String>::new()
        );
        assert_eq!(
            names(ann(ANNOTATION_REF_NAME, "busybox:1")),
            vec!["docker.io/library/busybox:1"]
        );
        assert_eq!(
            names(ann(ANNOTATION_REF_NAME, "quay.io/a/b:2")),
            vec!["quay.io/a/b:2"]
        );
        assert_eq!(
            names(ann(ANNOTATION_CONTAINERD_NAME, "docker.io/x/y:z")),
            vec!["docker.io/x/y:z"]
        );
        assert!(names_from_annotations(Some(&ann(ANNOTATION_CONTAINERD_NAME, "Bad"))).is_err());
    }
}
