"""Run a ``.sync`` file's update hook as its owner and publish the new payload.

:func:`update_sync_file` is ``lockbox sync update``: read the layout, the manifest,
``sync.wasm`` and ``context.json``; run the hook (:func:`~.runner.run_hook`) with the
effective allow-list (the owner's grants ∩ the manifest's ``allow_hosts``, grants
defaulting to ``allow_hosts``) and the manifest's ``policy.timeout``; then, when ``run``
left a non-empty write buffer, replace the payload and the manifest (marked fresh:
:meth:`Manifest.mark_fresh`) in one atomic rewrite (temp + fsync + rename + directory
fsync). On any failure — a refused module, a trap, a timeout, a limit, an I/O error,
a file changed by someone else during the run — the file is left byte for byte as it
was. A hook that writes nothing leaves the file untouched too (not even re-stamped:
nothing new went into it).

Vault archives (``variant = "vault"``): with the passphrase, the hook reads the
decrypted payload and its new payload is encrypted again with the same passphrase
(age, a fresh file key and salt); without one, the update is refused before anything
runs. The new ciphertext uses the vault's own scrypt work factor. The payload of a
plain archive is read in place (by range), never whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ....drivers import run_sync
from ....errors import LimitExceededError, StorageError, TruncatedError, UsageError
from ....sources import FileSource
from ..container import (
    CONTEXT_NAME,
    MANIFEST_NAME,
    MAX_MANIFEST_SIZE,
    WASM_NAME,
    WASM_STUB,
    SyncLayout,
    open_layout_flow,
    read_entry_flow,
)
from ..manifest import Manifest
from .hosts import intersect_patterns, invalid_patterns
from .runner import (
    BytesPayload,
    FilePayload,
    HookLimits,
    HookRequest,
    HookResult,
    PayloadSource,
    run_hook,
)

__all__ = ["UpdateReport", "update_sync_file", "effective_limits", "MAX_CONTEXT_SIZE"]

MAX_CONTEXT_SIZE = 16 * 2**20
"""Largest ``context.json`` handed to a hook."""


@dataclass
class UpdateReport:
    """What :func:`update_sync_file` did.

    ``updated``: the payload was replaced (and the manifest marked fresh, ``created_at``
    = ``fresh_at``). ``entry``: the entry point run (``"run"``, or ``"_start"`` whose
    writes are discarded). ``allow_hosts``: the effective allow-list. ``requests``: every
    HTTP request of the guest with its result. ``warnings``: e.g. invalid allow-list
    patterns, an embedded signature removed by the update."""

    path: str
    updated: bool
    entry: str
    old_payload_size: int
    new_payload_size: int | None
    allow_hosts: list[str]
    timeout_s: float
    fresh_at: datetime | None
    requests: list[HookRequest]
    hook: HookResult
    warnings: list[str] = field(default_factory=list)


def effective_limits(manifest: Manifest, limits: HookLimits | None) -> HookLimits:
    """The limits of a run: ``limits`` (defaults when None) with its timeout lowered to
    the manifest's ``policy.timeout`` (a caller may shorten the budget, never extend
    it). A ``policy.timeout`` of 0 leaves no time to run (UsageError)."""
    base = limits or HookLimits()
    if manifest.timeout <= 0:
        raise UsageError("the manifest's policy.timeout is 0: the hook has no time to run")
    timeout_s = float(manifest.timeout)
    if limits is not None:
        timeout_s = min(timeout_s, limits.timeout_s)
    return HookLimits(
        timeout_s=timeout_s,
        memory_bytes=base.memory_bytes,
        response_bytes=base.response_bytes,
        write_bytes=base.write_bytes,
        max_redirects=base.max_redirects,
        max_requests=base.max_requests,
        wasm_bytes=base.wasm_bytes,
    )


def _identity(path: str) -> tuple[int, int, int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def update_sync_file(
    path: str | os.PathLike[str],
    *,
    grants: Sequence[str] | None = None,
    passphrase: str | None = None,
    now: datetime | None = None,
    limits: HookLimits | None = None,
    max_scrypt_log_n: int | None = None,
) -> UpdateReport:
    """Run the hook of the ``.sync`` at ``path`` as its owner (module docstring).

    ``grants``: the hosts the owner allows (None: the manifest's ``allow_hosts``); the
    hook may reach only hosts both allow. ``passphrase``: a vault's. ``now``: the
    freshness stamp (default: the current UTC time). ``limits``: caps of the run; its
    timeout never exceeds the manifest's ``policy.timeout``. ``max_scrypt_log_n``: the
    highest scrypt work factor a vault's passphrase may cost (default: the vault module's
    bound); a vault's ciphertext is read only up to the session's ``MAX_VAULT_SIZE``.

    Raises UsageError (no hook: ``sync.wasm`` is the stub; a vault without passphrase),
    :class:`~.runner.HookError` / :class:`~.runner.HookTimeoutError`, FormatError and
    friends for a bad container or manifest, WrongKeyError for a wrong passphrase,
    StorageError for I/O. In every such case the file is untouched.
    """
    target = os.fspath(path)
    before = _identity(target)
    with FileSource(target) as source:
        layout: SyncLayout = run_sync(open_layout_flow(source.size, strict=True), source)
        manifest = Manifest.parse(
            run_sync(read_entry_flow(layout, MANIFEST_NAME, max_size=MAX_MANIFEST_SIZE), source)
        )
        run_limits = effective_limits(manifest, limits)
        if layout.wasm is None:
            raise UsageError(f"{target} has no sync.wasm: there is no hook to run")
        wasm = run_sync(read_entry_flow(layout, WASM_NAME, max_size=run_limits.wasm_bytes),
                        source)
        if wasm == WASM_STUB:
            raise UsageError(f"{target} has no update hook (its sync.wasm is the 8-byte stub)")
        context = None
        if layout.context is not None:
            context = run_sync(
                read_entry_flow(layout, CONTEXT_NAME, max_size=MAX_CONTEXT_SIZE), source
            )
        payload_range = layout.payload_range
        ciphertext = None
        if manifest.is_vault:
            if passphrase is None:
                raise UsageError(f"{target} is a vault: its passphrase is needed to run its hook "
                                 "(the hook reads the decrypted payload)")
            from ..session import MAX_VAULT_SIZE

            if payload_range.size > MAX_VAULT_SIZE:
                raise LimitExceededError(
                    f"{target}: the vault's payload ({payload_range.size} bytes) is over the "
                    f"{MAX_VAULT_SIZE} bytes a vault may hold here")
            ciphertext = source.read([payload_range])[0]
            if len(ciphertext) != payload_range.size:
                raise TruncatedError(f"{target} ends inside its payload")

    warnings = [f"allow-list pattern {p!r} is invalid and admits nothing"
                for p in invalid_patterns([*manifest.allow_hosts, *(grants or ())])]
    allow_hosts = intersect_patterns(
        manifest.allow_hosts if grants is None else grants, manifest.allow_hosts
    )

    payload: PayloadSource
    if ciphertext is not None:
        from ..vault import decrypt_vault

        assert passphrase is not None
        if max_scrypt_log_n is None:
            plaintext = decrypt_vault(ciphertext, passphrase)
        else:
            plaintext = decrypt_vault(ciphertext, passphrase, max_scrypt_log_n=max_scrypt_log_n)
        payload = BytesPayload(plaintext)
        result = run_hook(wasm, payload=payload, context=context, allow_hosts=allow_hosts,
                          limits=run_limits)
    else:
        with FilePayload(target, payload_range.offset, payload_range.size) as file_payload:
            payload = file_payload
            result = run_hook(wasm, payload=payload, context=context, allow_hosts=allow_hosts,
                              limits=run_limits)

    fresh_at = None
    new_payload = result.new_payload
    if new_payload is not None:
        if ciphertext is not None:
            from ..vault import encrypt_vault, parse_age_header, scrypt_work_factor

            assert passphrase is not None
            # the same scrypt work factor as the vault had: the owner's choice of cost
            log_n = scrypt_work_factor(parse_age_header(ciphertext))
            new_payload = encrypt_vault(new_payload, passphrase, scrypt_log_n=log_n)
        fresh_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        fresh = manifest.mark_fresh(fresh_at)
        if manifest.signature is not None:
            warnings.append("the embedded signature covered the old payload and was removed: "
                            "sign the file again")
        if _identity(target) != before:
            raise StorageError(f"{target} changed while its hook ran; the update is dropped "
                               "(run it again)")
        from ..writer import rewrite_sync_file

        rewrite_sync_file(target, manifest_toml=fresh.to_toml(), payload=new_payload)

    return UpdateReport(
        path=target,
        updated=new_payload is not None,
        entry=result.entry,
        old_payload_size=payload_range.size,
        new_payload_size=None if new_payload is None else len(new_payload),
        allow_hosts=allow_hosts,
        timeout_s=run_limits.timeout_s,
        fresh_at=fresh_at,
        requests=result.requests,
        hook=result,
        warnings=warnings,
    )
