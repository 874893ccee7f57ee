"""The writable ``.lbox`` mount (lockbox_server.mount.lbox_rw): a real server on
127.0.0.1, real clients (litmus, rclone, cadaver), a real kill -9."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.errors import LockedError

from .conftest import LITMUS_SUITES

PASSWORD = "pw"
HANG_GUARD_S = 120


@pytest.fixture
def lbox(make_archive: Callable[..., Path]) -> Path:
    """An archive with a little in it (chunk size 64 KiB: several chunks per MiB)."""
    return make_archive({"docs/readme.txt": b"hello\n", "top.bin": b"\x00" * 1000},
                        chunk_size=65536)


def _files(path: Path) -> dict[str, bytes]:
    with lockbox.open(path, password=PASSWORD) as box:
        return {e.path: box.read_bytes(e.path) for e in box.iter_entries("") if e.is_file}


def _generation(path: Path) -> int:
    with lockbox.open(path, password=PASSWORD) as box:
        return int(box.generation)


def test_litmus_all_suites(mount_server: Any, run_litmus: Any, lbox: Path) -> None:
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        passed, failed, output = run_litmus(url)
    assert (passed, failed) == (104, 0), output
    assert all(f"summary for `{s}'" in output for s in LITMUS_SUITES), output
    # Everything litmus left behind was committed: the archive opens and verifies.
    with lockbox.open(lbox, password=PASSWORD) as box:
        assert box.verify().ok
        assert box.exists("docs/readme.txt")


# -- helpers ------------------------------------------------------------------------


def _request(url: str, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: (status, headers, body)."""
    import http.client
    from urllib.parse import quote, urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=HANG_GUARD_S)
    try:
        conn.request(method, quote(path), body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _blocks(total_size: int, block_size: int = 1 << 20, seed: int = 7) -> Any:
    """``total_size`` pseudo-random bytes, a block at a time (never all in memory)."""
    import random

    rng = random.Random(seed)
    left = total_size
    while left:
        n = min(block_size, left)
        yield rng.randbytes(n)
        left -= n


def _digest(total_size: int) -> str:
    h = hashlib.sha256()
    for b in _blocks(total_size):
        h.update(b)
    return h.hexdigest()


# -- rclone, cadaver ----------------------------------------------------------------


def _make_tree(root: Path) -> dict[str, bytes]:
    import random

    rng = random.Random(11)
    files = {
        "a.txt": b"alpha\n",
        "empty.dat": b"",
        "nested/deeper/deepest/leaf.bin": rng.randbytes(70_000),
        "nested/empty-too": b"",
        "ünïcødé/日本語 ファイル.txt": "こんにちは\n".encode(),
        "ünïcødé/emoji 🎉.md": b"# party\n",
        "spaces and #hash%/x y.txt": b"odd names\n",
        "big/twenty.bin": rng.randbytes(20 << 20),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "only-a-dir").mkdir()
    return files


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rclone_round_trip_is_committed(mount_server: Any, rclone: Any, rclone_remote: Any,
                                        lbox: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _make_tree(src)
    out = tmp_path / "out"
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        provider = mount_server.last.app.provider_map["/"]
        remote = rclone_remote(url)
        rclone("copy", "--transfers", "4", str(src), remote + "up")
        rclone("copy", remote + "up", str(out))
        stats = provider.batch.stats
        assert stats.requests >= len(files) and stats.failed == 0
    assert _read_tree(out) == files
    # Committed: a fresh open of the archive file has every upload, byte for byte.
    committed = _files(lbox)
    assert {p[len("up/"):]: d for p, d in committed.items() if p.startswith("up/")} == files
    assert committed["docs/readme.txt"] == b"hello\n"
    with lockbox.open(lbox, password=PASSWORD) as box:
        assert box.verify().ok


def test_cadaver_script(mount_server: Any, cadaver: Any, lbox: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.txt"
    local.write_bytes(b"from cadaver\n" * 100)
    script = textwrap.dedent(f"""\
        mkcol work
        put {local} work/one.txt
        copy work/one.txt work/two.txt
        mkcol work/sub
        move work/two.txt work/sub/moved.txt
        put {local} gone.txt
        delete gone.txt
        delete top.bin
        get work/sub/moved.txt {tmp_path / 'back.txt'}
        ls work
        """)
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        proc = cadaver(url, script)
        assert "failed" not in proc.stdout.lower(), proc.stdout + proc.stderr
    assert (tmp_path / "back.txt").read_bytes() == local.read_bytes()
    files = _files(lbox)
    assert files["work/one.txt"] == local.read_bytes()
    assert files["work/sub/moved.txt"] == local.read_bytes()
    assert "work/two.txt" not in files and "gone.txt" not in files and "top.bin" not in files


# -- semantics ------------------------------------------------------------------------


def test_put_answers_after_commit_and_etag_follows_content(mount_server: Any,
                                                           lbox: Path) -> None:
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        status, headers, _ = _request(url, "PUT", "/n/ew.txt", b"v1")
        assert status == 409  # the parent collection does not exist
        status, headers, _ = _request(url, "PUT", "/new.txt", b"v1")
        assert status == 201
        etag1 = headers["etag"]
        assert _files(lbox)["new.txt"] == b"v1"  # durable before the answer
        status, headers, _ = _request(url, "PUT", "/new.txt", b"v2")
        assert status == 204 and headers["etag"] != etag1
        etag2 = headers["etag"]
        status, headers, body = _request(url, "GET", "/new.txt")
        assert (status, body, headers["etag"]) == (200, b"v2", etag2)
        status, _, body = _request(url, "GET", "/new.txt", headers={"If-None-Match": etag2})
        assert status == 304
        status, _, body = _request(url, "GET", "/new.txt", headers={"Range": "bytes=1-1"})
        assert (status, body) == (206, b"2")
        quota = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
                 b"<D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>")
        status, _, body = _request(url, "PROPFIND", "/", quota, {"Depth": "0"})
        used = os.path.getsize(lbox)
        assert status == 207 and f"quota-used-bytes>{used}<".encode() in body, body
        # The writer is the mount's for its lifetime: another writer is refused.
        with lockbox.open(lbox, password=PASSWORD) as box, pytest.raises(LockedError):
            box.writer()
    with lockbox.open(lbox, password=PASSWORD) as box:
        info = box.stat("new.txt")
        assert box.read_bytes("new.txt") == b"v2"
        assert abs(info.mtime_ns / 1e9 - time.time()) < 3600  # the PUT time, not 0


def test_group_commit_shares_one_commit(mount_server: Any, lbox: Path) -> None:
    from lockbox_server.mount import lbox_rw

    provider = lbox_rw.make_provider(lbox, password=PASSWORD, max_delay_s=3600)
    n = 8
    results: list[int] = []
    with mount_server(provider) as url:
        generation = provider.box.generation
        with provider.batch.turn():  # hold the writer: every PUT queues behind it
            threads = [threading.Thread(target=lambda i=i: results.append(
                _request(url, "PUT", f"/burst{i}.txt", f"{i}".encode())[0]))
                for i in range(n)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + HANG_GUARD_S
            while provider.batch._queued < n and time.monotonic() < deadline:
                time.sleep(0.01)
            assert provider.batch._queued == n
        for t in threads:
            t.join(HANG_GUARD_S)
        assert sorted(results) == [201] * n
        assert provider.batch.stats.commits == 1 and provider.batch.stats.requests == n
        assert provider.box.generation == generation + 1
    files = _files(lbox)
    assert all(files[f"burst{i}.txt"] == f"{i}".encode() for i in range(n))


def test_failed_request_changes_nothing(mount_server: Any, lbox: Path) -> None:
    import http.client
    from urllib.parse import urlsplit

    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        generation = _generation(lbox)
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=HANG_GUARD_S)
        conn.putrequest("PUT", "/cut.bin")
        conn.putheader("Content-Length", str(4 << 20))
        conn.endheaders()
        conn.send(b"x" * (1 << 20))
        conn.close()  # the client goes away mid-body
        status, _, _ = _request(url, "PUT", "/after.txt", b"ok")  # the writer is free
        assert status == 201
        status, _, _ = _request(url, "GET", "/cut.bin")
        assert status == 404
    files = _files(lbox)
    assert "cut.bin" not in files and files["after.txt"] == b"ok"
    assert _generation(lbox) == generation + 1


# -- bounded memory ---------------------------------------------------------------------


def test_large_put_streams_in_bounded_memory(mount_server: Any, make_archive: Any) -> None:
    import tracemalloc

    path = make_archive(chunk_size=1 << 20)
    size = 192 << 20
    with mount_server(path, writable=True, password=PASSWORD) as url:
        tracemalloc.start()
        try:
            status, _, _ = _request(url, "PUT", "/large.bin", _blocks(size),
                                    headers={"Content-Length": str(size)})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert status == 201
    # The chunk, its read-ahead, the sealed frame and a few socket blocks: a few MiB
    # whatever the size (the bound is loose; the point is it does not grow with it).
    assert peak < 32 << 20, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB PUT"
    with lockbox.open(path, password=PASSWORD) as box:
        h = hashlib.sha256()
        for piece in box.iter_bytes("large.bin"):
            h.update(piece)
    assert h.hexdigest() == _digest(size)


# -- kill -9 -----------------------------------------------------------------------------

_MOUNT_SCRIPT = textwrap.dedent("""\
    import os, signal, sys

    point = os.environ.get("LOCKBOX_TEST_KILL_AT", "")

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point in ("before-slot", "after-slot"):
        import lockbox.formats.lbox.write.commit as commit_mod
        real_fsync = commit_mod.fsync
        calls = []

        def fsync(fd, **kw):
            calls.append(fd)
            if point == "before-slot" and len(calls) == 1:
                die()  # the commit's pages are written, its slot is not
            real_fsync(fd, **kw)
            if point == "after-slot" and len(calls) == 2:
                die()  # the commit is durable, the answer is not sent

        commit_mod.fsync = fsync
    elif point == "redaction":
        from lockbox.formats.lbox.write.spacekeeper import SpaceKeeper

        def zero(self, offset, size):
            die()  # the commit is durable; what it freed is being zeroed

        SpaceKeeper._zero = zero
    elif point == "torn-slot":
        from lockbox.formats.lbox.write.writer import Writer

        def torn(self, image, offset):
            self.pages._pwrite(image[:100], offset)
            die()  # the head of a commit slot on disk, the rest the older commit's

        Writer._write_slot = torn

    from lockbox_server.mount import make_mount_app, run_mount

    app = make_mount_app(sys.argv[1], writable=True, password="pw", verbose=0)
    run_mount(app, host="127.0.0.1", port=0, ready=lambda url: print(url, flush=True))
    """)


def _spawn_mount(path: Path, kill_at: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "LOCKBOX_TEST_KILL_AT": kill_at}
    proc = subprocess.Popen([sys.executable, "-c", _MOUNT_SCRIPT, str(path)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://"), url
    return proc, url


@pytest.mark.parametrize("kill_at", ["body-1MiB", "body-5MiB", "before-slot", "torn-slot",
                                     "after-slot", "redaction"])
def test_kill_9_during_a_put_keeps_the_last_commit(make_archive: Any, kill_at: str) -> None:
    from urllib.parse import urlsplit

    # The PUT replaces big.bin: its commit frees the old version (then zeroed).
    path = make_archive({"kept/a.txt": b"committed before\n", "big.bin": b"old version"},
                        chunk_size=65536)
    before = _files(path)
    size = 8 << 20
    proc, url = _spawn_mount(path, "" if kill_at.startswith("body") else kill_at)
    try:
        parts = urlsplit(url)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=HANG_GUARD_S)
        sock.sendall(f"PUT /big.bin HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        stop_after = {"body-1MiB": 1 << 20, "body-5MiB": 5 << 20}.get(kill_at, size)
        sent = 0
        for block in _blocks(size):
            block = block[:stop_after - sent]
            sock.sendall(block)
            sent += len(block)
            if sent >= stop_after:
                break
        if kill_at.startswith("body"):
            proc.send_signal(signal.SIGKILL)
        else:  # the server kills itself inside the commit: the connection just ends
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
        sock.close()
        assert proc.wait(HANG_GUARD_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    after = _files(path)  # it opens: the last commit is intact
    if kill_at in ("after-slot", "redaction"):  # that commit was durable before the kill
        assert hashlib.sha256(after.pop("big.bin")).hexdigest() == _digest(size)
        before.pop("big.bin")
    assert after == before  # no partial file, nothing lost
    with lockbox.open(path, password=PASSWORD) as box:
        assert box.verify().ok
        with box.writer() as w:  # and writable again (the killed writer's lock is gone)
            w.add_bytes("later.txt", b"after the crash")
    assert _files(path)["later.txt"] == b"after the crash"


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_readers_and_writers(mount_server: Any, lbox: Path) -> None:
    errors: list[str] = []

    def writer(k: int) -> None:
        for i in range(12):
            name = f"/w{k}/f{i % 3}.txt"
            if i == 0:
                status = _request(url, "MKCOL", f"/w{k}")[0]
                ok: tuple[int, ...] = (201,)
            elif i % 4 == 3:
                status = _request(url, "DELETE", name)[0]
                ok = (204, 404)
            else:
                status = _request(url, "PUT", name, f"{k}-{i}".encode() * 100)[0]
                ok = (201, 204)
            if status not in ok:
                errors.append(f"writer {k} step {i}: {status}")

    def reader() -> None:
        for _ in range(15):
            status, _, body = _request(url, "GET", "/docs/readme.txt")
            if (status, body) != (200, b"hello\n"):
                errors.append(f"GET {status} {body[:40]!r}")
            status = _request(url, "PROPFIND", "/", headers={"Depth": "1"})[0]
            if status != 207:
                errors.append(f"PROPFIND {status}")

    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        provider = mount_server.last.app.provider_map["/"]
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        threads += [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD_S)
        assert not any(t.is_alive() for t in threads)
        stats = provider.batch.stats
        # What is served is what is committed: compare with a fresh open.
        served = {}
        for k in range(4):
            for i in range(3):
                status, _, body = _request(url, "GET", f"/w{k}/f{i}.txt")
                if status == 200:
                    served[f"w{k}/f{i}.txt"] = body
    assert errors == []
    assert stats.failed == 0 and stats.commits <= stats.requests
    files = _files(lbox)
    assert {p: d for p, d in files.items() if p.startswith("w")} == served


def test_get_never_mixes_versions(mount_server: Any, make_archive: Any) -> None:
    import http.client
    from urllib.parse import urlsplit

    path = make_archive(chunk_size=65536)
    size = 16 << 20
    with mount_server(path, writable=True, password=PASSWORD) as url:
        assert _request(url, "PUT", "/v.bin", _blocks(size, seed=1),
                        headers={"Content-Length": str(size)})[0] == 201
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                          timeout=HANG_GUARD_S)
        conn.request("GET", "/v.bin")
        resp = conn.getresponse()
        head = resp.read(1 << 20)
        # Replace the file while the GET is being answered.
        assert _request(url, "PUT", "/v.bin", _blocks(size, seed=2),
                        headers={"Content-Length": str(size)})[0] == 204
        try:
            rest = resp.read()
        except http.client.IncompleteRead as e:
            rest = e.partial
        conn.close()
    got = head + rest
    first = b"".join(_blocks(size, seed=1))
    assert got == first[:len(got)]  # a prefix of the old version, never new bytes
    assert _files(path)["v.bin"] == b"".join(_blocks(size, seed=2))


def test_move_and_copy_trees_are_committed(mount_server: Any, make_archive: Any) -> None:
    path = make_archive({"t/a.txt": b"A", "t/sub/b.txt": b"B" * 70_000, "other.txt": b"O"},
                        chunk_size=65536)
    with mount_server(path, writable=True, password=PASSWORD) as url:
        dest = {"Destination": url + "copy"}
        assert _request(url, "COPY", "/t", headers=dest)[0] == 201
        assert _request(url, "COPY", "/t", headers={**dest, "Overwrite": "F"})[0] == 412
        assert _request(url, "COPY", "/t", headers={"Destination": url + "shallow",
                                                    "Depth": "0"})[0] == 201
        assert _request(url, "MOVE", "/copy/sub", headers={"Destination": url + "moved"})[0] \
            == 201
        # MOVE over an existing file (Overwrite defaults to T): 204, the old one is gone.
        assert _request(url, "MOVE", "/other.txt",
                        headers={"Destination": url + "t/a.txt"})[0] == 204
        assert _request(url, "DELETE", "/copy")[0] == 204
    files = _files(path)
    assert files == {"t/a.txt": b"O", "t/sub/b.txt": b"B" * 70_000,
                     "moved/b.txt": b"B" * 70_000}
    with lockbox.open(path, password=PASSWORD) as box:
        assert box.stat("shallow").is_dir and box.ls("shallow") == []
        assert not box.exists("copy")
        assert box.verify().ok


def test_a_storage_error_fails_only_its_request(mount_server: Any, lbox: Path) -> None:
    from lockbox_server.mount import lbox_rw

    provider = lbox_rw.make_provider(lbox, password=PASSWORD, max_delay_s=3600)
    real_add_stream = provider.writer.add_stream

    class Exploding:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.reads = 0

        def read(self, n: int) -> bytes:
            self.reads += 1
            if self.reads > 1:
                raise OSError(28, "No space left on device")
            data: bytes = self.inner.read(n)
            return data

    def add_stream(path: str, stream: Any, **kw: Any) -> Any:
        if path == "bad.bin":
            stream = Exploding(stream)
        return real_add_stream(path, stream, **kw)

    provider.writer.add_stream = add_stream  # type: ignore[method-assign]
    results: dict[str, int] = {}
    with mount_server(provider) as url:
        with provider.batch.turn():  # both PUTs queue: one stages while the other waits
            threads = [threading.Thread(target=lambda name=name, body=body: results.update(
                {name: _request(url, "PUT", "/" + name, body)[0]}))
                for name, body in (("good.txt", b"good"), ("bad.bin", b"x" * 300_000))]
            for t in threads:
                t.start()
            deadline = time.monotonic() + HANG_GUARD_S
            while provider.batch._queued < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        for t in threads:
            t.join(HANG_GUARD_S)
        assert results == {"good.txt": 201, "bad.bin": 500}
        assert _request(url, "PUT", "/later.txt", b"later")[0] == 201  # writer still fine
    files = _files(lbox)
    assert files["good.txt"] == b"good" and files["later.txt"] == b"later"
    assert "bad.bin" not in files
    with lockbox.open(lbox, password=PASSWORD) as box:
        assert box.verify().ok


def test_dead_properties_follow_move_and_copy(mount_server: Any, lbox: Path) -> None:
    from urllib.parse import quote

    proppatch = (b'<?xml version="1.0" encoding="utf-8"?>'
                 b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x-test:">'
                 b"<D:set><D:prop><Z:colour>ochre</Z:colour></D:prop></D:set>"
                 b"</D:propertyupdate>")
    propfind = (b'<?xml version="1.0" encoding="utf-8"?>'
                b'<D:propfind xmlns:D="DAV:" xmlns:Z="urn:x-test:">'
                b"<D:prop><Z:colour/></D:prop></D:propfind>")
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        assert _request(url, "PUT", "/ü x.txt", b"data")[0] == 201
        assert _request(url, "PROPPATCH", "/ü x.txt", proppatch)[0] == 207
        assert _request(url, "MOVE", "/ü x.txt",
                        headers={"Destination": url + quote("neu ü.txt")})[0] == 201
        assert _request(url, "COPY", "/neu ü.txt",
                        headers={"Destination": url + quote("kopie.txt")})[0] == 201
        for name in ("/neu ü.txt", "/kopie.txt"):
            status, _, body = _request(url, "PROPFIND", name, propfind, {"Depth": "0"})
            assert status == 207 and b"ochre" in body, body
        assert _request(url, "PROPFIND", "/ü x.txt", propfind, {"Depth": "0"})[0] == 404
    assert _files(lbox)["kopie.txt"] == b"data"


def test_a_failed_commit_answers_500_and_keeps_the_last_commit(mount_server: Any,
                                                                lbox: Path) -> None:
    from lockbox.errors import CommitError
    from lockbox_server.mount import lbox_rw

    provider = lbox_rw.make_provider(lbox, password=PASSWORD)
    real_commit = provider.writer.commit
    failures = [CommitError("commit failed: No space left on device")]

    def commit() -> Any:
        if failures:
            raise failures.pop()
        return real_commit()

    provider.writer.commit = commit  # type: ignore[method-assign]
    before = _files(lbox)
    with mount_server(provider) as url:
        status, _, body = _request(url, "PUT", "/lost.txt", b"not committed")
        assert status == 500, body
        assert _request(url, "GET", "/lost.txt")[0] == 404
        assert _files(lbox) == before
        assert _request(url, "PUT", "/kept.txt", b"committed")[0] == 201
    assert provider.batch.stats.failed == 1
    assert _files(lbox) == {**before, "kept.txt": b"committed"}


def test_mtime_from_x_oc_mtime_and_proppatch(mount_server: Any, lbox: Path) -> None:
    # wsgidav's switches for clients that keep mtimes (rclone's owncloud/nextcloud
    # vendors send X-OC-Mtime; others PROPPATCH getlastmodified).
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        config = mount_server.last.app.config  # set by LboxProvider.mount_config
        assert config["honor_mtime_header"] is True
        assert "{DAV:}getlastmodified" in config["mutable_live_props"]
        assert _request(url, "PUT", "/old.txt", b"from 2001",
                        headers={"X-OC-Mtime": "1000000000"})[0] == 201
        assert _request(url, "MKCOL", "/olddir", headers={"X-OC-Mtime": "1100000000"})[0] \
            == 201
        patch = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
                 b"<D:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</D:getlastmodified>"
                 b"</D:prop></D:set></D:propertyupdate>")
        status, _, body = _request(url, "PROPPATCH", "/docs/readme.txt", patch)
        assert status == 207 and b"200 OK" in body, body
        status, headers, _ = _request(url, "HEAD", "/old.txt")
        assert headers["last-modified"] == "Sun, 09 Sep 2001 01:46:40 GMT"
    with lockbox.open(lbox, password=PASSWORD) as box:
        assert box.stat("old.txt").mtime_ns == 1_000_000_000 * 10**9
        assert box.stat("olddir").mtime_ns == 1_100_000_000 * 10**9
        assert box.stat("docs/readme.txt").mtime_ns == 784111777 * 10**9
        assert box.read_bytes("docs/readme.txt") == b"hello\n"
        assert box.verify().ok
