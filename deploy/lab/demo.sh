#!/usr/bin/env bash
# The main job. Until the namespace lab lands (dataplane issue), this runs
# the dataplane core on synthetic traffic: real frames through the real
# schedulers, connection table and DR/TUN/NAT rewrites, decoded by an
# independent parser (etherparse) and printed ipvsadm-style.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/setup.sh
exec cargo run --release --locked -q -p director --example demo -- "$@"
