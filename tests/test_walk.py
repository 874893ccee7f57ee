"""The one tree walk (lockbox.formats.lbox.walk): round trips per tree level on tall trees, budget
splits, the checks that refuse hostile shapes, and bounded memory on hostile archives.

Tall trees are cheap: ``lockbox.formats.lbox.write.tree.NODE_TARGET_SIZE`` (the writer's
node target, read
when a tree is built) is shrunk to a few hundred bytes, so a few thousand entries make a
tree of height 3 to 6 — the same format with smaller nodes. Round trips are counted from
the source's own log (every ``read`` call is one round trip, with its ranges)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import lockbox
import lockbox.formats.lbox.write.tree
from hostile import tree_cases
from lockbox import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    TruncatedError,
)
from lockbox.formats.lbox.walk import WalkLimits, WalkStats
from lockbox.formats.lbox.wire.constants import (
    MAX_NODE_PLAIN_SIZE,
    SUPERBLOCK_SIZE,
    EntryType,
    FrameKind,
)
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_INDEX,
    Entry,
    LazyRefs,
    decode_entry,
    encode_entry,
    key_path,
)
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.ranges import ByteRange
from lockbox.sources.file import FileSource
from lockbox.sources.memory import BytesSource

PW = "pw"
WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)
MTIME = 1_600_000_000_000_000_000
TINY_NODES = 200  # bytes: a leaf holds ~6 directory entries, an internal node ~5 children
TESTS = Path(__file__).resolve().parent


class LogSource:
    """A sync source that logs every read (one read = one round trip) and its ranges."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log: list[tuple[ByteRange, ...]] = []

    def __getattr__(self, name: str) -> Any:  # size, stats, identity, rebase, close
        return getattr(self.inner, name)

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.log.append(tuple(ranges))
        return self.inner.read(ranges)  # type: ignore[no-any-return]

    def since(self, mark: int) -> list[tuple[ByteRange, ...]]:
        return self.log[mark:]


def open_logged(path: Path, **kw: Any) -> tuple[lockbox.Lockbox, LogSource]:
    src = LogSource(FileSource(path))
    box = lockbox.Lockbox(src, password=PW, path=str(path), **kw)  # type: ignore[arg-type]
    return box, src


def node_offsets(box: lockbox.Lockbox, kind: FrameKind) -> set[int]:
    """Offsets of every node frame of one tree (walked on a separate, uncounted view)."""
    with lockbox.open(box.path, password=PW, cache=0) as other:  # type: ignore[arg-type]
        root = {FrameKind.TOC_NODE: other.view.commit.toc,
                FrameKind.ENV_NODE: other.view.commit.env,
                FrameKind.SPACE_NODE: other.view.commit.space}[kind]
        assert root is not None
        refs = other.run(other.view.node_refs_flow(kind, root))
        return {r.frame_offset for r in refs}


def reads_of(log: list[tuple[ByteRange, ...]], offsets: set[int]) -> int:
    """Round trips of the log that fetched nodes of the tree whose frames are ``offsets``."""
    return sum(1 for ranges in log if any(r.offset in offsets for r in ranges))


# -- tall trees ------------------------------------------------------------------------------

# entries -> height with 200-byte nodes (checked by the fixture)
HEIGHTS = {3: 60, 4: 300, 5: 1500, 6: 4000}


def _tall(path: Path, entries: int) -> Path:
    box = lockbox.create(path, password=PW, argon2=WEAK, chunk_size=4096)
    with box.writer() as w:
        for i in range(entries):
            w.mkdir(f"d{i // 50:03d}/e{i:05d}", mtime_ns=MTIME)
        w.add_bytes("d000/file.txt", b"hello\n" * 10, mtime_ns=MTIME)
        w.add_bytes(f"d{(entries - 1) // 50:03d}/last.txt", b"bye\n", mtime_ns=MTIME)
        w.env_set("TOKEN", b"s3cret")
    box.close()
    return path


@pytest.fixture(scope="module")
def tall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    mp = pytest.MonkeyPatch()
    mp.setattr(lockbox.formats.lbox.write.tree, "NODE_TARGET_SIZE", TINY_NODES)
    root = tmp_path_factory.mktemp("tall")
    out = {h: _tall(root / f"h{h}.lbox", n) for h, n in HEIGHTS.items()}
    for h, p in out.items():
        with lockbox.open(p, password=PW) as box:
            assert box.view.commit.toc.height == h, (h, box.view.commit.toc.height)
    yield out
    mp.undo()


@pytest.mark.parametrize("height", sorted(HEIGHTS))
def test_listing_costs_one_round_trip_per_level(tall: dict[int, Path], height: int) -> None:
    box, src = open_logged(tall[height], cache=0)  # no node cache: every walk reads
    view = box.view
    c = view.commit
    toc = node_offsets(box, FrameKind.TOC_NODE)
    n = HEIGHTS[height]
    last_dir = f"d{(n - 1) // 50:03d}"

    def trips(op: Any) -> tuple[Any, int]:
        mark = len(src.log)
        before = view.walk_stats.copy()
        result = op()
        log = src.since(mark)
        stats = view.walk_stats - before
        assert stats.splits == 0 and stats.reads == len(log)
        assert all(r.offset in toc for ranges in log for r in ranges)  # nothing but nodes
        return result, len(log)

    # ls of a directory: its own entry and its children in one walk
    names, rt = trips(lambda: [e.name for e in box.ls(last_dir)])
    assert rt == height and "last.txt" in names
    # ls -R of the whole archive, and of one directory
    everything, rt = trips(lambda: box.ls("", recursive=True))
    assert rt == height and len(everything) == c.toc.count
    sub, rt = trips(lambda: box.ls("d000", recursive=True))
    assert rt == height and {e.name for e in sub} >= {"file.txt", "e00000"}
    # stat of a deep path
    st, rt = trips(lambda: box.stat(f"{last_dir}/last.txt"))
    assert rt == height and st.size == 4
    # ls of the root: the root-listing leaves when complete, else one walk
    roots, rt = trips(lambda: box.ls())
    assert rt == (1 if c.root_leaves_complete else height) and len(roots) == (n - 1) // 50 + 1
    box.close()


@pytest.mark.parametrize("height", sorted(HEIGHTS))
def test_verify_walks_each_tree_in_one_round_trip_per_level(tall: dict[int, Path],
                                                            height: int) -> None:
    box, src = open_logged(tall[height])  # the root-listing leaves then come from the cache
    view = box.view
    c = view.commit
    toc = node_offsets(box, FrameKind.TOC_NODE)
    space = node_offsets(box, FrameKind.SPACE_NODE)
    mark = len(src.log)
    report = box.verify()
    assert report.ok, report.problems
    log = src.since(mark)
    assert reads_of(log, toc) == height
    assert c.space is not None and reads_of(log, space) == c.space.height
    assert report.nodes_checked >= len(toc)  # every TOC node, and the env's
    assert view.walk_stats.splits == 0
    box.close()


@pytest.mark.parametrize("height", sorted(HEIGHTS))
def test_a_commit_reads_the_tree_once_per_level(tall: dict[int, Path], height: int,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockbox.formats.lbox.write.tree, "NODE_TARGET_SIZE", TINY_NODES)
    path = tmp_path / "copy.lbox"
    path.write_bytes(tall[height].read_bytes())
    box, _ = open_logged(path, cache=0)  # the lookups before the commit cache nothing
    toc_before = node_offsets(box, FrameKind.TOC_NODE)
    total = box.view.commit.toc.count
    with box.writer() as w:
        w.mkdir("d000/added", mtime_ns=MTIME)  # one touched leaf, no shrinking
        log = LogSource(w._source)
        w._source = log
        old = w.view
        before = old.walk_stats.copy()
        w.commit()
        d = old.walk_stats - before
        # the internal levels (one walk), then the touched leaf (one batch)
        assert reads_of(log.log, toc_before) == len(log.log) == d.reads == height
        assert (d.walks, d.splits) == (2, 0)
        # emptying one leaf (all its entries removed): the run absorbs the next leaf,
        # loaded in one more batch
        leaves = box.run(w.view.iter_leaves_flow(FrameKind.TOC_NODE, w.view.commit.toc))
        middle = leaves[len(leaves) // 2]
        assert all(not k.startswith(b"\x00") for k in middle.keys)  # no folder with children
        for k in middle.keys:
            w.remove(key_path(k))
        mark = len(log.log)
        old = w.view
        before = old.walk_stats.copy()
        w.commit()
        d = old.walk_stats - before
        assert len(log.since(mark)) == d.reads == height + 1
        assert (d.walks, d.splits) == (3, 0)
        gone = {key_path(k) for k in middle.keys}
    with lockbox.open(path, password=PW) as again:
        assert again.verify().ok
        names = {e.name for e in again.ls("d000")}
        assert "added" in names
        listed = {e.path for e in again.ls("", recursive=True)}
        assert not listed & gone and len(listed) == total + 1 - len(gone)
    box.close()


def test_budget_splits_are_counted_and_change_nothing(tall: dict[int, Path]) -> None:
    with lockbox.open(tall[5], password=PW, cache=0) as box:
        whole = box.ls("", recursive=True)
        unsplit = box.view.walk_stats.copy()
        assert unsplit.splits == 0 and unsplit.reads == 5
        box.view.limits = WalkLimits(batch_refs=7)
        before = box.view.walk_stats.copy()
        assert box.ls("", recursive=True) == whole  # same entries, same order
        d = box.view.walk_stats - before
        assert d.splits > 0 and d.reads == d.levels + d.splits and d.levels == 5
        # O(levels x splits), not one read per node
        assert d.reads < d.nodes // 3
        box.view.limits = WalkLimits(batch_bytes=1)  # one node per read: the extreme
        before = box.view.walk_stats.copy()
        assert box.ls("", recursive=True) == whole
        d = box.view.walk_stats - before
        assert d.reads == d.nodes


def test_tree_updates_on_tiny_nodes_match_a_model(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds and removals in batches (leaves re-split, neighbours absorbed, levels
    rebuilt) keep exactly the model's entries and a valid tree."""
    import random

    monkeypatch.setattr(lockbox.formats.lbox.write.tree, "NODE_TARGET_SIZE", 160)
    rng = random.Random(7)
    path = tmp_path / "model.lbox"
    lockbox.create(path, password=PW, argon2=WEAK).close()
    model: set[str] = set()
    for round_no in range(8):
        with lockbox.open(path, password=PW) as box, box.writer() as w:
            for _ in range(rng.randrange(1, 120)):
                name = f"k{rng.randrange(400):04d}"
                if name in model and rng.random() < 0.6:
                    w.remove(name)
                    model.discard(name)
                elif name not in model:
                    w.mkdir(name, mtime_ns=MTIME)
                    model.add(name)
        with lockbox.open(path, password=PW) as box:
            assert {e.name for e in box.ls()} == model, round_no
            assert box.verify().ok


# -- the checks --------------------------------------------------------------------------------


def _view(tall: dict[int, Path]) -> tuple[lockbox.Lockbox, Any]:
    box = lockbox.open(tall[4], password=PW, cache=0)
    return box, box.view


def test_duplicate_overlapping_and_misplaced_refs_are_refused_before_fetching(
        tall: dict[int, Path]) -> None:
    box, view = _view(tall)
    root = view.commit.toc
    refs = box.run(view.node_refs_flow(FrameKind.TOC_NODE, root))
    a, b = refs[1], refs[2]
    src = LogSource(box.source)
    box.source = src  # type: ignore[assignment]
    cases: list[tuple[list[Ref], type[LockboxError], str]] = [
        ([a, b, a], IntegrityError, "twice"),
        ([a, Ref(a.frame_offset + 1, a.frame_size, a.tag)], IntegrityError, "overlapping"),
        ([Ref(0, 64, a.tag)], IntegrityError, "before the first page"),
        ([Ref(view.commit.archive_end - 32, 64, a.tag)], TruncatedError, "committed end"),
    ]
    for batch, exc, words in cases:
        with pytest.raises(exc, match=words):
            box.run(view.nodes_flow(FrameKind.TOC_NODE, batch))
    assert src.log == []  # refused before any read
    box.close()


def test_a_node_is_checked_before_anything_below_it_is_fetched(tall: dict[int, Path]) -> None:
    """A root whose entry count disagrees with the commit fails after one read."""
    box, view = _view(tall)
    c = view.commit
    bad = type(c.toc)(c.toc.count + 1, c.toc.height, c.toc.ref, None)
    src = LogSource(box.source)
    box.source = src  # type: ignore[assignment]
    with pytest.raises(IntegrityError, match="commit record"):
        box.run(view.scan_flow(FrameKind.TOC_NODE, bad, [(b"", b"\xff")]))
    assert len(src.log) == 1
    box.close()


def test_decompression_bound_names_the_limit(tall: dict[int, Path]) -> None:
    box, view = _view(tall)
    view.limits = WalkLimits(amplification=1, free_bytes=0)
    with pytest.raises(LimitExceededError, match=r"WalkLimits\.amplification"):
        box.ls("", recursive=True)
    box.close()


def test_walk_stats_arithmetic() -> None:
    a = WalkStats(1, 5, 3, 2, 10, 100, 1000)
    assert a - WalkStats() == a and (a - a.copy()) == WalkStats()


def test_listing_a_missing_or_non_directory_path(tall: dict[int, Path]) -> None:
    with lockbox.open(tall[3], password=PW) as box:
        with pytest.raises(NotFoundError):
            box.ls("nope")
        with pytest.raises(NotFoundError):
            box.ls("d000/nope", recursive=True)
        with pytest.raises(lockbox.InvalidPathError):
            box.ls("d000/file.txt")
        assert [e.path for e in box.ls("d000/file.txt", recursive=True)] == []
        assert box.read_bytes("d000/file.txt") == b"hello\n" * 10  # lazily decoded refs


# -- lazy entries --------------------------------------------------------------------------


def _file_entry(refs: int) -> Entry:
    chunks = refs * 4096 if refs > 8 else refs
    layout = LAYOUT_INDEX if refs > 8 else 0
    return Entry(EntryType.FILE, 0o644, MTIME, chunks * 4096, 0, b"\x01" * 32, b"\x02" * 16,
                 4096, layout, tuple(Ref(SUPERBLOCK_SIZE + 100 * i, 64 + i, bytes([i % 256]) * 16)
                                    for i in range(refs)))


@pytest.mark.parametrize("refs", [1, 8, 2048])
def test_lazy_refs_equal_eager_ones(refs: int) -> None:
    buf = encode_entry(_file_entry(refs))
    eager, lazy = decode_entry(buf), decode_entry(buf, lazy_refs=True)
    assert isinstance(lazy.refs, LazyRefs) and len(lazy.refs) == refs
    assert lazy.refs[refs - 1] == eager.refs[refs - 1]  # decodes only up to it
    assert lazy == eager and lazy.refs == eager.refs and hash(lazy.refs) == hash(eager.refs)
    assert list(lazy.refs) == list(eager.refs) and lazy.refs[1:3] == eager.refs[1:3]
    assert encode_entry(lazy) == buf


def test_lazy_refs_report_damage_when_used() -> None:
    buf = encode_entry(_file_entry(20))
    with pytest.raises(FormatError, match="trailing"):
        tuple(decode_entry(buf + b"\x00", lazy_refs=True).refs)
    with pytest.raises(FormatError):
        decode_entry(buf + b"\x00" * 400, lazy_refs=True)  # more bytes than 20 refs can take
    damaged = decode_entry(buf[:-40] + b"\x00" * 40, lazy_refs=True)
    assert damaged.refs[0] == _file_entry(20).refs[0]
    with pytest.raises(FormatError):
        damaged.refs[19:]


# -- hostile shapes ------------------------------------------------------------------------

# What each hostile case must give (None: it lists; else the typed error).
EXPECTED: dict[str, type[LockboxError] | None] = {
    "same_frame_fanout": IntegrityError,
    "distinct_bombs": LimitExceededError,
    "entry_flood": LimitExceededError,
    "flood_at_limit": None,
    "shared_chunks": None,
    "overlapping_refs": TruncatedError,
    "internal_bombs": IntegrityError,
}
RSS_LIMIT_MIB = 512

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import lockbox
from lockbox.sources.memory import BytesSource
from hostile import tree_cases
data, pw = tree_cases.CASES[sys.argv[2]]()
out = {"size": len(data)}
box = lockbox.Lockbox(BytesSource(data), password=pw)
toc = box.view.commit.toc
first = box.run(box.view.root_node_flow(2, toc)).children[0].first_key[1:].decode()
ops = {"ls": lambda: box.ls(), "ls -R": lambda: box.ls("", recursive=True),
       "stat": lambda: box.stat(first), "verify": lambda: box.verify().problems}
for name, op in ops.items():
    t = time.perf_counter()
    try:
        r = op()
        got = ["ok", len(r) if isinstance(r, list) else 0]
    except lockbox.LockboxError as e:
        got = [type(e).__name__, str(e)]
    out[name] = got + [round(time.perf_counter() - t, 3)]
try:  # this process's own peak (ru_maxrss survives execve: it would include pytest's)
    with open("/proc/self/status") as f:
        out["rss_mib"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
except OSError:
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_hostile(case: str) -> dict[str, Any]:
    """Run ls, ls -R, stat and verify on a hostile case in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(lockbox.__file__).parent.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(TESTS), case], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_hostile_shapes_fail_typed_in_bounded_memory(case: str) -> None:
    out = run_hostile(case)
    expected = EXPECTED[case]
    want = "ok" if expected is None else expected.__name__
    assert out["size"] <= 160 * 1024
    for op in ("ls", "ls -R"):
        assert out[op][0] == want, (op, out[op])
    if expected is None:
        assert out["ls"][1] == out["ls -R"][1] >= 100_000
    assert out["stat"][0] in ("ok", want), out["stat"]
    # verify reports the tree's problem (and whatever else it finds)
    assert out["verify"][0] == "ok" and out["verify"][1] >= 1
    assert out["rss_mib"] <= RSS_LIMIT_MIB, out


def test_hostile_cases_are_genuine_archives() -> None:
    """Every case opens with its password and its TOC root authenticates: only the shape
    is hostile."""
    for name, build in tree_cases.CASES.items():
        data, pw = build()
        box = lockbox.Lockbox(BytesSource(data), password=pw, cache=0)
        root = box.run(box.view.root_node_flow(FrameKind.TOC_NODE, box.view.commit.toc))
        assert root is not None and root.level >= 1, name
        assert len(tree_cases._HUGE) <= MAX_NODE_PLAIN_SIZE


def test_real_shapes_stay_under_the_decompression_bound(tmp_path: Path) -> None:
    """A compressible but ordinary tree (20,000 files and folders with regular names,
    a symlink farm, env values) lists and verifies under the default limits."""
    path = tmp_path / "real.lbox"
    box = lockbox.create(path, password=PW, argon2=WEAK)
    with box.writer() as w:
        for i in range(10_000):
            w.add_bytes(f"src/pkg{i // 200:03d}/module_{i:05d}.py", b"import os\n" * 8,
                        mtime_ns=MTIME)
            w.mkdir(f"empty/{i:06d}", mtime_ns=MTIME)
        for i in range(2_000):
            w.symlink(f"links/l{i:05d}", "../src/pkg000/module_00000.py", mtime_ns=MTIME)
        for i in range(200):
            w.env_set(f"VAR_{i:04d}", b"\0" * 4096)
    box.close()
    with lockbox.open(path, password=PW, cache=0) as box:
        assert len(box.ls("", recursive=True)) == 10_000 + 10_000 + 2_000 + 53
        assert len(box.env_items()) == 200
        assert box.verify().ok
