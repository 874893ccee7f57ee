"""Writing ``.uri`` archives (CPython, local files): :func:`write_uri`.

Two inputs, one output rule set (docs/formats/URI.md §8):

* **a directory** (``lockbox convert DIR out.uri``): its contents, in a deterministic
  order -- depth first, each directory right before its contents, siblings sorted by the
  bytes of their names -- so the same tree always gives the same bytes. The directory
  itself has no chunk (the archive's root), unless ``prefix`` names a top directory to
  put everything under. Symlinks are stored as ``SLNK`` (never followed); fifos, sockets
  and devices cannot be stored and are skipped and reported (``strict=True``: refused).
* **a stream of** ``(EntryInfo, content)`` **pairs** (``lockbox convert x.lbox y.uri``,
  from any reader; :func:`session_entries` makes one from a format session): written in
  the order given. ``content`` is an iterable of bytes-like pieces for a file (its total
  must equal ``info.size``; it is consumed before the next pair is asked for) and is
  ignored otherwise. A missing parent directory is added (mode 0755, reported).

Whatever the format cannot carry is reported in :attr:`WriteReport.notes`, never
dropped silently: modification times (the format has none), owner/group names it cannot
hold (stored empty), entries of other types (skipped, :attr:`WriteReport.skipped`).

A file is streamed in 1 MiB pieces with its CRC computed on the fly: its length comes
from ``fstat`` of the open file and is checked again after the copy (StorageError if the
file changed meanwhile). The archive is written to a temporary file next to the
destination, fsynced, and renamed over it: there is never a half-written archive at
``dest``.
"""

from __future__ import annotations

import os
import secrets
import stat as stat_mod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ...drivers import Read, run_sync
from ...errors import FormatError, InvalidPathError, StorageError, UsageError
from ...extract import SkippedEntry
from ...fileio import (
    O_READ_HOST_FILE,
    group_name,
    replace_atomically,
    special_file_kind,
    user_name,
)
from ...info import EntryInfo
from ...sources.base import RangeSource
from .codec import (
    CRC_SIZE,
    MAX_PATH_SIZE,
    MAX_TARGET_SIZE,
    MODE_MASK,
    NAME_FIELD_SIZE,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    data_crc,
    encode_chunk,
    encode_chunk_header,
    encode_file_header,
    path_problem,
)

__all__ = ["write_uri", "WriteReport", "session_entries", "Content", "COPY_SIZE"]

COPY_SIZE = 1024 * 1024
DEFAULT_DIR_MODE = 0o755
Content = Iterable[bytes | bytearray | memoryview] | None
Progress = Callable[[str, int], None]
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass
class WriteReport:
    """What :func:`write_uri` wrote. ``skipped``: entries left out (``path: reason``);
    ``notes``: one line per kind of information the archive does not carry, or added."""

    dest: str = ""
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    file_bytes: int = 0
    archive_size: int = 0
    skipped: list[SkippedEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return self.files + self.dirs + self.symlinks


class _Tally:
    """Counts of lost or added information, turned into :attr:`WriteReport.notes`."""

    def __init__(self) -> None:
        self.mtimes = 0
        self.names = 0
        self.parents: list[str] = []

    def notes(self) -> list[str]:
        out = []
        if self.mtimes:
            out.append(f"modification times of {self.mtimes} entries not kept (the .uri "
                       "format has none)")
        if self.names:
            out.append(f"owner/group names of {self.names} entries stored empty (unknown, "
                       f"longer than {NAME_FIELD_SIZE} bytes, or containing NUL)")
        if self.parents:
            shown = ", ".join(repr(p) for p in self.parents[:3])
            more = f" and {len(self.parents) - 3} more" if len(self.parents) > 3 else ""
            out.append(f"added {len(self.parents)} missing parent directories (mode 0755): "
                       f"{shown}{more}")
        return out


def _name_field(name: bytes, tally: _Tally) -> bytes:
    if len(name) > NAME_FIELD_SIZE or b"\x00" in name:
        tally.names += 1
        return b""
    return name


class _Out:
    """The archive being written: chunk by chunk into a buffered temporary file."""

    def __init__(self, f: BinaryIO, report: WriteReport, progress: Progress | None) -> None:
        self.f = f
        self.report = report
        self.progress = progress
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(data)
        self.size += len(data)

    def small(self, type_: bytes, path: bytes, mode: int, owner: bytes, group: bytes,
              data: bytes = b"") -> None:
        self.write(encode_chunk(type_, path, mode & MODE_MASK, owner, group, data))
        if type_ == TYPE_DIR:
            self.report.dirs += 1
        else:
            self.report.symlinks += 1

    def file(self, path: bytes, mode: int, owner: bytes, group: bytes, size: int,
             pieces: Iterable[bytes | bytearray | memoryview], shown: str) -> int:
        """Header, path, the pieces (CRC on the fly), CRC; returns the bytes the pieces
        held (the caller compares it with ``size``; it was written only if equal)."""
        self.write(encode_chunk_header(TYPE_FILE, len(path), mode & MODE_MASK, owner, group,
                                       size))
        self.write(path)
        crc = data_crc(path)
        done = 0
        for piece in pieces:
            if done + len(piece) > size:
                return done + len(piece)
            crc = data_crc(b"", piece, crc)
            self.write(piece)
            done += len(piece)
            if self.progress is not None:
                self.progress(shown, len(piece))
        if done == size:
            self.write(crc.to_bytes(CRC_SIZE, "little"))
            self.report.files += 1
            self.report.file_bytes += size
        return done


# ----------------------------------------------------------------------- from a directory


def _sorted_names(dir_path: bytes) -> list[bytes]:
    try:
        with os.scandir(dir_path) as it:
            return sorted(e.name for e in it)
    except OSError as e:
        raise StorageError(f"cannot list {os.fsdecode(dir_path)}: {e.strerror}") from None


def _write_tree(out: _Out, root: bytes, prefix: bytes, exclude: set[tuple[int, int]],
                replaced: tuple[int, int] | None, strict: bool, tally: _Tally) -> None:
    report = out.report
    # depth first with an explicit stack: (directory on disk, its archive path, names left)
    stack: list[tuple[bytes, bytes, Iterator[bytes]]] = [
        (root, prefix, iter(_sorted_names(root)))]
    while stack:
        disk_dir, arch_dir, pending = stack[-1]
        name = next(pending, None)
        if name is None:
            stack.pop()
            continue
        disk = os.path.join(disk_dir, name)
        arch = arch_dir + b"/" + name if arch_dir else name
        shown = os.fsdecode(arch)
        try:
            st = os.lstat(disk)
        except FileNotFoundError:
            continue  # removed since the listing: nothing to archive
        except OSError as e:
            raise StorageError(f"cannot stat {os.fsdecode(disk)}: {e.strerror}") from None
        if (st.st_dev, st.st_ino) in exclude:
            continue
        if (st.st_dev, st.st_ino) == replaced:
            report.skipped.append(SkippedEntry(shown, "the archive being replaced"))
            continue
        why = _refusal(arch, st.st_mode)
        if why is not None:
            if strict:
                raise UsageError(f"{shown}: {why}")
            report.skipped.append(SkippedEntry(shown, why))
            continue
        tally.mtimes += 1
        owner = _name_field(os.fsencode(user_name(st.st_uid)), tally)
        group = _name_field(os.fsencode(group_name(st.st_gid)), tally)
        if stat_mod.S_ISDIR(st.st_mode):
            out.small(TYPE_DIR, arch, st.st_mode, owner, group)
            stack.append((disk, arch, iter(_sorted_names(disk))))
        elif stat_mod.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(disk)
            except OSError as e:
                raise StorageError(f"cannot read the link {os.fsdecode(disk)}: "
                                   f"{e.strerror}") from None
            why = _target_refusal(target)
            if why is not None:
                if strict:
                    raise UsageError(f"{shown}: {why}")
                report.skipped.append(SkippedEntry(shown, why))
                continue
            out.small(TYPE_SYMLINK, arch, st.st_mode, owner, group, target)
        else:
            _copy_file(out, disk, arch, st, owner, group, shown)


def _refusal(arch: bytes, st_mode: int) -> str | None:
    """Why an entry cannot be stored, or None."""
    kind = special_file_kind(st_mode)
    if kind is not None:
        return f"{kind}: the .uri format stores only files, directories and symlinks"
    if len(arch) > MAX_PATH_SIZE:
        return f"path longer than {MAX_PATH_SIZE} bytes (the .uri limit)"
    return None


def _target_refusal(target: bytes) -> str | None:
    if not target or b"\x00" in target:
        return "symlink target is empty or contains NUL"
    if len(target) > MAX_TARGET_SIZE:
        return f"symlink target longer than {MAX_TARGET_SIZE} bytes (the .uri limit)"
    return None


def _copy_file(out: _Out, disk: bytes, arch: bytes, lst: os.stat_result, owner: bytes,
               group: bytes, shown: str) -> None:
    try:
        fd = os.open(disk, O_READ_HOST_FILE)
    except OSError as e:
        raise StorageError(f"cannot open {os.fsdecode(disk)}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (lst.st_dev,
                                                                          lst.st_ino):
            raise StorageError(f"{os.fsdecode(disk)} changed while being archived "
                               "(it is no longer the same regular file)")
        size = st.st_size
        done = out.file(arch, st.st_mode, owner, group, size, _read_pieces(fd, size), shown)
        if done != size or os.read(fd, 1) or os.fstat(fd).st_size != size:
            raise StorageError(f"{os.fsdecode(disk)} changed size while being archived "
                               f"(it had {size} bytes when opened)")
    except OSError as e:
        raise StorageError(f"cannot read {os.fsdecode(disk)}: {e.strerror}") from None
    finally:
        os.close(fd)


def _read_pieces(fd: int, size: int) -> Iterator[bytes]:
    """The file's first ``size`` bytes in pieces of COPY_SIZE (fewer if it shrank)."""
    left = size
    while left:
        piece = os.read(fd, min(COPY_SIZE, left))
        if not piece:
            return
        left -= len(piece)
        yield piece


# --------------------------------------------------------------------------- from entries


def _arch_path(path: str) -> bytes:
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidPathError(f"cannot store path {path!r}: not representable as "
                               "bytes") from None
    problem = path_problem(raw)
    if problem is not None:
        raise InvalidPathError(f"cannot store path {path!r}: it {problem[1]}")
    return raw


def _write_entries(out: _Out, items: Iterable[tuple[EntryInfo, Content]], prefix: bytes,
                   strict: bool, tally: _Tally) -> None:
    report = out.report
    seen: set[bytes] = set()
    dirs: set[bytes] = {prefix} if prefix else set()

    def ensure_parent(arch: bytes) -> None:
        missing: list[bytes] = []
        parent = arch.rpartition(b"/")[0]
        while parent and parent not in dirs:
            if parent in seen:
                raise InvalidPathError(f"cannot store {os.fsdecode(arch)!r}: "
                                       f"{os.fsdecode(parent)!r} is not a directory")
            missing.append(parent)
            parent = parent.rpartition(b"/")[0]
        for p in reversed(missing):
            out.small(TYPE_DIR, p, DEFAULT_DIR_MODE, b"", b"")
            seen.add(p)
            dirs.add(p)
            tally.parents.append(os.fsdecode(p))

    for info, content in items:
        if info.path.strip("/") == "" and info.type == "dir":
            continue  # the root: implicit in a .uri archive
        rel = _arch_path(info.path)
        arch = prefix + b"/" + rel if prefix else rel
        shown = info.path
        if arch in seen:
            raise InvalidPathError(f"cannot store {shown!r} twice (duplicate path)")
        why: str | None
        if len(arch) > MAX_PATH_SIZE:
            why = f"path longer than {MAX_PATH_SIZE} bytes (the .uri limit)"
        elif info.type not in ("file", "dir", "symlink"):
            why = f"a {info.type}: the .uri format stores only files, directories and symlinks"
        elif info.type == "symlink":
            why = _target_refusal(info.target.encode("utf-8", "surrogateescape"))
        else:
            why = None
        if why is not None:
            if strict:
                raise UsageError(f"{shown}: {why}")
            report.skipped.append(SkippedEntry(shown, why))
            continue
        ensure_parent(arch)
        if info.mtime_ns:
            tally.mtimes += 1
        owner = _name_field(info.owner.encode("utf-8", "surrogateescape"), tally)
        group = _name_field(info.group.encode("utf-8", "surrogateescape"), tally)
        seen.add(arch)
        if info.type == "dir":
            out.small(TYPE_DIR, arch, info.mode, owner, group)
            dirs.add(arch)
        elif info.type == "symlink":
            out.small(TYPE_SYMLINK, arch, info.mode, owner, group,
                      info.target.encode("utf-8", "surrogateescape"))
        else:
            done = out.file(arch, info.mode, owner, group, info.size,
                            content if content is not None else (), shown)
            if done != info.size:
                raise FormatError(f"{shown}: its entry says {info.size} bytes but its "
                                  f"content {'has more' if done > info.size else f'had {done}'}")


def session_entries(session: Any, source: RangeSource, path: str = ""
                    ) -> Iterator[tuple[EntryInfo, Content]]:
    """``(EntryInfo, content)`` pairs of every entry of a format session under ``path``,
    for :func:`write_uri` (``convert``). The walk and the reads share ``source`` and run
    interleaved: entries arrive batch by batch and a file's content is read lazily, in
    pieces of at most 4 MiB (``stream_flow`` when the session has one: one checked pass;
    else ``read_flow`` windows, each checked by the session)."""
    from .reader import iter_file

    batches: list[list[EntryInfo]] = []
    flow = session.walk_flow(path, batches.append)

    def content(info: EntryInfo) -> Iterator[bytes]:
        if hasattr(session, "stream_flow"):
            yield from iter_file(session, source, info.path)
            return
        offset = 0
        while offset < info.size:
            piece = run_sync(session.read_flow(info.path, offset, 4 * COPY_SIZE), source)
            if not piece:
                raise FormatError(f"{info.path}: content ended at {offset} of {info.size} "
                                  "bytes")
            offset += len(piece)
            yield piece

    def drain() -> Iterator[tuple[EntryInfo, Content]]:
        while batches:
            for info in batches.pop(0):
                yield info, (content(info) if info.type == "file" else None)

    request: Read | None
    try:
        request = next(flow)
    except StopIteration:
        request = None
    while request is not None:
        yield from drain()
        blobs = source.read(request.ranges)
        try:
            request = flow.send(blobs)
        except StopIteration:
            request = None
    yield from drain()


# ---------------------------------------------------------------------------- write_uri


def write_uri(dest: str | bytes | os.PathLike[str],
              source: str | bytes | os.PathLike[str] | Iterable[tuple[EntryInfo, Content]],
              *,
              prefix: str | None = None, overwrite: bool = False, strict: bool = False,
              progress: Progress | None = None) -> WriteReport:
    """Write a ``.uri`` archive at ``dest`` from a directory or from ``(EntryInfo,
    content)`` pairs (see the module doc), atomically (temp file, fsync, rename).

    ``prefix``: put everything under this top directory (its chunks come first; with a
    directory source they carry the directory's own mode and owner). ``overwrite``:
    replace an existing ``dest`` (else UsageError). ``strict``: refuse (UsageError) what
    the format cannot store instead of skipping and reporting it. ``progress(path,
    nbytes)`` is called as file data is written.
    """
    dest_s = os.fsdecode(os.fspath(dest))
    if os.path.isdir(dest_s):
        raise UsageError(f"{dest_s} is a directory")
    replaced: tuple[int, int] | None = None
    try:
        st = os.stat(dest_s)
        if not overwrite:
            raise UsageError(f"{dest_s} exists (overwrite it with --force)")
        replaced = (st.st_dev, st.st_ino)
    except FileNotFoundError:
        pass
    tree = isinstance(source, (str, bytes, os.PathLike))
    if tree:
        root = os.fsencode(os.fspath(source))  # type: ignore[arg-type]
        if not os.path.isdir(root):
            raise UsageError(f"{os.fsdecode(root)} is not a directory")
    prefix_b = _arch_path(prefix.strip("/")) if prefix is not None and prefix.strip("/") else b""
    report = WriteReport(dest=os.path.abspath(dest_s))
    tally = _Tally()
    directory = os.path.dirname(os.path.abspath(dest_s))
    base = os.path.basename(dest_s)
    tmp = ""
    fd = -1
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise StorageError(f"cannot create {tmp}: {e.strerror}") from None
    else:  # pragma: no cover - 100 random names taken
        raise StorageError(f"cannot create a temporary file in {directory}")
    try:
        tmp_st = os.fstat(fd)
        with open(fd, "wb", buffering=COPY_SIZE, closefd=False) as f:
            out = _Out(f, report, progress)
            out.write(encode_file_header())
            if prefix_b:
                _write_prefix(out, prefix_b, root if tree else None, tally)
            if tree:
                _write_tree(out, root, prefix_b, {(tmp_st.st_dev, tmp_st.st_ino)}, replaced,
                            strict, tally)
            else:
                _write_entries(out, source, prefix_b, strict, tally)  # type: ignore[arg-type]
            f.flush()
        os.close(fd)
        fd = -1
        if not overwrite and os.path.lexists(dest_s):
            raise UsageError(f"{dest_s} exists (overwrite it with --force)")
        replace_atomically(tmp, dest_s, what=f"cannot write {dest_s}")  # fsync, rename, dir
        tmp = ""
    except OSError as e:
        raise StorageError(f"cannot write {dest_s}: {e.strerror or e}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    report.archive_size = out.size
    report.notes = tally.notes()
    report.skipped.sort(key=lambda s: s.path)
    return report


def _write_prefix(out: _Out, prefix: bytes, root: bytes | None, tally: _Tally) -> None:
    mode, owner, group = DEFAULT_DIR_MODE, b"", b""
    if root is not None:
        st = os.stat(root)
        mode = st.st_mode
        owner = _name_field(os.fsencode(user_name(st.st_uid)), tally)
        group = _name_field(os.fsencode(group_name(st.st_gid)), tally)
    parts = prefix.split(b"/")
    for i in range(len(parts)):
        out.small(TYPE_DIR, b"/".join(parts[: i + 1]), mode, owner, group)
