"""lockbox.fileio: the write path's one boundary for local file I/O (positioned writes,
fsync, atomic publication of whole files), OSError always translated."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from lockbox.errors import CommitError, StorageError
from lockbox.fileio import (
    atomic_file,
    fsync,
    fsync_dir,
    pwrite_all,
    replace_atomically,
    temp_path,
    write_atomically,
)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync call synced: "dir" or "file"."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_write_atomically_creates_durably_and_never_replaces_unasked(tmp_path: Path,
                                                                     synced: list[str]) -> None:
    target = tmp_path / "a.bin"
    write_atomically(str(target), b"one", overwrite=False, tag="t")
    assert target.read_bytes() == b"one" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert synced == ["file", "dir"]  # the content, then the new name
    with pytest.raises(StorageError, match="already exists"):
        write_atomically(str(target), b"two", overwrite=False, tag="t")
    assert target.read_bytes() == b"one"
    write_atomically(str(target), bytearray(b"two"), overwrite=True, tag="t", mode=0o644)
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == ["a.bin"]


def test_atomic_file_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError), atomic_file(str(target), overwrite=True) as fd:
        os.write(fd, b"half")
        assert os.path.exists(temp_path(str(target), "tmp"))
        raise ValueError("the caller's own failure")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == ["a.bin"]
    with pytest.raises(StorageError, match=r"^making a\.bin: .*Bad file descriptor"), \
            atomic_file(str(target), overwrite=True, what="making a.bin") as fd:
        os.close(fd)
        os.write(fd, b"x")  # an OSError in the body: translated, with ``what``
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == ["a.bin"]


def test_fsync_failure_raises_the_callers_error_class(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        monkeypatch.setattr(os, "fsync", failing)
        with pytest.raises(StorageError, match="fsync failed: Input/output error"):
            fsync(fd)
        with pytest.raises(CommitError, match="fsync failed"):
            fsync(fd, error=CommitError)
        with pytest.raises(StorageError, match="cannot sync the directory"):
            fsync_dir(str(tmp_path))
        with pytest.raises(StorageError, match="cannot create"):
            write_atomically(str(tmp_path / "g"), b"g", overwrite=False)
        assert _leftovers(tmp_path) == ["f"]
    finally:
        os.close(fd)


def test_replace_atomically(tmp_path: Path, synced: list[str]) -> None:
    target, tmp = tmp_path / "a.bin", tmp_path / ".a.tmp"
    target.write_bytes(b"old")
    tmp.write_bytes(b"new")
    replace_atomically(str(tmp), str(target))
    assert target.read_bytes() == b"new" and _leftovers(tmp_path) == ["a.bin"]
    assert synced == ["file", "dir"]
    with pytest.raises(StorageError, match=r"^compacting failed: "):
        replace_atomically(str(tmp), str(target), what="compacting failed")  # tmp is gone
    with pytest.raises(StorageError, match="cannot sync the directory"):
        fsync_dir(str(tmp_path / "missing"))


def test_pwrite_all_translates_errors(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(StorageError, match="writing the archive failed"):
            pwrite_all(fd, b"x", 0)
    finally:
        os.close(fd)


def test_temp_path_is_a_hidden_sibling(tmp_path: Path) -> None:
    p = temp_path(str(tmp_path / "x.lbox"), "lbx-new")
    assert os.path.dirname(p) == str(tmp_path)
    assert os.path.basename(p) == f".x.lbox.{os.getpid()}.lbx-new"


def test_start_writeback_is_only_a_hint(tmp_path: Path) -> None:
    from lockbox.fileio import start_writeback

    p = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pwrite_all(fd, data, 0)
        start_writeback(fd, 0, len(data))
        start_writeback(fd, 1024, 0)
        start_writeback(fd, 0, 1 << 40)  # past the end: nothing to do
    finally:
        os.close(fd)
    start_writeback(fd, 0, 4096)  # a closed descriptor: ignored, never raised
    assert p.read_bytes() == data
