"""Key-directory backups: save an archive's key directory, restore it when the archive's
own is damaged (``lockbox vault backup-keys`` / ``restore-keys``; docs/VAULT.md
"Key-directory backups", docs/FORMAT.md §11 "Restoring a key directory").

The key directory is cleartext (FORMAT §6), so a backup needs no secret and is not one.
A restore unlocks the BACKUP's key slots with the user's secret, checks the backup's key
commitment, opens the archive's newest commit with that content key and the backup's
directory in place of its own (the commit frame must authenticate under the key: one
archive, one content key), then commits the backup's directory afresh as a key change
does (a KEYDIR page, two commits), so that the archive opens normally again.

Backup file (``.lbkd``)::

    magic "LBOXKDB1" | version:u8 (=1) | archive_id[16] | generation:u64le |
    keydir_size:u32le | keydir_sha256[32] | keydir[keydir_size] | file_sha256[32]

``file_sha256`` is SHA-256 of everything before it: a checksum against damage, not an
authentication (the restore's unlock, key commitment and commit AEAD are that).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ...drivers import Flow, Read, run_sync
from ...errors import FormatError, IntegrityError, LockboxError, UsageError
from ...ranges import ByteRange
from .keys import Identity, LinkSecret, UnlockLimits, as_link_secret, unlock
from .opening import _fetch_keydir_flow, _slot_ignoring_crc, open_flow
from .wire.constants import MAX_KEYDIR_SIZE, SLOT_COUNT, SLOT_MAGIC, SLOT_SIZE, SUPERBLOCK_SIZE
from .wire.keydir import decode_key_directory
from .wire.superblock import decode_slot, decode_superblock

__all__ = ["KeydirBackup", "RestoreReport", "BACKUP_SUFFIX", "read_keydir_backup",
           "archive_keydir", "archive_ids", "save_keydir_backup", "keydir_backups",
           "backup_keydir", "restore_keydir"]

BACKUP_MAGIC = b"LBOXKDB1"
BACKUP_VERSION = 1
BACKUP_SUFFIX = ".lbkd"
_HEADER = struct.Struct("<8sB16sQI32s")
_MAX_BACKUP_SIZE = _HEADER.size + MAX_KEYDIR_SIZE + 32
BACKUPS_DIR = "keydirs"

Warn = Callable[[str], None]


@dataclass(frozen=True)
class KeydirBackup:
    """One archive's key directory as it was at ``generation``."""

    archive_id: bytes
    generation: int
    keydir: bytes

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.keydir).digest()

    @property
    def file_name(self) -> str:
        return f"{self.generation}-{self.sha256.hex()[:16]}{BACKUP_SUFFIX}"

    def encode(self) -> bytes:
        body = _HEADER.pack(BACKUP_MAGIC, BACKUP_VERSION, self.archive_id, self.generation,
                            len(self.keydir), self.sha256) + self.keydir
        return body + hashlib.sha256(body).digest()

    @classmethod
    def decode(cls, data: bytes, where: str = "key-directory backup") -> KeydirBackup:
        """Strict: FormatError (not a backup, another version), IntegrityError (damaged:
        a checksum or the key directory does not decode)."""
        if len(data) < _HEADER.size + 32 or not data.startswith(BACKUP_MAGIC):
            raise FormatError(f"{where}: not a lockbox key-directory backup")
        _, version, archive_id, generation, size, digest = _HEADER.unpack_from(data, 0)
        if version != BACKUP_VERSION:
            raise FormatError(f"{where}: backup version {version} is not supported")
        if hashlib.sha256(data[:-32]).digest() != data[-32:]:
            raise IntegrityError(f"{where}: damaged (its checksum does not match)")
        keydir = data[_HEADER.size:-32]
        if len(keydir) != size or hashlib.sha256(keydir).digest() != digest or generation < 1:
            raise IntegrityError(f"{where}: damaged (its key directory does not match)")
        try:
            decode_key_directory(keydir)
        except LockboxError as exc:
            raise IntegrityError(f"{where}: its key directory does not decode: {exc}") from exc
        return cls(bytes(archive_id), generation, keydir)


@dataclass(frozen=True)
class RestoreReport:
    """What :func:`restore_keydir` did (or, ``dry_run``, would do)."""

    archive_id: str
    backup_generation: int
    based_on: int  # the generation whose commit the backup's key opened
    generation: int | None  # the new generation (None: dry run)
    stale: bool  # the commit names another key directory (keys changed after the backup)
    key_slots: int


def read_keydir_backup(path: str | os.PathLike[str]) -> KeydirBackup:
    """A backup file, decoded strictly (see :meth:`KeydirBackup.decode`)."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            data = f.read(_MAX_BACKUP_SIZE + 1)
    except OSError as e:
        raise UsageError(f"cannot read the key-directory backup {where}: "
                         f"{e.strerror or e}") from e
    if len(data) > _MAX_BACKUP_SIZE:
        raise FormatError(f"{where}: larger than any key-directory backup")
    return KeydirBackup.decode(data, where)


def _keydir_flow() -> Flow[KeydirBackup]:
    blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
    errors: list[str] = []
    for slot in decode_superblock(blobs[0]):
        try:
            keydir = yield from _fetch_keydir_flow(slot)
            decode_key_directory(keydir)
        except LockboxError as exc:
            errors.append(f"generation {slot.generation}: {exc}")
            continue
        return KeydirBackup(slot.archive_id, slot.generation, keydir)
    raise IntegrityError("no readable key directory in this archive (" + "; ".join(errors)
                         + ")")


def _run_on(path: str | os.PathLike[str], flow: Flow[KeydirBackup]) -> KeydirBackup:
    from ...sources import open_source

    source = open_source(os.fspath(path))
    try:
        return run_sync(flow, source)
    finally:
        source.close()


def archive_keydir(archive_path: str | os.PathLike[str]) -> KeydirBackup:
    """The key directory of the newest superblock slot whose directory is readable
    (inline, or its KEYDIR page checked as opening does) and decodes. No secret: the
    directory is cleartext; a keyless edit is caught at restore time (unlock, key
    commitment, the commit's AEAD)."""
    return _run_on(archive_path, _keydir_flow())


def archive_ids(archive_path: str | os.PathLike[str]) -> set[bytes]:
    """The archive ids the superblock's slots name (a slot whose checksum fails
    included: its id is read from its header)."""
    with open(os.fspath(archive_path), "rb") as f:
        buf = f.read(SUPERBLOCK_SIZE)
    ids: set[bytes] = set()
    for no in range(SLOT_COUNT):
        region = memoryview(buf)[no * SLOT_SIZE:(no + 1) * SLOT_SIZE]
        if bytes(region[:len(SLOT_MAGIC)]) != SLOT_MAGIC:
            continue
        try:
            ids.add(decode_slot(region, no).archive_id)
        except LockboxError:
            slot = _slot_ignoring_crc(region, no)
            if slot is not None:
                ids.add(slot.archive_id)
    return ids


def _backups_dir(archive_id: bytes, vault_directory: str | None, *, create: bool) -> str:
    from ...vault.paths import ensure_private_dir, vault_dir

    base = os.path.join(vault_dir(create=create, directory=vault_directory), BACKUPS_DIR)
    path = os.path.join(base, archive_id.hex())
    if create:
        ensure_private_dir(base, "the key-directory backups directory")
        ensure_private_dir(path, "the key-directory backups directory")
    return path


def save_keydir_backup(backup: KeydirBackup, vault_directory: str | None = None
                       ) -> tuple[str, bool]:
    """Store ``backup`` in the vault (``keydirs/<archive id>/<generation>-<sha>.lbkd``,
    0600, atomic). Returns (path, created): False when that very backup was there."""
    from ...fileio import write_atomically
    from ...vault.paths import read_private_file

    path = os.path.join(_backups_dir(backup.archive_id, vault_directory, create=True),
                        backup.file_name)
    current = read_private_file(path, "the key-directory backup", _MAX_BACKUP_SIZE)
    if current is not None:
        if KeydirBackup.decode(current, path) == backup:
            return path, False
        raise IntegrityError(f"{path} exists with other contents (damaged?): move it away "
                             "and back up again")
    write_atomically(path, backup.encode(), overwrite=False, tag="new", mode=0o600,
                     what=f"cannot write the key-directory backup {path}")
    return path, True


def keydir_backups(archive_id: bytes, vault_directory: str | None = None
                   ) -> list[tuple[str, KeydirBackup]]:
    """The vault's backups of ``archive_id``, newest generation first; a damaged file
    is skipped (reading it with ``--backup`` says why)."""
    from ...vault.paths import read_private_file

    try:
        directory = _backups_dir(archive_id, vault_directory, create=False)
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[tuple[str, KeydirBackup]] = []
    for name in names:
        if not name.endswith(BACKUP_SUFFIX):
            continue
        path = os.path.join(directory, name)
        try:
            data = read_private_file(path, "the key-directory backup", _MAX_BACKUP_SIZE)
            if data is None:
                continue
            backup = KeydirBackup.decode(data, path)
        except LockboxError:
            continue
        if backup.archive_id == archive_id:
            found.append((path, backup))
    found.sort(key=lambda f: f[1].generation, reverse=True)
    return found


def backup_keydir(archive_path: str | os.PathLike[str], vault_directory: str | None = None
                  ) -> tuple[KeydirBackup, str, bool]:
    """Back the archive's key directory up into the vault: (backup, path, created)."""
    backup = archive_keydir(archive_path)
    path, created = save_keydir_backup(backup, vault_directory)
    return backup, path, created


def restore_keydir(archive_path: str | os.PathLike[str], backup: KeydirBackup, *,
                   password: str | bytes | None = None, identity: Identity | None = None,
                   link: LinkSecret | str | None = None, limits: UnlockLimits | None = None,
                   dry_run: bool = False, warn: Warn | None = None) -> RestoreReport:
    """Restore ``backup`` as the archive's key directory (see the module's docstring).

    UsageError: the backup is of another archive. WrongKeyError: the secret opens none
    of the backup's key slots, or the backup does not commit to that key.
    IntegrityError: the archive's newest commit does not open with that key. ``warn``
    is told when the archive's keys changed after the backup (its later slots are lost).
    With ``dry_run`` everything is checked and nothing written."""
    from ...platform import default_codec, default_crypto
    from ...protocol import OpenOptions
    from ...registry import by_name
    from ...sources import open_source
    from .archive import Lockbox
    from .session import LboxSession

    where = os.fspath(archive_path)
    ids = archive_ids(where)
    if backup.archive_id not in ids:
        theirs = ", ".join(sorted(i.hex() for i in ids)) or "none readable"
        raise UsageError(f"the backup is of archive {backup.archive_id.hex()}, not of {where} "
                         f"(archive id {theirs})")
    crypto, codec = default_crypto(), default_codec()
    directory = decode_key_directory(backup.keydir)
    content_key, _ = unlock(crypto, backup.archive_id, directory.slots, password=password,
                            identity=identity, link=as_link_secret(link),
                            commitment=directory.key_commitment, limits=limits)
    known = (backup.archive_id, content_key)
    source = open_source(where)
    try:
        from ...cache import PageCache

        view = run_sync(open_flow(crypto, codec, password=None, identity=None,
                                  cache=PageCache(), known_key=known,
                                  keydir_override=backup.keydir), source)
    except BaseException:
        source.close()
        raise
    stale = view.commit.keydir_sha256 != backup.sha256
    if stale and warn is not None:
        warn(f"generation {view.generation} of the archive names another key directory than "
             f"this backup of generation {backup.generation} (keys changed after the "
             "backup): the backup's key commitment proves the same content key; key slots "
             "added after the backup are lost, slots removed after it are back")
    report = RestoreReport(backup.archive_id.hex(), backup.generation, view.generation, None,
                           stale, len(directory.slots))
    if dry_run:
        source.close()
        return report
    box = Lockbox._from_session(source, LboxSession(view, source.size), spec=by_name("lbox"),
                                options=OpenOptions(), path=where, location=where,
                                close_source=True)
    try:
        box.keydir_override = backup.keydir
        with box.writer() as w:
            w.keys.rewrite()
            w.commit()
        box.keydir_override = None
        generation = box.generation
    finally:
        box.close()
    return RestoreReport(report.archive_id, report.backup_generation, report.based_on,
                         generation, stale, report.key_slots)
