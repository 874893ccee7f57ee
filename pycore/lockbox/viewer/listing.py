"""Folder listings as the page draws them: columns (names, types, sizes, mtimes, permission
bits, link targets, counts), from a folder's entries (:func:`columns`) or from a streamed walk of
the whole archive (:class:`WalkedTree`, for formats that have no index to list one
folder from)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InvalidPathError, NotFoundError
from ..info import EntryInfo

__all__ = ["columns", "WalkedTree", "TYPE_CODES"]

TYPE_CODES = {"dir": "d", "file": "f", "symlink": "l"}


Row = tuple[str, str, int, int, str, int]
"""(name, type code, size, mtime_ms, target, permission bits)"""


def _rows_json(path: str, rows: list[Row]) -> dict[str, Any]:
    names, sizes, mtimes, modes = [], [], [], []
    types = []
    targets: dict[str, str] = {}
    dirs = files = links = total = 0
    for i, (name, t, size, mtime_ms, target, mode) in enumerate(rows):
        names.append(name)
        types.append(t)
        sizes.append(size)
        mtimes.append(mtime_ms)
        modes.append(mode)
        if t == "d":
            dirs += 1
        elif t == "l":
            targets[str(i)] = target
            links += 1
        else:
            files += 1
            total += size
    return {"path": path, "names": names, "types": "".join(types), "sizes": sizes,
            "mtimes": mtimes, "modes": modes, "targets": targets,
            "counts": {"dirs": dirs, "files": files, "symlinks": links, "bytes": total}}


def _row(e: EntryInfo) -> Row:
    t = TYPE_CODES[e.type]
    return (e.name, t, e.size if t == "f" else 0, e.mtime_ns // 1_000_000, e.target,
            e.mode & 0o7777)


def _order(row: Row) -> tuple[bool, str]:
    return (row[1] != "d", row[0])


def columns(path: str, items: Iterable[EntryInfo]) -> dict[str, Any]:
    """A folder's children as columns, folders first, then by name."""
    return _rows_json(path, sorted((_row(e) for e in items), key=_order))


class _Folder:
    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[Row] = []


class WalkedTree:
    """Every folder's children, as a streamed walk of the whole archive finds them.

    ``add`` takes one batch of the walk (entries in walk order: a folder before its
    contents) and returns what it added, by folder, as columns (the page appends them to
    what it shows); ``seq`` counts the batches added, so a listing taken between two
    batches says which batches it already holds."""

    def __init__(self) -> None:
        self.folders: dict[str, _Folder] = {"": _Folder()}
        self.entries = 0
        self.seq = 0
        self.complete = False
        self.counts = {"dirs": 0, "files": 0, "symlinks": 0, "bytes": 0}

    def add(self, batch: Iterable[EntryInfo]) -> dict[str, dict[str, Any]]:
        added: dict[str, list[Row]] = {}
        for e in batch:
            if not e.path:
                continue
            parent = e.path.rpartition("/")[0]
            row = _row(e)
            folder = self.folders.get(parent)
            if folder is None:  # a format that lists contents before their folder
                folder = self.folders[parent] = _Folder()
            folder.rows.append(row)
            added.setdefault(parent, []).append(row)
            if row[1] == "d":
                self.folders.setdefault(e.path, _Folder())
                self.counts["dirs"] += 1
            elif row[1] == "l":
                self.counts["symlinks"] += 1
            else:
                self.counts["files"] += 1
                self.counts["bytes"] += row[2]
            self.entries += 1
        self.seq += 1
        return {path: _rows_json(path, rows) for path, rows in added.items()}

    def listing(self, path: str) -> dict[str, Any]:
        """A folder's children found so far (``complete`` once the walk has ended)."""
        folder = self.folders.get(path)
        if folder is None:
            if self.complete:
                self._missing(path)
            folder = _Folder()
        out = _rows_json(path, sorted(folder.rows, key=_order))
        out.update(complete=self.complete, seq=self.seq, streamed=True)
        return out

    def find(self, path: str) -> Row | None:
        """The row of ``path`` if its folder's rows hold it."""
        parent, _, name = path.rpartition("/")
        folder = self.folders.get(parent)
        if folder is None:
            return None
        for row in folder.rows:
            if row[0] == name:
                return row
        return None

    def _missing(self, path: str) -> None:
        row = self.find(path)
        if row is not None and row[1] != "d":
            raise InvalidPathError(f"not a folder: {path}")
        raise NotFoundError(f"no such file or directory in the archive: {path}")
