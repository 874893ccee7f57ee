"""Pure encode/decode of the ``.uri`` file header, chunk headers and paths (docs/formats/URI.md).

No I/O: functions take and return bytes and raise the lockbox error classes with one
line each, naming the offset of the chunk concerned. The order of the checks is part
of the spec (URI.md §6), so that every reader reaches the same verdict on a damaged file.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    TruncatedError,
    UnsafePathError,
    UnsupportedVersionError,
)

__all__ = [
    "MAGIC", "VERSION", "FILE_HEADER_SIZE", "CHUNK_HEADER_SIZE", "CRC_SIZE", "NAME_FIELD_SIZE",
    "MAX_PATH_SIZE", "MAX_TARGET_SIZE", "MAX_DATA_SIZE", "MODE_MASK",
    "TYPE_FILE", "TYPE_DIR", "TYPE_SYMLINK", "COMPRESSION_NONE", "TYPE_NAMES",
    "ChunkHeader", "encode_file_header", "decode_file_header", "encode_chunk_header",
    "decode_chunk_header", "raw_chunk_sizes", "encode_name", "decode_name", "path_problem",
    "check_path",
    "check_target", "data_crc", "encode_chunk", "show_bytes", "decode_path",
]

MAGIC = b"uri\x00"
VERSION = 0
FILE_HEADER_SIZE = 8
CHUNK_HEADER_SIZE = 92
CRC_SIZE = 4
NAME_FIELD_SIZE = 32
MAX_PATH_SIZE = 4096        # Linux PATH_MAX: no real path is longer; bounds one header read
MAX_TARGET_SIZE = 4096      # a symlink target longer than PATH_MAX cannot be created
MAX_DATA_SIZE = 2**63 - 1   # the seed: "technically i64::MAX" (what seek() takes)
MODE_MASK = 0o7777          # permission, setuid, setgid and sticky bits

TYPE_FILE = b"FILE"
TYPE_DIR = b"DIR "
TYPE_SYMLINK = b"SLNK"
COMPRESSION_NONE = b"NONE"
TYPE_NAMES = {TYPE_FILE: "file", TYPE_DIR: "dir", TYPE_SYMLINK: "symlink"}

_FILE_HEADER = struct.Struct("<4sI")
_CHUNK_BODY = struct.Struct("<4sII32s32sQ4s")  # the 88 bytes the header CRC covers
_CRC = struct.Struct("<I")
assert _CHUNK_BODY.size + _CRC.size == CHUNK_HEADER_SIZE


def show_bytes(raw: bytes, limit: int = 60) -> str:
    """``raw`` for a message: UTF-8 where it is, escapes elsewhere, quoted, cut at ``limit``."""
    text = raw[:limit].decode("utf-8", "backslashreplace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                    for c in text)
    return "'" + shown + ("…'" if len(raw) > limit else "'")


def decode_path(raw: bytes) -> str:
    """An archive path or name as ``str`` (undecodable bytes kept by surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------- file header


def encode_file_header(version: int = VERSION) -> bytes:
    return _FILE_HEADER.pack(MAGIC, version)


def decode_file_header(head: bytes) -> int:
    """Check the 8-byte file header; return the version (always 0)."""
    if len(head) < FILE_HEADER_SIZE:
        if not MAGIC.startswith(bytes(head[:4])) or not head:
            raise FormatError("not a .uri archive (it does not start with 'uri\\0')")
        raise TruncatedError(f"the .uri file header needs {FILE_HEADER_SIZE} bytes; "
                             f"the file has {len(head)}")
    magic, version = _FILE_HEADER.unpack_from(head)
    if magic != MAGIC:
        raise FormatError(f"not a .uri archive (it starts with {show_bytes(magic)}, "
                          "not 'uri\\0')")
    if version != VERSION:
        raise UnsupportedVersionError(f".uri format version {version} is not supported "
                                      f"(this reader knows version {VERSION})")
    return version


# ------------------------------------------------------------------------ chunk header


class ChunkHeader(NamedTuple):
    """A decoded, checked chunk header (URI.md §3). ``owner``/``group`` without padding."""

    type: bytes
    path_size: int
    mode: int
    owner: bytes
    group: bytes
    data_size: int
    compression: bytes = COMPRESSION_NONE

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type]

    @property
    def body_size(self) -> int:
        """Bytes after the header: path, data and the data CRC."""
        return self.path_size + self.data_size + CRC_SIZE

    @property
    def chunk_size(self) -> int:
        return CHUNK_HEADER_SIZE + self.body_size

    def encode(self) -> bytes:
        return encode_chunk_header(self.type, self.path_size, self.mode, self.owner,
                                   self.group, self.data_size, self.compression)


def encode_name(name: bytes, what: str = "owner") -> bytes:
    """A 32-byte NUL-padded owner/group field; ValueError if it cannot be one."""
    if len(name) > NAME_FIELD_SIZE:
        raise ValueError(f"{what} name is longer than {NAME_FIELD_SIZE} bytes")
    if b"\x00" in name:
        raise ValueError(f"{what} name contains a NUL byte")
    return name.ljust(NAME_FIELD_SIZE, b"\x00")


def decode_name(field: bytes, what: str, offset: int) -> bytes:
    """The name in a 32-byte field: bytes before the NUL padding, which must be all NUL."""
    name = bytes(field).rstrip(b"\x00")
    if b"\x00" in name:
        raise FormatError(f"chunk at offset {offset}: the {what} field has a NUL byte "
                          "before its padding")
    return name


def encode_chunk_header(type_: bytes, path_size: int, mode: int, owner: bytes, group: bytes,
                        data_size: int, compression: bytes = COMPRESSION_NONE) -> bytes:
    body = _CHUNK_BODY.pack(type_, path_size, mode, encode_name(owner, "owner"),
                            encode_name(group, "group"), data_size, compression)
    return body + _CRC.pack(zlib.crc32(body))


def raw_chunk_sizes(raw: bytes) -> tuple[int, int]:
    """``(path_size, data_size)`` of a 92-byte header, unchecked (trust them only once
    its CRC matched)."""
    _, path_size, _, _, _, data_size, _ = _CHUNK_BODY.unpack_from(raw)
    return path_size, data_size


def decode_chunk_header(raw: bytes, offset: int) -> ChunkHeader:
    """Decode and check a 92-byte chunk header: its CRC first (IntegrityError), before any
    field is believed; then type, compression, names and sizes (URI.md §6)."""
    if len(raw) < CHUNK_HEADER_SIZE:
        raise TruncatedError(f"chunk at offset {offset}: the file ends inside its header "
                             f"({len(raw)} of {CHUNK_HEADER_SIZE} bytes; a cut file, or "
                             "trailing bytes after the last chunk)")
    raw = bytes(raw[:CHUNK_HEADER_SIZE])
    (stored,) = _CRC.unpack_from(raw, _CHUNK_BODY.size)
    actual = zlib.crc32(raw[: _CHUNK_BODY.size])
    if stored != actual:
        raise IntegrityError(f"chunk at offset {offset}: header CRC32 mismatch (stored "
                             f"{stored:08x}, computed {actual:08x}): damaged, or not a "
                             "chunk header")
    type_, path_size, mode, owner, group, data_size, compression = _CHUNK_BODY.unpack(
        raw[: _CHUNK_BODY.size])
    if type_ not in TYPE_NAMES:
        raise FormatError(f"chunk at offset {offset}: unknown chunk type {show_bytes(type_)} "
                          "(known: 'FILE', 'DIR ', 'SLNK')")
    if compression != COMPRESSION_NONE:
        raise FormatError(f"chunk at offset {offset}: unsupported compression "
                          f"{show_bytes(compression)} (known: 'NONE')")
    owner_name = decode_name(owner, "owner", offset)
    group_name = decode_name(group, "group", offset)
    if path_size == 0:
        raise FormatError(f"chunk at offset {offset}: empty path")
    if path_size > MAX_PATH_SIZE:
        raise LimitExceededError(f"chunk at offset {offset}: path of {path_size} bytes "
                                 f"(the limit is {MAX_PATH_SIZE})")
    if type_ == TYPE_DIR and data_size != 0:
        raise FormatError(f"chunk at offset {offset}: a directory with {data_size} bytes "
                          "of data (a directory has none)")
    if type_ == TYPE_SYMLINK:
        if data_size == 0:
            raise FormatError(f"chunk at offset {offset}: a symlink with an empty target")
        if data_size > MAX_TARGET_SIZE:
            raise LimitExceededError(f"chunk at offset {offset}: symlink target of "
                                     f"{data_size} bytes (the limit is {MAX_TARGET_SIZE})")
    if data_size > MAX_DATA_SIZE:
        raise LimitExceededError(f"chunk at offset {offset}: file length {data_size} is "
                                 f"over the limit of 2**63 - 1 bytes")
    return ChunkHeader(type_, path_size, mode, owner_name, group_name, data_size, compression)


# ------------------------------------------------------------------------------ paths


def path_problem(path: bytes) -> tuple[type[LockboxError], str] | None:
    """What is wrong with an archive path, if anything: the error class and the reason,
    by the rules of URI.md §4 in their order -- empty or NUL (FormatError); absolute or a
    ``..`` component (UnsafePathError); an empty component, i.e. ``//`` or a trailing
    ``/`` (FormatError); a ``.`` component (FormatError)."""
    if not path:
        return FormatError, "is empty"
    if b"\x00" in path:
        return FormatError, "contains a NUL byte"
    if path.startswith(b"/"):
        return UnsafePathError, "is absolute"
    parts = path.split(b"/")
    if b".." in parts:
        return UnsafePathError, "has a '..' component"
    if b"" in parts:
        return FormatError, "has an empty component ('//' or a trailing '/')"
    if b"." in parts:
        return FormatError, "has a '.' component"
    return None


def check_path(path: bytes, offset: int) -> None:
    """Raise the error :func:`path_problem` names, if any."""
    problem = path_problem(path)
    if problem is not None:
        cls, reason = problem
        raise cls(f"chunk at offset {offset}: path {show_bytes(path)} {reason}")


def check_target(target: bytes, offset: int) -> None:
    """A symlink target: not empty, no NUL (any other target is listed as it is; the
    extractor judges where it points)."""
    if not target:
        raise FormatError(f"chunk at offset {offset}: a symlink with an empty target")
    if b"\x00" in target:
        raise FormatError(f"chunk at offset {offset}: symlink target contains a NUL byte")


def data_crc(path: bytes, data: bytes | bytearray | memoryview = b"", start: int = 0) -> int:
    """The chunk's data CRC32 (IEEE, zlib's) over path then data; ``start`` continues one."""
    return zlib.crc32(data, zlib.crc32(path, start))


def encode_chunk(type_: bytes, path: bytes, mode: int, owner: bytes, group: bytes,
                 data: bytes = b"") -> bytes:
    """A whole chunk (header, path, data, CRC) for data already in memory."""
    head = encode_chunk_header(type_, len(path), mode, owner, group, len(data))
    return head + path + data + _CRC.pack(data_crc(path, data))
