"""The format-neutral read protocol: what every archive format offers to the CLI,
the viewer and the WebDAV mount.

A format is a :class:`FormatSpec` (registered in ``lockbox.registry``): it
recognises its first bytes (``probe``) and opens a :class:`FormatSession` with a
sans-I/O flow. A session answers ``stat``, ``listdir``, ``walk`` (streaming, to an
``emit`` callback), ``read`` (a byte range of one file), ``stream`` (a whole file,
checked before its last piece) and ``verify``, each as a flow that yields
:class:`~lockbox.drivers.Read` batches. The same flows run over a local file, HTTP
Range or the browser, driven by ``lockbox.drivers``; ``lockbox.facade`` drives them
for callers, who never touch a format's internals.

Paths are ``/``-separated, relative, without ``.``/``..`` components; the root is
``""``. Sessions may offer more (an ``.lbox`` session has ``view``, the format's own
reader, for its env values and key slots); generic callers use only this protocol.
A path component that is not UTF-8 in the archive is decoded with
``surrogateescape`` (as ``os.fsdecode`` does on POSIX), so it round-trips to the
original bytes with ``os.fsencode``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from .drivers import Flow
from .info import EntryInfo

__all__ = [
    "FormatSpec", "FormatSession", "OpenOptions", "SessionInfo", "CheckReport", "Emit",
]

Emit = Callable[[list[EntryInfo]], None]
"""Receives a walk's entries batch by batch, in order (the walk keeps none of them)."""


@dataclass(frozen=True)
class OpenOptions:
    """What a caller may give when opening; each format uses what applies to it.

    ``secrets`` holds format-specific secrets by name (``password``, ``identity``,
    ``passphrase``, ...); ``settings`` format-specific settings (limits, a
    generation, a store URL). Neither is ever logged.
    """

    secrets: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionInfo:
    """Format-neutral facts about an opened archive, for ``info`` and the viewer."""

    format: str                      # FormatSpec.name, e.g. "lbox", "uri"
    encrypted: bool
    archive_size: int | None
    entries: int | None = None       # when known without a full walk
    file_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # format-specific, JSON-able


@dataclass
class CheckReport:
    """What ``verify`` found: ``problems`` empty means everything checked out."""

    entries_checked: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@runtime_checkable
class FormatSession(Protocol):
    """One opened archive. Every ``*_flow`` is a sans-I/O generator (``lockbox.drivers``)."""

    def info(self) -> SessionInfo: ...

    def stat_flow(self, path: str) -> Flow[EntryInfo]:
        """The entry at ``path`` (``""``: the root directory); NotFoundError if absent."""
        ...

    def listdir_flow(self, path: str) -> Flow[list[EntryInfo]]:
        """Direct children of a directory, sorted by name; InvalidPathError on a file."""
        ...

    def walk_flow(self, path: str, emit: Emit) -> Flow[None]:
        """Every entry under ``path`` (or ``path`` itself if it is not a directory),
        directories before their contents, handed to ``emit`` in batches as they are
        read: memory stays bounded whatever the archive's size."""
        ...

    def read_flow(self, path: str, offset: int, size: int) -> Flow[bytes]:
        """Up to ``size`` bytes of a file from ``offset`` (short only at the end), every
        byte authenticated or checksummed before it is returned."""
        ...

    def stream_flow(self, path: str, sink: Callable[[bytes | memoryview], None]
                    ) -> Flow[int]:
        """The whole file, in order, piece by piece to ``sink``; returns its size. The
        whole-file check (hash, CRC) runs before the last piece is handed over, so a
        consumer that commits only after the flow returns never commits bad data."""
        ...

    def verify_flow(self, progress: Callable[[str, int], None] | None = None
                    ) -> Flow[CheckReport]:
        """Check every entry and every byte; problems are reported, not raised."""
        ...


class FormatSpec(Protocol):
    """A format: how to recognise it and how to open it.

    Optional class attributes ``facade`` / ``async_facade`` ("module:Class") name the
    facade ``lockbox.open`` / ``lockbox.open_async`` give for files of this format: a
    subclass of :class:`lockbox.facade.Archive` / :class:`~lockbox.facade.AsyncArchive`
    that adds what only the format has (``.lbox``: ``Lockbox``). Without them, the
    generic facades, which use nothing but this protocol."""

    name: ClassVar[str]              # short id: "lbox", "uri", "sync", "snappack"
    title: ClassVar[str]             # human name: "lockbox archive"
    extensions: ClassVar[tuple[str, ...]]
    probe_size: ClassVar[int]        # bytes of the file's start that ``probe`` needs
    encrypted: ClassVar[bool]
    writable: ClassVar[bool]

    @staticmethod
    def probe(head: bytes) -> bool:
        """True if ``head`` (the first ``probe_size`` bytes, or fewer if the file is
        shorter) starts a file of this format. Pure; never raises."""
        ...

    def open_flow(self, size: int | None, options: OpenOptions) -> Flow[FormatSession]:
        """Open (and unlock, when encrypted) an archive of ``size`` bytes."""
        ...
