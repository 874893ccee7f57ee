"""Helpers shared by the benchmark scripts (not part of the test suite)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lockbox.ranges import ByteRange
from lockbox.sources.base import RangeSource, SourceStats

ROOT = Path(__file__).resolve().parent.parent
PERF_MD = ROOT / "docs" / "PERFORMANCE.md"


def machine() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; load average "
            f"{load} when written")


def today() -> str:
    return dt.date.today().isoformat()


class CountingSource:
    """Wraps a source and counts round trips (read batches), ranges and bytes."""

    def __init__(self, inner: RangeSource) -> None:
        self.inner = inner
        self.stats = SourceStats()
        self.round_trips = 0
        self.ranges = 0
        self.bytes = 0

    @property
    def size(self) -> int | None:
        return self.inner.size

    def read(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        self.round_trips += 1
        self.ranges += len(ranges)
        out = self.inner.read(ranges)
        self.bytes += sum(len(b) for b in out)
        return out

    def reset(self) -> None:
        self.round_trips = self.ranges = self.bytes = 0

    def close(self) -> None:
        self.inner.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(directory: str | os.PathLike[str]) -> Iterator[str]:
    """Run lockbox_server on a free loopback port; yields its base URL."""
    import uvicorn

    from lockbox_server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(directory), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the block between <!-- NAME:start --> and <!-- NAME:end -->."""
    text = PERF_MD.read_text() if PERF_MD.exists() else "# Performance\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    PERF_MD.write_text(text)
