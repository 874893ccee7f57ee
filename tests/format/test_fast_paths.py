"""The fast paths of the wire codecs (issue 12) against the checked ones they stand in
for: the same values, the same positions, and the same typed error for every input
(the fast decoders hand anything odd to the checked ones, which must then say why).

- ``uvarint_at`` (listing and leaf decoders) against ``Reader.uvarint``;
- ``decode_entry(lazy_refs=True)`` (``_decode_listed``) against ``_decode_checked``;
- ``decode_node`` of a leaf (``_decode_leaf``) against the ``Reader`` decoder;
- ``uvarint`` / ``svarint`` (the loop-free long forms) against plain LEB128;
- ``key_path`` (no split, the last parent remembered) against the rule it checks;
- ``encode_file_entry_head`` / ``encode_packed_entry_head`` + the one ref == ``encode_entry``;
- ``pack_member_spans`` (``uvarint_at``) against a ``Reader`` decoder of the same rules;
- ``Entry`` / ``Ref`` / ``FrameHeader`` built through their slots' setters: still frozen,
  equal, hashable, ``dataclasses.replace``-able.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, LockboxError
from lockbox.formats.lbox.wire import node as node_mod
from lockbox.formats.lbox.wire.constants import (
    INDEX_FANOUT,
    INLINE_CHUNK_REFS,
    MAX_CHUNK_SIZE,
    MAX_PACK_MEMBERS,
    MAX_PLAIN_CHUNK_PAYLOAD,
    MIN_CHUNK_SIZE,
    EntryType,
    FrameKind,
)
from lockbox.formats.lbox.wire.encoding import Reader, svarint, uvarint, uvarint_at
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    LAYOUT_PACKED,
    Entry,
    _decode_checked,
    chunk_count,
    decode_entry,
    encode_entry,
    encode_file_entry_head,
    encode_packed_entry_head,
    key_path,
)
from lockbox.formats.lbox.wire.frame import FrameHeader, decode_frame_header, encode_frame_header
from lockbox.formats.lbox.wire.node import Leaf, decode_node, encode_node
from lockbox.formats.lbox.wire.pack import encode_pack, pack_member_spans
from lockbox.formats.lbox.wire.refs import Ref

from . import FUZZ, ROUND_TRIP, mutate, refs


def _leb128(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _outcome(fn: Any, *args: Any) -> tuple:
    """What a decoder does: ('ok', value) or ('error', its class)."""
    try:
        return ("ok", fn(*args))
    except LockboxError as e:
        return ("error", type(e))


def _entry_fields(e: Entry) -> tuple:
    return (e.type, e.mode, e.mtime_ns, e.size, e.stored_size, e.content_hash, e.file_id,
            e.chunk_size, e.layout, tuple(e.refs), e.target, e.member_no)


# -- varints ---------------------------------------------------------------------------------

@given(st.integers(0, (1 << 64) - 1))
@ROUND_TRIP
def test_uvarint_is_leb128(value: int) -> None:
    assert uvarint(value) == _leb128(value)


@given(st.integers(-(1 << 63), (1 << 63) - 1))
@ROUND_TRIP
def test_svarint_round_trips(value: int) -> None:
    assert Reader(svarint(value)).svarint() == value


def test_varints_out_of_range_still_raise() -> None:
    with pytest.raises(ValueError):
        uvarint(1 << 64)
    with pytest.raises(ValueError):
        uvarint(-1)
    with pytest.raises(ValueError):
        svarint(1 << 63)


def _reader_varint(buf: bytes, pos: int) -> tuple:
    r = Reader(buf)
    r.pos = pos
    try:
        return ("ok", r.uvarint(), r.pos)
    except LockboxError:
        return ("error",)


def _fast_varint(buf: bytes, pos: int) -> tuple:
    try:
        return ("ok", *uvarint_at(buf, pos))
    except (IndexError, ValueError):
        return ("error",)


@given(st.integers(0, (1 << 64) - 1), st.binary(max_size=3))
@ROUND_TRIP
def test_uvarint_at_reads_what_the_reader_reads(value: int, tail: bytes) -> None:
    buf = b"\x07" + uvarint(value) + tail
    assert _fast_varint(buf, 1) == _reader_varint(buf, 1) == ("ok", value, 1 + len(uvarint(value)))


@given(st.lists(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF, 0x02]), max_size=12))
@FUZZ
def test_uvarint_at_refuses_what_the_reader_refuses(data: list[int]) -> None:
    buf = bytes(data)
    assert _fast_varint(buf, 0) == _reader_varint(buf, 0)


# -- entries ---------------------------------------------------------------------------------

@st.composite
def _file_entries(draw: st.DrawFn) -> Entry:
    chunk = draw(st.sampled_from([MIN_CHUNK_SIZE, 65536, 1 << 20, MAX_CHUNK_SIZE]))
    size = draw(st.one_of(st.integers(0, 3 * chunk), st.integers(0, 1 << 44)))
    chunks = chunk_count(size, chunk)
    if chunks <= INLINE_CHUNK_REFS:
        layout, n = LAYOUT_CHUNKS, chunks
    else:
        layout, n = LAYOUT_INDEX, -(-chunks // INDEX_FANOUT)
    if n > 40:
        size, layout, n = chunk, LAYOUT_CHUNKS, 1
    member_no = 0
    if n == 1 and layout == LAYOUT_CHUNKS and draw(st.booleans()):  # a packed file
        layout = LAYOUT_PACKED
        member_no = draw(st.one_of(st.integers(0, 130), st.integers(0, MAX_PACK_MEMBERS - 1)))
    return Entry(EntryType.FILE, draw(st.integers(0, 0o7777)),
                 draw(st.integers(-(1 << 63), (1 << 63) - 1)), size,
                 draw(st.integers(0, (1 << 64) - 1)), draw(st.binary(min_size=32, max_size=32)),
                 draw(st.binary(min_size=16, max_size=16)), chunk, layout,
                 tuple(draw(st.lists(refs, min_size=n, max_size=n))), member_no=member_no)


_entries = st.one_of(
    _file_entries(),
    st.builds(Entry, st.just(EntryType.DIR), st.integers(0, 0o7777),
              st.integers(-(1 << 63), (1 << 63) - 1)),
    st.builds(lambda m, t: Entry(EntryType.SYMLINK, m, 5, target=t), st.integers(0, 0o7777),
              st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)),
)


def _listed(buf: bytes | memoryview) -> tuple:
    # the fields read inside: lazy refs raise when used, on both paths alike
    return _outcome(lambda b: _entry_fields(decode_entry(b, lazy_refs=True)), buf)


def _checked(buf: bytes) -> tuple:
    return _outcome(lambda b: _entry_fields(_decode_checked(b, True)), buf)


@given(_entries)
@ROUND_TRIP
def test_listing_decode_equals_the_checked_decode(entry: Entry) -> None:
    buf = encode_entry(entry)
    assert _listed(buf) == _checked(buf) == ("ok", _entry_fields(entry))
    assert _listed(memoryview(buf)) == ("ok", _entry_fields(entry))


@given(st.data())
@FUZZ
def test_listing_decode_fails_as_the_checked_decode(data: st.DataObject) -> None:
    buf = data.draw(mutate(encode_entry(data.draw(_entries))))
    assert _listed(buf) == _checked(buf)


def test_listing_decode_refuses_what_the_checks_refuse() -> None:
    e = Entry(EntryType.FILE, 0o644, 7, 5, 99, bytes(32), bytes(16), 4096, LAYOUT_CHUNKS,
              (Ref(100, 80, bytes(16)),))
    good = encode_entry(e)
    assert _listed(good)[0] == "ok"
    mode_over = Entry(EntryType.DIR, 0o7777, 1)
    assert _listed(encode_entry(mode_over))[0] == "ok"
    bad_mode = bytes([EntryType.DIR]) + uvarint(0o10000) + svarint(1)
    assert _listed(bad_mode) == _checked(bad_mode) and _listed(bad_mode)[0] == "error"
    long_mtime = bytes([EntryType.DIR, 1]) + b"\x80" * 9 + b"\x02"  # over 64 bits
    assert _listed(long_mtime) == ("error", FormatError)
    padded = bytes([EntryType.DIR, 1, 0x81, 0x00])  # a non-canonical varint
    assert _listed(padded) == ("error", FormatError)
    packed = encode_entry(dataclasses.replace(e, layout=LAYOUT_PACKED, member_no=4095))
    assert _listed(packed) == _checked(packed) and _listed(packed)[0] == "ok"
    at = packed.index(b"\x02\xff\x1f\x01")  # layout 2, member 4095, n = 1
    for member in (b"\x80\x20", b"\xff\x9f\x00", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02"):
        bad = packed[:at + 1] + member + packed[at + 3:]  # over 4095, non-canonical, > 64 bits
        assert _listed(bad) == _checked(bad) and _listed(bad)[0] == "error"
    for n in (b"\x00", b"\x02"):
        bad = packed[:at + 3] + n + packed[at + 4:]
        assert _listed(bad) == _checked(bad) and _listed(bad)[0] == "error"


@given(_file_entries())
@ROUND_TRIP
def test_small_file_entry_head_plus_its_ref_is_the_entry(entry: Entry) -> None:
    one = dataclasses.replace(entry, size=min(entry.size, entry.chunk_size),
                              layout=LAYOUT_CHUNKS, member_no=0,
                              refs=entry.refs[:1] or (Ref(0, 64, bytes(16)),))
    ref = one.refs[0]
    head = encode_file_entry_head(one.mode, one.mtime_ns, one.size, one.stored_size,
                                  one.content_hash, one.file_id, one.chunk_size)
    assert head + uvarint(ref.frame_offset) + uvarint(ref.frame_size) + ref.tag == \
        encode_entry(one)


@given(_file_entries(), st.integers(0, MAX_PACK_MEMBERS - 1))
@ROUND_TRIP
def test_packed_entry_head_plus_its_ref_is_the_entry(entry: Entry, member_no: int) -> None:
    one = dataclasses.replace(entry, size=min(entry.size, entry.chunk_size),
                              layout=LAYOUT_PACKED, member_no=member_no,
                              refs=entry.refs[:1] or (Ref(0, 64, bytes(16)),))
    ref = one.refs[0]
    head = encode_packed_entry_head(one.mode, one.mtime_ns, one.size, one.stored_size,
                                    one.content_hash, one.file_id, one.chunk_size, member_no)
    buf = head + uvarint(ref.frame_offset) + uvarint(ref.frame_size) + ref.tag
    assert buf == encode_entry(one)
    assert _listed(buf) == _checked(buf) == ("ok", _entry_fields(one))


# -- pack headers ------------------------------------------------------------------------------

def _pack_spans_checked(buf: bytes) -> tuple:
    """The pack rules of docs/FORMAT.md §10 with a :class:`Reader` (no fast varints)."""
    def spans(b: bytes) -> list[tuple[int, int]]:
        r = Reader(b, "pack")
        count = r.uvarint()
        if not 1 <= count <= MAX_PACK_MEMBERS:
            raise FormatError("count")
        sizes = []
        for _ in range(count):
            size = r.uvarint()
            if not 1 <= size <= MAX_PLAIN_CHUNK_PAYLOAD:
                raise FormatError("size")
            sizes.append(size)
        if sum(sizes) != r.remaining():
            raise FormatError("sum")
        out, pos = [], r.pos
        for size in sizes:
            out.append((pos, pos + size))
            pos += size
        return out
    out = _outcome(spans, buf)
    return ("error", FormatError) if out[0] == "error" else out  # cut = malformed too


_packs = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=40)


@given(_packs)
@ROUND_TRIP
def test_pack_spans_equal_the_checked_decode(members: list[bytes]) -> None:
    buf = encode_pack(members)
    got = _outcome(pack_member_spans, buf)
    assert got == _pack_spans_checked(buf)
    assert [buf[a:b] for a, b in got[1]] == members


@given(st.data())
@FUZZ
def test_pack_spans_fail_as_the_checked_decode(data: st.DataObject) -> None:
    buf = data.draw(mutate(encode_pack(data.draw(_packs))))
    assert _outcome(pack_member_spans, buf) == _pack_spans_checked(buf)


# -- leaves ------------------------------------------------------------------------------------

_leaves = st.lists(st.tuples(st.binary(min_size=1, max_size=6), st.binary(max_size=200)),
                   min_size=1, max_size=30, unique_by=lambda kv: kv[0]).map(
    lambda kvs: Leaf([k for k, _ in sorted(kvs)], [v for _, v in sorted(kvs)]))


def _leaf_checked(buf: bytes, limit: int) -> tuple:
    real = node_mod._decode_leaf
    node_mod._decode_leaf = lambda *a: None  # type: ignore[assignment]
    try:
        out = _outcome(decode_node, buf, limit)
    finally:
        node_mod._decode_leaf = real
    return out if out[0] == "error" else ("ok", out[1].keys, out[1].values)


def _leaf_fast(buf: bytes | memoryview, limit: int) -> tuple:
    out = _outcome(decode_node, buf, limit)
    return out if out[0] == "error" else ("ok", out[1].keys, out[1].values)


@given(_leaves)
@ROUND_TRIP
def test_leaf_decode_equals_the_checked_decode(leaf: Leaf) -> None:
    buf = encode_node(leaf)
    assert _leaf_fast(buf, 200) == _leaf_fast(memoryview(buf), 200) == \
        _leaf_checked(buf, 200) == ("ok", leaf.keys, leaf.values)
    assert all(type(v) is bytes for v in decode_node(memoryview(buf), 200).values)  # type: ignore[union-attr]


@given(st.data(), st.sampled_from([200, 20]))
@FUZZ
def test_leaf_decode_fails_as_the_checked_decode(data: st.DataObject, limit: int) -> None:
    buf = data.draw(mutate(encode_node(data.draw(_leaves))))
    assert _leaf_fast(buf, limit) == _leaf_checked(buf, limit)


# -- key paths ---------------------------------------------------------------------------------

def test_key_path_checks_every_parent_even_when_remembered() -> None:
    assert key_path(b"a/b\x00c") == "a/b/c"
    assert key_path(b"a/b\x00d") == "a/b/d"  # the remembered parent
    assert key_path(b"\x00top") == "top"
    for bad in (b"a//b\x00c", b"/a\x00c", b"a/\x00c", b"a/./b\x00c", b"a/..\x00c", b"..\x00c",
                b".\x00c", b"a\x00.", b"a\x00..", b"a\x00b/c", b"\xff\x00a", b"a\x00\xff",
                b"a", b"a\x00", b"a\x00b\x00c"):
        with pytest.raises(FormatError):
            key_path(bad)
    assert key_path(b"a/b\x00e") == "a/b/e"  # a refused key did not poison the memory


# -- the setters' __init__ ---------------------------------------------------------------------

@pytest.mark.parametrize("obj", [
    Entry(EntryType.FILE, 0o644, 5, 3, 70, b"h" * 32, b"i" * 16, 4096, 0, (Ref(1, 64, b"t" * 16),)),
    Entry(EntryType.SYMLINK, 0o777, 5, target="x"),
    Entry(EntryType.FILE, 0o644, 5, 3, 70, b"h" * 32, b"i" * 16, 4096, LAYOUT_PACKED,
          (Ref(1, 64, b"t" * 16),), "", 4095),
    Ref(10, 80, b"t" * 16),
    FrameHeader(FrameKind.DATA_CHUNK, 100, 3, b"s" * 16, 9),
])
def test_dataclasses_built_by_setters_behave_as_dataclasses(obj: Any) -> None:
    cls = type(obj)
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}
    twin = cls(**values)
    assert twin == obj and hash(twin) == hash(obj) and repr(twin) == repr(obj)
    assert pickle.loads(pickle.dumps(obj)) == obj
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.__setattr__(dataclasses.fields(cls)[0].name, None)
    first = dataclasses.fields(cls)[-1].name
    changed = dataclasses.replace(obj, **{first: values[first]})
    assert changed == obj


def test_entry_defaults_and_frame_header_round_trip() -> None:
    assert Entry(EntryType.DIR, 0o755, 1) == Entry(EntryType.DIR, 0o755, 1, 0, 0, b"", b"", 0,
                                                   LAYOUT_CHUNKS, (), "", 0)
    with pytest.raises(TypeError):
        Entry(EntryType.DIR)  # type: ignore[call-arg]
    h = FrameHeader(FrameKind.TOC_NODE, 200, 7, b"s" * 16, 12345)
    assert decode_frame_header(encode_frame_header(h)) == h
