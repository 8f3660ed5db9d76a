"""The alerter's pure parts: configuration from settings, reading news.scored, /health; and
its dead letters, sent to a fake DLQ producer."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError
from kafka.future import Future
from sqlalchemy import create_engine
from typer.testing import CliRunner

from services.alerting import DetectorConfig, LifecycleConfig
from services.alerting.config import alerter_config
from services.alerting.metrics import AlerterMetrics, AlerterSnapshot, alerter_health
from services.alerting.service import MAX_SCORED_BYTES, Alerter, UnreadableMessage, parse_scored
from services.alerting.store import contiguous_ranges
from services.broker.dead_letters import H_ORIGINAL_SIZE, MAX_DEAD_LETTER_VALUE_BYTES
from services.broker.errors import BrokerError, BrokerUnavailable
from services.cli.app import app
from services.settings import Settings, get_settings

T = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def test_default_settings_give_the_documented_detector_and_lifecycle() -> None:
    config = alerter_config(Settings())
    assert config.detector == DetectorConfig()
    assert config.lifecycle == LifecycleConfig()
    assert config.lateness == timedelta(seconds=120)
    assert config.checkpoint_retention == timedelta(hours=6)


def test_every_alert_setting_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ALERT_BUCKET_SECONDS": "300",
        "ALERT_WINDOW_BUCKETS": "6",
        "ALERT_P_WARNING": "1e-4",
        "ALERT_P_HIGH": "1e-6",
        "ALERT_P_CRITICAL": "1e-9",
        "ALERT_MIN_BEARISH": "8",
        "ALERT_SURGE_MIN_BEARISH": "4",
        "ALERT_SURGE_SHORT_BUCKETS": "2",
        "ALERT_BASELINE_HALF_LIFE_HOURS": "3",
        "ALERT_WARMUP_MINUTES": "30",
        "ALERT_RESOLVE_AFTER_MINUTES": "10",
        "ALERT_COOLDOWN_MINUTES": "0",
        "ALERT_RENOTIFY_MINUTES": "60",
        "ALERT_ALLOWED_LATENESS_SECONDS": "30",
        "ALERT_LIVE_HORIZON_MINUTES": "5",
        "ALERTER_PARTITION_IDLE_SECONDS": "7",
        "ALERTER_CHECKPOINT_HOURS": "2",
    }.items():
        monkeypatch.setenv(f"FINSENT_{name}", value)
    c = alerter_config(Settings())
    d = c.detector
    assert (d.bucket_width, d.window_buckets, d.min_bearish) == (5 * M, 6, 8)
    assert (d.surge_min_bearish, d.surge_short_buckets) == (4, 2)
    assert (d.p_warning, d.p_high, d.p_critical) == (1e-4, 1e-6, 1e-9)
    assert (d.baseline_half_life, d.warmup) == (timedelta(hours=3), 30 * M)
    assert c.lifecycle == LifecycleConfig(resolve_after=10 * M, cooldown=timedelta(0), renotify_every=60 * M)
    assert (c.lateness, c.live_horizon, c.partition_idle) == (
        timedelta(seconds=30),
        5 * M,
        timedelta(seconds=7),
    )
    assert c.checkpoint_retention == timedelta(hours=2)
    clock = c.event_clock()
    assert (clock.lateness, clock.width, clock.idle_after) == (c.lateness, 5 * M, timedelta(seconds=7))


def test_a_looser_warning_threshold_moves_the_learning_threshold_with_it() -> None:
    assert alerter_config(Settings(alert_p_warning=1e-2)).detector.p_learn == 1e-2
    with pytest.raises(ValueError):  # p_high above p_warning: refused, not silently reordered
        alerter_config(Settings(alert_p_high=1e-3))


def test_parse_scored_reads_event_id_and_event_time() -> None:
    ref = parse_scored(json.dumps({"event_id": "a", "published_at": "2025-03-03T13:00:00+01:00"}).encode())
    assert ref.event_id == "a" and ref.published_at == T and ref.published_at.tzinfo is UTC
    for bad in (
        None,
        b"\xff",
        b"[1]",
        b'{"published_at": "2025-03-03T12:00:00Z"}',
        b'{"event_id": "a", "published_at": "2025-03-03T12:00:00"}',
        b'{"event_id": "a", "published_at": "yesterday"}',
        b'{"event_id": "a", "published_at": 5}',
    ):
        with pytest.raises(UnreadableMessage):
            parse_scored(bad)


@pytest.mark.parametrize(
    "published_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z"],
)
def test_parse_scored_refuses_times_out_of_range(published_at: str) -> None:
    """Unreadable, not an OverflowError: an exception out of the loop ended the alerter, and
    it met the same record after every restart (a year-1 story overflowed its watermark)."""
    with pytest.raises(UnreadableMessage, match="out of range"):
        parse_scored(json.dumps({"event_id": "a", "published_at": published_at}).encode())


def test_contiguous_ranges_merge_adjacent_buckets() -> None:
    starts = [T + 3 * M, T, T + M, T + 7 * M, T + M]
    assert contiguous_ranges(starts, M) == [(T, T + 2 * M), (T + 3 * M, T + 4 * M), (T + 7 * M, T + 8 * M)]


def snapshot(**kw: object) -> AlerterSnapshot:
    base: dict[str, object] = {
        "standby": False,
        "assigned": (("news.scored", 0),),
        "database_retrying": False,
        "last_loop_at": 100.0,
        "last_step_at": 99.0,
        "evaluated_until": T,
        "newest_event": T + 2 * M,
        "live": False,
        "open_alerts": 1,
        "messages": 10,
        "started_at": 0.0,
        "now": 101.0,
        "stall_seconds": 60.0,
    }
    base.update(kw)
    return AlerterSnapshot(**base)  # type: ignore[arg-type]


def test_health_states() -> None:
    ok = alerter_health(snapshot())
    assert (ok.status, ok.http_status) == ("ok", 200)
    assert ok.body["evaluated_until"] == T.isoformat() and ok.body["open_alerts"] == 1
    assert alerter_health(snapshot(assigned=None)).status == "starting"
    assert alerter_health(snapshot(database_retrying=True)).http_status == 503
    stalled = alerter_health(snapshot(now=200.0))
    assert (stalled.status, stalled.body["loop"]) == ("degraded", "stalled")
    # a standby is healthy (an orchestrator keeps it), whatever the rest says
    standby = alerter_health(snapshot(standby=True, assigned=None, last_loop_at=None))
    assert (standby.status, standby.http_status, standby.body["role"]) == ("standby", 200, "standby")
    assert ok.body["role"] == "active"


def test_the_active_gauge_follows_the_role() -> None:
    m = AlerterMetrics(clock=lambda: 1000.0)
    m.standby()
    assert m.registry.get_sample_value("finsent_alerter_active") == 0
    assert m.health().status == "standby"
    m.became_active()
    assert m.registry.get_sample_value("finsent_alerter_active") == 1
    assert m.health().status == "starting"  # active, the group has not assigned partitions yet


def test_metrics_count_actions_by_scope_and_severity() -> None:
    m = AlerterMetrics(clock=lambda: 1000.0)
    m.partitions_assigned([("news.scored", 1), ("news.scored", 0)])
    m.loop(evaluated_until=datetime.fromtimestamp(900.0, UTC), newest=None, live=False)
    m.step(
        seconds=0.01,
        buckets=3,
        actions=[("open", "topic", "warning"), ("resolve", "topic", "warning"), ("reopen", "topic", "high")],
        outbox=["open", "resolve"],
        rerun=True,
        too_late=False,
        superseded=0,
        open_alerts=0,
    )
    value = m.registry.get_sample_value
    assert value("finsent_alerter_alerts_opened_total", {"scope": "topic", "severity": "warning"}) == 1
    assert value("finsent_alerter_alerts_resolved_total", {"scope": "topic", "severity": "warning"}) == 1
    assert value("finsent_alerter_outbox_rows_total", {"kind": "open"}) == 1
    assert value("finsent_alerter_buckets_upserted_total") == 3
    assert value("finsent_alerter_late_reruns_total") == 1
    assert value("finsent_alerter_watermark_lag_seconds") == 100.0
    assert m.health().status == "ok"


# --------------------------------------------------------------------------- CLI

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["alerter"], env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finsent: error: "), result.stderr
    return lines[0].removeprefix("finsent: error: ")


def test_alerter_needs_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        one_line_error(tmp_path, monkeypatch)
        == "no Kafka broker configured: set FINSENT_KAFKA_BOOTSTRAP=host:port"
    )


def test_alerter_refuses_inconsistent_thresholds() -> None:
    """Refused with the settings, before any command (so `finsent config` and `doctor` say it
    too), in the variables' names rather than the detector's p_learn/p_warning."""
    from pydantic import ValidationError

    from services.cli.errors import settings_error_line

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, alert_p_high=1e-3)  # type: ignore[call-arg]
    message = settings_error_line(caught.value)
    assert message.startswith(
        "need FINSENT_ALERT_P_WARNING >= FINSENT_ALERT_P_HIGH >= FINSENT_ALERT_P_CRITICAL"
    )


def test_alerter_metrics_port_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        message = one_line_error(
            tmp_path,
            monkeypatch,
            FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1",
            FINSENT_ALERTER_METRICS_PORT=str(port),
        )
    assert message.startswith(f"cannot serve metrics on 127.0.0.1:{port}: "), message
    assert "FINSENT_ALERTER_METRICS_PORT" in message


def test_alerter_unreachable_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = one_line_error(
        tmp_path,
        monkeypatch,
        FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1",
        FINSENT_KAFKA_TIMEOUT_SECONDS="1",
        FINSENT_ALERTER_METRICS_PORT="0",
    )
    assert "127.0.0.1:1" in message and "not reachable" in message, message


def test_parse_scored_refuses_deep_nesting_huge_messages_and_control_characters() -> None:
    deep = (
        b'{"event_id": "a", "published_at": "2025-03-03T12:00:00Z", "x": '
        + b"[" * 30_000
        + b"]" * 30_000
        + b"}"
    )
    assert len(deep) < MAX_SCORED_BYTES
    with pytest.raises(UnreadableMessage, match="nested"):
        parse_scored(deep)
    huge = json.dumps({"event_id": "a", "published_at": "2025-03-03T12:00:00Z", "x": "y" * MAX_SCORED_BYTES})
    with pytest.raises(UnreadableMessage, match="bytes"):
        parse_scored(huge.encode())
    for event_id in ("a\x1b[2Jb", "a\nb", "a\x00", "x" * 200):
        message = json.dumps({"event_id": event_id, "published_at": "2025-03-03T12:00:00Z"}).encode()
        with pytest.raises(UnreadableMessage, match="event_id"):
            parse_scored(message)


# --------------------------------------------------------------------------- dead letters


class FakeDlq:
    """The alerter's `news.dlq` producer (`NewsProducer`'s `send_raw` and `flush`): refuses a
    record over `limit` bytes at send time as `NewsProducer` does (a `BrokerError` raised from
    kafka-python's error), fails the delivery of one over `ack_limit` (a broker with a smaller
    message limit), fails every delivery with `failure`, or answers nothing (`away`)."""

    def __init__(
        self,
        *,
        limit: int = 1_048_576,
        ack_limit: int = 1_048_576,
        failure: Exception | None = None,
        away: bool = False,
    ) -> None:
        self.limit, self.ack_limit, self.failure, self.away = limit, ack_limit, failure, away
        self.acked: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
        self._pending: list[tuple[Future, tuple[bytes | None, bytes | None, dict[str, bytes]]]] = []

    def send_raw(self, payload: bytes | None, key: Any, *, headers: Any = None) -> Future:
        size = len(payload or b"") + len(key or b"")
        if size > self.limit:
            raise BrokerError("message too large for news.dlq") from MessageSizeTooLargeError(f"{size} bytes")
        future = Future()
        self._pending.append((future, (key, payload, dict(headers or []))))
        return future

    def flush(self, timeout: float | None = None) -> None:
        if self.away:
            raise BrokerUnavailable("messages to news.dlq not acknowledged in time")
        pending, self._pending = self._pending, []
        failed = 0
        for future, letter in pending:
            size = len(letter[1] or b"") + len(letter[0] or b"")
            if self.failure is not None or size > self.ack_limit:
                future.failure(self.failure or MessageSizeTooLargeError("the broker refused it"))
                failed += 1
            else:
                future.success(None)
                self.acked.append(letter)
        if failed:
            raise BrokerError(f"{failed} message(s) were not delivered to news.dlq")


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: list[dict[Any, Any]] = []

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.committed.append(offsets)


def scored_record(offset: int, value: bytes, key: bytes = b"k") -> SimpleNamespace:
    return SimpleNamespace(topic="news.scored", partition=0, offset=offset, key=key, value=value)


def handle(
    dlq: FakeDlq, records: list[SimpleNamespace], consumer: FakeConsumer | None = None
) -> FakeConsumer:
    """One pass of the alerter's loop over `records`, all unreadable: no database is used."""
    alerter = Alerter(
        Settings(), bootstrap="127.0.0.1:1", engine=create_engine("sqlite://"), metrics=AlerterMetrics()
    )
    consumer = consumer or FakeConsumer()
    alerter._handle(records, consumer, dlq)  # type: ignore[arg-type]
    return consumer


@pytest.mark.parametrize("limits", [{"limit": 1_000}, {"ack_limit": 1_000}], ids=["send", "broker"])
def test_a_refused_dead_letter_goes_without_its_value_and_the_batch_is_committed(
    limits: dict[str, int],
) -> None:
    """Refused at send time (the producer's limit) or by the broker: sent once more without a
    value or its 5,000-byte key, and the batch committed. The alerter used to exit before its
    commit, and met the same record after every restart."""
    dlq = FakeDlq(**limits)
    consumer = handle(dlq, [scored_record(7, b"[" + b"y" * 999, key=b"k" * 5_000), scored_record(8, b"[]")])
    assert len(consumer.committed) == 1 and [o.offset for o in consumer.committed[0].values()] == [9]
    by_value = {value: (key, headers) for key, value, headers in dlq.acked}
    assert sorted(by_value, key=repr) == sorted([None, b"[]"], key=repr) and len(dlq.acked) == 2
    key, headers = by_value[None]
    assert key is None and headers[H_ORIGINAL_SIZE] == b"1000" and headers["source-offset"] == b"7"
    assert by_value[b"[]"][0] == b"k"


def test_an_oversized_unreadable_message_is_dead_lettered_as_its_prefix() -> None:
    dlq = FakeDlq()
    handle(dlq, [scored_record(3, b"x" * (MAX_SCORED_BYTES + 100_000))])
    [(key, value, headers)] = dlq.acked
    assert key == b"k" and value is not None and len(value) == MAX_DEAD_LETTER_VALUE_BYTES
    assert headers["truncated"] == b"true" and headers["error-type"] == b"invalid_scored_message"


@pytest.mark.parametrize(
    "options",
    [{"away": True}, {"failure": NotLeaderForPartitionError()}],
    ids=["unanswered", "not-leader"],
)
def test_a_dlq_outage_ends_the_pass_uncommitted_without_a_fallback(options: dict[str, Any]) -> None:
    """Not the record's fault: the batch is redone whole once the broker is back."""
    dlq, consumer = FakeDlq(**options), FakeConsumer()
    with pytest.raises(BrokerError):
        handle(dlq, [scored_record(1, b"[]")], consumer)
    assert consumer.committed == [] and dlq.acked == []
