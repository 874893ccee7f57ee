"""The Python side of the browser viewer (``webapp/``), run inside Pyodide in the worker.

One :class:`Session` holds at most one archive. The worker (``webapp/src/boot-worker.mjs``)
creates it once and forwards the page's requests to :meth:`Session.call` (results as a JSON
string) and :meth:`Session.call_binary` (``bytes``, or a JSON error string). Every error is
turned into a message for people by :func:`classify`: its ``kind`` is one of

``wrong_key``, ``not_lockbox``, ``unsupported``, ``no_range``, ``cors``, ``network``,
``unavailable``, ``changed``, ``corrupt``, ``not_found``, ``usage``, ``internal``.

Flow of a session::

    probe  = await s.open_url(url)          # or open_blob(file): reads the 16 KiB superblock
    info   = await s.unlock(password=...)   # or identity="LOCKBOX-IDENTITY-1:..."; no request
    root   = await s.ls("")                 # one round trip for the root listing
    head   = await s.read("a.txt", 0, 65536)
    h      = await s.stream_open("big.bin") # then stream_next(h) until b"" (downloads)
    h      = await s.zip_open("photos")     # a folder as a .zip (stored), same protocol

The superblock read by ``open_*`` is kept and handed to the unlock, so *open + unlock + root
listing* costs two round trips (one for a listing that fits the root leaves).

Nothing here is browser-only except the sources: on CPython ``open_url`` uses httpx and
:meth:`Session.open_source` takes any async source (that is how it is unit-tested).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import time
import zipfile
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..drivers import Flow, Read
from ..errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
    WrongKeyError,
)
from ..extract import link_escape, safe_mode
from ..formats.lbox.archive import AsyncLockbox
from ..formats.lbox.info import entry_info
from ..formats.lbox.keys import Identity
from ..formats.lbox.reading import FileReadPlan
from ..formats.lbox.view import ArchiveView, ChunkData
from ..formats.lbox.wire.constants import SUPERBLOCK_SIZE, EntryType
from ..formats.lbox.wire.entry import Entry, normalize_path
from ..formats.lbox.wire.keydir import PasswordSlot, RecipientSlot, decode_keydir
from ..formats.lbox.wire.refs import Ref
from ..formats.lbox.wire.superblock import decode_superblock
from ..info import EntryInfo
from ..ranges import ByteRange, coalesce
from ..sources import is_url
from ..sources.base import AsyncRangeSource, SourceStats
from ..sources.httprules import redact_url

__all__ = ["Session", "classify", "PREVIEW_LIMIT", "STREAM_PIECE", "PLAIN_CACHE_BYTES",
           "PLAIN_CACHE_FILE_MAX", "ZIP_BATCH_BYTES", "ZIP_BATCH_FILES", "ZIP_SMALL_FILE"]

PREVIEW_LIMIT = 256 * 1024  # text previews read at most this much
STREAM_PIECE = 1024 * 1024  # stream_next() returns about this much per call
LOG_SIZE = 200  # network log: the last N round trips
# Verified plaintext chunks kept for reuse (a preview, then the download of the same file):
# at most this much in all (least recently used first out); a whole-file read keeps its
# chunks only for files up to PLAIN_CACHE_FILE_MAX bytes (previews always keep theirs).
PLAIN_CACHE_BYTES = 32 * 1024 * 1024
PLAIN_CACHE_FILE_MAX = 16 * 1024 * 1024
# Folder .zip: files up to ZIP_SMALL_FILE bytes are fetched together, up to
# ZIP_BATCH_BYTES of content and ZIP_BATCH_FILES files per round trip; gaps of up to
# ZIP_GAP_BYTES between their frames are read through (one request instead of two).
ZIP_SMALL_FILE = 1024 * 1024
ZIP_BATCH_BYTES = 8 * 1024 * 1024
ZIP_BATCH_FILES = 1024
ZIP_GAP_BYTES = 16 * 1024


class _ViewerError(Exception):
    """An error already classified (``info`` is the message for the page)."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info.get("message", ""))
        self.info = info


class _AtPath(Exception):
    """Wraps an error that happened while reading one file (for the message)."""

    def __init__(self, exc: BaseException, path: str) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.path = path


def _error(kind: str, title: str, message: str, *, detail: str = "",
           path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "title": title, "message": message, "detail": detail}
    if path is not None:
        out["path"] = path
    return out


def classify(exc: BaseException, *, stage: str = "", path: str | None = None,
             location: str = "") -> dict[str, Any]:
    """A message for people about ``exc``: ``{kind, title, message, detail, path?}``.

    ``stage`` is what was being done (``open``, ``unlock``, ``list``, ``read``...);
    ``path`` the file or folder concerned; ``location`` the archive (URL or file name).
    """
    if isinstance(exc, _ViewerError):
        return exc.info
    if isinstance(exc, _AtPath):
        return classify(exc.exc, stage=stage, path=exc.path, location=location)
    detail = f"{type(exc).__name__}: {exc}"
    shown = _shown_location(location)
    where = f" ({shown})" if shown else ""
    if isinstance(exc, (WrongKeyError, LimitExceededError)) and \
            "over this reader's limit" in str(exc) and stage in ("", "unlock", "open"):
        # A key slot asks for more Argon2id work than this page allows (docs/SECURITY.md):
        # the CLI's --max-argon2-* flags do not apply here.
        return _error("unlock_limit", "A key slot is too costly to try here",
                      "This archive's password slot asks for more Argon2id memory or time "
                      "than the viewer allows in a browser tab, so it was not tried (a "
                      "hostile archive could otherwise stall or crash the tab). If you trust "
                      "the archive, open it with the lockbox command line, which can raise "
                      "the limits.", detail=detail)
    if isinstance(exc, WrongKeyError):
        # The page names the secret that was given ("Wrong password" / "Wrong identity
        # file"): the title here is neutral.
        text = str(exc)
        if "no key slot opens" in text or not text:
            text = ("No key slot of this archive opens with it. Check the password (or the "
                    "identity file) and try again.")
        return _error("wrong_key", "Wrong key", text, detail=detail)
    if isinstance(exc, SourceChangedError):
        return _error("changed", "The archive changed",
                      "The archive was changed or replaced on the server while it was open. "
                      "Open it again to see the new version.", detail=detail, path=path)
    if isinstance(exc, RangeNotSupportedError):
        return _error("no_range", "The server does not support Range requests",
                      "The server sent the whole file instead of the part that was asked for. "
                      "lockbox needs a server that answers HTTP Range requests with 206 "
                      "(nginx, Apache, the lockbox server, most static hosts and object "
                      "stores do).", detail=detail)
    if isinstance(exc, SourceUnavailableError):
        text = str(exc)
        if "CORS" in text or "network error" in text or "no answer" in text:
            return _error("network", "Could not reach the archive",
                          "The request failed: the server is unreachable, or it does not allow "
                          "this page to read it (CORS). A server on another origin must send "
                          "Access-Control-Allow-Origin for this site and allow the Range "
                          f"header.{where}", detail=detail)
        return _error("unavailable", "The archive is not available",
                      f"The server refused or could not find the archive{where}: "
                      f"{_short(_without_location(text, location))}", detail=detail)
    if isinstance(exc, StorageError):
        text = str(exc)
        if "Access-Control-Expose-Headers" in text:
            return _error("cors", "The server hides the Content-Range header (CORS)",
                          "The server answered, but the browser does not let this page read "
                          "its Content-Range header. A cross-origin server must list "
                          "Content-Range, Accept-Ranges and ETag in "
                          "Access-Control-Expose-Headers.", detail=detail)
        return _error("network", "Reading the archive failed", _short(text), detail=detail)
    if isinstance(exc, IntegrityError) and stage not in ("open", "unlock"):
        if path:
            return _error("corrupt", f"Damaged: {path}",
                          f"Part of “{path}” is damaged: its data does not authenticate "
                          "(the archive was corrupted or tampered with). Other files are not "
                          "affected and can still be opened.", detail=detail, path=path)
        return _error("corrupt", "Damaged archive data",
                      "A page of the archive is damaged (it does not authenticate). Other "
                      "parts can still be opened.", detail=detail)
    if isinstance(exc, UnsupportedVersionError):
        return _error("unsupported", "Unsupported archive version",
                      f"This is a lockbox archive of a format version this viewer does not "
                      f"read: {exc}", detail=detail)
    if isinstance(exc, (FormatError, IntegrityError)) and stage in ("open", "unlock"):
        if isinstance(exc, LimitExceededError) and "key slot" in str(exc):
            return _error("unsupported", "No usable key slot", str(exc), detail=detail)
        return _error("not_lockbox", "Not a lockbox archive",
                      f"This file is not a lockbox archive, or its header is damaged{where}.",
                      detail=detail)
    if isinstance(exc, TruncatedError):
        return _error("corrupt", "Truncated archive", _short(str(exc)), detail=detail, path=path)
    if isinstance(exc, (FormatError, IntegrityError)):
        return _error("corrupt", "Damaged archive data", _short(str(exc)), detail=detail,
                      path=path)
    if isinstance(exc, NotFoundError):
        return _error("not_found", "Not found", str(exc), detail=detail, path=path)
    if isinstance(exc, (UsageError, InvalidPathError)):
        return _error("usage", "Cannot do that", str(exc), detail=detail, path=path)
    if isinstance(exc, LockboxError):
        return _error("internal", "Error", str(exc), detail=detail, path=path)
    return _error("internal", "Unexpected error",
                  f"Something went wrong in the viewer: {type(exc).__name__}: {exc}",
                  detail=detail, path=path)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown_location(location: str) -> str:
    """The archive as messages name it: a URL without credentials or query."""
    return redact_url(location) if is_url(location) else location


_REQUEST_PREFIX = re.compile(r"^(?:GET|HEAD) \S+: ")


def _without_location(text: str, location: str) -> str:
    """A source's message without its leading ``GET <url>: `` (or ``<name>: ``): the
    message around it names the archive already, once."""
    shown = _shown_location(location)
    for prefix in (f"GET {shown}: ", f"{shown}: ", f"{location}: "):
        if location and text.startswith(prefix):
            return text[len(prefix):]
    return _REQUEST_PREFIX.sub("", text, count=1)


class _Recorder:
    """Wraps the archive's async source: counts round trips, logs them, and serves the
    superblock read at open from the copy the probe kept (no second request)."""

    def __init__(self, inner: AsyncRangeSource, head: bytes | None = None) -> None:
        self.inner = inner
        self.head = head
        self.round_trips = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.started = time.monotonic()
        self.label = "open"
        self.stats: SourceStats = inner.stats

    @property
    def size(self) -> int | None:
        return self.inner.size

    @property
    def identity(self) -> Any:
        return getattr(self.inner, "identity", None)

    async def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        head = self.head
        if head is not None and ranges and all(r.end <= len(head) for r in ranges):
            return [head[r.offset:r.end] for r in ranges]
        before = (self.inner.stats.requests, self.inner.stats.bytes_read)
        t0 = time.monotonic()
        error = ""
        try:
            return await self.inner.read(ranges)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            self.round_trips += 1
            self.log.append({
                "at": round(t0 - self.started, 3), "what": self.label,
                "ranges": len(ranges),
                "requests": self.inner.stats.requests - before[0],
                "bytes": self.inner.stats.bytes_read - before[1],
                "ms": round((time.monotonic() - t0) * 1000, 1), "error": error,
            })

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Stream:
    """One download in progress: an async iterator of byte pieces, read by stream_next()."""

    def __init__(self, pieces: AsyncIterator[bytes], size: int, name: str) -> None:
        self.pieces = pieces
        self.size = size
        self.name = name
        self.sent = 0
        self.current = name


class _ZipSink:
    """A write-only, non-seekable file for zipfile (it then writes data descriptors)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0
        self.pending = 0

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.parts.append(b)
        self.pos += len(b)
        self.pending += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        self.pending = 0
        return out


def _unsafe_zip_links(items: Sequence[EntryInfo], prefix: str) -> dict[str, tuple[str, str]]:
    """The symlinks of a zipped folder (``items`` below ``prefix``) an unzip would turn into
    a way out of the folder: archive path -> (target, reason). Each link is resolved
    through the zip's other links -- all of them, whatever their order, as they all exist
    once unzipped -- and dropping one can change where others lead, so until stable. A
    name missing as written is also looked up case-insensitively (the zip may be unpacked
    on a case-insensitive filesystem, where ``l`` opens a link ``L``)."""
    kinds = {e.path[len(prefix):]: e for e in items}
    links = {rel: e.target for rel, e in kinds.items() if e.type == "symlink"}
    folded = {rel.casefold(): rel for rel in kinds}
    unsafe: dict[str, tuple[str, str]] = {}

    def lookup(parent: Sequence[str], name: str) -> tuple[str, str]:
        rel = "/".join([*parent, name])
        if rel not in kinds:
            rel = folded.get(rel.casefold(), rel)
        if rel in links:
            return "link", links[rel]
        e = kinds.get(rel)
        if e is None or e.type == "symlink":  # a dropped link is not in the zip
            return "missing", ""
        return ("dir" if e.is_dir else "other"), ""

    changed = True
    while changed:
        changed = False
        for rel, target in list(links.items()):
            why = link_escape(rel.split("/")[:-1], target, lookup, root="the folder")
            if why is not None:
                unsafe[prefix + rel] = (target, why)
                del links[rel]
                changed = True
    return unsafe


def _zip_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    t = _dt.datetime.fromtimestamp(mtime_ns / 1e9, _dt.UTC)
    if t.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if t.year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def _children_flow(view: ArchiveView, path: str) -> Flow[list[tuple[bytes, bytes]]]:
    """(key, raw entry value) of a folder's direct children, without decoding every
    entry: ``ArchiveView.dir_items_flow`` (one round trip per tree level)."""
    return (yield from view.dir_items_flow(path))


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise FormatError("TOC entry: bad varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _entry_head(value: bytes) -> tuple[int, int, int, str]:
    """(type, mtime_ns, size, symlink target) of an encoded TOC entry (docs/FORMAT.md):
    ``type u8, mode uvarint, mtime svarint`` then, for a file, ``size uvarint``; for a
    symlink, ``target blob``. The value was authenticated with its node; the full checks
    are :func:`lockbox.formats.lbox.wire.entry.decode_entry`'s (stat, reads)."""
    if not value:
        raise FormatError("TOC entry: empty")
    t = value[0]
    _, pos = _uvarint(value, 1)
    z, pos = _uvarint(value, pos)
    mtime = (z >> 1) ^ -(z & 1)
    if t == 1:
        size, pos = _uvarint(value, pos)
        return t, mtime, size, ""
    if t == 3:
        n, pos = _uvarint(value, pos)
        try:
            return t, mtime, 0, bytes(value[pos:pos + n]).decode()
        except UnicodeDecodeError:
            raise FormatError("TOC entry: symlink target is not UTF-8") from None
    if t == 2:
        return t, mtime, 0, ""
    raise FormatError(f"TOC entry: unknown type {t}")


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""


_ChunkKey = tuple[bytes, bytes, int]


def _chunk_key(entry: Entry, chunk_no: int) -> _ChunkKey:
    """A file's chunk, whatever its path: (file id, content hash, chunk number)."""
    return (entry.file_id, entry.content_hash, chunk_no)


class _PlainCache:
    """Verified plaintext chunks of recently read files (``ChunkData`` as
    ``ArchiveView.decode_chunk`` returned them), least recently used first out, at most
    ``limit_bytes`` of data. One per session, cleared when the archive is closed."""

    def __init__(self, limit_bytes: int = PLAIN_CACHE_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.size_bytes = 0
        self.hits = 0
        self.hit_bytes = 0
        self._items: OrderedDict[_ChunkKey, ChunkData] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: _ChunkKey) -> ChunkData | None:
        chunk = self._items.get(key)
        if chunk is not None:
            self._items.move_to_end(key)
            self.hits += 1
            self.hit_bytes += len(chunk.data)
        return chunk

    def put(self, key: _ChunkKey, chunk: ChunkData) -> None:
        size = len(chunk.data)
        if size > self.limit_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size_bytes -= len(old.data)
        self._items[key] = chunk
        self.size_bytes += size
        while self.size_bytes > self.limit_bytes:
            _, dropped = self._items.popitem(last=False)
            self.size_bytes -= len(dropped.data)

    def clear(self) -> None:
        self._items.clear()
        self.size_bytes = 0


def _gather_flow(flows: Sequence[Flow[Any]]) -> Flow[list[Any]]:
    """Run several flows side by side: each round trip is the union of the batches they
    ask for at that step (one ``Read``), and each flow gets its own blobs back."""
    results: list[Any] = [None] * len(flows)
    pending: dict[int, Read] = {}
    for i, flow in enumerate(flows):
        try:
            pending[i] = next(flow)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = list(pending)
        blobs = yield Read(tuple(r for i in order for r in pending[i].ranges))
        at = 0
        asked, pending = pending, {}
        for i in order:
            n = len(asked[i].ranges)
            try:
                pending[i] = flows[i].send(blobs[at:at + n])
            except StopIteration as stop:
                results[i] = stop.value
            at += n
    return results


def _at_path_flow(flow: Flow[Any], path: str) -> Flow[Any]:
    """``flow``, with its lockbox errors naming ``path`` (the file being read)."""
    try:
        return (yield from flow)
    except LockboxError as exc:
        raise _AtPath(exc, path) from exc


def _cut(wanted: Sequence[ByteRange], merged: Sequence[ByteRange],
         blobs: Sequence[bytes]) -> list[bytes]:
    """Each wanted range out of the blobs of the (sorted, disjoint) merged ranges that
    cover them (``ranges.split_coalesced`` with a bisection: batches hold many ranges)."""
    starts = [m.offset for m in merged]
    out = []
    for w in wanted:
        k = bisect_right(starts, w.offset) - 1
        start = w.offset - merged[k].offset
        out.append(bytes(blobs[k][start:start + w.size]))
    return out


# One read of chunks: (path, entry, first chunk, stop chunk).
_ChunkAsk = tuple[str, Entry, int, int]


def _read_chunks_flow(view: ArchiveView, asks: Sequence[_ChunkAsk], cache: _PlainCache,
                      keep: bool) -> Flow[list[list[ChunkData]]]:
    """Authenticated plaintext of chunks ``first <= n < stop`` of each asked file, in
    ``ArchiveView.chunks_flow``'s checks (``view.decode_chunk``), and in few round trips
    whatever the number of files: the chunk refs of every file at once (an index frame
    read, for files with many chunks: one round trip for all), then every chunk in one
    ``Read`` whose ranges less than ``ZIP_GAP_BYTES`` apart are read as one. Chunks found
    in ``cache`` are not fetched; those fetched are put there when ``keep``. Errors name
    the file (``_AtPath``)."""
    got: list[dict[int, ChunkData]] = []
    missing: list[list[int]] = []
    for _, e, first, stop in asks:
        have: dict[int, ChunkData] = {}
        for n in range(first, stop):
            c = cache.get(_chunk_key(e, n))
            if c is not None:
                have[n] = c
        got.append(have)
        missing.append([n for n in range(first, stop) if n not in have])
    todo = [k for k, m in enumerate(missing) if m]
    if todo:
        refs = yield from _gather_flow([
            _at_path_flow(view.chunk_refs_flow(asks[k][1], missing[k][0], missing[k][-1] + 1),
                          asks[k][0]) for k in todo])
        wanted: list[tuple[int, int, Ref]] = []
        for k, file_refs in zip(todo, refs):
            lo = missing[k][0]
            wanted.extend((k, n, file_refs[n - lo]) for n in missing[k])
        ranges = [ref.byte_range for _, _, ref in wanted]
        merged = coalesce(ranges, max_gap=ZIP_GAP_BYTES)
        blobs = _cut(ranges, merged, (yield Read(tuple(merged))))
        for (k, n, ref), blob in zip(wanted, blobs):
            path, e = asks[k][0], asks[k][1]
            try:
                c = view.decode_chunk(e, n, ref, blob)
            except LockboxError as exc:
                raise _AtPath(exc, path) from exc
            got[k][n] = c
            if keep:
                cache.put(_chunk_key(e, n), c)
    return [[got[k][n] for n in range(first, stop)]
            for k, (_, _, first, stop) in enumerate(asks)]


def _file_batches(items: Sequence[tuple[str, Entry]], start: int) -> list[int]:
    """Indexes of the small files to fetch together, from ``items[start]`` (a small file)
    on: the following small files (folders and links need no read, larger files are
    streamed alone) up to ``ZIP_BATCH_BYTES`` of content and ``ZIP_BATCH_FILES`` files."""
    out: list[int] = []
    total = 0
    for i in range(start, len(items)):
        e = items[i][1]
        if e.type != EntryType.FILE or e.size > ZIP_SMALL_FILE:
            continue
        if out and (total + e.size > ZIP_BATCH_BYTES or len(out) >= ZIP_BATCH_FILES):
            break
        out.append(i)
        total += e.size
    return out


class Session:
    """At most one archive: opened (probed), then unlocked, then browsed."""

    def __init__(self) -> None:
        self._source: _Recorder | None = None
        self._box: AsyncLockbox | None = None
        self._location = ""
        self._kind = ""
        self._probe: dict[str, Any] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_handle = 1
        self._plain = _PlainCache()

    # -- the worker's entry points --------------------------------------------------

    async def call(self, method: str, args_json: str = "{}", extra: Any = None) -> str:
        """Run a JSON method; returns ``{"ok": result}`` or ``{"error": {...}}`` as JSON."""
        try:
            args = json.loads(args_json or "{}")
            fn = _JSON_METHODS.get(method)
            if fn is None:
                raise UsageError(f"unknown method {method!r}")
            if extra is not None:
                args["extra"] = extra
            result = await fn(self, **args)
            return json.dumps({"ok": result}, separators=(",", ":"))
        except Exception as exc:  # every failure becomes a message
            return json.dumps({"error": self._classify(exc, method, args_json)})

    async def call_binary(self, method: str, args_json: str = "{}") -> bytes | str:
        """Run a method returning bytes; on failure the JSON error string instead."""
        try:
            args = json.loads(args_json or "{}")
            fn = _BINARY_METHODS.get(method)
            if fn is None:
                raise UsageError(f"unknown method {method!r}")
            data: bytes = await fn(self, **args)
            return data
        except Exception as exc:
            return json.dumps({"error": self._classify(exc, method, args_json)})

    def _classify(self, exc: BaseException, method: str, args_json: str) -> dict[str, Any]:
        stage = {"open_url": "open", "open_blob": "open", "unlock": "unlock"}.get(method, method)
        path = None
        try:
            path = json.loads(args_json or "{}").get("path")
        except (ValueError, AttributeError):
            pass
        if stage in ("ls",) and isinstance(exc, IntegrityError):
            info = classify(exc, stage=stage, location=self._location)
            info["title"] = f"Damaged folder listing: {path or '/'}"
            info["message"] = (f"The listing of “{path or '/'}” is damaged (it does not "
                               "authenticate). Other folders and files can still be opened.")
            info["path"] = path or ""
            return info
        if stage in ("read", "stat", "stream_open", "zip_open") and path is not None \
                and not isinstance(exc, _AtPath):
            return classify(exc, stage=stage, path=path or "/", location=self._location)
        return classify(exc, stage=stage, location=self._location)

    # -- opening ----------------------------------------------------------------------

    async def open_url(self, url: str) -> dict[str, Any]:
        """Open ``url`` (reads the superblock only); returns what the unlock form needs."""
        from ..sources import is_url, open_async_source

        url = url.strip()
        if not is_url(url):
            raise _ViewerError(_error("usage", "Not a web address",
                                      "Enter an http:// or https:// address of a .lbox archive."))
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or url
        return await self.open_source(open_async_source(url), location=url, name=name,
                                      kind="url")

    async def open_blob(self, extra: Any = None, name: str = "") -> dict[str, Any]:
        """Open a picked or dropped File (read in ranges by Blob.slice, never whole)."""
        from ..sources.browser import AsyncBlobRangeSource

        if extra is None:
            raise UsageError("no file was given")
        source = AsyncBlobRangeSource(extra, name=name or None)
        label = name or getattr(extra, "name", "") or "local file"
        return await self.open_source(source, location=label, name=label, kind="file")

    async def open_source(self, source: AsyncRangeSource, *, location: str, name: str,
                          kind: str) -> dict[str, Any]:
        await self.close()
        self._location = location
        self._kind = kind
        rec = _Recorder(source)
        self._source = rec
        rec.label = "open"
        try:
            head = (await rec.read([ByteRange(0, SUPERBLOCK_SIZE)]))[0]
            slots = decode_superblock(head)
        except BaseException:
            await self.close()
            raise
        rec.head = head
        methods: set[str] = set()
        known = True
        for slot in slots:
            if isinstance(slot.keydir, bytes):
                try:
                    for ks in decode_keydir(slot.keydir):
                        if isinstance(ks, PasswordSlot):
                            methods.add("password")
                        elif isinstance(ks, RecipientSlot):
                            methods.add("identity")
                except LockboxError:
                    known = False
            else:
                known = False
        if not known or not methods:
            methods = {"password", "identity"}
        self._probe = {
            "name": name, "location": location, "kind": kind, "size": rec.size,
            "generation": slots[0].generation, "methods": sorted(methods),
        }
        return self._probe

    async def unlock(self, password: str | None = None,
                     identity: str | None = None) -> dict[str, Any]:
        """Unlock the opened archive with a password or the text of an identity file."""
        from ..formats.lbox.opening import open_flow

        rec = self._source
        if rec is None:
            raise UsageError("open an archive first")
        if not password and not identity:
            raise UsageError("enter the password or choose an identity file")
        ident = None
        if identity:
            try:
                ident = Identity.decode(identity)
            except FormatError as exc:
                raise _ViewerError(_error(
                    "usage", "Not an identity file",
                    "This file is not a lockbox identity (it needs a line starting with "
                    "LOCKBOX-IDENTITY-1:).", detail=str(exc))) from None
        box = AsyncLockbox(rec)
        self._plain.clear()
        rec.label = "unlock"
        box.set_view(await box.run(open_flow(
            box.crypto, box.codec, password=password or None, identity=ident,
            cache=box.cache)))
        self._box = box
        return self.info()

    def _need(self) -> AsyncLockbox:
        if self._box is None:
            raise UsageError("the archive is not unlocked")
        return self._box

    def _label(self, what: str) -> None:
        if self._source is not None:
            self._source.label = what

    # -- reading ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        box = self._need()
        info = box.info().to_json()
        slot = next((s for s in info["slots"] if s["slot_id"] == info["unlocked_slot"]), None)
        info.update(name=self._probe.get("name"), location=self._location, source=self._kind,
                    unlocked_with=slot["kind"] if slot else "")
        return info

    async def ls(self, path: str = "") -> dict[str, Any]:
        """A folder's children, folders first, then by name, as columns.

        Large folders are the point here (100,000 entries): the entries are not fully
        decoded (:func:`_entry_head` reads type, mtime, size and link target from the
        authenticated TOC values; file refs are skipped)."""
        box = self._need()
        p = normalize_path(path)
        self._label(f"list /{p}")
        pairs = await box.run(_children_flow(box.view, p))
        cut = len(p.encode()) + 1
        rows = []
        for key, value in pairs:
            try:
                name = bytes(key[cut:]).decode()
            except UnicodeDecodeError:
                raise FormatError("TOC key is not UTF-8") from None
            t, mtime_ns, size, target = _entry_head(value)
            rows.append((t != 2, name, t, mtime_ns, size, target))
        rows.sort()
        names, sizes, mtimes = [], [], []
        types = []
        targets: dict[str, str] = {}
        dirs = files = links = total = 0
        for i, (_, name, t, mtime_ns, size, target) in enumerate(rows):
            names.append(name)
            mtimes.append(mtime_ns // 1_000_000)
            sizes.append(size)
            if t == 2:
                types.append("d")
                dirs += 1
            elif t == 3:
                types.append("l")
                targets[str(i)] = target
                links += 1
            else:
                types.append("f")
                files += 1
                total += size
        return {"path": p, "names": names, "types": "".join(types), "sizes": sizes,
                "mtimes": mtimes, "targets": targets,
                "counts": {"dirs": dirs, "files": files, "symlinks": links, "bytes": total}}

    async def stat(self, path: str) -> dict[str, Any]:
        box = self._need()
        self._label(f"stat /{normalize_path(path)}")
        return (await box.stat(path)).to_json()

    async def _file(self, box: AsyncLockbox, p: str) -> Entry:
        e = await box.run(box.view.stat_flow(p))
        if e.type != EntryType.FILE:
            raise UsageError(f"not a file: {p}")
        return e

    async def _iter_file(self, box: AsyncLockbox, p: str, e: Entry,
                         keep: bool) -> AsyncIterator[memoryview]:
        """A whole file, checked against its content hash at the end (``FileReadPlan``):
        chunks already in the plaintext cache are not fetched again; those fetched are
        kept there when ``keep``."""
        plan = FileReadPlan(e, p, box.crypto)
        while (batch := plan.next_batch()) is not None:
            chunks = await box.run(_read_chunks_flow(box.view, [(p, e, *batch)], self._plain,
                                                      keep))
            for piece in plan.accept(chunks[0]):
                yield piece

    async def read(self, path: str, offset: int = 0, size: int = PREVIEW_LIMIT) -> bytes:
        """Up to ``size`` bytes at ``offset`` (previews). Each chunk is authenticated; a
        whole small file is also checked against its content hash. The chunks read are
        kept for a download of the same file (:class:`_PlainCache`)."""
        box = self._need()
        p = normalize_path(path)
        self._label(f"read /{p}")
        e = await self._file(box, p)
        if offset == 0 and size >= e.size:
            return b"".join([bytes(piece) async for piece in self._iter_file(box, p, e, True)])
        end = min(e.size, offset + max(0, size))
        if offset >= end:
            return b""
        cs = e.chunk_size
        first, stop = offset // cs, (end - 1) // cs + 1
        chunks = (await box.run(_read_chunks_flow(box.view, [(p, e, first, stop)],
                                                   self._plain, True)))[0]
        data = b"".join(bytes(c.data) for c in chunks)
        base = first * cs
        return data[offset - base:end - base]

    # -- downloads ----------------------------------------------------------------------

    def _add_stream(self, stream: _Stream) -> dict[str, Any]:
        handle = self._next_handle
        self._next_handle += 1
        self._streams[handle] = stream
        return {"handle": handle, "size": stream.size, "name": stream.name}

    async def stream_open(self, path: str) -> dict[str, Any]:
        """Start reading a whole file (then :meth:`stream_next` until it returns b"")."""
        box = self._need()
        p = normalize_path(path)
        self._label(f"read /{p}")
        e = await self._file(box, p)

        async def pieces() -> AsyncIterator[bytes]:
            async for piece in self._iter_file(box, p, e, e.size <= PLAIN_CACHE_FILE_MAX):
                yield bytes(piece)

        stream = _Stream(pieces(), e.size, p.rsplit("/", 1)[-1])
        stream.current = p
        return self._add_stream(stream)

    async def zip_open(self, path: str = "") -> dict[str, Any]:
        """Start writing a folder as a .zip (STORED, zip64 where needed, data descriptors).
        Symlinks whose target is absolute or leads outside the folder (resolved through
        the zip's other links: :func:`lockbox.extract.link_escape`) are left out and
        listed in ``dropped_links`` (``{path, target, reason}``)."""
        box = self._need()
        p = normalize_path(path)
        self._label(f"walk /{p}")
        walked = await box.run(box.view.walk_flow(p))
        if p and len(walked) == 1 and walked[0][0] == p and not walked[0][1].is_dir:
            raise UsageError(f"not a folder: {p}")
        items = [(q, e) for q, e in walked if q != p]
        del walked
        prefix = f"{p}/" if p else ""
        unsafe = _unsafe_zip_links([entry_info(q, e) for q, e in items], prefix)
        items = [(q, e) for q, e in items if q not in unsafe]
        total = sum(e.size for _, e in items if e.type == EntryType.FILE)
        base = (p.rsplit("/", 1)[-1] if p else (self._probe.get("name") or "archive"))
        base = base[:-5] if base.endswith(".lbox") else base
        # Rough size: content + local header, descriptor and central record per entry.
        estimate = total + sum(2 * len(q.encode()) + 150 for q, _ in items) + 100
        stream = _Stream(_empty(), estimate, base + ".zip")
        stream.pieces = self._zip_pieces(box, items, prefix, base, stream)
        out = self._add_stream(stream)
        # Symlinks left out of the zip (absolute, or leading outside the folder): the
        # page tells the user, one line each.
        out["dropped_links"] = [{"path": path, "target": target, "reason": reason}
                                for path, (target, reason) in unsafe.items()]
        return out

    async def _zip_pieces(self, box: AsyncLockbox, items: list[tuple[str, Entry]],
                          prefix: str, base: str,
                          stream: _Stream | None = None) -> AsyncIterator[bytes]:
        """The zip of ``items`` (archive path, entry), piece by piece. Small files are
        fetched many at a time (:func:`_file_batches`: one round trip per batch, not per
        file), larger ones streamed alone; each is checked against its content hash before
        its last bytes go out. Modes are masked like an extraction's
        (:func:`lockbox.extract.safe_mode`: no setuid, setgid, sticky or group/other
        write)."""
        sink = _ZipSink()
        zf = zipfile.ZipFile(sink, "w",  # type: ignore[call-overload]
                             compression=zipfile.ZIP_STORED)
        ready: dict[int, list[ChunkData]] = {}  # prefetched small files, by item index
        for i, (path, e) in enumerate(items):
            rel = path[len(prefix):] if prefix and path.startswith(prefix) else path
            name = f"{base}/{rel}"
            if stream is not None:
                stream.current = path
            if e.type == EntryType.DIR:
                zi = zipfile.ZipInfo(name + "/", _zip_time(e.mtime_ns))
                zi.create_system = 3
                zi.external_attr = (0o40000 | safe_mode(EntryType.DIR, e.mode)) << 16 | 0x10
                zf.writestr(zi, b"")
            elif e.type == EntryType.SYMLINK:
                zi = zipfile.ZipInfo(name, _zip_time(e.mtime_ns))
                zi.create_system = 3
                zi.external_attr = (0o120000 | 0o777) << 16
                zf.writestr(zi, e.target.encode())
            else:
                zi = zipfile.ZipInfo(name, _zip_time(e.mtime_ns))
                zi.create_system = 3
                zi.external_attr = (0o100000 | safe_mode(EntryType.FILE, e.mode)) << 16
                zi.compress_type = zipfile.ZIP_STORED
                zi.file_size = e.size
                if e.size <= ZIP_SMALL_FILE and i not in ready:
                    batch = _file_batches(items, i)
                    self._label(f"zip {len(batch)} file{'s' if len(batch) > 1 else ''} "
                                f"from /{path}")
                    asks = [(items[k][0], items[k][1], 0, items[k][1].chunks) for k in batch]
                    got = await box.run(_read_chunks_flow(box.view, asks, self._plain,
                                                           False))
                    ready.update(zip(batch, got))
                with zf.open(zi, "w", force_zip64=e.size > 0xFFFF0000) as out:
                    if i in ready:
                        plan = FileReadPlan(e, path, box.crypto)
                        try:
                            pieces = plan.accept(ready.pop(i))
                        except LockboxError as exc:
                            raise _AtPath(exc, path) from exc
                        for piece in pieces:
                            out.write(piece)
                    else:
                        self._label(f"zip /{path}")
                        try:
                            async for piece in self._iter_file(box, path, e, False):
                                out.write(piece)
                                if sink.pending >= STREAM_PIECE:
                                    yield sink.take()
                        except LockboxError as exc:
                            raise _AtPath(exc, path) from exc
            if sink.pending >= STREAM_PIECE:
                yield sink.take()
        zf.close()
        yield sink.take()

    async def stream_next(self, handle: int) -> bytes:
        """The next piece of a download (about 1 MiB); b"" at the end (handle closed)."""
        stream = self._streams.get(handle)
        if stream is None:
            raise UsageError("this download was closed")
        out: list[bytes] = []
        size = 0
        try:
            while size < STREAM_PIECE:
                try:
                    piece = await stream.pieces.__anext__()
                except StopAsyncIteration:
                    break
                if piece:
                    out.append(piece)
                    size += len(piece)
        except BaseException as exc:
            await self.stream_close(handle)
            if isinstance(exc, _AtPath):
                raise
            if isinstance(exc, LockboxError):
                raise _AtPath(exc, stream.current) from exc
            raise
        if not out:
            await self.stream_close(handle)
            return b""
        stream.sent += size
        return b"".join(out)

    async def stream_close(self, handle: int) -> bool:
        stream = self._streams.pop(handle, None)
        if stream is None:
            return False
        aclose = getattr(stream.pieces, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                pass
        return True

    # -- env -----------------------------------------------------------------------------

    async def env(self) -> list[dict[str, Any]]:
        """Env names and value sizes (values stay in the worker until revealed)."""
        box = self._need()
        self._label("env")
        return [{"name": k, "size": len(v)} for k, v in await box.env_items()]

    async def env_value(self, name: str) -> dict[str, Any]:
        box = self._need()
        self._label("env")
        value = await box.env_get(name)
        try:
            return {"name": name, "text": value.decode("utf-8"), "binary": False}
        except UnicodeDecodeError:
            return {"name": name, "text": value.hex(), "binary": True}

    # -- network and closing -----------------------------------------------------------

    def network(self) -> dict[str, Any]:
        rec = self._source
        if rec is None:
            return {"requests": 0, "bytes": 0, "round_trips": 0, "log": [], "size": None,
                    "reused": {"chunks": 0, "bytes": 0, "kept_bytes": 0}}
        return {"requests": rec.stats.requests, "bytes": rec.stats.bytes_read,
                "round_trips": rec.round_trips, "log": list(rec.log), "size": rec.size,
                "location": self._location, "source": self._kind,
                "reused": {"chunks": self._plain.hits, "bytes": self._plain.hit_bytes,
                           "kept_bytes": self._plain.size_bytes}}

    async def close(self) -> bool:
        for handle in list(self._streams):
            await self.stream_close(handle)
        self._plain = _PlainCache(self._plain.limit_bytes)  # counters start again too
        src, self._source, self._box = self._source, None, None
        if src is not None:
            try:
                await src.aclose()
            except Exception:
                pass
        return src is not None

    # JSON wrappers of the sync methods
    async def _info(self) -> dict[str, Any]:
        return self.info()

    async def _network(self) -> dict[str, Any]:
        return self.network()


_JSON_METHODS: dict[str, Any] = {
    "open_url": Session.open_url,
    "open_blob": Session.open_blob,
    "unlock": Session.unlock,
    "info": Session._info,
    "ls": Session.ls,
    "stat": Session.stat,
    "stream_open": Session.stream_open,
    "zip_open": Session.zip_open,
    "stream_close": Session.stream_close,
    "env": Session.env,
    "env_value": Session.env_value,
    "network": Session._network,
    "close": Session.close,
}

_BINARY_METHODS: dict[str, Any] = {
    "read": Session.read,
    "stream_next": Session.stream_next,
}
