"""Safe extraction to a local directory.

Every archive path is re-checked (no absolute paths, no '..'); nothing is
ever written through a symlink (parents are opened component by component
and must be real directories inside the destination); files are written to a
temporary name and renamed only after their SHA-256 verified; modes and
mtimes are restored (directories last, deepest first).
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Iterable

from .errors import StorageError, UnsafePathError
from .format.entry import Entry, normalize_path

__all__ = ["Extractor"]


def _check_member(path: str) -> list[str]:
    if path.startswith("/") or (os.sep != "/" and os.sep in path):
        raise UnsafePathError(f"refusing unsafe path in archive: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or normalize_path(path) != path:
        raise UnsafePathError(f"refusing unsafe path in archive: {path!r}")
    return parts


class Extractor:
    """Writes entries under ``dest``; ``write_file`` gets an iterator of data pieces
    that raises IntegrityError before the last piece if the content is bad."""

    def __init__(self, dest: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.dest = os.path.realpath(os.fspath(dest))
        self.overwrite = overwrite
        try:
            os.makedirs(self.dest, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the destination {self.dest}: "
                               f"{e.strerror or e}") from e
        self._dir_times: list[tuple[str, int, int]] = []

    def _parent_dir(self, parts: list[str]) -> str:
        """Create (or check) the parent directories; refuse symlinked components."""
        cur = self.dest
        for name in parts[:-1]:
            cur = os.path.join(cur, name)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                try:
                    os.mkdir(cur, 0o700)
                except OSError as e:
                    raise StorageError(f"cannot create {cur}: {e.strerror}") from e
                continue
            except OSError as e:
                raise StorageError(f"cannot use {cur}: {e.strerror}") from e
            if stat_mod.S_ISLNK(st.st_mode) or not stat_mod.S_ISDIR(st.st_mode):
                raise UnsafePathError(f"refusing to extract through a non-directory: {cur}")
        return cur

    def _target(self, path: str) -> str:
        parts = _check_member(path)
        parent = self._parent_dir(parts)
        target = os.path.join(parent, parts[-1])
        if not (target + "/").startswith(self.dest + "/"):
            raise UnsafePathError(f"refusing to write outside the destination: {path}")
        return target

    def _clear(self, target: str, want_dir: bool) -> bool:
        """Make room for the new member; returns False if an existing dir is reused."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return True
        except OSError as e:
            raise StorageError(f"cannot use {target}: {e.strerror}") from e
        if want_dir and stat_mod.S_ISDIR(st.st_mode):
            return False
        if not self.overwrite:
            raise StorageError(f"refusing to overwrite existing {target} (use overwrite)")
        if stat_mod.S_ISDIR(st.st_mode):
            raise StorageError(f"refusing to replace directory {target}")
        try:
            os.unlink(target)
        except OSError as e:
            raise StorageError(f"cannot replace {target}: {e.strerror}") from e
        return True

    def directory(self, path: str, entry: Entry) -> None:
        target = self._target(path)
        try:
            if self._clear(target, True):
                os.mkdir(target, 0o700)
        except OSError as e:
            raise StorageError(f"cannot create {target}: {e.strerror}") from e
        self._dir_times.append((target, entry.mode, entry.mtime_ns))

    def symlink(self, path: str, entry: Entry) -> None:
        target = self._target(path)
        link = entry.target
        if not link or "\x00" in link:
            raise UnsafePathError(f"refusing a malformed symlink target for {path}")
        # A symlink may not point outside the destination (absolute or via '..').
        resolved = os.path.normpath(os.path.join(os.path.dirname(target), link))
        if os.path.isabs(link) or not (resolved + "/").startswith(self.dest + "/"):
            raise UnsafePathError(f"refusing symlink that escapes the destination: "
                                  f"{path} -> {link}")
        try:
            self._clear(target, False)
            os.symlink(link, target)
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        except NotImplementedError:
            pass
        except OSError as e:
            raise StorageError(f"cannot create symlink {target}: {e.strerror}") from e

    def write_file(self, path: str, entry: Entry, pieces: Iterable[memoryview],
                   progress: Callable[[str, int], None] | None = None) -> None:
        target = self._target(path)
        self._clear(target, False)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.lbx-part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise StorageError(f"cannot create {tmp}: {e.strerror}") from e
        ok = False
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                for piece in pieces:
                    f.write(piece)
                    if progress is not None:
                        progress(path, len(piece))
            os.chmod(tmp, entry.mode & 0o7777)
            os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
            os.replace(tmp, target)
            ok = True
        except OSError as e:
            raise StorageError(f"cannot write {target}: {e.strerror}") from e
        finally:
            if not ok:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def finish(self) -> None:
        for target, mode, mtime in sorted(self._dir_times, key=lambda t: -t[0].count("/")):
            try:
                os.chmod(target, mode & 0o7777)
                os.utime(target, ns=(mtime, mtime))
            except OSError as e:
                raise StorageError(f"cannot set attributes of {target}: {e.strerror}") from e


