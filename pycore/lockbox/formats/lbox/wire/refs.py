"""Ref: a pointer to one sealed frame, pinned to its exact bytes."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ....errors import FormatError
from ....ranges import ByteRange
from .constants import FRAME_HEADER_SIZE, MAX_FRAME_SEALED_SIZE, TAG_SIZE
from .encoding import Builder, Reader

__all__ = ["Ref", "encode_ref", "decode_ref"]

_MAX_FRAME_TOTAL = FRAME_HEADER_SIZE + MAX_FRAME_SEALED_SIZE


@dataclass(frozen=True, slots=True, init=False)
class Ref:
    """``frame_offset`` and ``frame_size`` locate the whole frame (header
    included) so a reader fetches exactly it; ``tag`` is the frame's 16-byte
    Poly1305 tag, which pins the parent to that exact ciphertext."""

    frame_offset: int
    frame_size: int
    tag: bytes

    def __init__(self, frame_offset: int, frame_size: int, tag: bytes) -> None:
        # The slots' own setters: the frozen dataclass __init__'s object.__setattr__ by
        # name, at a third of the cost (one Ref per frame written or listed).
        s_offset, s_size, s_tag = _REF_SETTERS
        s_offset(self, frame_offset)
        s_size(self, frame_size)
        s_tag(self, tag)

    @property
    def byte_range(self) -> ByteRange:
        return ByteRange(self.frame_offset, self.frame_size)


_REF_SETTERS = tuple(Ref.__dict__[f.name].__set__ for f in fields(Ref))


def encode_ref(b: Builder, ref: Ref) -> None:
    b.uvarint(ref.frame_offset).uvarint(ref.frame_size).raw(ref.tag)


def decode_ref(r: Reader) -> Ref:
    offset = r.uvarint()
    size = r.uvarint(_MAX_FRAME_TOTAL)
    if size < FRAME_HEADER_SIZE + TAG_SIZE:
        raise FormatError(f"{r.what}: frame size {size} below the minimum")
    return Ref(offset, size, r.raw(TAG_SIZE))
