"""Safe extraction to a local directory.

The archive is authentic (it opened with the key) but its content may be hostile: any
key holder can write it. The rules follow CPython's ``tarfile`` ``data`` filter (PEP 706)
and are stricter where said.

**Paths.** Every archive path is re-checked (relative; no '.', '..' or empty component).
Directories are opened component by component from a descriptor of the destination
(``openat`` with ``O_NOFOLLOW | O_DIRECTORY``): a component that is a symlink or not a
directory is never followed, so nothing is ever written *through* a symlink, whether it
was in the destination before or comes from the archive.

**Symlinks** are created last, after every file and directory, so that no later entry
can be written through one (an archive holding ``l -> sub`` and ``l/x`` gets a real
directory ``l``; the link is skipped). A link's target must be relative and stay inside
the destination both lexically and when resolved against the real filesystem under the
destination (:func:`link_escape`: components looked up on disk, links already there --
the archive's earlier ones and the destination's own -- followed as the kernel would, a
missing component taken lexically). Once every link is in place each is checked again
(a link can resolve through one created after it) and removed if it now leaves the
destination, until nothing changes.

**Modes.** By default (:func:`safe_mode`, the ``data`` filter's rule): a file keeps
``mode & 0o755`` -- setuid, setgid, sticky, group-write and other-write are dropped --
loses group/other execute when its owner has none, and is always owner read/write; a
directory keeps ``mode & 0o755`` and is always owner rwx. "World-writable" stripping
therefore removes group write too: the group of an extracted file is the extracting
user's, not the archive author's. ``preserve_permissions=True`` keeps ``mode & 0o7777``
as archived. Directory modes and times are set at the end, deepest first.

**Files** are written to a fresh name in their directory (``.<random>.lbx-part``,
``O_CREAT | O_EXCL | O_NOFOLLOW``, another name on EEXIST), so no existing file, hard link
or symlink is ever opened for writing; the temporary file is renamed over the target only
after the content's hash verified.

**Size.** Before anything is written: the total of the files' sizes (from the TOC) is
checked against ``max_size`` (:class:`~lockbox.errors.UsageError`: the caller's own
limit, not a property of the archive) and against the free space of the destination's
filesystem (:class:`~lockbox.errors.StorageError`); with ``overwrite=False`` every
conflict with an existing path is found first too (StorageError, nothing written).
The space check counts each file rounded up to whole 4 KiB blocks, plus one block per
entry, plus a margin (1 MiB or 1 %), and does not count what overwritten files free.

**Times and owners.** An entry's modification time is set when the archive has one; a
format without times (``.uri``: ``mtime_ns`` 0) leaves the file's own time (the time of
extraction), never 1970. Owner and group names (formats that record them) are applied
only with ``same_owner=True`` and only when running as root, like tar's
``--same-owner``; names unknown to this system are left as they are. What was not
applied is counted in :attr:`ExtractReport.notes` (one line each).

**Unsafe entries** (unsafe path, a symlink or non-directory in the way, escaping or
malformed symlink target, an entry type other than file, directory and symlink) are
skipped and listed in :attr:`ExtractReport.skipped`; the rest is extracted. Storage and
integrity errors still stop the extraction.

The extractor works on :class:`~lockbox.info.EntryInfo` (any format) and an
``open_content(path)`` that gives a file's content as an iterator of pieces and raises
IntegrityError before the last piece when the file does not check out (for a format
session: its ``stream_flow``); the file is renamed into place only after its last piece.

**Order.** Entries are extracted in path order (a directory before its contents), links
last. A format whose files share stored frames (``.lbox`` packs: many small files in one
frame) can give a ``read_order``: the files are then read in that order (where their
content is stored, each shared frame read once), after every directory was made. The
rules above do not depend on the order; only when a file's path is a directory of another
entry (a hostile archive) is path order kept, so that the later entries are skipped as
before rather than the file refused.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat as stat_mod
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from .errors import (
    BackendUnavailableError,
    StorageError,
    UnsafePathError,
    UsageError,
)
from .fileio import start_writeback
from .info import EntryInfo
from .platform import IS_BROWSER

__all__ = ["Extractor", "ExtractReport", "SkippedEntry", "OpenContent", "ReadOrder", "safe_mode",
           "link_escape", "path_problem", "free_bytes", "MAX_LINK_HOPS", "BLOCK_SIZE",
           "SPACE_MARGIN", "MAX_PATH_BYTES", "MAX_NAME_BYTES"]

MAX_LINK_HOPS = 64  # more than any kernel follows (Linux 40, BSD/macOS 32)
BLOCK_SIZE = 4096
SPACE_MARGIN = 1024 * 1024
MAX_PATH_BYTES = 4096   # longer archive paths are skipped (no system creates them)
MAX_NAME_BYTES = 1024   # longer names are skipped
WRITE_BEHIND = not IS_BROWSER
"""Whether a large file's pieces are written by a thread while the next are decoded
(not under Pyodide, which has no threads). Tests turn it off to compare."""
_BEHIND_MIN_SIZE = 4 * 1024 * 1024  # smaller files are written by the caller's thread
_BEHIND_BYTES = 16 * 1024 * 1024  # at most this much waits to be written
_WRITEBACK_BYTES = 8 * 1024 * 1024
_TEMP_TRIES = 100
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | _O_CLOEXEC
_O_TEMP = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | _O_CLOEXEC)

T = TypeVar("T")
Progress = Callable[[str, int], None]
OpenContent = Callable[[str], Iterable[bytes | bytearray | memoryview]]
"""``open_content(path)``: a file's content in pieces; IntegrityError before the last
piece when the content does not check out."""
ReadOrder = Callable[[list[EntryInfo]], list[EntryInfo]]
"""``read_order(files)``: the same files (path order in), in the order to read them."""
# lookup(directory components, name) -> ("dir" | "link" | "missing" | "other", link target)
Lookup = Callable[[Sequence[str], str], tuple[str, str]]


class SkippedEntry(NamedTuple):
    """An entry that was not extracted because it was unsafe, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ExtractReport:
    """What an extraction did. ``skipped`` lists the unsafe entries left out (sorted by
    path; ``str()`` of each is one line: ``path: reason``); everything else was
    extracted. ``dest`` is the destination's real path."""

    dest: str = ""
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    file_bytes: int = 0
    skipped: list[SkippedEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """One line per kind of information of the archive that was not applied (times the
    archive does not have, owners not applied); nothing is left out silently."""

    @property
    def entries(self) -> int:
        return self.files + self.dirs + self.symlinks

    def skipped_summary(self, limit: int = 3) -> str:
        """One line: how many entries were skipped, the first ``limit`` with reasons."""
        n = len(self.skipped)
        shown = "; ".join(str(s) for s in self.skipped[:limit])
        more = f"; and {n - limit} more" if n > limit else ""
        return (f"skipped {n} unsafe entr{'y' if n == 1 else 'ies'} (the rest was "
                f"extracted): {shown}{more}")


class _Skip(UnsafePathError):
    """Internal: this entry is unsafe; skip it and go on."""


def safe_mode(entry_type: str | int, mode: int, preserve: bool = False) -> int:
    """The permission bits an extracted file or directory gets (see the module doc).
    ``entry_type``: ``"dir"``/``"file"`` (``EntryInfo.type``) or a format's own enum
    whose member is named ``DIR``/``FILE``."""
    if preserve:
        return mode & 0o7777
    m = mode & 0o755
    if str(getattr(entry_type, "name", entry_type)).lower() == "dir":
        return m | 0o700
    if not m & 0o100:
        m &= ~0o111
    return m | 0o600


def free_bytes(path: str) -> int:
    """Bytes an unprivileged user may still write on ``path``'s filesystem."""
    return shutil.disk_usage(path).free


def link_escape(link_dir: Sequence[str], target: str, lookup: Lookup,
                root: str = "the destination") -> str | None:
    """Why a symlink in ``link_dir`` (components below the root) pointing at ``target``
    would lead outside the root (called ``root`` in the reason), or None when it stays
    inside (or cannot be followed).

    Refused: an empty target or one with NUL, an absolute one, one that leaves the root
    lexically, and one that leaves it when resolved through ``lookup`` -- each component
    looked up in turn, links followed (their targets relative to their own directory,
    ``..`` taken physically, as the kernel does), components that are missing or not a
    directory taken lexically from there on. More than :data:`MAX_LINK_HOPS` links: the
    system would give up (ELOOP), so nothing is reached."""
    if not target or "\x00" in target:
        return "malformed symlink target"
    if target.startswith("/"):
        return f"absolute symlink target ({target})"
    depth = len(link_dir)
    for c in target.split("/"):
        if c == "..":
            depth -= 1
            if depth < 0:
                return f"symlink target leads outside {root} ({target})"
        elif c not in ("", "."):
            depth += 1
    stack = list(link_dir)
    todo = target.split("/")[::-1]
    hops = 0
    lexical = False
    while todo:
        c = todo.pop()
        if c in ("", "."):
            continue
        if c == "..":
            if not stack:
                return f"symlink target leads outside {root} through other links ({target})"
            stack.pop()
            continue
        if lexical:
            stack.append(c)
            continue
        kind, link = lookup(stack, c)
        if kind == "link":
            hops += 1
            if hops > MAX_LINK_HOPS:
                return None
            if not link or link.startswith("/"):
                return (f"symlink target leads outside {root} through an absolute link "
                        f"({target})")
            todo.extend(link.split("/")[::-1])
            continue
        stack.append(c)
        lexical = kind != "dir"
    return None


def _check_member(path: str) -> list[str]:
    """The components of a safe archive path: relative, no '.', '..' or empty component,
    no NUL, representable as a file name here (a component that was not UTF-8 in the
    archive comes decoded with ``surrogateescape`` and is created with its own bytes)."""
    parts = path.split("/")
    if (path.startswith("/") or (os.sep != "/" and os.sep in path)
            or any(p in ("", ".", "..") for p in parts)):
        raise _Skip(f"unsafe path in the archive ({path!r})")
    if "\x00" in path:
        raise _Skip(f"unsafe path in the archive (path contains NUL: {path!r})")
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        raise _Skip(f"unsafe path in the archive (not a file name here: {path!r})") from None
    if len(raw) > MAX_PATH_BYTES:
        raise _Skip(f"unsafe path in the archive (longer than {MAX_PATH_BYTES} bytes)")
    if any(len(os.fsencode(p)) > MAX_NAME_BYTES for p in parts):
        raise _Skip(f"unsafe path in the archive (a name longer than {MAX_NAME_BYTES} bytes)")
    return parts


def path_problem(path: str) -> str | None:
    """Why extraction would refuse the archive path ``path`` (the reason it would give),
    or None when it is a safe relative path."""
    try:
        _check_member(path)
    except _Skip as s:
        return str(s)
    return None


def _human(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    size = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _blocks(size: int) -> int:
    return -(-size // BLOCK_SIZE) * BLOCK_SIZE


def _check_platform() -> None:
    needed = (os.open, os.mkdir, os.stat, os.readlink, os.symlink, os.unlink, os.rename)
    if not all(f in os.supports_dir_fd for f in needed) or not hasattr(os, "O_NOFOLLOW"):
        raise BackendUnavailableError("extracting needs a POSIX system (openat and "
                                      "O_NOFOLLOW), which this platform does not offer")


class _Dirs:
    """Descriptors of the directories from the destination down to the current one,
    each opened relative to its parent with O_NOFOLLOW | O_DIRECTORY."""

    def __init__(self, root_fd: int, root: str) -> None:
        self.root_fd = root_fd
        self.root = root
        self.names: list[str] = []
        self.fds: list[int] = []

    def show(self, parts: Sequence[str]) -> str:
        return os.path.join(self.root, *parts)

    def _drop(self, keep: int) -> None:
        while len(self.fds) > keep:
            os.close(self.fds.pop())
            self.names.pop()

    def close(self) -> None:
        self._drop(0)

    def open(self, parts: Sequence[str], *, create: bool) -> int | None:
        """The descriptor of directory ``parts`` (None if missing and not ``create``;
        missing ones are created like ``mkdir -p``). A symlink or non-directory on the
        way raises _Skip."""
        k = 0
        while k < min(len(parts), len(self.names)) and self.names[k] == parts[k]:
            k += 1
        self._drop(k)
        for i in range(k, len(parts)):
            parent = self.fds[-1] if self.fds else self.root_fd
            name = parts[i]
            try:
                fd = os.open(name, _O_DIR, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(name, 0o777, dir_fd=parent)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise StorageError(f"cannot create {self.show(parts[:i + 1])}: "
                                       f"{e.strerror}") from e
                try:
                    fd = os.open(name, _O_DIR, dir_fd=parent)
                except OSError as e:
                    raise self._refuse(parts[:i + 1], parent, e) from e
            except OSError as e:
                raise self._refuse(parts[:i + 1], parent, e) from e
            self.names.append(name)
            self.fds.append(fd)
        return self.fds[-1] if self.fds else self.root_fd

    def _refuse(self, parts: Sequence[str], parent: int, e: OSError) -> Exception:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            return StorageError(f"cannot open {self.show(parts)}: {e.strerror}")
        try:
            is_link = stat_mod.S_ISLNK(os.lstat(parts[-1], dir_fd=parent).st_mode)
        except OSError:
            is_link = False
        what = "a symlink" if is_link else "not a directory"
        return _Skip(f"{'/'.join(parts)} is {what} in the destination: not followed")


def _lstat(fd: int, name: str, dirs: _Dirs, parts: Sequence[str]) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot use {dirs.show(parts)}: {e.strerror}") from e


@dataclass
class _Link:
    path: str
    parts: list[str]
    target: str


class _Owners:
    """Owner/group names -> ids on this system (applied only with ``same_owner`` as
    root), and the counts behind :attr:`ExtractReport.notes`."""

    def __init__(self, same_owner: bool) -> None:
        self.requested = same_owner
        self.apply = same_owner and hasattr(os, "geteuid") and os.geteuid() == 0
        self.carried = 0     # entries that had an owner or group name
        self.unknown = 0     # ... whose names this system does not know (left as is)
        self.no_time = 0     # entries without a modification time
        self._users: dict[str, int] = {}
        self._groups: dict[str, int] = {}

    def ids(self, entry: EntryInfo) -> tuple[int, int] | None:
        """(uid, gid) to give ``entry`` (-1: leave), or None to change nothing."""
        if not (entry.owner or entry.group):
            return None
        self.carried += 1
        if not self.apply:
            return None
        uid = self._lookup(entry.owner, self._users, "pwd", "getpwnam", "pw_uid")
        gid = self._lookup(entry.group, self._groups, "grp", "getgrnam", "gr_gid")
        if (entry.owner and uid < 0) or (entry.group and gid < 0):
            self.unknown += 1
        return None if uid < 0 and gid < 0 else (uid, gid)

    @staticmethod
    def _lookup(name: str, cache: dict[str, int], module: str, func: str, attr: str) -> int:
        if not name:
            return -1
        if name not in cache:
            try:
                mod = __import__(module)
                cache[name] = int(getattr(getattr(mod, func)(name), attr))
            except (ImportError, KeyError, UnicodeEncodeError, ValueError):
                cache[name] = -1
        return cache[name]

    def notes(self) -> list[str]:
        out = []
        if self.no_time:
            out.append(f"{self.no_time} entries have no modification time in the archive: "
                       "they keep the time of extraction")
        if self.carried and not self.apply:
            why = ("--same-owner needs root" if self.requested
                   else "use --same-owner as root to apply them")
            out.append(f"owner/group names of {self.carried} entries not applied ({why})")
        elif self.unknown:
            out.append(f"owner/group names of {self.unknown} entries unknown on this system: "
                       "left as the extracting user's")
        return out


class Extractor:
    """Extracts entries under ``dest`` (see the module doc for the rules).

    ``run(items, open_content, progress, read_order=None)`` takes
    :class:`~lockbox.info.EntryInfo` items (any format) and ``open_content(path)``, a
    file's content as an iterator of pieces that raises IntegrityError before the last
    piece if the content is bad; ``read_order``: see "Order" in the module doc.
    ``same_owner``: apply owner/group names (only as root)."""

    def __init__(self, dest: str | os.PathLike[str], *, overwrite: bool = False,
                 preserve_permissions: bool = False, max_size: int | None = None,
                 free_space: Callable[[str], int] | None = None,
                 same_owner: bool = False) -> None:
        _check_platform()
        if max_size is not None and max_size < 0:
            raise UsageError("max_size must be a number of bytes >= 0")
        self.dest = os.path.realpath(os.fspath(dest))
        self.overwrite = overwrite
        self.preserve_permissions = preserve_permissions
        self.max_size = max_size
        self._free_space = free_space
        self._owners = _Owners(same_owner)
        self.report = ExtractReport(dest=self.dest)
        self._dirs: _Dirs | None = None
        self._dir_attrs: list[tuple[list[str], int, int | None, tuple[int, int] | None]] = []
        self._links: list[_Link] = []

    # -- before writing anything ---------------------------------------------------------

    def _check_size(self, items: Sequence[EntryInfo]) -> None:
        total = sum(e.size for e in items if e.type == "file")
        if self.max_size is not None and total > self.max_size:
            raise UsageError(f"refusing to extract {_human(total)} of files ({total:,} bytes): "
                             f"over the limit of {_human(self.max_size)} (--max-size)")
        need = sum(_blocks(e.size) for e in items if e.type == "file")
        need += BLOCK_SIZE * len(items)
        need += max(SPACE_MARGIN, need // 100)
        probe = self.dest
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        try:
            free = (self._free_space or free_bytes)(probe)
        except OSError as e:
            raise StorageError(f"cannot check the free space of {probe}: {e.strerror}") from e
        if need > free:
            raise StorageError(f"not enough free space in {self.dest}: extracting "
                               f"{_human(total)} of files needs about {_human(need)}, "
                               f"{_human(free)} available")

    def _check_conflicts(self, items: Sequence[EntryInfo]) -> None:
        """Existing paths the extraction would replace (all of them, before writing)."""
        try:
            root_fd = os.open(self.dest, _O_DIR & ~getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return
        except OSError as e:
            raise StorageError(f"cannot use the destination {self.dest}: {e.strerror}") from e
        dirs = _Dirs(root_fd, self.dest)
        conflicts: list[str] = []
        replace_dir: list[str] = []
        try:
            for entry in items:
                path = entry.path
                try:
                    parts = _check_member(path)
                    fd = dirs.open(parts[:-1], create=False)
                except _Skip:
                    continue  # reported when extracting
                if fd is None:
                    continue
                try:
                    st = os.lstat(parts[-1], dir_fd=fd)
                except OSError:
                    continue  # missing, or an error reported when extracting
                if stat_mod.S_ISDIR(st.st_mode):
                    if entry.type != "dir":
                        replace_dir.append(path)
                elif not self.overwrite:
                    conflicts.append(path)
        finally:
            dirs.close()
            os.close(root_fd)
        if replace_dir:
            raise StorageError(f"refusing to replace {len(replace_dir)} existing "
                               f"director{'y' if len(replace_dir) == 1 else 'ies'} in "
                               f"{self.dest} with files or links: {_first(replace_dir)}")
        if conflicts:
            raise StorageError(f"refusing to overwrite {len(conflicts)} existing "
                               f"entr{'y' if len(conflicts) == 1 else 'ies'} in {self.dest}: "
                               f"{_first(conflicts)} (use --overwrite)")

    # -- extracting -----------------------------------------------------------------------

    def run(self, items: Iterable[EntryInfo], open_content: OpenContent,
            progress: Progress | None = None, *,
            read_order: ReadOrder | None = None) -> ExtractReport:
        todo = sorted(items, key=lambda e: e.path.split("/"))
        self._check_size(todo)
        self._check_conflicts(todo)
        if read_order is not None and not _nests_in_a_file(todo):
            todo = _in_read_order(todo, read_order)
        try:
            os.makedirs(self.dest, exist_ok=True)
            root_fd = os.open(self.dest, _O_DIR & ~getattr(os, "O_NOFOLLOW", 0))
        except OSError as e:
            raise StorageError(f"cannot create the destination {self.dest}: "
                               f"{e.strerror or e}") from e
        self._dirs = _Dirs(root_fd, self.dest)
        try:
            links: list[tuple[list[str], EntryInfo]] = []
            for entry in todo:
                path = entry.path
                try:
                    parts = _check_member(path)
                    if entry.type == "dir":
                        self._directory(parts, entry)
                    elif entry.type == "symlink":
                        links.append((parts, entry))
                    elif entry.type == "file":
                        self._file(parts, entry, open_content, progress)
                    else:
                        raise _Skip(f"unsupported entry type ({entry.type})")
                except _Skip as s:
                    self.report.skipped.append(SkippedEntry(path, str(s)))
            for parts, entry in links:
                try:
                    self._symlink(parts, entry)
                except _Skip as s:
                    self.report.skipped.append(SkippedEntry(entry.path, str(s)))
            self._recheck_links()
            self._set_dir_attrs()
            self.report.skipped.sort(key=lambda sk: sk.path.split("/"))
            self.report.notes = self._owners.notes()
        finally:
            self._dirs.close()
            os.close(root_fd)
            self._dirs = None
        return self.report

    def _parent(self, parts: Sequence[str]) -> int:
        assert self._dirs is not None
        fd = self._dirs.open(parts[:-1], create=True)
        assert fd is not None
        return fd

    def _mtime(self, entry: EntryInfo) -> int | None:
        """The time to set, or None when the archive has none (mtime_ns 0)."""
        if entry.mtime_ns:
            return entry.mtime_ns
        self._owners.no_time += 1
        return None

    def _directory(self, parts: list[str], entry: EntryInfo) -> None:
        assert self._dirs is not None
        fd = self._parent(parts)
        name = parts[-1]
        st = _lstat(fd, name, self._dirs, parts)
        try:
            if st is not None and not stat_mod.S_ISDIR(st.st_mode):
                if not self.overwrite:
                    raise StorageError(f"refusing to overwrite existing "
                                       f"{self._dirs.show(parts)} (use --overwrite)")
                os.unlink(name, dir_fd=fd)
                st = None
            if st is None:
                os.mkdir(name, 0o700, dir_fd=fd)
        except OSError as e:
            raise StorageError(f"cannot create {self._dirs.show(parts)}: {e.strerror}") from e
        mtime = self._mtime(entry)
        self._dir_attrs.append((parts, safe_mode("dir", entry.mode, self.preserve_permissions),
                                mtime, self._owners.ids(entry)))
        self.report.dirs += 1

    def _temp(self, parts: Sequence[str], make: Callable[[str], T]) -> tuple[str, T]:
        """``make(name)`` with a fresh random name; it must fail with EEXIST if taken."""
        assert self._dirs is not None
        for _ in range(_TEMP_TRIES):
            tmp = f".{secrets.token_hex(8)}.lbx-part"
            try:
                return tmp, make(tmp)
            except FileExistsError:
                continue
            except OSError as e:
                raise StorageError(f"cannot create a temporary file next to "
                                   f"{self._dirs.show(parts)}: {e.strerror}") from e
        raise StorageError(f"cannot find a free temporary name next to "
                           f"{self._dirs.show(parts)}")

    def _file(self, parts: list[str], entry: EntryInfo, open_content: OpenContent,
              progress: Progress | None) -> None:
        assert self._dirs is not None
        path = entry.path
        fd = self._parent(parts)
        name = parts[-1]
        self._check_replace(fd, parts)
        tmp, out = self._temp(parts, lambda t: os.open(t, _O_TEMP, 0o600, dir_fd=fd))
        ok = False
        size = 0
        behind = (_WriteBehind(out) if WRITE_BEHIND and entry.size >= _BEHIND_MIN_SIZE
                  else None)
        try:
            try:
                for piece in open_content(path):
                    view = memoryview(piece).cast("B")
                    n_piece = len(view)
                    if behind is not None:
                        # A piece that may change once given back is copied first.
                        behind.write(view if isinstance(view.obj, bytes)
                                     else memoryview(bytes(view)))
                    else:
                        _write_all(out, view)
                    size += n_piece
                    if progress is not None:
                        progress(path, n_piece)
                if behind is not None:
                    behind.finish()  # every byte written (or its OSError raised)
                    behind = None
                ids = self._owners.ids(entry)
                if ids is not None:
                    os.fchown(out, *ids)  # before chmod: chown clears setuid/setgid
                os.fchmod(out, safe_mode("file", entry.mode, self.preserve_permissions))
                mtime = self._mtime(entry)
                if mtime is not None:
                    os.utime(out, ns=(mtime, mtime))
            finally:
                if behind is not None:  # failed: no write may outlive the descriptor
                    behind.abandon()
                os.close(out)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            ok = True
        except OSError as e:
            raise StorageError(f"cannot write {self._dirs.show(parts)}: {e.strerror}") from e
        finally:
            if not ok:
                try:
                    os.unlink(tmp, dir_fd=fd)
                except OSError:
                    pass
        self.report.files += 1
        self.report.file_bytes += size

    def _check_replace(self, fd: int, parts: Sequence[str]) -> bool:
        """Whether a non-directory may be put at ``parts`` (True: something is there)."""
        assert self._dirs is not None
        st = _lstat(fd, parts[-1], self._dirs, parts)
        if st is None:
            return False
        if stat_mod.S_ISDIR(st.st_mode):
            raise StorageError(f"refusing to replace the directory {self._dirs.show(parts)}")
        if not self.overwrite:
            raise StorageError(f"refusing to overwrite existing {self._dirs.show(parts)} "
                               f"(use --overwrite)")
        return True

    def _lookup(self, parent: Sequence[str], name: str) -> tuple[str, str]:
        assert self._dirs is not None
        fd = self._dirs.open(parent, create=False)
        if fd is None:
            return "missing", ""
        try:
            st = os.lstat(name, dir_fd=fd)
            if stat_mod.S_ISLNK(st.st_mode):
                return "link", os.readlink(name, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return "missing", ""
        except OSError as e:
            raise _Skip(f"cannot check where the symlink leads: {e.strerror}") from e
        return ("dir" if stat_mod.S_ISDIR(st.st_mode) else "other"), ""

    def _symlink(self, parts: list[str], entry: EntryInfo) -> None:
        assert self._dirs is not None
        target = entry.target
        why = link_escape(parts[:-1], target, self._lookup)
        if why is not None:
            raise _Skip(why)
        fd = self._parent(parts)
        name = parts[-1]
        st = _lstat(fd, name, self._dirs, parts)
        if st is not None and stat_mod.S_ISDIR(st.st_mode):
            raise _Skip("a directory of that name exists (the archive has entries below it)")
        try:
            if st is None:
                os.symlink(target, name, dir_fd=fd)
            else:
                self._check_replace(fd, parts)
                tmp, _ = self._temp(parts, lambda t: os.symlink(target, t, dir_fd=fd))
                try:
                    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
                except OSError:
                    os.unlink(tmp, dir_fd=fd)
                    raise
        except OSError as e:
            raise StorageError(f"cannot create the symlink {self._dirs.show(parts)}: "
                               f"{e.strerror}") from e
        ids = self._owners.ids(entry)
        if ids is not None:
            try:
                os.chown(name, *ids, dir_fd=fd, follow_symlinks=False)
            except OSError as e:
                raise StorageError(f"cannot set the owner of {self._dirs.show(parts)}: "
                                   f"{e.strerror}") from e
        mtime = self._mtime(entry)
        if mtime is not None:
            try:
                os.utime(name, ns=(mtime, mtime), dir_fd=fd, follow_symlinks=False)
            except (NotImplementedError, OSError):
                pass  # a link's own time cannot be set everywhere; it is not worth failing
        self._links.append(_Link(entry.path, parts, target))
        self.report.symlinks += 1

    def _recheck_links(self) -> None:
        """With every link in place, remove those that now lead outside; repeat."""
        assert self._dirs is not None
        changed = True
        while changed:
            changed = False
            for link in list(self._links):
                try:
                    why = link_escape(link.parts[:-1], link.target, self._lookup)
                except _Skip as s:
                    why = str(s)
                if why is None:
                    continue
                fd = self._parent(link.parts)
                name = link.parts[-1]
                st = _lstat(fd, name, self._dirs, link.parts)
                if st is not None and stat_mod.S_ISLNK(st.st_mode):
                    try:
                        os.unlink(name, dir_fd=fd)
                    except OSError as e:
                        raise StorageError(f"cannot remove the unsafe symlink "
                                           f"{self._dirs.show(link.parts)}: "
                                           f"{e.strerror}") from e
                self._links.remove(link)
                self.report.symlinks -= 1
                self.report.skipped.append(SkippedEntry(
                    link.path, f"{why}, once the archive's other links are in place"))
                changed = True

    def _set_dir_attrs(self) -> None:
        assert self._dirs is not None
        for parts, mode, mtime, ids in sorted(self._dir_attrs, key=lambda t: -len(t[0])):
            try:
                fd = self._dirs.open(parts, create=False)
                if fd is None:
                    raise FileNotFoundError(errno.ENOENT, "it has disappeared")
                if ids is not None:
                    os.fchown(fd, *ids)
                os.fchmod(fd, mode)
                if mtime is not None:
                    os.utime(fd, ns=(mtime, mtime))
            except OSError as e:
                raise StorageError(f"cannot set attributes of {self._dirs.show(parts)}: "
                                   f"{e.strerror}") from e


def _nests_in_a_file(items: Sequence[EntryInfo]) -> bool:
    """Whether some entry lies below a path that is a file of ``items`` (a hostile
    archive: in path order the file comes first and the entries below it are skipped)."""
    files = {e.path for e in items if e.type == "file"}
    for e in items:
        parts = e.path.split("/")
        for k in range(1, len(parts)):
            if "/".join(parts[:k]) in files:
                return True
    return False


def _in_read_order(todo: list[EntryInfo], read_order: ReadOrder) -> list[EntryInfo]:
    """Everything but the files in path order, then the files in ``read_order``'s order
    (which must give back the same files: ValueError otherwise, a format's bug)."""
    files = [e for e in todo if e.type == "file"]
    ordered = list(read_order(list(files)))
    if len(ordered) != len(files) or {id(e) for e in ordered} != {id(e) for e in files}:
        raise ValueError("read_order must return the files it was given, each once")
    return [e for e in todo if e.type != "file"] + ordered


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "the system wrote nothing")
        view = view[n:]


class _WriteBehind:
    """Writes one file's pieces in order on a thread of its own (``os.write`` releases
    the GIL) while the caller decodes the next ones; at most :data:`_BEHIND_BYTES`
    wait (bounded memory). Every 8 MiB written, their writeback is started
    (:func:`~lockbox.fileio.start_writeback`: a later ``sync`` finds little left to do;
    nothing is promised: extraction does not fsync, as tar does not). The first
    OSError stops the writing and is raised to the caller by its next :meth:`write` or
    by :meth:`finish`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._pending: deque[memoryview] = deque()
        self._pending_bytes = 0
        self._error: OSError | None = None
        self._stop = False
        self._closed = False
        self._written = 0  # bytes written (from offset 0: a new file)
        self._kicked = 0  # bytes whose writeback was started
        self._thread = threading.Thread(target=self._run, name="lockbox-extract-write",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cond, pending = self._cond, self._pending
        while True:
            with cond:
                while not pending and not self._closed:
                    cond.wait()
                if not pending:
                    return
                view = pending[0]
                skip = self._stop or self._error is not None
            if not skip:
                try:
                    _write_all(self._fd, view)
                    self._written += len(view)
                    if self._written - self._kicked >= _WRITEBACK_BYTES:
                        start_writeback(self._fd, self._kicked, self._written - self._kicked)
                        self._kicked = self._written
                except OSError as e:
                    with cond:
                        self._error = e
            with cond:
                pending.popleft()
                self._pending_bytes -= len(view)
                cond.notify_all()

    def write(self, view: memoryview) -> None:
        """Queue ``view`` (which must not change until written); waits while too much is
        queued. Raises the OSError of an earlier write."""
        size = len(view)
        with self._cond:
            while (self._pending_bytes and self._pending_bytes + size > _BEHIND_BYTES
                   and self._error is None):
                self._cond.wait()
            if self._error is not None:
                raise self._error
            self._pending.append(view)
            self._pending_bytes += size
            self._cond.notify_all()

    def _join(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def finish(self) -> None:
        """Wait until everything queued is written; raise the first OSError."""
        self._join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Skip what is still queued and wait for the thread (errors dropped)."""
        with self._cond:
            self._stop = True
        self._join()


def _first(paths: Sequence[str], limit: int = 3) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more
