"""What the unlock agent (:mod:`.agent`) and its client (:mod:`.agent_client`) share: the
sizes of the protocol's fields and messages, and the peer check (docs/VAULT.md)."""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["MAX_MESSAGE_SIZE", "DEFAULT_TTL", "MAX_TTL", "PROTOCOL_VERSION",
           "ARCHIVE_ID_SIZE", "KEY_COMMITMENT_SIZE", "CONTENT_KEY_SIZE", "peer_uid",
           "lock_file_path"]

MAX_MESSAGE_SIZE = 64 * 1024   # one request or reply line, newline included
DEFAULT_TTL = 15 * 60          # seconds a key is kept (lockbox agent start --ttl)
MAX_TTL = 7 * 24 * 3600
PROTOCOL_VERSION = 1
ARCHIVE_ID_SIZE = 16
KEY_COMMITMENT_SIZE = 32
CONTENT_KEY_SIZE = 32


def peer_uid(sock: Any) -> int:
    """The uid of the process at the other end of the Unix socket ``sock``
    (``SO_PEERCRED``: the credentials it had when the connection was made, set by the
    kernel, not by the peer)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def lock_file_path(socket_path: str) -> str:
    """The file an agent holds an exclusive ``flock`` on while it serves ``socket_path``."""
    return socket_path + ".lock"
