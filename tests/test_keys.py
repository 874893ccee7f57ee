"""Key directories as writers write them (version 2, committed) and archives written
before key commitments (version 1): read, reported, upgraded by the next commit
(docs/FORMAT.md §6, §20)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.formats.lbox.keys import key_commitment
from lockbox.formats.lbox.wire.constants import SLOT_SIZE
from lockbox.formats.lbox.wire.keydir import decode_key_directory, keydir_has_commitment
from lockbox.formats.lbox.wire.page import decode_keydir_page
from lockbox.formats.lbox.wire.superblock import ExternalKeydir, decode_superblock
from lockbox.formats.lbox.write.compact import compact_archive

LEGACY = Path(__file__).parent / "vectors" / "v1" / "legacy-hello.lbox"


def _slots(path: Path) -> list[Any]:
    return decode_superblock(path.read_bytes()[:2 * SLOT_SIZE])


def _committed_to(box: lockbox.Lockbox) -> bool:
    d = decode_key_directory(box.view.keydir)
    return d.key_commitment == key_commitment(box.crypto, box.view.archive_id,
                                              box.content_key)


def test_every_writer_writes_version_2(tmp_path: Path, crypto: Any,
                                       weak_argon2: Any) -> None:
    ids = [lockbox.Identity.generate(crypto) for _ in range(4)]
    path = tmp_path / "a.lbox"
    with lockbox.create(path, password="pw", argon2=weak_argon2) as box:
        assert _committed_to(box) and box.view.slot.version == 2
    with lockbox.open(path, password="pw") as box:
        with box.writer() as w:  # no key change: the same key directory
            w.add_bytes("f", b"1")
        assert _committed_to(box)
        with box.writer() as w:  # a key change, large enough for a KEYDIR page only
            for i in ids:
                w.add_recipient(i.recipient(crypto))
        assert _committed_to(box) and isinstance(box.view.slot.keydir, ExternalKeydir)
        compact_archive(box)
        assert _committed_to(box)
    for s in _slots(path):
        assert s.version == 2
    with lockbox.open(path, identity=ids[3]) as box:
        assert box.read_bytes("f") == b"1" and box.verify().ok


def test_a_legacy_archive_is_read_and_reported(tmp_path: Path) -> None:
    with lockbox.open(LEGACY, password="lockbox") as box:
        assert box.view.slot.version == 1 and not keydir_has_commitment(box.view.keydir)
        assert decode_key_directory(box.view.keydir).version == 1
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok


def test_the_next_commit_upgrades_a_legacy_archive(tmp_path: Path) -> None:
    path = tmp_path / "legacy.lbox"
    shutil.copyfile(LEGACY, path)
    with lockbox.open(path, password="lockbox") as box:
        with box.writer():  # nothing staged: no commit, nothing upgraded
            pass
        assert box.generation == 2 and not keydir_has_commitment(box.view.keydir)
        with box.writer() as w:
            w.add_bytes("more.txt", b"more\n", mtime_ns=0)
        assert box.generation == 3 and _committed_to(box)
        assert box.view.slot.version == 2
    newest, older = _slots(path)
    assert (newest.generation, newest.version, older.generation, older.version) == (3, 2, 2, 1)
    # The upgraded directory has a KEYDIR page of its own (generation 3), like a key change.
    assert isinstance(newest.keydir, bytes) and keydir_has_commitment(newest.keydir)
    data = path.read_bytes()
    pages = [off for off in range(16384, len(data), 4096) if data[off:off + 4] == b"LBXP"
             and data[off + 5] == 2]
    copies = [decode_keydir_page(data[off:]) for off in pages]
    assert [(h.generation, kd == newest.keydir) for h, _, kd in copies] == [(3, True)]
    with lockbox.open(path, password="lockbox") as box:
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok


def test_compaction_upgrades_a_legacy_archive(tmp_path: Path) -> None:
    path = tmp_path / "legacy.lbox"
    shutil.copyfile(LEGACY, path)
    with lockbox.open(path, password="lockbox") as box:
        compact_archive(box)
        assert _committed_to(box)
    for s in _slots(path):
        assert s.version == 2 and isinstance(s.keydir, bytes) and keydir_has_commitment(s.keydir)
    with lockbox.open(path, password="lockbox") as box:
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok


def test_a_legacy_archive_with_too_many_password_slots_must_shrink_first(
        tmp_path: Path, weak_argon2: Any) -> None:
    """Version 1 allowed more password slots than version 2: the upgrade refuses until
    the commit that removes enough of them."""
    from lockbox.formats.lbox.keys import new_password_slot
    from lockbox.formats.lbox.wire.keydir import encode_keydir
    from lockbox.formats.lbox.write.newarchive import write_new_archive
    from lockbox.platform import default_codec, default_crypto

    crypto = default_crypto()
    aid, key = crypto.random_bytes(16), crypto.random_bytes(32)
    slots: list[Any] = []
    for i in range(5):
        slots.append(new_password_slot(crypto, aid, key, f"pw{i}", weak_argon2,
                                       {s.slot_id for s in slots}))
    path = tmp_path / "five.lbox"
    write_new_archive(str(path), archive_id=aid, content_key=key,
                      keydir=encode_keydir(slots), chunk_size=4096, overwrite=False,
                      crypto=crypto, codec=default_codec())
    with lockbox.open(path, password="pw3") as box:
        with pytest.raises(lockbox.UsageError, match="at most 4 password slots"), \
                box.writer() as w:
            w.add_bytes("f", b"1")
        assert box.generation == 1 and path.stat().st_size == 20480  # nothing was written
        with box.writer() as w:
            w.remove_slot(slots[0].slot_id)
            w.add_bytes("f", b"1")
        assert _committed_to(box) and len(box.view.key_slots) == 4
