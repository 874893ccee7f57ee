"""Shared fixtures for lockbox's tests.

* ``weak_argon2``: Argon2id parameters cheap enough for tests (never use the
  defaults in a test: they cost 64 MiB and ~0.2 s per unlock).
* ``password``: the password every archive made by ``make_archive`` uses.
* ``crypto`` / ``codec``: the platform's default backends.
* ``make_archive``: a factory writing a fresh archive under ``tmp_path`` from a
  ``{path: bytes}`` dict (and optional env values) in one commit; it returns
  the archive's path. Open it with ``lockbox.open(path, password="pw")``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

import lockbox
from lockbox import Argon2Params

WEAK_ARGON2 = Argon2Params(time_cost=1, memory_kib=64)
PASSWORD = "pw"
SMALL_CHUNK = 4096

MakeArchive = Callable[..., Path]


@pytest.fixture
def weak_argon2() -> Argon2Params:
    return WEAK_ARGON2


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def crypto():
    from lockbox.platform import default_crypto

    return default_crypto()


@pytest.fixture
def codec():
    from lockbox.platform import default_codec

    return default_codec()


@pytest.fixture
def make_archive(tmp_path: Path) -> MakeArchive:
    """``make_archive(files, *, name=None, env=None, chunk_size=4096, password="pw",
    **create_kw) -> Path``.

    ``files`` maps archive paths to contents (parents are created as needed);
    ``env`` maps env names to values. Both are written in one commit (none at
    all when both are empty, leaving the generation-1 archive ``create`` made).
    """
    counter = itertools.count()

    def make(files: Mapping[str, bytes] | None = None, *, name: str | None = None,
             env: Mapping[str, str | bytes] | None = None, chunk_size: int = SMALL_CHUNK,
             password: str | bytes = PASSWORD, **create_kw: object) -> Path:
        path = tmp_path / (name or f"archive{next(counter)}.lbox")
        create_kw.setdefault("argon2", WEAK_ARGON2)
        box = lockbox.create(path, password=password, chunk_size=chunk_size, **create_kw)
        try:
            if files or env:
                with box.writer() as w:
                    for p, data in (files or {}).items():
                        w.add_bytes(p, data)
                    for k, v in (env or {}).items():
                        w.env_set(k, v)
        finally:
            box.close()
        return path

    return make
