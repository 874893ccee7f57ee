"""The HTTP range protocol of the sources, sans I/O: one implementation for every transport.

:class:`HttpRangeRules` decides what to ask and judges what came back; the transports
(:mod:`lockbox.sources.http`: httpx, sync and async; :mod:`lockbox.sources.browser`: XHR
and fetch) only send the requests and move the bytes. The rules:

* only single closed ranges (``Range: bytes=a-b``; never suffix ranges, never
  multi-range); the ranges of one batch are coalesced first and cut back afterwards;
* ``Accept-Encoding: identity`` so byte offsets mean file offsets; a 206 with another
  ``Content-Encoding`` is refused;
* the total size comes from ``Content-Range: bytes a-b/N`` (or ``bytes */N`` of a 416);
  the first 206 pins the ETag (or, without one, Last-Modified) and the size, later
  answers must match (:class:`SourceChangedError` otherwise) and carry ``If-Match`` once
  a strong ETag is pinned (412 -> :class:`SourceChangedError`);
* a 200 answer means the server ignored ``Range``: the body is not wanted
  (:class:`RangeNotSupportedError`); a 416 means the range starts at or after the end,
  which reads as ``b""``; other 4xx/5xx (and status 0, a browser's "no answer") ->
  :class:`SourceUnavailableError`; anything else -> :class:`StorageError`;
* bodies are read with a bound: exactly the announced length or :class:`StorageError`;
* messages name the URL without credentials and without its query (it may hold a
  signature).

:class:`HttpRangeRules` does no I/O; :class:`HttpSourceBase` is the part of a source the
transports share (properties, the batch flow around their ``fetch``). This module imports
no transport (no httpx, no ``js``): it runs on CPython and in Pyodide.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import (
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from ..ranges import ByteRange
from .base import SourceStats, clamp, read_each, read_each_async

__all__ = ["PROBE", "BoundedBody", "GetHeader", "HttpRangeRules", "HttpSourceBase", "redact_url"]

GetHeader = Callable[[str], "str | None"]
"""A response's header lookup: lowercase name -> value, or None when absent."""

PROBE = ByteRange(0, 1)
"""The range asked for to learn the size when a batch did not reveal it."""

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
# Headers the rules own; caller-supplied values for them are dropped.
_OWN_HEADERS = frozenset({"range", "if-match", "if-range", "accept-encoding"})


def redact_url(url: str) -> str:
    """The URL for messages: no credentials, no query (it may hold a signature)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown + ("?…" if parts.query else "")


class HttpRangeRules:
    """What to ask for and what to make of the answers, for one http(s) URL (no I/O).

    ``headers`` are sent with every request, except the ones the rules own (``Range``,
    ``If-Match``, ``If-Range``, ``Accept-Encoding``). Credentials in the URL become a
    Basic ``Authorization`` header (unless one is given) and leave :attr:`url`, the URL
    to request. ``missing_range_hint`` is added to the message of a 206 without
    ``Content-Range`` (browsers hide headers a cross-origin server does not expose).

    A transport, per coalesced range ``merged``: ``ask = plan(merged)`` (None: nothing
    to ask, the answer is ``b""``; a range returned counts as a request); send
    ``request_headers(ask)``; ``expected = check_response(status, get_header, ask)``
    (None: ``b""``, do not read the body); read at most ``expected`` bytes
    (:meth:`check_received` while they arrive, :meth:`check_body` at the end, or a
    :meth:`body` buffer that does both). After a batch that left :attr:`size` unknown,
    it fetches :data:`PROBE` and calls :meth:`require_size`.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        max_concurrency: int = 1,
        *,
        missing_range_hint: str = "",
    ) -> None:
        if not isinstance(url, str):
            raise UsageError(f"invalid URL {url!r}")
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname, parts.port  # parses (and checks) the port
        except ValueError as exc:
            raise UsageError(f"invalid URL {url!r}: {exc}") from exc
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise UsageError(f"not an http(s) URL: {redact_url(url)}")
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self.shown = redact_url(url)
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
        self.missing_range_hint = missing_range_hint
        self.stats = SourceStats()
        self.size: int | None = None
        self.pinned = False
        self.etag: str | None = None
        self.last_modified: str | None = None

    @property
    def identity(self) -> str | None:
        """The pinned ETag (or Last-Modified and size); None before the first 206."""
        if not self.pinned:
            return None
        if self.etag is not None:
            return self.etag
        return f"{self.last_modified}|{self.size}"

    # ------------------------------------------------------------------ requests

    def plan(self, merged: ByteRange) -> ByteRange | None:
        """The range to ask for (clamped to a known size), or None if nothing exists.

        A range returned is counted in ``stats.requests``: the caller sends it.
        """
        ask = clamp(merged, self.size)
        if ask is not None:
            self.stats.requests += 1
        return ask

    def request_headers(self, ask: ByteRange) -> dict[str, str]:
        """The headers of the request for ``ask``."""
        headers = dict(self.headers)
        headers["Range"] = ask.header_value()
        headers["Accept-Encoding"] = "identity"
        if self.etag is not None and not self.etag.startswith("W/"):
            headers["If-Match"] = self.etag
        return headers

    # ------------------------------------------------------------------ answers

    def check_response(
        self, status: int, get_header: GetHeader, ask: ByteRange, reason: str = ""
    ) -> int | None:
        """Check status and headers; return the body length to read, or None for ``b""``.

        ``get_header`` looks a header up by lowercase name (case-insensitively);
        ``reason`` is the status line's reason phrase, for messages.
        """
        if status == 206:
            return self._check_partial(get_header, ask)
        if status == 200:
            raise RangeNotSupportedError(
                f"GET {self.shown}: the server answered Range {ask.header_value()} "
                "with 200 and the whole body (range requests not supported)"
            )
        if status == 416:
            self._check_unsatisfiable(get_header, ask)
            return None
        if status == 412:
            raise SourceChangedError(
                f"GET {self.shown}: HTTP 412, the ETag {self.etag} no longer matches"
            )
        if status == 0:  # browsers: the request failed before any answer (network, CORS)
            raise self.network_error("no answer (network error, or blocked by CORS)")
        if 400 <= status < 600:
            raise SourceUnavailableError(f"GET {self.shown}: HTTP {status} {reason}".rstrip())
        raise StorageError(f"GET {self.shown}: unexpected HTTP {status} to a Range request")

    def _learn_size(self, total: int) -> None:
        if self.size is None:
            self.size = total
        elif total != self.size:
            raise SourceChangedError(
                f"GET {self.shown}: the size changed from {self.size} to {total} bytes"
            )

    def _check_partial(self, get_header: GetHeader, ask: ByteRange) -> int:
        value = get_header("content-range")
        match = _CONTENT_RANGE.match(value) if value is not None else None
        if match is None:
            hint = self.missing_range_hint if value is None else ""
            raise StorageError(
                f"GET {self.shown}: 206 with unusable Content-Range {value!r} "
                f"(asked {ask.header_value()}){hint}"
            )
        first, last, total_text = match.groups()
        if total_text == "*":
            raise StorageError(f"GET {self.shown}: the server does not report the total size")
        self._learn_size(int(total_text))
        self._check_validators(get_header)
        start, end, total = int(first), int(last) + 1, int(total_text)
        if start != ask.offset or end != min(ask.end, total) or start >= end:
            raise StorageError(
                f"GET {self.shown}: asked {ask.header_value()}, got Content-Range {value!r}"
            )
        encoding = (get_header("content-encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise StorageError(f"GET {self.shown}: 206 body has Content-Encoding {encoding!r}")
        length = get_header("content-length")
        if length is not None and length.strip() != str(end - start):
            raise StorageError(
                f"GET {self.shown}: Content-Length {length} does not match Content-Range {value!r}"
            )
        return end - start

    def _check_validators(self, get_header: GetHeader) -> None:
        etag = get_header("etag")
        last_modified = get_header("last-modified")
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

    def _check_unsatisfiable(self, get_header: GetHeader, ask: ByteRange) -> None:
        value = get_header("content-range")
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

    # ------------------------------------------------------------------ bodies

    def check_received(self, ask: ByteRange, received: int, expected: int) -> None:
        """While the body arrives: stop as soon as it runs past the announced length."""
        if received > expected:
            raise StorageError(
                f"GET {self.shown}: the body for {ask.header_value()} exceeds {expected} bytes"
            )

    def check_body(self, ask: ByteRange, received: int, expected: int) -> None:
        """Once the body is complete: exactly the announced length."""
        self.check_received(ask, received, expected)
        if received != expected:
            raise StorageError(
                f"GET {self.shown}: {received} body bytes for {ask.header_value()}, "
                f"expected {expected}"
            )

    def body(self, ask: ByteRange, expected: int) -> BoundedBody:
        """A buffer for the body of ``ask``, ``expected`` bytes long (see ``check_response``)."""
        return BoundedBody(self, ask, expected)

    def require_size(self) -> None:
        """After the size probe: the size must be known by now."""
        if self.size is None:
            raise StorageError(f"GET {self.shown}: the server did not report the size")

    # ------------------------------------------------------------------ transport failures

    def error(self, text: str, kind: type[StorageError] = SourceUnavailableError) -> StorageError:
        """An error about a request of this URL: ``GET <url><text>``."""
        return kind(f"GET {self.shown}{text}")

    def network_error(self, detail: str) -> StorageError:
        return self.error(f" failed: {detail}")

    def timed_out(self, seconds: float) -> StorageError:
        return self.error(f" timed out after {seconds:g} s")


class BoundedBody:
    """A body collected with a bound: counted as it arrives, refused as soon as it runs past
    the announced length, checked complete at the end (no I/O: the transport feeds it)."""

    __slots__ = ("_ask", "_buf", "_expected", "_rules")

    def __init__(self, rules: HttpRangeRules, ask: ByteRange, expected: int) -> None:
        self._rules = rules
        self._ask = ask
        self._expected = expected
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        self._rules.stats.bytes_read += len(chunk)
        self._rules.check_received(self._ask, len(self._buf), self._expected)

    def finish(self) -> bytes:
        self._rules.check_body(self._ask, len(self._buf), self._expected)
        return bytes(self._buf)


class HttpSourceBase:
    """The shape the HTTP sources of every transport share around their rules.

    A source sets ``_rules`` (an :class:`HttpRangeRules`) and reads a batch with
    :meth:`_read_batch` / :meth:`_aread_batch`, giving its own ``fetch`` (one coalesced
    range -> its bytes, the only I/O); these coalesce, fetch, probe the size if the batch
    did not reveal it, and cut the answers back.
    """

    _rules: HttpRangeRules

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

    def _read_batch(
        self, ranges: Sequence[ByteRange], fetch: Callable[[ByteRange], bytes]
    ) -> list[bytes]:
        """One request per coalesced range, in order."""
        blobs = read_each(ranges, fetch)
        if self._rules.size is None:
            fetch(PROBE)
            self._rules.require_size()
        return blobs

    async def _aread_batch(
        self, ranges: Sequence[ByteRange], fetch: Callable[[ByteRange], Awaitable[bytes]]
    ) -> list[bytes]:
        """The coalesced ranges are fetched concurrently (``fetch`` bounds the concurrency)."""
        blobs = await read_each_async(ranges, fetch)
        if self._rules.size is None:
            await fetch(PROBE)
            self._rules.require_size()
        return blobs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._rules.shown!r})"
