"""RFC 9110 §14 byte ranges: parse a ``Range`` header against a known size.

Pure functions, no I/O. :func:`parse_range` answers one of three things:

* :data:`IGNORE`: serve the whole representation with 200. That is the answer
  to anything that is not a syntactically valid ``bytes`` ranges-specifier
  (unknown unit, ``bytes=``, ``bytes=5-2``, stray spaces inside a range, ...),
  as §14.2 allows ("a server MAY ignore ... an invalid ranges-specifier"), and
  to a satisfiable range on an empty representation (a zero-length body has no
  byte to put in a ``Content-Range``);
* :data:`UNSATISFIABLE` (416 with ``Content-Range: bytes */N``): every range
  starts at or past the end (``bytes=N-``, ``bytes=-0``), or the header lists
  more than :data:`MAX_RANGES` ranges (§14.2 lets a server reject those; a 200
  would send the whole archive);
* a tuple of ``(start, stop)`` pairs, stop exclusive, clamped to the size,
  sorted and coalesced when they overlap or touch (§15.3.7.2 allows coalescing
  and tells clients not to rely on the order or number of parts).

The grammar (§14.1.1, §5.6.1 list rules)::

    ranges-specifier = range-unit "=" range-set      ; unit case-insensitive
    range-set        = 1#range-spec                   ; OWS only around commas
    range-spec       = first-pos "-" [ last-pos ] / "-" suffix-length
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "IGNORE",
    "MAX_RANGES",
    "UNSATISFIABLE",
    "RangeResult",
    "content_range",
    "parse_range",
]

#: More ranges than this in one header is refused (416), a DoS guard (§14.2).
MAX_RANGES: Final = 64


@dataclass(frozen=True, slots=True)
class _Verdict:
    name: str

    def __repr__(self) -> str:
        return self.name


#: Serve 200 with the whole representation (the Range header is ignored).
IGNORE: Final = _Verdict("IGNORE")
#: Answer 416 with ``Content-Range: bytes */size``.
UNSATISFIABLE: Final = _Verdict("UNSATISFIABLE")

RangeResult = _Verdict | tuple[tuple[int, int], ...]

_UNIT = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=(.*)$", re.DOTALL)
_SPEC = re.compile(r"^(?:([0-9]+)-([0-9]*)|-([0-9]+))$")
_OWS = " \t"
_HUGE: Final = 1 << 64  # stands for any position past every real file


def _int(digits: str) -> int:
    # Bounded: Python refuses int() of > 4300 digits, and no file is that big.
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else _HUGE


def _digits_less(a: str, b: str) -> bool:
    a, b = a.lstrip("0") or "0", b.lstrip("0") or "0"
    return (len(a), a) < (len(b), b)


def _split_list(text: str) -> list[str] | None:
    """Split a ``1#element`` list; empty elements are skipped (§5.6.1.2)."""
    out = []
    for item in text.split(","):
        item = item.strip(_OWS)
        if item:
            out.append(item)
    return out or None


#: The form clients send (one closed range, no spaces): answered without the general
#: parser, with the same result (18 digits cannot overflow, so no clamping to _HUGE).
_SIMPLE = re.compile(r"bytes=([0-9]{1,18})-([0-9]{1,18})")


def parse_range(value: str | None, size: int) -> RangeResult:
    """Evaluate a ``Range`` field value for a GET of ``size`` bytes."""
    if value is None:
        return IGNORE
    simple = _SIMPLE.fullmatch(value)
    if simple is not None:
        first_byte, last_byte = int(simple.group(1)), int(simple.group(2))
        if last_byte >= first_byte:  # (else invalid: the general parser says IGNORE)
            if first_byte >= size:
                return UNSATISFIABLE
            return ((first_byte, min(last_byte + 1, size)),)
    match = _UNIT.match(value.strip(_OWS))
    if match is None or match.group(1).lower() != "bytes":
        return IGNORE
    rest = match.group(2)
    if rest[:1] in (" ", "\t"):  # "bytes= 0-1": no OWS allowed after "="
        return IGNORE
    items = _split_list(rest)
    if items is None:
        return IGNORE
    specs: list[tuple[int | None, int | None]] = []
    for item in items:
        m = _SPEC.match(item)
        if m is None:
            return IGNORE
        first, last, suffix = m.groups()
        if suffix is not None:
            specs.append((None, _int(suffix)))
        else:
            if last and _digits_less(last, first):  # §14.1.1: last < first is invalid
                return IGNORE
            specs.append((_int(first), _int(last) if last else None))
    if len(specs) > MAX_RANGES:
        return UNSATISFIABLE
    chosen: list[tuple[int, int]] = []
    for first_pos, last_pos in specs:
        if first_pos is None:  # suffix range: the last `last_pos` bytes
            assert last_pos is not None
            if last_pos == 0:
                continue
            if size == 0:  # satisfiable but no byte exists: send the (empty) whole
                return IGNORE
            chosen.append((max(0, size - last_pos), size))
        elif first_pos < size:
            stop = size if last_pos is None else min(last_pos + 1, size)
            chosen.append((first_pos, stop))
    if not chosen:
        return UNSATISFIABLE
    return _coalesce(chosen)


def _coalesce(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    ranges.sort()
    merged = [ranges[0]]
    for start, stop in ranges[1:]:
        last_start, last_stop = merged[-1]
        if start <= last_stop:
            merged[-1] = (last_start, max(last_stop, stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def content_range(start: int, stop: int, size: int) -> str:
    """``bytes first-last/size`` for the half-open range ``[start, stop)``."""
    return f"bytes {start}-{stop - 1}/{size}"
