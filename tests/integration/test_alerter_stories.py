"""Stories, not items, through the real broker, PostgreSQL and `python -m services alerter`:
a bearish wire story carried by eight feeds on a calm stream raises no alert (counted as
stories it is one), while a real burst of distinct bearish stories still raises one, whose
evidence lists its stories with their copy counts. The same syndicated story counted as
items (the pure pipeline on the same stream) does fire: the test can tell the two apart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.broker import EmbeddedBroker

from .alert_streams import T0, calm, expected_actions, in_event_order, topic_burst
from .alerter_process import AlerterTopics, alerts, new_group, wait_until_caught_up
from .pipeline import migrated_engine
from .story_streams import play_with_stories, syndicated, wire_headline
from .test_alerter_stream import Run, final_until

pytestmark = pytest.mark.integration

SYNDICATED_AT = T0 + timedelta(minutes=90)
BURST_AT = T0 + timedelta(minutes=130)
WIRE_TOPIC = "Energy / Oil"
BURST_TOPIC = "Macro"


def test_a_syndicated_story_is_one_story_and_a_real_burst_still_alerts(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    wire = syndicated(wire_headline(5), feeds=8, start=SYNDICATED_AT, minutes=3, topic=WIRE_TOPIC)
    burst = topic_burst(topic=BURST_TOPIC, size=12, start=BURST_AT, minutes=4, seed=3)
    items = in_event_order(calm(minutes=150, seed=1), wire, burst)
    assert {i.sentiment for i in wire} == {"bearish"} and len({i.headline for i in wire}) == 8

    # counted as items (the pure reference), the eight copies alone open an alert on their topic
    by_items = [a for a in expected_actions(items) if a.kind == "open"]
    assert any(
        a.alert.key == WIRE_TOPIC and SYNDICATED_AT <= a.at <= SYNDICATED_AT + timedelta(minutes=5)
        for a in by_items
    ), by_items

    topics = AlerterTopics.create(make_topic)
    group = new_group()
    with (
        migrated_engine(fresh_postgres_url) as engine,
        Run(kafka_broker, fresh_postgres_url, topics, tmp_path).alerter(group) as alerter,
    ):
        alerter.wait_ready()
        sent = play_with_stories(engine, kafka_broker.bootstrap, topics.scored, items)
        wait_until_caught_up(
            engine,
            alerter,
            bootstrap=kafka_broker.bootstrap,
            group=group,
            topic=topics.scored,
            messages=sent,
            until=final_until(items),
        )
        rows = alerts(engine)
        assert not [a for a in rows if a.opened_at < BURST_AT], rows  # the wire story raised nothing
        assert ("topic", BURST_TOPIC) in {(a.scope, a.key) for a in rows}, rows
        for a in rows:
            assert BURST_AT < a.opened_at <= BURST_AT + timedelta(minutes=5)
            stories: list[dict[str, Any]] = a.evidence["stories"]
            assert [s["story_id"] for s in stories] == a.evidence["event_ids"]
            assert all(s["copies"] == 0 for s in stories)  # distinct stories, no copies
        assert alerter.stop() == 0
