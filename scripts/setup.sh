#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv with the pinned packages and
# lockbox (+ lockbox_server) installed editable. Only PyPI is needed.
# Prints one line saying what it does (or that there is nothing to do).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.lockbox-setup
if [ ! -x .venv/bin/python ]; then
  echo "==> set-up: creating .venv and installing the pinned packages (about 25 s on a fresh machine)"
  "$PY" -m venv .venv
elif [ ! -f "$stamp" ] || [ requirements/dev.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
     || [ server/pyproject.toml -nt "$stamp" ]; then
  echo "==> set-up: updating .venv (the pinned packages or pyproject.toml changed; up to 25 s)"
else
  echo "==> set-up: .venv is up to date"
  exit 0
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements/dev.lock
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e . -e server/
touch "$stamp"
