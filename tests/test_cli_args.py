"""Command-line syntax: options anywhere among the positionals, usage errors that show
the usage of the command at fault, and hints that name the flag to use."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import lockbox
from cli_helpers import WEAK, Runner, one_line_error
from lockbox import cli

PW = "pw"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCKBOX_IDENTITY", "LOCKBOX_NEW_PASSWORD", "LOCKBOX_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    return Runner(capsysbinary)


@pytest.fixture
def box(tmp_path: Path, run: Runner) -> Path:
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "a.txt").write_text("a")
    (src / "dir" / "sub" / "b.txt").write_text("b")
    archive = tmp_path / "x.lbox"
    run.ok("create", archive, *WEAK)
    run.ok("add", archive, f"{src}/", "-q")
    return archive


def usage_error(r: object, command: str) -> str:
    """Exit 2, the usage of ``lockbox COMMAND`` and its error line; returns the error."""
    assert r.rc == 2, r.err  # type: ignore[attr-defined]
    err: str = r.err  # type: ignore[attr-defined]
    assert err.startswith(f"usage: lockbox {command} "), err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"lockbox {command}: error: "), err
    return last


def test_options_after_positionals(run: Runner, box: Path, tmp_path: Path) -> None:
    assert run.ok("ls", box, "-R", "dir").lines == ["dir/a.txt", "dir/sub/", "dir/sub/b.txt"]
    assert run.ok("ls", box, "dir", "-R").lines == run.ok("ls", "-R", box, "dir").lines
    long = run.ok("ls", box, "--long", "dir").lines
    assert len(long) == 2 and long[0].startswith("-rw") and long[0].endswith(" dir/a.txt")
    assert run.ok("ls", box, "-l", "dir", "-R", "-q").lines[-1].endswith(" dir/sub/b.txt")
    entries = json.loads(run.ok("ls", box, "dir", "--json", "-R").out)
    assert [e["path"] for e in entries] == ["dir/a.txt", "dir/sub", "dir/sub/b.txt"]
    assert run.ok("cat", box, "dir/a.txt", "--cache", "0").out == b"a"

    pw = tmp_path / "pw"
    pw.write_text(PW)
    assert run.ok("ls", box, "--password-file", pw, "dir").lines[0] == "dir/a.txt"
    out = tmp_path / "out"
    run.ok("extract", box, "--to", out, "dir/sub", "-q")
    assert (out / "dir/sub/b.txt").read_text() == "b"
    run.ok("extract", box, "dir/sub", "-C", out, "--overwrite", "-q")
    assert json.loads(run.ok("info", box, "--json").out)["files"] == 2
    assert json.loads(run.ok("verify", box, "--json").out)["ok"]
    run.ok("env", "set", box, "K", "--from-file", pw)
    assert run.ok("env", "ls", box, "--values").lines == [f"K={PW}"]
    run.ok("mv", box, "dir/a.txt", "dir/c.txt", "-q")
    run.ok("rm", box, "dir/sub", "-r", "-q")
    assert run.ok("ls", box, "dir", "-R").lines == ["dir/c.txt"]
    extra = tmp_path / "extra.txt"
    extra.write_text("e")
    run.ok("add", box, extra, "--to", "more", "-q", "--jobs", "1")
    assert run.ok("ls", box, "more", "-R").lines == ["more/extra.txt"]
    ident = tmp_path / "me.id"
    run.ok("keygen", "-q", "-o", ident)
    recipient = run.ok("keygen", "--recipient-of", ident).text.strip()
    run.ok("keys", "add-recipient", box, recipient, "-q")
    assert run.ok("ls", box, "more", "--identity", ident).lines == ["more/extra.txt"]
    slots = json.loads(run.ok("keys", "ls", box, "--json").out)
    run.ok("keys", "rm", box, str(slots[1]["slot_id"]), "--compact", "-q")
    assert len(json.loads(run.ok("keys", "ls", box, "--json").out)) == 1
    r = run("recover", box, "--json", "--dry-run")
    assert r.rc == 0 and json.loads(r.out)["salvage"] is None
    run.ok("compact", box, "-q")


def test_double_dash_and_dash_names(run: Runner, box: Path) -> None:
    usage_error(run("rm", box, "-weird"), "rm")  # an unknown option, not a path
    r = run("rm", box, "--", "-weird")
    assert "no such file" in one_line_error(r, 7) and "-weird" in r.err


def test_usage_errors_show_the_command_usage(run: Runner, box: Path) -> None:
    assert "unrecognized arguments: extra" in usage_error(run("ls", box, "dir", "extra"), "ls")
    assert "--bogus" in usage_error(run("ls", box, "--bogus"), "ls")
    assert "required: ARCHIVE" in usage_error(run("ls"), "ls")
    assert "required: NAME" in usage_error(run("env", "set", box), "env set")
    assert "KEY" in usage_error(run("env", "get", box, "K", "KEY"), "env get")
    usage_error(run("keys", "rm", box, "not-a-number"), "keys rm")
    usage_error(run("extract", box, "dir"), "extract")  # --to is required
    usage_error(run("add", box, "--jobs", "0", "x"), "add")
    usage_error(run("keygen"), "keygen")
    r = run("bogus")  # no command to blame: the top level's usage
    assert r.rc == 2 and r.err.startswith("usage: lockbox [-h]")
    r = run("--bogus", "ls", box)
    assert r.rc == 2 and r.err.startswith("usage: lockbox [-h]")


def test_hints_name_the_flag(run: Runner, box: Path, tmp_path: Path) -> None:
    msg = one_line_error(run("rm", box, "dir"), 2)
    assert msg == "lockbox: directory not empty: dir (use -r to remove it with everything in it)"
    msg = one_line_error(run("rm", box, "/dir/sub/", "dir/a.txt"), 2)
    assert "dir/sub" in msg and "use -r" in msg
    assert run.ok("ls", box, "dir/a.txt").lines == ["dir/a.txt"]  # nothing was removed
    msg = one_line_error(run("create", box, *WEAK), 9)
    assert msg.endswith("already exists (use --force to replace it)")
    out = tmp_path / "o"
    run.ok("extract", box, "--to", out, "-q")
    msg = one_line_error(run("extract", box, "--to", out), 9)
    assert "(use --overwrite)" in msg
    ident = tmp_path / "me.id"
    run.ok("keygen", "-o", ident)
    assert "use --force" in one_line_error(run("keygen", "-o", ident), 2)
    slots = json.loads(run.ok("keys", "ls", box, "--json").out)
    assert "use --force" in one_line_error(run("keys", "rm", box, str(slots[0]["slot_id"])), 2)


def test_every_command_parser_is_intermixed() -> None:
    """Every leaf command is a _CommandParser (so intermixed); groups hand on."""
    parser = cli.build_parser()
    seen = []

    def walk(p: object, name: str) -> None:
        subs = getattr(p, "_subparsers", None)
        if subs is None:
            assert isinstance(p, cli._CommandParser), name
            seen.append(name)
            return
        for action in subs._group_actions:
            for child_name, child in action.choices.items():
                walk(child, f"{name} {child_name}".strip())

    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, child in action.choices.items():
            walk(child, name)
    assert {"ls", "add", "env set", "keys rm", "serve", "recover"} <= set(seen)


def test_extract_modes_and_max_size(run: Runner, tmp_path: Path,
                                    weak_argon2: lockbox.Argon2Params) -> None:
    """-p keeps the archived modes; by default group/other write and setuid are dropped;
    --max-size refuses before anything is written."""
    archive = tmp_path / "m.lbox"
    with lockbox.create(archive, password=PW, argon2=weak_argon2) as box, box.writer() as w:
        w.add_bytes("open.sh", b"#!/bin/sh\n", mode=0o4777)
        w.add_bytes("big.bin", b"x" * 5000)
    run.ok("extract", archive, "--to", tmp_path / "safe", "-q")
    assert (tmp_path / "safe/open.sh").stat().st_mode & 0o7777 == 0o755
    run.ok("extract", archive, "--to", tmp_path / "kept", "-p", "-q")
    assert (tmp_path / "kept/open.sh").stat().st_mode & 0o7777 == 0o4777
    msg = one_line_error(run("extract", archive, "--max-size", "4K", "--to", tmp_path / "no"), 2)
    assert "--max-size" in msg
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())
    run.ok("extract", archive, "--to", tmp_path / "yes", "--max-size", "1M", "-q")
    assert "not a size" in usage_error(run("extract", archive, "--max-size", "lots",
                                           "--to", tmp_path), "extract")
    assert cli._parse_size("2G") == 2 * 1024 ** 3 and cli._parse_size("1TiB") == 1024 ** 4
