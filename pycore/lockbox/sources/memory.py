"""In-memory range sources (tests, small archives, data already fetched)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from types import TracebackType

from ..errors import UsageError
from ..ranges import ByteRange, coalesce, split_coalesced
from .base import SourceStats

__all__ = ["BytesSource", "AsyncBytesSource"]


class BytesSource:
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
            raise UsageError("read from a closed BytesSource")
        merged = coalesce(ranges)
        blobs = []
        for m in merged:
            blob = self._data[m.offset : m.end]
            self.stats.requests += 1
            self.stats.bytes_read += len(blob)
            blobs.append(blob)
        return split_coalesced(ranges, merged, blobs)

    def close(self) -> None:
        """Mark the source closed (idempotent)."""
        self._closed = True

    def __enter__(self) -> BytesSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BytesSource(<{len(self._data)} bytes>)"


class AsyncBytesSource:
    """The async twin of :class:`BytesSource` (an :class:`AsyncRangeSource`)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._sync = BytesSource(data)
        self.stats = self._sync.stats

    @property
    def size(self) -> int:
        """Total size in bytes (always known)."""
        return self._sync.size

    @property
    def identity(self) -> str:
        """A digest of the content (the content never changes)."""
        return self._sync.identity

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range, clamped at the end of the data."""
        return self._sync.read(ranges)

    async def aclose(self) -> None:
        """Mark the source closed (idempotent)."""
        self._sync.close()

    async def __aenter__(self) -> AsyncBytesSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncBytesSource(<{self._sync.size} bytes>)"
