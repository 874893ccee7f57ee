"""The ``cryptography`` backend: the shared conformance suite plus CPython-only checks."""

from __future__ import annotations

import pytest

from lockbox.crypto.hkdf import hkdf_sha256
from lockbox.errors import BackendUnavailableError

from .conformance import HKDF_RFC5869_VECTORS, CryptoBackendConformance

try:
    from lockbox.crypto.cpython import CryptographyBackend
except BackendUnavailableError as exc:  # pragma: no cover - cryptography is a dependency
    pytest.skip(f"cryptography backend unavailable: {exc}", allow_module_level=True)

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id


class TestCryptographyBackend(CryptoBackendConformance):
    @pytest.fixture
    def backend(self) -> CryptographyBackend:
        return CryptographyBackend()


def test_name() -> None:
    assert CryptographyBackend.name == "cryptography"


def test_argon2id_rfc9106_vector_through_cryptography() -> None:
    # RFC 9106 §5.3 (Argon2id, v=0x13): it needs a secret and associated data, which the
    # lockbox protocol does not have, so it is checked on cryptography's Argon2id directly.
    kdf = Argon2id(salt=b"\x02" * 16, length=32, iterations=3, lanes=4, memory_cost=32,
                   ad=b"\x04" * 12, secret=b"\x03" * 8)
    tag = kdf.derive(b"\x01" * 32)
    assert tag.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def _cryptography_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if length == 0:
        return b""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None,
                info=info).derive(ikm)


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), HKDF_RFC5869_VECTORS)
def test_stdlib_hkdf_matches_cryptography_on_rfc_vectors(ikm: bytes, salt: bytes,
                                                         info: bytes, length: int,
                                                         okm: bytes) -> None:
    backend = CryptographyBackend()
    assert (hkdf_sha256(ikm, salt, info, length) == backend.hkdf_sha256(ikm, salt, info, length)
            == _cryptography_hkdf(ikm, salt, info, length) == okm)


def test_stdlib_hkdf_matches_cryptography_on_varied_inputs() -> None:
    """The backend's HKDF (the standard library's HMAC) against cryptography's."""
    backend = CryptographyBackend()
    checked = 0
    for length in (0, 1, 16, 32, 33, 64, 65, 255, 1000, 255 * 32):
        for salt in (b"", b"s", bytes(32), bytes(range(64)), bytes(200)):
            for info in (b"", b"lockbox v1 key", bytes(300)):
                ikm = bytes([length % 256]) * (length % 97 + 1)
                assert (backend.hkdf_sha256(ikm, salt, info, length)
                        == _cryptography_hkdf(ikm, salt, info, length))
                checked += 1
    assert checked == 150


def test_aead_tag_error_is_not_cryptography_exception() -> None:
    from cryptography.exceptions import InvalidTag

    from lockbox.errors import IntegrityError

    aead = CryptographyBackend().aead(bytes(32))
    with pytest.raises(IntegrityError) as info:
        aead.open(bytes(12), bytes(16), b"")
    assert not isinstance(info.value, InvalidTag)
    assert info.value.__cause__ is None  # translated at the boundary, nothing foreign chained


def test_seal_into_and_open_into_match_seal_and_open() -> None:
    import os

    from lockbox.errors import IntegrityError

    aead = CryptographyBackend().aead(bytes(range(32)))
    nonce, aad = b"\x07" * 12, b"header"
    for size in (0, 1, 1000, 1 << 20):
        plain = os.urandom(size)
        sealed = aead.seal(nonce, plain, aad)
        out = bytearray(size + 16)
        aead.seal_into(nonce, memoryview(plain), aad, memoryview(out))  # type: ignore[attr-defined]
        assert bytes(out) == sealed
        back = bytearray(size)
        aead.open_into(nonce, memoryview(out), aad, back)  # type: ignore[attr-defined]
        assert bytes(back) == plain == aead.open(nonce, sealed, aad)
    with pytest.raises(ValueError):
        aead.seal_into(nonce, b"abc", aad, bytearray(18))  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        aead.open_into(nonce, sealed, aad, bytearray(3))  # type: ignore[attr-defined]
    tampered = bytearray(aead.seal(nonce, b"secret data", aad))
    tampered[0] ^= 1
    back = bytearray(b"x" * 11)
    with pytest.raises(IntegrityError):
        aead.open_into(nonce, tampered, aad, back)  # type: ignore[attr-defined]
    assert back == bytes(11)  # nothing unauthenticated is left behind


def test_frame_seal_into_is_seal_and_backends_without_it_fall_back() -> None:
    from lockbox.codec.zstd import ZstdCodec
    from lockbox.formats.lbox.frames import FrameSealer
    from lockbox.formats.lbox.wire.constants import FRAME_OVERHEAD, FrameKind

    backend = CryptographyBackend()
    key, archive_id = bytes(32), b"\x01" * 16
    plain = b"\x00\x05hello"
    sealers = [FrameSealer(backend, ZstdCodec(), archive_id, key) for _ in range(2)]
    sealers[1].session_id = sealers[0].session_id
    sealers[1]._aead = sealers[0]._aead
    sealers[1]._into = None  # a backend without seal_into (the browser's)
    frame, ref = sealers[0].seal(FrameKind.DATA_CHUNK, 3, 4096, plain)
    for sealer in sealers:
        sealer.counter = 0
        out = bytearray(FRAME_OVERHEAD + len(plain))
        assert sealer.seal_into(FrameKind.DATA_CHUNK, 3, 4096, plain, memoryview(out)) == ref
        assert bytes(out) == frame
    with pytest.raises(ValueError):
        sealers[0].seal_into(FrameKind.DATA_CHUNK, 3, 4096, plain, memoryview(bytearray(5)))


def test_aead_into_finds_the_optional_methods() -> None:
    from lockbox.crypto.base import AeadInto, aead_into

    aead = CryptographyBackend().aead(bytes(32))
    assert aead_into(aead) is aead and isinstance(aead, AeadInto)

    class SealOpenOnly:  # the browser's: seal and open only
        def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
            return aead.seal(nonce, plaintext, aad)

        def open(self, nonce: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
            return aead.open(nonce, sealed, aad)

    assert aead_into(SealOpenOnly()) is None


def test_fast_paths_are_the_public_api_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend takes ChaCha20-Poly1305 and the ML-KEM constructors from cryptography's
    Rust module (sparing imports): the same class, and the same keys, secrets and errors
    as through the public API (the fallback when those names are missing)."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from lockbox.crypto import cpython
    from lockbox.errors import FormatError

    assert cpython._ChaCha20Poly1305 is ChaCha20Poly1305
    assert cpython._RUST_MLKEM is not None  # this install's cryptography has the fast path
    backend = CryptographyBackend()
    seed = os.urandom(64)
    fast_ek = backend.mlkem1024_public_key(seed)
    ss, ct = backend.mlkem1024_encapsulate(fast_ek)
    with pytest.raises(FormatError):
        backend.mlkem1024_encapsulate(b"\xff" * len(fast_ek))
    monkeypatch.setattr(cpython, "_RUST_MLKEM", None)
    assert backend.mlkem1024_public_key(seed) == fast_ek
    assert backend.mlkem1024_decapsulate(seed, ct) == ss
    ss2, ct2 = backend.mlkem1024_encapsulate(fast_ek)
    monkeypatch.undo()
    assert backend.mlkem1024_decapsulate(seed, ct2) == ss2
    monkeypatch.setattr(cpython, "_RUST_MLKEM", None)
    with pytest.raises(FormatError):
        backend.mlkem1024_encapsulate(b"\xff" * len(fast_ek))
