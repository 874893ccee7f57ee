"""Range sources: memory, local files and HTTP(S), sync and async.

``open_source`` / ``open_async_source`` pick the source for a location:
``http://`` and ``https://`` URLs get the HTTP sources of the platform (httpx on
CPython; XHR / fetch in the browser, see ``lockbox.platform``), anything else is
a local path. httpx is imported only when an HTTP source is asked for, so this
package imports where httpx is absent (Pyodide).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .base import AsyncRangeSource, RangeSource, SourceStats
from .file import AsyncFileSource, FileSource
from .memory import AsyncBytesSource, BytesSource

if TYPE_CHECKING:
    from .http import AsyncHttpSource, HttpSource

__all__ = [
    "RangeSource",
    "AsyncRangeSource",
    "SourceStats",
    "BytesSource",
    "AsyncBytesSource",
    "FileSource",
    "AsyncFileSource",
    "HttpSource",
    "AsyncHttpSource",
    "open_source",
    "open_async_source",
    "is_url",
]

_LAZY = {"HttpSource", "AsyncHttpSource"}


def __getattr__(name: str) -> Any:
    """Import the HTTP sources (and httpx) on first use."""
    if name in _LAZY:
        from . import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for ``http://`` and ``https://`` locations (scheme case-insensitive)."""
    return isinstance(location, str) and location[:8].lower().startswith(("http://", "https://"))


def open_source(location: str | os.PathLike[str]) -> RangeSource:
    """A sync source for a URL (``HttpSource``; ``XhrRangeSource`` in the browser) or a
    local path (``FileSource``)."""
    if is_url(location):
        from ..platform import url_source

        return url_source(str(location))
    return FileSource(location)


def open_async_source(location: str | os.PathLike[str]) -> AsyncRangeSource:
    """An async source for a URL (``AsyncHttpSource``; ``FetchRangeSource`` in the browser)
    or a local path (``AsyncFileSource``)."""
    if is_url(location):
        from ..platform import async_url_source

        return async_url_source(str(location))
    return AsyncFileSource(location)
