"""SNAPPACK packs built by hand from the seed's grammar, independent of lockbox's writer
(and of lockbox's hashing: ids come from the ``blake3`` package directly).

    stream  := "SNAPPACK 1\\n" record* "end\\n"
    record  := "obj " hex64 " " len "\\n" payload(len)
             | "manifest " hex64 " " len "\\n" payload(len)   ; at most one, the last
    1Z      := "SNAPPACK 1Z\\n" zstd-frame(record* "end\\n")
"""

from __future__ import annotations

from blake3 import blake3

try:
    from compression import zstd  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found, no-redef, unused-ignore]

MAGIC = b"SNAPPACK 1\n"
MAGIC_Z = b"SNAPPACK 1Z\n"
END = b"end\n"


def hex_of(data: bytes) -> str:
    """BLAKE3 of ``data`` in lowercase hex (an object or snapshot id)."""
    return blake3(data).hexdigest()


def record(kind: str, hex_id: str, payload: bytes, *, size: int | str | None = None) -> bytes:
    """``<kind> <hex_id> <len>\\n<payload>``; ``size`` overrides the length field (a lie or a
    malformed token)."""
    length = len(payload) if size is None else size
    return f"{kind} {hex_id} {length}\n".encode() + payload


def obj(payload: bytes) -> bytes:
    """An honest ``obj`` record."""
    return record("obj", hex_of(payload), payload)


def manifest(payload: bytes) -> bytes:
    """An honest ``manifest`` record."""
    return record("manifest", hex_of(payload), payload)


def body(*records: bytes, end: bool = True) -> bytes:
    return b"".join(records) + (END if end else b"")


def pack(*records: bytes, end: bool = True, magic: bytes = MAGIC) -> bytes:
    """A whole SNAPPACK 1 stream."""
    return magic + body(*records, end=end)


def zframe(data: bytes, level: int = 3) -> bytes:
    """One zstd frame holding ``data`` (streamed: no content size in its header)."""
    compressor = zstd.ZstdCompressor(level=level)
    return bytes(compressor.compress(data) + compressor.flush(compressor.FLUSH_FRAME))


def zpack(*records: bytes, end: bool = True, frame: bytes | None = None) -> bytes:
    """A whole SNAPPACK 1Z stream: the magic, then one zstd frame of the v1 body (or
    ``frame`` verbatim)."""
    return MAGIC_Z + (zframe(body(*records, end=end)) if frame is None else frame)
