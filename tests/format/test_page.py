"""Page headers: the 32-byte, checksummed start of every 4 KiB-aligned page."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    TruncatedError,
    UnsupportedVersionError,
)
from lockbox.formats.lbox.wire.constants import (
    MAX_PAGE_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_MAGIC,
    PageKind,
)
from lockbox.formats.lbox.wire.page import (
    PAGE_VERSION,
    PageHeader,
    decode_keydir_page,
    decode_page_header,
    encode_keydir_page,
    encode_page_header,
)

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, fix_crc, mutate

HEADER = PageHeader(PageKind.FRAMES, 3 * 4096, 9000, 5)


def forged(**fields) -> bytes:
    v = {"magic": PAGE_MAGIC, "version": PAGE_VERSION, "kind": 1, "flags": 0, "size": 4096,
         "used": 100, "gen": 1, "reserved": 0, **fields}
    head = struct.pack("<4sBBHIIQI", v["magic"], v["version"], v["kind"], v["flags"], v["size"],
                       v["used"], v["gen"], v["reserved"])
    return fix_crc(bytearray(head + bytes(4)), 28)


def test_layout_and_round_trip():
    enc = encode_page_header(HEADER)
    assert len(enc) == PAGE_HEADER_SIZE == 32 and enc[:4] == PAGE_MAGIC
    assert decode_page_header(enc) == HEADER
    assert decode_page_header(memoryview(enc + bytes(100))) == HEADER
    assert decode_page_header(forged()) == PageHeader(PageKind.FRAMES, 4096, 100, 1)


@pytest.mark.parametrize("kind", list(PageKind))
@pytest.mark.parametrize("size,used", [(4096, 32), (4096, 4096), (MAX_PAGE_SIZE, MAX_PAGE_SIZE),
                                       (MAX_PAGE_SIZE, 33)])
def test_bounds_that_are_accepted(kind, size, used):
    h = PageHeader(kind, size, used, 2 ** 64 - 1)
    assert decode_page_header(encode_page_header(h)) == h


@pytest.mark.parametrize("n", [0, 4, 31])
def test_truncated(n):
    with pytest.raises(TruncatedError):
        decode_page_header(encode_page_header(HEADER)[:n])


def test_bad_magic():
    with pytest.raises(FormatError, match="bad magic") as info:
        decode_page_header(forged(magic=b"LBXF"))
    assert not isinstance(info.value, IntegrityError)
    with pytest.raises(FormatError, match="bad magic"):
        decode_page_header(bytes(32))


@pytest.mark.parametrize("i", range(4, 32))
def test_any_damaged_byte_after_the_magic_is_an_integrity_error(i):
    enc = bytearray(encode_page_header(HEADER))
    enc[i] ^= 0x01
    with pytest.raises(IntegrityError, match="checksum"):
        decode_page_header(bytes(enc))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version(version):
    with pytest.raises(UnsupportedVersionError, match=f"page version {version}"):
        decode_page_header(forged(version=version))


@pytest.mark.parametrize("fields", [{"flags": 1}, {"flags": 0x8000}, {"reserved": 1},
                                    {"reserved": 2 ** 31}])
def test_reserved_bits(fields):
    with pytest.raises(FormatError, match="reserved"):
        decode_page_header(forged(**fields))


@pytest.mark.parametrize("kind", [0, 4, 255])
def test_unknown_kind(kind):
    with pytest.raises(FormatError, match="unknown kind"):
        decode_page_header(forged(kind=kind))


@pytest.mark.parametrize("size", [0, 1, 4095, 4097, 8191, 2 ** 32 - 1])
def test_size_must_be_a_positive_multiple_of_the_unit(size):
    with pytest.raises(FormatError, match="multiple") as info:
        decode_page_header(forged(size=size, used=32))
    assert not isinstance(info.value, LimitExceededError)


@pytest.mark.parametrize("size", [MAX_PAGE_SIZE + 4096, 2 ** 32 - 4096])
def test_size_over_the_limit(size):
    with pytest.raises(LimitExceededError):
        decode_page_header(forged(size=size, used=32))


@pytest.mark.parametrize("used", [0, 31, 4097, 2 ** 32 - 1])
def test_used_size_out_of_range(used):
    with pytest.raises(FormatError, match="used size"):
        decode_page_header(forged(size=4096, used=used))


# -- KEYDIR pages: header, archive id, key directory, zero padding -----------------------------

AID = bytes(range(16))


@pytest.mark.parametrize("keydir_len", [0, 1, 4096 - 48, 4096 - 47, 10_000])
def test_keydir_page_round_trip(keydir_len):
    keydir = bytes(range(256)) * (keydir_len // 256) + bytes(keydir_len % 256)
    page = encode_keydir_page(AID, keydir, 7)
    assert len(page) % 4096 == 0 and len(page) >= 48 + keydir_len
    header, aid, got = decode_keydir_page(page)
    assert (header.kind, header.generation, header.page_size) == (PageKind.KEYDIR, 7, len(page))
    assert header.used_size == PAGE_HEADER_SIZE + 16 + keydir_len
    assert (aid, got) == (AID, keydir)
    assert page[header.used_size:] == bytes(len(page) - header.used_size)
    # only the used part is needed (a reader fetches exactly that)
    assert decode_keydir_page(page[:header.used_size])[2] == keydir


def test_keydir_page_rejections():
    page = encode_keydir_page(AID, b"keys", 1)
    with pytest.raises(TruncatedError):
        decode_keydir_page(page[:PAGE_HEADER_SIZE + 16 + 3])
    with pytest.raises(FormatError, match="not a key-directory page"):
        decode_keydir_page(encode_page_header(PageHeader(PageKind.FRAMES, 4096, 100, 1)) +
                           bytes(100))
    with pytest.raises(FormatError, match="too short"):
        decode_keydir_page(encode_page_header(PageHeader(PageKind.KEYDIR, 4096, 40, 1)) +
                           bytes(100))
    damaged = bytearray(page)
    damaged[10] ^= 1
    with pytest.raises(IntegrityError):
        decode_keydir_page(bytes(damaged))
    with pytest.raises(LimitExceededError):
        encode_keydir_page(AID, bytes(MAX_PAGE_SIZE), 1)


pages = st.builds(
    PageHeader,
    kind=st.sampled_from(list(PageKind)),
    page_size=st.integers(1, MAX_PAGE_SIZE // 4096).map(lambda n: n * 4096),
    used_size=st.integers(32, 4096),
    generation=st.integers(0, 2 ** 64 - 1),
).filter(lambda h: h.used_size <= h.page_size)


@ROUND_TRIP
@given(pages)
def test_round_trip_property(h):
    assert decode_page_header(encode_page_header(h)) == h


@FUZZ
@given(st.binary(max_size=48))
def test_arbitrary_bytes(data):
    decode_or_typed_error(decode_page_header, data)
    decode_or_typed_error(decode_keydir_page, data)
    decode_or_typed_error(decode_keydir_page, encode_keydir_page(AID, b"k", 1)[:32] + data)


@FUZZ
@given(st.data(), pages)
def test_mutated_headers(data, h):
    enc = encode_page_header(h)
    bad = data.draw(mutate(enc))
    got = decode_or_typed_error(decode_page_header, bad)
    if len(bad) >= 32 and bad[:32] != enc:
        assert got is None
