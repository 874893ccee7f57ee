"""Page headers: scanner-safe framing of the allocation unit. docs/FORMAT.md §4."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ....errors import FormatError, IntegrityError, LimitExceededError, TruncatedError
from .constants import MAX_PAGE_SIZE, PAGE_HEADER_SIZE, PAGE_MAGIC, PAGE_UNIT, PageKind

__all__ = ["PageHeader", "encode_page_header", "decode_page_header", "PAGE_VERSION",
           "encode_keydir_page", "decode_keydir_page"]

PAGE_VERSION = 1
_HEADER = struct.Struct("<4sBBHIIQI")  # 28 bytes, then crc32
_CRC = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class PageHeader:
    kind: PageKind
    page_size: int  # whole page, header included; a multiple of PAGE_UNIT
    used_size: int  # header + content; the rest of the page is zero
    generation: int


def encode_page_header(h: PageHeader) -> bytes:
    head = _HEADER.pack(PAGE_MAGIC, PAGE_VERSION, int(h.kind), 0, h.page_size, h.used_size,
                        h.generation, 0)
    return head + _CRC.pack(zlib.crc32(head))


def decode_page_header(buf: bytes | memoryview) -> PageHeader:
    if len(buf) < PAGE_HEADER_SIZE:
        raise TruncatedError("page header: truncated")
    magic, version, kind, flags, size, used, gen, reserved = _HEADER.unpack_from(buf, 0)
    if magic != PAGE_MAGIC:
        raise FormatError("page header: bad magic")
    (crc,) = _CRC.unpack_from(buf, 28)
    if crc != zlib.crc32(bytes(buf[:28])):
        raise IntegrityError("page header: checksum mismatch")
    if version != PAGE_VERSION:
        from ....errors import UnsupportedVersionError

        raise UnsupportedVersionError(f"page version {version} is not supported")
    if flags or reserved:
        raise FormatError("page header: reserved bits set")
    try:
        pkind = PageKind(kind)
    except ValueError:
        raise FormatError(f"page header: unknown kind {kind}") from None
    if size % PAGE_UNIT or size == 0:
        raise FormatError("page header: size is not a multiple of the page unit")
    if size > MAX_PAGE_SIZE:
        raise LimitExceededError("page header: size over the limit")
    if not PAGE_HEADER_SIZE <= used <= size:
        raise FormatError("page header: used size out of range")
    return PageHeader(pkind, size, used, gen)


def encode_keydir_page(archive_id: bytes, keydir: bytes, generation: int) -> bytes:
    """A whole KEYDIR page: header, archive id, key directory, zero padding.

    Written at creation and whenever the key slots change: the slots' copy is
    authoritative, this one lets a recovery scanner unlock an archive whose
    superblock is lost (and holds the key directory when it is too large for a
    slot)."""
    used = PAGE_HEADER_SIZE + len(archive_id) + len(keydir)
    size = -(-used // PAGE_UNIT) * PAGE_UNIT
    if size > MAX_PAGE_SIZE:
        raise LimitExceededError("key directory too large for one page")
    header = encode_page_header(PageHeader(PageKind.KEYDIR, size, used, generation))
    return header + archive_id + keydir + b"\x00" * (size - used)


def decode_keydir_page(buf: bytes | memoryview) -> tuple[PageHeader, bytes, bytes]:
    """(header, archive id, key directory bytes) of a KEYDIR page."""
    header = decode_page_header(buf)
    if header.kind != PageKind.KEYDIR:
        raise FormatError("not a key-directory page")
    if header.used_size < PAGE_HEADER_SIZE + 16:
        raise FormatError("key-directory page too short")
    if len(buf) < header.used_size:
        raise TruncatedError("key-directory page is truncated")
    archive_id = bytes(buf[PAGE_HEADER_SIZE:PAGE_HEADER_SIZE + 16])
    return header, archive_id, bytes(buf[PAGE_HEADER_SIZE + 16:header.used_size])
