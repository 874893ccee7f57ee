"""The Zstandard codec: stdlib ``compression.zstd`` (3.14+, Pyodide) or ``backports.zstd``.

Decoding is bounded: a frame that declares more output than ``max_size`` is
refused before any decoding, the decoder is never asked for more than
``max_size + 1`` bytes, and a frame without a declared size may not ask for a
window (zstd's internal buffer) larger than ``max(max_size, 8 MiB)``.
"""

from __future__ import annotations

import threading
from typing import Any

from lockbox.errors import (
    BackendUnavailableError,
    FormatError,
    LimitExceededError,
    TruncatedError,
)

__all__ = ["ZstdCodec", "load_zstd"]

_MAGIC = b"\x28\xb5\x2f\xfd"
# Frames without a content size may use a window up to this even when max_size
# is smaller: the zstd CLI and streaming compressors use 2 MiB (level 3) to
# 8 MiB (level 19) windows when the input size is unknown.
_WINDOW_FLOOR = 8 << 20
_MIN_WINDOW_LOG = 10
_FCS_FIELD_SIZES = (0, 2, 4, 8)  # by Frame_Content_Size_flag (RFC 8878 §3.1.1.1.1)
_DID_FIELD_SIZES = (0, 1, 2, 4)  # by Dictionary_ID_flag


def load_zstd() -> Any:
    """The running Python's zstd module: stdlib ``compression.zstd`` (3.14+, Pyodide) or
    ``backports.zstd`` (the same API), for callers that stream (``ZstdCompressor``,
    ``ZstdDecompressor``) rather than code whole frames with :class:`ZstdCodec`.
    BackendUnavailableError when neither is installed."""
    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError as exc:
            raise BackendUnavailableError(
                "zstd needs Python 3.14+ (compression.zstd) or the backports.zstd package"
            ) from exc
    return zstd


def _frame_header(data: bytes) -> tuple[int | None, int]:
    """``(content_size or None, window_size)`` of the zstd frame header at ``data[0:]``."""
    size = len(data)
    if size < 5:
        raise TruncatedError("zstd frame header is truncated")
    descriptor = data[4]
    if descriptor & 0x08:
        raise FormatError("zstd frame header has its reserved bit set")
    fcs_flag = descriptor >> 6
    single_segment = bool(descriptor & 0x20)
    fcs_size = _FCS_FIELD_SIZES[fcs_flag] if fcs_flag or not single_segment else 1
    pos = 5
    window = 0
    if not single_segment:
        if size < 6:
            raise TruncatedError("zstd frame header is truncated")
        exponent, mantissa = data[5] >> 3, data[5] & 7
        base = 1 << (10 + exponent)
        window = base + (base >> 3) * mantissa
        pos = 6
    pos += _DID_FIELD_SIZES[descriptor & 3]
    if size < pos + fcs_size:
        raise TruncatedError("zstd frame header is truncated")
    if not fcs_size:
        return None, window
    content_size = int.from_bytes(data[pos:pos + fcs_size], "little")
    if fcs_size == 2:
        content_size += 256
    return content_size, content_size if single_segment else window


class ZstdCodec:
    """:class:`lockbox.codec.base.Codec` on the zstd module of the running Python."""

    name = "zstd"

    def __init__(self) -> None:
        self._zstd = load_zstd()
        self._error = self._zstd.ZstdError
        self._flush_frame = self._zstd.ZstdCompressor.FLUSH_FRAME
        self._window_param = self._zstd.DecompressionParameter.window_log_max
        self._max_window_log = self._window_param.bounds()[1]
        self._local = threading.local()  # per-thread compressors, reused across frames

    def _compressor(self, level: int) -> Any:
        cache: dict[int, Any] | None = getattr(self._local, "compressors", None)
        if cache is None:
            cache = self._local.compressors = {}
        compressor = cache.get(level)
        if compressor is None:
            compressor = cache[level] = self._zstd.ZstdCompressor(level=level)
        return compressor

    def compress(self, data: bytes | bytearray | memoryview, level: int = 3) -> bytes:
        """One zstd frame with the content size recorded (no checksum: the AEAD covers it)."""
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError("level must be an int")
        compressor = self._compressor(level)
        try:
            # FLUSH_FRAME on a fresh frame with the whole input: zstd records its size.
            frame: bytes = compressor.compress(data, mode=self._flush_frame)
            return frame
        except BaseException:
            self._local.compressors.pop(level, None)  # mid-frame state: never reuse it
            raise

    def decompress(self, data: bytes, max_size: int) -> bytes:
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError("max_size must be an int")
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        if not data:
            raise FormatError("empty input is not a zstd frame")
        if data[:4] != _MAGIC:
            raise FormatError("not a zstd frame (bad magic number)")
        content_size, window = _frame_header(data)
        if content_size is not None:
            if content_size > max_size:
                raise LimitExceededError(
                    f"zstd frame declares {content_size} bytes, limit is {max_size}"
                )
            window_log = self._max_window_log  # buffers are bounded by content_size
        else:
            allowed = max(max_size, _WINDOW_FLOOR)
            if window > allowed:
                raise LimitExceededError(
                    f"zstd frame needs a {window}-byte window, limit is {allowed}"
                )
            window_log = min(max((allowed - 1).bit_length(), _MIN_WINDOW_LOG),
                             self._max_window_log)
        decompressor = self._zstd.ZstdDecompressor(options={self._window_param: window_log})
        try:
            out: bytes = decompressor.decompress(data, max_length=max_size + 1)
        except self._error as exc:
            raise FormatError(f"malformed zstd frame: {exc}") from exc
        if len(out) > max_size:
            raise LimitExceededError(f"zstd frame decodes to more than {max_size} bytes")
        if not decompressor.eof:
            raise TruncatedError("zstd frame is truncated")
        if decompressor.unused_data:
            raise FormatError("trailing bytes after the zstd frame")
        if content_size is not None and len(out) != content_size:
            raise FormatError("zstd frame content size does not match its data")
        return out
