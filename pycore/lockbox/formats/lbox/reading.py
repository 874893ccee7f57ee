"""Planning reads of one file's content: batches of chunks, and the whole-file
BLAKE3 content hash check at the end. Shared by the sync and async facades (which only
run the flows) and by extraction and verification.

:func:`pipelined_stream_flow` is the same whole-file read for an async driver that can open
frames elsewhere while the flow goes on (``AsyncLockbox.iter_bytes`` with the browser's
worker pool): besides :class:`~lockbox.drivers.Read` it yields :class:`StartOpen` (answered
at once with a handle) and :class:`FinishOpen` (answered with the batch's results), so
batch k+1 is fetched and decrypted while batch k is checked, hashed and handed over."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from ...crypto.base import CryptoBackend, Decode, FrameJob
from ...drivers import Read
from ...errors import IntegrityError, LockboxError
from ...ranges import ByteRange
from .view import CHUNK_PLAIN_LIMIT, ArchiveView, ChunkData
from .wire.entry import Entry
from .wire.refs import Ref

__all__ = ["FileReadPlan", "BATCH_BYTES", "StartRead", "FinishRead", "StartOpen", "FinishOpen",
           "PipelinedFlow", "PipelinedRequest", "pipelined_stream_flow", "PIPELINE_AHEAD",
           "READS_AHEAD"]

PIPELINE_AHEAD = 2  # batches fetched and being opened while one is checked and handed over
READS_AHEAD = 1  # batches being read (in the background) before the oldest is opened

BATCH_BYTES = 8 * 1024 * 1024  # one round trip fetches at most this much content


class FileReadPlan:
    """Sequential read of a whole file: ``next_batch()`` gives the next chunk
    range to fetch; ``accept()`` checks it and returns the data. After the last
    batch the BLAKE3 content hash of all the data is compared with the entry's."""

    def __init__(self, entry: Entry, path: str, crypto: CryptoBackend,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self.entry = entry
        self.path = path
        self.next_chunk = 0
        self.per_batch = max(1, batch_bytes // entry.chunk_size)
        self._hash = crypto.blake3()

    def next_batch(self) -> tuple[int, int] | None:
        total = self.entry.chunks
        if self.next_chunk >= total:
            return None
        return self.next_chunk, min(total, self.next_chunk + self.per_batch)

    def accept(self, chunks: list[ChunkData]) -> list[memoryview]:
        out = []
        for c in chunks:
            if c.chunk_no != self.next_chunk:
                raise IntegrityError(f"{self.path}: chunks out of order")
            self._hash.update(c.data)
            out.append(c.data)
            self.next_chunk += 1
        if self.next_chunk >= self.entry.chunks and \
                self._hash.digest() != self.entry.content_hash:
            raise IntegrityError(f"{self.path}: content does not match its BLAKE3 content hash")
        return out


class StartRead(NamedTuple):
    """A flow's request: start reading ``ranges`` (the driver answers at once with a handle
    for :class:`FinishRead`; the read goes on while the flow does other work)."""

    ranges: tuple[ByteRange, ...]


class FinishRead(NamedTuple):
    """A flow's request: the blobs of a started read (the driver awaits them)."""

    handle: Any


class StartOpen(NamedTuple):
    """A flow's request: start opening ``jobs`` (the driver answers at once with a handle
    for :class:`FinishOpen`; e.g. ``BrowserCryptoBackend.start_open_frames``)."""

    jobs: list[FrameJob]
    plain_limit: int


class FinishOpen(NamedTuple):
    """A flow's request: the results of a started batch, as
    :func:`lockbox.crypto.base.open_frames` gives them (the driver awaits them)."""

    handle: Any
    jobs: list[FrameJob]
    decode: Decode
    plain_limit: int


PipelinedRequest = Read | StartRead | FinishRead | StartOpen | FinishOpen
PipelinedFlow = Generator[PipelinedRequest, Any, int]


def pipelined_stream_flow(view: ArchiveView, path: str, entry: Entry,
                          sink: Callable[[bytes | memoryview], None], *,
                          ahead: int | None = None,
                          batch_bytes: int = BATCH_BYTES) -> PipelinedFlow:
    """The whole file to ``sink``, like ``LboxSession.stream_flow``, with each batch's read
    started (:class:`StartRead`) before the batch before it is opened, and up to ``ahead``
    (default :data:`PIPELINE_AHEAD`) batches read and started (:class:`StartOpen`)
    before the oldest is finished (:class:`FinishOpen`), checked
    (``ArchiveView.checked_chunks``: the same checks and first error as ``decode_chunk``
    one by one), hashed and handed over in order. The last batch is handed over only after
    the whole-file BLAKE3 matched (``FileReadPlan``). An error in a batch ahead (a damaged
    index frame, a failed read) is raised when it comes up, or earlier: never after any of
    that batch's bytes were handed over."""
    if ahead is None:
        ahead = PIPELINE_AHEAD
    plan = FileReadPlan(entry, path, view.opener.crypto, batch_bytes)
    reading: deque[tuple[int, list[Ref], Any]] = deque()
    started: deque[tuple[int, Any, list[FrameJob], LockboxError | None]] = deque()
    total = 0

    def open_next() -> Generator[PipelinedRequest, Any, None]:
        first, refs, read = reading.popleft()
        blobs = yield FinishRead(read)
        jobs, pending = view.chunk_jobs(refs, blobs)
        del blobs
        handle = yield StartOpen(jobs, CHUNK_PLAIN_LIMIT)
        started.append((first, handle, jobs, pending))

    def hand_over() -> Generator[PipelinedRequest, Any, int]:
        first, handle, jobs, pending = started.popleft()
        results = yield FinishOpen(handle, jobs, view.chunk_decode, CHUNK_PLAIN_LIMIT)
        size = 0
        for piece in plan.accept(view.checked_chunks(entry, first, results, pending)):
            sink(piece)
            size += len(piece)
        return size

    first = 0
    while first < entry.chunks:
        stop = min(entry.chunks, first + plan.per_batch)
        refs = yield from view.chunk_refs_flow(entry, first, stop)
        # this batch's read goes on while the one before is opened and an older one is
        # checked, hashed and handed over
        reading.append((first, refs, (yield StartRead(tuple(r.byte_range for r in refs)))))
        first = stop
        if len(reading) > READS_AHEAD:
            yield from open_next()
            if len(started) > ahead:
                total += yield from hand_over()
    while reading:
        yield from open_next()
        if len(started) > ahead:
            total += yield from hand_over()
    while started:
        total += yield from hand_over()
    return total
