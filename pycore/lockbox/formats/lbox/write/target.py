"""What the write engine needs from the archive object it writes: :class:`WritableArchive`.

``Lockbox`` (``formats/lbox/archive.py``) satisfies it structurally. The writer and
compaction are typed against this protocol, never against ``Lockbox`` itself, so
``write/`` does not import the facade (which imports the writer): the import graph
runs one way, archive -> write.
"""

from __future__ import annotations

import os
from typing import Protocol

from ....codec.base import Codec as CodecBackend
from ....crypto.base import CryptoBackend
from ..view import ArchiveView

__all__ = ["WritableArchive"]


class WritableArchive(Protocol):
    """An opened local archive that a :class:`~.writer.Writer` can write.

    Exactly what ``Writer`` and ``compact_archive`` use: the file (``path``), the
    committed view and the backends, the content key (frames are sealed under it),
    and the three calls that keep the archive object in step with the writer's
    commits. ``open`` is how compaction opens its new file with the same kind of
    archive object (``type(box).open(...)``).
    """

    path: str | None  # the local file; None for a remote archive (not writable)
    view: ArchiveView  # the committed state this object reads
    crypto: CryptoBackend
    codec: CodecBackend

    @property
    def content_key(self) -> bytes:
        """The 32-byte content key (a secret)."""
        ...

    def set_view(self, view: ArchiveView) -> None:
        """Read ``view`` from now on (a commit of this process's writer)."""
        ...

    def refresh(self) -> None:
        """Re-read the superblock (the writer does this under its lock)."""
        ...

    def rebase_source(self) -> None:
        """Accept that this process's own writer changed the file."""
        ...

    def close(self) -> None:
        ...

    @classmethod
    def open(cls, location: str | os.PathLike[str], *, known_key: tuple[bytes, bytes],
             crypto: CryptoBackend, codec: CodecBackend) -> WritableArchive:
        """Open the archive at ``location`` with its (archive id, content key)."""
        ...
