"""``verify``: authenticate every frame the newest commit references, check
every file's content hash, and walk every page header. Written as one flow, so it
runs over a local file or HTTP Range alike. Each tree is read by one streaming
:mod:`lockbox.formats.lbox.walk` walk: one round trip per tree level, bounded memory.
Packed files (layout 2) are checked pack by pack: each PACK frame is fetched and opened
once, then each of its members named by an entry is checked; the space map's PACK records
must count exactly the entries naming each pack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...drivers import Flow, Read
from ...errors import FormatError, IntegrityError, LockboxError
from ...ranges import ByteRange
from .reading import BATCH_BYTES, FileReadPlan
from .view import ArchiveView, OpenedPack
from .wire.constants import (
    PACKED_FORMAT_VERSION,
    PAGE_HEADER_SIZE,
    SUPERBLOCK_SIZE,
    EntryType,
    FrameKind,
    PageKind,
)
from .wire.entry import LAYOUT_PACKED, Entry, decode_entry, key_path
from .wire.node import Leaf, Node
from .wire.page import decode_page_header
from .wire.refs import Ref

if TYPE_CHECKING:
    from .write.space import PackRecord

__all__ = ["VerifyReport", "verify_flow"]


@dataclass
class VerifyReport:
    generation: int = 0
    files_checked: int = 0
    bytes_checked: int = 0
    nodes_checked: int = 0
    pages_checked: int = 0
    packs_checked: int = 0  # PACK frames opened (each once, whatever its members)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_flow(view: ArchiveView, *, progress: Callable[[str, int], None] | None = None,
                check_pages: bool = True) -> Flow[VerifyReport]:
    report = VerifyReport(generation=view.generation)
    c = view.commit
    files: list[tuple[str, Entry]] = []
    for kind, root in ((FrameKind.TOC_NODE, c.toc), (FrameKind.ENV_NODE, c.env)):
        # One streaming walk per tree (one round trip per level, bounded memory): each
        # leaf's entries are checked as it arrives and the leaf is not kept. Entries keep
        # their refs encoded until their content is checked (a bad ref is reported then).
        entries = 0

        def visit(node: Node, ref: Ref | None, kind: FrameKind = kind) -> None:
            nonlocal entries
            report.nodes_checked += 1
            if not isinstance(node, Leaf):
                return
            entries += node.count
            if kind == FrameKind.TOC_NODE:
                for k, v in zip(node.keys, node.values):
                    try:
                        files.append((key_path(k), decode_entry(v, lazy_refs=True)))
                    except FormatError as e:
                        report.problems.append(f"TOC entry: {e}")

        try:
            yield from view.walk_tree_flow(kind, root, visit)
        except LockboxError as e:
            name = "TOC tree" if kind == FrameKind.TOC_NODE else "env tree"
            report.problems.append(str(e) if name in str(e) else f"{name}: {e}")
            continue
        if entries != root.count:
            what = "TOC entry" if kind == FrameKind.TOC_NODE else "env value"
            report.problems.append(f"{what} count differs from the commit record")
    _check_tree_shape(files, c, report)
    if c.root_leaves:
        try:
            yield from view.nodes_flow(FrameKind.TOC_NODE, list(c.root_leaves))
        except LockboxError as e:
            report.problems.append(f"root listing: {e}")
    # Files are checked in batches of about BATCH_BYTES per round trip: many small
    # files share one batch; a large file is read in batches of its own.
    pending: list[tuple[str, Entry, FileReadPlan, int, list[Ref]]] = []
    pending_bytes = 0

    def check(path: str, entry: Entry, plan: FileReadPlan, first: int, refs: list[Ref],
              blobs: list[bytes]) -> None:
        chunks = [view.decode_chunk(entry, first + k, ref, blob)
                  for k, (ref, blob) in enumerate(zip(refs, blobs))]
        for data in plan.accept(chunks):
            report.bytes_checked += len(data)
            if progress is not None:
                progress(path, len(data))
        if plan.next_batch() is None:
            entry.refs[:]  # the whole entry decodes (its end included), not just the refs used

    # Every chunk frame is checked once: a valid archive never shares one between files
    # (or chunks), and an archive that does could make a small file cost terabytes.
    claimed: set[int] = set()

    def claim(refs: list[Ref]) -> list[Ref]:
        for r in refs:
            if r.frame_offset in claimed:
                raise IntegrityError(f"uses the chunk frame at {r.frame_offset} a second time "
                                     "(a valid archive never does)")
            claimed.add(r.frame_offset)
        return refs

    def flush() -> Flow[None]:
        nonlocal pending, pending_bytes
        tasks, pending, pending_bytes = pending, [], 0
        if not tasks:
            return
        blobs = yield Read(tuple(r.byte_range for t in tasks for r in t[4]))
        pos = 0
        for path, entry, plan, first, refs in tasks:
            mine = blobs[pos:pos + len(refs)]
            pos += len(refs)
            try:
                check(path, entry, plan, first, refs, mine)
                if plan.next_batch() is None:
                    report.files_checked += 1
            except LockboxError as e:
                report.problems.append(f"{path}: {e}")

    # Packed files, by their pack's ref (in the order first met), checked after the rest;
    # ``referenced``: frame offset -> [frame size, entries naming it] (the space map's
    # PACK records must say the same).
    packs: dict[Ref, list[tuple[str, Entry]]] = {}
    referenced: dict[int, list[int]] = {}
    members: set[tuple[int, int]] = set()

    files.reverse()  # checked in order, each dropped once checked
    while files:
        path, entry = files.pop()
        if entry.type != EntryType.FILE:
            continue
        if entry.layout == LAYOUT_PACKED:
            try:
                ref = entry.refs[0]  # the whole entry decodes
            except LockboxError as e:
                report.problems.append(f"{path}: {e}")
                continue
            counted = referenced.setdefault(ref.frame_offset, [ref.frame_size, 0])
            counted[1] += 1
            if (ref.frame_offset, entry.member_no) in members:
                report.problems.append(
                    f"{path}: uses member {entry.member_no} of the pack at {ref.frame_offset} "
                    "a second time (a valid archive never does)")
                continue
            members.add((ref.frame_offset, entry.member_no))
            packs.setdefault(ref, []).append((path, entry))
            continue
        plan = FileReadPlan(entry, path, view.opener.crypto)
        try:
            batch = plan.next_batch()
            assert batch is not None
            if batch[1] < entry.chunks:  # a large file: its own batches, in order
                yield from flush()
                while (batch := plan.next_batch()) is not None:
                    refs = claim((yield from view.chunk_refs_flow(entry, *batch)))
                    blobs = yield Read(tuple(r.byte_range for r in refs))
                    check(path, entry, plan, batch[0], refs, blobs)
                report.files_checked += 1
                continue
            refs = claim((yield from view.chunk_refs_flow(entry, *batch)))
        except LockboxError as e:
            report.problems.append(f"{path}: {e}")
            continue
        pending.append((path, entry, plan, batch[0], refs))
        pending_bytes += sum(r.frame_size for r in refs)
        if pending_bytes >= BATCH_BYTES or len(pending) >= 4096:
            yield from flush()
    yield from flush()
    yield from _check_packs(view, packs, report, progress)
    if referenced and view.slot.version < PACKED_FORMAT_VERSION:
        report.problems.append(f"files are packed, but the archive says format version "
                               f"{view.slot.version} (packs need {PACKED_FORMAT_VERSION})")
    elif not referenced and view.slot.version >= PACKED_FORMAT_VERSION:
        report.problems.append(f"format version {view.slot.version}, but no file is packed "
                               "(a writer writes it only for commits with packs)")
    if c.archive_end > SUPERBLOCK_SIZE:
        tail = yield Read((ByteRange(c.archive_end - 1, 1),))
        if len(tail[0]) != 1:
            report.problems.append(
                f"the archive is truncated: it should be {c.archive_end:,} bytes long")
    if check_pages:
        if c.space is not None:
            yield from _check_pages_by_map(view, report, referenced)
        else:  # first format revision: walk the page chain
            yield from _walk_chain(SUPERBLOCK_SIZE, c.archive_end, report, "")
    return report


def _check_packs(view: ArchiveView, packs: dict[Ref, list[tuple[str, Entry]]],
                 report: VerifyReport, progress: Callable[[str, int], None] | None
                 ) -> Flow[None]:
    """Each PACK frame fetched (about ``BATCH_BYTES`` per round trip) and opened once,
    then each member an entry names checked (``ArchiveView.check_member``); a pack that
    does not open is a problem of each of its files."""
    todo = list(packs.items())
    todo.reverse()
    while todo:
        batch = [todo.pop()]
        size = batch[0][0].frame_size
        while todo and size + todo[-1][0].frame_size <= BATCH_BYTES:
            size += todo[-1][0].frame_size
            batch.append(todo.pop())
        blobs = yield Read(tuple(ref.byte_range for ref, _ in batch))
        for (ref, files), blob in zip(batch, blobs):
            try:
                pack = OpenedPack.decode(view.opener.open_ref(blob, ref, FrameKind.PACK))
            except LockboxError as e:
                report.problems.extend(f"{path}: {e}" for path, _ in files)
                continue
            report.packs_checked += 1
            for path, entry in files:
                try:
                    data = view.check_member(entry, pack).data
                except LockboxError as e:
                    report.problems.append(f"{path}: {e}")
                    continue
                report.files_checked += 1
                report.bytes_checked += len(data)
                if progress is not None:
                    progress(path, len(data))
        del blobs


def _check_pack_records(packs: dict[int, PackRecord], referenced: dict[int, list[int]],
                        report: VerifyReport) -> None:
    """One PACK record per pack the TOC names, counting exactly its entries."""
    for off in sorted(set(packs) | set(referenced)):
        rec = packs.get(off)
        got = referenced.get(off)
        if rec is None:
            assert got is not None
            report.problems.append(f"space map: no PACK record for the pack at {off} "
                                   f"({got[1]} entries name it)")
        elif got is None:
            report.problems.append(f"space map: a PACK record for {off}, a frame no entry "
                                   "names")
        elif [rec.frame_size, rec.entries] != got:
            report.problems.append(
                f"space map: the PACK record at {off} counts {rec.entries} entries of a "
                f"{rec.frame_size}-byte frame; the TOC has {got[1]} of {got[0]}")


def _walk_chain(start: int, end: int, report: VerifyReport, what: str) -> Flow[None]:
    """Follow page headers from ``start``; they must end exactly at ``end``."""
    offset = start
    while offset < end:
        blobs = yield Read((ByteRange(offset, PAGE_HEADER_SIZE),))
        try:
            header = decode_page_header(blobs[0])
        except (FormatError, IntegrityError) as e:
            report.problems.append(f"page at {offset}{what}: {e}")
            return
        report.pages_checked += 1
        offset += header.page_size
    if offset != end:
        report.problems.append(f"pages{what} do not end at the committed end of the archive")


def _check_tree_shape(files: list[tuple[str, Entry]], c: object, report: VerifyReport) -> None:
    """Every parent exists and is a directory; the commit's statistics add up."""
    dirs = {p for p, e in files if e.type == EntryType.DIR}
    counts = {EntryType.FILE: 0, EntryType.DIR: 0, EntryType.SYMLINK: 0}
    file_bytes = 0
    for path, e in files:
        counts[e.type] += 1
        if e.type == EntryType.FILE:
            file_bytes += e.size
        parent = path.rpartition("/")[0]
        if parent and parent not in dirs:
            report.problems.append(f"{path}: its parent directory is missing")
    stats = c.stats  # type: ignore[attr-defined]
    if (stats.files, stats.dirs, stats.symlinks, stats.file_bytes) != (
            counts[EntryType.FILE], counts[EntryType.DIR], counts[EntryType.SYMLINK],
            file_bytes):
        report.problems.append("the commit record's statistics do not match the TOC")


def _check_pages_by_map(view: ArchiveView, report: VerifyReport,
                        referenced: dict[int, list[int]]) -> Flow[None]:
    """The space map tiles the archive, and every page it says is in use has a valid
    header of the right kind and size (all headers fetched in one batch)."""
    from .write.space import FREE, KEYDIR, SpaceMap

    c = view.commit
    assert c.space is not None
    try:
        items = yield from view.scan_flow(FrameKind.SPACE_NODE, c.space, [(b"", b"\xff" * 9)])
        space = SpaceMap.from_items(items)
    except LockboxError as e:
        report.problems.append(f"space map: {e}")
        return
    tail = space.tail_start if space.tail_start is not None else c.archive_end
    problem = space.check_cover(tail)
    if problem:
        report.problems.append(problem)
    _check_pack_records(space.packs, referenced, report)
    # Pages with live bytes must be intact; the rest (FREE, or freed by this very commit
    # and redacted right after it) may hold anything.
    pages = sorted((off, rec) for off, rec in space.pages.items()
                   if rec.kind != FREE and rec.live > 0)
    # The map's own pages (not in the map): a short chain from the tail to the end.
    yield from _walk_chain(tail, c.archive_end, report, " (space map)")
    blobs = yield Read(tuple(ByteRange(off, PAGE_HEADER_SIZE) for off, _ in pages))
    for (off, rec), blob in zip(pages, blobs):
        try:
            header = decode_page_header(blob)
        except (FormatError, IntegrityError) as e:
            report.problems.append(f"page at {off}: {e}")
            continue
        want = PageKind.KEYDIR if rec.kind == KEYDIR else PageKind.FRAMES
        if header.page_size != rec.size or header.kind != want:
            report.problems.append(f"page at {off}: does not match the space map")
        report.pages_checked += 1
