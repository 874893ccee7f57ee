"""B-tree nodes: the one ordered-tree encoding used by the TOC, env and space
trees. Keys are byte strings in strictly increasing order; leaf values are
opaque bytes (each tree defines its value encoding). docs/FORMAT.md §8.
"""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import FormatError, LimitExceededError
from .constants import MAX_KEY_SIZE, MAX_NODE_ENTRIES, MAX_NODE_PLAIN_SIZE, MAX_TREE_HEIGHT
from .encoding import Builder, Reader
from .refs import Ref, decode_ref, encode_ref

__all__ = ["Leaf", "Internal", "Child", "Node", "encode_node", "decode_node", "LEAF", "INTERNAL"]

LEAF = 1
INTERNAL = 2


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
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def encode_node(node: Node) -> bytes:
    b = Builder()
    prev = b""
    if isinstance(node, Leaf):
        b.u8(LEAF).u8(0).uvarint(len(node.keys))
        for key, value in zip(node.keys, node.values):
            s = _shared(prev, key)
            b.uvarint(s).blob(key[s:]).blob(value)
            prev = key
    else:
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


def decode_node(buf: bytes | memoryview, value_limit: int) -> Node:
    if len(buf) > MAX_NODE_PLAIN_SIZE:
        raise LimitExceededError("node larger than the limit")
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
