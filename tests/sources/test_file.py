"""Local file sources: conformance (pread and seek+read) and change detection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lockbox.errors import SourceChangedError, SourceUnavailableError, UsageError
from lockbox.ranges import ByteRange as B
from lockbox.sources import (
    AsyncFileSource,
    FileSource,
    RangeSource,
    open_async_source,
    open_source,
)

from .conformance import (
    AsyncRangeSourceConformance,
    RangeSourceConformance,
    run_async,
    sample,
)


@pytest.fixture(params=["pread", "seek"])
def io_mode(request, monkeypatch):
    """Run with os.pread, and again as if it were missing (Windows, Pyodide)."""
    if request.param == "seek":
        monkeypatch.delattr(os, "pread")
    return request.param


@pytest.fixture
def file_factory(tmp_path, io_mode):
    counter = iter(range(10_000))

    def write(data: bytes) -> Path:
        path = tmp_path / f"archive-{next(counter)}.bin"
        path.write_bytes(data)
        return path

    return write


class TestFileSource(RangeSourceConformance):
    @pytest.fixture
    def make_source(self, file_factory):
        created: list[FileSource] = []

        def make(data: bytes) -> FileSource:
            src = FileSource(file_factory(data))
            assert (src._pread is None) == (not hasattr(os, "pread"))
            created.append(src)
            return src

        yield make
        for src in created:
            src.close()


class TestAsyncFileSource(AsyncRangeSourceConformance):
    @pytest.fixture
    def make_source(self, file_factory):
        return lambda data: AsyncFileSource(file_factory(data))


def _setup(tmp_path: Path, data: bytes) -> tuple[Path, FileSource]:
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    return path, FileSource(path)


def test_missing_file_is_unavailable(tmp_path):
    with pytest.raises(SourceUnavailableError, match=r"nope\.bin"):
        FileSource(tmp_path / "nope.bin")
    with pytest.raises(SourceUnavailableError):
        open_source(str(tmp_path / "nope.bin"))
    with pytest.raises(SourceUnavailableError):
        AsyncFileSource(tmp_path / "nope.bin")


def test_directory_is_unavailable(tmp_path):
    with pytest.raises(SourceUnavailableError, match="not a regular file"):
        FileSource(tmp_path)


def test_permission_denied_is_unavailable(tmp_path, monkeypatch):
    path = tmp_path / "secret.bin"
    path.write_bytes(b"x")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root ignores the mode: simulate

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "open", denied)
    else:
        path.chmod(0)
    try:
        with pytest.raises(SourceUnavailableError, match="Permission denied"):
            FileSource(path)
    finally:
        monkeypatch.undo()
        path.chmod(0o600)


def test_file_replaced_mid_read(tmp_path, io_mode):
    data = sample(10_000)
    path, src = _setup(tmp_path, data)
    with src:
        assert src.read([B(0, 100)]) == [data[:100]]
        new = tmp_path / "new.bin"
        new.write_bytes(sample(10_000, seed=2))  # same size, other inode
        os.replace(new, path)
        with pytest.raises(SourceChangedError, match="replaced"):
            src.read([B(100, 100)])


def test_file_truncated_mid_read(tmp_path, io_mode):
    data = sample(10_000)
    path, src = _setup(tmp_path, data)
    with src:
        assert src.read([B(0, 100)]) == [data[:100]]
        os.truncate(path, 5_000)
        with pytest.raises(SourceChangedError, match="truncated"):
            src.read([B(6_000, 100)])


def test_file_modified_in_place_mid_read(tmp_path):
    data = sample(10_000)
    path, src = _setup(tmp_path, data)
    with src:
        assert src.read([B(0, 100)]) == [data[:100]]
        st = path.stat()
        with open(path, "r+b") as f:
            f.write(b"changed!")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        with pytest.raises(SourceChangedError):
            src.read([B(0, 100)])


def test_file_removed_mid_read(tmp_path):
    path, src = _setup(tmp_path, sample(1000))
    with src:
        src.read([B(0, 10)])
        path.unlink()
        with pytest.raises(SourceChangedError, match="removed"):
            src.read([B(0, 10)])


def test_async_file_replaced_mid_read(tmp_path):
    data = sample(10_000)
    path = tmp_path / "a.bin"
    path.write_bytes(data)

    async def main():
        async with AsyncFileSource(path) as src:
            assert await src.read([B(0, 100)]) == [data[:100]]
            new = tmp_path / "new.bin"
            new.write_bytes(data)
            os.replace(new, path)
            with pytest.raises(SourceChangedError):
                await src.read([B(0, 100)])

    run_async(main())


def test_batch_of_adjacent_ranges_is_one_read(tmp_path):
    data = sample(10_000)
    _, src = _setup(tmp_path, data)
    with src:
        assert src.read([B(0, 10), B(10, 10), B(20, 10)]) == [data[0:10], data[10:20], data[20:30]]
        assert (src.stats.requests, src.stats.bytes_read) == (1, 30)
        # clamped: only the existing bytes are read and counted
        src.read([B(9_990, 100), B(20_000, 5)])
        assert (src.stats.requests, src.stats.bytes_read) == (2, 40)


def test_size_and_identity_known_at_open(tmp_path):
    path, src = _setup(tmp_path, b"12345")
    with src:
        assert src.size == 5
        st = path.stat()
        assert src.identity == (st.st_dev, st.st_ino, 5, st.st_mtime_ns)


def test_read_after_close_is_an_error(tmp_path):
    _, src = _setup(tmp_path, b"12345")
    src.close()
    with pytest.raises(UsageError):
        src.read([B(0, 1)])


def test_open_source_picks_file_sources(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello")
    for location in (path, str(path)):
        src = open_source(location)
        try:
            assert isinstance(src, FileSource) and isinstance(src, RangeSource)
            assert src.read([B(1, 3)]) == [b"ell"]
        finally:
            src.close()
        asrc = open_async_source(location)
        assert isinstance(asrc, AsyncFileSource)
        run_async(asrc.aclose())


def test_package_imports_without_httpx(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["httpx"] = None  # as in Pyodide: importing httpx fails
        import lockbox.sources as s
        from lockbox.ranges import ByteRange
        src = s.open_source({str(path)!r})
        assert src.read([ByteRange(0, 5)]) == [b"hello"]
        assert "lockbox.sources.http" not in sys.modules
        try:
            s.open_source("http://127.0.0.1:1/x")
        except ImportError:
            print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "ok"
