"""Every vector of tests/vectors/v1/vectors.json passes a strict reader (docs/FORMAT.md).

tests/test_vectors.py checks that each vector re-encodes to its bytes through the real
code. That is not enough: a vector can round-trip and still be a structure no archive
may hold — e.g. a slot image whose sealed commit record names another generation or
another key directory (§7), which a reader must refuse with IntegrityError. Here each
vector is read the way a strict reader meets it in an archive, in its context:

* slot images are assembled into an archive (both slots and the KEYDIR page they point
  at) and opened by the reference reader — newest first and each generation on
  request, with the password and with the identity — and then re-checked step by step
  as §3, §5, §6, §7 and §11 say (generation of slot, frame header and record;
  ``keydir_sha256``; the frame filling ``C``; the key commitment);
* commit records are checked as §7 and §9 require of what a writer writes (stats equal
  to an inline TOC, parents present, refs below ``archive_end`` and disjoint,
  ``root_leaves`` only for a tall TOC, no inline space root);
* key slots unwrap to the content key the directory commits to; entries, nodes, chunks,
  indexes, pages and space records decode under the strict decoders, and the space
  records form one consistent map.

* PACK payloads and layout-2 entries (format version 3) decode under the reference and
  the independent decoders, and reading each entry gives its file.

A new top-level vector must get a check here (``test_every_vector_has_a_strict_check``).

The second half of this file is an independent reader (:class:`SpecReader`) written from
docs/FORMAT.md with ``cryptography``, ``blake3`` and zstd alone: it opens golden archives
of versions 2 and 3 — ``packed.lbox``, written by the real writer with packs — and reads
every file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from lockbox.errors import WrongKeyError
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.frames import FrameOpener, decode_plain, session_key
from lockbox.formats.lbox.keys import Identity, LinkSecret, key_commitment, unlock
from lockbox.formats.lbox.wire.chunk import decode_chunk, decode_index
from lockbox.formats.lbox.wire.commit import CommitRecord, TreeRoot, decode_commit
from lockbox.formats.lbox.wire.constants import (
    FRAME_HEADER_SIZE,
    MAX_ROOT_LISTING_LEAVES,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
    EntryType,
    FrameKind,
    PageKind,
)
from lockbox.formats.lbox.wire.encoding import Reader, svarint, uvarint
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_PACKED,
    decode_entry,
    encode_packed_entry_head,
    key_path,
    split_path,
    toc_key,
)
from lockbox.formats.lbox.wire.frame import decode_frame_header, frame_aad, frame_nonce
from lockbox.formats.lbox.wire.keydir import (
    LinkSlot,
    PasswordSlot,
    RecipientSlot,
    decode_key_directory,
)
from lockbox.formats.lbox.wire.node import Internal, Leaf, decode_node
from lockbox.formats.lbox.wire.pack import decode_pack, pack_member
from lockbox.formats.lbox.wire.page import decode_keydir_page, decode_page_header
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.wire.superblock import ExternalKeydir, decode_slot, decode_superblock
from lockbox.platform import default_codec, default_crypto
from lockbox.sources.memory import BytesSource

V1 = Path(__file__).resolve().parent / "vectors" / "v1"
CRYPTO = default_crypto()
CODEC = default_codec()
h = bytes.fromhex
CHECKS: dict[str, Callable[[Any, dict[str, Any]], None]] = {}


def strict(*names: str) -> Callable[[Callable[[Any, dict[str, Any]], None]],
                                    Callable[[Any, dict[str, Any]], None]]:
    def register(fn: Callable[[Any, dict[str, Any]], None]) -> Callable[[Any, dict[str, Any]],
                                                                           None]:
        for name in names:
            CHECKS[name] = fn
        return fn
    return register


def _load() -> dict[str, Any]:
    vec: dict[str, Any] = json.loads((V1 / "vectors.json").read_text())
    return vec


def _ref(v: dict[str, Any]) -> Ref:
    return Ref(v["frame_offset"], v["frame_size"], h(v["tag"]))


# -- §2 primitives ---------------------------------------------------------------------------


@strict("uvarint")
def _uvarint(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        r = Reader(h(v["hex"]))
        assert r.uvarint() == v["value"]
        r.done()
        assert uvarint(v["value"]).hex() == v["hex"]  # canonical: the shortest form


@strict("uvarint_invalid")
def _uvarint_invalid(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        with pytest.raises(Exception) as info:
            Reader(h(v["hex"])).uvarint()
        assert type(info.value).__name__ == v["error"], v["hex"]


@strict("svarint")
def _svarint(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        r = Reader(h(v["hex"]))
        assert r.svarint() == v["value"] and svarint(v["value"]).hex() == v["hex"]
        r.done()


@strict("blob")
def _blob(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        r = Reader(h(v["hex"]))
        assert r.blob(1 << 20).hex() == v["data"]
        r.done()


@strict("crc32")
def _crc32(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        assert zlib.crc32(h(v["data"])) == v["crc32"]


# -- §4 pages, §5 frames ---------------------------------------------------------------------


@strict("page_header", "free_page_header")
def _page_header(v: dict[str, Any], vec: dict[str, Any]) -> None:
    ph = decode_page_header(h(v["hex"]))
    assert (int(ph.kind), ph.page_size, ph.used_size, ph.generation) == \
        (v["kind"], v["page_size"], v["used_size"], v["generation"])
    if ph.kind == PageKind.FREE:
        assert ph.used_size == PAGE_HEADER_SIZE


@strict("keydir_page")
def _keydir_page(v: dict[str, Any], vec: dict[str, Any]) -> None:
    page = h(v["hex"]) + bytes(v["page_size"] - v["used_size"])
    header, archive_id, keydir = decode_keydir_page(page)
    assert header.kind == PageKind.KEYDIR and header.generation == v["generation"]
    assert header.used_size == PAGE_HEADER_SIZE + 16 + len(keydir) == v["used_size"]
    assert archive_id.hex() == v["archive_id"] and keydir.hex() == vec["keydir"]["hex"]
    assert hashlib.sha256(keydir).hexdigest() == v["keydir_sha256"]
    decode_key_directory(keydir)


@strict("frame_header")
def _frame_header(v: dict[str, Any], vec: dict[str, Any]) -> None:
    fh = decode_frame_header(h(v["hex"]))
    assert (int(fh.kind), fh.sealed_size, fh.generation, fh.session_id.hex(), fh.counter) == \
        (v["kind"], v["sealed_size"], v["generation"], v["session_id"], v["counter"])


@strict("nonce")
def _nonce(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        assert frame_nonce(v["counter"]).hex() == v["hex"]


@strict("frame_aad")
def _frame_aad(v: dict[str, Any], vec: dict[str, Any]) -> None:
    header = h(v["header"])
    decode_frame_header(header)
    aad = frame_aad(h(v["archive_id"]), header, v["frame_offset"])
    assert len(aad) == 84 and aad.hex() == v["hex"]


@strict("session_key")
def _session_key(v: dict[str, Any], vec: dict[str, Any]) -> None:
    assert session_key(CRYPTO, h(v["content_key"]), h(v["session_id"])).hex() == v["hex"]


@strict("sealed_frames")
def _sealed_frames(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        ref = _ref(v["ref"])
        frame = h(v["frame"])
        assert ref.frame_offset == v["frame_offset"] and ref.frame_size == len(frame)
        opener = FrameOpener(CRYPTO, CODEC, h(v["archive_id"]), h(v["content_key"]))
        payload = opener.open_ref(frame, ref, FrameKind(v["kind"]))
        assert bytes(payload).hex() == v["payload"]
        fh = decode_frame_header(frame)
        assert (fh.generation, fh.counter, fh.session_id.hex()) == \
            (v["generation"], v["counter"], v["session_id"])
        plain = h(v["plaintext"])
        assert bytes(decode_plain(CODEC, plain, 1 << 20)).hex() == v["payload"]
        assert plain[0] == {"raw": 0, "zstd": 1}[v["codec"]]


# -- §6 key slots and directories ------------------------------------------------------------


@strict("password_slot")
def _password_slot(v: dict[str, Any], vec: dict[str, Any]) -> None:
    desc = h(v["descriptor"])
    slot = PasswordSlot(v["slot_id"], h(v["salt"]), v["time_cost"], v["memory_kib"],
                        v["parallelism"], h(v["wrapped_key"]))
    assert slot.descriptor() == desc
    commitment = key_commitment(CRYPTO, h(v["archive_id"]), h(v["content_key"]))
    key, slot_id = unlock(CRYPTO, h(v["archive_id"]), [slot], password=v["password"],
                          commitment=commitment)
    assert key.hex() == v["content_key"] and slot_id == v["slot_id"]


@strict("recipient_slot")
def _recipient_slot(v: dict[str, Any], vec: dict[str, Any]) -> None:
    ident = Identity.decode(v["identity_text"])
    assert ident.seed.hex() == v["seed"]
    assert ident.recipient(CRYPTO).public_key.hex() == v["encapsulation_key"]
    slot = RecipientSlot(v["slot_id"], h(v["kem_ciphertext"]), h(v["wrapped_key"]))
    assert len(slot.body()) == v["body_size"]
    commitment = key_commitment(CRYPTO, h(v["archive_id"]), h(v["content_key"]))
    key, slot_id = unlock(CRYPTO, h(v["archive_id"]), [slot], identity=ident,
                          commitment=commitment)
    assert key.hex() == v["content_key"] and slot_id == v["slot_id"]


@strict("link_slot")
def _link_slot(v: dict[str, Any], vec: dict[str, Any]) -> None:
    """§6 link slot: the lbk1 text is the secret's only text; the wrap key and the wrap,
    recomputed here with `cryptography` alone, are the vector's; the slot unlocks (link
    slots only) to the committed content key; the directory image holds it byte for byte."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    secret, archive_id, content_key = h(v["secret"]), h(v["archive_id"]), h(v["content_key"])
    assert LinkSecret.parse(v["text"]).secret == secret and len(secret) == 32
    slot_id = v["slot_id"]
    info = b"lockbox/v1/link-wrap" + slot_id.to_bytes(4, "little")
    assert info.hex() == v["wrap_info"]
    wrap_key = HKDF(hashes.SHA256(), 32, archive_id, info).derive(secret)
    assert wrap_key.hex() == v["wrap_key"]
    aad = b"lockbox/v1/slot" + archive_id + bytes([3]) + slot_id.to_bytes(4, "little")
    assert aad.hex() == v["aad"]  # the descriptor of a link slot is empty
    wrapped = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), content_key, aad)
    assert wrapped.hex() == v["wrapped_key"] and len(wrapped) == v["body_size"]
    slot = LinkSlot(slot_id, wrapped)
    commitment = key_commitment(CRYPTO, archive_id, content_key)
    key, got_id = unlock(CRYPTO, archive_id, [slot], link=LinkSecret(secret),
                         commitment=commitment)
    assert key == content_key and got_id == slot_id
    kd = v["keydir"]
    image = h(kd["hex"])
    assert len(image) == kd["size"] and hashlib.sha256(image).hexdigest() == kd["sha256"]
    directory = decode_key_directory(image)
    assert directory.key_commitment == commitment
    assert [s for s in directory.slots if isinstance(s, LinkSlot)] == [slot]


@strict("key_commitment")
def _key_commitment(v: dict[str, Any], vec: dict[str, Any]) -> None:
    assert CRYPTO.hkdf_sha256(h(v["content_key"]), h(v["archive_id"]), h(v["info"]),
                              32).hex() == v["hex"]
    assert h(v["info"]) == b"lockbox/v1/key-commitment"


def _unlocks_both(keydir: bytes, vec: dict[str, Any], *, committed: bool) -> None:
    """Both slots of §19.3 give the content key; a version-2 directory commits to it."""
    d = decode_key_directory(keydir)
    aid = h(vec["password_slot"]["archive_id"])
    ck = vec["password_slot"]["content_key"]
    assert (d.key_commitment is not None) == committed
    if committed:
        assert d.key_commitment == key_commitment(CRYPTO, aid, h(ck))
    ident = Identity.decode(vec["recipient_slot"]["identity_text"])
    for secret in ({"password": vec["password_slot"]["password"]}, {"identity": ident}):
        key, _ = unlock(CRYPTO, aid, d.slots, commitment=d.key_commitment,
                        **secret)  # type: ignore[arg-type]
        assert key.hex() == ck


@strict("keydir")
def _keydir(v: dict[str, Any], vec: dict[str, Any]) -> None:
    kd = h(v["hex"])
    assert len(kd) == v["size"] and kd[4] == v["version"] == 2
    assert hashlib.sha256(kd).hexdigest() == v["sha256"]
    _unlocks_both(kd, vec, committed=True)


@strict("keydir_v1")
def _keydir_v1(v: dict[str, Any], vec: dict[str, Any]) -> None:
    kd = h(v["hex"])
    assert len(kd) == v["size"] and kd[4] == v["version"] == 1
    assert decode_key_directory(kd).slots == decode_key_directory(h(vec["keydir"]["hex"])).slots
    _unlocks_both(kd, vec, committed=False)


@strict("unusable_slots")
def _unusable_slots(v: dict[str, Any], vec: dict[str, Any]) -> None:
    d = decode_key_directory(h(v["hex"]))
    assert d.key_commitment == key_commitment(CRYPTO, h(v["archive_id"]), h(v["content_key"]))
    key, _ = unlock(CRYPTO, h(v["archive_id"]), d.slots, password=v["password"],
                    commitment=d.key_commitment)
    assert key.hex() == v["content_key"]


# -- §8-§10 keys, entries, nodes, chunks -----------------------------------------------------


@strict("toc_keys")
def _toc_keys(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        assert key_path(h(v["hex"])) == v["path"] and toc_key(v["path"]).hex() == v["hex"]


def _check_entry(value: bytes) -> Any:
    e = decode_entry(value)
    if e.type == EntryType.FILE:
        assert all(r.frame_offset >= SUPERBLOCK_SIZE + PAGE_HEADER_SIZE for r in e.refs)
        if e.layout == 0:  # CHUNKS: the refs are the chunk frames, all of stored_size
            assert e.stored_size == sum(r.frame_size for r in e.refs)
    return e


@strict("entries")
def _entries(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        e = _check_entry(h(v["hex"]))
        assert (int(e.type), e.mode, e.mtime_ns) == (v["type"], v["mode"], v["mtime_ns"])


def _check_toc_leaf(leaf: Leaf) -> dict[str, int]:
    """Keys decode, entries decode, every parent is a DIR of the same leaf (a single-leaf
    TOC holds them all, §9); returns the commit stats the leaf implies (§7)."""
    types: dict[str, EntryType] = {}
    stats = {"files": 0, "dirs": 0, "symlinks": 0, "file_bytes": 0, "stored_bytes": 0}
    for key, value in zip(leaf.keys, leaf.values):
        path = key_path(key)
        e = _check_entry(value)
        types[path] = e.type
        stats[{EntryType.FILE: "files", EntryType.DIR: "dirs",
               EntryType.SYMLINK: "symlinks"}[e.type]] += 1
        if e.type == EntryType.FILE:
            stats["file_bytes"] += e.size
            stats["stored_bytes"] += e.stored_size
    for path in types:
        parent = split_path(path)[0]
        assert parent == "" or types.get(parent) == EntryType.DIR, path
    return stats


@strict("leaf_node")
def _leaf_node(v: dict[str, Any], vec: dict[str, Any]) -> None:
    leaf = decode_node(h(v["hex"]), 65536)
    assert isinstance(leaf, Leaf) and [k.hex() for k in leaf.keys] == v["keys"]
    _check_toc_leaf(leaf)


@strict("internal_node")
def _internal_node(v: dict[str, Any], vec: dict[str, Any]) -> None:
    node = decode_node(h(v["hex"]), 65536)
    assert isinstance(node, Internal) and node.level == v["level"]
    for child in node.children:
        key_path(child.first_key)
        assert child.count >= 1
    _disjoint([c.ref for c in node.children])


@strict("chunk_payloads")
def _chunk_payloads(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        header, data = decode_chunk(h(v["hex"]))
        assert bytes(data).hex() == v["data"] and (header.meta is not None) == v["last"]
        if header.meta is not None:
            assert len(data) <= header.meta.chunk_size
            if header.chunk_no == 0:  # the whole file: its hash and size are the data's
                assert header.meta.size == len(data)
                assert header.meta.content_hash == blake3.blake3(bytes(data)).digest()


@strict("index_payload")
def _index_payload(v: dict[str, Any], vec: dict[str, Any]) -> None:
    _, first, refs = decode_index(h(v["hex"]))
    assert first % 4096 == 0 and len(refs) == len(v["refs"])
    _disjoint(refs)


@strict("pack_payload")
def _pack_payload(v: dict[str, Any], vec: dict[str, Any]) -> None:
    """§10 "Packs": the header holds (count, sizes summing to the rest), each member is
    chunk 0 of a one-chunk file with its metadata, and it is the payload of the sealed
    PACK frame of §19.2 — by the reference decoders and by the independent reader."""
    payload = h(v["hex"])
    members = [h(m) for m in v["members"]]
    assert [bytes(m) for m in decode_pack(payload)] == members == \
        SpecReader.pack_members(payload)
    assert len(members) == v["count"] and [len(m) for m in members] == v["member_sizes"]
    for m in members:
        header, data = decode_chunk(m)
        assert header.chunk_no == 0 and header.meta is not None
        assert header.meta.size == len(data)
        assert header.meta.content_hash == blake3.blake3(bytes(data)).digest()
    frame = vec["sealed_frames"][3]
    assert v["frame"] == "sealed_frames[3]" and frame["kind"] == FrameKind.PACK
    opener = FrameOpener(CRYPTO, CODEC, h(frame["archive_id"]), h(frame["content_key"]))
    assert bytes(opener.open_ref(h(frame["frame"]), _ref(frame["ref"]), FrameKind.PACK)) == \
        payload


@strict("packed_entries")
def _packed_entries(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    """§9 layout 2: member_no between the layout byte and n = 1; the one ref is the PACK
    frame of §19.2; reading each entry (§10 "Packs", steps 1-6) gives its file."""
    frame = vec["sealed_frames"][3]
    ref = _ref(frame["ref"])
    opener = FrameOpener(CRYPTO, CODEC, h(frame["archive_id"]), h(frame["content_key"]))
    payload = opener.open_ref(h(frame["frame"]), ref, FrameKind.PACK)
    for v in vs:
        buf = h(v["hex"])
        e = decode_entry(buf)
        spec = SpecReader.entry(buf)
        assert e.layout == spec["layout"] == LAYOUT_PACKED and tuple(e.refs) == (ref,)
        assert e.member_no == spec["member_no"] == v["member_no"]
        assert buf == h(v["head"]) + uvarint(ref.frame_offset) + uvarint(ref.frame_size) + \
            ref.tag
        assert encode_packed_entry_head(e.mode, e.mtime_ns, e.size, e.stored_size,
                                        e.content_hash, e.file_id, e.chunk_size,
                                        e.member_no).hex() == v["head"]
        member = pack_member(payload, e.member_no)
        assert e.stored_size == len(member)
        header, data = decode_chunk(member)
        assert (header.file_id, header.chunk_no, header.path) == (e.file_id, 0, v["path"])
        assert header.meta is not None
        assert (header.meta.size, header.meta.content_hash) == (e.size, e.content_hash)
        assert bytes(data).hex() == v["data"] and len(data) == e.size
        assert blake3.blake3(bytes(data)).digest() == e.content_hash


# -- §7 commit records, §14 space records ----------------------------------------------------


def _disjoint(refs: list[Ref]) -> None:
    spans = sorted((r.frame_offset, r.frame_offset + r.frame_size) for r in refs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"frames overlap at {start}"


def _check_record(c: CommitRecord) -> None:
    """What §7 (and §9, §14) require of a commit record, record-level."""
    assert c.archive_end >= SUPERBLOCK_SIZE and c.archive_end % PAGE_UNIT == 0
    s = c.stats
    assert c.toc.count == s.files + s.dirs + s.symlinks
    roots: list[TreeRoot] = [c.toc, c.env] + ([c.space] if c.space is not None else [])
    refs = [r.ref for r in roots if r.ref is not None] + list(c.root_leaves)
    for ref in refs:
        assert SUPERBLOCK_SIZE + PAGE_HEADER_SIZE <= ref.frame_offset
        assert ref.frame_offset + ref.frame_size <= c.archive_end
    _disjoint(refs)
    for root, limit in ((c.toc, 65536), (c.env, 65536)):
        if root.inline is not None:
            leaf = decode_node(root.inline, limit)
            assert isinstance(leaf, Leaf) and root.height == 1 and leaf.count == root.count
    if c.toc.inline is not None:
        leaf = decode_node(c.toc.inline, 65536)
        assert isinstance(leaf, Leaf)
        assert _check_toc_leaf(leaf) == {"files": s.files, "dirs": s.dirs,
                                         "symlinks": s.symlinks, "file_bytes": s.file_bytes,
                                         "stored_bytes": s.stored_bytes}
    # root_leaves: only for a TOC of more than one leaf, at most 16 (§7).
    assert not c.root_leaves or c.toc.height >= 2
    assert len(c.root_leaves) <= MAX_ROOT_LISTING_LEAVES
    assert not c.root_leaves_complete or c.root_leaves
    # The space root is never inline (§7, §14).
    assert c.space is None or c.space.inline is None


@strict("commit_records")
def _commit_records(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    for v in vs:
        _check_record(decode_commit(h(v["hex"])))


@strict("space_records")
def _space_records(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    from lockbox.formats.lbox.write.space import SpaceMap

    items = [(h(v["key"]), h(v["hex"])) for v in vs]
    assert [k for k, _ in items] == sorted(k for k, _ in items)  # tree order
    m = SpaceMap.from_items(items)
    assert m.tail_start is not None and m.check_cover(m.tail_start) == ""
    for offset, size in m.dead.items():  # a DEAD frame lies inside a FRAMES page
        page = m.page_of(offset)
        assert m.pages[page].kind == PageKind.FRAMES
        assert page + PAGE_HEADER_SIZE <= offset and offset + size <= page + m.pages[page].size


# -- §3 slots, §11 opening -------------------------------------------------------------------


def _slot_archive(vec: dict[str, Any]) -> bytes:
    """The two slot images and the KEYDIR page the external one points at, as one file."""
    data = bytearray(SUPERBLOCK_SIZE)
    for v in vec["slots"]:
        image = h(v["hex"])
        data[v["slot_no"] * SLOT_SIZE:v["slot_no"] * SLOT_SIZE + len(image)] = image
    page = vec["keydir_page"]
    for v in vec["slots"]:
        if "keydir_page_offset" in v:
            assert v["keydir_page_offset"] == len(data)
    data += h(page["hex"]) + bytes(page["page_size"] - page["used_size"])
    return bytes(data)


@strict("slots")
def _slots(vs: list[dict[str, Any]], vec: dict[str, Any]) -> None:
    data = _slot_archive(vec)
    password = vec["password_slot"]["password"]
    ident = Identity.decode(vec["recipient_slot"]["identity_text"])
    content_key = h(vec["password_slot"]["content_key"])
    newest = max(v["generation"] for v in vs)
    # The reference reader: newest first, then each generation on request.
    for generation in [None] + [v["generation"] for v in vs]:
        with Lockbox(BytesSource(data), password=password, generation=generation) as box:
            assert box.generation == (generation or newest)
            assert [i.path for i in box.ls()] == ["docs"]
    for v in vs:
        with_recipient = "keydir_page_offset" in v
        if with_recipient:
            with Lockbox(BytesSource(data), identity=ident, generation=v["generation"]) as box:
                assert box.generation == v["generation"]
        else:
            with pytest.raises(WrongKeyError):
                Lockbox(BytesSource(data), identity=ident, generation=v["generation"])
    # Step by step, as the text says (§3, §4, §5, §6, §7, §11).
    slots = {s.slot_no: s for s in decode_superblock(data)}
    for v in vs:
        image = h(v["hex"])
        slot = decode_slot(image, v["slot_no"])
        assert slots[v["slot_no"]] == slot and slot.version == v["version"] == 2
        assert slot.generation == v["generation"] and slot.generation % 2 == slot.slot_no
        if isinstance(slot.keydir, ExternalKeydir):
            ptr = slot.keydir
            _, aid, keydir = decode_keydir_page(
                data[ptr.page_offset:ptr.page_offset + PAGE_HEADER_SIZE + 16 + ptr.keydir_size])
            assert aid == slot.archive_id and len(keydir) == ptr.keydir_size
            assert hashlib.sha256(keydir).digest() == ptr.sha256
        else:
            keydir = slot.keydir
        directory = decode_key_directory(keydir)
        key, _ = unlock(CRYPTO, slot.archive_id, directory.slots, password=password,
                        commitment=directory.key_commitment)
        assert key == content_key
        header = decode_frame_header(slot.commit_frame)
        assert header.kind == FrameKind.COMMIT
        assert FRAME_HEADER_SIZE + header.sealed_size == len(slot.commit_frame)  # = C
        opener = FrameOpener(CRYPTO, CODEC, slot.archive_id, key)
        _, payload = opener.open_at(slot.commit_frame, slot.commit_frame_offset,
                                    FrameKind.COMMIT)
        record = decode_commit(bytes(payload))
        assert record.generation == header.generation == slot.generation  # §7
        assert record.keydir_sha256 == hashlib.sha256(keydir).digest()  # §7
        _check_record(record)
        if isinstance(slot.keydir, ExternalKeydir):  # the page lies in the commit's pages
            ptr = slot.keydir
            assert ptr.page_offset + PAGE_HEADER_SIZE + 16 + ptr.keydir_size <= \
                record.archive_end


@strict("tiny_archive")
def _tiny_archive(t: dict[str, Any], vec: dict[str, Any]) -> None:
    data = (V1 / t["file"]).read_bytes()
    assert hashlib.sha256(data[:t["slot0_used"]]).digest() == \
        hashlib.sha256(h(t["slot0"])).digest()
    with Lockbox(BytesSource(data), password=t["password"]) as box:
        assert box.generation == t["generation"] and box.verify().ok
        record = box.view.commit
        _check_record(record)
        assert record.generation == box.view.slot.generation
    with Lockbox(BytesSource(data), password=t["password"],
                 generation=t["slot1_generation"]) as box:
        _check_record(box.view.commit)


# -- the tests -------------------------------------------------------------------------------


def test_every_vector_has_a_strict_check() -> None:
    assert set(_load()) - {"format_version", "about"} == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_vector_passes_a_strict_reader(name: str) -> None:
    vec = _load()
    CHECKS[name](vec[name], vec)


# -- an independent reader of format versions 2 and 3 (docs/FORMAT.md alone) ----------------
#
# Everything below is written from the text of docs/FORMAT.md with `cryptography`, `blake3`
# and zstd alone: no lockbox code. It opens a golden archive with its password (§3, §6,
# §5, §7), walks the TOC (§8, §9), reads every file through its layout — chunks, chunk
# indexes, or a member of a PACK frame (§10 "Packs") — and checks the space map's PACK
# records against the TOC (§14). It raises AssertionError on anything the text forbids.


class SpecError(Exception):
    """What the text calls an error, by class name (``kind``)."""

    def __init__(self, kind: str, what: str) -> None:
        super().__init__(f"{kind}: {what}")
        self.kind = kind


class _Cur:
    """A cursor over one structure (§2): canonical uvarints, exact consumption."""

    def __init__(self, buf: bytes, what: str = "structure") -> None:
        self.buf, self.pos, self.what = bytes(buf), 0, what

    def take(self, n: int) -> bytes:
        if n > len(self.buf) - self.pos:
            raise SpecError("TruncatedError", f"{self.what}: cut short")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def uv(self, limit: int = (1 << 64) - 1) -> int:
        value = shift = 0
        for i in range(10):
            b = self.u8()
            if i == 9 and b > 1:
                raise SpecError("FormatError", f"{self.what}: varint over 64 bits")
            value |= (b & 0x7F) << shift
            if b < 0x80:
                if b == 0 and i:
                    raise SpecError("FormatError", f"{self.what}: non-canonical varint")
                if value > limit:
                    raise SpecError("LimitExceededError", f"{self.what}: {value} > {limit}")
                return value
            shift += 7
        raise SpecError("FormatError", f"{self.what}: varint of 11 bytes")

    def sv(self) -> int:
        z = self.uv()
        return (z >> 1) ^ -(z & 1)

    def blob(self, limit: int) -> bytes:
        return self.take(self.uv(limit))

    def ref(self) -> tuple[int, int, bytes]:
        offset, size = self.uv(), self.uv(48 + 4_210_720)
        if size < 64:
            raise SpecError("FormatError", f"{self.what}: frame size {size}")
        return offset, size, self.take(16)

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise SpecError("FormatError", f"{self.what}: trailing bytes")


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def _zstd_decompress(body: bytes) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef]
    out: bytes = zstd.decompress(body)
    return out


_LIMITS = {1: 65536, 2: 1 << 20, 3: 1 << 20, 4: 1 << 20, 5: 4_210_688, 6: 163_904,
           7: 4_210_688}  # §16, by frame kind (7: PACK, version 3)


class SpecReader:
    """Opens one archive with a password, as docs/FORMAT.md says."""

    def __init__(self, data: bytes, password: str) -> None:
        import unicodedata

        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        self.data = data
        slots = [s for s in (self._slot(n) for n in (0, 1)) if s is not None]
        slot = max(slots, key=lambda s: s["generation"])  # the newest valid slot (§3)
        self.version, self.archive_id = slot["version"], slot["archive_id"]
        self.slot_versions = sorted(s["version"] for s in slots)
        keydir = slot["keydir"]
        if slot["external"]:  # §3 pointer, §4 KEYDIR page
            page_offset, size = int.from_bytes(keydir[:8], "little"), \
                int.from_bytes(keydir[8:12], "little")
            page = data[page_offset:page_offset + 48 + size]
            assert page[:4] == b"LBXP" and page[5] == 2 and page[32:48] == self.archive_id
            keydir = page[48:]
            assert hashlib.sha256(keydir).digest() == slot["keydir"][12:44]
        c = _Cur(keydir, "key directory")  # §6
        assert c.take(4) == b"LBKD"
        kd_version = c.u8()
        assert kd_version == 2, "writers write version-2 directories (version 3 slots too)"
        commitment = c.take(32)
        content_key = None
        for _ in range(c.uint(2)):
            kind, slot_id, body = c.u8(), c.uint(4), c.take(c.uint(2))
            if kind != 1 or content_key is not None:
                continue
            salt, t, m, p, wrapped = (body[:16], int.from_bytes(body[16:20], "little"),
                                      int.from_bytes(body[20:24], "little"), body[24], body[25:])
            assert p == 1 and len(wrapped) == 48
            ikm = Argon2id(salt=salt, length=32, iterations=t, lanes=1,
                           memory_cost=m).derive(unicodedata.normalize("NFC", password).encode())
            wrap_key = _hkdf(ikm, self.archive_id, b"lockbox/v1/password-wrap")
            aad = (b"lockbox/v1/slot" + self.archive_id + bytes([kind])
                   + slot_id.to_bytes(4, "little") + body[:25])
            content_key = ChaCha20Poly1305(wrap_key).decrypt(bytes(12), wrapped, aad)
        c.end()
        assert content_key is not None, "no password slot opened"
        assert _hkdf(content_key, self.archive_id, b"lockbox/v1/key-commitment") == commitment
        self.content_key = content_key
        # §5 "The commit frame", §7 the commit record
        frame = slot["commit_frame"]
        offset = slot["slot_no"] * 8192 + 48 + len(slot["keydir"])
        kind, record = self._open(frame, offset, None)
        assert kind == 1
        self.commit = self._commit(record)
        assert self.commit["generation"] == slot["generation"]
        assert self.commit["keydir_sha256"] == hashlib.sha256(keydir).digest()

    # §3
    def _slot(self, no: int) -> dict[str, Any] | None:
        region = self.data[no * 8192:(no + 1) * 8192]
        if region[:8] != b"LBOX\r\n\x1a\n":
            return None
        version, slot_no, flags, reserved = struct.unpack_from("<HBBI", region, 8)
        archive_id, generation, k, size_c = struct.unpack_from("<16sQII", region, 16)
        assert k + size_c <= 8140
        end = 48 + k + size_c
        assert int.from_bytes(region[end:end + 4], "little") == zlib.crc32(region[:end])
        if version not in (1, 2, 3):
            raise SpecError("UnsupportedVersionError", f"slot version {version}")
        assert slot_no == no and not reserved and not flags & ~1 and generation % 2 == no
        return {"slot_no": no, "version": version, "archive_id": archive_id,
                "generation": generation, "external": bool(flags & 1),
                "keydir": region[48:48 + k], "commit_frame": region[48 + k:end]}

    # §5
    def _open(self, frame: bytes, offset: int, ref: tuple[int, int, bytes] | None,
              expect: int | None = None) -> tuple[int, bytes]:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        magic, kind, flags, reserved, sealed_size, _generation, session_id, counter = \
            struct.unpack_from("<4sBBHIQ16sQ", frame, 0)
        assert magic == b"LBXF" and not flags and not reserved
        assert int.from_bytes(frame[44:48], "little") == zlib.crc32(frame[:44])
        assert 48 + sealed_size == len(frame)
        if ref is not None:
            if expect is not None and kind != expect:
                raise SpecError("IntegrityError", f"expected kind {expect}, found {kind}")
            if frame[-16:] != ref[2]:
                raise SpecError("IntegrityError", "not the frame its parent points to")
        key = _hkdf(self.content_key, session_id, b"lockbox/v1/frame-key")
        aad = (b"lockbox/v1/frame" + self.archive_id + frame[:44]
               + offset.to_bytes(8, "little"))
        from cryptography.exceptions import InvalidTag

        try:
            plain = ChaCha20Poly1305(key).decrypt(counter.to_bytes(8, "little") + bytes(4),
                                                  frame[48:], aad)
        except InvalidTag:
            raise SpecError("IntegrityError", f"frame at {offset} does not authenticate") \
                from None
        c = _Cur(plain, "frame body")  # "Frame plaintext"
        codec = c.u8()
        assert codec in (0, 1)
        size = c.uv(_LIMITS[kind])
        body = plain[c.pos:]
        payload = body if codec == 0 else _zstd_decompress(body)
        assert len(payload) == size
        return kind, payload

    def fetch(self, ref: tuple[int, int, bytes], kind: int) -> bytes:
        offset, size, _ = ref
        frame = self.data[offset:offset + size]
        if len(frame) != size:
            raise SpecError("TruncatedError", "frame cut short")
        return self._open(frame, offset, ref, kind)[1]

    # §7
    def _root(self, c: _Cur) -> dict[str, Any]:
        kind = c.u8()
        if kind == 0:
            return {"kind": 0}
        assert kind in (1, 2)
        height = c.u8()
        assert 1 <= height <= 16 and (kind == 1 or height == 1)
        count = c.uv()
        if kind == 1:
            return {"kind": 1, "height": height, "count": count, "ref": c.ref()}
        return {"kind": 2, "height": 1, "count": count, "node": c.blob(3072)}

    def _commit(self, record: bytes) -> dict[str, Any]:
        c = _Cur(record, "commit record")
        assert c.u8() == 1
        out: dict[str, Any] = {"generation": c.uv(), "time_ns": c.uv(), "archive_end": c.uv(),
                               "chunk_size": c.uv(4 << 20), "keydir_sha256": c.take(32)}
        out["toc"], out["env"] = self._root(c), self._root(c)
        out["space"] = self._root(c) if c.u8() == 1 else None
        c.u8()  # root_leaves_complete
        out["root_leaves"] = [c.ref() for _ in range(c.uv(16))]
        out["stats"] = [c.uv() for _ in range(5)]
        c.end()
        return out

    # §8
    def leaves(self, root: dict[str, Any], kind: int) -> list[tuple[bytes, bytes]]:
        """Every (key, value) of a tree, in key order."""
        if root["kind"] == 0:
            return []
        if root["kind"] == 2:
            nodes = [root["node"]]
        else:
            nodes = [self.fetch(root["ref"], kind)]
        items: list[tuple[bytes, bytes]] = []
        while nodes:
            c = _Cur(nodes.pop(0), "node")
            node_type, level, count = c.u8(), c.u8(), c.uv(65536)
            key = b""
            children = []
            for i in range(count):
                shared = c.uv()
                assert shared <= len(key)
                new = key[:shared] + c.blob(4097)
                assert i == 0 or new > key  # strictly increasing
                key = new
                if node_type == 1:
                    assert level == 0
                    items.append((key, c.blob(65536)))
                else:
                    assert node_type == 2 and 1 <= level <= 15
                    children.append(c.ref())
                    c.uv()  # subtree count
            c.end()
            nodes[:0] = [self.fetch(r, kind) for r in children]
        return items

    # §9
    @staticmethod
    def entry(value: bytes) -> dict[str, Any]:
        c = _Cur(value, "TOC entry")
        t, mode, mtime = c.u8(), c.uv(0o7777), c.sv()
        e: dict[str, Any] = {"type": t, "mode": mode, "mtime_ns": mtime}
        if t == 1:
            e.update(size=c.uv(), stored_size=c.uv(), content_hash=c.take(32),
                     file_id=c.take(16))
            chunk_size = c.uv(4 << 20)
            if chunk_size < 4096:
                raise SpecError("FormatError", "chunk size below 4096")
            layout = c.u8()
            member_no = c.uv(4095) if layout == 2 else 0
            n = c.uv(2048)
            chunks = max(1, -(-e["size"] // chunk_size))
            ok = {0: n == chunks and n <= 8,
                  1: chunks > 8 and n == -(-chunks // 4096),
                  2: n == 1 and chunks == 1}.get(layout, False)
            if not ok:
                raise SpecError("FormatError", f"layout {layout} with {n} refs, {chunks} chunks")
            e.update(chunk_size=chunk_size, layout=layout, member_no=member_no, chunks=chunks,
                     refs=[c.ref() for _ in range(n)])
        elif t == 3:
            e["target"] = c.blob(4096).decode()
        else:
            assert t == 2
        c.end()
        return e

    # §10
    @staticmethod
    def chunk(payload: bytes) -> dict[str, Any]:
        c = _Cur(payload, "data chunk")
        out: dict[str, Any] = {"file_id": c.take(16), "chunk_no": c.uv(1 << 40),
                               "path": c.blob(4096).decode()}
        flags = c.u8()
        if flags & ~1:
            raise SpecError("FormatError", "chunk flags")
        out["meta"] = None
        if flags & 1:
            out["meta"] = {"type": c.u8(), "mode": c.uv(0o7777), "mtime_ns": c.sv(),
                           "size": c.uv(), "content_hash": c.take(32),
                           "chunk_size": c.uv(4 << 20), "target": c.blob(4096)}
        out["data"] = c.blob(4 << 20)
        c.end()
        return out

    @staticmethod
    def pack_members(payload: bytes) -> list[bytes]:
        """§10 "Packs": every failure of the header is exactly FormatError."""
        try:
            c = _Cur(payload, "pack")
            count = c.uv()
            if not 1 <= count <= 4096:
                raise SpecError("FormatError", f"pack of {count} members")
            sizes = []
            for _ in range(count):
                size = c.uv()
                if not 1 <= size <= 4_210_688:
                    raise SpecError("FormatError", f"member of {size} bytes")
                sizes.append(size)
        except SpecError as e:
            raise SpecError("FormatError", str(e)) from None
        if sum(sizes) != len(payload) - c.pos:
            raise SpecError("FormatError", "member sizes do not sum to the rest")
        out, pos = [], c.pos
        for size in sizes:
            out.append(payload[pos:pos + size])
            pos += size
        return out

    def read(self, e: dict[str, Any]) -> bytes:
        """A file's content, every check of §10 (and "Packs") applied."""
        if e["layout"] == 2:
            members = self.pack_members(self.fetch(e["refs"][0], 7))
            if e["member_no"] >= len(members):
                raise SpecError("IntegrityError", "no such member")
            chunks = [self.chunk(members[e["member_no"]])]
        elif e["layout"] == 0:
            chunks = [self.chunk(self.fetch(r, 5)) for r in e["refs"]]
        else:
            refs = []
            for j, r in enumerate(e["refs"]):
                c = _Cur(self.fetch(r, 6), "chunk index")
                assert c.take(16) == e["file_id"] and c.uv() == 4096 * j
                refs += [c.ref() for _ in range(c.uv(4096))]
                c.end()
            chunks = [self.chunk(self.fetch(r, 5)) for r in refs]
        for i, ch in enumerate(chunks):
            last = i == e["chunks"] - 1
            if ch["file_id"] != e["file_id"] or ch["chunk_no"] != i:
                raise SpecError("IntegrityError", "moved or swapped")
            want = e["size"] - i * e["chunk_size"] if last else e["chunk_size"]
            if len(ch["data"]) != want or (ch["meta"] is not None) != last:
                raise SpecError("IntegrityError", "chunk size or metadata")
            if last and (ch["meta"]["size"], ch["meta"]["content_hash"]) != \
                    (e["size"], e["content_hash"]):
                raise SpecError("IntegrityError", "metadata differs from the entry")
        data = b"".join(ch["data"] for ch in chunks)
        if blake3.blake3(data).digest() != e["content_hash"]:
            raise SpecError("IntegrityError", "content hash")
        return data

    # §14
    def space_records(self) -> dict[int, tuple[int, ...]]:
        """The space map's records by key offset (TAIL left out): (kind, values...)."""
        out = {}
        for key, value in self.leaves(self.commit["space"], 4):
            if key == b"\xff" * 8:
                continue
            c = _Cur(value, "space record")
            kind = c.u8()
            fields = (c.uv(), c.uv()) if kind in (1, 2, 3, 4, 7) else (c.uv(),)
            c.end()
            assert kind in (1, 2, 3, 4, 5, 7) and (kind != 7 or fields[1] >= 1)
            out[int.from_bytes(key, "big")] = (kind, *fields)
        return out


def _golden_archive(name: str) -> dict[str, Any]:
    """The manifest entry of a golden archive (§19.6)."""
    manifest = json.loads((V1 / "manifest.json").read_text())
    found: dict[str, Any] = next(a for a in manifest["archives"] if a["file"] == name)
    return found


def _spec_read_golden(name: str) -> tuple[SpecReader, dict[str, dict[str, Any]]]:
    m = _golden_archive(name)
    reader = SpecReader((V1 / name).read_bytes(), m["password"])
    assert reader.version == m.get("format_version", reader.version)
    entries = {}
    for key, value in reader.leaves(reader.commit["toc"], 2):
        parent, _, base = key.partition(b"\x00")
        path = (parent + b"/" + base if parent else base).decode()
        entries[path] = reader.entry(value)
    want = {e["path"]: e for e in m["entries"]}
    assert set(entries) == set(want)
    for path, e in entries.items():
        w = want[path]
        assert {1: "file", 2: "dir", 3: "symlink"}[e["type"]] == w["type"]
        assert (e["mode"], e["mtime_ns"]) == (w["mode"], w["mtime_ns"])
        if e["type"] == 1:
            data = reader.read(e)
            assert hashlib.sha256(data).hexdigest() == w["sha256"], path
        elif e["type"] == 3:
            assert e["target"] == w["target"]
    return reader, entries


def test_an_independent_reader_reads_a_version_2_archive() -> None:
    reader, entries = _spec_read_golden("hello.lbox")
    assert reader.version == 2 and entries["hello.txt"]["layout"] == 0
    assert all(r[0] != 7 for r in reader.space_records().values())


def test_an_independent_reader_reads_the_packed_archive_of_the_real_writer() -> None:
    """packed.lbox (docs/FORMAT.md §19.6) was written by the real writer with packing on:
    version 3 in both slots, layout-2 entries naming members of PACK frames, and one
    PACK record per pack whose count is the number of entries naming it (§14)."""
    reader, entries = _spec_read_golden("packed.lbox")
    assert reader.version == 3 and reader.slot_versions == [3, 3]
    files = {p: e for p, e in entries.items() if e["type"] == 1}
    packed = {p: e for p, e in files.items() if e["layout"] == 2}
    assert set(files) - set(packed) == {"big.bin"} and files["big.bin"]["size"] > 65536
    per_pack: dict[int, list[int]] = {}
    for e in packed.values():
        per_pack.setdefault(e["refs"][0][0], []).append(e["member_no"])
    for numbers in per_pack.values():
        assert len(set(numbers)) == len(numbers)  # no member named twice
    records = reader.space_records()
    packs = {off: r for off, r in records.items() if r[0] == 7}
    assert {off: r[2] for off, r in packs.items()} == \
        {off: len(n) for off, n in per_pack.items()}
    assert sorted(r[2] for r in packs.values()) == [2, 13]
    for off, r in packs.items():  # the record's size is the pack's
        assert {e["refs"][0][1] for e in packed.values() if e["refs"][0][0] == off} == {r[1]}
    # A member number the pack does not have, and a malformed header: the §10 classes.
    e = dict(packed["notes.txt"], member_no=15)
    with pytest.raises(SpecError) as info:
        reader.read(e)
    assert info.value.kind == "IntegrityError"
    with pytest.raises(SpecError) as info:
        reader.pack_members(b"\x02\x03\x01abc")  # sizes sum to 4, 3 follow
    assert info.value.kind == "FormatError"
    # The removed file's bytes are still in its pack (deferred destruction, §17.9).
    first = min(per_pack, key=lambda off: -len(per_pack[off]))
    ref = next(e["refs"][0] for e in packed.values() if e["refs"][0][0] == first)
    members = reader.pack_members(reader.fetch(ref, 7))
    paths = {reader.chunk(m)["path"] for m in members}
    assert "src/module_03.py" in paths and "src/module_03.py" not in entries


_CORPUS = Path(__file__).resolve().parent / "vectors" / "adversarial" / "v1"


def _pack_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((_CORPUS / "manifest.json").read_text())["cases"]
    return [c for c in cases if c["case"].startswith("pack-")]


@pytest.mark.parametrize("case", _pack_cases(), ids=lambda c: c["case"])
def test_an_independent_reader_reaches_the_verdicts_of_the_pack_cases(case: dict[str, Any]
                                                                      ) -> None:
    """docs/FORMAT.md §19.7: the adversarial cases of packs (damaged or hostile copies of
    packed.lbox) get the verdict the text gives them from the independent reader too."""
    op, _, path = case["op"].partition(" ")
    assert op == "read"
    reader = SpecReader((_CORPUS / case["file"]).read_bytes(), case["secret"]["password"])
    entries = {}
    for key, value in reader.leaves(reader.commit["toc"], 2):
        parent, _, base = key.partition(b"\x00")
        entries[(parent + b"/" + base if parent else base).decode()] = reader.entry(value)
    with pytest.raises(SpecError) as info:
        reader.read(entries[path])
    assert info.value.kind == case["expected"], info.value
    golden = {e["path"]: e for e in _golden_archive("packed.lbox")["entries"]}
    for other in case["still_reads"]:
        data = reader.read(entries[other])
        assert hashlib.sha256(data).hexdigest() == golden[other]["sha256"]
