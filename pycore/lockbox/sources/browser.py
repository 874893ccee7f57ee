"""Range sources for the browser (Pyodide): HTTP by XHR or fetch, and local Blob/File objects.

* :class:`XhrRangeSource`: a sync :class:`RangeSource` over an http(s) URL by synchronous
  ``XMLHttpRequest`` (``open(..., false)``, ``responseType = "arraybuffer"``). Synchronous
  XHR with a binary response exists only in **Web Workers** (a page gets
  ``InvalidAccessError``); ``pyodide.http.pyxhr`` is not used because it decodes the body
  as text (not binary safe).
* :class:`FetchRangeSource`: an :class:`AsyncRangeSource` over an http(s) URL by ``fetch``;
  the coalesced ranges of one batch are requested concurrently.
* :class:`BlobRangeSource`: a sync source over a ``Blob``/``File`` (file picker, drag and
  drop) read by ``FileReaderSync`` on ``blob.slice(a, b)`` (workers only), so a local file
  is read in ranges and never loaded whole.
* :class:`AsyncBlobRangeSource`: the async twin, by ``await blob.slice(a, b).arrayBuffer()``.

The HTTP sources follow the rules of :mod:`lockbox.sources.httprules` (shared with the
CPython sources of :mod:`lockbox.sources.http`, with the same messages); what is particular
to the browser:

* ``Accept-Encoding: identity`` is asked for, but browsers ignore it (it is a forbidden
  header, and the Fetch standard adds ``identity`` itself to requests with a Range header);
  a 206 with a ``Content-Encoding`` other than identity is refused all the same;
* credentials in the URL are sent as a Basic ``Authorization`` header (``fetch`` refuses
  URLs with credentials);
* 200 instead of 206 -> :class:`RangeNotSupportedError`: the fetch source aborts the
  request without reading the body; a synchronous XHR cannot be stopped, the browser has
  received the body when ``send()`` returns (it is dropped, not counted in ``stats``);
* network and CORS failures, timeouts -> :class:`SourceUnavailableError`;
* bodies are read with a bound (fetch: streamed, stopped as soon as it runs past the
  announced length).

Cross-origin archives: the server must allow the ``Range`` request header and expose
``Content-Range`` (and ``ETag``) through ``Access-Control-Expose-Headers``; without that
a 206 looks as if it had no Content-Range, and the error says so.

This module needs Pyodide (``import js``); constructing a source elsewhere raises
:class:`BackendUnavailableError`. ``lockbox.platform`` picks these sources for URLs when
running in the browser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import (
    BackendUnavailableError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from ..ranges import ByteRange
from .base import (
    AsyncSourceBase,
    SourceStats,
    SyncSourceBase,
    clamp,
    closed_error,
    read_each,
    read_each_async,
)
from .httprules import HttpRangeRules, HttpSourceBase

try:
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]
except ImportError:  # CPython: importable (for docs and type checks), not constructible
    js = None
    JsException = None
    to_js = None

__all__ = ["XhrRangeSource", "FetchRangeSource", "BlobRangeSource", "AsyncBlobRangeSource"]

_CORS_HINT = (" (a cross-origin server must list Content-Range in "
              "Access-Control-Expose-Headers)")


def _require_pyodide(what: str) -> None:
    if js is None:
        raise BackendUnavailableError(f"{what} runs only inside Pyodide (a browser or Node)")


def _js_error_name(exc: BaseException) -> str:
    """The JS error's name (``NetworkError``, ``TimeoutError``, ``AbortError``...) or ''."""
    js_error = getattr(exc, "js_error", None)
    name = getattr(js_error, "name", None) if js_error is not None else None
    if isinstance(name, str):
        return name
    return str(getattr(exc, "name", "") or "")


def _text(value: Any) -> str | None:
    """A JS string result, or None for JS null/undefined."""
    return value if isinstance(value, str) else None


def _rules(url: str, headers: Mapping[str, str] | None, max_concurrency: int) -> HttpRangeRules:
    return HttpRangeRules(url, headers, max_concurrency, missing_range_hint=_CORS_HINT)


class XhrRangeSource(HttpSourceBase, SyncSourceBase):
    """A :class:`RangeSource` over an http(s) URL by synchronous XHR (Web Workers only).

    ``headers`` are sent with every request (``Range``, ``If-Match`` and
    ``Accept-Encoding`` are this source's own); ``timeout`` (seconds) bounds each request;
    ``with_credentials`` sends cookies cross-origin. Reads are sequential.
    ``max_concurrency`` is accepted for symmetry with the async source.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        with_credentials: bool = False,
        max_concurrency: int = 6,
    ) -> None:
        _require_pyodide("XhrRangeSource")
        self._rules = _rules(url, headers, max_concurrency)
        self.stats = self._rules.stats
        self._timeout = timeout
        self._with_credentials = with_credentials
        self._closed = False

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range: one request per coalesced range, in order."""
        if self._closed:
            raise closed_error(self, self._rules.shown)
        return self._read_batch(ranges, self._fetch)

    def _fetch(self, merged: ByteRange) -> bytes:
        rules = self._rules
        ask = rules.plan(merged)
        if ask is None:
            return b""
        xhr = js.XMLHttpRequest.new()
        try:
            xhr.open("GET", rules.url, False)
            xhr.responseType = "arraybuffer"
            if self._timeout:
                xhr.timeout = max(1, int(self._timeout * 1000))
            if self._with_credentials:
                xhr.withCredentials = True
            for name, value in rules.request_headers(ask).items():
                if name.lower() != "accept-encoding":  # forbidden: the browser would warn
                    xhr.setRequestHeader(name, value)
            xhr.send()
        except JsException as exc:
            if _js_error_name(exc) == "TimeoutError":
                raise rules.timed_out(self._timeout) from None
            raise rules.network_error(f"{_js_error_name(exc) or 'error'}: {exc}") from None

        def header(name: str) -> str | None:
            return _text(xhr.getResponseHeader(name))

        expected = rules.check_response(int(xhr.status), header, ask, _text(xhr.statusText) or "")
        if expected is None:
            return b""
        response = xhr.response
        received = int(response.byteLength) if response else 0
        rules.stats.bytes_read += received
        rules.check_body(ask, received, expected)
        body: bytes = js.Uint8Array.new(response).to_bytes()
        return body

    def close(self) -> None:
        """Mark the source closed (idempotent)."""
        self._closed = True


class FetchRangeSource(HttpSourceBase, AsyncSourceBase):
    """An :class:`AsyncRangeSource` over an http(s) URL by ``fetch``.

    The coalesced ranges of one batch are fetched concurrently, at most
    ``max_concurrency`` requests in flight per source. ``timeout`` (seconds) bounds each
    request, body included; ``fetch_options`` are merged into every ``fetch`` init
    (e.g. ``{"credentials": "include"}`` or ``{"cache": "no-store"}``).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 6,
        fetch_options: Mapping[str, Any] | None = None,
    ) -> None:
        _require_pyodide("FetchRangeSource")
        self._rules = _rules(url, headers, max_concurrency)
        self.stats = self._rules.stats
        self._timeout = timeout
        self._options = dict(fetch_options or {})
        self._slots = asyncio.Semaphore(max_concurrency)
        self._closed = False

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; the coalesced ranges are fetched concurrently."""
        if self._closed:
            raise closed_error(self, self._rules.shown)
        return await self._aread_batch(ranges, self._fetch)

    async def _fetch(self, merged: ByteRange) -> bytes:
        rules = self._rules
        async with self._slots:
            ask = rules.plan(merged)  # planned late: an earlier answer may have given the size
            if ask is None:
                return b""
            controller = js.AbortController.new()
            try:
                if self._timeout:
                    return await asyncio.wait_for(self._exchange(ask, controller),
                                                  self._timeout)
                return await self._exchange(ask, controller)
            except TimeoutError:
                raise rules.timed_out(self._timeout) from None
            finally:
                # Stops whatever is still on the wire: the body of a 200 instead of 206,
                # of an error answer, or of a request cancelled with its batch.
                controller.abort()

    async def _exchange(self, ask: ByteRange, controller: Any) -> bytes:
        rules = self._rules
        init = dict(self._options)
        init.update(method="GET", headers=rules.request_headers(ask),
                    signal=controller.signal, redirect="follow")
        try:
            resp = await js.fetch(rules.url, to_js(init, dict_converter=js.Object.fromEntries))
        except JsException as exc:
            raise rules.network_error(
                f"{exc} (network error, or blocked by CORS)") from None
        headers = resp.headers

        def header(name: str) -> str | None:
            return _text(headers.get(name))

        expected = rules.check_response(int(resp.status), header, ask,
                                        _text(resp.statusText) or "")
        if expected is None:
            return b""
        # With a Content-Length (checked equal to the range's length above) HTTP framing
        # bounds the body, so it is read in one call; without one (chunked) it is streamed
        # and stopped as soon as it runs past the range (one await per network chunk is
        # several times slower, so that path is kept for bodies of unknown length).
        bounded = header("content-length") is not None
        try:
            return await self._read_body(resp, ask, expected, whole=bounded)
        except JsException as exc:
            raise rules.network_error(f"reading the body: {exc}") from None

    async def _read_body(self, resp: Any, ask: ByteRange, expected: int, *,
                         whole: bool) -> bytes:
        rules = self._rules
        stream = resp.body
        if whole or not stream:  # read it whole (bounded by Content-Length), then check
            data: bytes = js.Uint8Array.new(await resp.arrayBuffer()).to_bytes()
            rules.stats.bytes_read += len(data)
            rules.check_body(ask, len(data), expected)
            return data
        reader = stream.getReader()
        buf = js.Uint8Array.new(expected)
        pos = 0
        while True:
            chunk = await reader.read()
            if chunk.done:
                break
            value = chunk.value
            size = int(value.length)
            rules.stats.bytes_read += size
            rules.check_received(ask, pos + size, expected)
            buf.set(value, pos)
            pos += size
        rules.check_body(ask, pos, expected)
        body: bytes = buf.to_bytes()
        return body

    async def aclose(self) -> None:
        """Mark the source closed (idempotent); requests in flight are not awaited."""
        self._closed = True


class _BlobSourceBase:
    """What both Blob sources share: size, identity, clamping, accounting, error mapping."""

    def __init__(self, blob: Any, name: str | None) -> None:
        if blob is None or not hasattr(blob, "slice") or not hasattr(blob, "size"):
            raise UsageError("a Blob or File object is needed")
        self._blob = blob
        self._size = int(blob.size)
        self._name = name if name is not None else (_text(getattr(blob, "name", None)) or "blob")
        modified = getattr(blob, "lastModified", None)
        self._identity = f"{self._name}|{self._size}|{modified if modified is not None else ''}"
        self.stats = SourceStats()
        self._closed = False

    @property
    def size(self) -> int:
        """Total size in bytes (always known)."""
        return self._size

    @property
    def identity(self) -> str:
        return self._identity

    def _plan(self, merged: ByteRange) -> ByteRange | None:
        """The range to read (clamped to the size; counted), or None if nothing exists."""
        ask = clamp(merged, self._size)
        if ask is not None:
            self.stats.requests += 1
        return ask

    def _error(self, exc: BaseException, ask: ByteRange) -> StorageError:
        name = _js_error_name(exc)
        where = f"{self._name}: reading bytes {ask.offset}-{ask.end - 1}"
        if name == "NotReadableError":  # Chromium: the file changed after it was picked
            return SourceChangedError(f"{where}: the file changed or can no longer be read "
                                      f"({exc})")
        if name == "NotFoundError":
            return SourceUnavailableError(f"{where}: the file is gone ({exc})")
        return StorageError(f"{where} failed: {exc}")

    def _accept(self, ask: ByteRange, data: bytes) -> bytes:
        self.stats.bytes_read += len(data)
        if len(data) != ask.size:
            raise SourceChangedError(
                f"{self._name}: {len(data)} bytes at {ask.offset}, expected {ask.size} "
                "(the file changed)"
            )
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, {self._size} bytes)"


class BlobRangeSource(_BlobSourceBase, SyncSourceBase):
    """A sync :class:`RangeSource` over a ``Blob``/``File`` by ``FileReaderSync`` (workers).

    ``blob`` is the JS object (a JsProxy); ``name`` is used in messages (default: the
    File's name). The size is known from the start; ``identity`` is name, size and
    lastModified.
    """

    def __init__(self, blob: Any, *, name: str | None = None) -> None:
        _require_pyodide("BlobRangeSource")
        super().__init__(blob, name)
        self._reader: Any = None

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range (one ``FileReaderSync`` read per coalesced range)."""
        if self._closed:
            raise closed_error(self, self._name)
        return read_each(ranges, self._read_one)

    def _read_one(self, merged: ByteRange) -> bytes:
        ask = self._plan(merged)
        if ask is None:
            return b""
        try:
            if self._reader is None:
                self._reader = js.FileReaderSync.new()
            buffer = self._reader.readAsArrayBuffer(self._blob.slice(ask.offset, ask.end))
            data: bytes = js.Uint8Array.new(buffer).to_bytes()
        except JsException as exc:
            raise self._error(exc, ask) from None
        return self._accept(ask, data)

    def close(self) -> None:
        """Drop the Blob reference (idempotent)."""
        self._closed = True


class AsyncBlobRangeSource(_BlobSourceBase, AsyncSourceBase):
    """An :class:`AsyncRangeSource` over a ``Blob``/``File`` by ``blob.slice(a, b).arrayBuffer()``.

    Works in pages and workers (and in Node, which has ``Blob``). The coalesced ranges of a
    batch are read concurrently, at most ``max_concurrency`` at a time.
    """

    def __init__(self, blob: Any, *, name: str | None = None, max_concurrency: int = 6) -> None:
        _require_pyodide("AsyncBlobRangeSource")
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, not {max_concurrency}")
        super().__init__(blob, name)
        self._slots = asyncio.Semaphore(max_concurrency)

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; the coalesced ranges are read concurrently."""
        if self._closed:
            raise closed_error(self, self._name)
        return await read_each_async(ranges, self._read_one)

    async def _read_one(self, merged: ByteRange) -> bytes:
        async with self._slots:
            ask = self._plan(merged)
            if ask is None:
                return b""
            try:
                buffer = await self._blob.slice(ask.offset, ask.end).arrayBuffer()
                data: bytes = js.Uint8Array.new(buffer).to_bytes()
            except JsException as exc:
                raise self._error(exc, ask) from None
            return self._accept(ask, data)

    async def aclose(self) -> None:
        """Drop the Blob reference (idempotent)."""
        self._closed = True
