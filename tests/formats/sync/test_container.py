"""The ``.sync`` layout: files from the reference builder, CPython's ``zipfile`` and our
writer; round trips; every refusal of strict mode and what lenient mode accepts; bounded
reads of entries; the adversarial corpus (typed errors, nothing allocated from a hostile
number)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockbox.drivers import run_sync
from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    TruncatedError,
)
from lockbox.formats.sync.container import (
    MAX_MANIFEST_SIZE,
    TAIL_READ_SIZE,
    WASM_STUB,
    SyncLayout,
    open_layout_flow,
    read_entry_flow,
    stream_entry_flow,
)
from lockbox.formats.sync.writer import sync_bytes
from lockbox.ranges import ByteRange
from lockbox.sources import BytesSource

from . import refzip
from .refzip import MANIFEST, MANIFEST_UNKNOWN_KEYS, Ref, build, sync_entries

HEAD = 16384


class Counting:
    """A memory source that counts round trips and bytes, and can hide its size."""

    def __init__(self, data: bytes, *, size_known: bool = True) -> None:
        self.inner = BytesSource(data)
        self.size_known = size_known
        self.round_trips = 0
        self.bytes = 0
        self.ranges: list[ByteRange] = []

    @property
    def size(self) -> int | None:
        return self.inner.size if self.size_known else None

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.round_trips += 1
        self.ranges += ranges
        out = self.inner.read(ranges)
        self.bytes += sum(len(b) for b in out)
        return out

    def close(self) -> None:
        pass


def layout_of(data: bytes, *, strict: bool = True, head: bool = True,
              src: Any = None) -> SyncLayout:
    src = src or BytesSource(data)
    return run_sync(open_layout_flow(len(data), data[:HEAD] if head else None,
                                     strict=strict), src)


def manifest_of(layout: SyncLayout, data: bytes) -> bytes:
    return run_sync(read_entry_flow(layout, "manifest.toml", max_size=MAX_MANIFEST_SIZE),
                    BytesSource(data))


def payload_of(layout: SyncLayout, data: bytes) -> bytes:
    r = layout.payload_range
    return data[r.offset: r.end]


# ------------------------------------------------------------------------------ good files


def test_reference_file_in_sync_rs_layout():
    b = build(sync_entries(context=b'{"k": 1}', proof=b"proof"))
    lay = layout_of(b.data)
    assert list(lay.entries) == ["manifest.toml", "payload", "sync.wasm", "context.json",
                                 "sync.proof"]
    assert lay.payload_offset == b.data_offsets[b"payload"] and lay.payload_size == 8
    assert payload_of(lay, b.data) == b"a,b\n1,2\n"
    assert manifest_of(lay, b.data) == MANIFEST
    assert lay.warnings == [] and not lay.zip64 and lay.strict
    assert lay.wasm is not None and lay.context is not None and lay.proof is not None


def test_deflated_manifest_with_unknown_keys_and_a_context():
    entries = sync_entries(MANIFEST_UNKNOWN_KEYS, context=b'{"a": [1, 2]}')
    entries[0].method = 8
    entries[3].method = 8
    b = build(entries)
    lay = layout_of(b.data)
    assert lay.manifest.method == 8
    assert manifest_of(lay, b.data) == MANIFEST_UNKNOWN_KEYS
    ctx = run_sync(read_entry_flow(lay, "context.json", max_size=1024), BytesSource(b.data))
    assert ctx == b'{"a": [1, 2]}'


def test_cpython_zipfile_as_a_second_independent_writer():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.toml", MANIFEST_UNKNOWN_KEYS, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("payload", b"x" * 5000, compress_type=zipfile.ZIP_STORED)
        z.writestr("sync.wasm", WASM_STUB)
        z.writestr("context.json", b"{}", compress_type=zipfile.ZIP_DEFLATED)
        z.comment = b"made by CPython"
    data = buf.getvalue()
    lay = layout_of(data)
    assert payload_of(lay, data) == b"x" * 5000 and lay.comment == b"made by CPython"
    assert manifest_of(lay, data) == MANIFEST_UNKNOWN_KEYS


class _Unseekable(io.RawIOBase):
    """A write-only stream: CPython's zipfile then writes data descriptors (bit 3)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return self.buf.write(b)


def test_data_descriptors_from_cpython_and_the_reference_builder():
    raw = _Unseekable()
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("manifest.toml", MANIFEST, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("payload", b"p" * 3000)
        z.writestr("sync.wasm", WASM_STUB)
    data = raw.buf.getvalue()
    lay = layout_of(data)
    assert all(e.uses_data_descriptor for e in lay.entries.values())
    assert payload_of(lay, data) == b"p" * 3000 and manifest_of(lay, data) == MANIFEST
    entries = sync_entries(descriptor=True, descriptor_signature=False)
    entries[0].method = 8
    b = build(entries)
    lay = layout_of(b.data)
    assert lay.payload.uses_data_descriptor  # type: ignore[union-attr]
    assert payload_of(lay, b.data) == b"a,b\n1,2\n" and manifest_of(lay, b.data) == MANIFEST


def test_zip64_everywhere():
    b = build(sync_entries(zip64=True, version_needed=45), zip64_end=True)
    lay = layout_of(b.data)
    assert lay.zip64 and lay.payload.zip64  # type: ignore[union-attr]
    assert payload_of(lay, b.data) == b"a,b\n1,2\n" and manifest_of(lay, b.data) == MANIFEST
    with zipfile.ZipFile(io.BytesIO(b.data)) as z:  # the builder is right: CPython agrees
        assert z.read("payload") == b"a,b\n1,2\n"


def test_other_entry_orders_and_long_local_extras():
    entries = sync_entries()
    entries = [entries[2], entries[0], entries[1]]     # sync-rs's update writes payload last
    entries[2].local_extra = struct.pack("<HH", 0x7875, 400) + bytes(400)
    b = build(entries)
    src = Counting(b.data)
    lay = layout_of(b.data, src=src, head=False)
    assert payload_of(lay, b.data) == b"a,b\n1,2\n"


def test_our_writer_round_trips():
    data = sync_bytes(manifest_toml=MANIFEST, payload=b"\0" * 70000, context=b"{}",
                      proof=b"pr")
    lay = layout_of(data)
    assert payload_of(lay, data) == b"\0" * 70000 and lay.wasm.uncompressed_size == 8  # type: ignore[union-attr]
    data64 = sync_bytes(manifest_toml=MANIFEST, payload=b"abc", force_zip64=True)
    lay64 = layout_of(data64)
    assert lay64.zip64 and payload_of(lay64, data64) == b"abc"


def test_unknown_entries_are_kept_with_a_warning_in_both_modes():
    b = build([*sync_entries(), Ref(b"README", b"hi")])
    for strict in (True, False):
        lay = layout_of(b.data, strict=strict)
        assert lay.unknown_entries == ["README"]
        assert any("README" in w for w in lay.warnings)


# ------------------------------------------------------------------------------ round trips


def test_round_trips_to_the_layout_and_the_payload():
    # a file larger than the head: the probe (given as head) + one tail read
    b = build(sync_entries(payload=b"z" * 200_000, context=b"{}"))
    src = Counting(b.data)
    lay = run_sync(open_layout_flow(len(b.data), b.data[:HEAD]), src)
    assert src.round_trips == 1 and src.bytes == TAIL_READ_SIZE
    m = run_sync(read_entry_flow(lay, "manifest.toml", max_size=MAX_MANIFEST_SIZE), src)
    assert m == MANIFEST and src.round_trips == 1          # the head holds it
    r = lay.payload_range
    assert run_sync(_read(r), src) == b"z" * 200_000 and src.round_trips == 2
    # a small file: the head is the whole file, no read at all
    small = build(sync_entries()).data
    src = Counting(small)
    layout_of(small, src=src)
    assert src.round_trips == 0


def _read(r: ByteRange) -> Any:
    from lockbox.drivers import read_one
    return read_one(r)


def test_without_a_head_or_a_size():
    b = build(sync_entries(payload=b"q" * 100_000))
    src = Counting(b.data)
    lay = run_sync(open_layout_flow(len(b.data)), src)
    assert src.round_trips == 2  # tail, then the local headers at the start
    src = Counting(b.data, size_known=False)
    lay = run_sync(open_layout_flow(None), src)
    assert lay.size == len(b.data) and payload_of(lay, b.data) == b"q" * 100_000
    tiny = build(sync_entries()).data
    lay = run_sync(open_layout_flow(None, tiny), Counting(tiny, size_known=False))
    assert lay.size == len(tiny)


def test_a_long_comment_costs_one_more_tail_read():
    b = build(sync_entries(payload=b"w" * 100_000), comment=b"c" * 40_000)
    src = Counting(b.data)
    lay = run_sync(open_layout_flow(len(b.data), b.data[:HEAD]), src)
    assert src.round_trips == 2 and lay.comment == b"c" * 40_000


# ------------------------------------------------------------------------------ refusals


def _hostile(data: bytes, error: type[Exception], match: str, *, lenient: bool = True
             ) -> None:
    with pytest.raises(error, match=match):
        layout_of(data)
    if lenient:
        with pytest.raises(error, match=match):
            layout_of(data, strict=False)


def test_compressed_payload_is_refused_in_both_modes():
    entries = sync_entries()
    entries[1].method = 8
    _hostile(build(entries).data, FormatError, "payload is compressed")


def test_duplicate_names():
    b = build([*sync_entries(), Ref(b"payload", b"other")])
    _hostile(b.data, FormatError, "duplicate entry 'payload'")
    dup_unknown = build([*sync_entries(), Ref(b"x", b"1"), Ref(b"x", b"2")])
    with pytest.raises(FormatError, match="duplicate entry 'x'"):
        layout_of(dup_unknown.data)
    lay = layout_of(dup_unknown.data, strict=False)
    assert any("duplicate" in w for w in lay.warnings)


def test_local_central_name_mismatch():
    entries = sync_entries()
    entries[1].local_name = b"payloaX"
    data = build(entries).data
    with pytest.raises(FormatError, match="names it"):
        layout_of(data)
    lay = layout_of(data, strict=False)
    assert payload_of(lay, data) == b"a,b\n1,2\n" and any("names it" in w for w in lay.warnings)


@pytest.mark.parametrize("override, match", [
    (dict(local_method=8), "method"),
    (dict(local_csize=3, local_usize=3), "sizes"),
    (dict(csize=3, usize=3), "sizes"),
    (dict(local_flags=1), "encrypted"),
])
def test_local_central_mismatches_always_refused_for_sync_entries(override, match):
    entries = sync_entries()
    for k, v in override.items():
        setattr(entries[1], k, v)
    _hostile(build(entries).data, FormatError, match)


def test_crc_mismatch_between_headers():
    entries = sync_entries()
    entries[1].local_crc = 1
    data = build(entries).data
    with pytest.raises(FormatError, match="CRC-32"):
        layout_of(data)
    assert any("CRC" in w for w in layout_of(data, strict=False).warnings)


def test_a_record_pointing_into_another_entry_s_data():
    twin = build(sync_entries(payload=b"12345678"))
    cd = bytearray(twin.data)
    rec = twin.cd_offset + (46 + 13) + (46 + 7)  # the third record: sync.wasm
    struct.pack_into("<I", cd, rec + 42, twin.data_offsets[b"payload"] + 2)
    _hostile(bytes(cd), FormatError, "sync.wasm")


def test_overlap_is_a_warning_when_lenient():
    inner = Ref(b"sync.wasm", WASM_STUB)
    outer_data = b"AAAA"
    b = build([Ref(b"manifest.toml", MANIFEST), Ref(b"payload", outer_data), inner])
    # a payload whose central sizes claim it runs over the wasm entry's header
    grown = len(outer_data) + 10
    entries = [Ref(b"manifest.toml", MANIFEST),
               Ref(b"payload", outer_data, csize=grown, usize=grown, local_csize=grown,
                   local_usize=grown), inner]
    data = build(entries).data
    with pytest.raises(FormatError, match="overlap"):
        layout_of(data)
    lay = layout_of(data, strict=False)
    assert any("overlap" in w for w in lay.warnings) and lay.payload_size == grown
    assert b.data  # the well-formed twin opens
    layout_of(b.data)


def test_encrypted_entries_are_refused():
    entries = sync_entries(flags=1)
    _hostile(build(entries).data, FormatError, "encrypted")
    extra = build([*sync_entries(), Ref(b"secret", b"x", flags=1)])
    with pytest.raises(FormatError, match="encrypted"):
        layout_of(extra.data)
    assert "secret" not in layout_of(extra.data, strict=False).entries


def test_missing_entries():
    no_manifest = build(sync_entries()[1:]).data
    _hostile(no_manifest, FormatError, "no manifest.toml")
    no_wasm = build(sync_entries(wasm=None)).data
    with pytest.raises(FormatError, match=r"sync\.wasm"):
        layout_of(no_wasm)
    lay = layout_of(no_wasm, strict=False)
    assert lay.wasm is None and any("sync.wasm" in w for w in lay.warnings)
    no_payload = build([sync_entries()[0], sync_entries()[2]]).data
    with pytest.raises(FormatError, match="no payload"):
        layout_of(no_payload)
    assert layout_of(no_payload, strict=False).payload is None


def test_truncated_files():
    data = build(sync_entries(payload=b"p" * 50_000)).data
    for cut in (len(data) - 1, len(data) - 30, len(data) // 2, 100, 21, 0):
        with pytest.raises(FormatError):
            layout_of(data[:cut])


def test_end_record_count_lies():
    b = build(sync_entries(), eocd=dict(on_disk=1000, total=1000))
    _hostile(b.data, FormatError, "1000 entries")
    b = build(sync_entries(), eocd=dict(on_disk=2, total=3))
    _hostile(b.data, FormatError, "on this disk")
    b = build(sync_entries(), eocd=dict(on_disk=2, total=2))
    with pytest.raises(FormatError, match="take"):
        layout_of(b.data)


def test_central_directory_offsets_past_the_end():
    b = build(sync_entries(), eocd=dict(cd_offset=10**9 % 2**32))
    _hostile(b.data, FormatError, "runs past the end record")
    b = build(sync_entries(), eocd=dict(cd_size=2**31))
    _hostile(b.data, LimitExceededError, "over the limit")
    b = build(sync_entries(), between=b"\0" * 7)  # unexplained gap: strict refuses
    layout_of(b.data)  # a gap before the central directory is not between it and the end
    entries = sync_entries()
    entries[1].offset = 10**6
    _hostile(build(entries).data, FormatError, "not before the central directory")


def test_huge_sizes_never_allocate():
    entries = sync_entries()
    entries[1].csize = entries[1].usize = 2**31
    entries[1].local_csize = entries[1].local_usize = 2**31
    data = build(entries).data
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedError, match="past the end of the file"):
            layout_of(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_manifest_limits_and_deflate_bombs():
    big = sync_entries()
    big[0].method = 8
    big[0].usize = big[0].local_usize = MAX_MANIFEST_SIZE + 1
    _hostile(build(big).data, LimitExceededError, "manifest.toml is")
    # a bomb: 64 MiB of zeros deflated to ~64 KiB, declared as 100 bytes
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bomb.compress(bytes(64 * 1024 * 1024)) + bomb.flush()
    entries = sync_entries()
    entries[0] = Ref(b"manifest.toml", b"x" * 100, method=8, compressed=zeros)
    data = build(entries).data
    lay = layout_of(data)
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError, match="inflates past 100 bytes"):
            manifest_of(lay, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024
    # declared honestly as 64 MiB: refused at the layout, before any inflation
    entries[0] = Ref(b"manifest.toml", bytes(64 * 1024 * 1024), method=8, compressed=zeros)
    _hostile(build(entries).data, LimitExceededError, "over the limit")


def test_bad_deflate_and_crc():
    entries = sync_entries()
    entries[0] = Ref(b"manifest.toml", MANIFEST, method=8, compressed=b"\xff\xff\xff")
    data = build(entries).data
    with pytest.raises(FormatError, match="DEFLATE"):
        manifest_of(layout_of(data), data)
    entries[0] = Ref(b"manifest.toml", MANIFEST, crc=1, local_crc=1)
    data = build(entries).data
    with pytest.raises(IntegrityError, match="CRC-32 mismatch"):
        manifest_of(layout_of(data), data)
    with pytest.raises(NotFoundError):
        run_sync(read_entry_flow(layout_of(data), "nope", max_size=10), BytesSource(data))
    with pytest.raises(LimitExceededError):
        run_sync(read_entry_flow(layout_of(data), "payload", max_size=3), BytesSource(data))


def test_unsupported_method_for_a_sync_entry():
    entries = sync_entries(context=b"{}")
    entries[3].method = 12
    entries[3].compressed = b"BZh"
    data = build(entries).data
    with pytest.raises(FormatError, match="BZIP2"):
        layout_of(data)
    lay = layout_of(data, strict=False)
    with pytest.raises(FormatError, match="BZIP2"):
        run_sync(read_entry_flow(lay, "context.json", max_size=10), BytesSource(data))


def test_trailing_bytes_after_the_end_record():
    data = build(sync_entries(), trailing=b"garbage").data
    with pytest.raises(FormatError, match="stray bytes"):
        layout_of(data)
    lay = layout_of(data, strict=False)
    assert any("after the ZIP end record" in w for w in lay.warnings)


def test_not_a_zip():
    _hostile(b"hello world, this is just text, long enough", FormatError, "no ZIP end")
    _hostile(b"tiny", FormatError, "too short")


@pytest.mark.parametrize("case, error, match", [
    (dict(locator=dict(offset=2**63)), FormatError, "no ZIP64 end record fits"),
    (dict(locator=dict(disks=3)), FormatError, "multi-disk"),
    (dict(eocd64=dict(total=2**60, on_disk=2**60)), LimitExceededError, "claims"),
    (dict(eocd64=dict(cd_size=2**62)), LimitExceededError, "over the limit"),
    (dict(eocd64=dict(cd_offset=2**62)), FormatError, "runs past"),
    (dict(eocd64=dict(size=2**40)), FormatError, "running past its locator"),
    (dict(eocd64=dict(sig=0)), FormatError, "signature"),
    (dict(eocd64=dict(disk=1)), FormatError, "another disk"),
    (dict(eocd64=dict(total=5)), FormatError, "on this disk"),
])
def test_hostile_zip64_records(case, error, match):
    b = build(sync_entries(zip64=True), zip64_end=True, **case)
    _hostile(b.data, error, match)


def test_zip64_markers_without_a_locator():
    b = build(sync_entries(), eocd=dict(cd_offset=0xFFFFFFFF))
    _hostile(b.data, FormatError, "ZIP64 markers")


# ------------------------------------------------------------------------------ streaming


def test_stream_entry_holds_the_last_piece_until_the_crc_matched():
    payload = bytes(range(256)) * 40
    good = build(sync_entries(payload=payload)).data
    lay = layout_of(good)
    pieces: list[bytes] = []
    n = run_sync(stream_entry_flow(lay, "payload", pieces.append, window_size=1000),
                 BytesSource(good))
    assert n == len(payload) and b"".join(pieces) == payload and len(pieces) == 11
    entries = sync_entries(payload=payload)
    entries[1].crc = entries[1].local_crc = 7
    bad = build(entries).data
    pieces = []
    with pytest.raises(IntegrityError):
        run_sync(stream_entry_flow(layout_of(bad), "payload", pieces.append,
                                   window_size=1000), BytesSource(bad))
    assert sum(map(len, pieces)) < len(payload)
    # deflated entries stream too
    entries = sync_entries(context=payload)
    entries[3].method = 8
    data = build(entries).data
    out: list[bytes] = []
    run_sync(stream_entry_flow(layout_of(data), "context.json", out.append, window_size=100),
             BytesSource(data))
    assert b"".join(out) == payload


def test_zip_crate_model_matches_our_writer_layout():
    data = refzip.zip_crate_sync(MANIFEST, b"1,2\n", context=b"{}")
    lay = layout_of(data)
    assert payload_of(lay, data) == b"1,2\n" and lay.warnings == []


# ------------------------------------------------------------------------------ fuzz

_FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
_BASE = build(sync_entries(context=b"{}"), comment=b"c").data
_BASE64 = build(sync_entries(zip64=True, context=b"{}"), zip64_end=True).data


@_FUZZ
@given(st.data())
def test_mutated_files_give_a_layout_or_a_typed_error(data):
    blob = bytearray(data.draw(st.sampled_from([_BASE, _BASE64])))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(blob) - 40, len(blob)))
    raw = bytes(blob[:max(cut, 0)])
    for strict in (True, False):
        try:
            lay = layout_of(raw, strict=strict)
        except LockboxError:
            continue
        for e in lay.entries.values():  # whatever was accepted is inside the file
            assert e.data_offset is not None and e.data_end <= len(raw)
        try:
            run_sync(read_entry_flow(lay, "manifest.toml", max_size=MAX_MANIFEST_SIZE),
                     BytesSource(raw))
        except LockboxError:
            pass


def test_the_async_driver():
    import asyncio

    from lockbox.drivers import run_async
    from lockbox.sources import AsyncBytesSource

    data = build(sync_entries(payload=b"y" * 70_000)).data
    lay = asyncio.run(run_async(open_layout_flow(len(data)), AsyncBytesSource(data)))
    assert lay.payload_size == 70_000
