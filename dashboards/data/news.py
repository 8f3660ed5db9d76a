"""Stories with the model's probabilities: the news browser, the drill-down, alert evidence.

One row per story: the copies of a story re-published by several outlets (services.stories)
are collapsed into its first item, with their number in `copies` (`story_items` lists them),
unless `NewsFilter.collapse_stories` is off. A story scored by several model versions (a
replay after a promotion) shows its *first* stored prediction unless a model version is
asked for: the same rule the alerter's buckets follow, so the headlines behind a bar add up
to the bar. The rule is an anti-join on `(event_id, id)`, answered by the unique
`(event_id, model_version)` index.

Browsing pages with a keyset cursor `(published_at, prediction id)`: page 1000 costs what
page 1 costs (OFFSET would scan every row before it), and new stories arriving while an
analyst pages do not shift the rows under them.

Influence (drill-down order): `|sentiment_score| x confidence`, where `sentiment_score` is
`p_bullish - p_bearish` and confidence is the probability of the predicted class. A story
the model calls strongly bearish *and* is sure about moves the index most and is most worth
reading first; a 0.4/0.3/0.3 story contributes almost nothing either way.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import pandas as pd
from sqlalchemy import Select, and_, case, exists, func, not_, or_, select
from sqlalchemy.orm import Session, aliased

from dashboards.data.indices import TimeRange
from dashboards.data.sql import FTS_CONFIG, dialect_of, greatest
from services.storage.models import NewsItemRow, NewsTickerRow, PredictionRow
from services.storage.story_models import StoryMemberRow

P = PredictionRow
N = NewsItemRow
M = StoryMemberRow
SENTIMENTS: Final[tuple[str, ...]] = ("bearish", "neutral", "bullish")
MAX_PAGE_SIZE: Final = 500
COUNT_CAP: Final = 10_000
# Longest search text used; the rest is ignored. A query is a few words or a phrase, and
# a client can send a text box any length: a megabyte of words would become a tsquery of
# tens of thousands of terms (PostgreSQL) or as many LIKE conditions (SQLite, which refuses
# more than 32,766 bound parameters). 200 characters cut no headline phrase (1,000 at most).
MAX_SEARCH_CHARS: Final = 200
NEWS_COLUMNS: Final = (
    "published_at",
    "headline",
    "source",
    "tickers",
    "topic",
    "topic_score",
    "sentiment",
    "p_bearish",
    "p_neutral",
    "p_bullish",
    "sentiment_score",
    "confidence",
    "influence",
    "model_version",
    "url",
    "event_id",
    "story_id",
    "novelty",
    "copies",
)


@dataclass(frozen=True, slots=True)
class NewsFilter:
    """What the news browser (and the drill-down) asks for; every field narrows the result."""

    period: TimeRange
    topics: tuple[str, ...] = ()
    sentiments: tuple[str, ...] = ()
    ticker: str | None = None
    source: str | None = None
    min_confidence: float = 0.0  # probability of the predicted sentiment
    text: str | None = None  # full-text query (PostgreSQL websearch syntax)
    model_version: str | None = None  # None: each story's first prediction
    # One row per story (its first item, with the number of copies) instead of one per item.
    collapse_stories: bool = True


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next (older) page starts: after this row in (published_at, id) order."""

    published_at: datetime
    prediction_id: int


@dataclass(frozen=True, slots=True)
class NewsPage:
    rows: pd.DataFrame
    next_cursor: Cursor | None  # None: this is the last page


# --------------------------------------------------------------------------- pure helpers


def confidence(p_bearish: float, p_neutral: float, p_bullish: float) -> float:
    return max(p_bearish, p_neutral, p_bullish)


def influence(sentiment_score: float, p_bearish: float, p_neutral: float, p_bullish: float) -> float:
    """|sentiment_score| x confidence (module docstring)."""
    return abs(sentiment_score) * confidence(p_bearish, p_neutral, p_bullish)


def rank_by_influence(rows: Iterable[Any]) -> list[Any]:
    """`rows` (with sentiment_score and p_* attributes) most influential first; ties newest first."""
    items = list(rows)
    items.sort(key=lambda r: r.published_at, reverse=True)
    items.sort(
        key=lambda r: influence(r.sentiment_score, r.p_bearish, r.p_neutral, r.p_bullish), reverse=True
    )
    return items


_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')


def parse_search(query: str) -> tuple[list[str], list[str]]:
    """(required terms, excluded terms) of a websearch-style query, for the SQLite fallback:
    words and "quoted phrases" must all occur, -word / -"phrase" must not; `or` is not
    supported there (PostgreSQL's websearch_to_tsquery handles the full syntax)."""
    include: list[str] = []
    exclude: list[str] = []
    for m in _TOKEN.finditer(query):
        negated = bool(m.group(1) or m.group(3))
        term = (m.group(2) if m.group(2) is not None else m.group(4)).strip()
        if not term or (not negated and term.lower() == "or"):
            continue
        (exclude if negated else include).append(term)
    return include, exclude


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell that a spreadsheet will not run as a formula: untrusted text starting with
    = + - @ gets a leading apostrophe (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered as links: a `javascript:` URL from a feed must not be."""
    if url and re.match(r"(?i)https?://", url.strip()):
        return url.strip()
    return None


# --------------------------------------------------------------------------- statements


def _columns(dialect: str) -> list[Any]:
    conf = greatest(dialect, P.p_bearish, P.p_neutral, P.p_bullish)
    return [
        P.published_at,
        N.headline,
        N.source,
        N.tickers,
        P.topic,
        P.topic_score,
        P.sentiment,
        P.p_bearish,
        P.p_neutral,
        P.p_bullish,
        P.sentiment_score,
        conf.label("confidence"),
        (func.abs(P.sentiment_score) * conf).label("influence"),
        P.model_version,
        N.url,
        P.event_id,
        func.coalesce(M.story_id, P.event_id).label("story_id"),
        func.coalesce(M.novelty, 1.0).label("novelty"),
        _copies().label("copies"),
        P.id,
    ]


def _copies() -> Any:
    """Items of the row's story beyond the first (0 for an item without a story row)."""
    other = aliased(StoryMemberRow)
    size = select(func.count()).where(other.story_id == M.story_id).scalar_subquery()
    return case((M.story_id.is_(None), 0), else_=size - 1)


def first_prediction_only() -> Any:
    earlier = aliased(PredictionRow)
    return not_(exists().where(earlier.event_id == P.event_id, earlier.id < P.id))


# Below this many full-text hits in the range, reading the GIN index first beats walking
# published_at and re-computing to_tsvector per row (113 ms vs 1.4 s for a rare word over a
# year of 1M stories); above it the range scan wins (benchmarks/results/dashboard_queries.md).
FEW_TEXT_HITS = 5000


def search_text(f: NewsFilter) -> str | None:
    """The filter's search text as queried: stripped, at most MAX_SEARCH_CHARS; None if blank."""
    text = (f.text or "").strip()[:MAX_SEARCH_CHARS].strip()
    return text or None


def news_statement(
    f: NewsFilter, dialect: str, *, columns: list[Any] | None = None, text_hits: Any = None
) -> Select[Any]:
    """The filtered rows, unordered and unlimited (callers add order, cursor and limit).

    `columns`: select only these (then news_items is joined only if a filter needs it: the
    join made counting 10x slower); `text_hits`: a CTE of matching event ids to use instead
    of the per-row text match (see `_text_hits`)."""
    text = search_text(f)
    needs_items = columns is None or bool(f.source) or text is not None
    stmt = select(*(columns if columns is not None else _columns(dialect)))
    if needs_items:
        stmt = stmt.join(N, N.event_id == P.event_id)
    if columns is None or f.collapse_stories:
        stmt = stmt.outerjoin(M, M.event_id == P.event_id)
    if f.collapse_stories:
        # a story is listed once, at its first item (filters apply to that item)
        stmt = stmt.where(or_(M.story_id.is_(None), M.story_id == P.event_id))
    stmt = stmt.where(P.published_at >= f.period.start, P.published_at < f.period.end)
    if f.model_version:
        stmt = stmt.where(P.model_version == f.model_version)
    else:
        stmt = stmt.where(first_prediction_only())
    if f.topics:
        stmt = stmt.where(P.topic.in_(f.topics))
    if f.sentiments:
        stmt = stmt.where(P.sentiment.in_(f.sentiments))
    if f.ticker:
        stmt = _with_ticker(stmt, f.ticker, f.period)
    if f.source:
        stmt = stmt.where(N.source == f.source)
    if f.min_confidence > 0:
        # max(p) >= c  <=>  some p >= c: no GREATEST needed, the same on both databases
        c = f.min_confidence
        stmt = stmt.where(or_(P.p_bearish >= c, P.p_neutral >= c, P.p_bullish >= c))
    if text_hits is not None:
        stmt = stmt.where(P.event_id.in_(select(text_hits.c.event_id)))
    elif text is not None:
        stmt = stmt.where(text_match(text, dialect))
    return stmt


def _text_hits(session: Session, f: NewsFilter) -> Any:
    """PostgreSQL: the GIN index first when the words are rare (a MATERIALIZED CTE), else None."""
    text = search_text(f)
    if text is None or dialect_of(session) != "postgresql":
        return None
    hits = select(N.event_id).where(
        text_match(text, "postgresql"),
        N.published_at >= f.period.start,
        N.published_at < f.period.end,
    )
    n = session.scalar(select(func.count()).select_from(hits.limit(FEW_TEXT_HITS + 1).subquery())) or 0
    if n > FEW_TEXT_HITS:
        return None
    return hits.cte("text_hits").prefix_with("MATERIALIZED")


def _with_ticker(stmt: Select[Any], ticker: str, period: TimeRange) -> Select[Any]:
    return stmt.join(
        NewsTickerRow,
        and_(
            NewsTickerRow.event_id == P.event_id,
            NewsTickerRow.ticker == ticker.strip().upper().removeprefix("$"),
            # the range on the ticker table lets its (ticker, published_at) index drive the join
            NewsTickerRow.published_at >= period.start,
            NewsTickerRow.published_at < period.end,
        ),
    )


def text_match(query: str, dialect: str) -> Any:
    """Full-text condition on the headline: the GIN index expression on PostgreSQL, LIKE on SQLite."""
    if dialect == "postgresql":
        return func.to_tsvector(FTS_CONFIG, N.headline).op("@@")(func.websearch_to_tsquery(FTS_CONFIG, query))
    include, exclude = parse_search(query)
    conditions = [N.headline.contains(term, autoescape=True) for term in include]
    conditions += [not_(N.headline.contains(term, autoescape=True)) for term in exclude]
    return and_(*conditions) if conditions else and_(True)


def _frame(rows: Sequence[Any]) -> pd.DataFrame:
    data = [
        {
            **{col: getattr(r, col) for col in NEWS_COLUMNS if col not in ("tickers", "url")},
            "tickers": ", ".join(r.tickers or ()),
            "url": safe_url(r.url),
        }
        for r in rows
    ]
    return pd.DataFrame(data, columns=list(NEWS_COLUMNS))


# --------------------------------------------------------------------------- queries


def clamp_page_size(page_size: int) -> int:
    return max(1, min(int(page_size), MAX_PAGE_SIZE))


def news_page(
    session: Session, *, filter: NewsFilter, page_size: int, after: Cursor | None = None
) -> NewsPage:
    """Newest first, `page_size` rows (at most MAX_PAGE_SIZE) after `after`."""
    size = clamp_page_size(page_size)
    stmt = news_statement(filter, dialect_of(session), text_hits=_text_hits(session, filter))
    if after is not None:
        stmt = stmt.where(
            or_(
                P.published_at < after.published_at,
                and_(P.published_at == after.published_at, P.id < after.prediction_id),
            )
        )
    rows = session.execute(stmt.order_by(P.published_at.desc(), P.id.desc()).limit(size + 1)).all()
    more = len(rows) > size
    rows = rows[:size]
    cursor = Cursor(rows[-1].published_at, rows[-1].id) if more and rows else None
    return NewsPage(_frame(rows), cursor)


def count_news(session: Session, *, filter: NewsFilter, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """(matching stories, True if there are more than `cap`): counting stops at the cap, so a
    broad filter over a year costs a bounded scan."""
    inner = news_statement(filter, dialect_of(session), columns=[P.id]).limit(cap + 1).subquery()
    n = session.scalar(select(func.count()).select_from(inner)) or 0
    return min(n, cap), n > cap


def export_csv(session: Session, *, filter: NewsFilter, max_rows: int) -> bytes:
    """The filter's newest `max_rows` stories as UTF-8 CSV, safe to open in a spreadsheet."""
    stmt = news_statement(filter, dialect_of(session)).order_by(P.published_at.desc(), P.id.desc())
    frame = _frame(session.execute(stmt.limit(max_rows)).all())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(frame.columns)
    for row in frame.itertuples(index=False):
        writer.writerow([_csv_value(v) for v in row])
    return out.getvalue().encode("utf-8")


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return ""
    return csv_safe(value)


Scope = Literal["market", "topic", "ticker"]


def drilldown(
    session: Session,
    *,
    scope: Scope,
    key: str | None,
    period: TimeRange,
    sentiments: tuple[str, ...] = (),
    limit: int = 200,
) -> pd.DataFrame:
    """The stories behind one index over `period`, most influential first (module docstring),
    each story once; among equally influential ones, the most re-published first."""
    f = NewsFilter(
        period=period,
        topics=(key,) if scope == "topic" and key else (),
        ticker=key if scope == "ticker" else None,
        sentiments=sentiments,
    )
    dialect = dialect_of(session)
    conf = greatest(dialect, P.p_bearish, P.p_neutral, P.p_bullish)
    stmt = news_statement(f, dialect).order_by(
        (func.abs(P.sentiment_score) * conf).desc(), _copies().desc(), P.published_at.desc(), P.id.desc()
    )
    return _frame(session.execute(stmt.limit(clamp_page_size(limit))).all())


def story_items(session: Session, *, story_id: str, limit: int = MAX_PAGE_SIZE) -> pd.DataFrame:
    """Every item of a story (the first and its copies), in order of publication."""
    stmt = (
        select(*_columns(dialect_of(session)))
        .join(N, N.event_id == P.event_id)
        .outerjoin(M, M.event_id == P.event_id)
        .where(or_(M.story_id == story_id, P.event_id == story_id), first_prediction_only())
        .order_by(P.published_at, P.event_id)
        .limit(clamp_page_size(limit))
    )
    return _frame(session.execute(stmt).all())


def stories_by_id(session: Session, *, event_ids: Sequence[str]) -> pd.DataFrame:
    """The given stories (e.g. an alert's driving headlines), most influential first."""
    if not event_ids:
        return _frame([])
    stmt = (
        select(*_columns(dialect_of(session)))
        .join(N, N.event_id == P.event_id)
        .outerjoin(M, M.event_id == P.event_id)
        .where(P.event_id.in_(list(event_ids)), first_prediction_only())
    )
    return _frame(rank_by_influence(session.execute(stmt).all()))


def model_versions_seen(session: Session, *, period: TimeRange, limit: int = 20) -> list[str]:
    """Model versions that scored stories in `period` (for the browser's version filter)."""
    stmt = (
        select(P.model_version)
        .where(P.published_at >= period.start, P.published_at < period.end)
        .group_by(P.model_version)
        .order_by(func.max(P.scored_at).desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))
