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

A new top-level vector must get a check here (``test_every_vector_has_a_strict_check``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
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
from lockbox.formats.lbox.wire.entry import decode_entry, key_path, split_path, toc_key
from lockbox.formats.lbox.wire.frame import decode_frame_header, frame_aad, frame_nonce
from lockbox.formats.lbox.wire.keydir import (
    LinkSlot,
    PasswordSlot,
    RecipientSlot,
    decode_key_directory,
)
from lockbox.formats.lbox.wire.node import Internal, Leaf, decode_node
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
