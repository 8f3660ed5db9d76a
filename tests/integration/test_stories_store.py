"""Story clustering at write time on PostgreSQL and SQLite: copies of real headlines join
the first item's story, whatever order and batches they are stored in; distinct headlines
do not; a replay changes nothing; sizes and sources are queryable; retention removes the
story rows with their items."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from services.storage import StoryBandRow, StoryMemberRow
from services.storage.models import NewsItemRow, NewsTickerRow, PredictionRow
from services.storage.retention import prune_older
from services.storage.story_queries import story_summaries

from .alert_streams import T0, calm, in_event_order
from .story_streams import store_with_stories, syndicated, wire_headline

pytestmark = pytest.mark.integration


@pytest.fixture
def clean(engine: Engine) -> Engine:
    with Session(engine) as session:
        for row in (StoryBandRow, StoryMemberRow, NewsTickerRow, PredictionRow, NewsItemRow):
            session.execute(delete(row))
        session.commit()
    return engine


def _stories(engine: Engine) -> dict[str, tuple[str, float]]:
    with Session(engine) as session:
        rows = session.execute(
            select(StoryMemberRow.event_id, StoryMemberRow.story_id, StoryMemberRow.novelty)
        )
        return {e: (s, round(n, 9)) for e, s, n in rows.tuples()}


def _stream() -> list:
    wire = syndicated(
        wire_headline(5), feeds=8, start=T0 + timedelta(minutes=20), minutes=30, topic="Energy / Oil"
    )
    other = syndicated(
        wire_headline(9), feeds=3, start=T0 + timedelta(minutes=25), minutes=5, topic="Macro", prefix="m"
    )
    return in_event_order(calm(minutes=60, seed=4), wire, other)


def test_copies_join_the_first_items_story_in_any_order(clean: Engine) -> None:
    items = _stream()
    wire = [i for i in items if i.event_id.startswith("syn-")]
    store_with_stories(clean, items[:40])
    store_with_stories(clean, items[40:])
    first = _stories(clean)
    first_wire = min(wire, key=lambda i: (i.published_at, i.event_id)).event_id
    assert {first[i.event_id][0] for i in wire} == {first_wire}
    assert first[first_wire][1] == 1.0 and all(
        first[i.event_id][1] < 0.5 for i in wire if i.event_id != first_wire
    )
    # the calm stream's real headlines stay stories of their own (the seed data repeats a few)
    calm_ids = [i.event_id for i in items if i.event_id.startswith("calm-")]
    assert sum(first[e][0] == e for e in calm_ids) >= 0.95 * len(calm_ids)
    # replaying a batch changes nothing
    store_with_stories(clean, items[10:50])
    assert _stories(clean) == first

    # the same items stored again from scratch, shuffled into other batches: the same stories
    with Session(clean) as session:
        for row in (StoryBandRow, StoryMemberRow, NewsTickerRow, PredictionRow, NewsItemRow):
            session.execute(delete(row))
        session.commit()
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    for i in range(0, len(shuffled), 7):
        store_with_stories(clean, shuffled[i : i + 7])
    assert _stories(clean) == first

    with Session(clean) as session:
        summary = story_summaries(session, [first_wire])[first_wire]
    assert (summary.items, summary.copies) == (8, 7)
    assert summary.sources == tuple(sorted(f"feed-{i}" for i in range(8)))


def test_retention_removes_story_rows_with_their_items(clean: Engine) -> None:
    items = _stream()
    store_with_stories(clean, items)
    prune_older(clean, T0 + timedelta(hours=2))
    with Session(clean) as session:
        assert session.scalars(select(StoryMemberRow.event_id)).all() == []
        assert session.scalars(select(StoryBandRow.event_id)).all() == []


def test_exact_copies_beyond_one_window_join_in_any_order(clean: Engine) -> None:
    """Three exact copies 20 h apart (window 24 h): the first and last are linked only through
    the middle one, and which of them stores band keys depends on the arrival order; the
    stories must not."""
    text = wire_headline(7)
    items = syndicated(text, feeds=1, start=T0, minutes=0, topic="Macro", prefix="a")
    copies = [
        replace(items[0], event_id=f"copy-{h}", published_at=T0 + timedelta(hours=h)) for h in (0, 20, 40)
    ]
    results = []
    for order in itertools.permutations(copies):
        with Session(clean) as session:
            for row in (StoryBandRow, StoryMemberRow, NewsTickerRow, PredictionRow, NewsItemRow):
                session.execute(delete(row))
            session.commit()
        for item in order:
            store_with_stories(clean, [item])
        results.append(_stories(clean))
    assert all(r == results[0] for r in results)
    assert {story for story, _ in results[0].values()} == {"copy-0"}
    with Session(clean) as session:  # not every copy stores its keys
        carriers = session.scalars(
            select(StoryMemberRow.event_id).where(StoryMemberRow.band_keys.is_not(None))
        )
        bands = session.scalars(select(StoryBandRow.event_id).distinct())
        assert len(set(carriers) | set(bands)) < 3
