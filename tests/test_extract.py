"""lockbox.extract: extraction of genuine archives with hostile content (issue 7), on real
files. The archives come from tests/hostile/extract_cases.py (the real writer)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

import lockbox
from hostile import extract_cases as cases
from lockbox import StorageError, UnsafePathError, UsageError
from lockbox import extract as extract_mod
from lockbox.extract import ExtractReport, SkippedEntry, link_escape, safe_mode
from lockbox.formats.lbox.wire.constants import EntryType
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED
from lockbox.info import EntryInfo

MTIME = cases.MTIME_NS
WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)  # tests/conftest.py's weak_argon2


@pytest.fixture
def new_box(tmp_path: Path, weak_argon2: lockbox.Argon2Params):
    """A fresh, empty, opened archive and its path."""
    path = tmp_path / "new.lbox"
    box = lockbox.create(path, password=cases.PASSWORD, argon2=weak_argon2)
    yield box, path
    box.close()


def _open(path: Path) -> lockbox.Lockbox:
    return lockbox.open(path, password=cases.PASSWORD)


def _tree(dest: Path) -> dict[str, os.stat_result]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            out[str(p.relative_to(dest))] = os.lstat(p)
    return out


def _links_resolve_inside(dest: Path) -> None:
    """Every symlink under dest resolves (as the system would follow it) inside dest."""
    real = os.path.realpath(dest)
    for rel, st in _tree(dest).items():
        if stat.S_ISLNK(st.st_mode):
            resolved = os.path.realpath(dest / rel)
            assert os.path.commonpath([real, resolved]) == real, (rel, resolved)


def _no_special_modes(dest: Path) -> None:
    for rel, st in _tree(dest).items():
        if not stat.S_ISLNK(st.st_mode):
            assert stat.S_IMODE(st.st_mode) & 0o7022 == 0, (rel, oct(st.st_mode))


# -- 1. symlinks that resolve outside the destination ----------------------------------------


def test_chained_symlinks_never_resolve_outside(tmp_path: Path) -> None:
    path = cases.chained_symlinks(tmp_path / "ladder.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        report = box.extract(dest, strict=False)
    _links_resolve_inside(dest)
    _no_special_modes(dest)
    assert os.path.realpath(dest / "a" / "passwd") != "/etc/passwd"
    assert (dest / "a" / "keep.txt").read_bytes() == b"keep\n"
    assert os.readlink(dest / "a" / "up") == ".."  # the safe first rung is kept
    skipped = {s.path for s in report.skipped}
    assert "a/up02" in skipped and all(p.startswith("a/up") for p in skipped), skipped
    assert report.files == 1 and report.symlinks == cases.LADDER_RUNGS + 1 - len(skipped)
    assert all("leads outside the destination" in s.reason for s in report.skipped)


def test_chained_symlinks_strict_raises_after_extracting_the_rest(tmp_path: Path) -> None:
    path = cases.chained_symlinks(tmp_path / "ladder.lbox")
    dest = tmp_path / "out"
    with _open(path) as box, pytest.raises(UnsafePathError) as exc:
        box.extract(dest)
    assert str(exc.value).startswith("skipped ") and "a/up02" in str(exc.value)
    assert exc.value.exit_code == 8
    assert (dest / "a" / "keep.txt").exists()
    _links_resolve_inside(dest)


def test_a_chain_inside_lexically_but_outside_on_disk(tmp_path: Path) -> None:
    path = cases.lexically_inside_chain(tmp_path / "chain.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        report = box.extract(dest, strict=False)
    deep = "/".join(f"d{i}" for i in range(12))
    assert [s.path for s in report.skipped] == [f"{deep}/l3"]
    assert "through other links" in report.skipped[0].reason
    assert os.readlink(dest / deep / "l1") == "../../.."
    assert (dest / deep / "keep.txt").exists()
    _links_resolve_inside(dest)


def test_a_link_made_unsafe_by_a_later_link_is_removed(tmp_path: Path) -> None:
    path = cases.order_dependent_symlinks(tmp_path / "order.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        report = box.extract(dest, strict=False)
    assert [s.path for s in report.skipped] == ["a/b/x"]
    assert "once the archive's other links are in place" in report.skipped[0].reason
    assert not os.path.lexists(dest / "a" / "b" / "x")
    assert os.readlink(dest / "a" / "b" / "y") == "zz"
    assert os.readlink(dest / "a" / "b" / "zz") == "../.."
    assert report.symlinks == 2
    _links_resolve_inside(dest)


def test_links_through_links_of_the_destination_itself(tmp_path: Path, new_box) -> None:
    """A link already in the destination is followed when judging the archive's links."""
    box, path = new_box
    with box.writer() as w:
        w.symlink("d/via", "sys/etc", mtime_ns=MTIME)
        w.symlink("d/fine", "own/x", mtime_ns=MTIME)
    dest = tmp_path / "out"
    (dest / "d").mkdir(parents=True)
    os.symlink("/", dest / "d" / "sys")  # the user's own link, outside
    os.symlink("..", dest / "d" / "own")
    with _open(path) as box2:
        report = box2.extract(dest, strict=False)
    assert [(s.path, "absolute link" in s.reason) for s in report.skipped] == [("d/via", True)]
    assert os.readlink(dest / "d" / "fine") == "own/x"


@pytest.mark.parametrize("target, escapes", [
    ("b/c", False), ("..", False), ("../..", True), ("/etc", True), ("", True),
    ("a\x00b", True), ("up/..", True), ("up/../..", True), ("dl/x", False),
    ("dl/../..", False), ("dl/../../..", True), ("file/../..", False),
    ("missing/../..", False), ("missing/../../..", True), ("loop/x", False),
    ("./b//c/.", False), ("abs/x", True),
])
def test_link_escape_follows_links_as_the_kernel_would(target: str, escapes: bool) -> None:
    """link_escape on a virtual tree: root/{a/, a/b/, a/file, a/up -> .., a/dl -> b,
    a/loop -> loop, a/abs -> /}; the link under test is in a/."""
    tree = {("a",): ("dir", ""), ("a", "b"): ("dir", ""), ("a", "file"): ("other", ""),
            ("a", "up"): ("link", ".."), ("a", "dl"): ("link", "b"),
            ("a", "loop"): ("link", "loop"), ("a", "abs"): ("link", "/")}

    def lookup(parent: Sequence[str], name: str) -> tuple[str, str]:
        return tree.get((*parent, name), ("missing", ""))

    assert (link_escape(["a"], target, lookup) is not None) is escapes


# -- 2. special mode bits --------------------------------------------------------------------


def test_special_modes_are_stripped_by_default(tmp_path: Path) -> None:
    path = cases.special_modes(tmp_path / "modes.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        assert box.extract(dest).skipped == []
    for rel, (_, want) in cases.SPECIAL_MODES.items():
        assert oct(stat.S_IMODE(os.lstat(dest / rel).st_mode)) == oct(want), rel
    _no_special_modes(dest)


def test_preserve_permissions_keeps_them(tmp_path: Path) -> None:
    path = cases.special_modes(tmp_path / "modes.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        box.extract(dest, preserve_permissions=True)
    for rel in ("m/setuid.sh", "m/d7777", "m/world.txt", "m/sticky.txt", "m/d1777"):
        have = stat.S_IMODE(os.lstat(dest / rel).st_mode)
        assert oct(have) == oct(cases.SPECIAL_MODES[rel][0]), rel


def test_read_only_directories_are_set_last(tmp_path: Path, new_box) -> None:
    box, path = new_box
    with box.writer() as w:
        w.mkdir("ro", mode=0o555, mtime_ns=MTIME)
        w.add_bytes("ro/f", b"f", mode=0o444, mtime_ns=MTIME)
        w.symlink("ro/l", "f", mtime_ns=MTIME)
        w.mkdir("ro/inner", mode=0o500, mtime_ns=MTIME)
    dest = tmp_path / "out"
    with _open(path) as box2:
        report = box2.extract(dest, preserve_permissions=True)
    assert (report.files, report.dirs, report.symlinks) == (1, 2, 1)
    assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o555
    assert stat.S_IMODE(os.lstat(dest / "ro" / "inner").st_mode) == 0o500
    assert os.lstat(dest / "ro").st_mtime_ns == MTIME
    assert (dest / "ro" / "l").read_bytes() == b"f"
    os.chmod(dest / "ro", 0o755)  # let pytest clean up
    os.chmod(dest / "ro" / "inner", 0o755)


@pytest.mark.parametrize("kind, mode, want", [
    (EntryType.FILE, 0o6777, 0o755), (EntryType.FILE, 0o777, 0o755),
    (EntryType.FILE, 0o666, 0o644), (EntryType.FILE, 0o000, 0o600),
    (EntryType.FILE, 0o075, 0o644), (EntryType.FILE, 0o1711, 0o711),
    (EntryType.DIR, 0o7777, 0o755), (EntryType.DIR, 0o000, 0o700),
    (EntryType.DIR, 0o2770, 0o750), (EntryType.DIR, 0o1777, 0o755),
])
def test_safe_mode(kind: EntryType, mode: int, want: int) -> None:
    assert oct(safe_mode(kind, mode)) == oct(want)
    assert safe_mode(kind, mode, preserve=True) == mode & 0o7777


# -- 3. the temporary file -------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_old_temp_names_in_the_destination_are_never_written(tmp_path: Path,
                                                             overwrite: bool) -> None:
    path = cases.temp_name_target(tmp_path / "tmpname.lbox")
    dest = tmp_path / "out"
    keep = cases.plant_temp_name_traps(dest, tmp_path / "outside")
    with _open(path) as box:
        report = box.extract(dest, overwrite=overwrite)
    assert report.files == 2 and report.skipped == []
    for p, content in keep.items():
        assert p.read_bytes() == content, p
    assert (dest / "d" / "f").read_bytes() == b"archive content"
    assert (dest / "d" / "g").read_bytes() == b"archive g"
    # Nothing else is left behind (no temporary file of ours).
    assert sorted(os.listdir(dest / "d")) == [".f.lbx-part", ".g.lbx-part", "f", "g"]


def test_overwriting_a_hard_link_replaces_the_name_not_the_linked_file(tmp_path: Path) -> None:
    path = cases.temp_name_target(tmp_path / "tmpname.lbox")
    dest = tmp_path / "out"
    (dest / "d").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"outside")
    os.link(victim, dest / "d" / "f")
    os.symlink(victim, dest / "d" / "g")
    with _open(path) as box:
        box.extract(dest, overwrite=True)
    assert victim.read_bytes() == b"outside"
    assert (dest / "d" / "f").read_bytes() == b"archive content"
    assert not (dest / "d" / "g").is_symlink()
    assert (dest / "d" / "g").read_bytes() == b"archive g"


def test_a_failed_file_leaves_no_temporary_file(tmp_path: Path, make_archive) -> None:
    path = make_archive({"d/f": b"x" * 10_000})
    dest = tmp_path / "out"

    def failing(path: str):
        yield memoryview(b"partial")
        raise lockbox.IntegrityError(f"{path}: content does not match")

    with _open(path) as box:
        items = list(box.iter_entries())
    with pytest.raises(lockbox.IntegrityError):
        extract_mod.Extractor(dest).run(items, failing)
    assert os.listdir(dest / "d") == []


# -- 4. extraction size ----------------------------------------------------------------------


def test_a_2gib_expansion_is_refused_before_writing_when_it_does_not_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = cases.expands_to_2gib(tmp_path / "bomb.lbox")
    assert path.stat().st_size < 100_000
    dest = tmp_path / "out"
    asked: list[str] = []

    def free(p: str) -> int:
        asked.append(p)
        return 1024 ** 3

    monkeypatch.setattr(extract_mod, "free_bytes", free)
    with _open(path) as box, pytest.raises(StorageError) as exc:
        box.extract(dest)
    msg = str(exc.value)
    assert "not enough free space" in msg and "2.0 GiB of files" in msg, msg
    assert "1.0 GiB available" in msg and "\n" not in msg
    assert asked == [str(tmp_path)]  # dest does not exist yet: its parent's filesystem
    assert not dest.exists()


def test_max_size_refuses_before_writing(tmp_path: Path) -> None:
    path = cases.expands_to_2gib(tmp_path / "bomb.lbox")
    dest = tmp_path / "out"
    with _open(path) as box, pytest.raises(UsageError) as exc:
        box.extract(dest, max_size=1024 ** 3)
    assert "2.0 GiB" in str(exc.value) and "--max-size" in str(exc.value)
    assert not dest.exists()
    # Only the selected paths count: one 64 MiB copy is under the limit... but would not
    # fit in 1 MiB of free space.
    with _open(path) as box, pytest.raises(UsageError):
        box.extract(dest, ["bomb/00", "bomb/01"], max_size=cases.BOMB_FILE_SIZE)
    assert not dest.exists()


def test_max_size_at_the_limit_extracts(tmp_path: Path, make_archive) -> None:
    path = make_archive({"a": b"1" * 1000, "b/c": b"2" * 24})
    with _open(path) as box:
        with pytest.raises(UsageError):
            box.extract(tmp_path / "x", max_size=1023)
        report = box.extract(tmp_path / "y", max_size=1024)
    assert report == ExtractReport(dest=str(tmp_path / "y"), files=2, dirs=1, symlinks=0,
                                   file_bytes=1024)
    assert report.entries == 3


def test_free_space_counts_blocks_and_a_margin(tmp_path: Path, make_archive,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_archive({f"f{i}": b"x" for i in range(10)})
    need = 10 * 4096 + 10 * 4096 + 1024 * 1024  # blocks, one per entry, the margin
    monkeypatch.setattr(extract_mod, "free_bytes", lambda p: need - 1)
    with _open(path) as box, pytest.raises(StorageError, match="not enough free space"):
        box.extract(tmp_path / "out")
    monkeypatch.setattr(extract_mod, "free_bytes", lambda p: need)
    with _open(path) as box:
        assert box.extract(tmp_path / "out").files == 10


def test_the_real_free_space_is_asked(tmp_path: Path) -> None:
    assert extract_mod.free_bytes(str(tmp_path)) > 0


# -- 5. skip, report, keep going ---------------------------------------------------------------


def test_unsafe_entries_are_skipped_and_the_rest_extracted(tmp_path: Path) -> None:
    path = cases.unsafe_among_safe(tmp_path / "mixed.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        report = box.extract(dest, strict=False)
    assert [s.path for s in report.skipped] == ["a/abs", "a/esc"]
    assert "absolute symlink target (/etc/passwd)" in report.skipped[0].reason
    assert str(report.skipped[1]) == ("a/esc: symlink target leads outside the destination "
                                      "(../../outside)")
    assert (dest / "z" / "safe.txt").read_bytes() == b"safe\n"
    assert (dest / "z" / "later" / "more.txt").read_bytes() == b"more\n"
    assert (dest / "a" / "ok").read_bytes() == b"safe\n"  # the safe link, through it
    assert not os.path.lexists(dest / "a" / "abs") and not os.path.lexists(dest / "a" / "esc")
    assert (report.files, report.symlinks, report.dirs) == (2, 1, 3)
    assert sorted(os.listdir(tmp_path)) == ["mixed.lbox", "out"]


def test_strict_names_the_count_and_the_first_entries(tmp_path: Path) -> None:
    path = cases.unsafe_among_safe(tmp_path / "mixed.lbox")
    dest = tmp_path / "out"
    with _open(path) as box, pytest.raises(UnsafePathError) as exc:
        box.extract(dest)
    assert str(exc.value).startswith("skipped 2 unsafe entries (the rest was extracted): "
                                     "a/abs: absolute symlink target")
    assert (dest / "z" / "later" / "more.txt").exists()


def test_skipped_summary_lists_the_first_few() -> None:
    r = ExtractReport(skipped=[SkippedEntry(f"p{i}", "why") for i in range(5)])
    assert r.skipped_summary() == ("skipped 5 unsafe entries (the rest was extracted): "
                                   "p0: why; p1: why; p2: why; and 2 more")


def test_a_link_and_entries_below_it_never_write_through_the_link(tmp_path: Path) -> None:
    path = cases.symlink_then_children(tmp_path / "order.lbox")
    dest = tmp_path / "out"
    with _open(path) as box:
        report = box.extract(dest, strict=False)
    assert [s.path for s in report.skipped] == ["l"]
    assert (dest / "l").is_dir() and not (dest / "l").is_symlink()
    assert (dest / "l" / "x").read_bytes() == b"x"
    assert sorted(os.listdir(dest / "sub")) == ["y"]


def test_a_symlink_in_the_destination_is_never_followed(tmp_path: Path, make_archive) -> None:
    path = make_archive({"d/x": b"x", "e/y": b"y"})
    dest = tmp_path / "out"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "d")
    with _open(path) as box:
        # The archive's directory d conflicts with the link: refused before writing.
        with pytest.raises(StorageError, match=r"refusing to overwrite 1 existing entry .*: "
                                               r"d \(use --overwrite\)"):
            box.extract(dest)
        assert sorted(os.listdir(dest)) == ["d"]
        # Only d/x (d is not an entry then): skipped, as d is a link; e/y still extracted.
        report = box.extract(dest, ["d/x", "e/y"], strict=False)
        assert report.skipped == [SkippedEntry(
            "d/x", "d is a symlink in the destination: not followed")]
        assert (dest / "e" / "y").read_bytes() == b"y"
        # --overwrite replaces the link by a real directory.
        box.extract(dest, overwrite=True)
    assert os.listdir(outside) == []
    assert not (dest / "d").is_symlink() and (dest / "d" / "x").read_bytes() == b"x"


def test_conflicts_are_all_found_before_writing(tmp_path: Path, make_archive) -> None:
    path = make_archive({"a": b"1", "b": b"2", "c": b"3", "d": b"4", "e": b"5"})
    dest = tmp_path / "out"
    dest.mkdir()
    for name in "bcde":
        (dest / name).write_bytes(b"mine")
    with _open(path) as box, pytest.raises(StorageError) as exc:
        box.extract(dest)
    assert str(exc.value) == (f"refusing to overwrite 4 existing entries in {dest}: b, c, d "
                              "and 1 more (use --overwrite)")
    assert sorted(os.listdir(dest)) == list("bcde")  # a was not written either
    (dest / "f").mkdir()
    path2 = make_archive({"f": b"file"})
    with _open(path2) as box, pytest.raises(StorageError, match="refusing to replace 1 "
                                                                "existing directory"):
        box.extract(dest, overwrite=True)


def test_overlapping_paths_are_extracted_once(tmp_path: Path, make_archive) -> None:
    path = make_archive({"a/b/c": b"c", "a/d": b"d"})
    with _open(path) as box:
        report = box.extract(tmp_path / "out", ["a", "a/b", "a/b/c"])
    assert (report.files, report.dirs) == (2, 1)  # a/b (a itself is the path asked for)


# -- 6. the viewer's zip -------------------------------------------------------------------------


def test_viewer_zip_drops_links_leading_outside_the_folder(tmp_path: Path, new_box) -> None:
    from lockbox.sources import AsyncFileSource
    from lockbox.viewer.session import Session

    box, path = new_box
    with box.writer() as w:
        w.add_bytes("f/x.txt", b"x", mtime_ns=MTIME)
        w.symlink("f/ok", "x.txt", mtime_ns=MTIME)
        w.symlink("f/abs", "/etc/passwd", mtime_ns=MTIME)
        w.symlink("f/up", "..", mtime_ns=MTIME)  # the archive root: outside the folder f
        w.symlink("f/sub/l1", "..", mtime_ns=MTIME)  # f: inside
        w.symlink("f/sub/l2", "l1/..", mtime_ns=MTIME)  # through l1: outside
        w.symlink("f/sub/l3", "l1/sub", mtime_ns=MTIME)  # inside
        w.symlink("f/Dot", ".", mtime_ns=MTIME)  # inside
        w.symlink("f/case", "dot/..", mtime_ns=MTIME)  # outside where dot opens Dot
        w.add_bytes("other/y", b"y", mtime_ns=MTIME)

    async def go() -> tuple[dict, bytes]:
        s = Session()
        await s.open_source(AsyncFileSource(path), location=str(path), name=path.name,
                            kind="file")
        await s.unlock(password=cases.PASSWORD)
        opened = json.loads(await s.call("zip_open", json.dumps({"path": "f"})))["ok"]
        blob = b""
        while piece := await s.call_binary("stream_next",
                                           json.dumps({"handle": opened["handle"]})):
            assert isinstance(piece, bytes), piece
            blob += piece
        await s.close()
        return opened, blob

    opened, blob = asyncio.run(asyncio.wait_for(go(), 60))
    dropped = {d["path"]: (d["target"], d["reason"]) for d in opened["dropped_links"]}
    assert set(dropped) == {"f/abs", "f/up", "f/sub/l2", "f/case"}
    assert dropped["f/abs"] == ("/etc/passwd", "absolute symlink target (/etc/passwd)")
    assert "outside the folder" in dropped["f/up"][1]
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = sorted(zf.namelist())
        assert [n for n in names if n != "f/"] == ["f/Dot", "f/ok", "f/sub/", "f/sub/l1",
                                                   "f/sub/l3", "f/x.txt"], names
        assert zf.read("f/ok") == b"x.txt"


# -- 5. the write-behind thread (large files) ------------------------------------------------


def _big_items(size: int) -> tuple[list, dict[str, bytes]]:
    from lockbox.info import EntryInfo

    contents = {"big.bin": os.urandom(size), "d/also.bin": os.urandom(size // 2 + 7),
                "small.txt": b"small"}
    items = [EntryInfo("d", "dir", 0o755, MTIME)] + [
        EntryInfo(p, "file", 0o644, MTIME, size=len(c)) for p, c in contents.items()]
    return items, contents


def _pieces(contents: dict[str, bytes], piece: int, mutable: str = ""):
    def open_content(path: str):
        data = contents[path]
        buf = bytearray(piece)
        for i in range(0, len(data), piece):
            if mutable:  # one buffer, refilled for every piece (as a format may do)
                part = data[i:i + piece]
                buf[:len(part)] = part
                view = memoryview(buf)[:len(part)]
                yield view.toreadonly() if mutable == "readonly" else view
            else:
                yield memoryview(data)[i:i + piece]
    return open_content


@pytest.mark.parametrize("mutable", ["", "writable", "readonly"])
def test_write_behind_writes_the_same_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           mutable: str) -> None:
    monkeypatch.setattr(extract_mod, "_BEHIND_MIN_SIZE", 64 * 1024)
    monkeypatch.setattr(extract_mod, "_BEHIND_BYTES", 48 * 1024)  # the queue fills up
    items, contents = _big_items(1024 * 1024 + 3)
    trees = []
    for on in (False, True):
        monkeypatch.setattr(extract_mod, "WRITE_BEHIND", on)
        dest = tmp_path / f"out-{on}"
        report = extract_mod.Extractor(dest).run(items, _pieces(contents, 16 * 1024, mutable))
        assert report.files == 3 and report.file_bytes == sum(map(len, contents.values()))
        trees.append({p: (dest / p).read_bytes() for p in contents})
        assert sorted(os.listdir(dest / "d")) == ["also.bin"]  # no temporary file left
    assert trees[0] == trees[1] == contents


def test_write_behind_a_failed_write_is_a_storage_error_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    monkeypatch.setattr(extract_mod, "_BEHIND_MIN_SIZE", 64 * 1024)
    monkeypatch.setattr(extract_mod, "WRITE_BEHIND", True)
    items, contents = _big_items(1024 * 1024)
    real_write = os.write
    calls = 0

    def full_disk(fd: int, data) -> int:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    dest = tmp_path / "out"
    with pytest.raises(StorageError, match="No space left on device"):
        extract_mod.Extractor(dest).run(items, _pieces(contents, 16 * 1024))
    assert calls > 5 and not [p for p in dest.rglob("*") if not p.is_dir()]


def test_write_behind_an_integrity_error_leaves_no_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_mod, "_BEHIND_MIN_SIZE", 64 * 1024)
    monkeypatch.setattr(extract_mod, "WRITE_BEHIND", True)
    items, contents = _big_items(1024 * 1024)
    good = _pieces(contents, 16 * 1024)

    def tampered(path: str):
        yield from good(path)
        raise lockbox.IntegrityError(f"{path}: content does not match its BLAKE3 content hash")

    dest = tmp_path / "out"
    with pytest.raises(lockbox.IntegrityError):
        extract_mod.Extractor(dest).run(items, tampered)
    assert not [p for p in dest.rglob("*") if not p.is_dir()]


# -- 7. packed archives (small files sharing PACK frames) -------------------------------------


def _packed_archive(path: Path, n: int = 3000) -> dict[str, bytes]:
    """n small files (1.2 KiB of hex) over four folders, added interleaved: every pack
    (~1 MiB) holds files of every folder, so extraction (folder by folder) goes back and
    forth between the packs."""
    rnd = random.Random(7)
    files = {f"d{i % 4}/f{i:05d}.txt": rnd.randbytes(600).hex().encode() for i in range(n)}
    box = lockbox.create(path, password=cases.PASSWORD, argon2=WEAK)
    with box, box.writer() as w:
        for name, data in files.items():
            w.add_bytes(name, data, mtime_ns=MTIME)
    return files


def _packs(box: lockbox.Lockbox) -> dict[tuple[int, int], list[str]]:
    out: dict[tuple[int, int], list[str]] = {}
    for p, e in box.run(box.view.walk_flow("")):
        if e.type == EntryType.FILE:
            assert e.layout == LAYOUT_PACKED, p
            out.setdefault((e.refs[0].frame_offset, e.refs[0].frame_size), []).append(p)
    return out


def test_packed_small_files_open_each_pack_once(tmp_path: Path) -> None:
    files = _packed_archive(tmp_path / "p.lbox")
    with _open(tmp_path / "p.lbox") as box:
        packs = _packs(box)
        assert len(packs) >= 3
        list(box.iter_entries())  # the tree, read (and cached) as extract reads it
        read_before = box.source.stats.bytes_read
        report = box.extract(tmp_path / "out")
        assert report.files == len(files)
        assert box.view.packs_opened == len(packs)  # not one per file
        # each pack fetched once: a few tree reads at most besides
        fetched = box.source.stats.bytes_read - read_before
        assert fetched <= sum(size for _, size in packs) + 64 * 1024, fetched
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_a_damaged_pack_names_its_first_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "p.lbox"
    files = _packed_archive(path)
    with _open(path) as box:
        packs = _packs(box)
    (offset, size), members = sorted(packs.items())[1]
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        b = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([b[0] ^ 0x10]))
    dest = tmp_path / "out"
    with _open(path) as box, pytest.raises(lockbox.IntegrityError) as err:
        box.extract(dest)
    first = str(err.value).split(": ", 1)[0]  # the first of the pack's files extracted
    assert first in members, err.value
    # what came before it is whole; nothing half-written is left anywhere
    done = [p for p in dest.rglob("*") if p.is_file()]
    assert done and not [p for p in done if ".lbx-" in p.name]
    for p in done:
        assert p.read_bytes() == files[str(p.relative_to(dest))]
    assert not (dest / first).exists()
    # the other packs' files still extract, one by one
    other = next(p for k, v in sorted(packs.items()) if k[0] != offset for p in v)
    with _open(path) as box:
        box.extract(tmp_path / "one", [other])
    assert (tmp_path / "one" / other).read_bytes() == files[other]


# -- 8. the read order (files sharing stored frames: read where they are stored) --------------


def _items(files: dict[str, bytes], dirs: Sequence[str] = ()) -> list[EntryInfo]:
    out = [EntryInfo(d, "dir", 0o755, MTIME, 0, 0, "") for d in dirs]
    out += [EntryInfo(p, "file", 0o644, MTIME, len(b), 0, "") for p, b in files.items()]
    return out


def test_files_are_read_in_the_read_order_after_the_directories(tmp_path: Path) -> None:
    files = {f"d{i % 3}/sub/f{i:02d}": b"%d" % i * (i + 1) for i in range(12)}
    items = _items(files, ["d0", "d1", "d2", "d0/sub", "d1/sub", "d2/sub"])
    read: list[str] = []

    def content(path: str) -> Sequence[bytes]:
        read.append(path)
        return [files[path]]

    def order(given: list[EntryInfo]) -> list[EntryInfo]:
        assert [e.path for e in given] == sorted(files, key=lambda p: p.split("/"))
        return sorted(given, key=lambda e: e.path[-2:])  # the file number: across folders

    report = extract_mod.Extractor(tmp_path / "out").run(items, content, read_order=order)
    assert read == sorted(files, key=lambda p: p[-2:])
    assert (report.files, report.dirs) == (12, 6)
    for p, data in files.items():
        assert (tmp_path / "out" / p).read_bytes() == data
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "d1").st_mode) == 0o755
    assert os.stat(tmp_path / "out" / "d1" / "sub").st_mtime_ns == MTIME


def test_a_file_that_is_a_directory_of_another_entry_keeps_path_order(tmp_path: Path) -> None:
    """Hostile: file ``a`` and file ``a/b``. In path order ``a`` is written and ``a/b``
    skipped; reading ``a/b`` first would make a directory ``a`` and refuse the file."""
    files = {"a": b"file a", "a/b": b"below a file", "c": b"c"}
    called: list[int] = []

    def order(given: list[EntryInfo]) -> list[EntryInfo]:
        called.append(1)
        return given[::-1]

    report = extract_mod.Extractor(tmp_path / "out").run(
        _items(files), lambda p: [files[p]], read_order=order)
    assert not called
    assert (tmp_path / "out" / "a").read_bytes() == b"file a"
    assert [s.path for s in report.skipped] == ["a/b"]


def test_a_read_order_that_loses_a_file_is_a_bug(tmp_path: Path) -> None:
    files = {"a": b"a", "b": b"b"}
    with pytest.raises(ValueError, match="read_order"):
        extract_mod.Extractor(tmp_path / "out").run(
            _items(files), lambda p: [files[p]], read_order=lambda given: given[:1])
    assert not (tmp_path / "out" / "a").exists()


def test_packs_read_in_storage_order_open_once_even_with_a_small_pack_cache(
        tmp_path: Path) -> None:
    """An archive updated over time: each session added one file to every folder, so
    every pack holds a file of every folder. Folder by folder, with fewer packs kept
    opened than there are, each file opens a pack again; in storage order each pack is
    opened once."""
    from lockbox.cache import PageCache

    path = tmp_path / "p.lbox"
    rnd = random.Random(11)
    files: dict[str, bytes] = {}
    box = lockbox.create(path, password=cases.PASSWORD, argon2=WEAK)
    with box:
        for day in range(6):
            with box.writer() as w:
                for f in range(40):
                    name = f"f{f:02d}/day{day}.bin"
                    files[name] = rnd.randbytes(3000)
                    w.add_bytes(name, files[name], mtime_ns=MTIME)

    def storage_order(box: lockbox.Lockbox):  # what a .lbox session's read_order does
        def order(given: list[EntryInfo]) -> list[EntryInfo]:
            def key(info: EntryInfo) -> tuple[int, int]:
                e = box.run(box.view.stat_flow(info.path))
                return e.refs[0].frame_offset, e.member_no
            return sorted(given, key=key)
        return order

    for ordered in (False, True):
        with _open(path) as box:
            packs = _packs(box)
            assert len(packs) == 6
            box.view.packs = PageCache(3 * 40 * 3100)  # about 2 packs of 6
            items = list(box.iter_entries())
            dest = tmp_path / f"out-{ordered}"
            extract_mod.Extractor(dest).run(items, box.open_content,
                                            read_order=storage_order(box) if ordered else None)
            opened = box.view.packs_opened
        assert opened == (6 if ordered else len(files)), (ordered, opened)
        for name, data in files.items():
            assert (dest / name).read_bytes() == data
