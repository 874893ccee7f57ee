"""Kept for imports of the former ``.lbox`` file object: ``Lockbox.open_file`` now gives
the generic :class:`lockbox.facade.ArchiveFile` (the same seekable, read-only binary
file object for every format)."""

from __future__ import annotations

from ...facade import ArchiveFile

__all__ = ["LockboxFile"]

LockboxFile = ArchiveFile
