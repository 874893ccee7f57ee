"""lockbox.convert: between .uri (from the INDEPENDENT writer, checked by its strict
reader), .lbox and directories -- round trips byte-identical with modes and symlinks,
what a target cannot carry reported, unsafe and damaged sources refused with nothing
written outside the destination, and bounded memory for a large file."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

import lockbox
from formats.uri import independent as ind
from formats.uri.independent import Entry
from lockbox.convert import ConvertReport, NewLbox, _PieceReader, convert, target_format
from lockbox.errors import IntegrityError, UnsafePathError, UsageError

WEAK_ARGON2 = lockbox.Argon2Params(time_cost=1, memory_kib=64)
NEW = NewLbox(password="pw2", argon2=WEAK_ARGON2)
MTIME = 1_600_000_000_123_456_789


def _tree(root: Path) -> Path:
    """A tree with modes, an empty file, a big file, nested dirs, file and dir links."""
    src = root / "src"
    (src / "docs" / "deep").mkdir(parents=True)
    (src / "docs" / "deep" / "note.txt").write_text("hello\n")
    (src / "empty").write_bytes(b"")
    (src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.symlink("docs/deep/note.txt", src / "link")
    os.symlink("docs", src / "dirlink")
    os.symlink("../../run.sh", src / "docs" / "deep" / "up")
    modes = {"docs/deep/note.txt": 0o600, "run.sh": 0o755, "big.bin": 0o640, "empty": 0o644,
             "docs": 0o750, "docs/deep": 0o700}
    for rel, mode in modes.items():
        os.chmod(src / rel, mode)
    for p in sorted(src.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(p, ns=(MTIME, MTIME), follow_symlinks=False)
    return src


def _snapshot(root: Path, times: bool = False) -> dict[str, tuple[Any, ...]]:
    """Everything that must survive a round trip: type, mode, content or target."""
    out: dict[str, tuple[Any, ...]] = {}
    for p in root.rglob("*"):
        st = os.lstat(p)
        rel = str(p.relative_to(root))
        when = (st.st_mtime_ns,) if times else ()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p), *when)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), *when)
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes(), *when)
    return out


def _leftovers(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if ".lbx-" in n or n.endswith(".part")]


def test_target_format() -> None:
    assert target_format("a.lbox") == "lbox" and target_format("x/A.URI") == "uri"
    assert target_format("out") == target_format("out/") == target_format("a.b/") == "dir"
    assert target_format("a.zip", "uri") == "uri" and target_format("a.lbox", "dir") == "dir"
    with pytest.raises(UsageError, match="--to-format"):
        target_format("a.zip")
    with pytest.raises(UsageError, match="targets"):
        target_format("a", "tar")


def test_lbox_to_uri_to_dir_is_byte_identical(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    box = lockbox.create(tmp_path / "x.lbox", password="pw", argon2=WEAK_ARGON2)
    with box, box.writer() as w:
        w.add_tree(src)
    with lockbox.open(tmp_path / "x.lbox", password="pw") as arc:
        r1 = convert(arc, tmp_path / "y.uri")
    assert r1.complete and r1.unsafe == 0 and r1.source_format == "lbox"
    assert r1.notes == [f"modification times of {r1.entries} entries not kept (the .uri "
                        "format has none)"]
    strict = ind.read((tmp_path / "y.uri").read_bytes())  # the independent reader agrees
    assert {e.path.decode() for e in strict} == set(_snapshot(src))
    r2 = convert(tmp_path / "y.uri", tmp_path / "D")
    assert r2.complete and (r2.files, r2.dirs, r2.symlinks) == (4, 2, 3)
    assert _snapshot(tmp_path / "D") == _snapshot(src)
    assert any("no modification time" in n for n in r2.notes)
    # .lbox -> directory keeps the times too
    with lockbox.open(tmp_path / "x.lbox", password="pw") as arc:
        convert(arc, tmp_path / "E")
    assert _snapshot(tmp_path / "E", times=True) == _snapshot(src, times=True)


def test_dir_to_uri_to_lbox_and_back(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    os.mkfifo(src / "fifo")
    r = convert(src, tmp_path / "x.uri")
    assert [s.path for s in r.skipped] == ["fifo"] and "fifo" in r.skipped[0].reason
    assert not r.complete and r.unsafe == 0
    ind.read((tmp_path / "x.uri").read_bytes())
    r = convert(tmp_path / "x.uri", tmp_path / "y.lbox", new_lbox=NEW)
    assert r.complete and r.entries == 9 and r.file_bytes == (src / "big.bin").stat().st_size + 16
    assert any("owner/group names of 9 entries not kept" in n for n in r.notes)
    assert any("no modification time in the source" in n for n in r.notes)
    assert (tmp_path / "y.lbox").stat().st_mode & 0o777 == 0o600
    with lockbox.open(tmp_path / "y.lbox", password="pw2") as box:
        assert isinstance(box, lockbox.Lockbox) and box.verify().ok
        assert box.stat("docs").mode == 0o750 and box.stat("dirlink").target == "docs"
        r = convert(box, tmp_path / "D")
    os.unlink(src / "fifo")
    assert _snapshot(tmp_path / "D") == _snapshot(src)
    # a directory straight to .lbox keeps the times
    r = convert(src, tmp_path / "z.lbox", new_lbox=NEW)
    assert r.complete and r.entries == 9
    with lockbox.open(tmp_path / "z.lbox", password="pw2") as box:
        assert box.stat("docs/deep/note.txt").mtime_ns == MTIME
    assert _leftovers(tmp_path) == []


def test_files_from_the_independent_writer(tmp_path: Path) -> None:
    entries = [Entry(b"DIR ", b"d", 0o755, b"alice", b"staff"),
               Entry(b"FILE", b"d/a", 0o640, b"alice", b"staff", b"a" * 5000),
               Entry(b"SLNK", b"d/l", 0o777, data=b"a"),
               Entry(b"DIR ", b"e", 0o700),
               Entry(b"FILE", b"e/x\xffy", 0o644, data=b"not utf-8 name")]
    (tmp_path / "x.uri").write_bytes(ind.write(entries))
    r = convert(tmp_path / "x.uri", tmp_path / "copy.uri")
    assert r.complete and r.notes == []  # nothing lost: no times to lose, names kept
    copied = ind.read((tmp_path / "copy.uri").read_bytes())  # symlinks come last
    assert sorted(copied, key=lambda e: e.path) == sorted(entries, key=lambda e: e.path)
    r = convert(tmp_path / "x.uri", tmp_path / "y.lbox", new_lbox=NEW)
    assert [s.path for s in r.skipped] == ["e/x\udcffy"] and "not UTF-8" in r.skipped[0].reason
    r = convert(tmp_path / "x.uri", tmp_path / "D")
    assert (tmp_path / "D" / "e").joinpath(os.fsdecode(b"x\xffy")).read_bytes() == \
        b"not utf-8 name"
    assert any("owner/group names of 2 entries not applied" in n for n in r.notes)


def test_escaping_symlinks_are_left_out_and_reported(tmp_path: Path) -> None:
    entries = [Entry(b"DIR ", b"a", 0o755),
               Entry(b"FILE", b"a/f", 0o644, data=b"f"),
               Entry(b"SLNK", b"a/abs", 0o777, data=b"/etc/passwd"),
               Entry(b"SLNK", b"a/up", 0o777, data=b"../.."),
               Entry(b"SLNK", b"a/l1", 0o777, data=b".."),          # the root: inside
               Entry(b"SLNK", b"a/l2", 0o777, data=b"l1/.."),       # through l1: outside
               Entry(b"SLNK", b"a/ok", 0o777, data=b"l1/a/f")]
    (tmp_path / "x.uri").write_bytes(ind.write(entries))
    for dest, new in (("y.uri", None), ("y.lbox", NEW)):
        r = convert(tmp_path / "x.uri", tmp_path / dest, new_lbox=new)
        assert r.unsafe == 3 and [s.path for s in r.skipped] == ["a/abs", "a/l2", "a/up"]
        assert "through other links" in dict(r.skipped)["a/l2"]
        assert (r.files, r.symlinks) == (1, 2)
    assert {e.path for e in ind.read((tmp_path / "y.uri").read_bytes())} == {
        b"a", b"a/f", b"a/l1", b"a/ok"}
    r = convert(tmp_path / "x.uri", tmp_path / "D")
    assert r.unsafe == 3 and sorted(os.listdir(tmp_path / "D" / "a")) == ["f", "l1", "ok"]


def test_an_escaping_path_is_refused_with_nothing_written(tmp_path: Path) -> None:
    entries = [Entry(b"FILE", b"fine", data=b"x"), Entry(b"FILE", b"../evil", data=b"evil")]
    (tmp_path / "x.uri").write_bytes(ind.write(entries))
    (tmp_path / "work").mkdir()
    for dest in ("work/y.uri", "work/y.lbox", "work/D"):
        with pytest.raises(UnsafePathError):
            convert(tmp_path / "x.uri", tmp_path / dest, new_lbox=NEW)
    assert os.listdir(tmp_path / "work") == [] and not (tmp_path / "evil").exists()


def test_a_damaged_chunk_is_refused(tmp_path: Path) -> None:
    big = os.urandom(200_000)
    data = bytearray(ind.write([Entry(b"FILE", b"a", data=b"a"), Entry(b"DIR ", b"d"),
                                Entry(b"FILE", b"d/big", data=big)]))
    data[bytes(data).index(big[:50]) + 150_000] ^= 1
    (tmp_path / "bad.uri").write_bytes(bytes(data))
    (tmp_path / "work").mkdir()
    for dest in ("work/y.uri", "work/y.lbox"):
        with pytest.raises(IntegrityError, match="CRC"):
            convert(tmp_path / "bad.uri", tmp_path / dest, new_lbox=NEW)
    assert os.listdir(tmp_path / "work") == []
    with pytest.raises(IntegrityError):
        convert(tmp_path / "bad.uri", tmp_path / "work" / "D")
    assert sorted(os.listdir(tmp_path / "work" / "D")) == ["a", "d"]
    assert os.listdir(tmp_path / "work" / "D" / "d") == []  # no partial or temporary file


def test_existing_destinations(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"new")
    (tmp_path / "y.uri").write_bytes(b"old")
    with pytest.raises(UsageError, match="--force"):
        convert(tmp_path / "src", tmp_path / "y.uri")
    with pytest.raises(UsageError, match="--force"):
        convert(tmp_path / "src", tmp_path / "y.uri", to_format="lbox", new_lbox=NEW)
    assert (tmp_path / "y.uri").read_bytes() == b"old"
    convert(tmp_path / "src", tmp_path / "y.uri", overwrite=True)
    assert ind.read((tmp_path / "y.uri").read_bytes())[0].data == b"new"
    with pytest.raises(UsageError, match="contain each other"):
        convert(tmp_path / "src", tmp_path / "src" / "inner")
    with pytest.raises(UsageError, match="needs a password"):
        convert(tmp_path / "src", tmp_path / "z.lbox")


def test_report_counts() -> None:
    r = ConvertReport(files=2, dirs=1, symlinks=1)
    assert r.entries == 4 and r.complete


@pytest.mark.parametrize("sizes", [[4096, 4096], [10_000, 3, 1, 2], [5, 7000], [1], [], [0, 9, 0]])
@pytest.mark.parametrize("n", [1, 1000, 4096])
def test_piece_reader_regroups_pieces_into_reads(sizes: list[int], n: int) -> None:
    """What ``add_stream`` sees of a source's pieces (``read(chunk_size)``): full reads of
    exactly ``n`` bytes, from one piece or across several, then the short tail, then b""."""
    data = os.urandom(sum(sizes))
    pieces: list[bytes | bytearray | memoryview] = []
    pos = 0
    for k, size in enumerate(sizes):
        part = data[pos:pos + size]
        pieces.append([part, bytearray(part), memoryview(part)][k % 3])
        pos += size
    reader = _PieceReader(pieces)
    reads = []
    while True:
        got = reader.read(n)
        assert type(got) is bytes
        if not got:
            break
        reads.append(got)
    assert b"".join(reads) == data
    assert all(len(r) == n for r in reads[:-1]) and all(0 < len(r) <= n for r in reads[-1:])
    assert reader.read(n) == b""


MiB = 1024 * 1024
PHASE_PEAK_LIMIT = 160 * MiB  # each phase peaks near 60 MiB (CPython 3.11, idle or loaded)

_MEMORY_CHILD = textwrap.dedent("""
    import json, sys
    import lockbox
    from lockbox.convert import NewLbox, convert
    from lockbox.formats.lbox.keys import Argon2Params

    def peak_bytes():
        # VmHWM: the peak RSS of this process's own memory since exec (or the last reset).
        # Not ru_maxrss: that survives execve, so a child of a large process (pytest deep
        # in a full run) would report its parent's peak.
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM line in /proc/self/status")

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # Linux >= 4.0: VmHWM := the current RSS
            return True
        except OSError:
            return False  # then a phase's figure is the peak so far: still an upper bound

    src, lbox, uri, out = sys.argv[1:5]
    size, limit = int(sys.argv[5]), int(sys.argv[6])
    new = NewLbox(password="pw", argon2=Argon2Params(time_cost=1, memory_kib=64))

    def lbox_to_uri():
        with lockbox.open(lbox, password="pw") as box:
            return convert(box, uri)

    phases = [(".uri -> .lbox", lambda: convert(src, lbox, new_lbox=new)),
              (".lbox -> .uri", lbox_to_uri),
              (".uri -> directory", lambda: convert(uri, out))]
    peaks, resets = {}, []
    for name, run in phases:
        resets.append(reset_peak())
        report = run()
        peaks[name] = peak_bytes()
        assert report.file_bytes == size and report.complete, (name, report)
    print(json.dumps({"peaks": peaks, "reset": all(resets)}))
    shown = ", ".join(f"{n}: {p >> 20} MiB" for n, p in peaks.items())
    over = [n for n, p in peaks.items() if p > limit]
    assert not over, (f"{', '.join(over)} over {limit >> 20} MiB converting a "
                      f"{size >> 20} MiB file (peaks: {shown})")
""")


def test_a_large_file_converts_in_bounded_memory(tmp_path: Path) -> None:
    """A 1 GiB file (sparse zeros: cheap to make) through .uri -> .lbox -> .uri -> a
    directory in a child process that asserts each phase's own peak RSS (VmHWM, reset
    between phases) stays under PHASE_PEAK_LIMIT, a sixth of the file's size.

    This test process meanwhile holds more than that limit: the child's figures must be
    its own. (They were not when the child printed ru_maxrss, which survives execve: deep
    in a full run the child "peaked" at pytest's 220-450 MiB while its own peak was
    60 MiB.)"""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("measures the child's peak as VmHWM in /proc/self/status (Linux)")
    size = 1024 * MiB
    path = b"zeros.bin"
    crc = zlib.crc32(path)
    block = bytes(MiB)
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    src = tmp_path / "big.uri"
    with open(src, "wb") as f:
        f.write(ind.MAGIC + bytes(4))
        f.write(ind.header(b"FILE", len(path), 0o644, b"", b"", size))
        f.write(path)
        f.seek(size, os.SEEK_CUR)  # a hole: zeros
        f.write((crc & 0xFFFFFFFF).to_bytes(4, "little"))
    ballast = bytearray(PHASE_PEAK_LIMIT + 32 * MiB)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # resident, page by page
    try:
        child = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(src), str(tmp_path / "x.lbox"),
             str(tmp_path / "y.uri"), str(tmp_path / "out"), str(size),
             str(PHASE_PEAK_LIMIT)],
            capture_output=True, text=True, timeout=600, check=False)  # a hang guard only
    finally:
        del ballast
    assert child.returncode == 0, child.stderr[-3000:]
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    assert set(figures["peaks"]) == {".uri -> .lbox", ".lbox -> .uri", ".uri -> directory"}
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == size
    assert (tmp_path / "y.uri").stat().st_size == src.stat().st_size


def test_a_packed_archive_converts_opening_each_pack_once(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files share PACK frames: converting them to .uri and to a directory opens
    each pack once, not once per file, and every byte comes through."""
    from lockbox.formats.lbox.view import ArchiveView
    from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED

    rnd = random.Random(3)
    files = {f"d{i % 3}/f{i:04d}": rnd.randbytes(rnd.randrange(0, 3000)) for i in range(1500)}
    box = lockbox.create(tmp_path / "p.lbox", password="pw", argon2=WEAK_ARGON2)
    with box, box.writer() as w:
        for name, data in files.items():
            w.add_bytes(name, data, mtime_ns=MTIME)
    with lockbox.open(tmp_path / "p.lbox", password="pw") as arc:
        entries = [e for _, e in arc.run(arc.view.walk_flow("")) if e.type == 1]
    assert all(e.layout == LAYOUT_PACKED for e in entries)
    packs = {e.refs[0] for e in entries}
    assert len(packs) >= 2
    opened: list[int] = []
    keep = ArchiveView.keep_pack

    def counting(self: ArchiveView, ref: Any, payload: Any) -> Any:
        opened.append(ref.frame_offset)
        return keep(self, ref, payload)

    monkeypatch.setattr(ArchiveView, "keep_pack", counting)
    convert(tmp_path / "p.lbox", tmp_path / "p.uri", password="pw")
    assert sorted(opened) == sorted(r.frame_offset for r in packs)
    got = {e.path.decode(): e.data for e in ind.read((tmp_path / "p.uri").read_bytes())
           if e.kind == b"FILE"}
    assert got == files
    opened.clear()
    convert(tmp_path / "p.lbox", tmp_path / "D", password="pw")
    assert sorted(opened) == sorted(r.frame_offset for r in packs)
    assert {str(p.relative_to(tmp_path / "D")): p.read_bytes()
            for p in (tmp_path / "D").rglob("*") if p.is_file()} == files
