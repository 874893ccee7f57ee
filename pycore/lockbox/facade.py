"""The generic facades: :class:`Archive` (sync) and :class:`AsyncArchive` (async).

They read every registered format through the format-neutral protocol
(``lockbox.protocol``): a :class:`~lockbox.protocol.FormatSession` answers with
sans-I/O flows and these classes only *drive* them against a range source (a local
file, HTTP Range, the browser). There is no format-specific read logic here; a format
may name a richer facade of its own (``FormatSpec.facade`` / ``async_facade``, e.g.
``Lockbox`` for ``.lbox``), which :meth:`Archive.open` returns for files of that format.

Streaming. :meth:`Archive.iter_entries` and :meth:`Archive.iter_bytes` drive their flow
one round trip at a time and hand out what the flow produced in between, so memory stays
bounded by what one round trip brings (a ``.uri`` scan window, a ``.lbox`` walk's budget
per read, a file's read window) whatever the size of the archive or the file.
:meth:`Archive.open_file` gives a seekable file object: read from the start in order it
streams (and so gets the format's whole-file check -- a content hash, a CRC -- before
its last bytes), elsewhere it reads bounded windows with ``read_flow``, each checked by
the session.
"""

from __future__ import annotations

import importlib
import io
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .drivers import Flow, resume, run_async, run_sync
from .errors import (
    FormatError,
    IntegrityError,
    LockboxError,
    NotFoundError,
    TruncatedError,
    UnsafePathError,
    UsageError,
)
from .info import EntryInfo
from .protocol import CheckReport, FormatSession, FormatSpec, OpenOptions, SessionInfo
from .registry import Probe, open_flow, open_location, probe_flow
from .sources import is_url, open_async_source, open_source
from .sources.base import AsyncRangeSource, RangeSource

if TYPE_CHECKING:  # extract (and shutil, random) is imported only by the command that extracts
    from .extract import ExtractReport, ReadOrder

__all__ = ["Archive", "AsyncArchive", "ArchiveFile", "probe", "probe_async",
           "canonical_path", "archive_name", "READ_AHEAD_SIZE"]

T = TypeVar("T")
X = TypeVar("X")
A = TypeVar("A", bound="Archive")
AA = TypeVar("AA", bound="AsyncArchive")
Progress = Callable[[str, int], None]
Location = str | os.PathLike[str]

READ_AHEAD_SIZE = 1024 * 1024
"""Bytes one random-access read of :class:`ArchiveFile` fetches ahead (one round trip)."""


def canonical_path(path: str) -> str:
    """``path`` as the protocol spells it: ``/``-separated, no empty or ``.`` component,
    no outer ``/`` (the root is ``""``). ``..`` is left for the session to refuse."""
    return "/".join(p for p in path.split("/") if p not in ("", "."))


def _path_order(e: EntryInfo) -> str:
    """Sort key of a recursive listing: the path with '/' as NUL (no name holds NUL, and
    it is the lowest character): the order of comparing component lists, compared in C."""
    return e.path.replace("/", "\x00")


def archive_name(location: str) -> str:
    """The file name of a local path or an http(s) URL (its path's last component,
    percent-decoded): what a format may name its content after (``OpenOptions.settings
    ["archive_name"]``; a ``.sync`` shows ``report.csv.sync``'s payload as
    ``report.csv``)."""
    if is_url(location):
        from urllib.parse import unquote, urlsplit

        return os.path.basename(unquote(urlsplit(location).path))
    return os.path.basename(location)


def probe(source: RangeSource) -> Probe:
    """Read a file's first bytes (one round trip) and detect its format; give the result
    to :meth:`Archive.open` (``probe=``) to open it without reading them again."""
    return run_sync(probe_flow(), source)


async def probe_async(source: AsyncRangeSource) -> Probe:
    """:func:`probe` over an async source."""
    return await run_async(probe_flow(), source)


def _stepped(flow: Flow[T], source: RangeSource, out: deque[X]) -> Iterator[X]:
    """Run ``flow`` against ``source`` one round trip at a time; between round trips,
    yield whatever the flow appended to ``out``. Closing the iterator closes the flow."""
    try:
        try:
            request = next(flow)
        except StopIteration:
            request = None
        while request is not None:
            while out:
                yield out.popleft()
            try:
                blobs = source.read(request.ranges)
            except BaseException as exc:  # let the flow see (and maybe handle) it
                request = resume(flow, error=exc)
                continue
            request = resume(flow, blobs)
        while out:
            yield out.popleft()
    finally:
        flow.close()


async def _astepped(flow: Flow[T], source: AsyncRangeSource, out: deque[X]
                    ) -> AsyncIterator[X]:
    """:func:`_stepped` with an async source."""
    try:
        try:
            request = next(flow)
        except StopIteration:
            request = None
        while request is not None:
            while out:
                yield out.popleft()
            try:
                blobs = await source.read(request.ranges)
            except BaseException as exc:
                request = resume(flow, error=exc)
                continue
            request = resume(flow, blobs)
        while out:
            yield out.popleft()
    finally:
        flow.close()


def _named(exc: IntegrityError | FormatError, path: str) -> LockboxError:
    """``exc`` saying which file it is about (a damaged frame is the file's error: with a
    shared frame -- a ``.lbox`` pack -- the message names the file being read), unless it
    already does."""
    text = str(exc)
    if not path or text.startswith(f"{path}:") or text.startswith(f"{path} "):
        return exc
    try:
        named: LockboxError = type(exc)(f"{path}: {text}")
    except TypeError:  # a class with other constructor arguments: as it is
        return exc
    return named


def _content(pieces: Iterator[X], path: str) -> Iterator[X]:
    """``pieces`` of ``path``'s content; a content error (IntegrityError, FormatError)
    names the file (:func:`_named`)."""
    try:
        yield from pieces
    except (IntegrityError, FormatError) as exc:
        named = _named(exc, path)
        if named is exc:
            raise
        raise named from exc


async def _acontent(pieces: AsyncIterator[X], path: str) -> AsyncIterator[X]:
    """:func:`_content` of an async iterator."""
    try:
        async for piece in pieces:
            yield piece
    except (IntegrityError, FormatError) as exc:
        named = _named(exc, path)
        if named is exc:
            raise
        raise named from exc
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()


def _facade_class(spec: FormatSpec, attr: str, base: type[T]) -> type[T]:
    """The facade a format names in ``spec.<attr>`` ("module:Class"), else ``base``."""
    name = getattr(spec, attr, None)
    if not name:
        return base
    module, _, cls_name = str(name).partition(":")
    cls: type[T] = getattr(importlib.import_module(module), cls_name)
    return cls


def _pick(cls: type[T], target: type[Any], spec: FormatSpec) -> type[T]:
    if issubclass(target, cls):
        return target
    if issubclass(cls, target):
        return cls
    raise FormatError(f"this is a {spec.title}, which {cls.__name__} does not open")


def _options(password: str | bytes | None, identity: Any, secrets: Mapping[str, Any] | None,
             settings: Mapping[str, Any], link: Any = None) -> OpenOptions:
    given: dict[str, Any] = dict(secrets or {})
    if password is not None:
        given["password"] = password
    if identity is not None:
        given["identity"] = identity
    if link is not None:
        given["link"] = link
    return OpenOptions(secrets=given,
                       settings={k: v for k, v in settings.items() if v is not None})


def _special_format(given: str | None, wanted: str) -> str:
    """The format of a special location (``STORE_URI#id=ID``: ``snap``); UsageError when
    the caller named another."""
    if given is not None and given.strip().lower().lstrip(".") != wanted:
        raise UsageError(f"this location is a {wanted} location, not a {given} file")
    return wanted


def _not_a_file(info: EntryInfo) -> UsageError:
    return UsageError(f"not a file: {info.path or '/'} (a {info.type})")


def _collect(paths: list[str] | None, walk: Callable[[str], Iterator[EntryInfo]]
             ) -> list[EntryInfo]:
    items: dict[str, EntryInfo] = {}
    for p in paths or [""]:
        for e in walk(p):
            items.setdefault(e.path, e)
    return list(items.values())


class Archive:
    """An archive of any registered format, opened for reading (sync).

    Attributes: ``session`` (the format's :class:`~lockbox.protocol.FormatSession`),
    ``spec`` (its :class:`~lockbox.protocol.FormatSpec`), ``source`` (the range source),
    ``location`` (what was opened: a path or URL, or None for a source object), ``path``
    (the absolute local path, or None), ``close_source`` (close the source on close()).
    """

    default_format: ClassVar[str | None] = None   # a subclass for one format names it
    _facade_attr: ClassVar[str] = "facade"

    session: FormatSession

    def __init__(self, source: RangeSource, session: FormatSession, *,
                 spec: FormatSpec | None = None, path: str | None = None,
                 location: str | None = None, close_source: bool = True) -> None:
        self._attach(source, spec, path, location, close_source)
        self.session = session

    def _attach(self, source: RangeSource, spec: FormatSpec | None, path: str | None,
                location: str | None, close_source: bool) -> None:
        self.source = source
        self.spec = spec
        self.path = path
        self.location = location
        self.close_source = close_source

    @classmethod
    def open(cls: type[A], location: Location | RangeSource, *,
             password: str | bytes | None = None, identity: Any = None,
             link: Any = None,
             format: str | None = None, secrets: Mapping[str, Any] | None = None,
             source: RangeSource | None = None, probe: Probe | None = None,
             close_source: bool = True, **settings: Any) -> A:
        """Open a local file, an http(s) URL or a range source, whatever its format.

        The format is recognised by its first bytes (one 16 KiB read, which also answers
        the format's own first reads: no extra round trip), unless ``format`` names one.
        ``password`` / ``identity`` / ``link`` (a share link's key: a ``.lbox``
        ``LinkSecret`` or its ``lbk1-...`` text) and ``secrets`` unlock an encrypted
        format and are ignored by the others; ``settings`` go to the format
        (``OpenOptions.settings``: cache, limits, generation ...). ``source``: the
        already opened source of ``location``; ``probe``: what :func:`probe` found on
        it. For a format that names a facade of its own the result is that class (a
        ``.lbox`` gives a ``Lockbox``)."""
        loc: str | None
        special = (open_location(location) if source is None and
                   isinstance(location, str) else None)
        if special is not None:  # STORE_URI#id=ID: a snapdir snapshot
            loc, path, src = str(location), None, special.source
            format = _special_format(format, special.format)
            settings = {**special.settings, **settings}
        elif isinstance(location, (str, os.PathLike)):
            loc = os.fspath(location)
            assert loc is not None
            path = None if is_url(loc) else os.path.abspath(loc)
            src = source if source is not None else open_source(loc)
        else:
            loc, path, src = None, None, location
        if loc is not None and "archive_name" not in settings:
            settings["archive_name"] = archive_name(loc)
        options = _options(password, identity, secrets, settings, link)
        try:
            if probe is None and format is None and cls.default_format is None and \
                    src.size is None:
                # An HTTP source learns the size from its first answer: probing first
                # (the read the open would do anyway) gives the format the size.
                probe = run_sync(probe_flow(), src)
            spec, session = run_sync(open_flow(options, src.size,
                                               format=format or cls.default_format,
                                               probe=probe), src)
            target = _pick(cls, _facade_class(spec, cls._facade_attr, Archive), spec)
            return target._from_session(src, session, spec=spec, options=options, path=path,
                                        location=loc, close_source=close_source)
        except BaseException:
            if close_source:
                src.close()
            raise

    @classmethod
    def _from_session(cls: type[A], source: RangeSource, session: FormatSession, *,
                      spec: FormatSpec, options: OpenOptions, path: str | None,
                      location: str | None, close_source: bool) -> A:
        """The facade over an opened session (a format's own facade overrides this)."""
        return cls(source, session, spec=spec, path=path, location=location,
                   close_source=close_source)

    def run(self, flow: Flow[T]) -> T:
        """Run one flow against this archive's source."""
        return run_sync(flow, self.source)

    # -- reading ---------------------------------------------------------------------

    def info(self) -> SessionInfo:
        """Format-neutral facts (format, encrypted, sizes; ``details`` per format)."""
        return self.session.info()

    def stat(self, path: str) -> EntryInfo:
        """The entry at ``path`` (``""``: the root); NotFoundError if absent."""
        return self.run(self.session.stat_flow(path))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFoundError:
            return False
        return True

    def ls(self, path: str = "", *, recursive: bool = False) -> list[EntryInfo]:
        """The children of directory ``path`` sorted by name; with ``recursive``, every
        entry below it sorted by path components (a list: for huge trees prefer
        :meth:`iter_entries`)."""
        if not recursive:
            return self.run(self.session.listdir_flow(path))
        root = canonical_path(path)
        out = [e for e in self.iter_entries(path) if e.path != root]
        out.sort(key=_path_order)
        return out

    def iter_entries(self, path: str = "") -> Iterator[EntryInfo]:
        """Every entry below ``path`` (``path`` itself when it is not a directory), in
        the format's order -- a directory before its contents -- handed out between the
        walk's round trips: only what one round trip decoded is held, whatever the
        archive's size."""
        root = canonical_path(path)
        batches: deque[list[EntryInfo]] = deque()
        for batch in _stepped(self.session.walk_flow(path, batches.append), self.source,
                              batches):
            for e in batch:
                if not (e.path == root and e.is_dir):
                    yield e

    def _file_info(self, path: str) -> EntryInfo:
        info = self.stat(path)
        if not info.is_file:
            raise _not_a_file(info)
        return info

    def open_file(self, path: str, *, window_size: int = READ_AHEAD_SIZE) -> ArchiveFile:
        """A seekable, read-only binary file object (wrap it in ``io.BufferedReader``
        for many small reads)."""
        return ArchiveFile(self, self._file_info(path), window_size)

    def iter_bytes(self, path: str) -> Iterator[bytes | memoryview]:
        """A file's content piece by piece, in bounded memory. The format's whole-file
        check runs before the last piece: IntegrityError instead of it when the content
        does not check out. UsageError at once when ``path`` is not a file."""
        return self.open_content(self._file_info(path).path)

    def open_content(self, path: str) -> Iterator[bytes | memoryview]:
        """The content of a file known to be one, piece by piece (the extractor's
        ``open_content``): IntegrityError before the last piece if it does not check out;
        its message names the file."""
        pieces: deque[bytes | memoryview] = deque()
        return _content(_stepped(self.session.stream_flow(path, pieces.append), self.source,
                                 pieces), path)

    def read_bytes(self, path: str) -> bytes:
        return b"".join(self.iter_bytes(path))

    def read(self, path: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a file from ``offset`` (short only at its end)."""
        return self.run(self.session.read_flow(path, offset, size))

    def extract(self, dest: str | os.PathLike[str], paths: list[str] | None = None, *,
                overwrite: bool = False, progress: Progress | None = None,
                preserve_permissions: bool = False, max_size: int | None = None,
                strict: bool = True, same_owner: bool = False) -> ExtractReport:
        """Extract everything (or the given paths, each with its subtree) under dest,
        safely (the rules: :mod:`lockbox.extract`).

        Before writing anything: refuses (StorageError) to overwrite existing entries
        unless ``overwrite``, and when the files do not fit in the free space; refuses
        (UsageError) when they total more than ``max_size`` bytes. Modes lose setuid,
        setgid, sticky and group/other write unless ``preserve_permissions``. Owner and
        group names (formats that have them) are applied with ``same_owner``, as root.

        Unsafe entries (a path or symlink leading outside ``dest``, a symlink in the
        way) are skipped and the rest is extracted. Then, if any was skipped and
        ``strict``, UnsafePathError names how many (and the first few); with
        ``strict=False`` nothing is raised for them: they are in the returned report's
        ``skipped`` (one ``SkippedEntry(path, reason)`` each)."""
        items = _collect(paths, self.iter_entries)
        from .extract import Extractor

        out = Extractor(dest, overwrite=overwrite, preserve_permissions=preserve_permissions,
                        max_size=max_size, same_owner=same_owner)
        report = out.run(items, self.open_content, progress, read_order=self.read_order)
        if strict and report.skipped:
            raise UnsafePathError(report.skipped_summary())
        return report

    @property
    def read_order(self) -> ReadOrder | None:
        """The session's ``read_order(files)`` (the order in which to read many files:
        where their content is stored, a frame shared by several read once), or None when
        the format has none (path order is as good). Extraction uses it."""
        order: ReadOrder | None = getattr(self.session, "read_order", None)
        return order

    def verify(self, *, progress: Progress | None = None) -> CheckReport:
        """Check every entry and every byte; problems are reported, not raised."""
        return self.run(self.session.verify_flow(progress))

    def close(self) -> None:
        if self.close_source:
            self.source.close()

    def __enter__(self: A) -> A:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArchiveFile(io.RawIOBase):
    """A seekable, read-only binary file object over one archived file.

    Reading from the start in order streams the file (``stream_flow``: the format's
    whole-file check runs before the last bytes are returned); any other read fetches a
    window of ``window_size`` bytes at the position with ``read_flow`` (each byte
    checked by the session) and serves later reads inside it. A raw read never returns
    empty before the end of the file."""

    def __init__(self, archive: Archive, info: EntryInfo,
                 window_size: int = READ_AHEAD_SIZE) -> None:
        super().__init__()
        self._archive = archive
        self.info = info
        self.name = info.path
        self._pos = 0
        self._window_size = max(1, window_size)
        self._window: bytes = b""
        self._window_offset = 0
        self._stream: Iterator[bytes | memoryview] | None = None
        self._stream_pos = 0
        self._piece = memoryview(b"")

    @property
    def size(self) -> int:
        return self.info.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        mv = memoryview(buffer).cast("B")
        if self._pos >= self.size or not len(mv):
            return 0
        if self._pos == self._stream_pos and (self._stream is not None or self._pos == 0):
            n = self._from_stream(mv)
        else:
            self._drop_stream()
            n = self._from_window(mv)
        self._pos += n
        return n

    def _ended(self) -> TruncatedError:
        return TruncatedError(f"{self.name}: the content ended at byte {self._pos} of "
                              f"{self.size}")

    def _from_stream(self, mv: memoryview) -> int:
        if self._stream is None:
            self._stream = self._archive.open_content(self.name)
            self._stream_pos = 0
        while not self._piece:
            piece = next(self._stream, None)
            if piece is None:
                raise self._ended()
            self._piece = memoryview(piece).cast("B")
        n = min(len(mv), len(self._piece))
        mv[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        self._stream_pos += n
        return n

    def _drop_stream(self) -> None:
        if self._stream is not None:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
            self._stream = None
        self._piece = memoryview(b"")
        self._stream_pos = 0

    def _from_window(self, mv: memoryview) -> int:
        start = self._pos - self._window_offset
        if not 0 <= start < len(self._window):
            self._window = self._archive.read(self.name, self._pos, self._window_size)
            self._window_offset = self._pos
            start = 0
            if not self._window:
                raise self._ended()
        n = min(len(mv), len(self._window) - start)
        mv[:n] = self._window[start:start + n]
        return n

    def readall(self) -> bytes:
        out = bytearray()
        while True:
            piece = self.read(max(1, self.size - self._pos))
            if not piece:
                return bytes(out)
            out += piece

    def close(self) -> None:
        self._drop_stream()
        self._window = b""
        super().close()


class AsyncArchive:
    """An archive of any registered format, opened for reading (async): the same flows
    as :class:`Archive`, driven by an :class:`~lockbox.sources.base.AsyncRangeSource`
    (whose reads of one batch run concurrently)."""

    default_format: ClassVar[str | None] = None
    _facade_attr: ClassVar[str] = "async_facade"

    session: FormatSession

    def __init__(self, source: AsyncRangeSource, session: FormatSession, *,
                 spec: FormatSpec | None = None, path: str | None = None,
                 location: str | None = None, close_source: bool = True) -> None:
        self._attach(source, spec, path, location, close_source)
        self.session = session

    def _attach(self, source: AsyncRangeSource, spec: FormatSpec | None, path: str | None,
                location: str | None, close_source: bool) -> None:
        self.source = source
        self.spec = spec
        self.path = path
        self.location = location
        self.close_source = close_source

    @classmethod
    async def open(cls: type[AA], location: Location | AsyncRangeSource, *,
                   password: str | bytes | None = None, identity: Any = None,
                   link: Any = None,
                   format: str | None = None, secrets: Mapping[str, Any] | None = None,
                   source: AsyncRangeSource | None = None, probe: Probe | None = None,
                   close_source: bool = True, **settings: Any) -> AA:
        """:meth:`Archive.open`, async (a ``.lbox`` gives an ``AsyncLockbox``)."""
        loc: str | None
        special = (open_location(location, asynchronous=True) if source is None and
                   isinstance(location, str) else None)
        if special is not None:  # STORE_URI#id=ID: a snapdir snapshot
            loc, path, src = str(location), None, special.source
            format = _special_format(format, special.format)
            settings = {**special.settings, **settings}
        elif isinstance(location, (str, os.PathLike)):
            loc = os.fspath(location)
            assert loc is not None
            path = None if is_url(loc) else os.path.abspath(loc)
            src = source if source is not None else open_async_source(loc)
        else:
            loc, path, src = None, None, location
        if loc is not None and "archive_name" not in settings:
            settings["archive_name"] = archive_name(loc)
        options = _options(password, identity, secrets, settings, link)
        try:
            if probe is None and format is None and cls.default_format is None and \
                    src.size is None:
                probe = await run_async(probe_flow(), src)
            spec, session = await run_async(open_flow(options, src.size,
                                                      format=format or cls.default_format,
                                                      probe=probe), src)
            target = _pick(cls, _facade_class(spec, cls._facade_attr, AsyncArchive), spec)
            return target._from_session(src, session, spec=spec, options=options, path=path,
                                        location=loc, close_source=close_source)
        except BaseException:
            if close_source:
                await src.aclose()
            raise

    @classmethod
    def _from_session(cls: type[AA], source: AsyncRangeSource, session: FormatSession, *,
                      spec: FormatSpec, options: OpenOptions, path: str | None,
                      location: str | None, close_source: bool) -> AA:
        return cls(source, session, spec=spec, path=path, location=location,
                   close_source=close_source)

    async def run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self.source)

    def info(self) -> SessionInfo:
        return self.session.info()

    async def stat(self, path: str) -> EntryInfo:
        return await self.run(self.session.stat_flow(path))

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except NotFoundError:
            return False
        return True

    async def ls(self, path: str = "", *, recursive: bool = False) -> list[EntryInfo]:
        if not recursive:
            return await self.run(self.session.listdir_flow(path))
        root = canonical_path(path)
        out = [e async for e in self.iter_entries(path) if e.path != root]
        out.sort(key=_path_order)
        return out

    async def iter_entries(self, path: str = "") -> AsyncIterator[EntryInfo]:
        """:meth:`Archive.iter_entries` as an async generator."""
        root = canonical_path(path)
        batches: deque[list[EntryInfo]] = deque()
        async for batch in _astepped(self.session.walk_flow(path, batches.append),
                                     self.source, batches):
            for e in batch:
                if not (e.path == root and e.is_dir):
                    yield e

    async def iter_bytes(self, path: str) -> AsyncIterator[bytes | memoryview]:
        """:meth:`Archive.iter_bytes` as an async generator."""
        info = await self.stat(path)
        if not info.is_file:
            raise _not_a_file(info)
        pieces: deque[bytes | memoryview] = deque()
        async for piece in _acontent(_astepped(self.session.stream_flow(info.path,
                                                                        pieces.append),
                                               self.source, pieces), info.path):
            yield piece

    async def read_bytes(self, path: str) -> bytes:
        return b"".join([p async for p in self.iter_bytes(path)])

    async def read(self, path: str, offset: int, size: int) -> bytes:
        return await self.run(self.session.read_flow(path, offset, size))

    async def verify(self, *, progress: Progress | None = None) -> CheckReport:
        return await self.run(self.session.verify_flow(progress))

    async def aclose(self) -> None:
        if self.close_source:
            await self.source.aclose()

    async def __aenter__(self: AA) -> AA:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
