"""How fast each dashboard page's queries answer on a year of news (1,000,000 stories).

Usage:
    nice -n 5 .venv/bin/python benchmarks/dashboard_queries.py [--fresh | --reuse] [--items 1000000]
        [--repeats 5] [--seed 7] [--database finsent_bench_dashboard]

The database (`finsent_bench_dashboard` on the server at FINSENT_BENCH_POSTGRES_URL, default
the local trust-auth server) is created if missing and migrated with `upgrade_database`, so
its schema and indexes are exactly what `finsent db upgrade` makes. It is seeded once and
kept: seeding takes minutes, timing seconds. `--reuse` insists on an existing seeded
database, `--fresh` drops and reseeds it. What was seeded (items, seed, end) is recorded as
the database's comment, so a run never times a database of another size by mistake.

The data is a year of realistic news: real headlines from the packaged seed data,
bert_core/seed_data (their cashtags
become tickers, their labels steer topic and sentiment), event ids derived as the ingest
derives them (hashes: id order is not time order, which matters to plans that walk the
primary key), arrivals with a daily and weekly cycle, the model's probabilities drawn from
Dirichlet distributions around the predicted class, a second model version re-scoring the
last 30 days (so "first prediction per story" has work to do), sentiment_buckets computed
from the first predictions exactly as the alerter does (checked against
`aggregate(load_stories(...))` on sample minutes), and a year of alerts, labels, model
versions, retraining runs, gate decisions, subscriptions. Rows go in with COPY; the buckets
with one INSERT ... SELECT; then VACUUM ANALYZE, the state autovacuum reaches on a live
system.

What is timed: each page's queries as the page calls them. The query functions are imported
from dashboards.data and called with the arguments the page scripts build (read
dashboards/views/*.py: the time range presets anchored at the newest stored bucket, the bucket
width from `choose_width`, the news browser's `NewsFilter` and keyset cursor, ...). Per
case and query:

- cold: the first call on a new connection (empty plan and catalogue caches; the server's
  buffer cache is whatever the previous queries left, the OS cache too: nothing is evicted
  on a machine shared with others);
- warm: `--repeats` further calls, uncached by the dashboard;
- cached: a hit in `st.cache_data` through `dashboards.context.cached_query`, which is what
  a page rerun within the TTL costs.

A page's time is the sum of its queries' times in one run. The pages cache with a TTL, but
the first analyst after the TTL (and every new filter) pays the uncached time, so the
verdict (< 1 s) is on the slowest uncached run, cold included. Any statement slower than
--explain-ms is run again under EXPLAIN (ANALYZE, BUFFERS) and its plan saved.

Writes benchmarks/results/dashboard_queries.json and .md (plans in the .md). A reused
database is first migrated to the current head, so a new index migration is measured on the
same data.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import Engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_file import describe, finish, machine, result_path, write_json  # noqa: E402

from bert_core import TOPIC_LABELS, packaged_seed_data  # noqa: E402
from services.schemas.news_raw import derive_event_id  # noqa: E402
from services.storage import (  # noqa: E402
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade_database,
)

SEED_FILES = packaged_seed_data()
ADMIN_URL = os.environ.get("FINSENT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
END = datetime(2026, 11, 1, tzinfo=UTC)  # the newest story is just before this
DAYS = 365
SECOND_MODEL_DAYS = 30
BASE = 60  # the alerter's bucket width (FINSENT_ALERT_BUCKET_SECONDS default)
SENTIMENTS = ("bearish", "neutral", "bullish")
SOURCES = ("Reuters", "Bloomberg", "Dow Jones", "MarketWatch", "CNBC", "Seeking Alpha", "Benzinga", "wire-x")
SOURCE_WEIGHTS = (0.22, 0.2, 0.12, 0.1, 0.1, 0.1, 0.1, 0.06)
ANALYSTS = ("alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi")
CASHTAG = re.compile(r"\$([A-Z]{1,5})\b")
URL = re.compile(r"\s*https?://\S+")
LIMIT_MS = 1000.0


# --------------------------------------------------------------------------- database


def _admin() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)


def database_url(name: str) -> str:
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def seeded_meta(name: str) -> dict[str, Any] | None:
    """What was seeded into `name` (its comment), None if it does not exist or is not seeded."""
    with _admin() as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    if row is None:
        return None
    try:
        return json.loads(row[0]) if row[0] else {}
    except json.JSONDecodeError:
        return {}


def recreate(name: str) -> None:
    with _admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def mark_seeded(name: str, meta: dict[str, Any]) -> None:
    with _admin() as admin:
        admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(json.dumps(meta))
            )
        )


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Headline:
    text: str
    topic: str | None
    sentiment: str | None
    tickers: tuple[str, ...]


def headline_pool() -> list[Headline]:
    pool: list[Headline] = []
    sentiment_of = {"0": "bearish", "1": "bullish", "2": "neutral"}
    for kind in ("topic", "sentiment"):
        with SEED_FILES[kind].open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                raw = row["text"]
                tickers = tuple(dict.fromkeys(CASHTAG.findall(raw)))[:5]
                headline = URL.sub("", raw).strip() or raw
                if kind == "topic":
                    pool.append(Headline(headline, TOPIC_LABELS[int(row["label"])], None, tickers))
                else:
                    pool.append(Headline(headline, None, sentiment_of[row["label"]], tickers))
    return pool


def arrival_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds since START, sorted: weekdays busier than weekends, a peak at 14:30 UTC."""
    minutes = DAYS * 1440
    minute = np.arange(minutes)
    hour = (minute % 1440) / 60.0
    weekday = ((END - timedelta(days=DAYS)).weekday() + minute // 1440) % 7
    weights = (0.25 + np.exp(-((hour - 14.5) ** 2) / (2 * 3.0**2))) * np.where(weekday < 5, 1.0, 0.35)
    chosen = rng.choice(minutes, size=n, p=weights / weights.sum())
    seconds = chosen * 60 + rng.uniform(0, 60, size=n)
    return np.sort(seconds)


def probabilities(rng: np.random.Generator, intended: np.ndarray, k: int = 3) -> np.ndarray:
    """Dirichlet around the intended class: mostly confident, a tail of unsure predictions."""
    alpha = np.full((len(intended), k), 0.7)
    alpha[np.arange(len(intended)), intended] += rng.choice(
        [1.0, 4.0, 9.0], size=len(intended), p=[0.15, 0.35, 0.5]
    )
    g = rng.gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)


@dataclass
class Generated:
    start: datetime
    event_ids: list[str]
    published: list[datetime]
    headlines: list[str]
    seconds: np.ndarray = field(repr=False)


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    n = 0
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def seed(url: str, *, items: int, seed_value: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    upgrade_database(url)
    rng = np.random.default_rng(seed_value)
    pyrng = random.Random(seed_value)
    pool = headline_pool()
    start = END - timedelta(days=DAYS)
    seconds = arrival_times(rng, items)
    published = [start + timedelta(seconds=float(s)) for s in seconds]

    pick = rng.integers(0, len(pool), size=items)
    topic_counts = Counter(h.topic for h in pool if h.topic)
    topic_p = np.array([topic_counts[t] for t in TOPIC_LABELS], dtype=float)
    topic_p /= topic_p.sum()
    random_topic = rng.choice(len(TOPIC_LABELS), size=items, p=topic_p)
    random_sentiment = rng.choice(3, size=items, p=[0.15, 0.65, 0.20])
    keep_label = rng.random(items) < 0.85
    ticker_counts = Counter(t for h in pool for t in h.tickers)
    popular = [t for t, _ in ticker_counts.most_common(600)]
    pop_w = np.array([ticker_counts[t] for t in popular], dtype=float)
    extra_ticker = rng.choice(len(popular), size=items, p=pop_w / pop_w.sum())
    add_ticker = rng.random(items) < 0.3
    sources = rng.choice(len(SOURCES), size=items, p=SOURCE_WEIGHTS)
    urls = [
        f"https://news.example.com/{SOURCES[sources[i]].lower().replace(' ', '-')}/{i}" for i in range(items)
    ]

    topics: list[str] = []
    intended = np.empty(items, dtype=np.int64)
    tickers: list[tuple[str, ...]] = []
    headlines: list[str] = []
    for i in range(items):
        h = pool[pick[i]]
        headlines.append(h.text)
        topics.append(h.topic if (h.topic and keep_label[i]) else TOPIC_LABELS[random_topic[i]])
        intended[i] = (
            SENTIMENTS.index(h.sentiment) if (h.sentiment and keep_label[i]) else random_sentiment[i]
        )
        t = h.tickers or ((popular[extra_ticker[i]],) if add_ticker[i] else ())
        tickers.append(t)
    # Ids as the ingest derives them (sha256 of source, URL, headline): random order, not time
    # order, as in production; sequential ids would make index order and time order agree.
    event_ids = [
        derive_event_id(source=SOURCES[sources[i]], url=urls[i], headline=headlines[i]) for i in range(items)
    ]
    probs = probabilities(rng, intended)
    topic_score = rng.beta(5, 2, size=items)

    engine_url = _libpq(url)
    with psycopg.connect(engine_url) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        t = time.perf_counter()
        _copy(
            conn,
            "news_items",
            [
                "event_id",
                "headline",
                "source",
                "url",
                "published_at",
                "received_at",
                "tickers",
                "extra",
                "kafka_partition",
                "kafka_offset",
            ],
            (
                (
                    event_ids[i],
                    headlines[i],
                    SOURCES[sources[i]],
                    urls[i],
                    published[i],
                    published[i] + timedelta(seconds=1),
                    json.dumps(list(tickers[i])),
                    "{}",
                    i % 6,
                    i // 6,
                )
                for i in range(items)
            ),
        )
        print(f"  news_items: {items:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
        t = time.perf_counter()
        n_tickers = _copy(
            conn,
            "news_tickers",
            ["event_id", "ticker", "published_at"],
            ((event_ids[i], tk, published[i]) for i in range(items) for tk in sorted(set(tickers[i]))),
        )
        print(f"  news_tickers: {n_tickers:,} rows in {time.perf_counter() - t:.0f} s", flush=True)

        def prediction_rows(
            version: str, lo: int, p: np.ndarray, delay: timedelta
        ) -> Iterator[tuple[Any, ...]]:
            for j, i in enumerate(range(lo, items)):
                pb, pn, pu = (float(x) for x in p[j])
                yield (
                    event_ids[i],
                    version,
                    topics[i],
                    float(topic_score[i]),
                    SENTIMENTS[int(np.argmax(p[j]))],
                    pb,
                    pn,
                    pu,
                    pu - pb,
                    published[i],
                    published[i] + delay,
                )

        columns = [
            "event_id",
            "model_version",
            "topic",
            "topic_score",
            "sentiment",
            "p_bearish",
            "p_neutral",
            "p_bullish",
            "sentiment_score",
            "published_at",
            "scored_at",
        ]
        t = time.perf_counter()
        n_pred = _copy(conn, "predictions", columns, prediction_rows("v1", 0, probs, timedelta(seconds=2)))
        second_from = int(np.searchsorted(seconds, (DAYS - SECOND_MODEL_DAYS) * 86400.0))
        probs2 = probabilities(rng, intended[second_from:])
        n_pred += _copy(
            conn, "predictions", columns, prediction_rows("v2", second_from, probs2, timedelta(days=1))
        )
        print(f"  predictions: {n_pred:,} rows in {time.perf_counter() - t:.0f} s", flush=True)

        t = time.perf_counter()
        conn.execute(BUCKETS_SQL, {"width": BASE, "now": END})
        n_buckets = conn.execute("SELECT count(*) FROM sentiment_buckets").fetchone()[0]  # type: ignore[index]
        print(f"  sentiment_buckets: {n_buckets:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
        conn.commit()

    gen = Generated(start, event_ids, published, headlines, seconds)
    with session_factory(make_engine(url)).begin() as session:
        counts = _small_tables(session, gen, pyrng)
    with psycopg.connect(engine_url, autocommit=True) as conn:
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        print(f"  VACUUM ANALYZE in {time.perf_counter() - t:.0f} s", flush=True)
    check_buckets(url, gen, pyrng)
    return {
        "items": items,
        "seed": seed_value,
        "end": END.isoformat(),
        "news_tickers": n_tickers,
        "predictions": n_pred,
        "sentiment_buckets": n_buckets,
        **counts,
        "seed_seconds": round(time.perf_counter() - t0, 1),
    }


# The alerter's buckets (services.alerting.store.recompute_buckets) in one statement: each
# story's first stored prediction, counted in the market, its topic and each of its tickers,
# in 60 s buckets on the epoch grid.
BUCKETS_SQL = """
WITH first AS (
    SELECT DISTINCT ON (p.event_id) p.event_id, p.topic, p.sentiment, p.sentiment_score,
           to_timestamp(floor(extract(epoch FROM p.published_at) / %(width)s) * %(width)s) AS b
    FROM predictions p ORDER BY p.event_id, p.id
), keyed AS (
    SELECT 'market' AS scope, '*' AS key, b, sentiment, sentiment_score FROM first
    UNION ALL SELECT 'topic', topic, b, sentiment, sentiment_score FROM first
    UNION ALL SELECT 'ticker', t.ticker, f.b, f.sentiment, f.sentiment_score
    FROM first f JOIN news_tickers t ON t.event_id = f.event_id
)
INSERT INTO sentiment_buckets (scope, key, width_seconds, bucket_start, total, bearish, neutral, bullish,
                               score_sum, updated_at)
SELECT scope, key, %(width)s, b, count(*), count(*) FILTER (WHERE sentiment = 'bearish'),
       count(*) FILTER (WHERE sentiment = 'neutral'), count(*) FILTER (WHERE sentiment = 'bullish'),
       sum(sentiment_score), %(now)s
FROM keyed GROUP BY scope, key, b
"""


def check_buckets(url: str, gen: Generated, rng: random.Random, samples: int = 40) -> None:
    """The bulk buckets equal the alerter's own aggregation on sample minutes (score sums to
    1e-9: SQL's sum and math.fsum may round the last bit differently)."""
    from services.alerting import aggregate
    from services.alerting.store import load_stories
    from services.storage import SentimentBucketRow as B

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            for _ in range(samples):
                i = rng.randrange(len(gen.published))
                start = gen.published[i].replace(second=0, microsecond=0)
                expected = aggregate(load_stories(session, start=start, end=start + timedelta(seconds=BASE)))
                stored = {
                    (r.scope, r.key, r.bucket_start): r
                    for r in session.scalars(
                        select(B).where(B.width_seconds == BASE, B.bucket_start == start)
                    )
                }
                assert set(expected) == set(stored), (start, set(expected) ^ set(stored))
                for k, b in expected.items():
                    r = stored[k]
                    assert (b.total, b.bearish, b.neutral, b.bullish) == (
                        r.total,
                        r.bearish,
                        r.neutral,
                        r.bullish,
                    )
                    assert math.isclose(b.score_sum, r.score_sum, abs_tol=1e-9), (k, b.score_sum, r.score_sum)
    finally:
        engine.dispose()
    print(f"  buckets match the alerter's aggregation on {samples} sample minutes", flush=True)


def _small_tables(session: Session, gen: Generated, rng: random.Random) -> dict[str, int]:
    from services.delivery.model import Subscription
    from services.delivery.repository import add_subscription
    from services.storage import AlertRow, GateDecisionRow, LabelRow, ModelVersionRow, RetrainRunRow

    n = len(gen.event_ids)
    # Alerts: about 7 a day, most on topics and tickers; the newest 20 still open.
    ticker_keys = [
        r[0]
        for r in session.execute(
            text("SELECT ticker FROM news_tickers GROUP BY ticker ORDER BY count(*) DESC LIMIT 200")
        )
    ]
    alerts = []
    for a in range(2500):
        second = rng.uniform(0, DAYS * 86400 - 3600)
        window_start = (gen.start + timedelta(seconds=second)).replace(second=0, microsecond=0)
        scope = rng.choices(["market", "topic", "ticker"], weights=[3, 50, 47])[0]
        key = (
            "*"
            if scope == "market"
            else rng.choice(TOPIC_LABELS)
            if scope == "topic"
            else rng.choice(ticker_keys)
        )
        first = int(np.searchsorted(gen.seconds, (window_start - gen.start).total_seconds()))
        event_ids = gen.event_ids[first : first + 5]
        severity = rng.choices(["warning", "high", "critical"], weights=[70, 25, 5])[0]
        evidence = {
            "rule": "bearish-spike",
            "scope": scope,
            "key": key,
            "window_start": window_start.isoformat(),
            "window_end": (window_start + timedelta(minutes=10)).isoformat(),
            "total": 14,
            "bearish": 9,
            "share": 0.64,
            "baseline_share": 0.16,
            "baseline_items": 410.0,
            "expected_bearish": 2.2,
            "z_score": 4.6,
            "p_value": 2e-6,
            "severity": severity,
            "event_ids": event_ids,
        }
        alerts.append(
            {
                "alert_key": f"bearish-spike|{scope}|{key}|{window_start.isoformat()}|{a}",
                "rule": "bearish-spike",
                "scope": scope,
                "key": key,
                "window_start": window_start,
                "opened_at": window_start + timedelta(minutes=10),
                "last_detected_at": window_start + timedelta(minutes=14),
                "severity": severity,
                "notified_severity": severity,
                "last_notified_at": window_start + timedelta(minutes=10),
                "detections": rng.randint(1, 6),
                "status": "resolved",
                "resolved_at": window_start + timedelta(hours=rng.uniform(1, 6)),
                "evidence": evidence,
                "event_ids": event_ids,
                "created_at": window_start + timedelta(minutes=10),
                "updated_at": window_start + timedelta(hours=1),
                "acknowledged_by": None,
                "acknowledged_at": None,
            }
        )
    alerts.sort(key=lambda r: r["opened_at"])
    for r in alerts[-20:]:
        r["status"], r["resolved_at"] = "open", None
    for r in alerts[-20:-15]:
        r["acknowledged_by"], r["acknowledged_at"] = "alice", r["opened_at"] + timedelta(minutes=3)
    session.execute(AlertRow.__table__.insert(), alerts)

    # Labels: about 55 a day by eight analysts, 300 texts on which two of them disagree.
    labels = []
    seen: set[tuple[str, str, str]] = set()
    for _ in range(20_000):
        i = rng.randrange(n)
        task = rng.choice(["sentiment", "topic"])
        labeller = rng.choice(ANALYSTS)
        digest = hashlib.sha256(gen.headlines[i].encode()).hexdigest()
        if (digest, task, labeller) in seen:
            continue
        seen.add((digest, task, labeller))
        label = rng.choice(SENTIMENTS) if task == "sentiment" else rng.choice(TOPIC_LABELS)
        labels.append(_label(gen, i, digest, task, label, labeller))
    for _ in range(300):
        i = rng.randrange(n)
        digest = hashlib.sha256(gen.headlines[i].encode()).hexdigest()
        a, b = rng.sample(ANALYSTS, 2)
        la, lb = rng.sample(SENTIMENTS, 2)
        for labeller, label in ((a, la), (b, lb)):
            if (digest, "sentiment", labeller) not in seen:
                seen.add((digest, "sentiment", labeller))
                labels.append(_label(gen, i, digest, "sentiment", label, labeller))
    session.execute(LabelRow.__table__.insert(), labels)

    # The registry: a candidate a week, two champions over the year (v1 then v2), daily runs.
    metrics = _metrics(rng)
    versions = []
    for w in range(52):
        created = gen.start + timedelta(days=7 * w)
        version = "v1" if w == 0 else "v2" if w == 48 else f"c{w:02d}"
        status = {"v1": "retired", "v2": "champion"}.get(version, "rejected")
        versions.append(
            {
                "version": version,
                "parent": None if w == 0 else "v1",
                "created_at": created,
                "data_hash": hashlib.sha256(version.encode()).hexdigest(),
                "metrics": metrics,
                "sha256": hashlib.sha256(b"w" + version.encode()).hexdigest(),
                "path": f"/models/{version}",
                "status": status,
                "status_changed_at": created + timedelta(hours=1),
                "note": "benchmark",
            }
        )
    session.execute(ModelVersionRow.__table__.insert(), versions)
    runs = []
    for d in range(DAYS):
        started = gen.start + timedelta(days=d, hours=2)
        trained = d % 7 == 0
        runs.append(
            {
                "trigger": "schedule",
                "started_at": started,
                "finished_at": started + timedelta(minutes=4 if trained else 0),
                "status": ("promoted" if d == 336 else "rejected") if trained else "skipped",
                "reason": None if trained else "too few new labels",
                "champion_version": "v1",
                "challenger_version": f"c{d // 7:02d}" if trained else None,
                "new_labels": rng.randint(0, 120),
                "label_watermark": d * 55,
                "details": {"seconds": 240.0},
            }
        )
    session.execute(RetrainRunRow.__table__.insert(), runs)
    run_ids = session.execute(
        text(
            "SELECT id, started_at, challenger_version FROM retrain_runs "
            "WHERE challenger_version IS NOT NULL ORDER BY id"
        )
    ).all()
    session.execute(
        GateDecisionRow.__table__.insert(),
        [
            {
                "run_id": rid,
                "challenger_version": ch,
                "champion_version": "v1",
                "accepted": False,
                "reasons": ["sentiment macro-F1 fell 0.012 > tolerance 0.01"],
                "comparison": {"champion": {"sentiment": 0.81}, "challenger": {"sentiment": 0.80}},
                "decided_at": started + timedelta(minutes=4),
            }
            for rid, started, ch in run_ids
        ],
    )
    for s in range(25):
        keys = (f"topic:{TOPIC_LABELS[s % 20]}",) if s % 3 else (f"ticker:{ticker_keys[s]}",)
        add_subscription(
            session,
            subscription=Subscription(
                name=f"desk-{s:02d}",
                channel="log",
                target=f"finsent.desk{s}",
                scopes=("topic",) if s % 3 else ("ticker",),
                keys=keys,
            ),
            now=END,
        )
    return {
        "alerts": len(alerts),
        "labels": len(labels),
        "model_versions": len(versions),
        "retrain_runs": len(runs),
        "gate_decisions": len(run_ids),
        "subscriptions": 25,
    }


def _label(gen: Generated, i: int, digest: str, task: str, label: str, labeller: str) -> dict[str, Any]:
    when = gen.published[i] + timedelta(hours=2)
    return {
        "event_id": gen.event_ids[i],
        "text": gen.headlines[i],
        "text_hash": digest,
        "task": task,
        "label": label,
        "labeller": labeller,
        "source": "dashboard",
        "split": "recent_holdout" if int(digest[:2], 16) < 51 else "train",
        "created_at": when,
        "updated_at": when,
    }


def _metrics(rng: random.Random) -> dict[str, Any]:
    """Metrics as a trained model directory carries them: two 20x20 / 3x3 reports."""

    def report(labels: list[str]) -> dict[str, Any]:
        k = len(labels)
        matrix = [[rng.randint(40, 90) if r == c else rng.randint(0, 6) for c in range(k)] for r in range(k)]
        return {
            "n": sum(map(sum, matrix)),
            "accuracy": 0.85,
            "macro_f1": 0.8,
            "labels": labels,
            "per_class": {x: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 60} for x in labels},
            "confusion_matrix": matrix,
        }

    return {
        "dev": {"topic": report(list(TOPIC_LABELS)), "sentiment": report(list(SENTIMENTS))},
        "history": [{"step": s, "loss": 1.0 / (s + 1)} for s in range(50)],
    }


# --------------------------------------------------------------------------- what the pages call


@dataclass(frozen=True)
class Call:
    """One query function call as a page makes it."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    live: bool = False  # the overview's live panel: fresh_query, never cached

    @property
    def name(self) -> str:
        return f"{self.fn.__module__.rsplit('.', 1)[-1]}.{self.fn.__name__}"


@dataclass(frozen=True)
class Case:
    page: str
    label: str
    calls: list[Call]
    on_click: bool = False  # not part of the page render (a button's action)


def build_cases(engine: Engine) -> list[Case]:
    from dashboards.data import alerts as alert_data
    from dashboards.data import indices, labelling, models, news
    from dashboards.data.indices import TimeRange, choose_width, key_for
    from dashboards.data.news import Cursor, NewsFilter
    from dashboards.ui import PRESETS
    from services.delivery import repository as delivery_repo

    with session_factory(engine)() as session:
        newest = indices.newest_bucket(session, base_width=BASE)
        assert newest is not None, "no buckets: seed the database first"
        anchor = newest + timedelta(seconds=BASE)  # ui.data_end
        ranges = {name: TimeRange.ending(anchor, PRESETS[name]) for name in PRESETS}
        year = ranges["last 365 days"]
        # The overview's ticker picker lists the busiest first and preselects the first.
        busiest = indices.scope_summary(
            session, scope="ticker", period=ranges["last 24 hours"], base_width=BASE, limit=200
        )["key"].iloc[0]
        rare_ticker = session.execute(
            text(
                "SELECT ticker FROM news_tickers GROUP BY ticker HAVING count(*) >= 5 "
                "ORDER BY count(*), ticker LIMIT 1"
            )
        ).scalar_one()
        first_alert = alert_data.alert_feed(session, show="needs attention")[0]

        def cursor_for_page(f: NewsFilter, page: int, size: int = 50) -> Cursor:
            """The cursor the browser holds after clicking "Older" page-1 times (last row of
            page-1); a smaller data set (--items) gets its middle row instead."""
            ordered = news.news_statement(f, "postgresql").order_by(
                news.P.published_at.desc(), news.P.id.desc()
            )
            row = session.execute(ordered.offset((page - 1) * size - 1).limit(1)).first()
            if row is None:
                n = news.count_news(session, filter=f, cap=10**9)[0]
                row = session.execute(ordered.offset(n // 2).limit(1)).one()
            return Cursor(row.published_at, row.id)

        deep_filter = NewsFilter(period=year)
        deep_cursor = cursor_for_page(deep_filter, 500)
        deep_topic = NewsFilter(period=year, topics=("Earnings",))
        deep_topic_cursor = cursor_for_page(deep_topic, 500)

    def overview(label: str, scope: str, key: str | None, period_name: str) -> Case:
        period = ranges[period_name]
        calls = [Call(indices.newest_bucket, {"base_width": BASE})]
        if scope == "ticker":
            calls.append(
                Call(
                    indices.scope_summary,
                    {"scope": "ticker", "period": period, "base_width": BASE, "limit": 200},
                )
            )
        width = choose_width(period.span, base_seconds=BASE)
        calls += [
            Call(
                indices.index_series,
                {"scope": scope, "key": key, "period": period, "width": width, "base_width": BASE},
            ),
            Call(
                alert_data.alerts_overlapping, {"scope": scope, "key": key_for(scope, key), "period": period}
            ),  # type: ignore[arg-type]
            Call(
                indices.scope_summary, {"scope": "topic", "period": period, "base_width": BASE, "limit": 20}
            ),
            # the live panel (every 15 s, uncached): the newest 60 minutes, 1-minute buckets
            Call(indices.newest_bucket, {"base_width": BASE}, live=True),
            Call(
                indices.index_series,
                {
                    "scope": scope,
                    "key": key,
                    "period": TimeRange.ending(anchor, timedelta(minutes=60)),
                    "width": BASE,
                    "base_width": BASE,
                },
                live=True,
            ),
        ]
        return Case("overview", label, calls)

    def drill(label: str, scope: str, key: str | None, period: Any, *, from_link: bool) -> Case:
        calls = [] if from_link else [Call(indices.newest_bucket, {"base_width": BASE})]
        calls.append(
            Call(
                news.drilldown, {"scope": scope, "key": key, "period": period, "sentiments": (), "limit": 100}
            )
        )
        return Case("drilldown", label, calls)

    def browser(label: str, f: NewsFilter, after: Cursor | None = None) -> Case:
        return Case(
            "news",
            label,
            [
                Call(indices.newest_bucket, {"base_width": BASE}),
                Call(news.model_versions_seen, {"period": f.period}),
                Call(news.count_news, {"filter": f}),
                Call(news.news_page, {"filter": f, "page_size": 50, "after": after}),
            ],
        )

    y, m, d = year, ranges["last 30 days"], ranges["last 24 hours"]
    cases = [
        overview("market, last 24 h", "market", None, "last 24 hours"),
        overview("market, last 30 days", "market", None, "last 30 days"),
        overview("market, last 365 days", "market", None, "last 365 days"),
        overview("topic Energy / Oil, 30 days", "topic", "Energy / Oil", "last 30 days"),
        overview("topic Energy / Oil, 365 days", "topic", "Energy / Oil", "last 365 days"),
        overview(f"ticker {busiest} (busiest), 24 h", "ticker", busiest, "last 24 hours"),
        overview(f"ticker {busiest} (busiest), 365 days", "ticker", busiest, "last 365 days"),
        drill("market, last hour (default)", "market", None, ranges["last hour"], from_link=False),
        drill("market, 24 h (overview link)", "market", None, d, from_link=True),
        drill("topic Energy / Oil, 30 days (link)", "topic", "Energy / Oil", m, from_link=True),
        drill(f"ticker {busiest}, 30 days (link)", "ticker", busiest, m, from_link=True),
        drill("market, 365 days (overview link)", "market", None, y, from_link=True),
        drill("topic Earnings, 365 days (link)", "topic", "Earnings", y, from_link=True),
        drill(f"ticker {rare_ticker} (rare), 365 days (link)", "ticker", rare_ticker, y, from_link=True),
        drill("topic IPO, last 7 days", "topic", "IPO", ranges["last 7 days"], from_link=False),
        browser("no filter, 24 h", NewsFilter(period=d)),
        browser("no filter, 30 days", NewsFilter(period=m)),
        browser("no filter, 365 days", NewsFilter(period=y)),
        browser("topic Earnings, 365 days", NewsFilter(period=y, topics=("Earnings",))),
        browser(
            "bearish, confidence >= 0.8, 30 days",
            NewsFilter(period=m, sentiments=("bearish",), min_confidence=0.8),
        ),
        browser(f"ticker {busiest}, 365 days", NewsFilter(period=y, ticker=busiest)),
        browser(f"ticker {rare_ticker} (rare), 365 days", NewsFilter(period=y, ticker=rare_ticker)),
        browser("search 'tesla', 365 days", NewsFilter(period=y, text="tesla")),
        browser("search 'bankruptcy', 365 days", NewsFilter(period=y, text="bankruptcy")),
        browser("search 'stocks', 365 days", NewsFilter(period=y, text="stocks")),
        browser("search '\"rate cut\"', 30 days", NewsFilter(period=m, text='"rate cut"')),
        browser("source Reuters, 365 days", NewsFilter(period=y, source="Reuters")),
        browser("model v2, 30 days", NewsFilter(period=m, model_version="v2")),
        browser("page 500, no filter, 365 days", deep_filter, deep_cursor),
        browser("page 500, topic Earnings, 365 days", deep_topic, deep_topic_cursor),
        Case(
            "news",
            "CSV export, 365 days (button)",
            [Call(news.export_csv, {"filter": NewsFilter(period=y), "max_rows": 10_000})],
            on_click=True,
        ),
        Case(
            "alerts",
            "needs attention",
            [
                Call(alert_data.alert_feed, {"show": "needs attention", "scope": None}),
                Call(news.stories_by_id, {"event_ids": tuple(first_alert.event_ids)}),
            ],
        ),
        Case(
            "alerts",
            "all, topic scope",
            [
                Call(alert_data.alert_feed, {"show": "all", "scope": "topic"}),
                Call(news.stories_by_id, {"event_ids": tuple(first_alert.event_ids)}),
            ],
        ),
        Case("subscriptions", "list", [Call(delivery_repo.list_subscriptions, {})]),
        Case(
            "labelling",
            "sentiment",
            [
                Call(indices.newest_bucket, {"base_width": BASE}),
                Call(labelling.disagreements, {"task": "sentiment"}),
                Call(
                    labelling.uncertain_stories,
                    {"task": "sentiment", "period": TimeRange.ending(anchor, timedelta(days=7))},
                ),
            ],
        ),
        Case(
            "labelling",
            "topic",
            [
                Call(indices.newest_bucket, {"base_width": BASE}),
                Call(labelling.disagreements, {"task": "topic"}),
                Call(
                    labelling.uncertain_stories,
                    {"task": "topic", "period": TimeRange.ending(anchor, timedelta(days=7))},
                ),
            ],
        ),
        Case(
            "models",
            "registry",
            [
                Call(models.list_versions, {}),
                Call(models.gate_decisions, {}),
                Call(models.retrain_runs, {}),
            ],
        ),
    ]
    return cases


# --------------------------------------------------------------------------- timing


@dataclass
class Statement:
    sql: str
    params: Any
    ms: float


class StatementLog:
    """The SQL each call sends (with its parameters and time), for EXPLAIN ANALYZE of slow ones."""

    def __init__(self, engine: Engine) -> None:
        self.items: list[Statement] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        conn.info["t0"] = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        self.items.append(
            Statement(statement, parameters, (time.perf_counter() - conn.info.pop("t0")) * 1000)
        )


def _call(engine: Engine, call: Call) -> float:
    t = time.perf_counter()
    with session_factory(engine)() as session:
        call.fn(session, **call.kwargs)
    return (time.perf_counter() - t) * 1000


@dataclass
class CaseResult:
    page: str
    label: str
    on_click: bool
    queries: list[dict[str, Any]]
    cold_ms: float
    warm_ms: list[float]
    cached_ms: float

    @property
    def worst_uncached_ms(self) -> float:
        return max([self.cold_ms, *self.warm_ms])

    def as_dict(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "case": self.label,
            "on_click": self.on_click,
            "cold_ms": round(self.cold_ms, 1),
            "warm_p50_ms": round(statistics.median(self.warm_ms), 1),
            "warm_max_ms": round(max(self.warm_ms), 1),
            "cached_hit_ms": round(self.cached_ms, 2),
            "worst_uncached_ms": round(self.worst_uncached_ms, 1),
            "queries": self.queries,
        }


def time_case(url: str, case: Case, repeats: int, log_statements: list[Statement]) -> CaseResult:
    """Cold on a fresh engine (new connection), then `repeats` warm runs; then a cache hit."""
    engine = make_engine(url)
    log = StatementLog(engine)
    try:
        per_call: dict[int, list[float]] = {i: [] for i in range(len(case.calls))}
        runs: list[float] = []
        for _ in range(repeats + 1):
            total = 0.0
            for i, call in enumerate(case.calls):
                ms = _call(engine, call)
                per_call[i].append(ms)
                total += ms
            runs.append(total)
            if runs[0] > 10_000 and len(runs) >= 3:  # seconds per run: enough to judge
                break
        log_statements.extend(log.items)
    finally:
        engine.dispose()
    queries = [
        {
            "call": c.name + (" (live panel)" if c.live else ""),
            "cold_ms": round(per_call[i][0], 1),
            "warm_p50_ms": round(statistics.median(per_call[i][1:]), 1),
            "warm_max_ms": round(max(per_call[i][1:]), 1),
        }
        for i, c in enumerate(case.calls)
    ]
    return CaseResult(case.page, case.label, case.on_click, queries, runs[0], runs[1:], cached_hit(url, case))


def cached_hit(url: str, case: Case) -> float:
    """A page rerun within the TTL: each call a hit in st.cache_data (the live panel is never cached)."""
    from dashboards.context import cached_query, fresh_query
    from services.settings import Settings

    # "No runtime found, using MemoryCacheStorageManager": true, and the point here.
    logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)

    os.environ["FINSENT_DATABASE_URL"] = url
    os.environ["FINSENT_DASHBOARD_CACHE_SECONDS"] = "300"
    settings = Settings()

    def run() -> float:
        t = time.perf_counter()
        for call in case.calls:
            if call.live:
                fresh_query(settings, call.fn, **call.kwargs)
            else:
                cached_query(settings, call.fn, **call.kwargs)
        return (time.perf_counter() - t) * 1000

    run()  # fills the cache
    return min(run() for _ in range(3))


def explain(url: str, statements: list[Statement], threshold_ms: float) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each distinct statement that once took > threshold_ms."""
    slow: dict[str, Statement] = {}
    for s in statements:
        key = s.sql + repr(s.params)
        if s.ms > threshold_ms and (key not in slow or s.ms > slow[key].ms):
            slow[key] = s
    out = []
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            for s in sorted(slow.values(), key=lambda s: -s.ms)[:12]:
                plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + s.sql, s.params).scalars().all()
                out.append(
                    {
                        "ms": round(s.ms, 1),
                        "sql": s.sql,
                        "params": {k: str(v) for k, v in (s.params or {}).items()},
                        "plan": "\n".join(plan),
                    }
                )
    finally:
        engine.dispose()
    return out


# --------------------------------------------------------------------------- report


def page_summary(results: list[CaseResult]) -> list[dict[str, Any]]:
    rows = []
    for page in dict.fromkeys(r.page for r in results):
        mine = [r for r in results if r.page == page and not r.on_click]
        if not mine:
            continue
        every = [ms for r in mine for ms in [r.cold_ms, *r.warm_ms]]
        worst = max(mine, key=lambda r: r.worst_uncached_ms)
        rows.append(
            {
                "page": page,
                "cases": len(mine),
                "uncached_p50_ms": round(statistics.median(every), 1),
                "uncached_max_ms": round(max(every), 1),
                "slowest_case": worst.label,
                "cached_hit_max_ms": round(max(r.cached_ms for r in mine), 2),
                "under_1s": max(every) < LIMIT_MS,
            }
        )
    return rows


def markdown(
    meta: dict[str, Any],
    env: dict[str, Any],
    results: list[CaseResult],
    summary: list[dict[str, Any]],
    plans: list[dict[str, Any]],
) -> str:
    lines = [
        f"## Dashboard page queries on {meta['items']:,} stories over {DAYS} days (PostgreSQL)",
        "",
        f"- data: {meta['items']:,} news_items, {meta['predictions']:,} predictions (v2 re-scored the last "
        f"{SECOND_MODEL_DAYS} days), {meta['news_tickers']:,} news_tickers, {meta['sentiment_buckets']:,} "
        f"sentiment_buckets (60 s), {meta['alerts']:,} alerts, {meta['labels']:,} labels, "
        f"{meta['model_versions']} model versions, {meta['retrain_runs']} retraining runs",
        f"- schema: Alembic revision {meta.get('revision')} (`upgrade_database`), then VACUUM ANALYZE",
        f"- machine: {describe(env['machine'])}; {env['postgres']}; "
        f"load average before {env['load_before']}, after {env['load_after']}; {env['note']}",
        f"- method: `benchmarks/dashboard_queries.py` (docstring). Times are wall-clock ms in the dashboard "
        f"process: query, transfer and the data layer's Python (DataFrames). cold = first call on a new "
        f"connection; warm = {env['repeats']} repeats, uncached; cached = an `st.cache_data` hit (a rerun "
        f"within the TTL). Page time = the sum of its calls. Verdict on the slowest uncached run.",
        "",
        "### Per page (every case, cold and warm runs)",
        "",
        "| page | cases | uncached p50 ms | uncached max ms | slowest case | cached hit max ms | < 1 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['page']} | {s['cases']} | {s['uncached_p50_ms']:.0f} | {s['uncached_max_ms']:.0f} | "
            f"{s['slowest_case']} | {s['cached_hit_max_ms']:.1f} | {'yes' if s['under_1s'] else '**no**'} |"
        )
    lines += [
        "",
        "### Per case",
        "",
        "| page | case | cold ms | warm p50 ms | warm max ms | cached ms | slowest call (warm p50) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r.as_dict()
        top = max(d["queries"], key=lambda q: q["warm_p50_ms"])
        flag = "" if r.worst_uncached_ms < LIMIT_MS else " **>1 s**"
        lines.append(
            f"| {r.page} | {r.label}{' (on click)' if r.on_click else ''} | {d['cold_ms']:.0f} | "
            f"{d['warm_p50_ms']:.0f}{flag} | {d['warm_max_ms']:.0f} | {d['cached_hit_ms']:.1f} | "
            f"{top['call']} {top['warm_p50_ms']:.0f} |"
        )
    if plans:
        lines += ["", f"### Plans of statements slower than {env['explain_ms']:.0f} ms", ""]
        for p in plans:
            lines += [
                f"#### {p['ms']:.0f} ms",
                "",
                "```sql",
                p["sql"].strip(),
                "```",
                f"parameters: `{json.dumps(p['params'])}`",
                "",
                "```",
                p["plan"],
                "```",
                "",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", default="finsent_bench_dashboard")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--explain-ms", type=float, default=300.0)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--fresh", action="store_true", help="drop and reseed the database")
    mode.add_argument("--reuse", action="store_true", help="only time: the database must already be seeded")
    ap.add_argument("--only", default="", help="time only pages whose name contains this (e.g. news)")
    ap.add_argument("--out", type=Path, default=result_path("dashboard_queries", ""))
    args = ap.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    url = database_url(args.database)
    wanted = {"items": args.items, "seed": args.seed, "end": END.isoformat()}
    meta = None if args.fresh else seeded_meta(args.database)
    if meta is not None and meta and {k: meta.get(k) for k in wanted} != wanted:
        sys.exit(
            f"{args.database} holds another data set ({ {k: meta.get(k) for k in wanted} }): use --fresh"
        )
    if not meta:
        if args.reuse:
            sys.exit(f"{args.database} is not seeded: run without --reuse (or with --fresh)")
        print(f"seeding {args.database}: {args.items:,} stories over {DAYS} days", flush=True)
        recreate(args.database)
        meta = seed(url, items=args.items, seed_value=args.seed)
        mark_seeded(args.database, meta)
        print(f"seeded in {meta['seed_seconds']:.0f} s", flush=True)
    else:
        print(f"reusing {args.database} ({meta['items']:,} stories, seeded in {meta.get('seed_seconds')} s)")
        # Migrations added since the seeding (new indexes) apply to the kept data too.
        if current_revision(url) != head_revision():
            print(f"migrating {args.database} to {upgrade_database(url)}", flush=True)
            with psycopg.connect(_libpq(url), autocommit=True) as conn:
                conn.execute("ANALYZE")
    meta["revision"] = current_revision(url)

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info = machine()
    engine = make_engine(url)
    try:
        cases = [c for c in build_cases(engine) if args.only in c.page]
        with engine.connect() as conn:
            pg = conn.execute(text("SELECT version()")).scalar_one().split(" on ")[0]
            settings = {
                k: conn.execute(text(f"SHOW {k}")).scalar_one()
                for k in ("shared_buffers", "work_mem", "random_page_cost", "max_parallel_workers_per_gather")
            }
    finally:
        engine.dispose()
    statements: list[Statement] = []
    results = []
    for case in cases:
        r = time_case(url, case, args.repeats, statements)
        results.append(r)
        d = r.as_dict()
        flag = "" if r.worst_uncached_ms < LIMIT_MS else "  > 1 s"
        print(
            f"{case.page:13} {case.label:42} cold {d['cold_ms']:7.0f}  warm p50 {d['warm_p50_ms']:7.0f}  "
            f"max {d['warm_max_ms']:7.0f}  cached {d['cached_hit_ms']:6.1f} ms{flag}",
            flush=True,
        )
    plans = explain(url, statements, args.explain_ms)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    summary = page_summary(results)
    print()
    print(f"{'page':14} {'cases':>5} {'p50 ms':>8} {'max ms':>8}  < 1 s  slowest case")
    for s in summary:
        print(
            f"{s['page']:14} {s['cases']:5} {s['uncached_p50_ms']:8.0f} {s['uncached_max_ms']:8.0f}  "
            f"{'yes' if s['under_1s'] else 'NO ':5}  {s['slowest_case']}"
        )
    env = {
        "machine": finish(info),
        "cpus": os.cpu_count(),
        "postgres": f"{pg} ({', '.join(f'{k}={v}' for k, v in settings.items())})",
        "load_before": load_before,
        "load_after": load_after,
        "repeats": args.repeats,
        "explain_ms": args.explain_ms,
        "note": "run with nice -n 5 on 2 cores shared with other work",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "env": env,
        "summary": summary,
        "cases": [r.as_dict() for r in results],
        "plans": plans,
    }
    write_json(args.out.with_suffix(".json"), payload)  # the machine: env["machine"]
    args.out.with_suffix(".md").write_text(markdown(meta, env, results, summary, plans))
    print(
        f"\nwrote {args.out.with_suffix('.json')} and .md "
        f"({len(plans)} plans of statements > {args.explain_ms:.0f} ms)"
    )


if __name__ == "__main__":
    main()
