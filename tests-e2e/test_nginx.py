"""Static hosting: Debian's nginx serves dist/site on one origin and the archives on
another (CORS); the same viewer opens, lists, previews and downloads."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    PASSWORD,
    PYTHON_START_MS,
    TREE,
    Archives,
    close_viewer,
    deep_link,
    new_viewer,
    sha256,
)

# The site: wasm as application/wasm (Pyodide hangs otherwise), .mjs as JavaScript, the
# same CSP as lockbox_server. The archives: Range (nginx's own), CORS for the site's
# origin with Content-Range/ETag exposed, the preflight answered, nothing compressed.
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp_body;
    proxy_temp_path {prefix}/tmp_proxy;
    fastcgi_temp_path {prefix}/tmp_fastcgi;
    uwsgi_temp_path {prefix}/tmp_uwsgi;
    scgi_temp_path {prefix}/tmp_scgi;
    types {{
        text/html html; text/css css; text/javascript js mjs; application/json json;
        application/wasm wasm; image/svg+xml svg; application/zip zip whl;
        application/octet-stream lbox bin;
    }}
    default_type application/octet-stream;
    gzip off;
    server {{
        listen 127.0.0.1:{site_port};
        root {site};
        location / {{
            add_header Content-Security-Policy "{csp}" always;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy no-referrer always;
        }}
    }}
    server {{
        listen 127.0.0.1:{archive_port};
        root {archives};
        location / {{
            if ($request_method = OPTIONS) {{
                add_header Access-Control-Allow-Origin "{origin}";
                add_header Access-Control-Allow-Methods "GET, HEAD";
                add_header Access-Control-Allow-Headers "Range, If-Match, If-Range";
                add_header Access-Control-Max-Age 86400;
                add_header Content-Length 0;
                return 204;
            }}
            add_header Access-Control-Allow-Origin "{origin}" always;
            add_header Access-Control-Expose-Headers
                       "Content-Range, Accept-Ranges, ETag, Content-Length" always;
            add_header Cache-Control "no-cache, no-transform" always;
            add_header Vary Origin always;
        }}
    }}
}}
"""


def _nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["update"], ["install", "-y", "--no-install-recommends", "nginx-light"]):
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args], env=env,
                           capture_output=True, timeout=600, check=False)
        if os.access("/usr/sbin/nginx", os.X_OK):
            return "/usr/sbin/nginx"
    pytest.skip("nginx is not installed and could not be (apt-get install nginx-light)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


@pytest.fixture(scope="module")
def nginx(site: Path, archives: Archives, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[str, str]]:
    from lockbox_server.site import SITE_CSP

    binary = _nginx()
    prefix = tmp_path_factory.mktemp("nginx")
    site_port, archive_port = _free_port(), _free_port()
    origin = f"http://127.0.0.1:{site_port}"
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        prefix=prefix, user="user root root;" if os.geteuid() == 0 else "",
        site_port=site_port, archive_port=archive_port, site=site, archives=archives.dir,
        origin=origin, csp=SITE_CSP))
    log = open(prefix / "stderr.log", "wb")
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e",
                             str(prefix / "error.log")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        for port in (site_port, archive_port):
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"nginx exited: {(prefix / 'error.log').read_text()[-500:]}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                              0.2):
                    break
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not listen in time")
                time.sleep(0.05)
        yield origin, f"http://127.0.0.1:{archive_port}"
    finally:
        _stop(proc)
        log.close()


def test_viewer_and_archives_on_nginx_cross_origin(browser: Any, nginx: tuple[str, str],
                                                   request: Any, tmp_path: Path) -> None:
    site, archive_origin = nginx
    url = f"{archive_origin}/tree.lbox"
    v = new_viewer(browser, site)
    try:
        v.goto(deep_link(url, "docs/guide.txt"))
        v.unlock(PASSWORD)
        page = v.page
        page.wait_for_selector(".text-preview", timeout=PYTHON_START_MS)
        assert page.text_content(".text-preview") == TREE["docs/guide.txt"].decode()
        page.click('.crumb >> text="tree.lbox"')
        v.wait_listing("images")
        page.click('.row-item[data-name="images"]')
        v.wait_listing("blue.png")
        page.click('.row-item[data-name="blue.png"]')
        img = page.wait_for_selector("img.media")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
        with page.expect_download() as info:
            page.click("#btn-download")
        target = tmp_path / "blue.png"
        info.value.save_as(target)
        assert sha256(target.read_bytes()) == sha256(TREE["images/blue.png"])
        # Range answers from nginx, and nothing but the two origins was asked
        got = v.archive_requests(url)
        assert got and all(r.status == 206 for r in got), [(r.status, r.failed) for r in got]
        assert v.origins() <= {site, archive_origin}, v.origins()
    finally:
        close_viewer(v, request)
