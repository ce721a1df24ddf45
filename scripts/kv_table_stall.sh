#!/usr/bin/env bash
# The longest stall a kv-probe client sees during one upgrade, process-state kv vs table kv,
# at several key counts (issue 21). For each N: a fresh root, N keys written with
# `redis-cli --pipe`, then kv-probe PINGs back to back on one connection while one
# `relup upgrade` runs (probation included); its longest round trip is the stall.
#   process-state kv: 0.1.0 -> 0.2.0 (the whole map is exported, migrated and decoded)
#   table kv:         0.3.0 -> 0.3.1 (the data is in a node table no step reads)
# Usage: scripts/kv_table_stall.sh            # SIZES="10000 100000 1000000"
#        SIZES="10000 100000" scripts/kv_table_stall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-10000 100000 1000000}"
die() { echo "kv_table_stall: $*" >&2; exit 1; }
command -v redis-cli >/dev/null || die "needs redis-cli (apt-get install redis-tools)"

cargo build --quiet --release -p relup -p relup-example-kv-probe
RELUP="$PWD/target/release/relup"
PROBE="$PWD/target/release/kv-probe"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relup-kv-stall.XXXXXX")"
ROOT=""
cleanup() {
    rm -f "$WORK/upgrading"
    if [ -n "$ROOT" ] && [ -S "$ROOT/run/control.sock" ]; then "$RELUP" --root "$ROOT" stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
for v in 0.1.0 0.2.0 0.3.0 0.3.1; do
    "$RELUP" release "examples/kv/v$v" --out "$WORK/out" >/dev/null 2>&1 || die "relup release $v failed"
done

# measure FROM TO N: prints "max_ms install_line"
measure() {
    local from="$1" to="$2" n="$3"
    ROOT="$WORK/root-$from-$n"
    "$RELUP" deploy "$WORK/out/kv-$from.tar.gz" "$ROOT" >/dev/null
    mkdir -p "$ROOT/config"
    printf '[kv.kv_server]\nlisten = "127.0.0.1:0"\n' >"$ROOT/config/config.toml"
    "$RELUP" --root "$ROOT" start >/dev/null
    local port
    port="$(grep -o 'listening on [0-9.:]*' "$ROOT/log/node.log" | head -n 1 | sed 's/.*://')"
    "$RELUP" --root "$ROOT" unpack "$WORK/out/kv-$to.tar.gz" >/dev/null
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) { k = "key:" i; v = "value-" i;
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v } }' \
        | redis-cli -p "$port" --pipe >"$WORK/fill.out" 2>&1 || die "fill failed: $(cat "$WORK/fill.out")"
    local keys
    if [ "$from" != 0.1.0 ]; then # 0.1.0 has no DBSIZE: counted after the upgrade
        keys="$(redis-cli -p "$port" DBSIZE)"
        [ "$keys" = "$n" ] || die "expected $n keys, DBSIZE says $keys"
    fi
    touch "$WORK/upgrading"
    "$PROBE" "127.0.0.1:$port" 600 "$WORK/upgrading" >"$WORK/probe.out" 2>&1 & local probe=$!
    sleep 0.5
    local up
    up="$("$RELUP" --root "$ROOT" upgrade "$to" | tail -n 1)"
    rm -f "$WORK/upgrading"
    wait "$probe" || die "probe failed: $(cat "$WORK/probe.out")"
    keys="$(redis-cli -p "$port" DBSIZE)"
    [ "$keys" = "$n" ] || die "after the upgrade: expected $n keys, DBSIZE says $keys"
    "$RELUP" --root "$ROOT" stop >/dev/null
    echo "$(grep -o 'max_ms=[0-9.]*' "$WORK/probe.out" | cut -d= -f2) | $(cat "$WORK/probe.out") | $up"
}

echo "| keys | kv | upgrade | probe's longest wait (ms) | probe | relup |"
echo "| ---: | --- | --- | ---: | --- | --- |"
for n in $SIZES; do
    IFS='|' read -r ms probe up <<<"$(measure 0.1.0 0.2.0 "$n")"
    echo "| $n | process state | 0.1.0 -> 0.2.0 | $ms | $probe | $up |"
    IFS='|' read -r ms probe up <<<"$(measure 0.3.0 0.3.1 "$n")"
    echo "| $n | table | 0.3.0 -> 0.3.1 | $ms | $probe | $up |"
done
