"""``lockbox share ARCHIVE``: a share link that opens the archive in the viewer with no
prompt.

The command unlocks the archive with the usual secrets (``--password-file``,
``LOCKBOX_PASSWORD``, ``--identity``, or a prompt), adds a **link slot** (key-slot kind
3, docs/FORMAT.md §6) that wraps the content key under a fresh 256-bit random secret,
commits it durably (like ``keys add-password``) and prints::

    VIEWER#url=<archive URL, percent-encoded>&key=lbk1-<the secret, base64url>

The archive URL and the key travel in the URL's **fragment**, which browsers never
send to a server (not in a request, nor in a Referer); the viewer reads them from the
address bar and then removes them (docs/FORMAT.md §17.8). The slot id is printed too:
``lockbox keys rm ARCHIVE SLOT_ID`` revokes the link (both superblock slots lose it and
its key-directory copies are redacted; copies of the archive made before still open
with it, as for every removed slot).

``--viewer`` defaults to ``$LOCKBOX_VIEWER_URL``; ``--archive-url`` to where ``lockbox
serve`` serves the archive next to that viewer: the viewer's origin +
``/archives/<file name>``.

``add_share_parser(sub)`` adds the command to the top-level subparsers of
:func:`lockbox.cli.build_parser`.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from .cli import _common_parents, _err, _open, _out, _out_json
from .errors import UsageError

# The parser is built for every command: the command's own imports are made when it runs
# (tests/test_cli_imports.py).
if TYPE_CHECKING:
    from .formats.lbox.keys import LinkSecret

__all__ = ["add_share_parser", "cmd_share", "share_link", "default_archive_url",
           "VIEWER_ENV"]

VIEWER_ENV = "LOCKBOX_VIEWER_URL"

_DESCRIPTION = """\
Add a share link to ARCHIVE and print it: a viewer URL whose fragment holds the
archive's URL and a new random key (256 bits). Whoever has the link can open the
archive in the viewer, with no password, until the link is revoked with
'lockbox keys rm ARCHIVE SLOT_ID' (the slot id is printed with the link).

The key stays in the URL's #fragment, which browsers do not send to any server;
treat the link like a password all the same (chat logs, browser history). Revoking
does not change the archive's content key: copies of the archive made before the
revocation still open with the link.

The archive is opened with the usual secrets (--password-file, LOCKBOX_PASSWORD,
--identity, or a prompt on the terminal)."""


def _http_url(value: str, what: str) -> tuple[str, str, str, str, str]:
    """``value`` split, or UsageError when it is not an absolute http(s) URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} must be an absolute http:// or https:// URL, not "
                         f"{value!r}")
    return parts.scheme.lower(), parts.netloc, parts.path, parts.query, parts.fragment


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def viewer_url(args: argparse.Namespace) -> str:
    """The viewer's URL: ``--viewer``, else ``$LOCKBOX_VIEWER_URL``, without a fragment
    (the link's fragment is the command's own)."""
    from urllib.parse import urlunsplit

    value = getattr(args, "viewer", None) or os.environ.get(VIEWER_ENV) or ""
    if not value.strip():
        raise UsageError(f"no viewer URL: give --viewer URL (where the lockbox viewer is "
                         f"served, e.g. http://127.0.0.1:8000/ by 'lockbox serve DIR') or "
                         f"set {VIEWER_ENV}")
    scheme, netloc, path, query, fragment = _http_url(value, "--viewer")
    if fragment or value.strip().endswith("#"):
        raise UsageError("--viewer: give the viewer's URL without a #fragment (the link's "
                         "fragment carries the archive URL and the key)")
    return urlunsplit((scheme, netloc, path or "/", query, ""))


def default_archive_url(viewer: str, archive_path: str) -> str:
    """Where ``lockbox serve`` serves ``archive_path`` next to ``viewer``: the viewer's
    origin + ``/archives/`` + the file name, percent-encoded (the server's canonical
    archive URL; ``/NAME`` only redirects there)."""
    from urllib.parse import quote, urlunsplit

    scheme, netloc, _, _, _ = _http_url(viewer, "--viewer")
    name = os.path.basename(os.path.normpath(archive_path))
    return urlunsplit((scheme, netloc, "/archives/" + quote(name, safe=""), "", ""))


def share_link(viewer: str, archive_url: str, secret: LinkSecret) -> str:
    """``VIEWER#url=<archive URL>&key=lbk1-...``. The archive URL is percent-encoded
    for ``application/x-www-form-urlencoded`` (what the viewer's ``URLSearchParams``
    decodes): every character but unreserved ones, ``:`` and ``/`` is escaped, so a
    ``&``, ``#``, ``+``, ``%`` or ``=`` in it cannot end or change the parameter."""
    from urllib.parse import quote

    base = viewer.split("#", 1)[0]
    return (f"{base}#url={quote(archive_url, safe=':/')}&key={secret.text()}")


def cmd_share(args: argparse.Namespace) -> int:
    """lockbox share: add a link slot and print the link."""
    from urllib.parse import urlsplit

    from .formats.lbox.keys import LinkSecret

    viewer = viewer_url(args)
    if args.archive_url:
        _http_url(args.archive_url, "--archive-url")
        archive_url = args.archive_url.strip()
    else:
        archive_url = default_archive_url(viewer, args.archive)
    quiet = getattr(args, "quiet", False)
    with _open(args, write=True) as box:
        secret = LinkSecret.generate(box.crypto)
        with box.writer() as w:  # committed (durably) when the block ends
            slot_id = w.keys.add_link(w.crypto, w.view.archive_id, w.content_key, secret)
    link = share_link(viewer, archive_url, secret)
    if args.json:
        _out_json({"link": link, "slot_id": slot_id, "viewer": viewer,
                   "archive_url": archive_url})
        return 0
    _out(link)
    if not quiet:
        _out(f"link slot {slot_id} (revoke it: lockbox keys rm {args.archive} {slot_id})")
        host = urlsplit(viewer).hostname or ""
        if urlsplit(viewer).scheme == "http" and not _loopback(host):
            _err(f"warning: the viewer at {host} is served over plain http: whoever can "
                 "change its pages in transit can read the link's key; prefer https")
        if not args.archive_url:
            _err(f"the link expects the archive at {archive_url} ('lockbox serve DIR' "
                 "serves DIR's archives there); give --archive-url if it is elsewhere")
    return 0


def add_share_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``lockbox share ARCHIVE ...`` to the top-level subparsers ``sub`` (those of
    :func:`lockbox.cli.build_parser`); returns its parser."""
    quiet, secrets = _common_parents()
    p: argparse.ArgumentParser = sub.add_parser(
        "share", help="add a share link (opens in the viewer with no password)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[quiet, secrets])
    p.set_defaults(func=cmd_share)
    p.add_argument("archive", metavar="ARCHIVE", help="a local .lbox archive")
    p.add_argument("--viewer", metavar="URL", default=None,
                   help=f"the viewer's URL (default: ${VIEWER_ENV})")
    p.add_argument("--archive-url", metavar="URL", default=None,
                   help="the archive's URL as the viewer fetches it (default: the viewer's "
                        "origin + /archives/NAME, where 'lockbox serve' serves it)")
    p.add_argument("--json", action="store_true",
                   help="print the link, the slot id and the URLs as JSON")
    return p
