"""The staged changes of one write session: TOC entries and env values to put or remove
at the next commit, checked against the committed tree as they are staged.

Lookups see the staged change first, then the committed tree (read through the
writer's own fd). Paths are normalised by the caller's public method or here; times
are given (the writer picks "now" for its callers), so nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ....drivers import Flow
from ....errors import InvalidPathError, NotFoundError, UsageError
from ..view import ArchiveView
from ..wire.constants import (
    MAX_ENV_NAME_SIZE,
    MAX_ENV_VALUE_SIZE,
    MAX_SYMLINK_SIZE,
    EntryType,
    FrameKind,
)
from ..wire.entry import (
    Entry,
    decode_entry,
    encode_entry,
    key_path,
    normalize_path,
    split_path,
    subtree_ranges,
    toc_key,
)

__all__ = ["Staging", "Runner", "env_key"]

T = TypeVar("T")


class Runner(Protocol):
    """Runs a read flow on the archive (``Writer.run``: through the writer's own fd)."""

    def __call__(self, flow: Flow[T], /) -> T: ...


class Staging:
    """TOC and env changes staged over the committed ``view``.

    ``toc_changes`` maps TOC keys to the new entry (None: removed); ``env_changes`` env
    names to the new value (None: removed). ``run`` runs a read flow on the archive.
    """

    def __init__(self, view: ArchiveView, run: Runner) -> None:
        self.view = view
        self._run = run
        self.toc_changes: dict[bytes, Entry | None] = {}
        self.env_changes: dict[bytes, bytes | None] = {}
        # Entries staged with their encoding already made (the small-file pipeline):
        # key -> (entry, encode_entry(entry)); used only while toc_changes[key] is that
        # very entry, so anything staged over it later is encoded as usual.
        self.encoded: dict[bytes, tuple[Entry, bytes]] = {}
        # Directories known to exist (staged or committed).
        self.known_dirs: set[str] = {""}
        # Directories created in this session that did not exist in the committed
        # tree: nothing below them can exist there, so no tree lookup is needed.
        self.new_dirs: set[str] = set()

    @property
    def dirty(self) -> bool:
        return bool(self.toc_changes or self.env_changes)

    def clear(self) -> None:
        self.toc_changes.clear()
        self.env_changes.clear()
        self.encoded.clear()

    # -- lookups (staged changes first, then the committed tree) -----------------

    def get_entry(self, path: str) -> Entry | None:
        """The entry at ``path`` (normalised) as of the staged changes."""
        if path == "":
            return Entry(EntryType.DIR, 0o755, 0)
        key = toc_key(path)
        if key in self.toc_changes:
            return self.toc_changes[key]
        view = self.view
        if split_path(path)[0] in self.new_dirs or view.commit.toc.empty:
            return None
        v = self._run(view.get_flow(FrameKind.TOC_NODE, view.commit.toc, key))
        return None if v is None else decode_entry(v)

    def exists(self, path: str) -> bool:
        return self.get_entry(normalize_path(path)) is not None

    def subtree(self, path: str) -> list[bytes]:
        """Keys of every (staged or committed) descendant of directory ``path``."""
        ranges = subtree_ranges(path)
        view = self.view
        pairs = self._run(view.scan_flow(FrameKind.TOC_NODE, view.commit.toc, ranges))
        keys = {k for k, _ in pairs}
        for k, v in self.toc_changes.items():
            if any(lo <= k < hi for lo, hi in ranges):
                if v is None:
                    keys.discard(k)
                else:
                    keys.add(k)
        return sorted(keys)

    def encoded_changes(self) -> dict[bytes, bytes | None]:
        """``toc_changes`` encoded (None: removed), reusing the encodings staged with
        their entries."""
        get = self.encoded.get
        return {k: None if e is None else
                m[1] if (m := get(k)) is not None and m[0] is e else encode_entry(e)
                for k, e in self.toc_changes.items()}

    # -- staging entries ---------------------------------------------------------

    def put(self, path: str, entry: Entry) -> None:
        self.toc_changes[toc_key(path)] = entry

    def ensure_parents(self, path: str, mtime_ns: int) -> None:
        """Stage the missing parent directories of ``path`` (mtime ``mtime_ns``)."""
        parent = split_path(path)[0]
        missing = []
        while parent not in self.known_dirs:
            e = self.get_entry(parent)
            if e is None:
                missing.append(parent)
            elif not e.is_dir:
                raise InvalidPathError(f"{parent} is not a directory in the archive")
            else:
                self.known_dirs.add(parent)
                break
            parent = split_path(parent)[0]
        for d in reversed(missing):
            self.put(d, Entry(EntryType.DIR, 0o755, mtime_ns))
            self.known_dirs.add(d)
            self.new_dirs.add(d)

    def check_replace(self, path: str, new_type: EntryType) -> Entry | None:
        """The entry an entry of ``new_type`` would replace at ``path`` (None: none);
        refuses to replace the root, a directory by a non-directory and the reverse."""
        if path == "":
            raise InvalidPathError("the archive root cannot be replaced")
        old = self.get_entry(path)
        if old is not None and old.is_dir and new_type != EntryType.DIR:
            raise InvalidPathError(f"{path} is a directory in the archive")
        if old is not None and not old.is_dir and new_type == EntryType.DIR:
            raise InvalidPathError(f"{path} exists and is not a directory")
        return old

    def prepare_file(self, path: str, mtime_ns: int) -> None:
        """Before staging a regular file at ``path`` (normalised) from the host: the
        checks of :meth:`check_replace` and the parents, skipped when the parent was
        created in this session and nothing is staged at ``path`` (it cannot exist)."""
        if path in self.new_dirs:
            raise InvalidPathError(f"{path} is a directory in the archive")
        if split_path(path)[0] not in self.new_dirs or toc_key(path) in self.toc_changes:
            self.check_replace(path, EntryType.FILE)
            self.ensure_parents(path, mtime_ns)

    def mkdir(self, path: str, mode: int, mtime_ns: int) -> None:
        path = normalize_path(path)
        old = self.check_replace(path, EntryType.DIR)
        self.ensure_parents(path, mtime_ns)
        self.put(path, Entry(EntryType.DIR, mode & 0o7777, mtime_ns))
        self.known_dirs.add(path)
        if old is None and (split_path(path)[0] in self.new_dirs or
                            self.view.commit.toc.empty):
            self.new_dirs.add(path)

    def symlink(self, path: str, target: str, mode: int, mtime_ns: int) -> None:
        path = normalize_path(path)
        if not target or len(target.encode()) > MAX_SYMLINK_SIZE or "\x00" in target:
            raise InvalidPathError(f"bad symlink target for {path}")
        self.check_replace(path, EntryType.SYMLINK)
        self.ensure_parents(path, mtime_ns)
        self.put(path, Entry(EntryType.SYMLINK, mode & 0o7777, mtime_ns, target=target))

    def put_entry(self, path: str, entry: Entry) -> None:
        """Stage an entry as it is (compaction; the caller guarantees consistency)."""
        path = normalize_path(path)
        self.ensure_parents(path, entry.mtime_ns)
        self.put(path, entry)
        if entry.is_dir:
            self.known_dirs.add(path)

    # -- removing and moving -------------------------------------------------------

    def _forget_dirs(self, path: str) -> None:
        self.known_dirs = {d for d in self.known_dirs
                           if not (d == path or d.startswith(path + "/"))}

    def remove(self, path: str, *, recursive: bool = False) -> int:
        path = normalize_path(path)
        if path == "":
            raise InvalidPathError("the archive root cannot be removed")
        entry = self.get_entry(path)
        if entry is None:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        keys = [toc_key(path)]
        if entry.is_dir:
            kids = self.subtree(path)
            if kids and not recursive:
                raise InvalidPathError(f"directory not empty: {path} (use recursive removal)")
            keys.extend(kids)
            self._forget_dirs(path)
        for k in keys:
            self.toc_changes[k] = None
        return len(keys)

    def move(self, src: str, dst: str, now_ns: Callable[[], int]) -> None:
        """Move ``src`` to ``dst`` (into ``dst`` when it is a directory); missing
        parents of the destination get the time ``now_ns()``."""
        src = normalize_path(src)
        dst = normalize_path(dst)
        if not src or not dst:
            raise InvalidPathError("the archive root cannot be moved")
        entry = self.get_entry(src)
        if entry is None:
            raise NotFoundError(f"no such file or directory in the archive: {src}")
        target = self.get_entry(dst)
        if target is not None and target.is_dir:
            dst = f"{dst}/{split_path(src)[1]}"
            target = self.get_entry(dst)
        if dst == src:
            return
        if entry.is_dir and (dst + "/").startswith(src + "/"):
            raise InvalidPathError("cannot move a directory into itself")
        if target is not None:
            raise InvalidPathError(f"destination exists: {dst}")
        self.ensure_parents(dst, now_ns())
        moves = [(src, dst, entry)]
        if entry.is_dir:
            for k in self.subtree(src):
                p = key_path(k)
                e = self.get_entry(p)
                assert e is not None
                moves.append((p, dst + p[len(src):], e))
        for old_path, _, _ in moves:
            self.toc_changes[toc_key(old_path)] = None
        for _, new_path, e in moves:
            self.put(new_path, e)
        if entry.is_dir:
            self._forget_dirs(src)

    # -- env -----------------------------------------------------------------------

    def env_set(self, name: str, value: str | bytes) -> None:
        key = env_key(name)
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > MAX_ENV_VALUE_SIZE:
            raise UsageError(f"env value larger than {MAX_ENV_VALUE_SIZE} bytes")
        self.env_changes[key] = data

    def env_remove(self, name: str) -> None:
        key = env_key(name)
        if key in self.env_changes:
            present = self.env_changes[key] is not None
        else:
            view = self.view
            v = self._run(view.get_flow(FrameKind.ENV_NODE, view.commit.env, key))
            present = v is not None
        if not present:
            raise NotFoundError(f"no such env value: {name}")
        self.env_changes[key] = None


def env_key(name: str) -> bytes:
    key = name.encode("utf-8")
    if not key or len(key) > MAX_ENV_NAME_SIZE or b"\x00" in key:
        raise InvalidPathError(f"bad env name: {name!r}")
    return key
