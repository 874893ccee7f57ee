"""HTTP sources against a real uvicorn server on 127.0.0.1 (see servers.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lockbox.errors import (
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from lockbox.ranges import ByteRange as B
from lockbox.sources import AsyncRangeSource, RangeSource, open_async_source, open_source
from lockbox.sources.http import AsyncHttpSource, HttpSource

from .conformance import (
    AsyncRangeSourceConformance,
    RangeSourceConformance,
    run_async,
    sample,
)
from .servers import AUTH_TOKEN, ServerState, live_server, make_app, unused_port

TIMEOUT = 10.0
_names = itertools.count()


@dataclass
class Served:
    base_url: str
    root: Path
    state: ServerState

    def put(self, data: bytes, *, v2: bytes | None = None) -> str:
        """Write ``data`` (and optionally a second version) under a fresh name."""
        name = f"f{next(_names)}.bin"
        path = self.root / name
        path.write_bytes(data)
        if v2 is not None:
            path2 = self.root / (name + ".v2")
            path2.write_bytes(v2)
            st = path.stat()  # make sure mtime, hence the ETag, differs
            os.utime(path2, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        return name

    def url(self, route: str, name: str = "") -> str:
        return f"{self.base_url}/{route}/{name}" if name else f"{self.base_url}/{route}"

    def logged(self, route: str) -> list[dict[str, str]]:
        return [h for path, h in self.state.requests if path.startswith(f"/{route}/")]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    state = ServerState(root, delay=0.2)
    with live_server(make_app(state), timeout=10.0) as live:
        yield Served(live.base_url, root, state)


@pytest.fixture
def served(server: Served) -> Served:
    server.state.reset()
    return server


# --------------------------------------------------------------------------- conformance


class TestHttpSource(RangeSourceConformance):
    @pytest.fixture(params=["files", "noetag", "redirect", "shared-client"])
    def make_source(self, served, request):
        created: list[HttpSource] = []
        shared = httpx.Client(timeout=TIMEOUT) if request.param == "shared-client" else None
        route = "files" if request.param == "shared-client" else request.param

        def make(data: bytes) -> HttpSource:
            src = HttpSource(served.url(route, served.put(data)), client=shared, timeout=TIMEOUT)
            created.append(src)
            return src

        yield make
        for src in created:
            src.close()
        if shared is not None:
            assert not shared.is_closed  # not owned: the sources left it open
            shared.close()
        # every request was a single closed range, without compression
        for headers in served.logged(route):
            assert re.fullmatch(r"bytes=\d+-\d+", headers["range"]), headers["range"]
            assert headers["accept-encoding"] == "identity"


class TestAsyncHttpSource(AsyncRangeSourceConformance):
    @pytest.fixture(params=["files", "noetag"])
    def make_source(self, served, request):
        yield lambda data: AsyncHttpSource(
            served.url(request.param, served.put(data)), timeout=TIMEOUT
        )
        for headers in served.logged(request.param):
            assert re.fullmatch(r"bytes=\d+-\d+", headers["range"]), headers["range"]


# --------------------------------------------------------------------------- requests and bytes


def test_batch_of_adjacent_ranges_is_one_request(served):
    data = sample(10_000)
    with HttpSource(served.url("files", served.put(data)), timeout=TIMEOUT) as src:
        got = src.read([B(100, 10), B(110, 20), B(130, 30)])
        assert got == [data[100:110], data[110:130], data[130:160]]
        assert (src.stats.requests, src.stats.bytes_read) == (1, 60)
    assert [h["range"] for h in served.logged("files")] == ["bytes=100-159"]


def test_known_size_clamps_requests_and_skips_ranges_past_the_end(served):
    data = sample(10_000)
    with HttpSource(served.url("files", served.put(data)), timeout=TIMEOUT) as src:
        src.read([B(0, 10)])
        assert src.read([B(9_990, 100), B(20_000, 10)]) == [data[9_990:], b""]
        assert (src.stats.requests, src.stats.bytes_read) == (2, 20)
    assert [h["range"] for h in served.logged("files")] == ["bytes=0-9", "bytes=9990-9999"]


def test_empty_batch_probes_the_size_once(served):
    data = sample(777)
    with HttpSource(served.url("files", served.put(data)), timeout=TIMEOUT) as src:
        assert src.size is None
        assert src.read([B(5, 0)]) == [b""]
        assert src.size == 777 and src.stats.requests == 1
        assert src.read([]) == [] and src.stats.requests == 1


def test_range_past_the_end_on_first_read_uses_416_size(served):
    data = sample(500)
    with HttpSource(served.url("files", served.put(data)), timeout=TIMEOUT) as src:
        assert src.read([B(600, 10)]) == [b""]
        assert src.size == 500
        assert src.stats.requests == 1  # the 416 told the size: no probe
        assert src.stats.bytes_read == 0


def test_etag_pinned_and_sent_as_if_match(served):
    data = sample(5_000)
    with HttpSource(served.url("files", served.put(data)), timeout=TIMEOUT) as src:
        src.read([B(0, 10)])
        src.read([B(100, 10)])
        assert src.identity is not None and src.identity.startswith('"')
    first, second = served.logged("files")
    assert "if-match" not in first
    assert second["if-match"] == src.identity


def test_no_etag_sends_no_if_match(served):
    data = sample(5_000)
    with HttpSource(served.url("noetag", served.put(data)), timeout=TIMEOUT) as src:
        src.read([B(0, 10)])
        src.read([B(100, 10)])
        assert src.identity is not None and src.identity.endswith("|5000")
    assert all("if-match" not in h for h in served.logged("noetag"))


def test_custom_headers_are_sent_but_cannot_override_range(served):
    data = sample(1_000)
    url = served.url("auth", served.put(data))
    with (
        HttpSource(url, timeout=TIMEOUT) as src,
        pytest.raises(SourceUnavailableError, match="403"),
    ):
        src.read([B(0, 10)])
    headers = {"Authorization": AUTH_TOKEN, "range": "bytes=-5", "Accept-Encoding": "gzip"}
    with HttpSource(url, headers=headers, timeout=TIMEOUT) as src:
        assert src.read([B(0, 10)]) == [data[:10]]
    assert served.logged("auth")[-1]["range"] == "bytes=0-9"


# --------------------------------------------------------------------------- 200 instead of 206


def _settled(state: ServerState, timeout: float = 5.0) -> int:
    """The server's sent-byte counter once it stopped moving."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        now = state.norange_sent
        if now == last:
            return now
        last = now
        time.sleep(0.2)
    raise AssertionError("the server kept sending")


BIG = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def big_name(server) -> str:
    return server.put(os.urandom(BIG))


def test_norange_route_really_sends_everything_when_read(served, big_name):
    """Control for the next tests: the counter does reach the full size."""
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(served.url("norange", big_name), headers={"Range": "bytes=0-9"})
    assert response.status_code == 200 and len(response.content) == BIG
    assert _settled(served.state) == BIG


def test_200_instead_of_206_raises_without_downloading(served, big_name):
    with HttpSource(served.url("norange", big_name), timeout=TIMEOUT) as src:
        with pytest.raises(RangeNotSupportedError, match="200"):
            src.read([B(0, 100)])
        assert (src.stats.requests, src.stats.bytes_read) == (1, 0)
    sent = _settled(served.state)
    assert sent < BIG // 2, f"server sent {sent} of {BIG} bytes"


def test_async_200_instead_of_206_raises_without_downloading(served, big_name):
    async def main():
        async with AsyncHttpSource(served.url("norange", big_name), timeout=TIMEOUT) as src:
            with pytest.raises(RangeNotSupportedError):
                await src.read([B(0, 100), B(10_000_000, 100)])
            assert src.stats.bytes_read == 0

    run_async(main())
    sent = _settled(served.state)
    assert sent < BIG // 2, f"server sent {sent} of {BIG} bytes"


# --------------------------------------------------------------------------- changes mid-read


@pytest.mark.parametrize(
    ("v2_size", "message"), [(20_000, "ETag"), (25_000, "size")], ids=["same-size", "other-size"]
)
def test_file_changed_mid_read(served, v2_size, message):
    data = sample(20_000)
    name = served.put(data, v2=sample(v2_size, seed=9))
    with HttpSource(served.url("changing", name), timeout=TIMEOUT) as src:
        assert src.read([B(0, 100)]) == [data[:100]]
        with pytest.raises(SourceChangedError, match=message):
            src.read([B(1000, 100)])


def test_file_changed_mid_read_412_with_if_match(served):
    data = sample(20_000)
    name = served.put(data, v2=sample(20_000, seed=9))
    with HttpSource(served.url("changing-strict", name), timeout=TIMEOUT) as src:
        assert src.read([B(0, 100)]) == [data[:100]]
        with pytest.raises(SourceChangedError, match="412"):
            src.read([B(1000, 100)])
    assert served.logged("changing-strict")[1]["if-match"] == src.identity


def test_async_file_changed_mid_read(served):
    data = sample(20_000)
    name = served.put(data, v2=sample(20_000, seed=9))

    async def main():
        async with AsyncHttpSource(served.url("changing", name), timeout=TIMEOUT) as src:
            assert await src.read([B(0, 100)]) == [data[:100]]
            with pytest.raises(SourceChangedError):
                await src.read([B(1000, 100), B(15_000, 100)])

    run_async(main())


# --------------------------------------------------------------------------- unavailable


@pytest.mark.parametrize("code", [403, 404, 410, 500, 503])
def test_error_statuses_are_unavailable(served, code):
    url = served.url("status", str(code))
    with HttpSource(url, timeout=TIMEOUT) as src:
        with pytest.raises(SourceUnavailableError) as info:
            src.read([B(0, 10)])
    assert str(code) in str(info.value) and url in str(info.value)


def test_missing_file_404(served):
    url = served.url("files", "does-not-exist.bin")
    with HttpSource(url, timeout=TIMEOUT) as src:
        with pytest.raises(SourceUnavailableError, match="404") as info:
            src.read([B(0, 10)])
    assert url in str(info.value)

    async def main():
        async with AsyncHttpSource(url, timeout=TIMEOUT) as asrc:
            with pytest.raises(SourceUnavailableError, match="404"):
                await asrc.read([B(0, 10), B(100, 10)])

    run_async(main())


def test_connection_refused():
    sock = unused_port()  # bound, not listening: connections are refused
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x.bin"
        with HttpSource(url, timeout=TIMEOUT) as src:
            with pytest.raises(SourceUnavailableError, match=r"127\.0\.0\.1"):
                src.read([B(0, 10)])

        async def main():
            async with AsyncHttpSource(url, timeout=TIMEOUT) as asrc:
                with pytest.raises(SourceUnavailableError):
                    await asrc.read([B(0, 10), B(1000, 10)])

        run_async(main())
    finally:
        sock.close()


def test_timeout_is_unavailable(served):
    url = served.url("slow", served.put(sample(100)))
    with HttpSource(url, timeout=0.05) as src:
        with pytest.raises(SourceUnavailableError, match="timed out"):
            src.read([B(0, 10)])


def test_message_hides_query_and_credentials(served):
    url = served.base_url.replace("http://", "http://user:pw@") + "/status/404?sig=SECRET"
    with HttpSource(url, timeout=TIMEOUT) as src:
        with pytest.raises(SourceUnavailableError) as info:
            src.read([B(0, 10)])
    assert "SECRET" not in str(info.value) and "pw" not in str(info.value)
    assert "/status/404" in str(info.value)


# --------------------------------------------------------------------------- broken servers


@pytest.mark.parametrize(
    "kind", ["shifted", "star", "long", "short", "badlength", "multipart", "gzip"]
)
def test_malformed_partial_responses_are_storage_errors(served, kind):
    data = sample(10_000)
    url = served.url(f"bogus/{kind}", served.put(data))
    with HttpSource(url, timeout=TIMEOUT) as src:
        with pytest.raises(StorageError) as info:
            src.read([B(100, 200)])
    assert type(info.value) is StorageError, repr(info.value)
    if kind == "long":  # read with a bound: at most one chunk past the end
        assert src.stats.bytes_read <= 200 + 1024


def test_async_body_longer_than_asked_is_an_error(served):
    url = served.url("bogus/long", served.put(sample(10_000)))

    async def main():
        async with AsyncHttpSource(url, timeout=TIMEOUT) as src:
            with pytest.raises(StorageError, match="exceeds"):
                await src.read([B(100, 200)])

    run_async(main())


# --------------------------------------------------------------------------- concurrency


FAR_APART = [B(0, 10), B(20_000, 10), B(40_000, 10), B(60_000, 10), B(80_000, 10)]


def test_async_batch_runs_concurrently(served):
    data = sample(100_000)
    url = served.url("slow", served.put(data))

    async def main():
        async with AsyncHttpSource(url, timeout=TIMEOUT) as src:
            started = time.monotonic()
            got = await src.read(FAR_APART)
            elapsed = time.monotonic() - started
            assert got == [data[r.offset : r.end] for r in FAR_APART]
            assert src.stats.requests == 5
            return elapsed

    run_async(main())
    # Each request is held 0.2 s by the server: several in flight at once proves the batch
    # ran concurrently (how many overlap depends on scheduling: no exact count or timing).
    assert served.state.max_inflight >= 2, served.state.max_inflight


def test_async_concurrency_is_bounded(served):
    url = served.url("slow", served.put(sample(100_000)))

    async def main():
        async with AsyncHttpSource(url, timeout=TIMEOUT, max_concurrency=2) as src:
            await src.read(FAR_APART)

    run_async(main())
    assert 1 <= served.state.max_inflight <= 2  # never more than the bound


def test_sync_batch_is_sequential(served):
    data = sample(100_000)
    with HttpSource(served.url("slow", served.put(data)), timeout=TIMEOUT) as src:
        assert src.read(FAR_APART[:3]) == [data[r.offset : r.end] for r in FAR_APART[:3]]
        assert src.stats.requests == 3
    assert served.state.max_inflight == 1


def test_async_failure_cancels_the_rest_of_the_batch():
    """One failing range ends the batch at once; the other requests are cancelled.

    (httpx.MockTransport: the timing has to be exact, which a real server cannot promise.)
    """
    started: list[str] = []
    cancelled: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        wanted = request.headers["range"]
        if wanted.startswith("bytes=0-"):
            await asyncio.sleep(0.05)
            return httpx.Response(404)
        started.append(wanted)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(wanted)
            raise
        raise AssertionError("not cancelled")

    async def main():
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with client, AsyncHttpSource("http://mock.test/a", client=client) as src:
            begin = time.monotonic()
            with pytest.raises(SourceUnavailableError, match="404"):
                await src.read(FAR_APART)
            return time.monotonic() - begin

    assert run_async(main()) < 2.0
    assert len(started) == 4
    assert sorted(cancelled) == sorted(started)


# --------------------------------------------------------------------------- API


def test_open_source_picks_http_sources(served):
    data = sample(1_000)
    url = served.url("files", served.put(data))
    for location in (url, url.replace("http://", "HTTP://", 1)):
        src = open_source(location)
        try:
            assert isinstance(src, HttpSource) and isinstance(src, RangeSource)
            assert src.read([B(1, 3)]) == [data[1:4]]
        finally:
            src.close()

    async def main():
        asrc = open_async_source(url)
        assert isinstance(asrc, AsyncHttpSource) and isinstance(asrc, AsyncRangeSource)
        try:
            assert await asrc.read([B(1, 3)]) == [data[1:4]]
        finally:
            await asrc.aclose()

    run_async(main())


def test_owned_client_is_closed_and_read_after_close_fails(served):
    src = HttpSource(served.url("files", served.put(b"abc")), timeout=TIMEOUT)
    client = src._client
    with src:
        src.read([B(0, 1)])
    assert client is not None and client.is_closed
    with pytest.raises(UsageError):
        src.read([B(0, 1)])


@pytest.mark.parametrize("url", ["ftp://example.org/x", "not a url", "http://"])
def test_invalid_urls_are_usage_errors(url):
    with pytest.raises(UsageError):
        HttpSource(url)


def test_invalid_max_concurrency():
    with pytest.raises(UsageError):
        AsyncHttpSource("http://127.0.0.1/x", max_concurrency=0)


# --------------------------------------------------------------------------- edge cases (mocked)


def _mock_source(handler) -> HttpSource:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HttpSource("http://mock.test/a", client=client)


def _partial(request: httpx.Request, data: bytes, **headers: str) -> httpx.Response:
    first, last = map(int, request.headers["range"][6:].split("-"))
    last = min(last, len(data) - 1)
    return httpx.Response(
        206,
        content=data[first : last + 1],
        headers={"content-range": f"bytes {first}-{last}/{len(data)}", **headers},
    )


def test_weak_etag_is_compared_but_not_sent_as_if_match():
    data = sample(1000)
    seen: list[httpx.Request] = []
    etags = iter(['W/"1"', 'W/"1"', 'W/"2"'])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _partial(request, data, etag=next(etags))

    with _mock_source(handler) as src:
        src.read([B(0, 10)])
        src.read([B(10, 10)])
        with pytest.raises(SourceChangedError, match="ETag"):
            src.read([B(20, 10)])
    assert all("if-match" not in r.headers for r in seen)


def test_last_modified_is_the_fallback_validator():
    data = sample(1000)
    stamps = iter(
        [
            "Mon, 01 Jan 2024 00:00:00 GMT",
            "Mon, 01 Jan 2024 00:00:00 GMT",
            "Tue, 02 Jan 2024 00:00:00 GMT",
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return _partial(request, data, **{"last-modified": next(stamps)})

    with _mock_source(handler) as src:
        src.read([B(0, 10)])
        src.read([B(10, 10)])
        with pytest.raises(SourceChangedError, match="Last-Modified"):
            src.read([B(20, 10)])


def test_etag_disappearing_counts_as_a_change():
    data = sample(1000)
    etags = iter(['"a"', None])

    def handler(request: httpx.Request) -> httpx.Response:
        etag = next(etags)
        return _partial(request, data, **({"etag": etag} if etag else {}))

    with _mock_source(handler) as src:
        src.read([B(0, 10)])
        with pytest.raises(SourceChangedError):
            src.read([B(10, 10)])


def test_416_inside_the_known_size_means_the_resource_shrank():
    data = sample(1000)
    answers = iter(["206", "416"])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == "206":
            return _partial(request, data, etag='"a"')
        return httpx.Response(416)

    with _mock_source(handler) as src:
        src.read([B(0, 10)])
        with pytest.raises(SourceChangedError):
            src.read([B(500, 10)])


def test_416_with_another_total_is_a_change():
    data = sample(1000)
    answers = iter(["206", "416"])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == "206":
            return _partial(request, data, etag='"a"')
        return httpx.Response(416, headers={"content-range": "bytes */400"})

    with _mock_source(handler) as src:
        src.read([B(0, 10)])
        with pytest.raises(SourceChangedError, match="size"):
            src.read([B(500, 10)])


def test_no_size_anywhere_is_a_storage_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(416)

    with _mock_source(handler) as src, pytest.raises(StorageError, match="size"):
        src.read([B(0, 10)])
    assert src.stats.requests == 2  # the read, then the size probe


@pytest.mark.parametrize("status", [204, 304])
def test_unexpected_status_is_a_storage_error(status):
    with _mock_source(lambda request: httpx.Response(status)) as src:
        with pytest.raises(StorageError, match=str(status)) as info:
            src.read([B(0, 10)])
    assert type(info.value) is StorageError


def test_read_timeout_in_the_body_is_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow body", request=request)

    with _mock_source(handler) as src, pytest.raises(SourceUnavailableError, match="timed out"):
        src.read([B(0, 10)])
