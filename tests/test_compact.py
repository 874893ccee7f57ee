"""Compaction: a logical rewrite that keeps every secret working, shrinks the file,
refuses without disk space and never touches the original on failure."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import pytest

import lockbox
from lockbox.formats.lbox.keys import Identity
from lockbox.platform import default_crypto

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)


def snapshot(box: lockbox.Lockbox) -> dict:
    return {
        "entries": {e.path: (e.type, e.mode, e.mtime_ns, e.blake3, e.target)
                    for e in box.ls(recursive=True)},
        "env": box.env_items(),
        "contents": {e.path: box.read_bytes(e.path) for e in box.ls(recursive=True)
                     if e.is_file},
    }


@pytest.fixture
def fragmented(tmp_path: Path) -> tuple[Path, Identity]:
    ident = Identity.generate(default_crypto())
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", recipients=[ident.recipient(default_crypto())],
                         argon2=WEAK, chunk_size=4096)
    with box.writer() as w:
        for i in range(120):
            w.add_bytes(f"d{i % 7}/f{i:03d}", os.urandom(500 + 37 * i))
        w.add_bytes("big.bin", os.urandom(150_000))  # index layout (> 8 chunks)
        w.symlink("d0/link", "f000")
        w.mkdir("empty")
        w.env_set("TOKEN", "s3cret")
    with box.writer() as w:
        for i in range(0, 120, 3):
            w.remove(f"d{i % 7}/f{i:03d}")
        w.add_bytes("big.bin", os.urandom(90_000))
        w.move("d1", "moved/d1")
    box.close()
    return path, ident


def test_compact_keeps_everything_and_shrinks(fragmented):
    path, ident = fragmented
    box = lockbox.open(path, password="pw")
    before = snapshot(box)
    free, _ = box.reclaimable()
    assert free > 0
    size = path.stat().st_size
    report = box.compact()
    assert report.size_before == size and report.size_after == path.stat().st_size
    assert report.size_after < size
    assert snapshot(box) == before  # the same Lockbox reads the new file
    assert box.verify().ok
    assert box.reclaimable()[0] < free
    for secret in ({"password": "pw"}, {"identity": ident}):
        again = lockbox.open(path, **secret)
        assert snapshot(again) == before and again.verify().ok
        again.close()
    assert sorted(os.listdir(path.parent)) == ["a.lbox"]  # no temporary file left
    with box.writer() as w:  # and it is writable afterwards
        w.add_bytes("after.txt", b"ok")
    assert lockbox.open(path, password="pw").read_bytes("after.txt") == b"ok"


def test_compact_refuses_without_disk_space(fragmented, monkeypatch):
    path, _ = fragmented
    original = path.read_bytes()
    box = lockbox.open(path, password="pw")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda p: usage(10, 10, 0))
    with pytest.raises(lockbox.StorageError, match="free disk space"):
        box.compact()
    assert path.read_bytes() == original
    assert sorted(os.listdir(path.parent)) == ["a.lbox"]


def test_compact_failure_leaves_the_original_untouched(fragmented, monkeypatch):
    path, _ = fragmented
    original = path.read_bytes()
    box = lockbox.open(path, password="pw")
    from lockbox.formats.lbox.write.writer import Writer

    calls = {"n": 0}
    real = Writer.copy_file

    def failing(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 20:
            raise OSError(28, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(Writer, "copy_file", failing)
    with pytest.raises(lockbox.StorageError, match="compaction failed"):
        box.compact()
    assert path.read_bytes() == original
    assert sorted(os.listdir(path.parent)) == ["a.lbox"]
    assert lockbox.open(path, password="pw").verify().ok
