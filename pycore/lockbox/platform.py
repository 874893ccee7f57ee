"""The one place where lockbox chooses between CPython and browser (Pyodide) parts."""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

from .codec.base import Codec
from .crypto.base import CryptoBackend

if TYPE_CHECKING:
    from .formats.lbox.keys import UnlockLimits
    from .sources.base import AsyncRangeSource, RangeSource

__all__ = ["IS_BROWSER", "default_crypto", "default_codec", "default_unlock_limits",
           "url_source", "async_url_source"]

IS_BROWSER = sys.platform == "emscripten"


@cache
def default_crypto() -> CryptoBackend:
    if IS_BROWSER:
        from .crypto.browser import BrowserCryptoBackend  # type: ignore[import-not-found]

        return BrowserCryptoBackend()
    from .crypto.cpython import CryptographyBackend

    return CryptographyBackend()


@cache
def default_unlock_limits() -> UnlockLimits:
    """The local unlock limits (docs/FORMAT.md §6 "Local limits"), decided here only.

    CPython: at most 512 MiB of Argon2id memory per slot, time cost 16, the format's 4
    password slots, and 1 GiB of Argon2id work (sum of time cost x memory over the slots
    tried): about one second on a laptop core, at most ~600 MiB of memory. The
    writers' default slot (64 MiB, t = 3) costs 192 MiB of work; a 4 GiB decoy slot
    is never derived. Browser: 256 MiB per slot and 512 MiB of work (what a page's
    WASM heap can take).
    """
    from .formats.lbox.keys import UnlockLimits

    if IS_BROWSER:
        return UnlockLimits(max_argon2_memory_kib=256 * 1024, max_argon2_time_cost=16,
                            max_password_slots=4, max_unlock_work_kib=512 * 1024)
    return UnlockLimits(max_argon2_memory_kib=512 * 1024, max_argon2_time_cost=16,
                        max_password_slots=4, max_unlock_work_kib=1024 * 1024)


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


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None when unknown —
    always None in the browser, where the cache budget is fixed."""
    if IS_BROWSER:
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
