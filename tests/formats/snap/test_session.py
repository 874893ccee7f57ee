"""lockbox.formats.snap.session: a store + snapshot id as an archive (the read protocol,
the facade, the location syntax)."""

from __future__ import annotations

import asyncio
import functools
import http.server
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import lockbox
from lockbox import registry
from lockbox.convert import convert
from lockbox.drivers import run_sync
from lockbox.errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    UsageError,
)
from lockbox.facade import Archive, AsyncArchive
from lockbox.formats.snap import ops
from lockbox.formats.snap.manifest import object_id
from lockbox.formats.snap.session import SnapFormat, SnapSession
from lockbox.formats.snap.store import FileStore, StoreSource
from lockbox.protocol import OpenOptions

BIG = bytes(range(256)) * 200     # 51,200 bytes


@pytest.fixture
def snap(tmp_path: Path) -> tuple[FileStore, str, Path]:
    tree = tmp_path / "tree"
    (tree / "docs" / "empty").mkdir(parents=True)
    (tree / "docs" / "a b.txt").write_bytes(b"alpha\n")
    (tree / "docs" / "ü").write_bytes(b"unicode")
    (tree / "big.bin").write_bytes(BIG)
    (tree / "twin").write_bytes(b"alpha\n")
    (tree / "run").write_bytes(b"#!/bin/sh\n")
    (tree / "run").chmod(0o755)
    store = FileStore(tmp_path / "store")
    sid = ops.push(tree, store).snapshot_id
    return store, sid, tree


def loc(store: FileStore, sid: str) -> str:
    return f"file://{store.root}#id={sid}"


def test_listing_comes_from_the_manifest(snap: tuple[FileStore, str, Path]) -> None:
    store, sid, _ = snap
    with lockbox.open(loc(store, sid)) as a:
        assert type(a) is Archive and a.spec is not None and a.spec.name == "snap"
        info = a.info()
        assert (info.format, info.encrypted, info.entries) == ("snap", False, 8)
        assert info.details["snapshot_id"] == sid and info.details["objects"] == 4
        assert [e.name for e in a.ls()] == ["big.bin", "docs", "run", "twin"]
        assert [e.path for e in a.ls("docs")] == ["docs/a b.txt", "docs/empty", "docs/ü"]
        paths = [e.path for e in a.iter_entries()]
        assert paths == ["big.bin", "docs", "docs/a b.txt", "docs/empty", "docs/ü", "run",
                         "twin"]
        run = a.stat("run")
        assert (run.type, run.mode & 0o777, run.size, run.blake3) == \
            ("file", 0o755, 10, object_id(b"#!/bin/sh\n"))
        assert a.stat("").is_dir and a.stat("docs/empty").is_dir
        with pytest.raises(NotFoundError, match="no such file"):
            a.stat("nope")
        with pytest.raises(InvalidPathError, match="not a directory"):
            a.ls("run")
        with pytest.raises(InvalidPathError, match="escapes"):
            a.stat("../x")
        assert [e.path for e in a.iter_entries("docs/ü")] == ["docs/ü"]


def test_reads_are_verified(snap: tuple[FileStore, str, Path]) -> None:
    store, sid, _ = snap
    with lockbox.open(loc(store, sid)) as a:
        assert a.read_bytes("docs/a b.txt") == b"alpha\n"
        assert a.read("big.bin", 1000, 5) == BIG[1000:1005]
        assert a.read_bytes("big.bin") == BIG
        with a.open_file("big.bin") as f:
            f.seek(50_000)
            assert f.read(10) == BIG[50_000:50_010]
            f.seek(0)
            assert io.BufferedReader(f).read() == BIG  # type: ignore[arg-type]
        assert a.verify().ok


def test_a_bad_object_fails_its_files_only(snap: tuple[FileStore, str, Path]) -> None:
    store, sid, _ = snap
    alpha = object_id(b"alpha\n")
    Path(store.object_file(alpha)).write_bytes(b"alphA\n")
    os.unlink(store.object_file(object_id(b"unicode")))
    with lockbox.open(loc(store, sid)) as a:
        assert len(a.ls(recursive=True)) == 7
        with pytest.raises(IntegrityError, match=f"docs/a b.txt \\(object {alpha}\\): the "
                                                 "object in the store is damaged"):
            a.read_bytes("docs/a b.txt")
        with pytest.raises(IntegrityError, match="twin"):
            a.read("twin", 0, 1)           # not one byte of a bad object
        with pytest.raises(NotFoundError, match=r"docs/ü .*not in the store"):
            a.read_bytes("docs/ü")
        assert a.read_bytes("run") == b"#!/bin/sh\n"
        report = a.verify()
        assert len(report.problems) == 2 and report.bytes_checked == 10 + len(BIG)


def test_large_objects_in_windows(snap: tuple[FileStore, str, Path]) -> None:
    store, sid, _ = snap
    small = {"snap_whole_object_size": 1000, "snap_window_size": 4096}
    with lockbox.open(loc(store, sid), **small) as a:
        assert isinstance(a.session, SnapSession) and a.session.window_size == 4096
        assert a.read_bytes("big.bin") == BIG
        assert a.read("big.bin", 4000, 200) == BIG[4000:4200]
        assert a.read("big.bin", 51_100, 500) == BIG[51_100:]
        assert a.read_bytes("run") == b"#!/bin/sh\n"
        assert a.verify().ok
    big = object_id(BIG)
    Path(store.object_file(big)).write_bytes(BIG[:-1] + b"\x00")
    with lockbox.open(loc(store, sid), **small) as a:
        pieces = a.iter_bytes("big.bin")
        got = b"".join(next(pieces) for _ in range(3))
        assert got == BIG[:len(got)]          # pieces before the last, then the verdict
        with pytest.raises(IntegrityError, match="damaged"):
            list(pieces)
        with pytest.raises(IntegrityError, match="damaged"):
            a.read("big.bin", 0, 10)          # a range read returns only verified bytes
        assert "big.bin" in a.verify().problems[0]


def test_extract_and_convert_like_any_archive(snap: tuple[FileStore, str, Path],
                                              tmp_path: Path) -> None:
    store, sid, _ = snap
    with lockbox.open(loc(store, sid)) as a:
        a.extract(tmp_path / "out", preserve_permissions=True)
    out = tmp_path / "out"
    assert (out / "docs" / "ü").read_bytes() == b"unicode" and (out / "docs" / "empty").is_dir()
    assert os.stat(out / "run").st_mode & 0o777 == 0o755
    from lockbox.formats.uri import write_uri

    with lockbox.open(loc(store, sid)) as a:
        items = [(e, (lambda p=e.path: a.iter_bytes(p)) if e.is_file else None)
                 for e in a.iter_entries()]
        write_uri(tmp_path / "x.uri", ((e, c() if c else None) for e, c in items))
    with lockbox.open(tmp_path / "x.uri") as u:
        assert u.read_bytes("big.bin") == BIG


def test_async_facade(snap: tuple[FileStore, str, Path]) -> None:
    store, sid, _ = snap

    async def go() -> tuple[list[str], bytes]:
        async with await AsyncArchive.open(loc(store, sid)) as a:
            return [e.name for e in await a.ls()], await a.read_bytes("twin")

    assert asyncio.run(go()) == (["big.bin", "docs", "run", "twin"], b"alpha\n")


def test_open_errors(snap: tuple[FileStore, str, Path], tmp_path: Path) -> None:
    store, sid, _ = snap
    with pytest.raises(NotFoundError, match=f"no snapshot {'b' * 64} in the store"):
        lockbox.open(loc(store, "b" * 64))
    with pytest.raises(UsageError, match="snapshot id"):
        lockbox.open(f"file://{store.root}#id=xyz")
    with pytest.raises(UsageError, match="not a lbox file"):
        lockbox.open(loc(store, sid), format="lbox")
    manifest = Path(store.manifest_file(sid))
    manifest.write_bytes(manifest.read_bytes().replace(b"alpha", b"alpha", 1) + b"#\n")
    with lockbox.open(loc(store, sid)) as a:    # a comment does not change the snapshot
        assert a.info().entries == 8
    manifest.write_bytes(manifest.read_bytes().replace(b" 10 ./run", b" 11 ./run"))
    with pytest.raises(IntegrityError, match="damaged"):
        lockbox.open(loc(store, sid))
    manifest.write_bytes(b"nonsense\n")
    with pytest.raises(FormatError, match=f"snapshot {sid}: manifest line 1"):
        lockbox.open(loc(store, sid))
    # the scheme is required: a file name with '#id=' stays a file name
    odd = tmp_path / f"name#id={sid}"
    odd.write_bytes(b"not an archive")
    with pytest.raises(FormatError, match="looks like text"):
        lockbox.open(str(odd))


def test_registry_and_spec(snap: tuple[FileStore, str, Path]) -> None:
    store, sid, _ = snap
    assert registry.is_special_location(loc(store, sid))
    assert not registry.is_special_location(f"/x#id={sid}")
    assert registry.open_location("https://h/x.lbox") is None
    opened = registry.open_location(loc(store, sid))
    assert opened is not None and opened.format == "snap"
    assert isinstance(opened.source, StoreSource)
    session = run_sync(registry.open_session_flow(OpenOptions(settings=opened.settings), None,
                                                  format="snap"), opened.source)
    assert isinstance(session, SnapSession) and session.snapshot_id == sid
    opened.source.close()
    assert registry.by_name("snap").name == "snap" and not SnapFormat.probe(b"D 755 ")
    with pytest.raises(UsageError, match="opened by its location"):
        run_sync(SnapFormat().open_flow(None, OpenOptions()), opened.source)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_on_a_static_http_server(snap: tuple[FileStore, str, Path],
                                        http_root: tuple[Path, str]) -> None:
    store, sid, _ = snap
    root, base = http_root
    with lockbox.open(f"{base}/{os.path.relpath(store.root, root)}/#id={sid}") as a:
        assert [e.name for e in a.ls()] == ["big.bin", "docs", "run", "twin"]
        assert a.read_bytes("big.bin") == BIG and a.read_bytes("docs/ü") == b"unicode"
        assert a.verify().ok


def test_a_followed_symlink_reports_its_objects_size(tmp_path: Path) -> None:
    """snapdir records a followed symlink with its link's lstat (PERMS 777, SIZE = the
    length of the target text); the session reports the object's real length (what a
    read gives), so convert and extract see consistent sizes. A real 0o777 file is
    unchanged, and the manifest itself (its SIZE) is kept as stored."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "target.txt").write_bytes(b"x" * 1000)
    os.symlink("target.txt", tree / "link")
    (tree / "open.sh").write_bytes(b"#!/bin/sh\n")
    (tree / "open.sh").chmod(0o777)
    store = FileStore(tmp_path / "store")
    sid = ops.push(tree, store).snapshot_id
    manifest = store.get_manifest(sid)
    stored = manifest.get("link")
    assert stored is not None and stored.perms == 0o777 and stored.size == len("target.txt")
    with lockbox.open(loc(store, sid)) as a:
        link = a.stat("link")
        assert link.size == 1000 and link.mode & 0o777 == 0o777
        assert {e.path: e.size for e in a.ls("")} == {
            "link": 1000, "open.sh": 10, "target.txt": 1000}
        assert len(a.read_bytes("link")) == 1000
        out = tmp_path / "copy.uri"
        convert(a, out)
    with lockbox.open(out) as b:
        assert b.read_bytes("link") == b"x" * 1000
