"""Helpers for the CLI tests: a static file server on a real uvicorn, and a
source tree with known modes and mtimes."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["static_server", "make_tree", "FILE_MTIME_NS", "DIR_MTIME_NS"]

FILE_MTIME_NS = 1_600_000_000_123_456_789
DIR_MTIME_NS = 1_500_000_000_987_654_321


def _app(root: Path) -> Starlette:
    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        path = root / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path)

    return Starlette(routes=[Route("/{name}", serve)])


@contextmanager
def static_server(root: Path, timeout: float = 10.0) -> Iterator[str]:
    """Serve the files of ``root`` at ``http://127.0.0.1:PORT/NAME`` (Range
    requests via FileResponse); yields the base URL. Start and stop are bounded."""
    # IPPROTO_TCP so that asyncio sets TCP_NODELAY (no 40 ms delayed-ACK stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app(root), log_level="warning", lifespan="off",
                            access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server died while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start in time")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        if thread.is_alive():  # pragma: no cover - would hang the test run otherwise
            raise RuntimeError("the test server did not stop in time")


def make_tree(root: Path, big: bytes) -> Path:
    """A source tree: nested dirs with their own modes, an empty file, a big
    file, a symlink; every mtime fixed. Returns ``root / "src"``."""
    src = root / "src"
    nested = src / "docs" / "deep" / "nested"
    nested.mkdir(parents=True)
    (nested / "note.txt").write_text("hello, lockbox\n")
    (src / "empty.txt").write_bytes(b"")
    (src / "big.bin").write_bytes(big)
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.symlink("docs/deep/nested/note.txt", src / "link")
    os.chmod(nested / "note.txt", 0o600)
    os.chmod(src / "run.sh", 0o755)
    os.chmod(src / "docs", 0o750)
    os.chmod(src / "docs" / "deep", 0o700)
    for p in [nested / "note.txt", src / "empty.txt", src / "big.bin", src / "run.sh"]:
        os.utime(p, ns=(FILE_MTIME_NS, FILE_MTIME_NS))
    os.utime(src / "link", ns=(FILE_MTIME_NS, FILE_MTIME_NS), follow_symlinks=False)
    for d in [nested, src / "docs" / "deep", src / "docs", src]:
        os.utime(d, ns=(DIR_MTIME_NS, DIR_MTIME_NS))
    return src
