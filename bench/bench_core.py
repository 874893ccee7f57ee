"""Core benchmarks of issue #2, written to docs/PERFORMANCE.md.

    .venv/bin/python bench/bench_core.py [--work DIR] [--quick] [--only NAME ...]

Figures: add / extract throughput on incompressible data; 100,000 x 1 KiB files added and
committed; open + list root (round trips, bytes) over HTTP for a 1 GiB archive and a
1,000,000-entry archive; a 10 KiB file read after open; peak RSS adding and extracting a
4 GiB file; and `tar | zstd -3 | age` on the same data (Debian packages zstd and age, installed
with apt-get when missing). Each heavy step runs in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CountingSource, machine, serve, today, write_section

PY = sys.executable
MiB = 1 << 20


def child(code: str, *args: str) -> dict:
    """Run a snippet in a fresh interpreter; it prints one JSON line; add its peak RSS."""
    out = subprocess.run([PY, "-c", code, *args], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result


PRELUDE = """
import json, os, resource, sys, time
import lockbox
from lockbox.formats.lbox.keys import Argon2Params
WEAK = Argon2Params(1, 64)
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

ADD = PRELUDE + """
src, arch = sys.argv[1], sys.argv[2]
if os.path.exists(arch): os.unlink(arch)
box = lockbox.create(arch, password="pw", argon2=WEAK)
size = os.path.getsize(src) if os.path.isfile(src) else None
t = time.perf_counter()
with box.writer() as w:
    n = w.add_tree(src, jobs="auto")
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "entries": n, "bytes": size, "rss_mib": rss_mib(),
                  "archive_bytes": os.path.getsize(arch)}))
"""

EXTRACT = PRELUDE + """
import shutil
arch, dest = sys.argv[1], sys.argv[2]
shutil.rmtree(dest, ignore_errors=True)
box = lockbox.open(arch, password="pw")
t = time.perf_counter()
n = box.extract(dest).entries
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "entries": n, "rss_mib": rss_mib()}))
"""

MANY = PRELUDE + """
arch, count = sys.argv[1], int(sys.argv[2])
if os.path.exists(arch): os.unlink(arch)
box = lockbox.create(arch, password="pw", argon2=WEAK)
t = time.perf_counter()
with box.writer() as w:
    for i in range(count):
        w.add_bytes(f"d{i // 1000 % 1000:03d}/e{i // 1000000}/f{i % 1000:04d}.txt",
                    b"%d" % i, mtime_ns=1_700_000_000_000_000_000)
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mib": rss_mib()}))
"""


def make_random_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n


def make_small_tree(root: Path, count: int) -> None:
    marker = root / f".done-{count}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    per_dir = 1000
    for i in range(count):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"f{i % per_dir:04d}.txt").write_bytes(
            (f"line {i} of a small file; " * 60)[:1024].encode())
    marker.write_text("")


def ensure_debian(pkgs: list[str]) -> bool:
    missing = [p for p in pkgs if shutil.which(p) is None]
    if not missing:
        return True
    if os.geteuid() != 0:
        return False
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True)
    return r.returncode == 0 and all(shutil.which(p) for p in pkgs)


def timed_shell(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def tar_zstd_age(work: Path, src: Path, label: str) -> dict:
    key = work / "age.key"
    if not key.exists():
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    out = work / f"{label}.tar.zst.age"
    dest = work / f"{label}-tza-out"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    parent, name = src.parent, src.name
    t_add = timed_shell(f"tar -C {parent} -cf - {name} | zstd -3 -q -T1 | "
                        f"age -r {recipient} > {out}")
    t_ext = timed_shell(f"age -d -i {key} {out} | zstd -d -q | tar -C {dest} -xf -")
    return {"add_s": t_add, "extract_s": t_ext, "bytes": out.stat().st_size}


def http_open_list(url: str, read_path: str | None = None) -> dict:
    import lockbox
    from lockbox.sources import HttpSource

    src = CountingSource(HttpSource(url))
    t = time.perf_counter()
    box = lockbox.Lockbox(src, password="pw")  # type: ignore[arg-type]
    root = box.ls()
    result = {"open_list_rt": src.round_trips, "open_list_bytes": src.bytes,
              "open_list_requests": src.inner.stats.requests, "root_entries": len(root),
              "open_list_s": time.perf_counter() - t}
    if read_path is not None:
        src.reset()
        data = box.read_bytes(read_path)
        result.update(read_rt=src.round_trips, read_bytes=src.bytes, read_size=len(data))
    box.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default="/tmp/lockbox-bench")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    q = args.quick
    results: dict[str, dict] = {}
    previous = work / "results.json"
    if args.only is not None and previous.exists():  # re-measure some rows, keep the rest
        results.update(json.loads(previous.read_text()))

    def want(name: str) -> bool:
        return args.only is None or name in args.only

    big = work / "random.bin"
    if want("throughput") or want("tza"):
        make_random_file(big, (64 if q else 512) * MiB)
    if want("throughput"):
        add = child(ADD, str(big), str(work / "random.lbox"))
        ext = child(EXTRACT, str(work / "random.lbox"), str(work / "random-out"))
        size = big.stat().st_size
        results["throughput"] = {"add_mb_s": size / add["seconds"] / 1e6,
                                 "extract_mb_s": size / ext["seconds"] / 1e6,
                                 "size": size, "add_rss": add["rss_mib"],
                                 "extract_rss": ext["rss_mib"]}
        print("throughput", results["throughput"], flush=True)
    small = work / "small"
    n_small = 10_000 if q else 100_000
    if want("small") or want("tza"):
        make_small_tree(small, n_small)
    if want("small"):
        r = child(ADD, str(small), str(work / "small.lbox"))
        results["small"] = {"count": n_small, "seconds": r["seconds"],
                            "archive_bytes": r["archive_bytes"]}
        print("small", results["small"], flush=True)
    if want("tza") and ensure_debian(["zstd", "age", "age-keygen"]):
        results["tza_big"] = tar_zstd_age(work, big, "random")
        results["tza_small"] = tar_zstd_age(work, small, "small")
        print("tza", results["tza_big"], results["tza_small"], flush=True)
    if want("http"):
        gib = work / "gib"
        gib.mkdir(exist_ok=True)
        one_gib = work / "gib.lbox"
        if not one_gib.exists():
            for i in range(4 if q else 16):
                make_random_file(gib / f"part{i:02d}.bin", 64 * MiB)
            (gib / "note-10k.txt").write_bytes(os.urandom(10 * 1024))
            child(ADD, str(gib), str(one_gib))
        million = work / "million.lbox"
        n_million = 100_000 if q else 1_000_000
        mark = work / f"million-{n_million}.done"
        if not mark.exists():
            r = child(MANY, str(million), str(n_million))
            results["million_build"] = {"entries": n_million, "seconds": r["seconds"]}
            mark.write_text("")
        with serve(work) as base:
            results["http_gib"] = http_open_list(f"{base}/archives/gib.lbox", "note-10k.txt")
            results["http_million"] = http_open_list(f"{base}/archives/million.lbox")
            results["http_million"]["entries"] = n_million
        print("http", results["http_gib"], results["http_million"], flush=True)
    if want("rss"):
        four = work / "four"
        four.mkdir(exist_ok=True)
        make_random_file(four / "4gib.bin", (512 if q else 4096) * MiB)
        add = child(ADD, str(four), str(work / "four.lbox"))
        ext = child(EXTRACT, str(work / "four.lbox"), str(work / "four-out"))
        results["rss"] = {"size": (four / "4gib.bin").stat().st_size,
                          "add_rss": add["rss_mib"], "extract_rss": ext["rss_mib"],
                          "add_mb_s": (four / "4gib.bin").stat().st_size / add["seconds"] / 1e6,
                          "extract_mb_s": (four / "4gib.bin").stat().st_size / ext["seconds"]
                          / 1e6}
        shutil.rmtree(work / "four-out", ignore_errors=True)
        print("rss", results["rss"], flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    if not q:
        write_section("core-bench", render(results))
        print(f"wrote {os.path.relpath(write_section.__globals__['PERF_MD'])}")


def render(r: dict) -> str:
    cmd = "`.venv/bin/python bench/bench_core.py`"
    lines = [f"## Core (issue #2) — {today()}", "",
             f"Machine: {machine()}. Command: {cmd}. Single runs on a shared VM: expect "
             "±30 % noise.", "",
             "| figure | target | measured |", "|---|---|---|"]
    if "throughput" in r:
        t = r["throughput"]
        lines.append(f"| `add`, {t['size'] // MiB} MiB incompressible | ≥ 250 MB/s | "
                     f"{t['add_mb_s']:.0f} MB/s |")
        lines.append(f"| `extract`, same | ≥ 400 MB/s | {t['extract_mb_s']:.0f} MB/s |")
    if "small" in r:
        s = r["small"]
        lines.append(f"| {s['count']:,} × 1 KiB files added + committed | ≤ 5 s | "
                     f"{s['seconds']:.1f} s |")
    for key, label in (("http_gib", "1 GiB archive"), ("http_million", "1,000,000 entries")):
        if key in r:
            h = r[key]
            lines.append(f"| open + list root over HTTP, {label} | ≤ 2 round trips, ≤ 64 KiB "
                         f"| {h['open_list_rt']} round trips ({h['open_list_requests']} "
                         f"requests), {h['open_list_bytes'] / 1024:.1f} KiB |")
    if "http_gib" in r:
        h = r["http_gib"]
        lines.append(f"| read a 10 KiB file over HTTP after open | 1 round trip, ≤ 16 KiB | "
                     f"{h['read_rt']} round trip, {h['read_bytes'] / 1024:.1f} KiB |")
    if "rss" in r:
        x = r["rss"]
        lines.append(f"| peak RSS adding a {x['size'] / 2**30:.0f} GiB file | ≤ 200 MiB | "
                     f"{x['add_rss']:.0f} MiB ({x['add_mb_s']:.0f} MB/s) |")
        lines.append(f"| peak RSS extracting it | ≤ 200 MiB | {x['extract_rss']:.0f} MiB "
                     f"({x['extract_mb_s']:.0f} MB/s) |")
    if "tza_big" in r and "throughput" in r:
        b, s = r["tza_big"], r["tza_small"]
        size = r["throughput"]["size"]
        lines += ["", "Side by side, `tar | zstd -3 | age` (X25519 recipient) on the same data:",
                  "", "| data | lockbox add | tar\\|zstd\\|age | lockbox extract | "
                  "age\\|zstd\\|tar |", "|---|---|---|---|---|",
                  f"| {size // MiB} MiB random | {r['throughput']['add_mb_s']:.0f} MB/s | "
                  f"{size / b['add_s'] / 1e6:.0f} MB/s | "
                  f"{r['throughput']['extract_mb_s']:.0f} MB/s | "
                  f"{size / b['extract_s'] / 1e6:.0f} MB/s |"]
        if "small" in r:
            lines.append(f"| {r['small']['count']:,} × 1 KiB files | {r['small']['seconds']:.1f}"
                         f" s | {s['add_s']:.1f} s | — | {s['extract_s']:.1f} s |")
        lines += ["", "tar|zstd|age is one sequential stream: reading one file back means "
                  "decrypting and decompressing everything before it; it has no index, so "
                  "listing costs a full pass."]
    return "\n".join(lines)


if __name__ == "__main__":
    _ = resource
    main()
