"""The decoded-page cache: budgets (auto, bytes, off), sharing between archives, and
correctness never depending on it."""

from __future__ import annotations

import os

import lockbox
from lockbox import cli
from lockbox.cache import DEFAULT_CACHE_BYTES, MAX_AUTO_BYTES, PageCache, resolve_budget

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)


def test_budgets():
    assert DEFAULT_CACHE_BYTES <= resolve_budget("auto") <= MAX_AUTO_BYTES
    assert resolve_budget(123456) == 123456
    assert resolve_budget(0) == 0 and resolve_budget(None) == 0


def test_lru_evicts_by_weight():
    c = PageCache(100)
    c.put("a", 1, 60)
    c.put("b", 2, 30)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3, 40)  # evicts b (least recent), not a
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    c.put("huge", 4, 101)  # larger than the budget: not kept
    assert c.get("huge") is None and c.used_bytes <= 100


def test_results_do_not_depend_on_the_cache(tmp_path):
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", argon2=WEAK, chunk_size=4096)
    with box.writer() as w:
        for i in range(3000):
            w.add_bytes(f"d{i % 30}/f{i}", b"%d" % i * (i % 7))
    key = (box.view.archive_id, box.content_key)
    shared = PageCache("auto")
    listings = []
    for cache in (0, 4096, "auto", shared, shared):
        b = lockbox.Lockbox.open(path, known_key=key, cache=cache)
        listings.append([(e.path, e.blake3) for e in b.ls(recursive=True)])
        assert b.read_bytes("d7/f2707") == b"2707" * (2707 % 7)
        b.close()
    assert all(x == listings[0] for x in listings)
    assert shared.hits > 0  # the second open found the first one's nodes


def test_cli_cache_option(tmp_path, monkeypatch, capsys):
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", argon2=WEAK)
    with box.writer() as w:
        w.add_bytes("x.txt", b"x")
    monkeypatch.setenv("LOCKBOX_PASSWORD", "pw")
    for args in (["--cache", "0", "ls", str(path)], ["ls", str(path), "--cache", "64M"],
                 ["ls", str(path), "--cache", "auto"]):
        assert cli.main(args) == 0
        assert capsys.readouterr().out.strip() == "x.txt"
    monkeypatch.setenv("LOCKBOX_CACHE", "0")
    assert cli.main(["ls", str(path)]) == 0
    assert os.path.exists(path)
