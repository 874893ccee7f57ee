"""``.sync`` through the format-neutral protocol: detection, the payload's display name,
reads checked by CRC, vault payloads, verify (CRCs and the embedded signature), info,
lenient opening; over HTTP (round trips to the first payload byte) and through the
generic CLI (``lockbox ls/cat/info/verify FILE.sync``)."""

from __future__ import annotations

import datetime as _dt
import io
import json
import zipfile
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lockbox
from cli_helpers import run_lockbox
from lockbox.drivers import run_sync
from lockbox.errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    UsageError,
    WrongKeyError,
)
from lockbox.facade import archive_name
from lockbox.formats.sync.container import WASM_STUB
from lockbox.formats.sync.session import SyncFormat, SyncSession, display_name
from lockbox.formats.sync.writer import sync_bytes, write_sync_file
from lockbox.protocol import OpenOptions
from lockbox.ranges import ByteRange
from lockbox.registry import detect, open_session_flow
from lockbox.sources import BytesSource, HttpSource
from sources.servers import ServerState, live_server, make_app

from .refzip import MANIFEST, MANIFEST_UNKNOWN_KEYS, build, sync_entries

NOW = _dt.datetime(2026, 1, 1, 0, 30, tzinfo=_dt.UTC)
CSV = b"name,value\nalpha,1\nbeta,2\n"


def manifest_toml(**changes: Any) -> bytes:
    from lockbox.formats.sync.manifest import Manifest

    m = Manifest.parse(MANIFEST)
    return m.replace(**changes).to_toml() if changes else MANIFEST


def open_bytes(data: bytes, **settings: Any) -> SyncSession:
    secrets = settings.pop("secrets", {})
    session = run_sync(open_session_flow(OpenOptions(secrets=secrets, settings=settings),
                                         len(data)), BytesSource(data))
    assert isinstance(session, SyncSession)
    return session


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("archive, ext, expected", [
    ("report.csv.sync", "csv", "report.csv"),
    ("report.csv.sync", "json", "report.csv"),
    ("report.sync", "csv", "report.csv"),
    ("report.sync", ".csv", "report.csv"),
    ("REPORT.SYNC", "csv", "REPORT.csv"),
    ("/some/dir/report.sync", "tar.gz", "report.tar.gz"),
    (None, "csv", "payload.csv"),
    ("", "csv", "payload.csv"),
    (".sync", "csv", "payload.csv"),
    ("report.sync", "", "report"),
    ("report.sync", "../../etc/passwd", "report"),
    ("report.sync", "a/b", "report"),
    ("report.sync", "..", "report"),
    ("report.sync", "x" * 40, "report"),
    ("download", "csv", "download.csv"),
    ("report.zip", "csv", "report.csv"),
])
def test_display_names(archive, ext, expected):
    assert display_name(archive, ext) == expected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.none(), st.text(max_size=40)), st.text(max_size=40))
def test_display_names_are_always_one_safe_component(archive, ext):
    name = display_name(archive, ext)
    assert name and "/" not in name and "\x00" not in name and name not in (".", "..")


def test_archive_name_of_paths_and_urls():
    assert archive_name("/a/b/report.csv.sync") == "report.csv.sync"
    assert archive_name("http://h:1/files/my%20report.sync?x=1") == "my report.sync"
    assert archive_name("https://h/") == ""


# ------------------------------------------------------------------------------ detection


def test_detection_by_magic():
    ours = sync_bytes(manifest_toml=MANIFEST, payload=CSV)
    assert detect(ours[:16384]).name == "sync"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload", CSV)  # another writer, another first entry
        z.writestr("manifest.toml", MANIFEST)
        z.writestr("sync.wasm", WASM_STUB)
    assert detect(buf.getvalue()).name == "sync"
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("notes.txt", b"hi")
    with pytest.raises(FormatError, match="ZIP archive"):
        detect(plain.getvalue())
    assert not SyncFormat.probe(b"PK\x03\x04") and not SyncFormat.probe(b"")


# ------------------------------------------------------------------------------ facade


def test_lockbox_open_shows_the_payload_under_its_display_name(tmp_path):
    for name, ext in (("report.csv.sync", "csv"), ("report.sync", ".csv")):
        path = tmp_path / name
        write_sync_file(path, manifest_toml=manifest_toml(display_ext=ext), payload=CSV)
        with lockbox.open(path) as box:
            assert [e.path for e in box.ls("")] == ["report.csv"]
            assert box.read_bytes("report.csv") == CSV
            st = box.stat("report.csv")
            assert (st.type, st.size) == ("file", len(CSV))
            assert box.stat("").type == "dir"
            session = box.session
            assert isinstance(session, SyncSession)
            assert session.manifest.display_ext == ext and session.layout.payload_size == len(CSV)
            with pytest.raises(NotFoundError):
                box.read_bytes("other.csv")
            with pytest.raises(InvalidPathError):
                box.ls("report.csv")


def test_independent_writer_with_deflated_manifest_unknown_keys_and_context(tmp_path):
    entries = sync_entries(MANIFEST_UNKNOWN_KEYS, payload=CSV, context=b'{"source": "x"}')
    entries[0].method = 8
    path = tmp_path / "data.sync"
    path.write_bytes(build(entries).data)
    with lockbox.open(path) as box:
        assert box.read_bytes("data.csv") == CSV
        info = box.info()
        json.dumps(info.details)  # JSON-able
        assert info.details["manifest"]["x-vendor"]["colour"] == "blue"
        assert info.details["entries"] == ["manifest.toml", "payload", "sync.wasm",
                                           "context.json"]
        assert box.verify().ok


def test_reads_are_crc_checked(tmp_path):
    data = bytearray(sync_bytes(manifest_toml=MANIFEST, payload=CSV * 100))
    s = open_bytes(bytes(data))
    offset = s.layout.payload_offset
    data[offset + 50] ^= 0x01
    bad = bytes(data)
    s = open_bytes(bad, archive_name="t.sync")
    src = BytesSource(bad)
    with pytest.raises(IntegrityError, match="CRC-32"):
        run_sync(s.read_flow("t.csv", 10, 5), src)
    with pytest.raises(IntegrityError):  # the verdict is remembered
        run_sync(s.read_flow("t.csv", 0, 3), src)
    loose = open_bytes(bad, archive_name="t.sync", unchecked_partial_reads=True)
    assert run_sync(loose.read_flow("t.csv", 0, 4), src) == CSV[:4]
    report = run_sync(open_bytes(bad).verify_flow(), src)
    assert not report.ok and "CRC-32" in report.problems[0]
    pieces: list[bytes] = []
    with pytest.raises(IntegrityError):
        run_sync(open_bytes(bad).stream_flow("payload.csv", pieces.append), src)


def test_partial_and_whole_reads(tmp_path):
    payload = bytes(range(256)) * 1000
    data = sync_bytes(manifest_toml=MANIFEST, payload=payload)
    s = open_bytes(data)
    src = BytesSource(data)
    assert run_sync(s.read_flow("payload.csv", 1000, 10), src) == payload[1000:1010]
    assert run_sync(s.read_flow("payload.csv", len(payload) - 3, 100), src) == payload[-3:]
    assert run_sync(s.read_flow("payload.csv", 10**9, 5), src) == b""
    assert run_sync(open_bytes(data).read_flow("payload.csv", 0, len(payload)), src) == payload
    got: list[bytes] = []
    assert run_sync(s.stream_flow("payload.csv", got.append), src) == len(payload)
    assert b"".join(got) == payload
    with pytest.raises(UsageError):
        run_sync(s.read_flow("payload.csv", -1, 1), src)


def test_info_details():
    s = open_bytes(sync_bytes(manifest_toml=MANIFEST, payload=CSV), now=NOW,
                   archive_name="r.sync")
    d = s.info().details
    assert (d["payload_name"], d["payload_size"], d["expired"], d["expires_in"]) == \
        ("r.csv", len(CSV), False, 1800.0)
    assert d["payload_offset"] == s.layout.payload_offset
    assert d["signature"]["kind"] == "none" and d["manifest"]["policy"]["ttl"] == 3600
    late = open_bytes(sync_bytes(manifest_toml=MANIFEST, payload=CSV),
                      now=NOW + _dt.timedelta(hours=1))
    assert late.info().details["expired"] is True
    info = s.info()
    assert (info.format, info.encrypted, info.entries, info.file_bytes) == \
        ("sync", False, 1, len(CSV))


def test_lenient_opening_through_settings():
    no_wasm = build(sync_entries(wasm=None)).data
    with pytest.raises(FormatError, match=r"sync\.wasm"):
        open_bytes(no_wasm)
    s = open_bytes(no_wasm, strict=False)
    assert any("sync.wasm" in w for w in s.info().details["warnings"])
    assert run_sync(s.read_flow("payload.csv", 0, 100), BytesSource(no_wasm)) == b"a,b\n1,2\n"


# ------------------------------------------------------------------------------ vault


def test_vault_payloads():
    from lockbox.formats.sync.vault import encrypt_vault

    ciphertext = encrypt_vault(CSV, "correct horse", scrypt_log_n=2)
    m = manifest_toml(variant="vault")
    data = sync_bytes(manifest_toml=m, payload=ciphertext)
    s = open_bytes(data)
    info = s.info()
    assert info.encrypted and info.details["vault"] and info.file_bytes == len(CSV)
    assert run_sync(s.stat_flow("payload.csv"), BytesSource(data)).size == len(CSV)
    with pytest.raises(UsageError, match="passphrase"):
        run_sync(s.read_flow("payload.csv", 0, 10), BytesSource(data))
    s = open_bytes(data, secrets={"passphrase": "correct horse"})
    assert run_sync(s.read_flow("payload.csv", 0, 100), BytesSource(data)) == CSV
    # the listing now shows the plaintext size
    assert run_sync(s.listdir_flow(""), BytesSource(data))[0].size == len(CSV)
    s = open_bytes(data, secrets={"password": "correct horse"})  # the generic CLI's secret
    out: list[bytes] = []
    run_sync(s.stream_flow("payload.csv", out.append), BytesSource(data))
    assert b"".join(out) == CSV
    with pytest.raises(WrongKeyError):
        run_sync(open_bytes(data, secrets={"passphrase": "wrong"}).read_flow(
            "payload.csv", 0, 1), BytesSource(data))
    assert run_sync(open_bytes(data).verify_flow(), BytesSource(data)).ok


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 65536, 200_000])
def test_age_plaintext_size_from_the_framing(size):
    from lockbox.formats.sync.session import age_plaintext_size
    from lockbox.formats.sync.vault import encrypt_vault

    ct = encrypt_vault(b"v" * size, "pw", scrypt_log_n=1)
    assert age_plaintext_size(ct[:4096], len(ct)) == size
    assert age_plaintext_size(b"not age", len(ct)) is None
    assert age_plaintext_size(ct[:4096], len(ct) - (len(ct) - 10)) is None


# ------------------------------------------------------------------------------ signatures


def test_embedded_signature_checked_by_verify_and_shown_in_info():
    from lockbox.formats.sync.manifest import Manifest
    from lockbox.formats.sync.signing import SigningKey, sign_manifest
    from lockbox.platform import default_crypto

    key = SigningKey.from_seed(bytes(range(32)))
    h = default_crypto().blake3()
    h.update(CSV)
    signed = sign_manifest(Manifest.parse(MANIFEST), h.digest(), key, NOW)
    data = sync_bytes(manifest_toml=signed.to_toml(), payload=CSV)
    s = open_bytes(data)
    assert s.info().details["signature"]["valid"] is None  # needs the payload hash
    report = run_sync(s.verify_flow(), BytesSource(data))
    assert report.ok and report.entries_checked == 3
    sig = s.info().details["signature"]
    assert (sig["kind"], sig["valid"], sig["signer"]) == ("embedded", True, key.did)
    status = run_sync(open_bytes(data).signature_flow(), BytesSource(data))
    assert status.valid
    # a flipped payload byte: the CRC and the signature both fail
    flipped = bytearray(data)
    flipped[s.layout.payload_offset] ^= 0x20
    bad = bytes(flipped)
    report = run_sync(open_bytes(bad).verify_flow(), BytesSource(bad))
    assert any("CRC-32" in p for p in report.problems)
    assert any("payload hash mismatch" in p for p in report.problems)


# ------------------------------------------------------------------------------ HTTP


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.round_trips = 0
        self.bytes = 0
        self.ranges: list[ByteRange] = []

    @property
    def size(self) -> int | None:
        return self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.round_trips += 1
        self.ranges += ranges
        out = self.inner.read(ranges)
        self.bytes += sum(len(b) for b in out)
        return out

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: Any) -> Any:
    root = tmp_path_factory.mktemp("sync-http")
    payload = bytes(range(256)) * 4096  # 1 MiB
    write_sync_file(root / "big.csv.sync", manifest_toml=MANIFEST, payload=payload,
                    context=b"{}")
    write_sync_file(root / "small.sync", manifest_toml=MANIFEST, payload=CSV)
    with live_server(make_app(ServerState(root)), timeout=10.0) as live:
        yield live.base_url, payload


def test_http_three_round_trips_to_the_first_payload_byte(served):
    base, payload = served
    src = Counting(HttpSource(f"{base}/files/big.csv.sync"))
    box = lockbox.open(f"{base}/files/big.csv.sync", source=src)
    try:
        assert src.round_trips == 2          # the probe (learns the size), the tail
        assert src.bytes == 2 * 16384
        assert [e.path for e in box.ls("")] == ["big.csv"]
        first = next(box.iter_bytes("big.csv"))
        assert src.round_trips == 3 and first == payload[:len(first)]
        assert src.bytes <= 2 * 16384 + 4 * 1024 * 1024
        assert box.read_bytes("big.csv") == payload
    finally:
        box.close()
    src = Counting(HttpSource(f"{base}/files/small.sync"))
    with lockbox.open(f"{base}/files/small.sync", source=src) as box:
        assert box.read_bytes("small.csv") == CSV
        assert src.round_trips == 1  # the probe holds the whole file


# ------------------------------------------------------------------------------ CLI


def test_generic_cli_ls_cat_info_verify(tmp_path):
    path = tmp_path / "report.sync"
    write_sync_file(path, manifest_toml=MANIFEST, payload=CSV)
    r = run_lockbox("ls", path)
    assert r.returncode == 0 and r.stdout.decode().split() == ["report.csv"]
    r = run_lockbox("cat", path, "report.csv")
    assert r.returncode == 0 and r.stdout == CSV
    r = run_lockbox("info", path)
    assert r.returncode == 0 and b".sync container" in r.stdout
    r = run_lockbox("verify", path)
    assert r.returncode == 0, r.stderr
    data = bytearray(path.read_bytes())
    data[open_bytes(bytes(data)).layout.payload_offset] ^= 1
    path.write_bytes(bytes(data))
    r = run_lockbox("verify", path)
    assert r.returncode != 0 and b"CRC-32" in r.stdout + r.stderr
    r = run_lockbox("cat", path, "report.csv")
    assert r.returncode == 5 and r.stderr.decode().count("\n") == 1
