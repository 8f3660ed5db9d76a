"""The alerter: `news.scored` → sentiment buckets → spike detector → alerts + outbox → `alerts`.

One active alerter per database, any number on standby (services.storage.leadership: the
CLI waits for a PostgreSQL advisory lock before it builds an `Alerter`; while it runs, the
loop checks the lock every FINSENT_STANDBY_POLL_SECONDS and ends with `LeadershipLost` if
another alerter took it meanwhile). The active one reads
every partition of `news.scored` in the consumer group FINSENT_ALERTER_GROUP with a plain
kafka-python consumer. A blocking loop rather than a faust agent, because each step is a
database transaction that must finish before anything is acknowledged, and there is
nothing else to interleave with it.

Each pass of the loop:

1. poll up to FINSENT_ALERTER_MAX_BATCH messages (waiting at most the idle tick);
2. feed their `published_at` to the `EventClock` (event-time watermark; a quiet live stream
   is advanced by the wall clock, a replay never is — see services/alerting/clock.py);
3. in one transaction (`AlertEngine.step`): recompute the buckets the messages touched,
   judge every window that closed by the watermark minus the allowed lateness (re-judging
   from an earlier checkpoint if a late story changed judged buckets), write alerts,
   outbox rows and the checkpoint; commit — retried with backoff while the database is
   away, the stream paused;
4. dead-letter unreadable messages to `news.dlq` (`send_dead_letters`), then commit the
   Kafka offsets;
5. publish outbox rows not yet published to the `alerts` topic (key: the dedupe key),
   wait for the broker's acks, then set their `published_at`.

A crash before 3 commits redoes the batch (idempotent upserts); between 3 and 4, redoes it
with no effect (the buckets are unchanged, the windows already judged); between the send
and the mark in 5, publishes those messages again with the same keys, which consumers can
drop. The delivery dispatcher reads the outbox itself (`dispatched_at`), not the topic.

A takeover is a restart on another host: the standby that gets the lock starts from the
newest checkpoint and the group's committed offsets, so it redoes exactly what the dead
alerter had not acknowledged — with the same idempotent upserts and dedupe keys, hence no
second alert and no second outbox row.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.alerting import WITHDRAWN, bucket_start, store
from services.alerting.config import AlerterConfig, alerter_config
from services.alerting.engine import AlertEngine, StepResult
from services.alerting.metrics import AlerterMetrics
from services.broker.clients import kafka_consumer
from services.broker.dead_letters import (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    bounded_record,
    header_only_record,
    is_record_rejection,
)
from services.broker.errors import BrokerError, BrokerUnavailable
from services.broker.security import KafkaSecurity
from services.ingest.producer import Headers, NewsProducer
from services.retry import RetryPolicy, backoff_delays, is_retryable
from services.schemas.news_raw import MIN_PUBLISHED_AT
from services.settings import Settings
from services.storage import LeaderLock

log = logging.getLogger(__name__)

PUBLISH_BATCH = 500
MAX_SCORED_BYTES = 64 * 1024  # a scored message is a few hundred bytes
MAX_EVENT_ID_CHARS = 128  # services.schemas.news_raw.MAX_ID_CHARS, and h: + 32 hex for derived ids
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class ScoredRef:
    """What the alerter needs of a `news.scored` message; the rest is read from the database."""

    event_id: str
    published_at: datetime


class UnreadableMessage(ValueError):
    pass


class LeadershipLost(RuntimeError):
    """Another alerter holds the lock now (this one's lock connection broke meanwhile)."""


class _Stopped(Exception):
    """Asked to stop while waiting for the database: leave with the batch unacknowledged."""


def parse_scored(value: bytes | None) -> ScoredRef:
    """The event id and event time of a `news.scored` value (`scorer.app.scored_message`).

    Anything else raises `UnreadableMessage`, never another exception: a message that made
    the loop raise would be met again after every restart. The scorer writes small flat JSON
    (ids, labels, probabilities), so a value over `MAX_SCORED_BYTES` or nested deeper than the
    JSON decoder's recursion limit is refused before it can cost more."""
    if value is None:
        raise UnreadableMessage("empty message")
    if len(value) > MAX_SCORED_BYTES:
        raise UnreadableMessage(f"message is {len(value):,} bytes, over the {MAX_SCORED_BYTES:,}-byte limit")
    try:
        data = json.loads(value)
    except RecursionError:
        raise UnreadableMessage("not JSON the alerter reads: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableMessage(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("event_id"), str) or not data["event_id"]:
        raise UnreadableMessage("no event_id")
    if len(data["event_id"]) > MAX_EVENT_ID_CHARS or _CONTROL.search(data["event_id"]):
        raise UnreadableMessage(
            f"event_id {data['event_id'][:40]!r} is over {MAX_EVENT_ID_CHARS} characters "
            "or has control characters"
        )
    raw = data.get("published_at")
    try:
        published = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        published = None
    if published is None or published.tzinfo is None or published.utcoffset() is None:
        raise UnreadableMessage(f"published_at {str(raw)[:60]!r} is not an ISO 8601 time with a zone")
    try:
        utc = published.astimezone(UTC)  # OverflowError: 0001-01-01T00:00+14:00 has no UTC time
    except OverflowError:
        utc = None
    if utc is None or utc < MIN_PUBLISHED_AT:  # the scorer's bound: earlier would overflow the clock
        raise UnreadableMessage(f"published_at {str(raw)[:60]!r} is out of range")
    return ScoredRef(data["event_id"], utc)


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called inside `poll()`, on the loop's thread."""

    def __init__(self, alerter: Alerter) -> None:
        self._alerter = alerter

    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            log.info("partitions revoked", extra={"revoked": _names(revoked)})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._alerter.assigned([(tp.topic, tp.partition) for tp in assigned])
        log.info("partitions assigned", extra={"assigned": _names(assigned)})


def _names(partitions: Any) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)


class Alerter:
    """The alerter's loop. `run()` blocks until `stop()` (from a signal handler or a thread)."""

    def __init__(
        self,
        settings: Settings,
        *,
        bootstrap: str,
        engine: Engine,
        metrics: AlerterMetrics | None = None,
        config: AlerterConfig | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_initial_seconds: float = 0.5,
        lock: LeaderLock | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.config = config or alerter_config(settings)
        self.metrics = metrics if metrics is not None else AlerterMetrics()
        self._engine = AlertEngine(self.config)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._now = wall_clock
        self._clock = self.config.event_clock()
        self._evaluated: datetime | None = None
        self._stop = threading.Event()
        # the scorer's schedule (FINSENT_SCORER_DB_RETRY_MAX_SECONDS caps both); no time
        # limit: the stream pauses for as long as the database is away
        self._retry = RetryPolicy(
            initial=retry_initial_seconds,
            max_delay=max(retry_initial_seconds, settings.scorer.scorer_db_retry_max_seconds),
        )
        self._rng = random.Random()
        self._lock = lock
        self._lock_check_at = time.monotonic() + settings.runtime.standby_poll_seconds

    def stop(self) -> None:
        self._stop.set()

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """The group's whole new assignment: the watermark waits for each partition."""
        self._clock.assign((p for _, p in partitions), now=self._now())
        self.metrics.partitions_assigned(partitions)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        s = self.settings
        session_ms = int(s.alerts.alerter_session_timeout_seconds * 1000)
        security = KafkaSecurity.from_settings(s)
        consumer = kafka_consumer(
            bootstrap=self.bootstrap,
            security=security,
            group_id=s.alerts.alerter_group,
            client_id="finsent-alerter",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(3000, session_ms // 3),
            max_poll_records=s.alerts.alerter_max_batch,
            request_timeout_ms=max(30_000, session_ms + 5000),
        )
        try:
            consumer.subscribe([s.kafka.topic_news_scored], listener=_Assignments(self))
            with (
                NewsProducer(
                    self.bootstrap, topic=s.kafka.topic_alerts, client_id="finsent-alerter", security=security
                ) as alerts,
                NewsProducer(
                    self.bootstrap,
                    topic=s.kafka.topic_news_dlq,
                    client_id="finsent-alerter-dlq",
                    security=security,
                ) as dlq,
            ):
                self._clock.assign((), now=self._now())  # partitions come with the group's assignment
                self._resume()
                self._publish(alerts)
                while not self._stop.is_set():
                    self._check_leadership()
                    polled = consumer.poll(timeout_ms=int(s.alerts.alerter_tick_seconds * 1000))
                    records = [r for batch in polled.values() for r in batch]
                    self._handle(records, consumer, dlq)
                    self._publish(alerts)
        except _Stopped:
            log.info("stopped while the database was unreachable; the batch in flight will be redelivered")
        finally:
            consumer.close(autocommit=False)

    def _check_leadership(self) -> None:
        """Every FINSENT_STANDBY_POLL_SECONDS: is the lock still ours? If its connection broke
        (PostgreSQL restarted, a network cut), take it again when it is free; if another
        alerter took it, end (`LeadershipLost`) before writing anything more. The consumer
        group also fences a replaced alerter: its offset commits are refused after the
        rebalance, so its last batch is redone by the new one."""
        if self._lock is None or time.monotonic() < self._lock_check_at:
            return
        self._lock_check_at = time.monotonic() + self.settings.runtime.standby_poll_seconds
        if self._lock.still_held():
            return
        try:
            if self._lock.try_acquire():
                log.warning("the alerter lock's connection broke; the lock is taken again")
                return
        except Exception as exc:
            if not is_retryable(exc):
                raise
            log.warning(
                "cannot check the alerter lock, the database is away: %s", " ".join(str(exc).split())[:300]
            )
            return
        raise LeadershipLost("another alerter took the lock while this one's lock connection was broken")

    def _resume(self) -> None:
        """Continue from the newest checkpoint: its time seeds the event clock (and says
        whether the stream was live when the alerter stopped)."""
        with self._transaction() as session:
            latest = store.latest_checkpoint(session, rule=self.config.rule)
        if latest is not None:
            self._evaluated = latest.evaluated_until
            self._clock.resume(latest.evaluated_until)
            log.info("resuming", extra={"evaluated_until": latest.evaluated_until.isoformat()})
        self._report_loop()

    def _handle(self, records: Sequence[Any], consumer: KafkaConsumer, dlq: NewsProducer) -> None:
        now = self._now()
        refs: list[ScoredRef] = []
        dead: list[tuple[Any, str]] = []
        for record in records:
            try:
                ref = parse_scored(record.value)
            except UnreadableMessage as exc:
                dead.append((record, str(exc)))
                continue
            refs.append(ref)
            self._clock.observe(ref.published_at, now=now, partition=record.partition)
        until = self._clock.until(now)
        width = self.config.bucket_width
        touched = {bucket_start(ref.published_at, width) for ref in refs}
        advanced = until is not None and (self._evaluated is None or until > self._evaluated)
        if touched or advanced:
            self._step(touched, until, now, [ref.event_id for ref in refs])
        for record, reason in dead:
            log.warning("unreadable news.scored message: %s", reason, extra=_where(record))
        if dead:
            send_dead_letters(dlq, dead)
        if records:
            self._commit(consumer, records)
            self.metrics.consumed(len(records), len(dead))
        self._report_loop()

    def _step(
        self, touched: set[datetime], until: datetime | None, now: datetime, event_ids: Sequence[str] = ()
    ) -> None:
        started = time.perf_counter()
        result = self._with_retry(
            lambda session: self._engine.step(
                session,
                touched=touched,
                until=until,
                now=now,
                event_ids=event_ids,
                live=self._clock.live(now),
            )
        )
        if result.evaluated_until is not None:
            self._evaluated = result.evaluated_until
        self._report_step(result, time.perf_counter() - started)

    def _with_retry(self, work: Callable[[Session], StepResult]) -> StepResult:
        """Run `work` in a transaction and commit; while the database is away, retry for
        ever with backoff (the stream pauses, nothing is acknowledged). Other errors are
        bugs: they propagate and end the process with the batch unacknowledged."""
        delays = backoff_delays(self._retry, self._rng)
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._transaction() as session:
                    return work(session)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                if self._stop.is_set():
                    raise _Stopped from exc
                delay = next(delays)
                self.metrics.storage_retry()
                log.warning(
                    "alerter transaction failed (attempt %d), retrying in %.2f s: %s",
                    attempt,
                    delay,
                    " ".join(str(getattr(exc, "orig", None) or exc).split())[:300],
                )
                self._report_loop()
                if self._stop.wait(delay):
                    raise _Stopped from exc

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _commit(self, consumer: KafkaConsumer, records: Sequence[Any]) -> None:
        """Commit exactly the offsets after the records handled (not the consumer's positions)."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in offsets or r.offset + 1 > offsets[tp].offset:
                offsets[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            # the group rebalanced meanwhile (e.g. a long database outage): the records come
            # back to whoever owns the partitions now, and redoing them changes nothing
            log.warning("offset commit refused after a rebalance; the batch will be redelivered: %s", exc)

    def _publish(self, producer: NewsProducer) -> None:
        """Put every unpublished outbox row on the `alerts` topic, then mark it published.
        With the database away it waits for the next pass (the next step retries it)."""
        try:
            self._publish_pending(producer)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            log.warning("cannot read the outbox, will retry: %s", " ".join(str(exc).split())[:300])

    def _publish_pending(self, producer: NewsProducer) -> None:
        while not self._stop.is_set():
            with self._transaction() as session:
                pending = store.unpublished(session, limit=PUBLISH_BATCH)
            if not pending:
                return
            try:
                for message in pending:
                    payload = json.dumps(message.payload, ensure_ascii=False).encode("utf-8")
                    kind = str(message.payload.get("kind", "")).encode()
                    producer.send_raw(payload, message.dedupe_key, headers=[("kind", kind)])
                producer.flush()
            except BrokerError as exc:
                # the rows stay unpublished and are sent again on the next pass; the
                # alerts themselves are safe in the outbox, and the dispatcher reads that
                log.warning("cannot publish to %s, will retry: %s", self.settings.kafka.topic_alerts, exc)
                return
            with self._transaction() as session:
                store.mark_published(session, ids=[m.id for m in pending], now=self._now())
            self.metrics.published.inc(len(pending))
            log.info(
                "published %d alert message(s) to %s",
                len(pending),
                self.settings.kafka.topic_alerts,
                extra={"dedupe_keys": [m.dedupe_key for m in pending]},
            )
            if len(pending) < PUBLISH_BATCH:
                return

    # ------------------------------------------------------------------ reporting

    def _report_loop(self) -> None:
        now = self._now()
        self.metrics.loop(
            evaluated_until=self._evaluated, newest=self._clock.newest, live=self._clock.live(now)
        )

    def _report_step(self, r: StepResult, seconds: float) -> None:
        new_rows = set(r.outbox)
        try:
            self.metrics.step(
                seconds=seconds,
                buckets=r.buckets_changed,
                actions=[(a.kind, a.alert.scope, a.alert.severity) for a in r.actions],
                outbox=[a.kind for a in r.actions if a.dedupe_key in new_rows]
                + [WITHDRAWN for key in r.outbox if key.endswith(f"|{WITHDRAWN}")],
                rerun=r.rerun_from is not None,
                too_late=r.too_late is not None,
                superseded=len(r.superseded),
                open_alerts=r.open_alerts,
            )
        except Exception:
            log.exception("recording the metrics of a step failed (the step itself is committed)")
        fields: dict[str, Any] = {
            "buckets_changed": r.buckets_changed,
            "evaluated_until": None if r.evaluated_until is None else r.evaluated_until.isoformat(),
            "detections": r.detections,
            "actions": len(r.actions),
            "outbox": len(r.outbox),
            "seconds": round(seconds, 4),
        }
        if r.rerun_from is not None:
            log.info("late story: windows from %s judged again", r.rerun_from.isoformat(), extra=fields)
        if r.too_late is not None:
            log.warning(
                "late story in the bucket of %s is older than every kept checkpoint: its counts are "
                "updated but its windows are not judged again (FINSENT_ALERTER_CHECKPOINT_HOURS)",
                r.too_late.isoformat(),
                extra=fields,
            )
        if r.superseded:
            log.warning("alerts superseded by a late story: %s", ", ".join(r.superseded), extra=fields)
        if r.history_only:
            log.info(
                "alerts opened and resolved in the past by a late story, recorded, not notified: %s",
                ", ".join(r.history_only),
                extra=fields,
            )
        for a in r.actions:
            log.info(
                "alert %s at %s: %s %s (%s)",
                a.kind,
                a.at.isoformat(),
                a.alert.scope,
                a.alert.key,
                a.alert.severity,
                # new: False when a replay or re-run repeats an action already recorded
                extra={"alert_key": a.alert_key, "notify": a.notify, "new": a.dedupe_key in new_rows},
            )
        log.debug("step", extra=fields)


class DeadLetterSink(Protocol):
    """What `send_dead_letters` needs of the `news.dlq` producer (`NewsProducer`)."""

    def send_raw(
        self, payload: bytes | None, key: str | bytes | None, *, headers: Headers | None = None
    ) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...


def send_dead_letters(dlq: DeadLetterSink, dead: Sequence[tuple[Any, str]]) -> None:
    """Send the dead letters of `dead` (a consumer record, why it is unreadable) and wait for
    the broker's acks, by the rule every DLQ producer follows (`services.broker.dead_letters`):
    the value bounded to 64 KiB; a letter the producer or the broker refuses for itself (too
    large, corrupt, invalid) sent once more without its value, and without a key over 1 KiB.
    Without that fallback a refused letter ended the alerter before it committed, and it met
    the same record after every restart. Any other failure (the broker away) raises
    `BrokerError`: the batch is not committed and is redone once the broker is back."""
    pending: list[tuple[Any, list[tuple[str, bytes]], Any]] = []
    refused: list[tuple[Any, list[tuple[str, bytes]], BaseException]] = []
    for record, reason in dead:
        headers = _dead_letter_headers(record, reason)
        letter = bounded_record(record.key, record.value, headers)
        try:
            pending.append((record, headers, dlq.send_raw(letter.value, letter.key, headers=letter.headers)))
        except BrokerError as exc:  # refused by the producer before it was sent
            if not is_record_rejection(exc):
                raise
            refused.append((record, headers, exc))
    try:
        dlq.flush()
    except BrokerUnavailable:  # not every letter was answered: nothing tells which are refused
        raise
    except BrokerError:
        failed = [(record, headers, f.exception) for record, headers, f in pending if f.failed()]
        if not failed or not all(is_record_rejection(error) for _, _, error in failed):
            raise
        refused += failed
    for record, headers, refusal in refused:
        log.error(
            "the dead letter of a news.scored message was refused (%s); sending it without its value",
            " ".join(str(refusal).split()) or type(refusal).__name__,
            extra=_where(record),
        )
        letter = header_only_record(record.key, record.value, headers)
        dlq.send_raw(letter.value, letter.key, headers=letter.headers)
    if refused:
        dlq.flush()


def _where(record: Any) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _dead_letter_headers(record: Any, reason: str) -> list[tuple[str, bytes]]:
    def utf8(text: str) -> bytes:
        return text.encode("utf-8", errors="backslashreplace")

    return [
        (H_SOURCE_TOPIC, utf8(record.topic)),
        (H_SOURCE_PARTITION, str(record.partition).encode()),
        (H_SOURCE_OFFSET, str(record.offset).encode()),
        (H_ERROR_CLASS, b"UnreadableMessage"),
        (H_ERROR_TYPE, b"invalid_scored_message"),
        (H_ERROR_MESSAGE, utf8(reason[:1000])),
    ]
