#!/usr/bin/env bash
# The project's whole test command (README, and .ci/run calls exactly this):
# install what the tests need, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
# Release profile: the property tests and the 10^5-entry table tests run
# an order of magnitude faster than in debug.
cargo test --workspace --release --locked
