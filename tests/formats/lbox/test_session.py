"""The .lbox format behind the format-neutral protocol: probing, opening through the
registry, and every session flow, checked against the Lockbox facade on the same
archive (same entries, same bytes), over a file and over HTTP-like bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox import registry
from lockbox.drivers import run_sync
from lockbox.errors import FormatError, IntegrityError, InvalidPathError, NotFoundError
from lockbox.formats.lbox.session import EMIT_BATCH, LboxFormat, LboxSession
from lockbox.info import EntryInfo
from lockbox.protocol import FormatSession, OpenOptions
from lockbox.sources import BytesSource, FileSource

FILES = {
    "a.txt": b"alpha\n",
    "dir/b.bin": bytes(range(256)) * 100,  # 25,600 bytes: several 4 KiB chunks
    "dir/sub/c.txt": b"",
    "z/deep/er/d.txt": b"d" * 5000,
}


@pytest.fixture
def archive(make_archive: Any) -> Path:
    path: Path = make_archive(FILES)
    return path


def _open(path: Path, **secrets: Any) -> tuple[LboxSession, FileSource]:
    src = FileSource(str(path))
    opts = OpenOptions(secrets=secrets or {"password": "pw"})
    session = run_sync(registry.open_session_flow(opts, src.size), src)
    assert isinstance(session, LboxSession)
    return session, src


def test_probe_and_registry(archive: Path) -> None:
    head = archive.read_bytes()[:registry.PROBE_SIZE]
    assert LboxFormat.probe(head)
    assert registry.detect(head).name == "lbox"
    damaged = bytearray(head)
    damaged[:8] = b"\0" * 8  # slot 0 unreadable: slot 1 still says what it is
    assert LboxFormat.probe(bytes(damaged))
    assert not LboxFormat.probe(b"uri\0\0\0\0\0")
    assert registry.by_name(".lbox") is registry.by_name("lbox")
    assert registry.for_path("x/y.LBOX").name == "lbox"


def test_probe_costs_no_extra_round_trip(archive: Path) -> None:
    src = FileSource(str(archive))
    run_sync(registry.open_session_flow(OpenOptions(secrets={"password": "pw"}), src.size),
             src)
    assert src.stats.requests == 1  # the 16 KiB read answers both probe and open


def test_session_matches_the_facade(archive: Path) -> None:
    session, src = _open(archive)
    assert isinstance(session, FormatSession)
    with lockbox.open(archive, password="pw") as box:
        want = {e.path: e for e in box.ls(recursive=True)}
        got: list[EntryInfo] = []
        run_sync(session.walk_flow("", got.extend), src)
        assert [e.path for e in got] == sorted(want, key=lambda p: _toc_order(p))
        assert {e.path: e for e in got} == want
        assert run_sync(session.listdir_flow(""), src) == box.ls("")
        assert run_sync(session.listdir_flow("dir"), src) == box.ls("dir")
        assert run_sync(session.stat_flow("dir/b.bin"), src) == box.stat("dir/b.bin")
    info = session.info()
    assert info.format == "lbox" and info.encrypted and info.entries == len(want)
    assert info.file_bytes == sum(len(v) for v in FILES.values())


def _toc_order(path: str) -> bytes:
    parent, _, name = path.rpartition("/")
    return parent.encode() + b"\0" + name.encode()


def test_walk_streams_directories_before_their_contents(archive: Path) -> None:
    session, src = _open(archive)
    seen: list[str] = []
    run_sync(session.walk_flow("", lambda batch: seen.extend(e.path for e in batch)), src)
    for i, p in enumerate(seen):
        parent = p.rpartition("/")[0]
        if parent:
            assert parent in seen[:i], (p, seen)
    sub: list[str] = []
    run_sync(session.walk_flow("z", lambda batch: sub.extend(e.path for e in batch)), src)
    assert sub == ["z/deep", "z/deep/er", "z/deep/er/d.txt"]
    one: list[str] = []
    run_sync(session.walk_flow("a.txt", lambda batch: one.extend(e.path for e in batch)), src)
    assert one == ["a.txt"]
    assert EMIT_BATCH >= 1


@pytest.mark.parametrize(("offset", "size"), [(0, 10), (4090, 20), (25_590, 100), (0, 10**9),
                                              (25_600, 5), (100, 0)])
def test_read_flow_ranges(archive: Path, offset: int, size: int) -> None:
    session, src = _open(archive)
    data = FILES["dir/b.bin"]
    assert run_sync(session.read_flow("dir/b.bin", offset, size), src) == \
        data[offset:offset + size]


def test_read_flow_fetches_only_the_chunks_it_needs(archive: Path) -> None:
    session, src = _open(archive)
    before = src.stats.bytes_read
    run_sync(session.read_flow("dir/b.bin", 4096 * 3 + 5, 10), src)
    # the TOC lookup plus one 4 KiB chunk frame, not the file's 25 KiB
    assert src.stats.bytes_read - before < 16_384


def test_stream_flow_and_errors(archive: Path) -> None:
    session, src = _open(archive)
    pieces: list[bytes] = []
    n = run_sync(session.stream_flow("dir/b.bin", lambda b: pieces.append(bytes(b))), src)
    assert n == len(FILES["dir/b.bin"]) and b"".join(pieces) == FILES["dir/b.bin"]
    with pytest.raises(InvalidPathError):
        run_sync(session.read_flow("dir", 0, 1), src)
    with pytest.raises(NotFoundError):
        run_sync(session.stat_flow("nope"), src)


def test_verify_flow_reports_damage(archive: Path) -> None:
    session, src = _open(archive)
    report = run_sync(session.verify_flow(), src)
    assert report.ok and report.entries_checked == 4
    with lockbox.open(archive, password="pw") as box:
        entry = box.run(box.view.stat_flow("z/deep/er/d.txt"))
        ref = box.run(box.view.chunk_refs_flow(entry, 0, 1))[0]
    data = bytearray(archive.read_bytes())
    data[ref.frame_offset + ref.frame_size - 20] ^= 0x40  # inside the sealed chunk
    src2 = BytesSource(bytes(data))
    session2 = run_sync(registry.open_session_flow(
        OpenOptions(secrets={"password": "pw"}), len(data)), src2)
    report2 = run_sync(session2.verify_flow(), src2)
    assert not report2.ok
    assert any("d.txt" in p for p in report2.problems), report2.problems
    with pytest.raises(IntegrityError):
        run_sync(session2.read_flow("z/deep/er/d.txt", 0, 10), src2)


def test_wrong_format_is_described(tmp_path: Path) -> None:
    src = BytesSource(b"<!DOCTYPE html><html><body>404</body></html>")
    with pytest.raises(FormatError, match="HTML page"):
        run_sync(registry.open_session_flow(OpenOptions(), None), src)
    with pytest.raises(FormatError, match="empty"):
        run_sync(registry.open_session_flow(OpenOptions(), None), BytesSource(b""))
