"""Regenerate signatures.json: ``.venv/bin/python tests/formats/sync/vectors/generate.py``.

The vectors pin sync-rs's two signature schemes for a fixed key (RFC 8032 seed 00..1f), a
fixed manifest (with an unknown key, which the signature does not cover) and a fixed
payload. test_signing.py checks them three ways: lockbox reproduces every field byte for
byte; the hashes are recomputed with the ``blake3`` package directly; the signatures verify
with ``cryptography``'s Ed25519 directly (no lockbox code in those two checks).
"""

from __future__ import annotations

import json
from pathlib import Path

from lockbox.formats.sync.manifest import Manifest
from lockbox.formats.sync.signing import (
    SigningKey,
    embedded_message,
    manifest_hash,
    sign_detached,
    sign_manifest,
)

HERE = Path(__file__).parent
SEED = bytes(range(32))
MANIFEST = """\
unknown_top = "not signed"

[sync]
version = "1.2"
content_type = "text/csv"
display_ext = "csv"
variant = "plain"

[meta]
created_by = "placeholder"
created_at = "2026-01-01T00:00:00Z"
hash_algo = "blake3"
note = "Zoë's \\"report\\"\\n"

[policy]
ttl = 86400
timeout = 30

[permissions]
allow_hosts = ["example.com"]
allow_env = []

[capabilities]
values = ["local-first"]
"""
PAYLOAD = "id,name\n1,Zoë\n2,Ann\n".encode()
TIMESTAMP = "2026-01-02T03:04:05Z"
FILE = b"PK\x03\x04 any bytes of a .sync file " + bytes(range(256))
SIGNED_AT = 1767323045


def _blake3(data: bytes) -> bytes:
    from blake3 import blake3

    return blake3(data).digest()


def build() -> dict[str, object]:
    key = SigningKey.from_seed(SEED)
    manifest = Manifest.parse(MANIFEST.encode())
    signed = sign_manifest(manifest, _blake3(PAYLOAD), key, TIMESTAMP)
    unsigned = signed.replace(signature=None)
    sig = signed.signature
    assert sig is not None
    detached = sign_detached(_blake3(FILE), key, SIGNED_AT)
    manifest_only = sign_manifest(manifest, None, key, TIMESTAMP)
    assert manifest_only.signature is not None
    return {
        "seed_hex": SEED.hex(),
        "public_key_hex": key.public_key.hex(),
        "did": key.did,
        "manifest_toml": MANIFEST,
        "canonical_json": unsigned.canonical_json().decode("utf-8"),
        "manifest_hash": manifest_hash(unsigned),
        "payload_utf8": PAYLOAD.decode("utf-8"),
        "payload_hash": sig["payload_hash"],
        "timestamp": TIMESTAMP,
        "message": embedded_message(sig["manifest_hash"], sig["payload_hash"], key.did,
                                    TIMESTAMP).decode("utf-8"),
        "signature_value": sig["value"],
        "signed_manifest_toml": signed.to_toml().decode("utf-8"),
        "manifest_only": {
            "message": embedded_message(manifest_only.signature["manifest_hash"], None,
                                        key.did, TIMESTAMP).decode("utf-8"),
            "signature_value": manifest_only.signature["value"],
        },
        "detached": {
            "file_hex": FILE.hex(),
            "content_hash": detached.content_hash,
            "signed_at": SIGNED_AT,
            "signature": detached.signature,
            "json": detached.to_json().decode("utf-8"),
        },
    }


if __name__ == "__main__":
    out = HERE / "signatures.json"
    out.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
