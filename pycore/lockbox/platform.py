"""The one place where lockbox chooses between CPython and browser (Pyodide) parts."""

from __future__ import annotations

import sys
from functools import cache

from .codec.base import Codec
from .crypto.base import CryptoBackend

__all__ = ["IS_BROWSER", "default_crypto", "default_codec"]

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
