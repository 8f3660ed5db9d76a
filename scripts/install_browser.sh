#!/usr/bin/env bash
# Debian's Chromium and a font, for the dashboard's browser test
# (tests/dashboards/test_dashboard_browser.py): Playwright's own browser download cannot work
# without internet, so the test drives /usr/bin/chromium. Run by scripts/test.sh only, never
# by setup.sh: finsent itself needs no browser. Exits 1 when it cannot install it, so CI stops
# here instead of running a suite whose browser test would fail later.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
apt_log="$(mktemp -t finsent-apt-chromium.XXXXXX.log)"
if $SUDO apt-get update -q >"$apt_log" 2>&1 \
  && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    chromium fonts-liberation >>"$apt_log" 2>&1; then
  echo "installed Debian's chromium for the browser test ($(/usr/bin/chromium --version 2>/dev/null))"
  rm -f "$apt_log"
else
  echo "install_browser.sh: could not install Debian's chromium with apt-get (root or passwordless" \
    "sudo needed; the browser test tests/dashboards/test_dashboard_browser.py needs /usr/bin/chromium);" \
    "see $apt_log" >&2
  exit 1
fi
