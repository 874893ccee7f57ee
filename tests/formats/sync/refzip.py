"""A reference ZIP builder for the tests, written from APPNOTE 6.3.10 with ``struct`` only:
it shares no code with ``lockbox.formats.sync`` (not even its constants), so the reader
is checked against bytes our writer did not make, and the writer against bytes built
another way.

:func:`build` lays out local headers + data (+ data descriptors), the central directory,
optionally the ZIP64 end record and locator, and the end record. Every field can be
overridden per entry (``Ref``) or for the end records, to build hostile files.
:func:`zip_crate_sync` models what sync-rs's builder (the ``zip`` crate 2.x, default
features off, STORED) writes, field by field, from reading that crate's source.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ref", "Built", "build", "sync_entries", "zip_crate_sync", "MANIFEST",
           "MANIFEST_UNKNOWN_KEYS", "WASM_STUB_BYTES"]

WASM_STUB_BYTES = b"\x00\x61\x73\x6d\x01\x00\x00\x00"

MANIFEST = b"""[sync]
version = "1.2"
content_type = "text/csv"
display_ext = "csv"
variant = "plain"

[meta]
created_by = "did:key:z6MkTest"
created_at = "2026-01-01T00:00:00Z"
hash_algo = "blake3"

[policy]
ttl = 3600
timeout = 30
"""

MANIFEST_UNKNOWN_KEYS = MANIFEST + b"""
[permissions]
allow_hosts = ["example.com"]
allow_env = []

[x-vendor]
colour = "blue"
nested = { a = 1, b = [1, 2] }
"""


@dataclass
class Ref:
    """One entry. ``data`` is the content; ``method`` 0 (stored) or 8 (raw deflate).
    Overrides (None: the true value): ``local_name``, ``crc``/``local_crc``,
    ``csize``/``usize`` (central) and ``local_csize``/``local_usize``, ``offset`` (the
    central record's header offset), ``compressed`` (the data bytes written)."""

    name: bytes
    data: bytes = b""
    method: int = 0
    flags: int = 0
    descriptor: bool = False          # bit 3, sizes/CRC zero locally, descriptor after
    descriptor_signature: bool = True
    zip64: bool = False               # ZIP64 extra in both headers, sizes as markers
    local_extra: bytes = b""
    central_extra: bytes = b""
    comment: bytes = b""
    local_name: bytes | None = None
    local_method: int | None = None
    local_flags: int | None = None
    crc: int | None = None
    local_crc: int | None = None
    csize: int | None = None
    usize: int | None = None
    local_csize: int | None = None
    local_usize: int | None = None
    offset: int | None = None
    compressed: bytes | None = None
    version_made_by: int = 0x0314     # Unix, 2.0
    version_needed: int = 20
    dos_time: int = 0x6000            # 12:00:00
    dos_date: int = 0x5A21            # 2025-01-01
    external_attr: int = 0o100644 << 16


@dataclass
class Built:
    data: bytes
    offsets: dict[bytes, int] = field(default_factory=dict)       # local header offsets
    data_offsets: dict[bytes, int] = field(default_factory=dict)
    cd_offset: int = 0
    cd_size: int = 0
    eocd_offset: int = 0
    eocd64_offset: int | None = None


def _z64(*values: int) -> bytes:
    body = b"".join(struct.pack("<Q", v) for v in values)
    return struct.pack("<HH", 1, len(body)) + body


def build(entries: list[Ref], *, comment: bytes = b"", zip64_end: bool = False,
          prefix: bytes = b"", between: bytes = b"", trailing: bytes = b"",
          eocd: dict[str, Any] | None = None, eocd64: dict[str, Any] | None = None,
          locator: dict[str, Any] | None = None) -> Built:
    """The ZIP bytes. ``prefix``: bytes before the first entry (offsets include them);
    ``between``: bytes after the data, before the central directory; ``trailing``: after
    the end record. ``eocd``/``eocd64``/``locator``: field overrides."""
    out = bytearray(prefix)
    built = Built(b"")
    central = []
    for e in entries:
        payload = e.compressed if e.compressed is not None else (
            e.data if e.method == 0 else _deflate(e.data))
        crc = zlib.crc32(e.data)
        usize, csize = len(e.data), len(payload)
        header_offset = len(out)
        built.offsets[e.name] = header_offset
        flags = e.flags | (0x08 if e.descriptor else 0)
        lflags = e.local_flags if e.local_flags is not None else flags
        lname = e.local_name if e.local_name is not None else e.name
        if e.descriptor:
            l_crc, l_c, l_u = 0, 0, 0
        else:
            l_crc, l_c, l_u = crc, csize, usize
        l_crc = e.local_crc if e.local_crc is not None else l_crc
        l_c = e.local_csize if e.local_csize is not None else l_c
        l_u = e.local_usize if e.local_usize is not None else l_u
        lextra = e.local_extra
        if e.zip64:
            lextra = _z64(l_u, l_c) + lextra
            l_c32 = l_u32 = 0xFFFFFFFF
        else:
            l_c32, l_u32 = l_c, l_u
        method = e.method if e.local_method is None else e.local_method
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, e.version_needed, lflags, method,
                           e.dos_time, e.dos_date, l_crc, l_c32, l_u32, len(lname),
                           len(lextra))
        out += lname + lextra
        built.data_offsets[e.name] = len(out)
        out += payload
        if e.descriptor:
            if e.descriptor_signature:
                out += struct.pack("<I", 0x08074B50)
            if e.zip64:
                out += struct.pack("<IQQ", crc, csize, usize)
            else:
                out += struct.pack("<III", crc, csize, usize)
        central.append((e, flags, crc if e.crc is None else e.crc,
                        csize if e.csize is None else e.csize,
                        usize if e.usize is None else e.usize,
                        header_offset if e.offset is None else e.offset))
    out += between
    cd_offset = len(out)
    for e, flags, crc, csize, usize, offset in central:
        cextra = e.central_extra
        if e.zip64:
            cextra = _z64(usize, csize, offset) + cextra
            c32 = u32 = o32 = 0xFFFFFFFF
        else:
            c32, u32, o32 = csize, usize, offset
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, e.version_made_by,
                           e.version_needed, flags, e.method, e.dos_time, e.dos_date, crc,
                           c32, u32, len(e.name), len(cextra), len(e.comment), 0, 0,
                           e.external_attr, o32)
        out += e.name + cextra + e.comment
    cd_size = len(out) - cd_offset
    n = len(entries)
    built.cd_offset, built.cd_size = cd_offset, cd_size
    if zip64_end:
        built.eocd64_offset = len(out)
        f64 = dict(sig=0x06064B50, size=44, made_by=45, needed=45, disk=0, cd_disk=0,
                   on_disk=n, total=n, cd_size=cd_size, cd_offset=cd_offset)
        f64.update(eocd64 or {})
        out += struct.pack("<IQHHIIQQQQ", *f64.values())
        floc = dict(sig=0x07064B50, cd_disk=0, offset=built.eocd64_offset, disks=1)
        floc.update(locator or {})
        out += struct.pack("<IIQI", *floc.values())
    built.eocd_offset = len(out)
    fe = dict(sig=0x06054B50, disk=0, cd_disk=0, on_disk=min(n, 0xFFFF),
              total=min(n, 0xFFFF), cd_size=min(cd_size, 0xFFFFFFFF),
              cd_offset=min(cd_offset, 0xFFFFFFFF), comment_size=len(comment))
    if zip64_end:
        fe.update(on_disk=0xFFFF, total=0xFFFF, cd_size=0xFFFFFFFF, cd_offset=0xFFFFFFFF)
    fe.update(eocd or {})
    out += struct.pack("<IHHHHIIH", *fe.values()) + comment + trailing
    built.data = bytes(out)
    return built


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def sync_entries(manifest: bytes = MANIFEST, payload: bytes = b"a,b\n1,2\n",
                 wasm: bytes | None = WASM_STUB_BYTES, context: bytes | None = None,
                 proof: bytes | None = None, **common: Any) -> list[Ref]:
    """The entries of a ``.sync`` in sync-rs's order (``common``: Ref fields for all)."""
    out = [Ref(b"manifest.toml", manifest, **common), Ref(b"payload", payload, **common)]
    if wasm is not None:
        out.append(Ref(b"sync.wasm", wasm, **common))
    if context is not None:
        out.append(Ref(b"context.json", context, **common))
    if proof is not None:
        out.append(Ref(b"sync.proof", proof, **common))
    return out


def zip_crate_sync(manifest: bytes, payload: bytes, wasm: bytes = WASM_STUB_BYTES,
                   context: bytes | None = None, proof: bytes | None = None) -> bytes:
    """What sync-rs's ``SyncBuilder::write_to`` writes (zip 2.x, STORED, no ``time``
    feature), for files under 4 GiB. From the crate's source: local "version needed" =
    max(compression 10, crypto 10, misc 10) = 10; flags 0 for ASCII names; DOS time 0 and
    date 1980-01-01 (0x0021, ``DateTime::default``); CRC and sizes patched into the local
    header after the data (no descriptor); no extra field. Central: made by
    ``(Unix=3) << 8 | max(10, 10)``, needed 10, external attributes ``0o100644 << 16``
    (``normalize``: 0o644 | S_IFREG). EOCD: no comment, no ZIP64 record below 4 GiB."""
    common = dict(version_made_by=0x030A, version_needed=10, dos_time=0, dos_date=0x0021,
                  external_attr=0o100644 << 16)
    return build(sync_entries(manifest, payload, wasm, context, proof, **common)).data
