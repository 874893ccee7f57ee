"""Running the app under uvicorn: :func:`serve` (blocking) and :func:`running` (a thread)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator

import uvicorn

from .app import create_app

__all__ = ["serve", "running"]


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


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


def _config(
    directory: str | os.PathLike[str],
    host: str,
    port: int,
    site_dir: str | os.PathLike[str] | None,
    allowed_origins: Iterable[str],
    isolate: bool,
    log_level: str,
) -> uvicorn.Config:
    app = create_app(directory, site_dir=site_dir, allowed_origins=allowed_origins,
                     isolate=isolate)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level in ("debug", "trace"),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        lifespan="off",
    )


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
) -> None:
    """Serve ``directory`` until interrupted (Ctrl-C / SIGTERM); blocks.

    ``ready(url)`` is called once the socket listens (``port=0`` picks a free
    port; the URL has the real one). Raises OSError if it cannot listen
    (uvicorn logs the reason), FileNotFoundError/NotADirectoryError for a bad
    directory.
    """
    server = _Server(
        _config(directory, host, port, site_dir, allowed_origins, isolate, log_level), ready
    )
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        if server.started:
            raise
        raise OSError(f"cannot listen on {_url(host, port)}") from exc
    if not server.started:
        raise OSError(f"cannot listen on {_url(host, port)}")


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
) -> Iterator[str]:
    """Run the server in a background thread; yield its URL (``http://host:port/``).

    For tests and tools: start and stop each wait at most ``timeout`` seconds
    (TimeoutError if the server does not come up or does not stop).
    """
    up = threading.Event()
    server = _Server(
        _config(directory, host, port, site_dir, allowed_origins, isolate, log_level),
        lambda _url: up.set(),
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
        finally:
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
