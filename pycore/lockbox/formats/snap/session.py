"""A snapdir store + snapshot id as an archive, behind the format-neutral protocol.

``lockbox.open("file:///srv/store#id=<hex64>")`` (or ``https://host/store/#id=...``)
opens snapshot ``id`` of the store: the listing comes from the manifest, a file's bytes
from its object, fetched by id.

How it fits the sans-I/O protocol: a store is many files, a flow reads byte ranges of
one source. :class:`~lockbox.formats.snap.store.StoreSource` is that source: its address
space gives every store file a slot of 2**40 bytes (slot 0 the manifest, then each
object the session asks for, :class:`~lockbox.formats.snap.store.ObjectSpace`), and a
range is read from the file of its slot (``pread`` of a local store, a GET of an HTTP
one). The flows below therefore run under the ordinary drivers and facades (sync, async,
the browser's XHR), and ``ls``/``cat``/``extract``/``convert`` work unchanged.

Integrity: the manifest must hash to the id. An object of up to
:data:`WHOLE_OBJECT_SIZE` bytes is fetched whole (one round trip) and its BLAKE3 checked
before any byte of it is returned; verified objects are kept in a bounded LRU
(:data:`OBJECT_CACHE_SIZE`). A larger object is read in windows of
:data:`WINDOW_SIZE`: ``stream_flow`` hands the pieces on as they come and checks the hash
before the last one (the protocol's rule: a consumer that commits only after the flow
returns never commits bad bytes), ``read_flow`` reads the whole object, keeps only the
range asked for and returns it once the hash checked out. A bad or missing object fails
the reads of its files only (IntegrityError / NotFoundError naming the file and the
object); the listing and every other file still open.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from ...drivers import Flow, Read
from ...errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LimitExceededError,
    NotFoundError,
    StorageError,
    UsageError,
)
from ...info import EntryInfo
from ...protocol import CheckReport, Emit, OpenOptions, SessionInfo
from ...sources.base import AsyncOverSync
from .manifest import MAX_MANIFEST_SIZE, Manifest, ManifestEntry, new_hasher, parse_manifest
from .ops import check_manifest_tree
from .store import ObjectSpace, StoreSource, open_store, parse_snap_location

__all__ = ["SnapFormat", "SnapSession", "open_location", "LocationOpen", "WHOLE_OBJECT_SIZE",
           "WINDOW_SIZE", "OBJECT_CACHE_SIZE", "EMIT_BATCH"]

WHOLE_OBJECT_SIZE = 16 * 1024 * 1024
"""Objects up to this size are fetched whole and verified before any byte is released."""

WINDOW_SIZE = 4 * 1024 * 1024
"""Bytes per read of a larger object."""

OBJECT_CACHE_SIZE = 32 * 1024 * 1024
"""Verified object bytes kept for later reads (an LRU)."""

EMIT_BATCH = 1024


def _query(path: str) -> str:
    if "\x00" in path:
        raise InvalidPathError(f"path contains NUL: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPathError(f"path escapes the archive root: {path!r}")
    return "/".join(parts)


_LINK_PERMS = 0o777
"""The PERMS snapdir records for a followed symlink (its lstat mode)."""


class _VerifiedCache:
    """Verified objects by id, at most ``budget`` bytes in all."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, hex_id: str) -> bytes | None:
        data = self._items.get(hex_id)
        if data is not None:
            self._items.move_to_end(hex_id)
        return data

    def put(self, hex_id: str, data: bytes) -> None:
        if len(data) > self.budget or hex_id in self._items:
            return
        self._items[hex_id] = data
        self.size += len(data)
        while self.size > self.budget:
            _, old = self._items.popitem(last=False)
            self.size -= len(old)


class SnapSession:
    """One snapshot of a store, opened (a :class:`~lockbox.protocol.FormatSession`)."""

    def __init__(self, manifest: Manifest, space: ObjectSpace, store: str = "", *,
                 whole_object_size: int = WHOLE_OBJECT_SIZE, window_size: int = WINDOW_SIZE,
                 cache_size: int = OBJECT_CACHE_SIZE) -> None:
        self.manifest = manifest
        self.space = space
        self.store = store
        self.snapshot_id = space.snapshot
        self.whole_object_size = whole_object_size
        self.window_size = window_size
        self._cache = _VerifiedCache(cache_size)
        self._true_sizes: dict[str, int] = {}  # object id -> length (PERMS-777 entries)
        self._children: dict[str, list[str]] = {}
        for e in manifest.entries:
            if e.rel_path:
                parent = e.rel_path.rpartition("/")[0]
                self._children.setdefault(parent, []).append(e.rel_path)
        for names in self._children.values():
            names.sort(key=lambda p: p.rpartition("/")[2])

    # -- entries
    def _info(self, e: ManifestEntry) -> EntryInfo:
        if e.kind == "D":
            return EntryInfo(e.rel_path, "dir", e.perms, 0)
        return EntryInfo(e.rel_path, "file", e.perms, 0, size=e.size, stored_size=e.size,
                         blake3=e.checksum)

    def _entry(self, path: str) -> ManifestEntry:
        q = _query(path)
        e = self.manifest.get(q)
        if e is None:
            if not q:   # a manifest without its root line: the root is implied
                return ManifestEntry("D", 0o755, "", 0, "./")
            raise NotFoundError(f"no such file or directory in the snapshot: {path}")
        return e

    def _file(self, path: str) -> ManifestEntry:
        e = self._entry(path)
        if e.kind != "F":
            raise InvalidPathError(f"not a file: {e.rel_path or '/'}")
        return e

    def info(self) -> SessionInfo:
        m = self.manifest
        return SessionInfo("snap", False, None, entries=len(m), file_bytes=m.file_bytes,
                           details={"snapshot_id": self.snapshot_id, "store": self.store,
                                    "objects": len(m.object_ids())})

    # A followed symlink is recorded with its *link's* lstat: PERMS 777 and SIZE the length
    # of the link's target text, while its object is the target's content (snapdir does
    # this; the ids depend on it). Only such an entry can have a SIZE that is not its
    # object's length, so for a file entry with PERMS 777 the true size is taken from the
    # object itself (fetched and verified once, then cached) before it is reported.
    def _sized_flow(self, e: ManifestEntry) -> Flow[EntryInfo]:
        info = self._info(e)
        if e.kind != "F" or e.perms != _LINK_PERMS:
            return info
        size = self._true_sizes.get(e.checksum)
        if size is None:
            whole, first = yield from self._whole_flow(e)
            if whole is not None:
                size = len(whole)
            else:
                size = yield from self._large_flow(e, first, lambda data, offset: None)
            self._true_sizes[e.checksum] = size
        if size == e.size:
            return info
        return dataclasses.replace(info, size=size, stored_size=size)

    def stat_flow(self, path: str) -> Flow[EntryInfo]:
        return (yield from self._sized_flow(self._entry(path)))

    def listdir_flow(self, path: str) -> Flow[list[EntryInfo]]:
        e = self._entry(path)
        if e.kind != "D":
            raise InvalidPathError(f"not a directory: {path}")
        out = []
        for child in self._children.get(e.rel_path, ()):
            c = self.manifest.get(child)
            assert c is not None
            out.append((yield from self._sized_flow(c)))
        return out

    def walk_flow(self, path: str, emit: Emit) -> Flow[None]:
        e = self._entry(path)
        if e.kind == "F":
            emit([(yield from self._sized_flow(e))])
            return None
        q = e.rel_path
        prefix = q + "/" if q else ""
        batch = [self._info(e)] if self.manifest.get(q) is not None else []
        # manifest order (by path bytes) puts every directory before its contents
        for entry in self.manifest.entries:
            rel = entry.rel_path
            if rel and rel.startswith(prefix) and rel != q:
                batch.append((yield from self._sized_flow(entry)))
                if len(batch) >= EMIT_BATCH:
                    emit(batch)
                    batch = []
        if batch:
            emit(batch)
        return None

    # -- objects
    def _name(self, e: ManifestEntry) -> str:
        return f"{e.rel_path} (object {e.checksum})"

    def _fetch_flow(self, e: ManifestEntry, offset: int) -> Flow[bytes]:
        """One window of the object from ``offset``; NotFoundError names the file."""
        size = self.whole_object_size + 1 if offset == 0 else self.window_size
        try:
            blobs = yield Read((self.space.object_range(e.checksum, offset, size),))
        except NotFoundError:
            raise NotFoundError(f"{self._name(e)}: the object is not in the store") from None
        except StorageError as err:
            raise StorageError(f"{self._name(e)}: {err}") from None
        return bytes(blobs[0])

    def _whole_flow(self, e: ManifestEntry) -> Flow[tuple[bytes | None, bytes]]:
        """``(the whole object, verified, b"")``, or ``(None, its first window)`` when it
        is too large for one piece."""
        cached = self._cache.get(e.checksum)
        if cached is not None:
            return cached, b""
        first = yield from self._fetch_flow(e, 0)
        if len(first) <= self.whole_object_size:
            self._check(e, first)
            self._cache.put(e.checksum, first)
            return first, b""
        return None, first

    def _check(self, e: ManifestEntry, data: bytes) -> None:
        h = new_hasher()
        h.update(data)
        self._verdict(e, h.digest().hex(), len(data))

    def _verdict(self, e: ManifestEntry, actual: str, size: int) -> None:
        if actual != e.checksum:
            raise IntegrityError(f"{self._name(e)}: the object in the store is damaged "
                                 f"(its {size} bytes hash to {actual})")

    def _large_flow(self, e: ManifestEntry, data: bytes,
                    piece: Callable[[bytes, int], None]) -> Flow[int]:
        """Read a large object window by window (``data``: the first, already read),
        handing each window but the last to ``piece(data, offset)`` before the hash is
        known; the last one after the hash checked out. Returns the size."""
        hasher = new_hasher()
        offset = 0
        while True:
            hasher.update(data)
            nxt = yield from self._fetch_flow(e, offset + len(data))
            if not nxt:
                self._verdict(e, hasher.digest().hex(), offset + len(data))
                piece(data, offset)
                return offset + len(data)
            piece(data, offset)
            offset += len(data)
            data = nxt

    def read_flow(self, path: str, offset: int, size: int) -> Flow[bytes]:
        if offset < 0 or size < 0:
            raise UsageError(f"invalid read of {size} bytes at offset {offset}")
        e = self._file(path)
        whole, first = yield from self._whole_flow(e)
        if whole is not None:
            return whole[offset: offset + size]
        kept = bytearray()
        end = offset + size

        def keep(data: bytes, at: int) -> None:
            lo, hi = max(offset, at), min(end, at + len(data))
            if lo < hi:
                kept.extend(data[lo - at: hi - at])

        yield from self._large_flow(e, first, keep)
        return bytes(kept)

    def stream_flow(self, path: str, sink: Callable[[bytes | memoryview], None]
                    ) -> Flow[int]:
        """The whole file to ``sink``: an object up to :data:`WHOLE_OBJECT_SIZE` only
        once verified; a larger one window by window, its hash checked before the last."""
        e = self._file(path)
        whole, first = yield from self._whole_flow(e)
        if whole is not None:
            view = memoryview(whole)
            for i in range(0, len(whole), self.window_size):
                sink(view[i: i + self.window_size])
            return len(whole)
        return (yield from self._large_flow(e, first, lambda data, _at: sink(data)))

    def verify_flow(self, progress: Callable[[str, int], None] | None = None
                    ) -> Flow[CheckReport]:
        """The manifest's consistency (directory checksums and sizes), then every object,
        re-hashed in full (window by window: bounded memory). Problems are collected."""
        report = CheckReport(entries_checked=len(self.manifest))
        report.problems += check_manifest_tree(self.manifest)
        seen: dict[str, ManifestEntry] = {}
        for e in self.manifest.files():
            if e.checksum in seen:
                continue
            seen[e.checksum] = e
            hasher = new_hasher()
            size = 0
            offset = 0
            try:
                while True:
                    window = self.whole_object_size + 1 if offset == 0 else self.window_size
                    try:
                        blobs = yield Read((self.space.object_range(e.checksum, offset,
                                                                    window),))
                    except NotFoundError:
                        report.problems.append(f"{self._name(e)}: the object is not in the "
                                               f"store")
                        break
                    data = blobs[0]
                    if not data:
                        self._verdict(e, hasher.digest().hex(), size)
                        report.bytes_checked += size
                        if progress is not None:
                            progress(e.rel_path, size)
                        break
                    hasher.update(data)
                    size += len(data)
                    offset += len(data)
                    if offset == len(data) and len(data) <= self.whole_object_size:
                        # a small object came whole: the empty read would be wasted
                        self._verdict(e, hasher.digest().hex(), size)
                        report.bytes_checked += size
                        if progress is not None:
                            progress(e.rel_path, size)
                        break
            except IntegrityError as bad:
                report.problems.append(str(bad))
            except StorageError as unreadable:
                report.problems.append(f"{self._name(e)}: {unreadable}")
        return report


class SnapFormat:
    """A snapdir snapshot in a store (:class:`lockbox.protocol.FormatSpec`). Never
    detected by its bytes: it is opened by a location ``STORE_URI#id=ID``
    (:func:`open_location`), which gives ``open_flow`` its ``snap_space`` setting."""

    name: ClassVar[str] = "snap"
    title: ClassVar[str] = "snapdir snapshot"
    extensions: ClassVar[tuple[str, ...]] = ()
    probe_size: ClassVar[int] = 0
    encrypted: ClassVar[bool] = False
    writable: ClassVar[bool] = False

    @staticmethod
    def probe(head: bytes) -> bool:
        return False

    def open_flow(self, size: int | None, options: OpenOptions) -> Flow[SnapSession]:
        """Read the manifest (slot 0 of the store source), check that it hashes to the
        snapshot id and parse it."""
        space = options.settings.get("snap_space")
        if not isinstance(space, ObjectSpace):
            raise UsageError("a snapdir snapshot is opened by its location: "
                             "STORE_URI#id=ID (e.g. file:///srv/store#id=<64 hex digits>)")
        store = str(options.settings.get("snap_store", ""))
        sid = space.snapshot
        try:
            blobs = yield Read((space.manifest_range(),))
        except NotFoundError:
            raise NotFoundError(f"no snapshot {sid} in the store {store}".rstrip()) from None
        raw = bytes(blobs[0])
        if len(raw) > MAX_MANIFEST_SIZE:
            raise LimitExceededError(f"the manifest of {sid} is over {MAX_MANIFEST_SIZE} bytes")
        try:
            manifest = parse_manifest(raw)
        except FormatError as e:
            raise FormatError(f"snapshot {sid}: {e}") from None
        if manifest.id != sid:
            raise IntegrityError(f"the manifest of snapshot {sid} in the store is damaged "
                                 f"(it hashes to {manifest.id})")
        settings = options.settings
        return SnapSession(
            manifest, space, store,
            whole_object_size=int(settings.get("snap_whole_object_size", WHOLE_OBJECT_SIZE)),
            window_size=int(settings.get("snap_window_size", WINDOW_SIZE)),
            cache_size=int(settings.get("snap_cache_size", OBJECT_CACHE_SIZE)))
        yield  # pragma: no cover


class LocationOpen(NamedTuple):
    """What :func:`open_location` gives the facade: the source to drive the flows
    against, the format's name and the settings ``open_flow`` needs."""

    source: Any          # a StoreSource, or an async source over it
    format: str
    settings: dict[str, Any]


def open_location(location: str, *, asynchronous: bool = False) -> LocationOpen | None:
    """Open the store of a location ``STORE_URI#id=ID``; None for another location."""
    parsed = parse_snap_location(location)
    if parsed is None:
        return None
    uri, sid = parsed
    source = StoreSource(open_store(uri), sid)
    settings = {"snap_space": source.space, "snap_store": str(uri),
                "archive_name": f"snapshot-{sid[:12]}"}
    return LocationOpen(AsyncOverSync(source) if asynchronous else source, "snap", settings)
