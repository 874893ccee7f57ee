"""HTTP range sources (httpx): one closed ``Range: bytes=a-b`` per request.

Rules every request follows:

* only single closed ranges (never suffix ranges, never multi-range); the
  ranges of one batch are coalesced first and cut back afterwards;
* ``Accept-Encoding: identity`` so byte offsets mean file offsets;
* the total size comes from ``Content-Range: bytes a-b/N`` (or
  ``bytes */N`` of a 416); the first 206 pins the ETag (or, without one,
  Last-Modified) and the size, later answers must match
  (:class:`SourceChangedError` otherwise) and carry ``If-Match`` once a strong
  ETag is pinned (412 -> :class:`SourceChangedError`);
* a 200 answer means the server ignored ``Range``: the body is not read
  (:class:`RangeNotSupportedError`); a 416 means the range starts at or after
  the end, which reads as ``b""``;
* bodies are read with a bound: exactly the announced length or
  :class:`StorageError`.

This module imports httpx; ``lockbox.sources`` imports it lazily.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from types import TracebackType

import httpx

from ..errors import (
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from ..ranges import ByteRange, coalesce, split_coalesced
from .base import SourceStats

__all__ = ["HttpSource", "AsyncHttpSource"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
# Headers this module owns; caller-supplied values for them are dropped.
_OWN_HEADERS = frozenset({"range", "if-match", "if-range", "accept-encoding"})
_PROBE = ByteRange(0, 1)


def _redact(url: httpx.URL) -> str:
    """The URL for messages: no credentials, no query (it may hold a signature)."""
    shown = url.copy_with(userinfo=b"", query=None, fragment=None)
    return str(shown) + ("?…" if url.query else "")


class _HttpCore:
    """State and checks shared by the sync and async sources (no I/O here)."""

    def __init__(self, url: str, headers: Mapping[str, str] | None, max_concurrency: int) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise UsageError(f"invalid URL {url!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise UsageError(f"not an http(s) URL: {_redact(parsed)}")
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self.url = parsed
        self.shown = _redact(parsed)
        self.headers = {k: v for k, v in (headers or {}).items() if k.lower() not in _OWN_HEADERS}
        self.stats = SourceStats()
        self.size: int | None = None
        self.pinned = False
        self.etag: str | None = None
        self.last_modified: str | None = None

    @property
    def identity(self) -> str | None:
        if not self.pinned:
            return None
        if self.etag is not None:
            return self.etag
        return f"{self.last_modified}|{self.size}"

    def plan(self, merged: ByteRange) -> ByteRange | None:
        """The range to ask for (clamped to a known size), or None if nothing exists."""
        if self.size is None:
            return merged
        end = min(merged.end, self.size)
        if merged.offset >= end:
            return None
        return ByteRange(merged.offset, end - merged.offset)

    def request_headers(self, ask: ByteRange) -> dict[str, str]:
        headers = dict(self.headers)
        headers["Range"] = ask.header_value()
        headers["Accept-Encoding"] = "identity"
        if self.etag is not None and not self.etag.startswith("W/"):
            headers["If-Match"] = self.etag
        return headers

    def check_response(self, resp: httpx.Response, ask: ByteRange) -> int | None:
        """Check status and headers; return the body length to read, or None for ``b""``."""
        status = resp.status_code
        if status == 206:
            return self._check_partial(resp, ask)
        if status == 200:
            raise RangeNotSupportedError(
                f"GET {self.shown}: the server answered Range {ask.header_value()} "
                "with 200 and the whole body (range requests not supported)"
            )
        if status == 416:
            self._check_unsatisfiable(resp, ask)
            return None
        if status == 412:
            raise SourceChangedError(
                f"GET {self.shown}: HTTP 412, the ETag {self.etag} no longer matches"
            )
        if 400 <= status < 600:
            raise SourceUnavailableError(f"GET {self.shown}: HTTP {status} {resp.reason_phrase}")
        raise StorageError(f"GET {self.shown}: unexpected HTTP {status} to a Range request")

    def _learn_size(self, total: int) -> None:
        if self.size is None:
            self.size = total
        elif total != self.size:
            raise SourceChangedError(
                f"GET {self.shown}: the size changed from {self.size} to {total} bytes"
            )

    def _check_partial(self, resp: httpx.Response, ask: ByteRange) -> int:
        value = resp.headers.get("content-range")
        match = _CONTENT_RANGE.match(value) if value is not None else None
        if match is None:
            raise StorageError(
                f"GET {self.shown}: 206 with unusable Content-Range {value!r} "
                f"(asked {ask.header_value()})"
            )
        first, last, total_text = match.groups()
        if total_text == "*":
            raise StorageError(f"GET {self.shown}: the server does not report the total size")
        self._learn_size(int(total_text))
        self._check_validators(resp)
        start, end, total = int(first), int(last) + 1, int(total_text)
        if start != ask.offset or end != min(ask.end, total) or start >= end:
            raise StorageError(
                f"GET {self.shown}: asked {ask.header_value()}, got Content-Range {value!r}"
            )
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise StorageError(f"GET {self.shown}: 206 body has Content-Encoding {encoding!r}")
        length = resp.headers.get("content-length")
        if length is not None and length.strip() != str(end - start):
            raise StorageError(
                f"GET {self.shown}: Content-Length {length} does not match Content-Range {value!r}"
            )
        return end - start

    def _check_validators(self, resp: httpx.Response) -> None:
        etag = resp.headers.get("etag")
        last_modified = resp.headers.get("last-modified")
        if not self.pinned:
            self.pinned = True
            self.etag = etag
            self.last_modified = last_modified
        elif self.etag is not None:
            if etag != self.etag:
                raise SourceChangedError(
                    f"GET {self.shown}: the ETag changed from {self.etag} to {etag}"
                )
        elif self.last_modified is not None and last_modified != self.last_modified:
            raise SourceChangedError(
                f"GET {self.shown}: Last-Modified changed from {self.last_modified} "
                f"to {last_modified}"
            )

    def _check_unsatisfiable(self, resp: httpx.Response, ask: ByteRange) -> None:
        value = resp.headers.get("content-range")
        match = _UNSATISFIED_RANGE.match(value) if value is not None else None
        if match is not None:
            self._learn_size(int(match.group(1)))
        if self.size is not None and ask.offset < self.size:
            if match is None:  # we knew the bytes existed: the resource shrank
                raise SourceChangedError(
                    f"GET {self.shown}: 416 for {ask.header_value()} inside the "
                    f"known size {self.size}"
                )
            raise StorageError(
                f"GET {self.shown}: 416 for {ask.header_value()} although the size is {self.size}"
            )

    def body_too_long(self, ask: ByteRange, expected: int) -> StorageError:
        return StorageError(
            f"GET {self.shown}: the body for {ask.header_value()} exceeds {expected} bytes"
        )

    def check_body(self, ask: ByteRange, body: bytes | bytearray, expected: int) -> None:
        if len(body) != expected:
            raise StorageError(
                f"GET {self.shown}: {len(body)} body bytes for {ask.header_value()}, "
                f"expected {expected}"
            )

    def transport_error(self, exc: httpx.HTTPError) -> StorageError:
        if isinstance(exc, httpx.TransportError):
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            return SourceUnavailableError(
                f"GET {self.shown} {kind}: {type(exc).__name__}: {exc}".rstrip(": ")
            )
        return StorageError(f"GET {self.shown} failed: {type(exc).__name__}: {exc}")

    def no_size(self) -> StorageError:
        return StorageError(f"GET {self.shown}: the server did not report the size")


class HttpSource:
    """A :class:`RangeSource` over an http(s) URL (sequential requests).

    ``client``: an ``httpx.Client`` to use (not closed by this source);
    otherwise one is created with ``timeout`` and closed by :meth:`close`.
    ``headers`` are sent with every request (e.g. ``Authorization``).
    ``max_concurrency`` is accepted for symmetry; sync reads are sequential.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 6,
    ) -> None:
        self._core = _HttpCore(url, headers, max_concurrency)
        self.stats = self._core.stats
        self._owns_client = client is None
        self._client: httpx.Client | None = (
            client if client is not None else httpx.Client(timeout=timeout)
        )

    @property
    def url(self) -> str:
        return str(self._core.url)

    @property
    def size(self) -> int | None:
        """Total size, from the first answer's Content-Range (None before any read)."""
        return self._core.size

    @property
    def identity(self) -> str | None:
        """The pinned ETag (or Last-Modified and size); None before any read."""
        return self._core.identity

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range: one request per coalesced range, in order."""
        client = self._client
        if client is None:
            raise UsageError(f"read from a closed HttpSource ({self._core.shown})")
        merged = coalesce(ranges)
        blobs = [self._fetch(client, m) for m in merged]
        if self._core.size is None:
            self._fetch(client, _PROBE)
            if self._core.size is None:
                raise self._core.no_size()
        return split_coalesced(ranges, merged, blobs)

    def _fetch(self, client: httpx.Client, merged: ByteRange) -> bytes:
        core = self._core
        ask = core.plan(merged)
        if ask is None:
            return b""
        core.stats.requests += 1
        try:
            with client.stream(
                "GET", core.url, headers=core.request_headers(ask), follow_redirects=True
            ) as resp:
                expected = core.check_response(resp, ask)
                if expected is None:
                    return b""
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    core.stats.bytes_read += len(chunk)
                    if len(body) > expected:
                        raise core.body_too_long(ask, expected)
                core.check_body(ask, body, expected)
                return bytes(body)
        except httpx.HTTPError as exc:
            raise core.transport_error(exc) from exc

    def close(self) -> None:
        """Close the client if this source created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpSource({self._core.shown!r})"


class AsyncHttpSource:
    """An :class:`AsyncRangeSource` over an http(s) URL.

    The coalesced ranges of one batch are fetched concurrently, at most
    ``max_concurrency`` requests in flight per source. ``client``: an
    ``httpx.AsyncClient`` to use (not closed by this source); otherwise one is
    created with ``timeout`` and closed by :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 6,
    ) -> None:
        self._core = _HttpCore(url, headers, max_concurrency)
        self.stats = self._core.stats
        self._owns_client = client is None
        self._client: httpx.AsyncClient | None = (
            client if client is not None else httpx.AsyncClient(timeout=timeout)
        )
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def url(self) -> str:
        return str(self._core.url)

    @property
    def size(self) -> int | None:
        """Total size, from the first answer's Content-Range (None before any read)."""
        return self._core.size

    @property
    def identity(self) -> str | None:
        """The pinned ETag (or Last-Modified and size); None before any read."""
        return self._core.identity

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; the coalesced ranges are fetched concurrently."""
        client = self._client
        if client is None:
            raise UsageError(f"read from a closed AsyncHttpSource ({self._core.shown})")
        merged = coalesce(ranges)
        if len(merged) == 1:
            blobs = [await self._fetch(client, merged[0])]
        else:
            tasks = [asyncio.ensure_future(self._fetch(client, m)) for m in merged]
            try:
                blobs = list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        if self._core.size is None:
            await self._fetch(client, _PROBE)
            if self._core.size is None:
                raise self._core.no_size()
        return split_coalesced(ranges, merged, blobs)

    async def _fetch(self, client: httpx.AsyncClient, merged: ByteRange) -> bytes:
        core = self._core
        async with self._slots:
            ask = core.plan(merged)  # planned late: an earlier answer may have given the size
            if ask is None:
                return b""
            core.stats.requests += 1
            try:
                async with client.stream(
                    "GET", core.url, headers=core.request_headers(ask), follow_redirects=True
                ) as resp:
                    expected = core.check_response(resp, ask)
                    if expected is None:
                        return b""
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        core.stats.bytes_read += len(chunk)
                        if len(body) > expected:
                            raise core.body_too_long(ask, expected)
                    core.check_body(ask, body, expected)
                    return bytes(body)
            except httpx.HTTPError as exc:
                raise core.transport_error(exc) from exc

    async def aclose(self) -> None:
        """Close the client if this source created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    async def __aenter__(self) -> AsyncHttpSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncHttpSource({self._core.shown!r})"
