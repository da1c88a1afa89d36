#!/usr/bin/env bash
# Runs every criterion benchmark of the dataplane core with fixed settings,
# in one go, and prints a Markdown table of the medians (what
# docs/BENCHMARKS.md quotes). Extra arguments go to criterion, e.g. a filter:
#   deploy/bench/core.sh pipeline
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${CARGO_TARGET_DIR:-target}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "machine: $(nproc) cores, $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for bench in sched conn rewrite dataplane; do
    cargo bench --locked -q -p director --bench "$bench" -- \
        --warm-up-time 1 --measurement-time 3 --noplot "$@" 2>&1 | tee -a "$out" >&2
done

# criterion writes <group>/<id>/new/estimates.json; print the medians.
echo
echo "| benchmark | median | 95% CI |"
echo "|---|---|---|"
find "$target/criterion" -path '*/new/estimates.json' | sort | while read -r f; do
    id=${f#"$target/criterion/"}
    id=${id%/new/estimates.json}
    python3 - "$f" "$id" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["median"]
def fmt(ns):
    return f"{ns:.1f} ns" if ns < 1000 else f"{ns/1000:.2f} µs"
ci = e["confidence_interval"]
print(f"| {sys.argv[2]} | {fmt(e['point_estimate'])} | {fmt(ci['lower_bound'])} – {fmt(ci['upper_bound'])} |")
PY
done
echo
grep -E "bytes/entry|bytes per entry" "$out" || true
