"""Which format a file is: detection by magic bytes, never by file name.

Every format lockbox reads is listed here once, by module path, and imported only
when it is first needed. :func:`detect` looks at the first bytes of a file and
returns the :class:`~lockbox.protocol.FormatSpec` that recognises them; when none
does, its ``FormatError`` says what the bytes look like instead (an HTML error page,
a gzip file, text, ...). :func:`open_session_flow` is the one sans-I/O entry point
that probes and opens any archive.
"""

from __future__ import annotations

import importlib
import os
import re
from functools import cache
from typing import Any, NamedTuple, TypeVar

from .drivers import Flow, Read
from .errors import FormatError, UsageError
from .protocol import FormatSession, FormatSpec, OpenOptions
from .ranges import ByteRange

__all__ = ["formats", "by_name", "for_path", "detect", "describe", "probe_flow",
           "open_session_flow", "open_flow", "Probe", "PROBE_SIZE", "open_location",
           "is_special_location", "LocationOpen"]

# name -> "module:attribute" of its FormatSpec, in probing order.
_FORMATS: dict[str, str] = {
    "lbox": "lockbox.formats.lbox.session:LboxFormat",
    "uri": "lockbox.formats.uri:UriFormat",
    "sync": "lockbox.formats.sync.session:SyncFormat",
    "snap": "lockbox.formats.snap.session:SnapFormat",   # by location only, never probed
}

# Locations that name an archive by more than a path or a URL, recognised by their form
# alone (before any probing): pattern -> "module:function" giving a LocationOpen.
_LOCATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a snapdir store and a snapshot id: STORE_URI#id=ID (the scheme is required, so a
    # file name holding '#' stays a file name)
    (re.compile(r"(?:file|https?)://[^#]*#id=", re.IGNORECASE),
     "lockbox.formats.snap.session:open_location"),
)

T = TypeVar("T")

PROBE_SIZE = 16384
"""Bytes of a file's start read to detect its format (the largest ``probe_size``)."""


@cache
def _load(name: str) -> FormatSpec:
    module, _, attr = _FORMATS[name].partition(":")
    spec: FormatSpec = getattr(importlib.import_module(module), attr)()
    if spec.probe_size > PROBE_SIZE:
        raise AssertionError(f"{name}: probe_size over the registry's PROBE_SIZE")
    return spec


def formats() -> list[FormatSpec]:
    """Every registered format, in probing order."""
    return [_load(name) for name in _FORMATS]


def by_name(name: str) -> FormatSpec:
    """The format called ``name`` (``"lbox"``, ``"uri"``, ...); UsageError if unknown."""
    key = name.strip().lower().lstrip(".")
    if key not in _FORMATS:
        raise UsageError(f"unknown format {name!r} (known: {', '.join(_FORMATS)})")
    return _load(key)


def for_path(path: str | os.PathLike[str]) -> FormatSpec | None:
    """The format whose file extension ``path`` has (for choosing what to *write*), or
    None. Reading never trusts the name: see :func:`detect`."""
    lower = os.fspath(path).lower()
    for spec in formats():
        if any(lower.endswith(ext) for ext in spec.extensions):
            return spec
    return None


def detect(head: bytes) -> FormatSpec:
    """The format whose magic ``head`` (a file's first bytes) starts with. Formats are
    loaded in probing order only until one recognises ``head`` (opening an ``.lbox``
    imports no other format)."""
    for name in _FORMATS:
        spec = _load(name)
        if spec.probe(head[: spec.probe_size]):
            return spec
    raise FormatError(f"not a lockbox archive, nor another format lockbox reads: "
                      f"{describe(head)}")


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"SNAPPACK ", "a SNAPPACK stream"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x28\xb5\x2f\xfd", "a zstd frame"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"age-encryption.org/", "an age-encrypted file"),
    (b"-----BEGIN AGE ENCRYPTED FILE-----", "an age-encrypted file (armored)"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x00asm", "a WebAssembly module"),
)


def describe(head: bytes) -> str:
    """A short human description of what ``head`` looks like."""
    if not head:
        return "the file is empty"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return f"it looks like {what}"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "it looks like a tar archive"
    text = head[:512].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:256]:
        return "it looks like an HTML page (an error page or a web page, not the file)"
    if text.startswith((b"{", b"[")):
        return "it looks like JSON"
    sample = head[:4096]
    try:
        sample.decode("utf-8")
        printable = True
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        printable = e.start >= len(sample) - 3
    if printable and not any(b < 9 or 13 < b < 32 for b in sample):
        return "it looks like text"
    return f"unknown bytes ({head[:8].hex(' ')} ...)"


class LocationOpen(NamedTuple):
    """An opened special location: the source to drive the flows against (an
    ``AsyncRangeSource`` when asked for one), the format's name, its open settings."""

    source: Any
    format: str
    settings: dict[str, Any]


def is_special_location(location: str | os.PathLike[str]) -> bool:
    """True if ``location`` has the form of a special location (``STORE_URI#id=ID``)."""
    return isinstance(location, str) and any(p.match(location) for p, _ in _LOCATIONS)


def open_location(location: str | os.PathLike[str], *, asynchronous: bool = False
                  ) -> LocationOpen | None:
    """Open a special location -- ``STORE_URI#id=ID``, snapshot ID of the snapdir store
    at ``file://``, ``http://`` or ``https://`` STORE_URI -- as its source, format and
    settings; None for a plain path or URL (open those with ``lockbox.sources``)."""
    if not isinstance(location, str):
        return None
    for pattern, target in _LOCATIONS:
        if pattern.match(location):
            module, _, attr = target.partition(":")
            opened = getattr(importlib.import_module(module), attr)(
                location, asynchronous=asynchronous)
            if opened is not None:
                return LocationOpen(opened.source, opened.format, dict(opened.settings))
    return None


class Probe(NamedTuple):
    """What :func:`probe_flow` found: the format and the file's first bytes (short only
    when the file is). Give it back to :func:`open_flow` to open without reading them
    again (e.g. after asking for a password only an encrypted format needs)."""

    spec: FormatSpec
    head: bytes


def probe_flow() -> Flow[Probe]:
    """Read the first :data:`PROBE_SIZE` bytes (one round trip) and detect the format."""
    blobs = yield Read((ByteRange(0, PROBE_SIZE),))
    head = bytes(blobs[0])
    return Probe(detect(head), head)


def open_flow(options: OpenOptions, size: int | None, *, format: str | None = None,
              probe: Probe | None = None) -> Flow[tuple[FormatSpec, FormatSession]]:
    """Detect the format (unless ``format`` names one, or ``probe`` already did) and open
    it; returns the spec and the session. The bytes read to detect it answer the
    format's own first reads, so detection costs no round trip of its own (a ``.lbox``
    still opens with one 16 KiB read). With ``format`` and ``probe`` both given, the
    probed bytes must be of that format (FormatError otherwise)."""
    if probe is None and format is not None:
        spec = by_name(format)
        return spec, (yield from spec.open_flow(size, options))
    if probe is None:
        probe = yield from probe_flow()
    spec = probe.spec
    if format is not None and by_name(format) is not spec:
        want = by_name(format)
        if not want.probe(probe.head[: want.probe_size]):
            raise FormatError(f"not a {want.title}: it is a {spec.title}")
        spec = want
    return spec, (yield from _answer_from_head(spec.open_flow(size, options), probe.head))


def open_session_flow(options: OpenOptions, size: int | None, *,
                      format: str | None = None) -> Flow[FormatSession]:
    """:func:`open_flow` without the spec: just the opened session."""
    _, session = yield from open_flow(options, size, format=format)
    return session


def _answer_from_head(flow: Flow[T], head: bytes) -> Flow[T]:
    """Run ``flow``, answering every read that ``head`` (the file's first bytes; all of
    them when shorter than :data:`PROBE_SIZE`) covers without a round trip."""
    whole = len(head) < PROBE_SIZE
    try:
        request = next(flow)
        while True:
            if all(r.end <= len(head) or whole for r in request.ranges):
                request = flow.send([head[r.offset:r.end] for r in request.ranges])
                continue
            try:
                blobs = yield request
            except BaseException as exc:
                request = flow.throw(exc)
                continue
            request = flow.send(blobs)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
