"""``lockbox mount`` on ``.sync``: one file (read-only) and sync-mount's store (a folder).

Real servers on 127.0.0.1 (the ``mount_server`` fixture), real clients (httpx, raw
http.client for unnormalised paths, litmus, rclone); the files written are read back
with lockbox's own ``.sync`` reader.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wsgidav")

from lockbox.drivers import run_sync
from lockbox.errors import UsageError, WrongKeyError
from lockbox.formats.sync.container import WASM_STUB, open_layout_flow
from lockbox.formats.sync.manifest import Manifest
from lockbox.formats.sync.vault import encrypt_vault
from lockbox.formats.sync.writer import sync_bytes, write_sync_file
from lockbox.sources import BytesSource
from lockbox_server.mount import syncfs
from lockbox_server.mount.sync_store import (
    display_ext_for_name,
    guess_content_type,
    single_display_name,
    store_display_name,
)

LOG = "lockbox.mount.sync"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def manifest(display_ext: str = "csv", content_type: str = "text/csv", *,
             variant: str = "plain", ttl: int = 60) -> Manifest:
    return Manifest.new(content_type=content_type, display_ext=display_ext,
                        created_by="tests", created_at=NOW, variant=variant, ttl=ttl)


def make_sync(path: Path, payload: bytes, display_ext: str = "csv", **kw: Any) -> Path:
    write_sync_file(path, manifest_toml=manifest(display_ext, **kw).to_toml(), payload=payload)
    return path


def open_sync(path: Path) -> tuple[Any, Manifest, bytes]:
    """The layout, manifest and file bytes of a .sync, through lockbox's strict reader."""
    data = path.read_bytes()
    source = BytesSource(data)
    layout = run_sync(open_layout_flow(len(data), strict=True), source)
    m = layout.manifest
    raw = data[m.data_offset: m.data_offset + m.compressed_size]
    return layout, Manifest.parse(raw, strict=True), data


def entry_bytes(layout: Any, data: bytes, name: str) -> bytes:
    e = layout.entries[name]
    return data[e.data_offset: e.data_offset + e.compressed_size]


def propfind_names(webdav: Any, url: str) -> list[str]:
    r = webdav.request("PROPFIND", url, headers={"Depth": "1"})
    assert r.status_code == 207, r.text
    root = urllib.parse.urlsplit(url).path
    names = []
    for href in ET.fromstring(r.content).iter("{DAV:}href"):
        path = urllib.parse.unquote(href.text or "")
        if path.rstrip("/") != root.rstrip("/"):
            names.append(path[len(root):].rstrip("/"))
    return sorted(names)


def raw_request(url: str, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> int:
    """A request with ``path`` sent exactly as given (httpx would resolve ``..``)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        try:
            resp.read()
        except http.client.IncompleteRead:  # wsgidav's 400 for a path above the root
            pass
        return resp.status
    finally:
        conn.close()


# -- names (sync-mount's rules) ------------------------------------------------------

def test_single_display_name_follows_sync_mount() -> None:
    assert single_display_name("/d/report.sync", "csv") == "report.csv"
    assert single_display_name("/d/report.sync", ".csv") == "report.csv"
    assert single_display_name("/d/report.csv.sync", "csv") == "report.csv"
    # sync-mount's build_display_name; lockbox's reader says report.csv here
    assert single_display_name("/d/report.csv.sync", "pdf") == "report.csv.pdf"
    assert single_display_name("/d/report.sync", "") == "report"
    assert single_display_name("https://h/x/r%C3%A9sum%C3%A9.sync?v=1", "txt") == "résumé.txt"
    assert single_display_name("/d/report.sync", "../evil") == "report"  # not a plain ext
    assert single_display_name("/d/.sync", "csv") == ".sync.csv"


def test_store_display_name_and_upload_names() -> None:
    assert store_display_name("report.pdf.sync", "csv") == "report.pdf"  # stem with a dot
    assert store_display_name("notes.sync", "csv") == "notes.csv"
    assert store_display_name("notes.sync", "") == "notes"
    assert store_display_name("res.sync", "") == "res"
    assert store_display_name("a.sync.sync", "") == "a.sync"
    assert display_ext_for_name("notes.csv") == "csv"
    assert display_ext_for_name("archive.tar.gz") == "gz"
    assert display_ext_for_name("res") == ""
    assert display_ext_for_name(".bashrc") == ""
    assert guess_content_type("notes.csv") == "text/csv"
    assert guess_content_type("sheet.XLSX").startswith("application/vnd.openxmlformats")
    assert guess_content_type("readme.md") == "text/markdown"
    assert guess_content_type("photo.webp") == "image/webp"
    assert guess_content_type("backup.tar.gz") == "application/gzip"
    assert guess_content_type("res") == "application/octet-stream"


# -- one .sync, read-only --------------------------------------------------------------

def test_readonly_sync_serves_payload_at_display_name_and_refuses_put(
        tmp_path: Path, mount_server: Any, webdav: Any) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB
    path = make_sync(tmp_path / "report.sync", payload, "csv")
    with mount_server(str(path)) as url:
        assert propfind_names(webdav, url) == ["report.csv"]
        r = webdav.get(url + "report.csv")
        assert r.status_code == 200 and r.content == payload
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["etag"].strip('"').split("-")[1] == f"{len(payload):x}"
        assert r.headers["last-modified"] == "Fri, 02 Jan 2026 03:04:05 GMT"  # created_at
        h = webdav.head(url + "report.csv")
        assert h.status_code == 200 and h.headers["content-length"] == str(len(payload))
        r = webdav.get(url + "report.csv", headers={"Range": "bytes=1000-1099"})
        assert r.status_code == 206 and r.content == payload[1000:1100]
        r = webdav.get(url + "report.csv", headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == payload[-10:]
        for other in ("payload", "report.sync", "report", "x/report.csv", "manifest.toml"):
            assert webdav.get(url + other).status_code == 404, other
        r = webdav.put(url + "report.csv", content=b"new")
        assert r.status_code == 403
        for method in ("DELETE", "MKCOL", "PROPPATCH"):
            assert webdav.request(method, url + "report.csv").status_code == 403, method
        r = webdav.request("MOVE", url + "report.csv", headers={"Destination": url + "x.csv"})
        assert r.status_code == 403
    assert path.read_bytes() == sync_bytes(manifest_toml=manifest("csv").to_toml(),
                                           payload=payload)


def test_readonly_sync_sees_a_replaced_file(tmp_path: Path, mount_server: Any,
                                            webdav: Any) -> None:
    path = make_sync(tmp_path / "data.json.sync", b'{"v": 1}', "json",
                     content_type="application/json")
    with mount_server(str(path)) as url:
        assert webdav.get(url + "data.json").content == b'{"v": 1}'
        make_sync(tmp_path / "data.json.sync", b'{"v": 22}', "json")  # atomic replace
        assert webdav.get(url + "data.json").content == b'{"v": 22}'


def test_readonly_sync_vault(tmp_path: Path, mount_server: Any, webdav: Any) -> None:
    secret = b"top,secret\n" * 1000
    path = tmp_path / "keys.sync"
    write_sync_file(path, manifest_toml=manifest("csv", variant="vault").to_toml(),
                    payload=encrypt_vault(secret, "pw", scrypt_log_n=10))
    with pytest.raises(UsageError, match="vault"):
        syncfs.make_file_provider(str(path))
    with pytest.raises(WrongKeyError):
        syncfs.make_file_provider(str(path), passphrase="nope")
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "pw"

    provider = syncfs.make_file_provider(str(path), ask_passphrase=ask)
    assert asked == ["Passphrase for keys.sync: "]
    provider.close()  # type: ignore[attr-defined]
    plain = tmp_path / "plain.sync"
    make_sync(plain, b"x")
    syncfs.make_file_provider(str(plain), ask_passphrase=ask).close()  # type: ignore[attr-defined]
    assert len(asked) == 1  # not asked for a file that is not a vault
    with mount_server(str(path), password="pw") as url:
        assert propfind_names(webdav, url) == ["keys.csv"]
        assert webdav.get(url + "keys.csv").content == secret
        r = webdav.get(url + "keys.csv", headers={"Range": "bytes=11-21"})
        assert r.status_code == 206 and r.content == secret[11:22]


def test_readonly_sync_over_http(tmp_path: Path, mount_server: Any, webdav: Any) -> None:
    """A .sync on a web server (lockbox serve's range server): Range GETs become range
    reads of the remote file."""
    from lockbox_server import running

    payload = os.urandom(200_000)
    make_sync(tmp_path / "r\u00e9sum\u00e9.sync", payload, "pdf", content_type="application/pdf")
    with running(str(tmp_path), port=0) as base:
        remote = base.rstrip("/") + "/" + urllib.parse.quote("r\u00e9sum\u00e9.sync")
        with mount_server(remote) as url:
            assert propfind_names(webdav, url) == ["r\u00e9sum\u00e9.pdf"]
            target = url + urllib.parse.quote("r\u00e9sum\u00e9.pdf")
            assert webdav.get(target).content == payload
            r = webdav.get(target, headers={"Range": "bytes=100000-100009"})
            assert r.status_code == 206 and r.content == payload[100000:100010]
            assert webdav.put(target, content=b"x").status_code == 403


def test_invalid_single_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sync"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UsageError, match=r"not a valid \.sync"):
        syncfs.make_file_provider(str(bad))


# -- the writable store ----------------------------------------------------------------

def test_store_wraps_an_upload_into_a_sync(tmp_path: Path, mount_server: Any,
                                           webdav: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    data = b"id,name\n1,ada\n2,grace\n"
    before = datetime.now(UTC).replace(microsecond=0)
    with mount_server(str(store), writable=True) as url:
        assert webdav.put(url + "notes.csv", content=data).status_code == 201
        assert sorted(os.listdir(store)) == ["notes.csv.sync"]
        assert propfind_names(webdav, url) == ["notes.csv"]
        r = webdav.get(url + "notes.csv")
        assert r.content == data and r.headers["content-type"].startswith("text/csv")
    layout, m, raw = open_sync(store / "notes.csv.sync")
    assert (m.version, m.content_type, m.display_ext, m.created_by, m.ttl, m.timeout) == \
        ("1.2", "text/csv", "csv", "lockbox mount", 3600, 30)
    assert m.variant == "plain" and m.allow_hosts == ()
    assert before <= m.created_at <= datetime.now(UTC)
    assert entry_bytes(layout, raw, "payload") == data
    assert entry_bytes(layout, raw, "sync.wasm") == WASM_STUB == b"\0asm\x01\0\0\0"
    # sync-rs's layout, byte for byte: manifest, payload, wasm, all STORED
    assert raw == sync_bytes(manifest_toml=m.to_toml(), payload=data)


def test_store_overwrite_swaps_only_the_payload(tmp_path: Path, mount_server: Any,
                                                webdav: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    m = manifest("csv", ttl=77)
    context = b'{"region": "eu"}'
    write_sync_file(store / "prices.sync", manifest_toml=m.to_toml(), payload=b"old,1\n",
                    wasm=b"\0asm\x01\0\0\0custom", context=context)
    layout0, _, raw0 = open_sync(store / "prices.sync")
    with mount_server(str(store), writable=True) as url:
        assert propfind_names(webdav, url) == ["prices.csv"]
        etag0 = webdav.head(url + "prices.csv").headers["etag"]
        new = b"new,2\n" * 50_000
        assert webdav.put(url + "prices.csv", content=new).status_code == 204
        assert webdav.get(url + "prices.csv").content == new
        assert webdav.head(url + "prices.csv").headers["etag"] != etag0
    assert sorted(os.listdir(store)) == ["prices.sync"]
    layout, m2, raw = open_sync(store / "prices.sync")
    assert m2 == m  # created_at not refreshed (sync-mount)
    for name in ("manifest.toml", "sync.wasm", "context.json"):
        assert entry_bytes(layout, raw, name) == entry_bytes(layout0, raw0, name), name
    assert entry_bytes(layout, raw, "payload") == new
    assert list(layout.entries) == list(layout0.entries)


def test_store_litmus_every_suite(tmp_path: Path, mount_server: Any,
                                  run_litmus: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with mount_server(str(store), writable=True) as url:
        passed, failed, output = run_litmus(url)
    assert (passed, failed) == (104, 0), output
    # what litmus left is wrapped: names without an extension have display_ext ""
    left = [p for p in store.rglob("*") if p.is_file()]
    assert all(p.name.endswith(".sync") for p in left), left


def test_store_rclone_round_trip(tmp_path: Path, mount_server: Any, rclone: Any,
                                 rclone_remote: Any) -> None:
    src = tmp_path / "src"
    files = {"notes.csv": b"a,b\n1,2\n", "deep/er/photo.png": os.urandom(300_000),
             "deep/README": b"no extension", "unicode/r\u00e9sum\u00e9 \u2603.txt": b"snow",
             "empty.bin": b"", "big.dat": os.urandom(3 * 1024 * 1024 + 17),
             "old.sync": b"a name that ends in .sync"}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    store = tmp_path / "store"
    store.mkdir()
    out = tmp_path / "out"
    with mount_server(str(store), writable=True) as url:
        remote = rclone_remote(url)
        rclone("copy", str(src), remote + "tree")
        rclone("check", str(src), remote + "tree")
        rclone("copy", remote + "tree", str(out))
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files
    stored = sorted(str(p.relative_to(store / "tree")) for p in (store / "tree").rglob("*")
                    if p.is_file())
    assert stored == sorted(rel + ".sync" for rel in files)
    _, m, _ = open_sync(store / "tree/deep/er/photo.png.sync")
    assert (m.content_type, m.display_ext) == ("image/png", "png")


def test_store_range_gets(tmp_path: Path, mount_server: Any, webdav: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    data = os.urandom(1_000_003)
    with mount_server(str(store), writable=True) as url:
        webdav.put(url + "blob.bin", content=data)
        for first, last in ((0, 0), (500_000, 500_999), (999_990, 1_000_002)):
            r = webdav.get(url + "blob.bin", headers={"Range": f"bytes={first}-{last}"})
            assert r.status_code == 206 and r.content == data[first:last + 1]
            assert r.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
        r = webdav.get(url + "blob.bin", headers={"Range": "bytes=2000000-"})
        assert r.status_code == 416


def test_store_forbids_dot_dot(tmp_path: Path, mount_server: Any, webdav: Any) -> None:
    store = tmp_path / "store"
    (store / "sub").mkdir(parents=True)
    (tmp_path / "outside.csv.sync").write_bytes(
        sync_bytes(manifest_toml=manifest().to_toml(), payload=b"outside"))
    with mount_server(str(store), writable=True) as url:
        webdav.put(url + "in.csv", content=b"inside")
        for method, path in (("GET", "/sub/../in.csv"), ("GET", "/sub/%2e%2e/in.csv"),
                             ("PUT", "/sub/../x.csv"), ("DELETE", "/sub/../in.csv"),
                             ("GET", "/sub/..%5c..%5coutside.csv")):
            assert raw_request(url, method, path, body=b"x" if method == "PUT" else None) \
                == 403, (method, path)
        # climbing above the root: refused before any provider (wsgidav: 400)
        assert raw_request(url, "GET", "/../outside.csv") in (400, 403)
        for method in ("COPY", "MOVE"):
            status = raw_request(url, method, "/in.csv",
                                 headers={"Destination": url + "sub/../../y.csv"})
            assert status == 403, method
    assert sorted(os.listdir(store)) == ["in.csv.sync", "sub"]
    assert os.listdir(store / "sub") == []


def test_store_macos_metadata_is_a_no_op(tmp_path: Path, mount_server: Any,
                                         webdav: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with mount_server(str(store), writable=True) as url:
        webdav.put(url + "doc.txt", content=b"text")
        for name in ("._doc.txt", ".DS_Store"):
            assert webdav.put(url + name, content=b"\0\x05\x16\x07metadata").status_code \
                in (201, 204)
            r = webdav.get(url + name)
            assert r.status_code == 200 and r.content == b""
            assert webdav.delete(url + name).status_code == 204
        r = webdav.request("MOVE", url + "._doc.txt", headers={"Destination": url + "x.txt"})
        assert r.status_code in (201, 204)
        assert propfind_names(webdav, url) == ["doc.txt"]
    assert os.listdir(store) == ["doc.txt.sync"]


def test_store_skips_invalid_files_with_a_warning(tmp_path: Path, mount_server: Any,
                                                  webdav: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_sync(store / "good.sync", b"ok", "txt")
    (store / "broken.sync").write_bytes(b"PK\x03\x04 truncated")
    good = (store / "good.sync").read_bytes()
    (store / "nopayload.sync").write_bytes(good.replace(b"payload", b"paXload"))
    (store / "readme.txt").write_bytes(b"not a .sync: not shown, no warning")
    caplog.set_level(logging.WARNING, logger=LOG)
    with mount_server(str(store)) as url:  # read-only store listing
        assert propfind_names(webdav, url) == ["good.txt"]
        assert propfind_names(webdav, url) == ["good.txt"]
        assert webdav.get(url + "broken").status_code == 404
        assert webdav.put(url + "new.txt", content=b"x").status_code == 403
    warnings = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert sum("broken.sync" in w for w in warnings) == 1, warnings  # once per version
    assert sum("nopayload.sync" in w for w in warnings) == 1, warnings
    assert not any("readme" in w or "good.sync" in w for w in warnings), warnings
    assert sorted(os.listdir(store)) == ["broken.sync", "good.sync", "nopayload.sync",
                                         "readme.txt"]


def test_store_name_collision_is_deterministic(tmp_path: Path, mount_server: Any,
                                               webdav: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_sync(store / "notes.csv.sync", b"exact name", "csv")
    make_sync(store / "notes.sync", b"stem + display_ext", "csv")
    make_sync(store / "other.sync", b"via display_ext", "csv")
    caplog.set_level(logging.WARNING, logger=LOG)
    with mount_server(str(store), writable=True) as url:
        assert propfind_names(webdav, url) == ["notes.csv", "other.csv"]
        assert webdav.get(url + "notes.csv").content == b"exact name"
        assert webdav.get(url + "other.csv").content == b"via display_ext"
        # an overwrite goes to the file shown; a delete reveals the hidden one
        assert webdav.put(url + "other.csv", content=b"v2").status_code == 204
        assert sorted(os.listdir(store)) == ["notes.csv.sync", "notes.sync", "other.sync"]
        assert webdav.delete(url + "notes.csv").status_code == 204
        assert webdav.get(url + "notes.csv").content == b"stem + display_ext"
    assert any("notes.sync" in r.getMessage() for r in caplog.records if r.name == LOG)


def test_store_move_copy_mkcol_delete(tmp_path: Path, mount_server: Any,
                                      webdav: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with mount_server(str(store), writable=True) as url:
        webdav.put(url + "notes.csv", content=b"n")
        r = webdav.request("MOVE", url + "notes.csv", headers={"Destination": url + "data.csv"})
        assert r.status_code == 201
        assert sorted(os.listdir(store)) == ["data.csv.sync"]
        _, m, _ = open_sync(store / "data.csv.sync")
        assert m.display_ext == "csv"  # the manifest travels unchanged
        # to a name without a dot: display_ext cleared, or it would show as plain.csv
        r = webdav.request("COPY", url + "data.csv", headers={"Destination": url + "plain"})
        assert r.status_code == 201
        assert propfind_names(webdav, url) == ["data.csv", "plain"]
        assert open_sync(store / "plain.sync")[1].display_ext == ""
        assert webdav.request("MKCOL", url + "dir").status_code == 201
        assert webdav.request("MKCOL", url + "dir/sub").status_code == 201
        r = webdav.request("COPY", url + "data.csv", headers={"Destination": url + "dir/sub/d.csv"})
        assert r.status_code == 201
        r = webdav.request("MOVE", url + "dir", headers={"Destination": url + "moved"})
        assert r.status_code == 201
        assert webdav.get(url + "moved/sub/d.csv").content == b"n"
        r = webdav.request("COPY", url + "moved", headers={"Destination": url + "copy"})
        assert r.status_code == 201
        assert webdav.get(url + "copy/sub/d.csv").content == b"n"
        # a folder holding what the store does not show is not deleted
        (store / "copy" / "sub" / "keep.txt").write_bytes(b"mine")
        assert webdav.delete(url + "copy").status_code == 409
        assert (store / "copy" / "sub" / "d.csv.sync").exists()
        (store / "moved" / ".d.csv.sync.999999999.sync-tmp").write_bytes(b"killed writer's")
        assert webdav.delete(url + "moved").status_code == 204
        assert not (store / "moved").exists()
        # upload to a temporary name, then rename (GNOME, davfs2): the store's own
        # template manifest is made again for the final name
        webdav.put(url + ".goutputstream-X1", content=b"%PDF-1.7")
        r = webdav.request("MOVE", url + ".goutputstream-X1",
                           headers={"Destination": url + "report.pdf"})
        assert r.status_code == 201
        _, m, _ = open_sync(store / "report.pdf.sync")
        assert (m.display_ext, m.content_type) == ("pdf", "application/pdf")
        # a manifest made elsewhere travels unchanged, byte for byte
        make_sync(store / "theirs.sync", b"t", "csv")
        manifest_before = open_sync(store / "theirs.sync")[1]
        r = webdav.request("MOVE", url + "theirs.csv", headers={"Destination": url + "t.json"})
        assert r.status_code == 201
        assert open_sync(store / "t.json.sync")[1] == manifest_before
        # a name ending in .sync round-trips
        webdav.put(url + "x.sync", content=b"wrapped")
        assert webdav.get(url + "x.sync").content == b"wrapped"
    assert (store / "x.sync.sync").exists()


def test_store_vault_is_listed_not_served(tmp_path: Path, mount_server: Any,
                                          webdav: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    write_sync_file(store / "keys.sync", manifest_toml=manifest(variant="vault").to_toml(),
                    payload=encrypt_vault(b"s", "pw", scrypt_log_n=10))
    before = (store / "keys.sync").read_bytes()
    with mount_server(str(store), writable=True) as url:
        assert propfind_names(webdav, url) == ["keys.csv"]
        assert webdav.get(url + "keys.csv").status_code == 403
        assert webdav.put(url + "keys.csv", content=b"plain").status_code == 403
    assert (store / "keys.sync").read_bytes() == before


def test_store_put_streams_to_an_unnamed_spool(tmp_path: Path, mount_server: Any) -> None:
    """A PUT whose body stops half-way leaves no file and no temporary file."""
    store = tmp_path / "store"
    store.mkdir()
    with mount_server(str(store), writable=True) as url:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        conn.putrequest("PUT", "/cut.bin")
        conn.putheader("Content-Length", str(10_000_000))
        conn.endheaders()
        conn.send(b"x" * 1_000_000)
        conn.close()
        probe = io.BytesIO(b"after")
        status = raw_request(url, "PUT", "/after.bin", body=probe.getvalue())
        assert status == 201
    assert os.listdir(store) == ["after.bin.sync"]


def test_factories_reject_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown option"):
        syncfs.make_store_provider(str(tmp_path), writable=True, colour="blue")
    with pytest.raises(UsageError, match="not a directory"):
        syncfs.make_store_provider(str(tmp_path / "missing"), writable=False)


def test_store_cadaver_script(tmp_path: Path, mount_server: Any, cadaver: Any) -> None:
    store = tmp_path / "store"
    store.mkdir()
    local = tmp_path / "report.txt"
    local.write_bytes(b"quarterly\n")
    got = tmp_path / "got.txt"
    with mount_server(str(store), writable=True) as url:
        proc = cadaver(url, f"mkcol docs\ncd docs\nput {local} report.txt\ncopy report.txt "
                            f"copy.txt\nmove report.txt final.txt\nls\nget final.txt {got}\n"
                            "delete copy.txt\nls\n")
    assert got.read_bytes() == b"quarterly\n", proc.stdout
    assert "final.txt" in proc.stdout, proc.stdout
    assert sorted(os.listdir(store / "docs")) == ["final.txt.sync"]
    layout, m, raw = open_sync(store / "docs" / "final.txt.sync")
    assert (m.display_ext, m.content_type) == ("txt", "text/plain")
    assert entry_bytes(layout, raw, "payload") == b"quarterly\n"


def test_store_concurrent_puts(tmp_path: Path, mount_server: Any) -> None:
    """Threads uploading at once (distinct names, and all to one name) leave only whole,
    valid files: each name holds one of the versions sent to it."""
    import concurrent.futures

    import httpx

    store = tmp_path / "store"
    store.mkdir()
    versions = {f"v{i}": os.urandom(50_000 + i) for i in range(8)}
    with mount_server(str(store), writable=True) as url:
        def upload(job: tuple[str, str]) -> int:
            name, version = job
            with httpx.Client(timeout=120) as client:
                return client.put(url + name, content=versions[version]).status_code

        jobs = [(f"own-{v}.bin", v) for v in versions] * 3 + [("shared.bin", v)
                                                            for v in versions] * 3
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(upload, jobs))
        assert set(statuses) <= {201, 204}, statuses
        with httpx.Client(timeout=120) as client:
            for v, data in versions.items():
                assert client.get(url + f"own-{v}.bin").content == data
            assert client.get(url + "shared.bin").content in versions.values()
    assert sorted(os.listdir(store)) == sorted([f"own-{v}.bin.sync" for v in versions] +
                                               ["shared.bin.sync"])
    for path in store.iterdir():
        layout, _, raw = open_sync(path)
        assert entry_bytes(layout, raw, "payload") in versions.values()
