"""did:key and base58btc (lockbox.formats.sync.didkey) against published vectors."""

from __future__ import annotations

import pytest

from lockbox.errors import FormatError
from lockbox.formats.sync.didkey import (
    b58decode,
    b58encode,
    did_key_from_public,
    public_from_did_key,
)

# Bitcoin Core's src/test/data/base58_encode_decode.json (hex, base58), plus one of the
# IETF draft's.
BASE58_VECTORS = [
    ("", ""),
    ("61", "2g"),
    ("626262", "a3gV"),
    ("636363", "aPEr"),
    ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    ("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ("516b6fcd0f", "ABnLTmg"),
    ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
    ("572e4794", "3EFU7m"),
    ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
    ("10c8511e", "Rt5zm"),
    ("00000000000000000000", "1111111111"),
    ("48656c6c6f20576f726c6421", "2NEpo7TZRRrLZSi2U"),  # draft-msporny-base58: "Hello World!"
]

# Published did:key <-> raw Ed25519 public key pairs:
# - the w3c-ccg did-method-key test vector for the all-zero seed (public key = RFC 8032's
#   public key of seed 00..00);
# - openwallet-foundation/acapy did tests (publicKeyBase58 8HH5gYEe...);
# - decentralized-identity DWN interop mock (publicKeyBase58 HrBXe7Xn...).
DID_VECTORS = [
    ("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
     "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"),
    ("did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th",
     "6c2d48b1605684ef94363dc6158eeb6577466e1a36a740f2fc624617edb7712e"),
    ("did:key:z6MkwJSaEMnE4u6LiqrZV1BJHSkc9x8S4mTm3ArNL1m19BZR",
     "fa545ad5b31815046c3e3a7311d66c55f9d4acf555c49810403ac3eace4e5e00"),
]


@pytest.mark.parametrize(("hex_bytes", "text"), BASE58_VECTORS)
def test_base58_vectors(hex_bytes: str, text: str) -> None:
    assert b58encode(bytes.fromhex(hex_bytes)) == text
    assert b58decode(text) == bytes.fromhex(hex_bytes)


def test_base58_publickeybase58_fields() -> None:
    # The same keys as DID_VECTORS 2 and 3, in their documents' publicKeyBase58 form.
    assert b58decode("8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K").hex() == DID_VECTORS[1][1]
    assert b58decode("HrBXe7XnjMbscM1roSDTSMCcLNraetDQM9wSVjnzDxn3").hex() == DID_VECTORS[2][1]


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc+", "a b", "é"])
def test_base58_refuses_characters_outside_the_alphabet(bad: str) -> None:
    with pytest.raises(FormatError, match="invalid base58 character"):
        b58decode(bad)


@pytest.mark.parametrize(("did", "hex_key"), DID_VECTORS)
def test_did_key_vectors(did: str, hex_key: str) -> None:
    assert did_key_from_public(bytes.fromhex(hex_key)) == did
    assert public_from_did_key(did) == bytes.fromhex(hex_key)


def test_roundtrip_with_leading_zero_bytes() -> None:
    for key in (bytes(32), b"\0\0" + bytes(range(1, 31)), b"\xff" * 32):
        assert public_from_did_key(did_key_from_public(key)) == key


@pytest.mark.parametrize(("did", "message"), [
    ("did:web:example.com", "must start with 'did:key:z'"),
    ("did:key:f6d6b65", "must start with 'did:key:z'"),  # another multibase
    ("did:key:z", "too short"),
    ("did:key:z0abc", "invalid base58 character"),
    # multicodec 0xec01 (x25519-pub) with 32 bytes: a key, but not an Ed25519 one
    ("did:key:" + "z" + b58encode(b"\xec\x01" + bytes(32)), "not an Ed25519 key"),
    ("did:key:z" + b58encode(b"\xed\x01" + bytes(31)), "31-byte key"),
    ("did:key:z" + b58encode(b"\xed\x01" + bytes(33)), "33-byte key"),
    ("did:key:z" + "2" * 300, "too long"),
])
def test_bad_did_keys(did: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        public_from_did_key(did)


def test_did_key_from_public_checks_the_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        did_key_from_public(bytes(31))
