"""The viewer's ``.lbox`` extension: what only a lockbox archive has, in one place.

Everything else goes through the format-neutral protocol (``lockbox.protocol``) in
:mod:`lockbox.viewer.session`. Here, through the session's ``view`` (the ``.lbox``
reader, :class:`~lockbox.formats.lbox.view.ArchiveView`):

* the unlock form: which secrets the superblock's key slots take (:func:`unlock_methods`),
  and the identity file (:func:`identity_secret`);
* the archive panel: key slots, the slot that unlocked it, the TOC height;
* env values (names and sizes, then one value when revealed);
* reuse of verified plaintext chunks (:class:`PlainCache`): a preview's chunks are not
  fetched again by the download of the same file (the network panel counts them);
* folder ``.zip`` files whose small files are fetched many at a time through their chunk
  refs (:func:`read_chunks_flow`: one round trip per batch, not one per file). Packed
  small files (FORMAT.md §10 "Packs": members of a shared PACK frame) are read through
  their pack: each PACK frame a batch needs is fetched and opened once for all its
  members, and stays opened in the view (``ArchiveView.packs``), so the zip of a folder,
  and previews and downloads of the files of one pack, open it once, not once per file.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from ..crypto.base import open_frames
from ..drivers import Flow, Read
from ..errors import FormatError, LockboxError, UsageError
from ..formats.lbox.info import SlotInfo, entry_info
from ..formats.lbox.keys import Identity
from ..formats.lbox.reading import FileReadPlan, drive_pipelined, pipelined_stream_flow
from ..formats.lbox.session import LboxSession
from ..formats.lbox.view import CHUNK_PLAIN_LIMIT, ArchiveView, ChunkData, ContentBatch
from ..formats.lbox.wire.constants import EntryType
from ..formats.lbox.wire.entry import LAYOUT_PACKED, Entry, normalize_path
from ..formats.lbox.wire.keydir import LinkSlot, PasswordSlot, RecipientSlot, decode_keydir
from ..formats.lbox.wire.refs import Ref
from ..formats.lbox.wire.superblock import decode_superblock
from ..info import EntryInfo
from ..ranges import ByteRange, coalesce
from .driving import Recorder
from .messages import AtPath, ViewerError, error_info

__all__ = ["LboxExtension", "PlainCache", "unlock_methods", "identity_secret",
           "read_chunks_flow", "file_batches", "stored_order", "PLAIN_CACHE_BYTES",
           "PLAIN_CACHE_FILE_MAX",
           "ZIP_SMALL_FILE", "ZIP_BATCH_BYTES", "ZIP_BATCH_FILES", "ZIP_BATCH_PACKS",
           "ZIP_BATCH_MEMBERS", "ZIP_GAP_BYTES"]

# Verified plaintext chunks kept for reuse (a preview, then the download of the same file):
# at most this much in all (least recently used first out); a whole-file read keeps its
# chunks only for files up to PLAIN_CACHE_FILE_MAX bytes (previews always keep theirs).
PLAIN_CACHE_BYTES = 32 * 1024 * 1024
PLAIN_CACHE_FILE_MAX = 16 * 1024 * 1024
# Folder .zip: files up to ZIP_SMALL_FILE bytes are fetched together, up to
# ZIP_BATCH_BYTES of frames and ZIP_BATCH_FILES files of their own frames per round trip;
# packed files come with their PACK frames (each counted once, at most ZIP_BATCH_PACKS
# new ones per round trip: a pack's plaintext may be 4 MiB whatever its frame's size), at
# most ZIP_BATCH_MEMBERS files in all;
# gaps of up to ZIP_GAP_BYTES between frames are read through (one request, not two).
ZIP_SMALL_FILE = 1024 * 1024
ZIP_BATCH_BYTES = 8 * 1024 * 1024
ZIP_BATCH_FILES = 1024
ZIP_BATCH_PACKS = 8
ZIP_BATCH_MEMBERS = 8192
ZIP_GAP_BYTES = 16 * 1024


# -- the unlock form -----------------------------------------------------------------------


def unlock_methods(head: bytes) -> tuple[list[str], int]:
    """(secrets the key slots take: ``password``, ``identity`` and/or ``link``, the
    newest generation) from the superblock (the first 16 KiB, read by the probe). A key
    directory that cannot be read offers password and identity."""
    slots = decode_superblock(head)
    methods: set[str] = set()
    known = True
    for slot in slots:
        if isinstance(slot.keydir, bytes):
            try:
                for ks in decode_keydir(slot.keydir):
                    if isinstance(ks, PasswordSlot):
                        methods.add("password")
                    elif isinstance(ks, RecipientSlot):
                        methods.add("identity")
                    elif isinstance(ks, LinkSlot):
                        methods.add("link")
            except LockboxError:
                known = False
        else:
            known = False
    if not known or not methods:
        methods = {"password", "identity"}
    return sorted(methods), slots[0].generation


def identity_secret(text: str) -> Identity:
    """The identity of an identity file's text, or a message saying what it is not."""
    try:
        return Identity.decode(text)
    except FormatError as exc:
        raise ViewerError(error_info(
            "usage", "Not an identity file",
            "This file is not a lockbox identity (it needs a line starting with "
            "LOCKBOX-IDENTITY-1:).", detail=str(exc))) from None


# -- verified chunks, kept ------------------------------------------------------------------

_ChunkKey = tuple[bytes, bytes, int]


def _chunk_key(entry: Entry, chunk_no: int) -> _ChunkKey:
    """A file's chunk, whatever its path: (file id, content hash, chunk number)."""
    return (entry.file_id, entry.content_hash, chunk_no)


class PlainCache:
    """Verified plaintext chunks of recently read files (``ChunkData`` as
    ``ArchiveView.decode_chunk`` returned them), least recently used first out, at most
    ``limit_bytes`` of data. One per archive."""

    def __init__(self, limit_bytes: int = PLAIN_CACHE_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.size_bytes = 0
        self.hits = 0
        self.hit_bytes = 0
        self._items: OrderedDict[_ChunkKey, ChunkData] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: _ChunkKey) -> ChunkData | None:
        chunk = self._items.get(key)
        if chunk is not None:
            self._items.move_to_end(key)
            self.hits += 1
            self.hit_bytes += len(chunk.data)
        return chunk

    def put(self, key: _ChunkKey, chunk: ChunkData) -> None:
        size = len(chunk.data)
        if size > self.limit_bytes:
            return
        whole = chunk.data.obj
        if whole is not None and memoryview(whole).nbytes > 2 * size + 4096:
            # a packed file's data is a slice of its pack's payload: keep only its bytes,
            # not the whole pack alive behind it
            chunk = replace(chunk, data=memoryview(bytes(chunk.data)))
        old = self._items.pop(key, None)
        if old is not None:
            self.size_bytes -= len(old.data)
        self._items[key] = chunk
        self.size_bytes += size
        while self.size_bytes > self.limit_bytes:
            _, dropped = self._items.popitem(last=False)
            self.size_bytes -= len(dropped.data)

    def clear(self) -> None:
        self._items.clear()
        self.size_bytes = 0


def _gather_flow(flows: Sequence[Flow[Any]]) -> Flow[list[Any]]:
    """Run several flows side by side: each round trip is the union of the batches they
    ask for at that step (one ``Read``), and each flow gets its own blobs back."""
    results: list[Any] = [None] * len(flows)
    pending: dict[int, Read] = {}
    for i, flow in enumerate(flows):
        try:
            pending[i] = next(flow)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = list(pending)
        blobs = yield Read(tuple(r for i in order for r in pending[i].ranges))
        at = 0
        asked, pending = pending, {}
        for i in order:
            n = len(asked[i].ranges)
            try:
                pending[i] = flows[i].send(blobs[at:at + n])
            except StopIteration as stop:
                results[i] = stop.value
            at += n
    return results


def _at_path_flow(flow: Flow[Any], path: str) -> Flow[Any]:
    """``flow``, with its lockbox errors naming ``path`` (the file being read)."""
    try:
        return (yield from flow)
    except LockboxError as exc:
        raise AtPath(exc, path) from exc


def _cut(wanted: Sequence[ByteRange], merged: Sequence[ByteRange],
         blobs: Sequence[bytes]) -> list[memoryview]:
    """Each wanted range out of the blobs of the (sorted, disjoint) merged ranges that
    cover them (``ranges.split_coalesced`` with a bisection: batches hold many ranges),
    as views of those blobs (bytes: immutable, safe to keep)."""
    starts = [m.offset for m in merged]
    out = []
    for w in wanted:
        k = bisect_right(starts, w.offset) - 1
        start = w.offset - merged[k].offset
        out.append(memoryview(blobs[k])[start:start + w.size])
    return out


# One read of chunks: (path, entry, first chunk, stop chunk).
_ChunkAsk = tuple[str, Entry, int, int]


def read_chunks_flow(view: ArchiveView, asks: Sequence[_ChunkAsk], cache: PlainCache,
                     keep: bool) -> Flow[list[list[ChunkData]]]:
    """Authenticated plaintext of chunks ``first <= n < stop`` of each asked file, with
    ``ArchiveView``'s checks (``check_chunk``; a packed file: ``check_member`` of its
    pack), and in few round trips whatever the number of files: the chunk refs of every
    file at once (an index frame read, for files with many chunks: one round trip for
    all), then every frame in one ``Read`` whose ranges less than ``ZIP_GAP_BYTES`` apart
    are read as one, opened as one batch (``ContentBatch``: a PACK frame shared by
    several asked files is fetched and opened once; one the view holds opened, not at
    all). Chunks found in ``cache`` are not fetched; those fetched are put there when
    ``keep``. The first error, in the order of the asks, is raised naming its file
    (``AtPath``), and then nothing is returned."""
    got: list[dict[int, ChunkData]] = []
    missing: list[list[int]] = []
    for _, e, first, stop in asks:
        have: dict[int, ChunkData] = {}
        for n in range(first, stop):
            c = cache.get(_chunk_key(e, n))
            if c is not None:
                have[n] = c
        got.append(have)
        missing.append([n for n in range(first, stop) if n not in have])
    todo = [k for k, m in enumerate(missing) if m]
    if todo:
        refs = yield from _gather_flow([
            _at_path_flow(view.chunk_refs_flow(asks[k][1], missing[k][0], missing[k][-1] + 1),
                          asks[k][0]) for k in todo])
        owners: list[tuple[int, int]] = []  # (ask, chunk number) of each wanted chunk
        wanted: list[tuple[Entry, int, Ref]] = []
        for k, file_refs in zip(todo, refs):
            lo, e = missing[k][0], asks[k][1]
            for n in missing[k]:
                owners.append((k, n))
                wanted.append((e, n, file_refs[n - lo]))
        batch = ContentBatch(view, wanted)
        ranges = batch.ranges
        blobs: Sequence[bytes | memoryview] = []
        if ranges:
            merged = coalesce(ranges, max_gap=ZIP_GAP_BYTES)
            blobs = _cut(ranges, merged, (yield Read(tuple(merged))))
        # one batch (crypto.base.open_frames); the first error, in order, as one file
        # after the other would meet it
        jobs, pending = batch.jobs(blobs)
        del blobs
        results = (open_frames(view.opener.crypto, jobs, view.chunk_decode, CHUNK_PLAIN_LIMIT)
                   if jobs else [])
        try:
            chunks = batch.check(results, pending)
        except LockboxError as exc:
            raise AtPath(exc, asks[owners[batch.failed_at][0]][0]) from exc
        for (k, n), c in zip(owners, chunks):
            got[k][n] = c
            if keep:
                cache.put(_chunk_key(asks[k][1], n), c)
    return [[got[k][n] for n in range(first, stop)]
            for k, (_, _, first, stop) in enumerate(asks)]


def stored_order(items: Sequence[tuple[str, Entry]]) -> list[tuple[str, Entry]]:
    """``items`` (path order) with the files after everything else, in the order their
    content is stored: by their first frame's offset, a pack's members by member number
    (the rest keeps its order). A file whose ref does not decode comes first: reading it
    raises its error, naming it."""
    def stored_at(item: tuple[str, Entry]) -> tuple[int, int]:
        e = item[1]
        try:
            return (e.refs[0].frame_offset, e.member_no) if len(e.refs) else (0, 0)
        except LockboxError:
            return (-1, 0)

    files = [it for it in items if it[1].type == EntryType.FILE]
    return [it for it in items if it[1].type != EntryType.FILE] + sorted(files, key=stored_at)


def file_batches(items: Sequence[tuple[str, Entry]], start: int,
                 opened: Callable[[Ref], bool] | None = None) -> list[int]:
    """Indexes of the small files to fetch together, from ``items[start]`` (a small file)
    on: the following small files (folders and links need no read, larger files are
    streamed alone) up to ``ZIP_BATCH_BYTES`` of frames to fetch, ``ZIP_BATCH_FILES``
    files with frames of their own and ``ZIP_BATCH_MEMBERS`` files in all. A packed file
    brings its PACK frame, counted once for all its files, at most ``ZIP_BATCH_PACKS``
    of them; one that ``opened(ref)`` says the view holds opened costs nothing."""
    out: list[int] = []
    total = 0
    own = 0
    packs: set[tuple[int, bytes]] = set()
    for i in range(start, len(items)):
        e = items[i][1]
        if e.type != EntryType.FILE or e.size > ZIP_SMALL_FILE:
            continue
        if len(out) >= ZIP_BATCH_MEMBERS:
            break
        if e.layout == LAYOUT_PACKED:
            try:
                ref = e.refs[0]
            except LockboxError:  # read alone: its error names it
                if not out:
                    out.append(i)
                break
            key = (ref.frame_offset, ref.tag)
            if key not in packs and not (opened is not None and opened(ref)):
                if out and (len(packs) >= ZIP_BATCH_PACKS or
                            total + ref.frame_size > ZIP_BATCH_BYTES):
                    break
                packs.add(key)
                total += ref.frame_size
        else:
            if out and (total + e.size > ZIP_BATCH_BYTES or own >= ZIP_BATCH_FILES):
                break
            own += 1
            total += e.size
        out.append(i)
    return out


# -- the extension --------------------------------------------------------------------------


class LboxExtension:
    """An unlocked ``.lbox`` archive's extras, over the viewer's recorder."""

    def __init__(self, session: LboxSession, source: Recorder) -> None:
        self.session = session
        self.view = session.view
        self.source = source
        self.plain = PlainCache()

    def _label(self, what: str) -> None:
        self.source.label = what

    # -- the archive panel and env values

    def info(self) -> dict[str, Any]:
        """Key slots (``slots``, ``unlocked_slot``, ``unlocked_with``) and the TOC height."""
        v = self.view
        slots = [SlotInfo.of(s) for s in v.key_slots]
        used = next((s for s in slots if s.slot_id == v.unlocked_slot_id), None)
        return {"slots": [{"slot_id": s.slot_id, "kind": s.kind, "detail": s.detail}
                          for s in slots],
                "unlocked_slot": v.unlocked_slot_id,
                "unlocked_with": used.kind if used else "",
                "toc_height": v.commit.toc.height}

    async def env(self) -> list[dict[str, Any]]:
        self._label("env")
        items = await self.source.run(self.view.env_items_flow())
        return [{"name": k, "size": len(v)} for k, v in items]

    async def env_value(self, name: str) -> dict[str, Any]:
        self._label("env")
        value = await self.source.run(self.view.env_get_flow(name))
        try:
            return {"name": name, "text": value.decode("utf-8"), "binary": False}
        except UnicodeDecodeError:
            return {"name": name, "text": value.hex(), "binary": True}

    def reused(self) -> dict[str, int]:
        """Chunks served from the plaintext cache (``chunks``, ``bytes``, ``kept_bytes``),
        and PACK frames opened (``packs_opened``: each once while the view holds it)."""
        return {"chunks": self.plain.hits, "bytes": self.plain.hit_bytes,
                "kept_bytes": self.plain.size_bytes,
                "packs_opened": self.view.packs_opened}

    # -- reads that keep their verified chunks

    async def file(self, path: str) -> tuple[str, Entry]:
        p = normalize_path(path)
        e = await self.source.run(self.view.stat_flow(p))
        if e.type != EntryType.FILE:
            raise UsageError(f"not a file: {p}")
        return p, e

    async def iter_file(self, p: str, e: Entry, keep: bool) -> AsyncIterator[memoryview]:
        """A whole file, in the pipelined read (``reading.pipelined_stream_flow``: the
        next batches are fetched and opened -- the browser's worker pool -- while one is
        checked, hashed and handed over); nothing of a batch is handed over before all its
        chunks authenticated and passed their checks, nor the last batch before the
        whole-file BLAKE3 matched. Chunks already in the plaintext cache are not fetched
        again; those fetched are kept there when ``keep``. Errors name the file
        (``AtPath``)."""
        pieces: deque[bytes | memoryview] = deque()
        plain = self.plain
        flow = pipelined_stream_flow(
            self.view, p, e, pieces.append,
            cached=lambda n: plain.get(_chunk_key(e, n)),
            keep=(lambda c: plain.put(_chunk_key(e, c.chunk_no), c)) if keep else None)
        try:
            async for piece in drive_pipelined(flow, self.source, self.view.opener.crypto,
                                               pieces):
                yield memoryview(piece)
        except LockboxError as exc:
            raise AtPath(exc, p) from exc

    async def read(self, path: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``. Each chunk is authenticated; a whole small
        file is also checked against its content hash. The chunks are kept."""
        p, e = await self.file(path)
        if offset == 0 and size >= e.size:
            return b"".join([bytes(piece) async for piece in self.iter_file(p, e, True)])
        end = min(e.size, offset + max(0, size))
        if offset >= end:
            return b""
        cs = e.chunk_size
        first, stop = offset // cs, (end - 1) // cs + 1
        chunks = (await self.source.run(read_chunks_flow(self.view, [(p, e, first, stop)],
                                                         self.plain, True)))[0]
        data = b"".join(bytes(c.data) for c in chunks)
        base = first * cs
        return data[offset - base:end - base]

    async def stream(self, path: str) -> tuple[int, AsyncIterator[bytes]]:
        """(size, pieces) of a whole file; its chunks are kept if it is not large."""
        p, e = await self.file(path)

        async def pieces() -> AsyncIterator[bytes]:
            async for piece in self.iter_file(p, e, e.size <= PLAIN_CACHE_FILE_MAX):
                yield bytes(piece)

        return e.size, pieces()

    # -- folder zips with batched small files

    async def zip_items(self, p: str) -> tuple[list[EntryInfo], Any]:
        """(entries below folder ``p``, the content function for ``zip_pieces``): the
        folders and links in path order, then the files in the order they are stored
        (:func:`stored_order`: the files of one pack one after the other, so each pack is
        fetched and opened once, even when every pack holds files of every folder)."""
        self._label(f"walk /{p}")
        walked = await self.source.run(self.view.walk_flow(p))
        if p and len(walked) == 1 and walked[0][0] == p and not walked[0][1].is_dir:
            raise UsageError(f"not a folder: {p}")
        items = stored_order([(q, e) for q, e in walked if q != p])
        infos = [entry_info(q, e) for q, e in items]
        ready: dict[int, list[ChunkData]] = {}  # prefetched small files, by item index
        # infos may be filtered by the caller (dropped links): map back by path
        at = {q: k for k, (q, _) in enumerate(items)}

        async def content(_: int, info: EntryInfo) -> AsyncIterator[bytes | memoryview]:
            i = at[info.path]
            path, e = items[i]
            if e.size <= ZIP_SMALL_FILE and i not in ready:
                batch = file_batches(items, i,
                                     lambda ref: self.view.cached_pack(ref) is not None)
                self._label(f"zip {len(batch)} file{'s' if len(batch) > 1 else ''} "
                            f"from /{path}")
                asks = [(items[k][0], items[k][1], 0, items[k][1].chunks) for k in batch]
                got = await self.source.run(read_chunks_flow(self.view, asks, self.plain,
                                                             False))
                ready.update(zip(batch, got))
            if i in ready:
                plan = FileReadPlan(e, path, self.view.opener.crypto)
                for piece in plan.accept(ready.pop(i)):
                    yield piece
            else:
                self._label(f"zip /{path}")
                async for piece in self.iter_file(path, e, False):
                    yield piece

        return infos, content
