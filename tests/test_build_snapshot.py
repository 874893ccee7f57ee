"""build.py's Pyodide memory snapshot in the site: the manifest's ``snapshot`` names the bytes
(SHA-256, unpacked size) and the runtime and wheels it was made from, the file's name carries
its hash, and the preparation run before the snapshot is taken is what the worker expects.

(Making a real snapshot needs Node and takes seconds: the e2e suite's ``test_startup.py``
restores the built one in Chromium, and checks the fallback when it cannot be used.)
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import re
from pathlib import Path
from types import ModuleType

import pytest

from build_helpers import load_build

ROOT = Path(__file__).resolve().parent.parent
PYODIDE = ROOT / "webapp" / "node_modules" / "pyodide"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_build()


@pytest.fixture
def pieces(tmp_path: Path) -> dict[str, Path]:
    if not all((PYODIDE / name).is_file() for name in ("pyodide.mjs", "pyodide.asm.wasm")):
        pytest.skip("webapp/node_modules is not installed (python build.py installs it)")
    wheel = tmp_path / "lockbox-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK lockbox wheel stand-in")
    extra = tmp_path / "tomli_w-1.2.0-py3-none-any.whl"
    extra.write_bytes(b"PK tomli_w stand-in")
    bundle = tmp_path / "crypto.mjs"
    bundle.write_bytes(b"export const init = () => ({});\n")
    snapshot = tmp_path / "snapshot.bin"
    snapshot.write_bytes(gzip.compress(b"\x00snapshot memory\x00" * 1000, mtime=0))
    return {"wheel": wheel, "tomli_w": extra, "crypto": bundle, "snapshot": snapshot}


def test_the_manifest_describes_the_snapshot(build: ModuleType, pieces: dict[str, Path]) -> None:
    files, manifest = build._plan(PYODIDE.parent, pieces["wheel"], pieces["crypto"],
                                  {"tomli_w": pieces["tomli_w"]}, pieces["snapshot"])
    entries = manifest["entries"]
    packed = pieces["snapshot"].read_bytes()
    assert re.fullmatch(r"pyodide-snapshot\.[0-9a-f]{12}\.bin", entries["snapshot"])
    assert entries["snapshot"].split(".")[1] == hashlib.sha256(packed).hexdigest()[:12]
    assert files[entries["snapshot"]] == packed
    assert manifest["snapshot"] == {
        "sha256": hashlib.sha256(packed).hexdigest(),
        "size": len(gzip.decompress(packed)),
        "pyodide": entries["pyodide"],
        "wheels": [entries["tomli_w"], entries["wheel"]],  # sys.path order: lockbox's last
        "encoding": "gzip",
        "jspi": False,
    }
    assert manifest["wheel_dir"] == build.SNAPSHOT_WHEEL_DIR
    assert manifest["sizes"][entries["snapshot"]] == len(packed)


def test_no_snapshot_no_entry(build: ModuleType, pieces: dict[str, Path]) -> None:
    files, manifest = build._plan(PYODIDE.parent, pieces["wheel"], pieces["crypto"],
                                  {"tomli_w": pieces["tomli_w"]})
    assert "snapshot" not in manifest
    assert "snapshot" not in manifest["entries"]
    assert not any(name.startswith("pyodide-snapshot") for name in files)


def test_the_preparation_puts_the_wheels_first_and_preloads_the_viewer(
        build: ModuleType) -> None:
    paths = build.snapshot_wheel_paths(["a-1-py3-none-any.whl", "lockbox-0.1.0-py3-none-any.whl"])
    assert paths == [f"{build.SNAPSHOT_WHEEL_DIR}/a-1-py3-none-any.whl",
                     f"{build.SNAPSHOT_WHEEL_DIR}/lockbox-0.1.0-py3-none-any.whl"]
    code = build._snapshot_prepare(paths)
    ast.parse(code)
    assert f"sys.path[1:1] = {paths!r}" in code
    assert "lockbox.viewer" in build.SNAPSHOT_PRELOAD
    # it leaves nothing behind in __main__ (the worker's namespace)
    assert code.rstrip().endswith("del _lockbox_preload")


def test_preloaded_and_skipped_modules_exist(build: ModuleType) -> None:
    """A renamed module would make the snapshot build fail (preload) or silently grow it
    (skip): both lists name real modules of pycore/ or of the site's pure wheels."""
    pycore = ROOT / "pycore"

    def exists(name: str) -> bool:
        if not name.startswith("lockbox"):
            return name in build.PURE_WHEELS
        base = pycore.joinpath(*name.split("."))
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()

    missing = [n for n in (*build.SNAPSHOT_PRELOAD, *build.SNAPSHOT_SKIP) if not exists(n)]
    assert not missing, missing
