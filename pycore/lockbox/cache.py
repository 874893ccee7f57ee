"""A bounded, weighted LRU of decoded objects (tree nodes, chunk indexes).

Correctness never depends on it: every entry is keyed by the exact frame it
was decoded from (offset and tag), so a hit is the same authenticated bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["PageCache", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class PageCache:
    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.budget_bytes = max(0, budget_bytes)
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
