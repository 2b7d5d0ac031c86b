//! Loading archives: OCI layouts and `docker save` tars, compression, multi-image and
//! multi-platform archives, names, re-loads; then list, resolve, remove and garbage
//! collection. Runs as root.

mod common;

use std::fs;

use common::*;
use peapod_image::{ImageStore, RemoveError, ResolveError};
use serde_json::json;

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn layer_count(store: &ImageStore) -> usize {
    fs::read_dir(store.root().join("layers")).unwrap().count()
}

#[test]
fn loads_oci_layout_named_by_containerd_annotation() {
    require_root();
    let (dir, store) = store();
    let img = Image::new(vec![base_layer(Comp::Gzip)]);
    let mut oci = OciLayout::new();
    let added = oci.add_named(&img, BUSYBOX);
    let archive = write_archive(dir.path(), "a.tar", &oci.tar(), Comp::Plain);

    let loaded = store.load(&archive).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, img.id());
    assert_eq!(loaded[0].references, vec![BUSYBOX]);

    let rec = store.resolve("busybox").unwrap();
    assert_eq!(rec.id, img.id());
    assert_eq!(rec.repo_tags, vec![BUSYBOX]);
    assert_eq!(rec.manifest_digest, added.manifest);
    assert_eq!(rec.diff_ids, vec![img.layers[0].diff_id()]);
    assert_eq!(rec.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    let want_size = (b"#!fake shell\n".len() + b"root:x:0:0:root:/root:/bin/sh\n".len()) as u64;
    assert_eq!(
        rec.size, want_size,
        "size is the unpacked regular-file bytes"
    );

    // Blobs committed by digest, layer unpacked by diffID, staging gone.
    for d in [&added.manifest, &added.config, &added.layers[0]] {
        let p = store
            .root()
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap());
        assert!(p.is_file(), "{}", p.display());
    }
    let dirs = store.layer_dirs(&rec);
    assert_eq!(dirs.len(), 1);
    assert_eq!(fs::read(dirs[0].join("bin/sh")).unwrap(), b"#!fake shell\n");
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);

    let cfg = store.config(&rec).unwrap();
    assert_eq!(
        cfg.config().as_ref().unwrap().cmd().as_ref().unwrap(),
        &vec!["sh".to_owned()]
    );
}

#[test]
fn loads_docker_save_archive_with_several_tags_and_shared_layer_link() {
    require_root();
    let (dir, store) = store();
    let base = base_layer(Comp::Plain);
    let mut app = LayerTar::new();
    app.dir("app/", 0o755).file("app/run", b"run", 0o755);
    let app = Layer::new(app.finish(), Comp::Gzip);
    let img1 = Image::new(vec![base.clone()]);
    let mut img2 = Image::new(vec![base.clone(), app]).created("2024-05-01T00:00:00.123456789Z");
    // What a real `docker save` config carries besides the OCI fields.
    img2.config["docker_version"] = json!("24.0.7");
    img2.config["container"] = json!("3f4e");
    img2.config["container_config"] = json!({"Hostname": "", "Cmd": null, "Image": ""});
    img2.config["config"] = json!({
        "Hostname": "", "User": "", "AttachStdin": false, "ExposedPorts": {"80/tcp": {}},
        "Tty": false, "Env": ["PATH=/bin"], "Cmd": null, "Entrypoint": ["/app/run"], "Image": "sha256:00",
        "Volumes": {"/data": {}}, "WorkingDir": "/app", "OnBuild": null, "Labels": {"maintainer": "me"},
    });
    img2.config["history"] = json!([
        {"created": "2024-05-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file"},
        {"created": "2024-05-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) EXPOSE 80", "empty_layer": true},
        {"created": "2024-05-01T00:00:00Z", "created_by": "COPY app"},
    ]);
    let files = docker_save(&[
        (img1.clone(), vec!["busybox:latest", "foo/bar:1"]),
        (img2.clone(), vec!["app:v2"]),
    ]);
    // Old docker save links a layer shared by two images: `<dir>/layer.tar -> ../<other>/layer.tar`.
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let shared = manifest[0]["Layers"][0].as_str().unwrap().to_owned();
    let mut entries = files.clone();
    entries.remove(&shared);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    // The real file lives under another name; the manifest's name is a relative symlink.
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(files[&shared].len() as u64);
    b.append_data(&mut h, "real/layer.tar", &files[&shared][..])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    let link_dir = shared.split('/').next().unwrap();
    b.append_link(&mut h, format!("{link_dir}/layer.tar"), "../real/layer.tar")
        .unwrap();
    let archive = write_archive(dir.path(), "save.tar", &b.into_inner().unwrap(), Comp::Gzip);

    let loaded = store.load(&archive).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].id, img1.id());
    assert_eq!(loaded[0].references, vec![BUSYBOX, "docker.io/foo/bar:1"]);
    assert_eq!(loaded[1].references, vec!["docker.io/library/app:v2"]);
    assert_eq!(
        layer_count(&store),
        2,
        "the shared base layer is unpacked once"
    );

    let list = store.list().unwrap();
    assert_eq!(
        list.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![img2.id(), img1.id()],
        "newest first"
    );
    assert_eq!(store.resolve("foo/bar:1").unwrap().id, img1.id());
    let app = store.resolve("app:v2").unwrap();
    assert_eq!(store.layer_dirs(&app).len(), 2);
    assert_eq!(
        fs::read(store.layer_dirs(&app)[1].join("app/run")).unwrap(),
        b"run"
    );
    // The synthesised OCI manifest is stored and is what manifest_digest names.
    let m = fs::read(
        store
            .root()
            .join("blobs/sha256")
            .join(app.manifest_digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(m["config"]["digest"], json!(img2.id()));
    assert_eq!(
        m["layers"][1]["mediaType"],
        json!("application/vnd.oci.image.layer.v1.tar+gzip")
    );
    let cfg = store.config(&app).unwrap();
    let c = cfg.config().as_ref().unwrap();
    assert_eq!(
        c.entrypoint().as_deref(),
        Some(&["/app/run".to_owned()][..])
    );
    assert_eq!(c.working_dir().as_deref(), Some("/app"));
    assert_eq!(
        c.exposed_ports().as_deref(),
        Some(&["80/tcp".to_owned()][..])
    );
    assert_eq!(c.volumes().as_deref(), Some(&["/data".to_owned()][..]));
}

#[test]
fn docker_25_archive_with_manifest_json_and_index_json_uses_manifest_json() {
    require_root();
    let (dir, store) = store();
    let img = Image::new(vec![base_layer(Comp::Plain)]);
    // Docker 25+ writes an OCI layout plus manifest.json naming the same blobs.
    let mut oci = OciLayout::new();
    let added = oci.add_named(&img, "docker.io/library/from-index:1");
    let mut entries = oci.entries();
    let manifest = json!([{
        "Config": format!("blobs/sha256/{}", added.config.strip_prefix("sha256:").unwrap()),
        "RepoTags": ["from-manifest:2"],
        "Layers": added.layers.iter().map(|l| format!("blobs/sha256/{}", l.strip_prefix("sha256:").unwrap())).collect::<Vec<_>>(),
    }]);
    entries.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    );
    let archive = write_archive(dir.path(), "d25.tar", &tar_of(&entries), Comp::Plain);
    let loaded = store.load(&archive).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].references,
        vec!["docker.io/library/from-manifest:2"]
    );
    assert!(matches!(
        store.resolve("from-index:1"),
        Err(ResolveError::NotFound(_))
    ));
}

#[test]
fn plain_gzip_and_zstd_layers_in_plain_gzip_and_zstd_archives() {
    require_root();
    for outer in [Comp::Plain, Comp::Gzip, Comp::Zstd] {
        let (dir, store) = store();
        let mut oci = OciLayout::new();
        let mut ids = Vec::new();
        for (i, comp) in [Comp::Plain, Comp::Gzip, Comp::Zstd]
            .into_iter()
            .enumerate()
        {
            let mut t = LayerTar::new();
            t.file(&format!("f{i}"), format!("{comp:?}").as_bytes(), 0o644);
            let img = Image::new(vec![Layer::new(t.finish(), comp)]);
            oci.add_named(&img, &format!("docker.io/library/c{i}:latest"));
            ids.push(img.id());
        }
        let archive = write_archive(dir.path(), "x.tar", &oci.tar(), outer);
        let loaded = store.load(&archive).unwrap();
        assert_eq!(
            loaded.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
            ids,
            "outer {outer:?}"
        );
        for (i, comp) in ["Plain", "Gzip", "Zstd"].iter().enumerate() {
            let rec = store.resolve(&format!("c{i}")).unwrap();
            assert_eq!(
                fs::read_to_string(store.layer_dirs(&rec)[0].join(format!("f{i}"))).unwrap(),
                *comp
            );
        }
    }
}

#[test]
fn multi_platform_index_picks_the_host_platform() {
    require_root();
    let (dir, store) = store();
    let mut oci = OciLayout::new();
    let mut arm_layer = LayerTar::new();
    arm_layer.file("arch", b"arm64", 0o644);
    let mut arm = Image::new(vec![Layer::new(arm_layer.finish(), Comp::Gzip)]);
    arm.config["architecture"] = json!("arm64");
    let mut amd_layer = LayerTar::new();
    amd_layer.file("arch", b"amd64", 0o644);
    let amd = Image::new(vec![Layer::new(amd_layer.finish(), Comp::Gzip)]);
    let host_is_amd64 = std::env::consts::ARCH == "x86_64";
    let arm_d = oci.image_blobs(&arm).descriptor;
    let amd_d = oci.image_blobs(&amd).descriptor;
    let with_platform = |mut d: serde_json::Value, arch: &str| {
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        d
    };
    // An attestation manifest, as buildx adds: platform unknown/unknown, never picked.
    let (att, att_size) = oci.blob(b"{}".to_vec());
    let attestation = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att, "size": att_size,
        "platform": {"architecture": "unknown", "os": "unknown"}});
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with_platform(arm_d, "arm64"), with_platform(amd_d, "amd64"), attestation],
    });
    let (idx, idx_size) = oci.blob(serde_json::to_vec(&index).unwrap());
    oci.index.push(json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx, "size": idx_size,
        "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}));
    let archive = write_archive(dir.path(), "multi.tar", &oci.tar(), Comp::Plain);
    let loaded = store.load(&archive).unwrap();
    assert_eq!(loaded.len(), 1);
    let want = if host_is_amd64 { amd.id() } else { arm.id() };
    assert_eq!(loaded[0].id, want);
    assert_eq!(loaded[0].references, vec!["docker.io/library/multi:1"]);
    let rec = store.resolve("multi:1").unwrap();
    let arch = fs::read_to_string(store.layer_dirs(&rec)[0].join("arch")).unwrap();
    assert_eq!(arch, if host_is_amd64 { "amd64" } else { "arm64" });
}

#[test]
fn ref_name_annotation_names_only_when_it_is_a_full_reference() {
    require_root();
    let (dir, store) = store();
    let mut t1 = LayerTar::new();
    t1.file("one", b"1", 0o644);
    let mut t2 = LayerTar::new();
    t2.file("two", b"2", 0o644);
    let tag_only = Image::new(vec![Layer::new(t1.finish(), Comp::Gzip)]);
    let full_ref = Image::new(vec![Layer::new(t2.finish(), Comp::Gzip)]);
    let mut oci = OciLayout::new();
    oci.add_image(
        &tag_only,
        &[("org.opencontainers.image.ref.name", "latest")],
    );
    oci.add_image(
        &full_ref,
        &[("org.opencontainers.image.ref.name", "quay.io/team/app:2")],
    );
    let archive = write_archive(dir.path(), "refs.tar", &oci.tar(), Comp::Plain);
    let loaded = store.load(&archive).unwrap();
    assert_eq!(
        loaded[0].references,
        Vec::<String>::new(),
        "a bare tag cannot name an image"
    );
    assert_eq!(loaded[1].references, vec!["quay.io/team/app:2"]);
    assert_eq!(
        store.resolve(&tag_only.id()).unwrap().repo_tags,
        Vec::<String>::new()
    );
    assert_eq!(
        store.resolve("quay.io/team/app:2").unwrap().id,
        full_ref.id()
    );
}

#[test]
fn reloading_is_idempotent_and_a_new_image_takes_the_tag() {
    require_root();
    let (dir, store) = store();
    let old = Image::new(vec![base_layer(Comp::Gzip)]).created("2024-01-01T00:00:00Z");
    let mut oci = OciLayout::new();
    oci.add_named(&old, BUSYBOX);
    let archive = write_archive(dir.path(), "old.tar", &oci.tar(), Comp::Plain);
    store.load(&archive).unwrap();
    let before = snapshot(store.root());
    let again = store.load(&archive).unwrap();
    assert_eq!(again[0].id, old.id());
    assert_eq!(
        snapshot(store.root()),
        before,
        "re-loading the same archive changes nothing"
    );
    assert_eq!(store.list().unwrap().len(), 1);

    let new = Image::new(vec![base_layer(Comp::Gzip)]).created("2024-06-01T00:00:00Z");
    let mut oci = OciLayout::new();
    oci.add_named(&new, BUSYBOX);
    let archive = write_archive(dir.path(), "new.tar", &oci.tar(), Comp::Plain);
    store.load(&archive).unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, new.id());
    assert_eq!(list[0].repo_tags, vec![BUSYBOX]);
    assert_eq!(list[1].id, old.id());
    assert!(
        list[1].repo_tags.is_empty(),
        "the old image stays, untagged"
    );
    assert_eq!(layer_count(&store), 1, "same layer, unpacked once");
}

/// Makes `n` layer-less images whose ids are distinct, plus the index of two sharing
/// their first hex digit.
fn images_with_shared_id_prefix() -> (Vec<Image>, (usize, usize)) {
    let mut images: Vec<Image> = Vec::new();
    for i in 0.. {
        let img = Image::new(Vec::new()).created(&format!("2024-01-01T00:00:{:02}Z", i % 60));
        let mut img = img;
        img.config["author"] = json!(format!("n{i}"));
        let first = img.id().chars().nth(7).unwrap();
        if let Some(j) = images
            .iter()
            .position(|o| o.id().chars().nth(7).unwrap() == first)
        {
            images.push(img);
            return (images, (j, i));
        }
        images.push(img);
    }
    unreachable!()
}

#[test]
fn resolve_by_reference_id_and_prefix() {
    require_root();
    let (dir, store) = store();
    let (images, (a, b)) = images_with_shared_id_prefix();
    let mut oci = OciLayout::new();
    for (i, img) in images.iter().enumerate() {
        oci.add_named(img, &format!("docker.io/library/img{i}:latest"));
    }
    let archive = write_archive(dir.path(), "many.tar", &oci.tar(), Comp::Plain);
    store.load(&archive).unwrap();

    let id = images[a].id();
    let hex = id.strip_prefix("sha256:").unwrap();
    assert_eq!(store.resolve(&format!("img{a}")).unwrap().id, id);
    assert_eq!(
        store
            .resolve(&format!("docker.io/library/img{a}:latest"))
            .unwrap()
            .id,
        id
    );
    assert_eq!(store.resolve(&id).unwrap().id, id);
    assert_eq!(store.resolve(hex).unwrap().id, id);
    assert_eq!(store.resolve(&hex[..12]).unwrap().id, id);
    assert_eq!(
        store.resolve(&format!("sha256:{}", &hex[..5])).unwrap().id,
        id
    );
    let shared = &hex[..1];
    assert_eq!(images[b].id().as_bytes()[7], hex.as_bytes()[0]);
    assert!(matches!(store.resolve(shared), Err(ResolveError::Ambiguous(p)) if p == shared));
    let err = store.resolve("nothere").unwrap_err();
    assert_eq!(err.to_string(), "No such image: nothere:latest");
    assert!(matches!(
        store.resolve("Bad/Name"),
        Err(ResolveError::InvalidReference(_))
    ));
    // By manifest digest, as `name@sha256:…`.
    let rec = store.resolve(&id).unwrap();
    assert_eq!(
        store
            .resolve(&format!("img{a}@{}", rec.manifest_digest))
            .unwrap()
            .id,
        id
    );
}

#[test]
fn remove_follows_docker_and_collects_garbage() {
    require_root();
    let (dir, store) = store();
    let base = base_layer(Comp::Gzip);
    let mut top = LayerTar::new();
    top.file("top", b"top", 0o644);
    let a = Image::new(vec![base.clone()]).created("2024-01-01T00:00:00Z");
    let b = Image::new(vec![base.clone(), Layer::new(top.finish(), Comp::Zstd)])
        .created("2024-02-01T00:00:00Z");
    let files = docker_save(&[(a.clone(), vec!["a:1", "a:2"]), (b.clone(), vec!["b:1"])]);
    let archive = write_archive(dir.path(), "rm.tar", &tar_of(&files), Comp::Plain);
    store.load(&archive).unwrap();
    let a_rec = store.resolve("a:1").unwrap();
    let b_rec = store.resolve("b:1").unwrap();

    // By id with several tags: refused unless forced.
    let err = store.remove(&a.id(), &[], false).unwrap_err();
    assert!(matches!(err, RemoveError::MultipleReferences(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "unable to delete {} (must be forced) - image is referenced in multiple repositories",
            a_rec.short_id()
        )
    );
    // By tag: untag only while other tags remain.
    assert_eq!(
        store.remove("a:2", &[], false).unwrap(),
        vec!["Untagged: a:2"]
    );
    assert_eq!(
        store.resolve("a:1").unwrap().repo_tags,
        vec!["docker.io/library/a:1"]
    );
    // In use: the last tag cannot go without force.
    let used = vec![a.id()];
    assert!(matches!(
        store.remove("a:1", &used, false),
        Err(RemoveError::InUse(_))
    ));
    assert!(matches!(
        store.remove(&a.id()[7..19], &used, false),
        Err(RemoveError::InUse(_))
    ));
    // Forced while in use: untagged, but the image and its layers stay.
    assert_eq!(
        store.remove("a:1", &used, true).unwrap(),
        vec!["Untagged: a:1"]
    );
    assert_eq!(
        store.resolve(&a.id()).unwrap().repo_tags,
        Vec::<String>::new()
    );
    assert!(store.layer_dirs(&a_rec)[0].is_dir());
    // Not in use any more: by id, deleted; the shared base layer stays for b.
    let lines = store.remove(&a.id(), &[], false).unwrap();
    assert_eq!(lines, vec![format!("Deleted: {}", a.id())]);
    assert!(matches!(
        store.resolve(&a.id()),
        Err(ResolveError::NotFound(_))
    ));
    assert!(store.layer_dirs(&b_rec)[0].is_dir());
    let config_blob = store.root().join("blobs/sha256").join(&a.id()[7..]);
    assert!(!config_blob.exists(), "a's config blob is collected");

    // The last tag of b: untagged and deleted with both its layers.
    let lines = store.remove("b:1", &[], false).unwrap();
    let mut want = vec!["Untagged: b:1".to_owned(), format!("Deleted: {}", b.id())];
    let mut layers: Vec<String> = b
        .layers
        .iter()
        .map(|l| format!("Deleted: {}", l.diff_id()))
        .collect();
    layers.sort();
    want.extend(layers);
    assert_eq!(lines, want);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(layer_count(&store), 0);
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    assert!(matches!(
        store.remove("b:1", &[], false),
        Err(RemoveError::Resolve(ResolveError::NotFound(_)))
    ));
}

#[test]
fn open_removes_leftovers_of_interrupted_loads_unless_a_load_holds_the_lock() {
    require_root();
    let (_dir, store) = store();
    let leftover = store.root().join("tmp/load-killed");
    fs::create_dir_all(leftover.join("layers/abc/etc")).unwrap();
    fs::write(leftover.join("files-f0"), b"partial").unwrap();
    {
        let _held = peapod_store::Lock::exclusive(&store.root().join("lock")).unwrap();
        ImageStore::open(store.root()).unwrap();
        assert!(leftover.exists(), "a load in progress keeps its staging");
    }
    ImageStore::open(store.root()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

/// Not a test of its own: the child process of `killed_loads_leave_nothing_half_visible`.
/// It loads `PEAPOD_TEST_ARCHIVE` into `PEAPOD_TEST_STORE` when those are set, and does
/// nothing otherwise.
#[test]
fn child_process_load_for_kill_test() {
    let (Ok(store), Ok(archive)) = (
        std::env::var("PEAPOD_TEST_STORE"),
        std::env::var("PEAPOD_TEST_ARCHIVE"),
    ) else {
        return;
    };
    let store = ImageStore::open(std::path::Path::new(&store)).unwrap();
    store.load(std::path::Path::new(&archive)).unwrap();
}

#[test]
fn killed_loads_leave_nothing_half_visible() {
    require_root();
    let (dir, store) = store();
    let mut t = LayerTar::new();
    for i in 0..1200 {
        t.file(
            &format!("d{}/f{i}", i % 20),
            format!("file {i}").repeat(50).as_bytes(),
            0o644,
        );
    }
    let img = Image::new(vec![
        Layer::new(t.finish(), Comp::Gzip),
        base_layer(Comp::Zstd),
    ]);
    let mut oci = OciLayout::new();
    oci.add_named(&img, BUSYBOX);
    let archive = write_archive(dir.path(), "big.tar", &oci.tar(), Comp::Gzip);
    // Kill at fractions of a whole load's duration (measured here), to land in every phase.
    let start = std::time::Instant::now();
    store.load(&archive).unwrap();
    let full = start.elapsed();
    store.remove(BUSYBOX, &[], false).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut outcomes = Vec::new();
    for percent in [10u32, 35, 60, 80, 90, 100, 120] {
        let delay = full * percent / 100;
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_process_load_for_kill_test",
                "--test-threads=1",
                "--quiet",
            ])
            .env("PEAPOD_TEST_STORE", store.root())
            .env("PEAPOD_TEST_ARCHIVE", &archive)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        // Reopening removes the killed load's staging.
        let store = ImageStore::open(store.root()).unwrap();
        assert_eq!(
            fs::read_dir(store.root().join("tmp")).unwrap().count(),
            0,
            "after {delay:?}"
        );
        let list = store.list().unwrap();
        match list.as_slice() {
            [] => outcomes.push("nothing"),
            [rec] => {
                assert_eq!(rec.id, img.id());
                for d in store.layer_dirs(rec) {
                    assert!(
                        d.is_dir(),
                        "a visible image has all its layers (after {delay:?})"
                    );
                }
                assert_eq!(
                    fs::read(store.layer_dirs(rec)[1].join("bin/sh")).unwrap(),
                    b"#!fake shell\n"
                );
                assert_eq!(
                    fs::read_dir(store.layer_dirs(rec)[0].join("d7"))
                        .unwrap()
                        .count(),
                    60
                );
                store.config(rec).unwrap();
                outcomes.push(if status.success() {
                    "loaded"
                } else {
                    "loaded-then-killed"
                });
                // Start the next round from an empty store.
                store.remove(BUSYBOX, &[], false).unwrap();
            }
            more => panic!("unexpected images {more:?}"),
        }
        // Whatever happened, a fresh load works.
        assert_eq!(store.load(&archive).unwrap()[0].id, img.id());
        store.remove(BUSYBOX, &[], false).unwrap();
        assert_eq!(
            fs::read_dir(store.root().join("layers")).unwrap().count(),
            0
        );
    }
    eprintln!("kill outcomes (a whole load takes {full:?}): {outcomes:?}");
}
