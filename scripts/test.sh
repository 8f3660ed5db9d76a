#!/usr/bin/env bash
# Install, start what the tests need, run the whole suite (unit, integration, slow).
# Beyond setup.sh, the suite needs Debian's Chromium for the dashboard's browser test
# (install_browser.sh, apt as root or passwordless sudo): a machine that cannot have it
# fails here, loudly, rather than skipping that test. The TLS test needs Debian's stunnel4
# (install_tls_tools.sh, likewise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh
bash scripts/install_tls_tools.sh
bash scripts/start_services.sh
export FINSENT_TORCH_THREADS="${FINSENT_TORCH_THREADS:-2}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-logo  # the layers: [tool.importlinter] in pyproject.toml
# Two pytest-xdist workers: the in-process tests use one torch thread and the end-to-end runs
# mostly wait on their services, so one process alone leaves a core idle. The end-to-end runs
# share one worker (tests/integration/conftest.py); FINSENT_TEST_WORKERS=0 runs in one process.
# pytest exits 5 when no test ran: that is a failure here, as any other non-zero code.
.venv/bin/python -m pytest -n "${FINSENT_TEST_WORKERS:-2}" --dist loadgroup "$@"
