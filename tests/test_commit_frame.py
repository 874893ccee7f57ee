"""The commit frame inside a slot (docs/FORMAT.md §5 "The commit frame", §11 "Opening"):
the one-content-key check made before an older generation is opened in the newest's
place. Steps 1-3 (size against ``C``, header) need no key: a frame that fails them is
damage every key holder sees alike and the older generation opens; a frame of another
kind, or one that does not authenticate under the older generation's key, refuses it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from lockbox.errors import IntegrityError
from lockbox.formats.lbox.archive import Lockbox
from lockbox.sources.memory import BytesSource

HELLO = Path(__file__).parent / "vectors" / "v1" / "hello.lbox"


def _slot0(data: bytearray) -> tuple[int, int]:
    """(offset of slot 0's key directory, offset of its commit frame)."""
    k, _c = struct.unpack_from("<II", data, 40)
    return 48, 48 + k


def _fix_slot0_crc(data: bytearray) -> None:
    k, c = struct.unpack_from("<II", data, 40)
    end = 48 + k + c
    data[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(data[:end])))


def _refused_newest() -> bytearray:
    """hello.lbox whose newest key directory no longer opens with the password (a byte
    of its wrapped key flipped, CRC recomputed): a keyless edit, so generation 1, whose
    directory differs now, is opened in its place — if the one-key check allows it."""
    data = bytearray(HELLO.read_bytes())
    kd, _ = _slot0(data)
    data[kd + 5 + 32 + 2 + 7 + 25 + 3] ^= 0x01
    _fix_slot0_crc(data)
    return data


def _generation(data: bytearray) -> int:
    with Lockbox(BytesSource(bytes(data)), password="lockbox") as box:
        return box.generation


def test_a_keyless_edit_of_the_newest_directory_opens_the_older_generation() -> None:
    assert _generation(_refused_newest()) == 1


@pytest.mark.parametrize("delta", [1, -1])
def test_a_commit_frame_that_does_not_fill_its_field_is_not_tried(delta: int) -> None:
    data = _refused_newest()
    _, commit = _slot0(data)
    sealed = struct.unpack_from("<I", data, commit + 8)[0]
    data[commit + 8:commit + 12] = struct.pack("<I", sealed + delta)
    data[commit + 44:commit + 48] = struct.pack("<I", zlib.crc32(bytes(data[commit:commit + 44])))
    _fix_slot0_crc(data)
    assert _generation(data) == 1


def test_a_commit_frame_with_a_damaged_header_is_not_tried() -> None:
    data = _refused_newest()
    _, commit = _slot0(data)
    data[commit] ^= 0x01  # bad magic
    _fix_slot0_crc(data)
    assert _generation(data) == 1


def test_a_commit_frame_of_another_kind_refuses_the_older_generation() -> None:
    data = _refused_newest()
    _, commit = _slot0(data)
    data[commit + 4] = 2  # TOC_NODE, header CRC recomputed
    data[commit + 44:commit + 48] = struct.pack("<I", zlib.crc32(bytes(data[commit:commit + 44])))
    _fix_slot0_crc(data)
    with pytest.raises(IntegrityError, match="generation 2 is not sealed under the content key "
                                             "of generation 1"):
        _generation(data)


def test_a_commit_frame_that_does_not_authenticate_refuses_the_older_generation() -> None:
    data = _refused_newest()
    _, commit = _slot0(data)
    data[commit + 48 + 7] ^= 0x01  # a ciphertext byte
    _fix_slot0_crc(data)
    with pytest.raises(IntegrityError, match="is not sealed under the content key"):
        _generation(data)
