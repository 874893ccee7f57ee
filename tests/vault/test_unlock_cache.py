"""The helpers the CLI and the mount call: ask the agent before prompting, give it the key
after an unlock; a cached key opens only the archive that commits to it."""

from __future__ import annotations

import os
from pathlib import Path

import lockbox
from lockbox.facade import Archive, probe
from lockbox.formats.lbox.keys import key_commitment
from lockbox.platform import default_crypto
from lockbox.sources import open_source
from lockbox.vault import agent_client
from lockbox.vault.unlock_cache import (
    CacheRef,
    cache_ref,
    lookup,
    lookup_source,
    remember,
    remember_key,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "v1"


def _ref(path: Path) -> CacheRef | None:
    source = open_source(str(path))
    try:
        return cache_ref(source, probe(source).head)
    finally:
        source.close()


def test_remember_then_open_without_the_password(make_archive, agent: str) -> None:  # type: ignore[no-untyped-def]
    path = make_archive({"a.txt": b"hello"})
    other = make_archive({"b.txt": b"other"})  # same password, another archive
    source = open_source(str(path))
    try:
        head = probe(source).head
        assert lookup_source(source, head, socket_path=agent) is None  # nothing yet
        with lockbox.open(path, password="pw") as box:
            assert remember(box, socket_path=agent)
            expected = CacheRef(box.view.archive_id, key_commitment(
                default_crypto(), box.view.archive_id, box.content_key))
        assert cache_ref(source) == cache_ref(source, head) == expected
        known = lookup_source(source, head, socket_path=agent)
        assert known is not None and known[0] == expected.archive_id
        with Archive.open(str(path), source=source, probe=probe(source), known_key=known,
                          close_source=False) as box:
            assert box.read_bytes("a.txt") == b"hello"
    finally:
        source.close()
    assert lookup(_ref(other), socket_path=agent) is None  # another archive: a miss
    agent_client.agent_lock(socket_path=agent)
    assert lookup(_ref(path), socket_path=agent) is None


def test_an_external_key_directory(agent: str) -> None:
    path = VECTORS / "keydir-external.lbox"
    ref = _ref(path)
    assert ref is not None
    with lockbox.open(path, password="external keydir") as box:
        assert ref.archive_id == box.view.archive_id
        assert remember(box, socket_path=agent)
    known = lookup(ref, socket_path=agent)
    assert known is not None
    with lockbox.open(path, known_key=known) as box:
        assert box.ls()


def test_an_archive_without_key_commitment_is_never_cached(agent: str) -> None:
    path = VECTORS / "legacy-hello.lbox"
    assert _ref(path) is None
    with lockbox.open(path, password="lockbox") as box:
        assert remember(box, socket_path=agent) is False
    assert agent_client.agent_status(socket_path=agent).keys == 0  # type: ignore[union-attr]


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.lbox"
    junk.write_bytes(os.urandom(20000))
    source = open_source(str(junk))
    try:
        assert cache_ref(source) is None
    finally:
        source.close()


def test_no_agent_is_quiet(make_archive, agent_dir: str) -> None:  # type: ignore[no-untyped-def]
    path = make_archive({"a.txt": b"x"})
    warned: list[str] = []
    nowhere = os.path.join(agent_dir, "none.sock")
    assert lookup(_ref(path), socket_path=nowhere, warn=warned.append) is None
    with lockbox.open(path, password="pw") as box:
        assert remember(box, socket_path=nowhere, warn=warned.append) is False
    assert warned == []


def test_an_unsafe_agent_is_a_warning_not_an_error(make_archive, agent_dir: str) -> None:  # type: ignore[no-untyped-def]
    path = make_archive({"a.txt": b"x"})
    planted = os.path.join(agent_dir, "agent.sock")
    os.symlink("/tmp/elsewhere.sock", planted)
    warned: list[str] = []
    assert lookup(_ref(path), socket_path=planted, warn=warned.append) is None
    ref = _ref(path)
    assert ref is not None
    assert remember_key(ref.archive_id, ref.key_commitment, os.urandom(32),
                        socket_path=planted, warn=warned.append) is False
    assert len(warned) == 2 and all("symlink" in w and "\n" not in w for w in warned)
