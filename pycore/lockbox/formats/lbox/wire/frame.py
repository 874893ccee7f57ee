"""Sealed frames: the unit of encryption.

A frame is a 48-byte cleartext header followed by ``sealed_size`` bytes of
ChaCha20-Poly1305 output. The header carries only what a scanner needs to
find, authenticate and order the frame; everything else is inside the seal.
See docs/FORMAT.md §5.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields

from ....errors import FormatError, IntegrityError, LimitExceededError, TruncatedError
from .constants import (
    AAD_FRAME,
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    MAX_FRAME_SEALED_SIZE,
    TAG_SIZE,
    FrameKind,
)

__all__ = ["FrameHeader", "decode_frame_header", "encode_frame_header", "frame_nonce",
           "frame_aad"]

_HEADER = struct.Struct("<4sBBHIQ16sQ")  # 44 bytes, then crc32
_CRC = struct.Struct("<I")
_NONCE_PAD = b"\x00" * 4


@dataclass(frozen=True, slots=True, init=False)
class FrameHeader:
    kind: FrameKind
    sealed_size: int
    generation: int
    session_id: bytes
    counter: int

    def __init__(self, kind: FrameKind, sealed_size: int, generation: int,
                 session_id: bytes, counter: int) -> None:
        # The slots' own setters (see Ref): one header per frame sealed or opened.
        s_kind, s_size, s_gen, s_session, s_counter = _HEADER_SETTERS
        s_kind(self, kind)
        s_size(self, sealed_size)
        s_gen(self, generation)
        s_session(self, session_id)
        s_counter(self, counter)

    @property
    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.sealed_size


_HEADER_SETTERS = tuple(FrameHeader.__dict__[f.name].__set__ for f in fields(FrameHeader))


def encode_frame_header(h: FrameHeader) -> bytes:
    head = _HEADER.pack(FRAME_MAGIC, int(h.kind), 0, 0, h.sealed_size, h.generation,
                        h.session_id, h.counter)
    return head + _CRC.pack(zlib.crc32(head))


def decode_frame_header(buf: bytes | memoryview) -> FrameHeader:
    if len(buf) < FRAME_HEADER_SIZE:
        raise TruncatedError("frame header: truncated")
    magic, kind, flags, reserved, sealed, gen, session, counter = _HEADER.unpack_from(buf, 0)
    if magic != FRAME_MAGIC:
        raise FormatError("frame header: bad magic")
    (crc,) = _CRC.unpack_from(buf, 44)
    if crc != zlib.crc32(bytes(buf[:44])):
        raise IntegrityError("frame header: checksum mismatch")
    if flags or reserved:
        raise FormatError("frame header: reserved bits set")
    try:
        fkind = FrameKind(kind)
    except ValueError:
        raise FormatError(f"frame header: unknown kind {kind}") from None
    if sealed < TAG_SIZE:
        raise FormatError("frame header: sealed size below the tag size")
    if sealed > MAX_FRAME_SEALED_SIZE:
        raise LimitExceededError(f"frame header: sealed size {sealed} over the limit")
    return FrameHeader(fkind, sealed, gen, bytes(session), counter)


def frame_nonce(counter: int) -> bytes:
    """96-bit nonce: the session counter, little-endian, then four zero bytes."""
    return counter.to_bytes(8, "little") + _NONCE_PAD


def frame_aad(archive_id: bytes, header_bytes: bytes | memoryview, frame_offset: int) -> bytes:
    """AAD = label || archive id || first 44 header bytes || frame offset (u64 LE)."""
    return b"".join((AAD_FRAME, archive_id, bytes(header_bytes[:44]),
                     frame_offset.to_bytes(8, "little")))
