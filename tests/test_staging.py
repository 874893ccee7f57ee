"""write/staging.py: staged TOC and env changes over the committed tree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.errors import InvalidPathError, NotFoundError, UsageError
from lockbox.formats.lbox.wire.constants import EntryType
from lockbox.formats.lbox.wire.entry import Entry, toc_key
from lockbox.formats.lbox.write.staging import Staging


def _staging(path: Path) -> tuple[Staging, list[int], Callable[[], None]]:
    """A Staging over the archive's committed view whose reads are counted."""
    box = lockbox.open(path, password="pw")
    reads: list[int] = []

    def run(flow: Any) -> Any:
        reads.append(1)
        return box.run(flow)

    return Staging(box.view, run), reads, box.close


def test_lookups_see_staged_changes_first(make_archive) -> None:
    staging, reads, close = _staging(make_archive({"a/b.txt": b"b", "c.txt": b"c"}))
    try:
        assert staging.get_entry("a/b.txt").type == EntryType.FILE and reads
        staging.remove("a", recursive=True)
        assert staging.get_entry("a/b.txt") is None and not staging.exists("a")
        staging.env_set("K", "v")
        assert staging.dirty and staging.env_changes == {b"K": b"v"}
        with pytest.raises(NotFoundError):
            staging.env_remove("MISSING")
        with pytest.raises(UsageError):
            staging.env_set("BIG", b"x" * (1 << 20))
        staging.move("c.txt", "d/e.txt", lambda: 7)
        assert staging.get_entry("d").mtime_ns == 7  # the missing parent, at "now"
        assert staging.get_entry("c.txt") is None
        assert staging.get_entry("d/e.txt").type == EntryType.FILE
        staging.clear()
        assert not staging.dirty
    finally:
        close()


def test_nothing_below_a_new_directory_is_looked_up(make_archive) -> None:
    staging, reads, close = _staging(make_archive({"old/x.txt": b"x"}))
    try:
        staging.mkdir("new/sub", 0o750, 1)  # "new" is a missing parent: new as well
        before = len(reads)
        staging.prepare_file("new/sub/f.txt", 2)  # its parent did not exist: no lookup
        assert staging.get_entry("new/sub/g.txt") is None
        assert len(reads) == before
        assert staging.new_dirs == {"new", "new/sub"}
        with pytest.raises(InvalidPathError, match="is a directory"):
            staging.prepare_file("new/sub", 2)
        staging.prepare_file("old/y.txt", 2)  # the parent is committed: looked up
        assert len(reads) > before
        with pytest.raises(InvalidPathError, match="is a directory"):
            staging.prepare_file("old", 2)
        staging.put("new/sub/f.txt", Entry(EntryType.DIR, 0o755, 3))
        # Something staged at the path itself: checked even below a new directory.
        with pytest.raises(InvalidPathError, match="is a directory"):
            staging.check_replace("new/sub/f.txt", EntryType.FILE)
        assert toc_key("new/sub/f.txt") in staging.toc_changes
    finally:
        close()
