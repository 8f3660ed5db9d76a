"""`finsent run`: the whole pipeline on one machine, with nothing installed but finsent.

With no FINSENT_KAFKA_BOOTSTRAP it starts the embedded Kafka-protocol broker; with no
FINSENT_DATABASE_URL it uses SQLite under FINSENT_HOME; with no model it bootstraps one from
the seed data (time-boxed by FINSENT_BOOTSTRAP_MINUTES). Then it creates the topics,
migrates the database, starts the scorer worker, the alerter and the dispatcher as child
processes (each logging to FINSENT_HOME/logs/<name>.log) and prints the scored stream and
each alert. `--demo` replays real headlines by event time so that the alerter raises an alert
and the dispatcher delivers it (services/embedded/demo_feed.py has the layout and why; the
database, read by `DemoWatch`, tells when the alert is delivered or certainly absent). Ctrl-C stops
everything in order: the feed, the worker (after its batch in flight is stored), the
alerter, the dispatcher, the broker.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from services.cli.common import (
    BootstrapServerOption,
    DatabaseUrlOption,
    broker_errors,
    guarded_database,
    printable,
    quiet_alembic,
)
from services.cli.errors import fail
from services.embedded.demo_feed import MIN_ITEMS as DEMO_MIN_ITEMS
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.embedded import DemoFeed

T = TypeVar("T")

DEMO_ITEMS = 300
DEMO_RATE = 10.0
DEMO_ALERT_WAIT_S = 180.0  # after the last demo item is scored
DEMO_POLL_S = 1.0
STATUS_EVERY_S = 30.0
SERVICES = ("worker", "alerter", "dispatcher", "scheduler")  # started in this order, and stopped in it


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
        self.labels: dict[str, str] = {}  # event id -> sentiment
        self.first_at: float | None = None
        self._width = max(60, shutil.get_terminal_size((120, 20)).columns)

    def __call__(self, item: dict[str, Any]) -> None:
        event_id = str(item.get("event_id", "?"))
        with self._lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            new = event_id not in self.seen
            self.seen.add(event_id)
            self.labels[event_id] = str(item.get("sentiment", "?"))
        if self._quiet or not new:
            return
        tickers = ",".join(printable(t) for t in item.get("tickers") or []) or "-"
        text = printable(self._headlines.get(event_id, event_id))
        topic = printable(item.get("topic", "?"))
        line = (
            f"{printable(item.get('sentiment', '?')):<7} {float(item.get('sentiment_score', 0.0)):+.2f}  "
            f"{topic[:26]:<26}  {tickers[:14]:<14}  {text}"
        )
        typer.echo(line[: self._width - 1])

    def count(self, ids: set[str] | None = None) -> int:
        with self._lock:
            return len(self.seen if ids is None else self.seen & ids)

    def count_labelled(self, ids: set[str], sentiment: str) -> int:
        with self._lock:
            return sum(1 for i in ids if self.labels.get(i) == sentiment)


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


@dataclass
class DemoRun:
    """The demo feed with what the supervisor watches for: the burst's stories, the demo
    subscription, the dashboard login."""

    feed: DemoFeed
    items: dict[str, dict[str, Any]]  # by event id, in event-time order
    burst_ids: set[str]
    subscription_id: int
    subscription_enabled: bool
    password: str
    earlier: bool  # the anchor of an earlier run of this demo on this database
    bucket: timedelta

    @property
    def judged_by(self) -> datetime:
        """Once the alerter has judged up to here, the windows that close with the burst (where
        it is the most unusual) are judged."""
        return self.feed.burst_end + self.bucket


def _demo_run(settings: Settings, items: int, model_dir: Path) -> DemoRun:
    """Lay out the demo feed (anchored as an earlier run on this database was, if any), and
    set up its subscription and dashboard login."""
    from bert_core.data import read_labelled
    from bert_core.errors import DataError
    from bert_core.labels import SENTIMENT_LABELS, LabelSet
    from services.alerting.config import alerter_config
    from services.embedded import anchor_for, anchor_from_burst_start, demo_feed, demo_timeline
    from services.schemas.tickers import extract_tickers

    path = settings.sentiment_data
    if not path.is_file():
        fail(f"--demo replays headlines from {path}, which does not exist; set FINSENT_SENTIMENT_DATA")
    try:
        data = read_labelled(path, LabelSet("sentiment", SENTIMENT_LABELS))
        config = alerter_config(settings)
    except (DataError, ValueError) as exc:
        fail(f"--demo: {exc}")
    bearish = SENTIMENT_LABELS.index("bearish")
    rows = [(text, label == bearish) for text, label in zip(data.texts, data.labels, strict=True)]
    timeline = demo_timeline(
        warmup=config.detector.warmup, window=config.detector.window, lateness=config.lateness
    )

    model_bearish = _ModelBearish(settings, model_dir)

    def lay_out(anchor: datetime) -> DemoFeed:
        try:
            return demo_feed(
                rows,
                count=items,
                seed=settings.seed,
                anchor=anchor,
                timeline=timeline,
                tickers_of=extract_tickers,
                model_bearish=model_bearish,
            )
        except ValueError as exc:
            fail(f"--demo: {path}: {exc}")

    feed = lay_out(anchor_for(datetime.now(UTC)))
    # A re-run keeps the first run's times: the same stories at the same event times, so the
    # scorer stores nothing twice and the alerter judges nothing anew (same alert identity).
    first_burst = next((enc.event_id for _, enc in _encodable(list(feed.burst[:1]))), None)
    stored = _in_demo_session(lambda session: _stored_time(session, first_burst))
    earlier = stored is not None
    if stored is not None and stored != feed.burst_start:
        feed = lay_out(anchor_from_burst_start(stored, timeline))
    model_bearish.close()
    if model_bearish.asked:
        typer.echo(
            f"demo      {model_bearish.asked} candidate headlines scored in {model_bearish.seconds:.1f} s: "
            "it replays those the model labels as the data does (bearish in the burst, not in the calm)"
        )
    by_id = {enc.event_id: item for item, enc in _encodable(list(feed.items))}
    burst_ids = {enc.event_id for _, enc in _encodable(list(feed.burst))}
    sub_id, enabled = _in_demo_session(_ensure_subscription)
    from dashboards.users_file import UsersFileError
    from services.embedded.demo_setup import ensure_demo_user

    try:
        password = ensure_demo_user(settings.dashboard_users_file, settings.home)
    except (UsersFileError, OSError) as exc:
        fail(f"--demo: cannot set up the demo dashboard login: {exc}")
    return DemoRun(feed, by_id, burst_ids, sub_id, enabled, password, earlier, config.detector.bucket_width)


class _ModelBearish:
    """Which headlines the serving model labels bearish, remembered (the demo is laid out
    twice when it recovers an earlier run's anchor). The model is loaded on first use, as
    the worker loads it, and let go after the layout."""

    def __init__(self, settings: Settings, model_dir: Path) -> None:
        self._settings = settings
        self._model_dir = model_dir
        self._predictor: Any = None
        self._known: dict[str, bool] = {}
        self.seconds = 0.0

    def __call__(self, texts: Sequence[str]) -> list[bool]:
        started = time.monotonic()
        missing = [t for t in texts if t not in self._known]
        if missing:
            if self._predictor is None:
                from bert_core import Predictor
                from bert_core.errors import BertCoreError

                try:
                    self._predictor = Predictor.load(
                        self._model_dir,
                        precision=self._settings.precision,
                        threads=self._settings.torch_threads,
                    )
                except (BertCoreError, OSError) as exc:
                    fail(f"--demo: cannot load the model {self._model_dir}: {exc}")
            for text, prediction in zip(missing, self._predictor.predict(missing), strict=True):
                self._known[text] = prediction.sentiment == "bearish"
        self.seconds += time.monotonic() - started
        return [self._known[t] for t in texts]

    @property
    def asked(self) -> int:
        return len(self._known)

    def close(self) -> None:
        self._predictor = None


def _stored_time(session: Any, event_id: str | None) -> datetime | None:
    from services.embedded.demo_watch import stored_published_at

    return None if event_id is None else stored_published_at(session, event_id)


def _ensure_subscription(session: Any) -> tuple[int, bool]:
    from services.embedded.demo_setup import ensure_demo_subscription

    return ensure_demo_subscription(session, now=datetime.now(UTC))


def _in_demo_session(action: Callable[[Any], T]) -> T:
    """`action(session)` in one committed transaction on the configured database."""
    from services.storage import make_engine, session_factory

    def run(url: str) -> T:
        engine = make_engine(url)
        try:
            with session_factory(engine).begin() as session:
                return action(session)
        finally:
            engine.dispose()

    return guarded_database(run)[1]


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
        bool,
        typer.Option(help="Replay real headlines by event time: calm news, then a bearish burst that alerts"),
    ] = False,
    demo_items: Annotated[
        int, typer.Option(help=f"Headlines in the demo feed (at least {DEMO_MIN_ITEMS})", min=DEMO_MIN_ITEMS)
    ] = DEMO_ITEMS,
    demo_rate: Annotated[float, typer.Option(help="Demo items per second", min=0.01)] = DEMO_RATE,
    exit_when_done: Annotated[
        bool,
        typer.Option(
            help="With --demo: stop once every demo item is scored and stored and the demo's alert is "
            "delivered to the demo subscription (exit 0); exit 1 with one line if the alerter judged "
            f"the burst without raising it, or nothing was delivered within {DEMO_ALERT_WAIT_S:g} s"
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Do not print each scored item")] = False,
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Run the pipeline: broker, database, model, worker, alerter, dispatcher, scheduler; Ctrl-C stops.

    --demo replays real labelled headlines by event time: about 90 minutes of calm news, then
    a burst of bearish headlines about one ticker (or the whole market), then calm again,
    compressed into seconds; it picks headlines the serving model labels as the data does.
    The alerter raises an alert on the burst (printed as ALERT with its evidence) and the
    dispatcher delivers it to the demo subscription `finsent-demo` (a log channel: the
    dispatcher's log). At the end it prints how to open the dashboard with the demo login.
    A re-run on the same FINSENT_HOME replays the same stories at the same times: nothing
    new is stored or raised, and the earlier alert is shown again.
    """
    if exit_when_done and not demo:
        fail("--exit-when-done needs --demo (without a demo feed the pipeline runs until Ctrl-C)")
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    pinned = model or settings.model
    from services.learning.serving import ServingError, check_pinned, run_model

    try:
        check_pinned(pinned)
    except ServingError as exc:
        fail(str(exc))

    quiet_alembic()
    from services.storage import upgrade_database

    shown_db, _ = guarded_database(upgrade_database)
    # Pinned: the worker serves that directory. Otherwise it follows the registry's champion
    # (adopting the bootstrap model as the first one), so a retraining promoted by the
    # scheduler or `finsent retrain --now` reaches it without a restart.
    try:
        model_dir = run_model(
            settings,
            pinned=pinned,
            on_database=_on_database,
            announce=typer.echo,
            warn=lambda line: typer.echo(line, err=True),
        )
    except ServingError as exc:
        fail(str(exc))
    demo_run = _demo_run(settings, demo_items, model_dir) if demo else None
    feed = demo_run.items if demo_run is not None else {}
    started = time.monotonic()
    started_at = datetime.now(UTC)
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
        if demo_run is not None:
            _describe_demo(demo_run, demo_rate)
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
        watch = DemoWatch(demo_run, printer, settings, started_at) if demo_run is not None else None
        _supervise(services, printer, tails, watch, sender, demo_errors, exit_when_done, started)
    typer.echo(f"stopped; results are in {shown_db}")


def _on_database(action: Callable[[str], T]) -> T:
    """`action(url)` on the configured database; its errors end the command in one line."""
    return guarded_database(action)[1]


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


def _print_alert(message: dict[str, Any], *, note: str = "") -> None:
    """One line per message on the alerts topic (open, escalate, renotify, resolve), with the
    evidence: the window (event time), its bearish count against the expected, the p-value."""
    typer.echo(printable(alert_line(message, note=note)))  # stream text: escape control characters


def alert_line(message: dict[str, Any], *, note: str = "") -> str:
    counts = message.get("counts") or {}
    baseline = message.get("baseline") or {}
    window = message.get("window") or {}
    head = f"ALERT   {note}{message.get('kind', '?')} {message.get('severity', '?')}: {scope_text(message)}"
    try:
        start = datetime.fromisoformat(str(window["start"])).astimezone(UTC)
        end = datetime.fromisoformat(str(window["end"])).astimezone(UTC)
        expected = float(baseline["expected_bearish"])
        p_value = float(message["p_value"])
        bearish, total = int(counts["bearish"]), int(counts["total"])
    except (KeyError, TypeError, ValueError):
        return head
    return (
        f"{head}: {bearish} of {total} stories bearish in {start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC "
        f"(expected {expected:.1f}), p = {p_value:.1e}"
    )


def scope_text(message: dict[str, Any]) -> str:
    """`market`, `topic Energy / Oil`, `ticker BA`."""
    scope = str(message.get("scope", "?"))
    return scope if scope == "market" else f"{scope} {message.get('key', '?')}"


def _describe_demo(run: DemoRun, rate: float) -> None:
    feed = run.feed
    about = f"${feed.focus}" if feed.focus else "the market"
    n_calm = len(run.items) - len(run.burst_ids)
    typer.echo(
        f"demo      replaying {len(run.items)} real headlines at {rate:g}/s by event time: "
        f"{n_calm} calm ones from {feed.history_start:%H:%M} to {feed.anchor:%H:%M} UTC, and a burst of "
        f"{len(run.burst_ids)} bearish ones about {about} at {feed.burst_start:%H:%M}-{feed.burst_end:%H:%M}"
    )
    if run.earlier:
        typer.echo(
            f"demo      this database holds an earlier run of the demo ({feed.anchor:%Y-%m-%d %H:%M} UTC): "
            "the same stories at the same times, so nothing new is stored or raised "
            "(a fresh FINSENT_HOME replays it anew)"
        )
    if not run.subscription_enabled:
        typer.echo("demo      note: the subscription finsent-demo is paused; its alert will not be delivered")


class DemoWatch:
    """Follows the demo's outcome in the database: its alerts and their delivery to the demo
    subscription, and how far the alerter has judged (to tell "not yet" from "not at all")."""

    def __init__(
        self, run: DemoRun, printer: StreamPrinter, settings: Settings, started_at: datetime
    ) -> None:
        self.run = run
        self._printer = printer
        self._settings = settings
        self._started_at = started_at
        self._next_poll = 0.0
        self._shown: set[str] = set()
        self.delivered = False
        self.judged_without_alert = False
        self._hint_shown = False
        self._absence_noted = False

    def poll(self) -> None:
        """At most once per DEMO_POLL_S; a busy database (SQLite locked) is asked again later."""
        now = time.monotonic()
        if now < self._next_poll or self.delivered:
            return
        self._next_poll = now + DEMO_POLL_S
        from sqlalchemy.exc import OperationalError

        from services.embedded.demo_watch import demo_alerts, judged_until

        def look(session: Any) -> tuple[datetime | None, list[Any]]:
            # the checkpoint first: alerts are committed with it, so none judged is missed
            judged = judged_until(session)
            found = demo_alerts(
                session,
                burst_ids=self.run.burst_ids,
                since=self.run.feed.history_start,
                subscription_id=self.run.subscription_id,
            )
            return judged, found

        try:
            judged, found = _in_demo_session(look)
        except OperationalError:
            return
        for alert in found:
            if alert.alert_key not in self._shown:
                self._shown.add(alert.alert_key)
                if alert.created_at < self._started_at:  # this run's are printed from the topic
                    _print_alert(alert.message, note="(raised by an earlier run of this demo) ")
        self.judged_without_alert = not found and judged is not None and judged >= self.run.judged_by
        delivered = [a for a in found if a.delivered_at is not None]
        if delivered:
            self.delivered = True
            typer.echo(
                f"delivered the demo alert ({scope_text(delivered[0].message)}) to the subscription "
                f"finsent-demo (log channel; see {self._settings.logs_dir / 'dispatcher.log'})"
            )
            self.print_dashboard_hint()

    def bearish_in_burst(self) -> int:
        return self._printer.count_labelled(self.run.burst_ids, "bearish")

    def note_absence(self, waited: float) -> None:
        """Without --exit-when-done: say once that the alert did not come, and keep serving."""
        if self._absence_noted or not (self.judged_without_alert or waited >= DEMO_ALERT_WAIT_S):
            return
        self._absence_noted = True
        typer.echo(
            f"demo      no demo alert: the model labelled {self.bearish_in_burst()} of the "
            f"{len(self.run.burst_ids)} burst headlines bearish (a better model: `finsent train`)"
        )
        self.print_dashboard_hint()

    def print_dashboard_hint(self) -> None:
        """How to look at the same data in the dashboard (once)."""
        from services.embedded.demo_setup import DEMO_USER

        if self._hint_shown:
            return
        self._hint_shown = True

        s = self._settings
        database = "" if "database_url" not in s.model_fields_set else "FINSENT_DATABASE_URL=… "
        typer.echo(
            f"dashboard FINSENT_HOME={s.home} {database}finsent dashboard   then open "
            f"http://{s.dashboard_host}:{s.dashboard_port} and log in as {DEMO_USER} / {self.run.password} "
            f"(a demo-only login; remove it with `finsent dashboard users remove {DEMO_USER}`)"
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
    watch: DemoWatch | None,
    sender: threading.Thread | None,
    demo_errors: list[str],
    exit_when_done: bool,
    started: float,
) -> None:
    """Watch the parts until Ctrl-C, a failure, or (with --exit-when-done) the end of the demo:
    every item scored and stored, and the demo's alert delivered."""
    next_status = time.monotonic() + STATUS_EVERY_S
    reported_first = False
    demo_ids = set(watch.run.items) if watch is not None else set()
    scored_at: float | None = None
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
            if watch is not None:
                watch.poll()
                demo_sent = sender is not None and not sender.is_alive()
                if scored_at is None and demo_sent and printer.count(demo_ids) >= len(demo_ids):
                    scored_at = time.monotonic()
                    typer.echo(
                        f"demo      {len(demo_ids)} items scored and stored ({scored_at - started:.1f} s)"
                    )
                if exit_when_done and scored_at is not None:
                    if watch.delivered:
                        typer.echo(
                            f"demo done: {len(demo_ids)} items scored and stored, the demo alert delivered "
                            f"({time.monotonic() - started:.1f} s)"
                        )
                        return
                    _demo_failure(watch, time.monotonic() - scored_at)
                elif scored_at is not None and not watch.delivered:
                    watch.note_absence(time.monotonic() - scored_at)
            if time.monotonic() >= next_status:
                next_status += STATUS_EVERY_S
                print(f"  ({printer.count()} items scored so far)", file=sys.stderr, flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        typer.echo(
            "\nstopping: the worker, the alerter and the dispatcher finish what they have in flight, "
            "then the broker stops"
        )


def _demo_failure(watch: DemoWatch, waited: float) -> None:
    """Exit 1 with one line once it is certain (or long enough) that the demo alert will not come."""
    burst = len(watch.run.burst_ids)
    if watch.judged_without_alert or waited >= DEMO_ALERT_WAIT_S:
        watch.print_dashboard_hint()  # the scored news is there to look at all the same
    if watch.judged_without_alert:
        fail(
            f"the demo's alert did not appear: the alerter judged the burst and found nothing unusual; "
            f"the model labelled {watch.bearish_in_burst()} of its {burst} bearish headlines bearish "
            "(a better model: `finsent train`)",
            code=1,
        )
    if waited >= DEMO_ALERT_WAIT_S:
        fail(
            f"the demo's alert was not delivered within {DEMO_ALERT_WAIT_S:g} s of the last item scored "
            f"({watch.bearish_in_burst()} of the {burst} burst headlines labelled bearish); see the logs of "
            "the alerter and the dispatcher in FINSENT_HOME/logs",
            code=1,
        )
