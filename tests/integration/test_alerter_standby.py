"""Two alerters on one database: one active, one on standby; SIGKILL the active one in the
middle of a burst, and the standby takes over and raises the alert exactly once.

Real broker, real PostgreSQL, two `python -m services alerter` processes in one consumer
group. The stream is the ticker burst of test_alerter_stream (14 bearish $BA headlines in
6 minutes inside two calm hours), which raises exactly one alert. The active alerter is
killed after it has read the stream up to just before the window that opens the alert, so
the alert can only be raised by the one that takes over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.alerting.config import alerter_config
from services.alerting.store import alerter_lock_name
from services.broker import EmbeddedBroker
from services.settings import Settings
from services.storage import LeaderLock

from .alert_streams import T0, calm, expected_actions, in_event_order, play, ticker_burst
from .alerter_process import (
    SCORED_PARTITIONS,
    AlerterProcess,
    AlerterTopics,
    Run,
    alerts,
    evaluated_until,
    final_until,
    new_group,
    outbox,
)
from .pipeline import committed_total, migrated_engine, wait_for
from .test_leadership import terminate_holder

pytestmark = pytest.mark.integration

POLL_SECONDS = "1"


def active_gauge(alerter: AlerterProcess) -> float:
    _, body = alerter.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith("finsent_alerter_active "):
            return float(line.split()[1])
    raise AssertionError("no finsent_alerter_active in /metrics")


def test_the_standby_takes_over_a_killed_alerter_and_raises_the_alert_once(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    topics = AlerterTopics.create(make_topic)
    start = T0 + timedelta(minutes=85)
    burst = ticker_burst(ticker="BA", size=14, start=start, minutes=6, seed=3)
    items = in_event_order(calm(minutes=120, seed=1), burst)
    expected = expected_actions(items)
    opened = [a for a in expected if a.kind == "open"]
    assert [(a.alert.scope, a.alert.key) for a in opened] == [("ticker", "BA")]
    # the active alerter reads everything before the window that opens the alert: the
    # burst has begun, its alert cannot have been judged yet (the watermark trails by 2 min)
    opens_at = opened[0].at
    before = [i for i in items if i.published_at < opens_at]
    after = items[len(before) :]
    assert start < opens_at and [i for i in before if i.event_id.startswith("tburst-")]

    group = new_group()
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path, FINSENT_STANDBY_POLL_SECONDS=POLL_SECONDS)
    with (
        migrated_engine(fresh_postgres_url) as engine,
        run.alerter(group, name="alerter-a") as first,
    ):
        first.wait_ready()
        with run.alerter(group, name="alerter-b") as second:
            status, health = wait_for(
                second.health,
                lambda h: h[1]["status"] == "standby",
                timeout=60,
                what="the second alerter on standby",
                workers=[second],
            )
            assert status == 200 and health["role"] == "standby" and health["assigned_partitions"] == []
            assert "standby: another alerter is active" in second.log()
            assert (active_gauge(first), active_gauge(second)) == (1.0, 0.0)

            sent = play(engine, kafka_broker.bootstrap, topics.scored, before)
            wait_for(
                lambda: committed_total(
                    kafka_broker.bootstrap, group, topics.scored, partitions=SCORED_PARTITIONS
                ),
                lambda n: n >= sent // 2,
                timeout=60,
                what="the active alerter to be half way through the stream",
                workers=[first],
            )
            # SIGKILL while it works (a step or a commit may be in flight): its lock is
            # released by PostgreSQL the moment its connection ends
            first.kill()
            killed = time.monotonic()
            wait_for(
                lambda: "active: resuming" in second.log(),
                bool,
                timeout=30,
                what="the standby to take the lock",
                workers=[second],
            )
            lock_taken = time.monotonic() - killed
            judged = evaluated_until(engine)
            assert (judged is None or judged < opens_at) and alerts(
                engine
            ) == []  # the alert is still to come
            second.wait_ready(timeout=60)  # it joined the group and was assigned the partitions
            serving = time.monotonic() - killed
            print(f"takeover: lock after {lock_taken:.2f} s, partitions assigned after {serving:.2f} s")
            assert lock_taken < 5.0, lock_taken
            assert serving < 30.0, serving
            assert active_gauge(second) == 1.0

            sent += play(engine, kafka_broker.bootstrap, topics.scored, after)
            run.caught_up(engine, second, group, messages=sent, until=final_until(items))
            rows = alerts(engine)
            assert [(a.scope, a.key) for a in rows] == [("ticker", "BA")]
            assert rows[0].opened_at == opens_at
            box = outbox(engine)
            assert [o.dedupe_key for o in box] == [a.dedupe_key for a in expected if a.notify]
            assert len({o.dedupe_key for o in box}) == len(box)
            assert "alert open" in second.log() and "alert open" not in first.log()
            messages = consume_topic(topics.alerts, expected=len(box))
            assert [m.key.decode() for m in messages] == [o.dedupe_key for o in box]
            assert second.stop() == 0


def test_an_alerter_whose_lock_was_taken_steps_down_to_standby(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    """Its lock connection is cut (as a PostgreSQL restart or a network cut would) and the
    lock taken by another instance (here the test) before it could take it again: the
    alerter stops working and waits on standby; it becomes active again when the lock is free."""
    topics = AlerterTopics.create(make_topic)
    run = Run(kafka_broker, fresh_postgres_url, topics, tmp_path, FINSENT_STANDBY_POLL_SECONDS=POLL_SECONDS)
    with migrated_engine(fresh_postgres_url) as engine, run.alerter(new_group()) as alerter:
        alerter.wait_ready()
        other = LeaderLock(engine, alerter_lock_name(alerter_config(Settings()).rule))
        assert not other.try_acquire()  # the alerter holds it
        assert terminate_holder(fresh_postgres_url) == 1
        assert other.try_acquire()
        try:
            status, health = wait_for(
                alerter.health,
                lambda h: h[1]["status"] == "standby",
                timeout=30,
                what="the alerter to step down",
                workers=[alerter],
            )
            assert status == 200 and health["assigned_partitions"] == []
            assert active_gauge(alerter) == 0.0
            assert "back to standby" in alerter.log()
        finally:
            other.release()
        alerter.wait_ready(timeout=60)
        assert active_gauge(alerter) == 1.0 and alerter.log().count("active: resuming") == 2
        assert alerter.stop() == 0
