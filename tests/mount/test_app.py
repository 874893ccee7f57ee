"""The mount app: provider choice, binding rule, basic auth, litmus over a plain folder,
and the `lockbox mount` command (a real subprocess, Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

import lockbox
from lockbox.formats.snap import ops
from lockbox.formats.snap.store import FileStore
from lockbox.formats.uri.writer import write_uri

pytest.importorskip("wsgidav", reason="the [server] extra is not installed")

from wsgidav.fs_dav_provider import FilesystemProvider

from lockbox_server.mount import (
    NO_TLS_WARNING,
    ArchiveProvider,
    check_binding,
    is_loopback,
    make_mount_app,
    make_provider,
)

HANG_GUARD_S = 60


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.org", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_rule() -> None:
    assert check_binding("127.0.0.1", None) is None
    assert check_binding("127.0.0.1", ("u", "p")) is None
    with pytest.raises(lockbox.UsageError, match="--user NAME and --password-file"):
        check_binding("0.0.0.0", None)
    assert check_binding("0.0.0.0", ("u", "p")) == NO_TLS_WARNING
    assert "no TLS" in NO_TLS_WARNING


def test_basic_auth(mount_server: Any, webdav: httpx.Client, make_archive: Any) -> None:
    box = make_archive({"a.txt": b"secret content"})
    with mount_server(box, password="pw", auth=("alice", "s3cret \u00fc")) as url:
        r = webdav.get(url + "a.txt")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        assert b"secret content" not in r.content
        assert webdav.get(url + "a.txt", auth=("alice", "wrong")).status_code == 401
        assert webdav.get(url + "a.txt", auth=("bob", "s3cret \u00fc")).status_code == 401
        assert webdav.request("PROPFIND", url, headers={"Depth": "1"}).status_code == 401
        ok = webdav.get(url + "a.txt", auth=("alice", "s3cret \u00fc"))
        assert ok.status_code == 200 and ok.content == b"secret content"
        # authentication comes first: an anonymous write is 401, an authenticated one 403
        assert webdav.put(url + "b.txt", content=b"x").status_code == 401
        assert webdav.put(url + "b.txt", content=b"x",
                          auth=("alice", "s3cret \u00fc")).status_code == 403


def test_user_name_with_colon_is_refused(make_archive: Any) -> None:
    with pytest.raises(lockbox.UsageError, match="user name"):
        make_mount_app(make_archive({}), password="pw", auth=("a:b", "p"))


def test_litmus_over_a_plain_folder_through_our_app(mount_server: Any, run_litmus: Any,
                                                    tmp_path: Path) -> None:
    """wsgidav's own folder provider behind make_mount_app (basic auth, MountGuard's
    finite PROPFIND depth): all 104 litmus tests pass, so a failure with one of our
    providers is the provider's."""
    folder = tmp_path / "plain"
    folder.mkdir()
    auth = ("litmus", "pass word")
    with mount_server(FilesystemProvider(str(folder)), auth=auth) as url:
        passed, failed, output = run_litmus(url, auth=auth)
    assert (passed, failed) == (104, 0), output


def test_provider_choice(tmp_path: Path, make_archive: Any) -> None:
    box = make_archive({"a": b"a"})
    provider = make_provider(box, password="pw")
    assert isinstance(provider, ArchiveProvider)
    provider.close()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    uri = tmp_path / "x.uri"
    write_uri(uri, src)
    with pytest.raises(lockbox.UsageError, match=r"only a \.lbox"):
        make_provider(uri, writable=True)
    with pytest.raises(lockbox.UsageError, match="snapdir snapshot"):
        make_provider(f"file://{tmp_path}/store#id=abc", writable=True)
    with pytest.raises(lockbox.UsageError, match="opened archive"):
        make_provider(lockbox.open(box, password="pw"), writable=True)
    with pytest.raises(lockbox.WrongKeyError):
        make_provider(box, password="wrong")


def test_snapdir_snapshot_mounts_read_only(mount_server: Any, webdav: httpx.Client,
                                           tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "d\u00fc").mkdir(parents=True)
    (tree / "d\u00fc" / "x y.txt").write_bytes(b"snap content\n")
    store = FileStore(tmp_path / "store")
    sid = ops.push(tree, store).snapshot_id
    with mount_server(f"file://{store.root}#id={sid}") as url:
        r = webdav.get(url + "d%C3%BC/x%20y.txt")
        assert r.status_code == 200 and r.content == b"snap content\n"
        assert r.headers["ETag"].startswith('"')
        assert webdav.request("PROPFIND", url, headers={"Depth": "1"}).status_code == 207
        assert webdav.delete(url + "d%C3%BC/x%20y.txt").status_code == 403


# -- the command ----------------------------------------------------------------------

def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lockbox", "mount", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _url_of(proc: subprocess.Popen[str]) -> str:
    """The URL from the banner's first line ("mounted X at URL (...)")."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert " at http://" in line, (line, proc.poll())
    return line.split(" at ", 1)[1].split(" ", 1)[0]


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_cli_mount_serves_and_ctrl_c_stops(make_archive: Any) -> None:
    box = make_archive({"hello w\u00f6rld.txt": b"hi\n"})
    proc = _start([str(box), "--port", "0"], env={"LOCKBOX_PASSWORD": "pw"})
    try:
        url = _url_of(proc)
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(url + "hello%20w%C3%B6rld.txt", timeout=HANG_GUARD_S)
        assert r.status_code == 200 and r.content == b"hi\n"
        assert httpx.put(url + "x", content=b"x", timeout=HANG_GUARD_S).status_code == 403
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "Traceback" not in err


def test_cli_archive_password_file(make_archive: Any, tmp_path: Path) -> None:
    box = make_archive({"a.txt": b"a"})
    secret = tmp_path / "archive-pw"
    secret.write_text("pw\n")
    proc = _start([str(box), "--port", "0", "--archive-password-file", str(secret)],
                  env={"LOCKBOX_PASSWORD": ""})
    try:
        url = _url_of(proc)
        assert httpx.get(url + "a.txt", timeout=HANG_GUARD_S).content == b"a"
    finally:
        code, err = _stop(proc)
    assert code == 0, err


def test_cli_non_loopback_needs_auth_and_warns(make_archive: Any, tmp_path: Path) -> None:
    box = make_archive({"a.txt": b"a"})
    refused = subprocess.run([sys.executable, "-m", "lockbox", "mount", str(box),
                              "--host", "0.0.0.0", "--port", "0"],
                             capture_output=True, text=True, timeout=HANG_GUARD_S,
                             env={**os.environ, "LOCKBOX_PASSWORD": "pw"})
    assert refused.returncode != 0
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--user NAME and --password-file" in lines[0], refused.stderr
    secret = tmp_path / "dav-pw"
    secret.write_text("dav pass\n")
    proc = _start([str(box), "--host", "0.0.0.0", "--port", "0", "--user", "u",
                   "--password-file", str(secret)], env={"LOCKBOX_PASSWORD": "pw"})
    try:
        url = _url_of(proc)
        port = url.rsplit(":", 1)[1].rstrip("/")
        local = f"http://127.0.0.1:{port}/"
        assert httpx.get(local + "a.txt", timeout=HANG_GUARD_S).status_code == 401
        assert httpx.get(local + "a.txt", auth=("u", "dav pass"),
                         timeout=HANG_GUARD_S).content == b"a"
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert "no TLS" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--password-file", "F"], "WebDAV password of --user"),
    (["--user", "u"], "--user needs --password-file"),
    (["--writable"], "only a .lbox"),
])
def test_cli_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    write_uri(tmp_path / "x.uri", src)
    proc = subprocess.run([sys.executable, "-m", "lockbox", "mount", str(tmp_path / "x.uri"),
                           "--port", "0", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_cli_busy_port(make_archive: Any, mount_server: Any) -> None:
    box = make_archive({"a.txt": b"a"})
    with mount_server(box, password="pw") as url:
        port = url.rsplit(":", 1)[1].rstrip("/")
        proc = subprocess.run([sys.executable, "-m", "lockbox", "mount", str(box),
                               "--port", port], capture_output=True, text=True,
                              timeout=HANG_GUARD_S, env={**os.environ, "LOCKBOX_PASSWORD": "pw"})
    assert proc.returncode != 0
    assert f"port {port} is busy" in proc.stderr, proc.stderr


def test_cli_writable_lbox_commits_a_put(make_archive: Any) -> None:
    box = make_archive({"a.txt": b"a"})
    proc = _start([str(box), "--writable", "--port", "0"], env={"LOCKBOX_PASSWORD": "pw"})
    try:
        url = _url_of(proc)
        r = httpx.put(url + "n%C3%A9w.txt", content=b"new content", timeout=HANG_GUARD_S)
        assert r.status_code == 201
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    with lockbox.open(box, password="pw") as archive:
        assert archive.read_bytes("n\u00e9w.txt") == b"new content"


def test_cli_writable_lbox_without_secret_or_terminal(make_archive: Any) -> None:
    box = make_archive({"a.txt": b"a"})
    proc = subprocess.run([sys.executable, "-m", "lockbox", "mount", str(box), "--writable",
                           "--port", "0"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=HANG_GUARD_S,
                          env={**os.environ, "LOCKBOX_PASSWORD": ""})
    assert proc.returncode != 0
    assert "no password or identity given" in proc.stderr, proc.stderr


def test_sync_store_upload_then_the_sync_file_mounts_read_only(
        mount_server: Any, webdav: httpx.Client, tmp_path: Path) -> None:
    """The dispatch end to end: a folder + writable -> the sync store (an upload becomes
    notes.csv.sync); that file -> the single-.sync provider (read-only, its payload at
    the display name)."""
    store = tmp_path / "store"
    store.mkdir()
    with mount_server(str(store), writable=True) as url:
        assert webdav.put(url + "notes.csv", content=b"a,b\n1,2\n").status_code == 201
    assert (store / "notes.csv.sync").is_file()
    provider = make_provider(store / "notes.csv.sync")
    assert provider.is_readonly() and not isinstance(provider, ArchiveProvider)
    with mount_server(provider) as url:
        assert webdav.get(url + "notes.csv").content == b"a,b\n1,2\n"
        assert webdav.put(url + "notes.csv", content=b"x").status_code == 403
        assert webdav.get(url + "other").status_code == 404


def test_cli_a_failed_request_is_one_line_on_stderr(make_archive: Any) -> None:
    box = make_archive({"f.bin": os.urandom(200_000), "ok.txt": b"ok"})
    raw = bytearray(box.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    box.write_bytes(bytes(raw))
    proc = _start([str(box), "--port", "0"], env={"LOCKBOX_PASSWORD": "pw"})
    try:
        url = _url_of(proc)
        with pytest.raises(httpx.HTTPError):
            r = httpx.get(url + "f.bin", timeout=HANG_GUARD_S)
            r.raise_for_status()
        assert httpx.get(url + "ok.txt", timeout=HANG_GUARD_S).content == b"ok"
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lockbox mount: a request failed: f.bin: "), err


class _MtimeFolder(FilesystemProvider):  # type: ignore[misc]
    mount_config: ClassVar[dict[str, Any]] = {"honor_mtime_header": True,
                                              "hotfixes": {"emulate_win32_lastmod": True}}


def test_a_provider_asks_for_its_wsgidav_switches(mount_server: Any, webdav: httpx.Client,
                                                  tmp_path: Path) -> None:
    with mount_server(_MtimeFolder(str(tmp_path))) as url:
        config = mount_server.last.app.config
        assert config["honor_mtime_header"] is True
        assert config["hotfixes"]["emulate_win32_lastmod"] is True
        assert config["hotfixes"]["re_encode_path_info"] is True  # merged, not replaced
        r = webdav.put(url + "f.txt", content=b"x", headers={"X-OC-Mtime": "1000000000"})
        assert r.status_code == 201
    assert (tmp_path / "f.txt").stat().st_mtime == 1_000_000_000
    with mount_server(FilesystemProvider(str(tmp_path))) as url:
        assert mount_server.last.app.config.get("honor_mtime_header") is False


def test_dotdot_above_the_root_is_403(mount_server: Any, tmp_path: Path) -> None:
    """A request naming `..` (raw, percent-encoded or backslashed) gets one complete 403
    answer from the guard, whatever the provider (clients saw a 400 with a promised body
    that never came)."""
    import socket

    store = tmp_path / "store"
    store.mkdir()
    with mount_server(store, writable=True) as url:
        host, port = url.split("//", 1)[1].rstrip("/").split(":")
        for path in ("/../x", "/a/../../x", "/%2e%2e/x", "/a/..%5c..%5cx"):
            with socket.create_connection((host, int(port)), timeout=30) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                          .encode())
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403"), (path, head)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert len(body) == length and b".." in body, (path, body)
