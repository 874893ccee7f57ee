"""Genuine archives whose TOC tree has a hostile *shape* (memory of a tree walk).

Every builder writes a real archive with the real writer and its real sealing code
(``lockbox.create``, ``box.writer()``, and the writer's own ``emit``, which compresses and
seals each frame with the content key at its final offset): the archive opens with the
password and every frame authenticates. Only the TOC tree is hand-made — as a key holder
could make it — by standing in for ``update_tree_flow`` during the archive's one commit.

Each builder returns ``(archive bytes, password)``; its docstring says what it is and what
a reader must do with it (list, ``ls -R``, stat and verify each either succeed in bounded
memory and time or raise a typed error). ``CASES`` maps a case name to its builder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from unittest import mock

import lockbox
import lockbox.formats.lbox.write.writer as writer_mod
from lockbox import Argon2Params
from lockbox.formats.lbox.wire.commit import TreeRoot
from lockbox.formats.lbox.wire.constants import (
    MAX_CHUNK_SIZE,
    MAX_NODE_PLAIN_SIZE,
    SUPERBLOCK_SIZE,
    EntryType,
    FrameKind,
)
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.formats.lbox.wire.entry import LAYOUT_INDEX, MAX_INDEX_REFS, Entry, encode_entry
from lockbox.formats.lbox.wire.node import Child, Internal, Leaf, encode_node
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.write.tree import TreeUpdate

from . import DetCrypto, frozen_clock

__all__ = ["PASSWORD", "CASES", "same_frame_fanout", "distinct_bombs", "entry_flood",
           "flood_at_limit", "shared_chunks", "overlapping_refs", "internal_bombs", "name_key",
           "HUGE_ENTRIES_PER_LEAF"]

PASSWORD = "pw"
ARGON2 = Argon2Params(time_cost=1, memory_kib=64)
MTIME_NS = 1_600_000_000_000_000_000
# Names: three symbols of a 64-symbol alphabet in byte order (262,144 names), periodic so
# that runs of keys compress to almost nothing.
_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_FAR_REF = Ref(1 << 63, 4_210_768, b"\xa5" * 16)  # a ref at its longest (30 bytes)

Emit = Callable[[FrameKind, bytes], Ref]


def name_key(i: int) -> bytes:
    """TOC key of the root's child number ``i`` (names in key order as ``i`` grows)."""
    a = _ALPHABET
    return b"\x00" + (a[i // 4096 % 64] + a[i // 64 % 64] + a[i % 64]).encode()


def _huge_entry() -> bytes:
    """A FILE entry with the most refs an entry may hold (2048 index refs, each at its
    longest): about 61 KiB, all but a few bytes repeats."""
    chunks = MAX_INDEX_REFS * 4096
    return encode_entry(Entry(EntryType.FILE, 0o644, MTIME_NS, chunks * MAX_CHUNK_SIZE, 0,
                              b"\x11" * 32, b"\x22" * 16, MAX_CHUNK_SIZE, LAYOUT_INDEX,
                              (_FAR_REF,) * MAX_INDEX_REFS))


_HUGE = _huge_entry()
HUGE_ENTRIES_PER_LEAF = (MAX_NODE_PLAIN_SIZE - 8) // (len(_HUGE) + 12)  # 17


def _bomb_leaf(first: int) -> Leaf:
    """A 1 MiB leaf of huge entries (keys ``first`` ...): ~100 bytes of zstd."""
    keys = [name_key(first + k) for k in range(HUGE_ENTRIES_PER_LEAF)]
    return Leaf(keys, [_HUGE] * len(keys))


def _build(make_toc: Callable[[Emit], TreeRoot], label: str) -> tuple[bytes, str]:
    """Create an archive and commit once, with ``make_toc(emit)`` as the TOC. Random
    bytes come from ``DetCrypto(label)`` and the clock is frozen: the same bytes every
    time (the adversarial corpus regenerates them)."""
    real = writer_mod.update_tree_flow

    def stand_in(view: Any, kind: FrameKind, root: TreeRoot, changes: Any, emit: Emit,
                 inline_ok: bool = True) -> Generator[Any, Any, TreeUpdate]:
        if kind != FrameKind.TOC_NODE:
            return real(view, kind, root, changes, emit, inline_ok)

        def flow() -> Generator[Any, Any, TreeUpdate]:
            return TreeUpdate(make_toc(emit), {})
            yield  # a flow with no reads

        return flow()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.lbox"
        with frozen_clock():
            box = lockbox.create(path, password=PASSWORD, argon2=ARGON2,
                                 crypto=DetCrypto(f"tree-{label}"))
            try:
                with mock.patch.object(writer_mod, "update_tree_flow", stand_in), \
                        box.writer() as w:
                    w.mkdir("placeholder", mtime_ns=MTIME_NS)  # a change: the TOC is written
            finally:
                box.close()
        return path.read_bytes(), PASSWORD


def _fanout(children: int) -> int:
    """How many children of ~27 bytes fit a 1 MiB internal node."""
    return min(children, (MAX_NODE_PLAIN_SIZE - 16) // 27)


def same_frame_fanout(children: int = 38_000) -> tuple[bytes, str]:
    """The reviewer's archive: one internal node (the root) names ~38k children, every
    one the *same* 1 MiB bomb leaf (17 entries of 2048 refs). A valid tree never names a
    frame twice: a reader must refuse it (IntegrityError) before decoding 38k copies."""

    def toc(emit: Emit) -> TreeRoot:
        ref = emit(FrameKind.TOC_NODE, encode_node(_bomb_leaf(0)))
        n = _fanout(children)
        kids = [Child(name_key(i), ref, HUGE_ENTRIES_PER_LEAF) for i in range(n)]
        root = emit(FrameKind.TOC_NODE, encode_node(Internal(1, kids)))
        return TreeRoot(n * HUGE_ENTRIES_PER_LEAF, 2, root, None)

    return _build(toc, "same_frame_fanout")


def distinct_bombs(leaves: int = 256) -> tuple[bytes, str]:
    """A *valid* tree: the root names ``leaves`` distinct leaf frames of ~290 bytes, each
    inflating to a 1 MiB leaf of 17 huge entries (256 MiB of nodes from ~90 KiB). A reader
    must list it in bounded memory or refuse it (LimitExceededError, the decompression
    bound) long before inflating it all."""

    def toc(emit: Emit) -> TreeRoot:
        kids = []
        for j in range(leaves):
            leaf = _bomb_leaf(j * HUGE_ENTRIES_PER_LEAF)
            kids.append(Child(leaf.keys[0], emit(FrameKind.TOC_NODE, encode_node(leaf)),
                              leaf.count))
        root = emit(FrameKind.TOC_NODE, encode_node(Internal(1, kids)))
        return TreeRoot(sum(c.count for c in kids), 2, root, None)

    return _build(toc, "distinct_bombs")


def entry_flood(leaves: int = 40) -> tuple[bytes, str]:
    """A *valid* tree of ``leaves`` (≤ 64) leaves of 65,536 empty directories each (names
    of four symbols, mtime 0): ~1 KiB of zstd per leaf, 2.6 million entries in all. A
    reader must list it in bounded memory or refuse it (LimitExceededError)."""
    value = encode_entry(Entry(EntryType.DIR, 0o755, 0))
    per_leaf = 65_536
    # Leaf j's names are symbol j + three symbols: one encoding serves every leaf.
    template = encode_node(Leaf([b"\x00-" + name_key(k)[1:] for k in range(per_leaf)],
                                [value] * per_leaf))
    key_at = 2 + len(uvarint(per_leaf)) + 2
    assert template[key_at:key_at + 5] == b"\x00----"

    def toc(emit: Emit) -> TreeRoot:
        kids = []
        for j in range(min(leaves, len(_ALPHABET))):
            first = b"\x00" + _ALPHABET[j].encode() + b"---"
            payload = template[:key_at] + first + template[key_at + len(first):]
            kids.append(Child(first, emit(FrameKind.TOC_NODE, payload), per_leaf))
        root = emit(FrameKind.TOC_NODE, encode_node(Internal(1, kids)))
        return TreeRoot(len(kids) * per_leaf, 2, root, None)

    return _build(toc, "entry_flood")


def flood_at_limit(pad_leaves: int = 2, flood_leaves: int = 4) -> tuple[bytes, str]:
    """The largest listing an ~80 KiB archive can make a reader hold: a *valid* tree whose
    first leaves are incompressible (2 x 2,000 entries with random names, ~56 KiB of
    frames, which buy decompression allowance) and whose next leaves are floods of 65,536
    empty directories each — sized to stay just under the default decompression bound.
    A reader must list it (~266k entries) in bounded memory and time."""
    import random

    value = encode_entry(Entry(EntryType.DIR, 0o755, 0))
    rng = random.Random(1)
    pads = []
    for j in range(pad_leaves):
        names = sorted({f"+{j}{rng.getrandbits(96):024x}" for _ in range(2000)})
        pads.append(Leaf([b"\x00" + n.encode() for n in names], [value] * len(names)))
    per_leaf = 65_536
    template = encode_node(Leaf([b"\x00-" + name_key(k)[1:] for k in range(per_leaf)],
                                [value] * per_leaf))
    key_at = 2 + len(uvarint(per_leaf)) + 2

    def toc(emit: Emit) -> TreeRoot:
        kids = [Child(leaf.keys[0], emit(FrameKind.TOC_NODE, encode_node(leaf)), leaf.count)
                for leaf in pads]
        for j in range(flood_leaves):
            first = b"\x00" + _ALPHABET[j].encode() + b"---"
            payload = template[:key_at] + first + template[key_at + len(first):]
            kids.append(Child(first, emit(FrameKind.TOC_NODE, payload), per_leaf))
        root = emit(FrameKind.TOC_NODE, encode_node(Internal(1, kids)))
        return TreeRoot(sum(c.count for c in kids), 2, root, None)

    return _build(toc, "flood_at_limit")


def shared_chunks(copies: int = 100_000) -> tuple[bytes, str]:
    """``copies`` FILE entries that are all the same 4 MiB file of zeros: one chunk frame of
    a few hundred bytes, named by every entry (the real tree builder makes the tree). Each
    entry alone is valid; a valid archive never shares a frame between files. A reader
    must list it; ``verify`` must not decompress and hash the chunk 100,000 times (400 GiB)
    but report the sharing."""
    real = writer_mod.update_tree_flow

    def stand_in(view: Any, kind: FrameKind, root: TreeRoot, changes: dict[bytes, Any],
                 emit: Emit, inline_ok: bool = True) -> Generator[Any, Any, TreeUpdate]:
        if kind == FrameKind.TOC_NODE:
            seed = changes[b"\x00seed"]
            changes = {name_key(i): seed for i in range(copies)}
        return real(view, kind, root, changes, emit, inline_ok)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.lbox"
        with frozen_clock():
            box = lockbox.create(path, password=PASSWORD, argon2=ARGON2,
                                 chunk_size=MAX_CHUNK_SIZE, crypto=DetCrypto("tree-shared"))
            try:
                with mock.patch.object(writer_mod, "update_tree_flow", stand_in), \
                        box.writer() as w:
                    w.add_bytes("seed", bytes(MAX_CHUNK_SIZE), mtime_ns=MTIME_NS)
            finally:
                box.close()
        return path.read_bytes(), PASSWORD


def overlapping_refs(children: int = 38_000) -> tuple[bytes, str]:
    """The root names ~38k children whose refs claim the largest frame (4 MiB) at offsets
    one byte apart from the first page on: fetched as asked, every child is the rest of the
    archive (gigabytes of copies). No valid tree has overlapping frames or frames past the
    committed end: a reader must refuse it (IntegrityError) before fetching."""

    def toc(emit: Emit) -> TreeRoot:
        n = _fanout(children)
        kids = [Child(name_key(i), Ref(SUPERBLOCK_SIZE + i, 4_210_768, b"\x5a" * 16), 1)
                for i in range(n)]
        root = emit(FrameKind.TOC_NODE, encode_node(Internal(1, kids)))
        return TreeRoot(n, 2, root, None)

    return _build(toc, "overlapping_refs")


def internal_bombs(nodes: int = 64) -> tuple[bytes, str]:
    """Height 3: the root names ``nodes`` (≤ 64) distinct level-1 frames of ~470 bytes,
    each a 0.9 MiB internal node of ~38k children (all one 64-byte ref): a level-by-level
    reader holds millions of children (2.5 million here) before it fetches any. A reader
    must refuse it (IntegrityError or LimitExceededError) in bounded memory."""
    n = _fanout(38_000)
    far = Ref(SUPERBLOCK_SIZE, 64, b"\x3c" * 16)
    # Node j's keys are "\0" + symbol j + a three-symbol name: past its first item every
    # node encodes to the same bytes, so one encoding serves all (only the first key moves).
    template = encode_node(Internal(1, [Child(b"\x00-" + name_key(i)[1:], far, 1)
                                         for i in range(n)]))
    key_at = 2 + len(uvarint(n)) + 2  # type, level, count; then shared = 0, key length
    assert template[key_at:key_at + 5] == b"\x00----"

    def toc(emit: Emit) -> TreeRoot:
        kids = []
        for j in range(min(nodes, len(_ALPHABET))):
            first = b"\x00" + _ALPHABET[j].encode() + b"---"
            payload = template[:key_at] + first + template[key_at + len(first):]
            kids.append(Child(first, emit(FrameKind.TOC_NODE, payload), n))
        root = emit(FrameKind.TOC_NODE, encode_node(Internal(2, kids)))
        return TreeRoot(len(kids) * n, 3, root, None)

    return _build(toc, "internal_bombs")


CASES: dict[str, Callable[[], tuple[bytes, str]]] = {
    "same_frame_fanout": same_frame_fanout,
    "distinct_bombs": distinct_bombs,
    "entry_flood": entry_flood,
    "flood_at_limit": flood_at_limit,
    "shared_chunks": shared_chunks,
    "overlapping_refs": overlapping_refs,
    "internal_bombs": internal_bombs,
}
