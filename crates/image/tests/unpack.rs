//! Layer unpacking through `load`: file types, owners, modes, times and xattrs; OCI
//! whiteouts as overlayfs sees them; and an overlay mount of two layers. Runs as root.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::*;
use peapod_image::rootfs;

fn load_layers(
    layers: Vec<Layer>,
) -> (
    tempfile::TempDir,
    peapod_image::ImageStore,
    Vec<std::path::PathBuf>,
) {
    let (dir, store) = store();
    let img = Image::new(layers);
    let mut oci = OciLayout::new();
    oci.add_named(&img, "docker.io/library/test:latest");
    let archive = write_archive(dir.path(), "img.tar", &oci.tar(), Comp::Plain);
    store.load(&archive).unwrap();
    let rec = store.resolve("test").unwrap();
    let dirs = store.layer_dirs(&rec);
    (dir, store, dirs)
}

fn lstat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_entry_type_with_owners_modes_times_and_xattrs() {
    require_root();
    let mut t = LayerTar::new();
    t.mtime(1_234_567_890)
        .dir("ro/", 0o555)
        .file("ro/inside", b"x", 0o644)
        .dir("private/", 0o700)
        .file_owned("usr/bin/su", b"setuid binary", 0o4755, 0, 0)
        .file_owned("usr/bin/wall", b"setgid", 0o2755, 0, 5)
        .dir("tmp/", 0o1777)
        .file_owned("home/user/notes", b"mine", 0o600, 1000, 1001)
        .symlink("bin", "usr/bin")
        .symlink("etc/abs", "/etc/passwd")
        .symlink("etc/up", "../../../../outside")
        .hardlink("usr/bin/su-again", "usr/bin/su")
        .device("dev/null", tar::EntryType::Char, 1, 3, 0o666)
        .device("dev/loop0", tar::EntryType::Block, 7, 0, 0o660)
        .fifo("run/fifo", 0o620)
        .pax(&[
            ("SCHILY.xattr.user.comment", b"hello"),
            ("SCHILY.xattr.trusted.peapod", b"t"),
        ])
        .file("xattrs", b"with xattrs", 0o644)
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.user.ok", b"1"),
        ])
        .dir("sneaky/", 0o755)
        .pax(&[
            ("mtime", b"1500000000.25"),
            ("uid", b"70000"),
            ("gid", b"70001"),
        ])
        .file("pax-meta", b"pax", 0o640);
    let (_dir, _store, dirs) = load_layers(vec![Layer::new(t.finish(), Comp::Gzip)]);
    let root = &dirs[0];

    let m = lstat(&root.join("ro"));
    assert_eq!(m.mode() & 0o7777, 0o555);
    assert_eq!(
        m.mtime(),
        1_234_567_890,
        "directory mtime applied after its children"
    );
    assert_eq!(fs::read(root.join("ro/inside")).unwrap(), b"x");
    assert_eq!(lstat(&root.join("private")).mode() & 0o7777, 0o700);
    assert_eq!(lstat(&root.join("tmp")).mode() & 0o7777, 0o1777);
    let su = lstat(&root.join("usr/bin/su"));
    assert_eq!(
        su.mode() & 0o7777,
        0o4755,
        "setuid kept (chmod after chown)"
    );
    assert_eq!(su.mtime(), 1_234_567_890);
    let wall = lstat(&root.join("usr/bin/wall"));
    assert_eq!((wall.mode() & 0o7777, wall.gid()), (0o2755, 5));
    let notes = lstat(&root.join("home/user/notes"));
    assert_eq!(
        (notes.uid(), notes.gid(), notes.mode() & 0o7777),
        (1000, 1001, 0o600)
    );
    // Implicit parents are created 0755.
    assert_eq!(lstat(&root.join("home/user")).mode() & 0o7777, 0o755);

    assert_eq!(
        fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read_link(root.join("etc/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(root.join("etc/up")).unwrap(),
        Path::new("../../../../outside")
    );
    assert_eq!(
        lstat(&root.join("etc/abs")).mtime(),
        1_234_567_890,
        "symlink times set without following"
    );

    let again = lstat(&root.join("usr/bin/su-again"));
    assert_eq!(again.ino(), su.ino(), "hardlink shares the inode");
    assert_eq!(su.nlink(), 2);

    let null = lstat(&root.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = lstat(&root.join("dev/loop0"));
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), nix::sys::stat::makedev(7, 0));
    let fifo = lstat(&root.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);

    let x = root.join("xattrs");
    assert_eq!(
        xattr::get(&x, "user.comment").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr::get(&x, "trusted.peapod").unwrap().as_deref(),
        Some(&b"t"[..])
    );
    let sneaky = root.join("sneaky");
    assert_eq!(
        xattr::get(&sneaky, "user.ok").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        xattr::get(&sneaky, "trusted.overlay.redirect").unwrap(),
        None,
        "layers cannot set overlay xattrs"
    );

    let pax = lstat(&root.join("pax-meta"));
    assert_eq!(
        (pax.uid(), pax.gid()),
        (70000, 70001),
        "PAX uid/gid beyond the octal field"
    );
    assert_eq!(
        (pax.mtime(), pax.mtime_nsec()),
        (1_500_000_000, 250_000_000)
    );
}

#[test]
fn later_entries_replace_earlier_ones_without_following_symlinks() {
    require_root();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, b"untouched").unwrap();
    let mut t = LayerTar::new();
    // A symlink to a host file, then a regular file of the same name: the symlink is
    // replaced, the host file is not written.
    t.symlink("f", target.to_str().unwrap())
        .file("f", b"replaced", 0o644)
        .file("d", b"file first", 0o644)
        .dir("d/", 0o750)
        .file("d/child", b"c", 0o644);
    let (_dir, _store, dirs) = load_layers(vec![Layer::new(t.finish(), Comp::Plain)]);
    let root = &dirs[0];
    assert!(lstat(&root.join("f")).is_file());
    assert_eq!(fs::read(root.join("f")).unwrap(), b"replaced");
    assert_eq!(fs::read(&target).unwrap(), b"untouched");
    assert_eq!(lstat(&root.join("d")).mode() & 0o7777, 0o750);
    assert_eq!(fs::read(root.join("d/child")).unwrap(), b"c");
}

#[test]
fn whiteouts_become_overlay_char_devices_and_opaque_dirs_get_the_xattr() {
    require_root();
    let mut lower = LayerTar::new();
    lower
        .file("gone", b"lower", 0o644)
        .dir("opaque/", 0o755)
        .file("opaque/old", b"old", 0o644);
    let mut upper = LayerTar::new();
    upper
        .file_owned(".wh.gone", b"", 0o644, 0, 0)
        .dir("opaque/", 0o755)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/new", b"new", 0o644)
        .file("deep/dir/.wh.missing", b"", 0o644)
        .file(".wh..wh.plnk/123", b"aufs metadata", 0o644);
    let (_dir, _store, dirs) = load_layers(vec![
        Layer::new(lower.finish(), Comp::Gzip),
        Layer::new(upper.finish(), Comp::Zstd),
    ]);
    let top = &dirs[1];
    let wh = lstat(&top.join("gone"));
    assert!(
        wh.file_type().is_char_device(),
        "whiteout is a character device"
    );
    assert_eq!(wh.rdev(), 0, "device 0/0");
    assert_eq!((wh.uid(), wh.gid()), (0, 0));
    assert!(!top.join(".wh.gone").exists());
    assert_eq!(
        xattr::get(top.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("opaque/.wh..wh..opq").exists());
    assert!(lstat(&top.join("deep/dir/missing"))
        .file_type()
        .is_char_device());
    assert!(
        !top.join(".wh..wh.plnk").exists(),
        "AUFS metadata is skipped"
    );
}

#[test]
fn overlay_of_two_layers_hides_whiteouts_and_opaque_dir_content() {
    require_root();
    let mut lower = LayerTar::new();
    lower
        .file("gone", b"lower", 0o644)
        .file("kept", b"kept", 0o644)
        .dir("opaque/", 0o755)
        .file("opaque/old", b"old", 0o644)
        .dir("merged/", 0o755)
        .file("merged/a", b"a", 0o644);
    let mut upper = LayerTar::new();
    upper
        .file(".wh.gone", b"", 0o644)
        .dir("opaque/", 0o755)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/new", b"new", 0o644)
        .file("merged/b", b"b", 0o644);
    let (dir, _store, dirs) = load_layers(vec![
        Layer::new(lower.finish(), Comp::Gzip),
        Layer::new(upper.finish(), Comp::Plain),
    ]);
    let c = dir.path().join("container");
    let (up, work, target) = (c.join("upper"), c.join("work"), c.join("rootfs"));
    rootfs::mount(&dirs, &up, &work, &target).unwrap();
    let _guard = MountGuard(target.clone());

    assert_eq!(
        rootfs::mounted_fstype(&target).unwrap().as_deref(),
        Some("overlay")
    );
    // The options name the layers through short links beside upper, top-most first.
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == target.to_str())
        .expect("the rootfs in mountinfo");
    assert!(
        line.contains("lowerdir=lower/0:lower/1,upperdir=upper,workdir=work"),
        "{line}"
    );
    assert_eq!(fs::read_link(c.join("lower/0")).unwrap(), dirs[1]);
    assert!(!target.join("gone").exists(), "whited-out file is gone");
    assert_eq!(fs::read(target.join("kept")).unwrap(), b"kept");
    assert!(
        !target.join("opaque/old").exists(),
        "opaque dir hides lower content"
    );
    assert_eq!(fs::read(target.join("opaque/new")).unwrap(), b"new");
    let mut merged: Vec<_> = fs::read_dir(target.join("merged"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    merged.sort();
    assert_eq!(merged, vec!["a", "b"]);

    // Writes land in upper; the shared layers are untouched.
    fs::write(target.join("kept"), b"changed").unwrap();
    assert_eq!(fs::read(up.join("kept")).unwrap(), b"changed");
    assert_eq!(fs::read(dirs[0].join("kept")).unwrap(), b"kept");

    // Idempotent mount, then unmount twice.
    rootfs::mount(&dirs, &up, &work, &target).unwrap();
    rootfs::unmount(&target).unwrap();
    assert_eq!(rootfs::mounted_fstype(&target).unwrap(), None);
    rootfs::unmount(&target).unwrap();
    rootfs::unmount(&dir.path().join("never-existed")).unwrap();
}

#[test]
fn overlay_with_one_or_no_layers() {
    require_root();
    let (dir, _store, dirs) = load_layers(vec![base_layer(Comp::Gzip)]);
    let target = dir.path().join("one/rootfs");
    rootfs::mount(
        &dirs,
        &dir.path().join("one/upper"),
        &dir.path().join("one/work"),
        &target,
    )
    .unwrap();
    let _g1 = MountGuard(target.clone());
    assert_eq!(fs::read(target.join("bin/sh")).unwrap(), b"#!fake shell\n");

    let empty_target = dir.path().join("none/rootfs");
    rootfs::mount(
        &[],
        &dir.path().join("none/upper"),
        &dir.path().join("none/work"),
        &empty_target,
    )
    .unwrap();
    let _g2 = MountGuard(empty_target.clone());
    assert_eq!(fs::read_dir(&empty_target).unwrap().count(), 0);
    fs::write(empty_target.join("new"), b"n").unwrap();
    assert!(dir.path().join("none/upper/new").exists());
}

#[test]
fn mount_refuses_a_target_holding_another_filesystem() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t");
    fs::create_dir(&target).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _g = MountGuard(target.clone());
    let err =
        rootfs::mount(&[], &dir.path().join("u"), &dir.path().join("w"), &target).unwrap_err();
    assert!(
        matches!(err, rootfs::RootfsError::AlreadyMounted { ref fstype, .. } if fstype == "tmpfs"),
        "{err}"
    );
}
