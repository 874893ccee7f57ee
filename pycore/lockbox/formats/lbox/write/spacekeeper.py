"""The writer's side of the space map: loading (or rebuilding) it, accounting
freed frames at commit, and redacting what a durable commit freed.
docs/FORMAT.md §14.

A PACK frame is shared by the small files packed in it (entry layout 2): the map
counts the TOC entries naming each pack (PACK records), and a commit changes those
counts by its net deltas over the changed keys (the old value -1, the new value +1).
A pack is freed (DEAD, then redacted) only when its count reaches 0, never while an
entry still names it: a move is -1 +1 and frees nothing."""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress, groupby, repeat
from operator import attrgetter, eq
from typing import Any

from ....errors import FormatError, IntegrityError
from ....fileio import fsync, pread_exact, pwrite_all, write_zeros
from ..view import ArchiveView
from ..wire.constants import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    PAGE_HEADER_SIZE,
    SUPERBLOCK_SIZE,
    FrameKind,
    PageKind,
)
from ..wire.entry import LAYOUT_INDEX, LAYOUT_PACKED, Entry, decode_entry
from ..wire.frame import decode_frame_header
from ..wire.page import decode_page_header
from ..wire.refs import Ref
from ..wire.superblock import ExternalKeydir
from .pages import free_page_header
from .space import FRAMES, FREE, KEYDIR, SPACEMAP, PackRecord, SpaceMap

__all__ = ["SpaceKeeper"]

_KIND = {PageKind.FRAMES: FRAMES, PageKind.KEYDIR: KEYDIR, PageKind.FREE: FREE}


_refs_of = attrgetter("refs")
_layout_of = attrgetter("layout")


def _packed(entries: list[Entry]) -> list[Entry]:
    """The packed entries of ``entries`` (in order): a few passes, no step per entry."""
    layouts = list(map(_layout_of, entries))
    n_packed = layouts.count(LAYOUT_PACKED)
    if n_packed == len(entries):
        return entries
    if not n_packed:
        return []
    return list(compress(entries, map(eq, layouts, repeat(LAYOUT_PACKED))))


class SpaceKeeper:
    def __init__(self, fd: int, run: Callable[[Any], Any]) -> None:
        self.fd = fd
        self.run = run

    # -- low-level I/O ---------------------------------------------------------------

    def _pread(self, offset: int, size: int) -> bytes:
        return pread_exact(self.fd, size, offset)

    def _zero(self, offset: int, size: int) -> None:
        write_zeros(self.fd, offset, size)

    # -- loading -----------------------------------------------------------------------

    def load(self, view: ArchiveView) -> tuple[SpaceMap, int]:
        """The durable commit's map and where its own pages begin."""
        c = view.commit
        if c.space is None:
            return self.rebuild(view), c.archive_end
        items = self.run(view.scan_flow(FrameKind.SPACE_NODE, c.space, [(b"", b"\xff" * 9)]))
        space = SpaceMap.from_items(items)
        tail = space.tail_start if space.tail_start is not None else c.archive_end
        problem = space.check_cover(tail)
        if problem:
            raise IntegrityError(problem)
        return space, tail

    def walk_pages(self, start: int, end: int) -> list[tuple[int, int, int, int]]:
        """(offset, kind, size, used) of the page chain in [start, end)."""
        out = []
        pos = start
        while pos < end:
            h = decode_page_header(self._pread(pos, PAGE_HEADER_SIZE))
            out.append((pos, _KIND[h.kind], h.page_size, h.used_size))
            pos += h.page_size
        if pos != end:
            raise FormatError("pages do not end where expected")
        return out

    def rebuild(self, view: ArchiveView) -> SpaceMap:
        """A map for an archive written without one: the page chain, plus every
        frame the commit references, plus every unreferenced frame as DEAD; a PACK
        frame is live once, its record counting the entries that name it."""
        c = view.commit
        space = SpaceMap()
        used_of: dict[int, int] = {}
        keydir_pages = []
        for off, kind, size, used in self.walk_pages(SUPERBLOCK_SIZE, c.archive_end):
            space.add_page(off, kind, size)
            used_of[off] = used
            if kind == KEYDIR:
                keydir_pages.append(off)
        live: list[Ref] = []
        live += self.run(view.node_refs_flow(FrameKind.TOC_NODE, c.toc))
        live += self.run(view.node_refs_flow(FrameKind.ENV_NODE, c.env))
        for leaf in self.run(view.iter_leaves_flow(FrameKind.TOC_NODE, c.toc)):
            for value in leaf.values:
                e = decode_entry(value)
                if e.layout == LAYOUT_PACKED:
                    ref = e.refs[0]
                    rec = space.packs.get(ref.frame_offset)
                    if rec is None:
                        space.packs[ref.frame_offset] = PackRecord(ref.frame_size, 1)
                        live.append(ref)
                    elif rec.frame_size != ref.frame_size:
                        raise IntegrityError(f"two entries name the pack at "
                                             f"{ref.frame_offset} with different sizes")
                    else:
                        rec.entries += 1
                elif e.refs:
                    live += self.run(view.content_refs_flow(e))
        for ref in live:
            space.add_live(ref)
        if keydir_pages:  # the current copy: the external one, else the newest written
            kd = view.slot.keydir
            current = kd.page_offset if isinstance(kd, ExternalKeydir) else keydir_pages[-1]
            space.pages[current].live = used_of[current]
        live_at = {r.frame_offset for r in live}
        for off, page in list(space.pages.items()):
            if page.kind == FRAMES and page.live < used_of[off] - PAGE_HEADER_SIZE:
                pos, end = off + PAGE_HEADER_SIZE, off + used_of[off]
                while pos < end:
                    head = self._pread(pos, FRAME_HEADER_SIZE)
                    if head[:4] != FRAME_MAGIC:
                        break  # a hole (already zeroed): the rest of the page is dead
                    size = decode_frame_header(head).frame_size
                    if pos not in live_at:
                        space.dead[pos] = size
                    pos += size
        return space

    # -- committing ----------------------------------------------------------------------

    def freed_content(self, view: ArchiveView, space: SpaceMap, old: list[Entry],
                      new: list[Entry]) -> list[Ref]:
        """Frames of replaced or removed files that no staged entry still uses.

        ``old`` are the previous values of the changed keys, ``new`` their staged
        values (entries without refs count for nothing). Packed entries change their
        pack's count in ``space`` by the net delta (-1 per old, +1 per new); the packs
        whose count reaches 0 are among the frames returned (a pack the session wrote
        gets its record here, at its first entry). The caller frees every frame
        returned."""
        deltas: dict[int, tuple[Ref, int]] = {}
        sizes: dict[int, int] = {}
        for sign, entries in ((-1, _packed(old)), (1, _packed(new))):
            # The entries of one pack come in a run that shares one refs object (the
            # writer's): one ref decoded and one step per run of equal refs, not per entry.
            for refs, run in groupby(map(_refs_of, entries)):
                n = len(list(run))
                ref = refs[0]
                offset = ref.frame_offset
                if sizes.setdefault(offset, ref.frame_size) != ref.frame_size:
                    raise IntegrityError(f"two entries name the pack at {offset} with "
                                         "different sizes")
                have = deltas.get(offset)
                deltas[offset] = (ref, sign * n + (have[1] if have else 0))
        out = space.apply_pack_deltas(deltas)
        old_own = [e for e in old if e.layout != LAYOUT_PACKED]
        if not old_own:  # nothing replaced or removed had frames of its own
            return out
        kept = {r.frame_offset for e in new if e.layout != LAYOUT_PACKED for r in e.refs}
        for e in old_own:
            for ref in e.refs:
                if ref.frame_offset in kept:
                    continue
                out.append(ref)
            if e.layout == LAYOUT_INDEX and not any(r.frame_offset in kept for r in e.refs):
                out += self.run(view.chunk_refs_flow(e, 0, e.chunks))
        return out

    def record_tail(self, space: SpaceMap, start: int, end: int) -> None:
        """The previous map's own pages join the map (nothing references them now)."""
        for off, _, size, _ in self.walk_pages(start, end):
            space.add_page(off, SPACEMAP, size)

    def redact(self, space: SpaceMap, generation: int) -> int:
        """Zero what the durable commit freed; free pages that hold nothing live."""

        def free_header(offset: int, size: int) -> None:
            pwrite_all(self.fd, free_page_header(size, generation), offset)

        done = space.redact(self._zero, free_header, keep=set())
        fsync(self.fd)
        return done
