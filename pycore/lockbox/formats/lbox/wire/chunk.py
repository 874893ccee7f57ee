"""Data-chunk payloads and chunk-index payloads. docs/FORMAT.md §10.

Every data chunk carries, inside its encryption, the file version's id, its
chunk number and the path, and the last chunk also carries the entry's
metadata, so that the TOC can be rebuilt from data frames alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import FormatError
from .constants import INDEX_FANOUT, MAX_CHUNK_SIZE, MAX_PATH_SIZE, MAX_SYMLINK_SIZE, EntryType
from .encoding import Builder, Reader, svarint, uvarint
from .refs import Ref, decode_ref, encode_ref

__all__ = ["ChunkMeta", "ChunkHeader", "encode_chunk", "encode_chunk_parts", "encode_meta",
           "encode_file_meta",
           "decode_chunk", "encode_index", "decode_index"]

FLAG_LAST = 0x01
_FILE_LAST = bytes((FLAG_LAST, int(EntryType.FILE)))


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """The entry's metadata, carried by a file's last chunk."""

    type: EntryType
    mode: int
    mtime_ns: int
    size: int
    content_hash: bytes  # BLAKE3-256 of the whole file
    chunk_size: int
    target: str = ""


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    file_id: bytes
    chunk_no: int
    path: str
    meta: ChunkMeta | None  # present exactly on the last chunk


def encode_file_meta(mode: int, mtime_ns: int, size: int, content_hash: bytes,
                     chunk_size: int) -> bytes:
    """``encode_meta`` of a regular file's last chunk, without building a ChunkMeta."""
    return b"".join((_FILE_LAST, uvarint(mode), svarint(mtime_ns), uvarint(size),
                     content_hash, uvarint(chunk_size), b"\x00"))


def encode_meta(m: ChunkMeta | None) -> bytes:
    """The flags byte and, on a last chunk, the metadata that follows it."""
    if m is None:
        return b"\x00"
    if m.type == EntryType.FILE and not m.target:
        return encode_file_meta(m.mode, m.mtime_ns, m.size, m.content_hash, m.chunk_size)
    target = m.target.encode()
    return b"".join((bytes((FLAG_LAST, int(m.type))), uvarint(m.mode), svarint(m.mtime_ns),
                     uvarint(m.size), m.content_hash, uvarint(m.chunk_size),
                     uvarint(len(target)), target))


def encode_chunk_parts(file_id: bytes, chunk_no: int, path: bytes, meta: bytes,
                       data: bytes | memoryview) -> bytes:
    """encode_chunk for callers that already hold the encoded path and metadata."""
    return b"".join((file_id, uvarint(chunk_no), uvarint(len(path)), path, meta,
                     uvarint(len(data)), data))


def encode_chunk(h: ChunkHeader, data: bytes | memoryview) -> bytes:
    return encode_chunk_parts(h.file_id, h.chunk_no, h.path.encode(), encode_meta(h.meta), data)


def decode_chunk(buf: bytes | memoryview) -> tuple[ChunkHeader, memoryview]:
    r = Reader(buf, "data chunk")
    file_id = r.raw(16)
    chunk_no = r.uvarint(1 << 40)
    try:
        path = r.blob(MAX_PATH_SIZE).decode()
    except UnicodeDecodeError:
        raise FormatError("data chunk: path is not UTF-8") from None
    flags = r.u8()
    meta = None
    if flags & ~FLAG_LAST:
        raise FormatError("data chunk: unknown flags")
    if flags & FLAG_LAST:
        t = r.u8()
        try:
            etype = EntryType(t)
        except ValueError:
            raise FormatError("data chunk: unknown entry type") from None
        mode = r.uvarint(0o7777)
        mtime = r.svarint()
        size = r.uvarint()
        digest = r.raw(32)
        csize = r.uvarint(MAX_CHUNK_SIZE)
        try:
            target = r.blob(MAX_SYMLINK_SIZE).decode()
        except UnicodeDecodeError:
            raise FormatError("data chunk: symlink target is not UTF-8") from None
        meta = ChunkMeta(etype, mode, mtime, size, digest, csize, target)
    data = r.blob_view(MAX_CHUNK_SIZE)
    r.done()
    return ChunkHeader(file_id, chunk_no, path, meta), data


def encode_index(file_id: bytes, first_chunk_no: int, refs: list[Ref]) -> bytes:
    b = Builder().raw(file_id).uvarint(first_chunk_no).uvarint(len(refs))
    for ref in refs:
        encode_ref(b, ref)
    return b.getvalue()


def decode_index(buf: bytes | memoryview) -> tuple[bytes, int, list[Ref]]:
    r = Reader(buf, "chunk index")
    file_id = r.raw(16)
    first = r.uvarint(1 << 40)
    n = r.uvarint(INDEX_FANOUT)
    refs = [decode_ref(r) for _ in range(n)]
    r.done()
    return file_id, first, refs
