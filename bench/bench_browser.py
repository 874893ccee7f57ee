#!/usr/bin/env python3
"""Browser benchmarks of issue #3 §6, written to docs/PERFORMANCE.md ("browser-bench").

    .venv/bin/python bench/bench_browser.py [--runs 3] [--no-write] [--rebuild-data]

In Debian's Chromium (``/usr/bin/chromium``, driven by Playwright for Python through
``executable_path``), against the real server (``lockbox_server.running``) on a free
loopback port, with the site built by ``build.py`` into ``.cache/bench/browser-site`` (plus
this benchmark's page, ``bench/browser/``, copied to ``<site>/bench/``):

* Pyodide cold start (a new browser context each run) and warm start (a persistent
  profile, Chromium relaunched each run) to the boot worker's "ready";
* open + unlock + root listing of a 100,000-entry archive (the viewer's own calls,
  ``lockbox.viewer.session.Session``: ``open_source``, ``unlock``, ``ls("")``) over loopback with
  0 ms and with 50 ms added round-trip latency (a delaying TCP proxy in front of the
  server: 25 ms each way, page and archive through it, so one origin);
* Argon2id with the default parameters (t=3, m=64 MiB, p=1) in the worker, alone and as
  ``Session.unlock`` (Argon2id + key unwrap);
* decrypt + decompress throughput reading a 256 MiB file chunk by chunk
  (``AsyncLockbox.iter_bytes``), from a Blob (local file: no network) and over HTTP;
* requests and bytes to list the root and to read a 10 KiB file;
* zip.js 2.24 (``@zip.js/zip.js``, ``HttpRangeReader``, bundled with esbuild from
  ``bench/browser/node_modules``) in the same Chromium on an AES-256 zip of the same tree
  (made by Debian's 7z: ``7z a -tzip -mem=AES256``): list all entries, read one file.

Requests and bytes come from the browser's own request log (``context.on("requestfinished")``,
``Request.sizes()["responseBodySize"]``, ``Request.timing``); round trips are the number of
sequential groups of archive requests (a request that starts after every earlier one has
ended starts a new round trip). Every browser wait has a timeout, and a watchdog ends the
run if it hangs anyway. Archives are cached in ``.cache/bench/browser-archives``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, today, write_section

CACHE = ROOT / ".cache" / "bench"
SITE = CACHE / "browser-site"
DATA = CACHE / "browser-archives"
PROFILE = CACHE / "browser-profile"
ASSETS = ROOT / "bench" / "browser"
CHROMIUM = os.environ.get("LOCKBOX_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
PLAYWRIGHT_FALLBACK = "playwright==1.65.*"

PASSWORD = "correct horse battery staple"
DATA_VERSION = "1"  # bump to rebuild the cached archives
DIRS, FILES_PER_DIR = 100, 1000
TEN_KIB = "ten-kib.bin"
BIG = "big.bin"
BIG_SIZE = 256 * 1024 * 1024
MTIME = 1_700_000_000
MiB = 1 << 20

BOOT_TIMEOUT_S = 180  # Pyodide start-up on a loaded 2-core machine
CALL_TIMEOUT_S = 120  # any single call into the page / worker
BIG_TIMEOUT_S = 420  # reading the 256 MiB file
WATCHDOG_S = 1500  # the whole browser part


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


# ------------------------------------------------------------------------------ tools


def apt_install(package: str, binary: str) -> None:
    if shutil.which(binary) or os.path.exists(binary):
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{binary} is missing and this is not root: apt-get install {package}")
    log(f"apt-get install {package} ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, env=env,
                   timeout=900, stdout=subprocess.DEVNULL)


def playwright_pin() -> str:
    lock = ROOT / "requirements" / "dev.lock"
    if lock.is_file():
        m = re.search(r"^playwright==([^\s;\\]+)", lock.read_text(), re.M | re.I)
        if m:
            return f"playwright=={m.group(1)}"
    return PLAYWRIGHT_FALLBACK


def ensure_playwright() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        pin = playwright_pin()
        log(f"pip install {pin} (no browser download: Debian's Chromium is used) ...")
        run([sys.executable, "-m", "pip", "install", "-q", pin], timeout=900)
    from importlib.metadata import version

    return version("playwright")


# ------------------------------------------------------------------------------- site


def build_site() -> dict[str, Any]:
    """build.py into SITE, then this page and the zip.js bundle into SITE/bench/."""
    log("build.py --out .cache/bench/browser-site ...")
    run([sys.executable, str(ROOT / "build.py"), "--out", str(SITE), "-q"], cwd=ROOT)
    lock = ASSETS / "package-lock.json"
    stamp = ASSETS / "node_modules" / ".bench-stamp"
    want = hashlib.sha256(lock.read_bytes() + (ASSETS / "package.json").read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text().strip() != want:
        log("npm ci in bench/browser (@zip.js/zip.js) ...")
        run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ASSETS)
        stamp.write_text(want + "\n")
    out = SITE / "bench"
    out.mkdir(exist_ok=True)
    esbuild = ROOT / "webapp" / "node_modules" / "esbuild" / "bin" / "esbuild"
    run(["node", str(esbuild), str(ASSETS / "zip-entry.mjs"), "--bundle", "--format=esm",
         "--minify", "--target=es2022", "--platform=browser", "--log-level=warning",
         f"--outfile={out / 'zipjs.mjs'}"], cwd=ASSETS)
    for name in ("index.html", "bench.mjs"):
        shutil.copyfile(ASSETS / name, out / name)
    zipjs = json.loads((ASSETS / "node_modules" / "@zip.js" / "zip.js" / "package.json")
                       .read_text())["version"]
    manifest = json.loads((SITE / "manifest.json").read_text())
    return {"zipjs": zipjs, "pyodide": manifest.get("pyodide"), "lockbox": manifest.get("lockbox"),
            "site_bytes": sum(int(v) for v in manifest.get("sizes", {}).values())}


# ------------------------------------------------------------------------------- data


def small_file(rng: random.Random, d: int, f: int) -> bytes:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    lines = [f"file {d:03d}/{f:04d}"]
    for _ in range(rng.randint(3, 20)):
        lines.append(" ".join(rng.choice(words) for _ in range(5)) + f" {rng.randint(0, 99999)}")
    return ("\n".join(lines) + "\n").encode()


def write_tree(tree: Path) -> dict[str, Any]:
    rng = random.Random(1)
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    total = 0
    for d in range(DIRS):
        sub = tree / f"dir{d:03d}"
        sub.mkdir()
        for f in range(FILES_PER_DIR):
            p = sub / f"file{f:04d}.txt"
            data = small_file(rng, d, f)
            p.write_bytes(data)
            os.utime(p, (MTIME, MTIME))
            total += len(data)
        os.utime(sub, (MTIME, MTIME))
    ten = rng.randbytes(10 * 1024)
    (tree / TEN_KIB).write_bytes(ten)
    os.utime(tree / TEN_KIB, (MTIME, MTIME))
    return {"small_files": DIRS * FILES_PER_DIR, "small_bytes": total,
            "ten_kib_sha256": hashlib.sha256(ten).hexdigest()}


def write_big(path: Path) -> str:
    """256 MiB of 16-symbol text (4 bits of entropy a byte: zstd about 2:1)."""
    rng = random.Random(2)
    table = bytes(b"abcdefghijklmnop"[i & 15] for i in range(256))
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(BIG_SIZE // (4 * MiB)):
            block = rng.randbytes(4 * MiB).translate(table)
            h.update(block)
            f.write(block)
    os.utime(path, (MTIME, MTIME))
    return h.hexdigest()


def make_data(rebuild: bool) -> dict[str, Any]:
    meta_path = DATA / "meta.json"
    if not rebuild and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == DATA_VERSION and all(
                (DATA / n).is_file() for n in ("tree.lbox", "tree.zip", "big.lbox")):
            log(f"archives reused from {DATA.relative_to(ROOT)}")
            return meta
    import lockbox

    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    work = CACHE / "browser-src"
    meta: dict[str, Any] = {"version": DATA_VERSION}
    t = time.monotonic()
    log("writing the 100,000-file tree ...")
    meta.update(write_tree(work / "tree"))
    log("lockbox: tree.lbox (default Argon2id) ...")
    t1 = time.monotonic()
    box = lockbox.create(DATA / "tree.lbox", password=PASSWORD)
    with box.writer() as w:
        meta["tree_lbox_entries"] = w.add_tree(work / "tree", "", jobs="auto")
    meta["tree_lbox_root"] = len(box.ls(""))
    box.close()
    meta["tree_lbox_seconds"] = time.monotonic() - t1
    log("7z: tree.zip (zip, AES-256 per entry) ...")
    t1 = time.monotonic()
    run(["7z", "a", "-tzip", "-mem=AES256", "-mx=5", "-mmt=2", f"-p{PASSWORD}", "-bd",
         str(DATA / "tree.zip"), "."], cwd=work / "tree", timeout=1800)
    meta["tree_zip_seconds"] = time.monotonic() - t1
    meta["seven_zip"] = run(["7z"]).strip().splitlines()[0]
    import zipfile

    with zipfile.ZipFile(DATA / "tree.zip") as zf:
        infos = zf.infolist()
        meta["tree_zip_entries"] = len(infos)
        meta["tree_zip_encrypted"] = sum(1 for i in infos if i.flag_bits & 1)
    shutil.rmtree(work / "tree")
    log("writing the 256 MiB file and big.lbox ...")
    big_src = work / BIG
    meta["big_sha256"] = write_big(big_src)
    t1 = time.monotonic()
    box = lockbox.create(DATA / "big.lbox", password=PASSWORD)
    with box.writer() as w:
        w.add_file(BIG, big_src)
    box.close()
    meta["big_lbox_seconds"] = time.monotonic() - t1
    big_src.unlink()
    for name in ("tree.lbox", "tree.zip", "big.lbox"):
        meta[f"{name}_bytes"] = (DATA / name).stat().st_size
    meta["seconds"] = time.monotonic() - t
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return meta


# ---------------------------------------------------------------------- latency proxy


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delays every piece of data by ``one_way`` seconds in
    each direction (so each HTTP request/response exchange gets 2 x one_way added),
    without limiting throughput (pieces are queued with their due time)."""

    def __init__(self, upstream_port: int, one_way: float) -> None:
        self.upstream_port = upstream_port
        self.one_way = one_way
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                data = await reader.read(1 << 16)
                queue.put_nowait((loop.time() + self.one_way, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            sender.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                                 return_exceptions=True)
        except asyncio.CancelledError:  # shutting down: end quietly (asyncio's stream
            pass  # callback would log a cancelled handler task as an error)
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# --------------------------------------------------------------------------- browser


class NetLog:
    """Every request of a context, in order (page and workers)."""

    def __init__(self, context: Any) -> None:
        self.finished: list[Any] = []
        self.failed: list[Any] = []
        # (Playwright needs real functions as handlers, not bound builtins like list.append)
        context.on("requestfinished", lambda request: self.finished.append(request))
        context.on("requestfailed", lambda request: self.failed.append(request))

    def mark(self) -> tuple[int, int]:
        return len(self.finished), len(self.failed)

    def since(self, mark: tuple[int, int], needle: str = "/archives/") -> dict[str, Any]:
        reqs = [r for r in self.finished[mark[0]:] if needle in r.url]
        failed = [r for r in self.failed[mark[1]:] if needle in r.url]
        body = headers = 0
        spans = []
        for r in reqs:
            sizes = r.sizes()
            # (-1: not known, e.g. answered from the cache)
            body += max(0, int(sizes.get("responseBodySize") or 0))
            headers += max(0, int(sizes.get("responseHeadersSize") or 0))
            timing = r.timing
            start = float(timing.get("startTime") or 0.0)
            first = float(timing.get("responseStart") or -1)
            if first < 0:
                first = float(timing.get("responseEnd") or -1)
            spans.append((start, start + max(first, 0.0)))
        return {"requests": len(reqs), "failed": len(failed), "bytes": body,
                "header_bytes": headers, "round_trips": round_trips(spans),
                "ranges": [r.headers.get("range", "") for r in reqs],
                "methods": sorted({r.method for r in reqs})}

    def all_bytes(self, mark: tuple[int, int]) -> tuple[int, int]:
        reqs = self.finished[mark[0]:]
        return len(reqs), sum(max(0, int(r.sizes().get("responseBodySize") or 0)) for r in reqs)


def round_trips(spans: list[tuple[float, float]]) -> int:
    """Sequential groups of requests, from (start, first response byte) times.

    A request that starts once any request of the current group has begun to answer
    could depend on that answer: it opens a new round trip. Requests sent together
    (before any answer of their group) share one. (``responseEnd`` is not usable here: a
    body nobody reads, like zip.js's ``bytes=0-0`` size probe, "ends" much later.)
    """
    count, horizon = 0, float("-inf")
    for start, first in sorted(spans):
        if start >= horizon:
            count += 1
            horizon = first
        else:
            horizon = min(horizon, first)
    return count


def range_length(header: str) -> int:
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", header.strip())
    return int(m.group(2)) - int(m.group(1)) + 1 if m else 0


def settle(page: Any) -> None:
    """Let the driver receive the network events of what just finished."""
    page.wait_for_timeout(300)


def boot(page: Any, base: str) -> dict[str, Any]:
    page.goto(base + "bench/index.html?boot=1", wait_until="load",
              timeout=CALL_TIMEOUT_S * 1000)
    page.wait_for_function(
        "() => window.__bench && (window.__bench.ready || window.__bench.failed)",
        timeout=BOOT_TIMEOUT_S * 1000, polling=50)
    state = page.evaluate("() => window.__bench")
    if state.get("failed"):
        raise RuntimeError(f"Pyodide did not start: {state['failed']}")
    return dict(state["ready"], progress=state["progress"])


def py(page: Any, code: str, timeout_s: float = CALL_TIMEOUT_S) -> Any:
    """Run Python in the boot worker ({id, code}); raced against a timer in the page."""
    result = page.evaluate("([c, t]) => window.runPy(c, t)", [code, int(timeout_s * 1000)])
    return json.loads(result) if isinstance(result, str) else result


PY_SETUP = r'''
import hashlib, json, time
import js
from pyodide.ffi import to_js
from lockbox import AsyncLockbox
from lockbox.platform import default_crypto
from lockbox.sources.browser import AsyncBlobRangeSource, FetchRangeSource
from lockbox.viewer.session import Session

def _bench_source(url):
    # cache "no-store": every run goes to the network like a first visit (repeated runs
    # in one context would otherwise revalidate cached ranges)
    return FetchRangeSource(url, fetch_options={"cache": "no-store"})

def _stats(src):
    return {"requests": src.stats.requests, "bytes": src.stats.bytes_read}

async def bench_open(url):
    global _session, _src
    _session, _src = Session(), _bench_source(url)
    t = time.perf_counter()
    probe = await _session.open_source(_src, location=url, name=url.rsplit("/", 1)[-1],
                                       kind="url")
    return json.dumps({"s": time.perf_counter() - t, "rt": _session._source.round_trips,
                       "generation": probe["generation"], **_stats(_src)})

async def bench_unlock(password):
    rt0 = _session._source.round_trips
    t = time.perf_counter()
    await _session.unlock(password=password)
    return json.dumps({"s": time.perf_counter() - t,
                       "rt": _session._source.round_trips - rt0, **_stats(_src)})

async def bench_ls():
    rt0 = _session._source.round_trips
    t = time.perf_counter()
    root = await _session.ls("")
    return json.dumps({"s": time.perf_counter() - t, "rt": _session._source.round_trips - rt0,
                       "names": len(root["names"]), "counts": root["counts"], **_stats(_src)})

async def bench_read(path):
    rt0 = _session._source.round_trips
    t = time.perf_counter()
    data = await _session.read(path, 0, 1 << 20)
    return json.dumps({"s": time.perf_counter() - t, "rt": _session._source.round_trips - rt0,
                       "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                       **_stats(_src)})

def bench_argon2(n):
    c = default_crypto()
    salt = bytes(range(16))
    times = []
    for i in range(n):
        t = time.perf_counter()
        c.argon2id(b"correct horse", salt, time_cost=3, memory_kib=65536, parallelism=1,
                   length=32)
        times.append(time.perf_counter() - t)
    engine = c.argon2id_engine(16, time_cost=3, memory_kib=65536, parallelism=1, length=32)
    return json.dumps({"times": times, "engine": engine})

async def _drain(box, path):
    n = pieces = 0
    t = time.perf_counter()
    async for piece in box.iter_bytes(path):
        n += len(piece)
        pieces += 1
    return time.perf_counter() - t, n, pieces

async def bench_big_http(url, password, path):
    src = _bench_source(url)
    box = await AsyncLockbox.open(src, password=password)
    r0, b0 = src.stats.requests, src.stats.bytes_read
    s, n, pieces = await _drain(box, path)
    out = {"s": s, "size": n, "pieces": pieces, "requests": src.stats.requests - r0,
           "bytes": src.stats.bytes_read - b0}
    await box.aclose()
    return json.dumps(out)

async def bench_big_blob(url, password, path):
    t = time.perf_counter()
    resp = await js.fetch(url, to_js({"cache": "no-store"}, dict_converter=js.Object.fromEntries))
    blob = await resp.blob()
    fetched = time.perf_counter() - t
    src = AsyncBlobRangeSource(blob, name="big.lbox")
    box = await AsyncLockbox.open(src, password=password)
    r0, b0 = src.stats.requests, src.stats.bytes_read
    s, n, pieces = await _drain(box, path)
    out = {"s": s, "size": n, "pieces": pieces, "blob_bytes": int(blob.size), "fetch_s": fetched,
           "requests": src.stats.requests - r0, "bytes": src.stats.bytes_read - b0}
    await box.aclose()
    return json.dumps(out)

def bench_parts(mib):
    """The pieces of reading a chunk, alone, on 1 MiB of the same kind of data."""
    import random
    from lockbox.platform import default_codec
    crypto, codec = default_crypto(), default_codec()
    table = bytes(b"abcdefghijklmnop"[i & 15] for i in range(256))
    plain = random.Random(3).randbytes(1 << 20).translate(table)
    packed = codec.compress(plain, 3)
    aead, nonce = crypto.aead(bytes(32)), bytes(12)
    sealed = aead.seal(nonce, packed, b"")
    hasher = crypto.blake3()
    steps = {"aead_open": lambda: aead.open(nonce, sealed, b""),
             "zstd_decompress": lambda: codec.decompress(packed, 1 << 20),
             "blake3": lambda: hasher.update(plain)}
    out = {"ratio": len(plain) / len(packed)}
    for name, step in steps.items():
        step()  # warm-up (WASM heap growth)
        t = time.perf_counter()
        for _ in range(mib):
            step()
        out[name] = (time.perf_counter() - t) / mib  # seconds per MiB of plaintext
    return json.dumps(out)

async def bench_ping(url, n):
    ms = []
    for _ in range(n):
        init = to_js({"cache": "no-store", "headers": {"Range": "bytes=0-0"}},
                     dict_converter=js.Object.fromEntries)
        t = time.perf_counter()
        resp = await js.fetch(url, init)
        await resp.arrayBuffer()
        ms.append((time.perf_counter() - t) * 1000)
    return json.dumps(sorted(ms)[len(ms) // 2])

json.dumps(True)
'''


def lockbox_listing(page: Any, net: NetLog, url: str) -> dict[str, Any]:
    """open + unlock + ls("") through the viewer's Session, each stage its own call."""
    out: dict[str, Any] = {}
    for stage, code in (("open", f"await bench_open({url!r})"),
                        ("unlock", f"await bench_unlock({PASSWORD!r})"),
                        ("ls", "await bench_ls()")):
        mark = net.mark()
        res = py(page, code)
        settle(page)
        res["net"] = net.since(mark)
        out[stage] = res
    out["seconds"] = sum(out[s]["s"] for s in ("open", "unlock", "ls"))
    out["requests"] = sum(out[s]["net"]["requests"] for s in ("open", "unlock", "ls"))
    out["bytes"] = sum(out[s]["net"]["bytes"] for s in ("open", "unlock", "ls"))
    out["round_trips"] = sum(out[s]["net"]["round_trips"] for s in ("open", "unlock", "ls"))
    out["py_round_trips"] = sum(out[s]["rt"] for s in ("open", "unlock", "ls"))
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@contextlib.contextmanager
def new_page(browser: Any) -> Iterator[tuple[Any, NetLog]]:
    context = browser.new_context()
    context.set_default_timeout(CALL_TIMEOUT_S * 1000)
    net = NetLog(context)
    try:
        yield context.new_page(), net
    finally:
        context.close()


def measure(runs: int, meta: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from lockbox_server import running

    launch = {"executable_path": CHROMIUM, "headless": True, "args": LAUNCH_ARGS}
    r: dict[str, Any] = {}
    with running(DATA, site_dir=SITE) as base, sync_playwright() as p:
        port = int(base.rstrip("/").rsplit(":", 1)[1])
        tree_url = base + "archives/tree.lbox"
        big_url = base + "archives/big.lbox"
        zip_url = base + "archives/tree.zip"
        log(f"server {base}")

        # Warm start: a persistent profile, Chromium relaunched for every run (the first
        # launch fills the profile's cache).
        shutil.rmtree(PROFILE, ignore_errors=True)
        warm: list[dict[str, Any]] = []
        for i in range(runs + 1):
            ctx = p.chromium.launch_persistent_context(str(PROFILE), **launch)
            try:
                ctx.set_default_timeout(CALL_TIMEOUT_S * 1000)
                net = NetLog(ctx)
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                mark = net.mark()
                st = boot(page, base)
                settle(page)
                st["requests"], st["bytes"] = net.all_bytes(mark)
                warm.append(st)
                log(f"persistent profile launch {i}: ready at {st['ms'] / 1000:.2f} s, "
                    f"{st['bytes']:,} B from the server")
            finally:
                ctx.close()
        r["warm_prime"], r["warm"] = warm[0], warm[1:]

        browser = p.chromium.launch(**launch)
        r["chromium"] = browser.version
        try:
            # Cold start: a new context (empty cache) each run.
            r["cold"] = []
            for i in range(runs):
                with new_page(browser) as (page, net):
                    mark = net.mark()
                    st = boot(page, base)
                    settle(page)
                    st["requests"], st["bytes"] = net.all_bytes(mark)
                    r["cold"].append(st)
                    log(f"cold start {i}: ready at {st['ms'] / 1000:.2f} s, "
                        f"{st['bytes']:,} B in {st['requests']} requests")

            # Everything lockbox at 0 ms, in one context.
            with new_page(browser) as (page, net):
                boot(page, base)
                py(page, PY_SETUP)
                r["ping0"] = py(page, f"await bench_ping({tree_url!r}, 9)")
                log(f"one 1-byte range direct: median {r['ping0']:.1f} ms")
                r["listing0"] = []
                for i in range(runs):
                    res = lockbox_listing(page, net, tree_url)
                    r["listing0"].append(res)
                    log(f"0 ms open+unlock+ls {i}: {res['seconds']:.2f} s, "
                        f"{res['requests']} requests, {res['bytes']:,} B, "
                        f"{res['round_trips']} round trips")
                    if i == 0:
                        mark = net.mark()
                        read = py(page, f"await bench_read({TEN_KIB!r})")
                        settle(page)
                        read["net"] = net.since(mark)
                        r["read10k"] = read
                        log(f"read 10 KiB: {read['s'] * 1000:.0f} ms, "
                            f"{read['net']['requests']} requests, {read['net']['bytes']:,} B")
                r["argon2"] = py(page, "bench_argon2(4)")
                log(f"Argon2id: {r['argon2']}")
                mark = net.mark()
                r["big_blob"] = py(page, f"await bench_big_blob({big_url!r}, {PASSWORD!r}, "
                                         f"{BIG!r})", BIG_TIMEOUT_S)
                log(f"256 MiB from a Blob: {r['big_blob']}")
                r["parts"] = py(page, "bench_parts(32)")
                log(f"pieces alone (s per MiB): {r['parts']}")
                mark = net.mark()
                r["big_http"] = py(page, f"await bench_big_http({big_url!r}, {PASSWORD!r}, "
                                         f"{BIG!r})", BIG_TIMEOUT_S)
                settle(page)
                r["big_http"]["browser_requests"] = net.since(mark)["requests"]
                log(f"256 MiB over HTTP: {r['big_http']}")

            # 50 ms added round-trip latency: page and archive through the proxy.
            with DelayProxy(port, 0.025) as proxy, new_page(browser) as (page, net):
                pbase = f"http://127.0.0.1:{proxy.port}/"
                st = boot(page, pbase)
                r["boot50"] = st
                py(page, PY_SETUP)
                r["ping50"] = py(page, f"await bench_ping({pbase + 'archives/tree.lbox'!r}, 9)")
                log(f"one 1-byte range through the proxy: median {r['ping50']:.1f} ms")
                r["listing50"] = []
                for i in range(runs):
                    res = lockbox_listing(page, net, pbase + "archives/tree.lbox")
                    r["listing50"].append(res)
                    log(f"50 ms open+unlock+ls {i}: {res['seconds']:.2f} s, "
                        f"{res['requests']} requests, {res['round_trips']} round trips")

            # zip.js on the same tree: a new context each run (empty HTTP cache).
            r["zip"] = []
            for i in range(runs):
                with new_page(browser) as (page, net):
                    page.goto(base + "bench/index.html", wait_until="load")
                    page.wait_for_function("() => typeof window.zipList === 'function'",
                                           timeout=CALL_TIMEOUT_S * 1000)
                    mark = net.mark()
                    lst = page.evaluate("([u, p, t]) => window.zipList(u, p, {}, t)",
                                        [zip_url, PASSWORD, CALL_TIMEOUT_S * 1000])
                    settle(page)
                    lst["net"] = net.since(mark)
                    lst["cd_bytes"] = max(range_length(x) for x in lst["net"]["ranges"])
                    mark = net.mark()
                    rd = page.evaluate("([f, t]) => window.zipRead(f, t)",
                                       [TEN_KIB, CALL_TIMEOUT_S * 1000])
                    settle(page)
                    rd["net"] = net.since(mark)
                    if rd["sha256"] != meta["ten_kib_sha256"]:
                        raise RuntimeError("zip.js read the wrong bytes")
                    r["zip"].append({"list": lst, "read": rd})
                    log(f"zip.js {i}: list {lst['ms']:.0f} ms {lst['net']['requests']} req "
                        f"{lst['net']['bytes']:,} B; read {rd['ms']:.0f} ms "
                        f"{rd['net']['requests']} req {rd['net']['bytes']:,} B")
        finally:
            browser.close()
    return r


# --------------------------------------------------------------------------- report


def stages(st: dict[str, Any]) -> dict[str, float]:
    """Seconds of each start-up stage, from the worker's progress messages."""
    at = {name: ms for name, ms in st["progress"]}
    return {"page": at["pyodide"] / 1000, "pyodide": (at["crypto"] - at["pyodide"]) / 1000,
            "crypto": (at["wheel"] - at["crypto"]) / 1000,
            "wheel": (st["ms"] - at["wheel"]) / 1000}


def report(r: dict[str, Any], meta: dict[str, Any], info: dict[str, Any],
           loads: list[tuple[float, float, float]], command: str) -> str:
    cold = [x["ms"] / 1000 for x in r["cold"]]
    warm = [x["ms"] / 1000 for x in r["warm"]]
    l0, l50 = r["listing0"], r["listing50"]
    t0 = [x["seconds"] for x in l0]
    t50 = [x["seconds"] for x in l50]
    first = l0[0]
    rts0 = sorted({x["round_trips"] for x in l0})
    rts50 = sorted({x["round_trips"] for x in l50})
    argon = r["argon2"]["times"]
    unlock = [x["unlock"]["s"] for x in l0]
    parts = r["parts"]
    per_mib = parts["aead_open"] + parts["zstd_decompress"] + parts["blake3"]
    ws = {k: median([stages(x)[k] for x in r["warm"]]) for k in ("page", "pyodide", "crypto",
                                                                 "wheel")}
    cs = {k: median([stages(x)[k] for x in r["cold"]]) for k in ws}
    blob = r["big_blob"]
    http = r["big_http"]
    blob_mibs = blob["size"] / MiB / blob["s"]
    http_mibs = http["size"] / MiB / http["s"]
    zl = [z["list"] for z in r["zip"]]
    zr = [z["read"] for z in r["zip"]]
    zip_list_bytes = zl[0]["net"]["bytes"]
    lb_list_bytes = first["bytes"]
    ratio = zip_list_bytes / lb_list_bytes
    read = r["read10k"]
    ls = first["ls"]["net"]

    def runs(xs: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    def ok(good: bool) -> str:
        return "met" if good else "**missed**"

    rows = [
        ("Pyodide cold start to ready (new context; median)", "—",
         f"{median(cold):.2f} s (runs {runs(cold)} s); {r['cold'][0]['bytes']:,} B in "
         f"{r['cold'][0]['requests']} requests"),
        ("Pyodide warm start to ready (persistent profile, relaunched; median)", "≤ 1.5 s",
         f"{median(warm):.2f} s (runs {runs(warm)} s; first launch "
         f"{r['warm_prime']['ms'] / 1000:.2f} s); "
         f"{r['warm'][-1]['bytes']:,} B from the server — {ok(median(warm) <= 1.5)}"),
        ("… start-up stages, warm / cold (medians): page + manifest; `loadPyodide`; crypto "
         "bundle; wheel + `import lockbox`", "—",
         " / ".join(f"{ws[k]:.2f}" for k in ws) + " s; cold " +
         " / ".join(f"{cs[k]:.2f}" for k in cs) + " s"),
        ("open + unlock + root listing, loopback +0 ms: time (median)", "—",
         f"{median(t0):.2f} s (runs {runs(t0)} s; open {first['open']['s'] * 1000:.0f} ms, "
         f"unlock {first['unlock']['s'] * 1000:.0f} ms, ls {first['ls']['s'] * 1000:.0f} ms)"),
        ("… round trips (browser log) / requests / bytes", "≤ 2 round trips",
         f"{'/'.join(map(str, rts0))} / {first['requests']} / {first['bytes']:,} B "
         f"(Python-side round trips {first['py_round_trips']}) — {ok(max(rts0) <= 2)}"),
        (f"open + unlock + root listing, +50 ms RTT (proxy; 1-byte range {r['ping50']:.0f} ms "
         f"vs {r['ping0']:.0f} ms direct): time (median)", "—",
         f"{median(t50):.2f} s (runs {runs(t50)} s; open {l50[0]['open']['s'] * 1000:.0f} ms, "
         f"unlock {l50[0]['unlock']['s'] * 1000:.0f} ms, ls {l50[0]['ls']['s'] * 1000:.0f} ms)"),
        ("… round trips (browser log) / requests / bytes", "≤ 2 round trips",
         f"{'/'.join(map(str, rts50))} / {l50[0]['requests']} / {l50[0]['bytes']:,} B — "
         f"{ok(max(rts50) <= 2)}"),
        ("Argon2id t=3, m=64 MiB, p=1 in the worker: first / median of next", "≤ 1.5 s",
         f"{argon[0]:.2f} s / {median(argon[1:]):.2f} s ({r['argon2']['engine']}) — "
         f"{ok(max(argon[0], median(argon[1:])) <= 1.5)}"),
        ("`Session.unlock` (Argon2id + key unwrap): median (first in the worker)", "≤ 1.5 s",
         f"{median(unlock):.2f} s ({unlock[0]:.2f} s; runs {runs(unlock)} s) — "
         f"{ok(median(unlock) <= 1.5)}"),
        ("read 256 MiB file, decrypt + decompress + hash, from a Blob (no network)",
         "≥ 100 MiB/s",
         f"{blob_mibs:.0f} MiB/s ({blob['s']:.2f} s, {blob['pieces']} pieces, "
         f"{blob['requests']} Blob reads; archive {meta['big.lbox_bytes'] / MiB:.0f} MiB) — "
         f"{ok(blob_mibs >= 100)}"),
        ("… the pieces alone in the worker, per MiB of plaintext (1 MiB chunks): "
         "ChaCha20-Poly1305 open / zstd decompress / BLAKE3", "—",
         f"{parts['aead_open'] * 1000:.1f} / {parts['zstd_decompress'] * 1000:.1f} / "
         f"{parts['blake3'] * 1000:.1f} ms (ratio {parts['ratio']:.2f}): at most "
         f"{1 / per_mib:.0f} MiB/s for the three in sequence"),
        ("read 256 MiB file over HTTP (fetch, loopback)", "—",
         f"{http_mibs:.0f} MiB/s ({http['s']:.2f} s, {http['requests']} requests, "
         f"{http['bytes'] / MiB:.0f} MiB)"),
        ("list the root (after unlock): requests / bytes / time", "—",
         f"{ls['requests']} / {ls['bytes']:,} B / {first['ls']['s'] * 1000:.0f} ms "
         f"({first['ls']['names']} names)"),
        ("read the 10 KiB file (after the listing): requests / bytes / time", "—",
         f"{read['net']['requests']} / {read['net']['bytes']:,} B / {read['s'] * 1000:.0f} ms"),
        ("zip.js: list all entries (HttpRangeReader): requests / bytes / time (median)", "—",
         f"{zl[0]['net']['requests']} / {zip_list_bytes:,} B / "
         f"{median([z['ms'] for z in zl]) / 1000:.2f} s ({zl[0]['entries']:,} entries, "
         f"{'/'.join(str(x) for x in sorted({z['net']['round_trips'] for z in zl}))} round "
         f"trips; central directory {zl[0]['cd_bytes']:,} B)"),
        ("zip.js: read the 10 KiB file: requests / bytes / time (median)", "—",
         f"{zr[0]['net']['requests']} / {zr[0]['net']['bytes']:,} B / "
         f"{median([z['ms'] for z in zr]):.0f} ms"),
        ("bytes to list: zip.js ÷ lockbox (open + unlock + root listing)", "≥ 5×",
         f"{ratio:,.0f}× ({zip_list_bytes:,} B ÷ {lb_list_bytes:,} B) — {ok(ratio >= 5)}"),
    ]
    notes = []
    if median(warm) > 1.5:
        notes.append(
            f"warm start: {ws['pyodide']:.2f} s of the {median(warm):.2f} s is `loadPyodide` "
            "although nothing comes from the server (CPU-bound: instantiating the 9.6 MB "
            "WebAssembly module and starting the interpreter); the wheel + `import lockbox` "
            f"take {ws['wheel']:.2f} s more. The machine's load inflates both")
    if blob_mibs < 100:
        notes.append(
            f"throughput: the three primitives alone, one after the other on one thread, "
            f"cap a read at {1 / per_mib:.0f} MiB/s here; per-chunk Python work and the "
            f"copies between Python and JS take the rest (measured {blob_mibs:.0f} MiB/s)")
    if median(unlock) > 1.5:
        notes.append("unlock: Argon2id (64 MiB) dominates; see the Argon2id row")
    load_txt = "; ".join(f"{a:.2f} {b:.2f} {c:.2f}" for a, b, c in loads)
    lines = [
        "## Browser (issue #3 §6)",
        "",
        f"Date {today()}. Machine: {machine()}. Chromium {r['chromium']} (Debian), "
        f"Playwright {info['playwright']}, Pyodide {info['pyodide']}, lockbox {info['lockbox']}, "
        f"zip.js {info['zipjs']}. Load average (1/5/15 min) at start, before the browser part "
        f"and at the end: {load_txt} — a shared 2-core machine: expect ±30 % or worse.",
        "",
        f"Command: `{command}` ({len(r['cold'])} runs of each timed figure; medians).",
        "",
        "| figure | target | measured |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        *([("Misses: " + "; ".join(notes) + "."), ""] if notes else []),
        "How: Debian's Chromium driven by Playwright (`executable_path`), the site built by "
        "`build.py`, the real server (`lockbox_server.running`) on a free loopback port. Start-up "
        "is measured in the page: `performance.now()` (from navigation start) when the boot "
        "worker posts `ready`. Open + unlock + listing are the viewer's calls "
        "(`lockbox.viewer.session.Session.open_source` on a `FetchRangeSource`, "
        "`unlock`, `ls(\"\")`), "
        "timed inside the worker and summed (the gaps between calls, where a user would type "
        "the password, are not counted). The +50 ms case puts a TCP proxy in front of the "
        "server that delays every piece of data 25 ms each way (page and archive both through "
        "it). Requests and bytes are from the browser's own request log "
        "(`requestfinished`, `Request.sizes()` response body bytes; response headers not "
        "counted); round trips are sequential groups of archive requests in that log. "
        "Argon2id is `default_crypto().argon2id` in the worker. The 256 MiB read iterates "
        "`AsyncLockbox.iter_bytes` (never materialised): from a Blob of the archive "
        "(`AsyncBlobRangeSource`, the local-file path: decrypt + zstd + BLAKE3 only) and over "
        "HTTP. zip.js runs on the page's main thread (`useWebWorkers: false`: the site's CSP "
        "allows no `blob:` workers; deflate via the browser's `DecompressionStream`), a new "
        "context per run.",
        "",
        f"Data: `tree.lbox` = {meta['small_files']:,} small text files (avg "
        f"{meta['small_bytes'] / meta['small_files']:.0f} B) in {DIRS} folders + `{TEN_KIB}` "
        f"(10,240 random bytes) at the root ({meta['tree_lbox_entries']:,} entries, root "
        f"listing {meta['tree_lbox_root']} names), default Argon2id, "
        f"{meta['tree.lbox_bytes']:,} B. `tree.zip` = the same tree by "
        f"`7z a -tzip -mem=AES256 -mx=5` ({meta['seven_zip']}; WinZip AES-256 per entry, "
        f"deflate; names and sizes in clear), {meta['tree_zip_entries']:,} entries, "
        f"{meta['tree.zip_bytes']:,} B. `big.lbox` = one 256 MiB file of 16-symbol random text "
        f"(zstd ≈ 2:1), {meta['big.lbox_bytes']:,} B. Cached in `.cache/bench/browser-archives`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each timed figure (default 3)")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/PERFORMANCE.md")
    ap.add_argument("--rebuild-data", action="store_true", help="recreate the cached archives")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--report-from", type=Path, metavar="JSON",
                    help="only print (and write) the table of a --json file of an earlier run")
    args = ap.parse_args(argv)
    command = "python bench/bench_browser.py" + (f" --runs {args.runs}" if args.runs != 3 else "")
    started = time.monotonic()
    if args.report_from:
        raw = json.loads(args.report_from.read_text())
        results, meta, info, loads = raw["results"], raw["meta"], raw["info"], raw["loads"]
    else:
        loads = [os.getloadavg()]
        log(f"load average {loads[0]}")
        apt_install("chromium", CHROMIUM)
        apt_install("p7zip-full", "7z")
        info = {"playwright": ensure_playwright()}
        info.update(build_site())
        meta = make_data(args.rebuild_data)
        loads.append(os.getloadavg())
        faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
        results = measure(args.runs, meta)
        faulthandler.cancel_dump_traceback_later()
        loads.append(os.getloadavg())
        if args.json:
            args.json.write_text(json.dumps({"results": results, "meta": meta, "info": info,
                                             "loads": loads}, indent=1, default=str))
    body = report(results, meta, info, loads, command)
    print()
    print(body)
    if not args.no_write:
        write_section("browser-bench", body)
        log("written to docs/PERFORMANCE.md (browser-bench)")
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
