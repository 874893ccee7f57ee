"""The space map: what every page of the archive holds, for page reuse,
redaction and the reclaimable-space figure. docs/FORMAT.md §14.

The map has one record per page in ``[16384, archive_end)`` (keyed by page
offset), one DEAD record per frame that the commit freed and that is to be
zeroed once the commit is durable, and one PACK record per PACK frame the commit
references (keyed by the frame's offset): its size and how many TOC entries name
it. A pack is shared by the small files packed in it, so it is freed only when
that count reaches 0 (:meth:`SpaceMap.apply_pack_deltas`). The map is stored as
a space tree written afresh by every commit, in pages at the end of the file
(kind SPACEMAP records); the next commit frees those pages.

Lifecycle of a frame's bytes: live (counted in its page's ``live_bytes``) ->
freed by commit G (DEAD record in G's map) -> zeroed right after G is durable
(redaction) -> its page, once no live bytes remain, becomes FREE (its header
rewritten as a FREE page, the rest zeros) -> reused (best fit) by a later
commit's new pages. Nothing that the durable commit references is ever
overwritten, so a crash at any point leaves it intact.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ....errors import FormatError, IntegrityError
from ..wire.constants import MAX_PAGE_SIZE, PAGE_HEADER_SIZE, PAGE_UNIT, SUPERBLOCK_SIZE
from ..wire.encoding import Reader, uvarint
from ..wire.refs import Ref

__all__ = ["PageRecord", "PackRecord", "SpaceMap", "encode_record", "decode_record", "FRAMES",
           "KEYDIR", "FREE", "SPACEMAP", "DEAD", "TAIL", "PACK", "TAIL_KEY", "encode_tail"]

FRAMES = 1
KEYDIR = 2
FREE = 3
SPACEMAP = 4
DEAD = 5
TAIL = 6
PACK = 7
_KINDS = {FRAMES, KEYDIR, FREE, SPACEMAP}
_KEY = struct.Struct(">Q")
# The TAIL record: the map's own pages run from this offset to archive_end.
TAIL_KEY = b"\xff" * 8


@dataclass(slots=True)
class PageRecord:
    kind: int
    size: int
    live: int = 0  # bytes of frames still referenced (FRAMES), used size (KEYDIR)


@dataclass(slots=True)
class PackRecord:
    """A PACK frame the commit references: its size and how many TOC entries name it."""

    frame_size: int
    entries: int


Record = PageRecord | PackRecord | int


def encode_record(rec: Record) -> bytes:
    """A page record, a PACK record, or (an int) the size of a DEAD frame."""
    if isinstance(rec, int):
        return bytes([DEAD]) + uvarint(rec)
    if isinstance(rec, PackRecord):
        return bytes([PACK]) + uvarint(rec.frame_size) + uvarint(rec.entries)
    return bytes([rec.kind]) + uvarint(rec.size) + uvarint(rec.live)


def encode_tail(tail_start: int) -> bytes:
    return bytes([TAIL]) + uvarint(tail_start)


def decode_record(value: bytes) -> Record:
    r = Reader(value, "space record")
    kind = r.u8()
    if kind == DEAD:
        size = r.uvarint(MAX_PAGE_SIZE)
        r.done()
        return size
    if kind == PACK:
        size = r.uvarint(MAX_PAGE_SIZE)
        entries = r.uvarint()
        r.done()
        if entries == 0:
            raise FormatError("space record: a PACK record with no entries")
        return PackRecord(size, entries)
    if kind not in _KINDS:
        raise FormatError(f"space record: unknown kind {kind}")
    size = r.uvarint(MAX_PAGE_SIZE)
    live = r.uvarint(size)
    r.done()
    if size == 0 or size % PAGE_UNIT:
        raise FormatError("space record: bad page size")
    return PageRecord(kind, size, live)


class SpaceMap:
    """The in-memory map a writer keeps (and persists at every commit)."""

    def __init__(self) -> None:
        self.tail_start: int | None = None  # where the map's own pages began (if stored)
        self.pages: dict[int, PageRecord] = {}
        self.dead: dict[int, int] = {}  # frame offset -> frame size, awaiting zeroing
        self.packs: dict[int, PackRecord] = {}  # PACK frame offset -> size, entries
        self._offsets: list[int] = []  # sorted page offsets (rebuilt lazily)
        self._dirty = True

    # -- building ------------------------------------------------------------------

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]]) -> SpaceMap:
        m = cls()
        for key, value in items:
            if key == TAIL_KEY:
                r = Reader(value, "space tail record")
                if r.u8() != TAIL:
                    raise FormatError("space tail record: bad kind")
                m.tail_start = r.uvarint()
                r.done()
                continue
            if len(key) != 8:
                raise FormatError("space record: bad key")
            (offset,) = _KEY.unpack(key)
            rec = decode_record(value)
            if isinstance(rec, int):
                m.dead[offset] = rec
            elif isinstance(rec, PackRecord):
                m.packs[offset] = rec
            else:
                m.pages[offset] = rec
        return m

    def items(self) -> dict[bytes, bytes]:
        out = {_KEY.pack(o): encode_record(r) for o, r in self.pages.items()}
        out.update({_KEY.pack(o): encode_record(s) for o, s in self.dead.items()})
        out.update({_KEY.pack(o): encode_record(p) for o, p in self.packs.items()})
        return out

    # -- queries -------------------------------------------------------------------

    def _sorted(self) -> list[int]:
        if self._dirty:
            self._offsets = sorted(self.pages)
            self._dirty = False
        return self._offsets

    def page_of(self, offset: int) -> int:
        offs = self._sorted()
        i = bisect.bisect_right(offs, offset) - 1
        if i < 0:
            raise FormatError(f"space map: no page holds offset {offset}")
        start = offs[i]
        if offset >= start + self.pages[start].size:
            raise FormatError(f"space map: offset {offset} is outside every page")
        return start

    def reclaimable_bytes(self) -> int:
        total = 0
        for rec in self.pages.values():
            if rec.kind == FREE:
                total += rec.size
            elif rec.kind == FRAMES:
                total += rec.size - PAGE_HEADER_SIZE - rec.live
        return total

    def check_cover(self, archive_end: int) -> str:
        """"" if the page records tile [16384, archive_end) exactly, else why not."""
        pos = SUPERBLOCK_SIZE
        for off in self._sorted():
            if off != pos:
                return f"space map: gap or overlap at {pos}"
            pos += self.pages[off].size
        return "" if pos == archive_end else "space map: does not end at the archive end"

    # -- changes -------------------------------------------------------------------

    def add_page(self, offset: int, kind: int, size: int, live: int = 0) -> None:
        self.pages[offset] = PageRecord(kind, size, live)
        self._dirty = True

    def remove_page(self, offset: int) -> None:
        del self.pages[offset]
        self._dirty = True

    def add_live(self, ref: Ref) -> None:
        self.pages[self.page_of(ref.frame_offset)].live += ref.frame_size

    def free_frame(self, ref: Ref) -> None:
        rec = self.pages[self.page_of(ref.frame_offset)]
        rec.live -= ref.frame_size
        if rec.live < 0:
            raise FormatError("space map: a page's live bytes went negative")
        self.dead[ref.frame_offset] = ref.frame_size

    def apply_pack_deltas(self, deltas: dict[int, tuple[Ref, int]]) -> list[Ref]:
        """Apply a commit's net change of entries per PACK frame (``frame offset ->
        (its ref, +n / -n)``): a pack's record is created at its first entry, and a
        pack whose count reaches 0 leaves the map; its ref is returned, for the caller
        to free (:meth:`free_frame`). Deltas must be net over the whole commit (a move
        is -1 +1 = 0), never applied key by key."""
        freed: list[Ref] = []
        for offset, (ref, delta) in deltas.items():
            rec = self.packs.get(offset)
            if rec is None:
                if delta < 0:
                    raise IntegrityError(f"space map: no PACK record for the pack at {offset}")
                if offset in self.pages or offset in self.dead:
                    # A frame never starts at a page's offset, and a freed frame is not a
                    # pack an entry may name: a forged ref (written through the low-level
                    # entry API) must not overwrite that record in the map.
                    raise IntegrityError(f"an entry names a pack at {offset}, where no "
                                         "frame can be")
                if delta:
                    self.packs[offset] = PackRecord(ref.frame_size, delta)
                continue
            if rec.frame_size != ref.frame_size:
                raise IntegrityError(f"space map: the pack at {offset} has another size")
            rec.entries += delta
            if rec.entries < 0:
                raise IntegrityError(f"space map: the pack at {offset} lost more entries "
                                     "than it had")
            if rec.entries == 0:
                del self.packs[offset]
                freed.append(ref)
        return freed

    def take_free_extent(self, need: int) -> tuple[int, int] | None:
        """Best fit: the smallest FREE page of at least ``need`` bytes (which
        leaves the map: the caller re-records it)."""
        best: tuple[int, int] | None = None
        for off, rec in self.pages.items():
            if rec.kind == FREE and rec.size >= need and (best is None or rec.size < best[1]):
                best = (off, rec.size)
        if best is not None:
            self.remove_page(best[0])
        return best

    def redact(self, zero: Callable[[int, int], None],
               free_header: Callable[[int, int], None], keep: set[int]) -> int:
        """Zero every DEAD frame, then turn every page without live bytes (and not
        in ``keep``) into a FREE page, merging neighbours (up to the page size
        limit). Returns the bytes zeroed."""
        done = 0
        for offset, size in sorted(self.dead.items()):
            zero(offset, size)
            done += size
        self.dead.clear()
        for off, rec in sorted(self.pages.items()):
            if rec.kind in (FRAMES, KEYDIR, SPACEMAP) and rec.live == 0 and off not in keep:
                zero(off + PAGE_HEADER_SIZE, rec.size - PAGE_HEADER_SIZE)
                done += rec.size - PAGE_HEADER_SIZE
                free_header(off, rec.size)
                rec.kind = FREE
        merged: dict[int, PageRecord] = {}
        prev: int | None = None
        for off in sorted(self.pages):
            rec = self.pages[off]
            if (prev is not None and rec.kind == FREE and merged[prev].kind == FREE
                    and prev + merged[prev].size == off
                    and merged[prev].size + rec.size <= MAX_PAGE_SIZE):
                merged[prev].size += rec.size
                zero(off, PAGE_HEADER_SIZE)  # the absorbed page's header
                free_header(prev, merged[prev].size)
                continue
            merged[off] = rec
            prev = off
        self.pages = merged
        self._dirty = True
        return done
