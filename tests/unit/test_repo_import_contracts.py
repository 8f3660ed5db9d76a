"""The layers hold: `lint-imports` keeps every contract of [tool.importlinter] in pyproject.toml
(bert_core imports no service, services and the dashboard use bert_core's public API, pure
modules do no I/O, the dashboard's pages reach the database only through dashboards.data,
services that do not run the model import no torch).

scripts/test.sh runs the same command; this test makes a plain pytest run check it too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
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
    # A configuration that lost its contracts would also exit 0: the five layers are there.
    assert int(summary[1]) >= 5 and summary[2] == "0", result.stdout
    assert "Services and the dashboard use bert_core's public API, not its modules KEPT" in result.stdout


# A miniature of the three packages: which of these imports does the public-API contract refuse?
FAKE_TREE = {
    "bert_core/__init__.py": "from bert_core import lazy\n",  # the package reaches its own modules
    "bert_core/lazy.py": "",
    "bert_core/artifacts.py": "",
    "bert_core/encoders/__init__.py": "from bert_core.encoders import catalog\n",
    "bert_core/encoders/catalog.py": "",
    "bert_core/inference/__init__.py": "",
    "bert_core/inference/predictor.py": "",
    "services/__init__.py": "",
    "services/fine.py": (
        "import bert_core\n"
        "from bert_core import load_model_dir\n"
        "from bert_core.encoders import find_spec\n"
        "def later():\n    from bert_core import Predictor\n"
    ),
    "services/private_module.py": "def later():\n    from bert_core.artifacts import load_model_dir\n",
    "services/encoders_inside.py": "from bert_core.encoders.catalog import CATALOG\n",
    "services/inference_module.py": "import bert_core.inference.predictor\n",
    "dashboards/__init__.py": "",
    "dashboards/fine.py": "from bert_core import DEFAULT_LABELS\nfrom bert_core.encoders import statuses\n",
    "dashboards/private_module.py": "from bert_core import lazy\n",
}


def test_the_public_api_contract_refuses_bert_core_modules_and_allows_the_api(tmp_path: Path) -> None:
    """The contract as pyproject.toml states it, run on FAKE_TREE: every import of a module
    of bert_core is a violation (inside a function too), `bert_core` and `bert_core.encoders`
    as packages are not."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["id"] == "bert-core-public-api"]
    for name, text in FAKE_TREE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    lines = [
        "[importlinter]",
        "root_packages =\n    bert_core\n    services\n    dashboards",
        "[importlinter:contract:public-api]",
    ]
    for key, value in contract.items():
        if key != "id":
            shown = "\n    ".join(["", *value]) if isinstance(value, list) else str(value)
            lines.append(f"{key} = {shown}")
    (tmp_path / "contracts.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", "--config", "contracts.ini"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},  # the fake packages, not the real ones
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    violations = set(re.findall(r"^-\s+(\S+ -> \S+) \(l\.\d+\)", result.stdout, re.M))
    assert violations == {
        "services.private_module -> bert_core.artifacts",
        "services.encoders_inside -> bert_core.encoders.catalog",
        "services.inference_module -> bert_core.inference.predictor",
        "dashboards.private_module -> bert_core.lazy",
    }, result.stdout
