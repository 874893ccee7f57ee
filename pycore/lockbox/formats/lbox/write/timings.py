"""Coarse stage timings of a write session, for diagnostics (``LOCKBOX_IMPORT_TIMINGS=1``;
``lockbox add`` then prints them).

The hot loops call a :class:`Timer` unconditionally: by default it is :data:`NO_TIMER`,
whose methods do nothing, so there is no branch on "timing enabled?" per chunk or per
file. Stamps chain: ``t = timer.now()`` ... ``t = timer.add("read", t)`` adds the time
since ``t`` to a stage and returns the new stamp.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

__all__ = ["STAGES", "Timer", "StageTimer", "NO_TIMER", "timer_from_env"]

STAGES = ("read", "prepare", "write", "commit")


class Timer:
    """No timing: every method is a no-op (``totals`` is None)."""

    __slots__ = ()
    totals: dict[str, float] | None = None

    def now(self) -> float:
        return 0.0

    def add(self, stage: str, since: float) -> float:
        """Add the seconds since ``since`` to ``stage``; return the new stamp."""
        return 0.0

    def add_seconds(self, stage: str, seconds: float) -> None:
        """Add seconds measured elsewhere (e.g. waiting for the pipeline's workers)."""


class StageTimer(Timer):
    """Totals per stage, in seconds (``totals``: one key per :data:`STAGES`)."""

    __slots__ = ("totals",)

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def now(self) -> float:
        return time.perf_counter()

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.totals[stage] += now - since
        return now

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.totals[stage] += seconds


NO_TIMER = Timer()


def timer_from_env(environ: Mapping[str, str] = os.environ) -> Timer:
    """A :class:`StageTimer` when ``LOCKBOX_IMPORT_TIMINGS=1``, else :data:`NO_TIMER`."""
    return StageTimer() if environ.get("LOCKBOX_IMPORT_TIMINGS") == "1" else NO_TIMER
