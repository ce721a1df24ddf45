#!/usr/bin/env python3
"""Combines several outputs of benches/compare-otp.sh into the BENCHMARKS.md table.

    python3 benches/compare/runs.py run1.log run2.log run3.log

Reads the JSON lines each run ends with ({"scenario","n","relup","otp","unit","ratio"}) and
prints one Markdown row per scenario: the median relup and OTP figures, the median of the
runs' own ratios (each run is a side-by-side of its own minutes) with their range, the
DESIGN.md §5 target and in how many runs it was met (compare.py's targets).
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ORDER, target  # noqa: E402


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('{"scenario"'):
                o = json.loads(line)
                rows[(o["scenario"], int(o["n"]))] = o
    if not rows:
        sys.exit(f"{path}: no JSON lines of compare-otp.sh found")
    return rows


def fmt(x):
    if x is None:
        return "–"
    if x >= 100_000:
        return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def main(paths):
    runs = [load(p) for p in paths]
    keys = sorted(
        set().union(*runs),
        key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k[1]),
    )
    print(f"| scenario | N | relup | OTP 25 | unit | relup/OTP | {len(runs)} runs | target | met |")
    print("| --- | ---: | ---: | ---: | --- | ---: | --- | --- | --- |")
    for key in keys:
        found = [r[key] for r in runs if key in r]
        relup = statistics.median(o["relup"] for o in found)
        otps = [o["otp"] for o in found if o["otp"] is not None]
        ratios = [o["ratio"] for o in found if o["ratio"] is not None]
        unit = found[0]["unit"]
        goal = target(*key)
        met = "–"
        if goal is not None:
            text, check = goal
            hits = sum(1 for o in found if check(o["relup"], o["ratio"]))
            met = f"{text}: {hits} of {len(found)}"
        ratio = f"**{statistics.median(ratios):.3g}**" if ratios else "–"
        spread = f"{min(ratios):.3g}..{max(ratios):.3g}" if ratios else (
            f"{fmt(min(o['relup'] for o in found))}..{fmt(max(o['relup'] for o in found))} {unit}"
        )
        otp = fmt(statistics.median(otps)) if otps else "–"
        print(f"| `{key[0]}` | {key[1]} | {fmt(relup)} | {otp} | {unit} | {ratio} | {spread} | {met.split(':')[0] if goal else '–'} | {met.split(': ')[1] if goal else '–'} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
