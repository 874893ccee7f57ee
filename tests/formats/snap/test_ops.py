"""lockbox.formats.snap.ops: push, pull, verify, diff, objects_needed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import lockbox
from lockbox.errors import IntegrityError, NotFoundError, StorageError, UsageError
from lockbox.formats.snap import ops
from lockbox.formats.snap.manifest import (
    EMPTY_BLAKE3,
    Manifest,
    ManifestEntry,
    build_manifest,
    directory_checksum,
    manifest_of_archive,
    manifest_of_directory,
    object_id,
)
from lockbox.formats.snap.store import FileStore, HttpStore

H = "a" * 64


def make_tree(root: Path) -> Path:
    (root / "d" / "empty").mkdir(parents=True)
    (root / "d" / "x").write_bytes(b"hello")
    (root / "d" / "x").chmod(0o751)
    (root / "same").write_bytes(b"hello")
    (root / "secret").write_bytes(b"s" * 3000)
    (root / "secret").chmod(0o600)
    (root / "zero").write_bytes(b"")
    (root / "d").chmod(0o700)
    root.chmod(0o755)
    return root


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".lbx-part"))]


def test_push_sends_only_missing_objects(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    r = ops.push(tree, store)
    m = manifest_of_directory(tree)
    assert str(r) == r.snapshot_id == m.id
    assert (r.objects, r.objects_sent, r.bytes_sent) == (3, 3, 3005)
    assert store.get_manifest(m.id) == m
    again = ops.push(tree, store)
    assert again.already_present and again.objects_sent == 0
    (tree / "secret").write_bytes(b"changed")
    r2 = ops.push(str(tree), store)
    assert (r2.objects_sent, r2.bytes_sent, r2.already_present) == (1, 7, False)
    assert sorted(store.list_manifest_ids()) == sorted([m.id, r2.snapshot_id])
    assert leftovers(tmp_path) == []


def test_interrupted_push_leaves_no_manifest_and_resumes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    real = ops.snapshot_of
    opened: list[str] = []

    def failing_snapshot_of(*args: Any, **kw: Any) -> Any:
        manifest, opener = real(*args, **kw)

        def open_object(h: str) -> Iterable[bytes]:
            opened.append(h)
            if len(opened) == 2:
                yield b"hel"
                raise StorageError("connection lost")
            yield from opener(h)

        return manifest, open_object

    monkeypatch.setattr(ops, "snapshot_of", failing_snapshot_of)
    with pytest.raises(StorageError, match="connection lost"):
        ops.push(tree, store)
    m = manifest_of_directory(tree)
    assert not store.has_manifest(m.id) and leftovers(tmp_path) == []
    filed = [h for h in m.object_ids() if store.has_object(h)]
    assert filed == [opened[0]]
    monkeypatch.setattr(ops, "snapshot_of", real)
    r = ops.push(tree, store)
    assert r.objects_sent == 2 and store.has_manifest(m.id)


def test_push_refuses_a_file_that_changed_after_hashing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    real = ops.manifest_of_directory

    def then_change(*args: Any, **kw: Any) -> Manifest:
        m = real(*args, **kw)
        (tree / "secret").write_bytes(b"t" * 3000)
        return m

    monkeypatch.setattr(ops, "manifest_of_directory", then_change)
    with pytest.raises(IntegrityError, match="changed since it was hashed"):
        ops.push(tree, store)
    assert store.list_manifest_ids() == [] and leftovers(tmp_path) == []
    assert not store.has_object(object_id(b"s" * 3000))
    assert not store.has_object(object_id(b"t" * 3000))


def test_push_an_archive(tmp_path: Path, make_archive: Any) -> None:
    files = {"a/b.txt": b"bee", "a/c": b"", "top": b"top" * 100}
    path = make_archive(files)
    store = FileStore(tmp_path / "s")
    with lockbox.open(path, password="pw") as box:
        r = ops.push(box, store)
        m = manifest_of_archive(box)
    assert r.snapshot_id == m.id and r.objects_sent == 3
    for e in m.files():
        assert store.get_object(e.checksum) == files[e.rel_path]


def test_push_to_a_server_store_uses_one_receive(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")

    class Server:
        def __init__(self) -> None:
            self.calls: list[Any] = []

        def has_manifest(self, h: str) -> bool:
            self.calls.append(("has_manifest", h))
            return False

        def objects_needed(self, ids: list[str]) -> list[str]:
            self.calls.append(("objects_needed", list(ids)))
            return ids[1:]

        def receive_objects(self, manifest: Manifest, objects: list[Any]) -> None:
            got = {h: b"".join(opener(h)) for h, opener in objects}
            self.calls.append(("receive_objects", manifest.id, got))

    server = Server()
    r = ops.push(tree, server)
    m = manifest_of_directory(tree)
    ids = m.object_ids()
    assert [c[0] for c in server.calls] == ["has_manifest", "objects_needed", "receive_objects"]
    assert server.calls[1][1] == ids
    assert server.calls[2][1] == m.id
    assert set(server.calls[2][2]) == set(ids[1:]) and r.objects_sent == 2


def test_push_refuses_http_stores(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="read only"):
        ops.push(make_tree(tmp_path / "t"), HttpStore("https://h/s",
                                                     transport=lambda u, r: None))


# ----------------------------------------------------------------- pull


def test_pull_recreates_the_tree_with_its_modes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    sid = ops.push(tree, store).snapshot_id
    dest = tmp_path / "out" / "d"
    r = ops.pull(sid, store, dest)
    assert (r.entries, r.files, r.bytes) == (6, 4, 3010)
    assert manifest_of_directory(dest).id == sid
    assert (dest / "d" / "empty").is_dir()
    assert oct(os.stat(dest / "secret").st_mode & 0o7777) == "0o600"
    assert oct(os.stat(dest / "d" / "x").st_mode & 0o7777) == "0o751"
    assert oct(os.stat(dest / "d").st_mode & 0o7777) == "0o700"
    assert leftovers(tmp_path) == []


def test_pull_refuses_existing_entries_unless_overwrite(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    sid = ops.push(tree, store).snapshot_id
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "same").write_bytes(b"mine")
    with pytest.raises(StorageError, match="refusing to overwrite 1 existing entry"):
        ops.pull(sid, store, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["same"]
    ops.pull(sid, store, dest, overwrite=True)
    assert (dest / "same").read_bytes() == b"hello"
    assert manifest_of_directory(dest).id == sid


def test_pull_verifies_every_object_before_filing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    sid = ops.push(tree, store).snapshot_id
    bad = object_id(b"s" * 3000)
    Path(store.object_file(bad)).write_bytes(b"S" + b"s" * 2999)
    dest = tmp_path / "d"
    with pytest.raises(IntegrityError, match=f"object {bad} .* is damaged"):
        ops.pull(sid, store, dest)
    assert not (dest / "secret").exists() and leftovers(tmp_path) == []
    with pytest.raises(NotFoundError, match="no snapshot"):
        ops.pull("b" * 64, store, tmp_path / "e")
    with pytest.raises(UsageError, match="snapshot id"):
        ops.pull("nothex", store, tmp_path / "e")


# ----------------------------------------------------------------- verify


def test_verify_reports_every_problem(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    sid = ops.push(tree, store).snapshot_id
    ok = ops.verify(sid, store)
    assert ok.ok and ok.entries_checked == 7 and ok.bytes_checked == 3005
    hello, secret = object_id(b"hello"), object_id(b"s" * 3000)
    Path(store.object_file(hello)).write_bytes(b"jello")
    os.unlink(store.object_file(secret))
    seen: list[str] = []
    report = ops.verify(sid, store, progress=lambda p, n: seen.append(p))
    assert len(report.problems) == 2
    assert "./d/x and 1 more" in report.problems[0] and "damaged" in report.problems[0]
    assert f"object {secret} (./secret) is missing" in report.problems[1]
    assert seen == ["./zero"]
    with pytest.raises(NotFoundError):
        ops.verify("b" * 64, store)
    Path(store.manifest_file(sid)).write_bytes(b"D 755 " + b"0" * 64 + b" 0 ./\n")
    bad = ops.verify(sid, store)
    assert not bad.ok and "hashes to" in bad.problems[0]


def test_check_manifest_tree() -> None:
    good = build_manifest([("a/f", "F", 0o644, 3, H)])
    assert ops.check_manifest_tree(good) == []
    root, a, f = good.entries
    broken = Manifest.of([root, ManifestEntry("D", 0o755, a.checksum, 4, "./a/"), f,
                          ManifestEntry("F", 0o644, H, 1, "./b/g"),
                          ManifestEntry("D", 0o755, H, 0, "./c/")])
    problems = ops.check_manifest_tree(broken)
    assert problems == [
        "./b/g: its directory is not in the manifest",
        f"./: the directory checksum is {root.checksum}, its entries give "
        f"{directory_checksum([a.checksum, H])}",
        "./a/: the directory size is 4, its entries total 3",
        f"./c/: the directory checksum is {H}, its entries give {EMPTY_BLAKE3}",
    ]


# ----------------------------------------------------------------- diff


def _m(*rows: tuple[str, str, int, int, str]) -> Manifest:
    return build_manifest(list(rows))


def test_diff_follows_snapdir() -> None:
    a = _m(("keep", "F", 0o644, 1, H), ("mode", "F", 0o644, 1, H), ("gone", "F", 0o644, 1, H),
           ("edit", "F", 0o644, 1, H), ("x", "F", 0o644, 1, H), ("dir", "D", 0o755, 0, ""),
           ("dmode", "D", 0o755, 0, ""))
    b = _m(("keep", "F", 0o644, 1, H), ("mode", "F", 0o600, 1, H), ("new", "F", 0o644, 1, H),
           ("edit", "F", 0o644, 1, "b" * 64), ("x/inner", "F", 0o644, 1, H),
           ("dmode", "D", 0o700, 0, ""), ("newdir", "D", 0o755, 0, ""))
    rows = [(e.status, e.path) for e in ops.diff(a, b)]
    assert rows == [("M", "./edit"), ("D", "./gone"), ("M", "./mode"), ("A", "./new"),
                    ("D", "./x"), ("A", "./x/inner")]
    everything = [(e.status, e.path) for e in ops.diff(a, b, include_unchanged=True)]
    assert ("=", "./keep") in everything and len(everything) == 7
    assert ops.diff(a, a) == [] and ops.diff(a, b)[0].to_json() == {"status": "M",
                                                                     "path": "./edit"}


def test_diff_reads_ids_from_the_store(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    store = FileStore(tmp_path / "s")
    one = ops.push(tree, store).snapshot_id
    (tree / "zero").unlink()
    two = ops.push(tree, store).snapshot_id
    assert [(e.status, e.path) for e in ops.diff(one, two, store)] == [("D", "./zero")]
    with pytest.raises(UsageError, match="needs the store"):
        ops.diff(one, two)
    with pytest.raises(UsageError, match="not a snapdir snapshot id"):
        ops.diff(one, "x", store)


# ----------------------------------------------------------------- objects_needed


def test_objects_needed(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    have = store.put_object(b"x")
    assert ops.objects_needed(store, ["b" * 64, have, "c" * 64, "b" * 64]) == \
        ["b" * 64, "c" * 64]
    asked: list[str] = []

    class Counting(FileStore):
        def has_object(self, hex_id: str) -> bool:
            asked.append(hex_id)
            return super().has_object(hex_id)

    with pytest.raises(UsageError, match="object id"):
        ops.objects_needed(Counting(tmp_path), ["b" * 64, "B" * 64])
    assert asked == []   # a bad line fails before any lookup


def test_object_reader_gives_true_sizes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"twelve bytes")
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    manifest, reader = ops.snapshot_of(tree)
    e = manifest.get("link")
    assert e is not None and e.size == len(str(outside))   # snapdir's record of a link
    assert reader.size(e.checksum) == 12
    assert b"".join(reader(e.checksum)) == b"twelve bytes"
