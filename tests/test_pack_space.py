"""Packs in the space map (docs/FORMAT.md §14, kind 7 PACK records): a shared PACK
frame is never freed while an entry still names it, and is freed (DEAD, then redacted)
when the last one goes; the slot version follows the packs (3 with, 2 without)."""

from __future__ import annotations

import pytest

from lockbox.errors import FormatError, IntegrityError, LimitExceededError
from lockbox.formats.lbox.wire.constants import MAX_PAGE_SIZE, EntryType
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
