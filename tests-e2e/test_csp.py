"""The Content-Security-Policy travels with the site: build.py puts the server's policy in
a ``<meta http-equiv>`` tag of every page, so a static host that sends no headers (nginx,
S3 as configured by most) still applies it."""

from __future__ import annotations

import html
import http.server
import os
import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    PYTHON_START_MS,
    TREE,
    Archives,
    close_viewer,
    deep_link,
    new_viewer,
)

META = re.compile(rb'<meta http-equiv="Content-Security-Policy" content="([^"]*)">')


def directives(policy: str) -> dict[str, str]:
    out = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            out[name] = value
    return out


def test_built_pages_carry_the_servers_policy_as_a_meta_tag(site: Path) -> None:
    from lockbox_server.site import SITE_CSP

    page = (site / "index.html").read_bytes()
    found = META.findall(page)
    assert len(found) == 1, found
    meta = directives(html.unescape(found[0].decode()))
    header = directives(SITE_CSP)
    # the same policy, less frame-ancestors (a meta policy ignores it: the header keeps it)
    assert "frame-ancestors" in header and "frame-ancestors" not in meta
    assert meta == {k: v for k, v in header.items() if k != "frame-ancestors"}
    # it comes before anything it governs
    head = page.split(b"</head>")[0]
    at = head.index(b"Content-Security-Policy")
    assert all(head.find(tag) > at for tag in (b"<script", b"<link"))


class _NoHeaders(http.server.SimpleHTTPRequestHandler):
    """A static host that sends no security headers, with the right types."""

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        name = os.fspath(path)
        if name.endswith(".wasm"):
            return "application/wasm"
        if name.endswith((".mjs", ".js")):
            return "text/javascript"
        return super().guess_type(path)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def headerless_site(site: Path) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_NoHeaders, directory=str(site)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# Records CSP violations of the page.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(e.effectiveDirective));
"""


def test_the_meta_policy_applies_on_a_host_without_headers(
        browser: Any, headerless_site: str, archives: Archives, request: Any) -> None:
    from lockbox_server import running

    v = new_viewer(browser, headerless_site)
    v.context.add_init_script(WATCH_VIOLATIONS)
    try:
        with running(archives.dir, allowed_origins=[headerless_site], timeout=15) as base:
            response = v.page.goto(f"{headerless_site}/")
            assert response is not None
            assert "content-security-policy" not in response.headers  # the meta alone
            url = f"{base.rstrip('/')}/archives/tree.lbox"
            v.page.goto(f"{headerless_site}/{deep_link(url, 'images/red.png')}")
            v.unlock()
            page = v.page
            img = page.wait_for_selector("img.media", timeout=PYTHON_START_MS)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
            assert page.get_attribute("img.media", "src").startswith("blob:")
            page.click('.crumb >> text="tree.lbox"')
            v.wait_listing("README.md")
            page.click('.row-item[data-name="README.md"]')
            page.wait_for_selector(".text-preview")
            assert page.text_content(".text-preview") == TREE["README.md"].decode()
            assert page.evaluate("window.__violations") == []  # the viewer needs no more
            # ...and an injected inline script is refused
            page.evaluate("""() => { const s = document.createElement("script");
                                     s.textContent = "window.__injected = 1";
                                     document.body.append(s); }""")
            page.wait_for_function("window.__violations.length > 0")
            assert page.evaluate("window.__injected") is None
            assert page.evaluate("window.__violations")[0].startswith("script-src")
    finally:
        close_viewer(v, request)
