"""Recovery benchmark of issue #4 §5: `recover` scan throughput on a 512 MiB archive, and
"1% of pages corrupted at random -> 100% of the files whose frames are intact are recovered".

    .venv/bin/python bench/bench_recovery.py [--work DIR] [--size-mib 512] [--runs 3]
                                             [--no-salvage] [--seed 1]

Builds (once, kept in --work) an archive of about --size-mib MiB: large incompressible
files (1 MiB chunks), compressible text and many small files. Then, each step in a child
process (so that its peak RSS is its own):

1. scans the intact archive (best of --runs; wall and CPU time, peak RSS);
2. overwrites 1% of the archive's 4 KiB units after the superblock with random bytes
   (seeded), scans the damaged copy, and checks every file: those whose data-chunk
   frames do not touch a damaged unit must come back complete, the others partial,
   lost or (when their TOC leaf was hit too) absent;
3. salvages the damaged copy into a new archive and verifies it (unless --no-salvage).

Prints a markdown table (date, machine, command) for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, today

PY = sys.executable
MiB = 1 << 20
UNIT = 4096
SUPERBLOCK = 16384

BUILD = """
import json, os, random, sys, time
import lockbox
path, size_mib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
box = lockbox.create(path, password="pw", argon2=lockbox.Argon2Params(1, 64))
# Sizes are of the archive on disk: the text compresses about 10x.
big = size_mib // 2          # MiB of incompressible 4 MiB files
text = size_mib // 16        # MiB of compressible text (~1/10 of it stored)
small = size_mib - big - text // 10  # MiB of 8..56 KiB files
line = b"%06d the quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet\\n"
t = time.perf_counter()
n = 0
with box.writer() as w:
    for i in range(big // 4):
        w.add_bytes(f"media/clip{i:04d}.bin", os.urandom(4 * 1024 * 1024)); n += 1
    for i in range(text // 4):
        blob = b"".join(line % (i * 100000 + j) for j in range(4 * 1024 * 1024 // 81 + 1))
        w.add_bytes(f"logs/log{i:04d}.txt", blob[:4 * 1024 * 1024]); n += 1
    left = small * 1024 * 1024
    i = 0
    while left > 0:
        k = min(left, rnd.randrange(8, 57) * 1024)
        w.add_bytes(f"docs/d{i % 50:02d}/f{i:05d}.dat", os.urandom(k)); n += 1
        left -= k
        i += 1
box.close()
print(json.dumps({"seconds": time.perf_counter() - t, "files": n,
                  "bytes": os.path.getsize(path)}))
"""

LAYOUT = """
import json, sys
import lockbox
path, out = sys.argv[1], sys.argv[2]
refs = {}
with lockbox.open(path, password="pw") as box:
    v = box.view
    for e in box.ls(recursive=True):
        if e.is_file:
            entry = box.run(v.stat_flow(e.path))
            refs[e.path] = [[r.frame_offset, r.frame_size]
                            for r in box.run(v.chunk_refs_flow(entry, 0, entry.chunks))]
json.dump(refs, open(out, "w"))
print(json.dumps({"files": len(refs)}))
"""

SCAN = """
import json, os, resource, sys, time
from lockbox.formats.lbox.recovery import RecoveryScanner
from lockbox.sources import FileSource
from lockbox.platform import default_codec, default_crypto
path, out, salvage = sys.argv[1], sys.argv[2], sys.argv[3]
crypto, codec = default_crypto(), default_codec()  # imports and backend set-up: not timed
crypto.aead(bytes(32)).seal(bytes(12), b"warm", b"")
crypto.blake3().update(b"warm")
codec.decompress(codec.compress(b"warm" * 100, 3), 400)
source = FileSource(path)
w0, c0 = time.perf_counter(), time.process_time()
scanner = RecoveryScanner(password="pw", crypto=crypto, codec=codec)
report = scanner.scan(source)
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
rss_scan = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result = {"wall": wall, "cpu": cpu, "rss_mib": rss_scan, "size": os.path.getsize(path),
          "bytes_scanned": report.bytes_scanned, "read": source.stats.bytes_read,
          "authenticated": report.frames_authenticated, "rejected": report.frames_rejected,
          "toc_source": report.toc_source, "complete": len(report.complete),
          "partial": len(report.partial), "lost": len(report.lost),
          "unaccounted": report.unaccounted_files}
if out != "-":
    json.dump({e.path: e.status for e in report.files}, open(out, "w"))
if salvage != "-":
    t = time.perf_counter()
    s = scanner.salvage(salvage, source)
    result["salvage_wall"] = time.perf_counter() - t
    result["salvage_bytes"] = s.bytes
    result["salvage_files"] = s.files
    import lockbox
    with lockbox.open(salvage, password="pw") as box:
        t = time.perf_counter()
        v = box.verify()
        result["salvage_verify_ok"] = v.ok
        result["salvage_verify_files"] = v.files_checked
source.close()
print(json.dumps(result))
"""


def child(code: str, *args: str) -> dict:
    out = subprocess.run([PY, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def corrupt(src: Path, dst: Path, share: float, seed: int) -> list[int]:
    """Copy src to dst, overwriting `share` of its 4 KiB units (after the superblock)
    with random bytes; returns the damaged unit numbers."""
    shutil.copyfile(src, dst)
    size = dst.stat().st_size
    units = range(SUPERBLOCK // UNIT, size // UNIT)
    rnd = random.Random(seed)
    hit = sorted(rnd.sample(units, max(1, round(len(units) * share))))
    with open(dst, "r+b") as f:
        for u in hit:
            f.seek(u * UNIT)
            f.write(rnd.randbytes(UNIT))
    return hit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/lockbox-bench-recovery")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-salvage", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    arch = work / f"intact-{args.size_mib}.lbox"
    layout_file = work / f"layout-{args.size_mib}.json"
    if not arch.exists() or not layout_file.exists():
        print(f"building a {args.size_mib} MiB archive in {arch} ...", file=sys.stderr)
        built = child(BUILD, str(arch), str(args.size_mib), str(args.seed))
        print(f"  {built['files']} files, {built['bytes'] / MiB:.0f} MiB in "
              f"{built['seconds']:.1f} s", file=sys.stderr)
        child(LAYOUT, str(arch), str(layout_file))
    refs: dict[str, list[list[int]]] = json.loads(layout_file.read_text())
    size = arch.stat().st_size

    print("scanning the intact archive ...", file=sys.stderr)
    scans = [child(SCAN, str(arch), "-", "-") for _ in range(args.runs)]
    best = min(scans, key=lambda r: r["wall"])
    cpu = min(r["cpu"] for r in scans)
    assert best["partial"] == best["lost"] == 0 and best["complete"] == len(refs), best

    damaged = work / "damaged.lbox"
    hit = corrupt(arch, damaged, 0.01, args.seed)
    statuses = work / "statuses.json"
    salvage = work / "salvaged.lbox"
    if salvage.exists():
        salvage.unlink()
    print(f"scanning with {len(hit)} of {(size - SUPERBLOCK) // UNIT} units damaged ...",
          file=sys.stderr)
    dmg = child(SCAN, str(damaged), str(statuses), "-" if args.no_salvage else str(salvage))
    got: dict[str, str] = json.loads(statuses.read_text())
    hit_set = set(hit)

    def intact(frames: list[list[int]]) -> bool:
        return not any(u in hit_set for off, n in frames
                       for u in range(off // UNIT, (off + n - 1) // UNIT + 1))

    intact_files = [p for p, fr in refs.items() if intact(fr)]
    damaged_files = [p for p in refs if p not in set(intact_files)]
    recovered = [p for p in intact_files if got.get(p) == "complete"]
    wrong = [p for p in damaged_files if got.get(p) == "complete"]
    dmg_states = {s: sum(1 for p in damaged_files if got.get(p, "absent") == s)
                  for s in ("partial", "lost", "absent")}
    ok = len(recovered) == len(intact_files) and not wrong

    cmd = " ".join([".venv/bin/python bench/bench_recovery.py", *sys.argv[1:]])
    mbs = size / best["wall"] / 1e6
    cpu_mbs = size / cpu / 1e6
    load = os.getloadavg()[0]
    rows = [
        ("archive", f"{size / MiB:,.0f} MiB, {len(refs):,} files (1 MiB chunks; "
                    f"{best['authenticated']:,} frames)"),
        ("recover scan, intact (best of "
         f"{args.runs})", f"**{mbs:,.0f} MB/s** ({best['wall']:.2f} s wall; "
                          f"{cpu_mbs:,.0f} MB/s of CPU time, {cpu:.2f} s), "
                          f"peak RSS {best['rss_mib']:.0f} MiB; read "
                          f"{best['read'] / size:.2f}x the file"),
        ("damage", f"1% of the 4 KiB units after the superblock overwritten with random "
                   f"bytes: {len(hit):,} units, seed {args.seed}"),
        ("recover scan, damaged", f"{size / dmg['wall'] / 1e6:,.0f} MB/s "
                                  f"({dmg['wall']:.2f} s), {dmg['rejected']:,} frames "
                                  f"rejected, tree from {dmg['toc_source']}"),
        ("files whose frames are intact", f"**{len(recovered):,} of {len(intact_files):,} "
                                          f"recovered complete "
                                          f"({100 * len(recovered) / max(1, len(intact_files)):.1f}"
                                          f" %)**"),
        ("files with a damaged frame", f"{len(damaged_files):,}: {dmg_states['partial']} "
                                       f"partial, {dmg_states['lost']} lost, "
                                       f"{dmg_states['absent']} absent; {len(wrong)} "
                                       "reported complete (must be 0)"),
    ]
    if not args.no_salvage:
        rows.append(("salvage of the damaged copy",
                     f"{dmg['salvage_files']:,} files, {dmg['salvage_bytes'] / MiB:,.0f} MiB "
                     f"in {dmg['salvage_wall']:.1f} s; new archive verifies: "
                     f"{dmg['salvage_verify_ok']}"))
    print(f"### Recovery ({today()})\n")
    print(f"Machine: {machine()}; load average {load:.1f} while measuring (other jobs "
          "share the machine; wall-clock figures vary with it, CPU time less).  ")
    print(f"Command: `{cmd}`\n")
    print("| measure | result |")
    print("|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"\ncheck: {'PASS' if ok else 'FAIL'} (1% damaged -> "
          f"{len(recovered)}/{len(intact_files)} intact files recovered)")
    return 0 if ok else 1


if __name__ == "__main__":
    t0 = time.monotonic()
    rc = main()
    print(f"\n(bench took {time.monotonic() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
