#!/usr/bin/env python3
"""Build the static lockbox site: ``python build.py [--out dist/site] [--wheel [DIR]]``.

With ``--wheel`` it then also makes the wheel to install (``build_dist_wheel``):
``DIR/lockbox-<version>-py3-none-any.whl`` (default ``dist/``) holding lockbox,
lockbox_server and this site as ``lockbox_server/viewer/``, so that
``pip install 'lockbox-<version>-py3-none-any.whl[server]'`` then ``lockbox serve DIR``
serves the viewer with no checkout around. ``pip wheel .`` (or ``pip install .``) makes the
same wheel without the viewer: a PEP 517 build does not run Node.js.

What goes into the site (every input pinned; nothing is fetched by the site at run time):

* ``wheels/<hash>/lockbox-<version>-py3-none-any.whl``: the pure wheel of ``pycore/lockbox``
  (``pip wheel --no-deps`` on a clean copy of the sources, ``SOURCE_DATE_EPOCH`` fixed, so the
  same sources give the same bytes). Not ``pyodide build``: it downloads its cross-build
  environment first and fails offline; a pure ``py3-none-any`` wheel is what Pyodide loads anyway.
* ``vendor/crypto.<hash>.mjs``: one esbuild bundle of ``webapp/src/crypto-entry.mjs``
  (libsodium-wrappers-sumo, @noble/post-quantum ML-KEM, @noble/hashes Argon2id, hash-wasm BLAKE3).
* ``pyodide/<hash>/``: the Pyodide runtime files from the npm package ``pyodide`` (only the five
  that are needed). Their names are fixed by Pyodide, so the folder carries the hash.
* ``wheels/<hash>/tomli_w-1.2.0-py3-none-any.whl`` (the ``.sync`` manifest writer) and
  ``wheels/<hash>/idna-3.20-py3-none-any.whl`` (IDNA 2008 host names, as the ``.sync`` hook's
  allow-lists compare them on CPython): pure wheels fetched from PyPI once by ``pip download``
  and checked against their pinned SHA-256 (:data:`PURE_WHEELS`); the worker loads them
  before lockbox's wheel (the manifest's ``python_wheels``).
* ``boot-worker.<hash>.mjs``: the module worker from ``webapp/src/boot-worker.mjs``.
* ``hook-worker.<hash>.mjs``: the ``.sync`` update hook's sandbox (``webapp/src/hook-worker.mjs``,
  plain JS: a dedicated module worker per run, no Pyodide).
* every file of ``webapp/static/`` under its own name (the viewer pages); each ``.html`` page
  gets the server's Content-Security-Policy as a ``<meta http-equiv>`` tag (read from
  ``server/lockbox_server/site.py``, without the directives a meta policy ignores).
* ``pyodide-snapshot.<hash>.bin``: a Pyodide memory snapshot (gzip), made here under Node
  (:func:`build_snapshot`) from the same runtime files with the site's wheels on ``sys.path``
  and the viewer's modules imported (:data:`SNAPSHOT_PRELOAD`), before any archive exists:
  it holds no secret. The worker restores it instead of starting the interpreter (the
  manifest's ``snapshot`` says for which runtime and wheels it was made, and its SHA-256);
  any failure falls back to a normal start. ``--no-snapshot`` leaves it out. Every visit
  restores the same memory: the worker re-seeds ``random`` after a restore, but Python's
  string-hash secret stays the build's (public: hash randomisation is per build, not per visit).
* ``manifest.json``: logical name -> cache-busted path (relative to the site root), read by the
  pages and the worker at start.

npm packages come from ``webapp/package-lock.json`` (``npm ci``, run only when
``node_modules`` is missing or the lock changed). Built pieces are cached in ``.cache/build``
under a hash of their inputs, so a second run with nothing changed only checks hashes.
The output folder is synchronised: unchanged files are not rewritten and files that are no
longer part of the build are removed (only in a folder holding a previous build's
``manifest.json``, or an empty one).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ROOT", "WEBAPP", "DEFAULT_OUT", "PYODIDE_FILES", "BuildError", "BuildResult",
    "build", "ensure_node_modules", "build_wheel", "build_dist_wheel", "build_crypto_bundle",
    "fetch_pure_wheel", "PURE_WHEELS", "build_snapshot", "SNAPSHOT_PRELOAD", "SNAPSHOT_WHEEL_DIR",
    "main",
]

ROOT = Path(__file__).resolve().parent
WEBAPP = ROOT / "webapp"
DEFAULT_OUT = ROOT / "dist" / "site"
DEFAULT_WHEEL_DIR = ROOT / "dist"
CACHE = ROOT / ".cache" / "build"
PYODIDE_FILES = (
    "pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json",
)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip can hold
HASH_LEN = 12
_NPM_STAMP = ".lockbox-npm-stamp"
# Pure wheels the site ships next to lockbox's (the worker loads them before it): logical
# name -> (name==version, the SHA-256 of the py3-none-any wheel on PyPI). Versions as in
# requirements/dev.lock.
PURE_WHEELS: dict[str, tuple[str, str]] = {
    "tomli_w": ("tomli_w==1.2.0",
                "188306098d013b691fcadc011abd66727d3c414c571bb01b1a174ba8c983cf90"),
    "idna": ("idna==3.20",
             "ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c"),
}
#: Where the worker puts the site's wheels inside Pyodide's file system; each wheel goes on
#: ``sys.path`` as a zip (zipimport: nothing is unpacked). The same paths in the snapshot
#: and in a normal start, so the snapshot's ``sys.path`` finds them after a restore.
SNAPSHOT_WHEEL_DIR = "/lib/lockbox-wheels"
#: Packages imported into the snapshot (with every module below them, except those listed
#: in :data:`SNAPSHOT_SKIP`): what the viewer uses to open, unlock, list and read any format,
#: so that none of it is compiled at run time. Not ``idna`` (only a ``.sync`` hook's host
#: list needs it): its tables alone would add 2.7 MB to the gzip'd snapshot (and grow the
#: heap past Pyodide's initial 30 MiB); measured 7.4 MB without it, 10.1 MB with it.
SNAPSHOT_PRELOAD = (
    "lockbox.viewer", "lockbox.crypto.browser", "lockbox.crypto.hkdf",
    "lockbox.sources.browser", "lockbox.codec.zstd", "lockbox.formats.lbox",
    "lockbox.formats.uri", "lockbox.formats.sync", "lockbox.formats.snap",
)
#: Not in the snapshot: the write side, recovery and the CPython-only hook runner.
SNAPSHOT_SKIP = (
    "lockbox.formats.lbox.write", "lockbox.formats.lbox.recovery",
    "lockbox.formats.sync.hook.runner", "lockbox.formats.sync.hook.update",
    "lockbox.formats.snap.snappack",
)
SNAPSHOT_TIMEOUT_S = 300
_ESBUILD_ARGS = ("--bundle", "--format=esm", "--minify", "--target=es2022",
                 "--platform=browser", "--charset=utf8", "--log-level=warning")


class BuildError(Exception):
    """A build step failed; the message says which and why."""


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, object]
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size
    seconds: float = 0.0

    def path(self, logical: str) -> Path:
        """The built file for a logical name of the manifest (e.g. ``"crypto"``)."""
        entries = self.manifest["entries"]
        assert isinstance(entries, dict)
        return self.out / str(entries[logical])


def _log(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, flush=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_hash(parts: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sorted(parts):
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(
            f"'{name}' was not found on PATH. The site build needs Node.js (>= 20) and npm: "
            "install them (Debian: apt-get install nodejs npm) and run build.py again."
        )
    return path


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BuildError(
            f"{' '.join(cmd)} failed with exit code {proc.returncode} (in {cwd}):\n"
            f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc.stdout


# --------------------------------------------------------------------------------- npm


def ensure_node_modules(*, quiet: bool = False) -> Path:
    """``npm ci`` in webapp/ unless node_modules matches package-lock.json already."""
    lock = WEBAPP / "package-lock.json"
    if not lock.is_file():
        raise BuildError(f"{lock} is missing: it pins every npm package of the site")
    node_modules = WEBAPP / "node_modules"
    want = _tree_hash([("package.json", (WEBAPP / "package.json").read_bytes()),
                       ("package-lock.json", lock.read_bytes())])
    stamp = node_modules / _NPM_STAMP
    if stamp.is_file() and stamp.read_text().strip() == want:
        return node_modules
    _tool("node")
    npm = _tool("npm")
    _log(quiet, "npm ci (webapp/package-lock.json) ...")
    # --ignore-scripts: nothing runs at install time; esbuild's binary comes from its
    # platform package (@esbuild/linux-x64), not from its postinstall script.
    _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=WEBAPP)
    stamp.write_text(want + "\n")
    return node_modules


def _pyodide_version(node_modules: Path) -> str:
    meta = json.loads((node_modules / "pyodide" / "package.json").read_text())
    return str(meta["version"])


# --------------------------------------------------------------------------------- wheel


def _files(folder: Path, prefix: str) -> list[tuple[str, bytes]]:
    """Every file below ``folder`` as (``prefix/relative path``, bytes); no bytecode caches."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc",
                                                                                      ".pyo"):
            parts.append((f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes()))
    return parts


def _wheel_inputs() -> list[tuple[str, bytes]]:
    """The sources of the site's wheel: the project files and ``pycore/lockbox`` only."""
    parts = []
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        path = ROOT / name
        if path.is_file():
            parts.append((name, path.read_bytes()))
    return parts + _files(ROOT / "pycore" / "lockbox", "pycore/lockbox")


def _can_build_without_isolation() -> bool:
    try:
        import setuptools
        import wheel  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return major >= 77  # pyproject.toml: build-system requires


def _pip_wheel(inputs: list[tuple[str, bytes]], out_dir: Path, *, quiet: bool,
               what: str) -> Path:
    """``pip wheel --no-deps`` of a clean copy of ``inputs`` (no stale build/ or egg-info
    leaks in; ``SOURCE_DATE_EPOCH`` fixed, so the same inputs give the same bytes); the
    wheel is moved into ``out_dir``, replacing one of the same name."""
    _log(quiet, f"pip wheel --no-deps ({what}) ...")
    with tempfile.TemporaryDirectory(prefix="lockbox-wheel-") as tmp:
        src = Path(tmp) / "src"
        for name, data in inputs:
            dest = src / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            dest.chmod(0o644)
        out = Path(tmp) / "out"
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PIP_NO_INPUT="1",
                   PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONHASHSEED="0")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
        if _can_build_without_isolation():
            cmd.insert(5, "--no-build-isolation")
        _run(cmd, cwd=Path(tmp), env=env)
        wheels = sorted(out.glob("lockbox-*-py3-none-any.whl"))
        if len(wheels) != 1:
            raise BuildError(f"pip wheel made {[w.name for w in out.iterdir()]}, "
                             "expected one lockbox-*-py3-none-any.whl")
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp_wheel = out_dir / f".{wheels[0].name}.tmp"
        shutil.copyfile(wheels[0], tmp_wheel)
        return tmp_wheel.replace(out_dir / wheels[0].name)


def build_wheel(*, quiet: bool = False) -> Path:
    """The pure wheel of lockbox the site carries (Pyodide), cached under a hash of its
    sources: ``pycore/lockbox`` only, no lockbox_server (a browser does not serve)."""
    inputs = _wheel_inputs()
    key = _tree_hash(inputs)[:HASH_LEN]
    cached = CACHE / f"wheel-{key}"
    found = sorted(cached.glob("lockbox-*-py3-none-any.whl")) if cached.is_dir() else []
    if found:
        return found[0]
    tmp_cache = CACHE / f".wheel-{key}.tmp"
    shutil.rmtree(tmp_cache, ignore_errors=True)
    wheel = _pip_wheel(inputs, tmp_cache, quiet=quiet, what="pycore/lockbox")
    shutil.rmtree(cached, ignore_errors=True)
    tmp_cache.rename(cached)
    return cached / wheel.name


#: Where the viewer goes inside lockbox_server (lockbox_server.sitedir.PACKAGED_SITE).
PACKAGED_SITE = "server/lockbox_server/viewer"


def build_dist_wheel(out_dir: Path = DEFAULT_WHEEL_DIR, *, site_dir: Path | None = None,
                     quiet: bool = False) -> Path:
    """The wheel to install (``pip install 'lockbox-….whl[server]'``): lockbox and
    lockbox_server, and with ``site_dir`` (a built site) the viewer as
    ``lockbox_server/viewer/``, which ``lockbox serve`` then serves by default. Written
    into ``out_dir``; returns its path. ``pip wheel .`` makes the same wheel without the
    viewer."""
    inputs = _wheel_inputs() + [
        (name, data) for name, data in _files(ROOT / "server" / "lockbox_server",
                                              "server/lockbox_server")
        if not name.startswith(PACKAGED_SITE + "/")  # only the site given below
    ]
    what = "lockbox + lockbox_server"
    if site_dir is not None:
        site_dir = Path(site_dir)
        if not (site_dir / "index.html").is_file():
            raise BuildError(f"{site_dir} holds no index.html: build the site first "
                             "(python build.py)")
        inputs += _files(site_dir, PACKAGED_SITE)
        what += f" + the viewer from {site_dir}"
    return _pip_wheel(inputs, Path(out_dir), quiet=quiet, what=what)


def fetch_pure_wheel(requirement: str, sha256: str, *, quiet: bool = False) -> Path:
    """The pure ``py3-none-any`` wheel of ``requirement`` (``name==version``) from PyPI
    (``pip download --no-deps --only-binary=:all:``), checked against ``sha256`` and cached
    in ``.cache/build/pypi/`` (fetched once; a cached file is checked again every build)."""
    name, _, version = requirement.partition("==")
    if not version:
        raise BuildError(f"{requirement!r}: pin an exact version (name==version)")
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    cached = CACHE / "pypi" / filename
    if cached.is_file():
        if _sha256(cached.read_bytes()) == sha256:
            return cached
        cached.unlink()  # damaged or replaced: fetch it again
    _log(quiet, f"pip download {requirement} ...")
    with tempfile.TemporaryDirectory(prefix="lockbox-pypi-") as tmp:
        env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
              "-q", "-d", tmp, requirement],
             cwd=Path(tmp), env=env, timeout=300)
        got = Path(tmp) / filename
        if not got.is_file():
            raise BuildError(f"pip download {requirement} made "
                             f"{sorted(p.name for p in Path(tmp).iterdir())}, expected {filename}")
        digest = _sha256(got.read_bytes())
        if digest != sha256:
            raise BuildError(f"{filename} from PyPI has SHA-256 {digest}, not the pinned "
                             f"{sha256}: refusing it")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp_cached = cached.with_name(f".{filename}.tmp")
        shutil.copyfile(got, tmp_cached)
        return tmp_cached.replace(cached)


# --------------------------------------------------------------------------------- crypto bundle


def build_crypto_bundle(node_modules: Path, *, quiet: bool = False) -> Path:
    """The esbuild bundle of webapp/src/crypto-entry.mjs, cached under a hash of its inputs."""
    entry = WEBAPP / "src" / "crypto-entry.mjs"
    key = _tree_hash([
        ("entry", entry.read_bytes()),
        ("lock", (WEBAPP / "package-lock.json").read_bytes()),
        ("args", " ".join(_ESBUILD_ARGS).encode()),
    ])[:HASH_LEN]
    cached = CACHE / f"crypto-{key}.mjs"
    if cached.is_file():
        return cached
    node = _tool("node")
    esbuild = node_modules / "esbuild" / "bin" / "esbuild"
    if not esbuild.is_file():
        raise BuildError(f"{esbuild} is missing: run npm ci in webapp/ (build.py does it)")
    _log(quiet, "esbuild crypto bundle ...")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".crypto-{key}.tmp.mjs"
    _run([node, str(esbuild), str(entry), *_ESBUILD_ARGS, f"--outfile={tmp}"], cwd=WEBAPP)
    tmp.replace(cached)
    return cached


# --------------------------------------------------------------------------------- snapshot

# Run by Node (build_snapshot): load Pyodide with _makeSnapshot, put the wheels where the
# worker puts them, run the preparation, write the memory snapshot (Pyodide's format: a
# header with the runtime's BUILD_ID and the JS references Python holds, by their path from
# globalThis, then the WebAssembly memory).
_SNAPSHOT_JS = """\
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
// Made as in a runtime without WebAssembly stack switching (JSPI), whatever this Node has:
// Pyodide binds run_sync at start-up, and a restored Python in a browser with JSPI gets
// can_run_sync() == False from the worker (boot-worker.mjs), so it never uses it.
delete WebAssembly.Suspending;
delete WebAssembly.Suspender;
setTimeout(() => {
  console.error(`no snapshot within ${cfg.timeout} s`);
  process.exit(124);
}, cfg.timeout * 1000).unref();
const { loadPyodide } = await import(pathToFileURL(cfg.indexURL + "pyodide.mjs").href);
const wheels = cfg.wheels.map((w) => [w.path, readFileSync(w.file)]);
const pyodide = await loadPyodide({
  indexURL: cfg.indexURL,
  _makeSnapshot: true,
  fsInit: (FS) => {
    FS.mkdirTree(cfg.wheelDir);
    for (const [path, data] of wheels) FS.writeFile(path, data);
  },
});
pyodide.runPython(cfg.prepare);
writeFileSync(cfg.out, pyodide.makeMemorySnapshot());
"""


def snapshot_wheel_paths(wheel_names: Iterable[str]) -> list[str]:
    """Where each wheel (by file name) lives inside Pyodide: :data:`SNAPSHOT_WHEEL_DIR`."""
    return [f"{SNAPSHOT_WHEEL_DIR}/{name}" for name in wheel_names]


def _snapshot_prepare(wheel_paths: list[str]) -> str:
    """The Python run before the snapshot is taken: the wheels on ``sys.path`` (as the
    worker's normal start puts them), then every module of :data:`SNAPSHOT_PRELOAD`."""
    return "\n".join([
        "def _lockbox_preload():",
        "    import importlib, pkgutil, sys",
        f"    sys.path[1:1] = {wheel_paths!r}",
        f"    skip = {SNAPSHOT_SKIP!r}",
        "    def walk(name):",
        "        module = importlib.import_module(name)",
        "        for info in pkgutil.iter_modules(getattr(module, '__path__', ()), name + '.'):",
        "            if not info.name.startswith(skip):",
        "                walk(info.name)",
        f"    for name in {SNAPSHOT_PRELOAD!r}:",
        "        walk(name)",
        "_lockbox_preload()",
        "del _lockbox_preload",
        "",
    ])


def build_snapshot(node_modules: Path, wheels: list[Path], *, quiet: bool = False) -> Path:
    """The gzip'd Pyodide memory snapshot of the site (see the module docstring), made by
    Node from ``node_modules/pyodide`` with ``wheels`` (in ``sys.path`` order) and cached
    under a hash of everything it depends on."""
    runtime = [(name, (node_modules / "pyodide" / name).read_bytes()) for name in PYODIDE_FILES]
    wheel_paths = snapshot_wheel_paths(w.name for w in wheels)
    prepare = _snapshot_prepare(wheel_paths)
    key = _tree_hash([
        *runtime, *((f"wheel/{w.name}", w.read_bytes()) for w in wheels),
        ("script", _SNAPSHOT_JS.encode()), ("prepare", prepare.encode()),
    ])[:HASH_LEN]
    cached = CACHE / f"snapshot-{key}.bin"
    if cached.is_file():
        return cached
    node = _tool("node")
    _log(quiet, "Pyodide memory snapshot (node) ...")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lockbox-snapshot-") as tmp:
        raw = Path(tmp) / "snapshot.raw"
        config = {
            "indexURL": str(node_modules / "pyodide") + "/", "wheelDir": SNAPSHOT_WHEEL_DIR,
            "wheels": [{"path": path, "file": str(w)} for path, w in zip(wheel_paths, wheels)],
            "prepare": prepare, "out": str(raw), "timeout": SNAPSHOT_TIMEOUT_S,
        }
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        (Path(tmp) / "snapshot.mjs").write_text(_SNAPSHOT_JS)
        _run([node, "snapshot.mjs", "config.json"], cwd=Path(tmp),
             timeout=SNAPSHOT_TIMEOUT_S + 30)
        data = gzip.compress(raw.read_bytes(), compresslevel=6, mtime=0)
    tmp_cached = CACHE / f".snapshot-{key}.tmp"
    tmp_cached.write_bytes(data)
    return tmp_cached.replace(cached)


# --------------------------------------------------------------------------------- site


def _hashed_name(name: str, data: bytes) -> str:
    stem, dot, ext = name.partition(".")
    return f"{stem}.{_sha256(data)[:HASH_LEN]}{dot}{ext}"


def _plan(node_modules: Path, wheel: Path, bundle: Path,
          extra_wheels: dict[str, Path] | None = None, snapshot: Path | None = None
          ) -> tuple[dict[str, bytes], dict[str, object]]:
    """Every output file (relative path -> bytes) and the manifest."""
    files: dict[str, bytes] = {}
    entries: dict[str, str] = {}

    runtime = {name: (node_modules / "pyodide" / name).read_bytes() for name in PYODIDE_FILES}
    runtime_dir = f"pyodide/{_tree_hash(runtime.items())[:HASH_LEN]}"
    for name, data in runtime.items():
        files[f"{runtime_dir}/{name}"] = data
    entries["pyodide"] = runtime_dir + "/"
    entries["pyodide.mjs"] = f"{runtime_dir}/pyodide.mjs"

    wheel_data = wheel.read_bytes()
    entries["wheel"] = f"wheels/{_sha256(wheel_data)[:HASH_LEN]}/{wheel.name}"
    files[entries["wheel"]] = wheel_data
    for logical, path in (extra_wheels or {}).items():
        data = path.read_bytes()
        entries[logical] = f"wheels/{_sha256(data)[:HASH_LEN]}/{path.name}"
        files[entries[logical]] = data

    snapshot_info: dict[str, object] | None = None
    if snapshot is not None:
        snapshot_data = snapshot.read_bytes()
        entries["snapshot"] = _hashed_name("pyodide-snapshot.bin", snapshot_data)
        files[entries["snapshot"]] = snapshot_data
        snapshot_info = {
            # what the worker checks before restoring it: the bytes, and that it was made
            # from this runtime folder and these wheels (in sys.path order)
            "sha256": _sha256(snapshot_data),
            "size": int.from_bytes(snapshot_data[-4:], "little"),  # gzip ISIZE: < 4 GiB
            "pyodide": entries["pyodide"],
            "wheels": [entries[name] for name in [*(extra_wheels or {}), "wheel"]],
            "encoding": "gzip",
            "jspi": False,  # made without JSPI: no run_sync after a restore
        }

    bundle_data = bundle.read_bytes()
    entries["crypto"] = "vendor/" + _hashed_name("crypto.mjs", bundle_data)
    files[entries["crypto"]] = bundle_data

    worker_data = (WEBAPP / "src" / "boot-worker.mjs").read_bytes()
    entries["boot-worker"] = _hashed_name("boot-worker.mjs", worker_data)
    files[entries["boot-worker"]] = worker_data

    hook_data = (WEBAPP / "src" / "hook-worker.mjs").read_bytes()
    entries["hook-worker"] = _hashed_name("hook-worker.mjs", hook_data)
    files[entries["hook-worker"]] = hook_data

    static: dict[str, str] = {}
    static_dir = WEBAPP / "static"
    if static_dir.is_dir():
        for path in sorted(static_dir.rglob("*")):
            if path.is_file():
                rel = path.relative_to(static_dir).as_posix()
                if rel == MANIFEST or rel in files:
                    raise BuildError(f"webapp/static/{rel} collides with a built file")
                files[rel] = path.read_bytes()
                if rel.endswith(".html"):
                    files[rel] = with_csp_meta(rel, files[rel])
                static[rel] = _sha256(files[rel])

    manifest: dict[str, object] = {
        "format": MANIFEST_FORMAT,
        "lockbox": _wheel_version(wheel.name),
        "pyodide": _pyodide_version(node_modules),
        "crypto_global": "lockboxCrypto",
        "python_wheels": list(extra_wheels or {}),  # logical names, loaded before "wheel"
        "wheel_dir": SNAPSHOT_WHEEL_DIR,  # the wheels' folder inside Pyodide (on sys.path)
        "entries": dict(sorted(entries.items())),
        "static": static,
        "sizes": {},
    }
    if snapshot_info is not None:
        manifest["snapshot"] = snapshot_info
    manifest["sizes"] = {path: len(data) for path, data in sorted(files.items())}
    return files, manifest


# --------------------------------------------------------------------------------- CSP


SITE_PY = ROOT / "server" / "lockbox_server" / "site.py"
# Directives a policy given by <meta http-equiv> ignores (CSP Level 3, "delivery via meta").
META_IGNORED = ("frame-ancestors", "report-uri", "sandbox")
_CHARSET_META = b'<meta charset="utf-8">'


def site_csp() -> str:
    """The server's policy, ``lockbox_server.site.SITE_CSP``, read from its source (the
    build does not import the server: that needs Starlette)."""
    try:
        tree = ast.parse(SITE_PY.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as exc:
        raise BuildError(f"cannot read SITE_CSP from {SITE_PY}: {exc}") from exc
    for node in tree.body:
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and target.id == "SITE_CSP" and value):
            continue
        try:
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and \
                    value.func.attr == "join" and len(value.args) == 1:
                return str(ast.literal_eval(value.func.value)).join(ast.literal_eval(value.args[0]))
            return str(ast.literal_eval(value))
        except ValueError:
            break
    raise BuildError(f"{SITE_PY}: SITE_CSP is not a literal string nor '; '.join([...literals])")


def meta_csp(policy: str) -> str:
    """``policy`` without the directives a ``<meta>`` policy ignores (:data:`META_IGNORED`)."""
    kept = [d.strip() for d in policy.split(";")
            if d.strip() and d.split()[0].lower() not in META_IGNORED]
    return "; ".join(kept)


def with_csp_meta(rel: str, page: bytes) -> bytes:
    """``page`` with ``<meta http-equiv="Content-Security-Policy">`` right after its
    ``<meta charset="utf-8">``: the server's policy (:func:`site_csp`, less what a meta
    policy ignores), so a static host that sends no headers still applies it."""
    if _CHARSET_META not in page:
        raise BuildError(f"webapp/static/{rel}: no {_CHARSET_META.decode()} to put the "
                         "Content-Security-Policy after")
    tag = (f'\n<meta http-equiv="Content-Security-Policy" '
           f'content="{html.escape(meta_csp(site_csp()), quote=True)}">').encode()
    return page.replace(_CHARSET_META, _CHARSET_META + tag, 1)


def _wheel_version(name: str) -> str:
    return name.split("-")[1]


def _sync(out: Path, files: dict[str, bytes], manifest_bytes: bytes) -> None:
    """Write what differs, remove what is no longer built, write the manifest last."""
    if out.exists():
        if not out.is_dir():
            raise BuildError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise BuildError(f"--out {out} is not empty and holds no {MANIFEST}: refusing to "
                             "replace its contents (pick an empty or a previous build's folder)")
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(files) | {MANIFEST}
    for path in sorted(out.rglob("*")):
        if (path.is_symlink() or path.is_file()) and path.relative_to(out).as_posix() not in wanted:
            path.unlink()
    for rel, data in files.items():
        dest = out / rel
        if dest.is_file() and dest.stat().st_size == len(data) and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    for path in sorted(out.rglob("*"), reverse=True):  # children before their folders
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
    target = out / MANIFEST
    if not target.is_file() or target.read_bytes() != manifest_bytes:
        tmp = out / (MANIFEST + ".tmp")
        tmp.write_bytes(manifest_bytes)
        tmp.replace(target)


def build(out: Path = DEFAULT_OUT, *, quiet: bool = False, snapshot: bool = True) -> BuildResult:
    """Build the site into ``out``; returns the manifest and the sizes. ``snapshot=False``
    leaves the Pyodide memory snapshot out (the worker then always starts Python itself)."""
    started = time.monotonic()
    out = Path(out).resolve()
    node_modules = ensure_node_modules(quiet=quiet)
    wheel = build_wheel(quiet=quiet)
    bundle = build_crypto_bundle(node_modules, quiet=quiet)
    extra = {name: fetch_pure_wheel(req, sha, quiet=quiet)
             for name, (req, sha) in PURE_WHEELS.items()}
    snap = build_snapshot(node_modules, [*extra.values(), wheel], quiet=quiet) if snapshot \
        else None
    files, manifest = _plan(node_modules, wheel, bundle, extra, snap)
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    _sync(out, files, manifest_bytes)
    sizes = {rel: len(data) for rel, data in files.items()}
    sizes[MANIFEST] = len(manifest_bytes)
    return BuildResult(out, manifest, dict(sorted(sizes.items())), time.monotonic() - started)


def _report(result: BuildResult) -> str:
    entries = result.manifest["entries"]
    assert isinstance(entries, dict)
    lines = [f"built {result.out} in {result.seconds:.2f} s"]
    width = max(len(p) for p in result.files)
    for rel, size in result.files.items():
        lines.append(f"  {rel:<{width}}  {size:>12,} B")
    total = sum(result.files.values())
    lines.append(f"  {'total':<{width}}  {total:>12,} B in {len(result.files)} files")
    bundle = result.path("crypto").read_bytes()
    lines.append(f"  crypto bundle gzip -9: {len(gzip.compress(bundle, 9, mtime=0)):,} B")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--wheel", type=Path, nargs="?", const=DEFAULT_WHEEL_DIR, default=None,
                        metavar="DIR",
                        help="then also make the wheel to install, lockbox + lockbox_server "
                             "+ this viewer, in DIR (default: "
                             f"{DEFAULT_WHEEL_DIR.relative_to(ROOT)}/)")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="leave the Pyodide memory snapshot out (the viewer then starts "
                             "Python itself on every visit)")
    args = parser.parse_args(argv)
    try:
        result = build(args.out, quiet=args.quiet, snapshot=not args.no_snapshot)
        wheel = (build_dist_wheel(args.wheel, site_dir=result.out, quiet=args.quiet)
                 if args.wheel is not None else None)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(_report(result))
        if wheel is not None:
            print(f"wheel {wheel} ({wheel.stat().st_size:,} B; the viewer inside: "
                  "pip install it with [server], then lockbox serve DIR)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
