"""``lockbox sync ...`` end to end (issue 9's "Must show" through the CLI): .sync files
written by an INDEPENDENT ZIP writer (CPython's zipfile) inspected and read; ``sync pack``
output read back with zipfile in sync-rs's layout; WAT hooks compiled here run by
``sync update`` against a real loopback HTTP server (an allowed host, a denied
``evilexample.com``, an endless loop); signatures of both schemes failing on a flipped
payload byte; vaults; HTTP by range; exact ``--json``."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import json
import os
import struct
import subprocess
import sys
import time
import tomllib
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from cli_helpers import Runner, one_line_error, static_server
from lockbox import __version__, cli, cli_sync

UTC = dt.UTC
STUB = b"\0asm\x01\0\0\0"
FIXED = (2026, 1, 2, 3, 4, 6)  # ZIP entry times of the independent writer
PAYLOAD_CSV = b"city,temp\nParis,11\nOslo,-3\n"


def run_lockbox(*argv: str | os.PathLike[str], env: dict[str, str] | None = None,
                stdin: bytes | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess[bytes]:
    """A real ``python -m lockbox`` process; no LOCKBOX_* variables but those in ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOCKBOX_")}
    return subprocess.run([sys.executable, "-m", "lockbox", *map(os.fspath, argv)],
                          env={**base, **(env or {})},
                          input=stdin if stdin is not None else b"", capture_output=True,
                          timeout=timeout, check=False)


@pytest.fixture(autouse=True)
def no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret anywhere; a 'terminal' whose prompt fails the test unless a test scripts
    it."""
    for name in ("LOCKBOX_PASSWORD", "LOCKBOX_PASSPHRASE", "LOCKBOX_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.setattr(cli, "_stdin_tty", lambda: True)

    def asked(prompt: str = "") -> str:
        raise AssertionError(f"prompted: {prompt!r}")

    monkeypatch.setattr(cli.getpass, "getpass", asked)


def script_prompts(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """The terminal answers these, in order; returns the prompts seen."""
    seen: list[str] = []
    queue = list(answers)

    def answer(prompt: str = "") -> str:
        seen.append(prompt)
        if not queue:
            raise AssertionError(f"prompted once too often: {prompt!r}")
        return queue.pop(0)

    monkeypatch.setattr(cli.getpass, "getpass", answer)
    return seen


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    return Runner(capsysbinary)


@pytest.fixture
def cheap_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vaults written in-process with scrypt 2^10 instead of age's 2^18 (0.9 s each)."""
    from lockbox.formats.sync import vault

    monkeypatch.setattr(vault, "encrypt_vault",
                        functools.partial(vault.encrypt_vault, scrypt_log_n=10))


# -- an independent .sync writer (CPython's zipfile) and plain-ZIP reading -------------


def manifest_text(*, created_at: str = "2026-01-02T03:04:05Z", ttl: int = 3600,
                  timeout: int = 30, allow_hosts: tuple[str, ...] = (),
                  content_type: str = "text/csv", display_ext: str = "csv",
                  extra: str = "") -> str:
    hosts = ", ".join(json.dumps(h) for h in allow_hosts)
    return (f'[sync]\nversion = "1.2"\ncontent_type = "{content_type}"\n'
            f'display_ext = "{display_ext}"\nvariant = "plain"\nx_future_key = "kept"\n\n'
            f'[meta]\ncreated_by = "independent-writer"\ncreated_at = "{created_at}"\n'
            f'hash_algo = "blake3"\n\n'
            f'[policy]\nttl = {ttl}\ntimeout = {timeout}\n\n'
            f'[permissions]\nallow_hosts = [{hosts}]\nallow_env = []\n\n'
            f'[x_vendor]\nnote = "unknown table"\nlevel = 3\n{extra}')


def write_independent(path: Path, manifest: str, payload: bytes, *,
                      wasm: bytes = STUB, context: bytes | None = None) -> Path:
    """A .sync by CPython's zipfile: DEFLATE manifest, STORED payload, sync-rs's order."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("manifest.toml", FIXED), manifest.encode(),
                   compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("payload", FIXED), payload, compress_type=zipfile.ZIP_STORED)
        z.writestr(zipfile.ZipInfo("sync.wasm", FIXED), wasm, compress_type=zipfile.ZIP_STORED)
        if context is not None:
            z.writestr(zipfile.ZipInfo("context.json", FIXED), context,
                       compress_type=zipfile.ZIP_DEFLATED)
    return path


def data_offset(path: Path, name: str) -> tuple[int, int]:
    """(offset, size) of an entry's data, found through its LOCAL header, by hand."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    raw = path.read_bytes()
    sig, = struct.unpack_from("<I", raw, info.header_offset)
    assert sig == 0x04034B50
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def payload_of(path: Path) -> bytes:
    offset, size = data_offset(path, "payload")
    return path.read_bytes()[offset:offset + size]


def flip_payload_byte(path: Path, index: int = 0, *, fix_crc: bool) -> None:
    """Flip one payload byte; with ``fix_crc`` also patch both CRC-32 fields so that only
    a signature can tell."""
    offset, size = data_offset(path, "payload")
    raw = bytearray(path.read_bytes())
    raw[offset + index] ^= 0x01
    if fix_crc:
        crc = zlib.crc32(bytes(raw[offset:offset + size]))
        with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
            info = z.getinfo("payload")
        struct.pack_into("<I", raw, info.header_offset + 14, crc)
        for pos in _central_records(raw):
            if raw[pos + 46:pos + 46 + 7] == b"payload":
                struct.pack_into("<I", raw, pos + 16, crc)
    path.write_bytes(bytes(raw))


def _central_records(raw: bytearray) -> Iterator[int]:
    eocd = raw.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack_from("<HII", raw, eocd + 10)
    pos = cd_offset
    for _ in range(count):
        assert raw[pos:pos + 4] == b"PK\x01\x02"
        yield pos
        n, m, k = struct.unpack_from("<HHH", raw, pos + 28)
        pos += 46 + n + m + k


# -- WAT hooks -------------------------------------------------------------------------

IMPORTS = """
  (import "host" "http_request" (func $http (param i32 i32 i32 i32) (result i32)))
  (import "host" "last_response_size" (func $rsize (result i32)))
  (import "host" "last_response_read" (func $rread (param i32 i32) (result i32)))
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
"""


def _wat_string(text: str) -> str:
    return "".join(f"\\{b:02x}" for b in text.encode())


def fetch_hook(url: str) -> bytes:
    """GET url; on 200 the body becomes the new payload; otherwise trap."""
    n = len(url.encode())
    return bytes(wasmtime.wat2wasm(f"""(module {IMPORTS}
  (memory (export "memory") 4)
  (data (i32.const 0) "GET")
  (data (i32.const 16) "{_wat_string(url)}")
  (func (export "run") (local $n i32)
    (if (i32.ne (call $http (i32.const 16) (i32.const {n}) (i32.const 0) (i32.const 3))
                (i32.const 200)) (then unreachable))
    (local.set $n (call $rread (i32.const 65536) (i32.const 131072)))
    (drop (call $pwrite (i32.const 0) (local.get $n) (i32.const 65536)))))"""))


def status_hook(url: str) -> bytes:
    """GET url; the new payload is the status http_request returned, i32 little-endian."""
    n = len(url.encode())
    return bytes(wasmtime.wat2wasm(f"""(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "GET")
  (data (i32.const 16) "{_wat_string(url)}")
  (func (export "run")
    (i32.store (i32.const 1024)
      (call $http (i32.const 16) (i32.const {n}) (i32.const 0) (i32.const 3)))
    (drop (call $pwrite (i32.const 0) (i32.const 4) (i32.const 1024)))))"""))


ECHO_HOOK = bytes(wasmtime.wat2wasm("""(module
  (import "host" "payload_size" (func $psize (result i32)))
  (import "host" "payload_read" (func $pread (param i32 i32 i32) (result i32)))
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (local $n i32)
    (local.set $n (call $psize))
    (drop (call $pread (i32.const 0) (local.get $n) (i32.const 0)))
    (i32.store8 (local.get $n) (i32.const 33))
    (drop (call $pwrite (i32.const 0) (i32.add (local.get $n) (i32.const 1))
                        (i32.const 0)))))"""))
"""The new payload is the old one (as the hook reads it) and "!"."""

CONTEXT_HOOK = bytes(wasmtime.wat2wasm("""(module
  (import "host" "context_size" (func $csize (result i32)))
  (import "host" "context_read" (func $cread (param i32 i32 i32) (result i32)))
  (import "host" "payload_write" (func $pwrite (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (local $n i32)
    (local.set $n (call $cread (i32.const 0) (call $csize) (i32.const 0)))
    (drop (call $pwrite (i32.const 0) (local.get $n) (i32.const 0)))))"""))
"""The new payload is context.json (our extension's imports)."""

ENDLESS_HOOK = bytes(wasmtime.wat2wasm(
    '(module (memory (export "memory") 1) (func (export "run") (loop $l (br $l))))'))


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "report.csv"
    p.write_bytes(PAYLOAD_CSV)
    return p


@pytest.fixture
def independent(tmp_path: Path) -> Path:
    return write_independent(tmp_path / "weather.sync", manifest_text(), PAYLOAD_CSV,
                             context=b'{"city": "Paris"}')


def inspect_json(run: Runner, location: str | Path) -> dict[str, Any]:
    return json.loads(run.ok("sync", "inspect", location, "--json").out)


# -- Must show 1: an independent writer's .sync inspects and cats -----------------------


def test_independent_sync_inspects_and_cats(run: Runner, independent: Path) -> None:
    info = inspect_json(run, independent)
    offset, size = data_offset(independent, "payload")
    assert info["payload"] == {"name": "weather.csv", "offset": offset, "size": size}
    assert size == len(PAYLOAD_CSV)
    m = info["manifest"]
    assert m["sync"]["x_future_key"] == "kept"          # unknown keys are shown
    assert m["x_vendor"] == {"note": "unknown table", "level": 3}
    assert m["meta"]["created_by"] == "independent-writer"
    assert [e["name"] for e in info["entries"]] == ["manifest.toml", "payload", "sync.wasm",
                                                    "context.json"]
    assert info["entries"][0]["method"] == "DEFLATE"
    assert info["entries"][1]["data_offset"] == offset
    assert info["signature"]["kind"] == "none"
    assert run.ok("sync", "cat", independent).out == PAYLOAD_CSV
    text = run.ok("sync", "inspect", independent).text
    assert "weather.csv" in text and f"at offset {offset}" in text
    assert 'x_future_key = "kept"' in text


def test_inspect_shows_toml_dates_of_unknown_keys(run: Runner, tmp_path: Path) -> None:
    path = write_independent(tmp_path / "d.sync",
                             manifest_text(extra="seen = 2026-03-04T05:06:07Z\n"), b"x")
    info = inspect_json(run, path)
    assert info["manifest"]["x_vendor"]["seen"] == "2026-03-04T05:06:07+00:00"
    assert "seen = 2026-03-04 05:06:07+00:00" in run.ok("sync", "inspect", path).text


# -- Must show 2: `sync pack` output in sync-rs's layout, read by zipfile ----------------


def test_pack_output_is_sync_rs_layout(run: Runner, csv_file: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text('{"k": 1}')
    out = tmp_path / "report.csv.sync"
    run.ok("sync", "pack", csv_file, "-o", out, "--context", ctx, "--ttl", "60",
           "--allow-host", "api.example.com", "--allow-host", "*.example.org")
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        names = [i.filename for i in z.infolist()]
        assert names == ["manifest.toml", "payload", "sync.wasm", "context.json"]
        assert z.getinfo("payload").compress_type == zipfile.ZIP_STORED
        assert z.read("sync.wasm") == STUB
        assert z.read("context.json") == b'{"k": 1}'
        manifest = tomllib.loads(z.read("manifest.toml").decode())
    assert payload_of(out) == PAYLOAD_CSV
    assert manifest["sync"] == {"version": "1.2", "content_type": "text/csv",
                                "display_ext": "csv", "variant": "plain"}
    assert manifest["meta"]["created_by"] == f"lockbox {__version__}"
    assert manifest["meta"]["hash_algo"] == "blake3"
    created = dt.datetime.fromisoformat(manifest["meta"]["created_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(UTC) - created).total_seconds()) < 300
    assert manifest["policy"] == {"ttl": 60, "timeout": 30}
    assert manifest["permissions"]["allow_hosts"] == ["api.example.com", "*.example.org"]
    assert "signature" not in manifest
    info = inspect_json(run, out)
    assert info["payload"]["name"] == "report.csv"
    assert info["payload"]["offset"] == data_offset(out, "payload")[0]


def test_pack_options_and_refusals(run: Runner, tmp_path: Path) -> None:
    blob = tmp_path / "notes"
    blob.write_bytes(b"\x00\x01binary")
    out = tmp_path / "notes.sync"
    run.ok("sync", "pack", blob, "-o", out)
    with zipfile.ZipFile(out) as z:
        m = tomllib.loads(z.read("manifest.toml").decode())
    assert (m["sync"]["content_type"], m["sync"]["display_ext"]) == (
        "application/octet-stream", "bin")
    line = one_line_error(run("sync", "pack", blob, "-o", out), 9)
    assert "already exists" in line
    run.ok("sync", "pack", blob, "-o", out, "--force", "--content-type", "text/x-note",
           "--display-ext", ".txt", "--variant", "data")
    with zipfile.ZipFile(out) as z:
        m = tomllib.loads(z.read("manifest.toml").decode())
    assert m["sync"]["content_type"] == "text/x-note"
    assert m["sync"]["display_ext"] == ".txt"
    assert m["sync"]["variant"] == "data"
    assert inspect_json(run, out)["payload"]["name"] == "notes.txt"  # leading dot dropped
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm")
    assert "WebAssembly" in one_line_error(
        run("sync", "pack", blob, "-o", tmp_path / "x.sync", "--wasm", bad), 2)
    ctx = tmp_path / "ctx.json"
    ctx.write_text("{oops")
    assert "JSON" in one_line_error(
        run("sync", "pack", blob, "-o", tmp_path / "y.sync", "--context", ctx), 2)
    assert not (tmp_path / "x.sync").exists() and not (tmp_path / "y.sync").exists()
    assert run("sync", "pack", blob, "-o", tmp_path / "z.sync", "--ttl", "-1").rc == 2


# -- Must show 3-5: the hook, through `sync update` -------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    with static_server(root) as url:
        yield url, root


def test_update_fetches_from_an_allowed_loopback_host(run: Runner, served: tuple[str, Path],
                                                      csv_file: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = served
    fresh = bytes(range(256)) * 40 + b"\r\n\0binary-safe"
    (root / "latest.bin").write_bytes(fresh)
    hook = tmp_path / "hook.wasm"
    hook.write_bytes(fetch_hook(f"{url}/latest.bin"))
    out = tmp_path / "report.csv.sync"
    packed_at = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    with monkeypatch.context() as m:
        m.setattr(cli_sync, "_now", lambda: packed_at)
        run.ok("sync", "pack", csv_file, "-o", out, "--wasm", hook, "--allow-host",
               "127.0.0.1", "--ttl", "100")
    before = inspect_json(run, out)
    assert before["expired"] is True
    r = run.ok("sync", "update", out)
    assert f"{url}/latest.bin" in r.text and "200" in r.text
    assert f"new payload {len(fresh):,} bytes" in r.text
    assert run.ok("sync", "cat", out).out == fresh
    after = inspect_json(run, out)
    assert after["expired"] is False
    assert after["expires_at"] > before["expires_at"]   # marked fresh
    assert after["manifest"]["policy"] == before["manifest"]["policy"]
    with zipfile.ZipFile(out) as z:                       # still sync-rs's layout
        assert [i.filename for i in z.infolist()][:3] == ["manifest.toml", "payload",
                                                          "sync.wasm"]
        assert z.read("sync.wasm") == hook.read_bytes()


def test_update_grants_narrow_the_manifest(run: Runner, served: tuple[str, Path],
                                           csv_file: Path, tmp_path: Path) -> None:
    url, root = served
    (root / "latest.bin").write_bytes(b"new")
    hook = tmp_path / "hook.wasm"
    hook.write_bytes(status_hook(f"{url}/latest.bin"))
    out = tmp_path / "r.sync"
    run.ok("sync", "pack", csv_file, "-o", out, "--wasm", hook, "--allow-host", "127.0.0.1")
    run.ok("sync", "update", out, "--allow-host", "example.com")   # not granted: -2
    assert struct.unpack("<i", payload_of(out)) == (-2,)
    run.ok("sync", "update", out, "--allow-host", "127.0.0.1")
    assert struct.unpack("<i", payload_of(out)) == (200,)


def test_guest_sees_minus_2_for_evilexample(run: Runner, csv_file: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "evil.sync"
    hook = tmp_path / "evil.wasm"
    statuses = []
    for target in ("http://evilexample.com/", "https://evilexample.com/x",
                   "http://example.com.evil.net/", "http://notexample.com/"):
        hook.write_bytes(status_hook(target))
        run.ok("sync", "pack", csv_file, "-o", out, "--force", "--wasm", hook,
               "--allow-host", "example.com")
        r = run.ok("sync", "update", out)
        assert "host not allowed" in r.text
        statuses.append(struct.unpack("<i", payload_of(out))[0])
    assert statuses == [-2, -2, -2, -2]


def test_endless_guest_dies_in_time_and_the_payload_is_untouched(csv_file: Path,
                                                                  tmp_path: Path) -> None:
    hook = tmp_path / "endless.wasm"
    hook.write_bytes(ENDLESS_HOOK)
    out = tmp_path / "endless.sync"
    assert run_lockbox("sync", "pack", csv_file, "-o", out, "--wasm", hook,
                       "--timeout", "1").returncode == 0
    before = out.read_bytes()
    started = time.monotonic()
    p = run_lockbox("sync", "update", out, timeout=60)   # hang guard only
    elapsed = time.monotonic() - started
    err = p.stderr.decode()
    assert p.returncode not in (0, 1), err
    assert len(err.splitlines()) == 1 and err.startswith("lockbox: "), err
    assert "Traceback" not in err
    assert "time" in err.lower()
    assert out.read_bytes() == before
    assert not [n for n in os.listdir(tmp_path) if n not in ("endless.wasm", "endless.sync",
                                                             "report.csv")]
    assert elapsed < 30  # generous: the guarantee (timeout + 1 s) is B's test


def test_update_of_a_vault_and_the_context(run: Runner, csv_file: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           cheap_vault: None) -> None:
    echo, ctx, out = tmp_path / "echo.wasm", tmp_path / "ctx.json", tmp_path / "v.sync"
    echo.write_bytes(ECHO_HOOK)
    ctx.write_bytes(b'{"station": "Oslo"}')
    monkeypatch.setenv("LOCKBOX_PASSPHRASE", "pw")
    run.ok("sync", "pack", csv_file, "-o", out, "--wasm", echo, "--passphrase")
    monkeypatch.delenv("LOCKBOX_PASSPHRASE")
    before = out.read_bytes()
    monkeypatch.setattr(cli, "_stdin_tty", lambda: False)
    assert "LOCKBOX_PASSPHRASE" in one_line_error(run("sync", "update", out), 2)
    assert out.read_bytes() == before
    monkeypatch.setattr(cli, "_stdin_tty", lambda: True)
    script_prompts(monkeypatch, "pw")
    run.ok("sync", "update", out)           # the hook saw the plaintext
    assert payload_of(out).startswith(b"age-encryption.org/v1\n")
    monkeypatch.setenv("LOCKBOX_PASSPHRASE", "pw")
    assert run.ok("sync", "cat", out).out == PAYLOAD_CSV + b"!"
    assert "not a host pattern" in one_line_error(
        run("sync", "update", out, "--allow-host", "*"), 2)
    hook = tmp_path / "ctx.wasm"
    hook.write_bytes(CONTEXT_HOOK)
    plain = tmp_path / "plain.sync"
    run.ok("sync", "pack", csv_file, "-o", plain, "--wasm", hook, "--context", ctx)
    run.ok("sync", "update", plain)
    assert payload_of(plain) == b'{"station": "Oslo"}'


# -- Must show 6: a flipped payload byte fails `sync verify`, both schemes --------------


@pytest.fixture
def key(run: Runner, tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "me.key"
    did = run.ok("sync", "keygen", "-o", path).text.strip()
    assert did.startswith("did:key:z6Mk")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert "already exists" in one_line_error(run("sync", "keygen", "-o", path), 2)
    return path, did


def test_embedded_signature_fails_on_a_flipped_payload_byte(
        run: Runner, key: tuple[Path, str], csv_file: Path, tmp_path: Path) -> None:
    path, did = key
    out = tmp_path / "signed.sync"
    run.ok("sync", "pack", csv_file, "-o", out, "--sign", path)
    with zipfile.ZipFile(out) as z:
        m = tomllib.loads(z.read("manifest.toml").decode())
    assert m["meta"]["created_by"] == did
    assert m["signature"]["algo"] == "Ed25519"
    assert m["signature"]["payload_hash"].startswith("blake3:")
    assert f"ok: embedded signature by {did}" in run.ok("sync", "verify", out).text
    assert inspect_json(run, out)["signature"] == {"kind": "embedded", "valid": True,
                                                   "signer": did, "reason": None}
    flip_payload_byte(out, 3, fix_crc=False)
    line = one_line_error(run("sync", "verify", out), 5)
    assert "crc" in line.lower()
    flip_payload_byte(out, 3, fix_crc=False)   # back
    run.ok("sync", "verify", out)
    flip_payload_byte(out, 5, fix_crc=True)    # only the signature can tell
    line = one_line_error(run("sync", "verify", out), 5)
    assert "embedded signature invalid" in line and "payload" in line
    assert inspect_json(run, out)["signature"]["valid"] is False


def test_detached_signature_fails_on_a_flipped_payload_byte(
        run: Runner, key: tuple[Path, str], independent: Path, tmp_path: Path) -> None:
    path, did = key
    sig = tmp_path / "weather.sig.json"
    before = independent.read_bytes()
    run.ok("sync", "sign", independent, "--key", path, "--detached", sig)
    assert independent.read_bytes() == before
    doc = json.loads(sig.read_text())
    assert doc["algorithm"] == "Ed25519" and doc["public_key"] == did
    assert doc["content_hash"].startswith("blake3:") and isinstance(doc["signed_at"], int)
    assert len(base64.b64decode(doc["signature"])) == 64
    assert f"ok: detached signature by {did}" in run.ok(
        "sync", "verify", independent, "--detached", sig).text
    # unsigned without --detached: nothing vouches for it
    assert "not signed" in one_line_error(run("sync", "verify", independent), 5)
    flip_payload_byte(independent, 0, fix_crc=True)
    line = one_line_error(run("sync", "verify", independent, "--detached", sig), 5)
    assert "detached signature invalid" in line


def test_embedded_sign_rewrites_the_manifest_and_keeps_the_rest(
        run: Runner, key: tuple[Path, str], independent: Path) -> None:
    path, did = key
    with zipfile.ZipFile(independent) as z:
        before = {n: z.read(n) for n in z.namelist()}
    run.ok("sync", "sign", independent, "--key", path)
    with zipfile.ZipFile(independent) as z:
        after = {n: z.read(n) for n in z.namelist()}
        order = z.namelist()
    assert order == ["manifest.toml", "payload", "sync.wasm", "context.json"]
    assert {n: v for n, v in after.items() if n != "manifest.toml"} == \
        {n: v for n, v in before.items() if n != "manifest.toml"}
    m = tomllib.loads(after["manifest.toml"].decode())
    assert m["meta"]["created_by"] == did
    assert m["x_vendor"] == {"note": "unknown table", "level": 3}   # unknown keys kept
    run.ok("sync", "verify", independent)
    # the signed manifest tampered with (content_type changed): the manifest hash fails
    text = after["manifest.toml"].decode().replace('"text/csv"', '"text/html"')
    write_independent(independent, text, PAYLOAD_CSV, context=b'{"city": "Paris"}')
    line = one_line_error(run("sync", "verify", independent), 5)
    assert "manifest" in line


# -- HTTP, by range ---------------------------------------------------------------------


def test_inspect_and_cat_over_http(run: Runner, served: tuple[str, Path],
                                   independent: Path, key: tuple[Path, str]) -> None:
    url, root = served
    big = os.urandom(3 * 1024 * 1024 + 5)
    (root / "weather.sync").write_bytes(independent.read_bytes())
    write_independent(root / "big.bin.sync", manifest_text(display_ext="bin"), big)
    local = inspect_json(run, independent)
    remote = inspect_json(run, f"{url}/weather.sync")
    assert remote == {**local, "file": f"{url}/weather.sync"}
    assert run.ok("sync", "cat", f"{url}/weather.sync").out == PAYLOAD_CSV
    assert run.ok("sync", "cat", f"{url}/big.bin.sync").out == big
    info = inspect_json(run, f"{url}/big.bin.sync")
    assert info["payload"]["name"] == "big.bin"
    assert info["payload"]["size"] == len(big)
    line = one_line_error(run("sync", "update", f"{url}/weather.sync"), 2)
    assert "read-only" in line
    assert "read-only" in one_line_error(
        run("sync", "sign", f"{url}/weather.sync", "--key", key[0]), 2)
    sig = independent.with_name("remote.sig.json")
    run.ok("sync", "sign", f"{url}/weather.sync", "--key", key[0], "--detached", sig)
    run.ok("sync", "verify", independent, "--detached", sig)     # the same bytes
    run.ok("sync", "verify", f"{url}/weather.sync", "--detached", sig)
    # by range: the summary of a 3 MiB .sync fetches the ZIP's ends, not its payload
    with cli_sync.open_sync(f"{url}/big.bin.sync") as box:
        assert cli_sync.sync_summary(box, "x")["payload"]["size"] == len(big)
        assert box.source.stats.bytes_read < 64 * 1024
        assert box.read(info["payload"]["name"], len(big) - 5, 5) == big[-5:]


# -- vaults ------------------------------------------------------------------------------


def test_vault_pack_and_cat(run: Runner, csv_file: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch, cheap_vault: None) -> None:
    out = tmp_path / "secret.sync"
    seen = script_prompts(monkeypatch, "correct horse", "correct horse")
    run.ok("sync", "pack", csv_file, "-o", out, "--passphrase")
    assert len(seen) == 2
    stored = payload_of(out)
    assert stored.startswith(b"age-encryption.org/v1\n") and PAYLOAD_CSV not in stored
    with zipfile.ZipFile(out) as z:
        m = tomllib.loads(z.read("manifest.toml").decode())
    assert m["sync"]["variant"] == "vault"
    assert m["encryption"]["enabled"] is True and m["encryption"]["algorithm"] == "age-v1"
    assert inspect_json(run, out)["vault"] is True   # no passphrase needed to inspect
    monkeypatch.setenv("LOCKBOX_PASSPHRASE", "correct horse")
    assert run.ok("sync", "cat", out).out == PAYLOAD_CSV
    monkeypatch.setenv("LOCKBOX_PASSPHRASE", "wrong")
    line = one_line_error(run("sync", "cat", out), 6)
    assert "passphrase" in line.lower()
    monkeypatch.delenv("LOCKBOX_PASSPHRASE")
    pw = tmp_path / "pw.txt"
    pw.write_text("correct horse\n")
    assert run.ok("sync", "cat", out, "--passphrase-file", pw).out == PAYLOAD_CSV
    # on a terminal: asked, a wrong answer asked again
    seen = script_prompts(monkeypatch, "nope", "correct horse")
    r = run.ok("sync", "cat", out)
    assert r.out == PAYLOAD_CSV and len(seen) == 2
    assert "wrong passphrase, try again" in r.err


def test_generic_commands_on_a_vault(run: Runner, csv_file: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, cheap_vault: None) -> None:
    """`lockbox ls/cat` (the format-neutral commands) list a vault without a secret and
    ask for its passphrase on a terminal before reading it; LOCKBOX_PASSWORD works too."""
    out = tmp_path / "secret.csv.sync"
    script_prompts(monkeypatch, "correct horse", "correct horse")
    run.ok("sync", "pack", csv_file, "-o", out, "--passphrase")
    seen = script_prompts(monkeypatch, "correct horse")
    assert run.ok("cat", out, "secret.csv").out == PAYLOAD_CSV
    assert len(seen) == 1 and "Passphrase for secret.csv.sync" in seen[0]
    script_prompts(monkeypatch, "wrong")
    one_line_error(run("cat", out, "secret.csv"), 6)
    monkeypatch.setattr(cli, "_stdin_tty", lambda: False)
    assert "LOCKBOX_PASSWORD" in one_line_error(run("cat", out, "secret.csv"), 2)
    monkeypatch.setenv("LOCKBOX_PASSWORD", "correct horse")
    assert run.ok("cat", out, "secret.csv").out == PAYLOAD_CSV


def test_vault_scrypt_bound(run: Runner, csv_file: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch, cheap_vault: None) -> None:
    """A vault costing more scrypt work than --max-scrypt-log-n allows is refused before
    any key derivation (exit 3, no prompt), for cat and for update alike."""
    out = tmp_path / "v.sync"
    monkeypatch.setenv("LOCKBOX_PASSPHRASE", "pw")
    run.ok("sync", "pack", csv_file, "-o", out, "--passphrase")   # 2^10 (cheap_vault)
    line = one_line_error(run("sync", "cat", out, "--max-scrypt-log-n", "9"), 3)
    assert "2^10" in line and "2^9" in line and "--max-scrypt-log-n 10" in line
    assert run.ok("sync", "cat", out, "--max-scrypt-log-n", "10").out == PAYLOAD_CSV
    r = run("sync", "cat", out, "--max-scrypt-log-n", "31")
    assert r.rc == 2 and "between 1 and 30" in r.err
    before = out.read_bytes()
    wasm = tmp_path / "h.wasm"
    wasm.write_bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1) '
                                       '(func (export "run")))'))
    run.ok("sync", "pack", csv_file, "-o", out, "--passphrase", "--wasm", wasm, "--force")
    before = out.read_bytes()
    one_line_error(run("sync", "update", out, "--max-scrypt-log-n", "9"), 3)
    assert out.read_bytes() == before


def test_vault_mismatched_passphrases_and_no_terminal(run: Runner, csv_file: Path,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "v.sync"
    script_prompts(monkeypatch, "one", "two")
    assert "do not match" in one_line_error(
        run("sync", "pack", csv_file, "-o", out, "--passphrase"), 2)
    assert not out.exists()
    assert "--passphrase makes a vault" in one_line_error(
        run("sync", "pack", csv_file, "-o", out, "--passphrase", "--variant", "app"), 2)
    monkeypatch.setattr(cli, "_stdin_tty", lambda: False)
    assert "LOCKBOX_PASSPHRASE" in one_line_error(
        run("sync", "pack", csv_file, "-o", out, "--passphrase"), 2)


# -- freshness ---------------------------------------------------------------------------


def test_expiry_boundary_and_exact_json(run: Runner, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_independent(tmp_path / "old.csv.sync",
                             manifest_text(created_at="2020-01-01T00:00:00Z", ttl=60),
                             PAYLOAD_CSV)
    created = dt.datetime(2020, 1, 1, tzinfo=UTC)
    offset, size = data_offset(path, "payload")
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()

    def at(seconds: float) -> dict[str, Any]:
        monkeypatch.setattr(cli_sync, "_now", lambda: created + dt.timedelta(seconds=seconds))
        return inspect_json(run, path)

    assert (at(59.5)["expired"], at(59.5)["expires_in"]) == (False, 0.5)
    assert (at(60)["expired"], at(60)["expires_in"]) == (False, 0.0)    # the boundary
    exact = at(61)
    assert exact == {
        "file": str(path),
        "size": path.stat().st_size,
        "manifest": {
            "sync": {"version": "1.2", "content_type": "text/csv", "display_ext": "csv",
                     "variant": "plain", "x_future_key": "kept"},
            "meta": {"created_by": "independent-writer", "created_at": "2020-01-01T00:00:00Z",
                     "hash_algo": "blake3"},
            "policy": {"ttl": 60, "timeout": 30},
            "permissions": {"allow_hosts": [], "allow_env": []},
            "x_vendor": {"note": "unknown table", "level": 3},
        },
        "entries": [{"name": i.filename,
                     "method": "DEFLATE" if i.compress_type == 8 else "STORED",
                     "compressed_size": i.compress_size, "size": i.file_size,
                     "crc32": f"{i.CRC:08x}", "header_offset": i.header_offset,
                     "data_offset": data_offset(path, i.filename)[0]}
                    for i in infos],
        "payload": {"name": "old.csv", "offset": offset, "size": size},
        "vault": False,
        "hook": False,
        "expired": True,
        "expires_at": "2020-01-01T00:01:00Z",
        "expires_in": 0.0,
        "signature": {"kind": "none", "valid": False, "signer": None,
                      "reason": "the manifest has no [signature]"},
        "warnings": [],
    }
    text = run.ok("sync", "inspect", path).text
    assert "expired at 2020-01-01T00:01:00Z" in text


# -- guest.v1 ----------------------------------------------------------------------------


def test_guest_speaks_guest_v1_over_stdio(independent: Path) -> None:
    def request(n: int, action: str, role: str = "Consumer") -> dict[str, Any]:
        return {"version": "guest.v1", "request_id": f"guest-{n}", "action": action,
                "context": {"mode": "Headless", "role": role,
                            "permissions": {"can_read_payload": True,
                                            "can_read_context": True},
                            "sync_path": str(independent), "host_app": None},
                "input": None}

    lines = [request(1, "ReadPayload"), request(2, "ReadContext"),
             request(3, "WritePayload")]
    p = run_lockbox("sync", "guest", independent,
                    stdin=b"".join(json.dumps(r).encode() + b"\n" for r in lines))
    assert p.returncode == 0, p.stderr
    replies = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["request_id"] for r in replies] == ["guest-1", "guest-2", "guest-3"]
    assert all(r["version"] == "guest.v1" for r in replies)
    assert replies[0]["ok"] is True
    assert base64.b64decode(replies[0]["result"]) == PAYLOAD_CSV
    assert replies[1]["ok"] is True
    assert replies[2]["ok"] is False
    assert replies[2]["error"]["code"] == "PermissionDenied"


# -- errors and real processes -----------------------------------------------------------


def test_not_a_sync_and_missing_files(run: Runner, tmp_path: Path) -> None:
    other = tmp_path / "plain.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", b"hello")
    line = one_line_error(run("sync", "inspect", other), 3)
    assert "sync" in line.lower()
    no_wasm = tmp_path / "nowasm.sync"
    with zipfile.ZipFile(no_wasm, "w") as z:
        z.writestr("manifest.toml", manifest_text())
        z.writestr("payload", b"x")
    assert "sync.wasm" in one_line_error(run("sync", "cat", no_wasm), 3)
    missing = tmp_path / "missing.sync"
    assert one_line_error(run("sync", "inspect", missing), 12)
    assert "cannot read" in one_line_error(
        run("sync", "pack", tmp_path / "nope.csv", "-o", tmp_path / "n.sync"), 2)
    assert run("sync").rc == 2
    assert run("sync", "frobnicate").rc == 2


def test_real_processes_pack_cat_verify(run: Runner, tmp_path: Path, csv_file: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        cheap_vault: None) -> None:
    keyfile, out = tmp_path / "k.pem", tmp_path / "report.csv.sync"
    p = run_lockbox("sync", "keygen", "-o", keyfile)
    assert p.returncode == 0, p.stderr
    did = p.stdout.decode().strip()
    monkeypatch.setenv("LOCKBOX_PASSPHRASE", "s3cret")
    run.ok("sync", "pack", csv_file, "-o", out, "--sign", keyfile, "--passphrase")
    p = run_lockbox("sync", "cat", out, env={"LOCKBOX_PASSPHRASE": "s3cret"})
    assert (p.returncode, p.stdout) == (0, PAYLOAD_CSV), p.stderr
    p = run_lockbox("sync", "cat", out)   # no terminal, no passphrase
    assert p.returncode == 2 and b"LOCKBOX_PASSPHRASE" in p.stderr
    assert len(p.stderr.splitlines()) == 1
    p = run_lockbox("sync", "verify", out)
    assert p.returncode == 0 and did.encode() in p.stdout, p.stderr
