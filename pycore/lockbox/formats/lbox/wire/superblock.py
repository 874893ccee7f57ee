"""The superblock: two 8 KiB commit slots at offsets 0 and 8192.

Each slot holds everything a reader needs to unlock and to find the latest
commit: the archive id, the generation, the key directory (inline, or a
pointer to a key-directory page) and the sealed commit record. Writers write
generation ``g`` into slot ``g % 2``, so a torn slot write can only damage the
slot being replaced, never the previous commit. docs/FORMAT.md §3.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ....errors import (
    FormatError,
    IntegrityError,
    LockboxError,
    TruncatedError,
    UnsupportedVersionError,
)
from .constants import (
    FORMAT_VERSION,
    READABLE_FORMAT_VERSIONS,
    SLOT_COUNT,
    SLOT_HEADER_SIZE,
    SLOT_MAGIC,
    SLOT_SIZE,
)

__all__ = ["ExternalKeydir", "Slot", "keydir_fits_inline", "COMMIT_RESERVE", "encode_slot",
           "decode_slot", "decode_superblock", "slot_offset", "commit_frame_offset",
           "SLOT_CAPACITY", "SLOT_HEADER", "EXTERNAL_POINTER"]

SLOT_HEADER = struct.Struct("<8sHBBI16sQII")  # the 48-byte slot header (§3)
EXTERNAL_POINTER = struct.Struct("<QI32s")  # the 44-byte external key-directory pointer
_CRC = struct.Struct("<I")
FLAG_KEYDIR_EXTERNAL = 0x01
# Bytes available to keydir field + commit frame in one slot.
SLOT_CAPACITY = SLOT_SIZE - SLOT_HEADER_SIZE - 4
# Room a writer keeps for the commit frame (record + frame overhead) beside an
# inline key directory; a larger key directory is stored in its KEYDIR page.
COMMIT_RESERVE = 2048


def keydir_fits_inline(keydir_size: int) -> bool:
    return keydir_size + COMMIT_RESERVE <= SLOT_CAPACITY


@dataclass(frozen=True, slots=True)
class ExternalKeydir:
    """The key directory lives in a KEYDIR page at ``page_offset``."""

    page_offset: int
    keydir_size: int
    sha256: bytes


@dataclass(frozen=True, slots=True)
class Slot:
    slot_no: int
    archive_id: bytes
    generation: int
    keydir: bytes | ExternalKeydir
    commit_frame: bytes
    # The archive format version of this slot: writers write FORMAT_VERSION (2); a slot
    # written before key commitments (docs/FORMAT.md §20) decodes as version 1.
    version: int = FORMAT_VERSION

    @property
    def commit_frame_offset(self) -> int:
        return commit_frame_offset(self.slot_no, self.keydir)


def slot_offset(slot_no: int) -> int:
    return slot_no * SLOT_SIZE


def _keydir_field(keydir: bytes | ExternalKeydir) -> bytes:
    if isinstance(keydir, ExternalKeydir):
        return EXTERNAL_POINTER.pack(keydir.page_offset, keydir.keydir_size, keydir.sha256)
    return keydir


def commit_frame_offset(slot_no: int, keydir: bytes | ExternalKeydir) -> int:
    return slot_offset(slot_no) + SLOT_HEADER_SIZE + len(_keydir_field(keydir))


def encode_slot(slot: Slot) -> bytes:
    """The full 8192-byte image of a slot (zero padded)."""
    field = _keydir_field(slot.keydir)
    flags = FLAG_KEYDIR_EXTERNAL if isinstance(slot.keydir, ExternalKeydir) else 0
    if len(field) + len(slot.commit_frame) > SLOT_CAPACITY:
        raise ValueError("key directory and commit record do not fit in a slot")
    if slot.version not in READABLE_FORMAT_VERSIONS:
        raise ValueError(f"slot version {slot.version}")
    head = SLOT_HEADER.pack(SLOT_MAGIC, slot.version, slot.slot_no, flags, 0, slot.archive_id,
                      slot.generation, len(field), len(slot.commit_frame))
    body = head + field + slot.commit_frame
    image = body + _CRC.pack(zlib.crc32(body))
    return image + b"\x00" * (SLOT_SIZE - len(image))


def decode_slot(buf: bytes | memoryview, slot_no: int) -> Slot:
    """Decode one slot image. Raises FormatError (bad magic), UnsupportedVersionError,
    TruncatedError or IntegrityError (checksum: e.g. a torn write)."""
    if len(buf) < SLOT_HEADER_SIZE:
        raise TruncatedError(f"slot {slot_no}: truncated")
    magic, version, no, flags, reserved, archive_id, gen, kd_size, c_size = SLOT_HEADER.unpack_from(
        buf, 0)
    if magic != SLOT_MAGIC:
        raise FormatError(f"slot {slot_no}: not a lockbox slot (bad magic)")
    # The slot framing (this header, the two sizes, the CRC after the contents) is
    # the same in every format version, so the CRC is checked before the version:
    # a damaged version field is damage, a different intact one is a newer format.
    if kd_size + c_size > SLOT_CAPACITY:
        raise IntegrityError(f"slot {slot_no}: contents larger than the slot (damaged)")
    end = SLOT_HEADER_SIZE + kd_size + c_size
    if len(buf) < end + 4:
        raise TruncatedError(f"slot {slot_no}: truncated")
    (crc,) = _CRC.unpack_from(buf, end)
    if crc != zlib.crc32(bytes(buf[:end])):
        raise IntegrityError(f"slot {slot_no}: checksum mismatch (torn or damaged)")
    if version not in READABLE_FORMAT_VERSIONS:
        raise UnsupportedVersionError(
            f"archive format version {version} is not supported (this reader knows "
            f"versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))})")
    if no != slot_no or reserved or flags & ~FLAG_KEYDIR_EXTERNAL:
        raise FormatError(f"slot {slot_no}: bad slot number or reserved bits")
    if gen == 0:
        raise FormatError(f"slot {slot_no}: generation 0")
    if gen % 2 != slot_no:
        raise FormatError(f"slot {slot_no}: generation {gen} belongs in the other slot")
    field = bytes(buf[SLOT_HEADER_SIZE : SLOT_HEADER_SIZE + kd_size])
    keydir: bytes | ExternalKeydir
    if flags & FLAG_KEYDIR_EXTERNAL:
        if kd_size != EXTERNAL_POINTER.size:
            raise FormatError(f"slot {slot_no}: bad external key directory pointer")
        off, size, digest = EXTERNAL_POINTER.unpack(field)
        keydir = ExternalKeydir(off, size, digest)
    else:
        keydir = field
    return Slot(slot_no, bytes(archive_id), gen, keydir,
                bytes(buf[SLOT_HEADER_SIZE + kd_size : end]), version)


def decode_superblock(buf: bytes | memoryview) -> list[Slot]:
    """Decode both slots; return the valid ones, newest generation first.

    When no slot is valid, raise the most telling error: UnsupportedVersionError
    (a newer format), TruncatedError (a slot with the magic is cut short),
    IntegrityError (a slot with the magic fails its checksum), and FormatError
    "not a lockbox archive" when neither slot has the magic.
    """
    slots: list[Slot] = []
    errors: list[LockboxError] = []
    for no in range(SLOT_COUNT):
        start = slot_offset(no)
        region = memoryview(buf)[start : start + SLOT_SIZE]
        if len(region) < len(SLOT_MAGIC) or bytes(region[: len(SLOT_MAGIC)]) != SLOT_MAGIC:
            continue  # no slot here (never written, or not a lockbox file)
        try:
            slots.append(decode_slot(region, no))
        except (FormatError, IntegrityError) as e:
            errors.append(e)
    for err in errors:
        if isinstance(err, UnsupportedVersionError):
            # A newer writer's slot: never fall back silently to an older slot (this
            # writer would then overwrite the newer commit).
            raise err
    if slots:
        if len({s.archive_id for s in slots}) > 1:
            raise IntegrityError("superblock: the two slots belong to different archives")
        return sorted(slots, key=lambda s: s.generation, reverse=True)
    for kind in (UnsupportedVersionError, TruncatedError, IntegrityError, FormatError):
        for err in errors:
            if isinstance(err, kind):
                raise err
    raise FormatError("not a lockbox archive")
