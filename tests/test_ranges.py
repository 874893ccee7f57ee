"""lockbox.ranges: coalescing and cutting answers back (copies or views)."""

from __future__ import annotations

import random

import pytest

from lockbox.ranges import ByteRange, coalesce, split_coalesced


def _cut_both(data: bytes, wanted: list[ByteRange], max_gap: int = 0,
              make=bytes) -> tuple[list[bytes], list[bytes | memoryview], list]:
    merged = coalesce(wanted, max_gap)
    blobs = [make(data[m.offset:m.end]) for m in merged]
    return (split_coalesced(wanted, merged, blobs), split_coalesced(wanted, merged, blobs,
                                                                    views=True), blobs)


@pytest.mark.parametrize("seed", range(20))
def test_views_equal_copies_and_the_source(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(4096)
    wanted = []
    for _ in range(rng.randrange(1, 30)):
        offset = rng.randrange(0, 4096)
        wanted.append(ByteRange(offset, rng.randrange(0, min(300, 4096 - offset) + 1)))
    copies, views, _ = _cut_both(data, wanted, max_gap=rng.choice([0, 16, 512]))
    assert [bytes(v) for v in views] == copies == [data[w.offset:w.end] for w in wanted]
    assert all(type(c) is bytes for c in copies)


def test_views_of_bytes_copies_of_mutable_blobs() -> None:
    data = bytes(range(200))
    wanted = [ByteRange(0, 10), ByteRange(10, 20), ByteRange(100, 50)]
    _, views, blobs = _cut_both(data, wanted)
    assert [type(v) for v in views] == [memoryview, memoryview, bytes]
    assert views[2] is blobs[1]  # a whole blob is that blob
    assert views[0].readonly and views[0].obj is blobs[0]
    # a mutable blob (a reused buffer) is copied: changing it later changes no piece
    _, pieces, blobs = _cut_both(data, wanted, make=bytearray)
    blobs[0][:] = bytes(len(blobs[0]))
    assert [type(p) for p in pieces] == [bytes, bytes, bytes]
    assert pieces[0] == data[:10] and pieces[1] == data[10:30]


def test_short_blob_gives_short_pieces_never_padded() -> None:
    wanted = [ByteRange(0, 10), ByteRange(10, 10)]
    merged = coalesce(wanted)
    for views in (False, True):
        out = split_coalesced(wanted, merged, [b"x" * 14], views=views)  # type: ignore[call-overload]
        assert [bytes(p) for p in out] == [b"x" * 10, b"x" * 4]
