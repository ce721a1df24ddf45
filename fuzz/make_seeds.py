#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the runtime fuzz targets into fuzz/seeds/<target>/.

The checked-in corpora (fuzz/corpus/<target>/) were grown from these seeds by libFuzzer and
minimized with `cargo fuzz cmin`; run this again only to start a corpus afresh. The seeds are
the shapes each input has in real use (valid ones) plus one of each hostile kind the tests
know of, so the fuzzer starts next to the interesting edges.
"""

import gzip
import hashlib
import io
import json
import os
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- config_line
CONFIG = {
    "int": "app:m:i:50\n",
    "float": "app:m:f:2.5\napp:m:f:-1e3\napp:m:f:nan\n",
    "bool_string": 'app:m:b:true\napp:m:s:"b"\n',
    "duration": "app:m:d:1500\n",
    "list_table": "app:m:l:[1, \"x\", [true]]\napp:m:t:{ a = 1, b = { c = \"d\" } }\n",
    "child_id": "app:child:i:7\n",
    "atomic": "# atomic\napp:m:i:1\nbroken\n",
    "comments": "\n# a note\n  app:m:i:2  \n\n",
    "bad": "broken\na::k:1\napp:m:k:fast\napp:m:i:101\nother:m:i:1\napp:x:i:1\napp:m:zz:1\n",
    "colons": 'app:m:s:"http://x:80"\n',
    "datetime": "app:m:s:1979-05-27T07:32:00Z\n",
    "config_toml": "[app.m]\ni = 5\ns = \"a\"\n\n[\"weird name\".\"m 2\"]\nk = [1, 2]\n",
    "config_toml_escapes": "[\"a\\u001b\".m]\nk = 1\n",
}
for name, text in CONFIG.items():
    write("config_line", name, text)

# ------------------------------------------------------------ control_request
REQUESTS = [
    {"cmd": "status"},
    {"cmd": "releases"},
    {"cmd": "plan", "version": "0.2.0"},
    {"cmd": "install", "version": "0.2.0", "permanent": False},
    {"cmd": "permanent", "version": "0.2.0"},
    {"cmd": "remove", "version": "0.1.0"},
    {"cmd": "unpack", "tarball": "/tmp/demo-0.2.0.tar.gz", "force": True},
    {"cmd": "reboot_old", "version": "0.1.0"},
    {"cmd": "log"},
    {"cmd": "config_get", "app": "ticker", "key": "ticker"},
    {"cmd": "config_set", "line": "ticker:ticker:ticker:1500"},
    {"cmd": "stop"},
]
for r in REQUESTS:
    write("control_request", r["cmd"], json.dumps(r) + "\n")
write("control_request", "no_newline", '{"cmd":"status"}')
write("control_request", "unknown_field", '{"cmd":"status","x":1}\n')
write("control_request", "not_json", "status please\n")
write("control_request", "two_lines", '{"cmd":"status"}\n{"cmd":"stop"}\n')
write("control_request", "escapes", '{"cmd":"config_set","line":"a:b:c:\\"\\u00e9\\ud83d\\ude00\\""}\n')

# ------------------------------------------------------------- tarball_unpack
RELEASE = """name = "fz"
version = "0.2.0"

[[applications]]
name = "app"
version = "0.2.0"

[[applications.modules]]
name = "m"
file = "lib/libm.so"
sha256 = "{sha}"
"""
APPUP = """application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ { load_module = "m" } ]

[[down]]
to = "0.1.0"
instructions = [ { load_module = "m" } ]
"""


def package(files, manifest_files=None, extra=()):
    """A tar (uncompressed) of `files` plus a MANIFEST listing `manifest_files` (default:
    all of them); `extra` are (TarInfo, bytes) appended as they are."""
    listed = files if manifest_files is None else manifest_files
    lines = ['name = "fz"', 'version = "0.2.0"', ""]
    for path in sorted(listed):
        data = listed[path]
        lines += ["[[file]]", f'path = "{path}"',
                  f'sha256 = "{hashlib.sha256(data).hexdigest()}"', f"size = {len(data)}", ""]
    entries = dict(files)
    entries["MANIFEST"] = "\n".join(lines).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for path in sorted(entries):
            info = tarfile.TarInfo(path)
            info.size = len(entries[path])
            info.mode = 0o644
            t.addfile(info, io.BytesIO(entries[path]))
        for info, data in extra:
            t.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


lib = b"\x7fELF fake library 0.2.0"
good = {
    "lib/libm.so": lib,
    "release.toml": RELEASE.format(sha=hashlib.sha256(lib).hexdigest()).encode(),
    "appup/app.toml": APPUP.encode(),
    "bin/fz": b"#!/bin/sh\nexec relup \"$@\"\n",
}
write("tarball_unpack", "good_tar", b"\0" + package(good))
write("tarball_unpack", "good_gz", b"\1" + gzip.compress(package(good), mtime=0))


def special(name, kind, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, b""


write("tarball_unpack", "dotdot", b"\0" + package({**good, "../evil": b"x"}))
write("tarball_unpack", "absolute", b"\0" + package({**good, "/tmp/evil": b"x"}))
write("tarball_unpack", "symlink",
      b"\0" + package(good, extra=[special("lib/link.so", tarfile.SYMTYPE, "/etc/passwd")]))
write("tarball_unpack", "hardlink",
      b"\0" + package(good, extra=[special("lib/hard.so", tarfile.LNKTYPE, "release.toml")]))
write("tarball_unpack", "device",
      b"\0" + package(good, extra=[special("lib/dev", tarfile.CHRTYPE)]))
write("tarball_unpack", "dir_then_file",
      b"\0" + package(good, extra=[special("lib/libm.so/", tarfile.DIRTYPE)]))
missing = dict(good)
del missing["bin/fz"]
write("tarball_unpack", "missing_file", b"\0" + package(missing, manifest_files=good))
long_name = "lib/" + "d" * 120 + "/x.so"
write("tarball_unpack", "long_name", b"\0" + package({**good, long_name: b"y"}))


# ----------------------------------------------------------------- abi_decode
def mp(v):
    """A minimal MessagePack encoder (rmp-serde's named encoding: structs are maps,
    enums are {variant: value} or the variant name)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


VALUES = {
    "int": {"Int": 5},
    "float": {"Float": 2.5},
    "str": {"Str": "fast"},
    "list": {"List": [{"Bool": True}, {"Int": -3}]},
    "table": {"Table": {"a": {"List": []}, "b": {"Str": "x"}}},
    "change": {"changed": [["ticker", {"Int": 1500}]], "new": [], "removed": ["old"]},
    "validator_args": ["ticker", {"Int": 1500}],
    "reason_normal": "Normal",
    "reason_error": {"Error": "boom"},
    "apply_ok": {"Ok": b"\x90"},
    "apply_err": {"Err": "no exported function validate_config"},
    "state": {
        "count": 3, "name": "c1", "seen": {1: 2}, "notes": [{"Int": 1}],
        "last": {"Error": "x"},
        "change": {"changed": [], "new": [["k", {"Bool": False}]], "removed": []},
    },
    "state_nested": {
        "count": -1, "name": "", "seen": {}, "notes": [], "last": None,
        "change": {"changed": [], "new": [], "removed": []},
        "added_later": {
            "count": 0, "name": "inner", "seen": {}, "notes": [], "last": "Killed",
            "change": {"changed": [], "new": [], "removed": []},
        },
    },
}
for name, value in VALUES.items():
    write("abi_decode", name, mp(value))
write("abi_decode", "text_reason", b"\x05counter:handle_call: panic: boom")
write("abi_decode", "bad_utf8", b"\x02\xff\xfe1.0.0")
write("abi_decode", "deep_list", b'\x81\xa4List\x91' * 200 + b"\x81\xa3Int\x01")
