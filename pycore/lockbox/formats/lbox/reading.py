"""Planning reads of one file's content: batches of chunks, and the whole-file
BLAKE3 content hash check at the end. Shared by the sync and async facades (which only
run the flows) and by extraction and verification."""

from __future__ import annotations

from ...crypto.base import CryptoBackend
from ...errors import IntegrityError
from .view import ChunkData
from .wire.entry import Entry

__all__ = ["FileReadPlan", "BATCH_BYTES"]

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
        out = []
        for c in chunks:
            if c.chunk_no != self.next_chunk:
                raise IntegrityError(f"{self.path}: chunks out of order")
            self._hash.update(c.data)
            out.append(c.data)
            self.next_chunk += 1
        if self.next_chunk >= self.entry.chunks and \
                self._hash.digest() != self.entry.content_hash:
            raise IntegrityError(f"{self.path}: content does not match its BLAKE3 content hash")
        return out
