"""Helpers for end-to-end tests of `finsent worker`: the worker as a subprocess, the test items,
producing them (at once or paced), the database's row counts and contents, and the consumer
group's committed offsets. Every wait has a deadline and fails with the tail of each worker's log.

Tansu (the embedded broker) notes that shape these helpers: end offsets and lag are unreliable,
so progress is read from the database, from the group's committed offsets (OffsetFetch) and
from what the worker wrote to `news.scored`, never from end offsets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from services.broker.embedded import free_port
from services.ingest.producer import NewsProducer
from services.storage import NewsItemRow, NewsTickerRow, PredictionRow, make_engine, upgrade_database

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
SESSION_TIMEOUT_S = 6  # Tansu: a group join waits session_timeout/2
READY_TIMEOUT_S = 300.0  # a deadline: imports, model load and compile, group join on a loaded machine
LOG_TAIL_CHARS = 3000
TICKERS = ("AAPL", "MSFT")  # every fourth item carries these two

T = TypeVar("T")


# --------------------------------------------------------------------------- the test items


def event_id(i: int) -> str:
    return f"item-{i:05d}"


def valid_payload(i: int) -> bytes:
    """A valid news.raw message: item i, with an explicit ticker list on every fourth item."""
    words = ("surge", "plunges", "holds", "beats", "misses")
    item: dict[str, Any] = {
        "id": event_id(i),
        "headline": f"acme shares {words[i % len(words)]} after earnings report {i}",
        "source": "test",
        "published_at": f"2025-03-04T{(i // 60) % 24:02d}:{i % 60:02d}:00+00:00",
    }
    if i % 4 == 0:
        item["tickers"] = list(TICKERS)
    return json.dumps(item).encode()


class RowCounts(NamedTuple):
    news_items: int
    news_tickers: int
    predictions: int


def expected_counts(n: int) -> RowCounts:
    """The rows that items 0..n-1, each scored once by one model, must leave."""
    return RowCounts(n, len(TICKERS) * len(range(0, n, 4)), n)


def produce(bootstrap: str, topic: str, items: Iterable[int]) -> int:
    """Send the valid items `items` to `topic` (keyed by event id) and flush; return how many."""
    with NewsProducer(bootstrap, topic=topic) as producer:
        sent = 0
        for i in items:
            producer.send_raw(valid_payload(i), event_id(i))
            sent += 1
        producer.flush()
    return sent


class PacedProducer:
    """Sends items 0..n-1 at `rate` per second from a background thread, so that a worker is
    mid-stream (with batches in flight) while the test kills it or cuts its database.

    With `n=None` it keeps sending until `stop()`: a test that waits for a state of the worker
    (a model switch, a recovery) keeps the stream going until it sees it, instead of betting
    on a stream long enough for the slowest machine. `sent` is then the stream's length."""

    def __init__(self, bootstrap: str, topic: str, n: int | None, *, rate: float) -> None:
        self.bootstrap, self.topic, self.n, self.rate = bootstrap, topic, n, rate
        self.sent = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with NewsProducer(self.bootstrap, topic=self.topic) as producer:
                start = time.monotonic()
                i = 0
                while (self.n is None or i < self.n) and not self._stop.is_set():
                    delay = start + i / self.rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    producer.send_raw(valid_payload(i), event_id(i))
                    i += 1
                    self.sent = i
                producer.flush()
        except BaseException as exc:  # re-raised in the test's thread by join()
            self._error = exc

    def stop(self, timeout: float = 60.0) -> int:
        """End an open-ended stream (`n=None`): send nothing more, wait for the broker's acks
        of what was sent (`join`). Returns how many items were sent: 0..sent-1."""
        self._stop.set()
        self.join(timeout)
        return self.sent

    def join(self, timeout: float = 60.0) -> None:
        """Wait until every item was sent and acknowledged by the broker; re-raise a failure."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the producer did not finish within {timeout:g} s"
        if self._error is not None:
            raise AssertionError(f"producing to {self.topic} failed: {self._error!r}") from self._error
        assert self.sent == self.n or self._stop.is_set()


# --------------------------------------------------------------------------- topics and the worker


@dataclass(frozen=True, slots=True)
class PipelineTopics:
    raw: str
    scored: str
    dlq: str

    @classmethod
    def create(cls, make_topic: Callable[..., str], *, partitions: int = PARTITIONS) -> PipelineTopics:
        """Uniquely named topics, created up front (Tansu would auto-create them with 1 partition)."""
        return cls(
            raw=make_topic("news.raw", partitions=partitions),
            scored=make_topic("news.scored", partitions=partitions),
            dlq=make_topic("news.dlq", partitions=partitions),
        )


def new_group() -> str:
    return f"finsent-scorer-test-{uuid.uuid4().hex[:12]}"


_handed_out_ports: set[int] = set()


def _metrics_port() -> int:
    """A free port not given to another worker of this test session (two workers started
    together must not get the same one)."""
    while (port := free_port()) in _handed_out_ports:
        pass
    _handed_out_ports.add(port)
    return port


def worker_env(
    *,
    bootstrap: str,
    database_url: str,
    model_dir: Path,
    topics: PipelineTopics,
    group: str,
    home: Path,
) -> dict[str, str]:
    """The environment of one `finsent worker` process. Each call picks its own free port for
    the worker's metrics/health server, so several workers can run on one host."""
    return {
        **os.environ,
        "FINSENT_HOME": str(home),
        "FINSENT_KAFKA_BOOTSTRAP": bootstrap,
        "FINSENT_DATABASE_URL": database_url,
        "FINSENT_MODEL": str(model_dir),
        "FINSENT_PRECISION": "fp32",
        "FINSENT_TORCH_THREADS": "1",
        # Compiling the pass costs each worker 20-60 s of a CI core; the compiled path has its
        # own tests (test_model_hot_reload.py serves compiled, tests/unit/test_inference_compiled.py).
        "FINSENT_COMPILE": "false",
        "FINSENT_TOPIC_NEWS_RAW": topics.raw,
        "FINSENT_TOPIC_NEWS_SCORED": topics.scored,
        "FINSENT_TOPIC_NEWS_DLQ": topics.dlq,
        "FINSENT_SCORER_GROUP": group,
        "FINSENT_SCORER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_S),
        "FINSENT_SCORER_METRICS_PORT": str(_metrics_port()),
        # Small slices: every backlog batch is scored and stored in many overlapping slices,
        # so the exactly-once tests cover a batch acked only after all its slices are stored.
        "FINSENT_SCORER_SLICE_ITEMS": "64",
        "FINSENT_LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a `finsent run` process: none of the caller's FINSENT_* variables, a
    home of its own, one torch thread in fp32 and uncompiled, short session timeouts (a restarted service
    rejoins fast), a free metrics port for each of its four services, the model libraries
    offline; `settings` (FINSENT_* names) on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    return env | {
        "FINSENT_HOME": str(home),
        "FINSENT_TORCH_THREADS": "1",
        "FINSENT_PRECISION": "fp32",
        "FINSENT_COMPILE": "false",  # as in worker_env: compiling has its own tests
        "FINSENT_SCORER_SESSION_TIMEOUT_SECONDS": "6",
        "FINSENT_ALERTER_SESSION_TIMEOUT_SECONDS": "6",
        "FINSENT_SCORER_METRICS_PORT": str(free_port()),
        "FINSENT_ALERTER_METRICS_PORT": str(free_port()),
        "FINSENT_DISPATCHER_METRICS_PORT": str(free_port()),
        "FINSENT_SCHEDULER_METRICS_PORT": str(free_port()),
        # the bootstrap alone: the background upgrade has its own test (test_run_upgrade.py)
        "FINSENT_UPGRADE_BOOTSTRAP": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **settings,
    }


_ASSIGNED = re.compile(r"Setting newly assigned partitions (.*) for group ")
_PARTITION = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")
_BATCH = re.compile(r"batch: (\d+) records, (\d+) stored, (\d+) dead-lettered")


class CliProcess:
    """`python -m services <command>` as a subprocess, its stdout and stderr in `log_path`.

    A context manager: leaving the block stops it (SIGTERM) if it still runs. Has what
    `wait_for` expects of a worker (`assert_alive`, `tail`).
    """

    command = ""

    def __init__(
        self, env: dict[str, str], log_path: Path, *, name: str | None = None, args: Sequence[str] = ()
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.name = name or self.command
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services", self.command, *args],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return f"--- {self.name} log ({self.log_path}), last {chars} chars:\n{self.log()[-chars:]}"

    def assert_alive(self) -> None:
        assert self.alive, f"{self.name} exited with code {self.proc.returncode}\n{self.tail()}"

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM (the step in flight is finished and its offsets committed); SIGKILL after
        `timeout`. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: nothing in flight is finished, nothing more is committed."""
        self.proc.kill()
        self.proc.wait(timeout=10)


class Worker(CliProcess):
    """`finsent worker` (the scorer)."""

    command = "worker"

    def ready_count(self) -> int:
        """How often faust reported the worker ready (once per completed rebalance)."""
        return self.log().count("Worker ready")

    def wait_ready(self, *, times: int = 1, timeout: float = READY_TIMEOUT_S) -> None:
        wait_for(
            self.ready_count,
            lambda n: n >= times,
            timeout=timeout,
            what=f"{self.name} ready (faust 'Worker ready' logged {times}x)",
            workers=[self],
        )

    def assignments(self, topic: str) -> list[frozenset[int]]:
        """The partitions of `topic` assigned to this worker at each rebalance, oldest first
        (the consumer logs each new assignment)."""
        return [
            frozenset(int(p) for t, p in _PARTITION.findall(match.group(1)) if t == topic)
            for match in _ASSIGNED.finditer(self.log())
        ]

    def settled_assignment(self, topic: str) -> frozenset[int] | None:
        """The partitions of `topic` this worker is processing now: its latest assignment, once
        faust reported ready after it; None while a rebalance is under way or before the first."""
        log = self.log()
        matches = list(_ASSIGNED.finditer(log))
        if not matches or "Worker ready" not in log[matches[-1].end() :]:
            return None
        return frozenset(int(p) for t, p in _PARTITION.findall(matches[-1].group(1)) if t == topic)

    def health(self) -> tuple[int, dict[str, Any]] | None:
        """GET /health of the worker's metrics server: (HTTP status, JSON body); None while
        nothing answers there."""
        url = f"http://127.0.0.1:{self.env['FINSENT_SCORER_METRICS_PORT']}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 503 (starting, degraded) is an answer too
            return exc.code, json.loads(exc.read())
        except (urllib.error.URLError, ConnectionError):
            return None

    def batches(self) -> list[tuple[int, int, int]]:
        """(records, stored, dead-lettered) of every batch the worker logged."""
        return [(int(r), int(s), int(d)) for r, s, d in _BATCH.findall(self.log())]


def tails(workers: Sequence[Worker]) -> str:
    return "\n".join(worker.tail() for worker in workers)


def wait_for(
    observe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    workers: Sequence[Worker] = (),
    interval: float = 0.25,
    require_alive: bool = True,
    while_progressing: bool = False,
) -> T:
    """Poll `observe()` until `done(value)`; return the value. Fails after `timeout` seconds, or
    as soon as one of `workers` has exited (if `require_alive`), with their log tails.

    With `while_progressing` the `timeout` is for a stall: the deadline restarts each time the
    observed value changes. A backlog drains at whatever rate the machine has (a slow CI machine
    stores fewer rows a second), and only a pipeline that stops moving is a failure."""
    deadline = time.monotonic() + timeout
    last: object = object()
    while True:
        if require_alive:
            for worker in workers:
                worker.assert_alive()
        value = observe()
        if done(value):
            return value
        if while_progressing and value != last:
            last, deadline = value, time.monotonic() + timeout
        if time.monotonic() >= deadline:
            since = " of its last change" if while_progressing else ""
            raise AssertionError(
                f"{what}: not within {timeout:g} s{since}; last seen: {value!r}\n{tails(workers)}"
            )
        time.sleep(interval)


# --------------------------------------------------------------------------- database


@contextmanager
def migrated_engine(url: str) -> Iterator[Engine]:
    """The database at `url` migrated to head, and an engine on it that keeps no connections
    between calls (the tests read while the worker writes)."""
    upgrade_database(url)
    engine = make_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def db_counts(engine: Engine) -> RowCounts:
    with Session(engine) as session:
        return RowCounts(
            *(
                session.scalar(select(func.count()).select_from(table)) or 0
                for table in (NewsItemRow, NewsTickerRow, PredictionRow)
            )
        )


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row of the pipeline's tables, in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for model in (NewsItemRow, NewsTickerRow, PredictionRow):
            table = model.__table__
            stmt = select(table).order_by(*table.primary_key.columns)  # type: ignore[attr-defined]
            out[table.name] = [tuple(row) for row in conn.execute(stmt)]  # type: ignore[attr-defined]
    return out


def rows_per_partition(engine: Engine) -> dict[int, int]:
    """news_items per Kafka partition they were first consumed from."""
    stmt = select(NewsItemRow.kafka_partition, func.count()).group_by(NewsItemRow.kafka_partition)
    with Session(engine) as session:
        return {int(p): int(n) for p, n in session.execute(stmt).tuples() if p is not None}


# --------------------------------------------------------------------------- Kafka


def committed_offsets(bootstrap: str, group: str, topic: str, *, partitions: int = PARTITIONS) -> list[int]:
    """The group's committed (next) offset per partition of `topic` (OffsetFetch); 0 if none."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return [consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)]
    finally:
        consumer.close(autocommit=False)


def committed_total(bootstrap: str, group: str, topic: str, *, partitions: int = PARTITIONS) -> int:
    """Records of `topic` the group has committed: the sum of its next offsets."""
    return sum(committed_offsets(bootstrap, group, topic, partitions=partitions))


class Progress(NamedTuple):
    committed: int  # records of news.raw the group committed
    rows: RowCounts


def wait_until_processed(
    engine: Engine,
    n: int,
    *,
    bootstrap: str,
    group: str,
    topic: str,
    workers: Sequence[Worker],
    timeout: float,
) -> Progress:
    """Wait until the database holds all `n` items, or the group has committed all `n` records of
    `topic` (then the database must hold them already: the caller asserts the rows, so a loss
    fails at once instead of at the deadline). Fails at the deadline or if a worker exits."""
    return wait_for(
        lambda: Progress(committed_total(bootstrap, group, topic), db_counts(engine)),  # commits first
        lambda p: p.committed >= n or (p.rows.news_items >= n and p.rows.predictions >= n),
        timeout=timeout,
        what=f"all {n} items stored or committed by group {group}",
        workers=workers,
    )


def scored_ids(records: Iterable[Any]) -> list[str]:
    """The event ids of `news.scored` records, in the order read (repeats kept)."""
    return [json.loads(record.value)["event_id"] for record in records]
