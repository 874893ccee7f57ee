"""The .lbox format behind the format-neutral protocol: probing, opening through the
registry, and every session flow, checked against the Lockbox facade on the same
archive (same entries, same bytes), over a file and over HTTP-like bytes."""

from __future__ import annotations

import io
import os
import random
import sys
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


# -- read_order: where the files are stored (packs read once) ---------------------------------

def _updated_over_time(path: Path, weak_argon2: Any, days: int = 6, folders: int = 30
                       ) -> dict[str, bytes]:
    """An archive updated over time: every ``add`` session puts one small file in each
    folder, so each PACK frame holds a file of every folder (path order goes from pack to
    pack and back for every folder)."""
    rnd = random.Random(5)
    files: dict[str, bytes] = {}
    box = lockbox.create(path, password="pw", argon2=weak_argon2)
    with box:
        for day in range(days):
            with box.writer() as w:
                for f in range(folders):
                    name = f"f{f:02d}/day{day}.txt"
                    files[name] = rnd.randbytes(1500).hex().encode()  # 3,000 bytes
                    w.add_bytes(name, files[name], mtime_ns=1_600_000_000_000_000_000 + day)
    return files


def test_read_order_sorts_by_frame_then_member(tmp_path: Path, weak_argon2: Any) -> None:
    from lockbox.formats.lbox.wire.constants import EntryType
    from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED

    path = tmp_path / "t.lbox"
    files = _updated_over_time(path, weak_argon2, days=3, folders=5)
    session, src = _open(path)
    walked: list[EntryInfo] = []
    run_sync(session.walk_flow("", walked.extend), src)
    listed = [e for e in walked if e.type == "file"]
    assert len(listed) == len(files)
    where = {}
    for info in listed:
        e = run_sync(session.view.stat_flow(info.path), src)
        assert e.type == EntryType.FILE and e.layout == LAYOUT_PACKED
        where[info.path] = (e.refs[0].frame_offset, e.member_no)
    before = src.stats.requests
    got = session.read_order(list(reversed(listed)))
    assert src.stats.requests == before  # no I/O: the walk's leaves
    assert [where[e.path] for e in got] == sorted(where.values())
    assert len({o for o, _ in where.values()}) == 3  # one pack per day...
    assert [e.path.rpartition("/")[2] for e in got] == \
        [f"day{d}.txt" for d in range(3) for _ in range(5)]  # ...each read in one go
    assert {id(e) for e in got} == {id(e) for e in listed}

    # A file this session never walked (no I/O to find it): after the known ones, in
    # its place; one whose ref does not decode: first, so that its error names it.
    fresh, _ = _open(path)
    assert fresh.read_order(listed) == listed
    stranger = EntryInfo("nowhere/x.txt", "file", 0o644, 0, 1, 0, "")
    ordered = session.read_order([stranger, *listed])
    assert ordered[-1] is stranger and ordered[:-1] == got
    damaged_path = listed[-1].path
    real = session._recent_entry

    def with_a_bad_ref(p: str) -> Any:
        e = real(p)
        if p != damaged_path:
            return e
        from lockbox.formats.lbox.wire.entry import LazyRefs
        return e.__class__(e.type, e.mode, e.mtime_ns, e.size, e.stored_size, e.content_hash,
                           e.file_id, e.chunk_size, e.layout, LazyRefs(b"\xff", 0, 1),
                           member_no=e.member_no)

    session._recent_entry = with_a_bad_ref  # type: ignore[method-assign]
    ordered = session.read_order(listed)
    assert ordered[0].path == damaged_path
    assert [e.path for e in ordered[1:]] == [e.path for e in got if e.path != damaged_path]


def _tree(root: Path) -> dict[str, tuple[str, int, int, bytes]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            kind = "dir" if p.is_dir() else "file"
            out[str(p.relative_to(root))] = (kind, st.st_mode, st.st_mtime_ns,
                                             p.read_bytes() if kind == "file" else b"")
    return out


def test_cli_extract_opens_each_pack_once(tmp_path: Path, weak_argon2: Any,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """``lockbox extract`` of an archive updated over time reads the files in storage order
    (the session's read_order): each pack is opened once, where path order (folder by
    folder) opens a pack per file once the view holds fewer packs than there are; the
    extracted tree is the same either way."""
    from cli_helpers import Runner
    from lockbox.formats.lbox import view as view_mod

    path = tmp_path / "t.lbox"
    days, folders = 6, 30
    files = _updated_over_time(path, weak_argon2, days, folders)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "pw")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))  # nothing prompted
    monkeypatch.setattr(view_mod, "PACK_CACHE_BYTES", 2 * folders * 3100)  # ~2 packs of 6
    opened: list[int] = []
    keep_pack = view_mod.ArchiveView.keep_pack

    def counting(self: Any, ref: Any, payload: Any) -> Any:
        opened.append(ref.frame_offset)
        return keep_pack(self, ref, payload)

    monkeypatch.setattr(view_mod.ArchiveView, "keep_pack", counting)
    run = Runner(capsysbinary)
    run.ok("extract", path, "--to", tmp_path / "stored", "-q")
    assert len(opened) == days == len(set(opened))  # each pack once
    stored = _tree(tmp_path / "stored")
    assert {p: v[3] for p, v in stored.items() if v[0] == "file"} == files

    opened.clear()
    monkeypatch.delattr(LboxSession, "read_order")  # path order
    run.ok("extract", path, "--to", tmp_path / "by-path", "-q")
    assert len(opened) == len(files)  # a pack per file: what read_order saves
    assert _tree(tmp_path / "by-path") == stored
