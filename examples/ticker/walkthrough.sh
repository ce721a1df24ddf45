#!/usr/bin/env bash
# The ticker tutorial end to end, as an operator would do it (docs/tutorial.md):
# build the releases, deploy 0.1.0 into a temporary root, start the node, see a broken 0.2.0
# fail its probation and roll back by itself, upgrade to the real 0.2.0,
# downgrade to 0.1.0, upgrade to 0.3.0 through the chain 0.1.0 -> 0.2.0 -> 0.3.0, upgrade to
# 0.4.0, change the interval through config/config.toml.new (rejects go to .rej), stop.
# After each step it checks what a person would look at: the tick interval really changed,
# the counter kept counting, and the release statuses are right. Any miss fails loudly.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf '\n\033[31mWALKTHROUGH FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

cargo build --quiet -p relup
RELUP="$PWD/target/debug/relup"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-ticker.XXXXXX")"
ROOT="$WORK/root"
LOG="$ROOT/log/node.log"
cleanup() {
    if [ -S "$ROOT/run/control.sock" ]; then "$RELUP" --root "$ROOT" stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Tick lines of the node log: "<time> [info] ticker <pid>: tick N (interval X ms, version V)".
# Prints "epoch_ms count interval version" per tick seen after log line $1.
ticks_after() {
    tail -n "+$(($1 + 1))" "$LOG" | grep ' tick [0-9]* (interval ' | while read -r line; do
        at="${line%% *}"
        rest="${line#* tick }"
        count="${rest%% *}"
        interval="$(sed -E 's/.*interval ([0-9]+) ms.*/\1/' <<<"$rest")"
        version="$(sed -E 's/.*version ([0-9.]+)\).*/\1/' <<<"$rest")"
        echo "$(date -d "$at" +%s%3N) $count $interval $version"
    done
}
log_lines() { wc -l <"$LOG"; }

# Waits until 3 ticks of version $2 are logged after line $1 (timeout $3 s); prints them.
wait_ticks() {
    local mark="$1" version="$2" deadline=$((SECONDS + $3)) seen
    while :; do
        seen="$(ticks_after "$mark" | awk -v v="$version" '$4 == v')"
        if [ "$(grep -c . <<<"$seen")" -ge 3 ]; then echo "$seen" | head -n 3; return; fi
        [ "$SECONDS" -lt "$deadline" ] || die "no 3 ticks of version $version within $3 s; log tail: $(tail -n 3 "$LOG")"
        sleep 0.2
    done
}

last_count() { ticks_after 0 | tail -n 1 | awk '{print $2}'; }
# The count of the last tick logged by a version other than $1: once $1 ticks, the last tick
# of the code it replaced (BEFORE, read before the upgrade, misses a tick that comes between
# that read and the install).
last_count_not() { ticks_after 0 | awk -v v="$1" '$4 != v' | tail -n 1 | awk '{print $2}'; }

# Checks 3 ticks: version, interval announced, gaps between ticks near it, counting on.
check_ticks() {
    local ticks="$1" version="$2" interval="$3" previous="$4"
    echo "$ticks" | awk '{printf "   tick %s: interval %s ms, version %s\n", $2, $3, $4}'
    local first gap1 gap2
    first="$(awk 'NR == 1 {print $2}' <<<"$ticks")"
    [ "$(awk 'NR == 1 {print $3}' <<<"$ticks")" = "$interval" ] || die "version $version announces interval $(awk 'NR==1{print $3}' <<<"$ticks"), expected $interval"
    [ "$first" -eq $((previous + 1)) ] || die "the counter did not carry over: last tick before was $previous, first of $version is $first"
    gap1="$(awk 'NR == 2 {a = $1} NR == 3 {print $1 - a}' <<<"$ticks")"
    gap2="$(awk -v i="$interval" 'BEGIN {print i}')"
    # Between the 2nd and 3rd tick the new interval is in force (the 1st was armed by the old code).
    if [ "$gap1" -lt $((gap2 * 7 / 10)) ] || [ "$gap1" -gt $((gap2 * 2 + 1000)) ]; then
        die "ticks of $version are $gap1 ms apart, expected about $interval ms"
    fi
    echo "   -> ticks $gap1 ms apart (interval $interval ms), counter continued from $previous"
}

check_status() {
    local expected="$1" got
    got="$("$RELUP" --root "$ROOT" releases | tr '\n' ' ')"
    echo "   releases: $got"
    for want in $expected; do
        grep -q "${want/=/ }" <<<"$got" || die "expected release status '${want/=/ }', got: $got"
    done
}

say "build the four releases"
for v in 0.1.0 0.2.0 0.3.0 0.4.0; do "$RELUP" release "examples/ticker/v$v" --out "$WORK/out"; done

say "deploy 0.1.0 and start the node"
"$RELUP" deploy "$WORK/out/ticker-0.1.0.tar.gz" "$ROOT"
"$RELUP" --root "$ROOT" start
TICKS="$(wait_ticks 0 0.1.0 15)"
check_ticks "$TICKS" 0.1.0 1000 0
check_status "0.1.0=permanent"

say "a broken 0.2.0: its health check fails during probation, relup rolls it back by itself"
"$RELUP" release examples/ticker/v0.2.0-broken --out "$WORK/broken"
"$RELUP" --root "$ROOT" unpack "$WORK/broken/ticker-0.2.0.tar.gz"
MARK="$(log_lines)"; BEFORE="$(last_count)"
if OUT="$("$RELUP" --root "$ROOT" upgrade 0.2.0 2>&1)"; then
    echo "$OUT"; die "the broken 0.2.0 was accepted"
fi
echo "$OUT"
grep -q "probation of 0.2.0 failed: health check of" <<<"$OUT" || die "relup did not say the health check failed"
grep -q "rolled back to 0.1.0" <<<"$OUT" || die "relup did not say it rolled back"
TICKS="$(wait_ticks "$MARK" 0.1.0 15)"
FIRST="$(awk 'NR == 1 {print $2}' <<<"$TICKS")"
[ "$FIRST" -gt "$BEFORE" ] || die "the counter did not survive the rollback: $FIRST after $BEFORE"
echo "   -> 0.1.0 ticks again from $FIRST (last before the broken upgrade: $BEFORE)"
check_status "0.1.0=permanent 0.2.0=unpacked"
"$RELUP" --root "$ROOT" log | grep -E "probation 0.2.0" | tail -n 3

say "upgrade to 0.2.0 (default interval 5000 ms, new state shape)"
# The broken 0.2.0 is only unpacked (never live): --force replaces it with the real one.
"$RELUP" --root "$ROOT" unpack --force "$WORK/out/ticker-0.2.0.tar.gz"
MARK="$(log_lines)"; BEFORE="$(last_count)"
"$RELUP" --root "$ROOT" upgrade 0.2.0
TICKS="$(wait_ticks "$MARK" 0.2.0 20)"
BEFORE_NOW="$(ticks_after 0 | awk '$4 == "0.1.0"' | tail -n 1 | awk '{print $2}')"
check_ticks "$TICKS" 0.2.0 5000 "${BEFORE_NOW:-$BEFORE}"
check_status "0.2.0=permanent 0.1.0=old"

say "downgrade to 0.1.0 (state migrated down, interval back to 1000 ms)"
MARK="$(log_lines)"; BEFORE="$(last_count)"
"$RELUP" --root "$ROOT" downgrade 0.1.0
TICKS="$(wait_ticks "$MARK" 0.1.0 15)"
BEFORE_NOW="$(last_count_not 0.1.0)"
check_ticks "$TICKS" 0.1.0 1000 "${BEFORE_NOW:-$BEFORE}"
check_status "0.1.0=permanent 0.2.0=old"

say "upgrade to 0.3.0: its appup covers only 0.2.0, so relup plans 0.1.0 -> 0.2.0 -> 0.3.0"
mkdir -p "$ROOT/releases/0.3.0"
cp "$WORK/out/ticker-0.3.0.tar.gz" "$ROOT/releases/0.3.0/"
MARK="$(log_lines)"; BEFORE="$(last_count)"
OUT="$("$RELUP" --root "$ROOT" upgrade 0.3.0)"
echo "$OUT"
grep -q "2 hops through 0.1.0 -> 0.2.0 -> 0.3.0" <<<"$OUT" || die "relup did not say it plans the chain"
TICKS="$(wait_ticks "$MARK" 0.3.0 15)"
# The last tick before 0.3.0's: of 0.1.0, or of 0.2.0 if one came between the two hops.
BEFORE_NOW="$(last_count_not 0.3.0)"
check_ticks "$TICKS" 0.3.0 500 "${BEFORE_NOW:-$BEFORE}"
check_status "0.3.0=permanent"

say "upgrade to 0.4.0: the interval comes from config again (default 1000 ms)"
"$RELUP" --root "$ROOT" unpack "$WORK/out/ticker-0.4.0.tar.gz"
MARK="$(log_lines)"; BEFORE="$(last_count)"
"$RELUP" --root "$ROOT" upgrade 0.4.0
TICKS="$(wait_ticks "$MARK" 0.4.0 15)"
BEFORE_NOW="$(ticks_after 0 | awk '$4 == "0.3.0"' | tail -n 1 | awk '{print $2}')"
check_ticks "$TICKS" 0.4.0 1000 "${BEFORE_NOW:-$BEFORE}"
check_status "0.4.0=permanent"

CFG="$ROOT/config"
# Waits until config.toml.new (and its work file) is consumed.
wait_consumed() {
    local deadline=$((SECONDS + 10))
    while [ -e "$CFG/config.toml.new" ] || [ -e "$CFG/config.toml.new.work" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "config.toml.new was not consumed within 10 s"
        sleep 0.1
    done
}

say "config: a broken line is rejected into config.toml.rej with its reason"
echo broken >>"$CFG/config.toml.new"
wait_consumed
tail -n 2 "$CFG/config.toml.rej"
grep -q "expected app:module:key:value" "$CFG/config.toml.rej" || die "no reason in config.toml.rej"

say "config: ticker:ticker:ticker:1500 -> interval 1500 ms, no restart"
MARK="$(log_lines)"; BEFORE="$(last_count)"
echo ticker:ticker:ticker:1500 >>"$CFG/config.toml.new"
wait_consumed
cat "$CFG/config.toml" | grep -v '^#'
"$RELUP" --root "$ROOT" config get ticker
TICKS="$(ticks_after "$MARK" | awk '$3 == 1500' || true)"
deadline=$((SECONDS + 15))
while [ "$(grep -c . <<<"$TICKS")" -lt 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "no 3 ticks at 1500 ms; log tail: $(tail -n 3 "$LOG")"
    sleep 0.2; TICKS="$(ticks_after "$MARK" | awk '$3 == 1500' || true)"
done
TICKS="$(head -n 3 <<<"$TICKS")"
FIRST="$(awk 'NR == 1 {print $2}' <<<"$TICKS")"
check_ticks "$TICKS" 0.4.0 1500 "$((FIRST - 1))"
[ "$FIRST" -gt "$BEFORE" ] || die "the counter restarted: $FIRST after $BEFORE"

say "config: a negative or non-integer interval is rejected; relup config set checks the same"
echo "ticker:ticker:ticker:-5" >>"$CFG/config.toml.new"
echo "ticker:ticker:ticker:2.5" >>"$CFG/config.toml.new"
wait_consumed
tail -n 4 "$CFG/config.toml.rej"
[ "$(grep -c '^# .*line [12]: ticker:ticker_server:ticker: expected' "$CFG/config.toml.rej")" -ge 2 ] || die "bad intervals not rejected"
if "$RELUP" --root "$ROOT" config set ticker:ticker_server:ticker:-5; then die "config set took -5"; fi
INTERVAL_NOW="$("$RELUP" --root "$ROOT" config get ticker:ticker)"
grep -q "= 1500" <<<"$INTERVAL_NOW" || die "the interval changed: $INTERVAL_NOW"

say "status, journal, stop"
"$RELUP" --root "$ROOT" status
"$RELUP" --root "$ROOT" log | tail -n 4
"$RELUP" --root "$ROOT" stop
say "walkthrough passed: 0.1.0 -> 0.2.0 -> 0.1.0 -> 0.3.0 (via 0.2.0) -> 0.4.0, counter intact, intervals 1000/5000/1000/500/1000 ms, then 1500 ms from config.toml.new, bad lines in .rej"
