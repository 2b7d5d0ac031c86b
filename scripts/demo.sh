#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine (as root) and runs the seed's part 1:
# two busybox containers, the second joining the first's network and volumes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q
peapod=target/release/peapod
[ -n "${CARGO_TARGET_DIR:-}" ] && peapod="$CARGO_TARGET_DIR/release/peapod"
root=${PEAPOD_DEMO_ROOT:-/var/lib/peapod-demo}
pp() { echo "\$ peapod $*" >&2; "$peapod" --root "$root" "$@"; }

mkdir -p "$root"
./scripts/build-busybox-image.sh "$root/busybox.tar" >/dev/null
pp image load -i "$root/busybox.tar"
for c in test2 test1; do "$peapod" --root "$root" rm -f "$c" >/dev/null 2>&1 || true; done

pp run -it -d --name test1 -v /shared busybox
pp run -it -d --network container:test1 --volumes-from test1 --name test2 busybox
pp ps
pid1=$("$peapod" --root "$root" inspect test1 | grep -m1 '"Pid"' | tr -dc 0-9)
pid2=$("$peapod" --root "$root" inspect test2 | grep -m1 '"Pid"' | tr -dc 0-9)
"$peapod" --root "$root" inspect test2 | grep '"NetworkMode"'
echo "\$ ls -l /proc/$pid1/ns/"; ls -l "/proc/$pid1/ns/"
echo "\$ ls -l /proc/$pid2/ns/"; ls -l "/proc/$pid2/ns/"
pp exec test1 ifconfig eth0
pp exec test2 ifconfig eth0
pp exec test1 sh -c 'echo written-by-test1 > /shared/hello'
pp exec test2 cat /shared/hello
echo
echo "The containers keep running. Remove them with:"
echo "  $peapod --root $root rm -f test1 test2"
