#!/usr/bin/env bash
# Removes a lab left behind, e.g. after `demo.sh --keep` was killed hard:
# the harness's namespaces (lbt-<pid>-...) whose owning process is gone,
# the processes in them and their temp directories. With --all, every lab,
# also those of a live process (a running demo or test run).
#
#   sudo deploy/lab/down.sh [--all]
#
# The logic is the harness's own, in `lab-demo --down`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $EUID -ne 0 ]]; then
    echo "down: run as root: the lab's namespaces belong to root (sudo $0)" >&2
    exit 1
fi
target="${CARGO_TARGET_DIR:-target}/release"
if [[ ! -x "$target/lab-demo" ]]; then
    echo "down: building lab-demo"
    cargo build --release --locked -q -p lab-tests --bin lab-demo
fi
exec "$target/lab-demo" --down "$@"
