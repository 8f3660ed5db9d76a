"""What a late partition's stories tell subscribers, through the real broker, PostgreSQL and
`python -m services alerter` (and the real dispatcher for the withdrawal).

A worker killed while its partitions wait for a replacement makes their stories reach the
alerter after it judged their windows without them. Judged again, those windows may open
and resolve an alert in the past of the watermark: in a live stream that is recorded, never
notified. An alert that was notified and that the complete history then supersedes is
withdrawn: a `withdrawn` message on the alerts topic, delivered to the subscriptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from services.alerting import bucket_start
from services.broker import EmbeddedBroker
from services.delivery import repository as repo
from services.delivery.dispatcher import Dispatcher
from services.delivery.subscriptions import build_subscription
from services.outbound import OutboundPolicy
from services.settings import Settings
from services.storage import session_factory

from .alert_streams import T0, calm, in_event_order, play, topic_burst
from .alerter_process import (
    AlerterProcess,
    AlerterTopics,
    alerter_env,
    alerts,
    new_group,
    outbox,
    wait_until_caught_up,
)
from .delivery_support import WebhookReceiver, wait_until
from .pipeline import migrated_engine, wait_for

pytestmark = pytest.mark.integration

LATENESS = timedelta(seconds=120)
TOPIC = "Energy / Oil"
SECRET = "s3cret-hmac-key"


def alerter(
    broker: EmbeddedBroker, url: str, topics: AlerterTopics, tmp_path: Path, group: str, **extra: str
) -> AlerterProcess:
    env = alerter_env(
        bootstrap=broker.bootstrap,
        database_url=url,
        topics=topics,
        group=group,
        home=tmp_path / "home",
        **extra,
    )
    return AlerterProcess(env, tmp_path / "alerter.log", name="alerter")


def test_a_late_partitions_alert_in_the_past_is_recorded_not_published(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    """A live stream (times of today) whose burst arrives after the alerter judged its
    windows (and the quiet stream's idle tick moved past them): the re-run opens and
    resolves the alert in the past of the watermark. The alert row is there; nothing is in
    the outbox or on the alerts topic."""
    topics = AlerterTopics.create(make_topic)
    start = bucket_start(datetime.now(UTC)) - timedelta(minutes=100)
    burst = topic_burst(topic=TOPIC, size=12, start=start + timedelta(minutes=60), minutes=3, seed=3)
    on_time = calm(minutes=75, seed=1, start=start)
    group = new_group()
    extra = {"FINSENT_ALERT_LIVE_HORIZON_MINUTES": "40"}
    with (
        migrated_engine(fresh_postgres_url) as engine,
        alerter(kafka_broker, fresh_postgres_url, topics, tmp_path, group, **extra) as process,
    ):
        process.wait_ready()
        sent = play(engine, kafka_broker.bootstrap, topics.scored, on_time)
        wait_until_caught_up(
            engine,
            process,
            bootstrap=kafka_broker.bootstrap,
            group=group,
            topic=topics.scored,
            messages=sent,
            # the idle tick of the quiet live stream: judged past the burst and its resolution
            until=bucket_start(datetime.now(UTC) - LATENESS - timedelta(minutes=1)),
        )
        assert [a for a in alerts(engine) if a.scope == "topic"] == [] and outbox(engine) == []

        sent += play(engine, kafka_broker.bootstrap, topics.scored, burst, batch=len(burst))
        wait_for(
            lambda: [(a.key, a.status) for a in alerts(engine) if a.scope == "topic"],
            lambda rows: rows == [(TOPIC, "resolved")],
            timeout=60,
            what="the late burst's alert to be recorded",
            workers=[process],
        )
        row = next(a for a in alerts(engine) if a.scope == "topic")
        assert start + timedelta(minutes=60) < row.opened_at <= start + timedelta(minutes=75)
        assert {e for e in row.event_ids if e.startswith("burst-")}  # with its evidence
        assert outbox(engine) == []  # history, not news: not notified
        _, health = process.health()
        assert health["live"] is True
        assert "recorded, not notified" in (tmp_path / "alerter.log").read_text()
        assert process.stop() == 0
    assert consume_topic(topics.alerts, expected=1, timeout=3.0) == []


def test_a_notified_alert_that_is_superseded_is_withdrawn_and_delivered(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    fresh_postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve bearish Energy / Oil stories raise an alert (share test alone), notified; forty
    neutral stories of the same minutes arrive late and the complete history no longer
    raises it: superseded, and a `withdrawn` message follows on the alerts topic and to the
    webhook that got the alarm, "withdrawn: <summary>", under the usual idempotency key."""
    topics = AlerterTopics.create(make_topic)
    burst_start = T0 + timedelta(minutes=80)
    items = in_event_order(
        calm(minutes=120, seed=1), topic_burst(topic=TOPIC, size=12, start=burst_start, minutes=4, seed=3)
    )
    calm_news = topic_burst(
        topic=TOPIC,
        size=40,
        start=burst_start - timedelta(minutes=5),
        minutes=10,
        seed=5,
        prefix="late",
        sentiment="neutral",
    )
    group = new_group()
    extra = {"FINSENT_ALERT_SURGE_MIN_BEARISH": "10000", "FINSENT_ALERT_P_WARNING": "1e-5"}
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    receiver = WebhookReceiver()
    with (
        migrated_engine(fresh_postgres_url) as engine,
        alerter(kafka_broker, fresh_postgres_url, topics, tmp_path, group, **extra) as process,
        receiver.serve(),
    ):
        policy = OutboundPolicy.parse("127.0.0.1")
        sub = build_subscription(
            name="desk", channel="webhook", target=receiver.url("/desk"), secret_ref="env:TEST_HOOK_SECRET",
            policy=policy,
        )  # fmt: skip
        sessions = session_factory(engine)
        with sessions.begin() as session:
            repo.add_subscription(session, subscription=sub, now=datetime.now(UTC))
        process.wait_ready()
        sent = play(engine, kafka_broker.bootstrap, topics.scored, items)
        wait_until_caught_up(
            engine,
            process,
            bootstrap=kafka_broker.bootstrap,
            group=group,
            topic=topics.scored,
            messages=sent,
            until=bucket_start(max(i.published_at for i in items) - LATENESS),
        )
        (raised,) = [a.alert_key for a in alerts(engine)]
        notified = [o.dedupe_key for o in outbox(engine)]
        assert notified and all(o.alert_key == raised for o in outbox(engine))

        sent += play(engine, kafka_broker.bootstrap, topics.scored, calm_news, batch=len(calm_news))
        wait_for(
            lambda: [(o.kind, o.published_at is not None) for o in outbox(engine)][len(notified) :],
            lambda tail: tail == [("withdrawn", True)],
            timeout=60,
            what="the superseded alert's withdrawal to be published",
            workers=[process],
        )
        assert [a.status for a in alerts(engine)] == ["superseded"]
        messages = consume_topic(topics.alerts, expected=len(notified) + 1)
        assert [m.key.decode() for m in messages] == [*notified, f"{raised}|withdrawn"]
        withdrawal = json.loads(messages[-1].value)
        assert withdrawal["kind"] == "withdrawn" and withdrawal["alert_key"] == raised
        assert withdrawal["status"] == "superseded" and "late" in withdrawal["reason"]
        assert process.stop() == 0

        settings = Settings(
            outbound_allow="127.0.0.1", dispatcher_poll_seconds=0.02, delivery_timeout_seconds=5.0
        )
        dispatcher = Dispatcher(sessions, settings)
        try:
            wait_until(
                lambda: (dispatcher.run_once(), len(receiver.requests) >= len(notified) + 1)[1], timeout=30
            )
        finally:
            dispatcher.close()
    bodies = [json.loads(r.body) for r in receiver.requests]
    got = {b["notifications"][0]["dedupe_key"]: b for b in bodies}
    assert len(bodies) == len(got) and set(got) == {*notified, f"{raised}|withdrawn"}  # each once
    last = got[f"{raised}|withdrawn"]
    assert last["idempotency_key"] == f"{raised}|withdrawn|{sub_id(sessions)}"
    assert f"] withdrawn: {TOPIC}: " in last["notifications"][0]["summary"]
    assert all(r.signed_with(SECRET) for r in receiver.requests)


def sub_id(sessions: Any) -> int:
    with sessions() as session:
        assert isinstance(session, Session)
        (sub,) = repo.list_subscriptions(session)
        assert sub.id is not None
        return sub.id
