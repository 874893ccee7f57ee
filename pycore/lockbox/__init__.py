"""lockbox: encrypted archives you can open straight from a URL.

>>> import lockbox
>>> lockbox.create("a.lbox", password="pw")
>>> with lockbox.open("a.lbox", password="pw") as box, box.writer() as w:
...     w.add_bytes("hello.txt", b"hi")

``lockbox.open`` reads every registered format (``.lbox``, ``.uri``): it gives an
:class:`Archive` (a :class:`Lockbox` for a ``.lbox`` archive).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

if TYPE_CHECKING:
    from .extract import ExtractReport, SkippedEntry
    from .facade import Archive, ArchiveFile, AsyncArchive
    from .formats.lbox.archive import AsyncLockbox, Lockbox
    from .formats.lbox.info import ArchiveInfo
    from .formats.lbox.keys import Argon2Params, Identity, Recipient, UnlockLimits
    from .formats.lbox.verify import VerifyReport
    from .info import EntryInfo
    from .protocol import CheckReport, SessionInfo

# The public names below are imported on first use (PEP 562), so that importing one
# module of the package (the CLI, a pipeline worker) does not import all of them.
_LAZY = {
    "ExtractReport": ".extract", "SkippedEntry": ".extract",
    "Archive": ".facade", "ArchiveFile": ".facade", "AsyncArchive": ".facade",
    "AsyncLockbox": ".formats.lbox.archive", "Lockbox": ".formats.lbox.archive",
    "ArchiveInfo": ".formats.lbox.info",
    "Argon2Params": ".formats.lbox.keys", "Identity": ".formats.lbox.keys",
    "Recipient": ".formats.lbox.keys", "UnlockLimits": ".formats.lbox.keys",
    "VerifyReport": ".formats.lbox.verify",
    "EntryInfo": ".info",
    "CheckReport": ".protocol", "SessionInfo": ".protocol",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lockbox' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"  # the one place: pyproject.toml (dynamic version) reads it

__all__ = [
    "open", "open_async", "create", "Archive", "AsyncArchive", "ArchiveFile", "Lockbox",
    "AsyncLockbox", "EntryInfo", "SessionInfo", "CheckReport", "ArchiveInfo",
    "VerifyReport", "ExtractReport", "SkippedEntry", "Identity", "Recipient", "Argon2Params",
    "UnlockLimits", "__version__", *_errors_all,
]


def open(location: Any, *, password: str | bytes | None = None,
         identity: Identity | None = None, format: str | None = None, **kw: Any) -> Archive:
    """Open a local archive file, an http(s) URL or a range source, of any format lockbox
    reads (recognised by its first bytes, or named by ``format``): an :class:`Archive`,
    a :class:`Lockbox` for a ``.lbox``. The password or identity unlocks an encrypted
    format and is ignored by the others; other keywords are the format's settings."""
    from .facade import Archive

    return Archive.open(location, password=password, identity=identity, format=format, **kw)


async def open_async(location: Any, *, password: str | bytes | None = None,
                     identity: Identity | None = None, format: str | None = None,
                     **kw: Any) -> AsyncArchive:
    """:func:`open`, async: an :class:`AsyncArchive` (an :class:`AsyncLockbox` for a
    ``.lbox``)."""
    from .facade import AsyncArchive

    return await AsyncArchive.open(location, password=password, identity=identity,
                                   format=format, **kw)


def create(path: str | os.PathLike[str], *, password: str | bytes | None = None,
           recipients: Any = (), **kw: Any) -> Lockbox:
    """Create a new empty archive and return it opened (ready for ``writer()``)."""
    from .formats.lbox.archive import Lockbox
    from .formats.lbox.write.newarchive import create_archive

    archive_id, content_key = create_archive(path, password=password, recipients=recipients,
                                             **kw)
    return Lockbox.open(path, known_key=(archive_id, content_key), crypto=kw.get("crypto"),
                        codec=kw.get("codec"))
