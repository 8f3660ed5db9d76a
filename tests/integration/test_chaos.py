"""The chaos run of benchmarks/chaos.py, reduced for CI: 1,000 real headlines (1 % poison, one
bearish burst) through the embedded broker, PostgreSQL and `finsent worker` / `alerter` /
`dispatcher` subprocesses, while workers are scaled 1 → 2 → 3 → 1, SIGKILLed and SIGTERMed,
the database is cut for 10 s, the dispatcher is killed between a webhook send and its
record, the topic is replayed from offset 0 and the broker is restarted.

The same targets as the full run: nothing lost, no duplicated row, the DLQ holds exactly the
injected poison, one alert, one delivery (the re-send after the crash carries the same
Idempotency-Key), a SIGTERMed worker exits cleanly within 30 s, the replay changes nothing.
The run's own report is printed (pytest -s) and kept in the test's temp folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import chaos  # noqa: E402  (benchmarks/chaos.py: the run itself)
from chaos_design import make_design  # noqa: E402

ITEMS = 1_000


def test_chaos_run_loses_nothing_duplicates_nothing_and_alerts_once(
    fresh_postgres_url: str, saved_model_dir: Path, tmp_path: Path
) -> None:
    labeller = chaos.model_labeller(saved_model_dir, tmp_path / "labels.json")
    design = make_design(ITEMS, labeller, seed=0)
    assert design.expected_alerts == [("ticker", "CHAOS")]
    assert design.expected_notifications == ["open"]
    config = chaos.short_config(chaos.ChaosConfig(items=ITEMS, seed=0, delivery_timeout_s=1.0))

    report = chaos.run_chaos(
        config,
        model_dir=saved_model_dir,
        database_url=fresh_postgres_url,
        workdir=tmp_path / "run",
        design=design,
    )
    (tmp_path / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(
        json.dumps({k: report[k] for k in ("items", "dlq", "faults", "sigterm_exits")}, indent=1, default=str)
    )

    items, dlq = report["items"], report["dlq"]
    assert items["lost"] == 0 and items["stored"] == ITEMS, items
    assert all(t["duplicates"] == 0 for t in report["tables_final"].values()), report["tables_final"]
    assert dlq["distinct_poison"] == dlq["injected"] == 10, dlq
    assert not dlq["unexpected"] and not dlq["wrong_error_type"], dlq
    # The burst's alert is the one standing. A worker outage longer than the allowed lateness
    # (here: minutes of wall time are hours of event time) can make the alerter open an alert on
    # an incomplete history and supersede it when the late stories arrive: one that opened and
    # resolved in the past is not notified, one that was notified is withdrawn
    # (docs/reliability.md). Superseded ones are reported.
    standing = [(a["scope"], a["key"]) for a in report["alerts"] if a["status"] != "superseded"]
    assert standing == [("ticker", "CHAOS")], report["alerts"]
    delivered = [
        d
        for d in report["deliveries"]["rows"]
        if d["status"] == "delivered" and "|ticker|CHAOS|" in d["idempotency_key"]
    ]
    assert len(delivered) == 1, report["deliveries"]["rows"]
    assert report["deliveries"]["distinct_keys_received"] == 1
    actions = [r["action"] for r in report["deliveries"]["webhook_requests"] if r["action"] != "other"]
    requests = report["deliveries"]["webhook_requests"]
    assert actions[:3] == ["fail", "fail", "kill"] and "ok" in actions, requests
    terms = [e for e in report["sigterm_exits"] if e["was_ready"]]
    assert terms, report["sigterm_exits"]
    assert all(e["exit_code"] == 0 and e["exit_s"] < chaos.SIGTERM_LIMIT_S for e in terms), terms
    assert not any(report["replay"]["rows_changed"].values()) and report["replay"]["alerts_unchanged"]
    restart = report["broker_restart"]
    assert restart["recovered_s"] is not None and not any(restart["rows_changed"].values()), restart
    assert not report["unexpected_exits"], report["unexpected_exits"]
    assert all(f["recovered_s"] is not None for f in report["faults"] if f["target"] is not None), report[
        "faults"
    ]
    targets = chaos.judge(report)
    superseded = [a for a in report["alerts"] if a["status"] == "superseded"]
    if superseded:
        print(f"superseded alerts (withdrawn if they were notified): {superseded}")
        targets.pop("one_alert"), targets.pop("one_delivery")
    assert all(targets.values()), targets
