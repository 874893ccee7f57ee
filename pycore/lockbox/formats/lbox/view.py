"""The read engine: one unlocked archive at one commit, and its flows.

Everything here is sans-I/O: methods whose names end in ``_flow`` are
generators that yield :class:`~lockbox.drivers.Read` batches (see
``lockbox.drivers``). Every tree read is one :mod:`lockbox.formats.lbox.walk` walk, which
fetches all the nodes of one level in one batch: a lookup, a listing (with the
check that its directory is one) or a whole-tree walk costs one round trip per
tree level, plus the budget splits of a level too large for the memory budget
(``ArchiveView.limits``, counted in ``ArchiveView.walk_stats``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from ...cache import PageCache
from ...crypto.base import FrameJob, FrameResult, open_frames
from ...drivers import Flow, Read
from ...errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LockboxError,
    NotFoundError,
)
from ...ranges import ByteRange
from .frames import PLAIN_LIMITS, FrameOpener, decode_plain
from .walk import Visit, WalkLimits, WalkStats, load_nodes_flow, walk_tree_flow
from .wire.chunk import ChunkHeader, decode_chunk, decode_index
from .wire.commit import CommitRecord, TreeRoot
from .wire.constants import (
    INDEX_FANOUT,
    MAX_ENV_VALUE_SIZE,
    SUPERBLOCK_SIZE,
    EntryType,
    FrameKind,
)
from .wire.entry import (
    LAYOUT_INDEX,
    LAYOUT_PACKED,
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
from .wire.keydir import KeySlot
from .wire.node import Internal, Leaf, Node, decode_node
from .wire.pack import member_at, pack_member_spans
from .wire.refs import Ref
from .wire.superblock import Slot

__all__ = ["ArchiveView", "TreeName", "ChunkData", "OpenedPack", "ContentBatch",
           "PACK_CACHE_BYTES"]

TreeName = FrameKind  # FrameKind.TOC_NODE / ENV_NODE / SPACE_NODE name a tree
VALUE_LIMITS = {FrameKind.TOC_NODE: MAX_ENTRY_SIZE, FrameKind.ENV_NODE: MAX_ENV_VALUE_SIZE,
                FrameKind.SPACE_NODE: 64}
KeyRanges = Sequence[tuple[bytes, bytes]]
CHUNK_PLAIN_LIMIT = PLAIN_LIMITS[FrameKind.DATA_CHUNK]  # also PLAIN_LIMITS[FrameKind.PACK]
# Opened packs kept by a view (their payloads, least recently used first out): reading the
# files of a pack one after the other (ls + cat, extract, a folder's zip) opens it once.
PACK_CACHE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChunkData:
    chunk_no: int
    data: memoryview
    header: ChunkHeader
    # The whole file's BLAKE3 content hash when ``data`` is the whole file and was already
    # checked against it (a packed file's member): ``FileReadPlan`` does not hash it again.
    checked_hash: bytes = b""


@dataclass(frozen=True, slots=True)
class OpenedPack:
    """An authenticated PACK frame's payload and its members' ``(start, end)`` spans (the
    header's checks done: :func:`~.wire.pack.pack_member_spans`, FormatError)."""

    payload: bytes | memoryview
    spans: list[tuple[int, int]]

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> OpenedPack:
        return cls(payload, pack_member_spans(payload))

    def member(self, member_no: int) -> memoryview:
        """Member ``member_no``'s bytes (an encoded chunk); one the pack does not have is
        an IntegrityError (the entry and the pack disagree)."""
        return member_at(self.payload, self.spans, member_no)


class ArchiveView:
    """An unlocked archive at one commit. Immutable; writers make new views.

    ``limits`` is the memory budget of every tree walk
    (:class:`~lockbox.formats.lbox.walk.WalkLimits`;
    assign a new one to change it); ``walk_stats`` counts their round trips, budget splits
    and decoded bytes (:class:`~lockbox.formats.lbox.walk.WalkStats`)."""

    def __init__(self, opener: FrameOpener, slot: Slot, commit: CommitRecord,
                 key_slots: list[KeySlot], unlocked_slot_id: int, keydir: bytes,
                 cache: PageCache, limits: WalkLimits | None = None) -> None:
        self.opener = opener
        self.slot = slot
        self.commit = commit
        self.key_slots = key_slots
        self.unlocked_slot_id = unlocked_slot_id
        self.keydir = keydir
        self.cache = cache
        self.limits = limits if limits is not None else WalkLimits()
        self.walk_stats = WalkStats()
        # Opened packs by (frame offset, tag): a hit is the same authenticated frame.
        self.packs = PageCache(PACK_CACHE_BYTES)
        self.packs_opened = 0  # PACK frames this view authenticated and decoded

    @property
    def archive_id(self) -> bytes:
        return self.slot.archive_id

    @property
    def generation(self) -> int:
        return self.commit.generation

    # -- nodes (this view is the walks' lockbox.formats.lbox.walk.NodeStore) -------------------

    @property
    def frame_span(self) -> tuple[int, int | None]:
        """Where this commit's frames lie: past the superblock, before ``archive_end``."""
        end = self.commit.archive_end
        return SUPERBLOCK_SIZE, (end if end > SUPERBLOCK_SIZE else None)

    def cached_node(self, kind: FrameKind, ref: Ref) -> Node | None:
        node: Node | None = self.cache.get((self.archive_id, ref.frame_offset, ref.tag))
        return node

    def cache_node(self, kind: FrameKind, ref: Ref, node: Node, weight: int) -> None:
        self.cache.put((self.archive_id, ref.frame_offset, ref.tag), node, weight)

    def open_node(self, kind: FrameKind, ref: Ref,
                  blob: bytes | memoryview) -> tuple[Node, int]:
        payload = self.opener.open_ref(blob, ref, kind)
        return decode_node(payload, VALUE_LIMITS[kind]), len(payload)

    def decode_inline(self, kind: FrameKind, payload: bytes) -> Node:
        return decode_node(payload, VALUE_LIMITS[kind])

    def root_node_flow(self, kind: FrameKind, root: TreeRoot) -> Flow[Node | None]:
        """The root node alone (checked against the commit record)."""
        if root.empty:
            return None
        if root.inline is not None:
            node = self.decode_inline(kind, root.inline)
        else:
            assert root.ref is not None
            node = (yield from self.nodes_flow(kind, [root.ref]))[0]
        if node.level != root.height - 1 or node.count != root.count:
            raise IntegrityError("tree root does not match the commit record")
        return node

    def nodes_flow(self, kind: FrameKind, refs: list[Ref]) -> Flow[list[Node]]:
        """Load nodes (from the cache, or all missing ones in one batch), with a walk's
        checks and decompression bound (:func:`lockbox.formats.lbox.walk.load_nodes_flow`)."""
        return (yield from load_nodes_flow(self, kind, refs))

    def walk_tree_flow(self, kind: FrameKind, root: TreeRoot, visit: Visit, *,
                       ranges: KeyRanges | None = None, stop_level: int = 0) -> Flow[None]:
        """Stream the nodes of a tree to ``visit``
        (see :func:`lockbox.formats.lbox.walk.walk_tree_flow`):
        one round trip per level, memory bounded by ``self.limits``."""
        yield from walk_tree_flow(self, kind, root, visit, ranges=ranges,
                                  stop_level=stop_level)

    def get_flow(self, kind: FrameKind, root: TreeRoot, key: bytes) -> Flow[bytes | None]:
        """The value of ``key``, or None: one node per level."""
        pairs = yield from self.scan_flow(kind, root, [(key, key + b"\x00")])
        return pairs[0][1] if pairs else None

    def scan_flow(self, kind: FrameKind, root: TreeRoot,
                  ranges: KeyRanges) -> Flow[list[tuple[bytes, bytes]]]:
        """Every (key, value) with ``lo <= key < hi`` for some range, in key order.
        One walk: one batch per tree level."""
        spans = _merge_ranges(ranges)
        out: list[tuple[bytes, bytes]] = []

        def visit(node: Node, ref: Ref | None) -> None:
            if isinstance(node, Leaf):
                keys = node.keys
                for lo, hi in spans:
                    a, b = bisect_left(keys, lo), bisect_left(keys, hi)
                    if a < b:
                        out.extend(zip(keys[a:b], node.values[a:b]))

        if spans:
            yield from walk_tree_flow(self, kind, root, visit, ranges=spans)
        out.sort(key=itemgetter(0))  # already in order for a valid tree (linear then)
        return out

    def iter_leaves_flow(self, kind: FrameKind, root: TreeRoot) -> Flow[list[Leaf]]:
        """All leaves, in key order (one batch per level). They are all held at once:
        to stream a large tree, use :meth:`walk_tree_flow`."""
        leaves: list[Leaf] = []

        def visit(node: Node, ref: Ref | None) -> None:
            if isinstance(node, Leaf):
                leaves.append(node)

        yield from walk_tree_flow(self, kind, root, visit)
        return leaves

    def node_refs_flow(self, kind: FrameKind, root: TreeRoot) -> Flow[list[Ref]]:
        """Refs of every node of a tree (the root first). Only the internal levels are
        read: the leaves' refs are in their parents."""
        refs = [root.ref] if root.ref is not None else []

        def visit(node: Node, ref: Ref | None) -> None:
            if isinstance(node, Internal):
                refs.extend(c.ref for c in node.children)

        yield from walk_tree_flow(self, kind, root, visit, stop_level=1)
        return refs

    def content_refs_flow(self, entry: Entry) -> Flow[list[Ref]]:
        """Every frame holding a file's content: index frames and chunks (a packed file:
        its PACK frame, shared with the other files of its pack)."""
        if entry.layout != LAYOUT_INDEX:
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
                j = bisect_left(leaf.keys, key)
                if j < len(leaf.keys) and leaf.keys[j] == key:
                    value = leaf.values[j]
                    break
        else:
            value = yield from self.get_flow(FrameKind.TOC_NODE, c.toc, key)
        if value is None:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        return decode_entry(value)

    def dir_items_flow(self, path: str = "") -> Flow[list[tuple[bytes, bytes]]]:
        """(TOC key, encoded entry) of the direct children of a directory, in key order.
        One walk finds the directory's own entry (NotFoundError, or InvalidPathError if it
        is not a directory) and its children: one round trip per tree level. The root's
        children come from the commit's root-listing leaves when it has them (one)."""
        path = normalize_path(path)
        lo, hi = child_range(path)
        c = self.commit
        if path == "" and c.root_leaves and c.root_leaves_complete:
            leaves = yield from self.nodes_flow(FrameKind.TOC_NODE, list(c.root_leaves))
            pairs: list[tuple[bytes, bytes]] = []
            for leaf in leaves:
                if not isinstance(leaf, Leaf):
                    raise IntegrityError("root listing points at a non-leaf node")
                a, b = bisect_left(leaf.keys, lo), bisect_left(leaf.keys, hi)
                pairs.extend(zip(leaf.keys[a:b], leaf.values[a:b]))
            return pairs
        if path == "":
            return (yield from self.scan_flow(FrameKind.TOC_NODE, c.toc, [(lo, hi)]))
        own, pairs = yield from self._with_own_entry_flow(path, [(lo, hi)])
        if not own.is_dir:
            raise InvalidPathError(f"not a directory: {path}")
        return pairs

    def _with_own_entry_flow(self, path: str, ranges: KeyRanges
                             ) -> Flow[tuple[Entry, list[tuple[bytes, bytes]]]]:
        """``path``'s entry and the pairs in ``ranges``, in one walk."""
        key = toc_key(path)
        pairs = yield from self.scan_flow(FrameKind.TOC_NODE, self.commit.toc,
                                          [(key, key + b"\x00"), *ranges])
        at = bisect_left(pairs, key, key=itemgetter(0))
        if at == len(pairs) or pairs[at][0] != key:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        own = decode_entry(pairs.pop(at)[1], lazy_refs=True)
        return own, pairs

    def listdir_flow(self, path: str = "") -> Flow[list[tuple[str, Entry]]]:
        """Direct children of a directory, sorted by name. The entries' refs are decoded
        when first used (a listing never needs them)."""
        pairs = yield from self.dir_items_flow(path)
        return [(split_path(key_path(k))[1], decode_entry(v, lazy_refs=True))
                for k, v in pairs]

    def walk_flow(self, path: str = "") -> Flow[list[tuple[str, Entry]]]:
        """Every descendant of ``path`` (or ``path`` itself if it is not a directory),
        as (archive path, entry), sorted by path components. One walk (one round trip per
        tree level); the entries' refs are decoded when first used."""
        path = normalize_path(path)
        if path:
            own, pairs = yield from self._with_own_entry_flow(path, subtree_ranges(path))
            if not own.is_dir:
                return [(path, own)]
        else:
            pairs = yield from self.scan_flow(FrameKind.TOC_NODE, self.commit.toc,
                                              subtree_ranges(path))
        items = [(key_path(k), decode_entry(v, lazy_refs=True)) for k, v in pairs]
        del pairs
        items.sort(key=lambda pe: pe[0].split("/"))
        return items

    # -- file data ---------------------------------------------------------------

    def chunk_refs_flow(self, entry: Entry, first: int, stop: int) -> Flow[list[Ref]]:
        """The refs of chunks ``first <= n < stop`` (a packed file's one chunk: its PACK
        frame's ref; :meth:`content_kind` says which kind of frame they name)."""
        if entry.layout != LAYOUT_INDEX:
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
        """Authenticated, checked plaintext of chunks ``first <= n < stop`` (a packed
        file's one chunk: :meth:`packed_chunk_flow`)."""
        if entry.layout == LAYOUT_PACKED:
            if first >= stop:
                return []
            return [(yield from self.packed_chunk_flow(entry))]
        refs = yield from self.chunk_refs_flow(entry, first, stop)
        blobs = yield Read(tuple(r.byte_range for r in refs))
        return self.decode_chunks(entry, first, refs, blobs)

    def decode_chunks(self, entry: Entry, first: int, refs: Sequence[Ref],
                      blobs: Sequence[bytes | memoryview]) -> list[ChunkData]:
        """:meth:`decode_chunk` of chunks ``first, first + 1, ...`` (one per ref and blob),
        their frames opened as one batch (:func:`lockbox.crypto.base.open_frames`: the
        browser's worker pool; elsewhere one after the other). The same checks and the same
        first error as :meth:`decode_chunk` in a loop; no chunk comes back unless every
        chunk of the batch authenticated and passed its checks."""
        if entry.layout == LAYOUT_PACKED:
            return [self.decode_chunk(entry, first + k, ref, blob)
                    for k, (ref, blob) in enumerate(zip(refs, blobs))]
        jobs, pending = self.chunk_jobs(refs, blobs)
        results = open_frames(self.opener.crypto, jobs, self.chunk_decode, CHUNK_PLAIN_LIMIT)
        return self.checked_chunks(entry, first, results, pending)

    def content_kind(self, entry: Entry) -> FrameKind:
        """The kind of frame ``entry``'s chunk refs name: PACK for a packed file (layout
        2), DATA_CHUNK otherwise."""
        return FrameKind.PACK if entry.layout == LAYOUT_PACKED else FrameKind.DATA_CHUNK

    def chunk_jobs(self, refs: Sequence[Ref], blobs: Sequence[bytes | memoryview],
                   kind: FrameKind = FrameKind.DATA_CHUNK
                   ) -> tuple[list[FrameJob], LockboxError | None]:
        """The ``FrameOpener.job_for_ref`` of each frame (of ``kind``: DATA_CHUNK, or
        PACK for a packed file, :meth:`content_kind`), up to the first that fails its
        checks: (jobs, that error or None) -- the error is raised by
        :meth:`checked_chunks` after the chunks before it, as the one-by-one loop would."""
        jobs: list[FrameJob] = []
        for ref, blob in zip(refs, blobs):
            try:
                jobs.append(self.opener.job_for_ref(blob, ref, kind))
            except LockboxError as exc:
                return jobs, exc
        return jobs, None

    def chunk_decode(self, plain: bytes) -> bytes | memoryview:
        """A data chunk or PACK frame's payload from its authenticated plaintext
        (``decode_plain``; both kinds have the same bound)."""
        return decode_plain(self.opener.codec, plain, CHUNK_PLAIN_LIMIT)

    def checked_chunks(self, entry: Entry, first: int, results: Sequence[FrameResult],
                       pending: LockboxError | None = None, *,
                       numbers: Sequence[int] | None = None) -> list[ChunkData]:
        """:meth:`check_chunk` of each opened chunk in order (chunk ``first`` first, or
        chunks ``numbers[k]`` when given): the first error met -- a frame's, a check's,
        then ``pending`` -- is raised, and then no chunk of the batch is returned."""
        out: list[ChunkData] = []
        for k, payload in enumerate(results):
            if isinstance(payload, LockboxError):
                raise payload
            out.append(self.check_chunk(entry, first + k if numbers is None else numbers[k],
                                        payload))
        if pending is not None:
            raise pending
        return out

    def decode_chunk(self, entry: Entry, chunk_no: int, ref: Ref,
                     blob: bytes | memoryview) -> ChunkData:
        """Open chunk ``chunk_no``'s frame (``ref``, fetched as ``blob``) and check it
        (:meth:`check_chunk`). A packed file's PACK frame is kept opened (:meth:`keep_pack`)."""
        if entry.layout == LAYOUT_PACKED:
            if chunk_no != 0:
                raise IntegrityError(f"a packed file has no chunk {chunk_no}")
            payload = self.opener.open_ref(blob, ref, FrameKind.PACK)
            return self.check_member(entry, self.keep_pack(ref, payload))
        payload = self.opener.open_ref(blob, ref, FrameKind.DATA_CHUNK)
        return self.check_chunk(entry, chunk_no, payload)

    def check_chunk(self, entry: Entry, chunk_no: int,
                    payload: bytes | memoryview | OpenedPack) -> ChunkData:
        """The chunk in an authenticated payload, checked against ``entry`` (FORMAT.md §10:
        file id, chunk number, size, and the last chunk's metadata). For a packed file
        the payload is its PACK frame's (or that pack opened): :meth:`check_member`."""
        if entry.layout == LAYOUT_PACKED:
            if chunk_no != 0:
                raise IntegrityError(f"a packed file has no chunk {chunk_no}")
            pack = payload if isinstance(payload, OpenedPack) else OpenedPack.decode(payload)
            return self.check_member(entry, pack)
        assert not isinstance(payload, OpenedPack)
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

    # -- packed files (layout 2): one member of a PACK frame -----------------------------

    def cached_pack(self, ref: Ref) -> OpenedPack | None:
        """The PACK frame ``ref`` names, if this view holds it opened."""
        pack: OpenedPack | None = self.packs.get((ref.frame_offset, ref.tag))
        return pack

    def keep_pack(self, ref: Ref, payload: bytes | memoryview) -> OpenedPack:
        """The authenticated payload of the PACK frame ``ref`` names, decoded (its header's
        checks: FormatError) and kept for the next members read (:attr:`packs`)."""
        pack = OpenedPack.decode(payload)
        self.packs_opened += 1
        self.packs.put((ref.frame_offset, ref.tag), pack, len(payload) + 64 * len(pack.spans))
        return pack

    def check_member(self, entry: Entry, pack: OpenedPack) -> ChunkData:
        """A packed file's content: member ``entry.member_no`` of its opened pack (none:
        IntegrityError), decoded (``decode_chunk``: FormatError), with the checks of chunk
        0 of a one-chunk file (file id, chunk number 0, metadata present, its size and
        content hash, the data's length) and the whole file's BLAKE3 content hash (each
        an IntegrityError). FORMAT.md §10 "Packs"."""
        header, data = decode_chunk(pack.member(entry.member_no))
        if header.file_id != entry.file_id or header.chunk_no != 0:
            raise IntegrityError(f"pack member {entry.member_no} does not belong here "
                                 "(moved or swapped)")
        m = header.meta
        if m is None or len(data) != entry.size:
            raise IntegrityError(f"pack member {entry.member_no} has the wrong size")
        if m.size != entry.size or m.content_hash != entry.content_hash:
            raise IntegrityError(f"pack member {entry.member_no}'s metadata does not match "
                                 "the entry")
        hasher = self.opener.crypto.blake3()
        hasher.update(data)
        if hasher.digest() != entry.content_hash:
            raise IntegrityError("content does not match its BLAKE3 content hash")
        return ChunkData(0, data, header, entry.content_hash)

    def packed_chunk_flow(self, entry: Entry) -> Flow[ChunkData]:
        """A packed file's one chunk (:meth:`check_member`): its PACK frame fetched and
        opened unless this view holds it opened."""
        ref = entry.refs[0]
        pack = self.cached_pack(ref)
        if pack is None:
            blobs = yield Read((ref.byte_range,))
            pack = self.keep_pack(ref, self.opener.open_ref(blobs[0], ref, FrameKind.PACK))
        return self.check_member(entry, pack)

    def batch(self, wanted: Sequence[tuple[Entry, int, Ref]]) -> ContentBatch:
        """A :class:`ContentBatch` of chunks of several files."""
        return ContentBatch(self, wanted)

    def batch_flow(self, wanted: Sequence[tuple[Entry, int, Ref]]) -> Flow[list[ChunkData]]:
        """The chunks of a :class:`ContentBatch`: one ``Read``, one ``open_frames`` batch,
        each frame fetched and opened once; raises its first error."""
        batch = ContentBatch(self, wanted)
        blobs = (yield Read(batch.ranges)) if batch.ranges else []
        jobs, pending = batch.jobs(blobs)
        del blobs
        results = open_frames(self.opener.crypto, jobs, self.chunk_decode, CHUNK_PLAIN_LIMIT)
        return batch.check(results, pending)

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


class ContentBatch:
    """Chunks of several files read together: one ``Read`` of :attr:`ranges`, one
    :func:`~lockbox.crypto.base.open_frames` batch of :meth:`jobs`, then :meth:`check`.
    Each frame is fetched and opened once: a PACK frame shared by several of the packed
    files asked for once, and one the view holds opened (``ArchiveView.packs``) not at all.

    ``wanted``: ``(entry, chunk number, ref)`` of each chunk (the refs from
    ``ArchiveView.chunk_refs_flow``; a packed file's chunk 0 is its PACK frame's ref)."""

    def __init__(self, view: ArchiveView, wanted: Sequence[tuple[Entry, int, Ref]]) -> None:
        self.view = view
        self.wanted = list(wanted)
        self.frames: list[tuple[Ref, FrameKind]] = []  # to fetch and open, by first use
        # per wanted chunk: the index of its frame in ``frames``, or the pack held opened
        self._slots: list[int | OpenedPack] = []
        self.failed_at = -1  # the wanted chunk :meth:`check`'s error belongs to
        packs: dict[tuple[int, bytes], int] = {}
        for entry, _, ref in self.wanted:
            if entry.layout == LAYOUT_PACKED:
                pack = view.cached_pack(ref)
                if pack is not None:
                    self._slots.append(pack)
                    continue
                key = (ref.frame_offset, ref.tag)
                at = packs.get(key)
                if at is None:
                    at = packs[key] = len(self.frames)
                    self.frames.append((ref, FrameKind.PACK))
                self._slots.append(at)
            else:
                self._slots.append(len(self.frames))
                self.frames.append((ref, FrameKind.DATA_CHUNK))

    @property
    def ranges(self) -> tuple[ByteRange, ...]:
        """The byte ranges of the frames to fetch (one per frame, in order)."""
        return tuple(ref.byte_range for ref, _ in self.frames)

    def jobs(self, blobs: Sequence[bytes | memoryview]
             ) -> tuple[list[FrameJob], LockboxError | None]:
        """``job_for_ref`` of each fetched frame with its kind, up to the first that fails
        its checks: (jobs, that error or None), as ``ArchiveView.chunk_jobs``."""
        jobs: list[FrameJob] = []
        job_for_ref = self.view.opener.job_for_ref
        for (ref, kind), blob in zip(self.frames, blobs):
            try:
                jobs.append(job_for_ref(blob, ref, kind))
            except LockboxError as exc:
                return jobs, exc
        return jobs, None

    def check(self, results: Sequence[FrameResult],
              pending: LockboxError | None = None) -> list[ChunkData]:
        """One checked chunk per wanted chunk, in order (``check_chunk``, or
        ``check_member`` of its pack, each pack opened kept by the view). The first error
        met in the order of the wanted chunks -- a frame's, a check's, ``pending`` -- is
        raised (:attr:`failed_at` says whose), and then nothing is returned."""
        view = self.view
        opened: dict[int, OpenedPack] = {}
        out: list[ChunkData] = []
        for i, ((entry, chunk_no, ref), slot) in enumerate(zip(self.wanted, self._slots)):
            self.failed_at = i
            if isinstance(slot, OpenedPack):
                out.append(view.check_member(entry, slot))
                continue
            if slot >= len(results):
                assert pending is not None, "a frame without its result"
                raise pending
            payload = results[slot]
            if isinstance(payload, LockboxError):
                raise payload
            if entry.layout == LAYOUT_PACKED:
                pack = opened.get(slot)
                if pack is None:
                    pack = opened[slot] = view.keep_pack(ref, payload)
                out.append(view.check_member(entry, pack))
            else:
                out.append(view.check_chunk(entry, chunk_no, payload))
        self.failed_at = -1
        return out


def _merge_ranges(ranges: KeyRanges) -> list[tuple[bytes, bytes]]:
    """Non-empty ranges, sorted and merged (so a key is reported once, in order)."""
    out: list[tuple[bytes, bytes]] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out
