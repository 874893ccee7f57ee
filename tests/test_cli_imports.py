"""Lazy imports (issue 12): a command pays only for what it uses. Checked in a fresh
interpreter, by the modules each step leaves imported (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import lockbox


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_cli_module_imports_no_command_s_machinery() -> None:
    mods = _modules_after("import lockbox.cli")
    for heavy in ("lockbox.convert", "lockbox.facade", "lockbox.extract", "asyncio",
                  "lockbox.formats.lbox.archive", "lockbox.formats.lbox.verify",
                  "lockbox.formats.sync.session", "lockbox.formats.snap.store"):
        assert heavy not in mods, heavy


def test_building_the_parser_imports_no_archive_machinery() -> None:
    mods = _modules_after("import lockbox.cli\nlockbox.cli.build_parser()")
    assert "lockbox.facade" not in mods and "asyncio" not in mods


def test_a_pipeline_worker_imports_only_what_it_prepares_with() -> None:
    mods = _modules_after("import lockbox.formats.lbox.write.pipeline")
    assert "lockbox.facade" not in mods and "lockbox.formats.lbox.archive" not in mods
    assert "asyncio" not in mods


def test_the_package_s_public_names_still_resolve() -> None:
    for name in lockbox.__all__:
        assert getattr(lockbox, name) is not None, name
    assert lockbox.Lockbox.__name__ == "Lockbox" and "Lockbox" in dir(lockbox)
    mods = _modules_after("import lockbox")
    assert "lockbox.facade" not in mods
    mods = _modules_after("from lockbox import *")
    assert "lockbox.facade" in mods  # star-import asks for every public name


def test_listing_an_lbox_archive_loads_no_other_format(make_archive: Any) -> None:
    path = make_archive({"a.txt": b"a", "d/b.txt": b"b"})
    mods = _modules_after(
        "import io, os, contextlib, lockbox.cli\n"
        "os.environ['LOCKBOX_PASSWORD'] = 'pw'\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert lockbox.cli.main(['ls', '-R', {str(path)!r}]) == 0")
    assert "lockbox.formats.lbox.session" in mods
    for other in ("lockbox.formats.uri", "lockbox.formats.sync.session",
                  "lockbox.formats.snap.session", "asyncio", "ssl"):
        assert other not in mods, other
