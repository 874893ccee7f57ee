"""Opening an archive: read the superblock, unlock locally, choose the commit.

A sans-I/O flow (``lockbox.drivers``): the first round trip is the 16 KiB
superblock; then each valid slot, newest first, is unlocked and its commit
opened. docs/FORMAT.md §3, §6 and §11 "Opening".
"""

from __future__ import annotations

import hashlib

from .cache import PageCache
from .codec.base import Codec as CodecBackend
from .crypto.base import CryptoBackend
from .drivers import Flow, Read
from .errors import FormatError, IntegrityError, LimitExceededError, WrongKeyError
from .format.commit import decode_commit
from .format.constants import (
    MAX_KEYDIR_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    SUPERBLOCK_SIZE,
    FrameKind,
)
from .format.keydir import KeySlot, decode_keydir
from .format.page import decode_keydir_page
from .format.superblock import ExternalKeydir, Slot, decode_superblock
from .frames import FrameOpener
from .keys import Identity, unlock
from .ranges import ByteRange
from .view import ArchiveView

__all__ = ["open_flow"]


def _fetch_keydir_flow(slot: Slot) -> Flow[bytes]:
    kd = slot.keydir
    if isinstance(kd, bytes):
        return kd
    assert isinstance(kd, ExternalKeydir)
    if kd.keydir_size > MAX_KEYDIR_SIZE:
        raise LimitExceededError("external key directory larger than the limit")
    blobs = yield Read((ByteRange(kd.page_offset, PAGE_HEADER_SIZE + 16 + kd.keydir_size),))
    _, archive_id, data = decode_keydir_page(blobs[0])
    if archive_id != slot.archive_id or len(data) != kd.keydir_size:
        raise IntegrityError("external key directory page does not match its pointer")
    if hashlib.sha256(data).digest() != kd.sha256:
        raise IntegrityError("external key directory does not match its checksum")
    return data


def open_flow(crypto: CryptoBackend, codec: CodecBackend, *, password: str | bytes | None,
              identity: Identity | None, cache: PageCache,
              known_key: tuple[bytes, bytes] | None = None) -> Flow[ArchiveView]:
    """First round trip: the 16 KiB superblock. Then unlock locally and open the
    newest slot whose commit authenticates (falling back to the other slot)."""
    blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
    slots = decode_superblock(blobs[0])
    unlocked: dict[bytes, tuple[bytes, list[KeySlot], int]] = {}
    last_error: Exception | None = None
    wrong_key: WrongKeyError | None = None
    for slot in slots:
        try:
            keydir = yield from _fetch_keydir_flow(slot)
            if keydir not in unlocked:
                key_slots = decode_keydir(keydir)
                if known_key is not None and known_key[0] == slot.archive_id:
                    content_key, slot_id = known_key[1], 0
                else:
                    content_key, slot_id = unlock(crypto, slot.archive_id, key_slots,
                                                  password=password, identity=identity)
                unlocked[keydir] = (content_key, key_slots, slot_id)
            content_key, key_slots, slot_id = unlocked[keydir]
            opener = FrameOpener(crypto, codec, slot.archive_id, content_key)
            header, payload = opener.open_at(slot.commit_frame, slot.commit_frame_offset,
                                             FrameKind.COMMIT)
            if header.frame_size != len(slot.commit_frame):
                raise FormatError("commit frame size does not match its slot")
            commit = decode_commit(bytes(payload))
            if not commit.generation == header.generation == slot.generation:
                raise IntegrityError("commit record generation does not match its slot")
            if commit.archive_end < SUPERBLOCK_SIZE or commit.archive_end % PAGE_UNIT:
                raise FormatError("commit record: archive end is out of place")
            if commit.keydir_sha256 != hashlib.sha256(keydir).digest():
                raise IntegrityError("key directory was modified outside a commit")
            return ArchiveView(opener, slot, commit, key_slots, slot_id, keydir, cache)
        except WrongKeyError as exc:
            # The newest slot's keys do not open it. Try the older slot only if its key
            # directory differs (the newest may have been damaged or tampered with).
            older = [s for s in slots if s.generation < slot.generation]
            if not older or older[0].keydir == slot.keydir:
                raise
            wrong_key = exc
        except (FormatError, IntegrityError) as exc:
            last_error = exc
    if wrong_key is not None:
        raise wrong_key
    assert last_error is not None
    raise last_error
