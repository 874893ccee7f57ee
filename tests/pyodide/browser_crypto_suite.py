"""Inside Pyodide: the shared crypto conformance suite on :class:`BrowserCryptoBackend`.

Run by tests/pyodide/harness.py (not collected by the CPython pytest run: the file name
does not start with ``test_``, and it imports ``js``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import js  # type: ignore[import-not-found]
import pytest

from crypto.conformance import CryptoBackendConformance
from lockbox.crypto.browser import BrowserCryptoBackend
from lockbox.errors import IntegrityError, WrongKeyError
from lockbox.platform import IS_BROWSER, default_crypto

SYNC_VECTORS = Path(__file__).resolve().parents[1] / "formats" / "sync" / "vectors"


@pytest.fixture(scope="module")
def browser_backend() -> BrowserCryptoBackend:
    return BrowserCryptoBackend()


class TestBrowserCryptoBackend(CryptoBackendConformance):
    """Every test of the shared suite, unchanged."""

    @pytest.fixture
    def backend(self, browser_backend: BrowserCryptoBackend) -> BrowserCryptoBackend:
        return browser_backend


def test_platform_picks_the_browser_backend() -> None:
    assert IS_BROWSER
    assert isinstance(default_crypto(), BrowserCryptoBackend)
    assert default_crypto().name == "browser"


def test_argon2id_engines(browser_backend: BrowserCryptoBackend) -> None:
    """Archive parameters (16-byte salt, p = 1) take libsodium; the rest hash-wasm (JSPI)."""
    engine = browser_backend.argon2id_engine
    assert engine(16, time_cost=3, memory_kib=65536, parallelism=1, length=32) == "libsodium"
    assert engine(8, time_cost=3, memory_kib=65536, parallelism=1, length=32) == "hash-wasm"
    assert engine(16, time_cost=3, memory_kib=256, parallelism=2, length=32) == "hash-wasm"
    assert engine(16, time_cost=1, memory_kib=64, parallelism=1, length=8) == "hash-wasm"


def _noble(password: bytes, salt: bytes, t: int, m: int, p: int, length: int) -> bytes:
    opts = js.Object.fromEntries([["t", t], ["m", m], ["p", p], ["dkLen", length]])
    out: bytes = js.lockboxCrypto.libs.nobleArgon2id(
        js.Uint8Array.new(password), js.Uint8Array.new(salt), opts).to_bytes()
    return out


@pytest.mark.parametrize(("t", "m"), [(1, 8), (2, 64), (3, 1024)])
def test_argon2id_libsodium_equals_noble(browser_backend: BrowserCryptoBackend, t: int,
                                         m: int) -> None:
    password, salt = b"lockbox", bytes(range(16))
    ours = browser_backend.argon2id(password, salt, time_cost=t, memory_kib=m, parallelism=1,
                                    length=32)
    assert ours == _noble(password, salt, t, m, 1, 32)


@pytest.mark.parametrize(("salt", "p", "length"), [(b"somesalt", 1, 32), (bytes(16), 2, 32),
                                                   (bytes(24), 1, 8)])
def test_argon2id_synchronous_fallback(browser_backend: BrowserCryptoBackend,
                                       monkeypatch: pytest.MonkeyPatch, salt: bytes, p: int,
                                       length: int) -> None:
    """Without JSPI the non-libsodium parameters go to noble, with the same answer."""
    import lockbox.crypto.browser as module

    kwargs = dict(time_cost=2, memory_kib=256, parallelism=p, length=length)
    with_jspi = browser_backend.argon2id(b"password", salt, **kwargs)
    monkeypatch.setattr(module, "can_run_sync", lambda: False)
    assert browser_backend.argon2id_engine(len(salt), **kwargs) == "noble"
    assert browser_backend.argon2id(b"password", salt, **kwargs) == with_jspi
    assert with_jspi == _noble(b"password", salt, 2, 256, p, length)


def test_aead_accepts_every_buffer_type(browser_backend: BrowserCryptoBackend) -> None:
    aead = browser_backend.aead(bytearray(range(32)))
    nonce = bytes(12)
    data = bytes(range(256)) * 300
    sealed = aead.seal(nonce, data, b"aad")
    for kind in (bytes, bytearray, memoryview):
        assert aead.open(kind(nonce), kind(sealed), kind(b"aad")) == data
        assert aead.seal(kind(nonce), kind(data), kind(b"aad")) == sealed
    view = memoryview(b"xx" + sealed + b"yy")[2:-2]  # a slice with an offset
    assert aead.open(nonce, view, b"aad") == data


def test_blake3_interleaved_hashers(browser_backend: BrowserCryptoBackend) -> None:
    """Hashers share one WASM instance; their states must not leak into each other."""
    vectors = dict(CryptoBackendConformance.BLAKE3_VECTORS)
    inputs = {n: bytes(i % 251 for i in range(n)) for n in (1023, 4097, 7169)}
    hashers = {n: browser_backend.blake3() for n in inputs}
    for start in range(0, 7169, 500):
        for n, h in hashers.items():
            h.update(inputs[n][start:start + 500])
        if start == 3000:
            assert hashers[1023].digest().hex() == vectors[1023]
    for n, h in hashers.items():
        assert h.digest().hex() == vectors[n]


def test_blake3_digest_then_update(browser_backend: BrowserCryptoBackend) -> None:
    data = bytes(i % 251 for i in range(5000))
    h = browser_backend.blake3()
    h.update(data[:1000])
    first = h.digest()
    assert h.digest() == first  # digest does not finalize
    h.update(data[1000:])
    whole = browser_backend.blake3()
    whole.update(data)
    assert h.digest() == whole.digest()
    part = browser_backend.blake3()
    part.update(data[:1000])
    assert part.digest() == first


def test_random_bytes_large(browser_backend: BrowserCryptoBackend) -> None:
    out = browser_backend.random_bytes(200_000)  # several getRandomValues calls
    assert len(out) == 200_000
    assert hashlib.sha256(out[:65536]).digest() != hashlib.sha256(out[65536:131072]).digest()
    assert out[-65536:].count(0) < 1000


# -- .sync: age vaults and Ed25519 signatures in the browser ----------------------------------


def _typage_encrypt(plaintext: bytes, passphrase: str, log_n: int) -> bytes:
    from pyodide.ffi import run_sync  # type: ignore[import-not-found]

    out: bytes = run_sync(js.lockboxCrypto.ageEncryptPassphrase(
        js.Uint8Array.new(plaintext), passphrase, log_n)).to_bytes()
    return out


@pytest.mark.parametrize("size", [0, 1, 65536, 200_001])
def test_age_roundtrip_with_age_encryption(browser_backend: BrowserCryptoBackend,
                                           size: int) -> None:
    plaintext = bytes(i % 251 for i in range(size))
    ciphertext = _typage_encrypt(plaintext, "pässwörd", 2)
    assert browser_backend.age_decrypt_passphrase(ciphertext, "pässwörd") == plaintext
    with pytest.raises(WrongKeyError):
        browser_backend.age_decrypt_passphrase(ciphertext, "passwörd")
    with pytest.raises(IntegrityError):
        browser_backend.age_decrypt_passphrase(ciphertext[:-1], "pässwörd")


def test_decrypt_vault_in_the_browser() -> None:
    from lockbox.errors import LimitExceededError
    from lockbox.formats.sync.vault import decrypt_vault

    data = (SYNC_VECTORS / "age-lockbox-2chunks.age").read_bytes()  # written by CPython
    plaintext = decrypt_vault(data, "pässwörd ✓")
    assert plaintext == bytes(i % 251 for i in range(65537))
    with pytest.raises(LimitExceededError):
        decrypt_vault(data, "pässwörd ✓", max_scrypt_log_n=2)


def test_age_without_jspi_uses_primitives(browser_backend: BrowserCryptoBackend,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without JSPI: the same answers (every vector, and the damage verdicts) from
    libsodium's scrypt and ChaCha20-Poly1305, synchronously."""
    import lockbox.crypto.browser as module
    from lockbox.errors import LimitExceededError

    assert browser_backend.age_engine() == "age-encryption"
    big = _typage_encrypt(bytes(range(256)) * 300, "pw", 2)  # two chunks, by typage
    monkeypatch.setattr(module, "can_run_sync", lambda: False)
    assert browser_backend.age_engine() == "primitives"
    for vector in json.loads((SYNC_VECTORS / "age.json").read_text(encoding="utf-8")):
        data = (SYNC_VECTORS / vector["file"]).read_bytes()
        plaintext = browser_backend.age_decrypt_passphrase(data, vector["passphrase"])
        assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext_sha256"]
    assert browser_backend.age_decrypt_passphrase(big, "pw") == bytes(range(256)) * 300
    with pytest.raises(WrongKeyError):
        browser_backend.age_decrypt_passphrase(big, "PW")
    for damaged in (big[:-1], big[:-100] + bytes(100), big + b"\0"):
        with pytest.raises(IntegrityError):
            browser_backend.age_decrypt_passphrase(damaged, "pw")
    lines = big.split(b"\n")
    lines[1] = lines[1].rsplit(b" ", 1)[0] + b" 21"
    with pytest.raises(LimitExceededError):
        browser_backend.age_decrypt_passphrase(b"\n".join(lines), "pw")


def test_scrypt_glue_matches_openssl(browser_backend: BrowserCryptoBackend) -> None:
    # RFC 7914's vectors use r or p other than age's (8, 1): this is CPython's
    # hashlib.scrypt(b"pw", salt=bytes(16), n=1024, r=8, p=1, dklen=32) (OpenSSL).
    out = browser_backend._scrypt(b"pw", bytes(16), 10)
    assert out.hex() == "7fafdfc47bd53fde03b5650415c480edc2c2a4e0ce0a3c7d705087f08d395a88"


def test_signature_vectors_verify_in_the_browser() -> None:
    from lockbox.formats.sync.manifest import Manifest
    from lockbox.formats.sync.signing import DetachedSignature, verify_detached, verify_embedded

    vectors = json.loads((SYNC_VECTORS / "signatures.json").read_text(encoding="utf-8"))
    manifest = Manifest.parse(vectors["signed_manifest_toml"].encode())
    assert manifest.canonical_json() == vectors["canonical_json"].encode()

    def b3(data: bytes) -> bytes:
        h = default_crypto().blake3()
        h.update(data)
        return h.digest()

    payload = vectors["payload_utf8"].encode()
    status = verify_embedded(manifest, b3(payload))
    assert status.valid and status.signer == vectors["did"]
    assert verify_embedded(manifest, b3(payload + b"x")).reason == "payload hash mismatch"
    tampered = manifest.replace(ttl=1)
    assert verify_embedded(tampered, b3(payload)).reason == "manifest hash mismatch"
    detached = DetachedSignature.from_json(vectors["detached"]["json"])
    file_bytes = bytes.fromhex(vectors["detached"]["file_hex"])
    assert verify_detached(detached, b3(file_bytes)).valid
    assert verify_detached(detached, b3(file_bytes[:-1])).reason == "content hash mismatch"
