"""``lockbox snap ...`` end to end (issue 10's "Must show" through the CLI), against the
real snapdir (PyPI ``snapdir``, a binding of its Rust code) as the oracle: ids and
manifests of an awkward tree; packs written BY HAND from the seed's grammar (not by our
writer) filed by ``receive-pack`` and pulled back by snapdir; damaged and truncated packs
filing no manifest and leaving no temp file; push/pull both ways with identical trees;
an archive's id == snapdir's id of its extraction; send-pack | receive-pack between two
stores (real processes); objects-needed; verify; diff (== snapdir's diff); a store over
plain HTTP (any static host) and lockbox's own server; a snapshot as an archive for
ls/cat/extract."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import blake3
import pytest
import snapdir
from backports import zstd

from cli_helpers import WEAK, Result, Runner, one_line_error
from lockbox import cli, cli_snap

HEXES = "0123456789abcdef"


# -- running lockbox ---------------------------------------------------------------------


def lockbox_process(*argv: str | os.PathLike[str], stdin: bytes = b"",
                    env: dict[str, str] | None = None, timeout: float = 60
                    ) -> subprocess.CompletedProcess[bytes]:
    """A real ``python -m lockbox`` process; no LOCKBOX_*/SNAPDIR_* variables but ``env``."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("LOCKBOX_", "SNAPDIR_"))}
    return subprocess.run([sys.executable, "-m", "lockbox", *(os.fspath(a) for a in argv)],
                          env={**base, **(env or {})}, input=stdin, capture_output=True,
                          timeout=timeout, check=False)


class SnapRunner(Runner):
    """``lockbox`` in-process; ``stdin`` bytes for the commands that read it."""

    def __init__(self, capsysbinary: pytest.CaptureFixture[bytes],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(capsysbinary)
        self.monkeypatch = monkeypatch

    def with_stdin(self, data: bytes, *argv: str | os.PathLike[str]) -> Result:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        self.monkeypatch.setattr(cli, "_stdin_tty", lambda: False)
        try:
            return self(*argv)
        finally:
            self.monkeypatch.setattr(cli, "_stdin_tty", lambda: True)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No secret, store or token from the environment; snapdir's cache under tmp_path; a
    'terminal' whose prompt fails the test."""
    for name in list(os.environ):
        if name.startswith(("LOCKBOX_", "SNAPDIR_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SNAPDIR_CACHE_DIR", str(tmp_path / "snapdir-cache"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.setattr(cli, "_stdin_tty", lambda: True)

    def asked(prompt: str = "") -> str:
        raise AssertionError(f"prompted: {prompt!r}")

    monkeypatch.setattr(cli.getpass, "getpass", asked)


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
        ) -> SnapRunner:
    return SnapRunner(capsysbinary, monkeypatch)


# -- the oracle ------------------------------------------------------------------------


def sd_id(path: Path, **kw: Any) -> str:
    return str(asyncio.run(snapdir.id(str(path), **kw)))


def sd_manifest(path: Path, **kw: Any) -> str:
    return str(asyncio.run(snapdir.manifest(str(path), **kw)).raw)


def sd_push(path: Path, store: Path) -> str:
    return str(asyncio.run(snapdir.push(str(path), snapdir.StoreUri(store.as_uri()))))


def sd_pull(snapshot_id: str, store: Path, dest: Path) -> None:
    asyncio.run(snapdir.pull(snapdir.SnapshotId(snapshot_id),
                             snapdir.StoreUri(store.as_uri()), str(dest)))


def sd_verify(snapshot_id: str, store: Path) -> bool:
    return bool(asyncio.run(snapdir.verify(snapshot_id, snapdir.StoreUri(store.as_uri()))))


def sd_diff(store_a: Path, store_b: Path) -> list[tuple[str, str]]:
    opts = snapdir.DiffOptions.from_refs([store_a.as_uri()], [store_b.as_uri()])
    return [(e.status, e.path) for e in asyncio.run(snapdir.diff(opts))]


# -- trees -----------------------------------------------------------------------------


def awkward_tree(root: Path) -> Path:
    """Spaces, tabs, unicode (NFC and NFD spellings side by side), empty files and
    directories, nested directories with their own modes, symlinks to a file and to a
    directory, a broken symlink, names that sort differently by bytes than by text."""
    src = root / "awkward"
    for d in ["dir with space/inner", "empty dir", "ünï/ẞ", "nested/a/b/c", "Zeta", "a-b"]:
        (src / d).mkdir(parents=True, exist_ok=True)
    files = {
        "dir with space/file name.txt": b"x",
        "ünï/ẞ/café.txt": b"hello, caf\xc3\xa9",
        "cafe\u0301.txt": b"decomposed",
        "empty.txt": b"",
        "run.sh": b"#!/bin/sh\necho hi\n",
        "priv": b"secret",
        "tab\tname": b"tab",
        "nested/a/b/c/deep.bin": bytes(range(256)) * 64,
        "a-b/x": b"dash",
        "a b": b"space",
        "Zeta/z": b"upper",
        "big.bin": os.urandom(3 * 1024 * 1024 + 17),
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    os.chmod(src / "run.sh", 0o755)
    os.chmod(src / "priv", 0o600)
    os.chmod(src / "nested" / "a", 0o700)
    os.chmod(src / "empty dir", 0o750)
    os.chmod(src / "Zeta", 0o711)
    os.symlink("run.sh", src / "link-to-file")
    os.symlink("nested/a", src / "link-to-dir")
    os.symlink("no/such/target", src / "broken-link")
    return src


def plain_tree(root: Path, name: str = "plain") -> Path:
    """A tree without symlinks (a pulled tree holds no symlinks): modes, an empty
    directory, an empty file, a multi-MiB file, spaces and unicode."""
    src = root / name
    for d in ["docs/deep/nested", "empty dir", "ünï"]:
        (src / d).mkdir(parents=True, exist_ok=True)
    (src / "docs/deep/nested/note.txt").write_bytes(b"hello, snapdir\n")
    (src / "empty.txt").write_bytes(b"")
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "ünï/café au lait.txt").write_bytes(b"caf\xc3\xa9")
    os.chmod(src / "run.sh", 0o755)
    os.chmod(src / "docs/deep/nested/note.txt", 0o600)
    os.chmod(src / "docs", 0o750)
    os.chmod(src / "empty dir", 0o700)
    return src


def tree_state(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``root``: relative path -> (kind, permission bits, content)."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(full).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), full.read_bytes())
    return out


# -- stores ----------------------------------------------------------------------------


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def sharded(kind: str, hex_id: str) -> str:
    return f"{kind}/{hex_id[0:3]}/{hex_id[3:6]}/{hex_id[6:9]}/{hex_id[9:]}"


def store_files(store: Path) -> list[str]:
    """Every non-directory under the store, relative."""
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*")
                  if not p.is_dir())


def assert_clean_store(store: Path, *, manifests: Iterable[str] = ()) -> set[str]:
    """Only final, verified objects (and exactly ``manifests``) in the store: no temp
    file anywhere. Returns the object ids present."""
    objects: set[str] = set()
    found_manifests: set[str] = set()
    for rel in store_files(store):
        kind, *parts = rel.split("/")
        hex_id = "".join(parts)
        assert len(parts) == 4 and [len(p) for p in parts] == [3, 3, 3, 55], rel
        assert set(hex_id) <= set(HEXES), rel
        assert b3((store / rel).read_bytes()) == hex_id, f"{rel} is not its content's hash"
        if kind == ".objects":
            objects.add(hex_id)
        else:
            assert kind == ".manifests", rel
            found_manifests.add(hex_id)
    assert found_manifests == set(manifests)
    return objects


# -- packs by hand (the seed's grammar; NOT our writer) ---------------------------------


def hand_manifest(files: dict[str, bytes], dirs: dict[str, int] | None = None,
                  modes: dict[str, int] | None = None) -> bytes:
    """A snapdir manifest written from the issue's facts alone: F/D lines, octal perms,
    BLAKE3 checksums (a directory's: of its direct children's, sorted, deduplicated),
    a directory's size the total of the file bytes under it, paths ./-prefixed and
    sorted by their bytes, every line ending in a newline."""
    dirs = {"": 0o755, **(dirs or {})}
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            dirs.setdefault("/".join(parts[:i]), 0o755)
    entries: dict[str, tuple[str, int, str, int]] = {}

    def walk(d: str) -> tuple[str, int]:
        children: list[str] = []
        size = 0
        prefix = f"{d}/" if d else ""
        for rel, data in files.items():
            if rel.startswith(prefix) and "/" not in rel[len(prefix):]:
                entries[rel] = ("F", (modes or {}).get(rel, 0o644), b3(data), len(data))
                children.append(b3(data))
                size += len(data)
        for sub in dirs:
            if sub and sub.startswith(prefix) and "/" not in sub[len(prefix):]:
                checksum, sub_size = walk(sub)
                children.append(checksum)
                size += sub_size
        checksum = b3("".join(sorted(set(children))).encode())
        entries[d + "/" if d else ""] = ("D", dirs[d], checksum, size)
        return checksum, size

    walk("")
    lines = sorted((f"./{rel}".encode(), f"{k} {m:o} {c} {s} ./{rel}".encode())
                   for rel, (k, m, c, s) in entries.items())
    return b"".join(line + b"\n" for _, line in lines)


def hand_pack(objects: list[bytes], manifest: bytes | None = None, *, zstd_body: bool = False,
              end: bool = True) -> bytes:
    body = bytearray()
    for data in objects:
        body += f"obj {b3(data)} {len(data)}\n".encode() + data
    if manifest is not None:
        body += f"manifest {b3(manifest)} {len(manifest)}\n".encode() + manifest
    if end:
        body += b"end\n"
    if zstd_body:
        return b"SNAPPACK 1Z\n" + zstd.compress(bytes(body), 3)
    return b"SNAPPACK 1\n" + bytes(body)


HAND_FILES = {
    "hello.txt": b"hello, world\n",
    "docs/readme.md": b"# readme\n\nwith two lines\n",
    "docs/empty": b"",
    "bin/data.bin": bytes(range(256)) * 40,
    "with space/\u00e9t\u00e9.txt": "\u00e9t\u00e9".encode(),
}


# -- version and usage -----------------------------------------------------------------


def test_version_and_capabilities(run: SnapRunner) -> None:
    assert run.ok("snap", "version", "--capabilities").out == (
        b"snapdir 1.11.0 wire=1 caps=objects-needed,send-pack,receive-pack,snappack-zstd\n")
    assert run.ok("snap", "version").out == b"snapdir 1.11.0\n"
    assert cli_snap.capabilities_line().split()[1] == cli_snap.SNAPDIR_VERSION


def test_usage_errors_are_one_line(run: SnapRunner, tmp_path: Path) -> None:
    line = one_line_error(run("snap", "verify", "a" * 64), 2)
    assert "--store" in line and "SNAPDIR_STORE" in line
    line = one_line_error(run("snap", "pull", "A" * 64, "--store", tmp_path, "--to",
                              tmp_path / "d"), 2)
    assert "64 lowercase hex" in line
    assert not (tmp_path / "d").exists()
    line = one_line_error(run("snap", "push", tmp_path, "--store", "http://127.0.0.1:9/s/"), 2)
    assert "--token-file" in line and "LOCKBOX_SNAP_TOKEN" in line
    line = one_line_error(run("snap", "send-pack", "--store", tmp_path, "--ids", "-",
                              "--manifest-id", "xyz"), 2)
    assert "--manifest-id" in line
    one_line_error(run("snap", "id", tmp_path / "missing"), 12)  # as `lockbox ls missing`
    line = one_line_error(run("snap", "id"), 2)  # no path, and stdin is a terminal
    assert "pipe a manifest" in line
    run.monkeypatch.setattr(cli_snap, "_stdout_tty", lambda: True)
    line = one_line_error(run("snap", "send-pack", "--store", tmp_path, "--ids", "-"), 2)
    assert "binary pack" in line


# -- ids and manifests -----------------------------------------------------------------


def test_id_and_manifest_equal_snapdirs_on_an_awkward_tree(run: SnapRunner,
                                                          tmp_path: Path) -> None:
    src = awkward_tree(tmp_path)
    manifest = run.ok("snap", "manifest", src).out
    assert manifest == sd_manifest(src).encode() + b"\n"
    assert run.ok("snap", "id", src).out.decode() == sd_id(src) + "\n"
    assert b3(manifest) == sd_id(src)
    # --no-follow drops the symlinks, as snapdir's does
    no_follow = run.ok("snap", "manifest", "--no-follow", src).out
    assert no_follow == sd_manifest(src, no_follow=True).encode() + b"\n"
    assert b"link-to" not in no_follow and no_follow != manifest
    # a manifest piped on stdin: its id (comments and blank lines ignored)
    piped = b"# a comment\n\n" + manifest
    assert run.with_stdin(piped, "snap", "id").out.decode() == sd_id(src) + "\n"


def test_id_of_archives_equals_snapdirs_id_of_their_extraction(
        run: SnapRunner, tmp_path: Path) -> None:
    src = plain_tree(tmp_path)
    os.symlink("run.sh", src / "link")
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    box = tmp_path / "photos.lbox"
    run.ok("create", box, "--password-file", pw, *WEAK)
    run.ok("add", box, src, "--password-file", pw)
    lbox_id = run.ok("snap", "id", box, "--password-file", pw).out.decode().strip()
    out = tmp_path / "extracted"
    run.ok("extract", box, "--to", out, "-p", "--password-file", pw)
    assert lbox_id == sd_id(out)
    assert run.ok("snap", "manifest", box, "--password-file", pw).out == (
        sd_manifest(out).encode() + b"\n")
    # the same tree as a .uri (another format, unencrypted): the same id
    uri = tmp_path / "photos.uri"
    run.ok("convert", box, uri, "--password-file", pw)
    assert run.ok("snap", "id", uri).out.decode().strip() == lbox_id
    # LOCKBOX_PASSWORD, or asked on the terminal, as for `lockbox ls`
    run.monkeypatch.setenv("LOCKBOX_PASSWORD", "correct horse")
    assert run.ok("snap", "id", box).out.decode().strip() == lbox_id
    run.monkeypatch.delenv("LOCKBOX_PASSWORD")
    asked: list[str] = []

    def answer(prompt: str = "") -> str:
        asked.append(prompt)
        return "correct horse"

    run.monkeypatch.setattr(cli.getpass, "getpass", answer)
    assert run.ok("snap", "id", box).out.decode().strip() == lbox_id
    assert asked == ["Password for photos.lbox: "]
    # an unreadable password file: one line
    line = one_line_error(run("snap", "id", box, "--password-file", tmp_path / "nope"), 2)
    assert "password file" in line


# -- push and pull, both ways ----------------------------------------------------------


def test_lockbox_push_then_snapdir_pull(run: SnapRunner, tmp_path: Path) -> None:
    src = plain_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = run.ok("snap", "push", src, "--store", store.as_uri()).out.decode()
    assert snapshot_id == sd_id(src) + "\n"
    snapshot_id = snapshot_id.strip()
    objects = assert_clean_store(store, manifests={snapshot_id})
    assert sd_verify(snapshot_id, store)
    dest = tmp_path / "pulled-by-snapdir"
    sd_pull(snapshot_id, store, dest)
    assert tree_state(dest) == tree_state(src)
    # a second push of the same tree uploads nothing (plain path = file store)
    before = {p: (store / p).stat().st_mtime_ns for p in store_files(store)}
    assert run.ok("snap", "push", src, "--store", store).out.decode().strip() == snapshot_id
    assert {p: (store / p).stat().st_mtime_ns for p in store_files(store)} == before
    assert assert_clean_store(store, manifests={snapshot_id}) == objects


def test_snapdir_push_then_lockbox_pull(run: SnapRunner, tmp_path: Path) -> None:
    src = plain_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = sd_push(src, store)
    dest = tmp_path / "pulled-by-lockbox"
    run.ok("snap", "pull", snapshot_id, "--store", store.as_uri(), "--to", dest)
    assert tree_state(dest) == tree_state(src)
    assert sd_id(dest) == snapshot_id
    run.ok("snap", "verify", snapshot_id, "--store", store.as_uri())
    # an existing destination: refused before anything is written, unless --overwrite
    (dest / "run.sh").write_bytes(b"local change\n")
    r = run("snap", "pull", snapshot_id, "--store", store, "--to", dest)
    assert r.rc != 0
    one_line_error(r, r.rc)
    assert (dest / "run.sh").read_bytes() == b"local change\n"
    run.ok("-q", "snap", "pull", snapshot_id, "--store", store, "--to", dest, "--overwrite")
    assert tree_state(dest) == tree_state(src)


def test_pulls_of_an_awkward_tree_agree(run: SnapRunner, tmp_path: Path) -> None:
    """Symlinks followed at push become files and directories: both pulls give the same
    tree, whichever side pushed."""
    src = awkward_tree(tmp_path)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    snapshot_id = run.ok("snap", "push", src, "--store", ours).out.decode().strip()
    assert sd_push(src, theirs) == snapshot_id
    assert sorted(store_files(ours)) == sorted(store_files(theirs))
    a, b = tmp_path / "a", tmp_path / "b"
    run.ok("snap", "pull", snapshot_id, "--store", theirs, "--to", a)
    sd_pull(snapshot_id, ours, b)
    assert tree_state(a) == tree_state(b)


def test_pull_checks_every_object(run: SnapRunner, tmp_path: Path) -> None:
    src = plain_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = sd_push(src, store)
    victim = store / sharded(".objects", b3((src / "run.sh").read_bytes()))
    victim.chmod(0o644)
    victim.write_bytes(b"#!/bin/sh\necho HI\n")  # same size, other bytes
    dest = tmp_path / "dest"
    r = run("snap", "pull", snapshot_id, "--store", store, "--to", dest)
    assert r.rc == 5, r.err
    assert "Traceback" not in r.err
    assert not (dest / "run.sh").exists()
    line = one_line_error(run("snap", "verify", snapshot_id, "--store", store), 5)
    assert victim.name in line or b3((src / "run.sh").read_bytes()) in line


def test_pull_never_writes_outside_dest(run: SnapRunner, tmp_path: Path) -> None:
    """A hostile store whose manifest names ../escape: refused, nothing outside DEST."""
    store = tmp_path / "store"
    data = b"owned\n"
    obj = store / sharded(".objects", b3(data))
    obj.parent.mkdir(parents=True)
    obj.write_bytes(data)
    manifest = (f"D 755 {b3(b3(data).encode())} {len(data)} ./\n"
                f"F 644 {b3(data)} {len(data)} ./../escape\n").encode()
    man = store / sharded(".manifests", b3(manifest))
    man.parent.mkdir(parents=True)
    man.write_bytes(manifest)
    dest = tmp_path / "inner" / "dest"
    r = run("snap", "pull", b3(manifest), "--store", store, "--to", dest)
    assert r.rc in (3, 8), r.err
    assert "Traceback" not in r.err
    assert not (tmp_path / "inner" / "escape").exists()


# -- receive-pack: the "Must show" -----------------------------------------------------


@pytest.mark.parametrize("zstd_body", [False, True], ids=["v1", "1Z"])
def test_hand_built_pack_received_then_pulled_by_snapdir(run: SnapRunner, tmp_path: Path,
                                                         zstd_body: bool) -> None:
    manifest = hand_manifest(HAND_FILES)
    snapshot_id = b3(manifest)
    objects = list(HAND_FILES.values())
    pack = hand_pack([*objects, objects[0]], manifest, zstd_body=zstd_body)  # a duplicate
    store = tmp_path / "store"
    r = run.with_stdin(pack, "snap", "receive-pack", "--store", store.as_uri(),
                       "--require-manifest", snapshot_id)
    assert r.rc == 0, r.err
    assert r.out == b""  # stdout stays silent; the summary is on stderr
    assert "received pack" in r.err and snapshot_id in r.err
    assert assert_clean_store(store, manifests={snapshot_id}) == {b3(d) for d in objects}
    dest = tmp_path / "pulled"
    sd_pull(snapshot_id, store, dest)
    for rel, data in HAND_FILES.items():
        assert (dest / rel).read_bytes() == data
    assert sd_id(dest) == snapshot_id  # the hand-made manifest is snapdir's very own
    assert sd_verify(snapshot_id, store)


def _damaged_packs() -> Iterator[tuple[str, bytes]]:
    manifest = hand_manifest(HAND_FILES)
    good = hand_pack(list(HAND_FILES.values()), manifest)
    header_end = good.index(b"\n") + 1
    first_obj = good.index(b"\n", header_end) + 1
    manifest_at = good.index(b"manifest ")
    for name, cut in [("empty", 0), ("in the magic", 5), ("after the magic", header_end),
                      ("in a header", header_end + 10), ("mid-payload", first_obj + 3),
                      ("in the manifest header", manifest_at + 20),
                      ("mid-manifest", len(good) - 30), ("before end", len(good) - 4),
                      ("in end", len(good) - 2)]:
        yield f"truncated {name}", good[:cut]
    flipped = bytearray(good)
    flipped[first_obj + 3] ^= 0x01
    yield "flipped object byte", bytes(flipped)
    flipped = bytearray(good)
    flipped[len(good) - 10] ^= 0x01
    yield "flipped manifest byte", bytes(flipped)
    yield "record after the manifest", good[:-4] + b"obj " + b3(b"").encode() + b" 0\nend\n"
    yield "bad magic", b"SNAPPACK 2\n" + good[header_end:]
    yield "over-long header", b"SNAPPACK 1\nobj " + b"a" * 200 + b"\n"
    yield "uppercase id", good.replace(b3(b"").encode(), b3(b"").upper().encode(), 1)
    yield "1Z bomb (a tiny frame, a 70 MB manifest)", b"SNAPPACK 1Z\n" + zstd.compress(
        b"SNAPPACK 1\nmanifest " + b"0" * 64 + b" 70000000\n" + b"\0" * (70 << 20), 19)
    truncated_z = hand_pack(list(HAND_FILES.values()), manifest, zstd_body=True)
    yield "1Z truncated", truncated_z[:-7]
    yield "1Z without end", hand_pack(list(HAND_FILES.values()), manifest, zstd_body=True,
                                      end=False)


DAMAGED_PACKS = list(_damaged_packs())


@pytest.mark.parametrize("name,pack", DAMAGED_PACKS, ids=[n for n, _ in DAMAGED_PACKS])
def test_damaged_pack_files_no_manifest_and_no_temp_file(run: SnapRunner, tmp_path: Path,
                                                         name: str, pack: bytes) -> None:
    store = tmp_path / "store"
    r = run.with_stdin(pack, "snap", "receive-pack", "--store", store)
    assert r.rc != 0, name
    one_line_error(r, r.rc)
    assert r.out == b""
    filed = assert_clean_store(store) if store.exists() else set()
    assert filed <= {b3(d) for d in HAND_FILES.values()}
    # a rerun with the whole pack completes it
    manifest = hand_manifest(HAND_FILES)
    r = run.with_stdin(hand_pack(list(HAND_FILES.values()), manifest), "snap",
                       "receive-pack", "--store", store)
    assert r.rc == 0, r.err
    assert_clean_store(store, manifests={b3(manifest)})


def test_require_manifest_mismatch_and_objects_only_packs(run: SnapRunner,
                                                          tmp_path: Path) -> None:
    store = tmp_path / "store"
    objects = list(HAND_FILES.values())
    r = run.with_stdin(hand_pack(objects), "snap", "receive-pack", "--store", store,
                       "--require-manifest", "0" * 64)
    assert r.rc != 0
    one_line_error(r, r.rc)
    assert assert_clean_store(store) == {b3(d) for d in objects}  # objects stay filed
    r = run.with_stdin(hand_pack(objects), "snap", "receive-pack", "--store", store)
    assert r.rc == 0, r.err
    assert f"0 object(s) written, {len(objects)} skipped" in r.err


# -- send-pack, objects-needed ---------------------------------------------------------


def test_objects_needed_first_seen_order_and_fail_closed(run: SnapRunner,
                                                         tmp_path: Path) -> None:
    store = tmp_path / "store"
    present = [b"one", b"two"]
    run.with_stdin(hand_pack(present), "snap", "receive-pack", "--store", store)
    absent = [b3(f"absent {i}".encode()) for i in range(4)]
    ids = [absent[2], b3(b"one"), absent[0], absent[2], b3(b"two"), absent[3], absent[1],
           absent[0]]
    stdin = ("\n".join(ids[:3]) + "\r\n\n" + "\n".join(ids[3:]) + "\n").encode()
    r = run.with_stdin(stdin, "snap", "objects-needed", "--store", store.as_uri())
    assert r.rc == 0, r.err
    assert r.out.decode().split("\n") == [absent[2], absent[0], absent[3], absent[1], ""]
    assert run.with_stdin(b"", "snap", "objects-needed", "--store", store).out == b""
    for bad in [absent[0].upper(), absent[0][:63], absent[0] + "0", " " + absent[0], "z" * 64]:
        r = run.with_stdin(f"{absent[1]}\n{bad}\n".encode(), "snap", "objects-needed",
                           "--store", store)
        line = one_line_error(r, 3)
        assert r.out == b"" and "line 2" in line


@pytest.mark.parametrize("pack_format", ["v1", "zstd"])
def test_send_pack_to_receive_pack_between_two_stores(tmp_path: Path,
                                                      pack_format: str) -> None:
    """Real processes joined by a pipe, as over ssh; snapdir then pulls from the copy."""
    src = plain_tree(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    snapshot_id = sd_push(src, a)
    ids = sorted(assert_clean_store(a, manifests={snapshot_id}))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids + ids[:2]) + "\n")
    needed = lockbox_process("snap", "objects-needed", "--store", b.as_uri(),
                             stdin=ids_file.read_bytes())
    assert needed.returncode == 0, needed.stderr
    assert needed.stdout.decode().split() == ids
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKBOX_", "SNAPDIR_"))}
    sender = subprocess.Popen(
        [sys.executable, "-m", "lockbox", "snap", "send-pack", "--store", a.as_uri(),
         "--ids", "-", "--manifest-id", snapshot_id, "--pack-format", pack_format],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base)
    receiver = subprocess.Popen(
        [sys.executable, "-m", "lockbox", "snap", "receive-pack", "--store", b.as_uri(),
         "--require-manifest", snapshot_id],
        stdin=sender.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base)
    assert sender.stdout is not None and sender.stdin is not None
    sender.stdout.close()
    sender.stdin.write(needed.stdout)
    sender.stdin.close()
    r_out, r_err = receiver.communicate(timeout=60)
    s_err = sender.stderr.read() if sender.stderr else b""
    assert sender.wait(timeout=60) == 0, s_err
    assert receiver.returncode == 0, r_err
    assert r_out == b""
    assert f"sent pack: {len(ids)} object(s) + manifest".encode() in s_err
    assert f"{len(ids)} object(s) written, 0 skipped, manifest {snapshot_id}".encode() in r_err
    assert store_files(b) == store_files(a)
    assert sd_verify(snapshot_id, b)
    dest = tmp_path / "dest"
    sd_pull(snapshot_id, b, dest)
    assert tree_state(dest) == tree_state(src)


def test_send_pack_bytes_follow_the_grammar(run: SnapRunner, tmp_path: Path) -> None:
    """Our writer's v1 stream is exactly the seed's grammar, in input order; a missing
    object stops the stream before ``end``."""
    store = tmp_path / "store"
    objects = [b"alpha", b"", b"gamma" * 1000]
    manifest = hand_manifest({"a": objects[0], "b": objects[1], "c": objects[2]})
    run.with_stdin(hand_pack(objects, manifest), "snap", "receive-pack", "--store", store)
    ids = "\n".join(b3(d) for d in reversed(objects)) + "\n"
    r = run.with_stdin(ids.encode(), "snap", "send-pack", "--store", store, "--ids", "-",
                       "--manifest-id", b3(manifest))
    assert r.rc == 0, r.err
    assert r.out == hand_pack(list(reversed(objects)), manifest)
    z = run.with_stdin(ids.encode(), "snap", "send-pack", "--store", store, "--ids", "-",
                       "--pack-format", "zstd")
    assert z.out.startswith(b"SNAPPACK 1Z\n")
    assert zstd.decompress(z.out[12:]) == hand_pack(list(reversed(objects)))[11:]
    # the level comes from SNAPDIR_SSH_ZSTD_LEVEL, as in snapdir (a bad value: level 3)
    levels = {}
    for level in ("1", "19", "many"):
        run.monkeypatch.setenv("SNAPDIR_SSH_ZSTD_LEVEL", level)
        levels[level] = run.with_stdin(ids.encode(), "snap", "send-pack", "--store", store,
                                       "--ids", "-", "--pack-format", "zstd").out
        assert zstd.decompress(levels[level][12:]) == hand_pack(list(reversed(objects)))[11:]
    assert levels["many"] == z.out and levels["1"] != levels["19"]
    run.monkeypatch.delenv("SNAPDIR_SSH_ZSTD_LEVEL")
    missing = b3(b"not there")
    r = run.with_stdin(f"{b3(objects[0])}\n{missing}\n".encode(), "snap", "send-pack",
                       "--store", store, "--ids", "-")
    assert r.rc != 0
    one_line_error(r, r.rc)
    assert not r.out.endswith(b"end\n")


# -- verify and diff -------------------------------------------------------------------


def test_verify_reports_each_bad_object(run: SnapRunner, tmp_path: Path) -> None:
    src = plain_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = sd_push(src, store)
    r = run.ok("snap", "verify", snapshot_id, "--store", store)
    assert r.text.startswith(f"ok: {snapshot_id}")
    run.monkeypatch.setenv("SNAPDIR_STORE", store.as_uri())  # --store's fallback
    assert run.ok("snap", "verify", snapshot_id).out == r.out
    run.monkeypatch.delenv("SNAPDIR_STORE")
    assert run.ok("-q", "snap", "verify", snapshot_id, "--store", store).out == b""
    gone = store / sharded(".objects", b3((src / "big.bin").read_bytes()))
    gone.unlink()
    r = run("snap", "verify", snapshot_id, "--store", store)
    assert r.rc == 5
    assert b3((src / "big.bin").read_bytes()) in r.err
    assert "Traceback" not in r.err
    r = run("snap", "verify", "0" * 64, "--store", store)
    assert r.rc == 7, r.err  # no such manifest


def test_diff_matches_snapdirs(run: SnapRunner, tmp_path: Path) -> None:
    src = plain_tree(tmp_path)
    store, only_a, only_b = tmp_path / "store", tmp_path / "only-a", tmp_path / "only-b"
    id_a = sd_push(src, store)
    sd_push(src, only_a)
    (src / "run.sh").write_bytes(b"changed\n")
    (src / "empty.txt").unlink()
    (src / "new\tfile \u00e9").write_bytes(b"new")
    os.chmod(src / "docs/deep/nested/note.txt", 0o644)
    id_b = sd_push(src, store)
    sd_push(src, only_b)
    expected = sd_diff(only_a, only_b)
    assert {s for s, _ in expected} == {"A", "D", "M"}
    r = run.ok("snap", "diff", id_a, id_b, "--store", store)
    assert r.lines == [f"{s}\t{cli.escape_controls(p)}" for s, p in expected]
    j = run.ok("snap", "diff", id_a, id_b, "--store", store.as_uri(), "--json")
    assert json.loads(j.out) == [{"status": s, "path": p} for s, p in expected]
    assert j.out.count(b"\n") == 1 and b"\\t" in j.out
    assert run.ok("snap", "diff", id_a, id_a, "--store", store).out == b""
    assert run("snap", "diff", id_a, id_b, "--store", store, "--exit-code").rc == 1
    assert run("snap", "diff", id_a, id_a, "--store", store, "--exit-code").rc == 0
    every = run.ok("snap", "diff", id_a, id_b, "--store", store, "--all").lines
    assert any(line.startswith("=\t") for line in every)


def test_diff_json_escapes_like_snapdir() -> None:
    rows = [("A", './a"b\\c\x01\x7f\u00e9'), ("=", "./x")]
    assert cli_snap.render_diff_json(rows) == (
        '[{"status":"A","path":"./a\\"b\\\\c\\u0001\x7f\u00e9"},'
        '{"status":"=","path":"./x"}]')
    assert cli_snap.render_diff_porcelain(rows[1:]) == "=\t./x\n"


# -- HTTP: any static host, lockbox's server -------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that read enough and left
            super().handle()


@contextlib.contextmanager
def http_server_host(root: Path) -> Iterator[str]:
    """CPython's http.server: plain GETs, no Range support at all."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@contextlib.contextmanager
def starlette_host(root: Path) -> Iterator[str]:
    """Starlette's StaticFiles on uvicorn (Range requests answered)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    app = Starlette(routes=[Mount("/", StaticFiles(directory=root))])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "no static host"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(params=["http.server", "starlette"])
def static_host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static host over tmp_path/www: (base URL, root)."""
    root = tmp_path / "www"
    root.mkdir()
    host = http_server_host if request.param == "http.server" else starlette_host
    with host(root) as url:
        yield url, root


def test_pull_verify_diff_from_a_static_http_host(run: SnapRunner, tmp_path: Path,
                                                  static_host: tuple[str, Path]) -> None:
    url, www = static_host
    src = plain_tree(tmp_path)
    snapshot_id = sd_push(src, www / "snaps")
    store_url = f"{url}/snaps/"
    dest = tmp_path / "dest"
    run.ok("snap", "pull", snapshot_id, "--store", store_url, "--to", dest)
    assert tree_state(dest) == tree_state(src)
    run.ok("snap", "verify", snapshot_id, "--store", store_url)
    assert run.ok("snap", "diff", snapshot_id, snapshot_id, "--store", store_url).out == b""
    r = run.with_stdin(f"{b3(b'nope')}\n{b3((src / 'run.sh').read_bytes())}\n".encode(),
                       "snap", "objects-needed", "--store", store_url)
    assert r.out.decode() == b3(b"nope") + "\n"
    r = run.with_stdin(b"", "snap", "send-pack", "--store", store_url, "--ids", "-",
                       "--manifest-id", snapshot_id)
    assert r.rc == 0, r.err
    assert r.out.startswith(b"SNAPPACK 1\nmanifest " + snapshot_id.encode())


def test_snap_commands_take_a_snapshot_location(run: SnapRunner, tmp_path: Path) -> None:
    """STORE_URI#id=ID for snap manifest/id/push: the snapshot as stored (a followed
    symlink keeps the SIZE snapdir recorded), pushed elsewhere as it is (snapdir sync)."""
    src = awkward_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = sd_push(src, store)
    location = f"{store.as_uri()}#id={snapshot_id}"
    assert run.ok("snap", "id", location).out.decode().strip() == snapshot_id
    assert run.ok("snap", "manifest", location).out == (store / sharded(
        ".manifests", snapshot_id)).read_bytes()
    copy = tmp_path / "copy"
    assert run.ok("snap", "push", location, "--store", copy).text.strip() == snapshot_id
    assert store_files(copy) == store_files(store)
    assert "nothing sent" in run.ok("snap", "push", location, "--store", copy).err
    assert sd_verify(snapshot_id, copy)


def test_snapshot_in_a_store_is_an_archive(run: SnapRunner, tmp_path: Path) -> None:
    """ls/cat/extract through the format-neutral protocol: STORE_URI#id=ID."""
    src = plain_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = sd_push(src, store)
    location = f"{store.as_uri()}#id={snapshot_id}"
    listing = run.ok("ls", "-R", location).lines
    assert "docs/deep/nested/note.txt" in listing and "empty dir/" in listing
    assert run.ok("cat", location, "docs/deep/nested/note.txt").out == b"hello, snapdir\n"
    out = tmp_path / "out"
    run.ok("extract", location, "--to", out, "-p")
    assert tree_state(out) == tree_state(src)


def test_convert_a_snapshot_of_an_awkward_tree(run: SnapRunner, tmp_path: Path) -> None:
    """A followed symlink's manifest SIZE is the link's (snapdir records it so), not its
    content's: convert (and the tree it gives) still follows the objects."""
    src = awkward_tree(tmp_path)
    store = tmp_path / "store"
    snapshot_id = sd_push(src, store)
    location = f"{store.as_uri()}#id={snapshot_id}"
    uri = tmp_path / "snapshot.uri"
    run.ok("convert", location, uri)
    from_uri, pulled = tmp_path / "from-uri", tmp_path / "pulled"
    run.ok("extract", uri, "--to", from_uri, "-p")
    run.ok("snap", "pull", snapshot_id, "--store", store, "--to", pulled)
    assert tree_state(from_uri) == tree_state(pulled)
    assert (from_uri / "link-to-file").read_bytes() == (src / "run.sh").read_bytes()


@contextlib.contextmanager
def lockbox_serve(tmp_path: Path, store: Path, token_file: Path | None
                  ) -> Iterator[str]:
    """A real ``lockbox serve --snap-store STORE [--push-token-file F]`` process on a free
    port; yields the store URL (``http://127.0.0.1:PORT/snap/``)."""
    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    store.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "lockbox", "serve", str(served), "--port", "0",
            "--snap-store", str(store)]
    if token_file is not None:
        argv += ["--push-token-file", str(token_file)]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKBOX_", "SNAPDIR_"))}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base,
                            text=True)
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        for line in proc.stdout:  # the banner: "  snap store: DIR at URL (pushes ...)"
            if "snap store:" in line:
                url = line.split(" at ", 1)[1].split(" (", 1)[0].strip()
                break
            assert time.monotonic() < deadline, "lockbox serve did not start"
        assert url is not None, proc.stderr.read() if proc.stderr else ""
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang guard
            proc.kill()
            proc.wait(10)


def test_push_to_lockbox_serve_and_pull_back_over_http(run: SnapRunner, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    src = plain_tree(tmp_path)
    store = tmp_path / "served-store"
    token = tmp_path / "token"
    token.write_text("s3cret-push-token\n")
    token.chmod(0o600)
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    with lockbox_serve(tmp_path, store, token) as url:
        line = one_line_error(run("snap", "push", src, "--store", url, "--token-file", wrong),
                              2)
        assert "401" in line or "403" in line
        assert not store_files(store)
        r = run.ok("snap", "push", src, "--store", url, "--token-file", token)
        snapshot_id = r.text.strip()
        assert snapshot_id == sd_id(src)
        assert_clean_store(store, manifests={snapshot_id})
        assert sd_verify(snapshot_id, store)
        # the token from the environment; the second push sends nothing
        monkeypatch.setenv("LOCKBOX_SNAP_TOKEN", "s3cret-push-token")
        again = run.ok("snap", "push", src, "--store", url)
        assert again.text.strip() == snapshot_id
        assert "nothing sent" in again.err
        # a snapshot of another store, copied as it is through the server
        other = tmp_path / "other-store"
        other_id = sd_push(awkward_tree(tmp_path), other)
        r = run.ok("snap", "push", f"{other.as_uri()}#id={other_id}", "--store", url)
        assert r.text.strip() == other_id
        assert sd_verify(other_id, store)
        # pulled back over HTTP (plain GETs under /snap/), verified, diffed
        dest = tmp_path / "dest"
        run.ok("snap", "pull", snapshot_id, "--store", url, "--to", dest)
        assert tree_state(dest) == tree_state(src)
        run.ok("snap", "verify", snapshot_id, "--store", url)
        # objects-needed and receive-pack through the server's endpoints
        objects = [b"fresh object", b"another"]
        r = run.with_stdin("".join(f"{b3(d)}\n" for d in [*objects, b""]).encode(),
                           "snap", "objects-needed", "--store", url)
        assert r.out.decode().split() == [b3(d) for d in objects]
        manifest = hand_manifest({"x": objects[0], "y": objects[1]})
        r = run.with_stdin(hand_pack(objects, manifest, zstd_body=True), "snap",
                           "receive-pack", "--store", url, "--require-manifest", b3(manifest))
        assert r.rc == 0, r.err
        assert_clean_store(store, manifests={snapshot_id, other_id, b3(manifest)})
        # a truncated pack through the server: no manifest, no temp file
        broken = hand_pack([b"never complete"], hand_manifest({"z": b"never complete"}))
        r = run.with_stdin(broken[:-6], "snap", "receive-pack", "--store", url)
        assert r.rc != 0
        one_line_error(r, r.rc)
        assert_clean_store(store, manifests={snapshot_id, other_id, b3(manifest)})
    # without --push-token-file the server refuses pushes
    with lockbox_serve(tmp_path, tmp_path / "read-only", None) as url:
        r = run("snap", "push", src, "--store", url, "--token-file", token)
        assert r.rc != 0
        one_line_error(r, r.rc)
        assert not store_files(tmp_path / "read-only")


def test_interrupted_push_leaves_no_manifest_and_no_temp_file(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) to a real ``lockbox snap push`` once it has started filing objects:
    exit 130, no manifest, no temp file; a rerun completes the same snapshot."""
    src = tmp_path / "big"
    src.mkdir()
    for i in range(64):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(1 << 20))
    store = tmp_path / "store"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKBOX_", "SNAPDIR_"))}
    proc = subprocess.Popen([sys.executable, "-m", "lockbox", "snap", "push", str(src),
                             "--store", str(store)], env=base, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (store / ".objects").exists():  # hashing done, filing has begun
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the push ended early: {proc.communicate()}")
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    expected = sd_id(src)
    manifests = {"".join(p.relative_to(store / ".manifests").parts)
                 for p in store.glob(".manifests/*/*/*/*")}
    filed = assert_clean_store(store, manifests=manifests)  # no temp file, all verified
    if manifests:  # the signal came after the manifest's rename: the push was complete
        assert manifests == {expected} and len(filed) == 64, (out, err)
    else:
        assert proc.returncode == 130 and out == b"", (proc.returncode, out, err)
    done = lockbox_process("snap", "push", src, "--store", store)
    assert done.returncode == 0, done.stderr
    snapshot_id = done.stdout.decode().strip()
    assert snapshot_id == sd_id(src)
    assert len(assert_clean_store(store, manifests={snapshot_id})) == 64
