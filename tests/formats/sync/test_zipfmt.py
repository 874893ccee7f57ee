"""The pure ZIP codec: records decoded from bytes built by ``refzip`` (independent of the
codec), encoders checked against the decoders and CPython's ``zipfile``, hostile values
refused with typed errors and no allocation from them, and a short fuzz."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockbox.errors import FormatError, LockboxError, TruncatedError
from lockbox.formats.sync import zipfmt as zf

from . import refzip
from .refzip import Ref, build

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _eocd(b: refzip.Built) -> zf.EndRecord:
    rec = zf.find_end_record(b.data, 0, len(b.data))
    assert rec is not None
    return rec


def test_end_record_fields_and_comment():
    b = build([Ref(b"a", b"1"), Ref(b"bb", b"22")], comment=b"hello")
    rec = _eocd(b)
    assert (rec.offset, rec.entries, rec.entries_on_disk, rec.cd_offset, rec.cd_size,
            rec.comment) == (b.eocd_offset, 2, 2, b.cd_offset, b.cd_size, b"hello")
    assert not rec.saturated


def test_a_comment_holding_an_end_record_signature_does_not_hide_the_real_one():
    fake = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 9, 9, 1, 1, 40)  # its comment
    b = build([Ref(b"a", b"1")], comment=b"xx" + fake + b"tail")      # would run past
    rec = _eocd(b)
    assert rec.offset == b.eocd_offset and rec.entries == 1


def test_a_fake_record_at_the_very_end_of_a_comment_wins_only_if_consistent():
    # the comment ends with a record whose own comment length 0 reaches the end: the
    # last consistent candidate is the one a reader must take (CPython does the same)
    fake = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 7, 7, 0, 0, 0)
    b = build([Ref(b"a", b"1")], comment=fake)
    assert _eocd(b).entries == 7


def test_no_end_record_and_trailing_bytes():
    b = build([Ref(b"a", b"1")], trailing=b"junk")
    assert zf.find_end_record(b.data, 0, len(b.data)) is None
    loose = zf.find_end_record(b.data, 0, len(b.data), exact=False)
    assert loose is not None and loose.offset == b.eocd_offset
    assert zf.find_end_record(b"\0" * 100, 0, 100) is None
    assert zf.find_end_record(b"", 0, 0) is None


def test_end_record_search_is_bounded_to_the_largest_comment():
    b = build([Ref(b"a", b"1")])
    data = b.data + b"\0" * (zf.MAX_TAIL_SIZE + 10)   # the record is now too far back
    assert zf.find_end_record(data, 0, len(data), exact=False) is None


def test_truncated_end_record_comment():
    rec = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 46, 0, 500) + b"short"
    with pytest.raises(TruncatedError, match="comment"):
        zf.decode_end_record(rec, 0)
    with pytest.raises(TruncatedError):
        zf.decode_end_record(rec[:10], 0)


def test_central_records_and_local_headers_from_the_reference_builder():
    b = build([Ref(b"manifest.toml", b"m" * 10, method=8), Ref(b"payload", b"p" * 100,
                                                                 local_extra=b"\x99\x99\x02\x00ab")])
    rec = _eocd(b)
    cd = b.data[rec.cd_offset: rec.cd_offset + rec.cd_size]
    entries = zf.decode_central_directory(cd, rec.cd_offset, rec.entries)
    m, p = entries
    assert (m.name, m.method, m.uncompressed_size, m.header_offset) == \
        ("manifest.toml", 8, 10, 0)
    assert (p.name, p.method, p.compressed_size, p.uncompressed_size, p.header_offset) == \
        ("payload", 0, 100, 100, b.offsets[b"payload"])
    local = zf.decode_local_header(b.data[p.header_offset:], p.header_offset)
    assert local.raw_name == b"payload" and local.extra == b"\x99\x99\x02\x00ab"
    assert p.header_offset + local.size == b.data_offsets[b"payload"]
    assert (local.crc32, local.compressed_size) == (p.crc32, 100)


def test_zip64_values_come_from_the_extra_field():
    big = Ref(b"payload", b"x" * 5, zip64=True)
    b = build([big], zip64_end=True)
    rec = _eocd(b)
    assert rec.saturated
    loc = zf.decode_zip64_locator(b.data[rec.offset - 20:], rec.offset - 20)
    assert loc is not None and loc.eocd64_offset == b.eocd64_offset
    r64 = zf.decode_zip64_end_record(b.data[loc.eocd64_offset:], loc.eocd64_offset)
    assert (r64.entries, r64.cd_offset, r64.cd_size) == (1, b.cd_offset, b.cd_size)
    (e,) = zf.decode_central_directory(b.data[b.cd_offset:b.cd_offset + b.cd_size],
                                       b.cd_offset, 1)
    assert e.zip64 and (e.compressed_size, e.uncompressed_size, e.header_offset) == (5, 5, 0)
    local = zf.decode_local_header(b.data, 0)
    assert local.zip64 and (local.compressed_size, local.uncompressed_size) == (5, 5)


def test_zip64_marker_without_extra_or_with_a_short_extra():
    cd = build([Ref(b"p", b"x", csize=0xFFFFFFFF)])
    data = cd.data[cd.cd_offset: cd.cd_offset + cd.cd_size]
    with pytest.raises(FormatError, match="no ZIP64 extra"):
        zf.decode_central_directory(data, cd.cd_offset, 1)
    short = build([Ref(b"p", b"x", usize=0xFFFFFFFF, csize=0xFFFFFFFF,
                       central_extra=struct.pack("<HHQ", 1, 8, 1))])
    data = short.data[short.cd_offset: short.cd_offset + short.cd_size]
    with pytest.raises(FormatError, match="lacks the compressed size"):
        zf.decode_central_directory(data, short.cd_offset, 1)


def test_multi_disk_and_encrypted_central_directory_are_refused():
    b = build([Ref(b"p", b"x")])
    cd = bytearray(b.data[b.cd_offset: b.cd_offset + b.cd_size])
    cd[34:36] = struct.pack("<H", 2)  # disk number start
    with pytest.raises(FormatError, match="multi-disk"):
        zf.decode_central_directory(bytes(cd), b.cd_offset, 1)
    cd = bytearray(b.data[b.cd_offset: b.cd_offset + b.cd_size])
    cd[8:10] = struct.pack("<H", 1 << 13)
    with pytest.raises(FormatError, match="encrypted"):
        zf.decode_central_directory(bytes(cd), b.cd_offset, 1)


def test_a_lying_count_is_refused_before_any_record_is_decoded():
    b = build([Ref(b"p", b"x")])
    cd = b.data[b.cd_offset: b.cd_offset + b.cd_size]
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="more than"):
            zf.decode_central_directory(cd, b.cd_offset, 2**62)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_records_running_past_the_central_directory():
    b = build([Ref(b"p", b"x", comment=b"c" * 10)])
    cd = b.data[b.cd_offset: b.cd_offset + b.cd_size]
    with pytest.raises(TruncatedError, match="run past"):
        zf.decode_central_directory(cd[:-3], b.cd_offset, 1)
    with pytest.raises(TruncatedError, match="ends inside"):
        zf.decode_central_record(cd[:20], 0, b.cd_offset)
    with pytest.raises(FormatError, match="take"):
        zf.decode_central_directory(cd + b"\0" * 4, b.cd_offset, 1)
    assert len(zf.decode_central_directory(cd + b"\0" * 4, b.cd_offset, 1, strict=False)) == 1
    with pytest.raises(FormatError, match="signature"):
        zf.decode_central_record(b"\0" * 46, 0, 0)


def test_local_header_errors():
    b = build([Ref(b"payload", b"x" * 3)])
    with pytest.raises(TruncatedError):
        zf.decode_local_header(b.data[:20], 0)
    with pytest.raises(TruncatedError, match="cut short"):
        zf.decode_local_header(b.data[:33], 0)
    with pytest.raises(FormatError, match="signature"):
        zf.decode_local_header(b"\0" * 40, 0)
    z64 = build([Ref(b"payload", b"x", local_csize=0xFFFFFFFF)])
    with pytest.raises(FormatError, match="no ZIP64 extra"):
        zf.decode_local_header(z64.data, 0)


def test_extra_field_parsing_strict_and_lenient():
    good = struct.pack("<HH", 0x5455, 1) + b"\x03" + struct.pack("<HH", 1, 0)
    assert zf.parse_extra(good, "x") == {0x5455: b"\x03", 1: b""}
    bad = struct.pack("<HH", 0x5455, 9) + b"\x03"
    with pytest.raises(FormatError, match="runs past"):
        zf.parse_extra(bad, "x")
    assert zf.parse_extra(bad, "x", strict=False) == {}
    with pytest.raises(FormatError, match="stray"):
        zf.parse_extra(good + b"\x01", "x")


def test_names():
    assert zf.decode_name(b"payload", 0) == "payload"
    assert zf.decode_name("é".encode(), zf.FLAG_UTF8) == "é"
    assert zf.decode_name(b"\x82", 0) == "é"  # code page 437
    with pytest.raises(FormatError, match="UTF-8"):
        zf.decode_name(b"\xff", zf.FLAG_UTF8)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("sizes", [(5, 5, 100), (2**32 + 7, 2**32 + 7, 2**33), (7, 7, 2**32)])
def test_encoders_round_trip_through_the_decoders(force, sizes):
    csize, usize, offset = sizes
    e = zf.ZipEntry("payload", 0, 0, 0x12345678, csize, usize, offset, b"payload",
                    0x032D, 45, 0, 0x21, 0, 0o100644 << 16)
    rec = zf.encode_central_record(e, force_zip64=force)
    got, end = zf.decode_central_record(rec, 0, 1000)
    assert end == len(rec)
    assert (got.compressed_size, got.uncompressed_size, got.header_offset, got.crc32) == \
        (csize, usize, offset, 0x12345678)
    assert got.zip64 == (force or max(sizes) >= 0xFFFFFFFF)
    big = force or zf.needs_zip64(csize)
    local = zf.encode_local_header(raw_name=b"payload", method=0, crc32=1,
                                   compressed_size=csize, uncompressed_size=usize,
                                   zip64=big)
    h = zf.decode_local_header(local, 0)
    assert (h.compressed_size, h.uncompressed_size, h.zip64, h.size) == \
        (csize, usize, big, len(local))
    if not big:
        return
    with pytest.raises(FormatError, match="ZIP64"):
        zf.encode_local_header(raw_name=b"p", method=0, crc32=0, compressed_size=2**32,
                               uncompressed_size=2**32)


def test_end_records_encode_and_decode():
    e = zf.encode_end_record(entries=3, cd_size=100, cd_offset=2**33, comment=b"c")
    rec = zf.decode_end_record(e, 0)
    assert (rec.entries, rec.cd_size, rec.cd_offset, rec.comment) == (3, 100, 0xFFFFFFFF, b"c")
    assert rec.saturated
    r64 = zf.decode_zip64_end_record(zf.encode_zip64_end_record(entries=3, cd_size=100,
                                                                cd_offset=2**33), 7)
    assert (r64.entries, r64.cd_size, r64.cd_offset, r64.record_size) == (3, 100, 2**33, 44)
    loc = zf.decode_zip64_locator(zf.encode_zip64_locator(2**33), 0)
    assert loc is not None and loc.eocd64_offset == 2**33 and loc.disks == 1
    assert zf.decode_zip64_locator(b"\0" * 20, 0) is None
    bad = bytearray(zf.encode_zip64_end_record(entries=1, cd_size=1, cd_offset=1))
    bad[4:12] = struct.pack("<Q", 10)
    with pytest.raises(FormatError, match="minimum"):
        zf.decode_zip64_end_record(bytes(bad), 0)
    with pytest.raises(FormatError, match="signature"):
        zf.decode_zip64_end_record(b"\0" * 56, 0)
    with pytest.raises(TruncatedError):
        zf.decode_zip64_end_record(b"\0" * 50, 0)


def test_encoded_records_are_what_cpython_zipfile_reads():
    raw = b"payload"
    data = b"hello"
    crc = __import__("zlib").crc32(data)
    local = zf.encode_local_header(raw_name=raw, method=0, crc32=crc, compressed_size=5,
                                   uncompressed_size=5, zip64=True)
    e = zf.ZipEntry("payload", 0, 0, crc, 5, 5, 0, raw, 0x032D, 45, 0, 0x21, 0,
                    0o100644 << 16)
    cd = zf.encode_central_record(e, force_zip64=True)
    cd_offset = len(local) + 5
    blob = local + data + cd
    eocd64_offset = len(blob)
    blob += zf.encode_zip64_end_record(entries=1, cd_size=len(cd), cd_offset=cd_offset)
    blob += zf.encode_zip64_locator(eocd64_offset)
    blob += zf.encode_end_record(entries=1, cd_size=len(cd), cd_offset=cd_offset,
                                 markers=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert z.read("payload") == data and z.testzip() is None


# ------------------------------------------------------------------------------ fuzz

@FUZZ
@given(st.binary(max_size=400), st.integers(0, 2**64 - 1))
def test_decoders_on_random_bytes_raise_only_typed_errors(blob, count):
    for fn in (lambda: zf.decode_central_directory(blob, 0, count % 5000),
               lambda: zf.decode_central_directory(blob, 0, count, strict=False),
               lambda: zf.decode_local_header(blob, 0),
               lambda: zf.decode_local_header(blob, 0, strict=False),
               lambda: zf.decode_end_record(blob, 0),
               lambda: zf.decode_zip64_end_record(blob, 0),
               lambda: zf.find_end_record(blob, 0, len(blob), exact=False),
               lambda: zf.parse_extra(blob, "x")):
        try:
            fn()
        except LockboxError:
            pass


@FUZZ
@given(st.data())
def test_mutated_central_records_raise_only_typed_errors(data):
    b = build([Ref(b"manifest.toml", b"m"), Ref(b"payload", b"p" * 9, zip64=True)],
              zip64_end=True)
    cd = bytearray(b.data[b.cd_offset: b.cd_offset + b.cd_size])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(cd) - 1))
        cd[i] = data.draw(st.integers(0, 255))
    try:
        for e in zf.decode_central_directory(bytes(cd), b.cd_offset, 2):
            assert e.compressed_size < 2**64 and e.header_offset < 2**64
    except LockboxError:
        pass
