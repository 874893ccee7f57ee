"""The writer: sync-rs's bytes (the zip crate's layout modelled independently in
``refzip``), read back by CPython's ``zipfile`` and our reader, ZIP64 (forced, and a real
sparse payload over 4 GiB), streaming in bounded memory, and atomic rewrites that leave
the original untouched on failure."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lockbox.drivers import run_sync
from lockbox.errors import FormatError, StorageError, UsageError
from lockbox.formats.sync import writer as writer_mod
from lockbox.formats.sync.container import WASM_STUB, open_layout_flow
from lockbox.formats.sync.writer import (
    encode_sync,
    rewrite_sync_bytes,
    rewrite_sync_file,
    sync_bytes,
    write_sync_file,
)
from lockbox.sources import BytesSource, open_source

from . import refzip
from .refzip import MANIFEST, MANIFEST_UNKNOWN_KEYS, Ref, build, sync_entries

MiB = 1024 * 1024


def reopen(data: bytes) -> Any:
    return run_sync(open_layout_flow(len(data)), BytesSource(data))


def reopen_file(path: Path) -> Any:
    src = open_source(str(path))
    try:
        return run_sync(open_layout_flow(src.size), src)
    finally:
        src.close()


@pytest.mark.parametrize("extras", [{}, {"context": b'{"k":1}'},
                                    {"context": b"{}", "proof": b"P" * 100}])
def test_bytes_identical_to_the_zip_crate_model(extras):
    ours = sync_bytes(manifest_toml=MANIFEST, payload=b"x,y\n" * 10, **extras)
    assert ours == refzip.zip_crate_sync(MANIFEST, b"x,y\n" * 10, **extras)


def test_wasm_given_or_the_stub():
    wasm = b"\0asm\x01\0\0\0" + b"\x01\x04\x01\x60\x00\x00"
    data = sync_bytes(manifest_toml=MANIFEST, payload=b"", wasm=wasm)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.read("sync.wasm") == wasm and z.read("payload") == b""
    with zipfile.ZipFile(io.BytesIO(sync_bytes(manifest_toml=MANIFEST, payload=b"p"))) as z:
        assert z.read("sync.wasm") == WASM_STUB


@pytest.mark.parametrize("force_zip64", [False, True])
def test_cpython_zipfile_reads_our_output(force_zip64):
    payload = os.urandom(100_000)
    data = sync_bytes(manifest_toml=MANIFEST_UNKNOWN_KEYS, payload=payload, context=b"{}",
                      proof=b"proof", force_zip64=force_zip64)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        infos = z.infolist()
        assert [i.filename for i in infos] == ["manifest.toml", "payload", "sync.wasm",
                                               "context.json", "sync.proof"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert z.read("payload") == payload and z.read("manifest.toml") == MANIFEST_UNKNOWN_KEYS
        assert infos[1].extract_version == (45 if force_zip64 else 10)
    lay = reopen(data)
    assert lay.zip64 == force_zip64
    assert data[lay.payload_offset: lay.payload_offset + lay.payload_size] == payload


def test_the_returned_layout_is_what_a_reader_finds():
    buf = io.BytesIO()
    written = encode_sync(manifest_toml=MANIFEST, payload=b"abc" * 1000, context=b"{}",
                          out=buf)
    read = reopen(buf.getvalue())
    assert written.entries == read.entries
    assert (written.payload_range, written.cd_offset, written.cd_size, written.size) == \
        (read.payload_range, read.cd_offset, read.cd_size, read.size)


def test_payload_from_a_file_object_in_bounded_memory(tmp_path):
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for i in range(32):
            f.write(bytes([i]) * MiB)
    out_path = tmp_path / "out.sync"
    tracemalloc.start()
    try:
        with open(src, "rb") as f, open(out_path, "wb") as out:
            f.seek(5)  # copied from the stream's position
            encode_sync(manifest_toml=MANIFEST, payload=f, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB
    lay = reopen_file(out_path)
    assert lay.payload_size == 32 * MiB - 5
    with zipfile.ZipFile(out_path) as z:
        assert z.testzip() is None
        with z.open("payload") as p:
            assert p.read(3) == b"\0\0\0"


def test_payload_stream_errors():
    class NoSeek(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def tell(self) -> int:
            raise OSError("unseekable")

    with pytest.raises(UsageError, match="seekable"):
        sync_bytes(manifest_toml=MANIFEST, payload=NoSeek())  # type: ignore[arg-type]

    class Growing(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
            return super().read(n) + (b"more" if self.tell() >= 10 else b"")

    with pytest.raises(StorageError, match="changed while it was copied"):
        sync_bytes(manifest_toml=MANIFEST, payload=Growing(b"0123456789"))


def test_write_sync_file_is_atomic_and_can_refuse_to_overwrite(tmp_path):
    path = tmp_path / "a.sync"
    write_sync_file(path, manifest_toml=MANIFEST, payload=b"one")
    with pytest.raises(StorageError, match="already exists"):
        write_sync_file(path, manifest_toml=MANIFEST, payload=b"two", overwrite=False)
    write_sync_file(path, manifest_toml=MANIFEST, payload=b"two")
    with zipfile.ZipFile(path) as z:
        assert z.read("payload") == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sync"]


# ------------------------------------------------------------------------------ rewrite


def _independent(tmp_path: Path) -> Path:
    entries = sync_entries(MANIFEST_UNKNOWN_KEYS, context=b'{"c": 1}', proof=b"pf")
    entries[0].method = 8  # a deflated manifest, copied raw
    entries.append(Ref(b"extra.bin", b"kept"))
    path = tmp_path / "ind.sync"
    path.write_bytes(build(entries).data)
    os.chmod(path, 0o640)
    return path


def test_rewrite_the_payload_keeps_every_other_entry(tmp_path):
    path = _independent(tmp_path)
    with zipfile.ZipFile(path) as z:
        before = {i.filename: (i.compress_type, i.CRC, z.read(i)) for i in z.infolist()}
    rewrite_sync_file(path, payload=b"new payload")
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        after = {i.filename: (i.compress_type, i.CRC, z.read(i)) for i in z.infolist()}
        assert [i.filename for i in z.infolist()] == list(before)
    assert after["payload"][2] == b"new payload"
    for name in before:
        if name != "payload":
            assert after[name] == before[name]
    assert after["manifest.toml"][0] == zipfile.ZIP_DEFLATED
    assert (path.stat().st_mode & 0o777) == 0o640
    assert reopen_file(path).payload_size == 11


def test_rewrite_the_manifest_and_the_payload_from_a_stream(tmp_path):
    path = _independent(tmp_path)
    rewrite_sync_file(path, manifest_toml=MANIFEST, payload=io.BytesIO(b"streamed"))
    with zipfile.ZipFile(path) as z:
        assert z.read("manifest.toml") == MANIFEST and z.read("payload") == b"streamed"
        assert z.getinfo("manifest.toml").compress_type == zipfile.ZIP_STORED
    with pytest.raises(UsageError, match="nothing to rewrite"):
        rewrite_sync_file(path)


def test_a_failed_rewrite_leaves_the_original_untouched(tmp_path, monkeypatch):
    path = _independent(tmp_path)
    original = path.read_bytes()

    class Failing(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
            if self.tell() > 0:
                raise OSError("disk on fire")
            return super().read(1)

    with pytest.raises(StorageError, match="disk on fire"):
        rewrite_sync_file(path, payload=Failing(b"x" * 100))
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ind.sync"]

    # a failure while the central directory is written (after all the data)
    def boom(*a: Any, **k: Any) -> bytes:
        raise StorageError("no space left")

    monkeypatch.setattr(writer_mod, "encode_central_record", boom)
    with pytest.raises(StorageError, match="no space"):
        rewrite_sync_file(path, payload=b"y")
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ind.sync"]


def test_rewrite_refuses_a_broken_original(tmp_path):
    path = tmp_path / "bad.sync"
    path.write_bytes(b"not a zip at all, just some text")
    with pytest.raises(FormatError):
        rewrite_sync_file(path, payload=b"x")
    assert path.read_bytes() == b"not a zip at all, just some text"


def _stored_data(data: bytes, layout: Any) -> dict[str, bytes]:
    return {name: data[e.data_offset:e.data_offset + e.compressed_size]
            for name, e in layout.entries.items()}


@pytest.mark.parametrize("change", [{"payload": b"new payload"},
                                    {"manifest_toml": MANIFEST},
                                    {"manifest_toml": MANIFEST, "payload": b""}])
def test_rewrite_in_memory_gives_the_bytes_of_the_file_rewrite(tmp_path, change):
    entries = sync_entries(MANIFEST_UNKNOWN_KEYS, context=b'{"c": 1}', proof=b"pf")
    entries[0].method = 8
    entries.append(Ref(b"extra.bin", b"kept", comment=b"an entry comment"))
    original = build(entries, comment=b"the archive's comment").data
    path = tmp_path / "c.sync"
    path.write_bytes(original)
    layout = reopen(original)
    # only the entries that are copied are needed
    replaced = {"manifest.toml" if key == "manifest_toml" else key for key in change}
    raw = {name: blob for name, blob in _stored_data(original, layout).items()
           if name not in replaced}
    in_memory = rewrite_sync_bytes(layout, raw, **change)
    rewrite_sync_file(path, **change)
    assert in_memory == path.read_bytes()
    assert reopen(in_memory).comment == b"the archive's comment"


def test_rewrite_in_memory_errors():
    data = sync_bytes(manifest_toml=MANIFEST, payload=b"p", context=b"{}")
    layout = reopen(data)
    with pytest.raises(UsageError, match="nothing to rewrite"):
        rewrite_sync_bytes(layout, _stored_data(data, layout))
    with pytest.raises(UsageError, match=r"context\.json"):
        rewrite_sync_bytes(layout, {"manifest.toml": MANIFEST, "sync.wasm": WASM_STUB},
                           payload=b"q")


# ------------------------------------------------------------------------------ > 4 GiB


def test_a_real_payload_over_4_GiB_from_a_sparse_file(tmp_path):
    """A sparse 4 GiB + 16 byte payload (holes read as zeros, the output keeps them as
    holes): ZIP64 local and central fields, a ZIP64 end record, read back by CPython's
    zipfile and by our reader. Reads and CRCs 4 GiB: a few seconds."""
    size = 4 * 1024 * MiB + 16
    src = tmp_path / "sparse.bin"
    with open(src, "wb") as f:
        f.truncate(size - 16)
        f.seek(size - 16)
        f.write(b"0123456789abcdef")
    out = tmp_path / "big.sync"
    with open(src, "rb") as f:
        written = write_sync_file(out, manifest_toml=MANIFEST, payload=f, context=b"{}")
    assert out.stat().st_size > size
    assert out.stat().st_blocks * 512 < 64 * MiB  # the holes stayed holes
    lay = reopen_file(out)
    assert lay.zip64 and lay.payload.zip64 and lay.payload_size == size
    assert lay.entries == written.entries
    with open(out, "rb") as f:
        f.seek(lay.payload_offset + size - 16)
        assert f.read(16) == b"0123456789abcdef"
    with zipfile.ZipFile(out) as z:
        info = z.getinfo("payload")
        assert info.file_size == info.compress_size == size
        assert z.read("context.json") == b"{}" and z.read("sync.wasm") == WASM_STUB
        assert z.getinfo("context.json").header_offset > 2**32
