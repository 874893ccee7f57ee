"""Recovery (docs/FORMAT.md §15, `lockbox recover`): every test damages a real archive
and checks what the scanner rebuilds, what it refuses, and what salvage writes."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

import lockbox
from lockbox import cli
from lockbox.drivers import run_sync
from lockbox.errors import (
    FormatError,
    IntegrityError,
    LockboxError,
    UnsupportedVersionError,
    WrongKeyError,
)
from lockbox.formats.lbox.recovery import (
    COMPLETE,
    LOST,
    PARTIAL,
    SOURCE_COMMIT,
    SOURCE_DATA_FRAMES,
    SOURCE_TOC_LEAF,
    RecoveryReport,
    RecoveryScanner,
)
from lockbox.formats.lbox.recovery.rebuild import covered_by_newer
from lockbox.formats.lbox.wire.constants import (
    FRAME_HEADER_SIZE,
    MAX_FRAME_SEALED_SIZE,
    PAGE_UNIT,
    SUPERBLOCK_SIZE,
    FrameKind,
    PageKind,
)
from lockbox.formats.lbox.wire.entry import LAYOUT_CHUNKS
from lockbox.formats.lbox.wire.frame import FrameHeader, encode_frame_header
from lockbox.formats.lbox.wire.page import PageHeader, encode_page_header
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.sources import BytesSource, FileSource

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)
PW = "pw"
MiB = 1 << 20


# -- helpers ---------------------------------------------------------------------------


def build(path: Path, files: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
          dirs: list[str] | None = None, env: dict[str, bytes] | None = None,
          chunk_size: int = 4096, **create_kw: object) -> Path:
    create_kw.setdefault("argon2", WEAK)
    if "recipients" not in create_kw:
        create_kw.setdefault("password", PW)
    box = lockbox.create(path, chunk_size=chunk_size, **create_kw)
    try:
        with box.writer() as w:
            for d in dirs or []:
                w.mkdir(d, 0o750, mtime_ns=1_600_000_000_000_000_000)
            for p, data in files.items():
                w.add_bytes(p, data, mode=0o640, mtime_ns=1_700_000_000_000_000_000)
            for p, target in (symlinks or {}).items():
                w.symlink(p, target)
            for k, v in (env or {}).items():
                w.env_set(k, v)
    finally:
        box.close()
    return path


def many_files(n: int, seed: int = 1, max_size: int = 20_000) -> dict[str, bytes]:
    """n files of random size (some multi-chunk) in a few directories; names long
    enough that the TOC does not fit inline in the commit."""
    rnd = random.Random(seed)
    return {f"dir{i % 7}/sub{i % 3}/file-with-a-longish-name-{i:04d}.bin":
            rnd.randbytes(rnd.randrange(0, max_size)) for i in range(n)}


def scan(path: Path | bytes, **kw: object) -> RecoveryReport:
    kw.setdefault("password", PW)
    source = BytesSource(path) if isinstance(path, (bytes, bytearray)) else FileSource(path)
    try:
        return RecoveryScanner(**kw).scan(source)  # type: ignore[arg-type]
    finally:
        source.close()


def scan_and_salvage(path: Path, out: Path, **kw: object) -> RecoveryReport:
    kw.setdefault("password", PW)
    source = FileSource(path)
    try:
        scanner = RecoveryScanner(**kw)  # type: ignore[arg-type]
        report = scanner.scan(source)
        scanner.salvage(out, source)
        return report
    finally:
        source.close()


def statuses(report: RecoveryReport) -> dict[str, str]:
    return {e.path: e.status for e in report.files}


def layout(path: Path) -> dict[str, object]:
    """Where things are in an intact archive: TOC node refs and each file's chunk refs."""
    with lockbox.open(path, password=PW) as box:
        view = box.view
        toc = box.run(view.node_refs_flow(FrameKind.TOC_NODE, view.commit.toc))
        chunks: dict[str, list[Ref]] = {}
        for e in box.ls(recursive=True):
            if e.is_file:
                entry = box.run(view.stat_flow(e.path))
                chunks[e.path] = box.run(view.chunk_refs_flow(entry, 0, entry.chunks))
        return {"toc": toc, "chunks": chunks, "end": view.commit.archive_end}


def smash(data: bytearray, ref: Ref) -> None:
    """Damage a frame's ciphertext (its header stays valid)."""
    mid = ref.frame_offset + FRAME_HEADER_SIZE + (ref.frame_size - FRAME_HEADER_SIZE) // 2
    data[mid] ^= 0xFF


def salvaged(out: Path, **kw: object) -> dict[str, bytes]:
    kw.setdefault("password", PW)
    with lockbox.open(out, **kw) as box:  # type: ignore[arg-type]
        assert box.verify().ok
        return {e.path: box.read_bytes(e.path) for e in box.ls(recursive=True) if e.is_file}


# -- intact and lightly damaged archives ----------------------------------------------------


def test_intact_archive_recovers_everything_and_salvages_it(tmp_path: Path) -> None:
    files = many_files(60) | {"empty.txt": b"", "big.bin": os.urandom(50_000)}
    src = build(tmp_path / "a.lbox", files, symlinks={"link": "big.bin"}, dirs=["void"],
                env={"TOKEN": b"s3cret", "EMPTY": b""})
    out = tmp_path / "out.lbox"
    report = scan_and_salvage(src, out)
    assert report.ok and report.toc_source == "commit" and report.env_source == "commit"
    assert report.key_source == "slot 0" and report.commit_generation == 2
    assert set(statuses(report)) == set(files)
    assert all(e.source == SOURCE_COMMIT for e in report.entries)
    assert report.frames_rejected == 0 and report.unaccounted_files == 0
    assert report.bytes_scanned <= src.stat().st_size  # every byte read once
    big = report.entry("big.bin")
    assert big is not None and big.size == big.recovered_bytes == 50_000
    assert big.ranges == ((0, 50_000),) and big.mode == 0o640
    assert salvaged(out) == files
    with lockbox.open(out, password=PW) as box:
        assert box.stat("link").target == "big.bin"
        assert box.stat("void").is_dir and box.stat("void").mode == 0o750
        assert box.stat("big.bin").mode == 0o640
        assert dict(box.env_items()) == {"TOKEN": b"s3cret", "EMPTY": b""}
        info = box.info()
        assert len(info.slots) == 1 and info.slots[0].kind == "password"


def test_small_window_and_second_read_give_the_same_report(tmp_path: Path, monkeypatch) -> None:
    files = many_files(40) | {"big.bin": os.urandom(200_000)}
    src = build(tmp_path / "a.lbox", files, chunk_size=65536)
    ref = scan(src)
    # A window far smaller than a frame: the buffer grows to hold it, nothing is missed.
    small = scan(src, window_bytes=4096)
    assert statuses(small) == statuses(ref) and small.ok
    assert small.frames_authenticated == ref.frames_authenticated
    # No group hashed while streaming: every file is checked by a second read.
    monkeypatch.setattr("lockbox.formats.lbox.recovery.scanner._MAX_OPEN_HASHERS", 0)
    again = scan(src)
    assert statuses(again) == statuses(ref) and again.ok


def test_scanner_is_sans_io(tmp_path: Path) -> None:
    src = build(tmp_path / "a.lbox", {"a.txt": b"hello"})
    data = src.read_bytes()
    flow = RecoveryScanner(password=PW).scan_flow()
    request = next(flow)
    reads = 0
    try:
        while True:
            reads += 1
            request = flow.send([data[r.offset:r.end] for r in request.ranges])
    except StopIteration as stop:
        report = stop.value
    assert reads >= 2 and statuses(report) == {"a.txt": COMPLETE}


# -- damaged header, TOC, tail ------------------------------------------------------------


def test_damaged_header_recovered_via_the_keydir_page(tmp_path: Path) -> None:
    files = many_files(120)
    src = build(tmp_path / "a.lbox", files, symlinks={"dir0/link": "x"}, dirs=["void"])
    data = bytearray(src.read_bytes())
    data[:SUPERBLOCK_SIZE] = bytes(SUPERBLOCK_SIZE)  # both slots gone
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    with pytest.raises(FormatError):
        lockbox.open(bad, password=PW)
    out = tmp_path / "out.lbox"
    report = scan_and_salvage(bad, out)
    assert report.key_source.startswith("key directory page at 16384")
    assert report.commit_generation is None and report.toc_source == "toc-leaves"
    assert statuses(report) == dict.fromkeys(files, COMPLETE)
    assert report.ok
    link = report.entry("dir0/link")
    assert link is not None and link.type == "symlink" and link.source == SOURCE_TOC_LEAF
    assert salvaged(out) == files
    with lockbox.open(out, password=PW) as box:
        assert box.stat("void").is_dir and box.stat("dir0/link").target == "x"


def test_lost_header_with_an_inline_tree_falls_back_to_data_frames(tmp_path: Path) -> None:
    files = {"a.txt": b"alpha", "d/b.txt": b"beta" * 3000, "d/e/c.txt": b""}
    src = build(tmp_path / "a.lbox", files, env={"K": b"v"})
    data = bytearray(src.read_bytes())
    data[:SUPERBLOCK_SIZE] = os.urandom(SUPERBLOCK_SIZE)
    report = scan(bytes(data))
    assert report.toc_source == "data-frames"
    assert statuses(report) == dict.fromkeys(files, COMPLETE)
    assert {e.path for e in report.dirs} == {"d", "d/e"}  # implied by the paths
    assert all(e.source == SOURCE_DATA_FRAMES for e in report.files)
    assert report.env_names == []  # the env tree was inline in the lost commit
    b = report.entry("d/b.txt")
    assert b is not None and b.mode == 0o640 and b.mtime_ns == 1_700_000_000_000_000_000


def test_lost_newest_slot_brings_newer_files_back_from_data_frames(tmp_path: Path) -> None:
    """The TOC is inline in each commit: with the newest slot gone, the older commit's
    tree authenticates but is stale; what the lost commit added comes from data frames."""
    src = build(tmp_path / "a.lbox", {"a.txt": b"old a", "b.txt": b"b"})  # generation 2
    with lockbox.open(src, password=PW) as box, box.writer() as w:  # generation 3
        w.add_bytes("a.txt", b"new a")
        w.add_bytes("c/new.txt", b"brand new")
    data = bytearray(src.read_bytes())
    data[8192:16384] = bytes(8192)  # slot 1: generation 3
    report = scan(bytes(data))
    assert report.commit_generation == 2 and report.toc_source == "commit"
    assert statuses(report) == dict.fromkeys(["a.txt", "b.txt", "c/new.txt"], COMPLETE)
    a = report.entry("a.txt")
    new = report.entry("c/new.txt")
    assert a is not None and a.size == 5 and a.source == SOURCE_DATA_FRAMES
    assert new is not None and new.source == SOURCE_DATA_FRAMES
    b = report.entry("b.txt")
    assert b is not None and b.source == SOURCE_COMMIT
    assert any("newer than the surviving commit" in p for p in report.problems)
    # Both slots intact: nothing past the newest commit is added.
    assert all(e.source == SOURCE_COMMIT for e in scan(src).entries)


def test_damaged_toc_is_rebuilt_from_data_frames(tmp_path: Path) -> None:
    files = many_files(400, max_size=6000)
    src = build(tmp_path / "a.lbox", files, symlinks={"link": "dir0"})
    where = layout(src)
    assert len(where["toc"]) >= 3  # leaves and an internal node  # type: ignore[arg-type]
    data = bytearray(src.read_bytes())
    for ref in where["toc"]:  # type: ignore[attr-defined]
        smash(data, ref)
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    out = tmp_path / "out.lbox"
    report = scan_and_salvage(bad, out)
    assert report.commit_generation == 2 and report.toc_source == "data-frames"
    assert report.frames_rejected == len(where["toc"])  # type: ignore[arg-type]
    assert statuses(report) == dict.fromkeys(files, COMPLETE)
    assert all(e.source == SOURCE_DATA_FRAMES for e in report.files)
    assert report.entry("link") is None  # symlinks live only in TOC leaves
    assert report.ok and report.unaccounted_files == 0
    assert salvaged(out) == files


def test_truncated_tail_leaves_that_file_partial(tmp_path: Path) -> None:
    small = {f"s{i}.txt": os.urandom(3000 + i) for i in range(5)}
    src = build(tmp_path / "a.lbox", small)
    big = os.urandom(300_000)  # 74 chunks of 4 KiB
    with lockbox.open(src, password=PW) as box, box.writer() as w:
        w.add_bytes("big.bin", big)
    chunks = layout(src)["chunks"]["big.bin"]  # type: ignore[index]
    cut = chunks[30].frame_offset + 100  # inside chunk 30
    data = src.read_bytes()[:cut]
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    out = tmp_path / "out.lbox"
    report = scan_and_salvage(bad, out)
    assert report.toc_source == "commit"  # the TOC is inline in the slot
    st = statuses(report)
    assert st.pop("big.bin") == PARTIAL and st == dict.fromkeys(small, COMPLETE)
    e = report.entry("big.bin")
    assert e is not None and e.size == 300_000 and e.ranges == ((0, 30 * 4096),)
    assert e.recovered_bytes == 30 * 4096 and "44 of 74 chunks" in e.detail
    assert not report.ok
    assert salvaged(out) == small  # exactly the complete files


def test_truncated_tail_with_the_tree_lost_counts_the_missing(tmp_path: Path) -> None:
    files = many_files(100, seed=3)
    src = build(tmp_path / "a.lbox", files)
    where = layout(src)
    first_toc = min(r.frame_offset for r in where["toc"])  # type: ignore[attr-defined]
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(src.read_bytes()[:first_toc - 40_000])
    report = scan(bad)
    assert report.toc_source == "data-frames" and report.unaccounted_files > 0
    assert not report.ok
    assert any("lost with their names" in p for p in report.problems)
    for e in report.files:  # what survives is right
        if e.status == COMPLETE:
            assert e.size == len(files[e.path])


def test_one_percent_of_pages_corrupted(tmp_path: Path) -> None:
    files = many_files(250, seed=7, max_size=40_000)
    src = build(tmp_path / "a.lbox", files, env={"A": b"1"})
    where = layout(src)
    data = bytearray(src.read_bytes())
    units = list(range(SUPERBLOCK_SIZE // PAGE_UNIT, len(data) // PAGE_UNIT))
    rnd = random.Random(11)
    hit = sorted(rnd.sample(units, max(3, len(units) // 100)))
    for u in hit:
        data[u * PAGE_UNIT:(u + 1) * PAGE_UNIT] = rnd.randbytes(PAGE_UNIT)
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)

    def intact(refs: list[Ref]) -> bool:
        return not any(r.frame_offset // PAGE_UNIT <= u <= (r.frame_offset + r.frame_size - 1)
                       // PAGE_UNIT for r in refs for u in hit)

    out = tmp_path / "out.lbox"
    report = scan_and_salvage(bad, out)
    st = statuses(report)
    damaged = 0
    for path, refs in where["chunks"].items():  # type: ignore[attr-defined]
        if intact(refs):
            assert st.get(path) == COMPLETE, path
        else:
            damaged += 1
            assert st.get(path, "absent") in (PARTIAL, LOST) or \
                (path not in st and report.toc_source != "commit"), path
    assert damaged > 0
    complete = {p for p, s in st.items() if s == COMPLETE}
    assert salvaged(out) == {p: files[p] for p in complete}


# -- authenticity: what must not come back ---------------------------------------------------


def test_a_frame_copied_elsewhere_does_not_authenticate(tmp_path: Path) -> None:
    src = build(tmp_path / "a.lbox", {"a.txt": os.urandom(3000)})
    with lockbox.open(src, password=PW) as box, box.writer() as w:  # a pack of its own
        w.add_bytes("b.txt", os.urandom(3000))
    ref = layout(src)["chunks"]["a.txt"][0]  # type: ignore[index]
    data = bytearray(src.read_bytes())
    frame = bytes(data[ref.frame_offset:ref.frame_offset + ref.frame_size])
    # A copy in fresh space past the end: a genuine frame at the wrong offset.
    copy_at = len(data) + PAGE_UNIT + 48
    data += bytes(copy_at - len(data)) + frame + bytes(PAGE_UNIT)
    report = scan(bytes(data))
    assert report.frames_rejected == 1 and report.ok
    # The original gone (zeroed), only the copy left: the file is lost, not recovered.
    data[ref.frame_offset:ref.frame_offset + ref.frame_size] = bytes(ref.frame_size)
    report = scan(bytes(data))
    assert statuses(report) == {"a.txt": LOST, "b.txt": COMPLETE}
    assert report.frames_rejected == 1 and not report.ok


def test_superseded_and_removed_versions_do_not_come_back(tmp_path: Path) -> None:
    v1 = os.urandom(20_000)
    gone = os.urandom(9000)
    files = many_files(80, seed=5) | {"secret.txt": v1, "gone.txt": gone}
    src = build(tmp_path / "a.lbox", files)
    v2 = b"version two"
    with lockbox.open(src, password=PW) as box, box.writer() as w:
        w.add_bytes("secret.txt", v2)
        w.remove("gone.txt")
    where = layout(src)
    data = bytearray(src.read_bytes())
    data[:SUPERBLOCK_SIZE] = bytes(SUPERBLOCK_SIZE)
    for ref in where["toc"]:  # type: ignore[attr-defined]
        smash(data, ref)
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    out = tmp_path / "out.lbox"
    report = scan_and_salvage(bad, out)
    assert report.toc_source == "data-frames"
    st = statuses(report)
    assert st["secret.txt"] == COMPLETE and "gone.txt" not in st
    e = report.entry("secret.txt")
    assert e is not None and e.size == len(v2)
    got = salvaged(out)
    assert got["secret.txt"] == v2 and "gone.txt" not in got
    assert all(v1 not in content and gone not in content for content in got.values())


def test_newer_leaves_hide_removed_keys() -> None:
    spans = [(b"\x00a", b"\x00m", 5), (b"\x00n", b"\x00z", 3)]
    keys = [(b"\x00c", 4), (b"\x00c2", 5), (b"\x00p", 2), (b"\x00p2", 3), (b"\x00zz", 1)]
    assert covered_by_newer(keys, spans) == {b"\x00c", b"\x00p"}


# -- keys and errors -----------------------------------------------------------------------


def test_recovery_with_an_identity(tmp_path: Path, crypto) -> None:
    me = lockbox.Identity.generate(crypto)
    files = {"x.bin": os.urandom(10_000)}
    src = build(tmp_path / "a.lbox", files, recipients=[me.recipient(crypto)])
    data = bytearray(src.read_bytes())
    data[:SUPERBLOCK_SIZE] = bytes(SUPERBLOCK_SIZE)
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    with pytest.raises(WrongKeyError):
        scan(bad)  # a password, and the archive has only a recipient slot
    out = tmp_path / "out.lbox"
    report = scan_and_salvage(bad, out, password=None, identity=me)
    assert report.ok and statuses(report) == {"x.bin": COMPLETE}
    assert salvaged(out, password=None, identity=me) == files


def test_scan_runs_under_the_async_driver(tmp_path: Path) -> None:
    import asyncio

    from lockbox.drivers import run_async
    from lockbox.sources import AsyncBytesSource

    files = many_files(20, seed=4)
    data = build(tmp_path / "a.lbox", files).read_bytes()
    report = asyncio.run(run_async(RecoveryScanner(password=PW).scan_flow(),
                                   AsyncBytesSource(data)))
    assert statuses(report) == dict.fromkeys(files, COMPLETE)


def test_unrecoverable_inputs_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError):
        scan(os.urandom(3 * MiB))
    with pytest.raises(FormatError):
        scan(b"")
    src = build(tmp_path / "a.lbox", {"a.txt": b"x" * 5000})
    with pytest.raises(WrongKeyError):
        scan(src, password="nope")
    data = bytearray(src.read_bytes())
    data[:SUPERBLOCK_SIZE + PAGE_UNIT] = bytes(SUPERBLOCK_SIZE + PAGE_UNIT)  # + KEYDIR page
    with pytest.raises(IntegrityError, match="key directory is lost"):
        scan(bytes(data))
    with pytest.raises(LockboxError):
        RecoveryScanner()
    newer = bytearray(src.read_bytes())  # an intact slot of format version 4
    slot = bytearray(newer[8192:16384])
    k, c = struct.unpack_from("<II", slot, 40)
    slot[8:10] = (4).to_bytes(2, "little")
    struct.pack_into("<I", slot, 48 + k + c, zlib.crc32(bytes(slot[:48 + k + c])))
    newer[8192:16384] = slot
    with pytest.raises(UnsupportedVersionError):
        scan(bytes(newer))


def _fake_header(kind: FrameKind, sealed: int) -> bytes:
    return encode_frame_header(FrameHeader(kind, sealed, 2, os.urandom(16), 7))


def test_hostile_input_is_bounded(tmp_path: Path) -> None:
    files = {f"f{i}.bin": os.urandom(5000 + i) for i in range(20)}
    src = build(tmp_path / "a.lbox", files)
    data = bytearray(src.read_bytes())
    # Slot 1: the magic and garbage (sizes inside the slot).
    data[8192:8192 + 8] = b"LBOX\r\n\x1a\n"
    data[8192 + 8:8192 + 48] = struct.pack("<HBBI16sQII", 1, 1, 0, 0, os.urandom(16), 9,
                                           100, 200)
    rnd = random.Random(5)
    junk = bytearray()
    junk += rnd.randbytes(8 * MiB)  # random bytes
    junk += b"LBXF" * (MiB // 4)  # a flood of bare magics
    for _ in range(4 * MiB // 256):  # 16,384 candidates with broken CRCs
        junk += b"LBXF\x05\x00\x00\x00" + rnd.randbytes(248)
    for _ in range(1024):  # valid headers claiming the largest frame, every 16 KiB
        junk += _fake_header(FrameKind.DATA_CHUNK, MAX_FRAME_SEALED_SIZE)
        junk += rnd.randbytes(16 * 1024 - 48)
    for _ in range(256):  # sizes over the limit
        junk += _fake_header(FrameKind.TOC_NODE, 16)[:8] + struct.pack("<I", 0xFFFFFFF0)
        junk += rnd.randbytes(4084)
    pad = -(len(data) + len(junk)) % PAGE_UNIT
    junk += bytes(pad)
    for kind, used in ((PageKind.KEYDIR, 1 << 20), (PageKind.FRAMES, 4096),
                       (PageKind.KEYDIR, 100)):  # page headers with valid CRCs, garbage
        junk += encode_page_header(PageHeader(kind, 8 * MiB, used, 3))
        junk += rnd.randbytes(PAGE_UNIT - 32)
    junk += bytes(-(len(data) + len(junk)) % PAGE_UNIT)
    junk += encode_page_header(PageHeader(PageKind.FREE, 8 * MiB, 32, 3))
    data += junk
    data += rnd.randbytes(64 * MiB - len(data))
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    del data, junk
    scanner = RecoveryScanner(password=PW)
    source = FileSource(bad)
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        report = scanner.scan(source)
        elapsed = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        source.close()
    assert statuses(report) == dict.fromkeys(files, COMPLETE)
    assert report.frames_rejected >= 10
    assert peak < 64 * MiB, peak
    assert elapsed < 60, elapsed  # a hang guard (quadratic work would take far longer)
    assert report.bytes_scanned <= 64 * MiB
    # Work on frames that fail is bounded by the budget (2 x scanned + 16 MiB) plus
    # non-overlapping attempts: not 1024 x 4 MiB.
    assert scanner._fail_spent <= 3 * 64 * MiB + 16 * MiB


def test_damage_anywhere_raises_only_lockbox_errors(tmp_path: Path) -> None:
    files = many_files(30, seed=9)
    src = build(tmp_path / "a.lbox", files)
    clean = src.read_bytes()
    rnd = random.Random(3)
    for _ in range(25):
        data = bytearray(clean)
        for _ in range(rnd.randrange(1, 40)):
            at = rnd.randrange(len(data))
            n = rnd.choice((1, 4, 48, 300, 5000))
            data[at:at + n] = rnd.randbytes(min(n, len(data) - at))
        if rnd.random() < 0.3:
            data = data[:rnd.randrange(len(data))]
        try:
            report = scan(bytes(data))
        except LockboxError:
            continue
        for e in report.files:
            if e.status == COMPLETE:
                assert files[e.path] is not None and e.size == len(files[e.path])


# -- the command line -------------------------------------------------------------------------


def _run(capsys, *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main([os.fspath(a) for a in argv])  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_recover(tmp_path: Path, capsys, monkeypatch) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text(PW + "\n")
    monkeypatch.delenv("LOCKBOX_PASSWORD", raising=False)
    monkeypatch.delenv("LOCKBOX_IDENTITY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    small = {"a.txt": b"alpha", "b.txt": os.urandom(6000)}
    src = build(tmp_path / "a.lbox", small)
    with lockbox.open(src, password=PW) as box, box.writer() as w:
        w.add_bytes("big.bin", os.urandom(100_000))
    rc, out, err = _run(capsys, "recover", src, "--password-file", pwfile)
    assert rc == 0, err
    assert out.splitlines() == [out.splitlines()[0]]
    assert out.startswith("3 of 3 files complete, 0 partial, 0 lost;")
    chunks = layout(src)["chunks"]["big.bin"]  # type: ignore[index]
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(src.read_bytes()[:chunks[5].frame_offset + 10])
    rc, out, err = _run(capsys, "recover", bad, "--password-file", pwfile)
    assert rc == IntegrityError.exit_code == 5
    lines = out.splitlines()
    assert lines[0].startswith("partial  big.bin  (20,480 of 100,000 bytes recovered: "
                               "bytes 0-20479)")
    assert lines[1].startswith("2 of 3 files complete, 1 partial, 0 lost;")
    assert len(lines) == 2
    rc, out, _ = _run(capsys, "recover", bad, "--password-file", pwfile, "--json")
    doc = json.loads(out)
    assert rc == 5 and doc["ok"] is False and doc["counts"]["partial"] == 1
    assert {e["path"]: e["status"] for e in doc["entries"] if e["type"] == "file"} == \
        {"a.txt": "complete", "b.txt": "complete", "big.bin": "partial"}
    new = tmp_path / "new.lbox"
    rc, out, _ = _run(capsys, "recover", bad, "--password-file", pwfile, "-o", new,
                      "--dry-run")
    assert rc == 5 and not new.exists() and "dry run: nothing written" in out
    rc, out, _ = _run(capsys, "recover", bad, "--password-file", pwfile, "-o", new)
    assert rc == 5 and new.exists()
    assert f"salvaged 2 files (5.9 KiB), 0 directories, 0 symlinks, 0 env values into {new}" \
        in out
    assert salvaged(new) == small
    rc, _, err = _run(capsys, "recover", bad, "--password-file", pwfile, "-o", new)
    assert rc == 2 and "already exists" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    rc, _, err = _run(capsys, "recover", bad, "--password-file", wrong)
    assert rc == WrongKeyError.exit_code and "lockbox:" in err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(100_000))
    rc, _, err = _run(capsys, "recover", junk, "--password-file", pwfile)
    assert rc == FormatError.exit_code and "not a lockbox archive" in err
    rc, _, err = _run(capsys, "recover", bad)  # no secret, no terminal
    assert rc == 2 and "password" in err


def test_chunks_are_grouped_by_file_id_not_by_path(tmp_path: Path) -> None:
    """A file moved after it was written: its chunks still name the old path; with the
    commit's tree the new path wins, and the version is not reported twice."""
    src = build(tmp_path / "a.lbox", {"old/name.txt": b"content" * 1000})
    with lockbox.open(src, password=PW) as box, box.writer() as w:
        w.move("old/name.txt", "new.txt")
    report = scan(src)
    assert statuses(report) == {"new.txt": COMPLETE}
    e = report.entry("new.txt")
    assert e is not None and e.source == SOURCE_COMMIT


def test_index_layout_files_do_not_need_their_index(tmp_path: Path) -> None:
    big = os.urandom(120_000)  # 30 chunks: the INDEX layout
    src = build(tmp_path / "a.lbox", {"big.bin": big})
    with lockbox.open(src, password=PW) as box:
        entry = box.run(box.view.stat_flow("big.bin"))
        assert entry.layout != LAYOUT_CHUNKS
        index = entry.refs[0]
    data = bytearray(src.read_bytes())
    smash(data, index)
    out = tmp_path / "out.lbox"
    bad = tmp_path / "bad.lbox"
    bad.write_bytes(data)
    report = scan_and_salvage(bad, out)
    assert statuses(report) == {"big.bin": COMPLETE} and report.frames_rejected == 1
    assert salvaged(out) == {"big.bin": big}


def test_scan_reads_each_byte_once(tmp_path: Path) -> None:
    src = build(tmp_path / "a.lbox", many_files(50, seed=2))
    source = FileSource(src)
    try:
        report = run_sync(RecoveryScanner(password=PW).scan_flow(), source)
    finally:
        source.close()
    size = src.stat().st_size
    assert report.ok and report.bytes_scanned == size - SUPERBLOCK_SIZE
    # the superblock, the commit's tree nodes, then one pass over the pages
    assert source.stats.bytes_read < size + SUPERBLOCK_SIZE + size // 10
