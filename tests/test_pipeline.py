"""add --jobs: worker processes for small files and a compression thread pool for large
ones give exactly the same archive content as one job."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import lockbox
from lockbox.formats.lbox.write import pipeline

WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    rng = random.Random(5)
    words = [f"w{i}" for i in range(300)]
    for i in range(pipeline.START_AFTER + 700):  # enough to start the worker processes
        d = root / f"d{i % 13:02d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.txt").write_text(" ".join(rng.choices(words, k=rng.randint(0, 200))))
    (root / "big.log").write_text("\n".join(" ".join(rng.choices(words, k=20))
                                            for _ in range(60_000)))
    (root / "random.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (root / "link").symlink_to("big.log")
    return root


def content(path: Path) -> dict:
    box = lockbox.open(path, password="pw")
    assert box.verify().ok
    return {e.path: (e.type, e.mode, e.mtime_ns, e.size, e.blake3, e.target)
            for e in box.ls(recursive=True)}


@pytest.mark.parametrize("jobs", [2, "auto"])
def test_jobs_give_the_same_content_as_one_job(tmp_path, tree, jobs, monkeypatch):
    started = []
    real = pipeline._Worker.__init__

    def counting(self):  # type: ignore[no-untyped-def]
        started.append(1)
        real(self)

    monkeypatch.setattr(pipeline._Worker, "__init__", counting)
    archives = {}
    for j in (1, jobs):
        path = tmp_path / f"jobs-{j}.lbox"
        box = lockbox.create(path, password="pw", argon2=WEAK, chunk_size=256 * 1024)
        with box.writer() as w:
            w.add_tree(tree, "t", jobs=j)
        archives[j] = content(path)
    assert archives[1] == archives[jobs]
    assert len(archives[1]) > pipeline.START_AFTER
    assert started, "the worker processes never started"
