"""Fixtures of the vault and agent tests: private directories with short paths (a Unix
socket path is at most ~100 bytes), real agents in their own processes, content keys
with their commitments."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from lockbox.formats.lbox.keys import key_commitment
from lockbox.platform import default_crypto
from lockbox.vault import agent_client

AGENT_TTL = 600.0


def private_dir(prefix: str = "lbx-") -> str:
    """A fresh 0700 directory directly under /tmp (short, and reachable by other users
    once a test opens it up)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def key_triple() -> tuple[bytes, bytes, bytes]:
    """(archive_id, key_commitment, content_key), random and consistent."""
    archive_id, content_key = os.urandom(16), os.urandom(32)
    return archive_id, key_commitment(default_crypto(), archive_id, content_key), content_key


def stop_quietly(path: str) -> None:
    try:
        agent_client.agent_stop(socket_path=path)
    except Exception:  # a test may have broken it on purpose
        pass


@pytest.fixture(autouse=True)
def patient_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's deadline, 2 s in use, raised to a hang guard: the shared test machine
    may be busy; a test that wants a short deadline names it."""
    monkeypatch.setattr(agent_client, "DEFAULT_TIMEOUT", 20.0)


@pytest.fixture
def agent_dir() -> Iterator[str]:
    path = private_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(agent_dir: str) -> Iterator[str]:
    """A running agent of its own (TTL 10 minutes); yields its socket path."""
    path = os.path.join(agent_dir, "agent.sock")
    agent_client.start_agent(AGENT_TTL, socket_path=path)
    try:
        yield path
    finally:
        stop_quietly(path)


@pytest.fixture(scope="module")
def shared_agent() -> Iterator[str]:
    """One agent for the tests of a module that only put and get their own keys."""
    directory = private_dir()
    path = os.path.join(directory, "agent.sock")
    agent_client.start_agent(AGENT_TTL, socket_path=path)
    try:
        yield path
    finally:
        stop_quietly(path)
        shutil.rmtree(directory, ignore_errors=True)
