"""add --jobs: worker processes for small files and a compression thread pool for large
ones give exactly the same archive content as one job."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import lockbox
from lockbox.errors import StorageError
from lockbox.formats.lbox.write import pipeline
from lockbox.formats.lbox.write.hostwalk import HostWalk

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


def test_busy_workers_leave_batches_to_the_main_process(tmp_path, tree, monkeypatch):
    """Batches prepared here while the workers are busy, others by the workers, results
    staged as they arrive: the same archive content as one job."""
    monkeypatch.setattr(pipeline, "PER_WORKER", 1)
    monkeypatch.setattr(pipeline, "BATCH_FILES", 16)
    seen = []
    real_finish = pipeline.SmallFilePipeline.finish

    def finish(self):  # type: ignore[no-untyped-def]
        real_finish(self)
        seen.append((self.busy_batches, self.worker_batches))

    monkeypatch.setattr(pipeline.SmallFilePipeline, "finish", finish)
    archives = {}
    for j in (1, 2):
        path = tmp_path / f"jobs-{j}.lbox"
        box = lockbox.create(path, password="pw", argon2=WEAK, chunk_size=256 * 1024)
        with box.writer() as w:
            w.add_tree(tree, "t", jobs=j)
        archives[j] = content(path)
    assert archives[1] == archives[2]
    busy, by_workers = seen[-1]
    assert busy > 0 and by_workers > 0


def test_a_file_gone_before_a_worker_reads_it_fails_typed(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "START_AFTER", 0)  # every batch to a worker
    monkeypatch.setattr(pipeline, "PER_WORKER", 10_000)
    src = tmp_path / "src"
    for i in range(600):
        d = src / f"d{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_text(f"file {i}")
    victim = src / "d2" / "f00302"
    real = HostWalk._small_files

    def vanishing(self, arch, files, pipe):  # type: ignore[no-untyped-def]
        if any(host == str(victim) for host, *_ in files):
            victim.unlink()  # listed and stat'ed, gone before it is read
        return real(self, arch, files, pipe)

    monkeypatch.setattr(HostWalk, "_small_files", vanishing)
    path = tmp_path / "a.lbox"
    box = lockbox.create(path, password="pw", argon2=WEAK)
    before = path.read_bytes()
    with box, pytest.raises(StorageError, match=f"cannot read .*{victim.name}: No such file"):
        with box.writer() as w:
            w.add_tree(src, jobs=2)
    assert path.read_bytes() == before
