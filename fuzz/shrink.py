#!/usr/bin/env python3
"""Picks at most MAX inputs of a libFuzzer merge control file that together cover as many
coverage edges as possible for their size (greedy set cover by new edges per byte), and
copies them into OUT.

    shrink.py <control file> <max files> <out dir>

`cargo fuzz cmin` keeps every input that adds a feature (edge hit counts included), which
for a text parser is thousands of files; the checked-in corpora are kept to a few hundred,
and this prints how many of the edges the fuzzer reached they still cover.
"""

import hashlib
import os
import shutil
import sys

control, limit, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(control) as f:
    lines = f.read().splitlines()
count = int(lines[0])
files = lines[2 : 2 + count]
cov = {}
for line in lines[2 + count :]:
    if line.startswith("COV "):
        parts = line.split()
        cov[int(parts[1])] = set(parts[2:])
sizes = {i: os.path.getsize(files[i]) for i in cov}
every = set().union(*cov.values()) if cov else set()
covered, chosen = set(), []
while len(chosen) < limit:
    # New edges per byte (a small input that adds as much is kept first), then new edges.
    best = max(
        cov,
        key=lambda i: (len(cov[i] - covered) / (sizes[i] + 256), len(cov[i] - covered)),
        default=None,
    )
    if best is None or not cov[best] - covered:
        break
    chosen.append(best)
    covered |= cov.pop(best)
os.makedirs(out, exist_ok=True)
for i in chosen:
    data = open(files[i], "rb").read()
    shutil.copy(files[i], os.path.join(out, hashlib.sha1(data).hexdigest()))
print(f"{len(chosen)} files cover {len(covered)} of {len(every)} edges "
      f"({100 * len(covered) / max(len(every), 1):.1f} %)")
