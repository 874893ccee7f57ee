"""Inside Pyodide: the shared range-source conformance suites on the four browser sources.

This module is the hook for running them wherever the JS APIs exist:

* Node (tests/pyodide/harness.py, part of the test command): ``FetchRangeSource`` and
  ``AsyncBlobRangeSource`` run; ``XhrRangeSource`` (needs ``XMLHttpRequest``) and
  ``BlobRangeSource`` (needs ``FileReaderSync``) are skipped with that reason.
* Chromium, inside a Web Worker (the e2e suite): all four run. Synchronous XHR with an
  ``arraybuffer`` response and ``FileReaderSync`` exist only in workers, so run pytest in
  the boot worker (``{id, code}`` message), not on the page.

How test data reaches the HTTP server (``LOCKBOX_TEST_SERVER``, the base URL of a server
with the routes of tests/sources/servers.py: ``/files/{name}``, ``/noetag/{name}``,
``/redirect/{name}``, and ``/_state`` from harness.py), one of:

* ``LOCKBOX_TEST_SERVED_DIR``: a folder inside Pyodide that is the server's folder
  (Node mounts it with NODEFS); files are written there;
* ``LOCKBOX_TEST_UPLOAD_URL``: a URL prefix accepting ``PUT {prefix}/{name}`` with the
  bytes as body (a route the e2e server adds); files are uploaded with a synchronous XHR.

With neither (or no ``LOCKBOX_TEST_SERVER``) the HTTP classes are skipped. Run it with::

    import pytest
    pytest.main(["-q", "-p", "no:cacheprovider",
                 "/repo/tests/pyodide/browser_sources_conformance.py"])

with ``/repo/tests`` on ``sys.path`` (the suites import ``sources.conformance``) and
``globalThis.lockboxCrypto`` not needed (sources only).
"""

from __future__ import annotations

import itertools
import os

import js  # type: ignore[import-not-found]
import pytest
from pyodide.ffi import to_js  # type: ignore[import-not-found]

from lockbox.sources.browser import (
    AsyncBlobRangeSource,
    BlobRangeSource,
    FetchRangeSource,
    XhrRangeSource,
)
from sources.conformance import AsyncRangeSourceConformance, RangeSourceConformance

SERVER = os.environ.get("LOCKBOX_TEST_SERVER", "").rstrip("/")
SERVED_DIR = os.environ.get("LOCKBOX_TEST_SERVED_DIR", "")
UPLOAD_URL = os.environ.get("LOCKBOX_TEST_UPLOAD_URL", "").rstrip("/")
TIMEOUT = 10.0
_names = itertools.count()


def has_js(name: str) -> bool:
    return getattr(js, name, None) is not None


def publish(data: bytes) -> str:
    """Put ``data`` on the test server under a fresh name; returns the name."""
    name = f"p{os.getpid()}-{next(_names)}.bin"
    if SERVED_DIR:
        with open(os.path.join(SERVED_DIR, name), "wb") as f:
            f.write(data)
    elif UPLOAD_URL:
        xhr = js.XMLHttpRequest.new()
        xhr.open("PUT", f"{UPLOAD_URL}/{name}", False)
        xhr.send(to_js(data))
        assert 200 <= xhr.status < 300, f"upload of {name} failed: HTTP {xhr.status}"
    else:  # pragma: no cover - guarded by the skip marks
        raise RuntimeError("no way to publish test data")
    return name


def make_blob(data: bytes, name: str | None = None) -> object:
    parts = to_js([to_js(data)])
    if name is not None and has_js("File"):
        return js.File.new(parts, name)
    return js.Blob.new(parts)


CAN_PUBLISH = bool(SERVER and (SERVED_DIR or (UPLOAD_URL and has_js("XMLHttpRequest"))))
needs_server = pytest.mark.skipif(
    not CAN_PUBLISH,
    reason="needs LOCKBOX_TEST_SERVER and LOCKBOX_TEST_SERVED_DIR or LOCKBOX_TEST_UPLOAD_URL",
)
needs_xhr = pytest.mark.skipif(
    not has_js("XMLHttpRequest"),
    reason="XMLHttpRequest is not available here (Node); run this in a browser Web Worker",
)
needs_file_reader_sync = pytest.mark.skipif(
    not has_js("FileReaderSync"),
    reason="FileReaderSync exists only in browser Web Workers",
)
needs_blob = pytest.mark.skipif(not has_js("Blob"), reason="no Blob in this JS runtime")


@needs_server
@needs_xhr
class TestXhrRangeSource(RangeSourceConformance):
    @pytest.fixture(params=["files", "noetag", "redirect"])
    def make_source(self, request):
        created: list[XhrRangeSource] = []

        def make(data: bytes) -> XhrRangeSource:
            src = XhrRangeSource(f"{SERVER}/{request.param}/{publish(data)}", timeout=TIMEOUT)
            created.append(src)
            return src

        yield make
        for src in created:
            src.close()


@needs_server
class TestFetchRangeSource(AsyncRangeSourceConformance):
    @pytest.fixture(params=["files", "noetag", "redirect"])
    def make_source(self, request):
        return lambda data: FetchRangeSource(
            f"{SERVER}/{request.param}/{publish(data)}", timeout=TIMEOUT
        )


@needs_file_reader_sync
class TestBlobRangeSource(RangeSourceConformance):
    @pytest.fixture(params=["blob", "file"])
    def make_source(self, request):
        name = "data.bin" if request.param == "file" else None
        return lambda data: BlobRangeSource(make_blob(data, name))


@needs_blob
class TestAsyncBlobRangeSource(AsyncRangeSourceConformance):
    @pytest.fixture(params=["blob", "file"])
    def make_source(self, request):
        name = "data.bin" if request.param == "file" else None
        return lambda data: AsyncBlobRangeSource(make_blob(data, name))
