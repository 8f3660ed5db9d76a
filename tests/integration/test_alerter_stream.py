"""The alerter end to end: real headlines through the real broker and PostgreSQL into
`python -m services alerter`, and the alerts read back from the database and the `alerts`
topic.

The tests play the scorer (store each batch, commit, produce its `news.scored` messages),
in event-time order, on four partitions. Event times are in the past (2025), so the
stream is a replay: event time alone decides, and every result is compared with the pure
pipeline run once over the same stream. The last test uses times of today to show the
idle tick closing a quiet live stream's windows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from services.alerting import bucket_start
from services.broker import EmbeddedBroker
from services.ingest.producer import NewsProducer
from services.storage import AlerterCheckpointRow, ScoredItem, SentimentBucketRow

from .alert_streams import T0, calm, expected_actions, in_event_order, play, ticker_burst, topic_burst
from .alerter_process import (
    LATENESS,
    AlerterTopics,
    Run,
    alerts,
    evaluated_until,
    final_until,
    new_group,
    outbox,
)
from .pipeline import migrated_engine, wait_for

pytestmark = pytest.mark.integration

TOPIC = "Energy / Oil"
BURST_START = T0 + timedelta(minutes=80)  # after the hour of warm-up


def topic_stream() -> list[ScoredItem]:
    """Two calm hours; from 1 h 20, 12 extra bearish Energy / Oil headlines in 4 minutes."""
    burst = topic_burst(topic=TOPIC, size=12, start=BURST_START, minutes=4, seed=3)
    return in_event_order(calm(minutes=120, seed=1), burst)


UNREADABLE = [
    ("broken-1", b"{not json"),
    # a RecursionError in the JSON decoder used to end the alerter, and it met it again on restart
    (
        "nested-1",
        b'{"event_id": "n", "published_at": "2025-03-03T12:00:00Z", "x": '
        + b"[" * 30_000
        + b"]" * 30_000
        + b"}",
    ),
    ("huge-1", b'{"event_id": "h", "x": "' + b"y" * 300_000 + b'"}'),
]


def test_two_calm_hours_raise_no_alert(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    topics = AlerterTopics.create(make_topic)
    items = calm(minutes=120, seed=1)
    group = new_group()
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path)
    with (
        migrated_engine(fresh_postgres_url) as engine,
        run.alerter(group) as alerter,
    ):
        alerter.wait_ready()  # the stream flows while the alerter runs, in many small steps
        sent = play(engine, kafka_broker.bootstrap, topics.scored, items)
        with NewsProducer(kafka_broker.bootstrap, topic=topics.scored) as producer:
            for key, value in UNREADABLE:  # messages the alerter cannot read
                producer.send_raw(value, key)
        run.caught_up(engine, alerter, group, messages=sent + len(UNREADABLE), until=final_until(items))
        assert alerts(engine) == [] and outbox(engine) == []
        with Session(engine) as session:
            market = select(func.sum(SentimentBucketRow.total)).where(SentimentBucketRow.scope == "market")
            assert session.scalar(market) == len(items)  # every story counted once

        status, health = alerter.health()
        assert status == 200 and health["status"] == "ok", health
        assert len(health["assigned_partitions"]) == 4 and health["live"] is False
        _, metrics = alerter.get("/metrics")
        text = metrics.decode()
        assert f"finsent_alerter_messages_total {sent + len(UNREADABLE)}.0" in text
        assert f"finsent_alerter_dead_letters_total {len(UNREADABLE)}.0" in text
        assert "finsent_alerter_watermark_lag_seconds" in text

        dead = {r.key.decode(): r for r in consume_topic(topics.dlq, expected=len(UNREADABLE))}
        assert sorted(dead) == sorted(key for key, _ in UNREADABLE)
        assert dead["broken-1"].value == b"{not json"
        assert all(dict(r.headers)["error-type"] == b"invalid_scored_message" for r in dead.values())
        assert b"nested too deeply" in dict(dead["nested-1"].headers)["error-message"]
        huge = dict(UNREADABLE)["huge-1"]
        assert dict(dead["huge-1"].headers)["original-size"] == str(len(huge)).encode()
        assert dead["huge-1"].value is not None and huge.startswith(dead["huge-1"].value)
        assert len(dead["huge-1"].value) < len(huge)
        alerter.assert_alive()

        # one active alerter per database: a second one waits on standby, healthy, idle
        with Run(kafka_broker, fresh_postgres_url, topics, tmp_path).alerter(
            new_group(), name="second"
        ) as second:
            status, standby = wait_for(
                second.health,
                lambda h: h[1]["status"] == "standby",
                timeout=60,
                what="standby",
                workers=[second],
            )
            assert status == 200 and standby["assigned_partitions"] == [] and standby["messages"] == 0
            assert second.stop() == 0
        assert "standby: another alerter is active" in second.log() and "active: resuming" not in second.log()
        assert alerter.stop() == 0


def test_topic_burst_raises_one_alert_for_that_topic(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    topics = AlerterTopics.create(make_topic)
    items = topic_stream()
    group = new_group()
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path)
    with (
        migrated_engine(fresh_postgres_url) as engine,
        run.alerter(group) as alerter,
    ):
        alerter.wait_ready()  # the stream flows while the alerter runs, in many small steps
        run.play(engine, alerter, group, items)
        rows = alerts(engine)
        # exactly one alert outside the market scope (a big enough burst also moves the
        # market, which would be a correct alert too): the burst's topic; no ticker, no other topic
        others = [(a.scope, a.key) for a in rows if a.scope != "market"]
        assert others == [("topic", TOPIC)], others
        alert = next(a for a in rows if a.scope == "topic")
        assert BURST_START < alert.opened_at <= BURST_START + timedelta(minutes=5)
        assert alert.status == "resolved"  # the stream went on; the spike ended
        assert len(alert.event_ids) >= 3

        expected = expected_actions(items)
        box = outbox(engine)
        assert [o.dedupe_key for o in box] == [a.dedupe_key for a in expected if a.notify]
        kinds = [o.kind for o in box if o.scope == "topic"]
        assert kinds[0] == "open" and kinds[-1] == "resolve" and set(kinds[1:-1]) <= {"escalate"}
        assert all(o.published_at is not None and o.dispatched_at is None for o in box)

        messages = consume_topic(topics.alerts, expected=len(box))
        assert [m.key.decode() for m in messages] == [o.dedupe_key for o in box]
        opened = json.loads(next(m.value for m in messages if dict(m.headers)["kind"] == b"open"))
        assert opened["scope"] == "topic" and opened["key"] == TOPIC and opened["kind"] == "open"
        assert opened["alert_key"] == alert.alert_key and opened["severity"] in (
            "warning",
            "high",
            "critical",
        )
        assert opened["p_value"] <= 1e-5 and opened["counts"]["bearish"] >= 3
        assert opened["summary"].startswith(f"{TOPIC}: ") and "bearish stories in 10 min" in opened["summary"]
        assert opened["window"]["end"] == alert.opened_at.isoformat()
        burst_texts = {i.event_id: i.headline for i in items if i.event_id.startswith("burst-")}
        quoted = opened["headlines"]
        assert quoted and all(h["event_id"] in opened["event_ids"] for h in quoted)
        assert {h["event_id"] for h in quoted} & set(burst_texts)
        for h in quoted:
            assert "&amp;" not in h["headline"] and "\n" not in h["headline"]
        assert alerter.stop() == 0


def test_ticker_burst_raises_one_ticker_alert(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    """14 real bearish $BA headlines in 6 minutes, on random topics."""
    topics = AlerterTopics.create(make_topic)
    start = T0 + timedelta(minutes=85)
    burst = ticker_burst(ticker="BA", size=14, start=start, minutes=6, seed=3)
    items = in_event_order(calm(minutes=120, seed=1), burst)
    group = new_group()
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path)
    with (
        migrated_engine(fresh_postgres_url) as engine,
        run.alerter(group) as alerter,
    ):
        alerter.wait_ready()  # the stream flows while the alerter runs, in many small steps
        run.play(engine, alerter, group, items)
        rows = alerts(engine)
        assert [(a.scope, a.key) for a in rows] == [("ticker", "BA")]
        assert start < rows[0].opened_at <= start + timedelta(minutes=10)
        expected = expected_actions(items)
        assert [o.dedupe_key for o in outbox(engine)] == [a.dedupe_key for a in expected if a.notify]
        assert alerter.stop() == 0


def test_replaying_the_stream_duplicates_no_alert_and_no_outbox_row(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    """The same topic read again from the start, by a new consumer group on the same
    database: first with the alerter's checkpoints, then with them deleted (state lost:
    every window judged again from the stored buckets)."""
    topics = AlerterTopics.create(make_topic)
    items = topic_stream()
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path)

    def alert_rows(engine: Any) -> list[tuple[Any, ...]]:
        return [
            (a.id, a.alert_key, a.status, a.opened_at, a.resolved_at, a.severity, a.detections, a.evidence)
            for a in alerts(engine)
        ]

    def outbox_rows(engine: Any) -> list[tuple[Any, ...]]:
        return [(o.id, o.dedupe_key, o.payload, o.published_at) for o in outbox(engine)]

    with migrated_engine(fresh_postgres_url) as engine:
        sent = 0
        for n in range(3):
            group = new_group()
            if n == 2:
                with Session(engine) as session, session.begin():
                    session.execute(delete(AlerterCheckpointRow))
            # the last run reads the backlog 40 messages at a time: one partition after another
            small = {"FINSENT_ALERTER_MAX_BATCH": "40"} if n == 2 else {}
            with run.alerter(group, name=f"alerter-{n}", **small) as alerter:
                if n == 0:
                    alerter.wait_ready()
                    sent = play(engine, kafka_broker.bootstrap, topics.scored, items)
                run.caught_up(engine, alerter, group, messages=sent, until=final_until(items))
                assert alerter.stop() == 0
            if n == 0:
                first_alerts, first_outbox = alert_rows(engine), outbox_rows(engine)
                assert [a[1] for a in first_alerts] and len(first_outbox) >= 2
            else:
                assert alert_rows(engine) == first_alerts
                assert outbox_rows(engine) == first_outbox  # nothing inserted, nothing republished
            if n == 2:  # the per-partition watermark: no partition's stories were made late
                assert "judged again" not in alerter.log() and "alert open" in alerter.log()

    keys = [o[1] for o in first_outbox]
    messages = consume_topic(topics.alerts, expected=len(keys))
    assert [m.key.decode() for m in messages] == keys


def test_a_quiet_live_stream_is_closed_by_the_wall_clock(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    """Live news that stops right after a burst: no later story moves the event-time
    watermark past the burst, yet the idle tick lets its windows close and the alert open
    and resolve, because the stream was live (its last story 25 minutes old, within the
    horizon set here)."""
    topics = AlerterTopics.create(make_topic)
    start = bucket_start(datetime.now(UTC)) - timedelta(minutes=100)
    burst_start = start + timedelta(minutes=70)
    items = in_event_order(
        calm(minutes=75, seed=1, start=start),
        topic_burst(topic=TOPIC, size=12, start=burst_start, minutes=3, seed=3),
    )
    assert final_until(items) < burst_start + timedelta(minutes=5)  # event time alone: not resolvable
    group = new_group()
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path, FINSENT_ALERT_LIVE_HORIZON_MINUTES="40")
    with migrated_engine(fresh_postgres_url) as engine, run.alerter(group) as alerter:
        alerter.wait_ready()  # the stream flows while the alerter runs, in many small steps
        sent = play(engine, kafka_broker.bootstrap, topics.scored, items)
        live_until = bucket_start(datetime.now(UTC) - LATENESS - timedelta(minutes=1))  # after the play
        run.caught_up(engine, alerter, group, messages=sent, until=live_until)
        rows = [a for a in alerts(engine) if a.scope == "topic"]
        assert [(a.key, a.status) for a in rows] == [(TOPIC, "resolved")]
        kinds = [o.kind for o in outbox(engine) if o.scope == "topic"]
        assert kinds[0] == "open" and kinds[-1] == "resolve"
        judged = evaluated_until(engine)
        assert judged is not None and judged > final_until(items) + timedelta(minutes=5)
        expected = expected_actions(items, until=judged)  # what event time would give up to there
        assert [o.dedupe_key for o in outbox(engine)] == [a.dedupe_key for a in expected if a.notify]
        _, health = alerter.health()
        assert health["live"] is True
        assert alerter.stop() == 0
