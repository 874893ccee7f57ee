"""Python's start in the viewer: restored from the site's memory snapshot (build.py), and a
normal start whenever that snapshot cannot be used (damaged, missing, made for another
runtime folder, made by another Pyodide build): the viewer works either way."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import Archives, Viewer, close_viewer, new_viewer

BOOT = "() => performance.getEntriesByName('lockbox:ready')[0].detail.boot"


def started_how(v: Viewer) -> tuple[str, dict[str, Any]]:
    """(html[data-python-start], the worker's account of its start) once Python is ready."""
    v.wait_python()
    return v.page.get_attribute("html", "data-python-start") or "", v.page.evaluate(BOOT)


def open_and_list(v: Viewer, server: str) -> None:
    """A password archive opened, unlocked (Argon2id and AEAD in the crypto bundle) and
    listed: the Python that started can do the viewer's work."""
    v.open_url(f"{server}/archives/tree.lbox")
    v.unlock()
    v.wait_listing("docs")
    v.click_row("README.md")
    v.page.wait_for_selector(".text-preview")
    assert "Hello from the e2e suite." in (v.page.text_content(".text-preview") or "")


def test_python_starts_from_the_snapshot(viewer: Viewer, server: str, site: Path) -> None:
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["snapshot"]["pyodide"] == manifest["entries"]["pyodide"]
    viewer.goto()
    start, how = started_how(viewer)
    assert start == "snapshot", how
    assert how["snapshot"] is True and "fallback" not in how
    open_and_list(viewer, server)
    snapshot_url = f"{server}/{manifest['entries']['snapshot']}"
    assert [r.status for r in viewer.requests if r.url == snapshot_url] == [200]


# Starts one more boot worker in the page and runs Python in it ({id, code}).
RUN_IN_NEW_WORKER = """async (code) => {
  const manifest = await (await fetch("manifest.json", { cache: "no-cache" })).json();
  const worker = new Worker(manifest.entries["boot-worker"], { type: "module" });
  try {
    return await new Promise((resolve, reject) => {
      worker.onmessage = (e) => {
        if (e.data.type === "ready" && !e.data.boot.snapshot) reject(new Error("no snapshot"));
        if (e.data.type === "failed") reject(new Error(e.data.error));
        if (e.data.id !== 1) return;
        if ("error" in e.data) reject(new Error(e.data.error));
        else resolve(e.data.result);
      };
      worker.postMessage({ id: 1, code });
    });
  } finally {
    worker.terminate();
  }
}"""


def test_copies_of_the_snapshot_do_not_share_random_state(viewer: Viewer) -> None:
    """Every copy restores the same memory: ``random`` is seeded again after the restore,
    the wheels' modules that are not in the snapshot still import (from the zips on
    ``sys.path``), and ``can_run_sync()`` says False (the snapshot is made without JSPI:
    lockbox then takes its synchronous crypto paths) wherever lockbox asks it."""
    viewer.goto()
    viewer.wait_python()
    code = ("import random, sys, idna, pyodide.ffi, lockbox.crypto.browser as b\n"
            "host = idna.encode('b\u00fccher.example').decode()\n"
            "synced = pyodide.ffi.can_run_sync() or b.can_run_sync()\n"
            "f'{random.getrandbits(64)} {sys.path.count(\"\")} {host} {synced}'")
    first = viewer.evaluate(RUN_IN_NEW_WORKER, code, timeout_ms=120_000)
    second = viewer.evaluate(RUN_IN_NEW_WORKER, code, timeout_ms=120_000)
    bits1, empty1, host1, synced1 = first.split()
    bits2, empty2, host2, synced2 = second.split()
    assert bits1 != bits2
    assert empty1 == empty2 == "1"  # sys.path holds '' once
    assert host1 == host2 == "xn--bcher-kva.example"
    assert synced1 == synced2 == "False"


def _damage(site: Path, manifest: dict[str, Any]) -> None:
    path = site / manifest["entries"]["snapshot"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _altered(site: Path, manifest: dict[str, Any]) -> None:
    """Still a valid gzip stream of the same memory (only its header's OS byte differs):
    only the SHA-256 can tell."""
    path = site / manifest["entries"]["snapshot"]
    data = bytearray(path.read_bytes())
    data[9] ^= 0x01
    path.write_bytes(bytes(data))


def _missing(site: Path, manifest: dict[str, Any]) -> None:
    (site / manifest["entries"]["snapshot"]).unlink()


def _other_runtime(site: Path, manifest: dict[str, Any]) -> None:
    manifest["snapshot"]["pyodide"] = "pyodide/000000000000/"


def _other_build(site: Path, manifest: dict[str, Any]) -> None:
    """A well-formed snapshot whose Pyodide BUILD_ID (bytes 16-47 of its header) is not
    this runtime's, listed in the manifest with its right SHA-256: Pyodide itself refuses it."""
    path = site / manifest["entries"]["snapshot"]
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[16:48] = bytes(32)
    packed = gzip.compress(bytes(raw), compresslevel=1, mtime=0)
    path.write_bytes(packed)
    manifest["snapshot"]["sha256"] = hashlib.sha256(packed).hexdigest()


@contextmanager
def serve_variant(site: Path, tmp_path: Path, archives: Archives,
                  change: Callable[[Path, dict[str, Any]], None]) -> Iterator[str]:
    from lockbox_server import running

    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(copy, manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with running(archives.dir, site_dir=copy, timeout=15) as url:
        yield url.rstrip("/")


@pytest.mark.parametrize(("change", "reasons"), [
    # the gzip stream's own checks (or the unpacked size) fail before the SHA-256
    (_damage, ("compressed data", "manifest's size", "SHA-256")),
    (_altered, ("SHA-256",)),
    (_missing, ("HTTP 404",)),
    (_other_runtime, ("another runtime",)),
    (_other_build, ("build id mismatch",)),
], ids=["damaged", "altered", "missing", "other-runtime", "other-build"])
def test_a_snapshot_that_cannot_be_used_falls_back_to_a_normal_start(
        browser: Any, site: Path, archives: Archives, tmp_path: Path, request: Any,
        change: Callable[[Path, dict[str, Any]], None], reasons: tuple[str, ...]) -> None:
    with serve_variant(site, tmp_path, archives, change) as base:
        v = new_viewer(browser, base)
        try:
            v.goto()
            start, how = started_how(v)
            assert start == "started", how
            assert how["snapshot"] is False
            assert any(reason in how["fallback"] for reason in reasons), how
            open_and_list(v, base)
        finally:
            close_viewer(v, request)
