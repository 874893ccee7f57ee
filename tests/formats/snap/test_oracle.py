"""Differential tests against the real snapdir (the PyPI binding, the test oracle): ids of
awkward and generated trees, stores written by each side and read by the other, diff,
and the id of an archive == snapdir's id of its extracted tree."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lockbox
from lockbox.formats.snap import ops
from lockbox.formats.snap.manifest import (
    manifest_of_archive,
    manifest_of_directory,
    parse_manifest,
)
from lockbox.formats.snap.store import FileStore
from lockbox.info import EntryInfo

snapdir = pytest.importorskip("snapdir")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def theirs(path: Path, *, no_follow: bool = False) -> tuple[bytes, str]:
    m = run(snapdir.manifest(str(path), no_follow=no_follow))
    return (m.raw + "\n").encode(), str(run(snapdir.id(str(path), no_follow=no_follow)))


def uri(path: Path) -> Any:
    return snapdir.StoreUri(f"file://{path}")


def assert_same_as_snapdir(tree: Path) -> list[str]:
    """Our manifest and id of ``tree`` are snapdir's, symlinks followed and not; the ids."""
    ids = []
    for no_follow in (False, True):
        raw, sid = theirs(tree, no_follow=no_follow)
        ours = manifest_of_directory(tree, follow_symlinks=not no_follow)
        assert ours.render() == raw
        assert ours.id == sid
        assert parse_manifest(raw) == ours
        ids.append(sid)
    return ids


def awkward_tree(root: Path) -> Path:
    names = ["sp ace", "  lead and trail  ", "ünï©ødé", "日本語", "-dash", "#hash", "%41",
             "quote'\"", "back\\slash", "tab\there", "semi;colon", ".hidden", "a-b", "a.b",
             "A", "a"]
    root.mkdir()
    for i, name in enumerate(names):
        (root / name).write_bytes(name.encode() * i)
    (root / "dir one" / "nested empty" / "deeper").mkdir(parents=True)
    (root / "dir one" / "x").write_bytes(b"")
    (root / "empty").mkdir()
    (root / "exec").write_bytes(b"#!/bin/sh\n")
    (root / "exec").chmod(0o755)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    (root / "setuid").write_bytes(b"s")
    (root / "setuid").chmod(0o4755)
    (root / "locked").mkdir(mode=0o700)
    (root / "locked" / "in").write_bytes(b"in")
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "link to file").symlink_to("sp ace")
    (root / "link to dir").symlink_to("dir one")
    (root / "absolute link").symlink_to(root / "exec")
    (root / "broken").symlink_to("nowhere")
    os.mkfifo(root / "fifo")
    return root


def test_awkward_tree_ids(tmp_path: Path) -> None:
    tree = awkward_tree(tmp_path / "t")
    followed, not_followed = assert_same_as_snapdir(tree)
    assert followed != not_followed
    lines = manifest_of_directory(tree).render().decode().splitlines()
    # what makes the tree awkward is really in the manifest
    for line in ("./sp ace", "./tab\there", "./日本語", "./dir one/nested empty/deeper/",
                 "./link to dir/x", "./link to file"):
        assert any(x.endswith(" " + line) for x in lines), line
    assert any(x.startswith("F 4755 ") for x in lines)
    assert any(x.startswith("D 1777 ") for x in lines)


# names hypothesis draws: any but '/', NUL, CR, LF (snapdir cannot read those back)
_name = st.text(st.characters(codec="utf-8", exclude_characters="/\n\r\x00"),
                min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
_mode_file = st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o444, 0o640])
_mode_dir = st.sampled_from([0o755, 0o700, 0o750])


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, str, int, bytes]]:
    out: list[tuple[str, str, int, bytes]] = []
    taken: set[str] = set()
    for _ in range(draw(st.integers(1, 10))):
        parts = draw(st.lists(_name, min_size=1, max_size=3))
        path = "/".join(parts)
        if path in taken or any(path.startswith(t + "/") for t in taken):
            continue
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if any(p in taken and dict((q, k) for q, k, _, _ in out).get(p) == "F"
               for p in parents):
            continue
        taken.update(parents)
        taken.add(path)
        if draw(st.booleans()):
            out.append((path, "D", draw(_mode_dir), b""))
        else:
            out.append((path, "F", draw(_mode_file),
                        draw(st.binary(max_size=64)) if draw(st.booleans()) else b"same"))
    return out


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(trees())
def test_generated_tree_ids(spec: list[tuple[str, str, int, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "t"
        root.mkdir()
        for path, kind, _mode, data in spec:
            p = root / path
            p.parent.mkdir(parents=True, exist_ok=True)
            if kind == "D":
                p.mkdir(exist_ok=True)
            else:
                p.write_bytes(data)
        for path, _kind, mode, _ in sorted(spec, key=lambda s: -s[0].count("/")):
            os.chmod(root / path, mode)
        raw, sid = theirs(root)
        ours = manifest_of_directory(root)
        assert ours.render() == raw and ours.id == sid


def tree_files(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st_ = os.lstat(p)
            out[str(p.relative_to(root))] = (st_.st_mode, None if p.is_dir() else p.read_bytes())
    return out


def plain_tree(root: Path) -> Path:
    """The awkward tree without symlinks (a followed link is not a link once pulled)."""
    awkward_tree(root)
    for p in root.iterdir():
        if p.is_symlink() or p.name == "fifo":
            p.unlink()
    return root


def test_snapdir_push_then_lockbox_pull(tmp_path: Path) -> None:
    tree = plain_tree(tmp_path / "t")
    sid = str(run(snapdir.push(str(tree), uri(tmp_path / "store"))))
    store = FileStore(tmp_path / "store")
    assert store.get_manifest(sid) == manifest_of_directory(tree)
    assert ops.verify(sid, store).ok
    ops.pull(sid, store, tmp_path / "ours")
    assert tree_files(tmp_path / "ours") == tree_files(tree)
    assert theirs(tmp_path / "ours")[1] == sid


def test_lockbox_push_then_snapdir_pull(tmp_path: Path) -> None:
    tree = plain_tree(tmp_path / "t")
    sid = ops.push(tree, FileStore(tmp_path / "store")).snapshot_id
    run(snapdir.verify(sid, uri(tmp_path / "store")))
    run(snapdir.pull(snapdir.SnapshotId(sid), uri(tmp_path / "store"), str(tmp_path / "them")))
    assert tree_files(tmp_path / "them") == tree_files(tree)
    assert manifest_of_directory(tmp_path / "them").id == sid


def test_symlinked_trees_pull_the_same_on_both_sides(tmp_path: Path) -> None:
    tree = awkward_tree(tmp_path / "t")
    os.unlink(tree / "fifo")
    sid = ops.push(tree, FileStore(tmp_path / "store")).snapshot_id
    assert sid == str(run(snapdir.push(str(tree), uri(tmp_path / "store2"))))
    run(snapdir.pull(snapdir.SnapshotId(sid), uri(tmp_path / "store"), str(tmp_path / "them")))
    ops.pull(sid, FileStore(tmp_path / "store2"), tmp_path / "ours")
    assert tree_files(tmp_path / "ours") == tree_files(tmp_path / "them")


def test_damage_is_seen_by_both(tmp_path: Path) -> None:
    tree = plain_tree(tmp_path / "t")
    store = FileStore(tmp_path / "store")
    sid = ops.push(tree, store).snapshot_id
    victim = manifest_of_directory(tree).get("private")
    assert victim is not None
    Path(store.object_file(victim.checksum)).write_bytes(b"SECRET")
    assert not ops.verify(sid, store).ok
    with pytest.raises(snapdir.SnapdirError):
        run(snapdir.verify(sid, uri(tmp_path / "store")))


def test_diff_matches_snapdir(tmp_path: Path) -> None:
    one = plain_tree(tmp_path / "one")
    two = tmp_path / "two"
    os.rename(one, two)
    plain_tree(one)
    (two / "private").write_bytes(b"changed")
    (two / "exec").chmod(0o700)
    (two / "A").unlink()
    (two / "new file").write_bytes(b"new")
    (two / "empty").rmdir()
    (two / "empty").write_bytes(b"was a dir")
    sid1 = str(run(snapdir.push(str(one), uri(tmp_path / "s1"))))
    sid2 = str(run(snapdir.push(str(two), uri(tmp_path / "s2"))))
    store = FileStore(tmp_path / "both")
    ops.push(one, store)
    ops.push(two, store)
    opts = snapdir.DiffOptions.from_refs([uri(tmp_path / "s1")], [uri(tmp_path / "s2")])
    want = [(e.status, e.path) for e in run(snapdir.diff(opts))]
    got = [(e.status, e.path) for e in ops.diff(sid1, sid2, store)]
    assert got == want
    assert ("M", "./exec") in got and ("A", "./empty") in got
    every = [(e.status, e.path) for e in ops.diff(sid1, sid2, store, include_unchanged=True)]
    assert [r for r in every if r[0] != "="] == want and len(every) > len(want)


def _extract_id(box: Any, dest: Path) -> str:
    box.extract(dest, preserve_permissions=True)
    os.chmod(dest, 0o755)
    return theirs(dest)[1]


def test_archive_id_is_the_extracted_tree_id(tmp_path: Path, make_archive: Any) -> None:
    path = make_archive({"a/b.txt": b"bee", "a/deep/c": b"", "top": b"top" * 1000,
                         "ü n/ï": b"x"})
    with lockbox.open(path, password="pw") as box:
        assert manifest_of_archive(box).id == _extract_id(box, tmp_path / "x")


def test_uri_archive_with_modes_and_symlinks(tmp_path: Path) -> None:
    from lockbox.formats.uri import write_uri

    def item(path: str, kind: str, mode: int, data: bytes | None = None, target: str = ""
             ) -> tuple[EntryInfo, Any]:
        info = EntryInfo(path, kind, mode, 0, size=len(data or b""), target=target)
        return info, (iter([data]) if data is not None else None)

    items = [item("d", "dir", 0o700), item("d/run", "file", 0o755, b"#!/bin/sh\n"),
             item("d/secret", "file", 0o600, b"s"), item("empty", "dir", 0o755),
             item("ln", "symlink", 0o777, target="d/run"),
             item("d/inner", "symlink", 0o777, target="run"),
             item("d/sub", "dir", 0o750), item("d/sub/back", "symlink", 0o777, target="../run"),
             item("chain", "symlink", 0o777, target="lndir/sub"),
             item("lndir", "symlink", 0o777, target="d"),
             item("up", "symlink", 0o777, target="../outside"),
             item("broken", "symlink", 0o777, target="nowhere")]
    write_uri(tmp_path / "a.uri", items)
    with lockbox.open(tmp_path / "a.uri") as box:
        ours = manifest_of_archive(box)
        box.extract(tmp_path / "x", preserve_permissions=True, strict=False)
        os.chmod(tmp_path / "x", 0o755)
        assert ours.id == theirs(tmp_path / "x")[1]
        assert manifest_of_archive(box, follow_symlinks=False).id == \
            theirs(tmp_path / "x", no_follow=True)[1]
        paths = [e.path for e in ours.entries]
        assert "./lndir/inner" in paths and "./chain/back" in paths and "./up" not in paths


def test_archive_with_a_symlink_cycle_is_refused(tmp_path: Path) -> None:
    from lockbox.errors import UsageError
    from lockbox.formats.uri import write_uri

    items = [(EntryInfo("d", "dir", 0o755, 0), None),
             (EntryInfo("d/up", "symlink", 0o777, 0, target=".."), None)]
    write_uri(tmp_path / "a.uri", items)
    with lockbox.open(tmp_path / "a.uri") as box:
        with pytest.raises(UsageError, match="symlink cycle"):
            manifest_of_archive(box)
        assert [e.path for e in manifest_of_archive(box, follow_symlinks=False).entries] \
            == ["./", "./d/"]
    (tmp_path / "t" / "d").mkdir(parents=True)
    (tmp_path / "t" / "d" / "up").symlink_to("..")
    with pytest.raises(UsageError, match="symlink cycle"):
        manifest_of_directory(tmp_path / "t")
    # snapdir unrolls the loop until the kernel's ELOOP (40 links): a manifest of 80
    # directories that no tree has. lockbox refuses instead (docs/formats/SNAPDIR.md §8).
    raw, _ = theirs(tmp_path / "t")
    assert raw.count(b"\nD 777 ") == 40
