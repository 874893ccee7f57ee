"""B-tree nodes (and the refs they hold)."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, LimitExceededError, TruncatedError
from lockbox.formats.lbox.wire.constants import (
    MAX_KEY_SIZE,
    MAX_NODE_ENTRIES,
    MAX_NODE_PLAIN_SIZE,
    MAX_TREE_HEIGHT,
)
from lockbox.formats.lbox.wire.encoding import Builder, Reader, uvarint
from lockbox.formats.lbox.wire.node import (
    INTERNAL,
    LEAF,
    Child,
    Internal,
    Leaf,
    decode_node,
    encode_node,
)
from lockbox.formats.lbox.wire.refs import Ref, decode_ref, encode_ref

from . import FUZZ, MAX_FRAME_TOTAL, ROUND_TRIP, decode_or_typed_error, mutate, refs

LIMIT = 1024
REF = Ref(16416, 200, b"T" * 16)


def leaf_bytes(*entries: tuple[int, bytes, bytes], count: int | None = None,
               level: int = 0) -> bytes:
    """A leaf from raw (shared-prefix length, key suffix, value) triples."""
    b = Builder().u8(LEAF).u8(level).uvarint(len(entries) if count is None else count)
    for shared, suffix, value in entries:
        b.uvarint(shared).blob(suffix).blob(value)
    return b.getvalue()


def internal_bytes(level: int, *children: tuple[int, bytes, Ref, int],
                   count: int | None = None) -> bytes:
    b = Builder().u8(INTERNAL).u8(level).uvarint(len(children) if count is None else count)
    for shared, suffix, ref, n in children:
        b.uvarint(shared).blob(suffix)
        encode_ref(b, ref)
        b.uvarint(n)
    return b.getvalue()


# -- refs ------------------------------------------------------------------------------------


def test_ref_round_trip_and_range():
    for ref in (REF, Ref(0, 64, bytes(16)), Ref(2 ** 64 - 1, MAX_FRAME_TOTAL, b"\xff" * 16)):
        b = Builder()
        encode_ref(b, ref)
        r = Reader(b.getvalue(), "ref")
        assert decode_ref(r) == ref
        r.done()
    assert (REF.byte_range.offset, REF.byte_range.size, REF.byte_range.end) == (16416, 200, 16616)


def test_ref_rejections():
    with pytest.raises(FormatError, match="below the minimum"):
        decode_ref(Reader(uvarint(0) + uvarint(63) + bytes(16)))
    with pytest.raises(LimitExceededError):
        decode_ref(Reader(uvarint(0) + uvarint(MAX_FRAME_TOTAL + 1) + bytes(16)))
    with pytest.raises(TruncatedError):
        decode_ref(Reader(uvarint(0) + uvarint(64) + bytes(15)))
    with pytest.raises(TruncatedError):
        decode_ref(Reader(b""))


# -- nodes -----------------------------------------------------------------------------------


def test_leaf_round_trip_with_prefix_compression():
    keys = [b"", b"a", b"ab", b"abc", b"abd", b"b", b"\x00\xff" * 10]
    keys.sort()
    leaf = Leaf(keys, [k[::-1] + b"!" for k in keys])
    enc = encode_node(leaf)
    assert decode_node(enc, LIMIT) == leaf
    assert enc[:2] == bytes([LEAF, 0])
    # "abd" after "abc" is stored as (shared=2, "d")
    assert leaf_bytes((0, b"abc", b""), (2, b"d", b"")) == encode_node(Leaf([b"abc", b"abd"],
                                                                            [b"", b""]))


def test_empty_leaf():
    assert decode_node(encode_node(Leaf([], [])), LIMIT) == Leaf([], [])
    assert Leaf([], []).count == 0 and Leaf([], []).level == 0


def test_internal_round_trip():
    node = Internal(2, [Child(b"", REF, 5), Child(b"key", Ref(1, 64, bytes(16)), 1),
                        Child(b"kez", REF, 2 ** 40)])
    assert decode_node(encode_node(node), LIMIT) == node
    assert node.count == 5 + 1 + 2 ** 40


@pytest.mark.parametrize("level", [1, MAX_TREE_HEIGHT - 1])
def test_internal_levels_accepted(level):
    node = Internal(level, [Child(b"a", REF, 1)])
    assert decode_node(encode_node(node), LIMIT).level == level


def test_node_too_large():
    with pytest.raises(LimitExceededError):
        decode_node(leaf_bytes() + bytes(MAX_NODE_PLAIN_SIZE), LIMIT)


@pytest.mark.parametrize("data", [b"", bytes([LEAF]), bytes([LEAF, 0]),
                                  leaf_bytes((0, b"k", b"v"))[:-1]])
def test_truncated(data):
    with pytest.raises(TruncatedError):
        decode_node(data, LIMIT)


def test_leaf_rejections():
    with pytest.raises(FormatError, match="non-zero level"):
        decode_node(leaf_bytes(level=1), LIMIT)
    with pytest.raises(FormatError, match="out of order"):
        decode_node(leaf_bytes((0, b"b", b""), (0, b"a", b"")), LIMIT)
    with pytest.raises(FormatError, match="out of order"):  # duplicate
        decode_node(leaf_bytes((0, b"a", b""), (1, b"", b"")), LIMIT)
    with pytest.raises(FormatError, match="out of order"):  # empty key after the first
        decode_node(leaf_bytes((0, b"a", b""), (0, b"", b"")), LIMIT)
    with pytest.raises(FormatError, match="shared prefix"):  # more than the previous key has
        decode_node(leaf_bytes((0, b"ab", b""), (3, b"c", b"")), LIMIT)
    with pytest.raises(FormatError, match="shared prefix"):
        decode_node(leaf_bytes((1, b"a", b"")), LIMIT)  # no previous key at all
    with pytest.raises(FormatError, match="shared prefix"):
        decode_node(leaf_bytes((2 ** 63, b"a", b"")), LIMIT)
    with pytest.raises(LimitExceededError):
        decode_node(leaf_bytes((0, b"v", b"x" * (LIMIT + 1))), LIMIT)
    with pytest.raises(LimitExceededError):
        decode_node(leaf_bytes((0, b"k" * (MAX_KEY_SIZE + 1), b"")), LIMIT)
    # the key limit is on the whole key, shared prefix included
    long_key = b"k" * MAX_KEY_SIZE
    assert decode_node(leaf_bytes((0, long_key, b"")), LIMIT).keys == [long_key]
    with pytest.raises(LimitExceededError):
        decode_node(leaf_bytes((0, long_key[:-1], b""), (MAX_KEY_SIZE - 1, b"lm", b"")), LIMIT)
    with pytest.raises(FormatError, match="trailing"):
        decode_node(leaf_bytes((0, b"k", b"v")) + b"\x00", LIMIT)


def test_value_limit_is_the_callers():
    enc = leaf_bytes((0, b"k", b"v" * 100))
    assert decode_node(enc, 100).values == [b"v" * 100]
    with pytest.raises(LimitExceededError):
        decode_node(enc, 99)


def test_entry_count_limit_and_hostile_counts():
    with pytest.raises(LimitExceededError):
        decode_node(leaf_bytes(count=MAX_NODE_ENTRIES + 1), LIMIT)
    tracemalloc.start()
    try:
        for count in (MAX_NODE_ENTRIES, 2 ** 63):
            with pytest.raises((TruncatedError, LimitExceededError)):
                decode_node(leaf_bytes(count=count), LIMIT)
            with pytest.raises((TruncatedError, LimitExceededError)):
                decode_node(internal_bytes(1, count=count), LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_internal_rejections():
    one = (0, b"a", REF, 1)
    for level in (0, MAX_TREE_HEIGHT, 255):
        with pytest.raises(FormatError, match="bad level"):
            decode_node(internal_bytes(level, one), LIMIT)
    with pytest.raises(FormatError, match="empty internal"):
        decode_node(internal_bytes(1), LIMIT)
    with pytest.raises(FormatError, match="out of order"):
        decode_node(internal_bytes(1, (0, b"b", REF, 1), (0, b"a", REF, 1)), LIMIT)
    with pytest.raises(FormatError, match="out of order"):
        decode_node(internal_bytes(1, (0, b"a", REF, 1), (1, b"", REF, 1)), LIMIT)
    with pytest.raises(FormatError, match="empty child"):
        decode_node(internal_bytes(1, (0, b"a", REF, 0)), LIMIT)
    with pytest.raises(FormatError, match="below the minimum"):
        decode_node(internal_bytes(1, (0, b"a", Ref(0, 10, bytes(16)), 1)), LIMIT)
    with pytest.raises(FormatError, match="trailing"):
        decode_node(internal_bytes(1, one) + b"x", LIMIT)


@pytest.mark.parametrize("node_type", [0, 3, 255])
def test_unknown_node_type(node_type):
    with pytest.raises(FormatError, match="unknown node type"):
        decode_node(bytes([node_type, 0, 0]), LIMIT)


# -- properties ------------------------------------------------------------------------------

keys = st.binary(max_size=40)
leaves = st.dictionaries(keys, st.binary(max_size=30), max_size=30).map(
    lambda d: Leaf(sorted(d), [d[k] for k in sorted(d)]))
internals = st.builds(
    lambda level, kids: Internal(level, [Child(k, r, n) for k, (r, n) in sorted(kids.items())]),
    st.integers(1, MAX_TREE_HEIGHT - 1),
    st.dictionaries(keys, st.tuples(refs, st.integers(1, 2 ** 64 - 1)), min_size=1,
                    max_size=10),
)
nodes = st.one_of(leaves, internals)


@ROUND_TRIP
@given(nodes)
def test_round_trip_property(node):
    assert decode_node(encode_node(node), LIMIT) == node


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    decode_or_typed_error(lambda d: decode_node(d, LIMIT), data)
    decode_or_typed_error(lambda d: decode_node(d, LIMIT), bytes([LEAF, 0]) + data)
    decode_or_typed_error(lambda d: decode_node(d, LIMIT), bytes([INTERNAL, 1]) + data)


@FUZZ
@given(st.data(), nodes)
def test_mutated_nodes(data, node):
    got = decode_or_typed_error(lambda d: decode_node(d, LIMIT),
                                data.draw(mutate(encode_node(node))))
    if isinstance(got, Leaf):  # whatever decodes is still a well-formed node
        assert got.keys == sorted(set(got.keys))
        assert all(len(k) <= MAX_KEY_SIZE for k in got.keys)
    elif isinstance(got, Internal):
        firsts = [c.first_key for c in got.children]
        assert firsts == sorted(set(firsts)) and all(c.count > 0 for c in got.children)


def _shared_reference(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@given(keys=st.lists(st.binary(max_size=200) | st.sampled_from([b"", b"a", b"a\x00", b"a\x00\x00",
                                                                b"a ", b"a  b", b"ab"]),
                     max_size=40, unique=True),
       sizes=st.lists(st.sampled_from([0, 1, 127, 128, 300]), min_size=40, max_size=40),
       ordered=st.booleans())
def test_leaf_encoding_is_the_pair_by_pair_prefix_compression(keys, sizes, ordered):
    """Leaves of 8 keys or more take a path of C-level passes (keys compared padded to
    one width, ``bytes.ljust``'s spaces included): the same bytes as the plain rule,
    each key's longest prefix shared with the key before, in any order."""
    if ordered:
        keys.sort()
    values = [bytes([i % 256]) * sizes[i] for i in range(len(keys))]
    prev = b""
    entries = []
    for key, value in zip(keys, values):
        s = _shared_reference(prev, key)
        entries.append((s, key[s:], value))
        prev = key
    assert encode_node(Leaf(keys, values)) == leaf_bytes(*entries)
