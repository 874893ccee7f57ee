#!/usr/bin/env python3
"""Deterministic generator of the lockbox test vectors and golden archives (format
versions 2 and 3; the directory is still called ``v1``, after the first format version).

    .venv/bin/python tests/vectors/generate.py              # rewrite tests/vectors/v1/
    .venv/bin/python tests/vectors/generate.py --out DIR    # write somewhere else
    .venv/bin/python tests/vectors/generate.py --doc        # print the §19 hex dumps

Everything is computed by the real code (``lockbox``), never by hand:

* Randomness: each archive gets a :class:`SeededCrypto`, the default crypto
  backend whose ``random_bytes`` reads a SHAKE-256 stream seeded with
  ``"lockbox/v1/test-vectors/" + name``. Archive ids, content keys, salts, slot
  ids, session ids and file ids are therefore reproducible.
* Time: ``time.time_ns`` is frozen in ``lockbox.formats.lbox.write.writer`` and
  ``lockbox.formats.lbox.write.newarchive``
  (commit times, default mtimes, implicit parent directories).
* ML-KEM encapsulation in the ``cryptography`` backend draws its randomness
  inside OpenSSL, so archives with recipient slots are NOT reproducible byte
  for byte (their slots and commit frames change; everything else stays). The
  recipient-slot vector in vectors.json pins one ciphertext: it is reused from
  the existing vectors.json (``--pin``) so that vectors.json regenerates
  identically; decapsulation is deterministic, so the vector stays checkable.
* Compression is real zstd (level 3): byte-identical regeneration also assumes
  the same libzstd output, which has been stable but is not promised.

* Packing (format version 3, docs/FORMAT.md §10 "Packs"): every golden archive but
  ``packed.lbox`` is written with packing turned off, so that they stay the version-2
  archives they were, byte for byte; ``packed.lbox`` is written with the writer's
  packing policy as it is (small files in PACK frames, slot version 3).
* ``legacy-hello.lbox`` is FROZEN: ``hello.lbox`` exactly as the format-version-1 writer
  wrote it, before key commitments (slot version 1, key-directory version 1). It is
  copied, never rebuilt (its SHA-256 is pinned below); readers must keep reading it.

Output (``--out``, default ``tests/vectors/v1``): ``*.lbox`` golden archives,
``*.identity`` test identities (public: TEST ONLY), ``manifest.json`` (what
each archive must contain) and ``vectors.json`` (the docs/FORMAT.md §19
primitive vectors).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lockbox.formats.lbox.write.content as content_mod
import lockbox.formats.lbox.write.pipeline as pipeline_mod
import lockbox.formats.lbox.write.writer as writer_mod
from lockbox.crypto.base import Aead, CryptoBackend
from lockbox.formats.lbox.archive import Lockbox
from lockbox.formats.lbox.frames import FrameSealer, session_key
from lockbox.formats.lbox.keys import (
    Argon2Params,
    Identity,
    LinkSecret,
    key_commitment,
    link_wrap_key,
    new_link_slot,
    new_password_slot,
    normalize_password,
)
from lockbox.formats.lbox.wire.chunk import ChunkHeader, ChunkMeta, encode_chunk, encode_index
from lockbox.formats.lbox.wire.commit import CommitRecord, Stats, TreeRoot, encode_commit
from lockbox.formats.lbox.wire.constants import (
    DEFAULT_CHUNK_SIZE,
    PACKED_FORMAT_VERSION,
    SLOT_HEADER_SIZE,
    SLOT_SIZE,
    EntryType,
    FrameKind,
    PageKind,
)
from lockbox.formats.lbox.wire.encoding import Builder, svarint, uvarint, zigzag
from lockbox.formats.lbox.wire.entry import (
    LAYOUT_CHUNKS,
    LAYOUT_INDEX,
    LAYOUT_PACKED,
    Entry,
    encode_entry,
    encode_packed_entry_head,
    toc_key,
)
from lockbox.formats.lbox.wire.frame import FrameHeader, encode_frame_header, frame_aad, frame_nonce
from lockbox.formats.lbox.wire.keydir import (
    PasswordSlot,
    RecipientSlot,
    UnusableSlot,
    decode_key_directory,
    decode_keydir,
    encode_keydir,
    keydir_has_commitment,
    slot_aad,
)
from lockbox.formats.lbox.wire.node import Child, Internal, Leaf, encode_node
from lockbox.formats.lbox.wire.pack import decode_pack, encode_pack
from lockbox.formats.lbox.wire.page import (
    PageHeader,
    decode_keydir_page,
    decode_page_header,
    encode_keydir_page,
    encode_page_header,
)
from lockbox.formats.lbox.wire.refs import Ref
from lockbox.formats.lbox.wire.superblock import (
    ExternalKeydir,
    Slot,
    commit_frame_offset,
    decode_superblock,
    encode_slot,
)
from lockbox.platform import default_codec, default_crypto

# create_archive and its clock
create_mod = importlib.import_module("lockbox.formats.lbox.write.newarchive")
create_archive = create_mod.create_archive

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "v1"
SEED_LABEL = b"lockbox/v1/test-vectors/"
WEAK = Argon2Params(time_cost=1, memory_kib=64)
DEFAULT_KDF = Argon2Params()  # 64 MiB, t=3
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, the frozen clock's start
MTIME = 1_600_000_000_123_456_789  # 2020-09-13T12:26:40.123456789Z, file mtimes
_SECOND = 1_000_000_000


# -- deterministic backends ---------------------------------------------------------


class _Delegating:
    """A crypto backend that forwards every primitive to the default backend."""

    def __init__(self, inner: CryptoBackend | None = None) -> None:
        self._inner = inner or default_crypto()
        self.name = f"test-{self._inner.name}"

    def aead(self, key: bytes) -> Aead:
        return self._inner.aead(key)

    def argon2id(self, password: bytes, salt: bytes, *, time_cost: int, memory_kib: int,
                 parallelism: int, length: int) -> bytes:
        return self._inner.argon2id(password, salt, time_cost=time_cost,
                                    memory_kib=memory_kib, parallelism=parallelism,
                                    length=length)

    def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        return self._inner.hkdf_sha256(ikm, salt, info, length)

    def mlkem1024_public_key(self, seed: bytes) -> bytes:
        return self._inner.mlkem1024_public_key(seed)

    def mlkem1024_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        return self._inner.mlkem1024_encapsulate(public_key)

    def mlkem1024_decapsulate(self, seed: bytes, ciphertext: bytes) -> bytes:
        return self._inner.mlkem1024_decapsulate(seed, ciphertext)

    def random_bytes(self, size: int) -> bytes:  # pragma: no cover - overridden
        return self._inner.random_bytes(size)

    def __getattr__(self, name: str) -> Any:
        # Any primitive the backend protocol grows (e.g. the content hash) is forwarded.
        return getattr(self._inner, name)


class SeededCrypto(_Delegating):
    """random_bytes = consecutive bytes of SHAKE-256("lockbox/v1/test-vectors/" + label)."""

    def __init__(self, label: str, inner: CryptoBackend | None = None) -> None:
        super().__init__(inner)
        self._xof = hashlib.shake_256(SEED_LABEL + label.encode())
        self._buf = b""
        self._pos = 0

    def random_bytes(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._buf):
            self._buf = self._xof.digest(max(end, 2 * len(self._buf), 4096))
        out = self._buf[self._pos:end]
        self._pos = end
        return out


class ScriptedCrypto(_Delegating):
    """random_bytes returns the given byte strings, in order (for single vectors)."""

    def __init__(self, *chunks: bytes) -> None:
        super().__init__()
        self._queue = list(chunks)

    def random_bytes(self, size: int) -> bytes:
        chunk = self._queue.pop(0)
        if len(chunk) != size:
            raise AssertionError(f"scripted random: wanted {size} bytes, have {len(chunk)}")
        return chunk


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def time_ns(self) -> int:
        return self.now


class _FrozenTime:
    """The ``time`` module with ``time_ns`` frozen (everything else, e.g. the
    ``perf_counter`` of diagnostics, is the real one)."""

    def __init__(self, clock: Clock, real: Any) -> None:
        self.time_ns = clock.time_ns
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def frozen_time(clock: Clock) -> Iterator[None]:
    """Replace the ``time`` module seen by lockbox.formats.lbox.write.writer and
    lockbox.formats.lbox.write.newarchive."""
    mods = (writer_mod, create_mod)
    saved = [m.time for m in mods]  # type: ignore[attr-defined]
    fake = _FrozenTime(clock, saved[0])
    for m in mods:
        m.time = fake  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for m, t in zip(mods, saved):
            m.time = t  # type: ignore[attr-defined]


# -- golden archives -----------------------------------------------------------------


@contextlib.contextmanager
def packing(enabled: bool) -> Iterator[None]:
    """The writer's packing policy as it is (``enabled``), or no file packed: golden
    archives written before packs existed stay byte for byte what they were."""
    if enabled:
        yield
        return
    saved = content_mod.packable, pipeline_mod.packable
    content_mod.packable = pipeline_mod.packable = lambda size, chunk_size: False
    try:
        yield
    finally:
        content_mod.packable, pipeline_mod.packable = saved


def content_hash(data: bytes) -> bytes:
    """The entry's content hash (BLAKE3-256), through the crypto backend."""
    h = default_crypto().blake3()  # type: ignore[attr-defined]
    h.update(data)
    return bytes(h.digest())


def _sort_key(path: str) -> list[str]:
    return path.split("/")


class Ops:
    """Mirrors every writer call into an independent model of the expected tree."""

    def __init__(self, build: Build, w: Any) -> None:
        self.b = build
        self.w = w

    def _parents(self, path: str, mtime: int) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.b.entries:
                self.b.entries[p] = {"path": p, "type": "dir", "mode": 0o755, "mtime_ns": mtime}

    def mkdir(self, path: str, mode: int = 0o755, mtime: int = MTIME) -> None:
        self.w.mkdir(path, mode, mtime)
        self._parents(path, mtime)
        self.b.entries[path] = {"path": path, "type": "dir", "mode": mode, "mtime_ns": mtime}

    def add(self, path: str, data: bytes, mode: int = 0o644, mtime: int = MTIME) -> None:
        self.w.add_stream(path, io.BytesIO(data), mode=mode, mtime_ns=mtime)
        self._parents(path, mtime)
        self.b.entries[path] = {"path": path, "type": "file", "mode": mode, "mtime_ns": mtime,
                                "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "content_hash": content_hash(data).hex()}

    def symlink(self, path: str, target: str, mode: int = 0o777, mtime: int = MTIME) -> None:
        self.w.symlink(path, target, mode, mtime)
        self._parents(path, mtime)
        self.b.entries[path] = {"path": path, "type": "symlink", "mode": mode,
                                "mtime_ns": mtime, "target": target}

    def remove(self, path: str, recursive: bool = False) -> None:
        self.w.remove(path, recursive=recursive)
        for p in [p for p in self.b.entries if p == path or p.startswith(path + "/")]:
            del self.b.entries[p]

    def move(self, src: str, dst: str) -> None:
        """Move to a destination that does not exist (its parents may not either)."""
        self.w.move(src, dst)
        self._parents(dst, self.b.clock.now)
        moved = {p: e for p, e in self.b.entries.items() if p == src or p.startswith(src + "/")}
        for p in moved:
            del self.b.entries[p]
        for p, e in moved.items():
            q = dst + p[len(src):]
            self.b.entries[q] = {**e, "path": q}

    def env_set(self, name: str, value: bytes) -> None:
        self.w.env_set(name, value)
        self.b.env[name] = value

    def env_remove(self, name: str) -> None:
        self.w.env_remove(name)
        del self.b.env[name]


class Build:
    """One golden archive: created, then changed commit by commit."""

    def __init__(self, out: Path, name: str, *, password: str | None = None,
                 identities: tuple[str, ...] = (), argon2: Argon2Params = WEAK,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, ids: dict[str, Identity],
                 packed: bool = False) -> None:
        self.name = name
        self.packed = packed  # the writer's packing policy on (format version 3)
        self.path = out / name
        self.password = password
        self.identities = list(identities)
        self.all_ids = ids
        self.argon2 = argon2
        self.chunk_size = chunk_size
        self.crypto = SeededCrypto(name)
        self.clock = Clock(T0)
        self.entries: dict[str, dict[str, Any]] = {}
        self.env: dict[str, bytes] = {}
        self.generation = 1
        self.history: list[dict[str, Any]] = []
        recipients = [ids[i].recipient(self.crypto) for i in identities]
        if self.path.exists():
            self.path.unlink()
        with frozen_time(self.clock):
            aid, key = create_archive(self.path, password=password, recipients=recipients,
                                      argon2=argon2, chunk_size=chunk_size, crypto=self.crypto)
        self.known_key = (aid, key)

    @contextlib.contextmanager
    def commit(self) -> Iterator[Ops]:
        self.history.append(self.state())
        self.clock.now += _SECOND
        # A fresh Lockbox per commit, as a separate process would open it.
        box = Lockbox.open(self.path, known_key=self.known_key, crypto=self.crypto)
        try:
            with frozen_time(self.clock), packing(self.packed), box.writer() as w:
                yield Ops(self, w)
            self.generation += 1
            assert box.generation == self.generation
        finally:
            box.close()

    def state(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "entries": [self.entries[p] for p in sorted(self.entries, key=_sort_key)],
            "env": [[k, self.env[k].hex()] for k in sorted(self.env)],
        }

    def finish(self, features: list[str], reproducible: bool = True,
               previous: bool = False) -> dict[str, Any]:
        m: dict[str, Any] = {
            "file": self.name,
            "password": self.password,
            "identities": [f"{i}.identity" for i in self.identities],
            "argon2": {"time_cost": self.argon2.time_cost, "memory_kib": self.argon2.memory_kib,
                       "parallelism": 1},
            "chunk_size": self.chunk_size,
            "reproducible": reproducible,
            "key_commitment": _newest_keydir_committed(self.path),
            "format_version": _newest_version(self.path),
            "features": features,
            **self.state(),
        }
        if previous:
            m["previous"] = self.history[-1]
        return m


def _text(n: int, salt: str) -> bytes:
    return "".join(f"{salt} line {i:05d}: the quick brown fox\n" for i in range(n)).encode()


def build_hello(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "hello.lbox", password="lockbox", ids=ids)
    with b.commit() as o:
        o.add("hello.txt", b"hello\n")
    return b.finish(["password", "single file", "inline TOC root", "docs/FORMAT.md §19 dump"])


def build_kdf_default(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "kdf-default.lbox", password="default parameters", argon2=DEFAULT_KDF,
              ids=ids)
    with b.commit() as o:
        o.add("readme.txt", b"Argon2id with the default parameters: m=65536 KiB, t=3, p=1.\n")
    return b.finish(["password", "default Argon2id parameters"])


def build_recipient(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "recipient.lbox", identities=("alice",), ids=ids)
    with b.commit() as o:
        o.add("for-alice.txt", b"only alice can read this\n")
    return b.finish(["recipient", "no password slot"], reproducible=False)


def build_password_recipient(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "password-recipient.lbox", password="shared secret", identities=("bob",),
              ids=ids)
    with b.commit() as o:
        o.add("shared.txt", b"bob or the password\n")
        o.add("docs/notes.md", _text(20, "notes"))
    return b.finish(["password", "recipient"], reproducible=False)


def build_tree(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "tree.lbox", password="tree password", ids=ids)
    with b.commit() as o:
        o.mkdir("a", 0o755, MTIME + 1)
        o.mkdir("a/b", 0o750, MTIME + 2)
        o.add("a/b/c/deep.txt", b"deep inside\n", 0o600, MTIME + 3)
        o.add("a/x.txt", _text(5, "x"), 0o644, MTIME + 4)
        o.add("empty", b"", 0o644, MTIME + 5)
        o.symlink("link", "a/b/c/deep.txt", 0o777, MTIME + 6)
        o.symlink("a/up", "../empty", 0o777, MTIME + 7)
        o.mkdir("private", 0o700, MTIME + 8)
        o.mkdir("private/empty-dir", 0o755, MTIME + 9)
        o.add("\u00fcn\u00efc\u00f8d\u00e9/na\u00efve.txt", "caf\u00e9\n".encode(), 0o644,
              MTIME + 10)
        o.add("old.txt", b"before 1970\n", 0o444, -1_000_000_000)
        o.add("bin/tool", b"#!/bin/sh\necho tool\n", 0o755, MTIME + 11)
        o.env_set("EMPTY", b"")
        o.env_set("GREETING", b"hello, world")
        o.env_set("BINARY", bytes(range(256)))
        o.env_set("\u00e9t\u00e9", "\u00e9t\u00e9 = summer".encode())
    return b.finish(["nested dirs", "symlinks", "empty file", "empty dir", "modes",
                     "negative mtime", "non-ASCII names", "env values"])


def build_multichunk(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "multichunk.lbox", password="many chunks", chunk_size=4096, ids=ids)
    big = _text(2000, "big")[: 10 * 4096 + 100]  # 11 chunks: the chunk-index layout
    eight = _text(1000, "eight")[: 8 * 4096]  # exactly 8 chunks: 8 inline refs
    noise = hashlib.shake_256(b"incompressible").digest(4096 + 17)  # raw (uncompressed) frames
    assert len(big) == 10 * 4096 + 100 and len(eight) == 8 * 4096
    with b.commit() as o:
        o.add("big.txt", big)
        o.add("eight.txt", eight)
        o.add("noise.bin", noise)
        o.add("exact.bin", b"\x00" * 4096)  # one full chunk
    return b.finish(["chunk_size 4096", "chunk index layout (11 chunks)", "8 inline refs",
                     "raw frames", "compressed frames"])


def build_history(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "history.lbox", password="history", ids=ids)
    with b.commit() as o:  # generation 2
        o.add("docs/readme.md", _text(3, "readme"))
        o.add("docs/guide.md", _text(30, "guide"))
        o.add("src/main.py", b"print('hello')\n", 0o755)
        o.add("src/util/helpers.py", b"def helper():\n    return 1\n")
        o.add("notes.txt", b"first notes\n")
        o.env_set("FOO", b"bar")
        o.env_set("TOKEN", b"secret")
    with b.commit() as o:  # generation 3
        o.move("docs/guide.md", "manual/guide.md")
        o.remove("notes.txt")
        o.env_remove("TOKEN")
        o.env_set("FOO", b"baz")
        o.add("src/util/more.py", b"MORE = 2\n")
    with b.commit() as o:  # generation 4
        o.remove("src/util", recursive=True)
        o.move("src", "code")
        o.add("notes.txt", b"second notes, a new file version\n")
        o.add("docs/readme.md", _text(4, "readme v2"))  # replaced in place
    return b.finish(["4 commits", "moves", "removals", "replacement", "env removal",
                     "previous generation in the other slot"], previous=True)


def build_keydir_external(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "keydir-external.lbox", password="external keydir", ids=ids)
    with b.commit() as o:
        for name in ("alice", "bob", "carol", "dave"):
            o.w.add_recipient(ids[name].recipient(b.crypto))
        o.add("team.txt", b"four recipients and a password\n")
    b.identities = ["alice", "bob", "carol", "dave"]
    with b.commit() as o:  # generation 3: the key slots do not change
        o.add("later.txt", b"no key change: the slot keeps pointing at the old page\n")
    return b.finish(["password", "4 recipients", "external key directory page",
                     "KEYDIR page of an older generation reused"], reproducible=False)


def build_free_page(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "free-page.lbox", password="free page", ids=ids)
    with b.commit() as o:  # generation 2: its page at 20480 holds only draft.txt's chunk
        o.add("draft.txt", _text(4, "draft"))
    with b.commit() as o:  # generation 3: draft.txt replaced; the page at 20480 is freed,
        o.add("draft.txt", _text(3, "final"))  # and redacted once generation 3 is durable
        o.add("kept.txt", b"kept\n")
    return b.finish(["FREE page (the redacted page of generation 2)", "replacement",
                     "space map"])


def build_wide(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    b = Build(out, "wide.lbox", password="wide", ids=ids)
    with b.commit() as o:
        for i in range(700):
            o.mkdir(f"directory-number-{i:04d}-with-a-longish-name", 0o755, MTIME)
        o.add("directory-number-0000-with-a-longish-name/inside.txt", b"inside\n")
        o.add("zz-last.txt", b"last\n")
    return b.finish(["TOC of height 2", "internal node", "root_leaves"])


def build_packed(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    """Format version 3: small files packed (docs/FORMAT.md §10 "Packs"), then removals,
    a move and a replacement that change the packs' counts (§14) without freeing them."""
    b = Build(out, "packed.lbox", password="packed", ids=ids, packed=True)
    with b.commit() as o:  # generation 2: one pack of every small file, one big file
        o.add("docs/readme.md", _text(20, "readme"))
        o.add("docs/notes.txt", b"notes: packed with the others\n")
        for i in range(12):
            o.add(f"src/module_{i:02d}.py", f"def f{i}():\n    return {i}\n".encode())
        o.add("empty.txt", b"")
        o.add("big.bin", _text(2000, "big"))  # over 64 KiB: a chunk frame of its own
        o.symlink("latest", "docs/readme.md")
    with b.commit() as o:  # generation 3: the first pack loses two entries, keeps the rest
        o.remove("src/module_03.py")  # its bytes stay, encrypted, in the first pack
        o.move("docs/notes.txt", "notes.txt")  # the same member under another key
        o.add("docs/readme.md", _text(21, "readme v2"))  # replaced: a member of a new pack
        o.add("more/added.txt", b"added in generation 3\n")
    return b.finish(["format version 3", "PACK frames", "entry layout 2",
                     "space map PACK records", "removal, move and replacement of packed "
                     "files", "a large file unpacked"])


LEGACY_HELLO = "legacy-hello.lbox"
LEGACY_HELLO_SHA256 = "39c9eedcb190de99608a07d52641cb563789c8a6ec122f5ad3c20c91bd64017a"


def _newest_keydir_committed(path: Path) -> bool:
    data = path.read_bytes()
    newest = decode_superblock(data[:2 * SLOT_SIZE])[0]
    kd = newest.keydir
    if not isinstance(kd, bytes):
        kd = decode_keydir_page(data[kd.page_offset:])[2]
    return keydir_has_commitment(kd)


def _newest_version(path: Path) -> int:
    """The format version of the newest slot (1, 2, or 3 with packs: §20)."""
    return decode_superblock(path.read_bytes()[:2 * SLOT_SIZE])[0].version


def build_legacy_hello(out: Path, ids: dict[str, Identity]) -> dict[str, Any]:
    """The frozen format-version-1 archive (copied, never rebuilt: see the module doc)."""
    data = (DEFAULT_OUT / LEGACY_HELLO).read_bytes()
    assert hashlib.sha256(data).hexdigest() == LEGACY_HELLO_SHA256, "legacy-hello changed"
    if out.resolve() != DEFAULT_OUT.resolve():
        (out / LEGACY_HELLO).write_bytes(data)
    hello = b"hello\n"
    return {
        "file": LEGACY_HELLO, "password": "lockbox", "identities": [],
        "argon2": {"time_cost": 1, "memory_kib": 64, "parallelism": 1},
        "chunk_size": DEFAULT_CHUNK_SIZE, "reproducible": True,
        "key_commitment": _newest_keydir_committed(out / LEGACY_HELLO),
        "format_version": _newest_version(out / LEGACY_HELLO),
        "features": ["format version 1 (frozen): slot and key-directory version 1, no key "
                     "commitment", "read by version-2 readers, upgraded by the next commit"],
        "generation": 2,
        "entries": [{"path": "hello.txt", "type": "file", "mode": 0o644, "mtime_ns": MTIME,
                     "size": len(hello), "sha256": hashlib.sha256(hello).hexdigest(),
                     "content_hash": content_hash(hello).hex()}],
        "env": [],
    }


BUILDERS: list[Callable[[Path, dict[str, Identity]], dict[str, Any]]] = [
    build_hello, build_kdf_default, build_recipient, build_password_recipient, build_tree,
    build_multichunk, build_history, build_keydir_external, build_free_page, build_wide,
    build_legacy_hello, build_packed,
]
IDENTITY_NAMES = ("alice", "bob", "carol", "dave")


def make_identities(out: Path) -> dict[str, Identity]:
    ids = {}
    for name in IDENTITY_NAMES:
        ident = Identity.generate(SeededCrypto(f"identity/{name}"))
        ids[name] = ident
        (out / f"{name}.identity").write_text(
            f"# lockbox test identity '{name}': PUBLIC, for tests only, never for real data\n"
            f"{ident.encode()}\n")
    return ids


def check_archives(out: Path, manifest: dict[str, Any]) -> None:
    """Cross-check: every structural property the archive is supposed to exercise."""
    for m in manifest["archives"]:
        data = (out / m["file"]).read_bytes()
        slots = decode_superblock(data[:2 * SLOT_SIZE])
        assert slots[0].generation == m["generation"], m["file"]
        legacy = m["file"] == LEGACY_HELLO
        assert m["key_commitment"] == (not legacy), m["file"]
        versions = {PACKED_FORMAT_VERSION} if m["file"] == "packed.lbox" else {2}
        assert {s.version for s in slots} == ({1} if legacy else versions), m["file"]
        assert m["format_version"] == slots[0].version, m["file"]
        first = decode_page_header(data[16384:16416])
        if first.kind == PageKind.KEYDIR:  # the copy written at creation
            header, aid, _ = decode_keydir_page(data[16384:])
            assert header.generation == 1 and aid == slots[0].archive_id, m["file"]
    data = (out / "keydir-external.lbox").read_bytes()
    ext = decode_superblock(data[:2 * SLOT_SIZE])[0]
    assert isinstance(ext.keydir, ExternalKeydir), "the key directory should be external"
    header, _, kd = decode_keydir_page(data[ext.keydir.page_offset:])
    assert header.generation == 2 and ext.generation == 3, (header, ext.generation)
    assert hashlib.sha256(kd).digest() == ext.keydir.sha256
    data = (out / "free-page.lbox").read_bytes()
    assert decode_page_header(data[20480:20512]).kind == PageKind.FREE
    hello = decode_superblock((out / "hello.lbox").read_bytes()[:2 * SLOT_SIZE])[0]
    assert hello.slot_no == 0 and isinstance(hello.keydir, bytes)
    box = Lockbox.open(out / "wide.lbox", password="wide")
    try:
        c = box.view.commit
        assert c.toc.height == 2 and len(c.root_leaves) >= 2 and c.root_leaves_complete, c
    finally:
        box.close()
    box = Lockbox.open(out / "packed.lbox", password="packed")
    try:
        layouts = {p: e.layout for p, e in box.run(box.view.walk_flow())
                   if e.type == EntryType.FILE}
        assert layouts.pop("big.bin") == LAYOUT_CHUNKS, layouts
        assert set(layouts.values()) == {LAYOUT_PACKED}, layouts
        assert box.verify().ok
    finally:
        box.close()
    box = Lockbox.open(out / "multichunk.lbox", password="many chunks")
    try:
        e = box.run(box.view.stat_flow("big.txt"))
        assert e.layout == LAYOUT_INDEX and e.chunks == 11, e
        e = box.run(box.view.stat_flow("eight.txt"))
        assert e.layout == LAYOUT_CHUNKS and len(e.refs) == 8, e
    finally:
        box.close()


# -- primitive vectors -----------------------------------------------------------------

ARCHIVE_ID = bytes(range(0x00, 0x10))
CONTENT_KEY = bytes(range(0x20, 0x40))
SESSION_ID = bytes(range(0x40, 0x50))
FILE_ID = bytes(range(0x60, 0x70))
SALT = bytes(range(0x70, 0x80))
TAG_A = bytes([0xA0] * 16)
TAG_B = bytes([0xB0] * 16)
TAG_C = bytes([0xC0] * 16)
TAG_D = bytes([0xD0] * 16)
TAG_E = bytes([0xE0] * 16)
MLKEM_SEED = bytes(range(0x80, 0xC0))
LINK_SECRET = bytes(range(0xC0, 0xE0))
LINK_SLOT_ID = 0x11121314
VECTOR_PASSWORD = "pa\u0073\u0073wo\u0308rd"  # "passwörd", decomposed ö: NFC composes it


def _hex(b: bytes | bytearray | memoryview) -> str:
    return bytes(b).hex()


def _ref(r: Ref) -> dict[str, Any]:
    return {"frame_offset": r.frame_offset, "frame_size": r.frame_size, "tag": r.tag.hex()}


def _err(fn: Callable[[], object]) -> str:
    try:
        fn()
    except Exception as e:  # the class name is the vector
        return type(e).__name__
    raise AssertionError("expected an error")


def vectors(pin: dict[str, Any] | None, hello: Path) -> dict[str, Any]:
    from lockbox.formats.lbox.wire.encoding import Reader

    v: dict[str, Any] = {
        "format_version": 2,
        "about": "docs/FORMAT.md §19. Generated by tests/vectors/generate.py from the real "
                 "code; checked by tests/test_vectors.py. All byte strings are hex.",
    }
    # §2 primitives
    v["uvarint"] = [{"value": n, "hex": uvarint(n).hex()} for n in
                    (0, 1, 127, 128, 300, 16383, 16384, 4096, 1048576, 2**32 - 1, 2**63,
                     2**64 - 1)]
    bad = ["80", "8000", "ff00", "ffffffffffffffffff7f", "ffffffffffffffffff02",
           "ffffffffffffffffffff01"]
    v["uvarint_invalid"] = [{"hex": h, "error": _err(lambda h=h: Reader(bytes.fromhex(h))
                                                     .uvarint())} for h in bad]
    v["svarint"] = [{"value": n, "zigzag": zigzag(n), "hex": svarint(n).hex()} for n in
                    (0, -1, 1, -2, 2, 63, -64, 64, -1_000_000_000, 2**63 - 1, -(2**63))]
    v["blob"] = [{"data": d.hex(), "hex": Builder().blob(d).getvalue().hex()}
                 for d in (b"", b"abc", bytes(200))]
    v["crc32"] = [{"data": d.hex(), "crc32": zlib.crc32(d)} for d in (b"", b"123456789")]
    # §4 page header
    ph = PageHeader(PageKind.FRAMES, 8192, 5000, 7)
    v["page_header"] = {"kind": 1, "page_size": 8192, "used_size": 5000, "generation": 7,
                        "hex": encode_page_header(ph).hex()}
    # A FREE page (a freed, redacted page of a later writer): header, then zeros.
    fp = PageHeader(PageKind.FREE, 12288, 32, 9)
    v["free_page_header"] = {"kind": 3, "page_size": 12288, "used_size": 32, "generation": 9,
                             "hex": encode_page_header(fp).hex()}
    # §5 frames
    fh = FrameHeader(FrameKind.DATA_CHUNK, 100, 7, SESSION_ID, 3)
    hdr = encode_frame_header(fh)
    v["frame_header"] = {"kind": 5, "sealed_size": 100, "generation": 7,
                         "session_id": SESSION_ID.hex(), "counter": 3, "hex": hdr.hex(),
                         "crc32": int.from_bytes(hdr[44:48], "little")}
    v["nonce"] = [{"counter": c, "hex": frame_nonce(c).hex()} for c in (0, 1, 2**32, 2**64 - 1)]
    v["frame_aad"] = {"archive_id": ARCHIVE_ID.hex(), "header": hdr.hex(),
                      "frame_offset": 16416, "hex": frame_aad(ARCHIVE_ID, hdr, 16416).hex()}
    crypto = default_crypto()
    codec = default_codec()
    v["session_key"] = {"content_key": CONTENT_KEY.hex(), "session_id": SESSION_ID.hex(),
                        "info": b"lockbox/v1/frame-key".hex(),
                        "hex": session_key(crypto, CONTENT_KEY, SESSION_ID).hex()}
    frames = []
    members = pack_members()
    for kind, gen, off, counter, payload, compress in (
        (FrameKind.DATA_CHUNK, 2, 16416, 0, b"hello\n", False),
        (FrameKind.TOC_NODE, 3, 20512, 5, b"\x01\x00\x00", False),
        (FrameKind.ENV_NODE, 9, 1 << 33, 2**40, _text(8, "zstd"), True),
        (FrameKind.PACK, 4, PACK_FRAME_OFFSET, 7, encode_pack(members), False),
    ):
        sealer = FrameSealer(ScriptedCrypto(SESSION_ID), codec, ARCHIVE_ID, CONTENT_KEY)
        sealer.counter = counter
        plain = sealer.encode_plain(payload, compress=compress)
        frame, ref = sealer.seal(kind, gen, off, plain)
        frames.append({
            "archive_id": ARCHIVE_ID.hex(), "content_key": CONTENT_KEY.hex(),
            "session_id": SESSION_ID.hex(), "kind": int(kind), "generation": gen,
            "frame_offset": off, "counter": counter, "payload": payload.hex(),
            "codec": "zstd" if plain[0] == 1 else "raw", "plaintext": plain.hex(),
            "frame": frame.hex(), "ref": _ref(ref),
        })
    assert frames[2]["codec"] == "zstd"
    v["sealed_frames"] = frames
    # §6 key slots
    pw = VECTOR_PASSWORD
    pslot = new_password_slot(ScriptedCrypto(SALT, (0x01020304).to_bytes(4, "little")),
                              ARCHIVE_ID, CONTENT_KEY, pw, WEAK)
    ikm = crypto.argon2id(normalize_password(pw), SALT, time_cost=1, memory_kib=64,
                          parallelism=1, length=32)
    wrap = crypto.hkdf_sha256(ikm, ARCHIVE_ID, b"lockbox/v1/password-wrap", 32)
    v["password_slot"] = {
        "password": pw, "password_nfc_utf8": normalize_password(pw).hex(),
        "archive_id": ARCHIVE_ID.hex(), "content_key": CONTENT_KEY.hex(),
        "salt": SALT.hex(), "time_cost": 1, "memory_kib": 64, "parallelism": 1,
        "slot_id": pslot.slot_id, "argon2id": ikm.hex(), "wrap_key": wrap.hex(),
        "descriptor": pslot.descriptor().hex(), "aad": slot_aad(ARCHIVE_ID, pslot).hex(),
        "wrapped_key": pslot.wrapped_key.hex(),
    }
    ident = Identity(MLKEM_SEED)
    ek = crypto.mlkem1024_public_key(MLKEM_SEED)
    pinned = (pin or {}).get("recipient_slot", {})
    if pinned.get("seed") == MLKEM_SEED.hex() and pinned.get("kem_ciphertext"):
        ct = bytes.fromhex(pinned["kem_ciphertext"])
    else:
        _, ct = crypto.mlkem1024_encapsulate(ek)
    ss = crypto.mlkem1024_decapsulate(MLKEM_SEED, ct)
    info = b"lockbox/v1/recipient-wrap" + hashlib.sha256(ek).digest() + \
        hashlib.sha256(ct).digest()
    rwrap = crypto.hkdf_sha256(ss, ARCHIVE_ID, info, 32)
    rslot = RecipientSlot(0x0A0B0C0D, ct, b"")  # no fingerprint: the descriptor is ct
    aad = slot_aad(ARCHIVE_ID, rslot)
    wrapped = crypto.aead(rwrap).seal(b"\x00" * 12, CONTENT_KEY, aad)
    rslot = RecipientSlot(rslot.slot_id, ct, wrapped)
    recipient = ident.recipient(crypto)
    v["recipient_slot"] = {
        "seed": MLKEM_SEED.hex(), "identity_text": ident.encode(),
        "encapsulation_key": ek.hex(), "encapsulation_key_sha256": hashlib.sha256(ek).hexdigest(),
        "recipient_text": recipient.encode(),
        "display_fingerprint": recipient.fingerprint.hex(),  # a local hint, never stored
        "kem_ciphertext": ct.hex(),
        "kem_ciphertext_sha256": hashlib.sha256(ct).hexdigest(), "shared_secret": ss.hex(),
        "archive_id": ARCHIVE_ID.hex(), "content_key": CONTENT_KEY.hex(),
        "slot_id": rslot.slot_id, "wrap_info": info.hex(), "wrap_key": rwrap.hex(),
        "aad_size": len(aad), "aad_sha256": hashlib.sha256(aad).hexdigest(),
        "wrapped_key": wrapped.hex(), "body_size": len(rslot.body()),
    }
    commitment = key_commitment(crypto, ARCHIVE_ID, CONTENT_KEY)
    assert commitment == crypto.hkdf_sha256(CONTENT_KEY, ARCHIVE_ID,
                                            b"lockbox/v1/key-commitment", 32)
    v["key_commitment"] = {"archive_id": ARCHIVE_ID.hex(), "content_key": CONTENT_KEY.hex(),
                           "info": b"lockbox/v1/key-commitment".hex(), "hex": commitment.hex()}
    kd = encode_keydir([pslot, rslot], commitment)
    v["keydir"] = {"slots": ["password_slot", "recipient_slot"], "version": 2,
                   "key_commitment": commitment.hex(), "size": len(kd),
                   "sha256": hashlib.sha256(kd).hexdigest(), "hex": kd.hex()}
    legacy_kd = encode_keydir([pslot, rslot])
    v["keydir_v1"] = {"about": "the same slots in a version-1 (legacy) key directory: no "
                               "key commitment; read, never written",
                      "version": 1, "size": len(legacy_kd),
                      "sha256": hashlib.sha256(legacy_kd).hexdigest(), "hex": legacy_kd.hex()}
    v["unusable_slots"] = unusable_slots(pslot, commitment)
    v["link_slot"] = link_slot(pslot, commitment)
    # §4 the KEYDIR page holding that key directory (generation 3, as the slot below)
    page = encode_keydir_page(ARCHIVE_ID, kd, 3)
    kd_used = 32 + 16 + len(kd)
    assert decode_keydir_page(page)[1:] == (ARCHIVE_ID, kd) and not any(page[kd_used:])
    v["keydir_page"] = {"archive_id": ARCHIVE_ID.hex(), "generation": 3,
                        "keydir_size": len(kd), "keydir_sha256": hashlib.sha256(kd).hexdigest(),
                        "page_size": len(page), "used_size": kd_used,
                        "header": page[:32].hex(), "hex": page[:kd_used].hex()}
    # §9 keys and entries
    v["toc_keys"] = [{"path": p, "hex": toc_key(p).hex()} for p in
                     ("a", "docs", "docs/a.txt", "docs/sub/b", "\u00e9t\u00e9/x")]
    r1 = Ref(16416, 150, TAG_A)
    r2 = Ref(20512, 4160, TAG_B)
    entries = [
        ("file", Entry(EntryType.FILE, 0o644, MTIME, 6, 150,
                       content_hash(b"hello\n"), FILE_ID, 1048576, LAYOUT_CHUNKS,
                       (r1,))),
        ("empty file", Entry(EntryType.FILE, 0o600, 0, 0, 150, content_hash(b""),
                             FILE_ID, 4096, LAYOUT_CHUNKS, (r1,))),
        ("index layout", Entry(EntryType.FILE, 0o644, MTIME, 4097 * 4096 + 1, 9999999,
                               bytes(32), FILE_ID, 4096, LAYOUT_INDEX, (r1, r2))),
        ("dir", Entry(EntryType.DIR, 0o755, MTIME)),
        ("symlink", Entry(EntryType.SYMLINK, 0o777, -5, target="../target")),
    ]
    v["entries"] = [{"name": n, "hex": encode_entry(e).hex(), **_entry_json(e)}
                    for n, e in entries]
    # §8 nodes
    leaf = Leaf([toc_key("docs"), toc_key("docs/a.txt"), toc_key("docs/b.txt")],
                [encode_entry(entries[3][1]), encode_entry(entries[0][1]),
                 encode_entry(entries[4][1])])
    v["leaf_node"] = {"keys": [k.hex() for k in leaf.keys],
                      "values": [x.hex() for x in leaf.values], "hex": encode_node(leaf).hex()}
    internal = Internal(1, [Child(toc_key("a"), r1, 300), Child(toc_key("ab/c"), r2, 12)])
    v["internal_node"] = {"level": 1, "children": [
        {"first_key": c.first_key.hex(), "ref": _ref(c.ref), "count": c.count}
        for c in internal.children], "hex": encode_node(internal).hex()}
    # §10 chunks
    hello_hash = content_hash(b"hello\n")
    meta = ChunkMeta(EntryType.FILE, 0o644, MTIME, 6, hello_hash, 1048576)
    v["chunk_payloads"] = [
        {"file_id": FILE_ID.hex(), "chunk_no": 0, "path": "hello.txt", "last": True,
         "type": 1, "mode": 0o644, "mtime_ns": MTIME, "size": 6,
         "content_hash": hello_hash.hex(), "chunk_size": 1048576, "target": "",
         "data": b"hello\n".hex(),
         "hex": encode_chunk(ChunkHeader(FILE_ID, 0, "hello.txt", meta), b"hello\n").hex()},
        {"file_id": FILE_ID.hex(), "chunk_no": 300, "path": "d/big", "last": False,
         "data": b"xyz".hex(),
         "hex": encode_chunk(ChunkHeader(FILE_ID, 300, "d/big", None), b"xyz").hex()},
    ]
    v["index_payload"] = {"file_id": FILE_ID.hex(), "first_chunk_no": 4096,
                          "refs": [_ref(r1), _ref(r2)],
                          "hex": encode_index(FILE_ID, 4096, [r1, r2]).hex()}
    # §10 "Packs" (format version 3): the payload of the PACK frame sealed above
    # (sealed_frames[3]) and the two layout-2 entries that name its members
    pack = encode_pack(members)
    assert [bytes(m) for m in decode_pack(pack)] == members
    v["pack_payload"] = {"count": len(members), "member_sizes": [len(m) for m in members],
                         "members": [m.hex() for m in members], "hex": pack.hex(),
                         "frame": "sealed_frames[3]"}
    pack_ref = _ref_of(frames[3])
    packed = []
    for no, (path, data, fid) in enumerate(PACK_FILES):
        e = Entry(EntryType.FILE, 0o644, MTIME, len(data), len(members[no]), content_hash(data),
                  fid, 1048576, LAYOUT_PACKED, (pack_ref,), member_no=no)
        head = encode_packed_entry_head(e.mode, e.mtime_ns, e.size, e.stored_size,
                                        e.content_hash, e.file_id, e.chunk_size, no)
        buf = encode_entry(e)
        assert buf == head + uvarint(pack_ref.frame_offset) + uvarint(pack_ref.frame_size) + \
            pack_ref.tag
        packed.append({"path": path, "data": data.hex(), "member_no": no, "head": head.hex(),
                       "hex": buf.hex(), **_entry_json(e)})
    v["packed_entries"] = packed
    # §7 commit records
    commits = [
        ("inline TOC root", CommitRecord(
            generation=2, time_ns=T0, archive_end=20480, default_chunk_size=1048576,
            keydir_sha256=hashlib.sha256(kd).digest(),
            toc=TreeRoot(3, 1, None, encode_node(leaf)), env=TreeRoot(), space=None,
            stats=Stats(1, 1, 1, 6, 150))),  # the leaf: docs (dir), docs/a.txt, docs/b.txt
        # Every ref names a different frame: the TOC root (an internal node), two TOC
        # leaves holding the root's children, the env root, the space root.
        ("refs, space root, root_leaves", CommitRecord(
            generation=300, time_ns=T0 + 1, archive_end=1 << 32, default_chunk_size=4096,
            keydir_sha256=bytes(32), toc=TreeRoot(312, 2, r2, None),
            env=TreeRoot(1, 1, Ref(28736, 120, TAG_D), None),
            space=TreeRoot(5, 1, Ref(32832, 96, TAG_E), None),
            root_leaves=(r1, Ref(24704, 200, TAG_C)), root_leaves_complete=True,
            stats=Stats(300, 11, 1, 123456789, 130000000))),
    ]
    v["commit_records"] = [{"name": n, **_commit_json(c), "hex": encode_commit(c).hex()}
                           for n, c in commits]
    # §14 space-map records: one of each kind, together one consistent map (the pages
    # tile [16384, 45056), the DEAD frame lies in the FRAMES page, TAIL = 45056)
    from lockbox.formats.lbox.write.space import PageRecord, encode_record, encode_tail

    v["space_records"] = [
        {"name": n, "key": key.hex(), "hex": val.hex()} for n, key, val in (
            ("KEYDIR page at 16384: 4096 bytes, used 167", (16384).to_bytes(8, "big"),
             encode_record(PageRecord(2, 4096, 167))),
            ("FRAMES page at 20480: 4096 bytes, 150 live", (20480).to_bytes(8, "big"),
             encode_record(PageRecord(1, 4096, 150))),
            ("DEAD frame at 20512: 150 bytes", (20512).to_bytes(8, "big"), encode_record(150)),
            ("FREE page at 24576: 16384 bytes", (24576).to_bytes(8, "big"),
             encode_record(PageRecord(3, 16384, 0))),
            ("SPACEMAP page at 40960: 4096 bytes", (40960).to_bytes(8, "big"),
             encode_record(PageRecord(4, 4096, 0))),
            ("TAIL: the map's own pages start at 45056", b"\xff" * 8, encode_tail(45056)),
        )]
    # §3 slots: two slots of one archive, each sealing its own commit record (§7: the
    # record's generation is the slot's, its keydir_sha256 that of the slot's key
    # directory). Generation 2 holds the password slot alone, inline; generation 3 added
    # the recipient slot and points at its KEYDIR page (§19.3's, at 16384). A writer
    # would keep a 1742-byte directory inline (§3); readers follow either form.
    sealer = FrameSealer(ScriptedCrypto(SESSION_ID), codec, ARCHIVE_ID, CONTENT_KEY)
    small_kd = encode_keydir([pslot], commitment)
    ext = ExternalKeydir(16384, len(kd), hashlib.sha256(kd).digest())
    v["slots"] = []
    for counter, (name, slot_no, gen, field, kd_bytes) in enumerate((
        ("inline key directory", 0, 2, small_kd, small_kd),
        ("external key directory", 1, 3, ext, kd),
    )):
        rec = dataclasses.replace(commits[0][1], generation=gen,
                                  keydir_sha256=hashlib.sha256(kd_bytes).digest())
        off = commit_frame_offset(slot_no, field)
        sealer.counter = counter
        plain = sealer.encode_plain(encode_commit(rec), compress=False)
        frame, _ = sealer.seal(FrameKind.COMMIT, gen, off, plain)
        image = encode_slot(Slot(slot_no, ARCHIVE_ID, gen, field, frame))
        used = SLOT_HEADER_SIZE + (44 if field is ext else len(small_kd)) + len(frame) + 4
        assert not image[used:].strip(b"\x00")
        entry: dict[str, Any] = {"name": name, "slot_no": slot_no, "version": 2,
                                 "archive_id": ARCHIVE_ID.hex(), "generation": gen}
        if field is ext:
            entry.update(keydir_page_offset=16384, keydir_size=len(kd),
                         keydir_sha256=ext.sha256.hex())
        else:
            entry["keydir"] = small_kd.hex()
        entry.update(commit=_commit_json(rec), commit_plaintext=plain.hex(),
                     commit_frame_offset=off, commit_frame=frame.hex(), used=used,
                     hex=image[:used].hex())
        v["slots"].append(entry)
    v["tiny_archive"] = tiny_archive(hello)
    return v


def unusable_slots(pslot: PasswordSlot, commitment: bytes) -> dict[str, Any]:
    """A key directory whose first slots this reader cannot use (kept verbatim), then
    the §19.3 password slot, which still opens it."""
    slots = [
        UnusableSlot(0x01010101, 9, b"a slot kind of a later version", ""),
        PasswordSlot(0x02020202, SALT, 65, 64, 1, bytes(48)),  # time cost over 64
        PasswordSlot(0x03030303, SALT, 1, 8 * 1024 * 1024, 1, bytes(48)),  # 8 GiB
        PasswordSlot(0x04040404, SALT, 1, 64, 2, bytes(48)),  # parallelism 2
        pslot,
    ]
    kd = encode_keydir(slots, commitment)
    decoded = decode_keydir(kd)
    assert encode_keydir(decoded, commitment) == kd
    return {
        "archive_id": ARCHIVE_ID.hex(), "content_key": CONTENT_KEY.hex(),
        "password": VECTOR_PASSWORD, "hex": kd.hex(),
        "slots": [{"slot_id": s.slot_id, "kind": int(s.kind), "body": s.body().hex(),
                   "usable": not isinstance(s, UnusableSlot),
                   "reason": s.reason if isinstance(s, UnusableSlot) else ""}
                  for s in decoded],
    }


def link_slot(pslot: PasswordSlot, commitment: bytes) -> dict[str, Any]:
    """A link slot (kind 3) for a fixed secret, and a key directory holding it after the
    §19.3 password slot."""
    crypto = default_crypto()
    secret = LinkSecret(LINK_SECRET)
    sid = LINK_SLOT_ID.to_bytes(4, "little")
    slot = new_link_slot(ScriptedCrypto(sid), ARCHIVE_ID, CONTENT_KEY, secret)
    info = b"lockbox/v1/link-wrap" + sid
    wrap = crypto.hkdf_sha256(LINK_SECRET, ARCHIVE_ID, info, 32)
    assert wrap == link_wrap_key(crypto, ARCHIVE_ID, secret, LINK_SLOT_ID)
    aad = slot_aad(ARCHIVE_ID, slot)
    assert aad == b"lockbox/v1/slot" + ARCHIVE_ID + b"\x03" + sid  # an empty descriptor
    assert crypto.aead(wrap).seal(b"\x00" * 12, CONTENT_KEY, aad) == slot.wrapped_key
    kd = encode_keydir([pslot, slot], commitment)
    assert decode_keydir(kd) == [pslot, slot]
    return {
        "secret": LINK_SECRET.hex(), "text": secret.text(), "archive_id": ARCHIVE_ID.hex(),
        "content_key": CONTENT_KEY.hex(), "slot_id": LINK_SLOT_ID, "wrap_info": info.hex(),
        "wrap_key": wrap.hex(), "aad": aad.hex(), "wrapped_key": slot.wrapped_key.hex(),
        "body_size": len(slot.body()),
        "keydir": {"slots": ["password_slot", "link_slot"], "size": len(kd),
                   "sha256": hashlib.sha256(kd).hexdigest(), "hex": kd.hex()},
    }


# The two files of the §19 pack: hello.txt (the chunk of §19.4) and an empty file.
PACK_FILES = (("hello.txt", b"hello\n", FILE_ID), ("empty", b"", bytes(range(0x90, 0xA0))))
PACK_FRAME_OFFSET = 24608  # a frame right after the header of a page at 24576


def pack_members() -> list[bytes]:
    """The members of the §19 PACK frame: each the whole chunk of a one-chunk file."""
    out = []
    for path, data, fid in PACK_FILES:
        meta = ChunkMeta(EntryType.FILE, 0o644, MTIME, len(data), content_hash(data), 1048576)
        out.append(encode_chunk(ChunkHeader(fid, 0, path, meta), data))
    return out


def _ref_of(frame: dict[str, Any]) -> Ref:
    r = frame["ref"]
    return Ref(r["frame_offset"], r["frame_size"], bytes.fromhex(r["tag"]))


def _entry_json(e: Entry) -> dict[str, Any]:
    d: dict[str, Any] = {"type": int(e.type), "mode": e.mode, "mtime_ns": e.mtime_ns}
    if e.type == EntryType.FILE:
        d.update(size=e.size, stored_size=e.stored_size, content_hash=e.content_hash.hex(),
                 file_id=e.file_id.hex(), chunk_size=e.chunk_size, layout=e.layout,
                 refs=[_ref(r) for r in e.refs])
        if e.layout == LAYOUT_PACKED:
            d["member_no"] = e.member_no
    elif e.type == EntryType.SYMLINK:
        d["target"] = e.target
    return d


def _root_json(t: TreeRoot | None) -> dict[str, Any] | None:
    if t is None:
        return None
    d: dict[str, Any] = {"count": t.count, "height": t.height}
    if t.ref is not None:
        d["ref"] = _ref(t.ref)
    if t.inline is not None:
        d["inline"] = t.inline.hex()
    return d


def _commit_json(c: CommitRecord) -> dict[str, Any]:
    return {
        "generation": c.generation, "time_ns": c.time_ns, "archive_end": c.archive_end,
        "default_chunk_size": c.default_chunk_size, "keydir_sha256": c.keydir_sha256.hex(),
        "toc": _root_json(c.toc), "env": _root_json(c.env), "space": _root_json(c.space),
        "root_leaves": [_ref(r) for r in c.root_leaves],
        "root_leaves_complete": c.root_leaves_complete,
        "stats": {"files": c.stats.files, "dirs": c.stats.dirs, "symlinks": c.stats.symlinks,
                  "file_bytes": c.stats.file_bytes, "stored_bytes": c.stats.stored_bytes},
    }


def tiny_archive(path: Path) -> dict[str, Any]:
    """The §19 walk-through of hello.lbox, every intermediate value included."""
    from lockbox.formats.lbox.frames import FrameOpener
    from lockbox.formats.lbox.keys import unlock
    from lockbox.formats.lbox.wire.chunk import decode_chunk
    from lockbox.formats.lbox.wire.commit import decode_commit
    from lockbox.formats.lbox.wire.entry import decode_entry
    from lockbox.formats.lbox.wire.frame import decode_frame_header
    from lockbox.formats.lbox.wire.node import decode_node

    data = path.read_bytes()
    crypto = default_crypto()
    codec = default_codec()
    slots = decode_superblock(data[:2 * SLOT_SIZE])
    s = slots[0]
    assert isinstance(s.keydir, bytes)
    directory = decode_key_directory(s.keydir)
    key_slots = directory.slots
    content_key, _ = unlock(crypto, s.archive_id, key_slots, password="lockbox",
                            commitment=directory.key_commitment)
    assert directory.key_commitment == key_commitment(crypto, s.archive_id, content_key)
    opener = FrameOpener(crypto, codec, s.archive_id, content_key)
    ch, payload = opener.open_at(s.commit_frame, s.commit_frame_offset, FrameKind.COMMIT)
    commit = decode_commit(payload)
    used = SLOT_HEADER_SIZE + len(s.keydir) + len(s.commit_frame) + 4
    # The first page: the KEYDIR copy written at creation (generation 1).
    kd_page = data[16384:]
    khdr, kd_aid, kd_bytes = decode_keydir_page(kd_page)
    assert kd_aid == s.archive_id and kd_bytes == s.keydir and khdr.generation == 1
    page_offset = 16384 + khdr.page_size
    page = data[page_offset:]
    phdr = decode_page_header(page)
    leaf = decode_node(commit.toc.inline or b"", 65536)
    assert isinstance(leaf, Leaf)
    entry = decode_entry(leaf.values[0])
    ref = entry.refs[0]
    blob = data[ref.frame_offset:ref.frame_offset + ref.frame_size]
    fh = decode_frame_header(blob)
    chunk_payload = opener.open_ref(blob, ref, FrameKind.DATA_CHUNK)
    _, chunk_data = decode_chunk(chunk_payload)
    assert bytes(chunk_data) == b"hello\n"
    # The space map: never inline; one SPACE_NODE frame in a page of its own at the end.
    assert commit.space is not None and commit.space.ref is not None
    sref = commit.space.ref
    map_offset = page_offset + phdr.page_size
    mhdr = decode_page_header(data[map_offset:])
    assert map_offset + mhdr.page_size == len(data) == commit.archive_end
    assert mhdr.kind == PageKind.FRAMES and mhdr.generation == s.generation
    sblob = data[sref.frame_offset:sref.frame_offset + sref.frame_size]
    sh = decode_frame_header(sblob)
    assert sh.session_id == ch.session_id and sref.frame_offset == map_offset + 32
    space_plain = opener.open_ref(sblob, sref, FrameKind.SPACE_NODE)
    assert isinstance(decode_node(bytes(space_plain), 64), Leaf)
    pslot = key_slots[0]
    old = slots[1]
    return {
        "file": path.name, "size": len(data), "password": "lockbox",
        "archive_id": s.archive_id.hex(), "content_key": content_key.hex(),
        "key_commitment": (directory.key_commitment or b"").hex(),
        "password_slot_id": pslot.slot_id, "generation": s.generation,
        "slot0_version": s.version,
        "slot0_used": used, "slot0": data[:used].hex(),
        "slot1_generation": old.generation,
        "slot1_used": SLOT_HEADER_SIZE + len(old.keydir) + len(old.commit_frame) + 4,
        "slot1": data[SLOT_SIZE:SLOT_SIZE + SLOT_HEADER_SIZE + len(old.keydir)  # type: ignore
                      + len(old.commit_frame) + 4].hex(),
        "keydir": s.keydir.hex(),
        "commit_frame_offset": s.commit_frame_offset,
        "commit_session_id": ch.session_id.hex(), "commit_counter": ch.counter,
        "commit_session_key": session_key(crypto, content_key, ch.session_id).hex(),
        "commit_plaintext": payload.hex(), "commit": _commit_json(commit),
        "toc_leaf": (commit.toc.inline or b"").hex(), "toc_key": leaf.keys[0].hex(),
        "entry": leaf.values[0].hex(),
        "keydir_page_offset": 16384, "keydir_page_size": khdr.page_size,
        "keydir_page_used": khdr.used_size, "keydir_page_generation": khdr.generation,
        "keydir_page": kd_page[:khdr.used_size].hex(),
        "page_offset": page_offset, "page_size": phdr.page_size, "page_used": phdr.used_size,
        "page": page[:phdr.used_size].hex(),
        "chunk_frame_offset": ref.frame_offset, "chunk_frame_size": ref.frame_size,
        "chunk_session_id": fh.session_id.hex(), "chunk_counter": fh.counter,
        "chunk_session_key": session_key(crypto, content_key, fh.session_id).hex(),
        "chunk_payload": chunk_payload.hex(),
        "map_page_offset": map_offset, "map_page_size": mhdr.page_size,
        "map_page_used": mhdr.used_size, "map_page": data[map_offset:map_offset
                                                          + mhdr.used_size].hex(),
        "space_frame_offset": sref.frame_offset, "space_frame_size": sref.frame_size,
        "space_counter": sh.counter, "space_leaf": bytes(space_plain).hex(),
    }


# -- main --------------------------------------------------------------------------------


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def _dump_manifest(manifest: dict[str, Any]) -> str:
    """Like _dump, but one line per listed entry (the manifest stays readable)."""
    marker = "\x00ENTRY{}\x00"
    lines: list[str] = []

    def compact(state: dict[str, Any]) -> None:
        for i, e in enumerate(state["entries"]):
            lines.append(json.dumps(e, ensure_ascii=False))
            state["entries"][i] = marker.format(len(lines) - 1)

    copy = json.loads(json.dumps(manifest))
    for m in copy["archives"]:
        compact(m)
        if "previous" in m:
            compact(m["previous"])
    text = _dump(copy)
    for i, line in enumerate(lines):
        text = text.replace(json.dumps(marker.format(i)), line, 1)
    return text


def generate(out: Path, pin: Path | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    pinned = json.loads(pin.read_text()) if pin is not None and pin.exists() else None
    ids = make_identities(out)
    manifest = {
        "format_version": 2,
        "about": "Golden archives of docs/FORMAT.md version 2 (and one frozen version-1 "
                 "archive, legacy-hello.lbox, and one version-3 archive with packs, "
                 "packed.lbox), written by tests/vectors/generate.py; "
                 "'entries' is the expected recursive listing.",
        "archives": [build(out, ids) for build in BUILDERS],
    }
    check_archives(out, manifest)
    (out / "manifest.json").write_text(_dump_manifest(manifest))
    vec = vectors(pinned, out / "hello.lbox")
    (out / "vectors.json").write_text(_dump(vec))
    return manifest


def hexdump(data: bytes, base: int = 0) -> str:
    lines = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        lines.append(f"{base + i:08x}  {' '.join(f'{b:02x}' for b in row)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--pin", type=Path, default=DEFAULT_OUT / "vectors.json",
                    help="vectors.json whose ML-KEM ciphertext is reused")
    ap.add_argument("--doc", action="store_true", help="print the §19 hex dumps of --out")
    args = ap.parse_args(argv)
    if args.doc:
        t = json.loads((args.out / "vectors.json").read_text())["tiny_archive"]
        print(hexdump(bytes.fromhex(t["slot0"])))
        print()
        print(hexdump(bytes.fromhex(t["keydir_page"]), t["keydir_page_offset"]))
        print()
        print(hexdump(bytes.fromhex(t["page"]), t["page_offset"]))
        print()
        print(hexdump(bytes.fromhex(t["map_page"]), t["map_page_offset"]))
        return 0
    generate(args.out, args.pin)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
