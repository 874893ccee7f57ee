"""The snapdir store of ``lockbox serve --snap-store``: layout GETs, objects-needed,
receive-pack, the bearer token, interrupted uploads, and the body deadline of long pushes.

Everything runs against a real uvicorn server on 127.0.0.1, with real files. Packs are
built by hand from the SNAPPACK grammar here (so the server is checked against the wire
format, not against our own writer). Waits are hang guards, never timing assertions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import blake3
import httpx
import pytest

from lockbox_server import running, snapstore
from lockbox_server.snapstore import TokenFileError, layout_file, read_push_token

from .test_app import raw_request

TOKEN = "t0ken-for-tests_0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GUARD_S = 20.0


def oid(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def rel(kind: str, hex_id: str) -> str:
    return f".{kind}/{hex_id[0:3]}/{hex_id[3:6]}/{hex_id[6:9]}/{hex_id[9:]}"


def manifest_for(files: dict[str, bytes]) -> bytes:
    """A valid snapdir manifest of a flat tree of ``files`` (mode 644, root 755)."""
    rows = []
    for name in sorted(files, key=lambda n: n.encode()):
        data = files[name]
        rows.append((f"./{name}", f"F 644 {oid(data)} {len(data)} ./{name}\n"))
    checks = sorted({oid(d) for d in files.values()})
    root = blake3.blake3("".join(checks).encode()).hexdigest()
    total = sum(len(d) for d in files.values())
    lines = [f"D 755 {root} {total} ./\n"] + [line for _, line in rows]
    return "".join(lines).encode()


def pack(objects: list[bytes], manifest: bytes | None = None, *, end: bool = True) -> bytes:
    """A SNAPPACK 1 stream, straight from the seed's grammar."""
    out = bytearray(b"SNAPPACK 1\n")
    for data in objects:
        out += b"obj %s %d\n" % (oid(data).encode(), len(data)) + data
    if manifest is not None:
        out += b"manifest %s %d\n" % (oid(manifest).encode(), len(manifest)) + manifest
    if end:
        out += b"end\n"
    return bytes(out)


def pack_zstd(objects: list[bytes], manifest: bytes | None = None) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # before 3.14
        from backports import zstd  # type: ignore[import-not-found, no-redef, unused-ignore]

    body = pack(objects, manifest)[len(b"SNAPPACK 1\n"):]
    return b"SNAPPACK 1Z\n" + zstd.compress(body, level=3)


def store_files(store: Path) -> list[str]:
    """Every file under the store, relative (temp files included)."""
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def leftovers(store: Path) -> list[str]:
    """Files under the store that are not at a layout path (temp files, partials)."""
    return [f for f in store_files(store) if layout_file(store, f) is None]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@contextlib.contextmanager
def snap_server(tmp_path: Path, store: Path, token: str | None = TOKEN,
                **limits: float) -> Iterator[str]:
    archives = tmp_path / "archives"
    archives.mkdir(exist_ok=True)
    with running(archives, snap_store=store, push_token=token,
                 allowed_origins=["http://viewer.example"], **limits) as url:  # type: ignore[arg-type]
        yield url + "snap/"


@pytest.fixture
def server(tmp_path: Path, store: Path) -> Iterator[str]:
    """The store's URL (``http://127.0.0.1:PORT/snap/``) on a server with the token."""
    with snap_server(tmp_path, store) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(GUARD_S, connect=5.0)) as client:
        yield client


def put_object(store: Path, data: bytes) -> str:
    hex_id = oid(data)
    path = store / rel("objects", hex_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hex_id


# -- GETs of the layout ---------------------------------------------------------------------


def test_layout_is_served_with_ranges(server: str, store: Path, http: httpx.Client) -> None:
    data = os.urandom(5000)
    hex_id = put_object(store, data)
    r = http.get(server + rel("objects", hex_id))
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert "immutable" in r.headers["cache-control"]
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = http.get(server + rel("objects", hex_id), headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == "bytes 10-19/5000"
    r = http.head(server + rel("objects", hex_id))
    assert r.status_code == 200 and r.headers["content-length"] == "5000"
    etag = r.headers["etag"]
    r = http.get(server + rel("objects", hex_id), headers={"If-None-Match": etag})
    assert r.status_code == 304
    # A cross-origin viewer may read the store (CORS of the archives).
    r = http.get(server + rel("objects", hex_id), headers={"Origin": "http://viewer.example"})
    assert r.headers["access-control-allow-origin"] == "http://viewer.example"


def test_missing_object_is_an_uncacheable_404(server: str, http: httpx.Client) -> None:
    r = http.get(server + rel("objects", "ab" * 32))
    assert r.status_code == 404
    assert r.headers["cache-control"] == "no-cache"


LAYOUT_REFUSED = [
    "/snap/",
    "/snap/.objects/",
    "/snap/.objects/abc",
    "/snap/.objects/abc/def/012",  # a directory
    "/snap/.objects/ABC/def/012/" + "a" * 55,  # uppercase
    "/snap/.objects/abc/def/012/" + "a" * 54,  # short
    "/snap/.objects/abc/def/012/" + "a" * 56,  # long
    "/snap/.objects/abc/def/01g/" + "a" * 55,  # not hex
    "/snap/.objects/abcd/ef/012/" + "a" * 55,  # wrong sharding
    "/snap/.objects/abc/def/012/" + "a" * 55 + "/",
    "/snap/.objects/../secret.txt",
    "/snap/.objects/abc/../../secret.txt",
    "/snap/..%2fsecret.txt",
    "/snap/%2e%2e/archives/x",
    "/snap/secret.txt",
    "/snap/.tmp-partial",
    "/snap/.manifests/abc/def/012/../../../../secret.txt",
    "/snap//etc/passwd",
    "/snap/.objects/abc/def/012/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "/snap/.objects\\abc\\def\\012\\" + "a" * 55,
    "/snap/.objects/abc/def/012/" + "a" * 54 + "%00",
]


@pytest.mark.parametrize("target", LAYOUT_REFUSED)
def test_layout_refuses_everything_else(server: str, store: Path, tmp_path: Path,
                                        target: str) -> None:
    (store / "secret.txt").write_bytes(b"not for you")
    (store / ".tmp-partial").write_bytes(b"half an object")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    (tmp_path / "archives" / "x").write_bytes(b"an archive")
    for kind in ("objects", "manifests"):
        (store / f".{kind}" / "abc" / "def" / "012").mkdir(parents=True, exist_ok=True)
    status, _, body = raw_request(server, target)
    assert status in (404, 400), (target, status)
    assert b"not for you" not in body and b"outside" not in body and b"an archive" not in body


def test_layout_symlink_is_not_followed(server: str, store: Path, tmp_path: Path,
                                        http: httpx.Client) -> None:
    (tmp_path / "outside.txt").write_bytes(b"outside")
    hex_id = "cd" * 32
    path = store / rel("objects", hex_id)
    path.parent.mkdir(parents=True)
    path.symlink_to(tmp_path / "outside.txt")
    r = http.get(server + rel("objects", hex_id))
    assert r.status_code == 404 and b"outside" not in r.content


def test_layout_is_read_only(server: str, http: httpx.Client) -> None:
    for method in ("PUT", "DELETE", "POST"):
        r = http.request(method, server + rel("objects", "ab" * 32), headers=AUTH)
        assert r.status_code == 405, method


def test_push_is_not_offered_cross_origin(server: str, http: httpx.Client) -> None:
    """The CORS preflight allows GET/HEAD only: a web page cannot push."""
    r = http.options(server + "receive-pack", headers={
        "Origin": "http://viewer.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 400  # a failed preflight: the browser sends no POST
    assert "POST" not in r.headers.get("access-control-allow-methods", "")
    assert "method" in r.text.lower()


# -- the token --------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["objects-needed", "receive-pack"])
def test_token_is_required(server: str, store: Path, http: httpx.Client, endpoint: str) -> None:
    body = pack([b"x"]) if endpoint == "receive-pack" else oid(b"x").encode() + b"\n"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
                    {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        r = http.post(server + endpoint, content=body, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.text.count("\n") == 1 and ("token" in r.text)
    assert store_files(store) == []
    r = http.post(server + endpoint, content=body, headers={"authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200


def test_without_token_file_pushes_are_refused(tmp_path: Path, store: Path,
                                               http: httpx.Client) -> None:
    data = b"payload"
    hex_id = put_object(store, data)
    with snap_server(tmp_path, store, token=None) as url:
        for endpoint, body in (("objects-needed", hex_id.encode()), ("receive-pack", pack([data]))):
            r = http.post(url + endpoint, content=body, headers=AUTH)
            assert r.status_code == 403
            assert r.text == ("pushing is off: this server was started without "
                              "--push-token-file\n")
        # Reads still work.
        assert http.get(url + rel("objects", hex_id)).content == data


# -- objects-needed -----------------------------------------------------------------------


def test_objects_needed_order_and_duplicates(server: str, store: Path,
                                             http: httpx.Client) -> None:
    present = put_object(store, b"present")
    a, b, c = oid(b"a"), oid(b"b"), oid(b"c")
    body = f"{b}\n{present}\n{a}\n\n{b}\r\n{c}\n{a}".encode()  # blank, CRLF, no final newline
    r = http.post(server + "objects-needed", content=body, headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == f"{b}\n{a}\n{c}\n"
    r = http.post(server + "objects-needed", content=b"", headers=AUTH)
    assert r.status_code == 200 and r.text == ""


@pytest.mark.parametrize(("line", "why"), [
    ("A" * 64, "uppercase"),
    ("a" * 63, "short"),
    ("a" * 65, "long"),
    ("g" * 64, "not hex"),
    (" " + "a" * 64, "leading space"),
    ("a" * 64 + " ", "trailing space"),
    ("a" * 2000, "very long"),
])
def test_objects_needed_bad_line_is_400_before_any_output(server: str, http: httpx.Client,
                                                          line: str, why: str) -> None:
    good = oid(b"a")
    body = f"{good}\n{good}\n{line}\n{oid(b'b')}\n".encode()
    r = http.post(server + "objects-needed", content=body, headers=AUTH)
    assert r.status_code == 400, why
    assert r.text.startswith("line 3: not an object id") and r.text.count("\n") == 1
    assert good not in r.text


def test_objects_needed_body_cap(server: str) -> None:
    status, _, body = raw_request(
        server, "/snap/objects-needed", method="POST",
        extra=f"Authorization: Bearer {TOKEN}\r\nContent-Length: {1 << 40}\r\n")
    assert status == 413 and b"larger than this server accepts" in body


# -- receive-pack ---------------------------------------------------------------------------


FILES = {"a.txt": b"alpha\n", "b.bin": os.urandom(70_000), "empty": b"", "c.txt": b"gamma" * 99}


def _objects() -> list[bytes]:
    return list(dict.fromkeys(FILES.values()))


def _check_filed(store: Path, manifest: bytes | None) -> None:
    for data in _objects():
        assert (store / rel("objects", oid(data))).read_bytes() == data
    if manifest is not None:
        assert (store / rel("manifests", oid(manifest))).read_bytes() == manifest
    assert leftovers(store) == []


@pytest.mark.parametrize("form", ["v1", "zstd"])
def test_receive_pack(server: str, store: Path, http: httpx.Client, form: str) -> None:
    manifest = manifest_for(FILES)
    body = pack(_objects(), manifest) if form == "v1" else pack_zstd(_objects(), manifest)
    r = http.post(server + "receive-pack", content=body, headers=AUTH,
                  params={"require-manifest": oid(manifest)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    report = r.json()
    assert report == {"objects_written": len(_objects()), "objects_skipped": 0,
                      "manifest_id": oid(manifest), "object_bytes": sum(map(len, _objects())),
                      "pack_format": form, "pack_bytes": len(body)}
    _check_filed(store, manifest)
    # The same pack again: every object read, verified and skipped.
    r = http.post(server + "receive-pack", content=body, headers=AUTH)
    assert r.status_code == 200
    assert (r.json()["objects_written"], r.json()["objects_skipped"]) == (0, len(_objects()))
    # And it reads back with plain GETs.
    assert http.get(server + rel("manifests", oid(manifest))).content == manifest


def test_receive_pack_streams_in_chunks(server: str, store: Path, http: httpx.Client) -> None:
    """A chunked body cut at awkward places (inside headers, payloads, `end`)."""
    manifest = manifest_for(FILES)
    body = pack(_objects(), manifest)
    pieces = [body[i:i + 7] for i in range(0, 203, 7)] + [body[203:50_000], body[50_000:]]
    r = http.post(server + "receive-pack", content=iter(pieces), headers=AUTH)
    assert r.status_code == 200 and r.json()["manifest_id"] == oid(manifest)
    _check_filed(store, manifest)


def test_objects_only_pack(server: str, store: Path, http: httpx.Client) -> None:
    r = http.post(server + "receive-pack", content=pack(_objects()), headers=AUTH)
    assert r.status_code == 200 and r.json()["manifest_id"] is None
    assert not (store / ".manifests").exists()
    assert leftovers(store) == []


def test_require_manifest(server: str, store: Path, http: httpx.Client) -> None:
    manifest = manifest_for(FILES)
    other = manifest_for({"x": b"x"})
    for body, required in ((pack(_objects(), manifest), oid(other)),
                           (pack(_objects()), oid(manifest))):
        r = http.post(server + "receive-pack", content=body, headers=AUTH,
                      params={"require-manifest": required})
        assert r.status_code == 400, r.text
        assert r.headers["lockbox-error"] == "IntegrityError"
        assert required in r.text and r.text.count("\n") == 1
    assert not (store / ".manifests").exists()
    assert leftovers(store) == []
    for params in ({"require-manifest": "ABC"}, {"require-manifest": oid(manifest) + "0"},
                   {"manifest": oid(manifest)}):
        r = http.post(server + "receive-pack", content=pack(_objects(), manifest),
                      headers=AUTH, params=params)
        assert r.status_code == 400 and r.text.count("\n") == 1


def test_manifest_without_its_objects_is_refused(server: str, store: Path,
                                                 http: httpx.Client) -> None:
    manifest = manifest_for(FILES)
    r = http.post(server + "receive-pack", content=pack([], manifest), headers=AUTH)
    assert r.status_code == 409, r.text
    assert r.headers["lockbox-error"] == "StorageError"
    assert not (store / ".manifests").exists()


def _damaged() -> list[tuple[str, bytes]]:
    manifest = manifest_for(FILES)
    good = pack(_objects(), manifest)
    big = FILES["b.bin"]
    at = good.index(big) + 1000
    flipped = good[:at] + bytes([good[at] ^ 1]) + good[at + 1:]
    return [
        ("bit flip in a payload", flipped),
        ("bit flip in the manifest", good[:-10] + bytes([good[-10] ^ 1]) + good[-9:]),
        ("no end", good[:-4]),
        ("cut in the manifest", good[:-30]),
        ("bad magic", b"SNAPHACK 1\n" + good[11:]),
        ("version 2", b"SNAPPACK 2\n" + good[11:]),
        ("empty", b""),
        ("record after the manifest", good[:-4] + b"obj " + oid(b"").encode() + b" 0\nend\n"),
        ("double space", good.replace(b"obj ", b"obj  ", 1)),
        ("over-long header", b"SNAPPACK 1\n" + b"obj " + b"a" * 200),
        ("unknown kind", b"SNAPPACK 1\nblob " + oid(b"").encode() + b" 0\nend\n"),
    ]


@pytest.mark.parametrize(("why", "body"), _damaged(), ids=[w for w, _ in _damaged()])
def test_damaged_pack_files_no_manifest(server: str, store: Path, http: httpx.Client,
                                        why: str, body: bytes) -> None:
    r = http.post(server + "receive-pack", content=body, headers=AUTH)
    assert r.status_code == 400, (why, r.text)
    assert r.text.count("\n") == 1 and r.text.strip()
    assert r.headers["lockbox-error"] in ("FormatError", "TruncatedError", "IntegrityError",
                                          "LimitExceededError", "UnsupportedVersionError")
    assert not (store / ".manifests").exists()
    assert leftovers(store) == []
    for path in store_files(store):  # whatever was filed before the damage is verified
        assert oid((store / path).read_bytes()) == "".join(path.split("/")[1:])


def test_body_cap(tmp_path: Path, store: Path, http: httpx.Client) -> None:
    manifest = manifest_for(FILES)
    body = pack(_objects(), manifest)
    with snap_server(tmp_path, store, max_pack_size=50_000) as url:
        r = http.post(url + "receive-pack", content=body, headers=AUTH)  # Content-Length
        assert r.status_code == 413 and "larger than this server accepts" in r.text
        # Chunked: counted as it arrives, refused once past the cap.
        r = http.post(url + "receive-pack", headers=AUTH,
                      content=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]))
        assert r.status_code == 413
        assert r.headers["lockbox-error"] == "LimitExceededError"
    assert not (store / ".manifests").exists()
    assert leftovers(store) == []


def test_zstd_body_is_capped_by_what_it_decompresses_to(tmp_path: Path, store: Path,
                                                       http: httpx.Client) -> None:
    """A 1Z pack far under the wire cap that decompresses past it is refused; one that
    decompresses within it is filed (the cap is the same number: --max-push-size)."""
    bomb = [bytes([i]) * 30_000 for i in range(3)]  # 90 kB of records, ~100 B on the wire
    bomb_manifest = manifest_for({f"f{i}": data for i, data in enumerate(bomb)})
    body = pack_zstd(bomb, bomb_manifest)
    assert len(body) < 1_000
    small = manifest_for(FILES)
    with snap_server(tmp_path, store, max_pack_size=100_000) as url:
        r = http.post(url + "receive-pack", content=pack_zstd(_objects(), small), headers=AUTH)
        assert r.status_code == 200, r.text
    with snap_server(tmp_path, store, max_pack_size=50_000) as url:
        r = http.post(url + "receive-pack", content=body, headers=AUTH)
        assert r.status_code == 400
        assert r.headers["lockbox-error"] == "LimitExceededError"
        assert "decompresses to more than 50000 bytes" in r.text
    assert not (store / rel("manifests", oid(bomb_manifest))).exists()
    assert leftovers(store) == []


# -- interrupted uploads -----------------------------------------------------------------


def _addr(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _cut_upload(url: str, body: bytes, cut: int) -> None:
    """POST ``body`` declaring its full length, send ``cut`` bytes of it, then drop the
    connection (RST, so nothing more reaches the server)."""
    head = (f"POST /snap/receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(_addr(url), timeout=5) as sock:
        sock.sendall(head + body[:cut])
        time.sleep(0.05)  # let the server read it before the reset (not a correctness wait)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} after {GUARD_S} s")
        time.sleep(0.02)


def test_cut_uploads_leave_no_manifest_and_no_temp_file(
        server: str, store: Path, http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lockbox_server")
    manifest = manifest_for(FILES)
    body = pack(_objects(), manifest)
    big = body.index(FILES["b.bin"])
    cuts = [0, 5, 11, 40, big - 3, big + 1, big + 65_000, len(body) - len(manifest) - 20,
            len(body) - 10, len(body) - 4, len(body) - 1]
    for n, cut in enumerate(cuts, start=1):
        _cut_upload(server, body, cut)
        _wait_for(lambda n=n: sum("client went away" in r.getMessage()  # type: ignore[misc]
                                  for r in caplog.records) >= n, f"cut at {cut} not seen")
        assert not (store / ".manifests").exists(), cut
        assert leftovers(store) == [], cut
    # A rerun completes the push; what was filed before is skipped.
    r = http.post(server + "receive-pack", content=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["manifest_id"] == oid(manifest)
    _check_filed(store, manifest)


def test_cut_zstd_upload(server: str, store: Path, http: httpx.Client,
                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lockbox_server")
    manifest = manifest_for(FILES)
    body = pack_zstd(_objects(), manifest)
    _cut_upload(server, body, len(body) - 3)
    _wait_for(lambda: any("client went away" in r.getMessage() for r in caplog.records),
              "the cut upload was not seen")
    assert not (store / ".manifests").exists() and leftovers(store) == []
    r = http.post(server + "receive-pack", content=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["manifest_id"] == oid(manifest)


def test_concurrent_pushes(server: str, store: Path) -> None:
    """Two pushes of overlapping objects at once: both succeed, every file is whole."""
    shared = [os.urandom(300_000) for _ in range(6)]
    first = {f"s{i}": d for i, d in enumerate(shared)} | {"only-1": os.urandom(1000)}
    second = {f"s{i}": d for i, d in enumerate(shared)} | {"only-2": os.urandom(1000)}
    bodies = [pack(list(t.values()), manifest_for(t)) for t in (first, second)]
    results: list[httpx.Response] = []

    def run(body: bytes) -> None:
        with httpx.Client(timeout=GUARD_S) as client:
            results.append(client.post(server + "receive-pack", headers=AUTH, content=iter(
                [body[i:i + 65536] for i in range(0, len(body), 65536)])))

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD_S)
    assert [r.status_code for r in results] == [200, 200]
    assert sum(r.json()["objects_written"] for r in results) >= 8
    for tree in (first, second):
        for data in tree.values():
            assert (store / rel("objects", oid(data))).read_bytes() == data
        assert (store / rel("manifests", oid(manifest_for(tree)))).is_file()
    assert leftovers(store) == []


# -- long pushes and the body deadline ------------------------------------------------------


def test_a_long_steady_push_outlives_the_body_timeout(tmp_path: Path, store: Path) -> None:
    """body_timeout is 1 s, the upload takes about 2.5 s at a steady rate above
    body_min_rate: it completes. A body that dribbles below the rate is cut."""
    data = os.urandom(400_000)
    manifest = manifest_for({"big": data})
    body = pack([data], manifest)
    with snap_server(tmp_path, store, body_timeout=1.0, body_min_rate=20_000.0) as url:
        head = (f"POST /snap/receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{TOKEN}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        start = time.monotonic()
        with socket.create_connection(_addr(url), timeout=GUARD_S) as sock:
            sock.sendall(head)
            for i in range(0, len(body), 16_000):  # ~160 KB/s
                sock.sendall(body[i:i + 16_000])
                time.sleep(0.1)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert time.monotonic() - start > 1.0  # it did outlive body_timeout
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert (store / rel("manifests", oid(manifest))).read_bytes() == manifest

        other = manifest_for({"x": b"xyz"})
        slow = pack([b"xyz"], other)
        with socket.create_connection(_addr(url), timeout=GUARD_S) as sock:
            sock.sendall(head.replace(str(len(body)).encode(), str(len(slow)).encode()))
            closed = False
            deadline = time.monotonic() + GUARD_S
            i = 0
            while time.monotonic() < deadline and i < len(slow):
                try:
                    sock.sendall(slow[i:i + 2])  # ~10 bytes/s
                except OSError:
                    closed = True
                    break
                i += 2
                time.sleep(0.2)
            assert closed, "the dribbling body was never cut"
        assert not (store / rel("manifests", oid(other))).exists()
        _wait_for(lambda: leftovers(store) == [], "temp files left")


# -- stale temporary files -----------------------------------------------------------------


def _temp_name(hex_id: str, pid: int = 4242, n: int = 7) -> str:
    return f"{hex_id[9:]}.{pid}.{n}.tmp"


def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an object")
    os.utime(path, (mtime, mtime))
    return path


def test_sweep_removes_only_the_stores_own_stale_temp_files(
        tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lockbox_server")
    now = time.time()
    old = now - snapstore.STALE_TEMP_AGE_S - 60
    a, b = oid(b"a"), oid(b"b")
    stale = [_touch((store / rel("objects", a)).with_name(_temp_name(a)), old),
             _touch((store / rel("manifests", b)).with_name(_temp_name(b, 1, 0)), old)]
    young = _touch((store / rel("objects", b)).with_name(_temp_name(b)), now - 5)
    outside = _touch(tmp_path / "elsewhere.tmp", old)
    kept = [
        _touch(store / rel("objects", a), old),                        # an object
        _touch((store / rel("objects", a)).with_name(a[9:] + ".tmp"), old),  # no pid, no n
        _touch(store / "notes.1.2.tmp", old),                           # not in the layout
        _touch(store / ".objects" / a[:3] / _temp_name(a), old),        # wrong depth
        _touch(store / ".objects" / "ABC" / "def" / "012" / _temp_name(a), old),  # not hex
        _touch(store / ".other" / a[:3] / a[3:6] / a[6:9] / _temp_name(a), old),
    ]
    link = store / ".objects" / a[:3] / a[3:6] / a[6:9] / _temp_name(a, 1, 1)
    link.symlink_to(outside)
    linked_shard = tmp_path / "shard"
    _touch(linked_shard / "def" / "012" / _temp_name(a), old)
    (store / ".objects" / "eee").symlink_to(linked_shard, target_is_directory=True)
    (store / ".objects" / "ddd" / "eee" / "fff" / _temp_name(a)).mkdir(parents=True)

    report = snapstore.sweep_stale_temps(store, now=now)
    assert sorted(report.removed) == sorted(stale)
    assert report.young == [young] and report.failed == []
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in [*kept, young, outside, link,
                                    linked_shard / "def" / "012" / _temp_name(a)])
    logged = [r for r in caplog.records if "removed a stale temporary file" in r.getMessage()]
    assert sorted(r.getMessage().rsplit(" ", 1)[1] for r in logged) == sorted(map(str, stale))
    assert all(r.levelno == logging.WARNING for r in logged)
    # a later look at the young one alone, once it is stale
    later = snapstore.sweep_stale_temps(store, now=now + snapstore.STALE_TEMP_AGE_S,
                                        paths=report.young)
    assert later.removed == [young] and not young.exists()


def test_a_server_with_pushing_on_sweeps_at_start_up(
        tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stale temp files go at start-up; one a killed server left a moment ago goes once it
    is stale (here: after 0.5 s). A server without pushing never writes the store."""
    started: list[Path] = []
    real_start = snapstore.start_sweep
    monkeypatch.setattr(snapstore, "start_sweep", lambda root, **kw: started.append(root))
    with snap_server(tmp_path, store, token=None):
        pass
    assert started == []
    with snap_server(tmp_path, store):
        pass
    assert started == [store.resolve()]
    monkeypatch.setattr(snapstore, "start_sweep", real_start)
    monkeypatch.setattr(snapstore, "STALE_TEMP_AGE_S", 0.5)
    a = oid(b"a")
    stale = _touch((store / rel("objects", a)).with_name(_temp_name(a)), time.time() - 60)
    fresh = _touch((store / rel("manifests", a)).with_name(_temp_name(a)), time.time())
    with snap_server(tmp_path, store):
        _wait_for(lambda: not stale.exists(), "the stale temp file is still there")
        _wait_for(lambda: not fresh.exists(), "the temp file a moment old never went")
    assert leftovers(store) == []


# -- the token file and the command line -----------------------------------------------------


def test_read_push_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert read_push_token(path) == (TOKEN, None)
    path.chmod(0o644)
    token, warning = read_push_token(path)
    assert token == TOKEN and warning is not None and "chmod 600" in warning
    for content, why in ((b"", "empty"), (b"  \n", "empty"), (b"two words", "one token"),
                         ("caf\u00e9".encode(), "ASCII"), (b"a" * 70_000, "64 KiB")):
        path.write_bytes(content)
        with pytest.raises(TokenFileError, match=why):
            read_push_token(path)
    with pytest.raises(TokenFileError, match="cannot read"):
        read_push_token(tmp_path / "missing")
    with pytest.raises(TokenFileError, match=r"cannot read push token file .*directory"):
        read_push_token(tmp_path)
    read, write = os.pipe()  # --push-token-file <(pass show token)
    os.write(write, TOKEN.encode() + b"\n")
    os.close(write)
    try:
        assert read_push_token(f"/dev/fd/{read}") == (TOKEN, None)
    finally:
        os.close(read)


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lockbox_server", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_command_line(tmp_path: Path, store: Path, http: httpx.Client) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o640)  # group-readable: a warning, not a refusal
    (tmp_path / "archives").mkdir()
    proc = _serve(str(tmp_path / "archives"), "--snap-store", str(store),
                  "--push-token-file", str(token_file))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        warning = proc.stderr.readline()
        assert warning.startswith("lockbox: warning: push token file ") and "chmod 600" in warning
        lines = [proc.stdout.readline()]
        while "snap store:" not in lines[-1] and len(lines) < 8 and lines[-1]:
            lines.append(proc.stdout.readline())
        url = lines[0].split(" at ")[1].split()[0]
        assert f"  snap store: {store} at {url}snap/ (pushes on" in lines[-1], lines
        manifest = manifest_for(FILES)
        r = http.post(url + "snap/receive-pack", content=pack(_objects(), manifest),
                      headers=AUTH)
        assert r.status_code == 200 and r.json()["manifest_id"] == oid(manifest)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(GUARD_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize(("make", "extra", "message"), [
    (lambda p: p.write_text(""), ["--snap-store", "STORE"], "push token file .* is empty"),
    (lambda p: None, ["--snap-store", "STORE"], "cannot read push token file"),
    (lambda p: p.write_text("tok"), [], "--push-token-file and --max-push-size need --snap-store"),
    (lambda p: p.write_text("tok"), ["--snap-store", "NOPE"],
     "cannot serve --snap-store .*nope: not a directory"),
])
def test_command_line_refusals(tmp_path: Path, store: Path, make: Callable[[Path], object],
                               extra: list[str], message: str) -> None:
    token_file = tmp_path / "token"
    make(token_file)
    args = [a.replace("STORE", str(store)).replace("NOPE", str(tmp_path / "nope"))
            for a in extra]
    done = subprocess.run(
        [sys.executable, "-m", "lockbox_server", str(tmp_path), *args,
         "--push-token-file", str(token_file), "--port", "0"],
        capture_output=True, text=True, timeout=GUARD_S, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and re.search("lockbox: " + message, done.stderr)


def test_stopping_the_server_mid_upload_leaves_no_temp_file(tmp_path: Path, store: Path) -> None:
    """uvicorn's graceful shutdown cancels the request after 3 s: the receiver is aborted
    (the staged object's temp file removed), no manifest is filed."""
    data = os.urandom(200_000)
    manifest = manifest_for({"big": data})
    body = pack([data], manifest)
    head = (f"POST /snap/receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with contextlib.ExitStack() as client:  # the client outlives the server
        with snap_server(tmp_path, store) as url:
            sock = client.enter_context(socket.create_connection(_addr(url), 5))
            sock.sendall(head + body[:100_000])  # mid-object: a temp file is being written
            _wait_for(lambda: bool(leftovers(store)), "no temp file while the object streams")
        # The server has stopped (the with block waited for it); the client is still there.
        assert leftovers(store) == []
        assert not (store / ".manifests").exists()
        sock.settimeout(GUARD_S)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer == b"" or answer.startswith(b"HTTP/1.1 500 "), answer  # uvicorn's 500
