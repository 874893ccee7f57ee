"""The range service: a Starlette app serving the archives of one directory.

Routes (read-only: GET and HEAD, anything else is 405; the store's two POSTs aside):

* ``/archives/{name}``: one archive, with our own RFC 9110 range code
  (:mod:`.ranges`, :mod:`.conditional`, :mod:`.files`), never compressed;
* ``/api/archives``: a JSON listing of the directory (at most
  :data:`LISTING_LIMIT` entries, with the total count);
* ``/`` and below: the viewer site when ``site_dir`` is given, otherwise a
  minimal HTML index of the archives at ``/`` only;
* ``/{name}`` where ``/archives/{name}`` exists (and the site has no such
  file): a 307 redirect to it, so ``lockbox ls http://host:port/x.lbox`` works;
* with ``snap_store``: a snapdir store under ``/snap/`` (GETs of its layout, and
  the ``POST`` endpoints ``objects-needed`` and ``receive-pack`` that need the
  push token; see :mod:`.snapstore`).

The hot request, a GET or HEAD of ``/archives/NAME`` for a regular file, is
answered by :class:`ArchiveFastPath` before Starlette (one ``lstat``, a cached
descriptor, the same answer code); anything else goes through Starlette.

Only regular files directly inside the directory are archives: names starting
with a dot, subdirectories, FIFOs/devices and anything whose resolved path
leaves the directory are refused (404) and never listed. A symlink whose
target is a regular file directly inside the directory is served (under the
link's name, with the target's validators). Nothing is decrypted; only the
store's push endpoints import lockbox (to verify what they file). Redirects
are built from validated names only, so a ``Location`` is always a path on
this server (never ``//host`` or ``/\\host``).
"""

from __future__ import annotations

import html
import os
import re
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .conditional import Validators, make_etag
from .files import (
    CHUNK_SIZE,
    FdCache,
    FileStream,
    file_answer,
    file_response,
    open_regular,
    plan_answer,
    read_cached,
)
from .site import SITE_CSP, security_headers, site_response
from .snapstore import DEFAULT_MAX_IDS_SIZE, DEFAULT_MAX_PACK_SIZE, SnapStoreConfig, snap_routes

__all__ = [
    "ARCHIVE_HEADERS",
    "CORS_ALLOW_HEADERS",
    "CORS_EXPOSE_HEADERS",
    "LISTING_LIMIT",
    "archive_names",
    "archive_url_path",
    "archive_urls",
    "ArchiveFastPath",
    "check_app_args",
    "create_app",
    "list_archives",
    "safe_archive_path",
]

#: Added to every archive answer. ``no-cache``: a browser may keep ranges but
#: must revalidate them (an archive can be replaced); ``no-transform``: no proxy
#: may recompress or alter the bytes; CORP ``cross-origin``: a cross-origin
#: isolated viewer (COEP require-corp) on another origin may still fetch them.
ARCHIVE_HEADERS: dict[str, str] = {
    "Cache-Control": "no-cache, no-transform",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}
#: Request headers a cross-origin page may send (preflight answer).
CORS_ALLOW_HEADERS = ("Range", "If-Match", "If-Range", "If-None-Match", "If-Modified-Since")
#: Response headers a cross-origin page may read.
CORS_EXPOSE_HEADERS = ("Content-Range", "Accept-Ranges", "ETag", "Content-Length",
                       "Last-Modified", "Content-Type")

#: Entries of ``/api/archives`` (and of the index page) at most; the JSON says
#: how many there are in all (``total``) and whether the list was cut
#: (``truncated``).
LISTING_LIMIT = 1000

_INDEX_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _name_ok(name: str) -> bool:
    return (bool(name) and name[0] != "." and "/" not in name and "\\" not in name
            and "\x00" not in name)


def safe_archive_path(root: Path, name: str) -> Path | None:
    """The real path of archive ``name`` in ``root`` (resolved), or None if refused."""
    if not _name_ok(name):
        return None
    try:
        real = (root / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != root or real.name.startswith(".") or not real.is_file():
        return None
    return real


def archive_url_path(name: str) -> str:
    """The URL path of archive ``name``: ``/archives/<name, percent-encoded>``."""
    return "/archives/" + quote(name, safe="")


def archive_names(root: Path) -> list[str]:
    """The sorted names of the servable archives in ``root`` (resolved).

    Cheap: a regular file is recognised from its directory entry; only
    symlinks are resolved (:func:`safe_archive_path`). An unreadable directory
    has none.
    """
    names: list[str] = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if not _name_ok(entry.name):
                    continue
                try:
                    if entry.is_symlink():
                        ok = safe_archive_path(root, entry.name) is not None
                    else:
                        ok = entry.is_file(follow_symlinks=False)
                except OSError:
                    ok = False
                if ok:
                    names.append(entry.name)
    except OSError:
        return []
    names.sort()
    return names


def list_archives(root: Path, limit: int = LISTING_LIMIT) -> tuple[list[dict[str, object]], int]:
    """``(entries, total)``: the first ``limit`` archives by name, and how many there are.

    Each entry has the name, size, mtime (ISO 8601 UTC, seconds), ETag and URL
    path. The first ``limit`` names are opened (a file that cannot be opened
    is left out and not counted); the others are only counted.
    """
    names = archive_names(root)
    out: list[dict[str, object]] = []
    dropped = 0
    for name in names:
        if len(out) >= limit:
            break
        real = safe_archive_path(root, name)
        opened = open_regular(real) if real is not None else None
        if opened is None:
            dropped += 1
            continue
        fd, st = opened
        os.close(fd)
        mtime = datetime.fromtimestamp(st.st_mtime_ns // 1_000_000_000, UTC)
        out.append({
            "name": name,
            "size": st.st_size,
            "mtime": mtime.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "etag": make_etag(st),
            "url": archive_url_path(name),
        })
    return out, len(names) - dropped


def archive_urls(directory: str, base_url: str, limit: int = 10) -> tuple[list[str], int]:
    """The URLs of the first ``limit`` archives of ``directory`` (sorted), and how many there are.

    ``base_url`` is where the server is reached (``http://127.0.0.1:8000/``,
    what ``serve``'s ``ready`` gets); a URL is ``base_url`` +
    ``archives/<percent-encoded name>``. For the ``lockbox serve`` banner: a
    missing or unreadable directory gives ``([], 0)``.
    """
    try:
        root = Path(directory).resolve(strict=True)
    except (OSError, RuntimeError):
        return [], 0
    entries, total = list_archives(root, max(0, limit))
    base = base_url.rstrip("/")
    return [base + str(e["url"]) for e in entries], total


def check_app_args(
    archive_dir: str | os.PathLike[str],
    *,
    site_dir: str | os.PathLike[str] | None = None,
    snap_store: str | os.PathLike[str] | None = None,
    push_token: str | None = None,
    max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
    max_ids_size: int = DEFAULT_MAX_IDS_SIZE,
) -> tuple[Path, Path | None, Path | None]:
    """The checks of :func:`create_app`'s arguments, without building anything:

    ``(archive root, site root, store root)``, resolved. Raises
    FileNotFoundError / NotADirectoryError for a bad directory, ValueError for a
    bad value (``serve`` runs this before it starts its workers).
    """
    root = Path(archive_dir).resolve(strict=True)
    if not root.is_dir():
        raise NotADirectoryError(str(root))
    site_root = Path(site_dir).resolve(strict=True) if site_dir is not None else None
    if site_root is not None and not site_root.is_dir():
        raise NotADirectoryError(str(site_root))
    snap_root = Path(snap_store).resolve(strict=True) if snap_store is not None else None
    if snap_root is not None and not snap_root.is_dir():
        raise NotADirectoryError(str(snap_root))
    if push_token is not None and not push_token:
        raise ValueError("push_token must not be empty")
    if max_pack_size < 1 or max_ids_size < 1:
        raise ValueError("max_pack_size and max_ids_size must be positive")
    return root, site_root, snap_root


def create_app(
    archive_dir: str | os.PathLike[str],
    *,
    site_dir: str | os.PathLike[str] | None = None,
    allowed_origins: Iterable[str] = (),
    isolate: bool = False,
    csp: str = SITE_CSP,
    snap_store: str | os.PathLike[str] | None = None,
    push_token: str | None = None,
    max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
    max_ids_size: int = DEFAULT_MAX_IDS_SIZE,
) -> ASGIApp:
    """The ASGI app serving ``archive_dir`` (and the viewer in ``site_dir``).

    GETs and HEADs of ``/archives/NAME`` where NAME is a regular file (the hot
    path) are answered by :class:`ArchiveFastPath` without Starlette's routing
    and middleware; everything else (symlinks, 404s, the listing, the site, the
    store) by the Starlette app. The answers are the same either way.

    ``allowed_origins``: origins allowed to read the archives and the listing
    cross-origin (exact ``scheme://host[:port]`` strings, or ``"*"``); empty
    means same-origin only. ``isolate`` adds COOP/COEP to the site.

    ``snap_store``: a snapdir store directory served under ``/snap/``;
    ``push_token`` (None: pushing is refused with 403) guards its POST
    endpoints, whose bodies are capped by ``max_pack_size`` (receive-pack) and
    ``max_ids_size`` (objects-needed), in bytes.
    """
    root, site_root, snap_root = check_app_args(
        archive_dir, site_dir=site_dir, snap_store=snap_store, push_token=push_token,
        max_pack_size=max_pack_size, max_ids_size=max_ids_size)
    origins = tuple(allowed_origins)

    def not_found() -> Response:
        return PlainTextResponse("not found\n", status_code=404, headers=ARCHIVE_HEADERS)

    async def archive(request: Request) -> Response | FileStream:
        path = safe_archive_path(root, request.path_params["name"])
        if path is None:
            return not_found()
        answer = file_response(request, path, content_type="application/octet-stream",
                               headers=ARCHIVE_HEADERS)
        return not_found() if answer is None else answer

    def archive_redirect(request: Request) -> Response | None:
        """307 to ``/archives/NAME`` for ``/NAME`` when that archive exists."""
        path: str = request.scope["path"]  # percent-decoded
        name = path[1:] if path.startswith("/") else ""
        if safe_archive_path(root, name) is None:
            return None
        return RedirectResponse(archive_url_path(name), status_code=307,
                                headers={"Cache-Control": "no-cache"})

    async def api_archives(request: Request) -> Response:
        entries, total = list_archives(root, LISTING_LIMIT)
        return JSONResponse(
            {"archives": entries, "total": total, "limit": LISTING_LIMIT,
             "truncated": total > len(entries)},
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def index(request: Request) -> Response:
        entries, total = list_archives(root, LISTING_LIMIT)
        rows = "".join(
            f"<li><a href=\"{html.escape(str(a['url']))}\">{html.escape(str(a['name']))}</a>"
            f" ({a['size']} bytes, {a['mtime']})</li>"
            for a in entries
        )
        more = (f"<p>… and {total - len(entries)} more (the list stops at {LISTING_LIMIT}).</p>"
                if total > len(entries) else "")
        page = (
            "<!doctype html><meta charset=utf-8><title>lockbox archives</title>"
            "<h1>lockbox archives</h1><p>Served by HTTP Range; nothing is decrypted here. "
            "Open one with <code>lockbox ls URL</code>.</p>"
            f"<ul>{rows or '<li>(none)</li>'}</ul>{more}"
        )
        headers = {**security_headers(csp=_INDEX_CSP, isolate=isolate), "Cache-Control": "no-cache"}
        return HTMLResponse(page, headers=headers)

    async def top_level(request: Request) -> Response:
        return archive_redirect(request) or not_found()

    async def site(request: Request) -> Response | FileStream:
        assert site_root is not None
        answer = site_response(request, site_root, csp=csp, isolate=isolate)
        if answer.status_code == 404:
            return archive_redirect(request) or answer
        return answer

    read_only = ["GET", "HEAD"]
    routes = [
        Route("/archives/{name}", archive, methods=read_only),
        Route("/api/archives", api_archives, methods=read_only),
    ]
    if snap_root is not None:
        routes.extend(snap_routes(SnapStoreConfig(
            snap_root, push_token=push_token, max_pack_size=max_pack_size,
            max_ids_size=max_ids_size)))
    if site_root is None:
        routes.append(Route("/", index, methods=read_only))
        routes.append(Route("/{name}", top_level, methods=read_only))
    else:
        routes.append(Route("/{path:path}", site, methods=read_only))

    # Deliberately no GZipMiddleware: archives are encrypted (incompressible)
    # and a compressed range would break byte offsets.
    app = Starlette(routes=routes)
    # No automatic "/x/" <-> "/x" redirects: Starlette builds them from the Host
    # header. Our only redirects are built from validated paths.
    app.router.redirect_slashes = False
    top: ASGIApp = ArchiveFastPath(root, app)
    if origins:  # outermost, so both paths get the same CORS answers
        top = _CORSMiddleware(
            top,
            allow_origins=origins,
            allow_methods=("GET", "HEAD"),
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            allow_private_network=True,
            max_age=86400,
        )
    return top


class _CORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, passing on the hot path's direct answers to requests
    without an ``Origin`` (those it would pass through untouched anyway)."""

    def direct_answer(self, method: str, path: str, headers: list[tuple[bytes, bytes]]
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes | bytearray] | None:
        if any(name == b"origin" for name, _value in headers):
            return None
        inner = getattr(self.app, "direct_answer", None)
        return inner(method, path, headers) if inner is not None else None

    def close(self) -> None:
        close = getattr(self.app, "close", None)
        if close is not None:
            close()


#: ``Range: bytes=a-b``, the form clients send (as :mod:`.ranges`' shortcut).
_SIMPLE_RANGE = re.compile(rb"bytes=([0-9]{1,18})-([0-9]{1,18})")

#: The request headers an archive answer depends on.
_CONDITIONAL = frozenset({b"range", b"if-match", b"if-none-match", b"if-modified-since",
                          b"if-unmodified-since", b"if-range"})


class ArchiveFastPath:
    """ASGI: GET/HEAD ``/archives/NAME`` of a regular file directly in ``root``, else ``app``.

    The hot path of the server. Per request: one ``lstat`` of the name, the
    descriptor from an :class:`.files.FdCache` (reopened when the name no longer
    names the cached inode), the precondition and range code shared with the
    Starlette path (:func:`.files.plan_answer`), and one read and one send for
    an answer of up to :data:`.files.CHUNK_SIZE` bytes. Anything else (a
    symlink, a missing or refused name, other paths and methods) goes to
    ``app``, which answers as it always did.
    """

    def __init__(self, root: Path, app: ASGIApp, *, cache: FdCache | None = None) -> None:
        self.root = root
        self.app = app
        self.cache = cache if cache is not None else FdCache()
        self._prefix = str(root) + os.sep
        #: The encoded headers every 206 of one version of a file starts with, by ETag.
        self._heads: dict[str, tuple[Validators, list[tuple[bytes, bytes]]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            answer = self.answer(scope)
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Close the cached descriptors (each once its last response is done)."""
        self.cache.close()

    def direct_answer(self, method: str, path: str, headers: list[tuple[bytes, bytes]]
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes | bytearray] | None:
        """``(status, raw headers, body)`` of a hot-path request that can be answered
        at once (see :meth:`.files.FileStream.now`), else None. For the server's
        protocol (:class:`.guard.GuardedHttpToolsProtocol`), which then writes the
        answer itself instead of running the ASGI app; the bytes on the wire are
        the same as the ASGI path's."""
        if method == "GET" and path.startswith("/archives/"):
            found = self._one_range(path[10:], headers)
            if found is not None:
                return found
        answer = self.answer({"method": method, "path": path, "headers": headers})
        return answer.now() if answer is not None else None

    def _one_range(self, name: str, headers: list[tuple[bytes, bytes]]
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes | bytearray] | None:
        """The commonest request, shortened: a GET with one ``Range: bytes=a-b`` of at
        most CHUNK_SIZE bytes inside the file, no other conditional header, the bytes
        in the page cache. The answer is :func:`.files.plan_answer`'s (its header
        order included); None for anything else (the general path then answers)."""
        range_value = None
        for key, value in headers:
            if key in _CONDITIONAL:
                if key != b"range" or range_value is not None:
                    return None
                range_value = value
        if range_value is None:
            return None
        simple = _SIMPLE_RANGE.fullmatch(range_value)
        if simple is None or not _name_ok(name):
            return None
        first_byte, last_byte = int(simple.group(1)), int(simple.group(2))
        full = self._prefix + name
        try:
            st = os.lstat(full)
        except (OSError, ValueError):
            return None
        if last_byte < first_byte or first_byte >= st.st_size \
                or not stat.S_ISREG(st.st_mode):
            return None
        stop = min(last_byte + 1, st.st_size)
        if stop - first_byte > CHUNK_SIZE:
            return None
        got = self.cache.acquire(name, full, st)
        if got is None:
            return None
        fd, st, validators, release = got
        try:
            size = st.st_size  # (the open file's: it may have been replaced since the lstat)
            stop = min(last_byte + 1, size)
            if first_byte >= size or stop - first_byte > CHUNK_SIZE:
                return None
            data = read_cached(fd, stop - first_byte, first_byte)
            if data is None:
                return None
            head = self._heads.get(validators.etag)
            if head is None or head[0] != validators:
                if len(self._heads) > 256:
                    self._heads.clear()
                _status, listed, _parts = plan_answer(
                    "GET", lambda _n: [], validators, 0,
                    content_type="application/octet-stream", headers=ARCHIVE_HEADERS)
                # a 200's headers, less its Content-Length: the 206's first seven
                head = (validators, [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                     for k, v in listed if k != "Content-Length"])
                self._heads[validators.etag] = head
            return 206, [*head[1],
                         (b"content-range", b"bytes %d-%d/%d" % (first_byte, stop - 1, size)),
                         (b"content-length", b"%d" % (stop - first_byte))], data
        finally:
            release()

    def answer(self, scope: Scope) -> FileStream | None:
        """The answer to ``scope`` if it is for the hot path, else None."""
        method = scope["method"]
        path: str = scope["path"]
        if method not in ("GET", "HEAD") or not path.startswith("/archives/") \
                or scope.get("root_path"):
            return None
        name = path[10:]
        if not _name_ok(name):
            return None
        full = self._prefix + name
        try:
            st = os.lstat(full)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):  # symlinks and the rest: the careful path
            return None
        got = self.cache.acquire(name, full, st)
        if got is None:
            return None
        fd, st, validators, release = got
        found: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            if key in _CONDITIONAL:
                found.setdefault(key.decode("latin-1"), []).append(value.decode("latin-1"))
        try:
            return file_answer(method, lambda n: found.get(n, []), fd, st,
                               content_type="application/octet-stream",
                               headers=ARCHIVE_HEADERS, release=release,
                               validators=validators)
        except BaseException:
            release()
            raise
