"""HKDF-SHA-256 (RFC 5869) on the standard library alone.

For backends whose native library has no HKDF (the browser). ``hmac.digest``
is implemented in C on CPython and in Pyodide, so this is fast enough for the
few short derivations lockbox performs.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["HKDF_SHA256_MAX_LENGTH", "hkdf_sha256"]

_HASH_LEN = hashlib.sha256().digest_size  # 32
HKDF_SHA256_MAX_LENGTH = 255 * _HASH_LEN  # 8160 octets (RFC 5869 §2.3)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Extract then HKDF-Expand with SHA-256; an empty salt means HashLen zeros."""
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError("length must be an int")
    if not 0 <= length <= HKDF_SHA256_MAX_LENGTH:
        raise ValueError(
            f"HKDF-SHA-256 length must be in 0..{HKDF_SHA256_MAX_LENGTH}, got {length}"
        )
    prk = hmac.digest(bytes(salt) or bytes(_HASH_LEN), ikm, "sha256")
    info = bytes(info)
    blocks: list[bytes] = []
    block = b""
    for counter in range(1, -(-length // _HASH_LEN) + 1):
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        blocks.append(block)
    return b"".join(blocks)[:length]
