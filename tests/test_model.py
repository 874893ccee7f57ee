"""Stateful model test: random sequences of writer operations, compared with a
plain dict after every commit, abort and reopen.

Paths come from a tiny alphabet (three names, depth <= 3) so that operations
collide: replacing files, adding under files, moving onto existing entries,
removing non-empty directories, ... The model states exactly which operations
must fail and with which error.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import lockbox
from lockbox import Argon2Params, InvalidPathError, LockboxError, NotFoundError

WEAK = Argon2Params(time_cost=1, memory_kib=64)
CHUNK = 4096
NAMES = ["a", "b", "c"]
ALL_PATHS = ["/".join(parts) for depth in (1, 2, 3)
             for parts in itertools.product(NAMES, repeat=depth)]

paths = st.sampled_from(ALL_PATHS)
env_names = st.sampled_from(["A", "B", "C"])
sizes = st.one_of(
    st.integers(0, 40),
    st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 8 * CHUNK, 8 * CHUNK + 1, 12 * CHUNK + 7]),
)


def content(size: int, seed: int) -> bytes:
    if seed % 3 == 0:  # compressible
        return (b"%d-" % seed * (size // 2 + 1))[:size]
    return random.Random(seed).randbytes(size)


def parents(path: str) -> list[str]:
    """Proper ancestors, nearest first ("" excluded)."""
    out = []
    while "/" in path:
        path = path.rpartition("/")[0]
        out.append(path)
    return out


def is_under(path: str, top: str) -> bool:
    return path.startswith(top + "/")


class ArchiveModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lockbox-model-"))
        self.path = self.dir / "m.lbox"
        self.box = lockbox.create(self.path, password="pw", argon2=WEAK, chunk_size=CHUNK)
        self.w = self.box.writer()
        # path -> ("file", bytes) | ("dir",) | ("symlink", target)
        self.staged: dict[str, tuple] = {}
        self.env: dict[str, bytes] = {}
        self.committed: dict[str, tuple] = {}
        self.committed_env: dict[str, bytes] = {}
        self.generation = 1
        self.snapshot = self.path.read_bytes()

    def teardown(self) -> None:
        try:
            if not self.w.closed:
                self.w.abort()
                self.w.close()
            self.box.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- model helpers ---------------------------------------------------------------------

    def _kind(self, path: str) -> str | None:
        v = self.staged.get(path)
        return None if v is None else v[0]

    def _parents_ok(self, path: str) -> bool:
        return all(self._kind(p) in (None, "dir") for p in parents(path))

    def _make_parents(self, path: str) -> None:
        for p in parents(path):
            self.staged.setdefault(p, ("dir",))

    def _subtree(self, path: str) -> list[str]:
        return [p for p in self.staged if is_under(p, path)]

    # -- rules -----------------------------------------------------------------------------

    @rule(path=paths, size=sizes, seed=st.integers(0, 2 ** 16))
    def add_file(self, path, size, seed):
        data = content(size, seed)
        if self._kind(path) == "dir" or not self._parents_ok(path):
            with pytest.raises(InvalidPathError):
                self.w.add_bytes(path, data)
            return
        self.w.add_bytes(path, data)
        self._make_parents(path)
        self.staged[path] = ("file", data)

    @rule(path=paths)
    def mkdir(self, path):
        if self._kind(path) not in (None, "dir") or not self._parents_ok(path):
            with pytest.raises(InvalidPathError):
                self.w.mkdir(path)
            return
        self.w.mkdir(path)
        self._make_parents(path)
        self.staged[path] = ("dir",)

    @rule(path=paths, link=st.sampled_from(["t", "../up", "a/b", "/abs"]))
    def symlink(self, path, link):
        if self._kind(path) == "dir" or not self._parents_ok(path):
            with pytest.raises(InvalidPathError):
                self.w.symlink(path, link)
            return
        self.w.symlink(path, link)
        self._make_parents(path)
        self.staged[path] = ("symlink", link)

    @rule(path=paths, recursive=st.booleans())
    def remove(self, path, recursive):
        kind = self._kind(path)
        if kind is None:
            with pytest.raises(NotFoundError):
                self.w.remove(path, recursive=recursive)
            return
        kids = self._subtree(path)
        if kids and not recursive:
            with pytest.raises(InvalidPathError):
                self.w.remove(path, recursive=recursive)
            return
        assert self.w.remove(path, recursive=recursive) == 1 + len(kids)
        for p in [path, *kids]:
            del self.staged[p]

    @rule(src=paths, dst=paths)
    def move(self, src, dst):
        """Like mv: onto an existing directory means into it."""
        kind = self._kind(src)
        if kind is None:
            with pytest.raises(NotFoundError):
                self.w.move(src, dst)
            return
        final = f"{dst}/{posixpath.basename(src)}" if self._kind(dst) == "dir" else dst
        if final == src:
            self.w.move(src, dst)  # a no-op
            return
        if (kind == "dir" and is_under(final, src)) or self._kind(final) is not None or \
                not self._parents_ok(final):
            with pytest.raises(InvalidPathError):
                self.w.move(src, dst)
            return
        self.w.move(src, dst)
        self._make_parents(final)
        for p in [src, *self._subtree(src)]:
            self.staged[final + p[len(src):]] = self.staged.pop(p)

    @rule(name=env_names, value=st.binary(max_size=20))
    def env_set(self, name, value):
        self.w.env_set(name, value)
        self.env[name] = value

    @rule(name=env_names)
    def env_remove(self, name):
        if name not in self.env:
            with pytest.raises(NotFoundError):
                self.w.env_remove(name)
            return
        self.w.env_remove(name)
        del self.env[name]

    @rule()
    def commit(self):
        view = self.w.commit()
        self.generation += 1
        assert view.generation == self.generation
        self._committed()
        self._check(self.box)  # the writer's own archive object follows its commits
        self._check_fresh()

    @rule()
    def abort(self):
        self.w.abort()
        assert not self.w.dirty
        self.staged = dict(self.committed)
        self.env = dict(self.committed_env)
        assert self.path.read_bytes() == self.snapshot

    @rule(fail=st.booleans())
    def reopen(self, fail):
        """Leave the writer's context (normally: commit if dirty; on an exception:
        abort), close everything and open the archive again."""
        if fail:
            self.w.__exit__(RuntimeError, RuntimeError("boom"), None)
            self.staged = dict(self.committed)
            self.env = dict(self.committed_env)
            assert self.path.read_bytes() == self.snapshot
        else:
            if self.w.dirty:
                self.generation += 1
            self.w.__exit__(None, None, None)
            self._committed()
        self.box.close()
        self.box = lockbox.open(self.path, password="pw")
        assert self.box.generation == self.generation
        self._check(self.box)
        self.w = self.box.writer()

    # -- checks ----------------------------------------------------------------------------

    def _committed(self) -> None:
        self.committed = dict(self.staged)
        self.committed_env = dict(self.env)
        self.snapshot = self.path.read_bytes()

    def _check_fresh(self) -> None:
        with lockbox.open(self.path, password="pw") as box:
            assert box.generation == self.generation
            self._check(box)

    def _check(self, box) -> None:
        model = self.committed
        listing = box.ls(recursive=True)
        assert {e.path: e.type for e in listing} == {p: v[0] for p, v in model.items()}
        for e in listing:
            v = model[e.path]
            if v[0] == "file":
                assert e.size == len(v[1])
                assert box.read_bytes(e.path) == v[1]
            elif v[0] == "symlink":
                assert e.target == v[1]
        top = sorted((p for p in model if "/" not in p), key=str.encode)
        assert [e.path for e in box.ls()] == top
        for d in (p for p, v in model.items() if v[0] == "dir"):
            assert sorted(e.path for e in box.ls(d)) == sorted(
                p for p in model if posixpath.dirname(p) == d)
        assert box.env_items() == sorted(self.committed_env.items())
        info = box.info()
        files = [v[1] for v in model.values() if v[0] == "file"]
        assert (info.files, info.dirs, info.symlinks, info.file_bytes) == (
            len(files), sum(v[0] == "dir" for v in model.values()),
            sum(v[0] == "symlink" for v in model.values()), sum(map(len, files)))
        assert info.env_count == len(self.committed_env)
        report = box.verify()
        assert report.ok, report.problems

    @invariant()
    def writer_sees_staged_state(self):
        for p in ALL_PATHS[:12]:  # depth 1 and 2
            assert self.w.exists(p) == (p in self.staged), p

    @precondition(lambda self: self.staged)
    @rule(data=st.data())
    def read_back_staged_entry_type(self, data):
        """The writer's lookups agree with the model for an existing path."""
        p = data.draw(st.sampled_from(sorted(self.staged)))
        e = self.w._get_entry(p)
        assert e is not None and e.type.name.lower() == self.staged[p][0]


# Bounded and deterministic. Shrinking is off by default so that a failure costs
# seconds, not minutes (every step writes a real archive); set
# LOCKBOX_MODEL_SHRINK=1 to get a minimal failing sequence while debugging.
ArchiveModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, derandomize=True, deadline=None,
    phases=list(Phase) if os.environ.get("LOCKBOX_MODEL_SHRINK") else [Phase.generate],
)
TestArchiveModel = ArchiveModel.TestCase


def test_model_errors_are_lockbox_errors():
    """Sanity of the model's vocabulary: the errors it expects are the library's."""
    assert issubclass(InvalidPathError, LockboxError) and issubclass(NotFoundError, LockboxError)
