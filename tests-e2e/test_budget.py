"""The request budget of the 100,000-entry archive, counted from the browser's own request
log, and the lazy (virtual) rendering of a 50,000-entry folder."""

from __future__ import annotations

from conftest import PYTHON_START_MS, Archives, Viewer, sequential_round_trips

KiB = 1024


def test_open_unlock_list_root_of_100000_entries(viewer: Viewer, server: str,
                                                 archives: Archives) -> None:
    url = f"{server}/archives/big.lbox"
    viewer.goto()
    viewer.wait_python()  # Pyodide's own downloads are not part of the budget
    page = viewer.page
    mark = len(viewer.requests)
    viewer.open_url(url)
    viewer.unlock()
    viewer.wait_listing("d00")
    got = viewer.archive_requests(url, since=mark)
    # every request the page made since the mark went to the archive (icon aside)
    others = [r.url for r in viewer.requests[mark:] if r.url != url and "icon" not in r.url]
    assert not others, others
    assert all(r.status == 206 for r in got), [(r.status, r.failed) for r in got]
    assert sequential_round_trips(got) <= 2, [(r.headers.get("range"), r.start_ms) for r in got]
    fetched = sum(r.body_bytes for r in got)
    assert 0 < fetched <= 64 * KiB, fetched
    assert "51 folders, 1 file" in page.text_content("#summary")
    # the viewer's network panel tells the same story
    page.click("#btn-net")
    page.wait_for_selector("#dlg-net[open] #net-log tbody tr")
    stats = page.text_content("#net-stats")
    assert f"{fetched:,} bytes" in stats, stats
    page.click("#dlg-net .dlg-close")

    # a 50,000-entry folder: the list renders only what is in view
    page.fill("#filter", "flat")
    page.click('.row-item[data-name="flat"]')
    page.wait_for_selector('.row-item[data-name="item00000.txt"]', timeout=PYTHON_START_MS)
    total = archives.big_entries - 50 * 1000 - 1
    assert f"{total:,} files" in page.text_content("#summary")
    assert page.locator(".row-item").count() < 100
    page.focus("#list")
    page.keyboard.press("End")
    last = f"item{total - 1:05d}.txt"
    page.wait_for_selector(f'.row-item[data-name="{last}"]')
    assert page.locator(".row-item").count() < 100
    assert page.get_attribute(f'.row-item[data-name="{last}"]', "aria-posinset") == f"{total}"
    page.fill("#filter", "item4999")
    page.wait_for_selector('.row-item[data-name="item49990.txt"]')
    assert page.text_content("#summary").startswith(f"9 of {total:,} match")
    page.click('.row-item[data-name="item49993.txt"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "49993\n"
    assert viewer.origins() <= {server}
