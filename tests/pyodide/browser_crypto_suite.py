"""Inside Pyodide: the shared crypto conformance suite on :class:`BrowserCryptoBackend`.

Run by tests/pyodide/harness.py (not collected by the CPython pytest run: the file name
does not start with ``test_``, and it imports ``js``).
"""

from __future__ import annotations

import hashlib

import js  # type: ignore[import-not-found]
import pytest

from crypto.conformance import CryptoBackendConformance
from lockbox.crypto.browser import BrowserCryptoBackend
from lockbox.platform import IS_BROWSER, default_crypto


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
