"""The commit record (sealed inside the superblock slot). docs/FORMAT.md §7."""

from __future__ import annotations

from dataclasses import dataclass, field

from ....errors import FormatError, UnsupportedVersionError
from .constants import (
    INLINE_ROOT_MAX,
    MAX_CHUNK_SIZE,
    MAX_ROOT_LISTING_LEAVES,
    MAX_TREE_HEIGHT,
    MIN_CHUNK_SIZE,
)
from .encoding import Builder, Reader
from .refs import Ref, decode_ref, encode_ref

__all__ = ["TreeRoot", "CommitRecord", "Stats", "encode_commit", "decode_commit",
           "EMPTY_TREE", "COMMIT_VERSION"]

COMMIT_VERSION = 1
ROOT_EMPTY = 0
ROOT_REF = 1
ROOT_INLINE = 2


@dataclass(frozen=True, slots=True)
class TreeRoot:
    """A tree's root: empty, a ref to the root node, or the root node inline."""

    count: int = 0
    height: int = 0  # 0 = empty; 1 = the root is a leaf
    ref: Ref | None = None
    inline: bytes | None = None

    @property
    def empty(self) -> bool:
        return self.height == 0


EMPTY_TREE = TreeRoot()


@dataclass(frozen=True, slots=True)
class Stats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    file_bytes: int = 0  # sum of file sizes (plaintext)
    stored_bytes: int = 0  # sum of data-frame sizes referenced by the TOC


@dataclass(frozen=True, slots=True)
class CommitRecord:
    generation: int
    time_ns: int
    archive_end: int
    default_chunk_size: int
    keydir_sha256: bytes
    toc: TreeRoot
    env: TreeRoot
    space: TreeRoot | None
    root_leaves: tuple[Ref, ...] = field(default_factory=tuple)
    root_leaves_complete: bool = False
    stats: Stats = field(default_factory=Stats)


def _enc_root(b: Builder, t: TreeRoot) -> None:
    if t.empty:
        b.u8(ROOT_EMPTY)
    elif t.inline is not None:
        b.u8(ROOT_INLINE).u8(t.height).uvarint(t.count).blob(t.inline)
    else:
        assert t.ref is not None
        b.u8(ROOT_REF).u8(t.height).uvarint(t.count)
        encode_ref(b, t.ref)


def _dec_root(r: Reader) -> TreeRoot:
    """docs/FORMAT.md §7, in order: the kind (unknown: FormatError); EMPTY ends here;
    the height (not 1..16: FormatError; an INLINE root of height other than 1:
    FormatError); the count; then the ref (§2, its limits checked here) or the node
    blob (over 3072 bytes: LimitExceededError)."""
    kind = r.u8()
    if kind == ROOT_EMPTY:
        return EMPTY_TREE
    if kind not in (ROOT_REF, ROOT_INLINE):
        raise FormatError(f"commit: unknown root kind {kind}")
    height = r.u8()
    if not 1 <= height <= MAX_TREE_HEIGHT:
        raise FormatError("commit: bad tree height")
    if kind == ROOT_INLINE and height != 1:
        raise FormatError(f"commit: an inline root must be a leaf (height 1, not {height})")
    count = r.uvarint()
    if kind == ROOT_INLINE:
        return TreeRoot(count, height, None, r.blob(INLINE_ROOT_MAX))
    return TreeRoot(count, height, decode_ref(r), None)


def encode_commit(c: CommitRecord) -> bytes:
    b = Builder().u8(COMMIT_VERSION).uvarint(c.generation).uvarint(c.time_ns)
    b.uvarint(c.archive_end).uvarint(c.default_chunk_size).raw(c.keydir_sha256)
    _enc_root(b, c.toc)
    _enc_root(b, c.env)
    if c.space is None:
        b.u8(0)
    else:
        b.u8(1)
        _enc_root(b, c.space)
    b.u8(1 if c.root_leaves_complete else 0).uvarint(len(c.root_leaves))
    for ref in c.root_leaves:
        encode_ref(b, ref)
    s = c.stats
    b.uvarint(s.files).uvarint(s.dirs).uvarint(s.symlinks).uvarint(s.file_bytes)
    b.uvarint(s.stored_bytes)
    return b.getvalue()


def decode_commit(buf: bytes) -> CommitRecord:
    r = Reader(buf, "commit record")
    version = r.u8()
    if version != COMMIT_VERSION:
        raise UnsupportedVersionError(f"commit record version {version} is not supported")
    gen = r.uvarint()
    time_ns = r.uvarint()
    end = r.uvarint()
    chunk = r.uvarint(MAX_CHUNK_SIZE)
    if chunk < MIN_CHUNK_SIZE:
        raise FormatError("commit: chunk size below the minimum")
    keydir_hash = r.raw(32)
    toc = _dec_root(r)
    env = _dec_root(r)
    has_space = r.u8()
    if has_space > 1:
        raise FormatError("commit: bad space flag")
    space = _dec_root(r) if has_space else None
    complete = r.u8()
    if complete > 1:
        raise FormatError("commit: bad root-listing flag")
    n = r.uvarint(MAX_ROOT_LISTING_LEAVES)
    leaves = tuple(decode_ref(r) for _ in range(n))
    stats = Stats(r.uvarint(), r.uvarint(), r.uvarint(), r.uvarint(), r.uvarint())
    r.done()
    return CommitRecord(gen, time_ns, end, chunk, keydir_hash, toc, env, space, leaves,
                        bool(complete), stats)
