"""The committed adversarial corpus (tests/vectors/adversarial/v1): every case gives
exactly its expected outcome through the public API, and the generator
reproduces the committed files byte for byte (the damaged golden archives from
their edits, the hostile authors' archives from their builders in tests/hostile)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox import errors
from lockbox.formats.lbox.wire.keydir import keydir_has_commitment

VECTORS = Path(__file__).parent / "vectors"
GOLDEN = VECTORS / "v1"
CORPUS = VECTORS / "adversarial" / "v1"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
CASES = MANIFEST["cases"]
GOLDEN_ENTRIES: dict[str, dict[str, Any]] = {
    a["file"]: {e["path"]: e for e in a["entries"]}
    for a in json.loads((GOLDEN / "manifest.json").read_text())["archives"]
}
GOLDEN_ENV = {
    a["file"]: [(k, bytes.fromhex(v)) for k, v in a["env"]]
    for a in json.loads((GOLDEN / "manifest.json").read_text())["archives"]
}


def _secret(case: dict[str, Any]) -> dict[str, Any]:
    s = case["secret"]
    if "identity" in s:
        return {"identity": lockbox.Identity.decode((GOLDEN / s["identity"]).read_text())}
    return {"password": s["password"]}


def _run_op(box: lockbox.Lockbox, op: str) -> Any:
    if op == "open":
        return None
    if op == "ls":
        return box.ls(recursive=True)
    if op == "ls-root":
        return box.ls()
    if op.startswith("read "):
        return box.read_bytes(op[5:])
    if op == "verify":
        return box.verify()
    if op == "env":
        return box.env_items()
    raise AssertionError(f"unknown op {op!r}")


def _outcome(case: dict[str, Any]) -> str:
    """Run the case and describe what happened in the manifest's vocabulary."""
    try:
        with lockbox.open(CORPUS / case["file"], **_secret(case)) as box:
            result = _run_op(box, case["op"])
            if "key_commitment" in case:
                assert keydir_has_commitment(box.view.keydir) == case["key_commitment"]
            if case["expected"].startswith("opens-at-generation"):
                return f"opens-at-generation {box.generation}"
            if case["op"] == "verify":
                return "verify-ok" if result.ok else "verify-reports"
            if case["op"] == "env":
                assert result == GOLDEN_ENV[case["source"]]
            if case["op"] == "ls-root" and case["expected"] == "ok":
                # The root's children exactly: the root-listing leaves also hold deeper
                # keys, which a reader leaves out (docs/FORMAT.md §7 root_leaves).
                top = [p for p in GOLDEN_ENTRIES[case["source"]] if "/" not in p]
                assert [info.path for info in result] == top
            return "ok"
    except lockbox.LockboxError as e:
        return type(e).__name__


def test_manifest_shape() -> None:
    assert len(CASES) >= 90
    names = {c["case"] for c in CASES}
    assert len(names) == len(CASES)
    expected_kinds = {c["expected"] for c in CASES}
    for cls in ("FormatError", "TruncatedError", "IntegrityError", "UnsupportedVersionError",
                "LimitExceededError", "WrongKeyError", "verify-reports", "verify-ok"):
        assert cls in expected_kinds
    # The unlock-path cases of the security review (issue 7, items 4 and 7).
    for name in ("tree-same-frame-fanout", "tree-distinct-bombs", "tree-entry-flood",
                 "tree-flood-at-limit", "tree-shared-chunks", "tree-overlapping-refs",
                 "tree-internal-bombs",  # issue 7, item 3: bounded tree walks
                 "two-truths", "two-truths-legacy", "two-truths-bob-removed",
                 "decoy-4gib-slot", "too-many-password-slots", "commitment-mismatch",
                 "legacy-keydir-v1", "keydir-downgraded-to-v1"):
        assert name in names, name
    # The places where a reader written from docs/FORMAT.md alone had to guess (issue 14).
    for name in ("not-lockbox-text", "truncated-slot-header",  # §3 the magic decides first
                 "password-unusable-slot-recipient-usable", "identity-unusable-password-slot",
                 "identity-unknown-slot-kind",  # §6 unlocking, rule 1
                 "root-listing-deeper-keys", "root-listing-non-leaf",  # §7 root_leaves
                 "commit-frame-shorter-than-field", "commit-frame-longer-than-field",
                 "commit-field-longer-than-frame",  # §5 the commit frame fills C
                 "commit-zstd",  # §5/§7 a ZSTD commit is valid
                 "commit-raw-size-mismatch", "commit-unknown-codec", "commit-zstd-corrupt",
                 "commit-zstd-short", "commit-zstd-trailing", "commit-zstd-cut",
                 "commit-zstd-over-size",  # §5 frame plaintext
                 "commit-frame-other-kind", "inline-root-height-2",  # §5, §7
                 "ref-size-below-minimum", "ref-size-below-minimum-listing",
                 "ref-size-over-limit",  # §2 refs are checked when decoded, §9 listings
                 "space-tail-kind-under-page-key"):  # §14
        assert name in names, name
    for c in CASES:
        exp = c["expected"]
        assert (exp in ("verify-reports", "verify-ok", "ok")
                or exp.startswith("opens-at-generation ")
                or issubclass(getattr(errors, exp), lockbox.LockboxError)), exp
        data = (CORPUS / c["file"]).read_bytes()
        assert len(data) == c["size"]
        assert hashlib.sha256(data).hexdigest() == c["sha256"]
    total = sum(p.stat().st_size for p in CORPUS.iterdir())
    assert total < 4_200_000  # ~100 cases of ~28 KiB archives, 7 crafted trees of ~80 KiB


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    assert _outcome(case) == case["expected"], case["about"]
    if case["still_reads"]:
        entries = GOLDEN_ENTRIES[case["source"]]
        assert case["source"] is not None
        with lockbox.open(CORPUS / case["file"], **_secret(case)) as box:
            for path in case["still_reads"]:
                got = box.read_bytes(path)
                assert hashlib.sha256(got).hexdigest() == entries[path]["sha256"], path


def test_edits_replay() -> None:
    """The recorded edits, applied to the golden source, give the committed file."""
    for c in CASES:
        if c["source"] is None:
            assert c["built_by"] and not c["edits"]
            continue
        data = bytearray((GOLDEN / c["source"]).read_bytes())
        for e in c["edits"]:
            if "truncate_to" in e:
                del data[e["truncate_to"]:]
            elif "append_at" in e:
                assert len(data) == e["append_at"]
                data += bytes.fromhex(e["bytes"])
            else:
                new = bytes.fromhex(e["bytes"])
                data[e["offset"]: e["offset"] + len(new)] = new
        assert bytes(data) == (CORPUS / c["file"]).read_bytes(), c["case"]


def test_generator_reproduces_corpus(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_adversarial", VECTORS / "generate_adversarial.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.generate(tmp_path)
    committed = sorted(p.name for p in CORPUS.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name
