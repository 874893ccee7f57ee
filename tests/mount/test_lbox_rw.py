"""The writable ``.lbox`` mount (lockbox_server.mount.lbox_rw): a real server on
127.0.0.1, real clients (litmus, rclone, cadaver), a real kill -9."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.errors import LockedError

from .conftest import LITMUS_SUITES, rclone_remote

PASSWORD = "pw"
HANG_GUARD_S = 120


@pytest.fixture
def lbox(make_archive: Callable[..., Path]) -> Path:
    """An archive with a little in it (chunk size 64 KiB: several chunks per MiB)."""
    return make_archive({"docs/readme.txt": b"hello\n", "top.bin": b"\x00" * 1000},
                        chunk_size=65536)


def _files(path: Path) -> dict[str, bytes]:
    with lockbox.open(path, password=PASSWORD) as box:
        return {e.path: box.read_bytes(e.path) for e in box.iter_entries("") if e.is_file}


def _generation(path: Path) -> int:
    with lockbox.open(path, password=PASSWORD) as box:
        return int(box.generation)


def test_litmus_all_suites(mount_server: Any, run_litmus: Any, lbox: Path) -> None:
    with mount_server(lbox, writable=True, password=PASSWORD) as url:
        passed, failed, output = run_litmus(url)
    assert (passed, failed) == (104, 0), output
    assert all(f"summary for `{s}'" in output for s in LITMUS_SUITES), output
    # Everything litmus left behind was committed: the archive opens and verifies.
    with lockbox.open(lbox, password=PASSWORD) as box:
        assert box.verify().ok
        assert box.exists("docs/readme.txt")
