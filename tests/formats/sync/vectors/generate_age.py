"""Regenerate the age vectors (``age-*.age`` and ``age.json``) used by test_vault.py and the
crypto conformance suite (both backends decrypt every one)::

    .venv/bin/python build.py --out dist/site -q      # the crypto bundle, for age-encryption
    .venv/bin/python tests/formats/sync/vectors/generate_age.py

Two writers, so each backend reads the other side's files: age-encryption 0.3.1 (typage,
the browser library; run under Node from the site's crypto bundle) and lockbox's own
``encrypt_vault``. Work factors are tiny (2^1 .. 2^4) so that the tests stay fast.
"""

from __future__ import annotations

import glob
import hashlib
import json
import subprocess
from pathlib import Path

from lockbox.formats.sync.vault import encrypt_vault

HERE = Path(__file__).parent
ROOT = HERE.parents[3]
TWO_CHUNKS = bytes(i % 251 for i in range(65537))  # a full 64 KiB chunk, then 1 byte

NODE_SCRIPT = """
const fs = await import("node:fs");
const [bundle, out, passphrase, logN] = process.argv.slice(1);
const api = await (await import(bundle)).init();
const ct = await api.ageEncryptPassphrase(fs.readFileSync(out), passphrase, Number(logN));
fs.writeFileSync(out, ct);
"""


def _typage(name: str, plaintext: bytes, passphrase: str, log_n: int) -> None:
    bundles = sorted(glob.glob(str(ROOT / "dist" / "site" / "vendor" / "crypto.*.mjs")))
    if not bundles:
        raise SystemExit("build the site first: .venv/bin/python build.py --out dist/site -q")
    (HERE / name).write_bytes(plaintext)  # replaced by its ciphertext
    subprocess.run(["node", "--input-type=module", "-e", NODE_SCRIPT, bundles[-1],
                    str(HERE / name), passphrase, str(log_n)], check=True)


VECTORS = [
    # file, writer, passphrase, plaintext, log_n
    ("age-typage-hello.age", "age-encryption 0.3.1", "pw", b"hello", 4),
    ("age-typage-2chunks.age", "age-encryption 0.3.1", "correct horse battery staple",
     TWO_CHUNKS, 3),
    ("age-lockbox-2chunks.age", "lockbox encrypt_vault", "pässwörd ✓", TWO_CHUNKS, 3),
    ("age-lockbox-empty.age", "lockbox encrypt_vault", "pw", b"", 1),
]


def main() -> None:
    index = []
    for name, writer, passphrase, plaintext, log_n in VECTORS:
        if writer.startswith("lockbox"):
            (HERE / name).write_bytes(encrypt_vault(plaintext, passphrase, scrypt_log_n=log_n))
        else:
            _typage(name, plaintext, passphrase, log_n)
        index.append({"file": name, "writer": writer, "passphrase": passphrase,
                      "scrypt_log_n": log_n, "plaintext_size": len(plaintext),
                      "plaintext_sha256": hashlib.sha256(plaintext).hexdigest()})
    (HERE / "age.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    print(f"wrote {len(index)} age vectors to {HERE}")


if __name__ == "__main__":
    main()
