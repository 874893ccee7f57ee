"""Names of identities and recipients in the local vault."""

from __future__ import annotations

import re

from ..errors import UsageError

__all__ = ["NAME_PATTERN", "check_name"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""1 to 64 characters: letters, digits, ``.``, ``_``, ``@``, ``-``; not starting with a
punctuation mark (so a name is never an option, a hidden file name or ``..``)."""


def check_name(name: object, what: str = "name") -> str:
    """``name`` when it matches :data:`NAME_PATTERN`, else UsageError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = name if isinstance(name, str) else type(name).__name__
        raise UsageError(f"bad {what} {shown[:80]!r}: use 1 to 64 letters, digits, '.', '_', "
                         "'@' or '-', starting with a letter or digit")
    return name
