#!/usr/bin/env bash
# Builds an OCI image-layout archive of Debian's busybox-static, for tests and demos:
#
#   scripts/build-busybox-image.sh OUT.tar [IMAGE-NAME]
#
# IMAGE-NAME defaults to docker.io/library/busybox:latest. The image has one gzip layer
# (built deterministically) holding /bin/busybox, its applet links in /bin, /sbin,
# /usr/bin and /usr/sbin, a minimal /etc/passwd and /etc/group, and empty /tmp (1777),
# /root, /proc, /sys, /dev and /var. Config: Cmd ["sh"] and the usual PATH.
# Needs only bash, coreutils, tar, gzip and busybox (BUSYBOX=path overrides /bin/busybox);
# run as root it installs the applet links with `chroot ROOTFS /bin/busybox --install -s`.
# Prints the path of the archive it wrote.
set -euo pipefail

usage() { echo "usage: $0 OUT.tar [IMAGE-NAME]" >&2; exit 2; }
die() { echo "$0: $*" >&2; exit 1; }

[ $# -ge 1 ] && [ $# -le 2 ] || usage
out=$1
name=${2:-docker.io/library/busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}

# The name goes into JSON unescaped: allow only reference characters.
[[ $name =~ ^[A-Za-z0-9._:/@-]+$ ]] || die "invalid image name: $name"
[ -x "$busybox" ] || die "$busybox not found (apt-get install busybox-static)"
"$busybox" --list | grep -x ifconfig >/dev/null || die "$busybox has no ifconfig applet; the image needs it"  # no grep -q: with pipefail its early exit would fail the pipe
"$busybox" --list | grep -x sh >/dev/null || die "$busybox has no sh applet"

# The tag annotation: what follows the last ':' after the last '/'.
last=${name##*/}
tag=latest
if [[ $last == *:* ]]; then tag=${last##*:}; tag=${tag%%@*}; fi

# OCI architecture names from Debian's.
if command -v dpkg >/dev/null 2>&1; then debarch=$(dpkg --print-architecture); else debarch=$(uname -m); fi
variant=
case $debarch in
    amd64|x86_64) arch=amd64 ;;
    arm64|aarch64) arch=arm64; variant=v8 ;;
    armhf|armv7l) arch=arm; variant=v7 ;;
    armel) arch=arm; variant=v5 ;;
    i386|i686) arch=386 ;;
    ppc64el|ppc64le) arch=ppc64le ;;
    s390x) arch=s390x ;;
    riscv64) arch=riscv64 ;;
    mips64el) arch=mips64le ;;
    loong64|loongarch64) arch=loong64 ;;
    *) die "unknown architecture $debarch" ;;
esac
variant_json=
[ -n "$variant" ] && variant_json=",\"variant\":\"$variant\""

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
layout=$work/layout

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var}
chmod 0755 "$rootfs" "$rootfs"/{bin,sbin,usr,usr/bin,usr/sbin,etc,proc,sys,dev,var}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
cp "$busybox" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
if [ "$(id -u)" -eq 0 ]; then
    # In the chroot /proc/self/exe is unreadable, so busybox links to argv[0], /bin/busybox.
    chroot "$rootfs" /bin/busybox --install -s
else
    # Without root (no chroot): the same links from busybox's own list of applet paths.
    "$busybox" --list-full | while read -r applet; do
        [ -e "$rootfs/$applet" ] || [ -L "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
    done
fi
for f in bin/sh bin/busybox sbin/ifconfig; do
    [ -e "$rootfs/$f" ] || die "$f missing from the root filesystem"
done
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"

mkdir -p "$layout/blobs/sha256"
blobs=$layout/blobs/sha256

# The layer: deterministic tar (sorted, numeric root owner, epoch mtimes), gzip without name/time.
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 --format=gnu \
    -C "$rootfs" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"
layer_digest=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$blobs/$layer_digest"

# Created: SOURCE_DATE_EPOCH, else the busybox binary's mtime (reproducible for one busybox).
epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$busybox")}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

# put_blob FILE: moves FILE into blobs/ and prints "digest size".
put_blob() {
    local digest size
    digest=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$blobs/$digest"
    echo "$digest $size"
}

printf '%s' "{\"created\":\"$created\",\"architecture\":\"$arch\"$variant_json,\"os\":\"linux\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"sh\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"scripts/build-busybox-image.sh (Debian busybox-static)\"}]}" \
    >"$work/config.json"
read -r config_digest config_size < <(put_blob "$work/config.json")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}" \
    >"$work/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$work/manifest.json")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"$variant_json},\
\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"$tag\"}}]}" \
    >"$layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

mkdir -p "$(dirname -- "$out")"
tmp_out="$out.tmp.$$"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 --format=gnu \
    -C "$layout" -cf "$tmp_out" oci-layout index.json blobs
mv -f "$tmp_out" "$out"
echo "$out"
