"""Inside Pyodide: the shared crypto conformance suite on :class:`BrowserCryptoBackend`.

Run by tests/pyodide/harness.py (not collected by the CPython pytest run: the file name
does not start with ``test_``, and it imports ``js``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import js  # type: ignore[import-not-found]
import pytest
from pyodide.ffi import to_js  # type: ignore[import-not-found]

import lockbox
from crypto.conformance import CryptoBackendConformance
from lockbox.crypto.base import FrameJob, open_frames_loop
from lockbox.crypto.browser import BrowserCryptoBackend
from lockbox.errors import FormatError, IntegrityError, WrongKeyError
from lockbox.formats.lbox.frames import PLAIN_LIMITS, decode_plain, encode_plain
from lockbox.formats.lbox.wire.constants import FrameKind
from lockbox.formats.lbox.wire.encoding import uvarint
from lockbox.platform import IS_BROWSER, default_crypto
from lockbox.sources.memory import AsyncBytesSource

SYNC_VECTORS = Path(__file__).resolve().parents[1] / "formats" / "sync" / "vectors"
SERVED_DIR = os.environ.get("LOCKBOX_TEST_SERVED_DIR", "")
_E2E_JSON = os.path.join(SERVED_DIR, "e2e.json")
E2E: dict[str, Any] = (json.loads(Path(_E2E_JSON).read_text())
                       if SERVED_DIR and os.path.exists(_E2E_JSON) else {})


@pytest.fixture(scope="module")
def browser_backend() -> BrowserCryptoBackend:
    return BrowserCryptoBackend()


class TestBrowserCryptoBackend(CryptoBackendConformance):
    """Every test of the shared suite, unchanged."""

    @pytest.fixture
    def backend(self, browser_backend: BrowserCryptoBackend) -> BrowserCryptoBackend:
        return browser_backend


def test_platform_picks_the_browser_backend() -> None:
    assert IS_BROWSER
    assert isinstance(default_crypto(), BrowserCryptoBackend)
    assert default_crypto().name == "browser"


def test_argon2id_engines(browser_backend: BrowserCryptoBackend) -> None:
    """Archive parameters (16-byte salt, p = 1) take libsodium; the rest hash-wasm (JSPI)."""
    engine = browser_backend.argon2id_engine
    assert engine(16, time_cost=3, memory_kib=65536, parallelism=1, length=32) == "libsodium"
    assert engine(8, time_cost=3, memory_kib=65536, parallelism=1, length=32) == "hash-wasm"
    assert engine(16, time_cost=3, memory_kib=256, parallelism=2, length=32) == "hash-wasm"
    assert engine(16, time_cost=1, memory_kib=64, parallelism=1, length=8) == "hash-wasm"


def _noble(password: bytes, salt: bytes, t: int, m: int, p: int, length: int) -> bytes:
    opts = js.Object.fromEntries([["t", t], ["m", m], ["p", p], ["dkLen", length]])
    out: bytes = js.lockboxCrypto.libs.nobleArgon2id(
        js.Uint8Array.new(password), js.Uint8Array.new(salt), opts).to_bytes()
    return out


@pytest.mark.parametrize(("t", "m"), [(1, 8), (2, 64), (3, 1024)])
def test_argon2id_libsodium_equals_noble(browser_backend: BrowserCryptoBackend, t: int,
                                         m: int) -> None:
    password, salt = b"lockbox", bytes(range(16))
    ours = browser_backend.argon2id(password, salt, time_cost=t, memory_kib=m, parallelism=1,
                                    length=32)
    assert ours == _noble(password, salt, t, m, 1, 32)


@pytest.mark.parametrize(("salt", "p", "length"), [(b"somesalt", 1, 32), (bytes(16), 2, 32),
                                                   (bytes(24), 1, 8)])
def test_argon2id_synchronous_fallback(browser_backend: BrowserCryptoBackend,
                                       monkeypatch: pytest.MonkeyPatch, salt: bytes, p: int,
                                       length: int) -> None:
    """Without JSPI the non-libsodium parameters go to noble, with the same answer."""
    import lockbox.crypto.browser as module

    kwargs = dict(time_cost=2, memory_kib=256, parallelism=p, length=length)
    with_jspi = browser_backend.argon2id(b"password", salt, **kwargs)
    monkeypatch.setattr(module, "can_run_sync", lambda: False)
    assert browser_backend.argon2id_engine(len(salt), **kwargs) == "noble"
    assert browser_backend.argon2id(b"password", salt, **kwargs) == with_jspi
    assert with_jspi == _noble(b"password", salt, 2, 256, p, length)


def test_aead_accepts_every_buffer_type(browser_backend: BrowserCryptoBackend) -> None:
    aead = browser_backend.aead(bytearray(range(32)))
    nonce = bytes(12)
    data = bytes(range(256)) * 300
    sealed = aead.seal(nonce, data, b"aad")
    for kind in (bytes, bytearray, memoryview):
        assert aead.open(kind(nonce), kind(sealed), kind(b"aad")) == data
        assert aead.seal(kind(nonce), kind(data), kind(b"aad")) == sealed
    view = memoryview(b"xx" + sealed + b"yy")[2:-2]  # a slice with an offset
    assert aead.open(nonce, view, b"aad") == data


def test_blake3_interleaved_hashers(browser_backend: BrowserCryptoBackend) -> None:
    """Hashers share one WASM instance; their states must not leak into each other."""
    vectors = dict(CryptoBackendConformance.BLAKE3_VECTORS)
    inputs = {n: bytes(i % 251 for i in range(n)) for n in (1023, 4097, 7169)}
    hashers = {n: browser_backend.blake3() for n in inputs}
    for start in range(0, 7169, 500):
        for n, h in hashers.items():
            h.update(inputs[n][start:start + 500])
        if start == 3000:
            assert hashers[1023].digest().hex() == vectors[1023]
    for n, h in hashers.items():
        assert h.digest().hex() == vectors[n]


def test_blake3_digest_then_update(browser_backend: BrowserCryptoBackend) -> None:
    data = bytes(i % 251 for i in range(5000))
    h = browser_backend.blake3()
    h.update(data[:1000])
    first = h.digest()
    assert h.digest() == first  # digest does not finalize
    h.update(data[1000:])
    whole = browser_backend.blake3()
    whole.update(data)
    assert h.digest() == whole.digest()
    part = browser_backend.blake3()
    part.update(data[:1000])
    assert part.digest() == first


def test_random_bytes_large(browser_backend: BrowserCryptoBackend) -> None:
    out = browser_backend.random_bytes(200_000)  # several getRandomValues calls
    assert len(out) == 200_000
    assert hashlib.sha256(out[:65536]).digest() != hashlib.sha256(out[65536:131072]).digest()
    assert out[-65536:].count(0) < 1000


# -- .sync: age vaults and Ed25519 signatures in the browser ----------------------------------


def _typage_encrypt(plaintext: bytes, passphrase: str, log_n: int) -> bytes:
    from pyodide.ffi import run_sync  # type: ignore[import-not-found]

    out: bytes = run_sync(js.lockboxCrypto.ageEncryptPassphrase(
        js.Uint8Array.new(plaintext), passphrase, log_n)).to_bytes()
    return out


@pytest.mark.parametrize("size", [0, 1, 65536, 200_001])
def test_age_roundtrip_with_age_encryption(browser_backend: BrowserCryptoBackend,
                                           size: int) -> None:
    plaintext = bytes(i % 251 for i in range(size))
    ciphertext = _typage_encrypt(plaintext, "pässwörd", 2)
    assert browser_backend.age_decrypt_passphrase(ciphertext, "pässwörd") == plaintext
    with pytest.raises(WrongKeyError):
        browser_backend.age_decrypt_passphrase(ciphertext, "passwörd")
    with pytest.raises(IntegrityError):
        browser_backend.age_decrypt_passphrase(ciphertext[:-1], "pässwörd")


def test_decrypt_vault_in_the_browser() -> None:
    from lockbox.errors import LimitExceededError
    from lockbox.formats.sync.vault import decrypt_vault

    data = (SYNC_VECTORS / "age-lockbox-2chunks.age").read_bytes()  # written by CPython
    plaintext = decrypt_vault(data, "pässwörd ✓")
    assert plaintext == bytes(i % 251 for i in range(65537))
    with pytest.raises(LimitExceededError):
        decrypt_vault(data, "pässwörd ✓", max_scrypt_log_n=2)


def test_age_without_jspi_uses_primitives(browser_backend: BrowserCryptoBackend,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without JSPI: the same answers (every vector, and the damage verdicts) from
    libsodium's scrypt and ChaCha20-Poly1305, synchronously."""
    import lockbox.crypto.browser as module
    from lockbox.errors import LimitExceededError

    assert browser_backend.age_engine() == "age-encryption"
    big = _typage_encrypt(bytes(range(256)) * 300, "pw", 2)  # two chunks, by typage
    monkeypatch.setattr(module, "can_run_sync", lambda: False)
    assert browser_backend.age_engine() == "primitives"
    for vector in json.loads((SYNC_VECTORS / "age.json").read_text(encoding="utf-8")):
        data = (SYNC_VECTORS / vector["file"]).read_bytes()
        plaintext = browser_backend.age_decrypt_passphrase(data, vector["passphrase"])
        assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext_sha256"]
    assert browser_backend.age_decrypt_passphrase(big, "pw") == bytes(range(256)) * 300
    with pytest.raises(WrongKeyError):
        browser_backend.age_decrypt_passphrase(big, "PW")
    for damaged in (big[:-1], big[:-100] + bytes(100), big + b"\0"):
        with pytest.raises(IntegrityError):
            browser_backend.age_decrypt_passphrase(damaged, "pw")
    lines = big.split(b"\n")
    lines[1] = lines[1].rsplit(b" ", 1)[0] + b" 21"
    with pytest.raises(LimitExceededError):
        browser_backend.age_decrypt_passphrase(b"\n".join(lines), "pw")


def test_scrypt_glue_matches_openssl(browser_backend: BrowserCryptoBackend) -> None:
    # RFC 7914's vectors use r or p other than age's (8, 1): this is CPython's
    # hashlib.scrypt(b"pw", salt=bytes(16), n=1024, r=8, p=1, dklen=32) (OpenSSL).
    out = browser_backend._scrypt(b"pw", bytes(16), 10)
    assert out.hex() == "7fafdfc47bd53fde03b5650415c480edc2c2a4e0ce0a3c7d705087f08d395a88"


def test_signature_vectors_verify_in_the_browser() -> None:
    from lockbox.formats.sync.manifest import Manifest
    from lockbox.formats.sync.signing import DetachedSignature, verify_detached, verify_embedded

    vectors = json.loads((SYNC_VECTORS / "signatures.json").read_text(encoding="utf-8"))
    manifest = Manifest.parse(vectors["signed_manifest_toml"].encode())
    assert manifest.canonical_json() == vectors["canonical_json"].encode()

    def b3(data: bytes) -> bytes:
        h = default_crypto().blake3()
        h.update(data)
        return h.digest()

    payload = vectors["payload_utf8"].encode()
    status = verify_embedded(manifest, b3(payload))
    assert status.valid and status.signer == vectors["did"]
    assert verify_embedded(manifest, b3(payload + b"x")).reason == "payload hash mismatch"
    tampered = manifest.replace(ttl=1)
    assert verify_embedded(tampered, b3(payload)).reason == "manifest hash mismatch"
    detached = DetachedSignature.from_json(vectors["detached"]["json"])
    file_bytes = bytes.fromhex(vectors["detached"]["file_hex"])
    assert verify_detached(detached, b3(file_bytes)).valid
    assert verify_detached(detached, b3(file_bytes[:-1])).reason == "content hash mismatch"


# -- frame batches: the worker pool (its protocol, over MessageChannels here: Node has no
#    Web Workers) against the same frames opened in this thread and by the plain loop ------


@pytest.fixture
def pool() -> Any:
    """The bundle's pool set to 2 in-thread 'workers' (the pool protocol and transfers over
    MessageChannels); back to none (in-thread only) afterwards."""
    api = js.lockboxCrypto
    api.configurePool(to_js({"size": 2, "factory": api.inThreadWorker},
                            dict_converter=js.Object.fromEntries))
    yield api
    api.configurePool(to_js({"size": 0}, dict_converter=js.Object.fromEntries))


def _no_pool() -> None:
    js.lockboxCrypto.configurePool(to_js({"size": 0}, dict_converter=js.Object.fromEntries))


def _frames(backend: BrowserCryptoBackend) -> tuple[list[FrameJob], list[bytes]]:
    """Sealed frame plaintexts of every kind the pool decodes itself, or leaves to Python."""
    from lockbox.platform import default_codec

    codec = default_codec()
    text = bytes(b"abcdefghijklmnop"[i * 7 % 16] for i in range(300_000))
    zstd_body = codec.compress(text, 3)
    plains = [
        encode_plain(codec, text),                      # zstd, decoded by the pool
        encode_plain(codec, bytes(range(256)) * 40),    # zstd, short
        encode_plain(codec, os.urandom(70_000)),        # raw (incompressible)
        encode_plain(codec, b"tiny"),                   # raw, under the compression floor
        b"\x01" + uvarint(len(text)) + zstd_body + b"\x00",  # trailing byte: Python's error
        b"\x00\x85\x00" + b"12345",                     # non-minimal varint: Python's error
    ]
    aead = backend.aead(bytes(range(32)))
    jobs = []
    for n, plain in enumerate(plains):
        nonce = n.to_bytes(12, "little")
        aad = b"frame %d" % n
        jobs.append(FrameJob(aead, nonce, aead.seal(nonce, plain, aad), aad))
    return jobs, plains


def _decode(plain: bytes) -> bytes | memoryview:
    from lockbox.platform import default_codec

    return decode_plain(default_codec(), plain, PLAIN_LIMITS[FrameKind.DATA_CHUNK])


def _pooled(backend: BrowserCryptoBackend, jobs: list[FrameJob]) -> list[Any]:
    """start_open_frames, then finish_open_frames awaited (the pool's async path)."""
    limit = PLAIN_LIMITS[FrameKind.DATA_CHUNK]

    async def main() -> list[Any]:
        handle = backend.start_open_frames(jobs, limit)
        return await backend.finish_open_frames(handle, jobs, _decode, limit)

    return asyncio.run(main())


def _same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, Exception) or isinstance(y, Exception):
            assert type(x) is type(y) and str(x) == str(y)
        else:
            assert bytes(x) == bytes(y)


def test_open_frames_pool_equals_thread_equals_loop(browser_backend: BrowserCryptoBackend,
                                                    pool: Any) -> None:
    jobs, plains = _frames(browser_backend)
    limit = PLAIN_LIMITS[FrameKind.DATA_CHUNK]
    loop = open_frames_loop(jobs[:4], _decode)
    assert [bytes(x) for x in loop] == [bytes(_decode(p)) for p in plains[:4]]
    before = int(pool.poolInfo().frames)
    pooled = _pooled(browser_backend, jobs[:4])
    assert int(pool.poolInfo().frames) == before + 4  # the pool opened them
    _same(pooled, loop)
    _same(browser_backend.open_frames(jobs[:4], _decode, limit), loop)  # in this thread
    for bad in (4, 5):  # frames the bundle leaves to Python: the same error as the loop
        want = open_frames_loop(jobs[:bad + 1], _decode)
        assert isinstance(want[-1], FormatError)
        _same(_pooled(browser_backend, jobs[:bad + 1]), want)
        _same(browser_backend.open_frames(jobs[:bad + 1], _decode, limit), want)
    _no_pool()
    _same(_pooled(browser_backend, jobs[:4]), loop)  # no pool: run in this thread


def test_open_frames_tampered_frame_ends_the_batch(browser_backend: BrowserCryptoBackend,
                                                   pool: Any) -> None:
    jobs, _ = _frames(browser_backend)
    jobs = jobs[:4]
    sealed = bytearray(jobs[2].sealed)
    sealed[10] ^= 1
    jobs[2] = jobs[2]._replace(sealed=bytes(sealed))
    want = open_frames_loop(jobs, _decode)
    assert len(want) == 3 and isinstance(want[2], IntegrityError)
    _same(_pooled(browser_backend, jobs), want)
    _same(browser_backend.open_frames(jobs, _decode, PLAIN_LIMITS[FrameKind.DATA_CHUNK]), want)
    _no_pool()
    _same(_pooled(browser_backend, jobs), want)


async def _e2e_box(data: bytes) -> Any:
    return await lockbox.AsyncLockbox.open(AsyncBytesSource(data), password=E2E["password"])


def _e2e_archive() -> bytes:
    with open(os.path.join(SERVED_DIR, E2E["archive"]), "rb") as f:
        return f.read()


@pytest.mark.skipif(not E2E, reason="needs the harness's e2e archive")
def test_archive_reads_pool_equals_thread(pool: Any) -> None:
    data = _e2e_archive()

    async def read_all() -> dict[str, str]:
        box = await _e2e_box(data)
        out = {}
        for path in E2E["files"]:
            h = hashlib.sha256()
            async for piece in box.iter_bytes(path):
                h.update(piece)
            out[path] = h.hexdigest()
        return out

    before = int(pool.poolInfo().frames)
    pooled = asyncio.run(read_all())
    assert int(pool.poolInfo().frames) > before  # multi-chunk files went through the pool
    _no_pool()
    assert asyncio.run(read_all()) == pooled == {p: w["sha256"] for p, w in E2E["files"].items()}


@pytest.mark.skipif(not E2E, reason="needs the harness's e2e archive")
def test_archive_tampered_chunk_in_a_pooled_batch_releases_nothing(pool: Any) -> None:
    data = bytearray(_e2e_archive())

    async def refs() -> Any:
        box = await _e2e_box(bytes(data))
        e = await box.run(box.view.stat_flow("data/random.bin"))
        return e, await box.run(box.view.chunk_refs_flow(e, 0, e.chunks))

    entry, chunk_refs = asyncio.run(refs())
    assert entry.chunks == 4  # one batch
    bad = chunk_refs[2]
    data[bad.frame_offset + bad.frame_size - 40] ^= 0x01  # inside chunk 2's ciphertext

    async def read() -> list[int]:
        box = await _e2e_box(bytes(data))
        got = []
        with pytest.raises(IntegrityError):
            async for piece in box.iter_bytes("data/random.bin"):
                got.append(len(piece))
        return got

    assert asyncio.run(read()) == []  # nothing of the batch was released
    _no_pool()
    assert asyncio.run(read()) == []


def test_a_broken_pool_falls_back_to_this_thread(browser_backend: BrowserCryptoBackend) -> None:
    """A 'worker' that refuses every message: the batch is opened here instead (the same
    results), and the pool is not used again."""
    from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

    def refuse(*_args: Any) -> None:
        raise RuntimeError("worker gone")

    worker = js.Object.new()
    worker.postMessage = create_proxy(refuse)
    worker.terminate = create_proxy(lambda: None)
    worker.addEventListener = create_proxy(lambda *_args: None)
    factory = create_proxy(lambda: worker)
    api = js.lockboxCrypto
    api.configurePool(to_js({"size": 2, "factory": factory},
                            dict_converter=js.Object.fromEntries))
    try:
        jobs, _ = _frames(browser_backend)
        want = open_frames_loop(jobs[:4], _decode)
        _same(_pooled(browser_backend, jobs[:4]), want)
        assert "refused" in str(api.poolInfo().broken)
        _same(_pooled(browser_backend, jobs[:4]), want)
    finally:
        _no_pool()


async def _viewer_download(data: bytes, path: str) -> tuple[bytes, Any]:
    """The viewer's download of ``path`` (Session.stream_open, stream_next until b""):
    (the bytes handed over, the error message or None)."""
    import json

    from lockbox.viewer.session import Session

    s = Session()
    await s.open_source(AsyncBytesSource(data), location="e2e.lbox", name="e2e.lbox",
                        kind="file")
    await s.unlock(password=E2E["password"])
    opened = json.loads(await s.call("stream_open", json.dumps({"path": path})))["ok"]
    out = b""
    error = None
    while True:
        piece = await s.call_binary("stream_next", json.dumps({"handle": opened["handle"]}))
        if isinstance(piece, str):
            error = json.loads(piece)["error"]
            break
        if not piece:
            break
        out += bytes(piece)
    await s.close()
    return out, error


@pytest.mark.skipif(not E2E, reason="needs the harness's e2e archive")
def test_viewer_download_pool_equals_thread(pool: Any) -> None:
    """The viewer's downloads run the pipelined read on the pool: the same bytes as in
    this thread, and as the archive's files."""
    data = _e2e_archive()

    def digests() -> dict[str, str]:
        out = {}
        for path in E2E["files"]:
            got, error = asyncio.run(_viewer_download(data, path))
            assert error is None, error
            out[path] = hashlib.sha256(got).hexdigest()
        return out

    before = int(pool.poolInfo().frames)
    pooled = digests()
    assert int(pool.poolInfo().frames) > before
    _no_pool()
    assert digests() == pooled == {p: w["sha256"] for p, w in E2E["files"].items()}


@pytest.mark.skipif(not E2E, reason="needs the harness's e2e archive")
def test_viewer_download_tampered_chunk_releases_nothing(pool: Any) -> None:
    data = bytearray(_e2e_archive())

    async def refs() -> Any:
        box = await _e2e_box(bytes(data))
        e = await box.run(box.view.stat_flow("data/random.bin"))
        return e, await box.run(box.view.chunk_refs_flow(e, 0, e.chunks))

    entry, chunk_refs = asyncio.run(refs())
    assert entry.chunks == 4  # one batch
    bad = chunk_refs[2]
    data[bad.frame_offset + bad.frame_size - 40] ^= 0x01  # inside chunk 2's ciphertext
    for pooled in (True, False):
        if not pooled:
            _no_pool()
        got, error = asyncio.run(_viewer_download(bytes(data), "data/random.bin"))
        assert got == b""  # one batch: nothing of it was released
        assert error["kind"] == "corrupt" and error["path"] == "data/random.bin"
