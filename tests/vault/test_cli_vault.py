"""``lockbox vault ...`` and ``lockbox agent ...`` through their parsers (the lead
registers them in ``lockbox.cli``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockbox import cli, cli_vault
from lockbox.errors import UsageError, VaultError, WrongKeyError


def run(*argv: str) -> int:
    """``lockbox ARGV`` in-process, through ``cli.main`` (its error -> exit code mapping)."""
    return cli.main(list(argv))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("LOCKBOX_VAULT_DIR", str(tmp_path / "vault"))
    monkeypatch.delenv("LOCKBOX_VAULT_PASSPHRASE", raising=False)
    pw = tmp_path / "pass.txt"
    pw.write_text("vault pass\n")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    return {"pw": str(pw), "wrong": str(wrong), "dir": str(tmp_path / "vault")}


def test_identities(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("vault", "list", "--passphrase-file", env["pw"]) == UsageError.exit_code
    assert "lockbox vault init" in capsys.readouterr().err
    assert run("vault", "init", "--passphrase-file", env["pw"], "--scrypt-log-n", "10") == 0
    assert run("vault", "init", "--passphrase-file", env["pw"]) == UsageError.exit_code
    capsys.readouterr()
    assert run("vault", "add-identity", "laptop", "--passphrase-file", env["pw"]) == 0
    recipient = capsys.readouterr().out.strip()
    assert recipient.startswith("lockbox-recipient-1:")
    assert run("vault", "list", "--json", "--passphrase-file", env["pw"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "laptop" and len(entry["fingerprint"]) == 16
    assert run("vault", "export", "laptop", "--passphrase-file", env["pw"]) == 0
    identity = capsys.readouterr().out.strip()
    assert identity.startswith("LOCKBOX-IDENTITY-1:")
    assert run("vault", "export", "laptop", "--recipient", "--passphrase-file",
               env["pw"]) == 0
    assert capsys.readouterr().out.strip() == recipient
    # an existing identity file, by --from
    id_file = Path(env["dir"]).parent / "id.txt"
    id_file.write_text("# mine\n" + identity + "\n")
    assert run("vault", "add-identity", "copy", "--from", str(id_file),
               "--passphrase-file", env["pw"]) == 0
    assert capsys.readouterr().out.strip() == recipient
    assert run("vault", "list", "--passphrase-file", env["wrong"]) == WrongKeyError.exit_code
    assert "wrong passphrase" in capsys.readouterr().err
    assert run("vault", "rm", "laptop", "--passphrase-file", env["pw"]) == 0
    assert "removed identity 'laptop'" in capsys.readouterr().out
    assert run("vault", "list", "--passphrase-file", env["pw"]) == 0
    assert capsys.readouterr().out.split()[0] == "copy"


def test_no_terminal_no_passphrase(env: dict[str, str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run("vault", "init", "--passphrase-file", env["pw"], "--scrypt-log-n", "10") == 0
    capsys.readouterr()
    assert run("vault", "list") == UsageError.exit_code  # stdin is not a terminal here
    assert "LOCKBOX_VAULT_PASSPHRASE" in capsys.readouterr().err


def test_recipients(env: dict[str, str], capsys: pytest.CaptureFixture[str],
                    tmp_path: Path) -> None:
    from lockbox.formats.lbox.keys import Identity
    from lockbox.platform import default_crypto

    text = Identity(bytes(64)).recipient(default_crypto()).encode()
    assert run("vault", "add-recipient", "alice", text) == 0
    rfile = tmp_path / "bob.txt"
    rfile.write_text("# bob\n" + Identity(bytes([1]) * 64).recipient(default_crypto()).encode())
    assert run("vault", "add-recipient", "bob", str(rfile)) == 0
    assert run("vault", "add-recipient", "bob", text) == UsageError.exit_code
    assert run("vault", "add-recipient", "bob", text, "--replace") == 0
    capsys.readouterr()
    assert run("vault", "recipients", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == ["alice", "bob"]
    assert listed[1]["recipient"] == text
    assert run("vault", "rm-recipient", "alice") == 0
    assert run("vault", "rm-recipient", "alice") == 7  # NotFoundError
    assert run("vault", "add-recipient", "x", "lockbox-recipient-1:AAAA") == 3  # FormatError


def test_agent_commands(agent_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    sock = os.path.join(agent_dir, "agent.sock")
    assert run("agent", "status", "--socket", sock) == 1
    assert "no unlock agent" in capsys.readouterr().out
    assert run("agent", "start", "--ttl", "2m", "--socket", sock) == 0
    try:
        assert "kept 2 min" in capsys.readouterr().out
        assert run("agent", "start", "--socket", sock) == VaultError.exit_code
        assert "already running" in capsys.readouterr().err
        assert run("agent", "status", "--json", "--socket", sock) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["keys"] == 0 and status["ttl"] == 120
        assert run("agent", "lock", "--socket", sock) == 0
        assert "forgot 0 keys" in capsys.readouterr().out
    finally:
        assert run("agent", "stop", "--socket", sock) == 0
    assert "stopped" in capsys.readouterr().out
    assert run("agent", "stop", "--socket", sock) == 0
    assert "no unlock agent" in capsys.readouterr().out


@pytest.mark.parametrize("text, seconds", [("900", 900), ("90s", 90), ("15m", 900),
                                           ("2h", 7200), ("1d", 86400), ("1.5m", 90)])
def test_parse_ttl(text: str, seconds: float) -> None:
    assert cli_vault.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "15x", "", "9999d"])
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli_vault.parse_ttl(text)


def test_parsers_import_nothing_of_the_vault(capsys: pytest.CaptureFixture[str]) -> None:
    """The parsers are built for every command: their defaults are resolved when a
    command runs, and the help text states the real default."""
    code = ("import sys, lockbox.cli as c; c.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('lockbox.vault') "
            "or m in ('socket', 'lockbox.formats.sync.vault')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"
    from lockbox.formats.sync.vault import DEFAULT_SCRYPT_LOG_N
    from lockbox.vault.protocol import DEFAULT_TTL

    assert run("vault", "init", "--help") == 0
    assert f"(default: {DEFAULT_SCRYPT_LOG_N}, as age" in " ".join(capsys.readouterr().out.split())
    assert DEFAULT_TTL == 15 * 60  # the agent's --help says 15m
