#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine (as root) and runs the seed
# (../shared/seed): part 1, two busybox containers, the second joining the first's network
# and volumes; parts 2 and 3, the seed's three pods from examples/.
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

echo; echo "# Pods (seed parts 2 and 3)"
for p in two-containers two-containers-volume init-container-test; do "$peapod" --root "$root" delete pod "$p" --now >/dev/null 2>&1 || true; done
pp apply -f examples/
for i in $(seq 1 100); do
  "$peapod" --root "$root" get pods | grep 'init-container-test *1/1 *Running' >/dev/null \
    && [ "$("$peapod" --root "$root" get pods | grep -c Running)" = 3 ] && break
  sleep 0.1
done
pp get pods
pp ps -a
pp describe pod two-containers-volume
pp exec two-containers -c my-test-container1 -- ifconfig eth0
pp exec two-containers -c my-test-container2 -- ifconfig eth0
pp exec init-container-test -- ls /data
echo
echo "Everything keeps running. Remove it with:"
echo "  $peapod --root $root rm -f test1 test2"
echo "  $peapod --root $root delete -f examples/ --now"
