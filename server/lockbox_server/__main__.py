"""Command line: ``python -m lockbox_server DIR [options]`` (see ``--help``).

Serves the archives in DIR by HTTP Range (and the viewer from --site) until
interrupted. It never decrypts anything.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from .runner import serve

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m lockbox_server",
        description="Serve lockbox archives by HTTP Range (it never decrypts).",
    )
    ap.add_argument("directory", help="directory whose regular files are served as archives")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free)")
    ap.add_argument("--site", metavar="DIR", default=None,
                    help="static viewer site served at / (e.g. dist/site)")
    ap.add_argument("--allow-origin", metavar="ORIGIN", action="append", default=[],
                    help="origin allowed to fetch archives cross-origin (repeatable; '*' = any)")
    ap.add_argument("--isolate", action="store_true",
                    help="send COOP same-origin + COEP require-corp with the site")
    ap.add_argument("--log-level", default="warning",
                    choices=["critical", "error", "warning", "info", "debug", "trace"])
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def ready(url: str) -> None:
        print(f"serving {args.directory} at {url} (Ctrl-C to stop)", flush=True)

    try:
        serve(args.directory, args.host, args.port, site_dir=args.site,
              allowed_origins=args.allow_origin, ready=ready, isolate=args.isolate,
              log_level=args.log_level)
    except (FileNotFoundError, NotADirectoryError) as exc:
        print(f"lockbox_server: not a directory: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"lockbox_server: port {args.port} is busy: use --port N", file=sys.stderr)
        else:
            print(f"lockbox_server: cannot listen on {args.host}:{args.port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
