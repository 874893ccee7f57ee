"""Running the app under uvicorn: :func:`serve` (blocking) and :func:`running` (a thread).

The listening sockets are bound here, not by uvicorn: a busy port is then a
plain ``OSError`` (``errno.EADDRINUSE``) raised by :func:`serve`, and uvicorn
prints nothing of its own (it would log the error and ``sys.exit``). Every
connection goes through the guarded protocol of :func:`.guard.http_protocol`
(httptools' C parser where installed, else h11; read deadlines, a connection
cap), on uvloop where installed.

:func:`serve` runs ``workers`` processes (default: one per core, at most
:data:`MAX_DEFAULT_WORKERS`; ``$LOCKBOX_SERVE_WORKERS`` overrides): the parent
binds and listens, then forks the workers, which share the listening sockets
(the kernel hands each connection to one of them). The server is stateless, so
any worker can answer any request. The parent only watches: it forwards
SIGINT/SIGTERM to the workers, waits for them, and starts a new one if a
worker dies. With one worker (or without ``os.fork``, or off the main thread)
the server runs in the calling process, as before.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import uvicorn

from .app import check_app_args, create_app
from .guard import (
    DEFAULT_BODY_MIN_RATE,
    Limits,
    connection_cap,
    current_fd_limit,
    http_protocol,
    raise_fd_limit,
)
from .snapstore import DEFAULT_MAX_PACK_SIZE

__all__ = ["MAX_DEFAULT_WORKERS", "WORKERS_ENV", "default_workers", "serve", "running"]

log = logging.getLogger("lockbox_server")

#: Pending connections the kernel queues before accept().
BACKLOG = 2048

#: The environment variable that sets :func:`serve`'s worker count (``lockbox serve``).
WORKERS_ENV = "LOCKBOX_SERVE_WORKERS"
#: Workers at most when the count is not given: one per core up to this.
MAX_DEFAULT_WORKERS = 8
#: More than this many workers replaced within _CRASH_WINDOW_S seconds is a crash loop:
#: the server stops (OSError) instead of starting more.
_CRASHES_ALLOWED = 10
_CRASH_WINDOW_S = 10.0


def _can_fork() -> bool:
    return (hasattr(os, "fork") and sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread())


def default_workers() -> int:
    """The worker count of :func:`serve` when none is given: ``$LOCKBOX_SERVE_WORKERS``

    if set (a positive integer), else the cores this process may run on (at most
    :data:`MAX_DEFAULT_WORKERS`); 1 where workers cannot be forked (not Linux).
    """
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, not {env!r}")
        return int(env)
    if not _can_fork():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class _Config(uvicorn.Config):
    """uvicorn.Config carrying our :class:`.guard.Limits` (read by the protocol)."""

    def __init__(self, app: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, http=http_protocol(), ws="none", loop="auto", **kwargs)
        self.limits = limits


class _Server(uvicorn.Server):
    """uvicorn.Server that reports the URL (with the real port) once listening."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._ready = ready
        self.url: str | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            close = getattr(self.config.app, "close", None)
            if close is not None:  # the archive descriptors it keeps open
                close()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        sock = self.servers[0].sockets[0]
        port = sock.getsockname()[1]
        self.url = _url(self.config.host, port)
        if self._ready is not None:
            self._ready(self.url)


def _bind(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for ``host``:``port``, like asyncio's

    ``create_server`` would make: one per address of ``host`` (``""`` = every
    interface), ``SO_REUSEADDR``, IPv6 sockets ``V6ONLY``. With ``port=0`` all
    of them share the port the first one got. Raises the ``OSError`` of the
    failing bind (``errno.EADDRINUSE`` for a busy port).
    """
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                               0, socket.AI_PASSIVE)
    seen: set[tuple[int, Any]] = set()
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                # a second address the machine lacks (e.g. ::1 without IPv6) is skipped
                if len(sockets) > 1 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    sockets.pop().close()
                    continue
                raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _config(
    directory: str | os.PathLike[str],
    host: str,
    port: int,
    site_dir: str | os.PathLike[str] | None,
    allowed_origins: Iterable[str],
    isolate: bool,
    log_level: str,
    limits: Limits,
    keep_alive_timeout: float,
    snap: dict[str, Any],
) -> _Config:
    app = create_app(directory, site_dir=site_dir, allowed_origins=allowed_origins,
                     isolate=isolate, **snap)
    return _Config(
        app,
        limits=limits,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level in ("debug", "trace"),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=keep_alive_timeout,  # type: ignore[arg-type]  # used as a float
        backlog=BACKLOG,
        lifespan="off",
    )


def _limits(header_timeout: float, body_timeout: float, max_connections: int,
            fd_limit: int, body_min_rate: float) -> Limits:
    cap = connection_cap(max_connections, fd_limit)
    if cap < max_connections:
        log.info("at most %d connections (open-file limit %d)", cap, fd_limit)
    return Limits(header_timeout=header_timeout, body_timeout=body_timeout,
                  max_connections=cap, body_min_rate=body_min_rate)


def _snap(snap_store: str | os.PathLike[str] | None, push_token: str | None,
          max_pack_size: int) -> dict[str, Any]:
    return {"snap_store": snap_store, "push_token": push_token, "max_pack_size": max_pack_size}


def serve(
    directory: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    site_dir: str | os.PathLike[str] | None = None,
    allowed_origins: Iterable[str] = (),
    ready: Callable[[str], None] | None = None,
    *,
    isolate: bool = False,
    log_level: str = "warning",
    header_timeout: float = 10.0,
    body_timeout: float = 10.0,
    keep_alive_timeout: float = 5.0,
    max_connections: int = 512,
    body_min_rate: float = DEFAULT_BODY_MIN_RATE,
    snap_store: str | os.PathLike[str] | None = None,
    push_token: str | None = None,
    max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
    workers: int | None = None,
) -> None:
    """Serve ``directory`` until interrupted (Ctrl-C / SIGTERM); blocks.

    ``ready(url)`` is called once the socket listens (``port=0`` picks a free
    port; the URL has the real one). Raises the ``OSError`` of the bind if it
    cannot listen (``errno.EADDRINUSE`` for a busy port; nothing is printed),
    FileNotFoundError/NotADirectoryError for a bad directory.

    Slow clients (seconds): a request's line and headers must arrive within
    ``header_timeout`` of the connection opening or of the previous response;
    a request body within ``body_timeout`` of its headers plus one second per
    ``body_min_rate`` bytes received; an idle keep-alive connection is closed
    after ``keep_alive_timeout``. At most ``max_connections`` connections are
    open (lowered to fit the open-file limit, whose soft value is first raised
    to the hard one).

    ``snap_store``: a snapdir store directory served under ``/snap/``, with
    push endpoints guarded by ``push_token`` (None: pushes are refused) and
    capped at ``max_pack_size`` bytes per pack (see :mod:`.snapstore`).

    ``workers``: processes serving the same sockets (None: :func:`default_workers`).
    The connection cap is shared out between them (each gets
    ``ceil(max_connections / workers)``). With more than one, the server runs in
    forked children (Linux only; elsewhere, or off the main thread, one process).
    """
    count = default_workers() if workers is None else workers
    if count < 1:
        raise ValueError("workers must be at least 1")
    if count > 1 and not _can_fork():
        count = 1
    fd_limit = raise_fd_limit()
    limits = _limits(header_timeout, body_timeout, math.ceil(max_connections / count),
                     fd_limit, body_min_rate)
    snap = _snap(snap_store, push_token, max_pack_size)

    def make_config() -> _Config:
        return _config(directory, host, port, site_dir, allowed_origins, isolate, log_level,
                       limits, keep_alive_timeout, snap)

    if count == 1:
        config = make_config()
        sockets = _bind(host, port)
        server = _Server(config, ready)
        try:
            server.run(sockets=sockets)
        except SystemExit as exc:  # uvicorn exits on start-up failures
            if server.started:
                raise
            raise OSError(f"cannot serve on {_url(host, port)}") from exc
        finally:
            for sock in sockets:
                sock.close()
        if not server.started:
            raise OSError(f"cannot serve on {_url(host, port)}")
        return
    # The checks create_app makes, here in the parent: its errors are raised, not a
    # worker's exit code. Each worker builds its own app after the fork (no thread
    # of the parent is inherited half-way).
    check_app_args(directory, site_dir=site_dir, **snap)
    sockets = _bind(host, port)
    try:
        for sock in sockets:
            sock.listen(BACKLOG)
        url = _url(host, sockets[0].getsockname()[1])
        _Workers(count, make_config, sockets).run(url, ready)
    finally:
        for sock in sockets:
            sock.close()


class _Workers:
    """The parent of :func:`serve`'s worker processes (see the module)."""

    def __init__(self, count: int, make_config: Callable[[], _Config],
                 sockets: list[socket.socket]) -> None:
        self.count = count
        self.make_config = make_config
        self.sockets = sockets
        self.children: dict[int, float] = {}  # pid -> time.monotonic() at its start
        self.stop_signals: list[int] = []
        self._ready_r, self._ready_w = os.pipe()

    def _spawn(self) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = time.monotonic()
            return
        code = 1  # the worker: serves until told to stop, never returns into the caller
        try:
            self.children.clear()  # (the parent's: a worker has none)
            os.close(self._ready_r)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

            def listening(_url: str) -> None:
                os.write(self._ready_w, b"+")

            server = _Server(self.make_config(), listening)
            server.run(sockets=self.sockets)
            code = 0 if server.started else 1
        except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it stopped on
            code = 0
        except SystemExit as exc:  # uvicorn's start-up failures
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("a server worker failed")
        finally:
            os._exit(code)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signals.append(signum)
        self._signal_children(signal.SIGTERM)  # SIGTERM: one graceful stop, never forced

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self, block: bool) -> list[tuple[int, int, float]]:
        """Workers that exited: ``(pid, wait status, seconds it ran)``. With ``block``,
        waits (in steps of 0.2 s, so a stop signal is seen) until one has, or until a
        stop signal. Only our workers are waited for (never another child of the
        process that called ``serve``)."""
        while True:
            done = []
            for pid in list(self.children):
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    got, status = pid, 0
                if got:
                    done.append((pid, status, time.monotonic() - self.children.pop(pid)))
            if done or not block or not self.children or self.stop_signals:
                return done
            time.sleep(0.2)

    def _wait_ready(self) -> None:
        """Until every worker listens; OSError if one exits first."""
        ready = 0
        while ready < self.count and not self.stop_signals:
            readable, _, _ = select.select([self._ready_r], [], [], 0.2)
            if readable:
                ready += len(os.read(self._ready_r, 64))
            if self._reap(block=False):
                raise OSError("a server worker failed to start")

    def run(self, url: str, ready: Callable[[str], None] | None) -> None:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for _ in range(self.count):
                self._spawn()
            self._wait_ready()
            if ready is not None and not self.stop_signals:
                ready(url)
            quick: collections.deque[float] = collections.deque()  # recent replacements
            while self.children and not self.stop_signals:
                for pid, status, uptime in self._reap(block=True):
                    if self.stop_signals:
                        break
                    now = time.monotonic()
                    quick.append(now)
                    while quick and quick[0] < now - _CRASH_WINDOW_S:
                        quick.popleft()
                    if uptime < _CRASH_WINDOW_S and len(quick) > _CRASHES_ALLOWED:
                        raise OSError(f"server workers keep exiting (the last one, {pid}, "
                                      f"with {_exit_text(status)}): stopping")
                    log.warning("server worker %d exited (%s): starting another", pid,
                                _exit_text(status))
                    self._spawn()
        finally:
            self._stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._ready_r)
            os.close(self._ready_w)
        # As uvicorn does after a graceful stop: the signal's usual effect now
        # (KeyboardInterrupt for SIGINT, which `lockbox serve` takes as a normal stop).
        for signum in reversed(self.stop_signals):
            signal.raise_signal(signum)

    def _stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the workers left, then SIGKILL after ``timeout`` seconds."""
        self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            if not self._reap(block=False):
                time.sleep(0.05)
        if self.children:
            self._signal_children(signal.SIGKILL)
            for pid in list(self.children):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            self.children.clear()


def _exit_text(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit code {code}"


@contextlib.contextmanager
def running(
    directory: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    site_dir: str | os.PathLike[str] | None = None,
    allowed_origins: Iterable[str] = (),
    isolate: bool = False,
    timeout: float = 10.0,
    log_level: str = "warning",
    header_timeout: float = 10.0,
    body_timeout: float = 10.0,
    keep_alive_timeout: float = 5.0,
    max_connections: int = 512,
    body_min_rate: float = DEFAULT_BODY_MIN_RATE,
    snap_store: str | os.PathLike[str] | None = None,
    push_token: str | None = None,
    max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
) -> Iterator[str]:
    """Run the server in a background thread; yield its URL (``http://host:port/``).

    For tests and tools: start and stop each wait at most ``timeout`` seconds
    (TimeoutError if the server does not come up or does not stop). The limits
    are those of :func:`serve` (the open-file limit is not changed here).
    """
    up = threading.Event()
    config = _config(directory, host, port, site_dir, allowed_origins, isolate, log_level,
                     _limits(header_timeout, body_timeout, max_connections, current_fd_limit(),
                             body_min_rate),
                     keep_alive_timeout, _snap(snap_store, push_token, max_pack_size))
    sockets = _bind(host, port)
    server = _Server(config, lambda _url: up.set())
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=sockets)
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
        finally:
            for sock in sockets:
                sock.close()
            up.set()

    thread = threading.Thread(target=run, name="lockbox-server", daemon=True)
    thread.start()
    if not up.wait(timeout) or server.url is None:
        server.should_exit = True
        thread.join(timeout)
        if failure:
            raise RuntimeError("the server failed to start") from failure[0]
        raise TimeoutError(f"the server did not start within {timeout} s")
    try:
        yield server.url
    finally:
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the server did not stop within {2 * timeout} s")
