"""B-tree nodes: the one ordered-tree encoding used by the TOC, env and space
trees. Keys are byte strings in strictly increasing order; leaf values are
opaque bytes (each tree defines its value encoding). docs/FORMAT.md §8.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import xor

from ....errors import FormatError, LimitExceededError
from .constants import MAX_KEY_SIZE, MAX_NODE_ENTRIES, MAX_NODE_PLAIN_SIZE, MAX_TREE_HEIGHT
from .encoding import _ONE_BYTE, Builder, Reader, uvarint, uvarint_at
from .refs import Ref, decode_ref, encode_ref

__all__ = ["Leaf", "Internal", "Child", "Node", "encode_node", "decode_node", "LEAF", "INTERNAL"]

LEAF = 1
INTERNAL = 2
_LEAF_HEAD = bytes((LEAF, 0))
_from_bytes = int.from_bytes  # big-endian (the default)
_bit_length = int.bit_length


@dataclass(frozen=True, slots=True)
class Child:
    first_key: bytes
    ref: Ref
    count: int  # leaf entries in the child's subtree


@dataclass(frozen=True, slots=True)
class Leaf:
    keys: list[bytes]
    values: list[bytes]
    level = 0

    @property
    def count(self) -> int:
        return len(self.keys)


@dataclass(frozen=True, slots=True)
class Internal:
    level: int
    children: list[Child]

    @property
    def count(self) -> int:
        return sum(c.count for c in self.children)


Node = Leaf | Internal


def _shared(a: bytes, b: bytes) -> int:
    """Length of the common prefix of ``a`` and ``b`` (no per-byte loop: the highest
    differing bit of the two prefixes read as big-endian integers)."""
    n = min(len(a), len(b))
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    return n - (x.bit_length() + 7) // 8


def _encode_leaf(keys: list[bytes], values: list[bytes]) -> bytes:
    """A leaf of 2 keys or more, in C-level passes over the pairs (no Python step per
    pair): each key's shared prefix with the one before is found by comparing the keys,
    padded to one width, as big-endian integers (the highest differing bit), then
    capped at both lengths (what the padding made equal is not shared). The same bytes
    as the pair-by-pair loop of :func:`encode_node`."""
    n = len(keys)
    key_sizes = list(map(len, keys))
    width = max(key_sizes)
    ints = list(map(_from_bytes, map(bytes.ljust, keys, repeat(width, n))))
    # width - ceil(bits / 8), by the bit length of the xor of two padded keys
    common = [width - ((b + 7) >> 3) for b in range(8 * width + 1)]
    shared = [0]
    shared += map(min, map(common.__getitem__, map(_bit_length, map(xor, ints, ints[1:]))),
                  key_sizes, key_sizes[1:])
    rests = list(map(bytes.__getitem__, keys, map(slice, shared, repeat(None, n))))
    rest_sizes = list(map(len, rests))
    value_sizes = list(map(len, values))
    # head, then per pair: shared, rest size, rest, value size, value
    parts: list[bytes] = [_LEAF_HEAD + uvarint(n)] * (5 * n + 1)
    small = max(shared) < 128 and max(rest_sizes) < 128 and max(value_sizes) < 128
    varint = _ONE_BYTE.__getitem__ if small else uvarint
    parts[1::5] = map(varint, shared)
    parts[2::5] = map(varint, rest_sizes)
    parts[3::5] = rests
    parts[4::5] = map(varint, value_sizes)
    parts[5::5] = values
    return b"".join(parts)


def encode_node(node: Node) -> bytes:
    prev = b""
    if isinstance(node, Leaf):
        keys = node.keys
        if len(keys) >= 8 and len(node.values) == len(keys):
            return _encode_leaf(keys, node.values)
        parts = [_LEAF_HEAD, uvarint(len(keys))]
        add = parts.extend
        one = _ONE_BYTE  # lengths under 128 (nearly all) without a call
        for key, value in zip(keys, node.values):
            if prev:
                n = min(len(prev), len(key))
                x = int.from_bytes(prev[:n], "big") ^ int.from_bytes(key[:n], "big")
                s = n - (x.bit_length() + 7) // 8  # _shared(prev, key), inline
            else:
                s = 0
            rest = key[s:]
            r, v = len(rest), len(value)
            add((one[s] if s < 128 else uvarint(s), one[r] if r < 128 else uvarint(r), rest,
                 one[v] if v < 128 else uvarint(v), value))
            prev = key
        return b"".join(parts)
    b = Builder()
    b.u8(INTERNAL).u8(node.level).uvarint(len(node.children))
    for c in node.children:
        s = _shared(prev, c.first_key)
        b.uvarint(s).blob(c.first_key[s:])
        encode_ref(b, c.ref)
        b.uvarint(c.count)
        prev = c.first_key
    return b.getvalue()


def _shared_len(r: Reader, prev: bytes) -> int:
    s = r.uvarint()
    if s > len(prev):
        raise FormatError("tree node: shared prefix longer than the previous key")
    return s


class _KeyReader:
    """Reads prefix-compressed keys in strictly increasing order, capping the total
    bytes they expand to (prefix compression could turn a small node into huge keys)."""

    __slots__ = ("first", "prev", "r", "total")

    def __init__(self, r: Reader) -> None:
        self.r = r
        self.prev = b""
        self.total = 0
        self.first = True

    def next(self, what: str) -> bytes:
        s = _shared_len(self.r, self.prev)
        key = self.prev[:s] + self.r.blob(MAX_KEY_SIZE - s)
        self.total += len(key)
        if self.total > MAX_NODE_PLAIN_SIZE:
            raise LimitExceededError("tree node: its keys expand beyond the node limit")
        if not self.first and key <= self.prev:
            raise FormatError(f"tree node: {what} out of order")
        self.first = False
        self.prev = key
        return key


def _decode_leaf(buf: bytes, value_limit: int) -> Leaf | None:
    """A leaf decoded without a :class:`Reader`, with every check of the checked path
    below; None (or IndexError/ValueError) when anything is off, and the checked path
    then raises the precise error. Leaves are most of a tree: listings decode them."""
    if buf[1] != 0:
        return None
    count, pos = uvarint_at(buf, 2)
    if count > MAX_NODE_ENTRIES:
        return None
    end = len(buf)
    keys: list[bytes] = []
    values: list[bytes] = []
    prev = b""
    total = 0
    for _ in range(count):  # one-byte varints (the usual) read inline
        s = buf[pos]
        if s < 0x80:
            pos += 1
        else:
            s, pos = uvarint_at(buf, pos)
        n = buf[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = uvarint_at(buf, pos)
        if s > len(prev) or n > MAX_KEY_SIZE - s or pos + n > end:
            return None
        key = prev[:s] + buf[pos:pos + n]
        pos += n
        total += len(key)
        if total > MAX_NODE_PLAIN_SIZE or (keys and key <= prev):
            return None
        n = buf[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = uvarint_at(buf, pos)
        if n > value_limit or pos + n > end:
            return None
        values.append(buf[pos:pos + n])
        pos += n
        keys.append(key)
        prev = key
    return Leaf(keys, values) if pos == end else None


def decode_node(buf: bytes | memoryview, value_limit: int) -> Node:
    if len(buf) > MAX_NODE_PLAIN_SIZE:
        raise LimitExceededError("node larger than the limit")
    if buf and buf[0] == LEAF:
        try:
            leaf = _decode_leaf(bytes(buf), value_limit)
        except (IndexError, ValueError):  # cut or malformed: the checked path says how
            leaf = None
        if leaf is not None:
            return leaf
    r = Reader(buf, "tree node")
    node_type = r.u8()
    level = r.u8()
    count = r.uvarint(MAX_NODE_ENTRIES)
    keys = _KeyReader(r)
    if node_type == LEAF:
        if level != 0:
            raise FormatError("tree node: leaf with non-zero level")
        leaf_keys: list[bytes] = []
        values: list[bytes] = []
        for _ in range(count):
            leaf_keys.append(keys.next("keys"))
            values.append(r.blob(value_limit))
        r.done()
        return Leaf(leaf_keys, values)
    if node_type == INTERNAL:
        if not 1 <= level < MAX_TREE_HEIGHT:
            raise FormatError("tree node: bad level")
        if count == 0:
            raise FormatError("tree node: empty internal node")
        children: list[Child] = []
        for _ in range(count):
            key = keys.next("separators")
            ref = decode_ref(r)
            n = r.uvarint()
            if n == 0:
                raise FormatError("tree node: empty child")
            children.append(Child(key, ref, n))
        r.done()
        return Internal(level, children)
    raise FormatError(f"tree node: unknown node type {node_type}")
