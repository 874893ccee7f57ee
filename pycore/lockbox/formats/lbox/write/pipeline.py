"""Parallel preparation of small files for ``add --jobs N``.

Reader (the writer's directory walk) -> batches of small files -> worker processes
that read, hash (BLAKE3), encode and compress each file -> the page writer in the
main process, which seals (the AAD binds the frame's final offset, so sealing happens
where offsets are assigned) and stages the entry. The archive's content is the same
as with one job.

With ``jobs`` N, N - 1 worker processes and this one prepare: scheduling balances
itself, each worker holding at most two batches; when every worker is busy (or still
starting) the main process prepares the batch itself, and results are staged as they
arrive. So the workers never make a run slower than one job by
more than their start-up, and they start only once a walk has queued
``START_AFTER`` small files. Memory: at most ``2 * jobs + 1`` batches, each at most
``BATCH_FILES`` files and about ``BATCH_BYTES`` bytes.

Only files that fit in one chunk go through the workers; larger files are streamed by
the main process (their cost is per byte, not per file). Under Pyodide (no
subprocesses) everything runs inline.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from ..frames import encode_plain
from ..wire.chunk import encode_chunk_parts, encode_file_meta
from ..wire.constants import (
    FRAME_OVERHEAD,
    MAX_PACK_MEMBERS,
    PACK_FILE_LIMIT,
    PACK_TARGET_SIZE,
)
from ..wire.entry import encode_file_entry_head, encode_packed_entry_head
from ..wire.pack import encode_pack

__all__ = ["SmallFile", "Prepared", "Batch", "prepare_batch", "packable", "PACK_HEAD_SLACK",
           "SmallFilePipeline", "resolve_jobs"]

BATCH_FILES = MAX_PACK_MEMBERS
# A batch closes at about this many bytes of file content (each file counted with
# FILE_OVERHEAD more for its chunk header), so that its small files make one pack.
BATCH_BYTES = PACK_TARGET_SIZE - PACK_TARGET_SIZE // 16
FILE_OVERHEAD = 128
START_AFTER = 1024  # below this many small files, workers cost more than they save
PER_WORKER = 2  # batches in flight per worker
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
T = TypeVar("T")
PACK_HEAD_SLACK = 8
"""Bytes counted per member for the pack header (its size's uvarint, at most 3 bytes,
and the count's share): a pack's payload stays within ``PACK_TARGET_SIZE``."""


def packable(size: int, chunk_size: int) -> bool:
    """Whether a file of ``size`` bytes goes into a pack (writer policy: at most
    ``PACK_FILE_LIMIT`` bytes and one chunk; empty files too)."""
    return size <= PACK_FILE_LIMIT and size <= chunk_size


def resolve_jobs(jobs: int | str | None) -> int:
    """``auto`` = CPUs, at most 6; an int as given (at least 1). Always 1 where there
    are no subprocesses (Pyodide)."""
    from ....platform import IS_BROWSER

    if jobs is None or jobs == "auto":
        n = max(1, min(6, os.cpu_count() or 1))
    else:
        n = int(jobs)
        if n < 1:
            raise ValueError("jobs must be at least 1")
    return 1 if IS_BROWSER else n


class SmallFile(NamedTuple):
    host: str
    path: str
    mode: int
    mtime_ns: int


class Prepared(NamedTuple):
    """One file of a batch, prepared. A packed file (``member_no`` >= 0) is member
    ``member_no`` of the batch's pack ``pack_no`` (``plain`` empty, ``stored_size`` the
    member's size); any other file that fits one chunk has its own frame plaintext in
    ``plain``, ready to seal."""

    path: str
    mode: int
    mtime_ns: int
    file_id: bytes
    size: int
    content_hash: bytes
    plain: bytes  # the frame plaintext, ready to seal (not for a packed file)
    error: str = ""
    grown: bool = False  # the file no longer fits one chunk: the main process streams it
    entry_head: bytes = b""  # its TOC entry up to the one ref (encode_*_entry_head)
    member_no: int = -1  # packed: its member number in pack ``pack_no``
    pack_no: int = 0
    stored_size: int = 0  # packed: the member's size


class Batch(NamedTuple):
    """A prepared batch: the frame plaintexts of its packs (zstd or RAW, ready to seal
    as PACK frames) and one :class:`Prepared` per file, in the order submitted."""

    packs: list[bytes]
    files: list[Prepared]


def prepare_batch(batch: list[SmallFile], chunk_size: int, level: int) -> Batch:
    """Worker side (also used inline). Never raises for one bad file: reports it.

    Files that are :func:`~.content.packable` go into packs, in order, a pack closed
    when the next member would take it over ``PACK_TARGET_SIZE`` bytes or
    ``MAX_PACK_MEMBERS`` members (as ``ContentWriter.add_member``); each pack's payload
    is compressed whole (one zstd call, the context reused)."""
    from ....platform import default_codec, default_crypto

    codec = default_codec()
    crypto = default_crypto()
    blake3 = crypto.blake3
    ids = crypto.random_bytes(16 * len(batch))  # one call for the batch's file ids
    os_open, os_read, os_close = os.open, os.read, os.close
    flags = os.O_RDONLY | _O_CLOEXEC
    limit = chunk_size + 1
    pack_limit = min(PACK_FILE_LIMIT, chunk_size)
    out: list[Prepared] = []
    append = out.append
    packs: list[bytes] = []
    members: list[bytes] = []
    members_size = 0
    for i, f in enumerate(batch):
        try:
            fd = os_open(f.host, flags)
            try:
                data = os_read(fd, limit)
                if data and len(data) < limit:  # a short read: read on (the end, or more)
                    more = os_read(fd, limit - len(data))
                    if more:
                        data += more
            finally:
                os_close(fd)
        except OSError as e:
            append(Prepared(f.path, f.mode, f.mtime_ns, b"", 0, b"", b"",
                            error=f"cannot read {f.host}: {e.strerror}"))
            continue
        size = len(data)
        if size > chunk_size:
            append(Prepared(f.path, f.mode, f.mtime_ns, b"", 0, b"", b"", grown=True))
            continue
        h = blake3()
        h.update(data)
        digest = h.digest()
        file_id = ids[16 * i:16 * i + 16]
        meta = encode_file_meta(f.mode, f.mtime_ns, size, digest, chunk_size)
        chunk = encode_chunk_parts(file_id, 0, f.path.encode(), meta, data)
        if size <= pack_limit:
            if members and (members_size + len(chunk) + PACK_HEAD_SLACK > PACK_TARGET_SIZE
                            or len(members) >= MAX_PACK_MEMBERS):
                packs.append(encode_plain(codec, encode_pack(members), level))
                members, members_size = [], 0
            member_no = len(members)
            members.append(chunk)
            members_size += len(chunk) + PACK_HEAD_SLACK
            head = encode_packed_entry_head(f.mode, f.mtime_ns, size, len(chunk), digest,
                                            file_id, chunk_size, member_no)
            append(Prepared(f.path, f.mode, f.mtime_ns, file_id, size, digest, b"", "",
                            False, head, member_no, len(packs), len(chunk)))
            continue
        plain = encode_plain(codec, chunk, level)
        head = encode_file_entry_head(f.mode, f.mtime_ns, size, FRAME_OVERHEAD + len(plain),
                                      digest, file_id, chunk_size)
        append(Prepared(f.path, f.mode, f.mtime_ns, file_id, size, digest, plain, "", False,
                        head))
    if members:
        packs.append(encode_plain(codec, encode_pack(members), level))
    return Batch(packs, out)


class _Worker:
    """One worker process (``python -m lockbox.formats.lbox.write.pipeline_worker``) fed
    over its stdin/stdout with length-prefixed pickles. A plain subprocess, not
    multiprocessing: it never re-imports the caller's ``__main__`` and never forks a
    threaded process. Its pipes are unbuffered, so ``ready`` (poll) tells the truth."""

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lockbox.formats.lbox.write.pipeline_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        for fd in (self._in, self._out):  # a whole batch or result fits: no ping-pong
            _grow_pipe(fd)
        self.inflight: deque[Any] = deque()  # the tags of the batches sent, in order

    def send(self, obj: object, tag: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(self._in, len(data).to_bytes(8, "little") + data)
        self.inflight.append(tag)

    def ready(self) -> bool:
        """Whether a result can be read without waiting (a POSIX poll; elsewhere: yes,
        reading waits)."""
        if _poll is None:
            return True
        return bool(_poll([self._out], [], [], 0)[0])

    def recv(self) -> tuple[Any, Any]:
        """(result, tag) of the oldest batch in flight (waits for it)."""
        head = _read_exact(self._out, 8)
        result = pickle.loads(_read_exact(self._out, int.from_bytes(head, "little")))
        return result, self.inflight.popleft()

    def close(self) -> None:
        import subprocess

        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _grow_pipe(fd: int) -> None:
    """Linux: a 1 MiB pipe buffer (the default 64 KiB makes a worker's result wait for the
    reader 64 KiB at a time, on a busy machine a scheduling round trip each)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass  # another OS, or over /proc/sys/fs/pipe-max-size: the default size works


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n:
        part = os.read(fd, min(n, 1 << 20))
        if not part:
            raise RuntimeError("a pipeline worker exited unexpectedly")
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


try:
    from select import select as _poll
except ImportError:  # pragma: no cover - no select (Pyodide runs inline anyway)
    _poll = None  # type: ignore[assignment]
if os.name != "posix":  # pragma: no cover - select() takes sockets only there
    _poll = None  # type: ignore[assignment]


class SmallFilePipeline(Generic[T]):
    """Prepares batches of small files (in worker processes or inline) and hands each
    result to ``consume(prepared, tags)`` with the tags given to :meth:`submit`, in
    the order of each file within its batch (batches may complete out of order)."""

    def __init__(self, jobs: int, chunk_size: int, level: int,
                 consume: Callable[[tuple[list[bytes], Sequence[Prepared | tuple[Any, ...]]],
                                    list[T]], None]
                 ) -> None:
        self.jobs = jobs
        self.chunk_size = chunk_size
        self.level = level
        self.consume = consume
        self._batch: list[SmallFile] = []
        self._tags: list[T] = []
        self._bytes = 0
        self._queued = 0
        self._workers: list[_Worker] = []
        self.prepare_seconds = 0.0  # inline preparation, or waiting for the workers
        self.inline_batches = 0
        self.worker_batches = 0
        self.busy_batches = 0  # prepared here because every worker was busy

    def submit(self, f: SmallFile, tag: T, size: int = 0) -> None:
        self._batch.append(f)
        self._tags.append(tag)
        self._queued += 1
        self._bytes += size + FILE_OVERHEAD
        if len(self._batch) >= BATCH_FILES or self._bytes >= BATCH_BYTES:
            self._dispatch()

    def _dispatch(self) -> None:
        batch, tags = self._batch, self._tags
        if not batch:
            return
        self._batch, self._tags, self._bytes = [], [], 0
        if not self._workers and self.jobs > 1 and self._queued >= START_AFTER:
            # this process prepares too when the workers are busy: jobs - 1 of them
            # (on 2 cores, 1 worker: 0.69 s for 20,000 files; 2 workers: 0.75 s)
            self._workers = [_Worker() for _ in range(self.jobs - 1)]
        if self._workers:
            self._collect(wait=False)
            idle = min(self._workers, key=lambda w: len(w.inflight))
            if len(idle.inflight) < PER_WORKER:
                idle.send(([tuple(f) for f in batch], self.chunk_size, self.level), tags)
                self.worker_batches += 1
                return
            self.busy_batches += 1
        t0 = time.perf_counter()
        prepared = prepare_batch(batch, self.chunk_size, self.level)
        self.prepare_seconds += time.perf_counter() - t0
        self.inline_batches += 1
        self.consume(prepared, tags)

    def _collect(self, wait: bool) -> None:
        """Stage the results that have arrived (``wait``: every result in flight)."""
        for w in self._workers:
            while w.inflight and (wait or w.ready()):
                t0 = time.perf_counter()
                result, tags = w.recv()
                self.prepare_seconds += time.perf_counter() - t0
                if isinstance(result, BaseException):
                    raise result
                self.consume(result, tags)  # (packs, rows with Prepared's fields)

    def finish(self) -> None:
        self._dispatch()
        self._collect(wait=True)
        self.close()

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for w in workers:
            w.close()

    def __enter__(self) -> SmallFilePipeline[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def worker_main() -> None:
    """The worker process's loop (see ``lockbox.pipeline_worker``)."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(8)
        if len(head) != 8:
            return
        rows, chunk_size, level = pickle.loads(stdin.read(int.from_bytes(head, "little")))
        try:
            batch = [SmallFile._make(r) for r in rows]
            packs, files = prepare_batch(batch, chunk_size, level)
            result: Any = (packs, [tuple(p) for p in files])
        except Exception as exc:  # reported to the main process, which raises it
            result = exc
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(len(data).to_bytes(8, "little") + data)
        stdout.flush()

