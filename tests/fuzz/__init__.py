"""Structure-aware fuzzing of every lockbox decoder (docs/FORMAT.md; issue #4).

Layout:

* ``strategies``: Hypothesis strategies for VALID structures built with the real
  encoders, a field tracer (which byte ranges of an encoding are which primitive
  field), and mutation strategies on top of both;
* ``targets``: one :class:`~fuzz.targets.Target` per decoder (how to encode,
  decode, compare and re-check it), shared by the tests and by
  ``bench/fuzz_atheris.py``;
* ``test_decoders``: round trips, mutations, truncations, splices and bounded
  allocation of each decoder;
* ``test_read_path``: Hypothesis-chosen mutations of real small archives, opened,
  listed, read and verified through the public API.

Settings: every test here is deterministic (``derandomize=True``, no example
database) with a modest example count so that the whole directory runs in well
under a minute. ``LOCKBOX_FUZZ_EXAMPLES=N`` raises every decoder test to ``N``
examples (the archive tests to ``N // 5``); ``LOCKBOX_FUZZ_RANDOM=1`` draws new
examples on every run instead (for long runs, see ``bench/fuzz_atheris.py``);
``LOCKBOX_FUZZ_DEADLINE_MS`` changes the per-example deadline (default 2000 ms).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["fuzz_settings", "SCALED"]

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.large_base_example]
SCALED = int(os.environ.get("LOCKBOX_FUZZ_EXAMPLES", "0") or 0)
_RANDOM = os.environ.get("LOCKBOX_FUZZ_RANDOM", "") not in ("", "0")

settings.register_profile(
    "lockbox-fuzz-ci", max_examples=100, deadline=2000, derandomize=True, database=None,
    suppress_health_check=_HEALTH, print_blob=True)


#: Time one example may take (LOCKBOX_FUZZ_DEADLINE_MS; default 2 s). A decoder example
#: takes well under 50 ms; the margin absorbs a loaded 2-core CI machine (an example that
#: overruns is re-run, and an overrun that does not repeat fails as "flaky").
DEADLINE_MS = int(os.environ.get("LOCKBOX_FUZZ_DEADLINE_MS", "0") or 0) or 2000


def fuzz_settings(examples: int, *, deadline_ms: int | None = None,
                  archive: bool = False) -> settings:
    """The CI profile with ``examples`` examples (scaled by LOCKBOX_FUZZ_EXAMPLES).

    The deadline bounds the time of one example: a decoder that hangs or goes
    quadratic on a hostile input fails the test instead of stalling CI.
    """
    if deadline_ms is None:
        deadline_ms = DEADLINE_MS
    n = examples
    if SCALED:
        n = max(examples, SCALED // 5 if archive else SCALED)
    return settings(settings.get_profile("lockbox-fuzz-ci"), max_examples=n,
                    deadline=deadline_ms, derandomize=not _RANDOM)
