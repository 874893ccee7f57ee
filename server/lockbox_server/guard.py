"""Slow and idle clients: request read deadlines, a connection cap, the open-file limit.

uvicorn 0.54 has no deadline for reading a request: a client that sends its
request line and headers one byte at a time (slowloris), or a body that never
ends, holds its connection forever, and a fresh connection that sends nothing
is never closed either. Its ``limit_concurrency`` only answers 503 once a
request is complete, so it neither sheds such connections nor bounds file
descriptors. :class:`GuardedHttpToolsProtocol` (uvicorn's httptools protocol;
:class:`GuardedH11Protocol`, its h11 protocol, where httptools is missing;
:func:`http_protocol` picks) adds:

* **head deadline**: the request line and headers must be complete within
  ``header_timeout`` seconds of the connection opening, or of the previous
  response ending (keep-alive). The deadline is absolute: sending a byte now
  and then does not extend it. Else the connection is closed, with no answer.
* **body deadline**: a request body must be complete within ``body_timeout``
  seconds of the end of its headers, plus one second per ``body_min_rate``
  bytes received (Apache's ``mod_reqtimeout`` ``MinRate``): a push of many
  GiB that keeps arriving at a sane rate is never cut, a body that dribbles
  is. Time in which the server itself stopped reading (uvicorn's flow
  control: the app is behind, e.g. writing to disk) is not counted against
  the client.
* **connection cap**: at most ``max_connections`` open connections. A new one
  beyond the cap makes room by closing the connection that has waited longest
  for a request head (an idle keep-alive connection or a slow client); when
  every connection is busy with a request, the new one gets a 503 and is
  closed at once. So a flood of half-open connections cannot lock out a normal
  GET, and the process never runs out of file descriptors.

:func:`raise_fd_limit` raises the soft ``RLIMIT_NOFILE`` to the hard limit (at
start-up of ``serve``), and :func:`connection_cap` keeps the cap below what the
limit allows (each connection may hold a socket and an open archive).

The httptools protocol also bounds a request head to :data:`MAX_HEAD_SIZE`
(h11 does that itself), sends a response head and its first body bytes in one
write (:class:`HeadCoalescingTransport`), and writes the answers of the
archive hot path itself when they need no waiting (the app's
``direct_answer``, see :class:`.app.ArchiveFastPath`), with no ASGI task.

The subclasses rely on uvicorn's protocol internals (``conn``, ``parser``,
``cycle``, ``pipeline``, ``transport``, ``connections``, ``on_response_complete``),
which is why uvicorn is pinned to the 0.54 series; the tests in
``tests/server/test_guard.py`` and ``test_fast_path.py`` break if they change.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # the C parser (the [server] extra pins it; CPython only)
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools missing: h11 (pure Python)
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

__all__ = [
    "DEFAULT_BODY_MIN_RATE",
    "FD_RESERVE",
    "GuardedH11Protocol",
    "GuardedHttpToolsProtocol",
    "HeadCoalescingTransport",
    "Limits",
    "MAX_HEAD_SIZE",
    "connection_cap",
    "current_fd_limit",
    "http_protocol",
    "raise_fd_limit",
]

log = logging.getLogger("lockbox_server")

#: File descriptors kept out of the connection budget: the listening sockets,
#: the event loop, logs, worker threads, the site's files.
FD_RESERVE = 64

#: The default :attr:`Limits.body_min_rate`: 16 KiB/s (128 kbit/s). A push over a
#: slower link needs a lower value (``serve(body_min_rate=...)``).
DEFAULT_BODY_MIN_RATE = 16 * 1024.0

_WAIT_ORDER = itertools.count()

#: The largest request head (request line and headers) read, as h11's default limit.
MAX_HEAD_SIZE = 16 * 1024

#: While the server is not reading (flow control), the body deadline is looked at
#: again after this many seconds, and that time is credited to the client.
_PAUSED_RECHECK_S = 1.0

_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 20\r\nconnection: close\r\n\r\ntoo many connections")


@dataclass(frozen=True)
class Limits:
    """The limits of :class:`GuardedH11Protocol` (seconds and a count)."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 512
    #: Bytes per second a body must keep arriving at (on average, after the first
    #: ``body_timeout`` seconds) for its deadline to move on: each byte received
    #: adds ``1 / body_min_rate`` seconds.
    body_min_rate: float = DEFAULT_BODY_MIN_RATE

    def __post_init__(self) -> None:
        if not self.header_timeout > 0 or not self.body_timeout > 0:
            raise ValueError("header_timeout and body_timeout must be positive")
        if not self.body_min_rate > 0:
            raise ValueError("body_min_rate must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


class _Guard:
    """The deadlines and the cap, over either of uvicorn's HTTP/1.1 protocols.

    A subclass says which phase of reading a request the connection is in
    (:meth:`_reading_phase`): ``"head"`` (waiting for a request line and
    headers), ``"body"`` (a request body is arriving), or None (nothing to
    read until the current response is done).
    """

    # uvicorn's protocol attributes (H11Protocol and HttpToolsProtocol have them all)
    transport: asyncio.Transport
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    flow: Any

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]
        self.limits: Limits = getattr(config, "limits", None) or Limits()
        self._phase: str | None = None  # "head", "body", or None (request read or closed)
        self._deadline: asyncio.TimerHandle | None = None
        #: When this connection began waiting for a request head (a process-wide
        #: sequence number: uvloop's clock has millisecond steps, and connections
        #: accepted in one step must still be told apart), or None while a request
        #: is being handled. The oldest waiter is evicted first.
        self.waiting_since: int | None = None
        # The body deadline: _body_start + body_timeout + _body_credit_s
        # + _body_bytes / body_min_rate (see _read_timed_out).
        self._body_start = 0.0
        self._body_bytes = 0
        self._body_credit_s = 0.0

    def _reading_phase(self) -> str | None:
        raise NotImplementedError

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        if self._over_cap() and not self._evict_oldest_waiter():
            log.warning("%d connections open: refusing a new one (503)",
                        self.limits.max_connections)
            transport.write(_REFUSED)
            transport.close()
            return
        self._update_deadline()

    def data_received(self, data: bytes) -> None:
        if self._phase == "body":
            self._body_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        self._update_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._update_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._phase = None
        self.waiting_since = None
        super().connection_lost(exc)  # type: ignore[misc]

    # -- deadlines -------------------------------------------------------------------------

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _update_deadline(self) -> None:
        """Arm, keep or cancel the read deadline after the reading phase may have changed."""
        if self.transport is None or self.transport.is_closing():
            phase = None
        else:
            phase = self._reading_phase()
        if phase == self._phase:
            return  # same phase: the deadline stays where it was (it is absolute)
        self._cancel_deadline()
        self._phase = phase
        self.waiting_since = next(_WAIT_ORDER) if phase == "head" else None
        if phase == "body":
            self._body_start = self.loop.time()
            self._body_bytes = 0
            self._body_credit_s = 0.0
        if phase is not None:
            timeout = self.limits.header_timeout if phase == "head" else self.limits.body_timeout
            self._deadline = self.loop.call_later(timeout, self._read_timed_out)

    def _body_time_left(self) -> float:
        """Seconds left before the body deadline (see the module), <= 0 once passed."""
        allowed = (self._body_start + self.limits.body_timeout + self._body_credit_s
                   + self._body_bytes / self.limits.body_min_rate)
        return allowed - self.loop.time()

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self._phase == "body" and self.transport is not None:
            left = self._body_time_left()
            if left <= 0 and getattr(self.flow, "read_paused", False):
                # The server stopped reading (the app is behind): not the client's fault.
                self._body_credit_s += _PAUSED_RECHECK_S - left
                left = _PAUSED_RECHECK_S
            if left > 0:
                self._deadline = self.loop.call_later(left, self._read_timed_out)
                return
        if self.transport is not None and not self.transport.is_closing():
            log.debug("request %s not received in time: closing the connection", self._phase)
            self.transport.close()

    # -- the cap ---------------------------------------------------------------------------

    def _live(self) -> list[Any]:
        return [c for c in self.connections
                if c.transport is not None and not c.transport.is_closing()]

    def _over_cap(self) -> bool:
        if len(self.connections) <= self.limits.max_connections:  # cheap test first
            return False
        return len(self._live()) > self.limits.max_connections

    def _evict_oldest_waiter(self) -> bool:
        waiters = [c for c in self._live()
                   if c is not self and getattr(c, "waiting_since", None) is not None]
        if not waiters:
            return False
        oldest = min(waiters, key=lambda c: c.waiting_since)
        log.debug("connection cap reached: closing the connection idle the longest")
        oldest.transport.close()
        return True


class GuardedH11Protocol(_Guard, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with read deadlines and a connection cap (see the module).

    The fallback where ``httptools`` is not installed."""

    def _reading_phase(self) -> str | None:
        state = self.conn.their_state
        if state is h11.IDLE:
            return "head"
        if state is h11.SEND_BODY:
            return "body"
        return None  # DONE, MUST_CLOSE, CLOSED, ERROR: nothing more to read for this request


class HeadTooLarge(Exception):
    """A request line and headers over :data:`MAX_HEAD_SIZE` (answered 400, then closed)."""


class HeadCoalescingTransport:
    """What a response cycle writes to: the response head is held back until the
    first body write, and both go out in one send (else two per small answer).

    A held head is written at the latest at the end of the current event loop
    iteration, before :meth:`close`, and by :meth:`flush`. Everything else is
    the wrapped transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    #: Up to this many body bytes are joined to the head (one copy); larger ones
    #: go with ``writelines``.
    JOIN_SIZE = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= self.JOIN_SIZE:
                self._transport.write(held + data)
            else:
                self._transport.writelines((held, data))
        elif data[:5] == b"HTTP/":  # a response head (uvicorn writes it in one piece)
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol (the C parser) with the deadlines and the cap.

        Also bounds a request head to :data:`MAX_HEAD_SIZE` bytes (the URL and the
        header names and values; h11 has this limit built in, httptools has none):
        a larger one is answered 400 and the connection closed.
        """

        #: Whether archive answers that need no waiting are written here (tests compare
        #: the bytes with this off).
        direct_answers = True

        def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                     _loop: asyncio.AbstractEventLoop | None = None) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self._in_body = False
            self._direct = False  # the current request was answered by _answered_directly
            self._direct_app = getattr(self.app, "direct_answer", None)
            self._in_head = False  # a request has begun, its headers are not complete
            self._head_size = 0  # URL and headers parsed so far (exact)
            self._head_later = 0  # bytes received after the chunk the head began in

        def data_received(self, data: bytes) -> None:
            # httptools keeps a header's value until the header is complete: count what
            # arrives while a head is incomplete, so one endless header is cut too.
            if self._in_head:
                self._head_later += len(data)
                if self._head_later > MAX_HEAD_SIZE and self.transport is not None:
                    log.debug("request head over %d bytes: 400", MAX_HEAD_SIZE)
                    self.send_400_response("Invalid HTTP request received.")
                    return
            super().data_received(data)
            if self._in_head:  # begun in this chunk: count what was parsed of it so far
                self._head_later = max(self._head_later, self._head_size)

        def _reading_phase(self) -> str | None:
            if self._in_body:
                return "body"
            cycle = self.cycle
            if (cycle is not None and not cycle.response_complete) or self.pipeline:
                return None  # a request is being answered (or queued behind one)
            return "head"

        def on_message_begin(self) -> None:
            self._in_head = True
            self._head_size = self._head_later = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)
            # uvicorn's on_header, inlined (once per header of every request)
            name = name.lower()
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))

        def _count_head(self, size: int) -> None:
            self._head_size += size
            if self._head_size > MAX_HEAD_SIZE:
                # Raised inside a parser callback: httptools turns it into a parse
                # error, which uvicorn answers with 400 and a close.
                raise HeadTooLarge(f"request head over {MAX_HEAD_SIZE} bytes")

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._out = HeadCoalescingTransport(transport, self.loop)
            super().connection_made(transport)

        def send_400_response(self, msg: str) -> None:
            self._out.flush()
            super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._answered_directly():
                self._direct = True  # (no body follows: on_message_complete is next)
                return
            super().on_headers_complete()
            self._in_body = True  # until on_message_complete (at once for a GET)
            if self.cycle is not None:
                self.cycle.transport = self._out  # type: ignore[assignment]

        def on_message_complete(self) -> None:
            self._in_body = False
            if self._direct:
                self._direct = False
                return
            super().on_message_complete()

        def _answered_directly(self) -> bool:
            """Answer a bodiless GET/HEAD here, without a task and the ASGI round trip,
            when the app has a direct answer for it (``direct_answer``: the archive hot
            path, see :class:`.app.ArchiveFastPath`) and nothing is in flight on this
            connection. False: the request goes the usual way."""
            direct = self._direct_app
            if direct is None or not self.direct_answers or self.pipeline \
                    or self.access_log or self.flow.write_paused:
                return False
            if self.cycle is not None and not self.cycle.response_complete:
                return False
            method = self.parser.get_method()
            if method not in (b"GET", b"HEAD") or self.parser.should_upgrade():
                return False
            for name, _value in self.headers:
                if name in (b"content-length", b"transfer-encoding", b"expect"):
                    return False  # a body (or a wish to send one): the usual path
            try:
                raw_path = httptools.parse_url(self.url).path
                path = raw_path.decode("ascii")
                if "%" in path:
                    path = urllib.parse.unquote(path)
                found = direct(method.decode("ascii"), path, self.headers)
            except Exception:  # the usual path answers (or fails) the same request
                log.debug("direct answer failed: the request goes the usual way",
                          exc_info=True)
                return False
            if found is None:
                return False
            status, headers, body = found
            keep_alive = (self.parser.get_http_version() != "1.0"
                          and self.parser.should_keep_alive())
            out = [STATUS_LINE[status]]
            for name, value in (*self.server_state.default_headers, *headers):
                out += (name, b": ", value, b"\r\n")
            if not keep_alive:
                out.append(b"connection: close\r\n")
            out += (b"\r\n", body)
            self._out.flush()  # a head still held back goes first
            self.transport.write(b"".join(out))
            if not keep_alive:
                self.transport.close()
            # What uvicorn does after a response (keep-alive timer, counters), and a
            # fresh head deadline: the connection waits for its next request.
            self._cancel_deadline()
            self._phase = None
            self.on_response_complete()
            return True


def http_protocol() -> type[asyncio.Protocol]:
    """The guarded protocol class to run: httptools' where installed, else h11's."""
    if HttpToolsProtocol is not None:
        return GuardedHttpToolsProtocol
    return GuardedH11Protocol


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit if it is lower; the soft limit after.

    Where there is no ``resource`` module (Windows) or the limit cannot be
    raised, the current soft limit is kept (a large number if unknown).
    """
    try:
        import resource
    except ImportError:  # Windows
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        for value in (target, 10240):  # 10240: macOS's OPEN_MAX when the hard limit is unlimited
            if value <= soft:
                break
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
                break
            except (ValueError, OSError):
                continue
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def current_fd_limit() -> int:
    """The soft RLIMIT_NOFILE (a large number where unknown)."""
    try:
        import resource
    except ImportError:
        return 1 << 20
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(max_connections: int, fd_limit: int) -> int:
    """``max_connections``, lowered so that two descriptors per connection (its socket

    and the archive it is sending) plus :data:`FD_RESERVE` fit in ``fd_limit``.
    """
    return max(1, min(max_connections, (fd_limit - FD_RESERVE) // 2))
