"""Recovery: rebuild what a damaged archive still holds, trusting nothing but the AEAD.

docs/FORMAT.md §15. :class:`RecoveryScanner` is sans-I/O like the read engine:
:meth:`RecoveryScanner.scan_flow` is a flow (it yields :class:`~lockbox.drivers.Read`
batches) and :meth:`RecoveryScanner.scan` runs it on a
:class:`~lockbox.sources.base.RangeSource`. It never trusts the superblock, a page
header or a tree:

1. **Keys.** The archive id and key directory come from the superblock slots,
   parsed leniently (a slot whose CRC fails is still tried: the key wrap and the
   commit's AEAD decide), else from KEYDIR pages found at 4096-aligned offsets
   (newest generation first). Each distinct key slot is tried once.
2. **Frames.** The file is read once, front to back, in windows of
   ``window_bytes`` (8 MiB): memory stays bounded whatever the archive size. A
   C-speed search finds every frame magic followed by a known kind and zero
   flags; the 48-byte header must pass its CRC before its size is believed, and
   the frame must then authenticate *at that offset* (the AAD binds it: a frame
   copied elsewhere is rejected). An authenticated frame is stepped over whole;
   back-to-back frames of an intact page are thus walked by their sizes, and
   zeroed holes or damaged regions are crossed by the search. FREE pages are
   stepped over (§4); no other page header is trusted to say where not to look.
   **Bounded work:** a candidate that fails to authenticate costs its size in
   AEAD work; the search resumes right after its magic while the bytes spent
   on failures stay under ``2 x bytes scanned + 16 MiB``, and past that budget
   it resumes after the candidate's claimed end, so hostile input (thousands of
   fake headers claiming 4 MiB each) costs at most about three AEAD passes
   over the file, never a quadratic amount.
3. **Classify.** DATA_CHUNK frames are grouped by ``file_id`` (their data is
   hashed as it streams by, never kept); TOC_NODE and ENV_NODE leaves are kept
   per key, newest generation first; commits come from the slots.
4. **Rebuild** the best tree: the newest authenticated commit's TOC if every
   node of it authenticates; else per path the newest entry of any surviving
   TOC leaf (an entry is dropped when a *newer* leaf whose key range covers it
   does not contain it: it was removed or moved by then); plus, from data frames
   alone, file versions that no surviving entry names (path and metadata from
   their last chunk; directories implied by paths). Symlinks and empty
   directories come from TOC leaves only.
5. **Report** (:class:`RecoveryReport`): each file complete (every chunk
   authenticated, lengths right, BLAKE3 of the content equals the recorded
   hash), partial (with the byte ranges that survive) or lost (named by a TOC
   entry, no chunk found). :meth:`RecoveryScanner.salvage` writes every complete
   file, the directories, symlinks and env values into a **new** archive through
   the normal writer, re-reading each chunk and re-authenticating it against the
   tag seen during the scan: no byte that did not authenticate is ever returned
   or written.

The salvaged archive is a fresh one (new archive id, new content key). The
damaged archive's key directory cannot be carried over: its slots wrap the old
content key under the old archive id, and reusing both would make the new file
a diverged copy of the old one (§17.2: frames of either would authenticate in
the other). It is protected by the secret used for recovery: the password
(with the Argon2id parameters of the slot it opened), and/or the identity's
recipient. Other passwords and recipients of the damaged archive must be added
again (``lockbox keys add-password`` / ``add-recipient``).
"""

from __future__ import annotations

import heapq
import os
import re
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...cache import PageCache
from ...codec.base import Codec as CodecBackend
from ...crypto.base import CryptoBackend, Hasher
from ...drivers import Flow, Read, run_sync
from ...errors import (
    FormatError,
    IntegrityError,
    LockboxError,
    UnsupportedVersionError,
    UsageError,
    WrongKeyError,
)
from ...ranges import ByteRange
from ...sources.base import RangeSource
from .frames import FrameOpener
from .keys import DEFAULT_ARGON2, Argon2Params, Identity, Recipient, unlock
from .view import ArchiveView
from .wire.chunk import ChunkMeta, decode_chunk
from .wire.commit import CommitRecord, decode_commit
from .wire.constants import (
    DEFAULT_CHUNK_SIZE,
    FRAME_HEADER_SIZE,
    MAX_CHUNK_SIZE,
    MAX_ENV_VALUE_SIZE,
    MAX_FRAME_SEALED_SIZE,
    MAX_KEYDIR_SIZE,
    MIN_CHUNK_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_MAGIC,
    PAGE_UNIT,
    READABLE_FORMAT_VERSIONS,
    SLOT_COUNT,
    SLOT_HEADER_SIZE,
    SLOT_MAGIC,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
    TAG_SIZE,
    EntryType,
    FrameKind,
    PageKind,
)
from .wire.entry import (
    MAX_ENTRY_SIZE,
    Entry,
    chunk_count,
    decode_entry,
    key_path,
    normalize_path,
    split_path,
    toc_key,
)
from .wire.frame import FrameHeader
from .wire.keydir import KeySlot, PasswordSlot, RecipientSlot, decode_keydir
from .wire.node import Leaf, decode_node
from .wire.page import decode_keydir_page, decode_page_header
from .wire.refs import Ref
from .wire.superblock import SLOT_CAPACITY, ExternalKeydir, Slot, decode_slot

__all__ = ["RecoveryScanner", "RecoveryReport", "RecoveredEntry", "SalvageResult", "recover",
           "COMPLETE", "PARTIAL", "LOST", "SOURCE_COMMIT", "SOURCE_TOC_LEAF",
           "SOURCE_DATA_FRAMES", "SOURCE_IMPLIED", "DEFAULT_WINDOW"]

COMPLETE = "complete"
PARTIAL = "partial"
LOST = "lost"
SOURCE_COMMIT = "commit"  # the newest authenticated commit's tree, every node intact
SOURCE_TOC_LEAF = "toc-leaf"  # a surviving TOC leaf (newest generation for the path)
SOURCE_DATA_FRAMES = "data-frames"  # the file's own chunks (path and metadata inside)
SOURCE_IMPLIED = "implied"  # a directory known only because something lies below it

DEFAULT_WINDOW = 8 * 1024 * 1024
_MAX_SPAN = FRAME_HEADER_SIZE + MAX_FRAME_SEALED_SIZE  # the largest frame
# A frame candidate: the magic, a kind a page may hold (COMMIT frames live only in
# slots), zero flags and reserved bytes. Found by the regex engine, in C.
_CANDIDATE = re.compile(rb"LBXF[\x02-\x06]\x00\x00\x00")
_CANDIDATE_LEN = 8
_FAIL_BUDGET_BASE = 16 * 1024 * 1024
_FAIL_BUDGET_FACTOR = 2
_MAX_OPEN_HASHERS = 1024  # groups hashed as they stream by (others: a second read)
_MAX_KEYDIR_CANDIDATES = 16  # KEYDIR page copies kept by the pre-pass (newest first)
_MAX_UNLOCK_ATTEMPTS = 64  # distinct key slots tried (each costs an Argon2id)
_READ_BATCH = 8 * 1024 * 1024
_SLOT_HEAD = struct.Struct("<8sHBBI16sQII")
_EXT = struct.Struct("<QI32s")
_U32 = struct.Struct("<I")
_VALUE_LIMIT = {FrameKind.TOC_NODE: MAX_ENTRY_SIZE, FrameKind.ENV_NODE: MAX_ENV_VALUE_SIZE}


# -- the report ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecoveredEntry:
    """One path of the rebuilt tree."""

    path: str
    type: str  # "file", "dir" or "symlink"
    status: str  # COMPLETE, PARTIAL or LOST (directories and symlinks: COMPLETE)
    source: str  # SOURCE_COMMIT, SOURCE_TOC_LEAF, SOURCE_DATA_FRAMES or SOURCE_IMPLIED
    size: int | None  # content bytes; None when unknown (the last chunk is lost)
    recovered_bytes: int  # authenticated content bytes found
    ranges: tuple[tuple[int, int], ...] = ()  # surviving [start, end) content ranges
    mode: int = 0
    mtime_ns: int = 0
    target: str = ""
    detail: str = ""  # why a file is not complete

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "type": self.type, "status": self.status,
                               "source": self.source, "mode": self.mode,
                               "mtime_ns": self.mtime_ns}
        if self.type == "file":
            out.update(size=self.size, recovered_bytes=self.recovered_bytes,
                       ranges=[list(r) for r in self.ranges])
        if self.type == "symlink":
            out["target"] = self.target
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class SalvageResult:
    """What :meth:`RecoveryScanner.salvage` wrote into the new archive."""

    path: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    env_values: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "files": self.files, "dirs": self.dirs,
                "symlinks": self.symlinks, "env_values": self.env_values,
                "bytes": self.bytes, "skipped": list(self.skipped)}


@dataclass
class RecoveryReport:
    archive_id: str = ""
    key_source: str = ""  # where the key directory that opened came from
    commit_generation: int | None = None  # newest commit that authenticated
    toc_source: str = ""  # "commit", "toc-leaves" or "data-frames"
    env_source: str = ""  # "commit", "env-leaves" or "" (none survives)
    entries: list[RecoveredEntry] = field(default_factory=list)
    env_names: list[str] = field(default_factory=list)
    bytes_scanned: int = 0
    frames_authenticated: int = 0
    frames_rejected: int = 0  # a sane header (CRC) whose frame did not authenticate
    pages_seen: int = 0  # valid page headers met by the scan
    keydir_pages: int = 0
    # Files the newest authenticated commit counts but the rebuilt tree does not name
    # (their TOC entries and every chunk are gone): lost without a trace of their names.
    unaccounted_files: int = 0
    problems: list[str] = field(default_factory=list)  # not tied to one file
    seconds: float = 0.0
    salvage: SalvageResult | None = None

    @property
    def files(self) -> list[RecoveredEntry]:
        return [e for e in self.entries if e.type == "file"]

    def _with(self, status: str) -> list[RecoveredEntry]:
        return [e for e in self.entries if e.type == "file" and e.status == status]

    @property
    def complete(self) -> list[RecoveredEntry]:
        return self._with(COMPLETE)

    @property
    def partial(self) -> list[RecoveredEntry]:
        return self._with(PARTIAL)

    @property
    def lost(self) -> list[RecoveredEntry]:
        return self._with(LOST)

    @property
    def dirs(self) -> list[RecoveredEntry]:
        return [e for e in self.entries if e.type == "dir"]

    @property
    def symlinks(self) -> list[RecoveredEntry]:
        return [e for e in self.entries if e.type == "symlink"]

    @property
    def ok(self) -> bool:
        """Every file is complete (and none is missing without a name)."""
        return self.unaccounted_files == 0 and \
            not any(e.type == "file" and e.status != COMPLETE for e in self.entries)

    def entry(self, path: str) -> RecoveredEntry | None:
        for e in self.entries:
            if e.path == path:
                return e
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "archive_id": self.archive_id, "key_source": self.key_source,
            "commit_generation": self.commit_generation, "toc_source": self.toc_source,
            "env_source": self.env_source,
            "counts": {"complete": len(self.complete), "partial": len(self.partial),
                       "lost": len(self.lost), "dirs": len(self.dirs),
                       "symlinks": len(self.symlinks), "env_values": len(self.env_names)},
            "bytes_scanned": self.bytes_scanned,
            "frames_authenticated": self.frames_authenticated,
            "frames_rejected": self.frames_rejected, "pages_seen": self.pages_seen,
            "keydir_pages": self.keydir_pages, "unaccounted_files": self.unaccounted_files,
            "seconds": round(self.seconds, 3),
            "problems": list(self.problems), "env_names": list(self.env_names),
            "entries": [e.to_json() for e in self.entries],
            "salvage": None if self.salvage is None else self.salvage.to_json(),
        }


# -- internal state --------------------------------------------------------------------


class _Group:
    """The authenticated chunks of one file version (one file_id)."""

    __slots__ = ("chunks", "digest", "file_id", "generation", "hasher", "meta", "next_no",
                 "path", "verified")

    def __init__(self, file_id: bytes, path: str) -> None:
        self.file_id = file_id
        self.path = path
        self.meta: ChunkMeta | None = None
        # chunk_no -> (frame offset, frame size, tag, data length)
        self.chunks: dict[int, tuple[int, int, bytes, int]] = {}
        self.generation = 0
        self.hasher: Hasher | None = None
        self.next_no = 0
        self.digest: bytes | None = None  # BLAKE3 of chunks 0..last, hashed in order
        self.verified: bool | None = None  # structure + hash checked (None: not yet)


@dataclass(slots=True)
class _Plan:
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


@dataclass(slots=True)
class _LenientSlot:
    slot_no: int
    archive_id: bytes
    generation: int
    keydir: bytes | ExternalKeydir
    commit_frame: bytes
    crc_ok: bool


class _Window:
    """A window over the source: ``buf`` (immutable bytes, as read) holds
    ``[base, base + len(buf))``. Moving it re-reads from the new start, so nothing is
    copied in memory; only the bytes of the one structure that straddled the old
    window's end are read twice. ``bytes_read`` counts each byte of the source once."""

    def __init__(self, start: int, size: int) -> None:
        self.buf = b""
        self.base = start
        self.size = size
        self.eof = False
        self.bytes_read = 0
        self._high = start  # end of everything read so far

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    def fill_flow(self, pos: int, need: int) -> Flow[None]:
        """Move the window to ``pos`` holding at least ``need`` bytes (fewer only at the
        end of the source)."""
        want = max(self.size, need)
        self.buf = b""  # let the old window go before the new one arrives
        blobs = yield Read((ByteRange(pos, want),))
        blob = blobs[0]
        self.buf = blob if isinstance(blob, bytes) else bytes(blob)
        self.base = pos
        end = pos + len(blob)
        if end > self._high:
            self.bytes_read += end - max(self._high, pos)
            self._high = end
        self.eof = len(blob) < want


def _align_up(n: int) -> int:
    return -(-n // PAGE_UNIT) * PAGE_UNIT


def _parse_slot(region: bytes, no: int) -> _LenientSlot | None:
    """A slot image read leniently: a failed CRC does not discard it (its contents
    still have to unlock and authenticate)."""
    if len(region) < SLOT_HEADER_SIZE or region[:len(SLOT_MAGIC)] != SLOT_MAGIC:
        return None
    _, version, _, flags, _, archive_id, gen, k, c = _SLOT_HEAD.unpack_from(region, 0)
    if version not in READABLE_FORMAT_VERSIONS or k + c > SLOT_CAPACITY:
        return None
    end = SLOT_HEADER_SIZE + k + c
    if len(region) < end:
        return None
    crc_ok = len(region) >= end + 4 and \
        struct.unpack_from("<I", region, end)[0] == zlib.crc32(region[:end])
    raw = region[SLOT_HEADER_SIZE:SLOT_HEADER_SIZE + k]
    keydir: bytes | ExternalKeydir = raw
    if flags & 1:
        if k != _EXT.size:
            return None
        off, size, digest = _EXT.unpack(raw)
        keydir = ExternalKeydir(off, size, digest)
    return _LenientSlot(no, bytes(archive_id), gen, keydir,
                        bytes(region[SLOT_HEADER_SIZE + k:end]), crc_ok)


def _covered_by_newer(keys: Iterable[tuple[bytes, int]],
                      spans: list[tuple[bytes, bytes, int]]) -> set[bytes]:
    """Keys for which a leaf of a *newer* generation covers the key's position
    (first key <= key <= last key): that leaf would hold the key if it still
    existed at its generation, so the key was removed (or moved) by then.
    A sweep over sorted keys with a max-heap of open spans: O((n + s) log s)."""
    ordered = sorted(keys)
    by_first = sorted(spans)
    heap: list[tuple[int, bytes]] = []  # (-generation, last key)
    out: set[bytes] = set()
    j = 0
    for key, gen in ordered:
        while j < len(by_first) and by_first[j][0] <= key:
            heapq.heappush(heap, (-by_first[j][2], by_first[j][1]))
            j += 1
        while heap and heap[0][1] < key:  # spans that ended before this key
            heapq.heappop(heap)
        if heap and -heap[0][0] > gen:
            out.add(key)
    return out


def _merge_ranges(pieces: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(pieces):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def _path_order(path: str) -> list[str]:
    return path.split("/")


# -- the scanner ---------------------------------------------------------------------


class RecoveryScanner:
    """Scan a (damaged) archive and rebuild what authenticates. See the module doc.

    ``scanner.scan(source)`` (or ``run_sync(scanner.scan_flow(), source)``) returns a
    :class:`RecoveryReport`; afterwards ``scanner.salvage(out_path, source)`` writes
    the complete files into a new archive. One scanner scans one archive.
    """

    def __init__(self, *, password: str | bytes | None = None,
                 identity: Identity | None = None, crypto: CryptoBackend | None = None,
                 codec: CodecBackend | None = None, window_bytes: int = DEFAULT_WINDOW,
                 max_unlock_attempts: int = _MAX_UNLOCK_ATTEMPTS) -> None:
        if password is None and identity is None:
            raise UsageError("recovery needs the archive's password or an identity")
        if window_bytes < PAGE_UNIT:
            raise UsageError("the scan window must be at least 4096 bytes")
        from ...platform import default_codec, default_crypto

        self.crypto = crypto or default_crypto()
        self.codec = codec or default_codec()
        self.password = password
        self.identity = identity
        self.window_bytes = window_bytes
        self.max_unlock_attempts = max_unlock_attempts
        self.report: RecoveryReport | None = None
        self._opener: FrameOpener | None = None
        self._unlocked_by: KeySlot | None = None
        self._tried: set[tuple[bytes, int, int, bytes]] = set()
        self._commit: CommitRecord | None = None
        self._groups: dict[bytes, _Group] = {}
        self._open_hashers = 0
        self._toc_best: dict[bytes, tuple[int, bytes]] = {}  # key -> (generation, entry)
        self._toc_spans: list[tuple[bytes, bytes, int]] = []
        self._env_best: dict[bytes, tuple[int, bytes]] = {}
        self._env_spans: list[tuple[bytes, bytes, int]] = []
        self._collect_toc = True
        self._collect_env = True
        self._plans: dict[str, _Plan] = {}
        self._env: dict[str, bytes] = {}
        self._fail_spent = 0
        self._newer_possible = False

    # -- driving -------------------------------------------------------------------

    def scan(self, source: RangeSource) -> RecoveryReport:
        """Run the scan on a sync source."""
        return run_sync(self.scan_flow(), source)

    def scan_flow(self) -> Flow[RecoveryReport]:
        if self.report is not None:
            raise UsageError("this scanner has already scanned an archive")
        started = time.monotonic()
        report = RecoveryReport()
        blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
        head = bytes(blobs[0])
        slots: list[_LenientSlot] = []
        for no in range(SLOT_COUNT):
            region = head[no * SLOT_SIZE:(no + 1) * SLOT_SIZE]
            try:
                decode_slot(region, no)
            except UnsupportedVersionError:
                raise  # an intact slot of a newer format: not ours to rebuild (§20)
            except LockboxError:
                pass  # damaged: read leniently below
            parsed = _parse_slot(region, no)
            if parsed is not None:
                slots.append(parsed)
        slots.sort(key=lambda s: s.generation, reverse=True)
        yield from self._unlock_flow(slots, report)
        opener = self._opener
        assert opener is not None
        report.archive_id = opener.archive_id.hex()
        view = self._newest_commit(slots, report)
        if view is not None:
            yield from self._commit_trees_flow(view, report)
        yield from self._scan_frames_flow(report)
        yield from self._verify_groups_flow()
        self._rebuild(report)
        report.seconds = time.monotonic() - started
        self.report = report
        return report

    # -- step 1: keys --------------------------------------------------------------

    def _try_keydir(self, archive_id: bytes, keydir: bytes) -> bool:
        try:
            key_slots = decode_keydir(keydir)
        except LockboxError:
            return False
        for s in key_slots:
            if isinstance(s, PasswordSlot):
                if self.password is None:
                    continue
            elif isinstance(s, RecipientSlot):
                if self.identity is None:
                    continue
            else:
                continue
            mark = (archive_id, int(s.kind), s.slot_id, s.body())
            if mark in self._tried or len(self._tried) >= self.max_unlock_attempts:
                continue
            self._tried.add(mark)
            try:
                content_key, _ = unlock(self.crypto, archive_id, [s], password=self.password,
                                        identity=self.identity)
            except (WrongKeyError, FormatError):
                continue
            self._opener = FrameOpener(self.crypto, self.codec, archive_id, content_key)
            self._unlocked_by = s
            return True
        return False

    def _unlock_flow(self, slots: list[_LenientSlot], report: RecoveryReport) -> Flow[None]:
        for s in slots:
            kd = s.keydir
            if isinstance(kd, ExternalKeydir):
                if kd.keydir_size > MAX_KEYDIR_SIZE or kd.page_offset < SUPERBLOCK_SIZE:
                    continue
                blobs = yield Read((ByteRange(kd.page_offset,
                                              PAGE_HEADER_SIZE + 16 + kd.keydir_size),))
                try:
                    _, page_id, data = decode_keydir_page(blobs[0])
                except LockboxError:
                    continue
                ids = [s.archive_id] + ([page_id] if page_id != s.archive_id else [])
                for archive_id in ids:
                    if self._try_keydir(archive_id, data):
                        report.key_source = f"slot {s.slot_no} (key directory page at " \
                                            f"{kd.page_offset})"
                        return
            elif self._try_keydir(s.archive_id, kd):
                report.key_source = f"slot {s.slot_no}"
                return
        # No slot opens: the KEYDIR page copies (one pre-pass over the page headers).
        found: list[tuple[int, int, bytes, bytes]] = []  # (generation, offset, id, keydir)
        seen: set[tuple[bytes, bytes]] = set()
        frames_pages = 0
        win = _Window(SUPERBLOCK_SIZE, self.window_bytes)
        a = SUPERBLOCK_SIZE
        while True:
            buf, base, end = win.buf, win.base, win.end
            if a + PAGE_HEADER_SIZE > end:
                if win.eof and a >= base:
                    break  # the source ended
                yield from win.fill_flow(a, PAGE_HEADER_SIZE)
                if a + PAGE_HEADER_SIZE > win.end:
                    break
                continue
            j = a - base
            if buf[j:j + 4] == PAGE_MAGIC:
                try:
                    h = decode_page_header(buf[j:j + PAGE_HEADER_SIZE])
                except LockboxError:
                    h = None
                if h is not None and h.kind == PageKind.FRAMES:
                    frames_pages += 1
                elif h is not None and h.kind == PageKind.KEYDIR and \
                        h.used_size <= PAGE_HEADER_SIZE + 16 + MAX_KEYDIR_SIZE:
                    if a + h.used_size > end and not win.eof:
                        yield from win.fill_flow(a, h.used_size)
                        continue  # look at this page again, whole
                    try:
                        _, page_id, data = decode_keydir_page(buf[j:j + h.used_size])
                    except LockboxError:
                        data = page_id = b""
                    if data and (page_id, data) not in seen:
                        seen.add((page_id, data))
                        heapq.heappush(found, (h.generation, a, page_id, data))
                        if len(found) > _MAX_KEYDIR_CANDIDATES:
                            heapq.heappop(found)  # keep the newest copies
            a += PAGE_UNIT
        report.bytes_scanned += win.bytes_read
        for gen, offset, page_id, data in sorted(found, reverse=True):
            if self._try_keydir(page_id, data):
                report.key_source = f"key directory page at {offset} (generation {gen})"
                return
        if self._tried:
            raise WrongKeyError("no surviving copy of the key directory opens with this "
                                "password or identity (a wrong secret, or every copy of "
                                "its key slot is damaged)")
        if found:
            raise WrongKeyError("the surviving key directories have no slot for this kind "
                                "of secret (password or identity)")
        if slots or frames_pages:
            raise IntegrityError("the key directory is lost (no superblock slot or "
                                 "key-directory page survives): the archive cannot be "
                                 "decrypted")
        raise FormatError("not a lockbox archive (no superblock slot and no "
                          "key-directory page found)")

    # -- the commit and its trees -------------------------------------------------------

    def _newest_commit(self, slots: list[_LenientSlot],
                       report: RecoveryReport) -> ArchiveView | None:
        opener = self._opener
        assert opener is not None
        best: tuple[CommitRecord, _LenientSlot] | None = None
        opened = 0
        for s in slots:
            field_len = _EXT.size if isinstance(s.keydir, ExternalKeydir) else len(s.keydir)
            offset = s.slot_no * SLOT_SIZE + SLOT_HEADER_SIZE + field_len
            try:
                header, payload = opener.open_at(s.commit_frame, offset, FrameKind.COMMIT)
                if header.frame_size != len(s.commit_frame):
                    continue
                commit = decode_commit(bytes(payload))
            except LockboxError:
                continue
            if commit.generation != header.generation or commit.generation % 2 != s.slot_no:
                continue
            opened += 1
            if best is None or commit.generation > best[0].generation:
                best = (commit, s)
        if best is None:
            report.problems.append("no commit record authenticates (both superblock slots "
                                   "are damaged or lost)")
            return None
        commit, s = best
        self._commit = commit
        # With one slot lost, the lost one may have held a *newer* commit.
        self._newer_possible = opened < SLOT_COUNT
        report.commit_generation = commit.generation
        slot = Slot(s.slot_no, opener.archive_id, commit.generation, s.keydir, s.commit_frame)
        return ArchiveView(opener, slot, commit, [], 0, b"", PageCache(16 * 1024 * 1024))

    def _commit_trees_flow(self, view: ArchiveView, report: RecoveryReport) -> Flow[None]:
        commit = view.commit
        try:
            leaves = yield from view.iter_leaves_flow(FrameKind.TOC_NODE, commit.toc)
            plans: dict[str, _Plan] = {}
            for leaf in leaves:
                for k, v in zip(leaf.keys, leaf.values):
                    path = key_path(k)
                    plans[path] = self._plan_of(path, decode_entry(v), SOURCE_COMMIT,
                                                commit.generation)
            if sum(leaf.count for leaf in leaves) != commit.toc.count:
                raise IntegrityError("TOC entry count differs from the commit record")
        except LockboxError as e:
            report.problems.append(f"the commit's TOC is damaged ({e}); rebuilding it")
        else:
            self._plans = plans
            self._collect_toc = False
            report.toc_source = "commit"
        try:
            items = yield from view.env_items_flow()
        except LockboxError as e:
            report.problems.append(f"the commit's env tree is damaged ({e}); rebuilding it")
        else:
            self._env = dict(items)
            self._collect_env = False
            report.env_source = "commit"

    @staticmethod
    def _plan_of(path: str, e: Entry, source: str, generation: int) -> _Plan:
        return _Plan(path, e.type, e.mode, e.mtime_ns, source, generation, e.size,
                     e.content_hash, e.file_id, e.chunk_size, e.target)

    # -- step 2: the frame scan ---------------------------------------------------------

    def _scan_frames_flow(self, report: RecoveryReport) -> Flow[None]:
        opener = self._opener
        assert opener is not None
        win = _Window(SUPERBLOCK_SIZE, self.window_bytes)
        start = p = SUPERBLOCK_SIZE
        search = _CANDIDATE.search
        crc32 = zlib.crc32
        u32 = _U32.unpack_from
        buf, base, end = win.buf, win.base, win.end
        mv = memoryview(buf)
        refill = 0  # > 0: move the window to p, holding at least this many bytes
        while True:
            if refill or p + _CANDIDATE_LEN > end:
                if win.eof and not refill and p >= base:
                    break
                yield from win.fill_flow(p, max(refill, PAGE_UNIT))
                buf, base, end = win.buf, win.base, win.end
                mv = memoryview(buf)
                refill = 0
                if p + _CANDIDATE_LEN > end:
                    break  # the source ended
            m = search(buf, p - base)
            f = base + m.start() if m is not None else end
            # Page headers at aligned offsets before the candidate. Only FREE pages are
            # stepped over (§4: a redacted page holds nothing); every other header is
            # merely counted: a header never decides where *not* to look.
            a = _align_up(p)
            jumped = False
            while a < f and a + PAGE_HEADER_SIZE <= end:
                j = a - base
                if buf[j:j + 4] == PAGE_MAGIC:
                    try:
                        h = decode_page_header(buf[j:j + PAGE_HEADER_SIZE])
                    except LockboxError:
                        h = None
                    if h is not None:
                        report.pages_seen += 1
                        if h.kind == PageKind.FREE:
                            p, jumped = a + h.page_size, True
                            break
                        if h.kind == PageKind.KEYDIR:
                            report.keydir_pages += 1  # searched like the rest: cleartext
                a += PAGE_UNIT
            if jumped:
                continue
            if m is None:
                if win.eof:
                    break
                # A candidate (or a page header) may straddle the window's end.
                p = max(p, min(end - _CANDIDATE_LEN + 1, a))
                refill = PAGE_UNIT
                continue
            i = f - base
            if f + FRAME_HEADER_SIZE > end:
                if win.eof:
                    p = f + 1
                else:
                    p, refill = f, FRAME_HEADER_SIZE
                continue
            if crc32(mv[i:i + 44]) != u32(buf, i + 44)[0]:  # not a header: skip it fast
                p = f + 1
                continue
            # The regex matched the kind (2..6), flags and reserved bytes, the CRC holds:
            # what decode_frame_header would check is left to the size.
            sealed = u32(buf, i + 8)[0]
            if not TAG_SIZE <= sealed <= MAX_FRAME_SEALED_SIZE:
                p = f + 1
                continue
            size = FRAME_HEADER_SIZE + sealed
            if f + size > end:
                if not win.eof:
                    p, refill = f, size  # move the window so that the frame fits
                    continue
                report.frames_rejected += 1  # cut off by the end of the file
                p = f + 1
                continue
            blob = mv[i:i + size]  # no copy: the window is immutable bytes
            try:
                fh, payload = opener.open_at(blob, f, None)
            except LockboxError:
                report.frames_rejected += 1
                self._fail_spent += size
                budget = _FAIL_BUDGET_BASE + _FAIL_BUDGET_FACTOR * (f - start)
                p = f + 1 if self._fail_spent <= budget else f + size
                continue
            report.frames_authenticated += 1
            try:
                self._classify(fh, payload, f, size, bytes(blob[-TAG_SIZE:]))
            except LockboxError as e:
                report.problems.append(f"frame at {f} authenticates but does not decode: {e}")
            p = f + size
        report.bytes_scanned += win.bytes_read

    def _classify(self, h: FrameHeader, payload: bytes | memoryview, offset: int, size: int,
                  tag: bytes) -> None:
        kind = h.kind
        if kind == FrameKind.DATA_CHUNK:
            ch, data = decode_chunk(payload)
            g = self._groups.get(ch.file_id)
            if g is None:
                g = self._groups[ch.file_id] = _Group(ch.file_id, ch.path)
                if ch.chunk_no == 0 and self._open_hashers < _MAX_OPEN_HASHERS:
                    g.hasher = self.crypto.blake3()
                    self._open_hashers += 1
            if ch.chunk_no in g.chunks:
                return  # a second copy of a chunk cannot be genuine; keep the first
            g.chunks[ch.chunk_no] = (offset, size, tag, len(data))
            g.generation = max(g.generation, h.generation)
            if ch.meta is not None and g.meta is None:
                g.meta = ch.meta
                g.path = ch.path
                g.generation = h.generation
            if g.hasher is not None:
                if ch.chunk_no == g.next_no:
                    g.hasher.update(data)
                    g.next_no += 1
                    if ch.meta is not None:
                        g.digest = g.hasher.digest()
                        g.hasher = None
                        self._open_hashers -= 1
                else:  # out of order: checked by a second read after the scan
                    g.hasher = None
                    self._open_hashers -= 1
        elif kind in (FrameKind.TOC_NODE, FrameKind.ENV_NODE):
            toc = kind == FrameKind.TOC_NODE
            if not (self._collect_toc if toc else self._collect_env):
                return
            node = decode_node(bytes(payload), _VALUE_LIMIT[kind])
            if not isinstance(node, Leaf) or not node.keys:
                return
            best = self._toc_best if toc else self._env_best
            spans = self._toc_spans if toc else self._env_spans
            gen = h.generation
            spans.append((node.keys[0], node.keys[-1], gen))
            for k, v in zip(node.keys, node.values):
                cur = best.get(k)
                if cur is None or gen > cur[0]:
                    best[k] = (gen, v)
        # CHUNK_INDEX and SPACE_NODE frames are not needed: chunks name their file.

    # -- completeness ---------------------------------------------------------------------

    @staticmethod
    def _shape(g: _Group) -> tuple[int, int, int] | None:
        """(count, chunk size, size) when every chunk of the version is present with
        the right length, else None."""
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

    def _read_chunks_flow(self, g: _Group, first: int, stop: int,
                          expect: tuple[int, int, int]) -> Flow[list[memoryview]]:
        """Re-read chunks ``first <= n < stop`` of a group and authenticate each against
        the tag seen by the scan (IntegrityError when anything differs)."""
        opener = self._opener
        assert opener is not None
        count, csize, size = expect
        refs = [Ref(*g.chunks[n][:3]) for n in range(first, stop)]
        blobs = yield Read(tuple(r.byte_range for r in refs))
        out = []
        for n, ref, blob in zip(range(first, stop), refs, blobs):
            payload = opener.open_ref(blob, ref, FrameKind.DATA_CHUNK)
            ch, data = decode_chunk(payload)
            want = size - (count - 1) * csize if n == count - 1 else csize
            if ch.file_id != g.file_id or ch.chunk_no != n or len(data) != want:
                raise IntegrityError(f"chunk {n} of {g.path} changed since the scan")
            out.append(data)
        return out

    def _batches(self, g: _Group, count: int) -> list[tuple[int, int]]:
        out = []
        n = 0
        while n < count:
            stop = n
            total = 0
            while stop < count and (stop == n or total + g.chunks[stop][1] <= _READ_BATCH):
                total += g.chunks[stop][1]
                stop += 1
            out.append((n, stop))
            n = stop
        return out

    def _verify_groups_flow(self) -> Flow[None]:
        """Decide every group's completeness; hash by a second read the groups whose
        chunks did not stream by in order."""
        for g in self._groups.values():
            shape = self._shape(g)
            if shape is None:
                g.verified = False
                continue
            assert g.meta is not None
            if g.digest is not None:
                g.verified = g.digest == g.meta.content_hash
                continue
            hasher = self.crypto.blake3()
            try:
                for a, b in self._batches(g, shape[0]):
                    for data in (yield from self._read_chunks_flow(g, a, b, shape)):
                        hasher.update(data)
            except LockboxError:
                g.verified = False
                continue
            g.verified = hasher.digest() == g.meta.content_hash

    # -- step 4: the tree -------------------------------------------------------------------

    def _rebuild(self, report: RecoveryReport) -> None:
        plans = self._plans
        if not report.toc_source:
            plans = self._plans_from_leaves(report)
            report.toc_source = "toc-leaves" if self._toc_best else "data-frames"
            self._add_orphans(plans, report)
        elif self._newer_possible and self._commit is not None:
            # The surviving commit may be the older one: versions written after it come
            # back from their data frames (the lost commit's removals and moves cannot).
            gen = self._commit.generation
            added = self._add_orphans(plans, report, newer_than=gen)
            if added:
                report.problems.append(
                    f"one superblock slot is lost and {added} file versions are newer than "
                    f"the surviving commit (generation {gen}): added from their data "
                    "frames (removals, moves, symlinks and directories of the lost commit "
                    "are not known)")
        self._plans = plans
        if not report.env_source:
            gone = _covered_by_newer(((k, g) for k, (g, _) in self._env_best.items()),
                                     self._env_spans)
            env: dict[str, bytes] = {}
            for k, (_, v) in self._env_best.items():
                if k in gone:
                    continue
                try:
                    env[k.decode()] = v
                except UnicodeDecodeError:
                    report.problems.append("an env name is not UTF-8; skipped")
            self._env = env
            report.env_source = "env-leaves" if env else ""
        self._add_implied_dirs(plans, report)
        commit = self._commit
        if commit is not None and report.toc_source != "commit":
            found = sum(1 for p in plans.values() if p.type == EntryType.FILE)
            if found < commit.stats.files:
                report.unaccounted_files = commit.stats.files - found
                report.problems.append(
                    f"the commit (generation {commit.generation}) counts "
                    f"{commit.stats.files} files, {found} were found: "
                    f"{report.unaccounted_files} are lost with their names")
        report.env_names = sorted(self._env)
        report.entries = sorted((self._entry_of(p) for p in plans.values()),
                                key=lambda e: _path_order(e.path))

    def _plans_from_leaves(self, report: RecoveryReport) -> dict[str, _Plan]:
        gone = _covered_by_newer(((k, g) for k, (g, _) in self._toc_best.items()),
                                 self._toc_spans)
        plans: dict[str, _Plan] = {}
        by_id: dict[bytes, str] = {}
        for k, (gen, value) in self._toc_best.items():
            if k in gone:
                continue
            try:
                path = key_path(k)
                plan = self._plan_of(path, decode_entry(value), SOURCE_TOC_LEAF, gen)
            except LockboxError as e:
                report.problems.append(f"a TOC entry in a surviving leaf is unreadable: {e}")
                continue
            if plan.type == EntryType.FILE:
                other = by_id.get(plan.file_id)
                if other is not None:  # one version lives at one path: the newest entry
                    if plans[other].generation >= gen:
                        continue
                    del plans[other]
                by_id[plan.file_id] = path
            plans[path] = plan
        return plans

    def _add_orphans(self, plans: dict[str, _Plan], report: RecoveryReport,
                     newer_than: int = -1) -> int:
        """File versions no surviving entry names, from their own chunks (only those
        written after generation ``newer_than``). Returns how many were added."""
        named = {p.file_id for p in plans.values() if p.type == EntryType.FILE}
        candidates: dict[str, list[_Group]] = {}
        added = 0
        for g in self._groups.values():
            if g.file_id in named or g.generation <= newer_than:
                continue
            try:
                path = normalize_path(g.path)
            except LockboxError:
                path = ""
            if not path or path != g.path:
                report.problems.append(f"file version {g.file_id.hex()} names an unusable "
                                       f"path {g.path!r}; skipped")
                continue
            candidates.setdefault(path, []).append(g)
        gone = _covered_by_newer(((toc_key(p), max(g.generation for g in gs))
                                  for p, gs in candidates.items()), self._toc_spans)
        for path, groups in candidates.items():
            if toc_key(path) in gone:
                continue
            g = max(groups, key=lambda g: (bool(g.verified), g.generation))
            have = plans.get(path)
            if have is not None and (have.generation >= g.generation or
                                     have.type != EntryType.FILE):
                continue  # a surviving entry at least as new names another version
            added += 1
            m = g.meta
            if m is not None:
                plans[path] = _Plan(path, EntryType.FILE, m.mode, m.mtime_ns,
                                    SOURCE_DATA_FRAMES, g.generation, m.size, m.content_hash,
                                    g.file_id, m.chunk_size, from_entry=False)
            else:
                plans[path] = _Plan(path, EntryType.FILE, 0o644, 0, SOURCE_DATA_FRAMES,
                                    g.generation, 0, b"", g.file_id, 0, from_entry=False)
        return added

    def _add_implied_dirs(self, plans: dict[str, _Plan], report: RecoveryReport) -> None:
        for path in sorted(plans, key=_path_order):
            child = plans[path]
            parent = split_path(path)[0]
            while parent:
                have = plans.get(parent)
                if have is not None:
                    if have.type != EntryType.DIR:
                        report.problems.append(f"{parent} is not a directory but {path} "
                                               "lies below it")
                    break
                plans[parent] = _Plan(parent, EntryType.DIR, 0o755, child.mtime_ns,
                                      SOURCE_IMPLIED, child.generation)
                parent = split_path(parent)[0]

    def _entry_of(self, p: _Plan) -> RecoveredEntry:
        if p.type == EntryType.DIR:
            return RecoveredEntry(p.path, "dir", COMPLETE, p.source, 0, 0, (), p.mode,
                                  p.mtime_ns)
        if p.type == EntryType.SYMLINK:
            return RecoveredEntry(p.path, "symlink", COMPLETE, p.source, 0, 0, (), p.mode,
                                  p.mtime_ns, p.target)
        g = self._groups.get(p.file_id)
        if g is None:
            return RecoveredEntry(p.path, "file", LOST, p.source, p.size, 0, (), p.mode,
                                  p.mtime_ns, detail="no chunk of it survives")
        size: int | None = p.size
        csize = p.chunk_size
        m = g.meta
        detail = ""
        if m is not None and p.from_entry and (m.size, m.content_hash, m.chunk_size) != \
                (p.size, p.content_hash, p.chunk_size):
            detail = "its chunks do not match its TOC entry"
        if not p.from_entry and m is None:
            size = None  # the last chunk (which holds the size) is lost
            lengths = {c[3] for no, c in g.chunks.items()}
            csize = max(lengths) if lengths else 0
        if csize < 1:
            csize = MAX_CHUNK_SIZE
        count = chunk_count(size, csize) if size is not None else None
        pieces = []
        got = 0
        for no, c in g.chunks.items():
            if count is not None and no >= count:
                continue
            pieces.append((no * csize, no * csize + c[3]))
            got += c[3]
        ranges = _merge_ranges(pieces)
        if not detail and g.verified:
            return RecoveredEntry(p.path, "file", COMPLETE, p.source, size, got, ranges,
                                  p.mode, p.mtime_ns)
        if not pieces:
            return RecoveredEntry(p.path, "file", LOST, p.source, size, 0, (), p.mode,
                                  p.mtime_ns, detail=detail or "no chunk of it survives")
        if not detail:
            if count is not None and len(pieces) == count and g.meta is not None:
                detail = "its content does not match its BLAKE3 hash"
            elif size is None:
                detail = "its last chunk (with its size) is lost"
            else:
                detail = f"{(count or 0) - len(pieces)} of {count} chunks are lost"
        return RecoveredEntry(p.path, "file", PARTIAL, p.source, size, got, ranges, p.mode,
                              p.mtime_ns, detail=detail)

    # -- step 5: salvage ---------------------------------------------------------------------

    def salvage(self, out_path: str | os.PathLike[str], source: RangeSource, *,
                password: str | bytes | None = None, identity: Identity | None = None,
                recipients: Sequence[Recipient] = (), argon2: Argon2Params | None = None,
                chunk_size: int | None = None) -> SalvageResult:
        """Write every complete file, the directories, symlinks and env values into a
        new archive at ``out_path`` (which must not exist).

        The new archive gets a password slot for ``password`` (default: the password
        this scanner was given) with ``argon2`` (default: the parameters of the slot
        that opened the damaged archive), and a recipient slot for ``identity``
        (default: this scanner's identity) and for each of ``recipients``. Every chunk
        is read again and authenticated against the tag the scan saw."""
        report = self.report
        if report is None:
            raise UsageError("scan the archive before salvaging it")
        from .archive import Lockbox
        from .write.newarchive import create_archive

        password = password if password is not None else self.password
        identity = identity if identity is not None else self.identity
        rcpts = list(recipients)
        if identity is not None:
            rcpts.append(identity.recipient(self.crypto))
        if argon2 is None:
            s = self._unlocked_by
            argon2 = Argon2Params(s.time_cost, s.memory_kib) \
                if isinstance(s, PasswordSlot) and isinstance(password, (str, bytes)) and \
                password == self.password else DEFAULT_ARGON2
        if chunk_size is None:
            c = self._commit
            chunk_size = c.default_chunk_size if c is not None and \
                c.default_chunk_size % MIN_CHUNK_SIZE == 0 else DEFAULT_CHUNK_SIZE
        result = SalvageResult(os.fspath(out_path))
        key = create_archive(out_path, password=password, recipients=rcpts, argon2=argon2,
                             chunk_size=chunk_size, crypto=self.crypto, codec=self.codec)
        box = Lockbox.open(out_path, known_key=key, crypto=self.crypto, codec=self.codec)
        try:
            with box.writer() as w:
                plans = sorted(self._plans.values(), key=lambda p: _path_order(p.path))
                status = {e.path: e.status for e in report.entries}
                for p in plans:
                    try:
                        if p.type == EntryType.DIR:
                            if p.source != SOURCE_IMPLIED:
                                w.mkdir(p.path, p.mode, p.mtime_ns)
                                result.dirs += 1
                        elif p.type == EntryType.SYMLINK:
                            w.symlink(p.path, p.target, p.mode, p.mtime_ns)
                            result.symlinks += 1
                        elif status.get(p.path) == COMPLETE:
                            g = self._groups[p.file_id]
                            shape = self._shape(g)
                            assert shape is not None and g.meta is not None
                            stream = _ChunkStream(self, source, g, shape, g.meta.content_hash)
                            w.add_stream(p.path, stream, mode=p.mode, mtime_ns=p.mtime_ns)
                            result.files += 1
                            result.bytes += shape[2]
                    except LockboxError as e:
                        result.skipped.append(f"{p.path}: {e}")
                for name, value in sorted(self._env.items()):
                    try:
                        w.env_set(name, value)
                        result.env_values += 1
                    except LockboxError as e:
                        result.skipped.append(f"env {name}: {e}")
        finally:
            box.close()
        report.salvage = result
        return result


class _ChunkStream:
    """A file's recovered content as a stream for ``Writer.add_stream``: chunks are
    re-read in order, re-authenticated, length-checked and hashed; the last read
    raises IntegrityError (and the writer drops the file) if the hash differs."""

    def __init__(self, scanner: RecoveryScanner, source: RangeSource, group: _Group,
                 shape: tuple[int, int, int], content_hash: bytes) -> None:
        self._scanner = scanner
        self._source = source
        self._group = group
        self._shape = shape
        self._hash = content_hash
        self._hasher = scanner.crypto.blake3()
        self._batches = scanner._batches(group, shape[0])
        self._buf = bytearray()

    def _fetch(self) -> None:
        a, b = self._batches.pop(0)
        pieces = run_sync(self._scanner._read_chunks_flow(self._group, a, b, self._shape),
                          self._source)
        for data in pieces:
            self._hasher.update(data)
        if not self._batches and self._hasher.digest() != self._hash:
            raise IntegrityError(f"{self._group.path}: content does not match its BLAKE3 "
                                 "hash any more")
        for data in pieces:
            self._buf += data

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._batches:
            self._fetch()
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


def recover(path: str | os.PathLike[str], *, password: str | bytes | None = None,
            identity: Identity | None = None, out: str | os.PathLike[str] | None = None,
            **kw: Any) -> RecoveryReport:
    """Scan the archive at ``path`` (a local file or an http(s) URL) and, with
    ``out``, salvage its complete files into a new archive there."""
    from ...sources import open_source

    source = open_source(os.fspath(path))
    try:
        scanner = RecoveryScanner(password=password, identity=identity, **kw)
        report = scanner.scan(source)
        if out is not None:
            scanner.salvage(out, source)
        return report
    finally:
        source.close()
