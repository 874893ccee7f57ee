"""``python -m lockbox`` runs the ``lockbox`` command (the same as the console script)."""

from .cli import run

if __name__ == "__main__":
    run()
