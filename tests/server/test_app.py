"""The range service beyond the range table: listing, refusals, CORS, site, big files."""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from lockbox_server import LISTING_LIMIT, SITE_CSP, archive_urls, running
from lockbox_server.site import content_type_for

from .conftest import SPARSE_SIZE, Served

VIEWER = "http://viewer.example"


def raw_request(base: str, target: str, method: str = "GET", timeout: float = 5.0,
                extra: str = "") -> tuple[int, dict[str, str], bytes]:
    """Send ``target`` byte for byte (httpx would normalise ``..`` and ``%2f``)."""
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
                     .encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


# -- archives: what is served and what is refused ------------------------------------------


REFUSED = [
    "/archives/..%2f..%2fetc%2fpasswd",
    "/archives/../../etc/passwd",
    "/archives/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/archives/%2fetc%2fpasswd",
    "/archives//etc/passwd",
    "/archives/..",
    "/archives/.hidden",
    "/archives/%2ehidden",
    "/archives/escape.bin",  # symlink to a file outside the directory
    "/archives/to-hidden.bin",  # symlink to a dotfile inside
    "/archives/dangling.bin",
    "/archives/sub",
    "/archives/sub/inner.bin",
    "/archives/sub%2finner.bin",
    "/archives/fifo.bin",  # must not block
    "/archives/data.bin%00",
    "/archives/..%5c..%5cetc%5cpasswd",
    "/archives/missing.bin",
    "/archives/",
]


@pytest.mark.parametrize("target", REFUSED)
def test_refused_paths_are_404(served: Served, target: str) -> None:
    status, _headers, body = raw_request(served.url, target)
    assert status == 404, (target, status)
    assert b"root:" not in body and b"secret" not in body and b"inner" not in body


def test_symlink_inside_directory_is_served(served: Served, http: httpx.Client) -> None:
    r = http.get(served.archive("alias.bin"), headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == served.data[10:20]
    assert r.headers["etag"] == http.head(served.archive("data.bin")).headers["etag"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_read_only(served: Served, http: httpx.Client, method: str) -> None:
    for url in (served.archive("data.bin"), served.url + "api/archives", served.url):
        r = http.request(method, url, content=b"x")
        assert r.status_code == 405, (method, url)
        assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert (served.root / "data.bin").read_bytes() == served.data


def test_archive_headers(served: Served, http: httpx.Client) -> None:
    r = http.get(served.archive("data.bin"), headers={"Range": "bytes=0-0"})
    h = r.headers
    assert h["content-type"] == "application/octet-stream"
    assert h["accept-ranges"] == "bytes"
    assert "no-transform" in h["cache-control"]
    assert h["cross-origin-resource-policy"] == "cross-origin"
    assert h["x-content-type-options"] == "nosniff"
    assert h["last-modified"] == "Sun, 13 Sep 2020 12:26:40 GMT"
    assert h["etag"].startswith('"') and not h["etag"].startswith("W/")


def test_two_range_fields_are_ignored(served: Served) -> None:
    status, _headers, body = raw_request(
        served.url, "/archives/data.bin", extra="Range: bytes=0-0\r\nRange: bytes=1-1\r\n")
    assert status == 200 and body == served.data


def test_never_compressed(served: Served, http: httpx.Client) -> None:
    compressible = served.root / "zeros.bin"
    compressible.write_bytes(bytes(200_000))
    try:
        for headers in ({"Accept-Encoding": "gzip, deflate, br, zstd"},
                        {"Accept-Encoding": "gzip", "Range": "bytes=0-99999"}):
            r = http.get(served.archive("zeros.bin"), headers=headers)
            assert "content-encoding" not in r.headers
            assert r.headers["content-length"] == str(len(r.content))
            assert r.num_bytes_downloaded >= len(r.content)
        listing = http.get(served.url + "api/archives", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in listing.headers
    finally:
        compressible.unlink()


# -- /api/archives ---------------------------------------------------------------------------


def test_api_archives(served: Served, http: httpx.Client) -> None:
    r = http.get(served.url + "api/archives")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    listing = r.json()
    items = listing["archives"]
    assert listing["total"] == 5 and listing["truncated"] is False
    assert listing["limit"] == LISTING_LIMIT
    assert [a["name"] for a in items] == [
        "alias.bin", "data.bin", "empty.bin", "future.bin", "sparse.bin"]
    by_name = {a["name"]: a for a in items}
    data = by_name["data.bin"]
    assert data["size"] == len(served.data)
    assert data["mtime"] == "2020-09-13T12:26:40Z"
    assert data["url"] == "/archives/data.bin"
    assert data["etag"] == http.head(served.archive("data.bin")).headers["etag"]
    assert by_name["sparse.bin"]["size"] == SPARSE_SIZE
    head = http.head(served.url + "api/archives")
    assert head.status_code == 200 and head.content == b""


def _fill_listing(root: Path) -> None:
    for name in ("c.lbox", "a b.lbox", "b.lbox", "e.lbox", "d.lbox"):
        (root / name).write_bytes(name.encode())
    (root / ".hidden.lbox").write_bytes(b"x")
    (root / "sub").mkdir()
    (root / "sub" / "inner.lbox").write_bytes(b"x")  # not recursive: never listed
    (root / "link.lbox").symlink_to(root / "b.lbox")  # inside: listed
    (root / "out.lbox").symlink_to("/etc/passwd")  # outside: not listed


def test_api_archives_is_capped_and_says_so(tmp_path: Path, http: httpx.Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import lockbox_server.app

    _fill_listing(tmp_path)
    monkeypatch.setattr(lockbox_server.app, "LISTING_LIMIT", 3)
    with running(tmp_path, allowed_origins=[VIEWER]) as url:
        r = http.get(url + "api/archives", headers={"Origin": VIEWER})
        listing = r.json()
        assert r.headers["access-control-allow-origin"] == VIEWER  # the same CORS rules
        assert [a["name"] for a in listing["archives"]] == ["a b.lbox", "b.lbox", "c.lbox"]
        assert listing["archives"][0]["url"] == "/archives/a%20b.lbox"
        assert (listing["total"], listing["limit"], listing["truncated"]) == (6, 3, True)
        index = http.get(url).text
        assert "3 more" in index and "d.lbox" not in index


def test_archive_urls(tmp_path: Path) -> None:
    _fill_listing(tmp_path)
    urls, total = archive_urls(str(tmp_path), "http://127.0.0.1:8000/", limit=3)
    assert urls == ["http://127.0.0.1:8000/archives/a%20b.lbox",
                    "http://127.0.0.1:8000/archives/b.lbox",
                    "http://127.0.0.1:8000/archives/c.lbox"]
    assert total == 6  # a b, b, c, d, e and link; not the dotfile, sub/ or the escaping link
    urls, total = archive_urls(str(tmp_path), "http://[::1]:9000", limit=10)
    assert len(urls) == 6 and urls[-1] == "http://[::1]:9000/archives/link.lbox"
    assert archive_urls(str(tmp_path), "http://h/", limit=0) == ([], 6)
    assert archive_urls(str(tmp_path / "missing"), "http://h/") == ([], 0)
    with running(tmp_path) as url:  # every URL it names is served
        for u in archive_urls(str(tmp_path), url, limit=10)[0]:
            assert httpx.get(u, timeout=5).status_code == 200, u


def test_index_page_escapes_names(tmp_path: Path, http: httpx.Client) -> None:
    (tmp_path / "a<b>&'\".lbox").write_bytes(b"x")
    with running(tmp_path) as url:
        r = http.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "a&lt;b&gt;&amp;" in r.text and "<b>" not in r.text
        assert "/archives/a%3Cb%3E%26%27%22.lbox" in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        listing = http.get(url + "api/archives").json()["archives"]
        assert listing[0]["url"] == "/archives/a%3Cb%3E%26%27%22.lbox"
        assert http.get(url + listing[0]["url"].lstrip("/")).content == b"x"


# -- CORS --------------------------------------------------------------------------------------


def test_cors_preflight(served: Served, http: httpx.Client) -> None:
    r = http.options(served.archive("data.bin"), headers={
        "Origin": VIEWER,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range, if-match, if-range",
    })
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == VIEWER
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "HEAD"} <= methods and "POST" not in methods
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"range", "if-match", "if-range"} <= allowed
    assert "Origin" in r.headers["vary"]
    # Chrome's Private Network Access: a public viewer may read a loopback server
    # once its origin is allowed.
    pna = http.options(served.archive("data.bin"), headers={
        "Origin": VIEWER, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Private-Network": "true"})
    assert pna.status_code == 200
    assert pna.headers["access-control-allow-private-network"] == "true"


def test_cors_preflight_other_origin_refused(served: Served, http: httpx.Client) -> None:
    r = http.options(served.archive("data.bin"), headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_cors_exposes_range_headers(served: Served, http: httpx.Client) -> None:
    r = http.get(served.archive("data.bin"), headers={"Origin": VIEWER, "Range": "bytes=0-9"})
    assert r.status_code == 206
    assert r.headers["access-control-allow-origin"] == VIEWER
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "accept-ranges", "etag", "content-length",
            "last-modified"} <= exposed
    assert "Origin" in r.headers["vary"]
    other = http.get(served.archive("data.bin"),
                     headers={"Origin": "http://evil.example", "Range": "bytes=0-9"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_default_is_same_origin_only(tmp_path: Path, http: httpx.Client) -> None:
    (tmp_path / "a.lbox").write_bytes(b"abc")
    with running(tmp_path) as url:
        r = http.get(url + "archives/a.lbox", headers={"Origin": VIEWER})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        pre = http.options(url + "archives/a.lbox", headers={
            "Origin": VIEWER, "Access-Control-Request-Method": "GET"})
        assert pre.status_code == 405 and "access-control-allow-origin" not in pre.headers


def test_cors_star(tmp_path: Path, http: httpx.Client) -> None:
    (tmp_path / "a.lbox").write_bytes(b"abc")
    with running(tmp_path, allowed_origins=["*"]) as url:
        r = http.get(url + "archives/a.lbox", headers={"Origin": "https://any.example",
                                                       "Range": "bytes=1-"})
        assert r.status_code == 206 and r.content == b"bc"
        assert r.headers["access-control-allow-origin"] == "*"
        pre = http.options(url + "archives/a.lbox", headers={
            "Origin": "https://any.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range,if-match"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"


def test_cors_star_allows_private_network(tmp_path: Path, http: httpx.Client) -> None:
    """'*' opts every origin into Private Network Access (documented in SERVER.md)."""
    (tmp_path / "a.lbox").write_bytes(b"abc")
    with running(tmp_path, allowed_origins=["*"]) as url:
        for path in ("archives/a.lbox", "api/archives"):
            pre = http.options(url + path, headers={
                "Origin": "https://any-public-page.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Private-Network": "true"})
            assert pre.status_code == 200
            assert pre.headers["access-control-allow-origin"] == "*"
            assert pre.headers["access-control-allow-private-network"] == "true"


# -- big sparse file: bounded memory, fast ranges, disconnects ---------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_sparse_gigabyte_range_near_end_is_fast(served: Served, http: httpx.Client) -> None:
    head = http.head(served.archive("sparse.bin"))
    assert head.headers["content-length"] == str(SPARSE_SIZE)
    started = time.monotonic()
    r = http.get(served.archive("sparse.bin"),
                 headers={"Range": f"bytes={SPARSE_SIZE - 1_048_576}-"})
    elapsed = time.monotonic() - started
    assert r.status_code == 206
    assert r.headers["content-range"] == (
        f"bytes {SPARSE_SIZE - 1_048_576}-{SPARSE_SIZE - 1}/{SPARSE_SIZE}")
    assert r.content == bytes(1_048_576)
    assert elapsed < 30.0, elapsed  # a hang guard, not a speed check


def test_sparse_gigabyte_streams_in_bounded_memory(
    served: Served, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lockbox_server")
    before = _rss_bytes()
    got = 0
    with http.stream("GET", served.archive("sparse.bin")) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(SPARSE_SIZE)
        for chunk in r.iter_raw(1 << 20):
            got += len(chunk)
            if got >= 32 << 20:
                break
    # Whole-file reading would have cost ~1 GiB here (server and client share the process).
    assert _rss_bytes() - before < 200 << 20
    deadline = time.monotonic() + 5
    stopped = []
    while time.monotonic() < deadline and not stopped:
        stopped = [rec for rec in caplog.records if "client went away" in rec.getMessage()]
        time.sleep(0.05)
    assert stopped, "the server did not notice the client going away"
    sent = int(stopped[0].getMessage().split("after ")[1].split()[0])
    assert sent < SPARSE_SIZE // 2
    assert http.get(served.archive("data.bin"), headers={"Range": "bytes=0-0"}).status_code == 206


# -- the viewer site ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    base = tmp_path_factory.mktemp("site")
    archives, site_dir, outside = base / "archives", base / "site", base / "outside"
    for d in (archives, site_dir, outside, site_dir / "sub", site_dir / "pyodide",
              site_dir / "docs", site_dir / "evil.com"):
        d.mkdir()
    (archives / "demo.lbox").write_bytes(b"0123456789")
    (site_dir / "index.html").write_text("<!doctype html><title>viewer</title>")
    (site_dir / "app.mjs").write_text("export {};")
    (site_dir / "worker.js").write_text("self.onmessage = () => {};")
    (site_dir / "style.css").write_text("body{}")
    (site_dir / "crypto.0123abcd.mjs").write_text("export {};")
    (site_dir / "pyodide" / "pyodide.asm.wasm").write_bytes(b"\0asm\1\0\0\0")
    (site_dir / "pyodide" / "pyodide-lock.json").write_text("{}")
    (site_dir / "lockbox-0.1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04")
    (site_dir / "sub" / "index.html").write_text("<p>sub</p>")
    (site_dir / "docs" / "index.html").write_text("<p>docs</p>")
    (site_dir / "evil.com" / "index.html").write_text("<p>a folder named like a host</p>")
    (site_dir / ".secret").write_text("secret")
    (outside / "passwd").write_text("root:x:0:0")
    (site_dir / "leak.txt").symlink_to(outside / "passwd")
    with running(archives, site_dir=site_dir) as plain, \
            running(archives, site_dir=site_dir, isolate=True) as isolated:
        yield plain, isolated, site_dir


@pytest.mark.parametrize(("path", "ctype"), [
    ("", "text/html; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8"),
    ("app.mjs", "text/javascript"),
    ("worker.js", "text/javascript"),
    ("style.css", "text/css; charset=utf-8"),
    ("pyodide/pyodide.asm.wasm", "application/wasm"),
    ("pyodide/pyodide-lock.json", "application/json"),
    ("lockbox-0.1.0-py3-none-any.whl", "application/octet-stream"),
    ("sub/", "text/html; charset=utf-8"),
])
def test_site_types_and_headers(site: tuple[str, str, Path], http: httpx.Client, path: str,
                                ctype: str) -> None:
    plain, _isolated, _root = site
    r = http.get(plain + path)
    assert r.status_code == 200, path
    assert r.headers["content-type"] == ctype
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == SITE_CSP
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "cross-origin-opener-policy" not in r.headers
    assert "content-encoding" not in r.headers


def test_wasm_type_ignores_system_mime_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(mimetypes.types_map, ".wasm", "text/plain")
    monkeypatch.setitem(mimetypes.types_map, ".mjs", "application/x-bogus")
    assert content_type_for("pyodide.asm.wasm") == "application/wasm"
    assert content_type_for("a.MJS") == "text/javascript"
    assert content_type_for("x.whl") == "application/octet-stream"
    assert content_type_for("noext") == "application/octet-stream"


def test_site_csp_is_strict() -> None:
    directives = dict(d.strip().split(" ", 1) for d in SITE_CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert directives["worker-src"] == "'self'"
    assert "'unsafe-eval'" not in SITE_CSP and "'unsafe-inline'" not in SITE_CSP
    assert {"http:", "https:"} <= set(directives["connect-src"].split())


def test_site_cache_policy(site: tuple[str, str, Path], http: httpx.Client) -> None:
    plain = site[0]
    assert http.get(plain + "crypto.0123abcd.mjs").headers["cache-control"].endswith("immutable")
    assert http.get(plain + "app.mjs").headers["cache-control"] == "no-cache"
    r = http.get(plain + "app.mjs")
    again = http.get(plain + "app.mjs", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_site_isolation_headers(site: tuple[str, str, Path], http: httpx.Client) -> None:
    _plain, isolated, _root = site
    for path in ("", "pyodide/pyodide.asm.wasm"):
        r = http.get(isolated + path)
        assert r.headers["cross-origin-opener-policy"] == "same-origin"
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    archive = http.get(isolated + "archives/demo.lbox", headers={"Range": "bytes=2-3"})
    assert archive.status_code == 206 and archive.content == b"23"
    assert archive.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "content-security-policy" not in archive.headers


def test_site_redirects_and_refusals(site: tuple[str, str, Path]) -> None:
    plain = site[0]
    status, headers, _ = raw_request(plain, "/sub")
    assert status == 308 and headers["location"] == "/sub/"
    for target in ("/.secret", "/leak.txt", "/../outside/passwd", "/%2e%2e/outside/passwd",
                   "/sub/../.secret", "/missing.js", "/index.html/", "//etc/passwd",
                   "/pyodide/..%2f.secret"):
        status, headers, body = raw_request(plain, target)
        assert status == 404, target
        assert b"secret" not in body and b"root:" not in body
        assert headers["x-content-type-options"] == "nosniff"


def test_site_and_api_together(site: tuple[str, str, Path], http: httpx.Client) -> None:
    plain = site[0]
    listing = http.get(plain + "api/archives").json()["archives"]
    assert [a["name"] for a in listing] == ["demo.lbox"]
    assert json.loads(http.get(plain + "pyodide/pyodide-lock.json").content) == {}
    r = http.get(plain + "pyodide/pyodide.asm.wasm", headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"\0asm"


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    from lockbox_server import create_app

    with pytest.raises(FileNotFoundError):
        create_app(tmp_path / "nope")
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        create_app(tmp_path / "f")
    assert os.path.isdir(tmp_path)


# -- redirects never leave the server ----------------------------------------------------------

OPEN_REDIRECT_TARGETS = [
    "//docs", "///evil.com", "//evil.com", "/%2F%2Fevil.com", "/%2f%2fevil.com", "/%2Fevil.com",
    "/\\evil.com", "/%5Cevil.com", "/%5C%5Cevil.com", "/\\/evil.com", "/%2F%5Cevil.com",
    "/docs", "/evil.com", "/%2Fdocs", "//docs/", "/./evil.com", "/docs/..//evil.com",
    "/sub?next=//evil.com", "/demo.lbox", "//demo.lbox", "/%2Fdemo.lbox", "/data.bin",
    "//data.bin", "/%2F%2Fdata.bin", "/api/archives/", "/archives/data.bin/",
]


def _assert_stays_here(base: str, target: str) -> str | None:
    status, headers, _body = raw_request(base, target)
    location = headers.get("location")
    if location is None:
        return None
    assert status in (301, 302, 303, 307, 308), (target, status)
    assert location.startswith("/") and location[1:2] not in ("/", "\\"), (target, location)
    assert "\r" not in location and "\n" not in location
    here = urlsplit(base)
    there = urlsplit(urljoin(base, location))
    assert (there.scheme, there.netloc) == (here.scheme, here.netloc), (target, location)
    return location


@pytest.mark.parametrize("target", OPEN_REDIRECT_TARGETS)
def test_no_open_redirect(site: tuple[str, str, Path], served: Served, target: str) -> None:
    for base in (site[0], served.url):  # with the viewer site, and without
        _assert_stays_here(base, target)


def test_safe_redirects_still_work(site: tuple[str, str, Path], served: Served) -> None:
    plain = site[0]
    assert _assert_stays_here(plain, "/docs") == "/docs/"
    assert _assert_stays_here(plain, "/evil.com") == "/evil.com/"  # a folder, not a host
    assert _assert_stays_here(plain, "/sub?next=//evil.com") == "/sub/?next=//evil.com"
    assert _assert_stays_here(plain, "//docs") is None  # empty segment: 404
    assert raw_request(plain, "/%2F%2Fevil.com")[0] == 404
    # "/NAME" of an archive: to /archives/NAME (307), with or without the site
    assert _assert_stays_here(plain, "/demo.lbox") == "/archives/demo.lbox"
    assert _assert_stays_here(served.url, "/data.bin") == "/archives/data.bin"
    assert _assert_stays_here(served.url, "//data.bin") is None
    for refused in ("/.hidden", "/escape.bin", "/sub", "/missing.bin"):
        assert raw_request(served.url, refused)[0] == 404, refused


def test_archive_redirect_is_followed_by_lockbox_clients(served: Served,
                                                         http: httpx.Client) -> None:
    r = http.get(served.url + "data.bin", headers={"Range": "bytes=0-9", "Origin": VIEWER},
                 follow_redirects=True)
    assert r.status_code == 206 and r.content == served.data[:10]
    assert str(r.url) == served.archive("data.bin")
    first = r.history[0]
    assert first.status_code == 307 and first.headers["access-control-allow-origin"] == VIEWER
