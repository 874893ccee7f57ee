#!/usr/bin/env bash
# Runs every test: lint, the whole pytest suite, then the browser end-to-end suite
# (tests-e2e: Playwright driving Debian's Chromium). Both suites must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Playwright cannot download its own browser here: the e2e suite drives /usr/bin/chromium.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium
fi
.venv/bin/ruff check pycore server tests tests-e2e bench
status=0
.venv/bin/pytest -q -p no:cacheprovider tests "$@" || status=$?
.venv/bin/pytest -q -p no:cacheprovider tests-e2e || status=$?
exit "$status"
