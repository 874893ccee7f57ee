"""The CPython crypto backend, on the ``cryptography`` package (OpenSSL).

Importing this module raises :class:`lockbox.errors.BackendUnavailableError`
when ``cryptography`` (or a version of it with ML-KEM and Argon2id) is not
installed, e.g. inside Pyodide.
"""

from __future__ import annotations

import os
from typing import Any

from lockbox.crypto.base import (
    AEAD_KEY_SIZE,
    AEAD_NONCE_SIZE,
    AEAD_TAG_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    MLKEM1024_CT_SIZE,
    MLKEM1024_EK_SIZE,
    MLKEM1024_SEED_SIZE,
    AeadInto,
    Hasher,
    check_int,
    check_size,
)
from lockbox.crypto.hkdf import hkdf_sha256
from lockbox.errors import (
    BackendUnavailableError,
    FormatError,
    IntegrityError,
    LimitExceededError,
    TruncatedError,
    WrongKeyError,
)

_blake3: Any = None
_pyrage: Any = None

# Imported here: what every use needs (the exceptions load cryptography's Rust module, and
# with it OpenSSL). Each primitive's own module is imported on its first use (Argon2id,
# HKDF, Ed25519 and the rest are not needed to create or read a public-key archive).
try:
    from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl
except ImportError as exc:  # missing
    raise BackendUnavailableError(
        f"the 'cryptography' crypto backend is not available: {exc}"
    ) from exc


def _public_api_check() -> None:
    """ML-KEM and Argon2id must be there (a version too old has neither). Their public
    modules re-export the Rust module's: when it has both, they are there."""
    if hasattr(_rust_openssl, "mlkem") and hasattr(getattr(_rust_openssl, "kdf", None),
                                                   "Argon2id"):
        return
    try:
        from cryptography.hazmat.primitives.asymmetric import mlkem  # noqa: F401
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: F401
    except ImportError as exc:  # too old for ML-KEM / Argon2id
        raise BackendUnavailableError(
            f"the 'cryptography' crypto backend is not available: {exc}"
        ) from exc


_public_api_check()

# ``cryptography.hazmat.primitives.ciphers.aead.ChaCha20Poly1305`` IS the Rust module's
# class (aead.py re-exports it); taking it from there spares importing the ciphers package
# (block modes, algorithms) that the re-export drags in. The ML-KEM key constructors
# of ``...asymmetric.mlkem`` import the whole OpenSSL "backend" module (RSA, EC, padding,
# ~3 ms) only to ask ``backend.mlkem_supported()``, which reads these three Rust flags:
# with them set, the Rust functions are called directly. Every fast path falls back to the
# public API when a name is missing (tests/crypto/test_cpython.py pins them equal).
_ChaCha20Poly1305: Any = getattr(getattr(_rust_openssl, "aead", None), "ChaCha20Poly1305",
                                 None)
if _ChaCha20Poly1305 is None:  # pragma: no cover - another cryptography layout
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305 as _ChaCha20Poly1305
_RUST_MLKEM: Any = getattr(_rust_openssl, "mlkem", None) if any(
    getattr(_rust_openssl, flag, False) for flag in (
        "CRYPTOGRAPHY_IS_AWSLC", "CRYPTOGRAPHY_IS_BORINGSSL",
        "CRYPTOGRAPHY_OPENSSL_350_OR_GREATER")) else None


def _mlkem_from_seed(seed: bytes) -> Any:
    fast = getattr(_RUST_MLKEM, "from_mlkem1024_seed_bytes", None)
    if fast is not None:
        return fast(seed)
    from cryptography.hazmat.primitives.asymmetric import mlkem

    return mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed)


def _mlkem_public_from_bytes(public_key: bytes) -> Any:
    fast = getattr(_RUST_MLKEM, "from_mlkem1024_public_bytes", None)
    if fast is not None:
        return fast(public_key)
    from cryptography.hazmat.primitives.asymmetric import mlkem

    return mlkem.MLKEM1024PublicKey.from_public_bytes(public_key)


__all__ = ["CryptographyBackend"]

_HKDF_MAX_LENGTH = 255 * 32
# Ed25519 points libsodium's crypto_sign_verify_detached refuses as a public key or as R
# (so both backends give one verdict): non-canonical encodings (y >= p) and the eight
# points of small order, whose y is one of these (the two order-8 y values solve
# d*y^4 + 2*y^2 - 1 = 0). OpenSSL alone would accept, e.g., the identity as a key with
# R = identity, S = 0 for every message.
_ED25519_P = 2**255 - 19
_ED25519_SMALL_ORDER_Y = frozenset({
    0, 1, _ED25519_P - 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
})
_ARGON2_MAX_LANES = (1 << 24) - 1
_ARGON2_MIN_SALT = 8
_ARGON2_MIN_LENGTH = 4

# pyrage (rage) error messages -> our classes. rage reports a failed scrypt unwrap (wrong
# passphrase, or a damaged wrapped key: the two cannot be told apart) as "Decryption
# failed"; payload (STREAM) failures and truncation come back as I/O errors.
# tests/crypto/conformance.py and tests/formats/sync/test_vault.py pin them with real files.
_AGE_MAGIC = b"age-encryption.org/v1\n"
_AGE_ERRORS: tuple[tuple[str, type[Exception], str], ...] = (
    ("decryption failed", WrongKeyError, "wrong passphrase for the age file"),
    ("failed to decrypt an encrypted key", WrongKeyError, "wrong passphrase for the age file"),
    ("no matching keys", FormatError, "the age file is not encrypted to a passphrase"),
    ("header mac is invalid", IntegrityError, "the age header MAC does not verify"),
    ("excessive work", LimitExceededError, "the age file's scrypt work factor is too large"),
    ("header is invalid", FormatError, "not a valid age header"),
    ("incomplete header", FormatError, "the age header is cut short"),
    ("unknown age format", FormatError, "not an age file"),
)


def _age_error(exc: Exception) -> Exception:
    message = str(exc)
    lowered = message.lower()
    for needle, cls, text in _AGE_ERRORS:
        if needle in lowered:
            return cls(f"{text} ({message})")
    return IntegrityError(f"the age payload is damaged or truncated ({message})")


def _weak_ed25519_point(encoding: bytes) -> bool:
    y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)
    return y >= _ED25519_P or y in _ED25519_SMALL_ORDER_Y


def _unavailable(exc: UnsupportedAlgorithm, what: str) -> BackendUnavailableError:
    return BackendUnavailableError(f"{what} is not supported by this OpenSSL build: {exc}")


class _ChaCha20Poly1305Aead:
    """ChaCha20-Poly1305 (RFC 8439) bound to one key; one cipher object per instance."""

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes) -> None:
        check_size(key, AEAD_KEY_SIZE, "ChaCha20-Poly1305 key")
        self._cipher = _ChaCha20Poly1305(key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        check_size(nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
        return self._cipher.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
        check_size(nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
        try:
            return self._cipher.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise IntegrityError("ChaCha20-Poly1305 authentication failed") from None

    def seal_into(self, nonce: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes,
                  out: bytearray | memoryview) -> None:
        """:meth:`seal` written into ``out`` (exactly ``len(plaintext) + 16`` bytes, not
        overlapping ``plaintext``): no new buffer per frame."""
        check_size(nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
        if len(out) != len(plaintext) + AEAD_TAG_SIZE:
            raise ValueError("seal_into: out must be len(plaintext) + 16 bytes")
        self._cipher.encrypt_into(nonce, plaintext, aad, out)

    def open_into(self, nonce: bytes, sealed: bytes | bytearray | memoryview, aad: bytes,
                  out: bytearray | memoryview) -> None:
        """:meth:`open` written into ``out`` (exactly ``len(sealed) - 16`` bytes). On
        IntegrityError ``out`` holds no plaintext that may be used (it is zeroed)."""
        check_size(nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
        if len(sealed) < AEAD_TAG_SIZE or len(out) != len(sealed) - AEAD_TAG_SIZE:
            raise ValueError("open_into: out must be len(sealed) - 16 bytes")
        try:
            self._cipher.decrypt_into(nonce, sealed, aad, out)
        except InvalidTag:
            memoryview(out).cast("B")[:] = bytes(len(out))
            raise IntegrityError("ChaCha20-Poly1305 authentication failed") from None


class CryptographyBackend:
    """:class:`lockbox.crypto.base.CryptoBackend` on ``cryptography``."""

    name = "cryptography"

    def aead(self, key: bytes) -> AeadInto:
        return _ChaCha20Poly1305Aead(key)

    def argon2id(
        self, password: bytes, salt: bytes, *, time_cost: int, memory_kib: int,
        parallelism: int, length: int,
    ) -> bytes:
        check_int(time_cost, 1, "Argon2id time_cost")
        check_int(parallelism, 1, "Argon2id parallelism", _ARGON2_MAX_LANES)
        check_int(memory_kib, 8 * parallelism, "Argon2id memory_kib")
        check_int(length, _ARGON2_MIN_LENGTH, "Argon2id length")
        if len(salt) < _ARGON2_MIN_SALT:
            raise ValueError(f"Argon2id salt must be at least {_ARGON2_MIN_SALT} bytes")
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        try:
            kdf = Argon2id(
                salt=salt, length=length, iterations=time_cost, lanes=parallelism,
                memory_cost=memory_kib,
            )
        except UnsupportedAlgorithm as exc:
            raise _unavailable(exc, "Argon2id") from exc
        return kdf.derive(password)

    def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        """RFC 5869 on the standard library's HMAC-SHA-256 (OpenSSL's, through hashlib):
        the few short derivations lockbox makes cost less than building cryptography's
        ``HKDF`` object, and need none of its modules (tests/crypto/test_cpython.py
        checks it against cryptography's HKDF)."""
        check_int(length, 0, "HKDF-SHA-256 length", _HKDF_MAX_LENGTH)
        return hkdf_sha256(ikm, salt, info, length)

    def _mlkem_private(self, seed: bytes) -> Any:
        check_size(seed, MLKEM1024_SEED_SIZE, "ML-KEM-1024 seed")
        try:
            return _mlkem_from_seed(seed)
        except UnsupportedAlgorithm as exc:
            raise _unavailable(exc, "ML-KEM-1024") from exc

    def mlkem1024_public_key(self, seed: bytes) -> bytes:
        return self._mlkem_private(seed).public_key().public_bytes_raw()

    def mlkem1024_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        check_size(public_key, MLKEM1024_EK_SIZE, "ML-KEM-1024 encapsulation key")
        try:
            key = _mlkem_public_from_bytes(public_key)
        except UnsupportedAlgorithm as exc:
            raise _unavailable(exc, "ML-KEM-1024") from exc
        except ValueError as exc:  # right size, so the FIPS 203 §7.2 modulus check failed
            raise FormatError("invalid ML-KEM-1024 encapsulation key") from exc
        shared_secret, ciphertext = key.encapsulate()
        return shared_secret, ciphertext

    def mlkem1024_decapsulate(self, seed: bytes, ciphertext: bytes) -> bytes:
        check_size(ciphertext, MLKEM1024_CT_SIZE, "ML-KEM-1024 ciphertext")
        return self._mlkem_private(seed).decapsulate(ciphertext)

    def blake3(self) -> Hasher:
        global _blake3
        if _blake3 is None:
            try:
                from blake3 import blake3 as _b3
            except ImportError as exc:
                raise BackendUnavailableError(
                    "the 'blake3' package is needed for content hashes (pip install blake3)"
                ) from exc
            _blake3 = _b3
        hasher: Hasher = _blake3()
        return hasher

    def random_bytes(self, size: int) -> bytes:
        check_int(size, 0, "random_bytes size")
        return os.urandom(size)

    def ed25519_verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        check_size(public_key, ED25519_PUBLIC_KEY_SIZE, "Ed25519 public key")
        check_size(signature, ED25519_SIGNATURE_SIZE, "Ed25519 signature")
        if _weak_ed25519_point(bytes(public_key)) or _weak_ed25519_point(bytes(signature[:32])):
            return False
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
            key.verify(bytes(signature), bytes(message))
        except (InvalidSignature, ValueError):
            return False
        except UnsupportedAlgorithm as exc:
            raise _unavailable(exc, "Ed25519") from exc
        return True

    def age_decrypt_passphrase(self, ciphertext: bytes, passphrase: str) -> bytes:
        global _pyrage
        if _pyrage is None:
            try:
                import pyrage
            except ImportError as exc:
                raise BackendUnavailableError(
                    "the 'pyrage' package is needed for age vault payloads (pip install pyrage)"
                ) from exc
            _pyrage = pyrage
        if not isinstance(passphrase, str):
            raise TypeError("an age passphrase is a str")
        data = bytes(ciphertext)
        if not data.startswith(_AGE_MAGIC):  # rage would report a short read
            raise FormatError("not an age file (no 'age-encryption.org/v1' line)")
        mac_line = data.find(b"\n--- ")
        if mac_line < 0 or data.find(b"\n", mac_line + 5) < 0:  # idem
            raise TruncatedError("the age header is cut short")
        try:
            plaintext: bytes = _pyrage.passphrase.decrypt(data, passphrase)
        except _pyrage.DecryptError as exc:
            raise _age_error(exc) from None
        return plaintext
