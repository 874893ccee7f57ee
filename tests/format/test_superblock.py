"""The superblock: two checksummed 8 KiB commit slots."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import (
    FormatError,
    IntegrityError,
    TruncatedError,
    UnsupportedVersionError,
)
from lockbox.formats.lbox.wire.constants import (
    FORMAT_VERSION,
    PACKED_FORMAT_VERSION,
    READABLE_FORMAT_VERSIONS,
    SLOT_HEADER_SIZE,
    SLOT_MAGIC,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
)
from lockbox.formats.lbox.wire.keydir import decode_key_directory, encode_keydir
from lockbox.formats.lbox.wire.superblock import (
    SLOT_CAPACITY,
    ExternalKeydir,
    Slot,
    commit_frame_offset,
    decode_slot,
    decode_superblock,
    encode_slot,
    slot_offset,
)

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, mutate

AID = bytes(range(16))
EXT = ExternalKeydir(16384 * 3, 9000, bytes(range(32)))


def slot(no: int = 0, gen: int | None = None, keydir=b"LBKD-keydir-bytes", frame=b"F" * 200,
         aid: bytes = AID) -> Slot:
    """Generation g lives in slot g % 2 (default: 2 or 3)."""
    return Slot(no, aid, 2 + no if gen is None else gen, keydir, frame)


def used(image: bytes) -> int:
    kd, c = struct.unpack_from("<II", image, 40)
    return SLOT_HEADER_SIZE + kd + c + 4


def forged(no: int = 0, **fields) -> bytes:
    """A slot image with raw header fields and a recomputed checksum."""
    v = {"magic": SLOT_MAGIC, "version": FORMAT_VERSION, "no": no, "flags": 0, "reserved": 0,
         "aid": AID, "gen": 2 + no, "field": b"kd", "frame": b"fr", **fields}
    kd_size = v.get("kd_size", len(v["field"]))
    c_size = v.get("c_size", len(v["frame"]))
    head = struct.pack("<8sHBBI16sQII", v["magic"], v["version"], v["no"], v["flags"],
                       v["reserved"], v["aid"], v["gen"], kd_size, c_size)
    body = head + v["field"] + v["frame"]
    image = body + struct.pack("<I", zlib.crc32(body))
    return image + bytes(SLOT_SIZE - len(image))


def superblock(*slots: Slot | None) -> bytes:
    out = bytearray(SUPERBLOCK_SIZE)
    for s in slots:
        if s is not None:
            out[slot_offset(s.slot_no):slot_offset(s.slot_no) + SLOT_SIZE] = encode_slot(s)
    return bytes(out)


# -- one slot --------------------------------------------------------------------------------


@pytest.mark.parametrize("no", [0, 1])
@pytest.mark.parametrize("keydir", [b"inline key directory", b"", EXT])
def test_slot_round_trip(no, keydir):
    s = slot(no, keydir=keydir)
    image = encode_slot(s)
    assert len(image) == SLOT_SIZE and image.startswith(SLOT_MAGIC)
    assert decode_slot(image, no) == s
    assert decode_slot(memoryview(image), no) == s
    assert image[used(image):] == bytes(SLOT_SIZE - used(image))  # zero padded
    field_len = 44 if isinstance(keydir, ExternalKeydir) else len(keydir)
    assert s.commit_frame_offset == commit_frame_offset(no, keydir) == \
        slot_offset(no) + SLOT_HEADER_SIZE + field_len
    assert image[SLOT_HEADER_SIZE + field_len:][:200] == b"F" * 200


def test_slot_offsets_and_capacity():
    assert (slot_offset(0), slot_offset(1)) == (0, SLOT_SIZE)
    assert SLOT_CAPACITY == SLOT_SIZE - SLOT_HEADER_SIZE - 4
    full = slot(keydir=b"k" * 100, frame=b"f" * (SLOT_CAPACITY - 100))
    assert decode_slot(encode_slot(full), 0) == full
    with pytest.raises(ValueError):
        encode_slot(slot(keydir=b"k" * 100, frame=b"f" * (SLOT_CAPACITY - 99)))


@pytest.mark.parametrize("n", [0, 8, 47])
def test_truncated_header(n):
    with pytest.raises(TruncatedError):
        decode_slot(encode_slot(slot())[:n], 0)


def test_truncated_contents():
    image = encode_slot(slot())
    for n in (48, used(image) - 1):
        with pytest.raises(TruncatedError):
            decode_slot(image[:n], 0)
    assert decode_slot(image[:used(image)], 0) == slot()


def test_bad_magic():
    with pytest.raises(FormatError, match="bad magic") as info:
        decode_slot(forged(magic=b"LBOX\r\n\x1a\x00"), 0)
    assert not isinstance(info.value, IntegrityError)
    with pytest.raises(FormatError, match="bad magic"):
        decode_slot(bytes(SLOT_SIZE), 0)


@pytest.mark.parametrize("version", [0, 4, 0xFFFF])
def test_unknown_version(version):
    with pytest.raises(UnsupportedVersionError, match=f"version {version}"):
        decode_slot(forged(version=version), 0)
    with pytest.raises(ValueError):
        encode_slot(dataclasses.replace(slot(), version=version))


def test_version_3_slot_with_a_version_2_key_directory():
    """Format version 3 (packs, docs/FORMAT.md §20) changes nothing in the slot: it
    carries a version-2 key directory, inline or external, like a version-2 slot."""
    assert READABLE_FORMAT_VERSIONS == (1, 2, 3) and FORMAT_VERSION == 2
    assert PACKED_FORMAT_VERSION == 3
    keydir = encode_keydir([], bytes(range(32)))
    for kd in (keydir, EXT):
        s = Slot(1, AID, 7, kd, b"F" * 200, PACKED_FORMAT_VERSION)
        image = encode_slot(s)
        assert struct.unpack_from("<H", image, 8) == (3,)
        got = decode_slot(image, 1)
        assert got == s and got.version == 3
    raw = forged(1, version=3, gen=7, field=keydir, frame=b"F" * 200)
    assert decode_slot(raw, 1) == Slot(1, AID, 7, keydir, b"F" * 200, 3)
    got = decode_superblock(superblock(slot(0, gen=6), Slot(1, AID, 7, keydir, b"F", 3)))
    assert [g.version for g in got] == [3, 2]
    directory = decode_key_directory(got[0].keydir)  # type: ignore[arg-type]
    assert directory.version == 2 and directory.key_commitment == bytes(range(32))


@pytest.mark.parametrize("fields", [{"no": 1}, {"no": 2}, {"reserved": 1},
                                    {"flags": 2}, {"flags": 0x80}])
def test_slot_number_and_reserved_bits(fields):
    with pytest.raises(FormatError, match="slot number or reserved"):
        decode_slot(forged(**fields), 0)


def test_slot_number_must_match_the_position():
    image = encode_slot(slot(1))
    assert decode_slot(image, 1).slot_no == 1
    with pytest.raises(FormatError):
        decode_slot(image, 0)


@pytest.mark.parametrize("kd,c", [(SLOT_CAPACITY, 1), (0xFFFFFFFF, 0), (0, 0xFFFFFFFF),
                                  (0xFFFFFFFF, 0xFFFFFFFF)])
def test_hostile_content_sizes(kd, c):
    """Sizes that cannot fit are damage of the (version-independent) slot framing."""
    with pytest.raises(IntegrityError, match="larger than the slot"):
        decode_slot(forged(kd_size=kd, c_size=c), 0)


def test_checksum():
    image = encode_slot(slot())
    for i in [*range(8, 48), 48, 100, used(image) - 5, used(image) - 1]:
        bad = bytearray(image)
        bad[i] ^= 0x02
        with pytest.raises((FormatError, IntegrityError)):  # may hit a field check first
            decode_slot(bytes(bad), 0)
    for i in list(range(48, used(image))):
        bad = bytearray(image)
        bad[i] ^= 0x10
        with pytest.raises(IntegrityError, match="checksum"):
            decode_slot(bytes(bad), 0)
    # bytes after the checksum are not part of the slot
    bad = bytearray(image)
    bad[used(image)] = 0xFF
    bad[-1] = 0xFF
    assert decode_slot(bytes(bad), 0) == slot()


def test_generation_zero_is_refused():
    with pytest.raises(FormatError, match="generation 0"):
        decode_slot(forged(gen=0), 0)


@pytest.mark.parametrize("no,bad,good", [(0, 1, 2), (0, 2 ** 64 - 1, 2 ** 64 - 2), (1, 2, 1),
                                         (1, 2 ** 64 - 2, 2 ** 64 - 1)])
def test_generation_must_match_the_slot(no, bad, good):
    with pytest.raises(FormatError, match="belongs in the other slot"):
        decode_slot(forged(no, gen=bad), no)
    assert decode_slot(forged(no, gen=good), no).generation == good


def test_external_pointer_must_have_its_size():
    with pytest.raises(FormatError, match="external key directory pointer"):
        decode_slot(forged(flags=1, field=b"x" * 43), 0)
    with pytest.raises(FormatError, match="external key directory pointer"):
        decode_slot(forged(flags=1, field=b"x" * 45), 0)
    s = decode_slot(forged(flags=1, field=struct.pack("<QI32s", 2 ** 64 - 1, 2 ** 32 - 1,
                                                      b"h" * 32)), 0)
    assert s.keydir == ExternalKeydir(2 ** 64 - 1, 2 ** 32 - 1, b"h" * 32)


# -- both slots ------------------------------------------------------------------------------


def test_superblock_newest_first():
    s0, s1 = slot(0, gen=4), slot(1, gen=5)
    assert decode_superblock(superblock(s0, s1)) == [s1, s0]
    s0, s1 = slot(0, gen=6), slot(1, gen=5)
    assert decode_superblock(superblock(s0, s1)) == [s0, s1]


@pytest.mark.parametrize("present", [0, 1])
def test_superblock_with_one_slot(present):
    s = slot(present)
    assert decode_superblock(superblock(s)) == [s]
    # the other slot damaged (or of another version) instead of empty
    data = bytearray(superblock(s, slot(1 - present)))
    data[slot_offset(1 - present) + 100] ^= 1
    assert decode_superblock(bytes(data)) == [s]
    data[slot_offset(1 - present):slot_offset(1 - present) + 8] = b"garbage!"
    assert decode_superblock(bytes(data)) == [s]


def test_superblock_from_two_archives():
    with pytest.raises(IntegrityError, match="different archives"):
        decode_superblock(superblock(slot(0, aid=bytes(16)), slot(1, aid=AID)))


def test_not_a_lockbox_archive():
    for data in (b"", b"L", b"hello", bytes(100), bytes(SUPERBLOCK_SIZE),
                 b"\x89PNG\r\n\x1a\n" + bytes(SUPERBLOCK_SIZE)):
        with pytest.raises(FormatError, match="not a lockbox archive") as info:
            decode_superblock(data)
        assert type(info.value) is FormatError


def test_truncated_superblock():
    data = superblock(slot(0, gen=2), slot(1, gen=1))
    for n in (8, 48, 100, used(data) - 1):
        with pytest.raises(TruncatedError):
            decode_superblock(data[:n])
    # slot 0 whole, slot 1 cut: slot 0 alone
    assert decode_superblock(data[:SLOT_SIZE + 10]) == [slot(0, gen=2)]


def test_truncated_single_slot_superblock_is_truncated():
    """Only slot 1 in use (a fresh archive) and cut inside it after its magic."""
    data = superblock(slot(1, gen=1))
    for n in (SLOT_SIZE + 8, SLOT_SIZE + 48, SLOT_SIZE + used(data[SLOT_SIZE:]) - 1):
        with pytest.raises(TruncatedError):
            decode_superblock(data[:n])


def test_damaged_superblock_reports_the_damage():
    data = bytearray(superblock(slot(0, gen=2), slot(1, gen=3)))
    data[60] ^= 1
    data[SLOT_SIZE + 60] ^= 1
    with pytest.raises(IntegrityError):
        decode_superblock(bytes(data))


def test_damaged_single_slot_reports_the_damage():
    """Slot 0 empty (zeros), slot 1 damaged: IntegrityError, not slot 0's bad magic."""
    data = bytearray(superblock(slot(1, gen=1)))
    data[SLOT_SIZE + 60] ^= 1
    with pytest.raises(IntegrityError):
        decode_superblock(bytes(data))


def test_unknown_version_is_never_skipped():
    """A slot of a newer format version (with a valid checksum) is not silently
    passed over for an older v1 slot: that one's writer would overwrite it."""
    data = bytearray(SUPERBLOCK_SIZE)
    data[SLOT_SIZE:] = forged(1, version=9)
    with pytest.raises(UnsupportedVersionError):
        decode_superblock(bytes(data))
    data[:SLOT_SIZE] = encode_slot(slot(0))
    with pytest.raises(UnsupportedVersionError):
        decode_superblock(bytes(data))
    data[:SLOT_SIZE] = forged(0, version=9)
    with pytest.raises(UnsupportedVersionError):
        decode_superblock(bytes(data))


@pytest.mark.parametrize("offset", [8, 9])
def test_damaged_version_field_falls_back_like_any_damage(offset):
    """A bit flip in the newer slot's version field fails that slot's checksum: it is
    damage (fall back to the other slot), not a newer format version."""
    s0, s1 = slot(0, gen=4), slot(1, gen=5)
    data = bytearray(superblock(s0, s1))
    data[SLOT_SIZE + offset] ^= 0x04
    assert decode_superblock(bytes(data)) == [s0]


# -- properties ------------------------------------------------------------------------------

keydirs = st.one_of(
    st.binary(max_size=300),
    st.builds(ExternalKeydir, st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 32 - 1),
              st.binary(min_size=32, max_size=32)),
)
slots = st.builds(
    lambda no, aid, k, kd, frame: Slot(no, aid, 2 * k + no, kd, frame),
    st.integers(0, 1), st.binary(min_size=16, max_size=16), st.integers(1, 2 ** 63 - 1),
    keydirs, st.binary(max_size=500))


@ROUND_TRIP
@given(slots)
def test_slot_round_trip_property(s):
    assert decode_slot(encode_slot(s), s.slot_no) == s


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 1))
def test_arbitrary_bytes(data, no):
    decode_or_typed_error(lambda d: decode_slot(d, no), data)
    decode_or_typed_error(decode_superblock, data)
    decode_or_typed_error(decode_superblock, data + bytes(SUPERBLOCK_SIZE))


@FUZZ
@given(st.data(), slots)
def test_mutated_slots(data, s):
    image = encode_slot(s)
    n = used(image)
    bad = data.draw(mutate(image[:n])) + image[n:]
    got = decode_or_typed_error(lambda d: decode_slot(d, s.slot_no), bad)
    if len(bad) >= n and bad[:n] != image[:n]:
        assert got is None  # every change inside the checksummed part is caught
    both = bytearray(SUPERBLOCK_SIZE)
    both[slot_offset(s.slot_no):slot_offset(s.slot_no) + len(bad[:SLOT_SIZE])] = \
        bad[:SLOT_SIZE]
    decode_or_typed_error(decode_superblock, bytes(both))
