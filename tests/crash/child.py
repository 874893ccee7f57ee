"""The writer process of the crash harness.

From ``(workload, seed)`` it builds a deterministic plan of write sessions
(:func:`plan`), runs it on a fresh archive, and after each durable commit
appends ``{"k": commit_point, "gen": generation, "digest": ...}`` to
``journal.jsonl`` (written and fsync'd before going on). A :class:`FaultSink`
replaces ``os.pwrite`` and ``os.fsync`` (lockbox calls them as module
attributes: pages.py, spacekeeper.py, writer.py, newarchive.py) and numbers
every call; at call ``at`` it injects the fault of the job's mode:

* ``kill``: SIGKILL before the call runs;
* ``torn``: a pwrite writes only a prefix (512 bytes or a random length), then SIGKILL;
* ``drop``: a pwrite is skipped (reported as done), the process runs on and is
  SIGKILLed just before the next fsync;
* ``power``: SIGKILL before the call, after dumping every write since the last
  fsync of the file, with its pre-image, to ``power.bin`` -- the parent then
  undoes a random subset of them (a power cut losing unsynced writes);
* ``enospc`` / ``enospc-short``: that pwrite (and every later one) fails with
  ENOSPC -- ``-short`` first writes half of the buffer and reports a short write;
  the session must fail with a LockboxError, which is journaled, then the
  process exits;
* ``fsync-eio``: that fsync fails with EIO (same handling as ENOSPC);
* ``count``: no fault; the label of every call goes to ``trace.json``.

Run one job by hand (it may kill itself): ``python tests/crash/child.py '{"dir": "/tmp/x",
"workload": "add", "seed": 1, "mode": "kill", "at": 40}'``.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import blake3

import lockbox

PASSWORD = "pw"
SECOND_PASSWORD = "pw2"
WEAK = lockbox.Argon2Params(time_cost=1, memory_kib=64)
CHUNK = 4096
SUPERBLOCK_SIZE = 16384

ARCHIVE = "a.lbox"
JOURNAL = "journal.jsonl"
KILLINFO = "kill.json"
POWERLOG = "power.bin"
TRACE = "trace.json"
ERROR = "error.txt"

WORKLOADS = ("add", "rm", "env", "commit", "compact")
KILL_MODES = ("kill", "torn", "drop", "power")
ERROR_MODES = ("enospc", "enospc-short", "fsync-eio")
MODES = ("count", *KILL_MODES, *ERROR_MODES)

EXIT_OK = 0
EXIT_CHILD_BUG = 3  # the workload itself failed unexpectedly (see error.txt)
EXIT_RAW_ERROR = 4  # lockbox let a non-LockboxError escape (see error.txt)

Op = tuple[Any, ...]


# -- compaction (the one place to adapt when lockbox grows it) ---------------------------


def compact_available() -> bool:
    return hasattr(lockbox.Lockbox, "compact") or callable(getattr(lockbox, "compact", None))


def run_compact(box: lockbox.Lockbox, path: str) -> lockbox.Lockbox:
    """Compact the archive at ``path``; returns it reopened."""
    if hasattr(lockbox.Lockbox, "compact"):
        box.compact()  # type: ignore[attr-defined]
        box.close()
    else:
        box.close()
        lockbox.formats.lbox.write.compact(path, password=PASSWORD)  # type: ignore[operator]
    return lockbox.open(path, password=PASSWORD)


# -- the model: what the archive must hold ------------------------------------------------


def _hash(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class Model:
    """The expected logical state: entries (path -> [type, ...]), env, key slots."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Any]] = {}
        self.env: dict[str, str] = {}
        self.slots = 1

    def copy(self) -> Model:
        m = Model()
        m.entries = {k: list(v) for k, v in self.entries.items()}
        m.env = dict(self.env)
        m.slots = self.slots
        return m

    def snapshot(self) -> dict[str, Any]:
        return {"entries": {k: self.entries[k] for k in sorted(self.entries)},
                "env": {k: self.env[k] for k in sorted(self.env)}, "slots": self.slots}

    def digest(self) -> str:
        return state_digest(self.snapshot())

    def kind(self, path: str) -> str | None:
        e = self.entries.get(path)
        return None if e is None else e[0]

    def _ensure_parents(self, path: str) -> None:
        for p in _parents(path):
            if p not in self.entries:
                self.entries[p] = ["dir", 0o755]

    def _subtree(self, path: str) -> list[str]:
        return [p for p in self.entries if p.startswith(path + "/")]

    def apply(self, op: Op) -> None:
        name = op[0]
        if name == "add":
            _, path, data, mode = op
            self._ensure_parents(path)
            self.entries[path] = ["file", _hash(data), mode]
        elif name == "symlink":
            _, path, target = op
            self._ensure_parents(path)
            self.entries[path] = ["symlink", target, 0o777]
        elif name == "mkdir":
            _, path, mode = op
            self._ensure_parents(path)
            self.entries[path] = ["dir", mode]
        elif name == "rm":
            _, path, _recursive = op
            for p in [path, *self._subtree(path)]:
                del self.entries[p]
        elif name == "mv":
            _, src, dst = op
            moves = [(p, dst + p[len(src):]) for p in [src, *self._subtree(src)]]
            self._ensure_parents(dst)
            values = {p: self.entries.pop(p) for p, _ in moves}
            for p, q in moves:
                self.entries[q] = values[p]
        elif name == "env_set":
            self.env[op[1]] = _hash(op[2])
        elif name == "env_rm":
            del self.env[op[1]]
        elif name == "add_key":
            self.slots += 1
        elif name == "rm_key":
            self.slots -= 1
        elif name != "commit":
            raise ValueError(f"unknown op {name}")


def state_digest(snapshot: dict[str, Any]) -> str:
    return _hash(json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode())


# -- the plan --------------------------------------------------------------------------------


@dataclass
class Session:
    """One writer session (``ops`` may hold ("commit",) for explicit commits), or a
    compaction."""

    ops: list[Op] = field(default_factory=list)
    compact: bool = False


@dataclass
class CommitPoint:
    kind: str  # "create", "commit", "commit2" (removes a key slot: two generations), "compact"
    snapshot: dict[str, Any]
    digest: str


DIRS = ["", "docs", "docs/old", "src", "src/lib", "media"]
NAMES = ["a.txt", "b.bin", "c", "notes.md", "big.dat", "x"]
ENV_NAMES = ["HOME", "PATH", "TOKEN", "K1", "K2", "LONG"]
SIZES = {  # content size classes, for chunk_size 4096
    "tiny": (0, 200), "small": (201, 4000), "exact": (4096, 4096),
    "multi": (4097, 6 * 4096), "index": (9 * 4096 + 1, 12 * 4096),
}
_WORDS = [b"lockbox ", b"page ", b"frame ", b"\x00\x00\x00\x01", b"commit "]


def _content(rng: random.Random, weights: dict[str, float]) -> bytes:
    cls = rng.choices(list(weights), list(weights.values()))[0]
    lo, hi = SIZES[cls]
    size = rng.randint(lo, hi)
    if rng.random() < 0.5:
        return rng.randbytes(size)
    word = rng.choice(_WORDS)
    body = word * (size // len(word) + 1)
    cut = rng.randint(0, size)
    return (body[:cut] + rng.randbytes(min(64, size - cut)) + body)[:size]


class _Gen:
    """Generates valid ops, tracking the state they lead to."""

    def __init__(self, workload: str, seed: int) -> None:
        self.rng = random.Random(f"{workload}/{seed}")
        self.m = Model()
        self.serial = 0

    def _ok_parent(self, path: str) -> bool:
        return all(self.m.kind(p) in (None, "dir") for p in _parents(path))

    def _new_path(self, suffix: str = "") -> str | None:
        for _ in range(50):
            d = self.rng.choice(DIRS)
            name = self.rng.choice(NAMES) + suffix
            path = f"{d}/{name}" if d else name
            if self.m.kind(path) is None and self._ok_parent(path):
                return path
        return None

    def _existing(self, kinds: tuple[str, ...]) -> str | None:
        paths = sorted(p for p, e in self.m.entries.items() if e[0] in kinds)
        return self.rng.choice(paths) if paths else None

    def _emit(self, op: Op) -> Op:
        self.m.apply(op)
        return op

    def add(self, weights: dict[str, float], replace: bool = False) -> Op | None:
        path = self._existing(("file",)) if replace else self._new_path()
        if path is None:
            return None
        mode = self.rng.choice([0o644, 0o600, 0o755])
        return self._emit(("add", path, _content(self.rng, weights), mode))

    def symlink(self) -> Op | None:
        path = self._new_path()
        if path is None:
            return None
        return self._emit(("symlink", path, self.rng.choice(["a.txt", "../src", "/etc/x"])))

    def mkdir(self) -> Op | None:
        path = self._new_path(f".d{self.serial}")
        self.serial += 1
        if path is None:
            return None
        return self._emit(("mkdir", path, self.rng.choice([0o700, 0o755])))

    def rm(self) -> Op | None:
        path = self._existing(("file", "symlink"))
        return None if path is None else self._emit(("rm", path, False))

    def rmdir(self) -> Op | None:
        path = self._existing(("dir",))
        return None if path is None else self._emit(("rm", path, True))

    def mv(self) -> Op | None:
        src = self._existing(("file", "symlink", "dir"))
        if src is None:
            return None
        dst = self._new_path(f".m{self.serial}")
        self.serial += 1
        if dst is None or (dst + "/").startswith(src + "/"):
            return None
        return self._emit(("mv", src, dst))

    def env_set(self) -> Op:
        name = self.rng.choice(ENV_NAMES)
        size = self.rng.randint(2000, 20000) if name == "LONG" else self.rng.randint(0, 600)
        return self._emit(("env_set", name, self.rng.randbytes(size)))

    def env_rm(self) -> Op | None:
        names = sorted(self.m.env)
        return self._emit(("env_rm", self.rng.choice(names))) if names else None


# Content size weights and op weights per workload.
_ADD_SIZES = {"tiny": 2, "small": 3, "exact": 1, "multi": 3, "index": 1}
_RM_SIZES = {"tiny": 1, "small": 2, "exact": 1, "multi": 5, "index": 1}
_OPS: dict[str, dict[str, float]] = {
    "add": {"add": 8, "replace": 4, "symlink": 1, "mkdir": 1, "rm": 1, "env_set": 1},
    "rm": {"add": 3, "replace": 2, "rm": 4, "rmdir": 1.5, "mv": 3, "env_set": 0.5},
    "env": {"env_set": 6, "env_rm": 3, "add": 1, "rm": 0.5},
    "commit": {"add": 4, "replace": 2, "rm": 2, "mv": 1, "env_set": 2, "env_rm": 1,
               "addrm": 1},
    "compact": {"add": 3, "replace": 2, "rm": 3, "rmdir": 1, "env_set": 1},
}


def _random_op(g: _Gen, workload: str) -> list[Op]:
    sizes = _RM_SIZES if workload in ("rm", "compact") else _ADD_SIZES
    weights = _OPS[workload]
    for _ in range(20):
        kind = g.rng.choices(list(weights), list(weights.values()))[0]
        op: Op | None
        if kind == "addrm":  # staged and removed in one session: its frames die unreferenced
            path = g._new_path(f".t{g.serial}")
            g.serial += 1
            if path is None:
                continue
            return [g._emit(("add", path, _content(g.rng, sizes), 0o644)),
                    g._emit(("rm", path, False))]
        op = {
            "add": lambda: g.add(sizes), "replace": lambda: g.add(sizes, replace=True),
            "symlink": g.symlink, "mkdir": g.mkdir, "rm": g.rm, "rmdir": g.rmdir, "mv": g.mv,
            "env_set": g.env_set, "env_rm": g.env_rm,
        }[kind]()
        if op is not None:
            return [op]
    return [g.env_set()]


def plan(workload: str, seed: int) -> list[Session]:
    """The deterministic sessions of one run."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload}")
    g = _Gen(workload, seed)
    sizes = _RM_SIZES if workload in ("rm", "compact") else _ADD_SIZES
    setup = Session()
    for _ in range(5 if workload in ("rm", "compact") else 3):
        op = g.add(sizes)
        if op:
            setup.ops.append(op)
    if workload in ("rm", "compact"):  # at least two files with pages of their own
        for _ in range(2):
            op = g.add({"multi": 1})
            if op:
                setup.ops.append(op)
    if workload == "env":
        setup.ops += [g.env_set() for _ in range(3)]
    sessions = [setup]
    for i in range(7):
        s = Session()
        groups = g.rng.randint(1, 3) if workload == "commit" else 1
        for j in range(groups):
            for _ in range(g.rng.randint(1, 3)):
                s.ops += _random_op(g, workload)
            if workload == "commit" and i in (1, 4) and j == 0:
                s.ops.append(g._emit(("add_key",) if g.m.slots == 1 else ("rm_key",)))
            if j < groups - 1:
                s.ops.append(("commit",))
        sessions.append(s)
        if workload == "compact" and i in (2, 5):
            sessions.append(Session(compact=True))
    return sessions


def commit_points(sessions: list[Session]) -> list[CommitPoint]:
    """The state after each commit of the plan; index 0 is the new archive."""
    m = Model()
    points = [CommitPoint("create", m.snapshot(), m.digest())]

    def point(kind: str) -> None:
        points.append(CommitPoint(kind, m.snapshot(), m.digest()))

    for s in sessions:
        if s.compact:
            point("compact")
            continue
        removes_key = False
        for op in s.ops:
            if op[0] == "commit":
                point("commit2" if removes_key else "commit")
                removes_key = False
                continue
            m.apply(op)
            removes_key = removes_key or op[0] == "rm_key"
        point("commit2" if removes_key else "commit")
    return points


# -- the fault-injecting sink --------------------------------------------------------------


_real_pwrite = os.pwrite
_real_fsync = os.fsync


class _Die(Exception):
    pass


class FaultSink:
    """Numbers every os.pwrite / os.fsync call and injects the job's fault at ``at``."""

    def __init__(self, workdir: str, mode: str, at: int, fault_seed: int) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode}")
        self.dir = workdir
        self.mode = mode
        self.at = at
        self.rng = random.Random(fault_seed)
        self.n = 0
        self.phase = "create"
        self.stage = "pages"
        self.trace: list[tuple[str, str]] = []
        self.dropped: str | None = None
        self.full = False  # ENOSPC: the disk stays full until the failure is handled
        self.failed_at: str | None = None
        # power: writes since the last fsync of their file, with pre-images
        self.log: list[tuple[int, int, bytes, bytes]] = []  # (inode, offset, old, new)
        self.base: dict[int, int] = {}  # inode -> size at its last fsync (or first sight)

    def install(self) -> None:
        os.pwrite = self.pwrite  # type: ignore[assignment]
        os.fsync = self.fsync  # type: ignore[assignment]

    def uninstall(self) -> None:
        os.pwrite = _real_pwrite
        os.fsync = _real_fsync

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.stage = "pages"

    def _label(self, kind: str, offset: int) -> str:
        p = self.phase
        if p == "commit":
            if kind == "fsync":
                sub = {"pages": "fsync-pages", "slot": "fsync-slot",
                       "redact": "fsync-redact"}[self.stage]
                self.stage = {"pages": "slot", "slot": "redact", "redact": "pages"}[self.stage]
                return f"commit:{sub}"
            if self.stage == "slot" and offset < SUPERBLOCK_SIZE:
                return "commit:slot"
            return f"commit:{self.stage}"
        if p == "open-writer":
            return "begin:fsync-redact" if kind == "fsync" else "begin:redact"
        return f"{p}:{kind}"

    def _die(self, label: str, **extra: Any) -> None:
        info = {"op": self.n, "label": label, "mode": self.mode, **extra}
        with open(os.path.join(self.dir, KILLINFO), "w") as f:
            json.dump(info, f)
        os.kill(os.getpid(), signal.SIGKILL)
        raise _Die  # not reached

    def _dump_power(self) -> None:
        with open(os.path.join(self.dir, POWERLOG), "wb") as f:
            pickle.dump({"base": self.base, "log": self.log}, f)

    def pwrite(self, fd: int, data: Any, offset: int) -> int:
        self.n += 1
        label = self._label("pwrite", offset)
        mode = self.mode
        if mode == "count":
            self.trace.append(("pwrite", label))
        elif mode in ("enospc", "enospc-short"):
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if self.n == self.at:
                self.full = True
                self.failed_at = label
                if mode == "enospc-short" and len(data) > 1:
                    return _real_pwrite(fd, memoryview(data)[:len(data) // 2], offset)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        elif self.n == self.at:
            if mode == "kill":
                self._die(label)
            elif mode == "torn":
                size = len(data)
                k = min(512, size - 1) if self.rng.random() < 0.5 else self.rng.randrange(size)
                _real_pwrite(fd, memoryview(data)[:k], offset)
                self._die(label, written=k, size=size)
            elif mode == "drop":
                self.dropped = label
                return len(data)
            elif mode == "power":
                self._dump_power()
                self._die(label)
        if mode == "power":
            st = os.fstat(fd)
            self.base.setdefault(st.st_ino, st.st_size)
            old = os.pread(fd, len(data), offset)
            self.log.append((st.st_ino, offset, old, bytes(data)))
        return _real_pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self.n += 1
        label = self._label("fsync", 0)
        mode = self.mode
        if mode == "count":
            self.trace.append(("fsync", label))
        elif self.dropped is not None:
            self._die(label, dropped=self.dropped)
        elif self.n == self.at:
            if mode in ("kill", "torn", "drop"):
                self._die(label)
            elif mode == "power":
                self._dump_power()
                self._die(label)
            elif mode == "fsync-eio":
                self.failed_at = label
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        _real_fsync(fd)
        if mode == "power":
            st = os.fstat(fd)
            self.log = [e for e in self.log if e[0] != st.st_ino]
            self.base[st.st_ino] = st.st_size


# -- running a plan ------------------------------------------------------------------------


class Journal:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())
        _real_fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def apply_op(w: Any, op: Op, keys: dict[str, int]) -> None:
    name = op[0]
    if name == "add":
        w.add_bytes(op[1], op[2], mode=op[3], mtime_ns=1_700_000_000_000_000_000)
    elif name == "symlink":
        w.symlink(op[1], op[2], mtime_ns=1_700_000_000_000_000_000)
    elif name == "mkdir":
        w.mkdir(op[1], mode=op[2], mtime_ns=1_700_000_000_000_000_000)
    elif name == "rm":
        w.remove(op[1], recursive=op[2])
    elif name == "mv":
        w.move(op[1], op[2])
    elif name == "env_set":
        w.env_set(op[1], op[2])
    elif name == "env_rm":
        w.env_remove(op[1])
    elif name == "add_key":
        keys["second"] = w.add_password(SECOND_PASSWORD, WEAK)
    elif name == "rm_key":
        w.remove_slot(keys.pop("second"))
    else:
        raise ValueError(f"unknown op {name}")


def run_plan(workdir: str, sessions: list[Session], sink: FaultSink) -> None:
    path = os.path.join(workdir, ARCHIVE)
    journal = Journal(os.path.join(workdir, JOURNAL))
    m = Model()
    keys: dict[str, int] = {}
    k = 0
    sink.set_phase("create")
    box = lockbox.create(path, password=PASSWORD, argon2=WEAK, chunk_size=CHUNK)
    journal.write({"k": 0, "gen": box.generation, "digest": m.digest()})
    try:
        for s in sessions:
            if s.compact:
                sink.set_phase("compact")
                box = run_compact(box, path)
                k += 1
                journal.write({"k": k, "gen": box.generation, "digest": m.digest()})
                continue
            sink.set_phase("open-writer")
            with box.writer() as w:
                for op in s.ops:
                    if op[0] == "commit":
                        sink.set_phase("commit")
                        w.commit()
                        k += 1
                        journal.write({"k": k, "gen": box.generation, "digest": m.digest()})
                        continue
                    sink.set_phase(op[0])
                    apply_op(w, op, keys)
                    m.apply(op)
                sink.set_phase("commit")
            k += 1
            journal.write({"k": k, "gen": box.generation, "digest": m.digest()})
        if sink.failed_at is not None:
            journal.write({"swallowed": sink.failed_at})
    except lockbox.LockboxError as e:
        if sink.failed_at is None:
            raise
        sink.full = False  # space is back
        journal.write({"failed": k + 1, "error": type(e).__name__, "message": str(e),
                       "at": sink.failed_at})
    finally:
        box.close()
        journal.close()


def run_job(spec: dict[str, Any]) -> int:
    """Run one job in this process; returns the exit code (unless killed)."""
    workdir = spec["dir"]
    sink = FaultSink(workdir, spec["mode"], int(spec.get("at", 0)),
                     int(spec.get("fault_seed", 0)))
    sessions = plan(spec["workload"], int(spec["seed"]))
    sink.install()
    try:
        run_plan(workdir, sessions, sink)
    except lockbox.LockboxError:
        _write_error(workdir, f"at call {sink.n} ({sink.phase}):\n" + traceback.format_exc())
        return EXIT_CHILD_BUG
    except _Die:
        raise
    except Exception:
        kind = "raw error" if sink.failed_at is not None else "workload error"
        _write_error(workdir, f"{kind} at call {sink.n} ({sink.phase}):\n"
                     + traceback.format_exc())
        return EXIT_RAW_ERROR if sink.failed_at is not None else EXIT_CHILD_BUG
    finally:
        sink.uninstall()
    if sink.mode == "count":
        with open(os.path.join(workdir, TRACE), "w") as f:
            json.dump(sink.trace, f)
    return EXIT_OK


def _write_error(workdir: str, text: str) -> None:
    with open(os.path.join(workdir, ERROR), "a") as f:
        f.write(text)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    os.makedirs(spec["dir"], exist_ok=True)
    return run_job(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
