#!/usr/bin/env bash
# Create .venv and install finsent with the tested versions (constraints.txt): needs only
# Python (3.11 or 3.12, with venv) and pip. torch goes first and pinned, so no requirement can
# pull a multi-GB CUDA build. The browser the test suite needs is installed by scripts/test.sh.
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
