"""Frame headers (format/frame.py), and the sealing built on them (frames.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, IntegrityError, LimitExceededError, TruncatedError
from lockbox.formats.lbox.frames import PLAIN_LIMITS, FrameOpener, FrameSealer, decode_plain
from lockbox.formats.lbox.wire.constants import (
    AAD_FRAME,
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    MAX_FRAME_SEALED_SIZE,
    MAX_NODE_PLAIN_SIZE,
    TAG_SIZE,
    Codec,
    FrameKind,
)
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.formats.lbox.wire.frame import (
    FrameHeader,
    decode_frame_header,
    encode_frame_header,
    frame_aad,
    frame_nonce,
)
from lockbox.platform import default_codec

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, fix_crc, mutate

HEADER = FrameHeader(FrameKind.DATA_CHUNK, 1000, 7, bytes(range(16)), 42)


def forged(**fields) -> bytes:
    """A header with raw field values and a valid checksum."""
    v = {"magic": FRAME_MAGIC, "kind": 5, "flags": 0, "reserved": 0, "sealed": 100, "gen": 1,
         "session": bytes(16), "counter": 0, **fields}
    head = struct.pack("<4sBBHIQ16sQ", v["magic"], v["kind"], v["flags"], v["reserved"],
                       v["sealed"], v["gen"], v["session"], v["counter"])
    return fix_crc(bytearray(head + bytes(4)), 44)


def test_header_layout_and_round_trip():
    enc = encode_frame_header(HEADER)
    assert len(enc) == FRAME_HEADER_SIZE == 48
    assert enc[:4] == FRAME_MAGIC
    assert decode_frame_header(enc) == HEADER
    assert decode_frame_header(enc + b"rest of the frame") == HEADER
    assert decode_frame_header(memoryview(enc)) == HEADER
    assert HEADER.frame_size == 48 + 1000
    assert decode_frame_header(forged()) == FrameHeader(FrameKind.DATA_CHUNK, 100, 1,
                                                        bytes(16), 0)


@pytest.mark.parametrize("kind", list(FrameKind))
def test_every_kind_round_trips(kind):
    h = FrameHeader(kind, TAG_SIZE, 2 ** 64 - 1, b"\xff" * 16, 2 ** 64 - 1)
    assert decode_frame_header(encode_frame_header(h)) == h


@pytest.mark.parametrize("n", [0, 1, 47])
def test_truncated(n):
    with pytest.raises(TruncatedError):
        decode_frame_header(encode_frame_header(HEADER)[:n])


def test_bad_magic_is_a_format_error():
    enc = bytearray(encode_frame_header(HEADER))
    enc[0:4] = b"LBXP"
    with pytest.raises(FormatError, match="bad magic") as info:
        decode_frame_header(bytes(enc))
    assert not isinstance(info.value, IntegrityError)
    with pytest.raises(FormatError, match="bad magic"):
        decode_frame_header(forged(magic=b"XXXX"))


@pytest.mark.parametrize("i", range(4, 48))
def test_any_damaged_byte_after_the_magic_is_an_integrity_error(i):
    enc = bytearray(encode_frame_header(HEADER))
    enc[i] ^= 0x40
    with pytest.raises(IntegrityError, match="checksum"):
        decode_frame_header(bytes(enc))


@pytest.mark.parametrize("fields", [{"flags": 1}, {"flags": 0x80}, {"reserved": 1},
                                    {"reserved": 0x8000}])
def test_reserved_bits(fields):
    with pytest.raises(FormatError, match="reserved"):
        decode_frame_header(forged(**fields))


@pytest.mark.parametrize("kind", [0, 8, 99, 255])
def test_unknown_kind(kind):
    with pytest.raises(FormatError, match="unknown kind"):
        decode_frame_header(forged(kind=kind))


def test_sealed_size_bounds():
    assert decode_frame_header(forged(sealed=TAG_SIZE)).sealed_size == TAG_SIZE
    assert decode_frame_header(forged(sealed=MAX_FRAME_SEALED_SIZE)).sealed_size == \
        MAX_FRAME_SEALED_SIZE
    for small in (0, 1, TAG_SIZE - 1):
        with pytest.raises(FormatError, match="below the tag size"):
            decode_frame_header(forged(sealed=small))
    for big in (MAX_FRAME_SEALED_SIZE + 1, 2 ** 31, 2 ** 32 - 1):
        with pytest.raises(LimitExceededError):
            decode_frame_header(forged(sealed=big))


def test_nonce_and_aad():
    assert frame_nonce(0) == bytes(12)
    assert frame_nonce(0x0102) == b"\x02\x01" + bytes(10)
    assert frame_nonce(2 ** 64 - 1) == b"\xff" * 8 + bytes(4)
    enc = encode_frame_header(HEADER)
    aid = bytes(range(100, 116))
    aad = frame_aad(aid, enc, 0x0A0B)
    assert aad == AAD_FRAME + aid + enc[:44] + (0x0A0B).to_bytes(8, "little")
    assert frame_aad(aid, memoryview(enc + b"xx"), 5) == frame_aad(aid, enc, 5)


headers = st.builds(
    FrameHeader,
    kind=st.sampled_from(list(FrameKind)),
    sealed_size=st.integers(TAG_SIZE, MAX_FRAME_SEALED_SIZE),
    generation=st.integers(0, 2 ** 64 - 1),
    session_id=st.binary(min_size=16, max_size=16),
    counter=st.integers(0, 2 ** 64 - 1),
)


@ROUND_TRIP
@given(headers)
def test_header_round_trip_property(h):
    assert decode_frame_header(encode_frame_header(h)) == h


@FUZZ
@given(st.binary(max_size=64))
def test_arbitrary_bytes(data):
    decode_or_typed_error(decode_frame_header, data)


@FUZZ
@given(st.data(), headers)
def test_mutated_headers(data, h):
    enc = encode_frame_header(h)
    bad = data.draw(mutate(enc))
    got = decode_or_typed_error(decode_frame_header, bad)
    if len(bad) >= 48 and bad[:48] != enc:
        assert got is None  # the checksum (or the magic) catches every change


# -- decode_plain: the frame body inside the seal ---------------------------------------------


def test_decode_plain_raw_and_zstd(codec):
    assert bytes(decode_plain(codec, bytes([Codec.RAW]) + uvarint(3) + b"abc", 10)) == b"abc"
    assert bytes(decode_plain(codec, bytes([Codec.RAW]) + uvarint(0), 10)) == b""
    packed = codec.compress(b"z" * 5000)
    out = decode_plain(codec, bytes([Codec.ZSTD]) + uvarint(5000) + packed, 5000)
    assert bytes(out) == b"z" * 5000


def test_decode_plain_rejections(codec):
    packed = codec.compress(b"z" * 5000)
    with pytest.raises(TruncatedError):
        decode_plain(codec, b"", 10)
    with pytest.raises(TruncatedError):
        decode_plain(codec, bytes([Codec.RAW]), 10)
    with pytest.raises(FormatError, match="raw size mismatch"):
        decode_plain(codec, bytes([Codec.RAW]) + uvarint(4) + b"abc", 10)
    with pytest.raises(FormatError, match="raw size mismatch"):
        decode_plain(codec, bytes([Codec.RAW]) + uvarint(2) + b"abc", 10)
    with pytest.raises(LimitExceededError):
        decode_plain(codec, bytes([Codec.RAW]) + uvarint(11) + bytes(11), 10)
    with pytest.raises(LimitExceededError):
        decode_plain(codec, bytes([Codec.ZSTD]) + uvarint(5000) + packed, 4999)
    with pytest.raises(FormatError):  # declared plain size differs from the frame's
        decode_plain(codec, bytes([Codec.ZSTD]) + uvarint(4000) + packed, 5000)
    with pytest.raises(FormatError):
        decode_plain(codec, bytes([Codec.ZSTD]) + uvarint(10) + b"not zstd", 100)
    for unknown in (2, 7, 255):
        with pytest.raises(FormatError, match="unknown codec"):
            decode_plain(codec, bytes([unknown]) + uvarint(3) + b"abc", 10)


@FUZZ
@given(st.binary(max_size=100))
def test_decode_plain_on_arbitrary_bytes(data):
    codec = default_codec()
    decode_or_typed_error(lambda d: decode_plain(codec, d, 200), data)
    decode_or_typed_error(lambda d: decode_plain(codec, bytes([Codec.ZSTD]) + d, 1000), data)


# -- sealing and opening ---------------------------------------------------------------------

ARCHIVE_ID = bytes(range(16))
KEY = bytes(range(32, 64))


@pytest.fixture
def pair(crypto, codec):
    return (FrameSealer(crypto, codec, ARCHIVE_ID, KEY),
            FrameOpener(crypto, codec, ARCHIVE_ID, KEY))


@pytest.mark.parametrize("payload", [b"", b"short", b"compressible " * 500, bytes(range(256))])
def test_seal_open_round_trip(pair, payload):
    sealer, opener = pair
    plain = sealer.encode_plain(payload)
    frame, ref = sealer.seal(FrameKind.TOC_NODE, 3, 20480, plain)
    assert (ref.frame_offset, ref.frame_size) == (20480, len(frame))
    assert ref.tag == frame[-TAG_SIZE:]
    header, out = opener.open_at(frame, 20480, FrameKind.TOC_NODE, ref.tag)
    assert bytes(out) == payload and header.generation == 3
    assert header.session_id == sealer.session_id and header.counter == 0
    assert bytes(opener.open_ref(frame, ref, FrameKind.TOC_NODE)) == payload
    if len(payload) > 1000:
        assert plain[0] == Codec.ZSTD and len(frame) < len(payload)


def test_counter_numbers_frames_and_sessions_differ(crypto, codec, pair):
    sealer, opener = pair
    frames = [sealer.seal(FrameKind.DATA_CHUNK, 1, 100 * i, sealer.encode_plain(b"x"))
              for i in range(3)]
    assert [decode_frame_header(f).counter for f, _ in frames] == [0, 1, 2]
    other = FrameSealer(crypto, codec, ARCHIVE_ID, KEY)
    assert other.session_id != sealer.session_id
    f2, r2 = other.seal(FrameKind.DATA_CHUNK, 1, 0, other.encode_plain(b"x"))
    assert f2[48:] != frames[0][0][48:]  # same counter, same plaintext: another key
    assert bytes(opener.open_ref(f2, r2, FrameKind.DATA_CHUNK)) == b"x"


def test_opening_checks_kind_tag_offset_archive_key_and_size(crypto, codec, pair):
    sealer, opener = pair
    frame, ref = sealer.seal(FrameKind.ENV_NODE, 1, 4096, sealer.encode_plain(b"value"))
    with pytest.raises(IntegrityError, match="expected a TOC_NODE"):
        opener.open_at(frame, 4096, FrameKind.TOC_NODE)
    with pytest.raises(IntegrityError, match="not the frame its parent points to"):
        opener.open_at(frame, 4096, FrameKind.ENV_NODE, bytes(16))
    with pytest.raises(IntegrityError):
        opener.open_at(frame, 4097, FrameKind.ENV_NODE)  # offset is in the AAD
    for aid, key in ((bytes(16), KEY), (ARCHIVE_ID, bytes(32))):
        with pytest.raises(IntegrityError):
            FrameOpener(crypto, codec, aid, key).open_at(frame, 4096, FrameKind.ENV_NODE)
    with pytest.raises(TruncatedError):
        opener.open_ref(frame[:-1], ref, FrameKind.ENV_NODE)
    with pytest.raises(TruncatedError):
        opener.open_at(frame[:-1], 4096, FrameKind.ENV_NODE)
    with pytest.raises(TruncatedError):
        opener.open_at(frame[:40], 4096, FrameKind.ENV_NODE)
    for i in (48, len(frame) // 2, len(frame) - 1):  # ciphertext and tag
        bad = bytearray(frame)
        bad[i] ^= 1
        with pytest.raises(IntegrityError):
            opener.open_at(bytes(bad), 4096, FrameKind.ENV_NODE)


def test_plain_limits_are_enforced_after_authentication(crypto, codec, pair):
    sealer, opener = pair
    limit = PLAIN_LIMITS[FrameKind.TOC_NODE]
    assert limit == MAX_NODE_PLAIN_SIZE
    plain = bytes([Codec.RAW]) + uvarint(limit + 1) + bytes(limit + 1)
    frame, ref = sealer.seal(FrameKind.TOC_NODE, 1, 0, plain)
    with pytest.raises(LimitExceededError):
        opener.open_ref(frame, ref, FrameKind.TOC_NODE)
    # the same bytes are within a data chunk's limit
    frame, ref = sealer.seal(FrameKind.DATA_CHUNK, 1, 0, plain)
    assert len(opener.open_ref(frame, ref, FrameKind.DATA_CHUNK)) == limit + 1
