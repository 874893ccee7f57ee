"""Fixtures of the end-to-end suite: the real site, the real server, Debian's Chromium.

* ``site``: ``build.py`` builds ``dist/site`` once per run (reused when nothing changed).
* ``archives``: a temporary folder of test archives (``Archives``), written with lockbox on
  CPython: a small tree (text, image, binary, nested folders, a symlink, env values), the
  same tree with one damaged chunk, a recipient-only archive with its identity file, one
  with the default Argon2id parameters, a file that is not an archive, and the
  100,000-entry archive (cached across runs in ``.cache/e2e/``).
* ``server``: ``lockbox_server.running(archives, site_dir=dist/site)`` on a free loopback
  port (viewer and archives on one origin).
* ``browser``: Chromium (``/usr/bin/chromium``) launched once by Playwright through
  ``executable_path``; every test opens its own context (``viewer`` fixture), whose every
  request is recorded (``Viewer.requests``).

Every wait has a limit: Playwright's default timeouts are set on each context,
``Viewer.evaluate`` races its promise against a timer (``page.evaluate`` has none), the
Python start-up has its own limit, and a watchdog (``faulthandler``) ends the whole run
if it hangs anyway (``LOCKBOX_E2E_WATCHDOG`` seconds, default 1200).
"""

from __future__ import annotations

import faulthandler
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

import lockbox

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "e2e"
CHROMIUM = os.environ.get("LOCKBOX_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)
PASSWORD = "correct horse"
TIMEOUT_MS = 45_000  # any single wait in the browser
PYTHON_START_MS = 150_000  # Pyodide start-up on a loaded 2-core machine
BIG_ENTRIES = 100_000
BIG_VERSION = "1"  # bump to rebuild the cached 100,000-entry archive

faulthandler.dump_traceback_later(float(os.environ.get("LOCKBOX_E2E_WATCHDOG", "1200")),
                                  exit=True)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (no imaging library needed)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def wav(seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A mono 8-bit PCM WAV of a square wave."""
    n = int(seconds * rate)
    pcm = bytes(200 if (i // 20) % 2 else 56 for i in range(n))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pdf() -> bytes:
    """A one-page PDF (hand-made, with a correct xref table)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>"]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: The source tree of tree.lbox (and corrupt.lbox): path -> bytes.
TREE: dict[str, bytes] = {
    "README.md": b"# Test archive\n\nHello from the e2e suite.\n",
    # ~90 KB: over PACK_FILE_LIMIT (64 KiB), so it keeps a chunk of its own (corrupt.lbox
    # damages that chunk: the files packed together, README.md and others, stay readable)
    "docs/guide.txt": ("Line %d of the guide: ünïcödé ✓\n" * 2400 % tuple(range(2400))).encode(),
    "docs/deep/nested/note.md": b"deep note\n",
    "images/red.png": png(64, 48, (220, 40, 40)),
    "images/blue.png": png(20, 30, (30, 60, 220)),
    "data/random.bin": hashlib.sha256(b"seed").digest() * 40_000,  # 1.28 MB, 2 chunks
    "data/empty.txt": b"",
    "media/tone.wav": wav(),
    "media/page.pdf": pdf(),
    "naïve name with spaces.txt": b"spaces and accents\n",
}
ENV = {"API_TOKEN": "s3cret-token-value", "REGION": "eu-west-1"}
SYMLINKS = {"latest-guide": "docs/guide.txt"}
CORRUPT_FILE = "docs/guide.txt"  # its chunk (not a shared pack) is damaged in corrupt.lbox


def ensure_chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["update"], ["install", "-y", "--no-install-recommends", "chromium"]):
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args], env=env,
                           capture_output=True, timeout=900, check=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does "
                    "it when run as root)")
    return CHROMIUM


# ----------------------------------------------------------------------------- archives


@dataclass
class Archives:
    dir: Path
    identity_file: Path
    big_entries: int = BIG_ENTRIES
    sources: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.dir / name


def write_tree(path: Path, *, files: dict[str, bytes] = TREE, password: str | None = PASSWORD,
               recipients: Any = (), argon2: lockbox.Argon2Params = WEAK,
               chunk_size: int = 1 << 20) -> None:
    if path.exists():
        path.unlink()
    box = lockbox.create(path, password=password, recipients=recipients, argon2=argon2,
                         chunk_size=chunk_size)
    with box.writer() as w:
        for name, data in files.items():
            w.add_bytes(name, data, mtime_ns=1_700_000_000_000_000_000)
        for name, target in SYMLINKS.items():
            w.symlink(name, target)
        for name, value in ENV.items():
            w.env_set(name, value)
    box.close()
    path.chmod(0o644)


def corrupt_chunk(path: Path, file: str) -> None:
    """Flip bytes in the middle of ``file``'s first data chunk (a sealed frame of its own:
    not a packed file, whose PACK frame other files share)."""
    from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED

    with lockbox.open(path, password=PASSWORD) as box:
        entry = box.run(box.view.stat_flow(file))
        assert entry.layout != LAYOUT_PACKED, f"{file} is packed: damage would hit its pack"
        ref = entry.refs[0]
    with open(path, "r+b") as f:
        f.seek(ref.frame_offset + ref.frame_size // 2)
        b = f.read(4)
        f.seek(ref.frame_offset + ref.frame_size // 2)
        f.write(bytes(x ^ 0x5A for x in b))


def big_archive() -> Path:
    """100,000 entries: 50 folders of 1,000 files and one folder of 50,000 (cached)."""
    cached = CACHE / f"big-{BIG_VERSION}-{BIG_ENTRIES}.lbox"
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    if tmp.exists():
        tmp.unlink()
    box = lockbox.create(tmp, password=PASSWORD, argon2=WEAK)
    per, dirs = 1000, 50
    flat = BIG_ENTRIES - per * dirs
    with box.writer() as w:
        for d in range(dirs):
            for i in range(per):
                w.add_bytes(f"d{d:02d}/f{i:04d}.txt", b"%d-%d\n" % (d, i),
                            mtime_ns=1_700_000_000_000_000_000)
        for i in range(flat - 1):
            w.add_bytes(f"flat/item{i:05d}.txt", b"%d\n" % i, mtime_ns=1_700_000_000_000_000_000)
        w.add_bytes("top.txt", b"top of the big archive\n")
    box.close()
    tmp.replace(cached)
    return cached


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    d = tmp_path_factory.mktemp("archives")
    write_tree(d / "tree.lbox")
    shutil.copyfile(d / "tree.lbox", d / "corrupt.lbox")
    corrupt_chunk(d / "corrupt.lbox", CORRUPT_FILE)
    shutil.copyfile(d / "tree.lbox", d / "changing.lbox")
    write_tree(d / "default-kdf.lbox", files={"hello.txt": b"default Argon2id\n"},
               argon2=lockbox.Argon2Params())
    from lockbox.platform import default_crypto

    ident = lockbox.Identity.generate(default_crypto())
    write_tree(d / "recipient.lbox", files={"for-you.txt": b"only for the identity\n"},
               password=None, recipients=[ident.recipient(default_crypto())])
    identity_file = tmp_path_factory.mktemp("keys") / "me.identity"
    identity_file.write_text(f"# lockbox identity (secret)\n{ident.encode()}\n")
    (d / "not-an-archive.lbox").write_bytes(b"PK\x03\x04 this is a zip, not a lockbox" * 1000)
    shutil.copyfile(big_archive(), d / "big.lbox")
    for p in d.iterdir():
        p.chmod(0o644)
    return Archives(d, identity_file, sources={"tree.lbox": TREE})


# ----------------------------------------------------------------------------- site, server


@pytest.fixture(scope="session")
def site() -> Path:
    sys.path.insert(0, str(ROOT))
    try:
        import build as site_build
    finally:
        sys.path.remove(str(ROOT))
    result = site_build.build(ROOT / "dist" / "site", quiet=True)
    for name in ("index.html", "app.js", "style.css"):
        assert (result.out / name).is_file(), f"{name} missing from the built site"
    return result.out


@pytest.fixture(scope="session")
def server(site: Path, archives: Archives) -> Iterator[str]:
    from lockbox_server import running

    with running(archives.dir, site_dir=site, timeout=15) as url:
        yield url.rstrip("/")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS,
                              timeout=60_000)
        try:
            yield b
        finally:
            b.close()


# ----------------------------------------------------------------------------- the viewer


@dataclass
class Request:
    url: str
    method: str
    headers: dict[str, str]
    start_ms: float = 0.0
    end_ms: float = 0.0
    status: int | None = None
    body_bytes: int = 0
    failed: str = ""


class Viewer:
    """One browser context + page on the viewer, with its request log."""

    def __init__(self, context: Any, base: str) -> None:
        self.context = context
        self.base = base
        self.requests: list[Request] = []
        self.console: list[str] = []
        self._by_id: dict[int, Request] = {}
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        context.on("request", self._on_request)
        context.on("requestfinished", self._on_finished)
        context.on("requestfailed", self._on_failed)
        context.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page = context.new_page()
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    # -- request log
    def _on_request(self, r: Any) -> None:
        req = Request(r.url, r.method, dict(r.headers))
        self._by_id[id(r)] = req
        self.requests.append(req)

    def _finish(self, r: Any, failed: str = "") -> None:
        req = self._by_id.get(id(r))
        if req is None:
            return
        timing = r.timing
        req.start_ms = timing.get("startTime", 0.0)
        end = timing.get("responseEnd", -1)
        req.end_ms = req.start_ms + (end if end and end > 0 else 0)
        req.failed = failed
        if not failed:
            try:
                resp = r.response()
                req.status = resp.status if resp else None
                req.body_bytes = r.sizes()["responseBodySize"]
            except Exception:
                pass

    def _on_finished(self, r: Any) -> None:
        self._finish(r)

    def _on_failed(self, r: Any) -> None:
        self._finish(r, failed=r.failure or "failed")

    def origins(self) -> set[str]:
        out = set()
        for r in self.requests:
            parts = urlsplit(r.url)
            if parts.scheme in ("http", "https"):
                out.add(f"{parts.scheme}://{parts.netloc}")
            elif parts.scheme not in ("blob", "data", "chrome-extension", "chrome"):
                # blob:/data: are the page's own; chrome(-extension): is Chromium's built-in
                # PDF viewer (no network)
                out.add(f"{parts.scheme}:")
        return out

    def archive_requests(self, url: str, since: int = 0) -> list[Request]:
        return [r for r in self.requests[since:] if r.url == url and r.method == "GET"]

    # -- page helpers
    def goto(self, hash_: str = "") -> None:
        self.page.goto(f"{self.base}/{hash_}")

    def wait_python(self) -> None:
        self.page.wait_for_selector("html[data-python=ready], html[data-python=failed]",
                                    state="attached", timeout=PYTHON_START_MS)
        state = self.page.get_attribute("html", "data-python")
        assert state == "ready", f"Python did not start: {self.console[-20:]}"

    def evaluate(self, function: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> Any:
        """page.evaluate of a JS (async) function source, raced against a timer
        (page.evaluate has no timeout of its own)."""
        return self.page.evaluate(
            f"""async ([arg, ms]) => await Promise.race([
                  ({function})(arg),
                  new Promise((_, reject) => setTimeout(
                    () => reject(new Error(`timed out after ${{ms}} ms`)), ms))])""",
            [arg, timeout_ms],
        )

    def open_url(self, url: str) -> None:
        self.page.fill("#url", url)
        self.page.click("#btn-open")

    def unlock(self, password: str = PASSWORD) -> None:
        self.page.wait_for_selector("#password:visible", timeout=PYTHON_START_MS)
        self.page.fill("#password", password)
        self.page.press("#password", "Enter")

    def wait_listing(self, first_name: str) -> None:
        self.page.wait_for_selector(f".row-item[data-name={quote_css(first_name)}]",
                                    timeout=PYTHON_START_MS)

    def names(self) -> list[str]:
        return self.page.eval_on_selector_all(".row-item", "rows => rows.map(r => r.dataset.name)")

    def click_row(self, name: str) -> None:
        self.page.fill("#filter", "")
        self.page.fill("#filter", name)
        self.page.click(f".row-item[data-name={quote_css(name)}]")

    def all_names(self) -> list[str]:
        """Every name of the current folder (scrolling the virtual list)."""
        seen: dict[int, str] = {}
        label = self.page.get_attribute("#list", "aria-label")  # "Contents of ..., 1,234 items"
        total = int(label.rsplit(" items", 1)[0].rsplit(" ", 1)[1].replace(",", ""))
        top = 0
        while len(seen) < total:
            for pos, name in self.page.eval_on_selector_all(
                    ".row-item", "rows => rows.map(r => [Number(r.dataset.pos), r.dataset.name])"):
                seen[pos] = name
            top += 600
            self.page.eval_on_selector("#list", "(el, top) => { el.scrollTop = top; }", top)
            self.page.wait_for_timeout(30)
            if top > total * 36 + 1200:
                break
        return [seen[k] for k in sorted(seen)]


def quote_css(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    report = yield
    if report.when == "call":
        item.e2e_failed = report.failed
    return report


def new_viewer(browser: Any, base: str) -> Viewer:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    return Viewer(context, base)


def close_viewer(v: Viewer, request: Any) -> None:
    """Close the context; after a failure keep a screenshot and the console first."""
    try:
        if getattr(request.node, "e2e_failed", False):
            out = CACHE / "failures"
            out.mkdir(parents=True, exist_ok=True)
            name = request.node.name.replace("/", "_")
            try:
                v.page.screenshot(path=str(out / f"{name}.png"), timeout=10_000)
            except Exception:
                pass
            (out / f"{name}.log").write_text("\n".join(
                [*v.console, "", *(f"{r.method} {r.url} {r.status} {r.failed}"
                                   for r in v.requests)]))
            print(f"\n[e2e] failure evidence in {out}/{name}.png and .log; console tail:\n"
                  + "\n".join(v.console[-15:]))
    finally:
        v.context.close()


@pytest.fixture
def viewer(browser: Any, server: str, request: Any) -> Iterator[Viewer]:
    v = new_viewer(browser, server)
    try:
        yield v
    finally:
        close_viewer(v, request)


def deep_link(archive_url: str, path: str | None = None) -> str:
    link = f"#url={quote(archive_url, safe='')}"
    if path:
        link += f"&path={quote(path, safe='')}"
    return link


def sequential_round_trips(reqs: list[Request]) -> int:
    """The longest chain of requests where each starts after the previous one ended
    (requests of one batch overlap in time and count once)."""
    best: list[int] = []
    ordered = sorted(reqs, key=lambda r: r.start_ms)
    for i, r in enumerate(ordered):
        depth = 1 + max((best[j] for j in range(i) if ordered[j].end_ms <= r.start_ms),
                        default=0)
        best.append(depth)
    return max(best, default=0)


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
