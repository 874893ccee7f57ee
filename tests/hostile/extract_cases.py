"""Genuine archives with hostile content for extraction (issue 7).

Every builder writes a real archive with the real writer (``lockbox.create`` then
``box.writer()``): the structure is valid and authenticated, only the content is hostile.
Each returns the archive's path; its docstring says what a safe extractor must do.
``CASES`` maps a case name to its builder (for the adversarial corpus).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lockbox
from lockbox import Argon2Params
from lockbox.formats.lbox.wire.constants import EntryType
from lockbox.formats.lbox.wire.entry import Entry

__all__ = ["PASSWORD", "CASES", "chained_symlinks", "lexically_inside_chain",
           "order_dependent_symlinks",
           "special_modes", "temp_name_target", "plant_temp_name_traps", "expands_to_2gib",
           "unsafe_among_safe", "symlink_then_children", "LADDER_RUNGS", "BOMB_COPIES",
           "BOMB_FILE_SIZE"]

PASSWORD = "pw"
ARGON2 = Argon2Params(time_cost=1, memory_kib=64)
MTIME_NS = 1_600_000_000_000_000_000
LADDER_RUNGS = 16
BOMB_FILE_SIZE = 64 * 1024 * 1024
BOMB_COPIES = 32  # 32 x 64 MiB = 2 GiB


@contextmanager
def _writer(path: Path, **create_kw: Any) -> Iterator[Any]:
    create_kw.setdefault("argon2", ARGON2)
    box = lockbox.create(path, password=PASSWORD, **create_kw)
    try:
        with box.writer() as w:
            yield w
    finally:
        box.close()


def chained_symlinks(path: Path, rungs: int = LADDER_RUNGS) -> Path:
    """A ladder of links, each lexically inside the destination: ``a/up -> ..`` (the
    destination), ``a/up02 -> up/..`` (on disk: its parent), ``a/upNN -> up<NN-1>/..``
    (one level higher each), and ``a/passwd -> up<rungs>/etc/passwd``, which on disk is
    /etc/passwd whenever the destination is less than ``rungs - 1`` levels deep. Plus
    ``a/keep.txt``. A safe extractor leaves no link that resolves outside."""
    with _writer(path) as w:
        w.add_bytes("a/keep.txt", b"keep\n", mtime_ns=MTIME_NS)
        w.symlink("a/up", "..", mtime_ns=MTIME_NS)
        for k in range(2, rungs + 1):
            prev = "up" if k == 2 else f"up{k - 1:02d}"
            w.symlink(f"a/up{k:02d}", f"{prev}/..", mtime_ns=MTIME_NS)
        w.symlink("a/passwd", f"up{rungs:02d}/etc/passwd", mtime_ns=MTIME_NS)
    return path


def lexically_inside_chain(path: Path) -> Path:
    """Under ``D`` twelve directories deep: ``D/l1 -> ../../..`` (three levels up, inside)
    and ``D/l3 -> l1/`` + 13 x ``../`` + ``etc/passwd``: lexically the destination's own
    etc/passwd (``l1/..`` cancels out), on disk four levels above the destination.
    ``D/keep.txt`` is safe."""
    deep = "/".join(f"d{i}" for i in range(12))
    with _writer(path) as w:
        w.add_bytes(f"{deep}/keep.txt", b"keep\n", mtime_ns=MTIME_NS)
        w.symlink(f"{deep}/l1", "../../..", mtime_ns=MTIME_NS)
        w.symlink(f"{deep}/l3", "l1/" + "../" * 13 + "etc/passwd", mtime_ns=MTIME_NS)
    return path


def order_dependent_symlinks(path: Path) -> Path:
    """``a/b/x -> zz/..`` comes first (``zz`` does not exist yet: lexically a/b), then
    ``a/b/zz -> ../..`` (the destination). With both in place ``x`` is the destination's
    parent: each link is inside when created, but not the final state. ``a/b/y -> zz``
    stays inside."""
    with _writer(path) as w:
        w.symlink("a/b/x", "zz/..", mtime_ns=MTIME_NS)
        w.symlink("a/b/y", "zz", mtime_ns=MTIME_NS)
        w.symlink("a/b/zz", "../..", mtime_ns=MTIME_NS)
    return path


SPECIAL_MODES = {  # archive path -> (mode in the archive, mode a safe extract gives)
    "m/setuid.sh": (0o6777, 0o755),
    "m/world.txt": (0o666, 0o644),
    "m/sticky.txt": (0o1640, 0o640),
    "m/readonly.txt": (0o444, 0o644),
    "m/group-exec.txt": (0o654, 0o644),
    "m/d7777": (0o7777, 0o755),
    "m/d1777": (0o1777, 0o755),
    "m/d7777/inner.txt": (0o4755, 0o755),
}


def special_modes(path: Path) -> Path:
    """Files and directories with setuid, setgid, sticky and group/other-write bits
    (``SPECIAL_MODES``: archived mode and the mode a default extract gives)."""
    with _writer(path) as w:
        for p, (mode, _) in SPECIAL_MODES.items():
            if p.rsplit("/", 1)[-1].startswith("d"):
                w.mkdir(p, mode=mode, mtime_ns=MTIME_NS)
            else:
                w.add_bytes(p, b"#!/bin/sh\necho hostile\n", mode=mode, mtime_ns=MTIME_NS)
    return path


def temp_name_target(path: Path) -> Path:
    """``d/f`` with content ``b"archive content"``: plant traps with
    :func:`plant_temp_name_traps` in the destination before extracting."""
    with _writer(path) as w:
        w.add_bytes("d/f", b"archive content", mtime_ns=MTIME_NS)
        w.add_bytes("d/g", b"archive g", mtime_ns=MTIME_NS)
    return path


def plant_temp_name_traps(dest: Path, outside: Path) -> dict[Path, bytes]:
    """In ``dest``: ``d/.f.lbx-part`` (the old temporary name of ``d/f``) as a hard link
    to ``outside/victim``, and ``d/.g.lbx-part`` as a file of its own. Returns what each
    of them (and the victim) must still hold after extracting."""
    (dest / "d").mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    victim = outside / "victim"
    victim.write_bytes(b"outside, never written")
    os.link(victim, dest / "d" / ".f.lbx-part")
    (dest / "d" / ".g.lbx-part").write_bytes(b"a file of the user's")
    return {victim: b"outside, never written",
            dest / "d" / ".f.lbx-part": b"outside, never written",
            dest / "d" / ".g.lbx-part": b"a file of the user's"}


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def expands_to_2gib(path: Path) -> Path:
    """A small archive (under 100 KiB) whose files total 2 GiB: ``bomb/00`` is 64 MiB of
    zeros (compressed to almost nothing), ``bomb/01`` .. ``bomb/31`` are entries sharing
    its chunks. Every file reads back. A safe extractor refuses before writing when the
    total does not fit (or is over the caller's limit)."""
    with _writer(path, chunk_size=4 * 1024 * 1024) as w:
        entry = w.add_stream("bomb/00", _Zeros(BOMB_FILE_SIZE), mtime_ns=MTIME_NS)
        for k in range(1, BOMB_COPIES):
            w.put_entry(f"bomb/{k:02d}", entry)
    return path


def unsafe_among_safe(path: Path) -> Path:
    """Unsafe links first in archive order, safe entries after them:
    ``a/abs -> /etc/passwd``, ``a/esc -> ../../outside``, ``a/ok -> ../z/safe.txt``
    (safe), ``z/safe.txt``, ``z/later/more.txt``. The two unsafe links are skipped and
    reported, the rest is extracted."""
    with _writer(path) as w:
        w.symlink("a/abs", "/etc/passwd", mtime_ns=MTIME_NS)
        w.symlink("a/esc", "../../outside", mtime_ns=MTIME_NS)
        w.symlink("a/ok", "../z/safe.txt", mtime_ns=MTIME_NS)
        w.add_bytes("z/safe.txt", b"safe\n", mtime_ns=MTIME_NS)
        w.add_bytes("z/later/more.txt", b"more\n", mtime_ns=MTIME_NS)
    return path


def symlink_then_children(path: Path) -> Path:
    """The order attack: the TOC holds ``l`` as a symlink (``-> sub``) and also ``l/x``, a
    file under it (staged with ``put_entry``, which trusts its caller). Extracting must not
    write ``l/x`` through the link: ``l`` ends up a real directory holding ``x``, and the
    link is skipped and reported. ``sub/y`` is extracted."""
    with _writer(path) as w:
        w.add_bytes("sub/y", b"y", mtime_ns=MTIME_NS)
        w.add_bytes("l/x", b"x", mtime_ns=MTIME_NS)
        w.put_entry("l", Entry(EntryType.SYMLINK, 0o777, MTIME_NS, target="sub"))
    return path


CASES: dict[str, Callable[[Path], Path]] = {
    "chained-symlinks": chained_symlinks,
    "lexically-inside-chain": lexically_inside_chain,
    "order-dependent-symlinks": order_dependent_symlinks,
    "special-modes": special_modes,
    "temp-name-target": temp_name_target,
    "expands-to-2gib": expands_to_2gib,
    "unsafe-among-safe": unsafe_among_safe,
    "symlink-then-children": symlink_then_children,
}
