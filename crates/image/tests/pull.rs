//! Pulls from a real registry on loopback: Debian's `docker-registry`, started per test with
//! its own storage, images pushed with `skopeo` from the busybox archive that
//! `scripts/build-busybox-image.sh` builds. Runs as root (layers are unpacked with their
//! owners and devices); fails, never skips, without root or the tools.

mod common;
mod registry_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;
use peapod_image::{
    load_credentials, save_credentials, ImageStore, Platform, PullError, PullEvent, PullOptions,
    PulledImage,
};
use registry_support::*;

fn pull(
    store: &ImageStore,
    reference: &str,
    opts: &PullOptions,
) -> Result<(PulledImage, Vec<PullEvent>), PullError> {
    let mut events = Vec::new();
    let pulled = store.pull(reference, opts, &mut |e| events.push(e))?;
    Ok((pulled, events))
}

/// The config digest (image id) and the layer digests of an OCI archive's only image.
fn archive_ids(archive: &Path) -> (String, Vec<String>) {
    let (dir, store) = common::store();
    let loaded = store.load(archive).unwrap();
    let rec = store.resolve(&loaded[0].id).unwrap();
    drop(dir);
    (rec.id, rec.diff_ids)
}

fn assert_busybox_layer(store: &ImageStore, reference: &str) {
    let rec = store.resolve(reference).unwrap();
    let layer = &store.layer_dirs(&rec)[0];
    assert_eq!(
        fs::read(layer.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    store.config(&rec).unwrap();
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn pulls_by_tag_oci_and_docker_schema2_then_by_digest() {
    require_root();
    let reg = Registry::start(Auth::None);
    let archive = busybox_archive();
    reg.push(archive, "tools/busybox:oci", "oci", None);
    reg.push(archive, "tools/busybox:v2s2", "v2s2", None);
    let (id, diff_ids) = archive_ids(archive);
    let (_dir, store) = store();
    let opts = PullOptions::default();

    let name = format!("{}/tools/busybox:oci", reg.addr());
    let (pulled, events) = pull(&store, &name, &opts).unwrap();
    assert_eq!(pulled.id, id);
    assert_eq!(pulled.tagged.as_deref(), Some(name.as_str()));
    assert!(!pulled.up_to_date);
    let (_, oci_digest) = reg.manifest("tools/busybox", "oci");
    assert_eq!(pulled.manifest_digest, oci_digest);
    assert_eq!(
        pulled.repo_digest,
        format!("{}/tools/busybox@{oci_digest}", reg.addr())
    );
    let rec = store.resolve(&name).unwrap();
    assert_eq!(rec.diff_ids, diff_ids);
    assert_eq!(rec.repo_tags, vec![name.clone()]);
    assert_eq!(rec.repo_digests, vec![pulled.repo_digest.clone()]);
    assert_busybox_layer(&store, &name);
    let layer = match &events[0] {
        PullEvent::Resolved { digest, layers } => {
            assert_eq!(*digest, oci_digest);
            assert_eq!(layers.len(), 1);
            layers[0].digest.clone()
        }
        other => panic!("first event {other:?}"),
    };
    assert!(events.iter().any(|e| matches!(e,
        PullEvent::LayerProgress { digest, done, total } if *digest == layer && done == total)));
    assert!(events.contains(&PullEvent::LayerDone {
        digest: layer.clone()
    }));
    assert_eq!(count(&store.root().join("ingest")), 0, "ingest/ emptied");

    // Docker schema 2: the same image id (same config), another manifest.
    let v2 = format!("{}/tools/busybox:v2s2", reg.addr());
    let (pulled2, events) = pull(&store, &v2, &opts).unwrap();
    assert_eq!(pulled2.id, id);
    assert_ne!(pulled2.manifest_digest, oci_digest);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, PullEvent::LayerDownloading { .. })),
        "the layer is not downloaded again: {events:?}"
    );
    let rec = store.resolve(&v2).unwrap();
    assert_eq!(rec.repo_tags.len(), 2);

    // Up to date: nothing downloaded.
    let (again, events) = pull(&store, &name, &opts).unwrap();
    assert!(again.up_to_date);
    assert!(events.contains(&PullEvent::LayerExists { digest: layer }));

    // By digest, into a fresh store: untagged, found by its digest reference.
    let (_dir2, store2) = common::store();
    let by_digest = format!("{}/tools/busybox@{oci_digest}", reg.addr());
    let (pulled, _) = pull(&store2, &by_digest, &opts).unwrap();
    assert_eq!(pulled.id, id);
    assert_eq!(pulled.tagged, None);
    let rec = store2.resolve(&by_digest).unwrap();
    assert!(rec.repo_tags.is_empty());
    assert_busybox_layer(&store2, &by_digest);

    // Unknown tags and repositories: NotFound with the registry's message.
    for missing in ["tools/busybox:nope", "tools/nothing:latest"] {
        let err = pull(&store2, &format!("{}/{missing}", reg.addr()), &opts).unwrap_err();
        assert!(
            matches!(err, PullError::NotFound { .. }) && err.is_not_found(),
            "{missing}: {err:?}"
        );
        assert!(err.to_string().contains("unknown"), "{err}");
    }
    let missing_digest = format!("{}/tools/busybox@sha256:{}", reg.addr(), "0".repeat(64));
    assert!(matches!(
        pull(&store2, &missing_digest, &opts).unwrap_err(),
        PullError::NotFound { .. }
    ));
}

/// An OCI archive of `img` alone, written under `dir`.
fn image_archive(dir: &Path, name: &str, img: &Image) -> PathBuf {
    let mut oci = OciLayout::new();
    oci.add_image(img, &[]);
    let p = dir.join(format!("{name}.tar"));
    fs::write(&p, oci.tar()).unwrap();
    p
}

/// A second small layer, for images that share the base layer.
fn extra_layer() -> Layer {
    let mut t = LayerTar::new();
    t.dir("srv/", 0o755)
        .file("srv/extra", b"extra layer\n", 0o644);
    Layer::new(t.finish(), Comp::Gzip)
}

fn other_arch() -> &'static str {
    if Platform::host().architecture == "amd64" {
        "arm64"
    } else {
        "amd64"
    }
}

#[test]
fn multi_arch_index_and_manifest_list_pick_the_platform() {
    require_root();
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let archive = busybox_archive();
    let (busybox_id, _) = archive_ids(archive);
    let mut other = Image::new(vec![base_layer(Comp::Gzip)]);
    other.config["architecture"] = json!(other_arch());
    let other_archive = image_archive(tmp.path(), "other", &other);
    reg.push(archive, "multi/busybox:host", "oci", None);
    reg.push(&other_archive, "multi/busybox:other", "oci", None);
    reg.push(archive, "multi/busybox:host-v2s2", "v2s2", None);
    reg.push(&other_archive, "multi/busybox:other-v2s2", "v2s2", None);

    let host = Platform::host();
    let entry = |tag: &str, mt: &str, platform: serde_json::Value| {
        let (data, digest) = reg.manifest("multi/busybox", tag);
        json!({"mediaType": mt, "digest": digest, "size": data.len(), "platform": platform})
    };
    let host_platform = match &host.variant {
        Some(v) => json!({"os": "linux", "architecture": host.architecture, "variant": v}),
        None => json!({"os": "linux", "architecture": host.architecture}),
    };
    let mut entries = vec![
        entry(
            "other",
            OCI_MANIFEST,
            json!({"os": "linux", "architecture": other_arch()}),
        ),
        entry(
            "other",
            OCI_MANIFEST,
            json!({"os": "unknown", "architecture": "unknown"}),
        ),
    ];
    if host.architecture == "amd64" {
        // A variant this CPU baseline cannot run comes first: it must be passed over.
        entries.push(entry(
            "other",
            OCI_MANIFEST,
            json!({"os": "linux", "architecture": "amd64", "variant": "v4"}),
        ));
    }
    entries.push(entry("host", OCI_MANIFEST, host_platform.clone()));
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let index_bytes = serde_json::to_vec(&index).unwrap();
    reg.put_manifest("multi/busybox", "latest", OCI_INDEX, &index_bytes);
    let list_mt = "application/vnd.docker.distribution.manifest.list.v2+json";
    let list = json!({"schemaVersion": 2, "mediaType": list_mt, "manifests": [
        entry("other-v2s2", DOCKER_MANIFEST, json!({"os": "linux", "architecture": other_arch()})),
        entry("host-v2s2", DOCKER_MANIFEST, host_platform),
    ]});
    reg.put_manifest(
        "multi/busybox",
        "list",
        list_mt,
        &serde_json::to_vec(&list).unwrap(),
    );

    let (_dir, store) = store();
    let opts = PullOptions::default();
    let name = format!("{}/multi/busybox:latest", reg.addr());
    let (pulled, _) = pull(&store, &name, &opts).unwrap();
    assert_eq!(pulled.id, busybox_id, "the host's image");
    let (_, index_digest) = reg.manifest("multi/busybox", "latest");
    assert_eq!(
        pulled.repo_digest,
        format!("{}/multi/busybox@{index_digest}", reg.addr())
    );
    assert_ne!(pulled.manifest_digest, index_digest);
    assert_busybox_layer(&store, &name);
    // The index digest finds the image it resolved to.
    let by_index = format!("{}/multi/busybox@{index_digest}", reg.addr());
    assert_eq!(store.resolve(&by_index).unwrap().id, busybox_id);

    let (pulled, _) = pull(&store, &format!("{}/multi/busybox:list", reg.addr()), &opts).unwrap();
    assert_eq!(pulled.id, busybox_id, "Docker manifest lists too");

    // Another platform on request, by tag and by the index's digest.
    let (_dir2, store2) = common::store();
    let other_opts = PullOptions {
        platform: Some(Platform::parse(&format!("linux/{}", other_arch())).unwrap()),
        ..PullOptions::default()
    };
    let (pulled, _) = pull(&store2, &by_index, &other_opts).unwrap();
    assert_eq!(pulled.id, other.id());
    assert_eq!(store2.resolve(&by_index).unwrap().id, other.id());

    // No image for the platform: the error lists what the index has.
    let s390x = PullOptions {
        platform: Some(Platform::parse("linux/s390x").unwrap()),
        ..PullOptions::default()
    };
    let err = pull(&store2, &name, &s390x).unwrap_err();
    assert!(
        matches!(err, PullError::NoMatchingPlatform { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(other_arch()), "{err}");
}

#[test]
fn basic_auth_with_htpasswd_and_credentials_files() {
    require_root();
    let reg = Registry::start(Auth::Basic("peapod", "s3cret"));
    reg.push(
        busybox_archive(),
        "private/busybox:1",
        "oci",
        Some("peapod:s3cret"),
    );
    let (_dir, store) = store();
    let name = format!("{}/private/busybox:1", reg.addr());

    let err = pull(&store, &name, &PullOptions::default()).unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("peapod login"), "{err}");

    let mut wrong = PullOptions::default();
    wrong.credentials.insert(&reg.addr(), "peapod", "wrong");
    let err = pull(&store, &name, &wrong).unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");

    // `peapod login` writes the file; pulls read it.
    let auth = tempfile::tempdir().unwrap();
    let config = auth.path().join("docker/config.json");
    save_credentials(
        &config,
        &format!("http://{}", reg.addr()),
        "peapod",
        "s3cret",
    )
    .unwrap();
    let creds = load_credentials(&[auth.path().join("missing.json"), config]);
    assert!(creds.errors.is_empty());
    let opts = PullOptions {
        credentials: creds,
        ..PullOptions::default()
    };
    let (pulled, _) = pull(&store, &name, &opts).unwrap();
    assert_busybox_layer(&store, &name);
    assert!(!pulled.up_to_date);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn token_flow_anonymous_and_with_credentials() {
    require_root();
    let tokens = TokenServer::start("peapod", "t0ken");
    let reg = Registry::start(Auth::Token(std::sync::Arc::clone(&tokens)));
    let archive = busybox_archive();
    reg.push(archive, "public/busybox:1", "oci", Some("peapod:t0ken"));
    reg.push(archive, "private/busybox:1", "oci", Some("peapod:t0ken"));
    let (_dir, store) = store();

    // Anonymous token, enough for public repositories.
    tokens.requests.lock().unwrap().clear();
    let public = format!("{}/public/busybox:1", reg.addr());
    pull(&store, &public, &PullOptions::default()).unwrap();
    assert_busybox_layer(&store, &public);
    {
        let requests = tokens.requests.lock().unwrap();
        assert_eq!(
            requests.first(),
            Some(&(
                "repository:public/busybox:pull".to_owned(),
                TokenServer::SERVICE.to_owned(),
                String::new()
            )),
            "{requests:?}"
        );
        assert_eq!(
            requests.len(),
            1,
            "one token serves the whole pull: {requests:?}"
        );
    }

    // Anonymous tokens grant nothing on private ones; credentials do.
    let private = format!("{}/private/busybox:1", reg.addr());
    let err = pull(&store, &private, &PullOptions::default()).unwrap_err();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    let mut opts = PullOptions::default();
    opts.credentials.insert(&reg.addr(), "peapod", "wrong");
    let err = pull(&store, &private, &opts).unwrap_err();
    assert!(
        matches!(&err, PullError::Unauthorized { message, .. } if message.contains("bad user or password")),
        "the token server's error is shown: {err:?}"
    );
    opts.credentials.insert(&reg.addr(), "peapod", "t0ken");
    pull(&store, &private, &opts).unwrap();
    assert_busybox_layer(&store, &private);
    assert!(tokens
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|(scope, _, user)| scope == "repository:private/busybox:pull" && user == "peapod"));
    tokens.stop();
}

#[test]
fn corrupt_blob_is_refused_and_nothing_is_committed() {
    require_root();
    let reg = Registry::start(Auth::None);
    reg.push(busybox_archive(), "corrupt/busybox:1", "oci", None);
    let (manifest, _) = reg.manifest("corrupt/busybox", "1");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let file = reg.blob_file(&layer);
    let original = fs::read(&file).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&file, &bad).unwrap();

    let (_dir, store) = store();
    let name = format!("{}/corrupt/busybox:1", reg.addr());
    let err = pull(&store, &name, &PullOptions::default()).unwrap_err();
    match &err {
        PullError::DigestMismatch { expected, what, .. } => {
            assert_eq!(*expected, layer);
            assert_eq!(what, "layer");
        }
        other => panic!("want a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&layer), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&store.root().join("blobs/sha256")), 0);
    assert_eq!(count(&store.root().join("layers")), 0);
    let hex = layer.strip_prefix("sha256:").unwrap();
    for leftover in [
        hex.to_owned(),
        format!("{hex}.partial"),
        format!("{hex}.lock"),
    ] {
        assert!(
            !store.root().join("ingest").join(&leftover).exists(),
            "{leftover} left in ingest/"
        );
    }

    // The registry fixed, the same store pulls it.
    fs::write(&file, &original).unwrap();
    pull(&store, &name, &PullOptions::default()).unwrap();
    assert_busybox_layer(&store, &name);
}

/// Not a test of its own: the child process of the kill and concurrency tests. Pulls
/// `PEAPOD_TEST_PULL` into the store at `PEAPOD_TEST_STORE` when those are set, printing
/// each event on a line of its own; does nothing otherwise.
#[test]
fn child_process_pull() {
    let (Ok(root), Ok(reference)) = (
        std::env::var("PEAPOD_TEST_STORE"),
        std::env::var("PEAPOD_TEST_PULL"),
    ) else {
        return;
    };
    let store = ImageStore::open(Path::new(&root)).unwrap();
    store
        .pull(&reference, &PullOptions::default(), &mut |e| {
            println!("EVENT {e:?}")
        })
        .unwrap();
}

fn spawn_pull(store: &ImageStore, reference: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_pull",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("PEAPOD_TEST_STORE", store.root())
        .env("PEAPOD_TEST_PULL", reference)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn busybox_layer_digest(reg: &Registry, name: &str, tag: &str) -> (String, u64) {
    let (manifest, _) = reg.manifest(name, tag);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    (
        manifest["layers"][0]["digest"].as_str().unwrap().to_owned(),
        manifest["layers"][0]["size"].as_u64().unwrap(),
    )
}

#[test]
fn pull_killed_mid_download_leaves_nothing_and_resumes() {
    require_root();
    let reg = Registry::start(Auth::None);
    reg.push(busybox_archive(), "slow/busybox:1", "oci", None);
    let (layer, size) = busybox_layer_digest(&reg, "slow/busybox", "1");
    let proxy = ThrottlingProxy::start(reg.port, (size / 8).max(20_000));
    let (_dir, store) = store();
    let name = format!("{}/slow/busybox:1", proxy.addr());
    let partial = store.root().join("ingest").join(format!(
        "{}.partial",
        layer.strip_prefix("sha256:").unwrap()
    ));

    let mut child = spawn_pull(&store, &name);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > size / 4 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the download did not progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = ImageStore::open(store.root()).unwrap();
    assert!(store.list().unwrap().is_empty(), "nothing visible");
    assert_eq!(count(&store.root().join("blobs/sha256")), 0);
    assert_eq!(count(&store.root().join("layers")), 0);
    let left = fs::metadata(&partial).unwrap().len();
    assert!(
        left > 0 && left < size,
        "a partial download of {left} bytes"
    );

    // The retry resumes where the killed pull stopped.
    proxy.rate.store(0, std::sync::atomic::Ordering::Relaxed);
    let (pulled, events) = pull(&store, &name, &PullOptions::default()).unwrap();
    assert!(!pulled.up_to_date);
    let resumed = events.iter().find_map(|e| match e {
        PullEvent::LayerDownloading { digest, offset, .. } if *digest == layer => Some(*offset),
        _ => None,
    });
    assert!(
        resumed.is_some_and(|o| o >= left.min(size / 4)),
        "resumed at {resumed:?}, {left} bytes were there"
    );
    assert_busybox_layer(&store, &name);
    assert_eq!(count(&store.root().join("ingest")), 0);
}

#[test]
fn shared_layers_are_pulled_once_also_by_concurrent_processes() {
    require_root();
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let a = Image::new(vec![base_layer(Comp::Gzip)]);
    let b = Image::new(vec![base_layer(Comp::Gzip), extra_layer()]);
    reg.push(
        &image_archive(tmp.path(), "a", &a),
        "shared/a:1",
        "oci",
        None,
    );
    reg.push(
        &image_archive(tmp.path(), "b", &b),
        "shared/b:1",
        "oci",
        None,
    );
    let base_digest = format!("sha256:{}", sha256_hex(&base_layer(Comp::Gzip).blob()));

    let (_dir, store) = store();
    let opts = PullOptions::default();
    let (pa, _) = pull(&store, &format!("{}/shared/a:1", reg.addr()), &opts).unwrap();
    assert_eq!(pa.id, a.id());
    let (pb, events) = pull(&store, &format!("{}/shared/b:1", reg.addr()), &opts).unwrap();
    assert_eq!(pb.id, b.id());
    assert!(events.contains(&PullEvent::LayerExists {
        digest: base_digest.clone()
    }));
    let downloads: Vec<&PullEvent> = events
        .iter()
        .filter(|e| matches!(e, PullEvent::LayerDownloading { .. }))
        .collect();
    assert_eq!(downloads.len(), 1, "only the extra layer: {downloads:?}");
    assert_eq!(count(&store.root().join("layers")), 2);
    let rec = store.resolve(&pb.id).unwrap();
    assert_eq!(
        store.layer_dirs(&rec)[0],
        store.layer_dirs(&store.resolve(&pa.id).unwrap())[0]
    );
    assert_eq!(
        fs::read(store.layer_dirs(&rec)[1].join("srv/extra")).unwrap(),
        b"extra layer\n"
    );

    // Two processes pulling the same image into one store at once: one downloads, the
    // other waits for it; both succeed and the store is whole.
    reg.push(busybox_archive(), "shared/busybox:1", "oci", None);
    let (layer, size) = busybox_layer_digest(&reg, "shared/busybox", "1");
    let proxy = ThrottlingProxy::start(reg.port, (size / 4).max(20_000));
    let name = format!("{}/shared/busybox:1", proxy.addr());
    let (_dir2, store2) = common::store();
    let children = [spawn_pull(&store2, &name), spawn_pull(&store2, &name)];
    let mut downloading = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a concurrent pull failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        downloading += stdout
            .lines()
            .filter(|l| l.starts_with("EVENT LayerDownloading") && l.contains(&layer))
            .count();
    }
    assert_eq!(downloading, 1, "the layer was downloaded once");
    let store2 = ImageStore::open(store2.root()).unwrap();
    assert_eq!(store2.list().unwrap().len(), 1);
    assert_busybox_layer(&store2, &name);
    assert_eq!(count(&store2.root().join("layers")), 1);
    assert_eq!(count(&store2.root().join("ingest")), 0);
}

#[test]
fn mirrors_are_tried_first_and_fall_through() {
    require_root();
    let reg = Registry::start(Auth::None);
    reg.push(busybox_archive(), "mirrored/busybox:1", "oci", None);
    let dead = free_port();
    let mut opts = PullOptions::default();
    // The registry's name never resolves: everything must come from the mirrors.
    opts.mirrors.insert(
        "registry.example.invalid".into(),
        vec![
            format!("http://127.0.0.1:{dead}"),
            format!("http://{}", reg.addr()),
        ],
    );
    let (_dir, store) = store();
    let name = "registry.example.invalid/mirrored/busybox:1";
    let (pulled, _) = pull(&store, name, &opts).unwrap();
    assert_eq!(pulled.tagged.as_deref(), Some(name));
    assert_busybox_layer(&store, name);
}

#[test]
fn prune_keeps_images_in_use_and_clears_leftover_downloads() {
    require_root();
    let reg = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let b = Image::new(vec![base_layer(Comp::Gzip), extra_layer()]);
    reg.push(busybox_archive(), "p/busybox:1", "oci", None);
    reg.push(&image_archive(tmp.path(), "b", &b), "p/b:1", "oci", None);
    let (_dir, store) = store();
    let opts = PullOptions::default();
    let busybox = format!("{}/p/busybox:1", reg.addr());
    let (pa, _) = pull(&store, &busybox, &opts).unwrap();
    let (pb, _) = pull(&store, &format!("{}/p/b:1", reg.addr()), &opts).unwrap();
    assert_eq!(count(&store.root().join("layers")), 3);

    // Nothing dangling: nothing to remove.
    let report = store.prune(&[], false).unwrap();
    assert!(report.images.is_empty(), "{report:?}");
    assert_eq!(store.list().unwrap().len(), 2);

    // All unused images: b goes, busybox (in use) stays.
    let in_use = vec![pa.id.clone()];
    let report = store.prune(&in_use, true).unwrap();
    assert_eq!(report.images, vec![pb.id.clone()]);
    assert_eq!(report.untagged, vec![format!("{}/p/b:1", reg.addr())]);
    assert_eq!(report.layers.len(), 2, "b's two layers");
    assert!(report.reclaimed_bytes > 0);
    assert_eq!(store.list().unwrap().len(), 1);
    assert_busybox_layer(&store, &busybox);
    assert_eq!(
        count(&store.root().join("blobs/sha256")),
        3,
        "busybox's blobs"
    );

    // Untagged but in use: kept; once unused, dangling and removed with its content.
    store.remove(&busybox, &in_use, true).unwrap();
    let report = store.prune(&in_use, false).unwrap();
    assert!(report.images.is_empty());
    assert_eq!(store.layer_dirs(&store.resolve(&pa.id).unwrap()).len(), 1);

    // Leftover downloads go too, unless a pull runs (it holds ingest.lock shared).
    let leftover = store.root().join("ingest/0123.partial");
    fs::write(&leftover, b"partial bytes").unwrap();
    let lock = fs::File::open(store.root().join("ingest.lock")).unwrap();
    let shared = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockShared).unwrap();
    let report = store.prune(&[], false).unwrap();
    assert!(report.pulls_in_progress);
    assert!(leftover.exists());
    assert_eq!(report.images, vec![pa.id.clone()]);
    drop(shared);
    let report = store.prune(&[], false).unwrap();
    assert!(!report.pulls_in_progress);
    assert!(!leftover.exists());
    assert!(report.reclaimed_bytes >= 13);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&store.root().join("blobs/sha256")), 0);
    assert_eq!(count(&store.root().join("layers")), 0);
}

#[test]
fn platform_strings_parse() {
    assert_eq!(
        Platform::parse("linux/arm64").unwrap().to_string(),
        "linux/arm64/v8"
    );
}
