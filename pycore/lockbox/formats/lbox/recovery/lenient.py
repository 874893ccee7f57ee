"""Lenient parsing for recovery: the strict wire decoders (``wire/superblock.py``,
``wire/page.py``, ``wire/frame.py``) with their errors caught, so that a damaged
structure is skipped (or, for a superblock slot, read as it is) instead of stopping
the scan. Nothing parsed here is trusted: what a slot or page holds must still unlock
and authenticate.
"""

from __future__ import annotations

import re

from ....errors import LockboxError, UnsupportedVersionError
from ..wire.constants import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    PAGE_HEADER_SIZE,
    PAGE_MAGIC,
    READABLE_FORMAT_VERSIONS,
    SLOT_COUNT,
    SLOT_HEADER_SIZE,
    SLOT_MAGIC,
    SLOT_SIZE,
    TAG_SIZE,
    FrameKind,
)
from ..wire.frame import FrameHeader, decode_frame_header, encode_frame_header
from ..wire.page import PageHeader, decode_keydir_page, decode_page_header

# The slot header layout, from the wire module that owns it: a damaged slot is read
# field by field, past the checks its strict decoder would stop at.
from ..wire.superblock import EXTERNAL_POINTER as _EXTERNAL_POINTER
from ..wire.superblock import (
    FLAG_KEYDIR_EXTERNAL,
    SLOT_CAPACITY,
    ExternalKeydir,
    Slot,
    decode_slot,
    slot_offset,
)
from ..wire.superblock import SLOT_HEADER as _SLOT_HEADER

__all__ = ["read_slots", "parse_slot", "page_header_at", "keydir_page", "frame_header_at",
           "FRAME_CANDIDATE", "CANDIDATE_SIZE"]

# -- superblock slots (docs/FORMAT.md §3) ----------------------------------------------


def read_slots(head: bytes) -> list[Slot]:
    """The slots of the superblock bytes ``head`` (cut short where the file ends) that
    may still hold something, newest generation first. Raises UnsupportedVersionError
    when either slot is intact but of a newer format (§3 step 3, §20)."""
    slots = []
    for no in range(SLOT_COUNT):
        start = slot_offset(no)
        slot = parse_slot(head[start:start + SLOT_SIZE], no)
        if slot is not None:
            slots.append(slot)
    slots.sort(key=lambda s: s.generation, reverse=True)
    return slots


def parse_slot(region: bytes, slot_no: int) -> Slot | None:
    """One slot region in the order of §3: the magic decides first (no magic: an empty
    slot, None); then the strict decoder; an intact slot of an unknown version raises
    its UnsupportedVersionError; any other failure (a torn write, a flipped bit, a cut
    file) is read leniently by :func:`damaged_slot`."""
    if region[:len(SLOT_MAGIC)] != SLOT_MAGIC:
        return None
    try:
        return decode_slot(region, slot_no)
    except UnsupportedVersionError:
        raise  # an intact slot of a newer format: not ours to rebuild (§20)
    except LockboxError:
        return damaged_slot(region, slot_no)


def damaged_slot(region: bytes, slot_no: int) -> Slot | None:
    """A slot image whose strict decoding failed, read as it is: its CRC, slot number,
    reserved bits and generation are not checked (the key wrap and the commit frame's
    AEAD decide). None when its framing does not hold together (no magic, an unknown
    version, contents larger than the slot or past the region, a bad pointer)."""
    if len(region) < SLOT_HEADER_SIZE or region[:len(SLOT_MAGIC)] != SLOT_MAGIC:
        return None
    _, version, _, flags, _, archive_id, gen, k, c = _SLOT_HEADER.unpack_from(region, 0)
    if version not in READABLE_FORMAT_VERSIONS or k + c > SLOT_CAPACITY:
        return None
    end = SLOT_HEADER_SIZE + k + c
    if len(region) < end:
        return None
    raw = bytes(region[SLOT_HEADER_SIZE:SLOT_HEADER_SIZE + k])
    keydir: bytes | ExternalKeydir = raw
    if flags & FLAG_KEYDIR_EXTERNAL:
        if k != _EXTERNAL_POINTER.size:
            return None
        keydir = ExternalKeydir(*_EXTERNAL_POINTER.unpack(raw))
    return Slot(slot_no, bytes(archive_id), gen, keydir,
                bytes(region[SLOT_HEADER_SIZE + k:end]), version)


# -- pages (§4) ------------------------------------------------------------------------


def page_header_at(buf: bytes, j: int) -> PageHeader | None:
    """The page header at ``buf[j:]`` if there is one that decodes (CRC included)."""
    if buf[j:j + len(PAGE_MAGIC)] != PAGE_MAGIC:
        return None
    try:
        return decode_page_header(buf[j:j + PAGE_HEADER_SIZE])
    except LockboxError:
        return None


def keydir_page(buf: bytes) -> tuple[bytes, bytes] | None:
    """(archive id, key directory) of the KEYDIR page at the start of ``buf``, or None."""
    try:
        _, archive_id, keydir = decode_keydir_page(buf)
    except LockboxError:
        return None
    return archive_id, keydir


# -- frames (§5) -----------------------------------------------------------------------

# A frame candidate: the first bytes of a frame header as the encoder writes them for
# every kind a page may hold (COMMIT frames live only in slots): the magic, the kind,
# zero flags and reserved bits. Searched for by the regex engine, in C.
CANDIDATE_SIZE = 8


def _candidate_pattern() -> re.Pattern[bytes]:
    kinds = [k for k in FrameKind if k != FrameKind.COMMIT]
    heads = [encode_frame_header(FrameHeader(k, TAG_SIZE, 0, bytes(16), 0))[:CANDIDATE_SIZE]
             for k in kinds]
    cut = len(FRAME_MAGIC) + 1  # the kind's byte, after the magic
    assert all(h[:len(FRAME_MAGIC)] == FRAME_MAGIC and h[cut:] == heads[0][cut:]
               for h in heads)
    kind_class = b"[" + b"".join(re.escape(bytes([k])) for k in kinds) + b"]"
    return re.compile(re.escape(FRAME_MAGIC) + kind_class + re.escape(heads[0][cut:]))


FRAME_CANDIDATE = _candidate_pattern()


def frame_header_at(buf: bytes | memoryview, i: int) -> FrameHeader | None:
    """The frame header at ``buf[i:]`` if it decodes (CRC, kind, a plausible sealed
    size); None for anything else (a chance match, a damaged header)."""
    try:
        return decode_frame_header(buf[i:i + FRAME_HEADER_SIZE])
    except LockboxError:
        return None
