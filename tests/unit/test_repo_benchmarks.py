"""benchmarks/results keeps one current file per benchmark, with the machine inside, and a
rerun replaces its own result (history is in git): the rule of benchmarks/README.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))
import result_file  # noqa: E402  (benchmarks/result_file.py)

# Result files named otherwise than their script: alert_calibration.py --syndicate.
VARIANT_FILES = {"alert_stories": "alert_calibration"}
# Files in results/ that are no script's timing (benchmarks/README.md says why each is there).
NOT_TIMINGS = {"seed_sentiment_predictions.csv", "training_runs.md"}


def _machines(result: dict[str, object]) -> list[object]:
    """The machine blocks of a result: top level, per entry, or (dashboard_queries) in `env`."""
    if "entries" in result:
        entries = result["entries"]
        assert isinstance(entries, dict) and entries
        return [entry.get("machine") for entry in entries.values()]
    env = result.get("env")
    return [result.get("machine") or (env.get("machine") if isinstance(env, dict) else None)]


def test_every_result_file_belongs_to_one_benchmark_script() -> None:
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")}
    strays = []
    for path in sorted(RESULTS.iterdir()):
        if path.name in NOT_TIMINGS:
            continue
        owner = VARIANT_FILES.get(path.stem, path.stem)
        json_twin = path.with_suffix(".json")
        if owner not in scripts or path.suffix not in {".json", ".md"} or not json_twin.exists():
            strays.append(path.name)
    assert not strays, f"not one current file per benchmark (named by its script): {strays}"


def test_every_result_records_its_machine() -> None:
    missing = []
    for path in sorted(RESULTS.glob("*.json")):
        for machine in _machines(json.loads(path.read_text(encoding="utf-8"))):
            if not isinstance(machine, dict) or not machine.get("command"):
                missing.append(path.name)
    assert not missing, f"results without a machine block naming the command: {missing}"


def test_a_rerun_replaces_its_own_entry_and_keeps_the_other_variants(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result_file.write_entry("bench", "sqlite", {"ms": 1.0}, result_file.machine(), path=out)
    result_file.write_entry("bench", "postgresql", {"ms": 2.0}, result_file.machine(), path=out)
    entries = result_file.write_entry("bench", "sqlite", {"ms": 3.0}, result_file.machine(), path=out)
    written = json.loads(out.read_text())
    assert written["entries"] == entries
    assert {name: e["ms"] for name, e in entries.items()} == {"sqlite": 3.0, "postgresql": 2.0}
    assert all(e["machine"]["cpu_count"] and "loadavg_end" in e["machine"] for e in entries.values())


def test_write_result_replaces_the_file_with_the_machine_inside(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result_file.write_result("bench", {"runs": [1, 2]}, result_file.machine(), path=out)
    result_file.write_result("bench", {"runs": [3]}, result_file.machine(), path=out)
    written = json.loads(out.read_text())
    assert written["benchmark"] == "bench"
    assert written["runs"] == [3]
    assert written["machine"]["command"].startswith("python ")
