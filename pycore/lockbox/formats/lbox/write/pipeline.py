"""Parallel preparation of small files for ``add --jobs N``.

Reader (the writer's directory walk) -> bounded queue of batches -> worker
processes that read, hash (BLAKE3), encode and compress each small file ->
the ordered page writer in the main process, which seals (the AAD binds the
frame's final offset, so sealing happens where offsets are assigned) and
stages the entry. The archive's content is the same as with one job; memory
is bounded by ``jobs * 2`` batches in flight.

Only files that fit in one chunk go through the workers; larger files are
streamed by the main process (their cost is per byte, not per file).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from ..frames import encode_plain
from ..wire.chunk import ChunkMeta, encode_chunk_parts, encode_meta
from ..wire.constants import EntryType

__all__ = ["SmallFile", "Prepared", "prepare_batch", "SmallFilePipeline", "resolve_jobs"]

BATCH_FILES = 256
START_AFTER = 2048  # below this many small files, workers cost more than they save


def resolve_jobs(jobs: int | str | None) -> int:
    """``auto`` = CPUs, at most 6; an int as given (at least 1)."""
    if jobs is None or jobs == "auto":
        return max(1, min(6, os.cpu_count() or 1))
    n = int(jobs)
    if n < 1:
        raise ValueError("jobs must be at least 1")
    return n


class SmallFile(NamedTuple):
    host: str
    path: str
    mode: int
    mtime_ns: int


class Prepared(NamedTuple):
    path: str
    mode: int
    mtime_ns: int
    file_id: bytes
    size: int
    content_hash: bytes
    plain: bytes  # the frame plaintext, ready to seal
    error: str = ""
    grown: bool = False  # the file no longer fits one chunk: the main process streams it


def prepare_batch(batch: list[SmallFile], chunk_size: int, level: int) -> list[Prepared]:
    """Worker side (also used inline). Never raises for one bad file: reports it."""
    from ....platform import default_codec, default_crypto

    codec = default_codec()
    crypto = default_crypto()
    out = []
    for f in batch:
        try:
            fd = os.open(f.host, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                data = os.read(fd, chunk_size + 1)
                if len(data) < chunk_size + 1:
                    more = os.read(fd, chunk_size + 1 - len(data)) if data else b""
                    data += more
            finally:
                os.close(fd)
        except OSError as e:
            out.append(Prepared(f.path, f.mode, f.mtime_ns, b"", 0, b"", b"",
                                error=f"cannot read {f.host}: {e.strerror}"))
            continue
        if len(data) > chunk_size:
            out.append(Prepared(f.path, f.mode, f.mtime_ns, b"", 0, b"", b"", grown=True))
            continue
        h = crypto.blake3()
        h.update(data)
        digest = h.digest()
        file_id = crypto.random_bytes(16)
        meta = encode_meta(ChunkMeta(EntryType.FILE, f.mode, f.mtime_ns, len(data), digest,
                                     chunk_size))
        plain = encode_plain(codec, encode_chunk_parts(file_id, 0, f.path.encode(), meta, data),
                             level)
        out.append(Prepared(f.path, f.mode, f.mtime_ns, file_id, len(data), digest, plain))
    return out


class _Worker:
    """One worker process (``python -m lockbox.pipeline_worker``) fed over its stdin/stdout
    with length-prefixed pickles. A plain subprocess, not multiprocessing: it never
    re-imports the caller's ``__main__`` and never forks a threaded process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lockbox.formats.lbox.write.pipeline_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, obj: object) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
        self.proc.stdin.flush()

    def recv(self) -> Any:
        assert self.proc.stdout is not None
        head = self.proc.stdout.read(8)
        if len(head) != 8:
            raise RuntimeError("a pipeline worker exited unexpectedly")
        return pickle.loads(self.proc.stdout.read(int.from_bytes(head, "little")))

    def close(self) -> None:
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


class SmallFilePipeline:
    """Feeds batches to worker processes and hands results back in order."""

    def __init__(self, jobs: int, chunk_size: int, level: int,
                 consume: Callable[[list[Prepared]], None]) -> None:
        self.jobs = jobs
        self.chunk_size = chunk_size
        self.level = level
        self.consume = consume
        self._batch: list[SmallFile] = []
        self._queued = 0
        self._workers: list[_Worker] = []
        self._next = 0
        self._inflight: deque[_Worker] = deque()
        self.prepare_seconds = 0.0  # inline preparation, or waiting for the workers

    def submit(self, f: SmallFile) -> None:
        self._batch.append(f)
        self._queued += 1
        if len(self._batch) >= BATCH_FILES:
            self._dispatch()

    def _dispatch(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if not self._workers and self.jobs > 1 and self._queued >= START_AFTER:
            self._workers = [_Worker() for _ in range(self.jobs)]
        if not self._workers:
            self._drain(0)
            t0 = time.perf_counter()
            prepared = prepare_batch(batch, self.chunk_size, self.level)
            self.prepare_seconds += time.perf_counter() - t0
            self.consume(prepared)
            return
        self._drain(2 * self.jobs - 1)
        worker = self._workers[self._next % len(self._workers)]
        self._next += 1
        worker.send((batch, self.chunk_size, self.level))
        self._inflight.append(worker)

    def _drain(self, keep: int) -> None:
        while len(self._inflight) > keep:
            t0 = time.perf_counter()
            result = self._inflight.popleft().recv()
            self.prepare_seconds += time.perf_counter() - t0
            if isinstance(result, BaseException):
                raise result
            self.consume(result)

    def finish(self) -> None:
        self._dispatch()
        self._drain(0)
        self.close()

    def close(self) -> None:
        workers, self._workers = self._workers, []
        self._inflight.clear()
        for w in workers:
            w.close()

    def __enter__(self) -> SmallFilePipeline:
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
        batch, chunk_size, level = pickle.loads(stdin.read(int.from_bytes(head, "little")))
        try:
            result: Any = prepare_batch(batch, chunk_size, level)
        except Exception as exc:  # reported to the main process, which raises it
            result = exc
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(len(data).to_bytes(8, "little") + data)
        stdout.flush()

