"""The one error hierarchy of lockbox.

Every failure that lockbox reports is an instance of :class:`LockboxError`.
Foreign exceptions (OSError, httpx errors, cryptography's InvalidTag, zstd
errors, ...) are translated into these classes at the boundary where they
occur, so callers never need to import a backend library to catch an error.

The CLI maps each class to one exit code (``exit_code``) and one line.
"""

from __future__ import annotations

__all__ = [
    "LockboxError",
    "FormatError",
    "UnsupportedVersionError",
    "TruncatedError",
    "LimitExceededError",
    "IntegrityError",
    "WrongKeyError",
    "NotFoundError",
    "InvalidPathError",
    "UnsafePathError",
    "StorageError",
    "RangeNotSupportedError",
    "SourceChangedError",
    "SourceUnavailableError",
    "LockedError",
    "CommitError",
    "BackendUnavailableError",
    "UsageError",
    "HookError",
    "HookTimeoutError",
    "VaultError",
]


class LockboxError(Exception):
    """Base class of every error raised by lockbox."""

    exit_code = 1


class FormatError(LockboxError):
    """The bytes are not a well-formed lockbox structure."""

    exit_code = 3


class UnsupportedVersionError(FormatError):
    """The structure is of a format version this reader does not know."""

    exit_code = 4


class TruncatedError(FormatError):
    """A structure ends before its declared length (a cut file or range)."""


class LimitExceededError(FormatError):
    """A length or count field exceeds the format's hard limits."""


class IntegrityError(LockboxError):
    """Authentication or checksum failed: the data was damaged or tampered with."""

    exit_code = 5


class WrongKeyError(LockboxError):
    """No key slot opens with the given password or identity."""

    exit_code = 6


class NotFoundError(LockboxError):
    """The path or env name does not exist in the archive."""

    exit_code = 7


class InvalidPathError(LockboxError):
    """A path or name is not acceptable inside an archive."""

    exit_code = 2


class UnsafePathError(LockboxError):
    """Extraction would write outside the destination directory."""

    exit_code = 8


class StorageError(LockboxError):
    """Reading or writing the underlying storage failed."""

    exit_code = 9


class RangeNotSupportedError(StorageError):
    """The server answered a Range request with the whole body (or refused ranges)."""

    exit_code = 10


class SourceChangedError(StorageError):
    """The archive changed on the server (ETag or size differs) while it was being read."""

    exit_code = 11


class SourceUnavailableError(StorageError):
    """The archive could not be reached (network error, 404, permission denied)."""

    exit_code = 12


class LockedError(StorageError):
    """Another writer holds the archive's write lock."""

    exit_code = 13


class CommitError(LockboxError):
    """A write could not be committed. The archive holds its previous commit, or —
    when the failure came after the new commit's slot was written — the new one;
    never a mix (reopen it to see which)."""

    exit_code = 14


class BackendUnavailableError(LockboxError):
    """A crypto or codec backend needed for this operation is not available here."""

    exit_code = 15


class HookError(LockboxError):
    """A .sync update hook could not run or failed: refused module, trap, limit, timeout.

    ``reason`` is one of ``"invalid"`` (not a usable hook module: bad bytes, a forbidden
    import such as WASI, no entry point), ``"limit"`` (memory or size cap), ``"trap"``
    (the guest trapped), ``"timeout"``. The archive is left as it was.
    """

    exit_code = 16

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HookTimeoutError(HookError):
    """The hook ran past its timeout and was stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="timeout")


class VaultError(StorageError):
    """The local vault or the unlock agent cannot be used safely: a directory, file or
    socket with the wrong owner or permissions (or a symlink where none may be), an agent
    that is already running, or one that does not answer as it should."""

    exit_code = 17


class UsageError(LockboxError):
    """The caller asked for something that cannot be done (bad option, wrong mode)."""

    exit_code = 2
