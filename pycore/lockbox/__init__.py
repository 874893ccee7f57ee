"""lockbox: encrypted archives you can open straight from a URL.

>>> import lockbox
>>> lockbox.create("a.lbox", password="pw")
>>> with lockbox.open("a.lbox", password="pw") as box, box.writer() as w:
...     w.add_bytes("hello.txt", b"hi")
"""

from __future__ import annotations

import os
from typing import Any

from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .extract import ExtractReport
from .formats.lbox.archive import AsyncLockbox, Lockbox
from .formats.lbox.info import ArchiveInfo
from .formats.lbox.keys import Argon2Params, Identity, Recipient, UnlockLimits
from .formats.lbox.verify import VerifyReport
from .info import EntryInfo

__version__ = "0.1.0"  # the one place: pyproject.toml (dynamic version) reads it

__all__ = [
    "open", "open_async", "create", "Lockbox", "AsyncLockbox", "EntryInfo", "ArchiveInfo",
    "VerifyReport", "ExtractReport", "Identity", "Recipient", "Argon2Params", "UnlockLimits",
    "__version__", *_errors_all,
]


def open(location: str | os.PathLike[str], *, password: str | bytes | None = None,
         identity: Identity | None = None, **kw: Any) -> Lockbox:
    """Open a local archive file or an http(s) URL."""
    return Lockbox.open(location, password=password, identity=identity, **kw)


async def open_async(location: Any, *, password: str | bytes | None = None,
                     identity: Identity | None = None, **kw: Any) -> AsyncLockbox:
    return await AsyncLockbox.open(location, password=password, identity=identity, **kw)


def create(path: str | os.PathLike[str], *, password: str | bytes | None = None,
           recipients: Any = (), **kw: Any) -> Lockbox:
    """Create a new empty archive and return it opened (ready for ``writer()``)."""
    from .formats.lbox.write.newarchive import create_archive

    archive_id, content_key = create_archive(path, password=password, recipients=recipients,
                                             **kw)
    return Lockbox.open(path, known_key=(archive_id, content_key), crypto=kw.get("crypto"),
                        codec=kw.get("codec"))
