"""Writing: one write session that stages changes and commits them atomically.

:class:`Writer` is the session: it holds the advisory lock and the fd, reads the
committed state under the lock, and puts together the parts of ``write/``, one
concept each:

* ``staging`` — the TOC and env changes staged for the next commit;
* ``content`` — the frames of file content (chunks, chunk indexes, packs of small
  files: the open pack is sealed at commit, or when a staged entry's ref is used);
* ``hostwalk`` — adding files and trees from the host's file system;
* ``keyslots`` — password and recipient slots added or removed;
* ``commit`` — the commit protocol (docs/FORMAT.md §11): new pages past the committed
  end of the file, fsync, the commit record into the slot that does *not* hold the
  current commit, fsync. A crash at any point leaves the previous commit intact and
  readable. Many changes are one commit;
* ``timings`` — ``LOCKBOX_IMPORT_TIMINGS=1`` stage totals (``Writer.timings``).

The archive object is any :class:`~.target.WritableArchive` (``Lockbox``).
"""

from __future__ import annotations

import io
import os
import stat as stat_mod
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from ....drivers import Flow, run_sync
from ....errors import CommitError, LockboxError, LockedError, StorageError, UsageError
from ....ranges import ByteRange
from ....sources.base import SourceStats
from ..frames import FrameSealer
from ..keys import DEFAULT_ARGON2, Argon2Params, Recipient, committed_keydir
from ..view import ArchiveView
from ..wire.constants import EntryType
from ..wire.entry import Entry, normalize_path
from ..wire.keydir import KeySlot
from .commit import commit_generation
from .content import ContentWriter, Progress, Readable
from .hostwalk import HostWalk, reading
from .keyslots import StagedKeySlots
from .pages import PageWriter
from .space import FREE, SpaceMap
from .spacekeeper import SpaceKeeper
from .staging import Staging
from .target import WritableArchive
from .timings import Timer, timer_from_env
from .tree import update_tree_flow

__all__ = ["Writer", "Progress"]

T = TypeVar("T")


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


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockedError("another writer has this archive open") from None


def _mtime(mtime_ns: int | None) -> int:
    return time.time_ns() if mtime_ns is None else mtime_ns


class Writer:
    """Stages changes to an archive; ``commit()`` makes them durable at once.

    Use as a context manager: ``with archive.writer() as w: ...`` commits on
    normal exit and discards everything on an exception (the archive keeps its
    previous commit, byte for byte).
    """

    # The session's parts, renewed by every commit (see _begin).
    view: ArchiveView  # the durable commit
    generation: int  # the generation the next commit writes
    sealer: FrameSealer
    pages: PageWriter
    space: SpaceMap
    map_tail: int  # where the durable space map's own pages begin
    keeper: SpaceKeeper
    staging: Staging
    content: ContentWriter
    keys: StagedKeySlots

    def __init__(self, archive: WritableArchive, *, level: int = 3) -> None:
        if archive.path is None:
            raise UsageError("only a local archive file can be written")
        self._archive = archive
        self.path = archive.path
        self.timer: Timer = timer_from_env()
        self.redacted_bytes = 0  # zeroed by the last commit's redaction
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
        """Start generation ``view.generation + 1`` on the durable ``view``."""
        self.view = view
        self.crypto = self._archive.crypto
        self.codec = self._archive.codec
        self.generation = view.generation + 1
        self.sealer = FrameSealer(self.crypto, self.codec, view.archive_id,
                                  self._archive.content_key, level)
        self.keeper = SpaceKeeper(self.fd, self.run)
        if space is None:
            # The durable commit's map; finish any redaction an earlier session left.
            self.space, self.map_tail = self.keeper.load(view)
            if self.space.dead or any(r.live == 0 and r.kind != FREE
                                      for r in self.space.pages.values()):
                self.keeper.redact(self.space, view.generation)
        else:
            self.space, self.map_tail = space
        self.pages = PageWriter(self.fd, view.commit.archive_end, self.generation, self.sealer,
                                self.space)
        self.chunk_size = view.commit.default_chunk_size
        self.content = ContentWriter(self)
        self.staging = Staging(view, self.run)
        self.keys = StagedKeySlots(view.key_slots)
        self._slot_attempted = 0

    def run(self, flow: Flow[T]) -> T:
        """Run a read flow on the archive through this writer's own fd."""
        return run_sync(flow, self._source)

    @property
    def content_key(self) -> bytes:
        return self._archive.content_key

    @property
    def timings(self) -> dict[str, float] | None:
        """Stage totals in seconds with ``LOCKBOX_IMPORT_TIMINGS=1``, else None."""
        return self.timer.totals

    # -- lookups -------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self.staging.exists(path)

    def _get_entry(self, path: str) -> Entry | None:
        return self.staging.get_entry(path)

    def _put(self, path: str, entry: Entry) -> None:
        self.staging.put(path, entry)

    # -- adding ------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755, mtime_ns: int | None = None) -> None:
        self.staging.mkdir(path, mode, _mtime(mtime_ns))

    def symlink(self, path: str, target: str, mode: int = 0o777,
                mtime_ns: int | None = None) -> None:
        self.staging.symlink(path, target, mode, _mtime(mtime_ns))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644,
                  mtime_ns: int | None = None) -> Entry:
        return self.add_stream(path, io.BytesIO(data), mode=mode, mtime_ns=mtime_ns)

    def add_file(self, path: str, src: str | os.PathLike[str], *,
                 progress: Progress | None = None) -> Entry:
        """Add a regular file from disk, keeping its permission bits and mtime."""
        with reading(src) as reader:
            st = os.fstat(reader.fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise UsageError(f"{src} is not a regular file")
            return self.add_stream(path, reader, mode=st.st_mode & 0o7777,
                                   mtime_ns=st.st_mtime_ns, progress=progress)

    def add_stream(self, path: str, stream: Readable, *, mode: int = 0o644,
                   mtime_ns: int | None = None, progress: Progress | None = None) -> Entry:
        """Add a file from a binary stream, chunk by chunk (bounded memory)."""
        path = normalize_path(path)
        mtime = _mtime(mtime_ns)
        self.staging.check_replace(path, EntryType.FILE)
        self.staging.ensure_parents(path, mtime)
        entry = self.content.add_stream(path, stream, mode & 0o7777, mtime, progress)
        self.staging.put(path, entry)
        return entry

    def copy_file(self, path: str, entry: Entry, plains: Iterable[bytes]) -> Entry:
        """Stage a file whose chunk frame plaintexts come from another archive with the
        same content key (compaction): they are re-sealed as they are."""
        new = self.content.copy_file(path, entry, plains)
        self.staging.put_entry(path, new)
        return new

    def put_entry(self, path: str, entry: Entry) -> None:
        """Stage an entry as it is (compaction; the caller guarantees consistency)."""
        self.staging.put_entry(path, entry)

    def add_tree(self, src: str | os.PathLike[str], dest: str = "", *,
                 progress: Progress | None = None,
                 on_skip: Callable[[str, str], None] | None = None,
                 jobs: int | str = 1,
                 exclude: Iterable[tuple[int, int]] = ()) -> int:
        """Add a file, symlink or whole directory tree from disk under ``dest``.

        Symlinks are stored as symlinks (never followed); sockets, FIFOs and
        devices are skipped (reported through ``on_skip``). ``jobs`` > 1 (or
        "auto": the CPUs) prepares small files in ``jobs - 1`` worker processes
        beside this one. Files whose
        ``(st_dev, st_ino)`` is in ``exclude`` (e.g. the archive itself) are
        skipped and reported. Returns the number of entries added.
        """
        walk = HostWalk(self, progress=progress, on_skip=on_skip, jobs=jobs, exclude=exclude)
        return walk.add_tree(src, dest)

    # -- removing and moving -------------------------------------------------------

    def remove(self, path: str, *, recursive: bool = False) -> int:
        return self.staging.remove(path, recursive=recursive)

    def move(self, src: str, dst: str) -> None:
        self.staging.move(src, dst, time.time_ns)

    # -- env ---------------------------------------------------------------------

    def env_set(self, name: str, value: str | bytes) -> None:
        self.staging.env_set(name, value)

    def env_remove(self, name: str) -> None:
        self.staging.env_remove(name)

    # -- keys --------------------------------------------------------------------

    def add_password(self, password: str | bytes,
                     params: Argon2Params = DEFAULT_ARGON2) -> int:
        return self.keys.add_password(self.crypto, self.view.archive_id, self.content_key,
                                      password, params)

    def add_recipient(self, recipient: Recipient) -> int:
        return self.keys.add_recipient(self.crypto, self.view.archive_id, self.content_key,
                                       recipient)

    def remove_slot(self, slot_id: int) -> None:
        self.keys.remove(slot_id)

    # The staged key slots as attributes, as the hostile-author builders of tests/hostile
    # set them (a crafted key directory is committed like any other).
    @property
    def key_slots(self) -> list[KeySlot]:
        return self.keys.slots

    @key_slots.setter
    def key_slots(self, slots: list[KeySlot]) -> None:
        self.keys.slots = slots

    @property
    def _keys_changed(self) -> bool:
        return self.keys.changed

    @_keys_changed.setter
    def _keys_changed(self, changed: bool) -> None:
        self.keys.changed = changed

    @property
    def _keeper(self) -> SpaceKeeper:
        return self.keeper

    # -- commit ------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self.staging.dirty or self.keys.changed

    def commit(self) -> ArchiveView:
        """Make every staged change durable as one new commit; returns the new view."""
        if self.closed:
            raise UsageError("this writer is closed")
        self.content.seal_pack()  # every staged entry gets its real ref first
        t = self.timer.now()
        try:
            removed = self.keys.removed or self.keys.rewritten
            view = self._commit()
            if removed:
                # Commit once more so that neither superblock slot keeps the removed
                # key slot (the older slot would otherwise still open generation - 1),
                # or the damaged key directory a restored one replaces.
                view = self._commit()
        except LockboxError:
            raise
        except OSError as e:
            raise CommitError(f"commit failed: {e.strerror or e}") from e
        self.timer.add("commit", t)
        return view

    def _commit(self) -> ArchiveView:
        # The tree update, the key directory and the clock are this module's names, looked
        # up at each commit: tests/hostile stands in for them to write crafted archives.
        view, tail_start = commit_generation(self, self._write_slot,
                                             update_tree=update_tree_flow,
                                             make_keydir=committed_keydir,
                                             now_ns=time.time_ns)
        # The commit is durable: from here on an abort must keep it (not go back).
        self.view = view
        self.pages.taken.clear()
        self._archive.set_view(view)
        self._archive.rebase_source()
        # Now destroy what it freed (redaction). If this fails, the next writer (or
        # the abort below this commit) finishes it from the durable map's DEAD records.
        self.redacted_bytes = self.keeper.redact(self.space, self.generation)
        self._archive.rebase_source()
        self._begin(view, self.sealer.level, (self.space, tail_start))
        return view

    def _write_slot(self, image: bytes, offset: int) -> None:
        # From here on the new commit may be durable even if a write or fsync fails:
        # abort() then re-reads the superblock instead of rolling back blindly.
        self._slot_attempted = self.generation
        self.pages._pwrite(image, offset)

    def abort(self) -> None:
        """Discard staged changes and the pages written for them: the file is left
        byte for byte as the last commit left it.

        If a commit failed after it began writing its slot, the superblock is read
        again first: when the new slot is valid, that commit is durable and is kept
        (nothing is rolled back); otherwise the slot write was torn and the
        previous commit stands."""
        self.content.discard_pack()
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
            self.staging.clear()
            self.keys.changed = False

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
