"""The ``.lbox`` format behind the format-neutral protocol (``lockbox.protocol``).

:class:`LboxFormat` recognises the superblock magic and opens (unlocks) an archive
with :func:`~lockbox.formats.lbox.opening.open_flow`; :class:`LboxSession` answers the
protocol's flows from an :class:`~lockbox.formats.lbox.view.ArchiveView`. Secrets and
settings come in :class:`~lockbox.protocol.OpenOptions`:

* ``secrets``: ``password`` (str or bytes), ``identity`` (an ``Identity``), ``link``
  (a share link's key: a ``LinkSecret`` or its ``lbk1-...`` text),
  ``known_key`` (``(archive_id, content_key)``, for a writer's own re-open);
* ``settings``: ``crypto``, ``codec``, ``cache`` (a ``PageCache`` or a limit),
  ``limits`` (``UnlockLimits``), ``generation`` (an older commit, read-only),
  ``walk_limits`` (``WalkLimits``).

The session also exposes ``view`` (the ``.lbox`` reader itself) for what only this
format has: env values, key slots, the commit record. ``lockbox.open`` wraps a session
of this format in :class:`~lockbox.formats.lbox.archive.Lockbox` (``facade`` below).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ...cache import PageCache
from ...drivers import Flow
from ...errors import InvalidPathError, LockboxError, NotFoundError
from ...info import EntryInfo
from ...platform import default_codec, default_crypto
from ...protocol import CheckReport, Emit, OpenOptions, SessionInfo
from .info import entry_info
from .opening import open_flow
from .view import ArchiveView
from .wire.constants import SLOT_MAGIC, SLOT_SIZE, EntryType, FrameKind
from .wire.entry import (
    Entry,
    decode_entry,
    key_path,
    listed_fields,
    normalize_path,
    subtree_ranges,
    toc_key,
)
from .wire.keydir import keydir_has_commitment
from .wire.node import Leaf, Node
from .wire.refs import Ref

__all__ = ["LboxFormat", "LboxSession", "EMIT_BATCH", "RECENT_FILES", "RECENT_LEAVES",
           "listed_info"]

EMIT_BATCH = 4096  # entries handed to ``emit`` at a time by walk_flow
RECENT_FILES = 1 << 18  # file paths a session remembers from its listings
RECENT_LEAVES = 1 << 14  # TOC leaves a session remembers from its walks
_LAST = 1 << 62  # read_order's key of a file without a known ref: after every frame


def listed_info(path: str, buf: bytes | memoryview) -> EntryInfo:
    """``entry_info(path, decode_entry(buf))`` of a listing: a FILE or DIR entry straight
    from its bytes (:func:`~.wire.entry.listed_fields`, the same checks, no ``Entry``
    built); anything else -- a symlink, damage -- through the checked decoder, which
    raises the precise ``FormatError``."""
    try:
        f = listed_fields(buf)
    except (IndexError, ValueError):
        f = None
    if f is None:
        return entry_info(path, decode_entry(bytes(buf), lazy_refs=True))
    if f[0] == 1:
        at = f[5]
        return EntryInfo(path, "file", f[1], f[2], f[3], f[4], buf[at:at + 32].hex())
    return EntryInfo(path, "dir", f[1], f[2], 0, 0, "")


def _leaf_entry(leaf: Leaf, key: bytes) -> Entry | None:
    j = bisect_left(leaf.keys, key)
    if j == len(leaf.keys) or leaf.keys[j] != key:
        return None
    return decode_entry(leaf.values[j], lazy_refs=True)


class LboxFormat:
    """The lockbox archive format (docs/FORMAT.md)."""

    name: ClassVar[str] = "lbox"
    title: ClassVar[str] = "lockbox archive"
    extensions: ClassVar[tuple[str, ...]] = (".lbox",)
    probe_size: ClassVar[int] = SLOT_SIZE + len(SLOT_MAGIC)
    encrypted: ClassVar[bool] = True
    writable: ClassVar[bool] = True
    # The facades ``lockbox.open`` / ``lockbox.open_async`` give for this format.
    facade: ClassVar[str] = "lockbox.formats.lbox.archive:Lockbox"
    async_facade: ClassVar[str] = "lockbox.formats.lbox.archive:AsyncLockbox"

    @staticmethod
    def probe(head: bytes) -> bool:
        """Either superblock slot starts with the magic (slot 0 may be damaged)."""
        return head[:len(SLOT_MAGIC)] == SLOT_MAGIC or \
            head[SLOT_SIZE:SLOT_SIZE + len(SLOT_MAGIC)] == SLOT_MAGIC

    def open_flow(self, size: int | None, options: OpenOptions) -> Flow[LboxSession]:
        s, st = options.secrets, options.settings
        cache = st.get("cache", "auto")
        view = yield from open_flow(
            st.get("crypto") or default_crypto(), st.get("codec") or default_codec(),
            password=s.get("password"), identity=s.get("identity"),
            cache=cache if isinstance(cache, PageCache) else PageCache(cache),
            known_key=s.get("known_key", st.get("known_key")), limits=st.get("limits"),
            generation=st.get("generation"), link=s.get("link"))
        if st.get("walk_limits") is not None:
            view.limits = st["walk_limits"]
        return LboxSession(view, size)


class LboxSession:
    """One unlocked ``.lbox`` archive at one commit, behind the protocol."""

    def __init__(self, view: ArchiveView, size: int | None) -> None:
        self.view = view
        self.size = size
        # Where the files of the last walks and listings are (bounded, oldest dropped): the
        # entries a listing decoded, by path, and the TOC leaves a walk went through, by
        # their first key (with their last key and ref; a file's entry is found again in
        # the cached leaf). Reading a file just listed -- extract, convert -- then needs
        # no tree lookup. Same view, same authenticated nodes.
        self._recent: OrderedDict[str, Entry] = OrderedDict()
        self._leaves: dict[bytes, tuple[bytes, Ref]] = {}
        self._leaf_firsts: list[bytes] | None = None  # sorted keys of _leaves, when known
        self._root_leaf: Leaf | None = None  # the TOC when it is one inline leaf, once walked

    def _remember(self, path: str, e: Entry) -> None:
        self._recent[path] = e
        if len(self._recent) > RECENT_FILES:
            self._recent.popitem(last=False)

    def _remember_leaf(self, first_key: bytes, last_key: bytes, ref: Ref) -> None:
        leaves = self._leaves
        if first_key not in leaves:
            self._leaf_firsts = None
            if len(leaves) >= RECENT_LEAVES:
                del leaves[next(iter(leaves))]
        leaves[first_key] = (last_key, ref)

    def _recent_entry(self, path: str) -> Entry | None:
        e = self._recent.get(path)
        if e is not None:
            return e
        if self._root_leaf is not None:
            return _leaf_entry(self._root_leaf, toc_key(path))
        if not self._leaves:
            return None
        key = toc_key(path)
        firsts = self._leaf_firsts
        if firsts is None:
            firsts = self._leaf_firsts = sorted(self._leaves)
        i = bisect_right(firsts, key) - 1
        if i < 0:
            return None
        last_key, ref = self._leaves[firsts[i]]
        if key > last_key:
            return None
        leaf = self.view.cached_node(FrameKind.TOC_NODE, ref)
        if not isinstance(leaf, Leaf):
            return None  # no longer cached: look it up
        return _leaf_entry(leaf, key)

    def info(self) -> SessionInfo:
        v, c = self.view, self.view.commit
        stats = c.stats
        import datetime as _dt  # only for this (a listing or an add never needs it)

        details: dict[str, Any] = {
            "archive_id": v.archive_id.hex(), "generation": c.generation,
            "committed_at": _dt.datetime.fromtimestamp(c.time_ns / 1e9, _dt.UTC).isoformat(),
            "format_version": v.slot.version,
            "key_commitment": keydir_has_commitment(v.keydir),
            "files": stats.files, "dirs": stats.dirs, "symlinks": stats.symlinks,
            "stored_bytes": stats.stored_bytes, "chunk_size": c.default_chunk_size,
            "key_slots": len(v.key_slots), "env_values": c.env.count,
        }
        return SessionInfo("lbox", True, self.size,
                           entries=stats.files + stats.dirs + stats.symlinks,
                           file_bytes=stats.file_bytes, details=details)

    def stat_flow(self, path: str) -> Flow[EntryInfo]:
        p = normalize_path(path)
        return entry_info(p, (yield from self.view.stat_flow(p)))

    def listdir_flow(self, path: str) -> Flow[list[EntryInfo]]:
        p = normalize_path(path)
        items = yield from self.view.listdir_flow(p)
        out = []
        for name, e in items:
            q = f"{p}/{name}" if p else name
            if e.type == EntryType.FILE:
                self._remember(q, e)
            out.append(entry_info(q, e))
        return out

    def walk_flow(self, path: str, emit: Emit) -> Flow[None]:
        """Streams the TOC leaves (TOC key order puts a directory before its contents):
        one round trip per tree level -- the entry of ``path`` itself comes in the same
        walk (its key sorts before its descendants') -- memory bounded by the view's
        walk limits."""
        p = normalize_path(path)
        batch: list[EntryInfo] = []
        spans = sorted(subtree_ranges(p))
        own_key = toc_key(p) if p else b""
        if p:
            spans = sorted([(own_key, own_key + b"\x00"), *spans])
        own: list[Any] = [] if p else [None]

        def visit(node: Node, ref: Ref | None) -> None:
            if not isinstance(node, Leaf):
                return
            keys, values = node.keys, node.values
            if ref is not None and keys:
                self._remember_leaf(keys[0], keys[-1], ref)
            elif ref is None:  # an inline root, part of the commit record (small)
                self._root_leaf = node
            add = batch.append
            for lo, hi in spans:  # disjoint, in key order: the output stays in key order
                for j in range(bisect_left(keys, lo), bisect_left(keys, hi)):
                    key = keys[j]
                    if p and key == own_key:
                        e = decode_entry(values[j], lazy_refs=True)
                        own.append(e)
                        if e.type != EntryType.DIR:
                            add(entry_info(p, e))
                        continue
                    if not own:  # a descendant without its directory: nothing to list
                        raise NotFoundError(f"no such file or directory in the archive: {p}")
                    add(listed_info(key_path(key), values[j]))
            if len(batch) >= EMIT_BATCH:
                emit(batch[:])
                batch.clear()

        yield from self.view.walk_tree_flow(FrameKind.TOC_NODE, self.view.commit.toc, visit,
                                            ranges=spans)
        if not own:
            raise NotFoundError(f"no such file or directory in the archive: {p}")
        if batch:
            emit(batch)

    def _file(self, path: str) -> Flow[tuple[str, Any]]:
        p = normalize_path(path)
        e = self._recent_entry(p)
        if e is None:
            e = yield from self.view.stat_flow(p)
        if e.type != EntryType.FILE:
            raise InvalidPathError(f"not a file: {p}")
        return p, e

    def read_flow(self, path: str, offset: int, size: int) -> Flow[bytes]:
        """Only the chunks covering the range are fetched; each is authenticated (AEAD,
        pinned tag, file id and chunk number) before its bytes are returned."""
        _, e = yield from self._file(path)
        if offset < 0 or size < 0:
            raise InvalidPathError("negative offset or size")
        end = min(e.size, offset + size)
        if offset >= end:
            return b""
        cs = e.chunk_size
        first, stop = offset // cs, (end - 1) // cs + 1
        chunks = yield from self.view.chunks_flow(e, first, stop)
        data = b"".join(bytes(c.data) for c in chunks)
        start = offset - first * cs
        return data[start:start + (end - offset)]

    def stream_flow(self, path: str, sink: Callable[[bytes | memoryview], None]) -> Flow[int]:
        from .reading import FileReadPlan

        p, e = yield from self._file(path)
        plan = FileReadPlan(e, p, self.view.opener.crypto)
        total = 0
        while (batch := plan.next_batch()) is not None:
            for piece in plan.accept((yield from self.view.chunks_flow(e, *batch))):
                sink(piece)
                total += len(piece)
        return total

    def read_order(self, files: Sequence[EntryInfo]) -> list[EntryInfo]:
        """``files`` in the order to read them: where their content is stored -- the first
        ref's frame offset, then (a packed file) its member number -- so that the files
        of one PACK frame follow each other and each pack is fetched and opened once
        (extract, convert: :data:`lockbox.extract.ReadOrder`). An entry whose ref does
        not decode comes first (its error is the first one raised, naming it); a file
        without refs, or whose entry this session no longer holds from the walk that
        listed it (no I/O here), keeps its relative place at the end. Pure; the same
        objects, each once (a stable sort)."""
        def key(info: EntryInfo) -> tuple[int, int]:
            try:
                e = self._recent_entry(info.path)
                if e is None or not e.refs:
                    return (_LAST, 0)
                return (e.refs[0].frame_offset, e.member_no)
            except LockboxError:  # a damaged entry or ref: read it first, its error names it
                return (-1, 0)

        return sorted(files, key=key)

    def verify_flow(self, progress: Callable[[str, int], None] | None = None
                    ) -> Flow[CheckReport]:
        from .verify import verify_flow

        try:
            report = yield from verify_flow(self.view, progress=progress)
        except LockboxError as exc:  # a structure too damaged to walk
            return CheckReport(problems=[f"{type(exc).__name__}: {exc}"])
        return CheckReport(entries_checked=report.files_checked,
                           bytes_checked=report.bytes_checked, problems=list(report.problems))
