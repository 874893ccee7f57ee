"""write/content.py: the content frames of file versions (chunks, chunk indexes, pages of
their own for large files), with and without the compression thread pool."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lockbox
from lockbox.formats.lbox.wire.constants import INLINE_CHUNK_REFS, PAGE_HEADER_SIZE, PAGE_UNIT
from lockbox.formats.lbox.wire.entry import LAYOUT_CHUNKS, LAYOUT_INDEX
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
            assert small.layout == LAYOUT_CHUNKS and len(small.refs) == 1
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
    host = tmp_path / "f.txt"
    host.write_bytes(b"hello " * 50)
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=CHUNK)
    with box:
        with box.writer() as w:
            (p,) = prepare_batch([SmallFile(str(host), "d/f.txt", 0o640, 9)], CHUNK, 3)
            entry = w.content.place_prepared(p)
            assert w.content.frames[p.file_id] == list(entry.refs)
            assert (entry.mode, entry.mtime_ns, entry.size) == (0o640, 9, 300)
            w.put_entry("d/f.txt", entry)
        assert box.read_bytes("d/f.txt") == host.read_bytes() and box.verify().ok
