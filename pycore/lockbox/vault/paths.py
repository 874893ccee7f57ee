"""Where the local vault and the unlock agent live, and the checks that make those places
safe to use (docs/VAULT.md "What is stored where").

* The vault directory: ``$LOCKBOX_VAULT_DIR``, else ``$XDG_DATA_HOME/lockbox/vault``, else
  ``~/.local/share/lockbox/vault``.
* The agent's socket: ``$LOCKBOX_AGENT_SOCK``, else ``$XDG_RUNTIME_DIR/lockbox/agent.sock``,
  else ``/tmp/lockbox-$UID/agent.sock``.

A directory of ours is created 0700 when missing and is used only when it is a real
directory (not a symlink), owned by this user, with no access for group or other:
anything else is refused with :class:`~lockbox.errors.VaultError` (in a shared directory
such as ``/tmp`` someone else may have made it first). The check opens the directory
with ``O_NOFOLLOW`` and looks at the open descriptor, so a symlink swapped in at the
last component is never followed. CPython on a POSIX system only.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from ..errors import LimitExceededError, VaultError

__all__ = ["VAULT_DIR_ENV", "AGENT_SOCK_ENV", "vault_dir", "vault_dir_path", "agent_socket_path",
           "ensure_private_dir", "check_private_dir", "check_private_file", "lstat_socket",
           "read_private_file", "dir_lock"]

VAULT_DIR_ENV = "LOCKBOX_VAULT_DIR"
AGENT_SOCK_ENV = "LOCKBOX_AGENT_SOCK"
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
LOCK_TIMEOUT = 10.0  # seconds to wait for another process's lock of a vault file


def _uid() -> int:
    return os.geteuid()


def _default_vault_dir() -> str:
    given = os.environ.get(VAULT_DIR_ENV)
    if given:
        return os.path.abspath(given)
    data = os.environ.get("XDG_DATA_HOME")
    if data and os.path.isabs(data):
        return os.path.join(data, "lockbox", "vault")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "lockbox", "vault")


def agent_socket_path() -> str:
    """The agent's socket path (it need not exist); its directory is not checked here."""
    given = os.environ.get(AGENT_SOCK_ENV)
    if given:
        return os.path.abspath(given)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "lockbox", "agent.sock")
    return os.path.join("/tmp", f"lockbox-{_uid()}", "agent.sock")


def _refusal(st: os.stat_result, what: str, path: str, *, kind: str) -> str:
    """Why ``st`` (of ``path``) is not a private ``kind`` of ours; "" when it is."""
    if stat.S_ISLNK(st.st_mode):
        return f"{what} {path} is a symlink: refusing to follow it"
    want = {"directory": stat.S_ISDIR, "file": stat.S_ISREG, "socket": stat.S_ISSOCK}[kind]
    if not want(st.st_mode):
        return f"{what} {path} is not a {kind}: refusing to use it"
    if st.st_uid != _uid():
        return (f"{what} {path} belongs to uid {st.st_uid}, not to this user (uid "
                f"{_uid()}): refusing to use it")
    if st.st_mode & 0o077:
        return (f"{what} {path} is accessible to other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): make it private (chmod "
                f"{'700' if kind == 'directory' else '600'}) or remove it")
    return ""


def check_private_dir(path: str, what: str = "the directory") -> None:
    """VaultError unless ``path`` is a directory (not a symlink) owned by this user with
    no group or other access. FileNotFoundError when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        try:
            st = os.lstat(path)
        except OSError:
            raise VaultError(f"cannot open {what} {path}: {e.strerror or e}") from e
        reason = _refusal(st, what, path, kind="directory")
        raise VaultError(reason or f"cannot open {what} {path}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    reason = _refusal(st, what, path, kind="directory")
    if reason:
        raise VaultError(reason)


def ensure_private_dir(path: str, what: str = "the directory") -> str:
    """Create ``path`` 0700 when missing (its missing parents too, 0700), then
    :func:`check_private_dir` it. Returns ``path``."""
    try:
        check_private_dir(path, what)
        return path
    except FileNotFoundError:
        pass
    parent = os.path.dirname(path)
    try:
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # made meanwhile (by whom is what the check decides)
    except OSError as e:
        raise VaultError(f"cannot create {what} {path}: {e.strerror or e}") from e
    try:
        check_private_dir(path, what)
    except FileNotFoundError:
        raise VaultError(f"{what} {path} disappeared while it was being created") from None
    return path


def check_private_file(st: os.stat_result, path: str, what: str = "the file") -> None:
    """VaultError unless ``st`` (an ``fstat`` or ``lstat`` of ``path``) is a regular file
    owned by this user with no group or other access."""
    reason = _refusal(st, what, path, kind="file")
    if reason:
        raise VaultError(reason)


def lstat_socket(path: str) -> os.stat_result | None:
    """The ``lstat`` of the socket at ``path``: None when nothing is there; VaultError
    when something else is (a symlink, a file, a socket of another user). Its mode is
    not judged: the private directory it is in, and the peer check, protect it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise VaultError(f"cannot look at the agent socket {path}: {e.strerror or e}") from e
    if stat.S_ISLNK(st.st_mode):
        raise VaultError(f"the agent socket {path} is a symlink: refusing to follow it")
    if not stat.S_ISSOCK(st.st_mode):
        raise VaultError(f"the agent socket path {path} holds something that is not a "
                         "socket: refusing to use or replace it")
    if st.st_uid != _uid():
        raise VaultError(f"the agent socket {path} belongs to uid {st.st_uid}, not to this "
                         f"user (uid {_uid()}): refusing to use it")
    return st


def vault_dir_path(directory: str | None = None) -> str:
    """The vault directory's path (``directory``, else from the environment), unchecked."""
    return os.path.abspath(directory) if directory else _default_vault_dir()


def vault_dir(*, create: bool = True, directory: str | None = None) -> str:
    """The vault directory (``directory``, else from the environment), checked; created
    0700 when missing and ``create``. VaultError when it is not private to this user;
    FileNotFoundError when it is missing and not ``create``."""
    path = vault_dir_path(directory)
    if create:
        return ensure_private_dir(path, "the vault directory")
    check_private_dir(path, "the vault directory")
    return path


def read_private_file(path: str, what: str, max_size: int) -> bytes | None:
    """The bytes of the private file ``path`` (opened with ``O_NOFOLLOW``, checked with
    :func:`check_private_file` on the open descriptor), None when it does not exist.
    LimitExceededError over ``max_size`` bytes; VaultError when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if os.path.islink(path):
            raise VaultError(f"{what} {path} is a symlink: refusing to follow it") from e
        raise VaultError(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        check_private_file(st, path, what)
        if st.st_size > max_size:
            raise LimitExceededError(f"{what} {path} is {st.st_size} bytes, over the limit of "
                                     f"{max_size} bytes: not a file lockbox wrote")
        chunks: list[bytes] = []
        size = 0
        while size <= max_size:
            chunk = os.read(fd, max_size + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_size:
            raise LimitExceededError(f"{what} {path} grew over the limit of {max_size} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise VaultError(f"cannot read {what} {path}: {e.strerror or e}") from e
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_lock(directory: str, name: str = ".lock", *,
             timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/name`` (created 0600, never through a
    symlink) for the ``with`` block: one writer of the directory's files at a time.
    VaultError when another process holds it for more than ``timeout`` seconds."""
    import fcntl
    import time

    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    except OSError as e:
        raise VaultError(f"cannot open the lock file {path}: {e.strerror or e}") from e
    try:
        check_private_file(os.fstat(fd), path, "the lock file")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise VaultError(f"another lockbox process holds {path} (waited "
                                     f"{timeout:g} s): try again") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock
