"""`finsent prune` and services/storage/retention.py on real PostgreSQL (and SQLite): only
stories older than the cutoff go, with exactly their tickers and predictions; what the
retention keeps (labels, alerts, buckets) stays; the command asks first."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from services.storage import (
    AlertRow,
    LabelRow,
    NewsItemRow,
    NewsTickerRow,
    PredictionRow,
    ScoredItem,
    SentimentBucketRow,
    count_older,
    prune_older,
    session_factory,
    upgrade_database,
    upsert_scored_batch,
)

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
REPO = Path(__file__).resolve().parents[2]


def scored(i: int, age_days: float, model_version: str) -> ScoredItem:
    published = NOW - timedelta(days=age_days, minutes=i)
    return ScoredItem(
        event_id=f"{'old' if age_days > 30 else 'new'}-{i:03d}",
        headline=f"headline {i}",
        published_at=published,
        received_at=published + timedelta(seconds=2),
        model_version=model_version,
        topic="Earnings",
        topic_score=0.9,
        sentiment="bearish",
        p_bearish=0.8,
        p_neutral=0.1,
        p_bullish=0.1,
        sentiment_score=-0.7,
        scored_at=published + timedelta(seconds=3),
        tickers=("AAPL", "MSFT") if i % 2 else ("AAPL",),
    )


def populate(engine: Engine, old: int, new: int) -> None:
    """`old` stories 40-41 days old and `new` ones 1 day old, each scored by two model
    versions; a label and an alert naming an old story, and a sentiment bucket."""
    with session_factory(engine).begin() as session:
        for version in ("v1", "v2"):
            items = [scored(i, 40, version) for i in range(old)] + [scored(i, 1, version) for i in range(new)]
            upsert_scored_batch(session, items=items)
        session.add(
            LabelRow(
                event_id="old-000", text="headline 0", text_hash="0" * 64, task="sentiment", label="bearish",
                labeller="alice", source="dashboard", split="train", created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        session.add(
            AlertRow(
                alert_key="market|*|old", rule="negative_spike", scope="market", key="*",
                window_start=NOW - timedelta(days=40), opened_at=NOW - timedelta(days=40),
                last_detected_at=NOW - timedelta(days=40), severity="high", notified_severity="high",
                last_notified_at=NOW - timedelta(days=40), detections=1, status="resolved",
                resolved_at=NOW - timedelta(days=40), evidence={}, event_ids=["old-000", "old-001"],
                created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        session.add(
            SentimentBucketRow(
                scope="market", key="*", width_seconds=60, bucket_start=NOW - timedelta(days=40),
                total=3, bearish=3, neutral=0, bullish=0, score_sum=-2.1, updated_at=NOW,
            )
        )  # fmt: skip


def counts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:

        def n(model: Any) -> int:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()

        orphans = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM predictions p WHERE NOT EXISTS "
                "(SELECT 1 FROM news_items n WHERE n.event_id = p.event_id))"
                " + (SELECT count(*) FROM news_tickers t WHERE NOT EXISTS "
                "(SELECT 1 FROM news_items n WHERE n.event_id = t.event_id))"
            )
        ).scalar_one()
        ids = set(conn.execute(select(NewsItemRow.event_id)).scalars())
        return {
            "news": n(NewsItemRow),
            "predictions": n(PredictionRow),
            "tickers": n(NewsTickerRow),
            "labels": n(LabelRow),
            "alerts": n(AlertRow),
            "buckets": n(SentimentBucketRow),
            "orphans": orphans,
            "ids": ids,
        }


def test_prune_deletes_only_older_stories_and_their_rows(engine: Engine) -> None:
    populate(engine, old=23, new=9)
    old_tickers = sum(2 if i % 2 else 1 for i in range(23))
    new_tickers = sum(2 if i % 2 else 1 for i in range(9))
    before = counts(engine)
    assert (before["news"], before["predictions"], before["tickers"]) == (32, 64, old_tickers + new_tickers)
    cutoff = NOW - timedelta(days=30)

    preview = count_older(engine, cutoff)
    assert (preview.news_items, preview.predictions, preview.news_tickers) == (23, 46, old_tickers)

    batches: list[int] = []
    done = prune_older(engine, cutoff, batch_size=5, on_batch=lambda b: batches.append(b.news_items))
    assert batches == [5, 5, 5, 5, 3]
    assert (done.news_items, done.predictions, done.news_tickers, done.batches) == (23, 46, old_tickers, 5)

    after = counts(engine)
    assert after["ids"] == {f"new-{i:03d}" for i in range(9)}
    assert (after["news"], after["predictions"], after["tickers"]) == (9, 18, new_tickers)
    assert after["orphans"] == 0
    assert (after["labels"], after["alerts"], after["buckets"]) == (1, 1, 1)  # kept on purpose

    again = prune_older(engine, cutoff)
    assert (again.news_items, again.batches) == (0, 0)


def test_the_cutoff_is_strict(engine: Engine) -> None:
    populate(engine, old=0, new=3)
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(NewsItemRow.published_at))).scalar_one()
    assert prune_older(engine, oldest).news_items == 0  # published exactly at the cutoff: kept
    assert prune_older(engine, oldest + timedelta(microseconds=1)).news_items == 1


def run_cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FINSENT_DATABASE_URL": url, "FINSENT_LOG_FORMAT": "console"}
    return subprocess.run(
        [sys.executable, "-m", "services", "prune", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cli_confirms_unless_yes_then_prunes(fresh_postgres_url: str) -> None:
    upgrade_database(fresh_postgres_url)
    from services.storage import make_engine

    engine = make_engine(fresh_postgres_url)
    try:
        populate(engine, old=4, new=2)
        refused = run_cli(fresh_postgres_url, "--older-than", "30", stdin="y\n")  # stdin is no terminal
        assert refused.returncode == 2, refused.stderr
        assert "4 stories published before" in refused.stdout
        assert refused.stderr.strip().endswith("pass --yes")
        assert len(refused.stderr.strip().splitlines()) == 1
        assert counts(engine)["news"] == 6  # nothing deleted

        done = run_cli(fresh_postgres_url, "--older-than", "30", "--yes", "--batch-size", "3")
        assert done.returncode == 0, done.stderr
        assert "deleted 4 stories, 8 predictions" in done.stdout
        assert "in 2 batches" in done.stdout
        after = counts(engine)
        assert after["ids"] == {"new-000", "new-001"}
        assert after["orphans"] == 0

        nothing = run_cli(fresh_postgres_url, "--older-than", "30", "--yes")
        assert nothing.returncode == 0 and "nothing to delete" in nothing.stdout
    finally:
        engine.dispose()


def test_cli_rejects_a_retention_under_a_day(fresh_postgres_url: str) -> None:
    result = run_cli(fresh_postgres_url, "--older-than", "0.5", "--yes")
    assert result.returncode == 2
    assert "--older-than" in result.stderr and "Traceback" not in result.stderr
