#!/usr/bin/env bash
# The http example end to end (examples/http/README.md): build releases 0.1.0 and 0.2.0 of
# the todo service, deploy 0.1.0 into a temporary root, run the service's own binary
# (`relup-http serve`: the relup node and an axum HTTP server) on a free loopback port, write
# todos with curl, then run wrk back to back (reads and writes) and a curl writer (one todo
# after the other) while the plain `relup` CLI upgrades to 0.2.0, downgrades to 0.1.0 and
# hands the node over to a new relup-http process (`relup restart`) three times. It checks
# what a person would: every wrk run had 0 non-2xx responses and 0 socket errors, every curl write answered 201, 0.2.0's endpoints answer only on 0.2.0, and at
# the end every todo (ids 1 to the last, wrk's included) reads back, with its title for every
# one whose title the demo knows. Only 127.0.0.1 is used. Needs wrk (installed with apt-get
# when missing, as root) and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf '\n\033[31mHTTP DEMO FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

CYCLES="${CYCLES:-3}"
BATCH="${BATCH:-50}"
if ! command -v wrk >/dev/null; then
    say "installing wrk"
    [ "$(id -u)" = 0 ] || die "wrk is missing and installing it needs root: apt-get install wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; } \
        || die "cannot install wrk"
fi
command -v curl >/dev/null || die "curl is missing"

cargo build --quiet -p relup -p relup-example-http
RELUP="$PWD/target/debug/relup"
HOST="$PWD/target/debug/relup-http"
LOAD_LUA="$PWD/examples/http/load.lua"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-http.XXXXXX")"
ROOT="$WORK/root"
cleanup() {
    rm -f "$WORK/running"
    jobs -p | xargs -r kill 2>/dev/null || true
    if [ -S "$ROOT/run/control.sock" ]; then "$RELUP" --root "$ROOT" stop >/dev/null 2>&1 || true; fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say "build releases 0.1.0 and 0.2.0"
for v in 0.1.0 0.2.0; do "$RELUP" release "examples/http/v$v" --out "$WORK/out"; done

say "deploy 0.1.0; run relup-http serve (node + HTTP server) on a free loopback port"
"$RELUP" deploy "$WORK/out/todos-0.1.0.tar.gz" "$ROOT"
"$HOST" serve --root "$ROOT" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>&1 &
for _ in $(seq 1 100); do grep -q 'http listening on' "$WORK/serve.out" && break; sleep 0.1; done
ADDR="$(grep -o 'http listening on [0-9.:]*' "$WORK/serve.out" | awk '{print $4}')"
[ -n "$ADDR" ] || die "relup-http serve did not start: $(cat "$WORK/serve.out")"
URL="http://$ADDR"
cat "$WORK/serve.out"
"$RELUP" --root "$ROOT" unpack "$WORK/out/todos-0.2.0.tar.gz"

# POSTs one todo titled $1; appends "id title" to $WORK/written. Fails on anything but 201.
post() {
    local out code id
    out="$(curl -s -w '\n%{http_code}' -X POST -H 'content-type: application/json' \
        -d "{\"title\":\"$1\"}" "$URL/todos")" || return 1
    code="$(tail -n 1 <<<"$out")"
    [ "$code" = 201 ] || { echo "POST $1: $code $(head -n 1 <<<"$out")"; return 1; }
    id="$(head -n 1 <<<"$out" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')"
    echo "$id $1" >>"$WORK/written"
}
write_batch() { for i in $(seq 1 "$BATCH"); do post "$1-$i" || die "a write of batch $1 failed"; done; }
# Reads back every todo the demo wrote and compares titles.
check_written() {
    local got want
    # A snapshot: the curl writer keeps appending meanwhile.
    cp "$WORK/written" "$WORK/written.snap"
    want="$(awk '{printf "%s %s\n", $1, $2}' "$WORK/written.snap")"
    got="$(awk '{print $1}' "$WORK/written.snap" | sed "s#^#$URL/todos/#" | xargs curl -s -w '\n' \
        | sed -n 's/.*"id":\([0-9]*\),.*"title":"\([^"]*\)".*/\1 \2/p')"
    [ "$got" = "$want" ] || die "todos differ $1: $(diff <(echo "$want") <(echo "$got") | head -n 5)"
    echo "   $(wc -l <"$WORK/written.snap") todos read back with their titles $1"
}
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

say "write todos with curl"
: >"$WORK/written"
write_batch start
check_written "before any upgrade"

say "load: wrk back to back (2 threads, 16 connections, 3 reads : 1 write), and a curl writer"
touch "$WORK/running"
(
    n=0
    while [ -e "$WORK/running" ]; do
        n=$((n + 1))
        wrk -t2 -c16 -d4s --timeout 10s -s "$LOAD_LUA" "$URL" -- "$BATCH" 4 >"$WORK/wrk.$n.out" 2>&1 \
            || echo "wrk run $n exited $?" >>"$WORK/wrk.failed"
    done
) &
LOAD=$!
(
    i=0
    while [ -e "$WORK/running" ]; do
        i=$((i + 1))
        post "during-$i" >>"$WORK/writer.failed" || true
    done
) &
WRITER=$!
sleep 2

for c in $(seq 1 "$CYCLES"); do
    say "cycle $c: upgrade to 0.2.0 under load"
    "$RELUP" --root "$ROOT" upgrade 0.2.0 | tail -n 1
    check_written "after upgrade $c"
    [ "$(status_of "$URL/stats")" = 200 ] || die "GET /stats is not 200 on 0.2.0"
    echo "   POST /todos/1/done -> $(curl -s -X POST "$URL/todos/1/done")   GET /stats -> $(curl -s "$URL/stats")"
    write_batch "up$c"
    sleep 1
    say "cycle $c: downgrade to 0.1.0 under load"
    "$RELUP" --root "$ROOT" downgrade 0.1.0 | tail -n 1
    check_written "after downgrade $c"
    [ "$(status_of "$URL/stats")" = 404 ] || die "GET /stats is not 404 on 0.1.0"
    echo "   GET /stats -> 404 (0.1.0 has no such endpoint)"
    write_batch "down$c"
    sleep 1
    say "cycle $c: relup restart under load (a new relup-http process takes over, issue 18)"
    before="$(cat "$ROOT/run/node.pid")"
    "$RELUP" --root "$ROOT" restart
    after="$(cat "$ROOT/run/node.pid")"
    [ "$after" != "$before" ] || die "relup restart: the same node ($before) still serves"
    check_written "after handover $c"
    write_batch "handover$c"
    sleep 1
done
rm -f "$WORK/running"
wait "$LOAD"
wait "$WRITER"

say "results"
[ ! -e "$WORK/wrk.failed" ] || die "$(cat "$WORK/wrk.failed")"
[ ! -s "$WORK/writer.failed" ] || die "the curl writer: $(head -n 3 "$WORK/writer.failed")"
RUNS=0; REQUESTS=0; NON2XX=0; SOCKET=0
for f in "$WORK"/wrk.*.out; do
    line="$(grep '^RESULT' "$f")" || die "no RESULT in $f: $(cat "$f")"
    val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
    RUNS=$((RUNS + 1))
    REQUESTS=$((REQUESTS + $(val requests)))
    NON2XX=$((NON2XX + $(val non2xx)))
    SOCKET=$((SOCKET + $(val connect) + $(val read) + $(val write) + $(val timeout)))
    echo "   wrk run $RUNS: $line"
done
echo "   $RUNS wrk runs, $REQUESTS requests: $NON2XX non-2xx responses, $SOCKET socket errors"
[ "$NON2XX" = 0 ] || die "$NON2XX non-2xx responses under wrk"
[ "$SOCKET" = 0 ] || die "$SOCKET socket errors under wrk"
DURING="$(grep -c ' during-' "$WORK/written")"
echo "   the curl writer: $DURING todos written during the cycles, every one answered 201"
check_written "at the end (before, between and during the cycles)"
# Every todo, wrk's included: ids run from 1 to the count with no gap, each reads back.
COUNT="$(curl -s "$URL/version" | sed -n 's/.*"todos":\([0-9]*\).*/\1/p')"
curl -s -w '\n' "$URL/todos/[1-$COUNT]" >"$WORK/all.json"
BAD="$(awk -v n="$COUNT" '!index($0, "{\"id\":" NR ",\"title\":") {bad++} END {print bad + (NR != n)}' "$WORK/all.json")"
[ "$BAD" = 0 ] || die "$BAD of $COUNT todos do not read back: $(grep -v '"title"' "$WORK/all.json" | head -n 3)"
echo "   all $COUNT todos (curl's and wrk's) read back, ids 1..$COUNT without a gap"
RELEASES_NOW="$("$RELUP" --root "$ROOT" releases)"
echo "$RELEASES_NOW"
grep -q '0.1.0 permanent' <<<"$RELEASES_NOW" || die "0.1.0 is not permanent: $RELEASES_NOW"
"$RELUP" --root "$ROOT" stop
say "http demo passed: $CYCLES upgrade/downgrade/handover cycles under wrk, 0 non-2xx, 0 socket errors, every todo intact"
