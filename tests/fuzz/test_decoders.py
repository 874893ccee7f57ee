"""Structure-aware fuzzing of every decoder (issue #4, docs/FORMAT.md §16).

For each target of ``fuzz.targets`` (header, page header, KEYDIR page, slot,
superblock, key directory, TOC / env / space leaves, internal nodes, entries,
data chunks, chunk indexes, commit record, space records, frame plaintexts,
sealed frames, identity and recipient texts, and the primitive varints/blobs):

* valid values round-trip, and canonical encodings re-encode byte for byte;
* mutated encodings (byte- and field-level edits, with or without a forger's
  CRC fix) either raise a FormatError / IntegrityError subclass or decode to a
  value that re-encodes consistently — never another exception; a sealed frame
  never opens to anything but its own payload;
* every strict prefix of a self-delimiting encoding is refused;
* fields spliced in from other valid encodings behave the same;
* each example runs under a deadline (no hang, nothing quadratic), and targeted
  hostile inputs (huge counts and lengths) are decoded under tracemalloc to show
  that decoding ``n`` bytes allocates O(n) plus the structure's fixed limit.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from lockbox.errors import FormatError, IntegrityError, LimitExceededError, LockboxError
from lockbox.formats.lbox.frames import PLAIN_LIMITS, decode_plain
from lockbox.formats.lbox.wire.chunk import decode_chunk, decode_index
from lockbox.formats.lbox.wire.commit import decode_commit
from lockbox.formats.lbox.wire.constants import (
    INLINE_ROOT_MAX,
    MAX_ENV_VALUE_SIZE,
    MAX_KEY_SIZE,
    MAX_NODE_ENTRIES,
    MAX_NODE_PLAIN_SIZE,
    SLOT_SIZE,
)
from lockbox.formats.lbox.wire.encoding import Builder, Reader, uvarint
from lockbox.formats.lbox.wire.entry import MAX_ENTRY_SIZE, decode_entry
from lockbox.formats.lbox.wire.frame import decode_frame_header
from lockbox.formats.lbox.wire.keydir import decode_keydir
from lockbox.formats.lbox.wire.node import INTERNAL, LEAF, decode_node
from lockbox.formats.lbox.wire.superblock import decode_slot, decode_superblock
from lockbox.formats.lbox.write.space import SpaceMap, decode_record

from . import fuzz_settings
from . import strategies as S
from .targets import BY_NAME, CODEC, TARGETS, Case, Target, check

NAMES = [t.name for t in TARGETS]

ROUND_TRIP = fuzz_settings(15)
MUTATE = fuzz_settings(60)
SPLICE = fuzz_settings(20)
PREFIX = fuzz_settings(5, deadline_ms=5000)  # one example is up to ~300 decodes


def check_decode(t: Target, case: Case, data: bytes) -> Any:
    """The contract on arbitrary input (``targets.check``); the decoded value or None."""
    return check(t, case.ctx, data, case.value)


@pytest.mark.parametrize("name", NAMES)
@ROUND_TRIP
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    t = BY_NAME[name]
    case = data.draw(t.cases)
    decoded = t.decode(case.data, case.ctx)
    assert t.eq(decoded, case.value)
    if t.canonical is not None:
        again = t.encode(decoded, case.ctx)
        assert t.canonical(again, decoded) == t.canonical(case.data, decoded)
    if t.extra is not None:
        t.extra(decoded, case.data, case.ctx)


@pytest.mark.parametrize("name", NAMES)
@MUTATE
@given(data=st.data())
def test_mutations(name: str, data: st.DataObject) -> None:
    t = BY_NAME[name]
    case = data.draw(t.cases)
    fields = t.traced(case.data, case.ctx)
    buf = data.draw(S.mutated(case.data, fields, fix=t.fix))
    note(f"original {case.data.hex()}\nmutated  {buf.hex()}")
    check_decode(t, case, buf)


@pytest.mark.parametrize("name", NAMES)
@SPLICE
@given(data=st.data())
def test_splices(name: str, data: st.DataObject) -> None:
    """Fields swapped in from other valid encodings of the same structure."""
    t = BY_NAME[name]
    case = data.draw(t.cases)
    donors = [data.draw(t.cases) for _ in range(t.donors)]
    donors = [(d.data, t.traced(d.data, d.ctx)) for d in donors]
    fields = t.traced(case.data, case.ctx)
    if not fields:
        return
    buf = data.draw(S.mutated(case.data, fields, donors=donors, fix=t.fix, max_ops=1,
                              first=("splice", "splice", "swap")))
    check_decode(t, case, buf)


def _prefix_offsets(n: int) -> list[int]:
    if n <= 512:
        return list(range(n))
    step = n // 128
    return sorted(set(range(0, 64)) | set(range(0, n, step)) | set(range(n - 64, n)))


@pytest.mark.parametrize("name", NAMES)
@PREFIX
@given(data=st.data())
def test_truncation_at_every_offset(name: str, data: st.DataObject) -> None:
    t = BY_NAME[name]
    case = data.draw(t.cases)
    for i in _prefix_offsets(len(case.data)):
        value = check_decode(t, case, case.data[:i])
        if t.prefix_free and value is not None:
            raise AssertionError(f"{name}: the {i}-byte prefix of {case.data.hex()} decodes "
                                 f"to {value!r:.300}")


# -- varints: every byte pattern of up to 3 bytes, and the §19.1 rejections -------------------


def test_uvarint_exhaustive_short_forms() -> None:
    canonical = 0
    for n in (1, 2):
        for v in range(256 ** n):
            b = v.to_bytes(n, "little")
            r = Reader(b)
            try:
                x = r.uvarint()
                r.done()
            except FormatError:
                continue
            assert uvarint(x) == b, b.hex()
            canonical += 1
    assert canonical == 128 + 128 * 127


@pytest.mark.parametrize("hexform, error", [
    ("80", "TruncatedError"), ("8000", "FormatError"), ("ff00", "FormatError"),
    ("ffffffffffffffffff7f", "FormatError"), ("ffffffffffffffffff02", "FormatError"),
    ("ffffffffffffffffffff01", "FormatError"), ("80808080808080808000", "FormatError"),
])
def test_uvarint_rejections(hexform: str, error: str) -> None:
    with pytest.raises(FormatError) as info:
        r = Reader(bytes.fromhex(hexform))
        r.uvarint()
        r.done()
    assert type(info.value).__name__ == error


@pytest.mark.parametrize("name", NAMES)
@fuzz_settings(20)
@given(data=st.data())
def test_overlong_varint_fields_are_refused(name: str, data: st.DataObject) -> None:
    """Every varint field of every structure refuses its overlong forms."""
    t = BY_NAME[name]
    case = data.draw(t.cases)
    fields = [f for f in t.traced(case.data, case.ctx) if f.kind == "uvarint"]
    if not fields:
        return
    f = data.draw(st.sampled_from(fields))
    old = Reader(case.data[f.start:f.end]).uvarint()
    form = data.draw(st.sampled_from(S.overlong(old)))
    buf = case.data[:f.start] + form + case.data[f.end:]
    note(f"field {f}, form {form.hex()}")
    assert check_decode(t, case, buf) is None, f"{name}: accepted overlong {form.hex()}"


# -- bounded allocation -----------------------------------------------------------------------

#: bytes a decoder may allocate per input byte (Python objects for every field: a
#: 1-byte varint becomes a 28-byte int, a 3-byte item a list slot, a key and a value)
PER_BYTE = 96
#: plus a fixed allowance (interpreter noise, small tables)
FIXED = 256 * 1024


def peak_alloc(fn: Callable[[], Any]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        err: BaseException | None = None
        try:
            fn()
        except LockboxError as e:
            err = e
        return tracemalloc.get_traced_memory()[1] - base, err
    finally:
        tracemalloc.stop()


def assert_bounded(fn: Callable[[], Any], n: int, limit: int = 0) -> BaseException | None:
    peak, err = peak_alloc(fn)
    allowed = PER_BYTE * n + limit + FIXED
    assert peak <= allowed, f"decoding {n} bytes allocated {peak} bytes (allowed {allowed})"
    return err


def _hostile_inputs() -> list[tuple[str, Callable[[bytes], Any], bytes]]:
    big = uvarint(2**63)
    huge = uvarint(2**64 - 1)
    u32max = struct.pack("<I", 2**32 - 1)
    cases: list[tuple[str, Callable[[bytes], Any], bytes]] = [
        ("node count 65536, no items", lambda b: decode_node(b, 64),
         bytes([LEAF, 0]) + uvarint(MAX_NODE_ENTRIES)),
        ("node count 2**63", lambda b: decode_node(b, 64), bytes([LEAF, 0]) + big),
        ("internal count 65536", lambda b: decode_node(b, 64),
         bytes([INTERNAL, 1]) + uvarint(MAX_NODE_ENTRIES)),
        ("leaf key length 2**64-1", lambda b: decode_node(b, 64),
         bytes([LEAF, 0, 1, 0]) + huge),
        ("leaf value length 2**63", lambda b: decode_node(b, MAX_ENTRY_SIZE),
         bytes([LEAF, 0, 1, 0, 1, 0x61]) + big),
        ("keydir 512 slots of 65535 bytes", decode_keydir,
         b"LBKD\x01" + struct.pack("<H", 512) + b"\x09" + b"\x01\x00\x00\x00" + b"\xff\xff"),
        ("entry with 2048 refs, 1 present", decode_entry,
         b"\x01\x00\x00" + uvarint(8 * 4096 * 2047 + 1) + b"\x00" + bytes(48)
         + uvarint(4096) + b"\x01" + uvarint(2048) + b"\x00\x40" + bytes(16)),
        ("symlink target 2**63", decode_entry, b"\x03\x00\x00" + big),
        ("chunk data 4 MiB declared", decode_chunk,
         bytes(16) + b"\x00\x00\x00" + uvarint(4 << 20)),
        ("chunk path 2**64-1", decode_chunk, bytes(16) + b"\x00" + huge),
        ("index 4096 refs declared", decode_index, bytes(16) + b"\x00" + uvarint(4096)),
        ("commit inline root 3072 declared", decode_commit,
         b"\x01\x01\x00\x00" + uvarint(4096) + bytes(32) + b"\x02\x01\x01" + uvarint(3072)),
        ("commit 16 root leaves declared", decode_commit,
         b"\x01\x01\x00\x00" + uvarint(4096) + bytes(32) + b"\x00\x00\x00\x00\x10"),
        ("frame header sealed 2**32-1", decode_frame_header,
         S.fix_frame_crc(b"LBXF\x05\x00\x00\x00" + u32max + bytes(36))),
        ("raw plaintext declares the limit", lambda b: decode_plain(
            CODEC, b, PLAIN_LIMITS[next(iter(PLAIN_LIMITS))]), b"\x00" + uvarint(65536)),
        ("zstd declares 2**40", lambda b: decode_plain(CODEC, b, 1 << 20),
         b"\x01" + uvarint(1 << 20) + b"\x28\xb5\x2f\xfd\xe0\x00" + (1 << 40).to_bytes(8,
                                                                                   "little")),
        ("space record size 2**63", decode_record, b"\x01" + big),
        ("slot K+C = 2**33-2", lambda b: decode_slot(b, 0),
         b"LBOX\r\n\x1a\n\x01\x00\x00\x00" + bytes(28) + u32max + u32max),
    ]
    return cases


@pytest.mark.parametrize("label, decode, data", _hostile_inputs(),
                         ids=[c[0] for c in _hostile_inputs()])
def test_hostile_lengths_do_not_allocate(label: str, decode: Callable[[bytes], Any],
                                         data: bytes) -> None:
    err = assert_bounded(lambda: decode(data), len(data))
    assert isinstance(err, (FormatError, IntegrityError)), label


def test_zstd_bomb_stops_at_the_declared_size() -> None:
    """A 1 MiB-of-zeros zstd frame in a plaintext that declares 1 KiB (and a frame with
    no content size that would expand to 64 MiB): refused, at most limit-sized output."""
    from lockbox.codec.zstd import load_zstd

    _zstd = load_zstd()  # the codec's own zstd module
    bomb = _zstd.compress(bytes(1 << 20))
    plain = b"\x01" + uvarint(1024) + bomb
    err = assert_bounded(lambda: decode_plain(CODEC, plain, 1 << 20), len(plain), 1024 * 4)
    assert isinstance(err, LimitExceededError)
    c = _zstd.ZstdCompressor()
    stream = c.compress(bytes(64 << 20)) + c.flush()  # streaming: no content size
    plain = b"\x01" + uvarint(4096) + stream
    err = assert_bounded(lambda: decode_plain(CODEC, plain, 1 << 20), len(plain), 8192 * 2)
    assert isinstance(err, (LimitExceededError, FormatError))


@st.composite
def _valid_big(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(["toc_leaf", "env_leaf", "space_leaf", "internal_node",
                                 "keydir", "commit", "chunk_index", "entry"]))
    return name, draw(BY_NAME[name].cases).data


@fuzz_settings(25, deadline_ms=5000)
@given(_valid_big(), st.data())
def test_mutated_decoding_allocates_linearly(case: tuple[str, bytes],
                                             data: st.DataObject) -> None:
    name, raw = case
    t = BY_NAME[name]
    buf = data.draw(S.mutated(raw, t.traced(raw, None)))
    assert_bounded(lambda: t.decode(buf, None), len(buf))


def _prefix_amplified_leaf(items: int) -> bytes:
    """A leaf whose keys are 4000 bytes long but cost 6 bytes each: every key shares
    3999 bytes with the previous one and adds a 2-byte suffix."""
    b = Builder().u8(LEAF).u8(0).uvarint(items)
    b.uvarint(0).blob(b"\x00" * 4000).blob(b"")
    for i in range(1, items):
        b.uvarint(3999).blob(i.to_bytes(2, "big")).blob(b"")
    return b.getvalue()


def test_prefix_compression_sanity() -> None:
    """The construction of the bug below, at a size that is cheap: 200 keys of 4001
    bytes from a 5 KB leaf."""
    buf = _prefix_amplified_leaf(200)
    node = decode_node(buf, 64)
    assert node.count == 200 and all(len(k) == 4001 for k in node.keys[1:])
    assert len(buf) < 4000 + 7 * 200


def test_prefix_compressed_keys_allocate_linearly() -> None:
    """Prefix compression could turn a small node into huge keys: the decoder caps the
    total key bytes of one node (LimitExceededError) instead of materialising them."""
    buf = _prefix_amplified_leaf(4000)  # 24 KB of node: 16 MB of keys
    assert len(buf) <= MAX_NODE_PLAIN_SIZE
    err = assert_bounded(lambda: decode_node(buf, 64), len(buf), MAX_KEY_SIZE)
    assert isinstance(err, LimitExceededError)


def test_inline_root_amplification_is_bounded() -> None:
    """The same trick inside an inline root (<= 3072 bytes, the commit's): the worst case
    (a 1536-byte first key, then 6-byte items) stays below 1 MiB."""
    first = INLINE_ROOT_MAX // 2
    items = (INLINE_ROOT_MAX - first - 8) // 6
    b = Builder().u8(LEAF).u8(0).uvarint(items)
    b.uvarint(0).blob(b"\x00" * first).blob(b"")
    for i in range(1, items):
        b.uvarint(first - 1).blob(i.to_bytes(2, "big")).blob(b"")
    buf = b.getvalue()
    assert len(buf) <= INLINE_ROOT_MAX
    peak, err = peak_alloc(lambda: decode_node(buf, MAX_ENV_VALUE_SIZE))
    assert err is None and peak < 1 << 20


@fuzz_settings(4, deadline_ms=5000)
@given(S.refs, S.file_ids, st.integers(0, 1 << 40), st.data())
def test_full_chunk_index(ref: Any, file_id: bytes, first: int, data: st.DataObject) -> None:
    """A chunk index of 4096 refs (MAX_INDEX_PLAIN_SIZE worth): round trip, mutations."""
    t = BY_NAME["chunk_index"]
    value = (file_id, first, [ref] * 4096)
    case = Case(value, t.encode(value, None))
    assert t.eq(t.decode(case.data, None), value)
    fields = t.traced(case.data, None)
    for _ in range(3):
        check_decode(t, case, data.draw(S.mutated(case.data, fields)))


# -- whole-superblock and space-map specifics -------------------------------------------------


@fuzz_settings(30)
@given(S.superblocks(), st.data())
def test_superblock_choice_is_consistent(pair: Any, data: st.DataObject) -> None:
    """Whatever the damage, decode_superblock returns only slots that decode on their
    own, newest first, of one archive — or raises a typed error."""
    t = BY_NAME["superblock"]
    image = t.encode(pair, None)
    buf = data.draw(S.mutated(image, t.traced(image, None), fix=t.fix))
    try:
        found = decode_superblock(buf)
    except (FormatError, IntegrityError):
        return
    assert found, "no slot and no error"
    assert [s.generation for s in found] == sorted((s.generation for s in found), reverse=True)
    assert len({s.archive_id for s in found}) == 1
    for s in found:
        assert decode_slot(buf[s.slot_no * SLOT_SIZE:(s.slot_no + 1) * SLOT_SIZE], s.slot_no) == s


@fuzz_settings(30)
@given(S.space_items(12), st.data())
def test_space_map_from_items(items: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    m = SpaceMap.from_items(items)
    assert m.items() == {k: v for k, v in items if k != b"\xff" * 8}
    if items:
        i = data.draw(st.integers(0, len(items) - 1))
        k, v = items[i]
        v2 = data.draw(S.mutated(v, S.trace_fields(decode_record, v) if k != b"\xff" * 8
                                 else ()))
        k2 = data.draw(st.just(k) | st.binary(max_size=10))
        bad = [*items[:i], (k2, v2), *items[i + 1:]]
        try:
            SpaceMap.from_items(bad)
        except FormatError:
            pass
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc} on {k2.hex()}={v2.hex()}") from exc
