#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv with the pinned packages and lockbox
# installed editable with its server extra (the packages lockbox and lockbox_server; the
# extra's packages are pinned in requirements/dev.lock). Only PyPI is needed.
# Prints one line saying what it does (or that there is nothing to do).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.lockbox-setup
if [ ! -x .venv/bin/python ]; then
  echo "==> set-up: creating .venv and installing the pinned packages (about 25 s on a fresh machine)"
  "$PY" -m venv .venv
elif [ ! -f "$stamp" ] || [ requirements/dev.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> set-up: updating .venv (the pinned packages or pyproject.toml changed; up to 25 s)"
else
  echo "==> set-up: .venv is up to date"
  exit 0
fi
pip=(.venv/bin/pip --disable-pip-version-check -q)
"${pip[@]}" install -r requirements/dev.lock
# lockbox_server was its own distribution (server/pyproject.toml) before it became
# lockbox's [server] extra: drop that old editable install so one package provides it.
if [ -n "$(.venv/bin/python -c 'import importlib.metadata as m
try: print(m.version("lockbox-server"))
except m.PackageNotFoundError: pass')" ]; then
  "${pip[@]}" uninstall -y lockbox-server
fi
# --no-build-isolation: setuptools and wheel are pinned in dev.lock (no download, ~1 s).
"${pip[@]}" install --no-deps --no-build-isolation -e '.[server]'
touch "$stamp"
