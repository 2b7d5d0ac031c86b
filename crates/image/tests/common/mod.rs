//! Helpers shared by the image store's integration tests: building layer tars (including
//! malicious ones), OCI-layout and `docker save` archives, store snapshots and mount guards.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// These tests mount, mknod and chown: they must run as root, never pass silently without.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (mknod, chown, trusted xattrs, overlay mounts): run it as root"
        );
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    Plain,
    Gzip,
    Zstd,
}

pub fn compress(data: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::Plain => data.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// Builds a layer tar entry by entry. Names are written raw into the header, so tests can
/// produce the unsafe names the `tar` crate's own path setters refuse.
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
            mtime: 1_600_000_000,
        }
    }

    fn header(&self, kind: tar::EntryType, name: &str, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(0);
        let raw = &mut h.as_old_mut().name;
        assert!(name.len() < raw.len(), "test names fit the old header");
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h
    }

    fn append(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn mtime(&mut self, mtime: u64) -> &mut Self {
        self.mtime = mtime;
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = self.header(tar::EntryType::Directory, name, mode);
        self.append(h, b"")
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let h = self.header(tar::EntryType::Regular, name, mode);
        self.append(h, data)
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = self.header(tar::EntryType::Regular, name, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        self.append(h, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Symlink, name, 0o777);
        h.set_link_name_literal(target).unwrap();
        self.append(h, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Link, name, 0o644);
        h.set_link_name_literal(target).unwrap();
        self.append(h, b"")
    }

    pub fn device(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> &mut Self {
        let mut h = self.header(kind, name, mode);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.append(h, b"")
    }

    pub fn fifo(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = self.header(tar::EntryType::Fifo, name, mode);
        self.append(h, b"")
    }

    /// PAX records (e.g. `SCHILY.xattr.user.x`) for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// A layer: its uncompressed tar and how it is stored.
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub comp: Comp,
}

impl Layer {
    pub fn new(tar: Vec<u8>, comp: Comp) -> Self {
        Self { tar, comp }
    }
    pub fn blob(&self) -> Vec<u8> {
        compress(&self.tar, self.comp)
    }
    pub fn diff_id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.tar))
    }
    pub fn media_type(&self) -> &'static str {
        match self.comp {
            Comp::Plain => "application/vnd.oci.image.layer.v1.tar",
            Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// An image to put in an archive.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Value,
}

impl Image {
    pub fn new(layers: Vec<Layer>) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(Layer::diff_id).collect();
        let config = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
                "Labels": null,
                "Volumes": null,
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        Self { layers, config }
    }

    pub fn created(mut self, created: &str) -> Self {
        self.config["created"] = json!(created);
        self
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).unwrap()
    }

    /// The image id a store gives it: the config digest.
    pub fn id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.config_bytes()))
    }
}

/// An OCI image layout being assembled, file by file.
#[derive(Default, Clone)]
pub struct OciLayout {
    pub files: BTreeMap<String, Vec<u8>>,
    pub index: Vec<Value>,
}

/// What `OciLayout::add_image` wrote.
pub struct Added {
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
    pub descriptor: Value,
}

impl OciLayout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a blob; returns its descriptor fields (digest, size).
    pub fn blob(&mut self, data: Vec<u8>) -> (String, usize) {
        let hex = sha256_hex(&data);
        let size = data.len();
        self.files.insert(format!("blobs/sha256/{hex}"), data);
        (format!("sha256:{hex}"), size)
    }

    /// Stores an image's blobs and returns the manifest descriptor (not yet in the index).
    pub fn image_blobs(&mut self, img: &Image) -> Added {
        let (config, config_size) = self.blob(img.config_bytes());
        let mut layers = Vec::new();
        let mut layer_descs = Vec::new();
        for l in &img.layers {
            let (d, s) = self.blob(l.blob());
            layer_descs.push(json!({"mediaType": l.media_type(), "digest": d, "size": s}));
            layers.push(d);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
            "layers": layer_descs,
        });
        let (m, s) = self.blob(serde_json::to_vec(&manifest).unwrap());
        let descriptor = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": s});
        Added {
            manifest: m,
            config,
            layers,
            descriptor,
        }
    }

    /// Adds an image to index.json with the given annotations.
    pub fn add_image(&mut self, img: &Image, annotations: &[(&str, &str)]) -> Added {
        let added = self.image_blobs(img);
        let mut d = added.descriptor.clone();
        if !annotations.is_empty() {
            let a: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            d["annotations"] = Value::Object(a);
        }
        self.index.push(d);
        added
    }

    /// Adds an image named with `io.containerd.image.name` (and the tag as ref.name).
    pub fn add_named(&mut self, img: &Image, name: &str) -> Added {
        let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        self.add_image(
            img,
            &[
                ("io.containerd.image.name", name),
                ("org.opencontainers.image.ref.name", tag),
            ],
        )
    }

    /// The archive's entries (oci-layout, index.json, blobs).
    pub fn entries(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = self.files.clone();
        files.insert(
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        );
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.index,
        });
        files.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
        files
    }

    pub fn tar(&self) -> Vec<u8> {
        tar_of(&self.entries())
    }
}

/// A `docker save` archive (the pre-25 layout: `<id>/layer.tar`, `<config-hex>.json`).
pub fn docker_save(images: &[(Image, Vec<&str>)]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut manifest = Vec::new();
    for (img, tags) in images {
        let cfg = img.config_bytes();
        let cfg_name = format!("{}.json", sha256_hex(&cfg));
        files.insert(cfg_name.clone(), cfg);
        let mut layer_names = Vec::new();
        for l in &img.layers {
            let name = format!("{}/layer.tar", sha256_hex(l.diff_id().as_bytes()));
            files.insert(name.clone(), l.blob());
            layer_names.push(name);
        }
        manifest.push(json!({"Config": cfg_name, "RepoTags": tags, "Layers": layer_names}));
    }
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    );
    files
}

/// A plain tar of `entries` (regular files, with their parent directories).
pub fn tar_of(entries: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for name in entries.keys() {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_owned());
            p = d.parent();
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &d, &b""[..]).unwrap();
    }
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes `data` (compressed with `comp`) to `dir/name` and returns the path.
pub fn write_archive(dir: &Path, name: &str, data: &[u8], comp: Comp) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, compress(data, comp)).unwrap();
    p
}

/// Everything under `root`: type, mode, owner, size, content digest or link target, and
/// xattrs. Two equal snapshots mean the tree is byte-for-byte the same.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_owned();
        let content = if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            String::new()
        } else if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else if m.is_file() {
            sha256_hex(&fs::read(&p).unwrap())
        } else {
            format!("rdev {}", m.rdev())
        };
        let mut xattrs: Vec<String> = xattr::list(&p)
            .map(|l| l.map(|n| n.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        xattrs.sort();
        out.insert(
            rel,
            format!(
                "{:o} {}:{} {} {} {:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                content,
                xattrs
            ),
        );
    }
    out
}

/// Unmounts a rootfs when dropped, so a failing test leaves no mount behind.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = peapod_image::rootfs::unmount(&self.0);
    }
}

/// A fresh store in its own temp dir.
pub fn store() -> (tempfile::TempDir, peapod_image::ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = peapod_image::ImageStore::open(&dir.path().join("image")).unwrap();
    (dir, store)
}

/// A small base layer: /bin/sh, /etc/passwd.
pub fn base_layer(comp: Comp) -> Layer {
    let mut t = LayerTar::new();
    t.dir("bin/", 0o755)
        .file("bin/sh", b"#!fake shell\n", 0o755)
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    Layer::new(t.finish(), comp)
}
