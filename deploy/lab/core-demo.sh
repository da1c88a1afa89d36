#!/usr/bin/env bash
# The dataplane core on its own, in one process, no namespaces (the lab demo
# is demo.sh). Runs the core on synthetic traffic: real frames through the real
# schedulers, connection table and DR/TUN/NAT rewrites, decoded by an
# independent parser (etherparse) and printed ipvsadm-style.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/setup.sh
exec cargo run --release --locked -q -p director --example demo -- "$@"
