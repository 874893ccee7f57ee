"""HTTP range sources over httpx: one closed ``Range: bytes=a-b`` per request.

The rules (what to ask, how to judge the answer, which error for what) are
:class:`~lockbox.sources.httprules.HttpRangeRules`, shared with the browser sources;
this module only sends the requests and reads the bodies: streamed, and stopped as soon
as a body runs past the announced length.

This module imports httpx; ``lockbox.sources`` imports it lazily.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx

from ..errors import StorageError, UsageError
from ..ranges import ByteRange
from .base import AsyncSourceBase, SyncSourceBase, closed_error
from .httprules import BoundedBody, HttpRangeRules, HttpSourceBase

__all__ = ["HttpSource", "AsyncHttpSource"]

_Client = TypeVar("_Client", httpx.Client, httpx.AsyncClient)


class _HttpxSource(HttpSourceBase, Generic[_Client]):
    """What the sync and async httpx sources share: the URL, the rules, the client."""

    def __init__(
        self,
        url: str,
        client: _Client | None,
        new_client: Callable[[], _Client],
        headers: Mapping[str, str] | None,
        max_concurrency: int,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise UsageError(f"invalid URL {url!r}: {exc}") from exc
        self._url = parsed  # what is requested; httpx sends its credentials (Basic auth)
        self._rules = HttpRangeRules(str(parsed.copy_with(userinfo=b"")), headers,
                                     max_concurrency)
        self.stats = self._rules.stats
        self._owns_client = client is None
        self._client: _Client | None = client if client is not None else new_client()

    @property
    def url(self) -> str:
        return str(self._url)

    def _live_client(self) -> _Client:
        client = self._client
        if client is None:
            raise closed_error(self, self._rules.shown)
        return client

    def _stream(self, client: _Client, ask: ByteRange) -> Any:
        """The request for ``ask`` (a context manager, async for an ``AsyncClient``)."""
        return client.stream(
            "GET", self._url, headers=self._rules.request_headers(ask), follow_redirects=True
        )

    def _body(self, resp: httpx.Response, ask: ByteRange) -> BoundedBody | None:
        """The buffer for the body of the answer, or None if the answer is ``b""``."""
        rules = self._rules
        expected = rules.check_response(resp.status_code, resp.headers.get, ask,
                                        resp.reason_phrase)
        return None if expected is None else rules.body(ask, expected)

    def _failure(self, exc: httpx.HTTPError) -> StorageError:
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, httpx.TransportError):
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            return self._rules.error(f" {kind}: {detail}".rstrip(": "))
        return self._rules.error(f" failed: {detail}", StorageError)


class HttpSource(_HttpxSource[httpx.Client], SyncSourceBase):
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
        super().__init__(url, client, lambda: httpx.Client(timeout=timeout), headers,
                         max_concurrency)

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range: one request per coalesced range, in order."""
        client = self._live_client()
        return self._read_batch(ranges, lambda merged: self._fetch(client, merged))

    def _fetch(self, client: httpx.Client, merged: ByteRange) -> bytes:
        ask = self._rules.plan(merged)
        if ask is None:
            return b""
        try:
            with self._stream(client, ask) as resp:
                body = self._body(resp, ask)
                if body is None:
                    return b""
                for chunk in resp.iter_bytes():
                    body.feed(chunk)
                return body.finish()
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc

    def close(self) -> None:
        """Close the client if this source created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()


class AsyncHttpSource(_HttpxSource[httpx.AsyncClient], AsyncSourceBase):
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
        super().__init__(url, client, lambda: httpx.AsyncClient(timeout=timeout), headers,
                         max_concurrency)
        self._slots = asyncio.Semaphore(max_concurrency)

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; the coalesced ranges are fetched concurrently."""
        client = self._live_client()
        return await self._aread_batch(ranges, lambda merged: self._fetch(client, merged))

    async def _fetch(self, client: httpx.AsyncClient, merged: ByteRange) -> bytes:
        async with self._slots:
            ask = self._rules.plan(merged)  # planned late: an earlier answer may give the size
            if ask is None:
                return b""
            try:
                async with self._stream(client, ask) as resp:
                    body = self._body(resp, ask)
                    if body is None:
                        return b""
                    async for chunk in resp.aiter_bytes():
                        body.feed(chunk)
                    return body.finish()
            except httpx.HTTPError as exc:
                raise self._failure(exc) from exc

    async def aclose(self) -> None:
        """Close the client if this source created it (idempotent)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
