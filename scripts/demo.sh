#!/usr/bin/env bash
# The main job: set up, build the wheel, make a demo archive and serve it by
# HTTP Range on 127.0.0.1, printing its URL. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pip wheel -q --disable-pip-version-check --no-deps -w dist/ . >/dev/null
PORT=${PORT:-8000}
mkdir -p demo
rm -f demo/demo.lbox
export LOCKBOX_PASSWORD=${LOCKBOX_PASSWORD:-demo}
.venv/bin/lockbox create demo/demo.lbox -q
.venv/bin/lockbox add demo/demo.lbox README.md docs pycore/lockbox/format -q
printf 'hello from lockbox\n' | .venv/bin/lockbox env set demo/demo.lbox GREETING
URL="http://127.0.0.1:${PORT}/archives/demo.lbox"
cat <<TXT

Demo archive: demo/demo.lbox (password: ${LOCKBOX_PASSWORD})
Served at:    ${URL}
Index:        http://127.0.0.1:${PORT}/
Try:          LOCKBOX_PASSWORD=${LOCKBOX_PASSWORD} .venv/bin/lockbox ls -R --long ${URL}
              LOCKBOX_PASSWORD=${LOCKBOX_PASSWORD} .venv/bin/lockbox cat ${URL} README.md

TXT
exec .venv/bin/lockbox serve demo --host 127.0.0.1 --port "$PORT"
