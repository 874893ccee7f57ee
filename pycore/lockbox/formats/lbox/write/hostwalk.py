"""Adding from the host's file system: one file (``Writer.add_file``) or a whole tree
(``Writer.add_tree``).

The walk is depth first in name order. Symlinks are stored as symlinks (never
followed); sockets, FIFOs and devices are skipped. Files that fit in one chunk go to
the small-file pipeline (``pipeline.SmallFilePipeline``: read, hashed, encoded and
compressed by ``jobs - 1`` worker processes and by this one when they are busy), whose
results are sealed and staged here as they arrive; larger files are streamed by this
process, their chunks compressed by a thread pool with ``jobs`` > 1.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat as stat_mod
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

from ....errors import InvalidPathError, StorageError
from ..frames import FrameSealer
from ..wire.constants import (
    MAX_NAME_SIZE,
    MAX_PATH_SIZE,
    EntryType,
    FrameKind,
)
from ..wire.encoding import uvarint
from ..wire.entry import LAYOUT_CHUNKS, LAYOUT_PACKED, Entry, normalize_path, toc_key
from .content import ContentWriter, Progress
from .pages import PageWriter
from .pipeline import (
    FAILED,
    FRAME,
    GROWN,
    LARGE,
    MEMBER,
    Prepared,
    SmallFile,
    SmallFilePipeline,
    resolve_jobs,
)
from .staging import Staging
from .timings import Timer

if TYPE_CHECKING:  # concurrent.futures (and logging): only once a large file is streamed
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["HostSession", "HostWalk", "FdReader", "reading", "OnSkip"]

OnSkip = Callable[[str, str], None]  # (host path, why it was skipped)
_by_name = attrgetter("name")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FdReader:
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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a tree is added: every small file leaves
    a few acyclic objects (its entry, ref and encodings) staged until the commit, and the
    collector's repeated passes over them cost ~8% of the CPU time of adding 20,000 small
    files. Any cycle made meanwhile is collected once the collector is back on."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextlib.contextmanager
def reading(host: str | os.PathLike[str]) -> Iterator[FdReader]:
    """A host file open for reading; an OSError while the block runs (opening, reading)
    becomes ``StorageError("cannot read {host}: ...")``."""
    try:
        fd = os.open(host, os.O_RDONLY | _O_CLOEXEC)
    except OSError as e:
        raise StorageError(f"cannot read {host}: {e.strerror}") from e
    try:
        yield FdReader(fd)
    except OSError as e:
        raise StorageError(f"cannot read {host}: {e.strerror}") from e
    finally:
        os.close(fd)


class HostSession(Protocol):
    """What the walk uses of the write session (the ``Writer``), read as it goes."""

    staging: Staging
    content: ContentWriter
    pages: PageWriter
    chunk_size: int
    sealer: FrameSealer
    timer: Timer


class HostWalk:
    """One ``add_tree`` call: walks ``src`` and stages what it finds under ``dest``."""

    def __init__(self, session: HostSession, *, progress: Progress | None = None,
                 on_skip: OnSkip | None = None, jobs: int | str = 1,
                 exclude: Iterable[tuple[int, int]] = ()) -> None:
        self._session = session
        self._progress = progress
        self._on_skip = on_skip
        self._jobs = resolve_jobs(jobs)
        self._exclude = set(exclude)  # (st_dev, st_ino) never added (the archive itself)
        # (TOC key, host path) of each file in the pipeline, in order (results come back
        # in the order they were submitted)
        self._added = 0  # small files staged so far
        self._pool: ThreadPoolExecutor | None = None

    def add_tree(self, src: str | os.PathLike[str], dest: str = "") -> int:
        """Add ``src`` (a file, symlink or directory) under ``dest``; returns the number
        of entries added."""
        s = self._session
        njobs = self._jobs
        pipe: SmallFilePipeline[tuple[bytes, str, str]] = SmallFilePipeline(
            njobs, s.chunk_size, s.sealer.level, self._stage_prepared)
        pipe.exclude = tuple(self._exclude)
        self._added = 0
        try:
            with pipe, _collector_paused():
                count = self._walk(os.fspath(src), dest, pipe)
                pipe.finish()
            count += self._added
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        s.timer.add_seconds("prepare", pipe.prepare_seconds)
        return count

    def _add_host_file(self, host: str, path: str, mode: int, mtime_ns: int) -> None:
        """A regular file streamed by this process (``path`` already normalised)."""
        s = self._session
        s.staging.prepare_file(path, mtime_ns)
        if self._pool is None and self._jobs > 1:  # made for the first large file
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._jobs, thread_name_prefix="lockbox-zstd")
        with reading(host) as reader:
            entry = s.content.add_stream(path, reader, mode & 0o7777, mtime_ns,
                                         self._progress, pool=self._pool, jobs=self._jobs)
        s.staging.put(path, entry)

    def _stage_prepared(self, batch: tuple[list[bytes], Sequence[Prepared | tuple[Any, ...]]],
                        tags: list[tuple[bytes, str, str]]) -> None:
        """The ordered writer's half of the pipeline: seal the batch's packs (one PACK
        frame each), then stage each file in order: a packed file's entry names its
        pack (its encoding = the worker's head + the pack's ref); any other file's frame
        is sealed and placed here (the equivalent of ``ContentWriter.place_prepared``
        and ``Staging.put`` per file, with the loop's lookups hoisted: this runs once
        per small file)."""
        s = self._session
        t = s.timer.now()
        try:
            progress = self._progress
            append = s.pages.append
            content = s.content
            frames = content.frames
            toc = s.staging.toc_changes
            encoded = s.staging.encoded
            chunk_size = s.chunk_size
            file_type = EntryType.FILE
            packs, rows = batch
            added = 0
            pack_refs = []
            tails = []
            for plain in packs:
                ref = append(FrameKind.PACK, plain)
                pack_refs.append((ref,))
                tails.append(b"".join((uvarint(ref.frame_offset), uvarint(ref.frame_size),
                                       ref.tag)))
            content.packs.extend(r for r, in pack_refs)
            if len(packs) == 1 and all([r[0] == MEMBER for r in rows]):
                # the common batch: one pack, all of it members (the loop below, in
                # comprehensions)
                refs, tail = pack_refs[0], tails[0]
                keys = [t[0] for t in tags]
                entries = [Entry(file_type, r[1], r[2], r[4], r[6], r[5], r[3], chunk_size,
                                 LAYOUT_PACKED, refs, "", r[8]) for r in rows]
                toc.update(zip(keys, entries))
                encoded.update(zip(keys, zip(entries, [r[7] + tail for r in rows])))
                self._added += len(rows)
                if progress is not None:
                    for r, t3 in zip(rows, tags):
                        progress(t3[2], r[4])
                return
            # a Prepared, or the plain tuple a worker sent (the same fields)
            for (kind, mode, mtime_ns, file_id, size, content_hash, stored, head, member_no,
                 pack_no, plain, error), (key, host, path) in zip(rows, tags):
                if kind == MEMBER:
                    toc[key] = entry = Entry(file_type, mode, mtime_ns, size, stored,
                                             content_hash, file_id, chunk_size, LAYOUT_PACKED,
                                             pack_refs[pack_no], "", member_no)
                    encoded[key] = (entry, head + tails[pack_no])
                elif kind == FRAME:
                    ref = append(FrameKind.DATA_CHUNK, plain)
                    frames[file_id] = [ref]
                    toc[key] = entry = Entry(file_type, mode, mtime_ns, size, ref.frame_size,
                                             content_hash, file_id, chunk_size, LAYOUT_CHUNKS,
                                             (ref,))
                    if ref.frame_size == stored:
                        encoded[key] = (entry, b"".join((head, uvarint(ref.frame_offset),
                                                         uvarint(stored), ref.tag)))
                elif kind == FAILED:
                    raise StorageError(error)
                elif kind == LARGE:  # larger than a chunk: streamed here
                    self._add_host_file(host, path, mode, mtime_ns)
                    added += 1
                    continue
                elif kind == GROWN:  # no longer fits one chunk: streamed here instead
                    st = os.stat(host)
                    self._add_host_file(host, path, st.st_mode, st.st_mtime_ns)
                    added += 1
                    continue
                else:  # EXCLUDED, SKIPPED: what the walk would have said
                    if self._on_skip is not None:
                        self._on_skip(host, error or "it is the archive being written")
                    continue
                added += 1
                if progress is not None:
                    progress(path, size)
            self._added += added
        finally:
            s.timer.add("write", t)

    def _small_files(self, arch: str, files: list[tuple[str, str, bytes]], mtime_ns: int,
                     pipe: SmallFilePipeline[tuple[bytes, str, str]]) -> None:
        """Submit the regular files ``(host, name, UTF-8 name)`` of the directory ``arch``
        (their names come from the directory listing: no '/', NUL, '.' or '..'; only the
        lengths are left to check). They are not lstat-ed here: the worker that opens
        each one takes its mode, time and size from ``fstat`` (and leaves one larger
        than a chunk, or excluded, to :meth:`_stage_prepared`). ``mtime_ns``: the
        directory's, for the checks of a file staged over an existing path."""
        staging = self._session.staging
        toc = staging.toc_changes
        # In a directory this session created, nothing can exist yet: no lookups.
        fresh = arch in staging.new_dirs
        arch_b = arch.encode()
        key_head = arch_b + b"\x00"
        room = MAX_PATH_SIZE - len(arch_b) - 1 if arch else MAX_PATH_SIZE
        rows: list[tuple[str, str, int, int, int]] = []
        tags: list[tuple[bytes, str, str]] = []
        prefix = arch + "/" if arch else ""
        for host, name, name_b in files:
            if len(name_b) > MAX_NAME_SIZE:
                raise InvalidPathError("name longer than 1024 bytes")
            if len(name_b) > room:
                raise InvalidPathError("path longer than 4096 bytes")
            path = prefix + name
            key = key_head + name_b
            if not fresh or key in toc:
                staging.prepare_file(path, mtime_ns)
            rows.append((host, path, -1, 0, -1))
            tags.append((key, host, path))
        pipe.submit_many(rows, tags, unsized=True)  # SmallFile rows, as plain tuples

    def _walk(self, src: str, dest: str, pipe: SmallFilePipeline) -> int:
        s = self._session
        on_skip = self._on_skip
        exclude = self._exclude
        chunk_size = s.chunk_size
        s_isreg, s_isdir, s_islnk = stat_mod.S_ISREG, stat_mod.S_ISDIR, stat_mod.S_ISLNK
        try:
            st = os.lstat(src)
        except OSError as e:
            raise StorageError(f"cannot read {src}: {e.strerror}") from e
        dest = normalize_path(dest)
        count = 0
        stack = [(src, dest, st)]
        while stack:
            host, arch, st = stack.pop()
            if exclude and (st.st_dev, st.st_ino) in exclude:
                if on_skip is not None:
                    on_skip(host, "it is the archive being written")
                continue
            if not arch and not s_isdir(st.st_mode):
                arch = normalize_path(os.path.basename(host))
            if s_islnk(st.st_mode):
                s.staging.symlink(arch, os.readlink(host), st.st_mode, st.st_mtime_ns)
            elif s_isreg(st.st_mode):
                path = normalize_path(arch)
                if st.st_size <= chunk_size:
                    s.staging.prepare_file(path, st.st_mtime_ns)
                    pipe.submit(SmallFile(host, path, st.st_mode & 0o7777, st.st_mtime_ns,
                                          st.st_size), (toc_key(path), host, path))
                    continue  # counted when staged
                else:
                    self._add_host_file(host, path, st.st_mode, st.st_mtime_ns)
            elif s_isdir(st.st_mode):
                if arch:
                    s.staging.mkdir(arch, st.st_mode, st.st_mtime_ns)
                try:
                    with os.scandir(host) as it:
                        kids = sorted(it, key=_by_name)
                except OSError as e:
                    raise StorageError(f"cannot list {host}: {e.strerror}") from e
                small: list[tuple[str, str, bytes]] = []
                rest = []
                for d in kids:
                    name = d.name
                    try:
                        name_b = name.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InvalidPathError(f"file name is not UTF-8: {d.path!r}") from None
                    try:
                        # the listing's type (no lstat; lstat only where it has none)
                        if d.is_file(follow_symlinks=False):
                            small.append((d.path, name, name_b))
                            continue
                        kst = d.stat(follow_symlinks=False)
                    except OSError as e:
                        raise StorageError(f"cannot read {d.path}: {e.strerror}") from e
                    rest.append((d.path, f"{arch}/{name}" if arch else name, kst))
                if small:
                    self._small_files(arch, small, st.st_mtime_ns, pipe)
                stack.extend(reversed(rest))  # popped in name order, depth first
                if not arch:
                    continue
            else:
                if on_skip is not None:
                    on_skip(host, "not a regular file, directory or symlink")
                continue
            count += 1
        return count
