"""Range sources: where archive bytes come from.

A source answers batches of byte-range reads. Reads are *clamped* at the end
of the source: a range that runs past the end returns the bytes that exist
(possibly ``b""``), never padding and never an error. Decoders detect the
shortfall and raise :class:`~lockbox.errors.TruncatedError`.

Every source reports ``size`` (total bytes), known after the first read at
the latest, and ``identity``, an opaque value (ETag, mtime+size, ...) that
changes when the underlying archive changes; sources raise
:class:`~lockbox.errors.SourceChangedError` when they notice such a change
mid-read.

Sync and async sources have the same shape; the read engine is written once
as generator flows and the drivers (``lockbox.drivers``) feed them from
either kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..ranges import ByteRange

__all__ = ["RangeSource", "AsyncRangeSource", "SourceStats"]


class SourceStats:
    """Counters every source keeps: requests sent and bytes received."""

    __slots__ = ("bytes_read", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.bytes_read = 0

    def __repr__(self) -> str:
        return f"SourceStats(requests={self.requests}, bytes_read={self.bytes_read})"


@runtime_checkable
class RangeSource(Protocol):
    stats: SourceStats

    @property
    def size(self) -> int | None:
        """Total size in bytes, or None if not known yet (no read done)."""
        ...

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range (one batch = one round trip where the transport allows)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncRangeSource(Protocol):
    stats: SourceStats

    @property
    def size(self) -> int | None: ...

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; independent ranges are fetched concurrently."""
        ...

    async def aclose(self) -> None: ...
