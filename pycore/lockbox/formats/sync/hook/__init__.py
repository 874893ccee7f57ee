"""The .sync update hook on CPython: a sandboxed ``sync.wasm`` run (wasmtime).

* :mod:`.hosts` — allow-list patterns on label boundaries (pure; imported eagerly).
* :mod:`.runner` — :func:`run_hook`, the ABI, :class:`HookLimits`, :class:`HookResult`,
  :class:`HookError` (needs ``wasmtime``: imported on first use, so this package
  imports where wasmtime is absent, e.g. Pyodide).
* :mod:`.update` — :func:`update_sync_file`: run a file's hook as its owner and swap
  the payload in atomically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hosts import host_allowed, intersect_patterns, invalid_patterns, normalize_host

if TYPE_CHECKING:
    from .runner import (
        BytesPayload,
        FilePayload,
        HookError,
        HookLimits,
        HookRequest,
        HookResult,
        HookTimeoutError,
        PayloadSource,
        run_hook,
    )
    from .update import UpdateReport, update_sync_file

__all__ = [
    "host_allowed",
    "intersect_patterns",
    "invalid_patterns",
    "normalize_host",
    "run_hook",
    "HookLimits",
    "HookResult",
    "HookRequest",
    "HookError",
    "HookTimeoutError",
    "PayloadSource",
    "BytesPayload",
    "FilePayload",
    "update_sync_file",
    "UpdateReport",
]

_RUNNER = {
    "run_hook", "HookLimits", "HookResult", "HookRequest", "HookError", "HookTimeoutError",
    "PayloadSource", "BytesPayload", "FilePayload",
}
_UPDATE = {"update_sync_file", "UpdateReport"}


def __getattr__(name: str) -> Any:
    """Import the runner (and wasmtime) or the updater on first use."""
    if name in _RUNNER:
        from . import runner

        return getattr(runner, name)
    if name in _UPDATE:
        from . import update

        return getattr(update, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
