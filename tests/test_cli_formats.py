"""The CLI on every format (issue 8's must-show): ls/cat/extract/info/verify on ``.uri``
files written by the INDEPENDENT implementation, with no password asked; ``convert``
between directories, ``.uri`` and ``.lbox`` (its output read by the independent strict
reader); damaged and escaping sources refused; a ``.uri`` over HTTP."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import WEAK, Runner, make_tree, one_line_error, static_server
from formats.uri import independent as ind
from formats.uri.independent import Entry
from lockbox import cli

BIG = os.urandom(2 * 1024 * 1024 + 77)
ENTRIES = [
    Entry(b"DIR ", b"docs", 0o750, b"alice", b"staff"),
    Entry(b"FILE", b"docs/a.txt", 0o640, b"alice", b"staff", b"alpha\n"),
    Entry(b"DIR ", b"docs/sub", 0o755),
    Entry(b"FILE", b"docs/sub/big.bin", 0o600, data=BIG),
    Entry(b"SLNK", b"docs/link", 0o777, data=b"a.txt"),
    Entry(b"FILE", b"run.sh", 0o755, data=b"#!/bin/sh\n"),
    Entry(b"FILE", b"odd\xffname\n", 0o644, data=b"odd"),
]


@pytest.fixture(autouse=True)
def no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret anywhere, and a 'terminal' whose prompt fails the test if asked."""
    for name in ("LOCKBOX_PASSWORD", "LOCKBOX_IDENTITY", "LOCKBOX_NEW_PASSWORD",
                 "LOCKBOX_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.setattr(cli, "_stdin_tty", lambda: True)

    def asked(prompt: str = "") -> str:
        raise AssertionError(f"prompted: {prompt!r}")

    monkeypatch.setattr(cli.getpass, "getpass", asked)


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    return Runner(capsysbinary)


@pytest.fixture
def uri(tmp_path: Path) -> Path:
    path = tmp_path / "x.uri"
    path.write_bytes(ind.write(ENTRIES))
    return path


def _files(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in root.rglob("*"):
        st = os.lstat(p)
        rel = os.fsdecode(bytes(p.relative_to(root)))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def test_ls_cat_info_verify_of_a_uri(run: Runner, uri: Path) -> None:
    assert run.ok("ls", uri, "-R").lines == [
        "docs/", "docs/a.txt", "docs/link", "docs/sub/", "docs/sub/big.bin",
        "odd\\xffname\\n", "run.sh"]
    long = run.ok("ls", "-l", uri, "docs").lines
    assert long[0].split() == ["-rw-r-----", "alice", "staff", "6", "-", "docs/a.txt"]
    assert long[1].endswith("docs/link -> a.txt")
    entries = json.loads(run.ok("ls", "--json", uri, "docs/a.txt").out)
    assert entries[0]["owner"] == "alice" and entries[0]["mode"] == 0o640
    assert run.ok("cat", uri, "docs/sub/big.bin").out == BIG
    info = run.ok("info", uri).text
    assert "format:      uri archive (uri)" in info and "encrypted:   no" in info
    assert "entries:     7 (4 files, 2 directories, 1 symlinks)" in info
    data = json.loads(run.ok("info", "--json", uri).out)
    assert data["format"] == "uri" and data["entries"] == 7 and not data["encrypted"]
    assert run.ok("verify", uri).text == f"ok: 7 entries ({BIG.__len__() / 1048576:.1f} MiB) " \
        "checked\n"
    assert json.loads(run.ok("verify", "--json", uri).out)["ok"]
    assert "works on .lbox archives only" in one_line_error(run("env", "ls", uri), 2)
    assert "works on .lbox archives only" in one_line_error(run("rm", uri, "run.sh"), 2)
    # .lbox-only options are refused, not silently ignored
    line = one_line_error(run("ls", uri, "--generation", "2", "--max-argon2-time", "3"), 2)
    assert "--generation, --max-argon2-time applies to .lbox archives only" in line


def test_extract_a_uri(run: Runner, uri: Path, tmp_path: Path) -> None:
    dest = tmp_path / "D"
    r = run.ok("extract", uri, "--to", dest)
    assert "extracted 7 entries" in r.text
    assert "note: 7 entries have no modification time" in r.err
    assert "owner/group names of 2 entries not applied" in r.err
    got = _files(dest)
    assert got["docs"] == ("dir", 0o750) and got["docs/sub/big.bin"] == ("file", 0o600, BIG)
    assert got["docs/link"] == ("link", "a.txt") and got["run.sh"][1] == 0o755
    assert got[os.fsdecode(b"odd\xffname\n")] == ("file", 0o644, b"odd")
    assert abs(os.stat(dest / "run.sh").st_mtime - os.stat(uri).st_mtime) < 3600  # not 1970


def test_convert_dir_to_uri_to_lbox_and_back(run: Runner, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path, BIG)
    r = run.ok("convert", src, tmp_path / "x.uri")
    assert "converted 8 entries" in r.text  # the tree's 9 but its root
    assert "note: modification times of 8 entries not kept" in r.err
    strict = ind.read((tmp_path / "x.uri").read_bytes())  # the independent reader
    assert {e.path.decode() for e in strict} == {os.fsdecode(bytes(p.relative_to(src)))
                                                 for p in src.rglob("*")}
    pwfile = tmp_path / "pw"
    pwfile.write_text("new pw\n")
    # the source needs no password: --password-file is the new archive's, as for create
    r = run.ok("convert", tmp_path / "x.uri", tmp_path / "y.lbox", "--password-file",
               pwfile, *WEAK)
    assert "owner/group names of 8 entries not kept" in r.err
    monkeypatch.setenv("LOCKBOX_PASSWORD", "new pw")
    assert "tree" not in run.ok("ls", "-R", tmp_path / "y.lbox").text
    r = run.ok("convert", tmp_path / "y.lbox", tmp_path / "z.uri")
    r = run.ok("convert", tmp_path / "z.uri", tmp_path / "D")
    assert _files(tmp_path / "D") == _files(src)


def test_convert_lbox_to_uri_to_dir_round_trip(run: Runner, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path, BIG)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "pw")
    run.ok("create", tmp_path / "x.lbox", *WEAK)
    run.ok("add", tmp_path / "x.lbox", f"{src}/")
    r = run.ok("convert", tmp_path / "x.lbox", tmp_path / "y.uri")
    ind.read((tmp_path / "y.uri").read_bytes())
    r = run.ok("convert", tmp_path / "y.uri", tmp_path / "D")
    assert r.rc == 0
    assert _files(tmp_path / "D") == _files(src)
    # a .lbox to a .lbox: the source's password, and a new one for the target
    newpw = tmp_path / "newpw"
    newpw.write_text("other\n")
    run.ok("convert", tmp_path / "x.lbox", tmp_path / "copy.lbox", "--new-password-file",
           newpw, *WEAK)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "other")
    assert len(run.ok("ls", "-R", tmp_path / "copy.lbox").lines) == 8


def test_a_new_lbox_needs_a_new_password(run: Runner, tmp_path: Path, uri: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_stdin_tty", lambda: False)
    msg = one_line_error(run("convert", uri, tmp_path / "y.lbox"), 2)
    assert "--new-password-file" in msg
    assert not (tmp_path / "y.lbox").exists()
    answers = ["secret", "secret"]
    monkeypatch.setattr(cli, "_stdin_tty", lambda: True)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": answers.pop(0))
    r = run("convert", uri, tmp_path / "y.lbox", *WEAK)
    assert r.rc == 8 and not answers  # the name that is not UTF-8 cannot go into a .lbox
    assert "skipping odd\\xffname\\n: cannot be stored in a .lbox archive" in r.err
    assert r.err.splitlines()[-1] == ("lockbox: 1 entry was left out (not storable in the "
                                      "target); the rest was converted")


def test_damaged_and_escaping_sources_are_refused(run: Runner, tmp_path: Path) -> None:
    data = bytearray(ind.write(ENTRIES))
    data[bytes(data).index(BIG[:64]) + 1_000_000] ^= 0x10
    bad = tmp_path / "bad.uri"
    bad.write_bytes(bytes(data))
    work = tmp_path / "work"
    work.mkdir()
    r = run("verify", bad)
    assert r.rc == 5 and "data CRC32 mismatch" in r.err
    assert "CRC32 mismatch" in one_line_error(run("cat", bad, "docs/sub/big.bin"), 5)
    one_line_error(run("convert", bad, work / "y.uri"), 5)
    pwfile = tmp_path / "pw"
    pwfile.write_text("pw\n")
    one_line_error(run("convert", bad, work / "y.lbox", "--new-password-file", pwfile,
                       *WEAK), 5)
    assert os.listdir(work) == []
    one_line_error(run("extract", bad, "--to", work / "D"), 5)
    assert "big.bin" not in os.listdir(work / "D" / "docs" / "sub")
    assert [n for n in os.listdir(work / "D" / "docs" / "sub")] == []
    escaping = tmp_path / "esc.uri"
    escaping.write_bytes(ind.write([Entry(b"FILE", b"ok", data=b"ok"),
                                    Entry(b"FILE", b"../../escaped", data=b"x")]))
    for argv in (("extract", escaping, "--to", work / "E"),
                 ("convert", escaping, work / "e.uri"), ("convert", escaping, work / "F")):
        assert "'..' component" in one_line_error(run(*argv), 8)
    assert sorted(os.listdir(work)) == ["D"]
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_escaping_symlinks_are_skipped_and_reported(run: Runner, tmp_path: Path) -> None:
    path = tmp_path / "links.uri"
    path.write_bytes(ind.write([Entry(b"FILE", b"f", data=b"f"),
                                Entry(b"SLNK", b"out", 0o777, data=b"../outside"),
                                Entry(b"SLNK", b"in", 0o777, data=b"f")]))
    r = run("extract", path, "--to", tmp_path / "D")
    assert r.rc == 8 and "skipping out: symlink target leads outside" in r.err
    assert sorted(os.listdir(tmp_path / "D")) == ["f", "in"]
    r = run("convert", path, tmp_path / "y.uri")
    assert r.rc == 8 and "skipping out: symlink target leads outside the archive's root" in r.err
    assert "1 entry was left out (1 unsafe" in r.err
    assert {e.path for e in ind.read((tmp_path / "y.uri").read_bytes())} == {b"f", b"in"}


def test_convert_usage(run: Runner, tmp_path: Path, uri: Path) -> None:
    help_text = run.ok("convert", "--help").text
    assert "exit status: 0 every entry was converted" in help_text
    assert "8 some entries were left out" in help_text
    assert "--to-format" in one_line_error(run("convert", uri, tmp_path / "y.zip"), 2)
    (tmp_path / "y.uri").write_bytes(b"mine")
    assert "--force" in one_line_error(run("convert", uri, tmp_path / "y.uri"), 2)
    assert (tmp_path / "y.uri").read_bytes() == b"mine"
    run.ok("convert", uri, tmp_path / "y.uri", "--force")
    run.ok("convert", uri, tmp_path / "y.zip", "--to-format", "uri")
    assert ind.read((tmp_path / "y.zip").read_bytes())


def test_ls_a_uri_over_http(run: Runner, uri: Path) -> None:
    with static_server(uri.parent) as base:
        url = f"{base}/{uri.name}"
        assert run.ok("ls", "-R", url).lines == run.ok("ls", "-R", uri).lines
        assert run.ok("cat", url, "docs/a.txt").out == b"alpha\n"
        assert json.loads(run.ok("info", "--json", url).out)["format"] == "uri"
