"""One :class:`Target` per decoder: how to build valid cases, encode, decode,
compare and re-check them. Shared by ``test_decoders`` and ``bench/fuzz_atheris.py``.

A decoder's contract, checked for every target on valid and mutated input:

* valid: ``decode(encode(x)) == x``, and the encoding is canonical where the
  format says it is (re-encoding the decoded value gives the same bytes);
* anything else: either a ``lockbox.errors`` FormatError / IntegrityError
  subclass, or a value that re-encodes consistently (``decode(encode(y)) == y``,
  and for canonical structures ``encode(y)`` is exactly the bytes decoded).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from lockbox.errors import FormatError, IntegrityError
from lockbox.formats.lbox.frames import (
    PLAIN_LIMITS,
    FrameOpener,
    FrameSealer,
    decode_plain,
    encode_plain,
)
from lockbox.formats.lbox.keys import Identity, Recipient
from lockbox.formats.lbox.wire.chunk import decode_chunk, decode_index, encode_chunk, encode_index
from lockbox.formats.lbox.wire.commit import decode_commit, encode_commit
from lockbox.formats.lbox.wire.constants import (
    MAX_ENV_VALUE_SIZE,
    MAX_SYMLINK_SIZE,
    SLOT_HEADER_SIZE,
    SLOT_SIZE,
    FrameKind,
)
from lockbox.formats.lbox.wire.encoding import Reader, svarint, uvarint
from lockbox.formats.lbox.wire.entry import MAX_ENTRY_SIZE, decode_entry, encode_entry, key_path
from lockbox.formats.lbox.wire.frame import decode_frame_header, encode_frame_header
from lockbox.formats.lbox.wire.keydir import (
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    decode_keydir,
    encode_keydir,
)
from lockbox.formats.lbox.wire.node import Leaf, decode_node, encode_node
from lockbox.formats.lbox.wire.page import (
    PageHeader,
    decode_keydir_page,
    decode_page_header,
    encode_keydir_page,
    encode_page_header,
)
from lockbox.formats.lbox.wire.superblock import decode_slot, decode_superblock, encode_slot
from lockbox.formats.lbox.write.space import SpaceMap, decode_record, encode_record
from lockbox.platform import default_codec, default_crypto

from . import strategies as S

__all__ = ["Case", "Target", "TARGETS", "BY_NAME", "CODEC", "CRYPTO", "keydir_fields", "check",
           "ContractViolation", "SEALED_OFFSET", "OPENED", "sealer"]

CRYPTO = default_crypto()
CODEC = default_codec()
ARCHIVE_ID = bytes(range(16))
CONTENT_KEY = bytes(range(32, 64))
SESSION_ID = bytes(range(64, 80))


@dataclass
class Case:
    """One valid example: the value, its encoding, and the decoding context."""

    value: Any
    data: bytes
    ctx: Any = None


@dataclass
class Target:
    name: str
    cases: st.SearchStrategy[Case]
    decode: Callable[[bytes, Any], Any]
    encode: Callable[[Any, Any], bytes]
    eq: Callable[[Any, Any], bool] = lambda a, b: a == b
    # bytes of an encoding that re-encoding must reproduce exactly (None: not canonical)
    canonical: Callable[[bytes, Any], bytes] | None = lambda data, value: data
    # every strict prefix of a valid encoding must be refused
    prefix_free: bool = True
    fix: Callable[[bytes], bytes] | None = None
    fields: Callable[[bytes, Any], list[S.Field]] | None = None
    # what a decoded value must satisfy beyond re-encoding: extra(value, data, ctx)
    extra: Callable[[Any, bytes, Any], None] | None = None
    donors: int = 2
    tags: set[str] = field(default_factory=set)
    # the decoding context as a small number and back (the atheris harness encodes it in
    # its selector byte): ctx_of(ctx_code(case.ctx)) == case.ctx
    ctx_code: Callable[[Any], int] = lambda ctx: 0
    ctx_of: Callable[[int], Any] = lambda code: None

    def traced(self, data: bytes, ctx: Any) -> list[S.Field]:
        if self.fields is not None:
            return self.fields(data, ctx)
        return S.trace_fields(lambda b: self.decode(b, ctx), data)


def _case(values: st.SearchStrategy[Any], encode: Callable[[Any], bytes],
          ctx: Callable[[Any], Any] = lambda v: None) -> st.SearchStrategy[Case]:
    return values.map(lambda v: Case(v, encode(v), ctx(v)))


def _reader_decode(fn: Callable[[Reader], Any]) -> Callable[[bytes, Any], Any]:
    def decode(buf: bytes, ctx: Any) -> Any:
        r = Reader(buf, "fuzz")
        v = fn(r)
        r.done()
        return v
    return decode


# -- key directory helpers ----------------------------------------------------------------


def _slot_key(s: Any) -> tuple[Any, ...]:
    if isinstance(s, UnusableSlot):
        return ("unusable", s.slot_id, s.kind_code, s.raw_body)
    return (type(s).__name__, s.slot_id, int(s.kind), s.body())


def keydir_eq(a: list[Any], b: list[Any]) -> bool:
    return [_slot_key(s) for s in a] == [_slot_key(s) for s in b]


def keydir_fields(buf: bytes, base: int = 0) -> list[S.Field]:
    return S.trace_fields(decode_keydir, buf, base)


def _check_slots(slots: list[Any], data: bytes, ctx: Any) -> None:
    for s in slots:
        if isinstance(s, PasswordSlot):
            assert len(s.salt) == 16 and len(s.wrapped_key) == 48 and s.parallelism == 1
        elif isinstance(s, RecipientSlot):
            assert len(s.kem_ciphertext) == 1568 and len(s.wrapped_key) == 48


# -- tree helpers -------------------------------------------------------------------------


def _decode_toc_leaf(buf: bytes, ctx: Any) -> Any:
    node = decode_node(buf, MAX_ENTRY_SIZE)
    if isinstance(node, Leaf):
        for k, v in zip(node.keys, node.values):
            key_path(k)
            decode_entry(v)
    return node


def _check_toc_paths(node: Any, data: bytes, ctx: Any) -> None:
    if isinstance(node, Leaf):
        for k in node.keys:
            p = key_path(k)
            parts = p.split("/")
            assert all(c not in ("", ".", "..") for c in parts), p
            assert not p.startswith("/") and "\x00" not in p


def _decode_env_leaf(buf: bytes, ctx: Any) -> Any:
    node = decode_node(buf, MAX_ENV_VALUE_SIZE)
    if isinstance(node, Leaf):
        for k in node.keys:  # what the reader does with env names (view.env_items_flow)
            try:
                k.decode()
            except UnicodeDecodeError:
                raise FormatError("env tree: a name is not UTF-8") from None
    return node


def _space_map_of(node: Any) -> Any:
    if not isinstance(node, Leaf):
        return node
    return SpaceMap.from_items(zip(node.keys, node.values))


def _space_map_key(m: Any) -> Any:
    if not isinstance(m, SpaceMap):
        return m
    return (m.tail_start, {o: (r.kind, r.size, r.live) for o, r in m.pages.items()}, m.dead,
            {o: (r.frame_size, r.entries) for o, r in m.packs.items()})


def _decode_space_leaf(buf: bytes, ctx: Any) -> Any:
    node = decode_node(buf, 64)
    return node, _space_map_of(node)


def _encode_space_leaf(value: Any, ctx: Any) -> bytes:
    node = value[0] if isinstance(value, tuple) else value
    return encode_node(node)


def _space_eq(a: Any, b: Any) -> bool:
    na = a[0] if isinstance(a, tuple) else a
    nb = b[0] if isinstance(b, tuple) else b
    ma = a[1] if isinstance(a, tuple) else _space_map_of(a)
    mb = b[1] if isinstance(b, tuple) else _space_map_of(b)
    return bool(na == nb and _space_map_key(ma) == _space_map_key(mb))


# -- superblock helpers -------------------------------------------------------------------


def _superblock_image(pair: tuple[Any, Any]) -> bytes:
    s0, s1 = pair
    a = encode_slot(s0) if s0 is not None else bytes(SLOT_SIZE)
    b = encode_slot(s1) if s1 is not None else bytes(SLOT_SIZE)
    return a + b


def _superblock_eq(decoded: Any, pair: Any) -> bool:
    if isinstance(pair, tuple):
        want = sorted((s for s in pair if s is not None), key=lambda s: -s.generation)
    else:
        want = pair
    return list(decoded) == list(want)


def _encode_superblock(value: Any, ctx: Any) -> bytes:
    if isinstance(value, tuple):
        return _superblock_image(value)
    image = bytearray(2 * SLOT_SIZE)
    for s in value:
        image[s.slot_no * SLOT_SIZE:(s.slot_no + 1) * SLOT_SIZE] = encode_slot(s)
    return bytes(image)


def _superblock_fields(data: bytes, ctx: Any) -> list[S.Field]:
    out: list[S.Field] = []
    for no in (0, 1):
        image = data[no * SLOT_SIZE:(no + 1) * SLOT_SIZE]
        if image[:8] == b"LBOX\r\n\x1a\n":
            out += [S.Field(f.start + no * SLOT_SIZE, f.end + no * SLOT_SIZE, f.kind, f.limit)
                    for f in S.slot_fields(image, keydir_fields)]
    return out


def _fix_superblock(data: bytes) -> bytes:
    return S.fix_slot_crc(S.fix_slot_crc(data, 0), SLOT_SIZE)


def _slot_used(data: bytes, value: Any) -> bytes:
    k, c = struct.unpack_from("<II", data, 40)
    return data[:SLOT_HEADER_SIZE + k + c + 4]


# -- frames -------------------------------------------------------------------------------


class _FixedSession:
    """The platform crypto with a fixed session id: deterministic sealed frames."""

    def __getattr__(self, name: str) -> Any:
        return getattr(CRYPTO, name)

    def random_bytes(self, size: int) -> bytes:
        return SESSION_ID[:size]


def sealer() -> FrameSealer:
    """A write session of the fuzz archive key (archive id, content key, session id fixed)."""
    return FrameSealer(_FixedSession(), CODEC, ARCHIVE_ID, CONTENT_KEY)  # type: ignore[arg-type]


_OPENER = FrameOpener(CRYPTO, CODEC, ARCHIVE_ID, CONTENT_KEY)
SEALED_OFFSET = 16384


@st.composite
def _sealed_cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(list(FrameKind)))
    payload = draw(S.payloads())
    offset = draw(st.integers(16384, 1 << 40))
    s = sealer()
    s.counter = draw(S.uvarints())
    plain = encode_plain(CODEC, payload, 3, compress=draw(st.booleans()))
    frame, ref = s.seal(kind, draw(S.uvarints()), offset, plain)
    use_ref = draw(st.booleans())
    return Case(payload, frame, (kind, offset, ref if use_ref else None))


def _open_sealed(buf: bytes, ctx: Any) -> bytes:
    kind, offset, ref = ctx
    if ref is not None:
        return bytes(_OPENER.open_ref(buf, ref, kind))
    return bytes(_OPENER.open_at(buf, offset, kind)[1])


def _sealed_fields(data: bytes, ctx: Any) -> list[S.Field]:
    return [*S.FRAME_HEADER_FIELDS, S.Field(48, len(data) - 16, "raw"),
            S.Field(len(data) - 16, len(data), "raw")]


_LIMITS = sorted(set(PLAIN_LIMITS.values()))


@st.composite
def _plain_cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(list(FrameKind)))
    payload = draw(S.payloads())
    plain = encode_plain(CODEC, payload, draw(st.sampled_from([1, 3, 19])),
                         compress=draw(st.booleans()))
    return Case(payload, plain, PLAIN_LIMITS[kind])


def _plain_extra(payload: bytes, data: bytes, limit: int) -> None:
    assert len(payload) <= limit
    declared = Reader(data[1:]).uvarint()
    assert len(payload) == declared


def _plain_fields(data: bytes, ctx: Any) -> list[S.Field]:
    fields = S.trace_fields(lambda b: decode_plain(CODEC, b, ctx), data)
    if data[:1] == b"\x01":  # the zstd frame: magic, descriptor, window, content size...
        pos = max(f.end for f in fields)
        fields += [S.Field(pos, pos + 4, "raw"), S.Field(pos + 4, pos + 5, "u8"),
                   S.Field(pos + 5, pos + 6, "u8"), S.Field(pos + 6, len(data), "raw")]
    return [f for f in fields if f.end <= len(data)]


# -- identity / recipient texts -----------------------------------------------------------


@st.composite
def _identity_cases(draw: st.DrawFn) -> Case:
    ident = Identity(draw(st.binary(min_size=64, max_size=64)))
    text = ident.encode()
    if draw(st.booleans()):
        text = f"# created: 2024\n# public key: lockbox-recipient-1:xyz\n  {text}  \n"
    return Case(ident, text.encode())


def _decode_identity(buf: bytes, ctx: Any) -> Identity:
    try:
        text = buf.decode()
    except UnicodeDecodeError:
        raise FormatError("not UTF-8") from None  # the CLI reads identity files as text
    return Identity.decode(text)


def _identity_canonical(decoded: Identity, buf: bytes, ctx: Any) -> None:
    line = next(ln.strip() for ln in buf.decode().splitlines()
                if ln.strip().startswith("LOCKBOX-IDENTITY-1:"))
    assert line == decoded.encode(), "a non-canonical identity text was accepted"


@st.composite
def _recipient_cases(draw: st.DrawFn) -> Case:
    seed = draw(st.binary(min_size=1, max_size=8))
    r = Recipient(hashlib.shake_256(seed).digest(1568))
    text = r.encode()
    if draw(st.booleans()):
        text = f"  {text}\n"
    return Case(r, text.encode())


def _recipient_canonical(decoded: Recipient, buf: bytes, ctx: Any) -> None:
    assert buf.decode().strip() == decoded.encode(), "a non-canonical recipient was accepted"


def _decode_recipient(buf: bytes, ctx: Any) -> Recipient:
    try:
        text = buf.decode()
    except UnicodeDecodeError:
        raise FormatError("not UTF-8") from None
    return Recipient.decode(text)


def _text_fields(data: bytes, ctx: Any) -> list[S.Field]:
    """The prefix, the base64 text and its last character (the one with unused bits)."""
    p = max(data.find(b"LOCKBOX-IDENTITY-1:"), data.rfind(b"lockbox-recipient-1:"))
    i = data.find(b":", max(p, 0)) + 1
    j = i
    while j < len(data) and data[j:j + 1] not in b" \n":
        j += 1
    fields = [S.Field(max(0, p), i, "raw"), S.Field(i, j, "raw"), S.Field(j - 1, j, "raw")]
    return [f for f in fields if f.start < f.end]


# -- KEYDIR pages -------------------------------------------------------------------------

_keydir_page_values = st.tuples(st.binary(min_size=16, max_size=16),
                                S.keydirs(3).map(encode_keydir), S.uvarints())


def _keydir_page_norm(v: Any) -> tuple[bytes, bytes, int]:
    if isinstance(v[0], PageHeader):  # decoded: (header, archive id, key directory)
        return v[1], v[2], v[0].generation
    return v[0], v[1], v[2]


def _encode_keydir_page(v: Any, ctx: Any) -> bytes:
    return encode_keydir_page(*_keydir_page_norm(v))


def _keydir_page_eq(a: Any, b: Any) -> bool:
    return _keydir_page_norm(a) == _keydir_page_norm(b)


def _keydir_page_fields(data: bytes, ctx: Any) -> list[S.Field]:
    used = struct.unpack_from("<I", data, 12)[0]
    return [*S.PAGE_HEADER_FIELDS, S.Field(32, 48, "raw"), *keydir_fields(data[48:used], 48)]


# -- the registry -------------------------------------------------------------------------


def _entry_extra(e: Any, data: bytes, ctx: Any) -> None:
    if e.target:
        assert len(e.target.encode()) <= MAX_SYMLINK_SIZE


TARGETS: list[Target] = [
    Target("uvarint", _case(S.uvarints(), uvarint),
           _reader_decode(lambda r: r.uvarint()), lambda v, c: uvarint(v)),
    Target("svarint", _case(S.svarints, svarint),
           _reader_decode(lambda r: r.svarint()), lambda v, c: svarint(v)),
    Target("blob", _case(st.binary(max_size=300), lambda b: uvarint(len(b)) + b),
           _reader_decode(lambda r: r.blob(4096)), lambda v, c: uvarint(len(v)) + v),
    Target("frame_header", _case(S.frame_headers, encode_frame_header),
           lambda b, c: decode_frame_header(b), lambda v, c: encode_frame_header(v),
           canonical=lambda d, v: d[:48], prefix_free=False, fix=S.fix_frame_crc,
           fields=lambda d, c: list(S.FRAME_HEADER_FIELDS)),
    Target("page_header", _case(S.page_headers(), encode_page_header),
           lambda b, c: decode_page_header(b), lambda v, c: encode_page_header(v),
           canonical=lambda d, v: d[:32], prefix_free=False, fix=S.fix_page_crc,
           fields=lambda d, c: list(S.PAGE_HEADER_FIELDS)),
    Target("keydir_page", _case(_keydir_page_values, lambda v: encode_keydir_page(*v)),
           lambda b, c: decode_keydir_page(b), _encode_keydir_page, eq=_keydir_page_eq,
           canonical=None, prefix_free=False, fix=S.fix_page_crc, fields=_keydir_page_fields),
    Target("slot", st.integers(0, 1).flatmap(lambda no: _case(S.slots(no), encode_slot,
                                                              lambda v: v.slot_no)),
           lambda b, no: decode_slot(b, no), lambda v, c: encode_slot(v),
           canonical=_slot_used, prefix_free=False, fix=S.fix_slot_crc,
           fields=lambda d, c: S.slot_fields(d, keydir_fields),
           ctx_code=lambda no: no, ctx_of=lambda code: code % 2),
    Target("superblock", _case(S.superblocks(), _superblock_image),
           lambda b, c: decode_superblock(b), _encode_superblock, eq=_superblock_eq,
           canonical=None, prefix_free=False, fix=_fix_superblock, fields=_superblock_fields),
    Target("keydir", _case(S.keydirs(6), encode_keydir), lambda b, c: decode_keydir(b),
           lambda v, c: encode_keydir(v), eq=keydir_eq, extra=_check_slots),
    Target("toc_leaf", _case(S.toc_leaves(), encode_node), _decode_toc_leaf,
           lambda v, c: encode_node(v), canonical=None, extra=_check_toc_paths),
    Target("env_leaf", _case(S.env_leaves(), encode_node), _decode_env_leaf,
           lambda v, c: encode_node(v), canonical=None),
    Target("space_leaf", _case(S.space_leaves(), encode_node), _decode_space_leaf,
           _encode_space_leaf, eq=_space_eq, canonical=None),
    Target("internal_node", _case(S.internal_nodes(), encode_node),
           lambda b, c: decode_node(b, 64), lambda v, c: encode_node(v), canonical=None),
    Target("entry", _case(S.entries(), encode_entry), lambda b, c: decode_entry(b),
           lambda v, c: encode_entry(v), extra=_entry_extra),
    Target("chunk", _case(S.chunks(), lambda v: encode_chunk(*v)),
           lambda b, c: decode_chunk(b), lambda v, c: encode_chunk(*v),
           eq=lambda a, b: a[0] == b[0] and bytes(a[1]) == bytes(b[1])),
    Target("chunk_index", _case(S.chunk_indexes, lambda v: encode_index(*v)),
           lambda b, c: decode_index(b), lambda v, c: encode_index(*v),
           eq=lambda a, b: tuple(a) == tuple(b)),
    Target("commit", _case(S.commits, encode_commit), lambda b, c: decode_commit(b),
           lambda v, c: encode_commit(v)),
    Target("space_record", _case(S.space_records(), encode_record),
           lambda b, c: decode_record(b), lambda v, c: encode_record(v),
           eq=lambda a, b: type(a) is type(b) and a == b),
    Target("frame_plain", _plain_cases(), lambda b, limit: bytes(decode_plain(CODEC, b, limit)),
           lambda v, c: encode_plain(CODEC, v, compress=False), canonical=None,
           fields=_plain_fields, extra=_plain_extra,
           ctx_code=_LIMITS.index, ctx_of=lambda code: _LIMITS[code % len(_LIMITS)]),
    Target("sealed_frame", _sealed_cases(), _open_sealed,
           lambda v, c: b"", canonical=None, prefix_free=True,
           fix=S.fix_frame_crc, fields=_sealed_fields, tags={"sealed"},
           ctx_code=lambda ctx: list(FrameKind).index(ctx[0]),
           ctx_of=lambda code: (list(FrameKind)[code % len(FrameKind)], SEALED_OFFSET, None)),
    Target("identity_text", _identity_cases(), _decode_identity,
           lambda v, c: v.encode().encode(), canonical=None, prefix_free=False,
           fields=_text_fields, extra=_identity_canonical, tags={"text"}),
    Target("recipient_text", _recipient_cases(), _decode_recipient,
           lambda v, c: v.encode().encode(), canonical=None, prefix_free=False,
           fields=_text_fields, extra=_recipient_canonical, tags={"text"}),
]

BY_NAME = {t.name: t for t in TARGETS}


class ContractViolation(AssertionError):
    """A decoder broke its contract (an untyped exception, or an inconsistent value)."""


def _violation(t: Target, data: bytes, what: str) -> ContractViolation:
    return ContractViolation(f"{t.name}: {what}\n  input ({len(data)} bytes): {data.hex()}")


#: what a decoded value may hold: FOOTPRINT_PER_BYTE bytes of payload per input byte plus
#: FOOTPRINT_FIXED (one maximal key or so many times over) — prefix-compressed keys are
#: where a decoder could make much more out of little (see test_decoders)
FOOTPRINT_PER_BYTE = 64
FOOTPRINT_FIXED = 256 * 1024


def footprint(value: Any, _depth: int = 0) -> int:
    """Bytes of payload (bytes, str, ints as 8) held by a decoded value, recursively."""
    if _depth > 20:
        return 0
    if isinstance(value, bytes | bytearray | memoryview | str):
        return len(value)
    if isinstance(value, int | float | bool) or value is None:
        return 8
    if isinstance(value, dict):
        return sum(footprint(k, _depth + 1) + footprint(v, _depth + 1)
                   for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return sum(footprint(v, _depth + 1) for v in value)
    slots = getattr(type(value), "__slots__", None)
    names = slots if slots else list(getattr(value, "__dict__", {}))
    return sum(footprint(getattr(value, n, None), _depth + 1) for n in names
               if not n.startswith("__"))


#: ``check(..., expected=OPENED)``: a sealed frame that opens is returned unchecked (the
#: caller decides whether it may: the atheris harness compares it with its seed frames)
OPENED = object()


def check(t: Target, ctx: Any, data: bytes, expected: Any = None) -> Any:
    """The contract of a decoder on arbitrary input; returns the decoded value, or None
    when the decoder refused the input with a FormatError / IntegrityError subclass.
    ``expected``: for sealed frames, the only payload an opened frame may have."""
    try:
        value = t.decode(data, ctx)
    except (FormatError, IntegrityError):
        return None
    except Exception as exc:  # WrongKeyError, UsageError, IndexError, MemoryError, ...
        raise _violation(t, data, f"raised {type(exc).__name__}: {exc}") from exc
    try:
        size = footprint(value)
        if size > FOOTPRINT_PER_BYTE * len(data) + FOOTPRINT_FIXED:
            raise AssertionError(f"decoding {len(data)} bytes produced {size} bytes of values")
        if "sealed" in t.tags:
            # Only the sealer's exact frame authenticates: never another plaintext.
            if expected is not OPENED and value != expected:
                raise AssertionError("a mutated frame opened to another plaintext")
            return value
        again = t.encode(value, ctx)
        back = t.decode(again, ctx)
        if not t.eq(back, value):
            raise AssertionError("the decoded value does not survive re-encoding")
        if t.canonical is not None and t.canonical(again, value) != t.canonical(data, value):
            raise AssertionError("accepted a non-canonical encoding")
        if t.extra is not None:
            t.extra(value, data, ctx)
    except Exception as exc:
        raise _violation(t, data, f"{type(exc).__name__}: {exc}") from exc
    return value
