"""Crash safety (issue 4 §4): SIGKILL at a few hundred exact write points, torn,
dropped and power-lost writes, ENOSPC and a failing fsync.

Every point runs a deterministic workload (tests/crash/child.py) in its own
writer process and meets its fault at the N-th ``os.pwrite``/``os.fsync``
call; the harness (tests/crash/harness.py) then checks that the archive opens
at the last durable commit (or the next one, when its slot write finished),
holds exactly that commit's content, verifies, and takes new commits. Points
are spread over every write site (page writes, the fsync before the slot, the
slot write, its fsync, redaction after the commit and at the next session's
start, creation, compaction). A failing point prints its replay command, e.g.
``PYTHONPATH=tests .venv/bin/python -m crash.harness replay rm 2 kill 57``.
Thousands of points: ``.venv/bin/python bench/bench_crash.py --points 5000``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import lockbox
from crash import child as C
from crash import harness as H

SEEDS = (1, 2)
WORKLOADS = ("add", "rm", "env", "commit", "compact")
# SIGKILL points per (workload, seed) run, and the least each workload must reach:
# 50 + 50 + 40 + 60 = 200 without compaction, 230 with it.
KILLS_PER_RUN = {"add": 25, "rm": 25, "env": 20, "commit": 30, "compact": 15}
NO_COMPACT = ("lockbox has no compaction yet (neither Lockbox.compact nor "
              "lockbox.formats.lbox.write.compact())")


def _workloads() -> list[str]:
    return [w for w in WORKLOADS if w != "compact" or C.compact_available()]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[H.Pool]:
    with H.Pool(tmp_path_factory.mktemp("crash")) as p:
        yield p


@pytest.fixture(scope="module")
def traces(pool: H.Pool) -> dict[tuple[str, int], list[tuple[str, str]]]:
    """Fault-free runs of every plan (also checked: they end at the model's state)."""
    trace_of, bad = H.traces(pool, _workloads(), SEEDS)
    assert not bad, "fault-free runs failed:\n" + H.failure_report(bad)
    return trace_of


def _of(traces: dict[tuple[str, int], list[tuple[str, str]]], *workloads: str
        ) -> dict[tuple[str, int], list[tuple[str, str]]]:
    return {k: v for k, v in traces.items() if k[0] in workloads}


def _check(results: list[H.Result]) -> None:
    bad = [r for r in results if not r.ok]
    assert not bad, (f"{len(bad)} of {len(results)} crash points failed:\n"
                     + H.failure_report(bad))


@pytest.mark.parametrize("workload", WORKLOADS)
def test_sigkill_at_every_kind_of_write(pool: H.Pool, traces: dict, workload: str) -> None:
    if workload == "compact" and not C.compact_available():
        pytest.skip(NO_COMPACT)
    mine = _of(traces, workload)
    points = H.make_points(mine, "kill", KILLS_PER_RUN[workload])
    assert len(points) >= KILLS_PER_RUN[workload] * len(SEEDS)
    results = pool.run(points)
    _check(results)
    # Every write site of the workload was hit at least once.
    sites = {label for t in mine.values() for _, label in t}
    hit = {r.label for r in results}
    assert sites <= hit, f"write sites never killed at: {sorted(sites - hit)}"
    # Both outcomes occur: killed before the slot write (previous commit) and after
    # it (the new commit, during redaction).
    assert {r.outcome for r in results} >= {"last", "next"}


@pytest.mark.parametrize("mode, per_run", [("torn", 4), ("drop", 4), ("power", 6)])
def test_torn_dropped_and_lost_writes(pool: H.Pool, traces: dict, mode: str,
                                      per_run: int) -> None:
    results = pool.run(H.make_points(traces, mode, per_run))
    assert len(results) >= per_run * len(traces)
    _check(results)
    if mode == "power":  # the power cuts did lose writes (not only empty logs)
        assert sum(" lost" in r.detail and ", 0 lost," not in r.detail
                   for r in results) >= len(results) // 4


@pytest.mark.parametrize("mode, per_run", [("enospc", 6), ("enospc-short", 6),
                                           ("fsync-eio", 5)])
def test_full_disk_and_failing_fsync(pool: H.Pool, traces: dict, mode: str,
                                     per_run: int) -> None:
    """The failure surfaces as a LockboxError (never a raw OSError), the archive
    keeps its previous commit (or the new one, when only redaction failed) and
    verifies, and a writer works once space is back."""
    results = pool.run(H.make_points(traces, mode, per_run))
    _check(results)
    hit = {r.label for r in results}
    if mode != "fsync-eio":
        assert {"commit:slot", "commit:redact", "begin:redact", "commit:pages"} <= hit
    else:
        assert {"commit:fsync-pages", "commit:fsync-slot", "commit:fsync-redact"} <= hit


# -- a commit that fails once its slot write has begun -----------------------------------


def _archive(tmp_path: Path) -> tuple[lockbox.Lockbox, Path]:
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", argon2=C.WEAK, chunk_size=4096)
    with box.writer() as w:
        w.add_bytes("keep.txt", b"committed before the failure " * 300)
    return box, path


def _failing_after_slot(fault: str) -> tuple:
    """os.pwrite/os.fsync replacements: ``eio`` fails the fsync that follows the slot
    write; ``short`` writes half of the slot image, then reports ENOSPC."""
    real_pwrite, real_fsync = os.pwrite, os.fsync
    state = {"slot": False, "done": False}

    def pwrite(fd: int, data, offset: int) -> int:  # type: ignore[no-untyped-def]
        if offset < C.SUPERBLOCK_SIZE and not state["done"]:
            if fault == "short":
                if state["slot"]:
                    state["done"] = True
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                state["slot"] = True
                return real_pwrite(fd, memoryview(data)[:len(data) // 2], offset)
            state["slot"] = True
        return real_pwrite(fd, data, offset)

    def fsync(fd: int) -> None:
        if fault == "eio" and state["slot"] and not state["done"]:
            state["done"] = True
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    return pwrite, fsync


@pytest.mark.parametrize("fault", ["eio", "short"])
@pytest.mark.parametrize("explicit", [False, True], ids=["commit-on-exit", "explicit-commit"])
def test_commit_failing_after_its_slot_write_keeps_the_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, explicit: bool) -> None:
    """Once the slot write has begun, the new commit may be the durable one (a short
    write can hold the whole used part of the slot; a failed fsync does not undo the
    write): whatever the writer does on the error, the archive must open at the old
    or the new commit and verify -- an abort must not cut the new commit's pages."""
    box, path = _archive(tmp_path)
    pwrite, fsync = _failing_after_slot(fault)
    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fsync", fsync)
    new = os.urandom(3 * 4096 + 5)
    with pytest.raises(lockbox.LockboxError), box.writer() as w:
        w.add_bytes("new.bin", new)
        if explicit:
            w.commit()
    monkeypatch.undo()
    with lockbox.open(path, password="pw") as fresh:
        report = fresh.verify()
        assert report.ok, (f"opened at generation {fresh.generation}: {report.problems}")
        assert fresh.read_bytes("keep.txt") == b"committed before the failure " * 300
        if fresh.exists("new.bin"):
            assert fresh.read_bytes("new.bin") == new
        with fresh.writer() as w:
            w.add_bytes("later.txt", b"space is back")
        assert fresh.verify().ok
