#!/usr/bin/env bash
# Minimizes what fuzzing found for each named target into fuzz/corpus/<target>/ (the corpus
# the ordinary tests replay): the union of the work corpus and the checked-in one is merged
# on coverage edges (libFuzzer -merge=1 -use_counters=0), then at most MAX inputs (default
# 400; 200 for tarball_unpack, whose inputs are larger) are kept by greedy set cover
# (shrink.py, which prints the share of edges they still cover).
#
#   fuzz/minimize.sh release_toml appup_toml
set -euo pipefail
cd "$(dirname "$0")"
for t in "$@"; do
    bin=target/x86_64-unknown-linux-gnu/release/$t
    max=${MAX:-400}
    if [ "$t" = tarball_unpack ]; then max=${MAX:-200}; fi
    rm -rf "target/merge/$t" "target/shrunk/$t" && mkdir -p "target/merge/$t"
    nice -n 19 "$bin" -merge=1 -use_counters=0 -merge_control_file="target/merge/$t.ctl" \
        "target/merge/$t" "target/work/$t" "corpus/$t" >"../target/fuzz-logs/$t.merge.log" 2>&1
    # The control file has every input's edges (work and checked-in corpus alike).
    echo -n "$t: "
    python3 shrink.py "target/merge/$t.ctl" "$max" "target/shrunk/$t"
    rm -rf "corpus/$t" && mv "target/shrunk/$t" "corpus/$t"
done
