"""lockbox_server: serves lockbox archives by HTTP Range (and the viewer). It never decrypts.

* :func:`create_app` builds the Starlette app;
* :func:`serve` runs it under uvicorn until interrupted (``lockbox serve``; the same
  command line is ``python -m lockbox_server``);
* :func:`running` runs it in a background thread (tests, tools);
* :func:`archive_urls` names the archives a server of a directory serves
  (the ``lockbox serve`` banner);
* :func:`default_site_dir` finds the built viewer (``$LOCKBOX_SITE``, the viewer packaged
  in ``lockbox_server/viewer/``, else the checkout's ``dist/site``).

Installed with lockbox's ``server`` extra: ``pip install 'lockbox[server]'``.

See docs/SERVER.md for the HTTP behaviour.
"""

from __future__ import annotations

try:  # the [server] extra's packages: a core-only install says how to get them
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(f"lockbox_server needs {exc.name}: pip install 'lockbox[server]'",
                              name=exc.name) from exc

from .app import LISTING_LIMIT, archive_urls, create_app, list_archives, safe_archive_path
from .runner import running, serve
from .site import MIME_TYPES, SITE_CSP
from .sitedir import default_site_dir

__all__ = [
    "LISTING_LIMIT",
    "MIME_TYPES",
    "SITE_CSP",
    "archive_urls",
    "create_app",
    "default_site_dir",
    "list_archives",
    "running",
    "safe_archive_path",
    "serve",
]
