"""The update-hook runner on CPython: a ``sync.wasm`` module in wasmtime, sandboxed.

The ABI is sync-rs's (crates/sync-wasm-engine/src/host.rs), every parameter and
result an i32, all imports from module ``host``:

================================================  =========================================
``http_request(url_ptr, url_len, m_ptr, m_len)``  HTTP status, or -1 bad memory / UTF-8,
                                                  -2 host not allowed, -3 client (not GET,
                                                  not http(s), bad URL, too many redirects
                                                  or requests), -4 body (over the response
                                                  cap, undecodable), -5 transport
``last_response_size()``                          bytes of the last response body
``last_response_read(out_ptr, max_len)``          bytes copied (min(size, max_len))
``payload_size()``                                bytes of the payload
``payload_read(offset, len, out_ptr)``            bytes copied; 0 at or past the end
``payload_write(offset, len, ptr)``               bytes written; -4 past the write cap
``context_size()``   *(our extension)*            bytes of ``context.json`` (0 if none)
``context_read(offset, len, out_ptr)`` *(ext.)*   as ``payload_read``, over context.json
================================================  =========================================

Exports: ``memory`` and ``run: () -> ()``. A module without ``run`` has its ``_start``
called instead and whatever it wrote is discarded (sync-rs's rule). After ``run``, a
non-empty write buffer is the new payload (the caller swaps it in).

Where we differ from sync-rs, deliberately:

* **Bounds.** Pointers and lengths are signed i32: a negative value, or a buffer
  ``[ptr, ptr + len)`` that does not lie inside the guest's memory (the *declared*
  buffer, whatever the amount of data), returns -1. A host function never traps and
  never crashes the host. ``payload_read``/``context_read`` check their arguments
  (negative ``offset`` is -1) before the "0 past the end" rule.
* **Writes** go into a fresh buffer that starts empty; a write past its end
  zero-fills the gap. A write whose end would pass ``HookLimits.write_bytes`` returns
  -4 (the "too big" code, as for a response) and changes nothing.
* **HTTP.** GET only (the method must be ``GET``, any case, or empty; sync-rs sends
  GET whatever the method says), ``http``/``https`` only, no user-info in URLs.
  Redirects are followed here, one hop at a time, up to ``max_redirects``; the scheme
  and the allow-list are checked again on every hop, before any connection to the new
  host. Bodies are bytes, as received (after HTTP content decoding), binary safe;
  streaming stops past ``response_bytes`` (-4). No proxy settings or ``.netrc`` from
  the environment are used (``trust_env=False``), and no cookies are kept. A failed
  request leaves an empty last response.
* **Time.** ``timeout_s`` is enforced: epoch interruption (a timer thread bumps the
  engine's epoch at the deadline, so running guest code traps within milliseconds),
  and host calls check the deadline too (an HTTP request runs on a worker thread the
  host call stops waiting for at the deadline). A run that passes its deadline fails
  with :class:`HookTimeoutError`, even if the guest returned in the meantime.
* **Memory.** ``memory_bytes`` caps linear memory (``memory.grow`` returns -1 past it;
  a module whose initial memory exceeds it is refused). 64-bit and shared memories,
  threads and WASI are refused before anything runs: a module may import only the
  functions above, with exactly these types.
* **Payload access is lazy**: ``payload_read`` reads the range it is asked for from a
  :class:`PayloadSource` (a file range by ``pread``, or bytes); the payload is never
  read whole. Its size must fit in an i32 (a larger payload is refused).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import wasmtime

from .... import __version__
from ....errors import (
    HookError,
    HookTimeoutError,
    LimitExceededError,
    LockboxError,
    StorageError,
    UsageError,
)
from ....ranges import ByteRange
from .hosts import host_allowed, normalize_host

__all__ = [
    "HookError",
    "HookTimeoutError",
    "HookLimits",
    "HookRequest",
    "HookResult",
    "PayloadSource",
    "BytesPayload",
    "FilePayload",
    "ABI_IMPORTS",
    "run_hook",
    "check_hook_module",
    "I32_MAX",
]

I32_MAX = 2**31 - 1
MAX_URL_SIZE = 8192
"""Longest URL (UTF-8 bytes) ``http_request`` accepts (-3 past it)."""
MAX_TIMEOUT_S = 86_400.0
"""Timeouts are clamped to a day (a u64 manifest timeout is otherwise unbounded)."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_EXTRA_RECORDS = 256  # refused calls recorded beyond max_requests (then only counted)
_USER_AGENT = f"lockbox-sync-hook/{__version__}"


@dataclass(frozen=True)
class HookLimits:
    """Bounds of one hook run.

    ``timeout_s``: wall-clock budget of the run (compile excluded; instantiation, the
    guest and its HTTP requests included). ``memory_bytes``: linear memory cap (at most
    2 GiB: pointers are signed i32). ``response_bytes``: largest response body kept.
    ``write_bytes``: largest new payload. ``max_redirects``: redirect hops per request.
    ``max_requests``: HTTP requests per run. ``wasm_bytes``: largest module accepted.
    """

    timeout_s: float = 30.0
    memory_bytes: int = 64 * 2**20
    response_bytes: int = 16 * 2**20
    write_bytes: int = 256 * 2**20
    max_redirects: int = 5
    max_requests: int = 64
    wasm_bytes: int = 16 * 2**20

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise UsageError(f"hook timeout must be positive, not {self.timeout_s}")
        for name in ("memory_bytes", "response_bytes", "write_bytes"):
            value = getattr(self, name)
            if not 0 < value <= 2**31:
                raise UsageError(f"hook {name} must be in 1..2 GiB, not {value}")
        for name in ("max_redirects", "max_requests"):
            if getattr(self, name) < 0:
                raise UsageError(f"hook {name} must not be negative")
        if self.wasm_bytes <= 0:
            raise UsageError("hook wasm_bytes must be positive")


@dataclass(frozen=True)
class HookRequest:
    """One ``http_request`` call: the URL asked for, the result the guest saw (an HTTP
    status or a negative code), the URL finally fetched, the redirects followed, the
    body size kept, and why it failed (None on success)."""

    url: str
    result: int
    final_url: str | None = None
    redirects: int = 0
    response_size: int = 0
    error: str | None = None


@dataclass
class HookResult:
    """What a run produced. ``new_payload`` is the write buffer after ``run`` when the
    guest wrote anything (None otherwise, and always None for a ``_start``-only module,
    whose ``discarded_size`` bytes were dropped). ``requests`` lists the ``http_request``
    calls (at most ``max_requests`` + 256; ``unrecorded_requests`` counts the calls past
    that, all refused). Times in seconds: ``compile_s``
    (validation + compilation), ``instantiate_s``, ``run_s`` (the entry point),
    ``elapsed_s`` (all of it)."""

    entry: str
    new_payload: bytes | None
    requests: list[HookRequest] = field(default_factory=list)
    discarded_size: int = 0
    unrecorded_requests: int = 0
    compile_s: float = 0.0
    instantiate_s: float = 0.0
    run_s: float = 0.0
    elapsed_s: float = 0.0


class PayloadSource(Protocol):
    """The payload as the hook reads it: ``size`` bytes, read by range on demand."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``offset`` (the caller keeps within ``self.size``)."""
        ...


class BytesPayload:
    """A payload held in memory (a decrypted vault payload, tests)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]


class FilePayload:
    """A payload read in place from a file range (never read whole), through a
    :class:`~lockbox.sources.FileSource`: ``pread`` where there is one, and a file that
    changes while the hook runs fails the run (SourceChangedError) instead of feeding it
    a mix. Use it as a context manager (or call ``close``)."""

    def __init__(self, path: str | os.PathLike[str], offset: int, size: int) -> None:
        from ....sources import FileSource

        if offset < 0 or size < 0:
            raise UsageError(f"invalid payload range {offset}+{size}")
        self._source = FileSource(path)
        self._path = os.fspath(path)
        self._offset = offset
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        (data,) = self._source.read([ByteRange(self._offset + offset, size)])
        if len(data) != size:
            raise StorageError(f"{self._path} ended inside its payload (was it truncated?)")
        return bytes(data)

    @property
    def bytes_read(self) -> int:
        """Bytes read from the file so far (what the guest asked for, no more)."""
        return self._source.stats.bytes_read

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> FilePayload:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- the ABI -----------------------------------------------------------------------

ABI_IMPORTS: dict[str, tuple[int, int]] = {
    "http_request": (4, 1),
    "last_response_size": (0, 1),
    "last_response_read": (2, 1),
    "payload_size": (0, 1),
    "payload_read": (3, 1),
    "payload_write": (3, 1),
    "context_size": (0, 1),
    "context_read": (3, 1),
}
"""Every import a hook may have: name -> (number of i32 params, number of i32 results)."""

BAD_MEMORY, DENIED, CLIENT, BODY, TRANSPORT = -1, -2, -3, -4, -5


def _func_type(params: int, results: int) -> wasmtime.FuncType:
    i32 = wasmtime.ValType.i32()
    return wasmtime.FuncType([i32] * params, [i32] * results)


def _is_i32s(types: Sequence[wasmtime.ValType], count: int) -> bool:
    return len(types) == count and all(str(t) == "i32" for t in types)


def _signature(ty: wasmtime.FuncType) -> str:
    params = ", ".join(str(t) for t in ty.params)
    results = ", ".join(str(t) for t in ty.results)
    return f"({params}) -> ({results})"


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.wasm_threads = False
    config.shared_memory = False
    config.wasm_memory64 = False
    return wasmtime.Engine(config)


def check_hook_module(module: wasmtime.Module) -> str:
    """Refuse a module that is not a hook under our ABI (:class:`HookError`, reason
    ``"invalid"``); return its entry point, ``"run"`` or ``"_start"``."""
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module != "host" or imp.name not in ABI_IMPORTS:
            extra = " (WASI is not available to hooks)" if imp.module.startswith("wasi") else ""
            raise HookError(
                f"the hook imports {where}; a hook may import only the host functions of "
                f"the .sync hook ABI from module 'host'{extra}",
                reason="invalid",
            )
        ty = imp.type
        params, results = ABI_IMPORTS[imp.name]
        if not (
            isinstance(ty, wasmtime.FuncType)
            and _is_i32s(ty.params, params)
            and _is_i32s(ty.results, results)
        ):
            want = _signature(_func_type(params, results))
            got = _signature(ty) if isinstance(ty, wasmtime.FuncType) else "not a function"
            raise HookError(
                f"the hook imports {where} as {got}; the ABI has {want}", reason="invalid"
            )
    exports = {exp.name: exp.type for exp in module.exports}
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise HookError("the hook does not export its linear memory as 'memory'", reason="invalid")
    if memory.is_64 or memory.is_shared:
        raise HookError("the hook's memory is 64-bit or shared; hooks use one 32-bit memory",
                        reason="invalid")
    for entry in ("run", "_start"):
        entry_type = exports.get(entry)
        if entry_type is None:
            continue
        if not (isinstance(entry_type, wasmtime.FuncType)
                and not entry_type.params and not entry_type.results):
            raise HookError(f"the hook's '{entry}' export is not a function () -> ()",
                            reason="invalid")
        return entry
    raise HookError("the hook exports neither 'run' nor '_start'", reason="invalid")


# --- one run -----------------------------------------------------------------------


class _Deadline:
    """The run's wall-clock budget: a timer thread bumps the engine's epoch when it is
    spent (running wasm then traps at its next epoch check)."""

    def __init__(self, engine: wasmtime.Engine, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s
        self.expired = threading.Event()
        self._stop = threading.Event()
        self._engine = engine
        self._thread = threading.Thread(target=self._wait, name="lockbox-hook-timer", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        if not self._stop.wait(self.timeout_s):
            self.expired.set()
            self._engine.increment_epoch()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.expired.is_set() or self.remaining() <= 0

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


class _Stop(BaseException):
    """Raised inside a host function to abort the guest (becomes a trap in wasmtime,
    which re-raises this exception to the caller of the entry point)."""

    def __init__(self, error: LockboxError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Fetched:
    result: int = TRANSPORT
    body: bytes = b""
    final_url: str | None = None
    redirects: int = 0
    error: str | None = None


class _Host:
    """The host side of one run: buffers, limits and the host functions."""

    def __init__(
        self,
        payload: PayloadSource,
        context: bytes,
        allow_hosts: Sequence[str],
        limits: HookLimits,
        deadline: _Deadline,
    ) -> None:
        self.payload = payload
        self.context = context
        self.allow_hosts = list(allow_hosts)
        self.limits = limits
        self.deadline = deadline
        self.written = bytearray()
        self.last_response = b""
        self.requests: list[HookRequest] = []
        self.fetches = 0
        self.unrecorded = 0
        self._client: Any = None
        self._client_lock = threading.Lock()

    # memory helpers ----------------------------------------------------------------

    @staticmethod
    def _memory_span(caller: wasmtime.Caller, ptr: int, size: int) -> wasmtime.Memory | None:
        """The guest memory when ``[ptr, ptr + size)`` lies inside it, else None."""
        if ptr < 0 or size < 0:
            return None
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return None
        if ptr + size > memory.data_len(caller):
            return None
        return memory

    @classmethod
    def _read_guest(cls, caller: wasmtime.Caller, ptr: int, size: int) -> bytes | None:
        memory = cls._memory_span(caller, ptr, size)
        if memory is None:
            return None
        return bytes(memory.read(caller, ptr, ptr + size)) if size else b""

    def _check_time(self) -> None:
        if self.deadline.passed():
            raise _Stop(self._timeout_error())

    def _timeout_error(self) -> HookTimeoutError:
        return HookTimeoutError(
            f"the hook ran past its timeout of {self.deadline.timeout_s:g} s and was stopped"
        )

    def _copy_out(self, caller: wasmtime.Caller, source: bytes | PayloadSource,
                  offset: int, size: int, out_ptr: int) -> int:
        memory = self._memory_span(caller, out_ptr, size)
        if memory is None or offset < 0:
            return BAD_MEMORY
        total = len(source) if isinstance(source, bytes) else source.size
        if offset >= total or size == 0:
            return 0
        count = min(size, total - offset)
        if isinstance(source, bytes):
            data = source[offset : offset + count]
        else:
            try:
                data = source.read(offset, count)
            except LockboxError as exc:
                raise _Stop(exc) from exc
        memory.write(caller, data, out_ptr)
        return count

    # host functions ----------------------------------------------------------------

    def functions(self) -> dict[str, Callable[..., int]]:
        return {
            "http_request": self.http_request,
            "last_response_size": self.last_response_size,
            "last_response_read": self.last_response_read,
            "payload_size": self.payload_size,
            "payload_read": self.payload_read,
            "payload_write": self.payload_write,
            "context_size": self.context_size,
            "context_read": self.context_read,
        }

    def last_response_size(self, caller: wasmtime.Caller) -> int:
        self._check_time()
        return len(self.last_response)

    def last_response_read(self, caller: wasmtime.Caller, out_ptr: int, max_len: int) -> int:
        self._check_time()
        return self._copy_out(caller, self.last_response, 0, max_len, out_ptr)

    def payload_size(self, caller: wasmtime.Caller) -> int:
        self._check_time()
        return self.payload.size

    def payload_read(self, caller: wasmtime.Caller, offset: int, size: int, out_ptr: int) -> int:
        self._check_time()
        return self._copy_out(caller, self.payload, offset, size, out_ptr)

    def context_size(self, caller: wasmtime.Caller) -> int:
        self._check_time()
        return len(self.context)

    def context_read(self, caller: wasmtime.Caller, offset: int, size: int, out_ptr: int) -> int:
        self._check_time()
        return self._copy_out(caller, self.context, offset, size, out_ptr)

    def payload_write(self, caller: wasmtime.Caller, offset: int, size: int, ptr: int) -> int:
        self._check_time()
        data = self._read_guest(caller, ptr, size)
        if data is None or offset < 0:
            return BAD_MEMORY
        if offset + size > self.limits.write_bytes:
            return BODY
        if size == 0:
            return 0
        if offset > len(self.written):
            self.written.extend(bytes(offset - len(self.written)))
        self.written[offset : offset + size] = data
        return size

    def http_request(self, caller: wasmtime.Caller, url_ptr: int, url_len: int,
                     method_ptr: int, method_len: int) -> int:
        self._check_time()
        self.last_response = b""
        if (self._memory_span(caller, url_ptr, url_len) is None
                or self._memory_span(caller, method_ptr, method_len) is None):
            return self._record("", _Fetched(BAD_MEMORY, error="URL or method outside memory"))
        if url_len > MAX_URL_SIZE or method_len > MAX_URL_SIZE:
            return self._record("", _Fetched(CLIENT, error=f"URL over {MAX_URL_SIZE} bytes"))
        raw_url = self._read_guest(caller, url_ptr, url_len) or b""
        raw_method = self._read_guest(caller, method_ptr, method_len) or b""
        try:
            url, method = raw_url.decode("utf-8"), raw_method.decode("utf-8")
        except UnicodeDecodeError:
            return self._record(repr(raw_url), _Fetched(BAD_MEMORY, error="not UTF-8"))
        if method.strip().upper() not in ("", "GET"):
            return self._record(url, _Fetched(CLIENT, error=f"method {method!r}: GET only"))
        parsed, refusal = self._check_url(url)
        if refusal is not None:  # refused before any connection: not counted as a request
            return self._record(url, refusal)
        if self.fetches >= self.limits.max_requests:
            return self._record(
                url, _Fetched(CLIENT, error=f"over {self.limits.max_requests} requests")
            )
        self.fetches += 1
        fetched = self._fetch_with_deadline(url, parsed)
        if fetched.result >= 0:
            self.last_response = fetched.body
        return self._record(url, fetched)

    def _record(self, url: str, fetched: _Fetched) -> int:
        if len(self.requests) >= self.limits.max_requests + _EXTRA_RECORDS:
            self.unrecorded += 1  # a guest calling in a loop: keep memory bounded
            return fetched.result
        self.requests.append(
            HookRequest(
                url=url,
                result=fetched.result,
                final_url=fetched.final_url,
                redirects=fetched.redirects,
                response_size=len(fetched.body) if fetched.result >= 0 else 0,
                error=fetched.error,
            )
        )
        return fetched.result

    # HTTP ---------------------------------------------------------------------------

    def _fetch_with_deadline(self, url: str, parsed: Any) -> _Fetched:
        """Run the fetch on a worker thread and wait for it no longer than the run's
        remaining time (DNS and slow servers cannot hold the guest past its deadline)."""
        box: list[_Fetched] = []

        def work() -> None:
            try:
                box.append(self._fetch(parsed))
            except Exception as exc:  # never let a library error escape
                box.append(_Fetched(TRANSPORT, error=f"{type(exc).__name__}: {exc}"))

        worker = threading.Thread(target=work, name="lockbox-hook-http", daemon=True)
        worker.start()
        worker.join(max(self.deadline.remaining(), 0.0))
        if worker.is_alive() or not box:
            self._record(url, _Fetched(TRANSPORT, error="stopped at the hook's deadline"))
            raise _Stop(self._timeout_error())
        return box[0]

    def _http_client(self) -> Any:
        import httpx

        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    follow_redirects=False,
                    trust_env=False,
                    headers={"User-Agent": _USER_AGENT},
                )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _check_url(self, text: str, base: Any = None) -> tuple[Any, _Fetched | None]:
        """Parse (and resolve against ``base``) a URL; return it with the refusal to
        report, if any: -3 for a bad or non-http(s) URL, -2 for a host not allowed."""
        import httpx

        try:
            url = base.join(text) if base is not None else httpx.URL(text)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            return None, _Fetched(CLIENT, error=f"bad URL: {exc}")
        if url.scheme not in ("http", "https"):
            return url, _Fetched(CLIENT, error=f"scheme {url.scheme!r}: http and https only")
        if url.userinfo:
            return url, _Fetched(CLIENT, error="user info in URLs is not allowed")
        host = url.raw_host.decode("ascii", "replace")
        if normalize_host(host) is None:
            return url, _Fetched(CLIENT, error=f"bad host {host!r}")
        port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
        if not host_allowed(host, self.allow_hosts, port=port):
            return url, _Fetched(DENIED, error=f"host {host!r} is not allowed")
        return url, None

    def _fetch(self, url: Any) -> _Fetched:
        """GET ``url`` (already checked), following redirects that pass the checks."""
        import httpx

        client = self._http_client()
        redirects = 0
        while True:
            timeout = httpx.Timeout(max(self.deadline.remaining(), 0.001))
            try:
                request = client.build_request("GET", url, timeout=timeout)
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                return _Fetched(TRANSPORT, final_url=str(url), redirects=redirects,
                                error=f"timed out: {exc}")
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                return _Fetched(CLIENT, final_url=str(url), redirects=redirects, error=str(exc))
            except httpx.HTTPError as exc:
                return _Fetched(TRANSPORT, final_url=str(url), redirects=redirects,
                                error=f"{type(exc).__name__}: {exc}")
            finally:
                client.cookies.clear()
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    if redirects >= self.limits.max_redirects:
                        return _Fetched(CLIENT, final_url=str(url), redirects=redirects,
                                        error=f"more than {self.limits.max_redirects} redirects")
                    redirects += 1
                    next_url, refusal = self._check_url(location, base=url)
                    if refusal is not None:
                        refusal.final_url = str(next_url) if next_url is not None else location
                        refusal.redirects = redirects
                        return refusal
                    url = next_url
                    continue
                return self._read_body(response, url, redirects)
            finally:
                response.close()

    def _read_body(self, response: Any, url: Any, redirects: int) -> _Fetched:
        import httpx

        cap = self.limits.response_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    return _Fetched(BODY, final_url=str(url), redirects=redirects,
                                    error=f"response body over {cap} bytes")
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            return _Fetched(BODY, final_url=str(url), redirects=redirects,
                            error=f"undecodable body: {exc}")
        except httpx.HTTPError as exc:
            return _Fetched(TRANSPORT, final_url=str(url), redirects=redirects,
                            error=f"{type(exc).__name__}: {exc}")
        return _Fetched(response.status_code, b"".join(chunks), final_url=str(url),
                        redirects=redirects)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # wasmtime puts the cause last ("Caused by: wasm trap: ..."); it is the useful part
    return lines[-1] if lines else "unknown error"


def _trap_error(exc: wasmtime.Trap | wasmtime.WasmtimeError, deadline: _Deadline,
                host: _Host, what: str) -> HookError:
    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    if code == wasmtime.TrapCode.INTERRUPT or deadline.expired.is_set():
        return host._timeout_error()
    return HookError(f"the hook trapped {what}: {_first_line(str(exc))}", reason="trap")


def run_hook(
    wasm: bytes,
    *,
    payload: PayloadSource,
    context: bytes | None = None,
    allow_hosts: Sequence[str] = (),
    limits: HookLimits | None = None,
) -> HookResult:
    """Run a hook module once under the ABI and ``limits`` (module docstring).

    ``allow_hosts`` is the effective allow-list (the caller intersects grants and the
    manifest: see :func:`~.hosts.intersect_patterns`). Returns the run's
    :class:`HookResult`; raises :class:`HookError` (refused module, trap, memory cap),
    :class:`HookTimeoutError`, or the :class:`StorageError` of a failed payload read.
    The caller's file is never touched here: the caller decides what to do with
    ``new_payload``.
    """
    limits = limits or HookLimits()
    started = time.perf_counter()
    if len(wasm) > limits.wasm_bytes:
        raise HookError(
            f"the hook module is {len(wasm)} bytes, over the {limits.wasm_bytes}-byte limit",
            reason="limit",
        )
    if payload.size > I32_MAX:
        raise LimitExceededError(
            f"the payload is {payload.size} bytes; hooks address payloads with i32 offsets "
            f"(at most {I32_MAX} bytes)"
        )
    if bytes(wasm[:4]) != b"\0asm":
        # (wasmtime-py would compile text as WAT: hooks are binaries, as in the browser)
        raise HookError("sync.wasm is not a WebAssembly binary (no \\0asm magic)",
                        reason="invalid")
    engine = _engine()
    try:
        module = wasmtime.Module(engine, bytes(wasm))
    except wasmtime.WasmtimeError as exc:
        raise HookError(f"sync.wasm is not a valid WebAssembly module: {_first_line(str(exc))}",
                        reason="invalid") from None
    entry = check_hook_module(module)
    compiled = time.perf_counter()

    store = wasmtime.Store(engine)
    store.set_limits(memory_size=limits.memory_bytes, table_elements=1_000_000,
                     instances=1, tables=8, memories=1)
    store.set_epoch_deadline(1)
    deadline = _Deadline(engine, min(limits.timeout_s, MAX_TIMEOUT_S))
    host = _Host(payload, context or b"", allow_hosts, limits, deadline)
    linker = wasmtime.Linker(engine)
    for name, host_function in host.functions().items():
        params, results = ABI_IMPORTS[name]
        linker.define_func("host", name, _func_type(params, results), host_function,
                           access_caller=True)
    instantiated = compiled
    try:
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.Trap as exc:
            raise _trap_error(exc, deadline, host, "while starting") from None
        except wasmtime.WasmtimeError as exc:
            message = _first_line(str(exc))
            if "limit" in message or "memory" in message:
                raise HookError(
                    f"the hook needs more memory than the {limits.memory_bytes}-byte cap "
                    f"({message})", reason="limit"
                ) from None
            raise HookError(f"the hook could not be instantiated: {message}",
                            reason="invalid") from None
        instantiated = time.perf_counter()
        function = instance.exports(store)[entry]
        assert isinstance(function, wasmtime.Func)
        try:
            function(store)
        except wasmtime.Trap as exc:
            raise _trap_error(exc, deadline, host, f"in '{entry}'") from None
        except wasmtime.WasmtimeError as exc:
            raise HookError(f"the hook failed in '{entry}': {_first_line(str(exc))}",
                            reason="trap") from None
        if deadline.passed():
            raise host._timeout_error()
    except _Stop as stop:
        raise stop.error from None
    finally:
        deadline.cancel()
        host.close()
    finished = time.perf_counter()
    written = bytes(host.written)
    keep = entry == "run" and len(written) > 0
    return HookResult(
        entry=entry,
        new_payload=written if keep else None,
        requests=host.requests,
        discarded_size=0 if keep else len(written),
        unrecorded_requests=host.unrecorded,
        compile_s=compiled - started,
        instantiate_s=instantiated - compiled,
        run_s=finished - instantiated,
        elapsed_s=finished - started,
    )
