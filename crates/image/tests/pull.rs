//! Pulls from a real registry on loopback: Debian's `docker-registry`, started per test with
//! its own storage, images pushed with `skopeo` from the busybox archive that
//! `scripts/build-busybox-image.sh` builds. Runs as root (layers are unpacked with their
//! owners and devices); fails, never skips, without root or the tools.

mod common;
mod registry_support;

use std::fs;
use std::path::Path;

use common::*;
use peapod_image::{ImageStore, Platform, PullError, PullEvent, PullOptions, PulledImage};
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
    assert!(pulled.downloaded);
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
    assert!(!again.downloaded);
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

#[test]
fn platform_override_parses() {
    assert_eq!(
        Platform::parse("linux/arm64").unwrap().to_string(),
        "linux/arm64/v8"
    );
}
