"""Talking to the unlock agent (:mod:`.agent`): fast, bounded, and only to an agent of
this user.

Every call first checks the agent's directory (private, ours, not a symlink) and the
socket (a socket of ours, not a symlink); with nothing there it returns at once (None /
False), without connecting. After connecting it checks the listening process's uid
(``SO_PEERCRED``): a socket planted by someone else is never told a key. Every step has a
deadline (:data:`DEFAULT_TIMEOUT`), so a stuck agent costs at most that, never a hang.

Errors: VaultError for an unsafe path, an agent of another user, one that does not
answer in time or answers nonsense, or refuses a request.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..errors import VaultError
from .paths import agent_socket_path, check_private_dir, lstat_socket
from .protocol import (
    ARCHIVE_ID_SIZE,
    CONTENT_KEY_SIZE,
    DEFAULT_TTL,
    KEY_COMMITMENT_SIZE,
    MAX_MESSAGE_SIZE,
    lock_file_path,
    peer_uid,
)

__all__ = ["AgentStatus", "DEFAULT_TIMEOUT", "START_TIMEOUT", "agent_get", "agent_put",
           "agent_lock", "agent_status", "agent_stop", "start_agent", "request"]

DEFAULT_TIMEOUT = 2.0    # seconds for one whole request (connect, send, reply), when a
                         # call names none (read at call time)
START_TIMEOUT = 20.0     # seconds for a new agent to say it listens


@dataclass(frozen=True)
class AgentStatus:
    """What ``lockbox agent status`` shows (never a key)."""

    socket_path: str
    pid: int
    keys: int
    ttl: float
    hardening: tuple[str, ...]


def _connect(path: str, deadline: float) -> socket.socket | None:
    try:
        check_private_dir(os.path.dirname(path), "the agent's directory")
    except FileNotFoundError:
        return None
    if lstat_socket(path) is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.connect(path)
        uid = peer_uid(sock)
        if uid != os.geteuid():
            raise VaultError(f"the process listening on {path} belongs to uid {uid}, not to "
                             "this user: refusing to talk to it")
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None  # a stale socket: no agent
    except TimeoutError:
        sock.close()
        raise VaultError(f"the unlock agent on {path} does not answer") from None
    except OSError as e:
        sock.close()
        raise VaultError(f"cannot reach the unlock agent on {path}: {e.strerror or e}") from e
    except BaseException:
        sock.close()
        raise
    return sock


def _read_line(sock: socket.socket, path: str, deadline: float) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        if len(buf) > MAX_MESSAGE_SIZE:
            raise VaultError(f"the unlock agent on {path} sent an oversized reply")
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise VaultError(f"the unlock agent on {path} does not answer") from None
        except OSError as e:
            raise VaultError(f"the unlock agent on {path} failed: {e.strerror or e}") from e
        if not chunk:
            raise VaultError(f"the unlock agent on {path} closed the connection")
        buf += chunk
    line = bytes(buf[:buf.index(b"\n")])
    buf[:] = bytes(len(buf))
    return line


def request(message: dict[str, Any], *, socket_path: str | None = None,
            timeout: float | None = None) -> dict[str, Any] | None:
    """Send one request, return the agent's reply (``ok`` true); None when no agent runs.
    VaultError when the agent refuses the request (``ok`` false) or misbehaves."""
    path = socket_path or agent_socket_path()
    deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout)
    sock = _connect(path, deadline)
    if sock is None:
        return None
    with sock:
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(json.dumps(message).encode("utf-8") + b"\n")
        except TimeoutError:
            raise VaultError(f"the unlock agent on {path} does not answer") from None
        except OSError as e:
            raise VaultError(f"the unlock agent on {path} failed: {e.strerror or e}") from e
        line = _read_line(sock, path, deadline)
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise VaultError(f"the unlock agent on {path} answered something that is not a reply")
    if not reply["ok"]:
        raise VaultError(f"the unlock agent refused: {str(reply.get('error'))[:200]}")
    return reply


def _check_size(value: bytes, size: int, what: str) -> str:
    if not isinstance(value, (bytes, bytearray)) or len(value) != size:
        raise VaultError(f"{what} must be {size} bytes")
    return bytes(value).hex()


def agent_get(archive_id: bytes, key_commitment: bytes, *, socket_path: str | None = None,
              timeout: float | None = None) -> bytes | None:
    """The content key the agent holds for (archive id, key commitment), or None (no
    agent, or no such key)."""
    reply = request({"op": "get",
                     "archive_id": _check_size(archive_id, ARCHIVE_ID_SIZE, "archive_id"),
                     "key_commitment": _check_size(key_commitment, KEY_COMMITMENT_SIZE,
                                                   "key_commitment")},
                    socket_path=socket_path, timeout=timeout)
    if reply is None or reply.get("content_key") is None:
        return None
    text = reply["content_key"]
    try:
        key = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        key = b""
    if len(key) != CONTENT_KEY_SIZE:
        raise VaultError("the unlock agent answered a malformed key")
    return key


def agent_put(archive_id: bytes, key_commitment: bytes, content_key: bytes, *,
              ttl: float | None = None, socket_path: str | None = None,
              timeout: float | None = None) -> bool:
    """Give the agent a content key for (archive id, key commitment), for ``ttl`` seconds
    at most (the agent's own TTL bounds it). False when no agent runs. VaultError when
    the agent refuses it (the key does not give this commitment)."""
    message: dict[str, Any] = {
        "op": "put", "archive_id": _check_size(archive_id, ARCHIVE_ID_SIZE, "archive_id"),
        "key_commitment": _check_size(key_commitment, KEY_COMMITMENT_SIZE, "key_commitment"),
        "content_key": _check_size(content_key, CONTENT_KEY_SIZE, "content_key")}
    if ttl is not None:
        message["ttl"] = ttl
    return request(message, socket_path=socket_path, timeout=timeout) is not None


def agent_lock(*, socket_path: str | None = None,
               timeout: float | None = None) -> int | None:
    """Make the agent forget every key; how many it held (None: no agent)."""
    reply = request({"op": "lock"}, socket_path=socket_path, timeout=timeout)
    return None if reply is None else int(reply.get("forgotten", 0))


def agent_status(*, socket_path: str | None = None,
                 timeout: float | None = None) -> AgentStatus | None:
    """The running agent's status, or None when none runs."""
    path = socket_path or agent_socket_path()
    reply = request({"op": "status"}, socket_path=path, timeout=timeout)
    if reply is None:
        return None
    try:
        return AgentStatus(path, int(reply["pid"]), int(reply["keys"]), float(reply["ttl"]),
                           tuple(str(h) for h in reply.get("hardening", ())))
    except (KeyError, TypeError, ValueError):
        raise VaultError(f"the unlock agent on {path} sent a malformed status") from None


def _lock_free(path: str) -> bool:
    """True when no agent holds the lock of ``path`` (its agent has exited)."""
    import fcntl

    try:
        fd = os.open(lock_file_path(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def agent_stop(*, socket_path: str | None = None, timeout: float | None = None,
               wait: float = 5.0) -> bool:
    """Stop the agent (it forgets every key first) and wait up to ``wait`` seconds for it
    to exit. False when none runs."""
    path = socket_path or agent_socket_path()
    if request({"op": "stop"}, socket_path=path, timeout=timeout) is None:
        return False
    deadline = time.monotonic() + wait
    while not _lock_free(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def start_agent(ttl: float = DEFAULT_TTL, *, socket_path: str | None = None,
                timeout: float = START_TIMEOUT) -> AgentStatus:
    """Start a detached agent (``python -m lockbox.vault.agent`` in a new session, its
    standard streams on /dev/null) and wait until it listens. VaultError when one already
    answers on the socket, or when it cannot start (the agent's own one-line reason)."""
    path = socket_path or agent_socket_path()
    running = agent_status(socket_path=path)
    if running is not None:
        raise VaultError(f"an unlock agent is already running on {path} (pid {running.pid})")
    import lockbox

    # lockbox's own variables stay behind: they may hold secrets (LOCKBOX_PASSWORD,
    # LOCKBOX_VAULT_PASSPHRASE ...) that the agent has no use for.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKBOX_")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(lockbox.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lockbox.vault.agent", "--socket", path, "--ttl", str(ttl),
             "--ready-fd", str(write_fd)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,), start_new_session=True, cwd="/", env=env)
    except OSError as e:
        os.close(read_fd)
        os.close(write_fd)
        raise VaultError(f"cannot start the unlock agent: {e.strerror or e}") from e
    os.close(write_fd)
    try:
        line = _read_ready(read_fd, timeout)
    finally:
        os.close(read_fd)
    try:
        message = json.loads(line) if line else None
    except ValueError:
        message = None
    if not isinstance(message, dict) or not message.get("ok"):
        if proc.poll() is None and not line:
            with contextlib.suppress(OSError):
                proc.kill()
        why = message.get("error") if isinstance(message, dict) else None
        raise VaultError(f"the unlock agent did not start: {why}" if why else
                         "the unlock agent did not start and did not say why (run "
                         f"'{sys.executable} -m lockbox.vault.agent --socket {path}' to see)")
    status = agent_status(socket_path=path)
    if status is None:
        raise VaultError(f"the unlock agent started but does not answer on {path}")
    return status


def _read_ready(fd: int, timeout: float) -> bytes:
    import select

    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf and len(buf) < MAX_MESSAGE_SIZE:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]
