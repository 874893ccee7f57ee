"""Benchmarks of ``lockbox mount`` (issue 11 §4); writes the "mount" section of
docs/PERFORMANCE.md.

    .venv/bin/python bench/mount_bench.py [--work DIR] [--rounds R] [--large-mib M] [--no-write]

Every server runs in this process (cheroot threads, the app ``make_mount_app`` builds);
the client is ``curl`` (a separate process, so the client's own cost does not share the
server's interpreter). Each figure is the median of ``--rounds`` (3) runs after one
warm-up; the two servers of a comparison alternate run by run.

* **PROPFIND Depth 1 on a folder of 10,000 entries**: a ``.lbox`` whose one directory
  holds 10,000 small files (read-only mount), against wsgidav's own folder provider over
  the same 10,000 files on disk.
* **GET throughput of a large file** (256 MiB of random bytes by default): inside a
  ``.lbox`` (read-only mount, chunk size 1 MiB: the default) against wsgidav serving the
  same file from a folder; the ratio. Then a 1-byte Range GET in the middle of the file:
  its time and the bytes the mount read from the archive.
* **PUT throughput into a .lbox** (the writable mount, ``lbox_rw``): one large PUT of the
  same file, committed before the answer; and 200 PUTs of 4 KiB one after the other
  (each answered after its commit: fsyncs included), against the folder provider.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, today, write_section
from wsgidav.fs_dav_provider import FilesystemProvider

import lockbox
from lockbox import Argon2Params
from lockbox.facade import Archive
from lockbox_server.mount import ArchiveProvider, make_mount_app, start_mount_server

PASSWORD = "bench"
ARGON2 = Argon2Params(time_cost=1, memory_kib=64)  # the unlock is not what is measured
MIB = 1024 * 1024


def curl(*args: str) -> tuple[float, int]:
    """Run curl; (seconds, bytes downloaded)."""
    out = subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "-w",
                          "%{time_total} %{size_download}", *args],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    seconds, size = out.split()
    return float(seconds), int(size)


def median_of(fn: Callable[[], float], rounds: int) -> float:
    fn()  # warm-up
    return statistics.median(fn() for _ in range(rounds))


def alternate(a: Callable[[], float], b: Callable[[], float], rounds: int
              ) -> tuple[float, float]:
    a(), b()  # warm-up
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


def propfind(url: str) -> float:
    seconds, _ = curl("-X", "PROPFIND", "-H", "Depth: 1", url)
    return seconds


def bench_propfind(work: Path, rounds: int, count: int = 10_000) -> dict[str, Any]:
    folder = work / "many"
    (folder / "dir").mkdir(parents=True)
    box_path = work / "many.lbox"
    box = lockbox.create(box_path, password=PASSWORD, argon2=ARGON2)
    try:
        with box.writer() as w:
            for i in range(count):
                data = f"file {i}\n".encode()
                w.add_bytes(f"dir/file-{i:05d}.txt", data)
                (folder / "dir" / f"file-{i:05d}.txt").write_bytes(data)
    finally:
        box.close()
    archive = Archive.open(box_path, password=PASSWORD)
    with start_mount_server(make_mount_app(ArchiveProvider(archive), verbose=0)) as lb, \
            start_mount_server(make_mount_app(FilesystemProvider(str(folder)), verbose=0)) as fs:
        _, size = curl("-X", "PROPFIND", "-H", "Depth: 1", lb.url + "dir/")
        t_lbox, t_folder = alternate(lambda: propfind(lb.url + "dir/"),
                                     lambda: propfind(fs.url + "dir/"), rounds)
    return {"entries": count, "bytes": size, "lbox_s": t_lbox, "folder_s": t_folder}


def bench_get(work: Path, rounds: int, large_mib: int) -> dict[str, Any]:
    folder = work / "large"
    folder.mkdir()
    big = folder / "big.bin"
    with open(big, "wb") as f:
        for _ in range(large_mib):
            f.write(os.urandom(MIB))
    box_path = work / "large.lbox"
    box = lockbox.create(box_path, password=PASSWORD, argon2=ARGON2)
    started = time.perf_counter()
    try:
        with box.writer() as w:
            w.add_file("big.bin", big)
    finally:
        box.close()
    write_s = time.perf_counter() - started
    archive = Archive.open(box_path, password=PASSWORD)
    provider = ArchiveProvider(archive)
    size = large_mib * MIB

    def get(url: str) -> float:
        seconds, got = curl(url)
        assert got == size, (got, size)
        return seconds

    with start_mount_server(make_mount_app(provider, verbose=0)) as lb, \
            start_mount_server(make_mount_app(FilesystemProvider(str(folder)), verbose=0)) as fs:
        t_lbox, t_folder = alternate(lambda: get(lb.url + "big.bin"),
                                     lambda: get(fs.url + "big.bin"), rounds)
        middle = size // 2
        range_times = []
        range_bytes = []
        for _ in range(rounds):
            before = archive.source.stats.bytes_read
            seconds, got = curl("-H", f"Range: bytes={middle}-{middle}", lb.url + "big.bin")
            assert got == 1
            range_times.append(seconds)
            range_bytes.append(archive.source.stats.bytes_read - before)
            middle += 7 * MIB + 12345  # another window each time: no cache hit
    return {"size": size, "lbox_s": t_lbox, "folder_s": t_folder, "write_s": write_s,
            "range_s": statistics.median(range_times),
            "range_bytes": statistics.median(range_bytes), "big": big}


def bench_put(work: Path, rounds: int, big: Path) -> dict[str, Any] | str:
    try:
        from lockbox_server.mount import lbox_rw
    except ImportError as e:
        return f"not measured: the writable .lbox provider is missing ({e})"
    size = big.stat().st_size
    out: dict[str, Any] = {"size": size}
    small = os.urandom(4096)
    n_small = 200

    def fresh_lbox(tag: str) -> Path:
        path = work / f"put-{tag}.lbox"
        path.unlink(missing_ok=True)
        lockbox.create(path, password=PASSWORD, argon2=ARGON2).close()
        return path

    def fresh_folder(tag: str) -> Path:
        path = work / f"put-{tag}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path

    counter = iter(range(10_000))

    def put_large_lbox() -> float:
        path = fresh_lbox(str(next(counter)))
        provider = lbox_rw.make_provider(path, password=PASSWORD)
        with start_mount_server(make_mount_app(provider, verbose=0)) as s:
            seconds, _ = curl("-T", str(big), s.url + "big.bin")
        path.unlink()
        return seconds

    def put_large_folder() -> float:
        path = fresh_folder(str(next(counter)))
        with start_mount_server(make_mount_app(FilesystemProvider(str(path)),
                                               verbose=0)) as s:
            seconds, _ = curl("-T", str(big), s.url + "big.bin")
        shutil.rmtree(path)
        return seconds

    src = work / "small.bin"
    src.write_bytes(small)

    def put_small(url: str) -> float:
        # one curl process, n sequential PUTs over one connection
        args: list[str] = []
        for i in range(n_small):
            args += ["-o", "/dev/null", "-T", str(src), f"{url}s-{i:04d}.bin"]
        started = time.perf_counter()
        subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", *args], check=True,
                       timeout=600)
        return time.perf_counter() - started

    def put_small_lbox() -> float:
        path = fresh_lbox(str(next(counter)))
        provider = lbox_rw.make_provider(path, password=PASSWORD)
        with start_mount_server(make_mount_app(provider, verbose=0)) as s:
            seconds = put_small(s.url)
        with lockbox.open(path, password=PASSWORD) as box:
            assert len(box.ls("")) == n_small
        path.unlink()
        return seconds

    def put_small_folder() -> float:
        path = fresh_folder(str(next(counter)))
        with start_mount_server(make_mount_app(FilesystemProvider(str(path)),
                                               verbose=0)) as s:
            seconds = put_small(s.url)
        shutil.rmtree(path)
        return seconds

    out["large_lbox_s"], out["large_folder_s"] = alternate(put_large_lbox, put_large_folder,
                                                           rounds)
    out["small_n"] = n_small
    out["small_lbox_s"], out["small_folder_s"] = alternate(put_small_lbox, put_small_folder,
                                                           rounds)
    return out


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def mib_s(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:.0f} MiB/s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=256)
    ap.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print("curl is needed (the client)", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="mount-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        pf = bench_propfind(work, args.rounds)
        get = bench_get(work, args.rounds, args.large_mib)
        put = bench_put(work, args.rounds, get["big"])
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    size = get["size"]
    lines = [
        f"## `lockbox mount`: WebDAV (issue 11) — {today()}",
        "",
        f"Machine: {machine()}.",
        f"Command: `.venv/bin/python bench/mount_bench.py` (medians of {args.rounds} runs "
        f"after a warm-up, the two servers alternating; {total:.0f} s in all). Servers: "
        "`make_mount_app` under cheroot in the bench's process, on 127.0.0.1; client: "
        "curl. The folder figures are wsgidav's own `FilesystemProvider` behind the same "
        "app (same middleware, same server): the cost of the archive is the difference.",
        "",
        "| what | .lbox mount | wsgidav, plain folder | ratio |",
        "|---|---|---|---|",
        f"| PROPFIND Depth 1, one folder of {pf['entries']:,} entries "
        f"({pf['bytes']:,} B of XML) | {fmt_ms(pf['lbox_s'])} | {fmt_ms(pf['folder_s'])} | "
        f"{pf['lbox_s'] / pf['folder_s']:.2f}x the time |",
        f"| GET of a {size // MIB} MiB file (random bytes, 1 MiB chunks) | "
        f"{fmt_ms(get['lbox_s'])} = {mib_s(size, get['lbox_s'])} | "
        f"{fmt_ms(get['folder_s'])} = {mib_s(size, get['folder_s'])} | "
        f"{get['folder_s'] / get['lbox_s']:.2f} of the folder's throughput |",
    ]
    if isinstance(put, dict):
        lines += [
            f"| PUT of the same {size // MIB} MiB file into a new, empty archive / folder "
            f"(writable mount; answered after the commit) | {fmt_ms(put['large_lbox_s'])} = "
            f"{mib_s(size, put['large_lbox_s'])} | {fmt_ms(put['large_folder_s'])} = "
            f"{mib_s(size, put['large_folder_s'])} | "
            f"{put['large_folder_s'] / put['large_lbox_s']:.2f} of the folder's throughput |",
            f"| {put['small_n']} PUTs of 4 KiB one after the other (one connection; each "
            f"answered after its commit) | {fmt_ms(put['small_lbox_s'])} = "
            f"{put['small_lbox_s'] / put['small_n'] * 1000:.1f} ms a PUT | "
            f"{fmt_ms(put['small_folder_s'])} = "
            f"{put['small_folder_s'] / put['small_n'] * 1000:.1f} ms a PUT | "
            f"{put['small_lbox_s'] / put['small_folder_s']:.1f}x the time |",
            "",
            "The folder provider writes without fsync; the .lbox mount answers a PUT only "
            "once its commit is durable (pages fsynced, then the commit slot fsynced): "
            "sequential small PUTs pay that each time, concurrent ones share a commit "
            "(group commit, lbox_batch).",
        ]
    lines += [
        "",
        f"A 1-byte Range GET in the middle of the {size // MIB} MiB file: "
        f"{fmt_ms(get['range_s'])} (curl's total, connection included), "
        f"{get['range_bytes']:,.0f} B read from the archive: the one 1 MiB chunk it falls "
        "in (a chunk is decrypted and checked whole) and the tree pages on the way, "
        "whatever the file's size.",
        f"Writing the {size // MIB} MiB archive for the GET test with the Python API "
        f"took {get['write_s']:.1f} s.",
    ]
    if not isinstance(put, dict):
        lines += ["", f"PUT into a .lbox: {put}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("mount-bench", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
