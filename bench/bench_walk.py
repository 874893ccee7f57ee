#!/usr/bin/env python3
"""Tree-walk benchmarks, written to docs/PERFORMANCE.md ("walk-bench").

    .venv/bin/python bench/bench_walk.py [--entries 1000000] [--latency-ms 50]
        [--work DIR] [--baseline-src DIR] [--only remote tall hostile ratios] [--no-write]

* **remote**: ``ls -R`` and ``verify`` of a 1,000,000-entry archive over HTTP (the real
  server, ``lockbox_server``, on a free loopback port) behind a TCP proxy adding
  ``--latency-ms`` of round-trip latency (``DelayProxy`` of ``bench_browser.py``), by the
  sync facade the CLI uses (``HttpSource``: one request per coalesced range) and by the
  async one (``AsyncHttpSource``: the ranges of one batch concurrently); plus ``ls`` of one
  directory and a ``stat``. Round trips are flow batches (``Read``s), counted by
  ``common.CountingSource``; requests and bytes are the source's own counters; the walk's
  own counters (``ArchiveView.walk_stats``: levels, budget splits) come along.
* **tall**: ``ls -R`` round trips of the code review's tall tree (3,000 entries, nodes of
  400 bytes: height 5), through the same proxy.
* **hostile**: every archive of ``tests/hostile/tree_cases.py`` through the CLI
  (``lockbox ls``, ``ls -R``, ``ls PATH`` = stat, ``verify``), peak RSS and wall time.
* **ratios**: the decompression ratio (node weight ÷ frame bytes, ``lockbox.formats.lbox.walk``) of
  archives the reference writer makes from generated trees — the measurements behind the
  walk's default decompression bound.

Every measured step runs in a child process (its peak RSS is its own). ``--baseline-src``
runs the remote and tall steps once more with another checkout's ``pycore`` (e.g. the
commit before the shared walk) for a before/after. Archives are cached in
``.cache/bench/walk`` (the 1M-entry one takes about a minute to build).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_browser import DelayProxy  # noqa: E402  (the latency proxy, reused)
from common import ROOT, machine, serve, today, write_section  # noqa: E402

PY = sys.executable
WORK = ROOT / ".cache" / "bench" / "walk"
PASSWORD = "pw"
MTIME = 1_700_000_000_000_000_000
TALL_ENTRIES, TALL_NODE = 3000, 400

BUILD_MANY = """
import os, sys, time, lockbox
from lockbox.formats.lbox.keys import Argon2Params
arch, count = sys.argv[1], int(sys.argv[2])
tmp = arch + ".part"
if os.path.exists(tmp): os.unlink(tmp)
box = lockbox.create(tmp, password="pw", argon2=Argon2Params(1, 64))
t = time.perf_counter()
with box.writer() as w:
    for i in range(count):
        w.add_bytes(f"d{i // 1000 % 1000:03d}/f{i % 1000:04d}.txt", b"%d" % i,
                    mtime_ns=1_700_000_000_000_000_000)
box.close()
os.replace(tmp, arch)
print(time.perf_counter() - t)
"""

BUILD_TALL = """
import os, sys, lockbox, lockbox.formats.lbox.write.tree
from lockbox.formats.lbox.keys import Argon2Params
arch, count, node = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lockbox.formats.lbox.write.tree.NODE_TARGET_SIZE = node  # smaller nodes, the same format
box = lockbox.create(arch, password="pw", argon2=Argon2Params(1, 64))
with box.writer() as w:
    for i in range(count):
        w.add_bytes(f"d{i // 100:02d}/f{i:05d}.txt", b"%d" % i, mtime_ns=1_700_000_000_000_000_000)
box.close()
"""

REMOTE = """
import asyncio, json, resource, sys, time
sys.path.insert(0, sys.argv[4])
import lockbox
from lockbox.sources import AsyncHttpSource, HttpSource
from common import CountingSource
url, op, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]

class AsyncCounting(CountingSource):
    async def read(self, ranges):
        self.round_trips += 1
        self.ranges += len(ranges)
        out = await self.inner.read(ranges)
        self.bytes += sum(len(b) for b in out)
        return out

async def run(box, wait):
    if op == "ls-R":
        return len(await wait(box.ls("", recursive=True)))
    if op == "ls":
        return len(await wait(box.ls(arg)))
    if op == "stat":
        return (await wait(box.stat(arg))).size
    report = await wait(box.verify())
    assert report.ok, report.problems[:3]
    return report.files_checked

async def same(x):
    return x

async def awaited(x):
    return await x

async def main():
    if mode == "sync":
        src = CountingSource(HttpSource(url, timeout=600))
        box = lockbox.Lockbox(src, password="pw")
        wait = same
    else:
        src = AsyncCounting(AsyncHttpSource(url, timeout=600))
        box = await lockbox.AsyncLockbox.open(src, password="pw")
        wait = awaited
    src.reset()
    requests = src.inner.stats.requests
    t = time.perf_counter()
    n = await run(box, wait)
    out = {"n": n, "seconds": time.perf_counter() - t, "round_trips": src.round_trips,
           "requests": src.inner.stats.requests - requests, "bytes": src.bytes,
           "height": box.view.commit.toc.height}
    ws = getattr(box.view, "walk_stats", None)
    out["walk"] = vars(ws) if ws is not None else None
    return out

out = asyncio.run(main())
out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

CLI_OP = """
import contextlib, io, json, os, resource, sys, time
from lockbox.cli import main
argv = sys.argv[1:]
t = time.perf_counter()
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "stderr": err.getvalue()[-300:],
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str, src: str | None = None, timeout: float = 3600,
          env: dict[str, str] | None = None) -> dict[str, Any]:
    e = dict(os.environ, **(env or {}))
    if src is not None:
        e["PYTHONPATH"] = str(Path(src) / "pycore")
    proc = subprocess.run([PY, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=e)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------- archives


def ensure_many(entries: int) -> Path:
    from lockbox.formats.lbox.wire.constants import FORMAT_VERSION

    path = WORK / f"many-{entries}-v{FORMAT_VERSION}.lbox"
    if not path.exists():
        log(f"building {path.name} ({entries:,} entries; cached for later runs)")
        t = time.perf_counter()
        subprocess.run([PY, "-c", BUILD_MANY, str(path), str(entries)], check=True)
        log(f"built in {time.perf_counter() - t:.0f} s")
    return path


def ensure_tall() -> Path:
    from lockbox.formats.lbox.wire.constants import FORMAT_VERSION

    path = WORK / f"tall-{TALL_ENTRIES}-{TALL_NODE}-v{FORMAT_VERSION}.lbox"
    if not path.exists():
        subprocess.run([PY, "-c", BUILD_TALL, str(path), str(TALL_ENTRIES), str(TALL_NODE)],
                       check=True)
    return path


# ---------------------------------------------------------------------------------- steps


def remote(paths: list[Path], entries: int, latency_ms: float,
           baseline: str | None) -> dict[str, Any]:
    """Every remote measurement, through one server and one delay proxy."""
    mid = entries // 2
    folder = f"d{mid // 1000 % 1000:03d}"
    out: dict[str, Any] = {"latency_ms": latency_ms, "folder": folder,
                           "file": f"{folder}/f{mid % 1000:04d}.txt"}
    with serve(WORK) as base:
        port = int(base.rsplit(":", 1)[1])
        with DelayProxy(port, latency_ms / 2000) as proxy:
            url = f"http://127.0.0.1:{proxy.port}/archives/"
            import httpx

            with httpx.Client() as client:  # one 1-byte range on a kept-alive connection
                client.get(url + paths[0].name, headers={"Range": "bytes=0-0"})
                t = time.perf_counter()
                client.get(url + paths[0].name, headers={"Range": "bytes=0-0"})
                out["ping_s"] = time.perf_counter() - t
            many, tall = paths
            plan = [("many", many, "ls-R", "sync", ""), ("many", many, "ls-R", "async", ""),
                    ("many", many, "ls", "sync", folder),
                    ("many", many, "stat", "sync", out["file"]),
                    ("many", many, "verify", "sync", ""), ("many", many, "verify", "async", ""),
                    ("tall", tall, "ls-R", "sync", "")]
            for label, path, op, mode, arg in plan:
                for which, src in (("new", None), ("baseline", baseline)):
                    if which == "baseline" and (src is None or op == "verify"):
                        continue
                    key = f"{label}:{op}:{mode}:{which}"
                    log(f"remote {key}")
                    out[key] = child(REMOTE, url + path.name, op, mode, str(BENCH), arg,
                                     src=src)
                    log(f"  {json.dumps(out[key])[:300]}")
    return out


def hostile() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    import lockbox
    from hostile import tree_cases
    from lockbox.formats.lbox.wire.constants import FrameKind
    from lockbox.sources.memory import BytesSource

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in tree_cases.CASES.items():
            data, pw = build()
            path = Path(tmp) / f"{name}.lbox"
            path.write_bytes(data)
            box = lockbox.Lockbox(BytesSource(data), password=pw, cache=0)
            root = box.run(box.view.root_node_flow(FrameKind.TOC_NODE, box.view.commit.toc))
            first = root.children[0].first_key[1:].decode()  # type: ignore[union-attr]
            row: dict[str, Any] = {"size": len(data)}
            for op, argv in (("ls", ["ls", str(path)]), ("ls -R", ["ls", "-R", str(path)]),
                             ("stat", ["ls", str(path), "--", first]),
                             ("verify", ["verify", str(path)])):
                row[op] = child(CLI_OP, *argv, env={"LOCKBOX_PASSWORD": pw}, timeout=900)
                log(f"hostile {name} {op}: {json.dumps(row[op])[:200]}")
            out[name] = row
    return out


RATIO_SHAPES = {
    "files100k": "100,000 small source files (200 per folder)",
    "dirs200k": "200,000 empty folders, 7-digit names",
    "links100k": "100,000 symlinks, one 97-byte target",
    "env2k": "2,000 env values of 4 KiB of zeros",
    "aaa": "175,760 empty folders named aaa…zzz (10 × 17,576), mtime 0",
}

BUILD_SHAPE = """
import os, sys, lockbox
from lockbox.formats.lbox.keys import Argon2Params
name, path = sys.argv[1], sys.argv[2]
M = 1_700_000_000_000_000_000
box = lockbox.create(path, password="pw", argon2=Argon2Params(1, 64))
with box.writer() as w:
    if name == "files100k":
        for i in range(100_000):
            w.add_bytes(f"src/pkg{i // 200:03d}/module_{i:06d}.py", b"import os\\n" * 40,
                        mtime_ns=M)
    elif name == "dirs200k":
        for i in range(200_000):
            w.mkdir(f"d{i // 1000:03d}/{i:07d}", mtime_ns=M)
    elif name == "links100k":
        for i in range(100_000):
            w.symlink(f"l{i // 1000:03d}/link{i:06d}",
                      "../../shared/target/of/all/the/links/" + "x" * 60, mtime_ns=M)
    elif name == "env2k":
        for i in range(2000):
            w.env_set(f"VAR_{i:05d}", bytes(4096))
    elif name == "aaa":
        import itertools, string
        names = ["".join(t) for t in itertools.product(string.ascii_lowercase, repeat=3)]
        for d in range(10):
            for n in names:
                w.mkdir(f"{d}/{n}", mtime_ns=0)
box.close()
"""

RATIO = """
import json, sys, lockbox
from lockbox.formats.lbox.wire.constants import FrameKind
from lockbox.formats.lbox.walk import WalkLimits
box = lockbox.open(sys.argv[1], password="pw", cache=0)
v = box.view
v.limits = WalkLimits(amplification=10**9)  # measure, do not stop
out = {"archive_bytes": box.source.size, "toc_height": v.commit.toc.height}
for kind, root in ((FrameKind.TOC_NODE, v.commit.toc), (FrameKind.ENV_NODE, v.commit.env),
                   (FrameKind.SPACE_NODE, v.commit.space)):
    if root is None or root.empty:
        continue
    before = v.walk_stats.copy()
    box.run(v.walk_tree_flow(kind, root, lambda node, ref: None))
    d = v.walk_stats - before
    out[kind.name] = {"nodes": d.nodes, "frame_bytes": d.frame_bytes,
                      "weight": d.decoded_bytes, "entries": root.count}
print(json.dumps(out))
"""


def ratios(many: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in RATIO_SHAPES:
        path = WORK / f"shape-{name}.lbox"
        if not path.exists():
            subprocess.run([PY, "-c", BUILD_SHAPE, name, str(path)], check=True)
        out[name] = child(RATIO, str(path))
        log(f"ratio {name}: {out[name]}")
    out["many"] = child(RATIO, str(many))
    return out


# --------------------------------------------------------------------------------- report


def _ratio(d: dict[str, Any]) -> float:
    return d["weight"] / max(1, d["frame_bytes"])


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from lockbox.formats.lbox.walk import WalkLimits

    lim = WalkLimits()
    base = r.get("baseline_label")
    rem = r.get("remote", {})
    lat = rem.get("latency_ms", args.latency_ms)
    lines = [f"## Tree walks — {r.get('date') or today()}", "",
             f"Machine: {r.get('machine') or machine()}. Command: "
             f"`.venv/bin/python bench/bench_walk.py{' --baseline-src DIR' if base else ''}`"
             f"{' (DIR: ' + base + ', for the *before* rows)' if base else ''}"
             " (single runs on a shared VM: expect ±30 % noise on times).", "",
             "Every tree read is one walk (`lockbox.formats.lbox.walk`): all the nodes of a "
             "level in one "
             f"`Read`, unless the level's frames exceed the budget (`WalkLimits`: "
             f"{lim.batch_bytes >> 20} MiB or {lim.batch_refs:,} refs per `Read`) — then "
             "the level is fetched in budget-sized groups, depth-first, and each extra `Read` "
             "is counted as a *split* (`ArchiveView.walk_stats`); a walk's round trips are "
             "levels + splits. Nodes are decoded one at a time and checked against their "
             "parent's ref as they arrive; a walk may decode at most "
             f"{lim.free_bytes >> 20} MiB + {lim.amplification}× the frame bytes it has read "
             "(node weight = decoded bytes + the items' memory as Python objects), else "
             "`LimitExceededError` naming `WalkLimits.amplification`.", ""]
    if rem:
        lines += [f"### Remote, +{lat:g} ms round-trip latency", "",
                  f"Server `lockbox_server` on loopback behind `bench_browser.DelayProxy` "
                  f"({lat / 2:g} ms each way; a 1-byte range on a kept-alive connection: "
                  f"{rem.get('ping_s', 0) * 1000:.0f} ms). Round trips = flow batches (`Read`s); "
                  "requests = HTTP requests (sync: one per coalesced range, in sequence; "
                  "async: those of one batch concurrently, up to 6).", "",
                  "| archive | operation | facade | round trips (tree walks: levels + splits) "
                  "| requests | bytes | wall | peak RSS |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, v in rem.items():
            if not isinstance(v, dict) or key.count(":") != 3:
                continue
            label, op, mode, which = key.split(":")
            w = v.get("walk") or {}
            walks = (f"{v['round_trips']} ({w.get('levels', '?')} + {w.get('splits', '?')})"
                     if w else f"{v['round_trips']} (one read per parent node)")
            what = {"many": f"{args.entries:,} entries (height {v['height']})",
                    "tall": f"{TALL_ENTRIES:,} entries, {TALL_NODE}-byte nodes "
                            f"(height {v['height']})"}[label]
            if which == "baseline":
                what += " — **before** (previous walk code)"
            opname = {"ls-R": "`ls -R`", "ls": f"`ls {rem['folder']}`",
                      "stat": f"`stat {rem['file']}`", "verify": "`verify`"}[op]
            lines.append(f"| {what} | {opname} | {mode} | {walks} | {v['requests']:,} | "
                         f"{v['bytes']:,} | {v['seconds']:.2f} s | {v['rss_mib']:.0f} MiB |")
        lines += ["", "`ls -R` and `verify` wall times are CPU: decoding a million entries "
                  "(about 10 µs each in `decode_entry`) and building the listing; the walk's "
                  "reads are a few hundred milliseconds of it. `verify` round trips also "
                  "count its content batches (about 8 MiB or 4,096 files each) and the "
                  "page-header checks; its tree walks (TOC and space map) are the levels + "
                  "splits shown. `ls DIR` is one walk for the folder's own entry and its "
                  "children (two ranges per level: the sync source sends them one after the "
                  "other, the async one together).", ""]
    hos = r.get("hostile")
    if hos:
        lines += ["### Hostile tree shapes (`tests/hostile/tree_cases.py`), through the CLI",
                  "", "Genuine archives (real sealing; only the TOC's shape is hostile). Each "
                  "cell: result, wall time, peak RSS of the `lockbox` process (stdout to "
                  "/dev/null). Target: ≤ 512 MiB and ≤ 10 s, or a clear typed error within "
                  "them.", "", "| case | archive | `ls` | `ls -R` | `ls PATH` (stat) | "
                  "`verify` |", "|---|---|---|---|---|---|"]
        for name, row in hos.items():
            cells = []
            for op in ("ls", "ls -R", "stat", "verify"):
                c = row[op]
                if c["rc"] == 0:
                    what = "listed"
                elif op == "verify":
                    what = "problems reported"
                else:
                    msg = c["stderr"].strip().splitlines()[0].removeprefix("lockbox: ")
                    what = msg if len(msg) <= 72 else msg[:72].rsplit(" ", 1)[0] + " …"
                cells.append(f"exit {c['rc']}: {what}; {c['seconds']:.2f} s, "
                             f"{c['rss_mib']:.0f} MiB")
            lines.append(f"| `{name}` | {row['size']:,} B | " + " | ".join(cells) + " |")
        lines.append("")
    rat = r.get("ratios")
    if rat:
        lines += ["### Decompression ratios of real writer output", "",
                  "Node weight ÷ frame bytes read, for a whole-tree walk of archives the "
                  "reference writer made from generated trees (nodes of ~32 KiB). The bound "
                  f"trips when a walk's weight exceeds {lim.free_bytes >> 20} MiB + "
                  f"{lim.amplification}× its frame bytes.", "",
                  "| archive | bytes | tree | entries | nodes | frame bytes | weight | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, v in rat.items():
            desc = RATIO_SHAPES.get(name, f"{args.entries:,} small files (the remote archive)")
            for tree in ("TOC_NODE", "ENV_NODE", "SPACE_NODE"):
                if tree in v:
                    d = v[tree]
                    lines.append(f"| {desc} | {v['archive_bytes']:,} | {tree.split('_')[0]} | "
                                 f"{d.get('entries', 0):,} | {d['nodes']:,} | "
                                 f"{d['frame_bytes']:,} | {d['weight']:,} | {_ratio(d):.1f} |")
        notes = []
        for name, v in rat.items():
            d = v.get("TOC_NODE") or v.get("ENV_NODE")
            if d and _ratio(d) > lim.amplification and d.get("entries"):
                # weight W trips when W > free + R * W / ratio
                limit = lim.free_bytes / (1 - lim.amplification / _ratio(d))
                notes.append(f"{RATIO_SHAPES.get(name, name)}: from about "
                             f"{limit / (d['weight'] / d['entries']):,.0f} entries")
        lines += ["", "Trees of real files measure 2.7x to 5x (hashes, file ids and tags do not "
                  f"compress): the bound has a 50x margin there. Synthetic trees of nothing "
                  f"but empty folders compress further; over {lim.amplification}x they trip "
                  "the bound once their weight passes "
                  f"{lim.free_bytes >> 20} MiB ÷ (1 − {lim.amplification} ÷ ratio) — "
                  + "; ".join(notes) + " — and a reader that trusts them raises "
                  "`ArchiveView.limits` (`WalkLimits(amplification=...)`). The same bound "
                  "keeps an 80 KiB archive's listing to about 300,000 entries "
                  "(`flood_at_limit` above).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--work", default=None, help="where archives are cached "
                    "(default .cache/bench/walk)")
    ap.add_argument("--baseline-src", default=None,
                    help="another checkout whose pycore to measure too (before/after)")
    ap.add_argument("--only", nargs="*", default=None,
                    choices=["remote", "tall", "hostile", "ratios"])
    ap.add_argument("--baseline-label", default="the commit before the shared walk",
                    help="what --baseline-src is, for the report")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the section from the last results.json")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    global WORK
    WORK = Path(args.work) if args.work else WORK
    WORK.mkdir(parents=True, exist_ok=True)
    results_path = WORK / "results.json"
    results: dict[str, Any] = {}
    if args.only is not None and results_path.exists():
        results.update(json.loads(results_path.read_text()))

    def want(name: str) -> bool:
        return not args.render_only and (args.only is None or name in args.only)

    if args.render_only:
        results = json.loads(results_path.read_text())
    many = ensure_many(args.entries)
    if want("remote") or want("tall"):
        results["remote"] = remote([many, ensure_tall()], args.entries, args.latency_ms,
                                   args.baseline_src)
    if want("hostile"):
        results["hostile"] = hostile()
    if want("ratios"):
        results["ratios"] = ratios(many)
    if args.baseline_src:
        results["baseline_label"] = args.baseline_label
    if not args.render_only:
        results["machine"], results["date"] = machine(), today()
    results_path.write_text(json.dumps(results, indent=1))
    text = render(results, args)
    print(text)
    if not args.no_write:
        write_section("walk-bench", text)
        log("wrote docs/PERFORMANCE.md (walk-bench)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
