"""The pure-stdlib HKDF-SHA-256 (used by backends without a native one)."""

from __future__ import annotations

import pytest

from lockbox.crypto.hkdf import HKDF_SHA256_MAX_LENGTH, hkdf_sha256

from .conformance import HKDF_RFC5869_VECTORS


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), HKDF_RFC5869_VECTORS)
def test_rfc5869_vectors(ikm: bytes, salt: bytes, info: bytes, length: int, okm: bytes) -> None:
    assert hkdf_sha256(ikm, salt, info, length) == okm


def test_max_length() -> None:
    assert HKDF_SHA256_MAX_LENGTH == 255 * 32
    out = hkdf_sha256(b"ikm", b"salt", b"info", HKDF_SHA256_MAX_LENGTH)
    assert len(out) == HKDF_SHA256_MAX_LENGTH
    assert hkdf_sha256(b"ikm", b"salt", b"info", 42) == out[:42]
    assert hkdf_sha256(b"ikm", b"salt", b"info", 0) == b""


@pytest.mark.parametrize("length", [HKDF_SHA256_MAX_LENGTH + 1, 10**6, -1])
def test_rejects_bad_length(length: int) -> None:
    with pytest.raises(ValueError):
        hkdf_sha256(b"ikm", b"salt", b"info", length)


def test_rejects_non_int_length() -> None:
    with pytest.raises(TypeError):
        hkdf_sha256(b"ikm", b"salt", b"info", 42.0)  # type: ignore[arg-type]


def test_accepts_bytes_like() -> None:
    expected = hkdf_sha256(b"ikm", b"salt", b"info", 42)
    assert hkdf_sha256(bytearray(b"ikm"), memoryview(b"salt"), bytearray(b"info"), 42) == expected
