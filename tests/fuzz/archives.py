"""Small real archives for the end-to-end fuzz tests, and a map of their structure.

:func:`build_archives` writes (deterministically: a seeded ``random_bytes``) a
three-generation archive with every entry type and layout (small files packed in PACK
frames: format version 3) and env values, and
an archive whose key directory lives in a KEYDIR page (a password and four
recipients). :func:`structure_fields` lists every cleartext field of an archive
file — slot headers, key directories, commit-frame headers, page headers, frame
headers, ciphertexts and tags, paddings — with the keyless CRC that covers it.
:class:`Forger` re-seals a frame with a changed plaintext and fixes every ref
up to the slot, as a key holder could: that reaches the decoders behind the
AEAD (commit record, inline roots, entries, chunks, indexes, nodes).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lockbox
from lockbox.formats.lbox.frames import session_key
from lockbox.formats.lbox.keys import Argon2Params, Identity
from lockbox.formats.lbox.wire.chunk import decode_chunk, decode_index
from lockbox.formats.lbox.wire.commit import decode_commit
from lockbox.formats.lbox.wire.constants import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    SLOT_HEADER_SIZE,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
    TAG_SIZE,
    FrameKind,
    PageKind,
)
from lockbox.formats.lbox.wire.encoding import Reader, uvarint
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    LAYOUT_PACKED,
    MAX_ENTRY_SIZE,
    decode_entry,
)
from lockbox.formats.lbox.wire.frame import decode_frame_header, frame_aad, frame_nonce
from lockbox.formats.lbox.wire.keydir import decode_keydir
from lockbox.formats.lbox.wire.node import Internal, Leaf, decode_node
from lockbox.formats.lbox.wire.pack import pack_member_spans
from lockbox.formats.lbox.wire.page import decode_page_header
from lockbox.formats.lbox.wire.superblock import decode_slot
from lockbox.formats.lbox.write.space import decode_record
from lockbox.platform import default_codec, default_crypto
from lockbox.sources.memory import BytesSource

from . import strategies as S

__all__ = ["ArchiveCase", "build_archives", "structure_fields", "SField", "Forger",
           "DetCrypto", "PASSWORD", "ARGON2"]

PASSWORD = "pw"
ARGON2 = Argon2Params(1, 64)
MTIME = 1_600_000_000_123_456_789
_VALUE_LIMITS = {FrameKind.TOC_NODE: MAX_ENTRY_SIZE, FrameKind.ENV_NODE: 65536,
                 FrameKind.SPACE_NODE: 64}
# The kind of frame a FILE entry's refs name, by layout (2: a PACK frame, format version 3).
_CONTENT_KIND = {LAYOUT_CHUNKS: FrameKind.DATA_CHUNK, LAYOUT_INDEX: FrameKind.CHUNK_INDEX,
                 LAYOUT_PACKED: FrameKind.PACK}


class DetCrypto:
    """The platform crypto backend with a seeded ``random_bytes`` (reproducible archives)
    and a local cap on Argon2id cost (a reader MAY impose lower limits, §16): a fuzzed
    key directory must not make a test run Argon2id with gigabytes of memory."""

    def __init__(self, seed: bytes, max_memory_kib: int = 1024, max_time: int = 4) -> None:
        self._inner = default_crypto()
        self._seed = seed
        self._n = 0
        self.max_memory_kib = max_memory_kib
        self.max_time = max_time

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def random_bytes(self, size: int) -> bytes:
        self._n += 1
        return hashlib.shake_256(self._seed + self._n.to_bytes(8, "little")).digest(size)

    def argon2id(self, password: bytes, salt: bytes, *, time_cost: int, memory_kib: int,
                 parallelism: int, length: int) -> bytes:
        if memory_kib > self.max_memory_kib or time_cost > self.max_time:
            raise lockbox.WrongKeyError(
                f"Argon2id t={time_cost} m={memory_kib} KiB is over this reader's local limit")
        return self._inner.argon2id(password, salt, time_cost=time_cost, memory_kib=memory_kib,
                                    parallelism=parallelism, length=length)


def _content(seed: str, n: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(n)


@dataclass
class State:
    """What one generation holds: listing, file contents, env values."""

    listing: list[tuple[Any, ...]]
    files: dict[str, bytes]
    env: dict[str, bytes]


@dataclass
class ArchiveCase:
    name: str
    data: bytes = field(repr=False)
    states: dict[int, State] = field(repr=False)
    archive_id: bytes
    content_key: bytes
    newest: int
    archive_end: int
    fields: list[SField] = field(default_factory=list, repr=False)


def listing(box: lockbox.Lockbox) -> list[tuple[Any, ...]]:
    return [(e.path, e.type, e.mode, e.mtime_ns, e.size, e.target)
            for e in box.ls("", recursive=True)]


def _snapshot(path: Path, files: dict[str, bytes], env: dict[str, bytes],
              crypto: Any) -> tuple[int, State]:
    with lockbox.open(path, password=PASSWORD, crypto=crypto, cache=0) as box:
        state = State(listing(box), dict(files), dict(env))
        for p, data in files.items():
            assert box.read_bytes(p) == data
        assert dict(box.env_items()) == env
        assert box.verify().ok
        return box.generation, state


def build_archives(directory: Path) -> list[ArchiveCase]:
    out = []
    # 1. three generations: every entry type and layout, env values, a removal.
    crypto = DetCrypto(b"multi")
    path = directory / "multi.lbox"
    box = lockbox.create(path, password=PASSWORD, argon2=ARGON2, chunk_size=4096,
                         crypto=crypto)
    files = {
        "hello.txt": b"hello\n",
        "empty": b"",
        "docs/a.txt": b"The quick brown fox. " * 300,  # 2 chunks, compressible
        "docs/sub/big.bin": _content("big", 9 * 4096 + 100),  # 10 chunks: INDEX layout
    }
    env = {"TOKEN": b"s3cret", "EMPTY": b"", "na\u00efve": bytes(range(256))}
    states: dict[int, State] = {}
    with box.writer() as w:
        for p, data in files.items():
            w.add_bytes(p, data, mtime_ns=MTIME)
        w.symlink("docs/link", "a.txt", mtime_ns=MTIME)
        w.mkdir("emptydir", mtime_ns=MTIME)
        for k, v in env.items():
            w.env_set(k, v)
    box.close()
    g, s = _snapshot(path, files, env, crypto)
    states[g] = s
    box = lockbox.open(path, password=PASSWORD, crypto=crypto)
    with box.writer() as w:
        w.remove("hello.txt")
        w.add_bytes("docs/b.txt", b"bee" * 100, mtime_ns=MTIME + 1)
        w.add_bytes("docs/a.txt", b"replaced " * 50, mtime_ns=MTIME + 2)
        w.env_set("TOKEN", b"rotated")
        w.env_remove("EMPTY")
    box.close()
    files = {k: v for k, v in files.items() if k != "hello.txt"}
    files["docs/b.txt"] = b"bee" * 100
    files["docs/a.txt"] = b"replaced " * 50
    env = {"TOKEN": b"rotated", "na\u00efve": bytes(range(256))}
    g, s = _snapshot(path, files, env, crypto)
    states[g] = s
    out.append(_case("multi", path, states, crypto))

    # 2. an external key directory (a password and four recipients), two generations.
    crypto = DetCrypto(b"external")
    path = directory / "external.lbox"
    recipients = [Identity(hashlib.shake_256(bytes([i])).digest(64)).recipient(crypto)
                  for i in range(4)]
    box = lockbox.create(path, password=PASSWORD, recipients=recipients, argon2=ARGON2,
                         chunk_size=4096, crypto=crypto)
    box.close()
    g, s = _snapshot(path, {}, {}, crypto)
    states = {g: s}
    box = lockbox.open(path, password=PASSWORD, crypto=crypto)
    with box.writer() as w:
        w.add_bytes("x.txt", b"x" * 5000, mtime_ns=MTIME)
        w.env_set("K", b"v")
    box.close()
    g, s = _snapshot(path, {"x.txt": b"x" * 5000}, {"K": b"v"}, crypto)
    states[g] = s
    out.append(_case("external", path, states, crypto))
    return out


def _case(name: str, path: Path, states: dict[int, State], crypto: Any) -> ArchiveCase:
    data = path.read_bytes()
    with lockbox.open(path, password=PASSWORD, crypto=crypto) as box:
        view = box.view
        case = ArchiveCase(name, data, states, view.archive_id, box.content_key,
                           view.generation, view.commit.archive_end)
    case.fields = structure_fields(case)
    return case


# -- the structure map ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SField:
    """A field of the archive file; ``crc`` = (kind, offset) of the checksum covering it."""

    start: int
    end: int
    kind: str
    label: str
    crc: tuple[str, int] | None = None
    limit: int = S.U64


def _frame_fields(off: int, size: int, label: str, crc: bool = True) -> list[SField]:
    out = [SField(off + f.start, off + f.end, f.kind, f"{label}.header",
                  ("frame", off) if crc else None) for f in S.FRAME_HEADER_FIELDS]
    out.append(SField(off + FRAME_HEADER_SIZE, off + size - TAG_SIZE, "raw", f"{label}.sealed"))
    out.append(SField(off + size - TAG_SIZE, off + size, "raw", f"{label}.tag"))
    return out


def _keydir_fields(buf: bytes, base: int, label: str,
                   crc: tuple[str, int] | None) -> list[SField]:
    return [SField(f.start, f.end, f.kind, label, crc, f.limit)
            for f in S.trace_fields(decode_keydir, buf, base)]


def structure_fields(case: ArchiveCase) -> list[SField]:
    data = case.data
    out: list[SField] = []
    for no in (0, 1):
        base = no * SLOT_SIZE
        image = data[base:base + SLOT_SIZE]
        if image[:8] != b"LBOX\r\n\x1a\n":
            out.append(SField(base, base + SLOT_SIZE, "raw", f"slot{no}.empty"))
            continue
        slot = decode_slot(image, no)
        k, c = struct.unpack_from("<II", image, 40)
        crc = ("slot", base)
        for f in S.slot_fields(image, lambda b, o: []):
            if f.start >= SLOT_HEADER_SIZE and f.end <= SLOT_HEADER_SIZE + k and not (
                    image[11] & 1):
                continue
            out.append(SField(base + f.start, base + f.end, f.kind, f"slot{no}.field", crc))
        if isinstance(slot.keydir, bytes):
            out += _keydir_fields(slot.keydir, base + SLOT_HEADER_SIZE, f"slot{no}.keydir", crc)
        end = SLOT_HEADER_SIZE + k + c + 4
        out.append(SField(base + end, base + SLOT_SIZE, "raw", f"slot{no}.padding"))
    off = SUPERBLOCK_SIZE
    while off < min(len(data), case.archive_end):
        try:
            h = decode_page_header(data[off:off + PAGE_HEADER_SIZE])
        except lockbox.LockboxError:
            off += PAGE_UNIT
            continue
        crc = ("page", off)
        out += [SField(off + f.start, off + f.end, f.kind, f"page@{off}.header", crc)
                for f in S.PAGE_HEADER_FIELDS]
        label = f"page@{off}"
        if h.kind == PageKind.KEYDIR:
            out.append(SField(off + 32, off + 48, "raw", f"{label}.archive_id"))
            out += _keydir_fields(data[off + 48:off + h.used_size], off + 48,
                                  f"{label}.keydir", None)
        elif h.kind == PageKind.FRAMES:
            pos, end = off + PAGE_HEADER_SIZE, off + h.used_size
            while pos < end:
                if data[pos:pos + 4] != FRAME_MAGIC:
                    nxt = data.find(FRAME_MAGIC, pos, end)
                    out.append(SField(pos, nxt if nxt >= 0 else end, "raw", f"{label}.hole"))
                    if nxt < 0:
                        break
                    pos = nxt
                fh = decode_frame_header(data[pos:pos + FRAME_HEADER_SIZE])
                out += _frame_fields(pos, fh.frame_size, f"frame@{pos}:{fh.kind.name}")
                pos += fh.frame_size
        if h.used_size < h.page_size:
            out.append(SField(off + h.used_size, off + h.page_size, "raw", f"{label}.padding"))
        off += h.page_size
    if len(data) > case.archive_end:
        out.append(SField(case.archive_end, len(data), "raw", "past-end"))
    return out


# -- forging (a key holder's edits behind the AEAD) -------------------------------------------


@dataclass
class FrameInfo:
    offset: int
    kind: FrameKind
    plain: bytes  # the frame plaintext (codec byte, size, body)
    parent: int | None  # offset of the frame whose plaintext holds our ref (None: the slot)
    slot_base: int = 0


class Forger:
    """Every frame the newest commit references, its plaintext and its parent."""

    def __init__(self, case: ArchiveCase) -> None:
        self.case = case
        self.crypto = default_crypto()
        self.codec = default_codec()
        self.frames: dict[int, FrameInfo] = {}
        slots = []
        for no in (0, 1):
            try:
                slots.append(decode_slot(case.data[no * SLOT_SIZE:(no + 1) * SLOT_SIZE], no))
            except lockbox.LockboxError:
                pass
        slot = max(slots, key=lambda s: s.generation)
        off = slot.commit_frame_offset
        self.commit_offset = off
        self.slot_base = slot.slot_no * SLOT_SIZE
        plain = self._open(case.data, off)
        self.frames[off] = FrameInfo(off, FrameKind.COMMIT, plain, None, self.slot_base)
        commit = decode_commit(self._payload(plain))
        for kind, root in ((FrameKind.TOC_NODE, commit.toc), (FrameKind.ENV_NODE, commit.env),
                           (FrameKind.SPACE_NODE, commit.space)):
            if root is None or root.empty:
                continue
            if root.inline is not None:
                self._walk_node(kind, decode_node(root.inline, _VALUE_LIMITS[kind]), off)
            elif root.ref is not None:
                self._add(root.ref.frame_offset, kind, off)
        for ref in commit.root_leaves:
            self._add(ref.frame_offset, FrameKind.TOC_NODE, off)

    def _open(self, data: bytes, off: int) -> bytes:
        h = decode_frame_header(data[off:off + FRAME_HEADER_SIZE])
        aead = self.crypto.aead(session_key(self.crypto, self.case.content_key, h.session_id))
        sealed = data[off + FRAME_HEADER_SIZE:off + h.frame_size]
        return aead.open(frame_nonce(h.counter), sealed,
                         frame_aad(self.case.archive_id, data[off:off + FRAME_HEADER_SIZE], off))

    def _payload(self, plain: bytes) -> bytes:
        r = Reader(plain)
        codec = r.u8()
        size = r.uvarint()
        body = plain[r.pos:]
        return body if codec == 0 else self.codec.decompress(body, size)

    def _add(self, off: int, kind: FrameKind, parent: int) -> None:
        if off in self.frames:
            return
        plain = self._open(self.case.data, off)
        self.frames[off] = FrameInfo(off, kind, plain, parent)
        payload = self._payload(plain)
        if kind in _VALUE_LIMITS:
            self._walk_node(kind, decode_node(payload, _VALUE_LIMITS[kind]), off)
        elif kind == FrameKind.CHUNK_INDEX:
            for ref in decode_index(payload)[2]:
                self._add(ref.frame_offset, FrameKind.DATA_CHUNK, off)

    def _walk_node(self, kind: FrameKind, node: Any, parent: int) -> None:
        if isinstance(node, Internal):
            for c in node.children:
                self._add(c.ref.frame_offset, kind, parent)
        elif isinstance(node, Leaf) and kind == FrameKind.TOC_NODE:
            for v in node.values:
                e = decode_entry(v)
                child = _CONTENT_KIND[e.layout]
                for ref in e.refs:
                    self._add(ref.frame_offset, child, parent)

    def forgeable(self) -> list[int]:
        """Frames whose ancestors are all RAW plaintexts (a tag swap keeps their size)."""
        out = []
        for off, info in self.frames.items():
            p = info.parent
            ok = True
            while p is not None:
                if self.frames[p].plain[0] != 0:
                    ok = False
                    break
                p = self.frames[p].parent
            if ok:
                out.append(off)
        return sorted(out)

    def fields(self, off: int) -> list[S.Field]:
        """Fields of a frame's plaintext (plaintext offsets), as deep as RAW allows."""
        info = self.frames[off]
        plain = info.plain
        r = Reader(plain)
        out = [S.Field(0, 1, "u8")]
        r.u8()
        p = r.pos
        r.uvarint()
        out.append(S.Field(p, r.pos, "uvarint"))
        base = r.pos
        if plain[0] != 0:
            out.append(S.Field(base, len(plain), "raw"))
            return out
        payload = plain[base:]
        out += deep_fields(info.kind, payload, base)
        return out

    def forge(self, off: int, new_plain: bytes) -> bytes:
        """The archive with frame ``off`` re-sealed around ``new_plain`` (same length) and
        every parent's copy of its tag replaced, up to the slot (CRC fixed)."""
        data = bytearray(self.case.data)
        plain = new_plain
        while True:
            info = self.frames[off]
            old_tag = bytes(self._tag(data, off))
            new_tag = self._seal(data, off, plain)
            if info.parent is None:
                return S.fix_slot_crc(bytes(data), info.slot_base)
            parent = self.frames[info.parent]
            # once, or once per packed entry of a PACK frame (they all name it)
            assert parent.plain.count(old_tag) >= 1
            plain = parent.plain.replace(old_tag, new_tag)
            off = info.parent

    def _tag(self, data: bytearray, off: int) -> bytes:
        h = decode_frame_header(bytes(data[off:off + FRAME_HEADER_SIZE]))
        return bytes(data[off + h.frame_size - TAG_SIZE:off + h.frame_size])

    def _seal(self, data: bytearray, off: int, plain: bytes) -> bytes:
        header = bytes(data[off:off + FRAME_HEADER_SIZE])
        h = decode_frame_header(header)
        assert len(plain) + TAG_SIZE == h.sealed_size
        aead = self.crypto.aead(session_key(self.crypto, self.case.content_key, h.session_id))
        sealed = aead.seal(frame_nonce(h.counter), plain,
                           frame_aad(self.case.archive_id, header, off))
        data[off + FRAME_HEADER_SIZE:off + h.frame_size] = sealed
        return sealed[-TAG_SIZE:]


def _values(node_buf: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, value) of every value of a leaf encoding."""
    r = Reader(node_buf)
    if r.u8() != 1:
        return []
    r.u8()
    out = []
    for _ in range(r.uvarint()):
        r.uvarint()
        r.blob(1 << 20)
        n = r.uvarint()
        start = r.pos
        out.append((start, start + n, r.raw(n)))
    return out


def deep_fields(kind: FrameKind, payload: bytes, base: int) -> list[S.Field]:
    """Fields of a payload, including those of inline roots, entries and space records."""
    if kind == FrameKind.COMMIT:
        out = S.trace_fields(decode_commit, payload, base)
        c = decode_commit(payload)
        for tree, root in ((FrameKind.TOC_NODE, c.toc), (FrameKind.ENV_NODE, c.env),
                           (FrameKind.SPACE_NODE, c.space)):
            if root is not None and root.inline:
                at = payload.find(root.inline)
                if at >= 0:
                    out += deep_fields(tree, root.inline, base + at)
        return out
    if kind in _VALUE_LIMITS:
        out = S.trace_fields(lambda b: decode_node(b, _VALUE_LIMITS[kind]), payload, base)
        for start, _end, value in _values(payload):
            if kind == FrameKind.TOC_NODE and value:
                out += S.trace_fields(decode_entry, value, base + start)
            elif kind == FrameKind.SPACE_NODE and value and value[0] != 6:
                out += S.trace_fields(decode_record, value, base + start)
        return out
    if kind == FrameKind.DATA_CHUNK:
        return S.trace_fields(decode_chunk, payload, base)
    if kind == FrameKind.CHUNK_INDEX:
        return S.trace_fields(decode_index, payload, base)
    if kind == FrameKind.PACK:  # its header's varints, then each member as a chunk
        r = Reader(payload)
        out = [S.Field(base, base + len(uvarint(r.uvarint())), "uvarint")]
        for _ in range(len(pack_member_spans(payload))):
            p = r.pos
            r.uvarint()
            out.append(S.Field(base + p, base + r.pos, "uvarint"))
        for start, end in pack_member_spans(payload):
            out += S.trace_fields(decode_chunk, payload[start:end], base + start)
        return out
    return []


def source(data: bytes) -> BytesSource:
    return BytesSource(data)
