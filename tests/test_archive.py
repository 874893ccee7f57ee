"""The public API end to end: create, write, read back, reopen, extract, keys."""

from __future__ import annotations

import asyncio
import io
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import lockbox
from lockbox import (
    AsyncLockbox,
    Identity,
    InvalidPathError,
    LockedError,
    NotFoundError,
    StorageError,
    UnsafePathError,
    UsageError,
    WrongKeyError,
)
from lockbox.formats.lbox.wire.constants import (
    FORMAT_VERSION,
    INLINE_CHUNK_REFS,
    PACK_FILE_LIMIT,
    PACKED_FORMAT_VERSION,
)
from lockbox.formats.lbox.wire.entry import LAYOUT_CHUNKS, LAYOUT_INDEX, LAYOUT_PACKED
from lockbox.sources import AsyncBytesSource, AsyncFileSource, BytesSource

CHUNK = 4096
ASYNC_TIMEOUT = 30


def rand_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def run(coro):
    async def bounded():
        return await asyncio.wait_for(coro, ASYNC_TIMEOUT)

    return asyncio.run(bounded())


def tree(box) -> dict[str, tuple]:
    """path -> (type, content or target) of every entry, read through the API."""
    out: dict[str, tuple] = {}
    for e in box.ls(recursive=True):
        if e.type == "file":
            out[e.path] = ("file", box.read_bytes(e.path))
        elif e.type == "symlink":
            out[e.path] = ("symlink", e.target)
        else:
            out[e.path] = ("dir",)
    return out


def same_bytes(path: Path, before: bytes) -> bool:
    """Compare file contents (and say where they differ, without a huge diff)."""
    after = path.read_bytes()
    if after == before:
        return True
    n = min(len(after), len(before))
    first = next((i for i in range(n) if after[i] != before[i]), n)
    pytest.fail(f"file changed: {len(before)} -> {len(after)} bytes, first difference at "
                f"offset {first}")


def entry_layout(box, path: str):
    """The stored entry (internal): to check which chunk-ref layout a file got."""
    return box.run(box.view.stat_flow(path))


@pytest.fixture
def new_box(tmp_path, weak_argon2):
    """A fresh, empty, opened archive (4 KiB chunks) and its path."""
    path = tmp_path / "new.lbox"
    box = lockbox.create(path, password="pw", argon2=weak_argon2, chunk_size=CHUNK)
    yield box, path
    box.close()


def reopen(path, **kw):
    kw.setdefault("password", "pw")
    return lockbox.open(path, **kw)


# -- basics ----------------------------------------------------------------------------------


def test_create_gives_an_empty_generation_1_archive(new_box):
    box, path = new_box
    assert box.ls() == []
    assert box.ls(recursive=True) == []
    assert box.env_items() == []
    info = box.info()
    assert (info.generation, info.files, info.dirs, info.symlinks, info.file_bytes) == (
        1, 0, 0, 0, 0)
    assert info.chunk_size == CHUNK
    assert box.verify().ok
    assert path.stat().st_size == info.archive_end
    with reopen(path) as again:
        assert again.generation == 1
        assert again.archive_id == box.archive_id


def test_create_can_be_called_twice(tmp_path):
    """``lockbox.create`` must stay the function after its first call (in a fresh
    interpreter: the first call is the one that matters)."""
    code = (
        "import sys, lockbox\n"
        "w = lockbox.Argon2Params(time_cost=1, memory_kib=64)\n"
        "for name in ('one.lbox', 'two.lbox'):\n"
        "    lockbox.create(sys.argv[1] + '/' + name, password='pw', argon2=w).close()\n"
        "assert callable(lockbox.create)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("one.lbox", "two.lbox"):
        with reopen(tmp_path / name) as box:
            assert box.generation == 1


def test_create_refuses_existing_path_and_bad_options(tmp_path, weak_argon2):
    path = tmp_path / "x.lbox"
    path.write_bytes(b"keep me")
    with pytest.raises(StorageError):
        lockbox.create(path, password="pw", argon2=weak_argon2)
    assert path.read_bytes() == b"keep me"
    with pytest.raises(UsageError):
        lockbox.create(tmp_path / "y.lbox", argon2=weak_argon2)  # no password, no recipient
    with pytest.raises(UsageError):
        lockbox.create(tmp_path / "z.lbox", password="pw", argon2=weak_argon2, chunk_size=5000)
    assert not (tmp_path / "y.lbox").exists() and not (tmp_path / "z.lbox").exists()


def blake3_hex(crypto, data: bytes) -> str:
    h = crypto.blake3()
    h.update(data)
    return h.digest().hex()


def test_round_trip_nested_dirs(make_archive, crypto):
    files = {
        "top.txt": b"top",
        "a/one.txt": b"1" * 10,
        "a/b/two.bin": rand_bytes(5000, 2),
        "a/b/c/three": b"",
        "z/\u00e9t\u00e9.txt": b"unicode names",
    }
    path = make_archive(files)
    with reopen(path) as box:
        assert box.generation == 2
        got = tree(box)
        want_dirs = {"a", "a/b", "a/b/c", "z"}
        assert {p for p, v in got.items() if v[0] == "dir"} == want_dirs
        assert {p: v[1] for p, v in got.items() if v[0] == "file"} == files
        assert [e.name for e in box.ls()] == ["a", "top.txt", "z"]
        assert [e.path for e in box.ls("a")] == ["a/b", "a/one.txt"]
        assert [e.path for e in box.ls("a/b", recursive=True)] == [
            "a/b/c", "a/b/c/three", "a/b/two.bin"]
        st = box.stat("a/b/two.bin")
        assert st.is_file and st.size == 5000
        assert st.blake3 == blake3_hex(crypto, files["a/b/two.bin"])
        assert st.stored_size > 5000  # frames carry headers, tags and a preamble
        assert box.stat("a/b").is_dir
        assert box.stat("/a//b/") == box.stat("a/b")  # paths are normalized
        assert box.exists("a/one.txt") and not box.exists("a/nope")
        with pytest.raises(NotFoundError):
            box.stat("nope")
        with pytest.raises(NotFoundError):
            box.read_bytes("a/nope")
        with pytest.raises(InvalidPathError):
            box.ls("top.txt")
        with pytest.raises(UsageError):
            box.read_bytes("a")
        assert box.verify().ok


@pytest.mark.parametrize("size,chunk_size", [
    # one chunk of at most PACK_FILE_LIMIT bytes: a member of a pack (layout 2)
    (0, CHUNK), (1, CHUNK), (CHUNK - 1, CHUNK), (CHUNK, CHUNK),
    (PACK_FILE_LIMIT, 2 * PACK_FILE_LIMIT),
    # one chunk over PACK_FILE_LIMIT: its own frame, refs inline (layout 0)
    (PACK_FILE_LIMIT + 1, 2 * PACK_FILE_LIMIT), (2 * PACK_FILE_LIMIT, 2 * PACK_FILE_LIMIT),
    # several chunks: inline refs up to INLINE_CHUNK_REFS, then the chunk index (layout 1)
    (CHUNK + 1, CHUNK), (2 * CHUNK, CHUNK),
    (INLINE_CHUNK_REFS * CHUNK, CHUNK),  # exactly 8 chunks: refs inline
    (INLINE_CHUNK_REFS * CHUNK + 1, CHUNK),  # 9 chunks: chunk-index layout
])
def test_chunk_boundaries_and_layouts(make_archive, size, chunk_size):
    data = rand_bytes(size, size)
    path = make_archive({"f": data}, chunk_size=chunk_size)
    with reopen(path) as box:
        assert box.read_bytes("f") == data
        assert b"".join(bytes(p) for p in box.iter_bytes("f")) == data
        e = entry_layout(box, "f")
        chunks = max(1, -(-size // chunk_size))
        assert e.chunks == chunks
        if size <= PACK_FILE_LIMIT and size <= chunk_size:
            assert e.layout == LAYOUT_PACKED and len(e.refs) == 1 and e.member_no == 0
            assert box.view.slot.version == PACKED_FORMAT_VERSION
        else:
            assert e.layout == (LAYOUT_INDEX if chunks > INLINE_CHUNK_REFS else LAYOUT_CHUNKS)
            assert box.view.slot.version == FORMAT_VERSION  # no pack: version 2 as before
        with box.open_file("f") as f:
            assert f.read() == data
        assert box.verify().ok


def test_empty_file(make_archive, crypto):
    path = make_archive({"empty": b"", "d/empty2": b""})
    with reopen(path) as box:
        st = box.stat("empty")
        assert st.is_file and st.size == 0
        assert st.blake3 == blake3_hex(crypto, b"")
        assert box.read_bytes("empty") == b""
        with box.open_file("d/empty2") as f:
            assert f.read() == b""
            assert f.read(10) == b""
            assert f.seek(0, io.SEEK_END) == 0
        assert box.info().files == 2 and box.info().file_bytes == 0


def _read_exactly(raw, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        piece = raw.read(n - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


def test_open_file_seek_and_read_across_chunk_boundaries(make_archive):
    size = 100 * CHUNK + 123  # ~100 chunks: index layout, several batches of chunks
    data = rand_bytes(size, 7)
    path = make_archive({"big.bin": data, "small": b"x"})
    rng = random.Random(1)
    offsets = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 50 * CHUNK - 2, size - 1, size, size + 10]
    offsets += [rng.randrange(size) for _ in range(60)]
    with reopen(path) as box:
        assert entry_layout(box, "big.bin").layout == LAYOUT_INDEX
        raw = box.open_file("big.bin")
        buffered = io.BufferedReader(box.open_file("big.bin"), buffer_size=1000)
        assert raw.seekable() and raw.readable() and raw.size == size
        for off in offsets:
            n = rng.choice([1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
            assert raw.seek(off) == off and raw.tell() == off
            assert _read_exactly(raw, n) == data[off:off + n]
            buffered.seek(off)
            assert buffered.read(n) == data[off:off + n]
        # a raw read may cross a chunk boundary (it reads ahead in windows) and never
        # returns empty before EOF
        raw.seek(CHUNK - 3)
        assert raw.read(10) == data[CHUNK - 3:CHUNK + 7]
        assert raw.seek(-5, io.SEEK_END) == size - 5
        assert raw.read(100) == data[-5:]
        assert raw.read(100) == b""
        raw.seek(10)
        assert raw.seek(5, io.SEEK_CUR) == 15
        assert raw.read(3) == data[15:18]
        with pytest.raises(ValueError):
            raw.seek(-1)
        raw.seek(0)
        assert raw.readall() == data
        raw.close()
        buffered.close()


def test_symlink_and_type_errors(new_box):
    box, path = new_box
    with box.writer() as w:
        w.add_bytes("d/target.txt", b"t")
        w.symlink("d/link", "target.txt")
        w.symlink("abs", "/etc/hostname")
        with pytest.raises(InvalidPathError):
            w.symlink("bad", "")
    with reopen(path) as box2:
        st = box2.stat("d/link")
        assert (st.type, st.target) == ("symlink", "target.txt")
        assert box2.stat("abs").target == "/etc/hostname"
        with pytest.raises(UsageError):
            box2.read_bytes("d/link")
        with pytest.raises(UsageError):
            box2.open_file("d")
        assert box2.info().symlinks == 2


def test_invalid_paths_and_type_conflicts(new_box):
    box, _ = new_box
    with box.writer() as w:
        w.add_bytes("f", b"file")
        w.mkdir("d")
        for bad in ("../x", "a/../../x", "nul\x00byte"):
            with pytest.raises(InvalidPathError):
                w.add_bytes(bad, b"x")
        with pytest.raises(InvalidPathError):
            w.add_bytes("", b"x")  # the root
        with pytest.raises(InvalidPathError):
            w.add_bytes("f/child", b"x")  # parent is a file
        with pytest.raises(InvalidPathError):
            w.add_bytes("d", b"x")  # a directory cannot become a file
        with pytest.raises(InvalidPathError):
            w.mkdir("f")  # nor a file a directory
        with pytest.raises(InvalidPathError):
            w.remove("")
        with pytest.raises(NotFoundError):
            w.remove("missing")
        assert w.exists("f") and w.exists("d") and not w.exists("f/child")


def test_replace_file_updates_content_and_stats(make_archive):
    path = make_archive({"f": b"a" * 10, "g": b"b" * 5})
    with reopen(path) as box, box.writer() as w:
        w.add_bytes("f", rand_bytes(3 * CHUNK, 3))
    with reopen(path) as box:
        assert box.read_bytes("f") == rand_bytes(3 * CHUNK, 3)
        assert box.read_bytes("g") == b"b" * 5
        info = box.info()
        assert (info.generation, info.files, info.file_bytes) == (3, 2, 3 * CHUNK + 5)
        assert box.verify().ok


def test_remove_recursive(make_archive):
    path = make_archive({"d/a": b"1", "d/e/b": b"2", "d/e/f/c": b"3", "keep": b"k",
                         "dd/x": b"prefix sibling"})
    with reopen(path) as box, box.writer() as w:
        with pytest.raises(InvalidPathError):
            w.remove("d")  # not empty
        assert w.remove("d/e/f/c") == 1
        assert w.remove("d", recursive=True) == 5  # d, d/a, d/e, d/e/b, d/e/f
        assert not w.exists("d/e")
    with reopen(path) as box:
        assert [e.path for e in box.ls(recursive=True)] == ["dd", "dd/x", "keep"]
        with pytest.raises(NotFoundError):
            box.stat("d")
        info = box.info()
        assert (info.files, info.dirs, info.file_bytes) == (2, 1, 15)
        assert box.verify().ok


def test_move_directory_and_file(make_archive):
    path = make_archive({"a/x": b"x", "a/sub/y": b"y", "b/z": b"z", "f": b"f"})
    with reopen(path) as box, box.writer() as w:
        with pytest.raises(InvalidPathError):
            w.move("a", "a/sub/inside")  # into itself
        with pytest.raises(InvalidPathError):
            w.move("a/x", "f")  # destination exists
        with pytest.raises(NotFoundError):
            w.move("nope", "q")
        w.move("a", "new/place")  # missing parents are created
        w.move("f", "b")  # into an existing directory
    with reopen(path) as box:
        assert tree(box) == {
            "b": ("dir",), "b/f": ("file", b"f"), "b/z": ("file", b"z"),
            "new": ("dir",), "new/place": ("dir",), "new/place/sub": ("dir",),
            "new/place/sub/y": ("file", b"y"), "new/place/x": ("file", b"x"),
        }
        info = box.info()
        assert (info.files, info.dirs) == (4, 4)
        assert box.verify().ok


def test_env_values(new_box):
    box, path = new_box
    with box.writer() as w:
        w.env_set("B", "text")
        w.env_set("A", b"\x00\xffbinary")
        w.env_set("C", b"")
        with pytest.raises(InvalidPathError):
            w.env_set("", "x")
        with pytest.raises(UsageError):
            w.env_set("BIG", b"x" * (64 * 1024 + 1))
        with pytest.raises(NotFoundError):
            w.env_remove("MISSING")
    with reopen(path) as box2:
        assert box2.env_items() == [("A", b"\x00\xffbinary"), ("B", b"text"), ("C", b"")]
        assert box2.env_get("B") == b"text"
        assert box2.env_names() == ["A", "B", "C"]
        assert box2.info().env_count == 3
        with pytest.raises(NotFoundError):
            box2.env_get("D")
        with box2.writer() as w:
            w.env_remove("A")
            w.env_set("B", "changed")
    with reopen(path) as box3:
        assert box3.env_items() == [("B", b"changed"), ("C", b"")]


def test_many_commits_in_one_writer_and_reopen(new_box):
    box, path = new_box
    with box.writer() as w:
        for i in range(5):
            w.add_bytes(f"f{i}", bytes([i]) * (i * 1000))
            view = w.commit()
            assert view.generation == 2 + i
        assert not w.dirty
    # the writer's archive saw every commit
    assert box.generation == 6
    with reopen(path) as again:
        assert again.generation == 6
        assert {k: v[1] for k, v in tree(again).items()} == {
            f"f{i}": bytes([i]) * (i * 1000) for i in range(5)}
        assert again.verify().ok


def test_clean_writer_does_not_commit(make_archive):
    path = make_archive({"a": b"1"})
    before = path.read_bytes()
    with reopen(path) as box, box.writer() as w:
        assert not w.dirty
    assert same_bytes(path, before)


def test_box_still_readable_after_its_own_writer_commits(new_box):
    """``create()`` returns an opened archive meant for ``writer()``; after the
    writer commits, that same object must read the new state and accept another
    writer (its source must follow the archive it wrote itself)."""
    box, path = new_box
    with box.writer() as w:
        w.add_bytes("d/f", b"first")
    assert box.read_bytes("d/f") == b"first"
    with box.writer() as w:
        w.add_bytes("g", b"second")
    assert box.read_bytes("g") == b"second"
    assert box.info().archive_size == path.stat().st_size
    assert box.verify().ok


def test_writer_aborts_on_exception_and_file_is_unchanged(make_archive):
    path = make_archive({"a": b"1", "d/b": b"2"}, env={"E": "v"})
    before = path.read_bytes()
    with reopen(path) as box:
        with pytest.raises(RuntimeError, match="boom"), box.writer() as w:
            w.add_bytes("big", rand_bytes(20 * CHUNK, 9))
            w.remove("d", recursive=True)
            w.env_set("E", "changed")
            raise RuntimeError("boom")
    assert same_bytes(path, before)
    with reopen(path) as box:
        assert box.generation == 2
        assert tree(box) == {"a": ("file", b"1"), "d": ("dir",), "d/b": ("file", b"2")}
        assert box.env_items() == [("E", b"v")]


def test_aborted_writer_leaves_reused_free_pages_as_they_were(make_archive):
    """With freed (FREE) pages inside the archive a new session writes into them
    (page reuse); an aborted session must still leave the file byte-identical."""
    path = make_archive({"big": rand_bytes(12 * CHUNK, 5), "keep": b"k"})
    with reopen(path) as box, box.writer() as w:
        w.remove("big")
    with reopen(path) as box, box.writer() as w:
        w.add_bytes("later", b"l")  # "big"'s frames are redacted by now
    before = path.read_bytes()
    with reopen(path) as box:
        with pytest.raises(RuntimeError), box.writer() as w:
            w.add_bytes("new", rand_bytes(8 * CHUNK, 6))
            raise RuntimeError("abort")
    assert same_bytes(path, before)
    with reopen(path) as box:
        assert tree(box) == {"keep": ("file", b"k"), "later": ("file", b"l")}
        assert box.verify().ok


def test_explicit_abort_discards_staged_changes(make_archive):
    path = make_archive({"a": b"1"})
    before = path.read_bytes()
    with reopen(path) as box:
        w = box.writer()
        try:
            w.add_bytes("b", rand_bytes(5 * CHUNK))
            w.abort()
            assert not w.dirty
        finally:
            w.close()
    assert same_bytes(path, before)


def test_abort_forgets_directories_staged_before_it(new_box):
    """After ``abort()`` the writer must not believe that directories it had
    staged (and discarded) still exist: adding below them must create them again,
    and a path that became a file is not a directory."""
    box, path = new_box
    w = box.writer()
    try:
        w.mkdir("d")
        w.add_bytes("e/f", b"1")
        w.abort()
        assert not w.exists("d") and not w.exists("e")
        w.add_bytes("d/x", b"x")  # must create "d" again
        w.add_bytes("e", b"now a file")
        with pytest.raises(InvalidPathError):
            w.mkdir("e/sub")  # "e" is a file now
        w.commit()
    finally:
        w.close()
    with reopen(path) as b:
        assert tree(b) == {"d": ("dir",), "d/x": ("file", b"x"), "e": ("file", b"now a file")}
        assert [e.path for e in b.ls()] == ["d", "e"]
        assert b.info().dirs == 1


def test_add_tree_never_replaces_a_directory_with_a_file(tmp_path, make_archive):
    """add_tree's fast path for files below directories created in this session
    must still refuse to put a file where a (moved-in) directory is."""
    path = make_archive({"c/x": b"committed child", "n2/c/y": b"y"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "c").write_bytes(b"host file named like the directory")
    with reopen(path) as box, box.writer() as w:
        with pytest.raises(InvalidPathError):
            w.add_tree(src, "n2")  # committed directory n2/c: refused
        w.add_bytes("n/placeholder", b"p")  # "n" is new in this session
        w.move("c", "n/c")  # a committed directory moved below it
        with pytest.raises(InvalidPathError):
            w.add_tree(src, "n")
        assert w._get_entry("n/c").is_dir
    with reopen(path) as box:
        listing = {e.path: e.type for e in box.ls(recursive=True)}
        assert listing["n/c"] == "dir" and listing["n/c/x"] == "file"
        assert box.verify().ok


def test_second_writer_is_locked_out(make_archive):
    path = make_archive({"a": b"1"})
    with reopen(path) as box1, reopen(path) as box2:
        w1 = box1.writer()
        try:
            with pytest.raises(LockedError):
                box2.writer()
            with pytest.raises(LockedError):
                box1.writer()  # the same archive object cannot stack writers either
        finally:
            w1.close()
        with box2.writer() as w2:  # released on close
            w2.add_bytes("b", b"2")
    with reopen(path) as box:
        assert box.read_bytes("b") == b"2"


def test_closed_writer_refuses_commit(make_archive):
    path = make_archive({"a": b"1"})
    with reopen(path) as box:
        w = box.writer()
        w.close()
        with pytest.raises(UsageError):
            w.commit()


def test_writer_needs_a_local_file(make_archive):
    path = make_archive({"a": b"1"})
    box = lockbox.Lockbox(BytesSource(path.read_bytes()), password="pw")
    with pytest.raises(UsageError):
        box.writer()


# -- async ---------------------------------------------------------------------------------


def _sync_snapshot(box):
    return {
        "ls": box.ls(), "lsr": box.ls(recursive=True), "ls_d": box.ls("d"),
        "stat": box.stat("d/big"), "big": box.read_bytes("d/big"),
        "small": box.read_bytes("small"), "env": box.env_items(),
        "gen": box.info().generation, "ok": box.verify().ok,
    }


async def _async_snapshot(box: AsyncLockbox):
    return {
        "ls": await box.ls(), "lsr": await box.ls(recursive=True), "ls_d": await box.ls("d"),
        "stat": await box.stat("d/big"), "big": await box.read_bytes("d/big"),
        "small": await box.read_bytes("small"), "env": await box.env_items(),
        "gen": box.info().generation, "ok": (await box.verify()).ok,
    }


@pytest.mark.parametrize("how", ["bytes", "file", "path"])
def test_async_facade_matches_sync(make_archive, how):
    path = make_archive({"d/big": rand_bytes(12 * CHUNK + 7, 4), "small": b"s",
                         "d/e/f": b"deep"}, env={"K": "v"})
    with reopen(path) as box:
        want = _sync_snapshot(box)
    assert want["ok"] and want["big"] == rand_bytes(12 * CHUNK + 7, 4)

    async def go():
        if how == "bytes":
            location = AsyncBytesSource(path.read_bytes())
        elif how == "file":
            location = AsyncFileSource(path)
        else:
            location = str(path)
        box = await AsyncLockbox.open(location, password="pw")
        async with box:
            got = await _async_snapshot(box)
            with pytest.raises(NotFoundError):
                await box.stat("nope")
            with pytest.raises(UsageError):
                await box.read_bytes("d")
            return got

    assert run(go()) == want


def test_async_wrong_password(make_archive):
    path = make_archive({"a": b"1"})

    async def go():
        await lockbox.open_async(path, password="wrong")

    with pytest.raises(WrongKeyError):
        run(go())


# -- extraction ------------------------------------------------------------------------------


def _host_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "plain.txt").write_bytes(b"plain")
    (root / "sub" / "exec.sh").write_bytes(b"#!/bin/sh\n")
    (root / "sub" / "deeper" / "data.bin").write_bytes(rand_bytes(3 * CHUNK + 1, 5))
    os.symlink("../plain.txt", root / "sub" / "link")
    os.chmod(root / "plain.txt", 0o640)
    os.chmod(root / "sub" / "exec.sh", 0o755)
    os.chmod(root / "sub" / "deeper", 0o750)
    for i, p in enumerate([root / "plain.txt", root / "sub" / "exec.sh",
                           root / "sub" / "deeper" / "data.bin", root / "sub" / "deeper",
                           root / "sub"]):
        t = 1_600_000_000_123_456_789 + i * 1_000_000_007
        os.utime(p, ns=(t, t))
    os.utime(root / "sub" / "link", ns=(1_500_000_000_000_000_001,) * 2, follow_symlinks=False)


def test_add_tree_and_extract_restore_modes_mtimes_symlinks(tmp_path, new_box):
    box, path = new_box
    src = tmp_path / "src"
    src.mkdir()
    _host_tree(src)
    with box.writer() as w:
        assert w.add_tree(src, "root") == 7  # root, plain, sub, exec, deeper, data, link
    dest = tmp_path / "out"
    with reopen(path) as box2:
        assert box2.stat("root/sub/link").target == "../plain.txt"
        assert box2.extract(dest).entries == 7
    for rel in ["plain.txt", "sub", "sub/exec.sh", "sub/deeper", "sub/deeper/data.bin",
                "sub/link"]:
        a = os.lstat(src / rel)
        b = os.lstat(dest / "root" / rel)
        assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), rel
        if not stat.S_ISLNK(a.st_mode):
            assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode), rel
        assert a.st_mtime_ns == b.st_mtime_ns, rel
    assert os.readlink(dest / "root" / "sub" / "link") == "../plain.txt"
    assert (dest / "root" / "sub" / "deeper" / "data.bin").read_bytes() == rand_bytes(
        3 * CHUNK + 1, 5)
    # only a subtree
    dest2 = tmp_path / "out2"
    with reopen(path) as box2:
        assert box2.extract(dest2, ["root/sub/deeper"]).entries == 1
    assert (dest2 / "root" / "sub" / "deeper" / "data.bin").exists()
    assert not (dest2 / "root" / "plain.txt").exists()


def test_extract_refuses_to_overwrite_unless_asked(tmp_path, make_archive):
    path = make_archive({"f": b"new"})
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "f").write_bytes(b"old")
    with reopen(path) as box:
        with pytest.raises(StorageError):
            box.extract(dest)
        assert (dest / "f").read_bytes() == b"old"
        assert box.extract(dest, overwrite=True).entries == 1
    assert (dest / "f").read_bytes() == b"new"


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "a/../../..",
                                    "../" * 12 + "tmp"])
def test_extract_refuses_escaping_symlinks(tmp_path, new_box, target):
    box, path = new_box
    with box.writer() as w:
        w.add_bytes("d/ok", b"ok")
        w.symlink("d/evil", target)
    dest = tmp_path / "out"
    with reopen(path) as box2, pytest.raises(UnsafePathError):
        box2.extract(dest)
    assert not os.path.lexists(dest / "d" / "evil")
    assert sorted(os.listdir(tmp_path)) == ["new.lbox", "out"]


def test_extract_never_writes_through_a_symlinked_directory(tmp_path, make_archive):
    path = make_archive({"d/x": b"x"})
    dest = tmp_path / "out"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "d")  # the destination already has a symlink named d
    for overwrite in (False, True):
        with reopen(path) as box:
            try:
                box.extract(dest, overwrite=overwrite)
            except (UnsafePathError, StorageError):
                pass
        assert os.listdir(outside) == []
    assert not os.path.islink(dest / "d") or not (dest / "d" / "x").exists()


# -- info and stats --------------------------------------------------------------------------


def test_info_stats_follow_adds_removes_replaces(new_box):
    box, path = new_box

    def stats():
        with reopen(path) as b:
            i = b.info()
            return i.files, i.dirs, i.symlinks, i.file_bytes

    with box.writer() as w:
        w.add_bytes("a/b/f1", b"x" * 100)
        w.add_bytes("a/f2", b"y" * 50)
        w.symlink("a/l", "f2")
        w.mkdir("empty")
        w.commit()
        assert stats() == (2, 3, 1, 150)
        w.add_bytes("a/f2", b"z" * 10)  # replace
        w.commit()
        assert stats() == (2, 3, 1, 110)
        w.remove("a/b", recursive=True)
        w.commit()
        assert stats() == (1, 2, 1, 10)
        w.move("a", "empty/moved")
        w.commit()
        assert stats() == (1, 2, 1, 10)
        w.add_bytes("n", b"")
        w.add_bytes("n", b"12345")  # staged twice in one commit
        w.remove("empty/moved/l")
        w.commit()
        assert stats() == (2, 2, 0, 15)
    with reopen(path) as b:
        info = b.info()
        assert info.stored_bytes == sum(e.stored_size for e in b.ls(recursive=True))
        assert info.archive_size == info.archive_end == path.stat().st_size
        assert b.verify().ok


def test_toc_with_many_leaves(new_box):
    """Enough entries that the TOC needs several leaves (and a root listing)."""
    box, path = new_box
    names = [f"d{i % 3}/file-with-a-longish-name-{i:04d}.txt" for i in range(450)]
    names += [f"root-{i:03d}" for i in range(150)]
    with box.writer() as w:
        for i, n in enumerate(names):
            w.add_bytes(n, str(i).encode())
    with reopen(path) as b:
        info = b.info()
        assert info.toc_height >= 2
        assert info.files == 600 and info.dirs == 3
        assert [e.name for e in b.ls()] == ["d0", "d1", "d2"] + [
            f"root-{i:03d}" for i in range(150)]
        assert len(b.ls("d1")) == 150
        assert len(b.ls(recursive=True)) == 603
        assert b.read_bytes(names[449]) == b"449"
        assert b.verify().ok
        with b.writer() as w:
            w.remove("d1", recursive=True)
            for i in range(0, 150, 2):
                w.remove(f"root-{i:03d}")
    with reopen(path) as b:
        assert len(b.ls(recursive=True)) == 603 - 151 - 75
        assert [e.name for e in b.ls()][:2] == ["d0", "d2"]
        assert b.read_bytes("root-149") == b"599"
        assert b.verify().ok


# -- key slots -------------------------------------------------------------------------------


def test_key_slots_add_remove_and_open_with_each(make_archive, weak_argon2, crypto):
    path = make_archive({"secret": b"s3cret"})
    alice = Identity.generate(crypto)
    bob = Identity.generate(crypto)
    with reopen(path) as box:
        original = box.info().unlocked_slot
        assert [s.kind for s in box.info().slots] == ["password"]
        with box.writer() as w:
            pw2 = w.add_password("second", weak_argon2)
            rid = w.add_recipient(alice.recipient(crypto))
    with reopen(path, password="second") as box:
        assert box.info().unlocked_slot == pw2
        assert box.read_bytes("secret") == b"s3cret"
    with lockbox.open(path, identity=alice) as box:
        assert box.info().unlocked_slot == rid
        assert box.read_bytes("secret") == b"s3cret"
        assert sorted(s.kind for s in box.info().slots) == ["password", "password", "recipient"]
    with pytest.raises(WrongKeyError):
        lockbox.open(path, identity=bob)
    with reopen(path) as box, box.writer() as w:
        w.remove_slot(original)
        with pytest.raises(NotFoundError):
            w.remove_slot(12345)
    with pytest.raises(WrongKeyError):
        reopen(path, password="pw")
    with reopen(path, password="second") as box, box.writer() as w:
        w.remove_slot(pw2)
        with pytest.raises(UsageError):
            w.remove_slot(rid)  # the last slot
    with pytest.raises(WrongKeyError):
        reopen(path, password="second")
    with lockbox.open(path, identity=alice) as box:
        assert [s.kind for s in box.info().slots] == ["recipient"]
        assert box.read_bytes("secret") == b"s3cret"
        assert box.verify().ok


def test_create_for_recipients_only(tmp_path, crypto):
    ids = [Identity.generate(crypto) for _ in range(2)]
    path = tmp_path / "r.lbox"
    box = lockbox.create(path, recipients=[i.recipient(crypto) for i in ids], chunk_size=CHUNK)
    with box.writer() as w:
        w.add_bytes("x", b"for both")
    box.close()
    for ident in ids:
        with lockbox.open(path, identity=ident) as b:
            assert b.read_bytes("x") == b"for both"
    with pytest.raises(WrongKeyError):
        lockbox.open(path, password="anything")
    # identities survive their text encoding
    again = Identity.decode(ids[0].encode())
    assert again == ids[0]
    with lockbox.open(path, identity=again) as b:
        assert b.read_bytes("x") == b"for both"


def test_many_recipients_put_the_key_directory_in_a_page(make_archive, crypto):
    """Enough slots that the key directory no longer fits beside the commit."""
    path = make_archive({"f": b"data"})
    ids = [Identity.generate(crypto) for _ in range(5)]
    with reopen(path) as box, box.writer() as w:
        for i in ids:
            w.add_recipient(i.recipient(crypto))
    for ident in [ids[0], ids[-1]]:
        with lockbox.open(path, identity=ident) as b:
            assert len(b.info().slots) == 6
            assert b.read_bytes("f") == b"data"
            assert b.verify().ok
    with reopen(path) as b:
        assert b.generation == 3


# -- the pipelined whole-file read (AsyncLockbox.iter_bytes with a backend that opens frames
#    elsewhere, as the browser's worker pool does): same bytes and errors as the plain read --


class _DeferredOpener:
    """The CPython backend plus ``start_open_frames``/``finish_open_frames`` that open the
    frames only when finished (as a worker pool answers later), logging the order."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.log: list[tuple[str, int]] = []
        self._batches = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def start_open_frames(self, jobs, plain_limit):
        self._batches += 1
        self.log.append(("start", self._batches))
        return self._batches, list(jobs)

    async def finish_open_frames(self, handle, jobs, decode, plain_limit):
        from lockbox.crypto.base import open_frames_loop

        number, started = handle
        assert started == list(jobs)
        self.log.append(("finish", number))
        await asyncio.sleep(0)
        return open_frames_loop(jobs, decode)


PIPE_CHUNK = 64 * 1024
PIPE_SIZE = 17 * 1024 * 1024 + 999  # 3 batches of 8 MiB at 64 KiB chunks


def _pipe_data() -> bytes:
    rng = random.Random(5)
    return rng.randbytes(PIPE_SIZE // 2) + bytes(range(256)) * (PIPE_SIZE // 512) + b"x" * (
        PIPE_SIZE - PIPE_SIZE // 2 - 256 * (PIPE_SIZE // 512))


async def _pipelined_read(data: bytes, opener: _DeferredOpener | None, path: str = "big.bin"):
    box = await AsyncLockbox.open(AsyncBytesSource(data), password="pw")
    if opener is not None:
        box.crypto = opener
    pieces: list[bytes] = []
    try:
        async for piece in box.iter_bytes(path):
            pieces.append(bytes(piece))
    except lockbox.IntegrityError as exc:
        return pieces, exc
    finally:
        await box.aclose()
    return pieces, None


def test_pipelined_read_equals_plain_read(make_archive, crypto):
    content = _pipe_data()
    path = make_archive({"big.bin": content, "small.txt": b"hi"}, chunk_size=PIPE_CHUNK)
    data = path.read_bytes()
    opener = _DeferredOpener(crypto)
    pieces, error = run(_pipelined_read(data, opener))
    assert error is None and b"".join(pieces) == content
    plain, _ = run(_pipelined_read(data, None))
    assert [len(p) for p in pieces] == [len(p) for p in plain]  # the same pieces
    # batch 2 was started (fetched, handed to the opener) before batch 1 was finished
    assert opener.log.index(("start", 2)) < opener.log.index(("finish", 1))
    assert [n for k, n in opener.log if k == "finish"] == [1, 2, 3]
    assert sorted(opener.log) == sorted([(k, n) for n in (1, 2, 3) for k in ("start", "finish")])
    assert run(_pipelined_read(data, _DeferredOpener(crypto), "small.txt"))[0] == [b"hi"]
    with pytest.raises(lockbox.UsageError):  # not a file: the generic error
        run(_pipelined_read(data, _DeferredOpener(crypto), ""))


@pytest.mark.parametrize("ahead", [0, 1, 2, 5])
@pytest.mark.parametrize("batch", [0, 1, 2])
def test_pipelined_read_tampered_chunk_releases_nothing_of_its_batch(make_archive, crypto,
                                                                     batch, ahead, monkeypatch):
    from lockbox.formats.lbox import reading

    monkeypatch.setattr(reading, "PIPELINE_AHEAD", ahead)
    content = _pipe_data()
    path = make_archive({"big.bin": content}, chunk_size=PIPE_CHUNK)
    box = lockbox.open(path, password="pw")
    entry = box.run(box.view.stat_flow("big.bin"))
    chunk_no = batch * 128 + 5
    ref = box.run(box.view.chunk_refs_flow(entry, chunk_no, chunk_no + 1))[0]
    box.close()
    data = bytearray(path.read_bytes())
    data[ref.frame_offset + ref.frame_size - 20] ^= 0x40  # in its ciphertext
    for opener in (_DeferredOpener(crypto), None):
        pieces, error = run(_pipelined_read(bytes(data), opener))
        assert isinstance(error, lockbox.IntegrityError)
        assert b"".join(pieces) == content[:batch * 128 * PIPE_CHUNK]  # earlier batches only


def test_decode_chunks_errors_equal_one_by_one(make_archive):
    """ArchiveView.decode_chunks (a batch: checks first, then open_frames) raises what
    decode_chunk in a loop raises, for damage at each step."""
    content = _pipe_data()[:PIPE_CHUNK * 6]
    path = make_archive({"f.bin": content}, chunk_size=PIPE_CHUNK)
    box = lockbox.open(path, password="pw")
    view = box.view
    entry = box.run(view.stat_flow("f.bin"))
    refs = box.run(view.chunk_refs_flow(entry, 0, entry.chunks))
    data = path.read_bytes()
    blobs = [data[r.frame_offset:r.frame_offset + r.frame_size] for r in refs]

    def loop(bs):
        return [view.decode_chunk(entry, k, r, b) for k, (r, b) in enumerate(zip(refs, bs))]

    assert [bytes(c.data) for c in view.decode_chunks(entry, 0, refs, blobs)] == \
        [bytes(c.data) for c in loop(blobs)]
    damages = {
        "truncated": lambda b: b[:-1],
        "header": lambda b: b[:3] + bytes([b[3] ^ 1]) + b[4:],
        "tag": lambda b: b[:-1] + bytes([b[-1] ^ 1]),
        "ciphertext": lambda b: b[:80] + bytes([b[80] ^ 1]) + b[81:],
    }
    for name, damage in damages.items():
        for at in (1, 4):
            bad = list(blobs)
            bad[at] = damage(bad[at])
            if at == 4:  # and an earlier chunk swapped: the loop's first error wins
                bad[2] = blobs[3]
            with pytest.raises(lockbox.LockboxError) as one:
                loop(bad)
            with pytest.raises(lockbox.LockboxError) as batch:
                view.decode_chunks(entry, 0, refs, bad)
            assert (type(batch.value), str(batch.value)) == (type(one.value), str(one.value)), name
    box.close()


def test_pipelined_read_failing_source_releases_nothing_after_the_failure(make_archive, crypto):
    """A read that fails (batch 2's range) ends the pipelined read with the source's error;
    only batches before it were handed over, and no read task is left running."""
    content = _pipe_data()
    path = make_archive({"big.bin": content}, chunk_size=PIPE_CHUNK)
    data = path.read_bytes()
    box = lockbox.open(path, password="pw")
    entry = box.run(box.view.stat_flow("big.bin"))
    bad_offset = box.run(box.view.chunk_refs_flow(entry, 2 * 128, 2 * 128 + 1))[0].frame_offset
    box.close()

    class Failing(AsyncBytesSource):
        async def read(self, ranges):
            if any(r.offset <= bad_offset < r.offset + r.size for r in ranges):
                raise lockbox.StorageError("the disk went away")
            return await super().read(ranges)

    async def main():
        box = await AsyncLockbox.open(Failing(data), password="pw")
        box.crypto = _DeferredOpener(crypto)
        got = []
        with pytest.raises(lockbox.StorageError, match="went away"):
            async for piece in box.iter_bytes("big.bin"):
                got.append(bytes(piece))
        await box.aclose()
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks()
                if not t.done() and t.get_coro().__name__ == "read"]
        return got, left

    got, left = run(main())
    assert b"".join(got) == content[:len(b"".join(got))]
    assert len(b"".join(got)) <= 2 * 128 * PIPE_CHUNK
    assert left == []
