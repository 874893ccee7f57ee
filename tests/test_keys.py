"""Key directories as writers write them (version 2, committed) and archives written
before key commitments (version 1): read, reported, upgraded by the next commit
(docs/FORMAT.md §6, §20)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.formats.lbox.keys import key_commitment
from lockbox.formats.lbox.wire.constants import (
    FORMAT_VERSION,
    PACK_FILE_LIMIT,
    PACKED_FORMAT_VERSION,
    SLOT_SIZE,
)
from lockbox.formats.lbox.wire.entry import LAYOUT_PACKED
from lockbox.formats.lbox.wire.keydir import decode_key_directory, keydir_has_commitment
from lockbox.formats.lbox.wire.page import decode_keydir_page
from lockbox.formats.lbox.wire.superblock import ExternalKeydir, decode_superblock
from lockbox.formats.lbox.write.compact import compact_archive
from lockbox.sources import BytesSource

LEGACY = Path(__file__).parent / "vectors" / "v1" / "legacy-hello.lbox"


def _slots(path: Path) -> list[Any]:
    return decode_superblock(path.read_bytes()[:2 * SLOT_SIZE])


def _slot_version_by_the_rule(path: Path, slot_no: int) -> int:
    """The version slot ``slot_no``'s commit must have (§20): 3 iff a file of its TOC
    is packed, else 2 (read with the other slot zeroed)."""
    data = bytearray(path.read_bytes())
    other = 1 - slot_no
    data[other * SLOT_SIZE:(other + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)
    with lockbox.Lockbox(BytesSource(bytes(data)), password="pw") as box:
        packed = any(box.run(box.view.stat_flow(e.path)).layout == LAYOUT_PACKED
                     for e in box.ls(recursive=True) if e.is_file)
    return PACKED_FORMAT_VERSION if packed else FORMAT_VERSION


def _committed_to(box: lockbox.Lockbox) -> bool:
    d = decode_key_directory(box.view.keydir)
    return d.key_commitment == key_commitment(box.crypto, box.view.archive_id,
                                              box.content_key)


# "f" packed (a small file: the commits reference a PACK frame, so their slots say
# version 3), or with frames of its own (two 4 KiB chunks: version 2).
CONTENTS = {"packed": b"1", "own-frames": bytes(range(256)) * 20}


@pytest.mark.parametrize("kind", sorted(CONTENTS))
def test_every_writer_writes_version_2_or_3_with_packs(tmp_path: Path, crypto: Any,
                                                       weak_argon2: Any, kind: str) -> None:
    """Every writer (create, add, key change, compaction) writes a committed version-2
    key directory; the slot version is 3 exactly when the commit has packs (§20)."""
    content = CONTENTS[kind]
    want = PACKED_FORMAT_VERSION if kind == "packed" else FORMAT_VERSION
    ids = [lockbox.Identity.generate(crypto) for _ in range(4)]
    path = tmp_path / "a.lbox"
    with lockbox.create(path, password="pw", argon2=weak_argon2, chunk_size=4096) as box:
        assert _committed_to(box) and box.view.slot.version == FORMAT_VERSION
    with lockbox.open(path, password="pw") as box:
        with box.writer() as w:  # no key change: the same key directory
            w.add_bytes("f", content)
        assert _committed_to(box) and box.view.slot.version == want
        assert (box.run(box.view.stat_flow("f")).layout == LAYOUT_PACKED) == (kind == "packed")
        with box.writer() as w:  # a key change, large enough for a KEYDIR page only
            for i in ids:
                w.add_recipient(i.recipient(crypto))
        assert _committed_to(box) and isinstance(box.view.slot.keydir, ExternalKeydir)
        compact_archive(box)
        assert _committed_to(box)
    newest, older = _slots(path)
    assert newest.version == want
    # compaction's older slot is the new file's creation (empty: no pack, version 2)
    assert _slot_version_by_the_rule(path, older.slot_no) == older.version == FORMAT_VERSION
    assert _slot_version_by_the_rule(path, newest.slot_no) == want
    with lockbox.open(path, identity=ids[3]) as box:
        assert box.read_bytes("f") == content and box.verify().ok


def test_a_legacy_archive_is_read_and_reported(tmp_path: Path) -> None:
    with lockbox.open(LEGACY, password="lockbox") as box:
        assert box.view.slot.version == 1 and not keydir_has_commitment(box.view.keydir)
        assert decode_key_directory(box.view.keydir).version == 1
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok


# The file the upgrading commit adds: packed (version 3), or over PACK_FILE_LIMIT
# bytes, one chunk of its own at the legacy archive's 1 MiB chunk size (version 2).
MORE = {"packed": b"more\n", "own-frame": b"more\n" * (PACK_FILE_LIMIT // 5 + 1)}


@pytest.mark.parametrize("kind", sorted(MORE))
def test_the_next_commit_upgrades_a_legacy_archive(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "legacy.lbox"
    shutil.copyfile(LEGACY, path)
    want = PACKED_FORMAT_VERSION if kind == "packed" else FORMAT_VERSION
    with lockbox.open(path, password="lockbox") as box:
        with box.writer():  # nothing staged: no commit, nothing upgraded
            pass
        assert box.generation == 2 and not keydir_has_commitment(box.view.keydir)
        with box.writer() as w:
            w.add_bytes("more.txt", MORE[kind], mtime_ns=0)
        assert box.generation == 3 and _committed_to(box)
        assert box.view.slot.version == want
        assert (box.run(box.view.stat_flow("more.txt")).layout == LAYOUT_PACKED) == (
            kind == "packed")
    newest, older = _slots(path)
    assert (newest.generation, newest.version, older.generation, older.version) == (
        3, want, 2, 1)
    # The upgraded directory has a KEYDIR page of its own (generation 3), like a key change.
    assert isinstance(newest.keydir, bytes) and keydir_has_commitment(newest.keydir)
    data = path.read_bytes()
    pages = [off for off in range(16384, len(data), 4096) if data[off:off + 4] == b"LBXP"
             and data[off + 5] == 2]
    copies = [decode_keydir_page(data[off:]) for off in pages]
    assert [(h.generation, kd == newest.keydir) for h, _, kd in copies] == [(3, True)]
    with lockbox.open(path, password="lockbox") as box:
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok


def test_compaction_upgrades_a_legacy_archive(tmp_path: Path) -> None:
    path = tmp_path / "legacy.lbox"
    shutil.copyfile(LEGACY, path)
    with lockbox.open(path, password="lockbox") as box:
        compact_archive(box)
        assert _committed_to(box)
    for s in _slots(path):
        assert s.version == 2 and isinstance(s.keydir, bytes) and keydir_has_commitment(s.keydir)
    with lockbox.open(path, password="lockbox") as box:
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok


def test_a_legacy_archive_with_too_many_password_slots_must_shrink_first(
        tmp_path: Path, weak_argon2: Any) -> None:
    """Version 1 allowed more password slots than version 2: the upgrade refuses until
    the commit that removes enough of them."""
    from lockbox.formats.lbox.keys import new_password_slot
    from lockbox.formats.lbox.wire.keydir import encode_keydir
    from lockbox.formats.lbox.write.newarchive import write_new_archive
    from lockbox.platform import default_codec, default_crypto

    crypto = default_crypto()
    aid, key = crypto.random_bytes(16), crypto.random_bytes(32)
    slots: list[Any] = []
    for i in range(5):
        slots.append(new_password_slot(crypto, aid, key, f"pw{i}", weak_argon2,
                                       {s.slot_id for s in slots}))
    path = tmp_path / "five.lbox"
    write_new_archive(str(path), archive_id=aid, content_key=key,
                      keydir=encode_keydir(slots), chunk_size=4096, overwrite=False,
                      crypto=crypto, codec=default_codec())
    with lockbox.open(path, password="pw3") as box:
        with pytest.raises(lockbox.UsageError, match="at most 4 password slots"), \
                box.writer() as w:
            w.add_bytes("f", b"1")
        assert box.generation == 1 and path.stat().st_size == 20480  # nothing was written
        with box.writer() as w:
            w.remove_slot(slots[0].slot_id)
            w.add_bytes("f", b"1")
        assert _committed_to(box) and len(box.view.key_slots) == 4


# -- share links: key-slot kind 3 LINK (docs/FORMAT.md §6, §17.8, §19.7) --------------------

LINK_TEXT_CASES = [
    ("lbk1-" + "A" * 43 + "=", "padding"),
    ("lbk1-" + "A" * 42 + "+", "standard alphabet"),
    ("lbk1-" + "A" * 21 + "/" + "A" * 21, "standard alphabet"),
    ("lbk1-" + "A" * 42 + "B", "dangling bits (the last character's 2 low bits)"),
    ("lbk1-" + "A" * 42, "31 bytes"),
    ("lbk1-" + "A" * 44, "33 bytes"),
    ("lbk1-" + "A" * 41, "a dangling character"),
    ("lbk1-" + "A" * 20 + " " + "A" * 22, "whitespace inside"),
    ("LBK1-" + "A" * 43, "the prefix is case-sensitive"),
    ("lbk2-" + "A" * 43, "another prefix"),
    ("A" * 43, "no prefix"),
    ("lbk1-" + "A" * 42 + "\x00", "a NUL"),
]


def test_link_secret_text_is_strict_and_round_trips(crypto: Any) -> None:
    from lockbox.formats.lbox.keys import LinkSecret, as_link_secret

    secret = LinkSecret.generate(crypto)
    text = secret.text()
    assert len(text) == 48 and text.startswith("lbk1-")
    assert LinkSecret.parse(text) == secret == as_link_secret(text) == as_link_secret(secret)
    assert LinkSecret.parse(f"  {text}\n") == secret  # outer whitespace, as for recipients
    assert text[5:] not in repr(secret) and secret.secret.hex() not in repr(secret)
    assert LinkSecret.parse("lbk1-" + "A" * 43) == LinkSecret(bytes(32))
    assert LinkSecret.parse("lbk1-" + "A" * 42 + "E").secret == bytes(31) + b"\x01"
    for bad, why in LINK_TEXT_CASES:
        with pytest.raises(lockbox.FormatError):
            LinkSecret.parse(bad)
            pytest.fail(why)
    with pytest.raises(lockbox.FormatError):
        LinkSecret(bytes(31))
    with pytest.raises(lockbox.UsageError):
        as_link_secret(b"lbk1-" + b"A" * 43)  # type: ignore[arg-type]
    for bad, _ in LINK_TEXT_CASES:
        with pytest.raises(lockbox.UsageError):
            as_link_secret(bad)


def test_link_unlock_rules(crypto: Any, weak_argon2: Any) -> None:
    from lockbox.formats.lbox.keys import (
        LinkSecret,
        new_link_slot,
        new_password_slot,
        unlock,
    )
    from lockbox.formats.lbox.wire.keydir import UnusableSlot

    aid, key = crypto.random_bytes(16), crypto.random_bytes(32)
    commitment = key_commitment(crypto, aid, key)
    one, two = LinkSecret.generate(crypto), LinkSecret.generate(crypto)
    a = new_link_slot(crypto, aid, key, one)
    b = new_link_slot(crypto, aid, key, two, {a.slot_id})
    pw = new_password_slot(crypto, aid, key, "pw", weak_argon2, {a.slot_id, b.slot_id})
    assert len(a.body()) == 48 and a.descriptor() == b""
    # Every link slot is tried, in directory order; the text form works too.
    assert unlock(crypto, aid, [pw, a, b], link=two, commitment=commitment) == (key, b.slot_id)
    assert unlock(crypto, aid, [pw, a, b], link=one.text()) == (key, a.slot_id)
    # Link slots come first (no Argon2id): a wrong password alongside does not matter.
    assert unlock(crypto, aid, [pw, b], link=two, password="nope") == (key, b.slot_id)
    assert unlock(crypto, aid, [pw, b], link=one, password="pw") == (key, pw.slot_id)
    # Rule 2: a link alone.
    with pytest.raises(lockbox.WrongKeyError, match="no link slot"):
        unlock(crypto, aid, [pw], link=one)
    with pytest.raises(lockbox.WrongKeyError, match=r"revoked or wrong"):
        unlock(crypto, aid, [pw, b], link=one)
    # The same secret does not open the same slot of another archive.
    with pytest.raises(lockbox.WrongKeyError):
        unlock(crypto, crypto.random_bytes(16), [a], link=one)
    # Rule 1: only a slot of an unknown kind, which may be a link's of a later version.
    later = UnusableSlot(7, 200, b"x", "unknown slot kind 200")
    with pytest.raises(lockbox.LimitExceededError, match="unknown slot kind 200"):
        unlock(crypto, aid, [later, pw], link=one)
    # A password meeting only link slots: "no password slot"; with both, rule 5.
    with pytest.raises(lockbox.WrongKeyError, match="no password slot"):
        unlock(crypto, aid, [a], password="pw")
    with pytest.raises(lockbox.WrongKeyError, match="wrong password, identity or link key"):
        unlock(crypto, aid, [pw, b], link=one, password="nope")
    with pytest.raises(lockbox.UsageError):
        unlock(crypto, aid, [a])


def test_link_slot_that_fails_the_key_commitment(tmp_path: Path, crypto: Any,
                                                 weak_argon2: Any) -> None:
    """§19.7: a key holder adds a link slot wrapping another key: the link opens the
    slot, the key fails the commitment -> IntegrityError, never another slot or an
    older generation."""
    from lockbox.formats.lbox.keys import LinkSecret, new_link_slot, unlock
    from lockbox.formats.lbox.wire.keydir import decode_key_directory

    path = tmp_path / "hostile.lbox"
    lockbox.create(path, password="pw", argon2=weak_argon2).close()
    secret = LinkSecret.generate(crypto)
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        other_key = crypto.random_bytes(32)
        w.key_slots = [*w.key_slots, new_link_slot(crypto, box.view.archive_id, other_key,
                                                   secret, {s.slot_id for s in w.key_slots})]
        w.keys.changed = True
    with lockbox.open(path, password="pw") as box:  # the password slot is fine
        d = decode_key_directory(box.view.keydir)
        assert [s.kind for s in box.info().slots] == ["password", "link"]
        assert unlock(crypto, box.view.archive_id, d.slots, link=secret)[0] == other_key
    with pytest.raises(lockbox.IntegrityError, match="different content key"):
        lockbox.open(path, link=secret)


def test_link_slot_decoding_limits() -> None:
    """§19.7: a link body of another size is a FormatError (a known kind has one body
    layout); 513 slots are a LimitExceededError, 512 link slots decode and unlock."""
    import os

    from lockbox.formats.lbox.keys import LinkSecret, unlock
    from lockbox.formats.lbox.wire.keydir import LinkSlot, decode_keydir, encode_keydir
    from lockbox.platform import default_crypto

    crypto = default_crypto()
    commitment = bytes(32)

    def record(kind: int, slot_id: int, body: bytes) -> bytes:
        return bytes([kind]) + slot_id.to_bytes(4, "little") + len(body).to_bytes(2, "little") \
            + body

    def keydir(*records: bytes) -> bytes:
        return b"LBKD\x02" + commitment + len(records).to_bytes(2, "little") + b"".join(records)

    assert decode_keydir(keydir(record(3, 1, bytes(48)))) == [LinkSlot(1, bytes(48))]
    for size in (0, 47, 49, 73):
        with pytest.raises(lockbox.FormatError, match="bad link slot size") as exc:
            decode_keydir(keydir(record(3, 1, bytes(size))))
        assert type(exc.value) is lockbox.FormatError
    with pytest.raises(lockbox.TruncatedError):  # the body runs past the directory
        decode_keydir(keydir(record(3, 1, bytes(48)))[:-1])
    many = [LinkSlot(i, os.urandom(48)) for i in range(1, 514)]
    with pytest.raises(lockbox.LimitExceededError, match="too many slots"):
        decode_keydir(keydir(*(record(3, s.slot_id, s.body()) for s in many)))
    with pytest.raises(ValueError):
        encode_keydir(many, commitment)
    slots = decode_keydir(encode_keydir(many[:512], commitment))
    assert len(slots) == 512
    with pytest.raises(lockbox.WrongKeyError, match="revoked or wrong"):
        unlock(crypto, bytes(16), slots, link=LinkSecret(bytes(32)))  # 512 tried, cheaply


def test_a_reader_without_link_slots_keeps_them(tmp_path: Path, crypto: Any, weak_argon2: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """§20: kind 3 needs no version change. A reader that does not know it (emulated: the
    decoder's link kind moved away, so kind 3 decodes by the unknown-kind rule, as before
    link slots) opens the archive by password, shows the slot as unusable, and its
    writer keeps the slot byte for byte when other slots change; the link then still
    opens the archive."""
    from lockbox.formats.lbox.keys import LinkSecret
    from lockbox.formats.lbox.wire import keydir as keydir_mod

    path = tmp_path / "a.lbox"
    lockbox.create(path, password="pw", argon2=weak_argon2).close()
    secret = LinkSecret.generate(crypto)
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_bytes("f", b"1")
        link_id = w.keys.add_link(w.crypto, w.view.archive_id, w.content_key, secret)
    with lockbox.open(path, password="pw") as box:
        record = next(s for s in box.view.key_slots if s.slot_id == link_id)
        raw = bytes([3]) + link_id.to_bytes(4, "little") + (48).to_bytes(2, "little") + \
            record.body()
        assert raw in box.view.keydir

    monkeypatch.setattr(keydir_mod, "LINK_KIND", -1)  # a reader before link slots
    with lockbox.open(path, password="pw") as box:
        old = next(s for s in box.view.key_slots if s.slot_id == link_id)
        assert isinstance(old, keydir_mod.UnusableSlot) and old.reason == "unknown slot kind 3"
        assert [s.kind for s in box.info().slots] == ["password", "unusable"]
        with box.writer() as w:  # a key change: the directory is re-encoded
            second = w.add_password("second", weak_argon2)
            w.add_bytes("g", b"2")
        assert raw in box.view.keydir
        with box.writer() as w:
            w.remove_slot(second)
        assert raw in box.view.keydir
    with pytest.raises(lockbox.LimitExceededError, match="unknown slot kind 3"):
        lockbox.open(path, link=secret)  # that reader cannot test a link: rule 1
    monkeypatch.undo()

    with lockbox.open(path, link=secret) as box:
        assert box.info().unlocked_slot == link_id and box.read_bytes("g") == b"2"
        assert box.verify().ok


def test_every_open_takes_a_link(tmp_path: Path, crypto: Any, weak_argon2: Any) -> None:
    """lockbox.open / Lockbox.open / open_async / OpenOptions secrets all pass the link
    key (a LinkSecret or its text) down to the unlock."""
    import asyncio

    from lockbox.formats.lbox.keys import LinkSecret

    path = tmp_path / "a.lbox"
    lockbox.create(path, password="pw", argon2=weak_argon2).close()
    secret = LinkSecret.generate(crypto)
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_bytes("f", b"1")
        link_id = w.keys.add_link(w.crypto, w.view.archive_id, w.content_key, secret)
    for opened in (lockbox.open(path, link=secret), lockbox.Lockbox.open(path, link=secret),
                   lockbox.open(path, secrets={"link": secret.text()})):
        with opened as box:
            assert box.info().unlocked_slot == link_id and box.read_bytes("f") == b"1"

    async def read() -> bytes:
        async with await lockbox.open_async(path, link=secret.text()) as box:
            assert box.info().unlocked_slot == link_id
            return await box.read_bytes("f")

    assert asyncio.run(read()) == b"1"
    with pytest.raises(lockbox.UsageError, match="not a valid link key"):  # not the archive's
        lockbox.open(path, link="lbk1-not-a-key")
