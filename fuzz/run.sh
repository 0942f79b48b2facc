#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 1800) one after another; logs to fuzz/logs/.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/secretchat-fuzz-target}"
secs="${SECONDS_PER_TARGET:-1800}"
mkdir -p logs
for t in ${TARGETS:-tl_decode decrypt protocol_core}; do
  mkdir -p "corpus/$t" "regressions/$t"
  cargo +nightly fuzz run -O "$t" "corpus/$t" "regressions/$t" -- \
    -max_total_time="$secs" -use_value_profile=1 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || echo "$t: finding, see logs/$t.log and artifacts/$t"
done
