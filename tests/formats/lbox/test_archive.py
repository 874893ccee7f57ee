"""The ``.lbox`` facades (``lockbox.formats.lbox.archive``): what the generic facade tests
(tests/test_facade.py, tests/test_archive.py) do not already cover."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.crypto.base import open_frames_loop
from lockbox.formats.lbox.archive import AsyncLockbox
from lockbox.formats.lbox.wire.entry import LAYOUT_CHUNKS, LAYOUT_PACKED
from lockbox.sources import AsyncBytesSource


class _Pool:
    """The CPython backend plus ``start_open_frames``/``finish_open_frames`` (what the
    browser's worker pool adds): AsyncLockbox.iter_bytes takes its pipelined path."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def start_open_frames(self, jobs: Any, plain_limit: int) -> Any:
        self.batches += 1
        return list(jobs)

    async def finish_open_frames(self, handle: Any, jobs: Any, decode: Any,
                                 plain_limit: int) -> Any:
        await asyncio.sleep(0)
        return open_frames_loop(jobs, decode)


async def _read_all(data: bytes, paths: list[str], pool: _Pool | None
                    ) -> dict[str, bytes | BaseException]:
    box = await AsyncLockbox.open(AsyncBytesSource(data), password="pw")
    if pool is not None:
        box.crypto = pool
    out: dict[str, bytes | BaseException] = {}
    try:
        for p in paths:
            try:
                out[p] = await box.read_bytes(p)
            except lockbox.LockboxError as exc:
                out[p] = exc
    finally:
        await box.aclose()
    return out


def test_pooled_read_names_the_file_of_a_content_error(make_archive: Any, crypto: Any) -> None:
    """A damaged PACK frame fails each of its files, a damaged chunk its file: through the
    worker pool's pipelined read each error names its file, as the generic read's do
    (same type, same message), and the other files read."""
    files = {f"d{i % 3}/small{i}.txt": f"small file {i}\n".encode() * 20 for i in range(12)}
    files["big.bin"] = bytes(range(256)) * 64  # 16 KiB: 4 chunks of 4 KiB, its own frames
    files["z/other.txt"] = b"x" * 5000  # larger than a chunk: not packed
    path: Path = make_archive(files)
    with lockbox.open(path, password="pw") as box:
        entries = {p: box.run(box.view.stat_flow(p)) for p in files}
    packed = sorted(p for p, e in entries.items() if e.layout == LAYOUT_PACKED)
    assert len(packed) == 12 and entries["big.bin"].layout == LAYOUT_CHUNKS
    pack = entries[packed[0]].refs[0]
    assert all(entries[p].refs[0] == pack for p in packed)  # one pack: all fail
    chunk = entries["big.bin"].refs[2]
    data = bytearray(path.read_bytes())
    for ref in (pack, chunk):
        data[ref.frame_offset + ref.frame_size - 20] ^= 0x40  # in the ciphertext
    paths = sorted(files)

    pooled_crypto = _Pool(crypto)
    pooled = asyncio.run(_read_all(bytes(data), paths, pooled_crypto))
    plain = asyncio.run(_read_all(bytes(data), paths, None))
    assert pooled_crypto.batches > 0  # the pipelined path ran
    assert pooled["z/other.txt"] == plain["z/other.txt"] == files["z/other.txt"]
    for p in [*packed, "big.bin"]:
        exc = pooled[p]
        assert isinstance(exc, lockbox.IntegrityError), (p, exc)
        assert str(exc).startswith(f"{p}: "), exc
        assert str(exc).count(p) == 1, exc  # named once
        assert (type(exc), str(exc)) == (type(plain[p]), str(plain[p]))


def test_pooled_read_of_a_good_file_is_unchanged(make_archive: Any, crypto: Any) -> None:
    files = {"a.txt": b"alpha\n" * 100, "b.bin": bytes(range(256)) * 40}
    path: Path = make_archive(files)
    got = asyncio.run(_read_all(path.read_bytes(), sorted(files), _Pool(crypto)))
    assert got == files
    with pytest.raises(lockbox.NotFoundError):
        asyncio.run(_raise_first(path.read_bytes(), "nope.txt", crypto))


async def _raise_first(data: bytes, p: str, crypto: Any) -> None:
    box = await AsyncLockbox.open(AsyncBytesSource(data), password="pw")
    box.crypto = _Pool(crypto)
    try:
        await box.read_bytes(p)
    finally:
        await box.aclose()
