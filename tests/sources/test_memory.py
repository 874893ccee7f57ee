"""In-memory sources: conformance plus their few specifics."""

from __future__ import annotations

import pytest

from lockbox.errors import UsageError
from lockbox.ranges import ByteRange as B
from lockbox.sources import AsyncBytesSource, BytesSource

from .conformance import AsyncRangeSourceConformance, RangeSourceConformance, run_async


class TestBytesSource(RangeSourceConformance):
    @pytest.fixture
    def make_source(self):
        return BytesSource


class TestBytesSourceFromBytearray(RangeSourceConformance):
    @pytest.fixture
    def make_source(self):
        return lambda data: BytesSource(bytearray(data))


class TestAsyncBytesSource(AsyncRangeSourceConformance):
    @pytest.fixture
    def make_source(self):
        return AsyncBytesSource


def test_data_is_copied():
    buf = bytearray(b"abcdef")
    src = BytesSource(buf)
    buf[0:3] = b"XYZ"
    assert src.read([B(0, 3)]) == [b"abc"]


def test_coalesced_batch_counts_one_request():
    src = BytesSource(b"0123456789")
    assert src.read([B(0, 3), B(3, 3), B(5, 5)]) == [b"012", b"345", b"56789"]
    assert (src.stats.requests, src.stats.bytes_read) == (1, 10)


def test_identity_is_stable_and_content_based():
    assert BytesSource(b"abc").identity == BytesSource(b"abc").identity
    assert BytesSource(b"abc").identity != BytesSource(b"abd").identity


def test_read_after_close_is_an_error():
    with BytesSource(b"abc") as src:
        assert src.read([B(0, 1)]) == [b"a"]
    with pytest.raises(UsageError):
        src.read([B(0, 1)])


def test_async_context_manager_closes():
    async def main():
        async with AsyncBytesSource(b"abc") as src:
            assert await src.read([B(1, 5)]) == [b"bc"]
        with pytest.raises(UsageError):
            await src.read([B(0, 1)])

    run_async(main())
