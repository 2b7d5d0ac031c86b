//! Hostile and broken archives: each is refused with a clear error, the store is
//! byte-for-byte unchanged (no staging left, no blob, layer or state change) and nothing
//! is written outside the store. Runs as root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use peapod_image::{ImageStore, LoadError, UnpackError};
use serde_json::json;

/// A store that already holds one image, a directory outside it that hostile layers aim
/// at, and the store's snapshot.
struct Fixture {
    dir: tempfile::TempDir,
    store: ImageStore,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        let (dir, store) = store();
        let mut oci = OciLayout::new();
        oci.add_named(
            &Image::new(vec![base_layer(Comp::Gzip)]),
            "docker.io/library/good:1",
        );
        let archive = write_archive(dir.path(), "good.tar", &oci.tar(), Comp::Plain);
        store.load(&archive).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("passwd"), b"host passwd").unwrap();
        Self {
            dir,
            store,
            outside,
        }
    }

    /// Loads `archive_bytes` expecting failure; checks the store and `outside` are unchanged.
    fn refuse(&self, archive_bytes: &[u8]) -> LoadError {
        let archive = write_archive(self.dir.path(), "bad.tar", archive_bytes, Comp::Plain);
        let store_before = snapshot(self.store.root());
        let outside_before = snapshot(&self.outside);
        let err = self
            .store
            .load(&archive)
            .expect_err("hostile archive was loaded");
        assert_eq!(
            snapshot(self.store.root()),
            store_before,
            "store changed by a refused load: {err}"
        );
        assert_eq!(
            snapshot(&self.outside),
            outside_before,
            "written outside the store: {err}"
        );
        assert_eq!(self.store.list().unwrap().len(), 1);
        err
    }

    /// An archive whose only image has `layer` as its one layer.
    fn refuse_layer(&self, layer: Vec<u8>) -> (UnpackError, String) {
        let mut oci = OciLayout::new();
        oci.add_named(
            &Image::new(vec![Layer::new(layer, Comp::Gzip)]),
            "docker.io/library/evil:1",
        );
        match self.refuse(&oci.tar()) {
            LoadError::Layer { source, .. } => {
                let msg = source.to_string();
                (source, msg)
            }
            other => panic!("expected a layer error, got {other:?}"),
        }
    }

    fn outside_str(&self) -> &str {
        self.outside.to_str().unwrap()
    }
}

#[test]
fn parent_directory_traversal_is_refused() {
    let f = Fixture::new();
    let mut t = LayerTar::new();
    t.file("ok", b"fine", 0o644)
        .file("../outside/x", b"escape", 0o644);
    let (err, msg) = f.refuse_layer(t.finish());
    assert!(
        matches!(err, UnpackError::UnsafePath { ref entry, .. } if entry == "../outside/x"),
        "{msg}"
    );
    assert!(msg.contains("'..'"), "{msg}");

    let mut t = LayerTar::new();
    t.file("a/b/../../../x", b"escape", 0o644);
    f.refuse_layer(t.finish());
}

#[test]
fn absolute_entry_names_are_refused() {
    let f = Fixture::new();
    let name = format!("{}/abs", f.outside_str());
    let mut t = LayerTar::new();
    t.file(&name, b"escape", 0o644);
    let (err, msg) = f.refuse_layer(t.finish());
    assert!(
        matches!(err, UnpackError::UnsafePath { ref entry, reason } if *entry == name && reason == "absolute path"),
        "{msg}"
    );
    assert!(!f.outside.join("abs").exists());

    let mut t = LayerTar::new();
    t.file("/etc/peapod-image-test-should-not-exist", b"escape", 0o644);
    f.refuse_layer(t.finish());
    assert!(!Path::new("/etc/peapod-image-test-should-not-exist").exists());
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let f = Fixture::new();
    // evil -> <outside> (absolute), then evil/passwd.
    let mut t = LayerTar::new();
    t.symlink("evil", f.outside_str())
        .file("evil/passwd", b"pwned", 0o644);
    let (err, msg) = f.refuse_layer(t.finish());
    assert!(
        matches!(err, UnpackError::SymlinkInPath { ref entry, ref component } if entry == "evil/passwd" && component == "evil"),
        "{msg}"
    );
    assert_eq!(fs::read(f.outside.join("passwd")).unwrap(), b"host passwd");

    // a -> ../.. (relative escape), then a/x; and a directory entry through a symlink.
    let mut t = LayerTar::new();
    t.dir("d/", 0o755)
        .symlink("d/a", "../..")
        .file("d/a/x", b"pwned", 0o644);
    let (err, _) = f.refuse_layer(t.finish());
    assert!(matches!(err, UnpackError::SymlinkInPath { ref component, .. } if component == "d/a"));

    let mut t = LayerTar::new();
    t.symlink("s", "/").dir("s/newdir/", 0o755);
    f.refuse_layer(t.finish());

    // Whiteouts and opaque markers through a symlink are refused too.
    let mut t = LayerTar::new();
    t.symlink("w", f.outside_str())
        .file("w/.wh.passwd", b"", 0o644);
    f.refuse_layer(t.finish());
    let mut t = LayerTar::new();
    t.symlink("o", f.outside_str())
        .file("o/.wh..wh..opq", b"", 0o644);
    f.refuse_layer(t.finish());
    let mut t = LayerTar::new();
    t.file(".wh...", b"", 0o644);
    f.refuse_layer(t.finish());
}

#[test]
fn hardlink_escapes_are_refused() {
    let f = Fixture::new();
    let outside_passwd = format!("{}/passwd", f.outside_str());
    let cases: Vec<(String, &str)> = vec![
        (outside_passwd, "absolute target"),
        ("../outside/passwd".to_owned(), "'..'"),
        ("ok/../../outside/passwd".to_owned(), "'..'"),
        ("s/passwd".to_owned(), "through a symlink"),
        ("missing".to_owned(), "not in the layer"),
        ("dir".to_owned(), "is a directory"),
    ];
    for (target, want) in cases {
        let mut t = LayerTar::new();
        t.symlink("s", f.outside_str())
            .dir("dir/", 0o755)
            .hardlink("h", &target);
        let (err, msg) = f.refuse_layer(t.finish());
        assert!(
            matches!(err, UnpackError::HardlinkTarget { ref entry, .. } if entry == "h"),
            "{target}: {msg}"
        );
        assert!(msg.contains(want), "{target}: {msg}");
    }
    // The host file kept one link: no hardlink to it was made anywhere.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(f.outside.join("passwd")).unwrap().nlink(), 1);
}

#[test]
fn truncated_archives_and_layers_are_refused() {
    let f = Fixture::new();
    let mut big = LayerTar::new();
    big.file("big", &vec![7u8; 300_000], 0o644);
    let mut oci = OciLayout::new();
    oci.add_named(
        &Image::new(vec![Layer::new(big.finish(), Comp::Plain)]),
        "docker.io/library/t:1",
    );
    let full = oci.tar();
    for cut in [full.len() / 2, full.len() - 1024 - 700] {
        let err = f.refuse(&full[..cut]);
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                LoadError::Archive { .. } | LoadError::MissingBlob { .. }
            ),
            "cut at {cut}: {msg}"
        );
    }

    // A gzip layer cut short (its descriptor and diff_id describe the cut bytes' source).
    let layer = base_layer(Comp::Gzip);
    let blob = layer.blob();
    let mut oci = OciLayout::new();
    let img = Image::new(vec![layer.clone()]);
    let (cfg, cfg_size) = oci.blob(img.config_bytes());
    let (l, l_size) = oci.blob(blob[..blob.len() - 20].to_vec());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": l_size}]});
    let (m, m_size) = oci.blob(serde_json::to_vec(&manifest).unwrap());
    oci.index.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": m_size}));
    let err = f.refuse(&oci.tar());
    assert!(
        matches!(
            err,
            LoadError::Layer {
                source: UnpackError::Read(_),
                ..
            } | LoadError::DiffIdMismatch { .. }
        ),
        "{err}"
    );
}

#[test]
fn layer_config_and_manifest_digest_mismatches_are_refused() {
    let f = Fixture::new();
    let img = Image::new(vec![base_layer(Comp::Gzip)]);

    // Layer blob replaced by other content under the same name.
    let mut oci = OciLayout::new();
    let added = oci.add_named(&img, "docker.io/library/m:1");
    let mut entries = oci.entries();
    let name = format!("blobs/sha256/{}", &added.layers[0][7..]);
    entries.insert(name.clone(), base_layer(Comp::Zstd).blob());
    let err = f.refuse(&tar_of(&entries));
    assert!(
        matches!(err, LoadError::DigestMismatch { ref what, .. } if what.contains("layer")),
        "{err}"
    );
    assert!(err.to_string().contains(&added.layers[0]), "{err}");

    // Config replaced.
    let mut entries = oci.entries();
    let mut other = img.clone();
    other.config["author"] = json!("mallory");
    entries.insert(
        format!("blobs/sha256/{}", &added.config[7..]),
        other.config_bytes(),
    );
    let err = f.refuse(&tar_of(&entries));
    assert!(
        matches!(err, LoadError::DigestMismatch { ref what, .. } if what.contains("config")),
        "{err}"
    );

    // Manifest replaced.
    let mut entries = oci.entries();
    entries.insert(
        format!("blobs/sha256/{}", &added.manifest[7..]),
        b"{\"schemaVersion\":2}".to_vec(),
    );
    let err = f.refuse(&tar_of(&entries));
    assert!(
        matches!(err, LoadError::DigestMismatch { ref what, .. } if what.contains("manifest")),
        "{err}"
    );

    // Right content, wrong size in the descriptor.
    let mut oci2 = oci.clone();
    oci2.index[0]["size"] = json!(added.descriptor["size"].as_u64().unwrap() + 1);
    let err = f.refuse(&oci2.tar());
    assert!(matches!(err, LoadError::SizeMismatch { .. }), "{err}");

    // A blob the manifest names is missing.
    let mut entries = oci.entries();
    entries.remove(&name);
    let err = f.refuse(&tar_of(&entries));
    assert!(matches!(err, LoadError::MissingBlob { .. }), "{err}");
}

#[test]
fn diff_id_mismatch_is_refused_and_leaves_no_layer() {
    let f = Fixture::new();
    let mut t = LayerTar::new();
    t.file("new-file", b"content", 0o644);
    let layer = Layer::new(t.finish(), Comp::Gzip);
    let mut img = Image::new(vec![layer]);
    img.config["rootfs"]["diff_ids"] = json!([format!("sha256:{}", "ab".repeat(32))]);
    let mut oci = OciLayout::new();
    oci.add_named(&img, "docker.io/library/d:1");
    let err = f.refuse(&oci.tar());
    assert!(
        matches!(err, LoadError::DiffIdMismatch { ref expected, .. } if *expected == "ab".repeat(32)),
        "{err}"
    );

    // The same in a docker save archive, where only diff_ids vouch for layers.
    let files = docker_save(&[(img.clone(), vec!["d:2"])]);
    let err = f.refuse(&tar_of(&files));
    assert!(matches!(err, LoadError::DiffIdMismatch { .. }), "{err}");

    // A layer whose diff_id names a layer already in the store but whose content differs.
    let existing = base_layer(Comp::Gzip).diff_id();
    let mut img = Image::new(vec![Layer::new(b"not the same tar".repeat(64), Comp::Gzip)]);
    img.config["rootfs"]["diff_ids"] = json!([existing]);
    let files = docker_save(&[(img, vec!["d:3"])]);
    let err = f.refuse(&tar_of(&files));
    assert!(matches!(err, LoadError::DiffIdMismatch { .. }), "{err}");
}

#[test]
fn malformed_archives_are_refused_clearly() {
    let f = Fixture::new();
    let err = f.refuse(b"this is not a tar archive at all, just some bytes............");
    assert!(
        matches!(
            err,
            LoadError::Archive { .. } | LoadError::NotAnImageArchive { .. }
        ),
        "{err}"
    );

    let mut entries = std::collections::BTreeMap::new();
    entries.insert("hello.txt".to_owned(), b"hi".to_vec());
    let err = f.refuse(&tar_of(&entries));
    assert!(matches!(err, LoadError::NotAnImageArchive { .. }), "{err}");
    assert!(err.to_string().contains("not an image archive"), "{err}");

    let mut entries = std::collections::BTreeMap::new();
    entries.insert("index.json".to_owned(), b"{not json".to_vec());
    let err = f.refuse(&tar_of(&entries));
    assert!(
        matches!(err, LoadError::InvalidJson { ref what, .. } if what == "index.json"),
        "{err}"
    );

    let mut oci = OciLayout::new();
    oci.add_named(&Image::new(vec![]), "docker.io/library/x:1");
    let mut entries = oci.entries();
    entries.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"9.9.9"}"#.to_vec(),
    );
    let err = f.refuse(&tar_of(&entries));
    assert!(matches!(err, LoadError::UnsupportedLayout { .. }), "{err}");

    // Bad names in docker save RepoTags.
    let files = docker_save(&[(
        Image::new(vec![base_layer(Comp::Plain)]),
        vec!["UPPER:case"],
    )]);
    let err = f.refuse(&tar_of(&files));
    assert!(matches!(err, LoadError::InvalidReference(_)), "{err}");

    // A descriptor with an unsupported digest algorithm.
    let mut oci = OciLayout::new();
    oci.index.push(
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha512:{}", "a".repeat(128)), "size": 2}),
    );
    let err = f.refuse(&oci.tar());
    assert!(matches!(err, LoadError::UnsupportedDigest { .. }), "{err}");

    // An xz-compressed archive is named as such.
    let err = f.refuse(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0, 1, 2, 3]);
    assert!(
        matches!(err, LoadError::UnsupportedCompression { format: "xz", .. }),
        "{err}"
    );

    // A good image followed by a bad one: all or nothing.
    let mut oci = OciLayout::new();
    let mut ok = LayerTar::new();
    ok.file("fresh", b"new content", 0o644);
    oci.add_named(
        &Image::new(vec![Layer::new(ok.finish(), Comp::Gzip)]),
        "docker.io/library/first:1",
    );
    let mut bad = LayerTar::new();
    bad.file("../escape", b"x", 0o644);
    oci.add_named(
        &Image::new(vec![Layer::new(bad.finish(), Comp::Gzip)]),
        "docker.io/library/second:1",
    );
    let err = f.refuse(&oci.tar());
    assert!(matches!(err, LoadError::Layer { .. }), "{err}");
}
