"""Helpers for the CLI tests: running ``lockbox`` in-process (``Runner``) or as a real
process (``run_lockbox``), a static file server on a real uvicorn, and a source tree
with known modes and mtimes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from lockbox import cli

__all__ = ["static_server", "make_tree", "FILE_MTIME_NS", "DIR_MTIME_NS", "Result", "Runner",
           "one_line_error", "lockbox_command", "run_lockbox", "WEAK"]

WEAK = ["--argon2-memory-kib", "8", "--argon2-time", "1"]  # cheap Argon2id for `create`


@dataclass
class Result:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


class Runner:
    """``cli.main`` in-process with captured (binary) stdout and stderr."""

    def __init__(self, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        self.cap = capsysbinary

    def __call__(self, *argv: str | os.PathLike[str]) -> Result:
        self.cap.readouterr()
        rc = cli.main([os.fspath(a) for a in argv])
        out, err = self.cap.readouterr()
        return Result(rc, out, err.decode("utf-8", "surrogateescape"))

    def ok(self, *argv: str | os.PathLike[str]) -> Result:
        r = self(*argv)
        assert r.rc == 0, r.err
        assert "Traceback" not in r.err
        return r


def one_line_error(r: Result, rc: int) -> str:
    """Assert exit code ``rc`` and exactly one ``lockbox: ...`` line on stderr."""
    assert r.rc == rc, (r.rc, r.err)
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("lockbox: ")
    assert "Traceback" not in r.err
    return lines[0]


def lockbox_command() -> list[str]:
    """The installed ``lockbox`` entry point next to this Python (else ``-m``)."""
    script = Path(sys.executable).parent / "lockbox"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "lockbox.cli"]


def run_lockbox(*argv: str | os.PathLike[str], password: str | None = None,
                debug: bool = False, **kw: object) -> subprocess.CompletedProcess[bytes]:
    """A real ``lockbox`` process; no LOCKBOX_* variables but the password given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKBOX_")}
    if password is not None:
        env["LOCKBOX_PASSWORD"] = password
    if debug:
        env["LOCKBOX_DEBUG"] = "1"
    return subprocess.run([*lockbox_command(), *map(os.fspath, argv)], env=env,  # type: ignore[call-overload]
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                          check=False, **kw)

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
