"""Crash-safety harness (issue 4 §4).

* ``child``: the writer process. From a workload name and a seed it performs a
  deterministic sequence of write sessions on a fresh archive, journals every
  durable commit (fsync'd), and dies at a chosen ``os.pwrite`` / ``os.fsync``
  call (SIGKILL, torn write, dropped write, power loss), or raises ENOSPC there.
* ``harness``: runs those children (through fork servers, in parallel), reopens
  each archive after the kill and checks it: it opens at the last durable
  commit (or the one whose slot write finished), verifies, holds exactly the
  committed state, and takes a new commit.

Shared by ``tests/test_crash.py`` (a few hundred points) and
``bench/bench_crash.py`` (thousands).
"""
