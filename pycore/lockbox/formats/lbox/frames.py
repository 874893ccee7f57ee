"""Sealing and opening frames: the format's crypto construction, written once
for every backend. docs/FORMAT.md §5.

Writer side: a :class:`FrameSealer` is one *write session*: a random 128-bit
session id, a session key ``HKDF-SHA256(content_key, salt=session_id,
info="lockbox/v1/frame-key")`` and a 64-bit counter that numbers every frame
the session seals. The nonce is the counter, so it never repeats under a
session key; session keys do not repeat because session ids are random.

Reader side: a :class:`FrameOpener` derives (and caches) session keys from the
ids found in frame headers, checks the frame against the ref that pointed at
it, authenticates, and only then decompresses with a hard bound.
"""

from __future__ import annotations

from ...codec.base import Codec as CodecBackend
from ...crypto.base import Aead, AeadInto, CryptoBackend, FrameJob, aead_into
from ...errors import FormatError, IntegrityError, LimitExceededError, TruncatedError
from .wire.constants import (
    FRAME_HEADER_SIZE,
    LABEL_FRAME_KEY,
    MAX_COMMIT_PLAIN_SIZE,
    MAX_INDEX_PLAIN_SIZE,
    MAX_NODE_PLAIN_SIZE,
    MAX_PLAIN_CHUNK_PAYLOAD,
    TAG_SIZE,
    Codec,
    FrameKind,
)
from .wire.encoding import Reader, uvarint
from .wire.frame import (
    FrameHeader,
    decode_frame_header,
    encode_frame_header,
    frame_aad,
    frame_nonce,
)
from .wire.refs import Ref

__all__ = ["FrameSealer", "FrameOpener", "PLAIN_LIMITS", "session_key", "encode_plain",
           "decode_plain", "raw_plain_prefix"]

PLAIN_LIMITS = {
    FrameKind.COMMIT: MAX_COMMIT_PLAIN_SIZE,
    FrameKind.TOC_NODE: MAX_NODE_PLAIN_SIZE,
    FrameKind.ENV_NODE: MAX_NODE_PLAIN_SIZE,
    FrameKind.SPACE_NODE: MAX_NODE_PLAIN_SIZE,
    FrameKind.DATA_CHUNK: MAX_PLAIN_CHUNK_PAYLOAD,
    FrameKind.CHUNK_INDEX: MAX_INDEX_PLAIN_SIZE,
    FrameKind.PACK: MAX_PLAIN_CHUNK_PAYLOAD,  # version 3: one-chunk files packed together
}
_MIN_COMPRESS = 64
_ZSTD_BYTE = bytes([Codec.ZSTD])
_RAW_BYTE = bytes([Codec.RAW])


def session_key(crypto: CryptoBackend, content_key: bytes, session_id: bytes) -> bytes:
    return crypto.hkdf_sha256(content_key, session_id, LABEL_FRAME_KEY, 32)


class FrameSealer:
    """One write session. Not thread-safe: the ordered writer owns it."""

    def __init__(self, crypto: CryptoBackend, codec: CodecBackend, archive_id: bytes,
                 content_key: bytes, level: int = 3) -> None:
        self.crypto = crypto
        self.codec = codec
        self.archive_id = archive_id
        self.session_id = crypto.random_bytes(16)
        self._aead: Aead = crypto.aead(session_key(crypto, content_key, self.session_id))
        self.counter = 0
        self.level = level
        # The backend's in-place sealing (CPython), when it has one.
        self._into: AeadInto | None = aead_into(self._aead)

    def encode_plain(self, payload: bytes | bytearray | memoryview,
                     compress: bool = True) -> bytes:
        return encode_plain(self.codec, payload, self.level, compress)

    def seal_into(self, kind: FrameKind, generation: int, frame_offset: int,
                  plain: bytes | bytearray | memoryview, out: memoryview) -> Ref:
        """:meth:`seal`, the frame written into ``out`` (exactly ``FRAME_OVERHEAD +
        len(plain)`` bytes, not overlapping ``plain``) instead of a new bytes object: the
        same bytes, one copy fewer. Backends without ``seal_into`` seal and copy."""
        counter = self.counter
        self.counter = counter + 1
        size = len(plain)
        header = encode_frame_header(
            FrameHeader(kind, size + TAG_SIZE, generation, self.session_id, counter))
        end = FRAME_HEADER_SIZE + size + TAG_SIZE
        if len(out) != end:
            raise ValueError("seal_into: out must be the frame's size")
        out[:FRAME_HEADER_SIZE] = header
        aad = frame_aad(self.archive_id, header, frame_offset)
        if self._into is not None:
            self._into.seal_into(frame_nonce(counter), plain, aad, out[FRAME_HEADER_SIZE:end])
        else:
            out[FRAME_HEADER_SIZE:end] = self._aead.seal(frame_nonce(counter), bytes(plain),
                                                         aad)
        return Ref(frame_offset, end, bytes(out[end - TAG_SIZE:end]))

    def seal(self, kind: FrameKind, generation: int, frame_offset: int,
             plain: bytes) -> tuple[bytes, Ref]:
        """Seal already-encoded frame plaintext (see encode_plain) at ``frame_offset``."""
        counter = self.counter
        self.counter = counter + 1
        header = encode_frame_header(
            FrameHeader(kind, len(plain) + TAG_SIZE, generation, self.session_id, counter))
        sealed = self._aead.seal(frame_nonce(counter),
                                 plain, frame_aad(self.archive_id, header, frame_offset))
        frame = header + sealed
        return frame, Ref(frame_offset, len(frame), sealed[-TAG_SIZE:])


class FrameOpener:
    """Authenticates and opens frames of one archive."""

    def __init__(self, crypto: CryptoBackend, codec: CodecBackend, archive_id: bytes,
                 content_key: bytes) -> None:
        self.crypto = crypto
        self.codec = codec
        self.archive_id = archive_id
        self._content_key = content_key
        self._sessions: dict[bytes, Aead] = {}

    @property
    def content_key(self) -> bytes:
        return self._content_key

    def _aead_for(self, session_id: bytes) -> Aead:
        aead = self._sessions.get(session_id)
        if aead is None:
            if len(self._sessions) > 4096:
                self._sessions.clear()
            aead = self.crypto.aead(session_key(self.crypto, self._content_key, session_id))
            self._sessions[session_id] = aead
        return aead

    def open_at(self, blob: bytes | memoryview, frame_offset: int, kind: FrameKind | None,
                expected_tag: bytes | None = None) -> tuple[FrameHeader, bytes | memoryview]:
        """Authenticate the frame in ``blob`` (which starts at ``frame_offset``) and
        return its header and decompressed payload."""
        if len(blob) < FRAME_HEADER_SIZE:
            raise TruncatedError(f"frame at {frame_offset}: truncated")
        header = decode_frame_header(blob)
        if kind is not None and header.kind != kind:
            raise IntegrityError(
                f"frame at {frame_offset}: expected a {kind.name} frame, found {header.kind.name}")
        end = FRAME_HEADER_SIZE + header.sealed_size
        if len(blob) < end:
            raise TruncatedError(f"frame at {frame_offset}: truncated")
        sealed = memoryview(blob)[FRAME_HEADER_SIZE:end]
        if expected_tag is not None and bytes(sealed[-TAG_SIZE:]) != expected_tag:
            raise IntegrityError(f"frame at {frame_offset}: not the frame its parent points to")
        plain = self._aead_for(header.session_id).open(
            frame_nonce(header.counter), sealed,
            frame_aad(self.archive_id, blob[:FRAME_HEADER_SIZE], frame_offset))
        return header, decode_plain(self.codec, plain, PLAIN_LIMITS[header.kind])

    def authenticates_at(self, blob: bytes | memoryview, header: FrameHeader,
                         frame_offset: int) -> bool:
        """Whether the frame in ``blob`` (its decoded ``header`` given, ``blob`` at least
        ``header.frame_size`` bytes) authenticates at ``frame_offset`` under this
        opener's content key. Nothing is decoded or decompressed."""
        sealed = bytes(blob[FRAME_HEADER_SIZE:header.frame_size])
        try:
            self._aead_for(header.session_id).open(
                frame_nonce(header.counter), sealed,
                frame_aad(self.archive_id, blob[:FRAME_HEADER_SIZE], frame_offset))
        except IntegrityError:
            return False
        return True

    def open_ref_plain(self, blob: bytes | memoryview, ref: Ref, kind: FrameKind) -> bytes:
        """The authenticated frame plaintext (codec byte, size, body) of a ref'd frame,
        not decompressed: compaction re-seals it as it is at its new offset."""
        if len(blob) != ref.frame_size:
            raise TruncatedError(f"frame at {ref.frame_offset}: truncated")
        header = decode_frame_header(blob)
        if header.kind != kind or header.frame_size != ref.frame_size:
            raise IntegrityError(f"frame at {ref.frame_offset}: not the frame its ref names")
        sealed = memoryview(blob)[FRAME_HEADER_SIZE:header.frame_size]
        if bytes(sealed[-TAG_SIZE:]) != ref.tag:
            raise IntegrityError(f"frame at {ref.frame_offset}: not the frame its parent points to")
        return self._aead_for(header.session_id).open(
            frame_nonce(header.counter), sealed,
            frame_aad(self.archive_id, blob[:FRAME_HEADER_SIZE], ref.frame_offset))

    def job_for_ref(self, blob: bytes | memoryview, ref: Ref, kind: FrameKind) -> FrameJob:
        """What :meth:`open_ref` checks before it authenticates, and what it then
        authenticates, as a :class:`~lockbox.crypto.base.FrameJob` (for
        :func:`lockbox.crypto.base.open_frames` and the browser's worker pool). A short
        read is a TruncatedError; any damage to the header (the ref pins it), another
        size or kind, or another tag than the ref's is an IntegrityError."""
        offset = ref.frame_offset
        if len(blob) != ref.frame_size:
            raise TruncatedError(
                f"frame at {offset}: got {len(blob)} of {ref.frame_size} bytes "
                "(the archive is truncated)")
        try:
            header = decode_frame_header(blob)
        except LimitExceededError:
            raise
        except FormatError as e:
            raise IntegrityError(f"frame at {offset}: damaged header ({e})") from None
        if header.frame_size != ref.frame_size:
            raise IntegrityError(f"frame at {offset}: size differs from its ref")
        if header.kind != kind:
            raise IntegrityError(
                f"frame at {offset}: expected a {kind.name} frame, found {header.kind.name}")
        end = FRAME_HEADER_SIZE + header.sealed_size
        if len(blob) < end:
            raise TruncatedError(f"frame at {offset}: truncated")
        sealed = memoryview(blob)[FRAME_HEADER_SIZE:end]
        if bytes(sealed[-TAG_SIZE:]) != ref.tag:
            raise IntegrityError(f"frame at {offset}: not the frame its parent points to")
        return FrameJob(self._aead_for(header.session_id), frame_nonce(header.counter),
                        sealed, frame_aad(self.archive_id, blob[:FRAME_HEADER_SIZE], offset))

    def open_ref(self, blob: bytes | memoryview, ref: Ref,
                 kind: FrameKind) -> bytes | memoryview:
        """Open the frame an authenticated ref points to (:meth:`job_for_ref`'s checks,
        then authenticated and decompressed with the kind's bound). Any damage to its
        header is an IntegrityError (the ref pins it); a short read is a TruncatedError."""
        job = self.job_for_ref(blob, ref, kind)
        return decode_plain(self.codec, job.aead.open(job.nonce, job.sealed, job.aad),
                            PLAIN_LIMITS[kind])


def raw_plain_prefix(payload_size: int) -> bytes:
    """The first bytes of a RAW frame plaintext whose payload (``payload_size`` bytes)
    follows them: ``raw_plain_prefix(len(p)) + p == encode_plain(..., compress=False)``."""
    return _RAW_BYTE + uvarint(payload_size)


def encode_plain(codec: CodecBackend, payload: bytes | bytearray | memoryview, level: int = 3,
                 compress: bool = True) -> bytes:
    """Frame plaintext: codec byte, plain size, body (zstd frame, or raw when zstd
    does not save at least 1/64 of the size)."""
    if compress and len(payload) >= _MIN_COMPRESS:
        packed = codec.compress(payload, level)
        if len(packed) < len(payload) - len(payload) // 64:
            return _ZSTD_BYTE + uvarint(len(payload)) + packed
    return _RAW_BYTE + uvarint(len(payload)) + payload


def decode_plain(codec: CodecBackend, plain: bytes, limit: int) -> bytes | memoryview:
    """The payload of an authenticated frame plaintext (docs/FORMAT.md §5 "Frame
    plaintext"), in this order: the codec byte (not 0 or 1: FormatError); ``plain_size``
    (over ``limit``: LimitExceededError; a cut varint: TruncatedError); then the body.
    RAW: a body of another length than ``plain_size`` is a FormatError. ZSTD, decoded
    with the bound ``plain_size``: a declared content size or a window over the bound,
    or more output than ``plain_size``, is a LimitExceededError; anything else that is
    not exactly one complete zstd frame decoding to exactly ``plain_size`` bytes
    (corrupt or cut data, trailing bytes, a short result) is a FormatError — the
    frame is complete and authenticated, so a cut zstd frame is malformed, not a
    truncated archive."""
    r = Reader(plain, "frame body")
    codec_id = r.u8()
    if codec_id not in (Codec.RAW, Codec.ZSTD):
        raise FormatError(f"frame body: unknown codec {codec_id}")
    size = r.uvarint(limit)
    body = memoryview(plain)[r.pos :]
    if codec_id == Codec.RAW:
        if len(body) != size:
            raise FormatError(f"frame body: raw size mismatch ({len(body)} bytes, its size "
                              f"says {size})")
        return body
    try:
        out = codec.decompress(bytes(body), size)
    except LimitExceededError:
        raise
    except TruncatedError as exc:  # the zstd frame is cut short inside a whole frame
        raise FormatError(f"frame body: {exc}") from None
    if len(out) != size:
        raise FormatError(f"frame body: zstd data decodes to {len(out)} bytes, its size "
                          f"says {size}")
    return out
