"""The identities store: named private identities, encrypted at rest under a passphrase.

The file ``identities.age`` in the vault directory is an age file (age-encryption.org/v1)
encrypted to the passphrase (one scrypt stanza): ``age -d identities.age`` opens it. Its
plaintext is a small JSON document::

    {"lockbox_vault": 1,
     "identities": [{"name": "laptop", "identity": "LOCKBOX-IDENTITY-1:...",
                     "created": "2026-12-04T18:50:19Z"}, ...]}

Encryption and the bounded decryption are those of ``.sync`` vaults
(:func:`lockbox.formats.sync.vault.encrypt_vault` / :func:`decrypt_vault`: the scrypt work
factor named by the file is checked against ``max_scrypt_log_n`` before any derivation,
then pyrage decrypts). Every change is written atomically (a temporary file, fsync,
rename, directory fsync) under the vault's lock, after the previous version is copied to
``identities.age.bak`` the same way; a change made by another process since this one
opened the vault is refused rather than overwritten.

Errors: WrongKeyError (wrong passphrase), FormatError / IntegrityError / TruncatedError /
LimitExceededError (a damaged or foreign file: one line naming the file and the backup),
UsageError (a bad or duplicate name, a vault that exists already or does not exist),
VaultError (unsafe permissions, a concurrent change), StorageError (a failed write: the
vault keeps its previous version).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from ..errors import (
    FormatError,
    LockboxError,
    UnsupportedVersionError,
    UsageError,
    VaultError,
    WrongKeyError,
)
from ..fileio import write_atomically
from ..formats.lbox.keys import Identity
from ..formats.sync.vault import (
    DEFAULT_MAX_SCRYPT_LOG_N,
    DEFAULT_SCRYPT_LOG_N,
    decrypt_vault,
    encrypt_vault,
    parse_age_header,
    scrypt_work_factor,
)
from .names import check_name
from .paths import dir_lock, read_private_file, vault_dir, vault_dir_path

__all__ = ["Vault", "IdentityInfo", "IDENTITIES_FILE", "BACKUP_SUFFIX", "MAX_VAULT_FILE_SIZE",
           "DOCUMENT_VERSION"]

IDENTITIES_FILE = "identities.age"
BACKUP_SUFFIX = ".bak"
MAX_VAULT_FILE_SIZE = 4 * 1024 * 1024  # an identity is ~150 bytes of JSON
DOCUMENT_VERSION = 1


@dataclass(frozen=True)
class IdentityInfo:
    """What ``lockbox vault list`` shows of an identity (nothing secret)."""

    name: str
    fingerprint: str  # the recipient's display fingerprint (hex): never stored anywhere
    created: str      # UTC, ISO 8601 ("2026-12-04T18:50:19Z")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _crypto() -> Any:
    from ..platform import default_crypto

    return default_crypto()


def _again(exc: LockboxError, message: str) -> LockboxError:
    return type(exc)(message)


def _decode_document(plaintext: bytes, path: str) -> list[dict[str, str]]:
    """The identity records of a decrypted vault, validated (FormatError naming ``path``)."""
    where = f"the vault {path}"
    try:
        doc = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FormatError(f"{where} decrypted, but it does not hold a lockbox vault "
                          "document (not JSON)") from None
    if not isinstance(doc, dict) or "lockbox_vault" not in doc:
        raise FormatError(f"{where} decrypted, but it does not hold a lockbox vault document")
    version = doc["lockbox_vault"]
    if version != DOCUMENT_VERSION:
        if isinstance(version, int) and version > DOCUMENT_VERSION:
            raise UnsupportedVersionError(f"{where} is of version {version}, written by a "
                                          "newer lockbox: upgrade to use it")
        raise FormatError(f"{where}: bad document version {version!r}")
    records = doc.get("identities")
    if not isinstance(records, list):
        raise FormatError(f"{where}: 'identities' is not a list")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for record in records:
        if not isinstance(record, dict) or not all(
                isinstance(record.get(k), str) for k in ("name", "identity", "created")):
            raise FormatError(f"{where}: an identity record is malformed")
        try:
            name = check_name(record["name"], "identity name")
            Identity.decode(record["identity"])
        except (UsageError, FormatError) as e:
            raise FormatError(f"{where}: {e}") from None
        if name in seen:
            raise FormatError(f"{where}: the name {name!r} appears twice")
        seen.add(name)
        out.append({"name": name, "identity": record["identity"],
                    "created": record["created"]})
    return out


def _encode_document(records: list[dict[str, str]]) -> bytes:
    return json.dumps({"lockbox_vault": DOCUMENT_VERSION, "identities": records},
                      indent=1).encode("utf-8")


class Vault:
    """An opened identities store. Make one with :meth:`create` or :meth:`open`; each
    change (:meth:`add_identity`, :meth:`remove`) is written at once."""

    def __init__(self, path: str, passphrase: str, scrypt_log_n: int,
                 records: list[dict[str, str]], digest: bytes) -> None:
        self.path = path
        self._passphrase = passphrase
        self.scrypt_log_n = scrypt_log_n
        self._records = records
        self._digest = digest  # SHA-256 of the file as it was read or last written

    # -- opening -----------------------------------------------------------------------

    @staticmethod
    def file_path(directory: str | None = None, *, create: bool = True) -> str:
        """Where the identities file is (the vault directory is checked, and made when
        ``create``; FileNotFoundError when it is missing and not ``create``)."""
        return os.path.join(vault_dir(directory=directory, create=create), IDENTITIES_FILE)

    @classmethod
    def exists(cls, directory: str | None = None) -> bool:
        """Whether there is a vault (nothing is created; VaultError for an unsafe one)."""
        try:
            return os.path.lexists(cls.file_path(directory, create=False))
        except FileNotFoundError:
            return False

    @classmethod
    def create(cls, passphrase: str, *, directory: str | None = None,
               scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N) -> Vault:
        """A new, empty vault. UsageError when one exists (it is never replaced) or the
        passphrase is empty. ``scrypt_log_n``: the passphrase's work factor (age's default,
        18: 256 MiB; at most 20, the bound every reader accepts by default)."""
        if not isinstance(passphrase, str) or not passphrase:
            raise UsageError("the vault passphrase is empty")
        path = cls.file_path(directory)
        data = encrypt_vault(_encode_document([]), passphrase, scrypt_log_n=scrypt_log_n)
        with dir_lock(os.path.dirname(path)):
            if os.path.lexists(path):
                raise UsageError(f"a vault exists already at {path}: it is kept as it is "
                                 "(delete the vault directory to start over)")
            write_atomically(path, data, overwrite=False, tag="new", mode=0o600,
                             what=f"cannot write the vault {path}")
        return cls(path, passphrase, scrypt_log_n, [], hashlib.sha256(data).digest())

    @classmethod
    def open(cls, passphrase: str, *, directory: str | None = None,
             max_scrypt_log_n: int = DEFAULT_MAX_SCRYPT_LOG_N) -> Vault:
        """Open the vault with its passphrase. WrongKeyError for a wrong passphrase;
        LimitExceededError when the file asks for more scrypt work than
        ``max_scrypt_log_n`` (checked before deriving anything)."""
        try:
            path = cls.file_path(directory, create=False)
        except FileNotFoundError:  # no vault directory: nothing is made by opening
            path = os.path.join(vault_dir_path(directory), IDENTITIES_FILE)
            data = None
        else:
            data = read_private_file(path, "the vault", MAX_VAULT_FILE_SIZE)
        if data is None:
            raise UsageError(f"there is no vault at {path}: make one with 'lockbox vault "
                             "init'")
        return cls._decrypt(path, data, passphrase, max_scrypt_log_n)

    @classmethod
    def _decrypt(cls, path: str, data: bytes, passphrase: str, max_scrypt_log_n: int) -> Vault:
        backup = path + BACKUP_SUFFIX
        try:
            log_n = scrypt_work_factor(parse_age_header(data))
            plaintext = decrypt_vault(data, passphrase, max_scrypt_log_n=max_scrypt_log_n)
        except WrongKeyError:
            raise WrongKeyError(f"wrong passphrase for the vault {path}") from None
        except LockboxError as e:
            if isinstance(e, UsageError):
                raise
            hint = (f" (its previous version is {backup}: copy it over the vault to go "
                    "back to it)") if os.path.lexists(backup) else ""
            raise _again(e, f"the vault {path} cannot be opened: {e}{hint}") from None
        records = _decode_document(plaintext, path)
        return cls(path, passphrase, log_n, records, hashlib.sha256(data).digest())

    # -- reading -----------------------------------------------------------------------

    def names(self) -> list[str]:
        return [r["name"] for r in self._records]

    def _record(self, name: str) -> dict[str, str]:
        for record in self._records:
            if record["name"] == name:
                return record
        from ..errors import NotFoundError

        raise NotFoundError(f"no identity named {name!r} in the vault")

    def identity(self, name: str) -> Identity:
        """The identity named ``name`` (NotFoundError when there is none)."""
        return Identity.decode(self._record(name)["identity"])

    def export(self, name: str) -> str:
        """The identity's text (``LOCKBOX-IDENTITY-1:...``): a secret."""
        return self._record(name)["identity"]

    def recipient(self, name: str) -> str:
        """The identity's recipient text (``lockbox-recipient-1:...``): public."""
        return self.identity(name).recipient(_crypto()).encode()

    # -- changing ----------------------------------------------------------------------

    def add_identity(self, name: str, identity: Identity | None = None) -> Identity:
        """Store ``identity`` (a new one when None) under ``name``; UsageError when the
        name is taken. Returns the identity stored."""
        check_name(name, "identity name")
        if name in self.names():
            raise UsageError(f"the vault already has an identity named {name!r}")
        if identity is None:
            identity = Identity.generate(_crypto())
        elif not isinstance(identity, Identity):
            raise UsageError("add_identity takes a lockbox Identity")
        record = {"name": name, "identity": identity.encode(), "created": _now()}
        self._write([*self._records, record])
        return identity

    def remove(self, name: str) -> None:
        """Forget the identity ``name`` (NotFoundError when there is none). Its text stays
        in the backup file until the next change."""
        self._record(name)
        self._write([r for r in self._records if r["name"] != name])

    def _write(self, records: list[dict[str, str]]) -> None:
        data = encrypt_vault(_encode_document(records), self._passphrase,
                             scrypt_log_n=min(self.scrypt_log_n, DEFAULT_MAX_SCRYPT_LOG_N))
        with dir_lock(os.path.dirname(self.path)):
            current = read_private_file(self.path, "the vault", MAX_VAULT_FILE_SIZE)
            if current is None or hashlib.sha256(current).digest() != self._digest:
                raise VaultError(f"the vault {self.path} changed since it was opened "
                                 "(another lockbox process?): open it again and retry")
            write_atomically(self.path + BACKUP_SUFFIX, current, overwrite=True, tag="bak",
                             mode=0o600, what=f"cannot back up the vault {self.path}")
            write_atomically(self.path, data, overwrite=True, tag="new", mode=0o600,
                             what=f"cannot write the vault {self.path}")
        self._records = records
        self._digest = hashlib.sha256(data).digest()

    # last in the class: its name hides the builtin ``list`` in the class body
    def list(self) -> list[IdentityInfo]:
        """The identities, in the order they were added (names and display fingerprints)."""
        crypto = _crypto()
        return [IdentityInfo(r["name"],
                             Identity.decode(r["identity"]).recipient(crypto).fingerprint.hex(),
                             r["created"]) for r in self._records]
