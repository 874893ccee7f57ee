"""Parallel preparation of small files for ``add --jobs N``.

The writer's directory walk -> batches of regular files -> worker processes that
open, ``fstat``, read and hash (BLAKE3) each file and encode it: a file of at most
``PACK_FILE_LIMIT`` bytes (and one chunk) becomes a member of the batch's pack (one
zstd call per pack, about half a MiB), a larger one that fits a chunk a frame
plaintext of its own; each file's TOC entry is encoded up to its ref -> the main
process, which seals each pack as one PACK frame and each other plaintext as one
frame (the AAD binds the frame's final offset and the nonce counter is the session's,
so sealing happens where offsets are assigned) and stages the entries in bulk (the
worker's head + the frame's ref). The archive's content is the same as with one job.

The walk does not ``lstat`` regular files (the listing's type says "regular"): the
worker's ``fstat`` of the open file gives mode, time and size, and files larger than a
chunk, excluded or no longer regular are handed back unread (:data:`LARGE`,
:data:`EXCLUDED`, :data:`SKIPPED`) for the main process to stream, report or skip.

With ``jobs`` N, N - 1 worker processes and this one prepare: scheduling balances
itself, each worker holding at most ``PER_WORKER`` batches; when every worker is busy
the main process prepares the batch itself, and results are staged as they arrive;
the walk's last batch is shared with the idle workers (or prepared here when none is
idle), as this process would otherwise only wait.
Workers are forked where that is safe (Linux, no other thread: ready at once, nothing
to import), else started as fresh interpreters (``pipeline_worker``); they start once
a walk has queued ``START_AFTER`` files. Batches and results travel as ``marshal``
messages. Memory: at most ``PER_WORKER * (jobs - 1) + 1`` batches, each at most
``BATCH_FILES`` files and, read, about ``CAP_BYTES`` bytes (a worker defers the rest).
Under Pyodide (no subprocesses) everything runs inline.
"""

from __future__ import annotations

import marshal
import os
import stat as stat_mod
import sys
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from ..frames import encode_plain
from ..wire.constants import (
    FRAME_OVERHEAD,
    MAX_PACK_MEMBERS,
    PACK_FILE_LIMIT,
    PACK_TARGET_SIZE,
)
from ..wire.encoding import svarint, uvarint
from ..wire.entry import encode_file_entry_head
from ..wire.pack import encode_pack

__all__ = ["SmallFile", "Prepared", "Batch", "prepare_batch", "prepare_rows", "packable",
           "PACK_HEAD_SLACK", "SmallFilePipeline", "resolve_jobs", "MEMBER", "FRAME", "FAILED",
           "GROWN", "LARGE", "EXCLUDED", "SKIPPED", "DEFERRED"]

BATCH_FILES = MAX_PACK_MEMBERS
# A batch closes at about this many bytes of file content (each file counted with
# FILE_OVERHEAD more for its chunk header): its small files make one pack of about half
# PACK_TARGET_SIZE (the compression is the same as with 1 MiB packs on small text
# files: their random ids and hashes dominate what is left; and the batches, half as
# long, leave half the work to wait for at the end of a walk).
BATCH_BYTES = PACK_TARGET_SIZE // 2 - PACK_TARGET_SIZE // 32
FILE_OVERHEAD = 128
GUESS_SIZE = 1024  # the size assumed of a file not lstat-ed, until results say better
CAP_BYTES = 2 * PACK_TARGET_SIZE  # a worker defers the rest of a batch past this content
_ONE_BYTE = [bytes((i,)) for i in range(128)]
START_AFTER = 256  # below this many small files, workers cost more than they save
PER_WORKER = 2  # batches in flight per worker
LAST_SPLIT_MIN = 64  # the last batch is shared with idle workers in parts of this many
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
T = TypeVar("T")
PACK_HEAD_SLACK = 8
"""Bytes counted per member for the pack header (its size's uvarint, at most 3 bytes,
and the count's share): a pack's payload stays within ``PACK_TARGET_SIZE``."""


def packable(size: int, chunk_size: int) -> bool:
    """Whether a file of ``size`` bytes goes into a pack (writer policy: at most
    ``PACK_FILE_LIMIT`` bytes and one chunk; empty files too)."""
    return size <= PACK_FILE_LIMIT and size <= chunk_size


def resolve_jobs(jobs: int | str | None) -> int:
    """``auto`` = CPUs, at most 6; an int as given (at least 1). Always 1 where there
    are no subprocesses (Pyodide)."""
    from ....platform import IS_BROWSER

    if jobs is None or jobs == "auto":
        n = max(1, min(6, os.cpu_count() or 1))
    else:
        n = int(jobs)
        if n < 1:
            raise ValueError("jobs must be at least 1")
    return 1 if IS_BROWSER else n


class SmallFile(NamedTuple):
    """A regular file to prepare. ``mode`` -1: the walk did not ``lstat`` it (the
    directory listing said "regular file"): the worker takes mode, mtime and size from
    ``fstat`` of the file it opened, and leaves it to the main process when it is
    larger than a chunk (LARGE), is not a regular file any more (SKIPPED) or is
    excluded (EXCLUDED). Otherwise the walk's ``lstat`` said so (``size`` lets the
    worker skip the read that would only see the end of the file)."""

    host: str
    path: str
    mode: int = -1
    mtime_ns: int = 0
    size: int = -1  # -1: unknown


# Prepared.kind
MEMBER = 0  # a member of the batch's pack ``pack_no``, number ``member_no``
FRAME = 1  # a frame of its own (``plain``): fits one chunk, over the pack limit
FAILED = 2  # could not be read (``error``)
GROWN = 3  # no longer fits one chunk: the main process streams it
LARGE = 4  # (not read) larger than a chunk: the main process streams it
EXCLUDED = 5  # (not read) its (st_dev, st_ino) is excluded (the archive itself)
SKIPPED = 6  # (not read) no longer a regular file (``error`` says what)
DEFERRED = 7  # (not opened) the batch's content reached CAP_BYTES: submit it again


class Prepared(NamedTuple):
    """One file of a batch, prepared (``kind`` says how). Its path is not repeated: the
    caller's tags say which file it is."""

    kind: int
    mode: int
    mtime_ns: int
    file_id: bytes
    size: int
    content_hash: bytes
    stored_size: int  # MEMBER: the member's size; FRAME: the sealed frame's
    entry_head: bytes  # its TOC entry up to the one ref (encode_*_entry_head)
    member_no: int = 0
    pack_no: int = 0
    plain: bytes = b""  # FRAME: the frame plaintext, ready to seal
    error: str = ""  # FAILED: why


class Batch(NamedTuple):
    """A prepared batch: the frame plaintexts of its packs (zstd or RAW, ready to seal
    as PACK frames) and one :class:`Prepared` per file, in the order submitted."""

    packs: list[bytes]
    files: list[Prepared]


def prepare_batch(batch: Sequence[SmallFile | tuple[str, str, int, int, int]],
                  chunk_size: int, level: int,
                  exclude: Collection[tuple[int, int]] = ()) -> Batch:
    """:func:`prepare_rows` with each file's row as a :class:`Prepared`."""
    packs, rows = prepare_rows(batch, chunk_size, level, exclude)
    return Batch(packs, [Prepared._make(r) for r in rows])


def prepare_rows(batch: Sequence[SmallFile | tuple[str, str, int, int, int]],
                 chunk_size: int, level: int, exclude: Collection[tuple[int, int]] = ()
                 ) -> tuple[list[bytes], list[tuple[Any, ...]]]:
    """Worker side (also used inline). Never raises for one bad file: reports it.

    Each file is read with one ``read`` of one byte more than its size (no buffer of
    a chunk per file) and hashed. Files that are :func:`packable` become members of
    the batch's packs, in order, a pack closed when the next member would take it over
    ``PACK_TARGET_SIZE`` bytes or ``MAX_PACK_MEMBERS`` members (as
    ``ContentWriter.add_member``), each pack's payload compressed whole (one zstd call,
    the context reused). Their encodings (the member's data chunk, the entry's head)
    are built here from fields encoded once (``encode_chunk_parts``,
    ``encode_file_meta`` and ``encode_packed_entry_head`` byte for byte; tested).
    Once the batch's content reaches ``CAP_BYTES``, the files left are DEFERRED
    (bounded memory whatever the sizes the walk did not look at)."""
    from ....platform import default_codec, default_crypto

    codec = default_codec()
    crypto = default_crypto()
    blake3 = crypto.blake3
    # the hasher's own class when it hashes its constructor's argument (the blake3
    # package): one call per file instead of the backend's method, update and digest
    b3_of = _hash_class(blake3)
    ids = crypto.random_bytes(16 * len(batch))  # one call for the batch's file ids
    os_open, os_read, os_close = os.open, os.read, os.close
    flags = os.O_RDONLY | _O_CLOEXEC
    limit = chunk_size + 1
    pack_limit = min(PACK_FILE_LIMIT, chunk_size)
    u_csize = uvarint(chunk_size)
    one = _ONE_BYTE  # uvarint of 0..127 without a call (== uvarint(i))
    u_modes: dict[int, bytes] = {}
    # uvarint of the sizes, member sizes and member numbers met (they repeat: one call
    # each per batch rather than per file)
    u_ints: dict[int, bytes] = {}
    u_get = u_ints.get
    out: list[tuple[Any, ...]] = []
    append = out.append
    packs: list[bytes] = []
    members: list[bytes] = []
    add_member = members.append
    members_size = 0
    member_no = 0  # == len(members)
    pack_no = 0  # == len(packs)
    room = PACK_TARGET_SIZE - PACK_HEAD_SLACK  # members_size + a member's size: at most
    max_members = MAX_PACK_MEMBERS
    join = b"".join
    fstat = os.fstat
    s_ifmt, s_ifreg = 0o170000, stat_mod.S_IFREG  # S_ISREG(mode) without the call
    taken = 0  # content bytes read
    cap = CAP_BYTES
    for i, (host, path, mode, mtime_ns, expected) in enumerate(batch):
        if taken >= cap:
            append((DEFERRED, mode, mtime_ns, b"", 0, b"", 0, b"", 0, 0, b"", ""))
            continue
        try:
            fd = os_open(host, flags)
            try:
                if mode < 0:  # not lstat-ed by the walk
                    st = fstat(fd)
                    mode, mtime_ns, expected = st.st_mode, st.st_mtime_ns, st.st_size
                    if mode & s_ifmt != s_ifreg:
                        append((SKIPPED, mode & 0o7777, mtime_ns, b"", 0, b"", 0, b"", 0, 0,
                                b"", "not a regular file, directory or symlink"))
                        continue
                    mode &= 0o7777
                    if exclude and (st.st_dev, st.st_ino) in exclude:
                        append((EXCLUDED, mode, mtime_ns, b"", 0, b"", 0, b"", 0, 0, b"", ""))
                        continue
                    if expected > chunk_size:
                        append((LARGE, mode, mtime_ns, b"", expected, b"", 0, b"", 0, 0, b"",
                                ""))
                        continue
                # one byte more than the size seen: one read finds the end (no buffer of
                # a chunk per file); another size (it changed, or a short read): read on
                data = os_read(fd, min(expected, chunk_size) + 1 if expected >= 0 else limit)
                n = len(data)
                if n != expected:
                    while 0 < n < limit:
                        more = os_read(fd, limit - n)
                        if not more:
                            break
                        data += more
                        n += len(more)
            finally:
                os_close(fd)
        except OSError as e:
            append((FAILED, mode, mtime_ns, b"", 0, b"", 0, b"", 0, 0, b"",
                    f"cannot read {host}: {e.strerror}"))
            continue
        if n > chunk_size:
            append((GROWN, mode, mtime_ns, b"", 0, b"", 0, b"", 0, 0, b"", ""))
            continue
        taken += n
        if b3_of is not None:
            digest = b3_of(data).digest()
        else:
            h = blake3()
            h.update(data)
            digest = h.digest()
        file_id = ids[16 * i:16 * i + 16]
        u_mode = u_modes.get(mode)
        if u_mode is None:
            u_mode = u_modes[mode] = uvarint(mode)
        u_size = u_get(n)
        if u_size is None:
            u_size = u_ints[n] = uvarint(n)
        if 0x80000000000000 <= mtime_ns < 0x4000000000000000:
            # svarint(mtime_ns) of the nanosecond times of these decades (nine bytes),
            # without the two calls
            z = mtime_ns << 1
            low = z & 0xFFFFFFF
            mid = (z >> 28) & 0xFFFFFFF
            s_mtime = bytes(((low & 0x7F) | 0x80, ((low >> 7) & 0x7F) | 0x80,
                             ((low >> 14) & 0x7F) | 0x80, (low >> 21) | 0x80,
                             (mid & 0x7F) | 0x80, ((mid >> 7) & 0x7F) | 0x80,
                             ((mid >> 14) & 0x7F) | 0x80, (mid >> 21) | 0x80, z >> 56))
        else:
            s_mtime = svarint(mtime_ns)
        path_b = path.encode()
        n_path = len(path_b)
        # encode_chunk_parts(file_id, 0, path_b, encode_file_meta(...), data)
        chunk = join((file_id, b"\x00", one[n_path] if n_path < 128 else uvarint(n_path),
                      path_b, b"\x01\x01", u_mode, s_mtime, u_size, digest, u_csize, b"\x00",
                      u_size, data))
        if n <= pack_limit:
            stored = len(chunk)
            if member_no and (members_size + stored > room or member_no >= max_members):
                packs.append(encode_plain(codec, encode_pack(members), level))
                pack_no += 1
                members = []
                add_member = members.append
                members_size = 0
                member_no = 0
            add_member(chunk)
            members_size += stored + PACK_HEAD_SLACK
            # encode_packed_entry_head(mode, mtime_ns, n, stored, digest, file_id,
            #                          chunk_size, member_no)
            u_stored = u_get(stored)
            if u_stored is None:
                u_stored = u_ints[stored] = uvarint(stored)
            u_member = u_get(member_no)
            if u_member is None:
                u_member = u_ints[member_no] = uvarint(member_no)
            head = join((b"\x01", u_mode, s_mtime, u_size, u_stored, digest, file_id,
                         u_csize, b"\x02", u_member, b"\x01"))
            append((MEMBER, mode, mtime_ns, file_id, n, digest, stored, head, member_no,
                    pack_no, b"", ""))
            member_no += 1
            continue
        plain = encode_plain(codec, chunk, level)
        stored = FRAME_OVERHEAD + len(plain)
        head = encode_file_entry_head(mode, mtime_ns, n, stored, digest, file_id, chunk_size)
        append((FRAME, mode, mtime_ns, file_id, n, digest, stored, head, 0, 0, plain, ""))
    if members:
        packs.append(encode_plain(codec, encode_pack(members), level))
    return packs, out


def _hash_class(blake3: Callable[[], Any]) -> Callable[[bytes], Any] | None:
    """The class of ``blake3()`` when it is the ``blake3`` package's (whose constructor
    takes the data to hash), else None."""
    cls = type(blake3())
    return cls if cls.__module__.split(".")[0] == "blake3" else None


def _can_fork() -> bool:
    """Whether a worker may be forked from this process: Linux, and no other thread
    (forking a threaded process can copy a lock another thread holds). Elsewhere a
    worker is a fresh interpreter (``pipeline_worker``)."""
    import threading

    return (FORK_WORKERS and sys.platform == "linux" and hasattr(os, "fork")
            and threading.active_count() == 1)


FORK_WORKERS = True
"""Whether workers are forked when :func:`_can_fork` allows (ready at once, nothing
to import); tests turn it off to compare with fresh interpreters."""


class _Worker:
    """One worker process fed over two pipes with length-prefixed messages (:func:`_pack`:
    ``marshal``, the same interpreter on both ends; an exception pickled): a fork of
    this process when :func:`_can_fork` (it closes every other fd, the archive's and
    its lock included, and leaves with ``os._exit``), else a fresh interpreter
    (``python -m lockbox.formats.lbox.write.pipeline_worker``). Not multiprocessing: it
    never re-imports the caller's ``__main__``. The pipes are unbuffered, so ``ready``
    (poll) tells the truth."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.pid = 0
        if _can_fork():
            from ....platform import default_codec, default_crypto

            default_crypto().blake3()  # its module imported here once, not in each fork
            default_codec()
            to_child, to_parent = os.pipe(), os.pipe()
            for fd in (to_child[1], to_parent[0]):
                _grow_pipe(fd)
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    keep = sorted((to_child[0], to_parent[1]))
                    os.closerange(3, keep[0])
                    os.closerange(keep[0] + 1, keep[1])
                    os.closerange(keep[1] + 1, _MAX_FD)
                    _serve(to_child[0], to_parent[1])
                    code = 0
                finally:
                    os._exit(code)
            os.close(to_child[0])
            os.close(to_parent[1])
            self.pid = pid
            self._in, self._out = to_child[1], to_parent[0]
        else:
            import subprocess

            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lockbox.formats.lbox.write.pipeline_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self._in = self.proc.stdin.fileno()
            self._out = self.proc.stdout.fileno()
            for fd in (self._in, self._out):  # a whole batch or result fits: no ping-pong
                _grow_pipe(fd)
        self.inflight: deque[Any] = deque()  # the tags of the batches sent, in order

    def send(self, obj: object, tag: Any) -> None:
        _send(self._in, obj)
        self.inflight.append(tag)

    def ready(self) -> bool:
        """Whether a result can be read without waiting (a POSIX poll; elsewhere: yes,
        reading waits)."""
        if _poll is None:
            return True
        return bool(_poll([self._out], [], [], 0)[0])

    def recv(self) -> tuple[Any, Any]:
        """(result, tag) of the oldest batch in flight (waits for it)."""
        return _receive(self._out), self.inflight.popleft()

    def close(self) -> None:
        if self.proc is None:
            for fd in (self._in, self._out):
                try:
                    os.close(fd)
                except OSError:
                    pass
            os.waitpid(self.pid, 0)  # it leaves at the end of its input
            return
        import subprocess

        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_MAX_FD = 1 << 20
try:
    _MAX_FD = max(os.sysconf("SC_OPEN_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    pass


def _grow_pipe(fd: int) -> None:
    """Linux: a 1 MiB pipe buffer (the default 64 KiB makes a worker's result wait for the
    reader 64 KiB at a time, on a busy machine a scheduling round trip each)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass  # another OS, or over /proc/sys/fs/pipe-max-size: the default size works


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n:
        part = os.read(fd, min(n, 1 << 20))
        if not part:
            raise RuntimeError("a pipeline worker exited unexpectedly")
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


try:
    from select import select as _poll
except ImportError:  # pragma: no cover - no select (Pyodide runs inline anyway)
    _poll = None  # type: ignore[assignment]
if os.name != "posix":  # pragma: no cover - select() takes sockets only there
    _poll = None  # type: ignore[assignment]


class SmallFilePipeline(Generic[T]):
    """Prepares batches of small files (in worker processes or inline) and hands each
    result to ``consume(prepared, tags)`` with the tags given to :meth:`submit`, in
    the order of each file within its batch (batches may complete out of order)."""

    def __init__(self, jobs: int, chunk_size: int, level: int,
                 consume: Callable[[tuple[list[bytes], Sequence[Prepared | tuple[Any, ...]]],
                                    list[T]], None]
                 ) -> None:
        self.jobs = jobs
        self.chunk_size = chunk_size
        self.level = level
        self.consume = consume
        self._batch: list[SmallFile | tuple[str, str, int, int, int]] = []
        self._tags: list[T] = []
        self._bytes = 0
        self._queued = 0
        self._workers: list[_Worker] = []
        self.exclude: tuple[tuple[int, int], ...] = ()  # (st_dev, st_ino) never read
        # content bytes and files of the results so far: the size guessed of a file
        # the walk did not lstat (batches of about BATCH_BYTES either way)
        self._seen_bytes = 0
        self._seen_files = 0
        self._deferred: list[tuple[Any, T]] = []  # (file, tag) to submit again
        self.prepare_seconds = 0.0  # inline preparation, or waiting for the workers
        self.inline_batches = 0
        self.worker_batches = 0
        self.busy_batches = 0  # prepared here because every worker was busy

    def submit(self, f: SmallFile | tuple[str, str, int, int, int], tag: T) -> None:
        host, path, mode, mtime_ns, size = f  # a plain tuple: marshalled to the workers
        self.submit_many([(host, path, mode, mtime_ns, size)], [tag])

    def _consume(self, result: tuple[list[bytes], list[tuple[Any, ...]]],
                 batch: list[Any], tags: list[T]) -> None:
        """Hand a batch's result to ``consume``, less its DEFERRED files (a suffix),
        which are queued to be submitted again."""
        packs, rows = result
        k = len(rows)
        while k and rows[k - 1][0] == DEFERRED:
            k -= 1
        if k < len(rows):
            self._deferred.extend(zip(batch[k:], tags[k:]))
            rows, tags = rows[:k], tags[:k]
        read = [r[4] for r in rows if r[0] <= FRAME]  # MEMBER, FRAME: the sizes read
        self._seen_files += len(read)
        self._seen_bytes += sum(read)
        self.consume((packs, rows), tags)

    def submit_many(self, files: Sequence[SmallFile | tuple[str, str, int, int, int]],
                    tags: Sequence[T], *, unsized: bool = False) -> None:
        """:meth:`submit` of each file in turn (a batch closes at ``BATCH_FILES`` files
        or ``BATCH_BYTES`` bytes, each file counted with ``FILE_OVERHEAD`` more).
        ``unsized``: the caller says no file's size is known (-1, the walk's rows): each
        counts the size guessed, and the batches are cut without a look at each row."""
        if self._deferred:
            again, self._deferred = self._deferred, []
            self.submit_many([f for f, _ in again], [t for _, t in again])
        start, count = 0, len(files)
        seen = self._seen_files
        guess = (self._seen_bytes // seen if seen >= 16 else GUESS_SIZE) + FILE_OVERHEAD
        while start < count:
            nbytes = self._bytes
            stop = start
            end = min(count, start + BATCH_FILES - len(self._batch))
            if unsized:  # the loop below, in one step: files until BATCH_BYTES
                if nbytes < BATCH_BYTES:
                    stop = min(end, start - (-(BATCH_BYTES - nbytes) // guess))
                    nbytes += (stop - start) * guess
            else:
                while stop < end and nbytes < BATCH_BYTES:
                    size = files[stop][4]
                    nbytes += size + FILE_OVERHEAD if size >= 0 else guess
                    stop += 1
            self._batch.extend(files[start:stop])
            self._tags.extend(tags[start:stop])
            self._bytes = nbytes
            self._queued += stop - start
            if len(self._batch) >= BATCH_FILES or nbytes >= BATCH_BYTES:
                self._dispatch()
            start = stop

    def _dispatch(self, last: bool = False) -> None:
        """Send the open batch to the least busy worker, or prepare it here when every
        worker holds ``PER_WORKER`` batches. ``last`` (the walk is over, nothing more
        will come): this process would only wait, so it prepares the batch itself
        when every worker is busy, else shares it with the idle workers."""
        batch, tags = self._batch, self._tags
        if not batch:
            return
        self._batch, self._tags, self._bytes = [], [], 0
        if not self._workers and self.jobs > 1 and self._queued >= START_AFTER:
            # this process prepares too when the workers are busy: jobs - 1 of them
            # (on 2 cores, 1 worker: 0.69 s for 20,000 files; 2 workers: 0.75 s)
            self._workers = [_Worker() for _ in range(self.jobs - 1)]
        if self._workers and last:
            self._collect(wait=False)
            idle_workers = [w for w in self._workers if not w.inflight]
            share = len(batch) // (len(idle_workers) + 1)
            if not idle_workers:
                self.busy_batches += 1
            elif share >= LAST_SPLIT_MIN:  # (a smaller batch is quicker done here)
                for w in idle_workers:
                    w.send((batch[:share], self.chunk_size, self.level, self.exclude),
                           (batch[:share], tags[:share]))
                    self.worker_batches += 1
                    batch, tags = batch[share:], tags[share:]
        elif self._workers:
            self._collect(wait=False)
            idle = min(self._workers, key=lambda w: len(w.inflight))
            if len(idle.inflight) < PER_WORKER:
                idle.send((batch, self.chunk_size, self.level, self.exclude), (batch, tags))
                self.worker_batches += 1
                return
            self.busy_batches += 1
        t0 = time.perf_counter()
        prepared = prepare_rows(batch, self.chunk_size, self.level, self.exclude)
        self.prepare_seconds += time.perf_counter() - t0
        self.inline_batches += 1
        self._consume(prepared, batch, tags)

    def _collect(self, wait: bool) -> None:
        """Stage the results that have arrived (``wait``: every result in flight)."""
        for w in self._workers:
            while w.inflight and (wait or w.ready()):
                t0 = time.perf_counter()
                result, (batch, tags) = w.recv()
                self.prepare_seconds += time.perf_counter() - t0
                if isinstance(result, BaseException):
                    raise result
                self._consume(result, batch, tags)  # (packs, rows with Prepared's fields)

    def finish(self) -> None:
        while True:
            self._dispatch(last=True)
            self._collect(wait=True)
            if not self._deferred:
                break
            self.submit_many([], [])  # the deferred files, submitted again
        self.close()

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for w in workers:
            w.close()

    def __enter__(self) -> SmallFilePipeline[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _send(fd: int, obj: Any) -> None:
    """Write one message: a kind byte, the length, the body. Batches and results are
    tuples of str, bytes and ints: ``marshal`` (the same Python on both ends: a fork,
    or ``sys.executable``), several times faster than pickle for them; an exception
    is pickled."""
    if isinstance(obj, BaseException):
        import pickle  # only for an exception (not on the add path)

        kind, body = b"p", pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        kind, body = b"m", marshal.dumps(obj)
    head = kind + len(body).to_bytes(8, "little")
    if _writev is not None:
        view = memoryview(body)
        sent = _writev(fd, [head, view])
        if sent >= len(head):
            view = view[sent - len(head):]
        else:
            _write_all(fd, head[sent:])
        while view:
            view = view[os.write(fd, view):]
    else:  # pragma: no cover - no writev (not POSIX)
        _write_all(fd, head + body)


def _receive(fd: int) -> Any:
    """Read one message written by :func:`_send` (RuntimeError: the pipe ended)."""
    head = _read_exact(fd, 9)
    body = _read_exact(fd, int.from_bytes(head[1:], "little"))
    if head[:1] == b"m":
        return marshal.loads(body)
    import pickle  # an exception the worker sent

    return pickle.loads(body)


_writev = getattr(os, "writev", None)


def _serve(fd_in: int, fd_out: int) -> None:
    """A worker's loop: read a batch, prepare it, write the result, until the input
    ends. An exception is sent back (the main process raises it)."""
    while True:
        try:
            rows, chunk_size, level, exclude = _receive(fd_in)
        except RuntimeError:  # the main process closed the pipe: done
            return
        try:
            result: Any = prepare_rows(rows, chunk_size, level, exclude)
        except Exception as exc:  # reported to the main process, which raises it
            result = exc
        _send(fd_out, result)


def worker_main() -> None:
    """The loop of a worker started as a fresh interpreter (``pipeline_worker``)."""
    _serve(sys.stdin.fileno(), sys.stdout.fileno())
