"""The viewer's snapdir extension: a snapshot of a store on any static host, browsed in the
page (``#store=URL&id=ID``, or ``STORE_URL#id=ID`` in the open form).

The snapshot is a :class:`~lockbox.formats.snap.session.SnapSession` (the format-neutral
protocol: the listing from the manifest, a file's bytes from its object, fetched by id),
read through a :class:`~lockbox.formats.snap.store.StoreSource` over an
:class:`~lockbox.formats.snap.store.HttpStore`: plain GETs of the store's layout
(``.manifests/…`` once, then ``.objects/…`` per file opened), by synchronous XHR in the
worker (a ``Range`` header is sent; a host that ignores it and answers 200 with the whole
file is fine). What this module adds:

* opening (:func:`open_snapshot`): the store URL checked (http(s), no query or fragment),
  the manifest fetched once and checked against the id before anything is listed;
* the panel (:meth:`SnapExtension.info`): id, store, objects, bytes, the manifest's size;
* every byte checked before it reaches the page: the session verifies an object's BLAKE3
  over the whole object before it releases any byte of it (objects up to
  :data:`~lockbox.formats.snap.session.WHOLE_OBJECT_SIZE`: one GET; larger ones are read in
  windows and a download fails before its last piece if the hash does not match, so the
  page never saves it). A preview of part of a file needs the whole object hashed, so
  previews of files over :data:`PREVIEW_MAX` are refused with a message (a download checks
  them as it goes);
* messages naming the file and its object (:meth:`SnapExtension.message`): a damaged
  object (its bytes do not hash to its id) and a missing one (404) fail only the files
  that use it; the listing and every other file still open. The files that failed are
  kept (``info()["failed"]``), so the page can mark them in the listing;
* checking the whole snapshot in steps (:meth:`SnapExtension.check_next`): every object
  re-fetched and re-hashed (``verify_flow``), about :data:`CHECK_STEP_BYTES` per call, so
  the page shows progress and can stop between calls.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    NotFoundError,
    StorageError,
    UsageError,
)
from ..info import EntryInfo
from ..protocol import CheckReport, OpenOptions
from ..sources.base import AsyncOverSync
from ..sources.httprules import redact_url
from .driving import FlowSteps, Recorder
from .messages import AtPath, ViewerError, error_info

__all__ = ["SnapExtension", "open_snapshot", "store_uri", "snapshot_name", "PREVIEW_MAX",
           "CHECK_STEP_BYTES"]

PREVIEW_MAX = 16 * 1024 * 1024
"""Files up to this size are previewed (their object fetched whole, one GET, and hashed);
a preview of a larger file would fetch and hash all of it to show its start."""

CHECK_STEP_BYTES = 8 * 1024 * 1024
""":meth:`SnapExtension.check_next` returns after about this much was fetched."""

GET_TIMEOUT_S = 120.0
"""Each GET of the store, body included: an object of up to 16 MiB comes in one GET (the
store's default of 30 s would fail it below about 4.5 Mbit/s)."""

_PROBLEM_OBJECT = re.compile(r"\(object ([0-9a-f]{64})\): ")


def store_uri(store: str) -> Any:
    """The :class:`~lockbox.formats.snap.store.StoreUri` of a store URL given by the page:
    http(s) only (a page cannot read ``file://``), without query or fragment."""
    from ..formats.snap.store import StoreUri

    text = (store or "").strip()
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme not in ("http", "https"):
        raise ViewerError(error_info(
            "usage", "Not a store address",
            "Enter the http:// or https:// address of a snapdir store: the folder that "
            "holds its .objects and .manifests (e.g. https://example.org/store/)."))
    try:
        return StoreUri.parse(text)
    except UsageError as exc:
        raise ViewerError(error_info("usage", "Not a store address", str(exc),
                                     detail=f"UsageError: {exc}")) from None


def snapshot_name(snapshot: str) -> str:
    """How the page names a snapshot (its root, a zip of it): ``snapshot-<12 hex>``."""
    return f"snapshot-{snapshot[:12]}"


async def open_snapshot(store: str, snapshot: str) -> tuple[Recorder, Any, Any]:
    """``(source, session, store uri)``: the store's manifest of ``snapshot`` fetched (one
    GET) and checked against the id. Raises what the session raises (classified by
    :meth:`SnapExtension.message` through :func:`open_message`)."""
    from ..formats.snap.session import SnapFormat
    from ..formats.snap.store import HttpStore, StoreSource, check_id

    uri = store_uri(store)
    sid = check_id((snapshot or "").strip(), "snapshot id")
    source = StoreSource(HttpStore(uri, timeout=GET_TIMEOUT_S), sid)
    rec = Recorder(AsyncOverSync(source))
    rec.label = "open (manifest)"
    try:
        options = OpenOptions(settings={"snap_space": source.space, "snap_store": str(uri),
                                        "archive_name": snapshot_name(sid)})
        session = await rec.run(SnapFormat().open_flow(None, options))
    except BaseException:
        await rec.aclose()
        raise
    return rec, session, uri


def _object_of(session: Any, path: str) -> str:
    entry = session.manifest.get(path) if session is not None else None
    return entry.checksum if entry is not None and entry.kind == "F" else ""


def _network(exc: StorageError, store: str) -> dict[str, Any]:
    text = str(exc)
    detail = f"{type(exc).__name__}: {exc}"
    if "Timeout" in text or "timed out" in text:
        return error_info(
            "network", "The store did not answer in time",
            f"A request to the store ({store}) took longer than {GET_TIMEOUT_S:.0f} s, "
            "body included. Try again on a faster connection.", detail=detail)
    if " failed" in text:  # no answer at all: network, CORS
        return error_info(
            "network", "Could not reach the store",
            f"The request to the store ({store}) failed: the server is unreachable, or it "
            "does not allow this page to read it (CORS). A store on another origin must send "
            "Access-Control-Allow-Origin for this site (and allow the Range header).",
            detail=detail)
    status = text.rsplit(": ", 1)[-1] if ": HTTP " in text else text
    return error_info("unavailable", "The store did not answer",
                      f"The store ({store}) answered {status}.", detail=detail)


def open_message(exc: BaseException, store: str, snapshot: str) -> dict[str, Any] | None:
    """The message for a failure to open snapshot ``snapshot`` of ``store`` (None: not a
    failure of this kind; the generic messages apply)."""
    detail = f"{type(exc).__name__}: {exc}"
    shown = redact_url(store) if store else "the store"
    if isinstance(exc, NotFoundError):
        return error_info(
            "not_found", "No such snapshot",
            f"The store ({shown}) has no snapshot {snapshot}: its manifest is not there. "
            "Check the id, and that the address is the store's folder (the one holding "
            ".objects and .manifests).", detail=detail)
    if isinstance(exc, IntegrityError):
        return error_info(
            "corrupt", "Damaged snapshot manifest",
            f"The manifest of snapshot {snapshot} in the store ({shown}) does not hash to "
            "its id: the store is damaged or was tampered with. Nothing of it was listed.",
            detail=detail)
    if isinstance(exc, LimitExceededError):
        return error_info("unsupported", "Manifest too large", str(exc), detail=detail)
    if isinstance(exc, FormatError):
        return error_info(
            "not_archive", "Not a snapdir manifest",
            f"What the store ({shown}) gave as the manifest of {snapshot} is not a snapdir "
            f"manifest (is the address the store's folder?): {exc}", detail=detail)
    if isinstance(exc, StorageError):
        return _network(exc, shown)
    return None


class SnapExtension:
    """One opened snapshot (its :class:`~lockbox.formats.snap.session.SnapSession`), the
    source it reads through and its store."""

    def __init__(self, session: Any, source: Recorder, store: Any) -> None:
        self.session = session
        self.source = source
        self.store = store
        self.failed: dict[str, str] = {}  # path -> "corrupt" | "not_found" | "network"
        self._check: FlowSteps[CheckReport] | None = None
        self._checked = {"objects": 0, "bytes": 0}
        self._report: dict[str, Any] | None = None

    @property
    def snapshot(self) -> str:
        return str(self.session.snapshot_id)

    def info(self) -> dict[str, Any]:
        """The panel's data."""
        m = self.session.manifest
        objects = m.object_ids()
        sizes = {e.checksum: e.size for e in m.files()}
        return {
            "snapshot_id": self.snapshot, "store": redact_url(str(self.store)),
            "name": snapshot_name(self.snapshot), "entries": len(m),
            "files": sum(1 for _ in m.files()),
            "dirs": sum(1 for e in m.entries if e.kind == "D" and e.rel_path),
            "objects": len(objects), "object_bytes": sum(sizes.values()),
            "file_bytes": m.file_bytes, "manifest_size": len(m.render()),
            "preview_max": PREVIEW_MAX, "failed": dict(self.failed),
            "check": self._report,
        }

    def stat_json(self, entry: EntryInfo) -> dict[str, Any]:
        """``stat`` of a snapshot entry: the protocol's, plus its object id (``blake3``
        already is) and whether it failed before."""
        out = entry.to_json()
        if entry.path in self.failed:
            out["failed"] = self.failed[entry.path]
        return out

    def check_preview(self, entry: EntryInfo, offset: int, size: int) -> None:
        """Refuse a partial preview that would fetch and hash a large object whole."""
        if entry.size > PREVIEW_MAX and (offset > 0 or size < entry.size):
            raise ViewerError(error_info(
                "usage", "Too large to preview",
                f"“{entry.path}” is {entry.size:,} bytes. Any part of it is shown only once "
                "its whole object has been fetched and its BLAKE3 checked, so it is not "
                "previewed here: download it (it is checked as it downloads, and not saved "
                "if it does not match).", path=entry.path))

    # -- messages ------------------------------------------------------------------------

    def message(self, exc: BaseException, stage: str, path: str | None) -> dict[str, Any] | None:
        """The message for a failure while browsing (None: the generic one applies).
        Failures of one file are recorded in :attr:`failed`."""
        if isinstance(exc, AtPath):
            path, exc = exc.path, exc.exc
        detail = f"{type(exc).__name__}: {exc}"
        obj = _object_of(self.session, path) if path else ""
        store = redact_url(str(self.store))
        if path and obj and isinstance(exc, IntegrityError):
            self.failed[path] = "corrupt"
            return error_info(
                "corrupt", f"Damaged: {path}",
                f"“{path}” was not shown: the store's copy of its object ({obj}) does not "
                "match its BLAKE3 id, so the store is damaged or was tampered with. Other "
                "files can still be opened.", detail=detail, path=path)
        if path and obj and isinstance(exc, NotFoundError):
            self.failed[path] = "not_found"
            return error_info(
                "not_found", f"Missing: {path}",
                f"“{path}” cannot be opened: its object ({obj}) is not in the store "
                f"({store}). Other files can still be opened.", detail=detail, path=path)
        if isinstance(exc, StorageError) and not isinstance(exc, NotFoundError):
            info = _network(exc, store)
            if path:
                info["path"] = path
            return info
        return None

    # -- checking every object -----------------------------------------------------------

    async def check_next(self) -> dict[str, Any]:
        """Check the snapshot (``verify_flow``: the manifest's own consistency, then every
        object re-fetched and re-hashed) for about :data:`CHECK_STEP_BYTES` more; returns
        the progress, and ``report`` once it is done (``problems``: one line each)."""
        if self._report is not None and self._check is None:
            self._report = None  # checked before: check again
            self._checked = {"objects": 0, "bytes": 0}
        if self._check is None:
            def progress(_path: str, size: int) -> None:
                self._checked["objects"] += 1
                self._checked["bytes"] += size

            self._check = FlowSteps(self.session.verify_flow(progress), self.source)
        steps = self._check
        self.source.label = "check (all objects)"
        start = self.source.stats.bytes_read
        try:
            while self.source.stats.bytes_read - start < CHECK_STEP_BYTES:
                if not await steps.step():
                    break
        except BaseException:
            self._check = None
            steps.close()
            raise
        out: dict[str, Any] = {"done": steps.done, **self._checked,
                               "objects_total": len(self.session.manifest.object_ids())}
        if steps.done:
            report = steps.result
            assert report is not None
            self._check = None
            self._note_problems(report.problems)
            self._report = {"ok": report.ok, "problems": list(report.problems),
                            "bytes_checked": report.bytes_checked,
                            "entries_checked": report.entries_checked,
                            "failed": dict(self.failed)}
            out["report"] = self._report
        return out

    def _note_problems(self, problems: list[str]) -> None:
        """Every file whose object a check found damaged or missing goes into
        :attr:`failed` (a problem line names one file and its object; files that share
        the object share its fate)."""
        bad: dict[str, str] = {}
        for line in problems:
            found = list(_PROBLEM_OBJECT.finditer(line))  # the last: a path may hold one
            if not found:
                continue
            m = found[-1]
            rest = line[m.end():]
            if rest.startswith("the object is not in the store"):
                bad[m.group(1)] = "not_found"
            elif rest.startswith("the object in the store is damaged"):
                bad[m.group(1)] = "corrupt"
        for e in self.session.manifest.files():
            kind = bad.get(e.checksum)
            if kind is not None:
                self.failed[e.rel_path] = kind

    def check_stop(self) -> bool:
        """Stop a check in progress (what it checked is dropped)."""
        steps, self._check = self._check, None
        if steps is None:
            return False
        steps.close()
        self._checked = {"objects": 0, "bytes": 0}
        return True
