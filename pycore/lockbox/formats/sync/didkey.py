"""did:key identifiers for Ed25519 public keys, and the base58btc they are written in.

``did:key:z`` + base58btc(``0xed 0x01`` + the 32-byte key) (W3C did:key method; ``z`` is
the multibase prefix of base58btc, ``0xed 0x01`` the varint multicodec ``ed25519-pub``).
base58btc is the Bitcoin alphabet: each leading zero byte is one ``1``, the rest is the
big-endian number in base 58. No package for it is pinned in lockbox, and it is small.
"""

from __future__ import annotations

from ...errors import FormatError

__all__ = [
    "B58_ALPHABET", "DID_KEY_PREFIX", "ED25519_MULTICODEC", "ED25519_PUBLIC_KEY_SIZE",
    "MAX_DID_SIZE", "b58encode", "b58decode", "did_key_from_public", "public_from_did_key",
]

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
DID_KEY_PREFIX = "did:key:z"
ED25519_MULTICODEC = b"\xed\x01"
ED25519_PUBLIC_KEY_SIZE = 32
MAX_DID_SIZE = 256  # an Ed25519 did:key is 56 characters; bounds the bignum work
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """base58btc (Bitcoin alphabet) of ``data``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """The bytes of a base58btc string. Raises FormatError naming the first bad character."""
    number = 0
    for pos, char in enumerate(text):
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise FormatError(f"invalid base58 character {char!r} at position {pos}")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def did_key_from_public(public_key: bytes) -> str:
    """The did:key of a 32-byte Ed25519 public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {ED25519_PUBLIC_KEY_SIZE} bytes, "
                         f"got {len(public_key)}")
    return DID_KEY_PREFIX + b58encode(ED25519_MULTICODEC + bytes(public_key))


def public_from_did_key(did: str) -> bytes:
    """The 32-byte Ed25519 public key of a did:key, checked as sync-rs checks it
    (``did:key:z`` prefix, base58btc, multicodec ``0xed 0x01``, 32 key bytes).
    Raises FormatError saying which part is wrong."""
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise FormatError("a did:key must start with 'did:key:z' (base58btc multibase)")
    if len(did) > MAX_DID_SIZE:
        raise FormatError(f"did:key too long ({len(did)} characters)")
    try:
        decoded = b58decode(did[len(DID_KEY_PREFIX):])
    except FormatError as exc:
        raise FormatError(f"did:key: {exc}") from None
    if len(decoded) < len(ED25519_MULTICODEC):
        raise FormatError("did:key too short")
    if decoded[:2] != ED25519_MULTICODEC:
        raise FormatError(f"did:key is not an Ed25519 key (multicodec 0x{decoded[:2].hex()}, "
                          "expected 0xed01)")
    key = decoded[2:]
    if len(key) != ED25519_PUBLIC_KEY_SIZE:
        raise FormatError(f"did:key holds a {len(key)}-byte key, an Ed25519 key is "
                          f"{ED25519_PUBLIC_KEY_SIZE} bytes")
    return key
