"""Run lockbox's tests (or a script) inside Pyodide under Node, from CPython.

Used by ``tests/test_pyodide.py``; also a command for by-hand runs::

    .venv/bin/python tests/pyodide/harness.py                 # the in-Pyodide suites
    .venv/bin/python tests/pyodide/harness.py -- -k blake3    # extra inner pytest args
    .venv/bin/python tests/pyodide/harness.py --bench         # tests/pyodide/bench_inner.py

Steps: build the site with ``build.py`` (reused when nothing changed), download pure wheels
of pytest and its dependencies for Python 3.14 into ``.cache/pyodide-wheels`` (once), start
the HTTP test server (``tests/sources/servers.py`` plus a state route) on 127.0.0.1 in a
thread, write an archive with lockbox on CPython for the end-to-end test, then run
``node --experimental-wasm-stack-switching tests/pyodide/run.mjs`` with a time limit.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "ROOT", "TESTS", "WHEEL_CACHE", "INNER_SUITES", "NODE_FLAGS", "RunResult", "load_build",
    "site", "pytest_wheels", "served", "make_e2e_archive", "run_inner", "run_node", "main",
]

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
WHEEL_CACHE = ROOT / ".cache" / "pyodide-wheels"
NODE_FLAGS = ("--experimental-wasm-stack-switching",)
# Pure wheels pytest needs inside Pyodide (pygments is imported at start-up), pinned to the
# versions of the venv (requirements/dev.lock) so both sides run the same pytest.
PYTEST_DISTS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")
# What the inner pytest runs (paths inside Pyodide; /repo/tests is the host's tests/).
INNER_SUITES = (
    "tests/pyodide/browser_crypto_suite.py",
    "tests/crypto",
    "tests/codec",
    "tests/sources/test_memory.py",
    "tests/pyodide/browser_sources_conformance.py",
    "tests/pyodide/browser_sources_suite.py",
    "tests/pyodide/browser_e2e_suite.py",
    "tests/pyodide/browser_formats_suite.py",
    "tests/viewer",
)
# Shared tests that cannot run in Pyodide, with the reason.
INNER_DESELECT = {
    "tests/codec/test_zstd.py::test_threads_do_not_interfere":
        "Pyodide has no threads (RuntimeError: can't start new thread)",
}
E2E_PASSWORD = "correct horse battery staple"
INSIDE_REPO = "/repo"
INSIDE_SERVED = "/served"


def unused_port() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port that does not listen."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def load_build() -> ModuleType:
    """The repository's build.py as a module."""
    spec = importlib.util.spec_from_file_location("lockbox_site_build", ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def site(out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Build (or reuse) the site; returns its folder and manifest."""
    build = load_build()
    result = build.build(out or build.DEFAULT_OUT, quiet=True)
    return result.out, result.manifest


def pytest_wheels(cache: Path = WHEEL_CACHE) -> list[Path]:
    """Pure py3 wheels of pytest and its dependencies (downloaded once into ``cache``)."""
    pins = [(name, importlib.metadata.version(name)) for name in PYTEST_DISTS]
    cache.mkdir(parents=True, exist_ok=True)

    def find(name: str, version: str) -> Path | None:
        pattern = re.compile(rf"^{re.escape(name)}-{re.escape(version)}-.*-none-any\.whl$",
                             re.IGNORECASE)
        hits = sorted(p for p in cache.iterdir() if pattern.match(p.name))
        return hits[0] if hits else None

    missing = [f"{n}=={v}" for n, v in pins if find(n, v) is None]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.14", "--implementation", "py", "--abi", "none",
               "--platform", "any", "-q", "--disable-pip-version-check", "-d", str(cache),
               *missing]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pip download failed:\n{proc.stdout}{proc.stderr}")
    wheels = []
    for name, version in pins:
        found = find(name, version)
        if found is None:
            raise RuntimeError(f"no pure wheel of {name}=={version} in {cache}")
        wheels.append(found)
    return wheels


# --------------------------------------------------------------------------- server


@contextmanager
def served(root: Path) -> Iterator[str]:
    """tests/sources/servers.py's app on 127.0.0.1 serving ``root``, plus ``GET /_state``.

    ``/_state`` returns the server's counters as JSON (``?reset=1`` zeroes them first),
    so the inner tests can check what the server saw (in-flight peaks, bytes sent).
    """
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sources.servers import ServerState, live_server, make_app

    state = ServerState(root, delay=0.2)

    async def state_route(request: Request) -> JSONResponse:
        if request.query_params.get("reset"):
            state.reset()
        return JSONResponse({
            "norange_sent": state.norange_sent, "max_inflight": state.max_inflight,
            "inflight": state.inflight,
            "requests": [[path, headers] for path, headers in state.requests],
        })

    app = make_app(state)
    app.router.routes.append(Route("/_state", state_route))
    with live_server(app, timeout=10.0) as live:
        yield live.base_url


# --------------------------------------------------------------------------- e2e archive


def make_e2e_archive(folder: Path) -> dict[str, Any]:
    """An archive written on CPython, plus what the inner e2e test must find in it."""
    import lockbox

    files = {
        "hello.txt": b"hello from CPython\n",
        "docs/readme.md": b"# lockbox\n" + b"line of text\n" * 2000,
        "docs/empty.txt": b"",
        "data/random.bin": hashlib.shake_256(b"lockbox e2e").digest(3 * 1024 * 1024 + 12345),
        "data/zeros.bin": bytes(2 * 1024 * 1024),
    }
    path = folder / "e2e.lbox"
    if path.exists():
        path.unlink()
    box = lockbox.create(path, password=E2E_PASSWORD, chunk_size=1 << 20)
    try:
        with box.writer() as w:
            for name, data in files.items():
                w.add_bytes(name, data)
            w.env_set("GREETING", "hi from the env")
    finally:
        box.close()
    expected = {
        "archive": path.name,
        "password": E2E_PASSWORD,
        "files": {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in files.items()},
        "env": {"GREETING": "hi from the env"},
    }
    (folder / "e2e.json").write_text(json.dumps(expected, indent=1))
    return expected


# --------------------------------------------------------------------------- node


@dataclass
class RunResult:
    returncode: int
    output: str
    seconds: float

    def summary(self) -> str:
        """pytest's closing line (``N passed ...``) or the last lines of the output."""
        lines = [ln for ln in self.output.splitlines() if ln.strip()]
        for line in reversed(lines):
            if re.search(r"\b(passed|failed|error|errors|no tests ran)\b", line) and " in " in line:
                return line.strip("= ")
        return "\n".join(lines[-5:])


def run_node(config: dict[str, Any], *, timeout: float, echo: bool = False) -> RunResult:
    """Run tests/pyodide/run.mjs with ``config``; killed after ``timeout`` seconds."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (>= 20) is needed to run Pyodide under Node; it is not on PATH")
    config = dict(config, timeout=max(1.0, timeout - 10.0))  # the runner's own limit fires first
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        config_path = f.name
    started = time.monotonic()
    chunks: list[str] = []
    try:
        proc = subprocess.Popen(
            [node, *NODE_FLAGS, str(TESTS / "pyodide" / "run.mjs"), config_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )
        assert proc.stdout is not None
        deadline = started + timeout
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait(10)
                chunks.append(f"\nKILLED: the Pyodide run exceeded {timeout:.0f} s\n")
                return RunResult(-9, "".join(chunks), time.monotonic() - started)
            if sel.select(min(left, 1.0)):
                line = proc.stdout.readline()
                if line == "":
                    break
                chunks.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        code = proc.wait(max(1.0, deadline - time.monotonic()))
        return RunResult(code, "".join(chunks), time.monotonic() - started)
    finally:
        os.unlink(config_path)


def base_config(site_dir: Path, manifest: dict[str, Any], wheels: Sequence[Path],
                served_dir: Path | None = None, env: dict[str, str] | None = None
                ) -> dict[str, Any]:
    entries = manifest["entries"]
    mounts = {f"{INSIDE_REPO}/tests": str(TESTS)}
    if served_dir is not None:
        mounts[INSIDE_SERVED] = str(served_dir)
    return {
        "indexURL": str(site_dir / entries["pyodide"]).rstrip("/") + "/",
        "crypto": str(site_dir / entries["crypto"]),
        # the site's pure dependency wheels first (tomli_w, idna: what the viewer's worker
        # loads before lockbox), then lockbox's own, then pytest's
        "wheels": [*(str(site_dir / entries[name]) for name in manifest.get("python_wheels", ())),
                   str(site_dir / entries["wheel"]), *map(str, wheels)],
        "mounts": mounts,
        "cwd": INSIDE_REPO,
        "sys_path": [f"{INSIDE_REPO}/tests"],
        "env": {"HOME": "/home/pyodide", "PYTHONHASHSEED": "0", **(env or {})},
    }


def run_inner(pytest_args: Sequence[str] = (), *, bench: bool = False, timeout: float = 170.0,
              echo: bool = False) -> RunResult:
    """Everything: build, wheels, server, archive, then the inner pytest (or the benchmark)."""
    site_dir, manifest = site()
    wheels = pytest_wheels()
    with tempfile.TemporaryDirectory(prefix="lockbox-pyodide-") as tmp:
        served_dir = Path(tmp)
        make_e2e_archive(served_dir)
        refused = unused_port()  # bound, not listening: connections to it are refused
        with refused, served(served_dir) as base_url:
            env = {
                "LOCKBOX_TEST_SERVER": base_url,
                "LOCKBOX_TEST_SERVED_DIR": INSIDE_SERVED,
                "LOCKBOX_TEST_REFUSED_PORT": str(refused.getsockname()[1]),
                "LOCKBOX_TEST_SYNC_SHIMS": "1",
            }
            config = base_config(site_dir, manifest, wheels, served_dir, env)
            config["sync_shims"] = True  # node-sync-shims.mjs: XHR and FileReaderSync
            if bench:
                config.update(mode="script", script=f"{INSIDE_REPO}/tests/pyodide/bench_inner.py")
            else:
                config.update(mode="pytest", args=[
                    "-p", "no:cacheprovider", "--rootdir", INSIDE_REPO, "-q", "-ra",
                    *INNER_SUITES,
                    *(f"--deselect={test}" for test in INNER_DESELECT),
                    *pytest_args,
                ])
            return run_node(config, timeout=timeout, echo=echo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run lockbox's suites inside Pyodide (Node).")
    parser.add_argument("--bench", action="store_true", help="run bench_inner.py instead")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for the inner pytest")
    args = parser.parse_args(argv)
    result = run_inner(args.pytest_args, bench=args.bench, timeout=args.timeout, echo=True)
    summary = "" if args.bench else f": {result.summary()}"
    print(f"[harness] exit code {result.returncode} in {result.seconds:.1f} s{summary}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
