"""Pushing to a store served by ``lockbox serve --snap-store DIR --push-token-file F``.

:class:`ServerStore` reads like an :class:`~.store.HttpStore` (plain GETs of the layout
under the store URL, e.g. ``http://host:8000/snap/``) and writes through the server's
two endpoints, with ``Authorization: Bearer <token>``:

* ``POST <store>/objects-needed`` (:meth:`ServerStore.objects_needed`): the ids the
  store lacks, first-seen order;
* ``POST <store>/receive-pack`` (:meth:`ServerStore.receive_pack`,
  :meth:`ServerStore.send_pack`): one SNAPPACK stream, sent as it is produced (never
  built in memory), verified and filed by the server, the manifest last.

A push is therefore two round trips (objects-needed, then one receive-pack carrying
every missing object and the manifest): :meth:`ServerStore.push_snapshot`. The generic
:func:`~.ops.push` adds one GET first (is the manifest there already?) and then calls
:meth:`ServerStore.objects_needed` and :meth:`ServerStore.receive_objects`: three.

An upload that fails on this side (an object cannot be read, the process is
interrupted) is cut before ``end``: the server files the objects verified so far and no
manifest, and leaves no temp file; a rerun completes it.

CPython only (httpx, a thread feeds the request body).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from ... import errors as _errors
from ...errors import (
    LimitExceededError,
    LockboxError,
    SourceUnavailableError,
    StorageError,
    UsageError,
)
from ...ranges import ByteRange
from ...sources.httprules import redact_url
from .manifest import Manifest, parse_manifest, render_manifest, snapshot_id
from .store import MAX_OBJECT_SIZE, HttpStore, StoreUri, check_id

__all__ = ["ReceiveReport", "ServerStore", "read_token_file", "UPLOAD_CHUNK_SIZE"]

#: Bytes gathered before they are handed to the HTTP connection.
UPLOAD_CHUNK_SIZE = 256 * 1024
#: Chunks queued between the producer and the connection (memory bound of an upload:
#: ``UPLOAD_QUEUE_CHUNKS * UPLOAD_CHUNK_SIZE``).
UPLOAD_QUEUE_CHUNKS = 8
_MAX_TOKEN_FILE = 64 * 1024
_ERROR_HEADER = "lockbox-error"


@dataclass(frozen=True)
class ReceiveReport:
    """What the server filed from one pack (its JSON answer)."""

    objects_written: int
    objects_skipped: int
    manifest_id: str | None
    pack_bytes: int

    @property
    def manifest_committed(self) -> bool:
        return self.manifest_id is not None


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The push token in ``path``: its text without surrounding whitespace.

    UsageError (one line) if it cannot be read, is empty, or is not one token of
    visible ASCII.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:  # a pipe is fine too: <(pass show token)
            raw = f.read(_MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise UsageError(f"cannot read token file {name}: {e.strerror or e}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UsageError(f"token file {name} is not ASCII text") from None
    if not token or len(raw) > _MAX_TOKEN_FILE:
        raise UsageError(f"token file {name} is {'empty' if not token else 'too large'}")
    _check_token(token, f"token file {name}")
    return token


def _check_token(token: str, where: str) -> None:
    if not token or any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise UsageError(f"{where}: a push token is one word of visible ASCII")


def _error_class(name: str | None, status: int) -> type[LockboxError]:
    """The lockbox error class the server named (``Lockbox-Error``), or one by status."""
    cls = getattr(_errors, name, None) if name and name in _errors.__all__ else None
    if isinstance(cls, type) and issubclass(cls, LockboxError):
        return cls
    if status in (401, 403):
        return UsageError
    if status == 413:
        return LimitExceededError
    if status == 404:
        return SourceUnavailableError
    return StorageError


class _Cancelled(Exception):
    """The producer gave up: the request body must end without ``end``."""


class _PackUpload:
    """One streaming ``POST .../receive-pack``: :meth:`write` bytes (a file-like for
    ``write_pack``), then :meth:`finish` for the server's answer, or :meth:`abort` to
    cut the body (the server then commits no manifest). A thread runs the request and
    pulls the body from a bounded queue, so memory stays bounded whatever the size."""

    def __init__(self, store: ServerStore, url: str) -> None:
        self._store = store
        self._queue: queue.Queue[bytes | _Cancelled | None] = queue.Queue(UPLOAD_QUEUE_CHUNKS)
        self._buffer = bytearray()
        self._response: Any = None
        self._failure: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,),
                                        name="lockbox-snap-upload", daemon=True)
        self._thread.start()

    # -- the request (its own thread)
    def _body(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Cancelled):
                raise item
            yield item

    def _run(self, url: str) -> None:
        try:
            self._response = self._store._request("POST", url, content=self._body(),
                                                  headers=self._store._push_headers())
        except BaseException as exc:  # reported by write/finish
            self._failure = exc
        finally:
            self._done.set()

    # -- the producer
    def _put(self, item: bytes | _Cancelled | None) -> None:
        while not self._done.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        if not isinstance(item, _Cancelled):
            self._raise_early_end()

    def _raise_early_end(self) -> None:
        """The request ended before the body did: the server's answer, as an error."""
        self._thread.join()
        if self._failure is not None:
            raise self._store._transport_error(self._failure)
        response = self._response
        if response is not None and response.status_code != 200:
            raise self._store._answer_error(response)
        raise StorageError(f"{self._store._shown}receive-pack: the server answered before "
                           "the pack was sent")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        if len(self._buffer) >= UPLOAD_CHUNK_SIZE:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            self._put(chunk)
        return len(data)

    def flush(self) -> None:
        """Data is handed over in chunks; nothing to do (file-like protocol)."""

    def finish(self) -> ReceiveReport:
        if self._buffer:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            self._put(chunk)
        self._put(None)
        self._thread.join()
        if self._failure is not None:
            raise self._store._transport_error(self._failure)
        assert self._response is not None
        return self._store._report(self._response)

    def abort(self) -> None:
        """Cut the body: what was written still goes out (the server may file the
        objects it completes), then the connection is dropped before ``end``
        (idempotent)."""
        chunk, self._buffer = bytes(self._buffer), bytearray()
        if chunk and not self._done.is_set():
            try:
                self._put(chunk)
            except LockboxError:
                pass  # the upload already failed: the first error is the one reported
        if not self._done.is_set():
            self._put(_Cancelled("upload abandoned"))
        self._thread.join()


class ServerStore:
    """A store on lockbox's server: read with plain GETs (an :class:`~.store.HttpStore`
    inside), written through the push endpoints with the bearer ``token``. ``url`` is the
    store URL, e.g. ``http://127.0.0.1:8000/snap/``. ``client``: the ``httpx.Client``
    for every request (not closed here); ``timeout``: seconds for connecting and between
    two bytes.

    :attr:`requests` counts the HTTP requests sent (reads and pushes): the round trips.
    """

    def __init__(self, url: str | StoreUri, token: str, *, client: Any = None,
                 timeout: float = 60.0) -> None:
        _check_token(token, "the push token")
        self._token = token
        self.requests = 0
        self._owns_client = client is None
        if client is None:
            import httpx

            client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._client = client
        self._reader = HttpStore(url, transport=self._get)
        self.uri: StoreUri = self._reader.uri
        self._shown = f"{redact_url(self.uri.root)}: "

    @classmethod
    def from_token_file(cls, url: str | StoreUri, token_file: str | os.PathLike[str],
                        **kwargs: Any) -> ServerStore:
        """A ServerStore whose token is read from ``token_file`` (:func:`read_token_file`)."""
        return cls(url, read_token_file(token_file), **kwargs)

    def __repr__(self) -> str:
        return f"ServerStore({self.uri.root!r})"

    # -- HTTP
    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> Any:
        self.requests += 1
        sent = {"Accept-Encoding": "identity", **(headers or {})}
        return self._client.request(method, url, headers=sent, **kwargs)

    def _get(self, url: str, want: ByteRange | None) -> bytes | None:
        """The reader's GET (an HttpStore transport): the body, or None for a 404."""
        import httpx

        headers = {} if want is None else {"Range": want.header_value()}
        try:
            response = self._request("GET", url, headers=headers)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code in (404, 410):
            return None
        if response.status_code == 416:
            return b""
        if response.status_code not in (200, 206):
            raise StorageError(f"GET {redact_url(url)}: HTTP {response.status_code}")
        body = bytes(response.content)
        if want is not None and response.status_code == 200:
            body = body[want.offset:want.end]  # the server ignored Range: slice
        if len(body) > (MAX_OBJECT_SIZE if want is None else want.size):
            raise StorageError(f"GET {redact_url(url)}: more bytes than asked for")
        return body

    def _push_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _transport_error(self, exc: BaseException) -> LockboxError:
        if isinstance(exc, LockboxError):
            return exc
        if isinstance(exc, _Cancelled):
            return StorageError(f"{self._shown}the upload was abandoned")
        return SourceUnavailableError(f"{self._shown}{type(exc).__name__}: {exc}".rstrip(": "))

    def _answer_error(self, response: Any) -> LockboxError:
        text = response.text.strip().splitlines()
        line = text[0] if text else f"HTTP {response.status_code}"
        cls = _error_class(response.headers.get(_ERROR_HEADER), response.status_code)
        return cls(f"{self._shown}{line} (HTTP {response.status_code})")

    def _post(self, endpoint: str, content: Any, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._request("POST", self.uri.root + endpoint, content=content,
                                     params=params, headers=self._push_headers())
        except Exception as exc:
            raise self._transport_error(exc) from exc
        if response.status_code != 200:
            raise self._answer_error(response)
        return response

    def _report(self, response: Any) -> ReceiveReport:
        if response.status_code != 200:
            raise self._answer_error(response)
        try:
            data = json.loads(response.content)
            manifest_id = data.get("manifest_id")
            return ReceiveReport(objects_written=int(data["objects_written"]),
                                 objects_skipped=int(data["objects_skipped"]),
                                 manifest_id=None if manifest_id is None else str(manifest_id),
                                 pack_bytes=int(data["pack_bytes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{self._shown}receive-pack: not a report: "
                               f"{response.text[:80]!r}") from exc

    # -- reading (plain GETs of the layout)
    def has_object(self, hex_id: str) -> bool:
        return self._reader.has_object(hex_id)

    def has_manifest(self, hex_id: str) -> bool:
        return self._reader.has_manifest(hex_id)

    def get_object(self, hex_id: str) -> bytes:
        return self._reader.get_object(hex_id)

    def iter_object(self, hex_id: str) -> Iterator[bytes]:
        return self._reader.iter_object(hex_id)

    def get_manifest_bytes(self, hex_id: str) -> bytes:
        return self._reader.get_manifest_bytes(hex_id)

    def get_manifest(self, hex_id: str) -> Manifest:
        return self._reader.get_manifest(hex_id)

    def read_range(self, rel_path: str, offset: int, size: int) -> bytes:
        return self._reader.read_range(rel_path, offset, size)

    # -- the push endpoints
    def objects_needed(self, ids: Iterable[str]) -> list[str]:
        """The ids of ``ids`` the store lacks, first-seen order, each once (one request).

        Every id is checked here first (UsageError, nothing sent)."""
        wanted = list(dict.fromkeys(check_id(i, "object id") for i in ids))
        if not wanted:
            return []
        body = "".join(f"{i}\n" for i in wanted).encode("ascii")
        answer = self._post("objects-needed", body).text.splitlines()
        asked = set(wanted)
        if any(i not in asked for i in answer):
            raise StorageError(f"{self._shown}objects-needed answered an id it was not asked")
        return answer

    def receive_pack(self, pack: bytes | IO[bytes] | Iterable[bytes], *,
                     require_manifest: str | None = None) -> ReceiveReport:
        """Send a SNAPPACK 1/1Z stream (bytes, a binary file read in chunks, or an
        iterable of chunks) in one request; the server's report. ``require_manifest``:
        the server refuses (and files no manifest) unless the pack carries that one."""
        params = None
        if require_manifest is not None:
            params = {"require-manifest": check_id(require_manifest, "snapshot id")}
        content: Any = pack
        if hasattr(pack, "read"):
            stream: IO[bytes] = pack  # type: ignore[assignment]
            content = iter(lambda: stream.read(UPLOAD_CHUNK_SIZE), b"")
        return self._report(self._post("receive-pack", content, params))

    def send_pack(self, ids: Iterable[str], get_object: Callable[[str], Any], *,
                  manifest: tuple[str, bytes] | None = None, pack_format: str = "v1",
                  level: int = 3) -> ReceiveReport:
        """Stream a pack of ``ids`` (and ``manifest``, ``(id, bytes)``, last) straight
        into one receive-pack request: lockbox's ``write_pack`` writes into the request
        body as it goes (``get_object`` returns bytes or a ``snappack.ObjectStream``).
        With a manifest the server is told to require it. Any failure here cuts the
        upload before ``end``: the server files no manifest."""
        from . import snappack

        url = self.uri.root + "receive-pack"
        if manifest is not None:
            url += "?require-manifest=" + check_id(manifest[0], "snapshot id")
        id_list = [check_id(i, "object id") for i in ids]
        upload = _PackUpload(self, url)
        try:
            snappack.write_pack(id_list, get_object, upload, manifest=manifest,
                                pack_format=pack_format, level=level)
        except BaseException:
            upload.abort()
            raise
        return upload.finish()

    def receive_objects(self, manifest: Manifest,
                        items: Iterable[tuple[str, Callable[[str], Iterable[bytes]]]], *,
                        pack_format: str = "v1", level: int = 3) -> ReceiveReport:
        """One receive-pack with the objects ``items`` (``(id, opener)``: ``opener(id)``
        yields the object's bytes; sizes come from ``manifest``) and the manifest, last
        (what :func:`~.ops.push` calls after :meth:`objects_needed`)."""
        from . import snappack

        sizes = {e.checksum: e.size for e in manifest.files()}
        openers = dict(items)
        unknown = [h for h in openers if h not in sizes]
        if unknown:
            raise UsageError(f"object {unknown[0]} is not in the manifest being pushed")

        def get_object(hex_id: str) -> snappack.ObjectStream:
            return snappack.ObjectStream(sizes[hex_id], openers[hex_id](hex_id))

        data = render_manifest(manifest)
        return self.send_pack(list(openers), get_object, manifest=(snapshot_id(data), data),
                              pack_format=pack_format, level=level)

    def push_snapshot(self, manifest: Manifest | bytes, get_object: Callable[[str], Any],
                      *, pack_format: str = "v1", level: int = 3) -> ReceiveReport:
        """Push a snapshot whose objects ``get_object(id)`` reads (bytes or a
        ``snappack.ObjectStream``): objects-needed, then one receive-pack with the
        missing objects and the manifest. Two round trips."""
        if not isinstance(manifest, Manifest):
            manifest = parse_manifest(manifest)
        data = render_manifest(manifest)
        needed = self.objects_needed(manifest.object_ids())
        return self.send_pack(needed, get_object, manifest=(snapshot_id(data), data),
                              pack_format=pack_format, level=level)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> ServerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
