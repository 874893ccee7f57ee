"""lockbox.formats.snap.store: layout, locations, FileStore writes (verified, temp + rename,
manifest last), HttpStore over a static HTTP server, StoreSource's address space."""

from __future__ import annotations

import functools
import http.server
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockbox.errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    NotFoundError,
    StorageError,
    UsageError,
)
from lockbox.formats.snap import store as store_mod
from lockbox.formats.snap.manifest import (
    EMPTY_BLAKE3,
    MAX_MANIFEST_SIZE,
    build_manifest,
    object_id,
    parse_manifest,
)
from lockbox.formats.snap.store import (
    SLOT_BITS,
    FileStore,
    HttpStore,
    ObjectSpace,
    StoreSource,
    StoreUri,
    manifest_path,
    object_path,
    open_store,
    parse_snap_location,
    snap_location,
)
from lockbox.ranges import ByteRange

SAMPLE = "49dc870df1de7fd60794cebce449f5ccdae575affaa67a24b62acb03e039db92"


def temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*.tmp")]


def test_layout_matches_snapdir_sharding() -> None:
    assert object_path(SAMPLE) == \
        ".objects/49d/c87/0df/1de7fd60794cebce449f5ccdae575affaa67a24b62acb03e039db92"
    assert manifest_path(SAMPLE) == \
        ".manifests/49d/c87/0df/1de7fd60794cebce449f5ccdae575affaa67a24b62acb03e039db92"
    for bad in ("", "ab", SAMPLE.upper(), SAMPLE + "0", "../" + SAMPLE[3:]):
        with pytest.raises(UsageError, match="64 lowercase hex"):
            object_path(bad)


@pytest.mark.parametrize("text, kind, root", [
    ("file:///srv/store", "file", "/srv/store"),
    ("file:///srv/store/", "file", "/srv/store"),
    ("file:/srv/store", "file", "/srv/store"),
    ("file://localhost/srv/store", "file", "/srv/store"),
    ("FILE:///srv/a%20b", "file", "/srv/a b"),
    ("file:///", "file", "/"),
    ("https://host/s", "http", "https://host/s/"),
    ("http://host:8080/s/", "http", "http://host:8080/s/"),
])
def test_store_uri(text: str, kind: str, root: str) -> None:
    assert StoreUri.parse(text) == StoreUri(kind, root)


def test_store_uri_plain_paths_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    assert StoreUri.parse("rel/st") == StoreUri("file", str(tmp_path / "rel" / "st"))
    assert StoreUri.parse("a#id=b") == StoreUri("file", str(tmp_path / "a#id=b"))
    for bad, why in (("s3://bucket/x", "unsupported store scheme"), ("", "empty"),
                     ("https:///x", "no host"), ("https://h/x?q=1", "no query")):
        with pytest.raises(UsageError, match=why):
            StoreUri.parse(bad)
    assert str(StoreUri.parse("file:///a b")) == "file:///a%20b"


def test_snap_locations() -> None:
    loc = f"file:///srv/st#id={SAMPLE}"
    assert parse_snap_location(loc) == (StoreUri("file", "/srv/st"), SAMPLE)
    assert parse_snap_location(f"https://h/st/#id={SAMPLE}") == \
        (StoreUri("http", "https://h/st/"), SAMPLE)
    assert snap_location("file:///srv/st", SAMPLE) == loc
    # the scheme is required: plain names with '#' stay file names
    assert parse_snap_location(f"/srv/st#id={SAMPLE}") is None
    assert parse_snap_location(f"st#id={SAMPLE}") is None
    assert parse_snap_location("https://h/x.lbox") is None
    with pytest.raises(UsageError, match="snapshot id"):
        parse_snap_location("file:///srv/st#id=abc")
    with pytest.raises(UsageError, match="snapshot id"):
        parse_snap_location(f"file:///srv/st#id={SAMPLE.upper()}")


# ----------------------------------------------------------------- FileStore


def test_put_object_stream_verifies_before_filing(tmp_path: Path) -> None:
    s = FileStore(tmp_path)
    h = object_id(b"hello")
    assert s.put_object_stream(h, [b"hel", memoryview(b"lo")]) is True
    assert s.put_object_stream(h, [b"hello"]) is False     # present: read, checked, kept
    assert Path(s.object_file(h)).read_bytes() == b"hello"
    assert s.has_object(h) and s.object_size(h) == 5
    bad = object_id(b"other")
    with pytest.raises(IntegrityError, match="nothing filed"):
        s.put_object_stream(bad, [b"hello"])
    assert not s.has_object(bad)
    with pytest.raises(IntegrityError, match="nothing filed"):
        s.put_object_stream(h, [b"hello"], expected_size=6)
    with pytest.raises(IntegrityError, match="more than the expected 4"):
        s.put_object_stream(h, [b"hello"], expected_size=4)
    assert temp_files(tmp_path) == []


def test_object_writer_aborts_on_exception(tmp_path: Path) -> None:
    s = FileStore(tmp_path)
    h = object_id(b"abc")
    with pytest.raises(RuntimeError), s.object_writer(h) as w:
        w.write(b"ab")
        assert os.path.exists(w.temp)
        raise RuntimeError("the stream broke")
    assert not s.has_object(h) and temp_files(tmp_path) == []
    with pytest.raises(UsageError, match="object id"):
        s.object_writer("nothex")


def test_get_object_and_iter_object_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr(store_mod, "HASH_CHUNK_SIZE", 4)
    s = FileStore(tmp_path)
    data = b"0123456789"
    h = s.put_object(data)
    assert s.get_object(h) == data and list(s.iter_object(h)) == [b"0123", b"4567", b"89"]
    e = s.put_object(b"")
    assert e == EMPTY_BLAKE3 and s.get_object(e) == b""
    Path(s.object_file(h)).write_bytes(b"0123456780")
    pieces = s.iter_object(h)
    assert next(pieces) == b"0123" and next(pieces) == b"4567"
    with pytest.raises(IntegrityError, match=f"object {h} .* is damaged"):
        next(pieces)     # the last piece is never handed out
    with pytest.raises(NotFoundError, match="not in the store"):
        s.get_object(SAMPLE)


def test_manifests(tmp_path: Path) -> None:
    s = FileStore(tmp_path)
    h = s.put_object(b"x")
    m = build_manifest([("f", "F", 0o644, 1, h)])
    assert s.put_manifest(m) == m.id
    assert s.has_manifest(m.id) and s.get_manifest(m.id) == m
    assert s.get_manifest_bytes(m.id) == m.render()
    assert s.list_manifest_ids() == [m.id]
    assert s.put_manifest(m.render(), m.id) == m.id          # again: nothing changes
    with pytest.raises(IntegrityError, match=f"hashes to {m.id}, not {SAMPLE}"):
        s.put_manifest(m, SAMPLE)
    missing = build_manifest([("f", "F", 0o644, 1, SAMPLE)])
    with pytest.raises(StorageError, match=r"1 object.* not in the store .* not filed"):
        s.put_manifest(missing)
    assert not s.has_manifest(missing.id)
    assert s.put_manifest(missing, require_objects=False) == missing.id
    with pytest.raises(NotFoundError, match=f"no snapshot {SAMPLE}"):
        s.get_manifest(SAMPLE)
    assert temp_files(tmp_path) == []


def test_get_manifest_checks_the_id_and_the_format(tmp_path: Path) -> None:
    s = FileStore(tmp_path)
    m = build_manifest([("f", "F", 0o644, 0, EMPTY_BLAKE3)])
    path = Path(s.manifest_file(m.id))
    path.parent.mkdir(parents=True)
    # comments and order do not count (snapdir hashes the canonical rendering)
    lines = m.render().decode().splitlines()
    path.write_text("# hello\n" + "\n".join(reversed(lines)) + "\n")
    assert s.get_manifest(m.id) == m
    path.write_bytes(m.render().replace(b" 0 ./f", b" 1 ./f"))
    with pytest.raises(IntegrityError, match="hashes to"):
        s.get_manifest(m.id)
    path.write_bytes(b"garbage\n")
    with pytest.raises(FormatError, match="manifest line 1"):
        s.get_manifest(m.id)


def test_get_manifest_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "MAX_MANIFEST_SIZE", 10)
    s = FileStore(tmp_path)
    path = Path(s.manifest_file(SAMPLE))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * 11)
    with pytest.raises(LimitExceededError, match="over 10 bytes"):
        s.get_manifest(SAMPLE)
    assert MAX_MANIFEST_SIZE == 64 << 20


def _record_sync_calls(monkeypatch: pytest.MonkeyPatch, base: Path) -> list[str]:
    """os.fsync, os.rename and the store's syncfs, as they happen (paths below ``base``,
    written with a leading "/"; ``base`` itself is "/")."""
    events: list[str] = []
    lock = threading.Lock()
    real_fsync, real_rename = os.fsync, os.rename

    def short(path: str) -> str:
        return "/" + os.path.relpath(path, base).replace(os.sep, "/").removeprefix(".")

    def fsync(fd: int) -> None:
        with lock:
            events.append("fsync " + short(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a: str, b: str) -> None:
        events.append("rename " + short(str(b)))
        real_rename(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(store_mod, "_syncfs", lambda root: events.append(
        "syncfs " + short(root)))
    return events


def _chain(path: str) -> set[str]:
    """``path``'s directories, up to the store root "/store"."""
    out = set()
    while path != "/store":
        path = os.path.dirname(path)
        out.add(path)
    return out


def test_fsync_barrier_makes_every_new_name_durable_before_the_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _record_sync_calls(monkeypatch, tmp_path)
    s = FileStore(tmp_path / "store", create=True, sync="fsync")
    assert s.sync_method == "fsync"
    hashes = [s.put_object(data) for data in (b"one", b"two", b"three")]
    m = build_manifest([(f"f{i}", "F", 0o644, 3, h) for i, h in enumerate(hashes)])
    s.put_manifest(m, require_objects=False)
    objs = ["/store/" + object_path(h) for h in hashes]
    man = "/store/" + manifest_path(m.id)
    assert events[:3] == [f"rename {o}" for o in objs]
    temp = next(i for i, e in enumerate(events) if e.endswith(".tmp"))
    # the barrier: each object, every directory up to the store root (makedirs made them
    # all), and the directory above the root that create= added an entry to
    barrier = events[3:temp]
    expected = set(objs).union(*(_chain(o) for o in objs)) | {"/"}
    assert sorted(barrier) == sorted(f"fsync {p}" for p in expected)
    assert events[temp].startswith(f"fsync {man}.")
    # the manifest's name, its new shard directories, .manifests and the root, in order
    assert events[temp + 1:] == [f"rename {man}"] + [
        f"fsync {d}" for d in sorted(_chain(man), key=len, reverse=True)]


def test_fsync_barrier_covers_the_directories_create_made_above_the_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    events = _record_sync_calls(monkeypatch, tmp_path)
    s = FileStore(tmp_path / "a" / "b" / "store", create=True, sync="fsync")
    s.barrier()
    assert sorted(events) == ["fsync /a", "fsync /a/b"]
    events.clear()
    s.barrier()  # nothing filed since
    assert events == []


def test_syncfs_barrier_is_one_call_before_the_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "syncfs_unavailable", lambda root: None)
    events = _record_sync_calls(monkeypatch, tmp_path)
    s = FileStore(tmp_path / "store", create=True)
    assert s.sync_method == "syncfs"
    h = s.put_object(b"data")
    m = build_manifest([("f", "F", 0o644, 4, h)])
    s.put_manifest(m)
    obj, man = "/store/" + object_path(h), "/store/" + manifest_path(m.id)
    assert events[:2] == [f"rename {obj}", "syncfs /store"]
    assert events[2].startswith(f"fsync {man}.") and events[2].endswith(".tmp")
    assert events[3:] == [f"rename {man}", "syncfs /store"]
    # a new store's first barrier syncs even with nothing filed (objects an earlier,
    # killed receiver filed and never synced); then only when something was filed
    events.clear()
    fresh = FileStore(tmp_path / "store", sync="syncfs")
    fresh.barrier()
    fresh.barrier()
    assert events == ["syncfs /store"]


def test_sync_modes_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown sync mode 'never'"):
        FileStore(tmp_path, sync="never")
    monkeypatch.setattr(store_mod, "syncfs_unavailable", lambda root: "a test says no")
    assert FileStore(tmp_path).sync_method == "fsync"
    with pytest.raises(UsageError, match=r"syncfs cannot make .* durable: a test says no"):
        FileStore(tmp_path, sync="syncfs").barrier()


def test_a_failing_sync_files_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    import errno

    def eio(*args: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    for mode in ("fsync", "syncfs"):
        monkeypatch.setattr(store_mod, "syncfs_unavailable", lambda root: None)
        s = FileStore(tmp_path / mode, create=True, sync=mode)
        h = s.put_object(b"data")
        monkeypatch.setattr(os, "fsync", eio)
        monkeypatch.setattr(store_mod, "_syncfs", eio)
        m = build_manifest([("f", "F", 0o644, 4, h)])
        with pytest.raises(StorageError, match=r"cannot sync the store .*Input/output"):
            s.put_manifest(m)
        assert not s.has_manifest(m.id) and not temp_files(tmp_path)
        monkeypatch.undo()
        # the failure was reported once; a later sync could succeed over lost data
        with pytest.raises(StorageError, match="may be lost"):
            s.put_manifest(m)
        assert not s.has_manifest(m.id)


@pytest.mark.skipif(store_mod.syncfs_unavailable(tempfile.gettempdir()) is not None,
                    reason="syncfs is not used here")
def test_the_real_syncfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes
    import errno

    s = FileStore(tmp_path, sync="syncfs")
    h = s.put_object(b"x" * 5000)
    s.put_manifest(build_manifest([("f", "F", 0o644, 5000, h)]))
    assert s.get_object(h) == b"x" * 5000
    store_mod._syncfs(str(tmp_path / "no store yet"))  # nothing there to sync

    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(store_mod, "_libc_syncfs", failing)
    with pytest.raises(OSError, match="Input/output error"):
        store_mod._syncfs(str(tmp_path))


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 0:40 / /srv rw - xfs /dev/vdb rw
41 40 0:41 / /srv/fuse\\040dir rw - fuse.sshfs host: rw
42 40 0:42 / /srv/nfs rw master:3 optional:4 - nfs4 server:/x rw
43 27 0:43 / /srv rw - btrfs /dev/vdc rw
"""


@pytest.mark.parametrize("path, fstype", [
    ("/", "ext4"), ("/home/u/store", "ext4"), ("/proc/1", "proc"), ("/srvx", "ext4"),
    ("/srv", "btrfs"),  # the later mount on /srv hides the earlier
    ("/srv/fuse dir/s", "fuse.sshfs"), ("/srv/nfs/a", "nfs4"), ("/srv/nfsx", "btrfs"),
])
def test_mount_fstype(path: str, fstype: str) -> None:
    assert store_mod._mount_fstype(path, MOUNTINFO) == fstype


def test_syncfs_unavailable_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    assert store_mod._kernel_version("6.18.44-fc-v1147") == (6, 18)
    assert store_mod._kernel_version("5.4.0-150-generic") == (5, 4)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert store_mod.syncfs_unavailable(str(tmp_path)) == "syncfs is Linux's (darwin)"
    monkeypatch.setattr(sys, "platform", "linux")
    uname = os.uname()

    def fake_uname(release: str) -> os.uname_result:
        return os.uname_result((uname.sysname, uname.nodename, release, uname.version,
                                uname.machine))

    monkeypatch.setattr(os, "uname", lambda: fake_uname("5.4.0-150-generic"))
    assert "does not report write-back errors" in str(
        store_mod.syncfs_unavailable(str(tmp_path)))
    monkeypatch.setattr(os, "uname", lambda: fake_uname("6.1.0"))
    monkeypatch.setattr(store_mod, "_mount_fstype", lambda path, text: "fuse.sshfs")
    assert store_mod.syncfs_unavailable(str(tmp_path)) == (
        "its filesystem (fuse.sshfs) is not one syncfs is trusted on")


def test_object_writer_hashed_by_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    s = FileStore(tmp_path)
    h = object_id(b"payload")
    with monkeypatch.context() as patch:
        patch.setattr(store_mod, "new_hasher", lambda: pytest.fail("hashed a second time"))
        with s.object_writer(h, 7, hashed_by_caller=True) as w:
            w.write(b"payload")
            assert w.commit()
    assert s.get_object(h) == b"payload"
    other = object_id(b"other")
    with s.object_writer(other, 5, hashed_by_caller=True) as w:
        w.write(b"oth")
        with pytest.raises(IntegrityError, match="3 bytes received, 5 expected"):
            w.commit()
    assert not s.has_object(other) and not temp_files(tmp_path)


def test_missing_store(tmp_path: Path) -> None:
    s = FileStore(tmp_path / "nope")
    with pytest.raises(NotFoundError, match="no store at"):
        s.get_manifest(SAMPLE)
    assert not s.has_object(SAMPLE)
    FileStore(tmp_path / "made", create=True)
    assert (tmp_path / "made").is_dir()
    with pytest.raises(UsageError, match="not a local store"):
        FileStore("https://h/x")


# ----------------------------------------------------------------- HTTP


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Python's plain static file server (no Range support: every answer is a 200)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/store/"
    finally:
        server.shutdown()
        server.server_close()


def test_http_store_on_a_static_server(static_server: tuple[Path, str]) -> None:
    root, url = static_server
    fs = FileStore(root / "store", create=True)
    h = fs.put_object(b"payload" * 1000)
    m = build_manifest([("d/f", "F", 0o644, 7000, h)])
    fs.put_manifest(m)
    hs = open_store(url)
    assert isinstance(hs, HttpStore)
    try:
        assert hs.get_manifest(m.id) == m
        assert hs.get_object(h) == b"payload" * 1000
        assert hs.read_range(object_path(h), 7, 7) == b"payload"
        assert hs.has_object(h) and not hs.has_object(SAMPLE)
        assert hs.has_manifest(m.id) and not hs.has_manifest(SAMPLE)
        with pytest.raises(NotFoundError, match=f"no snapshot {SAMPLE}"):
            hs.get_manifest(SAMPLE)
        Path(fs.object_file(h)).write_bytes(b"payload" * 999 + b"paylOad")
        with pytest.raises(IntegrityError, match="is damaged"):
            hs.get_object(h)
    finally:
        hs.close()


def test_http_store_transport_answers() -> None:
    files = {"store/" + object_path(SAMPLE): b"0123456789"}
    calls: list[tuple[str, ByteRange | None]] = []

    def transport(url: str, want: ByteRange | None) -> bytes | None:
        calls.append((url, want))
        body = files.get(url.removeprefix("https://h/"))
        if body is None:
            return None
        return body if want is None else body[want.offset:want.end]   # as a 206 would

    hs = HttpStore("https://h/store", transport=transport)
    assert hs.read_range(object_path(SAMPLE), 2, 3) == b"234"
    assert calls[-1] == (f"https://h/store/{object_path(SAMPLE)}", ByteRange(2, 3))
    assert hs.read_range(object_path(SAMPLE), 0, 0) == b""
    with pytest.raises(IntegrityError):
        hs.get_object(SAMPLE)
    with pytest.raises(UsageError, match="not an http"):
        HttpStore("/local")


def test_http_body_slicing_of_a_whole_answer() -> None:
    # a server that ignores Range answers 200 with everything: the store slices
    assert store_mod._cut(b"0123456789", ByteRange(2, 3), 200) == b"234"
    assert store_mod._cut(b"234", ByteRange(2, 3), 206) == b"234"
    assert store_mod._body_cap(ByteRange(2, 3), 200) == 5
    assert store_mod._body_cap(ByteRange(2, 3), 206) == 3


# ----------------------------------------------------------------- StoreSource


def test_store_source_address_space(tmp_path: Path) -> None:
    s = FileStore(tmp_path)
    a, b = s.put_object(b"first"), s.put_object(b"second")
    m = build_manifest([("a", "F", 0o644, 5, a), ("b", "F", 0o644, 6, b)])
    s.put_manifest(m)
    src = StoreSource(s, m.id)
    space = src.space
    ra = space.object_range(a, 1, 3)
    rb = space.object_range(b, 0, 100)
    assert ra == ByteRange((1 << SLOT_BITS) + 1, 3) and rb.offset == 2 << SLOT_BITS
    assert space.object_range(a, 0, 1).offset == 1 << SLOT_BITS   # the same slot again
    assert src.read([space.manifest_range(), ra, rb]) == [m.render(), b"irs", b"second"]
    assert src.stats.requests == 3
    with pytest.raises(UsageError, match="no store file at slot 9"):
        src.read([ByteRange(9 << SLOT_BITS, 1)])
    with pytest.raises(UsageError, match="across two store files"):
        src.read([ByteRange((2 << SLOT_BITS) - 1, 2)])
    src.close()
    with pytest.raises(UsageError, match="closed"):
        src.read([ra])
    assert isinstance(ObjectSpace(m.id).manifest_range(), ByteRange)
    assert parse_manifest(m.render()) == m
