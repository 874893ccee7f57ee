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

Below the protocols: what the sources share (clamping, the closed-source error,
coalesce / read / split of a batch, ``with`` / ``async with``, an async source
over a sync one); the HTTP protocol is :mod:`lockbox.sources.httprules`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from ..errors import UsageError
from ..ranges import ByteRange, coalesce, split_coalesced

__all__ = ["RangeSource", "AsyncRangeSource", "SourceStats"]


class SourceStats:
    """Counters every source keeps: requests sent and bytes received."""

    __slots__ = ("bytes_read", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.bytes_read = 0

    def count(self, nbytes: int) -> None:
        """Count one request that brought ``nbytes`` bytes."""
        self.requests += 1
        self.bytes_read += nbytes

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


# ----------------------------------------------------------------- helpers of the sources


def clamp(wanted: ByteRange, size: int | None) -> ByteRange | None:
    """``wanted`` cut at ``size`` (unchanged while the size is unknown); None if none of
    its bytes exist."""
    if size is None:
        return wanted
    end = min(wanted.end, size)
    if wanted.offset >= end:
        return None
    return ByteRange(wanted.offset, end - wanted.offset)


def closed_error(source: object, detail: str | None = None) -> UsageError:
    """The error for a read from a closed source."""
    what = f" ({detail})" if detail is not None else ""
    return UsageError(f"read from a closed {type(source).__name__}{what}")


def read_each(ranges: Sequence[ByteRange], read_one: Callable[[ByteRange], bytes]) -> list[bytes]:
    """Coalesce a batch, read each merged range in order, cut the answers back."""
    merged = coalesce(ranges)
    return split_coalesced(ranges, merged, [read_one(m) for m in merged])


async def read_each_async(
    ranges: Sequence[ByteRange], read_one: Callable[[ByteRange], Awaitable[bytes]]
) -> list[bytes]:
    """Coalesce a batch, read the merged ranges concurrently, cut the answers back.

    The first failure ends the batch: the other reads are cancelled (and awaited)
    before it propagates.
    """
    merged = coalesce(ranges)
    if len(merged) == 1:
        blobs = [await read_one(merged[0])]
    else:
        import asyncio  # here: a sync command never pays for asyncio (ssl, socket, ...)

        tasks = [asyncio.ensure_future(read_one(m)) for m in merged]
        try:
            blobs = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return split_coalesced(ranges, merged, blobs)


class SyncSourceBase:
    """``with source:`` closes the source at the end of the block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncSourceBase:
    """``async with source:`` closes the source at the end of the block."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncOverSync(AsyncSourceBase):
    """An async source that answers from a sync one (reads done inline).

    ``size``, ``identity`` and ``stats`` are the sync source's; closing closes it.
    """

    def __init__(self, sync: Any) -> None:
        self._sync = sync
        self.stats: SourceStats = sync.stats

    @property
    def size(self) -> Any:
        """The sync source's size."""
        return self._sync.size

    @property
    def identity(self) -> Any:
        """The sync source's identity."""
        return self._sync.identity

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range from the sync source."""
        result: list[bytes] = self._sync.read(ranges)
        return result

    async def aclose(self) -> None:
        """Close the sync source (idempotent)."""
        self._sync.close()

    def __repr__(self) -> str:
        return f"Async{self._sync!r}"  # AsyncBytesSource(<n bytes>), AsyncFileSource('path')
