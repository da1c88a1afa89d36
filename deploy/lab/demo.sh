#!/usr/bin/env bash
# The main job: directord, the userspace LVS director, in a lab of network
# namespaces. For DR, TUN and NAT in turn it builds a client, a director and
# two nginx real servers, starts the real directord, sends HTTP requests
# and UDP datagrams through it and shows who answered, `dirctl -Ln --stats`
# and `dirctl -Lnc`; in DR also a live weight change and a drain. Last the
# pair: two directors with VRRP and connection sync, 200 keep-alive flows,
# `dirctl failover` and a kill -9 of the master, every flow carrying on.
# Then it removes the labs. About 25 s once built.
#
#   sudo deploy/lab/demo.sh [--mode dr|tun|nat|pair|all] [--keep]
#
# --keep leaves the lab up until Ctrl-C and prints how to poke at it;
# deploy/lab/down.sh removes a lab left behind. The in-process core demo
# (no namespaces) is deploy/lab/core-demo.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $EUID -ne 0 ]]; then
    echo "demo: run as root: the lab builds network namespaces (sudo $0)" >&2
    exit 1
fi
deploy/setup.sh
echo "demo: building directord, dirctl and lab-demo (release; the first build takes a few minutes)"
cargo build --release --locked -q -p director -p lab-tests --bins
target="${CARGO_TARGET_DIR:-target}/release"
exec "$target/lab-demo" --directord "$target/directord" --dirctl "$target/dirctl" "$@"
