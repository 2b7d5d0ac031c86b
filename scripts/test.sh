#!/usr/bin/env bash
# The full test suite, as root: formatting, lints, unit tests and the end-to-end tests
# (real namespaces, mounts, veths and cgroups). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: the end-to-end tests need root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads=2
# The built-in runtime is the default: the containers suite once more against runc.
PEAPOD_TEST_RUNTIME=runc cargo test -p peapod --test containers -- --test-threads=2
