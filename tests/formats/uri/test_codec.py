"""lockbox.formats.uri.codec: the bytes of headers and chunks, the check order, paths."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    TruncatedError,
    UnsafePathError,
    UnsupportedVersionError,
)
from lockbox.formats.uri import codec
from lockbox.formats.uri.codec import (
    CHUNK_HEADER_SIZE,
    ChunkHeader,
    check_path,
    decode_chunk_header,
    decode_file_header,
    encode_chunk,
    encode_chunk_header,
    encode_file_header,
    path_problem,
    show_bytes,
)

from . import FUZZ
from . import independent as ind


def test_file_header():
    assert encode_file_header() == b"uri\x00\x00\x00\x00\x00"
    assert decode_file_header(b"uri\x00\x00\x00\x00\x00rest") == 0
    with pytest.raises(UnsupportedVersionError, match="version 2 is not supported"):
        decode_file_header(b"uri\x00\x02\x00\x00\x00")
    assert issubclass(UnsupportedVersionError, FormatError)
    for head, cls in [(b"", FormatError), (b"PK\x03\x04\x00\x00\x00\x00", FormatError),
                      (b"zip", FormatError), (b"ur", TruncatedError),
                      (b"uri\x00\x00", TruncatedError)]:
        with pytest.raises(cls):
            decode_file_header(head)


def test_chunk_header_is_92_packed_bytes_and_round_trips():
    h = ChunkHeader(b"FILE", 8, 0o644, b"alice", b"staff", 3)
    raw = h.encode()
    assert len(raw) == CHUNK_HEADER_SIZE == 92
    assert raw == ind.header(b"FILE", 8, 0o644, b"alice", b"staff", 3)
    assert struct.unpack_from("<I", raw, 88)[0] == zlib.crc32(raw[:88])
    assert decode_chunk_header(raw + b"trailing", 8) == h
    assert h.chunk_size == 92 + 8 + 3 + 4 and h.type_name == "file"


def test_header_crc_is_checked_before_any_field():
    raw = bytearray(ind.header(b"BLK ", 10**6, 0, b"a\x00b", b"", 2**64 - 1, b"GZIP"))
    assert isinstance(_error(bytes(raw)), FormatError)  # valid CRC: the type is judged
    raw[88] ^= 1
    e = _error(bytes(raw))
    assert type(e) is IntegrityError and "header CRC32 mismatch" in str(e)
    assert "offset 1234" in str(e)


def _error(raw: bytes) -> LockboxError:
    with pytest.raises(LockboxError) as info:
        decode_chunk_header(raw, 1234)
    return info.value


@pytest.mark.parametrize("fields, cls, words", [
    ((b"FILX", 1, 0, b"", b"", 0, b"NONE"), FormatError, "unknown chunk type 'FILX'"),
    ((b"FILE", 1, 0, b"", b"", 0, b"ZSTD"), FormatError, "unsupported compression 'ZSTD'"),
    ((b"FILE", 1, 0, b"a\x00b", b"", 0, b"NONE"), FormatError, "owner field"),
    ((b"FILE", 1, 0, b"", b"\x00g", 0, b"NONE"), FormatError, "group field"),
    ((b"FILE", 0, 0, b"", b"", 0, b"NONE"), FormatError, "empty path"),
    ((b"FILE", 4097, 0, b"", b"", 0, b"NONE"), LimitExceededError, "path of 4097 bytes"),
    ((b"DIR ", 1, 0, b"", b"", 1, b"NONE"), FormatError, "a directory with 1 bytes"),
    ((b"SLNK", 1, 0, b"", b"", 0, b"NONE"), FormatError, "empty target"),
    ((b"SLNK", 1, 0, b"", b"", 4097, b"NONE"), LimitExceededError, "4097 bytes"),
    ((b"FILE", 1, 0, b"", b"", 2**63, b"NONE"), LimitExceededError, "2**63 - 1"),
    # the order: type before compression before names before sizes
    ((b"XXXX", 0, 0, b"a\x00b", b"", 1, b"GZIP"), FormatError, "unknown chunk type"),
    ((b"DIR ", 0, 0, b"a\x00b", b"", 1, b"GZIP"), FormatError, "compression"),
    ((b"DIR ", 0, 0, b"a\x00b", b"", 1, b"NONE"), FormatError, "owner"),
])
def test_chunk_header_checks(fields, cls, words):
    e = _error(ind.header(*fields))
    assert type(e) is cls and words in str(e), str(e)
    assert ind_verdict(ind.header(*fields)) == cls.__name__


def ind_verdict(raw_header: bytes) -> str:
    """The independent reader's verdict on a file made of this header (plus enough bytes)."""
    kinds = {"format": "FormatError", "limit": "LimitExceededError",
             "integrity": "IntegrityError", "truncated": "TruncatedError"}
    try:
        ind.read(b"uri\x00" + bytes(4) + raw_header + bytes(10000))
    except ind.Invalid as e:
        return kinds[e.kind]
    return "ok"


def test_short_header_is_truncated():
    with pytest.raises(TruncatedError, match="ends inside its header"):
        decode_chunk_header(b"FILE" + bytes(50), 8)


def test_names_exactly_32_bytes_and_refusals():
    raw = encode_chunk_header(b"FILE", 1, 0, b"o" * 32, b"g" * 32, 0)
    h = decode_chunk_header(raw, 0)
    assert h.owner == b"o" * 32 and h.group == b"g" * 32
    with pytest.raises(ValueError):
        encode_chunk_header(b"FILE", 1, 0, b"o" * 33, b"", 0)
    with pytest.raises(ValueError):
        encode_chunk_header(b"FILE", 1, 0, b"a\x00", b"", 0)


@pytest.mark.parametrize("path, cls", [
    (b"a", None), (b"a/b/c", None), (b"...", None), (b"a/.b", None), (b"a..", None),
    (b"caf\xe9", None), (b" ", None), (b"a\\b", None),
    (b"", FormatError), (b"a\x00b", FormatError), (b"/a", UnsafePathError),
    (b"/", UnsafePathError), (b"..", UnsafePathError), (b"a/..", UnsafePathError),
    (b"../a", UnsafePathError), (b"a//b", FormatError), (b"a/", FormatError),
    (b".", FormatError), (b"./a", FormatError), (b"a/./b", FormatError),
    (b"//a", UnsafePathError), (b"a//..", UnsafePathError), (b"\x00/..", FormatError),
])
def test_path_rules_and_their_order(path, cls):
    problem = path_problem(path)
    assert (problem[0] if problem else None) is cls
    if cls is not None:
        with pytest.raises(cls, match="offset 77"):
            check_path(path, 77)


def test_encode_chunk_matches_the_independent_writer():
    assert encode_chunk(b"FILE", b"d/hi.txt", 0o644, b"alice", b"staff", b"hi\n") == ind.chunk(
        b"FILE", b"d/hi.txt", b"hi\n", 0o644, b"alice", b"staff")
    assert codec.data_crc(b"ab", b"cd") == zlib.crc32(b"abcd")
    assert codec.data_crc(b"", b"cd", codec.data_crc(b"ab")) == zlib.crc32(b"abcd")


def test_messages_are_one_line_whatever_the_path():
    assert show_bytes(b"a\nb\x1b[31m") == "'a\\nb\\x1b[31m'"
    assert "\n" not in show_bytes(b"\xff\n" * 100) and show_bytes(b"x" * 100).endswith("…'")
    with pytest.raises(FormatError) as info:
        check_path(b"evil\n/./x", 8)
    assert "\n" not in str(info.value)


@FUZZ
@given(st.binary(min_size=0, max_size=120))
def test_decoder_on_arbitrary_bytes_raises_only_lockbox_errors(raw):
    try:
        decode_chunk_header(raw, 8)
    except LockboxError:
        pass
    try:
        decode_file_header(raw)
    except LockboxError:
        pass


@FUZZ
@given(st.binary(min_size=88, max_size=88))
def test_decoder_with_a_valid_crc_raises_only_lockbox_errors(body):
    raw = body + struct.pack("<I", zlib.crc32(body))
    try:
        h = decode_chunk_header(raw, 8)
    except LockboxError:
        return
    assert h.path_size <= 4096 and h.type in (b"FILE", b"DIR ", b"SLNK")
