"""The wasmtime hook runner: WAT guests against the ABI, limits and a real loopback server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lockbox.errors import LimitExceededError, StorageError
from lockbox.formats.sync.hook.runner import (
    BytesPayload,
    FilePayload,
    HookError,
    HookLimits,
    HookTimeoutError,
    run_hook,
)

from .guests import Reply, guest, loopback, module, outputs

URL = 4096  # where guests keep their URL
GET = 3072  # "GET"
BUF = 65536  # second page: response buffers


def fetch(url: str, *, method: bytes = b"GET", copy_body: bool = False) -> bytes:
    """A guest that requests ``url``, outputs the result and the response size, and
    (``copy_body``) writes the body after them."""
    body = f"""
      (local $r i32) (local $n i32)
      (local.set $r (call $http (i32.const {URL}) (i32.const {len(url.encode())})
                               (i32.const {GET}) (i32.const {len(method)})))
      (call $out (local.get $r))
      (local.set $n (call $rsize))
      (call $out (local.get $n))
      {"" if not copy_body else '''
      (call $out (call $rread (i32.const 65536) (i32.const 65536)))
      (drop (call $pwrite (i32.const 12) (local.get $n) (i32.const 65536)))'''}
      (local.set $r (i32.const 0))"""
    return guest(body, data={URL: url.encode(), GET: method})


def run(wasm: bytes, payload: bytes = b"", **kw: object) -> tuple[list[int], bytes]:
    result = run_hook(wasm, payload=BytesPayload(payload), **kw)  # type: ignore[arg-type]
    assert result.new_payload is not None
    return outputs(result.new_payload[: 4 * (len(result.new_payload) // 4)]), result.new_payload


BINARY = b"\x00\xff\x00head\r\n\x00" + bytes(range(256)) + b"\xff" * 3


def test_fetch_from_allowed_loopback_host_is_binary_safe() -> None:
    with loopback() as server:
        server.routes["/data"] = Reply(200, BINARY, {"Content-Type": "application/octet-stream"})
        wasm = fetch(server.url("/data"), copy_body=True)
        result = run_hook(wasm, payload=BytesPayload(b""), allow_hosts=["127.0.0.1"])
        assert result.new_payload is not None
        assert outputs(result.new_payload[:12]) == [200, len(BINARY), len(BINARY)]
        assert result.new_payload[12:] == BINARY
        assert server.seen == [("GET", "/data")]
        (request,) = result.requests
        assert (request.result, request.response_size, request.error) == (200, len(BINARY), None)


def test_error_status_is_returned_with_its_body() -> None:
    with loopback() as server:
        wasm = fetch(server.url("/missing"))
        assert run(wasm, allow_hosts=["127.0.0.1"])[0] == [404, len(b"not found")]


def test_denied_hosts_return_minus_2_before_any_connection() -> None:
    for url in ("http://evilexample.com/", "https://api.example.com/x", "http://example.com.evil/"):
        wasm = fetch(url)
        # nothing listens on these names here: a connection attempt would be -5, not -2
        assert run(wasm, allow_hosts=["example.com"])[0] == [-2, 0]
    with loopback() as server:
        assert run(fetch(server.url("/")), allow_hosts=[])[0] == [-2, 0]
        assert run(fetch(server.url("/", host="localhost")), allow_hosts=["127.0.0.1"])[0] == [
            -2, 0]
        port = server.port
        assert run(fetch(server.url("/")), allow_hosts=[f"127.0.0.1:{port + 1}"])[0] == [-2, 0]
        assert server.seen == []
        server.routes["/"] = Reply(200, b"ok")
        assert run(fetch(server.url("/")), allow_hosts=[f"127.0.0.1:{port}"])[0] == [200, 2]


def test_redirects_are_rechecked_on_every_hop() -> None:
    with loopback() as allowed, loopback() as denied:
        allowed.routes["/to-denied"] = Reply(302, b"", {"Location": denied.url("/x", "localhost")})
        allowed.routes["/to-self"] = Reply(301, b"", {"Location": "/final"})
        allowed.routes["/final"] = Reply(200, b"final")
        allowed.routes["/to-ftp"] = Reply(307, b"", {"Location": "ftp://127.0.0.1/x"})
        allowed.routes["/loop"] = Reply(302, b"", {"Location": "/loop"})
        hosts = ["127.0.0.1"]
        result = run_hook(fetch(allowed.url("/to-denied")), payload=BytesPayload(b""),
                          allow_hosts=hosts)
        assert outputs(result.new_payload) == [-2, 0]
        assert result.requests[0].redirects == 1
        assert denied.seen == []
        assert run(fetch(allowed.url("/to-self")), allow_hosts=hosts)[0] == [200, 5]
        assert run(fetch(allowed.url("/to-ftp")), allow_hosts=hosts)[0] == [-3, 0]
        limits = HookLimits(max_redirects=3)
        assert run(fetch(allowed.url("/loop")), allow_hosts=hosts, limits=limits)[0] == [-3, 0]
        assert allowed.seen.count(("GET", "/loop")) == 4  # the first request + 3 hops


def test_get_only_and_http_only() -> None:
    with loopback() as server:
        server.routes["/"] = Reply(200, b"ok")
        hosts = ["127.0.0.1"]
        assert run(fetch(server.url("/"), method=b"POST"), allow_hosts=hosts)[0] == [-3, 0]
        assert run(fetch(server.url("/"), method=b"DELETE"), allow_hosts=hosts)[0] == [-3, 0]
        assert server.seen == []
        assert run(fetch(server.url("/"), method=b"get"), allow_hosts=hosts)[0] == [200, 2]
        assert run(fetch(server.url("/"), method=b""), allow_hosts=hosts)[0] == [200, 2]
    for url in ("ftp://127.0.0.1/", "file:///etc/passwd", "not a url", "http://u:p@127.0.0.1/",
                "http:///nohost", "x" * 9000):
        assert run(fetch(url), allow_hosts=["127.0.0.1"])[0] == [-3, 0], url


def test_transport_error_is_minus_5() -> None:
    with loopback() as server:
        closed = server.url("/")
    # the server is gone: connection refused
    assert run(fetch(closed), allow_hosts=["127.0.0.1"])[0] == [-5, 0]


def test_response_cap() -> None:
    with loopback() as server:
        server.routes["/big"] = Reply(200, b"x" * 5000)
        server.routes["/small"] = Reply(200, b"x" * 1000)
        limits = HookLimits(response_bytes=1000)
        hosts = ["127.0.0.1"]
        assert run(fetch(server.url("/big")), allow_hosts=hosts, limits=limits)[0] == [-4, 0]
        assert run(fetch(server.url("/small")), allow_hosts=hosts, limits=limits)[0] == [200, 1000]


def test_content_encoding_is_decoded_and_capped_after_decoding() -> None:
    import gzip

    with loopback() as server:
        server.routes["/gz"] = Reply(200, gzip.compress(BINARY), {"Content-Encoding": "gzip"})
        server.routes["/bomb"] = Reply(200, gzip.compress(bytes(10**6)),
                                       {"Content-Encoding": "gzip"})
        server.routes["/broken"] = Reply(200, b"not gzip", {"Content-Encoding": "gzip"})
        hosts, limits = ["127.0.0.1"], HookLimits(response_bytes=10**5)
        _, written = run(fetch(server.url("/gz"), copy_body=True), allow_hosts=hosts,
                         limits=limits)
        assert outputs(written[:12]) == [200, len(BINARY), len(BINARY)]
        assert written[12:] == BINARY
        assert run(fetch(server.url("/bomb")), allow_hosts=hosts, limits=limits)[0] == [-4, 0]
        assert run(fetch(server.url("/broken")), allow_hosts=hosts)[0] == [-4, 0]


def test_last_response_read_copies_at_most_max_len() -> None:
    with loopback() as server:
        server.routes["/"] = Reply(200, b"0123456789")
        url = server.url("/")
        body = f"""
          (call $out (call $http (i32.const {URL}) (i32.const {len(url)}) (i32.const {GET})
                                (i32.const 3)))
          (call $out (call $rread (i32.const 200) (i32.const 4)))
          (call $out (call $rread (i32.const 200) (i32.const 0)))
          (drop (call $pwrite (i32.const 12) (i32.const 4) (i32.const 200)))"""
        _, written = run(guest(body, data={URL: url.encode(), GET: b"GET"}),
                         allow_hosts=["127.0.0.1"])
        assert outputs(written[:12]) == [200, 4, 0] and written[12:] == b"0123"


def test_request_count_cap() -> None:
    with loopback() as server:
        server.routes["/"] = Reply(200, b"ok")
        url = server.url("/")
        call = (f"(call $out (call $http (i32.const {URL}) (i32.const {len(url)}) "
                f"(i32.const {GET}) (i32.const 3)))")
        wasm = guest(call * 3, data={URL: url.encode(), GET: b"GET"})
        limits = HookLimits(max_requests=2)
        assert run(wasm, allow_hosts=["127.0.0.1"], limits=limits)[0] == [200, 200, -3]
        # refused calls (-2) do not count as requests
        denied = guest((call * 2).replace(f"(i32.const {len(url)})", "(i32.const 18)"),
                       data={URL: b"http://example.com", GET: b"GET"})
        assert run(denied, allow_hosts=["127.0.0.1"], limits=limits)[0] == [-2, -2]


def test_calls_in_a_loop_keep_a_bounded_record() -> None:
    body = f"""(local $i i32)
      (loop $l
        (drop (call $http (i32.const {URL}) (i32.const 18) (i32.const {GET}) (i32.const 3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))"""
    wasm = guest(body, data={URL: b"http://example.com", GET: b"GET"})
    result = run_hook(wasm, payload=BytesPayload(b""), limits=HookLimits(max_requests=4))
    assert len(result.requests) == 4 + 256
    assert result.unrecorded_requests == 1000 - 260
    assert {r.result for r in result.requests} == {-2}


def test_out_of_bounds_pointers_return_minus_1_for_every_import() -> None:
    end = 2 * 65536  # two pages
    calls = [
        f"(call $http (i32.const -1) (i32.const 4) (i32.const {GET}) (i32.const 3))",
        f"(call $http (i32.const {end - 2}) (i32.const 4) (i32.const {GET}) (i32.const 3))",
        f"(call $http (i32.const {URL}) (i32.const -4) (i32.const {GET}) (i32.const 3))",
        f"(call $http (i32.const {URL}) (i32.const 4) (i32.const {end}) (i32.const 3))",
        f"(call $http (i32.const {URL}) (i32.const 4) (i32.const {GET}) (i32.const 2147483647))",
        "(call $http (i32.const 8000) (i32.const 2) (i32.const 3072) (i32.const 3))",  # bad UTF-8
        "(call $rread (i32.const -1) (i32.const 4))",
        f"(call $rread (i32.const {end - 1}) (i32.const 2))",
        "(call $rread (i32.const 0) (i32.const -1))",
        "(call $rread (i32.const 2147483647) (i32.const 2147483647))",
        "(call $pread (i32.const 0) (i32.const 4) (i32.const -4))",
        f"(call $pread (i32.const 0) (i32.const 4) (i32.const {end - 3}))",
        "(call $pread (i32.const -1) (i32.const 4) (i32.const 64))",
        "(call $pread (i32.const 0) (i32.const -1) (i32.const 64))",
        "(call $pread (i32.const 0) (i32.const 2147483647) (i32.const 2147483647))",
        "(call $pwrite (i32.const 0) (i32.const 4) (i32.const -1))",
        f"(call $pwrite (i32.const 0) (i32.const 8) (i32.const {end - 4}))",
        "(call $pwrite (i32.const -1) (i32.const 4) (i32.const 64))",
        "(call $pwrite (i32.const 0) (i32.const -4) (i32.const 64))",
        "(call $cread (i32.const 0) (i32.const 4) (i32.const -4))",
        f"(call $cread (i32.const 0) (i32.const 2) (i32.const {end - 1}))",
        "(call $cread (i32.const -2) (i32.const 4) (i32.const 64))",
        "(call $cread (i32.const 0) (i32.const -2) (i32.const 64))",
    ]
    body = "".join(f"(call $out {call})" for call in calls)
    wasm = guest(body, data={URL: b"http://127.0.0.1/", GET: b"GET", 8000: b"\xff\xfe"})
    seen, _ = run(wasm, payload=b"payload", context=b"{}", allow_hosts=["127.0.0.1"])
    assert seen == [-1] * len(calls)


def test_reads_past_the_end_return_0_and_clip() -> None:
    body = """
      (call $out (call $psize))
      (call $out (call $pread (i32.const 7) (i32.const 4) (i32.const 64)))
      (call $out (call $pread (i32.const 100) (i32.const 4) (i32.const 64)))
      (call $out (call $pread (i32.const 5) (i32.const 100) (i32.const 64)))
      (call $out (i32.load16_u (i32.const 64)))
      (call $out (call $rsize))
      (call $out (call $rread (i32.const 64) (i32.const 10)))
      (call $out (call $csize))
      (call $out (call $cread (i32.const 2) (i32.const 0) (i32.const 64)))
    """
    seen, _ = run(guest(body), payload=b"payload")
    assert seen == [7, 0, 0, 2, int.from_bytes(b"ad", "little"), 0, 0, 0, 0]


def test_context_read() -> None:
    context = b'{"token": "\x00\xff", "n": 1}'
    body = """
      (local $n i32)
      (local.set $n (call $csize))
      (call $out (local.get $n))
      (call $out (call $cread (i32.const 0) (local.get $n) (i32.const 65536)))
      (call $out (call $cread (i32.const 3) (i32.const 4) (i32.const 70000)))
      (drop (call $pwrite (i32.const 12) (local.get $n) (i32.const 65536)))
      (drop (call $pwrite (i32.add (i32.const 12) (local.get $n)) (i32.const 4)
                          (i32.const 70000)))
    """
    _, written = run(guest(body), context=context)
    n = len(context)
    assert outputs(written[:12]) == [n, n, 4]
    assert written[12 : 12 + n] == context
    assert written[12 + n :] == context[3:7]


def test_payload_write_at_an_offset_zero_fills_the_gap() -> None:
    body = """
      (drop (call $pwrite (i32.const 4) (i32.const 2) (i32.const 100)))
      (drop (call $pwrite (i32.const 1) (i32.const 1) (i32.const 102)))
      (drop (call $pwrite (i32.const 5) (i32.const 3) (i32.const 100)))
    """
    result = run_hook(guest(body, data={100: b"ABC"}), payload=BytesPayload(b"old payload"))
    assert result.new_payload == b"\x00C\x00\x00AABC"


def test_payload_write_cap() -> None:
    body = """
      (call $out (call $pwrite (i32.const 8) (i32.const 8) (i32.const 100)))
      (call $out (call $pwrite (i32.const 9) (i32.const 8) (i32.const 100)))
      (call $out (call $pwrite (i32.const 2147483647) (i32.const 1) (i32.const 100)))
    """
    result = run_hook(guest(body, data={100: b"12345678"}), payload=BytesPayload(b""),
                      limits=HookLimits(write_bytes=16))
    # outputs land at 0, 4, 8: the third overwrites the first half of the 8-byte write
    minus_4 = (-4).to_bytes(4, "little", signed=True)
    assert result.new_payload == (8).to_bytes(4, "little") + minus_4 + minus_4 + b"5678"


def test_nothing_written_means_no_new_payload() -> None:
    result = run_hook(guest("(drop (call $psize))"), payload=BytesPayload(b"keep"))
    assert (result.entry, result.new_payload, result.discarded_size) == ("run", None, 0)


def test_start_only_module_changes_nothing() -> None:
    wasm = guest("(drop (call $pwrite (i32.const 0) (i32.const 3) (i32.const 100)))",
                 data={100: b"new"}, entry="_start")
    result = run_hook(wasm, payload=BytesPayload(b"old"))
    assert (result.entry, result.new_payload, result.discarded_size) == ("_start", None, 3)


def test_run_wins_over_start() -> None:
    wasm = guest("(call $out (i32.const 1))",
                 extra='(func (export "_start") (call $out (i32.const 2)))')
    result = run_hook(wasm, payload=BytesPayload(b""))
    assert (result.entry, outputs(result.new_payload)) == ("run", [1])


def test_file_payload_is_read_by_range(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"HEADER" + b"the payload" + b"TRAILER")
    body = """
      (call $out (call $psize))
      (call $out (call $pread (i32.const 4) (i32.const 7) (i32.const 100)))
      (drop (call $pwrite (i32.const 8) (i32.const 7) (i32.const 100)))
    """
    with FilePayload(path, 6, 11) as payload:
        result = run_hook(guest(body), payload=payload)
    assert result.new_payload == (11).to_bytes(4, "little") + (7).to_bytes(4, "little") + (
        b"payload"
    )


def test_a_large_file_payload_is_never_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse
    body = """
      (call $out (call $psize))
      (call $out (call $pread (i32.const 536870912) (i32.const 16) (i32.const 100)))"""
    with FilePayload(path, 4096, (1 << 30) - 4096) as payload:
        result = run_hook(guest(body), payload=payload)
        assert payload.bytes_read == 16
    assert outputs(result.new_payload) == [(1 << 30) - 4096, 16]


def test_a_file_changed_during_the_run_fails_it(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)
    body = "(drop (call $pread (i32.const 0) (i32.const 8) (i32.const 100)))"
    with FilePayload(path, 0, 100) as payload:
        with open(path, "ab") as f:
            f.write(b"appended")
        with pytest.raises(StorageError, match="modified"):
            run_hook(guest(body), payload=payload)


def test_truncated_file_payload_fails_the_run(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"short")
    with FilePayload(path, 0, 100) as payload, pytest.raises(StorageError, match="ended"):
        run_hook(guest("(drop (call $pread (i32.const 0) (i32.const 50) (i32.const 100)))"),
                 payload=payload)


class _HugePayload:
    size = 2**31

    def read(self, offset: int, size: int) -> bytes:
        raise AssertionError("never read")


def test_payload_over_i32_is_refused() -> None:
    with pytest.raises(LimitExceededError, match="i32"):
        run_hook(guest("(nop)"), payload=_HugePayload())


def test_wasi_import_is_refused_before_running() -> None:
    wasm = module("""(module
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")))""")
    with pytest.raises(HookError, match="WASI") as info:
        run_hook(wasm, payload=BytesPayload(b""))
    assert info.value.reason == "invalid"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('(module (import "host" "nope" (func)) (memory (export "memory") 1)'
         ' (func (export "run")))', "host.nope"),
        ('(module (import "host" "payload_size" (func (result i64))) (memory (export "memory") 1)'
         ' (func (export "run")))', "payload_size"),
        ('(module (import "host" "payload_size" (global i32)) (memory (export "memory") 1)'
         ' (func (export "run")))', "not a function"),
        ('(module (func (export "run")))', "memory"),
        ('(module (memory (export "memory") 1))', "neither"),
        ('(module (memory (export "memory") 1) (func (export "run") (param i32)))', "'run'"),
    ],
)
def test_modules_outside_the_abi_are_refused(text: str, message: str) -> None:
    with pytest.raises(HookError, match=message) as info:
        run_hook(module(text), payload=BytesPayload(b""))
    assert info.value.reason == "invalid"


def test_stub_and_garbage_are_refused() -> None:
    text = b'(module (memory (export "memory") 1) (func (export "run")))'
    for wasm in (b"\0asm\x01\0\0\0", b"not wasm at all", text, b"\0asm\x01\0\0\0\xff", b""):
        with pytest.raises(HookError) as info:
            run_hook(wasm, payload=BytesPayload(b""))
        assert info.value.reason == "invalid"


def test_trap_is_reported() -> None:
    with pytest.raises(HookError, match="unreachable") as info:
        run_hook(guest("(unreachable)"), payload=BytesPayload(b""))
    assert info.value.reason == "trap"


def test_memory_cap() -> None:
    limits = HookLimits(memory_bytes=4 * 65536)
    grow = "(call $out (memory.grow (i32.const 1))) (call $out (memory.grow (i32.const 100)))"
    assert run(guest(grow), limits=limits)[0] == [2, -1]
    with pytest.raises(HookError, match="memory") as info:
        run_hook(guest("(nop)", pages=8), payload=BytesPayload(b""), limits=limits)
    assert info.value.reason == "limit"


def test_module_size_cap() -> None:
    wasm = guest("(nop)")
    with pytest.raises(HookError, match="limit") as info:
        run_hook(wasm, payload=BytesPayload(b""), limits=HookLimits(wasm_bytes=len(wasm) - 1))
    assert info.value.reason == "limit"


TIMEOUT_S = 0.5
SLACK_S = 2.0  # hang guard for a loaded machine; the bound asserted is timeout + 1 s + this


def _assert_dies_in_time(wasm: bytes, **kw: object) -> None:
    started = time.monotonic()
    with pytest.raises(HookTimeoutError, match="timeout") as info:
        run_hook(wasm, payload=BytesPayload(b"payload"),  # type: ignore[arg-type]
                 limits=HookLimits(timeout_s=TIMEOUT_S), **kw)
    assert time.monotonic() - started < TIMEOUT_S + 1.0 + SLACK_S
    assert info.value.reason == "timeout"


def test_endless_loop_dies_within_timeout() -> None:
    _assert_dies_in_time(guest("(loop $l (br $l))"))


def test_endless_start_function_dies_within_timeout() -> None:
    wasm = module("""(module (memory (export "memory") 1)
      (func $spin (loop $l (br $l))) (start $spin) (func (export "run")))""")
    _assert_dies_in_time(wasm)


def test_endless_host_calls_die_within_timeout() -> None:
    _assert_dies_in_time(guest("(loop $l (call $out (call $psize)) (br $l))"))


def test_slow_server_cannot_hold_the_guest_past_its_timeout() -> None:
    with loopback() as server:
        server.routes["/slow"] = Reply(200, b"late", hold=True)
        _assert_dies_in_time(fetch(server.url("/slow")), allow_hosts=["127.0.0.1"])
        assert server.seen == [("GET", "/slow")]


def test_limits_are_validated() -> None:
    from lockbox.errors import UsageError

    for bad in ({"timeout_s": 0}, {"memory_bytes": 2**31 + 1}, {"write_bytes": 0},
                {"max_redirects": -1}):
        with pytest.raises(UsageError):
            HookLimits(**bad)  # type: ignore[arg-type]
