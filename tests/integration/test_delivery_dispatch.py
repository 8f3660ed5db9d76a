"""The dispatcher against real PostgreSQL, a real local webhook receiver and real timing.

Outbox rows are written directly (the alerter's side of the contract). Backoff is shrunk to
tens of milliseconds so retries happen within a test; digest periods use a movable clock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.delivery import repository as repo
from services.delivery.channels import Channel, build_channel, smtp_config
from services.delivery.channels.email import EmailChannel
from services.delivery.dispatcher import Dispatcher
from services.delivery.model import Subscription
from services.delivery.subscriptions import build_subscription
from services.outbound import OutboundPolicy
from services.settings import Settings
from services.storage import (
    AlertOutboxRow,
    DeliveryAttemptRow,
    DeliveryRow,
)

from .delivery_support import (
    T0,
    DripServer,
    WebhookReceiver,
    emptied_sessions,
    insert_notification,
    module_engine,  # noqa: F401  (the module's `engine` fixture)
    wait_until,
)

pytestmark = pytest.mark.integration

SECRET = "s3cret-hmac-key"


@pytest.fixture
def sessions(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> sessionmaker[Session]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    return emptied_sessions(engine)


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "delivery_backoff_initial_seconds": 0.02,
        "delivery_backoff_max_seconds": 0.1,
        "delivery_timeout_seconds": 2.0,
        "delivery_max_attempts": 8,
        "dispatcher_poll_seconds": 0.02,
        "outbound_allow": "127.0.0.1",  # the receivers are on loopback: allowed explicitly
    }
    return Settings(**{**base, **overrides})


def add(sessions: sessionmaker[Session], **fields: Any) -> Subscription:
    fields.setdefault("secret_ref", "env:TEST_HOOK_SECRET" if fields.get("channel") == "webhook" else None)
    sub = build_subscription(**fields, policy=OutboundPolicy.parse("127.0.0.1"))
    with sessions.begin() as session:
        return repo.add_subscription(session, subscription=sub, now=datetime.now(UTC))


def notify(sessions: sessionmaker[Session], **fields: Any) -> str:
    with sessions.begin() as session:
        return insert_notification(session, **fields)


def deliveries(sessions: sessionmaker[Session]) -> list[DeliveryRow]:
    with sessions() as session:
        return list(session.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))


def attempts(sessions: sessionmaker[Session], delivery_id: int) -> list[DeliveryAttemptRow]:
    with sessions() as session:
        stmt = select(DeliveryAttemptRow).where(DeliveryAttemptRow.delivery_id == delivery_id)
        return list(session.scalars(stmt.order_by(DeliveryAttemptRow.attempt)))


def run_until(dispatcher: Dispatcher, done: Callable[[], bool], timeout: float = 15.0) -> None:
    wait_until(lambda: (dispatcher.run_once(), done())[1], timeout=timeout)


def dedupe_keys(received: bytes) -> list[str]:
    return [n["dedupe_key"] for n in json.loads(received)["notifications"]]


# --------------------------------------------------------------------------- tests


def test_webhook_failing_twice_then_succeeding_is_delivered_once(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver(statuses=[503, 503])
    with receiver.serve():
        sub = add(sessions, name="hook", channel="webhook", target=receiver.url())
        dedupe = notify(sessions, scope="topic", key="Energy / Oil")
        dispatcher = Dispatcher(sessions, settings())
        try:
            run_until(dispatcher, lambda: deliveries(sessions)[0].status != "pending")
            for _ in range(5):  # more cycles send nothing more
                dispatcher.run_once()
        finally:
            dispatcher.close()

    [delivery] = deliveries(sessions)
    assert delivery.status == "delivered" and delivery.attempts == 3 and delivery.delivered_at is not None
    assert delivery.idempotency_key == f"{dedupe}|{sub.id}"
    rows = attempts(sessions, delivery.id)
    assert [(a.attempt, a.ok, a.status_code) for a in rows] == [
        (1, False, 503),
        (2, False, 503),
        (3, True, 200),
    ]
    assert all(a.finished_at >= a.started_at for a in rows)
    assert len(receiver.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {delivery.idempotency_key}
    assert len({r.body for r in receiver.requests}) == 1  # byte-identical retries
    for request in receiver.requests:
        assert request.signed_with(SECRET)
        assert not request.signed_with("wrong-secret")
        assert request.headers["X-Finsent-Timestamp"].isdigit()
        assert request.headers["Content-Type"].startswith("application/json")
    body = json.loads(receiver.requests[0].body)
    assert body["type"] == "alert" and body["count"] == 1 and body["test"] is False
    [n] = body["notifications"]
    assert (n["dedupe_key"], n["scope"], n["key"], n["severity"]) == (dedupe, "topic", "Energy / Oil", "high")
    assert n["payload"]["headlines"][0]["headline"] == "Oil majors slump as crude plunges"
    with sessions() as session:
        assert session.scalar(select(AlertOutboxRow.dispatched_at)) is not None


def test_permanent_4xx_is_dead_after_one_attempt(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver(default=404)
    with receiver.serve():
        add(sessions, name="gone", channel="webhook", target=receiver.url())
        notify(sessions, scope="market", key="*")
        dispatcher = Dispatcher(sessions, settings())
        try:
            run_until(dispatcher, lambda: deliveries(sessions)[0].status != "pending")
            for _ in range(5):
                dispatcher.run_once()
        finally:
            dispatcher.close()
    [delivery] = deliveries(sessions)
    assert (delivery.status, delivery.attempts) == ("dead", 1)
    assert delivery.last_error is not None and "404" in delivery.last_error
    assert [(a.ok, a.status_code) for a in attempts(sessions, delivery.id)] == [(False, 404)]
    assert len(receiver.requests) == 1
    assert dispatcher.metrics.outcomes.labels(channel="webhook", outcome="dead")._value.get() == 1


def test_gives_up_after_max_attempts(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver(default=500)
    with receiver.serve():
        add(sessions, name="broken", channel="webhook", target=receiver.url())
        notify(sessions, scope="ticker", key="AAPL")
        dispatcher = Dispatcher(sessions, settings(delivery_max_attempts=4))
        try:
            run_until(dispatcher, lambda: deliveries(sessions)[0].status != "pending")
            for _ in range(5):
                dispatcher.run_once()
        finally:
            dispatcher.close()
    [delivery] = deliveries(sessions)
    assert (delivery.status, delivery.attempts) == ("dead", 4)
    assert "500" in (delivery.last_error or "")
    assert [a.status_code for a in attempts(sessions, delivery.id)] == [500] * 4
    assert len(receiver.requests) == 4
    metrics = dispatcher.metrics.outcomes
    assert metrics.labels(channel="webhook", outcome="failed")._value.get() == 3
    assert metrics.labels(channel="webhook", outcome="dead")._value.get() == 1


def test_subscriptions_receive_only_what_their_filters_match(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        subs = {
            "everything": {},
            "energy": {"keys": ["Energy / Oil"]},
            "aapl-high": {"keys": ["AAPL"], "min_severity": "high"},
            "market-critical": {"scopes": ["market"], "min_severity": "critical"},
            "topics": {"scopes": ["topic"]},
            "market-and-aapl": {"scopes": ["market", "ticker"], "keys": ["$aapl"]},
            "fed-or-tsla": {"keys": ["Fed / Central Banks", "TSLA"], "min_severity": "high"},
        }
        for name, filters in subs.items():
            add(sessions, name=name, channel="webhook", target=receiver.url(f"/{name}"), **filters)
        n = {
            "market-warning": notify(sessions, scope="market", key="*", severity="warning"),
            "market-critical": notify(
                sessions, scope="market", key="*", severity="critical", kind="escalate"
            ),
            "energy-high": notify(sessions, scope="topic", key="Energy / Oil", severity="high"),
            "fed-warning": notify(sessions, scope="topic", key="Fed / Central Banks", severity="warning"),
            "fed-resolve-high": notify(
                sessions, scope="topic", key="Fed / Central Banks", kind="resolve", at=T0 + timedelta(hours=1)
            ),
            "aapl-warning": notify(sessions, scope="ticker", key="AAPL", severity="warning"),
            "aapl-critical": notify(
                sessions, scope="ticker", key="AAPL", severity="critical", kind="escalate"
            ),
            "tsla-high": notify(sessions, scope="ticker", key="TSLA", severity="high"),
        }
        dispatcher = Dispatcher(sessions, settings())
        try:
            run_until(dispatcher, lambda: all(d.status == "delivered" for d in deliveries(sessions)))
        finally:
            dispatcher.close()

    got: dict[str, set[str]] = {name: set() for name in subs}
    for request in receiver.requests:
        got[request.path.lstrip("/")].update(dedupe_keys(request.body))
    expected = {
        "everything": set(n),
        "energy": {"energy-high"},
        "aapl-high": {"aapl-critical"},
        "market-critical": {"market-critical"},
        "topics": {"energy-high", "fed-warning", "fed-resolve-high"},
        "market-and-aapl": {"market-warning", "market-critical", "aapl-warning", "aapl-critical"},
        "fed-or-tsla": {"fed-resolve-high", "tsla-high"},
    }
    assert got == {name: {n[label] for label in labels} for name, labels in expected.items()}
    assert len(receiver.requests) == sum(len(v) for v in expected.values())  # nothing twice


def test_fan_out_twice_replay_and_restart_make_no_duplicates(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        add(sessions, name="a", channel="webhook", target=receiver.url("/a"))
        add(sessions, name="b", channel="log", target="finsent.test")
        keys = [notify(sessions, scope="ticker", key=t) for t in ("AAPL", "TSLA", "XOM")]
        now = datetime.now(UTC)
        with sessions.begin() as session:
            assert repo.fan_out(session, now=now, limit=100) == repo.FanOut(3, 6)
        with sessions.begin() as session:  # as if the first fan-out's dispatched_at were lost
            session.execute(update(AlertOutboxRow).values(dispatched_at=None))
        with sessions.begin() as session:
            assert repo.fan_out(session, now=now, limit=100) == repo.FanOut(3, 0)
        for key in ("AAPL", "TSLA", "XOM"):  # the alerter replaying the same stream
            notify(sessions, scope="ticker", key=key)
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(AlertOutboxRow)) == 3

        first = Dispatcher(sessions, settings())
        first.run_once()
        first.close()
        second = Dispatcher(sessions, settings())  # a restart
        for _ in range(3):
            second.run_once()
        second.close()

    assert len(deliveries(sessions)) == 6
    assert all(d.status == "delivered" and d.attempts == 1 for d in deliveries(sessions))
    assert sorted(k for r in receiver.requests for k in dedupe_keys(r.body)) == sorted(keys)


def test_crash_between_send_and_record_resends_with_the_same_key(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        add(sessions, name="hook", channel="webhook", target=receiver.url())
        notify(sessions, scope="topic", key="Earnings")

        def crash(*args: object, **kwargs: object) -> None:
            raise RuntimeError("dispatcher killed after the send, before the record")

        with monkeypatch.context() as patch:
            patch.setattr(repo, "record_attempt", crash)
            crashed = Dispatcher(sessions, settings())
            with pytest.raises(RuntimeError):
                crashed.run_once()
            crashed.close()
        assert len(receiver.requests) == 1
        [delivery] = deliveries(sessions)
        assert (delivery.status, delivery.attempts) == ("pending", 1)  # claimed, not lost
        assert attempts(sessions, delivery.id) == []

        restarted = Dispatcher(sessions, settings())
        restarted.run_once()  # the lease has not run out: nothing is sent yet
        assert len(receiver.requests) == 1
        after_lease = datetime.now(UTC) + restarted.config.lease + timedelta(seconds=1)
        restarted = Dispatcher(sessions, settings(), clock=lambda: after_lease)
        restarted.run_once()
        restarted.close()

    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == delivery.idempotency_key
    assert first.body == second.body
    [delivery] = deliveries(sessions)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [(a.attempt, a.ok) for a in attempts(sessions, delivery.id)] == [(2, True)]


def test_digest_sends_one_message_with_all_alerts_of_the_period(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver(statuses=[503])
    clock = {"now": datetime(2025, 3, 3, 12, 1, 30, tzinfo=UTC)}
    with receiver.serve():
        sub = add(sessions, name="digest", channel="webhook", target=receiver.url(), digest_minutes=5)
        add(sessions, name="now", channel="log", target="finsent.test")
        keys = [
            notify(sessions, scope="topic", key=topic)
            for topic in ("Energy / Oil", "Earnings", "Macro", "Fed / Central Banks")
        ]
        dispatcher = Dispatcher(sessions, settings(), clock=lambda: clock["now"])
        try:
            dispatcher.run_once()
            assert receiver.requests == []  # the period 12:00-12:05 is still open
            statuses = {d.subscription_id: d.status for d in deliveries(sessions)}
            assert len(statuses) == 2 and statuses[sub.id] == "pending"  # the immediate one is out

            clock["now"] = datetime(2025, 3, 3, 12, 5, 1, tzinfo=UTC)
            late = notify(sessions, scope="ticker", key="AAPL", at=T0 + timedelta(minutes=6))
            dispatcher.run_once()  # fans out `late` into the next period, sends the digest: 503
            assert len(receiver.requests) == 1
            clock["now"] += timedelta(seconds=1)
            dispatcher.run_once()  # the retry
            assert len(receiver.requests) == 2
            clock["now"] = datetime(2025, 3, 3, 12, 10, 1, tzinfo=UTC)
            dispatcher.run_once()  # the next period: `late` alone
        finally:
            dispatcher.close()

    first, retry, second = receiver.requests
    assert sorted(dedupe_keys(first.body)) == sorted(keys)
    assert json.loads(first.body)["type"] == "digest" and json.loads(first.body)["count"] == 4
    assert first.body == retry.body
    assert first.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"]
    assert dedupe_keys(second.body) == [late]
    assert second.headers["Idempotency-Key"] != first.headers["Idempotency-Key"]
    digest_rows = [d for d in deliveries(sessions) if d.subscription_id == sub.id]
    assert all(d.status == "delivered" for d in digest_rows)
    by_key: dict[str | None, int] = {}
    for d in digest_rows:
        by_key[d.digest_key] = by_key.get(d.digest_key, 0) + 1
    assert by_key == {first.headers["Idempotency-Key"]: 4, second.headers["Idempotency-Key"]: 1}
    member = next(d for d in digest_rows if d.digest_key == first.headers["Idempotency-Key"])
    assert [(a.attempt, a.status_code) for a in attempts(sessions, member.id)] == [(1, 503), (2, 200)]


def test_two_dispatchers_never_send_the_same_delivery_twice(sessions: sessionmaker[Session]) -> None:
    receiver = WebhookReceiver(delay=0.05)
    with receiver.serve():
        add(sessions, name="hook", channel="webhook", target=receiver.url())
        for i in range(40):
            notify(sessions, scope="ticker", key=f"T{i}")
        stop = threading.Event()
        workers = [
            Dispatcher(sessions, settings(dispatcher_concurrency=2, dispatcher_batch_size=5)) for _ in (1, 2)
        ]
        threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
        for thread in threads:
            thread.start()
        try:
            wait_until(
                lambda: (
                    len(receiver.requests) >= 40
                    and all(d.status == "delivered" for d in deliveries(sessions))
                )
            )
            stop.wait(0.3)  # time for a double send to show up
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
            for w in workers:
                w.close()
    sent = [r.headers["Idempotency-Key"] for r in receiver.requests]
    assert len(sent) == len(set(sent)) == 40
    per_worker = [w.metrics._delivered for w in workers]
    assert sum(per_worker) == 40
    assert all(n > 0 for n in per_worker), per_worker  # they really shared the work


def test_a_claim_takes_at_most_its_limit_and_skips_claimed_rows(sessions: sessionmaker[Session]) -> None:
    add(sessions, name="log", channel="log", target="finsent.test")
    for i in range(10):
        notify(sessions, scope="ticker", key=f"T{i}")
    now = datetime.now(UTC)
    with sessions.begin() as session:
        repo.fan_out(session, now=now, limit=100)
    lease = now + timedelta(minutes=1)
    with sessions.begin() as first, sessions.begin() as second:  # two open transactions at once
        a = repo.claim_due(first, now=now, lease_until=lease, limit=3)
        b = repo.claim_due(second, now=now, lease_until=lease, limit=3)
    ids_a = {i for c in a for i in c.delivery_ids}
    ids_b = {i for c in b for i in c.delivery_ids}
    assert len(ids_a) == len(ids_b) == 3 and not ids_a & ids_b
    with sessions.begin() as session:
        rest = repo.claim_due(session, now=now, lease_until=lease, limit=100)
    assert len(rest) == 4 and all(c.attempt == 1 for c in rest)


def test_a_delivery_that_keeps_crashing_the_dispatcher_is_given_up(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        add(sessions, name="hook", channel="webhook", target=receiver.url())
        notify(sessions, scope="topic", key="Earnings")

        def crash(*args: object, **kwargs: object) -> None:
            raise RuntimeError("killed while recording")

        later = datetime.now(UTC)
        for _ in range(2):  # max_attempts=2: two sends whose outcome was never recorded
            with monkeypatch.context() as patch:
                patch.setattr(repo, "record_attempt", crash)
                crashing = Dispatcher(sessions, settings(delivery_max_attempts=2), clock=lambda: later)
                with pytest.raises(RuntimeError):
                    crashing.run_once()
                crashing.close()
            later = later + crashing.config.lease + timedelta(seconds=1)
        final = Dispatcher(sessions, settings(delivery_max_attempts=2), clock=lambda: later)
        final.run_once()
        final.close()
    assert len(receiver.requests) == 2
    [delivery] = deliveries(sessions)
    assert (delivery.status, delivery.attempts) == ("dead", 2)
    assert "interrupted" in (delivery.last_error or "")


def test_a_dripping_receiver_cannot_stall_the_round_past_its_deadline(
    sessions: sessionmaker[Session],
) -> None:
    """An SMTP server that sends its greeting a byte every 0.2 s never trips smtplib's
    per-read timeout; a webhook receiver that does the same with its answer never trips a
    socket timeout either. Each send ends by its own deadline, and a channel whose own
    limits are longer than the round's (here: e-mail with a 60 s timeout) by the round's
    deadline, well inside the claim lease: the fast subscriber is delivered, the slow ones
    are failed attempts to retry, and the cycle returns instead of waiting on them."""
    smtp_drip = DripServer(
        response=b"220 " + b"x" * 5000 + b"\r\n", interval=0.2, limit=60, speaks_first=True
    )
    http_drip = DripServer(interval=0.2, limit=60)
    receiver = WebhookReceiver()
    config = settings(
        delivery_timeout_seconds=0.5,
        smtp_host="127.0.0.1",
        smtp_starttls=False,
        dispatcher_concurrency=4,
    )
    with smtp_drip.serve(), http_drip.serve(), receiver.serve():
        smtp = config.delivery.model_copy(update={"smtp_port": smtp_drip.port})  # known once it serves
        config = config.model_copy(update={"delivery": smtp})
        add(sessions, name="fast", channel="webhook", target=receiver.url())
        add(sessions, name="slow-hook", channel="webhook", target=http_drip.url())
        add(sessions, name="slow-mail", channel="email", target="desk@example.com")
        add(sessions, name="stuck-mail", channel="email", target="ops@example.com")
        notify(sessions, scope="topic", key="Energy / Oil")

        def channel_for(sub: Subscription) -> Channel:
            if sub.name == "stuck-mail":
                return EmailChannel(sub.target, replace(smtp_config(config), timeout=60.0))
            return build_channel(sub, config)

        dispatcher = Dispatcher(sessions, config, channel_factory=channel_for)
        try:
            assert dispatcher.config.round_deadline < dispatcher.config.lease
            t0 = time.monotonic()
            stats = dispatcher.run_once()
            took = time.monotonic() - t0
        finally:
            dispatcher.close()
    assert took < dispatcher.config.round_deadline.total_seconds() + 3, took
    assert (stats.sends, stats.delivered, stats.failed) == (4, 1, 3)
    rows = deliveries(sessions)
    assert sorted(d.status for d in rows) == ["delivered", "pending", "pending", "pending"]
    assert sorted(d.last_error or "" for d in rows if d.status == "pending") == [
        "SMTP exchange not finished within 1 s",
        "connection failed or no complete answer within 0.5 s",
        "no answer within the round's deadline of 9 s",
    ]
