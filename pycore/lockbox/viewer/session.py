"""The Python side of the browser viewer (``webapp/``), run inside Pyodide in the worker.

One :class:`Session` holds at most one archive, of any format lockbox reads: it opens
through :func:`lockbox.registry.open_session_flow` (the format comes from the first bytes)
and lists, previews and downloads through the format-neutral protocol
(:class:`lockbox.protocol.FormatSession`). What only ``.lbox`` has (unlock form, key
slots, env values, reuse of verified chunks, batched zips) is the ``.lbox`` extension,
:mod:`lockbox.viewer.lbox`. The worker (``webapp/src/boot-worker.mjs``) creates the
session once and forwards the page's requests to :meth:`Session.call` (results as a JSON
string) and :meth:`Session.call_binary` (``bytes``, or a JSON error string). Every error
becomes a message for people (:func:`lockbox.viewer.messages.classify`).

Flow of a session::

    probe  = await s.open_url(url)          # or open_blob(file): reads the first 16 KiB
    probe  = await s.open_snap(store, id)   # a snapdir snapshot: reads its manifest
    # encrypted (.lbox; a .sync vault): probe["methods"] says what unlocks it
    info   = await s.unlock(password=...)   # or identity="LOCKBOX-IDENTITY-1:..."; no request
    info   = await s.unlock(link="lbk1-...")  # a share link's key (#url=...&key=...)
    # not encrypted (.uri, .sync): opened already, probe["info"] is the archive's info
    root   = await s.ls("")                 # a folder's children, as columns
    batch  = await s.list_next()            # listing "walk": the next entries of the walk
    head   = await s.read("a.txt", 0, 65536)
    h      = await s.stream_open("big.bin") # then stream_next(h) until b"" (downloads)
    h      = await s.zip_open("photos")     # a folder as a .zip (stored), same protocol

**Two ways to list.** A format that knows its contents without reading them all
(``SessionInfo.entries`` is known: ``.lbox`` has a tree) is listed folder by folder with
``listdir_flow`` (``info["listing"] == "folders"``; *open + unlock + root listing* of a
``.lbox`` costs two round trips). Any other (``.uri`` has no index) is listed by one
streamed walk of the whole archive (``"walk"``): the page calls :meth:`Session.list_next`
again and again, each answer the entries found since the last one (``walk_flow`` emits
them as it reads; they are handed over after each round trip), grouped by folder, and
``ls`` answers from what the walk found so far (``complete`` once it ended). Those formats
also get a bounded cache of raw ranges (:class:`~lockbox.viewer.driving.RangeCache`), so
the reader's own index scan after the walk, and a download after a preview, fetch nothing
again when the archive's windows fit.

**snapdir snapshots** (:mod:`lockbox.viewer.snap`): ``open_snap(store, id)`` (or
``open_url("STORE_URL#id=ID")``) opens snapshot ``id`` of a store on any static host: the
manifest is fetched once and checked against the id, listed folder by folder, and each
file's object is fetched by id (one GET) and its BLAKE3 checked before any byte of it
reaches the page. ``snap_check_next`` re-checks every object, a step per call.

**Checked previews.** Every byte shown has been authenticated or checksummed, except a
*partial* preview of a file larger than :data:`CHECKED_PREVIEW_MAX` in a format without
per-chunk checks (``.uri``: its CRC covers the whole file): it is read unchecked
(``unchecked_partial_reads``) and the page says so (``info["checked_preview_max"]``).
Smaller files are read whole for a preview, so their CRC is checked.

Nothing here is browser-only except the sources: on CPython ``open_url`` uses httpx and
:meth:`Session.open_source` takes any async source (that is how it is unit-tested).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..drivers import Flow
from ..errors import FormatError, IntegrityError, LockboxError, UsageError, WrongKeyError
from ..formats.lbox.keys import LinkSecret
from ..formats.lbox.session import LboxSession
from ..info import EntryInfo
from ..protocol import FormatSession, FormatSpec, OpenOptions
from ..ranges import ByteRange
from ..registry import PROBE_SIZE, describe, detect, open_session_flow
from ..sources.base import AsyncRangeSource
from .driving import FlowSteps, RangeCache, Recorder, flow_pieces
from .lbox import LboxExtension, identity_secret, unlock_methods
from .listing import WalkedTree, columns
from .messages import AtPath, ViewerError, classify, error_info, not_an_archive
from .snap import SnapExtension, open_message, open_snapshot, snapshot_name
from .sync import SyncExtension
from .zipping import unsafe_zip_links, zip_pieces

__all__ = ["Session", "classify", "link_secret", "link_refused", "PREVIEW_LIMIT",
           "STREAM_PIECE", "CHECKED_PREVIEW_MAX", "WALK_BATCH"]

PREVIEW_LIMIT = 256 * 1024  # text previews read at most this much
STREAM_PIECE = 1024 * 1024  # stream_next() returns about this much per call
# A partial preview of a file up to this size reads the whole file (one window of the
# .uri reader), so that its checksum is checked; larger files are previewed unchecked.
CHECKED_PREVIEW_MAX = 4 * 1024 * 1024
WALK_BATCH = 250  # entries per emit of a streamed walk (the .uri reader's emit_batch)
# Settings given to every format; each takes what applies to it (lockbox.protocol).
_SETTINGS: dict[str, Any] = {"unchecked_partial_reads": True, "emit_batch": WALK_BATCH}


class _Stream:
    """One download in progress: an async iterator of byte pieces, read by stream_next()."""

    def __init__(self, pieces: AsyncIterator[bytes], size: int, name: str) -> None:
        self.pieces = pieces
        self.size = size
        self.name = name
        self.sent = 0
        self.current = name


class _Walk:
    """The streamed walk of the whole archive (listing ``"walk"``), one round trip per
    :meth:`next` at most."""

    def __init__(self, session: FormatSession, source: Recorder) -> None:
        self._batches: list[list[EntryInfo]] = []
        self.steps = FlowSteps(session.walk_flow("", self._batches.append), source)
        self.busy = False
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.steps.done and self.error is None and not self._batches

    async def next(self) -> list[EntryInfo]:
        """The entries found by the next round trips (at least one batch, or the end)."""
        if self.busy:
            raise UsageError("the listing is being read already")
        if self.error is not None and not self._batches:
            raise self.error
        self.busy = True
        try:
            while not self._batches and not self.steps.done:
                await self.steps.step()
        except Exception as exc:  # the walk ends here; what it found stays listed
            self.error = exc
            if not self._batches:
                raise
        finally:
            self.busy = False
        out = [e for batch in self._batches for e in batch]
        self._batches.clear()
        return out

    def close(self) -> None:
        if not self.steps.done:
            self.steps.close()


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""


def link_secret(text: str) -> LinkSecret:
    """The :class:`LinkSecret` of a share link's ``key`` (strict, docs/FORMAT.md §6), or
    a one-line message for a key that is not one (cut short, or a character changed when
    the link was copied). The message and its detail never hold the key's text."""
    try:
        return LinkSecret.parse(text if isinstance(text, str) else "")
    except FormatError as exc:
        raise ViewerError(error_info(
            "usage", "Not a valid share link",
            "This share link's key is damaged: it was cut short, or a character of it "
            "was changed when the link was copied. Ask for the link again.",
            detail=f"FormatError: {exc}")) from None


def link_refused(exc: WrongKeyError) -> dict[str, Any]:
    """The message for a share link whose key opens no slot: the link was revoked (its
    slot removed: ``lockbox keys rm``), or it is for another archive, or wrong."""
    return error_info(
        "wrong_key", "Wrong key",
        "This link's key does not open the archive: the link was revoked, or it is wrong "
        "(it may be for another archive).", detail=f"{type(exc).__name__}: {exc}")


def _clean(path: str) -> str:
    """A page's path as the protocol takes it: ``/``-separated, no outer ``/``, no ``.``
    (each format refuses ``..`` and what else it does not accept)."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def _stem(name: str, spec: FormatSpec) -> str:
    for ext in spec.extensions:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[:-len(ext)]
    return name


class Session:
    """At most one archive: opened (probed), unlocked when encrypted, then browsed."""

    def __init__(self) -> None:
        self._source: Recorder | None = None
        self._spec: FormatSpec | None = None
        self._session: FormatSession | None = None
        self._lbox: LboxExtension | None = None
        self._sync: SyncExtension | None = None
        self._snap: SnapExtension | None = None
        self._tree: WalkedTree | None = None  # listing "walk": what the walk found
        self._walk: _Walk | None = None
        self._location = ""
        self._kind = ""
        self._name = ""
        self._probe: dict[str, Any] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_handle = 1

    # -- the worker's entry points --------------------------------------------------

    async def call(self, method: str, args_json: str = "{}", extra: Any = None) -> str:
        """Run a JSON method; returns ``{"ok": result}`` or ``{"error": {...}}`` as JSON."""
        try:
            args = json.loads(args_json or "{}")
            fn = _JSON_METHODS.get(method)
            if fn is None:
                raise UsageError(f"unknown method {method!r}")
            if extra is not None:
                args["extra"] = extra
            result = await fn(self, **args)
            return json.dumps({"ok": result}, separators=(",", ":"))
        except Exception as exc:  # every failure becomes a message
            return json.dumps({"error": self._classify(exc, method, args_json)})

    async def call_binary(self, method: str, args_json: str = "{}") -> bytes | str:
        """Run a method returning bytes; on failure the JSON error string instead."""
        try:
            args = json.loads(args_json or "{}")
            fn = _BINARY_METHODS.get(method)
            if fn is None:
                raise UsageError(f"unknown method {method!r}")
            data: bytes = await fn(self, **args)
            return data
        except Exception as exc:
            return json.dumps({"error": self._classify(exc, method, args_json)})

    def _classify(self, exc: BaseException, method: str, args_json: str) -> dict[str, Any]:
        stage = {"open_url": "open", "open_blob": "open", "open_snap": "open",
                 "unlock": "unlock", "list_next": "ls"}.get(method, method)
        path = None
        try:
            path = json.loads(args_json or "{}").get("path")
        except (ValueError, AttributeError):
            pass
        if self._snap is not None:
            info = self._snap.message(exc, stage, path)
            if info is not None:
                return info
        spec = self._spec
        how = {"location": self._location, "format_title": spec.title if spec else "",
               "encrypted": spec.encrypted if spec else True}
        if stage == "ls" and isinstance(exc, IntegrityError):
            info = classify(exc, stage=stage, **how)  # type: ignore[arg-type]
            folder = path or "/"
            check = "does not authenticate" if how["encrypted"] else "fails its checksum"
            if method == "list_next":
                info["title"] = "Damaged archive listing"
                info["message"] = (f"The archive's listing is damaged (it {check}): it "
                                   "stopped there. What was listed before can still be "
                                   "opened.")
            else:
                info["title"] = f"Damaged folder listing: {folder}"
                info["message"] = (f"The listing of “{folder}” is damaged (it {check}). "
                                   "Other folders and files can still be opened.")
                info["path"] = path or ""
            return info
        if stage in ("read", "stat", "stream_open", "zip_open") and path is not None \
                and not isinstance(exc, AtPath):
            return classify(exc, stage=stage, path=path or "/", **how)  # type: ignore[arg-type]
        return classify(exc, stage=stage, **how)  # type: ignore[arg-type]

    # -- opening ----------------------------------------------------------------------

    async def open_url(self, url: str) -> dict[str, Any]:
        """Open ``url`` (reads its first 16 KiB); returns what the next step needs."""
        from ..formats.snap.store import parse_snap_location
        from ..sources import is_url, open_async_source

        url = url.strip()
        try:
            snap = parse_snap_location(url)
        except UsageError as exc:  # STORE_URL#id=<not 64 hex digits>
            raise ViewerError(error_info("usage", "Not a snapshot id", str(exc),
                                         detail=f"UsageError: {exc}")) from None
        if snap is not None:
            return await self.open_snap(url.rsplit("#", 1)[0], snap[1])
        if not is_url(url):
            raise ViewerError(error_info("usage", "Not a web address",
                                         "Enter an http:// or https:// address of an "
                                         "archive."))
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or url
        return await self.open_source(open_async_source(url), location=url, name=name,
                                      kind="url")

    async def open_snap(self, store: str, id: str) -> dict[str, Any]:
        """Open snapshot ``id`` of the snapdir store at ``store`` (an http(s) URL: the
        folder holding ``.objects`` and ``.manifests``): one GET of its manifest, checked
        against the id. Not encrypted: ``info`` is there at once."""
        from ..formats.snap.session import SnapFormat
        from ..formats.snap.store import snap_location

        await self.close()
        self._spec = None
        self._probe = {}
        self._kind = "snap"
        self._location = store
        sid = (id or "").strip()
        self._name = snapshot_name(sid)
        try:
            rec, session, uri = await open_snapshot(store, sid)
        except ViewerError:
            raise
        except Exception as exc:
            info = open_message(exc, store, sid)
            if info is None:
                raise
            raise ViewerError(info) from None
        self._source = rec
        self._spec = SnapFormat()
        self._session = session
        self._snap = SnapExtension(session, rec, uri)
        self._location = snap_location(uri, sid)
        name = self._name
        self._probe = {"name": name, "stem": name, "location": self._location, "kind": "snap",
                       "size": None, "format": SnapFormat.name,
                       "format_title": SnapFormat.title, "encrypted": False,
                       "store": str(uri), "id": sid}
        self._probe["info"] = self.info()
        return self._probe

    async def open_blob(self, extra: Any = None, name: str = "") -> dict[str, Any]:
        """Open a picked or dropped File (read in ranges by Blob.slice, never whole)."""
        from ..sources.browser import AsyncBlobRangeSource

        if extra is None:
            raise UsageError("no file was given")
        source = AsyncBlobRangeSource(extra, name=name or None)
        label = name or getattr(extra, "name", "") or "local file"
        return await self.open_source(source, location=label, name=label, kind="file")

    async def open_source(self, source: AsyncRangeSource, *, location: str, name: str,
                          kind: str) -> dict[str, Any]:
        """Detect the format from the first bytes (one round trip). An encrypted archive
        waits for :meth:`unlock` (``methods``: what its key slots take); any other is
        opened at once (``info``)."""
        await self.close()
        self._location = location
        self._kind = kind
        self._name = name
        self._spec = None
        self._probe = {}
        rec = Recorder(source)
        self._source = rec
        try:
            head = (await rec.read([ByteRange(0, PROBE_SIZE)]))[0]
            rec.head = head  # the format's own first reads come from here
            try:
                spec = detect(head)
            except FormatError as exc:
                raise ViewerError(not_an_archive(describe(head), location, exc)) from None
            self._spec = spec
            probe: dict[str, Any] = {
                "name": name, "stem": _stem(name, spec), "location": location, "kind": kind,
                "size": rec.size, "format": spec.name, "format_title": spec.title,
                "encrypted": spec.encrypted,
            }
            if spec.name == "lbox":
                probe["methods"], probe["generation"] = unlock_methods(head)
            elif spec.encrypted:
                probe["methods"] = ["password"]
            self._probe = probe
            if not spec.encrypted:
                await self._open(OpenOptions(settings=self._settings()))
                if self._sync is not None and self._sync.manifest.is_vault:
                    # A vault's payload is an age ciphertext: the page asks for its
                    # passphrase (the manifest is shown meanwhile: probe["sync"]).
                    probe["encrypted"] = True
                    probe["methods"] = ["passphrase"]
                    probe["sync"] = self._sync.info()
                else:
                    probe["info"] = self.info()
        except BaseException:
            await self.close()
            raise
        return probe

    async def unlock(self, password: str | None = None, identity: str | None = None,
                     link: str | None = None) -> dict[str, Any]:
        """Unlock the opened archive with a password, the text of an identity file (a
        ``.sync`` vault: its passphrase, given as ``password``) or a share link's key
        (``link``: the ``lbk1-...`` text of the link's fragment, for a ``.lbox``; tried
        alone, one HKDF per link slot, no Argon2id). A link key that is not one, or that
        opens no slot, gets its own message (:func:`link_secret`, :func:`link_refused`):
        neither repeats the key."""
        if self._source is None or self._spec is None:
            raise UsageError("open an archive first")
        if not self._probe.get("encrypted"):
            raise UsageError("this archive is not encrypted: there is nothing to unlock")
        if link is not None:
            if self._spec.name != "lbox":
                raise ViewerError(error_info(
                    "usage", "Not a lockbox archive",
                    f"A share link's key opens a lockbox archive (.lbox); this is a "
                    f"{self._spec.title}."))
            secret = link_secret(link)
            self._source.label = "unlock (share link)"
            try:
                await self._open(OpenOptions(secrets={"link": secret},
                                             settings=self._settings()))
            except WrongKeyError as exc:
                raise ViewerError(link_refused(exc)) from None
            return self.info()
        if self._spec.name == "sync":
            if not password:
                raise UsageError("enter the passphrase")
            self._source.label = "unlock"
            await self._open(OpenOptions(secrets={"passphrase": password},
                                         settings=self._settings()))
            assert self._sync is not None
            try:  # a wrong passphrase shows here, not at the first preview
                await self._sync.check_passphrase()
            except BaseException as exc:
                self._session = self._sync = None
                if isinstance(exc, WrongKeyError):
                    raise ViewerError(error_info(
                        "wrong_key", "Wrong key", "This passphrase does not decrypt the "
                        "vault's payload. Check it and try again.",
                        detail=f"{type(exc).__name__}: {exc}")) from None
                raise
            return self.info()
        if not password and not identity:
            raise UsageError("enter the password or choose an identity file")
        secrets: dict[str, Any] = {}
        if password:
            secrets["password"] = password
        if identity:
            secrets["identity"] = identity_secret(identity) if self._spec.name == "lbox" \
                else identity
        self._source.label = "unlock"
        await self._open(OpenOptions(secrets=secrets, settings=self._settings()))
        return self.info()

    def _settings(self) -> dict[str, Any]:
        """What every format is given (each takes what applies to it): the viewer's
        settings and the archive's file name (a ``.sync`` names its payload after it)."""
        return {**_SETTINGS, "archive_name": self._name}

    async def _open(self, options: OpenOptions) -> None:
        rec = self._source
        assert rec is not None
        self._session = self._lbox = self._sync = self._tree = None
        if rec.cache is None and self._spec is not None and self._spec.name == "sync":
            rec.cache = RangeCache()  # kept across a vault's open and unlock: read once
        session = await rec.run(open_session_flow(options, rec.size))
        if isinstance(session, LboxSession):
            self._lbox = LboxExtension(session, rec)
        elif rec.cache is None:
            rec.cache = RangeCache()
        if self._spec is not None and self._spec.name == "sync":
            listed = await rec.run(session.listdir_flow(""))
            files = [e for e in listed if e.is_file]
            if len(files) != 1:
                raise FormatError(f"a .sync lists one file, its payload; this one lists "
                                  f"{len(files)}")
            self._sync = SyncExtension(session, rec, files[0].path)
        if session.info().entries is None:
            self._tree = WalkedTree()
        self._session = session

    def _need(self) -> FormatSession:
        if self._session is None:
            if self._probe.get("encrypted"):
                raise UsageError("the archive is not unlocked")
            raise UsageError("open an archive first")
        return self._session

    def _label(self, what: str) -> None:
        if self._source is not None:
            self._source.label = what

    async def _run(self, flow: Flow[Any]) -> Any:
        assert self._source is not None
        return await self._source.run(flow)

    # -- reading ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the page shows about the archive: format-neutral facts (``details`` are
        the format's own), the listing mode, what a partial preview checks; ``walked``
        (listing "walk") and ``lbox`` (key slots) where they apply."""
        s = self._need()
        si = s.info()
        spec = self._spec
        assert spec is not None
        out: dict[str, Any] = {
            "name": self._probe.get("name"), "stem": self._probe.get("stem"),
            "location": self._location, "source": self._kind,
            "format": si.format, "format_title": spec.title, "encrypted": si.encrypted,
            "archive_size": si.archive_size if si.archive_size is not None
            else (self._source.size if self._source else None),
            "entries": si.entries, "file_bytes": si.file_bytes, "details": si.details,
            "listing": "folders" if self._tree is None else "walk",
            # every byte a .lbox or snapshot preview shows was checked (a snapshot's
            # previews read whole objects, up to snap.PREVIEW_MAX)
            "checked_preview_max": None if si.encrypted or self._snap is not None
            else CHECKED_PREVIEW_MAX,
        }
        if self._tree is not None:
            out["walked"] = {"entries": self._tree.entries, "complete": self._tree.complete,
                             **self._tree.counts}
        if self._lbox is not None:
            out["lbox"] = self._lbox.info()
        if self._sync is not None:
            out["sync"] = self._sync.info()
        if self._snap is not None:
            out["snap"] = self._snap.info()
        return out

    async def ls(self, path: str = "") -> dict[str, Any]:
        """A folder's children, folders first, then by name, as columns. Listing "walk":
        what the walk found so far (``complete``, ``seq``: the batches it holds)."""
        s = self._need()
        p = _clean(path)
        if self._tree is not None:
            return self._tree.listing(p)
        self._label(f"list /{p}")
        return columns(p, await self._run(s.listdir_flow(p)))

    async def list_next(self) -> dict[str, Any]:
        """The next entries of the streamed walk (listing "walk"), by folder as columns:
        ``{done, seq, entries, counts, added: {folder: columns}}``."""
        s = self._need()
        tree = self._tree
        if tree is None:
            raise UsageError("this archive is listed folder by folder (ls)")
        added: dict[str, Any] = {}
        if not tree.complete:
            if self._walk is None:
                assert self._source is not None
                self._walk = _Walk(s, self._source)
            self._label("list (walk)")
            found = await self._walk.next()
            if found:
                added = tree.add(found)
            if self._walk.done:
                tree.complete = True
                self._walk = None
        return {"done": tree.complete, "seq": tree.seq, "entries": tree.entries,
                "counts": dict(tree.counts), "added": added}

    async def stat(self, path: str) -> dict[str, Any]:
        s = self._need()
        p = _clean(path)
        self._label(f"stat /{p}")
        entry = await self._run(s.stat_flow(p))
        if self._snap is not None:
            return self._snap.stat_json(entry)
        return entry.to_json()  # type: ignore[no-any-return]

    async def _file(self, p: str) -> EntryInfo:
        e: EntryInfo = await self._run(self._need().stat_flow(p))
        if not e.is_file:
            raise UsageError(f"not a file: {p}")
        return e

    async def read(self, path: str, offset: int = 0, size: int = PREVIEW_LIMIT) -> bytes:
        """Up to ``size`` bytes at ``offset`` (previews), checked as the module doc says."""
        p = _clean(path)
        self._label(f"read /{p}")
        if offset < 0 or size < 0:
            raise UsageError(f"invalid read of {size} bytes at offset {offset}")
        if self._lbox is not None:
            return await self._lbox.read(p, offset, size)
        s = self._need()
        e = await self._file(p)
        if self._snap is not None:
            self._snap.check_preview(e, offset, size)
        if offset == 0 and e.size <= max(size, CHECKED_PREVIEW_MAX):
            data: bytes = await self._run(s.read_flow(p, 0, e.size))
            return data[:size]
        return await self._run(s.read_flow(p, offset, size))  # type: ignore[no-any-return]

    # -- downloads ----------------------------------------------------------------------

    def _add_stream(self, stream: _Stream) -> dict[str, Any]:
        handle = self._next_handle
        self._next_handle += 1
        self._streams[handle] = stream
        return {"handle": handle, "size": stream.size, "name": stream.name}

    async def stream_open(self, path: str) -> dict[str, Any]:
        """Start reading a whole file (then :meth:`stream_next` until it returns b"");
        the file's check (hash, CRC) fails the stream before its last piece."""
        s = self._need()
        p = _clean(path)
        self._label(f"read /{p}")
        if self._lbox is not None:
            size, pieces = await self._lbox.stream(p)
        else:
            size = (await self._file(p)).size
            assert self._source is not None
            pieces = flow_pieces(lambda sink: s.stream_flow(p, sink), self._source)
        stream = _Stream(pieces, size, p.rsplit("/", 1)[-1])
        stream.current = p
        return self._add_stream(stream)

    async def zip_open(self, path: str = "") -> dict[str, Any]:
        """Start writing a folder as a .zip (STORED, zip64 where needed, data descriptors).
        Symlinks whose target is absolute or leads outside the folder (resolved through
        the zip's other links: :func:`lockbox.extract.link_escape`) are left out and
        listed in ``dropped_links`` (``{path, target, reason}``)."""
        s = self._need()
        p = _clean(path)
        if self._lbox is not None:
            items, content = await self._lbox.zip_items(p)
        else:
            items, content = await self._generic_zip_items(s, p)
        prefix = f"{p}/" if p else ""
        unsafe = unsafe_zip_links(items, prefix)
        items = [e for e in items if e.path not in unsafe]
        total = sum(e.size for e in items if e.is_file)
        base = p.rsplit("/", 1)[-1] if p else (self._probe.get("stem") or "archive")
        # Rough size: content + local header, descriptor and central record per entry.
        estimate = total + sum(2 * len(e.path.encode()) + 150 for e in items) + 100
        stream = _Stream(_empty(), estimate, base + ".zip")

        def current(entry_path: str) -> None:
            stream.current = entry_path

        stream.pieces = zip_pieces(items, prefix, base, content, STREAM_PIECE, current)
        out = self._add_stream(stream)
        # Symlinks left out of the zip (absolute, or leading outside the folder): the
        # page tells the user, one line each.
        out["dropped_links"] = [{"path": path, "target": target, "reason": reason}
                                for path, (target, reason) in unsafe.items()]
        return out

    async def _generic_zip_items(self, s: FormatSession, p: str) -> tuple[list[EntryInfo], Any]:
        """Entries below folder ``p`` (one walk) and each file's pieces (``stream_flow``)."""
        self._label(f"walk /{p}")
        if p and not (await self._run(s.stat_flow(p))).is_dir:
            raise UsageError(f"not a folder: {p}")
        found: list[EntryInfo] = []
        await self._run(s.walk_flow(p, found.extend))
        items = [e for e in found if e.path != p]
        source = self._source
        assert source is not None

        async def content(_: int, e: EntryInfo) -> AsyncIterator[bytes]:
            self._label(f"zip /{e.path}")
            async for piece in flow_pieces(lambda sink: s.stream_flow(e.path, sink), source):
                yield piece

        return items, content

    async def stream_next(self, handle: int) -> bytes:
        """The next piece of a download (about 1 MiB); b"" at the end (handle closed)."""
        stream = self._streams.get(handle)
        if stream is None:
            raise UsageError("this download was closed")
        out: list[bytes] = []
        size = 0
        try:
            while size < STREAM_PIECE:
                try:
                    piece = await stream.pieces.__anext__()
                except StopAsyncIteration:
                    break
                if piece:
                    out.append(piece)
                    size += len(piece)
        except BaseException as exc:
            await self.stream_close(handle)
            if isinstance(exc, AtPath):
                raise
            if isinstance(exc, LockboxError):
                raise AtPath(exc, stream.current) from exc
            raise
        if not out:
            await self.stream_close(handle)
            return b""
        stream.sent += size
        return b"".join(out)

    async def stream_close(self, handle: int) -> bool:
        stream = self._streams.pop(handle, None)
        if stream is None:
            return False
        aclose = getattr(stream.pieces, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                pass
        return True

    # -- env (.lbox) ---------------------------------------------------------------------

    def _env_holder(self) -> LboxExtension:
        self._need()
        if self._lbox is None:
            raise UsageError("this archive format has no env values")
        return self._lbox

    async def env(self) -> list[dict[str, Any]]:
        """Env names and value sizes (values stay in the worker until revealed)."""
        return await self._env_holder().env()

    async def env_value(self, name: str) -> dict[str, Any]:
        return await self._env_holder().env_value(name)

    # -- .sync ---------------------------------------------------------------------------

    def _sync_holder(self) -> SyncExtension:
        self._need()
        if self._sync is None:
            raise UsageError("this is not a .sync container")
        return self._sync

    async def sync_signature(self) -> dict[str, Any]:
        """The embedded signature's status (reads the payload to hash it when signed)."""
        return await self._sync_holder().signature()

    async def sync_hook_plan(self, grants: list[str] | None = None) -> dict[str, Any]:
        """What the page's hook worker needs (:meth:`SyncExtension.hook_plan`)."""
        return self._sync_holder().hook_plan(grants)

    async def sync_entry(self, name: str) -> bytes:
        """``sync.wasm`` or ``context.json`` (b"" when absent), for the hook worker."""
        return await self._sync_holder().entry(name)

    async def sync_update(self, extra: Any = None, now: str | None = None) -> dict[str, Any]:
        """The updated ``.sync`` after a hook run: ``extra`` is the new payload (a Blob,
        or bytes), ``now`` the time to mark it fresh at (RFC 3339; default: now). Starts
        its download like :meth:`stream_open` (``{handle, size, name, created_at}``)."""
        ext = self._sync_holder()
        if extra is None:
            raise UsageError("no new payload was given")
        payload = await _blob_bytes(extra)
        when = None
        if now:
            from ..formats.sync.manifest import parse_timestamp

            when = parse_timestamp(now)
        data, facts = await ext.updated(payload, when)

        async def pieces() -> AsyncIterator[bytes]:
            for at in range(0, len(data), STREAM_PIECE):
                yield data[at:at + STREAM_PIECE]

        name = self._name or "updated.sync"
        if not name.lower().endswith(".sync"):
            name += ".sync"
        out = self._add_stream(_Stream(pieces(), len(data), name))
        out.update(facts)
        return out

    # -- snapdir snapshots -------------------------------------------------------------

    def _snap_holder(self) -> SnapExtension:
        self._need()
        if self._snap is None:
            raise UsageError("this is not a snapdir snapshot")
        return self._snap

    async def snap_check_next(self) -> dict[str, Any]:
        """Check every object of the snapshot, a step per call
        (:meth:`SnapExtension.check_next`)."""
        return await self._snap_holder().check_next()

    async def snap_check_stop(self) -> bool:
        return self._snap_holder().check_stop()

    # -- network and closing -----------------------------------------------------------

    def network(self) -> dict[str, Any]:
        rec = self._source
        if rec is None:
            return {"requests": 0, "bytes": 0, "round_trips": 0, "log": [], "size": None,
                    "reused": {"chunks": 0, "bytes": 0, "kept_bytes": 0}}
        if self._lbox is not None:
            reused = self._lbox.reused()
        elif rec.cache is not None:
            reused = {"ranges": rec.cache.hits, "bytes": rec.cache.hit_bytes,
                      "kept_bytes": rec.cache.size_bytes}
        else:
            reused = {"chunks": 0, "bytes": 0, "kept_bytes": 0}
        return {"requests": rec.stats.requests, "bytes": rec.stats.bytes_read,
                "round_trips": rec.round_trips, "log": list(rec.log), "size": rec.size,
                "location": self._location, "source": self._kind,
                "format": self._spec.name if self._spec else "", "reused": reused}

    async def close(self) -> bool:
        for handle in list(self._streams):
            await self.stream_close(handle)
        if self._walk is not None:
            self._walk.close()
        self._walk = None
        self._tree = None
        self._lbox = None
        self._sync = None
        if self._snap is not None:
            self._snap.check_stop()
        self._snap = None
        self._session = None
        src, self._source = self._source, None
        if src is not None:
            try:
                await src.aclose()
            except Exception:
                pass
        return src is not None

    # JSON wrappers of the sync methods
    async def _info(self) -> dict[str, Any]:
        return self.info()

    async def _network(self) -> dict[str, Any]:
        return self.network()


_JSON_METHODS: dict[str, Any] = {
    "open_url": Session.open_url,
    "open_blob": Session.open_blob,
    "open_snap": Session.open_snap,
    "unlock": Session.unlock,
    "info": Session._info,
    "ls": Session.ls,
    "list_next": Session.list_next,
    "stat": Session.stat,
    "stream_open": Session.stream_open,
    "zip_open": Session.zip_open,
    "stream_close": Session.stream_close,
    "env": Session.env,
    "env_value": Session.env_value,
    "sync_signature": Session.sync_signature,
    "sync_hook_plan": Session.sync_hook_plan,
    "sync_update": Session.sync_update,
    "snap_check_next": Session.snap_check_next,
    "snap_check_stop": Session.snap_check_stop,
    "network": Session._network,
    "close": Session.close,
}

_BINARY_METHODS: dict[str, Any] = {
    "read": Session.read,
    "stream_next": Session.stream_next,
    "sync_entry": Session.sync_entry,
}


async def _blob_bytes(value: Any) -> bytes:
    """Bytes from the page: a JS Blob/File (read here), or bytes already."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    buffer = await value.arrayBuffer()
    data: bytes = buffer.to_bytes()
    return data
