"""Primitive encodings shared by every structure: fixed-width little-endian
integers, LEB128 varints (canonical, at most 10 bytes), zigzag varints and
length-prefixed byte strings. Every read is bounds-checked and every length is
checked against a caller-supplied limit *before* anything is sliced, so a
hostile length can never cause an allocation.
"""

from __future__ import annotations

import struct

from ....errors import FormatError, LimitExceededError, TruncatedError

__all__ = ["Reader", "Builder", "uvarint", "uvarint_at", "svarint", "zigzag"]

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


_ONE_BYTE = [bytes([i]) for i in range(128)]


def uvarint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0 <= value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if 0 <= value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    if 0 <= value < 0x10000000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80,
                      ((value >> 14) & 0x7F) | 0x80, value >> 21))
    if value < 0:
        raise ValueError("uvarint of a negative number")
    if value >= 1 << 64:
        raise ValueError("uvarint above 2**64-1")
    # 5..10 bytes (e.g. nanosecond times): the low 28 bits as four continued bytes, then
    # the rest (no per-byte loop: this is on every entry's and chunk's mtime)
    low = value & 0xFFFFFFF
    if 1 << 56 <= value < 1 << 63:  # nanosecond times of these decades: nine bytes
        mid = (value >> 28) & 0xFFFFFFF
        return bytes(((low & 0x7F) | 0x80, ((low >> 7) & 0x7F) | 0x80,
                      ((low >> 14) & 0x7F) | 0x80, (low >> 21) | 0x80,
                      (mid & 0x7F) | 0x80, ((mid >> 7) & 0x7F) | 0x80,
                      ((mid >> 14) & 0x7F) | 0x80, (mid >> 21) | 0x80, value >> 56))
    return bytes(((low & 0x7F) | 0x80, ((low >> 7) & 0x7F) | 0x80,
                  ((low >> 14) & 0x7F) | 0x80, (low >> 21) | 0x80)) + uvarint(value >> 28)


def zigzag(value: int) -> int:
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError("svarint out of the signed 64-bit range")
    return (value << 1) ^ (value >> 63)


def svarint(value: int) -> bytes:
    if -(1 << 63) <= value < 1 << 63:
        return uvarint((value << 1) ^ (value >> 63))
    return uvarint(zigzag(value))  # raises


class Builder:
    """Appends encoded fields to a bytearray."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> Builder:
        self.buf.append(v)
        return self

    def u16(self, v: int) -> Builder:
        self.buf += _U16.pack(v)
        return self

    def u32(self, v: int) -> Builder:
        self.buf += _U32.pack(v)
        return self

    def u64(self, v: int) -> Builder:
        self.buf += _U64.pack(v)
        return self

    def uvarint(self, v: int) -> Builder:
        self.buf += uvarint(v)
        return self

    def svarint(self, v: int) -> Builder:
        self.buf += svarint(v)
        return self

    def raw(self, b: bytes | bytearray | memoryview) -> Builder:
        self.buf += b
        return self

    def blob(self, b: bytes | bytearray | memoryview) -> Builder:
        self.buf += uvarint(len(b))
        self.buf += b
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buf)


def uvarint_at(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the canonical LEB128 varint at ``pos``; IndexError when
    cut, ValueError when not canonical or over 64 bits (the fast path's signal to let
    :class:`Reader` report it)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    c = buf[pos + 1]
    if c < 0x80:  # two bytes
        if c == 0:
            raise ValueError("non-canonical varint")
        return (b & 0x7F) | (c << 7), pos + 2
    d = buf[pos + 2]
    if d < 0x80:  # three bytes (chunk sizes, offsets)
        if d == 0:
            raise ValueError("non-canonical varint")
        return (b & 0x7F) | ((c & 0x7F) << 7) | (d << 14), pos + 3
    if len(buf) >= pos + 9:
        last = buf[pos + 8]
        word = int.from_bytes(buf[pos:pos + 8], "little")
        if 0 < last < 0x80 and word & _CONTINUED8 == _CONTINUED8:
            # nine bytes (nanosecond times): squeeze the 7-bit groups without a loop
            word &= 0x7F7F7F7F7F7F7F7F
            word = (word & 0x007F007F007F007F) | ((word & 0x7F007F007F007F00) >> 1)
            word = (word & 0x00003FFF00003FFF) | ((word & 0x3FFF00003FFF0000) >> 2)
            word = (word & 0x000000000FFFFFFF) | ((word & 0x0FFFFFFF00000000) >> 4)
            return word | (last << 56), pos + 9
    result = (b & 0x7F) | ((c & 0x7F) << 7)
    shift = 14
    pos += 2
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 or result >> 64:
                raise ValueError("non-canonical or over 64 bits")
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


_CONTINUED8 = 0x8080808080808080


class Reader:
    """Bounds-checked cursor over a buffer; every failure is a FormatError."""

    __slots__ = ("buf", "end", "pos", "what")

    def __init__(self, buf: bytes | memoryview, what: str = "structure") -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.what = what

    def _need(self, n: int) -> int:
        pos = self.pos
        if n > self.end - pos:
            raise TruncatedError(f"{self.what}: truncated (needs {n} bytes at {pos})")
        self.pos = pos + n
        return pos

    def u8(self) -> int:
        pos = self._need(1)
        return self.buf[pos]

    def u16(self) -> int:
        pos = self._need(2)
        return _U16.unpack_from(self.buf, pos)[0]

    def u32(self) -> int:
        pos = self._need(4)
        return _U32.unpack_from(self.buf, pos)[0]

    def u64(self) -> int:
        pos = self._need(8)
        return _U64.unpack_from(self.buf, pos)[0]

    def raw(self, n: int) -> bytes:
        pos = self._need(n)
        return bytes(self.buf[pos : pos + n])

    def view(self, n: int) -> memoryview:
        pos = self._need(n)
        return memoryview(self.buf)[pos : pos + n]

    def uvarint(self, limit: int = (1 << 64) - 1) -> int:
        pos = self.pos
        if pos < self.end:
            first = self.buf[pos]
            if first < 0x80:  # fast path: one-byte varint
                self.pos = pos + 1
                if first > limit:
                    raise LimitExceededError(
                        f"{self.what}: value {first} exceeds the limit {limit}")
                return first
        result = 0
        shift = 0
        buf = self.buf
        for i in range(10):
            if self.pos >= self.end:
                raise TruncatedError(f"{self.what}: truncated varint")
            byte = buf[self.pos]
            self.pos += 1
            if i == 9 and byte > 1:
                raise FormatError(f"{self.what}: varint overflows 64 bits")
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise FormatError(f"{self.what}: non-canonical varint")
                if result > limit:
                    raise LimitExceededError(
                        f"{self.what}: value {result} exceeds the limit {limit}"
                    )
                return result
            shift += 7
        raise FormatError(f"{self.what}: varint longer than 10 bytes")

    def svarint(self) -> int:
        z = self.uvarint()
        return (z >> 1) ^ -(z & 1)

    def blob(self, limit: int) -> bytes:
        n = self.uvarint(limit)
        return self.raw(n)

    def blob_view(self, limit: int) -> memoryview:
        n = self.uvarint(limit)
        return self.view(n)

    def remaining(self) -> int:
        return self.end - self.pos

    def done(self) -> None:
        if self.pos != self.end:
            raise FormatError(f"{self.what}: {self.end - self.pos} unexpected trailing bytes")
