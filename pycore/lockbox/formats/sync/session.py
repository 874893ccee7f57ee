"""``.sync`` behind the format-neutral protocol (``lockbox.protocol``).

:class:`SyncFormat` recognises a ZIP whose first local header names one of the fixed
``.sync`` entries and opens it with :func:`~.container.open_layout_flow` (the end
record, the central directory, the local headers) and the manifest. :class:`SyncSession`
shows ONE file at the root: the payload, under its display name --

* ``report.csv.sync`` -> ``report.csv`` (the archive's name already has an extension);
* ``report.sync`` with ``display_ext = "csv"`` (or ``".csv"``) -> ``report.csv``;
* no archive name known -> ``payload.<display_ext>``;
* a ``display_ext`` that is not a plain extension (``/``, ``..``, control characters,
  more than 32 characters) is not used (a warning says so).

The archive's file name comes in ``OpenOptions.settings["archive_name"]`` (``lockbox.open``
passes the basename of the path or URL). Reads of the payload are reads of its range in
the file (it is STORED). Its CRC-32 covers the whole payload: like ``.uri``, the first
partial read checks the whole payload once (in bounded windows) and remembers the
verdict, unless ``settings["unchecked_partial_reads"]`` is true (the viewer's
previews); whole reads and :meth:`SyncSession.stream_flow` check it in one pass.

A **vault** (``variant = "vault"``) payload is an age passphrase ciphertext: reading it
needs ``secrets["passphrase"]`` (or ``secrets["password"]``, what the generic CLI passes
from ``--password-file`` / ``LOCKBOX_PASSWORD``); without it a read raises UsageError, a
wrong one WrongKeyError. The ciphertext (at most ``settings["max_vault_size"]``, default
256 MiB) is decrypted once and the plaintext kept by the session. Everything else --
listing, ``info``, ``verify`` -- works without the passphrase.

``settings``: ``strict`` (default True; False opens leniently, see ``container``),
``archive_name``, ``unchecked_partial_reads``, ``max_vault_size``,
``max_scrypt_log_n``, ``crypto``, ``now`` (a datetime for the expiry, tests).
Public attributes: ``layout`` (:class:`~.container.SyncLayout`), ``manifest``
(:class:`~.manifest.Manifest`), ``payload_name``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ...drivers import Flow, Read
from ...errors import (
    IntegrityError,
    InvalidPathError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    UsageError,
)
from ...info import EntryInfo
from ...protocol import CheckReport, Emit, OpenOptions, SessionInfo
from ...ranges import ByteRange
from .container import (
    DATA_WINDOW_SIZE,
    HEAD_READ_SIZE,
    MANIFEST_NAME,
    MAX_MANIFEST_SIZE,
    PAYLOAD_NAME,
    SYNC_NAMES,
    SyncLayout,
    open_layout_flow,
    read_entry_flow,
    stream_entry_flow,
)
from .zipfmt import LOCAL_HEADER_SIZE, LOCAL_SIG, ZipEntry

if TYPE_CHECKING:  # pragma: no cover
    from ...crypto.base import CryptoBackend
    from .manifest import Manifest
    from .signing import SignatureStatus

__all__ = ["SyncFormat", "SyncSession", "display_name", "age_plaintext_size",
           "MAX_VAULT_SIZE", "FILE_MODE",
           "ROOT_MODE", "PROBE_SIZE"]

MiB = 1024 * 1024
MAX_VAULT_SIZE = 256 * MiB
"""The largest vault payload decrypted (it is decrypted whole, in memory)."""

FILE_MODE = 0o644
ROOT_MODE = 0o755
PROBE_SIZE = LOCAL_HEADER_SIZE + max(len(n) for n in SYNC_NAMES)

_EXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
_SYNC_NAMES_RAW = frozenset(n.encode("ascii") for n in SYNC_NAMES)


def display_name(archive_name: str | None, display_ext: str) -> str:
    """The payload's file name (see the module docstring); never empty, never with
    ``/``, never ``.`` or ``..``."""
    ext = display_ext[1:] if display_ext.startswith(".") else display_ext
    if ext and (not _EXT.fullmatch(ext) or ".." in ext):
        ext = ""
    base = os.path.basename((archive_name or "").replace("\\", "/").rstrip("/"))
    if base.lower().endswith(".sync"):
        stem = base[:-5]
    else:
        stem = os.path.splitext(base)[0] if "." in base.lstrip(".") else base
    if not stem or stem.strip(".") == "" or "\x00" in stem:
        stem = "payload"
    if "." in stem.lstrip(".") and base.lower().endswith(".sync"):
        return stem  # report.csv.sync -> report.csv
    return f"{stem}.{ext}" if ext else stem


def _query(path: str) -> str:
    if "\x00" in path:
        raise InvalidPathError(f"path contains NUL: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPathError(f"path escapes the archive root: {path!r}")
    return "/".join(parts)


def _jsonable(value: Any) -> Any:
    """TOML values as JSON values (datetimes and dates as ISO 8601 text)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return value


_AGE_HEAD_READ = 4096   # a passphrase age header is about 150 bytes
_AGE_CHUNK = 64 * 1024
_AGE_TAG = 16
_AGE_NONCE = 16


def age_plaintext_size(start: bytes, ciphertext_size: int) -> int | None:
    """The plaintext size of a binary age file of ``ciphertext_size`` bytes that starts
    with ``start`` (its header, then a 16-byte nonce and 64 KiB chunks each with a
    16-byte tag); None when the header is not in ``start`` or the sizes do not fit."""
    from .vault import parse_age_header

    try:
        header = parse_age_header(start)
    except LockboxError:
        return None
    body = ciphertext_size - header.size - _AGE_NONCE
    if body < _AGE_TAG:
        return None
    full, rest = divmod(body, _AGE_CHUNK + _AGE_TAG)
    if rest == 0:
        return full * _AGE_CHUNK
    if rest < _AGE_TAG:
        return None
    return full * _AGE_CHUNK + rest - _AGE_TAG


class SyncSession:
    """One opened ``.sync`` (a :class:`lockbox.protocol.FormatSession`)."""

    def __init__(self, layout: SyncLayout, manifest: Manifest, options: OpenOptions) -> None:
        st, s = options.settings, options.secrets
        self.layout = layout
        self.manifest = manifest
        self.size = layout.size
        self.archive_name: str | None = st.get("archive_name")
        self.payload_name = display_name(self.archive_name, manifest.display_ext)
        self.warnings: list[str] = list(layout.warnings) + list(manifest.warnings)
        ext = manifest.display_ext
        ext = ext[1:] if ext.startswith(".") else ext
        if ext and (not _EXT.fullmatch(ext) or ".." in ext):
            self.warnings.append(f"display_ext {ext!r} is not a plain file extension: "
                                 "not used in the payload's name")
        self.unchecked_partial_reads = bool(st.get("unchecked_partial_reads", False))
        self.max_vault_size = int(st.get("max_vault_size", MAX_VAULT_SIZE))
        self.max_scrypt_log_n: int | None = st.get("max_scrypt_log_n")
        self._crypto: CryptoBackend | None = st.get("crypto")
        self._now: _dt.datetime | None = st.get("now")
        passphrase = s.get("passphrase", s.get("password"))
        if isinstance(passphrase, bytes):
            passphrase = passphrase.decode("utf-8")
        self._passphrase: str | None = passphrase
        self._crc_verdict: str | bool | None = False  # False: unknown, None: ok, str: error
        self._plaintext: bytes | None = None
        self.vault_plaintext_size: int | None = None  # from the age framing, at open
        self._payload_blake3: bytes | None = None

    # -- helpers -------------------------------------------------------------------

    @property
    def is_vault(self) -> bool:
        return bool(self.manifest.is_vault)

    def _crypto_backend(self) -> CryptoBackend:
        if self._crypto is None:
            from ...platform import default_crypto
            self._crypto = default_crypto()
        return self._crypto

    def _now_utc(self) -> _dt.datetime:
        return self._now or _dt.datetime.now(_dt.UTC)

    def _payload_entry_info(self) -> EntryInfo:
        size = self._payload_size()
        return EntryInfo(self.payload_name, "file", FILE_MODE, 0, size, size)

    def _payload_size(self) -> int:
        if self._plaintext is not None:
            return len(self._plaintext)
        if self.is_vault and self.vault_plaintext_size is not None:
            return self.vault_plaintext_size
        if self.layout.payload is None:
            return 0
        return self.layout.payload_size

    def _entries(self) -> list[EntryInfo]:
        return [self._payload_entry_info()] if self.layout.payload is not None else []

    def _file(self, path: str) -> str:
        q = _query(path)
        if q == "":
            raise InvalidPathError("not a file: / (a directory)")
        if q != self.payload_name or self.layout.payload is None:
            raise NotFoundError(f"no such file or directory in the archive: {path}")
        return q

    # -- the protocol ----------------------------------------------------------------

    def info(self) -> SessionInfo:
        m = self.manifest
        now = self._now_utc()
        payload = self.layout.payload
        expires_at = m.expires_at()
        details: dict[str, Any] = {
            "manifest": _jsonable(m.data),
            "payload_name": self.payload_name if payload is not None else None,
            "payload_offset": self.layout.payload_offset if payload is not None else None,
            "payload_size": self.layout.payload_size if payload is not None else None,
            "variant": m.variant,
            "vault": self.is_vault,
            "content_type": m.content_type,
            "expired": m.is_expired(now),
            "expires_in": m.expires_in(now),
            "expires_at": None if expires_at is None else expires_at.isoformat(),
            "signature": self.signature_status_dict(),
            "entries": list(self.layout.entries),
            "zip64": self.layout.zip64,
            "strict": self.layout.strict,
            "warnings": list(self.warnings),
        }
        entries = 1 if payload is not None else 0
        file_bytes = self._payload_size() if self._plaintext is not None or \
            not self.is_vault or self.vault_plaintext_size is not None else None
        return SessionInfo("sync", self.is_vault, self.size, entries, file_bytes, details)

    def stat_flow(self, path: str) -> Flow[EntryInfo]:
        if _query(path) == "":
            return EntryInfo("", "dir", ROOT_MODE, 0)
        self._file(path)
        return self._payload_entry_info()
        yield  # pragma: no cover - a flow without reads

    def listdir_flow(self, path: str) -> Flow[list[EntryInfo]]:
        if _query(path) != "":
            self._file(path)
            raise InvalidPathError(f"not a directory: {path}")
        return self._entries()
        yield  # pragma: no cover

    def walk_flow(self, path: str, emit: Emit) -> Flow[None]:
        q = _query(path)
        if q:
            self._file(path)
        entries = self._entries()
        if entries:
            emit(entries)
        return None
        yield  # pragma: no cover

    def read_flow(self, path: str, offset: int, size: int) -> Flow[bytes]:
        if offset < 0 or size < 0:
            raise UsageError(f"invalid read of {size} bytes at offset {offset}")
        self._file(path)
        if self.is_vault:
            plain = yield from self._plaintext_flow()
            return plain[offset: offset + size]
        r = self.layout.payload_range
        start, stop = min(offset, r.size), min(r.size, offset + size)
        if stop <= start:
            return b""
        if start == 0 and stop == r.size and self._crc_verdict is False:
            pieces: list[bytes] = []
            yield from self._checked_stream_flow(pieces.append, r.size)
            return b"".join(pieces)
        if not self.unchecked_partial_reads:
            yield from self._check_crc_flow()
        return (yield from self.layout.read_flow(r.offset + start, stop - start))

    def stream_flow(self, path: str, sink: Callable[[bytes], None]) -> Flow[int]:
        """The whole payload to ``sink`` in pieces of at most 4 MiB; the CRC-32 (and, for
        a vault, age's authentication) is checked before the last piece."""
        self._file(path)
        if self.is_vault:
            plain = yield from self._plaintext_flow()
            for i in range(0, len(plain), DATA_WINDOW_SIZE):
                sink(plain[i: i + DATA_WINDOW_SIZE])
            return len(plain)
        return (yield from self._checked_stream_flow(sink, DATA_WINDOW_SIZE))

    def verify_flow(self, progress: Callable[[str, int], None] | None = None
                    ) -> Flow[CheckReport]:
        """Every entry's CRC-32 (and size; DEFLATE entries inflated within bounds), then
        the embedded signature when the manifest has one (its payload hash included)."""
        report = CheckReport()
        signed = self.manifest.signature
        wants_hash = signed is not None and signed.get("payload_hash") is not None
        for entry in sorted(self.layout.entries.values(), key=lambda e: e.header_offset):
            yield from self._verify_entry_flow(entry, report, progress,
                                               entry.name == PAYLOAD_NAME and wants_hash)
        if signed is not None:
            if wants_hash and self._payload_blake3 is None:
                report.problems.append("the embedded signature was not checked: the payload "
                                       "could not be read")
            else:
                status = self._signature_status()
                if status is not None and not status.valid:
                    report.problems.append(f"embedded signature invalid: {status.reason}")
        return report

    def _verify_entry_flow(self, entry: ZipEntry, report: CheckReport,
                           progress: Callable[[str, int], None] | None,
                           hash_it: bool) -> Flow[None]:
        hasher = self._crypto_backend().blake3() if hash_it else None
        hashed = 0

        def sink(piece: bytes) -> None:
            nonlocal hashed
            report.bytes_checked += len(piece)
            if hasher is not None:
                hasher.update(piece)
                hashed += len(piece)
            if progress is not None:
                progress(entry.name, len(piece))

        try:
            yield from stream_entry_flow(self.layout, entry.name, sink, hold_last=False)
            if entry.name == PAYLOAD_NAME:
                self._crc_verdict = None
        except LockboxError as e:
            report.problems.append(f"{type(e).__name__}: {e}")
            if entry.name == PAYLOAD_NAME:
                self._crc_verdict = str(e)
        # a payload read whole is hashed even when its CRC failed: the signature's
        # verdict is then reported too
        if hasher is not None and hashed == entry.compressed_size:
            self._payload_blake3 = hasher.digest()
        report.entries_checked += 1

    # -- signature -----------------------------------------------------------------

    def _signature_status(self) -> SignatureStatus | None:
        """The embedded signature's status; None while the payload hash it needs is not
        known yet (see :meth:`signature_flow`)."""
        from .signing import verify_embedded

        sig = self.manifest.signature
        if sig is not None and sig.get("payload_hash") is not None and \
                self._payload_blake3 is None:
            return None
        return verify_embedded(self.manifest, self._payload_blake3, crypto=self._crypto)

    def signature_status_dict(self) -> dict[str, Any]:
        """For ``info``: the status, or ``{"kind": "embedded", "valid": None, ...}`` when
        the payload hash has not been computed yet (``verify`` or :meth:`signature_flow`
        compute it)."""
        try:
            status = self._signature_status()
        except LockboxError as e:  # info never raises
            return {"kind": "embedded", "valid": False, "signer": None, "reason": str(e)}
        if status is None:
            return {"kind": "embedded", "valid": None, "signer": self.manifest.created_by,
                    "reason": "not checked yet: the payload hash is computed by verify"}
        return status.to_dict()

    def signature_flow(self) -> Flow[SignatureStatus]:
        """Check the embedded signature, hashing the payload (in bounded windows) when
        the signature covers it."""
        from .signing import verify_embedded

        sig = self.manifest.signature
        if sig is not None and sig.get("payload_hash") is not None and \
                self._payload_blake3 is None and self.layout.payload is not None:
            hasher = self._crypto_backend().blake3()
            r = self.layout.payload_range
            pos = 0
            while pos < r.size:
                n = min(DATA_WINDOW_SIZE, r.size - pos)
                hasher.update((yield from self.layout.read_flow(r.offset + pos, n)))
                pos += n
            self._payload_blake3 = hasher.digest()
        return verify_embedded(self.manifest, self._payload_blake3, crypto=self._crypto)

    # -- payload -------------------------------------------------------------------

    def _checked_stream_flow(self, sink: Callable[[bytes], None], window: int) -> Flow[int]:
        if isinstance(self._crc_verdict, str):
            raise IntegrityError(self._crc_verdict)
        try:
            n = yield from stream_entry_flow(self.layout, PAYLOAD_NAME, sink,
                                             window_size=window, hold_last=True)
        except IntegrityError as e:
            self._crc_verdict = str(e)
            raise
        self._crc_verdict = None
        return n

    def _check_crc_flow(self) -> Flow[None]:
        if self._crc_verdict is None:
            return
        yield from self._checked_stream_flow(lambda piece: None, DATA_WINDOW_SIZE)

    def _plaintext_flow(self) -> Flow[bytes]:
        if self._plaintext is not None:
            return self._plaintext
        if not self._passphrase:
            raise UsageError("this .sync is a vault (an age-encrypted payload): its "
                             "passphrase is needed to read it (--password-file FILE, "
                             "LOCKBOX_PASSWORD, or a terminal to ask on)")
        r = self.layout.payload_range
        if r.size > self.max_vault_size:
            raise LimitExceededError(f"the vault payload is {r.size} bytes, over the limit "
                                     f"of {self.max_vault_size} (setting 'max_vault_size')")
        pieces: list[bytes] = []
        yield from self._checked_stream_flow(pieces.append, DATA_WINDOW_SIZE)
        from .vault import decrypt_vault

        kwargs: dict[str, Any] = {"crypto": self._crypto}
        if self.max_scrypt_log_n is not None:
            kwargs["max_scrypt_log_n"] = self.max_scrypt_log_n
        self._plaintext = decrypt_vault(b"".join(pieces), self._passphrase, **kwargs)
        return self._plaintext


class SyncFormat:
    """The ``.sync`` container of sync-rs (a :class:`lockbox.protocol.FormatSpec`)."""

    name: ClassVar[str] = "sync"
    title: ClassVar[str] = ".sync container"
    extensions: ClassVar[tuple[str, ...]] = (".sync",)
    probe_size: ClassVar[int] = PROBE_SIZE
    encrypted: ClassVar[bool] = False   # a vault's payload is; the container is not
    writable: ClassVar[bool] = True

    @staticmethod
    def probe(head: bytes) -> bool:
        """A ZIP local header at byte 0 whose entry name is one of the ``.sync`` names
        (sync-rs writes ``manifest.toml`` first; other writers may start with another)."""
        if len(head) < LOCAL_HEADER_SIZE or bytes(head[:4]) != LOCAL_SIG:
            return False
        name_size = int.from_bytes(head[26:28], "little")
        return bytes(head[LOCAL_HEADER_SIZE: LOCAL_HEADER_SIZE + name_size]) in _SYNC_NAMES_RAW

    def open_flow(self, size: int | None, options: OpenOptions) -> Flow[SyncSession]:
        """Find the layout (the registry's probe answers the reads at the start of the
        file: over HTTP a ``.sync`` opens with one round trip after the probe, the tail),
        then read and parse the manifest (from bytes already read, in practice)."""
        from .manifest import Manifest

        strict = bool(options.settings.get("strict", True))
        head = None
        if size is None:
            blobs = yield Read((ByteRange(0, HEAD_READ_SIZE),))
            head = bytes(blobs[0])
        layout = yield from open_layout_flow(size, head, strict=strict)
        raw = yield from read_entry_flow(layout, MANIFEST_NAME, max_size=MAX_MANIFEST_SIZE)
        manifest = Manifest.parse(raw, strict=strict)
        session = SyncSession(layout, manifest, options)
        if manifest.is_vault and layout.payload is not None:
            # the plaintext's size, from the age header's length (the registry's probe
            # holds the payload's start in practice: no round trip)
            r = layout.payload_range
            start = yield from layout.read_flow(r.offset, min(r.size, _AGE_HEAD_READ))
            session.vault_plaintext_size = age_plaintext_size(start, r.size)
        return session
