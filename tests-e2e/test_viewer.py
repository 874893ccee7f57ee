"""The viewer in Chromium against the real server: open, unlock, browse, preview, download."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

import lockbox
from conftest import (
    CORRUPT_FILE,
    ENV,
    PASSWORD,
    PYTHON_START_MS,
    SYMLINKS,
    TREE,
    WEAK,
    Archives,
    Request,
    Viewer,
    deep_link,
    quote_css,
    sequential_round_trips,
    sha256,
    write_tree,
)


def children(tree: dict[str, bytes], folder: str) -> set[str]:
    prefix = f"{folder}/" if folder else ""
    out = set()
    for path in [*tree, *SYMLINKS]:
        if path.startswith(prefix):
            out.add(path[len(prefix):].split("/", 1)[0])
    return out


def only_local(viewer: Viewer, server: str) -> None:
    assert viewer.origins() <= {server}, viewer.origins()


def test_open_by_url_password_listing_matches_source(viewer: Viewer, server: str) -> None:
    url = f"{server}/archives/tree.lbox"
    viewer.goto()
    viewer.open_url(url)
    viewer.unlock()
    viewer.wait_listing("docs")
    page = viewer.page
    assert set(viewer.names()) == children(TREE, "")
    # folders first, then files, each by name
    names = viewer.names()
    folders = sorted(children(TREE, "") & {p.split("/")[0] for p in TREE if "/" in p})
    assert names[:len(folders)] == folders
    assert "4 folders" in page.text_content("#summary")
    # into a folder and deeper (breadcrumbs), then back with the crumb
    page.click('.row-item[data-name="docs"]')
    viewer.wait_listing("deep")
    assert set(viewer.names()) == children(TREE, "docs")
    page.click('.row-item[data-name="deep"]')
    viewer.wait_listing("nested")
    assert page.locator(".crumb").all_text_contents() == ["tree.lbox", "docs", "deep"]
    page.click('.crumb >> text="tree.lbox"')
    viewer.wait_listing("README.md")
    # sizes and dates shown
    row = page.locator('.row-item[data-name="README.md"]')
    assert f"{len(TREE['README.md'])} B" in row.text_content()
    assert "2023" in row.text_content()
    # keyboard: the listbox moves with the arrows and opens with Enter
    page.focus("#list")
    page.keyboard.press("Home")
    page.keyboard.press("Enter")
    viewer.wait_listing("random.bin")  # "data" is the first row
    page.keyboard.press("Backspace")
    viewer.wait_listing("README.md")
    # archive info, env (secret until revealed) and network panels
    page.click("#btn-info")
    page.wait_for_selector("#dlg-info[open]")
    info = page.text_content("#dlg-info")
    assert "Generation" in info and "password" in info and "used to unlock" in info
    page.click("#dlg-info .dlg-close")
    page.click("#btn-env")
    page.wait_for_selector('#dlg-env[open] #env-list li[data-name="API_TOKEN"]')
    secret = page.locator('#env-list li[data-name="API_TOKEN"] .secret')
    assert ENV["API_TOKEN"] not in page.text_content("#dlg-env")
    page.click('#env-list li[data-name="API_TOKEN"] button')
    page.wait_for_function(
        "([el, v]) => el.textContent === v", arg=[secret.element_handle(), ENV["API_TOKEN"]])
    assert ENV["REGION"] not in page.text_content("#dlg-env")
    page.click("#dlg-env .dlg-close")
    page.click("#btn-net")
    page.wait_for_selector("#dlg-net[open] #net-log tbody tr")
    stats = page.text_content("#net-stats")
    assert "Round trips" in stats and "Bytes fetched" in stats
    page.click("#dlg-net .dlg-close")
    only_local(viewer, server)
    assert not [c for c in viewer.console if c.startswith(("pageerror", "error"))], viewer.console


def test_deep_link_opens_a_file_with_text_and_image_previews(viewer: Viewer, server: str) -> None:
    url = f"{server}/archives/tree.lbox"
    viewer.goto(deep_link(url, "docs/guide.txt"))
    viewer.unlock()
    page = viewer.page
    page.wait_for_selector(".text-preview", timeout=PYTHON_START_MS)
    assert page.text_content("#preview-title") == "guide.txt"
    assert page.text_content(".text-preview") == TREE["docs/guide.txt"].decode()
    assert set(viewer.names()) == children(TREE, "docs")  # its folder is listed
    # image previews: the browser's own decoder draws the decrypted blob
    page.click('.crumb >> text="tree.lbox"')
    viewer.wait_listing("images")
    page.click('.row-item[data-name="images"]')
    viewer.wait_listing("red.png")
    page.click('.row-item[data-name="red.png"]')
    img = page.wait_for_selector("img.media")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [64, 48]
    assert img.get_attribute("src").startswith("blob:")
    # the hash follows the preview: a deep link to what is shown
    assert "path=images%2Fred.png" in page.evaluate("location.hash")
    # audio through the browser's own player, PDF in a frame (its own viewer)
    page.goto(f"{server}/{deep_link(url, 'media/tone.wav')}")
    audio = page.wait_for_selector("audio.media")
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 0", arg=audio)
    assert abs(audio.evaluate("a => a.duration") - 0.25) < 0.05
    page.goto(f"{server}/{deep_link(url, 'media/page.pdf')}")
    frame = page.wait_for_selector("iframe.pdf")
    assert frame.get_attribute("src").startswith("blob:")
    # following a deep link to a folder of the open archive lists that folder
    page.goto(f"{server}/{deep_link(url, 'docs/deep')}")
    viewer.wait_listing("nested")
    assert page.is_hidden("#preview")
    only_local(viewer, server)


def test_downloads_match_the_source(viewer: Viewer, server: str, tmp_path) -> None:
    url = f"{server}/archives/tree.lbox"
    viewer.goto(deep_link(url, "data/random.bin"))
    viewer.unlock()
    page = viewer.page
    page.wait_for_selector("pre.hex", timeout=PYTHON_START_MS)  # binary: hex view
    with page.expect_download() as info:
        page.click("#btn-download")
    download = info.value
    assert download.suggested_filename == "random.bin"
    target = tmp_path / "random.bin"
    download.save_as(target)
    assert sha256(target.read_bytes()) == sha256(TREE["data/random.bin"])
    page.wait_for_selector('.transfer[data-state="done"]')
    # a folder as .zip: every file of the subtree, byte for byte
    page.click('.crumb >> text="tree.lbox"')
    viewer.wait_listing("docs")
    page.click('.row-item[data-name="docs"]')
    viewer.wait_listing("guide.txt")
    with page.expect_download() as info:
        page.click("#btn-zip")
    zpath = tmp_path / "docs.zip"
    info.value.save_as(zpath)
    assert info.value.suggested_filename == "docs.zip"
    with zipfile.ZipFile(zpath) as z:
        assert z.testzip() is None
        got = {n[len("docs/"):]: z.read(n) for n in z.namelist() if not n.endswith("/")}
    want = {p[len("docs/"):]: d for p, d in TREE.items() if p.startswith("docs/")}
    assert got == want
    only_local(viewer, server)


# Stands in for the save dialog of the File System Access API (a headless browser cannot
# answer one): it keeps what the viewer writes, so the test can hash it.
FAKE_SAVE_PICKER = """
localStorage.setItem("lockbox.streamToDiskFrom", "1");
window.__saved = null;
window.showSaveFilePicker = async ({ suggestedName }) => ({
  createWritable: async () => {
    const saved = { name: suggestedName, parts: [], closed: false, aborted: false };
    window.__saved = saved;
    return {
      write: async (chunk) => { saved.parts.push(new Uint8Array(chunk)); },
      close: async () => { saved.closed = true; },
      abort: async () => { saved.aborted = true; },
    };
  },
});
"""


def test_large_download_streams_to_disk(viewer: Viewer, server: str) -> None:
    viewer.context.add_init_script(FAKE_SAVE_PICKER)
    viewer.goto(deep_link(f"{server}/archives/tree.lbox", "data/random.bin"))
    viewer.unlock()
    page = viewer.page
    page.wait_for_selector("pre.hex", timeout=PYTHON_START_MS)
    page.click("#btn-download")
    page.wait_for_selector('.transfer[data-state="done"]')
    saved = viewer.evaluate("""async () => {
        const s = window.__saved;
        const blob = new Blob(s.parts);
        const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
        const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"));
        return { name: s.name, closed: s.closed, pieces: s.parts.length, sha256: hex.join("") };
      }""")
    assert saved["name"] == "random.bin" and saved["closed"]
    assert saved["pieces"] >= 2  # written piece by piece, not as one blob
    assert saved["sha256"] == sha256(TREE["data/random.bin"])


def test_local_file_through_the_picker(viewer: Viewer, server: str, archives: Archives) -> None:
    viewer.goto()
    page = viewer.page
    page.set_input_files("#file", str(archives.path("tree.lbox")))
    viewer.unlock()
    viewer.wait_listing("docs")
    assert set(viewer.names()) == children(TREE, "")
    page.click('.row-item[data-name="README.md"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == TREE["README.md"].decode()
    # nothing of the archive went over the network
    assert not [r for r in viewer.requests if "/archives/" in r.url]
    only_local(viewer, server)


def test_dropped_file_and_identity_unlock(viewer: Viewer, server: str,
                                         archives: Archives) -> None:
    viewer.goto()
    viewer.wait_python()
    page = viewer.page
    data = archives.path("recipient.lbox").read_bytes()
    transfer = page.evaluate_handle(
        """(bytes) => { const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array(bytes)], "recipient.lbox"));
             return dt; }""", list(data))
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#btn-identity:visible", timeout=PYTHON_START_MS)
    assert page.is_hidden("#form-password")  # recipient-only: no password slot
    page.set_input_files("#identity", str(archives.identity_file))
    viewer.wait_listing("for-you.txt")
    page.click('.row-item[data-name="for-you.txt"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "only for the identity\n"
    only_local(viewer, server)


def test_wrong_password_then_right_one(viewer: Viewer, server: str) -> None:
    viewer.goto(deep_link(f"{server}/archives/tree.lbox"))
    viewer.unlock("not the password")
    page = viewer.page
    page.wait_for_selector("#unlock-error:visible", timeout=PYTHON_START_MS)
    assert "Wrong password" in page.text_content("#unlock-error")
    assert page.is_visible("#password")  # still usable, never a dead page
    viewer.unlock(PASSWORD)
    viewer.wait_listing("docs")


def test_default_argon2_parameters(viewer: Viewer, server: str) -> None:
    viewer.goto(deep_link(f"{server}/archives/default-kdf.lbox", "hello.txt"))
    page = viewer.page
    page.wait_for_selector("#unlock-meta:visible", timeout=PYTHON_START_MS)
    viewer.unlock()
    page.wait_for_selector(".text-preview", timeout=PYTHON_START_MS)
    assert page.text_content(".text-preview") == "default Argon2id\n"
    page.click("#btn-info")
    page.wait_for_selector("#dlg-info[open]")
    assert "m=64 MiB t=3" in page.text_content("#info-slots")


def test_corrupt_page_names_the_file_and_the_rest_opens(viewer: Viewer, server: str) -> None:
    viewer.goto(deep_link(f"{server}/archives/corrupt.lbox", CORRUPT_FILE))
    viewer.unlock()
    page = viewer.page
    err = page.wait_for_selector(".preview-error", timeout=PYTHON_START_MS)
    text = err.text_content()
    assert CORRUPT_FILE in text and "damaged" in text.lower()
    # the same folder's other file, and a file elsewhere, still open
    page.click('.row-item[data-name="deep"]')
    viewer.wait_listing("nested")
    page.click('.row-item[data-name="nested"]')
    viewer.wait_listing("note.md")
    page.click('.row-item[data-name="note.md"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "deep note\n"
    page.click('.crumb >> text="corrupt.lbox"')
    viewer.wait_listing("README.md")
    page.click('.row-item[data-name="README.md"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == TREE["README.md"].decode()


def test_archive_replaced_on_the_server_mid_session(viewer: Viewer, server: str,
                                                   archives: Archives, tmp_path) -> None:
    url = f"{server}/archives/changing.lbox"
    viewer.goto(deep_link(url))
    viewer.unlock()
    viewer.wait_listing("docs")
    page = viewer.page
    # another archive takes its place (new inode, new size: new ETag)
    replacement = tmp_path / "replacement.lbox"
    write_tree(replacement, files={"README.md": b"the new version\n", "new.txt": b"new\n"})
    os.replace(replacement, archives.path("changing.lbox"))
    page.click('.row-item[data-name="README.md"]')
    page.wait_for_selector("#alert:visible")
    assert page.text_content("#alert-title") == "The archive changed"
    assert "changed or replaced on the server" in page.text_content("#alert-message")
    # "Open again" reopens the new version
    page.click("#alert-action")
    viewer.unlock()
    viewer.wait_listing("new.txt")
    page.click('.row-item[data-name="README.md"]')
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "the new version\n"


def test_python_verifies_what_the_browser_got(archives: Archives) -> None:
    """The source tree of the e2e archives is what lockbox itself reads back (so the
    browser's comparisons above compare against the archive's real content)."""
    with lockbox.open(archives.path("tree.lbox"), password=PASSWORD) as box:
        for path, data in TREE.items():
            assert hashlib.sha256(box.read_bytes(path)).digest() == hashlib.sha256(data).digest()
    assert quote_css('a"b') == '"a\\"b"'


# -- downloads: reuse, batches, dropped links, notices ------------------------------------------

MANY = 60  # small files in links.lbox's folder "many"
# Symlinks of "many" that lead outside it (the zip leaves them out): path -> target. One
# name looks like HTML: the notice must show it as text.
ESCAPING = {
    "many/up": "../top.txt",
    "many/abs": "/etc/passwd",
    'many/<img src=x onerror="window.__xss=1">': "../../x",
}


def many_files() -> dict[str, bytes]:
    return {f"many/f{i:03d}.txt": b"small file %d\n" % i * (i + 1) for i in range(MANY)}


@pytest.fixture(scope="module")
def links_archive(archives: Archives) -> str:
    """links.lbox: a folder of MANY small files, one link that stays inside it and
    ESCAPING ones that do not."""
    path = archives.path("links.lbox")
    if path.exists():
        path.unlink()
    box = lockbox.create(path, password=PASSWORD, argon2=WEAK)
    with box.writer() as w:
        w.add_bytes("top.txt", b"top\n", mtime_ns=1_700_000_000_000_000_000)
        for name, data in many_files().items():
            w.add_bytes(name, data, mtime_ns=1_700_000_000_000_000_000)
        w.symlink("many/ok", "f000.txt", mtime_ns=1_700_000_000_000_000_000)
        for name, target in ESCAPING.items():
            w.symlink(name, target, mtime_ns=1_700_000_000_000_000_000)
    box.close()
    path.chmod(0o644)
    return path.name


def byte_ranges(reqs: list[Request]) -> list[tuple[int, int]]:
    """(first, last) byte of each request's Range header."""
    out = []
    for r in reqs:
        first, last = r.headers["range"].removeprefix("bytes=").split("-")
        out.append((int(first), int(last)))
    return out


def test_folder_zip_batches_small_files_and_lists_dropped_links(
        viewer: Viewer, server: str, links_archive: str, tmp_path: Path) -> None:
    url = f"{server}/archives/{links_archive}"
    viewer.goto(deep_link(url, "many"))
    viewer.unlock()
    viewer.wait_listing("f000.txt")
    page = viewer.page
    mark = len(viewer.requests)
    with page.expect_download() as info:
        page.click("#btn-zip")
    zpath = tmp_path / "many.zip"
    info.value.save_as(zpath)
    item = page.wait_for_selector('.transfer[data-name="many.zip"][data-state="done"]')
    # every small file of the folder, from a few requests: not one per file
    got = viewer.archive_requests(url, since=mark)
    assert got and all(r.status == 206 for r in got), [(r.status, r.failed) for r in got]
    assert len(got) <= 4 and sequential_round_trips(got) <= 3, byte_ranges(got)
    with zipfile.ZipFile(zpath) as z:
        assert z.testzip() is None
        names = set(z.namelist())
        files = {n: z.read(n) for n in names if n.startswith("many/f")}
    assert files == many_files()
    assert "many/ok" in names and not names & set(ESCAPING)
    # the links left out, each on a line of its own, as text
    dropped = item.query_selector(".dropped")
    assert dropped is not None
    lines = [li.text_content() for li in dropped.query_selector_all("li")]
    assert dropped.query_selector("p").text_content() == \
        "3 symlinks left out (they led outside the folder)"
    assert len(lines) == 3, lines
    for name, target in ESCAPING.items():
        assert any(line.startswith(f"{name} → {target}: ") for line in lines), lines
    assert "absolute" in next(line for line in lines if line.startswith("many/abs "))
    assert dropped.query_selector("img") is None
    assert page.evaluate("window.__xss") is None
    # it stays until dismissed (a plain download's notice goes away by itself)...
    page.wait_for_timeout(200)
    assert page.is_visible('.transfer[data-name="many.zip"]')
    # ...and goes with the archive: closing it leaves the start card alone
    page.click("#btn-close")
    page.wait_for_selector("#view-open:visible")
    assert page.locator("#transfers .transfer").count() == 0
    only_local(viewer, server)


def test_preview_then_download_fetches_nothing_twice(viewer: Viewer, server: str,
                                                     archives: Archives) -> None:
    url = f"{server}/archives/tree.lbox"
    page = viewer.page
    # a text file previewed whole, then downloaded: no request
    viewer.goto(deep_link(url, "docs/guide.txt"))
    viewer.unlock()
    page.wait_for_selector(".text-preview", timeout=PYTHON_START_MS)
    for name in ("guide.txt", "red.png"):
        if name == "red.png":
            page.click('.crumb >> text="tree.lbox"')
            viewer.wait_listing("images")
            page.click('.row-item[data-name="images"]')
            viewer.wait_listing("red.png")
            page.click('.row-item[data-name="red.png"]')
            img = page.wait_for_selector("img.media")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
        mark = len(viewer.requests)
        with page.expect_download() as info:
            page.click("#btn-download")
        path = info.value.path()
        want = TREE["docs/guide.txt" if name == "guide.txt" else "images/red.png"]
        assert sha256(Path(path).read_bytes()) == sha256(want)
        page.wait_for_selector(f'.transfer[data-name="{name}"][data-state="done"]')
        assert viewer.archive_requests(url, since=mark) == [], name
    # a binary file whose preview read its first chunk: the download fetches the rest only
    with lockbox.open(archives.path("tree.lbox"), password=PASSWORD) as box:
        refs = box.run(box.view.stat_flow("data/random.bin")).refs
    first, second = refs[0].byte_range, refs[1].byte_range
    page.goto(f"{server}/{deep_link(url, 'data/random.bin')}")
    page.wait_for_selector("pre.hex")
    mark = len(viewer.requests)
    with page.expect_download() as info:
        page.click("#btn-download")
    assert sha256(Path(info.value.path()).read_bytes()) == sha256(TREE["data/random.bin"])
    got = viewer.archive_requests(url, since=mark)
    ranges = byte_ranges(got)
    assert ranges, "the second chunk was fetched"
    assert all(last < first.offset or a >= first.end for a, last in ranges), ranges
    assert any(a <= second.offset and second.end - 1 <= last for a, last in ranges), ranges
    page.click("#btn-net")
    page.wait_for_selector("#dlg-net[open] #net-log tbody tr")
    assert "1 chunk" in page.text_content("#net-stats")  # reused, not fetched again
    only_local(viewer, server)


def test_missing_archive_names_the_url_once(viewer: Viewer, server: str) -> None:
    url = f"{server}/archives/missing.lbox"
    viewer.goto(deep_link(url))
    page = viewer.page
    page.wait_for_selector("#alert:visible", timeout=PYTHON_START_MS)
    shown = f"{page.text_content('#alert-title')} {page.text_content('#alert-message')}"
    assert shown.count(url) == 1, shown
    assert "404" in shown
