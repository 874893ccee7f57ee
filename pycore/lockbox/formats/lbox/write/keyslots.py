"""Key-slot changes staged by a write session: password, recipient and link slots added
or removed, written as a new key directory by the next commit (docs/FORMAT.md §6, §11)."""

from __future__ import annotations

from collections.abc import Sequence

from ....crypto.base import CryptoBackend
from ....errors import NotFoundError, UsageError
from ..keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    LinkSecret,
    Recipient,
    check_password_slot_room,
    new_link_slot,
    new_password_slot,
    new_recipient_slot,
)
from ..wire.constants import MAX_KEY_SLOTS
from ..wire.keydir import KeySlot

__all__ = ["StagedKeySlots"]


class StagedKeySlots:
    """The key slots the next commit writes: ``slots`` (starting as the committed ones),
    ``changed`` (a new key directory is needed), ``removed`` (a slot was removed: the
    writer then commits twice, so that neither superblock slot keeps it), ``rewritten``
    (:meth:`rewrite`: the same, for a key directory restored from a backup)."""

    def __init__(self, committed: Sequence[KeySlot]) -> None:
        self.slots: list[KeySlot] = list(committed)
        self.changed = False
        self.removed = False
        self.rewritten = False

    def rewrite(self) -> None:
        """Write these slots as a new key directory even though none changed (a key
        directory restored from a backup, in place of a damaged one): a KEYDIR page and
        two commits, so that neither superblock slot keeps the directory it replaces."""
        self.changed = True
        self.rewritten = True

    def _ids(self) -> set[int]:
        return {s.slot_id for s in self.slots}

    def _check_room(self) -> None:
        if len(self.slots) >= MAX_KEY_SLOTS:
            raise UsageError(f"an archive holds at most {MAX_KEY_SLOTS} key slots (this one "
                             "has as many): remove one first (lockbox keys rm ID)")

    def add_password(self, crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                     password: str | bytes, params: Argon2Params = DEFAULT_ARGON2) -> int:
        """Wrap ``content_key`` under ``password`` in a new slot; returns its id."""
        check_password_slot_room(self.slots, adding=1)
        self._check_room()
        slot = new_password_slot(crypto, archive_id, content_key, password, params,
                                 self._ids())
        self.slots.append(slot)
        self.changed = True
        return slot.slot_id

    def add_recipient(self, crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                      recipient: Recipient) -> int:
        """Wrap ``content_key`` for ``recipient`` in a new slot; returns its id."""
        self._check_room()
        slot = new_recipient_slot(crypto, archive_id, content_key, recipient, self._ids())
        self.slots.append(slot)
        self.changed = True
        return slot.slot_id

    def add_link(self, crypto: CryptoBackend, archive_id: bytes, content_key: bytes,
                 secret: LinkSecret) -> int:
        """Wrap ``content_key`` for a share link's ``secret`` in a new link slot; returns
        its id (``remove`` it to revoke the link)."""
        self._check_room()
        slot = new_link_slot(crypto, archive_id, content_key, secret, self._ids())
        self.slots.append(slot)
        self.changed = True
        return slot.slot_id

    def remove(self, slot_id: int) -> None:
        remaining = [s for s in self.slots if s.slot_id != slot_id]
        if len(remaining) == len(self.slots):
            raise NotFoundError(f"no key slot with id {slot_id}")
        if not remaining:
            raise UsageError("refusing to remove the last key slot (the archive would be lost)")
        self.slots = remaining
        self.changed = True
        self.removed = True
