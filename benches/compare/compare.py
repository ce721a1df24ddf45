#!/usr/bin/env python3
"""Side-by-side table of relup's and Erlang/OTP's benchmark figures (benches/compare-otp.sh).

Inputs:
  --otp FILE        tab-separated `scenario n value unit` lines from otp_figures.escript
  --relup FILE      JSON lines `{"scenario","n","value","unit"}` from the plain-main benches
                    (RELUP_BENCH_JSON, see benches/common/report.rs)
  --criterion DIR   criterion's output directory (target/criterion) for the criterion benches

Prints a human-readable table (relup, OTP, ratio = relup / OTP, DESIGN.md §5 target, met or
missed), then, as its last lines, one JSON object per scenario:
  {"scenario":…,"n":…,"relup":…,"otp":…,"unit":…,"ratio":…}
For times and memory (ms, us, bytes) a ratio below 1 means relup is better; for throughputs
(units ending in /s) a ratio above 1 means relup is better.
"""

import argparse
import json
import os
import sys

# criterion benchmark id -> (scenario, n, unit)
CRITERION = {
    "call/dylib_1x1": ("call_1x1", 1, "calls/s"),
    "call/dylib_2x2": ("call_2x2", 1, "calls/s"),
    "call/dylib_2x1": ("call_2x1", 1, "calls/s"),
    "cast/dylib_1x1": ("cast_1x1", 1, "casts/s"),
    "spawn/simple_one_for_one_10k": ("spawn", 10000, "us"),
}

ORDER = [
    "install_up",
    "install_down",
    "pause_up",
    "pause_down",
    "call_1x1",
    "call_2x2",
    "call_2x1",
    "cast_1x1",
    "spawn",
    "memory",
    "config_change",
    "cache_line_round_trip",
]


def throughput(unit):
    return unit.endswith("/s")


def target(scenario, n):
    """DESIGN.md §5: (text, check(relup, ratio) -> bool) or None when there is no target."""
    if scenario.startswith("install_"):
        limit = 1 / 5 if n <= 1000 else 1 / 20
        return (f"<= 1/{round(1 / limit)}", lambda r, q: q is not None and q <= limit)
    if scenario.startswith("pause_") and n >= 10000:
        return ("<= 1/20", lambda r, q: q is not None and q <= 1 / 20)
    if scenario in ("call_1x1", "call_2x2", "cast_1x1"):
        return (">= 2x", lambda r, q: q is not None and q >= 2)
    if scenario in ("spawn", "memory"):
        return ("<= 1/3", lambda r, q: q is not None and q <= 1 / 3)
    if scenario == "config_change":
        return ("<= 100 ms", lambda r, q: r <= 100)
    return None


def read_otp(path):
    figures = {}
    with open(path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) != 4:
                continue
            scenario, n, value, unit = parts
            figures[(scenario, int(n))] = (float(value), unit.strip())
    return figures


def read_relup(path):
    figures = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    o = json.loads(line)
                    figures[(o["scenario"], int(o["n"]))] = (float(o["value"]), o["unit"])
    return figures


def read_criterion(directory):
    figures = {}
    for bench, (scenario, n, unit) in CRITERION.items():
        base = os.path.join(directory, *bench.split("/"), "new")
        try:
            with open(os.path.join(base, "estimates.json")) as f:
                ns = json.load(f)["median"]["point_estimate"]
            with open(os.path.join(base, "benchmark.json")) as f:
                elements = json.load(f).get("throughput", {}).get("Elements", 1)
        except (OSError, KeyError, ValueError) as e:
            print(f"warning: no criterion figure for {bench}: {e}", file=sys.stderr)
            continue
        if throughput(unit):
            value = elements * 1e9 / ns
        else:
            value = ns / elements / 1e3  # microseconds per element
        figures[(scenario, n)] = (value, unit)
    return figures


def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def rounded(value):
    return None if value is None else float(f"{value:.4g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--otp", required=True)
    ap.add_argument("--relup", required=True)
    ap.add_argument("--criterion", required=True)
    args = ap.parse_args()

    otp = read_otp(args.otp)
    relup = read_relup(args.relup)
    relup.update(read_criterion(args.criterion))

    keys = sorted(
        set(relup),
        key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k[0], k[1]),
    )
    rows = []
    for scenario, n in keys:
        value, unit = relup[(scenario, n)]
        other = otp.get((scenario, n))
        otp_value = other[0] if other and other[1] == unit else None
        ratio = value / otp_value if otp_value else None
        goal = target(scenario, n)
        met = "-" if goal is None else ("met" if goal[1](value, ratio) else "MISSED")
        rows.append((scenario, n, value, otp_value, unit, ratio, goal[0] if goal else "-", met))

    header = ("scenario", "n", "relup", "OTP", "unit", "relup/OTP", "target", "")
    table = [header] + [
        (s, str(n), fmt(v), fmt(o), u, "-" if q is None else f"{q:.3g}", t, m)
        for s, n, v, o, u, q, t, m in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        "direction: ratio = relup / OTP. For ms, us and bytes below 1 is better for relup; "
        "for calls/s and casts/s (throughputs) above 1 is better."
    )
    for scenario, n, value, otp_value, unit, ratio, _, _ in rows:
        print(
            json.dumps(
                {
                    "scenario": scenario,
                    "n": n,
                    "relup": rounded(value),
                    "otp": rounded(otp_value),
                    "unit": unit,
                    "ratio": rounded(ratio),
                },
                separators=(",", ":"),
            )
        )


if __name__ == "__main__":
    main()
