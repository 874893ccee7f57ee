"""Local unlock limits (docs/FORMAT.md §6 "Local limits", §16): Argon2id work chosen by an
archive's author is bounded by the reader, and the format's maximum of password slots.

A decoy password slot with a random wrapped key costs its author nothing and every
reader a full Argon2id: with the default limits a 4 GiB decoy is never derived (the
tests count the Argon2id calls; they never run one with more than 64 KiB)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import lockbox
from hostile.unlock_cost import (
    DECOY_MEMORY_KIB,
    PASSWORD,
    decoy_archive,
    too_many_password_slots_archive,
)
from lockbox.cache import PageCache
from lockbox.drivers import run_sync
from lockbox.errors import LimitExceededError, UsageError, WrongKeyError
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.keys import UnlockLimits, key_commitment, new_password_slot, unlock
from lockbox.formats.lbox.opening import open_flow
from lockbox.formats.lbox.wire.constants import MAX_PASSWORD_SLOTS
from lockbox.formats.lbox.wire.keydir import PasswordSlot, decode_keydir, encode_keydir
from lockbox.platform import default_codec, default_crypto, default_unlock_limits
from lockbox.sources.memory import BytesSource

AID = bytes(range(16))
KEY = bytes(range(32, 64))


class CountingCrypto:
    """The platform backend, recording every Argon2id call; refuses (instead of running)
    any call over ``ceiling_kib`` so that a test can never spend gigabytes."""

    def __init__(self, ceiling_kib: int = 1024) -> None:
        self._inner = default_crypto()
        self.calls: list[tuple[int, int]] = []
        self.ceiling_kib = ceiling_kib

    def argon2id(self, password: bytes, salt: bytes, *, time_cost: int, memory_kib: int,
                 parallelism: int, length: int) -> bytes:
        self.calls.append((time_cost, memory_kib))
        if memory_kib > self.ceiling_kib:
            raise AssertionError(f"Argon2id with {memory_kib} KiB was run")
        return self._inner.argon2id(password, salt, time_cost=time_cost,
                                    memory_kib=memory_kib, parallelism=parallelism,
                                    length=length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _open(data: bytes, crypto: Any = None, **kw: Any) -> Any:
    return run_sync(open_flow(crypto or default_crypto(), default_codec(), cache=PageCache(0),
                              identity=kw.pop("identity", None), **kw), BytesSource(data))


class _Ids:
    """A backend whose random bytes are scripted slot ids (salts stay random)."""

    def __init__(self, sid: int) -> None:
        self._inner = default_crypto()
        self._sid = sid

    def random_bytes(self, size: int) -> bytes:
        if size == 4:
            return self._sid.to_bytes(4, "little")
        return self._inner.random_bytes(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _slot(crypto: Any, sid: int, password: str, t: int = 1, m: int = 64) -> PasswordSlot:
    """A password slot wrapping KEY for AID, with slot id ``sid``."""
    s = new_password_slot(_Ids(sid), AID, KEY, password, lockbox.Argon2Params(t, m))
    assert s.slot_id == sid
    return s


# -- the must-show: a 4 GiB decoy slot --------------------------------------------------------


def test_a_4_gib_decoy_slot_is_never_derived() -> None:
    data = decoy_archive()
    crypto = CountingCrypto()
    with Lockbox(BytesSource(data), password=PASSWORD, crypto=crypto) as box:
        assert box.read_bytes("hello.txt") == b"hello\n" and box.verify().ok
        decoy = box.view.key_slots[0]
        assert isinstance(decoy, PasswordSlot) and decoy.memory_kib == DECOY_MEMORY_KIB
    assert crypto.calls == [(1, 64)]  # only the real slot
    crypto = CountingCrypto()
    with pytest.raises(WrongKeyError) as exc:
        Lockbox(BytesSource(data), password="a wrong password", crypto=crypto)
    assert crypto.calls == [(1, 64)]
    msg = str(exc.value)
    assert f"slot {decoy.slot_id}: Argon2id memory 4 GiB is over this reader's limit of " \
        "512 MiB (raise it with --max-argon2-memory 4096M)" in msg
    assert msg.startswith("wrong password or identity: no key slot opens")


def test_raising_the_memory_limit_makes_the_decoy_tried() -> None:
    """The limit is what stops the decoy: raised, a wrong password reaches it (the
    counting backend refuses to really run it)."""
    data = decoy_archive()
    limits = dataclasses.replace(default_unlock_limits(), max_argon2_memory_kib=DECOY_MEMORY_KIB,
                                 max_unlock_work_kib=DECOY_MEMORY_KIB + 64)
    crypto = CountingCrypto()
    assert _open(data, crypto, password=PASSWORD, limits=limits).generation == 2
    assert crypto.calls == [(1, 64)]  # the cheaper, real slot first: it opens
    crypto = CountingCrypto()
    with pytest.raises(AssertionError, match="4194304 KiB was run"):
        _open(data, crypto, password="wrong", limits=limits)
    assert crypto.calls == [(1, 64), (1, DECOY_MEMORY_KIB)]


def test_no_slot_within_the_limits_is_a_limit_error(crypto: Any) -> None:
    big = _slot(crypto, 1, "pw", m=2048)
    limits = UnlockLimits(1024, 16, 4, 1 << 20)
    with pytest.raises(LimitExceededError, match=r"no key slot can be used by this reader: "
                       r"slot 1: Argon2id memory 2 MiB .* --max-argon2-memory 2M"):
        unlock(crypto, AID, [big], password="pw", limits=limits)


# -- each limit ------------------------------------------------------------------------------


def test_time_cost_limit(crypto: Any) -> None:
    slow, ok = _slot(crypto, 1, "pw", t=17), _slot(crypto, 2, "pw")
    counting = CountingCrypto()
    assert unlock(counting, AID, [slow, ok], password="pw") == (KEY, 2)
    assert counting.calls == [(1, 64)]
    with pytest.raises(WrongKeyError, match="time cost 17 is over this reader's limit of 16 "
                       r"\(raise it with --max-argon2-time 17\)"):
        unlock(counting, AID, [slow, ok], password="other")
    limits = dataclasses.replace(default_unlock_limits(), max_argon2_time_cost=17)
    assert unlock(crypto, AID, [slow], password="pw", limits=limits) == (KEY, 1)


def test_work_budget_is_spent_cheapest_first(crypto: Any) -> None:
    """Σ t·m over the slots tried: slots are tried cheapest first, and a slot that
    would take the sum over the budget is skipped."""
    slots = [_slot(crypto, 1, "a", t=2, m=64), _slot(crypto, 2, "b", m=64),
             _slot(crypto, 3, "c", t=1, m=96)]
    limits = UnlockLimits(1024, 16, 4, 64 + 96)
    counting = CountingCrypto()
    assert unlock(counting, AID, slots, password="c", limits=limits) == (KEY, 3)
    assert counting.calls == [(1, 64), (1, 96)]  # 128 (t=2) is over what is left
    counting.calls.clear()
    with pytest.raises(WrongKeyError, match=r"slot 1: Argon2id work \(time cost x memory\) "
                       r"would reach 288 KiB, over this reader's limit of 160 KiB \(raise it "
                       r"with --max-unlock-work 288K\)"):
        unlock(counting, AID, slots, password="a", limits=limits)
    assert counting.calls == [(1, 64), (1, 96)]


def test_password_slots_tried_per_unlock(crypto: Any) -> None:
    slots = [_slot(crypto, i + 1, f"pw{i}") for i in range(3)]
    limits = dataclasses.replace(default_unlock_limits(), max_password_slots=2)
    assert unlock(crypto, AID, slots, password="pw1", limits=limits) == (KEY, 2)
    with pytest.raises(WrongKeyError, match="slot 3: this reader tries at most 2 password"):
        unlock(crypto, AID, slots, password="pw2", limits=limits)


def test_recipient_slots_are_not_limited(crypto: Any) -> None:
    ident = lockbox.Identity.generate(crypto)
    from lockbox.formats.lbox.keys import new_recipient_slot

    rs = new_recipient_slot(crypto, AID, KEY, ident.recipient(crypto))
    limits = UnlockLimits(8, 1, 1, 1)
    assert unlock(crypto, AID, [rs], identity=ident, limits=limits) == (KEY, rs.slot_id)


def test_limits_are_validated() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(UsageError):
            UnlockLimits(bad, 1, 1, 1)  # type: ignore[arg-type]
    assert UnlockLimits.default() == default_unlock_limits()


def test_platform_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import lockbox.platform as platform

    cpython = platform.default_unlock_limits()
    assert cpython == UnlockLimits(512 * 1024, 16, MAX_PASSWORD_SLOTS, 1024 * 1024)
    platform.default_unlock_limits.cache_clear()
    monkeypatch.setattr(platform, "IS_BROWSER", True)
    try:
        browser = platform.default_unlock_limits()
        assert browser.max_argon2_memory_kib == 256 * 1024  # a page's WASM heap
        assert browser.max_unlock_work_kib < cpython.max_unlock_work_kib
    finally:
        platform.default_unlock_limits.cache_clear()
    # The writers' default slot (64 MiB, t = 3) opens everywhere.
    for lim in (cpython, browser):
        assert lim.refusal(PasswordSlot(1, bytes(16), 3, 65536, 1, bytes(48)), 0, 0) == ""


# -- the format's maximum of password slots ---------------------------------------------------


def test_more_password_slots_than_the_format_allows_are_refused() -> None:
    data = too_many_password_slots_archive()
    crypto = CountingCrypto()
    with pytest.raises(LimitExceededError, match=f"more than {MAX_PASSWORD_SLOTS} password"):
        _open(data, crypto, password=PASSWORD)
    assert crypto.calls == []  # refused before any derivation


def test_version_2_key_directories_hold_at_most_4_password_slots(crypto: Any) -> None:
    slots = [_slot(crypto, i + 1, f"pw{i}") for i in range(MAX_PASSWORD_SLOTS + 1)]
    commitment = key_commitment(crypto, AID, KEY)
    assert len(decode_keydir(encode_keydir(slots[:4], commitment))) == 4
    with pytest.raises(ValueError):
        encode_keydir(slots, commitment)
    # A version-1 (legacy) directory is not refused: the local limit bounds what is tried.
    legacy = decode_keydir(encode_keydir(slots))
    assert len(legacy) == 5
    counting = CountingCrypto()
    with pytest.raises(WrongKeyError, match="slot 5: this reader tries at most 4 password"):
        unlock(counting, AID, legacy, password="pw4")
    assert len(counting.calls) == 4


def test_writers_refuse_a_fifth_password_slot(make_archive: Any, weak_argon2: Any) -> None:
    path = make_archive({"f": b"1"})
    with lockbox.open(path, password="pw") as box, box.writer() as w:
        for i in range(MAX_PASSWORD_SLOTS - 1):
            w.add_password(f"pw{i}", weak_argon2)
        with pytest.raises(UsageError, match="at most 4 password slots"):
            w.add_password("one too many", weak_argon2)
    with lockbox.open(path, password="pw2") as box:
        assert len(box.view.key_slots) == MAX_PASSWORD_SLOTS
