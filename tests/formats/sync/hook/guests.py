"""Helpers for hook tests: WAT guests and a loopback HTTP server (no mocks).

``guest(body, data=...)`` compiles a module that imports every host function of the
ABI, exports one 2-page ``memory`` and a ``run`` whose body is ``body``. Inside,
``(call $out X)`` appends the i32 ``X`` (little-endian) to the payload write buffer,
so a test reads what the guest saw from ``HookResult.new_payload`` (``outputs``).
``data`` places byte strings in memory (address -> bytes).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import wasmtime

__all__ = ["wat_bytes", "guest", "module", "outputs", "Loopback", "loopback", "Reply"]

IMPORTS = """
  (import "host" "http_request" (func $http (param i32 i32 i32 i32) (result i32)))
  (import "host" "last_response_size" (func $rsize (result i32)))
  (import "host" "last_response_read" (func $rread (param i32 i32) (result i32)))
  (import "host" "payload_size" (func $psize (result i32)))
  (import "host" "payload_read" (func $pread (param i32 i32 i32) (result i32)))
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
  (import "host" "context_size" (func $csize (result i32)))
  (import "host" "context_read" (func $cread (param i32 i32 i32) (result i32)))
"""

OUT = """
  (global $n (mut i32) (i32.const 0))
  (func $out (param $v i32)
    (i32.store (i32.const 0) (local.get $v))
    (drop (call $pwrite (i32.mul (global.get $n) (i32.const 4)) (i32.const 4) (i32.const 0)))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
"""


def wat_bytes(data: bytes) -> str:
    """``data`` as a WAT string literal."""
    return '"' + "".join(f"\\{b:02x}" for b in data) + '"'


def module(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


def guest(body: str, *, data: dict[int, bytes] | None = None, entry: str = "run",
          pages: int = 2, extra: str = "") -> bytes:
    segments = "".join(
        f"\n  (data (i32.const {address}) {wat_bytes(blob)})"
        for address, blob in (data or {}).items()
    )
    return module(
        f"(module {IMPORTS}\n  (memory (export \"memory\") {pages}){OUT}{segments}\n{extra}\n"
        f"  (func (export \"{entry}\") {body}))"
    )


def outputs(payload: bytes | None) -> list[int]:
    """The i32 values a guest appended with ``$out``."""
    assert payload is not None, "the guest wrote nothing"
    assert len(payload) % 4 == 0
    return list(struct.unpack(f"<{len(payload) // 4}i", payload))


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # wait (until the server closes) before answering


@dataclass
class Loopback:
    """A threading HTTP server on 127.0.0.1: ``routes`` maps a path to a Reply (or a
    callable returning one); ``seen`` lists (method, path) of every request received."""

    port: int
    routes: dict[str, Reply | Callable[[], Reply]]
    seen: list[tuple[str, str]]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@contextmanager
def loopback() -> Iterator[Loopback]:
    routes: dict[str, Reply | Callable[[], Reply]] = {}
    seen: list[tuple[str, str]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            seen.append((self.command, self.path))
            route = routes.get(self.path, Reply(404, b"not found"))
            reply = route() if callable(route) else route
            if reply.hold:
                release.wait(60)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Loopback(server.server_address[1], routes, seen)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
