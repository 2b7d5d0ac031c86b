//! The test image every end-to-end test uses: `scripts/build-busybox-image.sh` builds an
//! OCI archive of Debian's busybox-static, and the store loads it. Runs as root.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn busybox_script_image_loads_with_sh_busybox_and_ifconfig() {
    require_root();
    let (dir, store) = store();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-image.sh");
    let out = dir.path().join("busybox.tar");
    let run = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("run the script");
    assert!(
        run.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        out.to_str().unwrap(),
        "prints the output path"
    );

    let loaded = store.load(&out).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].references,
        vec!["docker.io/library/busybox:latest"]
    );
    let rec = store.resolve("busybox").unwrap();
    assert_eq!(rec.diff_ids.len(), 1);
    let layer = &store.layer_dirs(&rec)[0];

    let busybox = fs::symlink_metadata(layer.join("bin/busybox")).unwrap();
    assert!(busybox.is_file());
    assert!(rec.size >= busybox.len());
    assert_eq!(
        fs::read(layer.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let ifconfig = [
        "sbin/ifconfig",
        "bin/ifconfig",
        "usr/sbin/ifconfig",
        "usr/bin/ifconfig",
    ]
    .iter()
    .find(|p| fs::symlink_metadata(layer.join(p)).is_ok())
    .expect("ifconfig is in the image");
    assert_eq!(
        fs::read_link(layer.join(ifconfig)).unwrap(),
        Path::new("/bin/busybox")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::symlink_metadata(layer.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    for d in ["root", "proc", "sys", "dev", "var", "etc"] {
        assert!(layer.join(d).is_dir(), "/{d}");
    }
    let passwd = fs::read_to_string(layer.join("etc/passwd")).unwrap();
    assert!(
        passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"),
        "{passwd}"
    );
    assert!(passwd.contains("nobody:x:65534:65534:nobody:/nonexistent:/bin/false"));
    assert!(fs::read_to_string(layer.join("etc/group"))
        .unwrap()
        .contains("nobody:x:65534:"));

    let cfg = store.config(&rec).unwrap();
    let c = cfg.config().as_ref().expect("config section");
    assert_eq!(c.cmd().as_deref(), Some(&["sh".to_owned()][..]));
    assert_eq!(
        c.env().as_deref(),
        Some(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()][..])
    );
    assert_eq!(cfg.os().to_string(), "linux");
    assert!(cfg.created().is_some());

    // A second name through the optional argument.
    let out2 = dir.path().join("named.tar");
    let run = Command::new("bash")
        .arg(&script)
        .arg(&out2)
        .arg("localhost:5000/tools/bb:1.35")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let loaded = store.load(&out2).unwrap();
    assert_eq!(loaded[0].references, vec!["localhost:5000/tools/bb:1.35"]);
    assert_eq!(loaded[0].id, rec.id, "same content, same image");
    assert_eq!(
        store
            .resolve("localhost:5000/tools/bb:1.35")
            .unwrap()
            .repo_tags
            .len(),
        2
    );
}
