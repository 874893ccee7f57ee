"""Byte ranges as values, and the coalescing of adjacent reads."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

__all__ = ["ByteRange", "coalesce", "split_coalesced"]


@dataclass(frozen=True, order=True)
class ByteRange:
    """Half-open range ``[offset, offset + size)`` of a source."""

    offset: int
    size: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.size < 0:
            raise ValueError(f"invalid byte range {self.offset}+{self.size}")

    @property
    def end(self) -> int:
        return self.offset + self.size

    def header_value(self) -> str:
        """The HTTP ``Range`` header value (single closed range) for this range."""
        if self.size == 0:
            raise ValueError("an empty range has no HTTP form")
        return f"bytes={self.offset}-{self.end - 1}"


def coalesce(ranges: Iterable[ByteRange], max_gap: int = 0) -> list[ByteRange]:
    """Merge overlapping or adjacent ranges (gaps up to ``max_gap`` bytes are bridged).

    The result is sorted by offset and covers every input range.
    """
    out: list[ByteRange] = []
    for r in sorted(r for r in ranges if r.size > 0):
        if out and r.offset <= out[-1].end + max_gap:
            last = out[-1]
            out[-1] = ByteRange(last.offset, max(last.end, r.end) - last.offset)
        else:
            out.append(r)
    return out


@overload
def split_coalesced(wanted: Sequence[ByteRange], merged: Sequence[ByteRange],
                    blobs: Sequence[bytes], views: Literal[False] = False) -> list[bytes]: ...


@overload
def split_coalesced(wanted: Sequence[ByteRange], merged: Sequence[ByteRange],
                    blobs: Sequence[bytes], views: Literal[True]) -> list[bytes | memoryview]: ...


def split_coalesced(wanted: Sequence[ByteRange], merged: Sequence[ByteRange],
                    blobs: Sequence[bytes], views: bool = False) -> list[Any]:
    """Cut each wanted range out of the blobs read for the merged ranges.

    A blob may be shorter than its merged range (the source ended); the cut
    pieces are then short too, never padded. A piece that is a whole blob is that blob.
    With ``views``, the other pieces of a ``bytes`` blob are read-only memoryviews of it
    (no copy; bytes are immutable, so a view is as safe to keep as a copy, and it keeps
    the whole blob alive while it lives); pieces of a mutable blob are always copies.
    """
    starts = [m.offset for m in merged]
    out: list[Any] = []
    for w in wanted:
        if w.size == 0:
            out.append(b"")
            continue
        k = bisect_right(starts, w.offset) - 1
        if k < 0 or merged[k].offset > w.offset or w.end > merged[k].end:
            # merged ranges may overlap only if given so: look at every one
            k = next((j for j, m in enumerate(merged)
                      if m.offset <= w.offset and w.end <= m.end), -1)
            if k < 0:  # pragma: no cover - coalesce() guarantees coverage
                raise ValueError(f"range {w} not covered by merged reads")
        blob = blobs[k]
        start = w.offset - merged[k].offset
        if start == 0 and w.size >= len(blob) and type(blob) is bytes:
            out.append(blob)
        elif views and type(blob) is bytes:
            out.append(memoryview(blob)[start:start + w.size])
        else:
            out.append(bytes(blob[start:start + w.size]))
    return out
