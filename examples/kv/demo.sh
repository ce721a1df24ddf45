#!/usr/bin/env bash
# The kv example end to end (examples/kv/README.md): build releases 0.1.0 and 0.2.0, deploy
# 0.1.0 into a temporary root, start the node on a free loopback port, write keys with
# redis-cli, then run redis-benchmark back to back (and kv-probe, one connection PINGing back to
# back) while upgrading to 0.2.0 and downgrading to 0.1.0 three times. It checks what a person
# would: every redis-benchmark run exits 0 (it stops at the first error reply or dropped
# connection), every key reads back with its value after every step, 0.2.0's INCRBY works only
# on 0.2.0, the probe's connection survives them all, and the release statuses are right.
# Only 127.0.0.1 is used. Needs redis-tools (installed with apt-get when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf '\n\033[31mKV DEMO FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

CYCLES="${CYCLES:-3}"
if ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
    say "installing redis-tools (redis-benchmark, redis-cli)"
    [ "$(id -u)" = 0 ] || die "redis-tools is missing and installing it needs root: apt-get install redis-tools"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools >/dev/null; } \
        || die "cannot install redis-tools"
fi

cargo build --quiet -p relup -p relup-example-kv-probe
RELUP="$PWD/target/debug/relup"
PROBE="$PWD/target/debug/kv-probe"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-kv.XXXXXX")"
ROOT="$WORK/root"
cleanup() {
    jobs -p | xargs -r kill 2>/dev/null || true
    if [ -S "$ROOT/run/control.sock" ]; then "$RELUP" --root "$ROOT" stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say "build releases 0.1.0 and 0.2.0"
for v in 0.1.0 0.2.0; do "$RELUP" release "examples/kv/v$v" --out "$WORK/out"; done

say "deploy 0.1.0, listen on a free loopback port, start"
"$RELUP" deploy "$WORK/out/kv-0.1.0.tar.gz" "$ROOT"
mkdir -p "$ROOT/config"
printf '[kv.kv_server]\nlisten = "127.0.0.1:0"\n' >"$ROOT/config/config.toml"
"$RELUP" --root "$ROOT" start
ADDR="$(grep -o 'listening on [0-9.:]*' "$ROOT/log/node.log" | head -n 1 | awk '{print $3}')"
PORT="${ADDR##*:}"
[ -n "$PORT" ] || die "no listening line in $ROOT/log/node.log"
echo "   kv listens on $ADDR"
"$RELUP" --root "$ROOT" unpack "$WORK/out/kv-0.2.0.tar.gz"
cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# Writes 200 keys tagged $1 and appends "key value" lines to $WORK/written.
write_keys() {
    local replies
    replies="$(for i in $(seq 1 200); do
        echo "SET key:$1:$i value-$1-$i"; echo "key:$1:$i value-$1-$i" >>"$WORK/written"
    done | cli)"
    [ "$(grep -c '^OK$' <<<"$replies")" = 200 ] || die "a SET of batch $1 did not answer OK"
}
# Reads every key written so far and compares.
check_keys() {
    local got want
    got="$(awk '{print "GET " $1}' "$WORK/written" | cli)"
    want="$(awk '{print $2}' "$WORK/written")"
    [ "$got" = "$want" ] || die "keys differ $1: $(diff <(echo "$want") <(echo "$got") | head -n 5)"
    echo "   $(wc -l <"$WORK/written") keys read back with their values $1"
}

say "write keys with redis-cli"
: >"$WORK/written"
write_keys start
cli SET counter 100 >/dev/null
check_keys "before any upgrade"

say "load: redis-benchmark back to back, kv-probe PINGing on one connection"
touch "$WORK/running"
(
    n=0
    while [ -e "$WORK/running" ]; do
        n=$((n + 1))
        if ! timeout 120 redis-benchmark -h 127.0.0.1 -p "$PORT" -n 20000 -c 20 -r 1000 -P 4 \
            -t set,get,incr,ping --csv >"$WORK/bench.$n.csv" 2>"$WORK/bench.$n.err"; then
            echo "run $n failed" >>"$WORK/bench.failed"
        fi
    done
) &
LOAD=$!
"$PROBE" "127.0.0.1:$PORT" 600 "$WORK/running" >"$WORK/probe.out" 2>&1 &
PROBE_PID=$!
sleep 1

for c in $(seq 1 "$CYCLES"); do
    say "cycle $c: upgrade to 0.2.0 under load"
    "$RELUP" --root "$ROOT" upgrade 0.2.0 | tail -n 1
    check_keys "after upgrade $c"
    echo "   INCRBY counter 5 -> $(cli INCRBY counter 5)   (0.2.0 has INCRBY)"
    write_keys "up$c"
    say "cycle $c: downgrade to 0.1.0 under load"
    "$RELUP" --root "$ROOT" downgrade 0.1.0 | tail -n 1
    check_keys "after downgrade $c"
    reply="$(cli INCRBY counter 5)"
    case "$reply" in *"unknown command"*) echo "   INCRBY -> $reply";; *) die "0.1.0 answered INCRBY: $reply";; esac
    write_keys "down$c"
done
rm -f "$WORK/running"
wait "$LOAD"
wait "$PROBE_PID" || die "kv-probe: $(cat "$WORK/probe.out")"

say "results"
[ ! -e "$WORK/bench.failed" ] || die "$(cat "$WORK/bench.failed"); $(cat "$WORK"/bench.*.err | tail -n 3)"
RUNS="$(ls "$WORK"/bench.*.csv | wc -l)"
for f in "$WORK"/bench.*.csv; do
    for t in PING_INLINE PING_MBULK SET GET INCR; do grep -q "^\"$t\"," "$f" || die "no $t result in $f"; done
done
echo "   $RUNS redis-benchmark runs (each 5 x 20000 requests, 20 clients, pipeline 4): all exited 0"
echo "   last run:"; sed 's/^/     /' "$(ls "$WORK"/bench.*.csv | sort -V | tail -n 1)"
echo "   kv-probe, one connection for the whole run: $(cat "$WORK/probe.out")"
echo "   (max_ms: the longest a PING waited, under redis-benchmark load, upgrades included)"
[ "$(cli GET counter)" = "$((100 + 5 * CYCLES))" ] || die "counter is $(cli GET counter), expected $((100 + 5 * CYCLES))"
echo "   counter = $(cli GET counter) (100 + $CYCLES INCRBY 5 on 0.2.0)"
"$RELUP" --root "$ROOT" releases
RELEASES_NOW="$("$RELUP" --root "$ROOT" releases)"
grep -q '0.1.0 permanent' <<<"$RELEASES_NOW" || die "0.1.0 is not permanent: $RELEASES_NOW"
"$RELUP" --root "$ROOT" stop
say "kv demo passed: $CYCLES upgrade/downgrade cycles under redis-benchmark, no failed request, no lost key"
