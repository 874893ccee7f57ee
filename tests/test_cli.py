"""The ``lockbox`` command line: every command in-process via ``main``, a few
through a real subprocess, and the read-only ones against an HTTP server."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lockbox
from cli_helpers import (
    DIR_MTIME_NS,
    FILE_MTIME_NS,
    WEAK,
    Runner,
    lockbox_command,
    make_tree,
    one_line_error,
    run_lockbox,
    static_server,
)
from lockbox import cli
from lockbox.formats.lbox.wire.constants import PACKED_FORMAT_VERSION, SUPERBLOCK_SIZE
from lockbox.formats.lbox.wire.keydir import decode_keydir
from lockbox.formats.lbox.wire.superblock import decode_superblock

PW = "correct horse battery staple"
BIG = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCKBOX_PASSWORD", "LOCKBOX_IDENTITY", "LOCKBOX_NEW_PASSWORD",
                 "LOCKBOX_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    # Not a terminal: nothing may be prompted for.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    return Runner(capsysbinary)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_tree(tmp_path, BIG)


@pytest.fixture
def box(tmp_path: Path, src: Path, run: Runner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An archive holding ``src`` (as ``tree/...``); LOCKBOX_PASSWORD opens it."""
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    archive = tmp_path / "a.lbox"
    run.ok("create", archive, *WEAK)
    r = run.ok("add", archive, f"{src}/", "--to", "tree")
    assert r.text.startswith("added 9 entries, 3,145,884 bytes")
    return archive


# -- basics ------------------------------------------------------------------------------


def test_version_and_help(run: Runner) -> None:
    r = run("--version")
    assert r.rc == 0 and r.text.strip() == f"lockbox {lockbox.__version__}"
    for argv in (["--help"], ["add", "--help"], ["env", "set", "--help"],
                 ["keys", "rm", "--help"]):
        r = run(*argv)
        assert r.rc == 0 and r.text.startswith("usage: lockbox")
    assert "visible to other users" in run("env", "set", "--help").text
    assert "argon2-memory-kib" not in run("create", "--help").text  # hidden option
    r = run()
    assert r.rc == 2 and "usage:" in r.err
    assert run("ls").rc == 2
    assert run("bogus").rc == 2


def test_create_needs_a_secret(run: Runner, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "x.lbox"
    assert "needs a password" in one_line_error(run("create", archive, *WEAK), 2)
    assert "--recipient" in one_line_error(run("create", archive, "--no-password"), 2)
    assert not archive.exists()
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    run.ok("create", archive, *WEAK)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert "already exists" in one_line_error(run("create", archive, *WEAK), 9)
    run.ok("create", archive, "--force", *WEAK)
    assert "Argon2 memory" in one_line_error(
        run("create", archive, "--force", "--argon2-memory-kib", "4"), 2)
    assert "chunk size" in one_line_error(
        run("create", archive, "--force", "--chunk-size", "5000", *WEAK), 2)
    run.ok("create", archive, "--force", "--chunk-size", "64K", *WEAK)
    assert json.loads(run.ok("info", archive, "--json").out)["chunk_size"] == 65536


# -- the round trip ---------------------------------------------------------------------


def test_ls(run: Runner, box: Path) -> None:
    assert run.ok("ls", box).lines == ["tree/"]
    assert run.ok("ls", box, "tree").lines == [
        "tree/big.bin", "tree/docs/", "tree/empty.txt", "tree/link", "tree/run.sh"]
    rec = run.ok("ls", "-R", box).lines
    assert len(rec) == 9 and "tree/docs/deep/nested/note.txt" in rec
    assert run.ok("ls", box, "tree/big.bin").lines == ["tree/big.bin"]

    long = {line.split()[3]: line for line in run.ok("ls", "-l", box, "tree").lines}
    assert long["tree/docs"].startswith("drwxr-x--- ")
    assert long["tree/run.sh"].startswith("-rwxr-xr-x ")
    assert long["tree/link"].startswith("lrwxrwxrwx ")
    assert long["tree/link"].endswith("tree/link -> docs/deep/nested/note.txt")
    assert f" {len(BIG)} 2020-09-13T12:26:40Z tree/big.bin" in long["tree/big.bin"]
    nested = run.ok("ls", "--long", "-R", box, "tree/docs").lines
    assert nested[-1].startswith("-rw------- 15 ")

    entries = json.loads(run.ok("ls", "--json", "-R", box).out)
    by_path = {e["path"]: e for e in entries}
    assert by_path["tree/empty.txt"]["size"] == 0
    assert by_path["tree/big.bin"]["mtime_ns"] == FILE_MTIME_NS
    assert by_path["tree/link"]["target"] == "docs/deep/nested/note.txt"
    assert by_path["tree/docs"]["type"] == "dir" and by_path["tree/docs"]["mode"] == 0o750

    assert "no such file" in one_line_error(run("ls", box, "nope"), 7)


def test_cat(run: Runner, box: Path) -> None:
    assert run.ok("cat", box, "tree/big.bin").out == BIG
    assert run.ok("cat", box, "/tree/docs/deep/nested/note.txt").out == b"hello, lockbox\n"
    assert run.ok("cat", box, "tree/empty.txt").out == b""
    assert "not a file" in one_line_error(run("cat", box, "tree/docs"), 2)
    one_line_error(run("cat", box, "tree/missing"), 7)


def test_extract(run: Runner, box: Path, src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    r = run.ok("extract", box, "--to", dest)
    assert r.text.startswith("extracted 9 entries, 3,145,884 bytes")
    out = dest / "tree"
    for rel in ["big.bin", "empty.txt", "run.sh", "docs/deep/nested/note.txt"]:
        a, b = src / rel, out / rel
        assert a.read_bytes() == b.read_bytes()
        assert stat.S_IMODE(a.stat().st_mode) == stat.S_IMODE(b.stat().st_mode)
        assert b.stat().st_mtime_ns == FILE_MTIME_NS
    for rel in ["docs", "docs/deep", "docs/deep/nested"]:
        st = (out / rel).stat()
        assert st.st_mtime_ns == DIR_MTIME_NS
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE((src / rel).stat().st_mode)
    assert os.readlink(out / "link") == "docs/deep/nested/note.txt"
    assert (out / "link").read_text() == "hello, lockbox\n"

    # Existing files are kept unless --overwrite.
    (out / "run.sh").write_text("changed")
    assert "refusing to overwrite" in one_line_error(run("extract", box, "--to", dest), 9)
    assert (out / "run.sh").read_text() == "changed"
    run.ok("extract", box, "tree/run.sh", "--to", dest, "--overwrite", "-q")
    assert (out / "run.sh").read_bytes() == (src / "run.sh").read_bytes()

    # Only some paths; -C is --to.
    part = tmp_path / "part"
    r = run.ok("extract", box, "tree/docs", "-C", part, "-q")
    assert r.out == b""
    assert (part / "tree/docs/deep/nested/note.txt").exists()
    assert not (part / "tree/big.bin").exists()
    one_line_error(run("extract", box, "nope", "--to", part), 7)
    # An OSError the library does not translate: one line, exit 9.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run("extract", box, "--to", blocker), 9)


def test_rm_and_mv(run: Runner, box: Path) -> None:
    assert "not empty" in one_line_error(run("rm", box, "tree/docs"), 2)
    assert run.ok("rm", box, "tree/docs", "-r").text.strip() == "removed 4 entries"
    run.ok("rm", box, "tree/empty.txt", "tree/run.sh", "-q")
    one_line_error(run("rm", box, "tree/empty.txt"), 7)
    run.ok("mv", box, "tree/big.bin", "data/big.bin")
    run.ok("mv", box, "tree/link", "data")  # into a directory
    assert run.ok("ls", "-R", box).lines == [
        "data/", "data/big.bin", "data/link", "tree/"]
    assert run.ok("cat", box, "data/big.bin").out == BIG
    assert "exists" in one_line_error(run("mv", box, "tree", "data/big.bin"), 2)
    run.ok("verify", box)


def test_info_and_verify(run: Runner, box: Path) -> None:
    info = json.loads(run.ok("info", box, "--json").out)
    assert (info["files"], info["dirs"], info["symlinks"]) == (4, 4, 1)
    assert info["file_bytes"] == len(BIG) + 15 + 18
    # the tree's small files are packed (FORMAT §10): a commit with packs is version 3
    assert info["generation"] == 2 and info["format_version"] == PACKED_FORMAT_VERSION
    assert info["unlocked_slot"] == info["slots"][0]["slot_id"]
    text = run.ok("info", box).text
    assert "4 files, 4 directories, 1 symlinks" in text and "unlocked with this" in text

    r = run.ok("verify", box)
    assert r.text.startswith("ok: generation 2, 4 files")
    report = json.loads(run.ok("verify", box, "--json").out)
    assert report["ok"] and report["files_checked"] == 4 and report["problems"] == []
    assert run.ok("verify", "-q", box).out == b""


def test_verify_damage(run: Runner, box: Path) -> None:
    data = bytearray(box.read_bytes())
    data[SUPERBLOCK_SIZE + len(BIG) // 2] ^= 0x40  # inside big.bin's chunks
    box.write_bytes(data)
    r = run("verify", box)
    assert r.rc == 5 and "Traceback" not in r.err
    assert r.err.splitlines() and all(
        line.startswith("lockbox: verify: ") for line in r.err.splitlines())
    assert "tree/big.bin" in r.err
    r = run("verify", "--json", box)
    assert r.rc == 5 and json.loads(r.out)["ok"] is False
    one_line_error(run("cat", box, "tree/big.bin"), 5)


def test_env(run: Runner, box: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run.ok("env", "set", box, "PLAIN", "from-argv")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00binary\nvalue\xff")
    run.ok("env", "set", box, "FILE", "--from-file", secret)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"piped\n")))
    run.ok("env", "set", box, "PIPED")
    assert run.ok("env", "get", box, "PLAIN").out == b"from-argv"
    assert run.ok("env", "get", box, "FILE").out == b"\x00binary\nvalue\xff"
    assert run.ok("env", "get", box, "PIPED").out == b"piped\n"
    assert run.ok("env", "ls", box).lines == ["FILE", "PIPED", "PLAIN"]
    values = run.ok("env", "ls", "--values", box).text
    assert "PLAIN=from-argv" in values
    one_line_error(run("env", "set", box, "X", "v", "--from-file", secret), 2)
    run.ok("env", "rm", box, "PLAIN")
    one_line_error(run("env", "get", box, "PLAIN"), 7)
    one_line_error(run("env", "rm", box, "PLAIN"), 7)
    assert run.ok("env", "ls", box).lines == ["FILE", "PIPED"]
    assert run("env").rc == 2


# -- keys ------------------------------------------------------------------------------


def _slots(run: Runner, archive: Path) -> list[dict[str, object]]:
    slots: list[dict[str, object]] = json.loads(run.ok("keys", "ls", "--json", archive).out)
    return slots


def test_keys_add_password(run: Runner, box: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    new = tmp_path / "new-pw"
    new.write_text("second password\n")
    r = run.ok("keys", "add-password", box, "--new-password-file", new, *WEAK)
    assert r.text.startswith("added password slot ")
    monkeypatch.setenv("LOCKBOX_NEW_PASSWORD", "third password")
    run.ok("keys", "add-password", box, *WEAK, "-q")
    slots = _slots(run, box)
    assert [s["kind"] for s in slots] == ["password"] * 3
    assert [s["unlocked"] for s in slots] == [True, False, False]
    for pw in ("second password", "third password"):
        monkeypatch.setenv("LOCKBOX_PASSWORD", pw)
        assert run.ok("ls", box).lines == ["tree/"]
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    monkeypatch.delenv("LOCKBOX_NEW_PASSWORD")
    assert "LOCKBOX_NEW_PASSWORD" in one_line_error(
        run("keys", "add-password", box, *WEAK), 2)


def test_keygen_and_recipients(run: Runner, box: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    ident = tmp_path / "me.id"
    recipient = run.ok("keygen", "-o", ident).text.strip()
    assert recipient.startswith("lockbox-recipient-1:")
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    lines = ident.read_text().splitlines()
    assert lines[0].startswith("# ") and "created" in lines[0]
    assert lines[1] == f"# recipient: {recipient}"
    assert lines[2].startswith("LOCKBOX-IDENTITY-1:") and len(lines) == 3
    assert "already exists" in one_line_error(run("keygen", "-o", ident), 2)
    assert ident.read_text().splitlines() == lines
    assert run.ok("keygen", "--recipient-of", ident).text.strip() == recipient
    assert run("keygen").rc == 2

    # An identity file is a secret: refuse it where a recipient is expected.
    assert "keygen --recipient-of" in one_line_error(
        run("keys", "add-recipient", box, ident), 2)
    rfile = tmp_path / "me.recipient"
    rfile.write_text(f"# mine\n{recipient}\n")
    r = run.ok("keys", "add-recipient", box, rfile)
    assert r.text.startswith("added recipient slot ")
    # Recipient slots do not record who they are for (privacy), so a second slot for
    # the same recipient cannot be detected: it is simply another slot.
    other = run.ok("keygen", "-o", tmp_path / "other.id").text.strip()
    run.ok("keys", "add-recipient", box, other)
    assert [s["kind"] for s in _slots(run, box)] == ["password", "recipient", "recipient"]

    monkeypatch.delenv("LOCKBOX_PASSWORD")
    assert run.ok("--identity", ident, "cat", box, "tree/empty.txt").out == b""
    assert run.ok("ls", box, "-i", tmp_path / "other.id").lines == ["tree/"]
    monkeypatch.setenv("LOCKBOX_IDENTITY", str(ident))
    assert run.ok("keys", "ls", box).text.count("unlocked with this") == 1
    # An identity that is not a recipient of the archive.
    stranger = tmp_path / "stranger.id"
    run.ok("keygen", "-o", stranger, "-q")
    assert "not a recipient" in one_line_error(run("ls", box, "--identity", stranger), 6)
    # --force replaces the identity (and keeps 0600).
    ident.chmod(0o644)
    assert run.ok("keygen", "-o", ident, "--force").text.strip() != recipient
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    bad = tmp_path / "bad.id"
    bad.write_text("nothing here\n")
    assert "not a lockbox identity" in one_line_error(run("ls", box, "-i", bad), 2)


def test_create_for_recipient_only(run: Runner, tmp_path: Path, src: Path) -> None:
    ident = tmp_path / "me.id"
    recipient = run.ok("keygen", "-o", ident, "-q").text.strip()
    archive = tmp_path / "r.lbox"
    run.ok("-i", ident, "add", archive, src / "run.sh", "--create", "--no-password",
           "--recipient", recipient)
    assert run.ok("ls", archive, "-i", ident).lines == ["run.sh"]
    slots = json.loads(run.ok("keys", "ls", archive, "-i", ident, "--json").out)
    assert [s["kind"] for s in slots] == ["recipient"]


def test_keys_rm(run: Runner, box: Path, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    new = tmp_path / "new-pw"
    new.write_text("other")
    run.ok("keys", "add-password", box, "--new-password-file", new, *WEAK)
    mine, other = (int(s["slot_id"]) for s in _slots(run, box))  # type: ignore[call-overload]
    assert "unlocked with" in one_line_error(run("keys", "rm", box, str(mine)), 2)
    one_line_error(run("keys", "rm", box, "12345"), 7)
    assert run.ok("keys", "rm", box, str(other)).text.startswith(f"removed key slot {other}\n")
    # Gone from both superblock slots, not only from the newest commit.
    slots = decode_superblock(box.read_bytes()[:SUPERBLOCK_SIZE])
    assert len(slots) == 2
    for s in slots:
        assert isinstance(s.keydir, bytes)
        assert [k.slot_id for k in decode_keydir(s.keydir)] == [mine]
    monkeypatch.setenv("LOCKBOX_PASSWORD", "other")
    one_line_error(run("ls", box), 6)
    # Removing the slot one unlocked with works with --force (another slot remains).
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    run.ok("keys", "add-password", box, "--new-password-file", new, *WEAK, "-q")
    run.ok("keys", "rm", box, str(mine), "--force")
    one_line_error(run("ls", box), 6)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "other")
    assert run.ok("ls", box).lines == ["tree/"]
    (last,) = (int(s["slot_id"]) for s in _slots(run, box))  # type: ignore[call-overload]
    assert "last key slot" in one_line_error(run("keys", "rm", box, str(last), "--force"), 2)


# -- adding ------------------------------------------------------------------------------


def test_add_names_and_create(run: Runner, tmp_path: Path, src: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    archive = src / "inside.lbox"  # the archive lies inside the tree being added
    one_line_error(run("add", archive, src / "run.sh"), 12)  # missing, no --create
    r = run.ok("add", archive, src, src / "run.sh", "--create", *WEAK)
    assert "skipping" in r.err and "archive being written" in r.err
    assert run.ok("ls", archive).lines == ["run.sh", "src/"]
    assert "src/inside.lbox" not in run.ok("ls", "-R", archive).lines
    run.ok("add", archive, src / "docs", "--to", "/a/b/", "-q")
    assert run.ok("ls", archive, "a/b").lines == ["a/b/docs/"]
    cwd = os.getcwd()
    try:
        os.chdir(src / "docs")
        run.ok("add", archive, ".", "--to", "dot", "-q")
    finally:
        os.chdir(cwd)
    assert run.ok("ls", archive, "dot").lines == ["dot/deep/"]
    # A failed add changes nothing.
    before = archive.read_bytes()
    assert "cannot read" in one_line_error(
        run("add", archive, src / "run.sh", tmp_path / "missing"), 9)
    assert archive.read_bytes() == before
    clash = tmp_path / "clash" / "src"  # a file where the archive has a directory
    clash.parent.mkdir()
    clash.write_text("x")
    assert "is a directory" in one_line_error(run("add", archive, clash), 2)


def test_add_progress_bar(run: Runner, tmp_path: Path, src: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    monkeypatch.setattr(cli, "_stderr_tty", lambda: True)
    archive = tmp_path / "p.lbox"
    run.ok("create", archive, *WEAK)
    r = run.ok("add", archive, src)
    assert r.text.startswith("added 9 entries")
    assert "adding" in r.err  # tqdm drew on stderr
    run.ok("extract", archive, "--to", tmp_path / "o1")
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm missing: no bar, no error
    r = run.ok("add", archive, src / "big.bin", "--to", "again")
    assert r.err == ""
    assert run.ok("add", archive, src / "run.sh", "--to", "q", "-q").out == b""
    assert run.ok("-q", "add", archive, src / "run.sh", "--to", "q2").out == b""


# -- secrets and errors ------------------------------------------------------------------


def test_password_sources(run: Runner, box: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKBOX_PASSWORD")
    msg = one_line_error(run("ls", box), 2)
    assert "LOCKBOX_PASSWORD" in msg and "--password-file" in msg
    pwfile = tmp_path / "pw"
    pwfile.write_text(PW + "\nsecond line is ignored\n")
    assert run.ok("--password-file", pwfile, "ls", box).lines == ["tree/"]
    assert run.ok("ls", box, "--password-file", pwfile).lines == ["tree/"]
    pwfile.write_text(PW + "\r\n")
    assert run.ok("ls", box, "--password-file", pwfile).lines == ["tree/"]
    pwfile.write_text("")
    assert "empty" in one_line_error(run("ls", box, "--password-file", pwfile), 2)
    one_line_error(run("ls", box, "--password-file", tmp_path / "nope"), 2)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "wrong")
    msg = one_line_error(run("ls", box), 6)
    assert "wrong password" in msg


def test_prompts_on_a_terminal(run: Runner, box: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKBOX_PASSWORD")
    monkeypatch.setattr(cli, "_stdin_tty", lambda: True)
    answers: list[str] = []
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": answers.pop(0))
    answers[:] = ["wrong", PW]
    r = run.ok("ls", box)
    assert r.lines == ["tree/"] and "try again" in r.err and not answers
    answers[:] = ["a", "b", "c"]
    r = run("ls", box)
    assert r.rc == 6 and r.err.splitlines()[-1].startswith("lockbox: wrong password")
    archive = tmp_path / "t.lbox"
    answers[:] = ["new", "different"]
    assert "do not match" in one_line_error(run("create", archive, *WEAK), 2)
    answers[:] = ["new", "new"]
    run.ok("create", archive, *WEAK)
    answers[:] = ["new", "another", "another"]
    run.ok("keys", "add-password", archive, *WEAK)
    answers[:] = ["another", "value"]
    run.ok("env", "set", archive, "K")
    answers[:] = ["new"]
    assert run.ok("env", "get", archive, "K").out == b"value"


def test_bad_archives(run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    missing = tmp_path / "missing.lbox"
    assert "missing.lbox" in one_line_error(run("ls", missing), 12)
    monkeypatch.delenv("LOCKBOX_PASSWORD")  # the missing file is reported first
    one_line_error(run("ls", missing), 12)
    junk = tmp_path / "junk.lbox"
    junk.write_bytes(os.urandom(20000))
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    assert "not a lockbox" in one_line_error(run("info", junk), 3)
    junk.write_text("hello\n")
    one_line_error(run("verify", junk), 3)
    one_line_error(run("ls", tmp_path), 12)


def test_interrupt_and_debug(run: Runner, box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_open_any", interrupted)
    assert one_line_error(run("ls", box), 130) == "lockbox: interrupted"
    monkeypatch.undo()
    monkeypatch.setenv("LOCKBOX_PASSWORD", "wrong")
    monkeypatch.setenv("LOCKBOX_DEBUG", "1")
    r = run("ls", box)
    assert r.rc == 6 and "Traceback" in r.err
    assert r.err.splitlines()[-1].startswith("lockbox: wrong password")


# -- HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def served(box: Path) -> Iterator[str]:
    with static_server(box.parent) as base:
        yield f"{base}/{box.name}"


def test_read_only_commands_over_http(run: Runner, box: Path, served: str, tmp_path: Path,
                                      src: Path) -> None:
    run.ok("env", "set", box, "TOKEN", "t0k3n")
    assert run.ok("ls", "-R", served).lines == run.ok("ls", "-R", box).lines
    assert run.ok("ls", "-l", served, "tree").lines == run.ok("ls", "-l", box, "tree").lines
    assert run.ok("cat", served, "tree/big.bin").out == BIG
    run.ok("extract", served, "tree/docs", "--to", tmp_path / "web")
    assert (tmp_path / "web/tree/docs/deep/nested/note.txt").read_bytes() == (
        src / "docs/deep/nested/note.txt").read_bytes()
    info = json.loads(run.ok("info", "--json", served).out)
    assert info["archive_size"] == box.stat().st_size
    assert json.loads(run.ok("verify", "--json", served).out)["ok"]
    assert run.ok("env", "get", served, "TOKEN").out == b"t0k3n"
    assert run.ok("env", "ls", served).lines == ["TOKEN"]
    assert len(json.loads(run.ok("keys", "ls", "--json", served).out)) == 1
    for argv in (["rm", served, "tree"], ["env", "rm", served, "TOKEN"],
                 ["add", served, str(src)]):
        assert "read-only" in one_line_error(run(*argv), 2)
    one_line_error(run("ls", served + ".missing"), 12)


# -- a real process ------------------------------------------------------------------------


def _proc(*argv: str | os.PathLike[str], password: str | None = PW, debug: bool = False,
          **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run_lockbox(*argv, password=password, debug=debug, **kw)


def test_subprocess_round_trip(tmp_path: Path, src: Path) -> None:
    archive = tmp_path / "s.lbox"
    p = _proc("create", archive, *WEAK)
    assert p.returncode == 0, p.stderr
    p = _proc("add", archive, src, "-q")
    assert p.returncode == 0 and p.stdout == b"" and p.stderr == b""
    p = _proc("cat", archive, "src/big.bin")
    assert p.returncode == 0 and p.stdout == BIG
    p = _proc("ls", archive, "-R")
    assert b"src/docs/deep/nested/note.txt\n" in p.stdout
    p = _proc("--version")
    assert p.stdout.strip() == f"lockbox {lockbox.__version__}".encode()
    m = subprocess.run([sys.executable, "-m", "lockbox.cli", "ls", archive], timeout=60,
                       env={**os.environ, "LOCKBOX_PASSWORD": PW}, capture_output=True,
                       check=False)
    assert m.returncode == 0 and m.stdout == b"src/\n"


def test_subprocess_errors(tmp_path: Path, src: Path) -> None:
    archive = tmp_path / "s.lbox"
    assert _proc("create", archive, *WEAK).returncode == 0
    assert _proc("add", archive, src / "big.bin", "-q").returncode == 0
    for argv, password, rc in ((("ls", archive), "wrong", 6),
                               (("ls", archive), None, 2),
                               (("ls", tmp_path / "missing"), PW, 12)):
        p = _proc(*argv, password=password)
        assert p.returncode == rc
        lines = p.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lockbox: "), p.stderr
    p = _proc("ls", archive, password="wrong", debug=True)
    assert p.returncode == 6 and b"Traceback" in p.stderr


def test_subprocess_broken_pipe(tmp_path: Path, src: Path) -> None:
    archive = tmp_path / "s.lbox"
    assert _proc("create", archive, *WEAK).returncode == 0
    assert _proc("add", archive, src / "big.bin", "-q").returncode == 0
    env = {**os.environ, "LOCKBOX_PASSWORD": PW}
    proc = subprocess.Popen([*lockbox_command(), "cat", str(archive), "big.bin"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(10) == BIG[:10]
        proc.stdout.close()
        err = proc.stderr.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert err == b""
    assert rc == cli.EXIT_BROKEN_PIPE
