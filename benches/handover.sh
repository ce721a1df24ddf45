#!/usr/bin/env bash
# The stall a client sees while the node hands itself over (`relup restart`, issue 18), by
# number of idle client connections and by data size, beside a plain stop + start of the
# same node (which drops every connection and loses the data). BENCHMARKS.md has results.
#
# For each CONNS x KEYS: a fresh kv 0.3.0 node (release build, data in a node table) gets
# KEYS keys (redis-benchmark SETs with -r KEYS), CONNS idle connections (a Python holder that
# PINGs each once, then waits), and kv-probe PINGing back to back on one more connection;
# the node hands over ROUNDS times; the probe's longest wait is the longest stall. Afterwards
# every idle connection must answer PING again (none dropped). Then stop + start: the time
# from the stop request until a new connection is answered.
#
#   benches/handover.sh                         # CONNS="10 1000 10000" KEYS="0 100000" ROUNDS=5
#   CONNS="10 1000" KEYS=0 ROUNDS=3 benches/handover.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS="${CONNS:-10 1000 10000}"
KEYS="${KEYS:-0 100000}"
ROUNDS="${ROUNDS:-5}"
die() { echo "benches/handover.sh: $*" >&2; exit 1; }
command -v redis-benchmark >/dev/null || die "needs redis-benchmark (apt-get install redis-tools)"
command -v python3 >/dev/null || die "needs python3"

cargo build --quiet --release -p relup -p relup-example-kv-probe
RELUP="$PWD/target/release/relup"
PROBE="$PWD/target/release/kv-probe"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-handover-bench.XXXXXX")"
ROOT=""
HOLDER=""
cleanup() {
    [ -z "$HOLDER" ] || kill "$HOLDER" 2>/dev/null || true
    if [ -n "$ROOT" ] && [ -S "$ROOT/run/control.sock" ]; then
        "$RELUP" --root "$ROOT" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
"$RELUP" release examples/kv/v0.3.0 --out "$WORK/out" >/dev/null 2>&1

# Holds N idle connections: PINGs each once, says ready, waits for the stop file to go,
# then PINGs each again and prints how many answered.
cat >"$WORK/holder.py" <<'PY'
import os, socket, sys, time
port, n, ready, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
    conns.append(s)
for s in conns:
    s.settimeout(30)
    assert s.recv(7) == b"+PONG\r\n"
open(ready, "w").close()
while os.path.exists(hold):
    time.sleep(0.05)
ok = 0
for s in conns:
    try:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        if s.recv(7) == b"+PONG\r\n":
            ok += 1
    except OSError:
        pass
print(f"idle={n} answered_after={ok}")
PY

run_case() {
    local conns="$1" keys="$2"
    ROOT="$WORK/root-$conns-$keys"
    "$RELUP" deploy "$WORK/out/kv-0.3.0.tar.gz" "$ROOT" >/dev/null
    mkdir -p "$ROOT/config"
    printf '[kv.kv_server]\nlisten = "127.0.0.1:0"\n' >"$ROOT/config/config.toml"
    "$RELUP" --root "$ROOT" start >/dev/null
    local port
    port="$(grep -o 'listening on [0-9.:]*' "$ROOT/log/node.log" | tail -n 1 | sed 's/.*://')"
    if [ "$keys" -gt 0 ]; then
        redis-benchmark -h 127.0.0.1 -p "$port" -t set -n "$keys" -r "$keys" -d 32 -c 20 -P 16 -q >/dev/null
    fi
    touch "$WORK/hold"; rm -f "$WORK/ready"
    python3 "$WORK/holder.py" "$port" "$conns" "$WORK/ready" "$WORK/hold" >"$WORK/holder.out" 2>&1 & HOLDER=$!
    while [ ! -f "$WORK/ready" ]; do
        kill -0 "$HOLDER" 2>/dev/null || die "the connection holder failed: $(cat "$WORK/holder.out")"
        sleep 0.1
    done
    touch "$WORK/probing"
    "$PROBE" "127.0.0.1:$port" 600 "$WORK/probing" >"$WORK/probe.out" 2>&1 & local probe=$!
    sleep 0.5
    local stalls="" images=""
    for _ in $(seq "$ROUNDS"); do
        local json
        json="$("$RELUP" --root "$ROOT" --json restart)" || die "restart failed: $json"
        stalls="$stalls $(echo "$json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["stall_micros"]/1000, 1))')"
        images="$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["image_bytes"])')"
        sleep 0.3
    done
    rm -f "$WORK/probing"
    wait "$probe" || die "the probe failed (a dropped connection?): $(cat "$WORK/probe.out")"
    rm -f "$WORK/hold"; wait "$HOLDER" || die "the holder failed: $(cat "$WORK/holder.out")"; HOLDER=""
    local size
    size="$(redis-cli -p "$port" dbsize 2>/dev/null || echo '?')"
    echo "| $conns | $keys | $(grep -o 'max_ms=[0-9.]*' "$WORK/probe.out" | cut -d= -f2) |$stalls | $images | $(cat "$WORK/holder.out") | $size |"
    # A plain stop + start: every connection and key is gone; the time until a new one is served.
    local t0 t1
    t0="$(date +%s%N)"
    "$RELUP" --root "$ROOT" stop >/dev/null
    "$RELUP" --root "$ROOT" start >/dev/null
    port="$(grep -o 'listening on [0-9.:]*' "$ROOT/log/node.log" | tail -n 1 | sed 's/.*://')"
    until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do sleep 0.01; done
    t1="$(date +%s%N)"
    echo "|   stop + start | | $(( (t1 - t0) / 1000000 )) (no service) | | | all $conns dropped | $(redis-cli -p "$port" dbsize) |"
    "$RELUP" --root "$ROOT" stop >/dev/null
    ROOT=""
}

echo "## handover stall: kv 0.3.0, kv-probe PINGs back to back through $ROUNDS relup restart"
echo
echo "| idle conns | keys | probe longest wait (ms) | relup's stall per handover (ms) | image bytes | idle conns after | keys after |"
echo "|---|---|---|---|---|---|---|"
for c in $CONNS; do
    for k in $KEYS; do
        run_case "$c" "$k"
    done
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
