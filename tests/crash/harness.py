"""Runs crash points and checks what survives (shared by tests/test_crash.py and
bench/bench_crash.py).

A *point* is ``(workload, seed, mode, at)``: the writer process
(:mod:`crash.child`) runs the workload's plan and meets its fault at its
``at``-th ``os.pwrite``/``os.fsync`` call. The checker then, in the writer's
parent process:

1. (``power`` mode) undoes a random subset of the writes made since the last
   fsync -- whole writes lost, or a run of 512-byte sectors of one;
2. reads the journal: the last line is the last commit the writer saw durable;
3. opens the archive (``lockbox.open``): it MUST open, at the journaled
   generation with exactly the journaled state, or at the next commit point
   (its slot write finished before the kill) with exactly that state -- both
   recomputed from the seed by the model in ``child``;
4. ``verify()`` MUST be ok;
5. a new writer commits changes (add, env, remove: this runs the redaction a
   killed session left to do), then another one (page reuse); the state and
   ``verify()`` are checked after each, and once more after a fresh open.

Points run in fork servers (``python -m crash.harness serve``, one per core):
each server imports lockbox once and forks the writer for every point, so a
point costs milliseconds, not an interpreter start.

Replay one point (keeps its directory)::

    PYTHONPATH=tests .venv/bin/python -m crash.harness replay WORKLOAD SEED MODE AT
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pickle
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import lockbox

from . import child as C

TESTS_DIR = Path(__file__).resolve().parent.parent
PAGE_HEADER = 32
WRITER_TIMEOUT = 60.0  # one writer run (it is a few hundred milliseconds)
JOB_TIMEOUT = 180.0  # one point, writer and checks, as seen by the pool


@dataclass(frozen=True)
class Point:
    workload: str
    seed: int
    mode: str
    at: int = 0
    fault_seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.workload}-s{self.seed}-{self.mode}-{self.at}"

    def replay(self) -> str:
        return (f"PYTHONPATH=tests .venv/bin/python -m crash.harness replay {self.workload} "
                f"{self.seed} {self.mode} {self.at} --fault-seed {self.fault_seed}")


@dataclass
class Result:
    point: Point
    label: str = ""  # where the fault hit (e.g. "commit:slot")
    outcome: str = ""  # "last" / "next" commit point, "no-archive", "completed"
    generation: int = 0
    detail: str = ""  # power loss summary, error raised, ...
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    trace: list[tuple[str, str]] | None = None  # count mode only
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Result:
        d = json.loads(text)
        d["point"] = Point(**d["point"])
        if d["trace"] is not None:
            d["trace"] = [tuple(t) for t in d["trace"]]
        return cls(**d)

    def describe(self) -> str:
        p = self.point
        head = (f"{p.workload} seed={p.seed} mode={p.mode} at={p.at} "
                f"fault_seed={p.fault_seed} ({self.label or 'no fault hit'})")
        lines = [head, *("    " + q for q in self.problems)]
        if self.detail:
            lines.append(f"    detail: {self.detail}")
        lines.append(f"    replay: {p.replay()}")
        return "\n".join(lines)


# -- the model, cached per plan --------------------------------------------------------------


@lru_cache(maxsize=64)
def commit_points(workload: str, seed: int) -> list[C.CommitPoint]:
    return C.commit_points(C.plan(workload, seed))


def model_of(snapshot: dict[str, Any]) -> C.Model:
    m = C.Model()
    m.entries = {k: list(v) for k, v in snapshot["entries"].items()}
    m.env = dict(snapshot["env"])
    m.slots = snapshot["slots"]
    return m


def archive_state(box: lockbox.Lockbox) -> dict[str, Any]:
    """The archive's logical state, in the model's shape (every file read in full)."""
    entries: dict[str, list[Any]] = {}
    for e in box.ls("", recursive=True):
        if e.type == "file":
            digest = C._hash(box.read_bytes(e.path))
            if digest != e.blake3:
                raise AssertionError(f"{e.path}: content does not match its entry's BLAKE3")
            entries[e.path] = ["file", digest, e.mode]
        elif e.type == "dir":
            entries[e.path] = ["dir", e.mode]
        else:
            entries[e.path] = ["symlink", e.target, e.mode]
    env = {k: C._hash(v) for k, v in box.env_items()}
    return {"entries": {k: entries[k] for k in sorted(entries)},
            "env": {k: env[k] for k in sorted(env)}, "slots": len(box.info().slots)}


def state_diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    out = []
    we, ge = want["entries"], got["entries"]
    missing = sorted(set(we) - set(ge))
    extra = sorted(set(ge) - set(we))
    changed = sorted(p for p in set(we) & set(ge) if we[p] != ge[p])
    for name, items in (("missing", missing), ("unexpected", extra), ("changed", changed)):
        if items:
            out.append(f"{name} {items[:6]}{'...' if len(items) > 6 else ''}")
    if want["env"] != got["env"]:
        out.append(f"env {sorted(want['env'])} != {sorted(got['env'])} (or values differ)")
    if want["slots"] != got["slots"]:
        out.append(f"key slots {want['slots']} != {got['slots']}")
    return "; ".join(out) or "equal"


# -- faults applied by the parent --------------------------------------------------------------


def power_loss(workdir: str, rng: random.Random) -> str:
    """Undo a random subset of the writes the child made since its last fsync."""
    log_path = os.path.join(workdir, C.POWERLOG)
    path = os.path.join(workdir, C.ARCHIVE)
    if not os.path.exists(log_path):
        return "no power log"
    if not os.path.exists(path):
        return "no archive"
    with open(log_path, "rb") as f:
        data = pickle.load(f)
    ino = os.stat(path).st_ino
    log = [(off, old, new) for i, off, old, new in data["log"] if i == ino]
    if not log:
        return "nothing unsynced"
    base = data["base"][ino]
    lost = torn = 0
    fd = os.open(path, os.O_RDWR)
    try:
        for off, old, _ in reversed(log):  # back to the state at the last fsync
            os.pwrite(fd, old, off)
        os.ftruncate(fd, base)
        for off, _, new in log:  # then replay what survived the power cut
            r = rng.random()
            if r < 0.4:
                lost += 1
                continue
            if r < 0.6 and len(new) > 512:
                n = -(-len(new) // 512)
                a = rng.randrange(n)
                b = rng.randrange(a + 1, n + 1)
                if a:
                    os.pwrite(fd, new[:a * 512], off)
                if b * 512 < len(new):
                    os.pwrite(fd, new[b * 512:], off + b * 512)
                torn += 1
                continue
            os.pwrite(fd, new, off)
    finally:
        os.close(fd)
    return f"power cut: {len(log)} unsynced writes, {lost} lost, {torn} lost sectors"


# -- checking one point ----------------------------------------------------------------------


def _read_json(path: str) -> Any:
    with contextlib.suppress(OSError, ValueError):
        with open(path) as f:
            return json.load(f)
    return None


def _read_journal(workdir: str) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError):
        with open(os.path.join(workdir, C.JOURNAL)) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
    return out


def check_state(box: lockbox.Lockbox, want: C.Model, what: str) -> list[str]:
    problems = []
    try:
        got = archive_state(box)
    except Exception as e:
        return [f"{what}: reading failed: {e!r}"]
    if C.state_digest(got) != want.digest():
        problems.append(f"{what}: state differs: {state_diff(want.snapshot(), got)}")
    report = box.verify()
    if not report.ok:
        problems.append(f"{what}: verify failed: {'; '.join(report.problems[:4])}")
    return problems


def _space_map(path: str, box: lockbox.Lockbox) -> Any:
    from lockbox.formats.lbox.write.spacekeeper import SpaceKeeper

    fd = os.open(path, os.O_RDONLY)
    try:
        return SpaceKeeper(fd, box.run).load(box.view)[0]
    finally:
        os.close(fd)


def freed_ranges(path: str, box: lockbox.Lockbox) -> list[tuple[int, int]]:
    """What the open commit freed: its DEAD frames and the bodies of its pages left
    without live bytes (all to be zeroed once it is durable)."""
    from lockbox.formats.lbox.write.space import FRAMES, KEYDIR, SPACEMAP

    if box.view.commit.space is None:
        return []
    space = _space_map(path, box)
    out = list(space.dead.items())
    out += [(off + PAGE_HEADER, rec.size - PAGE_HEADER) for off, rec in space.pages.items()
            if rec.kind in (FRAMES, KEYDIR, SPACEMAP) and rec.live == 0]
    return out


def stale_bytes(path: str, box: lockbox.Lockbox, generation: int,
                freed: list[tuple[int, int]]) -> list[str]:
    """After a later commit, each range ``generation`` freed holds zeros, except where
    a page written by a later commit reuses it (page headers aside)."""
    from lockbox.formats.lbox.wire.constants import PageKind
    from lockbox.formats.lbox.wire.page import decode_page_header

    if not freed:
        return []
    space = _space_map(path, box)
    data = Path(path).read_bytes()
    starts = sorted(space.pages)
    bad = []
    for off, size in freed:
        end = off + size
        for page in starts:
            pend = page + space.pages[page].size
            if pend <= off or page >= end:
                continue
            try:
                header = decode_page_header(data[page:page + PAGE_HEADER])
            except lockbox.LockboxError:
                header = None  # e.g. a page merged into a FREE neighbour (zeroed)
            if header is not None and header.kind != PageKind.FREE \
                    and header.generation > generation:
                continue  # reused by a later commit
            lo, hi = max(off, page + PAGE_HEADER), min(end, pend)
            if any(data[lo:hi]):
                bad.append(f"bytes {lo}-{hi} freed by generation {generation} are not zeroed "
                           "after the next commit")
    return bad[:3]


def after_crash(path: str, box: lockbox.Lockbox, base: C.Model, seed: int) -> list[str]:
    """New writers must work on the recovered archive (and keep it consistent); the
    first one also finishes the redaction a killed session may have left undone."""
    rng = random.Random(seed)
    generation = box.generation
    try:
        freed = freed_ranges(path, box)
    except Exception as e:
        return [f"loading the space map failed: {e!r}"]
    m = base.copy()
    ops: list[C.Op] = [("add", "after/one.bin", rng.randbytes(5 * 4096 + 100), 0o644),
                       ("env_set", "AFTER", b"1")]
    files = sorted(p for p, e in m.entries.items() if e[0] == "file")
    if files:
        ops.append(("rm", rng.choice(files), False))
    try:
        with box.writer() as w:
            for op in ops:
                C.apply_op(w, op, {})
                m.apply(op)
    except Exception as e:
        return [f"first writer after the crash failed: {e!r}"]
    problems = check_state(box, m, "after one more commit")
    problems += stale_bytes(path, box, generation, freed)
    try:
        with box.writer() as w:
            op = ("add", "after/two.bin", rng.randbytes(3 * 4096 + 7), 0o600)
            C.apply_op(w, op, {})
            m.apply(op)
    except Exception as e:
        return [*problems, f"second writer after the crash failed: {e!r}"]
    problems += check_state(box, m, "after two more commits")
    try:
        with lockbox.open(path, password=C.PASSWORD) as fresh:
            problems += check_state(fresh, m, "reopened after two more commits")
    except Exception as e:
        problems.append(f"reopening after two more commits failed: {e!r}")
    return problems


def check_point(point: Point, workdir: str, status: int | None) -> Result:
    res = Result(point, workdir=workdir)
    kill = _read_json(os.path.join(workdir, C.KILLINFO))
    if kill:
        res.label = kill["label"]
        if "dropped" in kill:
            res.label = f"{kill['dropped']} (dropped; killed at {kill['label']})"
        if "written" in kill:
            res.detail = f"torn: {kill['written']} of {kill['size']} bytes written"
    error = ""
    with contextlib.suppress(OSError):
        error = Path(workdir, C.ERROR).read_text()
    if status is None:
        res.problems.append(f"the writer hung (killed after {WRITER_TIMEOUT:.0f} s)")
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL or not kill:
            res.problems.append(f"the writer died of signal {sig} ({error.strip()[-800:]})")
    elif os.WEXITSTATUS(status) == C.EXIT_RAW_ERROR:
        res.problems.append(f"a non-LockboxError escaped from lockbox: {error.strip()[-1500:]}")
    elif os.WEXITSTATUS(status) != C.EXIT_OK:
        res.problems.append(f"the writer failed (exit {os.WEXITSTATUS(status)}): "
                            f"{error.strip()[-1500:]}")
    if point.mode == "power" and kill:
        rng = random.Random(f"power/{point.fault_seed}")
        res.detail = power_loss(workdir, rng)
    cps = commit_points(point.workload, point.seed)
    journal = _read_journal(workdir)
    commits = [r for r in journal if "k" in r]
    for r in journal:
        if "failed" in r:
            res.label = res.label or r["at"]
            res.detail = f"{r['error']}: {r['message']} (at {r['at']})"
        if "swallowed" in r:
            res.problems.append(f"the injected failure at {r['swallowed']} was swallowed: "
                                "the writer went on as if the write had succeeded")
    for r in commits:
        if r["digest"] != cps[r["k"]].digest:
            res.problems.append(f"harness bug: journal commit point {r['k']} differs from "
                                "the model")
    if point.mode in C.ERROR_MODES and res.label and not any("failed" in r for r in journal) \
            and not res.problems:
        res.problems.append(f"the failure injected at {res.label} was not reported")
    path = os.path.join(workdir, C.ARCHIVE)
    if not commits:
        if not os.path.exists(path):
            res.outcome = "no-archive"  # killed while creating it: nothing to lose
            return res
        candidates: list[tuple[int, set[int] | None]] = [(0, {1})]
    else:
        k, g = commits[-1]["k"], commits[-1]["gen"]
        candidates = [(k, {g})]
        if k + 1 < len(cps):
            kind = cps[k + 1].kind
            candidates.append((k + 1, None if kind == "compact" else
                               {g + 1, g + 2} if kind == "commit2" else {g + 1}))
        if point.mode == "count" and k != len(cps) - 1:
            res.problems.append(f"the plan stopped after commit point {k} of {len(cps) - 1}")
    try:
        box = lockbox.open(path, password=C.PASSWORD)
    except Exception as e:
        res.problems.append(f"the archive does not open: {e!r}")
        return res
    with box:
        res.generation = box.generation
        try:
            got = archive_state(box)
        except Exception as e:
            res.problems.append(f"reading the reopened archive failed: {e!r}")
            got = None
        if got is not None:
            digest = C.state_digest(got)
            floor = commits[-1]["gen"] if commits else 1
            match = next((i for i, gens in candidates if cps[i].digest == digest
                          and (box.generation in gens if gens is not None
                               else box.generation >= floor)), None)
            if match is None:
                i, gens = candidates[0]
                res.problems.append(
                    f"opened at generation {box.generation}, expected {sorted(gens or [])} "
                    f"(last journaled commit point {i}) or the next commit point; state vs "
                    f"last journaled: {state_diff(cps[i].snapshot, got)}")
            else:
                res.outcome = "last" if match == candidates[0][0] else "next"
                if not commits:
                    res.outcome = "created"
                if point.mode == "count":
                    res.outcome = "completed"
        report = box.verify()
        if not report.ok:
            res.problems.append(f"verify failed at generation {box.generation}: "
                                f"{'; '.join(report.problems[:4])}")
        if got is not None:
            res.problems += after_crash(path, box, model_of(got), point.fault_seed)
    return res


def _wait(pid: int, timeout: float) -> int | None:
    """The exit status of ``pid``, or None after killing it when it outlives timeout."""
    deadline = time.monotonic() + timeout
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)  # type: ignore[attr-defined]
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            if pidfd is not None:
                sel = selectors.DefaultSelector()
                sel.register(pidfd, selectors.EVENT_READ)
                sel.select(min(left, 1.0))
                sel.close()
            else:
                time.sleep(0.002)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run_point(point: Point, root: str, keep: bool = False) -> Result:
    """Run one point in a forked writer process, then check it here."""
    t0 = time.monotonic()
    workdir = os.path.join(root, point.name)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    spec = {"dir": workdir, **asdict(point)}
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the writer process
        code = C.EXIT_CHILD_BUG
        try:
            code = C.run_job(spec)
        except BaseException:
            with contextlib.suppress(BaseException):
                C._write_error(workdir, traceback.format_exc())
        finally:
            os._exit(code)
    status = _wait(pid, WRITER_TIMEOUT)
    try:
        res = check_point(point, workdir, status)
    except Exception:
        res = Result(point, problems=[f"the checker failed: {traceback.format_exc()}"],
                     workdir=workdir)
    if point.mode == "count" and res.ok:
        trace = _read_json(os.path.join(workdir, C.TRACE))
        res.trace = [tuple(t) for t in trace] if trace else None
    res.seconds = time.monotonic() - t0
    if res.ok and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# -- fork servers and the pool --------------------------------------------------------------


def serve(root: str) -> None:
    """Read points (JSON lines) on stdin, answer results (JSON lines) on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to the log, not the protocol
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        res = run_point(Point(**msg["point"]), root, keep=msg.get("keep", False))
        out.write(res.to_json() + "\n")
        out.flush()


class Pool:
    """``jobs`` fork servers; ``run(points)`` spreads points over them."""

    def __init__(self, root: str | os.PathLike[str], jobs: int | None = None,
                 keep: bool = False) -> None:
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.jobs = jobs or os.cpu_count() or 1
        self.keep = keep
        self.procs: list[subprocess.Popen[str]] = [self._start(i) for i in range(self.jobs)]

    def _start(self, i: int) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])])
        log = open(os.path.join(self.root, f"server-{i}.log"), "a")
        try:
            return subprocess.Popen([sys.executable, "-m", "crash.harness", "serve", self.root],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    env=env, text=True, bufsize=1)
        finally:
            log.close()

    def run(self, points: Iterable[Point],
            progress: Callable[[Result], None] | None = None) -> list[Result]:
        pending = collections.deque(points)
        results: list[Result] = []
        idle = list(range(self.jobs))
        busy: dict[int, tuple[Point, float]] = {}
        sel = selectors.DefaultSelector()
        try:
            while pending or busy:
                while idle and pending:
                    i = idle.pop()
                    point = pending.popleft()
                    proc = self.procs[i]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(json.dumps({"point": asdict(point), "keep": self.keep})
                                     + "\n")
                    proc.stdin.flush()
                    busy[i] = (point, time.monotonic())
                    sel.register(proc.stdout, selectors.EVENT_READ, i)
                for key, _ in sel.select(timeout=1.0):
                    i = key.data
                    sel.unregister(key.fileobj)
                    point, _ = busy.pop(i)
                    line = self.procs[i].stdout.readline()  # type: ignore[union-attr]
                    if line:
                        res = Result.from_json(line)
                    else:
                        res = Result(point, problems=["the fork server died"])
                        self._restart(i)
                    results.append(res)
                    idle.append(i)
                    if progress is not None:
                        progress(res)
                now = time.monotonic()
                for i, (point, t0) in list(busy.items()):
                    if now - t0 > JOB_TIMEOUT:
                        sel.unregister(self.procs[i].stdout)  # type: ignore[arg-type]
                        del busy[i]
                        self._restart(i)
                        results.append(Result(point, problems=[
                            f"no answer within {JOB_TIMEOUT:.0f} s"]))
                        idle.append(i)
        finally:
            sel.close()
        return results

    def _restart(self, i: int) -> None:
        proc = self.procs[i]
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.procs[i] = self._start(i)

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- choosing points ----------------------------------------------------------------------------


def traces(pool: Pool, workloads: Iterable[str], seeds: Iterable[int]
           ) -> tuple[dict[tuple[str, int], list[tuple[str, str]]], list[Result]]:
    """Fault-free runs: the (kind, label) of every call, per (workload, seed)."""
    points = [Point(w, s, "count") for w in workloads for s in seeds]
    results = pool.run(points)
    out = {(r.point.workload, r.point.seed): r.trace or [] for r in results if r.ok}
    return out, [r for r in results if not r.ok]


def choose(trace: list[tuple[str, str]], n: int, rng: random.Random,
           kinds: tuple[str, ...] = ("pwrite", "fsync"),
           skip_create: bool = False) -> list[int]:
    """Up to ``n`` call numbers (1-based), spread over every label first."""
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, (kind, label) in enumerate(trace, 1):
        if kind in kinds and not (skip_create and label.startswith("create")):
            groups[label].append(i)
    for g in groups.values():
        rng.shuffle(g)
    chosen: list[int] = []
    order = sorted(groups)
    rng.shuffle(order)  # which labels come first when n < their number
    while len(chosen) < n and any(groups.values()):
        for label in order:
            if groups[label] and len(chosen) < n:
                chosen.append(groups[label].pop())
    return sorted(chosen)


def make_points(trace_of: dict[tuple[str, int], list[tuple[str, str]]], mode: str,
                per_run: int, salt: str = "") -> list[Point]:
    """``per_run`` points of ``mode`` for every traced (workload, seed)."""
    kinds: tuple[str, ...] = ("pwrite", "fsync")
    if mode in ("torn", "drop", "enospc", "enospc-short"):
        kinds = ("pwrite",)
    elif mode == "fsync-eio":
        kinds = ("fsync",)
    skip_create = mode in C.ERROR_MODES or mode == "power"
    points = []
    for (workload, seed), trace in sorted(trace_of.items()):
        rng = random.Random(f"{workload}/{seed}/{mode}/{salt}")
        for at in choose(trace, per_run, rng, kinds, skip_create):
            points.append(Point(workload, seed, mode, at, rng.randrange(1 << 30)))
    return points


# -- reporting -------------------------------------------------------------------------------


def summary_table(results: list[Result]) -> str:
    """Markdown: points, outcomes and failures per workload and mode."""
    rows: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    for r in results:
        c = rows[(r.point.workload, r.point.mode)]
        c["points"] += 1
        c[r.outcome or "-"] += 1
        if not r.ok:
            c["failed"] += 1
    lines = ["| workload | mode | points | at last commit | at next commit | other | failed |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (w, m), c in sorted(rows.items()):
        other = c["points"] - c["last"] - c["next"]
        lines.append(f"| {w} | {m} | {c['points']} | {c['last']} | {c['next']} | {other} | "
                     f"{c['failed']} |")
    return "\n".join(lines)


def label_table(results: list[Result]) -> str:
    counts: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    for r in results:
        label = r.label.split(" ")[0] or "(none)"
        counts[label] += 1
        if not r.ok:
            failed[label] += 1
    lines = ["| fault at | points | failed |", "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {failed[k]} |" for k, v in sorted(counts.items())]
    return "\n".join(lines)


def failure_report(results: list[Result], limit: int = 20) -> str:
    bad = [r for r in results if not r.ok]
    text = "\n".join(r.describe() for r in bad[:limit])
    if len(bad) > limit:
        text += f"\n... and {len(bad) - limit} more failing points"
    return text


# -- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crash.harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="fork server (used by Pool)")
    s.add_argument("root")
    r = sub.add_parser("replay", help="run one point here and keep its directory")
    r.add_argument("workload", choices=C.WORKLOADS)
    r.add_argument("seed", type=int)
    r.add_argument("mode", choices=C.MODES)
    r.add_argument("at", type=int)
    r.add_argument("--fault-seed", type=int, default=0)
    r.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        serve(a.root)
        return 0
    root = a.dir or tempfile.mkdtemp(prefix="lockbox-crash-")
    res = run_point(Point(a.workload, a.seed, a.mode, a.at, a.fault_seed), root, keep=True)
    print(res.describe())
    print(f"    outcome: {res.outcome or '-'} at generation {res.generation}; "
          f"files in {res.workdir}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
