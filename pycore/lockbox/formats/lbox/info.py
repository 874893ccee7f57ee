"""Descriptions of ``.lbox`` archives: the entry of a TOC as an ``EntryInfo``, the
archive (``ArchiveInfo``) and its key slots (``SlotInfo``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...info import EntryInfo
from .wire.constants import FORMAT_VERSION, EntryType
from .wire.entry import Entry
from .wire.keydir import KeySlot, LinkSlot, PasswordSlot, RecipientSlot

__all__ = ["ArchiveInfo", "SlotInfo", "entry_info"]

_TYPE_NAMES = {EntryType.FILE: "file", EntryType.DIR: "dir", EntryType.SYMLINK: "symlink"}


def entry_info(path: str, e: Entry) -> EntryInfo:
    return EntryInfo(path, _TYPE_NAMES[e.type], e.mode, e.mtime_ns, e.size, e.stored_size,
                     e.content_hash.hex(), e.target)


@dataclass(frozen=True)
class SlotInfo:
    slot_id: int
    kind: str  # "password", "recipient", "link" or "unusable"
    detail: str

    @classmethod
    def of(cls, s: KeySlot) -> SlotInfo:
        if isinstance(s, PasswordSlot):
            mem = (f"{s.memory_kib // 1024} MiB" if s.memory_kib % 1024 == 0
                   else f"{s.memory_kib} KiB")
            return cls(s.slot_id, "password",
                       f"argon2id m={mem} t={s.time_cost} p={s.parallelism}")
        if isinstance(s, RecipientSlot):
            return cls(s.slot_id, "recipient", "ml-kem-1024 (recipient not recorded)")
        if isinstance(s, LinkSlot):
            return cls(s.slot_id, "link", "share link (lbk1 key; revoke: lockbox keys rm)")
        return cls(s.slot_id, "unusable", s.reason)


@dataclass(frozen=True)
class ArchiveInfo:
    archive_id: str
    generation: int
    committed_at: str
    archive_size: int | None
    archive_end: int
    files: int
    dirs: int
    symlinks: int
    file_bytes: int
    stored_bytes: int
    chunk_size: int
    toc_height: int
    env_count: int
    slots: list[SlotInfo] = field(default_factory=list)
    unlocked_slot: int = 0
    format_version: int = FORMAT_VERSION
    key_commitment: bool = True  # False: a version-1 key directory (FORMAT §17.6)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
