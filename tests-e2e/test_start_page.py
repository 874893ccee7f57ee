"""The start page lists the archives of the server it comes from (``/api/archives``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import lockbox
from conftest import PYTHON_START_MS, Archives, Viewer
from lockbox.platform import default_crypto


def served_names(archives: Archives) -> list[str]:
    return sorted(p.name for p in archives.dir.iterdir()
                  if p.is_file() and not p.is_symlink() and not p.name.startswith("."))


def click_served(page: Any, name: str) -> None:
    page.locator("#served-list a").filter(has_text=name).first.click()


def test_start_page_lists_and_opens_served_archives(viewer: Viewer, server: str,
                                                    archives: Archives, tmp_path: Path) -> None:
    viewer.goto()
    page = viewer.page
    page.wait_for_selector("#served[data-state=listed]", state="attached")
    assert page.is_visible("#served")
    links = page.locator("#served-list a")
    names = served_names(archives)
    assert links.all_text_contents() == names
    assert [links.nth(i).get_attribute("data-url") for i in range(len(names))] == [
        f"{server}/archives/{quote(n, safe='')}" for n in names]
    assert page.is_hidden("#served-more")

    # one click: the password prompt of that archive
    click_served(page, "tree.lbox")
    page.wait_for_selector("#password:visible", timeout=PYTHON_START_MS)
    assert page.text_content("#unlock-name") == "tree.lbox"
    assert quote(f"{server}/archives/tree.lbox", safe="") in page.url  # a deep link now
    viewer.unlock("not the password")
    page.wait_for_selector("#unlock-error:visible")
    assert page.text_content("#unlock-error").startswith("Wrong password: ")

    # an identity file that opens nothing is not called a wrong password
    other = lockbox.Identity.generate(default_crypto())
    wrong = tmp_path / "other.identity"
    wrong.write_text(f"{other.encode()}\n")
    page.click("#btn-unlock-back")
    page.wait_for_selector("#view-open:visible")
    click_served(page, "recipient.lbox")
    page.wait_for_selector("#btn-identity:visible", timeout=PYTHON_START_MS)
    page.set_input_files("#identity", str(wrong))
    page.wait_for_selector("#unlock-error:visible")
    text = page.text_content("#unlock-error")
    assert text.startswith("Wrong identity file: ") and "Wrong password" not in text
    page.set_input_files("#identity", str(archives.identity_file))
    viewer.wait_listing("for-you.txt")


def test_start_page_without_a_listing_shows_nothing(viewer: Viewer) -> None:
    page = viewer.page
    page.route("**/api/archives", lambda route: route.fulfill(status=404, body="not found"))
    viewer.goto()
    page.wait_for_selector("#served[data-state=unavailable]", state="attached")
    assert page.is_hidden("#served") and page.locator("#served-list li").count() == 0


def test_start_page_listing_names_are_text(viewer: Viewer, server: str) -> None:
    hostile = "<img src=x id=injected>.lbox"
    body = {"archives": [
        {"name": hostile, "url": "/archives/" + quote(hostile, safe=""), "size": 1,
         "mtime": "2024-01-01T00:00:00Z"},
        {"name": "elsewhere.lbox", "url": "https://elsewhere.example/a.lbox"},  # dropped
        {"name": 5, "url": "/archives/x"},  # not a name: dropped
    ], "total": 7, "limit": 3, "truncated": True}
    page = viewer.page
    page.route("**/api/archives", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(body)))
    viewer.goto()
    page.wait_for_selector("#served[data-state=listed]", state="attached")
    assert page.locator("#served-list a").all_text_contents() == [hostile]
    assert page.locator("#injected").count() == 0
    assert page.locator("#served-list a").get_attribute("data-url") == (
        f"{server}/archives/{quote(hostile, safe='')}")
    assert "6 more" in page.text_content("#served-more")
