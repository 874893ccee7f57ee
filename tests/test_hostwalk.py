"""write/hostwalk.py: adding files and trees from the host's file system."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import lockbox
from lockbox.errors import StorageError
from lockbox.formats.lbox.write import pipeline
from lockbox.formats.lbox.write.hostwalk import reading

CHUNK = 4096


def test_reading_translates_os_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageError, match=r"cannot read .*missing"):
        with reading(tmp_path / "missing"):
            pass
    (tmp_path / "f").write_bytes(b"abc")
    with reading(tmp_path / "f") as r:
        assert r.read(10) == b"abc"
        fd = r.fd
    with pytest.raises(OSError):
        os.fstat(fd)  # closed on the way out

    def failing(fd: int, n: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "read", failing)
    with pytest.raises(StorageError, match=r"cannot read .*f: Input/output error"):
        with reading(tmp_path / "f") as r:
            r.read(1)


def test_a_file_that_grows_after_the_walk_is_streamed_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weak_argon2) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "grows.bin").write_bytes(b"a" * 100)
    (src / "same.txt").write_bytes(b"same")
    real = pipeline.prepare_rows

    def growing(batch, *args):  # type: ignore[no-untyped-def]
        with open(src / "grows.bin", "ab") as f:  # past one chunk before it is read
            f.write(b"b" * (3 * CHUNK))
        return real(batch, *args)

    monkeypatch.setattr(pipeline, "prepare_rows", growing)
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=CHUNK)
    with box:
        with box.writer() as w:
            assert w.add_tree(src, "t") == 3  # seen by the worker's fstat: LARGE
        assert box.read_bytes("t/grows.bin") == b"a" * 100 + b"b" * (3 * CHUNK)
        assert box.read_bytes("t/same.txt") == b"same"
        (src / "grows.bin").write_bytes(b"a" * 100)
        with box.writer() as w:  # lstat-ed by the walk (a file given itself): GROWN
            assert w.add_tree(src / "grows.bin", "g.bin") == 1
        assert box.read_bytes("g.bin") == b"a" * 100 + b"b" * (3 * CHUNK)


def test_skipped_entries_are_reported(tmp_path: Path, weak_argon2) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"f")
    os.mkfifo(src / "fifo")
    arch = src / "a.lbox"  # the archive inside the tree it adds
    box = lockbox.create(arch, password="pw", argon2=weak_argon2, chunk_size=CHUNK)
    skipped: list[tuple[str, str]] = []
    st = arch.stat()
    with box:
        with box.writer() as w:
            n = w.add_tree(src, on_skip=lambda h, why: skipped.append((Path(h).name, why)),
                           exclude=[(st.st_dev, st.st_ino)])
        assert n == 1 and [e.path for e in box.ls(recursive=True)] == ["f.txt"]
    assert sorted(skipped) == [("a.lbox", "it is the archive being written"),
                               ("fifo", "not a regular file, directory or symlink")]


def test_the_collector_is_paused_during_a_walk_and_restored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weak_argon2) -> None:
    import gc

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.txt").write_bytes(b"x" * i)
    seen: list[bool] = []
    real = pipeline.prepare_rows

    def watching(batch, *args):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return real(batch, *args)

    monkeypatch.setattr(pipeline, "prepare_rows", watching)
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=CHUNK)
    assert gc.isenabled()
    with box:
        with box.writer() as w:
            assert w.add_tree(src, "t", jobs=1) == 6
            assert seen and not any(seen) and gc.isenabled()
            os.unlink(src / "f0.txt")  # a file gone before it is read: a typed error
            monkeypatch.setattr(pipeline, "prepare_rows", lambda b, *args: (
                [], [pipeline.Prepared(pipeline.FAILED, f[2], f[3], b"", 0, b"", 0, b"",
                                       error=f"cannot read {f[0]}: gone") for f in b]))
            with pytest.raises(StorageError, match="gone"):
                w.add_tree(src, "u", jobs=1)
            assert gc.isenabled()
        assert box.read_bytes("t/f4.txt") == b"xxxx"
    monkeypatch.setattr(pipeline, "prepare_rows", real)
    gc.disable()
    try:  # a caller's own pause stays theirs
        with lockbox.open(tmp_path / "a.lbox", password="pw") as box, box.writer() as w:
            w.add_tree(src / "f2.txt", "v.txt", jobs=1)
        assert not gc.isenabled()
    finally:
        gc.enable()
