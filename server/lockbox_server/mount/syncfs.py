"""``lockbox mount`` for ``.sync``: one file (read-only) and sync-mount's store (a folder).

**One ``.sync`` file or URL** (:func:`make_file_provider`, read-only like sync-mount):
the root lists exactly one file, named by :func:`~.sync_store.single_display_name`
(``<stem>.<display_ext>`` unless the stem already ends with it); GET and HEAD read the
payload in place (Range requests seek: only the bytes asked for are read); any other
path is 404; every write is 403. ETag: the payload's CRC-32 and size and the file's
version; Last-Modified and creationdate: the manifest's ``created_at``. A local file
that is replaced while mounted (a hook's update) is served in its new version from
the next request on. The payload's CRC is not checked on reads (sync-mount's zero-copy
reads; ``lockbox verify`` checks it). A **vault** (an age-encrypted payload) is
decrypted once at start with the passphrase given (the mount serves the plaintext,
held in memory, at most ``max_vault_size`` = 256 MiB); without one the mount does not
start (UsageError, one line saying how to give it).

**A folder** (:func:`make_store_provider`): sync-mount's writable store
(``writable=True``), or a read-only listing of one. The listing shows subfolders and
the valid ``*.sync`` files by display name (:func:`~.sync_store.store_display_name`);
an invalid file is skipped with a logged warning (once per version of the file);
symlinks are not followed. Two files showing the same name (``notes.csv.sync`` and
``notes.sync`` with ``display_ext = "csv"``): the one named ``<name>.sync`` wins, else
the first by file name; a subfolder wins over a file; the hidden ones are warned about.
A file's ETag is its payload's CRC-32 and size and the file's version, Last-Modified
the file's mtime (an overwrite keeps ``created_at``), creationdate ``created_at``;
GETs read the payload in place (Range requests seek); a vault in a store is listed but
not served (403: mount the file itself with its passphrase).

Writes (``writable=True``):

* **PUT of a new name** ``N`` creates ``N.sync`` (always: ``a.sync`` becomes
  ``a.sync.sync``, so that every name uploaded is listed as it was sent; sync-mount
  stores it as ``a.sync`` and lists it as ``a``) with the template manifest
  (:func:`~.sync_store.template_manifest`: version 1.2, ``created_by = "lockbox
  mount"``, ttl 3600, timeout 30, the MIME type and display_ext from the name) and the
  8-byte stub ``sync.wasm``, in sync-rs's byte layout. The body is spooled to an
  unnamed temporary file in the target's folder (``O_TMPFILE``: nothing is left behind
  by a crash; memory stays bounded), then written beside the target, fsynced and
  renamed over it, the folder fsynced (``lockbox.formats.sync.writer``): a reader sees
  the old file or the new one, never a part.
* **PUT over an existing file** swaps only the payload
  (:func:`~lockbox.formats.sync.writer.rewrite_sync_file`): the manifest (its
  ``created_at`` too: sync-mount does not refresh it) and every other entry are kept
  byte for byte. An embedded signature that covers the payload then no longer
  verifies (``lockbox verify`` says so); re-sign to sign the new content. A vault's
  payload is not replaced by plaintext: 403.
* **MKCOL, DELETE, MOVE, COPY** work on files and folders. A file moved or copied to
  ``M`` becomes ``M.sync`` with its manifest unchanged (``notes.csv`` -> ``data.csv``
  renames ``notes.csv.sync`` to ``data.csv.sync``), with two exceptions: a manifest
  the store made itself from the old name (``created_by``, display_ext and MIME type
  as the template gave them, no signature) is made again for the new name (a client
  that uploads to a temporary name, then renames, gets the right type); and when
  ``M`` has no dot, a display_ext that would add one is cleared (the only way it can
  be listed as ``M``). DELETE of a folder removes what the store
  shows (and macOS's ``._*`` / ``.DS_Store`` files); a folder that holds anything else
  (an invalid ``.sync``, another file) is refused with 409 and left whole.
* macOS's ``._*`` and ``.DS_Store`` are accepted and store nothing: PUT succeeds, GET
  answers an empty file, DELETE, MOVE and COPY do nothing (sync-mount).
* A path with a ``..`` segment, a backslash or a NUL: 403 (wsgidav itself answers 400
  for a path that climbs above the root before any provider sees it).
* A name in the way that the store does not show (``N.sync`` that is invalid, or a
  folder of that name) is never overwritten: 409.

Every change runs under one lock per store (uploads are spooled outside it); dead
properties and locks are wsgidav's in-memory managers (moved and copied with the
files).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, BinaryIO

from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_INTERNAL_ERROR,
    HTTP_NOT_FOUND,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from lockbox import fileio
from lockbox.errors import LockboxError, UsageError
from lockbox.formats.sync.session import MAX_VAULT_SIZE
from lockbox.formats.sync.writer import rewrite_sync_file, write_sync_file
from lockbox.ranges import ByteRange
from lockbox.sources import is_url, open_source

from .sync_store import (
    CREATED_BY,
    SYNC_SUFFIX,
    PayloadReader,
    SyncFileCache,
    SyncFileInfo,
    display_ext_for_name,
    guess_content_type,
    is_ignored_name,
    is_sync_file_name,
    normalize_display_ext,
    parse_sync,
    single_display_name,
    stat_signature,
    store_display_name,
    template_manifest,
)

__all__ = ["make_file_provider", "make_store_provider", "SyncFileProvider",
           "SyncStoreProvider", "StoreFolder", "StoreFile", "IgnoredFile"]

log = logging.getLogger("lockbox.mount.sync")

_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
COPY_PIECE_SIZE = 1024 * 1024


# -- paths ---------------------------------------------------------------------------

def _bad_segment(segment: str) -> bool:
    return segment == ".." or "\\" in segment or "\x00" in segment


def _forbid_unsafe_path(raw: str | None, what: str) -> None:
    """403 for a URL path with a ``..`` segment, a backslash or a NUL (raw: before
    wsgidav's normalisation resolves the ``..``)."""
    if not raw:
        return
    path = urllib.parse.urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
    for segment in urllib.parse.unquote(path).split("/"):
        if _bad_segment(segment):
            raise DAVError(HTTP_FORBIDDEN, f"{what}: '..', '\\' and NUL are not allowed "
                                           "in paths")


def _segments(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for p in parts:
        if _bad_segment(p):
            raise DAVError(HTTP_FORBIDDEN, "'..', '\\' and NUL are not allowed in paths")
    return parts


class _GuardedProvider(DAVProvider):
    def custom_request_handler(self, environ: dict[str, Any],
                               start_response: Callable[..., Any],
                               default_handler: Callable[..., Any]) -> Any:
        _forbid_unsafe_path(environ.get("REQUEST_URI") or environ.get("RAW_URI"), "path")
        _forbid_unsafe_path(environ.get("HTTP_DESTINATION"), "Destination")
        return default_handler(environ, start_response)


def _dav_error(e: BaseException, what: str) -> DAVError:
    if isinstance(e, DAVError):
        return e
    if isinstance(e, FileNotFoundError):
        return DAVError(HTTP_NOT_FOUND, f"{what}: not found")
    if isinstance(e, (PermissionError, IsADirectoryError, NotADirectoryError,
                      FileExistsError)):
        return DAVError(HTTP_CONFLICT if not isinstance(e, PermissionError)
                        else HTTP_FORBIDDEN, f"{what}: {getattr(e, 'strerror', e) or e}")
    if isinstance(e, OSError) and e.errno == errno.ENOTEMPTY:
        return DAVError(HTTP_CONFLICT, f"{what}: {e.strerror}")
    return DAVError(HTTP_INTERNAL_ERROR, f"{what}: {e}")


# -- one .sync file --------------------------------------------------------------------

class _SingleState:
    """One version of the mounted file: its parsed layout and how to read its payload."""

    def __init__(self, info: SyncFileInfo, name: str, *, handle: BinaryIO | None = None,
                 source: Any = None, plaintext: bytes | None = None) -> None:
        self.info = info
        self.name = name
        self.handle = handle  # a local file, kept open (readers keep this state alive)
        self.source = source
        self.plaintext = plaintext
        self.lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.plaintext) if self.plaintext is not None else self.info.payload_size

    def open_payload(self) -> io.RawIOBase | io.BytesIO:
        if self.plaintext is not None:
            return io.BytesIO(self.plaintext)
        if self.handle is not None:
            reader = PayloadReader(offset=self.info.payload_offset, size=self.size,
                                   fd=self.handle.fileno())
        else:
            reader = PayloadReader(offset=self.info.payload_offset, size=self.size,
                                   source=self.source, lock=self.lock)
        reader.keepalive = self  # type: ignore[attr-defined]
        return reader


class SyncFileProvider(_GuardedProvider):
    """A read-only share of one ``.sync`` (see the module docstring)."""

    def __init__(self, location: str, *, passphrase: str | None = None,
                 max_vault_size: int = MAX_VAULT_SIZE,
                 max_scrypt_log_n: int | None = None,
                 ask_passphrase: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.location = location
        self.ask_passphrase = ask_passphrase
        self.is_remote = is_url(location)
        self.passphrase = passphrase
        self.max_vault_size = max_vault_size
        self.max_scrypt_log_n = max_scrypt_log_n
        self._lock = threading.Lock()
        self._source: Any = None
        self._state = self._load()

    def is_readonly(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"SyncFileProvider({self.location!r})"

    def _decrypt(self, info: SyncFileInfo, read: Callable[[int, int], bytes]) -> bytes:
        from lockbox.errors import LimitExceededError
        from lockbox.formats.sync.vault import decrypt_vault

        if not self.passphrase and self.ask_passphrase is not None:
            name = os.path.basename(self.location.rstrip("/"))
            self.passphrase = self.ask_passphrase(f"Passphrase for {name}: ")
        if not self.passphrase:
            raise UsageError(f"{self.location} is a vault (an age-encrypted payload): give "
                             "its passphrase to mount it (--archive-password-file FILE or "
                             "LOCKBOX_PASSWORD)")
        if info.payload_size > self.max_vault_size:
            raise LimitExceededError(f"the vault payload is {info.payload_size} bytes, over "
                                     f"the limit of {self.max_vault_size} (max_vault_size)")
        ciphertext = read(info.payload_offset, info.payload_size)
        kwargs: dict[str, Any] = {}
        if self.max_scrypt_log_n is not None:
            kwargs["max_scrypt_log_n"] = self.max_scrypt_log_n
        return decrypt_vault(ciphertext, self.passphrase, **kwargs)

    def _load(self) -> _SingleState:
        if self.is_remote:
            source = self._source = self._source or open_source(self.location)
            size = source.size
            if size is None:  # an HTTP source learns it from its first answer
                source.read([ByteRange(0, 16 * 1024)])
                size = source.size
            if size is None:
                raise UsageError(f"{self.location}: the server does not say the file's size")
            info = parse_sync(source, size, (0, 0, size, 0, 0), 0.0)

            def read_remote(offset: int, n: int) -> bytes:
                return bytes(source.read([ByteRange(offset, n)])[0]) if n else b""

            plain = self._decrypt(info, read_remote) if info.is_vault else None
            return _SingleState(info, single_display_name(self.location, info.display_ext),
                                source=source, plaintext=plain)
        handle = open(self.location, "rb", buffering=0)
        try:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{self.location} is not a regular file")
            parsed = SyncFileCache.parse_fd(handle.fileno(), st)
            if isinstance(parsed, str):
                raise UsageError(f"{self.location} is not a valid .sync: {parsed}")
            for warning in parsed.warnings:
                log.warning("%s: %s", self.location, warning)
            fd = handle.fileno()
            plain = self._decrypt(parsed, lambda o, n: os.pread(fd, n, o)) \
                if parsed.is_vault else None
        except BaseException:
            handle.close()
            raise
        return _SingleState(parsed, single_display_name(self.location, parsed.display_ext),
                            handle=handle, plaintext=plain)

    def current(self) -> _SingleState:
        """The state of the file now: a local file replaced since (a new inode, size or
        mtime) is parsed again; if the new version cannot be opened the old one stays."""
        state = self._state
        if self.is_remote:
            return state
        try:
            sig = stat_signature(os.stat(self.location))
        except OSError:
            return state
        if sig == state.info.signature:
            return state
        with self._lock:
            if self._state is state:
                try:
                    self._state = self._load()
                except (LockboxError, OSError) as e:
                    log.warning("%s changed but cannot be opened again (%s): still serving "
                                "the version opened before", self.location, e)
                    return state
            return self._state

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> Any:
        self._count_get_resource_inst += 1
        parts = _segments(path)
        state = self.current()
        if not parts:
            return _SingleRoot("/", environ, state)
        if len(parts) == 1 and parts[0] == state.name:
            return _SingleFile("/" + state.name, environ, state)
        return None

    def close(self) -> None:
        handle = self._state.handle
        if handle is not None:
            handle.close()
        if self._source is not None:
            self._source.close()


class _SingleRoot(DAVCollection):
    def __init__(self, path: str, environ: dict[str, Any], state: _SingleState) -> None:
        super().__init__(path, environ)
        self.state = state

    def get_display_name(self) -> str:
        return ""

    def get_creation_date(self) -> float | None:
        return self.state.info.created_at

    def get_last_modified(self) -> float | None:
        return self.state.info.created_at or self.state.info.mtime or None

    def get_member_names(self) -> list[str]:
        return [self.state.name]

    def get_member(self, name: str) -> Any:
        if name == self.state.name:
            return _SingleFile("/" + name, self.environ, self.state)
        return None


class _SingleFile(DAVNonCollection):
    def __init__(self, path: str, environ: dict[str, Any], state: _SingleState) -> None:
        super().__init__(path, environ)
        self.state = state

    def get_content_length(self) -> int:
        return self.state.size

    def get_content_type(self) -> str:
        return self.state.info.content_type

    def get_creation_date(self) -> float | None:
        return self.state.info.created_at

    def get_last_modified(self) -> float | None:
        return self.state.info.created_at or self.state.info.mtime or None

    def get_display_name(self) -> str:
        return self.state.name

    def get_etag(self) -> str:
        return self.state.info.etag

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> Any:
        return self.state.open_payload()


def make_file_provider(location: str | os.PathLike[str], *, passphrase: str | bytes | None = None,
                       password: str | bytes | None = None, **options: Any) -> DAVProvider:
    """The read-only provider of one ``.sync`` (a path or an http(s) URL).

    ``passphrase`` (or ``password``, what the CLI passes): a vault's, needed to mount
    one. ``options``: ``ask_passphrase`` (a function ``prompt -> passphrase``, called
    only for a vault when no passphrase is given: the CLI's terminal prompt),
    ``max_vault_size`` (bytes, default 256 MiB), ``max_scrypt_log_n``;
    ``settings`` (a dict, the mount's reader settings) is accepted and its keys of those
    names used. Raises UsageError (not a valid ``.sync``, a vault without passphrase),
    WrongKeyError (a wrong passphrase), StorageError / SourceUnavailableError."""
    secret = passphrase if passphrase is not None else password
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8")
    settings = dict(options.pop("settings", None) or {})
    known = {"max_vault_size", "max_scrypt_log_n"}
    unknown = set(options) - known - {"ask_passphrase"}
    if unknown:
        raise UsageError(f"make_file_provider: unknown option(s) {', '.join(sorted(unknown))}")
    kwargs = {k: v for k, v in settings.items() if k in known and v is not None}
    kwargs.update(options)
    return SyncFileProvider(os.fspath(location), passphrase=secret, **kwargs)


# -- a store ---------------------------------------------------------------------------

class SyncStoreProvider(_GuardedProvider):
    """sync-mount's store over the folder ``root`` (see the module docstring)."""

    def __init__(self, root: str, *, writable: bool) -> None:
        super().__init__()
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise UsageError(f"{root} is not a directory")
        self.writable = writable
        self.cache = SyncFileCache()
        self.lock = threading.RLock()
        self._warned: set[tuple[str, tuple[str, ...]]] = set()

    def is_readonly(self) -> bool:
        return not self.writable

    def __repr__(self) -> str:
        return f"SyncStoreProvider({self.root!r}, writable={self.writable})"

    # -- resolution --

    def dir_for(self, parts: list[str]) -> str | None:
        """The folder of ``parts`` (each a real folder, no symlink), or None."""
        path = self.root
        for part in parts:
            path = os.path.join(path, part)
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return None
            except OSError:
                return None
        return path

    def find_file(self, dir_path: str, name: str) -> tuple[str, SyncFileInfo] | None:
        """The valid ``.sync`` listed as ``name`` in ``dir_path``: ``name.sync`` (which
        wins a collision), else ``<name up to its first dot>.sync`` (the only other file
        that can show as ``name``)."""
        candidates = [name + SYNC_SUFFIX]
        first = name.split(".", 1)[0]
        if first and first != name:
            candidates.append(first + SYNC_SUFFIX)
        for file_name in candidates:
            if not is_sync_file_name(file_name) or is_ignored_name(file_name):
                continue
            path = os.path.join(dir_path, file_name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            info = self.cache.get(path, st)
            if info is not None and store_display_name(file_name, info.display_ext) == name:
                return path, info
        return None

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> Any:
        self._count_get_resource_inst += 1
        parts = _segments(path)
        if not parts:
            return StoreFolder("/", environ, self.root)
        dir_path = self.dir_for(parts[:-1])
        if dir_path is None:
            return None
        return self.member(dir_path, parts[-1], "/" + "/".join(parts), environ)

    def member(self, dir_path: str, name: str, path: str, environ: dict[str, Any]) -> Any:
        if is_ignored_name(name):
            return IgnoredFile(path, environ) if self.writable else None
        full = os.path.join(dir_path, name)
        try:
            if stat.S_ISDIR(os.lstat(full).st_mode):
                return StoreFolder(path, environ, full)
        except OSError:
            pass
        found = self.find_file(dir_path, name)
        if found is None:
            return None
        return StoreFile(path, environ, dir_path, name, found[0], found[1])

    def listing(self, dir_path: str) -> list[tuple[str, str, SyncFileInfo | None]]:
        """``(display name, path, info)`` of every member shown (info None: a folder),
        sorted by name; collisions resolved and warned about (once)."""
        dirs: dict[str, str] = {}
        files: dict[str, list[tuple[str, str, SyncFileInfo]]] = {}
        try:
            entries = list(os.scandir(dir_path))
        except OSError as e:
            raise _dav_error(e, "listing") from e
        for entry in entries:
            name = entry.name
            if is_ignored_name(name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                dirs[name] = entry.path
                continue
            if not stat.S_ISREG(st.st_mode) or not is_sync_file_name(name):
                continue  # symlinks, other files: not shown
            info = self.cache.get(entry.path, st)
            if info is None:
                continue
            shown = store_display_name(name, info.display_ext)
            if is_ignored_name(shown):
                continue
            files.setdefault(shown, []).append((name, entry.path, info))
        result: list[tuple[str, str, SyncFileInfo | None]] = [
            (name, path, None) for name, path in dirs.items()]
        for shown, group in files.items():
            group.sort(key=lambda g: (g[0] != shown + SYNC_SUFFIX, g[0]))
            if shown in dirs:
                self._warn(dir_path, shown, [g[0] for g in group], "a folder of that name")
                continue
            if len(group) > 1:
                self._warn(dir_path, shown, [g[0] for g in group[1:]], group[0][0])
            result.append((shown, group[0][1], group[0][2]))
        result.sort(key=lambda r: r[0])
        return result

    def _warn(self, dir_path: str, shown: str, hidden: list[str], winner: str) -> None:
        key = (os.path.join(dir_path, shown), tuple(hidden))
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("%s: %s also show(s) as %r: hidden behind %s", dir_path,
                    ", ".join(hidden), shown, winner)

    # -- changes --

    def require_writable(self) -> None:
        if not self.writable:
            raise DAVError(HTTP_FORBIDDEN, "this store is mounted read-only")

    def dest(self, dest_path: str) -> tuple[str, str]:
        """``(folder, name)`` of a COPY/MOVE destination (its folder must exist)."""
        parts = _segments(dest_path)
        if not parts:
            raise DAVError(HTTP_FORBIDDEN, "the root cannot be replaced")
        dir_path = self.dir_for(parts[:-1])
        if dir_path is None:
            raise DAVError(HTTP_CONFLICT, "the destination's folder does not exist")
        return dir_path, parts[-1]

    def free_target(self, dir_path: str, name: str) -> str:
        """The path ``name.sync`` in ``dir_path``, which must not exist (409: something
        the store does not show is in the way)."""
        target = os.path.join(dir_path, name + SYNC_SUFFIX)
        if os.path.lexists(target):
            raise DAVError(HTTP_CONFLICT, f"{name + SYNC_SUFFIX} is in the way (not a valid "
                                          ".sync, or hidden): left untouched")
        return target

    def fit_manifest(self, target: str, old_name: str, name: str) -> None:
        """After a MOVE or COPY of ``old_name`` to ``name`` (the file ``target``):

        * a manifest this store made from ``old_name`` (``created_by`` ours, its
          display_ext and MIME type what the template gives ``old_name``, no signature)
          is made again for ``name``: a client that uploads to a temporary name and then
          renames it (GNOME, davfs2, office suites) gets ``report.pdf`` typed as a PDF;
        * any other manifest is kept (sync-mount), except that a display_ext that keeps
          the file from showing as ``name`` (a name without a dot) is cleared.

        A change rewrites the manifest (atomically; the payload is copied)."""
        st = os.lstat(target)
        info = self.cache.get(target, st)
        if info is None:
            return
        m = info.manifest
        changes: dict[str, str] = {}
        if m.created_by == CREATED_BY and m.signature is None and \
                m.display_ext == display_ext_for_name(old_name) and \
                m.content_type == guess_content_type(old_name):
            ext, ctype = display_ext_for_name(name), guess_content_type(name)
            if (ext, ctype) != (m.display_ext, m.content_type):
                changes = {"display_ext": ext, "content_type": ctype}
        shown_ext = changes.get("display_ext", m.display_ext)
        if store_display_name(os.path.basename(target), shown_ext) != name and \
                normalize_display_ext(shown_ext)[0]:
            changes["display_ext"] = ""
        if changes:
            rewrite_sync_file(target, manifest_toml=m.replace(**changes).to_toml())
            self.cache.forget(target)

    def create_sync(self, dir_path: str, name: str, payload: BinaryIO) -> str:
        """Write a new ``name.sync`` (template manifest, ``payload``, stub wasm) or swap
        the payload of the file shown as ``name``. Returns its path."""
        with self.lock:
            found = self.find_file(dir_path, name)
            if found is not None:
                if found[1].is_vault:
                    raise DAVError(HTTP_FORBIDDEN, f"{name} is a vault (an encrypted "
                                                   "payload): it is not replaced by plaintext")
                rewrite_sync_file(found[0], payload=payload)
                self.cache.forget(found[0])
                return found[0]
            try:
                if stat.S_ISDIR(os.lstat(os.path.join(dir_path, name)).st_mode):
                    raise DAVError(HTTP_CONFLICT, f"{name} is a folder")
            except FileNotFoundError:
                pass
            target = self.free_target(dir_path, name)
            write_sync_file(target, manifest_toml=template_manifest(name).to_toml(),
                            payload=payload, overwrite=False)
            return target

    def delete_file(self, path: str) -> None:
        with self.lock:
            os.unlink(path)
            self.cache.forget(path)
            fileio.fsync_dir(os.path.dirname(path))

    def _hidden_content(self, dir_path: str) -> list[str]:
        """What a folder (recursively) holds that the store does not show."""
        hidden: list[str] = []
        for entry in os.scandir(dir_path):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                hidden += self._hidden_content(entry.path)
            elif stat.S_ISREG(st.st_mode) and (is_ignored_name(entry.name) or
                                               _stale_temp(entry.name)):
                continue  # macOS metadata, a killed writer's temporary file: junk
            elif not (stat.S_ISREG(st.st_mode) and is_sync_file_name(entry.name)
                      and self.cache.get(entry.path, st) is not None):
                hidden.append(os.path.relpath(entry.path, self.root))
        return hidden

    def delete_folder(self, dir_path: str) -> None:
        if dir_path == self.root:
            raise DAVError(HTTP_FORBIDDEN, "the store's root cannot be deleted")
        with self.lock:
            hidden = self._hidden_content(dir_path)
            if hidden:
                shown = ", ".join(hidden[:3]) + (" ..." if len(hidden) > 3 else "")
                raise DAVError(HTTP_CONFLICT, f"the folder holds {len(hidden)} file(s) the "
                                              f"store does not show ({shown}): not deleted")
            for current, subdirs, names in os.walk(dir_path, topdown=False):
                for n in names:
                    os.unlink(os.path.join(current, n))
                    self.cache.forget(os.path.join(current, n))
                for d in subdirs:
                    os.rmdir(os.path.join(current, d))
            os.rmdir(dir_path)
            fileio.fsync_dir(os.path.dirname(dir_path))


def _stamp_props(res: Any, dest_path: str, *, is_move: bool, with_children: bool) -> None:
    """Move or copy the dead properties of ``res`` to ``dest_path``."""
    prop_man = res.provider.prop_manager
    if not prop_man:
        return
    dest_url = res.provider.share_path + dest_path if res.provider.share_path else dest_path
    dest_res = res.provider.get_resource_inst(dest_path, res.environ)
    if dest_res is not None:
        dest_url = dest_res.get_ref_url()
    if is_move:
        prop_man.move_properties(res.get_ref_url(), dest_url, with_children=with_children,
                                 environ=res.environ)
    else:
        prop_man.copy_properties(res.get_ref_url(), dest_url, res.environ)


_TEMP_NAME = re.compile(r"\..+\.(\d+)\.sync-tmp")


def _stale_temp(name: str) -> bool:
    """A temporary file of lockbox's ``.sync`` writer (``.{name}.{pid}.sync-tmp``)
    whose process is gone (a kill during a write)."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def _check_not_locked(res: Any) -> None:
    """423 Locked when ``res`` is locked by another token than the request's (what
    wsgidav checks before it deletes a resource itself)."""
    lock_man = res.provider.lock_manager
    if lock_man is None:
        return
    environ = res.environ
    if "wsgidav.conditions.if" not in environ:
        util.parse_if_header_dict(environ)
    lock_man.check_write_permission(url=res.get_ref_url(), depth="0",
                                    token_list=environ["wsgidav.ifLockTokenList"],
                                    principal=environ["wsgidav.user_name"])


class StoreFolder(DAVCollection):
    """A folder of the store (the root too)."""

    provider: SyncStoreProvider

    def __init__(self, path: str, environ: dict[str, Any], fs_path: str) -> None:
        super().__init__(path, environ)
        self.fs_path = fs_path
        try:
            self.st: os.stat_result | None = os.lstat(fs_path)
        except OSError:
            self.st = None

    def get_display_name(self) -> str:
        return os.path.basename(self.path.rstrip("/"))

    def get_creation_date(self) -> float | None:
        return self.st.st_ctime if self.st else None

    def get_last_modified(self) -> float | None:
        return self.st.st_mtime if self.st else None

    def get_etag(self) -> None:
        return None

    def _child_path(self, name: str) -> str:
        return util.join_uri(self.path, name)

    def get_member_names(self) -> list[str]:
        return [name for name, _, _ in self.provider.listing(self.fs_path)]

    def get_member_list(self) -> list[Any]:
        members: list[Any] = []
        for name, path, info in self.provider.listing(self.fs_path):
            child = self._child_path(name)
            if info is None:
                members.append(StoreFolder(child, self.environ, path))
            else:
                members.append(StoreFile(child, self.environ, self.fs_path, name, path, info))
        return members

    def get_member(self, name: str) -> Any:
        return self.provider.member(self.fs_path, name, self._child_path(name), self.environ)

    def create_empty_resource(self, name: str) -> Any:
        self.provider.require_writable()
        path = self._child_path(name)
        if is_ignored_name(name):
            return IgnoredFile(path, self.environ)
        if self.environ.get("REQUEST_METHOD") == "PUT":  # written when the body is in
            return StoreFile(path, self.environ, self.fs_path, name, None, None)
        try:
            target = self.provider.create_sync(self.fs_path, name, io.BytesIO(b""))
        except (LockboxError, OSError) as e:
            raise _dav_error(e, name) from e
        return self.provider.member(self.fs_path, name, path, self.environ) or \
            StoreFile(path, self.environ, self.fs_path, name, target, None)

    def create_collection(self, name: str) -> None:
        self.provider.require_writable()
        if is_ignored_name(name) or _bad_segment(name):
            raise DAVError(HTTP_FORBIDDEN, f"{name!r} cannot be a folder name here")
        with self.provider.lock:
            try:
                os.mkdir(os.path.join(self.fs_path, name))
                fileio.fsync_dir(self.fs_path)
            except OSError as e:
                raise _dav_error(e, name) from e

    def support_recursive_delete(self) -> bool:
        return True

    def delete(self) -> None:
        self.provider.require_writable()
        try:
            self.provider.delete_folder(self.fs_path)
        except (LockboxError, OSError) as e:
            raise _dav_error(e, self.path) from e
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        self.provider.require_writable()
        dir_path, name = self.provider.dest(dest_path)
        target = os.path.join(dir_path, name)
        with self.provider.lock:
            try:
                if not os.path.isdir(target):
                    os.mkdir(target)
                    fileio.fsync_dir(dir_path)
            except OSError as e:
                raise _dav_error(e, dest_path) from e
        _stamp_props(self, dest_path, is_move=is_move, with_children=False)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        self.provider.require_writable()
        if self.fs_path == self.provider.root:
            raise DAVError(HTTP_FORBIDDEN, "the store's root cannot be moved")
        dir_path, name = self.provider.dest(dest_path)
        target = os.path.join(dir_path, name)
        with self.provider.lock:
            if os.path.lexists(target):
                raise DAVError(HTTP_CONFLICT, f"{dest_path}: something the store does not "
                                              "show is in the way")
            try:
                os.rename(self.fs_path, target)
                fileio.fsync_dir(dir_path)
                fileio.fsync_dir(os.path.dirname(self.fs_path))
            except (LockboxError, OSError) as e:
                raise _dav_error(e, dest_path) from e
        _stamp_props(self, dest_path, is_move=True, with_children=True)


class _Upload:
    """The body of a PUT, spooled to an unnamed temporary file in the target's folder;
    :meth:`close` publishes it (wsgidav calls it after the last byte)."""

    def __init__(self, res: StoreFile) -> None:
        self.res = res
        self.size = 0
        environ = res.environ
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        self.expected_size = None if chunked or length < 0 else length
        try:
            self.spool: BinaryIO | None = tempfile.TemporaryFile(dir=res.dir_path)
        except OSError as e:
            raise _dav_error(e, res.path) from e
        self.done = False

    def write(self, data: bytes) -> int:
        assert self.spool is not None
        self.size += len(data)
        return self.spool.write(data)

    def close(self) -> None:
        if self.done or self.spool is None:
            return
        self.done = True
        try:
            if self.expected_size is not None and self.size != self.expected_size:
                # wsgidav ends the body at EOF: a cut connection must not store a part
                raise DAVError(HTTP_BAD_REQUEST, f"the body ended after {self.size} of "
                                                 f"{self.expected_size} bytes: nothing stored")
            self.spool.flush()
            self.spool.seek(0)
            self.res.commit(self.spool)
        except (LockboxError, OSError) as e:
            raise _dav_error(e, self.res.path) from e
        finally:
            self.discard()

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class StoreFile(DAVNonCollection):
    """A ``.sync`` of the store, shown as its payload (``file_path`` None: a PUT's new
    file, written when its body is in)."""

    provider: SyncStoreProvider

    def __init__(self, path: str, environ: dict[str, Any], dir_path: str, name: str,
                 file_path: str | None, info: SyncFileInfo | None) -> None:
        super().__init__(path, environ)
        self.dir_path = dir_path
        self.name = name
        self.file_path = file_path
        self.info = info
        self._upload: _Upload | None = None

    def _info(self) -> SyncFileInfo | None:
        if self.info is None and self.file_path is not None:
            try:
                self.info = self.provider.cache.get(self.file_path, os.lstat(self.file_path))
            except OSError:
                return None
        return self.info

    def get_content_length(self) -> int:
        info = self._info()
        return info.payload_size if info else 0

    def get_content_type(self) -> str:
        info = self._info()
        return info.content_type if info else "application/octet-stream"

    def get_creation_date(self) -> float | None:
        info = self._info()
        return (info.created_at or info.mtime) if info else None

    def get_last_modified(self) -> float | None:
        info = self._info()
        return info.mtime if info else None

    def get_display_name(self) -> str:
        return self.name

    def get_etag(self) -> str | None:
        info = self._info()
        return info.etag if info else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> Any:
        if self.file_path is None:
            return io.BytesIO(b"")
        try:
            fd = os.open(self.file_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) |
                         getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise _dav_error(e, self.path) from e
        try:
            st = os.fstat(fd)
            info = self._info()
            if info is None or info.signature != stat_signature(st):
                parsed = SyncFileCache.parse_fd(fd, st)  # replaced since: read this one
                if isinstance(parsed, str):
                    raise DAVError(HTTP_NOT_FOUND, f"{self.path}: {parsed}")
                info = parsed
            if info.is_vault:
                raise DAVError(HTTP_FORBIDDEN, f"{self.name} is a vault (an age-encrypted "
                                               "payload): mount the file itself with its "
                                               "passphrase to read it")
            return PayloadReader(offset=info.payload_offset, size=info.payload_size, fd=fd,
                                 owns_fd=True)
        except BaseException:
            os.close(fd)
            raise

    def begin_write(self, *, content_type: str | None = None) -> _Upload:
        self.provider.require_writable()
        info = self._info()
        if info is not None and info.is_vault:
            raise DAVError(HTTP_FORBIDDEN, f"{self.name} is a vault (an encrypted payload): "
                                           "it is not replaced by plaintext")
        self._upload = _Upload(self)
        return self._upload

    def end_write(self, *, with_errors: bool) -> None:
        if self._upload is not None:
            self._upload.discard()
            self._upload = None

    def commit(self, payload: BinaryIO) -> None:
        self.file_path = self.provider.create_sync(self.dir_path, self.name, payload)
        self.info = None

    def delete(self) -> None:
        self.provider.require_writable()
        if self.file_path is not None:
            try:
                self.provider.delete_file(self.file_path)
            except FileNotFoundError:
                pass
            except (LockboxError, OSError) as e:
                raise _dav_error(e, self.path) from e
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def handle_delete(self) -> bool:
        """Deleted here: wsgidav's own DELETE checks afterwards that the name is gone,
        which is not so when a hidden file of the same display name shows up then."""
        _check_not_locked(self)
        self.delete()
        return True

    def _transfer(self, dest_path: str, *, is_move: bool) -> None:
        provider = self.provider
        provider.require_writable()
        dir_path, name = provider.dest(dest_path)
        if is_ignored_name(name) or self.file_path is None:
            return  # sync-mount: to or from a macOS metadata name, nothing happens
        with provider.lock:
            target = os.path.join(dir_path, name + SYNC_SUFFIX)
            found = provider.find_file(dir_path, name)  # a file shown as name: replaced
            if found is not None and found[0] != target:
                provider.delete_file(found[0])
            if found is None or found[0] != target:
                provider.free_target(dir_path, name)
            try:
                if is_move:
                    os.replace(self.file_path, target)
                    fileio.fsync_dir(dir_path)
                    if os.path.dirname(self.file_path) != dir_path:
                        fileio.fsync_dir(os.path.dirname(self.file_path))
                    provider.cache.forget(self.file_path)
                else:
                    provider.cache.forget(target)
                    with open(self.file_path, "rb") as src, \
                            fileio.atomic_file(target, overwrite=found is not None,
                                               tag="sync-tmp",
                                               mode=0o666) as fd, \
                            open(fd, "wb", closefd=False) as out:
                        shutil.copyfileobj(src, out, COPY_PIECE_SIZE)
                provider.fit_manifest(target, self.name, name)
            except (LockboxError, OSError) as e:
                raise _dav_error(e, dest_path) from e
        _stamp_props(self, dest_path, is_move=is_move, with_children=False)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        self._transfer(dest_path, is_move=is_move)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        self._transfer(dest_path, is_move=True)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


class IgnoredFile(DAVNonCollection):
    """``._*`` and ``.DS_Store`` in a writable store: always there, empty, and every
    change to it does nothing (sync-mount's NoopDavFile)."""

    def get_content_length(self) -> int:
        return 0

    def get_content_type(self) -> str:
        return "application/octet-stream"

    def get_display_name(self) -> str:
        return os.path.basename(self.path)

    def get_etag(self) -> None:
        return None

    def support_etag(self) -> bool:
        return False

    def get_content(self) -> Any:
        return io.BytesIO(b"")

    def begin_write(self, *, content_type: str | None = None) -> _Discard:
        return _Discard()

    def end_write(self, *, with_errors: bool) -> None:
        pass

    def delete(self) -> None:
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def handle_delete(self) -> bool:
        _check_not_locked(self)
        self.delete()  # the name stays (it always exists): wsgidav's check would fail
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        pass

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        pass


def make_store_provider(directory: str | os.PathLike[str], *, writable: bool,
                        **options: Any) -> DAVProvider:
    """The provider of a sync store: the folder ``directory`` (which must exist) as
    sync-mount's writable store (``writable``) or a read-only listing of it. ``options``:
    ``settings`` (accepted, unused). Raises UsageError."""
    options.pop("settings", None)
    if options:
        raise UsageError(f"make_store_provider: unknown option(s) {', '.join(sorted(options))}")
    return SyncStoreProvider(os.fspath(directory), writable=writable)
