"""Local file I/O for the write path, with every OSError translated into a lockbox error
at this one boundary.

* Positioned writes and reads (writer, pages, space map): :func:`pwrite_all`,
  :func:`pread_exact`, :func:`write_zeros`.
* Durability: :func:`start_writeback` (a hint: begin writing a range now, so that the
  fsync of a large file has little left to do), :func:`fsync` (of a file) and
  :func:`fsync_dir` (of a directory, so that a rename, link or unlink in it survives a
  power loss).
* Atomic publication of a whole file: :func:`atomic_file` (a temporary file beside the
  target, fsynced, then renamed over it or hard-linked to it, then the directory
  fsynced), :func:`write_atomically` (the same for bytes in memory) and
  :func:`replace_atomically` (for a temporary file written by other means).

Every call goes through the ``os`` module's functions at call time (``os.pwrite``,
``os.fsync``, ...), which the crash tests replace to inject faults.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable, Iterator
from functools import cache
from typing import cast

from .errors import LockboxError, StorageError

__all__ = ["pwrite_all", "pread_exact", "write_zeros", "start_writeback", "fsync",
           "fsync_dir", "temp_path", "atomic_file", "write_atomically", "replace_atomically",
           "user_name", "group_name", "O_READ_HOST_FILE", "special_file_kind"]

_ZEROS = bytes(1 << 20)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

O_READ_HOST_FILE = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                    | _O_CLOEXEC)
"""Flags to open a host file for reading while walking a tree: never through a symlink,
never blocking on a fifo swapped in after the stat."""

_SPECIAL_KINDS = {stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket",
                  stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def special_file_kind(st_mode: int) -> str | None:
    """"a fifo", "a socket", "a character device", "a block device", or None."""
    return _SPECIAL_KINDS.get(stat.S_IFMT(st_mode))


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
    except OSError as e:
        raise StorageError(f"writing the archive failed: {e.strerror or e}") from e


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    try:
        return os.pread(fd, size, offset)
    except OSError as e:
        raise StorageError(f"reading the archive failed: {e.strerror or e}") from e


_SYNC_FILE_RANGE_WRITE = 2
# The libc function; False: not looked up yet; None: this system has none.
_sync_file_range: Callable[[int, int, int, int], int] | bool | None = False


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", func)


def start_writeback(fd: int, offset: int, size: int) -> None:
    """Ask the system to start writing ``size`` bytes of ``fd`` from ``offset`` to the
    disk now, without waiting (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``), so that
    a later fsync of a large file finds little left to do. Only a hint: it guarantees
    nothing (durability still comes from :func:`fsync`), errors are ignored, and it does
    nothing on other systems."""
    global _sync_file_range
    func = _sync_file_range
    if func is False:
        func = _sync_file_range = _load_sync_file_range()
    if func is None or func is True or size <= 0:
        return
    func(fd, offset, size, _SYNC_FILE_RANGE_WRITE)


def write_zeros(fd: int, offset: int, size: int) -> None:
    while size:
        n = min(size, len(_ZEROS))
        pwrite_all(fd, memoryview(_ZEROS)[:n], offset)
        offset += n
        size -= n


def fsync(fd: int, *, error: type[LockboxError] = StorageError) -> None:
    """Flush ``fd`` to stable storage; a failure raises ``error`` ("fsync failed: ...").
    The commit protocol passes ``CommitError``."""
    try:
        os.fsync(fd)
    except OSError as e:
        raise error(f"fsync failed: {e.strerror or e}") from e


def _fsync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def fsync_dir(directory: str) -> None:
    """Make the names in ``directory`` durable (after a rename, link or unlink in it).
    Raises StorageError."""
    try:
        _fsync_dir(directory)
    except OSError as e:
        raise StorageError(f"cannot sync the directory {directory}: {e.strerror or e}") from e


def temp_path(path: str, tag: str) -> str:
    """``.{name}.{pid}.{tag}`` beside ``path``: in the same directory, so that a rename
    onto ``path`` is atomic, and distinct per process."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.{tag}")


@contextlib.contextmanager
def atomic_file(path: str, *, overwrite: bool, tag: str = "tmp", mode: int = 0o600,
                what: str | None = None) -> Iterator[int]:
    """Create the file ``path`` atomically: yields the fd of a new temporary file beside
    it (:func:`temp_path`, opened ``O_EXCL`` with ``mode``) to write the content to.

    On normal exit the file is fsynced and closed, then renamed over ``path``
    (``overwrite``) or hard-linked to it (not ``overwrite``: an existing ``path``,
    even one that appeared meanwhile, is never replaced), and the directory is fsynced.
    On any exception the temporary file is removed and ``path`` is untouched.

    Raises StorageError: ``"{path} already exists"``, or ``"{what}: {reason}"`` for
    any other OSError, in the body too (``what`` defaults to ``"cannot create {path}"``).
    """
    tmp = temp_path(path, tag)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode)
        try:
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the path appeared meanwhile
            os.unlink(tmp)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    except FileExistsError:
        raise StorageError(f"{path} already exists") from None
    except OSError as e:
        raise StorageError(f"{what or f'cannot create {path}'}: {e.strerror or e}") from e
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_atomically(path: str, data: bytes | bytearray | memoryview, *, overwrite: bool,
                     tag: str = "tmp", mode: int = 0o600, what: str | None = None) -> None:
    """Write ``data`` as the whole new content of ``path``, atomically and durably
    (:func:`atomic_file`: same options, same errors)."""
    with atomic_file(path, overwrite=overwrite, tag=tag, mode=mode, what=what) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


def replace_atomically(tmp: str, path: str, *, what: str | None = None) -> None:
    """Publish ``tmp`` (a complete file written by other means, in the same directory)
    as ``path``: fsync it, rename it over ``path``, fsync the directory. Raises
    StorageError ``"{what}: {reason}"`` (default ``"cannot replace {path}"``); ``tmp``
    is left for the caller to remove on failure."""
    try:
        fd = os.open(tmp, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        raise StorageError(f"{what or f'cannot replace {path}'}: {e.strerror or e}") from e


@cache
def user_name(uid: int) -> str:
    """The host's name for ``uid`` ("" when it has none, or on a system without pwd)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return ""


@cache
def group_name(gid: int) -> str:
    """The host's name for ``gid`` ("" when it has none, or on a system without grp)."""
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return ""
