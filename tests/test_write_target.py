"""write/target.py: the write engine depends on the WritableArchive protocol, not on the
Lockbox facade (archive.py imports the writer; the writer never imports it back)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import ClassVar

import lockbox
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.write.compact import compact_archive
from lockbox.formats.lbox.write.writer import Writer

WRITE = Path(lockbox.__file__).parent / "formats" / "lbox" / "write"
WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the lockbox modules a file imports (at any level)."""
    package = "lockbox.formats.lbox.write".split(".")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_write_package_never_imports_the_facade() -> None:
    files = sorted(WRITE.rglob("*.py"))
    assert len(files) >= 10
    for f in files:
        mods = _imported_modules(f)
        assert not any(m == "lockbox.formats.lbox.archive" or
                       m.startswith("lockbox.formats.lbox.archive.") for m in mods), f.name
        assert "lockbox.Lockbox" not in mods, f.name


class _Recording(Lockbox):
    opened: ClassVar[list[str]] = []

    @classmethod
    def open(cls, location, **kw):  # type: ignore[no-untyped-def,override]
        cls.opened.append(str(location))
        return super().open(location, **kw)


def test_compaction_opens_its_new_file_with_the_archive_objects_class(tmp_path: Path) -> None:
    path = tmp_path / "a.lbox"
    lockbox.create(path, password="pw", argon2=WEAK).close()
    with _Recording.open(path, password="pw") as box:
        with Writer(box) as w:  # typed against WritableArchive; a Lockbox subclass fits
            w.add_bytes("a.txt", b"a" * 5000)
            w.add_bytes("b.txt", b"b" * 5000)
        with Writer(box) as w:
            w.remove("a.txt")
        report = compact_archive(box)
        assert report.files == 1 and box.read_bytes("b.txt") == b"b" * 5000
    assert [Path(p).name for p in _Recording.opened[1:]] == \
        [f".a.lbox.{os.getpid()}.lbx-compact"]
