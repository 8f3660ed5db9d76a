"""The dashboard on real PostgreSQL: every page, the dialect-specific SQL (GREATEST/LEAST,
epoch bucketing, websearch full-text search on the GIN index), and the writes."""

from __future__ import annotations

from datetime import timedelta

import dashboard_seed as seed
import pytest
from dashboard_support import *  # noqa: F403 (the fixtures)
from dashboard_support import errors, open_page
from sqlalchemy import text

from dashboards.data import indices, labelling, news
from dashboards.data.indices import TimeRange
from dashboards.data.news import NewsFilter
from services.storage import make_engine, session_factory

ALL = TimeRange(seed.START, seed.END)
PAGES = ["overview", "drilldown", "news", "alerts", "subscriptions", "labelling", "models"]

pytestmark = pytest.mark.integration  # a real PostgreSQL


def test_dashboard_on_postgres(fresh_postgres_url: str, make_app) -> None:
    seed.seed(fresh_postgres_url)
    engine = make_engine(fresh_postgres_url)
    try:
        with session_factory(engine)() as session:
            five = indices.index_series(session, scope="market", key=None, period=ALL, width=300)
            assert five["total"].sum() == seed.MINUTES and (five["total"] == 5).all()
            assert five["bucket_start"].iloc[0] == seed.START
            assert indices.newest_bucket(session) == seed.END - timedelta(minutes=1)

            def count(**kw: object) -> int:
                return news.count_news(session, filter=NewsFilter(period=ALL, **kw))[0]  # type: ignore[arg-type]

            assert count() == seed.MINUTES
            assert count(model_version="v2") == 5
            assert count(text="OPEC") == 1  # websearch_to_tsquery, stemmed: "talks fail"
            assert count(text="plunge -OPEC") == 1
            assert count(text='"supply glut"') == 1
            assert count(text="oil or crude") >= 2
            assert count(min_confidence=0.9) < count(min_confidence=0.6)

            frame = news.drilldown(
                session,
                scope="topic",
                key="Energy / Oil",
                period=TimeRange(seed.END - timedelta(hours=1), seed.END),
            )
            assert frame["headline"].iloc[0] == seed.SCRIPT_HEADLINE
            uncertain = labelling.uncertain_stories(
                session, task="sentiment", period=TimeRange(seed.END - timedelta(days=7), seed.END), limit=5
            )
            assert uncertain[0].text == seed.UNSURE_HEADLINE

            # The search condition is the GIN index's expression, so the planner can use it.
            stmt = news.news_statement(NewsFilter(period=ALL, text="OPEC"), "postgresql")
            compiled = stmt.compile(engine, compile_kwargs={"render_postcompile": True})
            assert "to_tsvector('english', news_items.headline)" in str(compiled)
            session.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(
                r[0]
                for r in session.execute(
                    text(
                        "EXPLAIN SELECT event_id FROM news_items "
                        "WHERE to_tsvector('english', headline) @@ websearch_to_tsquery('english', :q)"
                    ),
                    {"q": "OPEC"},
                )
            )
            assert "ix_news_items_headline_fts" in plan
    finally:
        engine.dispose()

    for page in PAGES:
        at = open_page(make_app("adam", url=fresh_postgres_url), page)
        assert not errors(at), (page, errors(at))
    at = open_page(make_app("anna", url=fresh_postgres_url), "news")
    at.text_input(key="nb_search").input("OPEC talks").run()
    assert not errors(at)
    assert list(at.dataframe[0].value["headline"]) == [seed.IMG_HEADLINE]


def test_dashboard_statements_are_cancelled_past_the_time_limit(
    fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An analyst chooses any range and any search, hence a query's cost: PostgreSQL cancels
    a dashboard statement after STATEMENT_TIMEOUT_MS instead of running it to the end."""
    from sqlalchemy.exc import OperationalError

    from dashboards import context

    monkeypatch.setattr(context, "STATEMENT_TIMEOUT_MS", 300)
    engine = context._engine(fresh_postgres_url)
    try:
        for _ in range(2):  # a pooled connection keeps it (the pool's rollback does not undo it)
            with session_factory(engine)() as session:
                assert session.scalar(text("SHOW statement_timeout")) == "300ms"
        with session_factory(engine)() as session, pytest.raises(OperationalError, match="statement timeout"):
            session.execute(text("SELECT pg_sleep(5)"))
    finally:
        engine.dispose()
        context._engine.clear()
