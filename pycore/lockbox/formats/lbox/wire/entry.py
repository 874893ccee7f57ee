"""TOC entries and keys.

Archive paths are relative POSIX paths of UTF-8 names ("docs/a.txt"); the
root directory is "". The TOC key of a path is ``parent || 0x00 || name`` so
that the children of one directory are contiguous and sorted by name, and the
root's children (parent "") sort before everything else. docs/FORMAT.md §9.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import overload

from ....errors import FormatError, InvalidPathError
from .constants import (
    INDEX_FANOUT,
    INLINE_CHUNK_REFS,
    MAX_CHUNK_SIZE,
    MAX_NAME_SIZE,
    MAX_PACK_MEMBERS,
    MAX_PATH_SIZE,
    MAX_SYMLINK_SIZE,
    MIN_CHUNK_SIZE,
    EntryType,
)
from .encoding import Reader, svarint, uvarint, uvarint_at
from .refs import Ref, decode_ref

__all__ = ["Entry", "normalize_path", "toc_key", "key_path", "split_path", "child_range",
           "subtree_ranges", "encode_entry", "encode_file_entry_head",
           "encode_packed_entry_head", "decode_entry", "chunk_count", "listed_fields",
           "ListedFields", "LAYOUT_CHUNKS", "LAYOUT_INDEX", "LAYOUT_PACKED", "MAX_ENTRY_SIZE",
           "MAX_INDEX_REFS", "MAX_MEMBER_NO", "LazyRefs"]

LAYOUT_CHUNKS = 0
LAYOUT_INDEX = 1
# Format version 3: the file is one member of a PACK frame (its one ref), ``member_no``
# says which (docs/FORMAT.md §9, §10 "Packs").
LAYOUT_PACKED = 2
MAX_MEMBER_NO = MAX_PACK_MEMBERS - 1
_TYPE_BYTE = {t: bytes([int(t)]) for t in EntryType}
_LAYOUT_BYTE = {LAYOUT_CHUNKS: b"\x00", LAYOUT_INDEX: b"\x01", LAYOUT_PACKED: b"\x02"}
_FILE = EntryType.FILE
_DIR = EntryType.DIR
_FILE_BYTE = _TYPE_BYTE[_FILE]
MAX_ENTRY_SIZE = 64 * 1024
# Index refs of one entry: 2048 indexes x 4096 chunks x chunk size (8 TiB at 1 MiB chunks)
# keeps every entry far below MAX_ENTRY_SIZE.
MAX_INDEX_REFS = 2048
_MAX_REFS = max(INLINE_CHUNK_REFS, MAX_INDEX_REFS)
_MIN_REF_SIZE, _MAX_REF_SIZE = 1 + 1 + 16, 10 + 4 + 16  # offset, frame size, tag


def normalize_path(path: str) -> str:
    """Canonical archive path: strip leading/trailing '/', refuse '.', '..', empty
    components, NUL and non-UTF-8. Returns "" for the root."""
    if "\x00" in path:
        raise InvalidPathError(f"path contains NUL: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for p in parts:
        if p == "..":
            raise InvalidPathError(f"path escapes the archive root: {path!r}")
    norm = "/".join(parts)
    try:
        data = norm.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPathError(f"path is not valid UTF-8: {path!r}") from None
    if len(data) > MAX_PATH_SIZE:
        raise InvalidPathError("path longer than 4096 bytes")
    if any(len(p.encode()) > MAX_NAME_SIZE for p in parts):
        raise InvalidPathError("name longer than 1024 bytes")
    return norm


def split_path(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def toc_key(path: str) -> bytes:
    parent, name = split_path(path)
    return parent.encode() + b"\x00" + name.encode()


_last_parent: tuple[bytes, str] = (b"", "")  # the parent last checked (listings repeat it)


def key_path(key: bytes) -> str:
    global _last_parent
    parent, sep, name = key.partition(b"\x00")
    if not sep or not name or b"\x00" in name:
        raise FormatError("TOC key is malformed")
    try:
        n = name.decode()
        last = _last_parent
        if parent == last[0]:
            p = last[1]
        else:
            p = parent.decode()
            # no empty, "." or ".." component (C-level searches, not a split)
            if p:
                wrapped = f"/{p}/"
                if "//" in wrapped or "/./" in wrapped or "/../" in wrapped:
                    raise FormatError("TOC key has a bad parent path")
            _last_parent = (parent, p)
    except UnicodeDecodeError:
        raise FormatError("TOC key is not UTF-8") from None
    if "/" in n or n in (".", ".."):
        raise FormatError("TOC key has a bad name")
    return f"{p}/{n}" if p else n


def child_range(dir_path: str) -> tuple[bytes, bytes]:
    """Keys of the direct children of ``dir_path``: ``lo <= key < hi``."""
    d = dir_path.encode()
    return d + b"\x00", d + b"\x01"


def subtree_ranges(dir_path: str) -> list[tuple[bytes, bytes]]:
    """Key ranges of every descendant of ``dir_path`` (children, then deeper)."""
    if not dir_path:
        return [(b"", b"\xff" * 8)]
    d = dir_path.encode()
    return [child_range(dir_path), (d + b"/", d + b"0")]


def chunk_count(size: int, chunk_size: int) -> int:
    """Every file has at least one chunk (an empty file has one empty chunk)."""
    return max(1, -(-size // chunk_size))


class LazyRefs(Sequence[Ref]):
    """A FILE entry's refs, decoded and checked when used (``len`` needs no decoding).

    :func:`decode_entry` with ``lazy_refs=True`` checks everything before the refs (and
    their count against the size and the bytes left), and leaves the refs themselves —
    up to 2048 per entry, which a listing never needs — to this object: ``refs[i]``
    decodes the refs up to ``i``, anything else all of them (and the end of the entry);
    both raise the ``FormatError`` an eager decode would have raised. Equal to the tuple
    of the same refs."""

    __slots__ = ("_buf", "_count", "_pos", "_refs", "_some")

    def __init__(self, buf: bytes, pos: int, count: int) -> None:
        self._buf = buf
        self._pos = pos  # where the first ref not in _some starts
        self._count = count
        self._some: list[Ref] = []  # the first refs, decoded so far
        self._refs: tuple[Ref, ...] | None = None

    def _prefix(self, n: int) -> list[Ref]:
        some = self._some
        if len(some) < n:
            r = Reader(self._buf, "TOC entry")
            r.pos = self._pos
            while len(some) < n:
                some.append(decode_ref(r))
            self._pos = r.pos
        return some

    def _load(self) -> tuple[Ref, ...]:
        refs = self._refs
        if refs is None:
            some = self._prefix(self._count)
            r = Reader(self._buf, "TOC entry")
            r.pos = self._pos
            r.done()
            refs = self._refs = tuple(some)
            self._some = []
            self._buf = b""
        return refs

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @overload
    def __getitem__(self, index: int) -> Ref: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Ref, ...]: ...

    def __getitem__(self, index: int | slice) -> Ref | tuple[Ref, ...]:
        if self._refs is None and isinstance(index, int) and 0 <= index < self._count:
            return self._prefix(index + 1)[index]
        return self._load()[index]

    def __iter__(self) -> Iterator[Ref]:
        return iter(self._load())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, LazyRefs)):
            return self._load() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._load())

    def __repr__(self) -> str:
        return repr(self._load())


@dataclass(frozen=True, slots=True, init=False)
class Entry:
    type: EntryType
    mode: int
    mtime_ns: int
    size: int = 0
    stored_size: int = 0  # bytes of every frame holding the content (chunks + indexes)
    content_hash: bytes = b""  # BLAKE3-256 of the content
    file_id: bytes = b""
    chunk_size: int = 0
    layout: int = LAYOUT_CHUNKS
    refs: tuple[Ref, ...] | LazyRefs = field(default_factory=tuple)
    target: str = ""
    member_no: int = 0  # layout 2 only: the member of the PACK frame its one ref names

    def __init__(self, type: EntryType, mode: int, mtime_ns: int, size: int = 0,
                 stored_size: int = 0, content_hash: bytes = b"", file_id: bytes = b"",
                 chunk_size: int = 0, layout: int = LAYOUT_CHUNKS,
                 refs: tuple[Ref, ...] | LazyRefs = (), target: str = "",
                 member_no: int = 0) -> None:
        # The dataclass's frozen __init__ sets each field with object.__setattr__ (a name
        # lookup each); the slots' own setters do the same in a third of the time, and
        # listings and small-file adds make one Entry per entry.
        (s_type, s_mode, s_mtime, s_size, s_stored, s_hash, s_id, s_chunk, s_layout, s_refs,
         s_target, s_member) = _ENTRY_SETTERS
        s_type(self, type)
        s_mode(self, mode)
        s_mtime(self, mtime_ns)
        s_size(self, size)
        s_stored(self, stored_size)
        s_hash(self, content_hash)
        s_id(self, file_id)
        s_chunk(self, chunk_size)
        s_layout(self, layout)
        s_refs(self, refs)
        s_target(self, target)
        s_member(self, member_no)

    @property
    def is_dir(self) -> bool:
        return self.type == EntryType.DIR

    @property
    def chunks(self) -> int:
        return chunk_count(self.size, self.chunk_size)


_ENTRY_SETTERS = tuple(Entry.__dict__[f.name].__set__ for f in fields(Entry))


def encode_entry(e: Entry) -> bytes:
    t = e.type
    if t is _FILE or t == _FILE:
        refs = e.refs
        layout = e.layout
        parts = [_FILE_BYTE, uvarint(e.mode), svarint(e.mtime_ns), uvarint(e.size),
                 uvarint(e.stored_size), e.content_hash, e.file_id, uvarint(e.chunk_size),
                 _LAYOUT_BYTE[layout], uvarint(len(refs))]
        if layout == LAYOUT_PACKED:
            if not 0 <= e.member_no <= MAX_MEMBER_NO:
                raise ValueError(f"member number {e.member_no} out of 0..{MAX_MEMBER_NO}")
            parts.insert(9, uvarint(e.member_no))
        elif e.member_no:
            raise ValueError("a member number on an entry that is not packed (layout 2)")
        for ref in refs:
            parts += (uvarint(ref.frame_offset), uvarint(ref.frame_size), ref.tag)
        return b"".join(parts)
    head = b"".join((_TYPE_BYTE[t], uvarint(e.mode), svarint(e.mtime_ns)))
    if t == EntryType.SYMLINK:
        data = e.target.encode()
        return b"".join((head, uvarint(len(data)), data))
    return head


def encode_file_entry_head(mode: int, mtime_ns: int, size: int, stored_size: int,
                           content_hash: bytes, file_id: bytes, chunk_size: int) -> bytes:
    """The encoding of a one-chunk FILE entry up to its one ref: ``head +
    uvarint(frame_offset) + uvarint(frame_size) + tag`` is :func:`encode_entry` of
    it (what the small-file pipeline prepares before the frame's offset is known)."""
    return b"".join((_FILE_BYTE, uvarint(mode), svarint(mtime_ns), uvarint(size),
                     uvarint(stored_size), content_hash, file_id, uvarint(chunk_size),
                     _LAYOUT_BYTE[LAYOUT_CHUNKS], b"\x01"))


def encode_packed_entry_head(mode: int, mtime_ns: int, size: int, stored_size: int,
                             content_hash: bytes, file_id: bytes, chunk_size: int,
                             member_no: int) -> bytes:
    """The encoding of a packed FILE entry (layout 2, member ``member_no``) up to its
    one ref, the PACK frame's: ``head + uvarint(frame_offset) + uvarint(frame_size) +
    tag`` is :func:`encode_entry` of it (the pack's ref is known once it is sealed).
    ``stored_size`` is the member's size in the pack."""
    if not 0 <= member_no <= MAX_MEMBER_NO:
        raise ValueError(f"member number {member_no} out of 0..{MAX_MEMBER_NO}")
    return b"".join((_FILE_BYTE, uvarint(mode), svarint(mtime_ns), uvarint(size),
                     uvarint(stored_size), content_hash, file_id, uvarint(chunk_size),
                     _LAYOUT_BYTE[LAYOUT_PACKED], uvarint(member_no), b"\x01"))


def decode_entry(buf: bytes, *, lazy_refs: bool = False) -> Entry:
    """Decode and check an entry. ``lazy_refs``: a FILE entry's refs are decoded (and
    checked) on first use (:class:`LazyRefs`); listings use it."""
    if lazy_refs:
        try:
            entry = _decode_listed(buf)
        except (IndexError, ValueError):  # cut or malformed: the checked path says how
            entry = None
        if entry is not None:
            return entry
    return _decode_checked(buf, lazy_refs)


def _decode_listed(buf: bytes) -> Entry | None:
    """:func:`listed_fields` as an :class:`Entry` (a FILE's refs left lazy)."""
    f = listed_fields(buf)
    if f is None:
        return None
    t, mode, mtime, size, stored, at, csize, layout, pos, n, member_no = f
    if t == 2:
        return Entry(_DIR, mode, mtime)
    return Entry(_FILE, mode, mtime, size, stored, bytes(buf[at:at + 32]),
                 bytes(buf[at + 32:at + 48]), csize, layout, LazyRefs(buf, pos, n), "",
                 member_no)


ListedFields = tuple[int, int, int, int, int, int, int, int, int, int, int]


def listed_fields(buf: bytes | memoryview) -> ListedFields | None:
    """The fields of the common entries of a listing (a FILE with chunk, index or pack
    refs; a DIR), decoded without a :class:`Reader` and without building an
    :class:`Entry`, with the same checks as the checked decoder: ``(type, mode,
    mtime_ns, size, stored_size, hash_offset, chunk_size, layout, refs_offset,
    ref_count, member_no)`` (the content hash is ``buf[hash_offset:hash_offset + 32]``,
    the file id the 16 bytes after it; ``member_no`` is 0 unless the layout is 2; a
    DIR has zeros after ``mtime_ns``). None (or IndexError/ValueError) for
    anything else or anything wrong: :func:`decode_entry` then decodes it or raises
    the precise error.

    Varints of one or two bytes (modes, small sizes, the ref count) are read inline:
    a listing runs this once per entry."""
    t = buf[0]
    b = buf[1]
    if b < 0x80:
        mode, pos = b, 2
    elif 0 < (c := buf[2]) < 0x20:  # two bytes, at most 0o7777
        mode, pos = (b & 0x7F) | (c << 7), 3
    else:
        mode, pos = uvarint_at(buf, 1)
        if mode > 0o7777:
            return None
    z, pos = uvarint_at(buf, pos)
    mtime = (z >> 1) ^ -(z & 1)
    if t == 2:  # DIR
        return (2, mode, mtime, 0, 0, 0, 0, 0, 0, 0, 0) if pos == len(buf) else None
    if t != 1:  # FILE
        return None
    b = buf[pos]
    if b < 0x80:
        size = b
        pos += 1
    elif (c := buf[pos + 1]) < 0x80 and c:
        size = (b & 0x7F) | (c << 7)
        pos += 2
    else:
        size, pos = uvarint_at(buf, pos)
    b = buf[pos]
    if b < 0x80:
        stored = b
        pos += 1
    elif (c := buf[pos + 1]) < 0x80 and c:
        stored = (b & 0x7F) | (c << 7)
        pos += 2
    else:
        stored, pos = uvarint_at(buf, pos)
    end = len(buf)
    at = pos
    if pos + 48 > end:
        return None
    csize, pos = uvarint_at(buf, pos + 48)
    if not MIN_CHUNK_SIZE <= csize <= MAX_CHUNK_SIZE:
        return None
    layout = buf[pos]
    member_no = 0
    if layout == LAYOUT_PACKED:  # the member number sits between the layout and n
        member_no, pos = uvarint_at(buf, pos + 1)
        if member_no > MAX_MEMBER_NO:
            return None
        pos -= 1
    n = buf[pos + 1]
    if n < 0x80:
        pos += 2
    else:
        n, pos = uvarint_at(buf, pos + 1)
    chunks = -(-size // csize) or 1
    if layout == LAYOUT_CHUNKS:
        if n != chunks or n > INLINE_CHUNK_REFS:
            return None
    elif layout == LAYOUT_INDEX:
        if n != -(-chunks // INDEX_FANOUT) or chunks <= INLINE_CHUNK_REFS or n > _MAX_REFS:
            return None
    elif layout == LAYOUT_PACKED:
        if n != 1 or chunks != 1:
            return None
    else:
        return None
    left = end - pos
    if not _MIN_REF_SIZE * n <= left <= _MAX_REF_SIZE * n or n == 0:
        return None
    return (1, mode, mtime, size, stored, at, csize, layout, pos, n, member_no)


def _decode_checked(buf: bytes, lazy_refs: bool) -> Entry:
    r = Reader(buf, "TOC entry")
    t = r.u8()
    mode = r.uvarint(0o7777)
    mtime = r.svarint()
    if t == EntryType.FILE:
        size = r.uvarint()
        stored = r.uvarint()
        digest = r.raw(32)
        file_id = r.raw(16)
        csize = r.uvarint(MAX_CHUNK_SIZE)
        if csize < MIN_CHUNK_SIZE:
            raise FormatError("TOC entry: chunk size below the minimum")
        layout = r.u8()
        member_no = r.uvarint(MAX_MEMBER_NO) if layout == LAYOUT_PACKED else 0
        n = r.uvarint(_MAX_REFS)
        chunks = chunk_count(size, csize)
        if layout == LAYOUT_CHUNKS:
            if n != chunks or n > INLINE_CHUNK_REFS:
                raise FormatError("TOC entry: chunk reference count does not match the size")
        elif layout == LAYOUT_INDEX:
            if n != -(-chunks // INDEX_FANOUT) or chunks <= INLINE_CHUNK_REFS:
                raise FormatError("TOC entry: index reference count does not match the size")
        elif layout == LAYOUT_PACKED:
            if n != 1 or chunks != 1:
                raise FormatError("TOC entry: a packed file has one chunk and one ref")
        else:
            raise FormatError(f"TOC entry: unknown layout {layout}")
        if lazy_refs and n:
            if not _MIN_REF_SIZE * n <= r.remaining() <= _MAX_REF_SIZE * n:
                raise FormatError("TOC entry: its refs do not fill the entry")
            refs: tuple[Ref, ...] | LazyRefs = LazyRefs(buf, r.pos, n)
        else:
            refs = tuple(decode_ref(r) for _ in range(n))
            r.done()
        return Entry(EntryType.FILE, mode, mtime, size, stored, digest, file_id, csize, layout,
                     refs, "", member_no)
    if t == EntryType.DIR:
        r.done()
        return Entry(EntryType.DIR, mode, mtime)
    if t == EntryType.SYMLINK:
        raw = r.blob(MAX_SYMLINK_SIZE)
        r.done()
        try:
            target = raw.decode()
        except UnicodeDecodeError:
            raise FormatError("TOC entry: symlink target is not UTF-8") from None
        if not target or "\x00" in target:
            raise FormatError("TOC entry: symlink target is empty or contains NUL")
        return Entry(EntryType.SYMLINK, mode, mtime, target=target)
    raise FormatError(f"TOC entry: unknown type {t}")
