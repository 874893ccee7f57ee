"""One file, two truths: an archive whose author shows two key holders two contents.

Generation 2 is sealed under content key K2 and its key directory gives Bob K2:
``account.txt`` says "account B". Generation 3 is sealed under K1 and says "account
A"; its key directory gives Alice K1 and ALSO still gives Bob K2 (his old slot).
Before key commitments, Bob's open unwrapped K2 from generation 3's directory,
failed on generation 3's commit frame and fell back, silently, to generation 2:
Alice read "account A", Bob "account B", and verify was ok for both.

A variant (``bob_in_newest=False``) needs no cross-key slot at all: generation 3's
key directory simply has no slot for Bob, his secret is refused there, and the older
slot — whose key directory does have his slot — used to be opened silently instead.

The author is a key holder, so every frame is sealed by lockbox's own writer; the
only departures from an honest writer are the ones the attack needs: generation 3's
frames are sealed under another content key (its sealer is swapped), the freed frames
of generation 2 are not redacted (so that it stays readable), and, for
``legacy=True``, the key directories are version 1 (no key commitment).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lockbox.writer as writer_mod
from lockbox.archive import Lockbox
from lockbox.format.keydir import KeySlot, encode_keydir
from lockbox.frames import FrameSealer
from lockbox.keys import Argon2Params, key_commitment, new_password_slot
from lockbox.newarchive import write_new_archive
from lockbox.platform import default_codec

from . import MTIME, DetCrypto, frozen_clock

__all__ = ["two_truths_archive", "ALICE", "BOB", "ARGON2", "ACCOUNT_A", "ACCOUNT_B"]

ALICE = "alice's password"
BOB = "bob's password"
ARGON2 = Argon2Params(time_cost=1, memory_kib=64)
ACCOUNT_A = b"pay to account A\n"
ACCOUNT_B = b"pay to account B\n"


@contextlib.contextmanager
def _legacy_writer(legacy: bool) -> Iterator[None]:
    """With ``legacy``, the writer keeps version-1 key directories (no commitment)."""
    if not legacy:
        yield
        return
    saved = writer_mod.committed_keydir
    writer_mod.committed_keydir = lambda crypto, aid, key, slots: encode_keydir(slots)
    try:
        yield
    finally:
        writer_mod.committed_keydir = saved


def _keydir(crypto: DetCrypto, archive_id: bytes, key: bytes, slots: list[KeySlot],
            legacy: bool) -> bytes:
    return encode_keydir(slots, None if legacy else key_commitment(crypto, archive_id, key))


def two_truths_archive(*, legacy: bool = False, bob_in_newest: bool = True) -> bytes:
    """The archive's bytes: generation 3 (K1) for Alice, generation 2 (K2) for Bob."""
    crypto = DetCrypto("two-truths" + ("-legacy" if legacy else "")
                       + ("" if bob_in_newest else "-bob-removed"))
    codec = default_codec()
    archive_id = crypto.random_bytes(16)
    k1, k2 = crypto.random_bytes(32), crypto.random_bytes(32)
    bob = new_password_slot(crypto, archive_id, k2, BOB, ARGON2, set())
    alice = new_password_slot(crypto, archive_id, k1, ALICE, ARGON2, {bob.slot_id})
    with tempfile.TemporaryDirectory() as tmp, frozen_clock(), _legacy_writer(legacy):
        path = Path(tmp) / "two-truths.lbox"
        # Generation 1 (created) and 2 ("account B"): sealed under K2, Bob's slot only.
        write_new_archive(str(path), archive_id=archive_id, content_key=k2,
                          keydir=_keydir(crypto, archive_id, k2, [bob], legacy),
                          chunk_size=4096, overwrite=False, crypto=crypto, codec=codec)
        with Lockbox.open(path, known_key=(archive_id, k2), crypto=crypto) as box, \
                box.writer() as w:
            w.add_bytes("account.txt", ACCOUNT_B, mtime_ns=MTIME)
        # Generation 3 ("account A"): sealed under K1; its key directory (committed to
        # K1 unless legacy) gives Alice K1 and still gives Bob K2.
        box = Lockbox.open(path, known_key=(archive_id, k2), crypto=crypto)
        try:
            w = box.writer()
            try:
                sealer = FrameSealer(crypto, codec, archive_id, k1)
                w.sealer = w.pages.sealer = sealer
                w._keeper.redact = lambda space, generation: 0  # type: ignore[method-assign]
                box._content_key = k1  # what the writer commits the key directory to
                w.key_slots = [alice, bob] if bob_in_newest else [alice]
                w._keys_changed = True
                w.add_bytes("account.txt", ACCOUNT_A, mtime_ns=MTIME)
                w.commit()
            finally:
                w.close()
        finally:
            box.close()
        return path.read_bytes()
