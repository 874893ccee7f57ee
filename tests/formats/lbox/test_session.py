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


# -- the listing's fast path (issue 12) -------------------------------------------------------

def test_listed_info_equals_the_entry_s_info_and_fails_typed() -> None:
    from lockbox.formats.lbox.info import entry_info
    from lockbox.formats.lbox.session import listed_info
    from lockbox.formats.lbox.wire.constants import EntryType
    from lockbox.formats.lbox.wire.entry import Entry, decode_entry, encode_entry
    from lockbox.formats.lbox.wire.refs import Ref

    ref = Ref(4096, 1100, bytes(range(16)))
    entries = [
        Entry(EntryType.FILE, 0o644, 1_700_000_000_123_456_789, 1024, 1100, bytes(range(32)),
              bytes(16), 1 << 20, 0, (ref,)),
        Entry(EntryType.FILE, 0o600, -5, 0, 0, bytes(32), bytes(16), 4096, 0, (ref,)),
        Entry(EntryType.FILE, 0o7777, 3, 200, 130, b"\xff" * 32, bytes(16), 4096, 0, (ref,)),
        Entry(EntryType.DIR, 0o755, 1_700_000_000_000_000_000),
        Entry(EntryType.SYMLINK, 0o777, 9, target="../a b"),
    ]
    for e in entries:
        buf = encode_entry(e)
        want = entry_info("d/x", decode_entry(buf))
        assert listed_info("d/x", buf) == want
        assert listed_info("d/x", memoryview(buf)) == want
        for cut in range(1, len(buf)):  # cut entries: as the entry's decode (lazy refs)
            try:
                want = entry_info("d/x", decode_entry(buf[:cut], lazy_refs=True))
            except FormatError:
                with pytest.raises(FormatError):
                    listed_info("d/x", buf[:cut])
            else:
                assert listed_info("d/x", buf[:cut]) == want
    with pytest.raises(FormatError):
        listed_info("d/x", b"\x09\x00\x00")  # unknown type


def test_a_walked_file_is_read_without_a_tree_lookup(make_archive: Any) -> None:
    files = {f"d{i % 7}/f{i:03d}.txt": f"file {i}\n".encode() * (i % 5) for i in range(300)}
    path: Path = make_archive(files)
    session, src = _open(path)
    got: list[EntryInfo] = []
    run_sync(session.walk_flow("", got.extend), src)
    assert session._leaves and not session._recent  # leaves remembered, not files
    with lockbox.open(path, password="pw") as box:
        assert got == [e for e in box.iter_entries("")]
    for name, data in sorted(files.items()):
        before = src.stats.requests
        assert run_sync(session.read_flow(name, 0, 10**6), src) == data
        # a file's one chunk frame at most: its entry came from the walked, cached leaf
        assert src.stats.requests - before <= 1, name
        assert session._recent_entry(name) is not None
    assert session._recent_entry("d0/nope.txt") is None
    assert session._recent_entry("a") is None and session._recent_entry("zzz") is None
    with pytest.raises(NotFoundError):
        run_sync(session.read_flow("d0/nope.txt", 0, 1), src)


def test_recent_leaves_are_bounded(make_archive: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockbox.formats.lbox import session as session_mod

    monkeypatch.setattr(session_mod, "RECENT_LEAVES", 2)
    path: Path = make_archive({"a.txt": b"a", "b/c.txt": b"c"})
    session, src = _open(path)
    for i in range(5):
        session._remember_leaf(b"k%d" % i, b"k%d~" % i, None)  # type: ignore[arg-type]
    assert list(session._leaves) == [b"k3", b"k4"]
    assert session._recent_entry("b/c.txt") is None  # not a remembered leaf: looked up
    assert run_sync(session.read_flow("b/c.txt", 0, 9), src) == b"c"
