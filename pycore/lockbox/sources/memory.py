"""In-memory range sources (tests, small archives, data already fetched)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..ranges import ByteRange
from .base import AsyncOverSync, SourceStats, SyncSourceBase, closed_error, read_each

__all__ = ["BytesSource", "AsyncBytesSource"]


class BytesSource(SyncSourceBase):
    """A :class:`~lockbox.sources.base.RangeSource` over a bytes-like object.

    The data is copied once (``bytes(data)``), so later changes to a mutable
    buffer do not leak into reads. ``stats.requests`` counts the coalesced
    ranges served, as a transport would; zero-length ranges cost nothing.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = bytes(data)
        self._identity: str | None = None
        self._closed = False
        self.stats = SourceStats()

    @property
    def size(self) -> int:
        """Total size in bytes (always known)."""
        return len(self._data)

    @property
    def identity(self) -> str:
        """A digest of the content (the content never changes)."""
        if self._identity is None:
            self._identity = hashlib.blake2b(self._data, digest_size=16).hexdigest()
        return self._identity

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range, clamped at the end of the data."""
        if self._closed:
            raise closed_error(self)
        return read_each(ranges, self._read_one)

    def _read_one(self, merged: ByteRange) -> bytes:
        blob = self._data[merged.offset : merged.end]
        self.stats.count(len(blob))
        return blob

    def close(self) -> None:
        """Mark the source closed (idempotent)."""
        self._closed = True

    def __repr__(self) -> str:
        return f"BytesSource(<{len(self._data)} bytes>)"


class AsyncBytesSource(AsyncOverSync):
    """The async twin of :class:`BytesSource` (an :class:`AsyncRangeSource`)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__(BytesSource(data))
