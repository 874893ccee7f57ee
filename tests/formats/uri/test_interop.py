"""Interop with the independent implementation of the seed, Hypothesis round trips, and
fuzzing of the reader: mutated archives only ever give lockbox errors, and no read asks
for more than a bounded window whatever the lengths claim."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lockbox.drivers import run_sync
from lockbox.errors import LockboxError
from lockbox.formats.uri import write_uri
from lockbox.info import EntryInfo
from lockbox.ranges import ByteRange
from lockbox.sources import BytesSource, FileSource

from . import FUZZ, ROUND_TRIP, VECTORS, open_session, walk_all
from . import independent as ind
from .independent import Entry

KINDS = {b"FILE": "file", b"DIR ": "dir", b"SLNK": "symlink"}
names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b".."))
owner_names = st.binary(max_size=32).map(lambda b: b.replace(b"\x00", b"_"))


@st.composite
def trees(draw: Any) -> list[Entry]:
    """A valid archive's entries: parents first, unique paths, every type."""
    out: list[Entry] = []
    dirs: list[bytes] = [b""]
    seen: set[bytes] = set()
    for _ in range(draw(st.integers(0, 25))):
        parent = draw(st.sampled_from(dirs))
        path = (parent + b"/" if parent else b"") + draw(names)
        if path in seen:
            continue
        seen.add(path)
        kind = draw(st.sampled_from([b"FILE", b"FILE", b"DIR ", b"SLNK"]))
        mode = draw(st.integers(0, 0o7777))
        owner, group = draw(owner_names), draw(owner_names)
        if kind == b"FILE":
            data = draw(st.binary(max_size=3000))
        elif kind == b"SLNK":
            data = draw(st.binary(min_size=1, max_size=60).map(
                lambda b: b.replace(b"\x00", b"-")))
        else:
            data = b""
            dirs.append(path)
        out.append(Entry(kind, path, mode, owner, group, data))
    return out


def as_pairs(entries: list[Entry]) -> list[tuple[EntryInfo, Any]]:
    def dec(b: bytes) -> str:
        return b.decode("utf-8", "surrogateescape")

    return [(EntryInfo(dec(e.path), KINDS[e.kind], e.mode, 0,
                       len(e.data) if e.kind == b"FILE" else 0,
                       target=dec(e.data) if e.kind == b"SLNK" else "",
                       owner=dec(e.owner), group=dec(e.group)),
             [e.data[i : i + 700] for i in range(0, len(e.data), 700)]
             if e.kind == b"FILE" else None)
            for e in entries]


def read_back(data: bytes) -> list[Entry]:
    """Our reader's view of an archive, as independent Entries."""
    src = BytesSource(data)
    s = open_session(src, data_window_size=1024)
    out = []
    for info in walk_all(s, src):
        kind = {v: k for k, v in KINDS.items()}[info.type]
        if info.type == "file":
            payload = run_sync(s.read_flow(info.path, 0, info.size + 1), src)
        else:
            payload = info.target.encode("utf-8", "surrogateescape")
        out.append(Entry(kind, info.path.encode("utf-8", "surrogateescape"), info.mode,
                         info.owner.encode("utf-8", "surrogateescape"),
                         info.group.encode("utf-8", "surrogateescape"), payload))
    assert run_sync(s.verify_flow(), src).ok
    return out


@ROUND_TRIP
@given(trees())
def test_independent_writer_to_our_reader(entries):
    assert read_back(ind.write(entries)) == entries


@ROUND_TRIP
@given(trees())
def test_our_writer_to_the_strict_independent_reader_and_back(tmp_path_factory, entries):
    dest = tmp_path_factory.mktemp("rt") / "o.uri"
    write_uri(dest, as_pairs(entries))
    data = dest.read_bytes()
    assert data == ind.write(entries)  # the same bytes as the independent writer
    assert ind.read(data) == entries
    assert read_back(data) == entries


def test_convert_of_a_real_directory_passes_the_strict_reader(tmp_path):
    root = tmp_path / "tree"
    for i in range(30):
        d = root / f"d{i % 4}" / f"e{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.bin").write_bytes(os.urandom(i * 37))
    os.symlink("d0", root / "link")
    os.symlink("../../nowhere", root / "d1" / "dangling")
    with open(os.fsencode(root) + b"/\xff\xfe", "wb") as f:
        f.write(b"odd name")
    write_uri(tmp_path / "o.uri", root)
    es = ind.read((tmp_path / "o.uri").read_bytes())
    on_disk = set()
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for n in dirnames + filenames:
            on_disk.add(os.path.relpath(os.path.join(dirpath, n), os.fsencode(root)))
    assert {e.path for e in es} == on_disk
    for e in es:
        full = os.path.join(os.fsencode(root), e.path)
        if e.kind == b"FILE":
            assert open(full, "rb").read() == e.data
        elif e.kind == b"SLNK":
            assert os.readlink(full) == e.data


# ------------------------------------------------------------------------ fuzzing


class Bounded:
    """A source that fails the test if a read asks for more than ``limit`` bytes or
    reads past the end (lengths from the archive must never drive an allocation)."""

    def __init__(self, data: bytes, limit: int) -> None:
        self.inner = BytesSource(data)
        self.stats = self.inner.stats
        self.limit = limit

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        for r in ranges:
            assert r.size <= self.limit and r.end <= self.size, r
        return self.inner.read(ranges)

    def close(self) -> None:
        pass


SEED_ARCHIVES = [(VECTORS / "golden" / n).read_bytes() for n in ("tiny.uri", "tree.uri")]
WINDOW = 8192


def exercise(data: bytes) -> None:
    """Open, list, walk, stat, read every file, verify: only lockbox errors may escape."""
    src = Bounded(data, WINDOW)
    settings = {"first_window_size": 4096, "max_window_size": WINDOW,
                "data_window_size": WINDOW}
    try:
        s = open_session(src, **settings)
    except LockboxError:
        return
    try:
        walk_all(s, src)
    except LockboxError:
        pass
    try:
        for e in run_sync(s.listdir_flow(""), src) + walk_all(s, src):
            run_sync(s.stat_flow(e.path), src)
            if e.type == "file":
                try:
                    run_sync(s.read_flow(e.path, 0, WINDOW), src)
                except LockboxError:
                    pass
    except LockboxError:
        pass
    report = run_sync(open_session(src, **settings).verify_flow(), src)
    assert all("\n" not in p for p in report.problems)


@st.composite
def mutations(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_ARCHIVES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "u32"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=100))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 100))]
        elif op == "u32":  # a length field set to a huge value
            data[at : at + 4] = draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x01\x10\x00\x00"]))
    return bytes(data)


@FUZZ
@given(mutations())
def test_mutated_archives_give_only_lockbox_errors(data):
    exercise(data)


@FUZZ
@given(trees(), st.data())
def test_mutated_valid_chunks_with_fixed_crcs(entries, data):
    """Damage that keeps every CRC valid (so the structure checks, not the CRCs, decide)."""
    mutated = []
    for e in entries:
        path = data.draw(st.sampled_from([e.path, e.path + b"/", b"/" + e.path, b"..",
                                          e.path.replace(b"/", b"//"), b"", e.path]))
        mutated.append(Entry(e.kind, path, e.mode, e.owner, e.group, e.data))
    blob = ind.write(mutated)
    exercise(blob)
    try:
        ind.read(blob)
        strict_ok = True
    except ind.Invalid:
        strict_ok = False
    src = BytesSource(blob)
    try:
        walk_all(open_session(src), src)
        ours_ok = True
    except LockboxError:
        ours_ok = False
    assert ours_ok == strict_ok  # no data is damaged: listing and the strict reader agree


def test_claimed_lengths_never_drive_a_read(tmp_path: Path):
    """A 4 GiB file_len and a path_len at the limit in an otherwise tiny file."""
    blob = b"uri\x00" + bytes(4) + ind.header(b"FILE", 4096, 0, b"", b"", 2**32) + b"x" * 100
    exercise(blob)
    p = tmp_path / "c.uri"
    p.write_bytes(blob)
    with FileSource(p) as src:
        report = run_sync(open_session(src).verify_flow(), src)
    assert report.problems[0].startswith("TruncatedError")
