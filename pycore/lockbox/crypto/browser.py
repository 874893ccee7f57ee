"""The browser crypto backend: JS/WASM libraries called through ``pyodide.ffi``.

It runs inside Pyodide only (a Web Worker, or Node for the tests) and needs the site's
crypto bundle (``webapp/src/crypto-entry.mjs``, built by ``build.py`` into
``vendor/crypto.<hash>.mjs``) installed on the JS global object first::

    globalThis.lockboxCrypto = await (await import(manifest.entries.crypto)).init();

Primitives (the bundle's glue functions are synchronous once ``init()`` resolved):

* ChaCha20-Poly1305: libsodium ``crypto_aead_chacha20poly1305_ietf_encrypt/decrypt``;
  a failed tag check comes back as JS ``undefined`` and is raised as :class:`IntegrityError`.
* Argon2id: libsodium ``crypto_pwhash`` (``ALG_ARGON2ID13``; ``opslimit = t``,
  ``memlimit = m * 1024``) for everything a lockbox archive can hold (16-byte salt, p = 1:
  the format allows nothing else). Other parameters (salts of other sizes, p > 1, tags
  under 16 bytes), which libsodium refuses, still get the right answer (the conformance
  suite checks such vectors): hash-wasm's Argon2id when the call can wait for a Promise
  (JSPI, ``pyodide.ffi.can_run_sync()``: true under ``runPythonAsync`` in Chromium and in
  Node with ``--experimental-wasm-stack-switching``, but False in a Python restored from the
  site's memory snapshot, which is made without JSPI: ``boot-worker.mjs`` makes it say so),
  else @noble/hashes' synchronous pure-JS Argon2id (4-5x slower).
* HKDF-SHA-256: :mod:`lockbox.crypto.hkdf` (stdlib ``hmac``).
* ML-KEM-1024: @noble/post-quantum ``ml_kem1024`` (``keygen(d || z)``, ``encapsulate``,
  ``decapsulate``); a key failing the FIPS 203 modulus check raises :class:`FormatError`.
* BLAKE3: hash-wasm ``createBLAKE3`` (WASM); Python buffers reach it without a
  Python-side copy (the glue reads them through ``PyProxy.getBuffer``).
* Random bytes: ``crypto.getRandomValues`` (in pieces of at most 65,536 bytes).
* Frame batches: many sealed frames authenticated (libsodium) and their plaintext decoded
  (zstddec, the reference zstd decoder in WASM) in one call: :meth:`~BrowserCryptoBackend.
  open_frames` (in this thread, for :func:`lockbox.crypto.base.open_frames`), or
  :meth:`~BrowserCryptoBackend.start_open_frames` / :meth:`~BrowserCryptoBackend.
  finish_open_frames` (an async caller: a pool of module Workers started from the bundle
  itself does the work while Python goes on; the pipelined read of
  ``AsyncLockbox.iter_bytes`` and of the viewer's downloads uses them). Not
  JSPI's ``run_sync``: a Python restored from the site's memory snapshot cannot block on a
  promise (``can_run_sync()`` is False there), while an async caller can always await one.
  Results come back when the whole batch is done; a frame whose plaintext the bundle does
  not decode itself (anything but the common well-formed case) comes back authenticated
  but undecoded and is decoded by the caller's ``decode`` (the same errors as ever).
* Ed25519 verification: libsodium ``crypto_sign_verify_detached``.
* age passphrase decryption: age-encryption (typage) ``Decrypter.addPassphrase``, which
  is async (a Promise), awaited with JSPI (``run_sync``); it refuses scrypt work factors
  above 2^20. Without JSPI the same file is decrypted synchronously from primitives
  (:func:`lockbox.formats.sync.vault.decrypt_age_passphrase`: libsodium's scrypt
  ``crypto_pwhash_scryptsalsa208sha256_ll``, ChaCha20-Poly1305, HKDF, HMAC), same bound.

Importing this module outside Pyodide raises :class:`BackendUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lockbox.crypto.base import (
    AEAD_KEY_SIZE,
    AEAD_NONCE_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    MLKEM1024_CT_SIZE,
    MLKEM1024_EK_SIZE,
    MLKEM1024_SEED_SIZE,
    Aead,
    Decode,
    FrameJob,
    FrameResult,
    Hasher,
    check_int,
    check_size,
    open_frames_loop,
)
from lockbox.crypto.hkdf import hkdf_sha256
from lockbox.errors import (
    BackendUnavailableError,
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    WrongKeyError,
)

try:
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]
except ImportError as exc:
    raise BackendUnavailableError(
        f"the browser crypto backend runs only inside Pyodide: {exc}"
    ) from exc

try:  # JSPI helpers (Pyodide >= 0.27)
    from pyodide.ffi import can_run_sync, run_sync  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older Pyodide
    can_run_sync = run_sync = None

__all__ = ["BrowserCryptoBackend", "CRYPTO_GLOBAL", "BUNDLE_API_VERSION"]

CRYPTO_GLOBAL = "lockboxCrypto"  # globalThis name of the bundle's init() result
BUNDLE_API_VERSION = 3  # API_VERSION of crypto-entry.mjs this module speaks
_FRAME_FAILED, _FRAME_PAYLOAD, _FRAME_PLAIN = 0, 1, 2  # crypto-entry.mjs FRAME_*

_ARGON2_MAX_LANES = (1 << 24) - 1
_ARGON2_MIN_SALT = 8
_ARGON2_MIN_LENGTH = 4
_ARGON2_MAX_U32 = (1 << 32) - 1
# ageDecryptPassphrase's error kinds (crypto-entry.mjs) -> (class, message)
_AGE_ERRORS: dict[str, tuple[type[Exception], str]] = {
    "wrongkey": (WrongKeyError, "wrong passphrase for the age file"),
    "integrity": (IntegrityError, "the age file is damaged or truncated"),
    "format": (FormatError, "not a valid age passphrase file"),
    "limit": (LimitExceededError, "the age file's scrypt work factor is too large"),
}




def _bundle() -> Any:
    api = getattr(js, CRYPTO_GLOBAL, None)
    if api is None:
        raise BackendUnavailableError(
            f"the lockbox crypto bundle is not loaded: globalThis.{CRYPTO_GLOBAL} is missing "
            "(the worker must import vendor/crypto.<hash>.mjs and set the result of its "
            "init() there before Python uses the browser backend)"
        )
    version = getattr(api, "API_VERSION", None)
    if version != BUNDLE_API_VERSION:
        raise BackendUnavailableError(
            f"the crypto bundle speaks API version {version}, this lockbox needs "
            f"{BUNDLE_API_VERSION} (rebuild the site with build.py)"
        )
    return api


class _ChaCha20Poly1305Aead:
    """ChaCha20-Poly1305 (RFC 8439) bound to one key, on libsodium."""

    __slots__ = ("_api", "_key")

    def __init__(self, api: Any, key: bytes) -> None:
        check_size(key, AEAD_KEY_SIZE, "ChaCha20-Poly1305 key")
        self._api = api
        self._key = to_js(bytes(key))  # one JS Uint8Array, reused by every call

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        check_size(nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
        sealed: bytes = self._api.aeadSeal(self._key, nonce, plaintext, aad).to_bytes()
        return sealed

    def open(self, nonce: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
        check_size(nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
        opened = self._api.aeadOpen(self._key, nonce, sealed, aad)
        if opened is None:
            raise IntegrityError("ChaCha20-Poly1305 authentication failed")
        plaintext: bytes = opened.to_bytes()
        return plaintext


class _Blake3:
    """An incremental BLAKE3 hash on hash-wasm (the JS ``Blake3`` glue object)."""

    __slots__ = ("_h",)

    def __init__(self, js_hasher: Any) -> None:
        self._h = js_hasher

    def update(self, data: bytes | bytearray | memoryview) -> _Blake3:
        self._h.update(data)  # the glue reads the Python buffer in place
        return self

    def digest(self) -> bytes:
        out: bytes = self._h.digest().to_bytes()
        return out

    def hexdigest(self) -> str:
        return self.digest().hex()


class BrowserCryptoBackend:
    """:class:`lockbox.crypto.base.CryptoBackend` on the site's JS/WASM crypto bundle."""

    name = "browser"

    def __init__(self) -> None:
        self._api = _bundle()

    def aead(self, key: bytes) -> Aead:
        return _ChaCha20Poly1305Aead(self._api, key)

    def argon2id(
        self, password: bytes, salt: bytes, *, time_cost: int, memory_kib: int,
        parallelism: int, length: int,
    ) -> bytes:
        check_int(time_cost, 1, "Argon2id time_cost", _ARGON2_MAX_U32)
        check_int(parallelism, 1, "Argon2id parallelism", _ARGON2_MAX_LANES)
        check_int(memory_kib, 8 * parallelism, "Argon2id memory_kib", _ARGON2_MAX_U32)
        check_int(length, _ARGON2_MIN_LENGTH, "Argon2id length", _ARGON2_MAX_U32)
        if len(salt) < _ARGON2_MIN_SALT:
            raise ValueError(f"Argon2id salt must be at least {_ARGON2_MIN_SALT} bytes")
        engine = self.argon2id_engine(len(salt), time_cost=time_cost, memory_kib=memory_kib,
                                      parallelism=parallelism, length=length)
        args = (bytes(password), bytes(salt), time_cost, memory_kib, parallelism, length)
        try:
            if engine == "hash-wasm":
                tag = run_sync(self._api.argon2idAsync(*args))
            else:
                tag = self._api.argon2id(*args)
        except JsException as exc:  # e.g. the WASM heap cannot grow to memory_kib
            raise BackendUnavailableError(
                f"Argon2id (t={time_cost}, m={memory_kib} KiB, p={parallelism}) failed in "
                f"this browser: {exc}"
            ) from None
        out: bytes = tag.to_bytes()
        return out

    def argon2id_engine(self, salt_size: int, *, time_cost: int, memory_kib: int,
                        parallelism: int, length: int) -> str:
        """The library :meth:`argon2id` uses here: ``libsodium``, ``hash-wasm`` or ``noble``."""
        engine: str = self._api.argon2idEngine(salt_size, time_cost, memory_kib, parallelism,
                                               length)
        if engine == "libsodium":
            return engine
        if can_run_sync is not None and can_run_sync():
            return "hash-wasm"
        return "noble"

    def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        return hkdf_sha256(ikm, salt, info, length)

    def mlkem1024_public_key(self, seed: bytes) -> bytes:
        check_size(seed, MLKEM1024_SEED_SIZE, "ML-KEM-1024 seed")
        out: bytes = self._api.mlkemPublicKey(bytes(seed)).to_bytes()
        return out

    def mlkem1024_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        check_size(public_key, MLKEM1024_EK_SIZE, "ML-KEM-1024 encapsulation key")
        result = self._api.mlkemEncapsulate(bytes(public_key))
        if result is None:  # right size, so the FIPS 203 §7.2 modulus check failed
            raise FormatError("invalid ML-KEM-1024 encapsulation key")
        return result.sharedSecret.to_bytes(), result.cipherText.to_bytes()

    def mlkem1024_decapsulate(self, seed: bytes, ciphertext: bytes) -> bytes:
        check_size(seed, MLKEM1024_SEED_SIZE, "ML-KEM-1024 seed")
        check_size(ciphertext, MLKEM1024_CT_SIZE, "ML-KEM-1024 ciphertext")
        out: bytes = self._api.mlkemDecapsulate(bytes(seed), bytes(ciphertext)).to_bytes()
        return out

    def blake3(self) -> Hasher:
        return _Blake3(self._api.blake3())

    def open_frames(self, jobs: Sequence[FrameJob], decode: Decode,
                    plain_limit: int) -> list[FrameResult]:
        """:func:`lockbox.crypto.base.open_frames` in the bundle, in this thread (libsodium
        and zstddec in one call per batch). The worker pool needs an async caller:
        :meth:`start_open_frames` and :meth:`finish_open_frames`."""
        if not jobs or not all(isinstance(j.aead, _ChaCha20Poly1305Aead) for j in jobs):
            return open_frames_loop(jobs, decode)
        batch = self._frame_batch(jobs, plain_limit)
        batch.runHere()
        return self._frame_results(batch, len(jobs), decode)

    def start_open_frames(self, jobs: Sequence[FrameJob], plain_limit: int) -> Any:
        """Start opening ``jobs`` in the bundle's worker pool (in this thread when there is
        no pool, or for a single frame) and return at once: a handle for
        :meth:`finish_open_frames`. The frames' bytes are copied now."""
        if not jobs or not all(isinstance(j.aead, _ChaCha20Poly1305Aead) for j in jobs):
            return None
        batch = self._frame_batch(jobs, plain_limit)
        return batch, batch.run()

    async def finish_open_frames(self, handle: Any, jobs: Sequence[FrameJob], decode: Decode,
                                 plain_limit: int) -> list[FrameResult]:
        """The results of :meth:`start_open_frames` (as :func:`lockbox.crypto.base.open_frames`
        gives them), once every frame of the batch is done."""
        if handle is None:
            return open_frames_loop(jobs, decode)
        batch, promise = handle
        if str(await promise) == "broken":  # the pool failed (its frames went with it)
            batch = self._frame_batch(jobs, plain_limit)
            batch.runHere()
        return self._frame_results(batch, len(jobs), decode)

    def _frame_results(self, batch: Any, count: int, decode: Decode) -> list[FrameResult]:
        out: list[FrameResult] = []
        for i in range(count):
            status = batch.status(i)
            if status == _FRAME_FAILED:
                out.append(IntegrityError("ChaCha20-Poly1305 authentication failed"))
                break
            data: bytes = batch.bytes(i).to_bytes()
            if status == _FRAME_PAYLOAD:
                out.append(data)
                continue
            try:
                out.append(decode(data))
            except LockboxError as exc:
                out.append(exc)
                break
        return out

    def _frame_batch(self, jobs: Sequence[FrameJob], plain_limit: int) -> Any:
        batch = self._api.frameBatch(plain_limit)
        for job in jobs:
            aead = job.aead
            assert isinstance(aead, _ChaCha20Poly1305Aead)
            check_size(job.nonce, AEAD_NONCE_SIZE, "ChaCha20-Poly1305 nonce")
            batch.add(aead._key, job.nonce, job.sealed, job.aad)
        return batch

    def pool_info(self) -> dict[str, Any]:
        """The bundle's worker pool: ``{"size", "started", "broken"}`` (size 0: none)."""
        info: dict[str, Any] = self._api.poolInfo().to_py()
        return info

    def random_bytes(self, size: int) -> bytes:
        check_int(size, 0, "random_bytes size")
        if size == 0:
            return b""
        out: bytes = self._api.randomBytes(size).to_bytes()
        return out

    def ed25519_verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        check_size(public_key, ED25519_PUBLIC_KEY_SIZE, "Ed25519 public key")
        check_size(signature, ED25519_SIGNATURE_SIZE, "Ed25519 signature")
        return bool(self._api.ed25519Verify(bytes(public_key), bytes(message),
                                            bytes(signature)))

    def age_decrypt_passphrase(self, ciphertext: bytes, passphrase: str) -> bytes:
        if not isinstance(passphrase, str):
            raise TypeError("an age passphrase is a str")
        if run_sync is None or can_run_sync is None or not can_run_sync():
            from lockbox.formats.sync.vault import decrypt_age_passphrase

            return decrypt_age_passphrase(ciphertext, passphrase, scrypt=self._scrypt,
                                          crypto=self)
        try:
            result = run_sync(self._api.ageDecryptPassphrase(bytes(ciphertext), passphrase))
        except JsException as exc:  # e.g. out of memory in scrypt
            raise BackendUnavailableError(f"age decryption failed in this browser: {exc}"
                                          ) from None
        kind = str(result.kind)
        if kind == "ok":
            plaintext: bytes = result.plaintext.to_bytes()
            return plaintext
        cls, text = _AGE_ERRORS.get(kind, (IntegrityError, "age decryption failed"))
        raise cls(f"{text} ({result.message})")

    def age_engine(self) -> str:
        """What :meth:`age_decrypt_passphrase` uses here: ``age-encryption`` (JSPI) or
        ``primitives`` (synchronous: libsodium scrypt and ChaCha20-Poly1305)."""
        if run_sync is not None and can_run_sync is not None and can_run_sync():
            return "age-encryption"
        return "primitives"

    def _scrypt(self, password: bytes, salt: bytes, log_n: int) -> bytes:
        """scrypt(N = 2^log_n, r = 8, p = 1) to 32 bytes, on libsodium."""
        try:
            out: bytes = self._api.scrypt(bytes(password), bytes(salt), log_n, 32).to_bytes()
        except JsException as exc:  # the WASM heap cannot grow to 2^log_n KiB
            raise BackendUnavailableError(
                f"scrypt with N = 2^{log_n} failed in this browser: {exc}") from None
        return out
