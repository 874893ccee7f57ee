"""TOC entries, archive paths and TOC keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockbox.errors import FormatError, InvalidPathError, LimitExceededError, TruncatedError
from lockbox.formats.lbox.wire.constants import (
    INDEX_FANOUT,
    INLINE_CHUNK_REFS,
    MAX_CHUNK_SIZE,
    MAX_NAME_SIZE,
    MAX_PATH_SIZE,
    MAX_SYMLINK_SIZE,
    MIN_CHUNK_SIZE,
    EntryType,
)
from lockbox.formats.lbox.wire.encoding import Builder, svarint, uvarint
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    LAYOUT_PACKED,
    MAX_INDEX_REFS,
    Entry,
    child_range,
    chunk_count,
    decode_entry,
    encode_entry,
    key_path,
    normalize_path,
    split_path,
    subtree_ranges,
    toc_key,
)
from lockbox.formats.lbox.wire.refs import Ref, encode_ref

from . import FUZZ, ROUND_TRIP, decode_or_typed_error, mutate, refs

REF = Ref(20000, 300, b"t" * 16)
HASH = bytes(range(32))
FID = bytes(range(100, 116))


def file_entry(size: int, chunk_size: int = 4096, layout: int | None = None,
               n: int | None = None) -> Entry:
    chunks = chunk_count(size, chunk_size)
    if layout is None:
        layout = LAYOUT_CHUNKS if chunks <= INLINE_CHUNK_REFS else LAYOUT_INDEX
    if n is None:
        n = chunks if layout == LAYOUT_CHUNKS else -(-chunks // INDEX_FANOUT)
    return Entry(EntryType.FILE, 0o644, 1_700_000_000_000_000_000, size, size + 99, HASH, FID,
                 chunk_size, layout, tuple(Ref(20000 + i, 300, bytes([i % 256]) * 16)
                                           for i in range(n)))


def raw_file(*, t: int = 1, mode: int = 0o644, size: int = 5, chunk: int = 4096,
             layout: int = 0, n: int = 1, refs_: list[Ref] | None = None,
             hash_len: int = 32, member: bytes = b"") -> bytes:
    """A FILE entry's bytes, any field as given (``member``: the raw member-number
    bytes written after the layout byte)."""
    b = Builder().u8(t).uvarint(mode).svarint(0).uvarint(size).uvarint(0).raw(bytes(hash_len))
    b.raw(FID).uvarint(chunk).u8(layout).raw(member).uvarint(n)
    for r in refs_ if refs_ is not None else [REF] * n:
        encode_ref(b, r)
    return b.getvalue()


# -- entries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size,chunk", [
    (0, 4096), (1, 4096), (4096, 4096), (4097, 4096), (8 * 4096, 4096),  # inline refs
    (8 * 4096 + 1, 4096), (4096 * 4096, 4096), (4096 * 4096 + 1, 4096),  # index layout
    (2 ** 40, MAX_CHUNK_SIZE), (5, MAX_CHUNK_SIZE),
])
def test_file_round_trip(size, chunk):
    e = file_entry(size, chunk)
    got = decode_entry(encode_entry(e))
    assert got == e
    assert got.chunks == chunk_count(size, chunk)


def test_dir_and_symlink_round_trip():
    d = Entry(EntryType.DIR, 0o755, -5)
    assert decode_entry(encode_entry(d)) == d
    assert encode_entry(d) == bytes([EntryType.DIR]) + uvarint(0o755) + svarint(-5)
    s = Entry(EntryType.SYMLINK, 0o777, 2 ** 62, target="../t\u00e9")
    assert decode_entry(encode_entry(s)) == s
    s = Entry(EntryType.SYMLINK, 0, 0, target="x" * MAX_SYMLINK_SIZE)
    assert decode_entry(encode_entry(s)) == s
    assert d.is_dir and not s.is_dir


def test_chunk_count():
    assert [chunk_count(n, 4096) for n in (0, 1, 4095, 4096, 4097, 8192)] == [1, 1, 1, 1, 2, 2]
    assert chunk_count(2 ** 64 - 1, 4096) == 2 ** 52


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 10, 40, 60, -1])
def test_truncated(cut):
    enc = encode_entry(file_entry(5))
    with pytest.raises(TruncatedError):
        decode_entry(enc[:cut])


def test_mode_and_type():
    with pytest.raises(LimitExceededError):
        decode_entry(bytes([EntryType.DIR]) + uvarint(0o10000) + svarint(0))
    for t in (0, 4, 255):
        with pytest.raises(FormatError, match="unknown type"):
            decode_entry(bytes([t]) + uvarint(0) + svarint(0))


def test_chunk_size_bounds():
    with pytest.raises(FormatError, match="chunk size below"):
        decode_entry(raw_file(chunk=MIN_CHUNK_SIZE - 1))
    with pytest.raises(FormatError, match="chunk size below"):
        decode_entry(raw_file(chunk=0))
    with pytest.raises(LimitExceededError):
        decode_entry(raw_file(chunk=MAX_CHUNK_SIZE + 1))


def test_ref_counts_must_match_the_size():
    with pytest.raises(FormatError, match="chunk reference count"):
        decode_entry(raw_file(size=5, n=2))  # 1 chunk, 2 refs
    with pytest.raises(FormatError, match="chunk reference count"):
        decode_entry(raw_file(size=5, n=0))
    with pytest.raises(FormatError, match="chunk reference count"):  # >8 refs inline
        decode_entry(raw_file(size=9 * 4096, n=9))
    with pytest.raises(FormatError, match="index reference count"):  # index for <= 8 chunks
        decode_entry(raw_file(size=8 * 4096, layout=LAYOUT_INDEX, n=1))
    with pytest.raises(FormatError, match="index reference count"):
        decode_entry(raw_file(size=4097 * 4096, layout=LAYOUT_INDEX, n=1))  # needs 2
    assert len(decode_entry(raw_file(size=4097 * 4096, layout=LAYOUT_INDEX, n=2)).refs) == 2
    for layout in (3, 255):
        with pytest.raises(FormatError, match="unknown layout"):
            decode_entry(raw_file(layout=layout))


# -- layout 2: a member of a PACK frame (format version 3) ----------------------------------

def packed_entry(size: int = 5, member_no: int = 7, chunk_size: int = 4096) -> Entry:
    return Entry(EntryType.FILE, 0o644, 1_700_000_000_000_000_000, size, 60, HASH, FID,
                 chunk_size, LAYOUT_PACKED, (REF,), member_no=member_no)


@pytest.mark.parametrize("size,member_no,chunk", [
    (0, 0, 4096), (5, 7, 4096), (4096, 127, 4096), (4096, 128, 4096), (65536, 4095, 65536),
    (MAX_CHUNK_SIZE, 300, MAX_CHUNK_SIZE),
])
def test_packed_round_trip(size, member_no, chunk):
    e = packed_entry(size, member_no, chunk)
    buf = encode_entry(e)
    # layout 2, member_no, then n = 1 and the one ref (so the listing rule of §9 holds)
    ref = uvarint(REF.frame_offset) + uvarint(REF.frame_size) + REF.tag
    assert buf.endswith(uvarint(chunk) + b"\x02" + uvarint(member_no) + b"\x01" + ref)
    for lazy in (False, True):
        got = decode_entry(buf, lazy_refs=lazy)
        assert got == e and got.member_no == member_no and got.layout == LAYOUT_PACKED
        assert tuple(got.refs) == (REF,)


def test_packed_entries_have_one_chunk_and_one_ref():
    ok = raw_file(size=4096, layout=2, member=b"\x00")
    assert decode_entry(ok).member_no == 0
    for lazy in (False, True):
        with pytest.raises(FormatError, match="one chunk and one ref"):
            decode_entry(raw_file(size=5, layout=2, member=b"\x00", n=2), lazy_refs=lazy)
        with pytest.raises(FormatError, match="one chunk and one ref"):
            decode_entry(raw_file(size=5, layout=2, member=b"\x00", n=0), lazy_refs=lazy)
        with pytest.raises(FormatError, match="one chunk and one ref"):  # size > chunk_size
            decode_entry(raw_file(size=4097, layout=2, member=b"\x00"), lazy_refs=lazy)


def test_packed_member_numbers_are_checked():
    assert decode_entry(raw_file(layout=2, member=uvarint(4095))).member_no == 4095
    for lazy in (False, True):
        with pytest.raises(LimitExceededError):  # over 4095: a FormatError
            decode_entry(raw_file(layout=2, member=uvarint(4096)), lazy_refs=lazy)
        with pytest.raises(LimitExceededError):
            decode_entry(raw_file(layout=2, member=uvarint(2 ** 63)), lazy_refs=lazy)
        with pytest.raises(FormatError, match="non-canonical"):
            decode_entry(raw_file(layout=2, member=b"\x85\x00"), lazy_refs=lazy)
        with pytest.raises(TruncatedError):  # the entry ends inside the member number
            decode_entry(raw_file(layout=2, n=0, refs_=[])[:-1] + b"\x80", lazy_refs=lazy)
    # a layout-0 or -1 entry has no member number: its byte would be read as n
    with pytest.raises(FormatError, match="chunk reference count"):
        decode_entry(raw_file(layout=0, member=b"\x07"))


def test_member_numbers_are_only_encoded_for_packed_entries():
    with pytest.raises(ValueError):
        encode_entry(packed_entry(member_no=4096))
    with pytest.raises(ValueError):
        encode_entry(Entry(EntryType.FILE, 0o644, 1, 5, 60, HASH, FID, 4096, LAYOUT_CHUNKS,
                           (REF,), member_no=3))


def test_hostile_sizes_and_counts_do_not_allocate():
    # a 16 EiB file claiming one index ref: refused before anything is built
    with pytest.raises(FormatError):
        decode_entry(raw_file(size=2 ** 64 - 1, layout=LAYOUT_INDEX, n=1))
    with pytest.raises(LimitExceededError):
        decode_entry(raw_file(size=2 ** 64 - 1, layout=LAYOUT_INDEX, n=2 ** 40, refs_=[]))
    with pytest.raises(LimitExceededError):  # more index refs than an entry may hold
        decode_entry(raw_file(size=2 ** 64 - 1, chunk=MIN_CHUNK_SIZE, layout=LAYOUT_INDEX,
                              n=MAX_INDEX_REFS + 1, refs_=[]))
    biggest = MAX_INDEX_REFS * INDEX_FANOUT * MIN_CHUNK_SIZE
    with pytest.raises(TruncatedError):  # a consistent count, but the refs are missing
        decode_entry(raw_file(size=biggest, chunk=MIN_CHUNK_SIZE, layout=LAYOUT_INDEX,
                              n=MAX_INDEX_REFS, refs_=[REF]))
    e = file_entry(biggest, MIN_CHUNK_SIZE)
    assert len(e.refs) == MAX_INDEX_REFS and decode_entry(encode_entry(e)) == e


def test_bad_refs_and_trailing_bytes():
    with pytest.raises(FormatError, match="below the minimum"):
        decode_entry(raw_file(refs_=[Ref(0, 63, bytes(16))]))
    with pytest.raises(FormatError, match="trailing"):
        decode_entry(encode_entry(file_entry(5)) + b"\x00")
    with pytest.raises(FormatError, match="trailing"):
        decode_entry(encode_entry(Entry(EntryType.DIR, 0, 0)) + b"\x00")
    with pytest.raises(FormatError, match="trailing"):
        decode_entry(encode_entry(Entry(EntryType.SYMLINK, 0, 0, target="t")) + b"\x00")


def test_symlink_rejections():
    head = bytes([EntryType.SYMLINK]) + uvarint(0o777) + svarint(0)
    with pytest.raises(LimitExceededError):
        decode_entry(head + uvarint(MAX_SYMLINK_SIZE + 1) + b"x" * (MAX_SYMLINK_SIZE + 1))
    with pytest.raises(FormatError, match="not UTF-8"):
        decode_entry(head + uvarint(2) + b"\xc3\x28")
    with pytest.raises(TruncatedError):
        decode_entry(head + uvarint(10) + b"short")


# -- paths and keys --------------------------------------------------------------------------


@pytest.mark.parametrize("path,norm", [
    ("", ""), ("/", ""), (".", ""), ("a", "a"), ("/a/b/", "a/b"), ("a//b", "a/b"),
    ("./a/./b", "a/b"), ("a/b/.", "a/b"), ("\u00e9t\u00e9", "\u00e9t\u00e9"),
    ("a\\b", "a\\b"),  # a backslash is an ordinary character in an archive name
])
def test_normalize_path(path, norm):
    assert normalize_path(path) == norm


@pytest.mark.parametrize("path", ["..", "a/..", "../a", "a/../b", "a/b/../../..", "nul\x00",
                                  "\ud800", "x" * (MAX_PATH_SIZE + 1),
                                  "d/" + "n" * (MAX_NAME_SIZE + 1)])
def test_normalize_path_refuses(path):
    with pytest.raises(InvalidPathError):
        normalize_path(path)


def test_path_size_limits_are_in_bytes():
    assert normalize_path("n" * MAX_NAME_SIZE) == "n" * MAX_NAME_SIZE
    with pytest.raises(InvalidPathError):
        normalize_path("\u00e9" * (MAX_NAME_SIZE // 2 + 1))  # 2 bytes each
    long = "/".join(["n" * 100] * 40)[:MAX_PATH_SIZE]
    assert normalize_path(long) == long.rstrip("/")


def test_toc_keys():
    assert toc_key("a") == b"\x00a"
    assert toc_key("a/b/c") == b"a/b\x00c"
    assert key_path(b"\x00a") == "a" and key_path(b"a/b\x00c") == "a/b/c"
    assert split_path("a/b/c") == ("a/b", "c") and split_path("a") == ("", "a")
    assert child_range("") == (b"\x00", b"\x01")
    assert child_range("a/b") == (b"a/b\x00", b"a/b\x01")
    assert subtree_ranges("a") == [(b"a\x00", b"a\x01"), (b"a/", b"a0")]


@pytest.mark.parametrize("key", [b"", b"noseparator", b"a\x00", b"a\x00b\x00c", b"\x00a/b",
                                 b"\x00.", b"\x00..", b"\xff\x00a", b"\x00\xff",
                                 b"..\x00x", b"a/..\x00x", b"./a\x00x", b"/a\x00x", b"a//b\x00x",
                                 b"a/\x00x"])
def test_key_path_refuses_malformed_keys(key):
    with pytest.raises(FormatError):
        key_path(key)


names = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
                min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
paths = st.lists(names, min_size=1, max_size=4).map("/".join)


@ROUND_TRIP
@given(paths)
def test_key_path_round_trip(path):
    assert normalize_path(path) == path
    assert key_path(toc_key(path)) == path


@ROUND_TRIP
@given(st.lists(paths, min_size=1, max_size=30, unique=True), st.one_of(st.just(""), paths))
def test_key_ranges_select_exactly_children_and_descendants(all_paths, d):
    """child_range(d) holds the direct children of d, sorted by name;
    subtree_ranges(d) every strict descendant, and nothing else."""
    keys = sorted(toc_key(p) for p in all_paths)
    lo, hi = child_range(d)
    children = [key_path(k) for k in keys if lo <= k < hi]
    want_children = [p for p in all_paths if split_path(p)[0] == d]
    assert children == sorted(want_children, key=lambda p: split_path(p)[1].encode())
    inside = {key_path(k) for k in keys if any(a <= k < b for a, b in subtree_ranges(d))}
    assert inside == {p for p in all_paths if d == "" or p.startswith(d + "/")}


# -- properties ------------------------------------------------------------------------------

modes = st.integers(0, 0o7777)
mtimes = st.integers(-(2 ** 63), 2 ** 63 - 1)


@st.composite
def file_entries(draw: st.DrawFn) -> Entry:
    csize = draw(st.sampled_from([MIN_CHUNK_SIZE, 65536, MAX_CHUNK_SIZE]))
    size = draw(st.one_of(st.integers(0, 8 * csize), st.integers(0, 40 * INDEX_FANOUT * csize),
                          st.integers(0, MAX_INDEX_REFS * INDEX_FANOUT * csize)))
    chunks = chunk_count(size, csize)
    layout = LAYOUT_CHUNKS if chunks <= INLINE_CHUNK_REFS else LAYOUT_INDEX
    n = chunks if layout == LAYOUT_CHUNKS else -(-chunks // INDEX_FANOUT)
    member_no = 0
    if chunks == 1 and draw(st.booleans()):
        layout, member_no = LAYOUT_PACKED, draw(st.integers(0, 4095))
    return Entry(EntryType.FILE, draw(modes), draw(mtimes), size,
                 draw(st.integers(0, 2 ** 64 - 1)), draw(st.binary(min_size=32, max_size=32)),
                 draw(st.binary(min_size=16, max_size=16)), csize, layout,
                 tuple(draw(st.lists(refs, min_size=n, max_size=n))), member_no=member_no)


entries = st.one_of(
    file_entries(),
    st.builds(Entry, st.just(EntryType.DIR), modes, mtimes),
    st.builds(lambda m, t, target: Entry(EntryType.SYMLINK, m, t, target=target), modes, mtimes,
              st.text(min_size=1, max_size=50)),
)


@ROUND_TRIP
@given(entries)
def test_round_trip_property(e):
    assert decode_entry(encode_entry(e)) == e


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    decode_or_typed_error(decode_entry, data)
    decode_or_typed_error(key_path, data)


@FUZZ
@given(st.data(), entries)
def test_mutated_entries(data, e):
    got = decode_or_typed_error(decode_entry, data.draw(mutate(encode_entry(e))))
    if got is not None and got.type == EntryType.FILE:
        n = len(got.refs)
        if got.layout == LAYOUT_PACKED:
            assert n == got.chunks == 1 and 0 <= got.member_no <= 4095
        else:
            assert got.member_no == 0
            assert n == (got.chunks if got.layout == LAYOUT_CHUNKS else -(-got.chunks //
                                                                          INDEX_FANOUT))
        assert MIN_CHUNK_SIZE <= got.chunk_size <= MAX_CHUNK_SIZE
