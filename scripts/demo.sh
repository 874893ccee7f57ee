#!/usr/bin/env bash
# The main job: set up, build the viewer site (build.py), make a demo archive and serve
# both by HTTP Range on 127.0.0.1, printing the viewer's URL. Ctrl-C stops the server.
# One "==> phase" line per step (a cold first run takes about 30 s here: set-up 22 s, viewer build 4 s).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> build the viewer (npm ci + esbuild: about 5 s, plus 15 MB of npm packages the first time)"
.venv/bin/python build.py --out dist/site -q
PORT=${PORT:-8000}
echo "==> make the demo archive (demo/demo.lbox)"
mkdir -p demo
rm -f demo/demo.lbox
export LOCKBOX_PASSWORD=${LOCKBOX_PASSWORD:-demo}
.venv/bin/lockbox create demo/demo.lbox -q
.venv/bin/lockbox add demo/demo.lbox README.md docs webapp/static pycore/lockbox/formats -q
printf 'hello from lockbox\n' | .venv/bin/lockbox env set demo/demo.lbox GREETING
BASE="http://127.0.0.1:${PORT}"
URL="${BASE}/archives/demo.lbox"
ENC_URL=$(.venv/bin/python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$URL")
echo "==> serve (Ctrl-C to stop)"
cat <<TXT

Viewer:       ${BASE}/#url=${ENC_URL}&path=README.md
              (password: ${LOCKBOX_PASSWORD}; decrypted in the browser, nothing secret is sent)
Archive:      demo/demo.lbox, served at ${URL}
Command line: LOCKBOX_PASSWORD=${LOCKBOX_PASSWORD} .venv/bin/lockbox ls -R --long ${URL}
              LOCKBOX_PASSWORD=${LOCKBOX_PASSWORD} .venv/bin/lockbox cat ${URL} README.md

TXT
exec .venv/bin/lockbox serve demo --host 127.0.0.1 --port "$PORT" --site dist/site
