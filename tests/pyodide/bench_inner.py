"""Inside Pyodide: throughput of the browser backends (run by ``harness.py --bench``).

Prints a Markdown table. Figures: medians of ``REPEAT`` runs after one warm-up run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import statistics
import time
from collections.abc import Callable

from lockbox.codec.zstd import ZstdCodec
from lockbox.crypto.browser import BrowserCryptoBackend

MiB = 1 << 20
CHUNKS = 32  # 32 x 1 MiB
REPEAT = 3


def median_seconds(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    fn()  # warm-up (WASM heap growth, JIT)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def half_entropy(size: int, seed: int) -> bytes:
    """~2:1 compressible data (4 bits of entropy per byte), like the notes' zstd figure."""
    rng = random.Random(seed)
    nibbles = rng.randbytes(size // 2)
    out = bytearray(size)
    out[0::2] = bytes(b & 0x0F for b in nibbles)
    out[1::2] = bytes(b >> 4 for b in nibbles)
    return bytes(out)


def main() -> None:
    crypto = BrowserCryptoBackend()
    codec = ZstdCodec()
    rows: list[tuple[str, str]] = []
    total = CHUNKS * MiB

    chunks = [hashlib.shake_256(i.to_bytes(4, "little")).digest(MiB) for i in range(CHUNKS)]
    aead = crypto.aead(bytes(range(32)))
    nonces = [i.to_bytes(12, "little") for i in range(CHUNKS)]
    sealed = [aead.seal(n, c, b"aad") for n, c in zip(nonces, chunks)]

    def seal_all() -> None:
        for n, c in zip(nonces, chunks):
            aead.seal(n, c, b"aad")

    def open_all() -> None:
        for n, s in zip(nonces, sealed):
            aead.open(n, s, b"aad")

    def blake3_all() -> None:
        h = crypto.blake3()
        for c in chunks:
            h.update(c)
        h.digest()

    def open_and_hash() -> None:
        h = crypto.blake3()
        for n, s in zip(nonces, sealed):
            h.update(aead.open(n, s, b"aad"))
        h.digest()

    for label, fn in [("ChaCha20-Poly1305 seal, 1 MiB chunks", seal_all),
                      ("ChaCha20-Poly1305 open, 1 MiB chunks", open_all),
                      ("BLAKE3 update, 1 MiB chunks", blake3_all),
                      ("AEAD open + BLAKE3, 1 MiB chunks", open_and_hash)]:
        seconds = median_seconds(fn)
        rows.append((label, f"{total / MiB / seconds:.0f} MiB/s"))

    salt = bytes(range(16))
    seconds = median_seconds(lambda: crypto.argon2id(
        b"password", salt, time_cost=3, memory_kib=65536, parallelism=1, length=32))
    rows.append(("Argon2id t=3 m=64 MiB p=1 (libsodium)", f"{seconds:.2f} s"))
    seconds = median_seconds(lambda: crypto.argon2id(
        b"password", b"somesalt", time_cost=3, memory_kib=65536, parallelism=1, length=32),
        repeat=1)
    rows.append(("Argon2id t=3 m=64 MiB, 8-byte salt (hash-wasm via JSPI)", f"{seconds:.2f} s"))

    plain = half_entropy(total, seed=5)
    frames = [codec.compress(plain[i:i + MiB]) for i in range(0, total, MiB)]
    whole = codec.compress(plain)
    ratio = len(plain) / sum(map(len, frames))
    seconds = median_seconds(lambda: [codec.decompress(f, MiB) for f in frames])
    rows.append((f"zstd decompress, 1 MiB frames (ratio {ratio:.2f})",
                 f"{total / MiB / seconds:.0f} MiB/s"))
    seconds = median_seconds(lambda: codec.decompress(whole, total))
    rows.append(("zstd decompress, one 32 MiB frame", f"{total / MiB / seconds:.0f} MiB/s"))
    seconds = median_seconds(lambda: [codec.compress(plain[i:i + MiB])
                                      for i in range(0, total, MiB)], repeat=1)
    rows.append(("zstd compress level 3, 1 MiB frames", f"{total / MiB / seconds:.0f} MiB/s"))

    server = os.environ.get("LOCKBOX_TEST_SERVER", "").rstrip("/")
    served = os.environ.get("LOCKBOX_TEST_SERVED_DIR", "")
    if server and served:
        import lockbox

        with open(os.path.join(served, "e2e.json")) as f:
            expected = json.load(f)
        url = f"{server}/files/{expected['archive']}"

        async def read_archive() -> tuple[float, float, int, int]:
            started = time.perf_counter()
            box = await lockbox.open_async(url, password=expected["password"])
            unlocked = time.perf_counter() - started
            async with box:
                await box.ls()
                started = time.perf_counter()
                data = await box.read_bytes("data/random.bin")
                read = time.perf_counter() - started
                return unlocked, read, len(data), box.source.stats.requests

        async def raw_fetch() -> tuple[float, int]:
            from lockbox.ranges import ByteRange
            from lockbox.sources.browser import FetchRangeSource

            async with FetchRangeSource(url) as src:
                await src.read([ByteRange(0, 1)])
                started = time.perf_counter()
                blob = (await src.read([ByteRange(0, src.size or 0)]))[0]
                return time.perf_counter() - started, len(blob)

        raw_seconds, raw_size = asyncio.run(raw_fetch())
        rows.append((f"FetchRangeSource, one {raw_size / MiB:.1f} MiB range from uvicorn",
                     f"{raw_size / MiB / raw_seconds:.0f} MiB/s"))
        unlocked, read, size, requests = asyncio.run(read_archive())
        rows.append(("open_async over fetch (Argon2id default params + superblock)",
                     f"{unlocked:.2f} s"))
        rows.append((f"read_bytes of a {size / MiB:.1f} MiB random file over fetch",
                     f"{size / MiB / read:.0f} MiB/s ({requests} requests in all)"))

    print("\n| in Pyodide 314.0.7 under Node " + os.environ.get("NODE_VERSION", "") +
          " | figure |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


main()
