"""PageWriter: a batch of frames placed by ``append_many`` writes the same pages, byte
for byte, with the same refs, as one ``append`` per frame (page changes, buffer flushes
and growth inside a batch included)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockbox.formats.lbox.frames import FrameSealer
from lockbox.formats.lbox.wire.constants import PAGE_UNIT, FrameKind
from lockbox.formats.lbox.write.pages import PageWriter
from lockbox.platform import default_codec, default_crypto


class _FixedCrypto:
    """The platform's crypto with fixed random bytes, so two sealers seal alike."""

    def __init__(self) -> None:
        self._real = default_crypto()

    def random_bytes(self, n: int) -> bytes:
        return bytes(range(n))

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def _write(path: Path, plains: list[bytes], batches: list[int] | None) -> tuple[bytes, list]:
    sealer = FrameSealer(_FixedCrypto(), default_codec(), b"A" * 16, b"K" * 32)  # type: ignore[arg-type]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        w = PageWriter(fd, PAGE_UNIT, 7, sealer)
        refs = []
        if batches is None:
            refs = [w.append(FrameKind.DATA_CHUNK, p) for p in plains]
        else:
            start = 0
            for n in batches:
                refs += w.append_many(FrameKind.DATA_CHUNK, plains[start:start + n])
                start += n
            assert start == len(plains)
        w.close_page()
        assert w.end_offset == w.end
        stats = (w.pages_written, w.bytes_written, w.end)
    finally:
        os.close(fd)
    return path.read_bytes(), [refs, stats]


@pytest.mark.parametrize("sizes", [
    [1100] * 3000,  # several pages and buffer flushes in one batch
    [10, 300_000, 5, 900_000, 2_000_000, 7],  # a frame larger than the buffer: growth
    [],
])
def test_append_many_writes_what_appends_write(tmp_path: Path, sizes: list[int]) -> None:
    plains = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    one, one_meta = _write(tmp_path / "one", plains, None)
    for batches in ([len(plains)], [1] * len(plains), [7, 0, 11, len(plains)]):
        cut = []
        left = len(plains)
        for n in batches:
            cut.append(min(n, left))
            left -= cut[-1]
        if left:
            cut.append(left)
        many, many_meta = _write(tmp_path / "many", plains, cut)
        assert many == one and many_meta == one_meta


def test_writeback_starts_once_a_session_wrote_enough(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Below WRITEBACK_AFTER no writeback is asked for (a small add never loads ctypes);
    crossing it asks once for everything written so far, then for each full buffer."""
    from lockbox.formats.lbox.write import pages as pages_mod

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(pages_mod, "start_writeback",
                        lambda fd, offset, size: calls.append((offset, size)))
    monkeypatch.setattr(pages_mod, "WRITEBACK_AFTER", 3 << 20)
    plains = [bytes([i % 251]) * 100_000 for i in range(30)]  # ~3 MiB: three flushes
    data, _ = _write(tmp_path / "a", plains[:20], None)  # ~2 MiB: under the threshold
    assert calls == []
    data, _ = _write(tmp_path / "b", plains + plains, None)  # ~6 MiB
    assert len(calls) >= 3
    first_offset, first_size = calls[0]
    assert first_offset == PAGE_UNIT and first_size >= 3 << 20  # the first three buffers
    for (offset, size), (prev_offset, prev_size) in zip(calls[1:], calls):
        assert offset == prev_offset + prev_size and size >= 1 << 20  # full buffers
    assert calls[-1][0] + calls[-1][1] <= len(data)
