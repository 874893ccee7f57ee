"""Steps 1 to 3 of recovery (docs/FORMAT.md §15), and the completeness check: find the
keys, the newest commit that authenticates, and every authenticated frame, trusting
nothing but the AEAD. The package documentation (``recovery/__init__.py``) describes
the scan and its bounded work.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Sequence

from ....cache import PageCache
from ....codec.base import Codec as CodecBackend
from ....crypto.base import CryptoBackend
from ....drivers import Flow, Read, run_sync
from ....errors import FormatError, IntegrityError, LockboxError, UsageError, WrongKeyError
from ....ranges import ByteRange
from ....sources.base import RangeSource
from ..frames import FrameOpener
from ..keys import Argon2Params, Identity, Recipient, unlock
from ..view import ArchiveView
from ..wire.chunk import ChunkHeader, decode_chunk
from ..wire.commit import CommitRecord, decode_commit
from ..wire.constants import (
    FRAME_HEADER_SIZE,
    MAX_ENV_VALUE_SIZE,
    MAX_KEYDIR_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    SLOT_COUNT,
    SUPERBLOCK_SIZE,
    TAG_SIZE,
    FrameKind,
    PageKind,
)
from ..wire.entry import MAX_ENTRY_SIZE, decode_entry, key_path
from ..wire.frame import FrameHeader
from ..wire.keydir import KeySlot, PasswordSlot, RecipientSlot, decode_keydir
from ..wire.node import Leaf, decode_node
from ..wire.pack import decode_pack
from ..wire.superblock import ExternalKeydir, Slot
from .findings import (
    NOT_PACKED,
    FileGroup,
    Findings,
    Plan,
    group_shape,
    plan_of,
    read_batches,
    read_chunks_flow,
)
from .findings import Chunk as FoundChunk
from .lenient import (
    CANDIDATE_SIZE,
    FRAME_CANDIDATE,
    frame_header_at,
    keydir_page,
    page_header_at,
    read_slots,
)
from .rebuild import rebuild
from .report import SOURCE_COMMIT, RecoveryReport, SalvageResult
from .salvage import salvage

__all__ = ["RecoveryScanner", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 8 * 1024 * 1024
_FAIL_BUDGET_BASE = 16 * 1024 * 1024
_FAIL_BUDGET_FACTOR = 2
_MAX_OPEN_HASHERS = 1024  # groups hashed as they stream by (others: a second read)
_MAX_KEYDIR_CANDIDATES = 16  # KEYDIR page copies kept by the pre-pass (newest first)
_MAX_UNLOCK_ATTEMPTS = 64  # distinct key slots tried (each costs an Argon2id)
_VALUE_LIMIT = {FrameKind.TOC_NODE: MAX_ENTRY_SIZE, FrameKind.ENV_NODE: MAX_ENV_VALUE_SIZE}


class _Window:
    """A window over the source: ``buf`` (immutable bytes, as read) holds
    ``[base, base + len(buf))``. Moving it re-reads from the new start, so nothing is
    copied in memory; only the bytes of the one structure that straddled the old
    window's end are read twice. ``bytes_read`` counts each byte of the source once."""

    def __init__(self, start: int, size: int) -> None:
        self.buf = b""
        self.base = start
        self.size = size
        self.eof = False
        self.bytes_read = 0
        self._high = start  # end of everything read so far

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    def fill_flow(self, pos: int, need: int) -> Flow[None]:
        """Move the window to ``pos`` holding at least ``need`` bytes (fewer only at the
        end of the source)."""
        want = max(self.size, need)
        self.buf = b""  # let the old window go before the new one arrives
        blobs = yield Read((ByteRange(pos, want),))
        blob = blobs[0]
        self.buf = blob if isinstance(blob, bytes) else bytes(blob)
        self.base = pos
        end = pos + len(blob)
        if end > self._high:
            self.bytes_read += end - max(self._high, pos)
            self._high = end
        self.eof = len(blob) < want


def _align_up(n: int) -> int:
    return -(-n // PAGE_UNIT) * PAGE_UNIT


class RecoveryScanner:
    """Scan a (damaged) archive and rebuild what authenticates. See the module doc.

    ``scanner.scan(source)`` (or ``run_sync(scanner.scan_flow(), source)``) returns a
    :class:`RecoveryReport`; afterwards ``scanner.salvage(out_path, source)`` writes
    the complete files into a new archive. One scanner scans one archive.
    """

    def __init__(self, *, password: str | bytes | None = None,
                 identity: Identity | None = None, crypto: CryptoBackend | None = None,
                 codec: CodecBackend | None = None, window_bytes: int = DEFAULT_WINDOW,
                 max_unlock_attempts: int = _MAX_UNLOCK_ATTEMPTS) -> None:
        if password is None and identity is None:
            raise UsageError("recovery needs the archive's password or an identity")
        if window_bytes < PAGE_UNIT:
            raise UsageError("the scan window must be at least 4096 bytes")
        from ....platform import default_codec, default_crypto

        self.crypto = crypto or default_crypto()
        self.codec = codec or default_codec()
        self.password = password
        self.identity = identity
        self.window_bytes = window_bytes
        self.max_unlock_attempts = max_unlock_attempts
        self.report: RecoveryReport | None = None
        self.findings = Findings()
        self._opener: FrameOpener | None = None
        self._unlocked_by: KeySlot | None = None
        self._tried: set[tuple[bytes, int, int, bytes]] = set()
        self._open_hashers = 0
        self._collect_toc = True
        self._collect_env = True
        self._fail_spent = 0

    # -- driving -------------------------------------------------------------------

    def scan(self, source: RangeSource) -> RecoveryReport:
        """Run the scan on a sync source."""
        return run_sync(self.scan_flow(), source)

    def scan_flow(self) -> Flow[RecoveryReport]:
        if self.report is not None:
            raise UsageError("this scanner has already scanned an archive")
        started = time.monotonic()
        report = RecoveryReport()
        blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
        slots = read_slots(bytes(blobs[0]))  # newest first; damaged ones read leniently
        yield from self._unlock_flow(slots, report)
        opener = self._opener
        assert opener is not None
        report.archive_id = opener.archive_id.hex()
        view = self._newest_commit(slots, report)
        if view is not None:
            yield from self._commit_trees_flow(view, report)
        yield from self._scan_frames_flow(report)
        yield from self._verify_groups_flow()
        rebuild(self.findings, report)
        report.seconds = time.monotonic() - started
        self.report = report
        return report

    @property
    def opener(self) -> FrameOpener:
        """Opens the archive's frames (once the keys are found)."""
        if self._opener is None:
            raise UsageError("the archive's keys are not known yet: scan it first")
        return self._opener

    @property
    def unlocked_by(self) -> KeySlot | None:
        """The key slot that opened the archive."""
        return self._unlocked_by

    def salvage(self, out_path: str | os.PathLike[str], source: RangeSource, *,
                password: str | bytes | None = None, identity: Identity | None = None,
                recipients: Sequence[Recipient] = (), argon2: Argon2Params | None = None,
                chunk_size: int | None = None) -> SalvageResult:
        """Write every complete file, the directories, symlinks and env values into a
        new archive at ``out_path`` (which must not exist).

        The new archive gets a password slot for ``password`` (default: the password
        this scanner was given) with ``argon2`` (default: the parameters of the slot
        that opened the damaged archive), and a recipient slot for ``identity``
        (default: this scanner's identity) and for each of ``recipients``. Every chunk
        is read again and authenticated against the tag the scan saw."""
        return salvage(self, out_path, source, password=password, identity=identity,
                       recipients=recipients, argon2=argon2, chunk_size=chunk_size)

    # -- step 1: keys --------------------------------------------------------------

    def _try_keydir(self, archive_id: bytes, keydir: bytes) -> bool:
        try:
            key_slots = decode_keydir(keydir)
        except LockboxError:
            return False
        for s in key_slots:
            if isinstance(s, PasswordSlot):
                if self.password is None:
                    continue
            elif isinstance(s, RecipientSlot):
                if self.identity is None:
                    continue
            else:
                continue
            mark = (archive_id, int(s.kind), s.slot_id, s.body())
            if mark in self._tried or len(self._tried) >= self.max_unlock_attempts:
                continue
            self._tried.add(mark)
            try:
                content_key, _ = unlock(self.crypto, archive_id, [s], password=self.password,
                                        identity=self.identity)
            except (WrongKeyError, FormatError):
                continue
            self._opener = FrameOpener(self.crypto, self.codec, archive_id, content_key)
            self._unlocked_by = s
            return True
        return False

    def _unlock_flow(self, slots: list[Slot], report: RecoveryReport) -> Flow[None]:
        for s in slots:
            kd = s.keydir
            if isinstance(kd, ExternalKeydir):
                if kd.keydir_size > MAX_KEYDIR_SIZE or kd.page_offset < SUPERBLOCK_SIZE:
                    continue
                blobs = yield Read((ByteRange(kd.page_offset,
                                              PAGE_HEADER_SIZE + 16 + kd.keydir_size),))
                page = keydir_page(blobs[0])
                if page is None:
                    continue
                page_id, data = page
                ids = [s.archive_id] + ([page_id] if page_id != s.archive_id else [])
                for archive_id in ids:
                    if self._try_keydir(archive_id, data):
                        report.key_source = f"slot {s.slot_no} (key directory page at " \
                                            f"{kd.page_offset})"
                        return
            elif self._try_keydir(s.archive_id, kd):
                report.key_source = f"slot {s.slot_no}"
                return
        # No slot opens: the KEYDIR page copies (one pre-pass over the page headers).
        found: list[tuple[int, int, bytes, bytes]] = []  # (generation, offset, id, keydir)
        seen: set[tuple[bytes, bytes]] = set()
        frames_pages = 0
        win = _Window(SUPERBLOCK_SIZE, self.window_bytes)
        a = SUPERBLOCK_SIZE
        while True:
            buf, base, end = win.buf, win.base, win.end
            if a + PAGE_HEADER_SIZE > end:
                if win.eof and a >= base:
                    break  # the source ended
                yield from win.fill_flow(a, PAGE_HEADER_SIZE)
                if a + PAGE_HEADER_SIZE > win.end:
                    break
                continue
            j = a - base
            h = page_header_at(buf, j)
            if h is not None and h.kind == PageKind.FRAMES:
                frames_pages += 1
            elif h is not None and h.kind == PageKind.KEYDIR and \
                    h.used_size <= PAGE_HEADER_SIZE + 16 + MAX_KEYDIR_SIZE:
                if a + h.used_size > end and not win.eof:
                    yield from win.fill_flow(a, h.used_size)
                    continue  # look at this page again, whole
                page = keydir_page(buf[j:j + h.used_size])
                if page is not None and page[1] and page not in seen:
                    seen.add(page)
                    heapq.heappush(found, (h.generation, a, page[0], page[1]))
                    if len(found) > _MAX_KEYDIR_CANDIDATES:
                        heapq.heappop(found)  # keep the newest copies
            a += PAGE_UNIT
        report.bytes_scanned += win.bytes_read
        for gen, offset, page_id, data in sorted(found, reverse=True):
            if self._try_keydir(page_id, data):
                report.key_source = f"key directory page at {offset} (generation {gen})"
                return
        if self._tried:
            raise WrongKeyError("no surviving copy of the key directory opens with this "
                                "password or identity (a wrong secret, or every copy of "
                                "its key slot is damaged)")
        if found:
            raise WrongKeyError("the surviving key directories have no slot for this kind "
                                "of secret (password or identity)")
        if slots or frames_pages:
            raise IntegrityError("the key directory is lost (no superblock slot or "
                                 "key-directory page survives): the archive cannot be "
                                 "decrypted")
        raise FormatError("not a lockbox archive (no superblock slot and no "
                          "key-directory page found)")

    # -- the commit and its trees -------------------------------------------------------

    def _newest_commit(self, slots: list[Slot], report: RecoveryReport) -> ArchiveView | None:
        opener = self.opener
        best: tuple[CommitRecord, Slot] | None = None
        opened = 0
        for s in slots:
            try:
                header, payload = opener.open_at(s.commit_frame, s.commit_frame_offset,
                                                 FrameKind.COMMIT)
                if header.frame_size != len(s.commit_frame):
                    continue
                commit = decode_commit(bytes(payload))
            except LockboxError:
                continue
            if commit.generation != header.generation or commit.generation % 2 != s.slot_no:
                continue
            opened += 1
            if best is None or commit.generation > best[0].generation:
                best = (commit, s)
        if best is None:
            report.problems.append("no commit record authenticates (both superblock slots "
                                   "are damaged or lost)")
            return None
        commit, s = best
        self.findings.commit = commit
        # With one slot lost, the lost one may have held a *newer* commit.
        self.findings.newer_possible = opened < SLOT_COUNT
        report.commit_generation = commit.generation
        slot = Slot(s.slot_no, opener.archive_id, commit.generation, s.keydir, s.commit_frame)
        return ArchiveView(opener, slot, commit, [], 0, b"", PageCache(16 * 1024 * 1024))

    def _commit_trees_flow(self, view: ArchiveView, report: RecoveryReport) -> Flow[None]:
        commit = view.commit
        try:
            leaves = yield from view.iter_leaves_flow(FrameKind.TOC_NODE, commit.toc)
            plans: dict[str, Plan] = {}
            for leaf in leaves:
                for k, v in zip(leaf.keys, leaf.values):
                    path = key_path(k)
                    plans[path] = plan_of(path, decode_entry(v), SOURCE_COMMIT,
                                          commit.generation)
            if sum(leaf.count for leaf in leaves) != commit.toc.count:
                raise IntegrityError("TOC entry count differs from the commit record")
        except LockboxError as e:
            report.problems.append(f"the commit's TOC is damaged ({e}); rebuilding it")
        else:
            self.findings.plans = plans
            self._collect_toc = False
            report.toc_source = "commit"
        try:
            items = yield from view.env_items_flow()
        except LockboxError as e:
            report.problems.append(f"the commit's env tree is damaged ({e}); rebuilding it")
        else:
            self.findings.env = dict(items)
            self._collect_env = False
            report.env_source = "commit"

    # -- step 2: the frame scan ---------------------------------------------------------

    def _scan_frames_flow(self, report: RecoveryReport) -> Flow[None]:
        opener = self.opener
        win = _Window(SUPERBLOCK_SIZE, self.window_bytes)
        start = p = SUPERBLOCK_SIZE
        search = FRAME_CANDIDATE.search
        buf, base, end = win.buf, win.base, win.end
        mv = memoryview(buf)
        refill = 0  # > 0: move the window to p, holding at least this many bytes
        while True:
            if refill or p + CANDIDATE_SIZE > end:
                if win.eof and not refill and p >= base:
                    break
                yield from win.fill_flow(p, max(refill, PAGE_UNIT))
                buf, base, end = win.buf, win.base, win.end
                mv = memoryview(buf)
                refill = 0
                if p + CANDIDATE_SIZE > end:
                    break  # the source ended
            m = search(buf, p - base)
            f = base + m.start() if m is not None else end
            # Page headers at aligned offsets before the candidate. Only FREE pages are
            # stepped over (§4: a redacted page holds nothing); every other header is
            # merely counted: a header never decides where *not* to look.
            a = _align_up(p)
            jumped = False
            while a < f and a + PAGE_HEADER_SIZE <= end:
                h = page_header_at(buf, a - base)
                if h is not None:
                    report.pages_seen += 1
                    if h.kind == PageKind.FREE:
                        p, jumped = a + h.page_size, True
                        break
                    if h.kind == PageKind.KEYDIR:
                        report.keydir_pages += 1  # searched like the rest: cleartext
                a += PAGE_UNIT
            if jumped:
                continue
            if m is None:
                if win.eof:
                    break
                # A candidate (or a page header) may straddle the window's end.
                p = max(p, min(end - CANDIDATE_SIZE + 1, a))
                refill = PAGE_UNIT
                continue
            i = f - base
            if f + FRAME_HEADER_SIZE > end:
                if win.eof:
                    p = f + 1
                else:
                    p, refill = f, FRAME_HEADER_SIZE
                continue
            header = frame_header_at(mv, i)
            if header is None:  # a chance match or a damaged header: search on
                p = f + 1
                continue
            size = header.frame_size
            if f + size > end:
                if not win.eof:
                    p, refill = f, size  # move the window so that the frame fits
                    continue
                report.frames_rejected += 1  # cut off by the end of the file
                p = f + 1
                continue
            blob = mv[i:i + size]  # no copy: the window is immutable bytes
            try:
                fh, payload = opener.open_at(blob, f, None)
            except LockboxError:
                report.frames_rejected += 1
                self._fail_spent += size
                budget = _FAIL_BUDGET_BASE + _FAIL_BUDGET_FACTOR * (f - start)
                p = f + 1 if self._fail_spent <= budget else f + size
                continue
            report.frames_authenticated += 1
            try:
                self._classify(fh, payload, f, size, bytes(blob[-TAG_SIZE:]))
            except LockboxError as e:
                report.problems.append(f"frame at {f} authenticates but does not decode: {e}")
            p = f + size
        report.bytes_scanned += win.bytes_read

    def _classify(self, h: FrameHeader, payload: bytes | memoryview, offset: int, size: int,
                  tag: bytes) -> None:
        kind = h.kind
        if kind == FrameKind.DATA_CHUNK:
            ch, data = decode_chunk(payload)
            self._add_chunk(h.generation, ch, data, (offset, size, tag, len(data), NOT_PACKED))
        elif kind == FrameKind.PACK:
            # Each member is the last (only) chunk of a one-chunk file (§15); one that
            # does not decode costs only itself.
            bad = []
            for member_no, member in enumerate(decode_pack(payload)):
                try:
                    ch, data = decode_chunk(member)
                except LockboxError as e:
                    bad.append(f"member {member_no}: {e}")
                    continue
                self._add_chunk(h.generation, ch, data, (offset, size, tag, len(data),
                                                         member_no))
            if bad:
                raise FormatError("; ".join(bad))
        elif kind in (FrameKind.TOC_NODE, FrameKind.ENV_NODE):
            toc = kind == FrameKind.TOC_NODE
            if not (self._collect_toc if toc else self._collect_env):
                return
            node = decode_node(bytes(payload), _VALUE_LIMIT[kind])
            if not isinstance(node, Leaf) or not node.keys:
                return
            found = self.findings
            best = found.toc_best if toc else found.env_best
            spans = found.toc_spans if toc else found.env_spans
            gen = h.generation
            spans.append((node.keys[0], node.keys[-1], gen))
            for k, v in zip(node.keys, node.values):
                cur = best.get(k)
                if cur is None or gen > cur[0]:
                    best[k] = (gen, v)
        # CHUNK_INDEX and SPACE_NODE frames are not needed: chunks name their file.

    def _add_chunk(self, generation: int, ch: ChunkHeader, data: memoryview | bytes,
                   found: FoundChunk) -> None:
        """A chunk (of a DATA_CHUNK frame, or a pack member) joins its file's group."""
        groups = self.findings.groups
        g = groups.get(ch.file_id)
        if g is None:
            g = groups[ch.file_id] = FileGroup(ch.file_id, ch.path)
            if ch.chunk_no == 0 and self._open_hashers < _MAX_OPEN_HASHERS:
                g.hasher = self.crypto.blake3()
                self._open_hashers += 1
        if ch.chunk_no in g.chunks:
            return  # a second copy of a chunk cannot be genuine; keep the first
        g.chunks[ch.chunk_no] = found
        g.generation = max(g.generation, generation)
        if ch.meta is not None and g.meta is None:
            g.meta = ch.meta
            g.path = ch.path
            g.generation = generation
        if g.hasher is not None:
            if ch.chunk_no == g.next_no:
                g.hasher.update(data)
                g.next_no += 1
                if ch.meta is not None:
                    g.digest = g.hasher.digest()
                    g.hasher = None
                    self._open_hashers -= 1
            else:  # out of order: checked by a second read after the scan
                g.hasher = None
                self._open_hashers -= 1

    # -- completeness ---------------------------------------------------------------------

    def _verify_groups_flow(self) -> Flow[None]:
        """Decide every group's completeness; hash by a second read the groups whose
        chunks did not stream by in order."""
        opener = self.opener
        for g in self.findings.groups.values():
            shape = group_shape(g)
            if shape is None:
                g.verified = False
                continue
            assert g.meta is not None
            if g.digest is not None:
                g.verified = g.digest == g.meta.content_hash
                continue
            hasher = self.crypto.blake3()
            try:
                for a, b in read_batches(g, shape[0]):
                    for data in (yield from read_chunks_flow(opener, g, a, b, shape)):
                        hasher.update(data)
            except LockboxError:
                g.verified = False
                continue
            g.verified = hasher.digest() == g.meta.content_hash
