#!/usr/bin/env bash
# Runs every test: lint, then the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check pycore server tests bench
.venv/bin/pytest -q -p no:cacheprovider tests "$@"
