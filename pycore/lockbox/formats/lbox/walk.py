"""The one tree walk: every read of an ordered tree (TOC, env, space) goes through it.

A walk asks for all the nodes of one level in **one** :class:`~lockbox.drivers.Read`
(one round trip), so a lookup, a listing or a whole-tree walk costs one round trip per
tree level — unless the level is larger than the memory budget (:class:`WalkLimits`):
then the level is fetched in budget-sized groups, and the walk descends depth-first below
each group before it fetches the next one, so that it holds at most one group per level
(memory ≤ height x budget, whatever the tree's shape). Each extra ``Read`` a level costs
is counted in :attr:`WalkStats.splits`; a walk's round trips are always
``levels fetched + splits``.

Nodes are decoded one at a time as the walk goes: a leaf is handed to the caller's
``visit`` and not kept (unless the bounded node cache keeps it); an internal node only
leaves behind the children the walk will follow. Every node is checked as soon as it is
decoded (docs/FORMAT.md §8: level, entry count and first key against its parent's
reference), before the walk fetches anything below it.

Hostile shapes are refused before they cost anything:

* a tree that names one frame twice on one level (a valid tree never does), refs of
  one batch that overlap, or refs into the superblock (``IntegrityError``), and refs past
  the commit's ``archive_end`` (``TruncatedError``) — so one batch never fetches more bytes
  than the archive has;
* nodes that decode to more than ``amplification`` times the frame bytes the walk has read,
  beyond a ``free_bytes`` allowance (``LimitExceededError``, naming the limit): zstd turns
  ~100 bytes into a 1 MiB node, and a valid tree of such nodes would otherwise make a
  small archive list millions of entries. The weight of a node is its decoded size plus
  the memory of its items as Python objects (:func:`node_weight`), so the bound covers
  what a listing keeps, not just the bytes.

The bound is a local reader limit, like the Argon2id limits (docs/FORMAT.md §16): the
defaults (:class:`WalkLimits`) never trip on trees of real files — the reference writer's
nodes of ~32 KiB measure 2.5x to 5x — and keep what any ~80 KiB archive can make
``lockbox ls -R`` hold to ~300,000 entries (about 200 MiB). Synthetic trees of nothing
but empty folders with tiny names and one mtime compress harder (440x to 760x measured:
docs/PERFORMANCE.md, "Tree walks") and trip it past about 150,000-360,000 entries; a
reader that trusts such an archive raises ``ArchiveView.limits``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from ...drivers import Flow, Read
from ...errors import IntegrityError, LimitExceededError, TruncatedError
from .wire.commit import TreeRoot
from .wire.constants import FrameKind
from .wire.node import Internal, Leaf, Node
from .wire.refs import Ref

__all__ = ["WalkLimits", "WalkStats", "Visit", "NodeStore", "walk_tree_flow", "load_nodes_flow",
           "node_weight", "LEAF_ITEM_WEIGHT", "CHILD_WEIGHT"]

MiB = 1024 * 1024
# Memory of one decoded item beyond its bytes (measured with tracemalloc, CPython 3.11):
# a leaf item is two bytes objects and two list slots; a child is a Child, a Ref, two bytes
# objects, three ints and a list slot.
LEAF_ITEM_WEIGHT = 96
CHILD_WEIGHT = 288

Visit = Callable[[Node, "Ref | None"], None]


@dataclass(frozen=True)
class WalkLimits:
    """The memory budget of one walk.

    ``batch_bytes`` / ``batch_refs``: at most this many frame bytes / refs in one ``Read``
    (a level over either is fetched in several: budget splits), and at most this many
    children pending below one group before the walk descends into them.
    ``amplification`` / ``free_bytes``: the weight of the nodes one walk decodes may not
    exceed ``free_bytes + amplification * frame bytes read`` (``LimitExceededError``).

    Why these numbers: 32 MiB of frames per ``Read`` fetches the leaf level of a
    1,000,000-entry archive (71 MB) in 3 reads, and a split then costs one latency per
    32 MiB transferred; 16,384 refs bound the children pending per level to ~5 MiB of
    objects. 256x is 50x the ratio of real trees of files and above symlink farms (~180x)
    and env values of zeros (~210x); with 16 MiB free it bounds an 80 KiB archive to
    ~37 MB of node weight (module docstring)."""

    batch_bytes: int = 32 * MiB
    batch_refs: int = 16384
    amplification: int = 256
    free_bytes: int = 16 * MiB


@dataclass
class WalkStats:
    """Counters of the walks of one view (cumulative; tests and benchmarks read them).

    ``reads`` = round trips walks asked for; ``levels`` = (walk, level) pairs fetched (an
    explicit batch, :func:`load_nodes_flow`, counts as one level);
    ``splits`` = the extra reads budget splits cost (``reads == levels + splits``);
    ``nodes`` / ``frame_bytes`` / ``decoded_bytes``: nodes decoded (cache misses), the
    bytes of their frames, and their weight (:func:`node_weight`)."""

    walks: int = 0
    reads: int = 0
    levels: int = 0
    splits: int = 0
    nodes: int = 0
    frame_bytes: int = 0
    decoded_bytes: int = 0

    def copy(self) -> WalkStats:
        return WalkStats(self.walks, self.reads, self.levels, self.splits, self.nodes,
                         self.frame_bytes, self.decoded_bytes)

    def __sub__(self, other: WalkStats) -> WalkStats:
        return WalkStats(self.walks - other.walks, self.reads - other.reads,
                         self.levels - other.levels, self.splits - other.splits,
                         self.nodes - other.nodes, self.frame_bytes - other.frame_bytes,
                         self.decoded_bytes - other.decoded_bytes)


class NodeStore(Protocol):
    """Where a walk's nodes come from: what the walk needs of an archive, and all of it.
    :class:`~lockbox.formats.lbox.view.ArchiveView` is one (a format with a tree of the same node
    model — keys, child refs with counts, levels — can be another).

    ``frame_span``: where node frames may lie (``[start, end)``; ``end`` None: unknown).
    ``cached_node`` / ``cache_node``: the store's node cache (may keep nothing).
    ``open_node``: authenticate and decode the frame a ref names (``blob`` is exactly its
    bytes); returns the node and its decoded size. ``decode_inline``: a root stored inline.
    """

    limits: WalkLimits
    walk_stats: WalkStats

    @property
    def frame_span(self) -> tuple[int, int | None]: ...

    def cached_node(self, kind: FrameKind, ref: Ref) -> Node | None: ...

    def cache_node(self, kind: FrameKind, ref: Ref, node: Node, weight: int) -> None: ...

    def open_node(self, kind: FrameKind, ref: Ref,
                  blob: bytes | memoryview) -> tuple[Node, int]: ...

    def decode_inline(self, kind: FrameKind, payload: bytes) -> Node: ...


def node_weight(payload_size: int, node: Node) -> int:
    """Decoded size plus the memory of the node's items as Python objects."""
    if isinstance(node, Leaf):
        return payload_size + LEAF_ITEM_WEIGHT * len(node.keys)
    return payload_size + CHILD_WEIGHT * len(node.children)


class _Want:
    """A node the walk will fetch, and what its parent (or the commit) says about it."""

    __slots__ = ("count", "first_key", "level", "ref")

    def __init__(self, ref: Ref, level: int, count: int, first_key: bytes | None) -> None:
        self.ref = ref
        self.level = level
        self.count = count
        self.first_key = first_key  # None: the root (the commit record has no key for it)


class _Walk:
    """The state of one walk (or one explicit batch of nodes)."""

    def __init__(self, store: NodeStore, kind: FrameKind, visit: Visit | None = None,
                 ranges: Sequence[tuple[bytes, bytes]] | None = None,
                 stop_level: int = 0) -> None:
        self.store = store
        self.kind = kind
        self.visit: Visit = visit or (lambda node, ref: None)
        self.ranges = ranges
        self.stop_level = stop_level
        self.limits: WalkLimits = store.limits
        self.stats: WalkStats = store.walk_stats
        self.frame_start, self.frame_end = store.frame_span
        self.frame_bytes = 0
        self.weight = 0
        self.seen: dict[int, set[int]] = {}  # level -> frame offsets named on it
        self.levels_read: set[int] = set()

    # -- budget ------------------------------------------------------------------

    def group_end(self, wants: Sequence[_Want], start: int) -> int:
        """End of the group starting at ``start``: within the batch budget (≥ 1 ref)."""
        limits = self.limits
        total = 0
        i = start
        while i < len(wants) and i - start < limits.batch_refs:
            total += wants[i].ref.frame_size
            if total > limits.batch_bytes and i > start:
                break
            i += 1
        return i

    def account(self, frame_size: int, weight: int) -> None:
        self.frame_bytes += frame_size
        self.weight += weight
        st = self.stats
        st.nodes += 1
        st.frame_bytes += frame_size
        st.decoded_bytes += weight
        limits = self.limits
        if self.weight > limits.free_bytes + limits.amplification * self.frame_bytes:
            raise LimitExceededError(
                f"{_tree_name(self.kind)}: its nodes decode to {self.weight:,} bytes (with "
                f"their items' memory) from {self.frame_bytes:,} bytes of frames, over the "
                f"decompression limit of {limits.amplification}x the frame bytes read + "
                f"{limits.free_bytes // MiB} MiB: a decompression bomb, or a tree of unusually "
                "compressible entries (if you trust the archive, raise the limit with "
                "--max-tree-amplification N, WalkLimits.amplification in the API)")

    # -- fetching ------------------------------------------------------------------

    def fetch(self, wants: Sequence[_Want], level: int) -> Flow[list[Node | bytes]]:
        """Each wanted node from the cache, else its frame's bytes (one ``Read`` for all
        the missing ones). Refuses duplicate, overlapping and out-of-archive refs."""
        store = self.store
        seen = self.seen.setdefault(level, set())
        out: list[Node | bytes] = []
        missing: list[int] = []
        for i, w in enumerate(wants):
            ref = w.ref
            off = ref.frame_offset
            if off in seen:
                raise IntegrityError(
                    f"{_tree_name(self.kind)} names the frame at {off} twice (a valid tree "
                    "never does)")
            seen.add(off)
            node = store.cached_node(self.kind, ref)
            if node is None:
                if off < self.frame_start:
                    raise IntegrityError(
                        f"{_tree_name(self.kind)} points before the first page (frame at "
                        f"{off})")
                if self.frame_end is not None and off + ref.frame_size > self.frame_end:
                    raise TruncatedError(
                        f"{_tree_name(self.kind)}: the frame at {off} ({ref.frame_size} "
                        f"bytes) lies past the committed end of the archive "
                        f"({self.frame_end}): the archive is truncated or damaged")
                missing.append(i)
                out.append(b"")
            else:
                out.append(node)
        if not missing:
            return out
        order = sorted(missing, key=lambda i: wants[i].ref.frame_offset)
        for a, b in pairwise(order):
            ra, rb = wants[a].ref, wants[b].ref
            if ra.frame_offset + ra.frame_size > rb.frame_offset:
                raise IntegrityError(
                    f"{_tree_name(self.kind)} names overlapping frames (at {ra.frame_offset} "
                    f"and {rb.frame_offset}; a valid tree never does)")
        st = self.stats
        st.reads += 1
        if level in self.levels_read:
            st.splits += 1
        else:
            self.levels_read.add(level)
            st.levels += 1
        blobs = yield Read(tuple(wants[i].ref.byte_range for i in missing))
        for i, blob in zip(missing, blobs):
            out[i] = blob
        return out

    def decode(self, ref: Ref, item: Node | bytes) -> Node:
        """A fetched frame's node (authenticated, decoded, weighed, cached)."""
        if not isinstance(item, (bytes, bytearray, memoryview)):
            return item  # from the cache
        node, size = self.store.open_node(self.kind, ref, item)
        weight = node_weight(size, node)
        self.account(ref.frame_size, weight)
        self.store.cache_node(self.kind, ref, node, weight)
        return node


    def level_flow(self, wants: list[_Want]) -> Flow[None]:
        """Fetch ``wants`` (nodes of one level, in key order) group by group; below each
        group, descend before fetching the next group."""
        level = wants[0].level
        pos = 0
        while pos < len(wants):
            end = self.group_end(wants, pos)
            group = wants[pos:end]
            pos = end
            items = yield from self.fetch(group, level)
            below = _Below(self)
            for i, want in enumerate(group):
                item = items[i]
                items[i] = b""  # the frame's bytes go as soon as its node is decoded
                node = self.decode(want.ref, item)
                _check(want, node)
                yield from below.node_flow(node, want.ref)
            del items, item
            yield from below.flush_flow()


def _tree_name(kind: FrameKind) -> str:
    return {FrameKind.TOC_NODE: "the TOC tree", FrameKind.ENV_NODE: "the env tree",
            FrameKind.SPACE_NODE: "the space map"}.get(kind, "a tree")


def _first_key(node: Node) -> bytes | None:
    if isinstance(node, Leaf):
        return node.keys[0] if node.keys else None
    return node.children[0].first_key


def _check(want: _Want, node: Node) -> None:
    if want.first_key is None:  # the root
        if node.level != want.level or node.count != want.count:
            raise IntegrityError("tree root does not match the commit record")
    elif node.level != want.level or node.count != want.count or \
            _first_key(node) != want.first_key:
        raise IntegrityError("tree node does not match its parent's reference")


def overlapping(node: Internal, ranges: Sequence[tuple[bytes, bytes]]) -> list[int]:
    """Children of ``node`` whose key span meets one of ``ranges`` (``lo <= key < hi``)."""
    picks = []
    kids = node.children
    for i, c in enumerate(kids):
        upper = kids[i + 1].first_key if i + 1 < len(kids) else None
        for lo, hi in ranges:
            if c.first_key < hi and (upper is None or upper > lo):
                picks.append(i)
                break
    return picks


def walk_tree_flow(store: NodeStore, kind: FrameKind, root: TreeRoot, visit: Visit, *,
                   ranges: Sequence[tuple[bytes, bytes]] | None = None,
                   stop_level: int = 0) -> Flow[None]:
    """Call ``visit(node, ref)`` for every node the walk reaches — the nodes whose key span
    meets one of ``ranges`` (every node if None), down to level ``stop_level`` (0: the
    leaves; 1: stop above them) — parents before their children, each level in key order
    (so the leaves come in key order). ``ref`` is None for an inline root. The nodes of a
    level come in one ``Read`` unless the budget splits it (module docstring)."""
    if root.empty or root.height - 1 < stop_level:
        return
    store.walk_stats.walks += 1
    walk = _Walk(store, kind, visit, ranges, stop_level)
    if root.ref is not None:
        yield from walk.level_flow([_Want(root.ref, root.height - 1, root.count, None)])
        return
    assert root.inline is not None
    node = store.decode_inline(kind, root.inline)
    walk.account(0, node_weight(len(root.inline), node))
    _check(_Want(Ref(0, 0, b""), root.height - 1, root.count, None), node)
    below = _Below(walk)
    yield from below.node_flow(node, None)
    yield from below.flush_flow()


class _Below:
    """The children one group of nodes leads to; the walk descends into them when they
    reach the budget (and after the group)."""

    def __init__(self, walk: _Walk) -> None:
        self.walk = walk
        self.wants: list[_Want] = []
        self.frame_bytes = 0

    def node_flow(self, node: Node, ref: Ref | None) -> Flow[None]:
        """Visit a checked node; queue the children the walk follows."""
        walk = self.walk
        walk.visit(node, ref)
        if node.level <= walk.stop_level:
            return
        assert isinstance(node, Internal)
        limits = walk.limits
        kids = node.children
        level = node.level - 1
        ranges = walk.ranges
        for k in range(len(kids)) if ranges is None else overlapping(node, ranges):
            c = kids[k]
            size = c.ref.frame_size
            if self.wants and (len(self.wants) >= limits.batch_refs or
                               self.frame_bytes + size > limits.batch_bytes):
                yield from self.flush_flow()  # a full group: fetch it (and below it) now
            self.wants.append(_Want(c.ref, level, c.count, c.first_key))
            self.frame_bytes += size

    def flush_flow(self) -> Flow[None]:
        wants = self.wants
        self.wants, self.frame_bytes = [], 0
        if wants:
            yield from self.walk.level_flow(wants)


def load_nodes_flow(store: NodeStore, kind: FrameKind,
                    refs: Sequence[Ref]) -> Flow[list[Node]]:
    """The nodes ``refs`` name (a root listing, a writer's touched leaves), each from the
    cache or in one ``Read`` for all (split only by the budget), under the same checks
    and decompression bound as a walk. The caller checks what they are."""
    if not refs:
        return []
    store.walk_stats.walks += 1
    walk = _Walk(store, kind)
    wants = [_Want(r, -1, 0, b"") for r in refs]
    out: list[Node] = []
    pos = 0
    while pos < len(wants):
        end = walk.group_end(wants, pos)
        group = wants[pos:end]
        pos = end
        items = yield from walk.fetch(group, -1)
        for i, want in enumerate(group):
            out.append(walk.decode(want.ref, items[i]))
            items[i] = b""
    return out
