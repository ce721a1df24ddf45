#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another (nightly toolchain and cargo-fuzz needed:
# `rustup toolchain install nightly && cargo install cargo-fuzz`), niced, one job each, then
# minimizes what each found into fuzz/corpus/<target>/ (minimize.sh: the corpus the ordinary
# tests replay).
#
#   fuzz/run.sh                    # every target, 10 million executions each
#   RUNS=100000 fuzz/run.sh abi_decode config_line
#   TIME=5400 fuzz/run.sh tarball_unpack   # also stop after 5400 s
#
# Logs: target/fuzz-logs/<target>.log (libFuzzer's final stats give the execution count);
# new inputs accumulate in fuzz/target/work/<target>/ between runs; crashes land in
# fuzz/artifacts/<target>/. A target that crashes stops the run (the targets after it do not
# run) and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
TIME=${TIME:-0}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(release_toml appup_toml config_line control_request tarball_unpack abi_decode)
fi
LOGS=../target/fuzz-logs
mkdir -p "$LOGS"
for t in "${TARGETS[@]}"; do
    work=target/work/$t
    mkdir -p "$work"
    max_len=4096
    if [ "$t" = tarball_unpack ]; then max_len=65536; fi
    # AddressSanitizer where unsafe code runs (the module ABI); the parsers are safe Rust,
    # where it would only slow the search down (about 3x).
    sanitizer=none
    if [ "$t" = abi_decode ]; then sanitizer=address; fi
    echo "== $t: $RUNS runs (log $LOGS/$t.log)"
    nice -n 19 cargo +nightly fuzz run -s "$sanitizer" "$t" "$work" "corpus/$t" -- \
        -runs="$RUNS" -max_total_time="$TIME" -max_len="$max_len" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$LOGS/$t.log" 2>&1 || {
        status=$?
        # A crash (or a leak, a timeout, an out-of-memory) stops the whole run: the other
        # targets wait, and the exit status says it failed.
        echo "$t: the fuzzer FAILED (exit $status), see $LOGS/$t.log and artifacts/$t/" >&2
        grep -E "^==[0-9]+==|panicked|Test unit written to|SUMMARY" "$LOGS/$t.log" | tail -5 >&2 || true
        exit 1
    }
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$LOGS/$t.log" | tail -2
    # Minimize the union of what was found and what is checked in.
    ./minimize.sh "$t"
    echo "$t: corpus now $(ls "corpus/$t" | wc -l) files"
done
