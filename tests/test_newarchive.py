"""Creating an archive (pycore/lockbox/formats/lbox/write/newarchive.py): published at once,
or unpublished for a writer that commits to it first (docs/FORMAT.md §11 "Creating an
archive"): nothing at the name until the commit is durable, then link + directory fsync."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox import cli
from lockbox.errors import StorageError, UsageError
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.write.newarchive import (
    create_archive,
    discard_unpublished,
    publish_archive,
    unpublished_path,
)

PW = "pw"


def _events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record os.fsync (of which file or directory) and os.link, in order."""
    events: list[tuple[str, str]] = []
    fsync, link = os.fsync, os.link

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_link(src: str, dst: str, **kw: Any) -> None:
        link(src, dst, **kw)
        events.append(("link", f"{src} -> {dst}"))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "link", recording_link)
    return events


def test_unpublished_then_published(tmp_path: Path, weak_argon2: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.lbox"
    events = _events(monkeypatch)
    key = create_archive(path, password=PW, argon2=weak_argon2, unpublished=True)
    tmp = unpublished_path(path)
    assert not path.exists() and events == []  # nothing at the name, nothing fsynced
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600
    assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(".a.lbox.")
    with Lockbox.open(tmp, known_key=key) as box:
        assert box.view.commit.generation == 1
    publish_archive(path, committed=False)  # no commit: fsynced here, before the link
    assert [e[0] for e in events] == ["fsync", "link", "fsync"]
    assert events[0][1] == tmp and events[2][1] == str(tmp_path)
    assert not os.path.lexists(tmp)
    with lockbox.open(path, password=PW) as box:
        assert list(box.iter_entries()) == []


def test_publishing_never_replaces_a_file(tmp_path: Path, weak_argon2: Any) -> None:
    path = tmp_path / "a.lbox"
    create_archive(path, password=PW, argon2=weak_argon2, unpublished=True)
    path.write_bytes(b"someone else's")
    with pytest.raises(StorageError, match="already exists"):
        publish_archive(path, committed=True)
    assert path.read_bytes() == b"someone else's"
    assert not os.path.lexists(unpublished_path(path))
    discard_unpublished(path)  # nothing left: no error
    with pytest.raises(UsageError):
        create_archive(tmp_path / "b.lbox", password=PW, argon2=weak_argon2, overwrite=True,
                       unpublished=True)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOCKBOX_IDENTITY", "LOCKBOX_NEW_PASSWORD", "LOCKBOX_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    monkeypatch.setenv("LOCKBOX_AGENT_SOCK", str(tmp_path / "no-agent" / "agent.sock"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


WEAK = ["--argon2-memory-kib", "8", "--argon2-time", "1"]


def test_add_create_names_the_archive_after_its_commit(
        tmp_path: Path, cli_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """`add --create`: the commit's fsyncs (of the file under its temporary name), then the
    link to the name, then the directory's fsync; no fsync of the creation alone."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    archive = tmp_path / "new.lbox"
    events = _events(monkeypatch)
    assert cli.main(["add", "-q", "--create", str(archive), str(src), *WEAK]) == 0
    tmp = unpublished_path(archive)
    kinds = [kind for kind, _ in events]
    assert kinds.index("link") == len(kinds) - 2 and kinds[-1] == "fsync"
    assert events[-2] == ("link", f"{tmp} -> {archive}")
    assert events[-1] == ("fsync", str(tmp_path))
    file_syncs = events[:-2]
    assert len(file_syncs) >= 2 and all(e == ("fsync", tmp) for e in file_syncs)
    assert not os.path.lexists(tmp)
    with lockbox.open(archive, password=PW) as box:
        assert box.view.commit.generation == 2  # type: ignore[attr-defined]
        assert [e.path for e in box.iter_entries()] == ["src", "src/a.txt"]


def test_a_failed_add_create_leaves_no_archive(tmp_path: Path, cli_env: None) -> None:
    archive = tmp_path / "new.lbox"
    assert cli.main(["add", "-q", "--create", str(archive), str(tmp_path / "missing"),
                     *WEAK]) != 0
    assert sorted(os.listdir(tmp_path)) == []
