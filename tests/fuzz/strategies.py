"""Hypothesis strategies for valid lockbox structures, and mutations of them.

Every structure is built from dataclasses and encoded with the REAL encoders of
``lockbox.format`` (so that a valid example is exactly what a writer produces),
covering every variant the format has: inline and external key-directory
pointers, page headers of each kind (FREE included), password / recipient /
unusable key slots, TOC, env and space leaves with realistic keys and values,
internal nodes, entries of every type and layout, data chunks with and without
metadata, chunk indexes, commit records with every root kind, frame plaintexts
raw and zstd.

On top of them:

* :func:`trace_fields` tells which byte ranges of an encoding are which
  primitive field (u8/u16/u32/u64, uvarint, raw bytes), by decoding the valid
  encoding once with a recording ``Reader`` (or from the fixed header layouts
  of docs/FORMAT.md for the struct-based headers);
* :func:`mutated` applies 1-3 edits: bit flips, special bytes, byte inserts and
  deletes, truncation, appends, and field-aware edits — a length/count/varint
  field set to 0/1/its limit/limit+1/2**32-1/2**63/2**64-1, overlong and
  over-64-bit varint forms, fixed-width fields set to edge values, two fields
  swapped, a field spliced in from another valid encoding of the same kind —
  then optionally re-computes the structure's CRC (as a forger would), so that
  the mutation reaches the checks behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

import lockbox.formats.lbox.frames as _frames_mod
import lockbox.formats.lbox.wire.chunk as _chunk_mod
import lockbox.formats.lbox.wire.commit as _commit_mod
import lockbox.formats.lbox.wire.entry as _entry_mod
import lockbox.formats.lbox.wire.keydir as _keydir_mod
import lockbox.formats.lbox.wire.node as _node_mod
import lockbox.formats.lbox.write.space as _space_mod
from lockbox.formats.lbox.wire.chunk import ChunkHeader, ChunkMeta
from lockbox.formats.lbox.wire.commit import EMPTY_TREE, CommitRecord, Stats, TreeRoot
from lockbox.formats.lbox.wire.constants import (
    ARGON2_MAX_MEMORY_KIB,
    ARGON2_MAX_TIME_COST,
    ARGON2_MIN_MEMORY_KIB,
    FRAME_HEADER_SIZE,
    INDEX_FANOUT,
    INLINE_CHUNK_REFS,
    INLINE_ROOT_MAX,
    MAX_CHUNK_SIZE,
    MAX_ENV_NAME_SIZE,
    MAX_FRAME_SEALED_SIZE,
    MAX_PAGE_SIZE,
    MAX_ROOT_LISTING_LEAVES,
    MAX_TREE_HEIGHT,
    MIN_CHUNK_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    SLOT_HEADER_SIZE,
    TAG_SIZE,
    EntryType,
    FrameKind,
    PageKind,
    SlotKind,
)
from lockbox.formats.lbox.wire.encoding import Reader, uvarint
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    MAX_INDEX_REFS,
    Entry,
    chunk_count,
    encode_entry,
    toc_key,
)
from lockbox.formats.lbox.wire.frame import FrameHeader
from lockbox.formats.lbox.wire.keydir import (
    KEM_CT_SIZE,
    LINK_KIND,
    WRAPPED_KEY_SIZE,
    KeySlot,
    LinkSlot,
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    check_argon2_params,
    encode_keydir,
)
from lockbox.formats.lbox.wire.node import Child, Internal, Leaf, encode_node
from lockbox.formats.lbox.wire.page import PageHeader
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.wire.superblock import SLOT_CAPACITY, ExternalKeydir, Slot
from lockbox.formats.lbox.write.space import (
    FRAMES,
    FREE,
    KEYDIR,
    SPACEMAP,
    TAIL_KEY,
    PackRecord,
    PageRecord,
    encode_record,
)

__all__ = [
    "same_length_edit", "field_edit", "U64", "uvarints", "svarints", "tags", "refs",
    "frame_headers", "page_headers",
    "password_slots", "recipient_slots", "unusable_slots", "keydirs", "external_keydirs",
    "slots", "superblocks", "toc_paths", "toc_keys", "env_names", "entries", "file_entries",
    "toc_leaves", "env_leaves", "space_items", "space_leaves", "internal_nodes",
    "chunk_metas", "chunk_headers", "chunks", "chunk_indexes", "tree_roots", "commits",
    "space_records", "payloads", "Field", "trace_fields", "tracing", "mutated",
    "FRAME_HEADER_FIELDS", "PAGE_HEADER_FIELDS", "slot_fields", "fix_slot_crc",
    "fix_page_crc", "fix_frame_crc", "special_uvarints", "overlong", "bad_varints",
]

U64 = (1 << 64) - 1
MAX_FRAME_TOTAL = FRAME_HEADER_SIZE + MAX_FRAME_SEALED_SIZE

# -- primitives ---------------------------------------------------------------------------

_EDGE_U64 = [0, 1, 127, 128, 255, 256, 16383, 16384, 2**31, 2**32 - 1, 2**32, 2**40,
             2**63 - 1, 2**63, U64]


def uvarints(max_value: int = U64) -> st.SearchStrategy[int]:
    """Small, medium and edge values up to ``max_value`` (all varint lengths)."""
    return st.one_of(
        st.integers(0, min(127, max_value)),
        st.integers(0, min(1 << 21, max_value)),
        st.integers(0, max_value),
        st.sampled_from([v for v in _EDGE_U64 if v <= max_value] or [0]),
    )


svarints = st.one_of(st.integers(-64, 63), st.integers(-(1 << 63), (1 << 63) - 1),
                     st.sampled_from([0, -1, 1, -(1 << 63), (1 << 63) - 1,
                                      1_600_000_000_123_456_789, -1_000_000_000]))
tags = st.binary(min_size=TAG_SIZE, max_size=TAG_SIZE)
file_ids = st.binary(min_size=16, max_size=16)
digests = st.binary(min_size=32, max_size=32)
modes = st.one_of(st.sampled_from([0o644, 0o755, 0o777, 0o600, 0o4755, 0o7777, 0]),
                  st.integers(0, 0o7777))
chunk_sizes = st.one_of(st.sampled_from([MIN_CHUNK_SIZE, 65536, 1 << 20, MAX_CHUNK_SIZE]),
                        st.integers(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE))
refs = st.builds(
    Ref,
    frame_offset=uvarints(),
    frame_size=st.one_of(st.integers(FRAME_HEADER_SIZE + TAG_SIZE, 70000),
                         st.sampled_from([FRAME_HEADER_SIZE + TAG_SIZE, MAX_FRAME_TOTAL])),
    tag=tags,
)

# -- headers ------------------------------------------------------------------------------

frame_headers = st.builds(
    FrameHeader,
    kind=st.sampled_from(list(FrameKind)),
    sealed_size=st.one_of(st.integers(TAG_SIZE, 100_000),
                          st.sampled_from([TAG_SIZE, MAX_FRAME_SEALED_SIZE])),
    generation=uvarints(), session_id=st.binary(min_size=16, max_size=16), counter=uvarints(),
)


@st.composite
def page_headers(draw: st.DrawFn, kinds: Sequence[PageKind] = tuple(PageKind)) -> PageHeader:
    kind = draw(st.sampled_from(list(kinds)))
    units = st.one_of(st.integers(1, 8), st.integers(1, MAX_PAGE_SIZE // PAGE_UNIT))
    size = PAGE_UNIT * draw(units)
    if kind == PageKind.FREE and draw(st.booleans()):
        used = PAGE_HEADER_SIZE  # what writers write
    else:
        used = draw(st.integers(PAGE_HEADER_SIZE, size))
    return PageHeader(kind, size, used, draw(uvarints()))


# -- key directory ------------------------------------------------------------------------

slot_ids = st.integers(0, 2**32 - 1)
salts = st.binary(min_size=16, max_size=16)
wrapped_keys = st.binary(min_size=WRAPPED_KEY_SIZE, max_size=WRAPPED_KEY_SIZE)


def password_slots(slot_id: int) -> st.SearchStrategy[PasswordSlot]:
    return st.builds(
        PasswordSlot, slot_id=st.just(slot_id), salt=salts,
        time_cost=st.one_of(st.sampled_from([1, 3, ARGON2_MAX_TIME_COST]),
                            st.integers(1, ARGON2_MAX_TIME_COST)),
        memory_kib=st.one_of(st.sampled_from([ARGON2_MIN_MEMORY_KIB, 64, 65536,
                                              ARGON2_MAX_MEMORY_KIB]),
                             st.integers(ARGON2_MIN_MEMORY_KIB, ARGON2_MAX_MEMORY_KIB)),
        parallelism=st.just(1), wrapped_key=wrapped_keys)


def recipient_slots(slot_id: int) -> st.SearchStrategy[RecipientSlot]:
    # ML-KEM ciphertexts are opaque to the decoder: cheap pseudo-random bytes will do.
    return st.builds(
        lambda seed, w: RecipientSlot(slot_id, hashlib.shake_256(seed).digest(KEM_CT_SIZE), w),
        st.binary(min_size=1, max_size=8), wrapped_keys)


@st.composite
def unusable_slots(draw: st.DrawFn, slot_id: int) -> UnusableSlot:
    """A later slot kind, or a password slot with Argon2id parameters out of range."""
    if draw(st.booleans()):
        kind = draw(st.integers(0, 255).filter(lambda k: k not in (1, 2, LINK_KIND)))
        body = draw(st.binary(max_size=64))
        return UnusableSlot(slot_id, kind, body, f"unknown slot kind {kind}")
    t = draw(st.sampled_from([0, 1, ARGON2_MAX_TIME_COST + 1, 2**32 - 1]))
    m = draw(st.sampled_from([0, ARGON2_MIN_MEMORY_KIB - 1, 65536, ARGON2_MAX_MEMORY_KIB + 1,
                              2**32 - 1]))
    p = draw(st.sampled_from([0, 1, 2, 255]))
    reason = check_argon2_params(t, m, p)
    if not reason:
        p = 2
        reason = check_argon2_params(t, m, p)
    body = struct.pack("<16sIIB", draw(salts), t, m, p) + draw(wrapped_keys)
    return UnusableSlot(slot_id, int(SlotKind.PASSWORD), body, reason)


@st.composite
def keydirs(draw: st.DrawFn, max_slots: int = 5, recipients: bool = True) -> list[KeySlot]:
    ids = draw(st.lists(slot_ids, unique=True, max_size=max_slots))
    out: list[KeySlot] = []
    for sid in ids:
        choice = draw(st.sampled_from(["pw", "pw", "rcpt", "link", "unusable"] if recipients
                                      else ["pw", "pw", "link", "unusable"]))
        if choice == "link":
            out.append(LinkSlot(sid, draw(wrapped_keys)))
        elif choice == "pw":
            out.append(draw(password_slots(sid)))
        elif choice == "rcpt":
            out.append(draw(recipient_slots(sid)))
        else:
            out.append(draw(unusable_slots(sid)))
    return out


external_keydirs = st.builds(ExternalKeydir, page_offset=uvarints(),
                             keydir_size=st.one_of(st.integers(0, 1 << 20),
                                                   st.integers(0, 2**32 - 1)),
                             sha256=digests)


@st.composite
def slots(draw: st.DrawFn, slot_no: int | None = None, archive_id: bytes | None = None) -> Slot:
    no = draw(st.integers(0, 1)) if slot_no is None else slot_no
    gen = draw(st.one_of(st.integers(0, 1000), st.integers(0, (U64 - 1) // 2))) * 2 + no
    if gen == 0:
        gen = 2
    aid = draw(st.binary(min_size=16, max_size=16)) if archive_id is None else archive_id
    field: bytes | ExternalKeydir
    if draw(st.booleans()):
        field = draw(external_keydirs)
        room = SLOT_CAPACITY - 44
    else:
        field = encode_keydir(draw(keydirs(max_slots=3, recipients=draw(st.booleans()))))
        if len(field) > SLOT_CAPACITY:
            field = field[:SLOT_CAPACITY]
        room = SLOT_CAPACITY - len(field)
    frame = draw(st.binary(max_size=min(room, 400)))
    return Slot(no, aid, gen, field, frame)


@st.composite
def superblocks(draw: st.DrawFn) -> tuple[Slot | None, Slot | None]:
    aid = draw(st.binary(min_size=16, max_size=16))
    s0 = draw(st.none() | slots(0, aid))
    s1 = draw(st.none() | slots(1, aid)) if s0 is not None else draw(slots(1, aid))
    return s0, s1


# -- TOC / env / space keys and values ----------------------------------------------------

_names = st.text(
    alphabet=st.one_of(st.sampled_from("abcxyz.-_ 0189"),
                       st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")),
    min_size=1, max_size=12,
).filter(lambda n: n not in (".", ".."))


@st.composite
def toc_paths(draw: st.DrawFn, max_size: int = 12) -> list[str]:
    """Unique archive paths, some nested (directories share prefixes)."""
    dirs = draw(st.lists(_names, max_size=3, unique=True))
    paths: set[str] = set()
    for _ in range(draw(st.integers(0, max_size))):
        depth = draw(st.integers(0, 2)) if dirs else 0
        parent = "/".join(draw(st.sampled_from(dirs)) for _ in range(depth))
        name = draw(_names)
        paths.add(f"{parent}/{name}" if parent else name)
    return sorted(paths)


def toc_keys(max_size: int = 12) -> st.SearchStrategy[list[bytes]]:
    return toc_paths(max_size).map(lambda ps: sorted({toc_key(p) for p in ps}))


env_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1, max_size=40,
).map(lambda s: s.encode()[:MAX_ENV_NAME_SIZE]).filter(bool)


@st.composite
def file_entries(draw: st.DrawFn, layout: int | None = None, max_index_refs: int = 3) -> Entry:
    csize = draw(chunk_sizes)
    lay = draw(st.sampled_from([LAYOUT_CHUNKS, LAYOUT_INDEX])) if layout is None else layout
    if lay == LAYOUT_CHUNKS:
        chunks = draw(st.integers(1, INLINE_CHUNK_REFS))
        n = chunks
    else:
        n = draw(st.one_of(st.integers(1, max_index_refs),
                           st.sampled_from([1, min(MAX_INDEX_REFS, max_index_refs)])))
        low = max(INLINE_CHUNK_REFS + 1, (n - 1) * INDEX_FANOUT + 1)
        chunks = draw(st.sampled_from([low, n * INDEX_FANOUT]) | st.integers(low, n * INDEX_FANOUT))
    if chunks == 1:
        size = draw(st.sampled_from([0, 1, csize]) | st.integers(0, csize))
    else:
        size = draw(st.integers((chunks - 1) * csize + 1, chunks * csize))
    assert chunk_count(size, csize) == chunks
    return Entry(EntryType.FILE, draw(modes), draw(svarints), size, draw(uvarints()),
                 draw(digests), draw(file_ids), csize, lay,
                 tuple(draw(st.lists(refs, min_size=n, max_size=n))))


_targets = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                          blacklist_characters="\x00"),
                   min_size=1, max_size=40).filter(lambda t: len(t.encode()) <= 4096)


def entries(max_index_refs: int = 3) -> st.SearchStrategy[Entry]:
    return st.one_of(
        file_entries(max_index_refs=max_index_refs),
        st.builds(Entry, st.just(EntryType.DIR), modes, svarints),
        st.builds(lambda m, t, target: Entry(EntryType.SYMLINK, m, t, target=target),
                  modes, svarints, _targets),
    )


@st.composite
def toc_leaves(draw: st.DrawFn, max_size: int = 8) -> Leaf:
    keys = draw(toc_keys(max_size))
    values = [encode_entry(draw(entries())) for _ in keys]
    return Leaf(keys, values)


@st.composite
def env_leaves(draw: st.DrawFn, max_size: int = 8) -> Leaf:
    keys = sorted(set(draw(st.lists(env_names, max_size=max_size))))
    values = [draw(st.binary(max_size=64) | st.sampled_from([b"", b"\x00" * 300]))
              for _ in keys]
    return Leaf(keys, values)


def space_records() -> st.SearchStrategy[PageRecord | PackRecord | int]:
    """A page record of each kind, a PACK record (a pack's frame size and how many
    entries name it), or (an int) a DEAD frame size."""
    page = st.builds(
        lambda kind, units, frac: PageRecord(kind, units * PAGE_UNIT,
                                             int(units * PAGE_UNIT * frac)),
        st.sampled_from([FRAMES, KEYDIR, FREE, SPACEMAP]),
        st.one_of(st.integers(1, 4), st.integers(1, MAX_PAGE_SIZE // PAGE_UNIT)),
        st.sampled_from([0.0, 1.0]) | st.floats(0, 1))
    pack = st.builds(PackRecord,
                     st.integers(64, MAX_PAGE_SIZE) | st.sampled_from([0, MAX_PAGE_SIZE]),
                     st.integers(1, 4096) | st.sampled_from([1, U64]))
    return st.one_of(page, pack,
                     st.integers(64, MAX_PAGE_SIZE) | st.sampled_from([0, MAX_PAGE_SIZE]))


@st.composite
def space_items(draw: st.DrawFn, max_size: int = 10) -> list[tuple[bytes, bytes]]:
    """Sorted (8-byte big-endian key, record) items, with a TAIL record (or not)."""
    offsets = sorted(set(draw(st.lists(uvarints(U64 - 1), max_size=max_size))))
    items = [(struct.pack(">Q", o), encode_record(draw(space_records()))) for o in offsets]
    if draw(st.booleans()):
        items.append((TAIL_KEY, bytes([6]) + uvarint(draw(uvarints()))))
    return items


@st.composite
def space_leaves(draw: st.DrawFn, max_size: int = 10) -> Leaf:
    items = draw(space_items(max_size))
    return Leaf([k for k, _ in items], [v for _, v in items])


@st.composite
def internal_nodes(draw: st.DrawFn, max_size: int = 6) -> Internal:
    keys = draw(st.one_of(toc_keys(max_size), st.lists(env_names, max_size=max_size)
                          .map(lambda ks: sorted(set(ks))),
                          space_items(max_size).map(lambda items: [k for k, _ in items])))
    if not keys:
        keys = [b"\x00a"]
    children = [Child(k, draw(refs), draw(st.integers(1, 70000) | uvarints(U64).filter(bool)))
                for k in keys]
    return Internal(draw(st.integers(1, MAX_TREE_HEIGHT - 1)), children)


# -- chunks and indexes -------------------------------------------------------------------

_paths_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)

chunk_metas = st.builds(
    ChunkMeta, type=st.sampled_from(list(EntryType)), mode=modes, mtime_ns=svarints,
    size=uvarints(), content_hash=digests, chunk_size=st.integers(0, MAX_CHUNK_SIZE) | chunk_sizes,
    target=st.just("") | _paths_text)

chunk_headers = st.builds(ChunkHeader, file_id=file_ids, chunk_no=uvarints(1 << 40),
                          path=_paths_text, meta=st.none() | chunk_metas)

payload_data = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b, k: b * k, st.binary(min_size=1, max_size=8), st.integers(8, 500)),
)


def chunks() -> st.SearchStrategy[tuple[ChunkHeader, bytes]]:
    return st.tuples(chunk_headers, payload_data)


# (a full index of 4096 refs is exercised by test_decoders.test_full_chunk_index: decoding
# one takes tens of milliseconds, too slow for hundreds of examples under a deadline)
chunk_indexes = st.tuples(file_ids, uvarints(1 << 40), st.lists(refs, max_size=6))

# -- commit records -----------------------------------------------------------------------


@st.composite
def tree_roots(draw: st.DrawFn, leaves: st.SearchStrategy[Leaf] | None = None) -> TreeRoot:
    kind = draw(st.sampled_from(["empty", "ref", "inline"]))
    if kind == "empty":
        return EMPTY_TREE
    if kind == "ref":
        return TreeRoot(draw(uvarints()), draw(st.integers(1, MAX_TREE_HEIGHT)), draw(refs), None)
    leaf = draw(leaves if leaves is not None else toc_leaves(4))
    blob = encode_node(leaf)
    if len(blob) > INLINE_ROOT_MAX:
        blob = encode_node(Leaf(leaf.keys[:1], leaf.values[:1]))[:INLINE_ROOT_MAX]
    return TreeRoot(draw(st.just(leaf.count) | uvarints()), 1, None, blob)


commits = st.builds(
    CommitRecord,
    generation=uvarints(), time_ns=uvarints(), archive_end=uvarints(),
    default_chunk_size=chunk_sizes, keydir_sha256=digests,
    toc=tree_roots(toc_leaves(4)), env=tree_roots(env_leaves(4)),
    space=st.none() | tree_roots(space_leaves(6)),
    root_leaves=st.lists(refs, max_size=MAX_ROOT_LISTING_LEAVES).map(tuple),
    root_leaves_complete=st.booleans(),
    stats=st.builds(Stats, uvarints(), uvarints(), uvarints(), uvarints(), uvarints()),
)

# -- frame payloads -----------------------------------------------------------------------


def payloads() -> st.SearchStrategy[bytes]:
    """Payloads that compress (zstd plaintexts) and that do not (raw plaintexts)."""
    return payload_data


# -- field tracing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One primitive field of an encoding: ``buf[start:end]``."""

    start: int
    end: int
    kind: str  # "u8", "u16", "u32", "u64", "uvarint", "raw", "crc"
    limit: int = U64


_FIXED = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "crc": 4}

FRAME_HEADER_FIELDS = (
    Field(0, 4, "raw"), Field(4, 5, "u8"), Field(5, 6, "u8"), Field(6, 8, "u16"),
    Field(8, 12, "u32"), Field(12, 20, "u64"), Field(20, 36, "raw"), Field(36, 44, "u64"),
    Field(44, 48, "crc"),
)
PAGE_HEADER_FIELDS = (
    Field(0, 4, "raw"), Field(4, 5, "u8"), Field(5, 6, "u8"), Field(6, 8, "u16"),
    Field(8, 12, "u32"), Field(12, 16, "u32"), Field(16, 24, "u64"), Field(24, 28, "u32"),
    Field(28, 32, "crc"),
)
_SLOT_HEAD_FIELDS = (
    Field(0, 8, "raw"), Field(8, 10, "u16"), Field(10, 11, "u8"), Field(11, 12, "u8"),
    Field(12, 16, "u32"), Field(16, 32, "raw"), Field(32, 40, "u64"), Field(40, 44, "u32"),
    Field(44, 48, "u32"),
)

_TRACE: list[Field] | None = None
_TRACE_BUF: object = None
_TRACE_BASE = 0


class _TracingReader(Reader):
    """A Reader that records the fields it reads from the traced buffer."""

    __slots__ = ()

    def _rec(self, start: int, kind: str, limit: int = U64) -> None:
        if _TRACE is not None and self.buf is _TRACE_BUF:
            _TRACE.append(Field(_TRACE_BASE + start, _TRACE_BASE + self.pos, kind, limit))

    def u8(self) -> int:
        p = self.pos
        v = super().u8()
        self._rec(p, "u8")
        return v

    def u16(self) -> int:
        p = self.pos
        v = super().u16()
        self._rec(p, "u16")
        return v

    def u32(self) -> int:
        p = self.pos
        v = super().u32()
        self._rec(p, "u32")
        return v

    def u64(self) -> int:
        p = self.pos
        v = super().u64()
        self._rec(p, "u64")
        return v

    def uvarint(self, limit: int = U64) -> int:
        p = self.pos
        v = super().uvarint(limit)
        self._rec(p, "uvarint", limit)
        return v

    def raw(self, n: int) -> bytes:
        p = self.pos
        v = super().raw(n)
        if n:
            self._rec(p, "raw")
        return v

    def view(self, n: int) -> memoryview:
        p = self.pos
        v = super().view(n)
        if n:
            self._rec(p, "raw")
        return v


_READER_MODULES = (_node_mod, _entry_mod, _chunk_mod, _commit_mod, _keydir_mod, _space_mod,
                   _frames_mod)


@contextlib.contextmanager
def tracing(buf: object, base: int = 0) -> Iterator[list[Field]]:
    """Within the block, decoders record the fields they read from ``buf``."""
    global _TRACE, _TRACE_BUF, _TRACE_BASE
    saved = [m.Reader for m in _READER_MODULES]  # type: ignore[attr-defined]
    out: list[Field] = []
    _TRACE, _TRACE_BUF, _TRACE_BASE = out, buf, base
    for m in _READER_MODULES:
        m.Reader = _TracingReader  # type: ignore[attr-defined]
    try:
        yield out
    finally:
        for m, r in zip(_READER_MODULES, saved):
            m.Reader = r  # type: ignore[attr-defined]
        _TRACE, _TRACE_BUF, _TRACE_BASE = None, None, 0


def trace_fields(decode: Callable[[bytes], Any], buf: bytes, base: int = 0) -> list[Field]:
    """The fields ``decode`` reads from ``buf`` (a valid encoding), in order."""
    with tracing(buf, base) as fields:
        decode(buf)
    return sorted(set(fields), key=lambda f: (f.start, f.end))


def slot_fields(image: bytes, keydir_fields: Callable[[bytes, int], list[Field]]) -> list[Field]:
    """Fields of a slot image: header, key-directory field, commit frame, CRC."""
    k, c = struct.unpack_from("<II", image, 40)
    flags = image[11]
    out = list(_SLOT_HEAD_FIELDS)
    if flags & 1:
        out += [Field(48, 56, "u64"), Field(56, 60, "u32"), Field(60, 92, "raw")]
    elif k:
        out += keydir_fields(image[48:48 + k], 48)
    start = SLOT_HEADER_SIZE + k
    if c >= FRAME_HEADER_SIZE:
        out += [Field(start + f.start, start + f.end, f.kind) for f in FRAME_HEADER_FIELDS]
        if c > FRAME_HEADER_SIZE:
            out.append(Field(start + FRAME_HEADER_SIZE, start + c, "raw"))
    elif c:
        out.append(Field(start, start + c, "raw"))
    out.append(Field(start + c, start + c + 4, "crc"))
    return out


# -- CRC fixers (a forger recomputes keyless checksums) -----------------------------------


def _put_crc(buf: bytearray, covered_start: int, covered_end: int, at: int) -> None:
    import zlib

    if at + 4 <= len(buf) and covered_end <= len(buf):
        struct.pack_into("<I", buf, at, zlib.crc32(bytes(buf[covered_start:covered_end])))


def fix_frame_crc(buf: bytes, at: int = 0) -> bytes:
    b = bytearray(buf)
    _put_crc(b, at, at + 44, at + 44)
    return bytes(b)


def fix_page_crc(buf: bytes, at: int = 0) -> bytes:
    b = bytearray(buf)
    _put_crc(b, at, at + 28, at + 28)
    return bytes(b)


def fix_slot_crc(buf: bytes, at: int = 0) -> bytes:
    """Recompute the slot CRC from the (possibly mutated) K and C, if they fit."""
    b = bytearray(buf)
    if len(b) < at + SLOT_HEADER_SIZE:
        return buf
    k, c = struct.unpack_from("<II", b, at + 40)
    if k + c > SLOT_CAPACITY:
        return buf
    end = at + SLOT_HEADER_SIZE + k + c
    _put_crc(b, at, end, end)
    return bytes(b)


# -- mutations ----------------------------------------------------------------------------


def special_uvarints(old: int, limit: int) -> list[int]:
    vals = {0, 1, 2, 127, 128, 2**32 - 1, 2**32, 2**63, U64, old ^ 1, old + 1, old - 1,
            old * 2, limit, limit + 1, limit - 1}
    return sorted(v for v in vals if 0 <= v <= U64)


def overlong(value: int) -> list[bytes]:
    """Forms a canonical decoder must refuse wherever they stand: overlong (`80 00`-style)
    encodings of ``value``, more than 64 bits, 11 bytes."""
    enc = uvarint(value)
    out = []
    for extra in (1, 2, 10 - len(enc)):
        if extra >= 1 and len(enc) + extra <= 10:
            out.append(enc[:-1] + bytes([enc[-1] | 0x80]) + b"\x80" * (extra - 1) + b"\x00")
    out += [b"\xff" * 9 + b"\x02", b"\xff" * 9 + b"\x7f", b"\x80" * 10 + b"\x01",
            b"\xff" * 10 + b"\x01"]
    return out


def bad_varints(value: int) -> list[bytes]:
    """overlong() plus a cut varint (continuation bit set on the last byte), which runs on
    into the next field (and may well form another valid encoding there)."""
    enc = uvarint(value)
    return [*overlong(value), enc[:-1] + bytes([enc[-1] | 0x80])]


def _fixed_specials(width: int, old: int) -> list[int]:
    top = (1 << (8 * width)) - 1
    vals = {0, 1, 2, 3, top, top - 1, old ^ 1, (old + 1) & top, (old - 1) & top,
            min(top, 2**31), min(top, 2**32 - 1), min(top, 2**63), 0x80 & top, 0x7F}
    return sorted(vals)


@st.composite
def same_length_edit(draw: st.DrawFn, old: bytes, kind: str, limit: int = U64) -> bytes:
    """A new value for a field that keeps its encoded length (a frame re-sealed in place
    must keep its size): edge values of the same varint length, a non-canonical form
    of a smaller value, an over-64-bit 10-byte form, fixed-width edge values, flips."""
    n = len(old)
    if kind == "uvarint":
        lo, hi = (0 if n == 1 else 1 << (7 * (n - 1))), min(U64, (1 << (7 * n)) - 1)
        try:
            cur = Reader(old).uvarint()
        except Exception:
            cur = lo
        cands = [uvarint(v) for v in special_uvarints(cur, limit) if lo <= v <= hi]
        if n >= 2:
            small = draw(st.integers(0, (1 << (7 * (n - 1))) - 1))
            enc = bytearray(uvarint(small))
            enc[-1] |= 0x80
            enc += b"\x80" * (n - 1 - len(enc)) + b"\x00"
            cands.append(bytes(enc))  # non-canonical: a trailing 00 after continuations
        if n == 10:
            cands.append(b"\xff" * 9 + b"\x02")
        cands.append(uvarint(draw(st.integers(lo, hi))))
        return draw(st.sampled_from([c for c in cands if len(c) == n]))
    if kind in _FIXED:
        return draw(st.sampled_from(_fixed_specials(n, int.from_bytes(old, "little")))
                    ).to_bytes(n, "little")
    op = draw(st.sampled_from(["flip", "random", "zero"]))
    if op == "flip":
        b = bytearray(old)
        i = draw(st.integers(0, n - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if op == "random":
        return draw(st.binary(min_size=n, max_size=n))
    return bytes(n)


@st.composite
def field_edit(draw: st.DrawFn, buf: bytearray, fields: Sequence[Field]) -> None:
    """Edit one of ``fields`` of ``buf`` in place (may change the length of raw fields)."""
    draw(_field_edit(buf, fields))


@st.composite
def _field_edit(draw: st.DrawFn, buf: bytearray, fields: Sequence[Any]) -> None:
    f = draw(st.sampled_from(list(fields)))
    if f.end > len(buf):
        return
    old_bytes = bytes(buf[f.start:f.end])
    if f.kind == "uvarint":
        try:
            old = Reader(old_bytes).uvarint()
        except Exception:
            old = 0
        if draw(st.integers(0, 3)) == 0:
            new = draw(st.sampled_from(bad_varints(old)))
        else:
            new = uvarint(draw(st.sampled_from(special_uvarints(old, f.limit))))
    elif f.kind in _FIXED:
        width = _FIXED[f.kind]
        old = int.from_bytes(old_bytes, "little")
        new = draw(st.sampled_from(_fixed_specials(width, old))).to_bytes(width, "little")
    else:
        op = draw(st.sampled_from(["flip", "random", "shorter", "longer", "zero"]))
        b = bytearray(old_bytes)
        if op == "flip":
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "random":
            b = bytearray(draw(st.binary(min_size=len(b), max_size=len(b))))
        elif op == "shorter":
            del b[draw(st.integers(0, len(b) - 1))]
        elif op == "longer":
            b.insert(draw(st.integers(0, len(b))), draw(st.integers(0, 255)))
        else:
            b = bytearray(len(b))
        new = bytes(b)
    buf[f.start:f.end] = new


@st.composite
def _mutation(draw: st.DrawFn, data: bytes, fields: Sequence[Field],
              donors: Sequence[tuple[bytes, Sequence[Field]]],
              fix: Callable[[bytes], bytes] | None, max_ops: int,
              first: Sequence[str] | None) -> bytes:
    buf = bytearray(data)
    # Field edits shift later offsets: only the first edit is field-aware (later ones are
    # byte-level), which keeps every field edit exact.
    field_ops = ["field", "field", "field", "swap", "splice"] if fields else []
    byte_ops = ["flip", "set", "insert", "delete", "truncate", "append", "dup"]
    for i in range(draw(st.integers(1, max_ops))):
        ops = (field_ops if i == 0 else []) + byte_ops
        if i == 0 and first and fields:
            ops = list(first)
        op = draw(st.sampled_from(ops))
        if not buf and op in ("flip", "set", "delete", "dup", "truncate"):
            op = "append"
        if op == "field":
            draw(_field_edit(buf, fields))
        elif op == "swap":
            a, b = draw(st.sampled_from(list(fields))), draw(st.sampled_from(list(fields)))
            if a.start > b.start:
                a, b = b, a
            if a.end <= b.start and b.end <= len(buf):
                fa, fb = bytes(buf[a.start:a.end]), bytes(buf[b.start:b.end])
                buf[b.start:b.end] = fa
                buf[a.start:a.end] = fb
        elif op == "splice":
            if donors:
                donor, dfields = draw(st.sampled_from(list(donors)))
                f = draw(st.sampled_from(list(fields)))
                same = [g for g in dfields if g.kind == f.kind] or list(dfields)
                if same and f.end <= len(buf):
                    g = draw(st.sampled_from(same))
                    buf[f.start:f.end] = donor[g.start:g.end]
        elif op == "flip":
            j = draw(st.integers(0, len(buf) - 1))
            buf[j] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            j = draw(st.integers(0, len(buf) - 1))
            buf[j] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFE, 0xFF]))
        elif op == "insert":
            j = draw(st.integers(0, len(buf)))
            buf[j:j] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(
                [b"\x80", b"\xff" * 9 + b"\x01", b"\x00"]))
        elif op == "delete":
            j = draw(st.integers(0, len(buf) - 1))
            del buf[j:j + draw(st.integers(1, 4))]
        elif op == "truncate":
            del buf[draw(st.integers(0, len(buf) - 1)):]
        elif op == "dup":
            j = draw(st.integers(0, len(buf) - 1))
            n = draw(st.integers(1, 16))
            k = draw(st.integers(0, len(buf)))
            buf[k:k] = buf[j:j + n]
        else:
            buf += draw(st.binary(min_size=1, max_size=8))
    out = bytes(buf)
    if fix is not None and draw(st.booleans()):
        out = fix(out)
    return out


def mutated(data: bytes, fields: Sequence[Field] = (), *,
            donors: Sequence[tuple[bytes, Sequence[Field]]] = (),
            fix: Callable[[bytes], bytes] | None = None,
            max_ops: int = 3, first: Sequence[str] | None = None) -> st.SearchStrategy[bytes]:
    """1..max_ops edits of ``data`` (see the module doc); ``fix`` re-computes its CRC
    afterwards in half of the examples; ``first`` restricts the first edit (e.g.
    ``("splice", "swap")``)."""
    fields = tuple(f for f in fields if f.start < f.end)
    return _mutation(data, fields, tuple(donors), fix, max_ops, tuple(first or ()))

