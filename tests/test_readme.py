"""README.md's examples run as written, so the README cannot drift from the code.

The ``` block under "## Command line" is run line by line, in order, by bash (so
``~``, ``<`` and ``>`` work as for a reader) through the installed ``lockbox`` entry
point, in a temporary directory with a fake home holding ``~/Pictures/2026``. What the
test changes, and only this:

* ``export LOCKBOX_PASSWORD=...`` sets a real test password;
* ``lockbox create`` gets the hidden ``--argon2-memory-kib 8 --argon2-time 1`` (cheap
  Argon2id: the CLI has no environment variable for this, on purpose);
* ``"lockbox-recipient-1:..."`` is the recipient that the README's ``keygen`` printed;
* ``https://example.org/`` is a real ``lockbox serve`` of the working directory on
  127.0.0.1 (a free port), i.e. ``http://127.0.0.1:PORT/archives/``;
* ``damaged.lbox`` is made (a copy of photos.lbox with one byte flipped) just before the
  line that uses it;
* ``lockbox serve DIR`` gets ``--port 0``: it is started, its banner checked, a listed
  archive fetched by Range, then stopped with Ctrl-C.

The "## Python" block runs too (in a subprocess), with the same URL rewrite and a
cheap ``argon2=`` added to ``lockbox.create(...)`` calls (an AST rewrite).
"""

from __future__ import annotations

import ast
import json
import os
import queue
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import lockbox
import lockbox_server
from cli_helpers import lockbox_command

README = Path(__file__).resolve().parents[1] / "README.md"
PW = "readme password"
WEAK = ["--argon2-memory-kib", "8", "--argon2-time", "1"]
EXAMPLE_BASE = "https://example.org/"
RECIPIENT_PLACEHOLDER = "lockbox-recipient-1:..."
BEACH = random.Random(2026).randbytes(3 * 1024 * 1024 + 17)  # most of the archive
TIMEOUT = 60  # hang guard per command, seconds


def code_block(heading: str, language: str = "") -> str:
    """The first ``` block after the line ``heading``."""
    text = README.read_text(encoding="utf-8")
    _, found, rest = text.partition(f"\n{heading}\n")
    assert found, f"README.md has no {heading!r} section"
    m = re.search(rf"^```{language}\n(.*?)^```$", rest, re.S | re.M)
    assert m is not None, f"no ``` block under {heading!r}"
    return m.group(1)


def cli_lines() -> list[str]:
    return [line for line in code_block("## Command line").splitlines() if line.strip()]


def lockbox_argv(line: str) -> list[str]:
    """The words of a README line that runs ``lockbox`` (comments dropped)."""
    words = shlex.split(line, comments=True)
    assert words and words[0] == "lockbox", line
    return words


@dataclass
class Ran:
    line: str
    rc: int
    out: bytes
    err: str


class LockboxServe:
    """A real ``lockbox serve DIR --port 0``; its banner lines arrive on a queue."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next_line()
        m = re.match(r"serving \S+ at (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)$", first)
        assert m, (first, self.proc.poll())
        self.url = m.group(1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self) -> str:
        line = self.lines.get(timeout=TIMEOUT)
        assert line is not None, "lockbox serve ended early"
        return line

    def stop(self) -> None:
        """Ctrl-C: a clean stop (exit 0, nothing on stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert rc == 0 and err == "", (rc, err)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """(working directory, environment): a fake home with ~/Pictures/2026, token.txt,
    ./archives, and the ``lockbox`` of this Python first on PATH."""
    home = tmp_path / "home"
    pictures = home / "Pictures" / "2026"
    (pictures / "tmp").mkdir(parents=True)
    (pictures / "beach.jpg").write_bytes(BEACH)
    (pictures / "notes.txt").write_text("sunny\n")
    (pictures / "tmp" / "cache.bin").write_bytes(b"\x00" * 1000)
    work = tmp_path / "work"
    (work / "archives").mkdir(parents=True)
    (work / "token.txt").write_bytes(b"t0k3n-from-a-file")
    bindir = str(Path(lockbox_command()[0]).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKBOX_")}
    env.update(HOME=str(home), PATH=bindir + os.pathsep + env.get("PATH", ""))
    assert shutil.which("lockbox", path=env["PATH"]) == os.path.join(bindir, "lockbox"), (
        "the lockbox entry point is not installed next to this Python")
    yield work, env


def _damage(work: Path) -> None:
    """damaged.lbox: photos.lbox with one byte flipped in the middle (inside beach.jpg,
    which is most of the file)."""
    data = bytearray((work / "photos.lbox").read_bytes())
    data[len(data) // 2] ^= 0x20
    (work / "damaged.lbox").write_bytes(data)


def test_command_line_section(world: tuple[Path, dict[str, str]]) -> None:
    work, env = world
    lines = cli_lines()
    assert lines[0].startswith("export LOCKBOX_PASSWORD="), lines[0]
    server = LockboxServe([*lockbox_command(), "serve", str(work), "--port", "0"], work, env)
    ran: list[Ran] = []
    recipient: str | None = None
    try:
        for line in lines:
            m = re.match(r"export (\w+)=", line)
            if m:
                env[m.group(1)] = PW
                continue
            words = lockbox_argv(line)
            command = words[1]
            if command == "create":
                line = f"{line.split('#')[0].rstrip()} {shlex.join(WEAK)}"
            if RECIPIENT_PLACEHOLDER in line:
                assert recipient is not None, "the README adds a recipient before keygen"
                line = line.replace(RECIPIENT_PLACEHOLDER, recipient)
            line = line.replace(EXAMPLE_BASE, f"{server.url}archives/")
            if "damaged.lbox" in words and not (work / "damaged.lbox").exists():
                _damage(work)
            if command == "serve":
                ran.append(_serve(line, work, env))
                continue
            p = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=TIMEOUT, check=False)
            r = Ran(line, p.returncode, p.stdout, p.stderr.decode())
            ran.append(r)
            assert "Traceback" not in r.err, r
            assert r.rc == (5 if command == "recover" else 0), r
            if command == "keygen":
                recipient = r.out.decode().strip()
    finally:
        server.stop()
    _check_outcomes(ran, work)


def _serve(line: str, work: Path, env: dict[str, str]) -> Ran:
    """Start the README's ``lockbox serve DIR`` (on a free port), check it, stop it."""
    words = lockbox_argv(line)
    directory = work / words[2]
    shutil.copy(work / "photos.lbox", directory / "photos.lbox")
    server = LockboxServe([*words, "--port", "0"], work, env)
    try:
        banner = [server.next_line()]  # the viewer line
        assert banner[0].startswith("  viewer:   "), banner
        if hasattr(lockbox_server, "archive_urls"):
            banner += [server.next_line(), server.next_line()]
            assert banner[1:] == ["  archives: 1", f"    {server.url}archives/photos.lbox"]
        r = httpx.get(f"{server.url}archives/photos.lbox", headers={"Range": "bytes=0-15"},
                      timeout=TIMEOUT)
        assert r.status_code == 206
        assert r.content == (work / "photos.lbox").read_bytes()[:16]
    finally:
        server.stop()
    return Ran(line, 0, "\n".join(banner).encode(), "")


def _check_outcomes(ran: list[Ran], work: Path) -> None:
    """What the README says each line does, it did."""

    def out(prefix: str) -> Ran:
        found = [r for r in ran if r.line.startswith(prefix)]
        assert found, f"no README line starts with {prefix!r}"
        return found[0]

    listing = out("lockbox ls photos.lbox").out.decode().splitlines()
    assert any(line.endswith(" 2026/beach.jpg") for line in listing), listing
    assert not any("2026/2026" in line for line in listing), listing
    assert (work / "beach.jpg").read_bytes() == BEACH  # cat ... > beach.jpg
    assert (work / "restore/2026/beach.jpg").read_bytes() == BEACH
    assert (work / "restore/2026/tmp/cache.bin").exists()
    assert not (work / "restore/2026/2026").exists()
    info = json.loads(out("lockbox info").out)
    assert info["files"] == 2  # after mv and rm -r 2026/tmp
    assert out("lockbox verify photos.lbox").out.startswith(b"ok: ")
    assert out("lockbox env get").out == b"t0k3n-from-a-file"
    assert out("lockbox keygen").out.startswith(b"lockbox-recipient-1:")
    assert out("lockbox keys add-recipient").out.startswith(b"added recipient slot ")
    remote = out("lockbox ls http://127.0.0.1:").out.decode().splitlines()
    assert remote == ["2026/"]
    assert out("lockbox verify http://127.0.0.1:").out.startswith(b"ok: ")
    assert out("lockbox convert").out.startswith(b"converted 4 entries (2 files")
    remote_uri = [r for r in ran if r.line.startswith("lockbox ls http") and ".uri" in r.line]
    assert remote_uri[0].out.decode().splitlines() == [
        "2026/", "2026/best/", "2026/best/beach.jpg", "2026/notes.txt"]
    assert out("lockbox compact").out.startswith(b"compacted photos.lbox: ")
    recovered = out("lockbox recover").out.decode()
    assert re.search(r"^(partial  |lost     )2026/best/beach\.jpg  \(", recovered, re.M), (
        recovered)
    with lockbox.open(work / "saved.lbox", password=PW) as box:
        names = {e.path for e in box.ls(recursive=True)}
        assert "2026/notes.txt" in names and "2026/tmp" not in names
        assert box.env_get("API_TOKEN") == b"t0k3n-from-a-file"
    with lockbox.open(work / "photos.lbox", password=PW) as box:
        names = {e.path for e in box.ls(recursive=True)}
        assert names == {"2026", "2026/best", "2026/best/beach.jpg", "2026/notes.txt"}
        assert box.read_bytes("2026/best/beach.jpg") == BEACH


class _CheapCreate(ast.NodeTransformer):
    """``lockbox.create(...)`` gets ``argon2=lockbox.Argon2Params(...)`` (cheap)."""

    def __init__(self) -> None:
        self.calls = 0

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "create"
                and isinstance(f.value, ast.Name) and f.value.id == "lockbox"):
            weak = ast.parse("lockbox.Argon2Params(time_cost=1, memory_kib=64)",
                             mode="eval").body
            node.keywords.append(ast.keyword(arg="argon2", value=weak))
            self.calls += 1
        return node


def test_python_section(world: tuple[Path, dict[str, str]]) -> None:
    work, env = world
    source = code_block("## Python", "python")
    tree = ast.parse(source)
    cheap = _CheapCreate()
    tree = ast.fix_missing_locations(cheap.visit(tree))
    assert cheap.calls == 1
    (work / "src" / "lib").mkdir(parents=True)
    (work / "src" / "main.py").write_text("print('hi')\n")
    (work / "src" / "lib" / "util.py").write_text("X = 1\n")
    server = LockboxServe([*lockbox_command(), "serve", str(work), "--port", "0"], work, env)
    try:
        code = ast.unparse(tree).replace(EXAMPLE_BASE, f"{server.url}archives/")
        assert server.url in code
        p = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT, check=False)
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "src/main.py 12" in lines and "src/lib 0" in lines, lines
    assert lines[-1] == "b'llo'"  # notes.txt is b"hello": seek(2), read(3)
    assert (work / "out" / "notes.txt").read_bytes() == b"hello"
    assert "src/lib/util.py 0o644" in lines or "src/lib/util.py 0o664" in lines, lines
    assert (work / "a.uri").read_bytes().startswith(b"uri\x00")
    assert (work / "out" / "src" / "lib" / "util.py").read_text() == "X = 1\n"
