#!/usr/bin/env bash
# Install, start what the tests need, run the whole suite (unit, integration, slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start_services.sh
export FINSENT_TORCH_THREADS="${FINSENT_TORCH_THREADS:-2}"
.venv/bin/ruff check .
.venv/bin/mypy
# pytest exits 5 when no test ran: that is a failure here, as any other non-zero code.
.venv/bin/python -m pytest "$@"
