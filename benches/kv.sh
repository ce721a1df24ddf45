#!/usr/bin/env bash
# The kv example against redis-benchmark, in one run (BENCHMARKS.md has results):
#  1. kv (relup node, release build) without upgrades,
#  2. kv while upgrade 0.2.0 / downgrade 0.1.0 cycles run back to back,
#  3. a real redis-server (--save "" --appendonly no) on another free loopback port,
# each with redis-benchmark -c 50 -t set,get,incr,ping, unpipelined (-P 1) and pipelined (-P 16).
# Then the stall: kv-probe PINGs back to back on one connection (no other load) for a while
# without upgrades, then while upgrade/downgrade cycles run; its longest wait is the longest
# a request stalled. Only 127.0.0.1 is used; every step is bounded in requests and time.
# First memory: MEMKEYS keys (SET key:i value-i, written with redis-cli --pipe) into each fresh
# server, and the resident memory (VmRSS) each process gained, per key.
# Needs redis-tools and redis-server (installed with apt-get when missing, as root).
#
#   benches/kv.sh                 # N=100000 requests per test, 6 upgrade cycles for the probe
#   N=20000 CYCLES=2 benches/kv.sh
#   KV=table benches/kv.sh        # the kv on a node table: 0.3.0, cycles 0.3.1 <-> 0.3.0
#   MEMKEYS=0 benches/kv.sh       # no memory section (default 1000000 keys)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100000}"
CYCLES="${CYCLES:-6}"
MEMKEYS="${MEMKEYS:-1000000}"
case "${KV:-state}" in
    state) FROM=0.1.0 TO=0.2.0 ;;
    table) FROM=0.3.0 TO=0.3.1 ;;
    *) echo "benches/kv.sh: KV is state or table, not ${KV}" >&2; exit 1 ;;
esac
die() { echo "benches/kv.sh: $*" >&2; exit 1; }
need=""
command -v redis-benchmark >/dev/null || need="redis-tools"
command -v redis-server >/dev/null || need="$need redis-server"
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || die "missing $need (apt-get install $need needs root)"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null; }
fi

cargo build --quiet --release -p relup -p relup-example-kv-probe
RELUP="$PWD/target/release/relup"
PROBE="$PWD/target/release/kv-probe"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-kv-bench.XXXXXX")"
ROOT="$WORK/root"
REDIS_PID=""
cleanup() {
    rm -f "$WORK/cycling"
    if [ -S "$ROOT/run/control.sock" ]; then "$RELUP" --root "$ROOT" stop >/dev/null 2>&1 || true; fi
    [ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for v in "$FROM" "$TO"; do "$RELUP" release "examples/kv/v$v" --out "$WORK/out" >/dev/null 2>&1; done
"$RELUP" deploy "$WORK/out/kv-$FROM.tar.gz" "$ROOT" >/dev/null
mkdir -p "$ROOT/config"
printf '[kv.kv_server]\nlisten = "127.0.0.1:0"\n' >"$ROOT/config/config.toml"
"$RELUP" --root "$ROOT" start >/dev/null
KV_PORT="$(grep -o 'listening on [0-9.:]*' "$ROOT/log/node.log" | head -n 1 | sed 's/.*://')"
"$RELUP" --root "$ROOT" unpack "$WORK/out/kv-$TO.tar.gz" >/dev/null

# A free loopback port for redis-server: nothing answers a connect there.
while :; do
    REDIS_PORT=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null || break
done
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Upgrade/downgrade cycles back to back while $WORK/cycling exists; counts them in $WORK/cycles
# and keeps relup's own "longest pause" lines.
cycle_loop() {
    local n=0
    while [ -e "$WORK/cycling" ]; do
        "$RELUP" --root "$ROOT" upgrade "$TO" | tail -n 1 >>"$WORK/pauses"
        "$RELUP" --root "$ROOT" downgrade "$FROM" | tail -n 1 >>"$WORK/pauses"
        n=$((n + 1)); echo "$n" >"$WORK/cycles"
        [ -z "${1:-}" ] || [ "$n" -lt "$1" ] || break
    done
}

# bench LABEL PORT PIPELINE: one redis-benchmark run; prints one row per test.
bench() {
    local out
    out="$(timeout 600 redis-benchmark -h 127.0.0.1 -p "$2" -n "$N" -c 50 -r 10000 -P "$3" \
        -t set,get,incr,ping --csv 2>"$WORK/bench.err")" || die "redis-benchmark failed on $1: $(tail -n 2 "$WORK/bench.err")"
    echo "$out" | awk -F'","' -v label="$1" -v p="$3" 'NR > 1 {
        gsub(/"/, "", $1); gsub(/"/, "", $7);
        printf "| %-22s | %2s | %-11s | %10.0f | %8s |\n", label, p, $1, $2, $7 }'
}

if [ "$MEMKEYS" -gt 0 ]; then
    # rss PID: resident KiB.
    rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
    # fill PORT: MEMKEYS fresh keys (both servers are flushed first).
    fill() {
        redis-cli -p "$1" FLUSHALL >/dev/null
        awk -v n="$MEMKEYS" 'BEGIN { for (i = 0; i < n; i++) { k = "key:" i; v = "value-" i;
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v } }' \
            | redis-cli -p "$1" --pipe >"$WORK/fill.out" 2>&1 || die "fill failed: $(cat "$WORK/fill.out")"
        local keys; keys="$(redis-cli -p "$1" DBSIZE)"
        case "$keys" in # kv 0.1.0 has no DBSIZE
            *[!0-9]*) ;;
            *) [ "$keys" = "$MEMKEYS" ] || die "expected $MEMKEYS keys on port $1, DBSIZE says $keys" ;;
        esac
    }
    NODE_PID="$(cat "$ROOT/run/node.pid")"
    echo "## memory: $MEMKEYS keys (key:i = value-i), resident memory gained"
    echo
    echo "| server | RSS before (KiB) | RSS after (KiB) | bytes per key |"
    echo "| --- | ---: | ---: | ---: |"
    for server in "kv $FROM (relup):$KV_PORT:$NODE_PID" "redis-server:$REDIS_PORT:$REDIS_PID"; do
        IFS=: read -r label port pid <<<"$server"
        redis-cli -p "$port" FLUSHALL >/dev/null
        before="$(rss "$pid")"
        fill "$port"
        after="$(rss "$pid")"
        echo "| $label | $before | $after | $(( (after - before) * 1024 / MEMKEYS )) |"
        redis-cli -p "$port" FLUSHALL >/dev/null
    done
    echo
fi

echo "## redis-benchmark -n $N -c 50 -r 10000 -t set,get,incr,ping (requests/s, p99 ms)"
echo
echo "| server                 |  P | test        |      req/s |  p99 ms |"
echo "| ---------------------- | -- | ----------- | ---------- | ------- |"
for P in 1 16; do
    bench "kv $FROM (relup)" "$KV_PORT" "$P"
    touch "$WORK/cycling"; : >"$WORK/cycles"
    cycle_loop & CYC=$!
    bench "kv, upgrades running" "$KV_PORT" "$P"
    rm -f "$WORK/cycling"; wait "$CYC"
    echo "| (upgrade+downgrade cycles during that run: $(cat "$WORK/cycles")) | | | | |"
    bench "redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)" "$REDIS_PORT" "$P"
done

echo
echo "## stall: kv-probe, one connection, PING back to back"
echo
touch "$WORK/probing"
BASE="$("$PROBE" "127.0.0.1:$KV_PORT" 5)" || die "probe failed: $BASE"
echo "- no upgrades, 5 s: $BASE"
: >"$WORK/pauses"; touch "$WORK/cycling"
"$PROBE" "127.0.0.1:$KV_PORT" 600 "$WORK/cycling" >"$WORK/probe.out" 2>&1 & PROBE_PID=$!
sleep 0.5
cycle_loop "$CYCLES"
sleep 0.5
rm -f "$WORK/cycling"
wait "$PROBE_PID" || die "probe failed: $(cat "$WORK/probe.out")"
echo "- during $CYCLES upgrade+downgrade cycles: $(cat "$WORK/probe.out")"
echo "- relup's own longest pause per install (ms): $(grep -o 'longest pause [0-9.]*' "$WORK/pauses" | awk '{print $3}' | sort -n | tr '\n' ' ')"
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
