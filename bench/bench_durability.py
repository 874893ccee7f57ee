"""Durability benchmarks of issue #4, written to docs/PERFORMANCE.md.

    .venv/bin/python bench/bench_durability.py [--work DIR] [--quick]

Figures: compacting a 1 GiB archive of which half is garbage; `add --jobs auto` against
`--jobs 1` on compressible data (many small text files and a few large ones); open + list of
a 100,000-entry archive with the page cache warm (a shared cache, the key already known).
Recovery figures come from bench/bench_recovery.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, today, write_section

PY = sys.executable
MiB = 1 << 20

COMPACT = """
import json, os, sys, time, lockbox
from lockbox.formats.lbox.keys import Argon2Params
path, size_mib = sys.argv[1], int(sys.argv[2])
if os.path.exists(path): os.unlink(path)
box = lockbox.create(path, password="pw", argon2=Argon2Params(1, 64))
with box.writer() as w:
    for i in range(size_mib // 16):
        w.add_bytes(f"part{i:03d}.bin", os.urandom(16 << 20))
with box.writer() as w:
    for i in range(0, size_mib // 16, 2):
        w.remove(f"part{i:03d}.bin")
before = os.path.getsize(path)
free, _ = box.reclaimable()
t = time.perf_counter()
report = box.compact()
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "before": before, "after": report.size_after,
                  "reclaimable": free}))
"""

JOBS = """
import json, os, sys, time, lockbox
from lockbox.formats.lbox.keys import Argon2Params
src, path, jobs = sys.argv[1], sys.argv[2], sys.argv[3]
if os.path.exists(path): os.unlink(path)
box = lockbox.create(path, password="pw", argon2=Argon2Params(1, 64))
t = time.perf_counter()
with box.writer() as w:
    n = w.add_tree(src, jobs=jobs)
print(json.dumps({"seconds": time.perf_counter() - t, "entries": n}))
"""

WARM = """
import json, sys, time, lockbox
from lockbox.cache import PageCache
from lockbox.formats.lbox.keys import Argon2Params
path = sys.argv[1]
box = lockbox.open(path, password="pw")
key = (box.view.archive_id, box.content_key)
cache = PageCache("auto")
lockbox.Lockbox.open(path, known_key=key, cache=cache).ls()  # warm the cache
times = []
for _ in range(20):
    t = time.perf_counter()
    b = lockbox.Lockbox.open(path, known_key=key, cache=cache)
    root = b.ls()
    b.ls(root[0].path)
    times.append(time.perf_counter() - t)
    b.close()
times.sort()
print(json.dumps({"median_ms": times[len(times) // 2] * 1000, "entries": b.info().files}))
"""

BUILD_100K = """
import os, sys, lockbox
from lockbox.formats.lbox.keys import Argon2Params
path = sys.argv[1]
box = lockbox.create(path, password="pw", argon2=Argon2Params(1, 64))
with box.writer() as w:
    for i in range(100_000):
        w.add_bytes(f"d{i // 1000:03d}/f{i % 1000:04d}.txt", b"%d" % i)
"""


def child(code: str, *args: str) -> dict:
    out = subprocess.run([PY, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def text_tree(root: Path, files: int, big: int) -> None:
    marker = root / f".done-{files}-{big}"
    if marker.exists():
        return
    import random

    rng = random.Random(1)
    words = [f"word{i}" for i in range(5000)]
    for i in range(files):
        d = root / f"d{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_text(" ".join(rng.choices(words, k=rng.randint(50, 600))))
    for i in range(big):
        (root / f"big{i}.log").write_text(
            "\n".join(f"{j} " + " ".join(rng.choices(words, k=12)) for j in range(400_000)))
    marker.write_text("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default="/tmp/lockbox-bench-durability")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    r: dict[str, dict] = {}
    r["compact"] = child(COMPACT, str(work / "half.lbox"), "128" if args.quick else "1024")
    print("compact", r["compact"], flush=True)
    tree = work / "text"
    text_tree(tree, 2000 if args.quick else 20000, 1 if args.quick else 4)
    one = child(JOBS, str(tree), str(work / "jobs1.lbox"), "1")
    auto = child(JOBS, str(tree), str(work / "jobsauto.lbox"), "auto")
    r["jobs"] = {"one": one["seconds"], "auto": auto["seconds"], "entries": one["entries"],
                 "jobs_auto": min(6, os.cpu_count() or 1)}
    print("jobs", r["jobs"], flush=True)
    big = work / "100k.lbox"
    if not big.exists():
        subprocess.run([PY, "-c", BUILD_100K, str(big)], check=True)
    r["warm"] = child(WARM, str(big))
    print("warm", r["warm"], flush=True)
    (work / "results.json").write_text(json.dumps(r, indent=1))
    if not args.quick:
        write_section("durability-bench", render(r))


def render(r: dict) -> str:
    c, j, w = r["compact"], r["jobs"], r["warm"]
    return "\n".join([
        f"## Durability (issue #4) — {today()}", "",
        f"Machine: {machine()}. Command: `.venv/bin/python bench/bench_durability.py`.", "",
        "| figure | target | measured |", "|---|---|---|",
        f"| compact a {c['before'] / 2**30:.2f} GiB archive, {c['reclaimable'] / 2**30:.2f} GiB "
        f"reclaimable | ≤ 10 s | {c['seconds']:.1f} s (→ {c['after'] / 2**30:.2f} GiB) |",
        f"| `add --jobs auto` ({j['jobs_auto']} workers) vs `--jobs 1`, {j['entries']:,} "
        f"entries of text | ≥ 1.6× | {j['one'] / j['auto']:.2f}× ({j['one']:.1f} s → "
        f"{j['auto']:.1f} s) |",
        f"| open (key known) + list root + list a directory, {w['entries']:,} entries, cache "
        f"warm | ≤ 50 ms | {w['median_ms']:.1f} ms (median of 20) |",
    ])


if __name__ == "__main__":
    main()
