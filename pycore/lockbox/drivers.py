"""Flows and their two drivers.

The read engine is written once, as generator *flows*: a flow yields a
:class:`Read` (a batch of byte ranges it needs, one round trip) and is sent
back the list of blobs, in the same order. It finally returns its result.
A driver runs a flow against a source: :func:`run_sync` with a
:class:`~lockbox.sources.base.RangeSource`, :func:`run_async` with an
:class:`~lockbox.sources.base.AsyncRangeSource` (whose reads of one batch run
concurrently). There is no event loop inside the core.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from .ranges import ByteRange
from .sources.base import AsyncRangeSource, RangeSource

__all__ = ["Read", "Flow", "run_sync", "run_async", "read_one", "resume"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Read:
    """One round trip: every range in the batch may be fetched concurrently."""

    ranges: tuple[ByteRange, ...]


Flow = Generator[Read, list[bytes], T]


def resume(flow: Generator[R, Any, Any], answer: Any = None,
           error: BaseException | None = None) -> R | None:
    """One step of a driver that streams (runs a flow for what it puts aside, not for its
    result): send ``answer`` into ``flow`` (or throw ``error`` into it, so it may handle
    it); its next request, or None once it has ended."""
    try:
        return flow.throw(error) if error is not None else flow.send(answer)
    except StopIteration:
        return None


def read_one(r: ByteRange) -> Flow[bytes]:
    blobs = yield Read((r,))
    return blobs[0]


def run_sync(flow: Generator[Read, list[bytes], T], source: RangeSource) -> T:
    try:
        request = next(flow)
        while True:
            try:
                blobs = source.read(request.ranges)
            except BaseException as exc:  # let the flow see (and maybe handle) it
                request = flow.throw(exc)
                continue
            request = flow.send(blobs)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(flow: Generator[Read, list[bytes], T], source: AsyncRangeSource) -> T:
    try:
        request = next(flow)
        while True:
            try:
                blobs = await source.read(request.ranges)
            except BaseException as exc:
                request = flow.throw(exc)
                continue
            request = flow.send(blobs)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


