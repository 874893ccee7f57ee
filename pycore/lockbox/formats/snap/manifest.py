"""snapdir manifests and ids (docs/formats/SNAPDIR.md), byte for byte as snapdir 1.11+.

A manifest is UTF-8 text, one line per entry::

    TYPE PERMS CHECKSUM SIZE PATH

``TYPE`` is ``F`` or ``D``; ``PERMS`` the octal of ``st_mode & 0o7777`` (no leading
zeros: ``644``, ``4755``, ``0``); ``CHECKSUM`` 64 lowercase hex digits; ``SIZE`` decimal
(a directory's is the total of the file bytes under it); ``PATH`` is ``./``-prefixed, the
root is ``./`` and directories end with ``/``. Only the first four spaces split, so a
path may contain spaces. Lines are sorted by the bytes of PATH; every line ends in ``\\n``
(the rendering snapdir stores and hashes).

Ids are BLAKE3-256 in lowercase hex: an object's is the hash of the file's bytes; a
directory's checksum is the hash of the concatenated checksums of its direct children,
sorted and deduplicated; a snapshot id is the hash of the rendered manifest.

Pure, except :func:`manifest_of_directory` (reads a host tree, CPython) and
:func:`manifest_of_archive` (drives an opened archive). BLAKE3 comes from the crypto
backend (``lockbox.platform.default_crypto``), so this module runs in the browser.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from ...crypto.base import Hasher
from ...errors import FormatError, StorageError, UsageError
from ...platform import default_crypto

if TYPE_CHECKING:
    from ...facade import Archive

__all__ = [
    "ManifestEntry", "Manifest", "Row", "parse_manifest", "render_manifest", "snapshot_id",
    "object_id", "directory_checksum", "is_hex64", "build_manifest", "manifest_of_directory",
    "manifest_of_archive", "archive_snapshot", "hash_stream", "new_hasher", "check_rel_path",
    "rendered_path", "MAX_MANIFEST_SIZE", "EMPTY_BLAKE3", "HASH_CHUNK_SIZE",
]

Kind = Literal["F", "D"]

MAX_MANIFEST_SIZE = 64 * 1024 * 1024
"""The largest manifest lockbox reads (bytes), SNAPPACK's MAX_MANIFEST_BYTES."""

EMPTY_BLAKE3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
"""BLAKE3 of no bytes: an empty file's object id and an empty directory's checksum."""

HASH_CHUNK_SIZE = 1 << 20
"""Bytes read and hashed at a time when streaming a file."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PERMS = re.compile(r"0|[1-7][0-7]{0,3}")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_U64_MAX = (1 << 64) - 1
_SHOWN_LINE = 120


def is_hex64(s: object) -> bool:
    """True if ``s`` is 64 lowercase hex digits (an object or snapshot id)."""
    return isinstance(s, str) and _HEX64.fullmatch(s) is not None


def new_hasher() -> Hasher:
    """A fresh BLAKE3 hasher of the platform's crypto backend."""
    return default_crypto().blake3()


def object_id(data: bytes | bytearray | memoryview) -> str:
    """The object id of a file's content: BLAKE3 of its bytes, lowercase hex."""
    h = new_hasher()
    h.update(data)
    return h.digest().hex()


def hash_stream(pieces: Iterable[bytes | bytearray | memoryview]) -> tuple[str, int]:
    """``(object id, size)`` of the concatenation of ``pieces``, in bounded memory."""
    h = new_hasher()
    size = 0
    for piece in pieces:
        h.update(piece)
        size += len(piece)
    return h.digest().hex(), size


def directory_checksum(child_checksums: Iterable[str]) -> str:
    """A directory's checksum: BLAKE3 of its direct children's checksums (files and
    directories alike), sorted, deduplicated and concatenated (``sort -u | tr -d '\\n'``)."""
    return object_id("".join(sorted(set(child_checksums))).encode("ascii"))


def snapshot_id(manifest_bytes: bytes | bytearray | memoryview) -> str:
    """The snapshot id: BLAKE3 of the rendered manifest (:func:`render_manifest`'s bytes,
    every line ending in ``\\n``)."""
    return object_id(manifest_bytes)


# ------------------------------------------------------------------------- the model


def rendered_path(rel_path: str, kind: Kind) -> str:
    """The manifest PATH of a protocol path (``""`` root, ``a/b``): ``./``, ``./a/b``,
    ``./a/b/`` for a directory."""
    if not rel_path:
        return "./"
    return f"./{rel_path}/" if kind == "D" else f"./{rel_path}"


def check_rel_path(rel_path: str) -> str | None:
    """Why ``rel_path`` (``/``-separated, ``""`` the root) cannot be a manifest path, or None."""
    if not rel_path:
        return None
    for part in rel_path.split("/"):
        if part in ("", ".", ".."):
            return f"empty, '.' or '..' component in {rel_path!r}"
    if "\n" in rel_path or "\r" in rel_path or "\x00" in rel_path:
        return f"newline, carriage return or NUL in the path {rel_path!r}"
    try:
        rel_path.encode("utf-8")
    except UnicodeEncodeError:
        return f"the path {rel_path.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8"
    return None


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One manifest line. ``path`` is as rendered (``./``, ``./a/``, ``./a/f``)."""

    kind: Kind
    perms: int        # st_mode & 0o7777
    checksum: str     # object id (F) or directory checksum (D)
    size: int         # file bytes (F); total file bytes under it (D)
    path: str

    @property
    def is_dir(self) -> bool:
        return self.kind == "D"

    @property
    def rel_path(self) -> str:
        """The protocol path: ``""`` for the root, ``a/b`` otherwise (no trailing ``/``)."""
        return self.path[2:].rstrip("/") if self.kind == "D" else self.path[2:]

    def render(self) -> str:
        """The line, without its ``\\n``."""
        return f"{self.kind} {self.perms:o} {self.checksum} {self.size} {self.path}"


@dataclass(frozen=True)
class Manifest:
    """Entries sorted by the bytes of their path (construct with :meth:`of`)."""

    entries: tuple[ManifestEntry, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, entries: Iterable[ManifestEntry]) -> Manifest:
        """Sorted by path; FormatError on a duplicate path."""
        ordered = tuple(sorted(entries, key=lambda e: e.path))
        m = cls(ordered)
        for i, e in enumerate(ordered):
            if i and ordered[i - 1].path == e.path:
                raise FormatError(f"manifest: duplicate path {e.path!r}")
            m._index[e.rel_path] = i
        return m

    def render(self) -> bytes:
        return render_manifest(self)

    @cached_property
    def id(self) -> str:
        """The snapshot id."""
        return snapshot_id(self.render())

    def get(self, rel_path: str) -> ManifestEntry | None:
        """The entry at a protocol path (``""`` the root, ``a/b``), or None."""
        i = self._index.get(rel_path)
        return None if i is None else self.entries[i]

    def files(self) -> Iterator[ManifestEntry]:
        return (e for e in self.entries if e.kind == "F")

    def object_ids(self) -> list[str]:
        """Distinct object ids of the files, first-seen (path) order."""
        return list(dict.fromkeys(e.checksum for e in self.entries if e.kind == "F"))

    @property
    def file_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.kind == "F")

    def __len__(self) -> int:
        return len(self.entries)


def render_manifest(m: Manifest | Iterable[ManifestEntry]) -> bytes:
    """The manifest's bytes as snapdir stores and hashes them: sorted lines, each ending
    in ``\\n`` (an empty manifest is ``b"\\n"``, like snapdir's ``echo``)."""
    entries = m.entries if isinstance(m, Manifest) else tuple(sorted(m, key=lambda e: e.path))
    return ("\n".join(e.render() for e in entries) + "\n").encode("utf-8")


# ------------------------------------------------------------------------- parsing


def _bad(number: int, line: str, what: str) -> FormatError:
    shown = line if len(line) <= _SHOWN_LINE else line[:_SHOWN_LINE] + "..."
    return FormatError(f"manifest line {number}: {what}: {shown!r}")


def _parse_line(number: int, line: str) -> ManifestEntry:
    parts = line.split(" ", 4)
    if len(parts) != 5:
        raise _bad(number, line, "expected 'TYPE PERMS CHECKSUM SIZE PATH'")
    kind, perms, checksum, size, path = parts
    if kind not in ("F", "D"):
        raise _bad(number, line, f"TYPE must be F or D, not {kind!r}")
    if not _PERMS.fullmatch(perms):
        raise _bad(number, line, f"PERMS must be octal digits (at most 7777, no leading "
                                 f"zero), not {perms!r}")
    if not is_hex64(checksum):
        raise _bad(number, line, "CHECKSUM must be 64 lowercase hex digits")
    if not _SIZE.fullmatch(size) or int(size) > _U64_MAX:
        raise _bad(number, line, f"SIZE must be a decimal u64 without leading zeros, "
                                 f"not {size!r}")
    if not path.startswith("./"):
        raise _bad(number, line, "PATH must start with './' (absolute manifests are not "
                                 "supported)")
    if kind == "D" and not path.endswith("/"):
        raise _bad(number, line, "a directory's PATH must end with '/'")
    if kind == "F" and path.endswith("/"):
        raise _bad(number, line, "a file's PATH must not end with '/'")
    entry = ManifestEntry("F" if kind == "F" else "D", int(perms, 8), checksum, int(size),
                          path)
    if path != "./" or kind != "D":
        problem = check_rel_path(entry.rel_path) if entry.rel_path else "empty path"
        if problem is not None:
            raise _bad(number, line, problem)
    return entry


def parse_manifest(text: bytes | bytearray | memoryview | str) -> Manifest:
    """Parse a manifest strictly: every field in its canonical form (so that it renders
    back to the same line), no duplicate paths. Blank lines and lines starting with
    ``#`` are ignored; a ``\\r`` before a ``\\n`` is dropped (as snapdir's ``lines()``).
    The entries are sorted by path whatever their order in ``text``.
    FormatError names the line and the rule."""
    if isinstance(text, str):
        s = text
    else:
        if len(text) > MAX_MANIFEST_SIZE:
            raise FormatError(f"manifest: {len(text)} bytes, over the limit of "
                              f"{MAX_MANIFEST_SIZE}")
        raw = bytes(text)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line_no = raw.count(b"\n", 0, e.start) + 1
            raise FormatError(f"manifest line {line_no}: not valid UTF-8") from None
    lines = s.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    entries = []
    for number, text_line in enumerate(lines, 1):
        line = text_line[:-1] if text_line.endswith("\r") else text_line
        if not line or line.startswith("#"):
            continue
        entries.append(_parse_line(number, line))
    try:
        return Manifest.of(entries)
    except FormatError as e:
        raise FormatError(str(e)) from None


# ------------------------------------------------------------------------- building

Row = tuple[str, str, int, int, str]
"""``(rel_path, kind, mode, size, checksum)`` for :func:`build_manifest`: ``rel_path``
``/``-separated (``""`` the root), kind ``"F"`` or ``"D"``, ``mode`` (``& 0o7777`` is
kept); ``size`` and ``checksum`` of a file (ignored for a directory)."""


def build_manifest(rows: Iterable[Row], *, implicit_dir_mode: int = 0o755) -> Manifest:
    """A manifest from entries: directory checksums and sizes computed bottom-up.

    A directory that is not given (the root included) but holds an entry is added with
    ``implicit_dir_mode``. UsageError on an unusable path, an entry under a file, or a
    path given twice."""
    dirs: dict[str, int] = {}
    files: dict[str, tuple[int, int, str]] = {}
    for rel_path, kind, mode, size, checksum in rows:
        problem = check_rel_path(rel_path)
        if problem is not None:
            raise UsageError(f"cannot make a manifest entry: {problem}")
        if rel_path in dirs or rel_path in files:
            raise UsageError(f"cannot make a manifest: {rel_path or '/'} is given twice")
        if kind == "D":
            dirs[rel_path] = mode & 0o7777
        elif kind == "F":
            if not rel_path:
                raise UsageError("cannot make a manifest: the root must be a directory")
            if not is_hex64(checksum) or not 0 <= size <= _U64_MAX:
                raise UsageError(f"cannot make a manifest entry for {rel_path}: bad checksum "
                                 f"or size")
            files[rel_path] = (mode & 0o7777, size, checksum)
        else:
            raise UsageError(f"cannot make a manifest entry of kind {kind!r}")
    children: dict[str, list[str]] = {}
    for rel_path in list(dirs) + list(files):
        child = rel_path
        while child:
            parent = child.rpartition("/")[0]
            if parent in files:
                raise UsageError(f"cannot make a manifest: {child} is under the file {parent}")
            siblings = children.setdefault(parent, [])
            if parent not in dirs:
                dirs[parent] = implicit_dir_mode & 0o7777
                siblings.append(child)
                child = parent
                continue
            siblings.append(child)
            break
    if not dirs:
        dirs[""] = implicit_dir_mode & 0o7777
    summary: dict[str, tuple[str, int]] = {}
    for d in sorted(dirs, key=lambda p: p.count("/") + (1 if p else 0), reverse=True):
        sums: list[str] = []
        total = 0
        for child in children.get(d, ()):
            if child in files:
                _, size, checksum = files[child]
            else:
                checksum, size = summary[child]
            sums.append(checksum)
            total += size
        if total > _U64_MAX:
            raise UsageError(f"cannot make a manifest: the files under {d or '/'} total "
                             f"more than 2**64 - 1 bytes")
        summary[d] = (directory_checksum(sums), total)
    entries = [ManifestEntry("D", mode, summary[p][0], summary[p][1], rendered_path(p, "D"))
               for p, mode in dirs.items()]
    entries += [ManifestEntry("F", mode, checksum, size, rendered_path(p, "F"))
                for p, (mode, size, checksum) in files.items()]
    return Manifest.of(entries)


def _hash_fd(fd: int, hasher: Hasher) -> int:
    """Hash the rest of an open file; returns the byte count. (The blake3 package's
    multithreaded hashing brought nothing measurable here: ~5 GB/s on one core, the
    reads dominate.)"""
    total = 0
    while True:
        chunk = os.read(fd, HASH_CHUNK_SIZE)
        if not chunk:
            return total
        hasher.update(chunk)
        total += len(chunk)


def _hash_host_file(path: str) -> tuple[str, int]:
    hasher = new_hasher()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StorageError(f"{path} changed while it was read (no longer a regular file)")
        size = _hash_fd(fd, hasher)
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror or e}") from e
    finally:
        os.close(fd)
    return hasher.digest().hex(), size


def manifest_of_directory(path: str | os.PathLike[str], *, follow_symlinks: bool = True
                          ) -> Manifest:
    """The manifest snapdir makes of a host directory (CPython).

    As snapdir: PERMS are each entry's own ``lstat`` mode (a followed symlink shows
    ``777``); symlinks are followed (a link to a file is a file with its target's content
    but, as snapdir records it, the link's own size -- the length of the target text; a
    link to a directory is a directory with the target's content); ``follow_symlinks=
    False`` drops every symlink. Broken symlinks, fifos, sockets and devices are skipped.
    Refused (UsageError): a path that is not UTF-8 or holds a newline (snapdir would
    write a manifest it cannot read back) and a symlink cycle. StorageError: an
    unreadable entry, or a file that changed size while it was hashed."""
    root = os.path.abspath(os.fspath(path))
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise UsageError(f"not a directory: {root}")
        root_perms = os.lstat(root).st_mode & 0o7777
    except FileNotFoundError:
        raise UsageError(f"no such directory: {root}") from None
    except OSError as e:
        raise StorageError(f"cannot read {root}: {e.strerror or e}") from e
    rows: list[Row] = [("", "D", root_perms, 0, "")]
    _walk_host(root, "", rows, follow_symlinks, _dir_key(root, None))
    return build_manifest(rows)


def _dir_key(path: str, st: os.stat_result | None) -> tuple[tuple[int, int], ...]:
    if st is None:
        st = os.stat(path)
    return ((st.st_dev, st.st_ino),)


def _walk_host(directory: str, rel: str, rows: list[Row], follow: bool,
               ancestors: tuple[tuple[int, int], ...]) -> None:
    try:
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it)
    except OSError as e:
        raise StorageError(f"cannot list {directory}: {e.strerror or e}") from e
    for name in names:
        full = os.path.join(directory, name)
        child = f"{rel}/{name}" if rel else name
        problem = check_rel_path(child)
        if problem is not None:
            raise UsageError(f"cannot make a snapdir manifest of {full!r}: {problem}")
        try:
            link_st = os.lstat(full)
        except FileNotFoundError:
            continue  # vanished between the listing and the stat
        except OSError as e:
            raise StorageError(f"cannot read {full}: {e.strerror or e}") from e
        is_link = stat.S_ISLNK(link_st.st_mode)
        if is_link and not follow:
            continue
        if is_link:
            try:
                st = os.stat(full)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    continue  # a broken symlink: skipped, as snapdir does
                raise StorageError(f"cannot follow {full}: {e.strerror or e}") from e
        else:
            st = link_st
        perms = link_st.st_mode & 0o7777
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                raise UsageError(f"symlink cycle: {full} leads back to a directory above it")
            rows.append((child, "D", perms, 0, ""))
            _walk_host(full, child, rows, follow, (*ancestors, key))
        elif stat.S_ISREG(st.st_mode):
            checksum, hashed = _hash_host_file(full)
            if not is_link and hashed != link_st.st_size:
                raise StorageError(f"{full} changed while it was hashed ({link_st.st_size} "
                                   f"bytes at the stat, {hashed} read)")
            rows.append((child, "F", perms, link_st.st_size, checksum))
        # fifos, sockets, devices: skipped, as snapdir does


def manifest_of_archive(archive: Archive, *, follow_symlinks: bool = True,
                        root_mode: int = 0o755,
                        progress: Callable[[str, int], None] | None = None) -> Manifest:
    """The manifest of any archive the reader opens: the one snapdir makes of its tree
    once extracted (``lockbox extract --preserve-permissions`` into a new directory).

    Every file is streamed through BLAKE3 (bounded memory; a ``.lbox`` decrypts as it
    streams, and its own checks run too). Modes are the entries' ``mode & 0o7777``; the
    root and any directory the archive implies without listing get ``root_mode``.
    Symlinks are resolved inside the archive as snapdir follows them on the extracted
    tree (see :func:`manifest_of_directory`); one leading outside the archive, broken or
    cyclic is dropped (the extractor does not create it either). ``follow_symlinks=
    False`` drops every symlink."""
    return archive_snapshot(archive, follow_symlinks=follow_symlinks, root_mode=root_mode,
                            progress=progress)[0]


def archive_snapshot(archive: Archive, *, follow_symlinks: bool = True,
                     root_mode: int = 0o755,
                     progress: Callable[[str, int], None] | None = None
                     ) -> tuple[Manifest, dict[str, str]]:
    """:func:`manifest_of_archive`, and for each object id the path of a file of the
    archive that holds it (to read the object again)."""
    rows: list[Row] = []
    links: dict[str, str] = {}
    real: dict[str, str] = {}
    for info in archive.iter_entries(""):
        rel = info.path
        if not rel:
            continue
        problem = check_rel_path(rel)
        if problem is not None:
            raise UsageError(f"cannot make a snapdir manifest of this archive: {problem}")
        if info.type == "dir":
            rows.append((rel, "D", info.mode, 0, ""))
        elif info.type == "file":
            checksum, size = hash_stream(archive.open_content(rel))
            if progress is not None:
                progress(rel, size)
            rows.append((rel, "F", info.mode, size, checksum))
            real.setdefault(checksum, rel)
        elif info.type == "symlink":
            if follow_symlinks:
                links[rel] = info.target
    if links:
        rows += _resolve_links(rows, links)
    return build_manifest(rows, implicit_dir_mode=root_mode), real


def _resolve_links(rows: list[Row], links: dict[str, str]) -> list[Row]:
    """Rows for the archive's symlinks followed as snapdir follows them on the extracted
    tree: a link to a file becomes that file (mode 777, size = the target text's length,
    as snapdir records a followed link), a link to a directory a copy of what is below
    it, links in it followed too (the directory itself 777). Dropped: a link that is
    absolute, leaves the archive or is broken, and one with entries of the archive
    under it (the extractor makes a real directory there). UsageError: a cycle."""
    by_path = {r[0]: r for r in rows}
    memo: dict[str, list[Row]] = {}

    def resolve(rel: str) -> str | None:
        """The real (non-link) path ``rel`` leads to, or None (broken or outside)."""
        parts: list[str] = []
        todo = rel.split("/")
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return None
                parts.pop()
                continue
            parts.append(part)
            here = "/".join(parts)
            if here in links:
                hops += 1
                if hops > 40 or links[here].startswith("/"):
                    return None   # ELOOP, or out of the archive
                parts.pop()
                todo = links[here].split("/") + todo
            elif todo and (here not in by_path or by_path[here][1] != "D"):
                return None       # ENOENT / ENOTDIR on the way
        real = "/".join(parts)
        return real if real in by_path or real == "" else None

    def expand(link: str, stack: tuple[str, ...]) -> list[Row]:
        if link in memo:
            return memo[link]
        if link in stack:
            raise UsageError(f"symlink cycle in the archive: {link} leads back into itself")
        dest = resolve(link)
        out: list[Row] = []
        if dest is None:
            pass
        elif dest != "" and by_path[dest][1] == "F":
            out.append((link, "F", 0o777, len(links[link].encode("utf-8")), by_path[dest][4]))
        else:
            if dest == "" or link.startswith(dest + "/"):
                raise UsageError(f"symlink cycle in the archive: {link} leads to a "
                                 f"directory above it")
            prefix = dest + "/" if dest else ""
            out.append((link, "D", 0o777, 0, ""))
            for p, r in by_path.items():
                if p.startswith(prefix):
                    out.append((link + "/" + p[len(prefix):], r[1], r[2], r[3], r[4]))
            for inner in links:
                if inner.startswith(prefix) and _directly_under_real(inner):
                    for r in expand(inner, (*stack, link)):
                        out.append((link + "/" + r[0][len(prefix):], r[1], r[2], r[3], r[4]))
        memo[link] = out
        return out

    def _directly_under_real(link: str) -> bool:
        parent = link.rpartition("/")[0]
        if any(p.startswith(link + "/") for p in by_path):
            return False   # entries under it: the extractor makes a real directory
        return not parent or resolve(parent) == parent

    result: list[Row] = []
    for link in sorted(links):
        if _directly_under_real(link):
            result += expand(link, ())
    return result
