"""``verify``: authenticate every frame the newest commit references, check
every file's SHA-256, and walk every page header. Written as one flow, so it
runs over a local file or HTTP Range alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .drivers import Flow, Read
from .errors import FormatError, IntegrityError, LockboxError
from .format.constants import PAGE_HEADER_SIZE, SUPERBLOCK_SIZE, EntryType, FrameKind
from .format.entry import decode_entry, key_path
from .format.page import decode_page_header
from .ranges import ByteRange
from .reading import FileReadPlan
from .view import ArchiveView

__all__ = ["VerifyReport", "verify_flow"]


@dataclass
class VerifyReport:
    generation: int = 0
    files_checked: int = 0
    bytes_checked: int = 0
    nodes_checked: int = 0
    pages_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_flow(view: ArchiveView, *, progress: Callable[[str, int], None] | None = None,
                check_pages: bool = True) -> Flow[VerifyReport]:
    report = VerifyReport(generation=view.generation)
    c = view.commit
    files = []
    for kind, root in ((FrameKind.TOC_NODE, c.toc), (FrameKind.ENV_NODE, c.env)):
        try:
            leaves = yield from view.iter_leaves_flow(kind, root)
        except LockboxError as e:
            report.problems.append(f"{kind.name.lower()} tree: {e}")
            continue
        report.nodes_checked += len(leaves)
        if kind == FrameKind.TOC_NODE:
            n = 0
            for leaf in leaves:
                for k, v in zip(leaf.keys, leaf.values):
                    n += 1
                    try:
                        files.append((key_path(k), decode_entry(v)))
                    except FormatError as e:
                        report.problems.append(f"TOC entry: {e}")
            if n != root.count:
                report.problems.append("TOC entry count differs from the commit record")
    if c.root_leaves:
        try:
            yield from view.nodes_flow(FrameKind.TOC_NODE, list(c.root_leaves))
        except LockboxError as e:
            report.problems.append(f"root listing: {e}")
    for path, entry in files:
        if entry.type != EntryType.FILE:
            continue
        plan = FileReadPlan(entry, path, view.opener.crypto)
        try:
            while (batch := plan.next_batch()) is not None:
                chunks = yield from view.chunks_flow(entry, *batch)
                for data in plan.accept(chunks):
                    report.bytes_checked += len(data)
                    if progress is not None:
                        progress(path, len(data))
            report.files_checked += 1
        except LockboxError as e:
            report.problems.append(f"{path}: {e}")
    if check_pages:
        offset = SUPERBLOCK_SIZE
        while offset < c.archive_end:
            blobs = yield Read((ByteRange(offset, PAGE_HEADER_SIZE),))
            try:
                header = decode_page_header(blobs[0])
            except (FormatError, IntegrityError) as e:
                report.problems.append(f"page at {offset}: {e}")
                break
            report.pages_checked += 1
            offset += header.page_size
        if offset != c.archive_end and not report.problems:
            report.problems.append("pages do not end at the committed end of the archive")
    return report
