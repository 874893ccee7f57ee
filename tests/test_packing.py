"""Packing small files (docs/FORMAT.md §10 "Packs"): the writer puts every file of at
most PACK_FILE_LIMIT bytes (and one chunk) into the session's open pack, sealed as one
PACK frame when full, at commit, or when a staged entry's ref is first used; the
small-file pipeline (inline and in worker processes) seals one pack per batch."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import lockbox
from lockbox.errors import UsageError
from lockbox.formats.lbox.wire.chunk import decode_chunk
from lockbox.formats.lbox.wire.constants import PACK_FILE_LIMIT, FrameKind
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_PACKED,
    Entry,
    encode_entry,
    toc_key,
)
from lockbox.formats.lbox.wire.pack import decode_pack
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.write import content as content_mod
from lockbox.formats.lbox.write import pipeline
from lockbox.formats.lbox.write.content import PackRefs


def _create(path: Path, weak_argon2, chunk_size: int = 1 << 20) -> lockbox.Lockbox:
    return lockbox.create(path, password="pw", argon2=weak_argon2, chunk_size=chunk_size)


def _open_pack(box: lockbox.Lockbox, ref: Ref) -> list[memoryview]:
    """The members of the PACK frame ``ref``: opened (authenticated) and decoded with
    the low-level sealer/opener and pack codec, not through the reader."""
    assert box.path is not None
    with open(box.path, "rb") as f:
        f.seek(ref.frame_offset)
        blob = f.read(ref.frame_size)
    payload = box.view.opener.open_ref(blob, ref, FrameKind.PACK)
    return decode_pack(bytes(payload))


def _check_member(box: lockbox.Lockbox, path: str, entry: Entry, data: bytes) -> None:
    """The member the entry names is chunk 0 of a one-chunk file with this entry's
    metadata and ``data``."""
    assert entry.layout == LAYOUT_PACKED and len(entry.refs) == 1
    members = _open_pack(box, entry.refs[0])
    head, body = decode_chunk(members[entry.member_no])
    assert (head.file_id, head.chunk_no, head.path) == (entry.file_id, 0, path)
    assert head.meta is not None
    assert (head.meta.size, head.meta.content_hash) == (entry.size, entry.content_hash)
    assert (head.meta.mode, head.meta.mtime_ns) == (entry.mode, entry.mtime_ns)
    assert bytes(body) == data and entry.stored_size == len(members[entry.member_no])


def test_small_files_share_one_pack_and_read_back(tmp_path: Path, weak_argon2) -> None:
    files = {"a.txt": b"alpha " * 100, "d/empty": b"", "d/b.bin": os.urandom(3000),
             "exact": b"x" * PACK_FILE_LIMIT}
    box = _create(tmp_path / "a.lbox", weak_argon2)
    with box:
        with box.writer() as w:
            entries = {p: w.add_bytes(p, d, mtime_ns=5) for p, d in files.items()}
            over = w.add_bytes("over", b"y" * (PACK_FILE_LIMIT + 1))
            w.symlink("link", "a.txt")
            w.mkdir("dir")
            assert not w.content.packs  # still open: nothing sealed yet
            assert [e.member_no for e in entries.values()] == [0, 1, 2, 3]
        assert over.layout == LAYOUT_CHUNKS and len(over.refs) == 1  # over the limit
        refs = {e.refs[0] for e in entries.values()}
        assert len(refs) == 1  # one pack, sealed by the commit
        for p, e in entries.items():
            _check_member(box, p, e, files[p])
        assert box.view.slot.version == 3  # the commit references a PACK frame
        for p, d in files.items():
            assert box.read_bytes(p) == d
        assert box.read_bytes("over") == b"y" * (PACK_FILE_LIMIT + 1)
        assert box.stat("link").target == "a.txt" and box.stat("dir").type == "dir"
        assert box.verify().ok
    with lockbox.open(tmp_path / "a.lbox", password="pw") as again:
        assert {p: again.read_bytes(p) for p in files} == files


def test_a_file_of_exactly_one_small_chunk_is_packed(tmp_path: Path, weak_argon2) -> None:
    """chunk_size <= PACK_FILE_LIMIT: a file of exactly one chunk is packed (the stream
    is read one chunk further to see its end); one byte more makes two chunks."""
    box = _create(tmp_path / "a.lbox", weak_argon2, chunk_size=4096)
    one, two = os.urandom(4096), os.urandom(4097)
    with box:
        with box.writer() as w:
            e1 = w.add_bytes("one", one)
            e2 = w.add_bytes("two", two)
        assert e1.layout == LAYOUT_PACKED and e2.layout == LAYOUT_CHUNKS and e2.chunks == 2
        _check_member(box, "one", e1, one)
        assert box.read_bytes("one") == one and box.read_bytes("two") == two
        assert box.verify().ok


def test_using_a_ref_seals_the_open_pack(tmp_path: Path, weak_argon2) -> None:
    box = _create(tmp_path / "a.lbox", weak_argon2)
    with box:
        with box.writer() as w:
            e1 = w.add_bytes("one", b"1")
            assert isinstance(e1.refs, PackRefs) and not w.content.packs
            ref = e1.refs[0]  # seals the pack now
            assert w.content.packs == [ref] and not w.content.pack_open
            e2 = w.add_bytes("two", b"2")  # a new pack
            assert e2.member_no == 0
            assert encode_entry(w.staging.get_entry("two")) == encode_entry(e2)
            assert len(w.content.packs) == 2
        assert box.read_bytes("one") == b"1" and box.read_bytes("two") == b"2"
        assert box.verify().ok


def test_an_aborted_session_forgets_its_open_pack(tmp_path: Path, weak_argon2) -> None:
    path = tmp_path / "a.lbox"
    _create(path, weak_argon2).close()
    before = path.read_bytes()
    with lockbox.open(path, password="pw") as box:
        with pytest.raises(RuntimeError), box.writer() as w:
            entry = w.add_bytes("one", b"1")
            raise RuntimeError("stop")
        with pytest.raises(UsageError, match="discarded"):
            entry.refs[0]
    assert path.read_bytes() == before


@pytest.mark.parametrize("sealed", [False, True])
def test_moves_and_removals_before_and_after_the_pack_is_sealed(
        tmp_path: Path, weak_argon2, sealed: bool) -> None:
    box = _create(tmp_path / "a.lbox", weak_argon2)
    with box:
        with box.writer() as w:
            for name in ("a", "b", "c", "d"):
                w.add_bytes(f"src/{name}", name.encode() * 10)
            if sealed:
                w.content.seal_pack()
            w.move("src/a", "moved/a")
            w.remove("src/b")
            w.move("src", "dst")  # c and d move with their directory
            w.add_bytes("dst/d", b"new d")  # replaces a member by a member
        assert box.read_bytes("moved/a") == b"a" * 10
        assert box.read_bytes("dst/c") == b"c" * 10 and box.read_bytes("dst/d") == b"new d"
        assert not box.exists("src/b") and not box.exists("src")
        assert box.verify().ok
        # Removing the files of the pack in a later session, one session at a time.
        with box.writer() as w:
            w.remove("moved/a")
        assert box.read_bytes("dst/c") == b"c" * 10 and box.verify().ok
        with box.writer() as w:
            w.remove("dst", recursive=True)
        assert box.verify().ok and not box.exists("dst")


def test_a_file_replaced_in_its_own_pack_keeps_the_last_version(
        tmp_path: Path, weak_argon2) -> None:
    box = _create(tmp_path / "a.lbox", weak_argon2)
    with box:
        with box.writer() as w:
            w.add_bytes("f", b"first")
            last = w.add_bytes("f", b"second")
            assert last.member_no == 1
        assert box.read_bytes("f") == b"second" and box.verify().ok


def test_packs_close_at_the_target_size_and_member_count(
        tmp_path: Path, weak_argon2, monkeypatch) -> None:
    monkeypatch.setattr(content_mod, "MAX_PACK_MEMBERS", 3)
    box = _create(tmp_path / "a.lbox", weak_argon2)
    rng = random.Random(3)
    big = {f"big{i}": rng.randbytes(PACK_FILE_LIMIT) for i in range(20)}  # 1.25 MiB
    tiny = {f"t{i}": b"%d" % i for i in range(7)}
    with box:
        with box.writer() as w:
            entries = {p: w.add_bytes(p, d) for p, d in {**big, **tiny}.items()}
        per_pack: dict[Ref, list[int]] = {}
        for e in entries.values():
            per_pack.setdefault(e.refs[0], []).append(e.member_no)
        assert sorted(per_pack.values()) == [[0, 1, 2]] * 9  # 27 files, 3 per pack
        for p, d in {**big, **tiny}.items():
            assert box.read_bytes(p) == d
        assert box.verify().ok


def test_a_pack_stays_within_the_target_size(tmp_path: Path, weak_argon2) -> None:
    box = _create(tmp_path / "a.lbox", weak_argon2)
    rng = random.Random(4)
    data = {f"f{i:02d}": rng.randbytes(PACK_FILE_LIMIT - i) for i in range(40)}
    with box:
        with box.writer() as w:
            entries = {p: w.add_bytes(p, d) for p, d in data.items()}
        by_pack: dict[Ref, int] = {}
        for e in entries.values():
            by_pack[e.refs[0]] = by_pack.get(e.refs[0], 0) + e.stored_size
        assert len(by_pack) == 3  # 40 x ~64 KiB: 15 + 15 + 10
        for ref in by_pack:
            payload_size = sum(len(m) for m in _open_pack(box, ref))
            assert payload_size <= 1 << 20
        assert all(box.read_bytes(p) == d for p, d in data.items())


def _tree(root: Path, count: int, seed: int = 7) -> dict[str, bytes]:
    rng = random.Random(seed)
    words = [b"w%d" % i for i in range(200)]
    files: dict[str, bytes] = {}
    for i in range(count):
        name = f"d{i % 7}/f{i:05d}.txt"
        files[name] = b" ".join(rng.choices(words, k=rng.randint(0, 300)))
    files["d0/empty"] = b""
    files["d1/limit.bin"] = rng.randbytes(PACK_FILE_LIMIT)
    files["d1/limit1.bin"] = rng.randbytes(PACK_FILE_LIMIT + 1)
    files["d2/medium.bin"] = rng.randbytes(200_000)
    files["big.bin"] = rng.randbytes(3 * (1 << 20) + 7)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "d3").mkdir(exist_ok=True)
    (root / "d3" / "link").symlink_to("../big.bin")
    return files


@pytest.mark.parametrize("jobs", [1, 2])
def test_add_tree_straddles_several_packs(tmp_path: Path, weak_argon2, monkeypatch,
                                          jobs: int) -> None:
    """A tree whose small files straddle several packs (small batches), through the
    pipeline inline and in a worker process: every entry's staged encoding is its
    encode_entry, every member decodes to its file, the archive reads back."""
    monkeypatch.setattr(pipeline, "BATCH_BYTES", 64 * 1024)
    monkeypatch.setattr(pipeline, "START_AFTER", 10)
    src = tmp_path / "src"
    src.mkdir()
    files = _tree(src, 600)
    box = _create(tmp_path / "a.lbox", weak_argon2)
    with box:
        with box.writer() as w:
            w.add_tree(src, "t", jobs=jobs)
            staged = {k: e for k, e in w.staging.toc_changes.items() if e is not None}
            for key, (entry, encoding) in w.staging.encoded.items():
                if staged.get(key) is entry:
                    assert encoding == encode_entry(entry)
            packed = {p: e for p in files if (e := staged[toc_key("t/" + p)]).layout ==
                      LAYOUT_PACKED}
            assert len(w.content.packs) >= 5
        assert set(packed) == {p for p, d in files.items() if len(d) <= PACK_FILE_LIMIT}
        for p, e in list(packed.items())[::37]:
            _check_member(box, "t/" + p, e, files[p])
        for p, d in files.items():
            assert box.read_bytes("t/" + p) == d
        assert box.stat("t/d3/link").target == "../big.bin"
        assert box.verify().ok


@pytest.mark.parametrize("size", [0, 1, 127, 128, 1000, 16383, 16384, PACK_FILE_LIMIT,
                                  PACK_FILE_LIMIT + 1])
def test_the_workers_encodings_are_the_wire_layers(tmp_path: Path, size: int) -> None:
    """prepare_batch builds a member's data chunk and its entry's head from fields
    encoded once: byte for byte encode_chunk_parts / encode_packed_entry_head (and
    whether it is known or not, the size lstat saw does not change them)."""
    from lockbox.formats.lbox.frames import decode_plain
    from lockbox.formats.lbox.wire.chunk import encode_chunk_parts, encode_file_meta
    from lockbox.formats.lbox.wire.constants import MAX_PLAIN_CHUNK_PAYLOAD
    from lockbox.formats.lbox.wire.entry import encode_packed_entry_head
    from lockbox.platform import default_codec

    data = random.Random(size).randbytes(size)
    host = tmp_path / "f"
    host.write_bytes(data)
    rows = [(str(host), "dir/é f", 0o4755, -(10**18) - 5, size),
            (str(host), "x", 0o600, 1_700_000_000_123_456_789, -1)]
    packs, files = pipeline.prepare_batch(rows, 1 << 20, 3)
    members = [m for p in packs for m in decode_pack(
        bytes(decode_plain(default_codec(), p, MAX_PLAIN_CHUNK_PAYLOAD)))]
    for (_, path, mode, mtime_ns, _), p in zip(rows, files):
        meta = encode_file_meta(mode, mtime_ns, size, p.content_hash, 1 << 20)
        chunk = encode_chunk_parts(p.file_id, 0, path.encode(), meta, data)
        if size > PACK_FILE_LIMIT:
            assert p.kind == pipeline.FRAME and not packs
            continue
        assert p.kind == pipeline.MEMBER and p.stored_size == len(chunk)
        assert bytes(members[p.member_no]) == chunk
        assert p.entry_head == encode_packed_entry_head(mode, mtime_ns, size, len(chunk),
                                                        p.content_hash, p.file_id, 1 << 20,
                                                        p.member_no)


def test_single_file_paths_pack_and_copy_keeps_the_member(tmp_path: Path, weak_argon2) -> None:
    """add_file (the single-file path of add/mount/sync) packs; a staged packed entry
    replaced with new metadata before its pack is sealed keeps its member; copy_file of
    a packed entry (compaction) puts the member, as it is, into the open pack."""
    import dataclasses

    host = tmp_path / "host.txt"
    host.write_bytes(b"from the host " * 10)
    box = _create(tmp_path / "a.lbox", weak_argon2)
    with box:
        with box.writer() as w:
            e = w.add_file("f.txt", host)
            assert e.layout == LAYOUT_PACKED and not w.content.packs
            w.put_entry("f.txt", dataclasses.replace(e, mtime_ns=123))  # a touch
        assert box.read_bytes("f.txt") == host.read_bytes()
        assert box.stat("f.txt").mtime_ns == 123 and box.verify().ok
        with box.writer() as w:  # as compaction does: the member re-packed as it is
            staged = w.staging.get_entry("f.txt")
            assert staged is not None and staged.layout == LAYOUT_PACKED
            member = bytes(_open_pack(box, staged.refs[0])[staged.member_no])
            copied = w.copy_file("f.txt", staged, [member])
            assert (copied.file_id, copied.member_no) == (staged.file_id, 0)
            assert copied.stored_size == len(member) and not w.content.packs
        assert copied.refs[0] != staged.refs[0]  # a new pack, sealed by the commit
        assert bytes(_open_pack(box, copied.refs[0])[0]) == member
        assert box.read_bytes("f.txt") == host.read_bytes() and box.verify().ok
