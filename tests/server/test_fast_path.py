"""The archive hot path (lockbox_server.app.ArchiveFastPath, files.FdCache, the direct
answers of guard.GuardedHttpToolsProtocol) and the worker processes of ``serve``.

Every fast path is checked against the slow one: the same bytes on the wire with the
direct answers off, the same answers through a symlink (the careful path), and a replaced
archive never served stale from a cached descriptor.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import h11
import httpx
import pytest

from lockbox_server import running
from lockbox_server.files import FdCache
from lockbox_server.guard import MAX_HEAD_SIZE, GuardedHttpToolsProtocol

from .conftest import pattern

GUARD_S = 20.0  # hang guard
SIZE = 300_000  # more than one CHUNK_SIZE: whole-file GETs stream, ranges are direct


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    root = tmp_path / "archives"
    root.mkdir()
    (root / "a.bin").write_bytes(pattern(SIZE))
    os.utime(root / "a.bin", (1_600_000_000, 1_600_000_000))
    (root / "link.bin").symlink_to("a.bin")
    (root / "empty.bin").write_bytes(b"")
    return root


def _addr(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _exchange(url: str, raw: bytes) -> bytes:
    """Send ``raw`` (requests ending with one that closes), read until the server closes."""
    with socket.create_connection(_addr(url), timeout=GUARD_S) as s:
        s.sendall(raw)
        out = b""
        while chunk := s.recv(1 << 16):
            out += chunk
    return out


def _responses(raw: bytes, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse a stream of answers to requests of ``methods`` (h11 as the client)."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(raw)
    conn.receive_data(b"")
    out: list[tuple[int, dict[str, str], bytes]] = []
    for method in methods:
        # h11 reads an answer against the request it sent: send it the same method.
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        event = conn.next_event()
        assert isinstance(event, h11.Response), event
        status = event.status_code
        headers = {k.decode(): v.decode() for k, v in event.headers}
        body = b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        out.append((status, headers, body))
        if conn.their_state is not h11.DONE:
            break
        conn.start_next_cycle()
    return out


def _requests(etag: str) -> list[bytes]:
    heads = [
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=0-16383",
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=-100",
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=1000-1999, 5000-5999",  # multipart
        "GET /archives/a.bin HTTP/1.1",  # the whole file: streamed
        "HEAD /archives/a.bin HTTP/1.1",
        "HEAD /archives/a.bin HTTP/1.1\r\nRange: bytes=0-9",
        f"GET /archives/a.bin HTTP/1.1\r\nIf-None-Match: {etag}",
        'GET /archives/a.bin HTTP/1.1\r\nIf-Match: "nope"\r\nRange: bytes=0-9',
        f"GET /archives/a.bin HTTP/1.1\r\nIf-Range: {etag}\r\nRange: bytes=10-19",
        'GET /archives/a.bin HTTP/1.1\r\nIf-Range: "other"\r\nRange: bytes=10-19',
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=999999-",
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=0-0\r\nRange: bytes=1-1",
        "GET /archives/empty.bin HTTP/1.1\r\nRange: bytes=0-",
        "GET /archives/empty.bin HTTP/1.1",
        "GET /archives/link.bin HTTP/1.1\r\nRange: bytes=0-9",
        "GET /archives/missing.bin HTTP/1.1\r\nRange: bytes=0-9",
        "GET /archives/a%2Ebin HTTP/1.1\r\nRange: bytes=20-29",
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=299990-399999",  # clamped
        "GET /archives/empty.bin HTTP/1.1\r\nRange: bytes=0-0",
        "GET /archives/a.bin HTTP/1.1\r\nRange: bytes=000040-49",
        "GET /archives/a.bin HTTP/1.0\r\nRange: bytes=30-39",  # HTTP/1.0: closes
    ]
    return [(h + "\r\nHost: x\r\n\r\n").encode() for h in heads]


def _normalised(raw: bytes) -> bytes:
    raw = re.sub(rb"date: [^\r]*\r\n", b"", raw)
    return re.sub(rb"[0-9a-f]{24}", b"BOUNDARY", raw)  # multipart boundaries are random


def _one_by_one(url: str, requests: list[bytes]) -> list[bytes]:
    return [_normalised(_exchange(url, r.replace(b"\r\nHost: x\r\n",
                                                 b"\r\nHost: x\r\nConnection: close\r\n")))
            for r in requests]


def test_direct_answers_are_the_bytes_of_the_asgi_path(
        archive_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(archive_dir) as url:
        etag = httpx.head(url + "archives/a.bin").headers["etag"]
        fast = _one_by_one(url, _requests(etag))
    monkeypatch.setattr(GuardedHttpToolsProtocol, "direct_answers", False)
    with running(archive_dir) as url:
        slow = _one_by_one(url, _requests(etag))
    assert fast == slow
    statuses = [int(r.split(b" ", 2)[1]) for r in fast]
    assert statuses == [206, 206, 206, 200, 200, 200, 304, 412, 206, 200, 416, 200, 416,
                        200, 206, 404, 206, 206, 416, 206, 206]


def test_pipelined_requests_are_answered_in_order(archive_dir: Path) -> None:
    data = pattern(SIZE)
    with running(archive_dir) as url:
        etag = httpx.head(url + "archives/a.bin").headers["etag"]
        requests = _requests(etag)
        methods = [r.split(b" ", 1)[0].decode() for r in requests]
        got = _responses(_exchange(url, b"".join(requests)), methods)
    assert len(got) == len(requests)  # the last one (HTTP/1.0) closes the connection
    assert got[0][0] == 206 and got[0][2] == data[:16384]
    assert got[1][2] == data[-100:]
    assert got[2][1]["content-type"].startswith("multipart/byteranges")
    assert got[3][0] == 200 and got[3][2] == data
    assert got[4][2] == b"" and got[4][1]["content-length"] == str(SIZE)
    assert [g[0] for g in got[6:8]] == [304, 412]
    assert got[8][2] == data[10:20] and got[9][2] == data
    assert got[14][2] == data[:10] and got[14][1]["etag"] == etag  # through the symlink
    assert got[15][0] == 404
    assert got[16][2] == data[20:30] and got[17][2] == data[299990:]
    assert got[18][0] == 416 and got[19][2] == data[40:50] and got[20][2] == data[30:40]


def test_a_replaced_archive_is_never_served_stale(archive_dir: Path) -> None:
    path = archive_dir / "a.bin"
    with running(archive_dir) as url, httpx.Client(timeout=GUARD_S) as http:
        first = http.get(url + "archives/a.bin", headers={"Range": "bytes=0-99"})
        assert first.content == pattern(SIZE)[:100]
        # Replaced by a rename (a new inode): the cached descriptor must not be used.
        new = archive_dir / ".new"
        new.write_bytes(pattern(SIZE, b"second"))
        os.replace(new, path)
        second = http.get(url + "archives/a.bin", headers={"Range": "bytes=0-99"})
        assert second.content == pattern(SIZE, b"second")[:100]
        assert second.headers["etag"] != first.headers["etag"]
        pinned = http.get(url + "archives/a.bin",
                          headers={"Range": "bytes=0-99", "If-Match": first.headers["etag"]})
        assert pinned.status_code == 412
        # Rewritten in place (the same inode), a new mtime: new validators, new bytes.
        with open(path, "r+b") as f:
            f.write(pattern(100, b"third"))
        os.utime(path, (1_700_000_000, 1_700_000_000))
        third = http.get(url + "archives/a.bin", headers={"Range": "bytes=0-99"})
        assert third.content == pattern(100, b"third")
        assert third.headers["etag"] not in (first.headers["etag"], second.headers["etag"])
        # Grown in place: the new size is what the whole answer says.
        with open(path, "ab") as f:
            f.write(b"tail")
        whole = http.get(url + "archives/a.bin")
        assert whole.headers["content-length"] == str(SIZE + 4) and whole.content[-4:] == b"tail"
        # Removed: 404, and a symlink put in its place is checked as a symlink.
        path.unlink()
        assert http.get(url + "archives/a.bin").status_code == 404
        path.symlink_to("/etc/hostname")
        assert http.get(url + "archives/a.bin").status_code == 404


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_the_descriptor_cache_is_bounded_and_closed(archive_dir: Path) -> None:
    for i in range(50):
        (archive_dir / f"f{i:02}.bin").write_bytes(pattern(1000, b"%d" % i))
    before = _open_fds()
    with running(archive_dir) as url, httpx.Client(timeout=GUARD_S) as http:
        for _round in range(2):
            for i in range(50):
                r = http.get(url + f"archives/f{i:02}.bin", headers={"Range": "bytes=0-99"})
                assert r.content == pattern(1000, b"%d" % i)[:100]
        assert _open_fds() <= before + 32 + 16  # the cache (32) + sockets, loop, threads
    assert _open_fds() <= before + 2


def test_fd_cache_keeps_a_retired_descriptor_until_released(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"old bytes")
    cache = FdCache(capacity=1)
    got = cache.acquire("x", str(path), os.lstat(path))
    assert got is not None
    fd, _st, old_validators, release = got
    new = tmp_path / "y"
    new.write_bytes(b"new bytes!")
    os.replace(new, path)
    again = cache.acquire("x", str(path), os.lstat(path))
    assert again is not None and again[0] != fd and again[2].etag != old_validators.etag
    assert os.pread(fd, 9, 0) == b"old bytes"  # still open: a response is using it
    release()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed once its last user let go
    assert os.pread(again[0], 10, 0) == b"new bytes!"
    again[3]()
    cache.close()
    with pytest.raises(OSError):
        os.fstat(again[0])


def test_a_request_head_over_the_limit_is_refused(archive_dir: Path) -> None:
    """One endless header, or very many headers: 400 and closed (httptools has no limit of
    its own); the head is never read much past the limit."""
    with running(archive_dir, header_timeout=60) as url:
        for head in (b"GET /archives/a.bin HTTP/1.1\r\nX-Big: " + b"y" * (MAX_HEAD_SIZE + 8200),
                     b"GET /archives/a.bin HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEAD_SIZE // 8)):
            with socket.create_connection(_addr(url), timeout=5) as s:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for i in range(0, len(head), 4096):  # (refused before the end: fine)
                        s.sendall(head[i:i + 4096])
                        time.sleep(0.02)
                answer = b""
                with contextlib.suppress(ConnectionResetError):  # a close with unread bytes
                    while chunk := s.recv(65536):  # (socket.timeout: never closed: fails)
                        answer += chunk
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]
        ok = httpx.get(url + "archives/a.bin", headers={"Range": "bytes=0-0"})
        assert ok.status_code == 206


# -- worker processes ------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


@contextlib.contextmanager
def _serve_process(directory: Path, workers: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "LOCKBOX_SERVE_WORKERS": str(workers)}
    proc = subprocess.Popen([sys.executable, "-m", "lockbox_server", str(directory),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving DIR at URL (Ctrl-C to stop)"
        match = re.search(r" at (http://\S+) ", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=GUARD_S)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
def test_workers_share_the_port_are_replaced_and_stop_together(archive_dir: Path) -> None:
    data = pattern(SIZE)
    with _serve_process(archive_dir, 2) as (proc, url):
        workers = _children(proc.pid)
        assert len(workers) == 2
        for i in range(20):  # fresh connections: the kernel hands them to either worker
            r = httpx.get(url + "archives/a.bin", headers={"Range": f"bytes={i}-{i + 99}"})
            assert r.status_code == 206 and r.content == data[i:i + 100]
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        now = _children(proc.pid)
        assert len(now) == 2 and victim not in now  # a new worker took its place
        assert httpx.get(url + "archives/a.bin").content == data
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the parent
        assert proc.wait(GUARD_S) == 0
        for pid in now:
            assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
def test_sigterm_stops_every_worker(archive_dir: Path) -> None:
    with _serve_process(archive_dir, 2) as (proc, url):
        workers = _children(proc.pid)
        assert httpx.get(url + "archives/a.bin", headers={"Range": "bytes=0-0"}).status_code == 206
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GUARD_S)
        assert code in (0, -signal.SIGTERM)  # as uvicorn: the signal's own effect after a stop
        for pid in workers:
            assert _is_zombie_or_gone(pid)
