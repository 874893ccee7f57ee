"""``lockbox share`` (pycore/lockbox/cli_share.py): a link slot added and committed, the
printed link opens the archive with no password, ``keys ls`` lists it, ``keys rm``
revokes it (and redacts its bytes)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import lockbox
from cli_helpers import WEAK, Runner, one_line_error
from lockbox import cli
from lockbox.formats.lbox.keys import LinkSecret

PW = "correct horse battery staple"
VIEWER = "http://127.0.0.1:8000/"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCKBOX_PASSWORD", "LOCKBOX_IDENTITY", "LOCKBOX_VIEWER_URL", "LOCKBOX_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))  # no terminal


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    """``lockbox ...`` in-process."""
    return Runner(capsysbinary)


def test_share_is_a_command() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"share", "vault", "agent"} <= set(sub.choices)


@pytest.fixture
def box(tmp_path: Path, run: Runner, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    path = tmp_path / "my box.lbox"
    run.ok("create", path, *WEAK)
    with lockbox.open(path, password=PW) as b, b.writer() as w:
        w.add_bytes("docs/a.txt", b"hello\n")
    return path


def _fragment(link: str) -> dict[str, str]:
    params = parse_qs(urlsplit(link).fragment, strict_parsing=True)
    return {k: v[0] for k, v in params.items() if len(v) == 1}


def test_share_open_list_revoke(run: Runner, box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run.ok("share", box, "--viewer", VIEWER)
    link, slot_line = r.lines
    assert link.startswith(VIEWER + "#url=")
    frag = _fragment(link)
    assert set(frag) == {"url", "key"}
    # The default archive URL: where `lockbox serve` serves it next to the viewer.
    assert frag["url"] == "http://127.0.0.1:8000/archives/my%20box.lbox"
    assert "the link expects the archive at" in r.err
    slot_id = int(slot_line.split()[2])
    assert f"lockbox keys rm {box} {slot_id}" in slot_line
    key = frag["key"]
    assert LinkSecret.parse(key).text() == key and key.startswith("lbk1-")
    assert key[5:] not in r.err and r.text.count(key[5:]) == 1  # printed once: in the link

    # The link alone opens it: no password anywhere.
    monkeypatch.delenv("LOCKBOX_PASSWORD")
    with lockbox.open(box, link=key) as b:
        assert [e.path for e in b.ls(recursive=True)] == ["docs", "docs/a.txt"]
        assert b.info().unlocked_slot == slot_id
        wrapped = next(s for s in b.view.key_slots if s.slot_id == slot_id).body()
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    slots = json.loads(run.ok("keys", "ls", box, "--json").out)
    assert [s["kind"] for s in slots] == ["password", "link"]
    assert slots[1]["slot_id"] == slot_id and not slots[1]["unlocked"]
    assert f"{slot_id:>10}  link " in run.ok("keys", "ls", box).text

    # Revoked: the link no longer opens, and its slot's bytes are gone from the file.
    assert wrapped in box.read_bytes()
    run.ok("keys", "rm", box, str(slot_id), "-q")
    with pytest.raises(lockbox.WrongKeyError, match="no link slot"):
        lockbox.open(box, link=key)
    assert wrapped not in box.read_bytes()
    with lockbox.open(box, password=PW) as b:
        assert b.verify().ok


def test_links_and_passwords_coexist(run: Runner, box: Path) -> None:
    one = _fragment(run.ok("share", box, "--viewer", VIEWER, "-q").lines[0])["key"]
    out = json.loads(run.ok("share", box, "--viewer", "https://viewer.example/lockbox/",
                            "--archive-url", "https://files.example/a&b=c#d.lbox",
                            "--json").out)
    assert out["link"].startswith("https://viewer.example/lockbox/#url=https://files.example/")
    assert _fragment(out["link"])["url"] == "https://files.example/a&b=c#d.lbox"
    two = _fragment(out["link"])["key"]
    assert one != two
    with lockbox.open(box, link=one) as a, lockbox.open(box, link=two) as b:
        assert a.info().unlocked_slot != b.info().unlocked_slot == out["slot_id"]
    with lockbox.open(box, password=PW) as c:
        assert [s.kind for s in c.info().slots] == ["password", "link", "link"]
    # Revoking one link leaves the other and the password.
    run.ok("keys", "rm", box, str(out["slot_id"]), "-q")
    with pytest.raises(lockbox.WrongKeyError, match="revoked or wrong"):
        lockbox.open(box, link=two)
    lockbox.open(box, link=one).close()
    lockbox.open(box, password=PW).close()


def test_viewer_url_from_the_environment_and_errors(run: Runner, box: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert "LOCKBOX_VIEWER_URL" in one_line_error(run("share", box), 2)
    for bad in ("ftp://host/", "/relative", "http://host/#frag"):
        assert "--viewer" in one_line_error(run("share", box, "--viewer", bad), 2)
    assert "--archive-url" in one_line_error(
        run("share", box, "--viewer", VIEWER, "--archive-url", "x.lbox"), 2)
    monkeypatch.setenv("LOCKBOX_VIEWER_URL", "http://lan-host:8000")
    r = run.ok("share", box, "--archive-url", "http://lan-host:8000/archives/x.lbox")
    assert r.lines[0].startswith("http://lan-host:8000/#url=")
    assert "plain http" in r.err  # a non-loopback http viewer is warned about
    # Nothing was added by the refused attempts: the one link above.
    with lockbox.open(box, password=PW) as b:
        assert [s.kind for s in b.info().slots] == ["password", "link"]


def test_share_needs_a_local_archive_and_its_secret(run: Runner, box: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert "read-only" in one_line_error(
        run("share", "http://127.0.0.1:9/x.lbox", "--viewer", VIEWER), 2)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "wrong")
    one_line_error(run("share", box, "--viewer", VIEWER), lockbox.WrongKeyError.exit_code)


def test_the_viewer_offers_a_link_unlock(run: Runner, box: Path) -> None:
    """The viewer's unlock form (viewer/lbox.py ``unlock_methods``) learns from the
    superblock that the archive takes a link; a link-only archive offers nothing else."""
    from lockbox.viewer.lbox import unlock_methods

    def methods() -> list[str]:
        return unlock_methods(box.read_bytes()[:16384])[0]

    assert methods() == ["password"]
    link = _fragment(run.ok("share", box, "--viewer", VIEWER, "-q").lines[0])["key"]
    assert methods() == ["link", "password"]
    password_slot = json.loads(run.ok("keys", "ls", box, "--json").out)[0]
    assert password_slot["kind"] == "password"
    with lockbox.open(box, link=link) as b, b.writer() as w:
        w.keys.remove(password_slot["slot_id"])
    assert methods() == ["link"]
    lockbox.open(box, link=link).close()
