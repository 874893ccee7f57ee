"""The ``.sync`` container over ZIP: its layout, found with sans-I/O flows.

A ``.sync`` is a ZIP with fixed entry names (``manifest.toml``, ``payload``,
``sync.wasm``, optional ``context.json`` and ``sync.proof``; sync-rs's writers emit them
in that order). :func:`open_layout_flow` finds every entry and where its data starts,
reading as little as it can: the tail of the file (the end record and, nearly always, the
whole central directory in one read), then the local headers that the reads so far do not
hold (one batch). Over HTTP the registry's 16 KiB probe comes first (the source learns
the size from it); a ``.sync`` up to 16 KiB then needs no other read, any other ordinary
one a single 16 KiB read of its tail: the probe holds the manifest and the payload's
local header, the tail the end record, the central directory and the local headers of
the entries after the payload. The payload is never read by the layout: it is
:attr:`SyncLayout.payload_range`, read in place (the first payload byte over HTTP is the
third round trip).

**Strict** (the default) refuses, each with one line: a compressed payload, duplicate
entry names, local/central header mismatches (name, method, flags, sizes and CRC unless a
data descriptor is used), overlapping entries, entries outside the file or over the
central directory, encrypted entries, a missing ``manifest.toml``, ``payload`` or
``sync.wasm`` (sync-rs refuses a file without it), a manifest over
:data:`MAX_MANIFEST_SIZE`. **Lenient** (``strict=False``) keeps going where it safely can
and records :attr:`SyncLayout.warnings`: a missing ``sync.wasm`` or ``payload``, a
central/local name mismatch, overlapping entries, bytes after the end record, unknown
entries that cannot be read. In both modes an unknown entry is kept in ``entries`` and
noted in ``warnings``; a compressed payload, a duplicate of a ``.sync`` name and sizes that
disagree are always refused (which bytes are the payload would be a guess).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ...drivers import Flow, Read
from ...errors import FormatError, IntegrityError, LimitExceededError, NotFoundError, TruncatedError
from ...ranges import ByteRange
from .zipfmt import (
    EOCD64_SIZE,
    EOCD_SIZE,
    FLAG_DATA_DESCRIPTOR,
    FLAG_ENCRYPTED,
    FLAG_STRONG_ENCRYPTION,
    LOCAL_HEADER_SIZE,
    LOCATOR64_SIZE,
    MAX_TAIL_SIZE,
    METHOD_DEFLATE,
    METHOD_STORED,
    U16_MAX,
    U32_MAX,
    EndRecord,
    Zip64EndRecord,
    ZipEntry,
    decode_central_directory,
    decode_local_header,
    decode_zip64_end_record,
    decode_zip64_locator,
    find_end_record,
    method_name,
)

__all__ = [
    "SyncLayout", "open_layout_flow", "read_entry_flow", "stream_entry_flow",
    "WASM_STUB", "MAX_MANIFEST_SIZE", "MAX_ENTRIES", "MAX_CENTRAL_DIRECTORY_SIZE",
    "TAIL_READ_SIZE", "HEAD_READ_SIZE", "DATA_WINDOW_SIZE",
    "MANIFEST_NAME", "PAYLOAD_NAME", "WASM_NAME", "CONTEXT_NAME", "PROOF_NAME", "SYNC_NAMES",
]

KiB = 1024
MiB = 1024 * KiB

WASM_STUB = b"\0asm\x01\0\0\0"
"""The 8-byte empty wasm module written when there is no hook (sync-rs needs the entry)."""

MAX_MANIFEST_SIZE = 1 * MiB
"""The largest ``manifest.toml`` read (stored or inflated)."""

MAX_ENTRIES = 1024
"""Central directory records accepted (a ``.sync`` has five at most)."""

MAX_CENTRAL_DIRECTORY_SIZE = 4 * MiB
"""The largest central directory read."""

TAIL_READ_SIZE = 16 * KiB
"""The first read at the end of the file: the end record, ZIP64 records, the central
directory and usually the local headers of the small entries after the payload. Only a
ZIP comment of more than ~15 KiB makes a second, longer read necessary."""

HEAD_READ_SIZE = 16 * KiB
"""The registry's probe: the first bytes of the file, read before the format is known."""

DATA_WINDOW_SIZE = 4 * MiB
"""Bytes of entry data read per round trip when streaming (verify, whole reads)."""

_LOCAL_SLACK = 128  # bytes read past a local header's name and central extra length

MANIFEST_NAME = "manifest.toml"
PAYLOAD_NAME = "payload"
WASM_NAME = "sync.wasm"
CONTEXT_NAME = "context.json"
PROOF_NAME = "sync.proof"
SYNC_NAMES = (MANIFEST_NAME, PAYLOAD_NAME, WASM_NAME, CONTEXT_NAME, PROOF_NAME)
"""The entries of a ``.sync``, in the order sync-rs's writers emit them."""


def _q(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")


class _Known:
    """The blobs read so far (offset -> bytes), to answer later reads without I/O."""

    def __init__(self) -> None:
        self.blobs: list[tuple[int, bytes]] = []

    def add(self, offset: int, data: bytes) -> None:
        if data:
            self.blobs.append((offset, data))

    def get(self, offset: int, size: int) -> bytes | None:
        for start, blob in self.blobs:
            if start <= offset and offset + size <= start + len(blob):
                return blob[offset - start: offset - start + size]
        return None

    def read_flow(self, ranges: list[ByteRange]) -> Flow[list[bytes]]:
        """The bytes of each range: from what is known, the rest in one round trip."""
        out: list[bytes | None] = [self.get(r.offset, r.size) for r in ranges]
        missing = [r for r, b in zip(ranges, out) if b is None]
        if missing:
            blobs = yield Read(tuple(missing))
            got = iter(blobs)
            for i, b in enumerate(out):
                if b is None:
                    blob = bytes(next(got))
                    self.add(ranges[i].offset, blob)
                    out[i] = blob
        return [b if b is not None else b"" for b in out]


@dataclass
class SyncLayout:
    """Where everything is in one ``.sync`` file.

    ``entries``: every central directory record by name (file order of the central
    directory), each with its ``data_offset`` (from its LOCAL header). The ``.sync``
    entries are also attributes (``manifest``, ``payload``, ``wasm``, ``context``,
    ``proof``; None when absent, only possible leniently except ``context``/``proof``).
    ``warnings``: what was accepted although odd (lenient mode mostly).
    """

    size: int
    entries: dict[str, ZipEntry]
    strict: bool = True
    warnings: list[str] = field(default_factory=list)
    comment: bytes = b""
    zip64: bool = False
    cd_offset: int = 0
    cd_size: int = 0
    _known: _Known = field(default_factory=_Known, repr=False, compare=False)

    def get(self, name: str) -> ZipEntry | None:
        return self.entries.get(name)

    def entry(self, name: str) -> ZipEntry:
        e = self.entries.get(name)
        if e is None:
            raise NotFoundError(f"this .sync has no {_q(name)} entry")
        return e

    @property
    def manifest(self) -> ZipEntry:
        return self.entry(MANIFEST_NAME)

    @property
    def payload(self) -> ZipEntry | None:
        return self.entries.get(PAYLOAD_NAME)

    @property
    def wasm(self) -> ZipEntry | None:
        return self.entries.get(WASM_NAME)

    @property
    def context(self) -> ZipEntry | None:
        return self.entries.get(CONTEXT_NAME)

    @property
    def proof(self) -> ZipEntry | None:
        return self.entries.get(PROOF_NAME)

    def data_range(self, name: str) -> ByteRange:
        """The (compressed) data of entry ``name`` in the file."""
        e = self.entry(name)
        assert e.data_offset is not None
        return ByteRange(e.data_offset, e.compressed_size)

    @property
    def payload_range(self) -> ByteRange:
        """The payload's bytes in the file (always STORED: read it in place)."""
        return self.data_range(PAYLOAD_NAME)

    @property
    def payload_offset(self) -> int:
        return self.payload_range.offset

    @property
    def payload_size(self) -> int:
        return self.payload_range.size

    @property
    def unknown_entries(self) -> list[str]:
        return [n for n in self.entries if n not in SYNC_NAMES]

    def read_flow(self, offset: int, size: int) -> Flow[bytes]:
        """``size`` bytes at ``offset`` (from the bytes the layout already read when they
        hold them); TruncatedError if the file ends first."""
        if size == 0:
            return b""
        blobs = yield from self._known.read_flow([ByteRange(offset, size)])
        if len(blobs[0]) < size:
            raise TruncatedError(f"the file ends at byte {offset + len(blobs[0])}, inside a "
                                 f"{size}-byte read at offset {offset}")
        return blobs[0]

    def forget_reads(self) -> None:
        """Drop the bytes kept from opening (the head and tail reads)."""
        self._known = _Known()


# ------------------------------------------------------------------------------ opening


class _Problems:
    def __init__(self, strict: bool, warnings: list[str]) -> None:
        self.strict = strict
        self.warnings = warnings

    def __call__(self, message: str, error: type[FormatError] = FormatError,
                 *, always: bool = False) -> None:
        """Refuse (strict, or ``always``) or note a warning (lenient)."""
        if self.strict or always:
            raise error(message)
        self.warnings.append(message)


def _size_flow(known: _Known) -> Flow[int]:
    """The size of a file whose size the caller does not know (only a source that has not
    answered a read yet): from the probed head if the file is shorter, else by doubling
    and halving one-byte reads (about 2 log2(size) round trips; callers that know the
    size -- ``lockbox.open``, the viewer, the CLI -- never get here)."""
    head = next((blob for start, blob in known.blobs if start == 0), b"")
    if 0 < len(head) < HEAD_READ_SIZE:
        return len(head)
    lo, hi = (len(head) if head else 0), max(2 * TAIL_READ_SIZE, 1)

    def exists_flow(offset: int) -> Flow[bool]:
        blobs = yield Read((ByteRange(offset, 1),))
        return len(blobs[0]) == 1

    while (yield from exists_flow(hi - 1)):
        lo, hi = hi, hi * 2
        if hi > 1 << 62:
            raise FormatError("cannot find the end of the file")
    # the size is in [lo, hi): the last existing byte is at lo - 1 or later
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (yield from exists_flow(mid - 1)):
            lo = mid
        else:
            hi = mid
    return lo


def open_layout_flow(size: int | None, head: bytes | None = None, *, strict: bool = True,
                     max_entries: int = MAX_ENTRIES,
                     max_central_directory_size: int = MAX_CENTRAL_DIRECTORY_SIZE,
                     max_manifest_size: int = MAX_MANIFEST_SIZE) -> Flow[SyncLayout]:
    """Find the layout of a ``.sync`` of ``size`` bytes (see the module docstring).

    ``head``: the file's first bytes if the caller has them (the registry's probe);
    reads they cover cost nothing. Raises FormatError / TruncatedError /
    LimitExceededError (one line each) for what strict (or, for what is always refused,
    lenient) mode refuses."""
    warnings: list[str] = []
    problem = _Problems(strict, warnings)
    known = _Known()
    if head:
        known.add(0, bytes(head))
    if size is None:
        size = yield from _size_flow(known)
    if size < EOCD_SIZE:
        raise FormatError(f"not a .sync: {size} bytes is too short for a ZIP archive")

    # 1. the end record (and whatever the tail read brings: the central directory ...)
    want = min(size, TAIL_READ_SIZE)
    (tail,) = yield from known.read_flow([ByteRange(size - want, want)])
    if len(tail) < want:
        raise TruncatedError(f"the file is shorter than its size ({size} bytes)")
    eocd = find_end_record(tail, size - want, size, exact=strict)
    longest = min(size, MAX_TAIL_SIZE + LOCATOR64_SIZE + EOCD64_SIZE)
    if eocd is None and want < longest:
        want = longest
        (tail,) = yield from known.read_flow([ByteRange(size - want, want)])
        if len(tail) < want:
            raise TruncatedError(f"the file is shorter than its size ({size} bytes)")
        eocd = find_end_record(tail, size - want, size, exact=strict)
    if eocd is None:
        loose = find_end_record(tail, size - want, size, exact=False)
        if loose is not None:
            stray = size - loose.offset - EOCD_SIZE - len(loose.comment)
            raise FormatError(f"not a .sync: the ZIP end record at offset {loose.offset} is "
                              f"followed by {stray} stray bytes (open it leniently to read "
                              "it anyway)")
        raise FormatError(f"not a .sync: no ZIP end of central directory record in the last "
                          f"{want} bytes of the file")
    trailing = size - (eocd.offset + EOCD_SIZE + len(eocd.comment))
    if trailing:
        warnings.append(f"{trailing} bytes after the ZIP end record are ignored")

    # 2. ZIP64
    entries_total, cd_size, cd_offset, cd_limit, zip64 = yield from _zip64_flow(
        known, eocd, problem)
    if entries_total > max_entries:
        raise LimitExceededError(f"the ZIP claims {entries_total} entries, over the limit "
                                 f"of {max_entries} (a .sync has five)")
    if cd_size > max_central_directory_size:
        raise LimitExceededError(f"the ZIP central directory is {cd_size} bytes, over the "
                                 f"limit of {max_central_directory_size}")
    if cd_offset + cd_size > cd_limit:
        raise FormatError(f"the central directory (offset {cd_offset}, {cd_size} bytes) runs "
                          f"past the end record at offset {cd_limit}")
    if cd_offset + cd_size < cd_limit:
        problem(f"{cd_limit - cd_offset - cd_size} unexplained bytes between the central "
                "directory and the end record")

    # 3. the central directory
    cd = yield from _read_exact_flow(known, cd_offset, cd_size, "the central directory")
    records = decode_central_directory(cd, cd_offset, entries_total, strict=strict)

    # 4. the entries: names, duplicates, flags, methods
    entries = _admit_entries(records, cd_offset, problem, max_manifest_size)

    # 5. their local headers (one round trip for those the reads so far do not hold)
    entries = yield from _local_headers_flow(known, entries, size, cd_offset, problem)

    _check_overlaps(entries, problem)
    layout = SyncLayout(size, {e.name: e for e in entries}, strict, warnings, eocd.comment,
                        zip64, cd_offset, cd_size, known)
    _check_required(layout, problem)
    return layout


def _read_exact_flow(known: _Known, offset: int, size: int, what: str) -> Flow[bytes]:
    (data,) = yield from known.read_flow([ByteRange(offset, size)])
    if len(data) < size:
        raise TruncatedError(f"the file ends inside {what} (offset {offset}, {size} bytes)")
    return data


def _zip64_flow(known: _Known, eocd: EndRecord, problem: _Problems
                ) -> Flow[tuple[int, int, int, int, bool]]:
    """(entries, cd size, cd offset, where the central directory must end, zip64?)"""
    locator = None
    if eocd.offset >= LOCATOR64_SIZE:
        data = yield from _read_exact_flow(known, eocd.offset - LOCATOR64_SIZE,
                                           LOCATOR64_SIZE, "the ZIP64 locator")
        locator = decode_zip64_locator(data, eocd.offset - LOCATOR64_SIZE)
    if locator is None:
        if eocd.disk or eocd.cd_disk:
            if eocd.saturated:
                raise FormatError("the ZIP end record holds ZIP64 markers but there is no "
                                  "ZIP64 locator before it")
            raise FormatError(f"the ZIP spans {max(eocd.disk, eocd.cd_disk) + 1} disks "
                              "(multi-disk archives are not supported)")
        if eocd.entries != eocd.entries_on_disk:
            raise FormatError(f"the ZIP end record says {eocd.entries} entries in all but "
                              f"{eocd.entries_on_disk} on this disk")
        if eocd.saturated:
            raise FormatError("the ZIP end record holds ZIP64 markers but there is no ZIP64 "
                              "locator before it")
        return eocd.entries, eocd.cd_size, eocd.cd_offset, eocd.offset, False
    if locator.cd_disk != 0 or locator.disks > 1:
        raise FormatError(f"the ZIP64 locator says {locator.disks} disks (multi-disk "
                          "archives are not supported)")
    if locator.eocd64_offset + EOCD64_SIZE > locator.offset:
        raise FormatError(f"the ZIP64 locator points at offset {locator.eocd64_offset}, "
                          f"where no ZIP64 end record fits before the locator "
                          f"(offset {locator.offset})")
    data = yield from _read_exact_flow(known, locator.eocd64_offset, EOCD64_SIZE,
                                       "the ZIP64 end record")
    rec: Zip64EndRecord = decode_zip64_end_record(data, locator.eocd64_offset)
    if locator.eocd64_offset + 12 + rec.record_size > locator.offset:
        raise FormatError(f"the ZIP64 end record at offset {rec.offset} claims "
                          f"{rec.record_size} bytes, running past its locator")
    if locator.eocd64_offset + 12 + rec.record_size < locator.offset:
        problem("unexplained bytes between the ZIP64 end record and its locator")
    if rec.disk or rec.cd_disk:
        raise FormatError("the ZIP64 end record names another disk (multi-disk archives "
                          "are not supported)")
    if rec.entries != rec.entries_on_disk:
        raise FormatError(f"the ZIP64 end record says {rec.entries} entries in all but "
                          f"{rec.entries_on_disk} on this disk")
    for name, small, big, marker in (("entries", eocd.entries, rec.entries, U16_MAX),
                                     ("central directory size", eocd.cd_size, rec.cd_size,
                                      U32_MAX),
                                     ("central directory offset", eocd.cd_offset,
                                      rec.cd_offset, U32_MAX)):
        if small != marker and small != big:
            problem(f"the ZIP end record and the ZIP64 end record disagree on the {name} "
                    f"({small} and {big})")
    return rec.entries, rec.cd_size, rec.cd_offset, rec.offset, True


def _admit_entries(records: list[ZipEntry], cd_offset: int, problem: _Problems,
                   max_manifest_size: int) -> list[ZipEntry]:
    seen: dict[str, ZipEntry] = {}
    kept: list[ZipEntry] = []
    for e in records:
        known_name = e.name in SYNC_NAMES
        if e.name in seen:
            problem(f"duplicate entry {_q(e.name)} (central records at offsets "
                    f"{seen[e.name].record_offset} and {e.record_offset})",
                    always=known_name)
            continue
        seen[e.name] = e
        if e.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
            problem(f"entry {_q(e.name)} is encrypted (ZIP encryption is not supported)",
                    always=known_name)
            continue
        if e.header_offset + LOCAL_HEADER_SIZE > cd_offset:
            problem(f"entry {_q(e.name)}: its local header offset {e.header_offset} is not "
                    f"before the central directory (offset {cd_offset})", always=known_name)
            continue
        if e.method == METHOD_STORED and e.compressed_size != e.uncompressed_size:
            problem(f"entry {_q(e.name)} is STORED but its sizes differ "
                    f"({e.compressed_size} stored, {e.uncompressed_size} uncompressed)",
                    always=known_name)
            continue
        if e.name == PAYLOAD_NAME and e.method != METHOD_STORED:
            raise FormatError(f"the payload is compressed ({method_name(e.method)}): a .sync "
                              "payload must be STORED, to be read in place")
        if known_name and e.method not in (METHOD_STORED, METHOD_DEFLATE):
            problem(f"entry {_q(e.name)} uses {method_name(e.method)}; only STORED and "
                    "DEFLATE are read")
        if e.name == MANIFEST_NAME and e.uncompressed_size > max_manifest_size:
            raise LimitExceededError(f"manifest.toml is {e.uncompressed_size} bytes, over the "
                                     f"limit of {max_manifest_size}")
        if not known_name:
            problem.warnings.append(f"unknown entry {_q(e.name)} ignored")
        kept.append(e)
    return kept


def _local_headers_flow(known: _Known, entries: list[ZipEntry], size: int, cd_offset: int,
                        problem: _Problems) -> Flow[list[ZipEntry]]:
    def want(e: ZipEntry, extra: int) -> ByteRange:
        n = LOCAL_HEADER_SIZE + len(e.raw_name) + extra
        return ByteRange(e.header_offset, max(0, min(n, cd_offset - e.header_offset)))

    ranges = [want(e, len(e.extra) + _LOCAL_SLACK) for e in entries]
    blobs = yield from known.read_flow(ranges)
    # a local extra field longer than the read: one more round trip for those
    again = {}
    for i, (e, blob) in enumerate(zip(entries, blobs)):
        if len(blob) >= LOCAL_HEADER_SIZE:
            name_size = int.from_bytes(blob[26:28], "little")
            extra_size = int.from_bytes(blob[28:30], "little")
            if LOCAL_HEADER_SIZE + name_size + extra_size > len(blob):
                again[i] = want(e, name_size - len(e.raw_name) + extra_size)
    if again:
        more = yield from known.read_flow(list(again.values()))
        for i, blob in zip(again, more):
            blobs[i] = blob
    out: list[ZipEntry] = []
    for e, blob in zip(entries, blobs):
        checked = _check_local(e, blob, size, cd_offset, problem)
        if checked is not None:
            out.append(checked)
    return out


def _check_local(e: ZipEntry, blob: bytes, size: int, cd_offset: int,
                 problem: _Problems) -> ZipEntry | None:
    """The entry with its data offset, after comparing its local header with its
    central record; None when lenient mode drops an unknown entry."""
    known_name = e.name in SYNC_NAMES
    try:
        local = decode_local_header(blob, e.header_offset, strict=problem.strict)
    except FormatError as exc:
        if known_name or problem.strict:
            if isinstance(exc, TruncatedError) and e.header_offset + len(blob) >= cd_offset:
                raise FormatError(f"entry {_q(e.name)}: its local header at offset "
                                  f"{e.header_offset} runs into the central directory"
                                  ) from None
            raise FormatError(f"entry {_q(e.name)}: {exc}") from None
        problem.warnings.append(f"unknown entry {_q(e.name)} dropped: {exc}")
        return None
    where = f"entry {_q(e.name)} (local header at offset {e.header_offset})"
    if local.raw_name != e.raw_name:
        problem(f"{where}: the local header names it {local.raw_name!r}, the central "
                f"directory {e.raw_name!r}")
    if local.method != e.method:
        problem(f"{where}: method {method_name(local.method)} in the local header, "
                f"{method_name(e.method)} in the central directory", always=known_name)
        return None
    if local.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
        problem(f"{where}: the local header flags it encrypted", always=known_name)
        return None
    descriptor = bool((local.flags | e.flags) & FLAG_DATA_DESCRIPTOR)
    if (local.flags ^ e.flags) & FLAG_DATA_DESCRIPTOR:
        problem(f"{where}: the local header and the central directory disagree on the "
                "data descriptor flag")
    if not descriptor or local.crc32 or local.compressed_size or local.uncompressed_size:
        if (local.compressed_size, local.uncompressed_size) != (e.compressed_size,
                                                                e.uncompressed_size):
            problem(f"{where}: sizes {local.compressed_size}/{local.uncompressed_size} in the "
                    f"local header, {e.compressed_size}/{e.uncompressed_size} in the central "
                    "directory", always=known_name)
            return None
        if local.crc32 != e.crc32:
            problem(f"{where}: CRC-32 {local.crc32:08x} in the local header, {e.crc32:08x} "
                    "in the central directory")
    data_offset = e.header_offset + local.size
    end = data_offset + e.compressed_size
    if end > cd_offset:
        error = TruncatedError if end > size else FormatError
        problem(f"{where}: its {e.compressed_size} bytes of data at offset {data_offset} run "
                f"past {'the end of the file' if end > size else 'the central directory'} "
                f"(offset {size if end > size else cd_offset})", error,
                always=known_name)
        return None
    return replace(e, data_offset=data_offset)


def _check_overlaps(entries: list[ZipEntry], problem: _Problems) -> None:
    spans = sorted(entries, key=lambda e: e.header_offset)
    for a, b in itertools.pairwise(spans):
        end = a.data_end + (12 if a.uses_data_descriptor else 0)
        if end > b.header_offset:
            problem(f"entries {_q(a.name)} and {_q(b.name)} overlap (the first ends at "
                    f"offset {end}, the second starts at {b.header_offset})")


def _check_required(layout: SyncLayout, problem: _Problems) -> None:
    if layout.get(MANIFEST_NAME) is None:
        raise FormatError("not a .sync: the ZIP has no manifest.toml entry")
    if layout.payload is None:
        problem("this .sync has no payload entry")
    if layout.wasm is None:
        problem("this .sync has no sync.wasm entry, which sync-rs requires (an empty hook is "
                "the 8-byte stub module)")


# ------------------------------------------------------------------------------ reading


def _inflater(name: str, limit: int) -> Callable[[bytes, bool], bytes]:
    """A DEFLATE decoder for one entry that never produces more than ``limit`` bytes."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = 0

    def feed(data: bytes, last: bool) -> bytes:
        nonlocal produced
        try:
            out = d.decompress(data, limit - produced + 1)
            if len(out) + produced > limit or d.unconsumed_tail:
                raise LimitExceededError(f"{name} inflates past {limit} bytes")
            if last:
                out += d.flush(limit - produced - len(out) + 1)
        except zlib.error as exc:
            raise FormatError(f"{name}: bad DEFLATE data ({exc})") from None
        produced += len(out)
        if produced > limit:
            raise LimitExceededError(f"{name} inflates past {limit} bytes")
        if last and not d.eof:
            raise FormatError(f"{name}: the DEFLATE stream is cut short")
        return out

    return feed


def _check_method(e: ZipEntry) -> None:
    if e.method not in (METHOD_STORED, METHOD_DEFLATE):
        raise FormatError(f"entry {_q(e.name)} uses {method_name(e.method)}; only STORED and "
                          "DEFLATE are read")


def read_entry_flow(layout: SyncLayout, name: str, *, max_size: int) -> Flow[bytes]:
    """The whole (inflated) content of entry ``name``, CRC-32 checked (IntegrityError
    otherwise); LimitExceededError if it is, or inflates to, more than ``max_size``
    bytes. For the small entries: the manifest, context, wasm, proof."""
    e = layout.entry(name)
    _check_method(e)
    if e.uncompressed_size > max_size:
        raise LimitExceededError(f"{name} is {e.uncompressed_size} bytes, over the limit of "
                                 f"{max_size}")
    # DEFLATE never needs much more room than the data (stored blocks: +5 per 64 KiB)
    if e.compressed_size > max_size + max_size // 64 + 1024:
        raise LimitExceededError(f"{name} takes {e.compressed_size} compressed bytes, more "
                                 f"than {max_size} bytes of content can")
    r = layout.data_range(name)
    raw = yield from layout.read_flow(r.offset, r.size)
    data = raw if e.method == METHOD_STORED else \
        _inflater(name, e.uncompressed_size)(raw, True)
    _check_size_and_crc(e, len(data), zlib.crc32(data))
    return data


def _check_size_and_crc(e: ZipEntry, size: int, crc: int) -> None:
    if size != e.uncompressed_size:
        raise FormatError(f"{e.name} inflates to {size} bytes, not the "
                          f"{e.uncompressed_size} its header says")
    if crc != e.crc32:
        raise IntegrityError(f"{e.name}: CRC-32 mismatch (stored {e.crc32:08x}, computed "
                             f"{crc:08x})")


def stream_entry_flow(layout: SyncLayout, name: str,
                      sink: Callable[[bytes], None], *,
                      window_size: int = DATA_WINDOW_SIZE, hold_last: bool = True,
                      max_size: int | None = None) -> Flow[int]:
    """Hand entry ``name``'s (inflated) content to ``sink`` piece by piece (one read of at
    most ``window_size`` bytes per round trip), checking its CRC-32 and size; returns the
    size. ``hold_last``: the last piece is handed over only after the check passed, so a
    consumer that commits when the flow returns never commits bad data. Memory stays
    around one window whatever the entry's size."""
    e = layout.entry(name)
    _check_method(e)
    if max_size is not None and e.uncompressed_size > max_size:
        raise LimitExceededError(f"{name} is {e.uncompressed_size} bytes, over the limit of "
                                 f"{max_size}")
    r = layout.data_range(name)
    inflate = None if e.method == METHOD_STORED else _inflater(name, e.uncompressed_size)
    crc = 0
    produced = 0
    pos = 0
    held = b""
    while True:
        n = min(window_size, r.size - pos)
        last = pos + n >= r.size
        raw = (yield from layout.read_flow(r.offset + pos, n)) if n else b""
        pos += n
        piece = raw if inflate is None else inflate(raw, last)
        crc = zlib.crc32(piece, crc)
        produced += len(piece)
        if held:
            sink(held)
        held = piece if hold_last else b""
        if not hold_last and piece:
            sink(piece)
        if last:
            break
    _check_size_and_crc(e, produced, crc)
    if held:
        sink(held)
    return produced
