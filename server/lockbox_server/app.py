"""The range service: a Starlette app serving the archives of one directory.

Range handling is Starlette's FileResponse (single ranges -> 206 with
Content-Range, unsatisfiable -> 416). Only regular files directly inside the
directory are served; dotfiles, subpaths and symlinks leaving it are refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

__all__ = ["create_app", "safe_archive_path"]


def safe_archive_path(root: Path, name: str) -> Path | None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        return None
    path = root / name
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != root.resolve() or not real.is_file():
        return None
    return real


def create_app(directory: str | os.PathLike[str]) -> Starlette:
    root = Path(directory).resolve()

    async def archive(request: Request) -> Response:
        path = safe_archive_path(root, request.path_params["name"])
        if path is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        headers = {"Cache-Control": "no-transform", "Accept-Ranges": "bytes"}
        return FileResponse(path, headers=headers, media_type="application/octet-stream")

    def _listing() -> list[dict[str, object]]:
        out = []
        for p in sorted(root.iterdir()):
            if p.name.startswith(".") or not p.is_file() or p.is_symlink():
                continue
            out.append({"name": p.name, "size": p.stat().st_size,
                        "url": f"/archives/{p.name}"})
        return out

    async def api_archives(request: Request) -> Response:
        return JSONResponse(_listing())

    async def index(request: Request) -> Response:
        rows = "".join(
            f"<li><a href='{a['url']}'>{a['name']}</a> ({a['size']} bytes)<br>"
            f"<code>lockbox ls {request.base_url}{str(a['url']).lstrip('/')}</code></li>"
            for a in _listing())
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>lockbox archives</title>"
            "<h1>lockbox archives</h1><p>Served by HTTP Range; nothing is decrypted here."
            f"</p><ul>{rows}</ul>")

    return Starlette(routes=[
        Route("/", index),
        Route("/api/archives", api_archives),
        Route("/archives/{name}", archive, methods=["GET", "HEAD"]),
    ])
