"""The ``.sync`` side of ``lockbox mount`` without WebDAV: names, parsing, a store's files.

sync-mount (sync-rs's ``sync-fs`` crate) shows a ``.sync`` as the file it carries. The
rules here are sync-mount's, with the differences stated:

* **One file mounted** (:func:`single_display_name`, sync-rs ``vfs::build_display_name``):
  the archive's file stem (``Path::file_stem``: the name without its last extension)
  plus ``.<display_ext>`` unless the stem already ends with it: ``report.sync`` +
  ``csv`` -> ``report.csv``; ``report.csv.sync`` + ``csv`` -> ``report.csv``;
  ``report.csv.sync`` + ``pdf`` -> ``report.csv.pdf`` (lockbox's reader, ``display_name``,
  says ``report.csv`` there: the mount follows sync-mount).
* **A store** (:func:`store_display_name`, sync-rs ``writable::display_name_for_archive``):
  the stem when it contains a dot (``report.pdf.sync`` -> ``report.pdf``, whatever the
  manifest says), else stem + ``.<display_ext>`` (``notes.sync`` + ``csv`` -> ``notes.csv``).
* Both: ``display_ext`` is trimmed of spaces and leading dots (sync-rs); one that is not
  a plain extension (lockbox's rule: ``[A-Za-z0-9][A-Za-z0-9._+-]{0,31}``, no ``..``) is
  not used, with a warning (sync-rs would put a ``/`` into the name). An empty stem
  becomes ``payload`` (lockbox's reader).

A store file is *valid* when lockbox's strict reader opens it (the ZIP layout and the
manifest: what sync-rs's ``SyncArchive::open`` also demands). :class:`SyncFileCache`
parses each file once per version (inode, size, mtime, ctime), so a PROPFIND of a big
folder opens only the files that changed, and an invalid file is warned about once per
version, not at every listing.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import os
import re
import stat
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lockbox.drivers import run_sync
from lockbox.errors import FormatError, LockboxError
from lockbox.formats.sync.container import (
    MANIFEST_NAME,
    MAX_MANIFEST_SIZE,
    open_layout_flow,
    read_entry_flow,
)
from lockbox.formats.sync.manifest import Manifest
from lockbox.ranges import ByteRange

__all__ = [
    "SYNC_SUFFIX", "CREATED_BY", "TEMPLATE_TTL_S", "TEMPLATE_TIMEOUT_S", "SyncFileInfo",
    "SyncFileCache", "FdSource", "PayloadReader", "is_ignored_name", "is_sync_file_name",
    "normalize_display_ext", "single_display_name", "store_display_name",
    "display_ext_for_name", "guess_content_type", "template_manifest", "stat_signature",
    "parse_sync",
]

log = logging.getLogger("lockbox.mount.sync")

SYNC_SUFFIX = ".sync"
CREATED_BY = "lockbox mount"
"""``meta.created_by`` of the files a store creates (sync-mount writes ``sync-fs``)."""
TEMPLATE_TTL_S = 3600
TEMPLATE_TIMEOUT_S = 30

_EXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")

# sync-rs's guess_content_type table (sync-fs webdav/writable.rs), which wins over
# Python's built-in table (which has no xlsx, no md on 3.11)
_SYNC_RS_TYPES = {
    "txt": "text/plain", "csv": "text/csv", "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg",
    "jpeg": "image/jpeg", "svg": "image/svg+xml", "html": "text/html", "htm": "text/html",
    "md": "text/markdown",
}
_ENCODING_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                   "xz": "application/x-xz", "compress": "application/x-compress",
                   "br": "application/x-brotli"}
_MIME = mimetypes.MimeTypes(filenames=())  # the built-in table only: the same everywhere
_DEFAULT_TYPE = "application/octet-stream"


def is_ignored_name(name: str) -> bool:
    """macOS's metadata files (``._*``, ``.DS_Store``): a store accepts them and stores
    nothing (sync-mount's ``is_ignored_name``)."""
    return name.startswith("._") or name == ".DS_Store"


def is_sync_file_name(name: str) -> bool:
    """A file a store lists: ``<stem>.sync`` (Rust's ``Path::extension() == "sync"``: a
    non-empty stem; ``.sync`` alone has no extension), and a stem that is not all dots."""
    return name.endswith(SYNC_SUFFIX) and name[:-len(SYNC_SUFFIX)].strip(".") != ""


def normalize_display_ext(display_ext: str) -> tuple[str, str | None]:
    """``(ext, warning)``: sync-rs's normalisation (spaces, leading dots), then lockbox's
    rule for a safe extension (an unsafe one is dropped, with the warning)."""
    ext = display_ext.strip().lstrip(".")
    if ext and (not _EXT.fullmatch(ext) or ".." in ext):
        return "", f"display_ext {display_ext!r} is not a plain file extension: not used"
    return ext, None


def _safe_stem(stem: str) -> str:
    if not stem or stem.strip(".") == "" or "\x00" in stem or "/" in stem:
        return "payload"
    return stem


def _rust_file_stem(name: str) -> str:
    """Rust's ``Path::file_stem``: the name without its last extension (a leading dot
    does not start one)."""
    dot = name.rfind(".")
    if dot <= 0:
        return name
    return name[:dot]


def single_display_name(location: str, display_ext: str) -> str:
    """The one file a mounted ``.sync`` shows (sync-rs ``build_display_name``; see the
    module docstring). ``location``: a path or an http(s) URL."""
    if "://" in location:
        base = urllib.parse.unquote(urllib.parse.urlsplit(location).path.rsplit("/", 1)[-1])
    else:
        base = os.path.basename(location.rstrip("/" + os.sep))
    stem = _safe_stem(_rust_file_stem(base))
    ext, _ = normalize_display_ext(display_ext)
    if not ext or stem.endswith("." + ext):
        return stem
    return f"{stem}.{ext}"


def store_display_name(file_name: str, display_ext: str) -> str:
    """The name a store lists ``file_name`` (``<stem>.sync``) under: the stem when it
    contains a dot, else stem + ``.<display_ext>`` (sync-rs ``display_name_for_archive``)."""
    stem = _safe_stem(file_name[:-len(SYNC_SUFFIX)])
    if "." in stem:
        return stem
    ext, _ = normalize_display_ext(display_ext)
    return f"{stem}.{ext}" if ext else stem


def display_ext_for_name(name: str) -> str:
    """The ``display_ext`` of a new upload ``name`` (sync-rs ``display_ext_from_name``:
    the last extension, ``""`` for none or a dot file)."""
    stem = name[:-len(SYNC_SUFFIX)] if name.endswith(SYNC_SUFFIX) else name
    dot = stem.rfind(".")
    if dot <= 0:
        return ""
    ext = stem[dot + 1:]
    return ext if normalize_display_ext(ext)[1] is None else ""


def guess_content_type(name: str) -> str:
    """The MIME type of a new upload, from its name: sync-rs's table, else Python's
    built-in one (a compressed file is its compression's type), else
    ``application/octet-stream``."""
    dot = name.rfind(".")
    if dot > 0:
        known = _SYNC_RS_TYPES.get(name[dot + 1:].lower())
        if known is not None:
            return known
    kind, encoding = _MIME.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding, _DEFAULT_TYPE)
    return kind or _DEFAULT_TYPE


def template_manifest(name: str, *, now: datetime | None = None) -> Manifest:
    """sync-mount's ``ManifestTemplate`` for a new upload ``name``: version 1.2, the MIME
    type and display_ext from the name, ``created_by``, ``created_at`` now, ttl 3600,
    timeout 30, no allowed hosts."""
    return Manifest.new(content_type=guess_content_type(name),
                        display_ext=display_ext_for_name(name), created_by=CREATED_BY,
                        created_at=now or datetime.now(UTC), ttl=TEMPLATE_TTL_S,
                        timeout=TEMPLATE_TIMEOUT_S)


Signature = tuple[int, int, int, int, int]


def stat_signature(st: os.stat_result) -> Signature:
    """What identifies one version of a file: device, inode, size, mtime, ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FdSource:
    """A range source over an open file descriptor (``os.pread``): parsing and reading
    stay on the one version of a file that was opened, whatever renames follow."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        return [os.pread(self.fd, r.size, r.offset) for r in ranges]


@dataclass(frozen=True)
class SyncFileInfo:
    """One parsed ``.sync``: where its payload is, what its manifest says."""

    signature: Signature
    payload_offset: int
    payload_size: int
    payload_crc32: int
    manifest: Manifest
    mtime: float
    warnings: tuple[str, ...] = ()

    @property
    def display_ext(self) -> str:
        return self.manifest.display_ext

    @property
    def content_type(self) -> str:
        return self.manifest.content_type or _DEFAULT_TYPE

    @property
    def is_vault(self) -> bool:
        return bool(self.manifest.is_vault)

    @property
    def created_at(self) -> float | None:
        try:
            return self.manifest.created_at.timestamp()
        except (LockboxError, ValueError, OverflowError):
            return None

    @property
    def etag(self) -> str:
        """Unquoted: the payload's CRC-32 and size, and the file's version (a rewrite
        with the same bytes gets a new tag: never the reverse)."""
        return f"{self.payload_crc32:08x}-{self.payload_size:x}-{self.signature[3]:x}"


def parse_sync(source: FdSource | object, size: int, signature: Signature,
               mtime: float) -> SyncFileInfo:
    """Parse a ``.sync`` strictly (its layout and manifest; the payload is not read).
    Raises a LockboxError (FormatError, TruncatedError ...) for an invalid file."""
    layout = run_sync(open_layout_flow(size, strict=True), source)  # type: ignore[arg-type]
    raw = run_sync(read_entry_flow(layout, MANIFEST_NAME, max_size=MAX_MANIFEST_SIZE),
                   source)  # type: ignore[arg-type]
    manifest = Manifest.parse(raw, strict=True)
    payload = layout.payload
    if payload is None:
        raise FormatError("not a .sync: no payload entry")
    warnings = list(layout.warnings) + list(manifest.warnings)
    warning = normalize_display_ext(manifest.display_ext)[1]
    if warning:
        warnings.append(warning)
    return SyncFileInfo(signature, layout.payload_offset, layout.payload_size,
                        payload.crc32, manifest, mtime, tuple(warnings))


class SyncFileCache:
    """Parsed store files by path, each valid while its :func:`stat_signature` holds.
    Thread-safe. An invalid file is logged (a warning) once per version."""

    def __init__(self, max_entries: int = 65536) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Signature, SyncFileInfo | str]] = {}
        self.max_entries = max_entries

    def get(self, path: str, st: os.stat_result) -> SyncFileInfo | None:
        """The file at ``path`` (whose ``os.stat`` is ``st``), or None when it is not a
        valid ``.sync`` (warned about once)."""
        sig = stat_signature(st)
        with self._lock:
            hit = self._entries.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1] if isinstance(hit[1], SyncFileInfo) else None
        result = self._load(path, sig)
        if isinstance(result, SyncFileInfo):
            return result
        return None

    def _load(self, path: str, sig: Signature) -> SyncFileInfo | str:
        result: SyncFileInfo | str
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) |
                         getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            return f"cannot open: {e.strerror or e}"
        try:
            st = os.fstat(fd)
            real_sig = stat_signature(st)
            result = self.parse_fd(fd, st)
            if isinstance(result, str):
                log.warning("skipping invalid .sync file %s: %s", path, result)
            elif result.warnings:
                log.warning("%s: %s", path, "; ".join(result.warnings))
        finally:
            os.close(fd)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[path] = (real_sig, result)
        return result

    @staticmethod
    def parse_fd(fd: int, st: os.stat_result) -> SyncFileInfo | str:
        """Parse the open file ``fd``; a string says why it is not a valid ``.sync``."""
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        try:
            return parse_sync(FdSource(fd, st.st_size), st.st_size, stat_signature(st),
                              st.st_mtime)
        except LockboxError as e:
            return f"{type(e).__name__}: {e}"
        except OSError as e:
            return f"cannot read: {e.strerror or e}"

    def forget(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)


class PayloadReader(io.RawIOBase):
    """A payload read in place: a seekable, read-only file object over ``size`` bytes at
    ``offset`` of an open file (``fd``, closed with the reader when ``owns_fd``) or of
    any range source (``source``). wsgidav seeks it for Range requests."""

    def __init__(self, *, offset: int, size: int, fd: int | None = None,
                 source: object | None = None, owns_fd: bool = False,
                 lock: threading.Lock | None = None) -> None:
        super().__init__()
        self._fd, self._source = fd, source
        self._owns_fd = owns_fd
        self._lock = lock
        self.offset, self.size = offset, size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + pos < 0:
            raise ValueError("negative seek position")
        self.pos = base + pos
        return self.pos

    def _read_at(self, offset: int, n: int) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, n, offset)
        assert self._source is not None
        if self._lock is not None:
            with self._lock:
                return bytes(self._source.read([ByteRange(offset, n)])[0])  # type: ignore[attr-defined]
        return bytes(self._source.read([ByteRange(offset, n)])[0])  # type: ignore[attr-defined]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), max(0, self.size - self.pos))
        if n == 0:
            return 0
        data = self._read_at(self.offset + self.pos, n)
        if not data:
            raise OSError(f"the .sync file ended {n} bytes early (it changed?)")
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.size - self.pos)
        buf = bytearray(min(size, max(0, self.size - self.pos)))
        got = 0
        view = memoryview(buf)
        while got < len(buf):
            n = self.readinto(view[got:])
            if n == 0:
                break
            got += n
        return bytes(buf[:got])

    def close(self) -> None:
        if not self.closed and self._owns_fd and self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()
