"""The ``.lbox`` facades: :class:`Lockbox` (sync) and :class:`AsyncLockbox` (async).

They are the generic :class:`~lockbox.facade.Archive` / :class:`~lockbox.facade.AsyncArchive`
over an :class:`~lockbox.formats.lbox.session.LboxSession` -- every read (stat, ls,
iter_entries, open_file, iter_bytes, extract) comes from the generic facade -- plus what
only this format has: ``info()`` as an :class:`ArchiveInfo` (key slots, generation),
``verify()`` as the detailed :class:`VerifyReport`, env values, ``writer()``,
``compact()``, ``reclaimable()``, and the hooks a writer uses (``run``, ``set_view``,
``refresh``, ``rebase_source``, ``content_key``; the
``lockbox.formats.lbox.write.target.WritableArchive`` protocol).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

from ...cache import CacheLimit, PageCache
from ...codec.base import Codec as CodecBackend
from ...crypto.base import CryptoBackend
from ...drivers import run_sync
from ...errors import UsageError
from ...facade import Archive, AsyncArchive, _acontent
from ...platform import default_codec, default_crypto
from ...protocol import FormatSession, FormatSpec, OpenOptions
from ...registry import by_name
from ...sources.base import AsyncRangeSource, RangeSource
from .keys import Identity, UnlockLimits
from .opening import open_flow
from .session import LboxFormat, LboxSession
from .view import ArchiveView
from .walk import WalkLimits
from .wire.entry import normalize_path

if TYPE_CHECKING:
    from .info import ArchiveInfo
    from .verify import VerifyReport
    from .write.compact import CompactReport
    from .write.writer import Writer

__all__ = ["Lockbox", "AsyncLockbox"]

Progress = Callable[[str, int], None]


def _info(view: ArchiveView, size: int | None) -> ArchiveInfo:
    # imported here: not on the path of add or ls (datetime, two dataclasses)
    import datetime as _dt

    from .info import ArchiveInfo, SlotInfo
    from .wire.keydir import keydir_has_commitment

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


def _lbox_options(password: str | bytes | None, identity: Identity | None,
                  known_key: tuple[bytes, bytes] | None, **settings: Any) -> OpenOptions:
    secrets = {k: v for k, v in (("password", password), ("identity", identity),
                                 ("known_key", known_key)) if v is not None}
    return OpenOptions(secrets=secrets,
                       settings={k: v for k, v in settings.items() if v is not None})


class _LboxCommon:
    """What both ``.lbox`` facades hold besides the generic reads: the backends, the
    view (the session's), the content key and the pinned generation."""

    session: FormatSession
    source: Any
    crypto: CryptoBackend
    codec: CodecBackend
    cache: PageCache
    walk_limits: WalkLimits | None = None
    pinned_generation: int | None = None
    # A key-directory restore (keybackup.restore_keydir): these bytes in place of the
    # archive's own key directory when the superblock is re-read (refresh).
    keydir_override: bytes | None = None
    _content_key: bytes

    def _setup(self, crypto: CryptoBackend | None, codec: CodecBackend | None,
               cache: CacheLimit | PageCache) -> None:
        self.crypto = crypto or default_crypto()
        self.codec = codec or default_codec()
        self.cache = cache if isinstance(cache, PageCache) else PageCache(cache)

    def _adopt_session(self, session: LboxSession, options: OpenOptions) -> None:
        view = session.view
        self.crypto = view.opener.crypto
        self.codec = view.opener.codec
        self.cache = view.cache
        self.walk_limits = options.settings.get("walk_limits")
        self.pinned_generation = options.settings.get("generation")
        self.set_view(view)

    @property
    def view(self) -> ArchiveView:
        """The ``.lbox`` reader at the opened commit (the session's); assigning one is
        :meth:`set_view`."""
        return cast(LboxSession, self.session).view

    @view.setter
    def view(self, view: ArchiveView) -> None:
        self.set_view(view)

    def set_view(self, view: ArchiveView) -> None:
        """Read ``view`` from now on (a writer's new commit, a refresh)."""
        if self.walk_limits is not None:
            view.limits = self.walk_limits
        self.session = LboxSession(view, self.source.size)
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


class Lockbox(_LboxCommon, Archive):
    """A lockbox archive opened for reading (and, when local, writing)."""

    default_format = "lbox"

    def __init__(self, source: RangeSource, *, password: str | bytes | None = None,
                 identity: Identity | None = None, crypto: CryptoBackend | None = None,
                 codec: CodecBackend | None = None, cache: CacheLimit | PageCache = "auto",
                 path: str | None = None, close_source: bool = True,
                 known_key: tuple[bytes, bytes] | None = None,
                 limits: UnlockLimits | None = None, generation: int | None = None,
                 walk_limits: WalkLimits | None = None) -> None:
        options = _lbox_options(password, identity, known_key, crypto=crypto, codec=codec,
                                cache=cache, limits=limits, generation=generation,
                                walk_limits=walk_limits)
        try:
            session = run_sync(LboxFormat().open_flow(source.size, options), source)
        except BaseException:
            if close_source:
                source.close()
            raise
        self._attach(source, by_name("lbox"), path, path, close_source)
        self._adopt_session(session, options)

    @classmethod
    def _from_session(cls, source: RangeSource, session: Any, *, spec: FormatSpec,
                      options: OpenOptions, path: str | None, location: str | None,
                      close_source: bool) -> Lockbox:
        self = cls.__new__(cls)
        self._attach(source, spec, path, location, close_source)
        self._adopt_session(session, options)
        return self

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
            known_key=(self.view.archive_id, self._content_key),
            keydir_override=self.keydir_override)))

    # -- what only .lbox has ----------------------------------------------------------

    def info(self) -> ArchiveInfo:  # type: ignore[override]
        """The archive's facts, key slots included (``session.info()`` gives the
        format-neutral :class:`~lockbox.protocol.SessionInfo`)."""
        return _info(self.view, self.source.size)

    def verify(self, *, progress: Progress | None = None) -> VerifyReport:  # type: ignore[override]
        """Authenticate every structure and check every file's content hash (the
        detailed report; ``ok`` and ``problems`` as in the generic CheckReport)."""
        from .verify import verify_flow

        return self.run(verify_flow(self.view, progress=progress))

    def env_get(self, name: str) -> bytes:
        return self.run(self.view.env_get_flow(name))

    def env_items(self) -> list[tuple[str, bytes]]:
        return self.run(self.view.env_items_flow())

    def env_names(self) -> list[str]:
        return [k for k, _ in self.env_items()]

    # -- writing -------------------------------------------------------------------

    def writer(self, **kw: Any) -> Writer:
        """A :class:`~lockbox.formats.lbox.write.writer.Writer`; use
        ``with archive.writer() as w:``."""
        from .write.writer import Writer

        self._check_writable()
        return Writer(self, **kw)

    def compact(self) -> CompactReport:
        """Rewrite the archive without garbage (see
        :mod:`lockbox.formats.lbox.write.compact`)."""
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


class AsyncLockbox(_LboxCommon, AsyncArchive):
    """Async reading facade of a ``.lbox`` archive: the generic async reads plus the
    format's own (``info`` as ArchiveInfo, ``verify`` as VerifyReport, env values).

    ``AsyncLockbox(source)`` is a facade not unlocked yet (``set_view`` gives it its
    archive: the viewer unlocks that way); :meth:`open` opens and unlocks at once."""

    default_format = "lbox"

    def __init__(self, source: AsyncRangeSource, *, crypto: CryptoBackend | None = None,
                 codec: CodecBackend | None = None,
                 cache: CacheLimit | PageCache = "auto") -> None:
        self._attach(source, by_name("lbox"), None, None, True)
        self._setup(crypto, codec, cache)

    @classmethod
    def _from_session(cls, source: AsyncRangeSource, session: Any, *, spec: FormatSpec,
                      options: OpenOptions, path: str | None, location: str | None,
                      close_source: bool) -> AsyncLockbox:
        self = cls.__new__(cls)
        self._attach(source, spec, path, location, close_source)
        self._adopt_session(session, options)
        return self

    def info(self) -> ArchiveInfo:  # type: ignore[override]
        return _info(self.view, self.source.size)

    async def iter_bytes(self, path: str) -> AsyncIterator[bytes | memoryview]:
        """The generic ``iter_bytes``; with a crypto backend that opens frames elsewhere
        (``start_open_frames``: the browser's worker pool), the pipelined read
        (:func:`~lockbox.formats.lbox.reading.pipelined_stream_flow`): the next batch is
        fetched and decrypted while this one is checked, hashed and handed over. The same
        bytes, checks and errors; nothing of a batch is handed over before all its chunks
        authenticated and passed their checks, nor the last batch before the whole-file
        BLAKE3 matched. A content error (IntegrityError, FormatError) names the file, as
        the generic read's does (a damaged pack fails several files: each says which)."""
        if getattr(self.crypto, "start_open_frames", None) is None:
            async for piece in super().iter_bytes(path):
                yield piece
            return
        info = await self.stat(path)
        if not info.is_file:
            async for piece in super().iter_bytes(path):  # its error for a non-file
                yield piece
            return
        async for piece in _acontent(self._pipelined(info.path), info.path):
            yield piece

    async def _pipelined(self, path: str) -> AsyncIterator[bytes | memoryview]:
        from .reading import drive_pipelined, pipelined_stream_flow

        entry = await self.run(self.view.stat_flow(normalize_path(path)))
        pieces: deque[bytes | memoryview] = deque()
        flow = pipelined_stream_flow(self.view, path, entry, pieces.append)
        async for piece in drive_pipelined(flow, self.source, self.crypto, pieces):
            yield piece

    async def verify(self, *, progress: Progress | None = None  # type: ignore[override]
                     ) -> VerifyReport:
        from .verify import verify_flow

        return await self.run(verify_flow(self.view, progress=progress))

    async def env_get(self, name: str) -> bytes:
        return await self.run(self.view.env_get_flow(name))

    async def env_items(self) -> list[tuple[str, bytes]]:
        return await self.run(self.view.env_items_flow())

    async def env_names(self) -> list[str]:
        return [k for k, _ in await self.env_items()]
