"""Local file range sources.

:class:`FileSource` keeps one file descriptor open and reads with
``os.pread`` (or ``lseek`` + ``read`` under a lock where ``os.pread`` is
missing, e.g. Windows or some Pyodide builds). The file's identity
``(st_dev, st_ino, st_size, st_mtime_ns)`` is pinned when the source is
opened and checked after every batch, both on the open descriptor (in-place
writes, truncation) and on the path (the file was replaced or removed), so a
batch never returns bytes of an archive that changed under the reader.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence

from ..errors import SourceChangedError, SourceUnavailableError, StorageError, UsageError
from ..ranges import ByteRange
from .base import AsyncOverSync, SourceStats, SyncSourceBase, clamp, closed_error, read_each

__all__ = ["FileSource", "AsyncFileSource"]

_Stamp = tuple[int, int, int, int]
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class FileSource(SyncSourceBase):
    """A :class:`~lockbox.sources.base.RangeSource` over a local file.

    The file is opened at construction: a missing or unreadable path raises
    :class:`SourceUnavailableError` right away. ``size`` is known from the
    start (``fstat``). ``stats.requests`` counts the coalesced reads issued.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self.stats = SourceStats()
        self._lock = threading.Lock()
        self._pread: Callable[[int, int, int], bytes] | None = getattr(os, "pread", None)
        try:
            fd = os.open(self._path, _OPEN_FLAGS)
        except OSError as exc:
            raise SourceUnavailableError(f"cannot open {self._path!r}: {_reason(exc)}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceUnavailableError(f"{self._path!r} is not a regular file")
        except OSError as exc:
            os.close(fd)
            raise SourceUnavailableError(f"cannot stat {self._path!r}: {_reason(exc)}") from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._stamp: _Stamp = _stamp(st)

    @property
    def path(self) -> str:
        return self._path

    def rebase(self) -> None:
        """Accept the file as it is now (the caller changed it itself, e.g. its own
        writer committed). If the path now names another file (an atomic replace),
        read that one from now on."""
        with self._lock:
            if self._fd is None:
                raise UsageError(f"rebase of a closed FileSource ({self._path!r})")
            try:
                st_path = os.stat(self._path)
                st_fd = os.fstat(self._fd)
                if (st_path.st_dev, st_path.st_ino) != (st_fd.st_dev, st_fd.st_ino):
                    fd = os.open(self._path, _OPEN_FLAGS)
                    os.close(self._fd)
                    self._fd = fd
                    st_fd = os.fstat(fd)
            except OSError as exc:
                raise SourceUnavailableError(
                    f"cannot stat {self._path!r}: {_reason(exc)}") from exc
            self._stamp = _stamp(st_fd)

    @property
    def size(self) -> int:
        """Size of the file when it was opened."""
        return self._stamp[2]

    @property
    def identity(self) -> _Stamp:
        """``(st_dev, st_ino, st_size, st_mtime_ns)`` pinned at open."""
        return self._stamp

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range (clamped at the end); check the file did not change."""
        with self._lock:
            fd = self._fd
            if fd is None:
                raise closed_error(self, repr(self._path))
            try:
                blobs = read_each(ranges, lambda merged: self._read_range(fd, merged))
            except OSError as exc:
                self._check_unchanged(fd)  # a change explains the failure best
                raise StorageError(f"cannot read {self._path!r}: {_reason(exc)}") from exc
            self._check_unchanged(fd)
        return blobs

    def _read_range(self, fd: int, merged: ByteRange) -> bytes:
        ask = clamp(merged, self.size)
        if ask is None:
            return b""
        blob = self._read_at(fd, ask.offset, ask.size)
        self.stats.count(len(blob))
        return blob

    def _read_at(self, fd: int, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            if self._pread is not None:
                chunk = self._pread(fd, n - got, offset + got)
            else:  # caller holds self._lock, so seek + read is atomic here
                os.lseek(fd, offset + got, os.SEEK_SET)
                chunk = os.read(fd, n - got)
            if not chunk:
                break  # EOF: the file shrank; _check_unchanged reports it
            if not parts and len(chunk) == n:
                return chunk
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _check_unchanged(self, fd: int) -> None:
        try:
            now = _stamp(os.fstat(fd))
        except OSError as exc:
            raise StorageError(f"cannot stat {self._path!r}: {_reason(exc)}") from exc
        if now != self._stamp:
            raise SourceChangedError(
                f"{self._path!r} was modified or truncated while being read "
                f"(size {self._stamp[2]} -> {now[2]})"
            )
        try:
            st = os.stat(self._path)
        except FileNotFoundError as exc:
            raise SourceChangedError(f"{self._path!r} was removed while being read") from exc
        except OSError as exc:
            raise SourceUnavailableError(f"cannot stat {self._path!r}: {_reason(exc)}") from exc
        if (st.st_dev, st.st_ino) != self._stamp[:2]:
            raise SourceChangedError(f"{self._path!r} was replaced while being read")

    def close(self) -> None:
        """Close the file descriptor (idempotent; waits for a read in progress)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"FileSource({self._path!r})"


_THREADS = sys.platform != "emscripten"


class AsyncFileSource(AsyncOverSync):
    """An :class:`AsyncRangeSource` over a local file.

    Wraps :class:`FileSource`; on CPython each batch runs in a worker thread
    (``asyncio.to_thread``), in Pyodide (no threads) it is read inline.
    """

    _sync: FileSource

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(FileSource(path))

    @property
    def path(self) -> str:
        return self._sync.path

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range (clamped at the end); check the file did not change."""
        if _THREADS:
            import asyncio  # here, not at the top: sync commands never load asyncio

            return await asyncio.to_thread(self._sync.read, list(ranges))
        return self._sync.read(ranges)
