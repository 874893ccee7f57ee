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
    real = pipeline.prepare_batch

    def growing(batch, chunk_size, level):  # type: ignore[no-untyped-def]
        with open(src / "grows.bin", "ab") as f:  # past one chunk before it is read
            f.write(b"b" * (3 * CHUNK))
        return real(batch, chunk_size, level)

    monkeypatch.setattr(pipeline, "prepare_batch", growing)
    box = lockbox.create(tmp_path / "a.lbox", password="pw", argon2=weak_argon2,
                         chunk_size=CHUNK)
    with box:
        with box.writer() as w:
            assert w.add_tree(src, "t") == 3
        assert box.read_bytes("t/grows.bin") == b"a" * 100 + b"b" * (3 * CHUNK)
        assert box.read_bytes("t/same.txt") == b"same"


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
