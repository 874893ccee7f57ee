"""write/content.py: the content frames of file versions (chunks, chunk indexes, pages of
their own for large files), with and without the compression thread pool."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import lockbox
from lockbox.formats.lbox.wire.constants import INLINE_CHUNK_REFS, PAGE_HEADER_SIZE, PAGE_UNIT
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.formats.lbox.wire.entry import LAYOUT_INDEX, LAYOUT_PACKED, encode_entry
from lockbox.formats.lbox.write import pipeline
from lockbox.formats.lbox.write.pipeline import SmallFile, prepare_batch

CHUNK = 4096


def test_large_file_gets_an_index_and_pages_of_its_own(tmp_path: Path, weak_argon2) -> None:
    data = os.urandom((INLINE_CHUNK_REFS + 3) * CHUNK + 100)
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=CHUNK)
    with box:
        with box.writer() as w:
            w.add_bytes("small.txt", b"small")
            entry = w.add_bytes("big.bin", data)
            assert entry.layout == LAYOUT_INDEX and entry.chunks == INLINE_CHUNK_REFS + 4
            frames = w.content.frames[entry.file_id]
            assert len(frames) == entry.chunks + 1  # the chunks, then one index frame
            assert entry.stored_size == sum(r.frame_size for r in frames)
            # Its first chunk opens a page: removing the file frees whole pages.
            assert frames[0].frame_offset % PAGE_UNIT == PAGE_HEADER_SIZE
            small = w.add_bytes("small2.txt", b"x")
            assert small.layout == LAYOUT_PACKED and len(small.refs) == 1  # a pack member
            assert small.file_id not in w.content.frames
        assert box.read_bytes("big.bin") == data and box.verify().ok


def test_the_thread_pool_writes_the_same_content(tmp_path: Path, weak_argon2) -> None:
    data = os.urandom(5 * CHUNK) + b"compressible " * 4000
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=CHUNK)
    with box, ThreadPoolExecutor(2) as pool:
        with box.writer() as w:
            plain = w.content.add_stream("one", io.BytesIO(data), 0o600, 5)
            pooled = w.content.add_stream("two", io.BytesIO(data), 0o600, 5, pool=pool,
                                          jobs=2)
            for p, e in (("one", plain), ("two", pooled)):
                w.staging.put(p, e)
        assert (plain.size, plain.content_hash, plain.chunks) == \
            (pooled.size, pooled.content_hash, pooled.chunks)
        assert plain.stored_size == pooled.stored_size  # the same compressed frames
        assert box.read_bytes("one") == box.read_bytes("two") == data


def test_prepared_small_files_are_sealed_where_they_land(tmp_path: Path, weak_argon2) -> None:
    """A one-chunk file over the pack limit gets a frame of its own (its entry's
    encoding the worker's head + the ref); smaller ones become pack members."""
    host = tmp_path / "f.txt"
    host.write_bytes(b"hello " * 20_000)  # 120,000 bytes: over PACK_FILE_LIMIT
    tiny = tmp_path / "t.txt"
    tiny.write_bytes(b"tiny")
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=256 * 1024)
    with box:
        with box.writer() as w:
            packs, (p, q) = prepare_batch([SmallFile(str(host), "d/f.txt", 0o640, 9),
                                           SmallFile(str(tiny), "d/t.txt", 0o600, 8)],
                                          256 * 1024, 3)
            assert len(packs) == 1 and (p.kind, q.kind) == (pipeline.FRAME, pipeline.MEMBER)
            assert (q.member_no, q.pack_no) == (0, 0)
            entry = w.content.place_prepared(p)
            assert w.content.frames[p.file_id] == list(entry.refs)
            assert (entry.mode, entry.mtime_ns, entry.size) == (0o640, 9, 120_000)
            assert p.entry_head + b"".join((uvarint(entry.refs[0].frame_offset),
                                            uvarint(entry.refs[0].frame_size),
                                            entry.refs[0].tag)) == encode_entry(entry)
            w.put_entry("d/f.txt", entry)
        assert box.read_bytes("d/f.txt") == host.read_bytes() and box.verify().ok


# -- the zero-copy chunk loop and the write-behind thread -------------------------------------

BIG_CHUNK = 128 * 1024


def _mixed_data() -> bytes:
    text = b"".join(b"line %d of some compressible text\n" % i for i in range(20000))
    return (os.urandom(3 * BIG_CHUNK) + text[:2 * BIG_CHUNK] + os.urandom(BIG_CHUNK)
            + text[:BIG_CHUNK // 2 + 5])


class _ReadOnly:
    """A stream with ``read`` only (no readinto, no fd)."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._f.read(min(n, 10_000))  # short reads too


def _add_big(tmp_path: Path, template: Path, name: str, data: bytes, monkeypatch,
             *, ahead: bool, jobs: int, stream: str, kick: bool = True):
    """Add ``data`` as big.bin to a copy of ``template`` with deterministic randomness;
    returns (entry, the bytes of the pages written, the archive's path)."""
    import random

    from lockbox.formats.lbox.write import content as content_mod
    from lockbox.formats.lbox.write import pages as pages_mod
    from lockbox.formats.lbox.write.hostwalk import reading

    monkeypatch.setattr(content_mod, "READ_AHEAD", ahead)
    monkeypatch.setattr(pages_mod, "START_WRITEBACK", kick)
    path = tmp_path / name
    path.write_bytes(template.read_bytes())
    host = tmp_path / "big.host"
    host.write_bytes(data)
    started = []
    real = content_mod._ReadAhead

    def spy(*args):
        started.append(args)
        return real(*args)

    monkeypatch.setattr(content_mod, "_ReadAhead", spy)
    rng = random.Random(42)
    with lockbox.open(path, password="pw") as box:
        monkeypatch.setattr(os, "urandom", rng.randbytes)
        pool = ThreadPoolExecutor(jobs) if jobs > 1 else None
        try:
            with box.writer() as w:
                start = w.view.commit.archive_end
                if stream == "fd":
                    with reading(host) as r:
                        entry = w.content.add_stream("big.bin", r, 0o644, 7, pool=pool,
                                                     jobs=jobs)
                else:
                    s = io.BytesIO(data) if stream == "bytesio" else _ReadOnly(data)
                    entry = w.content.add_stream("big.bin", s, 0o644, 7, pool=pool,
                                                 jobs=jobs)
                end = w.pages.end_offset
                with open(path, "rb") as f:
                    f.seek(start)
                    written = f.read(end - start)
                w.staging.put("big.bin", entry)
        finally:
            if pool is not None:
                pool.shutdown()
        monkeypatch.undo()
        assert bool(started) == ahead
        assert box.read_bytes("big.bin") == data and box.verify().ok
    return entry, written, path


def test_every_path_writes_byte_identical_frames(tmp_path: Path, weak_argon2,
                                                 monkeypatch) -> None:
    """Single-threaded (Pyodide's path) and with the read-ahead thread, with and without
    the compression pool and the writeback hint, from readinto / an fd / read(): the
    same entry, the same bytes."""
    template = tmp_path / "t.lbox"
    lockbox.create(template, password="pw", argon2=weak_argon2, chunk_size=BIG_CHUNK).close()
    data = _mixed_data()
    results = [_add_big(tmp_path, template, f"{i}.lbox", data, monkeypatch, ahead=ahead,
                        jobs=jobs, stream=stream, kick=kick)
               for i, (ahead, jobs, stream, kick) in enumerate((
                   (False, 1, "bytesio", False), (True, 1, "bytesio", True),
                   (True, 2, "fd", True), (True, 2, "readonly", True),
                   (False, 2, "fd", True), (True, 1, "fd", False)))]
    entry, written, _ = results[0]
    for other_entry, other_written, _ in results[1:]:
        assert other_entry == entry
        assert other_written == written
    assert entry.size == len(data) and entry.chunks == 7


def test_raw_frames_hold_exactly_the_encoded_chunk(tmp_path: Path, weak_argon2,
                                                   monkeypatch) -> None:
    """The plaintext built in place in front of the data is encode_plain's RAW form of
    encode_chunk's payload; compressible chunks are ZSTD frames."""
    from lockbox.formats.lbox.frames import encode_plain
    from lockbox.formats.lbox.wire.chunk import ChunkMeta, encode_chunk_parts, encode_meta
    from lockbox.formats.lbox.wire.constants import Codec, EntryType, FrameKind
    from lockbox.platform import default_codec, default_crypto

    template = tmp_path / "t.lbox"
    lockbox.create(template, password="pw", argon2=weak_argon2, chunk_size=BIG_CHUNK).close()
    data = _mixed_data()
    entry, _, path = _add_big(tmp_path, template, "a.lbox", data, monkeypatch, ahead=True,
                              jobs=1, stream="bytesio")
    with lockbox.open(path, password="pw") as box:
        view = box.view
        refs = box.run(view.chunk_refs_flow(entry, 0, entry.chunks))
        codecs = []
        with open(path, "rb") as f:
            for n, ref in enumerate(refs):
                f.seek(ref.frame_offset)
                plain = view.opener.open_ref_plain(f.read(ref.frame_size), ref,
                                                   FrameKind.DATA_CHUNK)
                codecs.append(plain[0])
                part = data[n * BIG_CHUNK:(n + 1) * BIG_CHUNK]
                last = n == entry.chunks - 1
                meta = encode_meta(ChunkMeta(EntryType.FILE, 0o644, 7, len(data),
                                             entry.content_hash, BIG_CHUNK) if last else None)
                payload = encode_chunk_parts(entry.file_id, n, b"big.bin", meta, part)
                if plain[0] == Codec.RAW:
                    assert plain == encode_plain(default_codec(), payload, compress=False)
                else:
                    assert plain == encode_plain(default_codec(), payload)
        assert codecs == [Codec.RAW] * 3 + [Codec.ZSTD] * 2 + [Codec.RAW, Codec.ZSTD]
        assert default_crypto()  # the backend that sealed them in place


def test_a_failed_page_write_is_a_storage_error_and_the_archive_is_unchanged(
        tmp_path: Path, weak_argon2, monkeypatch) -> None:
    import errno

    path = tmp_path / "a.lbox"
    lockbox.create(path, password="pw", argon2=weak_argon2, chunk_size=BIG_CHUNK).close()
    before = path.read_bytes()
    real = os.pwrite
    calls = 0

    def full_disk(fd: int, data, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    with lockbox.open(path, password="pw") as box:
        with pytest.raises(lockbox.StorageError, match="No space left on device"):
            with box.writer() as w:
                monkeypatch.setattr(os, "pwrite", full_disk)
                w.add_bytes("big.bin", os.urandom(40 * BIG_CHUNK))
        monkeypatch.setattr(os, "pwrite", real)
    assert calls >= 3
    assert path.read_bytes() == before


def test_incompressible_chunks_are_found_on_a_sample() -> None:
    from lockbox.formats.lbox.write.content import _worth_compressing
    from lockbox.platform import default_codec

    codec = default_codec()
    text = b"".join(b"row %d, some text\n" % i for i in range(100_000))[:1 << 20]
    assert not _worth_compressing(codec, 3, memoryview(os.urandom(1 << 20)))
    assert _worth_compressing(codec, 3, memoryview(text))
    assert _worth_compressing(codec, 3, memoryview(os.urandom(4096)))  # small: always tried


class _FailingStream:
    def __init__(self, data: bytes, fail_at: int) -> None:
        self._f = io.BytesIO(data)
        self._left = fail_at

    def readinto(self, view) -> int:
        self._left -= 1
        if self._left < 0:
            raise OSError(5, "Input/output error")
        return self._f.readinto(view)

    def read(self, n: int) -> bytes:
        raise AssertionError("readinto is used")


@pytest.mark.parametrize("threads", [False, True])
def test_a_read_error_midway_is_raised_and_the_archive_is_unchanged(
        tmp_path: Path, weak_argon2, monkeypatch, threads: bool) -> None:
    from lockbox.formats.lbox.write import content as content_mod
    from lockbox.formats.lbox.write import pages as pages_mod

    monkeypatch.setattr(content_mod, "READ_AHEAD", threads)
    monkeypatch.setattr(pages_mod, "START_WRITEBACK", threads)
    path = tmp_path / "a.lbox"
    lockbox.create(path, password="pw", argon2=weak_argon2, chunk_size=BIG_CHUNK).close()
    before = path.read_bytes()
    with lockbox.open(path, password="pw") as box:
        with pytest.raises(OSError, match="Input/output error"):
            with box.writer() as w:
                w.add_stream("big.bin", _FailingStream(os.urandom(30 * BIG_CHUNK), 20))
        assert path.read_bytes() == before  # aborted: nothing half-done
        with box.writer() as w:  # the writer's buffers are fine for the next file
            w.add_bytes("next.bin", os.urandom(3 * BIG_CHUNK + 1))
        assert box.verify().ok
    with lockbox.open(path, password="pw") as box:
        assert [e.path for e in box.iter_entries()] == ["next.bin"]


def test_a_long_path_and_the_last_chunks_metadata_fit_in_front_of_the_data(
        tmp_path: Path, weak_argon2) -> None:
    path = "/".join(["é" * 100] * 20) + "/big.bin"  # 4,000+ bytes of UTF-8
    data = os.urandom(3 * BIG_CHUNK) + b"tail"
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=BIG_CHUNK)
    with box:
        with box.writer() as w:
            w.add_bytes(path, data, mtime_ns=-(10**18))  # a long svarint in the metadata
        assert box.read_bytes(path) == data and box.verify().ok
