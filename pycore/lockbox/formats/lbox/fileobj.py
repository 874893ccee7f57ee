"""A seekable, read-only binary file object over one archived file."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from ...errors import IntegrityError
from .reading import BATCH_BYTES
from .view import ArchiveView, ChunkData
from .wire.entry import Entry

__all__ = ["LockboxFile"]


class LockboxFile(io.RawIOBase):
    """Reads chunks on demand (a few at a time), keeps the last batch, and when
    the file is read from start to end in order, checks its BLAKE3 content hash at the end."""

    def __init__(self, view: ArchiveView, entry: Entry, path: str,
                 run: Callable[[Any], Any]) -> None:
        super().__init__()
        self._view = view
        self._entry = entry
        self.name = path
        self._run = run
        self._pos = 0
        self._chunks: dict[int, ChunkData] = {}
        self._hash: Any = None
        self._hashed_to = 0
        self._hash = view.opener.crypto.blake3()

    @property
    def size(self) -> int:
        return self._entry.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._entry.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def _chunk(self, n: int) -> ChunkData:
        c = self._chunks.get(n)
        if c is None:
            per = max(1, BATCH_BYTES // self._entry.chunk_size)
            stop = min(self._entry.chunks, n + per)
            got = self._run(self._view.chunks_flow(self._entry, n, stop))
            self._chunks = {x.chunk_no: x for x in got}
            c = self._chunks[n]
        return c

    def readinto(self, buffer: Any) -> int:
        mv = memoryview(buffer).cast("B")
        size = self._entry.size
        if self._pos >= size or not len(mv):
            return 0
        csize = self._entry.chunk_size
        n = self._pos // csize
        c = self._chunk(n)
        start = self._pos - n * csize
        piece = c.data[start : start + len(mv)]
        mv[: len(piece)] = piece
        if self._hashed_to == self._pos and self._hash is not None:
            self._hash.update(piece)
            self._hashed_to += len(piece)
            if self._hashed_to == size and self._hash.digest() != self._entry.content_hash:
                raise IntegrityError(f"{self.name}: content does not match its BLAKE3 content hash")
        self._pos += len(piece)
        return len(piece)

    def readall(self) -> bytes:
        out = bytearray()
        while True:
            chunk = self.read(max(1, self._entry.size - self._pos))
            if not chunk:
                return bytes(out)
            out += chunk
