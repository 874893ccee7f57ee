"""snapdir stores: the layout, store locations, and reading/writing them.

Layout (the same on disk and over HTTP)::

    .objects/<h[0:3]>/<h[3:6]>/<h[6:9]>/<h[9:]>     a file's bytes, named by BLAKE3
    .manifests/<h[0:3]>/<h[3:6]>/<h[6:9]>/<h[9:]>   a manifest, named by snapshot id

:class:`FileStore` reads and writes a local store: every file is written to a temp
sibling (``<name>.<pid>.<n>.tmp``) and renamed into place; an object is hashed while it
is written and renamed only if it is what its name says; the objects filed, and every
directory from their shards up to the store root, are made durable by one barrier (a
``syncfs`` where sound, else parallel fsyncs) before a manifest, itself fsynced, renamed
and its name made durable the same way -- the manifest last (snapdir's ``fsync.rs``
discipline, closing its gap of the directory entries).
:class:`HttpStore` reads a store on any static host with plain GETs (404 = absent).
:func:`parse_snap_location` recognises ``STORE_URI#id=ID`` and :class:`StoreSource`
exposes a store's files as one range source for the sans-I/O sessions (``session.py``).

Importable under Pyodide: httpx and the browser's ``js`` are imported only when used.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

from ...crypto.base import Hasher
from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    NotFoundError,
    StorageError,
    UsageError,
)
from ...platform import IS_BROWSER
from ...ranges import ByteRange
from ...sources.base import SourceStats, SyncSourceBase, closed_error
from .manifest import (
    HASH_CHUNK_SIZE,
    MAX_MANIFEST_SIZE,
    Manifest,
    is_hex64,
    new_hasher,
    parse_manifest,
    render_manifest,
    snapshot_id,
)

__all__ = [
    "OBJECTS_DIR", "MANIFESTS_DIR", "object_path", "manifest_path", "StoreUri",
    "parse_snap_location", "snap_location", "Store", "FileStore", "HttpStore", "ObjectWriter",
    "open_store", "StoreSource", "ObjectSpace", "SLOT_BITS", "MAX_OBJECT_SIZE",
    "check_id", "NoStoreError", "SYNC_MODES", "SYNC_WORKERS", "SYNCFS_FILESYSTEMS",
    "SYNCFS_MIN_KERNEL", "syncfs_unavailable",
]

OBJECTS_DIR = ".objects"
MANIFESTS_DIR = ".manifests"

SLOT_BITS = 40
"""A :class:`StoreSource` gives each store file 2**40 bytes of its address space."""

MAX_OBJECT_SIZE = (1 << SLOT_BITS) - 1
"""The largest object a :class:`StoreSource` reads (1 TiB - 1)."""

_counter = itertools.count()
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class NoStoreError(NotFoundError):
    """The store itself does not exist (its directory is missing)."""


def check_id(hex_id: str, what: str = "id") -> str:
    """``hex_id`` if it is 64 lowercase hex digits, else UsageError."""
    if not is_hex64(hex_id):
        raise UsageError(f"not a snapdir {what} (64 lowercase hex digits): {hex_id!r}")
    return hex_id


def _sharded(prefix: str, hex_id: str) -> str:
    check_id(hex_id)
    return f"{prefix}/{hex_id[0:3]}/{hex_id[3:6]}/{hex_id[6:9]}/{hex_id[9:]}"


def object_path(hex_id: str) -> str:
    """``.objects/<h[0:3]>/<h[3:6]>/<h[6:9]>/<h[9:]>`` (store-relative, ``/``-separated)."""
    return _sharded(OBJECTS_DIR, hex_id)


def manifest_path(hex_id: str) -> str:
    """``.manifests/<h[0:3]>/<h[3:6]>/<h[6:9]>/<h[9:]>``."""
    return _sharded(MANIFESTS_DIR, hex_id)


# ------------------------------------------------------------------------- locations

_FILE_PREFIX = re.compile(r"file:/*(localhost/?)?", re.IGNORECASE)
_SNAP_LOCATION = re.compile(r"(?P<store>(?:file|https?)://[^#]*)#id=(?P<id>[^&]*)\Z",
                            re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class StoreUri:
    """A store location: ``kind`` ``"file"`` (``root`` a local directory) or ``"http"``
    (``root`` a base URL ending in ``/``)."""

    kind: str
    root: str

    @classmethod
    def parse(cls, uri: str | os.PathLike[str]) -> StoreUri:
        """``file:///dir`` (and ``file:/dir``, ``file://localhost/dir``, as snapdir),
        ``http(s)://host/path``, or a plain local path. Other schemes: UsageError."""
        s = os.fspath(uri)
        if not s:
            raise UsageError("empty store location")
        scheme = s.split(":", 1)[0].lower() if ":" in s else ""
        if scheme in ("http", "https"):
            parts = urlsplit(s)
            if not parts.hostname:
                raise UsageError(f"not a store URL (no host): {s}")
            if parts.query or parts.fragment:
                raise UsageError(f"a store URL has no query or fragment: {s}")
            base = s if s.endswith("/") else s + "/"
            return cls("http", base)
        if scheme == "file":
            m = _FILE_PREFIX.match(s)
            assert m is not None
            path = "/" + unquote(s[m.end():])
            return cls("file", path.rstrip("/") or "/")
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]+", scheme) and s[len(scheme):].startswith("://"):
            raise UsageError(f"unsupported store scheme {scheme}:// (file://, http://, "
                             f"https:// or a local path)")
        return cls("file", os.path.abspath(s))

    def __str__(self) -> str:
        if self.kind == "file":
            return "file://" + quote(self.root)
        return self.root


def parse_snap_location(location: str) -> tuple[StoreUri, str] | None:
    """``(store, snapshot id)`` for a location ``STORE_URI#id=ID`` (the scheme is
    required: ``file://``, ``http://`` or ``https://``), None for any other location.
    UsageError when it has that form but the id is not 64 lowercase hex digits."""
    if not isinstance(location, str):
        return None
    m = _SNAP_LOCATION.match(location)
    if m is None:
        return None
    return StoreUri.parse(m.group("store")), check_id(m.group("id"), "snapshot id")


def snap_location(store: StoreUri | str, snapshot: str) -> str:
    """The location ``STORE_URI#id=ID`` (inverse of :func:`parse_snap_location`)."""
    uri = store if isinstance(store, StoreUri) else StoreUri.parse(store)
    return f"{uri}#id={check_id(snapshot, 'snapshot id')}"


# ------------------------------------------------------------------------- stores


@runtime_checkable
class Store(Protocol):
    """What every store offers for reading (FileStore adds writing)."""

    uri: StoreUri

    def has_object(self, hex_id: str) -> bool: ...

    def has_manifest(self, hex_id: str) -> bool: ...

    def get_object(self, hex_id: str) -> bytes:
        """The object's bytes, verified (IntegrityError, NotFoundError)."""
        ...

    def iter_object(self, hex_id: str) -> Iterator[bytes]:
        """The object's bytes piece by piece; IntegrityError instead of the last piece
        when they do not hash to ``hex_id``."""
        ...

    def get_manifest_bytes(self, hex_id: str) -> bytes: ...

    def get_manifest(self, hex_id: str) -> Manifest: ...

    def read_range(self, rel_path: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a store file from ``offset`` (short at its end);
        NotFoundError if the file is absent."""
        ...

    def close(self) -> None: ...


def _verified_manifest(raw: bytes, hex_id: str, where: str) -> Manifest:
    """Parse a stored manifest and check that it is the snapshot ``hex_id`` (the hash of
    its canonical rendering, as snapdir checks: comments and order do not count)."""
    try:
        manifest = parse_manifest(raw)
    except FormatError as e:
        raise FormatError(f"{where}: {e}") from None
    actual = manifest.id
    if actual != hex_id:
        raise IntegrityError(f"{where}: the manifest hashes to {actual}, not {hex_id}")
    return manifest


class _StoreBase:
    uri: StoreUri

    def read_range(self, rel_path: str, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def _where(self, rel_path: str) -> str:
        return f"{self.uri}/{rel_path}" if self.uri.kind == "file" else self.uri.root + rel_path

    def iter_object(self, hex_id: str) -> Iterator[bytes]:
        rel = object_path(hex_id)
        hasher = new_hasher()
        offset = 0
        held: bytes | None = None
        while True:
            piece = self.read_range(rel, offset, HASH_CHUNK_SIZE)
            if held is not None and piece:
                yield held
            if not piece:
                break
            hasher.update(piece)
            offset += len(piece)
            held = piece
            if len(piece) < HASH_CHUNK_SIZE:
                break
        actual = hasher.digest().hex()
        if actual != hex_id:
            raise IntegrityError(f"object {hex_id} ({self._where(rel)}) is damaged: its "
                                 f"bytes hash to {actual}")
        if held is not None:
            yield held

    def get_object(self, hex_id: str) -> bytes:
        return b"".join(self.iter_object(hex_id))

    def get_manifest_bytes(self, hex_id: str) -> bytes:
        rel = manifest_path(hex_id)
        try:
            raw = self.read_range(rel, 0, MAX_MANIFEST_SIZE + 1)
        except NoStoreError:
            raise
        except NotFoundError:
            raise NotFoundError(f"no snapshot {hex_id} in the store {self.uri}") from None
        if len(raw) > MAX_MANIFEST_SIZE:
            raise LimitExceededError(f"{self._where(rel)}: the manifest is over "
                                     f"{MAX_MANIFEST_SIZE} bytes")
        return raw

    def get_manifest(self, hex_id: str) -> Manifest:
        return _verified_manifest(self.get_manifest_bytes(hex_id), hex_id,
                                  self._where(manifest_path(hex_id)))


class ObjectWriter:
    """One object being filed into a :class:`FileStore`: :meth:`write` the bytes (they
    go to a temp sibling and through BLAKE3), then :meth:`commit` (renamed into place if
    they hash to the id, IntegrityError and the temp file removed otherwise) or
    :meth:`abort`. Use as a context manager: an exception aborts.

    ``hashed_by_caller``: the caller hashes the same bytes itself and commits only once
    they matched the id (SNAPPACK's parser does, record by record: ``FileSink``), so the
    writer does not hash them a second time; the size is still checked. Every other
    caller leaves it False: nothing is renamed into place unverified."""

    def __init__(self, store: FileStore, hex_id: str, expected_size: int | None = None, *,
                 hashed_by_caller: bool = False) -> None:
        self.store = store
        self.hex_id = check_id(hex_id, "object id")
        self.final = store.object_file(hex_id)
        self.expected_size = expected_size
        self.hashed_by_caller = hashed_by_caller
        self.size = 0
        self._hasher: Hasher | None = None if hashed_by_caller else new_hasher()
        directory = os.path.dirname(self.final)
        self.temp = os.path.join(directory, f"{os.path.basename(self.final)}."
                                            f"{os.getpid()}.{next(_counter)}.tmp")
        try:
            os.makedirs(directory, exist_ok=True)
            self._fd: int | None = os.open(
                self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
        except OSError as e:
            raise StorageError(f"cannot write into the store {store.uri}: "
                               f"{e.strerror or e}") from e

    def write(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._fd
        if fd is None:
            raise UsageError("write to a finished ObjectWriter")
        if self.expected_size is not None and self.size + len(data) > self.expected_size:
            self.abort()
            raise IntegrityError(f"object {self.hex_id}: more than the expected "
                                 f"{self.expected_size} bytes")
        if self._hasher is not None:
            self._hasher.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            self.abort()
            raise StorageError(f"cannot write {self.temp}: {e.strerror or e}") from e
        self.size += len(data)

    def commit(self) -> bool:
        """Verify and rename into place; True if filed, False if the store already had
        it (the temp file is removed; the existing object is kept)."""
        fd = self._fd
        if fd is None:
            raise UsageError("commit of a finished ObjectWriter")
        self._fd = None
        try:
            os.close(fd)
        except OSError as e:
            self._remove_temp()
            raise StorageError(f"cannot write {self.temp}: {e.strerror or e}") from e
        if self.expected_size is not None and self.size != self.expected_size:
            self._remove_temp()
            raise IntegrityError(f"object {self.hex_id}: {self.size} bytes received, "
                                 f"{self.expected_size} expected; nothing filed")
        if self._hasher is not None:
            actual = self._hasher.digest().hex()
            if actual != self.hex_id:
                self._remove_temp()
                raise IntegrityError(f"object {self.hex_id}: the {self.size} bytes "
                                     f"received hash to {actual}; nothing filed")
        try:
            if os.path.exists(self.final):
                self._remove_temp()
                return False
            os.rename(self.temp, self.final)
        except OSError as e:
            self._remove_temp()
            raise StorageError(f"cannot file {self.final}: {e.strerror or e}") from e
        self.store._filed(self.final)
        return True

    def abort(self) -> None:
        """Drop the temp file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        self._remove_temp()

    def _remove_temp(self) -> None:
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"cannot remove {self.temp}: {e.strerror or e}") from e

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._fd is not None:
            self.abort()


class FileStore(_StoreBase):
    """A store in a local directory (read and write). ``create``: make the directory if
    it is missing; otherwise a missing directory is a NotFoundError on first use.

    ``sync``: how :meth:`barrier` makes filed objects durable. ``"auto"`` (the default):
    one ``syncfs`` of the store's filesystem where that is known to be sound (Linux 5.8
    or later, whose syncfs reports write-back errors, on ext2/3/4, XFS, Btrfs, F2FS or
    tmpfs), else ``"fsync"``: every object and every directory from its shard up to the
    store root fsynced, :data:`SYNC_WORKERS` at a time. ``"syncfs"`` insists on syncfs
    (UsageError where it is not available). docs/formats/SNAPDIR.md argues the choice."""

    def __init__(self, root: str | os.PathLike[str] | StoreUri, *, create: bool = False,
                 sync: str = "auto") -> None:
        uri = root if isinstance(root, StoreUri) else StoreUri.parse(root)
        if uri.kind != "file":
            raise UsageError(f"not a local store: {uri}")
        if sync not in SYNC_MODES:
            raise UsageError(f"unknown sync mode {sync!r}: expected one of "
                             f"{', '.join(SYNC_MODES)}")
        self.uri = uri
        self.root = uri.root
        self._sync = sync
        self._sync_method: str | None = None
        self._pending: list[str] = []
        self._created_parents: list[str] = []  # parents of directories create= made
        self._unsynced = True  # the first syncfs barrier runs even with nothing pending
        self._sync_failure: str | None = None
        self._lock = threading.Lock()
        if create:
            self._created_parents = _make_dirs(self.root, f"cannot create the store "
                                                          f"{self.root}")

    def __repr__(self) -> str:
        return f"FileStore({self.root!r})"

    # -- paths
    def object_file(self, hex_id: str) -> str:
        return os.path.join(self.root, *object_path(hex_id).split("/"))

    def manifest_file(self, hex_id: str) -> str:
        return os.path.join(self.root, *manifest_path(hex_id).split("/"))

    # -- reading
    def has_object(self, hex_id: str) -> bool:
        return os.path.isfile(self.object_file(hex_id))

    def has_manifest(self, hex_id: str) -> bool:
        return os.path.isfile(self.manifest_file(hex_id))

    def object_size(self, hex_id: str) -> int | None:
        try:
            return os.stat(self.object_file(hex_id)).st_size
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read the store {self.root}: {e.strerror or e}") from e

    def read_range(self, rel_path: str, offset: int, size: int) -> bytes:
        path = os.path.join(self.root, *rel_path.split("/"))
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            if not os.path.isdir(self.root):
                raise NoStoreError(f"no store at {self.root}") from None
            raise NotFoundError(f"not in the store: {rel_path}") from None
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror or e}") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError(f"{path} is not a regular file")
            out = bytearray()
            while len(out) < size:
                chunk = os.pread(fd, min(size - len(out), 8 << 20), offset + len(out))
                if not chunk:
                    break
                out += chunk
            return bytes(out)
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror or e}") from e
        finally:
            os.close(fd)

    def list_manifest_ids(self) -> list[str]:
        """Every snapshot id with a manifest file in the store (sorted)."""
        top = os.path.join(self.root, MANIFESTS_DIR)
        ids = []
        for dirpath, _dirs, names in os.walk(top):
            rel = os.path.relpath(dirpath, top).split(os.sep)
            if len(rel) != 3:
                continue
            for name in names:
                candidate = "".join(rel) + name
                if is_hex64(candidate):
                    ids.append(candidate)
        return sorted(ids)

    # -- writing
    def object_writer(self, hex_id: str, expected_size: int | None = None, *,
                      hashed_by_caller: bool = False) -> ObjectWriter:
        """A writer that files one object (temp sibling, verified, renamed; see
        :class:`ObjectWriter` for ``hashed_by_caller``)."""
        return ObjectWriter(self, hex_id, expected_size, hashed_by_caller=hashed_by_caller)

    def put_object_stream(self, hex_id: str,
                          pieces: Iterable[bytes | bytearray | memoryview], *,
                          expected_size: int | None = None) -> bool:
        """File an object from its bytes; True if filed, False if it was already there
        (the bytes are read and checked all the same). IntegrityError (nothing filed)
        when they do not hash to ``hex_id``."""
        with self.object_writer(hex_id, expected_size) as w:
            for piece in pieces:
                w.write(piece)
            return w.commit()

    def put_object(self, data: bytes | bytearray | memoryview) -> str:
        """File ``data``; returns its object id."""
        from .manifest import object_id

        hex_id = object_id(data)
        self.put_object_stream(hex_id, [data])
        return hex_id

    def _filed(self, path: str) -> None:
        with self._lock:
            self._pending.append(path)
            self._unsynced = True

    @property
    def sync_method(self) -> str:
        """``"syncfs"`` or ``"fsync"``: how :meth:`barrier` syncs this store (decided
        once, on first use)."""
        if self._sync_method is None:
            reason = syncfs_unavailable(self.root)
            if self._sync == "syncfs" and reason is not None:
                raise UsageError(f"syncfs cannot make the store {self.root} durable: "
                                 f"{reason}")
            self._sync_method = "syncfs" if self._sync != "fsync" and reason is None \
                else "fsync"
        return self._sync_method

    def barrier(self) -> None:
        """Make every object filed since the last barrier durable, with the name that
        files it: its bytes, the directory it was renamed into, and every directory up to
        the store root (``os.makedirs`` may just have created them, and a new directory is
        only as durable as its entry in its parent), plus the directories ``create=``
        made above the root. ``syncfs`` does all of it in one call and also covers
        objects an earlier, killed receiver filed but never synced; the ``fsync`` method
        syncs those paths, :data:`SYNC_WORKERS` at a time (fsync releases the GIL, and a
        journaling filesystem commits concurrent fsyncs together). StorageError when the
        system reports a failure, and at every later barrier of this store object:
        nothing may be filed that relies on them."""
        method = self.sync_method  # decided before taking the list (it may refuse)
        if self._sync_failure is not None:
            raise StorageError(self._sync_failure)
        with self._lock:
            pending, self._pending = self._pending, []
            extra, self._created_parents = self._created_parents, []
            unsynced, self._unsynced = self._unsynced, False
        try:
            if method == "syncfs":
                if unsynced or extra:
                    _syncfs(self.root)
            elif pending or extra:
                _fsync_paths(list(dict.fromkeys(
                    pending + _directory_chains(pending, self.root) + extra)))
        except OSError as e:
            # A sync error may have dropped written data and is reported once only (a
            # second fsync or syncfs can succeed over the loss): this store object
            # files no manifest any more.
            self._sync_failure = (f"cannot sync the store {self.root}: {e.strerror or e}"
                                  f" (objects filed since the last good sync may be lost; "
                                  f"`lockbox snap verify` checks them)")
            raise StorageError(self._sync_failure) from e

    def put_manifest(self, manifest: Manifest | bytes, hex_id: str | None = None, *,
                     require_objects: bool = True) -> str:
        """File a manifest, last: the objects filed before are made durable first
        (:meth:`barrier`), then the manifest's canonical bytes go to a temp sibling,
        fsynced, renamed, and the directory fsynced. ``hex_id`` (if given) must be its
        id (IntegrityError). ``require_objects``: StorageError, nothing filed, when an
        object it lists is not in the store. Returns the snapshot id."""
        if not isinstance(manifest, Manifest):
            manifest = parse_manifest(manifest)
        data = render_manifest(manifest)
        actual = snapshot_id(data)
        if hex_id is not None and actual != hex_id:
            raise IntegrityError(f"the manifest hashes to {actual}, not {hex_id}")
        if require_objects:
            missing = [h for h in manifest.object_ids() if not self.has_object(h)]
            if missing:
                raise StorageError(f"{len(missing)} object(s) of snapshot {actual} are not "
                                   f"in the store {self.uri} (first: {missing[0]}); the "
                                   f"manifest is not filed")
        self.barrier()
        final = self.manifest_file(actual)
        if os.path.isfile(final):
            return actual
        directory = os.path.dirname(final)
        temp = os.path.join(directory, f"{os.path.basename(final)}.{os.getpid()}."
                                       f"{next(_counter)}.tmp")
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)  # never a torn manifest under its name
            finally:
                os.close(fd)
            os.rename(temp, final)
            # its name, and the shard directories makedirs may have made, up to the root
            if self.sync_method == "syncfs":
                _syncfs(self.root)
            else:
                for path in _directory_chains([final], self.root):
                    _fsync_path(path)
        except OSError as e:
            raise StorageError(f"cannot file the manifest {final}: {e.strerror or e}") from e
        finally:
            try:
                os.unlink(temp)
            except OSError:
                pass
        return actual

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------- durability

SYNC_MODES = ("auto", "syncfs", "fsync")

SYNC_WORKERS = 16
"""Fsyncs in flight at a barrier that syncs path by path (5,000 objects of 4 KiB in a
fresh store, ~18,000 paths on ext4: 4.6 s one after the other, 1.0-1.2 s 16 at a time, no
better with 32 or 64)."""

SYNCFS_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs"})
"""Filesystems whose ``syncfs`` writes back every dirty inode of the filesystem,
directories included, and commits its journal (or has nothing to make durable: tmpfs).
FUSE, network and overlay filesystems are left to fsync: their syncfs has not always
reached the backing store or reported its errors."""

SYNCFS_MIN_KERNEL = (5, 8)
"""Linux reports write-back errors to syncfs since 5.8 (per-superblock errseq); before,
a failed write-back could go unreported, so an older kernel gets the fsync method."""


def _make_dirs(path: str, what: str) -> list[str]:
    """``os.makedirs(path, exist_ok=True)``; returns the parents of the directories it
    created (their new entries are what must be synced), outermost first."""
    missing = []
    probe = os.path.abspath(path)
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{what}: {e.strerror or e}") from e
    return [os.path.dirname(d) for d in reversed(missing)]


def _directory_chains(paths: Iterable[str], root: str) -> list[str]:
    """Every directory from each path's own up to ``root`` (inclusive), once each."""
    stop = os.path.abspath(root)
    seen: dict[str, None] = {}
    for path in paths:
        directory = os.path.dirname(os.path.abspath(path))
        while directory not in seen:
            seen[directory] = None
            parent = os.path.dirname(directory)
            if directory == stop or parent == directory or len(directory) < len(stop):
                break
            directory = parent
    return list(seen)


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return  # removed since (a racing writer kept its own copy): nothing of ours
    try:
        os.fsync(fd)
    except OSError as e:  # filesystems that cannot sync a directory (as snapdir)
        import errno

        if e.errno not in (errno.EINVAL, errno.ENOTSUP) or not stat.S_ISDIR(
                os.fstat(fd).st_mode):
            raise
    finally:
        os.close(fd)


def _fsync_paths(paths: Sequence[str]) -> None:
    """fsync every path, :data:`SYNC_WORKERS` at a time; the first failure is raised
    once all have run."""
    if len(paths) <= 1 or IS_BROWSER:  # Pyodide starts no thread
        for path in paths:
            _fsync_path(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(SYNC_WORKERS, len(paths)),
                            thread_name_prefix="snap-fsync") as pool:
        for _ in pool.map(_fsync_path, paths):
            pass



def _mount_fstype(path: str, mountinfo: str) -> str | None:
    """The type of the filesystem mounted deepest above ``path`` in ``mountinfo`` (the
    text of /proc/self/mountinfo; the last of equal mount points wins, as it hides the
    others)."""
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            mount_point = fields[4]
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                             mount_point)
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), fstype)
    return None if best is None else best[1]


def _kernel_version(release: str) -> tuple[int, ...]:
    numbers = re.match(r"(\d+)\.(\d+)", release)
    return (0, 0) if numbers is None else (int(numbers.group(1)), int(numbers.group(2)))


_libc_syncfs: Callable[[int], int] | None = None


def _load_syncfs() -> Callable[[int], int] | None:
    global _libc_syncfs
    if _libc_syncfs is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            function = libc.syncfs
            function.argtypes = [ctypes.c_int]
            function.restype = ctypes.c_int
        except (ImportError, OSError, AttributeError):
            return None
        _libc_syncfs = function
    return _libc_syncfs


def syncfs_unavailable(root: str) -> str | None:
    """Why ``syncfs`` may not make the store at ``root`` durable (None: it may): not
    Linux, a kernel before :data:`SYNCFS_MIN_KERNEL`, a filesystem outside
    :data:`SYNCFS_FILESYSTEMS`, no syncfs in the C library."""
    import sys

    if not sys.platform.startswith("linux"):
        return f"syncfs is Linux's ({sys.platform})"
    release = os.uname().release
    if _kernel_version(release) < SYNCFS_MIN_KERNEL:
        return f"Linux {release} does not report write-back errors to syncfs"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            fstype = _mount_fstype(os.path.realpath(root), f.read())
    except OSError as e:
        return f"cannot read /proc/self/mountinfo: {e.strerror or e}"
    if fstype not in SYNCFS_FILESYSTEMS:
        return f"its filesystem ({fstype or 'unknown'}) is not one syncfs is trusted on"
    if _load_syncfs() is None:
        return "the C library has no syncfs"
    return None


def _syncfs(root: str) -> None:
    """``syncfs(2)`` of the filesystem holding ``root`` (OSError on failure)."""
    import ctypes

    function = _load_syncfs()
    if function is None:
        raise OSError(0, "the C library has no syncfs")
    try:
        fd = os.open(root, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return  # no store yet: nothing filed to make durable
    try:
        if function(fd) != 0:
            errno_value = ctypes.get_errno()
            raise OSError(errno_value, os.strerror(errno_value))
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- HTTP


Transport = Callable[[str, ByteRange | None], "bytes | None"]
"""``(url, range or None) -> body or None (404)``: one GET. A 200 answer to a Range
request is fine (the whole body: the store slices it)."""


def _httpx_transport(timeout: float) -> tuple[Transport, Callable[[], None]]:
    import httpx

    client = httpx.Client(timeout=timeout, follow_redirects=True)

    def get(url: str, want: ByteRange | None) -> bytes | None:
        headers = {"Accept-Encoding": "identity"}
        if want is not None:
            headers["Range"] = want.header_value()
        try:
            with client.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 404 or resp.status_code == 410:
                    return None
                if resp.status_code == 416:
                    return b""
                if resp.status_code not in (200, 206):
                    raise StorageError(f"GET {url}: HTTP {resp.status_code} "
                                       f"{resp.reason_phrase}".rstrip())
                out = bytearray()
                cap = _body_cap(want, resp.status_code)
                for chunk in resp.iter_bytes():
                    out += chunk
                    if len(out) > cap:
                        if resp.status_code == 200:
                            break   # the whole file for a range: what was asked is here
                        raise StorageError(f"GET {url}: the answer runs past {cap} bytes")
                return _cut(bytes(out), want, resp.status_code)
        except httpx.HTTPError as e:
            raise StorageError(f"GET {url} failed: {type(e).__name__}: {e}") from e

    return get, client.close


def _body_cap(want: ByteRange | None, status: int) -> int:
    if want is None:
        return MAX_OBJECT_SIZE
    return want.size if status == 206 else want.end


def _cut(body: bytes, want: ByteRange | None, status: int) -> bytes:
    if want is None or status == 206:
        return body
    return body[want.offset:want.end]   # a whole-body 200: slice what was asked


def _xhr_transport(timeout: float) -> tuple[Transport, Callable[[], None]]:
    import js  # type: ignore[import-not-found]

    def get(url: str, want: ByteRange | None) -> bytes | None:
        xhr = js.XMLHttpRequest.new()
        try:
            xhr.open("GET", url, False)
            xhr.responseType = "arraybuffer"
            xhr.timeout = max(1, int(timeout * 1000))
            if want is not None:
                xhr.setRequestHeader("Range", want.header_value())
            xhr.send()
        except Exception as e:  # JsException: network, CORS, timeout
            raise StorageError(f"GET {url} failed: {e}") from None
        status = int(xhr.status)
        if status in (404, 410):
            return None
        if status == 416:
            return b""
        if status not in (200, 206):
            raise StorageError(f"GET {url}: HTTP {status}")
        response = xhr.response
        body: bytes = js.Uint8Array.new(response).to_bytes() if response else b""
        return _cut(body, want, status)

    return get, lambda: None


class HttpStore(_StoreBase):
    """A store on any static web host, read only: plain GETs of the layout (a ``Range``
    header when only part of a file is wanted; a server that ignores it is fine), 404
    (or 410) = absent. ``transport``: a custom GET (tests, other clients); by default
    httpx on CPython, synchronous XHR under Pyodide (a Web Worker)."""

    def __init__(self, base: str | StoreUri, *, transport: Transport | None = None,
                 timeout: float = 30.0) -> None:
        uri = base if isinstance(base, StoreUri) else StoreUri.parse(base)
        if uri.kind != "http":
            raise UsageError(f"not an http(s) store: {uri}")
        self.uri = uri
        self.stats = SourceStats()
        self._close: Callable[[], None] = lambda: None
        if transport is None:
            transport, self._close = (_xhr_transport(timeout) if IS_BROWSER
                                      else _httpx_transport(timeout))
        self._get = transport

    def __repr__(self) -> str:
        return f"HttpStore({self.uri.root!r})"

    def url(self, rel_path: str) -> str:
        return self.uri.root + quote(rel_path)

    def read_range(self, rel_path: str, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        url = self.url(rel_path)
        body = self._get(url, ByteRange(offset, size))
        self.stats.count(len(body or b""))
        if body is None:
            raise NotFoundError(f"not in the store: {url}")
        if len(body) > size:
            raise StorageError(f"GET {url}: more bytes than asked for")
        return body

    def _exists(self, rel_path: str) -> bool:
        try:
            self.read_range(rel_path, 0, 1)
        except NotFoundError:
            return False
        return True

    def has_object(self, hex_id: str) -> bool:
        return self._exists(object_path(hex_id))

    def has_manifest(self, hex_id: str) -> bool:
        return self._exists(manifest_path(hex_id))

    def close(self) -> None:
        close, self._close = self._close, lambda: None
        close()


def open_store(uri: str | os.PathLike[str] | StoreUri, *, create: bool = False,
               transport: Transport | None = None) -> FileStore | HttpStore:
    """The store at ``uri``: a :class:`FileStore` or an :class:`HttpStore`."""
    parsed = uri if isinstance(uri, StoreUri) else StoreUri.parse(uri)
    if parsed.kind == "http":
        return HttpStore(parsed, transport=transport)
    return FileStore(parsed, create=create)


# ------------------------------------------------------------------------- range source


class ObjectSpace:
    """The address space of a :class:`StoreSource`: slot 0 is the manifest of
    ``snapshot``, slot ``k`` the k-th object asked for; slot ``k`` spans
    ``[k << SLOT_BITS, (k + 1) << SLOT_BITS)``."""

    def __init__(self, snapshot: str) -> None:
        self.snapshot = check_id(snapshot, "snapshot id")
        self._paths: list[str] = [manifest_path(snapshot)]
        self._slots: dict[str, int] = {}
        self._lock = threading.Lock()

    def object_range(self, hex_id: str, offset: int, size: int) -> ByteRange:
        """The range of the source holding ``size`` bytes of object ``hex_id`` from
        ``offset`` (clamped to the slot)."""
        with self._lock:
            slot = self._slots.get(hex_id)
            if slot is None:
                slot = self._slots[hex_id] = len(self._paths)
                self._paths.append(object_path(hex_id))
        size = max(0, min(size, MAX_OBJECT_SIZE + 1 - offset))
        return ByteRange((slot << SLOT_BITS) + offset, size)

    def manifest_range(self) -> ByteRange:
        return ByteRange(0, MAX_MANIFEST_SIZE + 1)

    def locate(self, r: ByteRange) -> tuple[str, int, int]:
        """``(store path, offset, size)`` of a range (inside one slot)."""
        slot, offset = divmod(r.offset, 1 << SLOT_BITS)
        with self._lock:
            if slot >= len(self._paths):
                raise UsageError(f"no store file at slot {slot}")
            path = self._paths[slot]
        if offset + r.size > 1 << SLOT_BITS:
            raise UsageError("a read across two store files")
        return path, offset, r.size


class StoreSource(SyncSourceBase):
    """A :class:`~lockbox.sources.base.RangeSource` over a store: a range of its
    :class:`ObjectSpace` is read from the store file of its slot. It lets the sans-I/O
    snapshot session run under the ordinary drivers and facades (``lockbox.open
    ('file:///store#id=ID')``). An absent file reads as NotFoundError."""

    def __init__(self, store: Store, snapshot: str, *, close_store: bool = True) -> None:
        self.store = store
        self.space = ObjectSpace(snapshot)
        self.stats = SourceStats()
        self._close_store = close_store
        self._closed = False

    @property
    def size(self) -> int | None:
        return None

    @property
    def identity(self) -> str:
        return f"{self.store.uri}#id={self.space.snapshot}"

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        if self._closed:
            raise closed_error(self, str(self.store.uri))
        out = []
        for r in ranges:
            path, offset, size = self.space.locate(r)
            blob = self.store.read_range(path, offset, size) if size else b""
            self.stats.count(len(blob))
            out.append(blob)
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._close_store:
                self.store.close()

    def __repr__(self) -> str:
        return f"StoreSource({self.identity!r})"


def open_snap_source(location: str) -> StoreSource | None:
    """The source for a location ``STORE_URI#id=ID``, or None for any other location."""
    parsed = parse_snap_location(location)
    if parsed is None:
        return None
    uri, snapshot = parsed
    return StoreSource(open_store(uri), snapshot)
