"""Every unit test file names the module it tests, so a change to a module has an obvious test
file (the rule is tests/README.md's "Naming").

A file is `test_<key>[_<aspect>].py`, where <key> is the tested module's import path with dots
as underscores and the leading `services.` or `bert_core.` left out (`services/alerting/detector.py`
→ `test_alerting_detector.py`, `bert_core/inference/predictor.py` → `test_inference_predictor.py`,
`dashboards/movers.py` → `test_dashboards_movers.py`). A package's key names the package (its
public API, or several of its modules at once). `test_repo_*` files check the repository as a
whole (docs, deploy files, import rules) rather than one module.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = Path(__file__).resolve().parent
# Roots whose name is left out of the key (the bulk of the code), and roots that keep it.
DROPPED_ROOTS = ("services", "bert_core")
KEPT_ROOTS = ("dashboards",)
REPOSITORY_PREFIX = "repo"


def module_keys() -> dict[str, Path]:
    """Each module's and package's key, mapped to its file; two modules with one key fail."""
    keys: dict[str, Path] = {}
    for root in DROPPED_ROOTS + KEPT_ROOTS:
        keys[root] = ROOT / root / "__init__.py"  # `test_bert_core_api.py`: the package's API
        for path in sorted((ROOT / root).rglob("*.py")):
            if "migrations" in path.parts or path.name == "__main__.py":
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if root in DROPPED_ROOTS:
                parts = parts[1:]
            if parts == [] or parts == [root]:
                continue
            key = "_".join(parts)
            assert key not in keys, f"{path} and {keys[key]} share the test key {key!r}: rename one"
            keys[key] = path
    return keys


def module_named_by(stem: str, keys: dict[str, Path]) -> Path | None:
    """The module a test file's stem (without `test_`) names: its longest key prefix."""
    matches = [key for key in keys if stem == key or stem.startswith(key + "_")]
    return keys[max(matches, key=len)] if matches else None


def test_no_two_modules_share_a_key() -> None:
    """`module_keys` refuses a clash (e.g. a new services/metrics.py next to bert_core/metrics.py)."""
    keys = module_keys()
    assert keys["alerting_detector"] == ROOT / "services/alerting/detector.py"
    assert keys["metrics"] == ROOT / "bert_core/metrics.py"


def test_every_unit_test_file_names_a_module_or_the_repository() -> None:
    keys = module_keys()
    strays = []
    for path in sorted(UNIT.glob("test_*.py")):
        stem = path.stem.removeprefix("test_")
        if stem == REPOSITORY_PREFIX or stem.startswith(REPOSITORY_PREFIX + "_"):
            continue
        if module_named_by(stem, keys) is None:
            strays.append(path.name)
    assert not strays, (
        f"unit test files that name no module (tests/README.md, Naming): {strays}; name each "
        "test_<module key>[_<aspect>].py, or test_repo_<topic>.py for a whole-repository check"
    )


def test_the_rule_resolves_the_examples_of_the_readme() -> None:
    keys = module_keys()
    assert module_named_by("alerting_detector_surge", keys) == ROOT / "services/alerting/detector.py"
    assert module_named_by("inference_predictor", keys) == ROOT / "bert_core/inference/predictor.py"
    assert module_named_by("dashboards_movers", keys) == ROOT / "dashboards/movers.py"
    assert module_named_by("encoder_choice", keys) == ROOT / "bert_core/encoder.py"
    assert module_named_by("encoders_install", keys) == ROOT / "bert_core/encoders/__init__.py"
    assert module_named_by("alerts_detector", keys) is None  # the package is services.alerting


def test_the_end_to_end_group_names_test_modules_that_exist() -> None:
    """A renamed end-to-end module would leave the group silently and run beside another one."""
    from tests.integration.conftest import END_TO_END_MODULES

    integration = ROOT / "tests" / "integration"
    assert END_TO_END_MODULES, "the end-to-end group is empty"
    missing = sorted(name for name in END_TO_END_MODULES if not (integration / name).is_file())
    assert not missing, f"END_TO_END_MODULES names no such file in tests/integration: {missing}"
