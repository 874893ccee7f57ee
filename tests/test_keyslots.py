"""write/keyslots.py: key slots added and removed by a write session."""

from __future__ import annotations

import os

import pytest

from lockbox.errors import NotFoundError, UsageError
from lockbox.formats.lbox.keys import Identity, unlock
from lockbox.formats.lbox.write.keyslots import StagedKeySlots


def test_added_slots_unlock_and_removal_is_tracked(crypto, weak_argon2) -> None:
    archive_id, key = os.urandom(16), os.urandom(32)
    keys = StagedKeySlots([])
    a = keys.add_password(crypto, archive_id, key, "one", weak_argon2)
    ident = Identity.generate(crypto)
    b = keys.add_recipient(crypto, archive_id, key, ident.recipient(crypto))
    assert a != b and keys.changed and not keys.removed
    assert unlock(crypto, archive_id, keys.slots, password="one")[0] == key
    assert unlock(crypto, archive_id, keys.slots, identity=ident)[0] == key
    committed = StagedKeySlots(keys.slots)  # as a later session sees them
    assert not committed.changed and committed.slots is not keys.slots
    with pytest.raises(NotFoundError):
        committed.remove(12345)
    assert not committed.changed
    committed.remove(a)
    assert committed.changed and committed.removed and [s.slot_id for s in committed.slots] == [b]
    with pytest.raises(UsageError, match="last key slot"):
        committed.remove(b)
