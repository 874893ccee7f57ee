"""A snapdir store served under ``/snap/``: plain GETs of its layout, and push endpoints.

``lockbox serve DIR --snap-store STORE [--push-token-file FILE]`` adds:

* ``GET``/``HEAD /snap/.objects/<h[0:3]>/<h[3:6]>/<h[6:9]>/<h[9:]>`` and the same
  under ``/snap/.manifests/``: the store's files, with the range and validator
  code of the archives (:func:`.files.file_response`). Only paths of the layout
  are answered (lowercase hex shards, checked by one regular expression before
  the file system is touched), so no ``..``, no other file of the store, no
  listing. Content-addressed files never change: they are ``immutable``. So the
  store URL of a reader is ``http://host:port/snap/``, exactly as it would be on
  any static host that serves the store directory.
* ``POST /snap/objects-needed``: the body is one object id per line; the answer
  (``text/plain``) the ids the store lacks, in first-seen order, each once.
  One bad line is a 400 naming the line, before any output.
* ``POST /snap/receive-pack[?require-manifest=ID]``: the body is a SNAPPACK 1 or
  1Z stream, parsed as it arrives (never buffered whole) and filed through
  lockbox's verify-before-file sink (temp sibling + atomic rename, the manifest
  only after ``end``). The answer is a JSON report. A client that goes away
  mid-body leaves no manifest and no temp file (objects already verified and
  filed stay: a rerun skips them).

A 1Z pack is also bounded by what it decompresses to: ``max_body_size``
(default: the same number as ``--max-push-size``), so one upload never files
or hashes more than a SNAPPACK 1 upload of the largest accepted size would.

Both POSTs need ``Authorization: Bearer <token>`` (compared in constant time)
with the token of ``--push-token-file``; without a token file they answer 403.
With pushing on, the server is a writer of the store: at start-up a thread
removes the temporary files a killed writer left in the layout (only names of
the store's own pattern, ``<rest>.<pid>.<n>.tmp`` in a shard directory,
untouched for :data:`STALE_TEMP_AGE_S`; see :func:`sweep_stale_temps`).
Errors are one line of ``text/plain``. Cross-origin pages may read the layout
(CORS as for the archives) but never push (the CORS preflight allows GET/HEAD).

Unlike the rest of the server, the push endpoints import lockbox
(:mod:`lockbox.formats.snap`) to verify what they file. Nothing is decrypted.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .files import FileStream, file_response

if TYPE_CHECKING:
    from lockbox.formats.snap.snappack import PackReadReport

__all__ = [
    "DEFAULT_MAX_IDS_SIZE",
    "DEFAULT_MAX_PACK_SIZE",
    "ERROR_HEADER",
    "SNAP_PREFIX",
    "LAYOUT_HEADERS",
    "STALE_TEMP_AGE_S",
    "SnapStoreConfig",
    "SweepReport",
    "TokenFileError",
    "layout_file",
    "read_push_token",
    "snap_routes",
    "start_sweep",
    "sweep_stale_temps",
]

log = logging.getLogger("lockbox_server")

#: Where the store is served: its layout is ``/snap/.objects/...`` and
#: ``/snap/.manifests/...``; the endpoints are ``/snap/objects-needed`` and
#: ``/snap/receive-pack``.
SNAP_PREFIX = "/snap/"

#: Default cap on a ``receive-pack`` body (bytes on the wire): 16 GiB.
DEFAULT_MAX_PACK_SIZE = 16 * 1024 ** 3
#: Default cap on an ``objects-needed`` body: 64 MiB, about a million ids.
DEFAULT_MAX_IDS_SIZE = 64 * 1024 ** 2

#: A temporary file of the store untouched (mtime) for this long belongs to a writer
#: that died: 15 minutes. A live upload to this server writes its temp file as its body
#: arrives, and a body slower than the server's minimum rate is cut long before; a
#: stalled writer of another process (``lockbox snap receive-pack`` on a pipe) whose
#: file is swept fails cleanly at its rename (nothing half-written is ever filed).
STALE_TEMP_AGE_S = 15 * 60.0

#: Added to every answer of the layout. Objects and manifests are named by
#: the BLAKE3 of their bytes, so a URL always has the same bytes: immutable.
LAYOUT_HEADERS: dict[str, str] = {
    "Cache-Control": "public, max-age=31536000, immutable, no-transform",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}
#: A 404 of the layout must not be cached: the object may be pushed next.
_MISSING_HEADERS: dict[str, str] = {
    "Cache-Control": "no-cache",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}
_POST_HEADERS: dict[str, str] = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
#: Names the lockbox error class of a refused push (the client raises the same class).
ERROR_HEADER = "Lockbox-Error"

_LAYOUT_PATH = re.compile(r"\.(objects|manifests)/([0-9a-f]{3})/([0-9a-f]{3})/([0-9a-f]{3})/"
                          r"([0-9a-f]{55})")
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: it travels in a header
_SHARD = re.compile(r"[0-9a-f]{3}")
#: A temp sibling of an object or manifest (FileStore's and snapdir's ``<rest>.<pid>.<n>.tmp``).
_TEMP_NAME = re.compile(r"[0-9a-f]{55}\.[0-9]+\.[0-9]+\.tmp")


class TokenFileError(ValueError):
    """The push token file cannot be used (one line saying why)."""


def read_push_token(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(token, warning)`` from a push token file; read once, at start-up.

    The token is the file's text without surrounding whitespace (a trailing
    newline is fine): visible ASCII, at least one character. ``warning`` is a
    line to show when the file (a regular one; a pipe is fine too) is readable
    by its group or by others, else None. Raises :class:`TokenFileError` with one line.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:  # a pipe is fine too: --push-token-file <(pass tok)
            st = os.fstat(f.fileno())
            raw = f.read(64 * 1024 + 1)
    except OSError as e:
        raise TokenFileError(f"cannot read push token file {name}: {e.strerror or e}") from None
    if len(raw) > 64 * 1024:
        raise TokenFileError(f"push token file {name} is larger than 64 KiB: not a token")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise TokenFileError(f"push token file {name} is not ASCII text") from None
    if not token:
        raise TokenFileError(f"push token file {name} is empty")
    if not _TOKEN.fullmatch(token):
        raise TokenFileError(f"push token file {name} must hold one token: visible ASCII, "
                             "no spaces")
    warning = None
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o044:
        warning = (f"push token file {name} is readable by its group or others "
                   f"(mode {stat.S_IMODE(st.st_mode):o}): chmod 600 {name}")
    return token, warning


def layout_file(root: Path, url_path: str) -> Path | None:
    """The file of the store layout that ``url_path`` (below ``/snap/``) names, or None.

    Only ``.objects/`` and ``.manifests/`` paths with lowercase hex shards of
    3/3/3/55 digits are accepted; nothing else of the directory is reachable.
    """
    if _LAYOUT_PATH.fullmatch(url_path) is None:
        return None
    return root.joinpath(*url_path.split("/"))


def _object_file(root: Path, hex_id: str) -> Path:
    return root / ".objects" / hex_id[0:3] / hex_id[3:6] / hex_id[6:9] / hex_id[9:]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class SnapStoreConfig:
    """What :func:`snap_routes` serves: the store directory, the push token, the caps."""

    root: Path
    push_token: str | None = None
    max_pack_size: int = DEFAULT_MAX_PACK_SIZE
    max_ids_size: int = DEFAULT_MAX_IDS_SIZE
    max_body_size: int | None = None
    """Cap on the bytes a SNAPPACK 1Z body decompresses to; None: ``max_pack_size``.

    The wire cap alone does not bound a 1Z upload: zstd turns a few KiB into GiB, and
    what an upload costs the store (decompression, hashing, files written) grows with
    the decompressed bytes. Capping those at the same number makes ``--max-push-size``
    mean the same for both forms (the v1 stream of the same records is the decompressed
    body plus its 11-byte magic line): compression saves the network, never raises what
    one upload may file. A larger tree goes in several packs (objects filed stay, a
    rerun skips them)."""

    @property
    def body_cap(self) -> int:
        """The decompressed-body cap in force (see :attr:`max_body_size`)."""
        return self.max_pack_size if self.max_body_size is None else self.max_body_size


def _line(status: int, message: str, *, close: bool = False,
          headers: dict[str, str] | None = None) -> Response:
    """One line of text/plain; ``close``: do not read the rest of the body."""
    out = {**_POST_HEADERS, **(headers or {})}
    if close:
        out["Connection"] = "close"
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=out)


class _BodyTooLarge(Exception):
    pass


def snap_routes(config: SnapStoreConfig) -> list[Route]:
    """The routes of the store (to be placed before any catch-all route). With pushing
    on, also starts the sweep of stale temporary files (:func:`start_sweep`)."""
    root = config.root
    if config.push_token is not None:
        start_sweep(root)

    def refuse_unauthorised(request: Request) -> Response | None:
        if config.push_token is None:
            return _line(403, "pushing is off: this server was started without "
                              "--push-token-file", close=True)
        header = request.headers.get("authorization")
        scheme, _, given = (header or "").strip().partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="lockbox snap store"'}
        if header is None or scheme.lower() != "bearer" or not given.strip():
            return _line(401, "this endpoint needs Authorization: Bearer <token> (the token of "
                              "the server's --push-token-file)", close=True, headers=challenge)
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                                   config.push_token.encode("ascii")):
            return _line(401, "wrong push token", close=True, headers=challenge)
        return None

    def declared_too_large(request: Request, cap: int) -> Response | None:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            return _line(413, f"the body ({length} bytes) is larger than this server accepts "
                              f"({cap} bytes)", close=True)
        return None

    async def layout(request: Request) -> Response | FileStream:
        path = layout_file(root, request.path_params["path"])
        answer = None
        if path is not None:
            answer = file_response(request, path, content_type="application/octet-stream",
                                   headers=LAYOUT_HEADERS)
        if answer is None:
            return PlainTextResponse("not found\n", status_code=404, headers=_MISSING_HEADERS)
        return answer

    async def objects_needed(request: Request) -> Response:
        refused = refuse_unauthorised(request) or declared_too_large(request, config.max_ids_size)
        if refused is not None:
            return refused
        ids: list[str] = []
        seen: set[bytes] = set()
        pending = b""
        line_no = 0
        received = 0

        def take(line: bytes) -> str | None:
            """Record one line; the error message if it is not an id."""
            nonlocal line_no
            line_no += 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                return None
            if _HEX64.fullmatch(line) is None:
                shown = line[:80].decode("ascii", "backslashreplace")
                return (f"line {line_no}: not an object id (64 lowercase hex digits): "
                        f"{shown!r}{'...' if len(line) > 80 else ''}")
            if line not in seen:
                seen.add(line)
                ids.append(line.decode("ascii"))
            return None

        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > config.max_ids_size:
                    return _line(413, f"the id list is larger than this server accepts "
                                      f"({config.max_ids_size} bytes)", close=True)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    problem = take(line)
                    if problem is not None:
                        return _line(400, problem)
                if len(pending) > 1024:  # no id line is that long: fail before buffering more
                    problem = take(pending)
                    return _line(400, problem or f"line {line_no}: too long")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it
        if pending:
            problem = take(pending)
            if problem is not None:
                return _line(400, problem)

        def absent() -> list[str]:
            return [i for i in ids if not _is_regular(_object_file(root, i))]

        needed = await anyio.to_thread.run_sync(absent)
        body = "".join(i + "\n" for i in needed)
        return PlainTextResponse(body, headers=_POST_HEADERS)

    async def receive_pack(request: Request) -> Response:
        refused = refuse_unauthorised(request) or declared_too_large(request, config.max_pack_size)
        if refused is not None:
            return refused
        required = request.query_params.get("require-manifest")
        if required is not None and _HEX64.fullmatch(required.encode("ascii", "replace")) is None:
            return _line(400, f"require-manifest={required[:80]!r} is not a snapshot id "
                              "(64 lowercase hex digits)", close=True)
        unknown = sorted(set(request.query_params) - {"require-manifest"})
        if unknown:
            return _line(400, f"unknown parameter {unknown[0][:40]!r} (only require-manifest)",
                         close=True)
        return await _receive(request, config, required)

    return [
        Route(SNAP_PREFIX + "objects-needed", objects_needed, methods=["POST"]),
        Route(SNAP_PREFIX + "receive-pack", receive_pack, methods=["POST"]),
        Route(SNAP_PREFIX + "{path:path}", layout, methods=["GET", "HEAD"]),
    ]


# -- receive-pack ---------------------------------------------------------------------------


def _status_of(exc: BaseException) -> int:
    """The HTTP status of a failure while filing a pack."""
    from lockbox.errors import FormatError, IntegrityError, StorageError, UsageError

    if isinstance(exc, (FormatError, IntegrityError, UsageError)):
        return 400  # FormatError includes LimitExceededError: a limit of the wire format
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError):
        return 507 if cause.errno in (errno.ENOSPC, errno.EDQUOT) else 500
    if isinstance(exc, StorageError):
        return 409  # the store refused it, e.g. a manifest whose objects are not there
    return 500


async def _receive(request: Request, config: SnapStoreConfig, required: str | None) -> Response:
    """Stream the body of ``request`` into the store; the answer (see the module).

    Each chunk goes through lockbox's :class:`PackReceiver` in a worker thread (file
    writes, hashing, 1Z decompression), one at a time under a lock. However the request
    ends without a report (a dropped connection, a refusal, the server stopping and
    cancelling it), the receiver is aborted (the staged object's temp file removed)
    before the handler returns. The abort runs in the event loop itself, holding the
    lock: a cancelled await may leave a chunk still being filed in its thread, and the
    abort must come after it. It is a close and an unlink, so it never blocks for long.
    """
    from lockbox.formats.snap.snappack import FileSink, PackReceiver
    from lockbox.formats.snap.store import FileStore

    receiver = PackReceiver(FileSink(FileStore(str(config.root))), require_manifest=required,
                            max_body_size=config.body_cap)
    lock = threading.Lock()

    def feed(chunk: bytes) -> None:
        with lock:
            receiver.feed(chunk)

    def close() -> PackReadReport:
        with lock:
            return receiver.close()

    def abort() -> None:
        with lock:
            receiver.abort()

    received = 0
    done = False
    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > config.max_pack_size:
                    raise _BodyTooLarge()
                if chunk:
                    await anyio.to_thread.run_sync(feed, chunk)
                if receiver.done:
                    break  # `end` was read (bytes after it are not looked at, as snapdir)
            report = await anyio.to_thread.run_sync(close)
            done = True
        except ClientDisconnect:
            abort()  # before saying so
            log.info("receive-pack: the client went away after %d bytes: no manifest "
                     "filed (verified objects stay)", received)
            return Response(status_code=400)  # nobody reads it
        except _BodyTooLarge:
            return _line(413, f"the pack is larger than this server accepts "
                              f"({config.max_pack_size} bytes)", close=True,
                         headers={ERROR_HEADER: "LimitExceededError"})
        except Exception as exc:  # a bad pack, a full disk: one line, no manifest filed
            return _refusal(exc)
    finally:
        if not done:
            abort()
    body: dict[str, Any] = {
        "objects_written": report.objects_written,
        "objects_skipped": report.objects_skipped,
        "manifest_id": report.manifest_id,
        "object_bytes": report.object_bytes,
        "pack_format": report.pack_format,
        "pack_bytes": received,
    }
    log.info("receive-pack: %s", json.dumps(body, sort_keys=True))
    return Response(json.dumps(body) + "\n", media_type="application/json",
                    headers=_POST_HEADERS)


def _refusal(exc: Exception) -> Response:
    """The answer to a pack that could not be filed: one line, the error's class."""
    from lockbox.errors import LockboxError

    status = _status_of(exc)
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, OSError):
        message = f"cannot file the pack: {exc.strerror or exc}"
    headers = {ERROR_HEADER: type(exc).__name__} if isinstance(exc, LockboxError) else {}
    if status >= 500:
        log.warning("receive-pack failed (%d): %s", status, message)
    else:
        log.info("receive-pack refused (%d): %s", status, message)
    return _line(status, message, headers=headers)


# -- stale temporary files ------------------------------------------------------------------


@dataclass
class SweepReport:
    """What :func:`sweep_stale_temps` did."""

    removed: list[Path]
    """Stale temporary files removed."""
    young: list[Path]
    """Temporary files of the pattern not yet stale (perhaps being written)."""
    failed: list[tuple[Path, str]]
    """Stale ones that could not be removed, with the system's reason."""
    youngest_mtime: float | None = None
    """The latest mtime among :attr:`young` (when the next look may find them stale)."""


def _shard_dirs(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return [e.path for e in entries
                    if _SHARD.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _temp_candidates(root: Path) -> list[str]:
    """Every file named as a temp sibling, in a shard directory of the layout (symlinks
    and other directories are not entered)."""
    found: list[str] = []
    for kind in (".objects", ".manifests"):
        for a in _shard_dirs(os.path.join(root, kind)):
            for b in _shard_dirs(a):
                for c in _shard_dirs(b):
                    try:
                        with os.scandir(c) as entries:
                            found.extend(e.path for e in entries
                                         if _TEMP_NAME.fullmatch(e.name))
                    except OSError:
                        continue
    return found


def sweep_stale_temps(root: Path, *, min_age_s: float = STALE_TEMP_AGE_S,
                      now: float | None = None,
                      paths: list[Path] | None = None) -> SweepReport:
    """Remove the temporary files of the store at ``root`` that a writer which died
    left behind: regular files (never through a symlink) named ``<55 hex>.<pid>.<n>.tmp``
    in a ``.objects/`` or ``.manifests/`` shard directory (three levels of 3 lowercase
    hex digits), whose mtime is at least ``min_age_s`` before ``now`` (default: now).
    Nothing else of the directory is looked at. ``paths``: look at these
    (earlier :attr:`SweepReport.young`) instead of walking the store. Each removal is
    logged; the report says what was done."""
    moment = time.time() if now is None else now
    report = SweepReport([], [], [])
    candidates = [str(p) for p in paths] if paths is not None else _temp_candidates(root)
    for name in candidates:
        try:
            st = os.lstat(name)
        except OSError:
            continue  # renamed into place or removed by its writer meanwhile
        if not stat.S_ISREG(st.st_mode):
            continue
        if moment - st.st_mtime < min_age_s:
            report.young.append(Path(name))
            if report.youngest_mtime is None or st.st_mtime > report.youngest_mtime:
                report.youngest_mtime = st.st_mtime
            continue
        try:
            os.unlink(name)
        except FileNotFoundError:
            continue
        except OSError as e:
            report.failed.append((Path(name), e.strerror or str(e)))
            continue
        report.removed.append(Path(name))
    _log_sweep(root, report, min_age_s)
    return report


_LOGGED_PER_SWEEP = 20


def _log_sweep(root: Path, report: SweepReport, min_age_s: float) -> None:
    for path in report.removed[:_LOGGED_PER_SWEEP]:
        log.warning("snap store: removed a stale temporary file (a writer died): %s", path)
    if len(report.removed) > _LOGGED_PER_SWEEP:
        log.warning("snap store: ... and %d more stale temporary files removed under %s",
                    len(report.removed) - _LOGGED_PER_SWEEP, root)
    for path, reason in report.failed[:_LOGGED_PER_SWEEP]:
        log.warning("snap store: cannot remove the stale temporary file %s: %s", path, reason)
    if report.young:
        log.info("snap store: %d temporary file(s) younger than %d s left for now under %s",
                 len(report.young), int(min_age_s), root)


def start_sweep(root: Path, *, min_age_s: float | None = None) -> threading.Thread:
    """Sweep ``root`` in a daemon thread (a large store is walked without delaying the
    server's start): the stale temporary files go now; those still young (a server
    killed a moment ago and restarted at once) are looked at once more when they would
    be stale, and removed then if nothing touched them meanwhile."""
    age = STALE_TEMP_AGE_S if min_age_s is None else min_age_s

    def run() -> None:
        try:
            report = sweep_stale_temps(root, min_age_s=age)
            if report.young and report.youngest_mtime is not None:
                time.sleep(max(0.0, report.youngest_mtime + age - time.time()) + 1.0)
                sweep_stale_temps(root, min_age_s=age, paths=report.young)
        except Exception:  # a sweep must never take the server down
            log.exception("snap store: the sweep of stale temporary files failed")

    thread = threading.Thread(target=run, name="snap-temp-sweep", daemon=True)
    thread.start()
    return thread
