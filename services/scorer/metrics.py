"""The scorer worker's Prometheus metrics and the state its `/health` answer is built from.

Each `ScorerMetrics` owns its `CollectorRegistry` instead of using prometheus_client's global
one, so that tests (and a process running several apps) can hold several side by side.

Threads: batches are recorded on the event loop; `storage_retry` is called from the worker
thread that stores a batch. prometheus_client's metrics are thread-safe, and the health
state is a handful of attributes each replaced in one assignment, so no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.scorer.health import HealthSnapshot
from services.scorer.summary import STAGES, BatchSummary, TopicPartition

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Stage durations: milliseconds when healthy, minutes while the database is being retried.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
INGEST_TO_COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ScorerMetrics:
    """Metrics of one scorer worker; `registry` is what `/metrics` exposes."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.items = Counter(
            "finsent_scorer_items",
            "Items scored and committed to the database (a redelivered item counts again)",
            registry=r,
        )
        self.duplicates = Counter(
            "finsent_scorer_duplicates",
            "Records skipped because their event_id appeared earlier in the same batch",
            registry=r,
        )
        self.dead_letters = Counter(
            "finsent_scorer_dead_letters",
            "Records sent to the dead-letter topic, by error type",
            ["error_type"],
            registry=r,
        )
        self.batch_size = Histogram(
            "finsent_scorer_batch_size", "Records per micro-batch", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "finsent_scorer_batch_seconds",
            "Duration of a micro-batch's stages (score, store incl. retries, produce) and of all of it",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.ingest_to_commit = Histogram(
            "finsent_scorer_ingest_to_commit_seconds",
            "From an item's Kafka timestamp (ingest) to the commit of its database transaction",
            buckets=INGEST_TO_COMMIT_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "finsent_model_info", "The model version being served (value 1)", ["model_version"], registry=r
        )
        self.model_reloads = Counter(
            "finsent_model_reloads",
            "Model switches to the registry's champion (switched) and models refused at load (refused)",
            ["outcome"],
            registry=r,
        )
        self.consumer_position = Gauge(
            "finsent_scorer_consumer_position",
            "Next offset to consume per assigned partition (after the last processed batch)",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "finsent_scorer_assigned_partitions", "Partitions assigned to this worker", registry=r
        )
        self.storage_retries = Counter(
            "finsent_scorer_storage_retries",
            "Database write attempts that failed with a connection error and were retried",
            registry=r,
        )
        self.last_batch_timestamp = Gauge(
            "finsent_scorer_last_batch_timestamp_seconds",
            "Unix time at which the last micro-batch was fully processed",
            registry=r,
        )
        for stage in STAGES:  # present from the first scrape, so rate() sees the first batch
            self.batch_seconds.labels(stage=stage)
        for outcome in ("switched", "refused"):
            self.model_reloads.labels(outcome=outcome)
        self._model_version: str | None = None
        self._model_refused: str | None = None
        self._assigned: frozenset[TopicPartition] | None = None
        self._positions: set[TopicPartition] = set()
        self._last_batch_at: float | None = None
        self._database_retrying = False
        self._retries = 0
        self._items = 0
        self._dead = 0
        self._started_at = clock()

    # ------------------------------------------------------------------ events

    def set_model_version(self, version: str) -> None:
        if version == self._model_version:
            return
        self.model_info.clear()
        self.model_info.labels(model_version=version).set(1)
        self._model_version = version

    def model_switched(self, previous: str, version: str) -> None:
        self.model_reloads.labels(outcome="switched").inc()
        self.set_model_version(version)
        self._model_refused = None

    def model_refused(self, version: str, reason: str) -> None:
        """A model the worker would not load; it keeps serving the old one, and says so."""
        self.model_reloads.labels(outcome="refused").inc()
        self._model_refused = f"{version}: {reason}"

    def partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """The worker's whole new assignment (faust sends all of it, not a delta)."""
        self._assigned = frozenset((tp[0], tp[1]) for tp in assigned)
        self.assigned_partitions.set(len(self._assigned))
        self._forget_positions(self._positions - self._assigned)

    def partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Revoked partitions' positions are dropped: another worker reports them now."""
        gone = {(tp[0], tp[1]) for tp in revoked}
        if self._assigned is not None:  # faust also revokes "nothing" before the first join
            self._assigned = self._assigned - gone
            self.assigned_partitions.set(len(self._assigned))
        self._forget_positions(gone & self._positions)

    def storage_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        """`services.scorer.sink.OnRetry`: the database is away; health says so until a commit."""
        self.storage_retries.inc()
        self._retries += 1
        self._database_retrying = True

    def record_batch(self, summary: BatchSummary) -> None:
        """A batch whose transaction committed and whose messages the broker acknowledged."""
        self._database_retrying = False
        self.items.inc(summary.stored)
        self._items += summary.stored
        self.duplicates.inc(summary.duplicates)
        for error_type, count in summary.dead_letters.items():
            self.dead_letters.labels(error_type=error_type).inc(count)
        self._dead += summary.dead_lettered
        self.batch_size.observe(summary.records)
        for stage, seconds in summary.stage_seconds.items():
            self.batch_seconds.labels(stage=stage).observe(seconds)
        for latency in summary.ingest_to_commit_seconds:
            self.ingest_to_commit.observe(latency)
        self._set_positions(summary.positions)
        if summary.model_version is not None:
            self.set_model_version(summary.model_version)
        self._last_batch_at = self._clock()
        self.last_batch_timestamp.set(self._last_batch_at)

    # ------------------------------------------------------------------ reading

    def health_snapshot(self) -> HealthSnapshot:
        assigned = self._assigned
        return HealthSnapshot(
            model_version=self._model_version,
            model_refused=self._model_refused,
            assigned=sorted(assigned) if assigned is not None else None,
            last_batch_at=self._last_batch_at,
            database_retrying=self._database_retrying,
            storage_retries=self._retries,
            items_stored=self._items,
            dead_letters=self._dead,
            started_at=self._started_at,
            now=self._clock(),
        )

    # ------------------------------------------------------------------ helpers

    def _set_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        for (topic, partition), position in positions.items():
            if self._assigned is not None and (topic, partition) not in self._assigned:
                continue  # not assigned here any more: its new owner reports it
            self.consumer_position.labels(topic=topic, partition=str(partition)).set(position)
            self._positions.add((topic, partition))

    def _forget_positions(self, partitions: Iterable[TopicPartition]) -> None:
        for topic, partition in partitions:
            self.consumer_position.remove(topic, str(partition))
            self._positions.discard((topic, partition))
