"""Adding from the host's file system: one file (``Writer.add_file``) or a whole tree
(``Writer.add_tree``).

The walk is depth first in name order. Symlinks are stored as symlinks (never
followed); sockets, FIFOs and devices are skipped. Files that fit in one chunk go to
the small-file pipeline (``pipeline.SmallFilePipeline``: read, hashed, encoded and
compressed by worker processes with ``jobs`` > 1), whose results come back in order
and are sealed and staged here; larger files are streamed by this process, their
chunks compressed by a thread pool with ``jobs`` > 1.
"""

from __future__ import annotations

import contextlib
import os
import stat as stat_mod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ....errors import InvalidPathError, StorageError
from ..frames import FrameSealer
from ..wire.entry import normalize_path
from .content import ContentWriter, Progress
from .pipeline import Prepared, SmallFile, SmallFilePipeline, resolve_jobs
from .staging import Staging
from .timings import Timer

__all__ = ["HostSession", "HostWalk", "FdReader", "reading", "OnSkip"]

OnSkip = Callable[[str, str], None]  # (host path, why it was skipped)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FdReader:
    """Minimal unbuffered reader over an fd (less overhead than io.open)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, n: int) -> bytes:
        data = os.read(self.fd, n)
        if len(data) < n and data:
            parts = [data]
            got = len(data)
            while got < n:
                more = os.read(self.fd, n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data


@contextlib.contextmanager
def reading(host: str | os.PathLike[str]) -> Iterator[FdReader]:
    """A host file open for reading; an OSError while the block runs (opening, reading)
    becomes ``StorageError("cannot read {host}: ...")``."""
    try:
        fd = os.open(host, os.O_RDONLY | _O_CLOEXEC)
    except OSError as e:
        raise StorageError(f"cannot read {host}: {e.strerror}") from e
    try:
        yield FdReader(fd)
    except OSError as e:
        raise StorageError(f"cannot read {host}: {e.strerror}") from e
    finally:
        os.close(fd)


class HostSession(Protocol):
    """What the walk uses of the write session (the ``Writer``), read as it goes."""

    staging: Staging
    content: ContentWriter
    chunk_size: int
    sealer: FrameSealer
    timer: Timer


class HostWalk:
    """One ``add_tree`` call: walks ``src`` and stages what it finds under ``dest``."""

    def __init__(self, session: HostSession, *, progress: Progress | None = None,
                 on_skip: OnSkip | None = None, jobs: int | str = 1,
                 exclude: Iterable[tuple[int, int]] = ()) -> None:
        self._session = session
        self._progress = progress
        self._on_skip = on_skip
        self._jobs = resolve_jobs(jobs)
        self._exclude = set(exclude)  # (st_dev, st_ino) never added (the archive itself)
        self._pending: dict[str, str] = {}  # archive path -> host path, in the pipeline
        self._pool: ThreadPoolExecutor | None = None

    def add_tree(self, src: str | os.PathLike[str], dest: str = "") -> int:
        """Add ``src`` (a file, symlink or directory) under ``dest``; returns the number
        of entries added."""
        s = self._session
        njobs = self._jobs
        if njobs > 1:
            self._pool = ThreadPoolExecutor(njobs, thread_name_prefix="lockbox-zstd")
        pipe = SmallFilePipeline(njobs, s.chunk_size, s.sealer.level, self._stage_prepared)
        try:
            with pipe:
                count = self._walk(os.fspath(src), dest, pipe)
                pipe.finish()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        s.timer.add_seconds("prepare", pipe.prepare_seconds)
        return count

    def _add_host_file(self, host: str, path: str, st: os.stat_result) -> None:
        """A regular file streamed by this process (``path`` already normalised)."""
        s = self._session
        s.staging.prepare_file(path, st.st_mtime_ns)
        with reading(host) as reader:
            entry = s.content.add_stream(path, reader, st.st_mode & 0o7777, st.st_mtime_ns,
                                         self._progress, pool=self._pool, jobs=self._jobs)
        s.staging.put(path, entry)

    def _stage_prepared(self, batch: list[Prepared]) -> None:
        """The ordered writer's half of the pipeline: seal, place, stage."""
        s = self._session
        t = s.timer.now()
        try:
            progress = self._progress
            for p in batch:
                if p.error:
                    raise StorageError(p.error)
                if p.grown:  # no longer fits one chunk: streamed here instead
                    host = self._pending[p.path]
                    st = os.stat(host)
                    self._add_host_file(self._pending.pop(p.path), p.path, st)
                    continue
                self._pending.pop(p.path, None)
                s.staging.put(p.path, s.content.place_prepared(p))
                if progress is not None:
                    progress(p.path, p.size)
        finally:
            s.timer.add("write", t)

    def _walk(self, src: str, dest: str, pipe: SmallFilePipeline) -> int:
        s = self._session
        on_skip = self._on_skip
        try:
            st = os.lstat(src)
        except OSError as e:
            raise StorageError(f"cannot read {src}: {e.strerror}") from e
        dest = normalize_path(dest)
        count = 0
        stack = [(src, dest, st)]
        while stack:
            host, arch, st = stack.pop()
            if self._exclude and (st.st_dev, st.st_ino) in self._exclude:
                if on_skip is not None:
                    on_skip(host, "it is the archive being written")
                continue
            if not arch and not stat_mod.S_ISDIR(st.st_mode):
                arch = normalize_path(os.path.basename(host))
            if stat_mod.S_ISLNK(st.st_mode):
                s.staging.symlink(arch, os.readlink(host), st.st_mode, st.st_mtime_ns)
            elif stat_mod.S_ISREG(st.st_mode):
                path = normalize_path(arch)
                if st.st_size <= s.chunk_size and path not in self._pending:
                    s.staging.prepare_file(path, st.st_mtime_ns)
                    self._pending[path] = host
                    pipe.submit(SmallFile(host, path, st.st_mode & 0o7777, st.st_mtime_ns))
                else:
                    self._add_host_file(host, path, st)
            elif stat_mod.S_ISDIR(st.st_mode):
                if arch:
                    s.staging.mkdir(arch, st.st_mode, st.st_mtime_ns)
                try:
                    with os.scandir(host) as it:
                        kids = sorted(it, key=lambda d: d.name, reverse=True)
                except OSError as e:
                    raise StorageError(f"cannot list {host}: {e.strerror}") from e
                for d in kids:
                    try:
                        kst = d.stat(follow_symlinks=False)
                    except OSError as e:
                        raise StorageError(f"cannot read {d.path}: {e.strerror}") from e
                    name = d.name
                    try:
                        name.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InvalidPathError(f"file name is not UTF-8: {d.path!r}") from None
                    stack.append((d.path, f"{arch}/{name}" if arch else name, kst))
                if not arch:
                    continue
            else:
                if on_skip is not None:
                    on_skip(host, "not a regular file, directory or symlink")
                continue
            count += 1
        return count
