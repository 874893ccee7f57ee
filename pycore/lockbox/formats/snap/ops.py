"""High-level snapdir operations: push, pull, verify, diff, objects-needed (CPython).

* :func:`push` a host directory or any archive the reader opens into a store: only the
  objects the store lacks are sent, each verified before it is filed, the manifest last.
  A store that speaks for itself (lockbox's server, ``remote.ServerStore``) is given the
  missing objects through its ``receive_objects`` in one go.
* :func:`pull` a snapshot into a directory: every object is verified before it is
  renamed into place; the rules of :mod:`lockbox.extract` apply (nothing is written
  outside the destination; existing entries are not replaced unless ``overwrite``); the
  modes are the manifest's, exactly, as snapdir's checkout applies them.
* :func:`verify` re-hashes every object (and checks the manifest's own consistency),
  reporting every problem rather than stopping at the first.
* :func:`diff` compares two snapshots as ``snapdir diff`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    NotFoundError,
    StorageError,
    UsageError,
)
from ...info import EntryInfo
from ...protocol import CheckReport
from .manifest import (
    HASH_CHUNK_SIZE,
    Manifest,
    ManifestEntry,
    archive_snapshot,
    directory_checksum,
    is_hex64,
    manifest_of_directory,
)
from .store import FileStore, HttpStore, Store, check_id, object_path

if TYPE_CHECKING:
    from ...facade import Archive

__all__ = ["push", "pull", "verify", "diff", "objects_needed", "snapshot_of", "PushReport",
           "PullReport", "DiffEntry", "ObjectReader", "check_manifest_tree"]

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class PushReport:
    """What :func:`push` did. ``str()`` is the snapshot id."""

    snapshot_id: str
    objects: int            # distinct objects in the snapshot
    objects_sent: int       # the ones the store lacked
    bytes_sent: int
    already_present: bool   # the store had the manifest: nothing was sent

    def __str__(self) -> str:
        return self.snapshot_id


@dataclass(frozen=True)
class PullReport:
    snapshot_id: str
    dest: str
    entries: int
    files: int
    bytes: int


@dataclass(frozen=True)
class DiffEntry:
    """One row of :func:`diff`: ``status`` ``A`` (added), ``D`` (deleted), ``M``
    (modified) or ``=`` (unchanged); ``path`` as in the manifests (``./a/f``)."""

    status: str
    path: str

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, "path": self.path}


# ------------------------------------------------------------------------- snapshots


def _read_host_file(path: str) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(HASH_CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror or e}") from e


class ObjectReader:
    """The objects of a snapshot being pushed: ``reader(id)`` gives the object's bytes
    piece by piece (from the first file that holds it), ``reader.size(id)`` its true size
    (which a followed symlink's manifest SIZE is not: snapdir records the link's own)."""

    def __init__(self, open_one: Callable[[str], Iterable[bytes]],
                 size_of: Callable[[str], int]) -> None:
        self._open = open_one
        self._size = size_of

    def __call__(self, hex_id: str) -> Iterable[bytes]:
        return self._open(hex_id)

    def size(self, hex_id: str) -> int:
        return self._size(hex_id)


def snapshot_of(source: str | os.PathLike[str] | Archive, *, follow_symlinks: bool = True,
                progress: Progress | None = None) -> tuple[Manifest, ObjectReader]:
    """The manifest of a host directory or an opened archive, and an
    :class:`ObjectReader` to read each of its objects again."""
    if isinstance(source, (str, os.PathLike)):
        root = os.path.abspath(os.fspath(source))
        manifest = manifest_of_directory(root, follow_symlinks=follow_symlinks)
        where: dict[str, str] = {}
        for e in manifest.files():
            where.setdefault(e.checksum, os.path.join(root, *e.rel_path.split("/")))

        def host_size(hex_id: str) -> int:
            try:
                return os.stat(where[hex_id]).st_size
            except OSError as e:
                raise StorageError(f"cannot read {where[hex_id]}: {e.strerror or e}") from e

        return manifest, ObjectReader(lambda h: _read_host_file(where[h]), host_size)
    manifest, real_paths = archive_snapshot(source, follow_symlinks=follow_symlinks,
                                            progress=progress)
    archive = source
    sizes = {h: manifest.get(p).size for h, p in real_paths.items()}  # type: ignore[union-attr]

    def open_archived(hex_id: str) -> Iterable[bytes]:
        return (bytes(p) for p in archive.open_content(real_paths[hex_id]))

    return manifest, ObjectReader(open_archived, sizes.__getitem__)


def objects_needed(store: Store | Any, ids: Iterable[str]) -> list[str]:
    """The ids (64 lowercase hex digits each; UsageError on the first that is not, before
    any lookup) the store lacks, deduplicated, in first-seen order."""
    unique = list(dict.fromkeys(check_id(i, "object id") for i in ids))
    ask = getattr(store, "objects_needed", None)
    if ask is not None:
        return list(ask(unique))
    return [i for i in unique if not store.has_object(i)]


def push(source: str | os.PathLike[str] | Archive, store: Store | Any, *,
         follow_symlinks: bool = True, progress: Progress | None = None) -> PushReport:
    """Push a host directory or an opened archive into ``store``; returns the report
    (``str(report)`` is the snapshot id).

    Only missing objects are sent, each checked against its id before it is filed (a
    file that changed since it was hashed: IntegrityError, nothing of it filed); the
    manifest goes last, so an interrupted push leaves no manifest and a rerun resumes
    where it stopped."""
    if isinstance(store, HttpStore):
        raise UsageError(f"{store.uri} is read only over plain HTTP (push to lockbox's "
                         f"server with a token, or to a file:// store)")
    manifest, opener = snapshot_of(source, follow_symlinks=follow_symlinks, progress=progress)
    ids = manifest.object_ids()
    sid = manifest.id
    has_manifest = getattr(store, "has_manifest", None)
    if has_manifest is not None and has_manifest(sid):
        return PushReport(sid, len(ids), 0, 0, True)
    needed = objects_needed(store, ids)
    receive = getattr(store, "receive_objects", None)
    if receive is not None:
        # A store that takes objects + manifest in one stream (lockbox's server).
        receive(manifest, [(h, opener) for h in needed])
        sent = sum(opener.size(h) for h in needed)
        return PushReport(sid, len(ids), len(needed), sent, False)
    if not isinstance(store, FileStore):
        raise UsageError(f"cannot push to {store!r}")
    sent = 0
    for h in needed:
        with store.object_writer(h) as w:
            for piece in opener(h):
                w.write(piece)
            try:
                w.commit()
            except IntegrityError:
                raise IntegrityError(f"object {h} changed since it was hashed "
                                     f"(the source changed during the push); nothing of "
                                     f"it was filed") from None
            sent += w.size
    store.put_manifest(manifest, sid)
    return PushReport(sid, len(ids), len(needed), sent, False)


# ------------------------------------------------------------------------- pull


def _entry_info(e: ManifestEntry) -> EntryInfo:
    return EntryInfo(path=e.rel_path, type="dir" if e.kind == "D" else "file", mode=e.perms,
                     mtime_ns=0, size=e.size, blake3="" if e.kind == "D" else e.checksum)


def pull(snapshot: str, store: Store, dest: str | os.PathLike[str], *,
         overwrite: bool = False, progress: Progress | None = None) -> PullReport:
    """Materialise snapshot ``snapshot`` of ``store`` under ``dest`` (created if missing).

    Every object is hashed while it is written to a temp file beside its target and
    renamed into place only if it is what the manifest says (IntegrityError otherwise:
    the pull stops, that file is not created). The rules of :mod:`lockbox.extract`
    apply; existing entries are refused unless ``overwrite`` (StorageError before
    anything is written). Modes are the manifest's exactly (``mode & 0o7777``, the
    destination directory's too), as snapdir's checkout sets them, so the tree has the
    snapshot's id again."""
    from ...extract import Extractor

    check_id(snapshot, "snapshot id")
    manifest = store.get_manifest(snapshot)
    by_path = {e.rel_path: e for e in manifest.entries}

    def open_content(rel_path: str) -> Iterator[bytes]:
        return store.iter_object(by_path[rel_path].checksum)

    items = [_entry_info(e) for e in manifest.entries if e.rel_path]
    out = Extractor(dest, overwrite=overwrite, preserve_permissions=True)
    report = out.run(items, open_content, progress)
    if report.skipped:  # manifests are checked, so this is a destination problem
        from ...errors import UnsafePathError

        raise UnsafePathError(report.skipped_summary())
    root = manifest.get("")
    if root is not None:
        try:
            os.chmod(out.dest, root.perms)
        except OSError as e:
            raise StorageError(f"cannot set the mode of {out.dest}: {e.strerror or e}") from e
    return PullReport(snapshot, out.dest, len(items), report.files, report.file_bytes)


# ------------------------------------------------------------------------- verify


def check_manifest_tree(manifest: Manifest) -> list[str]:
    """Problems of the manifest's own structure: an entry whose parent directory is not
    listed, a directory whose checksum or size does not match its children."""
    problems: list[str] = []
    children: dict[str, list[ManifestEntry]] = {}
    for e in manifest.entries:
        if not e.rel_path:
            continue
        parent = e.rel_path.rpartition("/")[0]
        up = manifest.get(parent)
        if up is None or up.kind != "D":
            problems.append(f"{e.path}: its directory is not in the manifest")
            continue
        children.setdefault(parent, []).append(e)
    for e in manifest.entries:
        if e.kind != "D":
            continue
        kids = children.get(e.rel_path, [])
        want = directory_checksum(k.checksum for k in kids)
        size = sum(k.size for k in kids)
        if want != e.checksum:
            problems.append(f"{e.path}: the directory checksum is {e.checksum}, its "
                            f"entries give {want}")
        elif size != e.size:
            problems.append(f"{e.path}: the directory size is {e.size}, its entries "
                            f"total {size}")
    return problems


def verify(snapshot: str, store: Store, *, progress: Progress | None = None) -> CheckReport:
    """Check a snapshot in a store: its manifest (present, hashing to its id, well
    formed, directories consistent with their entries) and every object (present,
    re-hashed in full). Problems are collected, not raised; NotFoundError only when the
    snapshot itself is not in the store."""
    check_id(snapshot, "snapshot id")
    report = CheckReport()
    try:
        manifest = store.get_manifest(snapshot)
    except (IntegrityError, FormatError, LimitExceededError) as e:
        report.problems.append(f"manifest {snapshot}: {e}")
        return report
    report.problems += check_manifest_tree(manifest)
    paths: dict[str, list[str]] = {}
    for entry in manifest.files():
        paths.setdefault(entry.checksum, []).append(entry.path)
    report.entries_checked = len(manifest)
    for h, where in paths.items():
        shown = where[0] + (f" and {len(where) - 1} more" if len(where) > 1 else "")
        size = 0
        try:
            for piece in store.iter_object(h):
                size += len(piece)
        except NotFoundError:
            report.problems.append(f"object {h} ({shown}) is missing "
                                   f"({object_path(h)})")
            continue
        except IntegrityError as damaged:
            report.problems.append(f"{shown}: {damaged}")
            continue
        except StorageError as unreadable:
            report.problems.append(f"object {h} ({shown}) cannot be read: {unreadable}")
            continue
        report.bytes_checked += size
        if progress is not None:
            progress(where[0], size)
    return report


# ------------------------------------------------------------------------- diff


def _fingerprint(e: ManifestEntry) -> tuple[Any, ...]:
    if e.kind == "F":
        return ("F", e.perms, e.checksum, e.size)
    return ("D", e.perms)


def diff(a: str | Manifest, b: str | Manifest, store: Store | None = None, *,
         include_unchanged: bool = False) -> list[DiffEntry]:
    """What changed from snapshot ``a`` to ``b`` (ids read from ``store``, or manifests),
    as ``snapdir diff``: one row per path (as in the manifests, sorted by its bytes)
    that is a file on either side; ``A`` only in ``b``, ``D`` only in ``a``, ``M`` type,
    mode, checksum or size differ, ``=`` unchanged (only with ``include_unchanged``).
    Directories alone are not listed (a file that became a directory is ``D ./x`` and
    its files ``A``)."""
    def load(x: str | Manifest) -> Manifest:
        if isinstance(x, Manifest):
            return x
        if store is None:
            raise UsageError("diff of snapshot ids needs the store")
        if not is_hex64(x):
            raise UsageError(f"not a snapdir snapshot id: {x!r}")
        return store.get_manifest(x)

    old = {e.path: e for e in load(a).entries}
    new = {e.path: e for e in load(b).entries}
    rows = []
    for path in sorted(old.keys() | new.keys()):
        f, t = old.get(path), new.get(path)
        if all(e is None or e.kind == "D" for e in (f, t)):
            continue
        if f is None:
            status = "A"
        elif t is None:
            status = "D"
        elif _fingerprint(f) == _fingerprint(t):
            if not include_unchanged:
                continue
            status = "="
        else:
            status = "M"
        rows.append(DiffEntry(status, path))
    return rows
