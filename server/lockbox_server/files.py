"""Serving one regular file: validators, preconditions, ranges, bounded streaming.

:func:`file_response` never reads a file whole: the body is sent in chunks of
:data:`CHUNK_SIZE` read with ``os.pread``, from the file descriptor whose
``fstat`` gave the validators (so the ETag always describes the bytes sent,
even if the file is replaced meanwhile). A client that goes away stops the
stream. No compression is ever applied.

Reads that the page cache can answer are done in the event loop
(``preadv`` with ``RWF_NOWAIT``: it fails instead of waiting for the disk);
the others, and every read where ``RWF_NOWAIT`` does not exist, run in a
worker thread. An answer of at most :data:`CHUNK_SIZE` bytes is one read and
one send.

:class:`FdCache` keeps the archives' descriptors open between requests (the
hot path of :mod:`.app`): a request ``lstat``s the name and reuses the cached
descriptor only while the path still names the same inode (``st_dev``,
``st_ino``); the validators always come from that ``lstat`` of the current
file. A replaced archive gets a new descriptor at once; the old one is closed
when its last response ends.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import stat
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .conditional import Validators, evaluate, if_range_allows
from .ranges import IGNORE, UNSATISFIABLE, RangeResult, content_range, parse_range

__all__ = [
    "CHUNK_SIZE",
    "FdCache",
    "FileStream",
    "file_response",
    "open_regular",
    "plan_answer",
    "read_cached",
]

#: Bytes read and sent per chunk: the memory a response holds at once.
CHUNK_SIZE = 256 * 1024

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(
    os, "O_CLOEXEC", 0
)

Part = bytes | tuple[int, int]
#: ``getlist(name)``: every value of request header ``name`` (lowercase), in order.
GetList = Callable[[str], list[str]]

log = logging.getLogger("lockbox_server")

#: preadv(..., RWF_NOWAIT) where the platform has it (Linux 4.14+); switched off for
#: good the first time a file system refuses the flag.
_nowait: int | None = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None


def open_regular(path: Path | str) -> tuple[int, os.stat_result] | None:
    """``(fd, fstat)`` of a regular file, or None. Never follows a final symlink

    and never blocks on a FIFO (``O_NONBLOCK``), so a path checked by the
    caller cannot be swapped for something else between check and open.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


_NAMES: dict[str, bytes] = {}


def _header_name(name: str) -> bytes:
    """``name`` lowercased and encoded, as the server sends it (memoised: a few dozen)."""
    found = _NAMES.get(name)
    if found is None:
        found = name.lower().encode("latin-1")
        if len(_NAMES) < 256:
            _NAMES[name] = found
    return found


def _read_now(fd: int, size: int, offset: int) -> bytes | bytearray | None:
    """Up to ``size`` bytes at ``offset`` if the page cache has them, else None."""
    global _nowait
    if _nowait is None:
        return None
    buf = bytearray(size)
    try:
        n = os.preadv(fd, [buf], offset, _nowait)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        _nowait = None  # not on this kernel or file system: threads from now on
        return None
    # A short count: only part of it is cached, or the end of the file (RWF_NOWAIT
    # answers 0 there, and may also answer 0 when nothing is cached). The blocking
    # read tells these apart.
    return buf if n == size else None


def read_cached(fd: int, size: int, offset: int) -> bytes | bytearray | None:
    """Exactly ``size`` bytes of ``fd`` at ``offset`` if the page cache holds them (read
    without waiting for a disk), else None."""
    return _read_now(fd, size, offset)


async def read_at(fd: int, size: int, offset: int) -> bytes | bytearray:
    """Up to ``size`` bytes of ``fd`` at ``offset``: in the loop when cached, else in a thread."""
    data = _read_now(fd, size, offset)
    if data is None:
        data = await anyio.to_thread.run_sync(os.pread, fd, size, offset)
    return data


class _Watch:
    """Notes when the client goes away (``http.disconnect``) while a body streams."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False

    async def run(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True


class FileStream:
    """ASGI response sending ``parts`` (literal bytes or file ranges) of ``fd``.

    ``release()`` is called once when done (also on HEAD and on errors); by
    default it closes ``fd``.
    """

    def __init__(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        fd: int,
        parts: Sequence[Part],
        *,
        send_body: bool,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.status_code = status
        self.raw_headers = [(_header_name(k), v.encode("latin-1")) for k, v in headers]
        self.fd = fd
        self.parts = list(parts)
        self.send_body = send_body
        self.sent = 0  # body bytes handed to the server so far
        self._release = release if release is not None else (lambda: os.close(fd))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start_message = {"type": "http.response.start", "status": self.status_code,
                             "headers": self.raw_headers}
            parts = self.parts
            if not self.send_body or not parts:
                await send(start_message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if len(parts) == 1 and isinstance(parts[0], tuple) \
                    and parts[0][1] - parts[0][0] <= CHUNK_SIZE:
                # One chunk: read, then send the head and the body back to back (the
                # server writes them at once); a failed read is still a clean 500.
                start, stop = parts[0]
                data = await read_at(self.fd, stop - start, start) if stop > start else b""
                if len(data) != stop - start:
                    raise OSError(f"file shrank while being served (at byte {start + len(data)})")
                await send(start_message)
                self.sent = len(data)
                await send({"type": "http.response.body", "body": data, "more_body": False})
                return
            await send(start_message)
            watch = _Watch()
            watcher = asyncio.ensure_future(watch.run(receive))
            try:
                await self._stream(send, watch)
            finally:
                watcher.cancel()
        finally:
            self._release()

    def now(self) -> tuple[int, list[tuple[bytes, bytes]], bytes | bytearray] | None:
        """``(status, raw headers, body)`` when the answer needs no waiting: no body
        (HEAD, 304, 412, 416, an empty range) or one chunk of at most
        :data:`CHUNK_SIZE` bytes that the page cache holds. Else None. Either way
        the descriptor is released: call this *instead of* sending the stream."""
        try:
            parts = self.parts
            if not self.send_body or not parts:
                return self.status_code, self.raw_headers, b""
            if len(parts) != 1 or not isinstance(parts[0], tuple):
                return None
            start, stop = parts[0]
            if stop - start > CHUNK_SIZE:
                return None
            if stop == start:
                return self.status_code, self.raw_headers, b""
            data = _read_now(self.fd, stop - start, start)
            if data is None:
                return None
            self.sent = len(data)
            return self.status_code, self.raw_headers, data
        finally:
            self._release()

    def total(self) -> int:
        return sum(p[1] - p[0] if isinstance(p, tuple) else len(p) for p in self.parts)

    async def _stream(self, send: Send, watch: _Watch) -> None:
        for part in self.parts:
            if isinstance(part, bytes):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                self.sent += len(part)
                continue
            offset, stop = part
            while offset < stop:
                if watch.gone:
                    log.debug("client went away: stopped after %d body bytes of %d",
                              self.sent, self.total())
                    return
                data = await read_at(self.fd, min(CHUNK_SIZE, stop - offset), offset)
                if not data:  # truncated under us: the promised length cannot be met
                    raise OSError(f"file shrank while being served (at byte {offset})")
                offset += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
                self.sent += len(data)
                # A cached read and a send that did not have to wait never yield: let the
                # other connections (and the disconnect watch) run between chunks.
                await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def plan_answer(
    method: str,
    getlist: GetList,
    v: Validators,
    size: int,
    *,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, list[tuple[str, str]], list[Part]]:
    """``(status, headers, body parts)`` of a GET or HEAD of a file (RFC 9110 §13, §14).

    ``getlist(name)`` gives the request's values of a header; ``v`` and ``size``
    describe the file. ``headers`` are added to every answer (200, 206, 304,
    412, 416). The parts are empty for 304, 412 and 416.
    """
    base = {
        **(headers or {}),
        "Accept-Ranges": "bytes",
        "ETag": v.etag,
        "Last-Modified": v.last_modified,
    }
    method = method.upper()

    def first(name: str) -> str | None:
        values = getlist(name)
        return values[0] if values else None

    if_match = getlist("if-match")
    if_none_match = getlist("if-none-match")
    conditions = {
        "if-match": ", ".join(if_match) if if_match else None,
        "if-none-match": ", ".join(if_none_match) if if_none_match else None,
        "if-unmodified-since": first("if-unmodified-since"),
        "if-modified-since": first("if-modified-since"),
    }
    failed = evaluate(method, conditions, v)
    if failed is not None:
        empty = list(base.items())
        if failed != 304:  # (as Starlette's Response: no length on a 304)
            empty.append(("Content-Length", "0"))
        return failed, empty, []

    ranges: RangeResult = IGNORE
    range_values = getlist("range")
    # Range is defined for GET only (§14.2: HEAD ignores it); two Range
    # fields are not a valid ranges-specifier.
    if method == "GET" and len(range_values) == 1:
        if if_range_allows(first("if-range"), v):
            ranges = parse_range(range_values[0], size)

    if ranges is UNSATISFIABLE:
        return 416, [*base.items(), ("Content-Range", f"bytes */{size}"),
                     ("Content-Length", "0")], []
    parts: list[Part]
    if ranges is IGNORE:
        status, length, parts = 200, size, [(0, size)]
        out = {**base, "Content-Type": content_type}
    else:
        assert isinstance(ranges, tuple)
        status = 206
        if len(ranges) == 1:
            start, stop = ranges[0]
            length, parts = stop - start, [(start, stop)]
            out = {**base, "Content-Type": content_type,
                   "Content-Range": content_range(start, stop, size)}
        else:
            boundary = secrets.token_hex(12)
            parts = multipart_parts(ranges, size, boundary, content_type)
            length = sum(p[1] - p[0] if isinstance(p, tuple) else len(p) for p in parts)
            out = {**base, "Content-Type": f"multipart/byteranges; boundary={boundary}"}
    out["Content-Length"] = str(length)
    return status, list(out.items()), parts


def file_answer(
    method: str,
    getlist: GetList,
    fd: int,
    st: os.stat_result,
    *,
    content_type: str,
    headers: Mapping[str, str] | None = None,
    release: Callable[[], None],
    validators: Validators | None = None,
) -> FileStream:
    """The answer to a GET or HEAD of the open file ``fd`` (``st`` its stat).

    ``release()`` runs once the answer is sent, or at once when no byte of the
    file is to be sent (304, 412, 416, HEAD).
    """
    v = validators if validators is not None else Validators.from_stat(st)
    status, out, parts = plan_answer(method, getlist, v, st.st_size,
                                     content_type=content_type, headers=headers)
    return FileStream(status, out, fd, parts, send_body=method.upper() != "HEAD",
                      release=release)


def file_response(
    request: Request,
    path: Path,
    *,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> FileStream | None:
    """The answer to a GET or HEAD of ``path``, or None if it is not a regular file.

    ``headers`` are added to every answer (200, 206, 304, 412, 416).
    """
    opened = open_regular(path)
    if opened is None:
        return None
    fd, st = opened
    try:
        return file_answer(request.method, request.headers.getlist, fd, st,
                           content_type=content_type, headers=headers,
                           release=lambda: os.close(fd))
    except BaseException:
        os.close(fd)
        raise


def multipart_parts(
    ranges: Sequence[tuple[int, int]], size: int, boundary: str, content_type: str
) -> list[Part]:
    """The body of a ``multipart/byteranges`` answer (RFC 9110 §14.6)."""
    parts: list[Part] = []
    for i, (start, stop) in enumerate(ranges):
        head = (
            ("\r\n" if i else "")
            + f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            + f"Content-Range: {content_range(start, stop, size)}\r\n\r\n"
        )
        parts.append(head.encode("latin-1"))
        parts.append((start, stop))
    parts.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    return parts


class _Entry:
    """One cached descriptor: the inode it is open on, its last validators, who uses it."""

    __slots__ = ("dev_ino", "fd", "key", "retired", "users", "validators")

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self.fd = fd
        self.dev_ino = (st.st_dev, st.st_ino)
        self.key = (st.st_size, st.st_mtime_ns)
        self.validators = Validators.from_stat(st)
        self.users = 0
        self.retired = False

    def validators_for(self, st: os.stat_result) -> Validators:
        key = (st.st_size, st.st_mtime_ns)
        if key != self.key:  # changed in place (same inode): new validators
            self.key, self.validators = key, Validators.from_stat(st)
        return self.validators

    def release(self) -> None:
        self.users -= 1
        if self.retired and self.users == 0:
            os.close(self.fd)

    def retire(self) -> None:
        self.retired = True
        if self.users == 0:
            os.close(self.fd)


class FdCache:
    """Open descriptors of the files a directory serves, by name (at most ``capacity``).

    :meth:`acquire` is given the ``lstat`` of ``directory/name`` taken for this
    request (a regular file, not a symlink). It reuses the cached descriptor
    only if that descriptor is open on the same inode; otherwise it opens the
    path (``O_NOFOLLOW``), checks that the open file is that same regular file,
    and retires the old descriptor. Validators always describe the current
    ``lstat``, i.e. the inode the bytes are read from. Used from the event
    loop's thread only (a worker thread may read from a descriptor, never open
    or close one); a descriptor is closed once no response uses it.
    """

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, name: str, path: str, st: os.stat_result
                ) -> tuple[int, os.stat_result, Validators, Callable[[], None]] | None:
        """``(fd, stat, validators, release)`` for ``path``, or None if it cannot be opened
        as the regular file ``st`` describes. Call ``release()`` when done with ``fd``."""
        entry = self._entries.get(name)
        if entry is not None and entry.dev_ino == (st.st_dev, st.st_ino):
            self._entries.move_to_end(name)
        else:
            if entry is not None:
                del self._entries[name]
                entry.retire()
            opened = open_regular(path)
            if opened is None:
                return None
            fd, st = opened  # the open file is what we describe from now on
            entry = _Entry(fd, st)
            self._entries[name] = entry
            while len(self._entries) > self.capacity:
                _old, oldest = self._entries.popitem(last=False)
                oldest.retire()
        entry.users += 1
        return entry.fd, st, entry.validators_for(st), entry.release

    def close(self) -> None:
        """Retire every descriptor (each is closed when its last response ends)."""
        while self._entries:
            _name, entry = self._entries.popitem()
            entry.retire()
