"""``python -m lockbox`` runs the ``lockbox`` command (the same as the console script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
