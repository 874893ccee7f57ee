"""The key directory: cleartext slots wrapping the content key; version 2 carries the key
commitment and at most 4 password slots, version 1 (legacy) is still read."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import (
    FormatError,
    LimitExceededError,
    TruncatedError,
    UnsupportedVersionError,
)
from lockbox.formats.lbox.wire.constants import (
    AAD_SLOT,
    ARGON2_MAX_MEMORY_KIB,
    ARGON2_MAX_TIME_COST,
    ARGON2_MIN_MEMORY_KIB,
    KEYDIR_MAGIC,
    MAX_KEY_SLOTS,
    MAX_KEYDIR_SIZE,
    MAX_PASSWORD_SLOTS,
    SlotKind,
)
from lockbox.formats.lbox.wire.keydir import (
    KEM_CT_SIZE,
    KEYDIR_VERSION,
    LEGACY_KEYDIR_VERSION,
    SALT_SIZE,
    WRAPPED_KEY_SIZE,
    LinkSlot,
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    check_argon2_params,
    decode_key_directory,
    decode_keydir,
    encode_keydir,
    keydir_has_commitment,
    slot_aad,
)

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, mutate

PW = PasswordSlot(7, bytes(range(16)), 3, 65536, 1, b"W" * WRAPPED_KEY_SIZE)
RC = RecipientSlot(0xFFFFFFFF, b"C" * KEM_CT_SIZE, b"w" * WRAPPED_KEY_SIZE)
RC_BODY = KEM_CT_SIZE + WRAPPED_KEY_SIZE
PW_BODY = 16 + 4 + 4 + 1 + WRAPPED_KEY_SIZE
C = bytes(range(100, 132))  # a key commitment (any 32 bytes, for the decoder)


def raw_slot(kind: int, slot_id: int, body: bytes, size: int | None = None) -> bytes:
    return struct.pack("<BIH", kind, slot_id, len(body) if size is None else size) + body


def keydir(*raw: bytes, count: int | None = None, magic: bytes = KEYDIR_MAGIC,
           version: int = KEYDIR_VERSION) -> bytes:
    commitment = C if version == KEYDIR_VERSION else b""
    return magic + bytes([version]) + commitment + \
        struct.pack("<H", len(raw) if count is None else count) + b"".join(raw)


def pw_body(t: int = 1, m: int = 64, p: int = 1, salt: bytes = bytes(16)) -> bytes:
    return struct.pack("<16sIIB", salt, t, m, p) + bytes(WRAPPED_KEY_SIZE)


def test_round_trip():
    for c in (C, None):
        assert decode_keydir(encode_keydir([], c)) == []
        assert decode_keydir(encode_keydir([PW], c)) == [PW]
        assert decode_keydir(encode_keydir([PW, RC], c)) == [PW, RC]
    enc = encode_keydir([RC, PW], C)
    assert enc[:5 + 32] == KEYDIR_MAGIC + bytes([KEYDIR_VERSION]) + C
    assert len(enc) == 7 + 32 + 7 + RC_BODY + 7 + PW_BODY
    d = decode_key_directory(enc)
    assert (d.slots, d.key_commitment, d.version) == ([RC, PW], C, 2)
    assert keydir_has_commitment(enc)
    legacy = encode_keydir([RC, PW])  # version 1: no commitment (tests and vectors only)
    assert legacy[:5] == KEYDIR_MAGIC + bytes([LEGACY_KEYDIR_VERSION])
    assert legacy == enc[:5].replace(b"\x02", b"\x01") + enc[5 + 32:]
    d = decode_key_directory(legacy)
    assert (d.slots, d.key_commitment, d.version) == ([RC, PW], None, 1)
    assert not keydir_has_commitment(legacy)
    with pytest.raises(ValueError):
        encode_keydir([PW], C[:31])


def test_at_most_4_password_slots_in_version_2():
    """Counted by kind, usable or not; version 1 (legacy) directories are not refused."""
    pws = [PasswordSlot(i + 1, bytes(16), 1, 64, 1, bytes(48)) for i in range(5)]
    odd = UnusableSlot(9, SlotKind.PASSWORD, pw_body(t=0), "t=0")
    assert len(decode_keydir(encode_keydir(pws[:MAX_PASSWORD_SLOTS], C))) == 4
    assert len(decode_keydir(encode_keydir([*pws[:3], RC, odd], C))) == 5
    for too_many in (pws, [*pws[:4], odd]):
        with pytest.raises(ValueError):
            encode_keydir(too_many, C)
        with pytest.raises(LimitExceededError, match="more than 4 password slots"):
            decode_keydir(keydir(*(raw_slot(int(s.kind), s.slot_id, s.body())
                                   for s in too_many)))
        assert len(decode_keydir(encode_keydir(too_many))) == 5


def test_descriptors_and_aad():
    assert PW.descriptor() == struct.pack("<16sIIB", PW.salt, 3, 65536, 1)
    assert RC.descriptor() == RC.kem_ciphertext  # no recipient fingerprint is stored
    assert PW.body() == PW.descriptor() + PW.wrapped_key
    assert RC.body() == RC.kem_ciphertext + RC.wrapped_key
    aid = b"A" * 16
    assert slot_aad(aid, PW) == AAD_SLOT + aid + bytes([SlotKind.PASSWORD]) + \
        (7).to_bytes(4, "little") + PW.descriptor()
    assert slot_aad(aid, RC) == AAD_SLOT + aid + bytes([SlotKind.MLKEM1024]) + \
        b"\xff\xff\xff\xff" + RC.descriptor()
    # the wrapped key itself is not bound (it is what the AEAD authenticates)
    assert slot_aad(aid, PW) == slot_aad(aid, PasswordSlot(7, PW.salt, 3, 65536, 1, b""))


def test_encode_refuses_duplicates_and_too_many():
    with pytest.raises(ValueError):
        encode_keydir([PW, PW])
    many = [RecipientSlot(i + 1, bytes(KEM_CT_SIZE), bytes(48)) for i in range(MAX_KEY_SLOTS + 1)]
    with pytest.raises(ValueError):
        encode_keydir(many, C)
    assert len(decode_keydir(encode_keydir(many[:MAX_KEY_SLOTS], C))) == MAX_KEY_SLOTS


def test_too_large():
    with pytest.raises(LimitExceededError):
        decode_keydir(keydir() + bytes(MAX_KEYDIR_SIZE))


@pytest.mark.parametrize("data", [b"", b"LBK", KEYDIR_MAGIC, KEYDIR_MAGIC + b"\x01",
                                  KEYDIR_MAGIC + b"\x01\x01", KEYDIR_MAGIC + b"\x02",
                                  KEYDIR_MAGIC + b"\x02" + C, KEYDIR_MAGIC + b"\x02" + C[:31]])
def test_truncated_header(data):
    with pytest.raises(TruncatedError):
        decode_keydir(data)


def test_bad_magic_and_version():
    with pytest.raises(FormatError, match="bad magic"):
        decode_keydir(keydir(magic=b"LBKX"))
    for v in (0, 3, 255):
        with pytest.raises(UnsupportedVersionError, match=f"version {v}"):
            decode_keydir(keydir(version=v))


def test_slot_count():
    with pytest.raises(LimitExceededError, match="too many slots"):
        decode_keydir(keydir(count=MAX_KEY_SLOTS + 1))
    with pytest.raises(LimitExceededError):
        decode_keydir(keydir(count=0xFFFF))
    with pytest.raises(TruncatedError):  # claims more slots than present
        decode_keydir(keydir(raw_slot(1, 1, pw_body()), count=2))
    with pytest.raises(FormatError, match="trailing"):  # claims fewer
        decode_keydir(keydir(raw_slot(1, 1, pw_body()), raw_slot(1, 2, pw_body()), count=1))


def test_truncated_slot_body():
    good = raw_slot(1, 1, pw_body())
    for n in (1, 4, 7, len(good) - 1):
        with pytest.raises(TruncatedError):
            decode_keydir(keydir(good[:n], count=1))
    with pytest.raises(TruncatedError):  # a body length past the end
        decode_keydir(keydir(raw_slot(1, 1, pw_body(), size=0xFFFF)))


def test_duplicate_slot_ids():
    with pytest.raises(FormatError, match="duplicate"):
        decode_keydir(keydir(raw_slot(1, 5, pw_body()), raw_slot(1, 5, pw_body())))
    with pytest.raises(FormatError, match="duplicate"):  # also across unknown kinds
        decode_keydir(keydir(raw_slot(9, 5, b"future"), raw_slot(1, 5, pw_body())))


@pytest.mark.parametrize("size", [0, PW_BODY - 1, PW_BODY + 1])
def test_bad_password_slot_size(size):
    body = (pw_body() + b"xx")[:size]
    with pytest.raises(FormatError, match="bad password slot size"):
        decode_keydir(keydir(raw_slot(SlotKind.PASSWORD, 1, body)))


@pytest.mark.parametrize("t,m,p", [
    (0, 64, 1), (ARGON2_MAX_TIME_COST + 1, 64, 1), (2 ** 32 - 1, 64, 1),
    (1, ARGON2_MIN_MEMORY_KIB - 1, 1), (1, 0, 1), (1, ARGON2_MAX_MEMORY_KIB + 1, 1),
    (1, 2 ** 32 - 1, 1), (1, 64, 0), (1, 64, 2), (1, 64, 255),
])
def test_argon2_parameters_out_of_range_make_the_slot_unusable(t, m, p):
    """Not an error for the whole directory: the slot is kept (verbatim) but unusable."""
    body = pw_body(t, m, p)
    slots = decode_keydir(keydir(raw_slot(SlotKind.PASSWORD, 1, body),
                                 raw_slot(SlotKind.PASSWORD, 2, pw_body())))
    assert isinstance(slots[0], UnusableSlot) and isinstance(slots[1], PasswordSlot)
    assert (slots[0].slot_id, slots[0].kind, slots[0].raw_body) == (1, SlotKind.PASSWORD, body)
    assert slots[0].reason == check_argon2_params(t, m, p) != ""
    assert encode_keydir(slots, C) == keydir(raw_slot(SlotKind.PASSWORD, 1, body),
                                             raw_slot(SlotKind.PASSWORD, 2, pw_body()))


@pytest.mark.parametrize("t,m", [(1, ARGON2_MIN_MEMORY_KIB), (ARGON2_MAX_TIME_COST,
                                                              ARGON2_MAX_MEMORY_KIB)])
def test_argon2_parameters_at_the_bounds(t, m):
    assert check_argon2_params(t, m, 1) == ""
    (s,) = decode_keydir(keydir(raw_slot(SlotKind.PASSWORD, 1, pw_body(t, m))))
    assert isinstance(s, PasswordSlot)
    assert (s.time_cost, s.memory_kib, s.parallelism) == (t, m, 1)


@pytest.mark.parametrize("delta", [-1, 1, -KEM_CT_SIZE, 8])
def test_bad_recipient_slot_size(delta):
    body = bytes(RC_BODY + delta)
    with pytest.raises(FormatError, match="bad recipient slot size"):
        decode_keydir(keydir(raw_slot(SlotKind.MLKEM1024, 1, body)))


def test_unknown_slot_kinds_are_kept_unusable():
    enc = keydir(raw_slot(0, 1, b""), raw_slot(1, 2, pw_body()), raw_slot(200, 3, b"x" * 300))
    slots = decode_keydir(enc)
    assert [type(s) for s in slots] == [UnusableSlot, PasswordSlot, UnusableSlot]
    assert [s.slot_id for s in slots] == [1, 2, 3]
    assert (slots[2].kind, slots[2].raw_body) == (200, b"x" * 300)
    assert "unknown slot kind" in slots[2].reason
    assert encode_keydir(slots, C) == enc  # a writer keeps them byte for byte


def test_trailing_bytes():
    with pytest.raises(FormatError, match="trailing"):
        decode_keydir(encode_keydir([PW], C) + b"\x00")


# -- properties ------------------------------------------------------------------------------

password_slots = st.builds(
    PasswordSlot, st.integers(0, 2 ** 32 - 1), st.binary(min_size=SALT_SIZE, max_size=SALT_SIZE),
    st.integers(1, ARGON2_MAX_TIME_COST), st.integers(ARGON2_MIN_MEMORY_KIB,
                                                      ARGON2_MAX_MEMORY_KIB),
    st.just(1), st.binary(min_size=WRAPPED_KEY_SIZE, max_size=WRAPPED_KEY_SIZE))
recipient_slots = st.builds(
    RecipientSlot, st.integers(0, 2 ** 32 - 1),
    st.binary(min_size=KEM_CT_SIZE, max_size=KEM_CT_SIZE),
    st.binary(min_size=WRAPPED_KEY_SIZE, max_size=WRAPPED_KEY_SIZE))
unusable_slots = st.builds(
    lambda i, kind, body: UnusableSlot(i, kind, body, f"unknown slot kind {kind}"),
    st.integers(0, 2 ** 32 - 1), st.sampled_from([0, 4, 99, 255]), st.binary(max_size=40))
link_slots = st.builds(LinkSlot, st.integers(0, 2 ** 32 - 1),
                       st.binary(min_size=WRAPPED_KEY_SIZE, max_size=WRAPPED_KEY_SIZE))
slot_lists = st.lists(st.one_of(password_slots, recipient_slots, link_slots, unusable_slots),
                      max_size=4,
                      unique_by=lambda s: s.slot_id)


@ROUND_TRIP
@given(slot_lists)
def test_round_trip_property(slots):
    assert decode_keydir(encode_keydir(slots)) == slots
    assert decode_key_directory(encode_keydir(slots, C)).slots == slots


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    decode_or_typed_error(decode_keydir, data)
    decode_or_typed_error(decode_keydir, KEYDIR_MAGIC + b"\x01" + data)
    decode_or_typed_error(decode_keydir, KEYDIR_MAGIC + b"\x02" + C + data)


@FUZZ
@given(st.data(), st.lists(password_slots, min_size=1, max_size=3,
                           unique_by=lambda s: s.slot_id))
def test_mutated_key_directories(data, slots):
    enc = encode_keydir(slots, C)
    decode_or_typed_error(decode_keydir, data.draw(mutate(enc)))
