#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 600) one after another at low priority, logging
# to fuzz/logs/TARGET.log, then minimises each corpus in place. Needs cargo-fuzz; on stable
# Rust, RUSTC_BOOTSTRAP=1 lets it use the -Z flags it passes (sanitizer, coverage options).
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_TARGET:-600}
targets=${*:-ceql url_template instance_file dates json_split http_headers}
mkdir -p fuzz/logs
export RUSTC_BOOTSTRAP=1
for t in $targets; do
  echo "== $t: ${seconds}s" >&2
  nice -n 10 cargo fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 \
    > "fuzz/logs/$t.log" 2>&1
  echo "== $t exit $?" >&2
done
