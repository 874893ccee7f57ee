"""Key slots: wrapping the archive's content key for passwords and ML-KEM-1024
recipients, and unlocking. docs/FORMAT.md §6.

Password slot:  ``ikm = Argon2id(NFC(password), salt, t, m, p=1, 32)``,
``wrap_key = HKDF-SHA256(ikm, salt=archive_id, info="lockbox/v1/password-wrap")``.
Recipient slot: ``(ss, ct) = ML-KEM-1024.Encaps(ek)``, ``wrap_key =
HKDF-SHA256(ss, salt=archive_id, info="lockbox/v1/recipient-wrap" || SHA-256(ek)
|| SHA-256(ct))``.
Both wrap the content key with ChaCha20-Poly1305 under a zero nonce (each wrap
key is used exactly once: fresh salt / fresh encapsulation) and AAD
``"lockbox/v1/slot" || archive_id || kind || slot_id || slot descriptor``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass

from .crypto.base import MLKEM1024_EK_SIZE, MLKEM1024_SEED_SIZE, CryptoBackend
from .errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    UsageError,
    WrongKeyError,
)
from .format.constants import (
    DEFAULT_ARGON2_MEMORY_KIB,
    DEFAULT_ARGON2_TIME_COST,
    LABEL_PASSWORD_WRAP,
    LABEL_RECIPIENT_WRAP,
)
from .format.keydir import (
    SALT_SIZE,
    KeySlot,
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    check_argon2_params,
    slot_aad,
)

__all__ = ["Identity", "Recipient", "Argon2Params", "new_password_slot", "new_recipient_slot",
           "unlock", "normalize_password", "DEFAULT_ARGON2"]

_ZERO_NONCE = b"\x00" * 12
IDENTITY_PREFIX = "LOCKBOX-IDENTITY-1:"
RECIPIENT_PREFIX = "lockbox-recipient-1:"


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = DEFAULT_ARGON2_TIME_COST
    memory_kib: int = DEFAULT_ARGON2_MEMORY_KIB


DEFAULT_ARGON2 = Argon2Params()


def normalize_password(password: str | bytes) -> bytes:
    if isinstance(password, bytes):
        return password
    return unicodedata.normalize("NFC", password).encode("utf-8")


@dataclass(frozen=True)
class Recipient:
    """An ML-KEM-1024 encapsulation key (public)."""

    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != MLKEM1024_EK_SIZE:
            raise FormatError("recipient key: wrong length")

    @property
    def fingerprint(self) -> bytes:
        """A local display hint (SHA-256 of the key, first 8 bytes); never stored."""
        return hashlib.sha256(self.public_key).digest()[:8]

    def encode(self) -> str:
        return RECIPIENT_PREFIX + base64.urlsafe_b64encode(self.public_key).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Recipient:
        text = text.strip()
        if not text.startswith(RECIPIENT_PREFIX):
            raise FormatError("not a lockbox recipient (expected 'lockbox-recipient-1:...')")
        return cls(_b64(text[len(RECIPIENT_PREFIX):], "recipient"))


@dataclass(frozen=True)
class Identity:
    """An ML-KEM-1024 identity, kept as its 64-byte seed ``d || z``."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != MLKEM1024_SEED_SIZE:
            raise FormatError("identity: wrong seed length")

    @classmethod
    def generate(cls, crypto: CryptoBackend) -> Identity:
        return cls(crypto.random_bytes(MLKEM1024_SEED_SIZE))

    def recipient(self, crypto: CryptoBackend) -> Recipient:
        return Recipient(crypto.mlkem1024_public_key(self.seed))

    def encode(self) -> str:
        return IDENTITY_PREFIX + base64.urlsafe_b64encode(self.seed).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Identity:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(IDENTITY_PREFIX):
                return cls(_b64(line[len(IDENTITY_PREFIX):], "identity"))
        raise FormatError("not a lockbox identity file (no 'LOCKBOX-IDENTITY-1:' line)")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64(text: str, what: str) -> bytes:
    """Strict unpadded base64url: no other characters, no padding, canonical."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise FormatError(f"{what}: bad base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).decode().rstrip("=") != text:
        raise FormatError(f"{what}: bad base64 (non-canonical)")
    return data


def _new_slot_id(crypto: CryptoBackend, taken: set[int]) -> int:
    while True:
        sid = int.from_bytes(crypto.random_bytes(4), "little")
        if sid and sid not in taken:
            return sid


def _password_wrap_key(crypto: CryptoBackend, archive_id: bytes, password: bytes,
                       salt: bytes, t: int, m: int) -> bytes:
    ikm = crypto.argon2id(password, salt, time_cost=t, memory_kib=m, parallelism=1, length=32)
    return crypto.hkdf_sha256(ikm, archive_id, LABEL_PASSWORD_WRAP, 32)


def _recipient_wrap_key(crypto: CryptoBackend, archive_id: bytes, ss: bytes, ek: bytes,
                        ct: bytes) -> bytes:
    info = LABEL_RECIPIENT_WRAP + hashlib.sha256(ek).digest() + hashlib.sha256(ct).digest()
    return crypto.hkdf_sha256(ss, archive_id, info, 32)


def new_password_slot(crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                      password: str | bytes, params: Argon2Params = DEFAULT_ARGON2,
                      taken: set[int] | None = None) -> PasswordSlot:
    pw = normalize_password(password)
    if not pw:
        raise UsageError("the password is empty")
    reason = check_argon2_params(params.time_cost, params.memory_kib, 1)
    if reason:
        raise UsageError(reason)
    salt = crypto.random_bytes(SALT_SIZE)
    slot = PasswordSlot(_new_slot_id(crypto, taken or set()), salt, params.time_cost,
                        params.memory_kib, 1, b"")
    key = _password_wrap_key(crypto, archive_id, pw, salt, params.time_cost, params.memory_kib)
    wrapped = crypto.aead(key).seal(_ZERO_NONCE, content_key, slot_aad(archive_id, slot))
    return PasswordSlot(slot.slot_id, salt, slot.time_cost, slot.memory_kib, 1, wrapped)


def new_recipient_slot(crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                       recipient: Recipient, taken: set[int] | None = None) -> RecipientSlot:
    ss, ct = crypto.mlkem1024_encapsulate(recipient.public_key)
    slot = RecipientSlot(_new_slot_id(crypto, taken or set()), ct, b"")
    key = _recipient_wrap_key(crypto, archive_id, ss, recipient.public_key, ct)
    wrapped = crypto.aead(key).seal(_ZERO_NONCE, content_key, slot_aad(archive_id, slot))
    return RecipientSlot(slot.slot_id, ct, wrapped)


def unlock(crypto: CryptoBackend, archive_id: bytes, slots: list[KeySlot], *,
           password: str | bytes | None = None,
           identity: Identity | None = None) -> tuple[bytes, int]:
    """Return ``(content_key, slot_id)`` of the first slot the secret opens.

    Raises WrongKeyError when none does (the message says which kinds were tried).
    """
    if password is None and identity is None:
        raise UsageError("a password or an identity is needed to open this archive")
    pw = normalize_password(password) if password is not None else None
    ek = identity.recipient(crypto).public_key if identity is not None else None
    tried = []
    for slot in slots:
        if isinstance(slot, UnusableSlot):
            continue
        aad = slot_aad(archive_id, slot)
        if isinstance(slot, PasswordSlot) and pw is not None:
            tried.append("password")
            key = _password_wrap_key(crypto, archive_id, pw, slot.salt, slot.time_cost,
                                     slot.memory_kib)
        elif isinstance(slot, RecipientSlot) and identity is not None and ek is not None:
            tried.append("identity")
            ss = crypto.mlkem1024_decapsulate(identity.seed, slot.kem_ciphertext)
            key = _recipient_wrap_key(crypto, archive_id, ss, ek, slot.kem_ciphertext)
        else:
            continue
        try:
            return crypto.aead(key).open(_ZERO_NONCE, slot.wrapped_key, aad), slot.slot_id
        except IntegrityError:
            continue
    unusable = [s for s in slots if isinstance(s, UnusableSlot)]
    if unusable and not tried:
        raise LimitExceededError("no key slot can be used by this reader: "
                                 + "; ".join(s.reason for s in unusable))
    if pw is not None and not any(isinstance(s, PasswordSlot) for s in slots):
        raise WrongKeyError("this archive has no password slot; open it with an identity")
    if identity is not None and pw is None:
        if "identity" not in tried:
            raise WrongKeyError("this archive has no recipient slot; open it with a password")
        raise WrongKeyError("this identity is not a recipient of this archive")
    raise WrongKeyError("wrong password or identity: no key slot opens")
