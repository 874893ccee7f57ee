"""A folder as a ``.zip`` written while it downloads: stored (not compressed), zip64 where
needed, data descriptors (the output is never seeked). Modes are masked as an extraction
masks them; symlinks that would lead outside the folder are left out
(:func:`unsafe_zip_links`)."""

from __future__ import annotations

import datetime as _dt
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ..errors import LockboxError
from ..extract import link_escape, safe_mode
from ..formats.lbox.wire.constants import EntryType
from ..info import EntryInfo
from .messages import AtPath

__all__ = ["ZipSink", "zip_pieces", "unsafe_zip_links", "zip_time", "Content"]

# The pieces of one file of the zip (its index in the items, its entry).
Content = Callable[[int, EntryInfo], AsyncIterator["bytes | memoryview"]]


class ZipSink:
    """A write-only, non-seekable file for zipfile (it then writes data descriptors)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0
        self.pending = 0

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.parts.append(b)
        self.pos += len(b)
        self.pending += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        self.pending = 0
        return out


def zip_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    t = _dt.datetime.fromtimestamp(mtime_ns / 1e9, _dt.UTC)
    if t.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if t.year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


async def zip_pieces(items: Sequence[EntryInfo], prefix: str, base: str, content: Content,
                     piece_size: int,
                     on_entry: Callable[[str], None] | None = None) -> AsyncIterator[bytes]:
    """The zip of ``items`` (below ``prefix``, named ``base/...`` inside), about
    ``piece_size`` bytes at a time. ``content(i, entry)`` gives a file's pieces; it must
    raise before its last piece if the file does not check out. Errors name the file
    (:class:`~lockbox.viewer.messages.AtPath`)."""
    sink = ZipSink()
    zf = zipfile.ZipFile(sink, "w",  # type: ignore[call-overload]
                         compression=zipfile.ZIP_STORED)
    for i, e in enumerate(items):
        rel = e.path[len(prefix):] if prefix and e.path.startswith(prefix) else e.path
        name = f"{base}/{rel}"
        if on_entry is not None:
            on_entry(e.path)
        zi = zipfile.ZipInfo(name + ("/" if e.is_dir else ""), zip_time(e.mtime_ns))
        zi.create_system = 3
        if e.is_dir:
            zi.external_attr = (0o40000 | safe_mode(EntryType.DIR, e.mode)) << 16 | 0x10
            zf.writestr(zi, b"")
        elif e.type == "symlink":
            zi.external_attr = (0o120000 | 0o777) << 16
            zf.writestr(zi, e.target.encode("utf-8", "surrogateescape"))
        else:
            zi.external_attr = (0o100000 | safe_mode(EntryType.FILE, e.mode)) << 16
            zi.compress_type = zipfile.ZIP_STORED
            zi.file_size = e.size
            with zf.open(zi, "w", force_zip64=e.size > 0xFFFF0000) as out:
                try:
                    async for piece in content(i, e):
                        out.write(piece)
                        if sink.pending >= piece_size:
                            yield sink.take()
                except LockboxError as exc:
                    raise AtPath(exc, e.path) from exc
        if sink.pending >= piece_size:
            yield sink.take()
    zf.close()
    yield sink.take()


def unsafe_zip_links(items: Sequence[EntryInfo], prefix: str) -> dict[str, tuple[str, str]]:
    """The symlinks of a zipped folder (``items`` below ``prefix``) an unzip would turn into
    a way out of the folder: archive path -> (target, reason). Each link is resolved
    through the zip's other links -- all of them, whatever their order, as they all exist
    once unzipped -- and dropping one can change where others lead, so until stable. A
    name missing as written is also looked up case-insensitively (the zip may be unpacked
    on a case-insensitive filesystem, where ``l`` opens a link ``L``)."""
    kinds = {e.path[len(prefix):]: e for e in items}
    links = {rel: e.target for rel, e in kinds.items() if e.type == "symlink"}
    folded = {rel.casefold(): rel for rel in kinds}
    unsafe: dict[str, tuple[str, str]] = {}

    def lookup(parent: Sequence[str], name: str) -> tuple[str, str]:
        rel = "/".join([*parent, name])
        if rel not in kinds:
            rel = folded.get(rel.casefold(), rel)
        if rel in links:
            return "link", links[rel]
        e = kinds.get(rel)
        if e is None or e.type == "symlink":  # a dropped link is not in the zip
            return "missing", ""
        return ("dir" if e.is_dir else "other"), ""

    changed = True
    while changed:
        changed = False
        for rel, target in list(links.items()):
            why = link_escape(rel.split("/")[:-1], target, lookup, root="the folder")
            if why is not None:
                unsafe[prefix + rel] = (target, why)
                del links[rel]
                changed = True
    return unsafe
