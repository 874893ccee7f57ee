"""Writing .lbox archives (local files, CPython)."""
