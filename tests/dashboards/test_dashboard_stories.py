"""The news browser's stories: a headline re-published by eight feeds is one row with its
copies counted, listed on demand, ranked once in the drill-down and exported with its
story id and each copy's novelty; with collapsing off every item is a row again."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from dashboards.data import news
from dashboards.data.indices import TimeRange
from dashboards.data.news import NewsFilter
from services.scorer.sink import RetryPolicy, store_batch
from services.storage import ScoredItem, make_engine, upgrade_database
from services.stories import StoryClustering

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WIRE = "Boeing shares fall after FAA orders new 737 MAX inspections"
COPIES = [
    WIRE,
    "UPDATE 1-" + WIRE + " - Reuters",
    "BREAKING: " + WIRE.upper(),
    WIRE + " https://t.co/Zx81kq",
    "RPT-" + WIRE + " | Bloomberg",
    WIRE + " (AP)",
    "=HYPERLINK(1)-" + WIRE,  # a copy whose title a spreadsheet would run
    WIRE + " via @WSJ",
]
OTHERS = [
    "Oil prices jump as OPEC+ agrees deeper output cuts",
    "Apple upgraded to buy from hold at Jefferies",
    "Boeing shares rise after FAA clears 737 MAX to fly again",
]


def item(event_id: str, headline: str, minutes: float, sentiment: str, source: str) -> ScoredItem:
    at = T0 + timedelta(minutes=minutes)
    p = {"bearish": 0.9 if sentiment == "bearish" else 0.05, "neutral": 0.05}
    p["bullish"] = 1.0 - p["bearish"] - p["neutral"]
    return ScoredItem(
        event_id=event_id, headline=headline, published_at=at, received_at=at, model_version="m1",
        topic="Stock Movement", topic_score=0.9, sentiment=sentiment, p_bearish=p["bearish"],
        p_neutral=p["neutral"], p_bullish=p["bullish"], sentiment_score=p["bullish"] - p["bearish"],
        scored_at=at, source=source,
    )  # fmt: skip


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'stories.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    items = [item(f"wire-{i}", h, 2 * i, "bearish", f"feed-{i}") for i, h in enumerate(COPIES)]
    items += [item(f"other-{i}", h, 3 * i + 1, "bullish", "tfn") for i, h in enumerate(OTHERS)]
    clustering = StoryClustering(threshold=0.5, window=timedelta(hours=24))
    for i in range(0, len(items), 4):  # in slices, as the scorer stores them
        store_batch(lambda: Session(engine), items[i : i + 4], retry=RetryPolicy(), stories=clustering)
    with Session(engine) as s:
        yield s
    engine.dispose()


PERIOD = TimeRange(T0, T0 + timedelta(hours=1))


def test_a_story_is_one_row_with_its_copies(session: Session) -> None:
    page = news.news_page(session, filter=NewsFilter(period=PERIOD), page_size=50)
    rows = page.rows.set_index("event_id")
    assert sorted(rows.index) == ["other-0", "other-1", "other-2", "wire-0"]
    assert rows.loc["wire-0", "copies"] == 7 and rows.loc["wire-0", "story_id"] == "wire-0"
    assert rows.loc["other-2", "copies"] == 0  # shares words with the wire story, not its story
    assert news.count_news(session, filter=NewsFilter(period=PERIOD)) == (4, False)

    flat = NewsFilter(period=PERIOD, collapse_stories=False)
    assert news.count_news(session, filter=flat) == (11, False)
    assert len(news.news_page(session, filter=flat, page_size=50).rows) == 11

    copies = news.story_items(session, story_id="wire-0")
    assert list(copies["event_id"]) == [f"wire-{i}" for i in range(8)]
    assert list(copies["headline"]) == COPIES  # stored text, shown as text
    assert copies["novelty"].iloc[0] == 1.0 and (copies["novelty"].iloc[1:] < 0.5).all()


def test_drilldown_ranks_stories_and_csv_has_story_and_novelty(session: Session) -> None:
    ranked = news.drilldown(session, scope="market", key=None, period=PERIOD)
    assert next(iter(ranked["event_id"])) == "wire-0" and len(ranked) == 4

    flat = NewsFilter(period=PERIOD, collapse_stories=False)
    data = news.export_csv(session, filter=flat, max_rows=100).decode("utf-8")
    rows = {r["event_id"]: r for r in csv.DictReader(io.StringIO(data))}
    assert {"story_id", "novelty", "copies"} <= set(next(iter(rows.values())))
    assert {rows[f"wire-{i}"]["story_id"] for i in range(8)} == {"wire-0"}
    assert float(rows["wire-0"]["novelty"]) == 1.0 and float(rows["wire-3"]["novelty"]) < 0.5
    assert rows["wire-6"]["headline"].startswith("'=")  # neutralised for spreadsheets
