"""lockbox.facade: the generic Archive / AsyncArchive over every format (.uri from the
independent writer, .lbox), streaming listings and reads, the seekable file object,
lockbox.open giving a Lockbox for .lbox, and a .uri over HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import random
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import lockbox
from cli_helpers import static_server
from formats.uri import independent as ind
from formats.uri.independent import Entry
from lockbox import Archive, AsyncArchive, AsyncLockbox, Lockbox
from lockbox.errors import (
    FormatError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from lockbox.facade import ArchiveFile, canonical_path, probe
from lockbox.ranges import ByteRange
from lockbox.sources import BytesSource, FileSource, HttpSource

BIG = bytes(random.Random(5).randbytes(300_000))
ENTRIES = [
    Entry(b"DIR ", b"docs", 0o750, b"alice", b"staff"),
    Entry(b"FILE", b"docs/a.txt", 0o640, b"alice", b"staff", b"alpha\n"),
    Entry(b"DIR ", b"docs/sub", 0o755),
    Entry(b"FILE", b"docs/sub/big.bin", 0o600, data=BIG),
    Entry(b"SLNK", b"docs/link", 0o777, data=b"a.txt"),
    Entry(b"FILE", b"empty", 0o644),
]


class Counting:
    """A sync source that counts round trips (read batches) and bytes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.round_trips = 0
        self.bytes = 0

    @property
    def size(self) -> int | None:
        return self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.round_trips += 1
        out = self.inner.read(ranges)
        self.bytes += sum(len(b) for b in out)
        return out

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def uri_file(tmp_path: Path) -> Path:
    path = tmp_path / "x.uri"
    path.write_bytes(ind.write(ENTRIES))
    return path


def test_open_any_format_gives_the_right_facade(uri_file: Path, make_archive: Any) -> None:
    with lockbox.open(uri_file) as arc:
        assert type(arc) is Archive and arc.spec is not None and arc.spec.name == "uri"
        assert arc.path == str(uri_file) and arc.location == str(uri_file)
    lbox = make_archive({"a.txt": b"a"})
    with lockbox.open(lbox, password="pw") as box:
        assert isinstance(box, Lockbox) and isinstance(box, Archive)
        assert box.read_bytes("a.txt") == b"a" and box.info().files == 1  # ArchiveInfo
        assert box.session.info().format == "lbox"
    with pytest.raises(FormatError, match="not a lockbox archive"):
        Lockbox.open(uri_file)  # the .lbox facade opens .lbox only
    with pytest.raises(FormatError, match="not a lockbox archive"):
        lockbox.open(uri_file, format="lbox")
    with pytest.raises(UsageError, match="unknown format"):
        lockbox.open(uri_file, format="zip")


def test_reads_of_a_uri_archive(uri_file: Path) -> None:
    with lockbox.open(uri_file, password="ignored: not encrypted") as arc:
        info = arc.info()
        assert (info.format, info.encrypted, info.archive_size) == ("uri", False,
                                                                   uri_file.stat().st_size)
        assert [e.name for e in arc.ls()] == ["docs", "empty"]
        assert [e.path for e in arc.ls("docs")] == ["docs/a.txt", "docs/link", "docs/sub"]
        every = arc.ls(recursive=True)
        assert [e.path for e in every] == ["docs", "docs/a.txt", "docs/link", "docs/sub",
                                           "docs/sub/big.bin", "empty"]
        assert [e.path for e in arc.ls("docs", recursive=True)][:2] == ["docs/a.txt",
                                                                         "docs/link"]
        st = arc.stat("docs/a.txt")
        assert (st.type, st.mode, st.size, st.owner, st.group, st.mtime_ns) == (
            "file", 0o640, 6, "alice", "staff", 0)
        assert arc.stat("docs/link").target == "a.txt"
        assert arc.exists("docs/sub") and not arc.exists("nope")
        assert arc.read_bytes("docs/sub/big.bin") == BIG
        assert arc.read_bytes("empty") == b""
        assert arc.read("docs/sub/big.bin", 1000, 10) == BIG[1000:1010]
        with pytest.raises(UsageError, match="not a file"):
            arc.read_bytes("docs")
        with pytest.raises(NotFoundError):
            arc.stat("docs/nope")
        report = arc.verify()
        assert report.ok and report.entries_checked == len(ENTRIES)


def test_iter_entries_yields_between_round_trips(tmp_path: Path) -> None:
    """A streaming walk: entries come out while the walk still has reads to make, and
    only one batch is held (the consumer sees the first entries after few round trips)."""
    entries = [Entry(b"DIR ", b"d", 0o755)]
    entries += [Entry(b"FILE", f"d/f{i:05d}".encode(), data=b"x" * 100) for i in range(20_000)]
    path = tmp_path / "many.uri"
    path.write_bytes(ind.write(entries))
    src = Counting(FileSource(str(path)))
    arc = Archive.open(src, first_window_size=4096, max_window_size=65536, emit_batch=100)
    it = arc.iter_entries()
    first = next(it)
    trips_at_first = src.round_trips
    rest = list(it)
    assert first.path == "d" and len(rest) == 20_000
    assert trips_at_first <= 5 and src.round_trips > 20  # the walk went on after it
    arc.close()


def test_open_file_streams_in_order_and_windows_elsewhere(uri_file: Path) -> None:
    with lockbox.open(uri_file) as arc:
        f = arc.open_file("docs/sub/big.bin", window_size=10_000)
        assert isinstance(f, ArchiveFile) and f.size == len(BIG) and f.seekable()
        assert f.read(5) == BIG[:5]
        piece = f.read(70_000)  # a raw read: at most what the stream holds, never empty
        assert piece and BIG[5:70_005].startswith(piece)
        f.seek(0)
        assert f.readall() == BIG
        rng = random.Random(2)
        buffered = io.BufferedReader(arc.open_file("docs/sub/big.bin", window_size=4096),
                                     buffer_size=1000)
        for _ in range(50):
            off, n = rng.randrange(len(BIG) + 10), rng.choice([1, 100, 5000, 20_000])
            f.seek(off)
            got = bytearray()
            while len(got) < n and (piece := f.read(n - len(got))):
                got += piece
            assert bytes(got) == BIG[off:off + n]
            buffered.seek(off)
            assert buffered.read(n) == BIG[off:off + n]
        assert f.seek(-3, io.SEEK_END) == len(BIG) - 3 and f.read(10) == BIG[-3:]
        assert f.read(10) == b""
        f.close()
        buffered.close()
        with pytest.raises(UsageError):
            arc.open_file("docs")


def _damaged(entries: list[Entry]) -> bytes:
    """The archive with one byte of the big file's data flipped (its CRC now fails)."""
    data = bytearray(ind.write(entries))
    at = bytes(data).index(BIG[:64]) + 200_000
    data[at] ^= 0x01
    return bytes(data)


def test_a_damaged_file_fails_before_its_last_piece(tmp_path: Path) -> None:
    arc = Archive.open(BytesSource(_damaged(ENTRIES)), data_window_size=65536)
    got = 0
    with pytest.raises(IntegrityError, match="CRC"):
        for piece in arc.iter_bytes("docs/sub/big.bin"):
            got += len(piece)
    assert got < len(BIG)  # the last piece never came out
    with pytest.raises(IntegrityError):
        arc.open_file("docs/sub/big.bin").read()
    assert arc.read_bytes("docs/a.txt") == b"alpha\n"  # the rest reads fine
    assert not arc.verify().ok


def test_lockbox_reads_come_from_the_generic_facade(make_archive: Any) -> None:
    path = make_archive({"d/a.txt": b"a" * 10_000, "d/e/b.txt": b"b", "c": b"c"})
    with lockbox.open(path, password="pw") as box:
        assert isinstance(box, Lockbox)
        for name in ("stat", "exists", "ls", "iter_entries", "open_file", "iter_bytes",
                     "read_bytes", "extract"):
            assert name not in Lockbox.__dict__, name  # inherited, not re-implemented
        assert [e.path for e in box.iter_entries("d")] == ["d/a.txt", "d/e", "d/e/b.txt"]
        assert [e.path for e in box.iter_entries("c")] == ["c"]
        assert box.open_file("d/a.txt").read() == b"a" * 10_000
        assert box.verify().files_checked == 3  # the .lbox report


def test_async_archive_and_async_lockbox(uri_file: Path, make_archive: Any) -> None:
    lbox = make_archive({"x/y.txt": b"why"}, env={"K": "v", "A": "b"})

    async def go() -> tuple[Any, ...]:
        arc = await lockbox.open_async(uri_file)
        assert type(arc) is AsyncArchive
        names = [e.path async for e in arc.iter_entries("docs")]
        data = await arc.read_bytes("docs/sub/big.bin")
        listing = await arc.ls("docs", recursive=True)
        ok = (await arc.verify()).ok
        missing = await arc.exists("nope")
        await arc.aclose()
        async with await lockbox.open_async(lbox, password="pw") as box:
            assert isinstance(box, AsyncLockbox)
            env = await box.env_names()
            ydata = await box.read_bytes("x/y.txt")
            entries = [e.path async for e in box.iter_entries()]
        return names, data, len(listing), ok, missing, env, ydata, entries

    names, data, n, ok, missing, env, ydata, entries = asyncio.run(asyncio.wait_for(go(), 60))
    assert names == ["docs/a.txt", "docs/sub", "docs/sub/big.bin", "docs/link"]
    assert data == BIG and n == 4 and ok and not missing
    assert env == ["A", "K"] and ydata == b"why" and entries == ["x", "x/y.txt"]


def test_probe_is_reused_by_open(uri_file: Path, make_archive: Any) -> None:
    src = FileSource(str(make_archive({"a": b"a"})))
    found = probe(src)
    assert src.stats.requests == 1 and found.spec.name == "lbox" and found.spec.encrypted
    box = Archive.open(src, probe=found, password="pw")
    assert src.stats.requests == 1  # the probe's 16 KiB answered the .lbox open
    box.close()
    small = BytesSource(ind.write(ENTRIES[:3]))  # a .uri under 16 KiB: the head is all of it
    found = probe(small)
    assert found.spec.name == "uri" and not found.spec.encrypted
    arc = Archive.open(small, probe=found)
    assert [e.path for e in arc.ls("docs")] == ["docs/a.txt", "docs/sub"]
    src = FileSource(str(uri_file))  # larger: the probe's 16 KiB is its first window too
    arc = Archive.open(src, probe=probe(src))
    assert src.stats.requests == 1
    arc.close()


def test_canonical_path() -> None:
    assert canonical_path("/a//b/./c/") == "a/b/c"
    assert canonical_path("") == canonical_path("/") == canonical_path(".") == ""


def test_a_uri_over_http(tmp_path: Path) -> None:
    entries = [Entry(b"DIR ", b"d", 0o755)]
    entries += [Entry(b"FILE", f"d/f{i:04d}".encode(), data=b"%d\n" % i) for i in range(1000)]
    entries.append(Entry(b"FILE", b"d/zz.bin", data=BIG))
    (tmp_path / "x.uri").write_bytes(ind.write(entries))
    with static_server(tmp_path) as base:
        src = Counting(HttpSource(f"{base}/x.uri"))
        arc = Archive.open(src)
        assert arc.spec is not None and arc.spec.name == "uri"
        # the 16 KiB probe, then the .uri open's own first window (64 KiB)
        assert src.round_trips <= 2
        names = [e.name for e in arc.ls("d")]
        assert len(names) == 1001 and names[-1] == "zz.bin"
        assert src.round_trips <= 5 and src.bytes < len(BIG)  # zz.bin's data not fetched
        assert arc.read_bytes("d/f0007") == b"7\n"
        data = arc.read_bytes("d/zz.bin")
        assert zlib.crc32(data) == zlib.crc32(BIG)
        arc.close()


def test_lockbox_file_name_still_imports() -> None:
    from lockbox.formats.lbox.fileobj import LockboxFile

    assert LockboxFile is ArchiveFile


def test_lbox_files_just_walked_need_no_toc_lookup(make_archive: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_archive({f"d/f{i}": b"%d" % i for i in range(50)})
    with lockbox.open(path, password="pw") as box:
        walked = [e.path for e in box.iter_entries("d")]
        calls: list[str] = []
        real = box.view.stat_flow

        def counting(p: str) -> Any:
            calls.append(p)
            return real(p)

        monkeypatch.setattr(box.view, "stat_flow", counting)
        got = {p: b"".join(box.open_content(p)) for p in walked}
        assert got == {f"d/f{i}": b"%d" % i for i in range(50)}
        assert calls == []  # the entries came with the walk
        fresh = lockbox.open(path, password="pw")
        assert fresh.read_bytes("d/f7") == b"7"
        fresh.close()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_same_owner_applies_recorded_names_as_root(tmp_path: Path) -> None:
    import grp
    import pwd

    try:
        uid, gid = pwd.getpwnam("daemon").pw_uid, grp.getgrnam("daemon").gr_gid
    except KeyError:
        pytest.skip("no 'daemon' user and group here")
    path = tmp_path / "owned.uri"
    path.write_bytes(ind.write([
        Entry(b"DIR ", b"d", 0o755, b"daemon", b"daemon"),
        Entry(b"FILE", b"d/f", 0o4755, b"daemon", b"daemon", b"f"),
        Entry(b"SLNK", b"d/l", 0o777, b"daemon", b"no-such-group-here", b"f"),
        Entry(b"FILE", b"mine", 0o644, data=b"m")]))
    with lockbox.open(path) as arc:
        plain = arc.extract(tmp_path / "plain")
        owned = arc.extract(tmp_path / "owned", same_owner=True, preserve_permissions=True)
    assert os.stat(tmp_path / "plain" / "d" / "f").st_uid == os.geteuid()
    assert plain.notes[-1] == ("owner/group names of 3 entries not applied (use --same-owner "
                               "as root to apply them)")
    st = os.stat(tmp_path / "owned" / "d" / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o4755)
    assert os.stat(tmp_path / "owned" / "d").st_uid == uid
    link = os.lstat(tmp_path / "owned" / "d" / "l")
    assert (link.st_uid, link.st_gid) == (uid, os.getegid())  # the unknown group: left
    assert os.stat(tmp_path / "owned" / "mine").st_uid == os.geteuid()
    assert owned.notes[-1] == ("owner/group names of 1 entries unknown on this system: left "
                               "as the extracting user's")


def test_a_content_error_names_the_file(make_archive: Any, tmp_path: Path) -> None:
    """A damaged frame (here a pack shared by several small files) is the error of the
    file being read: its message names that file, in the sync and async reads."""
    path = make_archive({"d/a.txt": b"a" * 100, "d/b.txt": b"b" * 100, "c.txt": b"c"})
    with lockbox.open(path, password="pw") as box:
        ref = box.run(box.view.stat_flow("d/b.txt")).refs[0]
    data = bytearray(path.read_bytes())
    data[ref.frame_offset + ref.frame_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with lockbox.open(path, password="pw") as box:
        for name in ("d/b.txt", "d/a.txt"):
            with pytest.raises(IntegrityError) as err:
                box.read_bytes(name)
            assert str(err.value).startswith(f"{name}: "), err.value

    async def go() -> str:
        async with await AsyncArchive.open(path, password="pw") as arc:
            try:
                await arc.read_bytes("d/a.txt")
            except IntegrityError as exc:
                return str(exc)
        return ""

    assert asyncio.run(go()).startswith("d/a.txt: ")


def test_extract_reads_files_in_the_session_s_read_order(uri_file: Path, tmp_path: Path) -> None:
    """A session with a ``read_order`` (``.lbox``: where the files are stored) decides in
    which order extraction reads the files; without one, path order."""
    with Archive.open(uri_file) as arc:
        assert arc.read_order is None
        seen: list[str] = []
        arc.extract(tmp_path / "a", progress=lambda p, n: seen.append(p))
        files = sorted((e.path for e in arc.iter_entries() if e.is_file),
                       key=lambda p: p.split("/"))
        with_data = list(dict.fromkeys(seen))  # progress: files with content, in order
        assert with_data == [p for p in files if p in with_data] and len(with_data) > 1
        asked: list[list[str]] = []

        def backwards(given: list[Any]) -> list[Any]:
            asked.append([e.path for e in given])
            return given[::-1]

        arc.session.read_order = backwards  # type: ignore[attr-defined]
        assert arc.read_order is backwards
        seen.clear()
        arc.extract(tmp_path / "b", progress=lambda p, n: seen.append(p))
        assert asked == [files] and list(dict.fromkeys(seen)) == with_data[::-1]
    for p in files:
        assert (tmp_path / "b" / p).read_bytes() == (tmp_path / "a" / p).read_bytes()
