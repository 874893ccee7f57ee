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
``--before COMMIT`` (default f77a2ee, main before this work) also times lockbox at that
commit (a ``git archive`` of its ``pycore`` on PYTHONPATH) in the same rounds, for the
before/after rows and tables; ``--no-write`` leaves docs/PERFORMANCE.md alone.

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
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pycore"))

from common import ROOT, machine, today, write_section

VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
# `python -m lockbox`, not the console script: the "before" side (an older pycore on
# PYTHONPATH) must run its own entry point, whatever the installed script names
LB = [PY, "-m", "lockbox"]
LOCK = "/tmp/lockbox-bench.lock"
MAX_LOAD = 1.5
PASSWORD = "bench-password-cli-bulk"
SECTION = "cli-bulk-bench"
BEFORE_COMMIT = "f77a2ee"  # main before issue 12's bulk work
NOTES = """\
What changed since f77a2ee (same format, same durability: every commit still fsyncs twice,
every byte is still authenticated and every content hash checked):

* add: a large file's chunks are read (`readv`/`readinto` into reused buffers) and
  BLAKE3-hashed by a read-ahead thread while the main thread seals. A chunk judged
  incompressible on three 16 KiB zstd samples is stored RAW (FORMAT.md §5 allows it for
  any chunk), its frame plaintext built in place in front of its data and sealed straight
  into the reused page buffer (`cryptography`'s `encrypt_into`): one user-space copy of
  the data instead of six. Compressible chunks are compressed whole, as before (in the
  thread pool with `--jobs`). After each full 1 MiB buffer is written, its writeback is
  started (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, a hint): the commit's fsync then finds
  the data already on its way (commit 0.25 s -> 0.005 s).
* extract: a large file's pieces are written by a write-behind thread (`os.write` releases
  the GIL) while the next chunks are fetched, decrypted and hashed; every 8 MiB written, its
  writeback is started, so the `sync` after it has little left (extract itself still does
  not fsync, like tar).
* Measured and dropped: a write-behind thread for the archive's pages (with 4 MiB writes
  it was slower; with 1 MiB no faster than writing from the sealing thread once reading and
  hashing moved to their own thread: both cores are busy either way).
* Measured: `cryptography` 50's ChaCha20-Poly1305 holds the GIL (two threads sealing 4 MiB
  buffers: no speed-up), so sealing and opening stay on one thread; BLAKE3, zstd, `readv`,
  `os.write` and `sync_file_range` release it.
* Still on extract's main thread, in files outside this work: each 8 MiB batch read is
  copied into one bytes object per chunk (`ranges.split_coalesced`, ~0.13 s per 512 MiB),
  and the BLAKE3 check (`reading.FileReadPlan.accept`) runs there between decryptions
  (~0.12 s); both are candidates for the next step."""


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
        self.lockbox = " ".join(q(a) for a in LB)
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
        if not self.identity.exists():
            self.run(*LB, "-q", "keygen", "-o", str(self.identity))
        if not self.age_key.exists():
            self.run("age-keygen", "-o", str(self.age_key))
        self.recipient = self.run(*LB, "keygen", "--recipient-of", str(self.identity)).strip()
        self.age_recipient = next(
            line.split(":", 1)[1].strip() for line in self.age_key.read_text().splitlines()
            if line.startswith("# public key:"))
        for name, args in (("empty-pk.lbox", ["--no-password", "-r", self.recipient]),
                           ("empty-pw.lbox", [])):
            p = self.work / name
            p.unlink(missing_ok=True)
            self.run(*LB, "-q", "create", *args, str(p))
        # The archives extract reads, made once (untimed).
        for kind in ("pk", "pw"):
            p = self.work / f"in-{kind}.lbox"
            shutil.copyfile(self.work / f"empty-{kind}.lbox", p)
            self.run(*LB, "-q", "-i", str(self.identity), "add", str(p), str(self.src))
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


def where_time_goes(s: Setup, cmd: list[str], env: dict[str, str], runs: int = 3,
                    before_run: Callable[[], object] = lambda: None) -> dict[str, float]:
    """Profiled runs (cProfile of the main thread): per category, the median over
    ``runs`` of the tottime, plus the process's wall time."""
    results = []
    for _ in range(runs):
        before_run()
        results.append(_profile_once(s, cmd, env))
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def _profile_once(s: Setup, cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    prof = s.work / "prof.out"
    if cmd[:len(LB)] == LB:
        # cli.main, not `-m lockbox`: its entry point ends the process with os._exit,
        # before cProfile could write its output
        main = s.work / "cli_main.py"
        main.write_text("import sys\nfrom lockbox import cli\nsys.exit(cli.main())\n")
        cmd = [str(main), *cmd[len(LB):]]
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


def import_timings(s: Setup, env: dict[str, str]) -> str:
    out = s.work / "out.lbox"
    out.unlink(missing_ok=True)
    shutil.copyfile(s.work / "empty-pk.lbox", out)
    env = dict(env, LOCKBOX_IMPORT_TIMINGS="1")
    r = subprocess.run([*LB, "-q", "-i", str(s.identity), "add",
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


def export_before(commit: str, work: Path) -> str:
    """``pycore`` of ``commit`` exported under ``work`` (once); its path for PYTHONPATH."""
    dest = work / f"before-{commit}"
    if not (dest / "pycore" / "lockbox" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pycore"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return str(dest / "pycore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, no password row, "
                    "no 'before' side, no profile")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--work", default=str(ROOT / ".cache" / "bench" / "cli-bulk"))
    ap.add_argument("--before", default=BEFORE_COMMIT, metavar="COMMIT",
                    help="also time lockbox at this commit (git archive of its pycore) in "
                    f"the same rounds; '' for none (default {BEFORE_COMMIT})")
    ap.add_argument("--no-write", action="store_true", help="do not touch PERFORMANCE.md")
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    before = "" if args.quick else args.before
    ensure_tools()
    work = Path(args.work)
    s = Setup(work, args.size_mib, None)
    old_env = dict(s.env, PYTHONPATH=export_before(before, work)) if before else None
    load_start = os.getloadavg()
    s.prepare()

    sides: dict[str, list[Run]] = {k: [] for k in (
        "lb-add", "peer-add", "old-add", "lb-extract", "peer-extract", "old-extract",
        "lb-add-pw", "lb-extract-pw")}
    loads: list[float] = []
    with_pw = not args.quick
    for i in range(rounds):
        s.warm()
        with bench_lock() as load:
            loads.append(load)
            for verb in ("add", "extract"):
                make = s.lockbox_add if verb == "add" else s.lockbox_extract
                peer = s.peer_add if verb == "add" else s.peer_extract
                order: list[tuple[str, Callable[[], str], dict[str, str]]] = [
                    (f"lb-{verb}", lambda m=make: m("pk"), s.env),  # type: ignore[misc]
                    (f"peer-{verb}", peer, s.env)]
                if old_env is not None:
                    order.append((f"old-{verb}", lambda m=make: m("pk"),  # type: ignore[misc]
                                  old_env))
                k = i % len(order)
                order = order[k:] + order[:k]  # each side goes first in turn
                for key, command, run_env in order:
                    sides[key].append(timed(command(), run_env))
                    if verb == "extract":
                        s.check_extracted()
            if with_pw:
                sides["lb-add-pw"].append(timed(s.lockbox_add("pw"), s.env))
                sides["lb-extract-pw"].append(timed(s.lockbox_extract("pw"), s.env))
        r = {k: f"{v[-1].seconds:.2f}" for k, v in sides.items() if v}
        log(f"round {i + 1}/{rounds} load {load:.2f}: {r}")
    shutil.rmtree(s.work / "dest", ignore_errors=True)
    (s.work / "out.lbox").unlink(missing_ok=True)
    (s.work / "out.age").unlink(missing_ok=True)

    profiles: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, str] = {}
    startup = 0.0
    out = s.work / "out.lbox"

    def fresh_archive() -> None:
        out.unlink(missing_ok=True)
        shutil.copyfile(s.work / "empty-pk.lbox", out)
        subprocess.run(["sync"], check=True)

    def fresh_dest() -> None:
        s._fresh_dest()
        subprocess.run(["sync"], check=True)

    if not args.quick:
        with bench_lock():
            startup = startup_seconds(s)
            for label, prof_env in (("after", s.env), ("before", old_env)):
                if prof_env is None:
                    continue
                env = prof_env
                timings[label] = import_timings(s, env)
                prof = profiles[label] = {}
                prof["add"] = where_time_goes(
                    s, [*LB, "-q", "-i", str(s.identity), "add", str(out), str(s.src)], env,
                    before_run=fresh_archive)
                prof["extract"] = where_time_goes(
                    s, [*LB, "-q", "-i", str(s.identity), "extract",
                        str(s.work / "in-pk.lbox"), "--to", str(s.work / "dest")], env,
                    before_run=fresh_dest)
                shutil.rmtree(s.work / "dest", ignore_errors=True)
                out.unlink(missing_ok=True)

    add_ratio = med(sides["lb-add"]) / med(sides["peer-add"])
    ext_ratio = med(sides["lb-extract"]) / med(sides["peer-extract"])

    def verdict(ratio: float, target: float) -> str:
        return "met" if ratio <= target else f"**missed** by {ratio / target - 1:.0%}"

    def row(name: str, target: str, lb: list[Run], peer: list[Run],
            ratio_target: float | None) -> str:
        ratio = med(lb) / med(peer)
        v = f" {verdict(ratio, ratio_target)}" if ratio_target else ""
        return (f"| {name} | {target} | {med(lb):.2f} s (runs {fmt_runs(lb)}; user "
                f"{med(lb, 'user'):.2f}, sys {med(lb, 'sys'):.2f}) | {med(peer):.2f} s "
                f"(runs {fmt_runs(peer)}; user {med(peer, 'user'):.2f}, sys "
                f"{med(peer, 'sys'):.2f}) | {ratio:.2f}×{v} |")

    mib = args.size_mib
    cmd = " ".join(["`.venv/bin/python bench/cli_bulk_bench.py",
                    *(["--quick"] if args.quick else []),
                    *([f"--rounds {args.rounds}"] if args.rounds else [])]) + "`"
    lines = [
        f"## CLI big-file throughput vs `tar | zstd | age` (issue 12) — {today()}",
        "",
        f"Machine: {machine()}. Load average (1 min) at start {load_start[0]:.2f}; at each "
        f"round {', '.join(f'{x:.2f}' for x in loads)} (a shared machine: other work "
        "running meanwhile shows as spread between runs, and `sync -f` also flushes what "
        "other processes left dirty on the same file system).",
        "",
        f"Command: {cmd} ({rounds} rounds, each side first in turn; medians; the page "
        "cache hot for both sides: the inputs are read once before each round).",
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
    if old_env is not None:
        lines += [
            row(f"add, lockbox before ({before})", "—", sides["old-add"], sides["peer-add"],
                None),
            row(f"extract, lockbox before ({before})", "—", sides["old-extract"],
                sides["peer-extract"], None),
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
    if profiles:
        labels = [x for x in ("before", "after") if x in profiles]
        head = " | ".join(f"{verb} {x}" for verb in ("add", "extract") for x in labels)
        named = " and ".join(f"{x} = {before if x == 'before' else 'this tree'}"
                             for x in labels)
        lines += ["", "Where the time goes: three profiled runs of each lockbox command "
                  f"({named}; no `sync -f`); cProfile of the main thread, tottime in "
                  "seconds, median per row. Work moved to other threads (add's read-ahead, "
                  "extract's write-behind) shows in the main thread only as waiting for "
                  "them (or, GIL hand-offs, in the calls that release it); the profiler "
                  "itself slows Python code down.", "",
                  f"| stage | {head} |", "|---" * (1 + 2 * len(labels)) + "|"]
        for cat in profiles[labels[0]]["add"]:
            cells = " | ".join(f"{profiles[x][verb][cat]:.2f}" for verb in ("add", "extract")
                               for x in labels)
            lines.append(f"| {cat} | {cells} |")
        lines += ["", f"Python start-up + `import lockbox.cli`: {startup:.2f} s (median of "
                  "5). `LOCKBOX_IMPORT_TIMINGS=1` of one add (seconds): "
                  + "; ".join(f"{x}: {timings[x]}" for x in labels if x in timings) + "."]
    lines += ["", NOTES]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
