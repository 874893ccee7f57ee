"""Clear messages, never a dead page: what the viewer says when an archive cannot be read."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    PYTHON_START_MS,
    Archives,
    Viewer,
    close_viewer,
    deep_link,
    new_viewer,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """A static server without Range support (http.server answers 200 to every GET).
    ``/cors/NAME`` sends CORS headers (so the page can see the 200); ``/nocors/NAME``
    does not (the browser blocks the answer)."""

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].rsplit("/", 1)[-1]
        return str(Path(self.directory) / name)

    def end_headers(self) -> None:
        if self.path.startswith("/cors/"):
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "Range, If-Match")
            self.send_header("Access-Control-Expose-Headers", "Content-Range, ETag, Content-Length")
        super().end_headers()

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def plain_server(archives: Archives) -> Iterator[str]:
    handler = partial(_Handler, directory=str(archives.dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


class _WrongWasmType(http.server.SimpleHTTPRequestHandler):
    """A static host that serves .wasm as application/octet-stream (Pyodide would hang)."""

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        name = os.fspath(path)
        if name.endswith(".wasm"):
            return "application/octet-stream"
        if name.endswith((".mjs", ".js")):
            return "text/javascript"
        return super().guess_type(path)

    def log_message(self, *args: object) -> None:
        pass


def test_wasm_served_with_the_wrong_type_fails_clearly(browser: Any, site: Path,
                                                        request: Any) -> None:
    handler = partial(_WrongWasmType, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    v = new_viewer(browser, f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        v.goto()
        page = v.page
        page.wait_for_selector("html[data-python=failed]", state="attached", timeout=60_000)
        assert page.text_content("#alert-title") == "The viewer could not start Python"
        assert "application/wasm" in page.text_content("#alert-detail")
        assert page.is_visible("#alert-action")  # "Reload the page"
    finally:
        close_viewer(v, request)
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def open_and_read_alert(viewer: Viewer, url: str) -> tuple[str, str]:
    viewer.goto(deep_link(url))
    page = viewer.page
    page.wait_for_selector("#alert:visible", timeout=PYTHON_START_MS)
    assert page.is_visible("#view-open")  # back on the open form, ready for another try
    return page.text_content("#alert-title"), page.text_content("#alert-message")


def test_not_an_archive(viewer: Viewer, server: str) -> None:
    title, message = open_and_read_alert(viewer, f"{server}/archives/not-an-archive.lbox")
    assert title == "Not an archive lockbox can read"
    assert "not a .lbox, .uri or .sync archive" in message
    assert "it looks like a ZIP archive" in message
    # the page still works: open a real one next
    viewer.open_url(f"{server}/archives/tree.lbox")
    viewer.unlock()
    viewer.wait_listing("docs")
    assert viewer.page.is_hidden("#alert")


def test_missing_archive(viewer: Viewer, server: str) -> None:
    title, message = open_and_read_alert(viewer, f"{server}/archives/missing.lbox")
    assert title == "The archive is not available"
    assert "404" in message


def test_server_without_range_support(viewer: Viewer, server: str, plain_server: str) -> None:
    title, message = open_and_read_alert(viewer, f"{plain_server}/cors/tree.lbox")
    assert title == "The server does not support Range requests"
    assert "206" in message
    assert viewer.origins() <= {server, plain_server}


def test_cors_refusal(viewer: Viewer, server: str, plain_server: str) -> None:
    title, message = open_and_read_alert(viewer, f"{plain_server}/nocors/tree.lbox")
    assert title == "Could not reach the archive"
    assert "CORS" in message and "Access-Control-Allow-Origin" in message
    assert viewer.origins() <= {server, plain_server}
