"""Inside Pyodide: the HTTP rules of FetchRangeSource against the real test server.

The same cases as tests/sources/test_http.py checks for the CPython sources, where a
browser can see them: request shape, ETag pinning and If-Match, 200 instead of 206
without downloading the body, changes mid-read, error statuses, malformed answers,
concurrency and timeouts. Run by tests/pyodide/harness.py (Node); the server is
tests/sources/servers.py plus ``/_state`` (its counters as JSON).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from typing import Any

import js  # type: ignore[import-not-found]
import pytest

from lockbox.errors import (
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from lockbox.platform import async_url_source
from lockbox.ranges import ByteRange as B
from lockbox.sources import AsyncRangeSource, open_async_source
from lockbox.sources.browser import FetchRangeSource
from sources.conformance import run_async, sample

SERVER = os.environ.get("LOCKBOX_TEST_SERVER", "").rstrip("/")
SERVED_DIR = os.environ.get("LOCKBOX_TEST_SERVED_DIR", "")
REFUSED_PORT = os.environ.get("LOCKBOX_TEST_REFUSED_PORT", "")
TIMEOUT = 10.0
BIG = 32 * 1024 * 1024
FAR_APART = [B(0, 10), B(20_000, 10), B(40_000, 10), B(60_000, 10), B(80_000, 10)]
_names = itertools.count()

pytestmark = pytest.mark.skipif(not (SERVER and SERVED_DIR),
                                reason="needs LOCKBOX_TEST_SERVER and LOCKBOX_TEST_SERVED_DIR")


def put(data: bytes, *, v2: bytes | None = None) -> str:
    name = f"s{next(_names)}.bin"
    path = os.path.join(SERVED_DIR, name)
    with open(path, "wb") as f:
        f.write(data)
    if v2 is not None:
        with open(path + ".v2", "wb") as f:
            f.write(v2)
        st = os.stat(path)  # another mtime, hence another ETag
        os.utime(path + ".v2", (st.st_atime + 5, st.st_mtime + 5))
    return name


async def _state(reset: bool = False) -> dict[str, Any]:
    resp = await js.fetch(f"{SERVER}/_state" + ("?reset=1" if reset else ""))
    result: dict[str, Any] = json.loads(await resp.text())
    return result


def state(reset: bool = False) -> dict[str, Any]:
    return run_async(_state(reset))  # type: ignore[no-any-return]


def logged(route: str) -> list[dict[str, str]]:
    return [h for path, h in state()["requests"] if path.startswith(f"/{route}/")]


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    state(reset=True)


def read(url: str, ranges: list[B], **kw: Any) -> tuple[list[bytes], FetchRangeSource]:
    async def main() -> tuple[list[bytes], FetchRangeSource]:
        async with FetchRangeSource(url, **kw) as src:
            return await src.read(ranges), src

    return run_async(main())  # type: ignore[no-any-return]


def fails(url: str, ranges: list[B], error: type[BaseException], match: str | None = None,
          **kw: Any) -> tuple[BaseException, FetchRangeSource]:
    async def main() -> tuple[BaseException, FetchRangeSource]:
        async with FetchRangeSource(url, **kw) as src:
            with pytest.raises(error, match=match) as info:
                await src.read(ranges)
            return info.value, src

    return run_async(main())  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- requests


def test_platform_routes_urls_to_fetch() -> None:
    url = f"{SERVER}/files/{put(b'abcdef')}"
    for src in (open_async_source(url), open_async_source(url.replace("http", "HTTP", 1)),
                async_url_source(url)):
        assert isinstance(src, FetchRangeSource) and isinstance(src, AsyncRangeSource)


def test_every_request_is_one_closed_range() -> None:
    data = sample(10_000)
    got, src = read(f"{SERVER}/files/{put(data)}", [B(100, 10), B(110, 20), B(5000, 30)])
    assert got == [data[100:110], data[110:130], data[5000:5030]]
    assert (src.stats.requests, src.stats.bytes_read) == (2, 60)
    ranges = sorted(h["range"] for h in logged("files"))
    assert ranges == ["bytes=100-129", "bytes=5000-5029"]
    assert all(re.fullmatch(r"bytes=\d+-\d+", r) for r in ranges)


def test_known_size_clamps_and_skips() -> None:
    data = sample(10_000)
    url = f"{SERVER}/files/{put(data)}"

    async def main() -> None:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            await src.read([B(0, 10)])
            assert await src.read([B(9_990, 100), B(20_000, 10)]) == [data[9_990:], b""]
            assert (src.stats.requests, src.stats.bytes_read) == (2, 20)

    run_async(main())
    assert [h["range"] for h in logged("files")] == ["bytes=0-9", "bytes=9990-9999"]


def test_range_past_the_end_uses_the_416_size() -> None:
    got, src = read(f"{SERVER}/files/{put(sample(500))}", [B(600, 10)])
    assert got == [b""] and src.size == 500
    assert (src.stats.requests, src.stats.bytes_read) == (1, 0)


def test_etag_pinned_and_sent_as_if_match() -> None:
    url = f"{SERVER}/files/{put(sample(5_000))}"

    async def main() -> str | None:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            await src.read([B(0, 10)])
            await src.read([B(100, 10)])
            return src.identity

    identity = run_async(main())
    assert identity is not None and identity.startswith('"')
    first, second = logged("files")
    assert "if-match" not in first
    assert second["if-match"] == identity


def test_no_etag_means_last_modified_identity_and_no_if_match() -> None:
    url = f"{SERVER}/noetag/{put(sample(5_000))}"

    async def main() -> str | None:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            await src.read([B(0, 10)])
            await src.read([B(100, 10)])
            return src.identity

    identity = run_async(main())
    assert identity is not None and identity.endswith("|5000")
    assert all("if-match" not in h for h in logged("noetag"))


def test_custom_headers_cannot_override_range() -> None:
    data = sample(1_000)
    url = f"{SERVER}/auth/{put(data)}"
    fails(url, [B(0, 10)], SourceUnavailableError, "403")
    headers = {"Authorization": "Bearer let-me-in", "range": "bytes=-5"}
    got, _ = read(url, [B(0, 10)], headers=headers)
    assert got == [data[:10]]
    assert logged("auth")[-1]["range"] == "bytes=0-9"


def test_credentials_in_the_url_become_basic_auth_and_stay_hidden() -> None:
    url = SERVER.replace("http://", "http://user:pw@") + "/status/404?sig=SECRET"
    error, _ = fails(url, [B(0, 10)], SourceUnavailableError, "404")
    assert "SECRET" not in str(error) and "pw" not in str(error)
    assert "/status/404" in str(error)
    assert logged("status")[-1]["authorization"] == "Basic dXNlcjpwdw=="


# --------------------------------------------------------------------------- 200 instead of 206


def _settled(timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        now = int(state()["norange_sent"])
        if now == last:
            return now
        last = now
        time.sleep(0.2)
    raise AssertionError("the server kept sending")


@pytest.fixture(scope="module")
def big_name() -> str:
    return put(os.urandom(BIG))


def test_200_instead_of_206_raises_without_downloading(big_name: str) -> None:
    _, src = fails(f"{SERVER}/norange/{big_name}", [B(0, 100), B(10_000_000, 100)],
                   RangeNotSupportedError, "200")
    assert src.stats.bytes_read == 0
    sent = _settled()
    assert sent < BIG // 2, f"server sent {sent} of {BIG} bytes"


# --------------------------------------------------------------------------- changes


@pytest.mark.parametrize(("v2_size", "message"), [(20_000, "ETag"), (25_000, "size")])
def test_file_changed_mid_read(v2_size: int, message: str) -> None:
    data = sample(20_000)
    url = f"{SERVER}/changing/{put(data, v2=sample(v2_size, seed=9))}"

    async def main() -> None:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            assert await src.read([B(0, 100)]) == [data[:100]]
            with pytest.raises(SourceChangedError, match=message):
                await src.read([B(1000, 100), B(15_000, 100)])

    run_async(main())


def test_file_changed_mid_read_412_with_if_match() -> None:
    data = sample(20_000)
    url = f"{SERVER}/changing-strict/{put(data, v2=sample(20_000, seed=9))}"

    async def main() -> None:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            assert await src.read([B(0, 100)]) == [data[:100]]
            with pytest.raises(SourceChangedError, match="412"):
                await src.read([B(1000, 100)])

    run_async(main())


# --------------------------------------------------------------------------- unavailable


@pytest.mark.parametrize("code", [403, 404, 410, 500, 503])
def test_error_statuses_are_unavailable(code: int) -> None:
    url = f"{SERVER}/status/{code}"
    error, _ = fails(url, [B(0, 10), B(100, 10)], SourceUnavailableError)
    assert str(code) in str(error) and url in str(error)


@pytest.mark.skipif(not REFUSED_PORT, reason="needs LOCKBOX_TEST_REFUSED_PORT")
def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{REFUSED_PORT}/x.bin"
    error, _ = fails(url, [B(0, 10), B(1000, 10)], SourceUnavailableError)
    assert "127.0.0.1" in str(error)


def test_timeout_is_unavailable() -> None:
    url = f"{SERVER}/slow/{put(sample(100))}"
    fails(url, [B(0, 10)], SourceUnavailableError, "timed out", timeout=0.05)


def test_invalid_urls_are_usage_errors() -> None:
    for url in ("ftp://example.org/x", "not a url", "http://", "http://host:99999/x"):
        with pytest.raises(UsageError):
            FetchRangeSource(url)
    with pytest.raises(UsageError):
        FetchRangeSource(f"{SERVER}/x", max_concurrency=0)


def test_read_after_close_is_a_usage_error() -> None:
    url = f"{SERVER}/files/{put(b'abc')}"

    async def main() -> None:
        src = FetchRangeSource(url)
        await src.aclose()
        await src.aclose()
        with pytest.raises(UsageError):
            await src.read([B(0, 1)])

    run_async(main())


# --------------------------------------------------------------------------- broken servers


@pytest.mark.parametrize(
    "kind", ["shifted", "star", "long", "short", "badlength", "multipart", "gzip"]
)
def test_malformed_partial_responses_are_storage_errors(kind: str) -> None:
    url = f"{SERVER}/bogus/{kind}/{put(sample(10_000))}"
    error, src = fails(url, [B(100, 200)], StorageError)
    assert type(error) is StorageError, repr(error)
    if kind == "long":  # read with a bound
        assert "exceeds" in str(error)
        assert src.stats.bytes_read <= 200 + 1024
    if kind == "multipart":
        assert "Access-Control-Expose-Headers" in str(error)


# --------------------------------------------------------------------------- concurrency


def test_batch_runs_concurrently() -> None:
    data = sample(100_000)
    url = f"{SERVER}/slow/{put(data)}"

    async def main() -> float:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            started = time.monotonic()
            got = await src.read(FAR_APART)
            elapsed = time.monotonic() - started
            assert got == [data[r.offset : r.end] for r in FAR_APART]
            assert src.stats.requests == 5
            return elapsed

    run_async(main())
    # The server holds each request 0.2 s: several in flight at once proves the batch ran
    # concurrently (how many overlap depends on scheduling, so no exact count or timing).
    assert state()["max_inflight"] >= 2


def test_concurrency_is_bounded() -> None:
    url = f"{SERVER}/slow/{put(sample(100_000))}"
    read(url, FAR_APART, max_concurrency=2)
    assert 1 <= state()["max_inflight"] <= 2


def test_failure_cancels_the_rest_of_the_batch() -> None:
    """One failing range ends the batch at once (the others are aborted, not awaited)."""
    url = f"{SERVER}/slow/{put(sample(100_000))}"

    async def main() -> float:
        async with FetchRangeSource(url, timeout=TIMEOUT) as src:
            src._rules.etag = '"stale"'  # every answer now "changed": the first one fails
            src._rules.pinned = True
            started = time.monotonic()
            with pytest.raises(SourceChangedError):
                await src.read(FAR_APART)
            return time.monotonic() - started

    assert run_async(main()) < 1.0


# --------------------------------------------------------------------------- sync XHR

needs_xhr = pytest.mark.skipif(getattr(js, "XMLHttpRequest", None) is None,
                               reason="no XMLHttpRequest here (a browser worker, or the "
                                      "harness's node-sync-shims.mjs, provides it)")


@needs_xhr
def test_xhr_platform_routing_and_rules(big_name: str) -> None:
    from lockbox.platform import url_source
    from lockbox.sources import open_source
    from lockbox.sources.browser import XhrRangeSource

    data = sample(20_000)
    url = f"{SERVER}/files/{put(data)}"
    for src in (open_source(url), url_source(url)):
        assert isinstance(src, XhrRangeSource)
        with src:
            assert src.read([B(5, 10), B(15, 5), B(19_990, 50)]) == [data[5:15], data[15:20],
                                                                       data[19_990:]]
            assert (src.stats.requests, src.size) == (2, 20_000)
            assert src.identity is not None and src.identity.startswith('"')
    state(reset=True)
    with XhrRangeSource(url) as src:
        src.read([B(0, 10)])
        src.read([B(100, 10)])
    first, second = logged("files")
    assert [first["range"], second["range"]] == ["bytes=0-9", "bytes=100-109"]
    assert "if-match" not in first and second["if-match"] == src.identity

    with XhrRangeSource(f"{SERVER}/norange/{big_name}") as src:
        with pytest.raises(RangeNotSupportedError, match="200"):
            src.read([B(0, 100)])
        assert src.stats.bytes_read == 0  # dropped (a sync XHR has received it already)

    changing = f"{SERVER}/changing/{put(data, v2=sample(20_000, seed=9))}"
    with XhrRangeSource(changing) as src:
        assert src.read([B(0, 100)]) == [data[:100]]
        with pytest.raises(SourceChangedError, match="ETag"):
            src.read([B(1000, 100)])

    with XhrRangeSource(f"{SERVER}/status/404") as src:
        with pytest.raises(SourceUnavailableError, match="404"):
            src.read([B(0, 10)])
    with XhrRangeSource(f"{SERVER}/slow/{put(sample(100))}", timeout=0.05) as src:
        with pytest.raises(SourceUnavailableError, match="timed out"):
            src.read([B(0, 10)])
    if REFUSED_PORT:
        with XhrRangeSource(f"http://127.0.0.1:{REFUSED_PORT}/x.bin") as src:
            with pytest.raises(SourceUnavailableError, match=r"127\.0\.0\.1"):
                src.read([B(0, 10)])
    with XhrRangeSource(f"{SERVER}/bogus/shifted/{put(data)}") as src:
        with pytest.raises(StorageError) as info:
            src.read([B(100, 200)])
        assert type(info.value) is StorageError
    src.close()
    with pytest.raises(UsageError):
        src.read([B(0, 1)])
