"""HTTP range sources over httpx: one closed ``Range: bytes=a-b`` per request.

The rules (what to ask, how to judge the answer, which error for what) are
:class:`~lockbox.sources.httprules.HttpRangeRules`, shared with the browser sources;
this module only sends the requests and reads the bodies: streamed, and stopped as soon
as a body runs past the announced length.

This module imports httpx; ``lockbox.sources`` imports it lazily.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import httpx

from ..errors import StorageError, UsageError
from ..ranges import ByteRange
from .base import AsyncSourceBase, SyncSourceBase, closed_error
from .httprules import HttpRangeRules, HttpSourceBase

__all__ = ["HttpSource", "AsyncHttpSource"]


def _parse(
    url: str, headers: Mapping[str, str] | None, max_concurrency: int
) -> tuple[httpx.URL, HttpRangeRules]:
    """httpx's URL (what is requested) and the rules for it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from exc
    # httpx sends the URL's credentials itself (Basic auth): the rules get the URL without.
    return parsed, HttpRangeRules(str(parsed.copy_with(userinfo=b"")), headers, max_concurrency)


def _transport_error(rules: HttpRangeRules, exc: httpx.HTTPError) -> StorageError:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TransportError):
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return rules.error(f" {kind}: {detail}".rstrip(": "))
    return rules.error(f" failed: {detail}", StorageError)


def _check(rules: HttpRangeRules, resp: httpx.Response, ask: ByteRange) -> int | None:
    return rules.check_response(resp.status_code, resp.headers.get, ask, resp.reason_phrase)


class HttpSource(HttpSourceBase, SyncSourceBase):
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
        self._url, self._rules = _parse(url, headers, max_concurrency)
        self.stats = self._rules.stats
        self._owns_client = client is None
        self._client: httpx.Client | None = (
            client if client is not None else httpx.Client(timeout=timeout)
        )

    @property
    def url(self) -> str:
        return str(self._url)

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range: one request per coalesced range, in order."""
        client = self._client
        if client is None:
            raise closed_error(self, self._rules.shown)
        return self._read_batch(ranges, lambda merged: self._fetch(client, merged))

    def _fetch(self, client: httpx.Client, merged: ByteRange) -> bytes:
        rules = self._rules
        ask = rules.plan(merged)
        if ask is None:
            return b""
        rules.stats.requests += 1
        try:
            with client.stream(
                "GET", self._url, headers=rules.request_headers(ask), follow_redirects=True
            ) as resp:
                expected = _check(rules, resp, ask)
                if expected is None:
                    return b""
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    rules.stats.bytes_read += len(chunk)
                    rules.check_received(ask, len(body), expected)
                rules.check_body(ask, len(body), expected)
                return bytes(body)
        except httpx.HTTPError as exc:
            raise _transport_error(rules, exc) from exc

    def close(self) -> None:
        """Close the client if this source created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()


class AsyncHttpSource(HttpSourceBase, AsyncSourceBase):
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
        self._url, self._rules = _parse(url, headers, max_concurrency)
        self.stats = self._rules.stats
        self._owns_client = client is None
        self._client: httpx.AsyncClient | None = (
            client if client is not None else httpx.AsyncClient(timeout=timeout)
        )
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def url(self) -> str:
        return str(self._url)

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; the coalesced ranges are fetched concurrently."""
        client = self._client
        if client is None:
            raise closed_error(self, self._rules.shown)
        return await self._aread_batch(ranges, lambda merged: self._fetch(client, merged))

    async def _fetch(self, client: httpx.AsyncClient, merged: ByteRange) -> bytes:
        rules = self._rules
        async with self._slots:
            ask = rules.plan(merged)  # planned late: an earlier answer may have given the size
            if ask is None:
                return b""
            rules.stats.requests += 1
            try:
                async with client.stream(
                    "GET", self._url, headers=rules.request_headers(ask), follow_redirects=True
                ) as resp:
                    expected = _check(rules, resp, ask)
                    if expected is None:
                        return b""
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        rules.stats.bytes_read += len(chunk)
                        rules.check_received(ask, len(body), expected)
                    rules.check_body(ask, len(body), expected)
                    return bytes(body)
            except httpx.HTTPError as exc:
                raise _transport_error(rules, exc) from exc

    async def aclose(self) -> None:
        """Close the client if this source created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
