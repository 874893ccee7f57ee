"""Data-chunk payloads and chunk-index payloads."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, LimitExceededError, TruncatedError
from lockbox.formats.lbox.wire.chunk import (
    FLAG_LAST,
    ChunkHeader,
    ChunkMeta,
    decode_chunk,
    decode_index,
    encode_chunk,
    encode_chunk_parts,
    encode_index,
    encode_meta,
)
from lockbox.formats.lbox.wire.constants import (
    INDEX_FANOUT,
    MAX_CHUNK_SIZE,
    MAX_PATH_SIZE,
    MAX_SYMLINK_SIZE,
    EntryType,
)
from lockbox.formats.lbox.wire.encoding import Builder, uvarint
from lockbox.formats.lbox.wire.refs import Ref

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, mutate, refs

FID = bytes(range(16))
META = ChunkMeta(EntryType.FILE, 0o640, -12345, 10_000, bytes(range(32)), 4096)
REF = Ref(16416, 144, b"t" * 16)


def raw_chunk(*, file_id: bytes = FID, chunk_no: int = 0, path: bytes = b"p",
              meta: bytes = b"\x00", data_len: int | None = None, data: bytes = b"d") -> bytes:
    return (file_id + uvarint(chunk_no) + uvarint(len(path)) + path + meta
            + uvarint(len(data) if data_len is None else data_len) + data)


def raw_meta(*, t: int = 1, mode: int = 0o644, size: int = 1, chunk: int = 4096,
             target: bytes = b"", flags: int = FLAG_LAST) -> bytes:
    b = Builder().u8(flags).u8(t).uvarint(mode).svarint(0).uvarint(size).raw(bytes(32))
    return b.uvarint(chunk).blob(target).getvalue()


def test_round_trip_middle_and_last_chunks():
    for header, data in [
        (ChunkHeader(FID, 0, "a/b.txt", None), b"x" * 4096),
        (ChunkHeader(FID, 2 ** 40, "\u00e9", META), b""),
        (ChunkHeader(FID, 7, "l", ChunkMeta(EntryType.SYMLINK, 0o777, 0, 0, bytes(32), 4096,
                                            "target")), b""),
    ]:
        enc = encode_chunk(header, data)
        got, view = decode_chunk(enc)
        assert got == header and isinstance(view, memoryview) and bytes(view) == data
        assert decode_chunk(memoryview(enc))[0] == header


def test_encode_helpers_agree():
    h = ChunkHeader(FID, 3, "dir/file", META)
    assert encode_chunk(h, b"abc") == encode_chunk_parts(FID, 3, b"dir/file", encode_meta(META),
                                                         b"abc")
    assert encode_meta(None) == b"\x00"
    assert encode_meta(META)[0] == FLAG_LAST
    assert encode_chunk(h, memoryview(b"abc")) == encode_chunk(h, b"abc")


def test_data_is_a_view_of_the_payload():
    enc = bytearray(encode_chunk(ChunkHeader(FID, 0, "p", None), b"hello"))
    _, view = decode_chunk(enc)
    enc[-1] = ord("!")
    assert bytes(view) == b"hell!"  # zero-copy: no second allocation of the data


@pytest.mark.parametrize("cut", [0, 15, 16, 17, 18, 19, -1])
def test_truncated(cut):
    with pytest.raises(TruncatedError):
        decode_chunk(raw_chunk(data=b"data")[:cut])


def test_field_limits():
    with pytest.raises(LimitExceededError):
        decode_chunk(raw_chunk(chunk_no=2 ** 40 + 1))
    assert decode_chunk(raw_chunk(chunk_no=2 ** 40))[0].chunk_no == 2 ** 40
    with pytest.raises(LimitExceededError):
        decode_chunk(raw_chunk(path=b"p" * (MAX_PATH_SIZE + 1)))
    assert decode_chunk(raw_chunk(path=b"p" * MAX_PATH_SIZE))[0].path == "p" * MAX_PATH_SIZE
    with pytest.raises(FormatError, match="path is not UTF-8"):
        decode_chunk(raw_chunk(path=b"\xff\xfe"))


@pytest.mark.parametrize("flags", [0x02, 0x03, 0x80, 0xFF])
def test_unknown_flags(flags):
    with pytest.raises(FormatError, match="unknown flags"):
        decode_chunk(raw_chunk(meta=bytes([flags])))


def test_meta_rejections():
    for t in (0, 4, 255):
        with pytest.raises(FormatError, match="unknown entry type"):
            decode_chunk(raw_chunk(meta=raw_meta(t=t)))
    with pytest.raises(LimitExceededError):
        decode_chunk(raw_chunk(meta=raw_meta(mode=0o10000)))
    with pytest.raises(LimitExceededError):
        decode_chunk(raw_chunk(meta=raw_meta(chunk=MAX_CHUNK_SIZE + 1)))
    with pytest.raises(LimitExceededError):
        decode_chunk(raw_chunk(meta=raw_meta(target=b"t" * (MAX_SYMLINK_SIZE + 1))))
    with pytest.raises(FormatError, match="symlink target is not UTF-8"):
        decode_chunk(raw_chunk(meta=raw_meta(target=b"\xc0\x80")))
    with pytest.raises(TruncatedError):
        decode_chunk(raw_chunk(meta=raw_meta()[:20], data=b""))


def test_hostile_data_length():
    with pytest.raises(LimitExceededError):
        decode_chunk(raw_chunk(data_len=MAX_CHUNK_SIZE + 1))
    tracemalloc.start()
    try:
        for n in (MAX_CHUNK_SIZE, 2 ** 63):
            with pytest.raises((TruncatedError, LimitExceededError)):
                decode_chunk(raw_chunk(data_len=n))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_trailing_bytes():
    with pytest.raises(FormatError, match="trailing"):
        decode_chunk(raw_chunk() + b"\x00")
    with pytest.raises(FormatError, match="trailing"):
        decode_chunk(raw_chunk(data_len=0, data=b"extra"))


# -- chunk indexes ---------------------------------------------------------------------------


def test_index_round_trip():
    for first, rs in [(0, []), (4096, [REF]), (2 ** 40, [REF] * 3)]:
        assert decode_index(encode_index(FID, first, rs)) == (FID, first, rs)
    full = [Ref(i * 100, 64, bytes(16)) for i in range(INDEX_FANOUT)]
    assert decode_index(encode_index(FID, 0, full))[2] == full


def test_index_rejections():
    with pytest.raises(LimitExceededError):
        decode_index(FID + uvarint(2 ** 40 + 1) + uvarint(0))
    with pytest.raises(LimitExceededError):
        decode_index(FID + uvarint(0) + uvarint(INDEX_FANOUT + 1))
    with pytest.raises(LimitExceededError):
        decode_index(FID + uvarint(0) + uvarint(2 ** 63))
    with pytest.raises(TruncatedError):
        decode_index(FID + uvarint(0) + uvarint(INDEX_FANOUT))  # count without refs
    with pytest.raises(TruncatedError):
        decode_index(FID[:10])
    with pytest.raises(FormatError, match="below the minimum"):
        b = Builder().raw(FID).uvarint(0).uvarint(1).uvarint(0).uvarint(10).raw(bytes(16))
        decode_index(b.getvalue())
    with pytest.raises(FormatError, match="trailing"):
        decode_index(encode_index(FID, 0, [REF]) + b"\x00")


# -- properties ------------------------------------------------------------------------------

metas = st.builds(
    ChunkMeta, st.sampled_from(list(EntryType)), st.integers(0, 0o7777),
    st.integers(-(2 ** 63), 2 ** 63 - 1), st.integers(0, 2 ** 64 - 1),
    st.binary(min_size=32, max_size=32), st.integers(0, MAX_CHUNK_SIZE),
    st.text(max_size=20))
chunk_headers = st.builds(
    ChunkHeader, st.binary(min_size=16, max_size=16), st.integers(0, 2 ** 40),
    st.text(max_size=30), st.one_of(st.none(), metas))


@ROUND_TRIP
@given(chunk_headers, st.binary(max_size=300))
def test_chunk_round_trip_property(header, data):
    got, view = decode_chunk(encode_chunk(header, data))
    assert got == header and bytes(view) == data


@ROUND_TRIP
@given(st.binary(min_size=16, max_size=16), st.integers(0, 2 ** 40),
       st.lists(refs, max_size=20))
def test_index_round_trip_property(file_id, first, rs):
    assert decode_index(encode_index(file_id, first, rs)) == (file_id, first, rs)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    decode_or_typed_error(decode_chunk, data)
    decode_or_typed_error(decode_chunk, FID + data)
    decode_or_typed_error(decode_index, data)
    decode_or_typed_error(decode_index, FID + data)


@FUZZ
@given(st.data(), chunk_headers, st.binary(max_size=50))
def test_mutated_chunks(data, header, payload):
    decode_or_typed_error(decode_chunk, data.draw(mutate(encode_chunk(header, payload))))


@FUZZ
@given(st.data(), st.lists(refs, max_size=5))
def test_mutated_indexes(data, rs):
    decode_or_typed_error(decode_index, data.draw(mutate(encode_index(FID, 0, rs))))
