"""``python -m lockbox_server DIR [--host H] [--port P]``."""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app


def main() -> None:
    ap = argparse.ArgumentParser(prog="lockbox-server", description=__doc__)
    ap.add_argument("directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    print(f"serving {args.directory} at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(args.directory), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
