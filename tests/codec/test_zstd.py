"""The zstd codec: the shared conformance suite plus backend specifics."""

from __future__ import annotations

import sys

import pytest

from lockbox.codec import zstd as zstd_module
from lockbox.codec.zstd import ZstdCodec
from lockbox.errors import BackendUnavailableError, LimitExceededError

from .conformance import CodecConformance, MiB, rle_frame


class TestZstdCodec(CodecConformance):
    @pytest.fixture
    def codec(self) -> ZstdCodec:
        return ZstdCodec()


def test_name() -> None:
    assert ZstdCodec.name == "zstd"


def test_uses_stdlib_zstd_when_present() -> None:
    module = ZstdCodec()._zstd
    expected = "compression.zstd" if sys.version_info >= (3, 14) else "backports.zstd"
    assert module.__name__ == expected


def test_missing_zstd_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("compression", "compression.zstd", "backports", "backports.zstd"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import raise ImportError
    with pytest.raises(BackendUnavailableError):
        ZstdCodec()
    with pytest.raises(BackendUnavailableError):
        zstd_module.load_zstd()


def test_large_window_without_content_size_is_refused() -> None:
    # 64 MiB window, no content size: the decoder would reserve the whole window.
    frame = bytearray(rle_frame(MiB))
    frame[5] = (26 - 10) << 3  # window descriptor: 2**26
    with pytest.raises(LimitExceededError):
        ZstdCodec().decompress(bytes(frame), MiB)
    # ... but is fine when the caller allows that much output.
    assert ZstdCodec().decompress(bytes(frame), 64 * MiB) == bytes(MiB)


def test_compressor_is_reused_per_thread_and_frames_stay_independent() -> None:
    codec = ZstdCodec()
    first = codec.compress(b"a" * 10_000)
    second = codec.compress(b"b" * 20_000)
    assert codec.compress(b"a" * 10_000) == first  # no state leaks from frame to frame
    assert codec.decompress(second, 20_000) == b"b" * 20_000


def test_threads_do_not_interfere() -> None:
    from concurrent.futures import ThreadPoolExecutor

    codec = ZstdCodec()
    chunks = [bytes([i]) * (100_000 + i) + bytes(range(256)) * i for i in range(32)]
    with ThreadPoolExecutor(4) as pool:
        frames = list(pool.map(codec.compress, chunks))
        outs = list(pool.map(lambda f_c: codec.decompress(f_c[0], len(f_c[1])),
                             zip(frames, chunks)))
    assert outs == chunks


def test_declared_size_over_limit_is_refused_before_decoding() -> None:
    # The body is garbage: only a check of the header's content size can give LimitExceeded.
    frame = rle_frame(MiB, declared=64 * MiB)[:10] + b"\xff" * 50
    with pytest.raises(LimitExceededError):
        ZstdCodec().decompress(frame, MiB)
