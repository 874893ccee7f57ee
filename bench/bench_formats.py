"""Benchmarks of the generic layer (lockbox.facade, lockbox.convert) across formats; prints
the figures (the lead puts them in docs/PERFORMANCE.md).

    .venv/bin/python bench/bench_formats.py [--work DIR] [--quick] [--entries N]
                                            [--rounds R] [--large-mib M]

* **listing**: ``Archive.open`` + ``iter_entries()`` of every entry (``ls -R``) of the same
  tree of N small files (100,000 by default) stored as ``.uri`` and as ``.lbox``, locally
  (FileSource) and over HTTP (lockbox_server on 127.0.0.1): round trips, bytes, seconds;
  then ``ls`` of one directory on a freshly opened archive.
* **convert / extract against tar**, on the same trees (N small files; two large files of
  random data): ``convert DIR x.uri``, ``convert DIR x.lbox``, ``convert x.lbox y.uri``,
  ``convert x.uri y.lbox`` against ``tar -cf`` (+ fsync of the tar file: ours fsync their
  archive), and ``extract`` / ``convert x.uri D`` against ``tar -xf`` (neither fsyncs the
  extracted files). Runs alternate (ours, tar, ours, tar, ...) after one warm-up of each;
  the figure is the median of ``--rounds`` runs (3 by default). Page cache warm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CountingSource, machine, serve, today

import lockbox
from lockbox.convert import NewLbox, convert
from lockbox.facade import Archive
from lockbox.formats.lbox.keys import Argon2Params
from lockbox.sources import FileSource, HttpSource

KiB, MiB = 1 << 10, 1 << 20
PASSWORD = "bench"
# Cheap Argon2id: the bench measures data paths, not the unlock (bench_core does that).
NEW = NewLbox(password=PASSWORD, argon2=Argon2Params(time_cost=1, memory_kib=8 * 1024))


def make_small_tree(root: Path, n: int) -> int:
    """n files of 1..2047 bytes (1 KiB average) in directories of 1000."""
    marker = root.with_name(root.name + ".complete")
    if marker.exists() and marker.read_text() == str(n):
        return int(sum(p.stat().st_size for p in root.rglob("*.txt")))
    shutil.rmtree(root, ignore_errors=True)
    total = 0
    seed = os.urandom(4096)
    for i in range(n):
        d = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        size = (i * 7919) % 2047 + 1
        (d / f"file{i:06d}.txt").write_bytes(seed[i % 2048: i % 2048 + size])
        total += size
    marker.write_text(str(n))
    return total


def make_large_tree(root: Path, files: int, size: int) -> int:
    if root.exists() and sorted(p.stat().st_size for p in root.iterdir()) == [size] * files:
        return files * size
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for i in range(files):
        with open(root / f"big{i}.bin", "wb") as f:
            for _ in range(size // MiB):
                f.write(os.urandom(MiB))
    return files * size


def warm(root: Path) -> None:
    subprocess.run(["tar", "-cf", "/dev/null", "-C", str(root), "."], check=True)


def clean(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tar_create(tree: Path, out: Path) -> None:
    subprocess.run(["tar", "-cf", str(out), "-C", str(tree), "."], check=True)
    fsync_file(out)  # same durability as ours: the archive is fsynced


def tar_extract(tar: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(dest)], check=True)


def alternate(rounds: int, ours: Callable[[], object], tar: Callable[[], object],
              reset: Callable[[], None]) -> tuple[float, float]:
    """Medians of ``rounds`` alternating runs (after a warm-up of each)."""
    times: dict[str, list[float]] = {"ours": [], "tar": []}
    for i in range(rounds + 1):
        for name, fn in (("ours", ours), ("tar", tar)):
            reset()
            t = time.perf_counter()
            fn()
            dt = time.perf_counter() - t
            if i:  # round 0 warms up
                times[name].append(dt)
    reset()
    return statistics.median(times["ours"]), statistics.median(times["tar"])


def row(label: str, seconds: float, data: int, entries: int) -> str:
    return (f"  {label:<34} {seconds:7.2f} s  {data / MiB / seconds:8.1f} MiB/s  "
            f"{entries / seconds:10,.0f} entries/s")


# -- listing -------------------------------------------------------------------------------


def list_all(src: CountingSource, password: str | None) -> tuple[int, float, int, int]:
    t = time.perf_counter()
    arc = Archive.open(src, password=password, close_source=False)
    rt_open, by_open = src.round_trips, src.bytes
    n = sum(1 for _ in arc.iter_entries())
    return n, time.perf_counter() - t, rt_open, by_open


def bench_listing(work: Path, names: list[str], n: int, some_dir: str) -> None:
    print(f"listing every entry (Archive.open + iter_entries, ls -R) of {n:,} files:")
    for where in ("local", "http"):
        ctx = serve(work / "served") if where == "http" else None
        base = ctx.__enter__() if ctx is not None else ""
        try:
            for name in names:
                password = PASSWORD if name.endswith(".lbox") else None

                def source(where: str = where, base: str = base,
                           name: str = name) -> CountingSource:
                    if where == "http":
                        return CountingSource(HttpSource(f"{base}/archives/{name}"))
                    return CountingSource(FileSource(str(work / "served" / name)))

                times = []
                for _ in range(3):
                    src = source()
                    count, dt, rt_open, _ = list_all(src, password)
                    times.append(dt)
                    src.close()
                print(f"  {where:<5} {name:<10} {count:,} entries: {src.round_trips:3d} round "
                      f"trips ({rt_open} to open), {src.bytes / MiB:7.1f} MiB, "
                      f"median {statistics.median(times):5.2f} s "
                      f"({count / statistics.median(times):,.0f} entries/s)")
                src = source()
                arc = Archive.open(src, password=password, close_source=False)
                src.reset()
                t = time.perf_counter()
                listed = arc.ls(some_dir)
                print(f"  {where:<5} {name:<10} then ls {some_dir} ({len(listed):,} entries): "
                      f"{src.round_trips} round trips, {src.bytes / KiB:,.0f} KiB, "
                      f"{time.perf_counter() - t:.2f} s")
                src.close()
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)


# -- convert / extract ----------------------------------------------------------------------


def bench_tree(work: Path, tree: Path, label: str, data: int, entries: int,
               rounds: int) -> None:
    warm(tree)
    out = work / "out"
    out.mkdir(exist_ok=True)
    tar = work / f"{label}.tar"
    x_uri, x_lbox = work / f"{label}.uri", work / f"{label}.lbox"
    for p in (tar, x_uri, x_lbox):
        clean(p)
    tar_create(tree, tar)
    convert(tree, x_uri)
    convert(tree, x_lbox, new_lbox=NEW)
    print(f"{label}: {entries:,} entries, {data / MiB:,.1f} MiB of data "
          f"(.uri {x_uri.stat().st_size / MiB:,.1f} MiB, .lbox {x_lbox.stat().st_size / MiB:,.1f}"
          f" MiB, tar {tar.stat().st_size / MiB:,.1f} MiB); medians of {rounds}, alternating")

    def reset() -> None:
        for p in out.iterdir():
            clean(p)

    t_tar_c = []
    cases: list[tuple[str, Callable[[], object], str]] = [
        ("convert DIR x.uri", lambda: convert(tree, out / "y.uri"), "create"),
        ("convert DIR x.lbox", lambda: convert(tree, out / "y.lbox", new_lbox=NEW), "create"),
        ("convert x.lbox y.uri", lambda: _from_lbox(x_lbox, out / "y.uri"), "create"),
        ("convert x.uri y.lbox", lambda: convert(x_uri, out / "y.lbox", new_lbox=NEW),
         "create"),
        ("extract x.lbox (convert x.lbox D)", lambda: _from_lbox(x_lbox, out / "D"),
         "extract"),
        ("extract x.uri (convert x.uri D)", lambda: convert(x_uri, out / "D"), "extract"),
    ]
    for name, ours, kind in cases:
        tar_fn: Callable[[], object]
        if kind == "create":
            def tar_fn() -> None:
                tar_create(tree, out / "t.tar")
        else:
            def tar_fn() -> None:
                tar_extract(tar, out / "T")
        dt_ours, dt_tar = alternate(rounds, ours, tar_fn, reset)
        t_tar_c.append(dt_tar)
        print(row(name, dt_ours, data, entries)
              + f"   tar {'-cf + fsync' if kind == 'create' else '-xf'}: {dt_tar:6.2f} s "
                f"({dt_ours / dt_tar:.1f}x)")
    for p in (tar, x_uri, x_lbox):
        clean(p)


def _from_lbox(x_lbox: Path, dest: Path) -> None:
    with lockbox.open(x_lbox, password=PASSWORD) as box:
        convert(box, dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/lockbox-bench-formats")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--entries", type=int, default=None, help="small files (default 100,000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=None,
                    help="size of each of the two large files (default 256)")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.entries or (10_000 if args.quick else 100_000)
    large = (args.large_mib or (32 if args.quick else 256)) * MiB
    print(f"bench_formats {today()} on {machine()}")
    small_data = make_small_tree(work / "small", n)
    entries = n + -(-n // 1000)
    served = work / "served"
    shutil.rmtree(served, ignore_errors=True)
    served.mkdir()
    convert(work / "small", served / "x.uri")
    convert(work / "small", served / "x.lbox", new_lbox=NEW)
    print(f"tree: {entries:,} entries ({n:,} files of 1 KiB average, {small_data / MiB:.1f} "
          f"MiB); x.uri {(served / 'x.uri').stat().st_size / MiB:.1f} MiB, x.lbox "
          f"{(served / 'x.lbox').stat().st_size / MiB:.1f} MiB")
    bench_listing(work, ["x.uri", "x.lbox"], entries, f"d{n // 2000:03d}")
    if args.skip_throughput:
        return
    bench_tree(work, work / "small", "small files", small_data, entries, args.rounds)
    large_data = make_large_tree(work / "large", 2, large)
    bench_tree(work, work / "large", "large files", large_data, 2, args.rounds)


if __name__ == "__main__":
    main()
