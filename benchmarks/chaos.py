"""Chaos run of the whole pipeline: real headlines through the real broker, PostgreSQL and the
`finsent` processes, with faults injected while they run; prints and writes a JSON report
(benchmarks/results/chaos.json: the machine, then one report per run of this invocation).

    .venv/bin/python benchmarks/chaos.py [--items 10000] [--runs 3] [--model DIR] [--seed 0]

What runs (all as subprocesses, configured by FINSENT_* variables only, as deployed):
`finsent worker` (1 to 3 at a time), `finsent alerter`, `finsent dispatcher`, `finsent init`,
`finsent subscriptions add`, `finsent ingest`; an embedded broker started here (its own,
since it is restarted); a fresh PostgreSQL database, reached by the services through a TCP
proxy that the run cuts (tests/integration/tcp_proxy.py); a local webhook receiver.

The faults, in order (docs/reliability.md says what each means and how recovery is timed):

1. while the stream is produced (paced, in event-time order, 1 % poison mixed in): workers
   scaled 1 → 2 → 3 → 1, SIGKILLed and SIGTERMed (each replaced at once) at random 5-30 s
   intervals, and the database unreachable for 30 s;
2. the bearish burst near the stream's end raises one alert; the webhook answers 500 twice,
   then the dispatcher is SIGKILLed while its third request is in the receiver's hands
   (sent, not yet recorded); a new dispatcher re-sends it after the claim lease;
3. a full replay of `news.raw` from offset 0 (a worker in a new consumer group);
4. the broker restarted: the embedded broker keeps everything in memory (its build has no
   durable storage engine), so the restart loses every topic and committed offset; the run
   recreates the topics (`finsent init`) and re-sends the source file (`finsent ingest`),
   which the idempotent upserts must absorb.

The model: by default the tiny keyword-trained BERT the tests build (tests/conftest.py), so
a run takes minutes on two shared cores; `--model DIR` serves another. The stream's alerts
are decided before the run from that model's own labels (benchmarks/chaos_design.py).
`run_chaos` is also what tests/integration/test_chaos.py runs, smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT), str(ROOT / "benchmarks")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from chaos_design import EXPECTED_ERROR_TYPE, Design, Label, make_design  # noqa: E402
from result_file import machine, result_path, write_result  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from services.broker import EmbeddedBroker  # noqa: E402
from services.broker.topics import admin_client  # noqa: E402
from services.ingest.producer import NewsProducer  # noqa: E402
from tests.integration.alerter_process import AlerterProcess  # noqa: E402
from tests.integration.conftest import consume, fresh_postgres_database  # noqa: E402
from tests.integration.delivery_support import local_http_server  # noqa: E402
from tests.integration.pipeline import (  # noqa: E402
    READY_TIMEOUT_S,
    SESSION_TIMEOUT_S,
    CliProcess,
    PipelineTopics,
    Worker,
    committed_total,
    migrated_engine,
    snapshot,
    worker_env,
)
from tests.integration.tcp_proxy import TcpProxy  # noqa: E402

PARTITIONS = 4
SIGTERM_LIMIT_S = 30.0
HEARTBEAT_S = SESSION_TIMEOUT_S / 3  # the scorer's heartbeat interval (services/scorer/app.py)
WEBHOOK_SECRET = "chaos-webhook-secret"  # a throwaway HMAC key for the local receiver
# The full plan: scale 1 → 2 → 3 → 1 with kills in between (3 SIGKILL, 2 SIGTERM, plus the
# 2 SIGTERMs of scaling down) and the 30 s database cut. Each step waits a random gap first.
FULL_PLAN = (
    "scale_up",
    "sigkill",
    "scale_up",
    "sigterm",
    "db_cut",
    "sigkill",
    "sigterm",
    "scale_down",
    "sigkill",
)
SHORT_PLAN = ("scale_up", "sigkill", "scale_up", "db_cut", "sigterm", "scale_down")


@dataclass
class ChaosConfig:
    items: int = 10_000
    poison_share: float = 0.01
    burst_size: int = 8
    seed: int = 0
    plan: tuple[str, ...] = FULL_PLAN
    gap_s: tuple[float, float] = (5.0, 30.0)
    db_cut_s: float = 30.0
    restart_broker: bool = True
    settle_timeout_s: float = 900.0  # deadline for the stream to be stored after the last fault
    delivery_timeout_s: float = 2.0  # FINSENT_DELIVERY_TIMEOUT_SECONDS: sets the claim lease after a crash


def short_config(config: ChaosConfig) -> ChaosConfig:
    """The CI variant's faults: one SIGKILL, one SIGTERM, scale 1 → 2 → 3 → 1, a 10 s cut."""
    return ChaosConfig(
        **{
            **asdict(config),
            "plan": SHORT_PLAN,
            "gap_s": (5.0, 8.0),
            "db_cut_s": 10.0,
            "settle_timeout_s": 300.0,
        }
    )


# --------------------------------------------------------------------------- model


def build_tiny_model(out: Path) -> Path:
    """The tests' tiny keyword model (tests/tiny_model.py, the recipe of tests/conftest.py's
    session model), built outside pytest; `out/model` once built is reused."""
    from tests.tiny_model import (
        make_sentiment_rows,
        make_topic_rows,
        save_trained,
        train_tiny,
        write_csv,
        write_tiny_bert,
    )

    model_dir = out / "model"
    if (model_dir / "manifest.json").is_file():
        return model_dir
    out.mkdir(parents=True, exist_ok=True)
    base = write_tiny_bert(out / "tiny-bert")
    result, train, *_ = train_tiny(
        base,
        write_csv(out / "sentiment.csv", make_sentiment_rows()),
        write_csv(out / "topic.csv", make_topic_rows()),
    )
    return save_trained(model_dir, result, train)


def model_labeller(model_dir: Path, cache_file: Path) -> Callable[[list[str]], list[Label]]:
    """Labels from the served model, run in-process (fp32, as the workers are configured);
    cached per model directory, since three runs label the same headlines."""
    from bert_core import Predictor

    cache: dict[str, list[Any]] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    predictor: Any = None

    def label(texts: list[str]) -> list[Label]:
        nonlocal predictor
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            if predictor is None:
                predictor = Predictor.load(model_dir, precision="fp32")
            for t, p in zip(missing, predictor.predict(missing), strict=True):
                probs = p.sentiment_probs
                cache[t] = [p.topic, p.sentiment, probs["bearish"], probs["neutral"], probs["bullish"]]
            cache_file.write_text(json.dumps(cache))
        return [Label(*cache[t]) for t in texts]

    return label


# --------------------------------------------------------------------------- processes


class Dispatcher(CliProcess):
    command = "dispatcher"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Fault:
    kind: str
    at_s: float  # since the run's start
    detail: dict[str, Any] = field(default_factory=dict)
    ended_s: float | None = None  # when the fault was over (kill: at once; db cut: restored)
    target: int | None = None  # valid items sent when it ended: all must be stored to recover
    recovered_s: float | None = None  # seconds from `ended_s` to recovered

    def report(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class Services:
    """The services of one run, their environment, and a supervisor that restarts an
    alerter or dispatcher that ended (as a process manager would), counting it."""

    def __init__(self, env: dict[str, str], logs: Path, topics: PipelineTopics, t0: float) -> None:
        self.env, self.logs, self.topics, self.t0 = env, logs, topics, t0
        self.workers: list[Worker] = []
        self.started = 0
        self.unexpected_exits: list[dict[str, Any]] = []
        self.alerter: AlerterProcess | None = None
        self.dispatcher: Dispatcher | None = None
        self.dispatcher_starts = 0
        self.alerter_starts = 0
        self.sigterm_exits: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._intended: set[int] = set()  # pids we signalled ourselves

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start_worker(self, group: str | None = None) -> Worker:
        with self._lock:
            self.started += 1
            n = self.started
        env = {**self.env, "FINSENT_SCORER_METRICS_PORT": "0"}  # any free port: several run side by side
        if group is not None:
            env["FINSENT_SCORER_GROUP"] = group
        worker = Worker(env, self.logs / f"worker-{n}.log", name=f"worker-{n}")
        if group is None:
            self.workers.append(worker)
        return worker

    def live_workers(self) -> list[Worker]:
        """Running and not told to stop (a SIGTERMed worker still finishing does not count)."""
        return [w for w in self.workers if w.alive and w.proc.pid not in self._intended]

    def ready_workers(self) -> list[Worker]:
        """Alive and past faust's 'Worker ready' at least once: processing, not starting."""
        return [w for w in self.live_workers() if w.ready_count() > 0]

    def victim(self, rng: random.Random, *, timeout: float = READY_TIMEOUT_S) -> Worker:
        """A random worker that is processing (waits for one, so a kill strikes mid-stream)."""
        ready = wait_until(self.ready_workers, timeout=timeout, what="a ready worker to kill", services=self)
        return rng.choice(ready)

    def group_formed(self) -> bool:
        """Every live worker processes its latest assignment and together they cover every
        partition of `news.raw` once: no rebalance is under way."""
        live = self.live_workers()
        if not live:
            return False
        assignments = []
        for worker in live:
            settled = worker.settled_assignment(self.topics.raw)
            log = worker.log()
            if settled is None or log.rfind("(Re-)joining group") > log.rfind("Worker ready"):
                return False
            assignments.append(settled)
        covered = frozenset().union(*assignments)
        return covered == frozenset(range(PARTITIONS)) and sum(map(len, assignments)) == PARTITIONS

    def wait_group_formed(self, *, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait out a rebalance before a worker leaves the group cleanly.

        The embedded broker (Tansu 0.6.0) keeps a group's leader when that leader sends
        LeaveGroup while the group re-forms after another member left; the group then never
        forms again (docs/reliability.md#the-embedded-brokers-group-coordinator). A SIGTERM
        (LeaveGroup) therefore only strikes a formed group, as an operator of several workers
        on the embedded broker must do too; SIGKILLs strike at any time."""
        wait_until(self.group_formed, timeout=timeout, what="the scorer group formed", services=self)

    def sigkill(self, worker: Worker) -> None:
        self._intended.add(worker.proc.pid)
        worker.kill()

    def sigterm(self, worker: Worker) -> threading.Thread:
        """SIGTERM and time the exit in the background (the run goes on meanwhile)."""
        self._intended.add(worker.proc.pid)
        ready = worker.ready_count() > 0
        sent = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)

        def wait() -> None:
            try:
                code: int | None = worker.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                code = None
                worker.kill()
            took = time.monotonic() - sent
            log = worker.log()
            self.sigterm_exits.append(
                {
                    "worker": worker.name,
                    "was_ready": ready,
                    "at_s": round(sent - self.t0, 2),
                    "exit_s": round(took, 2),
                    "exit_code": code,
                    "batches_logged": len(worker.batches()),
                    "traceback": "Traceback" in log,
                }
            )

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        return thread

    def start_alerter(self) -> None:
        self.alerter_starts += 1
        self.alerter = AlerterProcess(self.env, self.logs / f"alerter-{self.alerter_starts}.log")

    def start_dispatcher(self) -> None:
        self.dispatcher_starts += 1
        self.dispatcher = Dispatcher(self.env, self.logs / f"dispatcher-{self.dispatcher_starts}.log")

    def supervise(self) -> None:
        """One pass: restart a dead alerter or dispatcher; note workers that died unasked."""
        for name, proc, start in (
            ("alerter", self.alerter, self.start_alerter),
            ("dispatcher", self.dispatcher, self.start_dispatcher),
        ):
            if proc is not None and not proc.alive:
                if proc.proc.pid not in self._intended:
                    self.unexpected_exits.append(
                        {
                            "process": name,
                            "at_s": round(self.now(), 2),
                            "code": proc.proc.returncode,
                            "log_tail": proc.log()[-600:],
                        }
                    )
                start()
        for w in self.workers:
            if not w.alive and w.proc.pid not in self._intended:
                self._intended.add(w.proc.pid)  # noted once
                self.unexpected_exits.append(
                    {
                        "process": w.name,
                        "at_s": round(self.now(), 2),
                        "code": w.proc.returncode,
                        "log_tail": w.log()[-600:],
                    }
                )

    def stop_all(self) -> None:
        for proc in [*self.workers, self.alerter, self.dispatcher]:
            if proc is not None and proc.alive:
                self._intended.add(proc.proc.pid)
                proc.stop(timeout=30)


# --------------------------------------------------------------------------- webhook receiver


class Receiver:
    """A local webhook receiver: answers 500 to the first `fail_first` requests; on the next
    one it calls `on_kill` (the run SIGKILLs the dispatcher: the request was sent, its result
    not recorded) and drops the connection; afterwards 200. Keeps every request, and
    accepts each Idempotency-Key once, as a receiver that deduplicates does. The script
    applies to notifications whose key contains `target` (the burst's); any other is
    answered 200 and counted."""

    def __init__(self, *, target: str = "|ticker|CHAOS|", fail_first: int = 2) -> None:
        self.target = target  # the script applies to the burst's notifications; others get 200
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self.accepted_keys: Counter[str] = Counter()
        self.on_kill: Callable[[], None] = lambda: None
        self.killed_at: float | None = None
        self._lock = threading.Lock()
        self.port = 0

    @contextmanager
    def serve(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                with receiver._lock:
                    n = sum(1 for r in receiver.requests if receiver.target in r["key"])
                    if receiver.target not in key:
                        action = "other"
                    elif n < receiver.fail_first:
                        action = "fail"
                    else:
                        action = "kill" if n == receiver.fail_first else "ok"
                    receiver.requests.append(
                        {
                            "n": len(receiver.requests) + 1,
                            "at": time.time(),
                            "key": key,
                            "action": action,
                            "bytes": len(body),
                        }
                    )
                    if action != "fail":
                        receiver.accepted_keys[key] += 1  # the receiver has it (processed once per key)
                if action == "kill":
                    receiver.killed_at = time.monotonic()
                    receiver.on_kill()
                    self.close_connection = True
                    return  # no answer: the dispatcher is dead
                self.send_response(500 if action == "fail" else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                return

        with local_http_server(Handler) as port:
            self.port = port
            yield self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


# --------------------------------------------------------------------------- producing


class StreamProducer:
    """Sends the design's stories (and its poison before the stories it precedes) at `rate`
    per second from a thread; `sent_valid` is how many stories were sent so far, in order."""

    def __init__(self, bootstrap: str, topic: str, design: Design, rate: float) -> None:
        self.bootstrap, self.topic, self.design, self.rate = bootstrap, topic, design, rate
        self.sent_valid = 0
        self.sent_poison = 0
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)

    def start(self) -> StreamProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with NewsProducer(
                self.bootstrap, topic=self.topic, max_request_bytes=4 * 1024 * 1024
            ) as producer:
                start = time.monotonic()
                for i, story in enumerate(self.design.stories):
                    delay = start + i / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    poison = self.design.poison.get(i)
                    if poison is not None:
                        producer.send_raw(poison.payload, poison.marker)
                        self.sent_poison += 1
                    producer.send_raw(story.payload(), story.event_id)
                    self.sent_valid = i + 1
                producer.flush()
            self.finished_at = time.monotonic()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the producer did not finish within {timeout:g} s")
        if self.error is not None:
            raise RuntimeError(f"producing failed: {self.error!r}") from self.error


# --------------------------------------------------------------------------- database reads


def stored_below(engine: Engine, k: int) -> int:
    """Stored stories among the first `k` of the stream (ids chaos-00000 … in order)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM news_items WHERE event_id >= 'chaos-' AND event_id < :bound"),
                {"bound": f"chaos-{k:05d}"},
            ).scalar_one()
        )


def settle_diagnosis(
    engine: Engine, n_valid: int, svc: Services, bootstrap: str, group: str, topics: PipelineTopics
) -> str:
    """What a stalled run looks like: how many stories are stored, the first missing ids,
    the group's committed offsets and the tail of every worker's log."""
    with engine.connect() as conn:
        stored = {
            r[0]
            for r in conn.execute(
                text("SELECT event_id FROM news_items WHERE event_id >= 'chaos-' AND event_id < :bound"),
                {"bound": f"chaos-{n_valid:05d}"},
            )
        }
    missing = [f"chaos-{i:05d}" for i in range(n_valid) if f"chaos-{i:05d}" not in stored]
    try:
        committed = committed_total(bootstrap, group, topics.raw)
    except Exception as e:  # the diagnosis must not hide the timeout
        committed = f"unreadable: {e}"
    workers = "\n".join(
        f"--- {w.name} (alive={w.alive}, ready={w.ready_count()}):\n{w.log()[-3000:]}" for w in svc.workers
    )
    return (
        f"stored {len(stored)}/{n_valid}; first missing: {missing[:20]}; "
        f"committed on {topics.raw}: {committed}\n{workers}"
    )


def table_counts(engine: Engine) -> dict[str, Any]:
    """Rows, and rows beyond one per key (duplicates), of the pipeline's and the alerts' tables."""
    queries = {
        "news_items": "SELECT count(*), count(*) - count(DISTINCT event_id) FROM news_items",
        "predictions": (
            "SELECT count(*), count(*) - count(DISTINCT (event_id, model_version)) FROM predictions"
        ),
        "news_tickers": "SELECT count(*), count(*) - count(DISTINCT (event_id, ticker)) FROM news_tickers",
        "alerts": "SELECT count(*), count(*) - count(DISTINCT alert_key) FROM alerts",
        "alert_outbox": "SELECT count(*), count(*) - count(DISTINCT dedupe_key) FROM alert_outbox",
        "deliveries": "SELECT count(*), count(*) - count(DISTINCT idempotency_key) FROM deliveries",
    }
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for table, sql in queries.items():
            rows, dups = conn.execute(text(sql)).one()
            out[table] = {"rows": int(rows), "duplicates": int(dups)}
    return out


def alert_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT scope, key, severity, status, opened_at, alert_key FROM alerts ORDER BY id")
        ).mappings()
        return [{**r, "opened_at": r["opened_at"].isoformat()} for r in rows]


def delivery_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        deliveries = [
            dict(r)
            for r in conn.execute(
                text("SELECT id, idempotency_key, status, attempts, last_error FROM deliveries ORDER BY id")
            ).mappings()
        ]
        for d in deliveries:
            d["attempt_log"] = [
                dict(a)
                for a in conn.execute(
                    text(
                        "SELECT attempt, ok, status_code, error FROM delivery_attempts "
                        "WHERE delivery_id = :id ORDER BY attempt"
                    ),
                    {"id": d["id"]},
                ).mappings()
            ]
    return deliveries


# --------------------------------------------------------------------------- the run


_MARKER = re.compile(rb"poison-\d{4}-[a-z_0-9]+")


def dead_letters(bootstrap: str, topic: str, expected_markers: set[str], timeout: float) -> dict[str, Any]:
    """Read the DLQ: by error type, by poison marker (from the key, or the value's start)."""
    records = consume(
        bootstrap,
        topic,
        until=lambda recs: {_marker(r) for r in recs} >= expected_markers,
        timeout=timeout,
    )
    markers = Counter(_marker(r) for r in records)
    by_type = Counter(dict(r.headers).get("error-type", b"?").decode() for r in records)
    mismatched = []
    for r in records:
        m = _marker(r)
        kind = m.split("-", 2)[2] if m and m.count("-") >= 2 else None
        got = dict(r.headers).get("error-type", b"?").decode()
        if kind is None or EXPECTED_ERROR_TYPE.get(kind) != got:
            mismatched.append({"marker": m, "error_type": got})
    return {
        "messages": len(records),
        "distinct_poison": len([m for m in markers if m in expected_markers]),
        "unexpected": sorted(m or "?" for m in markers if m not in expected_markers),
        "redelivered_duplicates": sum(n - 1 for n in markers.values()),
        "by_error_type": dict(sorted(by_type.items())),
        "wrong_error_type": mismatched[:10],
        "missing": sorted(expected_markers - set(markers))[:20],
    }


def _marker(record: Any) -> str:
    for raw in (record.key, (record.value or b"")[:200]):
        if raw:
            found = _MARKER.search(raw)
            if found:
                return found.group(0).decode()
    return ""


def wait_until(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    services: Services | None = None,
    step: float = 0.5,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if services is not None:
            services.supervise()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(step)


def run_chaos(
    config: ChaosConfig,
    *,
    model_dir: Path,
    database_url: str,
    workdir: Path,
    design: Design,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One chaos run on an empty database at `database_url`; returns the report. Raises
    only if the run could not be carried out; the targets are judged by the caller."""
    rng = random.Random(config.seed)
    t0 = time.monotonic()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:10]
    topics = PipelineTopics(
        raw=f"news.raw-{suffix}", scored=f"news.scored-{suffix}", dlq=f"news.dlq-{suffix}"
    )
    group = f"finsent-scorer-chaos-{suffix}"
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {**asdict(config), "plan": list(config.plan)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": load_average()},
        "model": str(model_dir),
    }
    n_valid = len(design.stories)
    n_poison = len(design.poison)
    markers = {p.marker for p in design.poison.values()}
    faults: list[Fault] = []

    with ExitStack() as stack:
        engine = stack.enter_context(migrated_engine(database_url))
        broker = EmbeddedBroker(log_dir=workdir / "broker", start_timeout=30)
        broker.start()
        stack.callback(lambda: broker.stop())
        db = make_url(database_url)
        proxy = stack.enter_context(TcpProxy(db.host or "127.0.0.1", db.port or 5432))
        via_proxy = db.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        receiver = stack.enter_context(Receiver().serve())
        env = {
            **worker_env(
                bootstrap=broker.bootstrap,
                database_url=via_proxy,
                model_dir=model_dir,
                topics=topics,
                group=group,
                home=workdir / "home",
            ),
            "FINSENT_COMPILE": "false",
            "FINSENT_PARALLEL_PASSES": "1",
            "FINSENT_TOPIC_ALERTS": f"alerts-{suffix}",
            "FINSENT_TOPIC_MODEL_EVENTS": f"model.events-{suffix}",
            "FINSENT_TOPIC_PARTITIONS": str(PARTITIONS),
            "FINSENT_ALERTER_GROUP": f"finsent-alerter-chaos-{suffix}",
            "FINSENT_ALERTER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_S),
            "FINSENT_ALERTER_TICK_SECONDS": "0.5",
            "FINSENT_ALERTER_PARTITION_IDLE_SECONDS": "2",
            "FINSENT_ALERTER_METRICS_PORT": "0",
            "FINSENT_DISPATCHER_METRICS_PORT": "0",
            "FINSENT_DISPATCHER_POLL_SECONDS": "0.5",
            "FINSENT_DELIVERY_TIMEOUT_SECONDS": str(config.delivery_timeout_s),
            "FINSENT_DELIVERY_BACKOFF_INITIAL_SECONDS": "1",
            "FINSENT_OUTBOUND_ALLOW": "127.0.0.1",
            "CHAOS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }

        def cli(*args: str, env_: dict[str, str] | None = None) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "services", *args],
                cwd=ROOT,
                env=env_ or env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"finsent {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}"
                )
            return done.stdout

        cli("init")
        cli(
            "subscriptions",
            "add",
            "--name",
            "chaos-desk",
            "--channel",
            "webhook",
            "--target",
            receiver.url,
            "--secret-ref",
            "env:CHAOS_WEBHOOK_SECRET",
        )

        svc = Services(env, logs, topics, t0)
        stack.callback(svc.stop_all)
        receiver.on_kill = lambda: (
            svc.dispatcher and (svc._intended.add(svc.dispatcher.proc.pid), svc.dispatcher.proc.kill())
        )
        first = svc.start_worker()
        svc.start_alerter()
        svc.start_dispatcher()
        first.wait_ready()
        assert svc.alerter is not None
        svc.alerter.wait_ready(timeout=120)
        log(
            f"[{svc.now():6.1f}s] worker, alerter and dispatcher ready; "
            f"streaming {n_valid} + {n_poison} poison"
        )

        gap_mean = sum(config.gap_s) / 2
        planned_s = len(config.plan) * gap_mean + config.db_cut_s + 10
        rate = n_valid / planned_s
        producer = StreamProducer(broker.bootstrap, topics.raw, design, rate).start()
        stream_start = svc.now()

        recovery_stop = threading.Event()

        def watch_recovery() -> None:
            while not recovery_stop.is_set():
                for f in faults:
                    if f.recovered_s is None and f.target is not None and f.ended_s is not None:
                        try:
                            if stored_below(engine, f.target) >= f.target:
                                f.recovered_s = svc.now() - f.ended_s
                        except Exception:
                            pass
                recovery_stop.wait(0.5)

        watcher = threading.Thread(target=watch_recovery, daemon=True)
        watcher.start()

        def fault(kind: str, **detail: Any) -> Fault:
            f = Fault(kind, svc.now(), detail)
            faults.append(f)
            return f

        def end(f: Fault) -> None:
            f.ended_s = svc.now()
            f.target = producer.sent_valid

        terms: list[threading.Thread] = []
        for step in config.plan:
            gap = rng.uniform(*config.gap_s)
            wait_start = time.monotonic()
            while time.monotonic() - wait_start < gap:
                svc.supervise()
                time.sleep(0.25)
            live = svc.live_workers()
            if step == "scale_up":
                f = fault("scale_up", workers_before=len(live))
                svc.start_worker()
                end(f)
            elif step in ("sigkill", "sigterm"):
                if step == "sigterm":
                    svc.wait_group_formed()
                victim = svc.victim(rng)
                f = fault(step, worker=victim.name, workers=len(svc.live_workers()))
                if step == "sigkill":
                    svc.sigkill(victim)
                else:
                    terms.append(svc.sigterm(victim))
                svc.start_worker()  # replaced at once, as an orchestrator would
                end(f)
            elif step == "scale_down":
                victims = live[:-1]
                f = fault("scale_down", workers_before=len(live), stopped=[v.name for v in victims])
                for victim in victims:  # one at a time, each once the group has formed
                    svc.wait_group_formed()
                    terms.append(svc.sigterm(victim))
                    wait_until(lambda v=victim: not v.alive, timeout=60, what=f"{victim.name} exited")
                    time.sleep(HEARTBEAT_S)  # the survivors learn of the rebalance by heartbeat
                end(f)
            elif step == "db_cut":
                f = fault("db_cut", seconds=config.db_cut_s)
                proxy.outage()
                f.detail["connections_cut"] = proxy.cut
                wait_start = time.monotonic()
                while time.monotonic() - wait_start < config.db_cut_s:
                    svc.supervise()
                    time.sleep(0.25)
                proxy.restore()
                end(f)
            else:
                raise ValueError(f"unknown plan step {step!r}")
            log(f"[{svc.now():6.1f}s] {step}: {f.detail}; {producer.sent_valid}/{n_valid} sent")

        producer.join(timeout=max(600.0, 3 * planned_s))
        produced_s = (producer.finished_at or time.monotonic()) - t0 - stream_start
        log(
            f"[{svc.now():6.1f}s] stream sent "
            f"({producer.sent_valid} + {producer.sent_poison} poison); waiting"
        )
        final = fault("stream_end")
        end(final)
        try:
            wait_until(
                lambda: stored_below(engine, n_valid) >= n_valid,
                timeout=config.settle_timeout_s,
                what=f"all {n_valid} stories stored",
                services=svc,
            )
        except TimeoutError as e:
            why = settle_diagnosis(engine, n_valid, svc, broker.bootstrap, group, topics)
            raise TimeoutError(f"{e}\n{why}") from e
        wait_until(
            lambda: committed_total(broker.bootstrap, group, topics.raw) >= n_valid + n_poison,
            timeout=120,
            what="all records committed",
            services=svc,
        )
        for t in terms:
            t.join(130)
        log(f"[{svc.now():6.1f}s] all stored and committed")
        report["stream"] = {
            "rate_per_s": round(rate, 1),
            "produce_s": round(produced_s, 1),
            "stored_all_at_s": round(svc.now(), 1),
            "workers_started": svc.started,
        }

        # ---- the alert and its delivery
        wait_until(
            lambda: any(r["action"] == "ok" for r in receiver.requests),
            timeout=300,
            what="the alert delivered to the webhook after the dispatcher's crash",
            services=svc,
        )
        killed_at = receiver.killed_at
        wait_until(
            lambda: any(
                d["status"] == "delivered" and receiver.target in d["idempotency_key"]
                for d in delivery_rows(engine)
            ),
            timeout=120,
            what="the delivery recorded",
            services=svc,
        )
        if killed_at is not None:
            f = Fault("dispatcher_kill_between_send_and_record", killed_at - t0)
            f.ended_s = f.at_s
            f.recovered_s = svc.now() - f.at_s
            faults.append(f)
        deliveries = delivery_rows(engine)
        report["alerts"] = alert_rows(engine)
        report["deliveries"] = {
            "rows": deliveries,
            "webhook_requests": receiver.requests,
            "distinct_keys_received": len([k for k in receiver.accepted_keys if receiver.target in k]),
            "other_keys_received": sorted(k for k in receiver.accepted_keys if receiver.target not in k),
            "accepted_deliveries": sum(1 for _ in receiver.accepted_keys),
            "duplicate_deliveries_dropped_by_key": sum(
                n - 1 for k, n in receiver.accepted_keys.items() if receiver.target in k
            ),
            "dispatcher_starts": svc.dispatcher_starts,
        }
        log(f"[{svc.now():6.1f}s] alert delivered: {len(receiver.requests)} webhook requests")

        report["dlq"] = dead_letters(broker.bootstrap, topics.dlq, markers, timeout=120)
        report["dlq"]["injected"] = n_poison
        report["dlq"]["injected_by_kind"] = dict(Counter(p.kind for p in design.poison.values()))
        report["tables_after_stream"] = table_counts(engine)
        with engine.connect() as conn:
            stored_ids = {r[0] for r in conn.execute(text("SELECT event_id FROM news_items"))}
        expected_ids = {s.event_id for s in design.stories}
        report["items"] = {
            "in": n_valid,
            "poison_in": n_poison,
            "stored": len(stored_ids & expected_ids),
            "lost": len(expected_ids - stored_ids),
            "unexpected_rows": len(stored_ids - expected_ids),
        }

        # ---- full replay from offset 0: a worker in a new consumer group
        before = snapshot(engine)
        alerts_before = table_counts(engine)
        replay_group = f"finsent-scorer-replay-{suffix}"
        replay_start = svc.now()
        replayer = svc.start_worker(group=replay_group)
        wait_until(
            lambda: committed_total(broker.bootstrap, replay_group, topics.raw) >= n_valid + n_poison,
            timeout=config.settle_timeout_s,
            what="the replay consumed everything",
            services=svc,
        )
        time.sleep(3)  # the alerter sees the replay's news.scored too
        after = snapshot(engine)
        replay = {
            "records": n_valid + n_poison,
            "seconds": round(svc.now() - replay_start, 1),
            "rows_changed": {
                t: sum(1 for a, b in zip(before[t], after[t], strict=False) if a != b)
                + abs(len(before[t]) - len(after[t]))
                for t in before
            },
            "tables": table_counts(engine),
        }
        replay["alerts_unchanged"] = (
            replay["tables"]["alerts"] == alerts_before["alerts"]
            and replay["tables"]["alert_outbox"] == alerts_before["alert_outbox"]
        )
        svc._intended.add(replayer.proc.pid)
        replayer.stop()
        report["replay"] = replay
        log(f"[{svc.now():6.1f}s] replay done: {replay['rows_changed']}")

        # ---- the broker restarted
        if config.restart_broker:
            report["broker_restart"] = restart_broker(
                broker, workdir, svc, engine, design, group, topics, cli, log
            )
        report["tables_final"] = table_counts(engine)
        recovery_stop.set()
        watcher.join(5)
        report["faults"] = [f.report() for f in faults]
        report["sigterm_exits"] = svc.sigterm_exits
        report["unexpected_exits"] = svc.unexpected_exits
        report["alerter_starts"] = svc.alerter_starts
        report["duration_s"] = round(svc.now(), 1)
        report["machine"]["load_after"] = load_average()
    return report


def restart_broker(
    broker: EmbeddedBroker,
    workdir: Path,
    svc: Services,
    engine: Engine,
    design: Design,
    group: str,
    topics: PipelineTopics,
    cli: Callable[..., str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Restart the broker on its port; see what survived; recreate the topics and re-send
    the source (the valid stories, as a .jsonl file through `finsent ingest`)."""
    n_valid = len(design.stories)
    before = snapshot(engine)
    port = broker.port
    with admin_client(broker.bootstrap, timeout=10) as admin:
        topics_before = sorted(t for t in admin.list_topics() if not t.startswith("__"))
    broker.stop()
    down_at = time.monotonic()
    restarted = EmbeddedBroker(log_dir=workdir / "broker-2", port=port, start_timeout=30)
    restarted.start()
    broker._process, restarted._process = restarted._process, None  # the run's cleanup stops it
    broker._log, restarted._log = restarted._log, None
    with admin_client(broker.bootstrap, timeout=10) as admin:
        topics_after = sorted(t for t in admin.list_topics() if not t.startswith("__"))
    # A topic listed now may have been auto-created (empty, 1 partition) by a client that
    # reconnected first: what counts is whether news.raw still holds its records.
    raw_left = (
        consume(broker.bootstrap, topics.raw, expected=1, timeout=8, settle=0.5)
        if topics.raw in topics_after
        else []
    )
    partitions_after = _partitions(broker.bootstrap)
    log(
        f"[{svc.now():6.1f}s] broker restarted on port {port}; topics now: {topics_after}; "
        f"news.raw records: {len(raw_left)}"
    )
    cli("init")
    source = workdir / "source.jsonl"
    source.write_text("\n".join(s.payload().decode() for s in design.stories) + "\n", encoding="utf-8")
    ingest_start = time.monotonic()
    cli("ingest", str(source))
    ingest_s = time.monotonic() - ingest_start
    try:
        wait_until(
            lambda: committed_total(broker.bootstrap, group, topics.raw) >= n_valid,
            timeout=600,
            what="the re-sent stream consumed after the broker restart",
            services=svc,
        )
        recovered: float | None = time.monotonic() - down_at
    except TimeoutError:
        recovered = None
    after = snapshot(engine)
    return {
        "port": port,
        "topics_before_restart": topics_before,
        "topics_right_after_restart": topics_after,
        "partitions_right_after_restart": partitions_after,
        "partitions_after_init": _partitions(broker.bootstrap),
        "raw_records_after_restart": len(raw_left),
        "data_kept": bool(raw_left),
        "resent": n_valid,
        "ingest_s": round(ingest_s, 1),
        "recovered_s": None if recovered is None else round(recovered, 1),
        "rows_changed": {
            t: int(before[t] != after[t]) * max(1, abs(len(before[t]) - len(after[t]))) for t in before
        },
        "workers_alive": len(svc.live_workers()),
        "tables": table_counts(engine),
    }


def _partitions(bootstrap: str) -> dict[str, int]:
    with admin_client(bootstrap, timeout=10) as admin:
        described = admin.describe_topics()
    return {t["name"]: len(t["partitions"]) for t in described if not t["name"].startswith("__")}


# --------------------------------------------------------------------------- targets


def judge(report: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets, each true or false."""
    items, dlq = report["items"], report["dlq"]
    tables = report["tables_final"]
    deliveries = report["deliveries"]
    delivered = [d for d in deliveries["rows"] if d["status"] == "delivered"]
    checks = {
        "no_item_lost": items["lost"] == 0 and items["stored"] == items["in"],
        "no_duplicate_rows": all(t["duplicates"] == 0 for t in tables.values()),
        "dlq_is_exactly_the_poison": dlq["distinct_poison"] == dlq["injected"]
        and not dlq["unexpected"]
        and not dlq["wrong_error_type"],
        "one_alert": [(a["scope"], a["key"]) for a in report["alerts"]] == [("ticker", "CHAOS")],
        "one_delivery": len(delivered) == 1
        and deliveries["distinct_keys_received"] == 1
        and not deliveries["other_keys_received"],
        "sigterm_exit_under_30s": any(e["was_ready"] for e in report["sigterm_exits"])
        and all(
            e["exit_code"] == 0 and e["exit_s"] < SIGTERM_LIMIT_S and not e["traceback"]
            for e in report["sigterm_exits"]
            if e["was_ready"]  # one still starting has nothing in flight; it may die of the signal
        ),
        "replay_changed_nothing": not any(report["replay"]["rows_changed"].values())
        and report["replay"]["alerts_unchanged"],
        "every_fault_recovered": all(
            f["recovered_s"] is not None for f in report["faults"] if f["target"] is not None
        ),
    }
    if "broker_restart" in report:
        br = report["broker_restart"]
        checks["broker_restart_resend_changed_nothing"] = br["recovered_s"] is not None and not any(
            br["rows_changed"].values()
        )
    return checks


# --------------------------------------------------------------------------- the table


def _fault_recovery(report: dict[str, Any], kind: str) -> str:
    values = [f["recovered_s"] for f in report["faults"] if f["kind"] == kind]
    return ", ".join("-" if v is None else f"{v:.0f}" for v in values) or "-"


def markdown_table(reports: list[dict[str, Any]]) -> str:
    """docs/reliability.md's results table: one column per run."""
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("items in (valid + poison)", lambda r: f"{r['items']['in']:,} + {r['items']['poison_in']}"),
        ("stored / lost", lambda r: f"{r['items']['stored']:,} / {r['items']['lost']}"),
        (
            "duplicated rows (news_items, predictions, news_tickers)",
            lambda r: ", ".join(
                str(r["tables_final"][t]["duplicates"]) for t in ("news_items", "predictions", "news_tickers")
            ),
        ),
        (
            "DLQ: distinct poison / injected (messages)",
            lambda r: f"{r['dlq']['distinct_poison']} / {r['dlq']['injected']} ({r['dlq']['messages']})",
        ),
        ("DLQ by error type", lambda r: ", ".join(f"{k} {v}" for k, v in r["dlq"]["by_error_type"].items())),
        (
            "alerts (severity, status)",
            lambda r: ", ".join(
                f"{a['scope']} {a['key']} ({a['severity']}, {a['status']})" for a in r["alerts"]
            ),
        ),
        (
            "deliveries recorded / webhook requests",
            lambda r: (
                f"{sum(d['status'] == 'delivered' for d in r['deliveries']['rows'])} / "
                f"{len(r['deliveries']['webhook_requests'])} "
                f"({', '.join(q['action'] for q in r['deliveries']['webhook_requests'])})"
            ),
        ),
        (
            "duplicate deliveries (same Idempotency-Key, dropped by the receiver)",
            lambda r: r["deliveries"]["duplicate_deliveries_dropped_by_key"],
        ),
        ("workers started (1 → 2 → 3 → 1, replacements)", lambda r: r["stream"]["workers_started"]),
        ("recovery after SIGKILL, s", lambda r: _fault_recovery(r, "sigkill")),
        ("recovery after SIGTERM, s", lambda r: _fault_recovery(r, "sigterm")),
        (
            "recovery after scale up / down, s",
            lambda r: f"{_fault_recovery(r, 'scale_up')} / {_fault_recovery(r, 'scale_down')}",
        ),
        ("recovery after the 30 s database cut, s", lambda r: _fault_recovery(r, "db_cut")),
        (
            "recovery after the dispatcher's kill (to the delivery recorded), s",
            lambda r: _fault_recovery(r, "dispatcher_kill_between_send_and_record"),
        ),
        (
            "SIGTERM exit, s (exit code)",
            lambda r: ", ".join(
                f"{e['exit_s']:.1f} ({e['exit_code']})" + ("" if e["was_ready"] else " starting")
                for e in r["sigterm_exits"]
            ),
        ),
        ("replay from offset 0: rows changed", lambda r: sum(r["replay"]["rows_changed"].values())),
        (
            "broker restart: news.raw records kept / recovery s",
            lambda r: (
                "-"
                if "broker_restart" not in r
                else f"{r['broker_restart']['raw_records_after_restart']} / "
                f"{r['broker_restart']['recovered_s']}"
            ),
        ),
        ("unexpected process exits", lambda r: len(r["unexpected_exits"])),
        (
            "run length, s; load average before → after",
            lambda r: (
                f"{r['duration_s']:.0f}; {r['machine']['load_before'][0]} → {r['machine']['load_after'][0]}"
            ),
        ),
        (
            "all targets met",
            lambda r: (
                "yes"
                if all(r["targets"].values())
                else "no: " + ", ".join(k for k, v in r["targets"].items() if not v)
            ),
        ),
    ]
    head = "| | " + " | ".join(f"run {r.get('run', i + 1)}" for i, r in enumerate(reports)) + " |"
    lines = [head, "|---" * (len(reports) + 1) + "|"]
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(str(cell(r)) for r in reports) + " |")
    return "\n".join(lines)


def runs_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The run reports of a result file (`{"runs": [...]}`), or a single run's report."""
    runs: list[dict[str, Any]] = result.get("runs", [result])
    return runs


# --------------------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--first-run", type=int, default=1, help="number of the first run")
    parser.add_argument("--model", type=Path, help="model directory to serve (default: the tiny test model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep models, logs and labels here (default: a temp dir)")
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument(
        "--short", action="store_true", help="the CI test's plan: fewer kills, 5-10 s gaps, 10 s cut"
    )
    parser.add_argument(
        "--table",
        type=Path,
        nargs="+",
        help="print the markdown table of the runs in these result files (results/chaos.json) and exit",
    )
    parser.add_argument("--out", type=Path, default=result_path("chaos"), help="the result file")
    args = parser.parse_args()
    if args.table:
        print(markdown_table([run for p in args.table for run in runs_of(json.loads(p.read_text()))]))
        return
    info = machine()
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: processes, broker and database are cleaned up
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("FINSENT_TORCH_THREADS", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="finsent-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or build_tiny_model(work / "tiny-model")
    labeller = model_labeller(model_dir, work / "labels.json")
    design = make_design(args.items, labeller, seed=args.seed)
    print(
        f"design: {len(design.stories)} stories, {len(design.poison)} poison, seed {design.seed}, "
        f"expected alerts {design.expected_alerts}, notifications {design.expected_notifications}"
    )
    reports: list[dict[str, Any]] = []
    for n in range(args.first_run, args.first_run + args.runs):
        config = ChaosConfig(items=args.items, seed=args.seed + n, restart_broker=not args.no_broker_restart)
        if args.short:
            config = short_config(config)
        with fresh_postgres_database() as url:
            report = run_chaos(
                config, model_dir=model_dir, database_url=url, workdir=work / f"run{n}", design=design
            )
        report["run"] = n
        report["model_kind"] = (
            "given" if args.model else "tiny keyword-trained test model (tests/conftest.py)"
        )
        report["design"] = {
            "seed": design.seed,
            "span_minutes": design.span_minutes,
            **design.notes,
            "expected_alerts": design.expected_alerts,
        }
        report["targets"] = judge(report)
        reports.append(report)
        print(json.dumps(report["targets"], indent=2))
        # after every run, so an interrupted invocation keeps the runs it finished
        write_result("chaos", {"runs": reports}, info, path=args.out)


if __name__ == "__main__":
    main()
