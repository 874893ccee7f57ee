"""Messages for people: every error the viewer meets becomes ``{kind, title, message,
detail, path?}`` (:func:`classify`). ``kind`` is one of

``wrong_key``, ``unlock_limit``, ``not_archive``, ``unsupported``, ``no_range``, ``cors``,
``network``, ``unavailable``, ``changed``, ``corrupt``, ``not_found``, ``usage``,
``internal``.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    RangeNotSupportedError,
    SourceChangedError,
    SourceUnavailableError,
    StorageError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
    WrongKeyError,
)
from ..sources import is_url
from ..sources.httprules import redact_url

__all__ = ["classify", "error_info", "not_an_archive", "ViewerError", "AtPath"]


class ViewerError(Exception):
    """An error already classified (``info`` is the message for the page)."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info.get("message", ""))
        self.info = info


class AtPath(Exception):
    """Wraps an error that happened while reading one file (for the message)."""

    def __init__(self, exc: BaseException, path: str) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.path = path


def error_info(kind: str, title: str, message: str, *, detail: str = "",
               path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "title": title, "message": message, "detail": detail}
    if path is not None:
        out["path"] = path
    return out


def classify(exc: BaseException, *, stage: str = "", path: str | None = None,
             location: str = "", format_title: str = "",
             encrypted: bool = True) -> dict[str, Any]:
    """A message for people about ``exc``: ``{kind, title, message, detail, path?}``.

    ``stage`` is what was being done (``open``, ``unlock``, ``list``, ``read``...);
    ``path`` the file or folder concerned; ``location`` the archive (URL or file name);
    ``format_title`` what the archive is (``"lockbox archive"``, ``"uri archive"``) once
    known; ``encrypted``: its data is authenticated (else checksummed).
    """
    if isinstance(exc, ViewerError):
        return exc.info
    if isinstance(exc, AtPath):
        return classify(exc.exc, stage=stage, path=exc.path, location=location,
                        format_title=format_title, encrypted=encrypted)
    detail = f"{type(exc).__name__}: {exc}"
    shown = _shown_location(location)
    where = f" ({shown})" if shown else ""
    opening = stage in ("", "unlock", "open")
    if isinstance(exc, (WrongKeyError, LimitExceededError)) and \
            "over this reader's limit" in str(exc) and opening:
        # A key slot asks for more Argon2id work than this page allows (docs/SECURITY.md):
        # the CLI's --max-argon2-* flags do not apply here.
        return error_info(
            "unlock_limit", "A key slot is too costly to try here",
            "This archive's password slot asks for more Argon2id memory or time than the "
            "viewer allows in a browser tab, so it was not tried (a hostile archive could "
            "otherwise stall or crash the tab). If you trust the archive, open it with the "
            "lockbox command line, which can raise the limits.", detail=detail)
    if isinstance(exc, WrongKeyError):
        # The page names the secret that was given ("Wrong password" / "Wrong identity
        # file"): the title here is neutral.
        text = str(exc)
        if "no key slot opens" in text or not text:
            text = ("No key slot of this archive opens with it. Check the password (or the "
                    "identity file) and try again.")
        return error_info("wrong_key", "Wrong key", text, detail=detail)
    if isinstance(exc, SourceChangedError):
        return error_info("changed", "The archive changed",
                          "The archive was changed or replaced on the server while it was "
                          "open. Open it again to see the new version.", detail=detail,
                          path=path)
    if isinstance(exc, RangeNotSupportedError):
        return error_info("no_range", "The server does not support Range requests",
                          "The server sent the whole file instead of the part that was asked "
                          "for. lockbox needs a server that answers HTTP Range requests with "
                          "206 (nginx, Apache, the lockbox server, most static hosts and "
                          "object stores do).", detail=detail)
    if isinstance(exc, SourceUnavailableError):
        text = str(exc)
        if "CORS" in text or "network error" in text or "no answer" in text:
            return error_info("network", "Could not reach the archive",
                              "The request failed: the server is unreachable, or it does not "
                              "allow this page to read it (CORS). A server on another origin "
                              "must send Access-Control-Allow-Origin for this site and allow "
                              f"the Range header.{where}", detail=detail)
        return error_info("unavailable", "The archive is not available",
                          f"The server refused or could not find the archive{where}: "
                          f"{_short(_without_location(text, location))}", detail=detail)
    if isinstance(exc, StorageError):
        text = str(exc)
        if "Access-Control-Expose-Headers" in text:
            return error_info("cors", "The server hides the Content-Range header (CORS)",
                              "The server answered, but the browser does not let this page "
                              "read its Content-Range header. A cross-origin server must list "
                              "Content-Range, Accept-Ranges and ETag in "
                              "Access-Control-Expose-Headers.", detail=detail)
        return error_info("network", "Reading the archive failed", _short(text), detail=detail)
    what = format_title or "archive"
    if isinstance(exc, IntegrityError) and not opening:
        check = "does not authenticate" if encrypted else "does not match its checksum"
        if path:
            return error_info("corrupt", f"Damaged: {path}",
                              f"Part of “{path}” is damaged: its data {check} (the archive "
                              "was corrupted or tampered with). Other files are not affected "
                              "and can still be opened.", detail=detail, path=path)
        return error_info("corrupt", "Damaged archive data",
                          f"A part of the archive is damaged (it {check}). Other parts can "
                          "still be opened.", detail=detail)
    if isinstance(exc, UnsupportedVersionError):
        return error_info("unsupported", "Unsupported archive version",
                          f"This is a {what} of a format version this viewer does not read: "
                          f"{exc}", detail=detail)
    if isinstance(exc, (FormatError, IntegrityError)) and opening:
        if isinstance(exc, LimitExceededError) and "key slot" in str(exc):
            return error_info("unsupported", "No usable key slot", str(exc), detail=detail)
        return error_info("not_archive", f"Damaged {what}",
                          f"This {what} cannot be opened: its header is damaged{where}. "
                          f"{_short(str(exc))}", detail=detail)
    if isinstance(exc, TruncatedError):
        return error_info("corrupt", "Truncated archive", _short(str(exc)), detail=detail,
                          path=path)
    if isinstance(exc, (FormatError, IntegrityError)):
        return error_info("corrupt", "Damaged archive data", _short(str(exc)), detail=detail,
                          path=path)
    if isinstance(exc, NotFoundError):
        return error_info("not_found", "Not found", str(exc), detail=detail, path=path)
    if isinstance(exc, (UsageError, InvalidPathError)):
        return error_info("usage", "Cannot do that", str(exc), detail=detail, path=path)
    if isinstance(exc, LockboxError):
        return error_info("internal", "Error", str(exc), detail=detail, path=path)
    return error_info("internal", "Unexpected error",
                      f"Something went wrong in the viewer: {type(exc).__name__}: {exc}",
                      detail=detail, path=path)


def not_an_archive(looks: str, location: str, exc: BaseException) -> dict[str, Any]:
    """The message for a file no format recognises; ``looks``: what its first bytes look
    like (``lockbox.registry.describe``)."""
    shown = _shown_location(location)
    where = f" ({shown})" if shown else ""
    return error_info("not_archive", "Not an archive lockbox can read",
                      f"This file is not {_known_kinds()}{where}: {looks}.",
                      detail=f"{type(exc).__name__}: {exc}")


def _known_kinds() -> str:
    """``a .lbox or .uri archive``: the extensions of every registered format."""
    from ..registry import formats

    exts = [ext for spec in formats() for ext in spec.extensions]
    named = " or ".join([", ".join(exts[:-1]), exts[-1]] if len(exts) > 1 else exts)
    return f"a {named} archive"


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown_location(location: str) -> str:
    """The archive as messages name it: a URL without credentials or query."""
    return redact_url(location) if is_url(location) else location


_REQUEST_PREFIX = re.compile(r"^(?:GET|HEAD) \S+: ")


def _without_location(text: str, location: str) -> str:
    """A source's message without its leading ``GET <url>: `` (or ``<name>: ``): the
    message around it names the archive already, once."""
    shown = _shown_location(location)
    for prefix in (f"GET {shown}: ", f"{shown}: ", f"{location}: "):
        if location and text.startswith(prefix):
            return text[len(prefix):]
    return _REQUEST_PREFIX.sub("", text, count=1)
