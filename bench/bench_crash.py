"""Crash-safety sweep (issue 4 §4): thousands of fault points, the same harness as
tests/test_crash.py.

    .venv/bin/python bench/bench_crash.py [--points 5000] [--jobs N] [--work DIR] [--write]

Each point runs a deterministic workload (add, rm, env, commit and, when lockbox
has it, compact) in a writer process that meets its fault at an exact
``os.pwrite``/``os.fsync`` call: SIGKILL, a torn or dropped write, a power cut
losing unsynced writes, ENOSPC (plain or after a short write) or a failing
fsync. The archive must then open at the last durable commit (or the next one,
when its slot write finished), hold exactly that content, verify, and take new
commits. Prints a markdown summary for docs/PERFORMANCE.md (``--write`` puts it
in the ``crash`` section there); exits 1 if any point failed, listing replay
commands.
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from common import machine, today, write_section  # noqa: E402

from crash import child as C  # noqa: E402
from crash import harness as H  # noqa: E402

# Share of the points per fault mode.
SHARES = {"kill": 0.50, "torn": 0.10, "drop": 0.10, "power": 0.15, "enospc": 0.05,
          "enospc-short": 0.05, "fsync-eio": 0.05}
POINTS_PER_RUN = 40  # about this many points per (workload, seed) plan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=5000, help="fault points to run (≈)")
    ap.add_argument("--jobs", type=int, default=None, help="fork servers (default: cores)")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--seed-base", type=int, default=1, help="first plan seed")
    ap.add_argument("--keep", action="store_true", help="keep every point's directory")
    ap.add_argument("--write", action="store_true",
                    help="write the summary into docs/PERFORMANCE.md (section 'crash')")
    a = ap.parse_args()

    workloads = [w for w in C.WORKLOADS if w != "compact" or C.compact_available()]
    runs = max(1, math.ceil(a.points / POINTS_PER_RUN))
    nseeds = max(1, math.ceil(runs / len(workloads)))
    seeds = list(range(a.seed_base, a.seed_base + nseeds))
    work = a.work or tempfile.mkdtemp(prefix="lockbox-crash-bench-")
    t0 = time.monotonic()
    done = 0

    def progress(res: H.Result) -> None:
        nonlocal done
        done += 1
        if done % 250 == 0:
            print(f"  {done} points, {time.monotonic() - t0:.0f} s", file=sys.stderr)

    with H.Pool(work, a.jobs, keep=a.keep) as pool:
        print(f"tracing {len(workloads)} workloads x {len(seeds)} seeds ...", file=sys.stderr)
        trace_of, bad_traces = H.traces(pool, workloads, seeds)
        points: list[H.Point] = []
        for mode, share in SHARES.items():
            per_run = max(1, math.ceil(share * a.points / max(1, len(trace_of))))
            points += H.make_points(trace_of, mode, per_run)
        print(f"running {len(points)} points on {pool.jobs} fork servers ...", file=sys.stderr)
        results = pool.run(points, progress)
    seconds = time.monotonic() - t0
    results = bad_traces + results
    failed = [r for r in results if not r.ok]
    by_mode = {m: sum(r.point.mode == m for r in results) for m in SHARES}
    command = " ".join([".venv/bin/python bench/bench_crash.py",
                        *(shlex.quote(x) for x in sys.argv[1:])])
    lines = [
        "### Crash safety (`bench/bench_crash.py`)",
        "",
        f"- Date: {today()}",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        f"- Points run: {sum(by_mode.values())} "
        f"({', '.join(f'{m} {n}' for m, n in by_mode.items())}) over "
        f"{len(workloads)} workloads ({', '.join(workloads)}) x {len(seeds)} seeds, "
        f"plus {len(trace_of)} fault-free runs",
        f"- Failures: {len(failed)}",
        f"- Time: {seconds:.0f} s on {pool.jobs} fork servers",
        "",
        "Outcome after the fault: the archive opened at the last journaled commit, or "
        "at the next one (its slot write had finished); \"other\": no archive yet "
        "(killed while creating it) or a failing point.",
        "",
        H.summary_table(results),
        "",
        "Faults by write site (`commit:slot` = the slot write, `commit:redact` = zeroing "
        "after the commit, `begin:redact` = the next session finishing it, ...):",
        "",
        H.label_table(results),
    ]
    if not C.compact_available():
        lines += ["", "Compaction: not run (lockbox has no `compact` yet)."]
    if failed:
        lines += ["", "Failing points (first 20):", "", "```",
                  H.failure_report(failed), "```"]
    md = "\n".join(lines)
    print(md)
    if a.write:
        write_section("crash", md)
    if not a.keep and not failed and a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
