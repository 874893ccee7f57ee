"""``lockbox serve``: the banner (where, the viewer, the archives it serves) and one
clear line when the port is busy. The library side is ``lockbox_server.serve`` and
``lockbox_server.archive_urls``; the fakes here pin the CLI's part, the real-process
tests the whole."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import lockbox_server
from cli_helpers import Runner, lockbox_command, one_line_error

HAS_ARCHIVE_URLS = hasattr(lockbox_server, "archive_urls")
needs_archive_urls = pytest.mark.skipif(
    not HAS_ARCHIVE_URLS, reason="lockbox_server.archive_urls (and EADDRINUSE from serve) "
    "not in this checkout yet")
URL = "http://127.0.0.1:8123/"


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    return Runner(capsysbinary)


def fake_serve(error: OSError | None = None) -> Callable[..., None]:
    def serve(directory: str, *, ready: Callable[[str], None], **kw: object) -> None:
        if error is not None:
            raise error
        ready(URL)

    return serve


def fake_archive_urls(total: int) -> Callable[..., tuple[list[str], int]]:
    def archive_urls(directory: str, base_url: str, limit: int = 10) -> tuple[list[str], int]:
        assert base_url == URL
        names = [f"a{i:02}.lbox" for i in range(total)]
        return [f"{base_url}archives/{n}" for n in names[:limit]], total

    return archive_urls


def test_banner_lists_the_first_ten(run: Runner, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockbox_server, "serve", fake_serve())
    monkeypatch.setattr(lockbox_server, "archive_urls", fake_archive_urls(12), raising=False)
    site = tmp_path / "site"
    r = run.ok("serve", tmp_path, "--site", site)
    assert r.lines == [
        f"serving {tmp_path} at {URL} (Ctrl-C to stop)",
        f"  viewer:   {URL}",
        "  archives: 12",
        *[f"    {URL}archives/a{i:02}.lbox" for i in range(10)],
        "    \u2026 and 2 more",
    ]
    monkeypatch.setattr(lockbox_server, "archive_urls", fake_archive_urls(3))
    monkeypatch.setattr("lockbox.cli._default_site", lambda: None)
    r = run.ok("serve", tmp_path)
    assert r.lines[1] == f"  viewer:   not built (python build.py); {URL} lists the archives"
    assert r.lines[2:] == ["  archives: 3", *[f"    {URL}archives/a{i:02}.lbox" for i in range(3)]]
    monkeypatch.setattr(lockbox_server, "archive_urls", fake_archive_urls(0))
    assert "none yet" in run.ok("serve", tmp_path).lines[2]
    assert run.ok("serve", tmp_path, "-q").out == b""


def test_banner_without_archive_urls(run: Runner, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An older lockbox_server: no archive list, nothing breaks."""
    monkeypatch.setattr(lockbox_server, "serve", fake_serve())
    monkeypatch.delattr(lockbox_server, "archive_urls", raising=False)
    r = run.ok("serve", tmp_path, "--site", tmp_path)
    assert r.lines == [f"serving {tmp_path} at {URL} (Ctrl-C to stop)", f"  viewer:   {URL}"]


def test_busy_port_is_one_line(run: Runner, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    busy = OSError(errno.EADDRINUSE, "Address already in use")
    monkeypatch.setattr(lockbox_server, "serve", fake_serve(busy))
    assert one_line_error(run("serve", tmp_path), 9) == (
        "lockbox: port 8000 is busy: use --port N (or stop the other server)")
    assert one_line_error(run("serve", tmp_path, "--port", "8765"), 9) == (
        "lockbox: port 8765 is busy: use --port N (or stop the other server)")
    denied = OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(lockbox_server, "serve", fake_serve(denied))
    assert one_line_error(run("serve", tmp_path, "--port", "80"), 9) == (
        "lockbox: cannot listen on 127.0.0.1:80: Permission denied")
    monkeypatch.setattr(lockbox_server, "serve", fake_serve(OSError("cannot listen on x")))
    assert one_line_error(run("serve", tmp_path), 9) == "lockbox: cannot listen on x"
    missing = tmp_path / "missing"
    monkeypatch.undo()
    assert "cannot serve" in one_line_error(run("serve", missing), 2)


def _start(directory: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``lockbox serve DIR --port 0``; returns the process and its banner lines."""
    proc = subprocess.Popen([*lockbox_command(), "serve", str(directory), "--port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith(f"serving {directory} at http://127.0.0.1:"), (
        first, proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
    return proc, [first.rstrip("\n")]


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C: a clean stop, exit 0, nothing on stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(15) == 0
            assert proc.stderr is not None and proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_real_server(tmp_path: Path) -> None:
    (tmp_path / "x.lbox").write_bytes(b"abcdef")  # never decrypted: any bytes do
    proc, lines = _start(tmp_path)
    try:
        assert proc.stdout is not None
        lines.append(proc.stdout.readline().rstrip("\n"))
        assert lines[1].startswith("  viewer:   ")  # the URL, or "not built" (no dist/site)
        url = lines[0].split(" at ")[1].split()[0]
        r = httpx.get(f"{url}archives/x.lbox", headers={"Range": "bytes=-2"}, timeout=5)
        assert r.status_code == 206 and r.content == b"ef"
    finally:
        _stop(proc)


@needs_archive_urls
def test_real_server_lists_archives(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"a{i:02}.lbox").write_bytes(b"x" * (i + 1))
    proc, lines = _start(tmp_path)
    try:
        assert proc.stdout is not None
        while not lines[-1].startswith("    \u2026"):
            lines.append(proc.stdout.readline().rstrip("\n"))
            assert len(lines) < 20, lines
        url = lines[0].split(" at ")[1].split()[0]
        assert lines[2] == "  archives: 12"
        assert lines[3:13] == [f"    {url}archives/a{i:02}.lbox" for i in range(10)]
        assert lines[13] == "    \u2026 and 2 more"
        r = httpx.get(lines[12].strip(), timeout=5)
        assert r.status_code == 200 and r.content == b"x" * 10
    finally:
        _stop(proc)


@needs_archive_urls
def test_real_busy_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run([*lockbox_command(), "serve", str(tmp_path), "--port", str(port)],
                              capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 9
    assert done.stdout == ""
    assert done.stderr == (f"lockbox: port {port} is busy: use --port N "
                           "(or stop the other server)\n")


def test_isolate_reaches_the_server(run: Runner, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def serve(directory: str, *, ready: Callable[[str], None], **kw: object) -> None:
        seen.update(kw)
        ready(URL)

    monkeypatch.setattr(lockbox_server, "serve", serve)
    monkeypatch.setattr(lockbox_server, "archive_urls", fake_archive_urls(0))
    run.ok("serve", tmp_path, "--isolate")
    assert seen["isolate"] is True
    run.ok("serve", tmp_path)
    assert seen["isolate"] is False
