"""Conformance suite every :class:`lockbox.codec.base.Codec` must pass.

Use by subclassing and providing a ``codec`` fixture::

    class TestMyCodec(CodecConformance):
        @pytest.fixture
        def codec(self):
            return MyCodec()

The class is not named ``Test*``, so pytest does not collect it alone. It
needs only the standard library and pytest (no zstd module): the frames it
inspects or builds by hand follow RFC 8878 §3.1.
"""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from lockbox.codec.base import Codec
from lockbox.errors import FormatError, LimitExceededError

__all__ = ["CodecConformance", "frame_info", "rle_frame"]

MiB = 1 << 20
MAGIC = b"\x28\xb5\x2f\xfd"
SKIPPABLE_FRAME = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip"
BOMB_SECONDS = 2.0  # generous: refusing a bomb takes milliseconds


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


CLI_PLAINTEXT = b"".join(
    b"%04d lockbox zstd conformance: the quick brown fox jumps over the lazy dog\n" % i
    for i in range(64)
)
CLI_PLAINTEXT_SHA256 = "6ce01a6af6aff19e82f705e50f952e88ea1aec651f3334ce73bb54b8a1e3ef7c"
# Made by Debian 12's zstd CLI (package 1.5.4+dfsg2-5, "v1.5.4"):
#   zstd -19 --check plain.txt -o file.zst   (content size recorded, XXH64 checksum)
CLI_FRAME_FILE = _hex("""
    28b52ffd64c011e5050062491d18706f0320d5df71c755ff36feffc7d392e492904ed55fef05edfb793f3af4e7ef
    eece9bb7f37a74f0bdbbd6bc2ec2f7ee5af3b608dfbb6bcddb11be77d79a97237cefae35ef2e704c42b14c60a2a2
    9a2a3d0da5e8350d75ac190dbac88482b440260d0ae9084d340d674a252629d36b0e8b9c8c6e41a811f0f67eec67
    f0350e32083008fefffff9038499876ddbb66ddbad7d593b77f7dcf7d9bb77e7cee5cc9dbb7bc771cd9dbb7be738
    ebceddbd73ec39095753e4533b07ec5de8ab
""")
#   zstd -3 --check < plain.txt > stdin.zst  (no content size, 2 MiB window, checksum)
CLI_FRAME_STDIN = _hex("""
    28b52ffd0458ad0500e2c81c1b70b53a9a84f73ba0ba0d03a9edc6ff3f1edabb2222c23f55ff9b38ab89ce96f2e6
    d5c4664b79f36a22b3a5bc793571d952debc9aa86c296f5e4d4cb69437af262206067f5cc0542c0e92f87b0e4c64
    38e9936b00de314e6985087108013a01d29a82713e69bedd013dd3496f28ed9743440c40a811905f3ff633f0350e
    126810f8ffffe70f7487637777efdef1daddddbb7bbc7677f7ee2eafdddd7977c7dbeeeededdf1dabbbb77e7a273
    d2a1b698ca2aec5de8ab
""")


def frame_info(frame: bytes) -> tuple[int | None, int]:
    """``(content_size or None, total frame length)`` by walking the frame (RFC 8878 §3.1.1)."""
    assert frame[:4] == MAGIC
    descriptor = frame[4]
    fcs_flag, single = descriptor >> 6, bool(descriptor & 0x20)
    fcs_size = (0, 2, 4, 8)[fcs_flag] if fcs_flag or not single else 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]
    content_size = None
    if fcs_size:
        content_size = int.from_bytes(frame[pos:pos + fcs_size], "little")
        content_size += 256 if fcs_size == 2 else 0
    pos += fcs_size
    while True:
        header = int.from_bytes(frame[pos:pos + 3], "little")
        block_type, block_size = (header >> 1) & 3, header >> 3
        assert block_type != 3, "reserved block type"
        pos += 3 + (1 if block_type == 1 else block_size)
        if header & 1:
            break
    pos += 4 if descriptor & 0x04 else 0
    assert pos <= len(frame), "frame is truncated"
    return content_size, pos


def rle_frame(total: int, *, declared: int | None = None, byte: int = 0) -> bytes:
    """A frame of ``total`` copies of ``byte`` made of 128 KiB RLE blocks (4 bytes each).

    1 MiB window; the content size field holds ``declared`` if given (it may lie).
    """
    block = 128 << 10
    assert total > 0 and total % block == 0
    if declared is None:
        header = MAGIC + bytes([0x00, 0x50])  # no content size; window 2**20
    else:
        header = MAGIC + bytes([0x80, 0x50]) + declared.to_bytes(4, "little")  # 4-byte FCS
    count = total // block
    body = bytearray()
    for i in range(count):
        last = 1 if i == count - 1 else 0
        body += (last | (1 << 1) | (block << 3)).to_bytes(3, "little") + bytes([byte])
    return header + bytes(body)


def _random(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def _text(size: int, seed: int = 3) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9)))
             for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += b"%d INFO %s\n" % (rng.randrange(10**6), b" ".join(rng.choices(words, k=8)))
    return bytes(out[:size])


ROUND_TRIP_DATA = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00", id="one-byte"),
    pytest.param(CLI_PLAINTEXT, id="small-text"),
    pytest.param(_text(300_007), id="text-300k"),
    pytest.param(_random(4 * MiB), id="random-4MiB"),
    pytest.param(b"lockbox!" * (MiB // 2), id="repetitive-4MiB"),
]


class CodecConformance:
    """Round trips, a foreign frame, decompression bombs and malformed input."""

    @pytest.fixture
    def codec(self) -> Codec:
        raise NotImplementedError("subclasses provide the codec fixture")

    def test_implements_protocol(self, codec: Codec) -> None:
        assert isinstance(codec, Codec)
        assert isinstance(codec.name, str) and codec.name

    # -- round trips ------------------------------------------------------------------------

    @pytest.mark.parametrize("data", ROUND_TRIP_DATA)
    def test_round_trip_is_one_frame_with_content_size(self, codec: Codec, data: bytes) -> None:
        frame = codec.compress(data)
        assert frame[:4] == MAGIC
        content_size, length = frame_info(frame)
        assert length == len(frame)  # exactly one frame, nothing after it
        assert content_size == len(data)
        assert codec.decompress(frame, len(data)) == data  # the bound is inclusive
        assert codec.decompress(frame, len(data) + 10 * MiB) == data
        if data:
            with pytest.raises(LimitExceededError):
                codec.decompress(frame, len(data) - 1)

    def test_compression_actually_compresses(self, codec: Codec) -> None:
        repetitive = b"lockbox!" * (MiB // 2)
        assert len(codec.compress(repetitive)) < len(repetitive) // 100
        text = _text(300_007)
        assert len(codec.compress(text)) < len(text) // 2
        noise = _random(MiB)
        assert len(codec.compress(noise)) <= len(noise) + 1024  # stored, small overhead

    @pytest.mark.parametrize("level", [-5, 1, 3, 9, 19])
    def test_levels(self, codec: Codec, level: int) -> None:
        data = _text(200_000, seed=level + 10)
        frame = codec.compress(data, level=level)
        assert frame_info(frame) == (len(data), len(frame))
        assert codec.decompress(frame, len(data)) == data

    def test_default_level_is_3_and_deterministic(self, codec: Codec) -> None:
        data = _text(100_000)
        assert codec.compress(data) == codec.compress(data, level=3)
        assert codec.compress(data, level=3) == codec.compress(data, 3)

    def test_many_frames_in_a_row(self, codec: Codec) -> None:
        chunks = [_text(50_000 + i, seed=i) for i in range(5)] + [b"", _random(1000)]
        frames = [codec.compress(chunk, level=1 + i % 3) for i, chunk in enumerate(chunks)]
        for chunk, frame in zip(chunks, frames):
            assert frame_info(frame) == (len(chunk), len(frame))
            assert codec.decompress(frame, len(chunk)) == chunk

    # -- a frame from another implementation ------------------------------------------------

    def test_decodes_cli_frame_with_content_size(self, codec: Codec) -> None:
        assert hashlib.sha256(CLI_PLAINTEXT).hexdigest() == CLI_PLAINTEXT_SHA256
        assert frame_info(CLI_FRAME_FILE) == (len(CLI_PLAINTEXT), len(CLI_FRAME_FILE))
        assert codec.decompress(CLI_FRAME_FILE, len(CLI_PLAINTEXT)) == CLI_PLAINTEXT
        with pytest.raises(LimitExceededError):
            codec.decompress(CLI_FRAME_FILE, len(CLI_PLAINTEXT) - 1)

    def test_decodes_cli_frame_without_content_size(self, codec: Codec) -> None:
        assert frame_info(CLI_FRAME_STDIN) == (None, len(CLI_FRAME_STDIN))
        assert codec.decompress(CLI_FRAME_STDIN, len(CLI_PLAINTEXT)) == CLI_PLAINTEXT
        with pytest.raises(LimitExceededError):
            codec.decompress(CLI_FRAME_STDIN, len(CLI_PLAINTEXT) - 1)
        with pytest.raises(LimitExceededError):
            codec.decompress(CLI_FRAME_STDIN, 0)

    # -- decompression bombs ----------------------------------------------------------------

    def test_hand_made_frames_are_valid(self, codec: Codec) -> None:
        # The bomb builder makes real frames: small ones decode to the expected bytes.
        assert codec.decompress(rle_frame(2 * MiB), 2 * MiB) == bytes(2 * MiB)
        assert codec.decompress(rle_frame(MiB, declared=MiB, byte=7), MiB) == b"\x07" * MiB

    @pytest.mark.parametrize("declared", [None, 64 * MiB], ids=["no-size", "declared-size"])
    def test_bomb_is_refused_quickly(self, codec: Codec, declared: int | None) -> None:
        bomb = rle_frame(64 * MiB, declared=declared)
        assert len(bomb) < 3000
        start = time.perf_counter()
        with pytest.raises(LimitExceededError):
            codec.decompress(bomb, MiB)
        assert time.perf_counter() - start < BOMB_SECONDS

    def test_bomb_with_understated_size_is_refused(self, codec: Codec) -> None:
        bomb = rle_frame(64 * MiB, declared=1000)  # says 1000 bytes, holds 64 MiB
        start = time.perf_counter()
        with pytest.raises(FormatError):
            codec.decompress(bomb, MiB)
        assert time.perf_counter() - start < BOMB_SECONDS

    def test_own_bomb_is_refused(self, codec: Codec) -> None:
        bomb = codec.compress(bytes(16 * MiB), level=1)  # 16 MiB: light enough for Pyodide
        assert len(bomb) < 16 * 1024
        start = time.perf_counter()
        with pytest.raises(LimitExceededError):
            codec.decompress(bomb, MiB)
        assert time.perf_counter() - start < BOMB_SECONDS

    # -- malformed input --------------------------------------------------------------------

    @pytest.mark.parametrize("data", [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x28\xb5\x2f", id="partial-magic"),
        pytest.param(MAGIC, id="magic-only"),
        pytest.param(_random(1000, seed=1), id="random"),
        pytest.param(b"not a zstd frame at all, just text", id="text"),
        pytest.param(MAGIC + _random(1000, seed=2), id="magic-then-garbage"),
        pytest.param(SKIPPABLE_FRAME, id="skippable-frame-only"),
        pytest.param(SKIPPABLE_FRAME + CLI_FRAME_FILE, id="skippable-then-frame"),
        pytest.param(MAGIC + b"\x08" + bytes(16), id="reserved-bit"),
    ])
    def test_garbage_is_format_error(self, codec: Codec, data: bytes) -> None:
        with pytest.raises(FormatError):
            codec.decompress(data, MiB)

    @pytest.mark.parametrize("frame", [CLI_FRAME_FILE, CLI_FRAME_STDIN],
                             ids=["cli-file", "cli-stdin"])
    def test_every_truncation_is_format_error(self, codec: Codec, frame: bytes) -> None:
        for cut in range(len(frame)):
            with pytest.raises(FormatError):
                codec.decompress(frame[:cut], MiB)

    def test_truncated_own_frame_is_format_error(self, codec: Codec) -> None:
        data = _text(300_007)
        frame = codec.compress(data)
        for cut in (1, 5, 6, len(frame) // 3, len(frame) // 2, len(frame) - 2, len(frame) - 1):
            with pytest.raises(FormatError):
                codec.decompress(frame[:cut], len(data))

    @pytest.mark.parametrize("suffix", [
        pytest.param(b"\x00", id="one-zero-byte"),
        pytest.param(b"garbage", id="garbage"),
        pytest.param(CLI_FRAME_FILE, id="second-frame"),
        pytest.param(SKIPPABLE_FRAME, id="skippable-frame"),
    ])
    def test_trailing_bytes_are_format_error(self, codec: Codec, suffix: bytes) -> None:
        for frame, size in ((CLI_FRAME_FILE, len(CLI_PLAINTEXT)),
                            (CLI_FRAME_STDIN, len(CLI_PLAINTEXT)),
                            (codec.compress(b"abc" * 1000), 3000),
                            (codec.compress(b""), 0)):
            with pytest.raises(FormatError):
                codec.decompress(frame + suffix, size + 10 * MiB)

    def test_corrupted_frame_is_format_error(self, codec: Codec) -> None:
        # The CLI frame carries an XXH64 checksum, so any damage is detected.
        size = len(CLI_PLAINTEXT)
        for index in (len(CLI_FRAME_FILE) - 1, len(CLI_FRAME_FILE) - 5, len(CLI_FRAME_FILE) // 2,
                      8, 4):
            damaged = bytearray(CLI_FRAME_FILE)
            damaged[index] ^= 0x55
            with pytest.raises(FormatError):
                codec.decompress(bytes(damaged), size)

    def test_rejects_negative_max_size(self, codec: Codec) -> None:
        with pytest.raises(ValueError):
            codec.decompress(codec.compress(b"x"), -1)

    def test_zero_max_size(self, codec: Codec) -> None:
        assert codec.decompress(codec.compress(b""), 0) == b""
        with pytest.raises(LimitExceededError):
            codec.decompress(codec.compress(b"x"), 0)
