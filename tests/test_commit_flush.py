"""The commit's early flush (write/commit.py ``_EarlyFlush``): an fsync of what the
session wrote, begun on a thread as the commit starts; the commit's own fsyncs still
come after every page and the slot, and the early one's error is the commit's."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import lockbox
from lockbox.errors import CommitError
from lockbox.formats.lbox.write import commit as commit_mod

FLUSH_THREAD = "lockbox-commit-flush"


def _archive(tmp_path: Path, weak_argon2) -> Path:
    path = tmp_path / "a.lbox"
    with lockbox.create(path, password="pw", argon2=weak_argon2) as box, box.writer() as w:
        w.add_bytes("keep.txt", b"committed before " * 100)
    return path


def _spy(monkeypatch: pytest.MonkeyPatch, fail_flush: bool = False) -> list[str]:
    """Record each fsync as the thread that made it (and fail the flush's once)."""
    real = os.fsync
    calls: list[str] = []

    def fsync(fd: int) -> None:
        name = threading.current_thread().name
        calls.append(name)
        if fail_flush and name == FLUSH_THREAD:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_a_large_commit_flushes_early_then_fsyncs_as_before(tmp_path, weak_argon2,
                                                            monkeypatch):
    path = _archive(tmp_path, weak_argon2)
    monkeypatch.setattr(commit_mod, "EARLY_FLUSH_AFTER", 64 * 1024)
    data = os.urandom(256 * 1024)
    with lockbox.open(path, password="pw") as box:
        calls = _spy(monkeypatch)
        with box.writer() as w:
            w.add_bytes("big.bin", data)
        monkeypatch.undo()
    assert calls[0] == FLUSH_THREAD and calls.count(FLUSH_THREAD) == 1
    assert calls.count(threading.current_thread().name) >= 2  # pages, then the slot
    with lockbox.open(path, password="pw") as box:
        assert box.read_bytes("big.bin") == data
        assert box.verify().ok


def test_a_small_commit_starts_no_flush(tmp_path, weak_argon2, monkeypatch):
    path = _archive(tmp_path, weak_argon2)
    with lockbox.open(path, password="pw") as box:
        calls = _spy(monkeypatch)
        with box.writer() as w:
            w.add_bytes("small.txt", b"x" * 100)
        monkeypatch.undo()
    assert FLUSH_THREAD not in calls and calls


def test_the_early_flushs_error_fails_the_commit_before_its_slot(tmp_path, weak_argon2,
                                                                 monkeypatch):
    """An fsync error is reported once per open file: if the flush's error were dropped,
    the commit's own fsync could succeed over pages that never reached the disk."""
    path = _archive(tmp_path, weak_argon2)
    monkeypatch.setattr(commit_mod, "EARLY_FLUSH_AFTER", 0)
    with lockbox.open(path, password="pw") as box:
        _spy(monkeypatch, fail_flush=True)
        with pytest.raises(CommitError, match="fsync failed"), box.writer() as w:
            w.add_bytes("new.bin", b"never committed")
        monkeypatch.undo()
    with lockbox.open(path, password="pw") as box:
        assert not box.exists("new.bin")
        assert box.read_bytes("keep.txt") == b"committed before " * 100
        assert box.verify().ok


def test_without_threads_the_commit_fsyncs_alone(tmp_path, weak_argon2, monkeypatch):
    path = _archive(tmp_path, weak_argon2)
    monkeypatch.setattr(commit_mod, "EARLY_FLUSH", False)
    monkeypatch.setattr(commit_mod, "EARLY_FLUSH_AFTER", 0)
    with lockbox.open(path, password="pw") as box:
        calls = _spy(monkeypatch)
        with box.writer() as w:
            w.add_bytes("b.bin", os.urandom(100_000))
        monkeypatch.undo()
    assert FLUSH_THREAD not in calls
