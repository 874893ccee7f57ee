#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv with the pinned packages and lockbox
# installed editable with its server extra (the packages lockbox and lockbox_server; the
# extra's packages are pinned in requirements/dev.lock). Only PyPI is needed.
# Prints one line saying what it does (or that there is nothing to do).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.lockbox-setup
# An editable install made by an older set-up: setuptools' import hook (a finder module
# that imports pathlib, urllib.parse and ipaddress at every interpreter start, ~5 ms).
old_finder=$(ls .venv/lib/python*/site-packages/__editable___lockbox_*_finder.py 2>/dev/null \
             || true)
if [ ! -x .venv/bin/python ]; then
  echo "==> set-up: creating .venv and installing the pinned packages (about 25 s on a fresh machine)"
  "$PY" -m venv .venv
elif [ ! -f "$stamp" ] || [ requirements/dev.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> set-up: updating .venv (the pinned packages or pyproject.toml changed; up to 25 s)"
elif [ -n "$old_finder" ]; then
  echo "==> set-up: reinstalling lockbox editable as plain path entries (a few seconds)"
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
# editable_mode=compat: a .pth file that puts pycore/ on sys.path, instead of an import
# hook that costs every lockbox process ~5 ms of start-up (its pathlib, urllib.parse,
# ipaddress). compat knows one source root only (package-dir ""): server/, where
# lockbox_server lives, gets a .pth line of its own.
"${pip[@]}" install --no-deps --no-build-isolation -e '.[server]' \
  --config-settings editable_mode=compat
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/server" > "$site/lockbox-server-src.pth"
.venv/bin/python -c 'import lockbox, lockbox_server' \
  || { echo "set-up: lockbox or lockbox_server does not import after the install" >&2; exit 1; }
touch "$stamp"
