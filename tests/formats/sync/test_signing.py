"""Ed25519 signatures of .sync containers (lockbox.formats.sync.signing): the fixed vectors
(vectors/signatures.json, checked with blake3 and cryptography directly), tampering each
signed field in turn, detached JSON parsing, and key files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from lockbox.errors import FormatError, StorageError, UsageError
from lockbox.formats.sync.didkey import did_key_from_public
from lockbox.formats.sync.manifest import Manifest
from lockbox.formats.sync.signing import (
    DetachedSignature,
    SignatureStatus,
    SigningKey,
    embedded_message,
    manifest_hash,
    sign_detached,
    sign_manifest,
    verify_detached,
    verify_embedded,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "signatures.json")
                     .read_text(encoding="utf-8"))
KEY = SigningKey.from_seed(bytes.fromhex(VECTORS["seed_hex"]))
OTHER_KEY = SigningKey.from_seed(bytes(32))
PAYLOAD = VECTORS["payload_utf8"].encode()
FILE = bytes.fromhex(VECTORS["detached"]["file_hex"])


def _b3(data: bytes) -> bytes:
    return blake3(data).digest()


def _signed() -> Manifest:
    return Manifest.parse(VECTORS["signed_manifest_toml"].encode())


def _raw_verify(public_key: bytes, message: bytes, value: str) -> None:
    """Ed25519 straight from cryptography (raises InvalidSignature)."""
    ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(value),
                                                                  message)


# --- the vectors -------------------------------------------------------------------------------


def test_vector_key() -> None:
    # RFC 8032 §7.1 keys are derived the same way; this seed's public key is well known.
    assert KEY.public_key.hex() == VECTORS["public_key_hex"]
    assert KEY.did == VECTORS["did"] == did_key_from_public(KEY.public_key)


def test_embedded_vector_independently() -> None:
    canonical = VECTORS["canonical_json"].encode("utf-8")
    assert VECTORS["manifest_hash"] == "blake3:" + blake3(canonical).hexdigest()
    assert VECTORS["payload_hash"] == "blake3:" + blake3(PAYLOAD).hexdigest()
    message = json.dumps({"manifest_hash": VECTORS["manifest_hash"],
                          "payload_hash": VECTORS["payload_hash"], "signer": VECTORS["did"],
                          "timestamp": VECTORS["timestamp"]},
                         separators=(",", ":"), sort_keys=True).encode()
    assert message == VECTORS["message"].encode()
    _raw_verify(KEY.public_key, message, VECTORS["signature_value"])
    only = VECTORS["manifest_only"]
    assert '"payload_hash":null' in only["message"]
    _raw_verify(KEY.public_key, only["message"].encode(), only["signature_value"])


def test_embedded_vector_reproduced() -> None:
    manifest = Manifest.parse(VECTORS["manifest_toml"].encode())
    signed = sign_manifest(manifest, _b3(PAYLOAD), KEY, VECTORS["timestamp"])
    assert signed.to_toml().decode() == VECTORS["signed_manifest_toml"]
    unsigned = signed.replace(signature=None)
    assert unsigned.canonical_json() == VECTORS["canonical_json"].encode()
    assert manifest_hash(unsigned) == VECTORS["manifest_hash"]
    assert signed.signature == {"algo": "Ed25519", "manifest_hash": VECTORS["manifest_hash"],
                                "payload_hash": VECTORS["payload_hash"],
                                "timestamp": VECTORS["timestamp"],
                                "value": VECTORS["signature_value"]}
    assert embedded_message(VECTORS["manifest_hash"], VECTORS["payload_hash"], KEY.did,
                            VECTORS["timestamp"]) == VECTORS["message"].encode()
    status = verify_embedded(_signed(), _b3(PAYLOAD))
    assert status == SignatureStatus("embedded", True, KEY.did, None)
    assert status.to_dict() == {"kind": "embedded", "valid": True, "signer": KEY.did,
                                "reason": None}


def test_manifest_only_signature() -> None:
    manifest = Manifest.parse(VECTORS["manifest_toml"].encode())
    signed = sign_manifest(manifest, None, KEY, VECTORS["timestamp"])
    assert signed.signature is not None and "payload_hash" not in signed.signature
    assert "payload_hash" not in signed.to_toml().decode()
    assert signed.signature["value"] == VECTORS["manifest_only"]["signature_value"]
    # sync-rs does not look at the payload then: any payload (or none) verifies.
    assert verify_embedded(signed, None).valid
    assert verify_embedded(signed, _b3(b"anything")).valid


def test_detached_vector() -> None:
    d = VECTORS["detached"]
    assert d["content_hash"] == "blake3:" + blake3(FILE).hexdigest()
    _raw_verify(KEY.public_key, blake3(FILE).digest(), d["signature"])  # the raw digest
    sig = sign_detached(_b3(FILE), KEY, d["signed_at"])
    assert sig.to_json().decode() == d["json"]
    parsed = DetachedSignature.from_json(d["json"].encode())
    assert parsed == sig and parsed.signature == d["signature"]
    assert verify_detached(parsed, _b3(FILE)) == SignatureStatus("detached", True, KEY.did,
                                                                 None)


# --- embedded: tamper each field ---------------------------------------------------------------


def _with_signature(**changes: str | None) -> Manifest:
    m = _signed()
    sig: dict[str, Any] = dict(m.signature or {})
    for name, value in changes.items():
        if value is None:
            sig.pop(name, None)
        else:
            sig[name] = value
    return m.replace(signature=sig)


def _flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[10] ^= 0x01
    return base64.b64encode(raw).decode()


def _reason(m: Manifest, payload: bytes = PAYLOAD) -> str | None:
    status = verify_embedded(m, _b3(payload))
    assert status.kind == "embedded" and not status.valid
    return status.reason


def test_tamper_signature_fields() -> None:
    other_hash = "blake3:" + "00" * 32
    assert _reason(_with_signature(manifest_hash=other_hash)) == "manifest hash mismatch"
    assert _reason(_with_signature(payload_hash=other_hash)) == "payload hash mismatch"
    assert _reason(_with_signature(payload_hash=None)) == \
        "the Ed25519 signature does not verify"  # the message then says null
    assert _reason(_with_signature(timestamp="2026-01-02T03:04:06Z")) == \
        "the Ed25519 signature does not verify"
    value = VECTORS["signature_value"]
    assert _reason(_with_signature(value=_flip_b64(value))) == \
        "the Ed25519 signature does not verify"
    assert _reason(_with_signature(algo="ed25519")) == "unsupported signature algorithm 'ed25519'"
    # hashes compare as strings, like sync-rs: upper-case hex is a mismatch
    assert _reason(_with_signature(manifest_hash=VECTORS["manifest_hash"].upper()
                                   .replace("BLAKE3", "blake3"))) == "manifest hash mismatch"


@pytest.mark.parametrize(("value", "reason"), [
    ("AA==", "invalid signature length: 1 bytes, expected 64"),
    (base64.b64encode(bytes(65)).decode(), "invalid signature length: 65 bytes"),
    ("not base64!", "not valid base64"),
    (VECTORS["signature_value"].rstrip("="), "not valid base64"),  # padding required
    (VECTORS["signature_value"][:-3] + "B==", "not valid base64"),  # stray low bits
    (" " + VECTORS["signature_value"], "not valid base64"),
])
def test_non_canonical_or_wrong_size_values(value: str, reason: str) -> None:
    got = _reason(_with_signature(value=value))
    assert got is not None and reason in got


def test_stray_bits_decode_to_the_same_signature() -> None:
    # Python's decoder alone would accept this spelling of the same 64 bytes: refusing it
    # matches the base64 crate (STANDARD engine) that sync-rs uses.
    value = VECTORS["signature_value"]
    stray = value[:-3] + "B=="
    assert base64.b64decode(stray) == base64.b64decode(value) and stray != value


def test_created_by_is_signed() -> None:
    m = _signed().replace(created_by=OTHER_KEY.did)
    assert _reason(m) == "manifest hash mismatch"


@pytest.mark.parametrize(("field", "value"), [
    ("version", "1.3"), ("content_type", "text/plain"), ("display_ext", "txt"),
    ("variant", "app"), ("created_at", "2026-01-01T00:00:01Z"), ("hash_algo", "sha256"),
    ("ttl", 86401), ("timeout", 31), ("allow_hosts", ["example.org"]), ("allow_env", ["X"]),
    ("owner_capsule", "me"), ("write_allowed", True), ("encryption_enabled", True),
    ("encryption_algorithm", "age-v1"),
])
def test_every_signed_manifest_field(field: str, value: object) -> None:
    assert _reason(_signed().replace(**{field: value})) == "manifest hash mismatch"


@pytest.mark.parametrize("table", [
    'verification = {enabled = true}', 'verification = {vm_type = "x"}',
    'capabilities = {values = []}', 'encryption = {meta = {}}',
    'encryption = {meta = {hint = "h"}}',
])
def test_every_optional_table_is_signed(table: str) -> None:
    text = VECTORS["signed_manifest_toml"].replace("[sync]", table + "\n\n[sync]", 1)
    if table.startswith("capabilities"):
        text = text.replace('[capabilities]\nvalues = [\n    "local-first",\n]\n', "")
    assert _reason(Manifest.parse(text.encode())) == "manifest hash mismatch"


def test_rehashed_manifest_still_fails_the_signature() -> None:
    changed = _signed().replace(ttl=10**9)
    sig = dict(changed.signature or {})
    sig["manifest_hash"] = manifest_hash(changed)
    assert _reason(changed.replace(signature=sig)) == "the Ed25519 signature does not verify"


def test_payload_is_signed() -> None:
    tampered = bytearray(PAYLOAD)
    tampered[3] ^= 0x01
    assert _reason(_signed(), bytes(tampered)) == "payload hash mismatch"
    rehashed = _with_signature(payload_hash="blake3:" + blake3(bytes(tampered)).hexdigest())
    assert _reason(rehashed, bytes(tampered)) == "the Ed25519 signature does not verify"


def test_unknown_keys_are_not_signed() -> None:
    # sync-rs drops keys it does not know from the manifest hash, so they can change
    # without breaking the signature: they carry no signed meaning.
    text = VECTORS["signed_manifest_toml"]
    for old, new in [('unknown_top = "not signed"', 'unknown_top = "changed"'),
                     ("note = ", "note_new = "), ("[sync]\n", "[sync]\nextra = 1\n")]:
        changed = Manifest.parse(text.replace(old, new, 1).encode())
        assert changed != _signed()
        assert verify_embedded(changed, _b3(PAYLOAD)).valid, old


def test_signer_problems() -> None:
    m = _signed()
    assert _reason(m.replace(created_by="did:web:x")) == "manifest hash mismatch"
    # a manifest signed by a key whose did:key is then made unreadable
    bad = m.replace(created_by="not a did")
    sig = dict(bad.signature or {})
    sig["manifest_hash"] = manifest_hash(bad)
    reason = _reason(bad.replace(signature=sig))
    assert reason is not None and reason.startswith("invalid signer: a did:key must start")


def test_unsigned_and_usage() -> None:
    unsigned = Manifest.parse(VECTORS["manifest_toml"].encode())
    assert verify_embedded(unsigned, None) == SignatureStatus(
        "none", False, None, "the manifest has no [signature]")
    with pytest.raises(UsageError, match="pass its BLAKE3"):
        verify_embedded(_signed(), None)


def test_sign_manifest_sets_the_signer_and_replaces_an_old_signature() -> None:
    signed = sign_manifest(_signed(), _b3(PAYLOAD), OTHER_KEY, VECTORS["timestamp"])
    assert signed.created_by == OTHER_KEY.did
    assert verify_embedded(signed, _b3(PAYLOAD)).signer == OTHER_KEY.did
    assert verify_embedded(signed, _b3(PAYLOAD)).valid
    assert signed.data["unknown_top"] == "not signed"


# --- detached: tamper each field ---------------------------------------------------------------


def _detached(**changes: Any) -> DetachedSignature:
    obj = json.loads(VECTORS["detached"]["json"])
    obj.update(changes)
    return DetachedSignature.from_dict(obj)


def _detached_reason(sig: DetachedSignature, data: bytes = FILE) -> str | None:
    status = verify_detached(sig, _b3(data))
    assert status.kind == "detached" and not status.valid
    return status.reason


def test_detached_tamper_each_field() -> None:
    d = VECTORS["detached"]
    assert _detached_reason(_detached(algorithm="RSA")) == "unsupported signature algorithm 'RSA'"
    assert _detached_reason(_detached(public_key=OTHER_KEY.did)) == \
        "the Ed25519 signature does not verify"
    reason = _detached_reason(_detached(public_key="did:key:z6Mk"))
    assert reason is not None and reason.startswith("invalid public key:")
    assert _detached_reason(_detached(signature=_flip_b64(d["signature"]))) == \
        "the Ed25519 signature does not verify"
    assert _detached_reason(_detached(signature="AAAA")) == \
        "invalid signature length: 3 bytes, expected 64"
    assert _detached_reason(_detached(content_hash="blake3:" + "11" * 32)) == \
        "content hash mismatch"
    # signed_at is not signed (nor in sync-rs): changing it keeps the signature valid
    assert verify_detached(_detached(signed_at=1), _b3(FILE)).valid


def test_detached_one_byte_of_the_file() -> None:
    sig = _detached()
    for pos in (0, len(FILE) // 2, len(FILE) - 1):
        changed = bytearray(FILE)
        changed[pos] ^= 0x80
        assert _detached_reason(sig, bytes(changed)) == "content hash mismatch"
        rehashed = _detached(content_hash="blake3:" + blake3(bytes(changed)).hexdigest())
        assert _detached_reason(rehashed, bytes(changed)) == \
            "the Ed25519 signature does not verify"
    assert _detached_reason(sig, FILE + b"\0") == "content hash mismatch"


@pytest.mark.parametrize(("text", "message"), [
    (b"[]", "must be a JSON object"),
    (b"{", "not valid JSON"),
    (b'{"algorithm": "Ed25519"}', "lacks 'public_key'"),
    (json.dumps({**json.loads(VECTORS["detached"]["json"]), "signed_at": -1}).encode(),
     "'signed_at' must be an unsigned integer"),
    (json.dumps({**json.loads(VECTORS["detached"]["json"]), "signed_at": 1.5}).encode(),
     "'signed_at' must be an unsigned integer"),
    (json.dumps({**json.loads(VECTORS["detached"]["json"]), "signed_at": True}).encode(),
     "'signed_at' must be an unsigned integer"),
    (json.dumps({**json.loads(VECTORS["detached"]["json"]), "signed_at": 2**64}).encode(),
     "'signed_at' must be an unsigned integer"),
    (json.dumps({k: v for k, v in json.loads(VECTORS["detached"]["json"]).items()
                 if k != "signed_at"}).encode(), "lacks 'signed_at'"),
    (json.dumps({**json.loads(VECTORS["detached"]["json"]), "signature": 5}).encode(),
     "'signature' must be a string"),
    (VECTORS["detached"]["json"].replace('"signed_at"', '"algorithm": "x", "signed_at"')
     .encode(), "duplicate field 'algorithm'"),
    (b" " * 70000, "at most 65536 bytes"),
    (b"[" * 60000, "too deeply"),
])
def test_detached_json_refusals(text: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        DetachedSignature.from_json(text)


def test_detached_json_ignores_unknown_fields() -> None:
    obj = {**json.loads(VECTORS["detached"]["json"]), "comment": "serde ignores me"}
    assert DetachedSignature.from_json(json.dumps(obj)) == _detached()


def test_sign_detached_checks_signed_at() -> None:
    for bad in (-1, 2**64, True, 1.0):
        with pytest.raises(UsageError, match="signed_at"):
            sign_detached(_b3(FILE), KEY, bad)  # type: ignore[arg-type]


# --- key files ---------------------------------------------------------------------------------


def test_key_file_roundtrip(tmp_path: Path) -> None:
    path = str(tmp_path / "signer.key")
    KEY.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert open(path, "rb").read().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = SigningKey.load(path)
    assert loaded.did == KEY.did and loaded.sign(b"m") == KEY.sign(b"m")
    with pytest.raises(StorageError, match="already exists"):
        OTHER_KEY.save(path)
    assert SigningKey.load(path).did == KEY.did  # untouched
    OTHER_KEY.save(path, overwrite=True)
    assert SigningKey.load(path).did == OTHER_KEY.did
    assert [p.name for p in tmp_path.iterdir()] == ["signer.key"]  # no temporary left


def test_generate_makes_distinct_keys() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a.did != b.did and a.did.startswith("did:key:z6Mk")
    assert repr(a) == f"SigningKey({a.did})"


def test_key_file_refusals(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read the key file"):
        SigningKey.load(str(tmp_path / "missing.key"))
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"hello")
    with pytest.raises(FormatError, match="not a PEM private key"):
        SigningKey.load(str(junk))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    with pytest.raises(FormatError, match="not an Ed25519 key"):
        SigningKey.from_pem(rsa_pem)
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(FormatError, match="encrypted"):
        SigningKey.from_pem(encrypted)
    big = tmp_path / "big.key"
    big.write_bytes(b"x" * 70000)
    with pytest.raises(FormatError, match="too large"):
        SigningKey.load(str(big))
    with pytest.raises(UsageError, match="32 bytes"):
        SigningKey.from_seed(bytes(31))
    with pytest.raises(UsageError, match="Ed25519 private key"):
        SigningKey(rsa_key)
