"""The delivery commands as a user runs them: `finsent subscriptions test` through a real
webhook, `finsent dispatcher` as a process (health, metrics, SIGTERM) on PostgreSQL, and
`finsent dispatcher --once` on the embedded SQLite default."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from services.cli import app
from services.delivery import repository as repo
from services.settings import get_settings
from services.storage import DeliveryRow, make_engine, session_factory, upgrade_database

from .delivery_support import WebhookReceiver, clear_delivery_tables, insert_notification, wait_until

pytestmark = pytest.mark.integration

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    with session_factory(engine).begin() as session:
        clear_delivery_tables(session)
    engine.dispose()
    yield postgres_url


def invoke(*args: str, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}
        # the receivers are on loopback: allowed explicitly
        env = {**unset, "FINSENT_OUTBOUND_ALLOW": "127.0.0.1", **env}
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        get_settings.cache_clear()


def test_subscriptions_test_sends_a_signed_test_notification(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    secret_file = tmp_path / "hook.key"
    secret_file.write_text("file-held-secret\n")
    receiver = WebhookReceiver(statuses=[200, 500])
    with receiver.serve():
        result = invoke("subscriptions", "add", "--name", "desk", "--channel", "webhook",
                        "--target", receiver.url(), "--secret-ref", f"file:{secret_file}",
                        FINSENT_DATABASE_URL=database)  # fmt: skip
        assert result.exit_code == 0, result.output
        result = invoke("subscriptions", "test", "desk", FINSENT_DATABASE_URL=database)
        assert result.exit_code == 0, result.output
        assert re.search(
            r"test notification to webhook http://127\.0\.0\.1:\d+/hook: delivered \(200\)", result.stdout
        )
        result = invoke("subscriptions", "test", "desk", FINSENT_DATABASE_URL=database)
        assert result.exit_code == 1
        assert "failed (would be retried) (500): HTTP 500" in result.stderr

    first = receiver.requests[0]
    assert first.signed_with("file-held-secret")
    doc = json.loads(first.body)
    assert doc["type"] == "test" and doc["test"] is True and doc["subscription"] == "desk"
    assert first.headers["Idempotency-Key"] != receiver.requests[1].headers["Idempotency-Key"]
    engine = make_engine(database)
    with session_factory(engine)() as session:
        assert session.scalars(select(DeliveryRow)).all() == []  # a test is not a delivery
        [stored] = repo.list_subscriptions(session)
    engine.dispose()
    assert stored.secret_ref == f"file:{secret_file}"  # the reference, not the secret


def health(base: str) -> dict[str, Any]:
    """The /health body; {} while it answers 503 (starting)."""
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError:
        return {}


def test_dispatcher_process_delivers_serves_health_and_stops_on_sigterm(
    database: str, tmp_path: Path
) -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        engine = make_engine(database)
        with session_factory(engine).begin() as session:
            add = ["subscriptions", "add", "--name", "desk", "--channel", "webhook",
                   "--target", receiver.url(), "--secret-ref", "env:DISPATCH_TEST_KEY"]  # fmt: skip
            assert invoke(*add, FINSENT_DATABASE_URL=database).exit_code == 0
            insert_notification(session, scope="topic", key="Energy / Oil")
        env = {**CLEAN_ENV, "FINSENT_DATABASE_URL": database, "FINSENT_DISPATCHER_METRICS_PORT": "0",
               "FINSENT_DISPATCHER_POLL_SECONDS": "0.1", "FINSENT_OUTBOUND_ALLOW": "127.0.0.1",
               "DISPATCH_TEST_KEY": "k"}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "services", "dispatcher"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            url = re.search(r"health (http://\S+)/health", banner)
            assert url, banner
            wait_until(lambda: health(url.group(1)).get("delivered") == 1, timeout=20)
            assert health(url.group(1))["status"] == "ok"
            assert len(receiver.requests) == 1
            with urllib.request.urlopen(f"{url.group(1)}/metrics", timeout=5) as response:
                metrics = response.read().decode()
            assert 'finsent_delivery_attempts_total{channel="webhook",outcome="delivered"} 1.0' in metrics
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with session_factory(engine)() as session:
            assert session.scalars(select(DeliveryRow.status)).all() == ["delivered"]
        engine.dispose()
    assert receiver.requests[0].signed_with("k")


def test_dispatcher_once_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/finsent.db"
    result = invoke("subscriptions", "add", "--name", "out", "--channel", "log", "--target", "stdout",
                    FINSENT_DATABASE_URL=url)  # fmt: skip
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        key = insert_notification(
            session, scope="ticker", key="AAPL", at=datetime(2025, 3, 3, 12, tzinfo=UTC)
        )
    for expected in (1, 0):  # a second run sends nothing again
        result = invoke("dispatcher", "--once", FINSENT_DATABASE_URL=url)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert f"{expected} sends: {expected} delivered" in lines[-1]
        if expected:
            record = json.loads(lines[0])
            assert record["notifications"][0]["key"] == "AAPL"
            assert record["idempotency_key"].startswith(key)
    with session_factory(engine)() as session:
        assert session.scalars(select(DeliveryRow.status)).all() == ["delivered"]

    # Removing it deletes that history: without a terminal it needs --yes, and says how much.
    refused = invoke("subscriptions", "remove", "out", FINSENT_DATABASE_URL=url)
    assert refused.exit_code == 2
    assert "delete its 1 deliveries (pending and history): not confirmed" in refused.stderr
    with session_factory(engine)() as session:
        assert len(session.scalars(select(DeliveryRow.id)).all()) == 1
    removed = invoke("subscriptions", "remove", "out", "--yes", FINSENT_DATABASE_URL=url)
    assert removed.exit_code == 0 and "removed subscription out and 1 deliveries" in removed.stdout
    with session_factory(engine)() as session:
        assert session.scalars(select(DeliveryRow.id)).all() == []
    engine.dispose()
