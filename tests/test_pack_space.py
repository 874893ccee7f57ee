"""Packs in the space map (docs/FORMAT.md §14, kind 7 PACK records): a shared PACK
frame is never freed while an entry still names it, and is freed (DEAD, then redacted)
when the last one goes; the slot version follows the packs (3 with, 2 without)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lockbox
from lockbox.errors import FormatError, IntegrityError, LimitExceededError
from lockbox.formats.lbox.recovery import COMPLETE, RecoveryScanner
from lockbox.formats.lbox.wire.constants import (
    FORMAT_VERSION,
    MAX_PAGE_SIZE,
    PACKED_FORMAT_VERSION,
    SUPERBLOCK_SIZE,
    EntryType,
)
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.formats.lbox.wire.entry import LAYOUT_CHUNKS, LAYOUT_PACKED, Entry
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.write.space import (
    DEAD,
    FRAMES,
    PACK,
    TAIL_KEY,
    PackRecord,
    PageRecord,
    SpaceMap,
    decode_record,
    encode_record,
    encode_tail,
)
from lockbox.formats.lbox.write.spacekeeper import SpaceKeeper
from lockbox.sources.file import FileSource
from test_space import check_map, load_map, strip_space_map

# -- records ---------------------------------------------------------------------------


def test_pack_record_round_trip():
    for rec in (PackRecord(100, 1), PackRecord(MAX_PAGE_SIZE, 4096), PackRecord(0, 10 ** 6)):
        value = encode_record(rec)
        assert value[0] == PACK
        assert decode_record(value) == rec
    assert encode_record(PackRecord(300, 2)) == bytes([7]) + uvarint(300) + uvarint(2)


@pytest.mark.parametrize(("value", "error"), [
    (bytes([PACK]) + uvarint(100) + uvarint(0), FormatError),  # no entries
    (bytes([PACK]) + uvarint(MAX_PAGE_SIZE + 1) + uvarint(1), LimitExceededError),
    (bytes([PACK]) + uvarint(100) + uvarint(1) + b"\x00", FormatError),  # leftovers
    (bytes([PACK]) + uvarint(100), FormatError),  # cut short
    (bytes([PACK]), FormatError),
    (bytes([8]) + uvarint(100) + uvarint(1), FormatError),  # unknown kind
])
def test_bad_pack_records(value, error):
    with pytest.raises(error):
        decode_record(value)


def test_map_with_packs_round_trips_and_still_tiles():
    items = {
        (16384).to_bytes(8, "big"): encode_record(PageRecord(FRAMES, 8192, 500)),
        (16416).to_bytes(8, "big"): encode_record(PackRecord(400, 3)),
        (16816).to_bytes(8, "big"): encode_record(100),  # DEAD
        (24576).to_bytes(8, "big"): encode_record(PageRecord(FRAMES, 4096, 0)),
        TAIL_KEY: encode_tail(28672),
    }
    m = SpaceMap.from_items(items.items())
    assert m.packs == {16416: PackRecord(400, 3)}
    assert m.dead == {16816: 100}
    assert sorted(m.pages) == [16384, 24576]  # a PACK record is not a page
    assert m.check_cover(28672) == ""
    out = m.items()
    out[TAIL_KEY] = encode_tail(m.tail_start)
    assert out == items
    assert decode_record(items[(16816).to_bytes(8, "big")]) == 100
    assert items[(16816).to_bytes(8, "big")][0] == DEAD


# -- counts ------------------------------------------------------------------------------

P = Ref(20000, 5000, b"P" * 16)
Q = Ref(30000, 3000, b"Q" * 16)
BIG = Ref(40000, 70000, b"B" * 16)


def packed(i: int, ref: Ref = P) -> Entry:
    return Entry(EntryType.FILE, 0o644, 0, 10, 60, bytes(32), i.to_bytes(16, "big"), 4096,
                 LAYOUT_PACKED, (ref,), member_no=i % 4096)


def chunked(i: int, ref: Ref = BIG) -> Entry:
    return Entry(EntryType.FILE, 0o644, 0, 65536, ref.frame_size, bytes(32),
                 (1000 + i).to_bytes(16, "big"), 65536, LAYOUT_CHUNKS, (ref,))


def space_with(*packs: tuple[Ref, int]) -> SpaceMap:
    m = SpaceMap()
    m.add_page(16384, FRAMES, 1 << 20, sum(r.frame_size for r, _ in packs) + BIG.frame_size)
    for ref, n in packs:
        m.packs[ref.frame_offset] = PackRecord(ref.frame_size, n)
    return m


def freed(space: SpaceMap, old: list[Entry], new: list[Entry]) -> list[Ref]:
    """What freed_content frees (as commit.py does: every ref returned is freed)."""
    refs = SpaceKeeper(-1, lambda flow: None).freed_content(None, space, old, new)
    for r in refs:
        space.free_frame(r)
    return refs


def test_removing_all_but_one_member_frees_nothing_then_the_last_frees_the_pack():
    files = [packed(i) for i in range(50)]
    space = space_with((P, 50))
    live = space.pages[16384].live
    assert freed(space, files[:49], []) == []
    assert space.packs[P.frame_offset] == PackRecord(P.frame_size, 1)
    assert space.pages[16384].live == live and not space.dead
    assert freed(space, files[49:], []) == [P]
    assert P.frame_offset not in space.packs
    assert space.dead == {P.frame_offset: P.frame_size}
    assert space.pages[16384].live == live - P.frame_size


def test_a_move_frees_nothing():
    space = space_with((P, 1))
    e = packed(0)
    assert freed(space, [e], [e]) == []  # the old key -1, the new key +1
    assert space.packs[P.frame_offset].entries == 1
    assert not space.dead
    space = space_with((P, 3))
    moved = [packed(i) for i in range(3)]
    assert freed(space, moved, moved) == []
    assert space.packs[P.frame_offset].entries == 3


def test_replacing_a_packed_file_by_a_large_one():
    space = space_with((P, 2))
    assert freed(space, [packed(0)], [chunked(0)]) == []
    assert space.packs[P.frame_offset].entries == 1
    assert freed(space, [packed(1)], [chunked(1, Ref(50000, 9000, b"C" * 16))]) == [P]
    assert not space.packs


def test_replacing_a_packed_file_by_a_small_one_in_a_new_pack():
    space = space_with((P, 2))
    assert freed(space, [packed(0)], [packed(0, Q)]) == []  # Q is new: its record at 1
    assert space.packs == {P.frame_offset: PackRecord(P.frame_size, 1),
                           Q.frame_offset: PackRecord(Q.frame_size, 1)}
    assert freed(space, [packed(1)], [packed(1, Q)]) == [P]  # P's last: freed
    assert space.packs == {Q.frame_offset: PackRecord(Q.frame_size, 2)}
    assert space.dead == {P.frame_offset: P.frame_size}


def test_replacing_a_large_file_by_a_small_one():
    space = space_with()
    assert freed(space, [chunked(0)], [packed(0, Q)]) == [BIG]
    assert space.packs == {Q.frame_offset: PackRecord(Q.frame_size, 1)}


def test_replace_in_place_with_the_same_pack_frees_nothing():
    space = space_with((P, 1))
    assert freed(space, [packed(0)], [packed(7)]) == []
    assert space.packs[P.frame_offset].entries == 1


def test_a_pack_the_map_does_not_know_cannot_lose_entries():
    space = space_with()
    with pytest.raises(IntegrityError):
        freed(space, [packed(0)], [])
    space = space_with((P, 1))
    with pytest.raises(IntegrityError):  # more removed than it had
        freed(space, [packed(0), packed(1)], [])
    space = space_with((P, 1))
    with pytest.raises(IntegrityError):  # another size under the same offset
        freed(space, [packed(0, Ref(P.frame_offset, 1, P.tag))], [])



def test_an_entry_cannot_name_a_pack_where_no_frame_can_be():
    # A forged ref at a page's offset (or at a frame this map already frees) would
    # otherwise put a PACK record over that key and corrupt the map's tiling.
    space = space_with()
    with pytest.raises(IntegrityError, match="no frame can be"):
        freed(space, [], [packed(0, Ref(16384, 4096, b"F" * 16))])
    space = space_with()
    space.dead[70000] = 5000
    with pytest.raises(IntegrityError, match="no frame can be"):
        freed(space, [], [packed(0, Ref(70000, 5000, b"F" * 16))])

# -- with the writer -------------------------------------------------------------------

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)
SMALL = {f"d/f{i:02d}.txt": b"small file %d " % i * (i + 1) for i in range(50)}


def packed_box(tmp_path: Path, files: dict[str, bytes] = SMALL) -> tuple[lockbox.Lockbox, Path]:
    path = tmp_path / "p.lbox"
    box = lockbox.create(path, password="pw", argon2=WEAK, chunk_size=65536)
    with box.writer() as w:
        for p, data in files.items():
            w.add_bytes(p, data)
    return box, path


def entry_of(box: lockbox.Lockbox, path: str) -> Entry:
    return box.run(box.view.stat_flow(path))


def pack_of(box: lockbox.Lockbox, path: str) -> Ref:
    e = entry_of(box, path)
    assert e.layout == LAYOUT_PACKED
    return e.refs[0]


def on_disk(path: Path, ref: Ref) -> bytes:
    return path.read_bytes()[ref.frame_offset:ref.frame_offset + ref.frame_size]


def slot_version(path: Path) -> int:
    box = lockbox.open(path, password="pw")
    try:
        return box.view.slot.version
    finally:
        box.close()


def test_a_pack_lives_while_one_member_does_and_dies_with_the_last(tmp_path):
    box, path = packed_box(tmp_path)
    names = sorted(SMALL)
    pack = pack_of(box, names[0])
    assert {pack_of(box, n) for n in names} == {pack}  # one pack
    assert box.view.slot.version == PACKED_FORMAT_VERSION
    space, _ = load_map(box, path)
    assert space.packs == {pack.frame_offset: PackRecord(pack.frame_size, 50)}
    check_map(box, path)
    with box.writer() as w:
        for n in names[:49]:
            w.remove(n)
    assert on_disk(path, pack)[:4] == b"LBXF"  # not redacted: a member still lives
    space, _ = load_map(box, path)
    assert space.packs == {pack.frame_offset: PackRecord(pack.frame_size, 1)}
    assert pack.frame_offset not in space.dead
    again = lockbox.open(path, password="pw")  # after the redaction, from the file
    assert again.read_bytes(names[49]) == SMALL[names[49]]
    assert again.verify().ok
    again.close()
    check_map(box, path)
    with box.writer() as w:
        w.remove(names[49])
    assert on_disk(path, pack) == bytes(pack.frame_size)  # DEAD and redacted
    space, _ = load_map(box, path)
    assert space.packs == {}
    assert space.dead.get(pack.frame_offset) == pack.frame_size
    assert slot_version(path) == FORMAT_VERSION  # no pack left: version 2 again
    page = space.page_of(pack.frame_offset)
    check_map(box, path)
    size = path.stat().st_size
    with box.writer() as w:  # the freed page is reused
        w.add_bytes("again.txt", b"a" * 30_000)
    assert pack_of(box, "again.txt").frame_offset >= page
    assert space.page_of(pack_of(box, "again.txt").frame_offset) == page
    assert path.stat().st_size <= size + 8192  # the map's own pages only
    assert slot_version(path) == PACKED_FORMAT_VERSION
    check_map(box, path)


def test_moving_a_packed_file_frees_nothing(tmp_path):
    box, path = packed_box(tmp_path, {"a.txt": b"aaa", "b.txt": b"bbb"})
    pack = pack_of(box, "a.txt")
    with box.writer() as w:
        w.move("a.txt", "moved/a.txt")
    assert pack_of(box, "moved/a.txt") == pack
    space, _ = load_map(box, path)
    assert pack.frame_offset not in space.dead
    assert space.packs[pack.frame_offset].entries == 2
    assert on_disk(path, pack)[:4] == b"LBXF"
    with box.writer() as w:  # a lone member moved: still nothing freed
        w.remove("b.txt")
    with box.writer() as w:
        w.move("moved/a.txt", "a2.txt")
    assert lockbox.open(path, password="pw").read_bytes("a2.txt") == b"aaa"
    check_map(box, path)


def test_replacing_packed_files(tmp_path):
    box, path = packed_box(tmp_path, {"a.txt": b"aaa", "b.txt": b"bbb", "c.txt": b"ccc"})
    pack = pack_of(box, "a.txt")
    big = os.urandom(200_000)
    with box.writer() as w:
        w.add_bytes("a.txt", big)  # by a large file
        w.add_bytes("b.txt", b"new b")  # by another small one (a new pack)
    assert entry_of(box, "a.txt").layout != LAYOUT_PACKED
    new_pack = pack_of(box, "b.txt")
    assert new_pack != pack
    space, _ = load_map(box, path)
    assert space.packs == {pack.frame_offset: PackRecord(pack.frame_size, 1),
                           new_pack.frame_offset: PackRecord(new_pack.frame_size, 1)}
    assert on_disk(path, pack)[:4] == b"LBXF"  # c.txt still in it
    check_map(box, path)
    with box.writer() as w:
        w.add_bytes("c.txt", b"new c")  # the old pack's last member replaced
    assert on_disk(path, pack) == bytes(pack.frame_size)
    box2 = lockbox.open(path, password="pw")
    assert [box2.read_bytes(n) for n in ("a.txt", "b.txt", "c.txt")] == [big, b"new b",
                                                                          b"new c"]
    check_map(box, path)


def test_a_session_pack_no_entry_keeps_is_freed(tmp_path):
    box, path = packed_box(tmp_path, {"keep.txt": b"k"})
    with box.writer() as w:
        w.add_bytes("x.txt", b"x" * 100)
        w.add_bytes("y.txt", b"y" * 100)
        w.commit()
        pack = pack_of(box, "x.txt")
        w.add_bytes("z.txt", b"z" * 100)  # a second pack of this writer
        zpack = w.content.seal_pack()
        assert zpack is not None
        w.remove("z.txt")  # removed before its commit: its pack is garbage
        w.remove("x.txt")
    space, _ = load_map(box, path)
    assert space.packs[pack.frame_offset].entries == 1  # y.txt
    assert zpack.frame_offset not in space.packs
    assert on_disk(path, zpack) == bytes(zpack.frame_size)
    assert box.read_bytes("y.txt") == b"y" * 100
    check_map(box, path)


def test_rebuilt_map_counts_packs_like_the_incremental_one(tmp_path):
    files = {f"f{i}": os.urandom(i * 37) for i in range(40)} | {"big": os.urandom(100_000)}
    box, path = packed_box(tmp_path, files)
    with box.writer() as w:
        for i in range(0, 40, 3):
            w.remove(f"f{i}")
        w.add_bytes("later", b"later")
        w.move("f1", "moved")
    incremental, _ = load_map(box, path)
    assert len(incremental.packs) == 2
    strip_space_map(box, path)
    box = lockbox.open(path, password="pw")
    assert box.view.commit.space is None
    fd = os.open(path, os.O_RDONLY)
    try:
        rebuilt = SpaceKeeper(fd, box.run).rebuild(box.view)
    finally:
        os.close(fd)
    assert rebuilt.packs == incremental.packs
    for off, rec in incremental.pages.items():
        if rec.kind == FRAMES:
            assert rebuilt.pages[off].live == rec.live
    with box.writer() as w:  # the first writer rebuilds it and goes on
        w.remove("f2")
    check_map(box, path)


class Counting:
    """A source counting the bytes read through it."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.bytes_read = 0

    def size(self) -> int | None:
        return self.source.size()

    def read(self, ranges):
        blobs = self.source.read(ranges)
        self.bytes_read += sum(len(b) for b in blobs)
        return blobs

    def close(self) -> None:
        self.source.close()


def test_recovery_of_a_packed_archive_without_slots(tmp_path):
    files = {f"dir{i % 3}/f{i:03d}": os.urandom(i * 13 % 3000) for i in range(120)}
    files |= {f"many/g{i:03d}": os.urandom(3000) for i in range(400)}  # 1.2 MB: 2 packs
    box, path = packed_box(tmp_path, files)
    assert len({pack_of(box, p) for p in files}) >= 2
    with box.writer() as w:  # a second pack, and a removed member in the first
        w.add_bytes("late.txt", b"late")
        w.remove("dir0/f000")
    del files["dir0/f000"]
    files["late.txt"] = b"late"
    box.close()
    data = bytearray(path.read_bytes())
    data[:SUPERBLOCK_SIZE] = bytes(SUPERBLOCK_SIZE)  # both slots destroyed
    path.write_bytes(bytes(data))
    source = FileSource(path)
    try:
        scanner = RecoveryScanner(password="pw")
        report = scanner.scan(source)
        status = {e.path: e.status for e in report.files}
        for p in files:
            assert status[p] == COMPLETE, p
        out = tmp_path / "out.lbox"
        counting = Counting(source)
        scanner.salvage(out, counting)
    finally:
        source.close()
    # every pack is re-read (and re-opened) once, not once per member
    assert counting.bytes_read <= len(data)
    with lockbox.open(out, password="pw") as got:
        assert got.verify().ok
        for p, want in files.items():
            assert got.read_bytes(p) == want
        assert got.view.slot.version == PACKED_FORMAT_VERSION


def test_compaction_repacks_live_members(tmp_path):
    # 700 x 2000 random bytes: two packs (1 MiB each at most); half of them removed
    files = {f"f{i:03d}": os.urandom(2000) for i in range(700)}
    box, path = packed_box(tmp_path, files)
    packs = {pack_of(box, p) for p in files}
    assert len(packs) == 2
    with box.writer() as w:
        for i in range(0, 700, 2):
            w.remove(f"f{i:03d}")
    space, _ = load_map(box, path)
    assert {p.entries for p in space.packs.values()} != {0}
    assert sorted(space.packs) == sorted(p.frame_offset for p in packs)  # both still live
    before = path.stat().st_size
    report = box.compact()
    assert report.files == 350
    assert path.stat().st_size < before - 600_000  # the removed members are gone
    assert box.verify().ok
    with lockbox.open(path, password="pw") as again:
        for i in range(1, 700, 2):
            assert again.read_bytes(f"f{i:03d}") == files[f"f{i:03d}"]
    space, _ = load_map(box, path)
    assert len(space.packs) == 1  # the live members fit one pack now
    assert sum(p.entries for p in space.packs.values()) == 350
    assert slot_version(path) == PACKED_FORMAT_VERSION
    check_map(box, path)


def test_packs_of_a_tree_add_are_counted(tmp_path):
    src = tmp_path / "src"
    for i in range(300):
        (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 4}" / f"f{i:03d}").write_bytes(os.urandom(i * 11))
    path = tmp_path / "t.lbox"
    box = lockbox.create(path, password="pw", argon2=WEAK, chunk_size=65536)
    with box.writer() as w:
        assert w.add_tree(src) == 304  # 300 files, 4 directories
    names = [e.path for e in box.ls(recursive=True) if e.is_file]
    packs = {pack_of(box, n) for n in names}
    space, _ = load_map(box, path)
    assert sum(r.entries for r in space.packs.values()) == 300
    assert set(space.packs) == {p.frame_offset for p in packs}
    check_map(box, path)
    with box.writer() as w:
        w.remove("d1", recursive=True)
        w.move("d2", "e2")
    check_map(box, path)
    with box.writer() as w:
        for d in ("d0", "e2", "d3"):
            w.remove(d, recursive=True)
    space, _ = load_map(box, path)
    assert space.packs == {}
    data = path.read_bytes()
    for p in packs:
        assert data[p.frame_offset:p.frame_offset + p.frame_size] == bytes(p.frame_size)
    assert box.view.slot.version == FORMAT_VERSION
    check_map(box, path)


def test_a_member_that_does_not_decode_costs_only_itself(tmp_path):
    box, path = packed_box(tmp_path, {"keep.txt": b"k"})
    with box.writer() as w:
        w.add_bytes("a.txt", b"a" * 100)
        w.content.add_encoded_member(b"junk", os.urandom(16), 0o644, 0, 4, bytes(32))
        w.add_bytes("b.txt", b"b" * 100)
    assert pack_of(box, "a.txt") == pack_of(box, "b.txt")
    box.close()
    data = bytearray(path.read_bytes())
    data[:SUPERBLOCK_SIZE] = bytes(SUPERBLOCK_SIZE)
    path.write_bytes(bytes(data))
    source = FileSource(path)
    try:
        report = RecoveryScanner(password="pw").scan(source)
    finally:
        source.close()
    status = {e.path: e.status for e in report.files}
    assert status == {"keep.txt": COMPLETE, "a.txt": COMPLETE, "b.txt": COMPLETE}
    assert any("member 1" in p for p in report.problems)


def test_pack_counts_are_net_over_interleaved_runs_and_shared_or_equal_refs():
    """Entries of two packs in interleaved runs (one shared refs object per pack, plus
    an entry with its own equal tuple), mixed with a directory: counted as one entry
    at a time would count them."""
    shared_p, shared_q = (P,), (Q,)
    new = [Entry(EntryType.FILE, 0o644, 0, 10, 60, bytes(32), i.to_bytes(16, "big"), 4096,
                 LAYOUT_PACKED, shared_p if i % 3 else shared_q, member_no=i)
           for i in range(30)]
    new.insert(7, Entry(EntryType.DIR, 0o755, 0))
    new.insert(12, packed(99))  # its own (P,) tuple
    space = space_with()
    assert freed(space, [], new) == []
    assert space.packs == {P.frame_offset: PackRecord(P.frame_size, 21),
                           Q.frame_offset: PackRecord(Q.frame_size, 10)}
    gone = new[:13]  # 8 of P (with packed(99)), 4 of Q, the directory
    assert freed(space, gone, []) == []
    assert space.packs == {P.frame_offset: PackRecord(P.frame_size, 13),
                           Q.frame_offset: PackRecord(Q.frame_size, 6)}


def test_two_entries_naming_one_pack_with_different_sizes_are_refused():
    other_size = Ref(P.frame_offset, P.frame_size + 16, P.tag)
    with pytest.raises(IntegrityError, match="different sizes"):
        freed(space_with(), [], [packed(1), packed(2, other_size)])
