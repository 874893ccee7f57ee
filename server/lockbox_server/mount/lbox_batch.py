"""Group commit for the writable ``.lbox`` mount: one writer, many requests.

The ``.lbox`` writer is single-threaded: a request that changes the archive takes the
*writer turn* (:meth:`GroupCommit.turn`), stages its changes, and hands back the turn.
Its answer waits until a commit holding its changes is durable (:meth:`Ticket.wait`).

Who commits: the request that hands back the turn commits everything staged when no
other request is queued for the turn; when one is, it leaves the commit to that one,
which stages its own changes and applies the same rule. So a lone request commits at
once (no timer, no added latency), and requests arriving while one is staging or
committing share the next commit (group commit: one pair of fsyncs for the whole
burst). Two bounds keep a steady stream from starving the oldest waiter: a batch is
committed once it holds ``max_batch`` requests or its oldest change is ``max_delay_s``
old. A request about to stage something long (a large PUT, a COPY that reads content)
calls :meth:`flush` first, so no waiting request is held behind its body.

A failed commit discards everything staged (the archive stays at its last commit) and
each request of the batch is answered with the error.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["GroupCommit", "Ticket", "CommitStats"]


class Ticket:
    """One request's staged changes, waiting for the commit that holds them."""

    def __init__(self) -> None:
        self.created_s = time.monotonic()
        self._done = threading.Event()
        self.error: BaseException | None = None

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._done.wait(timeout_s)


class CommitStats:
    """Counters: commits made, requests they held (``requests / commits`` is the
    batching factor), and the largest batch."""

    def __init__(self) -> None:
        self.commits = 0
        self.requests = 0
        self.largest_batch = 0
        self.failed = 0


class GroupCommit:
    """The writer turn and the batching rule (see the module docstring).

    ``commit()`` makes everything staged durable (raising on failure); ``abort()``
    discards what is staged. Both are called with the turn held."""

    def __init__(self, commit: Callable[[], None], abort: Callable[[], None], *,
                 max_batch: int = 64, max_delay_s: float = 0.05) -> None:
        self._commit = commit
        self._abort = abort
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._turn = threading.Lock()
        self._state = threading.Lock()
        self._queued = 0
        self._pending: list[Ticket] = []
        self.stats = CommitStats()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the writer turn; on leaving, commit or hand the batch on."""
        with self._state:
            self._queued += 1
        self._turn.acquire()
        with self._state:
            self._queued -= 1
        try:
            yield
        finally:
            try:
                if self._must_commit():
                    self._commit_pending()
            finally:
                self._turn.release()

    def add(self) -> Ticket:
        """Register the changes the caller (holding the turn) has staged."""
        ticket = Ticket()
        with self._state:
            self._pending.append(ticket)
        return ticket

    def flush(self) -> None:
        """Commit what is staged now (the caller holds the turn)."""
        if self._pending:
            self._commit_pending()

    def _must_commit(self) -> bool:
        with self._state:
            if not self._pending:
                return False
            return (self._queued == 0 or len(self._pending) >= self.max_batch
                    or time.monotonic() - self._pending[0].created_s >= self.max_delay_s)

    def _commit_pending(self) -> None:
        with self._state:
            batch, self._pending = self._pending, []
        error: BaseException | None = None
        try:
            self._commit()
        except BaseException as e:  # every request of the batch is answered with it
            error = e
            self.stats.failed += 1
            try:
                self._abort()
            except Exception:
                pass
        else:
            self.stats.commits += 1
            self.stats.requests += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for ticket in batch:
            ticket.finish(error)
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt, SystemExit: after every waiter is answered
