"""Key-directory backups (lockbox.formats.lbox.keybackup; ``lockbox vault backup-keys`` /
``restore-keys``): an archive whose key directory is damaged opens again from a backup."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import lockbox
from lockbox import Argon2Params, cli
from lockbox.errors import IntegrityError, LockboxError, UsageError, WrongKeyError
from lockbox.formats.lbox import keybackup as kb
from lockbox.formats.lbox.keys import Identity
from lockbox.formats.lbox.wire.superblock import ExternalKeydir, decode_superblock
from lockbox.platform import default_crypto

WEAK_ARGON2 = Argon2Params(time_cost=1, memory_kib=64)

FILES = {"a.txt": b"alpha " * 2000, "dir/b.bin": os.urandom(20000)}


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "vault"
    monkeypatch.setenv("LOCKBOX_VAULT_DIR", str(d))
    monkeypatch.delenv("LOCKBOX_PASSWORD", raising=False)
    return d


def _superblock(path: Path) -> bytes:
    return path.read_bytes()[:16384]


def _damage_inline(path: Path) -> None:
    """Flip bytes inside the inline key directory of both superblock slots (their
    checksums fail: as a bad sector would leave them)."""
    raw = bytearray(path.read_bytes())
    for base in (0, 8192):
        assert raw[base:base + 8] == b"LBOX\r\n\x1a\n"
        for i in (48 + 10, 48 + 40, 48 + 60):
            raw[base + i] ^= 0x5A
    path.write_bytes(bytes(raw))


def _damage_inline_keep_crc(path: Path) -> None:
    """Change the inline key directory of both slots and fix their checksums (an edit
    made without the key): the slots decode, the directories do not open."""
    raw = bytearray(path.read_bytes())
    for slot in decode_superblock(_superblock(path)):
        base = slot.slot_no * 8192
        kd, c = struct.unpack_from("<II", raw, base + 40)
        raw[base + 48 + 40] ^= 0x5A
        end = base + 48 + kd + c
        struct.pack_into("<I", raw, end, zlib.crc32(bytes(raw[base:end])))
    path.write_bytes(bytes(raw))
    decode_superblock(_superblock(path))  # still valid slots


def _damage_external(path: Path) -> None:
    """Flip bytes inside the external KEYDIR page every slot points at."""
    slots = decode_superblock(_superblock(path))
    raw = bytearray(path.read_bytes())
    offsets = {s.keydir.page_offset for s in slots if isinstance(s.keydir, ExternalKeydir)}
    assert offsets
    for off in offsets:
        raw[off + 200] ^= 0xFF
        raw[off + 900] ^= 0xFF
    path.write_bytes(bytes(raw))


def _contents(path: Path, **secret: object) -> dict[str, bytes]:
    with lockbox.open(path, **secret) as box:
        assert box.verify().ok
        return {p: box.read_bytes(p) for p in FILES}


def _run(*argv: str) -> int:
    return cli.main(list(argv))


def test_backup_file_round_trip_and_idempotent(make_archive: Callable[..., Path],
                                               vault: Path) -> None:
    path = make_archive(FILES)
    backup, saved, created = kb.backup_keydir(path)
    assert created and saved.startswith(str(vault / "keydirs" / backup.archive_id.hex()))
    assert os.stat(saved).st_mode & 0o777 == 0o600
    assert kb.read_keydir_backup(saved) == backup
    assert kb.backup_keydir(path)[1:] == (saved, False)
    assert kb.keydir_backups(backup.archive_id) == [(saved, backup)]


@pytest.mark.parametrize("damage", ["inline", "inline-crc", "external"])
def test_restore_a_damaged_key_directory(make_archive: Callable[..., Path], vault: Path,
                                         tmp_path: Path, damage: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    crypto = default_crypto()
    ident = Identity.generate(crypto)
    recipients = []
    if damage == "external":  # four recipient slots: too large to be inline
        recipients = [ident.recipient(crypto)] + [
            Identity.generate(crypto).recipient(crypto) for _ in range(3)]
    path = make_archive(FILES, recipients=recipients)
    slots = decode_superblock(_superblock(path))
    assert isinstance(slots[0].keydir, ExternalKeydir) == (damage == "external")
    assert _run("vault", "backup-keys", str(path)) == 0
    assert "saved: the key directory" in capsys.readouterr().out
    {"inline": _damage_inline, "inline-crc": _damage_inline_keep_crc,
     "external": _damage_external}[damage](path)
    with pytest.raises(LockboxError):
        lockbox.open(path, password="pw")
    assert _run("ls", str(path)) != 0
    capsys.readouterr()

    pw = tmp_path / "pw.txt"
    pw.write_text("wrong\n")
    before = path.read_bytes()
    assert _run("vault", "restore-keys", str(path), "--password-file", str(pw)) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "WrongKey" not in err
    assert path.read_bytes() == before
    with pytest.raises(WrongKeyError):
        kb.restore_keydir(path, kb.keydir_backups(slots[0].archive_id)[0][1], password="nope")
    assert path.read_bytes() == before

    pw.write_text("pw\n")
    assert _run("vault", "restore-keys", str(path), "--password-file", str(pw),
                "--dry-run") == 0
    assert path.read_bytes() == before
    assert _run("vault", "restore-keys", str(path), "--password-file", str(pw)) == 0
    assert "restored the key directory" in capsys.readouterr().out
    assert _contents(path, password="pw") == FILES
    if damage == "external":
        assert _contents(path, identity=ident) == FILES
    assert _run("ls", str(path), "--password-file", str(pw)) == 0
    assert _run("verify", str(path), "--password-file", str(pw)) == 0
    # Both superblock slots hold the restored directory: the older one opens too.
    new = decode_superblock(_superblock(path))
    assert len(new) == 2
    with lockbox.open(path, password="pw", generation=new[1].generation) as box:
        assert box.generation == new[1].generation


def test_backup_of_another_archive_is_refused(make_archive: Callable[..., Path],
                                              vault: Path) -> None:
    one, other = make_archive(FILES), make_archive(FILES)
    backup = kb.archive_keydir(other)
    _damage_inline(one)
    before = one.read_bytes()
    with pytest.raises(UsageError, match="the backup is of archive"):
        kb.restore_keydir(one, backup, password="pw")
    assert one.read_bytes() == before


def test_stale_backup_restores_with_a_warning(make_archive: Callable[..., Path],
                                              vault: Path) -> None:
    path = make_archive(FILES)
    backup = kb.archive_keydir(path)
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_password("later", WEAK_ARGON2)
    assert _contents(path, password="later") == FILES
    _damage_inline(path)
    warnings: list[str] = []
    report = kb.restore_keydir(path, backup, password="pw", warn=warnings.append)
    assert report.stale and report.generation is not None
    assert len(warnings) == 1 and "added after the backup are lost" in warnings[0]
    assert _contents(path, password="pw") == FILES
    with pytest.raises(WrongKeyError):
        lockbox.open(path, password="later")


def test_tampered_backup_is_refused(make_archive: Callable[..., Path], vault: Path,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_archive(FILES)
    _, saved, _ = kb.backup_keydir(path)
    data = bytearray(Path(saved).read_bytes())
    data[100] ^= 0x01
    bad = tmp_path / "bad.lbkd"
    bad.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="damaged"):
        kb.read_keydir_backup(bad)
    before = path.read_bytes()
    pw = tmp_path / "pw.txt"
    pw.write_text("pw\n")
    assert _run("vault", "restore-keys", str(path), "--backup", str(bad),
                "--password-file", str(pw)) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "damaged" in err
    assert path.read_bytes() == before
    with pytest.raises(LockboxError):
        kb.read_keydir_backup(tmp_path / "pw.txt")


def test_cli_without_a_backup_or_an_archive(make_archive: Callable[..., Path], vault: Path,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = make_archive(FILES)
    pw = tmp_path / "pw.txt"
    pw.write_text("pw\n")
    assert _run("vault", "restore-keys", str(path), "--password-file", str(pw)) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no key-directory backup" in err
    text = tmp_path / "not.lbox"
    text.write_bytes(b"hello\n" * 5000)
    assert _run("vault", "backup-keys", str(text)) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a lockbox archive" in err
    assert not (vault / "keydirs").exists()
