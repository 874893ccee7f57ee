#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv with the pinned packages and
# lockbox (+ lockbox_server) installed editable. Only PyPI is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lockbox-setup
if [ ! -f "$stamp" ] || [ requirements/dev.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || [ server/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements/dev.lock
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . -e server/
  touch "$stamp"
fi
