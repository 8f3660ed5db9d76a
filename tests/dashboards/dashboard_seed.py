"""A small, fully known database for the dashboard tests (SQLite or PostgreSQL).

Six hours of news ending at END, one story a minute, written through the scorer's own
upsert and the alerter's own bucket recomputation, so the dashboard reads what the
pipeline writes. Counts the tests assert on are derived here, next to the data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from services.alerting.store import recompute_buckets
from services.delivery.model import Subscription
from services.delivery.repository import add_subscription
from services.learning.label_store import record_labels
from services.learning.labels import NewLabel
from services.storage import (
    AlertOutboxRow,
    AlertRow,
    GateDecisionRow,
    ModelVersionRow,
    RetrainRunRow,
    ScoredItem,
    make_engine,
    session_factory,
    upgrade_database,
    upsert_scored_batch,
)

END = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
MINUTES = 360
START = END - timedelta(minutes=MINUTES)
TOPICS = ("Energy / Oil", "Earnings", "Macro", "Fed / Central Banks")
SOURCES = ("Reuters", "Bloomberg", "wire-x")
SCRIPT_HEADLINE = "<script>alert(1)</script> Oil majors plunge on supply glut"
IMG_HEADLINE = "<img src=x onerror=alert(1)> Crude slumps as OPEC talks fail"
FORMULA_HEADLINE = '=HYPERLINK("http://evil.example","click") oil tumbles'
UNSURE_HEADLINE = "Fed minutes leave markets guessing"  # near-uniform sentiment probabilities
DISPUTED_TEXT = "acme holds rates steady, outlook mixed"
MODEL = "v1"


@dataclass(frozen=True)
class Story:
    minute: int
    item: ScoredItem


def _probs(i: int, sentiment: str) -> tuple[float, float, float]:
    sure = 0.55 + (i % 9) * 0.05  # 0.55 .. 0.95
    rest = (1 - sure) / 2
    return {
        "bearish": (sure, rest, rest),
        "neutral": (rest, sure, rest),
        "bullish": (rest, rest, sure),
    }[sentiment]


def stories() -> list[Story]:
    out = []
    for m in range(MINUTES):
        published = START + timedelta(minutes=m, seconds=10)
        topic = TOPICS[m % len(TOPICS)]
        sentiment = ("bearish", "neutral", "bullish", "neutral")[m % 4]
        # the last 30 minutes: Energy / Oil turns bearish (the spike the alert is about)
        if m >= MINUTES - 30 and topic == "Energy / Oil":
            sentiment = "bearish"
        headline = f"story {m:03d} about {topic.lower()} {sentiment}"
        tickers: tuple[str, ...] = ("XOM",) if topic == "Energy / Oil" else ("AAPL",) if m % 10 == 1 else ()
        pb, pn, pu = _probs(m, sentiment)
        if m == MINUTES - 2:
            headline = SCRIPT_HEADLINE
            topic, sentiment, tickers, (pb, pn, pu) = "Energy / Oil", "bearish", ("XOM",), (0.97, 0.02, 0.01)
        elif m == MINUTES - 3:
            headline = IMG_HEADLINE
            topic, sentiment, tickers, (pb, pn, pu) = "Energy / Oil", "bearish", ("XOM",), (0.96, 0.03, 0.01)
        elif m == MINUTES - 5:
            headline = FORMULA_HEADLINE
        elif m == MINUTES - 7:
            headline = UNSURE_HEADLINE
            topic, sentiment, (pb, pn, pu) = "Fed / Central Banks", "neutral", (0.33, 0.34, 0.33)
        out.append(
            Story(
                m,
                ScoredItem(
                    event_id=f"ev-{m:03d}",
                    headline=headline,
                    published_at=published,
                    received_at=published + timedelta(seconds=1),
                    model_version=MODEL,
                    topic=topic,
                    topic_score=0.5 + (m % 5) * 0.1,
                    sentiment=sentiment,
                    p_bearish=pb,
                    p_neutral=pn,
                    p_bullish=pu,
                    sentiment_score=pu - pb,
                    scored_at=published + timedelta(seconds=2),
                    source=SOURCES[m % len(SOURCES)],
                    url=f"https://news.example/{m}" if m % 2 else "javascript:alert(1)",
                    tickers=tickers,
                ),
            )
        )
    return out


def _replace(item: ScoredItem, **changes: object) -> ScoredItem:
    return replace(item, **changes)  # type: ignore[arg-type]


def report(labels: list[str], matrix: list[list[int]]) -> dict:
    n = sum(map(sum, matrix))
    correct = sum(matrix[i][i] for i in range(len(labels)))
    per_class = {}
    for i, name in enumerate(labels):
        actual = sum(matrix[i]) or 1
        predicted = sum(row[i] for row in matrix) or 1
        per_class[name] = {
            "precision": matrix[i][i] / predicted,
            "recall": matrix[i][i] / actual,
            "f1": 0.8,
            "support": sum(matrix[i]),
        }
    return {
        "n": n,
        "accuracy": correct / n,
        "macro_f1": 0.8,
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": matrix,
    }


SENTIMENT_REPORT = report(["bearish", "bullish", "neutral"], [[40, 3, 7], [2, 50, 8], [5, 6, 120]])


def seed(url: str) -> list[Story]:
    upgrade_database(url)
    engine = make_engine(url)
    items = stories()
    now = END + timedelta(minutes=1)
    try:
        with session_factory(engine).begin() as session:
            upsert_scored_batch(session, items=[s.item for s in items])
        with session_factory(engine).begin() as session:
            upsert_scored_batch(
                session,
                items=[
                    _replace(
                        s.item,
                        model_version="v2",
                        sentiment="bullish",
                        p_bullish=0.9,
                        p_bearish=0.05,
                        p_neutral=0.05,
                        sentiment_score=0.85,
                    )
                    for s in items[:5]
                ],
            )
        with session_factory(engine).begin() as session:
            recompute_buckets(
                session,
                starts=[START + timedelta(minutes=m) for m in range(MINUTES)],
                width=timedelta(minutes=1),
                now=now,
            )
        with session_factory(engine).begin() as session:
            _alerts(session, now)
            _subscriptions(session, now)
            _models(session, now)
            record_labels(
                session,
                [
                    NewLabel("sentiment", "bullish", "alice", "dashboard", text=DISPUTED_TEXT),
                    NewLabel("sentiment", "bearish", "bob", "dashboard", text=DISPUTED_TEXT),
                ],
                now=now,
                recent_share=0.0,
            )
    finally:
        engine.dispose()
    return items


def _alerts(session: Session, now: datetime) -> None:
    window_start = END - timedelta(minutes=10)
    evidence = {
        "rule": "bearish-spike",
        "scope": "topic",
        "key": "Energy / Oil",
        "window_start": window_start.isoformat(),
        "window_end": END.isoformat(),
        "total": 3,
        "bearish": 3,
        "share": 1.0,
        "baseline_share": 0.25,
        "baseline_items": 80.0,
        "expected_bearish": 0.75,
        "z_score": 4.2,
        "p_value": 1.5e-8,
        "severity": "high",
        "event_ids": [f"ev-{MINUTES - 2:03d}", f"ev-{MINUTES - 3:03d}", f"ev-{MINUTES - 4:03d}"],
    }
    common = {"created_at": now, "updated_at": now, "notified_severity": "high", "last_notified_at": END}
    session.add_all(
        [
            AlertRow(
                alert_key="bearish-spike|topic|Energy / Oil|" + window_start.isoformat(),
                rule="bearish-spike",
                scope="topic",
                key="Energy / Oil",
                window_start=window_start,
                opened_at=END - timedelta(minutes=2),
                last_detected_at=END - timedelta(minutes=1),
                severity="high",
                detections=2,
                status="open",
                resolved_at=None,
                evidence=evidence,
                event_ids=evidence["event_ids"],
                **common,
            ),
            AlertRow(
                alert_key="bearish-spike|market|*|old",
                rule="bearish-spike",
                scope="market",
                key="*",
                window_start=START + timedelta(minutes=30),
                opened_at=START + timedelta(minutes=40),
                last_detected_at=START + timedelta(minutes=45),
                severity="warning",
                detections=1,
                status="resolved",
                resolved_at=START + timedelta(minutes=50),
                evidence={},
                event_ids=[],
                **common,
            ),
        ]
    )
    session.flush()
    session.add(
        AlertOutboxRow(
            dedupe_key="open|energy",
            alert_key="bearish-spike|topic|Energy / Oil|" + window_start.isoformat(),
            kind="open",
            severity="high",
            scope="topic",
            key="Energy / Oil",
            at=END - timedelta(minutes=2),
            payload={"alert": evidence},
            created_at=now,
            published_at=None,
            dispatched_at=None,
        )
    )


def _subscriptions(session: Session, now: datetime) -> None:
    add_subscription(
        session, subscription=Subscription(name="ops-log", channel="log", target="stdout"), now=now
    )
    add_subscription(
        session,
        subscription=Subscription(
            name="energy-desk",
            channel="log",
            target="finsent.energy",
            scopes=("topic",),
            keys=("topic:Energy / Oil",),
        ),
        now=now,
    )


def _models(session: Session, now: datetime) -> None:
    metrics = {"dev": {"sentiment": SENTIMENT_REPORT}, "history": [{"step": 1}]}
    base = {"data_hash": "d" * 64, "sha256": "a" * 64, "note": "seeded"}
    session.add_all(
        [
            ModelVersionRow(
                version="v0",
                parent=None,
                created_at=START - timedelta(days=9),
                metrics=metrics,
                path="/models/v0",
                status="retired",
                status_changed_at=START - timedelta(days=2),
                **base,
            ),
            ModelVersionRow(
                version="v1",
                parent="v0",
                created_at=START - timedelta(days=2),
                metrics=metrics,
                path="/models/v1",
                status="champion",
                status_changed_at=START - timedelta(days=2),
                **base,
            ),
            ModelVersionRow(
                version="v2",
                parent="v1",
                created_at=START,
                metrics=metrics,
                path="/models/v2",
                status="candidate",
                status_changed_at=START,
                **base,
            ),
        ]
    )
    run = RetrainRunRow(
        trigger="schedule",
        started_at=START,
        finished_at=START + timedelta(minutes=20),
        status="rejected",
        reason="gate",
        champion_version="v1",
        challenger_version="v2",
        new_labels=60,
        label_watermark=60,
        details={},
    )
    session.add(run)
    session.flush()
    session.add(
        GateDecisionRow(
            run_id=run.id,
            challenger_version="v2",
            champion_version="v1",
            accepted=False,
            reasons=["sentiment macro-F1 fell 0.021 > tolerance 0.01"],
            comparison={"champion": {"sentiment": 0.81}, "challenger": {"sentiment": 0.79}},
            decided_at=START + timedelta(minutes=20),
        )
    )
