"""B-tree nodes: the one ordered-tree encoding used by the TOC, env and space
trees. Keys are byte strings in strictly increasing order; leaf values are
opaque bytes (each tree defines its value encoding). docs/FORMAT.md §8.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError, LimitExceededError
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


def decode_node(buf: bytes, value_limit: int) -> Node:
    if len(buf) > MAX_NODE_PLAIN_SIZE:
        raise LimitExceededError("node larger than the limit")
    r = Reader(buf, "tree node")
    node_type = r.u8()
    level = r.u8()
    count = r.uvarint(MAX_NODE_ENTRIES)
    keys: list[bytes] = []
    prev = b""
    key_bytes = 0  # prefix compression could expand a small node into huge keys: cap it
    if node_type == LEAF:
        if level != 0:
            raise FormatError("tree node: leaf with non-zero level")
        values: list[bytes] = []
        for _ in range(count):
            s = _shared_len(r, prev)
            key = prev[:s] + r.blob(MAX_KEY_SIZE - s)
            key_bytes += len(key)
            if key_bytes > MAX_NODE_PLAIN_SIZE:
                raise LimitExceededError("tree node: its keys expand beyond the node limit")
            if keys and key <= prev:
                raise FormatError("tree node: keys out of order")
            keys.append(key)
            values.append(r.blob(value_limit))
            prev = key
        r.done()
        return Leaf(keys, values)
    if node_type == INTERNAL:
        if not 1 <= level < MAX_TREE_HEIGHT:
            raise FormatError("tree node: bad level")
        if count == 0:
            raise FormatError("tree node: empty internal node")
        children: list[Child] = []
        for _ in range(count):
            s = _shared_len(r, prev)
            key = prev[:s] + r.blob(MAX_KEY_SIZE - s)
            key_bytes += len(key)
            if key_bytes > MAX_NODE_PLAIN_SIZE:
                raise LimitExceededError("tree node: its keys expand beyond the node limit")
            if children and key <= prev:
                raise FormatError("tree node: separators out of order")
            ref = decode_ref(r)
            n = r.uvarint()
            if n == 0:
                raise FormatError("tree node: empty child")
            children.append(Child(key, ref, n))
            prev = key
        r.done()
        return Internal(level, children)
    raise FormatError(f"tree node: unknown node type {node_type}")
