"""The read engine: one unlocked archive at one commit, and its flows.

Everything here is sans-I/O: methods whose names end in ``_flow`` are
generators that yield :class:`~lockbox.drivers.Read` batches (see
``lockbox.drivers``). Tree walks fetch every node of one level in one batch,
so a listing or a lookup costs one round trip per tree level.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cache import PageCache
from .drivers import Flow, Read
from .errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
)
from .format.chunk import ChunkHeader, decode_chunk, decode_index
from .format.commit import CommitRecord, TreeRoot
from .format.constants import (
    INDEX_FANOUT,
    MAX_ENV_VALUE_SIZE,
    EntryType,
    FrameKind,
)
from .format.entry import (
    LAYOUT_CHUNKS,
    MAX_ENTRY_SIZE,
    Entry,
    child_range,
    decode_entry,
    key_path,
    normalize_path,
    split_path,
    subtree_ranges,
    toc_key,
)
from .format.keydir import KeySlot
from .format.node import Internal, Leaf, Node, decode_node
from .format.refs import Ref
from .format.superblock import Slot
from .frames import FrameOpener

__all__ = ["ArchiveView", "TreeName", "ChunkData"]

TreeName = FrameKind  # FrameKind.TOC_NODE / ENV_NODE / SPACE_NODE name a tree
_VALUE_LIMITS = {FrameKind.TOC_NODE: MAX_ENTRY_SIZE, FrameKind.ENV_NODE: MAX_ENV_VALUE_SIZE,
                 FrameKind.SPACE_NODE: 64}


@dataclass(frozen=True, slots=True)
class ChunkData:
    chunk_no: int
    data: memoryview
    header: ChunkHeader


class ArchiveView:
    """An unlocked archive at one commit. Immutable; writers make new views."""

    def __init__(self, opener: FrameOpener, slot: Slot, commit: CommitRecord,
                 key_slots: list[KeySlot], unlocked_slot_id: int, keydir: bytes,
                 cache: PageCache) -> None:
        self.opener = opener
        self.slot = slot
        self.commit = commit
        self.key_slots = key_slots
        self.unlocked_slot_id = unlocked_slot_id
        self.keydir = keydir
        self.cache = cache

    @property
    def archive_id(self) -> bytes:
        return self.slot.archive_id

    @property
    def generation(self) -> int:
        return self.commit.generation

    # -- nodes -----------------------------------------------------------------

    def _decode(self, kind: FrameKind, payload: bytes) -> Node:
        return decode_node(payload, _VALUE_LIMITS[kind])

    def root_node_flow(self, kind: FrameKind, root: TreeRoot) -> Flow[Node | None]:
        if root.empty:
            return None
        if root.inline is not None:
            node = self._decode(kind, root.inline)
        else:
            assert root.ref is not None
            nodes = yield from self.nodes_flow(kind, [root.ref])
            node = nodes[0]
        expected_level = root.height - 1
        if node.level != expected_level or node.count != root.count:
            raise IntegrityError("tree root does not match the commit record")
        return node

    def nodes_flow(self, kind: FrameKind, refs: list[Ref]) -> Flow[list[Node]]:
        """Load nodes (from the cache, or all missing ones in one batch)."""
        out: list[Node | None] = []
        missing: list[int] = []
        for i, ref in enumerate(refs):
            node = self.cache.get((self.archive_id, ref.frame_offset, ref.tag))
            out.append(node)
            if node is None:
                missing.append(i)
        if missing:
            blobs = yield Read(tuple(refs[i].byte_range for i in missing))
            for i, blob in zip(missing, blobs):
                ref = refs[i]
                payload = self.opener.open_ref(blob, ref, kind)
                node = self._decode(kind, payload)
                self.cache.put((self.archive_id, ref.frame_offset, ref.tag), node,
                               len(payload) // 2 + 256)
                out[i] = node
        return out  # type: ignore[return-value]

    def _children_flow(self, kind: FrameKind, parent: Internal,
                       picks: list[int]) -> Flow[list[Node]]:
        kids = [parent.children[i] for i in picks]
        nodes = yield from self.nodes_flow(kind, [c.ref for c in kids])
        for child, node in zip(kids, nodes):
            first = node.keys[0] if isinstance(node, Leaf) and node.keys else (
                node.children[0].first_key if isinstance(node, Internal) else None)
            if node.level != parent.level - 1 or node.count != child.count or \
                    first != child.first_key:
                raise IntegrityError("tree node does not match its parent's reference")
        return nodes

    def get_flow(self, kind: FrameKind, root: TreeRoot, key: bytes) -> Flow[bytes | None]:
        node = yield from self.root_node_flow(kind, root)
        while isinstance(node, Internal):
            i = _child_index(node, key)
            if i < 0:
                return None
            node = (yield from self._children_flow(kind, node, [i]))[0]
        if node is None:
            return None
        j = _bisect(node.keys, key)
        if j < len(node.keys) and node.keys[j] == key:
            return node.values[j]
        return None

    def scan_flow(self, kind: FrameKind, root: TreeRoot,
                  ranges: list[tuple[bytes, bytes]]) -> Flow[list[tuple[bytes, bytes]]]:
        """Every (key, value) with ``lo <= key < hi`` for some range, in key order.
        One batch per tree level."""
        node = yield from self.root_node_flow(kind, root)
        if node is None:
            return []
        level: list[Node] = [node]
        while level and isinstance(level[0], Internal):
            nxt: list[Node] = []
            for parent in level:
                assert isinstance(parent, Internal)
                picks = _overlapping(parent, ranges)
                if picks:
                    nxt.extend((yield from self._children_flow(kind, parent, picks)))
            level = nxt
        out: list[tuple[bytes, bytes]] = []
        for leaf in level:
            assert isinstance(leaf, Leaf)
            for lo, hi in ranges:
                a = _bisect(leaf.keys, lo)
                b = _bisect(leaf.keys, hi)
                out.extend(zip(leaf.keys[a:b], leaf.values[a:b]))
        out.sort(key=lambda kv: kv[0])
        return out

    def iter_leaves_flow(self, kind: FrameKind, root: TreeRoot) -> Flow[list[Leaf]]:
        """All leaves (for verify/walks of the whole tree), one batch per level."""
        node = yield from self.root_node_flow(kind, root)
        if node is None:
            return []
        level: list[Node] = [node]
        while level and isinstance(level[0], Internal):
            nxt: list[Node] = []
            for parent in level:
                assert isinstance(parent, Internal)
                nxt.extend((yield from self._children_flow(
                    kind, parent, list(range(len(parent.children))))))
            level = nxt
        return level  # type: ignore[return-value]

    def node_refs_flow(self, kind: FrameKind, root: TreeRoot) -> Flow[list[Ref]]:
        """Refs of every node of a tree (root first, then level by level)."""
        node = yield from self.root_node_flow(kind, root)
        refs = [root.ref] if root.ref is not None else []
        level: list[Node] = [node] if node is not None else []
        while level and isinstance(level[0], Internal):
            nxt: list[Node] = []
            for parent in level:
                assert isinstance(parent, Internal)
                refs.extend(c.ref for c in parent.children)
                nxt.extend((yield from self._children_flow(
                    kind, parent, list(range(len(parent.children))))))
            level = nxt
        return refs

    def content_refs_flow(self, entry: Entry) -> Flow[list[Ref]]:
        """Every frame holding a file's content: index frames and chunks."""
        if entry.layout == LAYOUT_CHUNKS:
            return list(entry.refs)
        chunks = yield from self.chunk_refs_flow(entry, 0, entry.chunks)
        return list(entry.refs) + chunks

    # -- TOC ---------------------------------------------------------------------

    def stat_flow(self, path: str) -> Flow[Entry]:
        path = normalize_path(path)
        if path == "":
            return Entry(EntryType.DIR, 0o755, self.commit.time_ns)
        key = toc_key(path)
        c = self.commit
        if key[:1] == b"\x00" and c.root_leaves and c.root_leaves_complete:
            # A child of the root: it is in the root-listing leaves (no internal node).
            value = None
            for leaf in (yield from self.nodes_flow(FrameKind.TOC_NODE, list(c.root_leaves))):
                if not isinstance(leaf, Leaf):
                    raise IntegrityError("root listing points at a non-leaf node")
                j = _bisect(leaf.keys, key)
                if j < len(leaf.keys) and leaf.keys[j] == key:
                    value = leaf.values[j]
                    break
        else:
            value = yield from self.get_flow(FrameKind.TOC_NODE, c.toc, key)
        if value is None:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        return decode_entry(value)

    def listdir_flow(self, path: str = "") -> Flow[list[tuple[str, Entry]]]:
        """Direct children of a directory, sorted by name."""
        path = normalize_path(path)
        lo, hi = child_range(path)
        c = self.commit
        if path == "" and c.root_leaves and c.root_leaves_complete:
            leaves = yield from self.nodes_flow(FrameKind.TOC_NODE, list(c.root_leaves))
            pairs = []
            for leaf in leaves:
                if not isinstance(leaf, Leaf):
                    raise IntegrityError("root listing points at a non-leaf node")
                a, b = _bisect(leaf.keys, lo), _bisect(leaf.keys, hi)
                pairs.extend(zip(leaf.keys[a:b], leaf.values[a:b]))
        else:
            if path:
                entry = yield from self.stat_flow(path)
                if not entry.is_dir:
                    raise InvalidPathError(f"not a directory: {path}")
            pairs = yield from self.scan_flow(FrameKind.TOC_NODE, c.toc, [(lo, hi)])
        return [(split_path(key_path(k))[1], decode_entry(v)) for k, v in pairs]

    def walk_flow(self, path: str = "") -> Flow[list[tuple[str, Entry]]]:
        """Every descendant of ``path`` (or ``path`` itself if it is not a directory),
        as (archive path, entry), sorted by path components."""
        path = normalize_path(path)
        if path:
            entry = yield from self.stat_flow(path)
            if not entry.is_dir:
                return [(path, entry)]
        pairs = yield from self.scan_flow(FrameKind.TOC_NODE, self.commit.toc,
                                          subtree_ranges(path))
        items = [(key_path(k), decode_entry(v)) for k, v in pairs]
        items.sort(key=lambda pe: pe[0].split("/"))
        return items

    # -- file data ---------------------------------------------------------------

    def chunk_refs_flow(self, entry: Entry, first: int, stop: int) -> Flow[list[Ref]]:
        if entry.layout == LAYOUT_CHUNKS:
            return list(entry.refs[first:stop])
        total = entry.chunks
        idx = list(range(first // INDEX_FANOUT, (stop - 1) // INDEX_FANOUT + 1))
        refs = [entry.refs[i] for i in idx]
        cached: list[list[Ref] | None] = [
            self.cache.get((self.archive_id, r.frame_offset, r.tag)) for r in refs]
        missing = [k for k, v in enumerate(cached) if v is None]
        if missing:
            blobs = yield Read(tuple(refs[k].byte_range for k in missing))
            for k, blob in zip(missing, blobs):
                payload = self.opener.open_ref(blob, refs[k], FrameKind.CHUNK_INDEX)
                file_id, first_no, chunk_refs = decode_index(payload)
                want = min(INDEX_FANOUT, total - idx[k] * INDEX_FANOUT)
                if file_id != entry.file_id or first_no != idx[k] * INDEX_FANOUT or \
                        len(chunk_refs) != want:
                    raise IntegrityError("chunk index does not belong to this file")
                self.cache.put((self.archive_id, refs[k].frame_offset, refs[k].tag), chunk_refs,
                               len(payload))
                cached[k] = chunk_refs
        out: list[Ref] = []
        for k, i in enumerate(idx):
            lst = cached[k]
            assert lst is not None
            base = i * INDEX_FANOUT
            out.extend(lst[max(first, base) - base: min(stop, base + len(lst)) - base])
        return out

    def chunks_flow(self, entry: Entry, first: int, stop: int) -> Flow[list[ChunkData]]:
        """Authenticated, checked plaintext of chunks ``first <= n < stop``."""
        refs = yield from self.chunk_refs_flow(entry, first, stop)
        blobs = yield Read(tuple(r.byte_range for r in refs))
        return [self.decode_chunk(entry, first + k, ref, blob)
                for k, (ref, blob) in enumerate(zip(refs, blobs))]

    def decode_chunk(self, entry: Entry, chunk_no: int, ref: Ref,
                     blob: bytes) -> ChunkData:
        payload = self.opener.open_ref(blob, ref, FrameKind.DATA_CHUNK)
        header, data = decode_chunk(payload)
        total = entry.chunks
        last = chunk_no == total - 1
        want = entry.size - chunk_no * entry.chunk_size if last else entry.chunk_size
        if header.file_id != entry.file_id or header.chunk_no != chunk_no:
            raise IntegrityError(f"chunk {chunk_no} does not belong here (moved or swapped)")
        if len(data) != want or (header.meta is not None) != last:
            raise IntegrityError(f"chunk {chunk_no} has the wrong size (truncated file?)")
        if last:
            m = header.meta
            assert m is not None
            if m.size != entry.size or m.content_hash != entry.content_hash:
                raise IntegrityError("last chunk's metadata does not match the entry")
        return ChunkData(chunk_no, data, header)

    # -- env -----------------------------------------------------------------------

    def env_get_flow(self, name: str) -> Flow[bytes]:
        value = yield from self.get_flow(FrameKind.ENV_NODE, self.commit.env, name.encode())
        if value is None:
            raise NotFoundError(f"no such env value: {name}")
        return value

    def env_items_flow(self) -> Flow[list[tuple[str, bytes]]]:
        pairs = yield from self.scan_flow(FrameKind.ENV_NODE, self.commit.env,
                                          [(b"", b"\xff" * 8)])
        try:
            return [(k.decode(), v) for k, v in pairs]
        except UnicodeDecodeError:
            raise FormatError("env tree: a name is not UTF-8") from None


def _bisect(keys: list[bytes], key: bytes) -> int:
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _child_index(node: Internal, key: bytes) -> int:
    """Index of the child whose subtree may hold ``key`` (-1: before the first)."""
    lo, hi = 0, len(node.children)
    while lo < hi:
        mid = (lo + hi) // 2
        if node.children[mid].first_key <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def _overlapping(node: Internal, ranges: list[tuple[bytes, bytes]]) -> list[int]:
    picks = []
    kids = node.children
    for i, c in enumerate(kids):
        upper = kids[i + 1].first_key if i + 1 < len(kids) else None
        for lo, hi in ranges:
            if c.first_key < hi and (upper is None or upper > lo):
                picks.append(i)
                break
    return picks


