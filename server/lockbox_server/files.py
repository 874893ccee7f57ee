"""Serving one regular file: validators, preconditions, ranges, bounded streaming.

:func:`file_response` never reads a file whole: the body is sent in chunks of
:data:`CHUNK_SIZE` read with ``os.pread`` in a worker thread, from the file
descriptor whose ``fstat`` gave the validators (so the ETag always describes
the bytes sent, even if the file is replaced meanwhile). A client that goes
away stops the stream. No compression is ever applied.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .conditional import Validators, evaluate, if_range_allows
from .ranges import IGNORE, UNSATISFIABLE, RangeResult, content_range, parse_range

__all__ = ["CHUNK_SIZE", "FileStream", "file_response", "open_regular"]

#: Bytes read and sent per chunk: the memory a response holds at once.
CHUNK_SIZE = 256 * 1024

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(
    os, "O_CLOEXEC", 0
)

Part = bytes | tuple[int, int]

log = logging.getLogger("lockbox_server")


def open_regular(path: Path) -> tuple[int, os.stat_result] | None:
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


class FileStream:
    """ASGI response sending ``parts`` (literal bytes or file ranges) of ``fd``.

    It owns ``fd`` and closes it when done (also on HEAD and on errors).
    """

    def __init__(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        fd: int,
        parts: Sequence[Part],
        *,
        send_body: bool,
    ) -> None:
        self.status_code = status
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self.fd = fd
        self.parts = list(parts)
        self.send_body = send_body
        self.sent = 0  # body bytes handed to the server so far

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": list(self.raw_headers)}
            )
            if not self.send_body:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while True:
                        message: Message = await receive()
                        if message["type"] == "http.disconnect":
                            log.debug("client went away: stopped after %d body bytes of %d",
                                      self.sent, self.total())
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch_disconnect)
                await self._stream(send)
                tg.cancel_scope.cancel()
        finally:
            os.close(self.fd)

    def total(self) -> int:
        return sum(p[1] - p[0] if isinstance(p, tuple) else len(p) for p in self.parts)

    async def _stream(self, send: Send) -> None:
        for part in self.parts:
            if isinstance(part, bytes):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                self.sent += len(part)
                continue
            offset, stop = part
            while offset < stop:
                want = min(CHUNK_SIZE, stop - offset)
                data = await anyio.to_thread.run_sync(os.pread, self.fd, want, offset)
                if not data:  # truncated under us: the promised length cannot be met
                    raise OSError(f"file shrank while being served (at byte {offset})")
                offset += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
                self.sent += len(data)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _empty(status: int, headers: Mapping[str, str]) -> Response:
    return Response(b"", status_code=status, headers=dict(headers))


def file_response(
    request: Request,
    path: Path,
    *,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> Response | FileStream | None:
    """The answer to a GET or HEAD of ``path``, or None if it is not a regular file.

    ``headers`` are added to every answer (200, 206, 304, 412, 416).
    """
    opened = open_regular(path)
    if opened is None:
        return None
    fd, st = opened
    keep_fd = False
    try:
        v = Validators.from_stat(st)
        size = st.st_size
        base = {
            **(headers or {}),
            "Accept-Ranges": "bytes",
            "ETag": v.etag,
            "Last-Modified": v.last_modified,
        }
        req = request.headers
        method = request.method.upper()
        conditions = {
            name: (", ".join(req.getlist(name)) if name in req else None)
            for name in ("if-match", "if-none-match")
        }
        conditions["if-unmodified-since"] = req.get("if-unmodified-since")
        conditions["if-modified-since"] = req.get("if-modified-since")
        failed = evaluate(method, conditions, v)
        if failed is not None:
            return _empty(failed, base)

        ranges: RangeResult = IGNORE
        range_values = req.getlist("range")
        # Range is defined for GET only (§14.2: HEAD ignores it); two Range
        # fields are not a valid ranges-specifier.
        if method == "GET" and len(range_values) == 1:
            if if_range_allows(req.get("if-range"), v):
                ranges = parse_range(range_values[0], size)

        if ranges is UNSATISFIABLE:
            return _empty(416, {**base, "Content-Range": f"bytes */{size}"})
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
        keep_fd = True
        return FileStream(status, list(out.items()), fd, parts, send_body=method != "HEAD")
    finally:
        if not keep_fd:
            os.close(fd)


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
