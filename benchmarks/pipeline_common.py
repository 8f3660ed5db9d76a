"""Shared machinery of the pipeline benchmarks (`pipeline_throughput.py`, `pipeline_latency.py`).

Real parts only: the embedded Kafka-protocol broker started here, uniquely named topics,
a fresh PostgreSQL database per run (created, migrated, dropped), and the real
`finsent worker` (`python -m services worker`) as a subprocess with the real model.

Timestamps. Every time used in a result comes from this machine's wall clock:

- produced: just before `NewsProducer.send_raw` (the payload carries it as `sent_at`, kept
  by the scorer in `news_items.extra`);
- received: `news_items.received_at`, stamped by the worker when a micro-batch starts (one
  value per batch, so it also identifies the batch);
- scored: `predictions.scored_at`, stamped by the worker after inference, before the write;
- committed: the CreateTime of the item's `news.scored` message, which the worker produces
  only after the batch's database transaction committed. It is an upper bound of the commit
  time (by the few ms of handing the batch to the producer); `predictions.scored_at` is a
  lower bound. PostgreSQL's own commit timestamps (`track_commit_timestamp`) are off on the
  shared server, and polling the row count would cost CPU and resolution.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from psycopg import sql
from result_file import finish, machine
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from tqdm import tqdm

from bert_core import packaged_seed_data
from services.broker import PLAINTEXT, EmbeddedBroker, TopicSpec, ensure_topics
from services.ingest.producer import NewsProducer
from services.settings import FlatSettings
from services.storage import make_engine, upgrade_database

REPO_ROOT = Path(__file__).resolve().parents[1]
HEADLINES_CSV = packaged_seed_data()["sentiment"]
POSTGRES_ADMIN_URL = os.environ.get(
    "FINSENT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PARTITIONS = 4
SESSION_TIMEOUT_S = 6.0  # Tansu: a group join waits session_timeout / 2
SOURCE = "benchmark"


# --------------------------------------------------------------------------- command line

DEFAULT_PARALLEL_PASSES: int = FlatSettings.model_fields["parallel_passes"].default


def add_common_arguments(parser: Any) -> None:
    """--model, --threads, --precision, --headlines, --keep-logs: the same in both scripts."""
    default_model = os.environ.get("FINSENT_MODEL")
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(default_model) if default_model else None,
        required=default_model is None,
        help="model directory (default: $FINSENT_MODEL)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads, worker and reference (2)")
    parser.add_argument(
        "--parallel-passes",
        type=int,
        default=DEFAULT_PARALLEL_PASSES,
        help=f"FINSENT_PARALLEL_PASSES of the worker and the reference ({DEFAULT_PARALLEL_PASSES})",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default="auto",
        help="Predictor precision of the worker and the model-only reference (auto)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the worker and the model-only reference compile the encoder pass (FINSENT_COMPILE; "
        "default: on, as the worker ships)",
    )
    parser.add_argument(
        "--headlines", type=Path, default=HEADLINES_CSV, help="CSV with a `text` column (tfn sentiment_train)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker and broker logs")


def stop_on_sigterm() -> None:
    """SIGTERM ends the script like Ctrl-C, so the cleanup in `finally` blocks runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on a terminal; elsewhere (a log file) a plain line every `every` seconds."""

    def __init__(self, total: int, desc: str, *, every: float = 10.0) -> None:
        self.total, self.desc, self.every, self.n = total, desc, every, 0
        self._tty = sys.stderr.isatty()
        self._bar = tqdm(total=total, desc=desc, leave=False, mininterval=0.5) if self._tty else None
        self._last = time.monotonic()

    def update(self, k: int) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        elif time.monotonic() - self._last >= self.every:
            print(f"  {self.desc}: {self.n}/{self.total}", file=sys.stderr, flush=True)
            self._last = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------- data


def load_headlines(n: int, path: Path = HEADLINES_CSV, *, seed: int = 0) -> list[str]:
    """`n` real headlines from the `text` column, shuffled (the file is sorted by label);
    repeated if the file has fewer (the event ids stay unique, so nothing is deduplicated)."""
    from bert_core import normalize_text

    with path.open(newline="", encoding="utf-8") as fh:
        texts = [row["text"].strip() for row in csv.DictReader(fh)]
    # Left out: headlines that are only a URL (3 in sentiment_train.csv). The schema accepts them,
    # the model's normaliser empties them, and the worker dead-letters them after re-scoring their
    # whole batch one item at a time: error handling, not what these benchmarks measure.
    texts = [t for t in texts if normalize_text(t)]
    if not texts:
        raise SystemExit(f"{path}: no headlines in column `text`")
    random.Random(seed).shuffle(texts)
    return [texts[i % len(texts)] for i in range(n)]


def payload(event_id: str, headline: str, *, sent_at: float | None = None) -> bytes:
    """A valid `news.raw` message; `sent_at` (epoch seconds) lands in `news_items.extra`."""
    item: dict[str, Any] = {"id": event_id, "headline": headline, "source": SOURCE}
    if sent_at is not None:
        item["sent_at"] = sent_at
    return json.dumps(item, ensure_ascii=False).encode("utf-8")


def preload(bootstrap: str, topic: str, items: Sequence[tuple[str, str]], *, desc: str) -> float:
    """Produce (event_id, headline) pairs and wait for the broker's acks; returns seconds taken."""
    start = time.perf_counter()
    with NewsProducer(bootstrap, topic=topic, client_id="finsent-bench", security=PLAINTEXT) as producer:
        with Progress(len(items), desc) as bar:
            for event_id, headline in items:
                producer.send_raw(payload(event_id, headline), event_id)
                bar.update(1)
        producer.flush()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- broker and topics


@dataclass(frozen=True, slots=True)
class Topics:
    raw: str
    scored: str
    dlq: str


class Broker:
    """The embedded broker for one benchmark run, with uniquely named topics on demand."""

    def __init__(self, log_dir: Path) -> None:
        self._broker = EmbeddedBroker(log_dir=log_dir, start_timeout=30)

    @property
    def bootstrap(self) -> str:
        return self._broker.bootstrap

    @property
    def pid(self) -> int | None:
        return self._broker.pid

    def __enter__(self) -> Broker:
        self._broker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._broker.stop()

    def topic(self, base: str, partitions: int = PARTITIONS) -> str:
        name = f"bench.{base}-{uuid.uuid4().hex[:10]}"
        ensure_topics(self.bootstrap, [TopicSpec(name, partitions)], timeout=10)
        return name

    def pipeline_topics(self) -> Topics:
        return Topics(self.topic("news.raw"), self.topic("news.scored"), self.topic("news.dlq"))


# --------------------------------------------------------------------------- database


def _admin() -> psycopg.Connection:
    return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database `finsent_bench_<uuid>`, migrated to head; dropped afterwards
    (also on Ctrl-C). Yields its SQLAlchemy URL."""
    name = f"finsent_bench_{uuid.uuid4().hex}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        rendered = url.render_as_string(hide_password=False)
        upgrade_database(rendered)
        yield rendered
    finally:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def database_engine(url: str, *, pooled: bool = False) -> Iterator[Engine]:
    """The benchmark's own engine (NullPool: polls open a short connection); `pooled` gives the
    default pool, which a consumer writing row by row would use."""
    engine = make_engine(url) if pooled else make_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def count_predictions(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())


@dataclass(frozen=True, slots=True)
class StoredRow:
    event_id: str
    received_at: float  # epoch seconds, worker: batch start
    scored_at: float  # epoch seconds, worker: after inference
    sent_at: float | None  # epoch seconds, producer: before send (payload `sent_at`)


def stored_rows(engine: Engine) -> list[StoredRow]:
    query = text(
        "SELECT n.event_id, extract(epoch FROM n.received_at), extract(epoch FROM p.scored_at), "
        "n.extra->>'sent_at' FROM news_items n JOIN predictions p ON p.event_id = n.event_id"
    )
    with engine.connect() as conn:
        return [
            StoredRow(event_id, float(received), float(scored), float(sent) if sent is not None else None)
            for event_id, received, scored, sent in conn.execute(query)
        ]


# --------------------------------------------------------------------------- the worker


def _parent_death_signal() -> Any:
    """Linux: the worker gets SIGTERM if this script dies without cleaning up."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkerFailed(RuntimeError):
    pass


class Worker:
    """`python -m services worker` as a subprocess, configured by FINSENT_* variables only."""

    def __init__(
        self,
        *,
        bootstrap: str,
        database_url: str,
        topics: Topics,
        model: Path,
        threads: int,
        precision: str,
        work_dir: Path,
        parallel_passes: int = 1,
        compiled: bool = False,
        batch_seconds: float | None = None,
        max_batch: int | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        """`batch_seconds`, `max_batch`, `fetch_max_wait_ms`: the worker's FINSENT_SCORER_* settings
        of those names; None keeps the shipped default. `compiled`: FINSENT_COMPILE."""
        self.log_path = work_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.group = f"finsent-bench-{uuid.uuid4().hex[:12]}"
        self.env = {
            **os.environ,
            "FINSENT_HOME": str(work_dir / "home"),
            "FINSENT_KAFKA_BOOTSTRAP": bootstrap,
            "FINSENT_DATABASE_URL": database_url,
            "FINSENT_MODEL": str(model),
            "FINSENT_PRECISION": precision,
            "FINSENT_TORCH_THREADS": str(threads),
            "FINSENT_PARALLEL_PASSES": str(parallel_passes),
            "FINSENT_COMPILE": "true" if compiled else "false",
            "FINSENT_TOPIC_NEWS_RAW": topics.raw,
            "FINSENT_TOPIC_NEWS_SCORED": topics.scored,
            "FINSENT_TOPIC_NEWS_DLQ": topics.dlq,
            "FINSENT_SCORER_GROUP": self.group,
            "FINSENT_SCORER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_S),
            "FINSENT_LOG_LEVEL": "INFO",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if batch_seconds is not None:
            self.env["FINSENT_SCORER_BATCH_SECONDS"] = str(batch_seconds)
        if max_batch is not None:
            self.env["FINSENT_SCORER_MAX_BATCH"] = str(max_batch)
        if fetch_max_wait_ms is not None:
            self.env["FINSENT_SCORER_FETCH_MAX_WAIT_MS"] = str(fetch_max_wait_ms)
        self.command = [sys.executable, "-m", "services", "worker"]
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> Worker:
        with self.log_path.open("wb") as log:  # the child keeps its own copy
            self._proc = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this script, which then stops the worker
                preexec_fn=_parent_death_signal(),
            )
        self.started_at = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        """Raise `WorkerFailed` (with the log's tail) if the worker has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise WorkerFailed(f"the worker exited with code {self._proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the worker finishes its batch), then SIGKILL after `timeout`. Safe twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode


def wait_stored(
    engine: Engine,
    expected: int,
    *,
    worker: Worker,
    timeout: float,
    desc: str,
    interval: float = 0.5,
    stall_timeout: float = 60.0,
) -> float:
    """Poll the predictions count until it reaches `expected`; return the time (epoch s) it did.
    The poll is one count(*) per `interval`: negligible next to the worker. Gives up after
    `timeout`, or after `stall_timeout` without a new row once the first one is there."""
    deadline = time.monotonic() + timeout
    progress_at = time.monotonic()
    with Progress(expected, desc) as bar:
        while True:
            worker.check()
            seen = count_predictions(engine)
            if seen > bar.n:
                progress_at = time.monotonic()
            bar.update(seen - bar.n)
            if seen >= expected:
                return time.time()
            now = time.monotonic()
            if now > deadline or (seen > 0 and now - progress_at > stall_timeout):
                raise WorkerFailed(
                    f"{seen}/{expected} rows stored, the last new one {now - progress_at:.0f} s ago\n"
                    f"{worker.log_tail()}"
                )
            time.sleep(interval)


# --------------------------------------------------------------------------- commit times


def committed_times(bootstrap: str, topic: str, expected: int, *, timeout: float = 120.0) -> dict[str, float]:
    """event_id → CreateTime (epoch s) of its `news.scored` message, which the worker produces
    after the batch's transaction committed: the item's commit time plus a few ms."""
    from services.broker import kafka_consumer

    consumer = kafka_consumer(
        topic,
        bootstrap=bootstrap,
        security=PLAINTEXT,  # the embedded broker speaks PLAINTEXT
        group_id=f"bench-reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
        heartbeat_interval_ms=1000,
    )
    times: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(times) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    if record.timestamp_type != 0:
                        raise RuntimeError(f"{topic}: expected CreateTime timestamps, got type 1")
                    key = record.key.decode()
                    times[key] = min(times.get(key, float("inf")), record.timestamp / 1000.0)
    finally:
        consumer.close(autocommit=False)
    if len(times) < expected:
        raise RuntimeError(f"only {len(times)}/{expected} messages on {topic} after {timeout:g} s")
    return times


# --------------------------------------------------------------------------- the throughput run


def run_pipeline_throughput(
    broker: Broker,
    *,
    model: Path,
    headlines: Sequence[str],
    threads: int,
    precision: str,
    work_dir: Path,
    parallel_passes: int = 1,
    compiled: bool = False,
    batch_seconds: float | None = None,
    max_batch: int | None = None,
    timeout: float = 1800.0,
    warmup: Sequence[str] = (),
) -> dict[str, Any]:
    """Pre-load the headlines into a fresh news.raw, start the real worker, wait until every item
    is in a fresh database; return the timings.

    With `warmup` headlines, the worker first scores those (pre-loaded before it starts, not
    counted), then the measured ones are produced at once into the topic it is waiting on:
    the worker is then as warm as the model-only reference (first-call kernels, per-shape
    caches, connections), as a long-running worker would be.

    `items_per_s` is the steady-state rate: the items committed after the first batch, over the
    time from the first batch's commit to the last one's. It leaves out the worker's start-up
    (model load, group join) and the first batch's one-off costs; `items_per_s_from_start`
    (without warm-up only) includes them.
    """
    n = len(headlines)
    topics = broker.pipeline_topics()
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}-"
    items = [(f"{prefix}{i:06d}", h) for i, h in enumerate(headlines)]
    warm = [(f"warm-{run}-{i:06d}", h) for i, h in enumerate(warmup)]
    if not warm:
        preload_s = preload(broker.bootstrap, topics.raw, items, desc="pre-load news.raw")
    else:
        preload(broker.bootstrap, topics.raw, warm, desc="pre-load warm-up")
    with fresh_database() as url, database_engine(url) as engine:
        with Worker(
            bootstrap=broker.bootstrap,
            database_url=url,
            topics=topics,
            model=model,
            threads=threads,
            precision=precision,
            work_dir=work_dir,
            parallel_passes=parallel_passes,
            compiled=compiled,
            batch_seconds=batch_seconds,
            max_batch=max_batch,
        ) as worker:
            if warm:
                wait_stored(engine, len(warm), worker=worker, timeout=timeout, desc="worker: warm-up stored")
                preload_s = preload(broker.bootstrap, topics.raw, items, desc="produce news.raw")
            wait_stored(engine, len(warm) + n, worker=worker, timeout=timeout, desc="worker: rows stored")
            all_rows = stored_rows(engine)
            committed = committed_times(broker.bootstrap, topics.scored, len(warm) + n)
            assert worker.started_at is not None
            started_at = worker.started_at
        dead = _count_messages(broker.bootstrap, topics.dlq)
    rows = [r for r in all_rows if r.event_id.startswith(prefix)]
    first_received = min(r.received_at for r in all_rows)
    batches = _batches(rows, committed)
    first, last = batches[0], batches[-1]
    steady_items = n - first["items"]
    steady_s = last["committed"] - first["committed"]
    busy = sum(b["committed"] - b["received"] for b in batches)
    return {
        "items": n,
        "dead_lettered": dead,
        "preload_s": round(preload_s, 2),
        "batches": len(batches),
        "mean_batch": round(n / len(batches), 1),
        "warmup_items": len(warm),
        "startup_s": round(first_received - started_at, 2),
        "first_to_last_commit_s": round(steady_s, 3),
        "items_per_s": round(steady_items / steady_s, 1) if steady_s > 0 else None,
        "items_per_s_from_start": None if warm else round(n / (last["committed"] - started_at), 1),
        # Where the worker's time went from the first batch's start to the last commit, summed over batches
        # (with FINSENT_SCORER_BATCHES_IN_FLIGHT > 1 batches overlap: the sums can exceed the wall time,
        # and a negative between_batches is the time two batches were in flight at once):
        "first_start_to_last_commit_s": round(last["committed"] - first["received"], 3),
        "phase_s": {
            "parse_and_inference": round(sum(b["scored"] - b["received"] for b in batches), 2),
            "store_and_publish": round(sum(b["committed"] - b["scored"] for b in batches), 2),
            "between_batches": round(last["committed"] - first["received"] - busy, 2),
        },
        # The share of the worker's time spent in parse+inference: the ceiling of the ratio to the
        # model alone, and unlike that ratio, little affected by other load on the machine.
        "inference_share": round(
            sum(b["scored"] - b["received"] for b in batches) / (last["committed"] - first["received"]), 3
        ),
        "batch_seconds": batch_seconds,
        "max_batch": max_batch,
        "per_batch": [
            {
                "items": int(b["items"]),
                "inference_s": round(b["scored"] - b["received"], 3),
                "store_publish_s": round(b["committed"] - b["scored"], 3),
            }
            for b in batches
        ],
    }


def _batches(rows: Iterable[StoredRow], committed: dict[str, float]) -> list[dict[str, float]]:
    """Micro-batches, identified by their shared received_at, in commit order."""
    by_batch: dict[float, list[StoredRow]] = {}
    for row in rows:
        by_batch.setdefault(row.received_at, []).append(row)
    batches = [
        {
            "received": received,
            "scored": max(r.scored_at for r in members),
            "committed": max(committed[r.event_id] for r in members),
            "items": len(members),
        }
        for received, members in by_batch.items()
    ]
    return sorted(batches, key=lambda b: b["committed"])


def _count_messages(bootstrap: str, topic: str, *, timeout: float = 4.0) -> int:
    """Messages on `topic` (the DLQ: expected 0), read for `timeout` seconds after the group join."""
    from services.broker import kafka_consumer

    consumer = kafka_consumer(
        topic,
        bootstrap=bootstrap,
        security=PLAINTEXT,  # the embedded broker speaks PLAINTEXT
        group_id=f"bench-reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
        heartbeat_interval_ms=1000,
    )
    count = 0
    try:
        join_deadline = time.monotonic() + 30.0
        while not consumer.assignment() and time.monotonic() < join_deadline:
            count += sum(len(b) for b in consumer.poll(timeout_ms=200).values())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count += sum(len(b) for b in consumer.poll(timeout_ms=200).values())
    finally:
        consumer.close(autocommit=False)
    return count


# --------------------------------------------------------------------------- CPU accounting


def _process_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in {"postgres", "postmaster"}:
                    pids.append(int(entry.name))
    return pids


class CpuShares:
    """Where the two cores went during a measured window, in cores (1.0 = one core busy).

    Why: at "half the maximum rate" the worker shares the machine with the broker, PostgreSQL
    and the benchmark's own producer; the latency tail follows how busy the machine is, so
    each latency run reports the machine's busy share and each party's part of it.
    """

    def __init__(self, named: dict[str, int | None]) -> None:
        self.named = {name: pid for name, pid in named.items() if pid is not None}

    def start(self) -> None:
        self._start = time.monotonic()
        self._machine = _machine_ticks()
        self._procs = {name: _process_ticks(pid) for name, pid in self.named.items()}
        self._postgres = {pid: _process_ticks(pid) for pid in _postgres_pids()}

    def stop(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        seconds = time.monotonic() - self._start
        busy, total = _machine_ticks()
        result: dict[str, float] = {
            "machine_busy_share": round((busy - self._machine[0]) / max(total - self._machine[1], 1), 3),
        }
        for name, pid in self.named.items():
            before, after = self._procs[name], _process_ticks(pid)
            if before is not None and after is not None:
                result[f"{name}_cores"] = round((after - before) / hz / seconds, 3)
        postgres = 0
        for pid in set(self._postgres) | set(_postgres_pids()):
            after = _process_ticks(pid)
            if after is not None:  # backends started in the window count from zero
                postgres += after - (self._postgres.get(pid) or 0)
        result["postgres_cores"] = round(postgres / hz / seconds, 3)
        return result


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    """`result_file.machine()` plus the torch build and the niceness the run had."""
    import torch

    return {**machine(), "torch": torch.__version__, "nice": os.nice(0)}


def finish_machine_info(info: dict[str, Any]) -> None:
    finish(info)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for k, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        padded = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in pairs]
        print("  ".join(padded))
        if k == 0:
            print("  ".join("-" * w for w in widths))


@contextlib.contextmanager
def work_directory(keep: bool) -> Iterator[Path]:
    """A temporary directory for logs; kept (and named) with --keep-logs."""
    path = Path(tempfile.mkdtemp(prefix="finsent-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"logs kept in {path}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
