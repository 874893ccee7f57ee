"""The static viewer site: safe path mapping, fixed MIME types, security headers.

* Paths map to files under the site root only: no ``..``, no empty segments
  (``//x``, also as ``/%2F%2Fx``), no dotfiles, no backslashes or NULs;
  symlinks are followed only when the resolved target is still inside the
  root. ``/dir/`` serves ``dir/index.html``; ``/dir`` (a directory) redirects
  to ``/dir/``, a ``Location`` built from the checked segments (percent-encoded)
  and never from the request, so it cannot name another host.
* Content types come from :data:`MIME_TYPES` first, so ``.wasm`` is always
  ``application/wasm`` (Pyodide hangs silently otherwise), ``.mjs``/``.js``
  ``text/javascript`` and ``.whl`` ``application/octet-stream``, whatever
  ``/etc/mime.types`` says; other names fall back to :mod:`mimetypes`.
* Every answer carries :data:`SITE_CSP`, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer`` and ``Cross-Origin-Resource-Policy:
  same-origin``; with ``isolate`` also COOP ``same-origin`` + COEP
  ``require-corp`` (cross-origin isolation, for SharedArrayBuffer).
* Caching: names with a content hash (``name.0123abcd.ext``, 8+ hex digits
  between dots or after a dash) are ``immutable`` for a year; everything else
  is ``no-cache`` (revalidated with the ETag, a cheap 304).
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .files import FileStream, file_response

__all__ = [
    "MIME_TYPES",
    "SITE_CSP",
    "content_type_for",
    "local_location",
    "resolve_site_path",
    "security_headers",
    "site_response",
]

MIME_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".cjs": "text/javascript",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".whl": "application/octet-stream",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".gz": "application/gzip",
    ".lbox": "application/octet-stream",
    ".uri": "application/octet-stream",  # mimetypes says text/uri-list, which hosts compress
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".py": "text/x-python; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".pdf": "application/pdf",
    ".xml": "application/xml",
}

#: The Content-Security-Policy of the viewer. Scripts, module workers and
#: WebAssembly from the site's own origin only ('wasm-unsafe-eval' allows
#: WebAssembly compilation but no JS eval); connect-src is open to every
#: http(s) origin because the user may type any archive URL (see docs/SERVER.md);
#: blob:/data: for previews (images, media, the PDF viewer in a frame).
SITE_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "connect-src 'self' http: https: blob: data:",
    "img-src 'self' blob: data:",
    "media-src 'self' blob:",
    "style-src 'self'",
    "font-src 'self'",
    "frame-src 'self' blob:",
    "object-src blob:",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

_HASHED = re.compile(r"[.-][0-9a-f]{8,}\.[A-Za-z0-9]+$")


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    known = MIME_TYPES.get(suffix)
    if known is not None:
        return known
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed is None or encoding is not None:  # never announce .gz-as-text etc.
        return "application/octet-stream"
    if guessed.startswith("text/") and "charset" not in guessed:
        return guessed + "; charset=utf-8"
    return guessed


def security_headers(*, csp: str = SITE_CSP, isolate: bool = False) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if isolate:
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Embedder-Policy"] = "require-corp"
    return headers


def local_location(segments: list[str], *, trailing_slash: bool = False, query: str = "") -> str:
    """A ``Location`` on this server for the path of ``segments`` (each percent-encoded).

    It always starts with ``/`` and one encoded, non-empty segment, so a browser
    cannot read it as another host (``//host``, ``/\\host``) or a scheme.
    """
    parts = [quote(s, safe="!$&'()*+,;=:@") for s in segments if s]
    if not parts:
        return "/"
    target = "/" + "/".join(parts) + ("/" if trailing_slash else "")
    assert target[1] not in "/\\", target
    return target + ("?" + quote(query, safe="=&;%+/:,@!$'()*") if query else "")


def _safe_segments(url_path: str) -> list[str] | None:
    segments = url_path.split("/")
    for seg in segments[:-1]:
        if not seg or seg in (".", "..") or seg.startswith(".") or "\\" in seg or "\x00" in seg:
            return None
    last = segments[-1]
    if last and (last.startswith(".") or "\\" in last or "\x00" in last):
        return None
    return segments


def resolve_site_path(root: Path, url_path: str) -> tuple[Path, bool] | None:
    """``(file, redirect_to_slash)`` for a URL path below the site, or None.

    ``url_path`` is the decoded path without its leading slash; ``root`` must
    already be resolved.
    """
    segments = _safe_segments(url_path)
    if segments is None:
        return None
    candidate = root.joinpath(*[s for s in segments if s])
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real != root and root not in real.parents:
        return None
    if real.is_dir():
        index = real / "index.html"
        if segments[-1]:  # "/dir" -> "/dir/"
            return (index, True) if index.is_file() else None
        try:
            index = index.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if root not in index.parents:
            return None
        return index, False
    if not segments[-1]:  # "/file.txt/"
        return None
    return real, False


def site_response(
    request: Request, root: Path, *, csp: str = SITE_CSP, isolate: bool = False
) -> Response | FileStream:
    """GET/HEAD of a path of the static site rooted at ``root`` (resolved)."""
    headers = security_headers(csp=csp, isolate=isolate)
    url_path: str = request.scope["path"]  # percent-decoded
    root_path: str = request.scope.get("root_path", "")
    if root_path and url_path.startswith(root_path):
        url_path = url_path[len(root_path):]
    # One leading slash only: "//x" keeps an empty first segment and is refused.
    relative = url_path[1:] if url_path.startswith("/") else url_path
    found = resolve_site_path(root, relative)
    if found is not None:
        path, redirect = found
        if redirect:
            target = local_location(relative.split("/"), trailing_slash=True,
                                    query=request.url.query)
            return RedirectResponse(target, status_code=308, headers=headers)
        name = path.name
        cache = "public, max-age=31536000, immutable" if _HASHED.search(name) else "no-cache"
        answer = file_response(
            request,
            path,
            content_type=content_type_for(name),
            headers={**headers, "Cache-Control": cache},
        )
        if answer is not None:
            return answer
    return PlainTextResponse("not found\n", status_code=404, headers=headers)
