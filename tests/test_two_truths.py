"""One file, two truths (docs/FORMAT.md §11 "Opening", §17.6): the key commitment, and no
silent fallback past a generation that the given secret unlocked.

The crafted archive (tests/hostile/two_truths.py): generation 3 (content key K1, "account
A") whose key directory gives Alice K1 and Bob K2; generation 2 (K2, "account B"). Bob
must never be shown generation 2 unless he asks for it."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest

import lockbox
from hostile.two_truths import (
    ACCOUNT_A,
    ACCOUNT_B,
    ALICE,
    BOB,
    dual_key_seal,
    two_truths_archive,
)
from lockbox.cache import PageCache
from lockbox.drivers import run_sync
from lockbox.errors import IntegrityError, NotFoundError, UsageError, WrongKeyError
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.keys import key_commitment, new_password_slot, unlock
from lockbox.formats.lbox.opening import open_flow
from lockbox.formats.lbox.wire.constants import SLOT_SIZE
from lockbox.formats.lbox.wire.keydir import (
    PasswordSlot,
    decode_key_directory,
    encode_keydir,
    keydir_has_commitment,
    slot_aad,
)
from lockbox.formats.lbox.wire.superblock import decode_superblock
from lockbox.platform import default_codec, default_crypto
from lockbox.sources.memory import BytesSource

AID = bytes(range(16))


def _open(data: bytes, **kw: Any) -> Any:
    """open_flow with the platform backends (``generation`` is a keyword of open_flow;
    the facades get it from the lead's wiring)."""
    kw.setdefault("password", None)
    kw.setdefault("identity", None)
    return run_sync(open_flow(default_crypto(), default_codec(), cache=PageCache(0), **kw),
                    BytesSource(data))


@pytest.fixture(scope="module")
def committed() -> bytes:
    return two_truths_archive()


@pytest.fixture(scope="module")
def legacy() -> bytes:
    return two_truths_archive(legacy=True)


def _read(view: Any, data: bytes, path: str = "account.txt") -> bytes:
    """A file of an opened view (any generation), through the sync facade."""
    box = Lockbox.__new__(Lockbox)
    box._setup(None, None, 0)
    box.source, box.path, box._close_source = BytesSource(data), None, True
    box.set_view(view)
    return box.read_bytes(path)


@pytest.mark.parametrize("variant", ["committed", "legacy"])
def test_alice_reads_generation_3(variant: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(variant)
    with Lockbox(BytesSource(data), password=ALICE) as box:
        assert box.generation == 3 and box.read_bytes("account.txt") == ACCOUNT_A
        assert box.verify().ok
        assert keydir_has_commitment(box.view.keydir) == (variant == "committed")


def test_bob_is_refused_by_the_key_commitment(committed: bytes) -> None:
    """Bob's slot in generation 3 opens and gives K2; the directory commits to K1."""
    with pytest.raises(IntegrityError) as exc:
        Lockbox(BytesSource(committed), password=BOB)
    msg = str(exc.value)
    assert msg.startswith("generation 3: key slot ")
    assert "gives a different content key than the archive commits to" in msg
    assert msg.endswith("the older generation 2 was not opened in its place "
                        "(ask for it with --generation 2)")


def test_bob_is_refused_without_a_commitment_too(legacy: bytes) -> None:
    """A legacy (version-1) key directory has no commitment: Bob unwraps K2, generation
    3's commit does not open under it, and that is raised — no silent fallback."""
    with pytest.raises(IntegrityError) as exc:
        Lockbox(BytesSource(legacy), password=BOB)
    msg = str(exc.value)
    assert msg.startswith("generation 3: the commit record does not open with the content "
                          "key this secret unlocked")
    assert "(ask for it with --generation 2)" in msg


@pytest.mark.parametrize("legacy", [False, True])
def test_no_slot_for_bob_in_the_newest_generation(legacy: bool) -> None:
    """Generation 3 has no slot for Bob: his secret is refused there, which alone
    allows the older slot (a keyless edit of the newest key directory must not lock
    him out) — but generation 3 is not sealed under the key generation 2 gives him,
    which no honest writer does (one archive, one content key): refused."""
    data = two_truths_archive(legacy=legacy, bob_in_newest=False)
    with Lockbox(BytesSource(data), password=ALICE) as box:
        assert box.generation == 3 and box.read_bytes("account.txt") == ACCOUNT_A
    with pytest.raises(IntegrityError, match=r"^generation 3 is not sealed under the content "
                       r"key of generation 2, which this secret opens: .* --generation 2\)$"):
        Lockbox(BytesSource(data), password=BOB)
    view = _open(data, password=BOB, generation=2)
    assert _read(view, data) == ACCOUNT_B


def test_a_keyless_edit_of_the_newest_key_directory_still_falls_back(
        make_archive: Any, crypto: Any) -> None:
    """The wrapped key of generation 3's only password slot damaged (CRC fixed): the
    password is refused there; generation 2 has another key directory and the same
    content key, so it opens in its place (a rollback by one, §17.4)."""
    path = make_archive({"f": b"1"})
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_recipient(lockbox.Identity.generate(crypto).recipient(crypto))
    data = bytearray(path.read_bytes())
    newest = decode_superblock(bytes(data[:2 * SLOT_SIZE]))[0]
    assert newest.generation == 3 and isinstance(newest.keydir, bytes)
    d = decode_key_directory(newest.keydir)
    at = newest.keydir.index(d.slots[0].wrapped_key)
    data[newest.slot_no * SLOT_SIZE + 48 + at] ^= 0x01
    _fix_crc(data, newest.slot_no)
    assert _open(bytes(data), password="pw").generation == 2


@pytest.mark.parametrize("variant", ["committed", "legacy"])
def test_an_older_generation_is_opened_only_when_asked_for(
        variant: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(variant)
    view = _open(data, password=BOB, generation=2)
    assert view.generation == 2 and _read(view, data) == ACCOUNT_B
    with pytest.raises(WrongKeyError):  # Alice has no slot in generation 2
        _open(data, password=ALICE, generation=2)
    assert _read(_open(data, password=ALICE, generation=3), data) == ACCOUNT_A
    with pytest.raises(NotFoundError, match="generation 1 is not in this archive: its "
                       "superblock holds generations 3 and 2"):
        _open(data, password=BOB, generation=1)
    for bad in (0, -1, True, "2"):
        with pytest.raises(UsageError):
            _open(data, password=BOB, generation=bad)


def test_the_commitment_binds_every_slot_to_one_key(crypto: Any) -> None:
    k1, k2 = bytes(32), bytes([1]) * 32
    a = new_password_slot(crypto, AID, k1, "alice", lockbox.Argon2Params(1, 64))
    b = new_password_slot(crypto, AID, k2, "bob", lockbox.Argon2Params(1, 64), {a.slot_id})
    c1 = key_commitment(crypto, AID, k1)
    assert c1 == crypto.hkdf_sha256(k1, AID, b"lockbox/v1/key-commitment", 32)
    assert c1 != key_commitment(crypto, AID, k2) != key_commitment(crypto, bytes(16), k1)
    d = decode_key_directory(encode_keydir([a, b], c1))
    assert d.key_commitment == c1 and d.version == 2
    assert unlock(crypto, AID, d.slots, password="alice", commitment=c1) == (k1, a.slot_id)
    with pytest.raises(IntegrityError, match=f"key slot {b.slot_id} gives a different"):
        unlock(crypto, AID, d.slots, password="bob", commitment=c1)
    # Without a commitment (version 1) nothing tells the two keys apart.
    legacy = decode_key_directory(encode_keydir([a, b]))
    assert legacy.key_commitment is None and legacy.version == 1
    assert unlock(crypto, AID, legacy.slots, password="bob") == (k2, b.slot_id)


def test_one_wrapped_key_can_give_two_content_keys(crypto: Any) -> None:
    """ChaCha20-Poly1305 is not key-committing: ONE password slot whose wrapped key
    authenticates under Alice's wrap key and under Bob's, giving each a different
    content key. The AEAD accepts both; only the key commitment tells them apart."""
    from lockbox.formats.lbox.keys import _password_wrap_key, normalize_password

    salt = bytes(range(16))
    slot = PasswordSlot(7, salt, 1, 64, 1, b"")
    wa, wb = (_password_wrap_key(crypto, AID, normalize_password(pw), salt, 1, 64)
              for pw in ("alice", "bob"))
    sealed, ka, kb = dual_key_seal(wa, wb, slot_aad(AID, slot))
    assert ka != kb
    assert crypto.aead(wa).open(bytes(12), sealed, slot_aad(AID, slot)) == ka
    assert crypto.aead(wb).open(bytes(12), sealed, slot_aad(AID, slot)) == kb
    slot = PasswordSlot(7, salt, 1, 64, 1, sealed)
    assert unlock(crypto, AID, [slot], password="alice") == (ka, 7)  # version 1: both
    assert unlock(crypto, AID, [slot], password="bob") == (kb, 7)    # "open"
    c = key_commitment(crypto, AID, ka)
    assert unlock(crypto, AID, [slot], password="alice", commitment=c) == (ka, 7)
    with pytest.raises(IntegrityError, match="key slot 7 gives a different content key"):
        unlock(crypto, AID, [slot], password="bob", commitment=c)


# -- the fallback rule (§11 "Opening") ---------------------------------------------------------


def _fix_crc(d: bytearray, no: int) -> None:
    base = no * SLOT_SIZE
    k, c = struct.unpack_from("<II", d, base + 40)
    end = base + 48 + k + c
    d[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(d[base:end])))


def test_damage_by_someone_without_the_key_still_falls_back(make_archive: Any) -> None:
    data = make_archive({"f": b"1"}).read_bytes()  # generation 2 in slot 0, 1 in slot 1
    torn = bytearray(data)
    torn[100] ^= 0x01  # slot 0's CRC fails: not a valid slot
    view = _open(bytes(torn), password="pw")
    assert view.generation == 1


def test_a_commit_the_secret_unlocked_is_never_passed_over(make_archive: Any) -> None:
    data = make_archive({"f": b"1"}).read_bytes()
    newest = decode_superblock(data[:2 * SLOT_SIZE])[0]
    assert newest.generation == 2 and newest.slot_no == 0
    d = bytearray(data)
    d[newest.commit_frame_offset + 60] ^= 0x01  # the commit frame's ciphertext, CRC fixed
    _fix_crc(d, 0)
    with pytest.raises(IntegrityError, match=r"^generation 2: the commit record does not open"
                       r".*\(ask for it with --generation 1\)$"):
        _open(bytes(d), password="pw")
    assert _open(bytes(d), password="pw", generation=1).generation == 1
    with pytest.raises(IntegrityError):  # asked for, generation 2 is still refused
        _open(bytes(d), password="pw", generation=2)
    # The commitment itself flipped: the slot opens, its key does not match.
    d = bytearray(data)
    d[48 + 5] ^= 0x01
    _fix_crc(d, 0)
    with pytest.raises(IntegrityError, match=r"different content key .* --generation 1"):
        _open(bytes(d), password="pw")


def test_unlock_errors_describe_the_newest_commit(make_archive: Any, crypto: Any) -> None:
    """Right after `keys add-recipient`, an identity that is not a recipient is told so —
    not what the older slot (no recipient slot at all) would say."""
    path = make_archive({"f": b"1"})
    alice, other = lockbox.Identity.generate(crypto), lockbox.Identity.generate(crypto)
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_recipient(alice.recipient(crypto))
    data = path.read_bytes()
    slots = decode_superblock(data[:2 * SLOT_SIZE])
    assert slots[0].keydir != slots[1].keydir  # the older slot has no recipient slot
    with pytest.raises(WrongKeyError, match=r"^this identity is not a recipient of this "
                       r"archive$"):
        _open(data, identity=other)
    assert _open(data, identity=alice).generation == 3
    with pytest.raises(WrongKeyError, match="no recipient slot"):  # asked for: generation 2
        _open(data, identity=alice, generation=2)
