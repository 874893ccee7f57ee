"""Conformance suites every range source must pass.

Use by subclassing and providing a ``make_source`` fixture that returns a
factory ``make_source(data: bytes) -> source`` serving exactly ``data``::

    class TestMySource(RangeSourceConformance):
        @pytest.fixture
        def make_source(self):
            return MySource

The factory owns cleanup of what it creates (close/aclose on teardown is
optional for the sync suite: every test closes its sources itself).
The classes are not named ``Test*``, so pytest does not collect them alone.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lockbox.ranges import ByteRange as B
from lockbox.sources import AsyncRangeSource, RangeSource, SourceStats

__all__ = ["RangeSourceConformance", "AsyncRangeSourceConformance", "sample", "run_async"]

SIZE = 100_003  # odd, so no range lines up with a power of two by accident
ASYNC_TIMEOUT = 30.0


def sample(size: int = SIZE, seed: int = 1) -> bytes:
    """Deterministic incompressible test data."""
    return random.Random(seed).randbytes(size)


def run_async(coro: Awaitable[Any], timeout: float = ASYNC_TIMEOUT) -> Any:
    """Run ``coro`` in a fresh event loop; a hang fails after ``timeout`` seconds."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _random_batches(size: int, seed: int, count: int) -> list[list[B]]:
    rng = random.Random(seed)
    batches = []
    for _ in range(count):
        batch = []
        for _ in range(rng.randint(1, 6)):
            offset = rng.choice([0, rng.randrange(size + 50), size - rng.randrange(1, 40)])
            length = rng.choice([0, 1, rng.randrange(1, 300), rng.randrange(1, 5000)])
            batch.append(B(max(offset, 0), length))
        batches.append(batch)
    return batches


def _expected(data: bytes, ranges: list[B]) -> list[bytes]:
    return [data[r.offset : r.end] for r in ranges]


class RangeSourceConformance:
    """Tests every sync :class:`RangeSource` must pass (fixture: ``make_source``)."""

    @pytest.fixture
    def data(self) -> bytes:
        return sample()

    def _open(self, make_source: Callable[[bytes], RangeSource], data: bytes) -> RangeSource:
        src = make_source(data)
        assert isinstance(src, RangeSource)
        assert isinstance(src.stats, SourceStats)
        return src

    def test_size_known_after_first_read(self, make_source, data):
        src = self._open(make_source, data)
        try:
            assert src.size in (None, len(data))
            assert src.read([B(0, 1)]) == [data[:1]]
            assert src.size == len(data)
        finally:
            src.close()

    def test_size_known_after_read_of_only_empty_ranges(self, make_source, data):
        src = self._open(make_source, data)
        try:
            assert src.read([B(10, 0)]) == [b""]
            assert src.size == len(data)
            assert src.read([]) == []
        finally:
            src.close()

    def test_single_read(self, make_source, data):
        src = self._open(make_source, data)
        try:
            assert src.read([B(1234, 5678)]) == [data[1234 : 1234 + 5678]]
        finally:
            src.close()

    def test_whole_source(self, make_source, data):
        src = self._open(make_source, data)
        try:
            assert src.read([B(0, len(data))]) == [data]
        finally:
            src.close()

    def test_batch_returns_results_in_request_order(self, make_source, data):
        ranges = [B(90_000, 100), B(0, 10), B(50_000, 1), B(10, 20), B(70_000, 3000)]
        src = self._open(make_source, data)
        try:
            got = src.read(ranges)
            assert got == _expected(data, ranges)
            assert [len(b) for b in got] == [100, 10, 1, 20, 3000]
        finally:
            src.close()

    def test_overlapping_and_adjacent_ranges(self, make_source, data):
        ranges = [B(100, 100), B(150, 100), B(250, 50), B(200, 50), B(100, 100), B(120, 10)]
        src = self._open(make_source, data)
        try:
            assert src.read(ranges) == _expected(data, ranges)
        finally:
            src.close()

    def test_zero_length_ranges(self, make_source, data):
        ranges = [B(5, 0), B(0, 10), B(len(data), 0), B(len(data) + 10, 0), B(7, 0)]
        src = self._open(make_source, data)
        try:
            assert src.read(ranges) == [b"", data[:10], b"", b"", b""]
        finally:
            src.close()

    def test_read_clamped_past_end(self, make_source, data):
        src = self._open(make_source, data)
        try:
            assert src.read([B(len(data) - 10, 100)]) == [data[-10:]]
            assert src.read([B(0, len(data) + 1)]) == [data]
        finally:
            src.close()

    @pytest.mark.parametrize("past", [0, 1, 10_000])
    def test_range_at_or_after_end_is_empty_on_first_read(self, make_source, data, past):
        src = self._open(make_source, data)
        try:
            assert src.read([B(len(data) + past, 5)]) == [b""]
            assert src.size == len(data)
        finally:
            src.close()

    def test_range_at_or_after_end_is_empty_in_a_batch(self, make_source, data):
        ranges = [B(len(data), 5), B(3, 4), B(len(data) + 1000, 1), B(len(data) - 2, 10)]
        src = self._open(make_source, data)
        try:
            assert src.read(ranges) == [b"", data[3:7], b"", data[-2:]]
            # again, now that the size is known
            assert src.read(ranges) == [b"", data[3:7], b"", data[-2:]]
        finally:
            src.close()

    def test_empty_source(self, make_source):
        src = self._open(make_source, b"")
        try:
            assert src.read([B(0, 10), B(0, 0), B(5, 1)]) == [b"", b"", b""]
            assert src.size == 0
        finally:
            src.close()

    def test_stats_counters_grow(self, make_source, data):
        src = self._open(make_source, data)
        try:
            assert src.stats.bytes_read == 0
            src.read([B(0, 1000)])
            requests, read = src.stats.requests, src.stats.bytes_read
            assert requests >= 1
            assert read >= 1000
            src.read([B(50_000, 10)])
            assert src.stats.requests > requests
            assert src.stats.bytes_read >= read + 10
        finally:
            src.close()

    def test_random_batches_match_slicing(self, make_source, data):
        src = self._open(make_source, data)
        try:
            for batch in _random_batches(len(data), seed=7, count=25):
                assert src.read(batch) == _expected(data, batch), batch
        finally:
            src.close()

    def test_close_is_idempotent(self, make_source, data):
        src = self._open(make_source, data)
        src.read([B(0, 1)])
        src.close()
        src.close()


class AsyncRangeSourceConformance:
    """Tests every :class:`AsyncRangeSource` must pass (fixture: ``make_source``).

    Each test runs in its own event loop; sources are created inside it.
    """

    @pytest.fixture
    def data(self) -> bytes:
        return sample()

    def _run(
        self,
        make_source: Callable[[bytes], AsyncRangeSource],
        data: bytes,
        body: Callable[[AsyncRangeSource], Awaitable[Any]],
    ) -> Any:
        async def main() -> Any:
            src = make_source(data)
            assert isinstance(src, AsyncRangeSource)
            assert isinstance(src.stats, SourceStats)
            try:
                return await body(src)
            finally:
                await src.aclose()

        return run_async(main())

    def test_size_known_after_first_read(self, make_source, data):
        async def body(src):
            assert src.size in (None, len(data))
            assert await src.read([B(0, 1)]) == [data[:1]]
            assert src.size == len(data)

        self._run(make_source, data, body)

    def test_size_known_after_read_of_only_empty_ranges(self, make_source, data):
        async def body(src):
            assert await src.read([B(10, 0)]) == [b""]
            assert src.size == len(data)
            assert await src.read([]) == []

        self._run(make_source, data, body)

    def test_single_read(self, make_source, data):
        async def body(src):
            assert await src.read([B(1234, 5678)]) == [data[1234 : 1234 + 5678]]

        self._run(make_source, data, body)

    def test_whole_source(self, make_source, data):
        async def body(src):
            assert await src.read([B(0, len(data))]) == [data]

        self._run(make_source, data, body)

    def test_batch_returns_results_in_request_order(self, make_source, data):
        ranges = [B(90_000, 100), B(0, 10), B(50_000, 1), B(10, 20), B(70_000, 3000)]

        async def body(src):
            assert await src.read(ranges) == _expected(data, ranges)

        self._run(make_source, data, body)

    def test_overlapping_and_adjacent_ranges(self, make_source, data):
        ranges = [B(100, 100), B(150, 100), B(250, 50), B(200, 50), B(100, 100), B(120, 10)]

        async def body(src):
            assert await src.read(ranges) == _expected(data, ranges)

        self._run(make_source, data, body)

    def test_zero_length_ranges(self, make_source, data):
        ranges = [B(5, 0), B(0, 10), B(len(data), 0), B(len(data) + 10, 0), B(7, 0)]

        async def body(src):
            assert await src.read(ranges) == [b"", data[:10], b"", b"", b""]

        self._run(make_source, data, body)

    def test_read_clamped_past_end(self, make_source, data):
        async def body(src):
            assert await src.read([B(len(data) - 10, 100)]) == [data[-10:]]
            assert await src.read([B(0, len(data) + 1)]) == [data]

        self._run(make_source, data, body)

    @pytest.mark.parametrize("past", [0, 1, 10_000])
    def test_range_at_or_after_end_is_empty_on_first_read(self, make_source, data, past):
        async def body(src):
            assert await src.read([B(len(data) + past, 5)]) == [b""]
            assert src.size == len(data)

        self._run(make_source, data, body)

    def test_range_at_or_after_end_is_empty_in_a_batch(self, make_source, data):
        ranges = [B(len(data), 5), B(3, 4), B(len(data) + 1000, 1), B(len(data) - 2, 10)]

        async def body(src):
            assert await src.read(ranges) == [b"", data[3:7], b"", data[-2:]]
            assert await src.read(ranges) == [b"", data[3:7], b"", data[-2:]]

        self._run(make_source, data, body)

    def test_empty_source(self, make_source):
        async def body(src):
            assert await src.read([B(0, 10), B(0, 0), B(5, 1)]) == [b"", b"", b""]
            assert src.size == 0

        self._run(make_source, b"", body)

    def test_stats_counters_grow(self, make_source, data):
        async def body(src):
            assert src.stats.bytes_read == 0
            await src.read([B(0, 1000)])
            requests, read = src.stats.requests, src.stats.bytes_read
            assert requests >= 1
            assert read >= 1000
            await src.read([B(50_000, 10)])
            assert src.stats.requests > requests
            assert src.stats.bytes_read >= read + 10

        self._run(make_source, data, body)

    def test_random_batches_match_slicing(self, make_source, data):
        async def body(src):
            for batch in _random_batches(len(data), seed=7, count=25):
                assert await src.read(batch) == _expected(data, batch), batch

        self._run(make_source, data, body)

    def test_concurrent_reads_on_one_source(self, make_source, data):
        batches = _random_batches(len(data), seed=11, count=8)

        async def body(src):
            results = await asyncio.gather(*(src.read(b) for b in batches))
            assert list(results) == [_expected(data, b) for b in batches]

        self._run(make_source, data, body)

    def test_aclose_is_idempotent(self, make_source, data):
        async def body(src):
            await src.read([B(0, 1)])
            await src.aclose()
            await src.aclose()

        self._run(make_source, data, body)
