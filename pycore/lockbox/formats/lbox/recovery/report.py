"""The recovery report: what came back, file by file (docs/FORMAT.md §15)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecoveredEntry", "SalvageResult", "RecoveryReport", "COMPLETE", "PARTIAL", "LOST",
           "SOURCE_COMMIT", "SOURCE_TOC_LEAF", "SOURCE_DATA_FRAMES", "SOURCE_IMPLIED"]

COMPLETE = "complete"
PARTIAL = "partial"
LOST = "lost"
SOURCE_COMMIT = "commit"  # the newest authenticated commit's tree, every node intact
SOURCE_TOC_LEAF = "toc-leaf"  # a surviving TOC leaf (newest generation for the path)
SOURCE_DATA_FRAMES = "data-frames"  # the file's own chunks (path and metadata inside)
SOURCE_IMPLIED = "implied"  # a directory known only because something lies below it


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
