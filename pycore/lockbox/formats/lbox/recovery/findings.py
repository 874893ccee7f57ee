"""What the scan found, before the tree is rebuilt: file versions with their
authenticated chunks (:class:`FileGroup`), candidate paths (:class:`Plan`), surviving
TOC and env leaves, the newest commit (:class:`Findings`); and re-reading a version's
chunks, authenticated against the tags the scan saw (:func:`read_chunks_flow`).

A member of a PACK frame is exactly chunk 0 (with its metadata) of a one-chunk file:
it joins its ``file_id``'s group like a data chunk, with its member number noted
(``-1`` for a chunk in a DATA_CHUNK frame of its own). A re-read opens its PACK frame
(once per :class:`PackCache`, not once per member).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ....crypto.base import Hasher
from ....drivers import Flow, Read
from ....errors import IntegrityError
from ..frames import FrameOpener
from ..wire.chunk import ChunkMeta, decode_chunk
from ..wire.commit import CommitRecord
from ..wire.constants import EntryType, FrameKind
from ..wire.entry import Entry, chunk_count
from ..wire.pack import pack_member
from ..wire.refs import Ref

__all__ = ["FileGroup", "Plan", "Findings", "Shape", "plan_of", "group_shape",
           "read_batches", "read_chunks_flow", "READ_BATCH", "PackCache", "NOT_PACKED",
           "Chunk"]

READ_BATCH = 8 * 1024 * 1024  # bytes of chunk frames re-read per round trip
Shape = tuple[int, int, int]  # (chunk count, chunk size, size) of a complete version
# The newest entry per key of the surviving leaves: key -> (generation, value).
Best = dict[bytes, tuple[int, bytes]]
# Key ranges of the surviving leaves: (first key, last key, generation).
Spans = list[tuple[bytes, bytes, int]]
NOT_PACKED = -1  # the member number of a chunk in a DATA_CHUNK frame of its own
# A chunk found: (frame offset, frame size, tag, data length, member number or -1).
Chunk = tuple[int, int, bytes, int, int]


class FileGroup:
    """The authenticated chunks of one file version (one file_id)."""

    __slots__ = ("chunks", "digest", "file_id", "generation", "hasher", "meta", "next_no",
                 "path", "verified")

    def __init__(self, file_id: bytes, path: str) -> None:
        self.file_id = file_id
        self.path = path
        self.meta: ChunkMeta | None = None
        # chunk_no -> (frame offset, frame size, tag, data length, member no or -1)
        self.chunks: dict[int, Chunk] = {}
        self.generation = 0
        self.hasher: Hasher | None = None
        self.next_no = 0
        self.digest: bytes | None = None  # BLAKE3 of chunks 0..last, hashed in order
        self.verified: bool | None = None  # structure + hash checked (None: not yet)


@dataclass(slots=True)
class Plan:
    """One path of the rebuilt tree, before its status is known."""

    path: str
    type: EntryType
    mode: int
    mtime_ns: int
    source: str
    generation: int
    size: int = 0
    content_hash: bytes = b""
    file_id: bytes = b""
    chunk_size: int = 0
    target: str = ""
    from_entry: bool = True  # the metadata comes from a TOC entry (else a last chunk)


def plan_of(path: str, e: Entry, source: str, generation: int) -> Plan:
    return Plan(path, e.type, e.mode, e.mtime_ns, source, generation, e.size,
                e.content_hash, e.file_id, e.chunk_size, e.target)


@dataclass
class Findings:
    """Everything the scan collected. ``plans`` and ``env`` hold the newest commit's
    trees when they are intact; the rebuild replaces them with the rebuilt tree."""

    commit: CommitRecord | None = None  # the newest commit that authenticated
    newer_possible: bool = False  # a slot is lost: it may have held a newer commit
    plans: dict[str, Plan] = field(default_factory=dict)
    env: dict[str, bytes] = field(default_factory=dict)
    groups: dict[bytes, FileGroup] = field(default_factory=dict)
    toc_best: Best = field(default_factory=dict)
    toc_spans: Spans = field(default_factory=list)
    env_best: Best = field(default_factory=dict)
    env_spans: Spans = field(default_factory=list)


def group_shape(g: FileGroup) -> Shape | None:
    """(count, chunk size, size) when every chunk of the version is present with the
    right length, else None."""
    m = g.meta
    if m is None or m.chunk_size < 1:
        return None
    count = chunk_count(m.size, m.chunk_size)
    if count != len(g.chunks) or max(g.chunks) != count - 1:
        return None
    last = m.size - (count - 1) * m.chunk_size
    for no, c in g.chunks.items():
        if c[3] != (last if no == count - 1 else m.chunk_size):
            return None
    return count, m.chunk_size, m.size


def read_batches(g: FileGroup, count: int) -> list[tuple[int, int]]:
    """Chunk number ranges ``[first, stop)`` of about :data:`READ_BATCH` bytes each."""
    out = []
    n = 0
    while n < count:
        stop = n
        total = 0
        while stop < count and (stop == n or total + g.chunks[stop][1] <= READ_BATCH):
            total += g.chunks[stop][1]
            stop += 1
        out.append((n, stop))
        n = stop
    return out


class PackCache:
    """The payloads of the PACK frames re-read last (at most ``max_bytes``): the
    members of one pack are salvaged one file at a time, and each would otherwise
    re-read and re-open the whole pack."""

    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._held = 0
        self._payloads: OrderedDict[tuple[int, bytes], bytes | memoryview] = OrderedDict()

    def get(self, ref: Ref) -> bytes | memoryview | None:
        key = (ref.frame_offset, ref.tag)
        payload = self._payloads.get(key)
        if payload is not None:
            self._payloads.move_to_end(key)
        return payload

    def put(self, ref: Ref, payload: bytes | memoryview) -> None:
        key = (ref.frame_offset, ref.tag)
        if key in self._payloads:
            return
        self._payloads[key] = payload
        self._held += len(payload)
        while self._held > self.max_bytes and len(self._payloads) > 1:
            _, old = self._payloads.popitem(last=False)
            self._held -= len(old)


def read_chunks_flow(opener: FrameOpener, g: FileGroup, first: int, stop: int,
                     expect: Shape, packs: PackCache | None = None) -> Flow[list[memoryview]]:
    """Re-read chunks ``first <= n < stop`` of a group and authenticate each against
    the tag seen by the scan (IntegrityError when anything differs). A packed chunk's
    PACK frame comes from ``packs`` when it holds it (and goes there once read)."""
    count, csize, size = expect
    found = [g.chunks[n] for n in range(first, stop)]
    refs = [Ref(*c[:3]) for c in found]
    payloads: list[bytes | memoryview | None] = [
        packs.get(r) if packs is not None and c[4] != NOT_PACKED else None
        for r, c in zip(refs, found)]
    missing = [k for k, p in enumerate(payloads) if p is None]
    blobs = (yield Read(tuple(refs[k].byte_range for k in missing))) if missing else []
    for k, blob in zip(missing, blobs):
        if found[k][4] == NOT_PACKED:
            payloads[k] = opener.open_ref(blob, refs[k], FrameKind.DATA_CHUNK)
        else:
            payloads[k] = opener.open_ref(blob, refs[k], FrameKind.PACK)
            if packs is not None:
                packs.put(refs[k], payloads[k])  # type: ignore[arg-type]
    out = []
    for n, c, payload in zip(range(first, stop), found, payloads):
        assert payload is not None
        if c[4] != NOT_PACKED:
            payload = pack_member(payload, c[4])
        ch, data = decode_chunk(payload)
        want = size - (count - 1) * csize if n == count - 1 else csize
        if ch.file_id != g.file_id or ch.chunk_no != n or len(data) != want:
            raise IntegrityError(f"chunk {n} of {g.path} changed since the scan")
        out.append(data)
    return out
