#!/usr/bin/env bash
# The end-to-end lab benchmark: directord (DR, TUN, NAT) against no
# balancer, nftables DNAT and HAProxy (and, when --systems names xdp-dr or
# xdp-nat, a stateless DR or NAT forwarder in XDP: the ceilings here), with
# wrk between network namespaces (tests/src/bin/lab-bench.rs). Installs what
# is missing (wrk, haproxy, nftables, clang for the XDP systems; idempotent like
# deploy/setup.sh), builds the release binaries
# and runs the bench; arguments go to lab-bench, e.g.
#   sudo deploy/bench/lab.sh --runs 1 --systems direct,dr,haproxy
# Needs root (namespaces). Nothing is left running: labs are removed by the
# harness, and no haproxy service is left in the root namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $EUID -ne 0 ]]; then
    echo "lab.sh: run as root: the lab builds network namespaces" >&2
    exit 1
fi

deploy/setup.sh >/dev/null

declare -A PKG_FOR_CMD=(
    [wrk]=wrk
    [haproxy]=haproxy
    [nft]=nftables
)
missing=()
for cmd in "${!PKG_FOR_CMD[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_FOR_CMD[$cmd]}")
done
# clang only for the xdp-dr and xdp-nat systems (they build XDP programs).
if [[ " $* " == *xdp-* ]] && ! compgen -c clang | grep -qE '^clang(-[0-9]+)?$'; then
    missing+=(clang)
fi
if ((${#missing[@]})); then
    echo "lab.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages from starting their services (haproxy would listen
    # in the root namespace): a policy-rc.d that denies every start, only
    # for this install, unless one is already there.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    trap 'if [[ $own_policy == 1 ]]; then rm -f "$policy"; fi' EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [[ $own_policy == 1 ]]; then rm -f "$policy"; fi
    trap - EXIT
fi

# Whatever happened at install time: no haproxy service in the root
# namespace (the bench starts its own inside the lab).
root_haproxy() {
    local pid
    for pid in $(pgrep -x haproxy || true); do
        [[ $(readlink "/proc/$pid/ns/net") == $(readlink /proc/1/ns/net) ]] && echo "$pid"
    done
}
if [[ -n $(root_haproxy) ]]; then
    echo "lab.sh: stopping the haproxy service the package started"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet haproxy 2>/dev/null; then
        systemctl stop haproxy || true
        systemctl disable haproxy 2>/dev/null || true
    elif command -v service >/dev/null 2>&1; then
        service haproxy stop || true
    fi
    for pid in $(root_haproxy); do kill "$pid" 2>/dev/null || true; done
fi

cargo build --release --locked -q -p director -p lab-tests --bins
target=${CARGO_TARGET_DIR:-target}
exec "$target/release/lab-bench" \
    --directord "$target/release/directord" \
    --dirctl "$target/release/dirctl" "$@"
