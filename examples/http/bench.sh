#!/usr/bin/env bash
# What relup costs an HTTP service per request (BENCHMARKS.md, "HTTP service"): the same todo
# API measured under wrk (3 reads : 1 write, keep-alive) three ways, release builds, one after
# the other on this machine:
#   plain     relup-http-plain: release 0.1.0's handling code linked into a plain axum app
#   relup     relup-http serve: the same code as a cdylib module behind a node call
#   upgrades  relup-http serve while `relup upgrade 0.2.0` / `downgrade 0.1.0` run back to back
# Each run starts a fresh server, seeds it with POSTs for SEED seconds, then measures for
# SECONDS seconds. ROUNDS rounds of the three. Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_RUN="${SECONDS_RUN:-10}"
SEED="${SEED:-2}"
ROUNDS="${ROUNDS:-2}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --quiet --release -p relup -p relup-example-http -p relup-example-http-plain
RELUP="$PWD/target/release/relup"
HOST="$PWD/target/release/relup-http"
PLAIN="$PWD/target/release/relup-http-plain"
LUA="$PWD/examples/http/load.lua"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-http-bench.XXXXXX")"
cleanup() {
    rm -f "$WORK/cycling"
    jobs -p | xargs -r kill 2>/dev/null || true
    for r in "$WORK"/root*; do
        [ -S "$r/run/control.sock" ] && "$RELUP" --root "$r" stop >/dev/null 2>&1 || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
for v in 0.1.0 0.2.0; do "$RELUP" release "examples/http/v$v" --out "$WORK/out" >/dev/null; done

# Waits for "... listening on ADDR" in $1; prints ADDR.
addr_of() {
    for _ in $(seq 1 100); do
        grep -q 'listening on' "$1" && break
        sleep 0.1
    done
    grep -o 'listening on [0-9.:]*' "$1" | awk '{print $3}'
}

# Seeds the server at $1, then measures; prints "rps p50_ms p99_ms max_ms todos non2xx errors".
measure() {
    local url="$1" line count
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SEED}s" -s "$LUA" "$url" -- 1 1 >/dev/null
    count="$(curl -s "$url/version" | sed -n 's/.*"todos":\([0-9]*\).*/\1/p')"
    line="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --timeout 10s -s "$LUA" "$url" -- "$count" 4 | grep '^RESULT')"
    val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
    awk -v rps="$(val rps)" -v p50="$(val p50_us)" -v p99="$(val p99_us)" -v max="$(val max_us)" \
        -v n="$count" -v bad="$(val non2xx)" \
        -v err="$(($(val connect) + $(val read) + $(val write) + $(val timeout)))" \
        'BEGIN { printf "%s %.2f %.2f %.1f %s %s %s\n", rps, p50 / 1000, p99 / 1000, max / 1000, n, bad, err }'
}

run_plain() {
    "$PLAIN" 127.0.0.1:0 >"$WORK/plain.out" 2>&1 &
    local pid=$! addr
    addr="$(addr_of "$WORK/plain.out")"
    measure "http://$addr"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# $1: "upgrades" to cycle 0.1.0 <-> 0.2.0 for the whole measured run.
run_relup() {
    local root="$WORK/root.$RANDOM" addr cycler cycles
    "$RELUP" deploy "$WORK/out/todos-0.1.0.tar.gz" "$root" >/dev/null
    "$HOST" serve --root "$root" --listen 127.0.0.1:0 >"$root.out" 2>&1 &
    local pid=$!
    addr="$(addr_of "$root.out")"
    "$RELUP" --root "$root" unpack "$WORK/out/todos-0.2.0.tar.gz" >/dev/null
    : >"$WORK/cycles"
    if [ "${1:-}" = upgrades ]; then
        touch "$WORK/cycling"
        (
            sleep "$SEED"
            while [ -e "$WORK/cycling" ]; do
                "$RELUP" --root "$root" upgrade 0.2.0 | grep -o 'longest pause [0-9.]* ms' >>"$WORK/cycles"
                "$RELUP" --root "$root" downgrade 0.1.0 | grep -o 'longest pause [0-9.]* ms' >>"$WORK/cycles"
            done
        ) &
        cycler=$!
    fi
    measure "http://$addr"
    if [ "${1:-}" = upgrades ]; then
        rm -f "$WORK/cycling"
        wait "$cycler"
        cycles="$(wc -l <"$WORK/cycles")"
        echo "     $cycles installs during the run; their pauses (ms): $(awk '{print $3}' "$WORK/cycles" | sort -n | tr '\n' ' ')" >&2
    fi
    "$RELUP" --root "$root" stop >/dev/null
    wait "$pid" 2>/dev/null || true
}

echo "wrk -t$THREADS -c$CONNECTIONS, ${SECONDS_RUN}s measured after ${SEED}s of seeding POSTs; 3 reads : 1 write"
echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-10s %9s %8s %8s %8s %8s %7s %7s\n' run req/s p50_ms p99_ms max_ms todos non2xx errors
for round in $(seq 1 "$ROUNDS"); do
    for kind in plain relup upgrades; do
        case "$kind" in
            plain) result="$(run_plain)" ;;
            relup) result="$(run_relup)" ;;
            upgrades) result="$(run_relup upgrades)" ;;
        esac
        # shellcheck disable=SC2086
        printf '%-10s %9s %8s %8s %8s %8s %7s %7s\n' "$kind" $result
    done
done
