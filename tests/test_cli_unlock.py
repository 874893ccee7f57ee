"""The CLI's unlock options: local Argon2id limits (--max-argon2-*), an explicit older
generation (--generation N, read-only), and the key-commitment line of ``info``, on the
hostile archives of tests/hostile (docs/SECURITY.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import WEAK, Runner, one_line_error
from hostile.tree_cases import distinct_bombs
from hostile.two_truths import ACCOUNT_A, ACCOUNT_B, ALICE, BOB, two_truths_archive
from hostile.unlock_cost import PASSWORD, decoy_archive


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    return Runner(capsysbinary)


def _pwfile(tmp_path: Path, text: str) -> Path:
    p = tmp_path / f"pw-{abs(hash(text))}"
    p.write_text(text + "\n")
    return p


def test_decoy_slot_is_skipped_and_the_real_password_opens(tmp_path: Path, run: Runner,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    arch = tmp_path / "decoy.lbox"
    arch.write_bytes(decoy_archive())
    monkeypatch.delenv("LOCKBOX_PASSWORD", raising=False)
    res = run("ls", arch, "--password-file", _pwfile(tmp_path, PASSWORD))
    assert res.rc == 0, res.err
    assert res.lines == ["hello.txt"]


def test_wrong_password_names_the_limit_and_its_flag(tmp_path: Path, run: Runner) -> None:
    arch = tmp_path / "decoy.lbox"
    arch.write_bytes(decoy_archive())
    res = run("ls", arch, "--password-file", _pwfile(tmp_path, "not it"))
    line = one_line_error(res, 6)
    assert "over this reader's limit" in line and "--max-argon2-memory" in line


def test_lowered_limit_makes_the_real_slot_unusable_too(tmp_path: Path, run: Runner) -> None:
    arch = tmp_path / "decoy.lbox"
    arch.write_bytes(decoy_archive())
    # The real slot costs t=1; allowing no more than 32 KiB of memory leaves no slot.
    res = run("ls", arch, "--password-file", _pwfile(tmp_path, PASSWORD),
              "--max-argon2-memory", "32K")
    assert "--max-argon2-memory" in one_line_error(res, 3)


def test_two_truths_never_falls_back_silently(tmp_path: Path, run: Runner) -> None:
    arch = tmp_path / "two.lbox"
    arch.write_bytes(two_truths_archive())
    alice = run("cat", arch, "account.txt", "--password-file", _pwfile(tmp_path, ALICE))
    assert alice.rc == 0 and alice.out == ACCOUNT_A
    bob = run("cat", arch, "account.txt", "--password-file", _pwfile(tmp_path, BOB))
    assert bob.out == b""
    assert "--generation 2" in one_line_error(bob, 5)
    # Asked for explicitly, the older generation is shown, and only read.
    older = run("cat", arch, "account.txt", "--generation", "2",
                "--password-file", _pwfile(tmp_path, BOB))
    assert older.rc == 0 and older.out == ACCOUNT_B
    src = tmp_path / "new.txt"
    src.write_bytes(b"x")
    write = run("add", arch, src, "--generation", "2", "--password-file",
                _pwfile(tmp_path, BOB))
    assert "read-only" in one_line_error(write, 2)


def test_missing_generation_names_the_ones_there_are(tmp_path: Path, run: Runner) -> None:
    arch = tmp_path / "two.lbox"
    arch.write_bytes(two_truths_archive())
    res = run("ls", arch, "--generation", "1", "--password-file", _pwfile(tmp_path, ALICE))
    line = one_line_error(res, 7)
    assert "2" in line and "3" in line


def test_info_reports_the_key_commitment(tmp_path: Path, run: Runner) -> None:
    arch = tmp_path / "legacy.lbox"
    arch.write_bytes(two_truths_archive(legacy=True))
    res = run("info", arch, "--password-file", _pwfile(tmp_path, ALICE))
    assert res.rc == 0, res.err
    assert "no key commitment" in res.text
    js = run("info", arch, "--json", "--password-file", _pwfile(tmp_path, ALICE))
    assert b'"key_commitment": false' in js.out


def test_tree_amplification_limit_is_named_and_can_be_raised(tmp_path: Path,
                                                             run: Runner) -> None:
    # 64 leaves of ~290 bytes that each inflate to a 1 MiB node: over the default bound.
    data, secret = distinct_bombs(leaves=64)
    arch = tmp_path / "bombs.lbox"
    arch.write_bytes(data)
    pw = _pwfile(tmp_path, secret)
    line = one_line_error(run("ls", arch, "-R", "--password-file", pw), 3)
    assert "--max-tree-amplification" in line
    # Trusted, with the bound raised: it lists (1,088 huge entries, bounded batches).
    res = run("ls", arch, "-R", "--password-file", pw, "--max-tree-amplification", "100000")
    assert res.rc == 0, res.err
    assert len(res.lines) == 64 * 17


def test_right_after_add_recipient_a_stranger_is_told_the_truth(
        tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The newcomer's case: one `keys add-recipient`, then another identity. The older
    superblock slot has no recipient slot at all; the message describes the newest."""
    monkeypatch.setenv("LOCKBOX_PASSWORD", "pw")
    arch = tmp_path / "r.lbox"
    run.ok("create", arch, *WEAK)
    me, other = tmp_path / "me.identity", tmp_path / "other.identity"
    recipient = run.ok("keygen", "-o", me).text.strip()
    run.ok("keygen", "-o", other, "-q")
    run.ok("keys", "add-recipient", arch, recipient)
    monkeypatch.delenv("LOCKBOX_PASSWORD")
    line = one_line_error(run("ls", arch, "-i", other), 6)
    assert "not a recipient" in line and "no recipient slot" not in line
    assert run("ls", arch, "-i", me).rc == 0
