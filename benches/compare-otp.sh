#!/usr/bin/env bash
# relup side by side with Erlang/OTP 25 on this machine, in one run (issue 9, DESIGN.md §5).
#
# 1. runs the OTP anchor (../shared/anchors/erlang/run.sh: installs Erlang/OTP + rebar3 from
#    Debian packages when missing, which needs root and apt; builds the ticker releases;
#    gen_server micro-benchmarks; install_release up/down at each N), default variant only,
#    with its outputs under $OUT (never inside the anchor's directory);
# 2. runs relup's benches (messaging, spawn, upgrade, config) with the same N list;
# 3. prints a table of relup/OTP ratios per scenario against the DESIGN.md §5 targets, then,
#    as its last lines, one JSON object per scenario:
#      {"scenario":…,"n":…,"relup":…,"otp":…,"unit":…,"ratio":…}
#    ratio = relup / OTP: below 1 is better for times and memory (ms, us, bytes), above 1 is
#    better for throughputs (calls/s, casts/s).
#
# Usage: benches/compare-otp.sh            (about 15-20 minutes on 2 cores)
# Environment (all optional):
#   NS="1 1000 10000 100000"  processes per install, both sides
#   CYCLES=5                  install cycles (up + down) per N, both sides
#   MICRO_REPS=11             OTP micro-benchmark repetitions
#   SPAWN_REPS=5              OTP spawn repetitions
#   OUT=target/compare-otp    where results go (relative to the repository root)
#   ANCHOR=<dir>              the OTP anchor (default ../shared/anchors/erlang next to the repo)
#   SKIP_OTP=1 / SKIP_RELUP=1 reuse the previous run's figures of that side from $OUT
#   RT=1                      run the measurements of both sides (not the builds) under
#                             `chrt -f 1` (SCHED_FIFO, needs root): on a machine shared with
#                             other work, wake-ups then do not wait behind it
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
NS="${NS:-1 1000 10000 100000}"
CYCLES="${CYCLES:-5}"
MICRO_REPS="${MICRO_REPS:-11}"
SPAWN_REPS="${SPAWN_REPS:-5}"
OUT="${OUT:-target/compare-otp}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ANCHOR="${ANCHOR:-}"
if [ -z "$ANCHOR" ]; then
    for dir in "$REPO/../shared/anchors/erlang" "$REPO/../../shared/anchors/erlang" /work/shared/anchors/erlang; do
        if [ -x "$dir/run.sh" ]; then ANCHOR="$(cd "$dir" && pwd)"; break; fi
    done
fi
log() { echo "[compare-otp $(date +%H:%M:%S)] $*" >&2; }
rt() { if [ -n "${RT:-}" ]; then chrt -f 1 "$@"; else "$@"; fi; }

if [ -z "${SKIP_OTP:-}" ]; then
    [ -n "$ANCHOR" ] && [ -x "$ANCHOR/run.sh" ] || { echo "OTP anchor run.sh not found; set ANCHOR" >&2; exit 1; }
    log "OTP anchor from $ANCHOR (NS=\"$NS\" CYCLES=$CYCLES)"
    rm -rf "$OUT/otp"
    for step in packages build micro upgrade report; do
        run=()
        case "$step" in micro|upgrade) run=(rt) ;; esac
        WORK_DIR="$OUT/otp-work" RESULTS_DIR="$OUT/otp" NS="$NS" SBWT_NS= NO_TICKS_NS= \
            MICRO_VARIANTS=default CYCLES="$CYCLES" MICRO_REPS="$MICRO_REPS" \
            SPAWN_REPS="$SPAWN_REPS" SPAWN_NS="10000 100000" \
            "${run[@]}" "$ANCHOR/run.sh" "$step" > "$OUT/otp-$step.log" 2>&1 \
            || { echo "OTP anchor step $step failed; see $OUT/otp-$step.log" >&2; exit 1; }
    done
    rm -rf "$OUT/otp-work"
fi
command -v escript >/dev/null || { echo "escript not found: run without SKIP_OTP first (it installs Erlang)" >&2; exit 1; }
escript "$REPO/benches/compare/otp_figures.escript" "$OUT/otp" > "$OUT/otp.tsv"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ -z "${SKIP_RELUP:-}" ]; then
    log "relup benches (NS=\"$NS\" CYCLES=$CYCLES)"
    rm -f "$OUT/relup.jsonl"
    rm -rf "$TARGET_DIR/criterion/call" "$TARGET_DIR/criterion/cast" "$TARGET_DIR/criterion/spawn"
    benches=(--bench messaging --bench spawn --bench upgrade --bench config)
    # Everything is built before the measurements (which may run under chrt): the benches
    # and the fixture modules they would otherwise build on first use.
    { cargo bench --no-run "${benches[@]}" \
        && env -u RUSTFLAGS cargo build --release --target-dir "$REPO/target/fixtures" \
            -p relup-fixture-counter-v1 -p relup-fixture-counter-v2 \
            -p relup-fixture-worker-v1 -p relup-fixture-worker-v2 -p relup-example-ticker-v040; \
    } > "$OUT/relup-build.log" 2>&1 \
        || { echo "building relup's benches failed; see $OUT/relup-build.log" >&2; exit 1; }
    RELUP_BENCH_JSON="$OUT/relup.jsonl" RELUP_BENCH_NS="$NS" RELUP_BENCH_CYCLES="$CYCLES" \
        rt cargo bench "${benches[@]}" > "$OUT/relup-bench.log" 2>&1 \
        || { echo "relup benches failed; see $OUT/relup-bench.log" >&2; exit 1; }
    mkdir -p "$OUT/criterion"
    for group in call cast spawn; do
        rm -rf "$OUT/criterion/$group"
        cp -r "$TARGET_DIR/criterion/$group" "$OUT/criterion/"
    done
fi

echo "relup at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')${RT:+ (both sides under chrt -f 1)} vs $(grep -m1 '^OTP_VERSION' "$OUT/otp/versions.txt" 2>/dev/null || echo 'OTP'), $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(date -u +%Y-%m-%dT%H:%MZ)"
python3 "$REPO/benches/compare/compare.py" --otp "$OUT/otp.tsv" --relup "$OUT/relup.jsonl" \
    --criterion "$OUT/criterion"
