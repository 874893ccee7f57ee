"""Writing ``.sync`` containers in sync-rs's layout, byte for byte.

sync-rs's builder (``sync-format/src/builder.rs``) writes with the ``zip`` crate 2.x
(default features off) and STORED entries, in the order ``manifest.toml``, ``payload``,
``sync.wasm``, ``context.json``, ``sync.proof``. We write what that crate writes for such
a file: local headers "version needed" 1.0 (4.5 for a ZIP64 entry), no flags (bit 11 for
a non-ASCII name), method 0, the DOS time 1980-01-01 00:00 (the crate's date without a
clock), CRC and sizes in the local header (no data descriptor), no extra field; central
records "made by" Unix 1.0, external attributes ``0o100644 << 16``; an EOCD without
comment, preceded by the ZIP64 end record and locator when an offset or size needs
them. ZIP64 differs from the crate (which needs ``large_file`` set in advance and then
writes ZIP64 fields for every size): an entry of 4 GiB or more gets a local ZIP64 block
with both sizes, and central ZIP64 blocks hold exactly the fields that overflow
(APPNOTE 4.5.3), which CPython's ``zipfile`` and the crate both read.

The payload may be a file object: it is copied in 1 MiB pieces (memory stays bounded)
with its CRC computed while copying, then the CRC is written into the local header (the
output must be seekable, as the crate requires too). :func:`rewrite_sync_file` replaces
the manifest and/or the payload of an existing file, copies every other entry's bytes
unchanged, and publishes the result atomically (``lockbox.fileio``): on any failure the
original file is untouched.
"""

from __future__ import annotations

import io
import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import BinaryIO

from ... import fileio
from ...drivers import run_sync
from ...errors import FormatError, StorageError, UsageError
from ...ranges import ByteRange
from ...sources import open_source
from .container import (
    CONTEXT_NAME,
    MANIFEST_NAME,
    PAYLOAD_NAME,
    PROOF_NAME,
    WASM_NAME,
    WASM_STUB,
    SyncLayout,
    open_layout_flow,
)
from .zipfmt import (
    DOS_DATE_1980,
    DOS_TIME_0,
    FLAG_DATA_DESCRIPTOR,
    FLAG_UTF8,
    METHOD_DEFLATE,
    METHOD_STORED,
    U16_MAX,
    ZipEntry,
    decode_central_record,
    encode_central_record,
    encode_end_record,
    encode_local_header,
    encode_zip64_end_record,
    encode_zip64_locator,
    needs_zip64,
)

__all__ = ["encode_sync", "sync_bytes", "write_sync_file", "rewrite_sync_file",
           "encode_rewritten_sync", "rewrite_sync_bytes", "COPY_PIECE_SIZE",
           "UNIX_FILE_ATTR"]

COPY_PIECE_SIZE = 1024 * 1024
"""Bytes copied at a time from a payload file object (and when rewriting)."""

UNIX_FILE_ATTR = 0o100644 << 16
"""External attributes of every entry: a regular file, rw-r--r-- (the crate's default)."""

_SYSTEM_UNIX = 3
_ZEROS = bytes(COPY_PIECE_SIZE)

Payload = bytes | bytearray | memoryview | BinaryIO


def _stream_size(f: BinaryIO) -> int:
    """Bytes from ``f``'s position to its end (its size goes into the local header)."""
    try:
        start = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(start)
    except (OSError, AttributeError, ValueError) as e:
        raise UsageError(f"the payload stream must be seekable (its size goes before its "
                         f"bytes): {e}") from None
    return max(0, end - start)


def _segments(f: BinaryIO, start: int, size: int) -> Iterator[tuple[bool, int]]:
    """``(is_hole, length)`` runs covering ``size`` bytes of ``f`` from ``start``:
    holes of a sparse file (SEEK_HOLE/SEEK_DATA) where the system tells them, else one
    run of data."""
    end = start + size
    try:
        fd = f.fileno()
        os.lseek(fd, start, os.SEEK_HOLE)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        if size:
            yield False, size
        return
    pos = start
    while pos < end:
        try:
            data = min(os.lseek(fd, pos, os.SEEK_DATA), end)
        except OSError:  # ENXIO: only a hole up to the end of the file
            data = end
        if data > pos:
            yield True, data - pos
            pos = data
            continue
        try:
            hole = min(os.lseek(fd, pos, os.SEEK_HOLE), end)
        except OSError:
            hole = end
        if hole <= pos:
            hole = end
        yield False, hole - pos
        pos = hole


class _ZipOut:
    """Entries written one after the other to a seekable binary file, then the central
    directory and the end records. Offsets are relative to where ``out`` was when this
    started (the ZIP starts there)."""

    def __init__(self, out: BinaryIO, force_zip64: bool = False, *,
                 sparse: bool = False) -> None:
        self.out = out
        self.sparse = sparse  # a fresh file: runs of zeros may be left as holes
        try:
            self.base = out.tell()
        except (OSError, AttributeError) as e:
            raise UsageError(f"the output must be a seekable binary file: {e}") from None
        self.force_zip64 = force_zip64
        self.entries: list[ZipEntry] = []
        self.pos = 0

    def _write(self, data: bytes | memoryview) -> None:
        n = self.out.write(data)
        if n is not None and n != len(data):
            raise StorageError(f"short write: {n} of {len(data)} bytes")
        self.pos += len(data)

    def _start(self, name: str, *, method: int, crc: int, csize: int, usize: int,
               flags: int = 0, mod_time: int = DOS_TIME_0, mod_date: int = DOS_DATE_1980,
               external_attr: int = UNIX_FILE_ATTR, internal_attr: int = 0,
               comment: bytes = b"") -> ZipEntry:
        raw = name.encode("utf-8")
        if not raw or len(raw) > U16_MAX:
            raise UsageError(f"invalid entry name {name!r}")
        flags &= ~FLAG_DATA_DESCRIPTOR
        flags = (flags | FLAG_UTF8) if not raw.isascii() else (flags & ~FLAG_UTF8)
        zip64 = self.force_zip64 or needs_zip64(csize) or needs_zip64(usize)
        needed = 45 if zip64 else (20 if method == METHOD_DEFLATE else 10)
        entry = ZipEntry(name, method, flags, crc, csize, usize, self.pos, raw,
                         (_SYSTEM_UNIX << 8) | needed, needed, mod_time, mod_date,
                         internal_attr, external_attr, b"", comment, 0, 0, zip64)
        header = encode_local_header(raw_name=raw, method=method, crc32=crc,
                                     compressed_size=csize, uncompressed_size=usize,
                                     flags=flags, version_needed=needed, mod_time=mod_time,
                                     mod_date=mod_date, zip64=zip64)
        entry = replace(entry, data_offset=self.pos + len(header))
        self._write(header)
        self.entries.append(entry)
        return entry

    def add_bytes(self, name: str, data: bytes | bytearray | memoryview) -> ZipEntry:
        """A STORED entry from bytes."""
        view = memoryview(data).cast("B")
        entry = self._start(name, method=METHOD_STORED, crc=zlib.crc32(view),
                            csize=len(view), usize=len(view))
        self._write(view)
        return entry

    def add_stream(self, name: str, f: BinaryIO) -> ZipEntry:
        """A STORED entry copied from a file object (from its position to its end) in
        bounded pieces; the CRC is computed while copying and written back into the local
        header. Holes of a sparse file are not read (their CRC is that of zeros), and
        stay holes in a fresh output file."""
        size = _stream_size(f)
        start = f.tell()
        entry = self._start(name, method=METHOD_STORED, crc=0, csize=size, usize=size)
        crc = 0
        copied = 0
        for hole, length in _segments(f, start, size):
            if hole:
                done = 0
                while done < length:
                    n = min(COPY_PIECE_SIZE, length - done)
                    zeros = _ZEROS if n == COPY_PIECE_SIZE else _ZEROS[:n]
                    crc = zlib.crc32(zeros, crc)
                    self._zeros_or_hole(zeros)
                    done += n
                copied += length
                continue
            f.seek(start + copied)
            done = 0
            while done < length:
                piece = f.read(min(COPY_PIECE_SIZE, length - done))
                if not piece:
                    break
                crc = zlib.crc32(piece, crc)
                done += len(piece)
                if self.sparse and piece == (_ZEROS if len(piece) == COPY_PIECE_SIZE
                                             else _ZEROS[:len(piece)]):
                    self._zeros_or_hole(piece)
                else:
                    self._write(piece)
            copied += done
            if done < length:
                break
        f.seek(start + copied)
        if copied != size or f.read(1):
            raise StorageError(f"the payload changed while it was copied ({size} bytes "
                               f"expected, {copied}{'+' if copied == size else ''} read)")
        end = self.base + self.pos
        self.out.seek(self.base + entry.header_offset + 14)
        self.out.write(crc.to_bytes(4, "little"))
        self.out.seek(end)
        entry = replace(entry, crc32=crc)
        self.entries[-1] = entry
        return entry

    def _zeros_or_hole(self, zeros: bytes) -> None:
        if self.sparse:
            self.out.seek(len(zeros), io.SEEK_CUR)  # something is always written after
            self.pos += len(zeros)
        else:
            self._write(zeros)

    def add_raw(self, entry: ZipEntry, pieces: Iterator[bytes]) -> ZipEntry:
        """An entry copied as it is (its compressed bytes, method, CRC and sizes) from
        another ZIP: ``pieces`` are its data."""
        new = self._start(entry.name, method=entry.method, crc=entry.crc32,
                          csize=entry.compressed_size, usize=entry.uncompressed_size,
                          flags=entry.flags, mod_time=entry.mod_time,
                          mod_date=entry.mod_date, external_attr=entry.external_attr,
                          internal_attr=entry.internal_attr, comment=entry.comment)
        copied = 0
        for piece in pieces:
            copied += len(piece)
            self._write(piece)
        if copied != entry.compressed_size:
            raise StorageError(f"entry {entry.name!r}: {copied} bytes copied, "
                               f"{entry.compressed_size} expected")
        return new

    def finish(self, comment: bytes = b"") -> SyncLayout:
        cd_offset = self.pos
        entries: list[ZipEntry] = []
        for e in self.entries:
            record = encode_central_record(e, force_zip64=self.force_zip64)
            # the entry as a reader will decode it (record offset, ZIP64 extra ...)
            decoded, _ = decode_central_record(record, 0, self.pos)
            entries.append(replace(decoded, data_offset=e.data_offset))
            self._write(record)
        cd_size = self.pos - cd_offset
        n = len(entries)
        zip64 = self.force_zip64 or n >= U16_MAX or needs_zip64(cd_offset) or \
            needs_zip64(cd_size)
        if zip64:
            needed = max([10] + [e.version_needed for e in entries])
            eocd64_offset = self.pos
            self._write(encode_zip64_end_record(entries=n, cd_size=cd_size,
                                                cd_offset=cd_offset, version_made_by=needed,
                                                version_needed=needed))
            self._write(encode_zip64_locator(eocd64_offset))
        self._write(encode_end_record(entries=n, cd_size=cd_size, cd_offset=cd_offset,
                                      comment=comment, markers=self.force_zip64))
        self.out.flush()
        return SyncLayout(self.pos, {e.name: e for e in entries}, True, [], comment,
                          zip64, cd_offset, cd_size)


def _add_payload(z: _ZipOut, payload: Payload) -> None:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        z.add_bytes(PAYLOAD_NAME, payload)
    else:
        z.add_stream(PAYLOAD_NAME, payload)


def encode_sync(*, manifest_toml: bytes, payload: Payload, wasm: bytes | None = None,
                context: bytes | None = None, proof: bytes | None = None, out: BinaryIO,
                force_zip64: bool = False, comment: bytes = b"",
                _sparse: bool = False) -> SyncLayout:
    """Write a ``.sync`` to ``out`` (a seekable binary file, at its current position):
    ``manifest.toml``, ``payload`` (bytes, or a file object copied from its position to
    its end in bounded memory), ``sync.wasm`` (:data:`WASM_STUB` when None),
    ``context.json`` and ``sync.proof`` when given, all STORED, in that order. Returns
    the layout written (offsets relative to where ``out`` was). ``force_zip64`` writes
    every ZIP64 field even when nothing needs it (for tests and interop checks)."""
    z = _ZipOut(out, force_zip64, sparse=_sparse)
    z.add_bytes(MANIFEST_NAME, manifest_toml)
    _add_payload(z, payload)
    z.add_bytes(WASM_NAME, WASM_STUB if wasm is None else wasm)
    if context is not None:
        z.add_bytes(CONTEXT_NAME, context)
    if proof is not None:
        z.add_bytes(PROOF_NAME, proof)
    return z.finish(comment)


def sync_bytes(*, manifest_toml: bytes, payload: Payload, wasm: bytes | None = None,
               context: bytes | None = None, proof: bytes | None = None,
               force_zip64: bool = False) -> bytes:
    """:func:`encode_sync` in memory: the whole ``.sync`` as bytes (what the browser
    offers for download after a hook run)."""
    buf = io.BytesIO()
    encode_sync(manifest_toml=manifest_toml, payload=payload, wasm=wasm, context=context,
                proof=proof, out=buf, force_zip64=force_zip64)
    return buf.getvalue()


def encode_rewritten_sync(layout: SyncLayout,
                          raw_data: Callable[[ZipEntry], Iterable[bytes]], *,
                          out: BinaryIO, manifest_toml: bytes | None = None,
                          payload: Payload | None = None, force_zip64: bool = False,
                          _sparse: bool = False) -> SyncLayout:
    """Write to ``out`` the ``.sync`` of ``layout`` with its manifest and/or payload
    replaced: the entries in their file order, a new manifest or payload STORED (a
    payload missing from the original goes right after the manifest), every other entry
    copied as it is from ``raw_data(entry)`` (its data as stored, in pieces), the ZIP
    comment kept. The one implementation behind :func:`rewrite_sync_file` (pieces read
    from the original file) and :func:`rewrite_sync_bytes` (the viewer: pieces in
    memory). Returns the layout written."""
    order = sorted(layout.entries.values(), key=lambda e: e.header_offset)
    names = [e.name for e in order]
    if PAYLOAD_NAME not in names and payload is not None:
        if MANIFEST_NAME not in names:
            raise FormatError("not a .sync: the ZIP has no manifest.toml entry")
        names.insert(names.index(MANIFEST_NAME) + 1, PAYLOAD_NAME)
    z = _ZipOut(out, force_zip64, sparse=_sparse)
    for name in names:
        if name == MANIFEST_NAME and manifest_toml is not None:
            z.add_bytes(name, manifest_toml)
        elif name == PAYLOAD_NAME and payload is not None:
            _add_payload(z, payload)
        else:
            entry = layout.entries[name]
            z.add_raw(entry, iter(raw_data(entry)))
    return z.finish(layout.comment)


def rewrite_sync_bytes(layout: SyncLayout, raw_entries: Mapping[str, bytes], *,
                       manifest_toml: bytes | None = None, payload: Payload | None = None,
                       force_zip64: bool = False) -> bytes:
    """:func:`rewrite_sync_file` in memory (the browser's updated ``.sync`` after a hook
    run): ``raw_entries`` holds, by name, the data as stored of every entry that is
    copied (all but those replaced). The same bytes as :func:`rewrite_sync_file` writes
    for the same original and replacements."""
    if manifest_toml is None and payload is None:
        raise UsageError("nothing to rewrite: give a new manifest, a new payload or both")

    def raw_data(entry: ZipEntry) -> Iterable[bytes]:
        try:
            return (raw_entries[entry.name],)
        except KeyError:
            raise UsageError(f"the stored data of entry {entry.name!r} is needed to copy "
                             f"it") from None

    buf = io.BytesIO()
    encode_rewritten_sync(layout, raw_data, out=buf, manifest_toml=manifest_toml,
                          payload=payload, force_zip64=force_zip64)
    return buf.getvalue()


def _file_mode(path: str, default: int | None) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return default


def write_sync_file(path: str | os.PathLike[str], *, manifest_toml: bytes, payload: Payload,
                    wasm: bytes | None = None, context: bytes | None = None,
                    proof: bytes | None = None, overwrite: bool = True,
                    force_zip64: bool = False) -> SyncLayout:
    """:func:`encode_sync` into a new file ``path``, published atomically (temp file,
    fsync, rename, directory fsync). ``overwrite=False`` never replaces an existing
    file (StorageError). On any failure ``path`` is untouched."""
    target = os.fspath(path)
    mode = _file_mode(target, None)
    with fileio.atomic_file(target, overwrite=overwrite, tag="sync-tmp",
                            mode=0o666 if mode is None else mode,
                            what=f"cannot write {target}") as fd:
        if mode is not None:
            os.fchmod(fd, mode)  # the replaced file's permissions, whatever the umask
        with open(fd, "wb", closefd=False) as out:
            layout = encode_sync(manifest_toml=manifest_toml, payload=payload, wasm=wasm,
                                 context=context, proof=proof, out=out,
                                 force_zip64=force_zip64, _sparse=True)
    return layout


def rewrite_sync_file(path: str | os.PathLike[str], *, manifest_toml: bytes | None = None,
                      payload: Payload | None = None, strict: bool = True,
                      force_zip64: bool = False) -> SyncLayout:
    """Replace the manifest and/or the payload of the ``.sync`` at ``path``.

    Every other entry is copied as it is (its compressed bytes, method, CRC, sizes,
    time, attributes; an extra field and a data descriptor are not kept), in the original
    order; a new manifest is STORED. The result is written beside the original and
    published atomically (``lockbox.fileio``: fsync, rename, directory fsync) with the
    original's permissions; on any failure -- a bad original, a payload stream that
    fails, a full disk -- the original is untouched and no temporary file is left."""
    target = os.fspath(path)
    if manifest_toml is None and payload is None:
        raise UsageError("nothing to rewrite: give a new manifest, a new payload or both")
    source = open_source(target)
    try:
        size = source.size
        layout = run_sync(open_layout_flow(size, strict=strict), source)

        def raw_pieces(e: ZipEntry) -> Iterator[bytes]:
            assert e.data_offset is not None
            pos, end = e.data_offset, e.data_offset + e.compressed_size
            while pos < end:
                n = min(COPY_PIECE_SIZE, end - pos)
                (blob,) = source.read([ByteRange(pos, n)])
                if len(blob) != n:
                    raise StorageError(f"{target} changed while it was rewritten")
                yield bytes(blob)
                pos += n

        mode = _file_mode(target, None)
        with fileio.atomic_file(target, overwrite=True, tag="sync-tmp",
                                mode=0o600 if mode is None else mode,
                                what=f"cannot rewrite {target}") as fd:
            if mode is not None:
                os.fchmod(fd, mode)  # the original's permissions, whatever the umask
            with open(fd, "wb", closefd=False) as out:
                new = encode_rewritten_sync(layout, raw_pieces, out=out,
                                            manifest_toml=manifest_toml, payload=payload,
                                            force_zip64=force_zip64, _sparse=True)
    finally:
        source.close()
    return new

