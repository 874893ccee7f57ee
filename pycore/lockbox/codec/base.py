"""The codec (compression) backend protocol.

lockbox compresses with Zstandard (RFC 8878). A codec must produce standard
zstd frames and must decode with a hard output bound so that a hostile frame
(a decompression bomb) can never make it allocate more than the caller's
limit.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Codec"]


@runtime_checkable
class Codec(Protocol):
    name: str

    def compress(self, data: bytes | bytearray | memoryview, level: int = 3) -> bytes:
        """One complete zstd frame holding ``data``."""
        ...

    def decompress(self, data: bytes, max_size: int) -> bytes:
        """Decode one complete zstd frame.

        Raises :class:`lockbox.errors.FormatError` if ``data`` is not exactly
        one valid frame, or :class:`lockbox.errors.LimitExceededError` if the
        output would exceed ``max_size`` bytes (decoding stops at the bound;
        it never allocates beyond it).
        """
        ...
