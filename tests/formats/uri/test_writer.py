"""lockbox.formats.uri.writer: write_uri from a directory and from (EntryInfo, content)
pairs -- deterministic order, what cannot be stored, atomic output, bounded memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockbox.errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    StorageError,
    UsageError,
)
from lockbox.formats.uri import WriteReport, write_uri
from lockbox.formats.uri import writer as writer_mod
from lockbox.formats.uri.writer import session_entries
from lockbox.info import EntryInfo
from lockbox.sources import FileSource

from . import VECTORS, open_session, walk_all
from . import independent as ind

KiB, MiB = 1024, 1024 * 1024


def make_tree(root: Path, order: list[str] | None = None) -> Path:
    """A small tree; ``order`` creates the same files in another order."""
    files = {"b.txt": b"bee", "a-c": b"dash", "a/b": b"nested", "a/z/deep.txt": b"deep",
             "\u00fcber": b"umlaut", "Z": b"upper", "empty": b""}
    names = order or list(files)
    root.mkdir()
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[name])
        os.chmod(p, 0o644)
    for d in (root / "a", root / "a" / "z"):
        os.chmod(d, 0o755)
    return root


def entries_of(path: Path) -> list[ind.Entry]:
    return ind.read(path.read_bytes())  # the strict independent reader


def no_leftovers(directory: Path) -> bool:
    return not [p for p in os.listdir(directory) if p.endswith(".part")]


def test_directory_order_is_depth_first_by_name_bytes(tmp_path):
    root = make_tree(tmp_path / "t")
    report = write_uri(tmp_path / "out.uri", root)
    paths = [e.path for e in entries_of(tmp_path / "out.uri")]
    assert paths == [b"Z", b"a", b"a/b", b"a/z", b"a/z/deep.txt", b"a-c", b"b.txt", b"empty",
                     "über".encode()]
    assert (report.files, report.dirs, report.symlinks) == (7, 2, 0)
    assert report.file_bytes == 3 + 4 + 6 + 4 + 6 + 5
    assert report.archive_size == (tmp_path / "out.uri").stat().st_size
    assert report.notes == ["modification times of 9 entries not kept (the .uri format has "
                            "none)"]


def test_the_same_tree_always_gives_the_same_bytes(tmp_path):
    a = make_tree(tmp_path / "one")
    b = make_tree(tmp_path / "two", order=["empty", "a/z/deep.txt", "Z", "\u00fcber", "a/b",
                                           "b.txt", "a-c"])
    os.utime(b / "Z", (0, 0))  # times are not stored
    write_uri(tmp_path / "1.uri", a)
    write_uri(tmp_path / "2.uri", b)
    assert (tmp_path / "1.uri").read_bytes() == (tmp_path / "2.uri").read_bytes()


def test_modes_owners_symlinks_and_non_utf8_names(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "run").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "run", 0o4750)
    (root / "sub").mkdir()
    os.symlink("../run", root / "sub" / "link")
    os.symlink("/", root / "sub" / "abs")  # stored as is: a link to a directory, not followed
    odd = os.fsencode(root) + b"/caf\xe9"
    with open(odd, "wb") as f:
        f.write(b"latin-1")
    write_uri(tmp_path / "o.uri", root)
    got = {e.path: e for e in entries_of(tmp_path / "o.uri")}
    assert set(got) == {b"caf\xe9", b"run", b"sub", b"sub/abs", b"sub/link"}
    assert got[b"run"].mode == 0o4750 and got[b"sub/link"].data == b"../run"
    assert got[b"sub/abs"].kind == b"SLNK" and got[b"sub/abs"].data == b"/"
    import pwd

    assert got[b"run"].owner == pwd.getpwuid(os.getuid()).pw_name.encode()
    src = FileSource(tmp_path / "o.uri")
    listed = {e.path: e for e in walk_all(open_session(src), src)}
    assert listed["caf\udce9"].size == 7 and listed["sub/link"].target == "../run"


def test_special_files_are_skipped_and_reported_or_refused(tmp_path):
    root = make_tree(tmp_path / "t")
    os.mkfifo(root / "a" / "pipe")
    report = write_uri(tmp_path / "o.uri", root)
    assert [str(s) for s in report.skipped] == [
        "a/pipe: a fifo: the .uri format stores only files, directories and symlinks"]
    assert b"a/pipe" not in [e.path for e in entries_of(tmp_path / "o.uri")]
    with pytest.raises(UsageError, match="a/pipe: a fifo"):
        write_uri(tmp_path / "strict.uri", root, strict=True)
    assert not (tmp_path / "strict.uri").exists() and no_leftovers(tmp_path)


def test_prefix_puts_everything_under_a_top_directory(tmp_path):
    root = make_tree(tmp_path / "t")
    os.chmod(root, 0o750)
    write_uri(tmp_path / "o.uri", root, prefix="proj/v1")
    es = entries_of(tmp_path / "o.uri")
    assert [e.path for e in es[:3]] == [b"proj", b"proj/v1", b"proj/v1/Z"]
    assert es[0].kind == b"DIR " and es[1].mode == 0o750
    assert all(e.path.startswith(b"proj") for e in es)


def test_existing_destination_and_overwrite(tmp_path):
    root = make_tree(tmp_path / "t")
    (tmp_path / "o.uri").write_bytes(b"old")
    with pytest.raises(UsageError, match="exists"):
        write_uri(tmp_path / "o.uri", root)
    assert (tmp_path / "o.uri").read_bytes() == b"old"
    write_uri(tmp_path / "o.uri", root, overwrite=True)
    assert len(entries_of(tmp_path / "o.uri")) == 9
    with pytest.raises(UsageError, match="not a directory"):
        write_uri(tmp_path / "x.uri", tmp_path / "o.uri")
    with pytest.raises(UsageError, match="is a directory"):
        write_uri(root, root)


def test_destination_inside_the_tree_is_left_out(tmp_path):
    root = make_tree(tmp_path / "t")
    write_uri(root / "self.uri", root)  # the temporary file is not archived
    assert b"self.uri" not in [e.path for e in entries_of(root / "self.uri")]
    report = write_uri(root / "self.uri", root, overwrite=True)  # nor the old archive
    assert [str(s) for s in report.skipped] == ["self.uri: the archive being replaced"]
    assert b"self.uri" not in [e.path for e in entries_of(root / "self.uri")]
    assert no_leftovers(root)


def test_a_file_changing_size_while_copied_aborts_cleanly(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "t")
    real = writer_mod._read_pieces

    def shrinking(fd: int, size: int):
        yield from real(fd, max(size - 1, 0))

    monkeypatch.setattr(writer_mod, "_read_pieces", shrinking)
    with pytest.raises(StorageError, match="changed size while being archived"):
        write_uri(tmp_path / "o.uri", root)
    assert not (tmp_path / "o.uri").exists() and no_leftovers(tmp_path)
    monkeypatch.setattr(writer_mod, "_read_pieces", real)

    def growing(fd: int, size: int):
        yield from real(fd, size)
        os.write(os.open(root / "b.txt", os.O_WRONLY | os.O_APPEND), b"more")

    monkeypatch.setattr(writer_mod, "_read_pieces", growing)
    with pytest.raises(StorageError, match="changed size"):
        write_uri(tmp_path / "o.uri", root)
    assert not (tmp_path / "o.uri").exists() and no_leftovers(tmp_path)


def test_a_large_file_is_streamed_in_bounded_memory(tmp_path):
    import tracemalloc

    root = tmp_path / "t"
    root.mkdir()
    with open(root / "big", "wb") as f:
        f.truncate(96 * MiB)  # sparse: cheap to make, 96 MiB to copy
    tracemalloc.start()
    try:
        report = write_uri(tmp_path / "o.uri", root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.file_bytes == 96 * MiB
    assert peak < 8 * MiB, peak
    src = FileSource(tmp_path / "o.uri")
    s = open_session(src)
    from lockbox.drivers import run_sync

    assert run_sync(s.verify_flow(), src).ok


# ------------------------------------------------------------------------ from entries


def info(path: str, type_: str = "file", size: int = 0, **kw: object) -> EntryInfo:
    mode = kw.pop("mode", 0o755 if type_ == "dir" else 0o644)
    return EntryInfo(path, type_, mode, kw.pop("mtime_ns", 0), size, size,  # type: ignore[arg-type]
                     **kw)  # type: ignore[arg-type]


def test_entries_missing_parents_are_added_and_reported(tmp_path):
    pairs = [(info("a/b/c.txt", size=3), [b"a", b"bc"]), (info("a/d", "dir"), None),
             (info("a/b/l", "symlink", target="c.txt"), None), (info("", "dir"), None)]
    report = write_uri(tmp_path / "o.uri", pairs)
    es = entries_of(tmp_path / "o.uri")
    assert [(e.kind, e.path) for e in es] == [(b"DIR ", b"a"), (b"DIR ", b"a/b"),
                                             (b"FILE", b"a/b/c.txt"), (b"DIR ", b"a/d"),
                                             (b"SLNK", b"a/b/l")]
    assert es[2].data == b"abc"
    assert report.notes == ["added 2 missing parent directories (mode 0755): 'a', 'a/b'"]


def test_entries_that_cannot_be_stored(tmp_path):
    with pytest.raises(InvalidPathError, match="twice"):
        write_uri(tmp_path / "o.uri", [(info("a"), []), (info("a"), [])])
    for bad in ("../x", "/abs", "a//b", "a/./b", "a\x00b"):
        with pytest.raises(InvalidPathError):
            write_uri(tmp_path / "o.uri", [(info(bad), [])])
    with pytest.raises(InvalidPathError, match="not a directory"):
        write_uri(tmp_path / "o.uri", [(info("f"), []), (info("f/x"), [])])
    with pytest.raises(FormatError, match="says 5 bytes"):
        write_uri(tmp_path / "o.uri", [(info("f", size=5), [b"abc"])])
    with pytest.raises(FormatError, match="has more"):
        write_uri(tmp_path / "o.uri", [(info("f", size=2), [b"abc"])])
    assert not (tmp_path / "o.uri").exists() and no_leftovers(tmp_path)
    report = write_uri(tmp_path / "o.uri", [
        (info("p", "fifo"), None), (info("l", "symlink", target=""), None),
        (info("f", size=1, owner="x" * 33, group="g", mtime_ns=5), [b"1"])])
    assert [str(s) for s in report.skipped] == [
        "l: symlink target is empty or contains NUL",
        "p: a fifo: the .uri format stores only files, directories and symlinks"]
    assert report.notes == [
        "modification times of 1 entries not kept (the .uri format has none)",
        "owner/group names of 1 entries stored empty (unknown, longer than 32 bytes, or "
        "containing NUL)"]
    (e,) = entries_of(tmp_path / "o.uri")
    assert (e.owner, e.group) == (b"", b"g")


def test_convert_uri_to_uri_through_session_entries_is_byte_identical(tmp_path):
    golden = VECTORS / "golden" / "tree.uri"
    with FileSource(golden) as src:
        s = open_session(src, data_window_size=4096)
        report = write_uri(tmp_path / "copy.uri", session_entries(s, src))
    assert (tmp_path / "copy.uri").read_bytes() == golden.read_bytes()
    assert isinstance(report, WriteReport) and report.notes == [] and report.skipped == []


def test_session_entries_without_stream_flow_reads_windows(tmp_path):
    golden = VECTORS / "golden" / "tree.uri"

    class Plain:  # a session with only the protocol's flows
        def __init__(self, inner):
            self.inner = inner

        def walk_flow(self, path, emit):
            return self.inner.walk_flow(path, emit)

        def read_flow(self, path, offset, size):
            return self.inner.read_flow(path, offset, size)

    with FileSource(golden) as src:
        write_uri(tmp_path / "copy.uri", session_entries(Plain(open_session(src)), src))
    assert (tmp_path / "copy.uri").read_bytes() == golden.read_bytes()


def test_a_damaged_source_archive_leaves_nothing_behind(tmp_path):
    data = bytearray((VECTORS / "golden" / "tree.uri").read_bytes())
    data[len(data) // 2] ^= 1  # inside docs/sub/big.bin's data
    (tmp_path / "bad.uri").write_bytes(bytes(data))
    with FileSource(tmp_path / "bad.uri") as src:
        s = open_session(src, data_window_size=4096)
        with pytest.raises(IntegrityError, match=r"big\.bin"):
            write_uri(tmp_path / "copy.uri", session_entries(s, src))
    assert not (tmp_path / "copy.uri").exists() and no_leftovers(tmp_path)
    root = make_tree(tmp_path / "t")
    write_uri(os.fsencode(tmp_path / "b.uri"), os.fsencode(root))  # bytes paths work too
    assert len(entries_of(tmp_path / "b.uri")) == 9
