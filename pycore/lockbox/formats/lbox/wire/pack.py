"""PACK payloads: the one-chunk files of a pack, sealed together in one frame.
docs/FORMAT.md §10 "Packs" (format version 3).

A pack is ``count:uvarint  member_size:uvarint{count}  member{count}``; each member
is a whole data chunk (``wire.chunk``: chunk 0 of a one-chunk file, its metadata
present). A packed TOC entry (layout 2) names the PACK frame by its ref and the
member by its number. The payload is authenticated content, so anything malformed
in it is a :class:`~lockbox.errors.FormatError` (exactly that class: a cut size
list is malformed, not a truncated archive); a member number the pack does not
have is an :class:`~lockbox.errors.IntegrityError` (two authenticated things
disagree).
"""

from __future__ import annotations

from collections.abc import Sequence

from ....errors import FormatError, IntegrityError
from .constants import MAX_PACK_MEMBERS, MAX_PLAIN_CHUNK_PAYLOAD
from .encoding import uvarint, uvarint_at

__all__ = ["encode_pack", "pack_member_spans", "pack_member", "member_at", "decode_pack"]


def encode_pack(members: Sequence[bytes | memoryview]) -> bytes:
    """The PACK payload of ``members`` (each an encoded data chunk, in member-number
    order). ValueError for 0 or more than 4096 members, an empty or oversized member,
    or a payload over the frame's limit (``MAX_PLAIN_CHUNK_PAYLOAD``)."""
    count = len(members)
    if not 1 <= count <= MAX_PACK_MEMBERS:
        raise ValueError(f"a pack holds 1 to {MAX_PACK_MEMBERS} members, not {count}")
    sizes = [len(m) for m in members]
    if not all(1 <= s <= MAX_PLAIN_CHUNK_PAYLOAD for s in sizes):
        raise ValueError("a pack member is empty or larger than a data chunk may be")
    head = b"".join([uvarint(count), *map(uvarint, sizes)])
    if len(head) + sum(sizes) > MAX_PLAIN_CHUNK_PAYLOAD:
        raise ValueError("pack payload over the PACK frame's limit")
    return b"".join([head, *members])


def pack_member_spans(buf: bytes | memoryview) -> list[tuple[int, int]]:
    """``(start, end)`` in ``buf`` of every member of the PACK payload ``buf``, after
    every check of the header (FormatError): ``count`` 1..4096, each ``member_size``
    1..MAX_PLAIN_CHUNK_PAYLOAD, canonical varints, and the sizes summing to exactly
    the bytes after the size list. The members themselves are not decoded."""
    end = len(buf)
    pos = 0
    try:
        count, pos = uvarint_at(buf, 0)
        if not 1 <= count <= MAX_PACK_MEMBERS:
            raise FormatError(f"pack: {count} members (a pack has 1 to {MAX_PACK_MEMBERS})")
        sizes = []
        for _ in range(count):
            size, pos = uvarint_at(buf, pos)
            if not 1 <= size <= MAX_PLAIN_CHUNK_PAYLOAD:
                raise FormatError(f"pack: a member of {size} bytes (1 to "
                                  f"{MAX_PLAIN_CHUNK_PAYLOAD} allowed)")
            sizes.append(size)
    except IndexError:
        raise FormatError("pack: its header is cut short") from None
    except ValueError:
        raise FormatError("pack: a non-canonical or overlong varint in its header") from None
    if sum(sizes) != end - pos:
        raise FormatError(f"pack: its members take {sum(sizes)} bytes, {end - pos} follow "
                          "the size list")
    spans = []
    for size in sizes:
        spans.append((pos, pos + size))
        pos += size
    return spans


def pack_member(buf: bytes | memoryview, member_no: int) -> memoryview:
    """The bytes of member ``member_no`` (an encoded data chunk, still to be decoded
    with ``decode_chunk``). The header's checks first (FormatError, as
    :func:`pack_member_spans`); then a ``member_no`` the pack does not have is an
    IntegrityError."""
    if member_no < 0:
        raise ValueError("member numbers are not negative")
    return member_at(buf, pack_member_spans(buf), member_no)


def member_at(buf: bytes | memoryview, spans: Sequence[tuple[int, int]],
              member_no: int) -> memoryview:
    """Member ``member_no`` of a pack whose header gave ``spans``
    (:func:`pack_member_spans`): a member the pack does not have is an IntegrityError
    (the entry and the pack disagree)."""
    if member_no >= len(spans):
        raise IntegrityError(f"pack: no member {member_no} (the pack has {len(spans)})")
    start, end = spans[member_no]
    return memoryview(buf)[start:end]


def decode_pack(buf: bytes | memoryview) -> list[memoryview]:
    """Every member's bytes, in member-number order (the checks of
    :func:`pack_member_spans`)."""
    view = memoryview(buf)
    return [view[start:end] for start, end in pack_member_spans(buf)]
