"""The layers hold: `lint-imports` keeps every contract of [tool.importlinter] in pyproject.toml
(bert_core imports no service, pure modules do no I/O, the dashboard's pages reach the database
only through dashboards.data, services that do not run the model import no torch).

scripts/test.sh runs the same command; this test makes a plain pytest run check it too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_every_import_contract_is_kept() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"
    summary = re.search(r"Contracts: (\d+) kept, (\d+) broken", result.stdout)
    assert summary is not None, result.stdout
    # A configuration that lost its contracts would also exit 0: the four layers are there.
    assert int(summary[1]) >= 4 and summary[2] == "0", result.stdout
