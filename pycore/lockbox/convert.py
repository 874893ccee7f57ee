"""``lockbox convert``: from any readable format, or a directory, to ``.lbox``, ``.uri``
or a directory (CPython, local destinations).

**The target** is the destination's extension (``.lbox``, ``.uri``), else a directory
(an existing one, a name ending in ``/``, or a name without an extension);
``to_format`` forces one. A directory target *is* extraction, with all its safety rules
(:mod:`lockbox.extract`). An archive target is written to a temporary file next to the
destination, fsynced and renamed over it: there is never a half-written archive at the
destination, and a failure (a damaged source file, a full disk) leaves nothing there.

**Streaming.** Entries come from the source's walk one batch at a time
(:meth:`~lockbox.facade.Archive.iter_entries`) and each file's content as a stream
(:meth:`~lockbox.facade.Archive.iter_bytes`: checked by the source format before its
last piece), written as it arrives; memory is bounded by a batch of entries and a read
window, whatever the size of the files. (A ``.lbox`` target keeps the staged entries'
metadata until its one commit, a directory target the list of entries to check them
all before writing, as ``extract`` does.)

**Nothing dropped silently.** What the target cannot carry is reported: metadata in
:attr:`ConvertReport.notes` (one line per kind, with a count: modification times into
``.uri``, owner/group names into ``.lbox``, times a source does not have), and entries
left out in :attr:`ConvertReport.skipped` (one ``SkippedEntry(path, reason)`` each: fifos,
sockets and devices of a directory, names a format cannot hold).

**Unsafe entries of an archive** -- a path extraction would refuse, a symlink whose
target is absolute or leads outside the archive's root, directly or through the
archive's other links -- are skipped and reported, as extraction does (a directory
target: the extractor itself judges them on disk). Symlinks are written after every
other entry, once they are all known. A directory source is the user's own tree: its
symlinks are kept as they are.
"""

from __future__ import annotations

import os
import secrets
import stat as stat_mod
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InvalidPathError, StorageError, UsageError
from .extract import Extractor, ReadOrder, SkippedEntry, link_escape, path_problem
from .facade import Archive
from .fileio import (
    O_READ_HOST_FILE,
    group_name,
    replace_atomically,
    special_file_kind,
    user_name,
)
from .info import EntryInfo
from .registry import for_path

if TYPE_CHECKING:
    from .formats.lbox.keys import Argon2Params, Recipient

__all__ = ["convert", "target_format", "ConvertReport", "NewLbox", "TreeReader", "TARGETS",
           "COPY_SIZE"]

TARGETS = ("lbox", "uri", "dir")
COPY_SIZE = 1024 * 1024
Progress = Callable[[str, int], None]
Content = Iterable[bytes | bytearray | memoryview] | None


@dataclass
class ConvertReport:
    """What :func:`convert` wrote. ``skipped``: entries left out (unsafe ones and those
    the target cannot store), sorted by path; ``unsafe``: how many of them were unsafe;
    ``notes``: one line per kind of information the target does not carry."""

    source: str = ""
    dest: str = ""
    source_format: str = ""   # "dir" or a FormatSpec name
    target_format: str = ""   # one of TARGETS
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    file_bytes: int = 0
    skipped: list[SkippedEntry] = field(default_factory=list)
    unsafe: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return self.files + self.dirs + self.symlinks

    @property
    def complete(self) -> bool:
        """True when every entry of the source was converted."""
        return not self.skipped


@dataclass(frozen=True)
class NewLbox:
    """How to protect a new ``.lbox`` (the options of ``lockbox create``)."""

    password: str | bytes | None = None
    recipients: Sequence[Recipient] = ()
    argon2: Argon2Params | None = None
    chunk_size: int | None = None


def target_format(dest: str | os.PathLike[str], to_format: str | None = None) -> str:
    """The target format of ``dest``: ``to_format`` if given, else its extension, else a
    directory (an existing one, a trailing ``/``, or no extension at all)."""
    if to_format is not None:
        name = to_format.strip().lower().lstrip(".")
        if name in ("directory", "folder"):
            name = "dir"
        if name not in TARGETS:
            raise UsageError(f"cannot convert to {to_format!r} (targets: {', '.join(TARGETS)})")
        return name
    d = os.fspath(dest)
    if d.endswith(("/", os.sep)) or os.path.isdir(d):
        return "dir"
    spec = for_path(d)
    if spec is not None and spec.name in TARGETS:
        return spec.name
    base = os.path.basename(d)
    if "." not in base.lstrip("."):
        return "dir"
    raise UsageError(f"cannot tell the target format of {d} from its name (.lbox, .uri, or "
                     "a directory): use --to-format lbox|uri|dir")


# ----------------------------------------------------------------------- directory source


class TreeReader:
    """A local directory as a source of entries: its contents (not the directory
    itself) depth first, each directory right before its contents, siblings sorted by
    the bytes of their names; symlinks never followed. Fifos, sockets and devices are
    left out and listed in :attr:`skipped`. ``exclude``: (st_dev, st_ino) pairs to leave
    out silently (the archive being written)."""

    def __init__(self, root: str | os.PathLike[str],
                 exclude: Iterable[tuple[int, int]] = ()) -> None:
        self.root = os.fsencode(os.fspath(root))
        if not os.path.isdir(self.root):
            raise UsageError(f"{os.fsdecode(self.root)} is not a directory")
        self.exclude = set(exclude)
        self.skipped: list[SkippedEntry] = []
        self._stats: dict[str, tuple[int, int, int]] = {}  # path -> (dev, ino, size) of files

    def _list(self, d: bytes) -> list[bytes]:
        try:
            with os.scandir(d) as it:
                return sorted(e.name for e in it)
        except OSError as e:
            raise StorageError(f"cannot list {os.fsdecode(d)}: {e.strerror}") from None

    def entries(self) -> Iterator[EntryInfo]:
        stack: list[tuple[bytes, str, Iterator[bytes]]] = [
            (self.root, "", iter(self._list(self.root)))]
        while stack:
            disk_dir, arch_dir, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            disk = os.path.join(disk_dir, name)
            arch = f"{arch_dir}/{os.fsdecode(name)}" if arch_dir else os.fsdecode(name)
            try:
                st = os.lstat(disk)
            except FileNotFoundError:
                continue  # removed since the listing
            except OSError as e:
                raise StorageError(f"cannot stat {os.fsdecode(disk)}: {e.strerror}") from None
            if (st.st_dev, st.st_ino) in self.exclude:
                continue
            kind = special_file_kind(st.st_mode)
            if kind is not None:
                self.skipped.append(SkippedEntry(arch, f"{kind}: archives store only files, "
                                                       "directories and symlinks"))
                continue
            owner, group = user_name(st.st_uid), group_name(st.st_gid)
            mode = st.st_mode & 0o7777
            if stat_mod.S_ISDIR(st.st_mode):
                yield EntryInfo(arch, "dir", mode, st.st_mtime_ns, owner=owner, group=group)
                stack.append((disk, arch, iter(self._list(disk))))
            elif stat_mod.S_ISLNK(st.st_mode):
                try:
                    target = os.fsdecode(os.readlink(disk))
                except OSError as e:
                    raise StorageError(f"cannot read the link {os.fsdecode(disk)}: "
                                       f"{e.strerror}") from None
                yield EntryInfo(arch, "symlink", mode, st.st_mtime_ns, target=target,
                                owner=owner, group=group)
            else:
                self._stats[arch] = (st.st_dev, st.st_ino, st.st_size)
                yield EntryInfo(arch, "file", mode, st.st_mtime_ns, st.st_size, st.st_size,
                                owner=owner, group=group)

    def content(self, path: str) -> Iterator[bytes]:
        """A file's bytes in pieces of COPY_SIZE; StorageError if it changed (another
        file, or another size) since it was listed."""
        dev, ino, size = self._stats.pop(path)
        disk = os.path.join(self.root, os.fsencode(path))
        shown = os.fsdecode(disk)
        try:
            fd = os.open(disk, O_READ_HOST_FILE)
        except OSError as e:
            raise StorageError(f"cannot open {shown}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (dev, ino):
                raise StorageError(f"{shown} changed while being converted (it is no longer "
                                   "the same regular file)")
            left = size
            while left:
                piece = os.read(fd, min(COPY_SIZE, left))
                if not piece:
                    break
                left -= len(piece)
                yield piece
            if left or os.read(fd, 1):
                raise StorageError(f"{shown} changed size while being converted (it had "
                                   f"{size} bytes when listed)")
        except OSError as e:
            raise StorageError(f"cannot read {shown}: {e.strerror}") from None
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------ the pairs


class _Pairs:
    """``(EntryInfo, content)`` pairs for an archive target: every entry in source order,
    files with their content read lazily, symlinks held back to the end. From an
    archive, unsafe paths and symlinks that lead outside the root (judged with all the
    archive's directories and links known) are left out and recorded."""

    def __init__(self, entries: Iterable[EntryInfo], content: Callable[[str], Content],
                 judge: bool) -> None:
        self._entries = entries
        self._content = content
        self._judge = judge
        self.unsafe: list[SkippedEntry] = []

    def __iter__(self) -> Iterator[tuple[EntryInfo, Content]]:
        dirs: set[str] = set()
        links: list[EntryInfo] = []
        for e in self._entries:
            if self._judge:
                why = path_problem(e.path)
                if why is not None:
                    self.unsafe.append(SkippedEntry(e.path, why))
                    continue
            if e.type == "symlink":
                links.append(e)
                continue
            if e.type == "dir":
                dirs.add(e.path)
            yield e, (self._content(e.path) if e.type == "file" else None)
        for link in self._safe_links(links, dirs) if self._judge else links:
            yield link, None

    def _safe_links(self, links: list[EntryInfo], dirs: set[str]) -> list[EntryInfo]:
        """The links that stay inside the root with all the kept links in place (links
        removed until none leads outside, like the extractor's final check)."""
        kept = {e.path: e for e in links}

        def lookup(parent: Sequence[str], name: str) -> tuple[str, str]:
            p = "/".join([*parent, name])
            link = kept.get(p)
            if link is not None:
                return "link", link.target
            return ("dir" if p in dirs else "missing"), ""

        changed = True
        while changed:
            changed = False
            for e in list(kept.values()):
                why = link_escape(e.path.split("/")[:-1], e.target, lookup,
                                  root="the archive's root")
                if why is not None:
                    del kept[e.path]
                    self.unsafe.append(SkippedEntry(e.path, why))
                    changed = True
        return [e for e in links if e.path in kept]


class _PieceReader:
    """A ``read(n)`` stream over an iterable of byte pieces (``Writer.add_stream``)."""

    def __init__(self, pieces: Iterable[bytes | bytearray | memoryview]) -> None:
        self._it = iter(pieces)
        self._cur = memoryview(b"")

    def read(self, n: int) -> bytes:
        if not self._cur:
            nxt = next(self._it, None)
            if nxt is None:
                return b""
            self._cur = memoryview(nxt).cast("B")
        if len(self._cur) >= n:  # the common case: one copy of n bytes, no growing buffer
            out = bytes(self._cur[:n])
            self._cur = self._cur[n:]
            return out
        buf = bytearray()
        while len(buf) < n:
            if not self._cur:
                nxt = next(self._it, None)
                if nxt is None:
                    break
                self._cur = memoryview(nxt).cast("B")
            take = self._cur[: n - len(buf)]
            buf += take
            self._cur = self._cur[len(take):]
        return bytes(buf)


# ------------------------------------------------------------------------------ targets


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _temp_name(dest: str, suffix: str) -> str:
    directory = os.path.dirname(os.path.abspath(dest))
    return os.path.join(directory, f".{os.path.basename(dest)}.{secrets.token_hex(6)}{suffix}")


def _check_dest_file(dest: str, overwrite: bool) -> tuple[int, int] | None:
    """(dev, ino) of an existing destination file (to replace), None if there is none."""
    if os.path.isdir(dest):
        raise UsageError(f"{dest} is a directory (an archive target must be a file)")
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return None
    if not overwrite:
        raise UsageError(f"{dest} exists (replace it with --force)")
    return st.st_dev, st.st_ino


def _write_lbox(pairs: Iterable[tuple[EntryInfo, Content]], dest: str, new: NewLbox,
                overwrite: bool, progress: Progress | None, report: ConvertReport,
                tree: TreeReader | None) -> None:
    from .formats.lbox.archive import Lockbox
    from .formats.lbox.keys import DEFAULT_ARGON2
    from .formats.lbox.wire.constants import DEFAULT_CHUNK_SIZE
    from .formats.lbox.write.newarchive import create_archive

    replaced = _check_dest_file(dest, overwrite)
    tmp = _temp_name(dest, ".lbx-convert")
    key = create_archive(tmp, password=new.password, recipients=new.recipients,
                         argon2=new.argon2 or DEFAULT_ARGON2,
                         chunk_size=new.chunk_size or DEFAULT_CHUNK_SIZE)
    now = time.time_ns()
    owners = no_time = 0
    try:
        if tree is not None:
            st = os.stat(tmp)
            tree.exclude.add((st.st_dev, st.st_ino))
            if replaced is not None:
                tree.exclude.add(replaced)
        with Lockbox.open(tmp, known_key=key) as box, box.writer() as w:
            for info, content in pairs:
                mtime = info.mtime_ns or now
                try:
                    if not _utf8(info.path):
                        raise InvalidPathError("its name is not UTF-8 (the .lbox format "
                                               "stores UTF-8 names only)")
                    if info.type == "dir":
                        w.mkdir(info.path, info.mode, mtime)
                        report.dirs += 1
                    elif info.type == "symlink":
                        if not _utf8(info.target):
                            raise InvalidPathError("its target is not UTF-8 (the .lbox "
                                                   "format stores UTF-8 targets only)")
                        w.symlink(info.path, info.target, info.mode, mtime)
                        report.symlinks += 1
                    elif info.type == "file":
                        w.add_stream(info.path, _PieceReader(content or ()),  # type: ignore[arg-type]
                                     mode=info.mode, mtime_ns=mtime, progress=progress)
                        report.files += 1
                        report.file_bytes += info.size
                    else:
                        report.skipped.append(SkippedEntry(
                            info.path, f"a {info.type}: the .lbox format stores only files, "
                                       "directories and symlinks"))
                        continue
                except InvalidPathError as e:
                    report.skipped.append(SkippedEntry(
                        info.path, f"cannot be stored in a .lbox archive: {e}"))
                    continue
                owners += bool(info.owner or info.group)
                no_time += not info.mtime_ns
        if not overwrite and os.path.lexists(dest):
            raise UsageError(f"{dest} exists (replace it with --force)")
        replace_atomically(tmp, dest, what=f"cannot write {dest}")  # fsync, rename, dir
    except OSError as e:
        raise StorageError(f"cannot write {dest}: {e.strerror or e}") from None
    finally:
        if os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    if no_time:
        report.notes.append(f"{no_time} entries have no modification time in the source: "
                            "they got the time of the conversion")
    if owners:
        report.notes.append(f"owner/group names of {owners} entries not kept (the .lbox "
                            "format has none)")


def _write_uri(source: Iterable[tuple[EntryInfo, Content]] | str, dest: str, overwrite: bool,
               progress: Progress | None, report: ConvertReport) -> None:
    from .formats.uri import write_uri

    _check_dest_file(dest, overwrite)
    written = write_uri(dest, source, overwrite=overwrite, progress=progress)
    report.files, report.dirs, report.symlinks = written.files, written.dirs, written.symlinks
    report.file_bytes = written.file_bytes
    report.skipped.extend(written.skipped)
    report.notes.extend(written.notes)


def _write_dir(entries: Iterable[EntryInfo], open_content: Callable[[str], Any], dest: str,
               report: ConvertReport, *, overwrite: bool, progress: Progress | None,
               preserve_permissions: bool, same_owner: bool, max_size: int | None,
               read_order: ReadOrder | None = None) -> None:
    out = Extractor(dest, overwrite=overwrite, preserve_permissions=preserve_permissions,
                    max_size=max_size, same_owner=same_owner)
    done = out.run(list(entries), open_content, progress, read_order=read_order)
    report.files, report.dirs, report.symlinks = done.files, done.dirs, done.symlinks
    report.file_bytes = done.file_bytes
    report.unsafe += len(done.skipped)
    report.skipped.extend(done.skipped)
    report.notes.extend(done.notes)


# ------------------------------------------------------------------------------ convert


def convert(source: Archive | str | os.PathLike[str], dest: str | os.PathLike[str], *,
            to_format: str | None = None, new_lbox: NewLbox | None = None,
            overwrite: bool = False, progress: Progress | None = None,
            preserve_permissions: bool = False, same_owner: bool = False,
            max_size: int | None = None, password: str | bytes | None = None,
            identity: Any = None) -> ConvertReport:
    """Convert ``source`` -- an opened :class:`~lockbox.facade.Archive`, a local
    directory, or a path or URL of an archive (opened with ``password`` / ``identity``
    when its format needs them) -- into ``dest`` (see the module doc).

    ``new_lbox``: how to protect a ``.lbox`` target (a password and/or recipients;
    required for that target). ``overwrite``: replace an existing destination file, or
    existing files in a destination directory. ``preserve_permissions``, ``same_owner``
    and ``max_size`` apply to a directory target, as for ``extract``. ``progress(path,
    nbytes)`` is called as file data is written. Returns a :class:`ConvertReport`;
    nothing left out goes unreported."""
    dest_s = os.fsdecode(os.fspath(dest))
    target = target_format(dest_s, to_format)
    if target == "lbox" and new_lbox is None:
        raise UsageError("a .lbox target needs a password or recipients (new_lbox=)")
    opened: Archive | None = None
    tree: TreeReader | None = None
    if isinstance(source, Archive):
        archive: Archive | None = source
        src_name = source.location or "archive"
    else:
        src_name = os.fsdecode(os.fspath(source))
        if os.path.isdir(src_name):
            archive = None
            tree = TreeReader(src_name)
        else:
            archive = opened = Archive.open(src_name, password=password, identity=identity)
    report = ConvertReport(source=src_name, dest=os.path.abspath(dest_s), target_format=target)
    try:
        if archive is not None:
            report.source_format = archive.spec.name if archive.spec is not None else "?"
            pairs = _Pairs(archive.iter_entries(), archive.open_content, judge=True)
            if target == "dir":
                _write_dir(archive.iter_entries(), archive.open_content, dest_s, report,
                           overwrite=overwrite, progress=progress,
                           preserve_permissions=preserve_permissions, same_owner=same_owner,
                           max_size=max_size, read_order=archive.read_order)
            elif target == "uri":
                _write_uri(pairs, dest_s, overwrite, progress, report)
            else:
                assert new_lbox is not None
                _write_lbox(pairs, dest_s, new_lbox, overwrite, progress, report, None)
            report.unsafe += len(pairs.unsafe)
            report.skipped.extend(pairs.unsafe)
        else:
            assert tree is not None
            report.source_format = "dir"
            if target == "dir":
                real_src = os.path.realpath(src_name)
                real_dest = os.path.realpath(dest_s)
                if os.path.commonpath([real_src, real_dest]) in (real_src, real_dest):
                    raise UsageError("the destination directory and the source directory "
                                     "may not contain each other")
                _write_dir(tree.entries(), tree.content, dest_s, report,
                           overwrite=overwrite, progress=progress,
                           preserve_permissions=preserve_permissions, same_owner=same_owner,
                           max_size=max_size)
            elif target == "uri":
                _write_uri(src_name, dest_s, overwrite, progress, report)
            else:
                assert new_lbox is not None
                pairs = _Pairs(tree.entries(), tree.content, judge=False)
                _write_lbox(pairs, dest_s, new_lbox, overwrite, progress, report, tree)
            report.skipped.extend(tree.skipped)
    finally:
        if opened is not None:
            opened.close()
    report.skipped.sort(key=lambda s: s.path.split("/"))
    return report
