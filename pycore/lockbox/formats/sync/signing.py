"""Ed25519 signatures of ``.sync`` containers: sync-rs's two schemes, byte for byte.

**Embedded** (``[signature]`` in the manifest; sync-rs ``verify_manifest_signature``)::

    manifest_hash = "blake3:" + hex(BLAKE3(manifest.canonical_json()))
    payload_hash  = "blake3:" + hex(BLAKE3(payload))          (optional)
    message       = canonical JSON of {"manifest_hash", "payload_hash" (null if absent),
                                       "signer": meta.created_by, "timestamp"}
    value         = base64(Ed25519_sign(key of meta.created_by, message))

The signer is ``meta.created_by``, a did:key. Keys of the manifest that sync-rs does not
know are not in ``canonical_json`` and so are **not signed**: changing one leaves the
signature valid (in sync-rs too).

**Detached** (a JSON file beside the container; sync-rs ``verify_sync_file``)::

    {"algorithm": "Ed25519", "public_key": <did:key>, "signature": <base64>,
     "content_hash": "blake3:" + hex(BLAKE3(whole file)), "signed_at": <unix seconds>}

Ed25519 signs the raw 32-byte BLAKE3 digest of the whole file. ``signed_at`` is not
signed (sync-rs does not sign it either).

Checks run in sync-rs's order and report the first failure as the ``reason`` of a
:class:`SignatureStatus` (no exception for a bad signature). Hashes are compared as
strings, as sync-rs does (``blake3:`` + lowercase hex). Base64 must be canonical (padding,
no stray bits: the ``base64`` crate's STANDARD engine refuses anything else).

Verification uses the crypto backend (``ed25519_verify``, BLAKE3), so it runs in the
browser; :class:`SigningKey` (key generation, signing) is CPython only (``cryptography``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ...crypto.base import CryptoBackend
from ...errors import BackendUnavailableError, FormatError, UsageError
from .didkey import did_key_from_public, public_from_did_key
from .manifest import U64_MAX, Manifest, canonical_json_bytes, format_timestamp

__all__ = [
    "ALGORITHM", "HASH_PREFIX", "MAX_DETACHED_SIZE", "SignatureStatus", "SigningKey",
    "DetachedSignature", "blake3_tag", "manifest_hash", "embedded_message", "sign_manifest",
    "verify_embedded", "sign_detached", "verify_detached",
]

ALGORITHM = "Ed25519"
HASH_PREFIX = "blake3:"
MAX_DETACHED_SIZE = 64 * 1024  # a detached signature is ~300 bytes; bounds the JSON parse
_ED25519_SIGNATURE_SIZE = 64
_DIGEST_SIZE = 32

SignatureKind = Literal["none", "embedded", "detached"]


@dataclass(frozen=True)
class SignatureStatus:
    """The verdict on one signature. ``kind`` "none": the container is unsigned
    (``valid`` False, ``reason`` says so). ``signer`` is the did:key the signature
    names (when it could be read)."""

    kind: SignatureKind
    valid: bool
    signer: str | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "valid": self.valid, "signer": self.signer,
                "reason": self.reason}


def _crypto(crypto: CryptoBackend | None) -> CryptoBackend:
    if crypto is not None:
        return crypto
    from ...platform import default_crypto

    return default_crypto()


def blake3_tag(digest: bytes) -> str:
    """``"blake3:" + lowercase hex`` of a 32-byte BLAKE3 digest."""
    if len(digest) != _DIGEST_SIZE:
        raise ValueError(f"a BLAKE3 digest is {_DIGEST_SIZE} bytes, got {len(digest)}")
    return HASH_PREFIX + bytes(digest).hex()


def _blake3(data: bytes, crypto: CryptoBackend | None) -> bytes:
    hasher = _crypto(crypto).blake3()
    hasher.update(data)
    return hasher.digest()


def manifest_hash(manifest: Manifest, *, crypto: CryptoBackend | None = None) -> str:
    """``signature.manifest_hash`` of a manifest: BLAKE3 of its canonical JSON."""
    return blake3_tag(_blake3(manifest.canonical_json(), crypto))


def embedded_message(manifest_hash: str, payload_hash: str | None, signer: str,
                     timestamp: str) -> bytes:
    """The bytes Ed25519 signs in the embedded scheme."""
    return canonical_json_bytes({"manifest_hash": manifest_hash, "payload_hash": payload_hash,
                                 "signer": signer, "timestamp": timestamp})


def _b64decode_canonical(text: str) -> bytes | None:
    """The bytes of canonical standard base64 (with padding), else None."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def _check_ed25519(public_key: bytes, message: bytes, value: str, kind: SignatureKind,
                   signer: str, crypto: CryptoBackend | None) -> SignatureStatus:
    raw = _b64decode_canonical(value)
    if raw is None:
        return SignatureStatus(kind, False, signer, "the signature is not valid base64")
    if len(raw) != _ED25519_SIGNATURE_SIZE:
        return SignatureStatus(kind, False, signer,
                               f"invalid signature length: {len(raw)} bytes, expected 64")
    if not _crypto(crypto).ed25519_verify(public_key, message, raw):
        return SignatureStatus(kind, False, signer, "the Ed25519 signature does not verify")
    return SignatureStatus(kind, True, signer, None)


# --- keys (CPython) ----------------------------------------------------------------------------


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise BackendUnavailableError(
            f"signing needs the 'cryptography' package (CPython): {exc}") from exc
    return ed25519


class SigningKey:
    """An Ed25519 private key (CPython: ``cryptography``). Key files are unencrypted
    PKCS#8 PEM, written 0600 and atomically; :attr:`did` names the public half."""

    __slots__ = ("_key", "_public")

    def __init__(self, private_key: Any) -> None:
        """Wrap a ``cryptography`` ``Ed25519PrivateKey`` (use the class methods)."""
        ed25519 = _ed25519()
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise UsageError("SigningKey wraps an Ed25519 private key")
        self._key = private_key
        self._public: bytes = private_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(_ed25519().Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key of a 32-byte RFC 8032 private seed (for test vectors)."""
        if len(seed) != 32:
            raise UsageError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(_ed25519().Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        """Parse a PKCS#8 PEM Ed25519 private key (unencrypted). FormatError otherwise."""
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(bytes(pem), password=None)
        except TypeError:
            raise FormatError("the key file is encrypted; lockbox writes and reads "
                              "unencrypted PKCS#8 Ed25519 keys") from None
        except ValueError as exc:
            raise FormatError(f"not a PEM private key: {exc}") from None
        if not isinstance(key, _ed25519().Ed25519PrivateKey):
            raise FormatError(f"the key file holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: str) -> SigningKey:
        """Read a key file (StorageError if it cannot be read, FormatError if not a key)."""
        from ...errors import StorageError

        try:
            with open(path, "rb") as f:
                pem = f.read(MAX_DETACHED_SIZE + 1)
        except OSError as exc:
            raise StorageError(f"cannot read the key file {path}: {exc.strerror or exc}"
                               ) from None
        if len(pem) > MAX_DETACHED_SIZE:
            raise FormatError(f"{path} is too large to be an Ed25519 key file")
        return cls.from_pem(pem)

    def to_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        pem: bytes = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        return pem

    def save(self, path: str, *, overwrite: bool = False) -> None:
        """Write the key file: mode 0600, atomically and durably; an existing file is
        kept unless ``overwrite`` (StorageError ``"... already exists"``)."""
        from ...fileio import write_atomically

        write_atomically(path, self.to_pem(), overwrite=overwrite, mode=0o600,
                         what=f"cannot write the key file {path}")

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public

    @property
    def did(self) -> str:
        """The did:key of the public key (what ``meta.created_by`` holds when signed)."""
        return did_key_from_public(self._public)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        signature: bytes = self._key.sign(bytes(message))
        return signature

    def __repr__(self) -> str:
        return f"SigningKey({self.did})"


# --- embedded ----------------------------------------------------------------------------------


def sign_manifest(manifest: Manifest, payload_blake3: bytes | None, key: SigningKey,
                  timestamp: datetime | str, *, crypto: CryptoBackend | None = None
                  ) -> Manifest:
    """The manifest with a fresh ``[signature]``. ``meta.created_by`` becomes the key's
    did:key first (sync-rs takes the verifying key from there), any old signature is
    replaced. ``payload_blake3``: the payload's 32-byte BLAKE3 digest, or None to sign the
    manifest alone (sync-rs then does not check the payload). ``timestamp``: an aware
    datetime (written ``YYYY-MM-DDTHH:MM:SSZ``) or the exact string to sign."""
    stamp = timestamp if isinstance(timestamp, str) else format_timestamp(timestamp)
    unsigned = manifest.replace(created_by=key.did, signature=None)
    m_hash = manifest_hash(unsigned, crypto=crypto)
    p_hash = None if payload_blake3 is None else blake3_tag(payload_blake3)
    message = embedded_message(m_hash, p_hash, key.did, stamp)
    signature: dict[str, str] = {"algo": ALGORITHM, "manifest_hash": m_hash}
    if p_hash is not None:
        signature["payload_hash"] = p_hash
    signature["timestamp"] = stamp
    signature["value"] = base64.b64encode(key.sign(message)).decode("ascii")
    return unsigned.replace(signature=signature)


def verify_embedded(manifest: Manifest, payload_blake3: bytes | None, *,
                    crypto: CryptoBackend | None = None) -> SignatureStatus:
    """Check the manifest's ``[signature]`` as sync-rs does, in its order: algorithm,
    manifest hash, payload hash (when the signature has one: then ``payload_blake3``
    must be given, else UsageError), signer did:key, base64, length, Ed25519."""
    sig = manifest.signature
    signer = manifest.created_by
    if sig is None:
        return SignatureStatus("none", False, None, "the manifest has no [signature]")
    if sig["algo"] != ALGORITHM:
        return SignatureStatus("embedded", False, signer,
                               f"unsupported signature algorithm {sig['algo']!r}")
    if manifest_hash(manifest, crypto=crypto) != sig["manifest_hash"]:
        return SignatureStatus("embedded", False, signer, "manifest hash mismatch")
    signed_payload = sig.get("payload_hash")
    if signed_payload is not None:
        if payload_blake3 is None:
            raise UsageError("the signature covers the payload: pass its BLAKE3 digest")
        if blake3_tag(payload_blake3) != signed_payload:
            return SignatureStatus("embedded", False, signer, "payload hash mismatch")
    try:
        public_key = public_from_did_key(signer)
    except FormatError as exc:
        return SignatureStatus("embedded", False, signer, f"invalid signer: {exc}")
    message = embedded_message(sig["manifest_hash"], signed_payload, signer, sig["timestamp"])
    return _check_ed25519(public_key, message, sig["value"], "embedded", signer, crypto)


# --- detached ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetachedSignature:
    """sync-rs's ``SyncSignature`` JSON."""

    algorithm: str
    public_key: str
    signature: str
    content_hash: str
    signed_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "public_key": self.public_key,
                "signature": self.signature, "content_hash": self.content_hash,
                "signed_at": self.signed_at}

    def to_json(self) -> bytes:
        """Pretty JSON in sync-rs's field order, with a final newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> DetachedSignature:
        """Parse as serde does: the five fields with their types (``signed_at`` a u64),
        unknown fields ignored, a duplicate field refused. FormatError otherwise."""
        if len(data) > MAX_DETACHED_SIZE:
            raise FormatError(f"a detached signature is at most {MAX_DETACHED_SIZE} bytes")
        try:
            obj = json.loads(data, object_pairs_hook=_no_duplicates)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError(f"the detached signature is not valid JSON: {exc}") from None
        except RecursionError:
            raise FormatError("the detached signature nests JSON too deeply") from None
        if not isinstance(obj, dict):
            raise FormatError("the detached signature must be a JSON object")
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> DetachedSignature:
        values: dict[str, Any] = {}
        for name in ("algorithm", "public_key", "signature", "content_hash"):
            if name not in obj:
                raise FormatError(f"the detached signature lacks {name!r}")
            if not isinstance(obj[name], str):
                raise FormatError(f"the detached signature's {name!r} must be a string")
            values[name] = obj[name]
        if "signed_at" not in obj:
            raise FormatError("the detached signature lacks 'signed_at'")
        signed_at = obj["signed_at"]
        if isinstance(signed_at, bool) or not isinstance(signed_at, int) or \
                not 0 <= signed_at <= U64_MAX:
            raise FormatError("the detached signature's 'signed_at' must be an unsigned "
                              "integer (u64, Unix seconds)")
        return cls(signed_at=signed_at, **values)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate field {name!r}")
        out[name] = value
    return out


def sign_detached(file_blake3: bytes, key: SigningKey, signed_at: int) -> DetachedSignature:
    """A detached signature of a whole file, given its 32-byte BLAKE3 digest."""
    if isinstance(signed_at, bool) or not isinstance(signed_at, int) or \
            not 0 <= signed_at <= U64_MAX:
        raise UsageError("signed_at must be Unix seconds (a u64)")
    content_hash = blake3_tag(file_blake3)
    value = base64.b64encode(key.sign(bytes(file_blake3))).decode("ascii")
    return DetachedSignature(ALGORITHM, key.did, value, content_hash, signed_at)


def verify_detached(sig: DetachedSignature, file_blake3: bytes, *,
                    crypto: CryptoBackend | None = None) -> SignatureStatus:
    """Check a detached signature against the file's 32-byte BLAKE3 digest, in sync-rs's
    order: algorithm, content hash, public key, base64, length, Ed25519."""
    signer = sig.public_key
    if sig.algorithm != ALGORITHM:
        return SignatureStatus("detached", False, signer,
                               f"unsupported signature algorithm {sig.algorithm!r}")
    if blake3_tag(file_blake3) != sig.content_hash:
        return SignatureStatus("detached", False, signer, "content hash mismatch")
    try:
        public_key = public_from_did_key(signer)
    except FormatError as exc:
        return SignatureStatus("detached", False, signer, f"invalid public key: {exc}")
    return _check_ed25519(public_key, bytes(file_blake3), sig.signature, "detached", signer,
                          crypto)
