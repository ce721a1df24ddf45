#!/usr/bin/env python3
"""Charts of BENCHMARKS.md, drawn from its own tables (issue 20, item 5).

Reads the tables of BENCHMARKS.md and writes SVG files (no dependency beyond the standard
library: the CI machine has Python but no matplotlib) into docs/bench/:

- install.svg: install time vs N, relup and OTP 25, up and down, log-log
  (the table "The table after session 3");
- pause.svg: the longest process pause during an install vs N, same series;
- kv_stall.svg: the kv example's upgrade stall vs key count, process-state kv against
  table kv, probe's longest wait and relup's own pause, log-log
  (the table "kv on a node table: upgrade stall by key count").

    python3 benches/plots.py            # (re)writes docs/bench/*.svg
    python3 benches/plots.py --check    # fails when a committed chart differs from the tables

The output is deterministic (same tables, same bytes), so --check is what CI runs: a table
edited without its charts redrawn fails it.
"""

import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BENCHMARKS = os.path.join(REPO, "BENCHMARKS.md")
OUT = os.path.join(REPO, "docs", "bench")

# Colours and dash patterns: relup solid, OTP dashed; up and down in two hues each.
STYLE = {
    "relup up": ("#1f77b4", ""),
    "relup down": ("#17becf", ""),
    "OTP 25 up": ("#d62728", "6,4"),
    "OTP 25 down": ("#ff7f0e", "6,4"),
    "state kv: probe's wait": ("#d62728", "6,4"),
    "state kv: relup pause": ("#ff7f0e", ""),
    "table kv: probe's wait": ("#1f77b4", "6,4"),
    "table kv: relup pause": ("#17becf", ""),
}


class TableError(Exception):
    """BENCHMARKS.md does not hold the table (or the row) a chart needs."""


def table_after(text, heading):
    """The rows (lists of cell texts) of the first Markdown table after `heading`."""
    start = text.find(heading)
    if start < 0:
        raise TableError(f"BENCHMARKS.md has no section {heading!r}")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            break
    if len(rows) < 2:
        raise TableError(f"no table after {heading!r} in BENCHMARKS.md")
    return rows[0], rows[1:]


def number(cell, where):
    """A figure of a cell: '1 912', '2,321', '5 242 ms', '26.0 ms (one probe ...)', '1.60 M'."""
    match = re.match(r"\**\s*([0-9][0-9 ,]*(?:\.[0-9]+)?)\s*([kM]?)\b", cell.replace("\u202f", " "))
    if not match:
        raise TableError(f"{where}: expected a number, found {cell!r}")
    value = float(match.group(1).replace(" ", "").replace(",", ""))
    return value * {"": 1, "k": 1e3, "M": 1e6}[match.group(2)]


def otp_series(rows, header, scenario):
    """(N, relup, OTP) of `scenario` from the session table."""
    col = {name: i for i, name in enumerate(header)}
    for need in ("scenario", "N", "relup", "OTP 25", "unit"):
        if need not in col:
            raise TableError(f"the session table has no column {need!r} (columns: {header})")
    points = []
    for row in rows:
        if row[col["scenario"]].strip("`") != scenario:
            continue
        where = f"row {scenario} N={row[col['N']]}"
        if row[col["unit"]] != "ms":
            raise TableError(f"{where}: expected unit ms, found {row[col['unit']]!r}")
        n = number(row[col["N"]], where)
        points.append((n, number(row[col["relup"]], where), number(row[col["OTP 25"]], where)))
    if not points:
        raise TableError(f"the session table has no {scenario} rows")
    return sorted(points)


def kv_series(rows, header):
    """Four series (key count, ms) from the kv stall table."""
    col = {name: i for i, name in enumerate(header)}
    for need in ("keys", "kv", "probe's longest wait", "relup pause"):
        if need not in col:
            raise TableError(f"the kv stall table has no column {need!r} (columns: {header})")
    series = {}
    for row in rows:
        kind = {"process state": "state", "table": "table"}.get(row[col["kv"]])
        where = f"kv row {row}"
        if kind is None:
            raise TableError(f"{where}: expected kv 'process state' or 'table'")
        keys = number(row[col["keys"]], where)
        for column, label in (("probe's longest wait", "probe's wait"),
                              ("relup pause", "relup pause")):
            name = f"{kind} kv: {label}"
            series.setdefault(name, []).append((keys, number(row[col[column]], where)))
    for name in series:
        series[name].sort()
    return series


def fmt(value):
    """A coordinate with two decimals (deterministic output)."""
    return f"{value:.2f}"


def tick_label(value, unit):
    """1, 10, 100, 1k, 10k, 100k, 1M for counts; 0.1 ms, 1 ms, 1 s ... for times."""
    if unit == "ms":
        if value >= 1000:
            return f"{value / 1000:g} s"
        return f"{value:g} ms"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def decades(lo, hi):
    """The powers of ten that bracket [lo, hi]."""
    first = math.floor(math.log10(lo))
    last = math.ceil(math.log10(hi))
    if last == first:
        last += 1
    return first, last


def chart(title, x_label, series, note):
    """An SVG log-log line chart of `series` (name -> [(x, y)]), as text."""
    width, height = 720, 440
    left, right, top, bottom = 80, 250, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x0, x1 = decades(min(xs), max(xs))
    y0, y1 = decades(min(ys), max(ys))

    def px(x):
        return left + (math.log10(x) - x0) / (x1 - x0) * plot_w

    def py(y):
        return top + plot_h - (math.log10(y) - y0) / (y1 - y0) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2 - right / 2 + left / 2:.0f}" y="24" font-size="15" '
        f'text-anchor="middle" font-weight="bold">{escape(title)}</text>',
    ]
    for d in range(x0, x1 + 1):
        x = px(10**d)
        out.append(f'<line x1="{fmt(x)}" y1="{top}" x2="{fmt(x)}" y2="{top + plot_h}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{fmt(x)}" y="{top + plot_h + 18}" text-anchor="middle">'
                   f'{tick_label(10**d, "n")}</text>')
    for d in range(y0, y1 + 1):
        y = py(10**d)
        out.append(f'<line x1="{left}" y1="{fmt(y)}" x2="{left + plot_w}" y2="{fmt(y)}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{fmt(y + 4)}" text-anchor="end">'
                   f'{tick_label(10**d, "ms")}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="#444"/>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 18}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text x="18" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 18 {top + plot_h / 2:.0f})">time (log scale)</text>')
    for i, (name, points) in enumerate(series.items()):
        colour, dash = STYLE.get(name, ("#333", ""))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        path = " ".join(f"{fmt(px(x))},{fmt(py(y))}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                   f'stroke-width="2"{dash_attr}/>')
        for x, y in points:
            out.append(f'<circle cx="{fmt(px(x))}" cy="{fmt(py(y))}" r="3.5" fill="{colour}">'
                       f'<title>{escape(name)}: {tick_label(x, "n")} -> {y:g} ms</title>'
                       f'</circle>')
        ly = top + 10 + i * 22
        lx = left + plot_w + 16
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 28}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{lx + 34}" y="{ly + 4}">{escape(name)}</text>')
    for i, line in enumerate(note):
        out.append(f'<text x="{left + plot_w + 16}" y="{top + plot_h - 12 * (len(note) - i)}" '
                   f'font-size="10" fill="#555">{escape(line)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def charts(text):
    """File name -> SVG text, for every chart."""
    header, rows = table_after(text, "## The table after session 3")
    result = {}
    for name, title in (("install", "Install time vs N (relup and OTP 25)"),
                        ("pause", "Longest process pause during an install vs N")):
        series = {}
        for direction in ("up", "down"):
            points = otp_series(rows, header, f"{name}_{direction}")
            series[f"relup {direction}"] = [(n, r) for n, r, _ in points]
            series[f"OTP 25 {direction}"] = [(n, o) for n, _, o in points]
        result[f"{name}.svg"] = chart(
            title, "processes running the upgraded module (N, log scale)", series,
            ["medians of 3 runs of", "benches/compare-otp.sh", "(BENCHMARKS.md)"])
    header, rows = table_after(text, "## kv on a node table: upgrade stall by key count")
    result["kv_stall.svg"] = chart(
        "kv upgrade stall vs keys held", "keys in the store (log scale)", kv_series(rows, header),
        ["state kv: 0.1.0 -> 0.2.0 migrates", "the whole map; table kv: 0.3.0 ->",
         "0.3.1, data in a node table.", "One run of", "scripts/kv_table_stall.sh",
         "(BENCHMARKS.md)"])
    return result


def main(argv):
    check = "--check" in argv[1:]
    with open(BENCHMARKS, encoding="utf-8") as f:
        text = f.read()
    try:
        wanted = charts(text)
    except TableError as error:
        print(f"plots.py: {error}", file=sys.stderr)
        return 1
    stale = []
    for name, svg in sorted(wanted.items()):
        path = os.path.join(OUT, name)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != svg:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(svg)
            print(f"wrote {os.path.relpath(path, REPO)}")
    if stale:
        names = ", ".join(os.path.relpath(p, REPO) for p in stale)
        print(f"plots.py: {names} differ from BENCHMARKS.md's tables: run "
              "python3 benches/plots.py and commit the charts", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
