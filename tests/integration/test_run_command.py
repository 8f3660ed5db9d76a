"""`finsent run --demo --exit-when-done` on a fresh home, as a user runs it: no broker or
database configured (so the embedded broker and SQLite), no model (so it bootstraps one from
the seed data, here the tiny BERT and the small CSVs), then the demo feed through the real
scorer worker into SQLite, with the alerter and the dispatcher running beside it. A second
run reuses the model and stores nothing twice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboards.data.users import all_users
from dashboards.users_file import UserEntry, authenticate
from services.storage import (
    AlertRow,
    DeliveryRow,
    ModelVersionRow,
    SubscriptionRow,
    count_items,
    count_predictions,
    make_engine,
)

from .pipeline import run_env

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_ITEMS = 40
RUN_TIMEOUT_S = 300


def run_finsent(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def sqlite_counts(db: Path) -> tuple[int, int]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return count_items(session), count_predictions(session)
    finally:
        engine.dispose()


def stored_users(db: Path) -> dict[str, UserEntry]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return all_users(session)
    finally:
        engine.dispose()


def registry_statuses(db: Path) -> dict[str, str]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return dict(
                session.execute(select(ModelVersionRow.version, ModelVersionRow.status)).tuples().all()
            )
    finally:
        engine.dispose()


def test_run_demo_bootstraps_a_model_and_scores_the_feed_into_sqlite(
    tiny_bert_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = run_env(
        home,
        FINSENT_BASE_MODEL=str(tiny_bert_dir),
        FINSENT_SENTIMENT_DATA=str(sentiment_csv),
        FINSENT_TOPIC_DATA=str(topic_csv),
        FINSENT_BOOTSTRAP_MINUTES="0.5",
        FINSENT_BOOTSTRAP_EPOCHS="1",
        # A half-minute bootstrap of the tiny BERT labels at random: whether its demo alert
        # appears would be chance. No detection can reach this floor, so the run must end the
        # documented way for a demo whose alert did not appear (the other test shows one that does).
        FINSENT_ALERT_MIN_BEARISH="1000",
    )
    args = ("run", "--demo", "--demo-items", str(DEMO_ITEMS), "--demo-rate", "100", "--exit-when-done")

    first = run_finsent(env, *args)
    output = first.stdout + first.stderr
    assert first.returncode == 1, output[-4000:]
    assert "training one from the seed data" in output
    assert (home / "models" / "bootstrap" / "manifest.json").is_file()
    assert re.search(rf"^demo +{DEMO_ITEMS} items scored and stored", first.stdout, re.M), output[-4000:]
    assert "and log in as demo / " in first.stdout  # the dashboard hint all the same
    last_line = first.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        "finsent: error: the demo's alert did not appear: the alerter judged the burst"
    ), first.stderr[-4000:]
    scored_lines = [
        line for line in first.stdout.splitlines() if re.match(r"^(bearish|bullish|neutral) ", line)
    ]
    assert len(scored_lines) == DEMO_ITEMS, first.stdout[-4000:]
    assert sqlite_counts(home / "finsent.db") == (DEMO_ITEMS, DEMO_ITEMS)
    assert "embedded broker at 127.0.0.1:" in output
    assert "(first item scored" in output
    start_lines = {
        "worker": None,
        "alerter": "alerting on news.scored",
        "dispatcher": "dispatching alert",
        "scheduler": "retraining scheduler on",
    }
    for name, start_line in start_lines.items():
        log = home / "logs" / f"{name}.log"
        assert re.search(rf"^{name} +pid \d+, log {re.escape(str(log))}; metrics http://", first.stdout, re.M)
        text = log.read_text(encoding="utf-8")  # exists: the service logged there
        assert start_line is None or start_line in text, f"{log}:\n{text[-4000:]}"
    assert env["FINSENT_ALERTER_METRICS_PORT"] in first.stdout
    assert env["FINSENT_DISPATCHER_METRICS_PORT"] in first.stdout
    assert "exited with code" not in output and "Traceback" not in output, output[-4000:]
    # The bootstrap model was adopted as the registry's champion, and the worker served it.
    version = json.loads((home / "models" / "bootstrap" / "manifest.json").read_text())["version"]
    assert registry_statuses(home / "finsent.db") == {version: "champion"}
    assert f"with model {version}" in (home / "logs" / "worker.log").read_text(encoding="utf-8")

    second = run_finsent(env, *args)
    output = second.stdout + second.stderr
    assert second.returncode == 1, output[-4000:]
    assert "finsent: error: the demo's alert did not appear" in second.stderr
    assert "training one from the seed data" not in output  # the bootstrap model is reused
    assert registry_statuses(home / "finsent.db") == {version: "champion"}
    assert sqlite_counts(home / "finsent.db") == (DEMO_ITEMS, DEMO_ITEMS)  # same stories, stored once


def demo_env(home: Path, sentiment_csv: Path) -> dict[str, str]:
    """A fresh home with the session's fine-tuned tiny model serving: it learned the keyword
    data, so it labels the demo's bearish burst bearish and the calm history not."""
    return run_env(
        home,
        FINSENT_SENTIMENT_DATA=str(sentiment_csv),
        # quiet partitions stop holding the watermark back sooner (the demo's last stories
        # land in some partitions only); the idle tick comes every second
        FINSENT_ALERTER_PARTITION_IDLE_SECONDS="5",
        FINSENT_ALERTER_TICK_SECONDS="1",
    )


def demo_outcome(db: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(alerts as (alert_key, scope, status), deliveries to the demo subscription as
    (idempotency key, status))."""
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            alerts = (
                session.execute(
                    select(AlertRow.alert_key, AlertRow.scope, AlertRow.status).order_by(AlertRow.alert_key)
                )
                .tuples()
                .all()
            )
            deliveries = (
                session.execute(
                    select(DeliveryRow.idempotency_key, DeliveryRow.status)
                    .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
                    .where(SubscriptionRow.name == "finsent-demo")
                    .order_by(DeliveryRow.idempotency_key)
                )
                .tuples()
                .all()
            )
            return list(alerts), list(deliveries)
    finally:
        engine.dispose()


def test_run_demo_raises_the_demo_alert_and_delivers_it_and_a_rerun_raises_nothing_new(
    saved_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = demo_env(home, sentiment_csv)
    items = 60
    args = (
        "run", "--demo", "--model", str(saved_model_dir), "--demo-items", str(items),
        "--demo-rate", "50", "--exit-when-done",
    )  # fmt: skip

    started = time.monotonic()
    first = run_finsent(env, *args)
    took = time.monotonic() - started
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert took < 150, f"the demo took {took:.0f} s"
    # The feed: calm history by event time, then a burst of bearish headlines (the keyword
    # data names no ticker often enough, so the burst is market-wide).
    assert re.search(
        r"^demo +replaying 60 real headlines .* a burst of 19 bearish ones about the market",
        first.stdout,
        re.M,
    )
    assert f"demo done: {items} items scored and stored, the demo alert delivered" in first.stdout
    alert_lines = [line for line in first.stdout.splitlines() if line.startswith("ALERT   open")]
    assert alert_lines, first.stdout[-4000:]
    evidence = re.search(
        r"^ALERT   open (warning|high|critical): (?:market|topic [^:]+|ticker [^:]+): (\d+) of (\d+) "
        r"stories bearish in "
        r"\d{4}-\d\d-\d\d \d\d:\d\d-\d\d:\d\d UTC \(expected ([\d.]+)\), p = ([\d.e+-]+)$",
        first.stdout,
        re.M,
    )
    assert evidence is not None, "\n".join(alert_lines)
    bearish, total, expected, p_value = (
        int(evidence[2]),
        int(evidence[3]),
        float(evidence[4]),
        float(evidence[5]),
    )
    assert 5 <= bearish <= total and expected < bearish / 3 and p_value <= 1e-5
    # Delivered to the demo log subscription: a delivery row, and the log channel's line.
    alerts, deliveries = demo_outcome(home / "finsent.db")
    # A market-wide burst in the data; the tiny model may put most of it in one topic, and then
    # that topic alerts (the detector takes the biggest topic burst out of the market's counts).
    assert alerts, alerts
    assert deliveries and all(status == "delivered" for _, status in deliveries), deliveries
    dispatcher_log = (home / "logs" / "dispatcher.log").read_text(encoding="utf-8")
    logged = [  # the log channel's line: the alert's title, at warning level, naming the subscription
        line
        for line in dispatcher_log.splitlines()
        if "[warning" in line and "bearish" in line and "subscription=finsent-demo" in line
    ]
    assert logged, dispatcher_log[-4000:]
    assert re.search(
        r"^delivered the demo alert \((?:market|topic [^)]+|ticker [^)]+)\) to the subscription finsent-demo",
        first.stdout,
        re.M,
    )
    # How to look at it: the dashboard on the same home, with a demo login that works.
    hint = re.search(
        rf"^dashboard FINSENT_HOME={re.escape(str(home))} finsent dashboard .* log in as demo / (\S+) ",
        first.stdout,
        re.M,
    )
    assert hint is not None, first.stdout[-4000:]
    assert authenticate(stored_users(home / "finsent.db"), "demo", hint[1]) is not None
    assert "Traceback" not in output, output[-4000:]

    # Again on the same home: the same stories at the same event times, so nothing is stored
    # twice, no alert is raised anew, and the earlier alert is shown with its delivery.
    second = run_finsent(env, *args)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    assert "this database holds an earlier run of the demo" in second.stdout
    assert "ALERT   (raised by an earlier run of this demo) open" in second.stdout
    assert demo_outcome(home / "finsent.db") == (alerts, deliveries)
    assert sqlite_counts(home / "finsent.db") == (items, items)
    assert f"log in as demo / {hint[1]} " in second.stdout  # the same demo login
