"""write/commit.py: one function seals a commit record into its superblock slot, for
archive creation (newarchive) and for every commit (Writer)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import lockbox
from lockbox.formats.lbox.frames import FrameOpener, FrameSealer
from lockbox.formats.lbox.wire.commit import EMPTY_TREE, CommitRecord, decode_commit
from lockbox.formats.lbox.wire.constants import SLOT_SIZE, SUPERBLOCK_SIZE, FrameKind
from lockbox.formats.lbox.wire.superblock import (
    ExternalKeydir,
    decode_slot,
    decode_superblock,
    keydir_fits_inline,
)
from lockbox.formats.lbox.write.commit import keydir_field_for, write_commit_slot


def _record(generation: int, keydir: bytes) -> CommitRecord:
    return CommitRecord(generation=generation, time_ns=123, archive_end=SUPERBLOCK_SIZE,
                        default_chunk_size=65536, keydir_sha256=hashlib.sha256(keydir).digest(),
                        toc=EMPTY_TREE, env=EMPTY_TREE, space=None)


@pytest.mark.parametrize("generation", [1, 2, 7])
@pytest.mark.parametrize("keydir_size", [100, 7000])
def test_the_slot_opens_as_its_generations_commit(crypto, codec, generation: int,
                                                  keydir_size: int) -> None:
    archive_id, key = os.urandom(16), os.urandom(32)
    keydir = os.urandom(keydir_size)
    field = keydir_field_for(keydir, 3 * 4096 + SUPERBLOCK_SIZE)
    assert isinstance(field, bytes) == keydir_fits_inline(keydir_size)
    if isinstance(field, ExternalKeydir):
        assert (field.page_offset, field.keydir_size) == (3 * 4096 + SUPERBLOCK_SIZE,
                                                         keydir_size)
    image = bytearray(SUPERBLOCK_SIZE)
    writes: list[tuple[int, int]] = []

    def put(data: bytes, offset: int) -> None:
        writes.append((offset, len(data)))
        image[offset:offset + len(data)] = data

    record = _record(generation, keydir)
    slot = write_commit_slot(put, FrameSealer(crypto, codec, archive_id, key), archive_id,
                             record, field)
    # One write: the whole slot, at the slot that generation belongs in; the other stays empty.
    assert writes == [((generation % 2) * SLOT_SIZE, SLOT_SIZE)]
    assert bytes(image[(1 - generation % 2) * SLOT_SIZE:][:SLOT_SIZE]) == bytes(SLOT_SIZE)
    (decoded,) = decode_superblock(bytes(image))
    assert decoded == slot == decode_slot(bytes(image[slot.slot_no * SLOT_SIZE:]),
                                          slot.slot_no)
    assert (slot.generation, slot.archive_id, slot.keydir) == (generation, archive_id, field)
    # The frame authenticates only at the offset the slot gives it.
    opener = FrameOpener(crypto, codec, archive_id, key)
    header, payload = opener.open_at(slot.commit_frame, slot.commit_frame_offset,
                                     FrameKind.COMMIT)
    assert header.generation == generation and decode_commit(bytes(payload)) == record
    with pytest.raises(lockbox.IntegrityError):
        opener.open_at(slot.commit_frame, slot.commit_frame_offset + 1, FrameKind.COMMIT)


def test_creation_and_commits_write_slots_the_reader_opens(tmp_path: Path,
                                                          weak_argon2) -> None:
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", argon2=weak_argon2)
    try:
        for g in (2, 3):
            with box.writer() as w:
                w.add_bytes(f"f{g}", b"x" * g)
            slots = decode_superblock(path.read_bytes()[:SUPERBLOCK_SIZE])
            assert [s.generation for s in slots] == [g, g - 1]
    finally:
        box.close()
    with lockbox.open(path, password="pw") as again:
        assert again.generation == 3 and again.read_bytes("f3") == b"xxx"
