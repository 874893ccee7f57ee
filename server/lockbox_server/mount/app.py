"""The mount's WSGI app (wsgidav) and its server (cheroot): ``lockbox mount``.

:func:`make_mount_app` picks the provider for a target (see its docstring) and builds
a :class:`wsgidav.wsgidav_app.WsgiDAVApp` around it: in-memory lock and property
managers, basic auth when a user is given, and :class:`MountGuard` in front of the
provider. :func:`start_mount_server` serves an app with cheroot in a thread (tests,
tools); :func:`run_mount` serves until Ctrl-C (the CLI). :func:`check_binding` holds
the binding rule: loopback by default; any other address needs a user and password.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cheroot import wsgi
from wsgidav.dav_provider import DAVProvider
from wsgidav.dir_browser import WsgiDavDirBrowser
from wsgidav.error_printer import ErrorPrinter
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.mw.base_mw import BaseMiddleware
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from lockbox.errors import UsageError
from lockbox.facade import Archive, probe
from lockbox.registry import is_special_location
from lockbox.sources import is_url, open_source

from .provider import ArchiveProvider

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "NO_TLS_WARNING", "WRITE_METHODS", "MountGuard",
           "MountServer", "check_binding", "is_loopback", "make_mount_app", "make_provider",
           "one_line_errors", "run_mount", "start_mount_server"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4918
BLOCK_SIZE = 256 * 1024  # bytes wsgidav reads from a file per write to the socket
THREADS = 16  # cheroot worker threads (a file manager opens several connections)

WRITE_METHODS = frozenset({"PUT", "DELETE", "COPY", "MOVE", "MKCOL", "PROPPATCH", "POST",
                           "LOCK", "UNLOCK"})

NO_TLS_WARNING = ("warning: there is no TLS: the password and every file cross the network "
                  "in clear (use a trusted network, an SSH tunnel or a TLS proxy)")

_FINITE_DEPTH_BODY = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                      b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n')


class MountGuard(BaseMiddleware):
    """Runs after authentication, before wsgidav's request handling:

    * a read-only provider (``is_readonly()``): every write method gets 403 Forbidden
      and changes nothing (wsgidav itself would answer 405);
    * PROPFIND with ``Depth: infinity`` (or no Depth, which means infinity) gets 403
      with ``DAV:propfind-finite-depth`` (RFC 4918 9.1, as Apache does by default): a
      whole tree in one answer is unbounded work and memory. Clients then walk with
      Depth 1."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)
        mapping = config.get("provider_mapping", {})
        self.readonly = any(isinstance(p, DAVProvider) and p.is_readonly()
                            for p in mapping.values())

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if self.readonly and method in WRITE_METHODS:
            body = b"403 Forbidden: this mount is read-only\n"
            _drain(environ)
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").strip().lower() \
                not in ("0", "1"):
            _drain(environ)
            start_response("403 Forbidden", [("Content-Type", 'application/xml; charset="utf-8"'),
                                             ("Content-Length", str(len(_FINITE_DEPTH_BODY)))])
            return [_FINITE_DEPTH_BODY]
        result: Iterable[bytes] = self.next_app(environ, start_response)
        return result


def _climbs(environ: dict[str, Any]) -> bool:
    """True if the request's path, as sent or as decoded, has a ``..`` segment (also
    ``%2e%2e`` and backslash-separated): nothing above or beside the mount's root is ever
    named, so such a request gets 403 here rather than whatever a later layer makes of
    it (wsgidav answered 400 with a body it never sent)."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI") or ""
    raw = raw.split("?", 1)[0]
    for text in (raw, unquote(raw), environ.get("PATH_INFO", "")):
        if ".." in text.replace("\\", "/").split("/"):
            return True
    return False


def refuse_climbing(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """The outermost WSGI layer of a mount (what cheroot calls): a path with a ``..``
    segment gets one complete 403 before wsgidav sees it."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]
                ) -> Iterable[bytes]:
        if _climbs(environ):
            body = b"403 Forbidden: '..' in a path\n"
            _drain(environ)
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body))),
                                             ("Connection", "close")])
            return [body]
        return app(environ, start_response)

    return guarded


def _drain(environ: dict[str, Any], limit: int = 1 << 20) -> None:
    """Read a small request body so that the connection can be reused (a big one is
    left: cheroot closes the connection after the answer)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if 0 < length <= limit:
        environ["wsgi.input"].read(length)


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, auth: tuple[str, str] | None) -> str | None:
    """UsageError when ``host`` is not loopback and there is no ``auth``; else the
    warning to print (None on loopback)."""
    if is_loopback(host):
        return None
    if auth is None:
        raise UsageError(f"--host {host} is reachable from other machines: give --user NAME "
                         "and --password-file FILE (basic auth), or keep the default "
                         f"{DEFAULT_HOST}")
    return NO_TLS_WARNING


def _probe_format(location: str) -> str:
    source = open_source(location)
    try:
        return probe(source).spec.name
    finally:
        source.close()


def make_provider(target: str | os.PathLike[str] | Archive, *, writable: bool = False,
                  password: str | bytes | None = None, identity: Any = None,
                  settings: dict[str, Any] | None = None,
                  known_key: tuple[bytes, bytes] | None = None) -> DAVProvider:
    """The provider for ``target`` (how ``lockbox mount`` picks it):

    * an opened :class:`~lockbox.facade.Archive` -> :class:`ArchiveProvider` (read-only);
    * a directory -> the sync store (``syncfs.make_store_provider``; writable with
      ``writable``, else a read-only store listing);
    * a snapdir snapshot ``STORE_URI#id=ID`` -> :class:`ArchiveProvider`;
    * a file or URL, probed: a ``.sync`` -> ``syncfs.make_file_provider`` (read-only); a
      ``.lbox`` with ``writable`` -> ``lbox_rw.make_provider``; any other format ->
      :class:`ArchiveProvider`. ``writable`` with another format: UsageError.

    ``known_key``: ``(archive_id, content_key)`` of a ``.lbox`` (e.g. from the unlock
    agent) instead of a password or identity; the open checks it against the key
    directory's commitment (WrongKeyError when it does not open the archive)."""
    if isinstance(target, Archive):
        if writable:
            raise UsageError("--writable needs the archive's path, not an opened archive")
        return ArchiveProvider(target)
    location = os.fspath(target)
    settings = dict(settings or {})
    if not is_url(location) and not is_special_location(location) and os.path.isdir(location):
        syncfs = _import_part("syncfs", "a directory (a sync store)")
        provider: DAVProvider = syncfs.make_store_provider(location, writable=writable)
        return provider
    if is_special_location(location):
        if writable:
            raise UsageError(f"{location} is a snapdir snapshot: it mounts read-only "
                             "(leave out --writable)")
        return ArchiveProvider(Archive.open(location, **settings))
    fmt = _probe_format(location)
    if fmt == "sync":
        if writable:
            raise UsageError(f"{location} is a .sync file: it mounts read-only; mount its "
                             "directory with --writable for a writable sync store")
        syncfs = _import_part("syncfs", "a .sync file")
        kwargs: dict[str, Any] = {"password": password} if password is not None else {}
        provider = syncfs.make_file_provider(location, **kwargs)
        return provider
    if writable:
        if fmt != "lbox":
            raise UsageError(f"{location} is not a .lbox archive: only a .lbox (or a directory "
                             "of .sync files) mounts --writable")
        if is_url(location):
            raise UsageError("an archive on a web server mounts read-only; download it to "
                             "change it")
        lbox_rw = _import_part("lbox_rw", "a writable .lbox")
        provider = lbox_rw.make_provider(location, password=password, identity=identity,
                                         known_key=known_key)
        return provider
    if known_key is not None:
        settings["known_key"] = known_key
    return ArchiveProvider(Archive.open(location, password=password, identity=identity,
                                        **settings))


def _import_part(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{module}":
            raise
        raise UsageError(f"mounting {what} is not available in this version of lockbox "
                         f"(lockbox_server.mount.{module} is missing)") from None


def make_mount_app(target: str | os.PathLike[str] | Archive | DAVProvider, *,
                   writable: bool = False, password: str | bytes | None = None,
                   identity: Any = None, auth: tuple[str, str] | None = None,
                   settings: dict[str, Any] | None = None, verbose: int = 1,
                   dir_browser: bool = True,
                   known_key: tuple[bytes, bytes] | None = None) -> WsgiDAVApp:
    """The WebDAV app for ``target`` (an archive path or URL, a snapdir snapshot, a
    directory, an opened Archive, or a ready provider: see :func:`make_provider`).

    ``password`` / ``identity`` (or ``known_key``, ``(archive_id, content_key)``)
    unlock a ``.lbox``; ``settings`` go to
    :meth:`Archive.open <lockbox.facade.Archive.open>` (cache, limits ...). ``auth``:
    ``(user, password)`` for HTTP basic auth (None: anonymous). ``verbose``: wsgidav's
    log level (0 silent, 3 one line a request). ``dir_browser``: an HTML listing for a
    browser's GET on a collection. A provider with a ``mount_config`` dict attribute
    gets those wsgidav settings merged in (the switches only it supports, e.g.
    ``honor_mtime_header``: setting them for every provider would make a provider
    without ``set_last_modified`` answer 500)."""
    if isinstance(target, DAVProvider):
        provider = target
    else:
        provider = make_provider(target, writable=writable, password=password,
                                 identity=identity, settings=settings, known_key=known_key)
    if auth is not None:
        user, secret = auth
        if not user or ":" in user:
            raise UsageError("the user name must be non-empty and must not contain ':'")
        user_mapping: dict[str, Any] = {"*": {user: {"password": secret, "roles": []}}}
    else:
        user_mapping = {"*": True}  # anonymous
    stack: list[Any] = [ErrorPrinter, HTTPAuthenticator, MountGuard]
    if dir_browser:
        stack.append(WsgiDavDirBrowser)
    stack.append(RequestResolver)
    config: dict[str, Any] = {
        "provider_mapping": {"/": provider},
        "simple_dc": {"user_mapping": user_mapping},
        "http_authenticator": {"domain_controller": None, "accept_basic": True,
                               "accept_digest": False, "default_to_digest": False,
                               "trusted_auth_header": None},
        # A read-only share has no locks (DAV class 1: Finder then mounts it read-only).
        "lock_storage": not provider.is_readonly(),
        "property_manager": True,
        "middleware_stack": stack,
        "block_size": BLOCK_SIZE,
        "verbose": verbose,
        "logging": {"enable": verbose > 1, "enable_loggers": []},
        "suppress_version_info": True,
        "add_header_MS_Author_Via": True,
        "dir_browser": {"enable": dir_browser, "response_trailer": "lockbox mount",
                        "davmount": True, "davmount_links": False,
                        "ms_sharepoint_support": False, "libre_office_support": False,
                        "show_user": auth is not None, "icon": True,
                        "ignore": []},
    }
    # A provider may ask for wsgidav switches it supports (e.g. the writable .lbox:
    # honor_mtime_header, mutable_live_props, hotfixes.emulate_win32_lastmod).
    for key, value in (getattr(provider, "mount_config", None) or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return WsgiDAVApp(config)


def _close_provider(app: WsgiDAVApp) -> None:
    for provider in app.provider_map.values():
        close = getattr(provider, "close", None)
        if callable(close):
            close()


@dataclass
class MountServer:
    """A cheroot server of a mount app, serving in a thread (:func:`start_mount_server`)."""

    server: wsgi.Server
    thread: threading.Thread
    app: WsgiDAVApp
    host: str
    port: int

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def stop(self, *, close_provider: bool = True) -> None:
        self.server.stop()
        self.thread.join(timeout=30)
        if close_provider:
            _close_provider(self.app)

    def __enter__(self) -> MountServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(app: WsgiDAVApp, host: str, port: int) -> wsgi.Server:
    server = wsgi.Server((host, port), refuse_climbing(app), numthreads=THREADS,
                         server_name="lockbox-mount")
    try:
        server.prepare()  # binds
    except OSError as e:
        # cheroot reports every failed bind as one OSError without errno, the reasons
        # in its text: give a busy port its errno back (the CLI names it).
        if e.errno is None and (f"[Errno {errno.EADDRINUSE}]" in str(e)
                                or os.strerror(errno.EADDRINUSE) in str(e)):
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)) from e
        raise
    return server


def start_mount_server(app: WsgiDAVApp, *, host: str = DEFAULT_HOST, port: int = 0
                       ) -> MountServer:
    """Bind ``host:port`` (0: a free port) and serve ``app`` in a daemon thread."""
    server = _bind(app, host, port)
    bound_port = server.bind_addr[1]
    thread = threading.Thread(target=server.serve, name=f"lockbox-mount-{bound_port}",
                              daemon=True)
    thread.start()
    return MountServer(server, thread, app, host, bound_port)


class _OneLineErrors(logging.Handler):
    """wsgidav logs a failed request (500) as a traceback and then the error itself
    (``e.src_exception:``); on the command line, print only that, on one line."""

    def __init__(self, prefix: str) -> None:
        super().__init__(logging.ERROR)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Caught HTTPRequestException", "Traceback")):
            return
        message = message.removeprefix("e.src_exception:").strip()
        line = " ".join(message.split())
        if line:
            try:
                print(f"{self.prefix}: a request failed: {line}", file=sys.stderr, flush=True)
            except (OSError, ValueError):
                pass


def one_line_errors(prefix: str = "lockbox mount") -> None:
    """Route wsgidav's error log to stderr, one line per failed request (no
    tracebacks): what :func:`run_mount` sets up for the command line."""
    logger = logging.getLogger("wsgidav")
    if not any(isinstance(h, _OneLineErrors) for h in logger.handlers):
        logger.addHandler(_OneLineErrors(prefix))
    logger.propagate = False


STOP_TIMEOUT_S = 10.0  # how long run_mount waits for cheroot's thread after stop()


def run_mount(app: WsgiDAVApp, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
              ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` on ``host:port`` until Ctrl-C (KeyboardInterrupt, re-raised after a
    clean stop). ``ready(url)`` is called once listening. A busy port: OSError. Unless
    the app logs verbosely (``verbose`` > 1), a failed request prints one line on stderr
    (:func:`one_line_errors`)."""
    if app.config.get("verbose", 1) <= 1:
        one_line_errors()
    server = _bind(app, host, port)
    shown = f"[{host}]" if ":" in host else host
    # cheroot serves in a thread and this one only waits: Ctrl-C then lands here, never
    # inside cheroot's loop, where a KeyboardInterrupt at the wrong moment could leave
    # a worker thread waiting forever and stop() joining it (seen under load).
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve()
        except BaseException as e:  # a worker's interrupt, re-raised by serve()
            failure.append(e)

    thread = threading.Thread(target=serve, name="lockbox-mount", daemon=True)
    try:
        thread.start()
        if ready is not None:
            ready(f"http://{shown}:{server.bind_addr[1]}/")
        while thread.is_alive():
            thread.join(0.5)
    finally:
        server.stop()
        thread.join(STOP_TIMEOUT_S)
        _close_provider(app)
    if failure:
        raise failure[0]
