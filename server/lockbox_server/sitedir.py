"""Where the built viewer is: :func:`default_site_dir` (``lockbox serve`` without ``--site``).

Search order, the first hit wins:

1. ``$LOCKBOX_SITE`` when it is set and not empty, returned as given (an explicit choice:
   not checked here; the server refuses a folder that does not exist);
2. :data:`PACKAGED_SITE`, the viewer inside this package (``lockbox_server/viewer/``): a
   wheel made by ``python build.py --wheel`` carries it; a plain ``pip wheel .`` does not
   (building the viewer needs Node.js);
3. ``dist/site`` of the source checkout this package runs from (``server/lockbox_server``
   beside ``pyproject.toml`` and ``dist/``), where ``python build.py`` puts it: an editable
   install (``scripts/setup.sh``) finds it there.

A folder counts (2, 3) only when it holds ``index.html``. None means no viewer: the server
then lists the archives at ``/``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGED_SITE", "SITE_ENV", "checkout_site", "default_site_dir"]

#: The environment variable that names the viewer folder (it wins over everything else).
SITE_ENV = "LOCKBOX_SITE"

_PACKAGE_DIR = Path(__file__).resolve().parent

#: The viewer packaged as data of lockbox_server (``python build.py --wheel`` puts it there).
PACKAGED_SITE = _PACKAGE_DIR / "viewer"


def _is_site(folder: Path) -> bool:
    return (folder / "index.html").is_file()


def checkout_site() -> Path | None:
    """``dist/site`` of the source checkout holding this package, if it is one and it exists."""
    root = _PACKAGE_DIR.parent.parent
    if _PACKAGE_DIR.parent.name != "server" or not (root / "pyproject.toml").is_file():
        return None  # installed from a wheel: there is no checkout around it
    candidate = root / "dist" / "site"
    return candidate if _is_site(candidate) else None


def default_site_dir() -> str | None:
    """The viewer folder to serve when none is given: ``$LOCKBOX_SITE``, else the packaged
    viewer, else the checkout's ``dist/site``; None when there is none (see the module doc)."""
    env = os.environ.get(SITE_ENV)
    if env:
        return env
    if _is_site(PACKAGED_SITE):
        return str(PACKAGED_SITE)
    found = checkout_site()
    return str(found) if found is not None else None
