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
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lockbox.formats.lbox.write.writer as writer_mod
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.frames import FrameSealer
from lockbox.formats.lbox.keys import Argon2Params, key_commitment, new_password_slot
from lockbox.formats.lbox.wire.keydir import KeySlot, encode_keydir
from lockbox.formats.lbox.write.newarchive import write_new_archive
from lockbox.platform import default_codec

from . import MTIME, DetCrypto, frozen_clock

__all__ = ["two_truths_archive", "dual_key_seal", "ALICE", "BOB", "ARGON2", "ACCOUNT_A",
           "ACCOUNT_B"]

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


# -- one wrapped key, two content keys (ChaCha20-Poly1305 is not key-committing) -----------

_P1305 = (1 << 130) - 5


def _chacha_block(key: bytes, nonce: bytes, counter: int, size: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    enc = Cipher(algorithms.ChaCha20(key, counter.to_bytes(4, "little") + nonce),
                 mode=None).encryptor()
    return enc.update(bytes(size))


def _poly_key(key: bytes, nonce: bytes) -> tuple[int, int]:
    otk = _chacha_block(key, nonce, 0, 32)
    r = int.from_bytes(otk[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    return r, int.from_bytes(otk[16:], "little")


def _blocks(data: bytes) -> list[int]:
    """Poly1305 block values of ``data`` zero-padded to 16 bytes (each + 2^128)."""
    data += bytes(-len(data) % 16)
    return [int.from_bytes(data[i:i + 16], "little") + (1 << 128)
            for i in range(0, len(data), 16)]


def _poly_acc(r: int, values: list[int]) -> int:
    acc = 0
    for v in values:
        acc = (acc + v) * r % _P1305
    return acc


def dual_key_seal(key_a: bytes, key_b: bytes, aad: bytes,
                  seed: bytes = b"dual") -> tuple[bytes, bytes, bytes]:
    """A 32-byte-plaintext ChaCha20-Poly1305 ciphertext (zero nonce) that authenticates
    under BOTH keys: returns ``(sealed, plaintext_under_a, plaintext_under_b)``.

    Poly1305 is linear in the ciphertext blocks: with the second block fixed, one linear
    equation mod 2^130 - 5 gives the first block for which both tags are equal (Len,
    Grubbs, Ristenpart, "Partitioning Oracle Attacks", 2021)."""
    nonce = bytes(12)
    (ra, sa), (rb, sb) = _poly_key(key_a, nonce), _poly_key(key_b, nonce)
    head = _blocks(aad)
    lengths = len(aad).to_bytes(8, "little") + (32).to_bytes(8, "little")
    tail_len = int.from_bytes(lengths, "little") + (1 << 128)
    # acc = sum(c_i r^(n - i)): the AAD blocks, then the two ciphertext blocks (r^3, r^2),
    # then the lengths block (r^1).
    ea, eb = pow(ra, 3, _P1305), pow(rb, 3, _P1305)
    coef = (ea - eb) % _P1305
    for attempt in range(1000):
        y = hashlib.shake_256(seed + attempt.to_bytes(4, "little")).digest(16)
        yv = int.from_bytes(y, "little") + (1 << 128)
        fa, fb = ((_poly_acc(r, head) * pow(r, 3, _P1305) + yv * pow(r, 2, _P1305)
                   + tail_len * r) % _P1305 for r in (ra, rb))
        for j in range(-4, 5):  # (h_a + s_a) = (h_b + s_b) mod 2^128, h_a - h_b in (-p, p)
            d = (sb - sa) % (1 << 128) + j * (1 << 128)
            x = (d - fa + fb) * pow(coef, -1, _P1305) % _P1305
            if not (1 << 128) <= x < (1 << 129):  # a full 16-byte block (+ 2^128)
                continue
            ha, hb = (fa + x * ea) % _P1305, (fb + x * eb) % _P1305
            if (ha + sa) % (1 << 128) != (hb + sb) % (1 << 128):
                continue
            ct = (x - (1 << 128)).to_bytes(16, "little") + y
            tag = ((ha + sa) % (1 << 128)).to_bytes(16, "little")
            ks_a, ks_b = _chacha_block(key_a, nonce, 1, 32), _chacha_block(key_b, nonce, 1, 32)
            return (ct + tag, bytes(c ^ k for c, k in zip(ct, ks_a)),
                    bytes(c ^ k for c, k in zip(ct, ks_b)))
    raise AssertionError("no two-key ciphertext found")
