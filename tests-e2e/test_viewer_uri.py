""".uri archives in the viewer: no password step, a listing streamed in as the walk reads
it, previews (checked, or said to be unchecked), downloads and folder zips, by URL and by
a dropped file."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    PYTHON_START_MS,
    SYMLINKS,
    TREE,
    Archives,
    Viewer,
    deep_link,
    sequential_round_trips,
    sha256,
)
from lockbox.formats.uri import write_uri

MANY = 1000  # files at the root of many.uri
LARGE = 6 * 1024 * 1024  # large.txt in large.uri: over the viewer's CHECKED_PREVIEW_MAX
DAMAGED = "docs/guide.txt"  # its data is damaged in corrupt.uri


def many_name(i: int) -> str:
    return f"file{i:04d}.txt"


def many_data(i: int) -> bytes:
    return b"entry %d of many.uri\n" % i


def large_data() -> bytes:
    line = b"".join(b"%07d large line of text in one big file\n" % i for i in range(1000))
    return (line * (LARGE // len(line) + 1))[:LARGE]


def write_dir(root: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    for name, target in (links or {}).items():
        os.symlink(target, root / name)


@pytest.fixture(scope="module")
def uri_archives(archives: Archives, tmp_path_factory: pytest.TempPathFactory) -> Archives:
    """tree.uri (TREE and its symlink), many.uri (MANY files at the root), large.uri (one
    file over the checked-preview bound) and corrupt.uri (tree.uri with a damaged file)."""
    src = tmp_path_factory.mktemp("uri-sources")
    write_dir(src / "tree", TREE, SYMLINKS)
    write_dir(src / "many", {many_name(i): many_data(i) for i in range(MANY)})
    write_dir(src / "large", {"large.txt": large_data(), "small.txt": b"small\n"})
    for name in ("tree", "many", "large"):
        write_uri(archives.path(f"{name}.uri"), src / name, overwrite=True)
    data = bytearray(archives.path("tree.uri").read_bytes())
    at = data.find(TREE[DAMAGED][:200])
    assert at > 0
    data[at + 100] ^= 0x5A
    archives.path("corrupt.uri").write_bytes(bytes(data))
    for name in ("tree", "many", "large", "corrupt"):
        archives.path(f"{name}.uri").chmod(0o644)
    archives.sources["tree.uri"] = TREE
    return archives


# Records (summary text, rows drawn) whenever the listing changes: a streamed listing shows
# rows before the walk has ended.
WATCH_LISTING = """
window.__listing = [];
document.addEventListener("DOMContentLoaded", () => {
  const record = () => window.__listing.push([
    document.getElementById("summary").textContent,
    document.querySelectorAll(".row-item").length,
    document.body.dataset.walk || ""]);
  const watch = new MutationObserver(record);
  watch.observe(document.getElementById("summary"),
                { childList: true, characterData: true, subtree: true });
  watch.observe(document.getElementById("list"), { childList: true });
});
"""


def net_figures(viewer: Viewer) -> dict[str, str]:
    """The network panel's facts, by label."""
    page = viewer.page
    page.click("#btn-net")
    page.wait_for_selector("#dlg-net[open] #net-log tbody tr")
    labels = page.eval_on_selector_all("#net-stats dt", "els => els.map(e => e.textContent)")
    values = page.eval_on_selector_all("#net-stats dd", "els => els.map(e => e.textContent)")
    page.click("#dlg-net .dlg-close")
    return dict(zip(labels, values))


def test_uri_by_url_streams_its_listing_previews_and_downloads(
        viewer: Viewer, server: str, uri_archives: Archives, tmp_path: Path) -> None:
    url = f"{server}/archives/many.uri"
    viewer.context.add_init_script(WATCH_LISTING)
    viewer.goto()
    viewer.wait_python()
    page = viewer.page
    mark = len(viewer.requests)
    viewer.open_url(url)
    page.wait_for_selector('body[data-walk="done"]', timeout=PYTHON_START_MS)
    viewer.wait_listing(many_name(0))
    assert page.is_hidden("#view-unlock")  # not encrypted: no password step
    assert page.is_hidden("#btn-env")
    assert viewer.all_names() == [many_name(i) for i in range(MANY)]
    assert page.text_content("#summary").startswith(f"{MANY:,} files (")  # and no "so far"
    assert "so far" not in page.text_content("#summary")
    # the listing was drawn while the walk was still reading
    seen: list[list[Any]] = page.evaluate("window.__listing")
    partial = [s for s in seen if "so far" in s[0] and s[1] > 0 and s[2] == "running"]
    assert partial, seen[-10:]
    # its round trips, from the browser's log and from the network panel
    got = viewer.archive_requests(url, since=mark)
    assert got and all(r.status == 206 for r in got), [(r.status, r.failed) for r in got]
    figures = net_figures(viewer)
    trips = int(figures["Round trips"])
    print(f"\n[e2e] {MANY}-entry .uri: open + streamed listing = {trips} round trips, "
          f"{figures['Bytes fetched']} fetched (browser: {len(got)} requests, "
          f"{sequential_round_trips(got)} sequential)")
    assert trips == len(got) and sequential_round_trips(got) <= 6, figures
    # a text file: previewed (checked), then downloaded from the preview, byte for byte
    viewer.click_row(many_name(123))
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == many_data(123).decode()
    assert page.locator(".unchecked").count() == 0
    mark = len(viewer.requests)
    with page.expect_download() as info:
        page.click("#btn-download")
    assert Path(info.value.path()).read_bytes() == many_data(123)
    assert viewer.archive_requests(url, since=mark) == []
    # the reader's index (built for the preview) came from the ranges the walk read
    again = net_figures(viewer)
    assert int(again["Round trips"]) == trips, again
    assert again["Reused, not fetched again"], again
    # the other archive: a binary file downloaded through the worker, and a folder as .zip
    page.goto(f"{server}/{deep_link(f'{server}/archives/tree.uri', 'data/random.bin')}")
    page.wait_for_selector("pre.hex", timeout=PYTHON_START_MS)
    with page.expect_download() as info:
        page.click("#btn-download")
    assert info.value.suggested_filename == "random.bin"
    assert sha256(Path(info.value.path()).read_bytes()) == sha256(TREE["data/random.bin"])
    page.click('.crumb >> text="tree.uri"')
    viewer.wait_listing("docs")
    page.click('.row-item[data-name="docs"]')
    viewer.wait_listing("guide.txt")
    with page.expect_download() as info:
        page.click("#btn-zip")
    assert info.value.suggested_filename == "docs.zip"
    with zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes())) as z:
        assert z.testzip() is None
        got_files = {n[len("docs/"):]: z.read(n) for n in z.namelist() if not n.endswith("/")}
    assert got_files == {p[len("docs/"):]: d for p, d in TREE.items() if p.startswith("docs/")}
    # the archive panel says what it is
    page.click("#btn-info")
    page.wait_for_selector("#dlg-info[open]")
    info_text = page.text_content("#dlg-info")
    assert "uri archive" in info_text and "CRC-32" in info_text
    assert page.is_hidden("#info-slots-title")
    assert viewer.origins() <= {server}
    assert not [c for c in viewer.console if c.startswith(("pageerror", "error"))], viewer.console


def test_dropped_uri_file(viewer: Viewer, server: str, uri_archives: Archives) -> None:
    viewer.goto()
    viewer.wait_python()
    page = viewer.page
    data = uri_archives.path("tree.uri").read_bytes()
    transfer = page.evaluate_handle(
        """(bytes) => { const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array(bytes)], "tree.uri"));
             return dt; }""", list(data))
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    viewer.wait_listing("docs")
    page.wait_for_selector('body[data-walk="done"]')
    assert page.is_hidden("#view-unlock")
    names = viewer.names()
    assert names[:4] == ["data", "docs", "images", "media"]
    assert set(names) == {p.split("/")[0] for p in [*TREE, *SYMLINKS]}
    page.click('.row-item[data-name="docs"]')
    viewer.wait_listing("guide.txt")
    viewer.click_row("guide.txt")
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == TREE["docs/guide.txt"].decode()
    page.click('.crumb >> text="tree.uri"')
    viewer.wait_listing("images")
    page.click('.row-item[data-name="images"]')
    viewer.wait_listing("red.png")
    page.click('.row-item[data-name="red.png"]')
    img = page.wait_for_selector("img.media")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [64, 48]
    # nothing of the archive went over the network
    assert not [r for r in viewer.requests if "/archives/" in r.url]
    assert viewer.origins() <= {server}


def test_partial_preview_of_a_large_uri_file_says_it_is_unchecked(
        viewer: Viewer, server: str, uri_archives: Archives) -> None:
    url = f"{server}/archives/large.uri"
    viewer.goto(deep_link(url, "large.txt"))
    page = viewer.page
    page.wait_for_selector(".text-preview", timeout=PYTHON_START_MS)
    want = large_data()
    assert page.text_content(".text-preview") == want[:256 * 1024].decode()
    assert "Not checked yet" in page.text_content(".unchecked")
    fetched = sum(r.body_bytes for r in viewer.archive_requests(url))
    assert fetched < LARGE // 2, fetched  # the preview did not read the whole file
    with page.expect_download() as info:
        page.click("#btn-download")
    assert sha256(Path(info.value.path()).read_bytes()) == sha256(want)
    page.wait_for_selector('.transfer[data-name="large.txt"][data-state="done"]')
    # a small file of the same archive is read whole: checked, no note
    viewer.click_row("small.txt")
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "small\n"
    assert page.locator(".unchecked").count() == 0


def test_damaged_uri_file_is_named_and_the_rest_opens(viewer: Viewer, server: str,
                                                      uri_archives: Archives) -> None:
    viewer.goto(deep_link(f"{server}/archives/corrupt.uri", DAMAGED))
    page = viewer.page
    err = page.wait_for_selector(".preview-error", timeout=PYTHON_START_MS)
    text = err.text_content()
    assert DAMAGED in text and "checksum" in text
    page.click('.row-item[data-name="deep"]')
    viewer.wait_listing("nested")
    page.click('.row-item[data-name="nested"]')
    viewer.wait_listing("note.md")
    page.click('.row-item[data-name="note.md"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "deep note\n"
