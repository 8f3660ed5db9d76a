"""The alerter's database step (`AlertEngine.step`) on real PostgreSQL (and SQLite), without Kafka.

The reference is the pure pipeline run once over the whole stream (`aggregate` → `detect`
→ `apply`): whatever the batching, late arrivals or replays, the alerter's rows must come
out as that run's alerts and notifications, each once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from services.alerting import Action, DetectorConfig, EventClock, bucket_start, store, touched_starts
from services.alerting.config import alerter_config
from services.alerting.engine import AlertEngine, StepResult
from services.settings import Settings
from services.storage import (
    AlerterCheckpointRow,
    AlertOutboxRow,
    AlertRow,
    ScoredItem,
    SentimentBucketRow,
    make_engine,
    upgrade_database,
)

from .alert_streams import T0, batches, calm, expected_actions, in_event_order, topic_burst
from .alert_streams import store as store_batch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)  # the wall clock: long after the stream, so never live
TOPIC = "Energy / Oil"
M = timedelta(minutes=1)
BURST_START = T0 + timedelta(minutes=80)


def stream() -> list[ScoredItem]:
    """Two hours of calm news with 12 bearish Energy / Oil headlines in 4 minutes at 1 h 20."""
    burst = topic_burst(topic=TOPIC, size=12, start=BURST_START, minutes=4, seed=3)
    return in_event_order(calm(minutes=120, seed=1), burst)


def pure_actions(
    items: Sequence[ScoredItem], lateness: timedelta, config: DetectorConfig | None = None
) -> list[Action]:
    return expected_actions(items, lateness=lateness, config=config)


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'alerts.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


class Runner:
    """Plays the scorer (store each batch) and the alerter (one step per batch) in-process."""

    def __init__(
        self, engine: Engine, *, checkpoint_hours: float = 6.0, live: bool = False, **settings: Any
    ) -> None:
        self.engine = engine
        self.live = live  # what the alerter's EventClock would say: a live stream
        self.config = alerter_config(Settings(alerter_checkpoint_hours=checkpoint_hours, **settings))
        self.alerts = AlertEngine(self.config)
        self.clock = EventClock(self.config.lateness, self.config.live_horizon)
        self.results: list[StepResult] = []

    def feed(self, items: Sequence[ScoredItem], *, batch: int = 30) -> None:
        for chunk in batches(items, batch):
            store_batch(self.engine, chunk)
            for item in chunk:
                self.clock.observe(item.published_at, now=NOW)
            with Session(self.engine) as session, session.begin():
                result = self.alerts.step(
                    session,
                    touched=touched_starts(chunk),
                    until=self.clock.until(NOW),
                    now=NOW,
                    live=self.live,
                )
            self.results.append(result)


def alert_keys(engine: Engine, *, status: str | None = None) -> set[str]:
    stmt = select(AlertRow.alert_key)
    if status is not None:
        stmt = stmt.where(AlertRow.status == status)
    with Session(engine) as session:
        return set(session.scalars(stmt))


def outbox_keys(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(AlertOutboxRow.dedupe_key).order_by(AlertOutboxRow.id)))


def test_batched_steps_give_the_pure_run(db: Engine) -> None:
    items = stream()
    runner = Runner(db)
    runner.feed(items)
    expected = pure_actions(items, runner.config.lateness)
    kinds = [(a.kind, a.alert.scope, a.alert.key) for a in expected if a.notify]
    # opened by the first windows of the burst, escalated as it grows, resolved after it
    assert kinds[0] == ("open", "topic", TOPIC) and kinds[-1] == ("resolve", "topic", TOPIC)
    assert set(kinds[1:-1]) <= {("escalate", "topic", TOPIC)}

    assert outbox_keys(db) == [a.dedupe_key for a in expected if a.notify]
    assert alert_keys(db) == {a.alert_key for a in expected}
    with Session(db) as session:
        alert = session.scalars(select(AlertRow)).one()
        assert alert.status == "resolved" and alert.scope == "topic" and alert.key == TOPIC
        # the evidence cites the burst's headlines, which are bearish Energy / Oil stories
        assert alert.event_ids and all(e.startswith(("burst-", "calm-")) for e in alert.event_ids)
        assert {e for e in alert.event_ids if e.startswith("burst-")}
        open_row = session.scalars(select(AlertOutboxRow).where(AlertOutboxRow.kind == "open")).one()
        payload = open_row.payload
        assert payload["dedupe_key"] == open_row.dedupe_key and payload["scope"] == "topic"
        assert payload["counts"]["bearish"] >= 3 and payload["p_value"] <= 1e-5
        assert "surge" in payload["tests"] and payload["summary"].startswith(f"{TOPIC}: ")
        assert payload["headlines"] and all("&amp;" not in h["headline"] for h in payload["headlines"])
        # buckets: every story counted once in the market series
        total = session.scalar(
            select(func.sum(SentimentBucketRow.total)).where(SentimentBucketRow.scope == "market")
        )
        assert total == len(items)
    assert sum(r.rerun_from is not None for r in runner.results) == 0
    with Session(db) as session:  # one checkpoint per 10 minutes of event time, and the newest
        stamps = list(session.scalars(select(AlerterCheckpointRow.evaluated_until)))
    assert len(runner.results) > len(stamps) >= 11 and len({bucket_start(t, 10 * M) for t in stamps}) == len(
        stamps
    )


def test_late_stories_are_judged_again_from_a_checkpoint(db: Engine) -> None:
    """Half of the burst arrives after everything else, long past the allowed lateness: the
    alerter ends with exactly the alerts and notifications of the in-order stream."""
    items = stream()
    late = [i for i in items if i.event_id.startswith("burst-")][:6]
    on_time = [i for i in items if i not in late]
    runner = Runner(db)
    runner.feed(on_time)
    runner.feed(late, batch=6)

    expected = pure_actions(items, runner.config.lateness)
    assert runner.results[-1].rerun_from is not None  # the late batch re-judged windows
    live_keys = alert_keys(db) - alert_keys(db, status=store.SUPERSEDED)
    assert live_keys == {a.alert_key for a in expected}
    assert set(outbox_keys(db)) >= {a.dedupe_key for a in expected if a.notify}
    with Session(db) as session:
        for a in expected:
            row = session.scalars(select(AlertRow).where(AlertRow.alert_key == a.alert_key)).one()
            assert row.status == "resolved"
        # the checkpoints after the re-run's start were replaced: one history only
        latest = store.latest_checkpoint(session, rule=runner.config.rule)
        assert latest is not None
        assert latest.evaluated_until == bucket_start(
            max(i.published_at for i in items) - runner.config.lateness
        )


def test_late_stories_that_undo_a_spike_supersede_its_alert(db: Engine) -> None:
    """Forty neutral Energy / Oil stories of the burst's minutes arrive late: with them the
    burst's mix is no spike, so the alert the alerter raised without them is marked
    superseded. The share test alone (surge test off, at the threshold it had alone): twelve
    bearish stories stay a surge of the count whatever else arrives, and what is tested
    here is the re-run."""
    items = stream()
    runner = Runner(db, alert_surge_min_bearish=10_000, alert_p_warning=1e-5)
    runner.feed(items)
    raised = alert_keys(db)
    assert len(raised) == 1

    calm_news = topic_burst(
        topic=TOPIC,
        size=40,
        start=BURST_START - timedelta(minutes=5),
        minutes=10,
        seed=5,
        prefix="late",
        sentiment="neutral",
    )
    runner.feed(calm_news, batch=40)
    assert runner.results[-1].superseded == sorted(raised)
    share_only = runner.config.detector
    assert pure_actions(items + calm_news, runner.config.lateness, share_only) == []
    assert alert_keys(db, status=store.SUPERSEDED) == raised
    with Session(db) as session:
        latest = store.latest_checkpoint(session, rule=runner.config.rule)
        assert latest is not None and not latest.lifecycle.alerts


def test_a_live_streams_late_alert_that_opens_and_resolves_in_the_past_is_not_notified(db: Engine) -> None:
    """The whole burst arrives late, after the windows it falls in were judged without it
    (a worker's partitions waiting for a replacement): the re-run opens and resolves its
    alert in the past of the watermark. In a live stream that is recorded, not notified;
    in a replay (the test above) the same alert is notified as the pure run says."""
    items = stream()
    late = [i for i in items if i.event_id.startswith("burst-")]
    on_time = [i for i in items if i not in late]
    runner = Runner(db, live=True)
    runner.feed(on_time)
    assert alert_keys(db) == set() and outbox_keys(db) == []

    runner.feed(late, batch=len(late))
    result = runner.results[-1]
    expected = pure_actions(items, runner.config.lateness)
    assert result.rerun_from is not None
    assert {a.kind for a in expected if a.notify} >= {"open", "resolve"}
    assert alert_keys(db) == {a.alert_key for a in expected}  # recorded, for the dashboard and audit
    assert result.history_only == sorted({a.alert_key for a in expected})
    assert outbox_keys(db) == [] and result.outbox == []  # nothing for the alerts topic
    with Session(db) as session:
        row = session.scalars(select(AlertRow)).one()
        assert row.status == "resolved" and row.key == TOPIC
        assert {e for e in row.event_ids if e.startswith("burst-")}  # with its evidence


def test_a_notified_alert_that_is_superseded_is_withdrawn(db: Engine) -> None:
    """The alert of test_late_stories_that_undo_a_spike_supersede_its_alert was notified;
    once superseded, a withdrawal goes to the outbox, once, citing the alert and why."""
    items = stream()
    runner = Runner(db, live=True, alert_surge_min_bearish=10_000, alert_p_warning=1e-5)
    runner.feed(items)
    (raised,) = alert_keys(db)
    notified = outbox_keys(db)
    assert notified and all(k.startswith(raised) for k in notified)

    calm_news = topic_burst(
        topic=TOPIC,
        size=40,
        start=BURST_START - timedelta(minutes=5),
        minutes=10,
        seed=5,
        prefix="late",
        sentiment="neutral",
    )
    runner.feed(calm_news, batch=40)
    assert runner.results[-1].superseded == [raised]
    assert outbox_keys(db) == [*notified, f"{raised}|withdrawn"]
    assert runner.results[-1].outbox == [f"{raised}|withdrawn"]
    with Session(db) as session:
        row = session.scalars(select(AlertOutboxRow).where(AlertOutboxRow.kind == "withdrawn")).one()
        assert (row.alert_key, row.scope, row.key) == (raised, "topic", TOPIC)
        assert row.payload["status"] == "superseded" and "late" in row.payload["reason"]
        assert row.payload["summary"].startswith(f"{TOPIC}: ")

    runner.feed(calm_news, batch=40)  # redelivered: nothing changes, no second withdrawal
    assert outbox_keys(db) == [*notified, f"{raised}|withdrawn"]


def test_replay_and_lost_checkpoints_change_nothing(db: Engine) -> None:
    items = stream()
    first = Runner(db)
    first.feed(items)
    alerts_before, outbox_before = alert_keys(db), outbox_keys(db)
    assert alerts_before

    replay = Runner(db)  # a new consumer group reading the topic from the start
    replay.feed(items, batch=45)
    assert all(r.buckets_changed == 0 and not r.outbox for r in replay.results)
    assert alert_keys(db) == alerts_before and outbox_keys(db) == outbox_before

    with Session(db) as session, session.begin():
        session.execute(delete(AlerterCheckpointRow))
    rebuilt = Runner(db)  # state lost: everything judged again from the stored buckets
    rebuilt.feed(items, batch=17)
    assert sum(len(r.actions) for r in rebuilt.results) > 0  # the actions happened again…
    assert alert_keys(db) == alerts_before and outbox_keys(db) == outbox_before  # …and were no-ops
    assert not alert_keys(db, status=store.SUPERSEDED)


def test_a_story_older_than_every_checkpoint_updates_counts_only(db: Engine) -> None:
    items = stream()
    runner = Runner(db, checkpoint_hours=0.5)
    runner.feed(items)
    with Session(db) as session:
        checkpoints = session.scalar(select(func.count()).select_from(AlerterCheckpointRow))
    assert checkpoints is not None and checkpoints < len(runner.results)  # pruned

    ancient = calm(minutes=3, seed=99, start=T0 + timedelta(minutes=5), prefix="ancient")[:1]
    runner.feed(ancient)
    result = runner.results[-1]
    assert result.too_late == bucket_start(ancient[0].published_at) and result.rerun_from is None
    assert result.buckets_changed >= 2  # market + topic (+ tickers) of that minute

    # with a story that is late but within the retention, that one is still judged again
    recent = calm(minutes=3, seed=98, start=T0 + timedelta(minutes=100), prefix="recent")[:1]
    older = calm(minutes=3, seed=97, start=T0 + timedelta(minutes=6), prefix="older")[:1]
    runner.feed(older + recent)
    result = runner.results[-1]
    assert result.too_late == bucket_start(older[0].published_at)
    assert result.rerun_from is not None and result.rerun_from <= bucket_start(recent[0].published_at)
