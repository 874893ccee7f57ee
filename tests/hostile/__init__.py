"""Archives a hostile AUTHOR (a key holder) can write, built with lockbox's own code.

Each builder returns the bytes of one archive, deterministically: randomness from a
seeded SHAKE-256 stream, the writers' clock frozen. They are the crafted cases of the
adversarial corpus (tests/vectors/generate_adversarial.py) and of the tests that show
what a reader does with them (tests/test_two_truths.py, tests/test_unlock_limits.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections.abc import Iterator
from typing import Any

from lockbox.crypto.base import CryptoBackend
from lockbox.platform import default_crypto

__all__ = ["DetCrypto", "frozen_clock", "T0", "MTIME"]

T0 = 1_700_000_000_000_000_000
MTIME = 1_600_000_000_123_456_789


class DetCrypto:
    """The platform backend with ``random_bytes`` from SHAKE-256(label)."""

    def __init__(self, label: str, inner: CryptoBackend | None = None) -> None:
        self._inner = inner or default_crypto()
        self._xof = hashlib.shake_256(b"lockbox/tests/hostile/" + label.encode())
        self._pos = 0
        self.name = f"det-{self._inner.name}"

    def random_bytes(self, size: int) -> bytes:
        out = self._xof.digest(self._pos + size)[self._pos:]
        self._pos += size
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _FrozenTime:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.now = T0

    def time_ns(self) -> int:
        self.now += 1_000_000_000
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def frozen_clock() -> Iterator[None]:
    """``time.time_ns`` of the writer and of archive creation: a fixed sequence."""
    mods = [importlib.import_module(m) for m in ("lockbox.formats.lbox.write.writer",
                                                 "lockbox.formats.lbox.write.newarchive")]
    saved = [m.time for m in mods]  # type: ignore[attr-defined]
    fake = _FrozenTime(saved[0])
    for m in mods:
        m.time = fake  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for m, t in zip(mods, saved):
            m.time = t  # type: ignore[attr-defined]
