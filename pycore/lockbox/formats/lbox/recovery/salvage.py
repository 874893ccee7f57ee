"""Step 5 of recovery: salvage what came back complete into a **new** archive
(docs/FORMAT.md §15).

Every complete file, the directories, symlinks and env values are written through the
normal writer; each chunk is re-read and re-authenticated against the tag the scan
saw, so no byte that did not authenticate is ever written. The new archive has a new
archive id and content key (reusing the damaged one's would make it a diverged copy,
§17.2), protected by the secret used for recovery.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from ....codec.base import Codec as CodecBackend
from ....crypto.base import CryptoBackend
from ....drivers import run_sync
from ....errors import IntegrityError, LockboxError, UsageError
from ....sources.base import RangeSource
from ..frames import FrameOpener
from ..keys import DEFAULT_ARGON2, Argon2Params, Identity, Recipient
from ..wire.constants import DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE, EntryType
from ..wire.keydir import KeySlot, PasswordSlot
from .findings import (
    FileGroup,
    Findings,
    PackCache,
    Shape,
    group_shape,
    read_batches,
    read_chunks_flow,
)
from .rebuild import path_order
from .report import COMPLETE, SOURCE_IMPLIED, RecoveryReport, SalvageResult

__all__ = ["Scanned", "salvage", "ChunkStream"]


class Scanned(Protocol):
    """A finished scan (``RecoveryScanner`` after ``scan``): what salvage needs of it."""

    crypto: CryptoBackend
    codec: CodecBackend
    password: str | bytes | None  # the secret the scan was given
    identity: Identity | None
    report: RecoveryReport | None
    findings: Findings

    @property
    def opener(self) -> FrameOpener: ...

    @property
    def unlocked_by(self) -> KeySlot | None: ...


def salvage(scan: Scanned, out_path: str | os.PathLike[str], source: RangeSource, *,
            password: str | bytes | None = None, identity: Identity | None = None,
            recipients: Sequence[Recipient] = (), argon2: Argon2Params | None = None,
            chunk_size: int | None = None) -> SalvageResult:
    """See :meth:`RecoveryScanner.salvage`."""
    from ..archive import Lockbox
    from ..write.newarchive import create_archive

    report = scan.report
    if report is None:
        raise UsageError("scan the archive before salvaging it")
    found = scan.findings
    password = password if password is not None else scan.password
    identity = identity if identity is not None else scan.identity
    rcpts = list(recipients)
    if identity is not None:
        rcpts.append(identity.recipient(scan.crypto))
    if argon2 is None:
        s = scan.unlocked_by
        argon2 = Argon2Params(s.time_cost, s.memory_kib) \
            if isinstance(s, PasswordSlot) and isinstance(password, (str, bytes)) and \
            password == scan.password else DEFAULT_ARGON2
    if chunk_size is None:
        c = found.commit
        chunk_size = c.default_chunk_size if c is not None and \
            c.default_chunk_size % MIN_CHUNK_SIZE == 0 else DEFAULT_CHUNK_SIZE
    result = SalvageResult(os.fspath(out_path))
    key = create_archive(out_path, password=password, recipients=rcpts, argon2=argon2,
                         chunk_size=chunk_size, crypto=scan.crypto, codec=scan.codec)
    box = Lockbox.open(out_path, known_key=key, crypto=scan.crypto, codec=scan.codec)
    packs = PackCache()  # the members of a pack are salvaged one after another
    try:
        with box.writer() as w:
            plans = sorted(found.plans.values(), key=lambda p: path_order(p.path))
            status = {e.path: e.status for e in report.entries}
            for p in plans:
                try:
                    if p.type == EntryType.DIR:
                        if p.source != SOURCE_IMPLIED:
                            w.mkdir(p.path, p.mode, p.mtime_ns)
                            result.dirs += 1
                    elif p.type == EntryType.SYMLINK:
                        w.symlink(p.path, p.target, p.mode, p.mtime_ns)
                        result.symlinks += 1
                    elif status.get(p.path) == COMPLETE:
                        g = found.groups[p.file_id]
                        shape = group_shape(g)
                        assert shape is not None and g.meta is not None
                        stream = ChunkStream(scan.opener, scan.crypto, source, g, shape,
                                             g.meta.content_hash, packs)
                        w.add_stream(p.path, stream, mode=p.mode, mtime_ns=p.mtime_ns)
                        result.files += 1
                        result.bytes += shape[2]
                except LockboxError as e:
                    result.skipped.append(f"{p.path}: {e}")
            for name, value in sorted(found.env.items()):
                try:
                    w.env_set(name, value)
                    result.env_values += 1
                except LockboxError as e:
                    result.skipped.append(f"env {name}: {e}")
    finally:
        box.close()
    report.salvage = result
    return result


class ChunkStream:
    """A file's recovered content as a stream for ``Writer.add_stream``: chunks are
    re-read in order, re-authenticated, length-checked and hashed; the last read
    raises IntegrityError (and the writer drops the file) if the hash differs."""

    def __init__(self, opener: FrameOpener, crypto: CryptoBackend, source: RangeSource,
                 group: FileGroup, shape: Shape, content_hash: bytes,
                 packs: PackCache | None = None) -> None:
        self._opener = opener
        self._packs = packs
        self._source = source
        self._group = group
        self._shape = shape
        self._hash = content_hash
        self._hasher = crypto.blake3()
        self._batches = read_batches(group, shape[0])
        self._buf = bytearray()

    def _fetch(self) -> None:
        a, b = self._batches.pop(0)
        pieces = run_sync(read_chunks_flow(self._opener, self._group, a, b, self._shape,
                                           self._packs), self._source)
        for data in pieces:
            self._hasher.update(data)
        if not self._batches and self._hasher.digest() != self._hash:
            raise IntegrityError(f"{self._group.path}: content does not match its BLAKE3 "
                                 "hash any more")
        for data in pieces:
            self._buf += data

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._batches:
            self._fetch()
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out
