"""update_sync_file: the hook as owner, the atomic payload swap, freshness, failures."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockbox.drivers import run_sync
from lockbox.errors import StorageError, UsageError, WrongKeyError
from lockbox.formats.sync.container import (
    CONTEXT_NAME,
    MANIFEST_NAME,
    WASM_NAME,
    open_layout_flow,
    read_entry_flow,
)
from lockbox.formats.sync.hook.runner import HookError, HookLimits, HookTimeoutError
from lockbox.formats.sync.hook.update import update_sync_file
from lockbox.formats.sync.manifest import Manifest
from lockbox.formats.sync.writer import write_sync_file
from lockbox.sources import FileSource

from .guests import Reply, guest, loopback, outputs

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = datetime(2026, 6, 7, 8, 9, 10, 123456, tzinfo=UTC)
URL = 4096
GET = 3072


def make_sync(path: Path, wasm: bytes | None, *, payload: bytes = b"old payload",
              allow_hosts: tuple[str, ...] = ("127.0.0.1",), timeout: int = 30,
              context: bytes | None = b'{"city": "Lyon"}', variant: str = "plain",
              manifest: Manifest | None = None) -> Path:
    manifest = manifest or Manifest.new(content_type="application/json", display_ext="json",
                                        created_by="test", created_at=CREATED, timeout=timeout,
                                        allow_hosts=allow_hosts, variant=variant)
    write_sync_file(path, manifest_toml=manifest.to_toml(), payload=payload, wasm=wasm,
                    context=context)
    return path


def read_back(path: Path) -> tuple[Manifest, bytes, dict[str, bytes]]:
    with FileSource(path) as source:
        layout = run_sync(open_layout_flow(source.size), source)
        entries = {name: run_sync(read_entry_flow(layout, name, max_size=1 << 20), source)
                   for name in layout.entries}
    return Manifest.parse(entries[MANIFEST_NAME]), entries["payload"], entries


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_into_payload(url: str) -> bytes:
    """Fetch ``url``; on success the body becomes the new payload."""
    return guest(f"""
      (local $r i32) (local $n i32)
      (local.set $r (call $http (i32.const {URL}) (i32.const {len(url)}) (i32.const {GET})
                               (i32.const 3)))
      (if (i32.eq (local.get $r) (i32.const 200))
        (then
          (local.set $n (call $rread (i32.const 65536) (i32.const 65536)))
          (drop (call $pwrite (i32.const 0) (local.get $n) (i32.const 65536))))
        (else (call $out (local.get $r))))""", data={URL: url.encode(), GET: b"GET"})


COPY_PAYLOAD_AND_CONTEXT = guest("""
  (local $p i32) (local $c i32)
  (local.set $p (call $pread (i32.const 0) (i32.const 4096) (i32.const 65536)))
  (local.set $c (call $cread (i32.const 0) (i32.const 4096) (i32.const 70000)))
  (drop (call $pwrite (i32.const 0) (local.get $p) (i32.const 65536)))
  (drop (call $pwrite (local.get $p) (local.get $c) (i32.const 70000)))""")


def test_hook_fetches_and_the_payload_is_swapped_and_marked_fresh(tmp_path: Path) -> None:
    body = b'{"temp": 21}\x00\xff'
    with loopback() as server:
        server.routes["/weather"] = Reply(200, body)
        wasm = fetch_into_payload(server.url("/weather"))
        path = make_sync(tmp_path / "w.sync", wasm)
        report = update_sync_file(path, now=NOW)
        assert server.seen == [("GET", "/weather")]
    assert report.updated and report.entry == "run"
    assert (report.old_payload_size, report.new_payload_size) == (11, len(body))
    assert report.allow_hosts == ["127.0.0.1"]
    assert report.fresh_at == NOW.replace(microsecond=0)
    assert [r.result for r in report.requests] == [200]
    manifest, payload, entries = read_back(path)
    assert payload == body
    assert manifest.created_at == NOW.replace(microsecond=0)
    stamp = NOW.replace(microsecond=0)
    assert not manifest.is_expired(stamp + timedelta(seconds=manifest.ttl))
    assert manifest.is_expired(stamp + timedelta(seconds=manifest.ttl + 1))
    assert entries[WASM_NAME] == wasm
    assert entries[CONTEXT_NAME] == b'{"city": "Lyon"}'
    assert list(entries) == [MANIFEST_NAME, "payload", WASM_NAME, CONTEXT_NAME]


def test_hook_reads_the_payload_in_place_and_the_context(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "c.sync", COPY_PAYLOAD_AND_CONTEXT, payload=b"P\x00Q")
    update_sync_file(path, now=NOW)
    assert read_back(path)[1] == b'P\x00Q{"city": "Lyon"}'


def test_grants_narrow_the_manifest_allow_list(tmp_path: Path) -> None:
    with loopback() as server:
        server.routes["/"] = Reply(200, b"fresh")
        wasm = fetch_into_payload(server.url("/"))
        path = make_sync(tmp_path / "g.sync", wasm)
        # a grant outside the manifest's list adds nothing: -2, written as the payload
        report = update_sync_file(path, grants=["localhost"], now=NOW)
        assert report.allow_hosts == []
        assert outputs(read_back(path)[1]) == [-2]
        path = make_sync(tmp_path / "g2.sync", wasm, allow_hosts=("localhost",))
        report = update_sync_file(path, grants=["127.0.0.1"], now=NOW)  # not in the manifest
        assert report.allow_hosts == []
        assert outputs(read_back(path)[1]) == [-2]
        assert server.seen == []
        path = make_sync(tmp_path / "g3.sync", wasm)
        assert update_sync_file(path, grants=["127.0.0.1"], now=NOW).allow_hosts == ["127.0.0.1"]
        assert read_back(path)[1] == b"fresh"


def test_evilexample_is_denied_under_example_com(tmp_path: Path) -> None:
    wasm = fetch_into_payload("http://evilexample.com/data")
    path = make_sync(tmp_path / "e.sync", wasm, allow_hosts=("example.com",))
    update_sync_file(path, now=NOW)
    assert outputs(read_back(path)[1]) == [-2]


def test_endless_hook_dies_in_time_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "loop.sync", guest("""
        (drop (call $pwrite (i32.const 0) (i32.const 4) (i32.const 0)))
        (loop $l (br $l))"""), timeout=1)
    before = digest(path)
    started = time.monotonic()
    with pytest.raises(HookTimeoutError) as info:
        update_sync_file(path, now=NOW, limits=HookLimits(timeout_s=0.5))
    # the bound is timeout + 1 s; the extra 2 s are a hang guard for a loaded machine
    assert time.monotonic() - started < 0.5 + 1.0 + 2.0
    assert info.value.reason == "timeout"
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["loop.sync"]


def test_manifest_timeout_bounds_the_run(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "t.sync", guest("(loop $l (br $l))"), timeout=1)
    before = digest(path)
    started = time.monotonic()
    with pytest.raises(HookTimeoutError, match="1 s"):
        update_sync_file(path, now=NOW, limits=HookLimits(timeout_s=600))
    assert time.monotonic() - started < 1.0 + 1.0 + 2.0  # timeout + 1 s (+ hang guard)
    assert digest(path) == before


@pytest.mark.parametrize(
    ("body", "limits", "pages", "reason"),
    [
        ("(drop (call $pwrite (i32.const 0) (i32.const 4) (i32.const 0))) (unreachable)",
         HookLimits(), 2, "trap"),
        ("(drop (call $pwrite (i32.const 0) (i32.const 4) (i32.const 0)))",
         HookLimits(memory_bytes=4 * 65536), 8, "limit"),
    ],
)
def test_failures_leave_the_file_untouched(tmp_path: Path, body: str, limits: HookLimits,
                                           pages: int, reason: str) -> None:
    path = make_sync(tmp_path / "f.sync", guest(body, pages=pages))
    before = digest(path)
    with pytest.raises(HookError) as info:
        update_sync_file(path, now=NOW, limits=limits)
    assert info.value.reason == reason
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["f.sync"]


def test_a_file_changed_during_the_run_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "race.sync"

    def someone_else_writes() -> Reply:
        make_sync(path, b"", payload=b"their payload")  # a concurrent writer
        return Reply(200, b"ours")

    with loopback() as server:
        server.routes["/"] = someone_else_writes
        make_sync(path, fetch_into_payload(server.url("/")))
        with pytest.raises(StorageError, match="changed"):
            update_sync_file(path, now=NOW)
    assert read_back(path)[1] == b"their payload"


def test_start_only_and_silent_hooks_change_nothing(tmp_path: Path) -> None:
    for name, wasm in (
        ("start", guest("(drop (call $pwrite (i32.const 0) (i32.const 4) (i32.const 0)))",
                        entry="_start")),
        ("silent", guest("(drop (call $psize))")),
    ):
        path = make_sync(tmp_path / f"{name}.sync", wasm)
        before = digest(path)
        report = update_sync_file(path, now=NOW)
        assert not report.updated and report.fresh_at is None
        assert digest(path) == before


def test_no_hook_and_wasi_are_refused(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "stub.sync", None)
    before = digest(path)
    with pytest.raises(UsageError, match="stub"):
        update_sync_file(path)
    assert digest(path) == before
    from .guests import module

    wasi = module("""(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (memory (export "memory") 1) (func (export "_start")))""")
    path = make_sync(tmp_path / "wasi.sync", wasi)
    before = digest(path)
    with pytest.raises(HookError, match="WASI"):
        update_sync_file(path)
    assert digest(path) == before


def test_zero_timeout_is_refused(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "z.sync", guest("(nop)"), timeout=0)
    with pytest.raises(UsageError, match="timeout"):
        update_sync_file(path)


def test_embedded_signature_is_dropped_with_a_warning(tmp_path: Path) -> None:
    manifest = Manifest.new(content_type="text/plain", display_ext="txt", created_by="test",
                            created_at=CREATED).replace(signature={
                                "algo": "Ed25519", "manifest_hash": "00" * 32,
                                "payload_hash": "11" * 32, "timestamp": "2026-01-02T03:04:05Z",
                                "value": "AAAA"})
    path = make_sync(tmp_path / "s.sync", COPY_PAYLOAD_AND_CONTEXT, manifest=manifest)
    report = update_sync_file(path, now=NOW)
    assert any("signature" in w for w in report.warnings)
    assert read_back(path)[0].signature is None


def test_vault_needs_its_passphrase(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "v.sync", COPY_PAYLOAD_AND_CONTEXT, variant="vault",
                     payload=b"age ciphertext would be here")
    before = digest(path)
    with pytest.raises(UsageError, match="passphrase"):
        update_sync_file(path)
    assert digest(path) == before


def test_vault_round_trip(tmp_path: Path) -> None:
    from lockbox.formats.sync.vault import (
        decrypt_vault,
        encrypt_vault,
        parse_age_header,
        scrypt_work_factor,
    )

    ciphertext = encrypt_vault(b"secret rows", "pass phrase", scrypt_log_n=10)
    path = make_sync(tmp_path / "v.sync", COPY_PAYLOAD_AND_CONTEXT, variant="vault",
                     payload=ciphertext)
    before = digest(path)
    with pytest.raises(WrongKeyError):
        update_sync_file(path, passphrase="wrong", now=NOW)
    assert digest(path) == before
    report = update_sync_file(path, passphrase="pass phrase", now=NOW)
    assert report.updated
    manifest, payload, _ = read_back(path)
    assert manifest.is_vault
    assert b"secret" not in payload
    assert scrypt_work_factor(parse_age_header(payload)) == 10  # the vault's own cost
    assert decrypt_vault(payload, "pass phrase") == b'secret rows{"city": "Lyon"}'
