"""Positioned writes for the local write path (writer, pages, space map), with every
OSError translated into a StorageError at this one boundary."""

from __future__ import annotations

import os

from .errors import StorageError

__all__ = ["pwrite_all", "pread_exact", "write_zeros", "fsync"]

_ZEROS = bytes(1 << 20)


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


def write_zeros(fd: int, offset: int, size: int) -> None:
    while size:
        n = min(size, len(_ZEROS))
        pwrite_all(fd, memoryview(_ZEROS)[:n], offset)
        offset += n
        size -= n


def fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as e:
        raise StorageError(f"fsync failed: {e.strerror or e}") from e
