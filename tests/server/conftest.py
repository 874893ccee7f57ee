"""Fixtures for the range service tests.

* ``served``: one archive directory (see :func:`_fill`) and its URL, served by
  the real app under uvicorn in a background thread for the whole session;
* ``nginx_url``: Debian's nginx serving the same directory (installed with
  apt-get when missing and we are root; otherwise the nginx tests skip);
* ``http``: an httpx client (short timeouts, no automatic decompression
  surprises: Accept-Encoding is set per request where it matters).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lockbox_server import running

DATA_SIZE = 10_000
OLD_MTIME = 1_600_000_000  # 2020-09-13: If-Range dates are strong for such a file
SPARSE_SIZE = 1 << 30


def pattern(size: int, seed: bytes = b"lockbox") -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class Served:
    root: Path
    url: str  # "http://127.0.0.1:PORT/" (trailing slash)
    data: bytes  # content of data.bin

    def archive(self, name: str) -> str:
        return f"{self.url}archives/{name}"


def _fill(root: Path, outside: Path) -> bytes:
    data = pattern(DATA_SIZE)
    (root / "data.bin").write_bytes(data)
    os.utime(root / "data.bin", (OLD_MTIME, OLD_MTIME))
    # Modified "now" as far as If-Range is concerned: its Last-Modified is weak.
    (root / "future.bin").write_bytes(data)
    future = time.time() + 86400
    os.utime(root / "future.bin", (future, future))
    (root / "empty.bin").write_bytes(b"")
    os.utime(root / "empty.bin", (OLD_MTIME, OLD_MTIME))
    (root / ".hidden").write_bytes(b"secret")
    (root / "sub").mkdir()
    (root / "sub" / "inner.bin").write_bytes(b"inner")
    (outside / "passwd").write_bytes(b"root:x:0:0\n")
    (root / "escape.bin").symlink_to(outside / "passwd")
    (root / "alias.bin").symlink_to(root / "data.bin")  # inside -> inside: served
    (root / "to-hidden.bin").symlink_to(root / ".hidden")  # target is a dotfile: refused
    (root / "dangling.bin").symlink_to(root / "missing")
    with open(root / "sparse.bin", "wb") as f:  # 1 GiB, no blocks on disk
        f.truncate(SPARSE_SIZE)
    os.mkfifo(root / "fifo.bin")
    return data


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("server")
    root, outside = base / "archives", base / "outside"
    root.mkdir()
    outside.mkdir()
    data = _fill(root, outside)
    with running(root, allowed_origins=["http://viewer.example"], timeout=10) as url:
        yield Served(root, url, data)


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0)) as client:
        yield client


# -- nginx ---------------------------------------------------------------------------------


def _nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def ensure_nginx() -> str:
    """The nginx binary; installs Debian's package if missing and we are root, else skips."""
    found = _nginx_binary()
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("nginx is not installed and we are not root (apt-get install nginx-light)")
    if shutil.which("apt-get") is None:
        pytest.skip("nginx is not installed and there is no apt-get")
    try:
        update = _apt("update", timeout=300)
        if update.returncode != 0:
            pytest.skip(f"apt-get update failed: {update.stderr.strip()[-300:]}")
        for package in ("nginx-light", "nginx"):
            done = _apt("install", "-y", "--no-install-recommends", package, timeout=600)
            if done.returncode == 0 and _nginx_binary():
                break
        else:
            pytest.skip(f"apt-get install nginx failed: {done.stderr.strip()[-300:]}")
    except subprocess.TimeoutExpired as exc:
        pytest.skip(f"apt-get timed out: {exc}")
    found = _nginx_binary()
    if not found:
        pytest.skip("nginx still missing after apt-get install")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp_body;
    proxy_temp_path {prefix}/tmp_proxy;
    fastcgi_temp_path {prefix}/tmp_fastcgi;
    uwsgi_temp_path {prefix}/tmp_uwsgi;
    scgi_temp_path {prefix}/tmp_scgi;
    types {{ application/octet-stream bin lbox; application/wasm wasm; }}
    default_type application/octet-stream;
    gzip off;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            add_header Cache-Control "no-cache, no-transform" always;
        }}
    }}
}}
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nginx did not listen on {port} within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def nginx_url(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's nginx serving ``served.root`` at ``http://127.0.0.1:PORT/archives/``."""
    binary = ensure_nginx()
    prefix = tmp_path_factory.mktemp("nginx")
    # nginx maps /archives/NAME to ROOT/archives/NAME: serve the parent of the root.
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, root=served.root.parent,
                                      user=user))
    log = open(prefix / "stderr.log", "wb")
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        try:
            _wait_port(port, proc, timeout=10)
        except (RuntimeError, TimeoutError) as exc:
            _stop(proc)
            details = (prefix / "stderr.log").read_text(errors="replace")[-500:]
            pytest.fail(f"nginx did not start: {exc}\n{details}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        _stop(proc)
        log.close()
