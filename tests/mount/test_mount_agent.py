"""``known_key`` through the mount's provider choice (``lockbox_server.mount.app.make_provider``
-> ``lbox_rw.make_provider``): what ``lockbox mount`` passes when the unlock agent holds
an archive's key. The key is checked against the key directory's commitment: another
archive's key, or a wrong one, is WrongKeyError, never a mount."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.errors import UsageError, WrongKeyError
from lockbox_server.mount.app import make_provider


def _known_key(path: Path) -> tuple[bytes, bytes]:
    with lockbox.open(path, password="pw") as box:
        assert isinstance(box, lockbox.Lockbox)
        return box.view.archive_id, box.content_key


@pytest.mark.parametrize("writable", [True, False])
def test_known_key_mounts(make_archive: Any, writable: bool) -> None:
    path = make_archive({"a.txt": b"hello"})
    provider = make_provider(os.fspath(path), writable=writable, known_key=_known_key(path))
    try:
        assert provider.is_readonly() is not writable
        member = provider.get_resource_inst("/a.txt", {"wsgidav.provider": provider})
        assert member is not None and member.get_content().read() == b"hello"
    finally:
        close = getattr(provider, "close", None)
        if callable(close):
            close()


@pytest.mark.parametrize("writable", [True, False])
def test_another_archives_key_is_refused(make_archive: Any, writable: bool) -> None:
    a = make_archive({"a.txt": b"a"})
    b = make_archive({"b.txt": b"b"})
    archive_id, _ = _known_key(a)
    _, b_key = _known_key(b)
    with pytest.raises(WrongKeyError):  # a's id, b's key: a's commitment refuses it
        make_provider(os.fspath(a), writable=writable, known_key=(archive_id, b_key))
    # b's key under b's id is no key for a at all: "a password ... is needed"
    with pytest.raises(UsageError, match="is needed to open this archive"):
        make_provider(os.fspath(a), writable=writable, known_key=_known_key(b))
