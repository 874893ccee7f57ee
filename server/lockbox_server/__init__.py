"""lockbox_server: serves lockbox archives by HTTP Range (and the viewer). It never decrypts.

* :func:`create_app` builds the Starlette app;
* :func:`serve` runs it under uvicorn until interrupted (``lockbox serve``,
  ``python -m lockbox_server``);
* :func:`running` runs it in a background thread (tests, tools);
* :func:`archive_urls` names the archives a server of a directory serves
  (the ``lockbox serve`` banner).

See docs/SERVER.md for the HTTP behaviour.
"""

from __future__ import annotations

from .app import LISTING_LIMIT, archive_urls, create_app, list_archives, safe_archive_path
from .runner import running, serve
from .site import MIME_TYPES, SITE_CSP

__all__ = [
    "LISTING_LIMIT",
    "MIME_TYPES",
    "SITE_CSP",
    "archive_urls",
    "create_app",
    "list_archives",
    "running",
    "safe_archive_path",
    "serve",
]
