"""The crypto backend protocol.

A backend supplies the primitives lockbox needs and nothing else; every
construction built from them (key wrapping, frame sealing, labels) lives in
the format layer so that it is written once for every backend.

Primitives (all must be byte-identical across backends):

* ChaCha20-Poly1305 (RFC 8439, IETF variant: 32-byte key, 12-byte nonce,
  16-byte tag appended to the ciphertext).
* Argon2id (RFC 9106, version 0x13), raw output.
* HKDF-SHA-256 (RFC 5869).
* ML-KEM-1024 (FIPS 203): key pair derived from a 64-byte seed ``d || z``,
  encapsulation to a 1568-byte encapsulation key, decapsulation.
* BLAKE3 (32-byte output), the content hash of archived files.
* A cryptographically secure random source.
* Ed25519 signature verification (RFC 8032), for signed ``.sync`` containers.
* age (age-encryption.org/v1) decryption with a passphrase (scrypt stanza), for ``.sync``
  vault payloads. Callers bound the scrypt work factor before calling
  (:mod:`lockbox.formats.sync.vault`); backends may refuse large ones as well.

One optional batch operation, :func:`open_frames` (many sealed frames authenticated and
decoded at once): a backend may have an ``open_frames`` method that does it faster (the
browser's opens them in a pool of Web Workers); the default is the loop, one frame after
the other, as the format layer always did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from lockbox.errors import LockboxError

__all__ = ["Aead", "AeadInto", "aead_into", "Hasher", "CryptoBackend", "FrameJob",
           "FrameResult", "Decode", "open_frames", "open_frames_loop",
           "check_size", "check_int", "AEAD_KEY_SIZE",
           "AEAD_NONCE_SIZE", "AEAD_TAG_SIZE", "MLKEM1024_SEED_SIZE", "MLKEM1024_EK_SIZE",
           "MLKEM1024_CT_SIZE", "MLKEM_SS_SIZE", "ED25519_PUBLIC_KEY_SIZE",
           "ED25519_SIGNATURE_SIZE"]

AEAD_KEY_SIZE = 32
AEAD_NONCE_SIZE = 12
AEAD_TAG_SIZE = 16
MLKEM1024_SEED_SIZE = 64
MLKEM1024_EK_SIZE = 1568
MLKEM1024_CT_SIZE = 1568
MLKEM_SS_SIZE = 32
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64


@runtime_checkable
class Aead(Protocol):
    """ChaCha20-Poly1305 bound to one key."""

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ``ciphertext || tag`` (len(plaintext) + 16 bytes)."""
        ...

    def open(self, nonce: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
        """Authenticate and decrypt ``ciphertext || tag``.

        Raises :class:`lockbox.errors.IntegrityError` when the tag does not
        verify (wrong key, wrong AAD, or damaged bytes). No plaintext is
        released before authentication.
        """
        ...


@runtime_checkable
class AeadInto(Aead, Protocol):
    """An :class:`Aead` that also writes into a caller's buffer (optional: the CPython
    backend's has it; callers look for it with :func:`aead_into` and otherwise use
    ``seal``/``open`` and copy)."""

    def seal_into(self, nonce: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes,
                  out: bytearray | memoryview) -> None:
        """``seal`` written into ``out`` (exactly ``len(plaintext) + 16`` bytes, not
        overlapping ``plaintext``)."""
        ...

    def open_into(self, nonce: bytes, sealed: bytes | bytearray | memoryview, aad: bytes,
                  out: bytearray | memoryview) -> None:
        """``open`` written into ``out`` (exactly ``len(sealed) - 16`` bytes). On
        :class:`~lockbox.errors.IntegrityError` ``out`` holds no plaintext (zeroed)."""
        ...


def aead_into(aead: Aead) -> AeadInto | None:
    """``aead`` itself when it has ``seal_into`` and ``open_into``, else None."""
    if callable(getattr(aead, "seal_into", None)) and callable(getattr(aead, "open_into", None)):
        return aead  # type: ignore[return-value]
    return None


@runtime_checkable
class Hasher(Protocol):
    """An incremental BLAKE3 hash."""

    def update(self, data: bytes | bytearray | memoryview) -> object: ...

    def digest(self) -> bytes:
        """The 32-byte BLAKE3 hash of everything passed to update()."""
        ...


@runtime_checkable
class CryptoBackend(Protocol):
    """One implementation of the primitives (CPython: ``cryptography``; browser: JS/WASM)."""

    name: str

    def aead(self, key: bytes) -> Aead:
        """A ChaCha20-Poly1305 instance for a 32-byte key."""
        ...

    def argon2id(
        self, password: bytes, salt: bytes, *, time_cost: int, memory_kib: int,
        parallelism: int, length: int,
    ) -> bytes:
        """Raw Argon2id (v0x13) output of ``length`` bytes."""
        ...

    def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        """HKDF-SHA-256 (extract then expand)."""
        ...

    def mlkem1024_public_key(self, seed: bytes) -> bytes:
        """The 1568-byte encapsulation key of the key pair derived from a 64-byte seed."""
        ...

    def mlkem1024_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        """Return ``(shared_secret[32], ciphertext[1568])`` for an encapsulation key."""
        ...

    def mlkem1024_decapsulate(self, seed: bytes, ciphertext: bytes) -> bytes:
        """Return the 32-byte shared secret (implicit rejection on a bad ciphertext)."""
        ...

    def blake3(self) -> Hasher:
        """A fresh BLAKE3 hasher (default 32-byte output)."""
        ...

    def random_bytes(self, size: int) -> bytes:
        """``size`` bytes from a CSPRNG."""
        ...

    def ed25519_verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (64 bytes) is a valid Ed25519 signature of ``message`` by
        ``public_key`` (32 bytes), with libsodium's rules: S < L, a cofactorless check, and
        a public key or R that is a non-canonical encoding or a point of small order is
        refused. False, never an exception, for a bad signature or a key that is not a
        curve point; ValueError for wrong argument sizes."""
        ...

    def age_decrypt_passphrase(self, ciphertext: bytes, passphrase: str) -> bytes:
        """The plaintext of a binary age file encrypted to a passphrase (one scrypt
        stanza). Raises WrongKeyError (wrong passphrase), IntegrityError (header MAC or
        payload authentication failed, truncated payload), FormatError (not an age
        passphrase file), LimitExceededError (a work factor the library refuses)."""
        ...


class FrameJob(NamedTuple):
    """One sealed frame to open: ``aead.open(nonce, sealed, aad)``, then the caller's
    ``decode`` of the authenticated plaintext (see :func:`open_frames`)."""

    aead: Aead
    nonce: bytes
    sealed: bytes | memoryview
    aad: bytes


FrameResult = bytes | memoryview | LockboxError
Decode = Callable[[bytes], "bytes | memoryview"]


def open_frames(crypto: CryptoBackend, jobs: Sequence[FrameJob], decode: Decode,
                plain_limit: int) -> list[FrameResult]:
    """Authenticate and decode sealed frames, in order: ``decode(aead.open(...))`` of each.

    ``decode`` turns an authenticated frame plaintext into its payload (raising a
    :class:`~lockbox.errors.LockboxError` for a malformed one); ``plain_limit`` is the most
    payload bytes a frame may declare (a backend's own decoder uses it; ``decode`` must
    enforce it too). The result has one item per job until the first failure: the payload,
    or the error of that job (an :class:`~lockbox.errors.IntegrityError` for a tag that
    does not verify), which ends the list -- so a caller that checks the items in order and
    raises the first error it meets behaves exactly as the loop that opens, decodes and
    checks one frame after the other. No plaintext of a frame comes back unless its tag
    verified.

    A backend with an ``open_frames(jobs, decode, plain_limit)`` method does the work (the
    browser's: a pool of Web Workers); otherwise this loop does, in this thread."""
    batch = getattr(crypto, "open_frames", None)
    if batch is not None:
        out: list[FrameResult] = batch(jobs, decode, plain_limit)
        return out
    return open_frames_loop(jobs, decode)


def open_frames_loop(jobs: Sequence[FrameJob], decode: Decode) -> list[FrameResult]:
    """:func:`open_frames` one frame after the other (every backend's fallback)."""
    out: list[FrameResult] = []
    for job in jobs:
        try:
            out.append(decode(job.aead.open(job.nonce, job.sealed, job.aad)))
        except LockboxError as exc:
            out.append(exc)
            break
    return out


def check_size(value: bytes | bytearray | memoryview, size: int, what: str) -> None:
    """Argument check shared by every backend (a programming error: ValueError)."""
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(value)}")


def check_int(value: int, minimum: int, what: str, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{what} must be {bound}, got {value}")
