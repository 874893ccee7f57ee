"""The .sync and snapdir format cores inside Pyodide (Python 3.14): what the viewer runs.

Runs only inside Pyodide (tests/pyodide/harness.py lists it in INNER_SUITES). The same
modules are tested at length on CPython (tests/formats/sync, tests/formats/snap); here the
point is that they import and give the same bytes under Python 3.14 with the browser's
backends: tomli_w and idna come from the site's own wheels, BLAKE3 from the JS bundle.
"""

from __future__ import annotations

import datetime as dt
import sys

import pytest

from lockbox.drivers import run_sync
from lockbox.formats.snap.manifest import build_manifest, parse_manifest, snapshot_id
from lockbox.formats.sync.container import open_layout_flow, read_entry_flow
from lockbox.formats.sync.hook.hosts import host_allowed
from lockbox.formats.sync.manifest import Manifest
from lockbox.formats.sync.writer import sync_bytes
from lockbox.platform import default_crypto
from lockbox.sources import BytesSource

pytestmark = pytest.mark.skipif(sys.platform != "emscripten", reason="Pyodide only")

CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_the_browser_backend_hashes() -> None:
    assert type(default_crypto()).__name__ == "BrowserCryptoBackend"


def test_sync_manifest_and_container_round_trip() -> None:
    m = Manifest.new(content_type="text/csv", display_ext="csv", ttl=60, timeout=5,
                     allow_hosts=["example.com"], created_by="lockbox test",
                     created_at=CREATED)
    again = Manifest.parse(m.to_toml())
    assert again.canonical_json() == m.canonical_json()
    assert again.is_expired(CREATED + dt.timedelta(seconds=60)) is False
    assert again.is_expired(CREATED + dt.timedelta(seconds=61)) is True
    blob = sync_bytes(manifest_toml=m.to_toml(), payload=b"a,b\n1,2\n")
    source = BytesSource(blob)
    layout = run_sync(open_layout_flow(len(blob)), source)
    r = layout.payload_range
    assert blob[r.offset:r.offset + r.size] == b"a,b\n1,2\n"
    toml = run_sync(read_entry_flow(layout, "manifest.toml", max_size=1 << 20), source)
    assert Manifest.parse(toml).allow_hosts == m.allow_hosts


def test_host_matching_uses_the_idna_wheel() -> None:
    assert host_allowed("api.example.com", ["*.example.com"])
    assert not host_allowed("evilexample.com", ["example.com"])
    assert host_allowed("xn--bcher-kva.example", ["bücher.example"])


def test_snapdir_manifest_and_id() -> None:
    empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # BLAKE3("")
    m = build_manifest([("a b.txt", "F", 0o644, 0, empty)])
    text = m.render()
    assert parse_manifest(text).render() == text
    assert snapshot_id(text) == m.id
    assert text.splitlines()[-1].endswith(b"./a b.txt")
