"""lockbox.drivers: ``resume``, the one step every streaming driver takes."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from lockbox.drivers import resume


def _flow(log: list[object]) -> Generator[str, object, str]:
    try:
        log.append((yield "first"))
    except ValueError as exc:  # a flow may handle a driver's error and go on
        log.append(f"handled {exc}")
    log.append((yield "second"))
    return "done"


def test_resume_sends_throws_and_ends() -> None:
    log: list[object] = []
    flow = _flow(log)
    assert next(flow) == "first"
    assert resume(flow, error=ValueError("boom")) == "second"
    assert resume(flow, b"blob") is None  # the flow returned: no next request
    assert log == ["handled boom", b"blob"]


def test_resume_passes_an_unhandled_error_on() -> None:
    flow = _flow([])
    next(flow)
    resume(flow, 1)
    with pytest.raises(KeyError):
        resume(flow, error=KeyError("not handled"))
    assert resume(_started(), None) == "again"


def _started() -> Generator[str, object, None]:
    gen = _again()
    next(gen)
    return gen


def _again() -> Generator[str, object, None]:
    yield "once"
    yield "again"
