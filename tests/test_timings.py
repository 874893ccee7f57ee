"""write/timings.py: LOCKBOX_IMPORT_TIMINGS=1 stage totals; without it a no-op timer, so
the writer's hot loops never branch on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lockbox
from lockbox.formats.lbox.write.timings import (
    NO_TIMER,
    STAGES,
    StageTimer,
    Timer,
    timer_from_env,
)


def test_the_default_timer_records_nothing() -> None:
    assert timer_from_env({}) is NO_TIMER and timer_from_env({"LOCKBOX_IMPORT_TIMINGS": "0"}) \
        is NO_TIMER
    assert NO_TIMER.totals is None and NO_TIMER.now() == 0.0
    assert NO_TIMER.add("read", 5.0) == 0.0
    NO_TIMER.add_seconds("prepare", 3.0)
    assert NO_TIMER.totals is None and not hasattr(NO_TIMER, "__dict__")


def test_stage_timer_chains_stamps() -> None:
    timer = timer_from_env({"LOCKBOX_IMPORT_TIMINGS": "1"})
    assert isinstance(timer, StageTimer) and isinstance(timer, Timer)
    assert timer.totals == dict.fromkeys(STAGES, 0.0)
    t0 = timer.now()
    t1 = timer.add("read", t0 - 2.0)  # two seconds "ago"
    assert t1 >= t0 and timer.totals["read"] >= 2.0
    timer.add_seconds("prepare", 1.5)
    assert timer.totals["prepare"] == 1.5 and timer.totals["write"] == 0.0


@pytest.mark.parametrize("enabled", [False, True])
def test_writer_timings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weak_argon2,
                        enabled: bool) -> None:
    if enabled:
        monkeypatch.setenv("LOCKBOX_IMPORT_TIMINGS", "1")
    else:
        monkeypatch.delenv("LOCKBOX_IMPORT_TIMINGS", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"small")
    (src / "big.bin").write_bytes(os.urandom(300_000))
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=64 * 1024)
    with box, box.writer() as w:
        w.add_tree(src)
        w.commit()
        if not enabled:
            assert w.timings is None
            return
        totals = w.timings
        assert totals is not None and set(totals) == set(STAGES)
        assert all(totals[s] > 0 for s in STAGES), totals
