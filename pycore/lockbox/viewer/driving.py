"""How the viewer reads: the archive's source wrapped for the network panel
(:class:`Recorder`), a bounded cache of raw ranges for formats without caches of their
own (:class:`RangeCache`), and a driver that runs a flow one round trip at a time
(:class:`FlowSteps`: streamed listings and downloads hand over what they have after each
round trip)."""

from __future__ import annotations

import time
from bisect import bisect_right, insort
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

from ..drivers import Flow, Read
from ..ranges import ByteRange
from ..sources.base import AsyncRangeSource, SourceStats

__all__ = ["Recorder", "RangeCache", "FlowSteps", "flow_pieces", "LOG_SIZE",
           "RANGE_CACHE_BYTES", "RANGE_CACHE_BLOB_MAX"]

T = TypeVar("T")

LOG_SIZE = 200  # network log: the last N round trips
# Raw ranges kept for formats that have no cache of their own (.uri): a second scan of
# the same windows (the reader's index after a streamed listing) and a download after a
# preview are answered from here. At most this much in all; larger blobs are not kept.
RANGE_CACHE_BYTES = 32 * 1024 * 1024
RANGE_CACHE_BLOB_MAX = 8 * 1024 * 1024
_LOOK_BACK = 4  # earlier blobs tried when the nearest one does not cover a range


class RangeCache:
    """Bytes read from the archive, by offset, least recently used first out. A range is
    answered when one kept blob covers it whole."""

    def __init__(self, limit_bytes: int = RANGE_CACHE_BYTES,
                 blob_max: int = RANGE_CACHE_BLOB_MAX) -> None:
        self.limit_bytes = limit_bytes
        self.blob_max = min(blob_max, limit_bytes)
        self.size_bytes = 0
        self.hits = 0
        self.hit_bytes = 0
        self._blobs: OrderedDict[int, bytes] = OrderedDict()
        self._starts: list[int] = []

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, r: ByteRange) -> bytes | None:
        k = bisect_right(self._starts, r.offset) - 1
        for j in range(k, max(-1, k - _LOOK_BACK), -1):
            start = self._starts[j]
            blob = self._blobs[start]
            if start + len(blob) >= r.end:
                self._blobs.move_to_end(start)
                self.hits += 1
                self.hit_bytes += r.size
                return blob[r.offset - start:r.end - start]
        return None

    def put(self, offset: int, blob: bytes) -> None:
        if not blob or len(blob) > self.blob_max:
            return
        old = self._blobs.get(offset)
        if old is not None:
            if len(old) >= len(blob):
                return
            self.size_bytes -= len(old)
        else:
            insort(self._starts, offset)
        self._blobs[offset] = blob
        self._blobs.move_to_end(offset)
        self.size_bytes += len(blob)
        while self.size_bytes > self.limit_bytes:
            start, dropped = self._blobs.popitem(last=False)
            self._starts.pop(bisect_right(self._starts, start) - 1)
            self.size_bytes -= len(dropped)


class Recorder:
    """Wraps the archive's async source: counts round trips and logs them (the network
    panel), answers reads inside ``head`` (the first bytes, read once when the archive
    was opened; all of a small file) without a request, and with a :class:`RangeCache`
    answers what it holds and fetches only the rest."""

    def __init__(self, inner: AsyncRangeSource, head: bytes | None = None,
                 cache: RangeCache | None = None) -> None:
        self.inner = inner
        self.head = head
        self.cache = cache
        self.round_trips = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.started = time.monotonic()
        self.label = "open"
        self.stats: SourceStats = inner.stats

    @property
    def size(self) -> int | None:
        return self.inner.size

    @property
    def identity(self) -> Any:
        return getattr(self.inner, "identity", None)

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        head = self.head
        # The head answers what it holds; when it holds the whole file, everything (a
        # range past the end gets what a source gives there: the bytes up to the end).
        whole = head is not None and self.size is not None and len(head) >= self.size
        if head is not None and ranges and (whole or all(r.end <= len(head) for r in ranges)):
            return [head[r.offset:r.end] for r in ranges]
        out: list[bytes | None] = [None] * len(ranges)
        if self.cache is not None:
            out = [self.cache.get(r) for r in ranges]
        missing = [i for i, blob in enumerate(out) if blob is None]
        if missing:
            fetched = await self._fetch([ranges[i] for i in missing])
            for i, blob in zip(missing, fetched):
                out[i] = blob
                if self.cache is not None:
                    self.cache.put(ranges[i].offset, bytes(blob))
        return out  # type: ignore[return-value]

    async def _fetch(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        before = (self.inner.stats.requests, self.inner.stats.bytes_read)
        t0 = time.monotonic()
        error = ""
        try:
            return await self.inner.read(ranges)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            self.round_trips += 1
            self.log.append({
                "at": round(t0 - self.started, 3), "what": self.label,
                "ranges": len(ranges),
                "requests": self.inner.stats.requests - before[0],
                "bytes": self.inner.stats.bytes_read - before[1],
                "ms": round((time.monotonic() - t0) * 1000, 1), "error": error,
            })

    async def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end against this source."""
        steps = FlowSteps(flow, self)
        while await steps.step():
            pass
        return steps.result  # type: ignore[return-value]

    async def aclose(self) -> None:
        await self.inner.aclose()


class FlowSteps(Generic[T]):
    """Runs a flow one round trip per :meth:`step`, so a caller can hand over what the
    flow produced so far (entries emitted, pieces of a file) between round trips. The
    first step runs the flow up to its first read without I/O."""

    def __init__(self, flow: Flow[T], source: Recorder) -> None:
        self._flow = flow
        self._source = source
        self._request: Read | None = None
        self.done = False
        self.result: T | None = None

    async def step(self) -> bool:
        """Advance the flow by one round trip; False once it has ended (``result``)."""
        if self.done:
            return False
        try:
            if self._request is None:
                self._request = next(self._flow)
            else:
                try:
                    blobs = await self._source.read(self._request.ranges)
                except BaseException as exc:  # the flow may handle it
                    self._request = self._flow.throw(exc)
                    return True
                self._request = self._flow.send(blobs)
        except StopIteration as stop:
            self.done = True
            self.result = stop.value
        except BaseException:
            self.done = True
            raise
        return not self.done

    def close(self) -> None:
        self.done = True
        self._flow.close()


async def flow_pieces(make_flow: Callable[[Callable[[Any], None]], Flow[Any]],
                      source: Recorder) -> AsyncIterator[bytes]:
    """The pieces a sink-taking flow (``stream_flow``) hands over, as they come: after
    each round trip, what it produced meanwhile."""
    pieces: list[bytes] = []
    steps = FlowSteps(make_flow(lambda piece: pieces.append(bytes(piece))), source)
    try:
        while True:
            more = await steps.step()
            while pieces:
                out = pieces[:]
                pieces.clear()
                for piece in out:
                    yield piece
            if not more:
                return
    finally:
        steps.close()
