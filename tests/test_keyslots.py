"""write/keyslots.py: key slots added and removed by a write session."""

from __future__ import annotations

import os

import pytest

from lockbox.errors import NotFoundError, UsageError, WrongKeyError
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


def test_link_slots_are_staged_like_the_others(crypto, weak_argon2) -> None:
    from lockbox.formats.lbox.keys import LinkSecret
    from lockbox.formats.lbox.wire.keydir import LinkSlot

    archive_id, key = os.urandom(16), os.urandom(32)
    keys = StagedKeySlots([])
    pw = keys.add_password(crypto, archive_id, key, "one", weak_argon2)
    secret = LinkSecret.generate(crypto)
    link = keys.add_link(crypto, archive_id, key, secret)
    other = keys.add_link(crypto, archive_id, key, LinkSecret.generate(crypto))
    assert len({pw, link, other}) == 3 and keys.changed and not keys.removed
    assert [type(s) for s in keys.slots][1:] == [LinkSlot, LinkSlot]
    assert unlock(crypto, archive_id, keys.slots, link=secret) == (key, link)
    # The same secret added twice: two slots, two wrap keys (the slot id is in the HKDF
    # info), two different wrapped keys.
    again = keys.add_link(crypto, archive_id, key, secret)
    wrapped = {s.slot_id: s.body() for s in keys.slots}
    assert wrapped[again] != wrapped[link]
    committed = StagedKeySlots(keys.slots)
    committed.remove(link)  # revoking: the slot is gone, the other link still opens
    assert committed.removed
    assert unlock(crypto, archive_id, committed.slots, link=secret) == (key, again)
    committed.remove(again)
    with pytest.raises(WrongKeyError, match="revoked or wrong"):
        unlock(crypto, archive_id, committed.slots, link=secret)


def test_a_directory_holds_at_most_512_slots(crypto) -> None:
    from lockbox.formats.lbox.keys import LinkSecret

    archive_id, key = os.urandom(16), os.urandom(32)
    keys = StagedKeySlots([])
    secret = LinkSecret.generate(crypto)
    for _ in range(512):
        keys.add_link(crypto, archive_id, key, secret)
    for add in (lambda: keys.add_link(crypto, archive_id, key, secret),
                lambda: keys.add_recipient(crypto, archive_id, key,
                                           Identity.generate(crypto).recipient(crypto))):
        with pytest.raises(UsageError, match="at most 512 key slots"):
            add()
    assert len(keys.slots) == 512
