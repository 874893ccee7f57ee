"""Where the vault and the agent live, and the refusal of places that are not private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lockbox.errors import LimitExceededError, VaultError
from lockbox.vault import paths

ROOT = os.geteuid() == 0
NOBODY = 65534


def test_vault_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.delenv("LOCKBOX_VAULT_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    home = paths.vault_dir()
    assert home == str(tmp_path / "home" / ".local" / "share" / "lockbox" / "vault")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert paths.vault_dir() == str(tmp_path / "data" / "lockbox" / "vault")
    monkeypatch.setenv("LOCKBOX_VAULT_DIR", str(tmp_path / "mine"))
    assert paths.vault_dir() == str(tmp_path / "mine")
    for made in (home, str(tmp_path / "data" / "lockbox" / "vault"), str(tmp_path / "mine")):
        assert stat.S_IMODE(os.stat(made).st_mode) == 0o700


def test_agent_socket_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKBOX_AGENT_SOCK", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert paths.agent_socket_path() == f"/tmp/lockbox-{os.geteuid()}/agent.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert paths.agent_socket_path() == "/run/user/1000/lockbox/agent.sock"
    monkeypatch.setenv("LOCKBOX_AGENT_SOCK", "/somewhere/a.sock")
    assert paths.agent_socket_path() == "/somewhere/a.sock"


def test_a_missing_dir_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        paths.vault_dir(create=False, directory=str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777])
def test_a_dir_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "v"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(VaultError, match="accessible to other users"):
        paths.vault_dir(directory=str(d))


def test_a_symlinked_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(VaultError, match="symlink"):
        paths.vault_dir(directory=str(tmp_path / "link"))


def test_a_file_in_place_of_the_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "v").write_text("x")
    with pytest.raises(VaultError, match="not a directory"):
        paths.vault_dir(directory=str(tmp_path / "v"))


@pytest.mark.skipif(not ROOT, reason="needs root to give a directory to another user")
def test_a_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "v"
    d.mkdir(mode=0o700)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(VaultError, match=f"belongs to uid {NOBODY}"):
        paths.vault_dir(directory=str(d))


def test_read_private_file_refuses_shared_linked_and_oversized_files(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    f.chmod(0o600)
    assert paths.read_private_file(str(f), "the file", 100) == b"x" * 100
    assert paths.read_private_file(str(tmp_path / "none"), "the file", 100) is None
    with pytest.raises(LimitExceededError):
        paths.read_private_file(str(f), "the file", 99)
    (tmp_path / "link").symlink_to(f)
    with pytest.raises(VaultError, match="symlink"):
        paths.read_private_file(str(tmp_path / "link"), "the file", 100)
    f.chmod(0o644)
    with pytest.raises(VaultError, match="accessible to other users"):
        paths.read_private_file(str(f), "the file", 100)


def test_lstat_socket_refuses_what_is_not_a_socket_of_ours(tmp_path: Path) -> None:
    assert paths.lstat_socket(str(tmp_path / "none")) is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaultError, match="not a socket"):
        paths.lstat_socket(str(tmp_path / "file"))
    (tmp_path / "link").symlink_to(tmp_path / "none")
    with pytest.raises(VaultError, match="symlink"):
        paths.lstat_socket(str(tmp_path / "link"))
