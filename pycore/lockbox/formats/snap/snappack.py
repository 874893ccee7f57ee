"""SNAPPACK 1 and 1Z: snapdir's pack wire format (docs/formats/SNAPPACK.md).

A pack is one self-verifying byte stream carrying content-addressed objects and at most
one manifest into a snapdir store::

    stream := "SNAPPACK 1\\n" record* "end\\n"        (1Z: "SNAPPACK 1Z\\n" + one zstd frame
    record := "obj " hex64 " " len "\\n" payload        that decompresses to record* "end\\n")
            | "manifest " hex64 " " len "\\n" payload   (at most one, the last record)

Layers, from the bottom:

* :class:`PackParser`: sans-I/O and pure. ``feed(data)`` returns an iterator of
  :data:`PackEvent` (exhaust it before the next feed); ``close()`` at EOF. It enforces the
  grammar and the limits, hashes every payload with an incremental BLAKE3 and verifies it
  (an :class:`ObjectEnd` event *means* the object's bytes hashed to its id), buffers and
  checks the manifest. Memory is bounded whatever the input: a header line is refused the
  moment it reaches :data:`MAX_HEADER_BYTES`, payload bytes pass through as views of the fed
  chunk (v1) or of one bounded decompression step (1Z), only the manifest is buffered
  (at most :data:`MAX_MANIFEST_BYTES`).
* :class:`PackReceiver`: drives a :class:`PackSink` from the parser's events (skip present
  objects, stage + commit absent ones, abort the staged one on any failure, one durability
  barrier then the manifest after ``end``). The server feeds it from a request body.
* :func:`read_pack`: a receiver fed from a blocking binary stream. :func:`write_pack`: the
  sender. :class:`FileSink` (a file:// store) and :class:`MemorySink` (tests, the browser).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from ...codec.zstd import load_zstd
from ...crypto.base import Hasher
from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    StorageError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
)
from .manifest import MAX_MANIFEST_SIZE, is_hex64, new_hasher, parse_manifest
from .manifest import object_id as _hash_hex
from .manifest import render_manifest as _render_manifest
from .store import FileStore, ObjectWriter

__all__ = [
    "WIRE_VERSION", "WIRE_MAGIC", "WIRE_MAGIC_ZSTD", "WIRE_CAPS", "MAX_HEADER_BYTES",
    "MAX_MANIFEST_BYTES", "PREALLOC_CAP", "DEFAULT_ZSTD_LEVEL", "MIN_ZSTD_LEVEL",
    "MAX_ZSTD_LEVEL", "MAX_ZSTD_WINDOW_SIZE", "PACK_FORMATS",
    "capabilities_line", "parse_id_lines",
    "ObjectBegin", "ObjectData", "ObjectEnd", "ManifestRecord", "PackEnd", "PackEvent",
    "PackParser", "PackSink", "PackReceiver", "PackReadReport", "PackWriteReport",
    "ObjectStream", "read_pack", "write_pack", "FileSink", "MemorySink",
]

WIRE_VERSION = 1
"""The wire version: ``version --capabilities`` prints ``wire=1``; peers match it exactly."""
WIRE_MAGIC = b"SNAPPACK 1\n"
WIRE_MAGIC_ZSTD = b"SNAPPACK 1Z\n"
WIRE_CAPS = ("objects-needed", "send-pack", "receive-pack", "snappack-zstd")
MAX_HEADER_BYTES = 128
"""The longest header line, its ``\\n`` included: 127 bytes + ``\\n`` pass, 128 are refused."""
MAX_MANIFEST_BYTES = MAX_MANIFEST_SIZE
"""The largest manifest payload, 64 MiB (it is buffered until ``end``); checked on the
header alone."""
PREALLOC_CAP = 8 * 1024 * 1024
"""The most a sink may reserve from a header's claimed length before the bytes arrive.
lockbox's sinks reserve nothing: buffers grow with the bytes actually received."""
DEFAULT_ZSTD_LEVEL = 3
MIN_ZSTD_LEVEL = 1
MAX_ZSTD_LEVEL = 19
MAX_ZSTD_WINDOW_SIZE = 8 * 1024 * 1024
"""The largest zstd window a 1Z frame may ask for (levels 1..19 never need more)."""
PACK_FORMATS = ("v1", "zstd")

_U64_MAX = 2**64 - 1
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_ZSTD_STEP_SIZE = 128 * 1024   # decompressed bytes produced per step (1Z)
_WRITE_BUFFER_SIZE = 64 * 1024
_READ_CHUNK_SIZE = 256 * 1024
_BARRIER_BATCH = 4096          # FileSink syncs pending objects early past this many


def _show(raw: bytes | bytearray, limit: int = 40) -> str:
    """``raw`` quoted for a one-line message: escapes for anything unprintable, cut at
    ``limit`` bytes."""
    cut = bytes(raw[:limit])
    text = repr(cut)[1:]
    return text + ("..." if len(raw) > limit else "")


def capabilities_line(semver: str) -> str:
    """The ``version --capabilities`` line: ``snapdir <semver> wire=1 caps=objects-needed,
    send-pack,receive-pack,snappack-zstd``. Peers negotiate on the exact ``wire`` integer."""
    return f"snapdir {semver} wire={WIRE_VERSION} caps={','.join(WIRE_CAPS)}"


def parse_id_lines(data: bytes | bytearray | memoryview, *, dedupe: bool = False) -> list[str]:
    """The ids of an ``objects-needed`` / ``send-pack --ids`` list: one per line, ``\\n`` or
    ``\\r\\n`` ended (the last line may lack it), empty lines skipped, order kept.

    Fail closed, as snapdir's plumbing: any line that is not 64 lowercase hex characters
    raises FormatError (naming the line) before anything is returned. ``dedupe`` keeps the
    first occurrence of each id (send-pack and objects-needed both dedupe).
    """
    ids: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(bytes(data).split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            continue
        if not _HEX64.fullmatch(line):
            raise FormatError(f"line {number} of the id list is not an object id "
                              f"(64 lowercase hex characters): {_show(line)}")
        text = line.decode("ascii")
        if dedupe:
            if text in seen:
                continue
            seen.add(text)
        ids.append(text)
    return ids


def _clamp_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int):
        raise UsageError(f"the zstd level must be an integer, not {level!r}")
    return min(max(level, MIN_ZSTD_LEVEL), MAX_ZSTD_LEVEL)


def _check_manifest_bytes(manifest_id: str, data: bytes, where: str) -> None:
    """The manifest rules beyond its hash: UTF-8 text that parses and re-renders to exactly
    the same bytes (snapdir's canonical form). Raises FormatError."""
    try:
        rendered = _render_manifest(parse_manifest(data))
    except FormatError as exc:
        raise FormatError(f"manifest {manifest_id} {where} does not parse: {exc}") from None
    if rendered != data:
        raise FormatError(f"manifest {manifest_id} {where} is not in canonical form "
                          "(it does not re-render to the same bytes)")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ObjectBegin:
    """An ``obj`` record starts: ``size`` payload bytes follow as :class:`ObjectData`."""

    object_id: str
    size: int
    offset: int
    """Where its header line starts (a stream offset; in 1Z, of the decompressed body)."""


@dataclass(frozen=True, slots=True)
class ObjectData:
    """Payload bytes of the current object, in order. The view is valid until the next event
    is asked for; the bytes are not yet verified (:class:`ObjectEnd` is the verdict)."""

    data: memoryview


@dataclass(frozen=True, slots=True)
class ObjectEnd:
    """The current object's payload is complete and its BLAKE3 equals its id."""

    object_id: str


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """The ``manifest`` record, read whole and verified (hash, UTF-8, canonical form). It is
    only committed after :class:`PackEnd`."""

    manifest_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PackEnd:
    """The ``end`` line: the stream is complete. Nothing after it is read."""

    offset: int


PackEvent = ObjectBegin | ObjectData | ObjectEnd | ManifestRecord | PackEnd

# parser states
_MAGIC, _HEADER, _OBJECT, _MANIFEST, _DONE, _FAILED = range(6)


class PackParser:
    """The sans-I/O SNAPPACK 1 / 1Z parser.

    ::

        parser = PackParser()
        for chunk in chunks:
            for event in parser.feed(chunk):   # exhaust before the next feed
                ...
            if parser.done:                    # `end` seen: the rest is never read
                break
        parser.close()                         # EOF: TruncatedError unless `end` was seen

    Every failure raises a lockbox error (one line naming the offset and the rule) from the
    event iterator and leaves the parser failed: FormatError (grammar),
    UnsupportedVersionError (another ``SNAPPACK`` version), LimitExceededError (header cap,
    manifest cap, zstd window), TruncatedError (EOF before ``end``, a cut 1Z frame),
    IntegrityError (a payload that does not hash to its id; ``require_manifest`` not met).

    ``require_manifest``: the only manifest id the stream may carry (checked on its header).
    ``max_body_size``: refuse a 1Z body that decompresses to more bytes (LimitExceededError;
    default None: no limit, as snapdir; a v1 body is as large as the stream).
    ``check_manifest(manifest_id, data, where)``: the canonical-form check of the manifest
    (default: UTF-8, parses and re-renders byte-identically with lockbox's manifest codec).
    """

    def __init__(self, *, require_manifest: str | None = None,
                 check_manifest: Callable[[str, bytes, str], None] | None = None,
                 max_body_size: int | None = None) -> None:
        if require_manifest is not None and not is_hex64(require_manifest):
            raise UsageError(f"the required manifest id {require_manifest!r} is not 64 "
                             "lowercase hex characters")
        if max_body_size is not None and (isinstance(max_body_size, bool)
                                          or not isinstance(max_body_size, int)
                                          or max_body_size < 0):
            raise UsageError(f"max_body_size must be a size in bytes, not {max_body_size!r}")
        self._require_manifest = require_manifest
        self._max_body_size = max_body_size
        self._check_manifest = check_manifest or _check_manifest_bytes
        self._state = _MAGIC
        self._zstd_form = False
        self._input: deque[memoryview] = deque()
        self._eof = False
        self._iterating = False
        # body position: the current body chunk and how far it is consumed
        self._chunk = memoryview(b"")
        self._chunk_pos = 0
        self._offset = 0            # body bytes consumed (v1: stream offset, magic included)
        self._line = bytearray()    # a header line being gathered (never >= MAX_HEADER_BYTES)
        self._line_offset = 0
        # the current record
        self._record_id = ""
        self._record_offset = 0
        self._remaining = 0
        self._hasher: Hasher | None = None
        self._manifest_buffer = bytearray()
        self._manifest_seen = False
        # 1Z
        self._zstd_module: Any = None
        self._decompressor: Any = None
        self.wire_size = 0
        """Stream bytes consumed so far: v1, exactly up to ``end``; 1Z, the compressed
        bytes handed to the decoder."""

    # ------------------------------------------------------------------ public

    @property
    def done(self) -> bool:
        """True once ``end`` was read."""
        return self._state == _DONE

    @property
    def pack_format(self) -> str | None:
        """``"v1"`` or ``"zstd"`` once the magic line was read, else None."""
        if self._state == _MAGIC:
            return None
        return "zstd" if self._zstd_form else "v1"

    @property
    def offset(self) -> int:
        """Body bytes parsed so far (v1: the stream offset; 1Z: decompressed bytes)."""
        return self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[PackEvent]:
        """Queue ``data`` (the next bytes of the stream) and return the events it completes.
        The data is not copied: do not change it while its events are being consumed."""
        if self._eof:
            raise UsageError("feed() after close()")
        if self._state == _FAILED:
            raise UsageError("feed() after the pack was refused")
        if self._state != _DONE and len(data):
            self._input.append(memoryview(data).cast("B"))
        return self._events()

    def close(self) -> None:
        """The stream ended. Raises TruncatedError unless ``end`` was read (events of data
        already fed must have been consumed first)."""
        if self._state == _DONE:
            self._eof = True
            return
        if self._state == _FAILED:
            raise UsageError("close() after the pack was refused")
        if self._input or self._chunk_pos < len(self._chunk) or self._iterating:
            raise UsageError("close() before the events of the data fed were consumed")
        self._eof = True
        error = self._truncation()
        self._state = _FAILED
        raise error

    # ------------------------------------------------------------------ events

    def _events(self) -> Iterator[PackEvent]:
        if self._iterating:
            raise UsageError("the events of the previous feed() were not consumed")
        self._iterating = True
        try:
            while self._state not in (_DONE, _FAILED):
                if self._chunk_pos >= len(self._chunk):
                    if not self._next_chunk():
                        return
                    continue
                yield from self._parse_chunk()
        except BaseException:
            if self._state != _DONE:
                self._state = _FAILED
            raise
        finally:
            self._iterating = False

    def _where(self, offset: int) -> str:
        if self._zstd_form:
            return f"at byte {offset} of the decompressed body"
        return f"at byte {offset}"

    def _truncation(self) -> TruncatedError:
        cut = "objects filed before the cut stay; no manifest was committed"
        if self._state == _MAGIC:
            if not self._line:
                return TruncatedError("the pack is empty: no SNAPPACK magic line")
            return TruncatedError(f"the pack ends inside its magic line {_show(self._line)}")
        if self._zstd_form and self._decompressor is not None:
            return TruncatedError(f"the SNAPPACK 1Z zstd frame is cut short after "
                                  f"{self._offset} decompressed bytes ({cut})")
        if self._state == _HEADER:
            if self._line:
                return TruncatedError(f"the pack ends inside a header line "
                                      f"{self._where(self._line_offset)} ({cut})")
            return TruncatedError(f"the pack ends {self._where(self._offset)} before its "
                                  f"`end` line ({cut})")
        kind = "object" if self._state == _OBJECT else "manifest"
        return TruncatedError(
            f"the pack ends inside the payload of {kind} {self._record_id} "
            f"{self._where(self._record_offset)} ({self._remaining} bytes missing; {cut})")

    # ------------------------------------------------------------------ input side

    def _next_chunk(self) -> bool:
        """Make the next body bytes current; False when more input is needed."""
        if not self._zstd_form or self._state == _MAGIC:
            if not self._input:
                return False
            chunk = self._input.popleft()
            self.wire_size += len(chunk)
            self._set_chunk(chunk)
            return True
        return self._next_zstd_chunk()

    def _set_chunk(self, chunk: memoryview) -> None:
        self._chunk = chunk
        self._chunk_pos = 0

    def _new_decompressor(self) -> Any:
        zstd = self._zstd_module
        window_log = (MAX_ZSTD_WINDOW_SIZE - 1).bit_length()
        return zstd.ZstdDecompressor(
            options={zstd.DecompressionParameter.window_log_max: window_log})

    def _next_zstd_chunk(self) -> bool:
        zstd = self._zstd_module
        while True:
            decompressor = self._decompressor
            data: bytes | memoryview
            if decompressor is not None and not decompressor.needs_input:
                data = b""
            elif self._input:
                chunk = self._input.popleft()
                self.wire_size += len(chunk)
                data = chunk
                if decompressor is None:
                    decompressor = self._decompressor = self._new_decompressor()
            else:
                return False
            try:
                out = decompressor.decompress(data, _ZSTD_STEP_SIZE)
            except zstd.ZstdError as exc:
                message = str(exc)
                if "too much memory" in message or "window" in message.lower():
                    raise LimitExceededError(
                        f"the SNAPPACK 1Z zstd frame asks for a window larger than "
                        f"{MAX_ZSTD_WINDOW_SIZE} bytes ({message})") from None
                raise FormatError(f"the SNAPPACK 1Z body is not a valid zstd frame after "
                                  f"{self._offset} decompressed bytes: {message}") from None
            if decompressor.eof:
                # A frame ended. snapdir's zstd reader goes on with a following frame
                # (or skippable frame): so do we, until `end` is parsed.
                leftover = decompressor.unused_data
                self._decompressor = None
                if leftover:
                    self.wire_size -= len(leftover)
                    self._input.appendleft(memoryview(leftover))
            if out:
                limit = self._max_body_size
                if limit is not None and self._offset + len(out) > limit:
                    raise LimitExceededError(
                        f"the SNAPPACK 1Z body decompresses to more than {limit} bytes "
                        "(the limit set by the receiver)")
                self._set_chunk(memoryview(out))
                return True

    # ------------------------------------------------------------------ body side

    def _parse_chunk(self) -> Iterator[PackEvent]:
        state = self._state
        if state == _MAGIC or state == _HEADER:
            line = self._gather_line()
            if line is not None:
                yield from self._on_line(line)
        elif state == _OBJECT:
            yield from self._object_bytes()
        elif state == _MANIFEST:
            yield from self._manifest_bytes()

    def _gather_line(self) -> bytes | None:
        """The next complete header line (without its ``\\n``), or None if it needs more
        bytes. Refuses a line the moment it reaches MAX_HEADER_BYTES without a ``\\n``."""
        chunk, pos = self._chunk, self._chunk_pos
        if not self._line:
            self._line_offset = self._offset
        window = MAX_HEADER_BYTES - len(self._line)  # bytes we may look at, \n included
        end = min(len(chunk), pos + window)
        newline = bytes(chunk[pos:end]).find(b"\n")
        if newline < 0:
            self._line += chunk[pos:end]
            self._offset += end - pos
            self._chunk_pos = end
            if len(self._line) >= MAX_HEADER_BYTES:
                what = "the magic line" if self._state == _MAGIC else "a header line"
                raise LimitExceededError(
                    f"{what} {self._where(self._line_offset)} reaches {MAX_HEADER_BYTES} bytes "
                    f"without its newline (the cap is {MAX_HEADER_BYTES} bytes, newline "
                    f"included): {_show(self._line)}")
            return None
        self._line += chunk[pos:pos + newline]
        self._offset += newline + 1
        self._chunk_pos = pos + newline + 1
        line = bytes(self._line)
        self._line.clear()
        return line

    def _on_line(self, line: bytes) -> Iterator[PackEvent]:
        if self._state == _MAGIC:
            self._on_magic(line)
            return
        where = self._where(self._line_offset)
        if line == b"end":
            self._state = _DONE
            if not self._zstd_form:  # bytes after `end` are not part of the pack
                self.wire_size -= len(self._chunk) - self._chunk_pos
            yield PackEnd(self._line_offset)
            return
        if self._manifest_seen:
            raise FormatError(f"a record follows the manifest record {where}: only the "
                              f"`end` line may follow it ({_show(line)})")
        parts = line.split(b" ")
        if parts[0] not in (b"obj", b"manifest"):
            raise FormatError(f"unknown record {where}: expected `obj`, `manifest` or `end`, "
                              f"got {_show(line)}")
        if len(parts) != 3:
            raise FormatError(f"malformed record header {where}: expected `<kind> <hex64> "
                              f"<len>` with single spaces, got {_show(line)}")
        kind, raw_id, raw_size = parts
        if not _HEX64.fullmatch(raw_id):
            raise FormatError(f"record header {where} has an invalid id {_show(raw_id, 70)}: "
                              "expected 64 lowercase hex characters")
        if not raw_size.isdigit():
            raise FormatError(f"record header {where} has an invalid length "
                              f"{_show(raw_size)}: expected decimal digits")
        size = int(raw_size)
        if size > _U64_MAX:
            raise FormatError(f"record header {where} has a length {_show(raw_size)} that "
                              "does not fit in 64 bits")
        record_id = raw_id.decode("ascii")
        self._record_id = record_id
        self._record_offset = self._line_offset
        self._remaining = size
        self._hasher = new_hasher()
        if kind == b"obj":
            self._state = _OBJECT
            yield ObjectBegin(record_id, size, self._line_offset)
            if size == 0:
                yield self._finish_object()
            return
        if size > MAX_MANIFEST_BYTES:
            raise LimitExceededError(
                f"manifest record {where} claims {size} bytes; the limit is "
                f"{MAX_MANIFEST_BYTES} bytes")
        required = self._require_manifest
        if required is not None and record_id != required:
            raise IntegrityError(f"the pack carries manifest {record_id} {where}, but "
                                 f"manifest {required} is required")
        self._manifest_seen = True
        self._manifest_buffer = bytearray()
        self._state = _MANIFEST
        if size == 0:
            yield self._finish_manifest()

    def _on_magic(self, line: bytes) -> None:
        if line + b"\n" == WIRE_MAGIC:
            self._state = _HEADER
            return
        if line + b"\n" == WIRE_MAGIC_ZSTD:
            self._zstd_module = load_zstd()
            self._zstd_form = True
            self._state = _HEADER
            self._offset = 0
            # the rest of the current chunk is the start of the zstd frame
            rest = self._chunk[self._chunk_pos:]
            self.wire_size -= len(rest)
            if len(rest):
                self._input.appendleft(rest)
            self._set_chunk(memoryview(b""))
            return
        if line.startswith(b"SNAPPACK "):
            raise UnsupportedVersionError(
                f"unsupported SNAPPACK version {_show(line[9:])}: this reader speaks "
                f"wire={WIRE_VERSION} (`SNAPPACK 1` and `SNAPPACK 1Z`)")
        raise FormatError(f"not a SNAPPACK stream: the first line is {_show(line)} "
                          "(expected `SNAPPACK 1` or `SNAPPACK 1Z`)")

    def _take(self) -> memoryview:
        chunk, pos = self._chunk, self._chunk_pos
        take = min(len(chunk) - pos, self._remaining)
        data = chunk[pos:pos + take]
        self._chunk_pos = pos + take
        self._offset += take
        self._remaining -= take
        assert self._hasher is not None
        self._hasher.update(data)
        return data

    def _object_bytes(self) -> Iterator[PackEvent]:
        data = self._take()
        yield ObjectData(data)
        if self._remaining == 0:
            yield self._finish_object()

    def _finish_object(self) -> ObjectEnd:
        assert self._hasher is not None
        actual = self._hasher.digest().hex()
        self._hasher = None
        if actual != self._record_id:
            raise IntegrityError(
                f"object {self._record_id} {self._where(self._record_offset)} hashes to "
                f"{actual}: the pack is damaged, nothing from this record on is filed")
        self._state = _HEADER
        return ObjectEnd(self._record_id)

    def _manifest_bytes(self) -> Iterator[PackEvent]:
        self._manifest_buffer += self._take()
        if self._remaining == 0:
            yield self._finish_manifest()

    def _finish_manifest(self) -> ManifestRecord:
        assert self._hasher is not None
        actual = self._hasher.digest().hex()
        self._hasher = None
        where = self._where(self._record_offset)
        if actual != self._record_id:
            raise IntegrityError(f"manifest {self._record_id} {where} hashes to {actual}: "
                                 "the pack is damaged")
        data = bytes(self._manifest_buffer)
        self._manifest_buffer = bytearray()
        self._check_manifest(self._record_id, data, where)
        self._state = _HEADER
        return ManifestRecord(self._record_id, data)


# --------------------------------------------------------------------------- sinks


@runtime_checkable
class PackSink(Protocol):
    """Where a receiver files verified records. The receiver owns framing, hashing and the
    commit decision; a sink stages bytes and commits or aborts when told:

    1. ``has_object(id)``: present objects are read and verified, then skipped.
    2. ``begin_object(id, size)``, ``write_object(data)``...: stage an absent object (never
       visible at its address yet);
    3. ``commit_object(id)`` once its bytes hashed to ``id``, or ``abort_object(id)`` on
       any failure: abort leaves nothing behind and tolerates nothing being staged.
    4. after ``end``: ``flush_barrier()`` once (make every committed object durable), then
       ``put_manifest(id, data)`` with verified, canonical manifest bytes.
    """

    def has_object(self, object_id: str) -> bool: ...

    def begin_object(self, object_id: str, size: int) -> None: ...

    def write_object(self, data: memoryview) -> None: ...

    def commit_object(self, object_id: str) -> None: ...

    def abort_object(self, object_id: str) -> None: ...

    def flush_barrier(self) -> None: ...

    def put_manifest(self, manifest_id: str, data: bytes) -> None: ...


class MemorySink:
    """A :class:`PackSink` in memory: ``objects`` and ``manifests`` map ids to bytes. Pass
    ``present`` ids to behave as a store that already holds them."""

    def __init__(self, present: Iterable[str] = ()) -> None:
        self.objects: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.present = set(present)
        self.barriers = 0
        self._staged: tuple[str, bytearray] | None = None

    @property
    def staging(self) -> bool:
        """True while an object is staged (begun, neither committed nor aborted)."""
        return self._staged is not None

    def has_object(self, object_id: str) -> bool:
        return object_id in self.objects or object_id in self.present

    def begin_object(self, object_id: str, size: int) -> None:
        self._staged = (object_id, bytearray())

    def write_object(self, data: memoryview) -> None:
        if self._staged is None:
            raise UsageError("write_object() without begin_object()")
        self._staged[1].extend(data)

    def commit_object(self, object_id: str) -> None:
        staged, self._staged = self._staged, None
        if staged is None or staged[0] != object_id:
            raise UsageError(f"commit_object({object_id}) without a matching staged object")
        self.objects[object_id] = bytes(staged[1])

    def abort_object(self, object_id: str) -> None:
        self._staged = None

    def flush_barrier(self) -> None:
        self.barriers += 1

    def put_manifest(self, manifest_id: str, data: bytes) -> None:
        self.manifests[manifest_id] = data


class FileSink:
    """A :class:`PackSink` filing into a ``file://`` store (:class:`~.store.FileStore`, or
    its root directory, created if missing).

    Each object streams into a temporary sibling of its final path
    (``<name>.<pid>.<n>.tmp``, as snapdir) through the store's :class:`~.store.ObjectWriter`,
    then is renamed into place: memory is O(1) per record whatever its size. The writer
    does not hash the bytes again (``hashed_by_caller``): a :class:`PackSink` is told to
    commit only once the receiver's own BLAKE3 of the record matched its id, and the
    writer still checks the size. A failure removes the temporary file; objects committed
    before it stay (a rerun resumes). The barrier is the store's
    (:meth:`~.store.FileStore.barrier`: every object committed and every directory up to
    the store root made durable, by one syncfs or by fsyncs); then the manifest goes to a
    temporary file, fsynced, renamed, its name made durable: a durable manifest implies
    durable objects. Shard directories created for a record that then failed are left
    (empty).

    ``require_objects`` (default True): the manifest is refused (StorageError, not filed)
    when an object it lists is not in the store. snapdir files it regardless.
    """

    def __init__(self, store: FileStore | str | os.PathLike[str], *,
                 require_objects: bool = True) -> None:
        self.store = store if isinstance(store, FileStore) else FileStore(store, create=True)
        self.require_objects = require_objects
        self._writer: ObjectWriter | None = None
        self._unsynced = 0

    def has_object(self, object_id: str) -> bool:
        return self.store.has_object(object_id)

    def begin_object(self, object_id: str, size: int) -> None:
        self.abort_object(object_id)
        self._writer = self.store.object_writer(object_id, expected_size=size,
                                                hashed_by_caller=True)

    def write_object(self, data: memoryview) -> None:
        if self._writer is None:
            raise UsageError("write_object() without begin_object()")
        self._writer.write(data)  # on failure the writer removes its temp file

    def commit_object(self, object_id: str) -> None:
        writer, self._writer = self._writer, None
        if writer is None or writer.hex_id != object_id:
            if writer is not None:
                _abort_quietly(writer)
            raise UsageError(f"commit_object({object_id}) without a matching staged object")
        writer.commit()
        self._unsynced += 1
        if self._unsynced >= _BARRIER_BATCH:
            self.flush_barrier()  # keeps the store's list of objects to sync bounded

    def abort_object(self, object_id: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            _abort_quietly(writer)

    def flush_barrier(self) -> None:
        self.store.barrier()
        self._unsynced = 0

    def put_manifest(self, manifest_id: str, data: bytes) -> None:
        self.store.put_manifest(data, manifest_id, require_objects=self.require_objects)

    def close(self) -> None:
        """Remove a staged temporary file, if any (a receiver abandoned mid-record)."""
        self.abort_object("")


def _abort_quietly(writer: ObjectWriter) -> None:
    try:
        writer.abort()
    except LockboxError:
        pass  # already failing: the first error is the one reported


# --------------------------------------------------------------------------- receiving


@dataclass
class PackReadReport:
    """What a pack filed."""

    objects_written: int = 0
    """Objects verified and newly committed."""
    objects_skipped: int = 0
    """Objects read and verified but already present (duplicates, objects in the store)."""
    manifest_committed: bool = False
    manifest_id: str | None = None
    """The committed manifest's id (None when the pack carried none)."""
    object_bytes: int = 0
    """Payload bytes of every ``obj`` record read (written or skipped)."""
    pack_format: str | None = None
    """``"v1"`` or ``"zstd"``."""
    wire_size: int = 0
    """Stream bytes consumed up to ``end`` (1Z: compressed bytes)."""

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (the server's answer, the CLI's ``--json``)."""
        return asdict(self)


class PackReceiver:
    """Files a SNAPPACK stream into ``sink`` as its bytes arrive (the push half of
    :func:`read_pack`, for callers that receive the stream in pieces, e.g. a server)::

        with PackReceiver(FileSink(store), require_manifest=rid) as receiver:
            for chunk in body:            # any sizes; 64 KiB keeps each feed() short
                receiver.feed(chunk)
                if receiver.done:
                    break                 # bytes after `end` are never read
            report = receiver.close()     # TruncatedError if `end` never came

    Any error raised by ``feed``/``close`` has already removed the staged object; objects
    committed before stay, the manifest is committed only inside the ``feed`` that reads
    ``end``. Leaving the ``with`` block by an exception (a dropped connection) aborts the
    same way; so does :meth:`abort`. ``feed`` is CPU-bound on a highly compressible 1Z chunk
    (memory stays bounded): an async server should run it in a worker thread.
    """

    def __init__(self, sink: PackSink, *, require_manifest: str | None = None,
                 check_manifest: Callable[[str, bytes, str], None] | None = None,
                 max_body_size: int | None = None) -> None:
        self.sink = sink
        self.parser = PackParser(require_manifest=require_manifest,
                                 check_manifest=check_manifest, max_body_size=max_body_size)
        self._require_manifest = require_manifest
        self.report = PackReadReport()
        """Progress so far (also after a failure: what was filed before it)."""
        self._staging: str | None = None
        self._present = False
        self._pending_manifest: ManifestRecord | None = None
        self._failed = False

    def __enter__(self) -> PackReceiver:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    @property
    def done(self) -> bool:
        """True once ``end`` was read and the manifest (if any) committed."""
        return self.parser.done and not self._failed

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise UsageError("feed() after the pack was refused")
        try:
            for event in self.parser.feed(data):
                self._dispatch(event)
        except BaseException:
            self.abort()
            raise
        finally:
            self.report.wire_size = self.parser.wire_size
            self.report.pack_format = self.parser.pack_format

    def close(self) -> PackReadReport:
        """The stream ended: the report, or TruncatedError if ``end`` never came."""
        if self._failed:
            raise UsageError("close() after the pack was refused")
        try:
            self.parser.close()
        except BaseException:
            self.abort()
            raise
        return self.report

    def abort(self) -> None:
        """Give up: remove the staged object (if any). Safe to call more than once."""
        self._failed = True
        self._pending_manifest = None
        if self._staging is not None:
            object_id, self._staging = self._staging, None
            self.sink.abort_object(object_id)

    def _dispatch(self, event: PackEvent) -> None:
        if isinstance(event, ObjectData):
            if self._staging is not None:
                self.sink.write_object(event.data)
            self.report.object_bytes += len(event.data)
        elif isinstance(event, ObjectBegin):
            self._present = self.sink.has_object(event.object_id)
            if not self._present:
                self.sink.begin_object(event.object_id, event.size)
                self._staging = event.object_id
        elif isinstance(event, ObjectEnd):
            if self._present:
                self.report.objects_skipped += 1
            else:
                self._staging = None
                self.sink.commit_object(event.object_id)
                self.report.objects_written += 1
        elif isinstance(event, ManifestRecord):
            self._pending_manifest = event
        elif isinstance(event, PackEnd):
            manifest, self._pending_manifest = self._pending_manifest, None
            required = self._require_manifest
            if required is not None and manifest is None:
                raise IntegrityError(f"the pack carries no manifest, but manifest {required} "
                                     "is required")
            self.sink.flush_barrier()
            if manifest is not None:
                self.sink.put_manifest(manifest.manifest_id, manifest.data)
                self.report.manifest_committed = True
                self.report.manifest_id = manifest.manifest_id


def read_pack(stream: Any, sink: PackSink, *, require_manifest: str | None = None,
              max_body_size: int | None = None,
              chunk_size: int = _READ_CHUNK_SIZE) -> PackReadReport:
    """Read a SNAPPACK 1 or 1Z stream from ``stream`` (a binary file-like with ``read(n)``)
    into ``sink``; stops reading right after ``end``. Memory is bounded whatever the input.
    ``require_manifest`` and ``max_body_size``: as :class:`PackParser`.

    Raises (nothing committed past the failure, no temporary file left): FormatError and
    its subclasses for a malformed, oversized or truncated stream, IntegrityError for a
    payload that does not hash to its id or a ``require_manifest`` not met, StorageError
    when the sink or the stream fails.
    """
    with PackReceiver(sink, require_manifest=require_manifest,
                      max_body_size=max_body_size) as receiver:
        while not receiver.done:
            try:
                chunk = stream.read(chunk_size)
            except OSError as exc:
                raise StorageError(f"reading the pack stream failed: "
                                   f"{exc.strerror or exc}") from exc
            if chunk is None:
                raise UsageError("read_pack needs a blocking stream (read() returned None)")
            if not chunk:
                break
            receiver.feed(chunk)
        return receiver.close()


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ObjectStream:
    """An object handed to :func:`write_pack` as chunks instead of one ``bytes``: ``size``
    must be the exact total of ``chunks``."""

    size: int
    chunks: Iterable[bytes | bytearray | memoryview]


@dataclass(frozen=True)
class PackWriteReport:
    """What :func:`write_pack` emitted."""

    objects_written: int
    """``obj`` records emitted (duplicate ids emit duplicate records)."""
    manifest_written: bool
    wire_size: int
    """Bytes written to ``out``."""


class _Emitter:
    """Coalesces small writes; compresses into one zstd frame for 1Z."""

    def __init__(self, out: Any, compressor: Any) -> None:
        self._out = out
        self._compressor = compressor
        self._buffer = bytearray()
        self.wire_size = 0
        self.out_failed = False

    def _write_out(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._out.write(data)
        except OSError as exc:
            self.out_failed = True
            raise StorageError(f"writing the pack failed: {exc.strerror or exc}") from exc
        self.wire_size += len(data)

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        if self._compressor is not None:
            data = self._compressor.compress(data)
            if not data:
                return
        self._write_out(data)

    def raw(self, data: bytes) -> None:
        """Bytes outside the zstd frame (the magic)."""
        self.flush_buffer()
        self._write_out(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= _WRITE_BUFFER_SIZE:
            self.flush_buffer()
            self._put(data)
            return
        self._buffer += data
        if len(self._buffer) >= _WRITE_BUFFER_SIZE:
            self.flush_buffer()

    def flush_buffer(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._put(data)

    def finish(self) -> None:
        self.flush_buffer()
        if self._compressor is not None:
            tail = self._compressor.flush(self._compressor.FLUSH_FRAME)
            self._compressor = None
            if tail:
                self._write_out(tail)

    def flush_partial(self) -> None:
        """After a failure: push out what was written, never ending the 1Z frame, so the
        receiver files the objects before the failure and then fails."""
        if self.out_failed:
            return
        try:
            self.flush_buffer()
            if self._compressor is not None:
                tail = self._compressor.flush(self._compressor.FLUSH_BLOCK)
                if tail:
                    self._write_out(tail)
        except LockboxError:
            pass


def write_pack(ids: Iterable[str],
               get_object: Callable[[str], bytes | bytearray | memoryview | ObjectStream],
               out: Any, *, manifest: tuple[str, bytes] | None = None,
               pack_format: str = "v1", level: int = DEFAULT_ZSTD_LEVEL) -> PackWriteReport:
    """Write a SNAPPACK stream to ``out`` (anything with ``write(bytes)``): the magic, one
    ``obj`` record per id in order (duplicates are not removed), the ``manifest`` record
    last when given as ``(id, canonical bytes)``, then ``end``.

    ``pack_format``: ``"v1"`` or ``"zstd"`` (SNAPPACK 1Z, one zstd frame at ``level``
    clamped to 1..19). ``get_object(id)`` returns the object's bytes or an
    :class:`ObjectStream`; its errors propagate.

    Fail closed: every id, and the manifest (id, size limit, hash, canonical form), is
    checked before the first byte is written (UsageError / FormatError / IntegrityError /
    LimitExceededError). Any later failure (a missing object, bytes that do not hash to
    their id, a short ObjectStream, a failing ``out``) raises before ``end`` is written;
    in 1Z the frame is never finished, so every reader refuses the partial stream.
    """
    if pack_format not in PACK_FORMATS:
        raise UsageError(f"unknown pack format {pack_format!r}: expected 'v1' or 'zstd'")
    zstd_level = _clamp_level(level)
    if isinstance(ids, (str, bytes)):
        raise UsageError("write_pack takes a list of ids, not one string")
    id_list = ids if isinstance(ids, Sequence) else list(ids)
    for object_id in id_list:
        if not is_hex64(object_id):
            raise UsageError(f"invalid object id {object_id!r}: expected 64 lowercase hex "
                             "characters")
    manifest_record: bytes | None = None
    if manifest is not None:
        manifest_id, manifest_data = manifest
        if not is_hex64(manifest_id):
            raise UsageError(f"invalid manifest id {manifest_id!r}: expected 64 lowercase hex "
                             "characters")
        manifest_data = bytes(manifest_data)
        if len(manifest_data) > MAX_MANIFEST_BYTES:
            raise LimitExceededError(f"manifest {manifest_id} has {len(manifest_data)} bytes; "
                                     f"a pack carries at most {MAX_MANIFEST_BYTES}")
        actual = _hash_hex(manifest_data)
        if actual != manifest_id:
            raise IntegrityError(f"manifest {manifest_id} hashes to {actual}")
        _check_manifest_bytes(manifest_id, manifest_data, "to send")
        manifest_record = (b"manifest %s %d\n" % (manifest_id.encode("ascii"),
                                                   len(manifest_data)) + manifest_data)

    compressor = None
    if pack_format == "zstd":
        compressor = load_zstd().ZstdCompressor(level=zstd_level)
    emitter = _Emitter(out, compressor)
    objects_written = 0
    try:
        emitter.raw(WIRE_MAGIC_ZSTD if compressor is not None else WIRE_MAGIC)
        for object_id in id_list:
            _emit_object(emitter, object_id, get_object(object_id))
            objects_written += 1
        if manifest_record is not None:
            emitter.write(manifest_record)
        emitter.write(b"end\n")
        emitter.finish()
    except BaseException:
        emitter.flush_partial()
        raise
    try:
        flush = getattr(out, "flush", None)
        if flush is not None:
            flush()
    except OSError as exc:
        raise StorageError(f"writing the pack failed: {exc.strerror or exc}") from exc
    return PackWriteReport(objects_written, manifest_record is not None, emitter.wire_size)


def _emit_object(emitter: _Emitter, object_id: str,
                 obj: bytes | bytearray | memoryview | ObjectStream) -> None:
    if not isinstance(obj, ObjectStream):
        actual = _hash_hex(obj)
        if actual != object_id:
            raise IntegrityError(f"object {object_id} hashes to {actual}: not sending it")
        emitter.write(b"obj %s %d\n" % (object_id.encode("ascii"), len(obj)))
        emitter.write(obj)
        return
    size = obj.size
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _U64_MAX:
        raise UsageError(f"object {object_id}: invalid size {size!r}")
    emitter.write(b"obj %s %d\n" % (object_id.encode("ascii"), size))
    hasher = new_hasher()
    sent = 0
    for chunk in obj.chunks:
        sent += len(chunk)
        if sent > size:
            raise StorageError(f"object {object_id} yields more than its {size} bytes")
        hasher.update(chunk)
        emitter.write(chunk)
    if sent != size:
        raise StorageError(f"object {object_id} yields {sent} of its {size} bytes")
    actual = hasher.digest().hex()
    if actual != object_id:
        raise IntegrityError(f"object {object_id} hashes to {actual}: stopping the pack "
                             "before `end`")
