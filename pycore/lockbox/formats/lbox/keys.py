"""Key slots: wrapping the archive's content key for passwords, ML-KEM-1024
recipients and share links, and unlocking. docs/FORMAT.md §6.

Password slot:  ``ikm = Argon2id(NFC(password), salt, t, m, p=1, 32)``,
``wrap_key = HKDF-SHA256(ikm, salt=archive_id, info="lockbox/v1/password-wrap")``.
Recipient slot: ``(ss, ct) = ML-KEM-1024.Encaps(ek)``, ``wrap_key =
HKDF-SHA256(ss, salt=archive_id, info="lockbox/v1/recipient-wrap" || SHA-256(ek)
|| SHA-256(ct))``.
Link slot: a 32-byte random secret (full entropy: no Argon2id), ``wrap_key =
HKDF-SHA256(secret, salt=archive_id, info="lockbox/v1/link-wrap" || u32le(slot_id))``;
its text form is ``lbk1-`` + unpadded base64url (:class:`LinkSecret`).
All wrap the content key with ChaCha20-Poly1305 under a zero nonce (each wrap
key seals one message: fresh salt / fresh encapsulation / fresh secret) and AAD
``"lockbox/v1/slot" || archive_id || kind || slot_id || slot descriptor``.

Key commitment (key directory version 2): ``HKDF-SHA256(content_key,
salt=archive_id, info="lockbox/v1/key-commitment", L=32)``. ChaCha20-Poly1305 is
not key-committing, so every key a slot gives is checked against it: all the
slots of one directory give one content key, or the archive is refused.

Unlocking is bounded by local :class:`UnlockLimits` (a reader policy, not the
format): password slots whose Argon2id cost is over them are skipped, so a
hostile archive cannot make a reader spend more than it agreed to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field

from ...crypto.base import MLKEM1024_EK_SIZE, MLKEM1024_SEED_SIZE, CryptoBackend
from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    UsageError,
    WrongKeyError,
)
from .wire.constants import (
    DEFAULT_ARGON2_MEMORY_KIB,
    DEFAULT_ARGON2_TIME_COST,
    KEY_COMMITMENT_SIZE,
    LABEL_KEY_COMMITMENT,
    LABEL_PASSWORD_WRAP,
    LABEL_RECIPIENT_WRAP,
    MAX_PASSWORD_SLOTS,
    SlotKind,
)
from .wire.keydir import (
    LINK_KIND,
    SALT_SIZE,
    WRAPPED_KEY_SIZE,
    KeySlot,
    LinkSlot,
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    check_argon2_params,
    encode_keydir,
    password_slot_count,
    slot_aad,
)

__all__ = ["Identity", "Recipient", "LinkSecret", "Argon2Params", "UnlockLimits",
           "new_password_slot", "new_recipient_slot", "new_link_slot", "link_wrap_key",
           "as_link_secret", "unlock", "LINK_PREFIX", "LINK_SECRET_SIZE",
           "normalize_password", "key_commitment", "committed_keydir",
           "check_password_slot_room", "DEFAULT_ARGON2"]

_ZERO_NONCE = b"\x00" * 12
_KNOWN_SLOT_KINDS = frozenset((int(SlotKind.PASSWORD), int(SlotKind.MLKEM1024), LINK_KIND))
IDENTITY_PREFIX = "LOCKBOX-IDENTITY-1:"
RECIPIENT_PREFIX = "lockbox-recipient-1:"
LINK_PREFIX = "lbk1-"
LINK_SECRET_SIZE = 32
LABEL_LINK_WRAP = b"lockbox/v1/link-wrap"


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = DEFAULT_ARGON2_TIME_COST
    memory_kib: int = DEFAULT_ARGON2_MEMORY_KIB


DEFAULT_ARGON2 = Argon2Params()


def _size_text(kib: int) -> str:
    """4194304 -> '4 GiB', 524288 -> '512 MiB', 100 -> '100 KiB'."""
    for unit, factor in (("GiB", 1 << 20), ("MiB", 1 << 10)):
        if kib >= factor and kib % factor == 0:
            return f"{kib // factor} {unit}"
    return f"{kib} KiB"


def _size_arg(kib: int) -> str:
    """A SIZE for the CLI's --max-argon2-memory / --max-unlock-work: '4096M' or '100K'."""
    return f"{kib // 1024}M" if kib % 1024 == 0 else f"{kib}K"


@dataclass(frozen=True)
class UnlockLimits:
    """How much Argon2id work this reader agrees to spend on one unlock (a local
    policy, docs/FORMAT.md §6 "Local limits"; the defaults are per platform,
    ``lockbox.platform.default_unlock_limits``). A password slot over a limit is
    unusable here: it is skipped, and the error says which limit and how to raise it.

    ``max_unlock_work_kib`` bounds the sum of ``time_cost * memory_kib`` over the
    password slots tried in one unlock (slots are tried cheapest first).
    """

    max_argon2_memory_kib: int
    max_argon2_time_cost: int
    max_password_slots: int
    max_unlock_work_kib: int

    def __post_init__(self) -> None:
        for name in ("max_argon2_memory_kib", "max_argon2_time_cost", "max_password_slots",
                     "max_unlock_work_kib"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"unlock limit {name} must be a positive integer, got "
                                 f"{value!r}")

    @classmethod
    def default(cls) -> UnlockLimits:
        """This platform's defaults (CPython and the browser differ)."""
        from ...platform import default_unlock_limits

        return default_unlock_limits()

    def refusal(self, slot: PasswordSlot, tried: int, work_kib: int) -> str:
        """Why ``slot`` may not be tried after ``tried`` password slots costing
        ``work_kib`` (t * m) so far; "" when it may."""
        t, m = slot.time_cost, slot.memory_kib
        if m > self.max_argon2_memory_kib:
            return (f"Argon2id memory {_size_text(m)} is over this reader's limit of "
                    f"{_size_text(self.max_argon2_memory_kib)} (raise it with "
                    f"--max-argon2-memory {_size_arg(m)})")
        if t > self.max_argon2_time_cost:
            return (f"Argon2id time cost {t} is over this reader's limit of "
                    f"{self.max_argon2_time_cost} (raise it with --max-argon2-time {t})")
        if tried >= self.max_password_slots:
            return f"this reader tries at most {self.max_password_slots} password slots"
        if work_kib + t * m > self.max_unlock_work_kib:
            need = work_kib + t * m
            return (f"Argon2id work (time cost x memory) would reach {_size_text(need)}, "
                    f"over this reader's limit of {_size_text(self.max_unlock_work_kib)} "
                    f"(raise it with --max-unlock-work {_size_arg(need)})")
        return ""


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


@dataclass(frozen=True)
class LinkSecret:
    """A share link's key: 32 random bytes (256 bits of entropy). Its text form
    ``lbk1-`` + 43 characters of unpadded base64url goes in a viewer URL's fragment
    (``#url=...&key=lbk1-...``), never in a request. A secret: ``repr`` hides it."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != LINK_SECRET_SIZE:
            raise FormatError(f"link key: {LINK_SECRET_SIZE} bytes expected")

    @classmethod
    def generate(cls, crypto: CryptoBackend) -> LinkSecret:
        return cls(crypto.random_bytes(LINK_SECRET_SIZE))

    def text(self) -> str:
        """``lbk1-`` + the unpadded base64url of the 32 bytes (48 characters)."""
        return LINK_PREFIX + base64.urlsafe_b64encode(self.secret).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> LinkSecret:
        """Strict: the prefix, then canonical unpadded base64url of exactly 32 bytes
        (leading and trailing whitespace aside); anything else is a FormatError."""
        text = text.strip()
        if not text.startswith(LINK_PREFIX):
            raise FormatError("not a lockbox link key (expected 'lbk1-...')")
        data = _b64(text[len(LINK_PREFIX):], "link key")
        if len(data) != LINK_SECRET_SIZE:
            raise FormatError(f"link key: {len(data)} bytes, expected {LINK_SECRET_SIZE}")
        return cls(data)


def as_link_secret(value: LinkSecret | str | None) -> LinkSecret | None:
    """A link secret given as a :class:`LinkSecret` or its ``lbk1-...`` text. A text
    that is not a link key is the caller's mistake, not the archive's: UsageError (the
    FormatError of :meth:`LinkSecret.parse` would read as a damaged archive)."""
    if value is None or isinstance(value, LinkSecret):
        return value
    if isinstance(value, str):
        try:
            return LinkSecret.parse(value)
        except FormatError as exc:
            raise UsageError(f"not a valid link key: {exc}") from None
    raise UsageError(f"a link key is a LinkSecret or an 'lbk1-...' text, not "
                     f"{type(value).__name__}")


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


def link_wrap_key(crypto: CryptoBackend, archive_id: bytes, secret: LinkSecret,
                  slot_id: int) -> bytes:
    """``HKDF-SHA256(secret, salt=archive_id, info="lockbox/v1/link-wrap" ||
    u32le(slot_id), L=32)``: one key per archive and slot (docs/FORMAT.md §6)."""
    return crypto.hkdf_sha256(secret.secret, archive_id,
                              LABEL_LINK_WRAP + slot_id.to_bytes(4, "little"), 32)


def key_commitment(crypto: CryptoBackend, archive_id: bytes, content_key: bytes) -> bytes:
    """The key directory's commitment to its content key (docs/FORMAT.md §6, §17.6)."""
    return crypto.hkdf_sha256(content_key, archive_id, LABEL_KEY_COMMITMENT,
                              KEY_COMMITMENT_SIZE)


def check_password_slot_room(slots: list[KeySlot], adding: int = 0) -> None:
    """UsageError when ``slots`` plus ``adding`` new password slots exceed the format's
    maximum of password slots (docs/FORMAT.md §6)."""
    have = password_slot_count(slots)
    if have + adding > MAX_PASSWORD_SLOTS:
        raise UsageError(f"an archive holds at most {MAX_PASSWORD_SLOTS} password slots "
                         f"(this one has {have}): remove one first (lockbox keys rm ID)")


def committed_keydir(crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                     slots: list[KeySlot]) -> bytes:
    """The key directory a writer writes: version 2, committed to ``content_key``."""
    check_password_slot_room(slots)
    return encode_keydir(slots, key_commitment(crypto, archive_id, content_key))


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


def new_link_slot(crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                  secret: LinkSecret, taken: set[int] | None = None) -> LinkSlot:
    """A link slot wrapping ``content_key`` for ``secret`` (draw one secret per link:
    :meth:`LinkSecret.generate`)."""
    slot = LinkSlot(_new_slot_id(crypto, taken or set()), b"")
    key = link_wrap_key(crypto, archive_id, secret, slot.slot_id)
    wrapped = crypto.aead(key).seal(_ZERO_NONCE, content_key, slot_aad(archive_id, slot))
    assert len(wrapped) == WRAPPED_KEY_SIZE
    return LinkSlot(slot.slot_id, wrapped)


def unlock(crypto: CryptoBackend, archive_id: bytes, slots: list[KeySlot], *,
           password: str | bytes | None = None, identity: Identity | None = None,
           link: LinkSecret | str | None = None, commitment: bytes | None = None,
           limits: UnlockLimits | None = None) -> tuple[bytes, int]:
    """Return ``(content_key, slot_id)`` of the first slot the secret opens.

    Link slots are tried first, then recipient slots, both in directory order (one
    HKDF, resp. one ML-KEM decapsulation, and one AEAD each), then password slots
    cheapest first (``time_cost * memory_kib``) within ``limits`` (default: this
    platform's); slots over a limit are skipped. With ``commitment`` (a version-2 key
    directory's key commitment), the key a slot gives must match it: else
    IntegrityError (a hostile or damaged archive), never another slot or a silent
    success. ``link``: a :class:`LinkSecret` or its ``lbk1-...`` text.

    Raises LimitExceededError when no slot was tried and a slot this secret might open
    was passed over (an unusable or over-the-limits slot of the secret's kind, or a slot
    of an unknown kind), else WrongKeyError when no slot opens (the message says which
    kinds were tried and which slots the local limits skipped). docs/FORMAT.md §6.
    """
    link = as_link_secret(link)
    if password is None and identity is None and link is None:
        raise UsageError("a password, an identity or a link key is needed to open this "
                         "archive")
    if limits is None:
        limits = UnlockLimits.default()
    pw = normalize_password(password) if password is not None else None
    ek = identity.recipient(crypto).public_key if identity is not None else None
    candidates: list[PasswordSlot | RecipientSlot | LinkSlot] = []
    skipped: list[str] = []
    if link is not None:  # cheapest first: one HKDF and one AEAD per link slot
        candidates += [s for s in slots if isinstance(s, LinkSlot)]
    if identity is not None:
        candidates += [s for s in slots if isinstance(s, RecipientSlot)]
    if pw is not None:
        work_kib = tried = 0
        for s in sorted((s for s in slots if isinstance(s, PasswordSlot)),
                        key=lambda s: s.time_cost * s.memory_kib):
            reason = limits.refusal(s, tried, work_kib)
            if reason:
                skipped.append(f"slot {s.slot_id}: {reason}")
                continue
            tried += 1
            work_kib += s.time_cost * s.memory_kib
            candidates.append(s)
    for slot in candidates:
        if isinstance(slot, LinkSlot):
            assert link is not None
            key = link_wrap_key(crypto, archive_id, link, slot.slot_id)
        elif isinstance(slot, PasswordSlot):
            assert pw is not None
            key = _password_wrap_key(crypto, archive_id, pw, slot.salt, slot.time_cost,
                                     slot.memory_kib)
        else:
            assert identity is not None and ek is not None
            ss = crypto.mlkem1024_decapsulate(identity.seed, slot.kem_ciphertext)
            key = _recipient_wrap_key(crypto, archive_id, ss, ek, slot.kem_ciphertext)
        try:
            content_key = crypto.aead(key).open(_ZERO_NONCE, slot.wrapped_key,
                                                slot_aad(archive_id, slot))
        except IntegrityError:
            continue
        if commitment is not None and not hmac.compare_digest(
                key_commitment(crypto, archive_id, content_key), commitment):
            raise IntegrityError(
                f"key slot {slot.slot_id} gives a different content key than the archive "
                "commits to: a hostile or damaged archive")
        return content_key, slot.slot_id
    # docs/FORMAT.md §6 "Unlocking", rule 1: nothing was tried, and a slot this secret
    # might open was passed over — one of the secret's own kind this reader cannot use
    # (Argon2id parameters outside the format's limits, or over the local limits), or
    # one of a kind it does not know (which may be for any secret).
    own_kinds = ({int(SlotKind.PASSWORD)} if pw is not None else set()) | \
        ({int(SlotKind.MLKEM1024)} if identity is not None else set()) | \
        ({LINK_KIND} if link is not None else set())
    unusable = [f"slot {s.slot_id}: {s.reason}" for s in slots
                if isinstance(s, UnusableSlot)
                and (s.kind in own_kinds or s.kind not in _KNOWN_SLOT_KINDS)]
    if not candidates and (skipped or unusable):
        raise LimitExceededError("no key slot can be used by this reader: "
                                 + "; ".join(skipped + unusable))
    not_tried = f" (not tried: {'; '.join(skipped)})" if skipped else ""
    if link is not None and pw is None and identity is None:  # rule 2
        if not any(int(s.kind) == LINK_KIND for s in slots):
            raise WrongKeyError("this archive has no link slot: the link was revoked, or "
                                "it is not for this archive")
        raise WrongKeyError("this link's key does not open the archive (revoked or wrong)")
    if pw is not None and not any(s.kind == SlotKind.PASSWORD for s in slots):  # rule 3
        raise WrongKeyError("this archive has no password slot; open it with an identity")
    if identity is not None and pw is None and link is None:  # rule 4
        if not any(s.kind == SlotKind.MLKEM1024 for s in slots):
            raise WrongKeyError("this archive has no recipient slot; open it with a password")
        raise WrongKeyError("this identity is not a recipient of this archive")
    what = "password, identity or link key" if link is not None else "password or identity"
    raise WrongKeyError(f"wrong {what}: no key slot opens" + not_tried)  # rule 5
