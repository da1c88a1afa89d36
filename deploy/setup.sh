#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine.
# Idempotent: only what is missing is installed, so it is cheap to re-run.
set -euo pipefail

# Debian packages the lab needs, by the command that proves each is there.
# (The dataplane core needs none; the namespace lab in tests/ needs these.)
declare -A PKG_FOR_CMD=(
    [ip]=iproute2        # namespaces, veths, bridges, routes; `ss` for readiness
    [ss]=iproute2
    [curl]=curl          # the lab's kernel-TCP HTTP client
    [nginx]=nginx        # real servers (Debian's nginx-light is now a shim over it)
    [tcpdump]=tcpdump    # optional packet captures inside a namespace
    [ethtool]=ethtool    # veth offloads off, so a userspace dataplane sees MTU-sized frames
    [sha256sum]=coreutils
    [sysctl]=procps      # per-namespace sysctls (ip_forward, arp_ignore, ...)
    [keepalived]=keepalived  # the VRRP interop peer (its VRRP part only)
    [nft]=nftables       # directord's netdev ingress drop of VIP traffic (kernel stays out)
)

missing=()
for cmd in "${!PKG_FOR_CMD[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_FOR_CMD[$cmd]}")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Rust toolchain with the components the test command uses.
for tool in cargo rustc cargo-fmt cargo-clippy; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup: $tool not found: install the Rust toolchain (rustup) with rustfmt and clippy" >&2
        exit 1
    fi
done
echo "setup: ok ($(cargo --version))"
