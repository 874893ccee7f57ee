"""``.uri`` over a real HTTP Range server on 127.0.0.1: round trips to list 1,000 small
files, a 64 MiB file's data never fetched by a listing, reads, verify, the async driver,
and the typed error of a server without Range support."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lockbox.drivers import run_async, run_sync
from lockbox.errors import RangeNotSupportedError
from lockbox.formats.uri import UriFormat
from lockbox.protocol import OpenOptions
from lockbox.ranges import ByteRange
from lockbox.sources import AsyncHttpSource, HttpSource
from sources.servers import ServerState, live_server, make_app

from . import independent as ind
from . import open_session, walk_all
from .independent import Entry

KiB, MiB = 1024, 1024 * 1024
BIG = 64 * MiB


class Counting:
    """Counts round trips (read batches) and records the ranges of a sync source."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.ranges: list[ByteRange] = []
        self.round_trips = 0

    @property
    def size(self) -> int | None:
        return self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.round_trips += 1
        self.ranges += ranges
        return self.inner.read(ranges)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def overlap(self, start: int, end: int) -> int:
        return sum(max(0, min(r.end, end) - max(r.offset, start)) for r in self.ranges)


def small_files(n: int) -> list[Entry]:
    out = [Entry(b"DIR ", b"dir%d" % d, 0o755, b"u", b"g") for d in range(10)]
    return out + [Entry(b"FILE", b"dir%d/file%04d.txt" % (i % 10, i), 0o644, b"u", b"g",
                        b"content of %d\n" % i * 8) for i in range(n)]


def write_big(path: Path) -> tuple[int, int]:
    """small files, a 64 MiB file (sparse zeros), small files; the big data's range."""
    before = ind.write(small_files(50))
    name = b"big.bin"
    crc = zlib.crc32(name)
    zeros = bytes(MiB)
    for _ in range(BIG // MiB):
        crc = zlib.crc32(zeros, crc)
    with open(path, "wb") as f:
        f.write(before + ind.header(b"FILE", len(name), 0o644, b"", b"", BIG) + name)
        start = f.tell()
        f.truncate(start + BIG)
        f.seek(start + BIG)
        f.write(crc.to_bytes(4, "little"))
        for i in range(5):
            f.write(ind.chunk(b"FILE", b"after%d" % i, b"tail %d" % i))
    return start, start + BIG


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("uri-http")
    (root / "many.uri").write_bytes(ind.write(small_files(1000)))
    big_range = write_big(root / "big.uri")
    with live_server(make_app(ServerState(root)), timeout=10.0) as live:
        yield live.base_url, {"big": big_range, "root": root}


def test_1000_small_files_list_in_at_most_5_round_trips(served):
    base, _ = served
    with Counting(HttpSource(f"{base}/files/many.uri")) as src:
        s = open_session(src)  # the size is not known before the first read
        assert len(run_sync(s.listdir_flow(""), src)) == 10
        assert src.round_trips <= 5
        before = src.round_trips
        assert len(run_sync(s.listdir_flow("dir7"), src)) == 100  # from the index
        data = run_sync(s.read_flow("dir3/file0013.txt", 0, 1000), src)
        assert data == b"content of 13\n" * 8
        assert src.round_trips - before == 1
    with Counting(HttpSource(f"{base}/files/many.uri")) as src:
        s = open_session(src)
        assert len(walk_all(s, src)) == 1010  # streamed, no index
        assert src.round_trips <= 5


def test_a_64_MiB_file_is_never_fetched_by_a_listing(served):
    base, info = served
    start, end = info["big"]
    src = Counting(HttpSource(f"{base}/files/big.uri"))
    s = open_session(src)
    names = [e.path for e in walk_all(s, src)]
    assert "big.bin" in names and names[-1] == "after4" and len(names) == 10 + 50 + 1 + 5
    assert src.overlap(start, end) <= 64 * KiB  # only the read-ahead of one window
    assert sum(r.size for r in src.ranges) <= 256 * KiB
    st = run_sync(s.stat_flow("big.bin"), src)
    assert st.size == BIG and src.overlap(start, end) <= 64 * KiB
    src.close()


def test_verify_and_reads_over_http(served):
    base, _ = served
    src = Counting(HttpSource(f"{base}/files/many.uri"))
    s = open_session(src)
    report = run_sync(s.verify_flow(), src)
    assert report.ok and report.entries_checked == 1010
    assert src.round_trips <= 6
    src.close()


def test_async_driver_over_http(served):
    base, _ = served

    async def go() -> tuple[int, bytes]:
        src = AsyncHttpSource(f"{base}/files/many.uri")
        try:
            s = await run_async(UriFormat().open_flow(None, OpenOptions()), src)
            out: list[Any] = []
            await run_async(s.walk_flow("", out.extend), src)
            data = await run_async(s.read_flow("dir0/file0000.txt", 0, 1000), src)
            return len(out), data
        finally:
            await src.aclose()

    n, data = asyncio.run(go())
    assert n == 1010 and data == b"content of 0\n" * 8


def test_a_server_ignoring_range_is_a_typed_error(served):
    base, _ = served
    with HttpSource(f"{base}/norange/many.uri") as src, pytest.raises(RangeNotSupportedError):
        open_session(src)
