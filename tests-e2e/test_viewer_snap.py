"""snapdir snapshots in the viewer: a store on a static host browsed at
``#store=URL&id=ID``; the listing from the manifest, files fetched by id, every byte
BLAKE3-checked in the page before it is shown or saved; a damaged or a missing object
named, the rest still opening.

Two layers: the viewer's Python side on CPython (lockbox.viewer.session + viewer/snap.py,
over a store served by a plain http.server), then Chromium against the store served by the
lockbox server (``--snap-store``: ``/snap/``, same origin, Range-capable) and by a plain
``http.server`` on another origin (no Range support: it answers 200 with the whole file;
CORS headers added, as any cross-origin static host needs).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conftest import Viewer, close_viewer, new_viewer, png

#: The snapshot's tree: path -> (bytes, mode).
TREE: dict[str, tuple[bytes, int]] = {
    "README.md": (b"# A snapdir snapshot\n\nBrowsed in the page.\n", 0o644),
    "bin/run.sh": (b"#!/bin/sh\necho run\n", 0o755),
    "docs/guide.txt": (("guide line %d\n" * 300 % tuple(range(300))).encode(), 0o644),
    "docs/naïve name with spaces.txt": (b"spaces and accents\n", 0o600),
    "docs/deep/note.md": (b"deep note\n", 0o644),
    "images/red.png": (png(32, 24, (220, 40, 40)), 0o644),
    "data/random.bin": (bytes(range(256)) * 2048, 0o644),  # 512 KiB
    "data/same-as-readme.md": (b"# A snapdir snapshot\n\nBrowsed in the page.\n", 0o644),
    "bad/damaged.txt": (b"these bytes will be changed on the server\n" * 10, 0o644),
    "bad/missing.txt": (b"this object will be deleted from the store\n", 0o644),
    "bad/fine.txt": (b"a good file next to bad ones\n", 0o644),
}
EMPTY_DIRS = ("empty",)
DAMAGED, MISSING = "bad/damaged.txt", "bad/missing.txt"


def run(coro: Any) -> Any:
    """asyncio.run in a thread of its own (Playwright's sync API holds the main loop)."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result(90)


@dataclass
class Store:
    dir: Path
    id: str
    tree: Path

    def object_file(self, path: str) -> Path:
        from lockbox.formats.snap.manifest import object_id
        from lockbox.formats.snap.store import object_path

        return self.dir / object_path(object_id(TREE[path][0]))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The tree pushed into a file store by lockbox (its id checked against snapdir's), then
    one object damaged and one deleted."""
    import snapdir

    from lockbox.formats.snap.ops import push
    from lockbox.formats.snap.store import FileStore

    tree = tmp_path_factory.mktemp("snaptree")
    for rel, (data, mode) in TREE.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)
    for rel in EMPTY_DIRS:
        (tree / rel).mkdir()
    root = tmp_path_factory.mktemp("snapstore")
    sid = str(push(tree, FileStore(root, create=True)))
    assert sid == str(run(snapdir.id(str(tree))))
    s = Store(root, sid, tree)
    damaged = s.object_file(DAMAGED)
    flipped = bytearray(damaged.read_bytes())
    flipped[7] ^= 0x20
    damaged.chmod(0o644)
    damaged.write_bytes(bytes(flipped))
    s.object_file(MISSING).unlink()
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return s


class _Handler(SimpleHTTPRequestHandler):
    """python -m http.server's handler (no Range: a 200 with the whole file), with CORS
    headers as a cross-origin static host must send, and a log of the paths asked for."""

    log: list[tuple[str, str]]
    cors = True

    def end_headers(self) -> None:
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def do_GET(self) -> None:
        self.log.append((self.path, self.headers.get("Range", "")))
        super().do_GET()

    def do_OPTIONS(self) -> None:  # a CORS preflight (a Range the browser does not safelist)
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD")
        self.send_header("Access-Control-Allow-Headers", "Range")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class PlainHost:
    """A store folder on ``python -m http.server`` (in a thread)."""

    def __init__(self, directory: Path, *, cors: bool = True) -> None:
        log: list[tuple[str, str]] = []
        handler = type("Handler", (_Handler,), {"log": log, "cors": cors})
        self.log = log
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                         partial(handler, directory=str(directory)))
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, kind: str, since: int = 0) -> list[str]:
        """Paths asked for under ``.objects`` or ``.manifests`` (``kind``)."""
        return [p for p, _ in self.log[since:] if p.startswith(f"/{kind}/")]


@pytest.fixture(scope="module")
def plain_host(store: Store) -> Iterator[PlainHost]:
    host = PlainHost(store.dir)
    try:
        yield host
    finally:
        host.close()


# ----------------------------------------------------------------------------- the Python side


async def call(s: Any, method: str, **args: Any) -> Any:
    return json.loads(await s.call(method, json.dumps(args)))


async def binary(s: Any, method: str, **args: Any) -> Any:
    out = await s.call_binary(method, json.dumps(args))
    return json.loads(out) if isinstance(out, str) else out


async def drain(s: Any, handle: int) -> bytes | dict[str, Any]:
    out = b""
    while True:
        piece = await binary(s, "stream_next", handle=handle)
        if isinstance(piece, dict):
            return piece
        if not piece:
            return out
        out += piece


def test_session_browses_a_store_on_a_plain_host(store: Store, plain_host: PlainHost) -> None:
    from lockbox.formats.snap.manifest import object_id
    from lockbox.viewer.session import Session

    async def go() -> None:
        s = Session()
        mark = len(plain_host.log)
        probe = (await call(s, "open_url", url=f"{plain_host.url}#id={store.id}"))["ok"]
        # opening: one GET, of the manifest
        assert plain_host.gets(".manifests", mark) == [
            "/.manifests/" + "/".join([store.id[:3], store.id[3:6], store.id[6:9],
                                       store.id[9:]])]
        assert len(plain_host.log) == mark + 1
        assert (probe["format"], probe["encrypted"], probe["kind"]) == ("snap", False, "snap")
        assert probe["location"] == f"{plain_host.url}#id={store.id}"
        info = probe["info"]
        assert info["listing"] == "folders" and info["checked_preview_max"] is None
        snap = info["snap"]
        assert snap["snapshot_id"] == store.id and snap["store"] == plain_host.url
        assert snap["files"] == len(TREE) and snap["objects"] == len(TREE) - 1  # a duplicate
        assert snap["file_bytes"] == sum(len(d) for d, _ in TREE.values())
        root = (await call(s, "ls", path=""))["ok"]
        assert root["names"] == ["bad", "bin", "data", "docs", "empty", "images", "README.md"]
        assert root["types"] == "ddddddf"
        docs = (await call(s, "ls", path="docs"))["ok"]
        assert docs["names"] == ["deep", "guide.txt", "naïve name with spaces.txt"]
        assert docs["modes"][1:] == [0o644, 0o600]
        assert docs["sizes"][1:] == [len(TREE["docs/guide.txt"][0]),
                                     len(TREE["docs/naïve name with spaces.txt"][0])]
        assert (await call(s, "ls", path="bin"))["ok"]["modes"] == [0o755]
        assert len(plain_host.log) == mark + 1  # listings come from the manifest
        # a file: one GET of its object, checked; read again: from the verified cache
        before = len(plain_host.log)
        assert await binary(s, "read", path="docs/guide.txt") == TREE["docs/guide.txt"][0]
        assert len(plain_host.gets(".objects", before)) == 1
        h = (await call(s, "stream_open", path="docs/guide.txt"))["ok"]["handle"]
        assert await drain(s, h) == TREE["docs/guide.txt"][0]
        assert len(plain_host.log) == before + 1
        st = (await call(s, "stat", path="README.md"))["ok"]
        assert st["blake3"] == object_id(TREE["README.md"][0]) and st["mode"] == 0o644
        # the damaged object: named, with its file; nothing of it released
        bad = await binary(s, "read", path=DAMAGED)
        err = bad["error"]
        assert (err["kind"], err["title"], err["path"]) == ("corrupt", f"Damaged: {DAMAGED}",
                                                           DAMAGED), err
        assert "does not match its BLAKE3 id" in err["message"]
        h = (await call(s, "stream_open", path=DAMAGED))["ok"]["handle"]
        failed_read = await drain(s, h)
        assert isinstance(failed_read, dict) and failed_read["error"]["kind"] == "corrupt"
        missing = (await binary(s, "read", path=MISSING))["error"]
        assert (missing["kind"], missing["title"]) == ("not_found", f"Missing: {MISSING}")
        assert "is not in the store" in missing["message"]
        # ... and the rest still opens
        assert await binary(s, "read", path="bad/fine.txt") == TREE["bad/fine.txt"][0]
        failed = (await call(s, "info"))["ok"]["snap"]["failed"]
        assert failed == {DAMAGED: "corrupt", MISSING: "not_found"}
        assert (await call(s, "stat", path=DAMAGED))["ok"]["failed"] == "corrupt"
        # a folder as a zip: every file checked before it is written
        z = (await call(s, "zip_open", path="docs"))["ok"]
        data = await drain(s, z["handle"])
        assert isinstance(data, bytes)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.read("docs/guide.txt") == TREE["docs/guide.txt"][0]
            assert zf.read("docs/naïve name with spaces.txt") == TREE[
                "docs/naïve name with spaces.txt"][0]
            assert zf.getinfo("docs/naïve name with spaces.txt").external_attr >> 16 \
                == 0o100600
        z = (await call(s, "zip_open", path="bad"))["ok"]
        err = await drain(s, z["handle"])
        assert isinstance(err, dict) and err["error"]["path"] in (DAMAGED, MISSING), err
        # checking every object: the two bad ones reported
        for _ in range(100):
            step = (await call(s, "snap_check_next"))["ok"]
            if step["done"]:
                break
        report = step["report"]
        assert not report["ok"] and len(report["problems"]) == 2, report
        assert step["objects"] == len(TREE) - 3 and step["objects_total"] == len(TREE) - 1
        net = (await call(s, "network"))["ok"]
        assert net["format"] == "snap" and net["requests"] >= 1
        await s.close()

    run(go())


def test_session_open_errors(store: Store, plain_host: PlainHost) -> None:
    from lockbox.viewer.session import Session

    other = "0" * 64

    async def go() -> None:
        s = Session()
        err = (await call(s, "open_snap", store=plain_host.url, id=other))["error"]
        assert (err["kind"], err["title"]) == ("not_found", "No such snapshot"), err
        assert other in err["message"]
        err = (await call(s, "open_snap", store=plain_host.url, id="ABC"))["error"]
        assert err["kind"] == "usage" and "64" in err["message"], err
        err = (await call(s, "open_url", url=f"{plain_host.url}#id=xyz"))["error"]
        assert (err["kind"], err["title"]) == ("usage", "Not a snapshot id"), err
        err = (await call(s, "open_snap", store="file:///etc", id=store.id))["error"]
        assert (err["kind"], err["title"]) == ("usage", "Not a store address"), err
        # the address of the tree itself (not a store): no manifest there
        err = (await call(s, "open_snap", store=plain_host.url + ".objects/", id=store.id))
        assert err["error"]["kind"] == "not_found", err
        # a store whose manifest was changed: refused before anything is listed
        from lockbox.formats.snap.store import manifest_path

        path = store.dir / manifest_path(store.id)
        original = path.read_bytes()
        try:
            path.write_bytes(original.replace(b"README.md", b"README.mx"))
            err = (await call(s, "open_snap", store=plain_host.url, id=store.id))["error"]
            assert (err["kind"], err["title"]) == ("corrupt", "Damaged snapshot manifest"), err
            path.write_bytes(b"<!doctype html><title>not here</title>\n")
            err = (await call(s, "open_snap", store=plain_host.url, id=store.id))["error"]
            assert (err["kind"], err["title"]) == ("not_archive", "Not a snapdir manifest"), err
        finally:
            path.write_bytes(original)
        err = (await call(s, "open_snap", store="http://127.0.0.1:9/", id=store.id))["error"]
        assert err["kind"] == "network", err
        assert (await call(s, "open_snap", store=plain_host.url, id=store.id))["ok"]
        await s.close()

    run(go())


def test_session_a_store_that_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GET that takes longer than the viewer's limit: one message saying so."""
    from http.server import BaseHTTPRequestHandler

    import lockbox.viewer.snap as snap_module
    from lockbox.viewer.session import Session

    release = threading.Event()

    class Stalling(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(60)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(snap_module, "GET_TIMEOUT_S", 0.5)

    async def go() -> Any:
        return await call(Session(), "open_snap", store=f"http://127.0.0.1:{httpd.server_address[1]}/",
                          id="1" * 64)

    try:
        err = run(go())["error"]
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
    assert (err["kind"], err["title"]) == ("network", "The store did not answer in time"), err


LARGE = 17 * 1024 * 1024 + 5  # over the session's whole-object size: read in windows


@pytest.fixture(scope="module")
def large_snapshot(store: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A second snapshot in the same store: two objects over 16 MiB (one damaged in its
    last window) and a small file."""
    from lockbox.formats.snap.manifest import object_id
    from lockbox.formats.snap.ops import push
    from lockbox.formats.snap.store import FileStore, object_path

    block = bytes((i * 13 + 1) % 251 for i in range(65536))
    good = (block * (LARGE // len(block) + 1))[:LARGE]
    bad = bytes(reversed(good))
    files = {"big/large.bin": good, "big/large-bad.bin": bad, "big/small.txt": b"small\n"}
    tree = tmp_path_factory.mktemp("largetree")
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    sid = str(push(tree, FileStore(store.dir)))
    damaged = store.dir / object_path(object_id(bad))
    damaged.chmod(0o644)
    with open(damaged, "r+b") as f:
        f.seek(LARGE - 3)
        f.write(b"XYZ")
    return {"id": sid, "files": files}


def test_session_large_objects_checked_in_windows(store: Store, plain_host: PlainHost,
                                                  large_snapshot: dict[str, Any]) -> None:
    from lockbox.viewer.session import Session

    sid, files = large_snapshot["id"], large_snapshot["files"]

    async def go() -> None:
        s = Session()
        # checking every object first: the damaged one is found and its file marked
        assert (await call(s, "open_snap", store=plain_host.url, id=sid))["ok"]
        steps = 0
        while True:
            steps += 1
            step = (await call(s, "snap_check_next"))["ok"]
            assert steps < 100
            if step["done"]:
                break
        assert steps > 2  # about 8 MiB per call: progress between calls
        # a check stopped between two steps starts again from the first object
        assert (await call(s, "snap_check_next"))["ok"]["objects"] <= 1
        assert (await call(s, "snap_check_stop"))["ok"] is True
        assert (await call(s, "snap_check_stop"))["ok"] is False
        assert (await call(s, "snap_check_next"))["ok"]["objects"] <= 1
        assert (await call(s, "snap_check_stop"))["ok"] is True
        report = step["report"]
        assert report["failed"] == {"big/large-bad.bin": "corrupt"}, report
        assert (await call(s, "info"))["ok"]["snap"]["failed"] == report["failed"]
        # a preview of part of a large file is refused (it would need the whole object)
        err = (await binary(s, "read", path="big/large.bin", size=4096))["error"]
        assert (err["kind"], err["title"]) == ("usage", "Too large to preview"), err
        assert await binary(s, "read", path="big/small.txt") == b"small\n"
        # its download: window by window, the hash checked before the last piece
        h = (await call(s, "stream_open", path="big/large.bin"))["ok"]
        assert h["size"] == LARGE
        assert await drain(s, h["handle"]) == files["big/large.bin"]
        # the damaged one fails before its last piece: never complete in the page
        h = (await call(s, "stream_open", path="big/large-bad.bin"))["ok"]["handle"]
        got = 0
        while True:
            piece = await binary(s, "stream_next", handle=h)
            if isinstance(piece, dict):
                err = piece["error"]
                break
            assert piece, "the damaged object streamed to its end"
            got += len(piece)
        assert got < LARGE and (err["kind"], err["path"]) == ("corrupt", "big/large-bad.bin")
        await s.close()

    run(go())


# ----------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def snap_server(site: Path, store: Store, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    """The viewer and the store on one origin: ``lockbox serve --snap-store`` (``/snap/``)."""
    from lockbox_server import running

    empty = tmp_path_factory.mktemp("no-archives")
    with running(empty, site_dir=site, snap_store=store.dir, timeout=15) as url:
        yield url.rstrip("/")


@pytest.fixture
def snap_viewer(browser: Any, snap_server: str, request: Any) -> Iterator[Viewer]:
    v = new_viewer(browser, snap_server)
    try:
        yield v
    finally:
        close_viewer(v, request)


def snap_link(store_url: str, snapshot: str, path: str | None = None) -> str:
    link = f"#store={quote(store_url, safe='')}&id={snapshot}"
    return link + (f"&path={quote(path, safe='')}" if path else "")


def layout_gets(v: Viewer, kind: str, since: int = 0) -> list[Any]:
    """The viewer's GETs of the store's ``.manifests`` or ``.objects``."""
    return [r for r in v.requests[since:] if r.method == "GET" and f"/{kind}/" in r.url]


def downloaded(v: Viewer, selector: str) -> bytes:
    with v.page.expect_download() as info:
        v.page.click(selector)
    return Path(info.value.path()).read_bytes()


def test_snapshot_on_the_lockbox_server(snap_viewer: Viewer, snap_server: str,
                                        store: Store) -> None:
    from lockbox.formats.snap.manifest import object_id

    v, page = snap_viewer, snap_viewer.page
    store_url = f"{snap_server}/snap/"
    v.goto(snap_link(store_url, store.id))
    v.wait_python()
    v.wait_listing("README.md")
    # opening: the manifest, fetched once; no object
    manifests = layout_gets(v, ".manifests")
    assert len(manifests) == 1 and not layout_gets(v, ".objects"), [r.url for r in v.requests]
    print(f"\n[e2e] snapshot opened: 1 GET of its manifest ({manifests[0].body_bytes:,} bytes, "
          f"HTTP {manifests[0].status})")
    assert v.names() == ["bad", "bin", "data", "docs", "empty", "images", "README.md"]
    assert page.is_visible("#snap-panel")
    assert store.id in page.text_content("#snap-facts")
    assert page.text_content("#snap-state") == "Manifest checked against the id"
    assert page.is_visible(".list-head .col-mode") and page.is_hidden(".list-head .col-date")
    # modes from the manifest
    v.click_row("bin")
    v.wait_listing("run.sh")
    mode = page.get_attribute('.row-item[data-name="run.sh"] .col-mode', "data-mode")
    assert (mode, page.text_content('.row-item[data-name="run.sh"] .col-mode')) == (
        "0755", "rwxr-xr-x")
    # a file: one GET of its object, checked, then shown; its download reads nothing more
    page.click(".crumb >> nth=0")
    v.wait_listing("docs")
    v.click_row("docs")
    v.wait_listing("guide.txt")
    mark = len(v.requests)
    v.click_row("guide.txt")
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == TREE["docs/guide.txt"][0].decode()
    guide_id = object_id(TREE["docs/guide.txt"][0])
    assert guide_id in page.text_content(".verified")
    got = layout_gets(v, ".objects", mark)
    assert [r.url.rsplit("/snap/", 1)[1].replace("/", "") for r in got] == [
        ".objects" + guide_id], [r.url for r in got]
    print(f"[e2e] a {len(TREE['docs/guide.txt'][0]):,}-byte file shown: 1 GET of its object "
          f"({got[0].body_bytes:,} bytes, HTTP {got[0].status})")
    assert downloaded(v, "#btn-download") == TREE["docs/guide.txt"][0]
    assert len(layout_gets(v, ".objects", mark)) == 1
    page.fill("#filter", "")
    assert "rw-------" in page.eval_on_selector(
        '.row-item[data-name="naïve name with spaces.txt"] .col-mode', "e => e.textContent")
    # an image: previewed from its verified bytes
    page.click(".crumb >> nth=0")
    v.wait_listing("images")
    v.click_row("images")
    v.wait_listing("red.png")
    v.click_row("red.png")
    page.wait_for_selector("img.media")
    assert page.eval_on_selector("img.media", "i => i.decode().then(() => i.naturalWidth)") == 32
    # the damaged and the missing object: named, marked, and the rest still opens
    page.click(".crumb >> nth=0")
    v.wait_listing("bad")
    v.click_row("bad")
    v.wait_listing("damaged.txt")
    v.click_row("damaged.txt")
    err = page.wait_for_selector(".preview-error")
    assert err.query_selector("strong").text_content() == f"Damaged: {DAMAGED}"
    assert "does not match its BLAKE3 id" in err.text_content()
    assert page.is_hidden(".verified")
    page.fill("#filter", "")
    page.wait_for_selector('.row-item[data-name="damaged.txt"][data-failed=corrupt] .tag.bad')
    v.click_row("missing.txt")
    page.wait_for_function("() => document.querySelector('.preview-error strong')?.textContent"
                           " === 'Missing: bad/missing.txt'")
    assert "is not in the store" in page.text_content(".preview-error")
    v.click_row("fine.txt")
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == TREE["bad/fine.txt"][0].decode()
    page.fill("#filter", "")
    assert page.get_attribute('.row-item[data-name="missing.txt"]', "data-failed") == "not_found"
    # a folder with a bad file as a .zip: the download fails, naming the file
    page.click("#btn-zip")
    failed = page.wait_for_selector(".transfer[data-state=failed]")
    assert DAMAGED in failed.text_content() or MISSING in failed.text_content()
    page.click("#alert-dismiss")
    # a good folder as a .zip: every file checked before it is written
    page.click(".crumb >> nth=0")
    v.wait_listing("docs")
    v.click_row("docs")
    v.wait_listing("guide.txt")
    with zipfile.ZipFile(io.BytesIO(downloaded(v, "#btn-zip"))) as z:
        for rel in ("docs/guide.txt", "docs/naïve name with spaces.txt", "docs/deep/note.md"):
            assert z.read(rel) == TREE[rel][0], rel
        assert z.getinfo("docs/naïve name with spaces.txt").external_attr >> 16 == 0o100600
    # every object checked again, in steps: the two bad ones reported
    page.click("#btn-snap-check")
    page.wait_for_selector("body[data-snap-check=problems], body[data-snap-check=ok], "
                           "body[data-snap-check=failed]", timeout=60_000)
    assert page.get_attribute("body", "data-snap-check") == "problems"
    problems = page.eval_on_selector_all("#snap-problems li", "ls => ls.map(l => l.textContent)")
    assert len(problems) == 2 and any(DAMAGED in p for p in problems) \
        and any(MISSING in p for p in problems), problems
    assert page.text_content("#snap-state") == "2 damaged or missing"
    # the info dialog
    page.click("#btn-info")
    page.wait_for_selector("#dlg-info[open]")
    text = page.text_content("#dlg-info")
    assert store.id in text and "snapdir snapshot" in text and "BLAKE3" in text
    page.click("#dlg-info .dlg-close")
    assert v.origins() <= {snap_server}, v.origins()
    assert not [c for c in v.console if c.startswith(("pageerror", "error"))
                and "404" not in c], v.console


def test_snapshot_on_a_plain_static_host(snap_viewer: Viewer, plain_host: PlainHost,
                                         store: Store) -> None:
    """python -m http.server on another origin: no Range (a 200 with the whole file), so
    the store's reader keeps what was asked for; opened from the URL field and a deep link."""
    v, page = snap_viewer, snap_viewer.page
    v.goto()
    v.wait_python()
    mark = len(plain_host.log)
    v.open_url(f"{plain_host.url}#id={store.id}")
    v.wait_listing("README.md")
    assert len(plain_host.gets(".manifests", mark)) == 1 and len(plain_host.log) == mark + 1
    # the page's address names the store and the id
    hash_ = page.evaluate("location.hash")
    assert hash_ == f"#store={quote(plain_host.url, safe='')}&id={store.id}", hash_
    v.click_row("data")
    v.wait_listing("random.bin")
    at = len(plain_host.log)
    v.click_row("random.bin")
    page.wait_for_selector("pre.hex")
    assert page.text_content("pre.hex").startswith("00000000  00 01 02 03 04 05")
    assert len(plain_host.gets(".objects", at)) == 1 and len(plain_host.log) == at + 1
    path, range_header = plain_host.log[at]
    print(f"\n[e2e] plain http.server (no Range): {path.split('/')[1]} asked with "
          f"Range {range_header!r}, answered 200 whole; 1 GET for the 512 KiB file")
    assert page.is_visible(".verified")
    # a deep link to a file: the snapshot opens and previews it
    v.goto(snap_link(plain_host.url, store.id, "docs/deep/note.md"))
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "deep note\n"
    assert page.text_content("#preview-title") == "note.md"
    # a snapshot that is not in the store
    page.evaluate("h => { location.hash = h; }", snap_link(plain_host.url, "0" * 64))
    page.wait_for_selector("#alert:not([hidden])")
    assert page.text_content("#alert-title") == "No such snapshot"
    # a store on another origin that does not allow this page (no CORS headers)
    closed = PlainHost(store.dir, cors=False)
    try:
        page.click("#alert-dismiss")
        page.evaluate("h => { location.hash = h; }", snap_link(closed.url, store.id))
        page.wait_for_selector("#alert:not([hidden])")
        assert page.text_content("#alert-title") == "Could not reach the store"
        assert "(CORS)" in page.text_content("#alert-message")
    finally:
        closed.close()
