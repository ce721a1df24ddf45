#!/usr/bin/env bash
# The long runs behind RELIABILITY.md (the ordinary `cargo test --workspace` runs short
# versions of each):
#
#   scripts/reliability.sh crash   # SIGKILL at every crash point of every scenario (~2-3 min)
#   scripts/reliability.sh soak    # 1,000 upgrade/downgrade cycles under load, RSS per cycle
#   scripts/reliability.sh fuzz    # every fuzz target, 10 million runs each (nightly, hours)
#   scripts/reliability.sh all
#
# Figures go to stdout and to target/reliability/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/reliability
mkdir -p "$out"

crash() {
    RELUP_CRASH_ALL=1 cargo test --test crash -- --nocapture 2>&1 | tee "$out/crash.log" |
        grep -E "crash points|test result|panicked"
}

soak() {
    RELUP_SOAK_CYCLES=${RELUP_SOAK_CYCLES:-1000} RELUP_SOAK_BUILDS=${RELUP_SOAK_BUILDS:-40} \
        RELUP_SOAK_RSS_CSV="$PWD/$out/soak-rss.csv" \
        cargo test --release -p relup-runtime --test soak -- --nocapture --test-threads=1 2>&1 |
        tee "$out/soak.log" | grep -E "sent,|cycles|RSS|builds|test result|panicked"
}

fuzz() {
    fuzz/run.sh
    grep -H "stat::number_of_executed_units" target/fuzz-logs/*.log
}

case "${1:-all}" in
crash) crash ;;
soak) soak ;;
fuzz) fuzz ;;
all) crash && soak && fuzz ;;
*)
    echo "usage: $0 crash|soak|fuzz|all" >&2
    exit 2
    ;;
esac
