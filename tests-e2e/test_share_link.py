"""Share links in the viewer (issue 13 §1, docs/FORMAT.md §17.8): the link printed by the
real ``lockbox share`` opens and lists the archive in one navigation, with no prompt; its
key is taken out of the address bar at once and reaches no server (no request URL, header
or body the browser sends, nothing in the server's access log); a revoked link gets the
"wrong key" message and a damaged key its one-line message, each on the password form.

The browser tests run their own server (``lockbox_server.running`` with its access log on)
over their own archives, since they add and remove key slots. The first tests drive
``lockbox.viewer.session.Session`` on CPython (fast): what the page relies on."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import lockbox
from conftest import (
    PASSWORD,
    PYTHON_START_MS,
    ROOT,
    TIMEOUT_MS,
    Viewer,
    close_viewer,
    new_viewer,
    write_tree,
)
from lockbox.formats.lbox.keys import LinkSecret
from lockbox.sources import AsyncFileSource
from lockbox.viewer.session import Session

FILES = {"hello.txt": b"hello from a share link\n", "docs/a.md": b"# a\n"}
ROOT_NAMES = ["docs", "hello.txt", "latest-guide"]  # folders first; write_tree adds a symlink


def run(coro: Any) -> Any:
    """asyncio.run in a thread of its own (Playwright's sync API keeps a loop running in
    the main thread), bounded."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result(90)


def add_link(path: Path) -> tuple[LinkSecret, int]:
    """A link slot added as ``lockbox share`` adds it (for the fast tests)."""
    with lockbox.open(path, password=PASSWORD) as box:
        secret = LinkSecret.generate(box.crypto)
        with box.writer() as w:
            slot_id = w.keys.add_link(w.crypto, w.view.archive_id, w.content_key, secret)
    return secret, slot_id


def forms(secret: str) -> list[str]:
    """Every form of a link key worth looking for: its text, its base64url body, the 32
    bytes in standard base64 and hex."""
    raw = LinkSecret.parse(secret).secret
    return [secret, secret[len("lbk1-"):], base64.b64encode(raw).decode().rstrip("="),
            raw.hex()]


# ----------------------------------------------------------------------------- Session (CPython)


async def probe(path: Path) -> Session:
    s = Session()
    await s.open_source(AsyncFileSource(path), location=str(path), name=path.name, kind="file")
    return s


async def call(s: Session, method: str, **args: Any) -> tuple[dict[str, Any], str]:
    text = await s.call(method, json.dumps(args))
    return json.loads(text), text


def test_session_unlocks_with_a_link_key(tmp_path: Path) -> None:
    path = tmp_path / "a.lbox"
    write_tree(path, files=FILES)
    secret, slot_id = add_link(path)

    async def go() -> None:
        s = await probe(path)
        out, _ = await call(s, "unlock", link=secret.text())
        info = out["ok"]
        assert info["lbox"]["unlocked_with"] == "link"
        assert info["lbox"]["unlocked_slot"] == slot_id
        assert (await call(s, "ls", path=""))[0]["ok"]["names"] == ROOT_NAMES
        await s.close()

    run(go())


def test_session_refuses_a_wrong_or_damaged_key_without_repeating_it(tmp_path: Path) -> None:
    path = tmp_path / "a.lbox"
    write_tree(path, files=FILES)
    add_link(path)
    other = LinkSecret(bytes(range(32))).text()  # a well-formed key of no slot
    body = other[len("lbk1-"):]
    damaged = [other[:-1] + "!", other[:-1], "lbk1-" + body[:20] + "." + body[21:],
               other + "=", "LBK1-" + body, other[:-1] + "B"]  # last: non-canonical

    async def go() -> None:
        s = await probe(path)
        out, text = await call(s, "unlock", link=other)
        err = out["error"]
        assert (err["kind"], err["title"]) == ("wrong_key", "Wrong key")
        assert "link's key does not open the archive" in err["message"]
        assert "revoked" in err["message"]
        assert not any(f in text for f in forms(other))
        for bad in damaged:
            out, text = await call(s, "unlock", link=bad)
            err = out["error"]
            assert (err["kind"], err["title"]) == ("usage", "Not a valid share link"), bad
            assert "\n" not in err["message"] and "damaged" in err["message"]
            assert body[:16] not in text and body[-16:] not in text, bad
        # the password still opens it (the form the page falls back to)
        out, _ = await call(s, "unlock", password=PASSWORD)
        assert out["ok"]["lbox"]["unlocked_with"] == "password"
        await s.close()

    run(go())


def test_session_after_revocation_no_link_slot(tmp_path: Path) -> None:
    path = tmp_path / "a.lbox"
    write_tree(path, files=FILES)
    secret, slot_id = add_link(path)
    with lockbox.open(path, password=PASSWORD) as box, box.writer() as w:
        w.remove_slot(slot_id)

    async def go() -> None:
        s = await probe(path)
        out, text = await call(s, "unlock", link=secret.text())
        assert out["error"]["kind"] == "wrong_key"
        assert "revoked" in out["error"]["message"]
        assert "no link slot" in out["error"]["detail"]
        assert not any(f in text for f in forms(secret.text()))
        await s.close()

    run(go())


# ----------------------------------------------------------------------------- the browser


@dataclass
class Served:
    """The test server (viewer + archives) and what it logged."""

    dir: Path
    base: str
    log: list[str] = field(default_factory=list)

    @property
    def viewer(self) -> str:
        return f"{self.base}/"


class _Collect(logging.Handler):
    def __init__(self, out: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.append(record.getMessage())
        except Exception:  # a record that does not format: keep its parts
            self.out.append(f"{record.msg!r} {record.args!r}")


LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "lockbox_server")


@pytest.fixture(scope="module")
def served(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server of its own, with its access log (log level debug) collected here."""
    from lockbox_server import running

    d = tmp_path_factory.mktemp("shared")
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    with running(d, site_dir=site, timeout=15, log_level="debug") as url:
        s = Served(d, url.rstrip("/"))
        handler = _Collect(s.log)
        for name in LOGGERS:  # after the server configured its logging
            logging.getLogger(name).addHandler(handler)
        try:
            yield s
        finally:
            for name in LOGGERS:
                logging.getLogger(name).removeHandler(handler)
                logging.getLogger(name).setLevel(levels[name])  # the other servers' level


def lockbox_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it (the password from LOCKBOX_PASSWORD)."""
    env = {**os.environ, "LOCKBOX_PASSWORD": PASSWORD}
    for name in ("LOCKBOX_VIEWER_URL", "LOCKBOX_IDENTITY", "LOCKBOX_DEBUG"):
        env.pop(name, None)
    r = subprocess.run([sys.executable, "-m", "lockbox", *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def share(served: Served, name: str) -> tuple[str, str, int]:
    """(link, key, slot id) of a new share link to ``name`` (written if missing)."""
    path = served.dir / name
    if not path.exists():
        write_tree(path, files=FILES)
    out = json.loads(lockbox_cli("share", str(path), "--viewer", served.viewer, "--json").stdout)
    link = out["link"]
    assert link.startswith(served.viewer + "#url=")
    frag = {k: v[0] for k, v in parse_qs(urlsplit(link).fragment, strict_parsing=True).items()}
    assert frag["url"] == f"{served.base}/archives/{name}"
    return link, frag["key"], int(out["slot_id"])


# The views the page went through (the unlock form must never show for a working link),
# and the address when the page's scripts have run (module scripts run before
# DOMContentLoaded): the key must be gone by then, long before the archive is opened.
RECORD_VIEWS = """
window.__views = [];
document.addEventListener("DOMContentLoaded", () => { window.__hrefAtLoad = location.href; });
new MutationObserver(() => {
  const v = document.body && document.body.dataset.view;
  if (v && window.__views[window.__views.length - 1] !== v) window.__views.push(v);
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-view"] });
"""


class Watched:
    """A viewer whose every request (URL, all headers, body) is kept for the leak check."""

    def __init__(self, browser: Any, served: Served) -> None:
        self.v: Viewer = new_viewer(browser, served.base)
        self.raw: list[Any] = []
        self.finished: set[int] = set()
        self.v.context.on("request", lambda r: self.raw.append(r))
        self.v.context.on("requestfinished", lambda r: self.finished.add(id(r)))
        self.v.context.add_init_script(RECORD_VIEWS)

    @property
    def page(self) -> Any:
        return self.v.page

    def sent(self) -> list[str]:
        """Everything the browser sent: each request's method and URL, every header
        (Chromium's raw headers for requests that completed, Referer included), its body."""
        out = []
        for r in self.raw:
            headers = dict(r.headers)
            if id(r) in self.finished:
                headers.update(r.all_headers())
            body = r.post_data_buffer or b""
            out.append(f"{r.method} {r.url}\n"
                       + "".join(f"{k}: {v}\n" for k, v in headers.items())
                       + "\n" + body.decode("latin-1"))
        return out

    def assert_never_sent(self, served: Served, key: str, *texts: str) -> None:
        """Neither ``key`` (in any of its forms) nor ``texts`` in a request the browser
        sent, the server's log, the console or the address bar; no Referer at all."""
        sent = self.sent()
        assert sent, "no request was recorded"
        referers = [line for r in sent for line in r.lower().splitlines()
                    if line.startswith("referer:") and line != "referer: "]
        assert not referers, referers  # an empty one is Chromium's placeholder
        for form in [*forms(key), *texts]:
            assert not [r for r in sent if form in r], f"{form[:9]}… sent in a request"
            assert not [line for line in served.log if form in line], "in the server log"
            assert not [c for c in self.v.console if form in c], "in the console"
        assert not self.key_in_address_bar(key, *texts)

    def key_in_address_bar(self, *keys: str) -> bool:
        url = " ".join([self.page.url, *self.page.evaluate(
            "[location.href, window.__hrefAtLoad || '']")])
        return "key=" in url or any(key.removeprefix("lbk1-") in url for key in keys)


def wait_unlock_error(page: Any) -> str:
    page.wait_for_selector("#unlock-error:visible", timeout=PYTHON_START_MS)
    return page.text_content("#unlock-error")


def test_link_opens_and_lists_in_one_navigation_and_its_key_reaches_no_server(
        browser: Any, served: Served, request: Any) -> None:
    link, key, _ = share(served, "shared.lbox")
    w = Watched(browser, served)
    page = w.page
    try:
        before = len(served.log)
        page.goto(link)
        page.wait_for_selector('.row-item[data-name="hello.txt"]', timeout=PYTHON_START_MS)
        assert w.v.names() == ROOT_NAMES
        assert page.get_attribute("body", "data-share-link") == "opened"
        assert "unlock" not in page.evaluate("window.__views"), page.evaluate("window.__views")
        assert page.is_hidden("#view-unlock")
        # the address bar keeps the archive (a deep link), not the key
        assert not w.key_in_address_bar(key)
        hash_ = page.evaluate("location.hash")
        assert "url=" in hash_ and "key" not in hash_
        # the archive panel says what unlocked it
        page.click("#btn-info")
        page.wait_for_selector("#dlg-info[open]")
        assert "used to unlock" in page.text_content("#info-slots li.used")
        assert "link" in page.text_content("#info-slots li.used")
        page.click("#dlg-info .dlg-close")
        # a file preview, and the hash that follows it, still without the key
        page.click('.row-item[data-name="hello.txt"]')
        page.wait_for_selector(".text-preview")
        assert page.text_content(".text-preview") == FILES["hello.txt"].decode()
        assert "path=hello.txt" in page.evaluate("location.hash")
        assert not w.key_in_address_bar(key)
        # history: away and back and forth, the key never comes back
        page.goto(f"{served.base}/manifest.json")
        page.go_back()  # the viewer again (reloaded: no key, so the password form)
        page.wait_for_selector("#view-unlock:visible, #view-browse:visible",
                               timeout=PYTHON_START_MS)
        assert not w.key_in_address_bar(key)
        page.go_forward()
        page.go_back()
        page.wait_for_selector("#view-unlock:visible, #view-browse:visible",
                               timeout=PYTHON_START_MS)
        assert not w.key_in_address_bar(key)
        assert key[5:] not in page.content()
        # the server saw the archive fetched (so the log check below can fail)...
        assert any("/archives/shared.lbox" in line for line in served.log[before:]), \
            served.log[before:][-5:]
        # ...and the key nowhere: no URL, header (no Referer at all) or body, the worker's
        # requests included (they are in the capture: the archive's Range requests)
        assert any(r.startswith(f"GET {served.base}/archives/shared.lbox\n") and
                   "\nrange: bytes=" in r for r in w.sent())
        w.assert_never_sent(served, key)
    finally:
        close_viewer(w.v, request)


def test_revoked_link_gets_wrong_key_and_the_password_form(
        browser: Any, served: Served, request: Any) -> None:
    link, key, slot_id = share(served, "revoked.lbox")
    r = lockbox_cli("keys", "rm", str(served.dir / "revoked.lbox"), str(slot_id))
    assert f"removed key slot {slot_id}" in r.stdout
    w = Watched(browser, served)
    page = w.page
    try:
        page.goto(link)
        text = wait_unlock_error(page)
        assert text.startswith("Wrong key: ") and "revoked" in text, text
        assert "does not open the archive" in text and "password" in text
        assert page.get_attribute("body", "data-share-link") == "refused"
        assert page.is_visible("#password")  # the archive's other way in
        assert not w.key_in_address_bar(key)
        w.v.unlock()
        w.v.wait_listing("hello.txt")
        w.assert_never_sent(served, key)
    finally:
        close_viewer(w.v, request)


def test_damaged_key_gets_one_line_and_a_pasted_link_opens(
        browser: Any, served: Served, request: Any) -> None:
    link, key, _ = share(served, "damaged.lbox")
    bad_key = key[:20] + "!" + key[21:]  # a character outside base64url
    bad_link = link.replace(key, bad_key)
    w = Watched(browser, served)
    page = w.page
    try:
        page.goto(bad_link)
        text = wait_unlock_error(page)
        assert text.startswith("Not a valid share link: ") and "\n" not in text, text
        assert page.get_attribute("body", "data-share-link") == "invalid"
        assert page.is_visible("#password")
        assert not w.key_in_address_bar(bad_key)
        # a fragment with a key but no archive URL: its own message, the key gone at once
        page.evaluate("k => { location.hash = 'key=' + k; }", key)
        page.wait_for_selector("#alert:visible")
        assert page.text_content("#alert-title") == "Not a complete share link"
        page.wait_for_function("() => !location.hash.includes('key')", timeout=TIMEOUT_MS)
        # the right link pasted into the address bar (hashchange): opened, no prompt
        page.evaluate("h => { location.hash = h; }", urlsplit(link).fragment)
        page.wait_for_selector('.row-item[data-name="hello.txt"]', timeout=PYTHON_START_MS)
        assert page.get_attribute("body", "data-share-link") == "opened"
        assert not w.key_in_address_bar(key)
        # the whole link pasted into the URL field: the same; the field keeps the archive's
        # URL only
        page.click("#btn-close")
        page.wait_for_selector("#view-open:visible")
        page.evaluate("() => { window.__views = []; }")
        w.v.open_url(link)
        page.wait_for_selector('#view-browse:visible .row-item[data-name="hello.txt"]',
                               timeout=PYTHON_START_MS)
        assert "unlock" not in page.evaluate("window.__views")
        assert page.input_value("#url") == f"{served.base}/archives/damaged.lbox"
        assert not w.key_in_address_bar(key)
        w.assert_never_sent(served, key, bad_key, bad_key[5:])
    finally:
        close_viewer(w.v, request)
