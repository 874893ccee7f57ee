"""An INDEPENDENT minimal reader and writer of the ``.uri`` format, the test oracle.

Written from the seed text (tests' copy of it: /work/shared/seeds/003_...txt, "#uri - a
silly archive format") with ``struct`` and ``zlib`` only; it does not import lockbox.
Where the seed is vague it follows the decisions of docs/formats/URI.md, each marked
"(URI.md)" below. The reader is *strict*: it accepts only what the spec allows and
names the verdict category of the first problem, in the spec's check order, so the
adversarial corpus can be judged by two implementations.

Verdict categories (``Invalid.kind``) and the lockbox classes URI.md maps them to:
``format`` FormatError, ``version`` UnsupportedVersionError, ``truncated``
TruncatedError, ``limit`` LimitExceededError, ``integrity`` IntegrityError, ``unsafe``
UnsafePathError.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["Entry", "Invalid", "read", "write", "chunk", "header", "KINDS"]

# File header: Magic "uri\0", version u32 (0). Little-endian throughout.
MAGIC = b"uri\0"
# Chunk header: type [u8;4], path length u32, mode u32, owner [u8;32], group [u8;32],
# file length u64, compression [u8;4], then the CRC32 of the fields before it.
FIELDS = struct.Struct("<4sII32s32sQ4s")
HEADER_SIZE = FIELDS.size + 4  # 4+4+4+32+32+8+4 = 88, plus the CRC: 92
KINDS = (b"FILE", b"DIR ", b"SLNK")
MAX_PATH = 4096          # (URI.md) longest path accepted
MAX_TARGET = 4096        # (URI.md) longest symlink target accepted


class Invalid(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Entry:
    kind: bytes            # b"FILE", b"DIR ", b"SLNK"
    path: bytes
    mode: int = 0o644
    owner: bytes = b""
    group: bytes = b""
    data: bytes = b""      # file contents, or the symlink's destination


def _crc(data: bytes, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def header(kind: bytes, path_len: int, mode: int, owner: bytes, group: bytes, file_len: int,
           compression: bytes = b"NONE", crc: int | None = None) -> bytes:
    """A chunk header, any field value allowed (``crc`` overrides the computed one)."""
    fields = FIELDS.pack(kind, path_len, mode, owner.ljust(32, b"\0"),
                         group.ljust(32, b"\0"), file_len, compression)
    return fields + struct.pack("<I", _crc(fields) if crc is None else crc)


def chunk(kind: bytes, path: bytes, data: bytes = b"", mode: int = 0o644, owner: bytes = b"",
          group: bytes = b"", compression: bytes = b"NONE", header_crc: int | None = None,
          data_crc: int | None = None, path_len: int | None = None,
          file_len: int | None = None) -> bytes:
    """One chunk: header, path, data, CRC32 of path + data. Overrides make bad chunks."""
    head = header(kind, len(path) if path_len is None else path_len, mode, owner, group,
                  len(data) if file_len is None else file_len, compression, header_crc)
    crc = _crc(data, _crc(path)) if data_crc is None else data_crc
    return head + path + data + struct.pack("<I", crc)


def write(entries: list[Entry], version: int = 0) -> bytes:
    """An archive of ``entries`` in the order given (no checks: it can write bad files)."""
    out = [MAGIC + struct.pack("<I", version)]
    for e in entries:
        out.append(chunk(e.kind, e.path, e.data, e.mode, e.owner, e.group))
    return b"".join(out)


def _name(field: bytes, what: str) -> bytes:
    # "Both strings, if less than 32 characters, will have unused data filled with 0
    # bytes, and will never contain a 0 byte before the unused portion."
    name = field.rstrip(b"\0")
    if b"\0" in name:
        raise Invalid("format", f"{what} has a 0 byte before its padding")
    return name


def _check_path(path: bytes) -> None:
    # "The file path must be relative, ie not start with /. it cannot contain . or ..
    # directory entries in it. It cannot contain consecutive /'s." Order per URI.md §4.
    if b"\0" in path:  # (URI.md) a path has no zero byte
        raise Invalid("format", "path contains a 0 byte")
    if path.startswith(b"/"):
        raise Invalid("unsafe", "path is absolute")
    parts = path.split(b"/")
    if b".." in parts:
        raise Invalid("unsafe", "path has a '..' component")
    if b"" in parts:  # consecutive '/' (and, URI.md, a trailing '/')
        raise Invalid("format", "path has an empty component")
    if b"." in parts:
        raise Invalid("format", "path has a '.' component")


def read(blob: bytes) -> list[Entry]:
    """Every entry of a valid archive; Invalid(kind, why) at the first problem."""
    if len(blob) < 8:
        if blob and MAGIC.startswith(blob[:4]):
            raise Invalid("truncated", "file header cut short")
        raise Invalid("format", "no 'uri\\0' magic")
    if blob[:4] != MAGIC:
        raise Invalid("format", "no 'uri\\0' magic")
    (version,) = struct.unpack_from("<I", blob, 4)
    if version != 0:
        raise Invalid("version", f"version {version}")
    entries: list[Entry] = []
    seen: dict[bytes, bytes] = {}
    pos = 8
    while pos < len(blob):
        raw = blob[pos : pos + HEADER_SIZE]
        if len(raw) < HEADER_SIZE:
            raise Invalid("truncated", f"chunk header at {pos} cut short")
        (stored,) = struct.unpack_from("<I", raw, FIELDS.size)
        if _crc(raw[: FIELDS.size]) != stored:
            raise Invalid("integrity", f"chunk header CRC at {pos}")
        kind, path_len, mode, owner, group, file_len, compression = FIELDS.unpack_from(raw)
        if kind not in KINDS:
            raise Invalid("format", f"unknown file type {kind!r}")
        if compression != b"NONE":
            raise Invalid("format", f"unknown compression {compression!r}")
        owner = _name(owner, "owner")
        group = _name(group, "group")
        if path_len == 0:
            raise Invalid("format", "empty path")
        if path_len > MAX_PATH:
            raise Invalid("limit", "path too long")
        if kind == b"DIR " and file_len:  # "If it's a directory, it's nothing."
            raise Invalid("format", "directory with data")
        if kind == b"SLNK" and file_len == 0:
            raise Invalid("format", "symlink without a destination")
        if kind == b"SLNK" and file_len > MAX_TARGET:
            raise Invalid("limit", "symlink destination too long")
        if file_len > 2**63 - 1:  # "technically i64::MAX"
            raise Invalid("limit", "file too long")
        end = pos + HEADER_SIZE + path_len + file_len + 4
        if end > len(blob):
            raise Invalid("truncated", f"chunk at {pos} runs past the end of the file")
        body = pos + HEADER_SIZE
        path = blob[body : body + path_len]
        data = blob[body + path_len : body + path_len + file_len]
        (data_crc,) = struct.unpack_from("<I", blob, end - 4)
        if _crc(data, _crc(path)) != data_crc:
            raise Invalid("integrity", f"file checksum of chunk at {pos}")
        _check_path(path)
        if kind == b"SLNK" and b"\0" in data:
            raise Invalid("format", "symlink destination contains a 0 byte")
        if path in seen:
            raise Invalid("format", "multiple entries with the same path")
        parent = path.rpartition(b"/")[0]
        # "If there's a file entry for some file at path foo/bar.txt, a directory entry for
        # directory foo/ must preceed it somewhere in the archive."
        if parent and seen.get(parent) != b"DIR ":
            raise Invalid("format", "entry before its directory")
        seen[path] = kind
        entries.append(Entry(kind, path, mode, owner, group, data))
        pos = end
    return entries
