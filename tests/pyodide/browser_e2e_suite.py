"""Inside Pyodide: open an archive written on CPython, over HTTP, with the browser parts.

tests/pyodide/harness.py writes ``e2e.lbox`` (lockbox on CPython: ``cryptography``,
``blake3``, default Argon2id parameters) and ``e2e.json`` (paths, sizes, SHA-256, env)
into the served folder; here lockbox reads it with ``AsyncLockbox`` over
``FetchRangeSource``, the browser crypto backend (libsodium, hash-wasm, noble) and the
stdlib zstd of Pyodide.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pytest

import lockbox
from lockbox.crypto.browser import BrowserCryptoBackend
from lockbox.sources.browser import FetchRangeSource
from sources.conformance import run_async

SERVER = os.environ.get("LOCKBOX_TEST_SERVER", "").rstrip("/")
SERVED_DIR = os.environ.get("LOCKBOX_TEST_SERVED_DIR", "")
TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not (SERVER and SERVED_DIR and os.path.exists(os.path.join(SERVED_DIR, "e2e.json"))),
    reason="needs the harness's server and e2e.json",
)


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    with open(os.path.join(SERVED_DIR, "e2e.json")) as f:
        result: dict[str, Any] = json.load(f)
    return result


def test_open_list_read_verify(expected: dict[str, Any]) -> None:
    url = f"{SERVER}/files/{expected['archive']}"
    files = expected["files"]

    async def main() -> None:
        source = FetchRangeSource(url)
        box = await lockbox.AsyncLockbox.open(source, password=expected["password"])
        async with box:
            assert isinstance(box.crypto, BrowserCryptoBackend)
            opened = source.stats.requests
            assert opened <= 3, source.stats  # superblock, then the root listing

            entries = {e.path: e for e in await box.ls(recursive=True)}
            assert {p for p, e in entries.items() if e.type == "file"} == set(files)
            assert {p for p, e in entries.items() if e.type == "dir"} == {"docs", "data"}
            root = sorted(e.path for e in await box.ls())
            assert root == ["data", "docs", "hello.txt"]

            for path, want in files.items():
                assert entries[path].size == want["size"]
                data = await box.read_bytes(path)
                assert len(data) == want["size"], path
                assert hashlib.sha256(data).hexdigest() == want["sha256"], path

            hello = await box.read_bytes("hello.txt")
            assert hello == b"hello from CPython\n"
            env = {k: v.decode() for k, v in await box.env_items()}
            assert env == expected["env"]

            report = await box.verify()
            assert report.ok, report.problems
            assert report.files_checked == len(files)

    run_async(main(), timeout=TIMEOUT)


def test_open_async_by_url_uses_the_platform_sources(expected: dict[str, Any]) -> None:
    url = f"{SERVER}/files/{expected['archive']}"

    async def main() -> None:
        box = await lockbox.open_async(url, password=expected["password"])
        async with box:
            assert isinstance(box.source, FetchRangeSource)
            stat = await box.stat("docs/readme.md")
            assert stat.size == expected["files"]["docs/readme.md"]["size"]

    run_async(main(), timeout=TIMEOUT)


def test_wrong_password_is_wrong_key(expected: dict[str, Any]) -> None:
    url = f"{SERVER}/files/{expected['archive']}"

    async def main() -> None:
        with pytest.raises(lockbox.WrongKeyError):
            await lockbox.open_async(url, password="not the password")

    run_async(main(), timeout=TIMEOUT)


@pytest.mark.skipif(getattr(__import__("js"), "XMLHttpRequest", None) is None,
                    reason="no XMLHttpRequest here (browser worker or node-sync-shims.mjs)")
def test_sync_lockbox_over_xhr(expected: dict[str, Any]) -> None:
    """The synchronous facade, as a viewer worker would use it (XhrRangeSource)."""
    from lockbox.sources.browser import XhrRangeSource

    url = f"{SERVER}/files/{expected['archive']}"
    with lockbox.open(url, password=expected["password"]) as box:
        assert isinstance(box.source, XhrRangeSource)
        for path, want in expected["files"].items():
            data = box.read_bytes(path)
            assert hashlib.sha256(data).hexdigest() == want["sha256"], path
        with box.open_file("docs/readme.md") as f:
            f.seek(10)
            assert f.read(13) == b"line of text\n"
