"""`finsent alerts list | show | ack | resolve` against a real PostgreSQL database: filters,
the JSON keys, and the analyst actions as the dashboard makes them (first acknowledgement
stands; resolving leaves the alerter's status alone)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from services.cli import app
from services.cli.alerts import ALERT_KEYS
from services.settings import get_settings
from services.storage import make_engine, upgrade_database
from services.storage.alert_models import AlertRow

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def alerts_db(postgres_url: str) -> Iterator[dict[str, int]]:
    """Three alerts: an open topic alert (1 h ago), an open ticker alert (10 min ago) and a
    resolved market alert (3 days ago); yields their ids by name."""
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)

    def alert(name: str, scope: str, key: str, opened: datetime, status: str) -> AlertRow:
        return AlertRow(
            alert_key=f"bearish-spike|{scope}|{key}|{opened.isoformat()}",
            rule="bearish-spike",
            scope=scope,
            key=key,
            window_start=opened - timedelta(minutes=10),
            opened_at=opened,
            last_detected_at=opened + timedelta(minutes=1),
            severity="high" if name == "topic" else "warning",
            notified_severity="warning",
            last_notified_at=opened,
            detections=2,
            status=status,
            resolved_at=opened + timedelta(minutes=5) if status == "resolved" else None,
            evidence={"bearish": 9, "total": 12, "p_value": 1.5e-8},
            event_ids=[f"ev-{name}-1", f"ev-{name}-2"],
            created_at=opened,
            updated_at=opened,
        )

    rows = {
        "topic": alert("topic", "topic", "Energy / Oil", NOW - timedelta(hours=1), "open"),
        "ticker": alert("ticker", "ticker", "XOM", NOW - timedelta(minutes=10), "open"),
        "market": alert("market", "market", "*", NOW - timedelta(days=3), "resolved"),
    }
    with Session(engine) as session, session.begin():
        session.add_all(rows.values())
        session.flush()
        ids = {name: row.id for name, row in rows.items()}
    engine.dispose()
    yield ids


def invoke(url: str, *args: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["alerts", *args], env={**CLEAN_ENV, "FINSENT_DATABASE_URL": url})
    finally:
        get_settings.cache_clear()


def listed(url: str, *args: str) -> list[dict[str, Any]]:
    result = invoke(url, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stored(url: str, alert_id: int) -> AlertRow:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return session.scalars(select(AlertRow).where(AlertRow.id == alert_id)).one()
    finally:
        engine.dispose()


def test_list_filters_and_json_keys(postgres_url: str, alerts_db: dict[str, int]) -> None:
    opened = listed(postgres_url)  # default: --status open, newest first
    assert [a["id"] for a in opened] == [alerts_db["ticker"], alerts_db["topic"]]
    assert list(opened[0]) == list(ALERT_KEYS)
    assert opened[0]["opened_at"] == (NOW - timedelta(minutes=10)).isoformat()

    assert [a["id"] for a in listed(postgres_url, "--status", "all")] == [
        alerts_db["ticker"],
        alerts_db["topic"],
        alerts_db["market"],
    ]
    assert [a["id"] for a in listed(postgres_url, "--status", "resolved")] == [alerts_db["market"]]
    assert [a["id"] for a in listed(postgres_url, "--scope", "topic")] == [alerts_db["topic"]]
    assert [a["id"] for a in listed(postgres_url, "--status", "all", "--since", "2h")] == [
        alerts_db["ticker"],
        alerts_db["topic"],
    ]
    since = (NOW - timedelta(minutes=30)).replace(tzinfo=None).isoformat()
    assert [a["id"] for a in listed(postgres_url, "--since", since)] == [alerts_db["ticker"]]
    assert len(listed(postgres_url, "--status", "all", "--limit", "1")) == 1

    table = invoke(postgres_url, "list")
    assert table.exit_code == 0
    assert "Energy / Oil" in table.stdout and "XOM" in table.stdout and "*" not in table.stdout


def test_show(postgres_url: str, alerts_db: dict[str, int]) -> None:
    result = invoke(postgres_url, "show", str(alerts_db["topic"]), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["evidence"] == {"bearish": 9, "total": 12, "p_value": 1.5e-8}
    assert record["event_ids"] == ["ev-topic-1", "ev-topic-2"]
    text = invoke(postgres_url, "show", str(alerts_db["topic"]))
    assert "Energy / Oil" in text.stdout and "p_value: 1.5e-08" in text.stdout


def test_ack_then_resolve(postgres_url: str, alerts_db: dict[str, int]) -> None:
    ticker = alerts_db["ticker"]
    result = invoke(postgres_url, "ack", str(ticker), "--by", "anna")
    assert result.exit_code == 0 and f"alert #{ticker} acknowledged by anna" in result.stdout
    again = invoke(postgres_url, "ack", str(ticker), "--by", "ben")
    assert again.exit_code == 0 and "already acknowledged by anna" in again.stdout
    assert stored(postgres_url, ticker).acknowledged_by == "anna"
    assert [a["id"] for a in listed(postgres_url, "--status", "acknowledged")] == [ticker]

    result = invoke(postgres_url, "resolve", str(ticker), "--by", "ben")
    assert result.exit_code == 0 and f"alert #{ticker} resolved by ben" in result.stdout
    row = stored(postgres_url, ticker)
    assert row.closed_by == "ben" and row.acknowledged_by == "anna"
    assert row.status == "open"  # the alerter's status is the alerter's
    assert ticker not in [a["id"] for a in listed(postgres_url, "--status", "attention")]
    assert [a["id"] for a in listed(postgres_url, "--status", "closed")] == [ticker]


@pytest.mark.parametrize("verb", ["show", "ack", "resolve"])
def test_unknown_alert_is_one_line(postgres_url: str, alerts_db: dict[str, int], verb: str) -> None:
    result = invoke(postgres_url, verb, "987654")
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == "finsent: error: no alert #987654 (see `finsent alerts list --status all`)"
    )
