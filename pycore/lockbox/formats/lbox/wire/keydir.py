"""The key directory: cleartext key slots that wrap the archive's content key.

docs/FORMAT.md §6. Decoding is pure; wrapping/unwrapping and the key commitment
live in ``lockbox.formats.lbox.keys`` because they need a crypto backend.

Version 2 (written by every writer) carries a 32-byte **key commitment** to the
one content key every slot must give (``lockbox.formats.lbox.keys.key_commitment``) and holds
at most ``MAX_PASSWORD_SLOTS`` password slots. Version 1 (archives written
before) has neither; readers still read it (``KeyDirectory.key_commitment`` is
then ``None``) and the next writer commit upgrades it.

Link slots (kind 3, ``LINK_KIND``) wrap the content key under a key derived by HKDF
from a 32-byte random secret (a share link's ``lbk1-...`` key): their body is the
wrapped key alone (no descriptor).

A slot this reader cannot use (an unknown kind, or Argon2 parameters outside
its limits) does not make the whole directory unreadable: it is kept as an
:class:`UnusableSlot` (bytes preserved, so a writer rewrites it unchanged) and
another slot may still open the archive.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ....errors import FormatError, LimitExceededError, UnsupportedVersionError
from .constants import (
    AAD_SLOT,
    ARGON2_MAX_MEMORY_KIB,
    ARGON2_MAX_TIME_COST,
    ARGON2_MIN_MEMORY_KIB,
    KEY_COMMITMENT_SIZE,
    KEYDIR_MAGIC,
    MAX_KEY_SLOTS,
    MAX_KEYDIR_SIZE,
    MAX_PASSWORD_SLOTS,
    SlotKind,
)
from .encoding import Builder, Reader

__all__ = ["PasswordSlot", "RecipientSlot", "LinkSlot", "UnusableSlot", "KeySlot", "KeyDirectory",
           "encode_keydir", "decode_keydir", "decode_key_directory", "keydir_has_commitment",
           "password_slot_count", "slot_aad", "check_argon2_params", "KEYDIR_VERSION",
           "LEGACY_KEYDIR_VERSION", "WRAPPED_KEY_SIZE", "SALT_SIZE", "KEM_CT_SIZE", "LINK_KIND",
           "slot_kind_name"]

KEYDIR_VERSION = 2  # what writers write: with the key commitment
LEGACY_KEYDIR_VERSION = 1  # archives written before key commitments (read only)
WRAPPED_KEY_SIZE = 48  # 32-byte content key + 16-byte tag
SALT_SIZE = 16
KEM_CT_SIZE = 1568
LINK_KIND = 3  # a share link's slot (docs/FORMAT.md §6); SlotKind has PASSWORD and MLKEM1024
_PW = struct.Struct("<16sIIB")  # salt, time_cost, memory_kib, parallelism


def check_argon2_params(time_cost: int, memory_kib: int, parallelism: int) -> str:
    """"" when the parameters are within the format's limits, else the reason."""
    if not 1 <= time_cost <= ARGON2_MAX_TIME_COST:
        return f"Argon2id time cost {time_cost} outside 1..{ARGON2_MAX_TIME_COST}"
    if not ARGON2_MIN_MEMORY_KIB <= memory_kib <= ARGON2_MAX_MEMORY_KIB:
        return (f"Argon2id memory {memory_kib} KiB outside "
                f"{ARGON2_MIN_MEMORY_KIB}..{ARGON2_MAX_MEMORY_KIB} KiB")
    if parallelism != 1:
        return f"Argon2id parallelism {parallelism} (the format requires 1)"
    return ""


@dataclass(frozen=True, slots=True)
class PasswordSlot:
    slot_id: int
    salt: bytes
    time_cost: int
    memory_kib: int
    parallelism: int
    wrapped_key: bytes

    kind = SlotKind.PASSWORD

    def descriptor(self) -> bytes:
        """The slot's bytes without the wrapped key (bound into the wrap AAD)."""
        return _PW.pack(self.salt, self.time_cost, self.memory_kib, self.parallelism)

    def body(self) -> bytes:
        return self.descriptor() + self.wrapped_key


@dataclass(frozen=True, slots=True)
class RecipientSlot:
    """An ML-KEM-1024 recipient. No fingerprint of the recipient is stored (which
    public key a slot is for is not revealed): readers try every recipient slot."""

    slot_id: int
    kem_ciphertext: bytes
    wrapped_key: bytes

    kind = SlotKind.MLKEM1024

    def descriptor(self) -> bytes:
        return self.kem_ciphertext

    def body(self) -> bytes:
        return self.kem_ciphertext + self.wrapped_key


@dataclass(frozen=True, slots=True)
class LinkSlot:
    """A share link: the content key wrapped under ``HKDF(secret, archive_id, ...)`` of a
    32-byte random secret. The body is the wrapped key alone: the slot shows that a link
    exists and nothing else."""

    slot_id: int
    wrapped_key: bytes

    kind = LINK_KIND

    def descriptor(self) -> bytes:
        return b""

    def body(self) -> bytes:
        return self.wrapped_key


@dataclass(frozen=True, slots=True)
class UnusableSlot:
    """A slot this reader cannot use; its bytes are kept verbatim."""

    slot_id: int
    kind_code: int
    raw_body: bytes
    reason: str

    @property
    def kind(self) -> int:
        return self.kind_code

    def body(self) -> bytes:
        return self.raw_body


KeySlot = PasswordSlot | RecipientSlot | LinkSlot | UnusableSlot

_KIND_NAMES = {int(SlotKind.PASSWORD): "password", int(SlotKind.MLKEM1024): "recipient",
               LINK_KIND: "link"}


def slot_kind_name(kind: int) -> str:
    """``password``, ``recipient``, ``link``, or ``kind N`` for a kind this reader does
    not know."""
    return _KIND_NAMES.get(int(kind), f"kind {int(kind)}")


@dataclass(frozen=True, slots=True)
class KeyDirectory:
    """A decoded key directory: its slots and, from version 2 on, the key commitment."""

    slots: list[KeySlot]
    key_commitment: bytes | None  # None: a version-1 (legacy) directory

    @property
    def version(self) -> int:
        return LEGACY_KEYDIR_VERSION if self.key_commitment is None else KEYDIR_VERSION


def password_slot_count(slots: list[KeySlot]) -> int:
    """Slots of kind PASSWORD, usable or not (the limit of a version-2 directory)."""
    return sum(1 for s in slots if int(s.kind) == SlotKind.PASSWORD)


def slot_aad(archive_id: bytes, slot: PasswordSlot | RecipientSlot | LinkSlot) -> bytes:
    return b"".join((AAD_SLOT, archive_id, bytes([int(slot.kind)]),
                     slot.slot_id.to_bytes(4, "little"), slot.descriptor()))


def encode_keydir(slots: list[KeySlot], key_commitment: bytes | None = None) -> bytes:
    """Version 2 with ``key_commitment`` (``lockbox.formats.lbox.keys.key_commitment``): what every
    writer writes. Without it, a version-1 (legacy) directory: for tests and vectors
    only — writers MUST NOT write one (docs/FORMAT.md §6, §20)."""
    if len(slots) > MAX_KEY_SLOTS:
        raise ValueError("too many key slots")
    if len({s.slot_id for s in slots}) != len(slots):
        raise ValueError("duplicate slot id")
    if key_commitment is None:
        b = Builder().raw(KEYDIR_MAGIC).u8(LEGACY_KEYDIR_VERSION)
    else:
        if len(key_commitment) != KEY_COMMITMENT_SIZE:
            raise ValueError("the key commitment must be 32 bytes")
        if password_slot_count(slots) > MAX_PASSWORD_SLOTS:
            raise ValueError(f"more than {MAX_PASSWORD_SLOTS} password slots")
        b = Builder().raw(KEYDIR_MAGIC).u8(KEYDIR_VERSION).raw(key_commitment)
    b.u16(len(slots))
    for s in slots:
        body = s.body()
        b.u8(int(s.kind)).u32(s.slot_id).u16(len(body)).raw(body)
    return b.getvalue()


def decode_keydir(buf: bytes) -> list[KeySlot]:
    """The slots of a key directory of either version."""
    return decode_key_directory(buf).slots


def keydir_has_commitment(buf: bytes) -> bool:
    """Whether an (already decoded, well-formed) key directory carries a key commitment:
    False for a version-1 directory written before key commitments."""
    return len(buf) > 4 and buf[4] != LEGACY_KEYDIR_VERSION


def decode_key_directory(buf: bytes) -> KeyDirectory:
    if len(buf) > MAX_KEYDIR_SIZE:
        raise LimitExceededError("key directory larger than the limit")
    r = Reader(buf, "key directory")
    if r.raw(4) != KEYDIR_MAGIC:
        raise FormatError("key directory: bad magic")
    version = r.u8()
    if version not in (LEGACY_KEYDIR_VERSION, KEYDIR_VERSION):
        raise UnsupportedVersionError(f"key directory version {version} is not supported")
    commitment = r.raw(KEY_COMMITMENT_SIZE) if version == KEYDIR_VERSION else None
    count = r.u16()
    if count > MAX_KEY_SLOTS:
        raise LimitExceededError("key directory: too many slots")
    slots: list[KeySlot] = []
    seen: set[int] = set()
    passwords = 0
    for _ in range(count):
        kind = r.u8()
        if kind == SlotKind.PASSWORD and commitment is not None:
            passwords += 1
            if passwords > MAX_PASSWORD_SLOTS:
                raise LimitExceededError(f"key directory: more than {MAX_PASSWORD_SLOTS} "
                                         "password slots")
        slot_id = r.u32()
        size = r.u16()
        body = r.raw(size)
        if slot_id in seen:
            raise FormatError("key directory: duplicate slot id")
        seen.add(slot_id)
        if kind == SlotKind.PASSWORD:
            if size != _PW.size + WRAPPED_KEY_SIZE:
                raise FormatError("key directory: bad password slot size")
            salt, t, m, p = _PW.unpack_from(body, 0)
            reason = check_argon2_params(t, m, p)
            if reason:
                slots.append(UnusableSlot(slot_id, kind, body, reason))
                continue
            slots.append(PasswordSlot(slot_id, salt, t, m, p, body[_PW.size:]))
        elif kind == SlotKind.MLKEM1024:
            if size != KEM_CT_SIZE + WRAPPED_KEY_SIZE:
                raise FormatError("key directory: bad recipient slot size")
            slots.append(RecipientSlot(slot_id, body[:KEM_CT_SIZE], body[KEM_CT_SIZE:]))
        elif kind == LINK_KIND:
            if size != WRAPPED_KEY_SIZE:
                raise FormatError("key directory: bad link slot size")
            slots.append(LinkSlot(slot_id, bytes(body)))
        else:
            slots.append(UnusableSlot(slot_id, kind, body, f"unknown slot kind {kind}"))
    r.done()
    return KeyDirectory(slots, None if commitment is None else bytes(commitment))
