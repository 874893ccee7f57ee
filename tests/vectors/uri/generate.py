#!/usr/bin/env python3
"""Deterministic generator of the ``.uri`` test vectors (docs/formats/URI.md §10, §11).

    .venv/bin/python tests/vectors/uri/generate.py            # writes golden/ and adversarial/
    .venv/bin/python tests/vectors/uri/generate.py --check    # exit 1 if the files differ

``golden/``: valid archives written by the INDEPENDENT writer
(tests/formats/uri/independent.py), ``tiny.uri`` being the one dumped in hex in URI.md.
``adversarial/``: one file per case plus ``manifest.json`` giving, for each case, the
expected verdict of every operation, in lockbox error class names:

* ``open``: the error of opening (only when opening fails; then nothing else applies);
* ``list``: listing the whole archive (the index scan, and ``walk``): a class or "ok";
* ``verify``: the class names of verify's problems, in order ([] = clean);
* ``read``: ``{path: class or "ok"}`` for whole-file reads;
* ``verdict``: what a strict reader of the whole file reaches first -- the first verify
  problem or the open error, else "ok" (the independent reader must agree);
* ``entries``: the number of entries, when the archive lists.

Nothing random: the content comes from SHA-256 counters, so regenerating gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from formats.uri.independent import Entry, chunk, header, write  # noqa: E402

GOLDEN = HERE / "golden"
ADVERSARIAL = HERE / "adversarial"
FILE, DIR, SLNK = b"FILE", b"DIR ", b"SLNK"


def stream(label: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def tiny_entries() -> list[Entry]:
    return [
        Entry(DIR, b"d", 0o755, b"alice", b"staff"),
        Entry(FILE, b"d/hi.txt", 0o644, b"alice", b"staff", b"hi\n"),
        Entry(SLNK, b"d/link", 0o777, b"alice", b"staff", b"hi.txt"),
    ]


def tree_entries() -> list[Entry]:
    """Every feature once, in the reference writer's order (depth first, by name bytes)."""
    return [
        Entry(DIR, b"docs", 0o755, b"root", b"root"),
        Entry(FILE, b"docs/empty", 0o600, b"root", b"root", b""),
        Entry(FILE, b"docs/readme.md", 0o644, b"a" * 32, b"wheel",
              b"# readme\n" + b"line\n" * 200),
        Entry(DIR, b"docs/sub", 0o700, b"root", b""),
        Entry(FILE, b"docs/sub/big.bin", 0o644, b"root", b"root", stream("big", 100_000)),
        Entry(FILE, b"docs/sub/x\xff.bin", 0o4755, b"n\xe9e", b"root", b"\x00\x01"),
        Entry(SLNK, b"latest", 0o777, b"root", b"root", b"docs/sub/big.bin"),
        Entry(FILE, b"run.sh", 0o755, b"root", b"root", b"#!/bin/sh\necho hi\n"),
        Entry(FILE, "über.txt".encode(), 0o644, b"", b"", "grüße\n".encode()),
    ]


GOLDEN_ARCHIVES: dict[str, list[Entry]] = {
    "empty.uri": [],
    "tiny.uri": tiny_entries(),
    "tree.uri": tree_entries(),
}


def golden() -> dict[str, bytes]:
    return {name: write(entries) for name, entries in GOLDEN_ARCHIVES.items()}


# --------------------------------------------------------------------------- adversarial


def spans(entries: list[Entry]) -> list[dict[str, int]]:
    """Offsets of each chunk of ``write(entries)``: start, path, data, crc, end."""
    out, pos = [], 8
    for e in entries:
        path = pos + 92
        data = path + len(e.path)
        crc = data + len(e.data)
        out.append({"start": pos, "path": path, "data": data, "crc": crc, "end": crc + 4})
        pos = crc + 4
    return out


def ok(entries: int, read: dict[str, str] | None = None) -> dict[str, Any]:
    return {"list": "ok", "verify": [], "read": read or {}, "verdict": "ok",
            "entries": entries}


def bad(cls: str, *, listing: str | None = None, verify: list[str] | None = None,
        read: dict[str, str] | None = None) -> dict[str, Any]:
    """A damaged archive whose first problem is ``cls``."""
    return {"list": cls if listing is None else listing,
            "verify": [cls] if verify is None else verify, "read": read or {}, "verdict": cls}


def open_fails(cls: str) -> dict[str, Any]:
    return {"open": cls, "verdict": cls}


def arc(*chunks: bytes, version: int = 0) -> bytes:
    return b"uri\0" + struct.pack("<I", version) + b"".join(chunks)


def adversarial() -> list[tuple[str, str, bytes, dict[str, Any]]]:
    """(name, about, bytes, expectations) of every case."""
    tiny = write(tiny_entries())
    sp = spans(tiny_entries())
    cases: list[tuple[str, str, bytes, dict[str, Any]]] = []

    def add(name: str, about: str, data: bytes, expect: dict[str, Any]) -> None:
        cases.append((name, about, data, expect))

    def flip(data: bytes, offset: int) -> bytes:
        b = bytearray(data)
        b[offset] ^= 0x01
        return bytes(b)

    d = chunk(DIR, b"d", mode=0o755)
    # -- file header
    add("magic-bad", "starts with 'URI\\0'", b"URI\0" + tiny[4:], open_fails("FormatError"))
    add("magic-zip", "a zip file's start", b"PK\x03\x04" + tiny[4:], open_fails("FormatError"))
    add("empty-file", "0 bytes", b"", open_fails("FormatError"))
    add("version-1", "file header version 1", arc(d, version=1),
        open_fails("UnsupportedVersionError"))
    add("version-huge", "file header version 0xffffffff", arc(d, version=0xFFFFFFFF),
        open_fails("UnsupportedVersionError"))
    # -- truncation at every boundary of tiny.uri (and inside each part)
    cuts = {0, 1, 4, 6, 8}
    for s in sp:
        cuts |= {s["start"], s["start"] + 1, s["start"] + 46, s["path"] - 1, s["path"],
                 s["data"], s["crc"], s["crc"] + 2, s["end"] - 1}
        if s["crc"] - s["data"] > 1:
            cuts.add(s["data"] + 1)
    starts = {s["start"] for s in sp} | {len(tiny)}
    for cut in sorted(cuts):
        if cut >= len(tiny):
            continue
        if cut == 0:
            expect = open_fails("FormatError")
        elif cut < 8:
            expect = open_fails("TruncatedError")
        elif cut in starts:
            expect = ok(sum(1 for s in sp if s["end"] <= cut))
        else:
            expect = bad("TruncatedError")
        add(f"cut-{cut:03d}", f"tiny.uri cut to {cut} bytes", tiny[:cut], expect)
    # -- checksums
    add("header-crc-mode", "a mode bit of the file's header flipped (CRC not fixed)",
        flip(tiny, sp[1]["start"] + 8), bad("IntegrityError"))
    add("header-crc-type", "'FILE' changed to 'FILX' without fixing the CRC",
        tiny[: sp[1]["start"]] + b"FILX" + tiny[sp[1]["start"] + 4 :], bad("IntegrityError"))
    add("header-crc-length", "file_len of the file +1 (CRC not fixed)",
        flip(tiny, sp[1]["start"] + 76), bad("IntegrityError"))
    add("header-crc-stored", "the stored header CRC of the directory flipped",
        flip(tiny, sp[0]["start"] + 88), bad("IntegrityError"))
    add("data-crc-file", "a byte of d/hi.txt's data flipped: listing does not read it",
        flip(tiny, sp[1]["data"]),
        bad("IntegrityError", listing="ok", read={"d/hi.txt": "IntegrityError"}))
    add("data-crc-file-path", "a byte of d/hi.txt's path changed (d/hi.txt -> d/hi.tx)",
        tiny[: sp[1]["path"] + 7] + b"u" + tiny[sp[1]["path"] + 8 :],
        bad("IntegrityError", listing="ok", read={"d/hi.txu": "IntegrityError"}))
    add("data-crc-file-stored", "the data CRC of d/hi.txt flipped", flip(tiny, sp[1]["crc"]),
        bad("IntegrityError", listing="ok", read={"d/hi.txt": "IntegrityError"}))
    add("data-crc-dir", "the directory's path byte changed ('d' -> 'e'): its CRC fails",
        tiny[: sp[0]["path"]] + b"e" + tiny[sp[0]["path"] + 1 :],
        bad("IntegrityError", verify=["IntegrityError", "FormatError", "FormatError"]))
    add("data-crc-symlink", "a byte of the symlink's target flipped",
        flip(tiny, sp[2]["data"]), bad("IntegrityError"))
    # -- lengths
    add("file-len-past-eof", "a file claiming 2**40 bytes (header CRC valid)",
        arc(d, header(FILE, 3, 0o644, b"", b"", 2**40) + b"d/x" + b"data"),
        bad("TruncatedError"))
    add("file-len-i64", "a file claiming 2**63 bytes (over i64::MAX)",
        arc(header(FILE, 1, 0o644, b"", b"", 2**63) + b"x"),
        bad("LimitExceededError", verify=["LimitExceededError", "TruncatedError"]))
    add("path-len-huge", "path_len 0x7fffffff (header CRC valid)",
        arc(header(DIR, 0x7FFFFFFF, 0o755, b"", b"", 0) + b"d"),
        bad("LimitExceededError", verify=["LimitExceededError", "TruncatedError"]))
    add("path-len-4097", "a 4097-byte path",
        arc(chunk(FILE, b"p" * 4097, b"x")), bad("LimitExceededError"))
    add("path-len-4096", "a 4096-byte path: the longest accepted",
        arc(chunk(FILE, b"p" * 4096, b"x")), ok(1))
    add("target-len-4097", "a symlink target of 4097 bytes",
        arc(chunk(SLNK, b"l", b"t" * 4097)), bad("LimitExceededError"))
    add("path-len-0", "an empty path (path_len 0)", arc(chunk(FILE, b"", b"x")),
        bad("FormatError"))
    add("dir-with-data", "a directory with 3 bytes of data", arc(chunk(DIR, b"d", b"abc")),
        bad("FormatError"))
    add("symlink-empty", "a symlink with an empty target", arc(chunk(SLNK, b"l", b"")),
        bad("FormatError"))
    add("symlink-nul", "a symlink target containing NUL", arc(chunk(SLNK, b"l", b"a\0b")),
        bad("FormatError"))
    # -- types, compression, names
    for name, kind in (("type-unknown", b"BLK "), ("type-lowercase", b"file"),
                       ("type-dir-nul", b"DIR\0")):
        add(name, f"chunk type {kind!r} (header CRC valid)", arc(chunk(kind, b"x", b"")),
            bad("FormatError"))
    add("compression-gzip", "compression 'GZIP' (header CRC valid)",
        arc(chunk(FILE, b"x", b"data", compression=b"GZIP")), bad("FormatError"))
    add("compression-zero", "compression field all NUL",
        arc(chunk(FILE, b"x", b"data", compression=b"\0\0\0\0")), bad("FormatError"))
    add("owner-nul-inside", "owner 'ab\\0c' (a NUL before the padding)",
        arc(chunk(FILE, b"x", b"", owner=b"ab\0c")), bad("FormatError"))
    add("group-nul-inside", "group '\\0x' (a NUL first, then a name)",
        arc(chunk(FILE, b"x", b"", group=b"\0x")), bad("FormatError"))
    add("owner-32", "owner of exactly 32 bytes (no padding at all)",
        arc(chunk(FILE, b"x", b"", owner=b"o" * 32)), ok(1))
    add("mode-type-bits", "mode 0o100644 (st_mode with the file type bits): shown as 0644",
        arc(chunk(FILE, b"x", b"hi", mode=0o100644)), ok(1))
    # -- paths
    evil = [
        ("path-absolute", b"/etc/passwd", "UnsafePathError"),
        ("path-dotdot", b"../escape", "UnsafePathError"),
        ("path-dotdot-inner", b"a/../../x", "UnsafePathError"),
        ("path-dotdot-only", b"..", "UnsafePathError"),
        ("path-double-slash", b"a//b", "FormatError"),
        ("path-trailing-slash", b"a/", "FormatError"),
        ("path-dot", b"./a", "FormatError"),
        ("path-dot-inner", b"a/./b", "FormatError"),
        ("path-dot-only", b".", "FormatError"),
        ("path-nul", b"a\0b", "FormatError"),
    ]
    for name, path, cls in evil:
        add(name, f"a file at {path!r}", arc(chunk(FILE, path, b"evil")),
            bad(cls))
    add("path-non-utf8", "a file named b'caf\\xe9' (Latin-1): valid, listed as surrogates",
        arc(chunk(FILE, b"caf\xe9", b"x")), ok(1))
    # -- structure
    add("duplicate-file", "a.txt twice",
        arc(chunk(FILE, b"a.txt", b"1"), chunk(FILE, b"a.txt", b"2")), bad("FormatError"))
    add("duplicate-dir", "directory d twice", arc(d, d), bad("FormatError"))
    add("duplicate-file-dir", "d as a directory, then as a file",
        arc(d, chunk(FILE, b"d", b"x")), bad("FormatError"))
    add("file-before-dir", "d/x before the directory d",
        arc(chunk(FILE, b"d/x", b"x"), d), bad("FormatError"))
    add("file-without-dir", "d/x and no directory d at all",
        arc(chunk(FILE, b"d/x", b"x")), bad("FormatError"))
    add("file-under-file", "a.txt/x under the file a.txt",
        arc(chunk(FILE, b"a.txt", b"x"), chunk(FILE, b"a.txt/x", b"y")), bad("FormatError"))
    add("file-under-symlink", "l/x under the symlink l -> d",
        arc(d, chunk(SLNK, b"l", b"d"), chunk(FILE, b"l/x", b"y")), bad("FormatError"))
    # -- symlink escapes: valid archives; the extractor must refuse them
    add("symlink-escape-dotdot", "link -> ../../etc (listed; extract must refuse)",
        arc(chunk(SLNK, b"link", b"../../etc")), ok(1))
    add("symlink-escape-absolute", "link -> /etc/passwd (listed; extract must refuse)",
        arc(chunk(SLNK, b"link", b"/etc/passwd")), ok(1))
    add("symlink-then-file-through", "d/l -> /tmp then d/l/x: under a symlink",
        arc(d, chunk(SLNK, b"d/l", b"/tmp"), chunk(FILE, b"d/l/x", b"x")),
        bad("FormatError"))
    # -- trailing bytes
    add("trailing-5-bytes", "5 bytes after the last chunk", tiny + b"extra",
        bad("TruncatedError"))
    add("trailing-zeros", "100 zero bytes after the last chunk", tiny + bytes(100),
        bad("IntegrityError"))
    add("trailing-valid-chunk", "a valid chunk appended (the seed's 'stick new chunks "
        "onto the end')", tiny + chunk(FILE, b"d/new", b"new"), ok(4))
    return cases


def manifest(cases: list[tuple[str, str, bytes, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "about": "Adversarial .uri corpus; see tests/vectors/uri/generate.py for the fields.",
        "cases": [{"name": n, "file": f"{n}.uri", "about": a,
                   "sha256": hashlib.sha256(data).hexdigest(), **expect}
                  for n, a, data, expect in cases],
    }


def files() -> dict[Path, bytes]:
    out = {GOLDEN / name: data for name, data in golden().items()}
    cases = adversarial()
    for name, _about, data, _expect in cases:
        out[ADVERSARIAL / f"{name}.uri"] = data
    out[ADVERSARIAL / "manifest.json"] = (json.dumps(manifest(cases), indent=1) + "\n").encode()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare, do not write")
    args = ap.parse_args()
    differ = 0
    for path, data in files().items():
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                print(f"differs: {path.relative_to(HERE)}")
                differ += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    if not args.check:
        print(f"wrote {len(files())} files under {HERE}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
