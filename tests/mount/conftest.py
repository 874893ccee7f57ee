"""Shared fixtures of the mount tests: a real server, real clients.

How to use them (each is a pytest fixture; ask for it by name):

* ``mount_server(target, **kw)`` -- a context manager serving
  ``make_mount_app(target, **kw)`` with cheroot on 127.0.0.1 at a free port, in a
  thread; it yields the base URL (``http://127.0.0.1:PORT/``, with the slash) and
  stops the server (and closes the provider) on exit. ``target``: anything
  ``lockbox_server.mount.make_mount_app`` takes -- an archive path or URL, a
  directory, an opened Archive, or a ready ``DAVProvider`` (e.g.
  ``lbox_rw.make_provider(...)``); ``kw``: ``writable``, ``password``, ``identity``,
  ``auth=(user, password)``, ``settings`` ...::

      def test_x(mount_server, webdav, make_archive):
          with mount_server(make_archive({"a.txt": b"hi"}), password="pw") as url:
              assert webdav.get(url + "a.txt").content == b"hi"

  ``mount_server.last`` is the last :class:`~lockbox_server.mount.MountServer` (its
  ``app``, ``port``), for a test that looks at the provider.
* ``run_litmus(url, suites=LITMUS_SUITES, auth=None) -> (passed, failed, output)`` --
  runs Debian's litmus against ``url`` (a collection URL; litmus works in
  ``url + "litmus/"``), in a temporary directory, with a 300 s hang guard; ``passed`` /
  ``failed`` are summed over the suites' summary lines; ``output`` is litmus's stdout
  (put it in the assertion message). Skips when litmus is not installed.
* ``rclone(*args, check=True) -> CompletedProcess`` -- runs ``rclone`` with no config
  file (``--config /dev/null``), a 300 s hang guard, text output. Build the remote with
  the ``rclone_remote`` fixture, a function ``(url, auth=None) -> ":webdav,url=...:"``
  (append a path): ``rclone("copy", str(src), rclone_remote(url) + "dir")``. Skips
  without rclone.
* ``cadaver(url, script, auth=None) -> CompletedProcess`` -- runs cadaver with the
  commands of ``script`` (one a line) on stdin. Skips without cadaver.
* ``webdav`` -- an ``httpx.Client`` (closed on teardown; 120 s timeout) for raw WebDAV
  requests (``webdav.request("PROPFIND", url, headers={"Depth": "1"})``).

(tests/ is not a package on sys.path: use the fixtures rather than importing this file.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

try:  # the [server] extra; without it the fixtures skip (conftest must import anyway)
    from lockbox_server.mount import MountServer, make_mount_app, start_mount_server
except ModuleNotFoundError as _exc:
    _MISSING: str | None = f"the [server] extra is not installed ({_exc.name})"
else:
    _MISSING = None

LITMUS_SUITES = ("basic", "copymove", "props", "locks", "http")
"""litmus's suites: 104 tests in all (16 + 13 + 30 + 41 + 4 on litmus 0.13)."""

HANG_GUARD_S = 300  # a generous bound: a client stuck on a broken server fails, not hangs

_SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")


def parse_litmus(output: str) -> tuple[int, int]:
    """(passed, failed) summed over litmus's summary lines. A suite that aborted
    (litmus stops a suite on a failed precondition) counts its not-run tests as
    failed when the output says how many there were."""
    passed = failed = 0
    for _suite, run, ok, bad in _SUMMARY.findall(output):
        passed += int(ok)
        failed += int(bad)
        del run
    return passed, failed


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install {binary}; test.sh does)")
    return path


def make_rclone_remote(url: str, auth: tuple[str, str] | None = None) -> str:
    """An rclone connection-string remote for the WebDAV server at ``url``
    (append the path inside it)."""
    parts = [f"url='{url}'", "vendor=other"]
    if auth is not None:
        user, password = auth
        obscured = subprocess.run([_need("rclone"), "obscure", password], check=True,
                                  capture_output=True, text=True,
                                  timeout=HANG_GUARD_S).stdout.strip()
        parts += [f"user='{user}'", f"pass='{obscured}'"]
    return ":webdav," + ",".join(parts) + ":"


@pytest.fixture(name="rclone_remote")
def rclone_remote_fixture() -> Callable[..., str]:
    return make_rclone_remote


@pytest.fixture
def mount_server() -> Iterator[Any]:
    if _MISSING:
        pytest.skip(_MISSING)
    started: list[MountServer] = []

    @contextlib.contextmanager
    def serve(target: Any, **kw: Any) -> Iterator[str]:
        kw.setdefault("verbose", 0)
        server = start_mount_server(make_mount_app(target, **kw))
        started.append(server)
        serve.last = server  # type: ignore[attr-defined]
        try:
            yield server.url
        finally:
            server.stop()

    serve.last = None  # type: ignore[attr-defined]
    yield serve
    for server in started:  # a test that failed inside the with block
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def run_litmus(tmp_path: Path) -> Callable[..., tuple[int, int, str]]:
    binary = _need("litmus")

    def run(url: str, suites: tuple[str, ...] | list[str] = LITMUS_SUITES,
            auth: tuple[str, str] | None = None) -> tuple[int, int, str]:
        work = tmp_path / "litmus-run"
        work.mkdir(exist_ok=True)
        env = {**os.environ, "TESTS": " ".join(suites)}
        cmd = [binary, url] + (list(auth) if auth else [])
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=HANG_GUARD_S)
        output = proc.stdout + proc.stderr
        passed, failed = parse_litmus(output)
        return passed, failed, output

    return run


@pytest.fixture
def rclone(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = _need("rclone")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [binary, "--config", "/dev/null", "--low-level-retries", "1", "--retries", "1",
               *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S,
                              cwd=tmp_path)
        if check and proc.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    return run


@pytest.fixture
def cadaver(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = _need("cadaver")

    def run(url: str, script: str, auth: tuple[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        home = tmp_path / "cadaver-home"
        home.mkdir(exist_ok=True)
        if auth is not None:  # cadaver reads credentials from ~/.netrc
            host = re.sub(r"^https?://([^/:]+).*$", r"\1", url)
            netrc = home / ".netrc"
            netrc.write_text(f"machine {host} login {auth[0]} password {auth[1]}\n")
            netrc.chmod(0o600)
        env = {**os.environ, "HOME": str(home)}
        return subprocess.run([binary, url], input=script.rstrip("\n") + "\nquit\n",
                              capture_output=True, text=True, timeout=HANG_GUARD_S,
                              cwd=tmp_path, env=env)

    return run


@pytest.fixture
def webdav() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=HANG_GUARD_S / 2.5) as client:
        yield client
