"""What the CLI and ``lockbox mount`` call to use the unlock agent (docs/VAULT.md
"Using the agent"): ask it for an archive's content key before prompting, and give it the
key after a password (or identity) unlocked the archive.

The agent files keys under (archive id, key commitment). Both are cleartext in the
archive: :func:`cache_ref_flow` reads them from the newest superblock slot and its key
directory (the 16 KiB the open reads first, and the key directory's page when it is not
inline) without any secret. A key the agent gives is then passed to the open as
``known_key`` (``(archive_id, content_key)``), which checks it against the key
directory's commitment again (docs/FORMAT.md §6). Archives without a key commitment
(key directory version 1, written before commitments) are never cached: nothing would
bind a cached key to them.

Nothing here raises for a missing or misbehaving agent: :func:`lookup` returns None
(prompt as usual) and :func:`remember` False, and an agent problem worth telling (an
unsafe socket, an agent of another user, a timeout) goes to ``warn`` as one line.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..drivers import Flow, Read, run_sync
from ..errors import LockboxError, VaultError
from ..ranges import ByteRange
from ..sources import RangeSource
from .agent_client import agent_get, agent_put
from .paths import agent_socket_path

__all__ = ["CacheRef", "cache_ref_flow", "cache_ref", "lookup", "lookup_source",
           "remember", "remember_key"]

Warn = Callable[[str], None]


@dataclass(frozen=True)
class CacheRef:
    """Where the agent files an archive's content key."""

    archive_id: bytes
    key_commitment: bytes


def cache_ref_flow() -> Flow[CacheRef | None]:
    """Read the newest superblock slot's archive id and its key directory's commitment
    (one 16 KiB read, plus the key directory page when it is not inline). None for a key
    directory without a commitment. Raises what the superblock and key-directory
    decoders raise for a damaged or foreign file."""
    from ..formats.lbox.opening import _fetch_keydir_flow  # the checked keydir fetch
    from ..formats.lbox.wire.constants import SUPERBLOCK_SIZE
    from ..formats.lbox.wire.keydir import decode_key_directory
    from ..formats.lbox.wire.superblock import decode_superblock

    blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
    newest = decode_superblock(blobs[0])[0]
    keydir = yield from _fetch_keydir_flow(newest)
    commitment = decode_key_directory(keydir).key_commitment
    return None if commitment is None else CacheRef(newest.archive_id, commitment)


class _HeadFirst:
    """A range source that answers from ``head`` (the file's first bytes, already read
    by the format probe) whatever lies within it."""

    def __init__(self, source: RangeSource, head: bytes) -> None:
        self.source, self.head = source, head

    def read(self, ranges: Any) -> list[bytes]:
        if all(r.end <= len(self.head) for r in ranges):
            return [self.head[r.offset:r.end] for r in ranges]
        return list(self.source.read(ranges))


def cache_ref(source: RangeSource, head: bytes | None = None) -> CacheRef | None:
    """:func:`cache_ref_flow` run on ``source`` (``head``: its first bytes when already
    read, e.g. ``probe(source).head``, which then answers the superblock read). None
    when the archive cannot be cached or its cleartext cannot be read (the open that
    follows reports that)."""
    src: Any = source if head is None else _HeadFirst(source, head)
    try:
        return run_sync(cache_ref_flow(), src)
    except LockboxError:
        return None


def lookup(ref: CacheRef | None, *, warn: Warn | None = None,
           socket_path: str | None = None,
           timeout: float | None = None) -> tuple[bytes, bytes] | None:
    """The ``known_key`` to open the archive of ``ref`` with (``(archive_id,
    content_key)``), when the agent holds its key; else None (no agent, no key, an
    uncacheable archive). An agent problem goes to ``warn``."""
    if ref is None:
        return None
    try:
        key = agent_get(ref.archive_id, ref.key_commitment, socket_path=socket_path,
                        timeout=timeout)
    except VaultError as e:
        if warn is not None:
            warn(f"unlock agent not used: {e}")
        return None
    return None if key is None else (ref.archive_id, key)


def lookup_source(source: RangeSource, head: bytes | None = None, *,
                  warn: Warn | None = None, socket_path: str | None = None,
                  timeout: float | None = None) -> tuple[bytes, bytes] | None:
    """:func:`lookup` of the archive that ``source`` reads (see :func:`cache_ref`).
    With nothing at the agent's socket path it returns None before reading anything
    (no extra round trip for a remote archive whose key directory is not inline)."""
    if not os.path.lexists(socket_path or agent_socket_path()):
        return None
    return lookup(cache_ref(source, head), warn=warn, socket_path=socket_path,
                  timeout=timeout)


def remember_key(archive_id: bytes, key_commitment: bytes, content_key: bytes, *,
                 ttl: float | None = None, warn: Warn | None = None,
                 socket_path: str | None = None, timeout: float | None = None) -> bool:
    """Give the agent this content key (it checks the commitment); False when no agent
    runs or it refused (``warn`` is told why)."""
    try:
        return agent_put(archive_id, key_commitment, content_key, ttl=ttl,
                         socket_path=socket_path, timeout=timeout)
    except VaultError as e:
        if warn is not None:
            warn(f"unlock agent not used: {e}")
        return False


def remember(box: Any, *, ttl: float | None = None, warn: Warn | None = None,
             socket_path: str | None = None, timeout: float | None = None) -> bool:
    """Give the agent the content key of ``box``, an opened ``Lockbox`` (after a password
    or identity unlocked it). False when no agent runs, or the archive has no key
    commitment (never cached), or the agent refused (``warn`` is told why)."""
    from ..formats.lbox.keys import key_commitment
    from ..formats.lbox.wire.keydir import decode_key_directory
    from ..platform import default_crypto

    view = box.view
    commitment = decode_key_directory(view.keydir).key_commitment
    content_key = box.content_key
    if commitment is None or not hmac.compare_digest(
            key_commitment(default_crypto(), view.archive_id, content_key), commitment):
        return False
    return remember_key(view.archive_id, commitment, content_key, ttl=ttl, warn=warn,
                        socket_path=socket_path, timeout=timeout)
