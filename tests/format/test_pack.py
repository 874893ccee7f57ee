"""PACK payloads (format version 3, docs/FORMAT.md §10 "Packs"): the header's checks,
member lookup, and the members as the data chunks they are."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, IntegrityError
from lockbox.formats.lbox.frames import PLAIN_LIMITS
from lockbox.formats.lbox.wire.chunk import ChunkHeader, ChunkMeta, decode_chunk, encode_chunk
from lockbox.formats.lbox.wire.constants import (
    MAX_PACK_MEMBERS,
    MAX_PLAIN_CHUNK_PAYLOAD,
    EntryType,
    FrameKind,
)
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.formats.lbox.wire.pack import decode_pack, encode_pack, pack_member, pack_member_spans

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, mutate


def member(i: int, data: bytes = b"hello") -> bytes:
    """Chunk 0 of a one-chunk file, its metadata present (what a pack holds)."""
    meta = ChunkMeta(EntryType.FILE, 0o644, 10 + i, len(data), bytes([i % 256]) * 32, 4096)
    return encode_chunk(ChunkHeader(bytes([i % 256]) * 16, 0, f"f{i}.txt", meta), data)


def raw_pack(count: int, sizes: list[int], body: bytes) -> bytes:
    return uvarint(count) + b"".join(map(uvarint, sizes)) + body


def exactly(cls: type[Exception], fn, *args) -> Exception:  # type: ignore[no-untyped-def]
    """``fn(*args)`` raises exactly ``cls`` (not a subclass such as TruncatedError)."""
    with pytest.raises(cls) as info:
        fn(*args)
    assert type(info.value) is cls, info.value
    return info.value


def test_frame_kind_and_limit() -> None:
    assert FrameKind.PACK == 7 and FrameKind(7) is FrameKind.PACK
    assert PLAIN_LIMITS[FrameKind.PACK] == MAX_PLAIN_CHUNK_PAYLOAD
    assert MAX_PACK_MEMBERS == 4096


def test_round_trip_and_layout() -> None:
    members = [member(0, b""), member(1, b"x" * 300), member(2)]
    buf = encode_pack(members)
    sizes = [len(m) for m in members]
    assert buf == uvarint(3) + b"".join(map(uvarint, sizes)) + b"".join(members)
    assert [bytes(m) for m in decode_pack(buf)] == members
    spans = pack_member_spans(buf)
    assert [buf[a:b] for a, b in spans] == members and spans[-1][1] == len(buf)
    for no, want in enumerate(members):
        got = pack_member(buf, no)
        assert isinstance(got, memoryview) and bytes(got) == want
        header, data = decode_chunk(got)
        assert header.chunk_no == 0 and header.meta is not None and header.meta.size == len(data)
    assert bytes(pack_member(memoryview(buf), 2)) == members[2]


def test_counts() -> None:
    exactly(FormatError, pack_member_spans, raw_pack(0, [], b""))  # count 0
    exactly(FormatError, pack_member_spans, raw_pack(4097, [1] * 4097, b"x" * 4097))
    exactly(FormatError, pack_member_spans, raw_pack(2 ** 40, [], b""))
    full = raw_pack(4096, [1] * 4096, b"x" * 4096)
    assert len(pack_member_spans(full)) == 4096
    assert bytes(pack_member(full, 4095)) == b"x"
    exactly(FormatError, pack_member_spans, b"")  # no count at all
    exactly(FormatError, pack_member_spans, raw_pack(3, [1, 1], b""))  # the size list is cut


def test_sizes_must_sum_to_the_rest() -> None:
    ok = raw_pack(2, [3, 2], b"abcde")
    assert [bytes(m) for m in decode_pack(ok)] == [b"abc", b"de"]
    exactly(FormatError, pack_member_spans, raw_pack(2, [3, 2], b"abcd"))  # short
    exactly(FormatError, pack_member_spans, raw_pack(2, [3, 2], b"abcdef"))  # long
    exactly(FormatError, pack_member_spans, raw_pack(2, [3, 2], b""))
    exactly(FormatError, pack_member_spans, raw_pack(2, [3, 0], b"abc"))  # member size 0
    exactly(FormatError, pack_member_spans, raw_pack(1, [MAX_PLAIN_CHUNK_PAYLOAD + 1], b"x"))
    # a size over the limit is refused before anything is sliced or summed
    exactly(FormatError, pack_member_spans, raw_pack(1, [2 ** 64 - 1], b""))


def test_header_varints_must_be_canonical() -> None:
    exactly(FormatError, pack_member_spans, b"\x81\x00" + b"\x01x")  # count 1, padded
    exactly(FormatError, pack_member_spans, b"\x01" + b"\x81\x00" + b"x")  # size 1, padded
    exactly(FormatError, pack_member_spans, b"\x01" + b"\xff" * 10 + b"\x01")  # > 64 bits
    exactly(FormatError, pack_member_spans, b"\x01\x80")  # a size cut inside its varint


def test_member_numbers() -> None:
    buf = encode_pack([member(0), member(1)])
    exactly(IntegrityError, pack_member, buf, 2)  # member_no >= count
    exactly(IntegrityError, pack_member, buf, 4095)
    with pytest.raises(ValueError):
        pack_member(buf, -1)
    # the header is checked first: a malformed pack is a FormatError whatever is asked
    exactly(FormatError, pack_member, buf + b"x", 5)
    exactly(FormatError, pack_member, buf[:-1], 0)


def test_encode_refuses_what_decoders_refuse() -> None:
    with pytest.raises(ValueError):
        encode_pack([])
    with pytest.raises(ValueError):
        encode_pack([b"x"] * 4097)
    with pytest.raises(ValueError):
        encode_pack([b"x", b""])
    with pytest.raises(ValueError):  # the payload would be over the PACK frame's limit
        encode_pack([b"x" * (MAX_PLAIN_CHUNK_PAYLOAD // 2)] * 2 + [b"y"])
    assert len(decode_pack(encode_pack([b"x"] * 4096))) == 4096


@ROUND_TRIP
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=50))
def test_round_trip_property(members: list[bytes]) -> None:
    assert [bytes(m) for m in decode_pack(encode_pack(members))] == members


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    decode_or_typed_error(decode_pack, data)
    decode_or_typed_error(lambda d: pack_member(d, 0), data)


@FUZZ
@given(st.data(), st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=8))
def test_mutated_packs(data: st.DataObject, members: list[bytes]) -> None:
    buf = data.draw(mutate(encode_pack(members)))
    try:
        spans = pack_member_spans(buf)
    except FormatError as e:
        assert type(e) is FormatError
        return
    assert 1 <= len(spans) <= MAX_PACK_MEMBERS and spans[-1][1] == len(buf)
    assert all(a < b for a, b in spans)
