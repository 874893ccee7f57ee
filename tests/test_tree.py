"""write/tree.py's helpers against their plain definitions: how a run of pairs is split
into leaves, and which leaf each changed key belongs to (the same nodes, byte for byte,
as the pair-by-pair loops they replace)."""

from __future__ import annotations

from bisect import bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lockbox.formats.lbox.write.tree as tree
from lockbox.formats.lbox.wire.constants import MAX_NODE_ENTRIES


def split_reference(keys: list[bytes], values: list[bytes], target_size: int
                    ) -> list[tuple[list[bytes], list[bytes]]]:
    """The pair-by-pair split: close a leaf once the running size reaches
    target * (leaves + 1), leaving the rest to the last one."""
    if not keys:
        return []
    total = sum(len(k) + len(v) + 6 for k, v in zip(keys, values))
    n = max(1, -(-total // target_size), -(-len(keys) // MAX_NODE_ENTRIES))
    if n == 1:
        return [(keys, values)]
    target = total / n
    out: list[tuple[list[bytes], list[bytes]]] = []
    start = acc = 0
    for i, (k, v) in enumerate(zip(keys, values)):
        acc += len(k) + len(v) + 6
        if acc >= target * (len(out) + 1) and len(out) < n - 1:
            out.append((keys[start:i + 1], values[start:i + 1]))
            start = i + 1
    if start < len(keys):
        out.append((keys[start:], values[start:]))
    return out


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 300)), max_size=300),
       target=st.sampled_from([60, 200, 1000, 16384]))
def test_split_leaves_is_the_pair_by_pair_split(sizes, target):
    keys = [i.to_bytes(4, "big") + b"k" * a for i, (a, _) in enumerate(sizes)]
    values = [b"v" * b for _, b in sizes]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tree, "NODE_TARGET_SIZE", target)
        got = [(leaf.keys, leaf.values) for leaf in tree._split_leaves(keys, values)]
    assert got == split_reference(keys, values, target)


@settings(max_examples=200, deadline=None)
@given(firsts=st.lists(st.binary(max_size=3), min_size=1, max_size=20, unique=True),
       keys=st.lists(st.binary(max_size=4), min_size=1, max_size=60, unique=True))
def test_assign_puts_each_key_in_the_last_leaf_starting_at_or_below_it(firsts, keys):
    firsts.sort()
    keys.sort()
    want: dict[int, list[bytes]] = {}
    for key in keys:
        want.setdefault(max(bisect_right(firsts, key) - 1, 0), []).append(key)
    got = tree._assign(keys, firsts)
    assert got == want
    assert list(got) == sorted(got)  # leaves in order
