"""Archive-controlled strings never reach the terminal raw: every human line of the CLI
escapes control, format (bidi) and separator characters like ``ls -b``; ``--json`` stays
exact. The hostile archives are made with the real writer (it accepts any UTF-8 name
without NUL or '/': newline, ESC, BEL, U+202E... are all valid names)."""

from __future__ import annotations

import io
import json
import os
import random
import re
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lockbox
from cli_helpers import Runner, one_line_error, run_lockbox
from lockbox.cli import escape_controls
from lockbox.formats.lbox.wire.constants import SUPERBLOCK_SIZE

PW = "pw"
BIG = random.Random(7).randbytes(65536)
# name -> what a terminal shows instead
FILES = {
    "evil\nall-clear.txt": "evil\\nall-clear.txt",
    "\x1b]0;title\x07": "\\x1b]0;title\\x07",
    "\x1b[2J": "\\x1b[2J",
    "gnp.\u202eexe": "gnp.\\u202eexe",
    "dir\u2066x\u2069/in\u2028ner\r": "dir\\u2066x\\u2069/in\\u2028ner\\r",
    "c1\x9b2J\x7f\tz": "c1\\u009b2J\\x7f\\tz",
    "back\\nslash": "back\\\\nslash",  # a real backslash: not confused with a newline
    "caf\u00e9 \u65e5\u672c \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645": (
        "caf\u00e9 \u65e5\u672c \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
}
LINK = ("link\x1b[31m", "tar\x1b[2Jget\n")
ENV = ("TOKEN\x1b]0;x\x07", b"line1\nline2\x1b[2J\xff")
# Raw sequences that must never be printed (UTF-8): controls, C1 CSI, bidi, separators.
FORBIDDEN = [b"\x1b", b"\x07", b"\x7f", b"\r", b"\t", "\u009b".encode(), "\u202e".encode(),
             "\u2066".encode(), "\u2069".encode(), "\u2028".encode(), b"\xff"]


def assert_clean(*outputs: bytes | str) -> None:
    for out in outputs:
        data = out.encode("utf-8", "surrogateescape") if isinstance(out, str) else out
        for raw in FORBIDDEN:
            assert raw not in data, (raw, data)
        for line in data.splitlines():
            assert not line.startswith(b"all-clear"), data  # no forged line


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
def evil(tmp_path: Path, weak_argon2: lockbox.Argon2Params) -> Path:
    path = tmp_path / "evil.lbox"
    box = lockbox.create(path, password=PW, argon2=weak_argon2, chunk_size=4096)
    with box:
        with box.writer() as w:
            w.add_bytes("big\x1b[2J\n.bin", BIG)  # first: the damage below hits it
        with box.writer() as w:
            for name in FILES:
                w.add_bytes(name, b"x")
            w.symlink(*LINK)
            w.env_set(*ENV)
    return path


def test_escape_controls_examples() -> None:
    for raw, shown in FILES.items():
        assert escape_controls(raw) == shown
    assert escape_controls("plain/name.txt") == "plain/name.txt"
    assert escape_controls("a\\b") == "a\\\\b"
    assert escape_controls("\u00ad\ufeff\u200b\u2029") == "\\u00ad\\ufeff\\u200b\\u2029"
    assert escape_controls("tag\U000e0041") == "tag\\U000e0041"
    assert escape_controls("bad\udcff\udc80") == "bad\\xff\\x80"  # surrogateescape bytes
    assert escape_controls("lone\ud800") == "lone\\ud800"
    assert escape_controls("\u00a0nbsp \U0001f600 \u200d") == "\u00a0nbsp \U0001f600 \u200d"


_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|(.))", re.S)


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        byte, bmp, astral, named = m.groups()
        if byte is not None:
            b = int(byte, 16)
            return chr(b) if b < 0x80 else chr(0xDC00 + b)
        if bmp or astral:
            return chr(int(bmp or astral, 16))
        return {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}[named]

    return _ESCAPE.sub(one, text)


@given(st.text(st.characters(codec=None)))
def test_escape_controls_is_safe_and_unambiguous(text: str) -> None:
    shown = escape_controls(text)
    for ch in shown:
        assert ch in "\u200c\u200d" or unicodedata.category(ch) not in (
            "Cc", "Cf", "Cs", "Zl", "Zp"), repr(shown)
    assert _unescape(shown) == text  # so distinct names never look the same


def test_ls_short_long_recursive(run: Runner, evil: Path) -> None:
    shown = {v.split("/")[0] + ("/" if "/" in v else "") for v in FILES.values()}
    r = run.ok("ls", evil)
    assert_clean(r.out, r.err)
    assert set(r.lines) == shown | {"big\\x1b[2J\\n.bin", "link\\x1b[31m"}
    assert len(r.lines) == len(FILES) + 2  # one line per entry, none forged

    r = run.ok("ls", evil, "-R")
    assert_clean(r.out, r.err)
    assert "dir\\u2066x\\u2069/in\\u2028ner\\r" in r.lines
    assert len(r.lines) == len(FILES) + 3

    r = run.ok("ls", evil, "-l", "-R")
    assert_clean(r.out, r.err)
    assert len(r.lines) == len(FILES) + 3
    assert r.lines[-1].endswith(" link\\x1b[31m -> tar\\x1b[2Jget\\n")
    assert any(line.endswith(" evil\\nall-clear.txt") for line in r.lines)

    r = run.ok("ls", evil, "--long", "dir\u2066x\u2069")  # an option after the path
    assert_clean(r.out, r.err)
    assert r.lines[0].endswith(" dir\\u2066x\\u2069/in\\u2028ner\\r")


def test_json_is_exact(run: Runner, evil: Path) -> None:
    r = run.ok("ls", evil, "-R", "--json")
    entries = json.loads(r.out)
    by_path = {e["path"]: e for e in entries}
    assert set(FILES) <= set(by_path)
    assert by_path[LINK[0]]["target"] == LINK[1]
    assert r.out.isascii()  # json.dumps escapes control and non-ASCII characters itself
    r = run.ok("ls", evil, "-R", "--json", "-l")
    assert json.loads(r.out) == entries


def test_other_commands(run: Runner, evil: Path, tmp_path: Path) -> None:
    r = run.ok("env", "ls", evil)
    assert_clean(r.out, r.err)
    assert r.lines == ["TOKEN\\x1b]0;x\\x07"]
    r = run.ok("env", "ls", evil, "--values")
    assert_clean(r.out, r.err)
    assert r.lines == ["TOKEN\\x1b]0;x\\x07=line1\\nline2\\x1b[2J\\xff"]
    assert run.ok("env", "get", evil, ENV[0]).out == ENV[1]  # raw on request
    assert run.ok("cat", evil, "evil\nall-clear.txt").out == b"x"

    # Errors that embed archive paths: one escaped line.
    for argv, rc in ((["cat", evil, "evil\nmissing\x1b[2J"], 7),
                     (["ls", evil, "\x1b]0;gone\x07"], 7),
                     (["rm", evil, "\u202egone"], 7),
                     (["cat", evil, "dir\u2066x\u2069"], 2)):
        r = run(*argv)
        one_line_error(r, rc)
        assert_clean(r.out, r.err)

    dest = tmp_path / "out"
    r = run.ok("extract", evil, "--to", dest)
    assert_clean(r.out, r.err)
    assert (dest / "evil\nall-clear.txt").read_bytes() == b"x"
    r = run("extract", evil, "\x1b[2J", "--to", dest)  # exists: refused
    one_line_error(r, 9)
    assert_clean(r.out, r.err)
    assert "\\x1b[2J" in r.err

    r = run.ok("info", evil)
    assert_clean(r.out, r.err)


def test_verify_and_recover_reports(run: Runner, evil: Path, tmp_path: Path) -> None:
    data = bytearray(evil.read_bytes())
    data[SUPERBLOCK_SIZE + len(BIG) // 2] ^= 0x01  # inside the big file's chunks
    evil.write_bytes(data)
    r = run("verify", evil)
    assert r.rc == 5
    assert_clean(r.out, r.err)
    assert "big\\x1b[2J\\n.bin" in r.err
    problems = json.loads(run("verify", evil, "--json").out)["problems"]
    assert any("big\x1b[2J\n.bin" in p for p in problems)  # exact in JSON

    r = run("recover", evil, "-o", tmp_path / "saved.lbox")
    assert r.rc == 5
    assert_clean(r.out, r.err)
    assert r.lines[0].startswith("partial  big\\x1b[2J\\n.bin  (")
    report = json.loads(run("recover", evil, "--json").out)
    assert {f["path"] for f in report["entries"]} >= set(FILES)
    r = run.ok("ls", tmp_path / "saved.lbox", "-R")
    assert_clean(r.out, r.err)
    assert "evil\\nall-clear.txt" in r.lines


def test_host_names(run: Runner, tmp_path: Path, weak_argon2: lockbox.Argon2Params) -> None:
    """Undecodable and control-character host file names in add's messages."""
    host = tmp_path / "h"
    host.mkdir()
    os.mkfifo(host / "fifo\x1b[2J\u202e")
    (host / "fine\x1b]0;t\x07").write_bytes(b"ok")
    archive = tmp_path / "h.lbox"
    lockbox.create(archive, password=PW, argon2=weak_argon2).close()
    r = run.ok("add", archive, host)
    assert_clean(r.out, r.err)
    assert "skipping " in r.err and "fifo\\x1b[2J\\u202e" in r.err
    assert run.ok("ls", archive, "-R").lines == ["h/", "h/fine\\x1b]0;t\\x07"]
    bad = tmp_path / os.fsdecode(b"bad\xff\x1b[2J")  # not UTF-8: refused, in one line
    bad.write_bytes(b"x")
    r = run("add", archive, bad)
    assert r.rc != 0
    one_line_error(r, r.rc)
    assert_clean(r.out, r.err)
    assert "bad" in r.err


def test_real_process(evil: Path) -> None:
    """The real entry point: the bytes that reach a terminal."""
    for argv in (["ls", evil], ["ls", evil, "-l", "-R"], ["env", "ls", evil, "--values"],
                 ["cat", evil, "nope\x1b[2J\n"]):
        p = run_lockbox(*argv, password=PW)
        assert_clean(p.stdout, p.stderr)
        assert p.stdout or p.stderr
    p = run_lockbox("ls", evil, "-R", "--json", password=PW)
    assert {e["path"] for e in json.loads(p.stdout)} >= set(FILES)



def test_extract_skip_lines(run: Runner, tmp_path: Path,
                            weak_argon2: lockbox.Argon2Params) -> None:
    """An unsafe entry is skipped with one escaped line; the rest is extracted; exit 8."""
    archive = tmp_path / "s.lbox"
    with lockbox.create(archive, password=PW, argon2=weak_argon2) as box, box.writer() as w:
        w.symlink("up\x1b[2J\n", "../../\x1b]0;t\x07")
        w.add_bytes("ok\u202e.txt", b"fine")
    r = run("extract", archive, "--to", tmp_path / "out")
    assert r.rc == 8
    assert_clean(r.out, r.err)
    assert r.lines[0].startswith("extracted 1 entries")
    skip, summary = r.err.splitlines()  # the reason is extract.py's wording
    assert skip.startswith("lockbox: skipping up\\x1b[2J\\n: ")
    assert summary == "lockbox: 1 unsafe entry was skipped (the rest was extracted)"
    assert (tmp_path / "out" / "ok\u202e.txt").read_bytes() == b"fine"


def test_json_with_an_undecodable_host_name(run: Runner, evil: Path, tmp_path: Path) -> None:
    """A non-UTF-8 path given on the command line (surrogateescape) cannot break --json:
    it comes out as a \\udcXX escape, and decodes back to the same bytes."""
    out = tmp_path / os.fsdecode(b"saved\xff\x1b.lbox")
    r = run("recover", evil, "-o", out, "--json")
    assert r.rc == 0, r.err
    assert r.out.isascii()
    report = json.loads(r.out)
    assert os.fsencode(report["salvage"]["path"]) == os.fsencode(out)
    r = run.ok("recover", evil, "-o", tmp_path / os.fsdecode(b"again\xff.lbox"))
    assert_clean(r.out, r.err)
    assert "again\\xff.lbox" in r.text
