"""A bounded, weighted LRU of decoded objects (tree nodes, chunk indexes).

Correctness never depends on it: every entry is keyed by the archive and the
exact frame it was decoded from (offset and tag), so a hit is the same
authenticated bytes; one cache may be shared by several open archives. Tree
nodes weigh what they take in memory (their decoded size plus their items as
Python objects, ``lockbox.formats.lbox.walk.node_weight``: the same weight the walks'
decompression bound counts); chunk indexes their full size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["PageCache", "DEFAULT_CACHE_BYTES", "CacheLimit", "resolve_budget"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024  # the minimum of "auto", and the browser's default
MAX_AUTO_BYTES = 4 * 1024 * 1024 * 1024
AUTO_SHARE = 0.15

CacheLimit = str | int | None  # "auto", a byte count, or 0/None (disabled)


def resolve_budget(limit: CacheLimit) -> int:
    """``"auto"``: about 15 % of the memory available now, at least 64 MiB and at
    most 4 GiB (64 MiB in the browser); an int: that many bytes; 0 or None: off."""
    if limit is None:
        return 0
    if isinstance(limit, int):
        if limit < 0:
            raise ValueError("a cache budget cannot be negative")
        return limit
    if limit != "auto":
        raise ValueError(f"cache limit must be 'auto', a byte count or 0, not {limit!r}")
    from .platform import available_memory

    avail = available_memory()
    if avail is None:
        return DEFAULT_CACHE_BYTES
    return int(min(MAX_AUTO_BYTES, max(DEFAULT_CACHE_BYTES, avail * AUTO_SHARE)))


class PageCache:
    def __init__(self, budget_bytes: CacheLimit = DEFAULT_CACHE_BYTES) -> None:
        self.budget_bytes = resolve_budget(budget_bytes)
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: Any, value: Any, weight: int) -> None:
        if weight > self.budget_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.used_bytes -= old[1]
        self._items[key] = (value, weight)
        self.used_bytes += weight
        while self.used_bytes > self.budget_bytes:
            _, (_, w) = self._items.popitem(last=False)
            self.used_bytes -= w

    def clear(self) -> None:
        self._items.clear()
        self.used_bytes = 0

    def __len__(self) -> int:
        return len(self._items)
