"""lockbox's own HTTP client against the server; the command line entry point."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import lockbox
from lockbox_server import running, serve

from .conftest import pattern

WEAK = lockbox.Argon2Params(1, 64)


def _make(path: Path, files: dict[str, bytes]) -> None:
    with lockbox.create(path, password="pw", argon2=WEAK) as box, box.writer() as w:
        for name, data in files.items():
            w.add_bytes(name, data)


def test_lockbox_client_lists_and_reads(tmp_path: Path) -> None:
    files = {"a.txt": b"hello", "dir/b.bin": pattern(300_000), "dir/c.txt": b"c" * 10}
    _make(tmp_path / "x.lbox", files)
    with running(tmp_path) as url, lockbox.open(f"{url}archives/x.lbox", password="pw") as box:
        assert sorted(e.name for e in box.ls()) == ["a.txt", "dir"]
        assert sorted(e.path for e in box.ls(recursive=True) if e.is_file) == sorted(files)
        for name, data in files.items():
            assert box.read_bytes(name) == data
        assert box.source.stats.requests > 0


def test_lockbox_client_sees_a_replaced_archive(tmp_path: Path) -> None:
    _make(tmp_path / "x.lbox", {"a.txt": b"one", "big.bin": pattern(200_000, b"1")})
    _make(tmp_path / "y.lbox", {"a.txt": b"two", "big.bin": pattern(200_000, b"2")})
    with running(tmp_path) as url, lockbox.open(f"{url}archives/x.lbox", password="pw") as box:
        assert box.read_bytes("a.txt") == b"one"
        os.replace(tmp_path / "y.lbox", tmp_path / "x.lbox")  # new inode: new ETag
        with pytest.raises(lockbox.SourceChangedError):
            box.read_bytes("big.bin")


def test_command_line(tmp_path: Path) -> None:
    (tmp_path / "a.lbox").write_bytes(b"abcdef")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lockbox_server", str(tmp_path), "--port", "0",
         "--allow-origin", "http://viewer.example"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving DIR at URL (Ctrl-C to stop)"
        assert " at http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.stderr else "")
        url = line.split(" at ")[1].split()[0]
        r = httpx.get(url + "archives/a.lbox", timeout=5,
                      headers={"Range": "bytes=-2", "Origin": "http://viewer.example"})
        assert r.status_code == 206 and r.content == b"ef"
        assert r.headers["access-control-allow-origin"] == "http://viewer.example"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_command_line_missing_directory(tmp_path: Path) -> None:
    """``python -m lockbox_server`` is ``lockbox serve``: its one line, its exit code."""
    done = subprocess.run([sys.executable, "-m", "lockbox_server", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2 and done.stderr.startswith("lockbox: cannot serve ")


def test_serve_on_a_busy_port_raises_eaddrinuse_silently(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        capfd.readouterr()
        ready: list[str] = []
        with pytest.raises(OSError) as caught:
            serve(tmp_path, "127.0.0.1", port, ready=ready.append)
        out, err = capfd.readouterr()
    assert type(caught.value) is OSError and caught.value.errno == errno.EADDRINUSE
    assert ready == [] and out == "" and err == ""  # uvicorn printed nothing of its own


def test_command_line_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cli = subprocess.run(
            [sys.executable, "-m", "lockbox_server", str(tmp_path), "--port", str(port)],
            capture_output=True, text=True, timeout=20, check=False)
    assert cli.returncode == 9 and cli.stdout == ""  # lockbox serve's StorageError
    assert cli.stderr == (f"lockbox: port {port} is busy: use --port N "
                          "(or stop the other server)\n")
