"""Creating a new, empty archive atomically (temporary file, fsync, link or rename), or
unpublished, for a writer that commits to it at once (docs/FORMAT.md §11 "Creating an
archive")."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

from ....codec.base import Codec as CodecBackend
from ....crypto.base import CryptoBackend
from ....errors import StorageError, UsageError
from ....fileio import fsync_dir, temp_path, write_atomically
from ....platform import default_codec, default_crypto
from ..frames import FrameSealer
from ..keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    Recipient,
    committed_keydir,
    new_password_slot,
    new_recipient_slot,
)
from ..wire.commit import EMPTY_TREE, CommitRecord
from ..wire.constants import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    SUPERBLOCK_SIZE,
)
from ..wire.keydir import KeySlot
from ..wire.page import encode_keydir_page
from .commit import keydir_field_for, write_commit_slot

__all__ = ["create_archive", "write_new_archive", "unpublished_path", "publish_archive",
           "discard_unpublished"]

_UNPUBLISHED_TAG = "lbx-new"


def create_archive(path: str | os.PathLike[str], *, password: str | bytes | None = None,
                   recipients: Sequence[Recipient] = (),
                   argon2: Argon2Params = DEFAULT_ARGON2,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, overwrite: bool = False,
                   crypto: CryptoBackend | None = None,
                   codec: CodecBackend | None = None,
                   unpublished: bool = False) -> tuple[bytes, bytes]:
    """Write a new empty archive (generation 1) at ``path``; returns its archive id
    and content key (kept in memory only, to open it without re-deriving).

    ``unpublished``: write it to :func:`unpublished_path` instead, not fsynced, for a
    writer that commits to it at once and then :func:`publish_archive` it (its commit's
    fsyncs make the creation durable with it: one fsync fewer, and nothing at ``path``
    before the first commit is durable); :func:`discard_unpublished` when that fails.
    Not with ``overwrite``."""
    crypto = crypto or default_crypto()
    codec = codec or default_codec()
    if password is None and not recipients:
        raise UsageError("an archive needs a password or at least one recipient")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or chunk_size % MIN_CHUNK_SIZE:
        raise UsageError("chunk size must be a multiple of 4 KiB between 4 KiB and 4 MiB")
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise StorageError(f"{path} already exists")
    if unpublished and overwrite:
        raise UsageError("an unpublished new archive never replaces a file")
    archive_id = crypto.random_bytes(16)
    content_key = crypto.random_bytes(32)
    slots: list[KeySlot] = []
    if password is not None:
        slots.append(new_password_slot(crypto, archive_id, content_key, password, argon2))
    for r in recipients:
        slots.append(new_recipient_slot(crypto, archive_id, content_key, r,
                                        {s.slot_id for s in slots}))
    keydir = committed_keydir(crypto, archive_id, content_key, slots)
    if unpublished:
        image = _new_archive_image(archive_id=archive_id, content_key=content_key,
                                   keydir=keydir, chunk_size=chunk_size, crypto=crypto,
                                   codec=codec)
        _write_unpublished(path, image)
    else:
        write_new_archive(path, archive_id=archive_id, content_key=content_key,
                          keydir=keydir, chunk_size=chunk_size, overwrite=overwrite,
                          crypto=crypto, codec=codec)
    return archive_id, content_key


def unpublished_path(path: str | os.PathLike[str]) -> str:
    """Where ``create_archive(path, unpublished=True)`` writes the new archive: a
    temporary name beside ``path`` (this process's), never read as ``path``."""
    return temp_path(os.path.abspath(os.fspath(path)), _UNPUBLISHED_TAG)


def _write_unpublished(path: str, image: bytes | bytearray) -> None:
    tmp = unpublished_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
    except OSError as e:
        raise StorageError(f"cannot create {path}: {e.strerror or e}") from e
    try:
        view = memoryview(image)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        os.close(fd)
        discard_unpublished(path)
        raise StorageError(f"cannot create {path}: {e.strerror or e}") from e
    os.close(fd)


def publish_archive(path: str | os.PathLike[str], *, committed: bool) -> None:
    """Give the unpublished new archive its name ``path``: fsync it unless ``committed``
    (a commit to it returned: its fsyncs covered every byte of the file), link it to
    ``path`` (StorageError ``already exists`` when ``path`` appeared meanwhile; it is
    never replaced), remove the temporary name, fsync the directory. The temporary file
    is removed in every case."""
    path = os.path.abspath(os.fspath(path))
    tmp = unpublished_path(path)
    try:
        if not committed:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.link(tmp, path)  # fails if the path appeared meanwhile
    except FileExistsError:
        raise StorageError(f"{path} already exists") from None
    except OSError as e:
        raise StorageError(f"cannot create {path}: {e.strerror or e}") from e
    finally:
        discard_unpublished(path)
    fsync_dir(os.path.dirname(path))


def discard_unpublished(path: str | os.PathLike[str]) -> None:
    """Remove the unpublished new archive of ``path`` (nothing when there is none)."""
    try:
        os.unlink(unpublished_path(path))
    except FileNotFoundError:
        pass

def write_new_archive(path: str, *, archive_id: bytes, content_key: bytes, keydir: bytes,
                      chunk_size: int, overwrite: bool, crypto: CryptoBackend,
                      codec: CodecBackend, generation: int = 1) -> None:
    """Write an empty archive with the given identity and key directory, atomically
    (``lockbox.fileio.write_atomically``: temporary file, fsync, link or rename, fsync
    of the directory; StorageError when ``path`` exists and not ``overwrite``). ``keydir`` is a
    version-2 key directory (``lockbox.formats.lbox.keys.committed_keydir``)."""
    image = _new_archive_image(archive_id=archive_id, content_key=content_key,
                               keydir=keydir, chunk_size=chunk_size, crypto=crypto,
                               codec=codec, generation=generation)
    write_atomically(path, image, overwrite=overwrite, tag=_UNPUBLISHED_TAG)


def _new_archive_image(*, archive_id: bytes, content_key: bytes, keydir: bytes,
                       chunk_size: int, crypto: CryptoBackend, codec: CodecBackend,
                       generation: int = 1) -> bytearray:
    """The bytes of a new, empty archive: the superblock and the first KEYDIR page."""
    # The key directory always gets a KEYDIR page right after the superblock (a copy for
    # recovery scanners); the slot holds it inline when it fits, else points at the page.
    keydir_page = encode_keydir_page(archive_id, keydir, generation)
    keydir_field = keydir_field_for(keydir, SUPERBLOCK_SIZE)
    record = CommitRecord(
        generation=generation, time_ns=time.time_ns(),
        archive_end=SUPERBLOCK_SIZE + len(keydir_page),
        default_chunk_size=chunk_size, keydir_sha256=hashlib.sha256(keydir).digest(),
        toc=EMPTY_TREE, env=EMPTY_TREE, space=None)
    image = bytearray(SUPERBLOCK_SIZE)

    def put(data: bytes, offset: int) -> None:
        image[offset:offset + len(data)] = data

    write_commit_slot(put, FrameSealer(crypto, codec, archive_id, content_key), archive_id,
                      record, keydir_field)
    image += keydir_page
    return image
