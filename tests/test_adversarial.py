"""Damaged and hostile archives: every failure is a typed LockboxError, fast and
without large allocations; damage never yields wrong data.

Layout reminder (docs/FORMAT.md): two 8 KiB superblock slots (generation g is
written into slot g % 2), then from offset 16384 on pages: the KEYDIR page that
``create`` writes, pages of frames, and pages freed and redacted (FREE). The
``layered`` archive below has three generations:

* gen 1 (slot 1): empty, as ``create`` made it;
* gen 2 (slot 0): ``small``, ``multi`` (3 chunks), ``index`` (10 chunks: the
  chunk-index layout), env ``E``; its TOC and env trees are inline in the commit;
* gen 3 (slot 1): 40 more files (the TOC becomes a node frame), ``small``
  replaced, ``multi`` removed.

Files of one chunk of at most 64 KiB are packed (FORMAT §10 "Packs"): gen 2's
``small`` is the only member of its PACK frame; gen 3's ``small`` shares one PACK
frame with the 40 new files, so damage to that frame fails exactly those 41 files.
``multi`` and ``index`` have frames of their own.

Once generation 3 is durable, the frames it freed (gen 2's ``small`` and
``multi``) are redacted (docs/FORMAT.md §11, §14: the older slot's commit is not
kept readable). So when a test falls back to generation 2, those two files read
back either as they were or as IntegrityError — never as other data — and verify
may report them and the pages they were in; everything generation 3 kept
(``index``, env) must read back exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import re
import signal
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest

import lockbox
from lockbox import (
    FormatError,
    Identity,
    IntegrityError,
    LimitExceededError,
    Lockbox,
    LockboxError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
    WrongKeyError,
)
from lockbox.formats.lbox.frames import FrameOpener, FrameSealer
from lockbox.formats.lbox.wire.commit import CommitRecord, TreeRoot, decode_commit, encode_commit
from lockbox.formats.lbox.wire.constants import (
    FRAME_MAGIC,
    MAX_CHUNK_SIZE,
    PACKED_FORMAT_VERSION,
    PAGE_HEADER_SIZE,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
    Codec,
    EntryType,
    FrameKind,
    PageKind,
    SlotKind,
)
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.formats.lbox.wire.entry import LAYOUT_CHUNKS, LAYOUT_INDEX, LAYOUT_PACKED, Entry
from lockbox.formats.lbox.wire.frame import decode_frame_header
from lockbox.formats.lbox.wire.keydir import UnusableSlot, decode_keydir
from lockbox.formats.lbox.wire.page import decode_page_header
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.wire.superblock import ExternalKeydir, Slot, decode_slot, encode_slot
from lockbox.sources import BytesSource

CHUNK = 4096
MEMORY_BOUND = 64 * 1024 * 1024


# -- helpers ---------------------------------------------------------------------------------


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def open_bytes(data: bytes, **kw) -> Lockbox:
    if "identity" not in kw:
        kw.setdefault("password", "pw")
    return Lockbox(BytesSource(data), **kw)


def slot_of(data: bytes, no: int) -> Slot:
    return decode_slot(memoryview(data)[no * SLOT_SIZE:(no + 1) * SLOT_SIZE], no)


def slot_used(data: bytes, no: int) -> int:
    """Bytes of slot ``no`` covered by its checksum, checksum included."""
    kd, c = struct.unpack_from("<II", data, no * SLOT_SIZE + 40)
    return 48 + kd + c + 4


def fix_slot_crc(buf: bytearray, no: int) -> None:
    base = no * SLOT_SIZE
    end = slot_used(buf, no) - 4
    struct.pack_into("<I", buf, base + end, zlib.crc32(bytes(buf[base:base + end])))


def fix_header_crc(buf: bytearray, offset: int, covered: int) -> None:
    struct.pack_into("<I", buf, offset + covered, zlib.crc32(bytes(buf[offset:offset + covered])))


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    d = bytearray(data)
    d[offset] ^= mask
    return bytes(d)


def pages(data: bytes) -> Iterator[tuple[int, object]]:
    off = SUPERBLOCK_SIZE
    while off < len(data):
        h = decode_page_header(data[off:off + PAGE_HEADER_SIZE])
        yield off, h
        off += h.page_size


def frames(data: bytes) -> Iterator[tuple[int, object]]:
    """Every frame of every FRAMES page (skipping frames already redacted to zeros)."""
    for off, h in pages(data):
        if h.kind != PageKind.FRAMES:
            continue
        fo, end = off + PAGE_HEADER_SIZE, off + h.used_size
        while fo < end:
            try:
                fh = decode_frame_header(data[fo:fo + 48])
            except LockboxError:
                fo = data.find(FRAME_MAGIC, fo + 1, end)
                if fo < 0:
                    break
                continue
            yield fo, fh
            fo += fh.frame_size


def entry_of(box: Lockbox, path: str) -> Entry:
    return box.run(box.view.stat_flow(path))


def chunk_refs(box: Lockbox, path: str) -> list[Ref]:
    e = entry_of(box, path)
    return box.run(box.view.chunk_refs_flow(e, 0, e.chunks))


def sharing_frame(box: Lockbox, ref: Ref) -> set[str]:
    """The files whose entry names the frame ``ref`` (the members of a pack)."""
    return {e.path for e in box.ls(recursive=True)
            if e.is_file and ref in entry_of(box, e.path).refs}


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds: float = 10.0, memory: int = MEMORY_BOUND) -> Iterator[dict]:
    """Fail (instead of hanging) after ``seconds``; record the peak traced allocation."""
    def on_alarm(signum, frame):
        raise _Timeout(f"took more than {seconds} s")

    stats: dict = {}
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield stats
    finally:
        stats["elapsed"] = time.perf_counter() - t0
        stats["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert stats["peak"] < memory, f"peak allocation {stats['peak']} bytes"


def reseal_commit(data: bytes, no: int, content_key: bytes,
                  change: Callable[[CommitRecord], bytes]) -> bytes:
    """Rewrite slot ``no``'s commit record as a key holder could: ``change`` gets
    the record and returns the new record plaintext, sealed validly in place."""
    from lockbox.platform import default_codec, default_crypto

    crypto, codec = default_crypto(), default_codec()
    slot = slot_of(data, no)
    opener = FrameOpener(crypto, codec, slot.archive_id, content_key)
    _, payload = opener.open_at(slot.commit_frame, slot.commit_frame_offset, FrameKind.COMMIT)
    plain = change(decode_commit(payload))
    sealer = FrameSealer(crypto, codec, slot.archive_id, content_key)
    frame, _ = sealer.seal(FrameKind.COMMIT, slot.generation, slot.commit_frame_offset,
                           sealer.encode_plain(plain, compress=False))
    image = encode_slot(Slot(no, slot.archive_id, slot.generation, slot.keydir, frame))
    d = bytearray(data)
    d[no * SLOT_SIZE:(no + 1) * SLOT_SIZE] = image
    return bytes(d)


GEN2 = {
    "small": b"hello",
    "multi": rand_bytes(3 * CHUNK, 1),
    "index": rand_bytes(10 * CHUNK + 5, 2),
}
GEN3 = {
    "small": b"replaced",
    "index": GEN2["index"],
    **{f"dir/file-with-a-long-name-{i:03d}": bytes([i]) * i for i in range(40)},
}


@pytest.fixture
def layered(make_archive):
    path = make_archive(GEN2, env={"E": "v"})
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        for p, v in GEN3.items():
            if p not in GEN2 or GEN2[p] != v:
                w.add_bytes(p, v)
        w.remove("multi")
    data = path.read_bytes()
    assert slot_of(data, 0).generation == 2 and slot_of(data, 1).generation == 3
    return path, data


def files_of(box: Lockbox) -> dict[str, bytes]:
    return {e.path: box.read_bytes(e.path) for e in box.ls(recursive=True) if e.is_file}


FREED_BY_GEN3 = {"small", "multi"}


def check_gen2(box: Lockbox, data: bytes) -> None:
    """Generation 2 as far as it survives (see the module docstring); ``data`` is
    the archive as generation 3 left it."""
    assert box.generation == 2
    assert sorted(e.path for e in box.ls(recursive=True)) == sorted(GEN2)
    for p, content in GEN2.items():
        if p in FREED_BY_GEN3:
            try:
                assert box.read_bytes(p) == content
            except IntegrityError:
                pass
        else:
            assert box.read_bytes(p) == content
    assert box.env_items() == [("E", b"v")]
    freed = [(off, off + h.page_size) for off, h in pages(data) if h.kind == PageKind.FREE]
    for problem in box.verify().problems:
        where = problem.split(":")[0]
        if where.startswith("page at "):
            off = int(where.removeprefix("page at ").split()[0])
            assert any(a <= off < b for a, b in freed), problem
        else:  # generation 3 also freed (and redacted) generation 2's space map
            assert where in {*FREED_BY_GEN3, "space map"}, problem


# -- truncation ------------------------------------------------------------------------------


class Recorder:
    """A BytesSource that remembers every range asked for."""

    def __init__(self, data: bytes) -> None:
        self.inner = BytesSource(data)
        self.stats = self.inner.stats
        self.log: list = []

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, ranges):
        self.log.extend(ranges)
        return self.inner.read(ranges)

    def close(self) -> None:
        pass


def _ops(box: Lockbox) -> list[str]:
    return ["ls", "env", "verify"] + [f"read:{e.path}" for e in box.ls(recursive=True)
                                      if e.is_file]


def _outcome(box: Lockbox, op: str) -> tuple:
    """("ok", result) or ("error", exception type); verify gives ("verify", ok)."""
    try:
        got = _do(box, op)
    except LockboxError as e:
        return ("error", type(e))
    if op == "verify":
        return ("verify", got.ok)
    return ("ok", got)


def _do(box: Lockbox, op: str):
    if op == "ls":
        return [(e.path, e.type, e.size, e.blake3) for e in box.ls(recursive=True)]
    if op == "env":
        return box.env_items()
    if op == "verify":
        return box.verify()
    return box.read_bytes(op[5:])


def _boundaries(data: bytes) -> list[int]:
    points = {0, 8, 48, SLOT_SIZE, SLOT_SIZE + 8, SLOT_SIZE + 48, SUPERBLOCK_SIZE}
    for no in (0, 1):
        end = no * SLOT_SIZE + slot_used(data, no)
        points |= {end - 4, end}
    for off, h in pages(data):
        points |= {off, off + PAGE_HEADER_SIZE, off + h.used_size, off + h.page_size}
    for off, fh in frames(data):
        points |= {off, off + 48, off + fh.frame_size - 16, off + fh.frame_size}
    near = {q for p in points for q in (p - 1, p, p + 1) if 0 <= q < len(data)}
    rng = random.Random(1234)
    return sorted(near | {rng.randrange(len(data)) for _ in range(60)})


def test_truncation_at_every_structure_boundary(layered):
    """Cut the file at every structure boundary (±1) and at random points.

    Expected, exactly:
    * open succeeds iff some slot is entirely before the cut, at the newest such
      slot's generation (a cut inside slot 1 falls back to gen 2); otherwise it
      raises TruncatedError (or FormatError "not a lockbox archive" when not even
      the first 8 magic bytes are there);
    * once open, an operation (ls -R, env, reading one file, verify) returns
      exactly what it returns on the intact archive (a result, or the same error
      type: see the module docstring for generation 2) when every byte range it
      reads there lies before the cut, and otherwise raises TruncatedError;
      verify is ok only when it is ok on the intact archive and reads nothing
      past the cut.
    """
    _, data = layered
    slot_ends = {slot_of(data, no).generation: no * SLOT_SIZE + slot_used(data, no)
                 for no in (0, 1)}
    references: dict[int, dict] = {}

    def reference(gen: int) -> dict:
        if gen not in references:
            ref = bytearray(data)
            for no in (0, 1):
                if slot_of(data, no).generation > gen:
                    ref[no * SLOT_SIZE:(no + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)
            ref = bytes(ref)
            out = {}
            for op in _ops(open_bytes(ref)):
                rec = Recorder(ref)
                box = Lockbox(rec, password="pw")
                rec.log.clear()
                out[op] = (_outcome(box, op), max((r.end for r in rec.log), default=0))
            references[gen] = out
        return references[gen]

    failures = []
    seen = {"gen2": 0, "gen3": 0, "no-open": 0, "op-ok": 0, "op-cut": 0}
    for t in _boundaries(data):
        cut = data[:t]
        intact = [g for g, end in slot_ends.items() if t >= end]
        try:
            box = open_bytes(cut)
        except LockboxError as e:
            seen["no-open"] += 1
            if intact:
                failures.append((t, "open failed", repr(e)))
            elif t >= 8 and not isinstance(e, TruncatedError):
                failures.append((t, "open: expected TruncatedError", repr(e)))
            elif t < 8 and "not a lockbox archive" not in str(e):
                failures.append((t, "open: expected 'not a lockbox archive'", repr(e)))
            continue
        if not intact or box.generation != max(intact):
            failures.append((t, "opened generation", box.generation, intact))
            continue
        seen[f"gen{box.generation}"] += 1
        for op, (want, reach) in reference(box.generation).items():
            got = _outcome(box, op)
            if op == "verify":
                if got[1] != (want[1] and reach <= t):
                    failures.append((t, op, got, want, reach))
            elif reach <= t:
                if got != want:
                    failures.append((t, op, "differs from the intact archive", got[0], want[0]))
                elif got[0] == "ok":
                    seen["op-ok"] += 1
            elif got != ("error", TruncatedError):
                failures.append((t, op, "expected TruncatedError", got[0], got[1], reach))
            else:
                seen["op-cut"] += 1
    assert not failures, failures[:20]
    assert all(seen.values()), seen  # every kind of outcome was exercised


def test_truncated_archive_file_opened_by_path(make_archive, tmp_path):
    """The same through a FileSource: a cut inside "index"'s chunk-index frame
    (the TOC is inline in the commit). "a" is packed; its pack is sealed at commit,
    after the frames of files added with it, so "index" is added by a later commit
    to lie after it: both offsets come from the refs."""
    path = make_archive({"a": b"first"})
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_bytes("index", GEN2["index"])
    data = path.read_bytes()
    ref = entry_of(open_bytes(data), "index").refs[0]
    a_entry = entry_of(open_bytes(data), "a")
    assert a_entry.layout == LAYOUT_PACKED
    a = a_entry.refs[0]
    cut = ref.frame_offset + 10
    assert a.frame_offset + a.frame_size <= cut
    p = tmp_path / "cut.lbox"
    p.write_bytes(data[:cut])
    with lockbox.open(p, password="pw") as box:
        assert box.read_bytes("a") == b"first"
        with pytest.raises(TruncatedError):
            box.read_bytes("index")
        report = box.verify()
        assert not report.ok
        assert any(x.startswith("index:") for x in report.problems), report.problems


def test_verify_reports_a_cut_inside_the_last_pages_padding(layered):
    """No frame lies in the zero padding of the last page, but the archive is
    still shorter than its commit says (``archive_end``): verify must say so."""
    _, data = layered
    last_off, last = list(pages(data))[-1]
    assert last.used_size < last.page_size  # there is padding to cut into
    box = open_bytes(data[:last_off + last.used_size + 1])
    assert box.info().archive_end == len(data)
    assert files_of(box) == GEN3  # every frame is intact
    assert not box.verify().ok


def test_truncated_generation_1_archive_says_truncated(make_archive):
    """A fresh archive has only slot 1 (slot 0 is zeros); cut inside slot 1 after
    its magic, the error must be TruncatedError, not "not a lockbox archive"."""
    data = make_archive().read_bytes()
    end = SLOT_SIZE + slot_used(data, 1)
    for t in (SLOT_SIZE + 8, SLOT_SIZE + 48, end - 1):
        with pytest.raises(TruncatedError):
            open_bytes(data[:t])
    for t in (0, 100, SLOT_SIZE):
        with pytest.raises(FormatError, match="not a lockbox archive"):
            open_bytes(data[:t])
    assert open_bytes(data[:end]).generation == 1


# -- superblock damage -----------------------------------------------------------------------


def test_damaged_newer_slot_falls_back_to_the_previous_commit(layered):
    _, data = layered
    used = slot_used(data, 1)
    checked = 0
    for i in range(used):
        for mask in (0x01, 0x80):
            box = open_bytes(flipped(data, SLOT_SIZE + i, mask))
            assert box.generation == 2, (i, mask)
            checked += 1
    check_gen2(open_bytes(flipped(data, SLOT_SIZE + used // 2)), data)
    # damage in the unused rest of the slot changes nothing
    for i in (used, used + 1, SLOT_SIZE - 1):
        assert open_bytes(flipped(data, SLOT_SIZE + i, 0xFF)).generation == 3
    assert checked == 2 * used


def test_damaged_older_slot_does_not_matter(layered):
    _, data = layered
    for i in range(0, slot_used(data, 0), 5):
        box = open_bytes(flipped(data, i, 0x04))
        assert box.generation == 3
    assert files_of(box) == GEN3


def test_both_slots_damaged_is_an_error(layered):
    _, data = layered
    u0, u1 = slot_used(data, 0), slot_used(data, 1)
    for i in range(0, u0, 13):
        for j in range(0, u1, 17):
            d = bytearray(data)
            d[i] ^= 0x04
            d[SLOT_SIZE + j] ^= 0x04
            if i >= 48 and j >= 48:  # key directory, commit frame or checksum
                with pytest.raises(IntegrityError):
                    open_bytes(bytes(d))
            else:
                with pytest.raises((FormatError, IntegrityError)):
                    open_bytes(bytes(d))


def test_damaged_only_slot_is_an_integrity_error(make_archive):
    """A generation-1 archive has one slot (slot 0 is still zeros): damage in it
    is reported as damage (IntegrityError), not as slot 0's missing magic."""
    data = make_archive().read_bytes()
    for i in (60, 100, slot_used(data, 1) - 1):
        with pytest.raises(IntegrityError):
            open_bytes(flipped(data, SLOT_SIZE + i))


def test_superblock_spliced_from_another_archive(layered, make_archive):
    _, data = layered
    other = make_archive(GEN2, env={"E": "v"}).read_bytes()
    d = bytearray(data)
    d[0:SLOT_SIZE] = other[0:SLOT_SIZE]  # slot 0 from another archive
    with pytest.raises(IntegrityError):
        open_bytes(bytes(d))
    # the other archive's whole superblock over our pages: its keys, our frames
    d = bytearray(data)
    d[0:SUPERBLOCK_SIZE] = other[0:SUPERBLOCK_SIZE]
    box = open_bytes(bytes(d))
    with pytest.raises(IntegrityError):
        box.read_bytes("index")


# -- page and frame damage ------------------------------------------------------------------


def test_page_header_damage_is_reported_by_verify(layered):
    """Damage to the header of a page in use (FRAMES, KEYDIR) is reported by verify;
    reading never looks at page headers. (FREE pages may hold anything, §12.)"""
    _, data = layered
    page_offsets = [off for off, h in pages(data) if h.kind != PageKind.FREE]
    assert len(page_offsets) >= 3  # the key directory's page, then pages of frames
    for off in page_offsets:
        for i in range(PAGE_HEADER_SIZE):
            box = open_bytes(flipped(data, off + i, 0x10))
            report = box.verify()
            assert not report.ok
            assert any(re.match(rf"page at {off}\b", p) for p in report.problems), report
        # the frames themselves are intact: reading does not look at page headers
        assert files_of(box) == GEN3


def _frame_targets(data: bytes) -> dict[str, list[Ref]]:
    box = open_bytes(data)
    return {
        "small": list(entry_of(box, "small").refs),
        "index": list(entry_of(box, "index").refs) + chunk_refs(box, "index")[::3],
        "toc": [box.view.commit.toc.ref],
    }


def _damaged_files(data: bytes, target: str) -> set[str]:
    """The files damage to ``target``'s frames fails: "index" alone (its frames are
    its own); "small" and the 40 files packed with it (the members of its pack)."""
    if target == "index":
        return {"index"}
    assert target == "small"
    box = open_bytes(data)
    members = sharing_frame(box, entry_of(box, "small").refs[0])
    assert members == {"small", *(p for p in GEN3 if p.startswith("dir/"))}
    return members


def _check_damaged(data: bytes, damaged: str | set[str],
                   exc: type[Exception] = IntegrityError) -> None:
    """``damaged`` (one file, or all the members of a damaged pack) fails to read with
    ``exc`` and is all verify reports; every other file reads back exactly."""
    box = open_bytes(data)
    if damaged == "toc":
        with pytest.raises(exc):
            box.ls(recursive=True)
        with pytest.raises(exc):
            box.read_bytes("small")
        assert not box.verify().ok
        return
    failing = {damaged} if isinstance(damaged, str) else damaged
    for path in sorted(failing):
        with pytest.raises(exc):
            box.read_bytes(path)
    for path, content in GEN3.items():
        if path not in failing:
            assert box.read_bytes(path) == content
    report = box.verify()
    named = [p.split(":")[0] for p in report.problems]
    assert sorted(named) == sorted(failing), report.problems  # each once, nothing else


@pytest.mark.parametrize("target", ["small", "index", "toc"])
def test_frame_damage_is_an_integrity_error_and_stays_local(layered, target):
    """Flips anywhere in a frame but its 4 magic bytes: header fields (checksum),
    the sealed body and the tag all give IntegrityError; the rest still reads."""
    _, data = layered
    rng = random.Random(target)
    damaged = "toc" if target == "toc" else _damaged_files(data, target)
    for ref in _frame_targets(data)[target]:
        positions = list(range(4, 48)) + sorted(rng.sample(range(48, ref.frame_size), 12))
        positions += [ref.frame_size - 1]
        for i in positions:
            _check_damaged(flipped(data, ref.frame_offset + i, 1 << (i % 8)), damaged)


@pytest.mark.parametrize("target", ["small", "index"])
def test_frame_magic_damage_is_an_integrity_error(layered, target):
    """The frame a (authenticated) ref points to lost its magic: that is damage
    of a pinned frame, IntegrityError like any other byte of it."""
    _, data = layered
    ref = _frame_targets(data)[target][0]
    damaged = _damaged_files(data, target)
    for i in range(4):
        _check_damaged(flipped(data, ref.frame_offset + i, 0x20), damaged)


def test_chunks_swapped_within_a_file(layered):
    _, data = layered
    refs = chunk_refs(open_bytes(data), "index")
    a, b = refs[1], refs[2]
    assert a.frame_size == b.frame_size
    d = bytearray(data)
    d[a.frame_offset:a.frame_offset + a.frame_size] = data[b.frame_offset:b.frame_offset +
                                                           b.frame_size]
    d[b.frame_offset:b.frame_offset + b.frame_size] = data[a.frame_offset:a.frame_offset +
                                                           a.frame_size]
    _check_damaged(bytes(d), "index")


# Archives whose file "a" has a first frame to splice: of its own ("own-frames": two
# chunks each, only "a" fails), or a pack ("packed": "a" and "b" are the members of
# one PACK frame and both fail; "c" has frames of its own and still reads). Sizes in
# bytes of random (incompressible: same frame sizes in every archive) contents.
SPLICES = {
    "own-frames": ({"a": CHUNK + 904, "b": CHUNK + 904}, {"a"}, FrameKind.DATA_CHUNK),
    "packed": ({"a": 3000, "b": 3000, "c": CHUNK + 904}, {"a", "b"}, FrameKind.PACK),
}


def _first_frame(box: Lockbox, path: str, kind: FrameKind) -> Ref:
    """The first frame ``path``'s content is read from: its first chunk, or its pack."""
    e = entry_of(box, path)
    assert (e.layout == LAYOUT_PACKED) == (kind == FrameKind.PACK), e.layout
    return e.refs[0]


@pytest.mark.parametrize("case", sorted(SPLICES))
def test_frame_from_another_archive_with_the_same_layout(make_archive, case):
    sizes, failing, kind = SPLICES[case]
    contents = {p: rand_bytes(n, i) for i, (p, n) in enumerate(sizes.items())}
    mine = make_archive(contents).read_bytes()
    theirs = make_archive({p: rand_bytes(n, 100 + i)
                           for i, (p, n) in enumerate(sizes.items())}).read_bytes()
    ra = _first_frame(open_bytes(mine), "a", kind)
    rb = _first_frame(open_bytes(theirs), "a", kind)
    assert (ra.frame_offset, ra.frame_size) == (rb.frame_offset, rb.frame_size)
    assert sharing_frame(open_bytes(mine), ra) == failing
    d = bytearray(mine)
    d[ra.frame_offset:ra.frame_offset + ra.frame_size] = theirs[rb.frame_offset:rb.frame_offset +
                                                                rb.frame_size]
    box = open_bytes(bytes(d))
    for p in sorted(failing):
        with pytest.raises(IntegrityError):
            box.read_bytes(p)
    for p in contents.keys() - failing:
        assert box.read_bytes(p) == contents[p]
    assert sorted(p.split(":")[0] for p in box.verify().problems) == sorted(failing)


@pytest.mark.parametrize("case", sorted(SPLICES))
def test_frame_replayed_from_an_older_commit(make_archive, case):
    """Save a file's frame at generation 2, let generation 3 rewrite the file (a
    new frame of the same size elsewhere), then splice the old frame bytes in
    place of the new ones: the reader must refuse them. "f" has frames of its own,
    or is the only member of its pack ("g" is never in the same frame as "f")."""
    _, _, kind = SPLICES[case]
    size = 3000 if kind == FrameKind.PACK else CHUNK + 904
    other = rand_bytes(CHUNK + 904, 12) if kind == FrameKind.PACK else b"other"
    old, new = rand_bytes(size, 10), rand_bytes(size, 11)
    path = make_archive({"f": old, "g": other})
    gen2 = path.read_bytes()
    r_old = _first_frame(open_bytes(gen2), "f", kind)
    assert sharing_frame(open_bytes(gen2), r_old) == {"f"}
    old_frame = gen2[r_old.frame_offset:r_old.frame_offset + r_old.frame_size]
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_bytes("f", new)
    gen3 = path.read_bytes()
    r_new = _first_frame(open_bytes(gen3), "f", kind)
    assert r_new.frame_offset != r_old.frame_offset and r_new.frame_size == r_old.frame_size
    d = bytearray(gen3)
    d[r_new.frame_offset:r_new.frame_offset + r_new.frame_size] = old_frame
    box = open_bytes(bytes(d))
    assert box.generation == 3
    with pytest.raises(IntegrityError):
        box.read_bytes("f")
    assert box.read_bytes("g") == other
    assert [p.split(":")[0] for p in box.verify().problems] == ["f"]
    # ... even when the reader is also handed the old ref's tag: the offset is in the AAD
    with pytest.raises(IntegrityError):
        box.view.opener.open_at(old_frame, r_new.frame_offset, kind, r_old.tag)


@pytest.mark.parametrize("case", sorted(SPLICES))
def test_frame_moved_to_another_offset(make_archive, case):
    """"a"'s first frame copied over "b"'s (same size, another offset): authentic
    only where it was written. Packed, "a" and "b" are the only members of two packs
    (two commits), so that the copy fails "b" alone."""
    _, _, kind = SPLICES[case]
    size = 3000 if kind == FrameKind.PACK else CHUNK + 904
    contents = {"a": rand_bytes(size, 20), "b": rand_bytes(size, 21)}
    if kind == FrameKind.PACK:
        path = make_archive({"a": contents["a"]})
        with lockbox.open(path, password="pw") as box, box.writer() as w:
            w.add_bytes("b", contents["b"])
    else:
        path = make_archive(contents)
    data = path.read_bytes()
    box = open_bytes(data)
    ra, rb = _first_frame(box, "a", kind), _first_frame(box, "b", kind)
    assert ra.frame_size == rb.frame_size and ra.frame_offset != rb.frame_offset
    assert sharing_frame(box, rb) == {"b"}
    frame_a = data[ra.frame_offset:ra.frame_offset + ra.frame_size]
    # authentic where it was written ...
    _, payload = box.view.opener.open_at(frame_a, ra.frame_offset, kind, ra.tag)
    assert contents["a"][:CHUNK] in bytes(payload)
    # ... but not anywhere else, even with the right tag
    for off in (rb.frame_offset, ra.frame_offset + 1, ra.frame_offset - 4096):
        with pytest.raises(IntegrityError):
            box.view.opener.open_at(frame_a, off, kind, ra.tag)
    d = bytearray(data)
    d[rb.frame_offset:rb.frame_offset + rb.frame_size] = frame_a
    box = open_bytes(bytes(d))
    with pytest.raises(IntegrityError):
        box.read_bytes("b")
    assert box.read_bytes("a") == contents["a"]
    assert [p.split(":")[0] for p in box.verify().problems] == ["b"]


# -- keys ------------------------------------------------------------------------------------


def test_wrong_password_and_wrong_identity(layered, crypto):
    _, data = layered
    with pytest.raises(WrongKeyError):
        open_bytes(data, password="wrong")
    with pytest.raises(WrongKeyError):
        open_bytes(data, password="PW")
    with pytest.raises(WrongKeyError):
        open_bytes(data, password=None, identity=Identity.generate(crypto))
    with pytest.raises(UsageError):
        Lockbox(BytesSource(data))  # neither a password nor an identity


def test_wrong_identity_with_recipient_slots(make_archive, crypto):
    alice, mallory = Identity.generate(crypto), Identity.generate(crypto)
    data = make_archive({"f": b"x"}, recipients=[alice.recipient(crypto)]).read_bytes()
    assert open_bytes(data, identity=alice).read_bytes("f") == b"x"
    with pytest.raises(WrongKeyError):
        open_bytes(data, identity=mallory)
    # a recipient slot whose fingerprint matches but whose ciphertext was altered
    d = bytearray(data)
    kd = slot_of(data, 0).keydir
    slots = decode_keydir(kd)
    assert [s.kind.name for s in slots] == ["PASSWORD", "MLKEM1024"]
    ct_at = kd.index(slots[1].kem_ciphertext)
    d[48 + ct_at + 100] ^= 0x01
    fix_slot_crc(d, 0)
    # For the identity the altered slot does not open (ML-KEM's implicit rejection gives
    # a wrong key): generation 2 refuses it and generation 1 (intact, same content key)
    # opens instead. For the password, its slot of generation 2 opens, and then the key
    # directory does not match the commit's hash: raised, never generation 1 (§11).
    box = open_bytes(bytes(d), identity=alice)
    assert box.generation == 1 and box.view.keydir == slot_of(data, 1).keydir
    with pytest.raises(IntegrityError, match=r"modified outside a commit.*--generation 1"):
        open_bytes(bytes(d), password="pw")
    d[SLOT_SIZE + 100] ^= 0x01  # the older slot damaged too: nothing opens
    fix_slot_crc(d, 0)
    with pytest.raises(WrongKeyError):
        open_bytes(bytes(d), identity=alice)


def test_tampered_key_directory_never_opens_the_tampered_commit(layered):
    """Flip bits of the newest slot's key directory and recompute the slot's
    checksum (as an attacker would): open raises WrongKeyError, IntegrityError or
    FormatError, or falls back to generation 2 with its own, untouched key
    directory; generation 3 never opens."""
    _, data = layered
    kd = slot_of(data, 1).keydir
    gen2_kd = slot_of(data, 0).keydir
    outcomes: dict[str, int] = {}
    for i in range(len(kd)):
        for mask in (0x01, 0x80):
            d = bytearray(data)
            d[SLOT_SIZE + 48 + i] ^= mask
            fix_slot_crc(d, 1)
            with bounded(seconds=20, memory=512 * 1024 * 1024):
                try:
                    box = open_bytes(bytes(d))
                except (WrongKeyError, IntegrityError, FormatError) as e:
                    outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
                    continue
            assert box.generation == 2, (i, mask)
            assert box.view.keydir == gen2_kd
            outcomes["gen2"] = outcomes.get("gen2", 0) + 1
    assert outcomes.get("gen2", 0) > 0 and sum(outcomes.values()) == 2 * len(kd)


def test_key_directory_binding_to_the_commit(make_archive, weak_argon2):
    """Change only a slot the password does not use (the keydir still unlocks):
    the commit's keydir hash catches it, and that is raised (the password opened a
    key slot of generation 3: no fallback, §11); with the older slot damaged too the
    result is the same IntegrityError."""
    path = make_archive({"f": b"1"})
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.add_password("second", weak_argon2)
        w.add_bytes("g", b"2")
    data = path.read_bytes()
    newest = slot_of(data, 1)
    assert newest.generation == 3
    slots = decode_keydir(newest.keydir)
    salt_at = newest.keydir.index(slots[1].salt)
    d = bytearray(data)
    d[SLOT_SIZE + 48 + salt_at] ^= 0x01  # the second password slot's salt
    fix_slot_crc(d, 1)
    with pytest.raises(IntegrityError, match=r"modified outside a commit.*--generation 2"):
        open_bytes(bytes(d))
    with pytest.raises(WrongKeyError):
        open_bytes(bytes(d), password="second")  # its slot was damaged
    d[100] ^= 0x01  # and now the older slot too
    with pytest.raises(IntegrityError):
        open_bytes(bytes(d))


def test_unusable_key_slots_are_passed_over(make_archive):
    """Slots this reader cannot use (an unknown kind from a newer writer, Argon2
    parameters beyond the limits) are kept, and another slot still opens."""
    path = make_archive({"f": b"1"})
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        w.key_slots.insert(0, UnusableSlot(77, 9, b"a future kind of slot", "unknown"))
        w.key_slots.insert(1, UnusableSlot(78, SlotKind.PASSWORD, bytes(73), "t=0"))
        w._keys_changed = True
    with lockbox.open(path, password="pw") as box:
        assert box.generation == 3 and box.read_bytes("f") == b"1"
        assert len(box.info().slots) == 3
    with pytest.raises(WrongKeyError):
        lockbox.open(path, password="wrong")


def test_key_directory_from_another_archive(layered, make_archive):
    _, data = layered
    other = make_archive({"x": b"y"}).read_bytes()
    kd_mine, kd_other = slot_of(data, 1).keydir, slot_of(other, 0).keydir
    assert len(kd_mine) == len(kd_other)  # same password: same layout
    d = bytearray(data)
    d[SLOT_SIZE + 48:SLOT_SIZE + 48 + len(kd_mine)] = kd_other
    fix_slot_crc(d, 1)
    # its slots wrap another archive's key (and bind another archive id): generation 3
    # does not open, generation 2 (its own key directory) does
    box = open_bytes(bytes(d))
    assert box.generation == 2 and box.view.keydir == slot_of(data, 0).keydir
    d[100] ^= 0x01  # with the older slot damaged as well: a wrong key
    with pytest.raises(WrongKeyError):
        open_bytes(bytes(d))


def test_damaged_external_key_directory(make_archive, crypto):
    path = make_archive({"f": b"data"})
    ids = [Identity.generate(crypto) for _ in range(5)]
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        for i in ids:
            w.add_recipient(i.recipient(crypto))
    data = path.read_bytes()
    ext = slot_of(data, 1).keydir
    assert isinstance(ext, ExternalKeydir)
    assert open_bytes(data, identity=ids[2]).generation == 3
    page_end = ext.page_offset + PAGE_HEADER_SIZE + 16 + ext.keydir_size
    for where in (ext.page_offset + 3, ext.page_offset + 40, page_end - 1):
        d = flipped(data, where)
        box = open_bytes(d)  # the password also opens generation 2 (inline keydir)
        assert box.generation == 2 and box.read_bytes("f") == b"data"
        # generation 3's key directory is damaged, generation 2 has no slot for the
        # identity: as docs/FORMAT.md §11 specifies, the NEWEST slot's error is raised
        # (the damage), not the older slot's WrongKeyError
        with pytest.raises((FormatError, IntegrityError)):
            open_bytes(d, identity=ids[2])


# -- hostile lengths -------------------------------------------------------------------------


def _both_slots(data: bytes, make: Callable[[int, Slot], bytes]) -> bytes:
    d = bytearray(data)
    for no in (0, 1):
        d[no * SLOT_SIZE:(no + 1) * SLOT_SIZE] = make(no, slot_of(data, no))
    return bytes(d)


def test_hostile_slot_lengths(layered):
    _, data = layered

    def huge_sizes(no: int, slot: Slot) -> bytes:
        img = bytearray(data[no * SLOT_SIZE:(no + 1) * SLOT_SIZE])
        struct.pack_into("<II", img, 40, 0xFFFFFFFF, 0xFFFFFFFF)
        return bytes(img)

    with bounded(seconds=5):
        with pytest.raises(IntegrityError, match="larger than the slot"):
            open_bytes(_both_slots(data, huge_sizes))


@pytest.mark.parametrize("offset,size", [(2 ** 63, 100), (2 ** 64 - 1, 100),
                                         (SUPERBLOCK_SIZE, 0xFFFFFFFF), (10 ** 9, 4096)])
def test_hostile_external_key_directory_pointer(layered, tmp_path, offset, size):
    _, data = layered

    def pointer(no: int, slot: Slot) -> bytes:
        return encode_slot(Slot(no, slot.archive_id, slot.generation,
                                ExternalKeydir(offset, size, bytes(32)), slot.commit_frame))

    hostile = _both_slots(data, pointer)
    p = tmp_path / "hostile.lbox"
    p.write_bytes(hostile)
    with bounded(seconds=5):
        with pytest.raises(FormatError):
            open_bytes(hostile)
        with pytest.raises(FormatError):
            lockbox.open(p, password="pw")


def test_hostile_page_header_sizes(layered):
    _, data = layered
    off, page = next((o, h) for o, h in pages(data) if h.kind == PageKind.FRAMES)
    assert page.page_size > 4096
    for field, value in (("page_size", 0xFFFFF000), ("used_size", 0xFFFFFFFF),
                         ("page_size", 4096)):
        d = bytearray(data)
        struct.pack_into("<I", d, off + (8 if field == "page_size" else 12), value)
        fix_header_crc(d, off, 28)
        box = open_bytes(bytes(d))
        with bounded(seconds=5):
            report = box.verify()
        assert not report.ok, (field, value)
        assert box.read_bytes("small") == b"replaced"


@pytest.mark.parametrize("sealed,exc", [
    (0xFFFFFFFF, LimitExceededError), (2 ** 31, LimitExceededError),
    (4 * 1024 * 1024 + 10 ** 5, LimitExceededError),
    (10 ** 5, IntegrityError),  # within the limits, but not the size the ref pins
    (20, IntegrityError),
])
def test_hostile_frame_header_sealed_size(layered, sealed, exc):
    """A frame header (checksum recomputed) claiming another sealed size than the
    frame its ref points to: over the format's limit it is LimitExceededError,
    otherwise the header contradicts the authenticated ref: IntegrityError (the
    archive is not truncated, so TruncatedError would mislead)."""
    _, data = layered
    ref = _frame_targets(data)["small"][0]
    d = bytearray(data)
    struct.pack_into("<I", d, ref.frame_offset + 8, sealed)
    fix_header_crc(d, ref.frame_offset, 44)
    box = open_bytes(bytes(d))
    with bounded(seconds=5):
        with pytest.raises(exc):
            box.read_bytes("small")
    assert box.read_bytes("index") == GEN3["index"]


def _write_hostile_entries(path, entries: dict[str, Entry]) -> bytes:
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        for p, e in entries.items():
            w._put(p, e)
    return path.read_bytes()


def test_hostile_refs_inside_sealed_entries(make_archive, tmp_path):
    """A key holder writes entries whose refs point far past the end of the file
    (2**63, 2**64-1) or claim the largest frame size: reads raise
    TruncatedError, without allocating for the claimed sizes."""
    path = make_archive({"ok": b"fine"})
    far = [Ref(2 ** 63, 1000, bytes(16)), Ref(2 ** 64 - 1, MAX_CHUNK_SIZE, bytes(16)),
           Ref(SUPERBLOCK_SIZE, 48 + MAX_CHUNK_SIZE, bytes(16))]
    big_chunk = 4 * 1024 * 1024
    entries = {
        f"far{i}": Entry(EntryType.FILE, 0o644, 0, 5, 0, bytes(32), bytes(16), CHUNK,
                         LAYOUT_CHUNKS, (ref,))
        for i, ref in enumerate(far)
    }
    # the same refs naming the PACK frame of a packed file (layout 2); the writer refuses
    # to count a pack at a page's offset (the superblock's end is the first page), where
    # no frame can start: its PACK record would overwrite that page's in the space map
    packed = {
        f"far-packed{i}": Entry(EntryType.FILE, 0o644, 0, 5, 0, bytes(32), bytes([i]) * 16,
                                CHUNK, LAYOUT_PACKED, (ref,), member_no=i)
        for i, ref in enumerate(far)
    }
    before = path.read_bytes()
    with pytest.raises(IntegrityError, match="no frame can be"):
        _write_hostile_entries(path, {"far-packed2": packed.pop("far-packed2")})
    assert path.read_bytes() == before  # nothing committed
    entries.update(packed)
    # a 1 TiB file: 2**18 chunks of 4 MiB, 64 chunk-index frames, all far away
    entries["huge"] = Entry(EntryType.FILE, 0o644, 0, 2 ** 40, 0, bytes(32), bytes(16),
                            big_chunk, LAYOUT_INDEX, tuple([far[1]] * 64))
    data = _write_hostile_entries(path, entries)
    p2 = tmp_path / "copy.lbox"
    p2.write_bytes(data)
    for box in (open_bytes(data), lockbox.open(p2, password="pw")):
        assert box.stat("huge").size == 2 ** 40
        for name in entries:
            with bounded(seconds=5):
                with pytest.raises(TruncatedError):
                    box.read_bytes(name)
        with bounded(seconds=5):
            f = box.open_file("huge")
            f.seek(2 ** 39 + 12345)
            with pytest.raises(TruncatedError):
                f.read(100)
        with bounded(seconds=10):
            report = box.verify()
        # each file once; besides, the space map may disagree: the writer counted the
        # forged packs as their entries said (PACK records at their offsets)
        named = [p.split(":")[0] for p in report.problems]
        assert sorted(n for n in named if n != "space map") == sorted(entries)
        assert box.read_bytes("ok") == b"fine"


def test_hostile_commit_records(layered):
    """Commit records sealed validly by a key holder but with hostile fields."""
    _, data = layered
    key = open_bytes(data)._content_key
    toc = open_bytes(data).view.commit.toc
    assert toc.ref is not None

    def with_(**changes) -> Callable[[CommitRecord], bytes]:
        return lambda c: encode_commit(dataclasses.replace(c, **changes))

    far_root = TreeRoot(toc.count, toc.height, Ref(2 ** 63, 4096, bytes(16)), None)
    cases = [
        (with_(archive_end=2 ** 63), "verify", None),
        (with_(archive_end=2 ** 64 - 1 - 4095), "verify", None),
        (with_(toc=far_root), "ls", TruncatedError),
        (with_(toc=TreeRoot(2 ** 63, toc.height, toc.ref, None)), "ls", IntegrityError),
        (with_(toc=TreeRoot(toc.count, 5, toc.ref, None)), "ls", IntegrityError),
    ]
    for change, op, exc in cases:
        box = open_bytes(reseal_commit(data, 1, key, change))
        assert box.generation == 3
        with bounded(seconds=10):
            if op == "verify":
                report = box.verify()
                assert not report.ok
                assert any("truncated" in p for p in report.problems), report.problems
            else:
                with pytest.raises(exc):
                    box.ls(recursive=True)


# -- decompression bombs ---------------------------------------------------------------------


def zstd_rle_bomb(total: int, declared: int | None = None) -> bytes:
    """A valid zstd frame of RLE blocks expanding to ``total`` zero bytes (~4 bytes
    per 128 KiB), optionally with a (false) declared content size."""
    block = 128 * 1024
    out = bytearray(b"\x28\xb5\x2f\xfd")
    if declared is None:
        out += bytes([0x00, 0x38])  # no content size; window 128 KiB
    else:
        out += bytes([0x80, 0x38]) + declared.to_bytes(4, "little")  # 4-byte content size
    n = total // block
    for i in range(n):
        out += ((1 if i == n - 1 else 0) | (1 << 1) | (block << 3)).to_bytes(3, "little")
        out += b"\x00"
    return bytes(out)


def test_rle_bomb_is_a_real_zstd_frame(codec):
    assert codec.decompress(zstd_rle_bomb(4 * 128 * 1024), 1 << 20) == bytes(4 * 128 * 1024)


@pytest.mark.parametrize("claimed", [200, 4096 + 200, 4 * 1024 * 1024])
@pytest.mark.parametrize("declared", [None, 100, 2 ** 31])
def test_decompression_bomb_in_a_sealed_frame(layered, crypto, codec, claimed, declared):
    _, data = layered
    box = open_bytes(data)
    sealer = FrameSealer(crypto, codec, box.view.archive_id, box.content_key)
    plain = bytes([Codec.ZSTD]) + uvarint(claimed) + zstd_rle_bomb(1 << 30, declared)
    frame, ref = sealer.seal(FrameKind.DATA_CHUNK, 3, 999_424, plain)
    with bounded(seconds=5):
        with pytest.raises((LimitExceededError, FormatError)):
            box.view.opener.open_ref(frame, ref, FrameKind.DATA_CHUNK)


@pytest.mark.parametrize("where", ["chunk", "pack"])
def test_decompression_bomb_written_into_an_archive(make_archive, where):
    """A writer holding the key seals a bomb as a file's chunk (a file of two chunks:
    frames of its own), or as the PACK frame holding a small file: reading that file
    fails fast with a typed error; the other files are unaffected."""
    path = make_archive({"ok": b"fine"})  # packed, in a pack of its own (generation 2)
    content = b"x" * (CHUNK + 100) if where == "chunk" else b"x" * 100
    calls = []
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        honest = w.sealer.encode_plain

        def evil(payload, compress=True):
            calls.append(len(payload))
            return bytes([Codec.ZSTD]) + uvarint(len(payload)) + zstd_rle_bomb(1 << 30)

        w.sealer.encode_plain = evil
        try:
            w.add_bytes("bomb", content)
            if where == "pack":  # seal the open pack now (else the commit would)
                assert w.content.seal_pack() is not None
        finally:
            w.sealer.encode_plain = honest
    assert calls  # the bomb went through the sealing it is meant to test
    with lockbox.open(path, password="pw") as box:
        e = entry_of(box, "bomb")
        assert e.layout == (LAYOUT_PACKED if where == "pack" else LAYOUT_CHUNKS)
        assert sharing_frame(box, e.refs[0]) == {"bomb"}
        with bounded(seconds=5):
            with pytest.raises(LimitExceededError):
                box.read_bytes("bomb")
            report = box.verify()
        assert [p.split(":")[0] for p in report.problems] == ["bomb"]
        assert box.read_bytes("ok") == b"fine"


# -- versions and foreign files --------------------------------------------------------------


def _with_slot_version(data: bytes, no: int, version: int) -> bytes:
    d = bytearray(data)
    struct.pack_into("<H", d, no * SLOT_SIZE + 8, version)
    fix_slot_crc(d, no)
    return bytes(d)


def test_unknown_format_version(layered, make_archive):
    _, data = layered
    both = _with_slot_version(_with_slot_version(data, 0, 4), 1, 4)
    with pytest.raises(UnsupportedVersionError, match="version 4"):
        open_bytes(both)
    # version 3 (packs) is read: both of layered's commits reference a pack
    assert [slot_of(data, no).version for no in (0, 1)] == [PACKED_FORMAT_VERSION] * 2
    box = open_bytes(data)
    assert files_of(box) == GEN3 and box.verify().ok
    # one slot at version 4 is enough to refuse, even with a valid version-3 slot (§3)
    for no in (0, 1):
        with pytest.raises(UnsupportedVersionError, match="version 4"):
            open_bytes(_with_slot_version(data, no, 4))
    fresh = make_archive().read_bytes()  # one slot only
    with pytest.raises(UnsupportedVersionError):
        open_bytes(_with_slot_version(fresh, 1, 0xFFFF))


def test_unknown_commit_record_version(layered, make_archive):
    _, data = layered
    key = open_bytes(data)._content_key

    def v9(c: CommitRecord) -> bytes:
        return b"\x09" + encode_commit(c)[1:]

    both = reseal_commit(reseal_commit(data, 0, key, v9), 1, key, v9)
    with pytest.raises(UnsupportedVersionError):
        open_bytes(both)
    path = make_archive()
    fresh = path.read_bytes()
    with lockbox.open(path, password="pw") as box:
        key = box.content_key
    with pytest.raises(UnsupportedVersionError):
        open_bytes(reseal_commit(fresh, 1, key, v9))


@pytest.mark.parametrize("content", [
    b"", b"L", b"LBOX", b"hello world\n" * 3, b"PK\x03\x04" + bytes(30000),
    bytes(SUPERBLOCK_SIZE), bytes(100), random.Random(0).randbytes(50000),
])
def test_not_a_lockbox_file(tmp_path, content):
    with pytest.raises(FormatError, match="not a lockbox archive"):
        open_bytes(content)
    p = tmp_path / "foreign.bin"
    p.write_bytes(content)
    with pytest.raises(FormatError, match="not a lockbox archive"):
        lockbox.open(p, password="pw")
