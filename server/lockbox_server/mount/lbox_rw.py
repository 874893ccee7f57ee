"""The writable ``.lbox`` mount (``lockbox mount x.lbox --writable``).

:func:`make_provider` opens the archive and its writer for the life of the mount: the
mount is the archive's one writer (another ``lockbox add`` meanwhile fails with exit
code 13, "locked by another writer"). Requests are of two kinds:

* **Reads** (GET, HEAD, PROPFIND, OPTIONS, UNLOCK): they see the *committed* state,
  through the archive object, under :attr:`LboxProvider.lock` (one call at a time; a
  commit takes the same lock). A GET's body is read a window at a time; if a commit
  replaces or removes the file while it is being sent, the body is cut (the client
  sees a short response, never bytes of another version).
* **Changes** (PUT, MKCOL, DELETE, COPY, MOVE, PROPPATCH, LOCK): the request takes the
  writer turn (:class:`~.lbox_batch.GroupCommit`) and wsgidav runs it against the
  *staged* state (what earlier requests staged is visible, e.g. a MOVE right after a
  PUT). The answer is held back until the commit that holds the change is durable (the
  ``.lbox`` commit: pages, fsync, commit slot, fsync); a failed commit answers 500 and
  the archive stays at its last commit. A request that fails (4xx/5xx raised by
  wsgidav, a client gone mid-body) has its staged changes taken back; the pages its
  content already used are accounted dead at the next commit and reused later.

PUT streams the body into the writer a chunk at a time (memory bounded by the chunk
size plus wsgidav's read block, whatever the file's size); the file's mtime is the PUT
time. COPY of a file reads the committed source and writes a new version (two files
never share chunks: each chunk frame names its file version). MOVE is a rename of
entries (no content rewritten). DELETE of a collection removes the tree in one change.

Dead properties (PROPPATCH) and locks live in wsgidav's in-memory managers: they last
as long as the mount (see docs/MOUNT.md for why they are not written into the archive).
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

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

import lockbox
from lockbox.cache import CacheLimit, PageCache
from lockbox.errors import (
    InvalidPathError,
    LockboxError,
    NotFoundError,
    UnsafePathError,
    UsageError,
)
from lockbox.facade import ArchiveFile
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.keys import Identity
from lockbox.formats.lbox.wire.constants import EntryType, FrameKind
from lockbox.formats.lbox.wire.entry import Entry, decode_entry, key_path, normalize_path
from lockbox.formats.lbox.write.writer import Writer
from lockbox.info import EntryInfo

from .lbox_batch import GroupCommit, Ticket
from .provider import READ_WINDOW_SIZE

__all__ = ["LboxProvider", "make_provider", "CHANGE_METHODS", "LARGE_BODY_SIZE"]

CHANGE_METHODS = frozenset({"PUT", "MKCOL", "DELETE", "COPY", "MOVE", "PROPPATCH", "LOCK"})
"""Requests that may change the archive: they run with the writer turn."""

LARGE_BODY_SIZE = 1 << 20
"""A PUT body at least this large (or of unknown length) commits what other requests
staged before it starts reading, so that their answers do not wait for its body."""

_STAGING = "lockbox.staging"  # environ key: this request holds the writer turn


@dataclass(frozen=True)
class Node:
    """What the resources need of an entry, staged or committed."""

    path: str  # archive path ("" for the root)
    is_dir: bool
    size: int
    mtime_ns: int
    mode: int
    content_hash: str  # hex BLAKE3 of a file's content

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @classmethod
    def of_info(cls, info: EntryInfo) -> Node:
        return cls(info.path, info.is_dir, info.size, info.mtime_ns, info.mode, info.blake3)

    @classmethod
    def of_entry(cls, path: str, e: Entry) -> Node:
        return cls(path, e.is_dir, e.size, e.mtime_ns, e.mode, e.content_hash.hex())


def _archive_path(dav_path: str) -> str:
    """``/a/b/`` -> ``a/b`` (the root: ``""``); 403 for a name the archive refuses."""
    try:
        return normalize_path(dav_path)
    except (InvalidPathError, UnsafePathError) as e:
        raise DAVError(HTTP_FORBIDDEN, str(e)) from None


def _etag(node: Node) -> str:
    return "b3-" + node.content_hash[:40]


class _BodyReader:
    """wsgidav's PUT body blocks as a ``read(n)`` stream: ``n`` bytes, fewer only at
    the end (what the writer's chunker expects). Holds at most one block + ``n``."""

    def __init__(self, blocks: Iterable[bytes], expected_size: int | None) -> None:
        self._blocks = iter(blocks)
        self._buf = bytearray()
        self._eof = False
        self._expected_size = expected_size
        self._received = 0
        self.size = 0

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and not self._eof:
            try:
                block = next(self._blocks)
            except StopIteration:
                self._eof = True
                if self._expected_size is not None and self._received != self._expected_size:
                    # The server's input ends quietly when the client goes away: a
                    # short body is a failed upload, never a shorter file.
                    raise DAVError(HTTP_BAD_REQUEST, f"the body ended after {self._received} "
                                   f"of {self._expected_size} bytes") from None
                break
            self._received += len(block)
            self._buf += block
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.size += len(out)
        return out


class _PutSink:
    """What ``begin_write`` hands wsgidav: ``writelines`` streams the whole body into
    the writer (one new file version, staged)."""

    def __init__(self, resource: LboxFile) -> None:
        self._resource = resource

    def writelines(self, blocks: Iterable[bytes]) -> None:
        res = self._resource
        provider = res.provider
        mode = res.node.mode if res.node is not None else 0o644
        length = res.environ.get("CONTENT_LENGTH") or ""
        body = _BodyReader(blocks, int(length) if length.isdigit() else None)
        entry = provider.writer.add_stream(res.apath, body, mode=mode & 0o7777)
        provider.mark_staged()
        res.node = Node.of_entry(res.apath, entry)

    def write(self, data: bytes) -> None:  # pragma: no cover - wsgidav uses writelines
        raise DAVError(HTTP_INTERNAL_ERROR, "the body must be streamed with writelines")

    def close(self) -> None:
        pass


class _CommittedFile(io.RawIOBase):
    """A file of the committed state, read under the provider's lock. Each read checks
    that the file is still the version it opened: after a commit that replaced or
    removed it, the read fails (the response is cut) instead of mixing versions."""

    def __init__(self, provider: LboxProvider, info: EntryInfo) -> None:
        super().__init__()
        self._provider = provider
        self._info = info
        self._generation = provider.box.generation
        self._inner = ArchiveFile(provider.box, info, READ_WINDOW_SIZE)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._provider.lock:
            return self._inner.seek(offset, whence)

    def _revalidate(self) -> None:
        box = self._provider.box
        if box.generation == self._generation:
            return
        try:
            now = box.stat(self._info.path)
        except LockboxError:
            now = None
        if now is None or now.blake3 != self._info.blake3 or now.size != self._info.size:
            raise OSError(f"{self._info.path} changed while it was being sent")
        pos = self._inner.tell()
        self._inner = ArchiveFile(box, now, READ_WINDOW_SIZE)
        self._inner.seek(pos)
        self._generation = box.generation

    def readinto(self, buffer: Any) -> int:
        with self._provider.lock:
            try:
                self._revalidate()
                return self._inner.readinto(buffer)
            except LockboxError as e:  # mid-response: the client sees a cut body
                raise OSError(str(e)) from e

    def close(self) -> None:
        self._inner.close()
        super().close()


class _Resource:
    """What files and folders share."""

    provider: LboxProvider
    node: Node | None
    apath: str
    environ: dict[str, Any]
    path: str

    def get_creation_date(self) -> float | None:
        return None if self.node is None else self.node.mtime_ns / 1e9

    def get_last_modified(self) -> float | None:
        return None if self.node is None else self.node.mtime_ns / 1e9

    def get_display_name(self) -> str:
        return self.apath.rpartition("/")[2]

    def support_modified(self) -> bool:
        return True

    def set_last_modified(self, dest_path: str, time_stamp: int | str, *,
                          dry_run: bool) -> bool:
        """Change the entry's mtime (wsgidav calls this for an ``X-OC-Mtime`` header
        when ``honor_mtime_header`` is on, a PROPPATCH of ``getlastmodified`` listed in
        ``mutable_live_props``, or Windows' ``Win32LastModifiedTime``). Seconds since
        the epoch or an HTTP date."""
        self._staging()
        secs = time_stamp if isinstance(time_stamp, int) else util.parse_time_string(time_stamp)
        if not isinstance(secs, int):
            raise DAVError(HTTP_BAD_REQUEST, f"not a time: {time_stamp!r}")
        apath = _archive_path(dest_path)
        writer = self.provider.writer
        entry = writer.staging.get_entry(apath)
        if entry is None:
            raise DAVError(HTTP_NOT_FOUND)
        if dry_run:
            return True
        mtime_ns = secs * 1_000_000_000
        if entry.is_dir:
            writer.mkdir(apath, entry.mode, mtime_ns)
        else:  # the same content, the same frames: only the TOC entry changes
            writer.put_entry(apath, dataclasses.replace(entry, mtime_ns=mtime_ns))
        self.provider.mark_staged()
        if self.node is not None and self.node.path == apath:
            self.node = dataclasses.replace(self.node, mtime_ns=mtime_ns)
        return True

    def _staging(self) -> None:
        if not self.environ.get(_STAGING):
            raise DAVError(HTTP_FORBIDDEN, "a change outside a change request")

    def _dest(self, dest_path: str) -> str:
        return _archive_path(dest_path)

    def _props(self, dest_path: str, *, is_move: bool, with_children: bool) -> None:
        """Dead properties follow a MOVE / COPY (keyed by quoted ref URL, as wsgidav's
        property manager stores them)."""
        pm = self.provider.prop_manager
        if not pm:
            return
        dest = self.provider.get_resource_inst(dest_path, self.environ)  # staged: exists
        if dest is None:
            return
        src_url = self.get_ref_url()  # type: ignore[attr-defined]
        if is_move:
            pm.move_properties(src_url, dest.get_ref_url(), with_children=with_children,
                               environ=self.environ)
        else:
            pm.copy_properties(src_url, dest.get_ref_url(), self.environ)

    def _remove(self) -> None:
        self._staging()
        try:
            self.provider.writer.remove(self.apath, recursive=True)
        except NotFoundError:
            return  # moved away earlier in this request (wsgidav's MOVE file by file)
        except InvalidPathError as e:
            raise DAVError(HTTP_FORBIDDEN, str(e)) from None
        self.provider.mark_staged()
        self.remove_all_properties(recursive=True)  # type: ignore[attr-defined]
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        self._staging()
        dest = self._dest(dest_path)
        try:
            self.provider.writer.move(self.apath, dest)
        except NotFoundError:
            raise DAVError(HTTP_NOT_FOUND) from None
        except InvalidPathError as e:
            raise DAVError(HTTP_CONFLICT, str(e)) from None
        self.provider.mark_staged()
        self._props(dest_path, is_move=True, with_children=True)


class LboxFile(_Resource, DAVNonCollection):
    """A file of the archive (``node`` None: a PUT's new file, not staged yet)."""

    def __init__(self, path: str, environ: dict[str, Any], provider: LboxProvider,
                 apath: str, node: Node | None) -> None:
        DAVNonCollection.__init__(self, path, environ)
        self.provider = provider
        self.apath = apath
        self.node = node

    def get_content_length(self) -> int:
        return 0 if self.node is None else self.node.size

    def get_content_type(self) -> str:
        return str(util.guess_mime_type(self.path, self.environ.get("wsgidav.config")))

    def get_etag(self) -> str | None:
        return None if self.node is None else _etag(self.node)

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> io.RawIOBase:
        return self.provider.open_committed(self.apath)

    def begin_write(self, *, content_type: str | None = None) -> _PutSink:
        self._staging()
        return _PutSink(self)

    def end_write(self, *, with_errors: bool) -> None:
        pass

    def delete(self) -> None:
        self._remove()

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        self._staging()
        dest = self._dest(dest_path)
        if is_move:
            self.move_recursive(dest_path)
            return
        self.provider.copy_file(self.apath, dest)
        self._props(dest_path, is_move=False, with_children=False)


class LboxFolder(_Resource, DAVCollection):
    """A directory of the archive."""

    def __init__(self, path: str, environ: dict[str, Any], provider: LboxProvider,
                 apath: str, node: Node | None) -> None:
        DAVCollection.__init__(self, path, environ)
        self.provider = provider
        self.apath = apath
        self.node = node

    def get_etag(self) -> str | None:
        return None

    def support_etag(self) -> bool:
        return False

    def get_used_bytes(self) -> int:
        """The archive file's size (DAV:quota-used-bytes: file managers show it)."""
        return self.provider.archive_size()

    def get_available_bytes(self) -> int:
        """Free space where the archive file is (DAV:quota-available-bytes)."""
        return self.provider.free_bytes()

    def get_member_names(self) -> list[str]:
        return [n.name for n in self.provider.children(self.apath, self.environ)]

    def get_member_list(self) -> list[LboxFile | LboxFolder]:
        return [self.provider.resource(util.join_uri(self.path, n.name), self.environ, n)
                for n in self.provider.children(self.apath, self.environ)]

    def get_member(self, name: str) -> LboxFile | LboxFolder | None:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def get_descendants(self, *, collections: bool = True, resources: bool = True,
                        depth_first: bool = False, depth: str = "infinity",
                        add_self: bool = False) -> list[Any]:
        # wsgidav 4.4 lists a COPY's source with depth infinity whatever the Depth
        # header says: a COPY with Depth 0 copies the collection alone (RFC 4918 9.8.3).
        env = self.environ
        if (env.get("REQUEST_METHOD") == "COPY" and env.get("HTTP_DEPTH") == "0"
                and _archive_path(env.get("PATH_INFO", "")) == self.apath):
            depth = "0"
        result: list[Any] = super().get_descendants(
            collections=collections, resources=resources, depth_first=depth_first,
            depth=depth, add_self=add_self)
        return result

    def create_empty_resource(self, name: str) -> LboxFile:
        self._staging()
        path = util.join_uri(self.path, name)
        apath = _archive_path(path)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            return LboxFile(path, self.environ, self.provider, apath, None)  # begin_write
        try:  # a LOCK on an unmapped URL: an empty file (RFC 4918 7.3)
            entry = self.provider.writer.add_bytes(apath, b"")
        except InvalidPathError as e:
            raise DAVError(HTTP_CONFLICT, str(e)) from None
        self.provider.mark_staged()
        return LboxFile(path, self.environ, self.provider, apath, Node.of_entry(apath, entry))

    def create_collection(self, name: str) -> None:
        self._staging()
        apath = _archive_path(util.join_uri(self.path, name))
        try:
            self.provider.writer.mkdir(apath)
        except InvalidPathError as e:
            raise DAVError(HTTP_CONFLICT, str(e)) from None
        self.provider.mark_staged()

    def support_recursive_delete(self) -> bool:
        return True

    def delete(self) -> None:
        if not self.apath:
            raise DAVError(HTTP_FORBIDDEN, "the archive root cannot be removed")
        self._remove()

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        self._staging()
        dest = self._dest(dest_path)
        writer = self.provider.writer
        existing = writer.staging.get_entry(dest) if dest else None
        if existing is None:
            node = self.node
            try:
                writer.mkdir(dest, node.mode if node else 0o755, node.mtime_ns if node else None)
            except InvalidPathError as e:
                raise DAVError(HTTP_CONFLICT, str(e)) from None
            self.provider.mark_staged()
        self._props(dest_path, is_move=is_move, with_children=False)


class LboxProvider(DAVProvider):
    """A wsgidav provider that reads and changes one ``.lbox`` (see the module
    docstring). ``close()`` commits nothing new (every answered change is committed
    already), releases the writer and closes the archive."""

    # Merged into the wsgidav config by make_mount_app: clients that set modification
    # times (X-OC-Mtime from rclone's owncloud/nextcloud modes, PROPPATCH of
    # getlastmodified, Windows' Win32LastModifiedTime) keep them in the archive
    # (set_last_modified). litmus passes 104/104 with these on.
    mount_config: ClassVar[dict[str, Any]] = {
        "honor_mtime_header": True,
        "mutable_live_props": ["{DAV:}getlastmodified"],
        "hotfixes": {"emulate_win32_lastmod": True},
    }

    def __init__(self, box: Lockbox, *, max_batch: int = 64,
                 max_delay_s: float = 0.05) -> None:
        super().__init__()
        if box.path is None:
            raise UsageError("only a local .lbox file mounts writable")
        self.box = box
        self.path: str = box.path
        self.lock = threading.RLock()  # the archive object: reads, commits
        self.writer: Writer = box.writer()
        self.batch = GroupCommit(self._commit, self._abort, max_batch=max_batch,
                                 max_delay_s=max_delay_s)
        self._staged = False
        self.closed = False

    def __repr__(self) -> str:
        return f"LboxProvider({self.box.path!r}, writable)"

    def is_readonly(self) -> bool:
        return False

    # -- the writer ------------------------------------------------------------------

    def mark_staged(self) -> None:
        self._staged = True

    def _commit(self) -> None:
        with self.lock:
            self.writer.commit()

    def _abort(self) -> None:
        with self.lock:
            self.writer.abort()

    def custom_request_handler(self, environ: dict[str, Any], start_response: Any,
                               default_handler: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in CHANGE_METHODS or self.closed:
            return default_handler(environ, start_response)  # type: ignore[no-any-return]
        answer: list[Any] = []

        def held_start_response(status: str, headers: list[tuple[str, str]],
                                exc_info: Any = None) -> Callable[[bytes], None]:
            answer[:] = [status, headers, exc_info]
            return _no_write

        ticket: Ticket | None = None
        with self.batch.turn():
            if self._flush_first(environ):
                self.batch.flush()
            staging = self.writer.staging
            saved = (dict(staging.toc_changes), dict(staging.env_changes),
                     set(staging.known_dirs), set(staging.new_dirs))
            self._staged = False
            environ[_STAGING] = True
            try:
                body = list(default_handler(environ, held_start_response))
            except BaseException as e:
                # Take back what this request staged (its content frames are dead
                # weight, accounted at the next commit).
                (staging.toc_changes, staging.env_changes, staging.known_dirs,
                 staging.new_dirs) = saved
                if _is_failure(e):
                    self._reset_writer()
                raise
            finally:
                environ[_STAGING] = False
            if self._staged:
                ticket = self.batch.add()
        if ticket is not None:
            while not ticket.wait(5.0):
                # A safety net: the batching rule always leaves a committer, but a
                # turn taken and given back commits whatever is still pending.
                with self.batch.turn():
                    pass
            if ticket.error is not None:
                raise DAVError(HTTP_INTERNAL_ERROR,
                               f"the change was not committed: {ticket.error}")
        status, headers, exc_info = answer
        start_response(status, headers, exc_info)
        return body

    def _reset_writer(self) -> None:
        """After an I/O or internal error while staging (the writer's pages may be in
        any state): commit what other requests staged (or fail them all), then drop
        whatever this session wrote past the last commit."""
        self.batch.flush()
        try:
            self._abort()
        except Exception:
            pass  # the next commit (or the next writer) starts from the durable state

    @staticmethod
    def _flush_first(environ: dict[str, Any]) -> bool:
        method = environ.get("REQUEST_METHOD")
        if method == "COPY":
            return True  # reads content from the committed state
        if method != "PUT":
            return False
        length = environ.get("CONTENT_LENGTH") or ""
        return not length.isdigit() or int(length) >= LARGE_BODY_SIZE

    # -- state -----------------------------------------------------------------------

    def node(self, apath: str, environ: dict[str, Any]) -> Node | None:
        if environ.get(_STAGING):
            entry = self.writer.staging.get_entry(apath)
            if entry is None or entry.type not in (EntryType.FILE, EntryType.DIR):
                return None
            return Node.of_entry(apath, entry)
        try:
            with self.lock:
                info = self.box.stat(apath)
        except (NotFoundError, UnsafePathError, InvalidPathError):
            return None
        if info.type not in ("file", "dir"):
            return None
        return Node.of_info(info)

    def children(self, apath: str, environ: dict[str, Any]) -> list[Node]:
        if environ.get(_STAGING):
            return self._staged_children(apath)
        try:
            with self.lock:
                infos = self.box.ls(apath)
        except (NotFoundError, UnsafePathError, InvalidPathError):
            raise DAVError(HTTP_NOT_FOUND) from None
        return [Node.of_info(i) for i in infos if i.type in ("file", "dir")]

    def _staged_children(self, apath: str) -> list[Node]:
        """The children of directory ``apath`` as staged: the committed TOC range of
        its members overlaid with the staged changes."""
        writer = self.writer
        view = writer.staging.view
        lo = apath.encode() + b"\x00"
        hi = apath.encode() + b"\x01"
        found: dict[bytes, Entry | None] = {}
        if not view.commit.toc.empty:
            for k, v in writer.run(view.scan_flow(FrameKind.TOC_NODE, view.commit.toc,
                                                  [(lo, hi)])):
                found[k] = decode_entry(v)
        for k, e in writer.staging.toc_changes.items():
            if lo <= k < hi:
                found[k] = e
        out = []
        for k, e in sorted(found.items()):
            if e is not None and e.type in (EntryType.FILE, EntryType.DIR):
                out.append(Node.of_entry(key_path(k), e))
        return out

    def open_committed(self, apath: str) -> io.RawIOBase:
        with self.lock:
            try:
                info = self.box.stat(apath)
            except NotFoundError:
                raise DAVError(HTTP_NOT_FOUND) from None
            return _CommittedFile(self, info)

    def copy_file(self, src: str, dest: str) -> None:
        """Stage a copy of committed file ``src`` at ``dest`` (content re-written)."""
        with self.lock:
            info = self.box.stat(src)
            source = ArchiveFile(self.box, info, READ_WINDOW_SIZE)
        try:
            self.writer.add_stream(dest, _LockedReader(source, self.lock),
                                   mode=info.mode & 0o7777, mtime_ns=info.mtime_ns)
        except InvalidPathError as e:
            raise DAVError(HTTP_CONFLICT, str(e)) from None
        finally:
            source.close()
        self.mark_staged()

    def archive_size(self) -> int:
        with self.lock:
            return int(self.box.source.size)

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free
        except OSError:
            return 0

    # -- wsgidav -----------------------------------------------------------------------

    def resource(self, path: str, environ: dict[str, Any], node: Node
                 ) -> LboxFile | LboxFolder:
        apath = node.path
        if node.is_dir:
            return LboxFolder(path, environ, self, apath, node)
        return LboxFile(path, environ, self, apath, node)

    def get_resource_inst(self, path: str, environ: dict[str, Any]
                          ) -> LboxFile | LboxFolder | None:
        self._count_get_resource_inst += 1
        try:
            apath = normalize_path(path)
        except (InvalidPathError, UnsafePathError):
            return None
        node = self.node(apath, environ)
        return None if node is None else self.resource(path, environ, node)

    def close(self) -> None:
        """Release the writer and close the archive (idempotent). Nothing is pending:
        every change was committed before it was answered."""
        if self.closed:
            return
        self.closed = True
        with self.batch.turn(), self.lock:
            self.batch.flush()
            if self.writer.dirty:  # a request cut by shutdown: its change was not answered
                self.writer.abort()
            self.writer.close()
            self.box.close()


class _SharedPageCache(PageCache):
    """The archive's page cache, shared by the reads of the committed state (under the
    provider's lock) and the writer's lookups of the staged state (under the writer
    turn): one lock keeps its LRU consistent."""

    def __init__(self, budget_bytes: CacheLimit = "auto") -> None:
        super().__init__(budget_bytes)
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            return super().get(key)

    def put(self, key: Any, value: Any, weight: int) -> None:
        with self._lock:
            super().put(key, value, weight)

    def clear(self) -> None:
        with self._lock:
            super().clear()


class _LockedReader:
    """A committed file read under the provider's lock (COPY's source)."""

    def __init__(self, inner: ArchiveFile, lock: threading.RLock) -> None:
        self._inner = inner
        self._lock = lock

    def read(self, n: int) -> bytes:
        with self._lock:
            return self._inner.read(n)


def _is_failure(e: BaseException) -> bool:
    """An error of the server or the disk (not a refused request: 4xx)."""
    if isinstance(e, DAVError):
        return int(e.value) >= 500
    return True


def _no_write(data: bytes) -> None:  # pragma: no cover - wsgidav never uses write()
    raise RuntimeError("write() is not supported by the lockbox mount")


def make_provider(path: str | os.PathLike[str], *, password: str | bytes | None = None,
                  identity: Identity | None = None,
                  known_key: tuple[bytes, bytes] | None = None, max_batch: int = 64,
                  max_delay_s: float = 0.05, **settings: Any) -> LboxProvider:
    """The writable provider of the ``.lbox`` at ``path``, unlocked with ``password`` or
    ``identity``, or with ``known_key`` (``(archive_id, content_key)``, e.g. from the
    unlock agent: checked against the key directory's commitment); it holds the
    archive's writer until ``close()`` (LockedError when another writer has it).
    ``max_batch`` / ``max_delay_s``: the group-commit bounds
    (:class:`~.lbox_batch.GroupCommit`); ``settings`` go to ``lockbox.open``."""
    cache = settings.pop("cache", "auto")
    if not isinstance(cache, PageCache):
        cache = _SharedPageCache(cache)
    elif not isinstance(cache, _SharedPageCache):
        raise UsageError("a writable mount makes its own page cache: give a size, not a cache")
    if known_key is not None:
        settings["known_key"] = known_key
    box = lockbox.open(os.fspath(path), password=password, identity=identity, format="lbox",
                       cache=cache, **settings)
    if not isinstance(box, Lockbox):  # pragma: no cover - format="lbox" opens a Lockbox
        box.close()
        raise UsageError(f"{path} is not a .lbox archive")
    try:
        return LboxProvider(box, max_batch=max_batch, max_delay_s=max_delay_s)
    except BaseException:
        box.close()
        raise

