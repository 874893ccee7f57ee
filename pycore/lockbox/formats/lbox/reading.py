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
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, NamedTuple

from ...crypto.base import CryptoBackend, Decode, FrameJob, open_frames
from ...drivers import Read, resume
from ...errors import IntegrityError, LockboxError
from ...ranges import ByteRange
from .view import CHUNK_PLAIN_LIMIT, ArchiveView, ChunkData
from .wire.constants import FrameKind
from .wire.entry import LAYOUT_PACKED, Entry
from .wire.refs import Ref

__all__ = ["FileReadPlan", "BATCH_BYTES", "StartRead", "FinishRead", "StartOpen", "FinishOpen",
           "PipelinedFlow", "PipelinedRequest", "pipelined_stream_flow", "PIPELINE_AHEAD",
           "READS_AHEAD", "drive_pipelined"]

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
        """The data of the next chunks, in order; after the last, the whole-file hash
        check (a packed file's one chunk comes with it done: ``ChunkData.checked_hash``)."""
        out = []
        entry = self.entry
        for c in chunks:
            if c.chunk_no != self.next_chunk:
                raise IntegrityError(f"{self.path}: chunks out of order")
            if c.checked_hash and c.checked_hash == entry.content_hash and \
                    entry.chunks == 1:
                self.next_chunk = 1
                return [c.data]
            self._hash.update(c.data)
            out.append(c.data)
            self.next_chunk += 1
        if self.next_chunk >= entry.chunks and self._hash.digest() != entry.content_hash:
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
                          batch_bytes: int = BATCH_BYTES,
                          cached: Callable[[int], ChunkData | None] | None = None,
                          keep: Callable[[ChunkData], None] | None = None) -> PipelinedFlow:
    """The whole file to ``sink``, like ``LboxSession.stream_flow``, with each batch's read
    started (:class:`StartRead`) before the batch before it is opened, and up to ``ahead``
    (default :data:`PIPELINE_AHEAD`) batches read and started (:class:`StartOpen`)
    before the oldest is finished (:class:`FinishOpen`), checked
    (``ArchiveView.checked_chunks``: the same checks and first error as ``decode_chunk``
    one by one), hashed and handed over in order. The last batch is handed over only after
    the whole-file BLAKE3 matched (``FileReadPlan``). An error in a batch ahead (a damaged
    index frame, a failed read) is raised when it comes up, or earlier: never after any of
    that batch's bytes were handed over.

    ``cached(chunk_no)`` gives chunks already verified (the viewer's plaintext cache): they
    are neither fetched nor opened again, but still go through the order and whole-file
    hash checks; ``keep(chunk)`` is given each chunk fetched, once its whole batch passed
    its checks."""
    if ahead is None:
        ahead = PIPELINE_AHEAD
    plan = FileReadPlan(entry, path, view.opener.crypto, batch_bytes)
    if entry.layout == LAYOUT_PACKED:
        return (yield from _packed_stream_flow(view, entry, plan, sink, cached, keep))
    # (first chunk, numbers of the chunks fetched, cached chunks by number, refs, read)
    reading: deque[tuple[int, list[int], dict[int, ChunkData], list[Ref], Any]] = deque()
    started: deque[tuple[int, list[int], dict[int, ChunkData], Any, list[FrameJob],
                         LockboxError | None]] = deque()
    total = 0

    def open_next() -> Generator[PipelinedRequest, Any, None]:
        first, numbers, have, refs, read = reading.popleft()
        blobs = (yield FinishRead(read)) if read is not None else []
        jobs, pending = view.chunk_jobs(refs, blobs)
        del blobs
        handle = yield StartOpen(jobs, CHUNK_PLAIN_LIMIT)
        started.append((first, numbers, have, handle, jobs, pending))

    def hand_over() -> Generator[PipelinedRequest, Any, int]:
        first, numbers, have, handle, jobs, pending = started.popleft()
        results = yield FinishOpen(handle, jobs, view.chunk_decode, CHUNK_PLAIN_LIMIT)
        chunks = view.checked_chunks(entry, first, results, pending,
                                     numbers=numbers if have else None)
        if keep is not None:
            for c in chunks:
                keep(c)
        if have:
            opened = {c.chunk_no: c for c in chunks}
            chunks = [have[n] if n in have else opened[n]
                      for n in range(first, first + len(have) + len(opened))]
        size = 0
        for piece in plan.accept(chunks):
            sink(piece)
            size += len(piece)
        return size

    first = 0
    while first < entry.chunks:
        stop = min(entry.chunks, first + plan.per_batch)
        have: dict[int, ChunkData] = {}
        if cached is not None:
            for n in range(first, stop):
                c = cached(n)
                if c is not None:
                    have[n] = c
        numbers = [n for n in range(first, stop) if n not in have]
        refs: list[Ref] = []
        read = None
        if numbers:
            lo = numbers[0]
            refs = yield from view.chunk_refs_flow(entry, lo, numbers[-1] + 1)
            if have:
                refs = [refs[n - lo] for n in numbers]
            # this batch's read goes on while the one before is opened and an older one is
            # checked, hashed and handed over
            read = yield StartRead(tuple(r.byte_range for r in refs))
        reading.append((first, numbers, have, refs, read))
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


def _packed_stream_flow(view: ArchiveView, entry: Entry, plan: FileReadPlan,
                        sink: Callable[[bytes | memoryview], None],
                        cached: Callable[[int], ChunkData | None] | None,
                        keep: Callable[[ChunkData], None] | None) -> PipelinedFlow:
    """:func:`pipelined_stream_flow` of a packed file (one chunk, a member of a PACK frame):
    from ``cached``, or from the pack the view holds opened, or its PACK frame read and
    opened as one batch (``StartOpen``: the worker pool) and kept by the view."""
    chunk = cached(0) if cached is not None else None
    if chunk is None:
        ref = entry.refs[0]
        pack = view.cached_pack(ref)
        if pack is None:
            blobs = yield FinishRead((yield StartRead((ref.byte_range,))))
            jobs, pending = view.chunk_jobs([ref], blobs, FrameKind.PACK)
            del blobs
            if pending is not None:
                raise pending
            handle = yield StartOpen(jobs, CHUNK_PLAIN_LIMIT)
            results = yield FinishOpen(handle, jobs, view.chunk_decode, CHUNK_PLAIN_LIMIT)
            if isinstance(results[0], LockboxError):
                raise results[0]
            pack = view.keep_pack(ref, results[0])
        chunk = view.check_member(entry, pack)
        if keep is not None:
            keep(chunk)
    total = 0
    for piece in plan.accept([chunk]):
        sink(piece)
        total += len(piece)
    return total


async def drive_pipelined(flow: PipelinedFlow, source: Any, crypto: Any,
                          out: deque[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
    """Run a :data:`~lockbox.formats.lbox.reading.PipelinedFlow` (as the facade's
    ``_astepped`` runs a flow): ``Read`` awaited from ``source``; ``StartRead`` answered at
    once with a task reading from ``source``, ``FinishRead`` awaits it; ``StartOpen``
    answered at once by ``crypto.start_open_frames``, ``FinishOpen`` awaits
    ``crypto.finish_open_frames`` (a backend without them: ``FinishOpen`` is
    :func:`lockbox.crypto.base.open_frames`, in this thread). What the flow put in ``out``
    is yielded before each wait. Reads still running when the flow ends (an error) are cancelled."""
    import asyncio  # here: the CLI imports this module, and never drives this flow

    pooled = getattr(crypto, "start_open_frames", None) is not None
    reads: set[asyncio.Task[list[bytes]]] = set()
    try:
        try:
            request: PipelinedRequest | None = next(flow)
        except StopIteration:
            request = None
        while request is not None:
            while out:
                yield out.popleft()
            answer: Any
            try:
                if isinstance(request, Read):
                    answer = await source.read(request.ranges)
                elif isinstance(request, StartRead):
                    answer = asyncio.ensure_future(source.read(request.ranges))
                    reads.add(answer)
                elif isinstance(request, FinishRead):
                    reads.discard(request.handle)
                    answer = await request.handle
                elif isinstance(request, StartOpen):
                    answer = (crypto.start_open_frames(request.jobs, request.plain_limit)
                              if pooled else None)
                elif pooled:
                    answer = await crypto.finish_open_frames(request.handle, request.jobs,
                                                             request.decode, request.plain_limit)
                else:
                    answer = open_frames(crypto, request.jobs, request.decode,
                                         request.plain_limit)
            except BaseException as exc:
                request = resume(flow, error=exc)
                continue
            request = resume(flow, answer)
        while out:
            yield out.popleft()
    finally:
        flow.close()
        for task in reads:
            if task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: an error of a read nobody waits for
            else:
                task.cancel()
