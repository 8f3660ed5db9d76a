#!/usr/bin/env bash
# Debian's stunnel4, for the secured-connection tests (tests/integration/test_tls_pipeline.py):
# it puts a TLS endpoint in front of the embedded broker, which speaks PLAINTEXT only. The
# test's own PostgreSQL (ssl=on) uses the server binaries already installed with Postgres
# (/usr/lib/postgresql/*/bin). Run by scripts/test.sh only: finsent itself needs neither. Exits 1
# when it cannot install stunnel4, so CI stops here instead of running a suite whose TLS test
# would fail later.
set -euo pipefail
if command -v stunnel4 >/dev/null || command -v stunnel >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
apt_log="$(mktemp -t finsent-apt-stunnel.XXXXXX.log)"
if $SUDO apt-get update -q >"$apt_log" 2>&1 \
  && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    stunnel4 >>"$apt_log" 2>&1; then
  echo "installed Debian's stunnel4 for the TLS tests ($(stunnel4 -version 2>&1 | head -1))"
  rm -f "$apt_log"
else
  echo "install_tls_tools.sh: could not install Debian's stunnel4 with apt-get (root or passwordless" \
    "sudo needed; the TLS test tests/integration/test_tls_pipeline.py needs it); see $apt_log" >&2
  exit 1
fi
