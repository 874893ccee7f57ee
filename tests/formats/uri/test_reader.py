"""lockbox.formats.uri.reader: the FormatSpec and the session's flows over in-memory and
file sources -- windows and round trips, the index and its limits, reads and their CRC
verdicts, streaming, walk, verify."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lockbox.drivers import run_async, run_sync
from lockbox.errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LimitExceededError,
    NotFoundError,
    TruncatedError,
    UsageError,
)
from lockbox.formats.uri import UriFormat, iter_file
from lockbox.formats.uri.reader import MAX_PROBLEMS, ROOT_MODE
from lockbox.protocol import FormatSession, OpenOptions
from lockbox.ranges import ByteRange
from lockbox.sources import AsyncBytesSource, BytesSource, FileSource

from . import independent as ind
from . import open_session, session_of, walk_all
from .independent import Entry

KiB, MiB = 1024, 1024 * 1024
FILE, DIR, SLNK = b"FILE", b"DIR ", b"SLNK"


class Recording:
    """A source wrapper that records every batch (round trip) and range."""

    def __init__(self, inner: Any, hide_size: bool = False) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.hide_size = hide_size
        self.batches: list[tuple[ByteRange, ...]] = []

    @property
    def size(self) -> int | None:
        return None if self.hide_size else self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.batches.append(tuple(ranges))
        return self.inner.read(ranges)

    def close(self) -> None:
        self.inner.close()

    @property
    def bytes(self) -> int:
        return sum(r.size for b in self.batches for r in b)


def small_files(n: int, dirs: int = 10, size: int = 100) -> list[Entry]:
    out = [Entry(DIR, b"dir%02d" % d, 0o755, b"u", b"g") for d in range(dirs)]
    out += [Entry(FILE, b"dir%02d/f%05d.txt" % (i % dirs, i), 0o644, b"u", b"g",
                  (b"%d," % i) * (size // 4)) for i in range(n)]
    return out


def tree() -> list[Entry]:
    return [
        Entry(DIR, b"d", 0o755, b"alice", b"staff"),
        Entry(FILE, b"d/b.txt", 0o644, b"alice", b"staff", b"bee"),
        Entry(FILE, b"d/a.txt", 0o600, b"bob", b"", b"a" * 5000),
        Entry(DIR, b"d/sub", 0o700),
        Entry(SLNK, b"d/sub/up", 0o777, b"", b"", b"../a.txt"),
        Entry(FILE, b"top\xff", 0o4755, b"", b"", b""),
        Entry(FILE, b"Z", 0o644, b"", b"", b"z"),
    ]


# ------------------------------------------------------------------------- the spec


def test_spec_attributes_and_probe():
    assert UriFormat.name == "uri" and UriFormat.extensions == (".uri",)
    assert not UriFormat.encrypted and UriFormat.writable and UriFormat.probe_size == 8
    assert UriFormat.probe(b"uri\x00\x00\x00\x00\x00")
    assert UriFormat.probe(b"uri\x00\x07\x00\x00\x00")  # open says "unsupported version"
    assert not UriFormat.probe(b"uri") and not UriFormat.probe(b"") and not UriFormat.probe(
        b"LBX1....")


def test_session_satisfies_the_protocol():
    s, _ = session_of(ind.write(tree()))
    assert isinstance(s, FormatSession)


def test_open_reads_one_window_and_nothing_else():
    src = Recording(BytesSource(ind.write(small_files(1000))))
    s = open_session(src)
    assert src.batches == [(ByteRange(0, 16 * KiB),)]  # the registry's probe size
    info = s.info()
    assert (info.format, info.encrypted, info.entries) == ("uri", False, None)
    run_sync(s.listdir_flow(""), src)
    info = s.info()
    assert info.entries == 1010 and info.details["files"] == 1000
    assert info.details["dirs"] == 10 and info.details["symlinks"] == 0
    assert info.file_bytes == sum(len(e.data) for e in small_files(1000))


def test_bad_settings_are_usage_errors():
    for settings in ({"max_entries": 0}, {"max_entries": "10"}, {"emit_batch": True},
                     {"first_window_size": 10}):
        with pytest.raises(UsageError):
            session_of(ind.write([]), **settings)


# ------------------------------------------------------------------ stat / listdir / walk


def test_stat_listdir_and_the_root():
    s, src = session_of(ind.write(tree()))
    root = run_sync(s.stat_flow(""), src)
    assert (root.type, root.mode, root.path) == ("dir", ROOT_MODE, "")
    names = [e.name for e in run_sync(s.listdir_flow(""), src)]
    assert names == ["Z", "d", "top\udcff"]  # sorted by bytes: 'Z' < 'd' < 't'
    assert [e.name for e in run_sync(s.listdir_flow("/d/"), src)] == ["a.txt", "b.txt", "sub"]
    a = run_sync(s.stat_flow("d/a.txt"), src)
    assert (a.type, a.size, a.mode, a.owner, a.group, a.mtime_ns) == (
        "file", 5000, 0o600, "bob", "", 0)
    up = run_sync(s.stat_flow("d/sub/up"), src)
    assert (up.type, up.target, up.size) == ("symlink", "../a.txt", 0)
    top = run_sync(s.stat_flow("top\udcff"), src)
    assert top.mode == 0o4755 and top.path.encode("utf-8", "surrogateescape") == b"top\xff"


def test_not_found_and_wrong_type_errors():
    s, src = session_of(ind.write(tree()))
    with pytest.raises(NotFoundError, match="nope"):
        run_sync(s.stat_flow("nope"), src)
    with pytest.raises(NotFoundError):
        run_sync(s.listdir_flow("d/nope"), src)
    with pytest.raises(InvalidPathError, match="not a directory"):
        run_sync(s.listdir_flow("d/a.txt"), src)
    with pytest.raises(InvalidPathError, match="not a file"):
        run_sync(s.read_flow("d", 0, 10), src)
    with pytest.raises(InvalidPathError, match="not a file"):
        run_sync(s.read_flow("d/sub/up", 0, 10), src)
    with pytest.raises(InvalidPathError):
        run_sync(s.stat_flow("../etc"), src)
    with pytest.raises(UsageError):
        run_sync(s.read_flow("Z", -1, 10), src)


@pytest.mark.parametrize("indexed", [False, True])
def test_walk_in_archive_order_with_and_without_the_index(indexed):
    s, src = session_of(ind.write(tree()))
    if indexed:
        run_sync(s.listdir_flow(""), src)
    assert [e.path for e in walk_all(s, src)] == [
        "d", "d/b.txt", "d/a.txt", "d/sub", "d/sub/up", "top\udcff", "Z"]
    assert [e.path for e in walk_all(s, src, "d/sub")] == ["d/sub", "d/sub/up"]
    assert [e.path for e in walk_all(s, src, "d/a.txt")] == ["d/a.txt"]
    with pytest.raises(NotFoundError):
        walk_all(s, src, "d/zz")


def test_walk_streams_in_batches_and_keeps_no_index():
    s, src = session_of(ind.write(small_files(95, dirs=5)), emit_batch=10)
    sizes: list[int] = []
    run_sync(s.walk_flow("", lambda batch: sizes.append(len(batch))), src)
    assert sizes == [10] * 10
    assert s.info().details["indexed"] is False


def test_async_driver_gives_the_same_listing():
    data = ind.write(tree())

    async def go() -> list[str]:
        src = AsyncBytesSource(data)
        s = await run_async(UriFormat().open_flow(len(data), OpenOptions()), src)
        out: list[Any] = []
        await run_async(s.walk_flow("", out.extend), src)
        assert await run_async(s.read_flow("d/b.txt", 0, 100), src) == b"bee"
        return [e.path for e in out]

    assert asyncio.run(go()) == [e.path.decode("utf-8", "surrogateescape") for e in tree()]


# ----------------------------------------------------------------------- windows


def test_1000_small_files_list_in_few_round_trips():
    src = Recording(BytesSource(ind.write(small_files(1000))))
    s = open_session(src)
    assert len(run_sync(s.listdir_flow("dir03"), src)) == 100
    assert len(src.batches) <= 5
    assert all(len(b) == 1 for b in src.batches)
    sizes = [b[0].size for b in src.batches]
    assert sizes[0] == 16 * KiB and sizes[1] == 32 * KiB  # the window grows


def test_a_large_file_is_jumped_over_and_the_window_restarts(tmp_path):
    big = 64 * MiB
    entries = [*small_files(20, dirs=2), Entry(FILE, b"big.bin", 0o644, b"", b"", bytes(big))]
    entries += [Entry(FILE, b"after%d" % i, 0o644, b"", b"", b"x") for i in range(3)]
    path = tmp_path / "big.uri"
    path.write_bytes(ind.write(entries))
    src = Recording(FileSource(path))
    s = open_session(src)
    assert len(run_sync(s.listdir_flow(""), src)) == 2 + 1 + 3
    start = 8 + sum(96 + len(e.path) + len(e.data) for e in entries[:22]) + 92 + 7
    fetched = sum(max(0, min(r.end, start + big) - max(r.offset, start))
                  for b in src.batches for r in b)
    assert fetched <= 64 * KiB  # at most the read-ahead of the window that reached it
    assert src.bytes <= 256 * KiB
    assert src.batches[-1][0].size <= 64 * KiB  # restarted after the jump (cut at EOF)
    src.close()


def test_listing_without_a_known_size_still_detects_a_cut_file():
    entries = tree()
    data = ind.write(entries)
    cut = data[: data.index(b"a" * 5000) + 100]  # inside d/a.txt's data
    src = Recording(BytesSource(cut), hide_size=True)
    s = open_session(src, first_window_size=128)
    assert s.size is None
    with pytest.raises(TruncatedError, match="ends inside its 5000-byte data"):
        run_sync(s.listdir_flow(""), src)
    src = Recording(BytesSource(data), hide_size=True)
    s = open_session(src, first_window_size=128)
    assert len(walk_all(s, src)) == len(entries) and s.size == len(data)


# ------------------------------------------------------------------------ reads


def test_read_checks_the_whole_file_once_then_reads_ranges():
    content = bytes(range(256)) * 4000  # 1,024,000 bytes
    data = ind.write([Entry(FILE, b"f", 0o644, b"", b"", content)])
    src = Recording(BytesSource(data))
    s = open_session(src, data_window_size=256 * KiB)
    run_sync(s.stat_flow("f"), src)
    before = src.bytes
    assert run_sync(s.read_flow("f", 1000, 10), src) == content[1000:1010]
    assert src.bytes - before >= len(content)  # the first read checked everything
    before = src.bytes
    assert run_sync(s.read_flow("f", 5000, 100), src) == content[5000:5100]
    assert src.bytes - before == 100
    assert run_sync(s.read_flow("f", len(content) - 3, 100), src) == content[-3:]
    assert run_sync(s.read_flow("f", len(content) + 5, 100), src) == b""


def test_a_damaged_file_never_returns_a_byte_and_the_verdict_is_kept():
    data = bytearray(ind.write(tree()))
    data[data.index(b"a" * 5000) + 4321] ^= 0xFF
    src = Recording(BytesSource(bytes(data)))
    s = open_session(src, data_window_size=1024)
    assert run_sync(s.read_flow("d/b.txt", 0, 10), src) == b"bee"  # others are fine
    with pytest.raises(IntegrityError, match="data CRC32 mismatch"):
        run_sync(s.read_flow("d/a.txt", 0, 10), src)
    n = len(src.batches)
    with pytest.raises(IntegrityError):
        run_sync(s.read_flow("d/a.txt", 10, 10), src)
    assert len(src.batches) == n  # no second pass
    with pytest.raises(IntegrityError):
        run_sync(s.stream_flow("d/a.txt", lambda piece: None), src)


def test_an_empty_file_still_has_its_path_checked():
    data = bytearray(ind.write(tree()))
    crc_at = data.index(b"top\xff") + 4
    data[crc_at] ^= 1
    s, src = session_of(bytes(data))
    with pytest.raises(IntegrityError):
        run_sync(s.read_flow("top\udcff", 0, 10), src)


def test_unchecked_partial_reads_setting():
    data = bytearray(ind.write(tree()))
    data[data.index(b"a" * 5000) + 10] ^= 0xFF
    s, src = session_of(bytes(data), unchecked_partial_reads=True)
    assert run_sync(s.read_flow("d/a.txt", 100, 10), src) == b"a" * 10  # not checked
    with pytest.raises(IntegrityError):
        run_sync(s.read_flow("d/a.txt", 0, 10**6), src)  # whole: checked


def test_stream_flow_holds_back_the_last_piece_until_the_crc_matched():
    content = bytes(range(256)) * 40
    good = ind.write([Entry(FILE, b"f", 0o644, b"", b"", content)])
    s, src = session_of(good, data_window_size=1000, first_window_size=1000,
                        max_window_size=1000)
    pieces: list[bytes] = []
    assert run_sync(s.stream_flow("f", pieces.append), src) == len(content)
    assert b"".join(pieces) == content and max(map(len, pieces)) <= 1000
    bad = bytearray(good)
    bad[-5] ^= 1  # the last data byte
    s, src = session_of(bytes(bad), data_window_size=1000)
    pieces = []
    with pytest.raises(IntegrityError):
        run_sync(s.stream_flow("f", pieces.append), src)
    assert 0 < sum(map(len, pieces)) < len(content)  # everything but the last piece
    got: list[bytes] = []
    with pytest.raises(IntegrityError):
        for piece in iter_file(s, src, "f"):
            got.append(piece)
    assert sum(map(len, got)) < len(content)
    s, src = session_of(good, data_window_size=1000)
    assert b"".join(iter_file(s, src, "f")) == content


# ------------------------------------------------------------------------ limits


def test_entry_limit_names_its_setting_everywhere():
    data = ind.write(small_files(20, dirs=2))
    s, src = session_of(data, max_entries=10)
    with pytest.raises(LimitExceededError, match="'max_entries'"):
        run_sync(s.listdir_flow(""), src)
    with pytest.raises(LimitExceededError, match="'max_entries'"):
        walk_all(s, src)
    report = run_sync(s.verify_flow(), src)
    assert report.problems[-1].startswith("LimitExceededError") and "max_entries" in (
        report.problems[-1])
    s, src = session_of(data, max_index_bytes=4096)
    with pytest.raises(LimitExceededError, match="'max_index_bytes'"):
        run_sync(s.stat_flow("dir00"), src)


def test_index_memory_estimate_is_not_an_underestimate():
    import tracemalloc

    data = ind.write(small_files(5000, dirs=50, size=8))
    s, src = session_of(data, max_window_size=64 * KiB)
    tracemalloc.start()
    try:
        run_sync(s.listdir_flow(""), src)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s._index is not None
    assert used <= 1.1 * s._index.weight + 128 * KiB, (used, s._index.weight)


# ------------------------------------------------------------------------ verify


def test_verify_counts_and_progress():
    data = ind.write(tree())
    s, src = session_of(data)
    seen: dict[str, int] = {}
    report = run_sync(s.verify_flow(lambda p, n: seen.__setitem__(p, seen.get(p, 0) + n)), src)
    assert report.ok and report.entries_checked == 7
    assert report.bytes_checked == sum(len(e.data) for e in tree())
    assert seen["d/a.txt"] == 5000 and seen["d/sub/up"] == 8


def test_verify_goes_on_after_data_problems_and_caps_its_lines():
    entries = [Entry(FILE, b"f%05d" % i, 0o644, b"", b"", b"x") for i in range(MAX_PROBLEMS + 50)]
    data = bytearray(ind.write(entries))
    pos = 8
    for e in entries:  # damage every file's data
        data[pos + 92 + len(e.path)] ^= 1
        pos += 96 + len(e.path) + 1
    s, src = session_of(bytes(data))
    report = run_sync(s.verify_flow(), src)
    assert report.entries_checked == len(entries)
    assert len(report.problems) == MAX_PROBLEMS + 1
    assert report.problems[-1] == "... and 50 more problems"
    assert all(p.startswith("IntegrityError: chunk at offset") for p in report.problems[:-1])


def test_verify_reports_structure_problems_and_continues():
    data = ind.write([Entry(FILE, b"x/y", 0o644, b"", b"", b"1"),
                      Entry(FILE, b"a", 0o644, b"", b"", b"1"),
                      Entry(FILE, b"a", 0o644, b"", b"", b"2"),
                      Entry(FILE, b"../up", 0o644, b"", b"", b"3")])
    s, src = session_of(data)
    report = run_sync(s.verify_flow(), src)
    assert [p.split(":")[0] for p in report.problems] == [
        "FormatError", "FormatError", "UnsafePathError"]
    assert report.entries_checked == 4
    with pytest.raises(FormatError, match="comes before its directory"):
        run_sync(s.listdir_flow(""), src)


def test_file_source_and_bytes_source_agree(tmp_path: Path):
    data = ind.write(tree())
    p = tmp_path / "t.uri"
    p.write_bytes(data)
    with FileSource(p) as fsrc:
        a = walk_all(open_session(fsrc), fsrc)
    s, bsrc = session_of(data)
    assert a == walk_all(s, bsrc)


