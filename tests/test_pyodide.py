"""lockbox inside Pyodide (Python 3.14, WebAssembly) under Node: the browser half of the suite.

One test runs tests/pyodide/harness.py: it builds the site (``build.py``; reused when
unchanged), fetches pure pytest wheels for 3.14 once (``.cache/pyodide-wheels``), starts the
HTTP test server on 127.0.0.1, writes an archive with lockbox on CPython, and runs pytest
*inside Pyodide* (``node --experimental-wasm-stack-switching tests/pyodide/run.mjs``) on:

* tests/crypto with ``BrowserCryptoBackend`` (tests/pyodide/browser_crypto_suite.py),
* tests/codec (``ZstdCodec`` on Pyodide's ``compression.zstd``),
* the memory sources, the browser sources' conformance (fetch and Blob; XHR and
  FileReaderSync need a browser worker and are skipped under Node),
* the fetch source's HTTP rules against the real server,
* end to end: the CPython-made archive opened with ``AsyncLockbox`` over fetch.
* tests/viewer: the viewer's Python side, packed archives included (each pack fetched and
  opened once).

It needs Node >= 20 and npm (for build.py's ``npm ci``). Set ``LOCKBOX_SKIP_PYODIDE=1`` to
skip it on a machine without them (CI never sets it). Select it alone with ``-k pyodide``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

HARNESS_PATH = Path(__file__).parent / "pyodide" / "harness.py"
TIMEOUT = 170.0  # seconds for the whole Node run (it takes ~40 s here); a hang fails


def _harness():
    spec = importlib.util.spec_from_file_location("lockbox_pyodide_harness", HARNESS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(os.environ.get("LOCKBOX_SKIP_PYODIDE") == "1",
                    reason="LOCKBOX_SKIP_PYODIDE=1")
def test_suites_inside_pyodide(capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the in-Pyodide suites "
                    "(or set LOCKBOX_SKIP_PYODIDE=1 to skip them)")
    harness = _harness()
    result = harness.run_inner(timeout=TIMEOUT)
    summary = result.summary()
    with capsys.disabled():
        print(f"\n[pyodide] inner pytest: {summary} (exit {result.returncode}, "
              f"{result.seconds:.1f} s with Pyodide start-up)")
    assert result.returncode == 0, (
        f"pytest inside Pyodide failed (exit {result.returncode}): {summary}\n\n"
        f"{result.output[-20000:]}"
    )
    assert " passed" in summary and "failed" not in summary, result.output[-5000:]
