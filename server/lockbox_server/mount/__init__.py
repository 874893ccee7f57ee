"""``lockbox mount``: WebDAV for every format the reader opens (wsgidav + cheroot).

* :func:`make_mount_app` -- the WSGI app for a target (an archive file or URL, a
  snapdir snapshot, a directory of ``.sync`` files), choosing the provider:
  :class:`ArchiveProvider` (read-only, any format), ``lbox_rw`` (a writable ``.lbox``),
  ``syncfs`` (a ``.sync`` file, a sync store);
* :func:`run_mount` -- serve it until Ctrl-C; :func:`start_mount_server` -- serve it
  in a thread (tests, tools);
* :func:`check_binding` -- loopback by default; another address needs basic auth.

Installed with lockbox's ``server`` extra: ``pip install 'lockbox[server]'``. See
docs/MOUNT.md.
"""

from __future__ import annotations

try:  # the [server] extra's packages: a core-only install says how to get them
    import cheroot  # noqa: F401
    import wsgidav  # noqa: F401
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(f"lockbox mount needs {exc.name}: pip install 'lockbox[server]'",
                              name=exc.name) from exc

from .app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    NO_TLS_WARNING,
    MountGuard,
    MountServer,
    check_binding,
    is_loopback,
    make_mount_app,
    make_provider,
    one_line_errors,
    run_mount,
    start_mount_server,
)
from .provider import ArchiveProvider, entry_etag

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "NO_TLS_WARNING",
    "ArchiveProvider",
    "MountGuard",
    "MountServer",
    "check_binding",
    "entry_etag",
    "is_loopback",
    "make_mount_app",
    "make_provider",
    "one_line_errors",
    "run_mount",
    "start_mount_server",
]
