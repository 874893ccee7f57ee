"""guest.v1: sync-runtime's subprocess protocol, both sides.

The wire format is sync-rs's (crates/sync-runtime/src/{guest,session}.rs), serde's JSON
of its types: one request per line,
``{"version": "guest.v1", "request_id": "guest-N", "action": A, "context": {"mode": M,
"role": R, "permissions": {...}, "sync_path": P, "host_app": H}, "input": X}`` with ``A``
one of ``ReadPayload ReadContext WritePayload WriteContext ExecuteWasm UpdatePayload``,
``M`` ``Widget``/``Headless``, ``R`` ``Consumer``/``Owner``, ``permissions`` the flags
``can_read_payload can_read_context can_write_payload can_write_context
can_execute_wasm`` (false when absent) and the lists ``allowed_hosts allowed_env``
(empty when absent); one reply per line, ``{"version", "request_id", "ok", "result",
"error": {"code", "message"} | null}`` with ``code`` one of ``PermissionDenied
InvalidRequest ExecutionFailed HostUnavailable ProtocolError IoError``. Payloads travel
as standard base64 (with padding).

**Serving** (:func:`serve_guest`, behind ``lockbox sync guest FILE``): reads requests
until EOF and answers each (blank lines are skipped; a line that is not a request gets an
``InvalidRequest`` reply, a wrong ``version`` a ``ProtocolError``, with the request's id
when it has one). It serves only FILE (a request whose ``sync_path`` names another file
is refused) and never trusts a request beyond its own rules: a ``Consumer`` may only
``ReadPayload``/``ReadContext``; every action needs its ``can_*`` flag; the hosts a hook
may reach are the request's ``allowed_hosts`` ∩ the manifest's ``allow_hosts``. Actions:

* ``ReadPayload`` -> the stored payload (a vault's ciphertext as it is), base64.
* ``ReadContext`` -> ``context.json`` as a JSON value (null when there is none).
* ``WritePayload`` (input: base64) -> replaces the payload; the manifest is unchanged.
* ``UpdatePayload`` (input: base64) -> replaces the payload and marks the archive fresh
  (``created_at`` = now), as a hook update does. sync-rs sends both without saying how
  they differ; this is our reading.
* ``WriteContext`` (input: any JSON value) -> replaces ``context.json`` (compact JSON).
* ``ExecuteWasm`` (input: null, or ``{"passphrase": ...}`` for a vault) -> runs the hook
  as :func:`~.hook.update.update_sync_file` does, with the effective allow-list; the
  limits ``GUEST_CPU_LIMIT_MS`` (the timeout, never above ``policy.timeout``) and
  ``GUEST_MEMORY_LIMIT_MB`` of the environment, which :class:`GuestSession` sets.

Every write is atomic (temp + fsync + rename): a failed request leaves the file as it
was. Payloads in one JSON line are bounded (:data:`MAX_GUEST_PAYLOAD_SIZE`). Like
sync-rs, ``[ownership] write_allowed`` is informational: the gate is the Owner role and
the explicit grants.

**Calling** (:class:`GuestSession`, sync-rs's host API): permissions are checked locally
first, then the host app is spawned with a cleared environment (sync-rs's baseline
``PATH LANG LC_ALL HOME USER``, ``CAPSULE_*``/``ATO_*``, the allowed env variables, and
``ALLOW_HOSTS ALLOW_ENV CAPSULE_GUEST_PROTOCOL SYNC_PATH GUEST_MODE GUEST_ROLE
[GUEST_CPU_LIMIT_MS GUEST_MEMORY_LIMIT_MB GUEST_WIDGET_BOUNDS]``), sent one request line,
and its reply is checked (request id, version) as session.rs does. The default host app
is ``python -m lockbox sync guest FILE``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from ...drivers import run_sync
from ...errors import LockboxError, StorageError, UsageError
from ...ranges import ByteRange
from ...sources import FileSource
from .container import (
    CONTEXT_NAME,
    MANIFEST_NAME,
    MAX_MANIFEST_SIZE,
    PROOF_NAME,
    SYNC_NAMES,
    WASM_NAME,
    SyncLayout,
    open_layout_flow,
    read_entry_flow,
)
from .hook.hosts import intersect_patterns
from .manifest import Manifest

__all__ = [
    "GUEST_PROTOCOL_VERSION",
    "GuestMode",
    "GuestRole",
    "GuestAction",
    "GuestErrorCode",
    "GuestError",
    "GuestPermission",
    "GuestContext",
    "GuestRequest",
    "GuestResponse",
    "WidgetBounds",
    "GuestSession",
    "serve_guest",
    "handle_request",
    "encode_payload_base64",
    "decode_payload_base64",
    "MAX_GUEST_PAYLOAD_SIZE",
    "MAX_LINE_SIZE",
    "DEFAULT_HOST_APP",
]

GUEST_PROTOCOL_VERSION = "guest.v1"
MAX_GUEST_PAYLOAD_SIZE = 64 * 2**20
"""Largest payload read or written through guest.v1 (it travels as one base64 line)."""
MAX_CONTEXT_SIZE = 16 * 2**20
"""Largest ``context.json`` read or written."""
MAX_LINE_SIZE = (MAX_GUEST_PAYLOAD_SIZE * 4) // 3 + 64 * 1024
"""Longest request line :func:`serve_guest` reads (a base64 payload and its envelope)."""
DEFAULT_HOST_APP: tuple[str, ...] = (sys.executable, "-m", "lockbox", "sync", "guest")
"""The host app :class:`GuestSession` spawns by default (the sync path is appended)."""


class GuestMode(enum.StrEnum):
    WIDGET = "Widget"
    HEADLESS = "Headless"


class GuestRole(enum.StrEnum):
    CONSUMER = "Consumer"
    OWNER = "Owner"


class GuestAction(enum.StrEnum):
    READ_PAYLOAD = "ReadPayload"
    READ_CONTEXT = "ReadContext"
    WRITE_PAYLOAD = "WritePayload"
    WRITE_CONTEXT = "WriteContext"
    EXECUTE_WASM = "ExecuteWasm"
    UPDATE_PAYLOAD = "UpdatePayload"


class GuestErrorCode(enum.StrEnum):
    PERMISSION_DENIED = "PermissionDenied"
    INVALID_REQUEST = "InvalidRequest"
    EXECUTION_FAILED = "ExecutionFailed"
    HOST_UNAVAILABLE = "HostUnavailable"
    PROTOCOL_ERROR = "ProtocolError"
    IO_ERROR = "IoError"


class GuestError(LockboxError):
    """A guest.v1 error: ``code`` (:class:`GuestErrorCode`) and ``message``; raised by
    :class:`GuestSession` and carried in replies."""

    def __init__(self, code: GuestErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}

    @classmethod
    def from_json(cls, value: Any) -> GuestError:
        if not isinstance(value, dict) or not isinstance(value.get("message"), str):
            raise ValueError("error must be an object with a string message")
        code = value.get("code")
        if not isinstance(code, str):
            raise ValueError("error.code must be a string")
        return cls(GuestErrorCode(code), value["message"])


def _invalid(message: str) -> GuestError:
    return GuestError(GuestErrorCode.INVALID_REQUEST, message)


def encode_payload_base64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def decode_payload_base64(value: str) -> bytes:
    """Standard base64 with padding, strictly (InvalidRequest otherwise)."""
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise _invalid(f"payload is not valid base64: {exc}") from None


# --- the wire types ----------------------------------------------------------------


def _enum(kind: type[enum.StrEnum], value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(member.value for member in kind)
        raise _invalid(f"{what} must be one of {names}, not {value!r}") from None


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise _invalid(f"permissions.{key} must be a boolean")
    return value


def _strings(obj: Mapping[str, Any], key: str) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"permissions.{key} must be a list of strings")
    return list(value)


@dataclass
class GuestPermission:
    """What a request may do (sync-rs's ``GuestPermission``)."""

    can_read_payload: bool = False
    can_read_context: bool = False
    can_write_payload: bool = False
    can_write_context: bool = False
    can_execute_wasm: bool = False
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_env: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "can_read_payload": self.can_read_payload,
            "can_read_context": self.can_read_context,
            "can_write_payload": self.can_write_payload,
            "can_write_context": self.can_write_context,
            "can_execute_wasm": self.can_execute_wasm,
            "allowed_hosts": list(self.allowed_hosts),
            "allowed_env": list(self.allowed_env),
        }

    @classmethod
    def from_json(cls, value: Any) -> GuestPermission:
        if not isinstance(value, dict):
            raise _invalid("context.permissions must be an object")
        return cls(
            _bool(value, "can_read_payload"), _bool(value, "can_read_context"),
            _bool(value, "can_write_payload"), _bool(value, "can_write_context"),
            _bool(value, "can_execute_wasm"), _strings(value, "allowed_hosts"),
            _strings(value, "allowed_env"),
        )


@dataclass
class GuestContext:
    mode: GuestMode
    role: GuestRole
    permissions: GuestPermission
    sync_path: str
    host_app: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "role": self.role.value,
                "permissions": self.permissions.to_json(), "sync_path": self.sync_path,
                "host_app": self.host_app}

    @classmethod
    def from_json(cls, value: Any) -> GuestContext:
        if not isinstance(value, dict):
            raise _invalid("context must be an object")
        for key in ("mode", "role", "permissions", "sync_path"):
            if key not in value:
                raise _invalid(f"context.{key} is missing")
        if not isinstance(value["sync_path"], str):
            raise _invalid("context.sync_path must be a string")
        host_app = value.get("host_app")
        if host_app is not None and not isinstance(host_app, str):
            raise _invalid("context.host_app must be a string or null")
        return cls(_enum(GuestMode, value["mode"], "context.mode"),
                   _enum(GuestRole, value["role"], "context.role"),
                   GuestPermission.from_json(value["permissions"]), value["sync_path"],
                   host_app)


@dataclass
class GuestRequest:
    version: str
    request_id: str
    action: GuestAction
    context: GuestContext
    input: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "request_id": self.request_id,
                "action": self.action.value, "context": self.context.to_json(),
                "input": self.input}

    def to_line(self) -> bytes:
        return _line(self.to_json())

    @classmethod
    def from_json(cls, value: Any) -> GuestRequest:
        if not isinstance(value, dict):
            raise _invalid("a request must be a JSON object")
        for key in ("version", "request_id", "action", "context"):
            if key not in value:
                raise _invalid(f"{key} is missing")
        if not isinstance(value["version"], str) or not isinstance(value["request_id"], str):
            raise _invalid("version and request_id must be strings")
        if value["version"] != GUEST_PROTOCOL_VERSION:
            raise GuestError(GuestErrorCode.PROTOCOL_ERROR,
                             f"protocol version {value['version']!r} is not "
                             f"{GUEST_PROTOCOL_VERSION!r}")
        return cls(value["version"], value["request_id"],
                   _enum(GuestAction, value["action"], "action"),
                   GuestContext.from_json(value["context"]), value.get("input"))


@dataclass
class GuestResponse:
    version: str
    request_id: str
    ok: bool
    result: Any = None
    error: GuestError | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "request_id": self.request_id, "ok": self.ok,
                "result": self.result,
                "error": None if self.error is None else self.error.to_json()}

    def to_line(self) -> bytes:
        return _line(self.to_json())

    @classmethod
    def from_json(cls, value: Any) -> GuestResponse:
        """Parse a reply (ValueError when it is not one)."""
        if not isinstance(value, dict):
            raise ValueError("a reply must be a JSON object")
        version, request_id, ok = value.get("version"), value.get("request_id"), value.get("ok")
        if not isinstance(version, str) or not isinstance(request_id, str):
            raise ValueError("version and request_id must be strings")
        if not isinstance(ok, bool):
            raise ValueError("ok must be a boolean")
        error = value.get("error")
        return cls(version, request_id, ok, value.get("result"),
                   None if error is None else GuestError.from_json(error))

    @classmethod
    def failure(cls, request_id: str, error: GuestError, result: Any = None) -> GuestResponse:
        return cls(GUEST_PROTOCOL_VERSION, request_id, False, result, error)


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


# --- serving -----------------------------------------------------------------------


class _RangeReader(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``offset`` of a file source (the
    payload copied by the context rewrite, in bounded pieces; a file changed meanwhile
    fails the copy)."""

    def __init__(self, source: FileSource, offset: int, size: int) -> None:
        super().__init__()
        self._source, self._offset, self._size, self._pos = source, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._size - self._pos))
        data = self._source.read([ByteRange(self._offset + self._pos, want)])[0] if want else b""
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _Archive:
    """What one request needs of the served file: layout, manifest, entries."""

    def __init__(self, path: str) -> None:
        self.path = path
        with FileSource(path) as source:
            self.identity = source.identity
            self.layout: SyncLayout = run_sync(open_layout_flow(source.size), source)
            self.manifest_bytes = run_sync(
                read_entry_flow(self.layout, MANIFEST_NAME, max_size=MAX_MANIFEST_SIZE), source)
        self.manifest = Manifest.parse(self.manifest_bytes)

    def open(self) -> FileSource:
        """The file again, as it was when the layout was read (StorageError otherwise)."""
        source = FileSource(self.path)
        if source.identity != self.identity:
            source.close()
            raise StorageError(f"{self.path} changed while the request was served")
        return source

    def entry(self, name: str, max_size: int) -> bytes:
        with self.open() as source:
            return run_sync(read_entry_flow(self.layout, name, max_size=max_size), source)

    def payload(self) -> bytes:
        size = self.layout.payload_size
        if size > MAX_GUEST_PAYLOAD_SIZE:
            raise GuestError(GuestErrorCode.EXECUTION_FAILED,
                             f"the payload is {size} bytes, over guest.v1's limit of "
                             f"{MAX_GUEST_PAYLOAD_SIZE} (it travels as one base64 line)")
        with self.open() as source:
            data = source.read([self.layout.payload_range])[0]
        if len(data) != size:
            raise StorageError(f"{self.path} ends inside its payload")
        return bytes(data)


_MAX_COPIED_ENTRY = 256 * 2**20  # sync.wasm / sync.proof held in memory by a context rewrite


def _rewrite_context(archive: _Archive, context: bytes) -> None:
    """Replace ``context.json`` (atomically; every other entry's content kept)."""
    from .writer import write_sync_file

    # (rewrite_sync_file replaces only the manifest and the payload: the file is written
    # anew from its entries, so entries outside the .sync set would be lost: refused)
    layout = archive.layout
    extra = [name for name in layout.entries if name not in SYNC_NAMES]
    if extra or layout.comment:
        raise StorageError(f"{archive.path} has entries ({', '.join(extra)}) or a ZIP comment "
                           "that a context.json rewrite would drop; it is left as it is")
    wasm = archive.entry(WASM_NAME, _MAX_COPIED_ENTRY) if layout.wasm is not None else None
    proof = archive.entry(PROOF_NAME, _MAX_COPIED_ENTRY) if layout.proof is not None else None
    payload_range = layout.payload_range
    with archive.open() as source, io.BufferedReader(
            _RangeReader(source, payload_range.offset, payload_range.size)) as f:
        write_sync_file(archive.path, manifest_toml=archive.manifest_bytes, payload=f,
                        wasm=wasm, context=context, proof=proof, overwrite=True)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _env_limits(env: Mapping[str, str]) -> Any:
    from .hook.runner import HookLimits

    def number(name: str) -> int | None:
        text = env.get(name)
        if text is None or text == "":
            return None
        if not text.isdigit() or int(text) <= 0:
            raise _invalid(f"{name} must be a positive integer, not {text!r}")
        return int(text)

    cpu_ms, memory_mb = number("GUEST_CPU_LIMIT_MS"), number("GUEST_MEMORY_LIMIT_MB")
    if cpu_ms is None and memory_mb is None:
        return None
    base = HookLimits()
    return HookLimits(
        timeout_s=cpu_ms / 1000 if cpu_ms is not None else 86_400.0,
        memory_bytes=min(memory_mb * 2**20, 2**31) if memory_mb is not None
        else base.memory_bytes,
    )


_NEEDS = {
    GuestAction.READ_PAYLOAD: ("can_read_payload", "read payload not allowed"),
    GuestAction.READ_CONTEXT: ("can_read_context", "read context not allowed"),
    GuestAction.WRITE_PAYLOAD: ("can_write_payload", "write payload not allowed"),
    GuestAction.UPDATE_PAYLOAD: ("can_write_payload", "write payload not allowed"),
    GuestAction.WRITE_CONTEXT: ("can_write_context", "write context not allowed"),
    GuestAction.EXECUTE_WASM: ("can_execute_wasm", "execute wasm not allowed"),
}


def _check_permissions(role: GuestRole, permissions: GuestPermission,
                       action: GuestAction) -> None:
    if role == GuestRole.CONSUMER and action not in (GuestAction.READ_PAYLOAD,
                                                     GuestAction.READ_CONTEXT):
        raise GuestError(GuestErrorCode.PERMISSION_DENIED, "Owner context required")
    flag, message = _NEEDS[action]
    if not getattr(permissions, flag):
        raise GuestError(GuestErrorCode.PERMISSION_DENIED, message)


def _payload_input(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _invalid("input must be the new payload as a base64 string")
    if len(value) > MAX_LINE_SIZE:
        raise _invalid(f"the payload is over guest.v1's limit of {MAX_GUEST_PAYLOAD_SIZE} bytes")
    data = decode_payload_base64(value)
    if len(data) > MAX_GUEST_PAYLOAD_SIZE:
        raise _invalid(f"the payload is over guest.v1's limit of {MAX_GUEST_PAYLOAD_SIZE} bytes")
    return data


def _execute(path: str, request: GuestRequest, env: Mapping[str, str],
             now: datetime | None) -> Any:
    action = request.action
    if action == GuestAction.EXECUTE_WASM:
        return _execute_wasm(path, request, env, now)
    from .writer import rewrite_sync_file

    archive = _Archive(path)
    if action == GuestAction.READ_PAYLOAD:
        return encode_payload_base64(archive.payload())
    if action == GuestAction.READ_CONTEXT:
        if archive.layout.context is None:
            return None
        raw = archive.entry(CONTEXT_NAME, MAX_CONTEXT_SIZE)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GuestError(GuestErrorCode.EXECUTION_FAILED,
                             f"context.json is not valid JSON: {exc}") from None
    if action == GuestAction.WRITE_PAYLOAD:
        data = _payload_input(request.input)
        rewrite_sync_file(path, payload=data)
        return {"payload_size": len(data)}
    if action == GuestAction.UPDATE_PAYLOAD:
        data = _payload_input(request.input)
        fresh_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        manifest = archive.manifest.mark_fresh(fresh_at)
        rewrite_sync_file(path, manifest_toml=manifest.to_toml(), payload=data)
        return {"payload_size": len(data),
                "fresh_at": fresh_at.isoformat().replace("+00:00", "Z")}
    assert action == GuestAction.WRITE_CONTEXT
    context = _line(request.input)[:-1]
    if len(context) > MAX_CONTEXT_SIZE:
        raise _invalid(f"the context is over the limit of {MAX_CONTEXT_SIZE} bytes")
    _rewrite_context(archive, context)
    return {"context_size": len(context)}


def _execute_wasm(path: str, request: GuestRequest, env: Mapping[str, str],
                  now: datetime | None) -> Any:
    from .hook.update import update_sync_file

    passphrase = None
    if isinstance(request.input, dict) and "passphrase" in request.input:
        passphrase = request.input["passphrase"]
        if not isinstance(passphrase, str):
            raise _invalid("input.passphrase must be a string")
    elif request.input is not None:
        raise _invalid('ExecuteWasm takes no input (or {"passphrase": ...} for a vault)')
    report = update_sync_file(path, grants=request.context.permissions.allowed_hosts,
                              passphrase=passphrase, now=now, limits=_env_limits(env))
    return {
        "action": GuestAction.EXECUTE_WASM.value,
        "entry": report.entry,
        "payload_updated": report.updated,
        "payload_size": report.new_payload_size if report.updated else report.old_payload_size,
        "fresh_at": None if report.fresh_at is None
        else report.fresh_at.isoformat().replace("+00:00", "Z"),
        "allow_hosts": report.allow_hosts,
        "requests": [{"url": r.url, "result": r.result} for r in report.requests],
        "warnings": report.warnings,
    }


def _error_of(exc: BaseException) -> GuestError:
    if isinstance(exc, GuestError):
        return exc
    if isinstance(exc, UsageError):
        return _invalid(str(exc))
    if isinstance(exc, (StorageError, OSError)):
        return GuestError(GuestErrorCode.IO_ERROR, str(exc))
    if isinstance(exc, LockboxError):
        return GuestError(GuestErrorCode.EXECUTION_FAILED, str(exc))
    return GuestError(GuestErrorCode.EXECUTION_FAILED, f"{type(exc).__name__}: {exc}")


def handle_request(path: str | os.PathLike[str], line: bytes | str, *,
                   env: Mapping[str, str] | None = None,
                   now: datetime | None = None) -> GuestResponse:
    """Answer one request line for the ``.sync`` at ``path`` (never raises for a bad
    request or a failed action: the reply says it)."""
    target = os.fspath(path)
    request_id = ""
    try:
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _invalid(f"not a JSON request: {exc}") from None
        if isinstance(value, dict) and isinstance(value.get("request_id"), str):
            request_id = value["request_id"]
        request = GuestRequest.from_json(value)
        if not _same_file(request.context.sync_path, target):
            raise _invalid(f"the request is for {request.context.sync_path!r}; this guest "
                           f"serves {target!r}")
        manifest = _Archive(target).manifest
        permissions = request.context.permissions
        effective = GuestPermission(
            permissions.can_read_payload, permissions.can_read_context,
            permissions.can_write_payload, permissions.can_write_context,
            permissions.can_execute_wasm,
            intersect_patterns(permissions.allowed_hosts, manifest.allow_hosts),
            [name for name in permissions.allowed_env if name in manifest.allow_env],
        )
        _check_permissions(request.context.role, effective, request.action)
        request.context.permissions = effective
        result = _execute(target, request, os.environ if env is None else env, now)
    except Exception as exc:  # every failure becomes a reply
        return GuestResponse.failure(request_id, _error_of(exc))
    return GuestResponse(GUEST_PROTOCOL_VERSION, request_id, True, result, None)


def serve_guest(path: str | os.PathLike[str], stdin: IO[bytes] | IO[str],
                stdout: IO[bytes] | IO[str], *, env: Mapping[str, str] | None = None,
                max_line_size: int = MAX_LINE_SIZE) -> int:
    """Speak guest.v1 for the ``.sync`` at ``path``: one reply line per request line read
    from ``stdin`` (binary or text), until EOF. Returns 0 (the exit status); StorageError
    when a stream fails (the host app went away)."""
    while True:
        try:
            line = stdin.readline(max_line_size + 1)
        except (OSError, ValueError) as exc:
            raise StorageError(f"guest.v1: cannot read a request: {exc}") from None
        if not line:
            return 0
        raw = line.encode("utf-8") if isinstance(line, str) else line
        if len(raw) > max_line_size and not raw.endswith(b"\n"):
            while True:  # drop the rest of the oversized line
                rest = stdin.readline(max_line_size + 1)
                if not rest or (rest.endswith("\n") if isinstance(rest, str)
                                else rest.endswith(b"\n")):
                    break
            reply = GuestResponse.failure("", _invalid(
                f"the request line is over {max_line_size} bytes"))
        elif not raw.strip():
            continue
        else:
            reply = handle_request(path, raw, env=env)
        out = reply.to_line()
        try:
            if isinstance(stdout, io.TextIOBase):
                stdout.write(out.decode("utf-8"))
            else:
                stdout.write(out)  # type: ignore[arg-type]
            stdout.flush()
        except (OSError, ValueError) as exc:  # the host app closed its end
            raise StorageError(f"guest.v1: cannot write the reply: {exc}") from None


# --- the host-side session -----------------------------------------------------------


@dataclass(frozen=True)
class WidgetBounds:
    x: int
    y: int
    width: int
    height: int


_REQUEST_COUNTER = itertools.count(1)
_BASELINE_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "USER")
_WINDOWS_ENV = ("SYSTEMROOT", "SYSTEMDRIVE", "TEMP", "TMP")  # Python cannot start without


class GuestSession:
    """A guest.v1 session on one ``.sync`` (sync-rs's ``GuestSession``).

    Starts as a Headless Consumer that may read the payload and the context (sync-rs
    starts in Widget mode, which then refuses to run without widget bounds). Owners get
    write and execute rights only through the ``grant_*`` calls; hosts and env
    variables are intersected with the manifest's lists. ``execute_*`` check the
    permissions locally (GuestError PermissionDenied), then spawn the host app for one
    request and return its :class:`GuestResponse`; ``*_bytes`` variants return the
    decoded payload or raise the reply's GuestError. ``timeout_s`` bounds each host app
    run (it is killed past it: ExecutionFailed).
    """

    def __init__(self, sync_path: str | os.PathLike[str], *,
                 host_app: str | Sequence[str] | None = None,
                 timeout_s: float | None = 600.0) -> None:
        self.sync_path = os.fspath(sync_path)
        try:
            self.manifest = _Archive(self.sync_path).manifest
        except LockboxError as exc:
            raise _invalid(f"failed to open sync archive: {exc}") from None
        self.mode = GuestMode.HEADLESS
        self.role = GuestRole.CONSUMER
        self.permissions = GuestPermission(can_read_payload=True, can_read_context=True)
        self.host_app: tuple[str, ...] = DEFAULT_HOST_APP
        self.host_app_name: str | None = None
        if host_app is not None:
            self.set_host_app(host_app)
        self.cpu_limit_ms: int | None = None
        self.memory_limit_mb: int | None = None
        self.widget_bounds: WidgetBounds | None = None
        self.timeout_s = timeout_s

    # configuration (sync-rs's names) ---------------------------------------------------

    def set_host_app(self, host_app: str | Sequence[str]) -> None:
        """The host app to spawn: a program (run as ``PROGRAM guest SYNC_PATH``, sync-rs's
        convention) or an argv prefix (run as ``*ARGV SYNC_PATH``)."""
        if isinstance(host_app, str):
            if not host_app.strip():
                raise _invalid("host_app cannot be empty")
            self.host_app = (host_app, "guest")
            self.host_app_name = host_app
        else:
            argv = tuple(host_app)
            if not argv or not all(isinstance(a, str) and a for a in argv):
                raise _invalid("host_app cannot be empty")
            self.host_app = argv
            self.host_app_name = " ".join(argv)

    def as_widget(self, host_app: str | Sequence[str] | None = None) -> None:
        self.mode = GuestMode.WIDGET
        if host_app is not None:
            self.set_host_app(host_app)

    def as_headless(self, host_app: str | Sequence[str] | None = None) -> None:
        self.mode = GuestMode.HEADLESS
        if host_app is not None:
            self.set_host_app(host_app)

    def as_consumer(self) -> None:
        self.role = GuestRole.CONSUMER

    def as_owner(self) -> None:
        self.role = GuestRole.OWNER

    def grant_read_payload(self) -> None:
        self.permissions.can_read_payload = True

    def grant_read_context(self) -> None:
        self.permissions.can_read_context = True

    def grant_write_payload(self) -> None:
        self.permissions.can_write_payload = True

    def grant_context_write(self) -> None:
        self.permissions.can_write_context = True

    def grant_wasm_execution(self) -> None:
        self.permissions.can_execute_wasm = True

    def revoke_wasm_execution(self) -> None:
        self.permissions.can_execute_wasm = False

    def allow_host(self, host: str) -> None:
        if host not in self.permissions.allowed_hosts:
            self.permissions.allowed_hosts.append(host)

    def allow_env_var(self, name: str) -> None:
        if name not in self.permissions.allowed_env:
            self.permissions.allowed_env.append(name)

    def set_cpu_limit_ms(self, limit_ms: int) -> None:
        if limit_ms <= 0:
            raise _invalid("the CPU limit must be positive")
        self.cpu_limit_ms = limit_ms

    def set_memory_limit_mb(self, limit_mb: int) -> None:
        if limit_mb <= 0:
            raise _invalid("the memory limit must be positive")
        self.memory_limit_mb = limit_mb

    def set_widget_bounds(self, bounds: WidgetBounds) -> None:
        if bounds.width <= 0 or bounds.height <= 0:
            raise _invalid("widget bounds must have positive width and height")
        self.widget_bounds = bounds

    # the effective view ------------------------------------------------------------------

    def effective_permissions(self) -> GuestPermission:
        p = self.permissions
        return GuestPermission(
            p.can_read_payload, p.can_read_context, p.can_write_payload,
            p.can_write_context, p.can_execute_wasm,
            intersect_patterns(p.allowed_hosts, self.manifest.allow_hosts),
            [name for name in p.allowed_env if name in self.manifest.allow_env],
        )

    def get_context(self) -> GuestContext:
        return GuestContext(self.mode, self.role, self.effective_permissions(),
                            self.sync_path, self.host_app_name)

    def verify_permissions(self, action: GuestAction) -> None:
        """GuestError PermissionDenied unless the role and the grants allow ``action``."""
        _check_permissions(self.role, self.effective_permissions(), action)

    # execution ---------------------------------------------------------------------------

    def execute_read_payload(self) -> GuestResponse:
        return self.execute_request(GuestAction.READ_PAYLOAD, None)

    def execute_read_payload_bytes(self) -> bytes:
        response = self.execute_read_payload()
        if not response.ok:
            raise response.error or GuestError(GuestErrorCode.EXECUTION_FAILED,
                                               "read payload failed")
        if not isinstance(response.result, str):
            raise _invalid("payload must be a base64 string")
        return decode_payload_base64(response.result)

    def execute_read_context(self) -> GuestResponse:
        return self.execute_request(GuestAction.READ_CONTEXT, None)

    def execute_write_payload(self, new_content: str) -> GuestResponse:
        return self.execute_write_payload_bytes(new_content.encode("utf-8"))

    def execute_write_payload_bytes(self, new_content: bytes) -> GuestResponse:
        return self.execute_request(GuestAction.WRITE_PAYLOAD,
                                    encode_payload_base64(new_content))

    def execute_update_payload(self, new_content: str) -> GuestResponse:
        return self.execute_update_payload_bytes(new_content.encode("utf-8"))

    def execute_update_payload_bytes(self, new_content: bytes) -> GuestResponse:
        return self.execute_request(GuestAction.UPDATE_PAYLOAD,
                                    encode_payload_base64(new_content))

    def execute_write_context(self, new_context: Any) -> GuestResponse:
        return self.execute_request(GuestAction.WRITE_CONTEXT, new_context)

    def execute_wasm(self, *, passphrase: str | None = None) -> GuestResponse:
        return self.execute_request(GuestAction.EXECUTE_WASM,
                                    None if passphrase is None else {"passphrase": passphrase})

    def build_request(self, action: GuestAction, input: Any) -> GuestRequest:
        return GuestRequest(GUEST_PROTOCOL_VERSION, f"guest-{next(_REQUEST_COUNTER)}",
                            action, self.get_context(), input)

    def guest_env(self, request: GuestRequest) -> dict[str, str]:
        """The host app's environment: cleared, then sync-rs's baseline and policy."""
        if self.mode == GuestMode.WIDGET and self.widget_bounds is None:
            raise _invalid("widget bounds are required for widget mode")
        if self.mode == GuestMode.HEADLESS and self.widget_bounds is not None:
            raise _invalid("widget bounds are not allowed for headless mode")
        permissions = request.context.permissions
        env: dict[str, str] = {}
        names = _BASELINE_ENV + (_WINDOWS_ENV if os.name == "nt" else ())
        for key in names:
            if key in os.environ:
                env[key] = os.environ[key]
        for key, value in os.environ.items():
            if key.startswith(("CAPSULE_", "ATO_")):
                env[key] = value
        for key in permissions.allowed_env:
            if key in os.environ:
                env[key] = os.environ[key]
        env["ALLOW_HOSTS"] = ",".join(permissions.allowed_hosts)
        env["ALLOW_ENV"] = ",".join(permissions.allowed_env)
        env["CAPSULE_GUEST_PROTOCOL"] = request.version
        env["SYNC_PATH"] = self.sync_path
        env["GUEST_MODE"] = self.mode.value.lower()
        env["GUEST_ROLE"] = self.role.value.lower()
        if self.cpu_limit_ms is not None:
            env["GUEST_CPU_LIMIT_MS"] = str(self.cpu_limit_ms)
        if self.memory_limit_mb is not None:
            env["GUEST_MEMORY_LIMIT_MB"] = str(self.memory_limit_mb)
        if self.mode == GuestMode.WIDGET and self.widget_bounds is not None:
            b = self.widget_bounds
            env["GUEST_WIDGET_BOUNDS"] = f"{b.x},{b.y},{b.width},{b.height}"
        return env

    def execute_request(self, action: GuestAction, input: Any) -> GuestResponse:
        """Check, spawn the host app, send ``action`` with ``input``, return the checked
        reply (a reply that is not one, or is for another request or version, becomes a
        ProtocolError reply carrying the app's stdout and stderr)."""
        self.verify_permissions(action)
        request = self.build_request(action, input)
        env = self.guest_env(request)
        argv = [*self.host_app, self.sync_path]
        try:
            child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            raise GuestError(GuestErrorCode.EXECUTION_FAILED,
                             f"cannot start the host app {argv[0]!r}: {exc}") from None
        try:
            stdout, stderr = child.communicate(request.to_line(), timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise GuestError(GuestErrorCode.EXECUTION_FAILED,
                             f"the host app did not answer in {self.timeout_s:g} s") from None
        response = self._parse_response(request.request_id, stdout, stderr)
        if child.returncode != 0 and response.ok:
            response.ok = False
            response.error = GuestError(GuestErrorCode.EXECUTION_FAILED,
                                        f"guest exited with status {child.returncode}")
        if not response.ok and response.error is None:
            response.error = GuestError(GuestErrorCode.EXECUTION_FAILED,
                                        "guest failed without error payload")
        return response

    @staticmethod
    def _protocol_error(request_id: str, message: str, stdout: bytes,
                        stderr: bytes) -> GuestResponse:
        return GuestResponse.failure(
            request_id, GuestError(GuestErrorCode.PROTOCOL_ERROR, message),
            {"stdout": stdout.decode("utf-8", "replace"),
             "stderr": stderr.decode("utf-8", "replace")})

    def _parse_response(self, request_id: str, stdout: bytes, stderr: bytes) -> GuestResponse:
        response = None
        problem = "no reply"
        for stream in (stdout, stderr):
            if not stream.strip():
                continue
            try:
                response = GuestResponse.from_json(json.loads(stream))
                break
            except (ValueError, UnicodeDecodeError) as exc:
                problem = f"not a guest.v1 reply: {exc}"
        if response is None:
            return self._protocol_error(request_id, problem, stdout, stderr)
        if response.request_id != request_id:
            return self._protocol_error(request_id, "request_id mismatch", stdout, stderr)
        if response.version != GUEST_PROTOCOL_VERSION:
            return self._protocol_error(request_id, "protocol version mismatch", stdout, stderr)
        return response


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lockbox.formats.sync.guest FILE", file=sys.stderr)
        return 2
    return serve_guest(argv[0], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
