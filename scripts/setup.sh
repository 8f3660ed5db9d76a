#!/usr/bin/env bash
# Create .venv and install finsent with the tested versions (constraints.txt): needs only
# Python (3.11 or 3.12, with venv) and pip; PYTHON=python3.12 picks the interpreter. torch goes
# first, pinned and CPU-only, so no requirement can pull PyPI's multi-GB CUDA build. The browser
# the test suite needs is installed by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX="${FINSENT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

version() {  # "3.12" for a Python that runs, nothing otherwise
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}
supported() {  # is $1 a Python 3.11 or 3.12?
  case "$(version "$1")" in 3.11 | 3.12) return 0 ;; *) return 1 ;; esac
}
if ! supported "$PYTHON"; then
  found="$(version "$PYTHON")"
  echo "setup: finsent needs Python 3.11 or 3.12, and ${PYTHON} ${found:+is $found}${found:-does not run}; name another: PYTHON=python3.12 bash scripts/setup.sh" >&2
  exit 1
fi
if [ -x .venv/bin/python ] && ! supported .venv/bin/python; then
  echo "setup: .venv holds Python $(version .venv/bin/python), which finsent does not support; recreating it with $PYTHON"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# A CPU build already reachable (a wheelhouse, a mirror, pip's cache) first; else PyTorch's CPU
# index. PyPI itself hosts no "+cpu" build, so the first try fails fast there.
if ! .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}+cpu" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}" --index-url "$TORCH_CPU_INDEX"
fi
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
echo "finsent installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
