"""lockbox.webview (the viewer's Python side) on CPython, over file sources: fast checks of
what the browser tests rely on (listing columns, previews, streams, zips, messages)."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import lockbox
from conftest import CORRUPT_FILE, ENV, PASSWORD, SYMLINKS, TREE, Archives
from lockbox.format.entry import decode_entry
from lockbox.sources import AsyncFileSource
from lockbox.webview import Session, _entry_head, classify


def run(coro: Any) -> Any:
    """asyncio.run in a thread of its own: Playwright's sync API (other tests of the run)
    keeps an event loop running in the main thread."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result(90)


async def opened(path: Path, password: str | None = PASSWORD) -> Session:
    s = Session()
    await s.open_source(AsyncFileSource(path), location=str(path), name=path.name, kind="file")
    if password is not None:
        await s.unlock(password=password)
    return s


async def call(s: Session, method: str, **args: Any) -> Any:
    return json.loads(await s.call(method, json.dumps(args)))


async def drain(s: Session, handle: int) -> bytes | dict[str, Any]:
    out = b""
    while True:
        piece = await s.call_binary("stream_next", json.dumps({"handle": handle}))
        if isinstance(piece, str):
            return json.loads(piece)["error"]
        if not piece:
            return out
        out += piece


def test_probe_unlock_listing(archives: Archives) -> None:
    async def go() -> None:
        s = await opened(archives.path("tree.lbox"), password=None)
        assert s._probe["methods"] == ["password"] and s._probe["generation"] >= 1
        bad = await call(s, "unlock", password="nope")
        assert bad["error"]["kind"] == "wrong_key"
        info = (await call(s, "unlock", password=PASSWORD))["ok"]
        assert info["files"] == len(TREE) and info["unlocked_with"] == "password"
        root = (await call(s, "ls", path=""))["ok"]
        assert root["names"][:4] == ["data", "docs", "images", "media"]
        assert root["types"] == "dddd" + "".join(
            "l" if n in SYMLINKS else "f" for n in root["names"][4:])
        assert root["counts"]["dirs"] == 4
        link = root["names"].index("latest-guide")
        assert root["targets"][str(link)] == SYMLINKS["latest-guide"]
        docs = (await call(s, "ls", path="docs"))["ok"]
        i = docs["names"].index("guide.txt")
        assert docs["sizes"][i] == len(TREE["docs/guide.txt"])
        assert docs["mtimes"][i] == 1_700_000_000_000
        net = (await call(s, "network"))["ok"]
        assert net["round_trips"] >= 1 and net["bytes"] > 0
        missing = await call(s, "ls", path="nope")
        assert missing["error"]["kind"] == "not_found"
        await s.close()

    run(go())


def test_entry_head_agrees_with_decode_entry(archives: Archives) -> None:
    with lockbox.open(archives.path("tree.lbox"), password=PASSWORD) as box:
        from lockbox.format.constants import FrameKind

        pairs = box._run(box.view.scan_flow(FrameKind.TOC_NODE, box.view.commit.toc,
                                            [(b"", b"\xff" * 8)]))
    assert len(pairs) > len(TREE)
    for _, value in pairs:
        e = decode_entry(value)
        assert _entry_head(value) == (int(e.type), e.mtime_ns, e.size, e.target)


def test_reads_streams_and_zip(archives: Archives) -> None:
    async def go() -> None:
        s = await opened(archives.path("tree.lbox"))
        data = TREE["data/random.bin"]
        head = await s.call_binary("read", json.dumps({"path": "data/random.bin",
                                                         "offset": 1_000_000, "size": 100_000}))
        assert head == data[1_000_000:1_100_000]
        small = await s.call_binary("read", json.dumps({"path": "README.md"}))
        assert small == TREE["README.md"]
        h = (await call(s, "stream_open", path="data/random.bin"))["ok"]
        assert h["size"] == len(data)
        assert await drain(s, h["handle"]) == data
        z = (await call(s, "zip_open", path=""))["ok"]
        assert z["name"] == "tree.zip"
        blob = await drain(s, z["handle"])
        assert isinstance(blob, bytes)
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert zf.testzip() is None
            files = {n[len("tree/"):]: zf.read(n) for n in zf.namelist()
                     if not n.endswith("/") and n[len("tree/"):] not in SYMLINKS}
            assert files == TREE
        env = (await call(s, "env"))["ok"]
        assert {e["name"] for e in env} == set(ENV)
        value = (await call(s, "env_value", name="API_TOKEN"))["ok"]
        assert value == {"name": "API_TOKEN", "text": ENV["API_TOKEN"], "binary": False}
        await s.close()

    run(go())


def test_corrupt_chunk_is_named_and_others_read(archives: Archives) -> None:
    async def go() -> None:
        s = await opened(archives.path("corrupt.lbox"))
        err = json.loads(await s.call_binary("read", json.dumps({"path": CORRUPT_FILE})))
        assert err["error"]["kind"] == "corrupt" and err["error"]["path"] == CORRUPT_FILE
        assert await s.call_binary("read", json.dumps({"path": "README.md"})) == \
            TREE["README.md"]
        z = (await call(s, "zip_open", path="docs"))["ok"]
        failed = await drain(s, z["handle"])
        assert isinstance(failed, dict) and failed["path"] == CORRUPT_FILE
        await s.close()

    run(go())


def test_not_a_lockbox(archives: Archives) -> None:
    s = Session()
    out = json.loads(run(s.call("open_url", json.dumps({"url": "ftp://x/y"}))))
    assert out["error"]["kind"] == "usage"
    with pytest.raises(lockbox.FormatError) as exc:
        run(s.open_source(AsyncFileSource(archives.path("not-an-archive.lbox")),
                          location="x", name="x", kind="file"))
    assert classify(exc.value, stage="open")["kind"] == "not_lockbox"


@pytest.mark.parametrize(("error", "kind"), [
    (lockbox.SourceChangedError("etag changed"), "changed"),
    (lockbox.RangeNotSupportedError("200"), "no_range"),
    (lockbox.SourceUnavailableError("GET x failed: boom (network error, or blocked by CORS)"),
     "network"),
    (lockbox.SourceUnavailableError("GET x: HTTP 404 Not Found"), "unavailable"),
    (lockbox.StorageError("206 with unusable Content-Range None (a cross-origin server must "
                          "list Content-Range in Access-Control-Expose-Headers)"), "cors"),
    (lockbox.WrongKeyError("wrong password or identity: no key slot opens"), "wrong_key"),
    (lockbox.IntegrityError("bad tag"), "corrupt"),
    (RuntimeError("boom"), "internal"),
])
def test_classify(error: Exception, kind: str) -> None:
    info = classify(error, stage="read", path="a/b.txt")
    assert info["kind"] == kind and info["title"] and info["message"]
