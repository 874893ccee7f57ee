"""The one place where lockbox chooses between CPython and browser (Pyodide) parts."""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

from .codec.base import Codec
from .crypto.base import CryptoBackend

if TYPE_CHECKING:
    from .sources.base import AsyncRangeSource, RangeSource

__all__ = ["IS_BROWSER", "default_crypto", "default_codec", "url_source", "async_url_source"]

IS_BROWSER = sys.platform == "emscripten"


@cache
def default_crypto() -> CryptoBackend:
    if IS_BROWSER:
        from .crypto.browser import BrowserCryptoBackend  # type: ignore[import-not-found]

        return BrowserCryptoBackend()
    from .crypto.cpython import CryptographyBackend

    return CryptographyBackend()


@cache
def default_codec() -> Codec:
    from .codec.zstd import ZstdCodec

    return ZstdCodec()


def url_source(url: str) -> RangeSource:
    """The sync range source for an http(s) URL on this platform.

    CPython: ``HttpSource`` (httpx). Browser: ``XhrRangeSource`` (synchronous XHR, which
    works in Web Workers only).
    """
    if IS_BROWSER:
        from .sources.browser import XhrRangeSource

        return XhrRangeSource(url)
    from .sources.http import HttpSource

    return HttpSource(url)


def async_url_source(url: str) -> AsyncRangeSource:
    """The async range source for an http(s) URL: ``AsyncHttpSource`` or ``FetchRangeSource``."""
    if IS_BROWSER:
        from .sources.browser import FetchRangeSource

        return FetchRangeSource(url)
    from .sources.http import AsyncHttpSource

    return AsyncHttpSource(url)
