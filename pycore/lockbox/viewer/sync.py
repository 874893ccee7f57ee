"""The viewer's ``.sync`` extension: what only a ``.sync`` container has, in one place.

Everything else (the listing: one file, the payload under its display name; previews;
downloads) goes through the format-neutral protocol in :mod:`lockbox.viewer.session`.
Here, through the session's ``layout`` and ``manifest`` (:mod:`lockbox.formats.sync`):

* the panel: the manifest's tables, freshness (expired, expires in), the payload's
  offset and size in the file, how its ``content_type`` is previewed
  (:func:`preview_kind`), whether it has an update hook (:meth:`SyncExtension.info`);
* the embedded signature, checked in the page (:meth:`SyncExtension.signature`: the
  payload is hashed range by range, BLAKE3 through the crypto backend, Ed25519 through its
  ``ed25519_verify``; the ranges stay in the viewer's range cache for the preview);
* a vault payload's passphrase: the page's unlock form asks for it, the session decrypts
  in the page (age through the crypto backend); nothing secret leaves the page;
* the update hook: what the page's hook worker needs (:meth:`SyncExtension.hook_plan`:
  ``policy.timeout``, the effective allow-list, the limits; the module and
  ``context.json`` by :meth:`SyncExtension.entry`), and the updated ``.sync`` built from
  the payload the hook wrote (:meth:`SyncExtension.updated`): the same bytes as
  ``lockbox sync update`` writes for the same new payload and time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import LimitExceededError, UsageError
from ..ranges import ByteRange
from .driving import Recorder

__all__ = ["SyncExtension", "preview_kind", "hook_limits", "HookLimitsJson", "ENTRY_MAX",
           "HOOK_PAYLOAD_MAX", "MAX_TIMEOUT_S"]

ENTRY_MAX = 64 * 1024 * 1024  # sync.wasm, context.json, sync.proof: read whole up to this size
# A hook run holds the payload, the module's memory and the new payload in the page.
HOOK_PAYLOAD_MAX = 256 * 1024 * 1024

_TEXT_TYPES = {"application/xml", "application/toml", "application/x-toml", "application/yaml",
               "application/x-yaml", "application/javascript", "application/ecmascript",
               "application/x-sh", "application/sql", "application/x-ndjson",
               "application/jsonl", "application/x-jsonlines"}


def preview_kind(content_type: str) -> str:
    """How the page previews a payload of ``content_type``: ``json`` (pretty-printed),
    ``csv``/``tsv`` (a table), ``text``, ``image``, ``audio``, ``video``, ``pdf``, else
    ``binary`` (hex, and a download)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media in ("text/csv", "application/csv"):
        return "csv"
    if media == "text/tab-separated-values":
        return "tsv"
    for kind in ("image", "audio", "video"):  # an SVG image too (an <img> runs no script)
        if media.startswith(kind + "/"):
            return kind
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+xml"):
        return "text"
    if media == "application/pdf":
        return "pdf"
    return "binary"


@dataclass(frozen=True)
class HookLimitsJson:
    """The limits the page's hook worker enforces: those of the CPython runner
    (``lockbox.formats.sync.hook.runner.HookLimits``, whose defaults these are; that
    module needs wasmtime, so it is not imported here, and a test checks they agree),
    except ``max_redirects``: a page cannot re-check where a redirect leads, so it
    follows none."""

    timeout_s: float
    memory_bytes: int = 64 * 2**20
    response_bytes: int = 16 * 2**20
    write_bytes: int = 256 * 2**20
    max_redirects: int = 0
    max_requests: int = 64
    wasm_bytes: int = 16 * 2**20

    def to_json(self) -> dict[str, Any]:
        """As the hook worker takes them (``webapp/src/hook-worker.mjs``)."""
        return {"timeout_ms": round(self.timeout_s * 1000), "memoryBytes": self.memory_bytes,
                "responseBytes": self.response_bytes, "writeBytes": self.write_bytes,
                "maxRedirects": self.max_redirects, "maxRequests": self.max_requests,
                "wasmBytes": self.wasm_bytes}


MAX_TIMEOUT_S = 86_400.0  # as the CPython runner: a u64 policy.timeout is clamped to a day


def _jsonable(value: Any) -> Any:
    """A manifest value as JSON (TOML dates become RFC 3339 text)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _utc_text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SyncExtension:
    """One opened ``.sync`` (its :class:`~lockbox.formats.sync.session.SyncSession`) and
    the source it reads through."""

    def __init__(self, session: Any, source: Recorder, payload_path: str) -> None:
        self.session = session
        self.source = source
        self.payload_path = payload_path
        self._signature: dict[str, Any] | None = None
        self._entries: dict[str, bytes] = {}

    @property
    def manifest(self) -> Any:
        return self.session.manifest

    @property
    def layout(self) -> Any:
        return self.session.layout

    # -- the panel ------------------------------------------------------------------------

    def has_hook(self) -> bool:
        from ..formats.sync.container import WASM_STUB

        entry = self.layout.wasm
        return entry is not None and entry.uncompressed_size > len(WASM_STUB)

    def info(self, now: datetime | None = None) -> dict[str, Any]:
        """The panel's data: ``manifest`` (every table, unknown keys included), ``fresh``
        (``expired``, ``expires_in_s``, ``expires_at``, ``created_at``), ``payload``
        (``path``, ``offset``, ``size``, ``content_type``, ``preview``), ``entries`` (the
        ZIP's, with sizes), ``hook`` (whether there is one), ``signature``."""
        m = self.manifest
        now = now or datetime.now(UTC)
        layout = self.layout
        entries = [{"name": name, "size": e.uncompressed_size, "stored_size": e.compressed_size,
                    "method": "stored" if e.method == 0 else "deflate" if e.method == 8
                    else str(e.method)}
                   for name, e in layout.entries.items()]
        sig = m.signature
        return {
            "manifest": _jsonable(m.data),
            "warnings": list(getattr(m, "warnings", ()) or ()) + list(
                getattr(layout, "warnings", ()) or ()),
            "variant": m.variant, "vault": m.is_vault, "version": m.version,
            "created_by": m.created_by,
            "fresh": {"expired": m.is_expired(now), "expires_in_s": m.expires_in(now),
                      "expires_at": _utc_text(m.expires_at()),
                      "created_at": _utc_text(m.created_at), "ttl_s": m.ttl,
                      "checked_at": _utc_text(now)},
            "payload": {"path": self.payload_path, "offset": layout.payload_offset,
                        "size": layout.payload_size, "content_type": m.content_type,
                        "display_ext": m.display_ext, "preview": preview_kind(m.content_type)},
            "entries": entries,
            "hook": {"present": self.has_hook(), "timeout_s": m.timeout,
                     "allow_hosts": list(m.allow_hosts)},
            "signature": self._signature if self._signature is not None else (
                {"kind": "none", "valid": False, "signer": None, "reason": None,
                 "checked": True} if sig is None else
                {"kind": "embedded", "valid": None, "signer": m.created_by, "reason": None,
                 "checked": False}),
        }

    async def check_passphrase(self) -> None:
        """Decrypt the start of a vault's payload, so that a wrong passphrase is reported
        when it is entered (WrongKeyError), not at the first preview."""
        if self.layout.payload_size:
            self.source.label = "unlock (decrypt)"
            await self.source.run(self.session.read_flow(self.payload_path, 0, 1))

    # -- the signature --------------------------------------------------------------------

    async def signature(self) -> dict[str, Any]:
        """The embedded signature's status: ``{kind: "none"|"embedded", valid, signer,
        reason, checked: true}``. When it covers the payload, the payload is hashed
        (BLAKE3 through the crypto backend) range by range as stored
        (``SyncSession.signature_flow``); the ranges stay in the viewer's range cache
        for the preview while they fit."""
        if self._signature is not None:
            return self._signature
        self.source.label = "signature (payload hash)"
        status = await self.source.run(self.session.signature_flow())
        self._signature = {"kind": status.kind, "valid": bool(status.valid),
                           "signer": status.signer,
                           "reason": None if status.kind == "none" else status.reason,
                           "checked": True}
        return self._signature

    # -- entries and the hook ---------------------------------------------------------------

    async def entry(self, name: str) -> bytes:
        """A ZIP entry other than the payload, whole (CRC-checked): ``sync.wasm``,
        ``context.json``, ``sync.proof``, ``manifest.toml``; b"" when absent."""
        if name not in ("sync.wasm", "context.json", "sync.proof", "manifest.toml"):
            raise UsageError(f"not an entry the viewer reads whole: {name}")
        if name in self._entries:
            return self._entries[name]
        if name not in self.layout.entries:
            return b""
        from ..formats.sync.container import read_entry_flow

        self.source.label = f"read {name}"
        data: bytes = await self.source.run(read_entry_flow(self.layout, name,
                                                            max_size=ENTRY_MAX))
        self._entries[name] = data
        return data

    def hook_plan(self, grants: Sequence[str] | None = None) -> dict[str, Any]:
        """What the page's hook worker needs: the effective allow-list (``grants`` ∩ the
        manifest's ``allow_hosts``; grants default to all of them, as ``lockbox sync
        update`` does), ``policy.timeout`` and the limits, the payload's path (the
        listing's file) and size."""
        from ..formats.sync.hook.hosts import intersect_patterns, invalid_patterns

        m = self.manifest
        if not self.has_hook():
            raise UsageError("this .sync has no update hook (its sync.wasm is the stub)")
        if m.is_vault:
            raise UsageError("a vault's update hook runs with `lockbox sync update` (the page "
                             "cannot encrypt the new payload)")
        size = self.layout.payload_size
        if size > HOOK_PAYLOAD_MAX:
            raise LimitExceededError(f"the payload ({size} bytes) is larger than a hook run "
                                     f"in the page takes ({HOOK_PAYLOAD_MAX} bytes)")
        allowed = list(m.allow_hosts)
        granted = allowed if grants is None else list(grants)
        effective = intersect_patterns(granted, allowed)
        limits = hook_limits(m.timeout)
        return {"allow_hosts": allowed, "invalid_hosts": invalid_patterns(allowed),
                "effective_hosts": effective, "limits": limits.to_json(),
                "timeout_s": m.timeout, "payload_path": self.payload_path,
                "payload_size": size}

    async def raw_entry(self, name: str) -> bytes:
        """Entry ``name``'s data as stored (compressed or not), read by range."""
        r: ByteRange = self.layout.data_range(name)
        if not r.size:
            return b""
        self.source.label = f"read {name}"
        (blob,) = await self.source.read([r])
        if len(blob) != r.size:
            from ..errors import TruncatedError

            raise TruncatedError(f"the file ends inside its {name} entry")
        return bytes(blob)

    async def updated(self, new_payload: bytes, now: datetime | None = None
                      ) -> tuple[bytes, dict[str, Any]]:
        """The ``.sync`` after a hook run that wrote ``new_payload``, in memory: what
        ``lockbox sync update`` writes for the same new payload and time
        (:func:`lockbox.formats.sync.writer.rewrite_sync_bytes`, the implementation
        ``rewrite_sync_file`` writes with): the manifest marked fresh at ``now`` (whole UTC
        seconds; :meth:`Manifest.mark_fresh`, which drops an embedded signature: it
        covered the old payload), every other entry copied as it is."""
        if not new_payload:
            raise UsageError("the hook wrote nothing: the archive stays as it is")
        from ..formats.sync.writer import rewrite_sync_bytes

        fresh_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        manifest = self.manifest.mark_fresh(fresh_at)
        raw = {name: await self.raw_entry(name) for name in self.layout.entries
               if name not in ("manifest.toml", "payload")}
        data = rewrite_sync_bytes(self.layout, raw, manifest_toml=manifest.to_toml(),
                                  payload=new_payload)
        return data, {"created_at": manifest.created_at_text, "size": len(data),
                      "payload_size": len(new_payload),
                      "signature_removed": self.manifest.signature is not None}


def hook_limits(timeout_s: float) -> HookLimitsJson:
    """The hook worker's limits for a manifest's ``policy.timeout`` (seconds, clamped to
    :data:`MAX_TIMEOUT_S`; 0 lets no hook run, as on the command line)."""
    if not timeout_s > 0:
        raise UsageError("the manifest's policy.timeout is 0: its hook may not run")
    return HookLimitsJson(timeout_s=min(float(timeout_s), MAX_TIMEOUT_S))
