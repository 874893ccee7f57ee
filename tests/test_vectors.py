"""Golden archives and docs/FORMAT.md §19 test vectors (tests/vectors/v1).

* every golden archive opens with its secret(s), lists exactly what manifest.json
  says, reads back to the recorded SHA-256s, and verifies;
* the generator regenerates the reproducible archives (and the identities, the
  manifest and vectors.json) byte for byte;
* every vector in vectors.json recomputes equal through the real code;
* the hex dumps printed in docs/FORMAT.md §19 are the golden bytes.

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

from lockbox.archive import Lockbox
from lockbox.errors import IntegrityError, WrongKeyError
from lockbox.format.chunk import (
    ChunkHeader,
    ChunkMeta,
    decode_chunk,
    decode_index,
    encode_chunk,
    encode_index,
)
from lockbox.format.commit import CommitRecord, Stats, TreeRoot, decode_commit, encode_commit
from lockbox.format.constants import SLOT_SIZE, EntryType, FrameKind, PageKind
from lockbox.format.encoding import Builder, Reader, svarint, uvarint, zigzag
from lockbox.format.entry import Entry, decode_entry, encode_entry, key_path, toc_key
from lockbox.format.frame import (
    FrameHeader,
    decode_frame_header,
    encode_frame_header,
    frame_aad,
    frame_nonce,
)
from lockbox.format.keydir import (
    PasswordSlot,
    RecipientSlot,
    decode_keydir,
    encode_keydir,
    slot_aad,
)
from lockbox.format.node import Internal, Leaf, decode_node, encode_node
from lockbox.format.page import PageHeader, decode_page_header, encode_page_header
from lockbox.format.refs import Ref
from lockbox.format.superblock import (
    ExternalKeydir,
    Slot,
    commit_frame_offset,
    decode_slot,
    decode_superblock,
    encode_slot,
)
from lockbox.frames import FrameOpener, session_key
from lockbox.keys import Identity, Recipient, normalize_password, unlock
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
    m = ARCHIVES["history.lbox"]
    data = bytearray((V1 / "history.lbox").read_bytes())
    newest = decode_superblock(bytes(data[:2 * SLOT_SIZE]))[0]
    assert newest.generation == m["generation"]
    # A torn write of the newest slot: one flipped byte breaks its CRC.
    data[newest.slot_no * SLOT_SIZE + 100] ^= 0x01
    path = tmp_path / "torn.lbox"
    path.write_bytes(bytes(data))
    with Lockbox.open(path, password=m["password"]) as box:
        _check_state(box, m["previous"])
        assert box.verify().ok


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
    assert Recipient(ek).fingerprint.hex() == v["fingerprint"]
    ct = h(v["kem_ciphertext"])
    assert hashlib.sha256(ct).hexdigest() == v["kem_ciphertext_sha256"]
    ss = CRYPTO.mlkem1024_decapsulate(ident.seed, ct)
    assert ss.hex() == v["shared_secret"]
    info = b"lockbox/v1/recipient-wrap" + hashlib.sha256(ek).digest() + \
        hashlib.sha256(ct).digest()
    assert info.hex() == v["wrap_info"]
    assert CRYPTO.hkdf_sha256(ss, aid, info, 32).hex() == v["wrap_key"]
    slot = RecipientSlot(v["slot_id"], h(v["fingerprint"]), ct, h(v["wrapped_key"]))
    assert hashlib.sha256(slot_aad(aid, slot)).hexdigest() == v["aad_sha256"]
    assert unlock(CRYPTO, aid, [slot], identity=ident) == (ck, v["slot_id"])


def test_keydir() -> None:
    v = VEC["keydir"]
    kd = h(v["hex"])
    assert len(kd) == v["size"] and hashlib.sha256(kd).hexdigest() == v["sha256"]
    slots = decode_keydir(kd)
    assert encode_keydir(slots) == kd
    p, r = VEC["password_slot"], VEC["recipient_slot"]
    assert isinstance(slots[0], PasswordSlot) and slots[0].slot_id == p["slot_id"]
    assert slots[0].wrapped_key.hex() == p["wrapped_key"]
    assert isinstance(slots[1], RecipientSlot) and slots[1].slot_id == r["slot_id"]
    assert slots[1].kem_ciphertext.hex() == r["kem_ciphertext"]
    # An unknown slot kind is skipped, not fatal.
    unknown = kd[:5] + (3).to_bytes(2, "little") + kd[7:] + bytes([9]) + \
        (77).to_bytes(4, "little") + (2).to_bytes(2, "little") + b"zz"
    assert [s.slot_id for s in decode_keydir(unknown)] == [p["slot_id"], r["slot_id"]]


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
    slot = Slot(v["slot_no"], h(v["archive_id"]), v["generation"], kd, h(v["commit_frame"]))
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
    assert header.generation == v["generation"]
    assert decode_commit(bytes(payload)) == _commit(VEC["commit_records"][0])


# -- §19 the tiny archive --------------------------------------------------------------------


def test_tiny_archive_walkthrough() -> None:
    t = VEC["tiny_archive"]
    data = (V1 / t["file"]).read_bytes()
    assert len(data) == t["size"]
    assert data[:t["slot0_used"]].hex() == t["slot0"]
    assert not any(data[t["slot0_used"]:SLOT_SIZE])
    assert data[SLOT_SIZE:SLOT_SIZE + t["slot1_used"]].hex() == t["slot1"]
    page = data[t["page_offset"]:]
    assert page[:t["page_used"]].hex() == t["page"] and not any(page[t["page_used"]:])
    assert len(page) == t["page_size"]
    slots = decode_superblock(data[:2 * SLOT_SIZE])
    assert [s.generation for s in slots] == [t["generation"], t["slot1_generation"]]
    s = slots[0]
    assert s.archive_id.hex() == t["archive_id"] and s.keydir == h(t["keydir"])
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
    assert (ph.page_size, ph.used_size, ph.generation) == \
        (t["page_size"], t["page_used"], t["generation"])


def _squash(text: str) -> str:
    return "".join(text.split())


def test_format_md_quotes_the_golden_bytes() -> None:
    """The hex dumps and headline vectors printed in docs/FORMAT.md §19 are the real ones."""
    doc = FORMAT_MD.read_text()
    t = VEC["tiny_archive"]
    assert gen.hexdump(h(t["slot0"])) in doc
    assert gen.hexdump(h(t["page"]), t["page_offset"]) in doc
    flat = _squash(doc)
    for value in (
        t["archive_id"], t["content_key"], t["commit_session_key"], t["keydir"],
        t["commit_plaintext"], t["chunk_payload"], t["toc_leaf"],
        VEC["frame_header"]["hex"], VEC["frame_aad"]["hex"], VEC["session_key"]["hex"],
        VEC["sealed_frames"][0]["frame"], VEC["sealed_frames"][1]["frame"],
        VEC["password_slot"]["argon2id"], VEC["password_slot"]["wrap_key"],
        VEC["password_slot"]["wrapped_key"], VEC["recipient_slot"]["shared_secret"],
        VEC["recipient_slot"]["wrap_key"], VEC["recipient_slot"]["wrapped_key"],
        VEC["page_header"]["hex"], VEC["leaf_node"]["hex"], VEC["internal_node"]["hex"],
        VEC["commit_records"][0]["hex"], VEC["chunk_payloads"][0]["hex"],
        VEC["index_payload"]["hex"], VEC["entries"][0]["hex"], VEC["entries"][4]["hex"],
    ):
        assert value in flat, value[:40]


def test_identity_files_roundtrip() -> None:
    for p in sorted(V1.glob("*.identity")):
        ident = Identity.decode(p.read_text())
        assert Identity.decode(ident.encode()) == ident


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
