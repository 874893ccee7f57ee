"""Slow and idle clients (lockbox_server.guard): read deadlines, the connection cap, fd limits.

Everything runs against a real uvicorn server on 127.0.0.1. Counts and times are bounded:
a few hundred sockets at most, and every wait has a generous limit (hang guards, not
timing assertions).
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from lockbox_server import running
from lockbox_server.guard import FD_RESERVE, Limits, connection_cap

from .conftest import SPARSE_SIZE

HEAD = b"GET /archives/a.lbox HTTP/1.1\r\nHost: x\r\n"
GUARD_S = 15.0  # hang guard for anything the server should do within a couple of seconds


def _addr(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    (tmp_path / "a.lbox").write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    with open(tmp_path / "sparse.lbox", "wb") as f:
        f.truncate(SPARSE_SIZE)
    return tmp_path


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); never blocks.

    Whatever the server sent before closing is read and dropped.
    """
    poller = select.poll()  # not select(): descriptors may be above 1024
    poller.register(sock, select.POLLIN)
    while poller.poll(0):
        try:
            if not sock.recv(65536):
                return True
        except OSError:  # reset
            return True
    return False


def _dribble(sock: socket.socket, n: int) -> bool:
    """Send one more header line; False if the server has closed the connection."""
    try:
        sock.sendall(b"X-Slow-%d: y\r\n" % n)
    except OSError:
        return False
    return True


def _dribble_until_closed(sock: socket.socket, piece: Callable[[int], bytes]) -> int | None:
    """Send ``piece(n)`` every 0.2 s until the server closes ``sock``: how many pieces
    were sent, or None if it is still open after :data:`GUARD_S`."""
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < GUARD_S:
        n += 1
        try:
            sock.sendall(piece(n))
        except OSError:
            return n
        if _closed_by_server(sock):
            return n
        time.sleep(0.2)
    return None


@contextlib.contextmanager
def _sockets(url: str, count: int, first: bytes = HEAD) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.create_connection(_addr(url), timeout=5)
            s.sendall(first)
            opened.append(s)
        yield opened
    finally:
        for s in opened:
            s.close()


def _normal_get(url: str) -> httpx.Response:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        return client.get(url + "archives/a.lbox", headers={"Range": "bytes=0-9"})


def test_slowloris_is_shed_and_normal_gets_still_work(archive_dir: Path) -> None:
    """320 connections send a request head one line at a time: each is closed once its

    head deadline passes (dribbling does not extend it), and a normal GET is answered
    meanwhile and afterwards. The cap (512) is above the count, so the deadline does it.
    """
    with running(archive_dir, header_timeout=2.0) as url, _sockets(url, 320) as slow:
        assert _normal_get(url).status_code == 206  # meanwhile
        alive = set(range(len(slow)))
        line = 0
        deadline = time.monotonic() + GUARD_S
        while alive and time.monotonic() < deadline:
            line += 1
            for i in list(alive):
                if not _dribble(slow[i], line) or _closed_by_server(slow[i]):
                    alive.discard(i)
            time.sleep(0.25)
        assert not alive, f"{len(alive)} slow connections still open after {GUARD_S} s"
        assert line >= 4  # they were dribbling for a while: the deadline is absolute
        r = _normal_get(url)  # afterwards
        assert r.status_code == 206 and r.content == bytes(range(10))


def test_idle_connection_and_slow_second_request_are_closed(archive_dir: Path) -> None:
    with running(archive_dir, header_timeout=1.0, keep_alive_timeout=60) as url:
        with socket.create_connection(_addr(url), timeout=GUARD_S) as idle:
            assert idle.recv(1) == b""  # sent nothing: closed after the head deadline
        with socket.create_connection(_addr(url), timeout=GUARD_S) as s:
            s.sendall(HEAD + b"Range: bytes=0-1\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\x00\x01"):
                answer += s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 206")
            # keep-alive: the next head, dribbled, gets its own deadline
            s.sendall(b"GET /archives/a.lbox HTTP/1.1\r\n")
            assert _dribble_until_closed(s, lambda n: b"X-Slow-%d: y\r\n" % n) is not None


def test_slow_body_is_closed(archive_dir: Path) -> None:
    with running(archive_dir, body_timeout=1.0) as url, \
            socket.create_connection(_addr(url), timeout=GUARD_S) as s:
        s.sendall(HEAD + b"Content-Length: 100000\r\n\r\n" + b"x" * 10)
        # the 200 may come first (the body is not needed), then the close
        assert _dribble_until_closed(s, lambda _n: b"x") is not None


def test_connection_cap_evicts_the_oldest_waiting_connection(archive_dir: Path) -> None:
    """Beyond the cap, new connections push out the ones that waited longest for a head
    (long before the 60 s head deadline), and a normal GET is served."""
    cap = 50
    with running(archive_dir, header_timeout=60, max_connections=cap) as url, \
            _sockets(url, 120) as waiting:
        r = _normal_get(url)
        assert r.status_code == 206
        deadline = time.monotonic() + GUARD_S
        closed: set[int] = set()
        while time.monotonic() < deadline and len(closed) < len(waiting) - cap:
            closed |= {i for i, s in enumerate(waiting) if i not in closed and _closed_by_server(s)}
            time.sleep(0.1)
        assert len(closed) >= len(waiting) - cap
        # the oldest went first: the 120 - 50 pushed out by the later ones, one by the GET
        assert max(closed) <= len(waiting) - cap


def test_connection_cap_refuses_when_every_connection_is_busy(archive_dir: Path) -> None:
    with running(archive_dir, max_connections=3) as url:
        busy = [socket.create_connection(_addr(url), timeout=GUARD_S) for _ in range(3)]
        try:
            for s in busy:  # a 1 GiB answer the client does not read: busy until closed
                s.sendall(b"GET /archives/sparse.lbox HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(12) == b"HTTP/1.1 200"
            with socket.create_connection(_addr(url), timeout=GUARD_S) as extra:
                answer = b""
                while chunk := extra.recv(65536):
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 503") and b"connection: close" in answer
        finally:
            for s in busy:
                s.close()
        r = _normal_get(url)  # the busy ones are gone: served again
        assert r.status_code == 206


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        Limits(header_timeout=0)
    with pytest.raises(ValueError):
        Limits(max_connections=0)


def test_connection_cap_fits_the_fd_limit() -> None:
    assert connection_cap(512, 20000) == 512
    assert connection_cap(512, 256) == (256 - FD_RESERVE) // 2
    assert connection_cap(512, 10) == 1


def test_serve_raises_the_soft_fd_limit() -> None:
    code = (
        "import resource\n"
        "from lockbox_server.guard import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "print(soft, raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )

    def low_limit() -> None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20, check=True, preexec_fn=low_limit)
    before, returned, after, hard = (int(x) for x in done.stdout.split())
    assert before <= 256
    assert returned == after and after >= before
    if hard >= 0 and hard > 256:
        assert after > 256
