"""The unlock agent: a small process that keeps archive content keys in memory for a while,
so that a password is typed once per session (docs/VAULT.md).

It listens on a Unix socket (0600, in a 0700 directory of this user: :mod:`.paths`) and
speaks newline-delimited JSON, one request and one reply per line, each at most
:data:`MAX_MESSAGE_SIZE` bytes (a longer one is answered with an error and the connection
closed). Requests::

    {"op": "put", "archive_id": HEX16, "key_commitment": HEX32, "content_key": HEX32,
     "ttl": SECONDS (optional)}               -> {"ok": true, "ttl": SECONDS}
    {"op": "get", "archive_id": ..., "key_commitment": ...}
                                              -> {"ok": true, "content_key": HEX32 | null}
    {"op": "lock"}                            -> {"ok": true, "forgotten": N}
    {"op": "status"}                          -> {"ok": true, "pid", "keys", "ttl", ...}
    {"op": "stop"}                            -> {"ok": true}, then the agent exits
    anything else                             -> {"ok": false, "error": "..."}

A key is filed under (archive id, key commitment) and only after the agent checked that
the commitment is the one the key gives (docs/FORMAT.md §6): a cached key can only be
handed out for an archive whose key directory commits to it. It lives until its TTL (the
agent's ``--ttl``, default 15 minutes; a put may ask for less, never more) runs out,
enforced on every get and by a timer, or until ``lock`` / ``stop``; a forgotten key's
bytearray is overwritten with zeros.

Every connection's peer is checked with ``SO_PEERCRED``: a process of another user is
disconnected before anything is read. The process makes itself non-dumpable
(``prctl(PR_SET_DUMPABLE, 0)``: no core dumps, no ptrace by other processes of the same
user) and sets its core size limit to 0. It writes nothing but its socket and a lock
file. What this does not protect against (root, swap, the Python heap's transient
copies) is in docs/VAULT.md.

Run it with ``python -m lockbox.vault.agent --socket PATH [--ttl S]``; the client's
:func:`lockbox.vault.agent_client.start_agent` does so, detached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import LockboxError, UsageError, VaultError
from .paths import agent_socket_path, ensure_private_dir, lstat_socket
from .protocol import (
    ARCHIVE_ID_SIZE,
    CONTENT_KEY_SIZE,
    DEFAULT_TTL,
    KEY_COMMITMENT_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_TTL,
    PROTOCOL_VERSION,
    lock_file_path,
    peer_uid,
)

__all__ = ["KeyCache", "AgentServer", "harden_process", "bind_socket", "run_agent", "main"]

IDLE_TIMEOUT = 30.0        # a connection silent for this long is closed
MAX_CONNECTIONS = 64       # more at once are closed on arrival
MAX_KEYS = 4096            # the oldest key is forgotten beyond this
_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


# -- the keys ---------------------------------------------------------------------------


@dataclass
class _Entry:
    key: bytearray
    expires: float  # time.monotonic()


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))  # same length: overwritten in place


class KeyCache:
    """Content keys by (archive id, key commitment), each until its deadline (no I/O)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[tuple[bytes, bytes], _Entry] = {}
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, archive_id: bytes, commitment: bytes, key: bytearray, ttl: float) -> None:
        old = self._entries.pop((archive_id, commitment), None)
        if old is not None:
            _zero(old.key)
        while len(self._entries) >= MAX_KEYS:
            _zero(self._entries.pop(next(iter(self._entries))).key)
        self._entries[(archive_id, commitment)] = _Entry(key, self._clock() + ttl)

    def get(self, archive_id: bytes, commitment: bytes) -> bytearray | None:
        self.expire()
        entry = self._entries.get((archive_id, commitment))
        return None if entry is None else entry.key

    def expire(self) -> None:
        """Forget (and zero) every key past its deadline."""
        now = self._clock()
        for mark in [m for m, e in self._entries.items() if e.expires <= now]:
            _zero(self._entries.pop(mark).key)

    def lock(self) -> int:
        """Forget (and zero) every key; returns how many there were."""
        count = len(self._entries)
        for entry in self._entries.values():
            _zero(entry.key)
        self._entries.clear()
        return count


# -- the process ------------------------------------------------------------------------


def harden_process() -> list[str]:
    """Make this process's memory harder to read: core size 0 and not dumpable (which
    also forbids ptrace and /proc/PID/mem to other processes of this user). Returns what
    was applied."""
    done: list[str] = []
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        done.append("core-size-0")
    except (ImportError, OSError, ValueError):
        pass
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and \
                libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0:
            done.append("not-dumpable")
    except (ImportError, OSError, AttributeError):
        pass
    return done


def _hex_field(request: dict[str, Any], name: str, size: int) -> bytes:
    value = request.get(name)
    if not isinstance(value, str) or len(value) != 2 * size:
        raise UsageError(f"'{name}' must be {size} bytes in hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise UsageError(f"'{name}' must be {size} bytes in hex") from None


class AgentServer:
    """The agent's request handling and its socket server (asyncio, one thread)."""

    def __init__(self, socket_path: str, ttl: float = DEFAULT_TTL) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or \
                not 0 < ttl <= MAX_TTL:
            raise UsageError(f"the agent's TTL must be between 1 second and {MAX_TTL} "
                             f"seconds, not {ttl!r}")
        self.socket_path = socket_path
        self.ttl = float(ttl)
        self.keys = KeyCache()
        self.hardening: list[str] = []
        self._connections = 0
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- requests -----------------------------------------------------------------------

    def handle(self, request: Any) -> dict[str, Any]:
        """The reply to one decoded request."""
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": "a request is a JSON object with an 'op'"}
        op = request["op"]
        try:
            if op == "get":
                archive_id = _hex_field(request, "archive_id", ARCHIVE_ID_SIZE)
                commitment = _hex_field(request, "key_commitment", KEY_COMMITMENT_SIZE)
                key = self.keys.get(archive_id, commitment)
                return {"ok": True, "content_key": None if key is None else key.hex()}
            if op == "put":
                return self._put(request)
            if op == "lock":
                return {"ok": True, "forgotten": self.keys.lock()}
            if op == "status":  # the count is the timer's: status forgets nothing itself
                return {"ok": True, "version": PROTOCOL_VERSION, "pid": os.getpid(),
                        "keys": len(self.keys), "ttl": self.ttl,
                        "hardening": list(self.hardening)}
            if op == "stop":
                self.keys.lock()
                if self._stopping is not None:
                    self._stopping.set()
                return {"ok": True}
        except UsageError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": False, "error": f"unknown op {op[:40]!r}"}

    def _put(self, request: dict[str, Any]) -> dict[str, Any]:
        archive_id = _hex_field(request, "archive_id", ARCHIVE_ID_SIZE)
        commitment = _hex_field(request, "key_commitment", KEY_COMMITMENT_SIZE)
        key = bytearray(_hex_field(request, "content_key", CONTENT_KEY_SIZE))
        ttl = request.get("ttl", self.ttl)
        if ttl is None:
            ttl = self.ttl
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            _zero(key)
            raise UsageError("'ttl' must be a positive number of seconds")
        ttl = min(float(ttl), self.ttl)
        from ..formats.lbox.keys import key_commitment
        from ..platform import default_crypto

        if not hmac.compare_digest(key_commitment(default_crypto(), archive_id, bytes(key)),
                                   commitment):
            _zero(key)
            raise UsageError("this content key does not give this key commitment: not kept")
        self.keys.put(archive_id, commitment, key, ttl)
        if self._loop is not None:
            self._loop.call_later(ttl + 0.01, self.keys.expire)
        return {"ok": True, "ttl": ttl}

    # -- connections ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            if peer_uid(sock) != os.geteuid() or self._connections >= MAX_CONNECTIONS:
                return  # another user (or a flood): disconnected before anything is read
            self._connections += 1
            try:
                await self._converse(reader, writer)
            finally:
                self._connections -= 1
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    async def _converse(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # the client left (or went quiet)
            except asyncio.LimitOverrunError:
                await self._reply(writer, {"ok": False, "error": "a message is at most "
                                           f"{MAX_MESSAGE_SIZE} bytes"})
                return
            try:
                request = json.loads(line)
            except ValueError:
                await self._reply(writer, {"ok": False, "error": "a request is one line of "
                                           "JSON"})
                return
            await self._reply(writer, self.handle(request))

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply).encode("utf-8") + b"\n")
        await writer.drain()

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, listener: socket.socket) -> None:
        """Serve ``listener`` (bound and listening) until ``stop`` or a signal."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                self._loop.add_signal_handler(sig, self._stopping.set)
        server = await asyncio.start_unix_server(self._connection, sock=listener,
                                                 limit=MAX_MESSAGE_SIZE)
        try:
            await self._stopping.wait()
        finally:
            self.keys.lock()
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)


# -- starting ------------------------------------------------------------------------------


def _live_agent_pid(path: str) -> int | None:
    """The pid of the agent answering at ``path``, if one does."""
    from .agent_client import agent_status

    try:
        status = agent_status(socket_path=path, timeout=2.0)
    except VaultError:
        return None
    return None if status is None else status.pid


def _take_lock(path: str) -> int:
    """Hold the agent lock of ``path`` (an fd kept open for the process's life)."""
    import fcntl

    lock_path = lock_file_path(path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise VaultError(f"cannot open the agent's lock file {lock_path}: "
                         f"{e.strerror or e}") from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise VaultError(f"the agent's lock file {lock_path} is not a file of this user")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = _live_agent_pid(path)
        raise VaultError(f"an unlock agent is already running on {path}"
                         + (f" (pid {pid})" if pid else "")) from None
    return fd


def bind_socket(path: str) -> tuple[socket.socket, int]:
    """Check the agent's directory (made 0700 if missing), take the agent lock, replace a
    stale socket, bind and listen. Returns the listener and the lock's fd. VaultError
    when another agent runs there or a path is unsafe."""
    if len(os.fsencode(path)) > 100:
        raise VaultError(f"the agent socket path {path} is too long for a Unix socket: set "
                         "LOCKBOX_AGENT_SOCK to a shorter one")
    ensure_private_dir(os.path.dirname(path), "the agent's directory")
    lock_fd = _take_lock(path)
    try:
        if lstat_socket(path) is not None:  # ours, a socket, and nobody holds the lock
            pid = _live_agent_pid(path)
            if pid is not None:
                raise VaultError(f"an unlock agent is already running on {path} (pid {pid})")
            os.unlink(path)  # stale: its agent is gone
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                listener.bind(path)
            finally:
                os.umask(old_umask)
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode) or st.st_mode & 0o077:
                raise VaultError(f"the agent socket {path} did not come out private")
            listener.listen(MAX_CONNECTIONS)
            listener.setblocking(False)
        except OSError as e:
            listener.close()
            raise VaultError(f"cannot listen on {path}: {e.strerror or e}") from e
        except BaseException:
            listener.close()
            raise
    except BaseException:
        os.close(lock_fd)
        raise
    return listener, lock_fd


def run_agent(socket_path: str | None = None, ttl: float = DEFAULT_TTL, *,
              ready: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run an agent in this process until it is stopped (the ``main`` of the detached
    process). ``ready`` is told ``{"ok": true, "pid": ...}`` once it listens, or
    ``{"ok": false, "error": ..., "class": ...}`` when it cannot start (then the error is
    raised too)."""
    path = socket_path or agent_socket_path()
    os.umask(0o077)
    try:
        server = AgentServer(path, ttl)
        server.hardening = harden_process()
        listener, lock_fd = bind_socket(path)
    except LockboxError as e:
        if ready is not None:
            ready({"ok": False, "error": str(e), "class": type(e).__name__})
        raise
    try:
        st = os.lstat(path)
        if ready is not None:
            ready({"ok": True, "pid": os.getpid(), "ttl": server.ttl,
                   "hardening": server.hardening})
        asyncio.run(server.serve(listener))
    finally:
        listener.close()
        with contextlib.suppress(OSError):  # remove our socket, not one that replaced it
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(path)
        os.close(lock_fd)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lockbox.vault.agent",
                                     description="lockbox's unlock agent (docs/VAULT.md)")
    parser.add_argument("--socket", metavar="PATH", help="default: LOCKBOX_AGENT_SOCK, else "
                        "$XDG_RUNTIME_DIR/lockbox/agent.sock, else /tmp/lockbox-UID/agent.sock")
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL, metavar="SECONDS")
    parser.add_argument("--ready-fd", type=int, metavar="FD",
                        help="write one JSON line to FD once listening (or failing), then "
                             "close it")
    args = parser.parse_args(argv)
    ready = None
    if args.ready_fd is not None:
        fd = args.ready_fd

        def ready(message: dict[str, Any]) -> None:
            with contextlib.suppress(OSError):
                os.write(fd, json.dumps(message).encode("utf-8") + b"\n")
            with contextlib.suppress(OSError):
                os.close(fd)
    try:
        return run_agent(args.socket, args.ttl, ready=ready)
    except LockboxError as e:
        print(f"lockbox agent: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
