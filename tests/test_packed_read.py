"""Reading packed files (entry layout 2: a member of a PACK frame, FORMAT.md §10 "Packs"):
every read path (whole file, ranges, the file object, the pipelined read, batches of
files, extraction, verify) gives the content back with exactly the §10 checks, and opens
a pack once for all the members read one after the other.

The tampered archives are written by a key holder: a writer session seals hand-made PACK
frames (``w.pages.append``) and stages the entries naming them (``w.put_entry``)."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

import lockbox
from lockbox.crypto.base import open_frames
from lockbox.drivers import Read
from lockbox.errors import FormatError, IntegrityError
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.reading import (
    FinishOpen,
    FinishRead,
    StartOpen,
    StartRead,
    pipelined_stream_flow,
)
from lockbox.formats.lbox.view import ArchiveView, OpenedPack
from lockbox.formats.lbox.wire.chunk import ChunkHeader, ChunkMeta, encode_chunk
from lockbox.formats.lbox.wire.constants import EntryType, FrameKind
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED, Entry
from lockbox.formats.lbox.wire.pack import encode_pack
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.platform import default_crypto
from lockbox.sources import BytesSource

CHUNK = 4096
BLAKE3 = default_crypto().blake3


def digest(data: bytes) -> bytes:
    h = BLAKE3()
    h.update(data)
    return h.digest()


def member(path: str, data: bytes, file_id: bytes, *, meta_size: int | None = None,
           meta_hash: bytes | None = None, chunk_no: int = 0, last: bool = True) -> bytes:
    """A member: chunk 0 of a one-chunk file, its metadata present (unless told)."""
    meta = ChunkMeta(EntryType.FILE, 0o644, 0, len(data) if meta_size is None else meta_size,
                     digest(data) if meta_hash is None else meta_hash, CHUNK) if last else None
    return encode_chunk(ChunkHeader(file_id, chunk_no, path, meta), data)


class Pack:
    """A hand-made pack: its members' files, then written in a writer session."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.ids = {p: os.urandom(16) for p in files}
        self.members = [member(p, d, self.ids[p]) for p, d in files.items()]

    def entry(self, path: str, ref: Ref, **change) -> Entry:
        data = self.files[path]
        no = list(self.files).index(path)
        fields = dict(size=len(data), stored_size=len(self.members[no]),
                      content_hash=digest(data), file_id=self.ids[path], member_no=no)
        fields.update(change)
        return Entry(EntryType.FILE, 0o644, 0, fields["size"], fields["stored_size"],
                     fields["content_hash"], fields["file_id"], CHUNK, LAYOUT_PACKED, (ref,),
                     member_no=fields["member_no"])

    def write(self, w, *, kind: FrameKind = FrameKind.PACK, payload: bytes | None = None,
              entries: dict[str, dict] | None = None) -> Ref:
        """Seal the pack (or ``payload``) as a frame of ``kind`` and stage an entry per
        file (``entries[path]``: fields changed)."""
        plain = w.sealer.encode_plain(encode_pack(self.members) if payload is None else payload)
        ref = w.pages.append(kind, plain)
        for path in self.files:
            w.put_entry(path, self.entry(path, ref, **(entries or {}).get(path, {})))
        return ref


def files_of(prefix: str, n: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"{prefix}{i:03d}": rng.randbytes(rng.randrange(0, 3000)) + b"x" * (i % 7)
            for i in range(n)}


@pytest.fixture
def packed(make_archive):
    """An archive with two hand-made packs (``a*``, ``b*``) and an unpacked 3-chunk file."""
    big = random.Random(9).randbytes(3 * CHUNK - 5)
    path = make_archive({"big": big})
    a, b = Pack(files_of("a", 5, 1)), Pack(files_of("b", 3, 2))
    a.files["a000"] = b""  # an empty file is packed too
    a.members[0] = member("a000", b"", a.ids["a000"])
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        a.write(w)
        b.write(w)
    return path, {**a.files, **b.files}, big


def open_box(path: Path) -> Lockbox:
    return lockbox.open(path, password="pw")


def run_pipelined(view: ArchiveView, source, path: str, entry: Entry, **kw) -> bytes:
    """Drive ``pipelined_stream_flow`` synchronously (the reads answered at once, the frames
    opened when finished)."""
    out: list[bytes] = []
    flow = pipelined_stream_flow(view, path, entry, lambda p: out.append(bytes(p)), **kw)
    answer = None
    try:
        while True:
            req = flow.send(answer)
            if isinstance(req, (Read, StartRead)):
                answer = source.read(req.ranges)
            elif isinstance(req, FinishRead):
                answer = req.handle
            elif isinstance(req, StartOpen):
                answer = None
            else:
                assert isinstance(req, FinishOpen)
                answer = open_frames(view.opener.crypto, req.jobs, req.decode, req.plain_limit)
    except StopIteration:
        pass
    return b"".join(out)


# -- reading back ----------------------------------------------------------------------------


def test_packed_files_read_back_everywhere(packed, tmp_path):
    path, files, big = packed
    with open_box(path) as box:
        assert box.view.slot.version == 3
        for p, data in files.items():
            e = box.run(box.view.stat_flow(p))
            assert e.layout == LAYOUT_PACKED
            info = box.stat(p)
            assert (info.size, info.stored_size) == (len(data), e.stored_size)
            assert box.read_bytes(p) == data
            assert b"".join(bytes(x) for x in box.iter_bytes(p)) == data
            assert box.read(p, 3, 100) == data[3:103]
            assert run_pipelined(box.view, box.source, p, e) == data
        assert box.read_bytes("big") == big
        # every member of both packs read, in all these ways: each pack opened once
        assert box.view.packs_opened == 2
        report = box.verify()
        assert report.ok, report.problems
        assert (report.files_checked, report.packs_checked) == (len(files) + 1, 2)
        assert report.bytes_checked == sum(map(len, files.values())) + len(big)
        out = box.extract(tmp_path / "out")
        assert out.files == len(files) + 1
    for p, data in files.items():
        assert (tmp_path / "out" / p).read_bytes() == data


def test_random_access_through_the_file_object(packed):
    path, files, _ = packed
    name = max(files, key=lambda p: len(files[p]))
    data = files[name]
    with open_box(path) as box, box.open_file(name) as f:
        rng = random.Random(3)
        for _ in range(50):
            at = rng.randrange(0, len(data) + 10)
            f.seek(at)
            n = rng.randrange(0, 700)
            assert f.read(n) == data[at:at + n]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        f.seek(0)
        assert f.read() == data


def test_async_read_of_packed_files(packed):
    path, files, _ = packed

    async def main() -> dict[str, bytes]:
        got = {}
        async with await lockbox.open_async(path, password="pw") as box:
            for p in files:
                got[p] = await box.read_bytes(p)
            assert (await box.read(list(files)[2], 1, 5)) == files[list(files)[2]][1:6]
            assert (await box.verify()).ok
        return got

    assert asyncio.run(main()) == files


def test_a_batch_of_files_opens_each_pack_once(packed):
    path, files, big = packed
    with open_box(path) as box:
        v = box.view
        items = dict(box.run(v.walk_flow("")))
        wanted = []
        for p in [*sorted(files), "big"]:
            e = items[p]
            refs = box.run(v.chunk_refs_flow(e, 0, e.chunks))
            assert all(v.content_kind(e) == (FrameKind.PACK if p != "big" else
                                             FrameKind.DATA_CHUNK) for _ in refs)
            wanted += [(e, n, r) for n, r in enumerate(refs)]
        batch = v.batch(wanted)
        assert len(batch.ranges) == 2 + 3  # two packs, three chunks of "big"
        chunks = box.run(v.batch_flow(wanted))
        got: dict[str, bytes] = {}
        for (e, _, _), c in zip(wanted, chunks):
            name = next(p for p, x in items.items() if x is e)
            got[name] = got.get(name, b"") + bytes(c.data)
        assert got == {**files, "big": big}
        assert v.packs_opened == 2
        # now held opened: a second batch fetches nothing of the packs
        assert len(v.batch(wanted).ranges) == 3
        box.run(v.batch_flow(wanted))
        assert v.packs_opened == 2


def test_pack_cache_is_bounded_and_keyed_by_the_frame(packed):
    path, files, _ = packed
    with open_box(path) as box:
        v = box.view
        for p in files:
            box.read_bytes(p)
        assert len(v.packs) == 2 and v.packs.used_bytes <= v.packs.budget_bytes
        v.packs.clear()
        box.read_bytes("a001")
        assert v.packs_opened == 3


# -- tampering: every check of FORMAT.md §10 "Packs" ------------------------------------------


def tampered(make_archive, write) -> tuple[Path, dict[str, bytes]]:
    """An archive with a good pack (``good*``), a plain file, and what ``write(w)`` stages."""
    path = make_archive({"plain": b"plain file"})
    good = Pack(files_of("good", 3, 7))
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        good.write(w)
        write(w)
    return path, {"plain": b"plain file", **good.files}


def assert_only_bad(path: Path, fine: dict[str, bytes], bad: list[str],
                    error: type[Exception] = IntegrityError, match: str | None = None) -> None:
    with open_box(path) as box:
        for p in bad:
            with pytest.raises(error, match=match):
                box.read_bytes(p)
            with pytest.raises(error, match=match):
                b"".join(box.iter_bytes(p))
            with pytest.raises(error, match=match):
                box.read(p, 0, 1)
            e = box.run(box.view.stat_flow(p))
            with pytest.raises(error, match=match):
                run_pipelined(box.view, box.source, p, e)
        for p, data in fine.items():
            assert box.read_bytes(p) == data
        report = box.verify()
        assert sorted(x.split(":")[0] for x in report.problems) == sorted(bad)
        assert report.files_checked == len(fine)


def test_member_number_out_of_range(make_archive):
    evil = Pack({"evil": b"data", "evil2": b"more"})
    path, fine = tampered(make_archive, lambda w: evil.write(
        w, entries={"evil": {"member_no": 2}}))
    assert_only_bad(path, {**fine, "evil2": b"more"}, ["evil"], match="no member 2")


def test_member_of_another_file(make_archive):
    evil = Pack({"evil": b"data", "evil2": b"more"})
    path, fine = tampered(make_archive, lambda w: evil.write(
        w, entries={"evil": {"file_id": bytes(16)}}))
    assert_only_bad(path, {**fine, "evil2": b"more"}, ["evil"], match="does not belong")


def test_entry_naming_another_files_member(make_archive):
    """Two entries name member 0: the second one's file id differs (IntegrityError); verify
    also says a member is used twice when both agree."""
    evil = Pack({"evil": b"data", "evil2": b"more"})
    path, _ = tampered(make_archive, lambda w: evil.write(
        w, entries={"evil2": {"member_no": 0, "size": 4, "content_hash": digest(b"data"),
                              "file_id": evil.ids["evil"]}}))
    with open_box(path) as box:
        assert box.read_bytes("evil2") == b"data"  # a read alone cannot tell
        report = box.verify()
    assert [x.split(":")[0] for x in report.problems] == ["evil2"]
    assert "a second time" in report.problems[0]


def test_flipped_byte_in_a_pack_fails_each_of_its_files(make_archive):
    evil = Pack(files_of("evil", 4, 3))
    where: list[Ref] = []
    path, fine = tampered(make_archive, lambda w: where.append(evil.write(w)))
    ref = where[0]
    data = bytearray(path.read_bytes())
    data[ref.frame_offset + ref.frame_size - 40] ^= 0x20
    path.write_bytes(bytes(data))
    assert_only_bad(path, fine, list(evil.files))
    with open_box(path) as box:
        entries = [box.run(box.view.stat_flow(p)) for p in fine]
        good = {e.refs[0] for e in entries if e.layout == LAYOUT_PACKED}
        assert ref not in good
        assert box.verify().packs_checked == len(good)  # the bad one did not open


@pytest.mark.parametrize("change, match", [
    ({"size": 5}, "wrong size"),  # entry's size differs from the member's data
    ({"content_hash": bytes(32)}, "metadata"),  # entry's hash differs from the member's
])
def test_entry_disagreeing_with_its_member(make_archive, change, match):
    evil = Pack({"evil": b"data", "evil2": b"more"})
    path, fine = tampered(make_archive, lambda w: evil.write(w, entries={"evil": change}))
    assert_only_bad(path, {**fine, "evil2": b"more"}, ["evil"], match=match)


@pytest.mark.parametrize("kw, match", [
    ({"meta_size": 3}, "metadata"),
    ({"meta_hash": bytes(32)}, "metadata"),
    ({"chunk_no": 1}, "does not belong"),
    ({"last": False}, "wrong size"),
])
def test_member_disagreeing_with_its_entry(make_archive, kw, match):
    evil = Pack({"evil": b"data", "evil2": b"more"})
    evil.members[0] = member("evil", b"data", evil.ids["evil"], **kw)
    path, fine = tampered(make_archive, lambda w: evil.write(w))
    assert_only_bad(path, {**fine, "evil2": b"more"}, ["evil"], match=match)


def test_content_hash_mismatch(make_archive):
    """The member's metadata and the entry agree on a hash the data does not have."""
    evil = Pack({"evil": b"data", "evil2": b"more"})
    wrong = digest(b"other")
    evil.members[0] = member("evil", b"data", evil.ids["evil"], meta_hash=wrong)
    path, fine = tampered(make_archive, lambda w: evil.write(
        w, entries={"evil": {"content_hash": wrong}}))
    assert_only_bad(path, {**fine, "evil2": b"more"}, ["evil"], match="BLAKE3")


def test_packed_entry_naming_a_data_chunk_frame(make_archive):
    """The frame holds a valid pack, sealed as DATA_CHUNK: its kind is refused."""
    evil = Pack({"evil": b"data", "evil2": b"more"})
    path, fine = tampered(make_archive, lambda w: evil.write(w, kind=FrameKind.DATA_CHUNK))
    assert_only_bad(path, fine, ["evil", "evil2"], match="expected a PACK frame")


def test_malformed_pack_is_a_format_error(make_archive):
    evil = Pack({"evil": b"data"})
    bad = b"\x02" + bytes([len(evil.members[0])]) + b"\x05" + evil.members[0]  # sizes cut
    path, fine = tampered(make_archive, lambda w: evil.write(w, payload=bad))
    assert_only_bad(path, fine, ["evil"], error=FormatError)


def test_opened_pack_member_range():
    pack = OpenedPack.decode(encode_pack([b"abc", b"de"]))
    assert bytes(pack.member(1)) == b"de"
    with pytest.raises(IntegrityError):
        pack.member(2)


def test_verify_checks_the_space_maps_pack_records(packed):
    path, files, _ = packed
    with open_box(path) as box:
        refs = {box.run(box.view.stat_flow(p)).refs[0] for p in files}
        with box.writer() as w:
            rec = w.space.packs[min(r.frame_offset for r in refs)]
            rec.entries += 1  # a count the TOC does not have
            w.add_bytes("another", b"x" * 70_000)
    with open_box(path) as box:
        report = box.verify()
    assert len(report.problems) == 1
    assert "PACK record" in report.problems[0], report.problems


def test_reading_from_bytes_and_a_version_check(packed):
    path, files, _ = packed
    box = Lockbox(BytesSource(path.read_bytes()), password="pw")
    assert {p: box.read_bytes(p) for p in files} == files
    assert box.verify().ok


def test_pipelined_read_of_a_packed_file_with_a_plaintext_cache(packed):
    """The viewer's plaintext cache: a kept chunk is handed over again without a read."""
    path, files, _ = packed
    kept: dict[int, object] = {}
    with open_box(path) as box:
        e = box.run(box.view.stat_flow("a003"))
        assert run_pipelined(box.view, box.source, "a003", e, keep=lambda c: kept.update(
            {c.chunk_no: c})) == files["a003"]
        assert list(kept) == [0] and box.view.packs_opened == 1
        box.view.packs.clear()
        calls: list[int] = []
        box.source.read = lambda ranges: calls.append(1)  # nothing may be read
        assert run_pipelined(box.view, box.source, "a003", e,
                             cached=kept.get) == files["a003"]
        assert not calls and box.view.packs_opened == 1


def test_a_checked_hash_is_trusted_only_for_its_own_entry(packed):
    from lockbox.formats.lbox.reading import FileReadPlan

    path, files, _ = packed
    with open_box(path) as box:
        e = box.run(box.view.stat_flow("a002"))
        chunk = box.run(box.view.chunks_flow(e, 0, 1))[0]
        assert chunk.checked_hash == e.content_hash
        assert bytes(FileReadPlan(e, "a002", box.view.opener.crypto).accept([chunk])[0]) == \
            files["a002"]
        other = Entry(e.type, e.mode, e.mtime_ns, e.size, e.stored_size, digest(b"else"),
                      e.file_id, e.chunk_size, e.layout, e.refs, member_no=e.member_no)
        with pytest.raises(IntegrityError, match="BLAKE3"):
            FileReadPlan(other, "a002", box.view.opener.crypto).accept([chunk])


def test_extract_and_verify_open_each_writer_made_pack_once(tmp_path, weak_argon2):
    """The real writer packs a tree of small files; a fresh extraction opens each of its
    packs once (not once per file), and so does verify."""
    src = tmp_path / "src"
    rng = random.Random(4)
    want = {}
    for i in range(1500):
        p = src / f"d{i % 3}" / f"f{i:04d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        want[f"t/d{i % 3}/f{i:04d}"] = data = rng.randbytes(rng.randrange(0, 2500))
        p.write_bytes(data)
    path = tmp_path / "a.lbox"
    with lockbox.create(path, password="pw", argon2=weak_argon2) as box, box.writer() as w:
        w.add_tree(src, "t")
    with open_box(path) as box:
        entries = {p: box.run(box.view.stat_flow(p)) for p in want}
        packs = {e.refs[0] for e in entries.values()}
        assert all(e.layout == LAYOUT_PACKED for e in entries.values()) and len(packs) > 1
        box.extract(tmp_path / "out")
        assert box.view.packs_opened == len(packs)
        report = box.verify()
        assert report.ok and report.packs_checked == len(packs)
    assert {p: (tmp_path / "out" / p).read_bytes() for p in want} == want
