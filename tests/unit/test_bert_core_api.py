"""bert_core's public API: lazy (torch-free names stay torch-free), complete, and what the
services, dashboards, benchmarks and scripts import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bert_core
import bert_core.inference

ROOT = Path(__file__).resolve().parents[2]

# Module paths that callers outside bert_core may import: sub-packages with an API of their
# own, and the internals that benchmarks measure (private to bert_core otherwise).
ALLOWED_SUBMODULES = {
    "bert_core.encoders",
    "bert_core.inference",
    "bert_core.inference.linear_layers",  # benchmarks: Int8Linear, activation_levels
}


def test_torch_free_names_do_not_load_torch() -> None:
    code = (
        "import sys\n"
        "import bert_core.errors, bert_core.inference.cpu\n"
        "from bert_core import (CompileError, METRICS_FILE, Prediction, TOPIC_LABELS, cpu_features,\n"
        "    normalize_text, sha256_file, verify_model_dir)\n"
        "from bert_core.inference import cpu_has_bf16\n"
        "import services.cli.app, services.scorer.batch\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", [bert_core, bert_core.inference], ids=lambda p: p.__name__)
def test_every_exported_name_resolves(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert sorted(names) == sorted(package._EXPORTS)  # type: ignore[attr-defined]
    for name in names:
        assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        getattr(package, "nothing_here")


def test_the_inference_package_exports_through_bert_core() -> None:
    for name in bert_core.inference.__all__:
        assert getattr(bert_core, name) is getattr(bert_core.inference, name), name


def _bert_core_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bert_core."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("bert_core."))
    return found


def test_callers_outside_bert_core_use_its_public_api() -> None:
    stray = [
        f"{path.relative_to(ROOT)}: {module}"
        for folder in ("services", "dashboards", "benchmarks", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for module in _bert_core_imports(path)
        if module not in ALLOWED_SUBMODULES and not module.startswith("bert_core.encoders.")
    ]
    assert stray == []
