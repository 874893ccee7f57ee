"""Packed archives (small files sharing PACK frames, format version 3) in the viewer.

The archive is made by the real command line (``lockbox create`` + ``lockbox add`` of a
tree of a few hundred small files and one large file), so it is packed the way users'
archives are. In Chromium: the listing, a small file's preview, the large file's
download, a folder's ``.zip`` (every byte compared; a few requests for hundreds of files,
not one each), and a damaged pack frame: its files show the integrity error, the files of
the other packs still open."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lockbox
from conftest import (
    PASSWORD,
    PYTHON_START_MS,
    Viewer,
    close_viewer,
    deep_link,
    new_viewer,
    sequential_round_trips,
    sha256,
)
from lockbox.formats.lbox.wire.constants import FrameKind
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED, Entry

SMALL = 640  # small files under "small/" (3 packs of ~1 MiB or more)
LARGE = 3 * 1024 * 1024 + 12_345  # big/large.bin: chunked, not packed
NAME = "packed.lbox"
DAMAGED_NAME = "packed-damaged.lbox"


def small_name(i: int) -> str:
    return f"small/d{i % 3}/f{i:04d}.txt"


def source_tree() -> dict[str, bytes]:
    """path -> bytes: SMALL small files (text, 0 B to 8 KiB, pseudo-random so the packs do
    not compress to nothing), a few notes, one large file."""
    rnd = random.Random(12)
    files: dict[str, bytes] = {}
    for i in range(SMALL):
        size = 0 if i == 7 else rnd.randrange(1, 8192)
        files[small_name(i)] = bytes(rnd.randrange(32, 127) for _ in range(size))
    files["notes/hello.txt"] = b"hello from a packed archive\n"
    files["notes/lines.txt"] = b"".join(b"line %d of a packed note\n" % i for i in range(200))
    files["big/large.bin"] = rnd.randbytes(LARGE)
    return files


def lockbox_cli(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "lockbox", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"lockbox {' '.join(args)}: {done.stderr}"


def entry_of(box: Any, path: str) -> Entry:
    e: Entry = box.run(box.view.stat_flow(path))
    return e


def damage(path: Path, offset: int, size: int) -> None:
    """Flip 4 bytes in the middle of the frame at ``offset`` (``size`` bytes)."""
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        b = f.read(4)
        f.seek(offset + size // 2)
        f.write(bytes(x ^ 0x5A for x in b))


class Packed:
    def __init__(self, dir: Path, files: dict[str, bytes], packs: dict[tuple[int, int], list[str]],
                 damaged: tuple[int, int]) -> None:
        self.dir = dir
        self.files = files
        self.packs = packs  # (frame offset, frame size) -> its files, in member order
        self.damaged = damaged  # the pack damaged in DAMAGED_NAME


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Packed:
    files = source_tree()
    src = tmp_path_factory.mktemp("packed-src")
    for name, data in files.items():
        p = src / "tree" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    out = tmp_path_factory.mktemp("packed-archives")
    archive = out / NAME
    env = {**os.environ, "LOCKBOX_PASSWORD": PASSWORD, "LOCKBOX_CACHE": "64M"}
    lockbox_cli("create", "--argon2-memory", "8", "--argon2-time", "1", str(archive), env=env)
    lockbox_cli("add", str(archive), f"{src / 'tree'}/", env=env)
    packs: dict[tuple[int, int], list[tuple[int, str]]] = {}
    with lockbox.open(archive, password=PASSWORD) as box:
        assert box.info().format_version == 3, "lockbox add did not pack"
        for name in files:
            e = entry_of(box, name)
            if name == "big/large.bin":
                assert e.layout != LAYOUT_PACKED and e.chunks > 1
                continue
            assert e.layout == LAYOUT_PACKED, f"{name} is not packed"
            ref = e.refs[0]
            packs.setdefault((ref.frame_offset, ref.frame_size), []).append((e.member_no, name))
        assert box.verify().ok
    assert len(packs) >= 3, f"only {len(packs)} packs: the test needs several"
    by_pack = {k: [n for _, n in sorted(v)] for k, v in packs.items()}
    # the pack damaged: one in the middle, none of the notes in it
    candidates = [k for k, v in sorted(by_pack.items())
                  if not any(n.startswith("notes/") for n in v)]
    damaged = candidates[len(candidates) // 2]
    shutil.copyfile(archive, out / DAMAGED_NAME)
    damage(out / DAMAGED_NAME, *damaged)
    for p in out.iterdir():
        p.chmod(0o644)
    return Packed(out, files, by_pack, damaged)


@pytest.fixture(scope="module")
def packed_server(site: Path, packed: Packed) -> Iterator[str]:
    from lockbox_server import running

    with running(packed.dir, site_dir=site, timeout=15) as url:
        yield url.rstrip("/")


@pytest.fixture
def pviewer(browser: Any, packed_server: str, request: Any) -> Iterator[Viewer]:
    v = new_viewer(browser, packed_server)
    try:
        yield v
    finally:
        close_viewer(v, request)


def test_packed_listing_preview_download_and_zip(pviewer: Viewer, packed_server: str,
                                                 packed: Packed, tmp_path: Path) -> None:
    viewer, files = pviewer, packed.files
    url = f"{packed_server}/archives/{NAME}"
    page = viewer.page
    # a packed small file by deep link: unlock, its text preview, its folder listed
    viewer.goto(deep_link(url, "notes/lines.txt"))
    viewer.unlock()
    page.wait_for_selector(".text-preview", timeout=PYTHON_START_MS)
    assert page.text_content(".text-preview") == files["notes/lines.txt"].decode()
    assert set(viewer.names()) == {"hello.txt", "lines.txt"}
    # the listing of the root and of a folder of packed files
    page.click('.crumb >> text="packed.lbox"')
    viewer.wait_listing("big")
    assert set(viewer.names()) == {"big", "notes", "small"}
    page.click('.row-item[data-name="small"]')
    viewer.wait_listing("d0")
    page.click('.row-item[data-name="d1"]')
    viewer.wait_listing("f0001.txt")
    want = sorted(n.rsplit("/", 1)[1] for n in files if n.startswith("small/d1/"))
    assert sorted(viewer.all_names()) == want
    # another small file's preview, and its download (reused: no request)
    viewer.click_row("f0004.txt")
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == files["small/d1/f0004.txt"].decode()
    mark = len(viewer.requests)
    with page.expect_download() as info:
        page.click("#btn-download")
    assert Path(info.value.path()).read_bytes() == files["small/d1/f0004.txt"]
    assert viewer.archive_requests(url, since=mark) == []
    # the large (chunked) file downloads whole
    page.goto(f"{packed_server}/{deep_link(url, 'big/large.bin')}")
    page.wait_for_selector("pre.hex", timeout=PYTHON_START_MS)
    with page.expect_download() as info:
        page.click("#btn-download")
    assert sha256(Path(info.value.path()).read_bytes()) == sha256(files["big/large.bin"])
    # "small" as a .zip: every byte of every file, from a few requests (each pack once)
    page.click('.crumb >> text="packed.lbox"')
    viewer.wait_listing("small")
    page.click('.row-item[data-name="small"]')
    viewer.wait_listing("d0")
    mark = len(viewer.requests)
    with page.expect_download() as info:
        page.click("#btn-zip")
    zpath = tmp_path / "small.zip"
    info.value.save_as(zpath)
    page.wait_for_selector('.transfer[data-name="small.zip"][data-state="done"]')
    with zipfile.ZipFile(zpath) as z:
        assert z.testzip() is None
        got = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    assert got == {n: d for n, d in files.items() if n.startswith("small/")}
    reqs = viewer.archive_requests(url, since=mark)
    assert reqs and all(r.status == 206 for r in reqs), [(r.status, r.failed) for r in reqs]
    fetched = sum(r.body_bytes for r in reqs)
    pack_bytes = sum(size for (_, size), names in packed.packs.items()
                     if any(n.startswith("small/") for n in names))
    print(f"\n[e2e] small.zip: {len(got)} files from {len(reqs)} requests, {fetched:,} bytes "
          f"({sequential_round_trips(reqs)} round trips; its packs: {pack_bytes:,} bytes)")
    # each pack fetched once (the zip's own tree reads besides), nothing twice
    assert len(reqs) <= len(packed.packs) + 2, len(reqs)
    assert sequential_round_trips(reqs) <= len(packed.packs) + 2
    assert fetched < pack_bytes + 256 * 1024, (fetched, pack_bytes)
    assert not [c for c in viewer.console if c.startswith(("pageerror", "error"))], \
        viewer.console


def test_damaged_pack_fails_its_files_only(pviewer: Viewer, packed_server: str,
                                           packed: Packed) -> None:
    viewer, files = pviewer, packed.files
    url = f"{packed_server}/archives/{DAMAGED_NAME}"
    page = viewer.page
    bad = packed.packs[packed.damaged]
    good = next(n for k, v in sorted(packed.packs.items()) if k != packed.damaged
                for n in v if n.startswith("small/") and files[n])
    viewer.goto(deep_link(url, bad[0]))
    viewer.unlock()
    for k, name in enumerate([bad[0], bad[-1], good, "notes/hello.txt"]):
        if k:
            page.goto(f"{packed_server}/{deep_link(url, name)}")
        # the preview shown before stays until this one replaces it: wait for this one
        if name in bad:
            page.wait_for_function(
                "name => (document.querySelector('.preview-error') || {}).textContent"
                "?.includes(name)", arg=name, timeout=PYTHON_START_MS)
            text = page.text_content(".preview-error")
            assert "damaged" in text.lower(), text
        else:
            page.wait_for_function(
                "text => (document.querySelector('.text-preview') || {}).textContent === text",
                arg=files[name].decode(), timeout=PYTHON_START_MS)
            assert page.text_content("#preview-title") == name.rsplit("/", 1)[1]
    # the pack's other files are listed as usual (only their content is refused)
    folder = bad[0].rsplit("/", 1)[0]
    page.goto(f"{packed_server}/{deep_link(url, folder)}")
    names = sorted(n.rsplit("/", 1)[1] for n in files if n.startswith(f"{folder}/"))
    viewer.wait_listing(names[0])
    assert sorted(viewer.all_names()) == names


def test_python_reads_the_packed_archive(packed: Packed) -> None:
    """What the browser is compared with is what lockbox reads back, and the damaged copy
    fails exactly the files of the damaged pack."""
    with lockbox.open(packed.dir / NAME, password=PASSWORD) as box:
        for name, data in packed.files.items():
            assert hashlib.sha256(box.read_bytes(name)).digest() == \
                hashlib.sha256(data).digest(), name
    bad = set(packed.packs[packed.damaged])
    with lockbox.open(packed.dir / DAMAGED_NAME, password=PASSWORD) as box:
        for name in [*sorted(bad)[:5], "notes/hello.txt", small_name(0)]:
            if name in bad:
                with pytest.raises(lockbox.IntegrityError):
                    box.read_bytes(name)
            else:
                assert box.read_bytes(name) == packed.files[name]
    assert FrameKind.PACK == 7
