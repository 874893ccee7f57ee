"""Compaction: a logical rewrite of the current commit into a fresh file.

Every live frame is authenticated and re-sealed, unchanged, at its new offset
(no decompression: the frame plaintext is carried over as it is), the trees
and the space map are built anew, the new file is fsynced and atomically
renamed over the old one. The archive id, the content key and the key
directory stay the same (the key slots bind the archive id), so every
password and identity keeps working; nothing freed, stale or garbage is
carried over. The old file keeps its writer lock until the rename, so no
other writer can commit in between.

Packed small files (entry layout 2) are repacked: each live member (its encoded data
chunk, checked against its entry) joins the new archive's open pack, so the members of
removed files -- kept, encrypted, in a pack that still had live members -- are dropped,
and packs half emptied by removals are merged. Each old pack is opened once (the view's
pack cache) for its members met one after the other in walk order.

``box`` is any :class:`~.target.WritableArchive` (``Lockbox``); the new file is
opened with the same kind of archive object, ``type(box).open(...)``, so this
module never imports the facade.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from ....drivers import Flow, Read
from ....errors import StorageError
from ....fileio import replace_atomically, temp_path
from ..keys import committed_keydir
from ..reading import BATCH_BYTES
from ..view import ArchiveView
from ..wire.constants import EntryType, FrameKind
from ..wire.entry import LAYOUT_PACKED, Entry
from ..wire.keydir import keydir_has_commitment
from .newarchive import write_new_archive
from .target import WritableArchive
from .writer import Writer

__all__ = ["CompactReport", "compact_archive"]


@dataclass(frozen=True)
class CompactReport:
    size_before: int
    size_after: int
    files: int
    generation: int

    @property
    def saved_bytes(self) -> int:
        return self.size_before - self.size_after


def compact_archive(box: WritableArchive) -> CompactReport:
    """Rewrite ``box`` (a local archive) compactly; ``box`` then reads the new file.

    ``Lockbox.compact`` is the public entry (it refuses an archive opened at a pinned
    generation first)."""
    if box.path is None:
        raise StorageError("only a local archive file can be compacted")
    path = box.path
    with Writer(box) as old:  # the lock (and any pending redaction)
        view = old.view
        size_before = os.fstat(old.fd).st_size
        need = view.commit.stats.stored_bytes + 2 * view.commit.toc.count * 200 + (1 << 20)
        free = shutil.disk_usage(os.path.dirname(path)).free
        if free < need:
            raise StorageError(f"not enough free disk space to compact: {need:,} bytes "
                               f"needed, {free:,} free")
        tmp = temp_path(path, "lbx-compact")
        keydir = view.keydir
        if not keydir_has_commitment(keydir):  # written before key commitments: upgrade
            keydir = committed_keydir(box.crypto, view.archive_id, box.content_key,
                                      view.key_slots)
        write_new_archive(tmp, archive_id=view.archive_id, content_key=box.content_key,
                          keydir=keydir, chunk_size=view.commit.default_chunk_size,
                          overwrite=True, crypto=box.crypto, codec=box.codec,
                          generation=view.generation + 1)
        files = 0
        try:
            new = type(box).open(tmp, known_key=(view.archive_id, box.content_key),
                                 crypto=box.crypto, codec=box.codec)
            with contextlib.closing(new), Writer(new) as w:
                for path_in, entry in old.run(view.walk_flow("")):
                    if entry.type == EntryType.FILE:
                        w.copy_file(path_in, entry, _plains(old, view, entry))
                        files += 1
                    else:
                        w.put_entry(path_in, entry)
                for name, value in old.run(view.env_items_flow()):
                    w.env_set(name, value)
            replace_atomically(tmp, path, what="compaction failed")
        except BaseException as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StorageError(f"compaction failed: {exc.strerror or exc}") from exc
            raise
    box.refresh()
    return CompactReport(size_before, os.path.getsize(path), files,
                         box.view.generation)


def _plains(old: Writer, view: ArchiveView, entry: Entry) -> Iterator[bytes]:
    """The authenticated frame plaintexts of a file's chunks, in order, in batches; for
    a packed file, its one member's bytes (an encoded data chunk, checked)."""
    if entry.layout == LAYOUT_PACKED:
        yield old.run(_member_flow(view, entry))
        return
    per = max(1, BATCH_BYTES // entry.chunk_size)
    for first in range(0, entry.chunks, per):
        stop = min(entry.chunks, first + per)

        def flow(first: int = first, stop: int = stop) -> Flow[list[bytes]]:
            refs = yield from view.chunk_refs_flow(entry, first, stop)
            blobs = yield Read(tuple(r.byte_range for r in refs))
            return [view.opener.open_ref_plain(b, r, FrameKind.DATA_CHUNK)
                    for r, b in zip(refs, blobs)]

        yield from old.run(flow())


def _member_flow(view: ArchiveView, entry: Entry) -> Flow[bytes]:
    """A packed file's member, as its pack holds it: the pack opened once (and kept by
    the view for the next members), the member checked against ``entry`` (FORMAT.md §10
    "Packs": IntegrityError / FormatError as a read would raise)."""
    ref = entry.refs[0]
    pack = view.cached_pack(ref)
    if pack is None:
        blobs = yield Read((ref.byte_range,))
        pack = view.keep_pack(ref, view.opener.open_ref(blobs[0], ref, FrameKind.PACK))
    view.check_member(entry, pack)
    return bytes(pack.member(entry.member_no))
