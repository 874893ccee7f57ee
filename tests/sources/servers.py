"""Test HTTP servers: a Starlette app on a real uvicorn, on 127.0.0.1.

Routes (``{name}`` is a file in the served directory):

* ``/files/{name}``: FileResponse (Range, ETag, Last-Modified, 416);
* ``/norange/{name}``: ignores Range, always 200 + the whole body, streamed in
  64 KiB chunks; ``ServerState.norange_sent`` counts the bytes actually sent;
* ``/changing/{name}``: the first request gets ``{name}``, later ones
  ``{name}.v2`` (other content, other ETag); ignores If-Match;
* ``/changing-strict/{name}``: the same, but answers 412 when If-Match does
  not match the current ETag;
* ``/noetag/{name}``: FileResponse without the ETag header;
* ``/slow/{name}``: FileResponse after ``ServerState.delay`` seconds; counts
  requests in flight (``inflight``, ``max_inflight``);
* ``/auth/{name}``: FileResponse, 403 unless ``Authorization: Bearer let-me-in``;
* ``/status/{code}``: always that status;
* ``/redirect/{name}``: 307 to ``/files/{name}``;
* ``/bogus/{kind}/{name}``: deliberately broken 206 answers (see ``_bogus``).

Unknown files give 404.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

__all__ = ["ServerState", "make_app", "LiveServer", "live_server", "unused_port"]

AUTH_TOKEN = "Bearer let-me-in"
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


class ServerState:
    """Counters shared between the server thread and the tests."""

    def __init__(self, root: Path, delay: float = 0.2) -> None:
        self.root = root
        self.delay = delay
        self._lock = threading.Lock()
        self.norange_sent = 0
        self.inflight = 0
        self.max_inflight = 0
        self.hits: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def reset(self) -> None:
        with self._lock:
            self.norange_sent = 0
            self.inflight = 0
            self.max_inflight = 0
            self.hits.clear()
            self.requests.clear()

    def add_sent(self, n: int) -> None:
        with self._lock:
            self.norange_sent += n

    def hit(self, name: str) -> int:
        """Count a request for ``name``; return how many came before it."""
        with self._lock:
            before = self.hits.get(name, 0)
            self.hits[name] = before + 1
            return before

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append((request.url.path, dict(request.headers)))

    @contextmanager
    def tracking(self) -> Iterator[None]:
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            yield
        finally:
            with self._lock:
                self.inflight -= 1


def make_app(state: ServerState) -> Starlette:
    """The test app serving ``state.root``."""

    def path_of(request: Request, suffix: str = "") -> Path | None:
        name = request.path_params["name"]
        if "/" in name or name.startswith("."):
            return None
        path = state.root / (name + suffix)
        return path if path.is_file() else None

    def not_found() -> Response:
        return PlainTextResponse("not found", status_code=404)

    async def files(request: Request) -> Response:
        state.log(request)
        path = path_of(request)
        return FileResponse(path) if path is not None else not_found()

    async def norange(request: Request) -> Response:
        state.log(request)
        path = path_of(request)
        if path is None:
            return not_found()

        async def body() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(64 * 1024):
                    yield chunk
                    state.add_sent(len(chunk))  # runs once send() of the chunk returned
                    await asyncio.sleep(0)  # let the disconnect listener run

        size = path.stat().st_size
        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={"content-length": str(size), "etag": '"norange"'},
        )

    def changing_response(request: Request, strict: bool) -> Response:
        state.log(request)
        name = request.path_params["name"]
        first = state.hit("changing:" + name) == 0
        path = path_of(request, "" if first else ".v2")
        if path is None:
            return not_found()
        response = FileResponse(path, stat_result=os.stat(path))
        if_match = request.headers.get("if-match")
        if strict and if_match is not None and if_match != response.headers["etag"]:
            return PlainTextResponse("precondition failed", status_code=412)
        return response

    async def changing(request: Request) -> Response:
        return changing_response(request, strict=False)

    async def changing_strict(request: Request) -> Response:
        return changing_response(request, strict=True)

    async def noetag(request: Request) -> Response:
        state.log(request)
        path = path_of(request)
        if path is None:
            return not_found()
        response = FileResponse(path, stat_result=os.stat(path))
        del response.headers["etag"]
        return response

    async def slow(request: Request) -> Response:
        state.log(request)
        with state.tracking():
            await asyncio.sleep(state.delay)
        path = path_of(request)
        return FileResponse(path) if path is not None else not_found()

    async def auth(request: Request) -> Response:
        state.log(request)
        if request.headers.get("authorization") != AUTH_TOKEN:
            return PlainTextResponse("forbidden", status_code=403)
        path = path_of(request)
        return FileResponse(path) if path is not None else not_found()

    async def status(request: Request) -> Response:
        state.log(request)
        return PlainTextResponse("status", status_code=int(request.path_params["code"]))

    async def redirect(request: Request) -> Response:
        state.log(request)
        return RedirectResponse(f"/files/{request.path_params['name']}", status_code=307)

    async def bogus(request: Request) -> Response:
        state.log(request)
        path = path_of(request)
        match = _RANGE.match(request.headers.get("range", ""))
        if path is None or match is None:
            return not_found()
        return _bogus(request.path_params["kind"], path.read_bytes(), match)

    return Starlette(
        routes=[
            Route("/files/{name}", files),
            Route("/norange/{name}", norange),
            Route("/changing/{name}", changing),
            Route("/changing-strict/{name}", changing_strict),
            Route("/noetag/{name}", noetag),
            Route("/slow/{name}", slow),
            Route("/auth/{name}", auth),
            Route("/status/{code:int}", status),
            Route("/redirect/{name}", redirect),
            Route("/bogus/{kind}/{name}", bogus),
        ]
    )


def _bogus(kind: str, data: bytes, match: re.Match[str]) -> Response:
    """Broken 206 answers for the range asked in ``match``.

    ``shifted``: Content-Range one byte later than asked; ``star``: total
    ``*``; ``long`` / ``short``: right Content-Range, chunked body one KiB
    longer / one byte shorter; ``badlength``: Content-Length one less than
    Content-Range; ``multipart``: multipart/byteranges without Content-Range;
    ``gzip``: Content-Encoding gzip.
    """
    start, last = int(match.group(1)), int(match.group(2))
    end = min(last + 1, len(data))
    body = data[start:end]
    headers = {"content-range": f"bytes {start}-{end - 1}/{len(data)}", "etag": '"bogus"'}
    if kind == "shifted":
        headers["content-range"] = f"bytes {start + 1}-{end}/{len(data)}"
    elif kind == "star":
        headers["content-range"] = f"bytes {start}-{end - 1}/*"
    elif kind in ("long", "short"):
        extra = body + b"x" * 1024 if kind == "long" else body[:-1]

        async def chunks() -> AsyncIterator[bytes]:
            yield extra

        return StreamingResponse(chunks(), status_code=206, headers=headers)
    elif kind == "badlength":
        body = body[:-1]  # Content-Length (set from the body) is one less than the range
    elif kind == "multipart":
        del headers["content-range"]
        headers["content-type"] = "multipart/byteranges; boundary=xyz"
    elif kind == "gzip":
        headers["content-encoding"] = "gzip"
    return Response(body, status_code=206, headers=headers)


def unused_port() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port that does not listen (connections are refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a daemon thread."""

    def __init__(self, app: Starlette) -> None:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then;
        # without it every response waits ~40 ms for a delayed ACK (Nagle).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the test server thread died while starting")
            if time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError(f"the test server did not start within {timeout} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            self._server.force_exit = True
            raise RuntimeError(f"the test server did not stop within {timeout} s")


@contextmanager
def live_server(app: Starlette, timeout: float = 10.0) -> Iterator[LiveServer]:
    """Run ``app`` for the duration of the ``with`` block (start and stop time-bounded)."""
    server = LiveServer(app)
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop(timeout)
