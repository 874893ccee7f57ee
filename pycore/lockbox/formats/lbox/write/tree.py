"""Copy-on-write updates of the ordered trees (TOC, env, space), for writers.

A commit applies a sorted batch of changes: only the leaves the batch touches
are loaded and rewritten (runs of touched leaves are re-split to the target
size, absorbing a neighbour when they shrink too far), untouched leaves keep
their refs, and the internal levels are rebuilt from the leaf list.

Reads: the internal levels come from one :mod:`lockbox.formats.lbox.walk` walk that stops
above the leaves (one round trip per internal level), the touched leaves in one
batch, and the neighbours that shrinking runs absorb in one more batch (only
when a run shrinks below half a node): ``height`` round trips, or ``height + 1``.

``NODE_TARGET_SIZE`` is read from this module when a tree is built, so tests
build tall trees cheaply with ``monkeypatch.setattr(lockbox.formats.lbox.write.tree,
"NODE_TARGET_SIZE", 200)``: smaller nodes, the same format.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import add, is_not
from typing import cast

from ....drivers import Read
from ....errors import IntegrityError
from ..view import ArchiveView
from ..wire.commit import EMPTY_TREE, TreeRoot
from ..wire.constants import (
    INLINE_ROOT_MAX,
    MAX_NODE_ENTRIES,
    MAX_ROOT_LISTING_LEAVES,
    NODE_TARGET_SIZE,
    FrameKind,
)
from ..wire.node import Child, Internal, Leaf, Node, encode_node
from ..wire.refs import Ref

__all__ = ["TreeUpdate", "update_tree_flow", "Emit"]

Emit = Callable[[FrameKind, bytes], Ref]


@dataclass
class _LeafSlot:
    first_key: bytes
    count: int
    ref: Ref | None  # None: only in memory (an inline root)
    node: Leaf | None = None


@dataclass(frozen=True)
class TreeUpdate:
    root: TreeRoot
    old_values: dict[bytes, bytes]  # previous value of every changed key that existed
    root_leaves: tuple[Ref, ...] = ()
    root_leaves_complete: bool = False
    freed: tuple[Ref, ...] = ()  # old nodes the new tree no longer references


def _entry_size(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + 6


def _total_size(keys: list[bytes], values: list[bytes]) -> int:
    """Sum of ``_entry_size`` over the pairs (C-level sums, no call per pair)."""
    return sum(map(len, keys)) + sum(map(len, values)) + 6 * len(keys)


def _split_leaves(keys: list[bytes], values: list[bytes]) -> list[Leaf]:
    if not keys:
        return []
    count = len(keys)
    # cum[i]: the sizes of the pairs through i, less their 6 bytes each (C-level passes).
    cum = list(accumulate(map(add, map(len, keys), map(len, values))))
    total = cum[-1] + 6 * count  # _total_size
    n = max(1, -(-total // NODE_TARGET_SIZE), -(-count // MAX_NODE_ENTRIES))
    if n == 1:
        return [Leaf(keys, values)]
    target = total / n

    def running(i: int) -> int:  # _entry_size summed over pairs 0..i (increasing)
        return cum[i] + 6 * (i + 1)

    # A leaf closes at the first pair whose running size reaches target * (leaves + 1):
    # one bisection per leaf, not a step per pair.
    leaves: list[Leaf] = []
    start = 0
    while len(leaves) < n - 1:
        i = bisect_left(range(count), target * (len(leaves) + 1), start, key=running)
        if i >= count:
            break
        leaves.append(Leaf(keys[start:i + 1], values[start:i + 1]))
        start = i + 1
    if start < count:
        leaves.append(Leaf(keys[start:], values[start:]))
    return leaves


def update_tree_flow(view: ArchiveView | None, kind: FrameKind, root: TreeRoot,
                     changes: Mapping[bytes, bytes | None], emit: Emit,
                     inline_ok: bool = True) -> Generator[Read, list[bytes], TreeUpdate]:
    """Apply ``changes`` (key -> new value, or None to delete) to the tree. A small
    single-leaf result is returned inline (for the commit record) if ``inline_ok``."""
    old_values: dict[bytes, bytes] = {}
    freed: list[Ref] = []
    slots: list[_LeafSlot] = []
    if not changes:
        return TreeUpdate(root, old_values)  # the caller keeps its root listing too
    if not root.empty:
        assert view is not None
        if root.height == 1:  # a single leaf: the root itself (inline or not)
            node = yield from view.root_node_flow(kind, root)
            assert isinstance(node, Leaf)
            if root.ref is not None:
                freed.append(root.ref)
            slots = [_LeafSlot(node.keys[0] if node.keys else b"", node.count, root.ref, node)]
        else:
            def visit(node: Node, ref: Ref | None) -> None:
                if ref is not None:
                    freed.append(ref)  # every internal node is rebuilt
                if node.level == 1:
                    assert isinstance(node, Internal)
                    slots.extend(_LeafSlot(c.first_key, c.count, c.ref) for c in node.children)

            yield from view.walk_tree_flow(kind, root, visit, stop_level=1)
    # Assign each change to a leaf: the sorted keys fall into runs, one per touched leaf
    # (two bisections per touched leaf, none per key).
    keys_sorted = sorted(changes)
    touched = _assign(keys_sorted, [s.first_key for s in slots]) if slots else \
        {0: keys_sorted}
    # Load the touched leaves (one batch).
    yield from _load_leaves(view, kind, slots, [i for i in touched if i < len(slots)])
    # Runs of consecutive touched leaves, merged with their changes; a run that shrinks
    # below half a node absorbs the next untouched leaf (all of those in one more batch).
    n_slots = max(len(slots), 1 if touched else 0)
    runs: list[tuple[int, int, list[bytes], list[bytes]]] = []  # start, end, keys, values
    i = 0
    while i < n_slots:
        if i not in touched:
            i += 1
            continue
        run_keys: list[bytes] = []
        run_vals: list[bytes] = []
        j = i
        while j < n_slots and j in touched:
            if j < len(slots) and slots[j].ref is not None and slots[j].ref != root.ref:
                freed.append(slots[j].ref)  # type: ignore[arg-type]
            leaf = slots[j].node if j < len(slots) else Leaf([], [])
            assert leaf is not None
            if not leaf.keys:  # a new tree: the changes, already sorted, minus removals
                keys = touched[j]
                vals = list(map(changes.__getitem__, keys))
                if None in vals:
                    kept = list(map(is_not, vals, repeat(None)))
                    keys = list(compress(keys, kept))
                    vals = list(compress(vals, kept))
                run_keys += keys
                run_vals += cast("list[bytes]", vals)
                j += 1
                continue
            merged = dict(zip(leaf.keys, leaf.values))
            for key in touched[j]:
                new = changes[key]
                old = merged.get(key)
                if old is not None:
                    old_values[key] = old
                if new is None:
                    merged.pop(key, None)
                else:
                    merged[key] = new
            for key in sorted(merged):
                run_keys.append(key)
                run_vals.append(merged[key])
            j += 1
        # (6 bytes a pair at least: a long run is no small one, its size is not needed)
        small = 6 * len(run_keys) < NODE_TARGET_SIZE // 2 and \
            _total_size(run_keys, run_vals) < NODE_TARGET_SIZE // 2
        if small and j < len(slots) and j not in touched:
            j += 1  # absorb slot j - 1
        runs.append((i, j, run_keys, run_vals))
        i = j
    absorbed = [end - 1 for _, end, _, _ in runs if end - 1 not in touched]
    yield from _load_leaves(view, kind, slots, absorbed)
    new_slots: list[_LeafSlot] = []
    i = 0
    for start, end, run_keys, run_vals in runs:
        new_slots.extend(slots[i:start])  # untouched leaves keep their refs
        if end - 1 not in touched:
            nb = slots[end - 1]
            assert nb.node is not None
            freed.append(nb.ref)  # type: ignore[arg-type]
            run_keys.extend(nb.node.keys)
            run_vals.extend(nb.node.values)
        for leaf in _split_leaves(run_keys, run_vals):
            new_slots.append(_LeafSlot(leaf.keys[0], leaf.count, None, leaf))
        i = end
    new_slots.extend(slots[i:])
    if not new_slots:
        return TreeUpdate(EMPTY_TREE, old_values, freed=tuple(freed))
    total = sum(s.count for s in new_slots)
    if inline_ok and len(new_slots) == 1 and new_slots[0].ref is None:
        assert new_slots[0].node is not None
        payload = encode_node(new_slots[0].node)
        if len(payload) <= INLINE_ROOT_MAX:
            return TreeUpdate(TreeRoot(total, 1, None, payload), old_values,
                              freed=tuple(freed))
    for s in new_slots:
        if s.ref is None:
            assert s.node is not None
            s.ref = emit(kind, encode_node(s.node))
    root_leaves, complete = _root_leaves(new_slots) if kind == FrameKind.TOC_NODE else ((), False)
    children = [Child(s.first_key, s.ref, s.count) for s in new_slots]  # type: ignore[arg-type]
    height = 1
    while len(children) > 1:
        height += 1
        groups = _group_children(children)
        children = []
        for g in groups:
            ref = emit(kind, encode_node(Internal(height - 1, g)))
            children.append(Child(g[0].first_key, ref, sum(c.count for c in g)))
    return TreeUpdate(TreeRoot(total, height, children[0].ref, None), old_values, root_leaves,
                      complete, tuple(dict.fromkeys(freed)))


def _assign(keys_sorted: list[bytes], firsts: list[bytes]) -> dict[int, list[bytes]]:
    """Leaf index -> its changed keys (sorted): a key belongs to the last leaf whose
    first key is <= it (the first leaf for a key below every first key)."""
    touched: dict[int, list[bytes]] = {}
    pos = 0
    n_keys = len(keys_sorted)
    n_leaves = len(firsts)
    while pos < n_keys:
        i = max(bisect_right(firsts, keys_sorted[pos]) - 1, 0)
        end = bisect_left(keys_sorted, firsts[i + 1], pos) if i + 1 < n_leaves else n_keys
        touched[i] = keys_sorted[pos:end]
        pos = end
    return touched


def _load_leaves(view: ArchiveView | None, kind: FrameKind, slots: list[_LeafSlot],
                 picks: list[int]) -> Generator[Read, list[bytes], None]:
    """Load the leaves of ``slots[picks]`` not in memory yet, in one batch; each must be
    the leaf its parent describes."""
    need = [i for i in picks if slots[i].node is None]
    if not need:
        return
    assert view is not None
    nodes = yield from view.nodes_flow(kind, [slots[i].ref for i in need])  # type: ignore[misc]
    for i, node in zip(need, nodes):
        s = slots[i]
        if not isinstance(node, Leaf) or node.count != s.count or \
                (node.keys[0] if node.keys else None) != s.first_key:
            raise IntegrityError("tree node does not match its parent's reference")
        s.node = node


def _group_children(children: list[Child]) -> list[list[Child]]:
    est = [len(c.first_key) + 40 for c in children]
    total = sum(est)
    n = max(1, -(-total // NODE_TARGET_SIZE))
    if n == 1:
        return [children]
    target = total / n
    groups: list[list[Child]] = [[]]
    acc = 0
    for c, e in zip(children, est):
        groups[-1].append(c)
        acc += e
        if acc >= target * len(groups) and len(groups) < n:
            groups.append([])
    return [g for g in groups if g]


def _root_leaves(slots: list[_LeafSlot]) -> tuple[tuple[Ref, ...], bool]:
    """Leaves holding the root directory's children (keys starting with 0x00)."""
    if len(slots) == 1:
        return (), False
    refs: list[Ref] = []
    for s in slots:
        if s.first_key >= b"\x01":
            break
        if len(refs) == MAX_ROOT_LISTING_LEAVES:
            return tuple(refs), False
        assert s.ref is not None
        refs.append(s.ref)
    return tuple(refs), True
