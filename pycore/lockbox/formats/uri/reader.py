"""Reading ``.uri`` archives: the :class:`UriFormat` spec and :class:`UriSession` flows.

Everything is a sans-I/O flow (``lockbox.drivers``), so the same code lists a local
file, an archive over HTTP Range and one in the browser.

**Scanning.** A ``.uri`` archive has no index: listing hops from chunk header to chunk
header. The scan reads *windows*: the first is 16 KiB (the registry's probe read, so
opening costs no round trip of its own); a window that is used up by
chunks lying close together is followed by one twice as large (up to 4 MiB), so N small
files cost about log2(N) round trips, not N. When a file's data is longer than the
current window, the scan jumps over it -- its data is never fetched -- and the next
window starts again at 16 KiB. Every header's CRC is checked before any of its lengths
is believed, and nothing is allocated from a claimed length: paths and symlink targets
are at most 4096 bytes (checked after the CRC) and file data is read in bounded windows.

**The index.** ``stat``, ``listdir`` and ``read`` use an index (path -> header offset,
sizes, mode, owner, group, target) built by one full scan on first use and bounded by
``max_entries`` / ``max_index_bytes`` (:class:`UriLimits`; LimitExceededError names the
setting). ``walk`` does not need it: it streams entries to ``emit`` as the scan reads
them (keeping only the set of paths seen, for the duplicate and parent rules).

**Checksums.** A directory's or symlink's data CRC is checked when its chunk is scanned.
A file's CRC covers its whole data, so ``read_flow`` reads the whole file once on first
access (one pass, in bounded windows), checks the CRC and remembers the verdict; later
reads of the same file fetch only their range. Every byte ``read_flow`` returns has thus
been checksummed -- at the price of reading a large file whole before its first partial
read. ``OpenOptions.settings["unchecked_partial_reads"] = True`` lifts that for reads
that are not the whole file (documented as unchecked). :meth:`UriSession.stream_flow`
hands a whole file to a sink and checks the CRC before the last piece (what the
extractor and ``convert`` need), in a single pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

from ...drivers import Flow, Read
from ...errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    TruncatedError,
    UsageError,
)
from ...info import EntryInfo
from ...protocol import CheckReport, Emit, OpenOptions, SessionInfo
from ...ranges import ByteRange
from ...sources.base import RangeSource
from .codec import (
    CHUNK_HEADER_SIZE,
    CRC_SIZE,
    FILE_HEADER_SIZE,
    MAGIC,
    MODE_MASK,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_NAMES,
    TYPE_SYMLINK,
    VERSION,
    ChunkHeader,
    check_path,
    check_target,
    data_crc,
    decode_chunk_header,
    decode_file_header,
    decode_path,
    raw_chunk_sizes,
    show_bytes,
)

__all__ = ["UriFormat", "UriSession", "UriLimits", "iter_file", "ROOT_MODE", "ENTRY_WEIGHT",
           "MAX_PROBLEMS"]

KiB = 1024
MiB = 1024 * KiB
ROOT_MODE = 0o755     # the root has no chunk; this is the mode it is shown with
ENTRY_WEIGHT = 400    # bytes of index memory per entry besides its path (tracemalloc, 3.11)
MAX_PROBLEMS = 1000   # verify keeps this many problem lines, then counts the rest


@dataclass(frozen=True)
class UriLimits:
    """Bounds of one session (``OpenOptions.settings`` may set any of them by name)."""

    max_entries: int = 1_000_000          # entries the index / a walk / verify may hold
    max_index_bytes: int = 512 * MiB      # estimated memory of the index
    first_window_size: int = 16 * KiB     # first read-ahead window of a scan: the
    # registry's 16 KiB probe answers it, so a .uri opens in one round trip
    max_window_size: int = 4 * MiB        # read-ahead windows grow up to this
    data_window_size: int = 4 * MiB       # one read of file data (read, stream, verify)
    emit_batch: int = 1000                # entries per ``emit`` call of a walk

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> UriLimits:
        values: dict[str, int] = {}
        for f in fields(cls):
            if f.name in settings:
                v = settings[f.name]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise UsageError(f"setting {f.name!r} must be a positive integer, "
                                     f"not {v!r}")
                values[f.name] = v
        limits = cls(**values)
        if limits.first_window_size < CHUNK_HEADER_SIZE or (
                limits.max_window_size < limits.first_window_size):
            raise UsageError("settings: need 92 <= first_window_size <= max_window_size")
        return limits


# ------------------------------------------------------------------------------ reading


class _Cursor:
    """A position in the archive plus the last window read around it.

    ``peek_flow(n)`` gives the ``n`` bytes at the position (fewer only at the end of the
    file), reading a new window when the current one does not hold them all. Windows
    grow x2 while the scan moves through them without long jumps, and drop back to the
    first size after a jump longer than a window (a large file skipped).
    """

    def __init__(self, size: int | None, limits: UriLimits, pos: int,
                 buf: bytes = b"", buf_offset: int = 0, end: int | None = None) -> None:
        self.size = size
        self.pos = pos
        self._buf = buf
        self._buf_offset = buf_offset
        self._first = limits.first_window_size
        self._max = limits.max_window_size
        self._window = self._first
        self._end = end  # never read past this offset (a single chunk's reads)

    @property
    def _buf_end(self) -> int:
        return self._buf_offset + len(self._buf)

    def _held(self, n: int) -> bytes:
        start = self.pos - self._buf_offset
        if start < 0 or start > len(self._buf):
            return b""
        return self._buf[start : start + n]

    def take(self, n: int) -> bytes | None:
        """The ``n`` bytes at the position if the window holds them all (no I/O)."""
        start = self.pos - self._buf_offset
        if start >= 0 and start + n <= len(self._buf):
            return self._buf[start : start + n]
        return None

    def _limit(self) -> int | None:
        ends = [e for e in (self.size, self._end) if e is not None]
        return min(ends) if ends else None

    def peek_flow(self, n: int) -> Flow[bytes]:
        held = self._held(n)
        limit = self._limit()
        if len(held) >= n or (limit is not None and self.pos + len(held) >= limit):
            return held
        gap = self.pos - self._buf_end
        if self._buf and gap <= self._window:
            self._window = min(self._max, 2 * self._window)
        elif gap > self._window:
            self._window = self._first
        want = max(n, self._window)
        if limit is not None:
            want = min(want, limit - self.pos)
        if want <= 0:
            return b""
        blobs = yield Read((ByteRange(self.pos, want),))
        blob = bytes(blobs[0])
        if len(blob) < want and self.size is None:
            self.size = self.pos + len(blob)  # the source ended: now the size is known
        self._buf, self._buf_offset = blob, self.pos
        return blob[:n]

    def piece_flow(self, n: int) -> Flow[bytes]:
        """1 to ``n`` bytes at the position (what the window holds, else a new window);
        ``b""`` only at the end of the file."""
        held = self._held(n)
        if held:
            return held
        return (yield from self.peek_flow(n))

    def skip(self, n: int) -> None:
        self.pos += n


class _Chunk(NamedTuple):
    """One scanned chunk: header, raw path and (symlinks) target."""

    offset: int
    header: ChunkHeader
    path: bytes
    target: bytes = b""

    @property
    def data_offset(self) -> int:
        return self.offset + CHUNK_HEADER_SIZE + self.header.path_size


class _Rec:
    """One index entry (what ``stat`` and ``read`` need)."""

    __slots__ = (
        "data_size",
        "group",
        "mode",
        "offset",
        "owner",
        "path_size",
        "target",
        "type",
    )

    def __init__(self, offset: int, type_: bytes, path_size: int, data_size: int, mode: int,
                 owner: str, group: str, target: str) -> None:
        self.offset = offset
        self.type = type_
        self.path_size = path_size
        self.data_size = data_size
        self.mode = mode
        self.owner = owner
        self.group = group
        self.target = target

    @property
    def data_offset(self) -> int:
        return self.offset + CHUNK_HEADER_SIZE + self.path_size


def _too_many(what: str, limits: UriLimits) -> LimitExceededError:
    return LimitExceededError(f"the archive has more than {limits.max_entries} entries, "
                              f"the limit of one {what} (setting 'max_entries')")


class _Rules:
    """The structure rules of a whole archive (URI.md §4): path syntax, every parent a
    directory that came before, no duplicate. Keeps one dict entry per path (bounded by
    ``max_entries``): the chunk's offset, or what the caller stores (the index's records).
    """

    def __init__(self, limits: UriLimits, what: str) -> None:
        self._limits = limits
        self._what = what
        self.seen: dict[str, Any] = {}   # path -> chunk offset, or a record with .offset
        self.dirs: set[str] = set()

    def admit(self, chunk: _Chunk, value: Any = None) -> str:
        """Check ``chunk`` against the rules and the chunks before it; record it (with
        ``value``, else its offset) and return its path as str."""
        off = chunk.offset
        raw = chunk.path
        if not (raw and raw[0] not in b"./" and raw[-1] != 0x2F and b"\x00" not in raw
                and b"//" not in raw and b"/." not in raw):  # else surely a fine path
            check_path(raw, off)
        if chunk.header.type == TYPE_SYMLINK:
            check_target(chunk.target, off)
        path = decode_path(raw)
        first = self.seen.get(path)
        if first is not None:
            first_offset = first if isinstance(first, int) else first.offset
            raise FormatError(f"chunk at offset {off}: duplicate path {show_bytes(raw)} "
                              f"(first at offset {first_offset})")
        parent = path.rpartition("/")[0]
        if parent and parent not in self.dirs:
            if parent in self.seen:
                raise FormatError(f"chunk at offset {off}: {show_bytes(raw)} is under "
                                  f"{show_bytes(parent.encode('utf-8', 'surrogateescape'))}, "
                                  "which is not a directory")
            raise FormatError(f"chunk at offset {off}: {show_bytes(raw)} comes before "
                              "its directory (a 'DIR ' chunk must precede everything under it)")
        if len(self.seen) >= self._limits.max_entries:
            raise _too_many(self._what, self._limits)
        self.seen[path] = off if value is None else value
        if chunk.header.type == TYPE_DIR:
            self.dirs.add(path)
        return path


class _Names:
    """Decoded owner/group names, shared between entries (a few distinct values)."""

    def __init__(self) -> None:
        self._cache: dict[bytes, str] = {}

    def __call__(self, raw: bytes) -> str:
        name = self._cache.get(raw)
        if name is None:
            name = decode_path(raw)
            if len(self._cache) < 4096:
                self._cache[raw] = name
        return name


def _info(path: str, type_: bytes, data_size: int, mode: int, owner: str, group: str,
          target: str) -> EntryInfo:
    size = data_size if type_ == TYPE_FILE else 0
    return EntryInfo(path, TYPE_NAMES[type_], mode & MODE_MASK, 0, size, size, "", target,
                     owner, group)


class _Index:
    """path -> :class:`_Rec` in archive order, children per directory, totals."""

    def __init__(self, limits: UriLimits) -> None:
        self._limits = limits
        self._rules = _Rules(limits, "index")
        self._names = _Names()
        self.entries: dict[str, _Rec] = self._rules.seen  # one dict: rules and index
        self.children: dict[str, list[str]] = {"": []}
        self.weight = 0
        self.counts = {TYPE_FILE: 0, TYPE_DIR: 0, TYPE_SYMLINK: 0}
        self.file_bytes = 0

    def add(self, chunk: _Chunk) -> None:
        h = chunk.header
        self.weight += ENTRY_WEIGHT + 2 * len(chunk.path) + len(chunk.target)
        if self.weight > self._limits.max_index_bytes:
            raise LimitExceededError(
                f"the index of this archive would need more than "
                f"{self._limits.max_index_bytes // MiB} MiB (setting 'max_index_bytes'; "
                f"{len(self.entries)} entries indexed)")
        rec = _Rec(chunk.offset, h.type, h.path_size, h.data_size, h.mode,
                   self._names(h.owner), self._names(h.group),
                   decode_path(chunk.target) if chunk.target else "")
        path = self._rules.admit(chunk, rec)
        parent, _, name = path.rpartition("/")
        self.children[parent].append(name)
        if h.type == TYPE_DIR:
            self.children[path] = []
        self.counts[h.type] += 1
        if h.type == TYPE_FILE:
            self.file_bytes += h.data_size

    def info(self, path: str, rec: _Rec) -> EntryInfo:
        return _info(path, rec.type, rec.data_size, rec.mode, rec.owner, rec.group,
                     rec.target)


def _query(path: str) -> str:
    """A caller's path as an index key: '/'-separated, outer '/' and '.' ignored."""
    if "\x00" in path:
        raise InvalidPathError(f"path contains NUL: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPathError(f"path escapes the archive root: {path!r}")
    return "/".join(parts)


def _under(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


def _sort_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------------ session


class UriSession:
    """An opened ``.uri`` archive (a :class:`lockbox.protocol.FormatSession`)."""

    def __init__(self, size: int | None, limits: UriLimits, head: bytes,
                 unchecked_partial_reads: bool = False) -> None:
        self.size = size
        self.limits = limits
        self.unchecked_partial_reads = unchecked_partial_reads
        self._head = head              # the first window, read by open_flow
        self._index: _Index | None = None
        self._checked: dict[int, str | None] = {}  # header offset -> None (CRC ok) / error

    # -- helpers ---------------------------------------------------------------------

    def _cursor(self) -> _Cursor:
        return _Cursor(self.size, self.limits, FILE_HEADER_SIZE, self._head, 0)

    def _scan_flow(self, visit: Callable[[_Chunk], None]) -> Flow[int]:
        """Hop through every chunk, calling ``visit`` on each; return the end offset.

        File data is skipped, never read; directories and symlinks are CRC-checked.
        """
        cur = self._cursor()
        while True:
            off = cur.pos
            head = cur.take(CHUNK_HEADER_SIZE)
            if head is None:
                head = yield from cur.peek_flow(CHUNK_HEADER_SIZE)
                if not head:
                    break
            h = decode_chunk_header(head, off)  # CRC first; TruncatedError if short
            self._check_fits(off, h.path_size, h.data_size, cur.size)
            small = h.type != TYPE_FILE
            need = CHUNK_HEADER_SIZE + h.path_size + (h.data_size + CRC_SIZE if small else 0)
            body = cur.take(need)
            if body is None:
                body = yield from cur.peek_flow(need)
                if len(body) < need:
                    raise TruncatedError(f"chunk at offset {off}: the file ends inside its "
                                         f"{'path or target' if small else 'path'}")
            path = body[CHUNK_HEADER_SIZE : CHUNK_HEADER_SIZE + h.path_size]
            target = b""
            if small:
                data = body[CHUNK_HEADER_SIZE + h.path_size : need - CRC_SIZE]
                _check_crc(off, path, data_crc(path, data), body[need - CRC_SIZE :])
                target = data
                cur.skip(need)
            else:
                cur.skip(need + h.data_size)
                if cur.take(CRC_SIZE) is None:  # the CRC's presence proves the data is there
                    crc = yield from cur.peek_flow(CRC_SIZE)
                    if len(crc) < CRC_SIZE:
                        raise TruncatedError(f"chunk at offset {off} ({show_bytes(path)}): "
                                             f"the file ends inside its {h.data_size}-byte "
                                             "data")
                cur.skip(CRC_SIZE)
            visit(_Chunk(off, h, path, target))
        if self.size is None:
            self.size = cur.size
        return cur.pos

    @staticmethod
    def _check_fits(off: int, path_size: int, data_size: int, size: int | None) -> None:
        end = off + CHUNK_HEADER_SIZE + path_size + data_size + CRC_SIZE
        if size is not None and end > size:
            raise TruncatedError(
                f"chunk at offset {off}: its {path_size}-byte path and {data_size}-byte data "
                f"end at byte {end}, past the end of the file ({size} bytes)")

    def _index_flow(self) -> Flow[_Index]:
        if self._index is None:
            index = _Index(self.limits)
            yield from self._scan_flow(index.add)
            self._index = index
            self._head = b""
        return self._index

    def _rec_flow(self, path: str) -> Flow[tuple[str, _Rec]]:
        q = _query(path)
        index = yield from self._index_flow()
        rec = index.entries.get(q)
        if rec is None:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        return q, rec

    # -- the protocol ------------------------------------------------------------------

    def info(self) -> SessionInfo:
        details: dict[str, Any] = {"version": VERSION, "indexed": self._index is not None}
        entries = file_bytes = None
        if self._index is not None:
            c = self._index.counts
            details.update(files=c[TYPE_FILE], dirs=c[TYPE_DIR], symlinks=c[TYPE_SYMLINK])
            entries, file_bytes = len(self._index.entries), self._index.file_bytes
        return SessionInfo("uri", False, self.size, entries, file_bytes, details)

    def stat_flow(self, path: str) -> Flow[EntryInfo]:
        if _query(path) == "":
            return EntryInfo("", "dir", ROOT_MODE, 0)
        q, rec = yield from self._rec_flow(path)
        assert self._index is not None
        return self._index.info(q, rec)

    def listdir_flow(self, path: str) -> Flow[list[EntryInfo]]:
        q = _query(path)
        index = yield from self._index_flow()
        if q:
            rec = index.entries.get(q)
            if rec is None:
                raise NotFoundError(f"no such file or directory in the archive: {path}")
            if rec.type != TYPE_DIR:
                raise InvalidPathError(f"not a directory: {path}")
        names = sorted(index.children[q], key=_sort_key)
        prefix = q + "/" if q else ""
        return [index.info(prefix + n, index.entries[prefix + n]) for n in names]

    def walk_flow(self, path: str, emit: Emit) -> Flow[None]:
        q = _query(path)
        batch: list[EntryInfo] = []
        found = not q

        def add(info: EntryInfo) -> None:
            nonlocal batch, found
            found = True
            batch.append(info)
            if len(batch) >= self.limits.emit_batch:
                out, batch = batch, []
                emit(out)

        if self._index is not None:
            index = self._index
            if q and q not in index.entries:
                raise NotFoundError(f"no such file or directory in the archive: {path}")
            for p, rec in index.entries.items():
                if _under(p, q):
                    add(index.info(p, rec))
        else:
            rules = _Rules(self.limits, "walk")
            names = _Names()

            def visit(chunk: _Chunk) -> None:
                p = rules.admit(chunk)
                if _under(p, q):
                    h = chunk.header
                    add(_info(p, h.type, h.data_size, h.mode, names(h.owner), names(h.group),
                              decode_path(chunk.target)))

            yield from self._scan_flow(visit)
            if not found:
                raise NotFoundError(f"no such file or directory in the archive: {path}")
        if batch:
            emit(batch)

    def read_flow(self, path: str, offset: int, size: int) -> Flow[bytes]:
        if offset < 0 or size < 0:
            raise UsageError(f"invalid read of {size} bytes at offset {offset}")
        q, rec = yield from self._rec_flow(path)
        if rec.type != TYPE_FILE:
            raise InvalidPathError(f"not a file: {path}")
        start = min(offset, rec.data_size)
        stop = min(rec.data_size, offset + size)
        whole = start == 0 and stop == rec.data_size
        verdict = self._checked.get(rec.offset, False)
        if isinstance(verdict, str):
            raise IntegrityError(verdict)
        if verdict is None or (self.unchecked_partial_reads and not whole):
            if stop <= start:
                return b""
            blobs = yield Read((ByteRange(rec.data_offset + start, stop - start),))
            if len(blobs[0]) < stop - start:
                raise TruncatedError(f"chunk at offset {rec.offset}: the file ends inside "
                                     f"the data of {q}")
            return bytes(blobs[0])
        pieces: list[bytes] = []
        pos = 0

        def keep(piece: bytes) -> None:
            nonlocal pos
            lo, hi = max(start - pos, 0), min(stop - pos, len(piece))
            if lo < hi:
                pieces.append(piece[lo:hi])
            pos += len(piece)

        yield from self._data_flow(q, rec, keep, hold_last=False)
        return b"".join(pieces)

    def stream_flow(self, path: str, sink: Callable[[bytes], None]) -> Flow[int]:
        """Hand a whole file to ``sink`` in pieces of at most ``data_window_size`` bytes, in
        one pass, and return its size. The CRC is checked before the last piece is handed
        over (IntegrityError instead): a consumer that commits only after the flow
        returned never keeps bad data. What ``extract`` and ``convert`` use."""
        q, rec = yield from self._rec_flow(path)
        if rec.type != TYPE_FILE:
            raise InvalidPathError(f"not a file: {path}")
        verdict = self._checked.get(rec.offset, False)
        if isinstance(verdict, str):
            raise IntegrityError(verdict)
        yield from self._data_flow(q, rec, sink, hold_last=True)
        return rec.data_size

    def _data_flow(self, path: str, rec: _Rec, sink: Callable[[bytes], None],
                   hold_last: bool) -> Flow[None]:
        """Read a file's data and CRC in bounded windows, feeding ``sink``; check the CRC
        (and remember the verdict). ``hold_last``: the last piece goes to ``sink`` only
        once the CRC matched."""
        end = rec.data_offset + rec.data_size + CRC_SIZE
        cur = _Cursor(self.size, self.limits, rec.data_offset, end=end)
        crc = data_crc(path.encode("utf-8", "surrogateescape"))
        remaining = rec.data_size
        last = b""
        while remaining:
            piece = yield from cur.peek_flow(min(remaining + CRC_SIZE,
                                                 self.limits.data_window_size))
            piece = piece[:remaining]
            if not piece:
                raise TruncatedError(f"chunk at offset {rec.offset}: the file ends inside "
                                     f"the data of {path}")
            crc = data_crc(b"", piece, crc)
            remaining -= len(piece)
            cur.skip(len(piece))
            if hold_last:
                if last:
                    sink(last)
                last = piece
            else:
                sink(piece)
        stored = yield from cur.peek_flow(CRC_SIZE)
        if len(stored) < CRC_SIZE:
            raise TruncatedError(f"chunk at offset {rec.offset}: the file ends inside the "
                                 f"data CRC of {path}")
        try:
            _check_crc(rec.offset, path.encode("utf-8", "surrogateescape"), crc, stored)
        except IntegrityError as e:
            self._checked[rec.offset] = str(e)
            raise
        self._checked[rec.offset] = None
        if last:
            sink(last)

    def verify_flow(self, progress: Callable[[str, int], None] | None = None
                    ) -> Flow[CheckReport]:
        report = CheckReport()
        lost = 0

        def problem(e: LockboxError) -> None:
            nonlocal lost
            if len(report.problems) < MAX_PROBLEMS:
                report.problems.append(f"{type(e).__name__}: {e}")
            else:
                lost += 1

        rules = _Rules(self.limits, "verify")
        window = self.limits.data_window_size
        cur = self._cursor()
        while True:
            off = cur.pos
            head = yield from cur.peek_flow(CHUNK_HEADER_SIZE)
            if not head:
                break
            try:
                h = decode_chunk_header(head, off)
            except (IntegrityError, TruncatedError) as e:
                problem(e)  # the lengths cannot be trusted: nothing after this is read
                break
            except FormatError as e:
                problem(e)  # the CRC matched: the lengths are what the writer wrote
                path_size, data_size = raw_chunk_sizes(head)
                try:
                    self._check_fits(off, path_size, data_size, cur.size)
                except TruncatedError as e2:
                    problem(e2)
                    break
                cur.skip(CHUNK_HEADER_SIZE + path_size + data_size + CRC_SIZE)
                continue
            try:
                self._check_fits(off, h.path_size, h.data_size, cur.size)
            except TruncatedError as e:
                problem(e)
                break
            cur.skip(CHUNK_HEADER_SIZE)
            path = yield from cur.peek_flow(h.path_size)
            if len(path) < h.path_size:
                problem(TruncatedError(f"chunk at offset {off}: the file ends inside its path"))
                break
            cur.skip(h.path_size)
            shown = decode_path(path)
            crc = data_crc(path)
            target = bytearray()
            remaining = h.data_size
            while remaining:
                piece = yield from cur.piece_flow(min(remaining, window))
                if not piece:
                    break
                crc = data_crc(b"", piece, crc)
                if h.type == TYPE_SYMLINK:
                    target += piece
                remaining -= len(piece)
                cur.skip(len(piece))
                report.bytes_checked += len(piece)
                if progress is not None:
                    progress(shown, len(piece))
            stored = yield from cur.peek_flow(CRC_SIZE)
            if remaining or len(stored) < CRC_SIZE:
                problem(TruncatedError(f"chunk at offset {off} ({show_bytes(path)}): the file "
                                       f"ends inside its {h.data_size}-byte data"))
                break
            cur.skip(CRC_SIZE)
            try:
                _check_crc(off, path, crc, stored)
            except IntegrityError as e:
                problem(e)
            try:
                rules.admit(_Chunk(off, h, path, bytes(target)))
            except LimitExceededError as e:
                problem(e)
                break
            except LockboxError as e:
                problem(e)
            report.entries_checked += 1
        if lost:
            report.problems.append(f"... and {lost} more problems")
        if self.size is None:
            self.size = cur.size
        return report


def _check_crc(offset: int, path: bytes, actual: int, stored: bytes) -> None:
    expected = int.from_bytes(stored, "little")
    if actual != expected:
        raise IntegrityError(f"chunk at offset {offset} ({show_bytes(path)}): data CRC32 "
                             f"mismatch (stored {expected:08x}, computed {actual:08x})")


# ------------------------------------------------------------------------------ the spec


class UriFormat:
    """The ``.uri`` format (a :class:`lockbox.protocol.FormatSpec`).

    ``probe`` looks at the magic only, so that a ``.uri`` file of another version gets
    "unsupported version" from ``open_flow`` rather than "unknown format".
    """

    name: ClassVar[str] = "uri"
    title: ClassVar[str] = "uri archive"
    extensions: ClassVar[tuple[str, ...]] = (".uri",)
    probe_size: ClassVar[int] = FILE_HEADER_SIZE
    encrypted: ClassVar[bool] = False
    writable: ClassVar[bool] = True

    @staticmethod
    def probe(head: bytes) -> bool:
        return bytes(head[: len(MAGIC)]) == MAGIC

    def open_flow(self, size: int | None, options: OpenOptions) -> Flow[UriSession]:
        """Read the first window (16 KiB: the file header and the first chunks) and check
        the file header. Nothing else is read until a listing or a read needs it."""
        limits = UriLimits.from_settings(options.settings)
        unchecked = bool(options.settings.get("unchecked_partial_reads", False))
        want = limits.first_window_size if size is None else min(size,
                                                                 limits.first_window_size)
        head = b""
        if want > 0:
            blobs = yield Read((ByteRange(0, want),))
            head = bytes(blobs[0])
        decode_file_header(head)
        if size is None and len(head) < want:
            size = len(head)
        return UriSession(size, limits, head, unchecked)


def iter_file(session: UriSession, source: RangeSource, path: str) -> Iterator[bytes]:
    """A file's content as an iterator of pieces, read from ``source`` as it is consumed
    (bounded memory); IntegrityError is raised before the last piece if the CRC fails --
    the ``open_content`` contract of :class:`lockbox.extract.Extractor`."""
    pieces: list[bytes] = []
    flow = session.stream_flow(path, pieces.append)
    try:
        request = next(flow)
        while True:
            yield from pieces
            pieces.clear()
            try:
                blobs = source.read(request.ranges)
            except BaseException as exc:
                request = flow.throw(exc)
                continue
            request = flow.send(blobs)
    except StopIteration:
        yield from pieces
