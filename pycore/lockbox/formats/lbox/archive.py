"""The public facades: :class:`Lockbox` (sync) and :class:`AsyncLockbox` (async).

Both only *run* flows from ``lockbox.formats.lbox.view`` /
``lockbox.formats.lbox.verify`` with their
driver; neither contains read logic of its own.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from ...cache import CacheLimit, PageCache
from ...codec.base import Codec as CodecBackend
from ...crypto.base import CryptoBackend
from ...drivers import Flow, run_async, run_sync
from ...errors import NotFoundError, UnsafePathError, UsageError
from ...extract import Extractor, ExtractReport
from ...info import EntryInfo
from ...platform import default_codec, default_crypto
from ...sources.base import AsyncRangeSource, RangeSource
from .fileobj import LockboxFile
from .info import ArchiveInfo, SlotInfo, entry_info
from .keys import Identity, UnlockLimits
from .opening import open_flow
from .reading import FileReadPlan
from .verify import VerifyReport, verify_flow
from .view import ArchiveView
from .walk import WalkLimits
from .wire.constants import EntryType
from .wire.entry import Entry, normalize_path
from .wire.keydir import keydir_has_commitment

__all__ = ["Lockbox", "AsyncLockbox"]

T = TypeVar("T")
Progress = Callable[[str, int], None]


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _info(view: ArchiveView, size: int | None) -> ArchiveInfo:
    c = view.commit
    return ArchiveInfo(
        archive_id=view.archive_id.hex(), generation=c.generation,
        committed_at=_dt.datetime.fromtimestamp(c.time_ns / 1e9, _dt.UTC).isoformat(),
        archive_size=size, archive_end=c.archive_end, files=c.stats.files, dirs=c.stats.dirs,
        symlinks=c.stats.symlinks, file_bytes=c.stats.file_bytes,
        stored_bytes=c.stats.stored_bytes, chunk_size=c.default_chunk_size,
        toc_height=c.toc.height, env_count=c.env.count,
        slots=[SlotInfo.of(s) for s in view.key_slots], unlocked_slot=view.unlocked_slot_id,
        format_version=view.slot.version, key_commitment=keydir_has_commitment(view.keydir))


class _Base:
    view: ArchiveView

    def _setup(self, crypto: CryptoBackend | None, codec: CodecBackend | None,
               cache: CacheLimit | PageCache) -> None:
        self.crypto = crypto or default_crypto()
        self.codec = codec or default_codec()
        self.cache = cache if isinstance(cache, PageCache) else PageCache(cache)

    walk_limits: WalkLimits | None = None

    def set_view(self, view: ArchiveView) -> None:
        if self.walk_limits is not None:
            view.limits = self.walk_limits
        self.view = view
        self._content_key = view.opener.content_key

    @property
    def content_key(self) -> bytes:
        """The 32-byte content key (a secret: whoever holds it can read and change the
        archive). Writers and compaction use it; never log or store it."""
        return self._content_key

    @property
    def archive_id(self) -> str:
        return self.view.archive_id.hex()

    @property
    def generation(self) -> int:
        return self.view.generation

    def env_names(self) -> list[str]:
        raise NotImplementedError


class Lockbox(_Base):
    """A lockbox archive opened for reading (and, when local, writing)."""

    def __init__(self, source: RangeSource, *, password: str | bytes | None = None,
                 identity: Identity | None = None, crypto: CryptoBackend | None = None,
                 codec: CodecBackend | None = None, cache: CacheLimit | PageCache = "auto",
                 path: str | None = None, close_source: bool = True,
                 known_key: tuple[bytes, bytes] | None = None,
                 limits: UnlockLimits | None = None, generation: int | None = None,
                 walk_limits: WalkLimits | None = None) -> None:
        self._setup(crypto, codec, cache)
        self.walk_limits = walk_limits
        self.source = source
        self.path = path
        self._close_source = close_source
        self.pinned_generation = generation
        try:
            self.set_view(self.run(open_flow(self.crypto, self.codec, password=password,
                                               identity=identity, cache=self.cache,
                                               known_key=known_key, limits=limits,
                                               generation=generation)))
        except BaseException:
            if close_source:
                source.close()
            raise

    @classmethod
    def open(cls, location: str | os.PathLike[str], *, password: str | bytes | None = None,
             identity: Identity | None = None, **kw: Any) -> Lockbox:
        from ...sources import open_source

        loc = os.fspath(location)
        path = None if _is_url(loc) else os.path.abspath(loc)
        return cls(open_source(loc), password=password, identity=identity, path=path, **kw)

    def run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self.source)

    def rebase_source(self) -> None:
        """The archive file was changed by this process's own writer: accept it."""
        rebase = getattr(self.source, "rebase", None)
        if rebase is not None:
            rebase()

    def refresh(self) -> None:
        """Re-read the superblock (a writer does this under its lock)."""
        self.rebase_source()
        self.cache.clear()
        self.set_view(self.run(open_flow(
            self.crypto, self.codec, password=None, identity=None, cache=self.cache,
            known_key=(self.view.archive_id, self._content_key))))

    # -- reading -------------------------------------------------------------------

    def info(self) -> ArchiveInfo:
        return _info(self.view, self.source.size)

    def stat(self, path: str) -> EntryInfo:
        p = normalize_path(path)
        return entry_info(p, self.run(self.view.stat_flow(p)))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFoundError:
            return False
        return True

    def ls(self, path: str = "", *, recursive: bool = False) -> list[EntryInfo]:
        p = normalize_path(path)
        if recursive:
            return [entry_info(q, e) for q, e in self.run(self.view.walk_flow(p))
                    if q != p]
        return [entry_info(f"{p}/{name}" if p else name, e)
                for name, e in self.run(self.view.listdir_flow(p))]

    def _file_entry(self, path: str) -> tuple[str, Entry]:
        p = normalize_path(path)
        e = self.run(self.view.stat_flow(p))
        if e.type != EntryType.FILE:
            raise UsageError(f"not a file: {p}")
        return p, e

    def open_file(self, path: str) -> LockboxFile:
        """A seekable binary file object (wrap in io.BufferedReader for small reads)."""
        p, e = self._file_entry(path)
        return LockboxFile(self.view, e, p, self.run)

    def iter_bytes(self, path: str) -> Iterator[memoryview]:
        """The file's content piece by piece; raises IntegrityError before the
        last piece if the whole-file SHA-256 does not match."""
        p, e = self._file_entry(path)
        return self._iter_entry(p, e)

    def _iter_entry(self, p: str, e: Entry) -> Iterator[memoryview]:
        plan = FileReadPlan(e, p, self.crypto)
        while (batch := plan.next_batch()) is not None:
            yield from plan.accept(self.run(self.view.chunks_flow(e, *batch)))

    def read_bytes(self, path: str) -> bytes:
        return b"".join(self.iter_bytes(path))

    def extract(self, dest: str | os.PathLike[str], paths: list[str] | None = None, *,
                overwrite: bool = False, progress: Progress | None = None,
                preserve_permissions: bool = False, max_size: int | None = None,
                strict: bool = True) -> ExtractReport:
        """Extract everything (or the given paths, each with its subtree) under dest,
        safely (the rules: :mod:`lockbox.extract`).

        Before writing anything: refuses (StorageError) to overwrite existing entries
        unless ``overwrite``, and when the files do not fit in the free space; refuses
        (UsageError) when they total more than ``max_size`` bytes. Modes lose setuid,
        setgid, sticky and group/other write unless ``preserve_permissions``.

        Unsafe entries (a path or symlink leading outside ``dest``, a symlink in the
        way) are skipped and the rest is extracted. Then, if any was skipped and
        ``strict``, UnsafePathError names how many (and the first few); with
        ``strict=False`` nothing is raised for them: they are in the returned report's
        ``skipped`` (one ``SkippedEntry(path, reason)`` each)."""
        items: dict[str, Entry] = {}
        for p in (paths or [""]):
            for path, e in self.run(self.view.walk_flow(p)):
                if path:
                    items.setdefault(path, e)
        out = Extractor(dest, overwrite=overwrite, preserve_permissions=preserve_permissions,
                        max_size=max_size)
        report = out.run(items.items(), self._iter_entry, progress)
        if strict and report.skipped:
            raise UnsafePathError(report.skipped_summary())
        return report

    def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        return self.run(verify_flow(self.view, progress=progress))

    def env_get(self, name: str) -> bytes:
        return self.run(self.view.env_get_flow(name))

    def env_items(self) -> list[tuple[str, bytes]]:
        return self.run(self.view.env_items_flow())

    def env_names(self) -> list[str]:
        return [k for k, _ in self.env_items()]

    # -- writing -------------------------------------------------------------------

    def writer(self, **kw: Any) -> Any:
        """A :class:`~lockbox.formats.lbox.write.writer.Writer`; use
        ``with archive.writer() as w:``."""
        from .write.writer import Writer

        self._check_writable()
        return Writer(self, **kw)

    def compact(self) -> Any:
        """Rewrite the archive without garbage (see
        :mod:`lockbox.formats.lbox.write.compact`); returns a
        :class:`~lockbox.formats.lbox.write.compact.CompactReport`."""
        from .write.compact import compact_archive

        self._check_writable()
        return compact_archive(self)

    def _check_writable(self) -> None:
        if self.pinned_generation is not None:
            raise UsageError(f"opened at generation {self.pinned_generation} on request: "
                             "read-only (open it without a generation to change it)")

    def reclaimable(self) -> tuple[int, int] | None:
        """(reclaimable bytes, archive bytes) from the space map, or None when the
        archive has none yet (written by the first format revision)."""
        if self.view.commit.space is None:
            return None
        from .wire.constants import FrameKind
        from .write.space import SpaceMap

        items = self.run(self.view.scan_flow(FrameKind.SPACE_NODE, self.view.commit.space,
                                              [(b"", b"\xff" * 9)]))
        space = SpaceMap.from_items(items)
        return space.reclaimable_bytes(), self.view.commit.archive_end

    def close(self) -> None:
        if self._close_source:
            self.source.close()

    def __enter__(self) -> Lockbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLockbox(_Base):
    """Async reading facade: the same flows, driven by an async range source."""

    path = None

    def __init__(self, source: AsyncRangeSource, *, crypto: CryptoBackend | None = None,
                 codec: CodecBackend | None = None,
                 cache: CacheLimit | PageCache = "auto") -> None:
        self._setup(crypto, codec, cache)
        self.source = source

    @classmethod
    async def open(cls, location: str | os.PathLike[str] | AsyncRangeSource, *,
                   password: str | bytes | None = None, identity: Identity | None = None,
                   limits: UnlockLimits | None = None, generation: int | None = None,
                   walk_limits: WalkLimits | None = None, **kw: Any) -> AsyncLockbox:
        if isinstance(location, (str, os.PathLike)):
            from ...sources import open_async_source

            source = open_async_source(os.fspath(location))
        else:
            source = location
        self = cls(source, **kw)
        self.walk_limits = walk_limits
        try:
            self.set_view(await self.run(open_flow(
                self.crypto, self.codec, password=password, identity=identity,
                cache=self.cache, limits=limits, generation=generation)))
        except BaseException:
            await source.aclose()
            raise
        return self

    async def run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self.source)

    def info(self) -> ArchiveInfo:
        return _info(self.view, self.source.size)

    async def stat(self, path: str) -> EntryInfo:
        p = normalize_path(path)
        return entry_info(p, await self.run(self.view.stat_flow(p)))

    async def ls(self, path: str = "", *, recursive: bool = False) -> list[EntryInfo]:
        p = normalize_path(path)
        if recursive:
            return [entry_info(q, e) for q, e in await self.run(self.view.walk_flow(p))
                    if q != p]
        return [entry_info(f"{p}/{name}" if p else name, e)
                for name, e in await self.run(self.view.listdir_flow(p))]

    async def iter_bytes(self, path: str) -> AsyncIterator[memoryview]:
        p = normalize_path(path)
        e = await self.run(self.view.stat_flow(p))
        if e.type != EntryType.FILE:
            raise UsageError(f"not a file: {p}")
        plan = FileReadPlan(e, p, self.crypto)
        while (batch := plan.next_batch()) is not None:
            for piece in plan.accept(await self.run(self.view.chunks_flow(e, *batch))):
                yield piece

    async def read_bytes(self, path: str) -> bytes:
        return b"".join([bytes(p) async for p in self.iter_bytes(path)])

    async def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        return await self.run(verify_flow(self.view, progress=progress))

    async def env_get(self, name: str) -> bytes:
        return await self.run(self.view.env_get_flow(name))

    async def env_items(self) -> list[tuple[str, bytes]]:
        return await self.run(self.view.env_items_flow())

    async def aclose(self) -> None:
        await self.source.aclose()

    async def __aenter__(self) -> AsyncLockbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


