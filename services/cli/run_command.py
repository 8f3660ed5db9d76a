"""`finsent run`: the whole pipeline on one machine, with nothing installed but finsent.

With no FINSENT_KAFKA_BOOTSTRAP it starts the embedded Kafka-protocol broker; with no
FINSENT_DATABASE_URL it uses SQLite under FINSENT_HOME; with no model it bootstraps one from
the seed data (time-boxed by FINSENT_BOOTSTRAP_MINUTES). Then it creates the topics,
migrates the database, starts the scorer worker, the alerter and the dispatcher as child
processes (each logging to FINSENT_HOME/logs/<name>.log) and prints the scored stream and
each alert. `--demo` replays a sample feed of real headlines into it. Ctrl-C stops
everything in order: the feed, the worker (after its batch in flight is stored), the
alerter, the dispatcher, the broker.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.common import broker_errors, guarded_database, quiet_alembic
from services.cli.errors import fail
from services.settings import Settings, get_settings

DEMO_ITEMS = 300
DEMO_RATE = 10.0
STATUS_EVERY_S = 30.0
SERVICES = ("worker", "alerter", "dispatcher", "scheduler")  # started in this order, and stopped in it


def bootstrap_model(model_dir: Path) -> Path:
    """Train the default model from the seed data unless a verified one is already there."""
    from bert_core import TrainConfig, verify_model_dir
    from bert_core.errors import ModelIntegrityError
    from bert_core.recipes import train_model
    from services.cli.common import chosen_encoder

    settings = get_settings()
    if (model_dir / "manifest.json").is_file():
        try:
            verify_model_dir(model_dir)
            return model_dir
        except ModelIntegrityError as exc:
            fail(f"{exc}; delete {model_dir} to retrain it")
    for path in (settings.sentiment_data, settings.topic_data):
        if not path.is_file():
            fail(
                f"seed data {path} not found; set FINSENT_SENTIMENT_DATA / FINSENT_TOPIC_DATA "
                "or FINSENT_MODEL to an existing model directory"
            )
    seeds = {settings.sentiment_data.parent, settings.topic_data.parent}
    where = f"in {seeds.pop()}" if len(seeds) == 1 else f"{settings.sentiment_data}, {settings.topic_data}"
    typer.echo(
        f"no model at {model_dir}: training one from the seed data {where} "
        f"(budget {settings.bootstrap_minutes:g} min on {settings.torch_threads} threads; "
        "`finsent train` makes a better one without the time box)"
    )
    import torch

    torch.set_num_threads(settings.torch_threads)
    train_model(
        {"sentiment": settings.sentiment_data, "topic": settings.topic_data},
        model_dir,
        TrainConfig(
            base_model=chosen_encoder(settings.base_model),
            max_length=settings.max_length,
            seed=settings.seed,
            epochs=settings.bootstrap_epochs,
            max_minutes=settings.bootstrap_minutes,
        ),
        dev_fraction=settings.dev_fraction,
    )
    return model_dir


def _champion_dir(url: str) -> Path:
    """The registry's champion; with none, the bootstrap model (trained if missing), adopted
    as the champion."""
    from datetime import UTC, datetime

    from services.learning.registry import RegistryError, champion, promote, register_model
    from services.storage import make_engine, session_factory

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            row = champion(session)
            if row is not None:
                return Path(row.path)
        model_dir = bootstrap_model(get_settings().default_model_dir)
        now = datetime.now(UTC)
        try:
            with session_factory(engine).begin() as session:
                adopted = register_model(
                    session, model_dir, note="bootstrap model adopted by `finsent run`", now=now
                )
                promote(
                    session, adopted.version, by="finsent run", reason="first champion (bootstrap)", now=now
                )
        except RegistryError as exc:
            fail(f"the registry has no champion and the bootstrap model cannot be adopted: {exc}")
        return model_dir
    finally:
        engine.dispose()


def _summary_line(model_dir: Path) -> str:
    """One line of the model's dev metrics, from its metrics.json (no torch needed)."""
    import json

    try:
        metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no dev metrics recorded"
    parts = []
    for task, report in sorted(metrics.get("dev", {}).items()):
        if isinstance(report, dict) and "accuracy" in report:
            parts.append(f"{task} acc {report['accuracy']:.3f} / macro-F1 {report.get('macro_f1', 0.0):.3f}")
    return "dev: " + "; ".join(parts) if parts else "no dev metrics recorded"


class StreamPrinter:
    """Prints each scored item as one line; counts what it saw (thread-safe)."""

    def __init__(self, headlines: dict[str, str], *, quiet: bool) -> None:
        self._headlines = headlines
        self._quiet = quiet
        self._lock = threading.Lock()
        self.seen: set[str] = set()
        self.first_at: float | None = None
        self._width = max(60, shutil.get_terminal_size((120, 20)).columns)

    def __call__(self, item: dict[str, Any]) -> None:
        event_id = str(item.get("event_id", "?"))
        with self._lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            new = event_id not in self.seen
            self.seen.add(event_id)
        if self._quiet or not new:
            return
        tickers = ",".join(item.get("tickers") or []) or "-"
        text = self._headlines.get(event_id, event_id)
        line = (
            f"{item.get('sentiment', '?'):<7} {float(item.get('sentiment_score', 0.0)):+.2f}  "
            f"{str(item.get('topic', '?'))[:26]:<26}  {tickers[:14]:<14}  {text}"
        )
        typer.echo(line[: self._width - 1])

    def count(self, ids: set[str] | None = None) -> int:
        with self._lock:
            return len(self.seen if ids is None else self.seen & ids)


@contextmanager
def _broker(settings: Settings) -> Iterator[tuple[str, str]]:
    """(bootstrap, description): the configured cluster, or an embedded broker for the block."""
    if settings.kafka_bootstrap is not None:
        yield settings.kafka_bootstrap, f"Kafka at {settings.kafka_bootstrap} (FINSENT_KAFKA_BOOTSTRAP)"
        return
    from services.broker import EmbeddedBroker

    with broker_errors():
        broker = EmbeddedBroker(log_dir=settings.logs_dir).start()
    try:
        yield broker.bootstrap, f"embedded broker at {broker.bootstrap} (in memory; log {broker.log_path})"
    finally:
        broker.stop()


def _demo_feed(settings: Settings, items: int) -> dict[str, dict[str, Any]]:
    """The demo items by event id (distinct, all valid)."""
    from bert_core.data import read_texts
    from services.embedded import demo_items

    path = settings.sentiment_data
    if not path.is_file():
        fail(f"--demo replays headlines from {path}, which does not exist; set FINSENT_SENTIMENT_DATA")
    try:
        candidates = demo_items(read_texts(path), count=items, seed=settings.seed)
    except ValueError as exc:
        fail(f"--demo: {path}: {exc}")
    return {encoded.event_id: item for item, encoded in _encodable(candidates)}


def _encodable(items: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
    """Items the scorer will accept, with their encoding (the rest would never be scored)."""
    from services.ingest.encoding import encode_news
    from services.schemas import InvalidMessage

    for item in items:
        try:
            yield item, encode_news(item)
        except InvalidMessage:
            continue


def _send_demo(
    bootstrap: str,
    topic: str,
    feed: list[dict[str, Any]],
    rate: float,
    stop: threading.Event,
    errors: list[str],
) -> None:
    """Replay the demo feed at `rate` items/s until done or `stop` is set (runs in a thread)."""
    from services.broker import BrokerError
    from services.ingest.file_source import FileRecord
    from services.ingest.producer import NewsProducer
    from services.ingest.replay import replay

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise InterruptedError

    try:
        with NewsProducer(bootstrap, topic=topic, linger_ms=get_settings().ingest_linger_ms) as producer:
            records = (FileRecord(line=i + 1, item=item) for i, item in enumerate(feed))
            replay(records, producer, rate=rate, sleep=sleep)
    except InterruptedError:
        pass
    except BrokerError as exc:
        errors.append(str(exc))


def run(
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model directory (env FINSENT_MODEL; default: the bootstrap model, trained if missing)"
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Replay a sample feed of real headlines into the pipeline")
    ] = False,
    demo_items: Annotated[int, typer.Option(help="Headlines in the demo feed", min=1)] = DEMO_ITEMS,
    demo_rate: Annotated[float, typer.Option(help="Demo items per second", min=0.01)] = DEMO_RATE,
    exit_when_done: Annotated[
        bool, typer.Option(help="With --demo: stop once every demo item is scored and stored")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Do not print each scored item")] = False,
) -> None:
    """Run the pipeline: broker, database, model, worker, alerter, dispatcher, scheduler; Ctrl-C stops."""
    if exit_when_done and not demo:
        fail("--exit-when-done needs --demo (without a demo feed the pipeline runs until Ctrl-C)")
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    pinned = model or settings.model
    if pinned is not None and not (pinned / "manifest.json").is_file():
        fail(f"{pinned} is not a finsent model directory (no manifest.json)")
    feed = _demo_feed(settings, demo_items) if demo else {}

    quiet_alembic()
    from services.storage import upgrade_database

    shown_db, _ = guarded_database(upgrade_database)
    # Pinned: the worker serves that directory. Otherwise it follows the registry's champion
    # (adopting the bootstrap model as the first one), so a retraining promoted by the
    # scheduler or `finsent retrain --now` reaches it without a restart.
    model_dir = bootstrap_model(pinned) if pinned is not None else guarded_database(_champion_dir)[1]
    started = time.monotonic()
    with ExitStack() as stack:
        bootstrap, broker_text = stack.enter_context(_broker(settings))
        from services.broker import ensure_topics, pipeline_topics

        with broker_errors():
            ensure_topics(bootstrap, pipeline_topics(settings), timeout=settings.kafka_timeout_seconds)
        from services.embedded import ScoredTail, ServiceProcess

        env = {
            "FINSENT_KAFKA_BOOTSTRAP": bootstrap,
            "FINSENT_DATABASE_URL": settings.database_url,
            "FINSENT_HOME": str(settings.home),
        }
        if demo and "compile" not in settings.model_fields_set:
            # A demo feeds 10 headlines/s: compiling the pass (up to a minute) would only delay
            # the first scored one. FINSENT_COMPILE, when set, is honoured.
            env["FINSENT_COMPILE"] = "false"
        services = [
            ServiceProcess(
                name,
                env=env
                | ({"FINSENT_MODEL": str(model_dir.resolve())} if name == "worker" and pinned else {}),
                log_path=settings.logs_dir / f"{name}.log",
            )
            for name in SERVICES
        ]
        stack.callback(_stop_services, services)
        for service in services:
            service.start()
        headlines = {event_id: str(item["headline"]) for event_id, item in feed.items()}
        printer = StreamPrinter(headlines, quiet=quiet)
        tail = ScoredTail(
            bootstrap,
            settings.topic_news_scored,
            on_item=printer,
            from_beginning=settings.kafka_bootstrap is None,
        )
        alert_tail = ScoredTail(
            bootstrap,
            settings.topic_alerts,
            on_item=_print_alert,
            from_beginning=settings.kafka_bootstrap is None,
        )
        tails = [tail, alert_tail]
        for each in tails:
            try:
                each.start()
            except Exception as exc:
                fail(f"cannot follow {each.topic} on {bootstrap}: {exc}")
            stack.callback(each.stop)

        typer.echo(f"model     {model_dir} ({_summary_line(model_dir)})")
        typer.echo(f"broker    {broker_text}")
        typer.echo(f"database  {shown_db}")
        for service in services:
            typer.echo(
                f"{service.command:<9} pid {service.pid}, log {service.log_path}; "
                f"{_metrics_text(settings, service.command)}"
            )
        typer.echo(
            f"send news FINSENT_KAFKA_BOOTSTRAP={bootstrap} finsent ingest FILE "
            f"(or POST to `finsent serve-http`)"
        )
        stop_demo = threading.Event()
        demo_errors: list[str] = []
        sender: threading.Thread | None = None
        if feed:
            typer.echo(f"demo      replaying {len(feed)} headlines at {demo_rate:g}/s")
            sender = threading.Thread(
                target=_send_demo,
                args=(
                    bootstrap,
                    settings.topic_news_raw,
                    list(feed.values()),
                    demo_rate,
                    stop_demo,
                    demo_errors,
                ),
                name="demo-feed",
                daemon=True,
            )
            sender.start()
            stack.callback(sender.join, timeout=10)
            stack.callback(stop_demo.set)  # runs first: callbacks unwind in reverse
        typer.echo("Ctrl-C stops. Scored stream (sentiment, score, topic, tickers, headline):")
        _supervise(services, printer, tails, set(headlines), sender, demo_errors, exit_when_done, started)
    typer.echo(f"stopped; results are in {shown_db}")


def _metrics_text(settings: Settings, command: str) -> str:
    """Where a service serves /metrics and /health."""
    host, port = {
        "worker": (settings.scorer_metrics_host, settings.scorer_metrics_port),
        "alerter": (settings.alerter_metrics_host, settings.alerter_metrics_port),
        "dispatcher": (settings.dispatcher_metrics_host, settings.dispatcher_metrics_port),
        "scheduler": (settings.scheduler_metrics_host, settings.scheduler_metrics_port),
    }[command]
    if not port:
        return "its log names its metrics port"
    return f"metrics http://{host}:{port}/metrics, health http://{host}:{port}/health"


def _print_alert(message: dict[str, Any]) -> None:
    """One line per message on the alerts topic (open, escalate, renotify, resolve)."""
    typer.echo(
        f"ALERT   {message.get('kind', '?')} {message.get('severity', '?')}: "
        f"{message.get('scope', '?')} {message.get('key', '?')}"
    )


def _stop_services(services: list[Any]) -> None:
    """Stop each in turn (SIGTERM, then kill after a timeout); an unclean exit is reported."""
    for service in services:
        already_exited = service.exit_code() is not None  # reported by the supervisor
        code = service.stop()
        if code not in (None, 0) and not already_exited:
            print(
                f"finsent: warning: `finsent {service.command}` exited with code {code} when stopped; "
                f"see {service.log_path}",
                file=sys.stderr,
                flush=True,
            )


def _supervise(
    services: list[Any],
    printer: StreamPrinter,
    tails: list[Any],
    demo_ids: set[str],
    sender: threading.Thread | None,
    demo_errors: list[str],
    exit_when_done: bool,
    started: float,
) -> None:
    """Watch the parts until Ctrl-C, a failure, or (with --exit-when-done) the end of the demo."""
    next_status = time.monotonic() + STATUS_EVERY_S
    reported_first = False
    try:
        while True:
            for service in services:
                code = service.exit_code()
                if code is not None:
                    fail(
                        f"`finsent {service.command}` exited unexpectedly with code {code}; "
                        f"its log ({service.log_path}) ends:\n{service.log_tail()}"
                    )
            if demo_errors:
                fail(f"the demo feed stopped: {demo_errors[0]}")
            for tail in tails:
                if tail.error is not None:
                    fail(f"lost the stream of {tail.topic}: {tail.error}")
            if not reported_first and printer.first_at is not None:
                reported_first = True
                print(
                    f"  (first item scored {printer.first_at - started:.1f} s after start)",
                    file=sys.stderr,
                    flush=True,
                )
            demo_sent = sender is not None and not sender.is_alive()
            if exit_when_done and demo_sent and printer.count(demo_ids) >= len(demo_ids):
                typer.echo(f"demo done: {len(demo_ids)} items scored and stored")
                return
            if time.monotonic() >= next_status:
                next_status += STATUS_EVERY_S
                print(f"  ({printer.count()} items scored so far)", file=sys.stderr, flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        typer.echo(
            "\nstopping: the worker, the alerter and the dispatcher finish what they have in flight, "
            "then the broker stops"
        )
