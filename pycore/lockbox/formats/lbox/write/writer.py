"""Writing: one write session that stages changes and commits them atomically.

Commit protocol (docs/FORMAT.md §11): new pages are written past the committed
end of the file, then fsync; then the commit record is written into the slot
that does *not* hold the current commit, then fsync. A crash at any point
leaves the previous commit intact and readable. Many changes are one commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat as stat_mod
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar

from ....drivers import Flow, run_sync
from ....errors import (
    CommitError,
    InvalidPathError,
    LockboxError,
    LockedError,
    NotFoundError,
    StorageError,
    UsageError,
)
from ....fileio import fsync
from ....ranges import ByteRange
from ....sources.base import SourceStats
from ..frames import FrameSealer
from ..keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    Recipient,
    check_password_slot_room,
    committed_keydir,
    new_password_slot,
    new_recipient_slot,
)
from ..view import ArchiveView
from ..wire.chunk import ChunkMeta, encode_chunk_parts, encode_index, encode_meta
from ..wire.commit import EMPTY_TREE, CommitRecord, Stats, TreeRoot, encode_commit
from ..wire.constants import (
    INDEX_FANOUT,
    INLINE_CHUNK_REFS,
    MAX_ENV_NAME_SIZE,
    MAX_ENV_VALUE_SIZE,
    MAX_SYMLINK_SIZE,
    PAGE_HEADER_SIZE,
    EntryType,
    FrameKind,
)
from ..wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    MAX_INDEX_REFS,
    Entry,
    decode_entry,
    encode_entry,
    key_path,
    normalize_path,
    split_path,
    subtree_ranges,
    toc_key,
)
from ..wire.keydir import KeySlot, keydir_has_commitment
from ..wire.page import encode_keydir_page
from ..wire.refs import Ref
from ..wire.superblock import (
    SLOT_CAPACITY,
    ExternalKeydir,
)
from .commit import keydir_field_for, write_commit_slot
from .pages import PageWriter
from .pipeline import Prepared, SmallFile, SmallFilePipeline, resolve_jobs
from .space import FREE, KEYDIR, TAIL_KEY, SpaceMap, encode_tail
from .spacekeeper import SpaceKeeper
from .target import WritableArchive
from .tree import TreeUpdate, update_tree_flow

__all__ = ["Writer", "Progress"]

T = TypeVar("T")

Progress = Callable[[str, int], None]  # (archive path, bytes just added)
_NOT_LAST = encode_meta(None)


class _FdSource:
    """Reads the committed part of the archive through the writer's own fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stats = SourceStats()

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, ranges: Iterable[ByteRange]) -> list[bytes]:
        out = []
        for r in ranges:
            self.stats.requests += 1
            data = os.pread(self.fd, r.size, r.offset)
            self.stats.bytes_read += len(data)
            out.append(data)
        return out

    def close(self) -> None:
        pass


class _FdReader:
    """Minimal unbuffered reader over an fd (less overhead than io.open)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, n: int) -> bytes:
        data = os.read(self.fd, n)
        if len(data) < n and data:
            parts = [data]
            got = len(data)
            while got < n:
                more = os.read(self.fd, n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockedError("another writer has this archive open") from None


class Writer:
    """Stages changes to an archive; ``commit()`` makes them durable at once.

    Use as a context manager: ``with archive.writer() as w: ...`` commits on
    normal exit and discards everything on an exception (the archive keeps its
    previous commit, byte for byte).
    """

    def __init__(self, archive: WritableArchive, *, level: int = 3) -> None:
        if archive.path is None:
            raise UsageError("only a local archive file can be written")
        self._archive = archive
        self.path = archive.path
        try:
            self.fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            raise StorageError(f"cannot open {self.path} for writing: {e.strerror}") from e
        try:
            _lock(self.fd)
            self._source = _FdSource(self.fd)
            archive.refresh()  # the committed state under the lock is the truth
            self._begin(archive.view, level)
        except BaseException:
            os.close(self.fd)
            raise
        self.closed = False

    def _begin(self, view: ArchiveView, level: int,
               space: tuple[SpaceMap, int] | None = None) -> None:
        self.view = view
        self.crypto = self._archive.crypto
        self.codec = self._archive.codec
        self.generation = view.generation + 1
        self.sealer = FrameSealer(self.crypto, self.codec, view.archive_id,
                                  self._archive.content_key, level)
        self._keeper = SpaceKeeper(self.fd, self.run)
        if space is None:
            # The durable commit's map; finish any redaction an earlier session left.
            self.space, self._map_tail = self._keeper.load(view)
            if self.space.dead or any(r.live == 0 and r.kind != FREE
                                      for r in self.space.pages.values()):
                self._keeper.redact(self.space, view.generation)
        else:
            self.space, self._map_tail = space
        self.pages = PageWriter(self.fd, view.commit.archive_end, self.generation, self.sealer,
                                self.space)
        # Every content frame written in this session, by file version: those of a
        # version that no staged entry references at commit are dead.
        self._session_frames: dict[bytes, list[Ref]] = {}
        self._chunk_pool: ThreadPoolExecutor | None = getattr(self, "_chunk_pool", None)
        self._jobs: int = getattr(self, "_jobs", 1)
        # LOCKBOX_IMPORT_TIMINGS=1: coarse stage totals (seconds) for diagnostics.
        self.timings: dict[str, float] | None = getattr(self, "timings", None)
        if self.timings is None and os.environ.get("LOCKBOX_IMPORT_TIMINGS") == "1":
            self.timings = {"read": 0.0, "prepare": 0.0, "write": 0.0, "commit": 0.0}
        self.chunk_size = view.commit.default_chunk_size
        self.toc_changes: dict[bytes, Entry | None] = {}
        self.env_changes: dict[bytes, bytes | None] = {}
        self.key_slots: list[KeySlot] = list(view.key_slots)
        self._keys_changed = False
        self._slot_removed = False
        self._slot_attempted = 0
        self._known_dirs: set[str] = {""}
        # Directories created in this session that did not exist in the committed
        # tree: nothing below them can exist there, so no tree lookup is needed.
        self._new_dirs: set[str] = set()

    def run(self, flow: Flow[T]) -> T:
        """Run a read flow on the archive through this writer's own fd."""
        return run_sync(flow, self._source)

    # -- lookups (staged changes first, then the committed tree) -----------------

    def _get_entry(self, path: str) -> Entry | None:
        if path == "":
            return Entry(EntryType.DIR, 0o755, 0)
        key = toc_key(path)
        if key in self.toc_changes:
            return self.toc_changes[key]
        if split_path(path)[0] in self._new_dirs or self.view.commit.toc.empty:
            return None
        v = self.run(self.view.get_flow(FrameKind.TOC_NODE, self.view.commit.toc, key))
        return None if v is None else decode_entry(v)  # type: ignore[arg-type]

    def exists(self, path: str) -> bool:
        return self._get_entry(normalize_path(path)) is not None

    def _ensure_parents(self, path: str, mtime_ns: int) -> None:
        parent = split_path(path)[0]
        missing = []
        while parent not in self._known_dirs:
            e = self._get_entry(parent)
            if e is None:
                missing.append(parent)
            elif not e.is_dir:
                raise InvalidPathError(f"{parent} is not a directory in the archive")
            else:
                self._known_dirs.add(parent)
                break
            parent = split_path(parent)[0]
        for d in reversed(missing):
            self._put(d, Entry(EntryType.DIR, 0o755, mtime_ns))
            self._known_dirs.add(d)
            self._new_dirs.add(d)

    def _put(self, path: str, entry: Entry) -> None:
        self.toc_changes[toc_key(path)] = entry

    def _check_replace(self, path: str, new_type: EntryType) -> Entry | None:
        if path == "":
            raise InvalidPathError("the archive root cannot be replaced")
        old = self._get_entry(path)
        if old is not None and old.is_dir and new_type != EntryType.DIR:
            raise InvalidPathError(f"{path} is a directory in the archive")
        if old is not None and not old.is_dir and new_type == EntryType.DIR:
            raise InvalidPathError(f"{path} exists and is not a directory")
        return old

    # -- adding ------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755, mtime_ns: int | None = None) -> None:
        path = normalize_path(path)
        mtime = time.time_ns() if mtime_ns is None else mtime_ns
        old = self._check_replace(path, EntryType.DIR)
        self._ensure_parents(path, mtime)
        self._put(path, Entry(EntryType.DIR, mode & 0o7777, mtime))
        self._known_dirs.add(path)
        if old is None and (split_path(path)[0] in self._new_dirs or
                            self.view.commit.toc.empty):
            self._new_dirs.add(path)

    def symlink(self, path: str, target: str, mode: int = 0o777,
                mtime_ns: int | None = None) -> None:
        path = normalize_path(path)
        if not target or len(target.encode()) > MAX_SYMLINK_SIZE or "\x00" in target:
            raise InvalidPathError(f"bad symlink target for {path}")
        mtime = time.time_ns() if mtime_ns is None else mtime_ns
        self._check_replace(path, EntryType.SYMLINK)
        self._ensure_parents(path, mtime)
        self._put(path, Entry(EntryType.SYMLINK, mode & 0o7777, mtime, target=target))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644,
                  mtime_ns: int | None = None) -> Entry:
        import io

        return self.add_stream(path, io.BytesIO(data), mode=mode, mtime_ns=mtime_ns)

    def add_file(self, path: str, src: str | os.PathLike[str], *,
                 progress: Progress | None = None) -> Entry:
        """Add a regular file from disk, keeping its permission bits and mtime."""
        try:
            fd = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise StorageError(f"cannot read {src}: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise UsageError(f"{src} is not a regular file")
            return self.add_stream(path, _FdReader(fd), mode=st.st_mode & 0o7777,
                                   mtime_ns=st.st_mtime_ns, progress=progress)
        except OSError as e:
            raise StorageError(f"cannot read {src}: {e.strerror}") from e
        finally:
            os.close(fd)

    def add_stream(self, path: str, stream: IO[bytes], *, mode: int = 0o644,
                   mtime_ns: int | None = None, progress: Progress | None = None) -> Entry:
        """Add a file from a binary stream, chunk by chunk (bounded memory)."""
        path = normalize_path(path)
        mtime = time.time_ns() if mtime_ns is None else mtime_ns
        self._check_replace(path, EntryType.FILE)
        self._ensure_parents(path, mtime)
        return self._add_stream(path, stream, mode & 0o7777, mtime, progress)

    def _add_stream(self, path: str, stream: Any, mode: int, mtime: int,
                    progress: Progress | None) -> Entry:
        csize = self.chunk_size
        file_id = self.crypto.random_bytes(16)
        path_bytes = path.encode()
        digest = self.crypto.blake3()
        append = self.pages.append
        encode_plain = self.sealer.encode_plain
        refs = []
        stored = 0
        total = 0
        chunk_no = 0
        skip_compress = 0
        max_chunks = MAX_INDEX_REFS * INDEX_FANOUT
        written = self._session_frames.setdefault(file_id, [])
        tm = self.timings
        clock = time.perf_counter
        t0 = clock() if tm is not None else 0.0
        cur = stream.read(csize)
        own_pages = len(cur) == csize  # a large file gets pages of its own, so that
        if own_pages:                  # removing it frees whole pages for reuse
            self.pages.close_page()
        # With jobs > 1 the chunks of a large file are compressed by a thread pool (zstd
        # releases the GIL) while this thread reads, hashes, seals and writes in order.
        pool = self._chunk_pool if own_pages else None
        inflight: deque[tuple[Any, int]] = deque()
        limit = 2 * self._jobs

        def place(plain: bytes, nbytes: int) -> None:
            nonlocal stored, skip_compress
            if plain[0] == 0 and nbytes >= 65536 and skip_compress == 0:
                skip_compress = 7  # incompressible data: probe again every 8th chunk
            t = clock() if tm is not None else 0.0
            ref = append(FrameKind.DATA_CHUNK, plain)
            if tm is not None:
                tm["write"] += clock() - t
            stored += ref.frame_size
            refs.append(ref)
            written.append(ref)
            if progress is not None:
                progress(path, nbytes)

        def drain(keep: int) -> None:
            while len(inflight) > keep:
                fut, nbytes = inflight.popleft()
                t = clock() if tm is not None else 0.0
                plain = fut.result()
                if tm is not None:
                    tm["prepare"] += clock() - t
                place(plain, nbytes)

        while True:
            if chunk_no >= max_chunks:
                raise UsageError(f"{path}: larger than the format allows at this chunk size "
                                 f"({max_chunks * csize:,} bytes)")
            nxt = stream.read(csize) if len(cur) == csize else b""
            if tm is not None:
                t1 = clock()
                tm["read"] += t1 - t0
            digest.update(cur)
            total += len(cur)
            meta = _NOT_LAST if nxt else encode_meta(ChunkMeta(
                EntryType.FILE, mode, mtime, total, digest.digest(), csize))
            payload = encode_chunk_parts(file_id, chunk_no, path_bytes, meta, cur)
            compress = skip_compress == 0
            if skip_compress:
                skip_compress -= 1
            if pool is None:
                plain = encode_plain(payload, compress=compress)
                if tm is not None:
                    tm["prepare"] += clock() - t1
                place(plain, len(cur))
            else:
                inflight.append((pool.submit(encode_plain, payload, compress), len(cur)))
                drain(limit)
            if tm is not None:
                t0 = clock()
            if not nxt:
                break
            cur = nxt
            chunk_no += 1
        drain(0)
        layout = LAYOUT_CHUNKS
        if len(refs) > INLINE_CHUNK_REFS:
            layout = LAYOUT_INDEX
            index_refs = []
            for base in range(0, len(refs), INDEX_FANOUT):
                payload = encode_index(file_id, base, refs[base:base + INDEX_FANOUT])
                iref = append(FrameKind.CHUNK_INDEX, encode_plain(payload))
                stored += iref.frame_size
                index_refs.append(iref)
                written.append(iref)
            refs = index_refs
        if own_pages:
            self.pages.close_page()
        entry = Entry(EntryType.FILE, mode, mtime, total, stored, digest.digest(),
                      file_id, csize, layout, tuple(refs))
        self._put(path, entry)
        return entry

    def copy_file(self, path: str, entry: Entry, plains: Iterable[bytes]) -> Entry:
        """Stage a file whose chunk frame plaintexts come from another archive with the
        same content key (compaction): they are re-sealed as they are."""
        append = self.pages.append
        own_pages = entry.size >= entry.chunk_size  # as _add_stream places large files
        if own_pages:
            self.pages.close_page()
        refs: list[Ref] = []
        for plain in plains:
            refs.append(append(FrameKind.DATA_CHUNK, plain))
        if len(refs) != entry.chunks:
            raise CommitError(f"{path}: {len(refs)} chunks copied, {entry.chunks} expected")
        stored = sum(r.frame_size for r in refs)
        layout = LAYOUT_CHUNKS
        if len(refs) > INLINE_CHUNK_REFS:
            layout = LAYOUT_INDEX
            index_refs = []
            for base in range(0, len(refs), INDEX_FANOUT):
                payload = encode_index(entry.file_id, base, refs[base:base + INDEX_FANOUT])
                iref = append(FrameKind.CHUNK_INDEX, self.sealer.encode_plain(payload))
                stored += iref.frame_size
                index_refs.append(iref)
            refs = index_refs
        if own_pages:
            self.pages.close_page()
        new = dataclasses.replace(entry, stored_size=stored, layout=layout, refs=tuple(refs))
        self._session_frames[entry.file_id] = []
        self.put_entry(path, new)
        return new

    def put_entry(self, path: str, entry: Entry) -> None:
        """Stage an entry as it is (compaction; the caller guarantees consistency)."""
        path = normalize_path(path)
        self._ensure_parents(path, entry.mtime_ns)
        self._put(path, entry)
        if entry.is_dir:
            self._known_dirs.add(path)

    def _add_host_file(self, host: str, path: str, st: os.stat_result,
                       progress: Progress | None) -> None:
        """add_tree's path for a regular file (``path`` already normalised)."""
        if path in self._new_dirs:
            raise InvalidPathError(f"{path} is a directory in the archive")
        parent = split_path(path)[0]
        if parent not in self._new_dirs or toc_key(path) in self.toc_changes:
            self._check_replace(path, EntryType.FILE)
            self._ensure_parents(path, st.st_mtime_ns)
        try:
            fd = os.open(host, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise StorageError(f"cannot read {host}: {e.strerror}") from e
        try:
            self._add_stream(path, _FdReader(fd), st.st_mode & 0o7777, st.st_mtime_ns,
                             progress)
        except OSError as e:
            raise StorageError(f"cannot read {host}: {e.strerror}") from e
        finally:
            os.close(fd)

    def _stage_prepared(self, batch: list[Prepared], progress: Progress | None) -> None:
        """The ordered writer's half of the pipeline: seal, place, stage."""
        t0 = time.perf_counter() if self.timings is not None else 0.0
        try:
            self._stage_prepared_batch(batch, progress)
        finally:
            if self.timings is not None:
                self.timings["write"] += time.perf_counter() - t0

    def _stage_prepared_batch(self, batch: list[Prepared], progress: Progress | None) -> None:
        append = self.pages.append
        csize = self.chunk_size
        for p in batch:
            if p.error:
                raise StorageError(p.error)
            if p.grown:
                st = os.stat(self._pending_hosts[p.path])
                self._add_host_file(self._pending_hosts.pop(p.path), p.path, st, progress)
                continue
            self._pending_hosts.pop(p.path, None)
            ref = append(FrameKind.DATA_CHUNK, p.plain)
            self._session_frames[p.file_id] = [ref]
            self._put(p.path, Entry(EntryType.FILE, p.mode, p.mtime_ns, p.size, ref.frame_size,
                                    p.content_hash, p.file_id, csize, LAYOUT_CHUNKS, (ref,)))
            if progress is not None:
                progress(p.path, p.size)

    def add_tree(self, src: str | os.PathLike[str], dest: str = "", *,
                 progress: Progress | None = None,
                 on_skip: Callable[[str, str], None] | None = None,
                 jobs: int | str = 1,
                 exclude: Iterable[tuple[int, int]] = ()) -> int:
        """Add a file, symlink or whole directory tree from disk under ``dest``.

        Symlinks are stored as symlinks (never followed); sockets, FIFOs and
        devices are skipped (reported through ``on_skip``). ``jobs`` > 1 (or
        "auto") prepares small files in worker processes. Files whose
        ``(st_dev, st_ino)`` is in ``exclude`` (e.g. the archive itself) are
        skipped and reported. Returns the number of entries added.
        """
        self._exclude = set(exclude)
        njobs = resolve_jobs(jobs)
        self._pending_hosts: dict[str, str] = {}
        if njobs > 1:
            self._jobs = njobs
            self._chunk_pool = ThreadPoolExecutor(njobs, thread_name_prefix="lockbox-zstd")
        pipe = SmallFilePipeline(njobs, self.chunk_size, self.sealer.level,
                                 lambda batch: self._stage_prepared(batch, progress))
        try:
            with pipe:
                count = self._walk(os.fspath(src), dest, progress, on_skip, pipe)
                pipe.finish()
        finally:
            if self._chunk_pool is not None:
                self._chunk_pool.shutdown(wait=True)
                self._chunk_pool = None
                self._jobs = 1
        if self.timings is not None:
            self.timings["prepare"] += pipe.prepare_seconds
        return count

    def _walk(self, src: str, dest: str, progress: Progress | None,
              on_skip: Callable[[str, str], None] | None, pipe: SmallFilePipeline) -> int:
        try:
            st = os.lstat(src)
        except OSError as e:
            raise StorageError(f"cannot read {src}: {e.strerror}") from e
        dest = normalize_path(dest)
        count = 0
        stack = [(src, dest, st)]
        while stack:
            host, arch, st = stack.pop()
            if self._exclude and (st.st_dev, st.st_ino) in self._exclude:
                if on_skip is not None:
                    on_skip(host, "it is the archive being written")
                continue
            if not arch:
                if stat_mod.S_ISDIR(st.st_mode):
                    pass
                else:
                    arch = normalize_path(os.path.basename(host))
            if stat_mod.S_ISLNK(st.st_mode):
                self.symlink(arch, os.readlink(host), st.st_mode, st.st_mtime_ns)
            elif stat_mod.S_ISREG(st.st_mode):
                path = normalize_path(arch)
                if st.st_size <= self.chunk_size and path not in self._pending_hosts:
                    if path in self._new_dirs:
                        raise InvalidPathError(f"{path} is a directory in the archive")
                    if (split_path(path)[0] not in self._new_dirs
                            or toc_key(path) in self.toc_changes):
                        self._check_replace(path, EntryType.FILE)
                        self._ensure_parents(path, st.st_mtime_ns)
                    self._pending_hosts[path] = host
                    pipe.submit(SmallFile(host, path, st.st_mode & 0o7777, st.st_mtime_ns))
                else:
                    self._add_host_file(host, path, st, progress)
            elif stat_mod.S_ISDIR(st.st_mode):
                if arch:
                    self.mkdir(arch, st.st_mode, st.st_mtime_ns)
                try:
                    with os.scandir(host) as it:
                        kids = sorted(it, key=lambda d: d.name, reverse=True)
                except OSError as e:
                    raise StorageError(f"cannot list {host}: {e.strerror}") from e
                for d in kids:
                    try:
                        kst = d.stat(follow_symlinks=False)
                    except OSError as e:
                        raise StorageError(f"cannot read {d.path}: {e.strerror}") from e
                    name = d.name
                    try:
                        name.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InvalidPathError(f"file name is not UTF-8: {d.path!r}") from None
                    stack.append((d.path, f"{arch}/{name}" if arch else name, kst))
                if not arch:
                    continue
            else:
                if on_skip is not None:
                    on_skip(host, "not a regular file, directory or symlink")
                continue
            count += 1
        return count

    # -- removing and moving -------------------------------------------------------

    def _subtree(self, path: str) -> list[bytes]:
        """Keys of every (staged or committed) descendant of directory ``path``."""
        ranges = subtree_ranges(path)
        pairs = self.run(self.view.scan_flow(FrameKind.TOC_NODE, self.view.commit.toc, ranges))
        keys = {k for k, _ in pairs}  # type: ignore[attr-defined]
        for k, v in self.toc_changes.items():
            if any(lo <= k < hi for lo, hi in ranges):
                if v is None:
                    keys.discard(k)
                else:
                    keys.add(k)
        return sorted(keys)

    def remove(self, path: str, *, recursive: bool = False) -> int:
        path = normalize_path(path)
        if path == "":
            raise InvalidPathError("the archive root cannot be removed")
        entry = self._get_entry(path)
        if entry is None:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        keys = [toc_key(path)]
        if entry.is_dir:
            kids = self._subtree(path)
            if kids and not recursive:
                raise InvalidPathError(f"directory not empty: {path} (use recursive removal)")
            keys.extend(kids)
            self._known_dirs = {d for d in self._known_dirs
                                if not (d == path or d.startswith(path + "/"))}
        for k in keys:
            self.toc_changes[k] = None
        return len(keys)

    def move(self, src: str, dst: str) -> None:
        src = normalize_path(src)
        dst = normalize_path(dst)
        if not src or not dst:
            raise InvalidPathError("the archive root cannot be moved")
        entry = self._get_entry(src)
        if entry is None:
            raise NotFoundError(f"no such file or directory in the archive: {src}")
        target = self._get_entry(dst)
        if target is not None and target.is_dir:
            dst = f"{dst}/{split_path(src)[1]}"
            target = self._get_entry(dst)
        if dst == src:
            return
        if entry.is_dir and (dst + "/").startswith(src + "/"):
            raise InvalidPathError("cannot move a directory into itself")
        if target is not None:
            raise InvalidPathError(f"destination exists: {dst}")
        self._ensure_parents(dst, time.time_ns())
        moves = [(src, dst, entry)]
        if entry.is_dir:
            for k in self._subtree(src):
                p = key_path(k)
                e = self._get_entry(p)
                assert e is not None
                moves.append((p, dst + p[len(src):], e))
        for old_path, _, _ in moves:
            self.toc_changes[toc_key(old_path)] = None
        for _, new_path, e in moves:
            self._put(new_path, e)
        if entry.is_dir:
            self._known_dirs = {d for d in self._known_dirs
                                if not (d == src or d.startswith(src + "/"))}

    # -- env ---------------------------------------------------------------------

    def env_set(self, name: str, value: str | bytes) -> None:
        key = _env_key(name)
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > MAX_ENV_VALUE_SIZE:
            raise UsageError(f"env value larger than {MAX_ENV_VALUE_SIZE} bytes")
        self.env_changes[key] = data

    def env_remove(self, name: str) -> None:
        key = _env_key(name)
        if key in self.env_changes:
            present = self.env_changes[key] is not None
        else:
            v = self.run(self.view.get_flow(FrameKind.ENV_NODE, self.view.commit.env, key))
            present = v is not None
        if not present:
            raise NotFoundError(f"no such env value: {name}")
        self.env_changes[key] = None

    # -- keys --------------------------------------------------------------------

    def add_password(self, password: str | bytes,
                     params: Argon2Params = DEFAULT_ARGON2) -> int:
        check_password_slot_room(self.key_slots, adding=1)
        slot = new_password_slot(self.crypto, self.view.archive_id, self._archive.content_key,
                                 password, params, {s.slot_id for s in self.key_slots})
        self.key_slots.append(slot)
        self._keys_changed = True
        return slot.slot_id

    def add_recipient(self, recipient: Recipient) -> int:
        slot = new_recipient_slot(self.crypto, self.view.archive_id,
                                  self._archive.content_key, recipient,
                                  {s.slot_id for s in self.key_slots})
        self.key_slots.append(slot)
        self._keys_changed = True
        return slot.slot_id

    def remove_slot(self, slot_id: int) -> None:
        remaining = [s for s in self.key_slots if s.slot_id != slot_id]
        if len(remaining) == len(self.key_slots):
            raise NotFoundError(f"no key slot with id {slot_id}")
        if not remaining:
            raise UsageError("refusing to remove the last key slot (the archive would be lost)")
        self.key_slots = remaining
        self._keys_changed = True
        self._slot_removed = True

    # -- commit ------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self.toc_changes or self.env_changes or self._keys_changed)

    def _emit(self, kind: FrameKind, payload: bytes) -> object:
        return self.pages.append(kind, self.sealer.encode_plain(payload))

    def commit(self) -> ArchiveView:
        """Make every staged change durable as one new commit; returns the new view."""
        if self.closed:
            raise UsageError("this writer is closed")
        t0 = time.perf_counter()
        try:
            removed = self._slot_removed
            view = self._commit()
            if removed:
                # Commit once more so that neither superblock slot keeps the removed
                # key slot (the older slot would otherwise still open generation - 1).
                view = self._commit()
        except LockboxError:
            raise
        except OSError as e:
            raise CommitError(f"commit failed: {e.strerror or e}") from e
        if self.timings is not None:
            self.timings["commit"] += time.perf_counter() - t0
        return view

    def _commit(self) -> ArchiveView:
        old = self.view
        space = self.space
        rekey = self._keys_changed or not keydir_has_commitment(old.keydir)
        if rekey:  # before anything is written: a version-1 directory may hold too many
            check_password_slot_room(self.key_slots)
        encoded = {k: (None if e is None else encode_entry(e))
                   for k, e in self.toc_changes.items()}
        toc: TreeUpdate = self.run(update_tree_flow(  # type: ignore[assignment]
            old, FrameKind.TOC_NODE, old.commit.toc, encoded, self._emit))  # type: ignore[arg-type]
        if not encoded:  # unchanged: keep the root listing too
            toc = TreeUpdate(old.commit.toc, {}, old.commit.root_leaves,
                             old.commit.root_leaves_complete)
        env: TreeUpdate = self.run(update_tree_flow(  # type: ignore[assignment]
            old, FrameKind.ENV_NODE, old.commit.env, self.env_changes, self._emit))  # type: ignore[arg-type]
        stats = _apply_stats(old.commit.stats, toc, self.toc_changes)
        keydir_field: bytes | ExternalKeydir
        # A key directory written before key commitments (version 1) is upgraded by the
        # first commit that has the key (docs/FORMAT.md §6, §20).
        if rekey:
            keydir = committed_keydir(self.crypto, old.archive_id,
                                      self._archive.content_key, self.key_slots)
            page = encode_keydir_page(old.archive_id, keydir, self.generation)
            page_offset = self.pages.write_page(page)
            for rec in space.pages.values():  # the previous copies are now dead
                if rec.kind == KEYDIR:
                    rec.live = 0
            space.add_page(page_offset, KEYDIR, len(page),
                           PAGE_HEADER_SIZE + 16 + len(keydir))
            keydir_field = keydir_field_for(keydir, page_offset)
        else:  # unchanged: the same inline bytes, or the same KEYDIR page
            keydir, keydir_field = old.keydir, old.slot.keydir
        record = self._record(old, toc, env, stats, keydir, 0, None)
        # An inline root that does not fit beside the key directory is written out.
        roots = {"toc": toc.root, "env": env.root}
        budget = SLOT_CAPACITY - len(encode_slot_field(keydir_field)) - 640
        for name in ("toc", "env"):
            r = roots[name]
            if r.inline is not None and len(encode_commit(record)) > budget:
                ref = self.pages.append(
                    FrameKind.TOC_NODE if name == "toc" else FrameKind.ENV_NODE,
                    self.sealer.encode_plain(r.inline))
                roots[name] = TreeRoot(r.count, 1, ref, None)
                toc = TreeUpdate(roots["toc"], toc.old_values, toc.root_leaves,
                                 toc.root_leaves_complete, toc.freed)
                env = TreeUpdate(roots["env"], env.old_values, freed=env.freed)
                record = self._record(old, toc, env, stats, keydir, 0, None)
        self.pages.close_page()
        # Space accounting: what this commit stops referencing becomes DEAD.
        for ref in toc.freed + env.freed:
            space.free_frame(ref)
        staged = [e for e in self.toc_changes.values() if e is not None and e.refs]
        old_files = [decode_entry(v) for v in toc.old_values.values()]
        for ref in self._keeper.freed_content(old, [e for e in old_files if e.refs], staged):
            space.free_frame(ref)
        referenced = {e.file_id for e in staged}
        for file_id, refs in self._session_frames.items():
            if file_id not in referenced:
                for ref in refs:
                    space.free_frame(ref)
        if self._map_tail < old.commit.archive_end:  # the previous map's own pages
            self._keeper.record_tail(space, self._map_tail, old.commit.archive_end)
        # The new map, in fresh pages at the tail (not counted in itself).
        self.pages.tail_only = True
        tail_start = self.pages.end_offset
        items = space.items()
        items[TAIL_KEY] = encode_tail(tail_start)
        space_update: TreeUpdate = self.run(update_tree_flow(  # type: ignore[assignment]
            None, FrameKind.SPACE_NODE, EMPTY_TREE, items, self._emit,  # type: ignore[arg-type]
            inline_ok=False))  # the map's root is never inline: the slot's room is spent
        self.pages.close_page()
        self.pages.tail_only = False
        end = self.pages.end_offset
        fsync(self.fd, error=CommitError)
        record = self._record(old, toc, env, stats, keydir, end, space_update.root)

        def write_slot(image: bytes, offset: int) -> None:
            # From here on the new commit may be durable even if a write or fsync fails:
            # abort() then re-reads the superblock instead of rolling back blindly.
            self._slot_attempted = self.generation
            self.pages._pwrite(image, offset)

        slot = write_commit_slot(write_slot, self.sealer, old.archive_id, record,
                                 keydir_field)
        fsync(self.fd, error=CommitError)
        if os.fstat(self.fd).st_size > end:
            os.ftruncate(self.fd, end)  # garbage of an earlier, aborted session
        view = ArchiveView(old.opener, slot, record, list(self.key_slots),
                           old.unlocked_slot_id, keydir, old.cache)
        # The commit is durable: from here on an abort must keep it (not go back).
        self.view = view
        self.pages.taken.clear()
        self._archive.set_view(view)
        self._archive.rebase_source()
        # Now destroy what it freed (redaction). If this fails, the next writer (or
        # the abort below this commit) finishes it from the durable map's DEAD records.
        self.redacted_bytes = self._keeper.redact(space, self.generation)
        self._archive.rebase_source()
        self._begin(view, self.sealer.level, (space, tail_start))
        return view

    def _record(self, old: ArchiveView, toc: TreeUpdate, env: TreeUpdate, stats: Stats,
                keydir: bytes, end: int, space: TreeRoot | None) -> CommitRecord:
        return CommitRecord(
            generation=self.generation, time_ns=time.time_ns(), archive_end=end,
            default_chunk_size=self.chunk_size,
            keydir_sha256=hashlib.sha256(keydir).digest(), toc=toc.root, env=env.root,
            space=space, root_leaves=toc.root_leaves,
            root_leaves_complete=toc.root_leaves_complete, stats=stats)

    def abort(self) -> None:
        """Discard staged changes and the pages written for them: the file is left
        byte for byte as the last commit left it.

        If a commit failed after it began writing its slot, the superblock is read
        again first: when the new slot is valid, that commit is durable and is kept
        (nothing is rolled back); otherwise the slot write was torn and the
        previous commit stands."""
        if self._slot_attempted:
            attempted, self._slot_attempted = self._slot_attempted, 0
            try:
                self._archive.refresh()
                if self._archive.view.generation == attempted:
                    self.pages.taken.clear()
                    self._begin(self._archive.view, self.sealer.level)
                    return
            except LockboxError:
                pass
        try:
            self.pages.restore_taken()
            os.ftruncate(self.fd, self.view.commit.archive_end)
        except (OSError, LockboxError):
            pass  # unreferenced bytes are harmless: only the byte-identity is lost
        try:
            self._archive.rebase_source()
        except LockboxError:
            pass
        # Forget everything staged: the changes, the known directories, the key
        # slots and the space map (reloaded from the durable commit).
        try:
            self._begin(self.view, self.sealer.level)
        except LockboxError:
            self.toc_changes.clear()
            self.env_changes.clear()
            self._keys_changed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                if self.dirty:
                    self.commit()
            else:
                self.abort()
        finally:
            self.close()


def encode_slot_field(field: bytes | ExternalKeydir) -> bytes:
    return field if isinstance(field, bytes) else b"\x00" * 44


def _env_key(name: str) -> bytes:
    key = name.encode("utf-8")
    if not key or len(key) > MAX_ENV_NAME_SIZE or b"\x00" in key:
        raise InvalidPathError(f"bad env name: {name!r}")
    return key


def _apply_stats(old: Stats, toc: TreeUpdate, changes: dict[bytes, Entry | None]) -> Stats:
    files, dirs, links, size, stored = (old.files, old.dirs, old.symlinks, old.file_bytes,
                                        old.stored_bytes)

    def account(e: Entry, sign: int) -> None:
        nonlocal files, dirs, links, size, stored
        if e.type == EntryType.FILE:
            files += sign
            size += sign * e.size
            stored += sign * e.stored_size
        elif e.type == EntryType.DIR:
            dirs += sign
        else:
            links += sign

    for value in toc.old_values.values():
        account(decode_entry(value), -1)
    for value in changes.values():
        if value is not None:
            account(value, +1)
    return Stats(files, dirs, links, size, stored)

