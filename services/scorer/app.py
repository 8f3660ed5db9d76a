"""The scorer as a faust app: `news.raw` in micro-batches → model → Postgres/SQLite → `news.scored`.

Acks and offsets. The agent takes micro-batches with `services.scorer.take.PipelinedTake`:
the stream's automatic acks are off, and a batch's events are acked by this module only
after every item of the batch is stored (one transaction per slice, retried with backoff
while the database is away) and its dead letters and scored items are on the broker
(record batches, `services.scorer.publish`). Acking only marks an offset safe to commit
(`Consumer.ack`); the consumer's commit task, a rebalance and `Consumer.on_stop` commit the
highest *contiguous* acked offset per partition, so nothing after an unacked batch is
committed either. A graceful stop or rebalance waits for held events to be acked
(`App._stop_consumer` → `Consumer.wait_empty`) before committing, so SIGTERM finishes the
batches in flight first.

Pipelining. Up to FINSENT_SCORER_BATCHES_IN_FLIGHT batches (default 2) are worked on at
once, and each is cut into slices of FINSENT_SCORER_SLICE_ITEMS: all of a batch's slices are
tokenised and queued on the model's pass threads at once (`Predictor.submit`), slice k is
stored and published while the model scores slice k+1, and the next batch is parsed and
queued while this one's last slice is stored — so the model's threads do not wait for the
tokeniser, the database or the broker between slices and batches. Stores run one at a time,
in batch order, so `news.scored` keeps the stream's order and two transactions never race
for the same rows.

Failures. Item errors become dead letters; a database outage is retried for ever (the stream
pauses once `PipelinedTake` holds its maximum of unacked events); anything else unexpected
ends the process at once (`os._exit`) without acking — the batch is redelivered to the next
worker, and the idempotent upserts make that harmless. A cancelled batch acks nothing.

Observability (`ScorerMetrics`, the batch and dead-letter log lines) is fed only after a
batch is committed and produced, and a failure there is logged, never raised: metrics are
not a reason to redeliver a batch.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import faust
from faust.types import TP as TopicPartition
from faust.types import EventT
from sqlalchemy.orm import Session

from services.broker.clients import faust_app
from services.broker.security import KafkaSecurity
from services.retry import RetryPolicy, is_retryable
from services.scorer.batch import (
    BatchResult,
    DeadLetter,
    PredictorLike,
    RawRecord,
    parse_batch,
    start_slices,
)
from services.scorer.dead_letters import (
    DeadLetterRecord,
    dead_letter_record,
    header_only,
    is_record_rejection,
)
from services.scorer.metrics import ScorerMetrics
from services.scorer.model_reload import ModelSlot
from services.scorer.publish import publish_keyed
from services.scorer.sink import OnRetry, StoryStep, store_batch
from services.scorer.summary import (
    BatchSummary,
    Stage,
    batch_log_fields,
    dead_letter_log_fields,
    summarize_batch,
)
from services.scorer.take import PipelinedTake
from services.scorer.transport import ScorerApp, kafka_producer
from services.settings import Settings
from services.storage.repository import ScoredItem

log = logging.getLogger(__name__)
T = TypeVar("T")

STORAGE_ERROR_TYPE = "storage_error"
PRODUCER_MAX_BATCH_BYTES = 64 * 1024
EXIT_UNPROCESSABLE_BATCH = 70  # EX_SOFTWARE


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port[,host:port]` → faust broker URLs."""
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


def record_from_event(event: Any) -> RawRecord:
    """A `RawRecord` from a faust event (its message carries topic, partition, offset)."""
    message = event.message
    headers = message.headers or ()
    if isinstance(headers, Mapping):
        headers = headers.items()
    timestamp = message.timestamp
    return RawRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(timestamp * 1000) if timestamp is not None else None,
        headers=tuple((str(k), bytes(v) if v is not None else b"") for k, v in headers),
    )


def scored_message(item: ScoredItem) -> bytes:
    """The `news.scored` value of one item (JSON)."""
    return json.dumps(
        {
            "event_id": item.event_id,
            "published_at": item.published_at.isoformat(),
            "topic": item.topic,
            "sentiment": item.sentiment,
            "probs": {"bearish": item.p_bearish, "neutral": item.p_neutral, "bullish": item.p_bullish},
            "sentiment_score": item.sentiment_score,
            "tickers": list(item.tickers),
            "model_version": item.model_version,
        },
        ensure_ascii=False,
    ).encode("utf-8")


def store_or_dead_letter(
    session_factory: Callable[[], Session],
    scored: Sequence[ScoredItem],
    records: Mapping[str, RawRecord],
    *,
    retry: RetryPolicy,
    on_retry: OnRetry | None = None,
    stories: StoryStep | None = None,
) -> tuple[list[ScoredItem], list[DeadLetter]]:
    """Store `scored` in one transaction; if the database refuses the batch (not an outage:
    those are retried inside `store_batch`), store item by item and dead-letter the items
    it refuses alone. Returns (stored, dead). Blocking: run it in a thread."""
    try:
        store_batch(session_factory, scored, retry=retry, on_retry=on_retry, stories=stories)
        return list(scored), []
    except Exception as exc:
        if is_retryable(exc) or len(scored) == 0:
            raise
        log.warning("the database refused a batch of %d items, storing them one by one: %s", len(scored), exc)
    stored: list[ScoredItem] = []
    dead: list[DeadLetter] = []
    for item in scored:
        try:
            store_batch(session_factory, [item], retry=retry, on_retry=on_retry, stories=stories)
            stored.append(item)
        except Exception as exc:
            if is_retryable(exc):
                raise
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:1000]
            dead.append(DeadLetter(records[item.event_id], type(exc).__name__, STORAGE_ERROR_TYPE, reason))
    return stored, dead


SendRecord = Callable[[DeadLetterRecord], Awaitable[Awaitable[Any]]]


async def queue_dead_letter(send: SendRecord, dead: DeadLetter) -> Awaitable[Any]:
    """Queue the DLQ record of `dead` (a bounded value, `services.scorer.dead_letters`) with
    `send`, and return its delivery to await. A record the producer refuses outright (too
    large, invalid) is sent as its header-only fallback instead; any other failure raises."""
    try:
        return await send(dead_letter_record(dead))
    except Exception as exc:
        if not is_record_rejection(exc):
            raise
        log.error("the dead letter of %s was refused (%s); sending it without its value", _where(dead), exc)
        return await send(header_only(dead))


async def confirm_dead_letter(send: SendRecord, dead: DeadLetter, delivery: Awaitable[Any]) -> None:
    """Wait for the broker's ack of a dead letter. A refusal of that record alone is answered
    with its header-only fallback (so one record never stalls its partition); anything else
    (the broker away) raises, and the batch is redelivered."""
    try:
        await delivery
    except Exception as exc:
        if not is_record_rejection(exc):
            raise
        log.error(
            "the broker refused the dead letter of %s (%s); sending it without its value", _where(dead), exc
        )
        await (await send(header_only(dead)))


def _die(message: str, exc: BaseException | None = None) -> None:
    """End the process now, before faust can ack the batch in flight."""
    log.critical(message, exc_info=exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_UNPROCESSABLE_BATCH)


def story_step(settings: Settings) -> StoryStep | None:
    """The story clustering the settings ask for (None: off). Imported here, not at the top:
    it loads datasketch, which a scorer with clustering off has no use for."""
    if not settings.scorer.story_clustering:
        return None
    from services.stories import StoryClustering

    return StoryClustering(
        threshold=settings.scorer.story_similarity, window=timedelta(hours=settings.scorer.story_window_hours)
    )


def build_app(
    settings: Settings,
    *,
    bootstrap: str,
    predictor: PredictorLike | ModelSlot,
    session_factory: Callable[[], Session],
    retry: RetryPolicy | None = None,
    watchlist: Mapping[str, str] | None = None,
    metrics: ScorerMetrics | None = None,
) -> faust.App:
    """The scorer's faust app; topics must exist (they are never declared by the app).
    A `ModelSlot` as `predictor` lets a `ModelWatcher` switch models between batches.
    `metrics` (served by the caller, see `services.scorer.probe_server`) is fed by every batch,
    database retry and rebalance; without it they are counted in a private one."""
    from services.schemas import DEFAULT_WATCHLIST, Watchlist

    retry = retry or RetryPolicy(max_delay=settings.scorer.scorer_db_retry_max_seconds)
    metrics = metrics if metrics is not None else ScorerMetrics()
    slot = predictor if isinstance(predictor, ModelSlot) else ModelSlot(predictor, _version_of(predictor))
    watch = Watchlist(watchlist if watchlist is not None else DEFAULT_WATCHLIST)
    web_port = settings.scorer.scorer_web_port
    slice_items = settings.scorer.scorer_slice_items
    future_skew = timedelta(seconds=settings.scorer.max_future_skew_seconds)
    stories = story_step(settings)
    settings.faust_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust_app(
        ScorerApp,
        settings.scorer.scorer_group,
        security=KafkaSecurity.from_settings(settings),
        fetch_max_wait_ms=settings.scorer.scorer_fetch_max_wait_ms,
        broker=broker_urls(bootstrap),
        store="memory://",
        # faust keeps a data directory even with in-memory tables; by default `<app id>-data` in
        # the working directory, which litters wherever the worker happens to be started.
        datadir=str(settings.faust_dir / "{conf.name}-data"),
        broker_session_timeout=settings.scorer.scorer_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.scorer.scorer_session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        producer_acks=-1,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
    )
    # One long-lived thread calls the model (parse, tokenise, predict). With one pass at a time
    # (FINSENT_PARALLEL_PASSES=1) it runs torch itself, and asyncio.to_thread would hand each
    # slice to whichever pool thread is free: every thread that calls into torch keeps its own
    # OpenMP team, whose idle threads spin beside the scoring one on the same two cores. With
    # parallel passes the forward passes run on the Predictor's own threads instead, and this
    # thread is the single caller that keeps the slices in order.
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finsent-model")

    async def in_model_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            model_thread, functools.partial(function, *args, **kwargs)
        )

    raw_topic = app.topic(settings.kafka.topic_news_raw, key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(settings.kafka.topic_news_dlq, key_serializer="raw", value_serializer="raw")

    async def send_record(record: DeadLetterRecord) -> Awaitable[Any]:
        return await dlq_topic.send(key=record.key, value=record.value, headers=record.headers)

    async def process(records: list[RawRecord], *, store_after: asyncio.Future[None] | None) -> None:
        """Score and store one batch; its first store waits for `store_after` (the previous
        batch's stores), so stores stay in stream order. Returns when every slice is stored
        and published."""
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        serving = slot.current  # one model for the whole batch: a switch lands between batches
        parsed = await in_model_thread(
            parse_batch, records, received_at=received_at, watchlist=watch, max_future_skew=future_skew
        )
        stage: dict[Stage, float] = {"score": time.perf_counter() - started, "store": 0.0, "produce": 0.0}
        stored: list[ScoredItem] = []
        dead: list[DeadLetter] = []
        by_id: dict[str, RawRecord] = {}
        committed_at = time.time()  # the last slice's commit: latencies are batch-complete times

        async def store_and_produce(result: BatchResult, after: asyncio.Future[None] | None) -> None:
            nonlocal committed_at
            if after is not None:
                await asyncio.shield(after)  # the previous batch's stores (never cancel theirs)
            t0 = time.perf_counter()
            slice_ids = {item.event_id: record for item, record in _pairs(result.scored, records)}
            by_id.update(slice_ids)
            kept, refused = await asyncio.to_thread(
                store_or_dead_letter,
                session_factory,
                result.scored,
                slice_ids,
                retry=retry,
                on_retry=metrics.storage_retry,
                stories=stories,
            )
            committed_at, t1 = time.time(), time.perf_counter()
            failed = [*result.dead, *refused]
            pending = [(d, await queue_dead_letter(send_record, d)) for d in failed]
            await publish_keyed(
                kafka_producer(app),
                settings.kafka.topic_news_scored,
                [(item.event_id.encode(), scored_message(item)) for item in kept],
            )
            for d, delivery in pending:  # the broker has them all before the batch is acked
                await confirm_dead_letter(send_record, d, delivery)
            stored.extend(kept)
            dead.extend(failed)
            stage["store"] += t1 - t0
            stage["produce"] += time.perf_counter() - t1

        # Every slice's passes are queued now; the model works through them in order while the
        # results of earlier slices are collected, stored and published. Every slice is done
        # before this returns, and only then is the batch acked (module docstring). The first
        # slice carries the batch's invalid records to the dead-letter topic.
        valid = parsed.valid
        slices = [valid[i : i + slice_items] for i in range(0, len(valid), slice_items)] or [[]]
        writing: asyncio.Task[None] | None = None
        try:
            t0 = time.perf_counter()
            remaining = slices
            while remaining:
                started_slices = await in_model_thread(start_slices, remaining, predictor=serving)
                remaining = remaining[len(started_slices) :]
                for pending_slice in started_slices:
                    if pending_slice.done is not None:
                        await asyncio.wrap_future(pending_slice.done)
                    result = await in_model_thread(pending_slice.finish)
                    if writing is None:
                        result.dead[:0] = parsed.dead
                    stage["score"] += time.perf_counter() - t0
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(
                        store_and_produce(result, store_after if writing is None else None)
                    )
                    t0 = time.perf_counter()
            assert writing is not None
            await writing
        except BaseException:
            if writing is not None and not writing.done():
                writing.cancel()  # nothing of a failed batch may keep running towards its ack
            raise
        stage["total"] = time.perf_counter() - started
        try:
            report(
                summarize_batch(
                    records,
                    stored=[(item, by_id[item.event_id]) for item in stored],
                    dead=dead,
                    duplicates=parsed.duplicates,
                    committed_at=committed_at,
                    stage_seconds=stage,
                ),
                dead,
            )
        except Exception:
            log.exception("recording the metrics of a batch failed (the batch itself is done)")

    def report(summary: BatchSummary, dead: Sequence[DeadLetter]) -> None:
        metrics.record_batch(summary)
        for d in dead:
            log.warning("dead letter: %s", d.error_type, extra=dead_letter_log_fields(d))
        log.info(  # tests/integration/pipeline.py parses this message
            "batch: %d records, %d stored, %d dead-lettered, %d duplicates",
            summary.records,
            summary.stored,
            summary.dead_lettered,
            summary.duplicates,
            extra=batch_log_fields(summary),
        )

    @app.on_partitions_assigned.connect
    async def on_assigned(_app: faust.App, /, *args: Any, **_: Any) -> None:
        assigned: AbstractSet[TopicPartition] = args[0]  # the whole new assignment, not a delta
        metrics.partitions_assigned(assigned)
        log.info("partitions assigned", extra={"assigned": _partition_names(assigned)})

    @app.on_partitions_revoked.connect
    async def on_revoked(_app: faust.App, /, *args: Any, **_: Any) -> None:
        revoked: AbstractSet[TopicPartition] = args[0]
        metrics.partitions_revoked(revoked)
        if revoked:
            log.info("partitions revoked", extra={"revoked": _partition_names(revoked)})

    @app.agent(raw_topic, name="scorer")
    async def scorer(stream: faust.StreamT) -> None:
        take = PipelinedTake(
            stream,
            max_batch=settings.scorer.scorer_max_batch,
            within=settings.scorer.scorer_batch_seconds,
            # room for a full batch waiting behind those in flight, so a backlog never hands over
            # a batch cut short by the time limit
            max_unacked=settings.scorer.scorer_max_batch * (settings.scorer.scorer_batches_in_flight + 1),
        )
        in_flight: deque[asyncio.Task[None]] = deque()
        previous_stored: asyncio.Future[None] | None = None
        try:
            async for events in take.batches():
                stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                in_flight.append(asyncio.create_task(run_batch(take, events, previous_stored, stored)))
                previous_stored = stored
                while in_flight and (
                    in_flight[0].done() or len(in_flight) >= settings.scorer.scorer_batches_in_flight
                ):
                    await in_flight.popleft()
            while in_flight:
                await in_flight.popleft()
        except Exception as exc:  # not CancelledError (a BaseException): a stop just ends the loop
            _die("the scorer's batch loop failed; exiting with its batches unacked", exc)
        finally:
            for task in in_flight:  # a stopped agent leaves no batch running towards its ack
                task.cancel()

    async def run_batch(
        take: PipelinedTake,
        events: list[EventT],
        store_after: asyncio.Future[None] | None,
        stored: asyncio.Future[None],
    ) -> None:
        """One batch, acked only once stored. `stored` resolves when its stores are done, so
        the next batch may store; it is cancelled if this batch is, and the batches after it
        then store nothing either (they stay unacked, to be redelivered in order)."""
        try:
            records = [record_from_event(event) for event in events]
            await process(records, store_after=store_after)
            stored.set_result(None)
            await take.ack(events)
        except asyncio.CancelledError:
            stored.cancel()
            log.warning("a batch of %d records was cancelled; it stays unacked", len(events))
            raise
        except Exception as exc:
            _die(f"cannot process a batch of {len(events)} records; exiting unacked", exc)

    return app


def _where(dead: DeadLetter) -> str:
    record = dead.record
    return f"{record.topic}/{record.partition}@{record.offset}"


def _version_of(predictor: PredictorLike) -> str:
    return str(getattr(predictor, "version", "unknown"))


def _partition_names(partitions: AbstractSet[TopicPartition]) -> list[str]:
    return [f"{topic}/{partition}" for topic, partition in sorted(partitions)]


def _pairs(scored: Sequence[ScoredItem], records: Sequence[RawRecord]) -> list[tuple[ScoredItem, RawRecord]]:
    """Each scored item with the record it came from (`score_batch` sets partition and offset)."""
    by_position: dict[tuple[int | None, int | None], RawRecord] = {
        (r.partition, r.offset): r for r in records
    }
    return [(item, by_position[(item.kafka_partition, item.kafka_offset)]) for item in scored]
