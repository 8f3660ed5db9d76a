"""`python -m services alerter` as a subprocess, and what the tests read back from it.

The alerter is run the way it is deployed: its own process, configured only through
FINSENT_* variables, reading `news.scored` through the broker and writing the database.
Progress is read from the database (the checkpoint's `evaluated_until`, the outbox's
`published_at`) and from the group's committed offsets, never from end offsets (Tansu).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from services.alerting import bucket_start
from services.broker import EmbeddedBroker
from services.storage import AlerterCheckpointRow, AlertOutboxRow, AlertRow, ScoredItem

from .alert_streams import play
from .pipeline import SESSION_TIMEOUT_S, CliProcess, committed_total, wait_for

SCORED_PARTITIONS = 4
LATENESS = timedelta(seconds=120)  # the alerter's default allowed lateness
_SERVING = re.compile(r"metrics (http://\S+)/metrics")


@dataclass(frozen=True, slots=True)
class AlerterTopics:
    scored: str
    dlq: str
    alerts: str

    @classmethod
    def create(cls, make_topic: Any) -> AlerterTopics:
        return cls(
            scored=make_topic("news.scored", partitions=SCORED_PARTITIONS),
            dlq=make_topic("news.dlq", partitions=1),
            alerts=make_topic("alerts", partitions=1),
        )


def new_group() -> str:
    return f"finsent-alerter-test-{uuid.uuid4().hex[:12]}"


def alerter_env(
    *, bootstrap: str, database_url: str, topics: AlerterTopics, group: str, home: Path, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        "FINSENT_HOME": str(home),
        "FINSENT_KAFKA_BOOTSTRAP": bootstrap,
        "FINSENT_DATABASE_URL": database_url,
        "FINSENT_TOPIC_NEWS_SCORED": topics.scored,
        "FINSENT_TOPIC_NEWS_DLQ": topics.dlq,
        "FINSENT_TOPIC_ALERTS": topics.alerts,
        "FINSENT_ALERTER_GROUP": group,
        "FINSENT_ALERTER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_S),
        "FINSENT_ALERTER_TICK_SECONDS": "0.5",
        "FINSENT_ALERTER_PARTITION_IDLE_SECONDS": "2",
        "FINSENT_ALERTER_METRICS_PORT": "0",
        "FINSENT_LOG_LEVEL": "INFO",
        **extra,
    }


class AlerterProcess(CliProcess):
    """`finsent alerter`, and its probes."""

    command = "alerter"

    def url(self, *, timeout: float = 60.0) -> str:
        """Base URL of its /metrics and /health (printed at start; port 0 picks one)."""
        found = wait_for(
            lambda: _SERVING.search(self.log()),
            bool,
            timeout=timeout,
            what="the alerter's start",
            workers=[self],
        )
        assert found is not None
        return found.group(1)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url() + path, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/health")
        return status, json.loads(body)

    def wait_ready(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """Until /health is ok: active, the group has assigned the partitions, the loop is polling."""
        return wait_for(
            self.health,
            lambda h: h[0] == 200 and h[1]["status"] == "ok",  # a standby answers 200 too
            timeout=timeout,
            what="/health ok",
            workers=[self],
        )[1]


def evaluated_until(engine: Engine) -> datetime | None:
    with Session(engine) as session:
        return session.scalar(select(func.max(AlerterCheckpointRow.evaluated_until)))


def unpublished_count(engine: Engine) -> int:
    with Session(engine) as session:
        stmt = select(func.count()).select_from(AlertOutboxRow).where(AlertOutboxRow.published_at.is_(None))
        return session.scalar(stmt) or 0


def wait_until_caught_up(
    engine: Engine,
    alerter: AlerterProcess,
    *,
    bootstrap: str,
    group: str,
    topic: str,
    messages: int,
    until: datetime,
    timeout: float = 60.0,
) -> None:
    """Until the group committed all `messages`, the checkpoint reached `until` and every
    outbox row is on the alerts topic."""

    def observe() -> tuple[int, datetime | None, int]:
        committed = committed_total(bootstrap, group, topic, partitions=SCORED_PARTITIONS)
        return committed, evaluated_until(engine), unpublished_count(engine)

    wait_for(
        observe,
        lambda v: v[0] >= messages and v[1] is not None and v[1] >= until and v[2] == 0,
        timeout=timeout,
        what=f"the alerter to commit {messages} messages and judge up to {until.isoformat()}",
        workers=[alerter],
    )


def final_until(items: Sequence[ScoredItem]) -> datetime:
    """Where the alerter's watermark ends: the last story minus the allowed lateness."""
    return bucket_start(max(i.published_at for i in items) - LATENESS)


class Run:
    """One alerter process on a stream: start it, play the stream, wait until it caught up."""

    def __init__(
        self, broker: EmbeddedBroker, url: str, topics: AlerterTopics, tmp_path: Path, **extra: str
    ) -> None:
        self.broker, self.url, self.topics, self.tmp_path, self.extra = broker, url, topics, tmp_path, extra

    def alerter(self, group: str, name: str = "alerter", **extra: str) -> AlerterProcess:
        env = alerter_env(
            bootstrap=self.broker.bootstrap,
            database_url=self.url,
            topics=self.topics,
            group=group,
            home=self.tmp_path / "home",
            **{**self.extra, **extra},
        )
        return AlerterProcess(env, self.tmp_path / f"{name}.log", name=name)

    def caught_up(
        self, engine: Engine, alerter: AlerterProcess, group: str, *, messages: int, until: datetime
    ) -> None:
        """`wait_until_caught_up` on this run's scored topic."""
        wait_until_caught_up(
            engine,
            alerter,
            bootstrap=self.broker.bootstrap,
            group=group,
            topic=self.topics.scored,
            messages=messages,
            until=until,
        )

    def play(
        self,
        engine: Engine,
        alerter: AlerterProcess,
        group: str,
        items: Sequence[ScoredItem],
        *,
        until: datetime | None = None,
    ) -> int:
        """Send `items` to the scored topic and wait until `alerter` judged them (up to
        `final_until(items)` unless told); returns the messages sent."""
        sent = play(engine, self.broker.bootstrap, self.topics.scored, items)
        self.caught_up(engine, alerter, group, messages=sent, until=until or final_until(items))
        return sent


def alerts(engine: Engine) -> list[AlertRow]:
    with Session(engine) as session:
        return list(session.scalars(select(AlertRow).order_by(AlertRow.id)))


def outbox(engine: Engine) -> list[AlertOutboxRow]:
    with Session(engine) as session:
        return list(session.scalars(select(AlertOutboxRow).order_by(AlertOutboxRow.id)))
