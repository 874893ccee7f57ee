"""The identities store: round trips, wrong passphrases, damage, atomic writes, age."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import stat
import time
from pathlib import Path

import pytest

from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    NotFoundError,
    StorageError,
    TruncatedError,
    UsageError,
    VaultError,
    WrongKeyError,
)
from lockbox.formats.lbox.keys import Identity
from lockbox.formats.sync.vault import decrypt_vault, encrypt_vault
from lockbox.platform import default_crypto
from lockbox.vault.store import BACKUP_SUFFIX, Vault

PASS = "correct horse"
LOG_N = 10  # cheap scrypt for tests (age's default is 18)


@pytest.fixture
def vdir(tmp_path: Path) -> str:
    return str(tmp_path / "vault")


def _new(vdir: str) -> Vault:
    return Vault.create(PASS, directory=vdir, scrypt_log_n=LOG_N)


def test_round_trip(vdir: str) -> None:
    vault = _new(vdir)
    made = vault.add_identity("laptop")
    given = Identity(bytes(range(64)))
    assert vault.add_identity("backup", given) == given
    again = Vault.open(PASS, directory=vdir)
    assert again.names() == ["laptop", "backup"]
    assert again.export("laptop") == made.encode()
    assert again.identity("backup") == given
    crypto = default_crypto()
    listed = {i.name: i for i in again.list()}
    assert listed["laptop"].fingerprint == made.recipient(crypto).fingerprint.hex()
    assert listed["backup"].created.endswith("Z")
    assert again.recipient("backup") == given.recipient(crypto).encode()
    again.remove("laptop")
    assert Vault.open(PASS, directory=vdir).names() == ["backup"]
    with pytest.raises(NotFoundError):
        again.export("laptop")
    assert stat.S_IMODE(os.stat(vdir).st_mode) == 0o700
    for name in os.listdir(vdir):
        assert stat.S_IMODE(os.stat(os.path.join(vdir, name)).st_mode) == 0o600


def test_the_backup_holds_the_previous_version(vdir: str) -> None:
    vault = _new(vdir)
    vault.add_identity("one")
    vault.add_identity("two")
    with open(vault.path + BACKUP_SUFFIX, "rb") as f:
        previous = json.loads(decrypt_vault(f.read(), PASS))
    assert [r["name"] for r in previous["identities"]] == ["one"]


def test_wrong_passphrase(vdir: str) -> None:
    _new(vdir).add_identity("laptop")
    with pytest.raises(WrongKeyError, match="wrong passphrase for the vault"):
        Vault.open("not it", directory=vdir)


def test_create_never_replaces_and_open_needs_a_vault(vdir: str) -> None:
    with pytest.raises(UsageError, match="no vault"):
        Vault.open(PASS, directory=vdir)
    assert not Vault.exists(vdir) and not os.path.exists(vdir)  # looking made nothing
    _new(vdir).add_identity("laptop")
    assert Vault.exists(vdir)
    with pytest.raises(UsageError, match="exists already"):
        Vault.create("other", directory=vdir, scrypt_log_n=LOG_N)
    assert Vault.open(PASS, directory=vdir).names() == ["laptop"]
    with pytest.raises(UsageError, match="empty"):
        Vault.create("", directory=vdir + "2")


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a/b", "a b", "..", "x" * 65, "é"])
def test_bad_names_are_refused(vdir: str, name: str) -> None:
    vault = _new(vdir)
    with pytest.raises(UsageError, match="bad identity name"):
        vault.add_identity(name)


def test_a_name_is_taken_once(vdir: str) -> None:
    vault = _new(vdir)
    vault.add_identity("laptop")
    with pytest.raises(UsageError, match="already has"):
        vault.add_identity("laptop")


def _damage(path: str, edit) -> None:  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data = edit(data)
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("edit, error", [
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), IntegrityError),      # the payload's last tag
    (lambda d: d[:len(d) - 40], (IntegrityError, TruncatedError)),  # cut short
    (lambda d: b"not an age file at all", FormatError),
    (lambda d: d[:30], (FormatError, TruncatedError)),              # the header cut
], ids=["payload", "cut", "foreign", "header-cut"])
def test_damage_is_one_helpful_line(vdir: str, edit, error) -> None:  # type: ignore[no-untyped-def]
    vault = _new(vdir)
    vault.add_identity("laptop")
    vault.add_identity("phone")  # so that there is a backup
    _damage(vault.path, edit)
    with pytest.raises(error) as info:
        Vault.open(PASS, directory=vdir)
    message = str(info.value)
    assert "\n" not in message and vault.path in message
    assert "previous version" in message and BACKUP_SUFFIX in message
    # and the backup is how to go back
    shutil.copyfile(vault.path + BACKUP_SUFFIX, vault.path)
    assert Vault.open(PASS, directory=vdir).names() == ["laptop"]


def test_an_age_file_that_is_not_a_vault(vdir: str) -> None:
    vault = _new(vdir)
    with open(vault.path, "wb") as f:
        f.write(encrypt_vault(b"hello", PASS, scrypt_log_n=LOG_N))
    with pytest.raises(FormatError, match="not JSON"):
        Vault.open(PASS, directory=vdir)
    with open(vault.path, "wb") as f:
        doc = {"lockbox_vault": 1, "identities": [{"name": "x", "identity": "nope",
                                                   "created": "now"}]}
        f.write(encrypt_vault(json.dumps(doc).encode(), PASS, scrypt_log_n=LOG_N))
    with pytest.raises(FormatError, match="identity"):
        Vault.open(PASS, directory=vdir)


def test_scrypt_work_is_bounded_before_deriving(vdir: str) -> None:
    vault = Vault.create(PASS, directory=vdir, scrypt_log_n=12)
    with pytest.raises(LimitExceededError, match=r"2\^12"):
        Vault.open(PASS, directory=vdir, max_scrypt_log_n=11)
    # a hostile file asking for 2^40 is refused at once, whatever the passphrase
    with open(vault.path, "rb") as f:
        data = f.read()
    header_end = data.index(b"\n", data.index(b"-> scrypt"))
    line = data[data.index(b"-> scrypt"):header_end]
    with open(vault.path, "wb") as f:
        f.write(data.replace(line, line.rsplit(b" ", 1)[0] + b" 40"))
    with pytest.raises(LimitExceededError):
        Vault.open("anything", directory=vdir)


def test_a_failed_write_leaves_the_old_vault(vdir: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    vault = _new(vdir)
    vault.add_identity("laptop")
    real_replace = os.replace

    def failing_replace(src, dst, *a, **kw):  # type: ignore[no-untyped-def]
        if os.fspath(dst) == vault.path:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError, match="No space left"):
        vault.add_identity("phone")
    monkeypatch.undo()
    assert Vault.open(PASS, directory=vdir).names() == ["laptop"]
    assert sorted(n for n in os.listdir(vdir) if not n.startswith(".lock")) == [
        "identities.age", "identities.age.bak"]  # no temporary file left behind
    vault.add_identity("phone")  # the object is still usable
    assert Vault.open(PASS, directory=vdir).names() == ["laptop", "phone"]


def test_a_change_made_meanwhile_is_not_overwritten(vdir: str) -> None:
    first = _new(vdir)
    second = Vault.open(PASS, directory=vdir)
    first.add_identity("laptop")
    with pytest.raises(VaultError, match="changed since it was opened"):
        second.add_identity("phone")
    assert Vault.open(PASS, directory=vdir).names() == ["laptop"]


def test_a_vault_file_others_can_read_is_refused(vdir: str) -> None:
    vault = _new(vdir)
    os.chmod(vault.path, 0o644)
    with pytest.raises(VaultError, match="accessible to other users"):
        Vault.open(PASS, directory=vdir)


@pytest.mark.skipif(shutil.which("age") is None, reason="age is not installed")
def test_age_opens_the_vault(vdir: str, tmp_path: Path) -> None:
    """Interoperability: the real age CLI decrypts the vault (it reads the passphrase from
    a terminal: a pseudo-terminal here)."""
    vault = _new(vdir)
    identity = vault.add_identity("laptop")
    out = tmp_path / "plain.json"
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execvp("age", ["age", "-d", "-o", str(out), vault.path])
        finally:
            os._exit(127)
    seen = b""
    done, status = 0, 0
    deadline = time.monotonic() + 20  # hang guard
    try:
        while b"passphrase" not in seen.lower() and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                seen += os.read(fd, 1024)
        os.write(fd, PASS.encode() + b"\n")
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                try:
                    if not os.read(fd, 1024):
                        break
                except OSError:  # the child closed the terminal
                    break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            os.kill(pid, 9)
        if not done:
            done, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    doc = json.loads(out.read_text())
    assert doc["identities"][0]["identity"] == identity.encode()
