"""A pure ZIP codec: the records a ``.sync`` container is made of (APPNOTE 6.3.10).

Decoders take bytes and return frozen dataclasses; encoders return bytes. Nothing here
does I/O, and nothing is allocated from a length read out of the file: every count and
size is checked against the bytes actually given (or against the file size the caller
passes) before it is believed. Errors are ``FormatError`` (malformed),
``TruncatedError`` (the bytes end inside a record) and ``LimitExceededError`` (a count or
size past a bound), each with one line saying which record and which field.

Supported: the end of central directory record (EOCD) with its comment, found by a
backward search; ZIP64 (the EOCD64 locator, the EOCD64 record and the ZIP64
extended-information extra field, in central and local headers); central directory
records; local file headers; general-purpose flags (encrypted entries are refused, data
descriptors are allowed: the sizes then come from the central directory). Not
supported, refused with a clear error: multi-disk (split) archives, encrypted entries,
an encrypted central directory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ...errors import FormatError, TruncatedError

__all__ = [
    "ZipEntry", "LocalHeader", "EndRecord", "Zip64Locator", "Zip64EndRecord",
    "METHOD_STORED", "METHOD_DEFLATE", "FLAG_ENCRYPTED", "FLAG_DATA_DESCRIPTOR",
    "FLAG_STRONG_ENCRYPTION", "FLAG_UTF8", "FLAG_CD_ENCRYPTED",
    "LOCAL_SIG", "CENTRAL_SIG", "EOCD_SIG", "EOCD64_SIG", "LOCATOR64_SIG",
    "DESCRIPTOR_SIG", "LOCAL_HEADER_SIZE", "CENTRAL_HEADER_SIZE", "EOCD_SIZE",
    "EOCD64_SIZE", "LOCATOR64_SIZE", "MAX_COMMENT_SIZE", "MAX_TAIL_SIZE", "ZIP64_EXTRA_ID",
    "U16_MAX", "U32_MAX", "DOS_DATE_1980", "DOS_TIME_0",
    "find_end_record", "decode_end_record", "decode_zip64_locator",
    "decode_zip64_end_record", "decode_central_directory", "decode_central_record",
    "decode_local_header", "parse_extra", "decode_name", "needs_zip64", "method_name",
    "encode_local_header", "encode_central_record", "encode_end_record",
    "encode_zip64_end_record", "encode_zip64_locator", "encode_zip64_extra",
]

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
EOCD64_SIG = b"PK\x06\x06"
LOCATOR64_SIG = b"PK\x06\x07"
DESCRIPTOR_SIG = b"PK\x07\x08"

_LOCAL = struct.Struct("<4sHHHHHIIIHH")            # 30 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")    # 46 bytes
_EOCD = struct.Struct("<4sHHHHIIH")                # 22 bytes
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")            # 56 bytes
_LOCATOR64 = struct.Struct("<4sIQI")               # 20 bytes

LOCAL_HEADER_SIZE = _LOCAL.size
CENTRAL_HEADER_SIZE = _CENTRAL.size
EOCD_SIZE = _EOCD.size
EOCD64_SIZE = _EOCD64.size
LOCATOR64_SIZE = _LOCATOR64.size
MAX_COMMENT_SIZE = 0xFFFF
MAX_TAIL_SIZE = EOCD_SIZE + MAX_COMMENT_SIZE
"""The last bytes of a ZIP that surely hold its EOCD (a 22-byte record + the comment)."""

METHOD_STORED = 0
METHOD_DEFLATE = 8

FLAG_ENCRYPTED = 1 << 0
FLAG_DATA_DESCRIPTOR = 1 << 3
FLAG_STRONG_ENCRYPTION = 1 << 6
FLAG_UTF8 = 1 << 11
FLAG_CD_ENCRYPTED = 1 << 13

ZIP64_EXTRA_ID = 0x0001
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF

DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1   # 1980-01-01: the zip crate's date without a clock
DOS_TIME_0 = 0

_METHOD_NAMES = {0: "STORED", 1: "Shrunk", 6: "Imploded", 8: "DEFLATE", 9: "Deflate64",
                 12: "BZIP2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 99: "AES-encrypted"}


def method_name(method: int) -> str:
    return _METHOD_NAMES.get(method, f"method {method}")


def _show(raw: bytes) -> str:
    """A name as shown in errors (repr of the text, escaped, at most 80 characters)."""
    text = raw.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 80 else text[:77] + "...")


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class ZipEntry:
    """One central directory record, with ZIP64 values resolved.

    ``data_offset`` is None until the entry's local header has been read (it is
    ``header_offset + 30 + local name length + local extra length``: the central record
    alone cannot tell it)."""

    name: str
    method: int
    flags: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    header_offset: int
    raw_name: bytes = b""
    version_made_by: int = 0
    version_needed: int = 0
    mod_time: int = DOS_TIME_0
    mod_date: int = DOS_DATE_1980
    internal_attr: int = 0
    external_attr: int = 0
    extra: bytes = b""
    comment: bytes = b""
    disk_start: int = 0
    record_offset: int = 0        # where this central record is in the file
    zip64: bool = False           # the record used the ZIP64 extra field
    data_offset: int | None = None

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION))

    @property
    def uses_data_descriptor(self) -> bool:
        return bool(self.flags & FLAG_DATA_DESCRIPTOR)

    @property
    def data_end(self) -> int:
        """End of the (compressed) data; requires ``data_offset``."""
        if self.data_offset is None:
            raise FormatError(f"entry {_show(self.raw_name)}: its local header was not read")
        return self.data_offset + self.compressed_size


@dataclass(frozen=True)
class LocalHeader:
    """One local file header (the 30 fixed bytes, the name and the extra field)."""

    version_needed: int
    flags: int
    method: int
    mod_time: int
    mod_date: int
    crc32: int
    compressed_size: int      # ZIP64 values resolved from the local ZIP64 extra
    uncompressed_size: int
    raw_name: bytes
    extra: bytes
    zip64: bool = False

    @property
    def size(self) -> int:
        """Bytes of the header: the data starts this far after the header's offset."""
        return LOCAL_HEADER_SIZE + len(self.raw_name) + len(self.extra)


@dataclass(frozen=True)
class EndRecord:
    """The end of central directory record (values as stored, 16/32-bit)."""

    offset: int                  # where the record is in the file
    disk: int
    cd_disk: int
    entries_on_disk: int
    entries: int
    cd_size: int
    cd_offset: int
    comment: bytes = field(default=b"")

    @property
    def saturated(self) -> bool:
        """Some field holds its ZIP64 marker (the true value is in the EOCD64 record)."""
        return (U16_MAX in (self.disk, self.cd_disk, self.entries_on_disk, self.entries)
                or U32_MAX in (self.cd_size, self.cd_offset))


@dataclass(frozen=True)
class Zip64Locator:
    offset: int                  # where the locator is in the file
    cd_disk: int
    eocd64_offset: int
    disks: int


@dataclass(frozen=True)
class Zip64EndRecord:
    offset: int
    record_size: int             # bytes after the first 12 (44 + extensible data)
    version_made_by: int
    version_needed: int
    disk: int
    cd_disk: int
    entries_on_disk: int
    entries: int
    cd_size: int
    cd_offset: int


# ------------------------------------------------------------------------------ decoding


def find_end_record(tail: bytes, tail_offset: int, file_size: int, *,
                    exact: bool = True) -> EndRecord | None:
    """The EOCD in ``tail`` (the file's bytes from ``tail_offset`` to its end), searched
    backwards; None if ``tail`` holds none.

    A candidate counts when its comment runs exactly to the end of the file (``exact``);
    with ``exact=False`` a candidate whose comment ends before the end (bytes appended
    after the ZIP) is accepted too when no exact one exists. The last exact candidate
    wins, so a comment that contains an EOCD signature cannot hide the real one."""
    if tail_offset + len(tail) != file_size:
        raise ValueError("tail must end at the end of the file")
    loose: EndRecord | None = None
    start = max(0, len(tail) - MAX_TAIL_SIZE)
    pos = tail.rfind(EOCD_SIG, start, len(tail) - EOCD_SIZE + len(EOCD_SIG))
    while pos >= 0:
        comment_size = int.from_bytes(tail[pos + 20: pos + 22], "little")
        end = pos + EOCD_SIZE + comment_size
        if end == len(tail):
            return decode_end_record(tail[pos:], tail_offset + pos)
        if not exact and end < len(tail) and loose is None:
            loose = decode_end_record(tail[pos:end], tail_offset + pos)
        pos = tail.rfind(EOCD_SIG, start, pos)
    return loose


def decode_end_record(data: bytes, offset: int) -> EndRecord:
    """The EOCD at the start of ``data`` (which holds the record and its comment)."""
    if len(data) < EOCD_SIZE:
        raise TruncatedError(f"end of central directory at offset {offset}: {len(data)} "
                             f"bytes, shorter than its {EOCD_SIZE}")
    sig, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment_size = \
        _EOCD.unpack_from(data)
    if sig != EOCD_SIG:
        raise FormatError(f"no end of central directory signature at offset {offset}")
    comment = data[EOCD_SIZE: EOCD_SIZE + comment_size]
    if len(comment) < comment_size:
        raise TruncatedError(f"end of central directory at offset {offset}: the file ends "
                             f"inside its {comment_size}-byte comment")
    return EndRecord(offset, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment)


def decode_zip64_locator(data: bytes, offset: int) -> Zip64Locator | None:
    """The ZIP64 EOCD locator at the start of ``data``, or None if its signature is not
    there (an archive without ZIP64)."""
    if len(data) < LOCATOR64_SIZE or data[:4] != LOCATOR64_SIG:
        return None
    _, cd_disk, eocd64_offset, disks = _LOCATOR64.unpack_from(data)
    return Zip64Locator(offset, cd_disk, eocd64_offset, disks)


def decode_zip64_end_record(data: bytes, offset: int) -> Zip64EndRecord:
    """The ZIP64 EOCD record at the start of ``data``."""
    if len(data) < EOCD64_SIZE:
        raise TruncatedError(f"ZIP64 end of central directory at offset {offset}: "
                             f"{len(data)} bytes, shorter than its {EOCD64_SIZE}")
    (sig, record_size, made_by, needed, disk, cd_disk, on_disk, total, cd_size,
     cd_offset) = _EOCD64.unpack_from(data)
    if sig != EOCD64_SIG:
        raise FormatError(f"no ZIP64 end of central directory signature at offset {offset} "
                          "(where the ZIP64 locator points)")
    if record_size < EOCD64_SIZE - 12:
        raise FormatError(f"ZIP64 end of central directory at offset {offset}: record size "
                          f"{record_size} is below the minimum {EOCD64_SIZE - 12}")
    return Zip64EndRecord(offset, record_size, made_by, needed, disk, cd_disk, on_disk, total,
                          cd_size, cd_offset)


def parse_extra(extra: bytes, where: str, *, strict: bool = True) -> dict[int, bytes]:
    """The extra field's blocks by header id (the first of each id). A block running
    past the field's end is a FormatError (``strict``), else the rest is ignored."""
    blocks: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            if strict:
                raise FormatError(f"{where}: {len(extra) - pos} stray bytes at the end of its "
                                  "extra field")
            break
        block_id, block_size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + block_size > len(extra):
            if strict:
                raise FormatError(f"{where}: extra block 0x{block_id:04x} of {block_size} "
                                  f"bytes runs past the end of the extra field")
            break
        blocks.setdefault(block_id, extra[pos + 4: pos + 4 + block_size])
        pos += 4 + block_size
    return blocks


def _zip64_values(extra: bytes, wanted: list[str], where: str, *, strict: bool
                  ) -> dict[str, int]:
    """The ZIP64 extra's values for the fields in ``wanted`` (in APPNOTE order: 8-byte
    sizes and offset, 4-byte disk), each present only because its 32-bit field is
    saturated."""
    if not wanted:
        return {}
    block = parse_extra(extra, where, strict=strict).get(ZIP64_EXTRA_ID)
    if block is None:
        raise FormatError(f"{where}: {', '.join(wanted)} hold the ZIP64 marker but there is "
                          "no ZIP64 extra field")
    out: dict[str, int] = {}
    pos = 0
    for name in wanted:
        width = 4 if name == "disk start" else 8
        if pos + width > len(block):
            raise FormatError(f"{where}: the ZIP64 extra field ({len(block)} bytes) lacks the "
                              f"{name}")
        out[name] = int.from_bytes(block[pos: pos + width], "little")
        pos += width
    return out


def decode_name(raw: bytes, flags: int) -> str:
    """An entry name: UTF-8 when flag bit 11 says so, or when it is plain ASCII; else
    code page 437 (the APPNOTE default)."""
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"entry name {_show(raw)} is flagged UTF-8 but is not "
                              "UTF-8") from None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def decode_central_record(data: bytes, pos: int, file_offset: int, *,
                          strict: bool = True) -> tuple[ZipEntry, int]:
    """The central directory record at ``data[pos:]`` (``file_offset``: where ``data``
    starts in the file); returns the entry and the position after it."""
    at = file_offset + pos
    if pos + CENTRAL_HEADER_SIZE > len(data):
        raise TruncatedError(f"central directory record at offset {at}: the central "
                             "directory ends inside it")
    (sig, made_by, needed, flags, method, mtime, mdate, crc, csize, usize, name_size,
     extra_size, comment_size, disk_start, internal, external, header_offset) = \
        _CENTRAL.unpack_from(data, pos)
    if sig != CENTRAL_SIG:
        raise FormatError(f"central directory record at offset {at}: bad signature "
                          f"{sig.hex()} (expected {CENTRAL_SIG.hex()})")
    end = pos + CENTRAL_HEADER_SIZE + name_size + extra_size + comment_size
    if end > len(data):
        raise TruncatedError(f"central directory record at offset {at}: its name, extra "
                             f"field and comment ({name_size}+{extra_size}+{comment_size} "
                             "bytes) run past the end of the central directory")
    p = pos + CENTRAL_HEADER_SIZE
    raw_name = bytes(data[p: p + name_size])
    extra = bytes(data[p + name_size: p + name_size + extra_size])
    comment = bytes(data[p + name_size + extra_size: end])
    where = f"central directory record of {_show(raw_name)}"
    if flags & FLAG_CD_ENCRYPTED:
        raise FormatError(f"{where}: the central directory is encrypted (not supported)")
    wanted = [n for n, v in (("uncompressed size", usize), ("compressed size", csize),
                             ("header offset", header_offset)) if v == U32_MAX]
    if disk_start == U16_MAX:
        wanted.append("disk start")
    values = _zip64_values(extra, wanted, where, strict=strict)
    usize = values.get("uncompressed size", usize)
    csize = values.get("compressed size", csize)
    header_offset = values.get("header offset", header_offset)
    disk_start = values.get("disk start", disk_start)
    if disk_start != 0:
        raise FormatError(f"{where}: the entry starts on disk {disk_start} (multi-disk ZIP "
                          "archives are not supported)")
    entry = ZipEntry(decode_name(raw_name, flags), method, flags, crc, csize, usize,
                     header_offset, raw_name, made_by, needed, mtime, mdate, internal,
                     external, extra, comment, disk_start, at, bool(wanted))
    return entry, end


def decode_central_directory(data: bytes, file_offset: int, count: int, *,
                             strict: bool = True) -> list[ZipEntry]:
    """``count`` central directory records from ``data`` (the whole central directory,
    at ``file_offset``). The count is checked against the bytes first (a record is at
    least 46 bytes), so a lying count allocates nothing; in ``strict`` mode the records
    must fill the central directory exactly."""
    if count * CENTRAL_HEADER_SIZE > len(data):
        raise FormatError(f"the end record claims {count} entries, more than a "
                          f"{len(data)}-byte central directory at offset {file_offset} "
                          "can hold")
    entries: list[ZipEntry] = []
    pos = 0
    for _ in range(count):
        entry, pos = decode_central_record(data, pos, file_offset, strict=strict)
        entries.append(entry)
    if strict and pos != len(data):
        raise FormatError(f"the central directory at offset {file_offset} is {len(data)} "
                          f"bytes but its {count} records take {pos}")
    return entries


def decode_local_header(data: bytes, offset: int, *, strict: bool = True) -> LocalHeader:
    """The local file header at the start of ``data`` (at ``offset`` in the file), with
    its name and extra field (``data`` must hold them: TruncatedError otherwise)."""
    if len(data) < LOCAL_HEADER_SIZE:
        raise TruncatedError(f"local header at offset {offset}: the file ends inside it")
    (sig, needed, flags, method, mtime, mdate, crc, csize, usize, name_size,
     extra_size) = _LOCAL.unpack_from(data)
    if sig != LOCAL_SIG:
        raise FormatError(f"local header at offset {offset}: bad signature {sig.hex()} "
                          f"(expected {LOCAL_SIG.hex()})")
    end = LOCAL_HEADER_SIZE + name_size + extra_size
    if end > len(data):
        raise TruncatedError(f"local header at offset {offset}: its {name_size}-byte name "
                             f"and {extra_size}-byte extra field are cut short")
    raw_name = bytes(data[LOCAL_HEADER_SIZE: LOCAL_HEADER_SIZE + name_size])
    extra = bytes(data[LOCAL_HEADER_SIZE + name_size: end])
    wanted = [n for n, v in (("uncompressed size", usize), ("compressed size", csize))
              if v == U32_MAX]
    zip64 = False
    if wanted:
        where = f"local header of {_show(raw_name)} at offset {offset}"
        block = parse_extra(extra, where, strict=strict).get(ZIP64_EXTRA_ID)
        if block is None:
            raise FormatError(f"{where}: its sizes hold the ZIP64 marker but there is no "
                              "ZIP64 extra field")
        # APPNOTE 4.5.3: in a local header the block holds BOTH sizes when either is set.
        if len(block) >= 16:
            usize = int.from_bytes(block[0:8], "little")
            csize = int.from_bytes(block[8:16], "little")
        else:
            values = _zip64_values(extra, wanted, where, strict=strict)
            usize = values.get("uncompressed size", usize)
            csize = values.get("compressed size", csize)
        zip64 = True
    return LocalHeader(needed, flags, method, mtime, mdate, crc, csize, usize, raw_name, extra,
                       zip64)


def needs_zip64(value: int) -> bool:
    """A 32-bit size or offset field cannot hold ``value`` (0xFFFFFFFF itself is the
    marker, so it needs ZIP64 too)."""
    return value >= U32_MAX


# ------------------------------------------------------------------------------ encoding


def encode_zip64_extra(values: list[int]) -> bytes:
    """A ZIP64 extended-information extra block holding ``values`` (8 bytes each, in the
    order APPNOTE gives: uncompressed size, compressed size, header offset)."""
    if not values:
        return b""
    body = b"".join(struct.pack("<Q", v) for v in values)
    return struct.pack("<HH", ZIP64_EXTRA_ID, len(body)) + body


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= U16_MAX:
        raise FormatError(f"{what} {value} does not fit a ZIP header")
    return value


def encode_local_header(*, raw_name: bytes, method: int, crc32: int, compressed_size: int,
                        uncompressed_size: int, flags: int = 0, version_needed: int = 10,
                        mod_time: int = DOS_TIME_0, mod_date: int = DOS_DATE_1980,
                        zip64: bool = False, extra: bytes = b"") -> bytes:
    """A local file header. ``zip64``: the sizes go into a ZIP64 extra block (both, as
    APPNOTE requires in a local header) and the 32-bit fields hold the marker;
    ``extra`` is appended after it."""
    if zip64:
        extra = encode_zip64_extra([uncompressed_size, compressed_size]) + extra
        csize32 = usize32 = U32_MAX
    else:
        if needs_zip64(compressed_size) or needs_zip64(uncompressed_size):
            raise FormatError("a size of 4 GiB or more needs a ZIP64 local header")
        csize32, usize32 = compressed_size, uncompressed_size
    return _LOCAL.pack(LOCAL_SIG, version_needed, flags, method, mod_time, mod_date, crc32,
                       csize32, usize32, _u16(len(raw_name), "name length"),
                       _u16(len(extra), "extra length")) + raw_name + extra


def encode_central_record(entry: ZipEntry, *, extra: bytes = b"",
                          force_zip64: bool = False) -> bytes:
    """A central directory record for ``entry`` (``extra`` is its extra field after the
    ZIP64 block). A ZIP64 block comes first for every field that needs it -- or, with
    ``force_zip64``, for all three (sizes and offset), their 32-bit fields holding the
    marker."""
    values = (entry.uncompressed_size, entry.compressed_size, entry.header_offset)
    big = [v for v in values if force_zip64 or needs_zip64(v)]
    usize, csize, offset = (U32_MAX if force_zip64 else min(v, U32_MAX) for v in values)
    full_extra = encode_zip64_extra(big) + extra
    return _CENTRAL.pack(
        CENTRAL_SIG, entry.version_made_by, entry.version_needed, entry.flags, entry.method,
        entry.mod_time, entry.mod_date, entry.crc32, csize, usize,
        _u16(len(entry.raw_name), "name length"), _u16(len(full_extra), "extra length"),
        _u16(len(entry.comment), "comment length"), 0, entry.internal_attr,
        entry.external_attr, offset,
    ) + entry.raw_name + full_extra + entry.comment


def encode_end_record(*, entries: int, cd_size: int, cd_offset: int, comment: bytes = b"",
                      markers: bool = False) -> bytes:
    """The EOCD; a value too large for it holds the marker (``markers``: all of them
    do), and then the ZIP64 records must come before it."""
    n = U16_MAX if markers else min(entries, U16_MAX)
    size32 = U32_MAX if markers else min(cd_size, U32_MAX)
    offset32 = U32_MAX if markers else min(cd_offset, U32_MAX)
    return _EOCD.pack(EOCD_SIG, 0, 0, n, n, size32, offset32,
                      _u16(len(comment), "comment length")) + comment


def encode_zip64_end_record(*, entries: int, cd_size: int, cd_offset: int,
                            version_made_by: int = 45, version_needed: int = 45) -> bytes:
    return _EOCD64.pack(EOCD64_SIG, EOCD64_SIZE - 12, version_made_by, version_needed, 0, 0,
                        entries, entries, cd_size, cd_offset)


def encode_zip64_locator(eocd64_offset: int) -> bytes:
    return _LOCATOR64.pack(LOCATOR64_SIG, 0, eocd64_offset, 1)
