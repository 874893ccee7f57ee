"""Vault payloads of ``.sync`` containers: age (age-encryption.org/v1) files encrypted to a
passphrase (one scrypt stanza).

Decryption goes through the crypto backend (``age_decrypt_passphrase``: pyrage on
CPython, age-encryption in the browser). Before that, the age header is read here, just
enough to find the scrypt stanza and its work factor (log2 N), which is bounded:
scrypt costs 2^log_n KiB of memory (r = 8), so a hostile vault naming log_n = 30
would ask for 1 TiB. The default bound, :data:`DEFAULT_MAX_SCRYPT_LOG_N` = 20 (1 GiB,
about a second or several), is the one age-encryption itself enforces in the browser, so
a vault that opens on the command line opens in the viewer too; age writes 18 by default.

Encryption (:func:`encrypt_vault`, CPython) writes the age format with ``cryptography``'s
primitives rather than pyrage: pyrage has no work-factor parameter (it calibrates scrypt
to about one second, which gives 19 to 21 on current machines: above the browser's
limit, and slow for tests). The output is checked against pyrage and age-encryption
(tests/formats/sync/test_vault.py, the crypto conformance vectors).

Errors: FormatError (not an age file, armored, not a passphrase file, a malformed
stanza; TruncatedError for a header cut short), LimitExceededError (work factor above the
bound), WrongKeyError (wrong passphrase: also what a damaged wrapped key looks like),
IntegrityError (header MAC or payload authentication failed, payload cut short).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ...crypto.base import CryptoBackend
from ...crypto.hkdf import hkdf_sha256
from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    TruncatedError,
    UsageError,
    WrongKeyError,
)

__all__ = [
    "AGE_MAGIC", "DEFAULT_MAX_SCRYPT_LOG_N", "DEFAULT_SCRYPT_LOG_N", "MAX_AGE_HEADER_SIZE",
    "AgeStanza", "AgeHeader", "parse_age_header", "scrypt_work_factor", "decrypt_vault",
    "encrypt_vault", "ScryptFunction", "decrypt_age_passphrase",
]

AGE_MAGIC = b"age-encryption.org/v1\n"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
DEFAULT_MAX_SCRYPT_LOG_N = 20
DEFAULT_SCRYPT_LOG_N = 18      # age's own default
MAX_AGE_HEADER_SIZE = 64 * 1024  # a passphrase header is ~150 bytes; recipient lists more
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_LINE_CHARS = 64               # body lines are wrapped at 64 base64 characters
_CHUNK_SIZE = 64 * 1024        # STREAM plaintext chunk
_TAG_SIZE = 16
_NONCE_SIZE = 16
_FILE_KEY_SIZE = 16
_MAC_SIZE = 32
_LOG_N = re.compile(rb"[1-9][0-9]{0,19}")
_ARG = re.compile(rb"[\x21-\x7e]+")


@dataclass(frozen=True)
class AgeStanza:
    """One recipient stanza: ``-> type args...`` and its body."""

    type: str
    args: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class AgeHeader:
    stanzas: tuple[AgeStanza, ...]
    size: int          # bytes from the start up to and including the MAC line's LF
    mac: bytes
    mac_line_offset: int  # where "--- " starts: the MAC covers the bytes before, and "---"


def _b64_nopad(text: bytes, what: str) -> bytes:
    """age's base64: standard alphabet, no padding, canonical."""
    if b"=" in text or len(text) % 4 == 1:
        raise FormatError(f"age header: {what} is not unpadded base64")
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"age header: {what} is not base64") from None
    if base64.b64encode(raw).rstrip(b"=") != text:
        raise FormatError(f"age header: {what} is not canonical base64")
    return raw


def parse_age_header(data: bytes | bytearray | memoryview) -> AgeHeader:
    """Read an age v1 binary header (pure; FormatError with one line on anything else)."""
    head = bytes(data[:MAX_AGE_HEADER_SIZE])
    if not head.startswith(AGE_MAGIC):
        if head.startswith(ARMOR_BEGIN):
            raise FormatError("the vault payload is an ASCII-armored age file; .sync vaults "
                              "hold binary age")
        if AGE_MAGIC.startswith(head):
            raise TruncatedError("the vault payload is cut short inside its age header")
        raise FormatError("the vault payload is not an age file (it must start with "
                          "'age-encryption.org/v1')")
    pos = len(AGE_MAGIC)
    stanzas: list[AgeStanza] = []
    while True:
        end = head.find(b"\n", pos)
        if end < 0:
            if len(head) >= MAX_AGE_HEADER_SIZE:
                raise FormatError(f"age header longer than {MAX_AGE_HEADER_SIZE} bytes")
            raise TruncatedError("the vault payload is cut short inside its age header")
        line = head[pos:end]
        if line.startswith(b"--- "):
            mac = _b64_nopad(line[4:], "the header MAC")
            if len(mac) != _MAC_SIZE:
                raise FormatError("age header: the MAC is not 32 bytes")
            return AgeHeader(tuple(stanzas), end + 1, mac, pos)
        if not line.startswith(b"-> "):
            raise FormatError(f"age header: unexpected line at byte {pos}")
        args = line[3:].split(b" ")
        if not all(_ARG.fullmatch(a) for a in args):
            raise FormatError(f"age header: malformed stanza arguments at byte {pos}")
        pos = end + 1
        body_lines: list[bytes] = []
        while True:  # body: full 64-character lines, then one shorter (maybe empty) line
            end = head.find(b"\n", pos)
            if end < 0:
                if len(head) >= MAX_AGE_HEADER_SIZE:
                    raise FormatError(f"age header longer than {MAX_AGE_HEADER_SIZE} bytes")
                raise TruncatedError("the vault payload is cut short inside its age header")
            body_line = head[pos:end]
            if len(body_line) > _LINE_CHARS:
                raise FormatError(f"age header: stanza body line too long at byte {pos}")
            body_lines.append(body_line)
            pos = end + 1
            if len(body_line) < _LINE_CHARS:
                break
        body = _b64_nopad(b"".join(body_lines), "a stanza body")
        decoded = tuple(a.decode("ascii") for a in args)
        stanzas.append(AgeStanza(decoded[0], decoded[1:], body))


def scrypt_work_factor(header: AgeHeader) -> int:
    """log2 N of the header's scrypt stanza, checked as age checks it (the only stanza,
    a 16-byte salt, a decimal without leading zeros, a 32-byte body). FormatError for a
    file that is not encrypted to a passphrase."""
    kinds = [s.type for s in header.stanzas]
    if "scrypt" not in kinds:
        names = sorted({k[:24] for k in kinds})
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "none"
        raise FormatError(f"the vault payload is not encrypted to a passphrase (age "
                          f"recipient stanzas: {shown})")
    if len(kinds) != 1:
        raise FormatError("age header: a scrypt stanza must be the only stanza")
    stanza = header.stanzas[0]
    if len(stanza.args) != 2:
        raise FormatError("age header: the scrypt stanza takes a salt and a work factor")
    salt = _b64_nopad(stanza.args[0].encode("ascii"), "the scrypt salt")
    if len(salt) != 16:
        raise FormatError("age header: the scrypt salt is not 16 bytes")
    if not _LOG_N.fullmatch(stanza.args[1].encode("ascii")):
        raise FormatError(f"age header: bad scrypt work factor {stanza.args[1][:20]!r}")
    if len(stanza.body) != _FILE_KEY_SIZE + _TAG_SIZE:
        raise FormatError("age header: the scrypt stanza body is not 32 bytes")
    return int(stanza.args[1])


def decrypt_vault(ciphertext: bytes | bytearray | memoryview, passphrase: str, *,
                  max_scrypt_log_n: int = DEFAULT_MAX_SCRYPT_LOG_N,
                  crypto: CryptoBackend | None = None) -> bytes:
    """The plaintext of a vault payload. The header is checked and the scrypt work factor
    bounded (LimitExceededError above ``max_scrypt_log_n``) before any key derivation."""
    if not isinstance(passphrase, str):
        raise UsageError("a vault passphrase is text (str)")
    log_n = scrypt_work_factor(parse_age_header(ciphertext))
    if log_n > max_scrypt_log_n:
        raise LimitExceededError(
            f"the vault's scrypt work factor is 2^{log_n} ({_memory(log_n)} of memory), "
            f"above the limit 2^{max_scrypt_log_n} (raise it with --max-scrypt-log-n "
            f"{log_n} if you trust the file)")
    if crypto is None:
        from ...platform import default_crypto

        crypto = default_crypto()
    return crypto.age_decrypt_passphrase(bytes(ciphertext), passphrase)


def _memory(log_n: int) -> str:
    """scrypt's memory, 128 * r * N bytes = 2^log_n KiB with r = 8, for a message."""
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    index = min(log_n // 10, len(units) - 1)
    if log_n - 10 * index > 20:
        return f"2^{log_n} KiB"
    return f"{1 << (log_n - 10 * index)} {units[index]}"


def _wrap_b64(raw: bytes) -> bytes:
    text = base64.b64encode(raw).rstrip(b"=")
    lines = [text[i:i + _LINE_CHARS] for i in range(0, len(text), _LINE_CHARS)]
    if not lines or len(lines[-1]) == _LINE_CHARS:
        lines.append(b"")  # the last body line is always shorter than 64 characters
    return b"\n".join(lines) + b"\n"


def encrypt_vault(plaintext: bytes | bytearray | memoryview, passphrase: str, *,
                  scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N) -> bytes:
    """A binary age file of ``plaintext`` for ``passphrase`` (CPython: ``cryptography``).

    age v1 (age-encryption.org/v1): a random 16-byte file key wrapped with
    ChaCha20-Poly1305 under scrypt(passphrase, "age-encryption.org/v1/scrypt" || salt,
    N = 2^scrypt_log_n, r = 8, p = 1); the header MAC is HMAC-SHA-256 under
    HKDF-SHA-256(file key, "", "header"); the payload is STREAM: a 16-byte nonce, then
    64 KiB chunks sealed with ChaCha20-Poly1305 under HKDF-SHA-256(file key, nonce,
    "payload"), nonce = 11-byte big-endian counter || last-chunk flag.
    """
    if not isinstance(passphrase, str) or not passphrase:
        raise UsageError("a vault passphrase is non-empty text (str)")
    if isinstance(scrypt_log_n, bool) or not isinstance(scrypt_log_n, int) or \
            not 1 <= scrypt_log_n <= DEFAULT_MAX_SCRYPT_LOG_N:
        raise UsageError(f"scrypt_log_n must be in 1..{DEFAULT_MAX_SCRYPT_LOG_N}")
    try:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    except ImportError as exc:
        from ...errors import BackendUnavailableError

        raise BackendUnavailableError(f"writing a vault needs 'cryptography': {exc}") from exc
    file_key = os.urandom(_FILE_KEY_SIZE)
    salt = os.urandom(16)
    wrap_key = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << scrypt_log_n, r=8,
                      p=1).derive(passphrase.encode("utf-8"))
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    salt_text = base64.b64encode(salt).rstrip(b"=")
    header = (AGE_MAGIC + b"-> scrypt " + salt_text + b" " + str(scrypt_log_n).encode()
              + b"\n" + _wrap_b64(body) + b"---")
    mac_key = hkdf_sha256(file_key, b"", b"header", 32)
    mac = hmac.new(mac_key, header, "sha256").digest()
    out = bytearray(header + b" " + base64.b64encode(mac).rstrip(b"=") + b"\n")
    nonce = os.urandom(_NONCE_SIZE)
    out += nonce
    stream = ChaCha20Poly1305(hkdf_sha256(file_key, nonce, b"payload", 32))
    data = memoryview(bytes(plaintext))
    count = max(1, -(-len(data) // _CHUNK_SIZE))
    for index in range(count):
        last = index == count - 1
        chunk_nonce = index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        out += stream.encrypt(chunk_nonce, data[index * _CHUNK_SIZE:(index + 1) * _CHUNK_SIZE],
                              None)
    return bytes(out)


# scrypt(password, salt, log_n) -> 32 bytes, with r = 8, p = 1 (age's parameters)
ScryptFunction = Callable[[bytes, bytes, int], bytes]


def decrypt_age_passphrase(ciphertext: bytes | bytearray | memoryview, passphrase: str, *,
                           scrypt: ScryptFunction, crypto: CryptoBackend,
                           max_scrypt_log_n: int = DEFAULT_MAX_SCRYPT_LOG_N) -> bytes:
    """Decrypt an age passphrase file synchronously from primitives: ``scrypt`` and the
    backend's ChaCha20-Poly1305, HKDF-SHA-256 and HMAC-SHA-256 (stdlib). The browser
    backend uses it where age-encryption cannot be awaited (no JSPI); the checks and
    errors are those of the backend protocol (``age_decrypt_passphrase``), the work
    factor bounded as in :func:`decrypt_vault`."""
    data = memoryview(bytes(ciphertext))
    header = parse_age_header(data)
    log_n = scrypt_work_factor(header)
    if log_n > max_scrypt_log_n:
        raise LimitExceededError(f"the age file's scrypt work factor 2^{log_n} is above the "
                                 f"limit 2^{max_scrypt_log_n}")
    stanza = header.stanzas[0]
    salt = _b64_nopad(stanza.args[0].encode("ascii"), "the scrypt salt")
    wrap_key = scrypt(passphrase.encode("utf-8"), _SCRYPT_LABEL + salt, log_n)
    try:
        file_key = crypto.aead(wrap_key).open(bytes(12), stanza.body, b"")
    except IntegrityError:
        raise WrongKeyError("wrong passphrase for the age file") from None
    mac_key = hkdf_sha256(file_key, b"", b"header", 32)
    expected = hmac.new(mac_key, data[:header.mac_line_offset + 3], "sha256").digest()
    if not hmac.compare_digest(expected, header.mac):
        raise IntegrityError("the age header MAC does not verify")
    nonce = data[header.size:header.size + _NONCE_SIZE]
    if len(nonce) < _NONCE_SIZE:
        raise IntegrityError("the age payload is cut short (no nonce)")
    payload = data[header.size + _NONCE_SIZE:]
    sealed_size = _CHUNK_SIZE + _TAG_SIZE
    count = max(1, -(-len(payload) // sealed_size))
    stream = crypto.aead(hkdf_sha256(file_key, bytes(nonce), b"payload", 32))
    out = bytearray()
    for index in range(count):
        last = index == count - 1
        sealed = payload[index * sealed_size:(index + 1) * sealed_size]
        if last and index > 0 and len(sealed) == _TAG_SIZE:
            raise IntegrityError("the age payload ends with an empty chunk")
        chunk_nonce = index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            out += stream.open(chunk_nonce, sealed, b"")
        except IntegrityError:
            raise IntegrityError(f"the age payload fails authentication in chunk {index} "
                                 "(damaged or cut short)") from None
    return bytes(out)
