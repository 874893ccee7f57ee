"""File content: the DATA_CHUNK frames of a file version and, past the inline limit, its
CHUNK_INDEX frames (docs/FORMAT.md §10). Returns the file's TOC entry; staging it is
the caller's business.

Data is streamed a chunk at a time (the chunk and one read-ahead chunk in memory). A
file of at least one full chunk gets pages of its own, so that removing it frees whole
pages for reuse. Every frame written is remembered by file version (``frames``): those
of a version no staged entry references at commit are dead.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from ....crypto.base import CryptoBackend
from ....errors import CommitError, UsageError
from ..frames import FrameSealer
from ..wire.chunk import ChunkMeta, encode_chunk_parts, encode_index, encode_meta
from ..wire.constants import INDEX_FANOUT, INLINE_CHUNK_REFS, EntryType, FrameKind
from ..wire.entry import LAYOUT_CHUNKS, LAYOUT_INDEX, MAX_INDEX_REFS, Entry
from ..wire.refs import Ref
from .pages import PageWriter
from .pipeline import Prepared
from .timings import Timer

__all__ = ["ContentWriter", "ContentSession", "Readable", "Progress"]

Progress = Callable[[str, int], None]  # (archive path, bytes just added)
_NOT_LAST = encode_meta(None)
_MAX_CHUNKS = MAX_INDEX_REFS * INDEX_FANOUT


class Readable(Protocol):
    """A binary stream: ``read(n)`` returns up to ``n`` bytes, fewer only at the end."""

    def read(self, n: int, /) -> bytes: ...


class ContentSession(Protocol):
    """What content writing uses of the write session (the ``Writer``), read at each
    call: the open pages and the sealer of the current generation."""

    pages: PageWriter
    sealer: FrameSealer
    crypto: CryptoBackend
    chunk_size: int
    timer: Timer


class ContentWriter:
    """Writes the content frames of one generation (a commit starts a new one)."""

    def __init__(self, session: ContentSession) -> None:
        self._session = session
        # Every content frame written in this generation, by file version (file_id).
        self.frames: dict[bytes, list[Ref]] = {}

    def add_stream(self, path: str, stream: Readable, mode: int, mtime_ns: int,
                   progress: Progress | None = None, *,
                   pool: ThreadPoolExecutor | None = None, jobs: int = 1) -> Entry:
        """Write ``stream`` as a new version of ``path`` (normalised, already checked);
        returns its entry. With ``pool``, the chunks of a large file are compressed
        there (zstd releases the GIL; ``2 * jobs`` in flight) while this thread reads,
        hashes, seals and writes them in order."""
        s = self._session
        csize = s.chunk_size
        file_id = s.crypto.random_bytes(16)
        path_bytes = path.encode()
        digest = s.crypto.blake3()
        pages = s.pages
        append = pages.append
        encode_plain = s.sealer.encode_plain
        now, lap = s.timer.now, s.timer.add
        refs: list[Ref] = []
        stored = 0
        total = 0
        chunk_no = 0
        skip_compress = 0
        written = self.frames.setdefault(file_id, [])
        t = now()
        cur = stream.read(csize)
        own_pages = len(cur) == csize  # a large file gets pages of its own, so that
        if own_pages:                  # removing it frees whole pages for reuse
            pages.close_page()
        if not own_pages:
            pool = None
        inflight: deque[tuple[Future[bytes], int]] = deque()
        limit = 2 * jobs

        def place(plain: bytes, nbytes: int) -> None:
            nonlocal stored, skip_compress, t
            if plain[0] == 0 and nbytes >= 65536 and skip_compress == 0:
                skip_compress = 7  # incompressible data: probe again every 8th chunk
            ref = append(FrameKind.DATA_CHUNK, plain)
            t = lap("write", t)
            stored += ref.frame_size
            refs.append(ref)
            written.append(ref)
            if progress is not None:
                progress(path, nbytes)

        def drain(keep: int) -> None:
            nonlocal t
            while len(inflight) > keep:
                fut, nbytes = inflight.popleft()
                t = now()
                plain = fut.result()
                t = lap("prepare", t)
                place(plain, nbytes)

        while True:
            if chunk_no >= _MAX_CHUNKS:
                raise UsageError(f"{path}: larger than the format allows at this chunk size "
                                 f"({_MAX_CHUNKS * csize:,} bytes)")
            nxt = stream.read(csize) if len(cur) == csize else b""
            t = lap("read", t)
            digest.update(cur)
            total += len(cur)
            meta = _NOT_LAST if nxt else encode_meta(ChunkMeta(
                EntryType.FILE, mode, mtime_ns, total, digest.digest(), csize))
            payload = encode_chunk_parts(file_id, chunk_no, path_bytes, meta, cur)
            compress = skip_compress == 0
            if skip_compress:
                skip_compress -= 1
            if pool is None:
                plain = encode_plain(payload, compress=compress)
                t = lap("prepare", t)
                place(plain, len(cur))
            else:
                inflight.append((pool.submit(encode_plain, payload, compress), len(cur)))
                drain(limit)
            t = now()
            if not nxt:
                break
            cur = nxt
            chunk_no += 1
        drain(0)
        layout, refs, stored = self._layout(file_id, refs, stored, written)
        if own_pages:
            pages.close_page()
        return Entry(EntryType.FILE, mode, mtime_ns, total, stored, digest.digest(),
                     file_id, csize, layout, tuple(refs))

    def copy_file(self, path: str, entry: Entry, plains: Iterable[bytes]) -> Entry:
        """``entry`` with its chunk frames re-sealed here from their plaintexts (from
        another archive with the same content key: compaction), as they are."""
        pages = self._session.pages
        append = pages.append
        own_pages = entry.size >= entry.chunk_size  # as add_stream places large files
        if own_pages:
            pages.close_page()
        refs: list[Ref] = []
        for plain in plains:
            refs.append(append(FrameKind.DATA_CHUNK, plain))
        if len(refs) != entry.chunks:
            raise CommitError(f"{path}: {len(refs)} chunks copied, {entry.chunks} expected")
        stored = sum(r.frame_size for r in refs)
        layout, refs, stored = self._layout(entry.file_id, refs, stored, None)
        if own_pages:
            pages.close_page()
        self.frames[entry.file_id] = []
        return dataclasses.replace(entry, stored_size=stored, layout=layout, refs=tuple(refs))

    def place_prepared(self, p: Prepared) -> Entry:
        """Seal and place a small file prepared by the pipeline (one chunk frame)."""
        ref = self._session.pages.append(FrameKind.DATA_CHUNK, p.plain)
        self.frames[p.file_id] = [ref]
        return Entry(EntryType.FILE, p.mode, p.mtime_ns, p.size, ref.frame_size,
                     p.content_hash, p.file_id, self._session.chunk_size, LAYOUT_CHUNKS,
                     (ref,))

    def _layout(self, file_id: bytes, refs: list[Ref], stored: int,
                written: list[Ref] | None) -> tuple[int, list[Ref], int]:
        """(layout, the entry's refs, stored bytes): the chunk refs themselves, or past
        the inline limit CHUNK_INDEX frames written here (each added to ``written``)."""
        if len(refs) <= INLINE_CHUNK_REFS:
            return LAYOUT_CHUNKS, refs, stored
        s = self._session
        index_refs = []
        for base in range(0, len(refs), INDEX_FANOUT):
            payload = encode_index(file_id, base, refs[base:base + INDEX_FANOUT])
            iref = s.pages.append(FrameKind.CHUNK_INDEX, s.sealer.encode_plain(payload))
            stored += iref.frame_size
            index_refs.append(iref)
            if written is not None:
                written.append(iref)
        return LAYOUT_INDEX, index_refs, stored
