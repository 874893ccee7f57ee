"""Running the app under uvicorn: :func:`serve` (blocking) and :func:`running` (a thread).

The listening sockets are bound here, not by uvicorn: a busy port is then a
plain ``OSError`` (``errno.EADDRINUSE``) raised by :func:`serve`, and uvicorn
prints nothing of its own (it would log the error and ``sys.exit``). Every
connection goes through :class:`.guard.GuardedH11Protocol` (read deadlines, a
connection cap).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import uvicorn

from .app import create_app
from .guard import (
    DEFAULT_BODY_MIN_RATE,
    GuardedH11Protocol,
    Limits,
    connection_cap,
    current_fd_limit,
    raise_fd_limit,
)
from .snapstore import DEFAULT_MAX_PACK_SIZE

__all__ = ["serve", "running"]

log = logging.getLogger("lockbox_server")

#: Pending connections the kernel queues before accept().
BACKLOG = 2048


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class _Config(uvicorn.Config):
    """uvicorn.Config carrying our :class:`.guard.Limits` (read by the protocol)."""

    def __init__(self, app: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedH11Protocol, ws="none", **kwargs)
        self.limits = limits


class _Server(uvicorn.Server):
    """uvicorn.Server that reports the URL (with the real port) once listening."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._ready = ready
        self.url: str | None = None

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
    """
    fd_limit = raise_fd_limit()
    config = _config(directory, host, port, site_dir, allowed_origins, isolate, log_level,
                     _limits(header_timeout, body_timeout, max_connections, fd_limit,
                             body_min_rate),
                     keep_alive_timeout, _snap(snap_store, push_token, max_pack_size))
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
