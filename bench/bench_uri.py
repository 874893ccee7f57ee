"""Benchmarks of the .uri format (lockbox.formats.uri); prints the figures (the lead puts
them in docs/PERFORMANCE.md).

    .venv/bin/python bench/bench_uri.py [--work DIR] [--quick] [--entries N]

* write: ``write_uri`` of a tree of N small files (1 KiB average) and of a tree of large
  files, against ``tar -cf`` of the same trees (both after a warm-up read, page cache
  warm);
* list locally (FileSource): open + full index (``listdir("")``), ``walk``, ``verify``;
  index memory (tracemalloc);
* list over HTTP (lockbox_server on 127.0.0.1): open + index, and open + walk: round
  trips, bytes, seconds; then one small read; and listing an archive holding a large
  file between small ones (its data must not be fetched).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CountingSource, machine, serve, today

from lockbox.drivers import run_sync
from lockbox.formats.uri import UriFormat, write_uri
from lockbox.protocol import OpenOptions
from lockbox.sources import FileSource, HttpSource

KiB, MiB = 1 << 10, 1 << 20


def make_small_tree(root: Path, n: int) -> int:
    """n files of 1..2047 bytes (1 KiB average) in n/1000 directories of 1000."""
    if root.exists() and len(list(root.rglob("*"))) >= n:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    shutil.rmtree(root, ignore_errors=True)
    total = 0
    seed = os.urandom(4096)
    for i in range(n):
        d = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        size = (i * 7919) % 2047 + 1
        (d / f"file{i:06d}.txt").write_bytes(seed[i % 2048 : i % 2048 + size])
        total += size
    return total


def make_large_tree(root: Path, files: int, size: int) -> int:
    if root.exists() and sum(p.stat().st_size for p in root.iterdir()) == files * size:
        return files * size
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    block = os.urandom(MiB)
    for i in range(files):
        with open(root / f"big{i}.bin", "wb") as f:
            for _ in range(size // MiB):
                f.write(block)
    return files * size


def warm(root: Path) -> None:
    subprocess.run(["tar", "-cf", "/dev/null", "-C", str(root), "."], check=True)


def timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def bench_write(tree: Path, work: Path, label: str, data_bytes: int, entries: int) -> None:
    warm(tree)
    out = work / f"{label}.uri"
    tar_out = work / f"{label}.tar"
    report, dt_uri = timed(write_uri, out, tree, overwrite=True)
    _, dt_tar = timed(subprocess.run, ["tar", "-cf", str(tar_out), "-C", str(tree), "."],
                      check=True)
    print(f"write {label}: {entries:,} entries, {data_bytes / MiB:,.0f} MiB of data")
    print(f"  write_uri: {dt_uri:6.2f} s  {data_bytes / MiB / dt_uri:7.1f} MiB/s  "
          f"{report.entries / dt_uri:9,.0f} entries/s  archive {out.stat().st_size / MiB:,.1f} MiB")
    print(f"  tar -cf  : {dt_tar:6.2f} s  {data_bytes / MiB / dt_tar:7.1f} MiB/s  "
          f"{entries / dt_tar:9,.0f} entries/s  archive {tar_out.stat().st_size / MiB:,.1f} MiB")
    tar_out.unlink()


def open_session(src):  # type: ignore[no-untyped-def]
    return run_sync(UriFormat().open_flow(src.size, OpenOptions()), src)


def bench_local(path: Path) -> None:
    with FileSource(path) as src:
        s, dt_open = timed(open_session, src)
        _, dt_index = timed(lambda: run_sync(s.listdir_flow(""), src))
        n = s.info().entries
        print(f"list locally ({n:,} entries, {path.stat().st_size / MiB:,.1f} MiB):")
        print(f"  open {dt_open * 1000:.1f} ms; full index + listdir('') {dt_index:.2f} s "
              f"({n / dt_index:,.0f} entries/s)")
        count = [0]
        s2 = open_session(src)
        _, dt_walk = timed(lambda: run_sync(s2.walk_flow("", lambda b: count.__setitem__(
            0, count[0] + len(b))), src))
        print(f"  walk (streamed, no index) {dt_walk:.2f} s ({count[0] / dt_walk:,.0f} "
              "entries/s)")
        report, dt_verify = timed(lambda: run_sync(open_session(src).verify_flow(), src))
        assert report.ok, report.problems[:3]
        print(f"  verify {dt_verify:.2f} s ({report.bytes_checked / MiB / dt_verify:,.0f} "
              "MiB/s of data)")
        s3 = open_session(src)
        tracemalloc.start()
        run_sync(s3.listdir_flow(""), src)
        used, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  index memory {used / MiB:.1f} MiB ({used / n:.0f} B/entry; estimate "
              f"{s3._index.weight / MiB:.1f} MiB); peak during the scan {peak / MiB:.1f} MiB")


def bench_http(base: str, name: str) -> None:
    url = f"{base}/archives/{name}"
    src = CountingSource(HttpSource(url))
    s, dt_open = timed(open_session, src)
    rt_open, by_open = src.round_trips, src.bytes
    _, dt_index = timed(lambda: run_sync(s.listdir_flow(""), src))
    n = s.info().entries
    print(f"list over HTTP ({name}, {n:,} entries):")
    print(f"  open: {rt_open} round trip, {by_open / KiB:.0f} KiB, {dt_open * 1000:.0f} ms")
    print(f"  open + index: {src.round_trips} round trips, {src.bytes / MiB:.1f} MiB, "
          f"{dt_open + dt_index:.2f} s")
    first = next(e for e in s._index.entries if s._index.entries[e].type == b"FILE")
    src.reset()
    _, dt_read = timed(lambda: run_sync(s.read_flow(first, 0, 1 << 20), src))
    print(f"  then read {first}: {src.round_trips} round trip, {src.bytes} B, "
          f"{dt_read * 1000:.1f} ms")
    src.close()
    src = CountingSource(HttpSource(url))
    t = time.perf_counter()
    s = open_session(src)
    run_sync(s.walk_flow("", lambda b: None), src)
    print(f"  open + walk: {src.round_trips} round trips, {src.bytes / MiB:.1f} MiB, "
          f"{time.perf_counter() - t:.2f} s")
    src.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default="/tmp/lockbox-bench-uri")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--entries", type=int, default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.entries or (10_000 if args.quick else 100_000)
    large_files, large_size = (2, 64 * MiB) if args.quick else (4, 256 * MiB)
    print(f"bench_uri {today()} on {machine()}")
    small_bytes = make_small_tree(work / "small", n)
    large_bytes = make_large_tree(work / "large", large_files, large_size)
    entries = n + n // 1000 + (n % 1000 > 0)
    bench_write(work / "small", work, "small", small_bytes, entries)
    bench_write(work / "large", work, "large", large_bytes, large_files)
    bench_local(work / "small.uri")
    served = work / "served"
    shutil.rmtree(served, ignore_errors=True)
    served.mkdir()
    os.link(work / "small.uri", served / "small.uri")
    # small files, the large tree's first file, small files: listing must skip its data
    mixed = served / "mixed.uri"
    with open(mixed, "wb") as f:
        f.write((work / "large.uri").read_bytes()[: 8 + 96 + 8 + large_size])  # one big file
    write_uri(served / "tail.uri", work / "small" / "d000", overwrite=True)
    with open(mixed, "ab") as f:
        f.write((served / "tail.uri").read_bytes()[8:])
    with serve(served) as base:
        bench_http(base, "small.uri")
        src = CountingSource(HttpSource(f"{base}/archives/mixed.uri"))
        t = time.perf_counter()
        s = open_session(src)
        names = run_sync(s.listdir_flow(""), src)
        print(f"list over HTTP (mixed.uri: a {large_size // MiB} MiB file, then "
              f"{s.info().entries - 1:,} small files): {src.round_trips} round trips, "
              f"{src.bytes / KiB:.0f} KiB, {time.perf_counter() - t:.2f} s "
              f"({len(names)} top-level entries)")
        src.close()


if __name__ == "__main__":
    main()
