"""The read-only mount (ArchiveProvider) through a real server and real clients."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import os
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

import lockbox
from lockbox.facade import Archive
from lockbox.formats.uri.writer import write_uri

pytest.importorskip("wsgidav", reason="the [server] extra is not installed")

from lockbox_server.mount import ArchiveProvider, make_mount_app

DAV = "{DAV:}"

NAMES = {
    "plain.txt": b"plain\n",
    "with space.txt": b"space\n",
    "\u00fcber.txt": b"umlaut\n",
    "emoji \U0001F600.txt": b"emoji\n",
    "100%.txt": b"percent\n",
    "hash#1.txt": b"hash\n",
    "what?.txt": b"question\n",
    "dir \u00fc/inner file.bin": bytes(range(256)) * 40,
    "dir \u00fc/sub/deep.txt": b"deep\n",
}


def q(path: str) -> str:
    """A path as a URL path (every reserved character escaped)."""
    return urllib.parse.quote(path, safe="/")


def propfind(session: Any, url: str, depth: str = "1") -> dict[str, dict[str, str]]:
    """href (decoded, relative to the root) -> {property: text} of a PROPFIND."""
    r = session.request("PROPFIND", url, headers={"Depth": depth})
    assert r.status_code == 207, r.text
    out: dict[str, dict[str, str]] = {}
    for resp in ET.fromstring(r.content).iter(f"{DAV}response"):
        href = urllib.parse.unquote(resp.findtext(f"{DAV}href") or "")
        props: dict[str, str] = {}
        for prop in resp.iter(f"{DAV}prop"):
            for child in prop:
                name = child.tag.replace(DAV, "")
                props[name] = "collection" if child.find(f"{DAV}collection") is not None \
                    else (child.text or "")
        out[href] = props
    return out


@pytest.fixture
def box(make_archive: Any) -> Path:
    path: Path = make_archive(NAMES)
    return path


def test_propfind_depth_0_and_1_with_unicode_names(mount_server: Any, webdav: Any,
                                                   box: Path) -> None:
    with mount_server(box, password="pw") as url:
        root = propfind(webdav, url, "0")
        assert list(root) == ["/"]
        assert root["/"]["resourcetype"] == "collection"
        listing = propfind(webdav, url, "1")
        expected = {"/"} | {f"/{n}" for n in NAMES if "/" not in n} | {"/dir \u00fc/"}
        assert set(listing) == expected
        assert listing["/with space.txt"]["getcontentlength"] == "6"
        sub = propfind(webdav, url + q("dir \u00fc/"), "1")
        assert set(sub) == {"/dir \u00fc/", "/dir \u00fc/inner file.bin", "/dir \u00fc/sub/"}
        assert sub["/dir \u00fc/sub/"]["resourcetype"] == "collection"


def test_get_every_name_byte_identical(mount_server: Any, webdav: Any, box: Path) -> None:
    with mount_server(box, password="pw") as url:
        for name, data in NAMES.items():
            r = webdav.get(url + q(name))
            assert r.status_code == 200, name
            assert r.content == data, name
            assert r.headers["Content-Length"] == str(len(data))


def test_etag_last_modified_and_conditional_get(mount_server: Any, webdav: Any,
                                               box: Path) -> None:
    with lockbox.open(box, password="pw") as archive:
        info = archive.stat("with space.txt")
    with mount_server(box, password="pw") as url:
        r = webdav.head(url + q("with space.txt"))
        assert r.status_code == 200
        assert r.headers["ETag"] == f'"b3-{info.blake3[:40]}"'
        assert r.headers["Content-Length"] == "6"
        assert r.content == b""
        modified = email.utils.parsedate_to_datetime(r.headers["Last-Modified"])
        assert int(modified.timestamp()) == info.mtime_ns // 10**9
        again = webdav.get(url + q("with space.txt"),
                           headers={"If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304
        # (wsgidav answers 304 only for a date after Last-Modified, not equal to it)
        later = email.utils.format_datetime(modified + datetime.timedelta(seconds=1),
                                            usegmt=True)
        earlier = email.utils.format_datetime(modified - datetime.timedelta(seconds=1),
                                              usegmt=True)
        assert webdav.get(url + q("with space.txt"), headers={"If-Modified-Since": later}
                          ).status_code == 304
        assert webdav.get(url + q("with space.txt"), headers={"If-Modified-Since": earlier}
                          ).status_code == 200
        other = webdav.get(url + q("plain.txt"), headers={"If-None-Match": r.headers["ETag"]})
        assert other.status_code == 200 and other.content == NAMES["plain.txt"]


def test_range_get(mount_server: Any, webdav: Any, box: Path) -> None:
    data = NAMES["dir \u00fc/inner file.bin"]
    with mount_server(box, password="pw") as url:
        r = webdav.get(url + q("dir \u00fc/inner file.bin"), headers={"Range": "bytes=5000-5099"})
        assert r.status_code == 206
        assert r.content == data[5000:5100]
        assert r.headers["Content-Range"] == f"bytes 5000-5099/{len(data)}"
        tail = webdav.get(url + q("dir \u00fc/inner file.bin"), headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == data[-10:]


def test_range_get_reads_only_the_chunks_it_needs(mount_server: Any, webdav: Any,
                                                   make_archive: Any) -> None:
    size = 24 * 1024 * 1024
    data = hashlib.shake_256(b"big").digest(size)
    path = make_archive({"big.bin": data}, chunk_size=64 * 1024)
    archive = Archive.open(path, password="pw")
    with mount_server(ArchiveProvider(archive)) as url:
        before = archive.source.stats.bytes_read
        r = webdav.get(url + "big.bin", headers={"Range": "bytes=17000000-17000000"})
        read = archive.source.stats.bytes_read - before
        assert r.status_code == 206 and r.content == data[17000000:17000001]
        # One read window (256 KiB) of 64 KiB chunks plus the tree pages on the way:
        # far below the file's 24 MiB.
        assert read < 1024 * 1024, read
        before = archive.source.stats.bytes_read
        head = webdav.head(url + "big.bin")
        assert head.headers["Content-Length"] == str(size)
        assert archive.source.stats.bytes_read == before  # a HEAD reads no content
        whole = webdav.get(url + "big.bin")
        assert hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()


def test_missing_paths_are_404(mount_server: Any, webdav: Any, box: Path) -> None:
    with mount_server(box, password="pw") as url:
        assert webdav.get(url + "nope.txt").status_code == 404
        assert webdav.get(url + q("dir \u00fc/nope")).status_code == 404
        assert webdav.request("PROPFIND", url + "nope/", headers={"Depth": "0"}
                              ).status_code == 404
        assert webdav.get(url + "plain.txt/x").status_code == 404
        assert webdav.get(url + "../../etc/passwd").status_code in (400, 403, 404)


def _archive_state(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


WRITES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("PUT", "new.txt", {}, b"new"),
    ("PUT", "plain.txt", {}, b"overwrite"),
    ("DELETE", "plain.txt", {}, b""),
    ("DELETE", "dir%20%C3%BC/", {}, b""),
    ("MKCOL", "newdir/", {}, b""),
    ("COPY", "plain.txt", {"Destination": "/copy.txt"}, b""),
    ("MOVE", "plain.txt", {"Destination": "/moved.txt"}, b""),
    ("PROPPATCH", "plain.txt", {"Content-Type": "application/xml"},
     b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop>'
     b"<Z:a>1</Z:a></D:prop></D:set></D:propertyupdate>"),
    ("LOCK", "plain.txt", {"Content-Type": "application/xml"},
     b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
     b"</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"),
    ("UNLOCK", "plain.txt", {"Lock-Token": "<opaquelocktoken:x>"}, b""),
    ("POST", "plain.txt", {}, b"x"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), WRITES,
                         ids=[f"{m}-{p}" for m, p, _, _ in WRITES])
def test_every_write_is_403_and_changes_nothing(mount_server: Any, webdav: Any, box: Path,
                                                method: str, path: str,
                                                headers: dict[str, str], body: bytes) -> None:
    state = _archive_state(box)
    with mount_server(box, password="pw") as url:
        listing = propfind(webdav, url, "1")
        if "Destination" in headers:
            headers = {**headers, "Destination": url.rstrip("/") + headers["Destination"]}
        r = webdav.request(method, url + path, headers=headers, content=body)
        assert r.status_code == 403, (method, r.status_code, r.text)
        assert propfind(webdav, url, "1") == listing
        assert webdav.get(url + "plain.txt").content == NAMES["plain.txt"]
    assert _archive_state(box) == state


def test_options_advertise_reads_only(mount_server: Any, webdav: Any, box: Path) -> None:
    with mount_server(box, password="pw") as url:
        r = webdav.options(url + "plain.txt")
        assert r.status_code == 200
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert allowed == {"OPTIONS", "HEAD", "GET", "PROPFIND"}
        assert r.headers["DAV"].split(",")[0].strip() == "1"
        assert "2" not in r.headers["DAV"]


@pytest.mark.parametrize("depth", ["infinity", None])
def test_propfind_depth_infinity_is_refused(mount_server: Any, webdav: Any, box: Path,
                                           depth: str | None) -> None:
    with mount_server(box, password="pw") as url:
        headers = {"Depth": depth} if depth else {}
        r = webdav.request("PROPFIND", url, headers=headers)
        assert r.status_code == 403
        assert b"propfind-finite-depth" in r.content


def test_uri_archive(mount_server: Any, webdav: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a b").mkdir(parents=True)
    (src / "a b" / "f\u00fc.txt").write_bytes(b"uri content\n")
    dest = tmp_path / "x.uri"
    write_uri(dest, src)
    os.utime(dest, (1_700_000_000, 1_700_000_000))
    with mount_server(dest) as url:
        listing = propfind(webdav, url + "a%20b/", "1")
        assert "/a b/f\u00fc.txt" in listing
        r = webdav.get(url + q("a b/f\u00fc.txt"))
        assert r.status_code == 200 and r.content == b"uri content\n"
        etag = r.headers["ETag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert webdav.get(url + q("a b/f\u00fc.txt"), headers={"If-None-Match": etag}
                          ).status_code == 304
        # .uri keeps no modification times: the archive file's stands in for them
        modified = email.utils.parsedate_to_datetime(r.headers["Last-Modified"])
        assert int(modified.timestamp()) == dest.stat().st_mtime_ns // 10**9
        assert webdav.put(url + "new", content=b"x").status_code == 403


def test_archive_over_http(mount_server: Any, webdav: Any, box: Path) -> None:
    """A .lbox on a web server (lockbox serve's range server) mounts read-only."""
    from lockbox_server import running

    with running(str(box.parent), port=0) as base:
        remote = base.rstrip("/") + "/" + box.name
        with mount_server(remote, password="pw") as url:
            assert webdav.get(url + q("emoji \U0001F600.txt")).content == NAMES[
                "emoji \U0001F600.txt"]
            with pytest.raises(lockbox.UsageError):
                make_mount_app(remote, writable=True, password="pw")


def test_wrong_password_is_one_clear_error(box: Path) -> None:
    with pytest.raises(lockbox.WrongKeyError):
        make_mount_app(box, password="not it")


def test_rclone_copies_the_tree_out_byte_identical(mount_server: Any, rclone: Any,
                                                   rclone_remote: Any, box: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    with mount_server(box, password="pw") as url:
        rclone("copy", rclone_remote(url), str(out))
        listing = rclone("lsf", "-R", rclone_remote(url)).stdout.splitlines()
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == NAMES
    assert "dir \u00fc/sub/deep.txt" in listing


def test_rclone_upload_is_refused(mount_server: Any, rclone: Any, rclone_remote: Any,
                                  box: Path, tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "x.txt").write_bytes(b"x")
    state = _archive_state(box)
    with mount_server(box, password="pw") as url:
        proc = rclone("copy", str(tmp_path / "up"), rclone_remote(url), check=False)
    assert proc.returncode != 0
    assert "403" in proc.stdout + proc.stderr
    assert _archive_state(box) == state


def test_cadaver_lists_and_gets(mount_server: Any, cadaver: Any, box: Path,
                                tmp_path: Path) -> None:
    got = tmp_path / "got.txt"
    with mount_server(box, password="pw") as url:
        proc = cadaver(url, f'ls\ncd "dir \u00fc"\nls\nget "sub/deep.txt" {got}\n'
                            'put /etc/hostname up.txt\n')
    assert isinstance(proc, subprocess.CompletedProcess)
    assert "with space.txt" in proc.stdout, proc.stdout
    assert "inner file.bin" in proc.stdout, proc.stdout
    assert got.read_bytes() == b"deep\n"
    assert "403" in proc.stdout or "Forbidden" in proc.stdout, proc.stdout


def _damage(path: Path, fraction: float) -> None:
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * fraction)] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("fraction", [0.1, 0.8])
def test_a_damaged_chunk_never_serves_wrong_bytes(mount_server: Any, webdav: Any,
                                                   make_archive: Any, fraction: float) -> None:
    """A chunk that does not check out: 500 when nothing was sent yet (the damage is in
    the first block wsgidav reads), else the body is cut (the connection closes short of
    Content-Length); never a wrong byte. The server goes on serving."""
    data = hashlib.shake_256(b"damaged").digest(12_000_000)
    path = make_archive({"f.bin": data, "ok.txt": b"fine\n"})
    _damage(path, fraction)  # inside the big file's chunks (most of the archive)
    with mount_server(path, password="pw") as url:
        got = b""
        status = 0
        try:
            with webdav.stream("GET", url + "f.bin") as r:
                status = r.status_code
                if status == 200:
                    for piece in r.iter_bytes():
                        got += piece
        except httpx.HTTPError:
            pass  # the connection is cut: the client knows the body is incomplete
        assert status in (200, 500)
        assert len(got) < len(data)
        assert data.startswith(got)
        if fraction > 0.5:
            assert status == 200 and len(got) >= 256 * 1024  # the first blocks were good
        assert webdav.get(url + "ok.txt").content == b"fine\n"


def test_a_browser_gets_an_html_listing(mount_server: Any, webdav: Any, box: Path) -> None:
    with mount_server(box, password="pw") as url:
        r = webdav.get(url + q("dir \u00fc"))
        assert r.status_code == 301 and r.headers["Location"].endswith(q("dir \u00fc/"))
        page = webdav.get(url + q("dir \u00fc/"))
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert f'href="{q("inner file.bin")}"' in page.text
        assert webdav.get(url).text.count(q("emoji \U0001F600.txt")) >= 1
