"""The commit record sealed in each superblock slot."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import (
    FormatError,
    LimitExceededError,
    TruncatedError,
    UnsupportedVersionError,
)
from lockbox.formats.lbox.wire.commit import (
    COMMIT_VERSION,
    EMPTY_TREE,
    ROOT_EMPTY,
    ROOT_INLINE,
    ROOT_REF,
    CommitRecord,
    Stats,
    TreeRoot,
    decode_commit,
    encode_commit,
)
from lockbox.formats.lbox.wire.constants import (
    INLINE_ROOT_MAX,
    MAX_CHUNK_SIZE,
    MAX_ROOT_LISTING_LEAVES,
    MAX_TREE_HEIGHT,
    MIN_CHUNK_SIZE,
)
from lockbox.formats.lbox.wire.encoding import Builder, uvarint
from lockbox.formats.lbox.wire.refs import Ref, encode_ref

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, mutate, refs

REF = Ref(40960, 500, b"r" * 16)
RECORD = CommitRecord(
    generation=7, time_ns=1_700_000_000_123_456_789, archive_end=1 << 30,
    default_chunk_size=1 << 20, keydir_sha256=bytes(range(32)),
    toc=TreeRoot(1000, 3, REF, None), env=TreeRoot(2, 1, None, b"inline node"),
    space=EMPTY_TREE, root_leaves=(REF, Ref(1, 64, bytes(16))), root_leaves_complete=True,
    stats=Stats(10, 20, 30, 2 ** 40, 2 ** 41))


def head(version: int = COMMIT_VERSION, chunk: int = 4096) -> Builder:
    return Builder().u8(version).uvarint(1).uvarint(0).uvarint(16384).uvarint(chunk).raw(
        bytes(32))


def tail(b: Builder, *, space: int | None = 0, complete: int = 0, leaves: int = 0,
         leaf_refs: int | None = None) -> bytes:
    """The fields after the toc and env roots (``space=None``: the caller wrote them)."""
    if space is not None:
        b.u8(space)
    b.u8(complete).uvarint(leaves)
    for _ in range(leaves if leaf_refs is None else leaf_refs):
        encode_ref(b, REF)
    for _ in range(5):
        b.uvarint(0)
    return b.getvalue()


def empty_roots(b: Builder) -> Builder:
    return b.u8(ROOT_EMPTY).u8(ROOT_EMPTY)


def test_round_trip():
    assert decode_commit(encode_commit(RECORD)) == RECORD
    minimal = CommitRecord(1, 0, 16384, MIN_CHUNK_SIZE, bytes(32), EMPTY_TREE, EMPTY_TREE, None)
    assert decode_commit(encode_commit(minimal)) == minimal
    assert encode_commit(minimal)[0] == COMMIT_VERSION
    assert decode_commit(tail(empty_roots(head()))) == CommitRecord(
        1, 0, 16384, 4096, bytes(32), EMPTY_TREE, EMPTY_TREE, None)


def test_tree_roots():
    assert EMPTY_TREE.empty and not TreeRoot(1, 1, REF).empty
    for root in (TreeRoot(1, 1, REF), TreeRoot(2 ** 64 - 1, MAX_TREE_HEIGHT, REF),
                 TreeRoot(0, 1, None, b""), TreeRoot(5, 1, None, b"n" * INLINE_ROOT_MAX)):
        rec = dataclasses.replace(RECORD, toc=root, env=root, space=root)
        assert decode_commit(encode_commit(rec)) == rec


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version(version):
    with pytest.raises(UnsupportedVersionError, match=f"version {version}"):
        decode_commit(tail(empty_roots(head(version))))
    enc = bytearray(encode_commit(RECORD))
    enc[0] = version
    with pytest.raises(UnsupportedVersionError):
        decode_commit(bytes(enc))


def test_chunk_size_bounds():
    with pytest.raises(FormatError, match="chunk size below"):
        decode_commit(tail(empty_roots(head(chunk=MIN_CHUNK_SIZE - 1))))
    with pytest.raises(FormatError, match="chunk size below"):
        decode_commit(tail(empty_roots(head(chunk=0))))
    with pytest.raises(LimitExceededError):
        decode_commit(tail(empty_roots(head(chunk=MAX_CHUNK_SIZE + 1))))
    assert decode_commit(tail(empty_roots(head(chunk=MAX_CHUNK_SIZE)))).default_chunk_size == \
        MAX_CHUNK_SIZE


@pytest.mark.parametrize("height", [0, MAX_TREE_HEIGHT + 1, 255])
def test_bad_tree_height(height):
    b = head().u8(ROOT_REF).u8(height).uvarint(1)
    encode_ref(b, REF)
    with pytest.raises(FormatError, match="bad tree height"):
        decode_commit(tail(b.u8(ROOT_EMPTY)))


def test_inline_roots():
    with pytest.raises(FormatError, match="inline root must be a leaf"):
        decode_commit(tail(head().u8(ROOT_INLINE).u8(2).uvarint(1).blob(b"x").u8(ROOT_EMPTY)))
    with pytest.raises(LimitExceededError):
        decode_commit(tail(head().u8(ROOT_INLINE).u8(1).uvarint(1)
                           .blob(b"x" * (INLINE_ROOT_MAX + 1)).u8(ROOT_EMPTY)))


@pytest.mark.parametrize("kind", [3, 7, 255])
def test_unknown_root_kind(kind):
    with pytest.raises(FormatError, match="unknown root kind"):
        decode_commit(tail(head().u8(kind).u8(1).uvarint(1).u8(ROOT_EMPTY)))


def test_flags():
    for space in (2, 255):
        with pytest.raises(FormatError, match="bad space flag"):
            decode_commit(tail(empty_roots(head()), space=space))
    for complete in (2, 255):
        with pytest.raises(FormatError, match="bad root-listing flag"):
            decode_commit(tail(empty_roots(head()), complete=complete))
    got = decode_commit(tail(empty_roots(head()).u8(1).u8(ROOT_EMPTY), space=None))
    assert got.space == EMPTY_TREE


def test_root_listing_limit():
    ok = decode_commit(tail(empty_roots(head()), leaves=MAX_ROOT_LISTING_LEAVES, complete=1))
    assert len(ok.root_leaves) == MAX_ROOT_LISTING_LEAVES and ok.root_leaves_complete
    with pytest.raises(LimitExceededError):
        decode_commit(tail(empty_roots(head()), leaves=MAX_ROOT_LISTING_LEAVES + 1))
    with pytest.raises(LimitExceededError):
        decode_commit(tail(empty_roots(head()), leaves=2 ** 63, leaf_refs=0))


def test_truncated_and_trailing():
    enc = encode_commit(RECORD)
    for n in (0, 1, 5, 40, len(enc) // 2, len(enc) - 1):
        with pytest.raises(TruncatedError):
            decode_commit(enc[:n])
    with pytest.raises(FormatError, match="trailing"):
        decode_commit(enc + b"\x00")


def test_varint_fields_are_canonical():
    b = Builder().u8(COMMIT_VERSION).raw(b"\x81\x00")  # generation 1, padded
    with pytest.raises(FormatError, match="non-canonical"):
        decode_commit(b.getvalue() + uvarint(0) * 3)


# -- properties ------------------------------------------------------------------------------

roots = st.one_of(
    st.just(EMPTY_TREE),
    st.builds(lambda c, h, r: TreeRoot(c, h, r, None), st.integers(0, 2 ** 64 - 1),
              st.integers(1, MAX_TREE_HEIGHT), refs),
    st.builds(lambda c, b: TreeRoot(c, 1, None, b), st.integers(0, 2 ** 64 - 1),
              st.binary(max_size=200)),
)
u64 = st.integers(0, 2 ** 64 - 1)
records = st.builds(
    CommitRecord, u64, u64, u64, st.integers(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
    st.binary(min_size=32, max_size=32), roots, roots, st.one_of(st.none(), roots),
    st.lists(refs, max_size=MAX_ROOT_LISTING_LEAVES).map(tuple), st.booleans(),
    st.builds(Stats, u64, u64, u64, u64, u64))


@ROUND_TRIP
@given(records)
def test_round_trip_property(record):
    assert decode_commit(encode_commit(record)) == record


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    decode_or_typed_error(decode_commit, data)
    decode_or_typed_error(decode_commit, bytes([COMMIT_VERSION]) + data)


@FUZZ
@given(st.data(), records)
def test_mutated_records(data, record):
    decode_or_typed_error(decode_commit, data.draw(mutate(encode_commit(record))))
