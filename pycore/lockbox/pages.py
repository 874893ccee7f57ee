"""Page allocation and buffered page writes for one write session.

Frames are appended to the current page; a page is closed when the next frame
would not fit (pages are at most 8 MiB) or at commit, then padded with zeros
to a multiple of 4 KiB and given its header. Pages are written past the
committed end of the archive, so nothing the previous commit references is
ever overwritten. docs/FORMAT.md §4.
"""

from __future__ import annotations

import os

from .errors import CommitError, StorageError
from .format.constants import (
    FRAME_OVERHEAD,
    MAX_PAGE_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    FrameKind,
    PageKind,
)
from .format.page import PageHeader, encode_page_header
from .format.refs import Ref
from .frames import FrameSealer

__all__ = ["PageWriter"]

_FLUSH_BYTES = 1 << 20


def _round_up(n: int) -> int:
    return -(-n // PAGE_UNIT) * PAGE_UNIT


class PageWriter:
    def __init__(self, fd: int, start_offset: int, generation: int,
                 sealer: FrameSealer) -> None:
        if start_offset % PAGE_UNIT:
            raise CommitError("archive end is not page aligned")
        self.fd = fd
        self.sealer = sealer
        self.generation = generation
        self.page_offset = start_offset  # start of the open page
        self.used = 0  # bytes of the open page (0: no page open)
        self._buf = bytearray()
        self._buf_offset = start_offset  # file offset of _buf[0]
        self.pages_written = 0
        self.bytes_written = 0

    @property
    def end_offset(self) -> int:
        """End of the written area once the open page is closed."""
        return self.page_offset + (_round_up(self.used) if self.used else 0)

    def append(self, kind: FrameKind, plain: bytes) -> Ref:
        size = FRAME_OVERHEAD + len(plain)
        if self.used and self.used + size > MAX_PAGE_SIZE:
            self.close_page()
        if not self.used:
            self.used = PAGE_HEADER_SIZE
            self._buf += b"\x00" * PAGE_HEADER_SIZE  # header written at close
        offset = self.page_offset + self.used
        frame, ref = self.sealer.seal(kind, self.generation, offset, plain)
        self._buf += frame
        self.used += len(frame)
        if len(self._buf) >= _FLUSH_BYTES:
            self._flush()
        return ref

    def _pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, offset)
                view = view[n:]
                offset += n
        except OSError as e:
            raise StorageError(f"writing the archive failed: {e.strerror or e}") from e

    def _flush(self) -> None:
        if self._buf:
            self._pwrite(self._buf, self._buf_offset)
            self.bytes_written += len(self._buf)
            self._buf_offset += len(self._buf)
            self._buf = bytearray()

    def close_page(self) -> None:
        if not self.used:
            return
        size = _round_up(self.used)
        pad = size - self.used
        self._buf += b"\x00" * pad
        self._flush()
        header = encode_page_header(PageHeader(PageKind.FRAMES, size, self.used,
                                               self.generation))
        self._pwrite(header, self.page_offset)
        self.page_offset += size
        self._buf_offset = self.page_offset
        self.used = 0
        self.pages_written += 1

    def write_page(self, page: bytes) -> int:
        """Write a complete page image (e.g. a KEYDIR page) at the next page offset."""
        self.close_page()
        if len(page) % PAGE_UNIT:
            raise CommitError("a page image must be a multiple of the page unit")
        offset = self.page_offset
        self._pwrite(page, offset)
        self.page_offset += len(page)
        self._buf_offset = self.page_offset
        self.pages_written += 1
        return offset
