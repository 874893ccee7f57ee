"""Big-file throughput of the CLI against ``tar | zstd -3 -T0 | age`` (issue 12).

One 512 MiB incompressible file (from /dev/urandom) in a directory. Both sides run as a
user runs them (a new process each time, Python start-up and imports included), each
timed command is ``sh -c "<command> && sync -f <output>"`` (lockbox's commit already
fsyncs; ``sync -f`` makes the peer's output as durable, and extract's tree too), with the
same hot page cache (the inputs are read once before the rounds). Rounds alternate the
two sides and which goes first; figures are medians. Every timed round holds the
machine-wide bench lock (/tmp/lockbox-bench.lock) and waits for a load average <= 1.5.

* add: ``lockbox add A.lbox DIR`` into a fresh empty public-key archive (``create
  --no-password -r RECIPIENT``: no KDF) vs ``tar -cf - DIR | zstd -3 -T0 | age -r R > out``.
* extract: ``lockbox -i IDENTITY extract A.lbox --to DEST`` vs
  ``age -d -i KEY out | zstd -d | tar -xf - -C DEST``.
* secondary row: the same with a password archive (default Argon2id, about 0.25 s per
  unlock here; age's public-key path pays no KDF).

It also profiles one run of each lockbox command (cProfile of the main thread, tottime by
category) for the "where the time goes" table, and reads ``LOCKBOX_IMPORT_TIMINGS``.
``--pythonpath DIR`` runs another lockbox tree (e.g. an export of an older commit) for a
before/after comparison; ``--no-write`` leaves docs/PERFORMANCE.md alone.

    .venv/bin/python bench/cli_bulk_bench.py [--quick] [--rounds N] [--size-mib N]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pycore"))

from common import ROOT, machine, today, write_section

VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
LOCK = "/tmp/lockbox-bench.lock"
MAX_LOAD = 1.5
PASSWORD = "bench-password-cli-bulk"
SECTION = "cli-bulk-bench"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_tools() -> None:
    missing = [p for p in ("age", "zstd", "tar") if shutil.which(p) is None]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)} ...")
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False,
                   capture_output=True)
    still = [p for p in missing if shutil.which(p) is None]
    if still:
        raise SystemExit(f"missing tools: {' '.join(still)} (apt-get install them)")


@contextlib.contextmanager
def bench_lock() -> Iterator[float]:
    """The machine-wide bench lock, taken once the load average is <= MAX_LOAD (or after
    waiting 90 s); yields the 1-minute load at the start."""
    deadline = time.monotonic() + 90
    while os.getloadavg()[0] > MAX_LOAD and time.monotonic() < deadline:
        time.sleep(3)
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield os.getloadavg()[0]
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Run:
    def __init__(self, seconds: float, user: float, sys_: float) -> None:
        self.seconds, self.user, self.sys = seconds, user, sys_


def timed(cmd: str, env: dict[str, str]) -> Run:
    """Wall, user and system time of ``sh -c cmd`` (and everything it waited for)."""
    subprocess.run(["sync"], check=True)
    t = time.perf_counter()
    proc = subprocess.Popen(["sh", "-c", cmd], env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}")
    return Run(seconds, ru.ru_utime, ru.ru_stime)


def q(p: Path | str) -> str:
    return "'" + str(p).replace("'", "'\\''") + "'"


class Setup:
    def __init__(self, work: Path, size_mib: int, pythonpath: str | None) -> None:
        self.work = work
        self.src = work / "src"
        self.big = self.src / "big.bin"
        self.size = size_mib << 20
        self.env = dict(os.environ, LOCKBOX_PASSWORD=PASSWORD)
        self.env.pop("LOCKBOX_IMPORT_TIMINGS", None)
        if pythonpath:
            self.env["PYTHONPATH"] = pythonpath
        self.lockbox = q(VENV_BIN / "lockbox")
        self.identity = work / "id.txt"
        self.age_key = work / "age.key"

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(list(args), env=env or self.env, check=True,
                             capture_output=True, text=True)
        return out.stdout

    def prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.src.mkdir(exist_ok=True)
        if not self.big.exists() or self.big.stat().st_size != self.size:
            log(f"writing {self.size >> 20} MiB from /dev/urandom ...")
            with open("/dev/urandom", "rb") as r, open(self.big, "wb") as w:
                left = self.size
                while left:
                    n = min(left, 8 << 20)
                    w.write(r.read(n))
                    left -= n
        lb = str(VENV_BIN / "lockbox")
        if not self.identity.exists():
            self.run(lb, "-q", "keygen", "-o", str(self.identity))
        if not self.age_key.exists():
            self.run("age-keygen", "-o", str(self.age_key))
        self.recipient = self.run(lb, "keygen", "--recipient-of", str(self.identity)).strip()
        self.age_recipient = next(
            line.split(":", 1)[1].strip() for line in self.age_key.read_text().splitlines()
            if line.startswith("# public key:"))
        for name, args in (("empty-pk.lbox", ["--no-password", "-r", self.recipient]),
                           ("empty-pw.lbox", [])):
            p = self.work / name
            p.unlink(missing_ok=True)
            self.run(lb, "-q", "create", *args, str(p))
        # The archives extract reads, made once (untimed).
        for kind in ("pk", "pw"):
            p = self.work / f"in-{kind}.lbox"
            shutil.copyfile(self.work / f"empty-{kind}.lbox", p)
            self.run(lb, "-q", "-i", str(self.identity), "add", str(p), str(self.src))
        subprocess.run(f"tar -cf - -C {q(self.work)} src | zstd -3 -T0 -q | "
                       f"age -r {self.age_recipient} > {q(self.work / 'in.age')}",
                       shell=True, check=True)
        self.warm()

    def warm(self) -> None:
        for p in (self.big, self.work / "in-pk.lbox", self.work / "in-pw.lbox",
                  self.work / "in.age"):
            with open(p, "rb") as f:
                while f.read(8 << 20):
                    pass

    # -- the commands --------------------------------------------------------------

    def lockbox_add(self, kind: str) -> str:
        out = self.work / "out.lbox"
        out.unlink(missing_ok=True)
        shutil.copyfile(self.work / f"empty-{kind}.lbox", out)
        ident = f"-i {q(self.identity)} " if kind == "pk" else ""
        return f"{self.lockbox} -q {ident}add {q(out)} {q(self.src)} && sync -f {q(out)}"

    def peer_add(self) -> str:
        out = self.work / "out.age"
        out.unlink(missing_ok=True)
        return (f"tar -cf - -C {q(self.work)} src | zstd -3 -T0 -q | "
                f"age -r {self.age_recipient} > {q(out)} && sync -f {q(out)}")

    def _fresh_dest(self) -> Path:
        dest = self.work / "dest"
        shutil.rmtree(dest, ignore_errors=True)
        return dest

    def lockbox_extract(self, kind: str) -> str:
        dest = self._fresh_dest()
        ident = f"-i {q(self.identity)} " if kind == "pk" else ""
        return (f"{self.lockbox} -q {ident}extract {q(self.work / f'in-{kind}.lbox')} "
                f"--to {q(dest)} && sync -f {q(dest)}")

    def peer_extract(self) -> str:
        dest = self._fresh_dest()
        dest.mkdir()
        return (f"age -d -i {q(self.age_key)} {q(self.work / 'in.age')} | zstd -d -q | "
                f"tar -xf - -C {q(dest)} && sync -f {q(dest)}")

    def check_extracted(self) -> None:
        got = self.work / "dest" / "src" / "big.bin"
        if got.stat().st_size != self.size:
            raise SystemExit("extracted file has the wrong size")


def where_time_goes(s: Setup, cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """One profiled run (cProfile of the main thread): tottime by category, plus the
    process's wall time."""
    prof = s.work / "prof.out"
    t = time.perf_counter()
    subprocess.run([PY, "-m", "cProfile", "-o", str(prof), *cmd], env=env, check=True,
                   capture_output=True)
    wall = time.perf_counter() - t
    st = pstats.Stats(str(prof))
    cats = {"AEAD (ChaCha20-Poly1305)": 0.0, "BLAKE3": 0.0, "zstd": 0.0,
            "file reads": 0.0, "file writes": 0.0, "fsync": 0.0,
            "waiting for other threads": 0.0, "imports": 0.0, "other Python": 0.0}
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = st.stats  # type: ignore[attr-defined]
    for (fname, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.items():
        f = func.lower()
        if "crypt" in f and ("chacha" in f or "aead" in fname or "encrypt" in f
                             or "decrypt" in f):
            cats["AEAD (ChaCha20-Poly1305)"] += tt
        elif "blake3" in f:
            cats["BLAKE3"] += tt
        elif "zstd" in f.lower() or "compress" in f:
            cats["zstd"] += tt
        elif func in ("<built-in method posix.read>", "<built-in method posix.pread>",
                      "<built-in method posix.readv>", "<built-in method posix.preadv>"):
            cats["file reads"] += tt
        elif func in ("<built-in method posix.write>", "<built-in method posix.pwrite>",
                      "<built-in method posix.writev>", "<built-in method posix.pwritev>"):
            cats["file writes"] += tt
        elif "fsync" in f:
            cats["fsync"] += tt
        elif ("acquire" in f or func.startswith("<method 'get' of '_queue")
              or "wait" in f or "join" == func):
            cats["waiting for other threads"] += tt
        elif ("importlib" in fname or "marshal" in f or "create_dynamic" in f
              or "exec_dynamic" in f or "compile" in f or "__build_class__" in f):
            cats["imports"] += tt
        else:
            cats["other Python"] += tt
    cats["process wall (profiled)"] = wall
    return cats


def import_timings(s: Setup) -> str:
    out = s.work / "out.lbox"
    out.unlink(missing_ok=True)
    shutil.copyfile(s.work / "empty-pk.lbox", out)
    env = dict(s.env, LOCKBOX_IMPORT_TIMINGS="1")
    r = subprocess.run([str(VENV_BIN / "lockbox"), "-q", "-i", str(s.identity), "add",
                        str(out), str(s.src)], env=env, check=True, capture_output=True,
                       text=True)
    line = next((ln for ln in (r.stdout + r.stderr).splitlines()
                 if ln.startswith("lockbox-timings")), "")
    return " ".join(line.split("\t")[1:6])


def startup_seconds(s: Setup, n: int = 5) -> float:
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([PY, "-c", "import lockbox.cli"], env=s.env, check=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def fmt_runs(runs: list[Run]) -> str:
    return ", ".join(f"{r.seconds:.2f}" for r in runs)


def med(runs: list[Run], attr: str = "seconds") -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, no password row, "
                    "no profile")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--work", default=str(ROOT / ".cache" / "bench" / "cli-bulk"))
    ap.add_argument("--pythonpath", default=None,
                    help="PYTHONPATH for the lockbox side (another tree, for 'before')")
    ap.add_argument("--label", default="", help="a word for the section's heading")
    ap.add_argument("--no-write", action="store_true", help="do not touch PERFORMANCE.md")
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    ensure_tools()
    s = Setup(Path(args.work), args.size_mib, args.pythonpath)
    load_start = os.getloadavg()
    s.prepare()

    sides: dict[str, list[Run]] = {k: [] for k in (
        "lb-add", "peer-add", "lb-extract", "peer-extract", "lb-add-pw", "lb-extract-pw")}
    loads: list[float] = []
    with_pw = not args.quick
    for i in range(rounds):
        s.warm()
        with bench_lock() as load:
            loads.append(load)
            order = [("lb-add", lambda: s.lockbox_add("pk")), ("peer-add", s.peer_add)]
            if i % 2:
                order.reverse()
            for key, make in order:
                sides[key].append(timed(make(), s.env))
            order = [("lb-extract", lambda: s.lockbox_extract("pk")),
                     ("peer-extract", s.peer_extract)]
            if i % 2:
                order.reverse()
            for key, make in order:
                sides[key].append(timed(make(), s.env))
                s.check_extracted()
            if with_pw:
                sides["lb-add-pw"].append(timed(s.lockbox_add("pw"), s.env))
                sides["lb-extract-pw"].append(timed(s.lockbox_extract("pw"), s.env))
        r = {k: f"{v[-1].seconds:.2f}" for k, v in sides.items() if v}
        log(f"round {i + 1}/{rounds} load {load:.2f}: {r}")
    shutil.rmtree(s.work / "dest", ignore_errors=True)
    (s.work / "out.lbox").unlink(missing_ok=True)
    (s.work / "out.age").unlink(missing_ok=True)

    profile: dict[str, dict[str, float]] = {}
    timings = ""
    startup = 0.0
    if not args.quick:
        with bench_lock():
            startup = startup_seconds(s)
            timings = import_timings(s)
            out = s.work / "out.lbox"
            out.unlink(missing_ok=True)
            shutil.copyfile(s.work / "empty-pk.lbox", out)
            lb = str(VENV_BIN / "lockbox")
            profile["add"] = where_time_goes(
                s, [lb, "-q", "-i", str(s.identity), "add", str(out), str(s.src)], s.env)
            s._fresh_dest()
            profile["extract"] = where_time_goes(
                s, [lb, "-q", "-i", str(s.identity), "extract", str(s.work / "in-pk.lbox"),
                    "--to", str(s.work / "dest")], s.env)
            shutil.rmtree(s.work / "dest", ignore_errors=True)
            out.unlink(missing_ok=True)

    add_ratio = med(sides["lb-add"]) / med(sides["peer-add"])
    ext_ratio = med(sides["lb-extract"]) / med(sides["peer-extract"])

    def verdict(ratio: float, target: float) -> str:
        return "met" if ratio <= target else f"**missed** by {ratio / target - 1:.0%}"

    def row(name: str, target: str, lb: list[Run], peer: list[Run] | None,
            ratio_target: float | None) -> str:
        if peer is None:
            return (f"| {name} | {target} | {med(lb):.2f} s (runs {fmt_runs(lb)}; user "
                    f"{med(lb, 'user'):.2f} s, sys {med(lb, 'sys'):.2f} s) | — | — |")
        ratio = med(lb) / med(peer)
        v = verdict(ratio, ratio_target) if ratio_target else ""
        return (f"| {name} | {target} | {med(lb):.2f} s (runs {fmt_runs(lb)}; user "
                f"{med(lb, 'user'):.2f}, sys {med(lb, 'sys'):.2f}) | {med(peer):.2f} s "
                f"(runs {fmt_runs(peer)}; user {med(peer, 'user'):.2f}, sys "
                f"{med(peer, 'sys'):.2f}) | {ratio:.2f}× {v} |")

    mib = args.size_mib
    lines = [
        f"## CLI big-file throughput vs `tar | zstd | age` (issue 12){args.label} — {today()}",
        "",
        f"Machine: {machine()}. Load average (1 min) at start {load_start[0]:.2f}; at each "
        f"round {', '.join(f'{x:.2f}' for x in loads)}.",
        "",
        f"Command: `.venv/bin/python bench/cli_bulk_bench.py{' --quick' if args.quick else ''}"
        f"{f' --rounds {args.rounds}' if args.rounds else ''}` ({rounds} rounds, "
        "alternating sides and which goes first; medians; the page cache hot for both: "
        "the inputs are read once before each round).",
        "",
        f"What is compared: one {mib} MiB file from /dev/urandom in a directory. Each "
        "timed command is a new process, spawn to exit (Python start-up and imports "
        "included), run as `sh -c \"<command> && sync -f <output>\"` on both sides: "
        "lockbox's commit fsyncs anyway; `sync -f` makes the peer's output (and both "
        "extracted trees) as durable. lockbox: `lockbox -i ID add A.lbox DIR` into a fresh "
        "empty public-key archive (`create --no-password -r RECIPIENT`, no KDF) and "
        "`lockbox -i ID extract A.lbox --to DEST`; peer: `tar -cf - DIR | zstd -3 -T0 | "
        "age -r R > out` and `age -d -i KEY out | zstd -d | tar -xf - -C DEST` (age "
        "X25519, no KDF; zstd level 3 = lockbox's default level).",
        "",
        "| figure | target | lockbox | pipeline | ratio |",
        "|---|---|---|---|---|",
        row(f"add {mib} MiB incompressible", "≤ 1.0×", sides["lb-add"], sides["peer-add"],
            1.0),
        row("extract it", "≤ 0.75×", sides["lb-extract"], sides["peer-extract"], 0.75),
    ]
    if with_pw:
        lines += [
            row("add, password archive (default Argon2id; secondary)", "—",
                sides["lb-add-pw"], sides["peer-add"], None),
            row("extract, password archive (default Argon2id; secondary)", "—",
                sides["lb-extract-pw"], sides["peer-extract"], None),
        ]
    lines += ["", f"Add {add_ratio:.2f}× the pipeline ({verdict(add_ratio, 1.0)}); extract "
              f"{ext_ratio:.2f}× ({verdict(ext_ratio, 0.75)}). The password rows pay one "
              "Argon2id unlock (about 0.25 s here) that age's public-key path does not."]
    if profile:
        lines += ["", "Where the time goes (one profiled run of each lockbox command; "
                  "cProfile of the main thread, tottime in seconds; work done in other "
                  "threads shows in the main thread as waiting):", "",
                  "| stage | add | extract |", "|---|---|---|"]
        for cat in profile["add"]:
            lines.append(f"| {cat} | {profile['add'][cat]:.2f} | "
                         f"{profile['extract'][cat]:.2f} |")
        lines += ["", f"Python start-up + `import lockbox.cli`: {startup:.2f} s (median of "
                  f"5). `LOCKBOX_IMPORT_TIMINGS=1` of one add: {timings}."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
