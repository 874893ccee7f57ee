"""Lazy imports (issue 12): a command pays only for what it uses. Checked in a fresh
interpreter, by the modules each step leaves imported (no timings)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox import cli


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
                  "lockbox.formats.snap.session", "asyncio", "ssl",
                  "lockbox.extract"):  # extract (shutil, random) only for extracting
        assert other not in mods, other


_OTHER_COMMAND_MODULES = ("lockbox.cli_sync", "lockbox.cli_snap", "lockbox.cli_vault",
                          "lockbox.cli_share")


def test_version_imports_nothing_of_any_command() -> None:
    mods = _modules_after(
        "import io, contextlib, lockbox.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        lockbox.cli.main(['--version'])\n"
        "    except SystemExit:\n"
        "        pass")
    assert "lockbox.cli" in mods
    for heavy in (*_OTHER_COMMAND_MODULES, "dataclasses", "traceback", "shutil",  # (json: probe)
                  "lockbox.formats.lbox.keys", "lockbox.formats.lbox.wire.constants"):
        assert heavy not in mods, heavy
    assert not [m for m in mods if m.startswith(("lockbox.formats", "cryptography"))]


@pytest.mark.parametrize("columns", [None, "0", "junk", "57", "132"])
def test_the_help_is_as_wide_as_argparse_makes_it(columns: str | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The width lockbox gives its help formatters is argparse's own (without shutil)."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._help_width() == shutil.get_terminal_size().columns - 2
    raw = argparse.RawDescriptionHelpFormatter
    plain = argparse.ArgumentParser(prog="lockbox", formatter_class=raw, description=cli._EPILOG)
    ours = cli._Parser(prog="lockbox", formatter_class=raw, description=cli._EPILOG)
    for p in (plain, ours):
        p.add_argument("--identity", "-i", metavar="FILE", help="x " * 80)
    assert ours.format_help() == plain.format_help()


def _built(sub: Any) -> list[str]:
    """The commands of a subparsers action whose parser is built (white box)."""
    return [name for name, value in dict.items(sub._name_parser_map)
            if isinstance(value, argparse.ArgumentParser)
            or (isinstance(value, cli._PendingParser) and value._built is not None)]


def test_a_run_builds_only_the_parser_of_its_command() -> None:
    parser = cli.build_parser()
    sub: Any = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    assert _built(sub) == []
    args = parser.parse_args(["ls", "-R", "a.lbox", "dir"])
    assert (args.command, args.archive, args.path, args.recursive) == ("ls", "a.lbox", "dir",
                                                                       True)
    assert _built(sub) == ["ls"]
    assert all(isinstance(dict.__getitem__(sub._name_parser_map, name), cli._Deferred)
               for name in ("sync", "snap", "share", "vault", "agent"))
    args = parser.parse_args(["keys", "rm", "a.lbox", "7", "--force"])
    assert (args.keys_command, args.slot_id, args.force) == ("rm", 7, True)
    assert _built(sub) == ["ls", "keys"]


def test_every_parser_builds_and_its_help_renders() -> None:
    """The recorded definitions are all replayed without error, the deferred modules
    define exactly the commands announced, and the command list names every command."""
    parser = cli.build_parser()
    top_help = parser.format_help()
    seen = []

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        assert isinstance(p, argparse.ArgumentParser), name
        assert p.format_help(), name
        seen.append(name)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child_name, child in action.choices.items():
                    walk(child, f"{name} {child_name}".strip())

    walk(parser, "")
    commands = {n.split()[0] for n in seen if n}
    assert {"add", "ls", "sync", "snap", "share", "vault", "agent", "env", "keys"} <= commands
    for command in commands:
        assert f"\n    {command} " in top_help, command
    assert len(seen) > 60


# What an `add` of small files (and `ls`) never needs: a thread pool (concurrent.futures,
# and logging with it) is made for the first large file only; pickle carries a worker's
# exception only; queue serves a large file's read-ahead; ctypes (writeback hints) waits
# for a session that wrote 16 MiB.
_NOT_ON_THE_ADD_PATH = ("concurrent.futures", "logging", "pickle", "queue", "ctypes",
                        # reading content, verifying, dates: neither add nor ls needs them
                        "lockbox.formats.lbox.verify", "lockbox.formats.lbox.reading",
                        "datetime")


def test_adding_to_a_new_public_key_archive_imports_only_its_path(tmp_path: Path) -> None:
    """`add --create --no-password -r FILE -i ID` and `ls -i ID` with no unlock agent:
    neither the agent's client (socket), nor the vault's recipients book (a path is no
    name), nor cryptography's OpenSSL "backend" module or block ciphers, nor the modules
    of other commands."""
    from lockbox.formats.lbox.keys import Identity
    from lockbox.platform import default_crypto

    crypto = default_crypto()
    ident = Identity.generate(crypto)
    (tmp_path / "id.txt").write_text(ident.encode() + "\n")
    (tmp_path / "r.txt").write_text(ident.recipient(crypto).encode() + "\n")
    (tmp_path / "a.txt").write_text("a")
    archive = tmp_path / "new.lbox"
    env = f"os.environ['LOCKBOX_AGENT_SOCK'] = {str(tmp_path / 'none' / 'agent.sock')!r}\n"
    absent = ("lockbox.vault.unlock_cache", "lockbox.vault.agent_client",
              "lockbox.vault.recipients", "socket", "asyncio",
              "cryptography.hazmat.backends.openssl.backend",
              "cryptography.hazmat.primitives.ciphers", *_OTHER_COMMAND_MODULES,
              *_NOT_ON_THE_ADD_PATH)
    for argv in (["add", "-q", "--create", "--no-password", "-r", str(tmp_path / "r.txt"),
                  "-i", str(tmp_path / "id.txt"), str(archive), str(tmp_path / "a.txt")],
                 ["ls", "-i", str(tmp_path / "id.txt"), str(archive)]):
        mods = _modules_after(
            "import io, os, contextlib, lockbox.cli\n" + env +
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert lockbox.cli.main({argv!r}) == 0")
        assert "lockbox.formats.lbox.write.newarchive" in mods or argv[0] == "ls"
        for heavy in absent:
            assert heavy not in mods, (argv[0], heavy)
    with lockbox.open(archive, identity=ident) as box:
        assert [e.path for e in box.iter_entries()] == ["a.txt"]


def test_adding_small_files_with_workers_imports_no_pool(tmp_path: Path) -> None:
    """`add` of a tree of small files through the worker pipeline (--jobs 2, more files
    than it needs to start its worker): no thread pool, no pickle; the archive is whole."""
    from lockbox.formats.lbox.keys import Identity
    from lockbox.platform import default_crypto

    crypto = default_crypto()
    ident = Identity.generate(crypto)
    (tmp_path / "r.txt").write_text(ident.recipient(crypto).encode() + "\n")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"f{i:03d}.txt").write_text(f"file {i}\n")
    archive = tmp_path / "a.lbox"
    argv = ["add", "-q", "--create", "--no-password", "-r", str(tmp_path / "r.txt"),
            "--jobs", "2", str(archive), str(src)]
    mods = _modules_after(
        "import io, contextlib, lockbox.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert lockbox.cli.main({argv!r}) == 0")
    for heavy in _NOT_ON_THE_ADD_PATH:
        assert heavy not in mods, heavy
    with lockbox.open(archive, identity=ident) as box:
        files = sorted(e.path for e in box.iter_entries() if e.is_file)
    assert files == [f"src/f{i:03d}.txt" for i in range(300)]
