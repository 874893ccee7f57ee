"""The space map: redaction of freed frames, page reuse, the legacy rebuild, and the
map's own consistency (every page accounted for, live bytes matching the refs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lockbox
from lockbox.formats.lbox.wire.constants import FrameKind
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED
from lockbox.formats.lbox.write.space import FRAMES, FREE
from lockbox.formats.lbox.write.spacekeeper import SpaceKeeper

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)


def new_box(tmp_path: Path, **kw) -> tuple[lockbox.Lockbox, Path]:
    path = tmp_path / "a.lbox"
    return lockbox.create(path, password="pw", argon2=WEAK, **kw), path


def content_refs(box: lockbox.Lockbox, path: str):
    entry = box.run(box.view.stat_flow(path))
    return box.run(box.view.content_refs_flow(entry))


def load_map(box: lockbox.Lockbox, path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return SpaceKeeper(fd, box.run).load(box.view)
    finally:
        os.close(fd)


def check_map(box: lockbox.Lockbox, path: Path) -> None:
    """Every page is recorded, and each FRAMES page's live bytes equal the sizes of
    the frames the commit references in it."""
    space, tail = load_map(box, path)
    assert space.check_cover(tail) == ""
    data = path.read_bytes()
    for off, size in space.dead.items():  # what the commit freed was zeroed after it
        assert data[off:off + size] == bytes(size)
    live: dict[int, int] = {}
    refs = []
    c = box.view.commit
    refs += box.run(box.view.node_refs_flow(FrameKind.TOC_NODE, c.toc))
    refs += box.run(box.view.node_refs_flow(FrameKind.ENV_NODE, c.env))
    packs: dict[int, list[int]] = {}  # a PACK frame is live once, whatever its entries
    for e in box.ls(recursive=True):
        if e.is_file:
            entry = box.run(box.view.stat_flow(e.path))
            if entry.layout == LAYOUT_PACKED:
                ref = entry.refs[0]
                packs.setdefault(ref.frame_offset, [ref.frame_size, 0])[1] += 1
            refs += content_refs(box, e.path)
    assert {o: [p.frame_size, p.entries] for o, p in space.packs.items()} == packs
    for r in {r.frame_offset: r for r in refs}.values():
        page = space.page_of(r.frame_offset)
        live[page] = live.get(page, 0) + r.frame_size
    for off, rec in space.pages.items():
        if rec.kind == FRAMES:
            assert rec.live == live.get(off, 0), off
        if rec.kind == FREE:
            assert off not in live
    assert box.verify().ok


def test_removed_file_is_redacted(tmp_path):
    box, path = new_box(tmp_path)
    secret = os.urandom(200_000)
    with box.writer() as w:
        w.add_bytes("keep.txt", b"keep me")
        w.add_bytes("secret.bin", secret)
    refs = content_refs(box, "secret.bin")
    data = path.read_bytes()
    for r in refs:
        assert data[r.frame_offset:r.frame_offset + r.frame_size].count(0) < r.frame_size // 2
    with box.writer() as w:
        w.remove("secret.bin")
    data = path.read_bytes()
    for r in refs:  # the ciphertext is gone, not just unreferenced
        assert data[r.frame_offset:r.frame_offset + r.frame_size] == bytes(r.frame_size)
    assert box.read_bytes("keep.txt") == b"keep me"
    check_map(box, path)


def test_replaced_file_and_old_tree_nodes_are_redacted(tmp_path):
    box, path = new_box(tmp_path)
    with box.writer() as w:
        for i in range(300):
            w.add_bytes(f"d/f{i:03d}", b"v1-%d" % i * 50)
    old = [r for i in range(0, 300, 37) for r in content_refs(box, f"d/f{i:03d}")]
    old_nodes = box.run(box.view.node_refs_flow(FrameKind.TOC_NODE, box.view.commit.toc))
    with box.writer() as w:
        for i in range(0, 300, 37):
            w.add_bytes(f"d/f{i:03d}", b"v2")
    data = path.read_bytes()
    new_nodes = {r.frame_offset for r in
                 box.run(box.view.node_refs_flow(FrameKind.TOC_NODE, box.view.commit.toc))}
    for r in old + [n for n in old_nodes if n.frame_offset not in new_nodes]:
        span = data[r.frame_offset:r.frame_offset + r.frame_size]
        # zeroed, or (reused) holding some other frame now
        assert span == bytes(r.frame_size) or r.frame_offset in new_nodes or \
            span[:4] == b"LBXF"
    assert box.read_bytes("d/f037") == b"v2"
    check_map(box, path)


def test_freed_pages_are_reused(tmp_path):
    box, path = new_box(tmp_path)
    with box.writer() as w:
        w.add_bytes("small.txt", b"x" * 100)
        w.add_bytes("big1.bin", os.urandom(3 << 20))
    size1 = path.stat().st_size
    with box.writer() as w:
        w.remove("big1.bin")
    with box.writer() as w:
        w.add_bytes("big2.bin", os.urandom(2 << 20))
    assert path.stat().st_size <= size1 + 16384  # the freed extent was used
    space, _ = load_map(box, path)
    assert box.info().archive_end == path.stat().st_size
    assert len(box.read_bytes("big2.bin")) == 2 << 20
    check_map(box, path)
    assert space.reclaimable_bytes() < (2 << 20)


def test_removed_key_slot_leaves_no_copy(tmp_path):
    box, path = new_box(tmp_path)
    with box.writer() as w:
        sid = w.add_password("temporary", WEAK)
        w.add_bytes("f", b"1")
    slot = next(s for s in box.view.key_slots if s.slot_id == sid)
    needle = slot.salt
    assert path.read_bytes().count(needle) >= 2  # in the slot and the KEYDIR page copy
    with box.writer() as w:
        w.remove_slot(sid)
    assert path.read_bytes().count(needle) == 0
    with pytest.raises(lockbox.WrongKeyError):
        lockbox.open(path, password="temporary")
    check_map(box, path)


def test_many_commits_keep_the_map_consistent(tmp_path):
    box, path = new_box(tmp_path, chunk_size=4096)
    rng = __import__("random").Random(7)
    names = [f"n{i}" for i in range(12)]
    present: dict[str, bytes] = {}
    for _ in range(25):
        with box.writer() as w:
            for _ in range(rng.randint(1, 4)):
                name = rng.choice(names)
                if name in present and rng.random() < 0.4:
                    w.remove(name)
                    del present[name]
                else:
                    data = os.urandom(rng.choice([10, 5000, 40_000]))
                    w.add_bytes(name, data)
                    present[name] = data
            w.env_set("N", str(len(present)))
    check_map(box, path)
    reopened = lockbox.open(path, password="pw")
    assert {e.path: reopened.read_bytes(e.path) for e in reopened.ls()} == present


def strip_space_map(box: lockbox.Lockbox, path: Path) -> None:
    """Rewrite the newest commit as the first format revision wrote it: no space map
    (the map's own pages become unreferenced tail pages, like garbage)."""
    import dataclasses

    from lockbox.formats.lbox.frames import FrameSealer
    from lockbox.formats.lbox.wire.commit import encode_commit
    from lockbox.formats.lbox.wire.superblock import Slot, encode_slot, slot_offset

    view = box.view
    record = dataclasses.replace(view.commit, space=None)
    sealer = FrameSealer(box.crypto, box.codec, view.archive_id, box.content_key)
    frame, _ = sealer.seal(FrameKind.COMMIT, record.generation, view.slot.commit_frame_offset,
                           sealer.encode_plain(encode_commit(record), compress=False))
    slot = Slot(view.slot.slot_no, view.archive_id, record.generation, view.slot.keydir, frame)
    with open(path, "r+b") as f:
        f.seek(slot_offset(slot.slot_no))
        f.write(encode_slot(slot))


def test_archives_without_a_space_map_get_one(tmp_path):
    """Archives of the first format revision have no space map: the first writer
    rebuilds it (pages, live frames, dead frames) and redacts the garbage."""
    box, path = new_box(tmp_path, chunk_size=4096)
    with box.writer() as w:
        w.add_bytes("a.bin", os.urandom(50_000))
        w.add_bytes("b.txt", b"bee" * 2000)  # over a chunk: not packed, its own frames
        w.add_bytes("dir/c.txt", b"sea")
    with box.writer() as w:
        w.add_bytes("a.bin", b"replaced")  # leaves garbage the rebuild must find
    stale = content_refs(box, "b.txt")
    strip_space_map(box, path)
    box = lockbox.open(path, password="pw")
    assert box.view.commit.space is None
    before = {e.path: (e.blake3 if e.is_file else e.type) for e in box.ls(recursive=True)}
    with box.writer() as w:
        w.remove("b.txt")
        w.env_set("touched", "1")
    assert box.view.commit.space is not None
    after = {e.path: (e.blake3 if e.is_file else e.type) for e in box.ls(recursive=True)}
    del before["b.txt"]
    assert after == before
    data = path.read_bytes()
    for r in stale:
        assert data[r.frame_offset:r.frame_offset + r.frame_size] == bytes(r.frame_size)
    check_map(box, path)


def test_failure_during_redaction_keeps_the_durable_commit(tmp_path, monkeypatch):
    """The slot is written, then redaction fails: the writer's abort must not undo the
    durable commit; the next writer finishes the redaction."""
    box, path = new_box(tmp_path)
    with box.writer() as w:
        w.add_bytes("old.bin", os.urandom(100_000))
        w.add_bytes("keep", b"k")
    old_refs = content_refs(box, "old.bin")
    real = SpaceKeeper.redact

    def failing(self, space, generation):
        raise lockbox.StorageError("disk went away")

    monkeypatch.setattr(SpaceKeeper, "redact", failing)
    with pytest.raises(lockbox.StorageError), box.writer() as w:
        w.remove("old.bin")
        w.add_bytes("new.bin", os.urandom(50_000))
    monkeypatch.setattr(SpaceKeeper, "redact", real)
    again = lockbox.open(path, password="pw")
    assert sorted(e.path for e in again.ls()) == ["keep", "new.bin"]
    assert again.verify().ok
    with again.writer() as w:  # redaction of old.bin happens at this writer's start
        w.env_set("x", "1")
    data = path.read_bytes()
    for r in old_refs:
        span = data[r.frame_offset:r.frame_offset + r.frame_size]
        assert span == bytes(r.frame_size) or span[:4] == b"LBXF"  # zeroed or reused
    check_map(again, path)
