"""lockbox.viewer.session (the viewer's Python side) on CPython, over file sources: fast checks
of what the browser tests rely on (listing columns, previews, streams, zips, messages), for
.lbox and .uri archives."""

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
from lockbox.formats.lbox.wire.entry import decode_entry
from lockbox.sources import AsyncFileSource
from lockbox.viewer.messages import ViewerError
from lockbox.viewer.session import CHECKED_PREVIEW_MAX, Session, classify


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
        assert info["details"]["files"] == len(TREE)
        assert info["lbox"]["unlocked_with"] == "password"
        assert (info["format"], info["encrypted"], info["listing"]) == ("lbox", True, "folders")
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


def test_listing_columns_agree_with_the_entries(archives: Archives) -> None:
    """Every column of every folder's listing is what the TOC entry says."""
    from lockbox.formats.lbox.wire.constants import EntryType, FrameKind
    from lockbox.formats.lbox.wire.entry import key_path

    with lockbox.open(archives.path("tree.lbox"), password=PASSWORD) as box:
        pairs = box.run(box.view.scan_flow(FrameKind.TOC_NODE, box.view.commit.toc,
                                            [(b"", b"\xff" * 8)]))
    assert len(pairs) > len(TREE)
    entries = {key_path(k): decode_entry(v) for k, v in pairs}

    async def go() -> dict[str, tuple[str, int, int, str]]:
        s = await opened(archives.path("tree.lbox"))
        seen = {}
        for folder in ["", *(p for p, e in entries.items() if e.type == EntryType.DIR)]:
            cols = (await call(s, "ls", path=folder))["ok"]
            for i, name in enumerate(cols["names"]):
                seen[f"{folder}/{name}" if folder else name] = (
                    cols["types"][i], cols["sizes"][i], cols["mtimes"][i],
                    cols["targets"].get(str(i), ""))
        await s.close()
        return seen

    codes = {EntryType.FILE: "f", EntryType.DIR: "d", EntryType.SYMLINK: "l"}
    assert run(go()) == {p: (codes[e.type], e.size, e.mtime_ns // 1_000_000, e.target)
                         for p, e in entries.items()}


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


def test_not_an_archive(archives: Archives) -> None:
    s = Session()
    out = json.loads(run(s.call("open_url", json.dumps({"url": "ftp://x/y"}))))
    assert out["error"]["kind"] == "usage"
    with pytest.raises(ViewerError) as exc:
        run(s.open_source(AsyncFileSource(archives.path("not-an-archive.lbox")),
                          location="x", name="x", kind="file"))
    info = classify(exc.value, stage="open", location="x")
    assert info["kind"] == "not_archive"
    assert info["title"] == "Not an archive lockbox can read"
    assert info["message"] == ("This file is not a .lbox, .uri or .sync archive (x): it "
                               "looks like a ZIP archive.")


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


def test_wrong_key_title_is_neutral() -> None:
    """The page names the secret given ("Wrong password" / "Wrong identity file")."""
    info = classify(lockbox.WrongKeyError("wrong password or identity: no key slot opens"),
                    stage="unlock")
    assert info["title"] == "Wrong key"
    assert "password" not in info["title"].lower()


def test_missing_archive_names_the_url_once() -> None:
    url = "http://user:pw@127.0.0.1:8000/archives/missing.lbox?sig=secret"
    shown = "http://127.0.0.1:8000/archives/missing.lbox?…"
    exc = lockbox.SourceUnavailableError(f"GET {shown}: HTTP 404 Not Found")
    info = classify(exc, stage="open", location=url)
    text = f"{info['title']} {info['message']}"
    assert text.count("missing.lbox") == 1, text
    assert "HTTP 404 Not Found" in info["message"] and shown in info["message"]
    assert "pw" not in text and "secret" not in text  # no credentials, no query
    # a local file's message starts with its name: named once too
    gone = lockbox.SourceUnavailableError("tree.lbox: reading bytes 0-9: the file is gone (x)")
    msg = classify(gone, stage="read", location="tree.lbox")["message"]
    assert msg.count("tree.lbox") == 1, msg


# -- reuse of verified chunks, batched zips --------------------------------------------------


def trips(s: Session) -> tuple[int, int]:
    n = s.network()
    return n["round_trips"], n["bytes"]


def test_preview_then_download_reuses_the_verified_chunks(archives: Archives) -> None:
    async def go() -> None:
        s = await opened(archives.path("tree.lbox"))
        # a whole small file: the download fetches nothing
        assert await s.call_binary("read", json.dumps({"path": "docs/guide.txt"})) == \
            TREE["docs/guide.txt"]
        before = trips(s)
        h = (await call(s, "stream_open", path="docs/guide.txt"))["ok"]
        assert await drain(s, h["handle"]) == TREE["docs/guide.txt"]
        assert trips(s) == before
        # the head of a 2-chunk file: the download fetches the second chunk only
        data = TREE["data/random.bin"]
        head = await s.call_binary("read", json.dumps({"path": "data/random.bin",
                                                         "size": 4096}))
        assert head == data[:4096]
        ext = s._lbox
        assert ext is not None
        e = await ext.source.run(ext.view.stat_flow("data/random.bin"))
        assert e.chunks == 2
        rt, nbytes = trips(s)
        reused = s.network()["reused"]["chunks"]
        h = (await call(s, "stream_open", path="data/random.bin"))["ok"]
        assert await drain(s, h["handle"]) == data
        rt2, nbytes2 = trips(s)
        assert rt2 == rt + 1 and nbytes2 - nbytes == e.refs[1].frame_size
        assert s.network()["reused"]["chunks"] == reused + 1
        # closing forgets them
        plain = ext.plain
        await s.close()
        assert s._lbox is None and s.network()["reused"]["chunks"] == 0
        assert len(plain) > 0  # (the cache went with the archive)

    run(go())


def test_plain_cache_is_bounded() -> None:
    from lockbox.formats.lbox.view import ChunkData
    from lockbox.viewer.lbox import PlainCache

    cache = PlainCache(limit_bytes=100)
    chunk = ChunkData(0, memoryview(b"x" * 40), None)  # type: ignore[arg-type]
    for n in range(5):
        cache.put((b"f", b"h", n), chunk)
    assert len(cache) == 2 and cache.size_bytes == 80  # the oldest went first
    assert cache.get((b"f", b"h", 0)) is None and cache.get((b"f", b"h", 4)) is chunk
    cache.put((b"f", b"h", 9), ChunkData(9, memoryview(b"y" * 101), None))  # type: ignore[arg-type]
    assert len(cache) == 2  # larger than the whole budget: not kept


def write_folder(path: Path, files: int, *, chunk_size: int = 1 << 20,
                 extra: dict[str, bytes] | None = None) -> None:
    from conftest import WEAK

    box = lockbox.create(path, password=PASSWORD, argon2=WEAK, chunk_size=chunk_size)
    with box.writer() as w:
        w.add_bytes("top.txt", b"top\n")
        for i in range(files):
            w.add_bytes(f"many/f{i:03d}.txt", b"file %d\n" % i * (i + 1))
        for name, data in (extra or {}).items():
            w.add_bytes(name, data)
    box.close()


async def zip_network(path: Path, folder: str = "many"
                      ) -> tuple[int, dict[str, Any], dict[str, bytes]]:
    """(round trips of the zip of ``folder``, the session's network figures, its files)."""
    s = await opened(path)
    await call(s, "ls", path="")
    rt0 = s.network()["round_trips"]
    z = (await call(s, "zip_open", path=folder))["ok"]
    blob = await drain(s, z["handle"])
    assert isinstance(blob, bytes), blob
    n = s.network()
    await s.close()
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        files = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}
    return n["round_trips"] - rt0, n, files


async def zip_round_trips(path: Path, folder: str = "many") -> tuple[int, int, dict[str, bytes]]:
    rt, n, files = await zip_network(path, folder)
    return rt, n["requests"], files


def test_zip_of_many_small_files_costs_a_few_round_trips(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """120 small files, packed in one PACK frame: their zip fetches and opens that pack
    once. Batches of at most ZIP_BATCH_MEMBERS files: the later batches find the pack held
    by the view (no fetch); when the view cannot hold it, each batch fetches it again."""
    from lockbox.formats.lbox.wire.constants import EntryType
    from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED

    few, many = tmp_path / "few.lbox", tmp_path / "many.lbox"
    write_folder(few, 3)
    write_folder(many, 120)
    with lockbox.open(many, password=PASSWORD) as box:
        entries = [e for _, e in box.run(box.view.walk_flow("many"))
                   if e.type == EntryType.FILE]
    assert len(entries) == 120 and {e.layout for e in entries} == {LAYOUT_PACKED}
    assert len({e.refs[0].frame_offset for e in entries}) == 1  # one pack
    rt_few, _, _ = run(zip_round_trips(few))
    rt_many, n, files = run(zip_network(many))
    assert len(files) == 120
    assert files["many/f007.txt"] == b"file 7\n" * 8
    assert rt_many == rt_few <= 3, (rt_few, rt_many)  # the walk, then one batch
    assert n["requests"] <= 6, n["requests"]
    assert n["reused"]["packs_opened"] == 1
    zips = [x["what"] for x in n["log"] if x["what"].startswith("zip ")]
    assert zips == ["zip 120 files from /many/f000.txt"], zips  # the pack: one read

    # 50 files a batch: three batches; the pack, held by the view, is fetched once
    monkeypatch.setattr("lockbox.viewer.lbox.ZIP_BATCH_MEMBERS", 50)
    rt_split, n, files = run(zip_network(many))
    assert rt_split == rt_many and len(files) == 120
    assert n["reused"]["packs_opened"] == 1
    zips = [x["what"] for x in n["log"] if x["what"].startswith("zip ")]
    assert zips == ["zip 50 files from /many/f000.txt"], zips  # the others read nothing

    # a view that holds no pack: each batch fetches and opens it again (a round trip each)
    monkeypatch.setattr("lockbox.formats.lbox.view.PACK_CACHE_BYTES", 1)
    rt_cold, n, files = run(zip_network(many))
    assert rt_cold == rt_many + 2 and len(files) == 120
    assert n["reused"]["packs_opened"] == 3
    zips = [x["what"] for x in n["log"] if x["what"].startswith("zip ")]
    assert zips == ["zip 50 files from /many/f000.txt", "zip 50 files from /many/f050.txt",
                    "zip 20 files from /many/f100.txt"], zips


def test_zip_batches_files_with_index_frames_and_streams_large_ones(tmp_path: Path) -> None:
    """Small files of many chunks (their refs in index frames: one round trip for all the
    batch's indexes) and a file larger than ZIP_SMALL_FILE (streamed alone)."""
    from lockbox.viewer.lbox import ZIP_SMALL_FILE

    path = tmp_path / "mixed.lbox"
    indexed = {f"many/idx{i}.bin": bytes([i]) * (4096 * 10 + i) for i in range(4)}
    large = {"many/large.bin": bytes(range(256)) * (ZIP_SMALL_FILE // 256 + 40)}
    write_folder(path, 5, chunk_size=4096, extra={**indexed, **large})
    rt, _, files = run(zip_round_trips(path))
    for name, data in {**indexed, **large}.items():
        assert files[name] == data
    assert len(files) == 10
    assert rt <= 3 + 2 + (len(large["many/large.bin"]) // (8 << 20) + 2), rt


def test_zip_masks_modes(tmp_path: Path) -> None:
    from conftest import WEAK

    path = tmp_path / "modes.lbox"
    box = lockbox.create(path, password=PASSWORD, argon2=WEAK)
    with box.writer() as w:
        w.mkdir("d/sticky", mode=0o1777)
        w.add_bytes("d/suid", b"#!/bin/sh\n", mode=0o4777)
        w.add_bytes("d/plain", b"x", mode=0o666)
        w.add_bytes("d/private", b"y", mode=0o400)
    box.close()

    async def go() -> bytes:
        s = await opened(path)
        z = (await call(s, "zip_open", path="d"))["ok"]
        blob = await drain(s, z["handle"])
        await s.close()
        assert isinstance(blob, bytes)
        return blob

    with zipfile.ZipFile(io.BytesIO(run(go()))) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert modes == {"d/sticky/": 0o40755, "d/plain": 0o100644,
                     "d/private": 0o100600, "d/suid": 0o100755}


# -- .uri: no unlock, a streamed walk, checked and unchecked reads ------------------------------


@pytest.fixture(scope="module")
def uri_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lockbox.formats.uri import write_uri

    root = tmp_path_factory.mktemp("uri")
    out = {}
    for name, files, links in (
            ("tree", TREE, SYMLINKS),
            ("many", {f"f{i:04d}.txt": b"%d\n" % i for i in range(1000)}, {}),
            ("large", {"big/large.bin": bytes(range(256)) * (24 * 1024), "small.txt": b"s\n"},
             {"big/out": "../../etc"})):
        src = root / name
        for path, data in files.items():
            (src / path).parent.mkdir(parents=True, exist_ok=True)
            (src / path).write_bytes(data)
        for path, target in links.items():
            (src / path).symlink_to(target)
        write_uri(root / f"{name}.uri", src)
        out[name] = root / f"{name}.uri"
    return out


async def walked(s: Session) -> list[dict[str, Any]]:
    """Every list_next answer until the walk is done."""
    answers = []
    while True:
        answer = (await call(s, "list_next"))["ok"]
        answers.append(answer)
        if answer["done"]:
            return answers


def test_uri_opens_without_unlock_and_streams_its_listing(uri_files: dict[str, Path]) -> None:
    async def go() -> None:
        s = Session()
        probe = await s.open_source(AsyncFileSource(uri_files["many"]), location="many.uri",
                                    name="many.uri", kind="file")
        assert (probe["format"], probe["encrypted"], probe["stem"]) == ("uri", False, "many")
        assert "methods" not in probe
        info = probe["info"]
        assert info["listing"] == "walk" and info["entries"] is None
        assert info["checked_preview_max"] == CHECKED_PREVIEW_MAX
        assert (await call(s, "unlock", password="x"))["error"]["kind"] == "usage"
        assert (await call(s, "env"))["error"]["kind"] == "usage"
        # before the walk: nothing listed yet, not complete
        first = (await call(s, "ls", path=""))["ok"]
        assert (first["names"], first["complete"], first["seq"]) == ([], False, 0)
        answers = await walked(s)
        assert len(answers) >= 2  # the first window's entries came before the rest
        assert sum(len(a["added"].get("", {}).get("names", [])) for a in answers) == 1000
        with_rows = [a["seq"] for a in answers if a["added"]]
        assert with_rows == list(range(1, len(with_rows) + 1))  # one seq per batch added
        middle = (await call(s, "ls", path=""))["ok"]  # a listing says which batches it holds
        assert middle["seq"] == with_rows[-1]
        assert answers[-1]["entries"] == 1000 and answers[-1]["counts"]["files"] == 1000
        root = (await call(s, "ls", path=""))["ok"]
        assert root["complete"] and root["names"] == [f"f{i:04d}.txt" for i in range(1000)]
        assert root["sizes"][12] == 3 and root["counts"]["bytes"] == sum(
            len(b"%d\n" % i) for i in range(1000))
        # open + the whole walk: 2 round trips (the probe, the first window); then the
        # reader's own index (stat, read) comes from the ranges the walk read
        trips = s.network()["round_trips"]
        assert trips <= 3, s.network()["log"]
        assert await s.call_binary("read", json.dumps({"path": "f0012.txt"})) == b"12\n"
        assert s.network()["round_trips"] == trips
        assert (await call(s, "stat", path="f0012.txt"))["ok"]["size"] == 3
        assert (await call(s, "list_next"))["ok"]["done"]
        await s.close()

    run(go())


def test_uri_folders_reads_streams_and_zips(uri_files: dict[str, Path]) -> None:
    async def go() -> None:
        s = Session()
        await s.open_source(AsyncFileSource(uri_files["tree"]), location="tree.uri",
                            name="tree.uri", kind="file")
        await walked(s)
        root = (await call(s, "ls", path=""))["ok"]
        assert root["names"][:4] == ["data", "docs", "images", "media"]
        assert root["types"].startswith("dddd")
        assert root["targets"][str(root["names"].index("latest-guide"))] == "docs/guide.txt"
        docs = (await call(s, "ls", path="docs/"))["ok"]
        assert docs["names"] == ["deep", "guide.txt"] and docs["mtimes"] == [0, 0]
        assert (await call(s, "ls", path="nope"))["error"]["kind"] == "not_found"
        assert (await call(s, "ls", path="README.md"))["error"]["kind"] == "usage"
        data = TREE["data/random.bin"]
        h = (await call(s, "stream_open", path="data/random.bin"))["ok"]
        assert h["size"] == len(data) and await drain(s, h["handle"]) == data
        assert await s.call_binary("read", json.dumps(
            {"path": "data/random.bin", "offset": 1000, "size": 50})) == data[1000:1050]
        z = (await call(s, "zip_open", path=""))["ok"]
        assert z["name"] == "tree.zip" and z["dropped_links"] == []
        blob = await drain(s, z["handle"])
        assert isinstance(blob, bytes)
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert zf.testzip() is None
            files = {n[len("tree/"):]: zf.read(n) for n in zf.namelist()
                     if not n.endswith("/") and n[len("tree/"):] not in SYMLINKS}
            assert files == TREE
            assert zf.read("tree/latest-guide") == b"docs/guide.txt"
        info = (await call(s, "info"))["ok"]
        assert info["format_title"] == "uri archive" and info["walked"]["complete"]
        assert info["walked"]["files"] == len(TREE)
        await s.close()

    run(go())


def test_uri_partial_preview_of_a_large_file_reads_only_its_range(
        uri_files: dict[str, Path]) -> None:
    async def go() -> None:
        s = Session()
        await s.open_source(AsyncFileSource(uri_files["large"]), location="large.uri",
                            name="large.uri", kind="file")
        size = 256 * 24 * 1024
        assert size > CHECKED_PREVIEW_MAX
        before = s.network()["bytes"]
        head = await s.call_binary("read", json.dumps({"path": "big/large.bin",
                                                         "size": 4096}))
        assert head == (bytes(range(256)) * 16)
        assert s.network()["bytes"] - before < size // 4  # not the whole file
        # a zip of the folder leaves out the link that leads outside it
        z = (await call(s, "zip_open", path="big"))["ok"]
        assert [d["path"] for d in z["dropped_links"]] == ["big/out"]
        blob = await drain(s, z["handle"])
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert zf.namelist() == ["big/large.bin"]
        await s.close()

    run(go())


def test_uri_damaged_file_is_named(uri_files: dict[str, Path], tmp_path: Path) -> None:
    damaged = bytearray(uri_files["tree"].read_bytes())
    at = damaged.find(TREE["docs/guide.txt"][:100])
    damaged[at + 50] ^= 1
    path = tmp_path / "damaged.uri"
    path.write_bytes(bytes(damaged))

    async def go() -> None:
        s = Session()
        await s.open_source(AsyncFileSource(path), location="damaged.uri", name="damaged.uri",
                            kind="file")
        err = json.loads(await s.call_binary("read", json.dumps({"path": "docs/guide.txt"})))
        assert err["error"]["kind"] == "corrupt" and err["error"]["path"] == "docs/guide.txt"
        assert "does not match its checksum" in err["error"]["message"]
        assert await s.call_binary("read", json.dumps({"path": "README.md"})) == \
            TREE["README.md"]
        h = (await call(s, "stream_open", path="docs/guide.txt"))["ok"]
        failed = await drain(s, h["handle"])
        assert isinstance(failed, dict) and failed["path"] == "docs/guide.txt"
        await s.close()

    run(go())


def test_uri_listing_stops_at_a_damaged_chunk_and_keeps_what_it_found(
        uri_files: dict[str, Path], tmp_path: Path) -> None:
    damaged = bytearray(uri_files["many"].read_bytes())
    at = damaged.find(b"f0700.txt")
    damaged[at - 60] ^= 0xFF  # inside that chunk's header: its CRC fails
    path = tmp_path / "stops.uri"
    path.write_bytes(bytes(damaged))

    async def go() -> None:
        s = Session()
        await s.open_source(AsyncFileSource(path), location="stops.uri", name="stops.uri",
                            kind="file")
        listed = 0
        while True:
            answer = await call(s, "list_next")
            if "error" in answer:
                break
            assert not answer["ok"]["done"]
            listed = answer["ok"]["entries"]
        err = answer["error"]
        assert err["kind"] == "corrupt" and err["title"] == "Damaged archive listing"
        assert 0 < listed <= 700
        root = (await call(s, "ls", path=""))["ok"]
        assert not root["complete"] and len(root["names"]) == listed
        assert root["names"][-1] == f"f{listed - 1:04d}.txt"
        assert (await call(s, "list_next"))["error"]["kind"] == "corrupt"  # stays stopped
        # the reader's index needs every header: reads fail too (named, not a crash)
        failed = await s.call_binary("read", json.dumps({"path": "f0001.txt"}))
        assert isinstance(failed, str) and json.loads(failed)["error"]["kind"] == "corrupt"
        await s.close()

    run(go())


# -- the viewer's whole-file read: the pipelined flow (reading.pipelined_stream_flow) ------

PIPE_CHUNK = 64 * 1024
PIPE_SIZE = 17 * 1024 * 1024 + 999  # 3 batches of 8 MiB at 64 KiB chunks


class _DeferredOpener:
    """The CPython backend plus ``start_open_frames``/``finish_open_frames`` that open the
    frames only when finished (as the browser's worker pool answers later), logged."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.log: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def start_open_frames(self, jobs: Any, plain_limit: int) -> Any:
        self.log.append(("start", len(self.log)))
        return list(jobs)

    async def finish_open_frames(self, handle: Any, jobs: Any, decode: Any,
                                 plain_limit: int) -> Any:
        from lockbox.crypto.base import open_frames_loop

        assert handle == list(jobs)
        self.log.append(("finish", len(self.log)))
        await asyncio.sleep(0)
        return open_frames_loop(jobs, decode)


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    import random

    from conftest import WEAK

    content = random.Random(7).randbytes(PIPE_SIZE // 2) + b"z" * (PIPE_SIZE - PIPE_SIZE // 2)
    path = tmp_path_factory.mktemp("big") / "big.lbox"
    box = lockbox.create(path, password=PASSWORD, argon2=WEAK, chunk_size=PIPE_CHUNK)
    with box.writer() as w:
        w.add_bytes("big.bin", content)
    box.close()
    return path, content


async def _file_pieces(s: Session, path: str, keep: bool = False
                       ) -> tuple[list[bytes], BaseException | None]:
    ext = s._lbox
    assert ext is not None
    p, e = await ext.file(path)
    got: list[bytes] = []
    try:
        async for piece in ext.iter_file(p, e, keep):
            got.append(bytes(piece))
    except Exception as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("pooled", [True, False])
def test_download_is_pipelined_and_equal(big_archive: tuple[Path, bytes], pooled: bool) -> None:
    path, content = big_archive

    async def go() -> None:
        s = await opened(path)
        ext = s._lbox
        assert ext is not None
        opener = _DeferredOpener(ext.view.opener.crypto)
        if pooled:
            ext.view.opener.crypto = opener
        h = (await call(s, "stream_open", path="big.bin"))["ok"]
        assert await drain(s, h["handle"]) == content
        if pooled:  # batch 2 started before batch 1 was finished; 3 batches
            kinds = [k for k, _ in opener.log]
            assert kinds.count("start") == kinds.count("finish") == 3
            assert kinds.index("finish") > 1
        await s.close()

    run(go())


@pytest.mark.parametrize("batch", [0, 1, 2])
def test_download_tampered_chunk_releases_nothing_after_it(big_archive: tuple[Path, bytes],
                                                           tmp_path: Path, batch: int) -> None:
    """A chunk that does not authenticate: the pieces handed over are the batches before
    its own, and the error names the file (as the one-by-one read's did)."""
    src, content = big_archive
    box = lockbox.open(src, password=PASSWORD)
    entry = box.run(box.view.stat_flow("big.bin"))
    chunk_no = batch * 128 + 5
    ref = box.run(box.view.chunk_refs_flow(entry, chunk_no, chunk_no + 1))[0]
    box.close()
    data = bytearray(src.read_bytes())
    data[ref.frame_offset + ref.frame_size - 20] ^= 0x40
    path = tmp_path / "tampered.lbox"
    path.write_bytes(bytes(data))

    async def go(pooled: bool) -> None:
        from lockbox.viewer.messages import AtPath

        s = await opened(path)
        ext = s._lbox
        assert ext is not None
        if pooled:
            ext.view.opener.crypto = _DeferredOpener(ext.view.opener.crypto)
        got, error = await _file_pieces(s, "big.bin")
        assert isinstance(error, AtPath) and error.path == "big.bin"
        assert isinstance(error.exc, lockbox.IntegrityError)
        assert b"".join(got) == content[:batch * 128 * PIPE_CHUNK]
        h = (await call(s, "stream_open", path="big.bin"))["ok"]
        failed = await drain(s, h["handle"])
        assert isinstance(failed, dict) and failed["kind"] == "corrupt"
        assert failed["path"] == "big.bin"
        await s.close()

    run(go(True))
    run(go(False))


def test_download_after_previews_fetches_only_the_missing_chunks(
        big_archive: tuple[Path, bytes]) -> None:
    """Chunks kept by previews (here chunks 0 and 130, in two batches) are not fetched again
    by the pipelined download, and the bytes are the same."""
    path, content = big_archive

    async def go() -> None:
        s = await opened(path)
        ext = s._lbox
        assert ext is not None
        ext.view.opener.crypto = _DeferredOpener(ext.view.opener.crypto)
        for offset in (0, 130 * PIPE_CHUNK + 10):
            got = await s.call_binary("read", json.dumps({"path": "big.bin", "offset": offset,
                                                            "size": 100}))
            assert got == content[offset:offset + 100]
        _, before = trips(s)
        reused = s.network()["reused"]["chunks"]
        got, error = await _file_pieces(s, "big.bin", keep=True)
        assert error is None and b"".join(got) == content
        assert s.network()["reused"]["chunks"] == reused + 2
        e = await ext.source.run(ext.view.stat_flow("big.bin"))
        refs = await ext.source.run(ext.view.chunk_refs_flow(e, 0, e.chunks))
        _, after = trips(s)
        assert after - before == sum(r.frame_size for r in refs) - \
            refs[0].frame_size - refs[130].frame_size
        # kept: a second download fetches nothing (PIPE_SIZE is within the cache's budget)
        got, _ = await _file_pieces(s, "big.bin", keep=True)
        assert b"".join(got) == content and trips(s)[1] == after
        await s.close()

    run(go())
