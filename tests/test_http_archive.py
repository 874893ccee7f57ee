"""The range-read contract, measured at the archive level over a real HTTP server
on 127.0.0.1: round trips (flow batches), requests and bytes for open + unlock +
list root, a deeper listing and a small read; and the typed errors for a server
that ignores Range and for an archive that changes mid-session."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import lockbox
from lockbox import RangeNotSupportedError, SourceChangedError
from lockbox.formats.lbox.wire.constants import PACK_TARGET_SIZE
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED
from lockbox.ranges import ByteRange
from lockbox.sources import AsyncHttpSource, HttpSource
from sources.servers import ServerState, live_server, make_app

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)
KiB = 1024


class Counting:
    """Counts round trips (read batches) and bytes of a sync source."""

    def __init__(self, inner: HttpSource) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.round_trips = 0
        self.bytes = 0

    @property
    def size(self) -> int | None:
        return self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.round_trips += 1
        out = self.inner.read(ranges)
        self.bytes += sum(len(b) for b in out)
        return out

    def close(self) -> None:
        self.inner.close()


class AsyncCounting(Counting):
    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:  # type: ignore[override]
        self.round_trips += 1
        out = await self.inner.read(ranges)  # type: ignore[misc]
        self.bytes += sum(len(b) for b in out)
        return out

    async def aclose(self) -> None:
        await self.inner.aclose()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("archives")
    small = lockbox.create(root / "small.lbox", password="pw", argon2=WEAK)
    with small.writer() as w:
        w.add_bytes("note.txt", os.urandom(10 * KiB))
        w.add_bytes("docs/readme.md", b"# hello\n" * 100)
        w.env_set("TOKEN", "s3cret")
    small.close()
    many = lockbox.create(root / "many.lbox", password="pw", argon2=WEAK)
    with many.writer() as w:
        for d in range(40):
            for i in range(500):
                w.add_bytes(f"dir{d:02d}/sub/file{i:04d}.txt", b"%d-%d\n" % (d, i) * 20)
        w.add_bytes("top-10k.bin", os.urandom(10 * KiB))
    many.close()
    with live_server(make_app(ServerState(root)), timeout=10.0) as live:
        yield live.base_url, root


def test_small_archive_opens_and_lists_in_one_round_trip(served):
    base, _ = served
    src = Counting(HttpSource(f"{base}/files/small.lbox"))
    box = lockbox.Lockbox(src, password="pw")  # type: ignore[arg-type]
    names = [e.name for e in box.ls()]
    assert names == ["docs", "note.txt"]
    assert (src.round_trips, src.bytes, src.stats.requests) == (1, 16 * KiB, 1)
    before_rt, before_bytes = src.round_trips, src.bytes
    assert len(box.read_bytes("note.txt")) == 10 * KiB
    assert src.round_trips - before_rt == 1
    assert src.bytes - before_bytes <= 16 * KiB
    assert box.env_get("TOKEN") == b"s3cret"
    box.close()


def test_20000_entries_open_list_read_budget(served):
    base, _ = served
    src = Counting(HttpSource(f"{base}/files/many.lbox"))
    box = lockbox.Lockbox(src, password="pw")  # type: ignore[arg-type]
    root = box.ls()
    assert len(root) == 41
    assert box.view.commit.toc.height >= 2  # not a trivially inline tree
    assert src.round_trips <= 2
    assert src.bytes <= 64 * KiB
    rt, by = src.round_trips, src.bytes
    data = box.read_bytes("top-10k.bin")  # its entry came with the root listing
    assert len(data) == 10 * KiB
    # a small file is a member of a pack (FORMAT §10): one round trip fetches exactly
    # that PACK frame, at most about PACK_TARGET_SIZE bytes
    assert src.round_trips - rt == 1
    rt, fetched = src.round_trips, src.bytes - by
    entry = box.run(box.view.stat_flow("top-10k.bin"))
    assert entry.layout == LAYOUT_PACKED and src.round_trips == rt  # no read: cached
    assert fetched == entry.refs[0].frame_size <= PACK_TARGET_SIZE + 64 * KiB
    rt = src.round_trips
    sub = box.ls("dir17/sub")
    assert [e.name for e in sub][:2] == ["file0000.txt", "file0001.txt"] and len(sub) == 500
    # one batch per tree level below the root, plus the stat of the directory itself
    assert src.round_trips - rt <= 2 * box.view.commit.toc.height
    box.close()


def test_async_driver_gives_the_same_listing_with_the_same_budget(served):
    base, _ = served

    async def go() -> tuple[list[str], int, int, bytes]:
        src = AsyncCounting(AsyncHttpSource(f"{base}/files/many.lbox"))  # type: ignore[arg-type]
        box = await lockbox.AsyncLockbox.open(src, password="pw")  # type: ignore[arg-type]
        names = [e.name for e in await box.ls()]
        rt, by = src.round_trips, src.bytes
        data = await box.read_bytes("dir03/sub/file0007.txt")
        report = await box.verify()
        assert report.ok and report.files_checked == 20001
        await box.aclose()
        return names, rt, by, data

    names, rt, by, data = asyncio.run(go())
    assert len(names) == 41 and rt <= 2 and by <= 64 * KiB
    assert data == b"3-7\n" * 20


def test_server_ignoring_range_is_a_typed_error(served):
    base, _ = served
    with pytest.raises(RangeNotSupportedError):
        lockbox.open(f"{base}/norange/small.lbox", password="pw")


def test_archive_changed_on_the_server_mid_session(served, tmp_path):
    base, root = served
    path = root / "changing.lbox"
    box = lockbox.create(path, password="pw", argon2=WEAK)
    with box.writer() as w:
        w.add_bytes("a.txt", b"one")
        w.add_bytes("big.bin", os.urandom(100 * KiB))  # over PACK_FILE_LIMIT: own frame
    remote = lockbox.open(f"{base}/files/changing.lbox", password="pw")
    assert remote.read_bytes("a.txt") == b"one"
    with box.writer() as w:  # the owner commits again: size, mtime and ETag change
        w.add_bytes("b.txt", b"two" * 5000)
    with pytest.raises(SourceChangedError):
        remote.ls()
        # bytes not fetched yet (a.txt's pack is in the view's pack cache: no read)
        remote.read_bytes("big.bin")
    box.close()
    # a fresh open sees the new commit
    assert sorted(e.name for e in lockbox.open(f"{base}/files/changing.lbox", password="pw")
                  .ls()) == ["a.txt", "b.txt", "big.bin"]
