"""The viewer's ``.lbox`` extension (lockbox.viewer.lbox) on packed archives (small files
sharing PACK frames), through the worker's ``Session`` on CPython: a folder's zip opens
each pack once and fetches it in few round trips, previews and downloads of packed files
reuse the opened pack, and a damaged pack fails its own files only, named.

It also runs inside Pyodide (``tests/pyodide/harness.py -- tests/viewer``), where the
archives are written in Pyodide's file system (:func:`make`)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.errors import FormatError
from lockbox.formats.lbox.view import ChunkData
from lockbox.formats.lbox.wire.chunk import ChunkHeader
from lockbox.formats.lbox.wire.constants import EntryType
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED, Entry
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.sources.memory import AsyncBytesSource
from lockbox.viewer import lbox as vlbox
from lockbox.viewer.lbox import PlainCache, file_batches, stored_order
from lockbox.viewer.session import Session

PASSWORD = "pw"
WEAK_ARGON2 = lockbox.Argon2Params(time_cost=1, memory_kib=64)  # as tests/conftest.py's
CHUNK = 64 * 1024  # files up to this size are packed (and fit one chunk)


def tree(n: int = 1100, seed: int = 5) -> dict[str, bytes]:
    """n small files (0 B to 4 KiB, not compressible: 3 packs of 1 MiB for 1100) in
    three folders (the members of each pack from all three), one empty file, and a large
    file (chunked)."""
    rnd = random.Random(seed)
    files = {f"small/d{i % 3}/f{i:04d}.bin": rnd.randbytes(0 if i == 3 else rnd.randrange(1, 4097))
             for i in range(n)}
    files["small/big.bin"] = rnd.randbytes(3 * CHUNK + 10)
    files["top.txt"] = b"top\n"
    return files


def _copy_link(src: str, dst: str) -> None:
    """``os.link`` where the system has none (Pyodide's file system): what
    ``fileio``'s create-if-absent needs of it, a copy that refuses an existing name."""
    if os.path.lexists(dst):
        raise FileExistsError(dst)
    shutil.copyfile(src, dst)


def make(path: Path, files: Mapping[str, bytes]) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        if not hasattr(os, "link"):
            mp.setattr(os, "link", _copy_link, raising=False)
        box = lockbox.create(path, password=PASSWORD, argon2=WEAK_ARGON2, chunk_size=CHUNK)
        with box.writer() as w:
            for name, data in files.items():
                w.add_bytes(name, data, mtime_ns=1_700_000_000_000_000_000)
        box.close()
    return path


def packs_of(path: Path, files: Mapping[str, bytes]) -> dict[tuple[int, int], list[str]]:
    """(pack frame offset, size) -> its files."""
    out: dict[tuple[int, int], list[str]] = {}
    with lockbox.open(path, password=PASSWORD) as box:
        for name in files:
            e: Entry = box.run(box.view.stat_flow(name))
            if e.layout == LAYOUT_PACKED:
                r = e.refs[0]
                out.setdefault((r.frame_offset, r.frame_size), []).append(name)
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    files = tree()
    path = make(tmp_path_factory.mktemp("packed") / "packed.lbox", files)
    return path, files


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)  # a hang guard, not a timing assertion

    return asyncio.run(bounded())


async def opened(path: Path) -> Session:
    s = Session()
    await s.open_source(AsyncBytesSource(path.read_bytes()), location=str(path),
                        name=path.name, kind="file")
    await s.unlock(password=PASSWORD)
    return s


async def call(s: Session, method: str, **args: Any) -> Any:
    return json.loads(await s.call(method, json.dumps(args)))


async def drain(s: Session, handle: int) -> bytes | dict[str, Any]:
    out = b""
    while True:
        piece = await s.call_binary("stream_next", json.dumps({"handle": handle}))
        if isinstance(piece, str):
            return json.loads(piece)["error"]  # type: ignore[no-any-return]
        if not piece:
            return out
        out += piece


async def zipped(s: Session, folder: str) -> dict[str, bytes] | dict[str, Any]:
    h = (await call(s, "zip_open", path=folder))["ok"]["handle"]
    data = await drain(s, h)
    if isinstance(data, dict):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}


def test_the_archive_is_packed(packed: tuple[Path, dict[str, bytes]]) -> None:
    path, files = packed
    packs = packs_of(path, files)
    assert len(packs) >= 3
    assert sum(len(v) for v in packs.values()) == len(files) - 1  # all but big.bin


def test_folder_zip_opens_each_pack_once(packed: tuple[Path, dict[str, bytes]]) -> None:
    path, files = packed
    packs = packs_of(path, files)

    async def go() -> None:
        s = await opened(path)
        ext = s._lbox
        assert ext is not None
        view, rec = ext.view, s._source
        assert rec is not None
        await call(s, "ls", path="small")
        before_packs, before_trips = view.packs_opened, rec.round_trips
        got = await zipped(s, "small")
        assert got == {n: d for n, d in files.items() if n.startswith("small/")}
        assert view.packs_opened - before_packs == len(packs)
        # the walk, the packs (ZIP_BATCH_PACKS a round trip), big.bin's chunks
        assert rec.round_trips - before_trips <= 3 + len(packs) // vlbox.ZIP_BATCH_PACKS + 2
        # the same zip again: every pack is still opened in the view, nothing is fetched
        before_packs, before_bytes = view.packs_opened, rec.stats.bytes_read
        assert await zipped(s, "small/d1") == {n[len("small/"):]: d for n, d in files.items()
                                               if n.startswith("small/d1/")}
        assert view.packs_opened == before_packs
        assert rec.stats.bytes_read == before_bytes
        assert (await call(s, "network"))["ok"]["reused"]["packs_opened"] == view.packs_opened
        await s.close()

    run(go())


def test_zip_batches_hold_at_most_zip_batch_packs_new_packs(
        packed: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    path, files = packed
    packs = packs_of(path, files)
    monkeypatch.setattr(vlbox, "ZIP_BATCH_PACKS", 1)

    async def go() -> None:
        s = await opened(path)
        assert s._lbox is not None and s._source is not None
        view, rec = s._lbox.view, s._source
        before = rec.round_trips
        got = await zipped(s, "")
        assert got == {f"packed/{n}": d for n, d in files.items()}
        assert view.packs_opened == len(packs)  # each once, although several round trips
        assert rec.round_trips - before >= len(packs)
        await s.close()

    run(go())


def test_preview_and_download_of_packed_files_reuse_the_pack(
        packed: tuple[Path, dict[str, bytes]]) -> None:
    path, files = packed
    packs = packs_of(path, files)
    first_pack = next(iter(packs.values()))
    a, b = first_pack[1], first_pack[-1]
    empty = "small/d0/f0003.bin"

    async def go() -> None:
        s = await opened(path)
        assert s._lbox is not None and s._source is not None
        view, rec = s._lbox.view, s._source
        # a whole preview (the pipelined read), then another file of the same pack
        assert await s.read(a, 0, 1 << 20) == files[a]
        assert view.packs_opened == 1
        trips = rec.round_trips
        assert await s.read(b, 0, 1 << 20) == files[b]
        assert view.packs_opened == 1
        # a part of a file (read_chunks_flow), and its download: the kept chunk
        assert await s.read(b, 3, 10) == files[b][3:13]
        h = (await call(s, "stream_open", path=b))["ok"]
        assert h["size"] == len(files[b])
        assert await drain(s, h["handle"]) == files[b]
        assert rec.round_trips <= trips + 1  # b's stat at most: its pack is opened
        assert (await call(s, "network"))["ok"]["reused"]["chunks"] >= 1
        assert await s.read(empty, 0, 100) == b""
        h = (await call(s, "stream_open", path=empty))["ok"]
        assert await drain(s, h["handle"]) == b""
        await s.close()

    run(go())


def test_damaged_pack_fails_its_own_files_named(
        packed: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    path, files = packed
    packs = packs_of(path, files)
    (offset, size), bad = sorted(packs.items())[1]
    damaged = tmp_path / "damaged.lbox"
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    good = next(n for (o, _), v in sorted(packs.items()) if o != offset for n in v)

    async def go() -> None:
        s = await opened(damaged)
        for name in (bad[0], bad[-1]):
            got = await s.call_binary("read", json.dumps({"path": name, "size": 100}))
            assert isinstance(got, str)
            err = json.loads(got)["error"]
            assert err["kind"] == "corrupt" and err["path"] == name, err
            h = (await call(s, "stream_open", path=name))["ok"]["handle"]
            err = await drain(s, h)
            assert isinstance(err, dict) and err["kind"] == "corrupt" and err["path"] == name
        assert await s.read(good, 0, 1 << 20) == files[good]
        assert await s.read("small/big.bin", 0, 100) == files["small/big.bin"][:100]
        # a zip with the damaged pack fails naming the first of its files in the zip
        folder = bad[0].rsplit("/", 1)[0]
        err = await zipped(s, folder)
        in_zip = sorted((n for n in bad if n.startswith(folder + "/")),
                        key=lambda n: n.split("/"))
        assert err["kind"] == "corrupt" and err["path"] == in_zip[0], err
        await s.close()

    run(go())


def test_file_batches_count_each_pack_once(packed: tuple[Path, dict[str, bytes]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = packed
    with lockbox.open(path, password=PASSWORD) as box:
        items = [(p, e) for p, e in box.run(box.view.walk_flow("small")) if p != "small"]
    small = [i for i, (_, e) in enumerate(items) if e.layout == LAYOUT_PACKED]
    # every packed file (~3 MiB of frames < ZIP_BATCH_BYTES, 3 packs), and big.bin
    # (192 KiB: a small file of the zip) when it comes after them
    assert file_batches(items, small[0]) == small
    big = next(i for i, (p, _) in enumerate(items) if p == "small/big.bin")
    assert file_batches(items, big) == [big, *small]
    monkeypatch.setattr(vlbox, "ZIP_BATCH_PACKS", 1)
    one = file_batches(items, small[0])
    assert len({items[i][1].refs[0] for i in one}) == 1
    assert len(one) < len(small)
    # a pack the view holds opened costs nothing
    opened = {items[i][1].refs[0] for i in one}
    more = file_batches(items, small[0], lambda ref: ref in opened)
    assert len(more) > len(one)
    monkeypatch.setattr(vlbox, "ZIP_BATCH_MEMBERS", 10)
    assert len(file_batches(items, small[0])) == 10


def test_plain_cache_keeps_a_packed_file_s_bytes_not_its_pack() -> None:
    pack = bytes(range(256)) * 400  # 100 KiB: a pack's payload
    header = ChunkHeader(b"\x01" * 16, 0, "a", None)
    cache = PlainCache()
    small = ChunkData(0, memoryview(pack)[1000:1100], header)
    cache.put(("a", b"", 0), small)  # type: ignore[arg-type]
    kept = cache.get(("a", b"", 0))  # type: ignore[arg-type]
    assert kept is not None and bytes(kept.data) == pack[1000:1100]
    assert kept.data.obj is not pack and len(kept.data.obj) == 100
    whole = ChunkData(1, memoryview(pack)[10:], header)
    cache.put(("b", b"", 1), whole)  # type: ignore[arg-type]
    got = cache.get(("b", b"", 1))  # type: ignore[arg-type]
    assert got is not None and got.data.obj is pack  # most of its buffer: not copied


def test_zip_of_an_archive_updated_over_time_opens_each_pack_once(tmp_path: Path) -> None:
    """Each write session added one file to every folder: every pack holds a file of
    every folder. The zip takes the files in the order they are stored (after the
    folders), so each pack is opened once although the view keeps about two opened and a
    round trip fetches one (path order: folder by folder, a pack per file)."""
    from lockbox.cache import PageCache

    rnd = random.Random(9)
    files: dict[str, bytes] = {}
    path = tmp_path / "days.lbox"
    with pytest.MonkeyPatch.context() as mp:
        if not hasattr(os, "link"):
            mp.setattr(os, "link", _copy_link, raising=False)
        box = lockbox.create(path, password=PASSWORD, argon2=WEAK_ARGON2, chunk_size=CHUNK)
        for day in range(6):
            with box.writer() as w:
                for f in range(40):
                    name = f"f{f:02d}/day{day}.bin"
                    files[name] = rnd.randbytes(3000)
                    w.add_bytes(name, files[name])
        box.close()

    async def go() -> None:
        s = await opened(path)
        assert s._lbox is not None
        view = s._lbox.view
        view.packs = PageCache(3 * 40 * 3100)  # about two packs of the six
        with pytest.MonkeyPatch.context() as mp:  # as with more packs than a batch takes
            mp.setattr(vlbox, "ZIP_BATCH_PACKS", 1)
            got = await zipped(s, "")
        assert got == {f"days/{n}": d for n, d in files.items()}
        assert view.packs_opened == 6
        names = [n for n in got]
        assert names[:3] == ["days/f00/day0.bin", "days/f01/day0.bin", "days/f02/day0.bin"]
        await s.close()

    run(go())


class _BadRefs(tuple):  # type: ignore[type-arg]
    """One ref that does not decode (a hostile entry): FormatError when used."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: Any) -> Any:
        raise FormatError("TOC entry: truncated ref")


def test_a_file_whose_ref_does_not_decode_is_read_alone_first() -> None:
    ref = Ref(20_000, 900, b"\x01" * 16)

    def packed(member: int, refs: Any = (ref,)) -> Entry:
        return Entry(EntryType.FILE, 0o644, 0, 10, 20, b"\x02" * 32, b"\x03" * 16, CHUNK,
                     LAYOUT_PACKED, refs, member_no=member)

    bad = packed(0, _BadRefs())
    items = [("d", Entry(EntryType.DIR, 0o755, 0)), ("d/a", packed(5)), ("d/b", bad),
             ("d/c", packed(2))]
    assert [p for p, _ in stored_order(items)] == ["d", "d/b", "d/c", "d/a"]
    assert file_batches(items, 1) == [1]  # the batch stops before it
    assert file_batches(items, 2) == [2]  # and it is read alone (its error names it)
    assert file_batches(items, 3) == [3]
