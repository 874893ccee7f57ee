"""Page allocation and buffered page writes for one write session.

Frames are appended to the open page; a page is closed when the next frame
would not fit or at commit, then padded with zeros to a multiple of 4 KiB and
given its header. A new page goes into the best-fitting FREE extent of the
space map (the rest of the extent stays FREE, with its own header), or at the
end of the file. Either way nothing the durable commit references is ever
overwritten. docs/FORMAT.md §4 and §14.

Frames are sealed straight into one reused buffer (``FrameSealer.seal_into``: no bytes
object per frame), written out at 1 MiB; each full write's writeback is started at once
(:data:`START_WRITEBACK`), so that the commit's fsync finds little left to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from ....errors import CommitError
from ....fileio import pread_exact, pwrite_all, start_writeback, write_zeros
from ..frames import FrameSealer
from ..wire.constants import (
    FRAME_OVERHEAD,
    MAX_PAGE_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    FrameKind,
    PageKind,
)
from ..wire.page import PageHeader, encode_page_header
from ..wire.refs import Ref
from .space import FRAMES, FREE, SpaceMap

__all__ = ["PageWriter", "free_page_header", "START_WRITEBACK"]

_FLUSH_BYTES = 1 << 20
_ZERO_PAGE_HEADER = bytes(PAGE_HEADER_SIZE)

START_WRITEBACK = True
"""Whether each full buffer written is handed to :func:`~lockbox.fileio.start_writeback`
(the disk starts on it while the next frames are sealed: the commit's fsync finds little
left to do; only a hint, durability still comes from that fsync)."""
WRITEBACK_AFTER = 16 << 20
"""Writeback is started once a session has written this many bytes (then at once for
everything it wrote, and for each full buffer after): a smaller write's fsync is quick
anyway (a few ms for 8 MiB) and it never loads ``start_writeback``'s ctypes (~2.5 ms of
a small ``add``'s start-up)."""
_MIN_REUSE = 16 * 1024  # smaller free extents are left for compaction


def _round_up(n: int) -> int:
    return -(-n // PAGE_UNIT) * PAGE_UNIT


def free_page_header(size: int, generation: int) -> bytes:
    return encode_page_header(PageHeader(PageKind.FREE, size, PAGE_HEADER_SIZE, generation))


class PageWriter:
    def __init__(self, fd: int, end_offset: int, generation: int, sealer: FrameSealer,
                 space: SpaceMap | None = None) -> None:
        if end_offset % PAGE_UNIT:
            raise CommitError("archive end is not page aligned")
        self.fd = fd
        self.sealer = sealer
        self.generation = generation
        self.space = space
        self.end = end_offset  # end of the file's page area (new tail pages go here)
        self.tail_only = False  # the space map's own pages always go to the tail
        self.page_offset = 0  # start of the open page
        self.capacity = 0  # size of the extent the open page may grow to
        self.extent = 0  # size of the extent taken (== capacity, or tail)
        self.from_tail = True
        self.used = 0  # bytes of the open page (0: no page open)
        self.live = 0
        # Frames are sealed straight into a reused buffer (no bytes object per frame);
        # _buf[:_len] is pending, to be written at file offset _buf_offset.
        self._buf = bytearray(_FLUSH_BYTES)
        self._view = memoryview(self._buf)
        self._len = 0
        self._buf_offset = 0  # file offset of _buf[0]
        self.pages_written = 0
        self.bytes_written = 0
        self.reused_bytes = 0
        # the file range written so far, until writeback starts (WRITEBACK_AFTER)
        self._written_start = -1
        self._written_end = 0
        # FREE extents this session wrote into: (offset, size, original header), so
        # that an abort can put them back byte for byte.
        self.taken: list[tuple[int, int, bytes]] = []

    @property
    def end_offset(self) -> int:
        """End of the file's page area once the open page is closed."""
        if self.used and self.from_tail:
            return self.page_offset + _round_up(self.used)
        return self.end

    def _open(self, need: int) -> None:
        extent = None
        if self.space is not None and not self.tail_only:
            extent = self.space.take_free_extent(max(_round_up(need), _MIN_REUSE))
        if extent is not None:
            self.page_offset, self.extent = extent
            header = pread_exact(self.fd, PAGE_HEADER_SIZE, self.page_offset)
            self.taken.append((self.page_offset, self.extent, header))
            self.capacity = min(self.extent, MAX_PAGE_SIZE)
            self.from_tail = False
        else:
            self.page_offset = self.end
            self.capacity = MAX_PAGE_SIZE
            self.from_tail = True
        self.used = PAGE_HEADER_SIZE
        self.live = 0
        self._buf_offset = self.page_offset  # the buffer is empty: the last page closed
        self._put(_ZERO_PAGE_HEADER)  # header written at close

    def append(self, kind: FrameKind, plain: bytes | bytearray | memoryview) -> Ref:
        size = FRAME_OVERHEAD + len(plain)
        if self.used and self.used + size > self.capacity:
            self.close_page()
        if not self.used:
            self._open(PAGE_HEADER_SIZE + size)
        offset = self.page_offset + self.used
        start = self._len
        end = start + size
        if end > len(self._buf):
            self._grow(end)
        ref = self.sealer.seal_into(kind, self.generation, offset, plain,
                                    self._view[start:end])
        self._len = end
        self.used += size
        self.live += size
        if end >= _FLUSH_BYTES:
            self._flush()
        return ref

    def append_many(self, kind: FrameKind,
                    plains: Sequence[bytes | bytearray | memoryview]) -> list[Ref]:
        """:meth:`append` of each of ``plains`` in turn (the same pages, byte for byte),
        the page's state held in locals between frames: the small-file path places a
        batch of frames at a time."""
        refs: list[Ref] = []
        add = refs.append
        seal_into = self.sealer.seal_into
        generation = self.generation
        used, capacity, live = self.used, self.capacity, self.live
        length = self._len
        try:
            for plain in plains:
                size = FRAME_OVERHEAD + len(plain)
                if used and used + size > capacity:
                    self.used, self.live, self._len = used, live, length
                    self.close_page()
                    used, length = self.used, self._len
                if not used:
                    self.used, self._len = used, length
                    self._open(PAGE_HEADER_SIZE + size)
                    used, capacity, live, length = self.used, self.capacity, 0, self._len
                end = length + size
                if end > len(self._buf):
                    self._len = length
                    self._grow(end)
                add(seal_into(kind, generation, self.page_offset + used, plain,
                              self._view[length:end]))
                length = end
                used += size
                live += size
                if end >= _FLUSH_BYTES:
                    self._len = length
                    self._flush()
                    length = self._len
        finally:
            self.used, self.live, self._len = used, live, length
        return refs

    def _put(self, data: bytes) -> None:
        end = self._len + len(data)
        if end > len(self._buf):
            self._grow(end)
        self._view[self._len:end] = data
        self._len = end

    def _grow(self, need: int) -> None:
        """A larger buffer holding the pending bytes."""
        buf = bytearray(max(need, 2 * len(self._buf)))
        buf[:self._len] = self._view[:self._len]
        self._buf, self._view = buf, memoryview(buf)

    def _pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        pwrite_all(self.fd, data, offset)

    def _flush(self) -> None:
        n = self._len
        if not n:
            return
        offset = self._buf_offset
        pwrite_all(self.fd, self._view[:n], offset)
        if START_WRITEBACK and n >= _FLUSH_BYTES:
            if self.bytes_written + n >= WRITEBACK_AFTER:
                start = self._written_start
                if start >= 0:  # the first time: everything written so far too
                    self._written_start = -1
                    end = max(self._written_end, offset + n)
                    start = min(start, offset)
                    start_writeback(self.fd, start, end - start)
                else:
                    start_writeback(self.fd, offset, n)
            else:
                if self._written_start < 0 or offset < self._written_start:
                    self._written_start = offset
                self._written_end = max(self._written_end, offset + n)
        self.bytes_written += n
        self._buf_offset += n
        self._len = 0

    def close_page(self) -> None:
        if not self.used:
            return
        size = _round_up(self.used)
        pad = size - self.used
        if pad:
            self._put(bytes(pad))
        self._flush()
        header = encode_page_header(PageHeader(PageKind.FRAMES, size, self.used,
                                               self.generation))
        self._pwrite(header, self.page_offset)
        if self.space is not None:
            self.space.add_page(self.page_offset, FRAMES, size, self.live)
        if self.from_tail:
            self.end = self.page_offset + size
        else:
            self.reused_bytes += size
            rest = self.extent - size
            if rest:  # the rest of the extent stays free, with its own header
                self._pwrite(free_page_header(rest, self.generation), self.page_offset + size)
                if self.space is not None:
                    self.space.add_page(self.page_offset + size, FREE, rest)
        self.used = 0
        self.pages_written += 1

    def restore_taken(self) -> None:
        """Abort: put back every FREE extent this session wrote into (zeros and its
        original header), so the file is as it was before the session."""
        self._len = 0
        self.used = 0
        for offset, size, header in reversed(self.taken):
            write_zeros(self.fd, offset, size)
            self._pwrite(header, offset)
        self.taken.clear()

    def write_page(self, page: bytes) -> int:
        """Write a complete page image (e.g. a KEYDIR page) at the tail."""
        self.close_page()
        if len(page) % PAGE_UNIT:
            raise CommitError("a page image must be a multiple of the page unit")
        offset = self.end
        self._pwrite(page, offset)
        self.end += len(page)
        self.pages_written += 1
        return offset

