"""File content: the DATA_CHUNK frames of a file version and, past the inline limit, its
CHUNK_INDEX frames (docs/FORMAT.md §10), or for a small file a member of the session's
open pack (one PACK frame shared by many small files, §10 "Packs"). Returns the file's
TOC entry; staging it is the caller's business.

Packing: a file of at most ``PACK_FILE_LIMIT`` bytes that fits one chunk becomes the next
member of the open pack (:meth:`ContentWriter.add_member`); the pack is sealed as one
PACK frame when the next member would take it over ``PACK_TARGET_SIZE`` bytes or
``MAX_PACK_MEMBERS`` members, at commit (``Writer.commit``), or as soon as anything
needs the ref of one of its entries: until then a packed entry's ``refs`` is a
:class:`PackRefs`, whose first use seals the pack. Everything else of the entry (sizes,
hash, member number) is final when it is staged, so lookups of staged state never wait
for the pack.

Data is streamed a chunk at a time (the chunk and one read-ahead chunk in memory). A
file of at least one full chunk gets pages of its own, so that removing it frees whole
pages for reuse. Every frame written is remembered by file version (``frames``): those
of a version no staged entry references at commit are dead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from ....codec.base import Codec
from ....crypto.base import CryptoBackend, Hasher
from ....errors import CommitError, UsageError
from ....platform import IS_BROWSER
from ..frames import FrameSealer, raw_plain_prefix
from ..wire.chunk import ChunkMeta, encode_chunk_parts, encode_file_meta, encode_index, encode_meta
from ..wire.constants import (
    INDEX_FANOUT,
    INLINE_CHUNK_REFS,
    MAX_PACK_MEMBERS,
    PACK_TARGET_SIZE,
    EntryType,
    FrameKind,
)
from ..wire.encoding import uvarint
from ..wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    LAYOUT_PACKED,
    MAX_INDEX_REFS,
    Entry,
    LazyRefs,
)
from ..wire.pack import encode_pack
from ..wire.refs import Ref
from .pages import PageWriter
from .pipeline import PACK_HEAD_SLACK, Prepared, packable
from .timings import Timer

if TYPE_CHECKING:  # concurrent.futures (and logging) only where a pool is used
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["ContentWriter", "ContentSession", "Readable", "Progress", "PackRefs"]

Progress = Callable[[str, int], None]  # (archive path, bytes just added)
_NOT_LAST = encode_meta(None)
_MAX_CHUNKS = MAX_INDEX_REFS * INDEX_FANOUT
# Room in front of a chunk's data for its frame plaintext's prefix: codec byte and size
# (1 + 10), file id, chunk number, path length (16 + 10 + 10), the last chunk's metadata
# (2 + 10 + 10 + 10 + 32 + 10 + 10), the data's length (10); plus the path itself.
_SLACK = 192
_MAX_PREFIX = 11  # raw_plain_prefix: the codec byte and a uvarint
_SAMPLE_SIZE = 16 * 1024
READ_AHEAD = not IS_BROWSER
"""Whether a large file's chunks are read and hashed on a thread (:class:`_ReadAhead`;
not under Pyodide, which has none). Tests turn it off to compare."""
_SAMPLES = 3
class PackRefs(LazyRefs):
    """The one ref of a packed entry (``refs`` of a layout-2 :class:`Entry`): the
    PACK frame's ref once the pack is sealed. Its first use before that seals the pack
    (``seal``); all the entries of one pack share this object. Equal to ``(ref,)``.
    A pack discarded with its write session (abort) has no ref: using it is a
    :class:`~lockbox.errors.UsageError`."""

    __slots__ = ("_seal", "ref")

    def __init__(self, seal: Callable[[], object]) -> None:
        super().__init__(b"", 0, 1)
        self._seal: Callable[[], object] | None = seal
        self.ref: Ref | None = None

    def _load(self) -> tuple[Ref, ...]:
        if self.ref is None and self._seal is not None:
            self._seal()
        if self.ref is None:
            raise UsageError("this file's pack was discarded with its write session")
        return (self.ref,)

    def _prefix(self, n: int) -> list[Ref]:
        return list(self._load()[:n])

    def resolve(self, ref: Ref) -> None:
        self.ref = ref
        self._refs = (ref,)
        self._seal = None

    def discard(self) -> None:
        self._seal = None


def _worth_compressing(codec: Codec, level: int, data: memoryview) -> bool:
    """Whether to compress a chunk: small ones always (encode_plain decides); larger
    ones when zstd shrinks a few spread samples (3 x 16 KiB) by at least 1/32 together.
    Random or already-compressed data is stored RAW after ~1/20 of a full compression's
    work; compressible data is compressed whole (encode_plain keeps RAW when the whole
    does not save 1/64)."""
    n = len(data)
    if n <= 4 * _SAMPLE_SIZE:
        return True
    step = (n - _SAMPLE_SIZE) // (_SAMPLES - 1)
    sample = b"".join(data[i * step:i * step + _SAMPLE_SIZE] for i in range(_SAMPLES))
    packed = codec.compress(sample, level)
    return len(packed) < len(sample) - len(sample) // 32


def _filler(stream: Readable) -> Callable[[memoryview], int]:
    """``fill(view)``: read from ``stream`` into ``view`` until it is full or the stream
    ends; returns the bytes read. Uses the stream's ``readinto`` (unless it raises
    NotImplementedError, as ``io.RawIOBase``'s own does), else ``os.readv`` on its
    ``fd`` (``hostwalk.FdReader``), else ``read`` and a copy."""
    readinto: Callable[[memoryview], int | None] | None = getattr(stream, "readinto", None)
    fd = getattr(stream, "fd", None)
    if readinto is None and isinstance(fd, int) and hasattr(os, "readv"):
        def readinto(view: memoryview) -> int:
            return os.readv(fd, [view])

    def by_read(view: memoryview) -> int:
        data = stream.read(len(view))
        view[:len(data)] = data
        return len(data)

    step = readinto or by_read

    def fill(view: memoryview) -> int:
        nonlocal step
        got = 0
        size = len(view)
        while got < size:
            try:
                n = step(view[got:])
            except NotImplementedError:
                if step is by_read:
                    raise
                step = by_read
                continue
            if not n:
                break
            got += n
        return got
    return fill


class _ReadAhead:
    """Reads and hashes a stream's chunks on a thread of its own (``readv``/``readinto``
    and BLAKE3 release the GIL) while the caller seals the previous ones: chunks come
    out in order from :meth:`next`, already hashed into ``digest`` (which the caller
    reads only once the last chunk is out). Buffers come from ``buffers`` and are given
    back with :meth:`give_back`; at most ``max_buffers`` exist (bounded memory). The
    thread stops after the first short read; a read error is raised by :meth:`next`."""

    def __init__(self, fill: Callable[[memoryview], int], digest: Hasher, slack: int,
                 csize: int, buffers: list[bytearray], max_buffers: int) -> None:
        import queue  # only for large files (not on a small-file add's path)

        self._empty = queue.Empty
        self._fill = fill
        self._digest = digest
        self._slack = slack
        self._csize = csize
        self._free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        for buf in buffers:
            self._free.put(buf)
        self._count = len(buffers)
        buffers.clear()
        self._max = max(max_buffers, self._count)
        self._out: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = \
            queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="lockbox-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _take(self) -> bytearray | None:
        try:
            return self._free.get_nowait()
        except self._empty:
            pass
        if self._count < self._max:
            self._count += 1
            return bytearray(self._slack + self._csize)
        return self._free.get()

    def _run(self) -> None:
        slack, csize = self._slack, self._csize
        try:
            while not self._stopped:
                buf = self._take()
                if buf is None or self._stopped:
                    return
                view = memoryview(buf)
                n = self._fill(view[slack:slack + csize])
                self._digest.update(view[slack:slack + n])
                self._out.put((buf, n))
                if n < csize:
                    return
        except BaseException as e:  # handed to the caller by next()
            self._out.put(e)

    def next(self) -> tuple[bytearray, int]:
        item = self._out.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def give_back(self, buf: bytearray) -> None:
        self._free.put(buf)

    def close(self) -> list[bytearray]:
        """Stop the thread and wait for it; returns the free buffers, for reuse."""
        self._stopped = True
        self._free.put(None)
        self._thread.join()
        out: list[bytearray] = []
        while True:
            try:
                buf = self._free.get_nowait()
            except self._empty:
                return out
            if buf is not None:
                out.append(buf)


class Readable(Protocol):
    """A binary stream: ``read(n)`` returns up to ``n`` bytes, fewer only at the end."""

    def read(self, n: int, /) -> bytes: ...


class ContentSession(Protocol):
    """What content writing uses of the write session (the ``Writer``), read at each
    call: the open pages and the sealer of the current generation."""

    pages: PageWriter
    sealer: FrameSealer
    crypto: CryptoBackend
    chunk_size: int
    timer: Timer


class ContentWriter:
    """Writes the content frames of one generation (a commit starts a new one)."""

    def __init__(self, session: ContentSession) -> None:
        self._session = session
        # Every content frame written in this generation, by file version (file_id).
        self.frames: dict[bytes, list[Ref]] = {}
        self._buffers: list[bytearray] = []  # free chunk buffers (see _ring)
        self._ring_size = 0
        # Every PACK frame sealed in this generation (the commit frees those no staged
        # entry references); packed files are not in ``frames``.
        self.packs: list[Ref] = []
        # The open pack: its members (encoded data chunks), their bytes, their refs.
        self._members: list[bytes] = []
        self._members_size = 0
        self._pack_refs: PackRefs | None = None

    # -- packs ---------------------------------------------------------------------

    @property
    def pack_open(self) -> bool:
        """Whether the open pack holds members not sealed yet."""
        return bool(self._members)

    def add_member(self, path_bytes: bytes, file_id: bytes, mode: int, mtime_ns: int,
                   data: bytes | memoryview, content_hash: bytes) -> Entry:
        """A one-chunk file (``data``, its BLAKE3 ``content_hash``) as the next member
        of the open pack; returns its entry (layout 2, ``refs`` a :class:`PackRefs`).
        The pack is sealed first when this member would take it over
        ``PACK_TARGET_SIZE`` bytes or ``MAX_PACK_MEMBERS`` members."""
        csize = self._session.chunk_size
        size = len(data)
        member = encode_chunk_parts(file_id, 0, path_bytes,
                                    encode_file_meta(mode, mtime_ns, size, content_hash,
                                                     csize), data)
        return self.add_encoded_member(member, file_id, mode, mtime_ns, size, content_hash)

    def add_encoded_member(self, member: bytes, file_id: bytes, mode: int, mtime_ns: int,
                           size: int, content_hash: bytes) -> Entry:
        """:meth:`add_member` of a member already encoded (its data chunk, e.g. copied
        from another archive's pack by compaction)."""
        members = self._members
        if members and (self._members_size + len(member) + PACK_HEAD_SLACK > PACK_TARGET_SIZE
                        or len(members) >= MAX_PACK_MEMBERS):
            self.seal_pack()
            members = self._members
        refs = self._pack_refs
        if refs is None:
            refs = self._pack_refs = PackRefs(self.seal_pack)
        member_no = len(members)
        members.append(member)
        self._members_size += len(member) + PACK_HEAD_SLACK
        return Entry(EntryType.FILE, mode, mtime_ns, size, len(member), content_hash, file_id,
                     self._session.chunk_size, LAYOUT_PACKED, refs, member_no=member_no)

    def seal_pack(self) -> Ref | None:
        """Seal the open pack as one PACK frame (zstd when it saves 1/64, else RAW) and
        give its entries their ref; returns it (None: the pack was empty)."""
        members = self._members
        refs = self._pack_refs
        if not members or refs is None:
            return None
        s = self._session
        t = s.timer.now()
        self._members, self._members_size, self._pack_refs = [], 0, None
        plain = s.sealer.encode_plain(encode_pack(members))
        t = s.timer.add("prepare", t)
        ref = s.pages.append(FrameKind.PACK, plain)
        s.timer.add("write", t)
        self.packs.append(ref)
        refs.resolve(ref)
        return ref

    def discard_pack(self) -> None:
        """Forget the open pack (the session is aborted): its entries' refs can no
        longer be used."""
        if self._pack_refs is not None:
            self._pack_refs.discard()
        self._members, self._members_size, self._pack_refs = [], 0, None

    def add_stream(self, path: str, stream: Readable, mode: int, mtime_ns: int,
                   progress: Progress | None = None, *,
                   pool: ThreadPoolExecutor | None = None, jobs: int = 1) -> Entry:
        """Write ``stream`` as a new version of ``path`` (normalised, already checked);
        returns its entry.

        Chunks are read into reused buffers (``readinto``, or ``readv`` on a stream's
        ``fd``) and hashed there, by a read-ahead thread for a large file
        (:class:`_ReadAhead`); a RAW chunk's frame plaintext is built in place in
        front of its data, so the data is copied once, by the sealing into the page
        buffer (whose full writes start their writeback at once,
        :data:`~.pages.START_WRITEBACK`). With ``pool``, the chunks that are compressed
        are compressed there (zstd releases the GIL; ``2 * jobs`` in flight) while this
        thread reads, hashes, seals and places them in order. Incompressible data is
        detected on a sample (:func:`_worth_compressing`) and stored RAW."""
        s = self._session
        csize = s.chunk_size
        file_id = s.crypto.random_bytes(16)
        path_bytes = path.encode()
        digest = s.crypto.blake3()
        pages = s.pages
        append = pages.append
        encode_plain = s.sealer.encode_plain
        codec, level = s.sealer.codec, s.sealer.level
        now, lap = s.timer.now, s.timer.add
        refs: list[Ref] = []
        stored = 0
        total = 0
        chunk_no = 0
        fill = _filler(stream)
        slack = _SLACK + len(path_bytes)
        ring = self._ring(slack + csize)
        t = now()
        cur = ring.pop()
        n_cur = fill(memoryview(cur)[slack:slack + csize])
        digest.update(memoryview(cur)[slack:slack + n_cur])
        pre: tuple[bytearray, int] | None = None  # the second chunk, read to see the end
        if n_cur == csize and packable(csize, csize):  # exactly one chunk, or more?
            buf = ring.pop() if ring else bytearray(slack + csize)
            n = fill(memoryview(buf)[slack:slack + csize])
            digest.update(memoryview(buf)[slack:slack + n])
            if n:
                pre = (buf, n)
            else:
                ring.append(buf)
        if pre is None and packable(n_cur, csize):
            # the whole file is read: a member of the open pack
            try:
                t = lap("read", t)
                entry = self.add_member(path_bytes, file_id, mode, mtime_ns,
                                        memoryview(cur)[slack:slack + n_cur], digest.digest())
                lap("prepare", t)
            finally:
                ring.append(cur)
            if progress is not None:
                progress(path, n_cur)
            return entry
        written = self.frames.setdefault(file_id, [])
        own_pages = n_cur == csize  # a large file gets pages of its own, so that
        if own_pages:               # removing it frees whole pages for reuse
            pages.close_page()
        else:
            pool = None
        # In order: (a pending compression or a ready plaintext, data bytes, ring buffer)
        inflight: deque[tuple[Future[bytes] | memoryview, int, bytearray]] = deque()
        limit = 2 * jobs if pool is not None else 0
        ahead = (_ReadAhead(fill, digest, slack, csize, ring, limit + 4)
                 if own_pages and READ_AHEAD else None)
        release = ring.append if ahead is None else ahead.give_back

        def next_chunk() -> tuple[bytearray, int]:
            nonlocal pre
            if pre is not None:
                item, pre = pre, None
                return item
            if ahead is not None:
                return ahead.next()
            buf = ring.pop() if ring else bytearray(slack + csize)
            n = fill(memoryview(buf)[slack:slack + csize])
            digest.update(memoryview(buf)[slack:slack + n])
            return buf, n

        def drain(keep: int) -> None:
            nonlocal t, stored
            while len(inflight) > keep:
                item, nbytes, buf = inflight.popleft()
                t = now()
                plain = item if isinstance(item, memoryview) else item.result()
                t = lap("prepare", t)
                ref = append(FrameKind.DATA_CHUNK, plain)
                release(buf)
                t = lap("write", t)
                stored += ref.frame_size
                refs.append(ref)
                written.append(ref)
                if progress is not None:
                    progress(path, nbytes)

        try:
            while True:
                if chunk_no >= _MAX_CHUNKS:
                    raise UsageError(
                        f"{path}: larger than the format allows at this chunk size "
                        f"({_MAX_CHUNKS * csize:,} bytes)")
                nxt, n_nxt = next_chunk() if n_cur == csize else (cur, 0)
                t = lap("read", t)
                view = memoryview(cur)
                total += n_cur
                meta = _NOT_LAST if n_nxt else encode_meta(ChunkMeta(
                    EntryType.FILE, mode, mtime_ns, total, digest.digest(), csize))
                head = b"".join((file_id, uvarint(chunk_no), uvarint(len(path_bytes)),
                                 path_bytes, meta, uvarint(n_cur)))
                payload_start = slack - len(head)
                if payload_start < _MAX_PREFIX:  # never with today's fields: stay correct
                    raise CommitError(f"{path}: chunk header larger than the room kept")
                view[payload_start:slack] = head
                payload = view[payload_start:slack + n_cur]
                if _worth_compressing(codec, level, view[slack:slack + n_cur]):
                    if pool is None:
                        inflight.append((memoryview(encode_plain(payload)), n_cur, cur))
                    else:
                        inflight.append((pool.submit(encode_plain, payload), n_cur, cur))
                else:
                    prefix = raw_plain_prefix(len(payload))
                    plain_start = payload_start - len(prefix)
                    view[plain_start:payload_start] = prefix
                    inflight.append((view[plain_start:slack + n_cur], n_cur, cur))
                t = lap("prepare", t)
                drain(limit)
                t = now()
                if not n_nxt:
                    if nxt is not cur:
                        release(nxt)
                    break
                cur, n_cur = nxt, n_nxt
                chunk_no += 1
            drain(0)
            layout, refs, stored = self._layout(file_id, refs, stored, written)
            if own_pages:
                pages.close_page()
        finally:
            for item, _n, _buf in inflight:  # an error: let no worker hold a buffer
                if not isinstance(item, memoryview):
                    item.cancel()
                    with contextlib.suppress(BaseException):
                        item.result()
            if ahead is not None:  # the stream is the caller's again once it stopped
                ring.extend(ahead.close())
        return Entry(EntryType.FILE, mode, mtime_ns, total, stored, digest.digest(),
                     file_id, csize, layout, tuple(refs))

    def _ring(self, size: int) -> list[bytearray]:
        """The reused chunk buffers (at least one, each ``size`` bytes), kept between
        files; they hold plaintext only while a file is being added."""
        if self._ring_size != size:
            self._buffers = []
            self._ring_size = size
        if not self._buffers:
            self._buffers.append(bytearray(size))
        return self._buffers

    def copy_file(self, path: str, entry: Entry, plains: Iterable[bytes]) -> Entry:
        """``entry`` with its chunk frames re-sealed here from their plaintexts (from
        another archive with the same content key: compaction), as they are. A packed
        entry (layout 2): ``plains`` is one item, the member's bytes (its encoded data
        chunk), which become a member of the open pack as they are."""
        if entry.layout == LAYOUT_PACKED:
            members = [bytes(p) for p in plains]
            if len(members) != 1:
                raise CommitError(f"{path}: {len(members)} pack members copied, 1 expected")
            return self.add_encoded_member(members[0], entry.file_id, entry.mode,
                                           entry.mtime_ns, entry.size, entry.content_hash)
        pages = self._session.pages
        append = pages.append
        own_pages = entry.size >= entry.chunk_size  # as add_stream places large files
        if own_pages:
            pages.close_page()
        refs: list[Ref] = []
        for plain in plains:
            refs.append(append(FrameKind.DATA_CHUNK, plain))
        if len(refs) != entry.chunks:
            raise CommitError(f"{path}: {len(refs)} chunks copied, {entry.chunks} expected")
        stored = sum(r.frame_size for r in refs)
        layout, refs, stored = self._layout(entry.file_id, refs, stored, None)
        if own_pages:
            pages.close_page()
        self.frames[entry.file_id] = []
        return dataclasses.replace(entry, stored_size=stored, layout=layout, refs=tuple(refs))

    def place_prepared(self, p: Prepared) -> Entry:
        """Seal and place a small file prepared by the pipeline (one chunk frame)."""
        ref = self._session.pages.append(FrameKind.DATA_CHUNK, p.plain)
        self.frames[p.file_id] = [ref]
        return Entry(EntryType.FILE, p.mode, p.mtime_ns, p.size, ref.frame_size,
                     p.content_hash, p.file_id, self._session.chunk_size, LAYOUT_CHUNKS,
                     (ref,))

    def _layout(self, file_id: bytes, refs: list[Ref], stored: int,
                written: list[Ref] | None) -> tuple[int, list[Ref], int]:
        """(layout, the entry's refs, stored bytes): the chunk refs themselves, or past
        the inline limit CHUNK_INDEX frames written here (each added to ``written``)."""
        if len(refs) <= INLINE_CHUNK_REFS:
            return LAYOUT_CHUNKS, refs, stored
        s = self._session
        index_refs = []
        for base in range(0, len(refs), INDEX_FANOUT):
            payload = encode_index(file_id, base, refs[base:base + INDEX_FANOUT])
            iref = s.pages.append(FrameKind.CHUNK_INDEX, s.sealer.encode_plain(payload))
            stored += iref.frame_size
            index_refs.append(iref)
            if written is not None:
                written.append(iref)
        return LAYOUT_INDEX, index_refs, stored
