"""Retraining end to end on the tiny model, real PostgreSQL, the embedded broker, and the CLI as
a user runs it (`finsent labels import`, `finsent retrain --now`) plus APScheduler in-process.

- Labels imported → retrain → the challenger passes the gate and is promoted → a worker that
  is scoring a live stream switches to it: exact row counts, the version changes once.
- A challenger trained on shuffled labels is rejected with its reasons; the champion stays.
- A scheduler that was down for three intervals runs the retraining once on restart.
- Two schedulers on one database: one retraining; the other run is skipped (lock or no labels).
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from bert_core import DEFAULT_LABELS
from services.broker import EmbeddedBroker
from services.settings import get_settings
from services.storage import GateDecisionRow, ModelVersionRow, RetrainRunRow
from tests.tiny_model import make_sentiment_rows, make_topic_rows

from .model_support import following_env, register, runs, serving, versions_in_offset_order
from .pipeline import (
    REPO_ROOT,
    PipelineTopics,
    Worker,
    db_counts,
    expected_counts,
    migrated_engine,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration

SENTIMENT = list(DEFAULT_LABELS["sentiment"])
TOPICS = list(DEFAULT_LABELS["topic"])


@pytest.fixture
def db_engine(fresh_postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(fresh_postgres_url) as engine:
        yield engine


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def write_labels(path: Path, *, shuffle: bool = False, seed: int = 5) -> Path:
    """Analyst labels for both tasks (names, as analysts write them); `shuffle` permutes the
    labels across rows: a batch of wrong labels."""
    rows = [("sentiment", t, SENTIMENT[y]) for t, y in make_sentiment_rows(n_per_class=40, seed=seed)]
    rows += [("topic", t, TOPICS[y]) for t, y in make_topic_rows(n_per_class=5, seed=seed + 1)]
    if shuffle:
        rng = random.Random(seed)
        for task in ("sentiment", "topic"):
            idx = [i for i, r in enumerate(rows) if r[0] == task]
            labels = [rows[i][2] for i in idx]
            rng.shuffle(labels)
            for i, label in zip(idx, labels, strict=True):
                rows[i] = (task, rows[i][1], label)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "task", "label"])
        for task, text, label in rows:
            writer.writerow([text, task, label])
    return path


def learning_env(
    engine: Engine, home: Path, sentiment_csv: Path, topic_csv: Path, **extra: str
) -> dict[str, str]:
    """Settings of a retraining on the tiny data: its 'seed' files are the session's CSVs, and
    the tiny model needs a larger learning rate than MiniLM."""
    return {
        **os.environ,
        "FINSENT_HOME": str(home),
        "FINSENT_DATABASE_URL": url_of(engine),
        "FINSENT_SENTIMENT_DATA": str(sentiment_csv),
        "FINSENT_TOPIC_DATA": str(topic_csv),
        "FINSENT_RETRAIN_MIN_NEW_LABELS": "20",
        "FINSENT_RETRAIN_LEARNING_RATE": "0.0003",
        "FINSENT_RETRAIN_EPOCHS": "8",
        "FINSENT_RETRAIN_REPLAY_MIN": "60",
        "FINSENT_TORCH_THREADS": "1",
        "FINSENT_PRECISION": "fp32",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


def finsent(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def champion_version(engine: Engine) -> str | None:
    with Session(engine) as session:
        return session.scalar(select(ModelVersionRow.version).where(ModelVersionRow.status == "champion"))


def test_imported_labels_retrain_promote_and_a_running_worker_switches_mid_stream(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    db_engine: Engine,
    model_variant: Callable[..., Path],
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic, partitions=1)
    events_topic = make_topic("model.events")
    # A champion that labels badly (its heads' outputs permuted): new labels must fix it.
    first = register(db_engine, model_variant(seed=41, shuffle_heads=True), champion=True)
    home = tmp_path / "home"
    env = learning_env(
        db_engine,
        home,
        sentiment_csv,
        topic_csv,
        FINSENT_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        FINSENT_TOPIC_MODEL_EVENTS=events_topic,
    )
    imported = finsent(
        env, "labels", "import", str(write_labels(tmp_path / "labels.csv")), "--labeller", "alice"
    )
    assert imported.returncode == 0, imported.stderr
    worker_env_ = following_env(kafka_broker, db_engine, topics, events_topic, home)

    with Worker(worker_env_, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        assert serving(worker) == first.version
        retrain = subprocess.Popen(
            [sys.executable, "-m", "services", "retrain", "--now"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Produce a steady stream until the worker serves the new champion, then 200 more.
        produced, switched_at = 0, None
        deadline = time.monotonic() + 300
        while switched_at is None or produced < switched_at + 200:
            assert time.monotonic() < deadline, f"no switch within 300 s\n{worker.tail()}"
            worker.assert_alive()
            produce(kafka_broker.bootstrap, topics.raw, range(produced, produced + 20))
            produced += 20
            if switched_at is None and serving(worker) not in (None, first.version):
                switched_at = produced
            time.sleep(0.2)
        out, err = retrain.communicate(timeout=300)
        assert retrain.returncode == 0, f"{out}\n{err}"
        assert "promoted" in out
        wait_for(
            lambda: db_counts(db_engine).predictions,
            lambda n: n >= produced,
            timeout=120,
            what=f"all {produced} items stored",
            workers=[worker],
        )
    new_champion = champion_version(db_engine)
    assert new_champion not in (None, first.version)
    assert db_counts(db_engine) == expected_counts(produced)
    switched = runs(versions_in_offset_order(db_engine))
    assert [version for version, _ in switched] == [first.version, new_champion], switched
    with Session(db_engine) as session:
        run = session.scalars(select(RetrainRunRow)).one()
        decision = session.scalars(select(GateDecisionRow)).one()
        challenger = session.get_one(ModelVersionRow, new_champion)
    assert run.status == "promoted" and run.challenger_version == new_champion
    assert run.new_labels == 220 and run.details["examples"]["sentiment"]["analyst"] > 0
    assert decision.accepted and decision.champion_version == first.version
    assert challenger.parent == first.version


def test_a_challenger_trained_on_shuffled_labels_is_rejected_with_its_reasons(
    db_engine: Engine, saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    first = register(db_engine, saved_model_dir, champion=True)
    env = learning_env(
        db_engine,
        tmp_path / "home",
        sentiment_csv,
        topic_csv,
        FINSENT_RETRAIN_REPLAY_RATIO="0",
        FINSENT_RETRAIN_REPLAY_MIN="0",
        FINSENT_RETRAIN_LEARNING_RATE="0.003",
    )
    labels = write_labels(tmp_path / "wrong.csv", shuffle=True)
    assert finsent(env, "labels", "import", str(labels), "--labeller", "mallory").returncode == 0
    result = finsent(env, "retrain", "--now")
    assert result.returncode == 3, f"{result.stdout}\n{result.stderr}"
    assert "rejected" in result.stdout
    assert champion_version(db_engine) == first.version  # unchanged
    with Session(db_engine) as session:
        run = session.scalars(select(RetrainRunRow)).one()
        decision = session.scalars(select(GateDecisionRow)).one()
        challenger = session.get_one(ModelVersionRow, decision.challenger_version)
    assert run.status == "rejected" and not decision.accepted
    assert challenger.status == "rejected"
    failed = [c for c in decision.comparison["checks"] if not c["passed"]]
    assert failed, decision.reasons
    assert any("macro-F1" in c["reason"] or "recall" in c["reason"] for c in failed), failed
    assert run.reason and all(c["reason"] in run.reason for c in failed)


# --------------------------------------------------------------------------- the scheduler


@pytest.fixture
def scheduler_settings(
    db_engine: Engine, tmp_path: Path, sentiment_csv: Path, topic_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    env = learning_env(db_engine, tmp_path / "home", sentiment_csv, topic_csv)
    for key, value in env.items():
        if key.startswith("FINSENT_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_rows(engine: Engine) -> list[RetrainRunRow]:
    with Session(engine) as session:
        return list(session.scalars(select(RetrainRunRow).order_by(RetrainRunRow.id)))


def test_a_scheduler_that_missed_three_intervals_runs_once(
    db_engine: Engine, scheduler_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.learning.scheduler import JOB_ID, start_scheduler

    interval = 5.0
    monkeypatch.setenv("FINSENT_RETRAIN_INTERVAL_MINUTES", str(interval / 60))
    get_settings.cache_clear()
    first = start_scheduler(get_settings())
    due = first.get_job(JOB_ID).next_run_time
    first.shutdown(wait=False)  # down before its first run…
    time.sleep(3.2 * interval)  # …for three intervals
    assert run_rows(db_engine) == []
    second = start_scheduler(get_settings())
    try:
        assert second.get_job(JOB_ID).next_run_time == due  # the missed time was kept
        wait_for(
            lambda: len(run_rows(db_engine)), lambda n: n >= 1, timeout=interval - 1, what="the missed run"
        )
        time.sleep(1.0)
    finally:
        second.shutdown(wait=True)
    rows = run_rows(db_engine)
    assert len(rows) == 1, [(r.status, r.reason) for r in rows]  # coalesced: once, not three times
    assert rows[0].trigger == "schedule" and rows[0].status == "skipped"
    assert "no champion" in (rows[0].reason or "")


def test_two_schedulers_on_one_database_retrain_once(
    db_engine: Engine,
    saved_model_dir: Path,
    scheduler_settings: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.learning.scheduler import start_scheduler

    register(db_engine, saved_model_dir, champion=True)
    env = learning_env(
        db_engine,
        tmp_path / "home",
        Path(os.environ["FINSENT_SENTIMENT_DATA"]),
        Path(os.environ["FINSENT_TOPIC_DATA"]),
    )
    assert (
        finsent(
            env, "labels", "import", str(write_labels(tmp_path / "labels.csv")), "--labeller", "bob"
        ).returncode
        == 0
    )
    monkeypatch.setenv("FINSENT_RETRAIN_INTERVAL_MINUTES", str(3 / 60))
    get_settings.cache_clear()
    schedulers = [start_scheduler(get_settings()), start_scheduler(get_settings())]
    try:
        wait_for(
            lambda: [r.status for r in run_rows(db_engine)],
            lambda statuses: (
                sum(s in ("promoted", "rejected") for s in statuses) >= 1
                and "running" not in statuses
                and len(statuses) >= 2
            ),
            timeout=120,
            what="a completed retraining and a second scheduled run",
        )
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=True)
    rows = run_rows(db_engine)
    trained = [r for r in rows if r.status in ("promoted", "rejected")]
    assert len(trained) == 1, [(r.status, r.reason) for r in rows]
    others = [r for r in rows if r not in trained]
    assert others and all(r.status == "skipped" for r in others)
    assert all("lock held" in (r.reason or "") or "new label" in (r.reason or "") for r in others)
    with Session(db_engine) as session:
        assert session.scalar(select(func.count()).select_from(GateDecisionRow)) == 1


def test_a_promotion_stands_when_the_broker_cannot_be_told(
    db_engine: Engine,
    model_variant: Callable[..., Path],
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path: Path,
) -> None:
    first = register(db_engine, model_variant(seed=43, shuffle_heads=True), champion=True)
    env = learning_env(
        db_engine,
        tmp_path / "home",
        sentiment_csv,
        topic_csv,
        FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1",  # nothing listens there
        FINSENT_KAFKA_TIMEOUT_SECONDS="2",
    )
    assert (
        finsent(
            env, "labels", "import", str(write_labels(tmp_path / "labels.csv")), "--labeller", "ann"
        ).returncode
        == 0
    )
    result = finsent(env, "retrain", "--now")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    with Session(db_engine) as session:
        run = session.scalars(select(RetrainRunRow)).one()
    assert run.status == "promoted" and run.details["announced"] is False
    assert champion_version(db_engine) == run.challenger_version != first.version
    assert "workers pick it up by polling" in result.stderr


def test_the_bootstrap_server_option_is_where_a_promotion_is_announced(
    db_engine: Engine,
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., Any],
    model_variant: Callable[..., Path],
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path: Path,
) -> None:
    """`finsent retrain --now --bootstrap-server` wins over FINSENT_KAFKA_BOOTSTRAP (here a
    port nothing listens on): the promotion is announced on the broker the option names."""
    from services.learning.events import ModelEvent

    register(db_engine, model_variant(seed=44, shuffle_heads=True), champion=True)
    events_topic = make_topic("model.events")
    env = learning_env(
        db_engine,
        tmp_path / "home",
        sentiment_csv,
        topic_csv,
        FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1",
        FINSENT_KAFKA_TIMEOUT_SECONDS="5",
        FINSENT_TOPIC_MODEL_EVENTS=events_topic,
    )
    labels = write_labels(tmp_path / "labels.csv")
    assert finsent(env, "labels", "import", str(labels), "--labeller", "ann").returncode == 0
    result = finsent(env, "retrain", "--now", "--bootstrap-server", kafka_broker.bootstrap)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert f"announced on {events_topic} ({kafka_broker.bootstrap})" in result.stdout
    with Session(db_engine) as session:
        run = session.scalars(select(RetrainRunRow)).one()
    assert run.status == "promoted" and run.details["announced"] is True
    [record] = consume_topic(events_topic, expected=1)
    assert ModelEvent.from_json(record.value).version == run.challenger_version


def test_schedulers_starting_together_on_a_fresh_database_both_run(
    db_engine: Engine, scheduler_settings: None
) -> None:
    import threading

    from services.learning.scheduler import JOB_ID, start_scheduler

    barrier = threading.Barrier(2)
    started: list[object] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            started.append(start_scheduler(get_settings()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == [] and len(started) == 2
        assert all(s.get_job(JOB_ID) is not None for s in started)  # type: ignore[attr-defined]
    finally:
        for scheduler in started:
            scheduler.shutdown(wait=False)  # type: ignore[attr-defined]
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scheduled_jobs")).scalar() == 1


def test_a_champion_changed_during_training_is_not_undone(
    db_engine: Engine,
    saved_model_dir: Path,
    model_variant: Callable[..., Path],
    scheduler_settings: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from services.learning import retrain
    from services.learning.gate import GateDecision
    from services.learning.registry import promote

    first = register(db_engine, saved_model_dir, champion=True)
    hand_picked = register(db_engine, model_variant(seed=51))
    env = learning_env(
        db_engine,
        tmp_path / "home",
        Path(os.environ["FINSENT_SENTIMENT_DATA"]),
        Path(os.environ["FINSENT_TOPIC_DATA"]),
    )
    assert (
        finsent(
            env, "labels", "import", str(write_labels(tmp_path / "labels.csv")), "--labeller", "cy"
        ).returncode
        == 0
    )

    def judge_while_an_admin_promotes(*_args: object) -> tuple[GateDecision, dict[str, object]]:
        with Session(db_engine) as session, session.begin():
            promote(session, hand_picked.version, by="admin", reason="by hand", now=datetime.now(UTC))
        return GateDecision(True, ["passes"], {"checks": []}), {"checks": []}

    monkeypatch.setattr(retrain, "_judge", judge_while_an_admin_promotes)
    outcome = retrain.run_retraining(get_settings(), db_engine, trigger="manual")
    assert outcome.status == "skipped", outcome
    assert f"the champion is now {hand_picked.version}, not {first.version}" in outcome.reason
    assert champion_version(db_engine) == hand_picked.version  # the hand-made promotion stands
    with Session(db_engine) as session:
        challenger = session.get_one(ModelVersionRow, outcome.challenger)
    assert challenger.status == "candidate"


class _Planted:
    """A pickle that creates a file when loaded: what a database write could plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_planted_in_the_old_job_table_is_never_loaded(
    db_engine: Engine, scheduler_settings: None, tmp_path: Path
) -> None:
    import pickle

    from services.learning.scheduler import JOB_ID, start_scheduler

    marker = tmp_path / "unpickled"
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS apscheduler_jobs "
                "(id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT, job_state BYTEA NOT NULL)"
            )
        )
        conn.execute(text("DELETE FROM apscheduler_jobs"))
        conn.execute(
            text("INSERT INTO apscheduler_jobs VALUES (:id, :t, :state)"),
            {"id": JOB_ID, "t": time.time() + 3600, "state": pickle.dumps(_Planted(marker))},
        )
    scheduler = start_scheduler(get_settings())
    try:
        assert scheduler.get_job(JOB_ID) is not None
    finally:
        scheduler.shutdown(wait=False)
    assert not marker.exists()


def test_the_schedule_lives_in_plain_columns(db_engine: Engine, scheduler_settings: None) -> None:
    from sqlalchemy import inspect

    from services.learning.scheduler import JOB_ID, start_scheduler

    scheduler = start_scheduler(get_settings())
    try:
        due = scheduler.get_job(JOB_ID).next_run_time
    finally:
        scheduler.shutdown(wait=False)
    assert "apscheduler_jobs" not in inspect(db_engine).get_table_names()  # dropped by the migration
    with db_engine.connect() as conn:
        row = conn.execute(text("SELECT id, next_run_at, trigger FROM scheduled_jobs")).one()
    assert row.id == JOB_ID and row.next_run_at == due and "interval" in row.trigger
