#!/usr/bin/env bash
# Installs what peapod and its tests need on Debian/Ubuntu (as root): an OCI runtime,
# libseccomp-dev (the built-in runtime links libseccomp),
# busybox for the test image, the CNI plugins, iproute2, and a Rust toolchain if missing.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root" >&2; exit 1; }
pkgs=(runc libseccomp-dev busybox-static containernetworking-plugins iproute2 tar gzip coreutils ca-certificates curl docker-registry skopeo apache2-utils openssl tmux)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
fi
