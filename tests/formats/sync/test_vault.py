"""Vault payloads (lockbox.formats.sync.vault): age passphrase files, the header check and
the scrypt bound before any key derivation, the error for each kind of damage, and
interoperability with pyrage (rage) and age-encryption (typage) files."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pyrage
import pytest

from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    TruncatedError,
    UsageError,
    WrongKeyError,
)
from lockbox.formats.sync.vault import (
    DEFAULT_MAX_SCRYPT_LOG_N,
    decrypt_age_passphrase,
    decrypt_vault,
    encrypt_vault,
    parse_age_header,
    scrypt_work_factor,
)
from lockbox.platform import default_crypto

VECTORS_DIR = Path(__file__).parent / "vectors"
AGE_VECTORS = json.loads((VECTORS_DIR / "age.json").read_text(encoding="utf-8"))
LOG_N = 2  # tests never pay for real work factors


class RefusingCrypto:
    """A backend that must not be asked to decrypt (the header check comes first)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(default_crypto(), name)

    def age_decrypt_passphrase(self, ciphertext: bytes, passphrase: str) -> bytes:
        raise AssertionError("age_decrypt_passphrase was called")


def _vault(plaintext: bytes = b"secret rows\n", passphrase: str = "pw") -> bytes:
    return encrypt_vault(plaintext, passphrase, scrypt_log_n=LOG_N)


def _with_log_n(ciphertext: bytes, log_n: str) -> bytes:
    lines = ciphertext.split(b"\n")
    parts = lines[1].split(b" ")
    assert parts[:2] == [b"->", b"scrypt"]
    lines[1] = b" ".join([*parts[:3], log_n.encode()])
    return b"\n".join(lines)


# --- round trips and interop -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 131072, 200_001])
def test_roundtrip_through_pyrage(size: int) -> None:
    plaintext = bytes(i % 251 for i in range(size))
    ciphertext = encrypt_vault(plaintext, "pässwörd", scrypt_log_n=LOG_N)
    assert pyrage.passphrase.decrypt(ciphertext, "pässwörd") == plaintext  # rage reads it
    assert decrypt_vault(ciphertext, "pässwörd") == plaintext
    chunks = max(1, -(-size // 65536))
    header = parse_age_header(ciphertext)
    assert len(ciphertext) == header.size + 16 + size + 16 * chunks


@pytest.mark.parametrize("vector", AGE_VECTORS, ids=[v["file"] for v in AGE_VECTORS])
def test_vectors_from_both_writers(vector: dict[str, Any]) -> None:
    data = (VECTORS_DIR / vector["file"]).read_bytes()
    assert scrypt_work_factor(parse_age_header(data)) == vector["scrypt_log_n"]
    plaintext = decrypt_vault(data, vector["passphrase"])
    assert len(plaintext) == vector["plaintext_size"]
    assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext_sha256"]
    with pytest.raises(WrongKeyError):
        decrypt_vault(data, vector["passphrase"] + "x")


def test_encrypt_layout() -> None:
    ciphertext = _vault()
    header = parse_age_header(ciphertext)
    assert [s.type for s in header.stanzas] == ["scrypt"]
    assert scrypt_work_factor(header) == LOG_N
    assert ciphertext.startswith(b"age-encryption.org/v1\n-> scrypt ")
    assert _vault() != ciphertext  # fresh file key, salt and nonce each time
    default = encrypt_vault(b"x", "pw")
    assert scrypt_work_factor(parse_age_header(default)) == 18  # age's default


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"passphrase": ""}, "non-empty"),
    ({"passphrase": b"pw"}, "non-empty text"),
    ({"scrypt_log_n": 0}, "scrypt_log_n must be in 1..20"),
    ({"scrypt_log_n": 21}, "scrypt_log_n must be in 1..20"),
    ({"scrypt_log_n": True}, "scrypt_log_n"),
])
def test_encrypt_refuses(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"passphrase": "pw", "scrypt_log_n": LOG_N, **kwargs}
    with pytest.raises(UsageError, match=message):
        encrypt_vault(b"x", args.pop("passphrase"), **args)


# --- errors ------------------------------------------------------------------------------------


def test_wrong_passphrase() -> None:
    with pytest.raises(WrongKeyError, match="wrong passphrase"):
        decrypt_vault(_vault(), "PW")
    with pytest.raises(UsageError):
        decrypt_vault(_vault(), b"pw")  # type: ignore[arg-type]


def test_damaged_payload_and_header() -> None:
    ciphertext = _vault(bytes(70000))
    header = parse_age_header(ciphertext)
    for pos in (header.size + 3, header.size + 16 + 100, len(ciphertext) - 1):
        damaged = bytearray(ciphertext)
        damaged[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            decrypt_vault(bytes(damaged), "pw")
    for cut in (1, 17, len(ciphertext) - header.size - 16 - 65536 - 16):
        with pytest.raises(IntegrityError):  # payload cut short (a chunk, the last chunk)
            decrypt_vault(ciphertext[:-cut], "pw")
    with pytest.raises(IntegrityError):  # payload gone: the nonce alone
        decrypt_vault(ciphertext[:header.size + 16], "pw")
    with pytest.raises(IntegrityError):  # an extra byte after the final chunk
        decrypt_vault(ciphertext + b"\0", "pw")
    # the header MAC: flip a bit inside the base64 of the MAC
    mac_line_start = ciphertext.rindex(b"\n--- ", 0, header.size) + 5
    damaged = bytearray(ciphertext)
    damaged[mac_line_start] = ord("A") if damaged[mac_line_start] != ord("A") else ord("B")
    with pytest.raises((IntegrityError, FormatError)):
        decrypt_vault(bytes(damaged), "pw")


def test_header_mac_covers_the_header() -> None:
    ciphertext = _vault()
    mac = parse_age_header(ciphertext).mac
    forged_mac = base64.b64encode(bytes(b ^ 1 for b in mac)).rstrip(b"=")
    head, _, rest = ciphertext.partition(b"\n--- ")
    line_end = rest.index(b"\n")
    forged = head + b"\n--- " + forged_mac + rest[line_end:]
    with pytest.raises(IntegrityError, match="MAC"):
        decrypt_vault(forged, "pw")


def test_damaged_wrapped_key_reads_as_a_wrong_passphrase() -> None:
    ciphertext = bytearray(_vault())
    body_at = ciphertext.index(b"\n", len(b"age-encryption.org/v1\n")) + 1
    ciphertext[body_at] = ord("A") if ciphertext[body_at] != ord("A") else ord("B")
    with pytest.raises(WrongKeyError):
        decrypt_vault(bytes(ciphertext), "pw")


def test_work_factor_bounded_before_decryption() -> None:
    ciphertext = _with_log_n(_vault(), "40")  # 2^40 KiB = 1 PiB of scrypt memory
    with pytest.raises(LimitExceededError, match=r"2\^40 \(1 PiB of memory\), above the "
                                                 r"limit 2\^20"):
        decrypt_vault(ciphertext, "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]
    with pytest.raises(LimitExceededError, match=r"2\^99999999999999999999 \(2\^9+ KiB of "):
        decrypt_vault(_with_log_n(_vault(), "9" * 20), "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]
    with pytest.raises(LimitExceededError, match=r"2\^60 \(1048576 PiB"):
        decrypt_vault(_with_log_n(_vault(), "60"), "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]
    with pytest.raises(LimitExceededError, match=r"2\^21 \(2 GiB"):
        decrypt_vault(_with_log_n(_vault(), "21"), "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]
    with pytest.raises(LimitExceededError, match=r"limit 2\^1 \(raise it with --max-scrypt-log-n "):
        decrypt_vault(_vault(), "pw", max_scrypt_log_n=1, crypto=RefusingCrypto())  # type: ignore[arg-type]
    assert DEFAULT_MAX_SCRYPT_LOG_N == 20
    # at the bound exactly, the backend is asked (its answer: the MAC no longer matches
    # the edited header, as the log_n is inside what the MAC covers)
    with pytest.raises((IntegrityError, WrongKeyError)):
        decrypt_vault(_with_log_n(_vault(), "3"), "pw", max_scrypt_log_n=3)


@pytest.mark.parametrize(("log_n", "message"), [
    ("0", "bad scrypt work factor"), ("07", "bad scrypt work factor"),
    ("-1", "bad scrypt work factor"), ("x", "bad scrypt work factor"),
    ("1" * 21, "bad scrypt work factor"),
])
def test_bad_work_factor_spelling(log_n: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decrypt_vault(_with_log_n(_vault(), log_n), "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]


def test_not_a_passphrase_file() -> None:
    identity = pyrage.x25519.Identity.generate()
    to_key = pyrage.encrypt(b"data", [identity.to_public()])
    with pytest.raises(FormatError, match=r"not encrypted to a passphrase \(age recipient "
                                          r"stanzas: .*X25519"):
        decrypt_vault(to_key, "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]
    # the backend says the same when asked directly
    with pytest.raises(FormatError, match="not encrypted to a passphrase"):
        default_crypto().age_decrypt_passphrase(to_key, "pw")


@pytest.mark.parametrize(("data", "error", "message"), [
    (b"", TruncatedError, "cut short"),
    (b"age-encryption.org", TruncatedError, "cut short"),
    (b"age-encryption.org/v1\n-> scrypt abc", TruncatedError, "cut short"),
    (b"PK\x03\x04", FormatError, "not an age file"),
    (b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", FormatError, "ASCII-armored"),
    (b"age-encryption.org/v1\nhello\n", FormatError, "unexpected line at byte 22"),
    (b"age-encryption.org/v1\n-> \n\n--- " + b"A" * 43 + b"\n", FormatError,
     "malformed stanza arguments"),
    (b"age-encryption.org/v1\n-> X25519 a\n" + b"A" * 65 + b"\n", FormatError,
     "body line too long"),
    (b"age-encryption.org/v1\n-> X25519 a\nAB=\n--- " + b"A" * 43 + b"\n", FormatError,
     "not unpadded base64"),
    (b"age-encryption.org/v1\n-> X25519 a\nAB\n--- " + b"A" * 43 + b"\n", FormatError,
     "not canonical base64"),
    (b"age-encryption.org/v1\n--- " + b"A" * 42 + b"\n", FormatError, "MAC is not 32 bytes"),
    (b"age-encryption.org/v1\n" + b"-> a b\n\n" * 10000, FormatError, "longer than 65536"),
])
def test_malformed_headers(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decrypt_vault(data, "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]


def _scrypt_header(args: str, body: bytes = bytes(32), extra: str = "") -> bytes:
    body_text = base64.b64encode(body).rstrip(b"=")
    return (b"age-encryption.org/v1\n-> scrypt " + args.encode() + b"\n" + body_text + b"\n"
            + extra.encode() + b"--- " + b"A" * 43 + b"\n")


SALT = base64.b64encode(bytes(16)).rstrip(b"=").decode()


@pytest.mark.parametrize(("data", "message"), [
    (_scrypt_header(f"{SALT} 2", extra="-> X25519 abc\nAAAA\n"), "must be the only stanza"),
    (_scrypt_header(SALT), "takes a salt and a work factor"),
    (_scrypt_header(f"{SALT} 2 extra"), "takes a salt and a work factor"),
    (_scrypt_header("AAAA 2"), "salt is not 16 bytes"),
    (_scrypt_header(f"{SALT} 2", body=bytes(31)), "body is not 32 bytes"),
])
def test_malformed_scrypt_stanzas(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decrypt_vault(data, "pw", crypto=RefusingCrypto())  # type: ignore[arg-type]


def test_body_wrapping_at_64_characters() -> None:
    # a 48-byte body is exactly 64 base64 characters: age then ends it with an empty line
    body = bytes(range(48))
    text = base64.b64encode(body)
    data = (b"age-encryption.org/v1\n-> test a\n" + text + b"\n\n--- " + b"A" * 43 + b"\n")
    header = parse_age_header(data)
    assert header.stanzas[0].body == body and header.stanzas[0].args == ("a",)
    assert header.size == len(data)
    without_empty_line = data.replace(text + b"\n\n", text + b"\n")
    with pytest.raises(FormatError, match=r"unpadded base64|not base64|unexpected line"):
        parse_age_header(without_empty_line)


# --- the CPython backend's own error mapping (pyrage messages -> error classes) ----------------


def test_backend_maps_pyrage_errors() -> None:
    from lockbox.crypto.cpython import CryptographyBackend

    backend = CryptographyBackend()
    with pytest.raises(LimitExceededError, match="work factor"):  # rage's own ceiling
        backend.age_decrypt_passphrase(_with_log_n(_vault(), "40"), "pw")
    with pytest.raises(FormatError):
        backend.age_decrypt_passphrase(b"PK\x03\x04 not age", "pw")
    with pytest.raises(FormatError):
        backend.age_decrypt_passphrase(b"age-encryption.org/v1\n-> scr", "pw")
    with pytest.raises(WrongKeyError):
        backend.age_decrypt_passphrase(_vault(), "wrong")
    ciphertext = _vault(b"abc")
    with pytest.raises(IntegrityError):
        backend.age_decrypt_passphrase(ciphertext[:-1], "pw")
    with pytest.raises(TypeError):
        backend.age_decrypt_passphrase(ciphertext, b"pw")  # type: ignore[arg-type]


# --- the synchronous age decryption from primitives (the browser's path without JSPI) ----------


def _hashlib_scrypt(password: bytes, salt: bytes, log_n: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=1 << log_n, r=8, p=1, dklen=32)


def _from_primitives(ciphertext: bytes, passphrase: str) -> bytes:
    return decrypt_age_passphrase(ciphertext, passphrase, scrypt=_hashlib_scrypt,
                                  crypto=default_crypto())


def _from_backend(ciphertext: bytes, passphrase: str) -> bytes:
    return default_crypto().age_decrypt_passphrase(ciphertext, passphrase)  # pyrage


DECRYPTORS = [pytest.param(_from_primitives, id="primitives"),
              pytest.param(_from_backend, id="pyrage")]
_TWO_CHUNKS = encrypt_vault(bytes(70000), "pw", scrypt_log_n=LOG_N)
_HEADER = parse_age_header(_TWO_CHUNKS)
_SEALED = 65536 + 16


def _flip_at(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x01
    return bytes(out)


def _forge_mac(data: bytes) -> bytes:
    pos = _HEADER.mac_line_offset + 4
    return data[:pos] + (b"A" if data[pos:pos + 1] != b"A" else b"B") + data[pos + 1:]


def _damage_wrapped_key(data: bytes) -> bytes:
    pos = data.index(b"\n", len(b"age-encryption.org/v1\n")) + 1
    return data[:pos] + (b"A" if data[pos:pos + 1] != b"A" else b"B") + data[pos + 1:]


DAMAGE = [
    pytest.param(_TWO_CHUNKS, "PW", WrongKeyError, id="wrong-passphrase"),
    pytest.param(_damage_wrapped_key(_TWO_CHUNKS), "pw", WrongKeyError, id="wrapped-key"),
    pytest.param(_forge_mac(_TWO_CHUNKS), "pw", IntegrityError, id="header-mac"),
    pytest.param(_flip_at(_TWO_CHUNKS, _HEADER.size + 3), "pw", IntegrityError, id="nonce"),
    pytest.param(_flip_at(_TWO_CHUNKS, _HEADER.size + 16 + 5), "pw", IntegrityError,
                 id="first-chunk"),
    pytest.param(_flip_at(_TWO_CHUNKS, len(_TWO_CHUNKS) - 1), "pw", IntegrityError,
                 id="last-chunk"),
    pytest.param(_TWO_CHUNKS[:-1], "pw", IntegrityError, id="cut-1-byte"),
    pytest.param(_TWO_CHUNKS[:_HEADER.size + 16 + _SEALED], "pw", IntegrityError,
                 id="cut-at-chunk-boundary"),
    pytest.param(_TWO_CHUNKS + b"\0", "pw", IntegrityError, id="extra-byte"),
    pytest.param(_TWO_CHUNKS[:_HEADER.size + 16], "pw", IntegrityError, id="nonce-only"),
    pytest.param(_TWO_CHUNKS[:_HEADER.size + 7], "pw", IntegrityError, id="nonce-cut"),
    pytest.param(_TWO_CHUNKS[:_HEADER.size - 1], "pw", TruncatedError, id="header-cut"),
]


@pytest.mark.parametrize("decrypt", DECRYPTORS)
@pytest.mark.parametrize(("data", "passphrase", "error"), DAMAGE)
def test_both_decryptors_give_the_same_verdicts(decrypt: Any, data: bytes, passphrase: str,
                                                error: type[Exception]) -> None:
    with pytest.raises(error):
        decrypt(data, passphrase)


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_empty_final_chunk_after_a_full_one(decrypt: Any) -> None:
    # 65536 bytes: one full chunk that is the final one. Re-sealing is impossible without
    # the key, so append a 16-byte "empty chunk" instead: both refuse it.
    data = encrypt_vault(bytes(65536), "pw", scrypt_log_n=LOG_N)
    assert decrypt(data, "pw") == bytes(65536)
    with pytest.raises(IntegrityError):
        decrypt(data + bytes(16), "pw")


@pytest.mark.parametrize("vector", AGE_VECTORS, ids=[v["file"] for v in AGE_VECTORS])
def test_primitives_read_the_vectors(vector: dict[str, Any]) -> None:
    plaintext = _from_primitives((VECTORS_DIR / vector["file"]).read_bytes(),
                                 vector["passphrase"])
    assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext_sha256"]
