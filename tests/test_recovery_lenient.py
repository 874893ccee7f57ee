"""recovery/lenient.py: the strict wire decoders with their errors caught; superblock
slots read in the order of docs/FORMAT.md §3 (the magic decides first)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

import lockbox
from lockbox.errors import IntegrityError, UnsupportedVersionError
from lockbox.formats.lbox.recovery import lenient
from lockbox.formats.lbox.wire.constants import (
    MAX_FRAME_SEALED_SIZE,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
    TAG_SIZE,
    FrameKind,
    PageKind,
)
from lockbox.formats.lbox.wire.frame import FrameHeader, encode_frame_header
from lockbox.formats.lbox.wire.page import PageHeader, encode_page_header
from lockbox.formats.lbox.wire.superblock import decode_slot


@pytest.fixture
def head(tmp_path: Path, weak_argon2) -> bytes:
    """The superblock of an archive at generation 2 (slot 0) and 1 (slot 1)."""
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", argon2=weak_argon2)
    with box, box.writer() as w:
        w.add_bytes("a.txt", b"a")
    return path.read_bytes()[:SUPERBLOCK_SIZE]


def _slot(head: bytes, no: int) -> bytearray:
    return bytearray(head[no * SLOT_SIZE:(no + 1) * SLOT_SIZE])


def _sizes(region: bytes) -> tuple[int, int]:
    k, c = struct.unpack_from("<II", region, 40)
    return k, c


def test_the_magic_decides_first(head: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = lenient.decode_slot

    def spy(region: bytes, no: int):  # type: ignore[no-untyped-def]
        calls.append(no)
        return real(region, no)

    monkeypatch.setattr(lenient, "decode_slot", spy)
    for region in (b"", b"LBOX", bytes(SLOT_SIZE), os.urandom(SLOT_SIZE), b"x" * 100):
        assert lenient.parse_slot(region, 0) is None
    assert calls == []  # never decoded without the magic
    assert [s.generation for s in lenient.read_slots(head)] == [2, 1]
    assert calls == [0, 1]
    assert lenient.read_slots(bytes(SUPERBLOCK_SIZE)) == []
    assert [s.slot_no for s in lenient.read_slots(head[:SLOT_SIZE])] == [0]  # a cut file


def test_intact_slots_decode_strictly_and_newer_ones_are_refused(head: bytes) -> None:
    for no in (0, 1):
        assert lenient.parse_slot(bytes(_slot(head, no)), no) == \
            decode_slot(bytes(_slot(head, no)), no)
    newer = _slot(head, 1)
    k, c = _sizes(newer)
    newer[8:10] = (4).to_bytes(2, "little")
    struct.pack_into("<I", newer, 48 + k + c, zlib.crc32(bytes(newer[:48 + k + c])))
    with pytest.raises(UnsupportedVersionError):
        lenient.parse_slot(bytes(newer), 1)
    with pytest.raises(UnsupportedVersionError):
        lenient.read_slots(head[:SLOT_SIZE] + bytes(newer))


def test_damaged_slots_are_read_as_they_are(head: bytes) -> None:
    intact = decode_slot(bytes(_slot(head, 0)), 0)
    k, c = _sizes(_slot(head, 0))
    torn = _slot(head, 0)
    torn[48 + k + c] ^= 0xFF  # the CRC
    wrong_no = _slot(head, 0)
    wrong_no[10] = 1  # the slot number (the CRC no longer matches either)
    cut = bytes(_slot(head, 0)[:48 + k + c])  # the file ends before the CRC
    for region in (bytes(torn), bytes(wrong_no), cut):
        with pytest.raises(lockbox.LockboxError):
            decode_slot(region, 0)
        slot = lenient.parse_slot(region, 0)
        assert slot is not None
        assert (slot.slot_no, slot.archive_id, slot.generation, slot.keydir,
                slot.commit_frame) == (intact.slot_no, intact.archive_id, intact.generation,
                                       intact.keydir, intact.commit_frame)
    garbage = bytearray(_slot(head, 0))
    struct.pack_into("<II", garbage, 40, 8000, 8000)  # contents larger than a slot
    assert lenient.parse_slot(bytes(garbage), 0) is None
    assert lenient.parse_slot(bytes(_slot(head, 0)[:48 + k]), 0) is None  # cut short
    with pytest.raises(IntegrityError):
        decode_slot(bytes(torn), 0)


def test_pages_and_frames() -> None:
    page = encode_page_header(PageHeader(PageKind.FRAMES, 8192, 100, 3))
    buf = b"\x00" * 7 + page + b"\x00" * 10
    assert lenient.page_header_at(buf, 7) == PageHeader(PageKind.FRAMES, 8192, 100, 3)
    assert lenient.page_header_at(buf, 0) is None
    broken = bytearray(buf)
    broken[7 + 12] ^= 1
    assert lenient.page_header_at(bytes(broken), 7) is None
    assert lenient.keydir_page(page + bytes(100)) is None  # not a KEYDIR page

    for kind in FrameKind:
        head = encode_frame_header(FrameHeader(kind, TAG_SIZE + 5, 2, os.urandom(16), 9))
        found = lenient.FRAME_CANDIDATE.search(b"zz" + head)
        assert (found is not None) == (kind != FrameKind.COMMIT), kind
        if found is not None:
            assert found.start() == 2
            assert lenient.frame_header_at(memoryview(b"zz" + head), 2) == \
                FrameHeader(kind, TAG_SIZE + 5, 2, head[20:36], 9)
    good = encode_frame_header(FrameHeader(FrameKind.DATA_CHUNK, TAG_SIZE, 1, bytes(16), 0))
    bad_crc = bytearray(good)
    bad_crc[30] ^= 1
    too_big = encode_frame_header(FrameHeader(FrameKind.DATA_CHUNK, MAX_FRAME_SEALED_SIZE + 1,
                                              1, bytes(16), 0))
    for blob in (bytes(bad_crc), too_big, good[:40]):
        assert lenient.frame_header_at(blob, 0) is None
    flagged = bytearray(good)
    flagged[5] = 1  # flags
    assert lenient.FRAME_CANDIDATE.search(bytes(flagged)) is None
