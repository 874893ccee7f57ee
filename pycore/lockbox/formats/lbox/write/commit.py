"""The commit protocol (docs/FORMAT.md §11): one write session's staged changes become
generation ``g`` at once.

1. The staged TOC and env changes are applied to their trees (only touched leaves are
   rewritten); a changed key directory (or one written before key commitments) gets a
   new KEYDIR page; inline roots that do not fit beside the key directory are written
   out.
2. Space accounting: every frame the commit stops referencing is DEAD; the new space
   map is written in fresh pages at the tail.
3. fsync; the commit record is sealed into the slot that does *not* hold the current
   commit (:func:`write_commit_slot`, shared with archive creation); fsync. A crash at
   any point leaves the previous commit intact and readable.

What follows a durable commit (the archive object reads it, redaction, the next
generation) is the writer's (``writer.Writer._commit``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from itertools import compress, repeat
from operator import attrgetter, eq
from typing import Protocol, TypeVar

from ....crypto.base import CryptoBackend
from ....drivers import Flow
from ....errors import CommitError
from ....fileio import fsync
from ....platform import IS_BROWSER
from ..frames import FrameSealer
from ..keys import check_password_slot_room, committed_keydir
from ..view import ArchiveView
from ..wire.commit import EMPTY_TREE, CommitRecord, Stats, TreeRoot, encode_commit
from ..wire.constants import (
    FORMAT_VERSION,
    PACKED_FORMAT_VERSION,
    PAGE_HEADER_SIZE,
    EntryType,
    FrameKind,
)
from ..wire.entry import Entry, decode_entry
from ..wire.keydir import KeySlot, keydir_has_commitment
from ..wire.page import encode_keydir_page
from ..wire.refs import Ref
from ..wire.superblock import (
    SLOT_CAPACITY,
    ExternalKeydir,
    Slot,
    commit_frame_offset,
    encode_slot,
    keydir_fits_inline,
    slot_offset,
)
from .content import ContentWriter
from .keyslots import StagedKeySlots
from .pages import PageWriter
from .space import KEYDIR, TAIL_KEY, SpaceMap, encode_tail
from .spacekeeper import SpaceKeeper
from .staging import Staging
from .tree import Emit, TreeUpdate, update_tree_flow

__all__ = ["WriteAt", "CommitSession", "TreeUpdater", "KeydirMaker",
           "commit_generation", "keydir_field_for", "write_commit_slot"]

T = TypeVar("T")
WriteAt = Callable[[bytes, int], None]  # (data, offset): a positioned write
KeydirMaker = Callable[[CryptoBackend, bytes, bytes, list[KeySlot]], bytes]
EARLY_FLUSH = not IS_BROWSER
"""Whether a commit starts flushing what its session wrote on a thread as it begins
(:class:`_EarlyFlush`; not under Pyodide, which has no threads)."""
EARLY_FLUSH_AFTER = 1 << 20
"""...once the session wrote this many bytes (a smaller write's fsync is quick)."""
_FILE = EntryType.FILE
_DIR = EntryType.DIR
_type_of = attrgetter("type")
_size_of = attrgetter("size")
_stored_of = attrgetter("stored_size")
_file_id_of = attrgetter("file_id")
# Room kept in the slot for the commit record's fields besides the inline roots.
_RECORD_RESERVE = 640


class TreeUpdater(Protocol):
    """``tree.update_tree_flow``'s signature."""

    def __call__(self, view: ArchiveView | None, kind: FrameKind, root: TreeRoot,
                 changes: Mapping[bytes, bytes | None], emit: Emit,
                 inline_ok: bool = True) -> Flow[TreeUpdate]: ...


class CommitSession(Protocol):
    """What the commit protocol uses of the write session (the ``Writer``)."""

    fd: int
    view: ArchiveView  # the durable commit this one follows
    generation: int  # the generation being committed
    chunk_size: int
    crypto: CryptoBackend
    sealer: FrameSealer
    pages: PageWriter
    space: SpaceMap  # the durable map, updated in place
    map_tail: int  # where the durable map's own pages begin
    keeper: SpaceKeeper
    staging: Staging
    keys: StagedKeySlots
    content: ContentWriter

    @property
    def content_key(self) -> bytes: ...

    def run(self, flow: Flow[T]) -> T: ...


def commit_generation(s: CommitSession, write_slot: WriteAt, *,
                      update_tree: TreeUpdater = update_tree_flow,
                      make_keydir: KeydirMaker = committed_keydir,
                      now_ns: Callable[[], int] = time.time_ns) -> tuple[ArchiveView, int]:
    """Commit the session's staged changes as generation ``s.generation``; returns the
    new (durable) view and where the new space map's pages begin.

    ``write_slot`` writes the slot image (the writer's: it notes that the commit may be
    durable from then on). ``update_tree``, ``make_keydir`` and ``now_ns`` are the tree
    update, the key directory and the clock; the writer passes its own module's, which
    tests stand in for."""
    s.content.seal_pack()  # the open pack's entries get their ref before anything else
    flush = _EarlyFlush(s.fd, s.pages.end_offset - s.view.commit.archive_end)
    try:
        return _commit(s, write_slot, flush, update_tree, make_keydir, now_ns)
    finally:
        flush.join()


def _commit(s: CommitSession, write_slot: WriteAt, flush: _EarlyFlush,
            update_tree: TreeUpdater, make_keydir: KeydirMaker,
            now_ns: Callable[[], int]) -> tuple[ArchiveView, int]:
    old = s.view
    space = s.space
    pages = s.pages
    keys = s.keys
    toc_changes = s.staging.toc_changes

    def emit(kind: FrameKind, payload: bytes) -> Ref:
        return s.pages.append(kind, s.sealer.encode_plain(payload))

    def record_of(toc: TreeUpdate, env: TreeUpdate, stats: Stats, keydir: bytes, end: int,
                  space_root: TreeRoot | None) -> CommitRecord:
        return CommitRecord(
            generation=s.generation, time_ns=now_ns(), archive_end=end,
            default_chunk_size=s.chunk_size,
            keydir_sha256=hashlib.sha256(keydir).digest(), toc=toc.root, env=env.root,
            space=space_root, root_leaves=toc.root_leaves,
            root_leaves_complete=toc.root_leaves_complete, stats=stats)

    rekey = keys.changed or not keydir_has_commitment(old.keydir)
    if rekey:  # before anything is written: a version-1 directory may hold too many
        check_password_slot_room(keys.slots)
    encoded = s.staging.encoded_changes()
    toc = s.run(update_tree(old, FrameKind.TOC_NODE, old.commit.toc, encoded, emit))
    if not encoded:  # unchanged: keep the root listing too
        toc = TreeUpdate(old.commit.toc, {}, old.commit.root_leaves,
                         old.commit.root_leaves_complete)
    env = s.run(update_tree(old, FrameKind.ENV_NODE, old.commit.env, s.staging.env_changes,
                            emit))
    old_entries = [decode_entry(v) for v in toc.old_values.values()]  # decoded once
    stats = apply_stats(old.commit.stats, old_entries, toc_changes)
    keydir_field: bytes | ExternalKeydir
    # A key directory written before key commitments (version 1) is upgraded by the
    # first commit that has the key (docs/FORMAT.md §6, §20).
    if rekey:
        keydir = make_keydir(s.crypto, old.archive_id, s.content_key, keys.slots)
        page = encode_keydir_page(old.archive_id, keydir, s.generation)
        page_offset = pages.write_page(page)
        for rec in space.pages.values():  # the previous copies are now dead
            if rec.kind == KEYDIR:
                rec.live = 0
        space.add_page(page_offset, KEYDIR, len(page), PAGE_HEADER_SIZE + 16 + len(keydir))
        keydir_field = keydir_field_for(keydir, page_offset)
    else:  # unchanged: the same inline bytes, or the same KEYDIR page
        keydir, keydir_field = old.keydir, old.slot.keydir
    record = record_of(toc, env, stats, keydir, 0, None)
    # An inline root that does not fit beside the key directory is written out.
    roots = {"toc": toc.root, "env": env.root}
    budget = SLOT_CAPACITY - _keydir_field_size(keydir_field) - _RECORD_RESERVE
    for name in ("toc", "env"):
        r = roots[name]
        if r.inline is not None and len(encode_commit(record)) > budget:
            ref = pages.append(FrameKind.TOC_NODE if name == "toc" else FrameKind.ENV_NODE,
                               s.sealer.encode_plain(r.inline))
            roots[name] = TreeRoot(r.count, 1, ref, None)
            toc = TreeUpdate(roots["toc"], toc.old_values, toc.root_leaves,
                             toc.root_leaves_complete, toc.freed)
            env = TreeUpdate(roots["env"], env.old_values, freed=env.freed)
            record = record_of(toc, env, stats, keydir, 0, None)
    pages.close_page()
    _account_freed(s, toc, env, old_entries)
    # The new map, in fresh pages at the tail (not counted in itself).
    pages.tail_only = True
    tail_start = pages.end_offset
    items = space.items()
    items[TAIL_KEY] = encode_tail(tail_start)
    space_update = s.run(update_tree(None, FrameKind.SPACE_NODE, EMPTY_TREE, items, emit,
                                     inline_ok=False))  # the slot's room is spent
    pages.close_page()
    pages.tail_only = False
    end = pages.end_offset
    flush.wait()
    fsync(s.fd, error=CommitError)
    record = record_of(toc, env, stats, keydir, end, space_update.root)
    # Version 3 exactly when the commit references a PACK frame (docs/FORMAT.md §20):
    # a version-2 writer would free a shared pack when one of its files goes.
    version = PACKED_FORMAT_VERSION if space.packs else FORMAT_VERSION
    slot = write_commit_slot(write_slot, s.sealer, old.archive_id, record, keydir_field,
                             version=version)
    fsync(s.fd, error=CommitError)
    if os.fstat(s.fd).st_size > end:
        os.ftruncate(s.fd, end)  # garbage of an earlier, aborted session
    view = ArchiveView(old.opener, slot, record, list(keys.slots), old.unlocked_slot_id,
                       keydir, old.cache)
    return view, tail_start


class _EarlyFlush:
    """An fsync of what the session wrote before the commit, begun on a thread as the
    commit starts (when that is at least :data:`EARLY_FLUSH_AFTER` bytes): the disk
    writes it while the trees are built, and the commit's own fsync, after every page
    as always, finds little left to do. Only a head start: durability still comes from
    that fsync. Its error is the commit's (:meth:`wait`): an fsync error is reported
    once per open file, so it must not be lost."""

    def __init__(self, fd: int, written_size: int) -> None:
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None
        if not EARLY_FLUSH or written_size < EARLY_FLUSH_AFTER:
            return
        thread = threading.Thread(target=self._run, args=(fd,), daemon=True,
                                  name="lockbox-commit-flush")
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the commit's fsync does it all
            return
        self._thread = thread

    def _run(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as e:
            self._error = e

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait(self) -> None:
        """Wait for it; its error, if any, as the commit's fsync's."""
        self.join()
        e = self._error
        if e is not None:
            raise CommitError(f"fsync failed: {e.strerror or e}") from e


def _account_freed(s: CommitSession, toc: TreeUpdate, env: TreeUpdate,
                   old_entries: list[Entry]) -> None:
    """What this commit stops referencing becomes DEAD in the space map: replaced tree
    nodes, the content of replaced or removed files, frames of file versions written
    in this session that no staged entry references, the previous map's own pages.
    Packs: each changed key moves its old pack's count by -1 and its new one's by +1
    (net over the commit); a pack left with no entry is freed, whether the durable
    commit or this session wrote it."""
    old = s.view
    space = s.space
    for ref in toc.freed + env.freed:
        space.free_frame(ref)
    # The staged entries (an Entry is always true); those without refs count for nothing.
    staged: list[Entry] = list(filter(None, s.staging.toc_changes.values()))
    old_files = [e for e in old_entries if e.refs]  # the changed keys' previous values
    for ref in s.keeper.freed_content(old, space, old_files, staged):
        space.free_frame(ref)
    packs = {r.frame_offset: r for r in s.content.packs}
    frames = s.content.frames
    if frames:  # file versions written this session, with frames of their own
        with_refs = [e for e in staged if e.refs]
        referenced = set(map(_file_id_of, with_refs))
        for file_id, refs in frames.items():
            if file_id not in referenced:
                for ref in refs:
                    if ref.frame_offset not in packs:  # a shared pack: by its count below
                        space.free_frame(ref)
    for offset, ref in packs.items():  # written this session, no staged entry names it
        if offset not in space.packs:
            space.free_frame(ref)
    if s.map_tail < old.commit.archive_end:  # the previous map's own pages
        s.keeper.record_tail(space, s.map_tail, old.commit.archive_end)


def _keydir_field_size(field: bytes | ExternalKeydir) -> int:
    return len(field) if isinstance(field, bytes) else 44


def apply_stats(old: Stats, replaced: list[Entry], changes: dict[bytes, Entry | None]) -> Stats:
    """The commit record's stats: ``old`` minus the ``replaced`` entries (the previous
    values of the changed keys) plus the staged."""
    files, dirs, links, size, stored = (old.files, old.dirs, old.symlinks, old.file_bytes,
                                        old.stored_bytes)
    staged: list[Entry] = list(filter(None, changes.values()))  # an Entry is always true
    for sign, entries in ((-1, replaced), (1, staged)):
        f, d, n, b = _totals(entries)
        files += sign * f
        dirs += sign * d
        links += sign * (len(entries) - f - d)
        size += sign * n
        stored += sign * b
    return Stats(files, dirs, links, size, stored)


def _totals(entries: list[Entry]) -> tuple[int, int, int, int]:
    """(files, directories, file bytes, stored bytes) of ``entries``, in a few passes
    over them and no step per entry (a commit of a large add has one per file)."""
    types = list(map(_type_of, entries))
    n_files = types.count(_FILE)
    n_dirs = types.count(_DIR)
    files: Iterable[Entry] = entries
    if n_files != len(entries):
        files = list(compress(entries, map(eq, types, repeat(_FILE))))
    return (n_files, n_dirs, sum(map(_size_of, files)), sum(map(_stored_of, files)))


def keydir_field_for(keydir: bytes, page_offset: int) -> bytes | ExternalKeydir:
    """A slot's key-directory field for ``keydir``, whose KEYDIR page is at
    ``page_offset``: the directory inline when it fits beside the commit, else a
    pointer to the page (§3)."""
    if keydir_fits_inline(len(keydir)):
        return keydir
    return ExternalKeydir(page_offset, len(keydir), hashlib.sha256(keydir).digest())


def write_commit_slot(write_at: WriteAt, sealer: FrameSealer, archive_id: bytes,
                      record: CommitRecord, keydir_field: bytes | ExternalKeydir, *,
                      version: int = FORMAT_VERSION) -> Slot:
    """Seal ``record`` as its generation's commit frame and write the whole slot image
    (8192 bytes, zero padded) at the slot's offset with ``write_at``; returns the slot.
    ``version`` is the slot's format version (3 for a commit that references packs).
    The caller makes it durable (fsync) and owns what a failed write means."""
    generation = record.generation
    slot_no = generation % 2
    plain = sealer.encode_plain(encode_commit(record), compress=False)
    frame, _ = sealer.seal(FrameKind.COMMIT, generation,
                           commit_frame_offset(slot_no, keydir_field), plain)
    slot = Slot(slot_no, archive_id, generation, keydir_field, frame, version)
    write_at(encode_slot(slot), slot_offset(slot_no))
    return slot
