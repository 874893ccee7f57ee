"""Tests of lockbox.formats.uri: codec, reader flows, writer, vectors, interop, HTTP.

``independent.py`` here is the oracle: a reader and writer of the seed written without
lockbox. Shared helpers below open a session and run its flows with ``run_sync``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from lockbox.drivers import run_sync
from lockbox.formats.uri import UriFormat, UriSession
from lockbox.info import EntryInfo
from lockbox.protocol import OpenOptions
from lockbox.sources import BytesSource
from lockbox.sources.base import RangeSource

__all__ = ["open_session", "walk_all", "VECTORS", "session_of", "FUZZ", "ROUND_TRIP"]

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.function_scoped_fixture]
# derandomize: the same examples on every run (deterministic CI), bounded counts.
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=_HEALTH)
ROUND_TRIP = settings(max_examples=60, deadline=None, derandomize=True,
                      suppress_health_check=_HEALTH)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "uri"


def open_session(source: RangeSource, **settings: Any) -> UriSession:
    return run_sync(UriFormat().open_flow(source.size, OpenOptions(settings=settings)), source)


def session_of(data: bytes, **settings: Any) -> tuple[UriSession, BytesSource]:
    src = BytesSource(data)
    return open_session(src, **settings), src


def walk_all(session: UriSession, source: RangeSource, path: str = "") -> list[EntryInfo]:
    out: list[EntryInfo] = []
    run_sync(session.walk_flow(path, out.extend), source)
    return out
