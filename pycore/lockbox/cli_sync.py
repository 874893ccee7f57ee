"""``lockbox sync ...``: the ``.sync`` container (sync-rs's format) on the command line.

``add_sync_parser(sub)`` adds the ``sync`` command group to the top-level subparsers of
:func:`lockbox.cli.build_parser`; each ``cmd_sync_*`` function runs one action. Errors
are raised as ``lockbox.errors`` classes and reported by :func:`lockbox.cli.main` (one
line, the class's exit code). The format itself is specified in ``docs/formats/SYNC.md``.

Secrets never come from argv: a vault's passphrase is read from ``--passphrase-file``
(its first line), the ``LOCKBOX_PASSPHRASE`` environment variable, or asked on the
terminal (twice for a new vault).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import mimetypes
import os
import stat as stat_mod
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import __version__
from . import cli as _cli
from .cli import (
    _common_parents,
    _err,
    _file_or_env_secret,
    _human,
    _out,
    _out_json,
)
from .errors import (
    FormatError,
    IntegrityError,
    StorageError,
    UsageError,
    WrongKeyError,
)

if TYPE_CHECKING:  # pragma: no cover
    from .facade import Archive
    from .formats.sync.session import SyncSession
    from .formats.sync.signing import SignatureStatus

__all__ = ["add_sync_parser", "cmd_sync_pack", "cmd_sync_inspect", "cmd_sync_cat",
           "cmd_sync_update", "cmd_sync_keygen", "cmd_sync_sign", "cmd_sync_verify",
           "cmd_sync_guest", "PASSPHRASE_ENV", "open_sync", "sync_summary"]

T = TypeVar("T")

PASSPHRASE_ENV = "LOCKBOX_PASSPHRASE"
VARIANTS = ("plain", "vault", "app", "data")
HASH_CHUNK_SIZE = 1 << 20
PROMPT_ATTEMPTS = 3


# -- secrets ---------------------------------------------------------------------------


def _given_passphrase(args: argparse.Namespace) -> str | None:
    """The passphrase from --passphrase-file or LOCKBOX_PASSPHRASE (never from argv)."""
    return _file_or_env_secret(getattr(args, "passphrase_file", None), PASSPHRASE_ENV,
                               "passphrase")


def _no_passphrase(what: str) -> UsageError:
    return UsageError(f"{what} needs a passphrase and there is no terminal to ask on: use "
                      f"--passphrase-file FILE or the {PASSPHRASE_ENV} environment variable")


def _new_passphrase(args: argparse.Namespace) -> str:
    """The passphrase of a new vault: file, environment, or asked twice on a terminal."""
    given = _given_passphrase(args)
    if given is not None:
        return given
    if not _cli._stdin_tty():
        raise _no_passphrase("a vault")
    first = _cli._prompt("Passphrase for the new vault: ")
    if not first:
        raise UsageError("the passphrase is empty")
    if _cli._prompt("Repeat the passphrase: ") != first:
        raise UsageError("the passphrases do not match")
    return first


def _with_passphrase(args: argparse.Namespace, label: str, attempt: Callable[[str], T]) -> T:
    """``attempt(passphrase)`` with the given passphrase, or with up to three typed on
    the terminal (WrongKeyError after the last wrong one)."""
    given = _given_passphrase(args)
    if given is not None:
        return attempt(given)
    if not _cli._stdin_tty():
        raise _no_passphrase(f"{label} is a vault: it")
    for n in range(1, PROMPT_ATTEMPTS + 1):
        typed = _cli._prompt(f"Passphrase for {label}: ")
        try:
            return attempt(typed)
        except WrongKeyError:
            if n == PROMPT_ATTEMPTS:
                raise
            _err("wrong passphrase, try again")
    raise AssertionError("unreachable")


# -- opening ---------------------------------------------------------------------------


def _archive_name(location: str) -> str:
    """The file name a .sync's payload is named after (``report.csv.sync``)."""
    from .sources import is_url

    if is_url(location):
        from urllib.parse import unquote, urlsplit

        return os.path.basename(unquote(urlsplit(location).path))
    return os.path.basename(location)


def open_sync(location: str, *, passphrase: str | None = None,
              max_scrypt_log_n: int | None = None) -> Archive:
    """A ``.sync`` (local path or http(s) URL) opened through the generic facade (strict),
    its payload named after ``location``. FormatError naming what it is when it is
    another format, or what is wrong when it is a ZIP but not a ``.sync``."""
    from .facade import Archive, probe
    from .sources import open_source

    source = open_source(location)
    try:
        try:
            probed = probe(source)
        except FormatError:  # no format recognises its start: the .sync reader says why
            probed = None
        secrets = {"passphrase": passphrase} if passphrase is not None else None
        box = Archive.open(location, source=source, probe=probed, format="sync",
                           secrets=secrets, close_source=False,
                           archive_name=_archive_name(location),
                           max_scrypt_log_n=max_scrypt_log_n)
    except BaseException:
        source.close()
        raise
    box.close_source = True
    return box


def _session(box: Archive) -> SyncSession:
    from .formats.sync.session import SyncSession

    session = box.session
    assert isinstance(session, SyncSession)
    return session


def _payload_name(box: Archive) -> str:
    session = _session(box)
    if session.layout.payload is None:  # only in lenient mode, which the CLI does not use
        raise FormatError("this .sync has no payload entry")
    return session.payload_name


def _bytes(n: int) -> str:
    """``8 bytes``; ``1,100 bytes (1.1 KiB)`` from 1 KiB on."""
    return f"{n:,} bytes" + (f" ({_human(n)})" if n >= 1024 else "")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _rfc3339(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    """3d 4h, 2h 5m, 4m 10s, 9s."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"


def _hash_stream(pieces: Iterator[bytes | memoryview]) -> bytes:
    from .platform import default_crypto

    hasher = default_crypto().blake3()
    for piece in pieces:
        hasher.update(piece)
    return hasher.digest()


def _hash_range(box: Archive, offset: int, size: int) -> bytes:
    """BLAKE3 of ``size`` bytes of the archive's source from ``offset``, read in pieces."""
    from .ranges import ByteRange

    def pieces() -> Iterator[bytes]:
        pos, end = offset, offset + size
        while pos < end:
            n = min(HASH_CHUNK_SIZE, end - pos)
            blob = box.source.read([ByteRange(pos, n)])[0]
            if len(blob) != n:
                raise FormatError(f"the file ended at byte {pos + len(blob)}, inside the "
                                  "payload")
            yield blob
            pos += n

    return _hash_stream(pieces())


def _file_hash(location: str) -> bytes:
    """BLAKE3 of a whole local file or URL (the detached scheme's content hash), read in
    1 MiB pieces (an HTTP source learns the size from its first answer)."""
    from .ranges import ByteRange
    from .sources import open_source

    source = open_source(location)
    try:
        def pieces() -> Iterator[bytes]:
            pos = 0
            while True:
                size = source.size
                want = HASH_CHUNK_SIZE if size is None else min(HASH_CHUNK_SIZE, size - pos)
                if want <= 0:
                    return
                blob = source.read([ByteRange(pos, want)])[0]
                if not blob:
                    if source.size is not None and pos < source.size:
                        raise StorageError(f"{location} changed while it was read")
                    return
                yield blob
                pos += len(blob)

        return _hash_stream(pieces())
    finally:
        source.close()


def _payload_hash(box: Archive) -> bytes:
    """BLAKE3 of the stored payload bytes (a vault's: its ciphertext), read in place."""
    r = _session(box).layout.payload_range
    return _hash_range(box, r.offset, r.size)


def _signature_status(box: Archive) -> SignatureStatus:
    """The embedded signature's status (kind "none" when unsigned); the payload is read
    (by range, in bounded windows) and hashed only when the signature covers it."""
    return box.run(_session(box).signature_flow())


def _status_line(status: dict[str, Any]) -> str:
    if status["kind"] == "none":
        return "none (unsigned)"
    if status["valid"]:
        return f"valid ({status['kind']}, by {status['signer']})"
    return f"INVALID ({status['kind']}): {status['reason']}"


# -- summaries -------------------------------------------------------------------------


def _entry_json(entry: Any) -> dict[str, Any]:
    from .formats.sync.zipfmt import method_name

    return {"name": entry.name, "method": method_name(entry.method),
            "compressed_size": entry.compressed_size, "size": entry.uncompressed_size,
            "crc32": f"{entry.crc32:08x}", "header_offset": entry.header_offset,
            "data_offset": entry.data_offset}


def _has_hook(layout: Any) -> bool:
    """Whether sync.wasm is a real module rather than the 8-byte stub (told from its
    size and CRC-32, without reading it)."""
    import zlib

    from .formats.sync.container import WASM_STUB

    wasm = layout.wasm
    return wasm is not None and not (wasm.uncompressed_size == len(WASM_STUB)
                                     and wasm.crc32 == zlib.crc32(WASM_STUB))


def sync_summary(box: Archive, location: str, *, now: _dt.datetime | None = None
                 ) -> dict[str, Any]:
    """What ``sync inspect --json`` prints: the manifest (every table, unknown keys
    kept), the entries, the payload's place, freshness and the signature status."""
    session = _session(box)
    manifest, layout = session.manifest, session.layout
    now = now or _now()
    expires_at = manifest.expires_at()
    r = layout.payload_range
    return {
        "file": location,
        "size": box.info().archive_size,
        "manifest": session.info().details["manifest"],  # TOML dates as ISO 8601 text
        "entries": [_entry_json(e) for e in layout.entries.values()],
        "payload": {"name": _payload_name(box), "offset": r.offset, "size": r.size},
        "vault": manifest.is_vault,
        "hook": _has_hook(layout),
        "expired": manifest.is_expired(now),
        "expires_at": None if expires_at is None else _rfc3339(expires_at),
        "expires_in": manifest.expires_in(now),
        "signature": _signature_status(box).to_dict(),
        "warnings": list(session.warnings),
    }


# -- commands --------------------------------------------------------------------------


def _read_host_file(path: str, what: str, max_size: int | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read() if max_size is None else f.read(max_size + 1)
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if max_size is not None and len(data) > max_size:
        raise UsageError(f"{what} {path} is larger than {_human(max_size)}")
    return data


def _display_ext(payload_path: str) -> str:
    ext = os.path.splitext(os.path.basename(payload_path))[1].lstrip(".")
    return ext or "bin"


def _content_type(payload_path: str) -> str:
    guessed, _ = mimetypes.guess_type(os.path.basename(payload_path), strict=False)
    return guessed or "application/octet-stream"


def _check_hosts(patterns: Sequence[str]) -> list[str]:
    """The --allow-host patterns, refused (UsageError) when one matches nothing."""
    from .formats.sync.hook.hosts import invalid_patterns

    bad = invalid_patterns(patterns)
    if bad:
        raise UsageError(f"--allow-host {bad[0]!r} is not a host pattern (a host name, "
                         "*.example.com for its subdomains, or an IP address; :PORT optional)")
    return list(patterns)


def cmd_sync_pack(args: argparse.Namespace) -> int:
    """lockbox sync pack: a new .sync holding PAYLOAD."""
    from .formats.sync.container import WASM_STUB
    from .formats.sync.hook.runner import HookLimits
    from .formats.sync.hook.update import MAX_CONTEXT_SIZE
    from .formats.sync.manifest import Manifest
    from .formats.sync.session import MAX_VAULT_SIZE
    from .formats.sync.writer import write_sync_file
    from .sources import is_url

    if is_url(args.output):
        raise UsageError("sync pack writes a local file, not a URL")
    if os.path.lexists(args.output) and not args.force:
        raise StorageError(f"{args.output} already exists (use --force to replace it)")
    variant = args.variant or ("vault" if args.passphrase else "plain")
    vault = variant == "vault"
    if args.passphrase and not vault:
        raise UsageError(f"--passphrase makes a vault; it cannot be a {variant} .sync")
    key = _load_key(args.sign) if args.sign else None
    wasm = _read_host_file(args.wasm, "hook module", HookLimits().wasm_bytes) \
        if args.wasm else None
    if wasm is not None and wasm[:4] != WASM_STUB[:4]:
        raise UsageError(f"{args.wasm} is not a WebAssembly module (no \\0asm magic)")
    context = _read_host_file(args.context, "context", MAX_CONTEXT_SIZE) \
        if args.context else None
    if context is not None:
        try:
            json.loads(context.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"{args.context} is not JSON (context.json must be): {e}") \
                from None
    try:
        st = os.stat(args.payload)
    except OSError as e:
        raise UsageError(f"cannot read {args.payload}: {e.strerror or e}") from e
    if not stat_mod.S_ISREG(st.st_mode):
        raise UsageError(f"{args.payload} is not a regular file")
    age_overhead = (st.st_size // 65536 + 1) * 16 + 1024  # tags + header, generously
    if vault and st.st_size + age_overhead > MAX_VAULT_SIZE:
        raise UsageError(f"a vault payload is encrypted and read whole in memory: "
                         f"{args.payload} is over the {_human(MAX_VAULT_SIZE)} readers accept")
    passphrase = _new_passphrase(args) if vault else None
    now = _now().replace(microsecond=0)
    manifest = Manifest.new(
        content_type=args.content_type or _content_type(args.payload),
        display_ext=args.display_ext if args.display_ext is not None
        else _display_ext(args.payload),
        variant=variant, ttl=args.ttl, timeout=args.timeout,
        allow_hosts=_check_hosts(args.allow_host), allow_env=(),
        created_by=key.did if key is not None else f"lockbox {__version__}",
        created_at=now)
    try:
        payload_file = open(args.payload, "rb")
    except OSError as e:
        raise UsageError(f"cannot read {args.payload}: {e.strerror or e}") from e
    with payload_file:
        payload: Any = payload_file
        if passphrase is not None:
            from .formats.sync.vault import encrypt_vault

            payload = encrypt_vault(payload_file.read(), passphrase)
        if key is not None:
            from .formats.sync.signing import sign_manifest

            if isinstance(payload, bytes):
                digest = _hash_stream(iter((payload,)))
            else:
                digest = _hash_stream(iter(lambda: payload_file.read(HASH_CHUNK_SIZE), b""))
                payload_file.seek(0)
            manifest = sign_manifest(manifest, digest, key, now)
        layout = write_sync_file(args.output, manifest_toml=manifest.to_toml(),
                                 payload=payload, wasm=wasm, context=context,
                                 overwrite=args.force)
    if not args.quiet:
        r = layout.payload_range
        what = "vault (age passphrase)" if vault else variant
        signed = f", signed by {key.did}" if key is not None else ""
        _out(f"packed {args.output}: {manifest.content_type} payload {_bytes(r.size)} at "
             f"offset {r.offset}, {what}{signed}")
    return 0


def cmd_sync_inspect(args: argparse.Namespace) -> int:
    """lockbox sync inspect: the manifest, the payload's place, freshness, signature."""
    with open_sync(args.file) as box:
        summary = sync_summary(box, args.file)
        manifest_toml = _session(box).manifest.to_toml().decode("utf-8")
    if args.json:
        _out_json(summary)
        return 0
    _print_summary(summary, manifest_toml)
    return 0


def _print_summary(s: dict[str, Any], manifest_toml: str) -> None:
    m = s["manifest"]
    sync, meta, policy = m.get("sync", {}), m.get("meta", {}), m.get("policy", {})
    p = s["payload"]
    size = "unknown" if s["size"] is None else _bytes(s["size"])
    if s["expired"]:
        fresh = f"expired at {s['expires_at']}"
    elif s["expires_at"] is None:
        fresh = "fresh, never expires (created_at + ttl is past the year 9999)"
    else:
        fresh = f"fresh, expires in {_duration(s['expires_in'])} (at {s['expires_at']})"
    rows = [
        ("file", f"{s['file']}: .sync container, version {sync.get('version', '?')}"),
        ("size", size),
        ("payload", f"{p['name']}: {_bytes(p['size'])} at offset "
                    f"{p['offset']}" + (", age-encrypted (vault)" if s["vault"] else "")),
        ("content", f"{sync.get('content_type')} (display_ext {sync.get('display_ext')!r}, "
                    f"variant {sync.get('variant', 'plain')})"),
        ("created", f"{meta.get('created_at')} by {meta.get('created_by')}"),
        ("freshness", f"{fresh}; ttl {policy.get('ttl')} s"),
        ("hook", ("sync.wasm" if s["hook"] else "none (the 8-byte stub)")
         + f"; timeout {policy.get('timeout')} s; allow_hosts "
         + (", ".join(m.get("permissions", {}).get("allow_hosts", [])) or "none")),
        ("signature", _status_line(s["signature"])),
    ]
    for k, v in rows:
        _out(f"{k + ':':<11} {v}")
    _out("entries:")
    for e in s["entries"]:
        _out(f"  {e['name']:<14} {e['method']:<8} {e['size']:>12,} bytes at offset "
             f"{e['data_offset']}"
             + (f" ({e['compressed_size']:,} stored)" if e["method"] != "STORED" else "")
             + f", crc32 {e['crc32']}")
    for w in s["warnings"]:
        _out(f"warning: {w}")
    _out("manifest (as TOML):")
    for line in manifest_toml.splitlines():
        _out(f"  {line}" if line else "")


def cmd_sync_cat(args: argparse.Namespace) -> int:
    """lockbox sync cat: the payload on stdout, streamed (a vault's decrypted)."""
    box = open_sync(args.file)
    if _session(box).manifest.is_vault:
        box.close()
        box = _with_passphrase(args, _archive_name(args.file) or args.file,
                               lambda pw: _opened_vault(args.file, pw,
                                                        args.max_scrypt_log_n))
    with box:
        name = _payload_name(box)
        sys.stdout.flush()
        out = sys.stdout.buffer
        for piece in box.iter_bytes(name):  # the CRC is checked before the last piece
            out.write(piece)
        out.flush()
    return 0


def _opened_vault(location: str, passphrase: str, max_scrypt_log_n: int | None = None
                  ) -> Archive:
    """A vault opened with ``passphrase``; WrongKeyError (raised by the first read of its
    payload) when it is not the one."""
    box = open_sync(location, passphrase=passphrase, max_scrypt_log_n=max_scrypt_log_n)
    try:
        box.read(_payload_name(box), 0, 1)
    except BaseException:
        box.close()
        raise
    return box


def cmd_sync_update(args: argparse.Namespace) -> int:
    """lockbox sync update: run the hook as owner; a new payload replaces the old one."""
    from .formats.sync.hook.update import update_sync_file
    from .sources import is_url

    if is_url(args.file):
        raise UsageError("a .sync on a web server is read-only here; download it to update "
                         "it")
    grants = _check_hosts(args.allow_host) if args.allow_host else None
    with open_sync(args.file) as box:
        vault = _session(box).manifest.is_vault
        ttl = _session(box).manifest.ttl

    def run(passphrase: str | None) -> Any:
        return update_sync_file(args.file, grants=grants, passphrase=passphrase,
                                max_scrypt_log_n=args.max_scrypt_log_n)

    if vault:
        report = _with_passphrase(args, _archive_name(args.file), run)
    else:
        report = run(None)
    _print_update(args, ttl, report)
    return 0


def _print_update(args: argparse.Namespace, manifest_ttl: int, report: Any) -> None:
    """What ``sync update`` did: the hosts, each request, the new payload, freshness."""
    for w in report.warnings:
        _err(f"warning: {w}")
    if args.quiet:
        return
    hosts = ", ".join(report.allow_hosts) or "none (no network)"
    _out(f"hook: {report.entry} ran {report.hook.run_s:.2f} s (timeout "
         f"{report.timeout_s:g} s); hosts allowed: {hosts}")
    for req in report.requests:
        _out(f"  {_request_line(req)}")
    if report.updated:
        try:
            until = _rfc3339(report.fresh_at + _dt.timedelta(seconds=manifest_ttl))
        except OverflowError:
            until = "the year 9999 and beyond"
        _out(f"updated {args.file}: new payload {_bytes(report.new_payload_size)} (was "
             f"{_bytes(report.old_payload_size)}); fresh until {until}")
    elif report.entry != "run":
        _out(f"{args.file} unchanged: the hook has no 'run' ('{report.entry}' ran and its "
             f"{report.hook.discarded_size:,} written bytes were discarded)")
    else:
        _out(f"{args.file} unchanged: the hook wrote no payload")


_REQUEST_CODES = {-1: "bad memory or UTF-8", -2: "host not allowed", -3: "refused",
                  -4: "body refused", -5: "transport error"}


def _request_line(req: Any) -> str:
    """``GET URL -> 200, 1,234 bytes`` / ``GET URL -> -2 (host not allowed)``."""
    result = req.result
    if result >= 0:
        via = f" via {req.final_url}" if req.redirects and req.final_url else ""
        return f"GET {req.url} -> {result}, {req.response_size:,} bytes{via}"
    why = _REQUEST_CODES.get(result, "failed")
    detail = f": {req.error}" if req.error else ""
    return f"GET {req.url} -> {result} ({why}{detail})"


def _load_key(path: str) -> Any:
    from .formats.sync.signing import SigningKey

    return SigningKey.load(path)


def cmd_sync_keygen(args: argparse.Namespace) -> int:
    """lockbox sync keygen: a new Ed25519 signing key (PKCS#8 PEM, 0600); prints its did."""
    from .formats.sync.signing import SigningKey

    if os.path.lexists(args.output) and not args.force:
        raise UsageError(f"{args.output} already exists (use --force to replace it)")
    key = SigningKey.generate()
    key.save(args.output, overwrite=args.force)  # 0600, atomic
    _out(key.did)
    return 0


def cmd_sync_sign(args: argparse.Namespace) -> int:
    """lockbox sync sign: embed a [signature] (default) or write a detached one."""
    from .sources import is_url

    key = _load_key(args.key)
    if args.detached is not None:
        from .formats.sync.signing import sign_detached

        with open_sync(args.file):  # a .sync, not any file
            pass
        sig = sign_detached(_file_hash(args.file), key, int(time.time()))
        from .fileio import write_atomically

        write_atomically(args.detached, sig.to_json(), overwrite=True,
                         mode=0o644, what=f"cannot write {args.detached}")
        if not args.quiet:
            _out(f"signed {args.file} (detached, {args.detached}) as {key.did}")
        return 0
    from .formats.sync.signing import sign_manifest
    from .formats.sync.writer import rewrite_sync_file

    if is_url(args.file):
        raise UsageError("a .sync on a web server is read-only here; use --detached OUT.json "
                         "or download it")
    with open_sync(args.file) as box:
        manifest = _session(box).manifest
        signed = sign_manifest(manifest, _payload_hash(box), key, _now().replace(microsecond=0))
    rewrite_sync_file(args.file, manifest_toml=signed.to_toml())
    if not args.quiet:
        _out(f"signed {args.file} (embedded [signature]) as {key.did}")
    return 0


def cmd_sync_verify(args: argparse.Namespace) -> int:
    """lockbox sync verify: every entry's CRC-32, the embedded signature and/or the
    detached one; exit 5 with the check that failed when anything is wrong."""
    from .formats.sync.signing import DetachedSignature, verify_detached

    detached = None
    if args.detached is not None:
        text = _read_host_file(args.detached, "signature file", 1 << 20)
        detached = DetachedSignature.from_json(text)
    with open_sync(args.file) as box:
        report = box.verify()  # CRCs, then the embedded signature when there is one
        if not report.ok:
            more = len(report.problems) - 1
            raise IntegrityError(f"{args.file}: {report.problems[0]}"
                                 + (f" (and {more} more problem{'s' * (more > 1)})"
                                    if more else ""))
        statuses = []
        embedded = _signature_status(box)  # already checked by verify: no new reads
        if embedded.kind != "none":
            statuses.append(embedded)
    if detached is not None:
        statuses.append(verify_detached(detached, _file_hash(args.file)))
    if not statuses:
        raise IntegrityError(f"{args.file} is not signed (no [signature] in its manifest; "
                             "a detached signature is checked with --detached SIG.json)")
    for status in statuses:
        if not status.valid:
            raise IntegrityError(f"{args.file}: {status.kind} signature invalid: "
                                 f"{status.reason}")
    if not args.quiet:
        _out(f"ok: {report.entries_checked} entries ({_bytes(report.bytes_checked)}) "
             "checked")
        for status in statuses:
            _out(f"ok: {status.kind} signature by {status.signer}")
    return 0


def cmd_sync_guest(args: argparse.Namespace) -> int:
    """lockbox sync guest: speak guest.v1 on stdin/stdout until EOF."""
    from .formats.sync.guest import serve_guest

    return int(serve_guest(args.file, sys.stdin.buffer, sys.stdout.buffer) or 0)


# -- the parser ------------------------------------------------------------------------

_SYNC_DESCRIPTION = """\
.sync containers (sync-rs's format, docs/formats/SYNC.md): a ZIP holding
manifest.toml, one payload (read in place, by range: FILE_OR_URL may be an
http(s):// URL), an optional WebAssembly update hook (sync.wasm) and context.json.

  lockbox sync pack report.csv -o report.csv.sync --wasm hook.wasm --allow-host api.example.com
  lockbox sync inspect https://example.org/report.csv.sync
  lockbox sync cat report.csv.sync > report.csv
  lockbox sync update report.csv.sync          # runs the hook (owner), refreshes it
  lockbox sync keygen -o me.key && lockbox sync sign report.csv.sync --key me.key
  lockbox sync verify report.csv.sync

A vault's passphrase comes from --passphrase-file FILE (its first line), the
LOCKBOX_PASSPHRASE environment variable, or the terminal.
"""


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2^63-1: {text!r}")
    return value


def _passphrase_option(p: argparse.ArgumentParser, *, reading: bool = True) -> None:
    p.add_argument("--passphrase-file", metavar="FILE",
                   help=f"a vault's passphrase: the first line of FILE (default: "
                        f"{PASSPHRASE_ENV}, else asked on the terminal)")
    if reading:
        p.add_argument("--max-scrypt-log-n", type=_scrypt_log_n, default=None, metavar="N",
                       help="open a vault whose passphrase costs up to 2^N scrypt work "
                            "(default: 20, 1 GiB of memory; a file can ask for more to "
                            "exhaust the reader, so raise it only for files you trust)")


def _scrypt_log_n(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"must be between 1 and 30: {text!r}")
    return value


def add_sync_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``lockbox sync ACTION ...`` to the top-level subparsers ``sub`` (those of
    :func:`lockbox.cli.build_parser`); returns the ``sync`` parser."""
    quiet, _ = _common_parents()
    group: argparse.ArgumentParser = sub.add_parser(
        "sync", help=".sync containers (sync-rs): pack, inspect, cat, update, sign ...",
        description=_SYNC_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[quiet])
    actions = group.add_subparsers(dest="sync_command", metavar="ACTION", required=True)

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help: str,
            description: str | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=description or help, parents=[quiet])
        p.set_defaults(func=func)
        return p

    p = cmd("pack", cmd_sync_pack, "pack a payload into a new .sync",
            description="Write OUT.sync holding PAYLOAD (stored uncompressed, readable in "
                        "place). The content type is guessed from PAYLOAD's name and "
                        "display_ext is its extension unless given. --passphrase makes a "
                        "vault (the payload age-encrypted with a passphrase); --sign KEY "
                        "embeds a [signature] and makes the key's did:key the creator.")
    p.add_argument("payload", metavar="PAYLOAD")
    p.add_argument("-o", "--output", required=True, metavar="OUT.sync")
    p.add_argument("--content-type", metavar="T", help="MIME type (default: guessed from "
                   "the name, else application/octet-stream)")
    p.add_argument("--display-ext", metavar="E", help="the payload's extension when shown "
                   "(default: PAYLOAD's, else bin)")
    p.add_argument("--variant", choices=VARIANTS, help="default: plain (vault with "
                   "--passphrase)")
    p.add_argument("--ttl", type=_nonneg_int, default=3600, metavar="S",
                   help="seconds the payload stays fresh after it is written (default: "
                        "3600)")
    p.add_argument("--timeout", type=_nonneg_int, default=30, metavar="S",
                   help="the hook's time limit in seconds (default: 30)")
    p.add_argument("--allow-host", action="append", default=[], metavar="H",
                   help="a host the hook may fetch from (example.com, *.example.com for "
                        "its subdomains); repeatable; none: no network")
    p.add_argument("--wasm", metavar="F", help="the update hook, a WebAssembly module "
                   "(default: the 8-byte stub: no hook)")
    p.add_argument("--context", metavar="F", help="context.json (JSON) for the hook")
    p.add_argument("--sign", metavar="KEY", help="sign with this key (sync keygen)")
    p.add_argument("--passphrase", action="store_true",
                   help="make a vault: the payload is encrypted with a passphrase (asked "
                        "twice, or --passphrase-file / LOCKBOX_PASSPHRASE)")
    _passphrase_option(p, reading=False)
    p.add_argument("--force", action="store_true", help="replace an existing OUT.sync")

    p = cmd("inspect", cmd_sync_inspect, "show a .sync's manifest, payload and status",
            description="Show the manifest (every table), the entries, where the payload "
                        "lies (offset and size), whether it is expired (and when it "
                        "expires) and the embedded signature's status. FILE_OR_URL may be "
                        "an http(s):// URL: only the ZIP's directory, the manifest and "
                        "the local headers are fetched (and the payload when a signature "
                        "covers it).")
    p.add_argument("file", metavar="FILE_OR_URL")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = cmd("cat", cmd_sync_cat, "write the payload to stdout",
            description="Write the payload to stdout, streamed (a vault's decrypted: the "
                        "passphrase from --passphrase-file, LOCKBOX_PASSPHRASE or the "
                        "terminal). FILE_OR_URL may be an http(s):// URL.")
    p.add_argument("file", metavar="FILE_OR_URL")
    _passphrase_option(p)

    p = cmd("update", cmd_sync_update, "run the update hook (as owner)",
            description="Run the file's sync.wasm as its owner: it may fetch (GET) from "
                        "the allowed hosts and write a new payload, which then replaces "
                        "the old one atomically and marks the file fresh. The hosts "
                        "granted default to the manifest's allow_hosts; --allow-host "
                        "grants only those given (the hook gets the hosts both allow).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--allow-host", action="append", default=[], metavar="H",
                   help="grant this host (repeatable; default: the manifest's allow_hosts)")
    _passphrase_option(p)

    p = cmd("keygen", cmd_sync_keygen, "create an Ed25519 signing key",
            description="Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) to KEY "
                        "and print its did:key.")
    p.add_argument("-o", "--output", required=True, metavar="KEY")
    p.add_argument("--force", action="store_true", help="replace an existing key file")

    p = cmd("sign", cmd_sync_sign, "sign a .sync",
            description="Sign FILE with KEY: by default an embedded [signature] in its "
                        "manifest (the manifest is rewritten atomically and its "
                        "created_by becomes the key's did:key); with --detached OUT.json, "
                        "a detached signature over the whole file's bytes (FILE unchanged).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--key", required=True, metavar="KEY")
    p.add_argument("--detached", metavar="OUT.json",
                   help="write a detached signature here instead")

    p = cmd("verify", cmd_sync_verify, "check a .sync's CRCs and signature",
            description="Check every entry's CRC-32 and the embedded signature (manifest "
                        "and payload hashes, then Ed25519), and with --detached SIG.json "
                        "the detached signature over the whole file. Exit 0 when all "
                        "check out; 5 with the check that failed otherwise (an unsigned "
                        "file fails too).")
    p.add_argument("file", metavar="FILE_OR_URL")
    p.add_argument("--detached", metavar="SIG.json", help="a detached signature to check")

    p = cmd("guest", cmd_sync_guest, "speak guest.v1 on stdin/stdout",
            description="Serve sync-rs's guest.v1 protocol for FILE: one JSON request per "
                        "line on stdin, one JSON reply per line on stdout, until EOF.")
    p.add_argument("file", metavar="FILE")
    return group
