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

* ``Accept-Encoding: identity`` is not sent (browsers ignore it: it is a forbidden header,
  and the Fetch standard adds ``identity`` itself to requests with a Range header); a 206
  with a ``Content-Encoding`` other than identity is refused all the same;
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
import base64
import re
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import (
    BackendUnavailableError,
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from ..ranges import ByteRange, coalesce, split_coalesced
from .base import SourceStats

try:
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]
except ImportError:  # CPython: importable (for docs and type checks), not constructible
    js = None
    JsException = None
    to_js = None

__all__ = ["XhrRangeSource", "FetchRangeSource", "BlobRangeSource", "AsyncBlobRangeSource"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_OWN_HEADERS = frozenset({"range", "if-match", "if-range", "accept-encoding"})
_PROBE = ByteRange(0, 1)
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


def _redact(url: str) -> str:
    """The URL for messages: no credentials, no query (it may hold a signature)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown + ("?…" if parts.query else "")


class _Response:
    """What the rules need from an answer: status, reason and a header getter."""

    __slots__ = ("get", "reason", "status")

    def __init__(self, status: int, reason: str, get: Callable[[str], str | None]) -> None:
        self.status = status
        self.reason = reason
        self.get = get


class _HttpRules:
    """State and checks shared by the XHR and fetch sources (no I/O here).

    The same checks as ``lockbox.sources.http._HttpCore``, on a :class:`_Response`.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None, max_concurrency: int) -> None:
        if not isinstance(url, str):
            raise UsageError(f"invalid URL {url!r}")
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname, parts.port  # parses (and checks) the port
        except ValueError as exc:
            raise UsageError(f"invalid URL {url!r}: {exc}") from exc
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise UsageError(f"not an http(s) URL: {_redact(url)}")
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self.shown = _redact(url)
        self.headers = {k: v for k, v in (headers or {}).items() if k.lower() not in _OWN_HEADERS}
        netloc = parts.netloc
        if "@" in netloc:
            # fetch() refuses URLs with credentials (and its error repeats the URL): send
            # them as Basic authorization, as a browser does for XHR, unless one is given.
            userinfo, _, netloc = netloc.rpartition("@")
            if not any(k.lower() == "authorization" for k in self.headers):
                user, _, password = userinfo.partition(":")
                token = f"{unquote(user)}:{unquote(password)}".encode()
                self.headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        self.url = urlunsplit(parts._replace(netloc=netloc, fragment=""))
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

    def check_response(self, resp: _Response, ask: ByteRange) -> int | None:
        """Check status and headers; return the body length to read, or None for ``b""``."""
        status = resp.status
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
        if status == 0:  # XHR: the request failed before any answer (network, CORS)
            raise self.network_error("no answer (network error, or blocked by CORS)")
        if 400 <= status < 600:
            raise SourceUnavailableError(f"GET {self.shown}: HTTP {status} {resp.reason}".rstrip())
        raise StorageError(f"GET {self.shown}: unexpected HTTP {status} to a Range request")

    def _learn_size(self, total: int) -> None:
        if self.size is None:
            self.size = total
        elif total != self.size:
            raise SourceChangedError(
                f"GET {self.shown}: the size changed from {self.size} to {total} bytes"
            )

    def _check_partial(self, resp: _Response, ask: ByteRange) -> int:
        value = resp.get("content-range")
        match = _CONTENT_RANGE.match(value) if value is not None else None
        if match is None:
            hint = _CORS_HINT if value is None else ""
            raise StorageError(
                f"GET {self.shown}: 206 with unusable Content-Range {value!r} "
                f"(asked {ask.header_value()}){hint}"
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
        encoding = (resp.get("content-encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise StorageError(f"GET {self.shown}: 206 body has Content-Encoding {encoding!r}")
        length = resp.get("content-length")
        if length is not None and length.strip() != str(end - start):
            raise StorageError(
                f"GET {self.shown}: Content-Length {length} does not match Content-Range {value!r}"
            )
        return end - start

    def _check_validators(self, resp: _Response) -> None:
        etag = resp.get("etag")
        last_modified = resp.get("last-modified")
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

    def _check_unsatisfiable(self, resp: _Response, ask: ByteRange) -> None:
        value = resp.get("content-range")
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

    def check_body(self, ask: ByteRange, received: int, expected: int) -> None:
        if received != expected:
            raise StorageError(
                f"GET {self.shown}: {received} body bytes for {ask.header_value()}, "
                f"expected {expected}"
            )

    def network_error(self, detail: str) -> SourceUnavailableError:
        return SourceUnavailableError(f"GET {self.shown} failed: {detail}")

    def timed_out(self, seconds: float) -> SourceUnavailableError:
        return SourceUnavailableError(f"GET {self.shown} timed out after {seconds:g} s")

    def no_size(self) -> StorageError:
        return StorageError(f"GET {self.shown}: the server did not report the size")


class XhrRangeSource:
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
        self._rules = _HttpRules(url, headers, max_concurrency)
        self.stats = self._rules.stats
        self._timeout = timeout
        self._with_credentials = with_credentials
        self._closed = False

    @property
    def url(self) -> str:
        return self._rules.url

    @property
    def size(self) -> int | None:
        """Total size, from the first answer's Content-Range (None before any read)."""
        return self._rules.size

    @property
    def identity(self) -> str | None:
        """The pinned ETag (or Last-Modified and size); None before any read."""
        return self._rules.identity

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range: one request per coalesced range, in order."""
        if self._closed:
            raise UsageError(f"read from a closed XhrRangeSource ({self._rules.shown})")
        merged = coalesce(ranges)
        blobs = [self._fetch(m) for m in merged]
        if self._rules.size is None:
            self._fetch(_PROBE)
            if self._rules.size is None:
                raise self._rules.no_size()
        return split_coalesced(ranges, merged, blobs)

    def _fetch(self, merged: ByteRange) -> bytes:
        rules = self._rules
        ask = rules.plan(merged)
        if ask is None:
            return b""
        rules.stats.requests += 1
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

        expected = rules.check_response(
            _Response(int(xhr.status), _text(xhr.statusText) or "", header), ask)
        if expected is None:
            return b""
        response = xhr.response
        received = int(response.byteLength) if response else 0
        rules.stats.bytes_read += received
        if received > expected:
            raise rules.body_too_long(ask, expected)
        rules.check_body(ask, received, expected)
        body: bytes = js.Uint8Array.new(response).to_bytes()
        return body

    def close(self) -> None:
        """Mark the source closed (idempotent)."""
        self._closed = True

    def __enter__(self) -> XhrRangeSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"XhrRangeSource({self._rules.shown!r})"


class FetchRangeSource:
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
        self._rules = _HttpRules(url, headers, max_concurrency)
        self.stats = self._rules.stats
        self._timeout = timeout
        self._options = dict(fetch_options or {})
        self._slots = asyncio.Semaphore(max_concurrency)
        self._closed = False

    @property
    def url(self) -> str:
        return self._rules.url

    @property
    def size(self) -> int | None:
        """Total size, from the first answer's Content-Range (None before any read)."""
        return self._rules.size

    @property
    def identity(self) -> str | None:
        """The pinned ETag (or Last-Modified and size); None before any read."""
        return self._rules.identity

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range; the coalesced ranges are fetched concurrently."""
        if self._closed:
            raise UsageError(f"read from a closed FetchRangeSource ({self._rules.shown})")
        merged = coalesce(ranges)
        if len(merged) == 1:
            blobs = [await self._fetch(merged[0])]
        else:
            tasks = [asyncio.ensure_future(self._fetch(m)) for m in merged]
            try:
                blobs = list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        if self._rules.size is None:
            await self._fetch(_PROBE)
            if self._rules.size is None:
                raise self._rules.no_size()
        return split_coalesced(ranges, merged, blobs)

    async def _fetch(self, merged: ByteRange) -> bytes:
        rules = self._rules
        async with self._slots:
            ask = rules.plan(merged)  # planned late: an earlier answer may have given the size
            if ask is None:
                return b""
            rules.stats.requests += 1
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

        expected = rules.check_response(
            _Response(int(resp.status), _text(resp.statusText) or "", header), ask)
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
            if len(data) > expected:
                raise rules.body_too_long(ask, expected)
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
            if pos + size > expected:
                raise rules.body_too_long(ask, expected)
            buf.set(value, pos)
            pos += size
        rules.check_body(ask, pos, expected)
        body: bytes = buf.to_bytes()
        return body

    async def aclose(self) -> None:
        """Mark the source closed (idempotent); requests in flight are not awaited."""
        self._closed = True

    async def __aenter__(self) -> FetchRangeSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"FetchRangeSource({self._rules.shown!r})"


class _BlobCore:
    """What both Blob sources share: size, identity, clamping and error mapping."""

    def __init__(self, blob: Any, name: str | None) -> None:
        if blob is None or not hasattr(blob, "slice") or not hasattr(blob, "size"):
            raise UsageError("a Blob or File object is needed")
        self.blob = blob
        self.size = int(blob.size)
        self.name = name if name is not None else (_text(getattr(blob, "name", None)) or "blob")
        modified = getattr(blob, "lastModified", None)
        self.identity = f"{self.name}|{self.size}|{modified if modified is not None else ''}"
        self.stats = SourceStats()
        self.closed = False

    def plan(self, merged: ByteRange) -> ByteRange | None:
        end = min(merged.end, self.size)
        if merged.offset >= end:
            return None
        return ByteRange(merged.offset, end - merged.offset)

    def error(self, exc: BaseException, ask: ByteRange) -> StorageError:
        name = _js_error_name(exc)
        where = f"{self.name}: reading bytes {ask.offset}-{ask.end - 1}"
        if name == "NotReadableError":  # Chromium: the file changed after it was picked
            return SourceChangedError(f"{where}: the file changed or can no longer be read "
                                      f"({exc})")
        if name == "NotFoundError":
            return SourceUnavailableError(f"{where}: the file is gone ({exc})")
        return StorageError(f"{where} failed: {exc}")

    def accept(self, ask: ByteRange, data: bytes) -> bytes:
        self.stats.bytes_read += len(data)
        if len(data) != ask.size:
            raise SourceChangedError(
                f"{self.name}: {len(data)} bytes at {ask.offset}, expected {ask.size} "
                "(the file changed)"
            )
        return data


class BlobRangeSource:
    """A sync :class:`RangeSource` over a ``Blob``/``File`` by ``FileReaderSync`` (workers).

    ``blob`` is the JS object (a JsProxy); ``name`` is used in messages (default: the
    File's name). The size is known from the start; ``identity`` is name, size and
    lastModified.
    """

    def __init__(self, blob: Any, *, name: str | None = None) -> None:
        _require_pyodide("BlobRangeSource")
        self._core = _BlobCore(blob, name)
        self.stats = self._core.stats
        self._reader: Any = None

    @property
    def size(self) -> int:
        """Total size in bytes (always known)."""
        return self._core.size

    @property
    def identity(self) -> str:
        return self._core.identity

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Read every range (one ``FileReaderSync`` read per coalesced range)."""
        core = self._core
        if core.closed:
            raise UsageError(f"read from a closed BlobRangeSource ({core.name})")
        merged = coalesce(ranges)
        return split_coalesced(ranges, merged, [self._read_one(m) for m in merged])

    def _read_one(self, merged: ByteRange) -> bytes:
        core = self._core
        ask = core.plan(merged)
        if ask is None:
            return b""
        core.stats.requests += 1
        try:
            if self._reader is None:
                self._reader = js.FileReaderSync.new()
            buffer = self._reader.readAsArrayBuffer(core.blob.slice(ask.offset, ask.end))
            data: bytes = js.Uint8Array.new(buffer).to_bytes()
        except JsException as exc:
            raise core.error(exc, ask) from None
        return core.accept(ask, data)

    def close(self) -> None:
        """Drop the Blob reference (idempotent)."""
        self._core.closed = True

    def __enter__(self) -> BlobRangeSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BlobRangeSource({self._core.name!r}, {self._core.size} bytes)"


class AsyncBlobRangeSource:
    """An :class:`AsyncRangeSource` over a ``Blob``/``File`` by ``blob.slice(a, b).arrayBuffer()``.

    Works in pages and workers (and in Node, which has ``Blob``). The coalesced ranges of a
    batch are read concurrently, at most ``max_concurrency`` at a time.
    """

    def __init__(self, blob: Any, *, name: str | None = None, max_concurrency: int = 6) -> None:
        _require_pyodide("AsyncBlobRangeSource")
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self._core = _BlobCore(blob, name)
        self.stats = self._core.stats
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def size(self) -> int:
        """Total size in bytes (always known)."""
        return self._core.size

    @property
    def identity(self) -> str:
        return self._core.identity

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        core = self._core
        if core.closed:
            raise UsageError(f"read from a closed AsyncBlobRangeSource ({core.name})")
        merged = coalesce(ranges)
        if len(merged) == 1:
            blobs = [await self._read_one(merged[0])]
        else:
            tasks = [asyncio.ensure_future(self._read_one(m)) for m in merged]
            try:
                blobs = list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        return split_coalesced(ranges, merged, blobs)

    async def _read_one(self, merged: ByteRange) -> bytes:
        core = self._core
        async with self._slots:
            ask = core.plan(merged)
            if ask is None:
                return b""
            core.stats.requests += 1
            try:
                buffer = await core.blob.slice(ask.offset, ask.end).arrayBuffer()
                data: bytes = js.Uint8Array.new(buffer).to_bytes()
            except JsException as exc:
                raise core.error(exc, ask) from None
            return core.accept(ask, data)

    async def aclose(self) -> None:
        """Drop the Blob reference (idempotent)."""
        self._core.closed = True

    async def __aenter__(self) -> AsyncBlobRangeSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncBlobRangeSource({self._core.name!r}, {self._core.size} bytes)"
