"""Step 4 of recovery: the best tree from what the scan found (docs/FORMAT.md §15).

The newest authenticated commit's TOC if every node of it authenticates; else per
path the newest entry of any surviving TOC leaf (an entry is dropped when a *newer*
leaf whose key range covers it does not contain it: it was removed or moved by then);
plus, from data frames alone, file versions that no surviving entry names (path and
metadata from their last chunk; directories implied by paths). Symlinks and empty
directories come from TOC leaves only. Then each file's status: complete, partial
(with the byte ranges that survive) or lost.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ....errors import LockboxError
from ..wire.constants import MAX_CHUNK_SIZE, EntryType
from ..wire.entry import chunk_count, decode_entry, key_path, normalize_path, split_path, toc_key
from .findings import FileGroup, Findings, Plan, plan_of
from .report import (
    COMPLETE,
    LOST,
    PARTIAL,
    SOURCE_DATA_FRAMES,
    SOURCE_IMPLIED,
    SOURCE_TOC_LEAF,
    RecoveredEntry,
    RecoveryReport,
)

__all__ = ["rebuild", "covered_by_newer", "path_order"]


def rebuild(found: Findings, report: RecoveryReport) -> None:
    """Rebuild the tree into ``found.plans`` and ``found.env``; fill ``report``'s
    entries, env names, sources and problems."""
    plans = found.plans
    if not report.toc_source:
        plans = _plans_from_leaves(found, report)
        report.toc_source = "toc-leaves" if found.toc_best else "data-frames"
        _add_orphans(found, plans, report)
    elif found.newer_possible and found.commit is not None:
        # The surviving commit may be the older one: versions written after it come
        # back from their data frames (the lost commit's removals and moves cannot).
        gen = found.commit.generation
        added = _add_orphans(found, plans, report, newer_than=gen)
        if added:
            report.problems.append(
                f"one superblock slot is lost and {added} file versions are newer than "
                f"the surviving commit (generation {gen}): added from their data "
                "frames (removals, moves, symlinks and directories of the lost commit "
                "are not known)")
    found.plans = plans
    if not report.env_source:
        gone = covered_by_newer(((k, g) for k, (g, _) in found.env_best.items()),
                                found.env_spans)
        env: dict[str, bytes] = {}
        for k, (_, v) in found.env_best.items():
            if k in gone:
                continue
            try:
                env[k.decode()] = v
            except UnicodeDecodeError:
                report.problems.append("an env name is not UTF-8; skipped")
        found.env = env
        report.env_source = "env-leaves" if env else ""
    _add_implied_dirs(plans, report)
    commit = found.commit
    if commit is not None and report.toc_source != "commit":
        named = sum(1 for p in plans.values() if p.type == EntryType.FILE)
        if named < commit.stats.files:
            report.unaccounted_files = commit.stats.files - named
            report.problems.append(
                f"the commit (generation {commit.generation}) counts "
                f"{commit.stats.files} files, {named} were found: "
                f"{report.unaccounted_files} are lost with their names")
    report.env_names = sorted(found.env)
    report.entries = sorted((_entry_of(found, p) for p in plans.values()),
                            key=lambda e: path_order(e.path))


def _plans_from_leaves(found: Findings, report: RecoveryReport) -> dict[str, Plan]:
    gone = covered_by_newer(((k, g) for k, (g, _) in found.toc_best.items()),
                            found.toc_spans)
    plans: dict[str, Plan] = {}
    by_id: dict[bytes, str] = {}
    for k, (gen, value) in found.toc_best.items():
        if k in gone:
            continue
        try:
            path = key_path(k)
            plan = plan_of(path, decode_entry(value), SOURCE_TOC_LEAF, gen)
        except LockboxError as e:
            report.problems.append(f"a TOC entry in a surviving leaf is unreadable: {e}")
            continue
        if plan.type == EntryType.FILE:
            other = by_id.get(plan.file_id)
            if other is not None:  # one version lives at one path: the newest entry
                if plans[other].generation >= gen:
                    continue
                del plans[other]
            by_id[plan.file_id] = path
        plans[path] = plan
    return plans


def _add_orphans(found: Findings, plans: dict[str, Plan], report: RecoveryReport,
                 newer_than: int = -1) -> int:
    """File versions no surviving entry names, from their own chunks (only those
    written after generation ``newer_than``). Returns how many were added."""
    named = {p.file_id for p in plans.values() if p.type == EntryType.FILE}
    candidates: dict[str, list[FileGroup]] = {}
    added = 0
    for g in found.groups.values():
        if g.file_id in named or g.generation <= newer_than:
            continue
        try:
            path = normalize_path(g.path)
        except LockboxError:
            path = ""
        if not path or path != g.path:
            report.problems.append(f"file version {g.file_id.hex()} names an unusable "
                                   f"path {g.path!r}; skipped")
            continue
        candidates.setdefault(path, []).append(g)
    gone = covered_by_newer(((toc_key(p), max(g.generation for g in gs))
                             for p, gs in candidates.items()), found.toc_spans)
    for path, groups in candidates.items():
        if toc_key(path) in gone:
            continue
        g = max(groups, key=lambda g: (bool(g.verified), g.generation))
        have = plans.get(path)
        if have is not None and (have.generation >= g.generation or
                                 have.type != EntryType.FILE):
            continue  # a surviving entry at least as new names another version
        added += 1
        m = g.meta
        if m is not None:
            plans[path] = Plan(path, EntryType.FILE, m.mode, m.mtime_ns,
                               SOURCE_DATA_FRAMES, g.generation, m.size, m.content_hash,
                               g.file_id, m.chunk_size, from_entry=False)
        else:
            plans[path] = Plan(path, EntryType.FILE, 0o644, 0, SOURCE_DATA_FRAMES,
                               g.generation, 0, b"", g.file_id, 0, from_entry=False)
    return added


def _add_implied_dirs(plans: dict[str, Plan], report: RecoveryReport) -> None:
    for path in sorted(plans, key=path_order):
        child = plans[path]
        parent = split_path(path)[0]
        while parent:
            have = plans.get(parent)
            if have is not None:
                if have.type != EntryType.DIR:
                    report.problems.append(f"{parent} is not a directory but {path} "
                                           "lies below it")
                break
            plans[parent] = Plan(parent, EntryType.DIR, 0o755, child.mtime_ns,
                                 SOURCE_IMPLIED, child.generation)
            parent = split_path(parent)[0]


def _entry_of(found: Findings, p: Plan) -> RecoveredEntry:
    if p.type == EntryType.DIR:
        return RecoveredEntry(p.path, "dir", COMPLETE, p.source, 0, 0, (), p.mode,
                              p.mtime_ns)
    if p.type == EntryType.SYMLINK:
        return RecoveredEntry(p.path, "symlink", COMPLETE, p.source, 0, 0, (), p.mode,
                              p.mtime_ns, p.target)
    g = found.groups.get(p.file_id)
    if g is None:
        return RecoveredEntry(p.path, "file", LOST, p.source, p.size, 0, (), p.mode,
                              p.mtime_ns, detail="no chunk of it survives")
    size: int | None = p.size
    csize = p.chunk_size
    m = g.meta
    detail = ""
    if m is not None and p.from_entry and (m.size, m.content_hash, m.chunk_size) != \
            (p.size, p.content_hash, p.chunk_size):
        detail = "its chunks do not match its TOC entry"
    if not p.from_entry and m is None:
        size = None  # the last chunk (which holds the size) is lost
        lengths = {c[3] for no, c in g.chunks.items()}
        csize = max(lengths) if lengths else 0
    if csize < 1:
        csize = MAX_CHUNK_SIZE
    count = chunk_count(size, csize) if size is not None else None
    pieces = []
    got = 0
    for no, c in g.chunks.items():
        if count is not None and no >= count:
            continue
        pieces.append((no * csize, no * csize + c[3]))
        got += c[3]
    ranges = _merge_ranges(pieces)
    if not detail and g.verified:
        return RecoveredEntry(p.path, "file", COMPLETE, p.source, size, got, ranges,
                              p.mode, p.mtime_ns)
    if not pieces:
        return RecoveredEntry(p.path, "file", LOST, p.source, size, 0, (), p.mode,
                              p.mtime_ns, detail=detail or "no chunk of it survives")
    if not detail:
        if count is not None and len(pieces) == count and g.meta is not None:
            detail = "its content does not match its BLAKE3 hash"
        elif size is None:
            detail = "its last chunk (with its size) is lost"
        else:
            detail = f"{(count or 0) - len(pieces)} of {count} chunks are lost"
    return RecoveredEntry(p.path, "file", PARTIAL, p.source, size, got, ranges, p.mode,
                          p.mtime_ns, detail=detail)


def covered_by_newer(keys: Iterable[tuple[bytes, int]],
                     spans: list[tuple[bytes, bytes, int]]) -> set[bytes]:
    """Keys for which a leaf of a *newer* generation covers the key's position
    (first key <= key <= last key): that leaf would hold the key if it still
    existed at its generation, so the key was removed (or moved) by then.
    A sweep over sorted keys with a max-heap of open spans: O((n + s) log s)."""
    ordered = sorted(keys)
    by_first = sorted(spans)
    heap: list[tuple[int, bytes]] = []  # (-generation, last key)
    out: set[bytes] = set()
    j = 0
    for key, gen in ordered:
        while j < len(by_first) and by_first[j][0] <= key:
            heapq.heappush(heap, (-by_first[j][2], by_first[j][1]))
            j += 1
        while heap and heap[0][1] < key:  # spans that ended before this key
            heapq.heappop(heap)
        if heap and -heap[0][0] > gen:
            out.add(key)
    return out


def _merge_ranges(pieces: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(pieces):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def path_order(path: str) -> list[str]:
    """Sort key: a directory's entries right after it."""
    return path.split("/")
