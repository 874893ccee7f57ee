"""The read-only WebDAV provider over any archive the format-neutral reader opens.

:class:`ArchiveProvider` publishes one :class:`lockbox.facade.Archive` (a ``.lbox``
unlocked with its password or identity, a ``.uri``, a ``.sync``, a snapdir snapshot
``STORE_URI#id=ID``; a local file or an http(s) URL) as a wsgidav share:

* a directory is a collection: its members come from one ``listdir`` (a PROPFIND
  Depth 1 of 10,000 entries is one listing, not 10,000 ``stat`` calls);
* a file is a non-collection: GET streams it through :class:`~lockbox.facade.ArchiveFile`,
  which is seekable, so wsgidav answers Range requests by seeking: only the chunks
  the range covers are read (and checked) from the archive;
* symlinks are not published (WebDAV has none; ``lockbox extract`` restores them);
* ETag: the content's BLAKE3 when the format records it (a strong validator by
  definition: same bytes, same tag, across commits); otherwise the entry's size and
  mtime plus a token of the archive file (its size and mtime, or the URL's length), so
  a rewritten archive does not reuse an old tag;
* Last-Modified and creationdate: the entry's mtime (whole seconds); in a format that
  keeps none (``.uri``: 0), the archive file's; none at all for such a format on a URL.

The provider is read-only (``is_readonly()``): the mount app answers every write
method with 403 before it reaches wsgidav (``lockbox_server.mount.app``). The archive
is what was opened when the mount started: later commits to a ``.lbox`` are not seen.

Every archive call is serialised by one lock: the server is threaded, a session's
caches are not meant for concurrent use, and reads of one archive share one source.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from typing import Any

from wsgidav import util
from wsgidav.dav_error import HTTP_FORBIDDEN, HTTP_NOT_FOUND, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from lockbox.errors import LockboxError, NotFoundError, UnsafePathError
from lockbox.facade import Archive, ArchiveFile
from lockbox.info import EntryInfo

__all__ = ["ArchiveProvider", "ArchiveFolder", "ArchiveMember", "entry_etag"]

READ_WINDOW_SIZE = 256 * 1024
"""Bytes one random-access read of a served file fetches (a Range GET of 1 byte reads
one window of the chunks it falls in: bounded, whatever the file's size)."""


def entry_etag(info: EntryInfo, archive_token: str) -> str:
    """The strong, unquoted ETag of an entry (see the module docstring)."""
    if info.is_file and info.blake3:
        return "b3-" + info.blake3[:40]
    return f"{info.size:x}-{info.mtime_ns:x}-{archive_token}"


def _archive_token(archive: Archive) -> str:
    """A short token that changes when the archive file does."""
    h = hashlib.blake2b(digest_size=6)
    h.update((archive.location or "").encode("utf-8", "surrogatepass"))
    size = archive.source.size
    h.update(str(size).encode())
    if archive.path is not None:
        try:
            st = os.stat(archive.path)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            pass
    return h.hexdigest()


def _archive_mtime_ns(archive: Archive) -> int | None:
    """The archive file's mtime: the entries' Last-Modified in a format that keeps none
    (``.uri``); None for a URL."""
    if archive.path is None:
        return None
    try:
        return os.stat(archive.path).st_mtime_ns
    except OSError:
        return None


def _archive_path(path: str) -> str:
    """The archive's path for a share path (``/a/b/`` -> ``a/b``; ``/`` -> ``""``)."""
    return "/".join(p for p in path.split("/") if p)


class _LockedFile(io.RawIOBase):
    """An :class:`ArchiveFile` whose every call holds the provider's lock."""

    def __init__(self, inner: ArchiveFile, lock: threading.RLock) -> None:
        super().__init__()
        self._inner = inner
        self._lock = lock

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._lock:
            return self._inner.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            try:
                return self._inner.readinto(buffer)
            except LockboxError as e:  # mid-response: the client sees a cut body
                raise OSError(f"{self._inner.info.path}: {e}") from e

    def close(self) -> None:
        self._inner.close()
        super().close()


class _Entry:
    """What both resource kinds share: the entry and the provider."""

    info: EntryInfo
    provider: ArchiveProvider

    def _mtime_ns(self) -> int | None:
        return self.info.mtime_ns or self.provider.fallback_mtime_ns

    def get_creation_date(self) -> float | None:
        mtime_ns = self._mtime_ns()
        return None if mtime_ns is None else mtime_ns / 1e9

    def get_last_modified(self) -> int | None:
        # Whole seconds, as HTTP dates are: If-Modified-Since compares against this.
        mtime_ns = self._mtime_ns()
        return None if mtime_ns is None else mtime_ns // 1_000_000_000

    def get_display_name(self) -> str:
        return self.info.name

    def get_etag(self) -> str:
        return entry_etag(self.info, self.provider.archive_token)

    def support_etag(self) -> bool:
        return True

    def support_modified(self) -> bool:
        return self._mtime_ns() is not None


class ArchiveMember(_Entry, DAVNonCollection):
    """A file of the archive."""

    def __init__(self, path: str, environ: dict[str, Any], info: EntryInfo,
                 provider: ArchiveProvider) -> None:
        DAVNonCollection.__init__(self, path, environ)
        self.info = info
        self.provider = provider

    def get_content_length(self) -> int:
        return self.info.size

    def get_content_type(self) -> str:
        return str(util.guess_mime_type(self.path, self.environ["wsgidav.config"]))

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> io.RawIOBase:
        return self.provider.open_file(self.info)

    def begin_write(self, *, content_type: str | None = None) -> Any:
        raise DAVError(HTTP_FORBIDDEN)

    def delete(self) -> None:
        raise DAVError(HTTP_FORBIDDEN)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        raise DAVError(HTTP_FORBIDDEN)


class ArchiveFolder(_Entry, DAVCollection):
    """A directory of the archive (the share's root is the archive's root)."""

    def __init__(self, path: str, environ: dict[str, Any], info: EntryInfo,
                 provider: ArchiveProvider) -> None:
        DAVCollection.__init__(self, path, environ)
        self.info = info
        self.provider = provider

    def get_display_name(self) -> str:
        return self.info.name or self.provider.display_name

    def _children(self) -> list[EntryInfo]:
        return [e for e in self.provider.listdir(self.info.path) if e.type in ("file", "dir")]

    def get_member_names(self) -> list[str]:
        return [e.name for e in self._children()]

    def get_member(self, name: str) -> ArchiveFolder | ArchiveMember | None:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def get_member_list(self) -> list[ArchiveFolder | ArchiveMember]:
        out: list[ArchiveFolder | ArchiveMember] = []
        for e in self._children():
            out.append(self.provider.resource(util.join_uri(self.path, e.name), self.environ, e))
        return out

    def create_empty_resource(self, name: str) -> Any:
        raise DAVError(HTTP_FORBIDDEN)

    def create_collection(self, name: str) -> None:
        raise DAVError(HTTP_FORBIDDEN)

    def delete(self) -> None:
        raise DAVError(HTTP_FORBIDDEN)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        raise DAVError(HTTP_FORBIDDEN)


class ArchiveProvider(DAVProvider):
    """A read-only wsgidav provider over an opened archive (which it closes on
    :meth:`close`). ``display_name``: the root's name (default: the archive's file name).
    ``window_size``: bytes a random-access read fetches (see :data:`READ_WINDOW_SIZE`).
    ``on_file``: called with every file object handed to wsgidav (tests count reads)."""

    def __init__(self, archive: Archive, *, display_name: str | None = None,
                 window_size: int = READ_WINDOW_SIZE,
                 on_file: Callable[[io.RawIOBase], None] | None = None) -> None:
        super().__init__()
        self.archive = archive
        self.lock = threading.RLock()
        self.window_size = window_size
        self.on_file = on_file
        loc = archive.location or ""
        self.display_name = display_name or os.path.basename(loc.split("#", 1)[0].rstrip("/"))
        self.archive_token = _archive_token(archive)
        self.fallback_mtime_ns = _archive_mtime_ns(archive)
        with self.lock:
            root = archive.stat("")
        self._root = root

    def __repr__(self) -> str:
        return f"ArchiveProvider({self.archive.location!r})"

    def is_readonly(self) -> bool:
        return True

    # -- archive access (every call under the lock) -------------------------------

    def stat(self, path: str) -> EntryInfo | None:
        if not path:
            return self._root
        try:
            with self.lock:
                return self.archive.stat(path)
        except (NotFoundError, UnsafePathError):
            return None

    def listdir(self, path: str) -> list[EntryInfo]:
        try:
            with self.lock:
                return self.archive.ls(path)
        except (NotFoundError, UnsafePathError):
            raise DAVError(HTTP_NOT_FOUND) from None

    def open_file(self, info: EntryInfo) -> io.RawIOBase:
        inner = ArchiveFile(self.archive, info, self.window_size)
        f = _LockedFile(inner, self.lock)
        if self.on_file is not None:
            self.on_file(f)
        return f

    # -- wsgidav ------------------------------------------------------------------

    def resource(self, path: str, environ: dict[str, Any],
                 info: EntryInfo) -> ArchiveFolder | ArchiveMember:
        if info.is_dir:
            return ArchiveFolder(path, environ, info, self)
        return ArchiveMember(path, environ, info, self)

    def get_resource_inst(self, path: str, environ: dict[str, Any]
                          ) -> ArchiveFolder | ArchiveMember | None:
        self._count_get_resource_inst += 1
        info = self.stat(_archive_path(path))
        if info is None or info.type not in ("file", "dir"):
            return None
        return self.resource(path, environ, info)

    def close(self) -> None:
        with self.lock:
            self.archive.close()
