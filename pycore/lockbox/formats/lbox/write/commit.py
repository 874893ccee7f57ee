"""The commit protocol's last step, shared by archive creation and every commit:
sealing a commit record into its superblock slot. docs/FORMAT.md §3, §11.

Generation ``g`` goes into slot ``g % 2``; its commit frame is sealed at the offset its
AAD binds (right after the slot's key-directory field), so the slot image is complete
before a byte of it is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ..frames import FrameSealer
from ..wire.commit import CommitRecord, encode_commit
from ..wire.constants import FrameKind
from ..wire.superblock import (
    ExternalKeydir,
    Slot,
    commit_frame_offset,
    encode_slot,
    keydir_fits_inline,
    slot_offset,
)

__all__ = ["WriteAt", "keydir_field_for", "write_commit_slot"]

WriteAt = Callable[[bytes, int], None]  # (data, offset): a positioned write


def keydir_field_for(keydir: bytes, page_offset: int) -> bytes | ExternalKeydir:
    """A slot's key-directory field for ``keydir``, whose KEYDIR page is at
    ``page_offset``: the directory inline when it fits beside the commit, else a
    pointer to the page (§3)."""
    if keydir_fits_inline(len(keydir)):
        return keydir
    return ExternalKeydir(page_offset, len(keydir), hashlib.sha256(keydir).digest())


def write_commit_slot(write_at: WriteAt, sealer: FrameSealer, archive_id: bytes,
                      record: CommitRecord, keydir_field: bytes | ExternalKeydir) -> Slot:
    """Seal ``record`` as its generation's commit frame and write the whole slot image
    (8192 bytes, zero padded) at the slot's offset with ``write_at``; returns the slot.
    The caller makes it durable (fsync) and owns what a failed write means."""
    generation = record.generation
    slot_no = generation % 2
    plain = sealer.encode_plain(encode_commit(record), compress=False)
    frame, _ = sealer.seal(FrameKind.COMMIT, generation,
                           commit_frame_offset(slot_no, keydir_field), plain)
    slot = Slot(slot_no, archive_id, generation, keydir_field, frame)
    write_at(encode_slot(slot), slot_offset(slot_no))
    return slot
