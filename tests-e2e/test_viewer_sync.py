""".sync containers in the viewer: the panel (manifest, freshness, signature), previews by
content_type, a vault's passphrase asked for and used in the page, and the update hook run
in the page's sandboxed worker (webapp/src/hook-worker.mjs) against a loopback server, its
updated .sync downloaded and read back on CPython.

Three layers, fastest first: the hook worker's JS under Node (host rules against
lockbox.formats.sync.hook.hosts, the ABI without HTTP), the viewer's Python side on
CPython (lockbox.viewer.session + viewer/sync.py over file sources), then Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import struct
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    PYTHON_START_MS,
    ROOT,
    Archives,
    Viewer,
    deep_link,
    png,
    sequential_round_trips,
)

wasmtime = pytest.importorskip("wasmtime")

HOOK_WORKER = ROOT / "webapp" / "src" / "hook-worker.mjs"
NODE = shutil.which("node")

CSV = b'name,count\nalpha,1\n"b, quoted",2\n"multi\nline",3\n'
JSON_DOC = {"report": "weekly", "values": [1, 2, 3], "nested": {"ok": True}}
BODY = bytes(range(256)) * 8 + b"\x00\r\n\xff end"  # binary: every byte value, NULs, CR/LF
VAULT_TEXT = b"the vault's secret text\n"
VAULT_PASS = "correct vault passphrase"
SIGNING_SEED = bytes(range(32))

# The fetch guest: context.json is a JSON string, the URL; it requests it (GET), then writes
# the status as 4 bytes (little-endian i32) and the response body after it. A denied host
# shows as -2 in the first 4 bytes, with nothing after.
FETCH_WAT = """
(module
  (import "host" "context_size" (func $csize (result i32)))
  (import "host" "context_read" (func $cread (param i32 i32 i32) (result i32)))
  (import "host" "http_request" (func $req (param i32 i32 i32 i32) (result i32)))
  (import "host" "last_response_size" (func $rsize (result i32)))
  (import "host" "last_response_read" (func $rread (param i32 i32) (result i32)))
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "GET")
  (func (export "run")
    (local $n i32) (local $size i32)
    (local.set $n (call $csize))
    (drop (call $cread (i32.const 0) (local.get $n) (i32.const 1024)))
    ;; the URL without the JSON string's quotes
    (i32.store (i32.const 16)
      (call $req (i32.const 1025) (i32.sub (local.get $n) (i32.const 2))
                 (i32.const 0) (i32.const 3)))
    (drop (call $pwrite (i32.const 0) (i32.const 4) (i32.const 16)))
    (local.set $size (call $rsize))
    (drop (call $rread (i32.const 65536) (local.get $size)))
    (drop (call $pwrite (i32.const 4) (local.get $size) (i32.const 65536)))))
"""

ENDLESS_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "run") (loop $forever (br $forever))))
"""

# The ABI without HTTP (Node has no JSPI): results stored as i32s at 0..60, then written
# as the payload at offset 8 (the gap before it zero-filled).
ABI_WAT = """
(module
  (import "host" "payload_size" (func $psize (result i32)))
  (import "host" "payload_read" (func $pread (param i32 i32 i32) (result i32)))
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
  (import "host" "context_size" (func $csize (result i32)))
  (import "host" "context_read" (func $cread (param i32 i32 i32) (result i32)))
  (import "host" "last_response_size" (func $rsize (result i32)))
  (memory (export "memory") 1)
  (func (export "run")
    (i32.store (i32.const 0) (call $psize))
    (i32.store (i32.const 4) (call $pread (i32.const 2) (i32.const 4) (i32.const 1000)))
    (i32.store (i32.const 8) (call $pread (i32.const 1000000) (i32.const 4) (i32.const 1000)))
    (i32.store (i32.const 12) (call $pread (i32.const 0) (i32.const 16) (i32.const 65530)))
    (i32.store (i32.const 16) (call $pread (i32.const -1) (i32.const 4) (i32.const 1000)))
    (i32.store (i32.const 20) (call $csize))
    (i32.store (i32.const 24) (call $cread (i32.const 0) (i32.const 100) (i32.const 2000)))
    (i32.store (i32.const 28) (memory.grow (i32.const 1)))
    (i32.store (i32.const 32) (memory.grow (i32.const 1)))
    (i32.store (i32.const 36) (call $pwrite (i32.const 90) (i32.const 20) (i32.const 0)))
    (i32.store (i32.const 40) (call $pwrite (i32.const 0) (i32.const 4) (i32.const -8)))
    (i32.store (i32.const 44) (call $rsize))
    (i32.store (i32.const 48) (i32.load (i32.const 1000)))
    (i32.store (i32.const 52) (i32.load (i32.const 2000)))
    (drop (call $pwrite (i32.const 8) (i32.const 60) (i32.const 0)))))
"""

START_ONLY_WAT = """
(module
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $pwrite (i32.const 0) (i32.const 8) (i32.const 0)))))
"""


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def run(coro: Any) -> Any:
    """asyncio.run in a thread of its own (Playwright's sync API holds the main loop)."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result(90)


# ----------------------------------------------------------------------------- the worker's JS


def node(script: str, *args: str) -> Any:
    """Run an ES module script under Node with ``hook-worker.mjs`` importable as ``W``;
    returns the JSON it prints."""
    if NODE is None:
        pytest.skip("node is not installed")
    code = f"import * as W from {json.dumps(HOOK_WORKER.as_uri())};\n{script}"
    proc = subprocess.run([NODE, "--input-type=module", "-e", code, "--", *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


HOST_PATTERNS = [
    ["example.com"], ["*.example.com"], ["example.com."], ["EXAMPLE.com"], ["127.0.0.1"],
    ["::1"], ["[::1]:8080"], ["127.0.0.1:9000"], ["*"], ["*example.com"], ["api.*.com"],
    [" example.com"], ["bücher.example"], ["*.bücher.example"], ["example.com:443"],
    ["[::1]"], ["0:0::1"], ["a_b.example"], ["-bad.example"], ["example.com:0"],
    ["example.com:99999"], ["*.127.0.0.1"], ["ex ample.com"], [], ["evil.com", "example.com"],
]
HOSTS = [
    ("example.com", 80), ("evilexample.com", 80), ("api.example.com", 443),
    ("a.b.example.com", 80), ("example.com.", 80), ("EXAMPLE.COM", 80), ("127.0.0.1", 80),
    ("127.0.0.1", 9000), ("[::1]", 8080), ("::1", 80), ("xn--bcher-kva.example", 80),
    ("bücher.example", 80), ("x.xn--bcher-kva.example", 80), ("example.com", 443),
    ("a_b.example", 80), ("1.2.3.4", 80), ("", 80), ("example.com", None),
    ("notexample.com", 80), ("example.com.evil.com", 80),
]


def test_hook_worker_admits_hosts_as_the_cpython_runner_does() -> None:
    from lockbox.formats.sync.hook.hosts import host_allowed

    cases = [[h, p, port, host_allowed(h, p, port=port)] for p in HOST_PATTERNS
             for h, port in HOSTS]
    assert any(c[3] for c in cases) and not all(c[3] for c in cases)
    differ = node("""
        const cases = JSON.parse(process.argv[1]);
        console.log(JSON.stringify(cases.filter(([h, p, port, want]) =>
          W.hostAllowed(h, p, port) !== want)));""", json.dumps(cases))
    assert differ == [], differ
    # the case, spelled out
    assert node("""console.log(JSON.stringify([
        W.hostAllowed("evilexample.com", ["example.com"], 80),
        W.hostAllowed("example.com", ["example.com"], 80),
        W.hostAllowed("api.example.com", ["*.example.com"], 443),
        W.hostAllowed("example.com", ["*.example.com"], 443)]));""") == [False, True, True,
                                                                        False]


RUN_IN_NODE = """
const [wasmB64, payloadB64, contextB64, limitsJson] = process.argv.slice(1);
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
try {
  const out = await W.runHook({ wasm: bytes(wasmB64), payload: bytes(payloadB64),
    context: contextB64 ? bytes(contextB64) : null, allowHosts: [],
    limits: JSON.parse(limitsJson) });
  console.log(JSON.stringify({ entry: out.entry, writtenSize: out.writtenSize,
    written: out.written ? Buffer.from(out.written).toString("base64") : null }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err.message || err),
                               refused: err instanceof W.HookRefused }));
}
"""

LIMITS = {"memoryBytes": 2 * 65536, "responseBytes": 1 << 20, "writeBytes": 100,
          "maxRequests": 8, "maxRedirects": 0, "wasmBytes": 1 << 20}


def run_in_node(module: bytes, payload: bytes = b"", context: bytes | None = None,
                **limits: int) -> dict[str, Any]:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    result: dict[str, Any] = node(RUN_IN_NODE, b64(module), b64(payload),
                                  b64(context) if context is not None else "",
                                  json.dumps({**LIMITS, **limits}))
    return result


def test_hook_worker_abi_bounds_memory_cap_and_write_buffer() -> None:
    out = run_in_node(wat(ABI_WAT), b"PAYLOAD-DATA", b'{"k":1}')
    assert out["entry"] == "run", out
    written = base64.b64decode(out["written"])
    assert written[:8] == bytes(8)  # the gap before the first write is zero-filled
    got = struct.unpack("<15i", written[8:68])
    assert got == (
        12,        # payload_size
        4,         # payload_read(2, 4): "YLOA"
        0,         # past the end: 0
        -1,        # the out buffer [65530, 65546) leaves the memory: -1
        -1,        # negative offset: -1
        7,         # context_size
        7,         # context_read: all of it
        1,         # memory.grow to 2 pages (the cap): the old size
        -1,        # memory.grow past the cap (its maximum was rewritten): -1
        -4,        # payload_write past the write cap (100 bytes): -4, nothing written
        -1,        # payload_write from a negative pointer: -1
        0,         # last_response_size before any request
        int.from_bytes(b"YLOA", "little"),
        int.from_bytes(b'{"k"', "little"),
        0,         # (not stored)
    ), got


def test_hook_worker_refuses_modules_outside_the_abi() -> None:
    wasi = wat("""(module (import "wasi_snapshot_preview1" "fd_write"
                     (func (param i32 i32 i32 i32) (result i32)))
                   (memory (export "memory") 1) (func (export "run")))""")
    out = run_in_node(wasi)
    assert out["refused"] and "WASI" in out["error"], out
    typed = wat("""(module (import "host" "payload_size" (func (result i64)))
                    (memory (export "memory") 1) (func (export "run")))""")
    out = run_in_node(typed)
    assert out["refused"] and "host.payload_size as () -> (i64)" in out["error"], out
    imported_memory = wat("""(module (import "host" "memory" (memory 1))
                              (func (export "run")))""")
    out = run_in_node(imported_memory)
    assert out["refused"] and "a memory" in out["error"], out
    big = wat("""(module (memory (export "memory") 3) (func (export "run")))""")
    out = run_in_node(big)
    assert out["refused"] and "over the hook's limit" in out["error"], out
    no_entry = wat("""(module (memory (export "memory") 1))""")
    assert "neither run() nor _start()" in run_in_node(no_entry)["error"]
    out = run_in_node(wat(FETCH_WAT))  # Node 20 has no JSPI: a fetching hook cannot run
    assert out["refused"] and "JSPI" in out["error"], out
    # _start runs, but what it wrote is discarded
    out = run_in_node(wat(START_ONLY_WAT))
    assert out == {"entry": "_start", "writtenSize": 8, "written": None}, out
    assert run_in_node(wat(ENDLESS_WAT), wasmBytes=10)["refused"]


# ----------------------------------------------------------------------------- test files


class HookServer:
    """A loopback HTTP server the hooks fetch from (another origin than the viewer's):
    ``/data.bin`` answers BODY (binary) with CORS for any origin; ``/moved`` redirects to
    it. ``requests``: (path, headers) of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.path, headers))
                if self.path == "/data.bin":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(BODY)))
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.end_headers()
                    self.wfile.write(BODY)
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/data.bin")
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


@pytest.fixture(scope="module")
def hook_server() -> Iterator[HookServer]:
    server = HookServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def manifest_toml(*, content_type: str, display_ext: str, created_at: datetime,
                  variant: str = "plain", ttl: int = 3600, timeout: int = 20,
                  allow_hosts: tuple[str, ...] = ()) -> bytes:
    from lockbox.formats.sync.manifest import Manifest

    m = Manifest.new(content_type=content_type, display_ext=display_ext,
                     created_by="e2e-suite", created_at=created_at, variant=variant, ttl=ttl,
                     timeout=timeout, allow_hosts=allow_hosts)
    data = m.data
    data["x-unknown"] = {"kept": "yes"}  # unknown tables are kept and shown
    return Manifest(data).to_toml()


def blake3(data: bytes) -> bytes:
    from lockbox.platform import default_crypto

    h = default_crypto().blake3()
    h.update(data)
    return h.digest()


@pytest.fixture(scope="module")
def sync_archives(archives: Archives, hook_server: HookServer) -> Archives:
    """The .sync files, next to the other archives (served by the viewer's server)."""
    from lockbox.formats.sync.manifest import Manifest
    from lockbox.formats.sync.signing import SigningKey, sign_manifest
    from lockbox.formats.sync.writer import write_sync_file

    now = datetime.now(UTC).replace(microsecond=0)
    fetch = wat(FETCH_WAT)

    def write(name: str, toml: bytes, payload: bytes, **kw: Any) -> None:
        path = archives.path(name)
        write_sync_file(path, manifest_toml=toml, payload=payload, **kw)
        path.chmod(0o644)

    key = SigningKey.from_seed(SIGNING_SEED)
    report = Manifest.parse(manifest_toml(content_type="text/csv", display_ext="csv",
                                          created_at=now - timedelta(minutes=5),
                                          allow_hosts=("127.0.0.1",)))
    signed = sign_manifest(report, blake3(CSV), key, now)
    write("report.csv.sync", signed.to_toml(), CSV, wasm=fetch,
          context=json.dumps(hook_server.url("/data.bin")).encode())
    write("denied.sync", manifest_toml(content_type="application/octet-stream",
                                       display_ext="bin", created_at=now,
                                       allow_hosts=("example.com", "bücher.example")),
          b"old payload", wasm=fetch, context=b'"http://evilexample.com/data.bin"')
    write("moved.sync", manifest_toml(content_type="application/octet-stream",
                                      display_ext="bin", created_at=now,
                                      allow_hosts=("127.0.0.1",)),
          b"old payload", wasm=fetch, context=json.dumps(hook_server.url("/moved")).encode())
    write("endless.sync", manifest_toml(content_type="text/plain", display_ext="txt",
                                        created_at=now, timeout=2),
          b"stays as it is\n", wasm=wat(ENDLESS_WAT))
    write("expired.sync", manifest_toml(content_type="application/json", display_ext=".json",
                                        created_at=now - timedelta(days=2), ttl=60),
          json.dumps(JSON_DOC, separators=(",", ":")).encode())
    tampered = sign_manifest(Manifest.parse(manifest_toml(
        content_type="text/plain", display_ext="txt", created_at=now)),
        blake3(b"another payload"), key, now)
    write("tampered.sync", tampered.to_toml(), b"this payload was not signed\n")
    import pyrage

    write("vault.sync", manifest_toml(content_type="text/plain", display_ext="txt",
                                      created_at=now, variant="vault"),
          pyrage.passphrase.encrypt(VAULT_TEXT, VAULT_PASS))
    write("pixel.sync", manifest_toml(content_type="image/png", display_ext="png",
                                      created_at=now), png(40, 30, (10, 160, 90)))
    write("big.sync", manifest_toml(content_type="application/octet-stream", display_ext="bin",
                                    created_at=now), big_payload(), wasm=fetch)
    return archives


BIG = 6 * 1024 * 1024  # over the viewer's CHECKED_PREVIEW_MAX: previewed by range


def big_payload() -> bytes:
    block = bytes((i * 7 + 3) % 256 for i in range(4096))
    return block * (BIG // len(block))


def payload_of(data: bytes) -> tuple[bytes, Any]:
    """(payload, manifest) of a .sync's bytes, read with CPython's zipfile (an independent
    reader) and our manifest parser."""
    from lockbox.formats.sync.manifest import Manifest

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.namelist()[:3] == ["manifest.toml", "payload", "sync.wasm"], z.namelist()
        assert z.getinfo("payload").compress_type == zipfile.ZIP_STORED
        return z.read("payload"), Manifest.parse(z.read("manifest.toml"))


# ----------------------------------------------------------------------------- the Python side


async def opened(path: Any, name: str | None = None) -> Any:
    from lockbox.sources import AsyncFileSource
    from lockbox.viewer.session import Session

    s = Session()
    probe = await s.open_source(AsyncFileSource(path), location=str(path),
                                name=name or path.name, kind="file")
    return s, probe


async def call(s: Any, method: str, extra: Any = None, **args: Any) -> Any:
    return json.loads(await s.call(method, json.dumps(args), extra))


async def drain(s: Any, handle: int) -> bytes:
    out = b""
    while True:
        piece = await s.call_binary("stream_next", json.dumps({"handle": handle}))
        assert not isinstance(piece, str), piece
        if not piece:
            return out
        out += piece


def test_session_shows_a_sync_and_builds_its_update(sync_archives: Archives,
                                                    tmp_path: Any) -> None:
    from lockbox.formats.sync.manifest import Manifest
    from lockbox.formats.sync.writer import rewrite_sync_file

    path = sync_archives.path("report.csv.sync")

    async def go() -> None:
        s, probe = await opened(path)
        assert (probe["format"], probe["encrypted"]) == ("sync", False)
        info = probe["info"]
        sync = info["sync"]
        assert sync["payload"]["path"] == "report.csv"  # report.csv.sync -> report.csv
        assert sync["payload"]["size"] == len(CSV) and sync["payload"]["preview"] == "csv"
        assert path.read_bytes()[sync["payload"]["offset"]:][:len(CSV)] == CSV
        assert sync["manifest"]["x-unknown"] == {"kept": "yes"}
        assert sync["fresh"]["expired"] is False and 0 < sync["fresh"]["expires_in_s"] <= 3600
        assert sync["hook"] == {"present": True, "timeout_s": 20, "allow_hosts": ["127.0.0.1"]}
        assert sync["signature"]["checked"] is False  # checked on request (it reads the payload)
        assert (await call(s, "ls", path=""))["ok"]["names"] == ["report.csv"]
        assert await s.call_binary("read", json.dumps({"path": "report.csv"})) == CSV
        sig = (await call(s, "sync_signature"))["ok"]
        assert sig["kind"] == "embedded" and sig["valid"] is True, sig
        plan = (await call(s, "sync_hook_plan"))["ok"]
        assert plan["effective_hosts"] == ["127.0.0.1"] and plan["limits"]["timeout_ms"] == 20_000
        assert (await call(s, "sync_hook_plan", grants=["example.com"]))["ok"][
            "effective_hosts"] == []
        assert await s.call_binary("sync_entry", json.dumps({"name": "sync.wasm"})) == \
            wat(FETCH_WAT)
        # the updated .sync: the bytes lockbox sync update's rewrite gives
        new = b"\xc8\x00\x00\x00" + BODY
        when = "2026-12-04T17:00:00Z"
        opened_update = (await call(s, "sync_update", new, now=when))["ok"]
        assert opened_update["name"] == "report.csv.sync" and opened_update["signature_removed"]
        data = await drain(s, opened_update["handle"])
        copy = tmp_path / "report.csv.sync"
        shutil.copyfile(path, copy)
        with zipfile.ZipFile(path) as z:
            old = Manifest.parse(z.read("manifest.toml"))
        from lockbox.formats.sync.manifest import parse_timestamp

        rewrite_sync_file(copy, manifest_toml=old.mark_fresh(parse_timestamp(when)).to_toml(),
                          payload=new)
        assert data == copy.read_bytes()
        payload, manifest = payload_of(data)
        assert payload == new and manifest.created_at_text == when
        assert manifest.signature is None
        await s.close()

    run(go())


def test_session_vault_asks_for_the_passphrase(sync_archives: Archives) -> None:
    async def go() -> None:
        s, probe = await opened(sync_archives.path("vault.sync"))
        assert probe["encrypted"] and probe["methods"] == ["passphrase"]
        assert probe["sync"]["vault"] is True and probe["sync"]["payload"]["path"] == "vault.txt"
        wrong = await call(s, "unlock", password="not it")
        assert wrong["error"]["kind"] == "wrong_key", wrong
        assert wrong["error"]["message"] == ("This passphrase does not decrypt the vault's "
                                             "payload. Check it and try again.")
        assert (await call(s, "ls", path=""))["error"]["message"] == "the archive is not unlocked"
        info = (await call(s, "unlock", password=VAULT_PASS))["ok"]
        assert info["sync"]["payload"]["path"] == "vault.txt"
        assert await s.call_binary("read", json.dumps({"path": "vault.txt"})) == VAULT_TEXT
        plan = await call(s, "sync_hook_plan")
        assert plan["error"]["kind"] == "usage"  # no hook (and a vault's runs on the CLI)
        await s.close()

    run(go())


def test_session_signature_mismatch_expiry_and_preview_kinds(sync_archives: Archives) -> None:
    from lockbox.viewer.sync import preview_kind

    async def go() -> None:
        s, probe = await opened(sync_archives.path("tampered.sync"))
        sig = (await call(s, "sync_signature"))["ok"]
        assert (sig["kind"], sig["valid"], sig["reason"]) == (
            "embedded", False, "payload hash mismatch"), sig
        await s.close()
        s, probe = await opened(sync_archives.path("expired.sync"))
        sync = probe["info"]["sync"]
        assert sync["fresh"]["expired"] is True and sync["fresh"]["expires_in_s"] == 0
        assert sync["payload"]["path"] == "expired.json"  # display_ext ".json": dot dropped
        assert sync["signature"] == {"kind": "none", "valid": False, "signer": None,
                                     "reason": None, "checked": True}
        assert (await call(s, "sync_hook_plan"))["error"]["kind"] == "usage"  # the stub
        await s.close()

    run(go())
    assert [preview_kind(t) for t in (
        "text/csv", "application/json; charset=utf-8", "application/ld+json", "text/plain",
        "image/svg+xml", "application/pdf", "application/octet-stream", "text/tab-separated-values",
        "video/mp4")] == ["csv", "json", "json", "text", "image", "pdf", "binary", "tsv", "video"]


def test_browser_limits_are_the_cpython_runners() -> None:
    from dataclasses import asdict

    from lockbox.formats.sync.hook.runner import HookLimits
    from lockbox.viewer.sync import hook_limits

    page = asdict(hook_limits(30))
    cpython = asdict(HookLimits())
    assert page.pop("max_redirects") == 0  # a page cannot re-check a redirect's host
    cpython.pop("max_redirects")
    assert page == cpython


# ----------------------------------------------------------------------------- in Chromium


def open_sync(viewer: Viewer, url: str, first_name: str) -> None:
    """Open ``url`` in the viewer already started (by its #url= link: no page reload)."""
    viewer.page.evaluate("h => { location.hash = h; }", deep_link(url))
    viewer.wait_listing(first_name)
    viewer.page.wait_for_selector("#sync-panel:not([hidden])")


def run_hook(viewer: Viewer) -> str:
    """Click "Run update hook" and wait for its end; returns body[data-hook]."""
    page = viewer.page
    page.click("#btn-hook-run")
    page.wait_for_selector("body[data-hook=done], body[data-hook=failed]", timeout=60_000)
    return str(page.get_attribute("body", "data-hook"))


def downloaded(viewer: Viewer, selector: str) -> bytes:
    with viewer.page.expect_download() as info:
        viewer.page.click(selector)
    return Path(info.value.path()).read_bytes()


def test_sync_by_url_panel_preview_signature_and_hook(
        viewer: Viewer, server: str, sync_archives: Archives, hook_server: HookServer,
        tmp_path: Path) -> None:
    from lockbox.formats.sync.hook.update import update_sync_file

    url = f"{server}/archives/report.csv.sync"
    # a cookie the hook's server would get if the hook's requests carried credentials
    viewer.context.add_cookies([{"name": "session", "value": "must-not-leak",
                                 "url": hook_server.url("/")}])
    viewer.goto()
    viewer.wait_python()
    page = viewer.page
    mark = len(viewer.requests)
    open_sync(viewer, url, "report.csv")
    # the payload, previewed by its content_type (text/csv): a table
    page.wait_for_selector("table.csv-preview")
    assert page.eval_on_selector_all("table.csv-preview th", "c => c.map(e => e.textContent)") \
        == ["name", "count"]
    assert page.eval_on_selector_all(
        "table.csv-preview tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    ) == [["alpha", "1"], ["b, quoted", "2"], ["multi\nline", "3"]]
    # freshness, signature (checked in the page: BLAKE3 + Ed25519 of the crypto bundle)
    assert page.text_content("#sync-fresh").startswith("Fresh: expires in")
    page.wait_for_function("document.getElementById('sync-sig').dataset.state !== 'warn'")
    assert page.text_content("#sync-sig") == "Signed (embedded): valid"
    facts = page.text_content("#sync-facts")
    size = sync_archives.path("report.csv.sync").stat().st_size
    with zipfile.ZipFile(sync_archives.path("report.csv.sync")) as z:
        info = z.getinfo("payload")
        offset = info.header_offset + 30 + len(b"payload") + len(info.extra)
    assert f"offset {offset:,}, {len(CSV)} bytes" in facts and "text/csv" in facts
    page.click("#sync-manifest summary")
    tables = page.text_content("#sync-tables")
    assert "[x-unknown]" in tables and "kept" in tables and "[signature]" in tables
    got = viewer.archive_requests(url, since=mark)
    fetched = sum(r.body_bytes for r in got)
    print(f"\n[e2e] {size:,}-byte .sync opened, previewed and its signature checked: "
          f"{len(got)} requests, {fetched:,} bytes")
    assert got and all(r.status == 206 for r in got), [(r.status, r.failed) for r in got]
    # a small .sync: the registry's first 16 KiB hold all of it: one request, read once
    assert (len(got), fetched) == (1, size), [(r.url, r.body_bytes) for r in got]
    # the update hook: fetches BODY from the loopback server (another origin, CORS)
    before = hook_server.hits("/data.bin")
    assert run_hook(viewer) == "done", page.text_content("#sync-hook-status")
    assert hook_server.hits("/data.bin") == before + 1
    _, headers = [r for r in hook_server.requests if r[0] == "/data.bin"][-1]
    assert "cookie" not in headers and "authorization" not in headers, headers
    assert "referer" not in headers
    log = page.text_content("#sync-hook-log")
    assert f"GET {hook_server.url('/data.bin')} → HTTP 200" in log, log
    status = page.text_content("#sync-hook-status")
    print(f"[e2e] hook run in the page: {status}")
    data = downloaded(viewer, "#btn-hook-download")
    payload, manifest = payload_of(data)
    assert payload == struct.pack("<i", 200) + BODY
    assert manifest.signature is None and not manifest.is_expired(datetime.now(UTC))
    # the same bytes as `lockbox sync update` on CPython at the same time
    copy = tmp_path / "report.csv.sync"
    shutil.copyfile(sync_archives.path("report.csv.sync"), copy)
    report = update_sync_file(copy, now=manifest.created_at)
    assert report.updated and copy.read_bytes() == data
    # the archive on the server is not changed by the page
    assert payload_of(sync_archives.path("report.csv.sync").read_bytes())[0] == CSV
    assert viewer.origins() <= {server, f"http://127.0.0.1:{hook_server.port}"}
    assert not [c for c in viewer.console if c.startswith(("pageerror", "error"))], viewer.console


def test_sync_hooks_denied_redirected_and_endless(
        viewer: Viewer, server: str, sync_archives: Archives, hook_server: HookServer) -> None:
    viewer.goto()
    viewer.wait_python()
    page = viewer.page
    # allow_hosts = ["example.com"]: evilexample.com is -2 inside the guest, no request made
    open_sync(viewer, f"{server}/archives/denied.sync", "denied.bin")
    # an IDNA pattern goes through hooks/hosts.py in Pyodide too (the site ships idna)
    assert page.eval_on_selector_all("#sync-hosts-list label", "ls => ls.map(l => l.textContent)") \
        == ["example.com", "bücher.example"]
    hits = len(hook_server.requests)
    assert run_hook(viewer) == "done", page.text_content("#sync-hook-status")
    assert "→ -2 (host not allowed)" in page.text_content("#sync-hook-log")
    payload, _ = payload_of(downloaded(viewer, "#btn-hook-download"))
    assert payload == struct.pack("<i", -2)
    # a redirect cannot be re-checked by a page: refused (-3), its target never fetched
    open_sync(viewer, f"{server}/archives/moved.sync", "moved.bin")
    assert run_hook(viewer) == "done", page.text_content("#sync-hook-status")
    payload, _ = payload_of(downloaded(viewer, "#btn-hook-download"))
    assert payload == struct.pack("<i", -3)
    assert [p for p, _ in hook_server.requests[hits:]] == ["/moved"]
    # an endless guest: the worker is terminated at policy.timeout (2 s); nothing changes
    open_sync(viewer, f"{server}/archives/endless.sync", "endless.txt")
    page.wait_for_selector(".text-preview")
    assert run_hook(viewer) == "failed"
    status = page.text_content("#sync-hook-status")
    assert "stopped after its time limit (2 s, policy.timeout)" in status and \
        "Nothing changed" in status, status
    assert page.is_hidden("#btn-hook-download")
    assert page.text_content(".text-preview") == "stays as it is\n"
    assert payload_of(sync_archives.path("endless.sync").read_bytes())[0] == b"stays as it is\n"
    # the page is alive and Python still answers
    page.click("#btn-info")
    page.wait_for_selector("#dlg-info[open]")
    assert ".sync container" in page.text_content("#dlg-info")
    page.click("#dlg-info .dlg-close")
    assert not [c for c in viewer.console if c.startswith(("pageerror", "error"))], viewer.console


def test_sync_expired_json_and_a_signature_that_does_not_verify(
        viewer: Viewer, server: str, sync_archives: Archives) -> None:
    viewer.goto()
    viewer.wait_python()
    page = viewer.page
    open_sync(viewer, f"{server}/archives/expired.sync", "expired.json")
    assert page.text_content("#sync-fresh").startswith("Expired")
    assert page.get_attribute("#sync-fresh", "data-state") == "bad"
    assert page.text_content("#sync-sig") == "Unsigned"
    pre = page.wait_for_selector("pre.json-preview")
    assert pre.text_content() == json.dumps(JSON_DOC, indent=2)
    assert page.is_hidden("#sync-hook")  # sync.wasm is the stub: no hook
    # a large payload: opened and previewed by range, never fetched whole
    url = f"{server}/archives/big.sync"
    mark = len(viewer.requests)
    open_sync(viewer, url, "big.bin")
    page.wait_for_selector("pre.hex")
    got = viewer.archive_requests(url, since=mark)
    fetched = sum(r.body_bytes for r in got)
    print(f"\n[e2e] {BIG:,}-byte .sync payload: open + hex preview = {len(got)} requests, "
          f"{fetched:,} bytes ({sequential_round_trips(got)} sequential)")
    assert fetched < 256 * 1024, fetched
    assert "Not checked yet" in page.text_content(".unchecked")
    assert page.text_content("pre.hex").startswith("00000000  03 0a 11 18")
    open_sync(viewer, f"{server}/archives/tampered.sync", "tampered.txt")
    page.wait_for_function("document.getElementById('sync-sig').dataset.state === 'bad'")
    assert page.text_content("#sync-sig") == "Signature does not verify: payload hash mismatch"
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == "this payload was not signed\n"


def test_sync_vault_passphrase_and_a_dropped_image(
        viewer: Viewer, server: str, sync_archives: Archives) -> None:
    viewer.goto(deep_link(f"{server}/archives/vault.sync"))
    page = viewer.page
    page.wait_for_selector("#password:visible", timeout=PYTHON_START_MS)
    assert page.text_content("#password-label") == "Passphrase"
    assert "an age vault" in page.text_content("#unlock-meta")
    page.fill("#password", "not the passphrase")
    page.press("#password", "Enter")
    page.wait_for_selector("#unlock-error:visible", timeout=60_000)
    assert page.text_content("#unlock-error") == (
        "Wrong passphrase: This passphrase does not decrypt the vault's payload. Check it and "
        "try again."), page.text_content("#unlock-error")
    assert page.is_visible("#password")  # asked again
    page.fill("#password", VAULT_PASS)
    page.press("#password", "Enter")
    viewer.wait_listing("vault.txt")
    page.wait_for_selector(".text-preview")
    assert page.text_content(".text-preview") == VAULT_TEXT.decode()
    assert "age passphrase; decrypted in this page" in page.text_content("#sync-facts")
    # the payload downloads like any file (the plaintext, under its display name)
    with page.expect_download() as info:
        page.click("#btn-download")
    assert info.value.suggested_filename == "vault.txt"
    assert Path(info.value.path()).read_bytes() == VAULT_TEXT
    # nothing secret left the page
    for r in viewer.requests:
        assert VAULT_PASS not in r.url and VAULT_PASS not in json.dumps(r.headers)
    # a local file, dropped: nothing of it goes over the network
    data = sync_archives.path("pixel.sync").read_bytes()
    transfer = page.evaluate_handle(
        """(bytes) => { const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array(bytes)], "pixel.sync"));
             return dt; }""", list(data))
    mark = len(viewer.requests)
    page.dispatch_event("#drop" if page.is_visible("#drop") else "body", "drop",
                        {"dataTransfer": transfer})
    viewer.wait_listing("pixel.png")
    img = page.wait_for_selector("img.media")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [40, 30]
    assert not [r for r in viewer.requests[mark:] if "/archives/" in r.url]


def test_session_reads_a_foreign_zip_and_updates_it_as_the_cli_does(tmp_path: Path) -> None:
    """A .sync written by CPython's zipfile (a deflated manifest with unknown keys, a
    deflated context.json, entry times and a ZIP comment of its own): shown, read, and its
    update built with the same bytes as ``rewrite_sync_file`` gives."""
    from lockbox.formats.sync.manifest import Manifest, parse_timestamp
    from lockbox.formats.sync.writer import rewrite_sync_file

    now = datetime.now(UTC).replace(microsecond=0)
    toml = manifest_toml(content_type="text/plain", display_ext="txt", created_at=now,
                         allow_hosts=("example.com",))
    path = tmp_path / "notes.sync"
    with zipfile.ZipFile(path, "w") as z:
        z.comment = b"written by zipfile"
        z.writestr(zipfile.ZipInfo("manifest.toml", (2024, 5, 6, 7, 8, 10)), toml,
                   compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("payload", (2024, 5, 6, 7, 8, 12)), b"foreign payload\n")
        z.writestr("sync.wasm", wat(ENDLESS_WAT))
        z.writestr("context.json", b'{"note": "' + b"x" * 500 + b'"}',
                   compress_type=zipfile.ZIP_DEFLATED)

    async def go() -> None:
        s, probe = await opened(path)
        sync = probe["info"]["sync"]
        assert sync["payload"]["path"] == "notes.txt"
        assert sync["manifest"]["x-unknown"] == {"kept": "yes"}
        methods = {e["name"]: e["method"] for e in sync["entries"]}
        assert methods == {"manifest.toml": "deflate", "payload": "stored",
                           "sync.wasm": "stored", "context.json": "deflate"}
        assert await s.call_binary("read", json.dumps({"path": "notes.txt"})) == \
            b"foreign payload\n"
        assert (await call(s, "sync_hook_plan"))["ok"]["effective_hosts"] == ["example.com"]
        when = "2026-12-04T18:00:00Z"
        update = (await call(s, "sync_update", b"new payload", now=when))["ok"]
        data = await drain(s, update["handle"])
        await s.close()
        rewrite_sync_file(path, manifest_toml=Manifest.parse(toml).mark_fresh(
            parse_timestamp(when)).to_toml(), payload=b"new payload")
        assert data == path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.comment == b"written by zipfile"
            assert z.getinfo("context.json").compress_type == zipfile.ZIP_DEFLATED
            assert z.read("payload") == b"new payload"

    run(go())
