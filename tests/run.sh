#!/usr/bin/env bash
# The project's whole test command (README, and .ci/run calls exactly this):
# install what the tests need, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/setup.sh

# One clean build of everything below takes about 1.5 GB. Say so up front
# rather than fail half-way through with "No space left on device".
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
free_mb=$(df -Pm "$target" | awk 'NR == 2 { print $4 }')
if [ "$free_mb" -lt 3072 ]; then
    echo "warning: only ${free_mb} MB free where the build goes ($target); a clean build needs about 1.5 GB" >&2
fi

# A one-shot build gains nothing from incremental state, which is a third of
# the clippy build's size.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
# Release profile: the property tests and the 10^5-entry table tests run
# an order of magnitude faster than in debug.
cargo test --workspace --release --locked
