"""Tests of the pure encoders/decoders in ``lockbox.format``.

Shared here: Hypothesis settings (deterministic, bounded), strategies for the
small structures every decoder embeds (refs), and the two fuzz checks every
module runs: arbitrary bytes, and mutations of valid encodings, may only ever
make a decoder raise FormatError or IntegrityError (both LockboxError
subclasses) — never IndexError, struct.error, UnicodeDecodeError, MemoryError...
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lockbox.errors import FormatError, IntegrityError
from lockbox.formats.lbox.wire.constants import FRAME_HEADER_SIZE, MAX_FRAME_SEALED_SIZE, TAG_SIZE
from lockbox.formats.lbox.wire.refs import Ref

__all__ = ["FUZZ", "ROUND_TRIP", "refs", "decode_or_typed_error", "mutate", "fix_crc",
           "MAX_FRAME_TOTAL"]

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# derandomize: the same examples on every run (CI is deterministic); failures found
# while developing are replayed from the example database anyway.
FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=_HEALTH)
ROUND_TRIP = settings(max_examples=100, deadline=None, derandomize=True,
                      suppress_health_check=_HEALTH)

MAX_FRAME_TOTAL = FRAME_HEADER_SIZE + MAX_FRAME_SEALED_SIZE

refs = st.builds(
    Ref,
    frame_offset=st.one_of(st.integers(0, 1 << 20), st.integers(0, (1 << 64) - 1)),
    frame_size=st.integers(FRAME_HEADER_SIZE + TAG_SIZE, MAX_FRAME_TOTAL),
    tag=st.binary(min_size=16, max_size=16),
)


def decode_or_typed_error(decode: Callable[[bytes], Any], data: bytes) -> Any:
    """Run ``decode``; a failure must be a FormatError or an IntegrityError."""
    try:
        return decode(data)
    except (FormatError, IntegrityError):
        return None


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        if op in ("flip", "set", "delete") and not buf:
            op = "append"
        if op == "flip":
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            i = draw(st.integers(0, len(buf)))
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            i = draw(st.integers(0, len(buf) - 1))
            del buf[i:i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del buf[draw(st.integers(0, len(buf))):]
        else:
            buf += draw(st.binary(min_size=1, max_size=8))
    return bytes(buf)


def mutate(data: bytes) -> st.SearchStrategy[bytes]:
    """A few random edits (bit flips, special bytes, inserts, deletes, cuts) of ``data``."""
    return _mutation(data)


def fix_crc(buf: bytearray, covered: int, at: int | None = None) -> bytes:
    """Recompute a little-endian CRC-32 of ``buf[:covered]`` stored at ``at``
    (default: right after the covered bytes), as a forger would."""
    struct.pack_into("<I", buf, covered if at is None else at, zlib.crc32(bytes(buf[:covered])))
    return bytes(buf)
