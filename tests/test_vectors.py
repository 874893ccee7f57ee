"""Golden archives and docs/FORMAT.md §19 test vectors (tests/vectors/v1: format version 2,
and the frozen version-1 archive legacy-hello.lbox).

* every golden archive opens with its secret(s), lists exactly what manifest.json
  says, reads back to the recorded SHA-256s, and verifies;
* the generator regenerates the reproducible archives (and the identities, the
  manifest and vectors.json) byte for byte;
* every vector in vectors.json recomputes equal through the real code;
* the hex dumps printed in docs/FORMAT.md §19 are the golden bytes;
* golden archives damaged in chosen ways fail (or fall back) as §3/§11 say.

If the on-disk format changes on purpose, rerun ``tests/vectors/generate.py``
and update docs/FORMAT.md; a silent change here is an interoperability break.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    UnsupportedVersionError,
    WrongKeyError,
)
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.frames import FrameOpener, FrameSealer, session_key
from lockbox.formats.lbox.keys import (
    Argon2Params,
    Identity,
    Recipient,
    key_commitment,
    normalize_password,
    unlock,
)
from lockbox.formats.lbox.wire.chunk import (
    ChunkHeader,
    ChunkMeta,
    decode_chunk,
    decode_index,
    encode_chunk,
    encode_index,
)
from lockbox.formats.lbox.wire.commit import (
    CommitRecord,
    Stats,
    TreeRoot,
    decode_commit,
    encode_commit,
)
from lockbox.formats.lbox.wire.constants import SLOT_SIZE, EntryType, FrameKind, PageKind
from lockbox.formats.lbox.wire.encoding import Builder, Reader, svarint, uvarint, zigzag
from lockbox.formats.lbox.wire.entry import Entry, decode_entry, encode_entry, key_path, toc_key
from lockbox.formats.lbox.wire.frame import (
    FrameHeader,
    decode_frame_header,
    encode_frame_header,
    frame_aad,
    frame_nonce,
)
from lockbox.formats.lbox.wire.keydir import (
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    decode_key_directory,
    decode_keydir,
    encode_keydir,
    keydir_has_commitment,
    slot_aad,
)
from lockbox.formats.lbox.wire.node import Internal, Leaf, decode_node, encode_node
from lockbox.formats.lbox.wire.page import (
    PageHeader,
    decode_keydir_page,
    decode_page_header,
    encode_keydir_page,
    encode_page_header,
)
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.wire.superblock import (
    ExternalKeydir,
    Slot,
    commit_frame_offset,
    decode_slot,
    decode_superblock,
    encode_slot,
)
from lockbox.platform import default_codec, default_crypto

ROOT = Path(__file__).resolve().parent.parent
V1 = ROOT / "tests" / "vectors" / "v1"
FORMAT_MD = ROOT / "docs" / "FORMAT.md"


def _load_generator() -> Any:
    name = "lockbox_vectors_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "vectors" / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()
MANIFEST = json.loads((V1 / "manifest.json").read_text())
VEC = json.loads((V1 / "vectors.json").read_text())
ARCHIVES = {m["file"]: m for m in MANIFEST["archives"]}
CRYPTO = default_crypto()
CODEC = default_codec()
h = bytes.fromhex


# -- golden archives ----------------------------------------------------------------------


def _identity(name: str) -> Identity:
    return Identity.decode((V1 / name).read_text())


def _secrets(m: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if m["password"] is not None:
        out.append({"password": m["password"]})
    out += [{"identity": _identity(i)} for i in m["identities"]]
    return out


def _listing(box: Lockbox) -> list[dict[str, Any]]:
    out = []
    for info in box.ls(recursive=True):
        e: dict[str, Any] = {"path": info.path, "type": info.type, "mode": info.mode,
                             "mtime_ns": info.mtime_ns}
        if info.type == "file":
            data = box.read_bytes(info.path)
            assert len(data) == info.size
            e.update(size=info.size, sha256=hashlib.sha256(data).hexdigest(),
                     content_hash=info.blake3)
        elif info.type == "symlink":
            e["target"] = info.target
        out.append(e)
    return out


def _check_state(box: Lockbox, state: dict[str, Any]) -> None:
    assert box.generation == state["generation"]
    assert _listing(box) == state["entries"]
    assert [[k, v.hex()] for k, v in box.env_items()] == state["env"]


def test_manifest_lists_every_golden_archive() -> None:
    on_disk = {p.name for p in V1.glob("*.lbox")}
    assert on_disk == set(ARCHIVES)
    assert len([m for m in ARCHIVES.values()
                if m["argon2"] == {"time_cost": 3, "memory_kib": 65536, "parallelism": 1}]) == 1
    for m in ARCHIVES.values():
        assert (V1 / m["file"]).stat().st_size <= 64 * 1024
        for i in m["identities"]:
            assert (V1 / i).is_file()


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_golden_archive_opens_and_matches_manifest(name: str) -> None:
    m = ARCHIVES[name]
    secrets = _secrets(m)
    assert secrets
    for secret in secrets:
        with Lockbox.open(V1 / name, **secret) as box:
            _check_state(box, m)
            assert box.info().chunk_size == m["chunk_size"]
            assert keydir_has_commitment(box.view.keydir) == m["key_commitment"]
            # 1: before key commitments; 3: the commit references PACK frames; else 2
            assert box.view.slot.version == m["format_version"]
            assert (m["format_version"] == 1) == (not m["key_commitment"])
            report = box.verify()
            assert report.ok, report.problems
            assert report.generation == m["generation"]


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_golden_archive_refuses_a_wrong_secret(name: str) -> None:
    m = ARCHIVES[name]
    if m["password"] is not None:
        with pytest.raises(WrongKeyError):
            Lockbox.open(V1 / name, password=m["password"] + "x")
    stranger = Identity(bytes(64))
    if m["identities"]:
        with pytest.raises(WrongKeyError):
            Lockbox.open(V1 / name, identity=stranger)


def test_history_falls_back_to_the_previous_generation(tmp_path: Path) -> None:
    """A damaged newest slot: the reader opens the other one. Its TOC (inline in its
    commit) lists the previous state; the frames the newest commit freed were
    redacted once it was durable (§14), so those files now fail to authenticate —
    an error, never other data."""
    m = ARCHIVES["history.lbox"]
    data = bytearray((V1 / "history.lbox").read_bytes())
    newest = decode_superblock(bytes(data[:2 * SLOT_SIZE]))[0]
    assert newest.generation == m["generation"]
    # A damaged newest slot: one flipped byte breaks its CRC.
    data[newest.slot_no * SLOT_SIZE + 100] ^= 0x01
    path = tmp_path / "torn.lbox"
    path.write_bytes(bytes(data))
    prev = m["previous"]
    with Lockbox.open(path, password=m["password"]) as box:
        assert box.generation == prev["generation"]
        listed = [{k: v for k, v in e.items() if k not in ("sha256", "content_hash")}
                  for e in prev["entries"]]
        got = []
        for info in box.ls(recursive=True):
            e: dict[str, Any] = {"path": info.path, "type": info.type, "mode": info.mode,
                                 "mtime_ns": info.mtime_ns}
            if info.type == "file":
                e["size"] = info.size
            elif info.type == "symlink":
                e["target"] = info.target
            got.append(e)
        assert got == listed
        assert [[k, v.hex()] for k, v in box.env_items()] == prev["env"]
        readable = redacted = 0
        for e in prev["entries"]:
            if e["type"] != "file":
                continue
            try:
                data_ = box.read_bytes(e["path"])
            except IntegrityError:
                redacted += 1
            else:
                assert hashlib.sha256(data_).hexdigest() == e["sha256"]
                readable += 1
        assert readable and redacted  # kept files still read; replaced ones are gone
        assert not box.verify().ok


def test_tampered_frame_is_rejected(tmp_path: Path) -> None:
    data = bytearray((V1 / "hello.lbox").read_bytes())
    t = VEC["tiny_archive"]
    data[t["chunk_frame_offset"] + 60] ^= 0x80  # inside the sealed bytes of hello.txt
    path = tmp_path / "tampered.lbox"
    path.write_bytes(bytes(data))
    with Lockbox.open(path, password=t["password"]) as box:
        with pytest.raises(IntegrityError):
            box.read_bytes("hello.txt")
        assert not box.verify().ok


def _reseal(data: bytearray, slot_no: int) -> None:
    """Recompute a slot's CRC-32 after an edit (keyless: anyone can)."""
    base = slot_no * SLOT_SIZE
    k = int.from_bytes(data[base + 40:base + 44], "little")
    c = int.from_bytes(data[base + 44:base + 48], "little")
    end = base + 48 + k + c
    data[end:end + 4] = zlib.crc32(bytes(data[base:end])).to_bytes(4, "little")


def _hello(tmp_path: Path, data: bytearray) -> Path:
    path = tmp_path / "edited.lbox"
    path.write_bytes(bytes(data))
    return path


def test_unsupported_version_in_either_slot_is_refused(tmp_path: Path) -> None:
    """§3: a newer-format slot is never passed over, even for a valid slot; versions 1,
    2 and 3 are all read, each slot by its own version (§20)."""
    data = bytearray((V1 / "hello.lbox").read_bytes())
    data[SLOT_SIZE + 8] = 4  # slot 1 (generation 1, the OLDER one): version 4
    _reseal(data, 1)
    with pytest.raises(UnsupportedVersionError, match="version 4 is not supported"):
        Lockbox.open(_hello(tmp_path, data), password="lockbox")
    data[SLOT_SIZE + 8] = 3  # version 3 (packs allowed; this commit has none) is read
    _reseal(data, 1)
    assert [s.version for s in decode_superblock(bytes(data[:2 * SLOT_SIZE]))] == [2, 3]
    with Lockbox.open(_hello(tmp_path, data), password="lockbox") as box:
        assert box.read_bytes("hello.txt") == b"hello\n"
    data[SLOT_SIZE + 8] = 1  # a version-1 slot (with a version-2 key directory) is read
    _reseal(data, 1)
    slots = decode_superblock(bytes(data[:2 * SLOT_SIZE]))
    assert [s.version for s in slots] == [2, 1]
    legacy = bytearray((V1 / "legacy-hello.lbox").read_bytes())
    assert [s.version for s in decode_superblock(bytes(legacy[:2 * SLOT_SIZE]))] == [1, 1]
    legacy[8] = 4
    _reseal(legacy, 0)
    with pytest.raises(UnsupportedVersionError):
        Lockbox.open(_hello(tmp_path, legacy), password="lockbox")


def test_generation_must_match_its_slot(tmp_path: Path) -> None:
    data = bytearray((V1 / "hello.lbox").read_bytes())
    data[32] = 3  # slot 0 claims generation 3 (odd generations belong in slot 1)
    _reseal(data, 0)
    with pytest.raises(FormatError):
        decode_slot(bytes(data[:SLOT_SIZE]), 0)
    with Lockbox.open(_hello(tmp_path, data), password="lockbox") as box:
        assert box.generation == 1  # the other slot is still valid


def test_commit_frame_size_must_equal_the_slot_field(tmp_path: Path) -> None:
    """Slot 0 is rejected after the password opened its key slot: raised (§11), with
    the older generation named; no silent fallback."""
    data = bytearray((V1 / "hello.lbox").read_bytes())
    c = int.from_bytes(data[44:48], "little")
    k = int.from_bytes(data[40:44], "little")
    data[44:48] = (c + 1).to_bytes(4, "little")
    data[48 + k + c] = 0  # one extra byte after the frame, inside C
    _reseal(data, 0)
    with pytest.raises(FormatError, match=r"^generation 2: commit frame size does not match "
                       r"its slot; .*--generation 1\)$"):
        Lockbox.open(_hello(tmp_path, data), password="lockbox")
    data[SLOT_SIZE:2 * SLOT_SIZE] = bytes(SLOT_SIZE)  # no other slot at all
    with pytest.raises(FormatError, match=r"^commit frame size does not match its slot$"):
        Lockbox.open(_hello(tmp_path, data), password="lockbox")


def test_archive_end_must_be_page_aligned(tmp_path: Path) -> None:
    t = VEC["tiny_archive"]
    data = bytearray((V1 / "hello.lbox").read_bytes())
    s = decode_superblock(bytes(data[:2 * SLOT_SIZE]))[0]
    opener = FrameOpener(CRYPTO, CODEC, s.archive_id, h(t["content_key"]))
    _, payload = opener.open_at(s.commit_frame, s.commit_frame_offset, FrameKind.COMMIT)
    c = decode_commit(bytes(payload))
    bad = CommitRecord(c.generation, c.time_ns, c.archive_end + 1, c.default_chunk_size,
                       c.keydir_sha256, c.toc, c.env, c.space, c.root_leaves,
                       c.root_leaves_complete, c.stats)
    sealer = FrameSealer(CRYPTO, CODEC, s.archive_id, h(t["content_key"]))
    frame, _ = sealer.seal(FrameKind.COMMIT, 2, s.commit_frame_offset,
                           sealer.encode_plain(encode_commit(bad), compress=False))
    assert len(frame) == len(s.commit_frame)  # 28673 and 28672 are both 3-byte varints
    data[:SLOT_SIZE] = encode_slot(Slot(0, s.archive_id, 2, s.keydir, frame))
    data[SLOT_SIZE:2 * SLOT_SIZE] = bytes(SLOT_SIZE)
    with pytest.raises(FormatError):
        Lockbox.open(_hello(tmp_path, data), password="lockbox")


def test_wrong_key_on_the_newest_slot_tries_a_different_older_key_directory(
        tmp_path: Path) -> None:
    """§11: a tampered newest key directory does not lock the archive out."""
    data = bytearray((V1 / "hello.lbox").read_bytes())
    k = int.from_bytes(data[40:44], "little")
    data[48 + k - 1] ^= 0x01  # last byte of slot 0's wrapped key
    _reseal(data, 0)
    with Lockbox.open(_hello(tmp_path, data), password="lockbox") as box:
        assert box.generation == 1 and box.ls() == []
    k1 = int.from_bytes(data[SLOT_SIZE + 40:SLOT_SIZE + 44], "little")
    data[SLOT_SIZE + 48 + k1 - 1] ^= 0x02  # now both key directories reject it
    _reseal(data, 1)
    with pytest.raises(WrongKeyError):
        Lockbox.open(_hello(tmp_path, data), password="lockbox")


def test_frame_on_a_freed_page_is_an_integrity_error(tmp_path: Path) -> None:
    """The older commit of free-page.lbox points into the FREE page: its ref meets a
    zero header, which is damage (IntegrityError), not a format question."""
    m = ARCHIVES["free-page.lbox"]
    data = bytearray((V1 / "free-page.lbox").read_bytes())
    newest = decode_superblock(bytes(data[:2 * SLOT_SIZE]))[0]
    data[newest.slot_no * SLOT_SIZE + 100] ^= 0x01  # break the newest slot's CRC
    path = tmp_path / "older.lbox"
    path.write_bytes(bytes(data))
    with Lockbox.open(path, password=m["password"]) as box:
        assert box.generation == m["generation"] - 1
        with pytest.raises(IntegrityError):
            box.read_bytes("draft.txt")


def _page_offsets(data: bytes, end: int) -> list[tuple[int, PageHeader]]:
    out, pos = [], 16384
    while pos < end:
        out.append((pos, decode_page_header(data[pos:pos + 32])))
        pos += out[-1][1].page_size
    assert pos == end
    return out


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_one_live_key_directory_copy_unlocks_on_its_own(name: str) -> None:
    """§4/§15: the one KEYDIR page of an archive (the copy written at creation, or by
    the last commit that changed the key slots; older copies were redacted) holds
    the current key directory and, with its archive id, unlocks the archive."""
    m = ARCHIVES[name]
    data = (V1 / name).read_bytes()
    newest = decode_superblock(data[:2 * SLOT_SIZE])[0]
    copies = [off for off, ph in _page_offsets(data, len(data)) if ph.kind == PageKind.KEYDIR]
    assert len(copies) == 1, copies
    header, aid, kd = decode_keydir_page(data[copies[0]:])
    if copies[0] == 16384:
        assert header.generation == 1
    assert aid == newest.archive_id
    d = decode_key_directory(kd)
    key, _ = unlock(CRYPTO, aid, d.slots, commitment=d.key_commitment, **_secrets(m)[0])
    opener = FrameOpener(CRYPTO, CODEC, aid, key)
    _, payload = opener.open_at(newest.commit_frame, newest.commit_frame_offset,
                                FrameKind.COMMIT)
    commit = decode_commit(bytes(payload))
    assert commit.generation == m["generation"]
    assert commit.keydir_sha256 == hashlib.sha256(kd).digest()


def test_free_pages_in_golden_archives() -> None:
    """free-page.lbox: generation 3 replaced draft.txt, so the page of generation 2
    became a FREE page (header, then zeros) once generation 3 was durable."""
    data = (V1 / "free-page.lbox").read_bytes()
    pages = dict(_page_offsets(data, len(data)))
    free = pages[20480]
    assert (free.kind, free.used_size, free.generation) == (PageKind.FREE, 32, 3)
    assert not any(data[20480 + 32:20480 + free.page_size])
    # keydir-external.lbox: the creation copy of the key directory was redacted when
    # generation 2 changed the key slots.
    data = (V1 / "keydir-external.lbox").read_bytes()
    first = dict(_page_offsets(data, len(data)))[16384]
    assert first.kind == PageKind.FREE and not any(data[16384 + 32:16384 + first.page_size])


def test_space_records() -> None:
    from lockbox.formats.lbox.write.space import (
        TAIL_KEY,
        PageRecord,
        SpaceMap,
        decode_record,
        encode_record,
    )

    items = []
    for v in VEC["space_records"]:
        key, value = h(v["key"]), h(v["hex"])
        items.append((key, value))
        if key == TAIL_KEY:
            assert value[0] == 6
            continue
        rec = decode_record(value)
        assert encode_record(rec).hex() == v["hex"]
        if isinstance(rec, PageRecord):
            assert rec.size % 4096 == 0 and rec.live <= rec.size
    m = SpaceMap.from_items(items)
    assert m.tail_start == 45056 and m.dead == {20512: 150}
    # The space tree of hello.lbox's newest commit: never inline, a REF to one leaf in
    # the map's own page at the end of the file (the walkthrough opens that frame).
    t = VEC["tiny_archive"]
    space = t["commit"]["space"]
    assert "inline" not in space and (space["height"], space["count"]) == (1, 3)
    assert space["ref"]["frame_offset"] == t["space_frame_offset"] == t["map_page_offset"] + 32
    leaf = decode_node(h(t["space_leaf"]), 64)
    assert isinstance(leaf, Leaf) and leaf.count == space["count"]
    hello = SpaceMap.from_items(zip(leaf.keys, leaf.values))
    # The map's own page, [tail_start, archive_end), is not in the map.
    assert hello.tail_start == t["map_page_offset"] == t["size"] - t["map_page_size"]
    assert hello.check_cover(t["map_page_offset"]) == "" and not hello.dead
    assert {o: (r.kind, r.size, r.live) for o, r in hello.pages.items()} == \
        {16384: (2, 4096, t["keydir_page_used"]), 20480: (1, 4096, t["chunk_frame_size"])}


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_space_root_is_a_ref_into_the_maps_own_pages(name: str) -> None:
    """§7/§14: every commit after creation has a space root, never INLINE: a REF to a
    SPACE_NODE frame in the map's own pages [tail_start, archive_end), which are
    FRAMES pages of the commit's generation holding only SPACE_NODE frames."""
    from lockbox.formats.lbox.write.space import SpaceMap

    m = ARCHIVES[name]
    data = (V1 / name).read_bytes()
    with Lockbox.open(V1 / name, **_secrets(m)[0]) as box:
        c = box.view.commit
        assert c.space is not None and c.space.inline is None and c.space.ref is not None
        items = box.run(box.view.scan_flow(FrameKind.SPACE_NODE, c.space,
                                            [(b"", b"\xff" * 9)]))
    space = SpaceMap.from_items(items)
    assert space.tail_start is not None and c.archive_end == len(data)
    assert space.tail_start < c.archive_end and space.check_cover(space.tail_start) == ""
    assert space.tail_start <= c.space.ref.frame_offset < c.archive_end
    tail = [(off, ph) for off, ph in _page_offsets(data, len(data))
            if off >= space.tail_start]
    assert tail and all(ph.kind == PageKind.FRAMES and ph.generation == c.generation
                        for _, ph in tail)
    for off, ph in tail:  # nothing but the map's nodes in them
        pos = off + 32
        while pos < off + ph.used_size:
            fh = decode_frame_header(data[pos:pos + 48])
            assert fh.kind == FrameKind.SPACE_NODE and fh.generation == c.generation
            pos += 48 + fh.sealed_size
        assert pos == off + ph.used_size


def test_external_key_directory_page_of_an_older_generation() -> None:
    """A commit that leaves the key slots alone reuses the previous pointer."""
    data = (V1 / "keydir-external.lbox").read_bytes()
    newest = decode_superblock(data[:2 * SLOT_SIZE])[0]
    ext = newest.keydir
    assert isinstance(ext, ExternalKeydir) and newest.generation == 3
    header, aid, kd = decode_keydir_page(data[ext.page_offset:])
    assert header.generation == 2 and aid == newest.archive_id
    assert len(kd) == ext.keydir_size and hashlib.sha256(kd).digest() == ext.sha256
    assert len(kd) + 2048 > 8140  # too large to be inline


def test_writers_keep_unusable_slots_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "keys.lbox"
    shutil.copyfile(V1 / "hello.lbox", path)
    future = UnusableSlot(0x5EED5EED, 200, b"a later slot kind", "unknown slot kind 200")
    record = bytes([200]) + (0x5EED5EED).to_bytes(4, "little") + (17).to_bytes(2, "little") + \
        b"a later slot kind"
    with Lockbox.open(path, password="lockbox") as box, box.writer() as w:
        w.key_slots.append(future)  # as if it had been read from the file
        second = w.add_password("second", Argon2Params(1, 64))
    with Lockbox.open(path, password="lockbox") as box:
        assert box.view.key_slots[1] == UnusableSlot(0x5EED5EED, 200, b"a later slot kind",
                                                     "unknown slot kind 200")
        assert record in box.view.keydir
        assert [s.kind for s in box.info().slots] == ["password", "unusable", "password"]
        before = box.view.slot.keydir
        with box.writer() as w:  # no key change: the key-directory field is reused
            w.add_bytes("x.txt", b"x\n", mtime_ns=0)
        assert box.view.slot.keydir == before
        with box.writer() as w:  # a key change re-encodes the directory, keeping the slot
            w.remove_slot(second)
    with Lockbox.open(path, password="lockbox") as box:
        assert record in box.view.keydir and len(box.view.key_slots) == 2
        assert box.verify().ok
        # A removal commits twice: neither slot keeps the removed key slot (§11).
        data = path.read_bytes()
        for s in decode_superblock(data[:2 * SLOT_SIZE]):
            assert isinstance(s.keydir, bytes) and len(decode_keydir(s.keydir)) == 2


def test_generator_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    gen.generate(out, V1 / "vectors.json")
    for m in MANIFEST["archives"]:
        if m["reproducible"]:
            assert (out / m["file"]).read_bytes() == (V1 / m["file"]).read_bytes(), m["file"]
    for p in V1.glob("*.identity"):
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name
    assert (out / "manifest.json").read_text() == (V1 / "manifest.json").read_text()
    assert (out / "vectors.json").read_text() == (V1 / "vectors.json").read_text()


def test_recipient_archives_are_flagged_not_reproducible() -> None:
    for m in MANIFEST["archives"]:
        assert m["reproducible"] == (not m["identities"]), m["file"]


# -- §2 primitives ------------------------------------------------------------------------


def test_varints_and_blobs() -> None:
    for v in VEC["uvarint"]:
        assert uvarint(v["value"]).hex() == v["hex"]
        r = Reader(h(v["hex"]))
        assert r.uvarint() == v["value"]
        r.done()
    for v in VEC["uvarint_invalid"]:
        with pytest.raises(Exception) as exc:
            Reader(h(v["hex"])).uvarint()
        assert type(exc.value).__name__ == v["error"]
    for v in VEC["svarint"]:
        assert zigzag(v["value"]) == v["zigzag"]
        assert svarint(v["value"]).hex() == v["hex"]
        assert Reader(h(v["hex"])).svarint() == v["value"]
    for v in VEC["blob"]:
        assert Builder().blob(h(v["data"])).getvalue().hex() == v["hex"]
        assert Reader(h(v["hex"])).blob(1 << 20).hex() == v["data"]
    for v in VEC["crc32"]:
        assert zlib.crc32(h(v["data"])) == v["crc32"]


# -- §4 / §5 pages and frames --------------------------------------------------------------


def test_page_header() -> None:
    v = VEC["page_header"]
    ph = PageHeader(PageKind(v["kind"]), v["page_size"], v["used_size"], v["generation"])
    assert encode_page_header(ph).hex() == v["hex"]
    assert decode_page_header(h(v["hex"])) == ph
    assert zlib.crc32(h(v["hex"])[:28]) == int.from_bytes(h(v["hex"])[28:32], "little")


def test_free_page_header() -> None:
    v = VEC["free_page_header"]
    ph = PageHeader(PageKind.FREE, v["page_size"], v["used_size"], v["generation"])
    assert v["kind"] == 3 == PageKind.FREE and v["used_size"] == 32
    assert encode_page_header(ph).hex() == v["hex"]
    assert decode_page_header(h(v["hex"]) + bytes(v["page_size"] - 32)) == ph


def test_keydir_page() -> None:
    v = VEC["keydir_page"]
    kd = h(VEC["keydir"]["hex"])
    assert v["keydir_size"] == len(kd) and v["keydir_sha256"] == VEC["keydir"]["sha256"]
    page = encode_keydir_page(h(v["archive_id"]), kd, v["generation"])
    assert len(page) == v["page_size"] and page[:v["used_size"]].hex() == v["hex"]
    assert not any(page[v["used_size"]:]) and v["used_size"] == 32 + 16 + len(kd)
    assert page[:32].hex() == v["header"]
    header, aid, got = decode_keydir_page(page)
    assert header == PageHeader(PageKind.KEYDIR, v["page_size"], v["used_size"],
                                v["generation"])
    assert aid.hex() == v["archive_id"] and got == kd
    # The external slot vector points at this page (at offset 16384).
    ext = VEC["slots"][1]
    assert (ext["keydir_size"], ext["keydir_sha256"]) == (len(kd), v["keydir_sha256"])
    with pytest.raises(FormatError):
        decode_keydir_page(h(VEC["page_header"]["hex"]) + bytes(8192 - 32))  # a FRAMES page


def test_frame_header_nonce_aad_session_key() -> None:
    v = VEC["frame_header"]
    fh = FrameHeader(FrameKind(v["kind"]), v["sealed_size"], v["generation"],
                     h(v["session_id"]), v["counter"])
    assert encode_frame_header(fh).hex() == v["hex"]
    assert decode_frame_header(h(v["hex"])) == fh
    assert zlib.crc32(h(v["hex"])[:44]) == v["crc32"]
    for n in VEC["nonce"]:
        assert frame_nonce(n["counter"]).hex() == n["hex"]
    a = VEC["frame_aad"]
    assert frame_aad(h(a["archive_id"]), h(a["header"]), a["frame_offset"]).hex() == a["hex"]
    s = VEC["session_key"]
    assert s["info"] == b"lockbox/v1/frame-key".hex()
    assert session_key(CRYPTO, h(s["content_key"]), h(s["session_id"])).hex() == s["hex"]
    assert CRYPTO.hkdf_sha256(h(s["content_key"]), h(s["session_id"]), h(s["info"]),
                              32).hex() == s["hex"]


@pytest.mark.parametrize("i", range(len(VEC["sealed_frames"])))
def test_sealed_frame(i: int) -> None:
    v = VEC["sealed_frames"][i]
    frame = h(v["frame"])
    header = decode_frame_header(frame)
    assert header.kind == v["kind"] and header.generation == v["generation"]
    assert header.counter == v["counter"] and header.session_id.hex() == v["session_id"]
    assert header.frame_size == len(frame) == v["ref"]["frame_size"]
    key = session_key(CRYPTO, h(v["content_key"]), h(v["session_id"]))
    aad = frame_aad(h(v["archive_id"]), frame[:48], v["frame_offset"])
    # The seal, recomputed from the primitives (raw plaintexts are codec-independent).
    sealed = CRYPTO.aead(key).seal(frame_nonce(v["counter"]), h(v["plaintext"]), aad)
    assert sealed.hex() == v["frame"][96:]
    assert sealed[-16:].hex() == v["ref"]["tag"]
    opener = FrameOpener(CRYPTO, CODEC, h(v["archive_id"]), h(v["content_key"]))
    ref = Ref(v["frame_offset"], v["ref"]["frame_size"], h(v["ref"]["tag"]))
    assert bytes(opener.open_ref(frame, ref, FrameKind(v["kind"]))).hex() == v["payload"]
    assert v["plaintext"][:2] == ("00" if v["codec"] == "raw" else "01")
    # Moved by one byte, the same frame no longer authenticates.
    with pytest.raises(IntegrityError):
        opener.open_at(frame, v["frame_offset"] + 1, None)


# -- §6 key slots ---------------------------------------------------------------------------


def test_password_slot() -> None:
    v = VEC["password_slot"]
    aid, ck = h(v["archive_id"]), h(v["content_key"])
    pw = normalize_password(v["password"])
    assert pw.hex() == v["password_nfc_utf8"]
    ikm = CRYPTO.argon2id(pw, h(v["salt"]), time_cost=v["time_cost"],
                          memory_kib=v["memory_kib"], parallelism=1, length=32)
    assert ikm.hex() == v["argon2id"]
    assert CRYPTO.hkdf_sha256(ikm, aid, b"lockbox/v1/password-wrap", 32).hex() == v["wrap_key"]
    slot = PasswordSlot(v["slot_id"], h(v["salt"]), v["time_cost"], v["memory_kib"], 1,
                        h(v["wrapped_key"]))
    assert slot.descriptor().hex() == v["descriptor"]
    assert slot_aad(aid, slot).hex() == v["aad"]
    sealed = CRYPTO.aead(h(v["wrap_key"])).seal(bytes(12), ck, h(v["aad"]))
    assert sealed.hex() == v["wrapped_key"]
    assert unlock(CRYPTO, aid, [slot], password=v["password"]) == (ck, v["slot_id"])
    with pytest.raises(WrongKeyError):
        unlock(CRYPTO, aid, [slot], password="password")


def test_recipient_slot() -> None:
    v = VEC["recipient_slot"]
    aid, ck = h(v["archive_id"]), h(v["content_key"])
    ident = Identity.decode(v["identity_text"])
    assert ident.seed.hex() == v["seed"]
    ek = CRYPTO.mlkem1024_public_key(ident.seed)
    assert ek.hex() == v["encapsulation_key"]
    assert hashlib.sha256(ek).hexdigest() == v["encapsulation_key_sha256"]
    assert Recipient.decode(v["recipient_text"]).public_key == ek
    assert ident.recipient(CRYPTO).encode() == v["recipient_text"]
    # A display hint only: the slot does not store it (§6).
    assert Recipient(ek).fingerprint.hex() == v["display_fingerprint"]
    ct = h(v["kem_ciphertext"])
    assert hashlib.sha256(ct).hexdigest() == v["kem_ciphertext_sha256"]
    ss = CRYPTO.mlkem1024_decapsulate(ident.seed, ct)
    assert ss.hex() == v["shared_secret"]
    info = b"lockbox/v1/recipient-wrap" + hashlib.sha256(ek).digest() + \
        hashlib.sha256(ct).digest()
    assert info.hex() == v["wrap_info"]
    assert CRYPTO.hkdf_sha256(ss, aid, info, 32).hex() == v["wrap_key"]
    slot = RecipientSlot(v["slot_id"], ct, h(v["wrapped_key"]))
    assert slot.descriptor() == ct and slot.body() == ct + h(v["wrapped_key"])
    assert len(slot.body()) == v["body_size"] == 1616
    aad = slot_aad(aid, slot)
    assert aad == b"lockbox/v1/slot" + aid + b"\x02" + v["slot_id"].to_bytes(4, "little") + ct
    assert len(aad) == v["aad_size"] and hashlib.sha256(aad).hexdigest() == v["aad_sha256"]
    sealed = CRYPTO.aead(h(v["wrap_key"])).seal(bytes(12), ck, aad)
    assert sealed.hex() == v["wrapped_key"]
    assert unlock(CRYPTO, aid, [slot], identity=ident) == (ck, v["slot_id"])
    # No fingerprint to match: a stranger decapsulates (implicit rejection) and fails.
    with pytest.raises(WrongKeyError):
        unlock(CRYPTO, aid, [slot], identity=Identity(bytes(64)))


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 with L = 32 (one block), by hand: independent of the crypto backend."""
    import hmac

    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_link_slot() -> None:
    """§19.3: a link slot for a fixed secret; its text form; a key directory holding it."""
    from lockbox.formats.lbox.keys import LinkSecret, link_wrap_key, new_link_slot
    from lockbox.formats.lbox.wire.keydir import LinkSlot

    v = VEC["link_slot"]
    aid, ck, secret = h(v["archive_id"]), h(v["content_key"]), h(v["secret"])
    assert LinkSecret.parse(v["text"]).secret == secret and LinkSecret(secret).text() == v["text"]
    # §6 "Text encodings": the forms a lenient decoder would map to the same secret.
    assert v["text"].endswith("8") and len(v["text"]) == 48
    for bad in (v["text"] + "=", v["text"][:-1] + "9", v["text"][:-1]):
        with pytest.raises(FormatError):
            LinkSecret.parse(bad)
    info = b"lockbox/v1/link-wrap" + v["slot_id"].to_bytes(4, "little")
    assert info.hex() == v["wrap_info"]
    assert _hkdf_sha256(secret, aid, info).hex() == v["wrap_key"]
    assert link_wrap_key(CRYPTO, aid, LinkSecret(secret), v["slot_id"]).hex() == v["wrap_key"]
    slot = LinkSlot(v["slot_id"], h(v["wrapped_key"]))
    assert slot.descriptor() == b"" and slot.body() == h(v["wrapped_key"])
    assert len(slot.body()) == v["body_size"] == 48
    aad = slot_aad(aid, slot)
    assert aad == b"lockbox/v1/slot" + aid + b"\x03" + v["slot_id"].to_bytes(4, "little")
    assert aad.hex() == v["aad"]
    assert CRYPTO.aead(h(v["wrap_key"])).seal(bytes(12), ck, aad).hex() == v["wrapped_key"]
    made = new_link_slot(gen.ScriptedCrypto(v["slot_id"].to_bytes(4, "little")), aid, ck,
                         LinkSecret(secret))
    assert made == slot
    commitment = h(VEC["key_commitment"]["hex"])
    assert unlock(CRYPTO, aid, [slot], link=v["text"], commitment=commitment) == \
        (ck, v["slot_id"])
    with pytest.raises(WrongKeyError):
        unlock(CRYPTO, aid, [slot], link=LinkSecret(bytes(32)))
    kd = h(v["keydir"]["hex"])
    assert len(kd) == v["keydir"]["size"] and hashlib.sha256(kd).hexdigest() == \
        v["keydir"]["sha256"]
    d = decode_key_directory(kd)
    assert d.key_commitment == commitment and d.slots[1] == slot
    assert d.slots[0].body().hex() == VEC["password_slot"]["descriptor"] + \
        VEC["password_slot"]["wrapped_key"]
    record = b"\x03" + v["slot_id"].to_bytes(4, "little") + (48).to_bytes(2, "little") + \
        slot.body()
    assert kd.endswith(record) and encode_keydir(d.slots, commitment) == kd
    assert unlock(CRYPTO, aid, d.slots, link=LinkSecret(secret),
                  commitment=d.key_commitment) == (ck, v["slot_id"])


def test_key_commitment() -> None:
    v = VEC["key_commitment"]
    aid, ck = h(v["archive_id"]), h(v["content_key"])
    assert v["info"] == b"lockbox/v1/key-commitment".hex()
    assert key_commitment(CRYPTO, aid, ck).hex() == v["hex"]
    assert CRYPTO.hkdf_sha256(ck, aid, h(v["info"]), 32).hex() == v["hex"]
    assert VEC["keydir"]["key_commitment"] == v["hex"]
    assert VEC["tiny_archive"]["key_commitment"] == key_commitment(
        CRYPTO, h(VEC["tiny_archive"]["archive_id"]),
        h(VEC["tiny_archive"]["content_key"])).hex()


def test_keydir() -> None:
    v = VEC["keydir"]
    kd = h(v["hex"])
    assert len(kd) == v["size"] and hashlib.sha256(kd).hexdigest() == v["sha256"]
    d = decode_key_directory(kd)
    assert d.version == v["version"] == 2 and d.key_commitment == h(v["key_commitment"])
    assert kd[:37] == b"LBKD\x02" + d.key_commitment
    slots = d.slots
    assert encode_keydir(slots, d.key_commitment) == kd
    p, r = VEC["password_slot"], VEC["recipient_slot"]
    assert isinstance(slots[0], PasswordSlot) and slots[0].slot_id == p["slot_id"]
    assert slots[0].wrapped_key.hex() == p["wrapped_key"]
    assert isinstance(slots[1], RecipientSlot) and slots[1].slot_id == r["slot_id"]
    assert slots[1].kem_ciphertext.hex() == r["kem_ciphertext"]
    assert len(slots[1].body()) == 1616  # kem_ciphertext || wrapped_key, no fingerprint
    # An unknown slot kind is kept (verbatim), not fatal.
    unknown = kd[:37] + (3).to_bytes(2, "little") + kd[39:] + bytes([9]) + \
        (77).to_bytes(4, "little") + (2).to_bytes(2, "little") + b"zz"
    got = decode_keydir(unknown)
    assert [s.slot_id for s in got] == [p["slot_id"], r["slot_id"], 77]
    assert isinstance(got[2], UnusableSlot) and got[2].body() == b"zz"
    assert encode_keydir(got, d.key_commitment) == unknown
    # The same slots in a version-1 (legacy) directory: read, no commitment.
    v1 = VEC["keydir_v1"]
    legacy = h(v1["hex"])
    assert hashlib.sha256(legacy).hexdigest() == v1["sha256"] and len(legacy) == v1["size"]
    assert legacy == b"LBKD\x01" + kd[37:] and v1["size"] == v["size"] - 32
    dl = decode_key_directory(legacy)
    assert dl.version == 1 and dl.key_commitment is None and dl.slots == slots
    assert encode_keydir(slots) == legacy


def test_unusable_slots_roundtrip() -> None:
    v = VEC["unusable_slots"]
    kd = h(v["hex"])
    slots = decode_keydir(kd)
    assert [(s.slot_id, int(s.kind), s.body().hex()) for s in slots] == \
        [(x["slot_id"], x["kind"], x["body"]) for x in v["slots"]]
    assert [not isinstance(s, UnusableSlot) for s in slots] == [x["usable"] for x in v["slots"]]
    assert all(s.reason for s in slots if isinstance(s, UnusableSlot))
    commitment = decode_key_directory(kd).key_commitment
    assert commitment == h(VEC["key_commitment"]["hex"])
    assert encode_keydir(slots, commitment) == kd  # kept byte for byte by a writer
    last = slots[-1]
    assert isinstance(last, PasswordSlot)
    assert last.wrapped_key.hex() == VEC["password_slot"]["wrapped_key"]


def test_unlock_skips_unusable_slots() -> None:
    v = VEC["unusable_slots"]
    slots = decode_keydir(h(v["hex"]))
    aid, ck = h(v["archive_id"]), h(v["content_key"])
    assert unlock(CRYPTO, aid, slots, password=v["password"]) == (ck, slots[-1].slot_id)
    with pytest.raises(LimitExceededError):  # nothing this reader can try
        unlock(CRYPTO, aid, slots[:-1], password=v["password"])


# -- §8 / §9 / §10 trees, entries, chunks ---------------------------------------------------


def _ref(d: dict[str, Any]) -> Ref:
    return Ref(d["frame_offset"], d["frame_size"], h(d["tag"]))


def _entry(v: dict[str, Any]) -> Entry:
    t = EntryType(v["type"])
    if t == EntryType.FILE:
        return Entry(t, v["mode"], v["mtime_ns"], v["size"], v["stored_size"],
                     h(v["content_hash"]), h(v["file_id"]), v["chunk_size"], v["layout"],
                     tuple(_ref(r) for r in v["refs"]))
    return Entry(t, v["mode"], v["mtime_ns"], target=v.get("target", ""))


def test_toc_keys() -> None:
    for v in VEC["toc_keys"]:
        assert toc_key(v["path"]).hex() == v["hex"]
        assert key_path(h(v["hex"])) == v["path"]


@pytest.mark.parametrize("i", range(len(VEC["entries"])))
def test_entry(i: int) -> None:
    v = VEC["entries"][i]
    e = _entry(v)
    assert encode_entry(e).hex() == v["hex"]
    assert decode_entry(h(v["hex"])) == e


def test_nodes() -> None:
    v = VEC["leaf_node"]
    leaf = Leaf([h(k) for k in v["keys"]], [h(x) for x in v["values"]])
    assert encode_node(leaf).hex() == v["hex"]
    assert decode_node(h(v["hex"]), 65536) == leaf
    v = VEC["internal_node"]
    node = decode_node(h(v["hex"]), 65536)
    assert isinstance(node, Internal) and node.level == v["level"]
    assert [(c.first_key.hex(), c.ref, c.count) for c in node.children] == \
        [(c["first_key"], _ref(c["ref"]), c["count"]) for c in v["children"]]
    assert encode_node(node).hex() == v["hex"]


def test_chunk_and_index_payloads() -> None:
    for v in VEC["chunk_payloads"]:
        meta = None
        if v["last"]:
            meta = ChunkMeta(EntryType(v["type"]), v["mode"], v["mtime_ns"], v["size"],
                             h(v["content_hash"]), v["chunk_size"], v["target"])
        header = ChunkHeader(h(v["file_id"]), v["chunk_no"], v["path"], meta)
        assert encode_chunk(header, h(v["data"])).hex() == v["hex"]
        got, data = decode_chunk(h(v["hex"]))
        assert got == header and bytes(data).hex() == v["data"]
    v = VEC["index_payload"]
    refs = [_ref(r) for r in v["refs"]]
    assert encode_index(h(v["file_id"]), v["first_chunk_no"], refs).hex() == v["hex"]
    assert decode_index(h(v["hex"])) == (h(v["file_id"]), v["first_chunk_no"], refs)


def _root(d: dict[str, Any] | None) -> TreeRoot | None:
    if d is None:
        return None
    if d["height"] == 0:
        return TreeRoot()
    return TreeRoot(d["count"], d["height"], _ref(d["ref"]) if "ref" in d else None,
                    h(d["inline"]) if "inline" in d else None)


def _commit(v: dict[str, Any]) -> CommitRecord:
    return CommitRecord(
        generation=v["generation"], time_ns=v["time_ns"], archive_end=v["archive_end"],
        default_chunk_size=v["default_chunk_size"], keydir_sha256=h(v["keydir_sha256"]),
        toc=_root(v["toc"]), env=_root(v["env"]), space=_root(v["space"]),  # type: ignore[arg-type]
        root_leaves=tuple(_ref(r) for r in v["root_leaves"]),
        root_leaves_complete=v["root_leaves_complete"], stats=Stats(**v["stats"]))


@pytest.mark.parametrize("i", range(len(VEC["commit_records"])))
def test_commit_record(i: int) -> None:
    v = VEC["commit_records"][i]
    c = _commit(v)
    assert encode_commit(c).hex() == v["hex"]
    assert decode_commit(h(v["hex"])) == c


@pytest.mark.parametrize("i", range(len(VEC["slots"])))
def test_superblock_slot(i: int) -> None:
    v = VEC["slots"][i]
    kd: bytes | ExternalKeydir
    if "keydir" in v:
        kd = h(v["keydir"])
    else:
        kd = ExternalKeydir(v["keydir_page_offset"], v["keydir_size"], h(v["keydir_sha256"]))
    assert commit_frame_offset(v["slot_no"], kd) == v["commit_frame_offset"]
    slot = Slot(v["slot_no"], h(v["archive_id"]), v["generation"], kd, h(v["commit_frame"]),
                v["version"])
    assert v["version"] == 2 and int.from_bytes(h(v["hex"])[8:10], "little") == 2
    image = encode_slot(slot)
    assert len(image) == SLOT_SIZE
    assert image[:v["used"]].hex() == v["hex"] and not any(image[v["used"]:])
    assert decode_slot(image, v["slot_no"]) == slot
    body = h(v["hex"])
    assert zlib.crc32(body[:-4]) == int.from_bytes(body[-4:], "little")
    # The commit frame opens at its offset inside the slot (content key of §19 vectors).
    opener = FrameOpener(CRYPTO, CODEC, h(v["archive_id"]),
                         h(VEC["session_key"]["content_key"]))
    header, payload = opener.open_at(slot.commit_frame, v["commit_frame_offset"],
                                     FrameKind.COMMIT)
    assert header.generation == v["generation"] and header.frame_size == len(slot.commit_frame)
    record = decode_commit(bytes(payload))
    assert record == _commit(v["commit"]) and encode_commit(record) == bytes(payload)
    assert h(v["commit_plaintext"]) == b"\x00" + uvarint(len(payload)) + bytes(payload)  # RAW
    # §7: the record seals its own slot — its generation and its key directory's hash.
    assert record.generation == v["generation"]
    directory = kd if isinstance(kd, bytes) else h(VEC["keydir"]["hex"])
    assert record.keydir_sha256 == hashlib.sha256(directory).digest()
    # The same §19.4 record otherwise (TOC, stats, ...).
    base = _commit(VEC["commit_records"][0])
    assert (record.toc, record.env, record.stats) == (base.toc, base.env, base.stats)


# -- §19 the tiny archive --------------------------------------------------------------------


def test_tiny_archive_walkthrough() -> None:
    t = VEC["tiny_archive"]
    data = (V1 / t["file"]).read_bytes()
    assert len(data) == t["size"]
    assert data[:t["slot0_used"]].hex() == t["slot0"]
    assert not any(data[t["slot0_used"]:SLOT_SIZE])
    assert data[SLOT_SIZE:SLOT_SIZE + t["slot1_used"]].hex() == t["slot1"]
    kpage = data[t["keydir_page_offset"]:t["keydir_page_offset"] + t["keydir_page_size"]]
    assert kpage[:t["keydir_page_used"]].hex() == t["keydir_page"]
    assert not any(kpage[t["keydir_page_used"]:])
    assert t["page_offset"] == t["keydir_page_offset"] + t["keydir_page_size"]
    page = data[t["page_offset"]:t["page_offset"] + t["page_size"]]
    assert page[:t["page_used"]].hex() == t["page"] and not any(page[t["page_used"]:])
    # The last page: the space map's own (FRAMES, one SPACE_NODE frame), up to the end.
    assert t["map_page_offset"] == t["page_offset"] + t["page_size"]
    mpage = data[t["map_page_offset"]:]
    assert len(mpage) == t["map_page_size"]
    assert mpage[:t["map_page_used"]].hex() == t["map_page"]
    assert not any(mpage[t["map_page_used"]:])
    slots = decode_superblock(data[:2 * SLOT_SIZE])
    assert [s.generation for s in slots] == [t["generation"], t["slot1_generation"]]
    s = slots[0]
    assert s.archive_id.hex() == t["archive_id"] and s.keydir == h(t["keydir"])
    assert s.version == t["slot0_version"] == 2
    assert decode_key_directory(s.keydir).key_commitment == h(t["key_commitment"])
    kh, kaid, kd = decode_keydir_page(kpage)
    assert (kh.kind, kh.generation, kaid, kd) == \
        (PageKind.KEYDIR, t["keydir_page_generation"], s.archive_id, h(t["keydir"]))
    ck, slot_id = unlock(CRYPTO, s.archive_id, decode_keydir(h(t["keydir"])),
                         password=t["password"])
    assert ck.hex() == t["content_key"] and slot_id == t["password_slot_id"]
    assert session_key(CRYPTO, ck, h(t["commit_session_id"])).hex() == t["commit_session_key"]
    assert s.commit_frame_offset == t["commit_frame_offset"]
    opener = FrameOpener(CRYPTO, CODEC, s.archive_id, ck)
    header, payload = opener.open_at(s.commit_frame, s.commit_frame_offset, FrameKind.COMMIT)
    assert header.counter == t["commit_counter"] and bytes(payload).hex() == t["commit_plaintext"]
    commit = decode_commit(bytes(payload))
    assert commit == _commit(t["commit"])
    assert commit.keydir_sha256 == hashlib.sha256(s.keydir).digest()  # type: ignore[arg-type]
    assert commit.toc.inline is not None and commit.toc.inline.hex() == t["toc_leaf"]
    leaf = decode_node(commit.toc.inline, 65536)
    assert isinstance(leaf, Leaf)
    assert leaf.keys == [h(t["toc_key"])] and leaf.values == [h(t["entry"])]
    entry = decode_entry(h(t["entry"]))
    (ref,) = entry.refs
    assert (ref.frame_offset, ref.frame_size) == (t["chunk_frame_offset"], t["chunk_frame_size"])
    blob = data[ref.frame_offset:ref.frame_offset + ref.frame_size]
    fh = decode_frame_header(blob)
    assert fh.session_id.hex() == t["chunk_session_id"] and fh.counter == t["chunk_counter"]
    assert bytes(opener.open_ref(blob, ref, FrameKind.DATA_CHUNK)).hex() == t["chunk_payload"]
    ph = decode_page_header(page)
    assert (ph.kind, ph.page_size, ph.used_size, ph.generation) == \
        (PageKind.FRAMES, t["page_size"], t["page_used"], t["generation"])
    # The space map: a REF root (never inline) to the one frame of the map's page.
    assert commit.space is not None and commit.space.inline is None
    sref = commit.space.ref
    assert sref is not None and commit.archive_end == len(data)
    assert (sref.frame_offset, sref.frame_size) == \
        (t["space_frame_offset"], t["space_frame_size"])
    mh = decode_page_header(mpage)
    assert (mh.kind, mh.page_size, mh.used_size, mh.generation) == \
        (PageKind.FRAMES, t["map_page_size"], t["map_page_used"], t["generation"])
    sblob = data[sref.frame_offset:sref.frame_offset + sref.frame_size]
    sh = decode_frame_header(sblob)
    assert (sh.kind, sh.session_id.hex(), sh.counter) == \
        (FrameKind.SPACE_NODE, t["commit_session_id"], t["space_counter"])
    assert t["chunk_counter"] < t["space_counter"] < t["commit_counter"]
    assert t["map_page_offset"] + 32 + sref.frame_size == t["map_page_offset"] + t["map_page_used"]
    assert bytes(opener.open_ref(sblob, sref, FrameKind.SPACE_NODE)).hex() == t["space_leaf"]


def _squash(text: str) -> str:
    return "".join(text.split())


def test_format_md_quotes_the_golden_bytes() -> None:
    """The hex dumps and headline vectors printed in docs/FORMAT.md §19 are the real ones."""
    doc = FORMAT_MD.read_text()
    t = VEC["tiny_archive"]
    assert gen.hexdump(h(t["slot0"])) in doc
    assert gen.hexdump(h(t["keydir_page"]), t["keydir_page_offset"]) in doc
    assert gen.hexdump(h(t["page"]), t["page_offset"]) in doc
    assert gen.hexdump(h(t["map_page"]), t["map_page_offset"]) in doc
    flat = _squash(doc)
    for value in (
        t["archive_id"], t["content_key"], t["commit_session_key"], t["keydir"],
        t["commit_plaintext"], t["chunk_payload"], t["toc_leaf"], t["space_leaf"],
        VEC["frame_header"]["hex"], VEC["frame_aad"]["hex"], VEC["session_key"]["hex"],
        VEC["sealed_frames"][0]["frame"], VEC["sealed_frames"][1]["frame"],
        VEC["password_slot"]["argon2id"], VEC["password_slot"]["wrap_key"],
        VEC["password_slot"]["wrapped_key"], VEC["recipient_slot"]["shared_secret"],
        VEC["recipient_slot"]["wrap_key"], VEC["recipient_slot"]["wrapped_key"],
        VEC["page_header"]["hex"], VEC["leaf_node"]["hex"], VEC["internal_node"]["hex"],
        VEC["commit_records"][0]["hex"], VEC["chunk_payloads"][0]["hex"],
        VEC["index_payload"]["hex"], VEC["entries"][0]["hex"], VEC["entries"][4]["hex"],
        VEC["free_page_header"]["hex"], VEC["keydir_page"]["header"],
        VEC["keydir_page"]["keydir_sha256"], VEC["keydir"]["sha256"],
        VEC["recipient_slot"]["aad_sha256"], VEC["key_commitment"]["hex"],
        t["key_commitment"], VEC["keydir_v1"]["sha256"], VEC["link_slot"]["wrap_key"],
        VEC["link_slot"]["wrapped_key"], VEC["link_slot"]["keydir"]["sha256"],
    ):
        assert value in flat, value[:40]


def _hex_values(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _hex_values(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _hex_values(v)]
    return [obj.lower()] if isinstance(obj, str) else []


def test_every_hex_string_of_section_19_is_checked() -> None:
    """Every hex string printed in docs/FORMAT.md §19 — in code blocks (up to their
    "= ..." annotations) and in backquotes — is part of a vector of vectors.json (which
    the tests above recompute through the code) or of a golden file's SHA-256; the hex
    dumps are the generator's dumps of the golden bytes. A value typed into the text by
    hand, or left behind by a regeneration, fails here."""
    import re

    doc = FORMAT_MD.read_text()
    s19 = doc[doc.index("## §19 Test vectors"):doc.index("## §20 Versioning")]
    known = "\n".join(_hex_values(VEC) + [hashlib.sha256(p.read_bytes()).hexdigest()
                                          for p in sorted(V1.glob("*.lbox"))])
    t = VEC["tiny_archive"]
    dumps = {gen.hexdump(h(t["slot0"])), gen.hexdump(h(t["keydir_page"]), t["keydir_page_offset"]),
             gen.hexdump(h(t["page"]), t["page_offset"]),
             gen.hexdump(h(t["map_page"]), t["map_page_offset"])}
    run = re.compile(r"\b[0-9a-f]{2}(?:[0-9a-f]{2})*(?: [0-9a-f]{2}(?:[0-9a-f]{2})*)*\b")
    dump_line = re.compile(r"^[0-9a-f]{8}  ")
    printed: list[str] = []
    blocks = re.findall(r"```\n(.*?)```", s19, re.S)
    for block in blocks:
        lines = block.splitlines()
        if lines and all(dump_line.match(line) for line in lines):
            assert block.rstrip("\n") in dumps, lines[0]
            continue
        for line in lines:
            if line.startswith("="):  # an annotation of the value above: decimal, reordered
                break
            printed += [m.group(0).replace(" ", "") for m in run.finditer(line)]
    prose = re.sub(r"```\n.*?```", "", s19, flags=re.S)
    for m in re.finditer(r"`([^`]+)`", prose):
        printed += [x.group(0).replace(" ", "") for x in run.finditer(m.group(1))]
    printed = [x for x in printed if len(x) >= 8]
    assert len(printed) > 80
    assert [x for x in printed if x not in known] == []
    assert sum(1 for b in blocks if b.splitlines() and dump_line.match(b.splitlines()[0])) == 4


def test_identity_files_roundtrip() -> None:
    for p in sorted(V1.glob("*.identity")):
        ident = Identity.decode(p.read_text())
        assert Identity.decode(ident.encode()) == ident


def _lenient_b64(text: str) -> bytes:
    """What a permissive decoder makes of a text (both alphabets, padding optional,
    unused bits ignored)."""
    import base64

    text = text.rstrip("=").replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_identity_and_recipient_base64_is_strict() -> None:
    """§6: canonical unpadded base64url only. Each refused text below decodes to the
    very same key with a lenient decoder; a strict one must still refuse it."""
    prefix = "LOCKBOX-IDENTITY-1:"
    # 0xfb 0xff: the URL-safe alphabet's '-' (62) and '_' (63) both appear.
    seed = bytes([0xFB, 0xFF, 0xBF]) * 21 + b"\xff"
    good = Identity(seed).encode()
    body = good[len(prefix):]
    assert len(body) == 86 and "-" in body and "_" in body and body[-1] == "w"
    assert Identity.decode(good).seed == seed
    assert Identity.decode("# a comment\n  " + good + "  \n").seed == seed
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(body[-1])
    bad_bodies = {
        "'+' for '-'": body.replace("-", "+"),
        "'/' for '_'": body.replace("_", "/"),
        "'=' padding": body + "==",
        "one '='": body + "=",
        "unused bits set": body[:-1] + alphabet[last | 0b0001],
        "unused bits set (high)": body[:-1] + alphabet[last | 0b1000],
    }
    for why, bad in bad_bodies.items():
        assert _lenient_b64(bad) == seed, why  # the same seed, read permissively
        with pytest.raises(FormatError):
            Identity.decode(prefix + bad)
    for bad in (body[:40] + " " + body[40:], body[:40] + "." + body[41:],
                body + "A", body[:-1], body + "\x00"):
        with pytest.raises(FormatError):
            Identity.decode(prefix + bad)
    # The §19.3 identity text and the variants FORMAT.md §6 names as refused.
    text = VEC["recipient_slot"]["identity_text"]
    assert Identity.decode(text).seed == h(VEC["recipient_slot"]["seed"])
    assert text.endswith("w") and "-" in text
    for bad in (text.replace("-", "+"), text + "==", text[:-1] + "x"):
        assert _lenient_b64(bad[len(prefix):]) == h(VEC["recipient_slot"]["seed"])
        with pytest.raises(FormatError):
            Identity.decode(bad)
    # Recipients: 1568 bytes, 2091 characters, the last with 2 unused bits.
    rtext = VEC["recipient_slot"]["recipient_text"]
    rprefix = "lockbox-recipient-1:"
    rbody = rtext[len(rprefix):]
    ek = h(VEC["recipient_slot"]["encapsulation_key"])
    assert len(rbody) == 2091 and Recipient.decode(rtext).public_key == ek
    rlast = alphabet.index(rbody[-1])
    assert rlast & 0b11 == 0
    for bad in (rbody + "=", rbody[:-1] + alphabet[rlast | 0b01],
                rbody[:-1] + alphabet[rlast | 0b10]):
        assert _lenient_b64(bad) == ek
        with pytest.raises(FormatError):
            Recipient.decode(rprefix + bad)
    for ch in "-_":  # the same key in the standard alphabet
        if ch in rbody:
            bad = rbody.replace(ch, "+" if ch == "-" else "/")
            assert _lenient_b64(bad) == ek
            with pytest.raises(FormatError):
                Recipient.decode(rprefix + bad)


def test_copy_of_golden_archive_is_writable(tmp_path: Path) -> None:
    """A second writer can extend a golden archive (the format is append-only)."""
    m = ARCHIVES["tree.lbox"]
    path = tmp_path / "tree.lbox"
    shutil.copyfile(V1 / "tree.lbox", path)
    with Lockbox.open(path, password=m["password"]) as box, box.writer() as w:
        w.add_bytes("added.txt", b"added\n", mtime_ns=0)
    with Lockbox.open(path, password=m["password"]) as box:
        assert box.generation == m["generation"] + 1
        assert box.read_bytes("added.txt") == b"added\n"
        assert box.verify().ok
