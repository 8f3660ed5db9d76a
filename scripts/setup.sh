#!/usr/bin/env bash
# Create .venv and install finsent with the tested versions (constraints.txt).
# torch goes first and pinned, so no requirement can pull a multi-GB CUDA build.
# Then Debian's Chromium for the dashboard's browser test: Playwright's own browser download
# cannot work without internet, so the test drives /usr/bin/chromium (and fails without it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
echo "finsent installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
  apt_log="$(mktemp -t finsent-apt-chromium.XXXXXX.log)"
  if $SUDO apt-get update -q >"$apt_log" 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
      chromium fonts-liberation >>"$apt_log" 2>&1; then
    echo "installed Debian's chromium for the browser test ($(/usr/bin/chromium --version 2>/dev/null))"
    rm -f "$apt_log"
  else
    echo "setup.sh: could not install Debian's chromium with apt-get (needed by tests/dashboards/test_dashboard_browser.py); see $apt_log" >&2
    exit 1
  fi
fi
