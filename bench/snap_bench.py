"""Benchmarks of snapdir snapshots and SNAPPACK (issue 10 §6): lockbox against the snapdir
binding (PyPI ``snapdir``, snapdir's Rust code), side by side; writes the "snapdir /
SNAPPACK" section of docs/PERFORMANCE.md.

    .venv/bin/python bench/snap_bench.py [--work DIR] [--rounds R] [--no-write]

Two data sets of random (incompressible) bytes: 5,000 files of 4 KiB and 256 files of
1 MiB, each once as a directory tree and once as a SNAPPACK stream built here by hand
from the seed's grammar (every object once, then the tree's manifest, then ``end``), v1
and 1Z (zstd level 3).

* **receive-pack**: lockbox's ``read_pack`` of the whole stream (from memory) into a
  ``FileSink`` over a fresh, empty ``FileStore``: every object hashed (BLAKE3) while it
  is written to a temp file, renamed into place, one fsync barrier, then the manifest.
  The snapdir binding has no pack API; its closest equivalent is ``snapdir.push`` of the
  same tree into a fresh, empty ``file://`` store: it walks and hashes the tree, copies
  every object (verified) into the store with temp + rename, then writes the manifest.
  Both file the same objects and manifest; the input differs (a stream from memory / a
  tree in the page cache). Also ``lockbox snap receive-pack`` as a process (start-up
  included), the pack on its stdin.
* **id of a tree**: ``manifest_of_directory`` + ``snapshot_id`` against ``snapdir.id``
  of the same tree (the files are in the page cache after the warm-up).

Each measurement is the median of ``--rounds`` runs (3 by default), lockbox and snapdir
alternating run by run; the id runs come after one warm-up of each. Stores are removed
between runs (not timed). One more run of the small v1 pack under cProfile says where
lockbox's time goes (fsync, mkdir).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import snapdir
from common import machine, today, write_section

from lockbox.codec.zstd import ZstdCodec
from lockbox.formats.snap.manifest import manifest_of_directory, snapshot_id
from lockbox.formats.snap.snappack import FileSink, read_pack
from lockbox.formats.snap.store import FileStore
from lockbox.platform import default_crypto

KiB, MiB = 1 << 10, 1 << 20
SECTION = "snap-bench"
DATASETS = (("5,000 × 4 KiB", 5000, 4 * KiB), ("256 × 1 MiB", 256, MiB))


def b3(data: bytes) -> str:
    h = default_crypto().blake3()
    h.update(data)
    return h.digest().hex()


def make_tree(root: Path, count: int, size: int) -> Path:
    """``count`` random files of ``size`` bytes in 100-file directories."""
    for i in range(count):
        d = root / f"d{i // 100:03d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return root


def make_pack(tree: Path, manifest: bytes) -> bytes:
    """SNAPPACK 1 by hand: every file of the tree as an obj record, the manifest, end."""
    out = bytearray(b"SNAPPACK 1\n")
    for path in sorted(tree.rglob("*.bin")):
        data = path.read_bytes()
        out += f"obj {b3(data)} {len(data)}\n".encode() + data
    out += f"manifest {b3(manifest)} {len(manifest)}\n".encode() + manifest + b"end\n"
    return bytes(out)


def zstd_pack(pack: bytes) -> bytes:
    return b"SNAPPACK 1Z\n" + ZstdCodec().compress(pack[len(b"SNAPPACK 1\n"):], 3)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def lockbox_receive(pack: bytes, store_dir: Path) -> None:
    store = FileStore(store_dir, create=True)
    try:
        read_pack(io.BytesIO(pack), FileSink(store))
    finally:
        store.close()


def cli_receive(pack_file: Path, store_dir: Path) -> None:
    with open(pack_file, "rb") as stdin:
        subprocess.run([sys.executable, "-m", "lockbox", "snap", "receive-pack", "--store",
                        str(store_dir), "-q"], stdin=stdin, check=True,
                       capture_output=True)


def snapdir_push(tree: Path, store_dir: Path) -> None:
    asyncio.run(snapdir.push(str(tree), snapdir.StoreUri(store_dir.as_uri())))


def compare(rounds: int, ours: Callable[[], object], theirs: Callable[[], object],
            reset: Callable[[], object] = lambda: None, *, warm_up: bool = True
            ) -> tuple[float, float]:
    """Medians (seconds) of ``rounds`` alternating runs (after one warm-up of each)."""
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds + warm_up):
        reset()
        t_ours = timed(ours)
        reset()
        t_theirs = timed(theirs)
        if i or not warm_up:
            a.append(t_ours)
            b.append(t_theirs)
    reset()
    return statistics.median(a), statistics.median(b)


def median_of(rounds: int, fn: Callable[[], object],
              reset: Callable[[], object] = lambda: None) -> float:
    """The median (seconds) of ``rounds`` runs."""
    times = []
    for _ in range(rounds):
        reset()
        times.append(timed(fn))
    reset()
    return statistics.median(times)


def rate(n_bytes: int, seconds: float) -> str:
    return f"{n_bytes / MiB / seconds:,.0f} MiB/s"


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def bench_dataset(work: Path, label: str, count: int, size: int, rounds: int
                  ) -> tuple[list[str], str]:
    """The receive-pack rows (v1, 1Z) and the id row of one data set."""
    tree = make_tree(fresh(work / "tree"), count, size)
    manifest = manifest_of_directory(tree).render()
    tree_id = snapshot_id(manifest)
    if tree_id != asyncio.run(snapdir.id(str(tree))):
        raise SystemExit(f"{label}: lockbox and snapdir disagree on the tree's id")
    payload = count * size
    v1 = make_pack(tree, manifest)
    ours_dir, theirs_dir = work / "store-lockbox", work / "store-snapdir"
    pack_file = work / "pack.bin"

    def reset() -> None:
        fresh(ours_dir)
        fresh(theirs_dir)

    rows = []
    for name, pack in (("SNAPPACK 1", v1), ("SNAPPACK 1Z", zstd_pack(v1))):
        t_ours, t_theirs = compare(rounds, partial(lockbox_receive, pack, ours_dir),
                                   partial(snapdir_push, tree, theirs_dir), reset,
                                   warm_up=False)
        pack_file.write_bytes(pack)
        t_cli = median_of(rounds, lambda: cli_receive(pack_file, ours_dir), reset)
        lockbox_receive(pack, ours_dir)
        filed = FileStore(ours_dir)
        if not filed.has_manifest(tree_id):
            raise SystemExit(f"{label} {name}: receive-pack filed no manifest")
        filed.close()
        rows.append(f"| {label} | {name} ({len(pack) / MiB:,.1f} MiB) | {fmt(t_ours)} "
                    f"({rate(payload, t_ours)}) | {fmt(t_cli)} ({rate(payload, t_cli)}) | "
                    f"{fmt(t_theirs)} ({rate(payload, t_theirs)}) | "
                    f"{t_ours / t_theirs:.1f}× |")
        print(rows[-1], flush=True)
    reset()
    t_ours, t_theirs = compare(rounds, lambda: snapshot_id(manifest_of_directory(tree).render()),
                               lambda: asyncio.run(snapdir.id(str(tree))))
    id_row = (f"| {label} | {fmt(t_ours)} ({rate(payload, t_ours)}) | "
              f"{fmt(t_theirs)} ({rate(payload, t_theirs)}) | {t_ours / t_theirs:.1f}× |")
    print(id_row, flush=True)
    shutil.rmtree(tree)
    return rows, id_row


def syscall_share(work: Path, count: int, size: int) -> str:
    """Where one receive-pack of the data set's v1 pack spends its time (cProfile)."""
    import cProfile
    import pstats

    tree = make_tree(fresh(work / "tree"), count, size)
    pack = make_pack(tree, manifest_of_directory(tree).render())
    store_dir = fresh(work / "store-lockbox")
    profile = cProfile.Profile()
    profile.runcall(lockbox_receive, pack, store_dir)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    parts = []
    for name in ("fsync", "mkdir", "open", "rename", "replace"):
        calls = sum(v[1] for k, v in stats.items() if k[2] == f"<built-in method posix.{name}>")
        spent = sum(v[2] for k, v in stats.items() if k[2] == f"<built-in method posix.{name}>")
        if calls:
            parts.append(f"`{name}` {calls:,} calls {spent:.1f} s")
    shutil.rmtree(tree)
    fresh(store_dir)
    return f"{', '.join(parts)} of {total:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print, do not edit the doc")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="snap-bench-"))
    os.environ.setdefault("SNAPDIR_CACHE_DIR", str(work / "snapdir-cache"))
    started = time.monotonic()
    pack_rows: list[str] = []
    id_rows: list[str] = []
    try:
        for label, count, size in DATASETS:
            rows, id_row = bench_dataset(work, label, count, size, args.rounds)
            pack_rows += rows
            id_rows.append(id_row)
        label, count, size = DATASETS[0]
        profile = syscall_share(work, count, size)
        print(profile, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    body = "\n".join([
        f"## snapdir snapshots and SNAPPACK (issue #10) — {today()}",
        "",
        f"Machine: {machine()}.",
        f"Command: `.venv/bin/python bench/snap_bench.py` (medians of {args.rounds} runs, "
        f"lockbox and snapdir alternating; the ids after a warm-up; {elapsed:.0f} s in "
        f"all). snapdir: the PyPI binding {snapdir.version()} (Rust).",
        "",
        "**receive-pack**: lockbox files a whole pack (from memory) into a fresh, empty "
        "file store: `read_pack` into a `FileSink` (each object BLAKE3-hashed while it is "
        "written to a temp file, renamed into place; one fsync barrier; the manifest last), "
        "and `lockbox snap receive-pack` as a process (start-up included, the pack on its "
        "stdin). The snapdir binding has no pack API: the closest equivalent it has is "
        "`snapdir.push` of the same tree into a fresh, empty `file://` store, which hashes "
        "the tree and copies every object (verified, temp + rename) and then the manifest. "
        "Both end with the same objects and manifest on disk; lockbox's input is a stream, "
        "snapdir's a tree in the page cache. Throughput counts file bytes.",
        "",
        "| data | pack | lockbox `read_pack` | `lockbox snap receive-pack` | "
        "`snapdir.push` | lockbox ÷ snapdir |",
        "|---|---|---|---|---|---|",
        *pack_rows,
        "",
        f"Small objects are bound by the file system, not by hashing or parsing: one "
        f"receive-pack of the {label} v1 pack under cProfile spent {profile} (each object "
        f"is fsynced at the barrier, with every shard directory it created: snapdir's "
        f"durable discipline; random ids put nearly every object in new shard "
        f"directories). 1Z costs little more than v1: zstd's decompression is fast and "
        f"random data barely compresses.",
        "",
        "**id of a tree**: lockbox's `manifest_of_directory` + `snapshot_id` against "
        "`snapdir.id` (the same tree, in the page cache). Both give the same id (checked).",
        "",
        "| data | lockbox | `snapdir.id` | lockbox ÷ snapdir |",
        "|---|---|---|---|",
        *id_rows,
    ])
    print(body)
    if not args.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
