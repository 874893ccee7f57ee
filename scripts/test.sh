#!/usr/bin/env bash
# Runs every test: lint, the whole pytest suite, then the browser end-to-end suite
# (tests-e2e: Playwright driving Debian's Chromium). Both suites always run; the exit
# status is non-zero if either fails (or lint fails). One "==> phase" line per step,
# and a summary with the time each took at the end. Extra arguments go to the first
# pytest run (tests/).
set -euo pipefail
cd "$(dirname "$0")/.."

took() {  # seconds since $1, for people
  local s=$((SECONDS - $1))
  if [ "$s" -ge 60 ]; then printf '%d min %02d s' $((s / 60)) $((s % 60)); else printf '%d s' "$s"; fi
}
summary=()
result() {  # result NAME STATUS START: one entry of the final summary
  if [ "$2" = 0 ]; then summary+=("$1 passed ($(took "$3"))")
  else summary+=("$1 FAILED, exit $2 ($(took "$3"))"); fi
}

bash scripts/setup.sh
# Debian packages the tests drive: chromium (Playwright cannot download its own browser
# here: the e2e suite drives /usr/bin/chromium) and the WebDAV clients of the mount tests
# (litmus, rclone, cadaver). Installed with apt-get when missing and when we may.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
for tool in litmus rclone cadaver; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> install Debian's ${missing[*]} for the tests (apt-get, a few minutes the first time)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}"
fi

echo "==> lint (ruff) and types (mypy: pycore/lockbox, server/lockbox_server)"
.venv/bin/ruff check pycore server tests tests-e2e bench
.venv/bin/mypy

status=0
echo "==> build the viewer (npm ci + esbuild: about 5 s, plus 15 MB of npm packages the first time; both suites use it)"
start=$SECONDS
build=0
.venv/bin/python build.py --out dist/site -q || build=$?
result "viewer build" "$build" "$start"
[ "$build" = 0 ] || status=$build  # the suites still run (and report it their own way)

echo "==> core tests (pytest tests/, includes the Pyodide suites)"
start=$SECONDS
core=0
.venv/bin/pytest -q -p no:cacheprovider tests "$@" || core=$?
result "core tests" "$core" "$start"
[ "$core" = 0 ] || status=$core

echo "==> browser tests (tests-e2e: Playwright + Chromium)"
start=$SECONDS
e2e=0
.venv/bin/pytest -q -p no:cacheprovider tests-e2e || e2e=$?
result "browser tests" "$e2e" "$start"
[ "$e2e" = 0 ] || status=$e2e

summary_line=$(printf '%s; ' "${summary[@]}")
echo "==> ${summary_line%; } (total $(took 0))"
exit "$status"
