"""Command line: ``python -m lockbox_server ARGS`` is ``lockbox serve ARGS``.

There is one server command line, ``lockbox serve`` (lockbox.cli owns it): the same
options, banner, one-line errors and exit codes either way (``lockbox serve --help``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lockbox serve`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    from lockbox.cli import main as lockbox_main

    return lockbox_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
