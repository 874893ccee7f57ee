"""Archives that try to make a reader pay for its unlock: Argon2id work chosen by the
author, for free (a decoy slot with a random wrapped key costs its author nothing),
and a key directory with more password slots than the format allows (a partitioning
oracle: each password slot is one more guess per open).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.keys import Argon2Params, key_commitment, new_password_slot
from lockbox.formats.lbox.wire.constants import KEYDIR_MAGIC, MAX_PASSWORD_SLOTS
from lockbox.formats.lbox.wire.encoding import Builder
from lockbox.formats.lbox.wire.keydir import KEYDIR_VERSION, KeySlot, PasswordSlot, encode_keydir
from lockbox.formats.lbox.write.newarchive import write_new_archive
from lockbox.platform import default_codec

from . import MTIME, DetCrypto, frozen_clock

__all__ = ["decoy_archive", "too_many_password_slots_archive", "PASSWORD", "DECOY_MEMORY_KIB",
           "WEAK"]

PASSWORD = "the real password"
DECOY_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB, the format's maximum
WEAK = Argon2Params(time_cost=1, memory_kib=64)


def decoy_archive(*, real: Argon2Params = WEAK, decoy_memory_kib: int = DECOY_MEMORY_KIB,
                  decoy_time_cost: int = 1, label: str = "decoy") -> bytes:
    """A valid archive (one file, ``hello.txt``) whose key directory lists, FIRST, a
    password slot with Argon2id m = 4 GiB and a random wrapped key (nothing opens it),
    then the real password slot."""
    crypto = DetCrypto(label)
    archive_id, content_key = crypto.random_bytes(16), crypto.random_bytes(32)
    decoy = PasswordSlot(0xDEC0DEC0, crypto.random_bytes(16), decoy_time_cost,
                         decoy_memory_kib, 1, crypto.random_bytes(48))
    slot = new_password_slot(crypto, archive_id, content_key, PASSWORD, real, {decoy.slot_id})
    keydir = encode_keydir([decoy, slot], key_commitment(crypto, archive_id, content_key))
    return _archive(crypto, archive_id, content_key, keydir)


def too_many_password_slots_archive() -> bytes:
    """A new archive (generation 1) whose version-2 key directory (correctly committed)
    has MAX_PASSWORD_SLOTS + 1 password slots, the last of which opens: readers refuse
    the directory."""
    crypto = DetCrypto("too-many-password-slots")
    archive_id, content_key = crypto.random_bytes(16), crypto.random_bytes(32)
    slots: list[KeySlot] = []
    for i in range(MAX_PASSWORD_SLOTS + 1):
        pw = PASSWORD if i == MAX_PASSWORD_SLOTS else f"guess {i}"
        slots.append(new_password_slot(crypto, archive_id, content_key, pw, WEAK,
                                       {s.slot_id for s in slots}))
    # encode_keydir refuses to write this; a hostile writer writes it by hand.
    b = Builder().raw(KEYDIR_MAGIC).u8(KEYDIR_VERSION)
    b.raw(key_commitment(crypto, archive_id, content_key)).u16(len(slots))
    for s in slots:
        body = s.body()
        b.u8(int(s.kind)).u32(s.slot_id).u16(len(body)).raw(body)
    return _archive(crypto, archive_id, content_key, b.getvalue(), add_file=False)


def _archive(crypto: DetCrypto, archive_id: bytes, content_key: bytes, keydir: bytes,
             add_file: bool = True) -> bytes:
    codec = default_codec()
    with tempfile.TemporaryDirectory() as tmp, frozen_clock():
        path = Path(tmp) / "archive.lbox"
        write_new_archive(str(path), archive_id=archive_id, content_key=content_key,
                          keydir=keydir, chunk_size=4096, overwrite=False, crypto=crypto,
                          codec=codec)
        if not add_file:  # (nothing could open it to add one)
            return path.read_bytes()
        with Lockbox.open(path, known_key=(archive_id, content_key), crypto=crypto) as box, \
                box.writer() as w:
            w.add_bytes("hello.txt", b"hello\n", mtime_ns=MTIME)
        return path.read_bytes()
