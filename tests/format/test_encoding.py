"""Primitive encodings: fixed-width ints, canonical LEB128 varints, zigzag, blobs."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, LimitExceededError, TruncatedError
from lockbox.formats.lbox.wire.encoding import Builder, Reader, svarint, uvarint, zigzag

from . import FUZZ, ROUND_TRIP, decode_or_typed_error

U64_MAX = (1 << 64) - 1

VARINTS = [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"),
    (16384, "808001"), (2 ** 21 - 1, "ffff7f"), (2 ** 32, "8080808010"),
    (2 ** 63, "80808080808080808001"), (U64_MAX, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize("value,hex_", VARINTS)
def test_uvarint_known_encodings(value, hex_):
    assert uvarint(value).hex() == hex_
    assert Builder().uvarint(value).getvalue().hex() == hex_
    r = Reader(bytes.fromhex(hex_))
    assert r.uvarint() == value
    r.done()


@pytest.mark.parametrize("value", [-1, -(1 << 70), 1 << 64, 1 << 80])
def test_uvarint_refuses_out_of_range(value):
    with pytest.raises(ValueError):
        uvarint(value)


@pytest.mark.parametrize("value,z", [(0, 0), (-1, 1), (1, 2), (-2, 3), (2, 4),
                                     (2 ** 63 - 1, 2 ** 64 - 2), (-(2 ** 63), 2 ** 64 - 1)])
def test_zigzag_and_svarint(value, z):
    assert zigzag(value) == z
    assert svarint(value) == uvarint(z)
    assert Reader(svarint(value)).svarint() == value


@pytest.mark.parametrize("value", [2 ** 63, -(2 ** 63) - 1])
def test_svarint_refuses_out_of_range(value):
    with pytest.raises(ValueError):
        svarint(value)


@pytest.mark.parametrize("data", ["", "80", "ff", "8080", "ffffffffffffffff"])
def test_uvarint_truncated(data):
    with pytest.raises(TruncatedError):
        Reader(bytes.fromhex(data)).uvarint()


@pytest.mark.parametrize("data", [
    "8000",  # 0 in two bytes
    "ff00",  # 127 in two bytes
    "808000",
    "ac8200",  # 300 padded
    "80808080808080808000",  # 0 in ten bytes
])
def test_uvarint_non_canonical_is_refused(data):
    with pytest.raises(FormatError, match="non-canonical") as info:
        Reader(bytes.fromhex(data)).uvarint()
    assert not isinstance(info.value, TruncatedError)


@pytest.mark.parametrize("data", [
    "ffffffffffffffffff02",  # bit 64 set
    "ffffffffffffffffff7f",
    "ffffffffffffffffff81",  # a continuation bit on the 10th byte
    "8080808080808080808001",  # 11 bytes
])
def test_uvarint_over_64_bits_is_refused(data):
    with pytest.raises(FormatError) as info:
        Reader(bytes.fromhex(data)).uvarint()
    assert not isinstance(info.value, (TruncatedError, LimitExceededError))


@pytest.mark.parametrize("value", [0, 5, 127, 128, 5000, 2 ** 40, U64_MAX])
def test_uvarint_limit(value):
    enc = uvarint(value)
    assert Reader(enc).uvarint(value) == value
    if value:
        with pytest.raises(LimitExceededError):
            Reader(enc).uvarint(value - 1)


def test_uvarint_reads_from_a_memoryview_and_advances():
    buf = memoryview(b"\x05\xac\x02\x01xyz")
    r = Reader(buf)
    assert (r.uvarint(), r.uvarint(), r.u8()) == (5, 300, 1)
    assert r.pos == 4 and r.remaining() == 3


def test_fixed_width_integers():
    enc = Builder().u8(0xAB).u16(0x1234).u32(0xDEADBEEF).u64(2 ** 64 - 2).getvalue()
    assert enc.hex() == "ab" "3412" "efbeadde" "feffffffffffffff"
    r = Reader(enc)
    assert (r.u8(), r.u16(), r.u32(), r.u64()) == (0xAB, 0x1234, 0xDEADBEEF, 2 ** 64 - 2)
    r.done()
    for method, size in (("u8", 1), ("u16", 2), ("u32", 4), ("u64", 8)):
        r = Reader(bytes(size - 1))
        with pytest.raises(TruncatedError):
            getattr(r, method)()


def test_raw_view_and_blob():
    enc = Builder().raw(b"abc").blob(b"hello").blob(b"").getvalue()
    assert enc == b"abc\x05hello\x00"
    r = Reader(enc)
    assert r.raw(3) == b"abc"
    assert r.blob(5) == b"hello"
    assert r.blob(0) == b""
    r.done()
    r = Reader(enc)
    v = r.view(3)
    assert isinstance(v, memoryview) and bytes(v) == b"abc"
    bv = r.blob_view(10)
    assert isinstance(bv, memoryview) and bytes(bv) == b"hello"
    with pytest.raises(LimitExceededError):
        Reader(b"\x05hello").blob(4)
    with pytest.raises(LimitExceededError):
        Reader(b"\x05hello").blob_view(4)
    with pytest.raises(TruncatedError):
        Reader(b"\x06hello").blob(100)
    with pytest.raises(TruncatedError):
        Reader(b"abc").raw(4)


def test_done_refuses_trailing_bytes():
    r = Reader(b"\x01\x02", "thing")
    r.u8()
    with pytest.raises(FormatError, match="thing: 1 unexpected trailing"):
        r.done()


def test_errors_name_the_structure():
    with pytest.raises(TruncatedError, match=r"^my struct: truncated"):
        Reader(b"", "my struct").u8()


@pytest.mark.parametrize("length", [2 ** 31, 2 ** 40, 2 ** 63, U64_MAX])
def test_hostile_blob_lengths_do_not_allocate(length):
    data = uvarint(length) + b"x" * 10
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError):
            Reader(data).blob(1 << 20)
        with pytest.raises(TruncatedError):
            Reader(data).blob(U64_MAX)
        with pytest.raises(TruncatedError):
            Reader(data).blob_view(U64_MAX)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# -- properties ------------------------------------------------------------------------------


@ROUND_TRIP
@given(st.integers(0, U64_MAX))
def test_uvarint_round_trip(value):
    enc = uvarint(value)
    assert 1 <= len(enc) <= 10
    assert len(enc) == max(1, -(-value.bit_length() // 7))
    r = Reader(enc + b"tail")
    assert r.uvarint() == value
    assert r.pos == len(enc)


@ROUND_TRIP
@given(st.integers(0, U64_MAX))
def test_padded_uvarint_is_refused(value):
    """Any longer encoding of a value (an extra 0x80 .. 0x00) is not canonical."""
    enc = bytearray(uvarint(value))
    enc[-1] |= 0x80
    enc.append(0)
    with pytest.raises(FormatError):
        Reader(bytes(enc)).uvarint()


@ROUND_TRIP
@given(st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_svarint_round_trip(value):
    r = Reader(svarint(value))
    assert r.svarint() == value
    r.done()


_fields = st.lists(st.one_of(
    st.tuples(st.just("u8"), st.integers(0, 255)),
    st.tuples(st.just("u16"), st.integers(0, 2 ** 16 - 1)),
    st.tuples(st.just("u32"), st.integers(0, 2 ** 32 - 1)),
    st.tuples(st.just("u64"), st.integers(0, U64_MAX)),
    st.tuples(st.just("uvarint"), st.integers(0, U64_MAX)),
    st.tuples(st.just("svarint"), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.tuples(st.just("blob"), st.binary(max_size=40)),
), max_size=20)


@ROUND_TRIP
@given(_fields)
def test_builder_reader_round_trip(fields):
    b = Builder()
    for kind, value in fields:
        getattr(b, kind)(value)
    r = Reader(b.getvalue())
    for kind, value in fields:
        got = r.blob(1 << 20) if kind == "blob" else getattr(r, kind)()
        assert got == value
    r.done()


def _read_all(data: bytes) -> None:
    r = Reader(data)
    while r.remaining():
        r.uvarint(1 << 20)
        r.svarint()
        r.blob(64)
        r.u8()


@FUZZ
@given(st.binary(max_size=64))
def test_reader_on_arbitrary_bytes_raises_only_format_errors(data):
    decode_or_typed_error(_read_all, data)
    decode_or_typed_error(lambda d: Reader(d).uvarint(), data)
    decode_or_typed_error(lambda d: Reader(d).blob_view(3), data)
