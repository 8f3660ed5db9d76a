"""The supervisor of `finsent run`: the whole pipeline on one machine, in order.

It starts the broker (the configured cluster, or the embedded one), creates the topics,
starts the scorer worker, the alerter, the dispatcher and the scheduler as child processes
(each logging to FINSENT_HOME/logs/<name>.log), follows the scored stream and the alerts
topic, and with a demo replays its feed and watches for its alert. It stops everything in
order on Ctrl-C, on a failure, or (with --exit-when-done) at the end of the demo: the feed,
the worker (after its batch in flight is stored), the alerter, the dispatcher, the
scheduler, the broker.

Which model is served is decided before (services/learning/serving.py); what can stop the
run early is a `RunError` (services/embedded/errors.py); database access goes through the
caller's `OnDatabase`, so that its errors read as the rest of the CLI's do.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bert_core import compiler_available
from services.embedded.console import StreamPrinter, print_alert, say, warn
from services.embedded.demo_run import DemoRun, DemoWatch, demo_failure, describe_demo, prepare_demo
from services.embedded.errors import RunError

if TYPE_CHECKING:
    from services.embedded.upgrade_run import BackgroundUpgrade
    from services.learning.serving import OnDatabase
    from services.settings import Settings

STATUS_EVERY_S = 30.0
SERVICES = ("worker", "alerter", "dispatcher", "scheduler")  # started in this order, and stopped in it


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """`finsent run --demo`: how many headlines, how fast, and whether to stop when done."""

    items: int
    rate: float
    exit_when_done: bool


def run_pipeline(
    settings: Settings,
    model_dir: Path,
    *,
    pinned: bool,
    demo: DemoOptions | None,
    quiet: bool,
    on_database: OnDatabase,
    on_error: Callable[[RunError], None],
    upgrade: bool = True,
) -> None:
    """Run the pipeline serving `model_dir` (`pinned`: the worker serves that directory and
    ignores the registry) until Ctrl-C, a failure or the end of the demo; `upgrade`: train
    the full model in the background when the bootstrap model serves (services/embedded/
    upgrade_run.py; False: `--no-upgrade`). A failure is given
    to `on_error` before anything is stopped, so that its reason is the first thing printed
    (stopping takes a while), then raised."""
    try:
        demo_run = prepare_demo(settings, demo.items, model_dir, on_database) if demo is not None else None
    except RunError as exc:
        on_error(exc)
        raise
    with ExitStack() as stack:
        stack.enter_context(stop_on_signals())
        try:
            _run(
                stack,
                settings,
                model_dir,
                pinned=pinned,
                demo=demo,
                demo_run=demo_run,
                quiet=quiet,
                on_database=on_database,
                upgrade=upgrade,
            )
        except RunError as exc:
            on_error(exc)
            raise


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT both stop the run the way Ctrl-C does (KeyboardInterrupt: the parts
    stop in order, nothing is left running).

    Without it a SIGTERM (`kill`, `docker stop`, systemd) ended this process at once and left
    the worker, alerter, dispatcher and scheduler running as orphans; and a run started where
    SIGINT is ignored (a background job of a non-interactive shell, which Python then leaves
    ignored) could not be stopped with it at all."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def uncompiled_reason(*, compile_set: bool, demo: bool, has_compiler: bool) -> str | None:
    """Why `finsent run` serves its worker uncompiled unasked ("demo", "no compiler"), or None.

    FINSENT_COMPILE, when set, is honoured. Unset, a demo serves uncompiled: it feeds 10
    headlines/s, and compiling the pass (up to a minute) would only delay the first scored one.
    A machine without the toolchain serves uncompiled too: a first run should not stop over a
    7-15 % speed-up (a deployed `finsent worker` still refuses, with how to fix it).
    """
    if compile_set:
        return None
    if demo:
        return "demo"
    return None if has_compiler else "no compiler"


def _run(
    stack: ExitStack,
    settings: Settings,
    model_dir: Path,
    *,
    pinned: bool,
    demo: DemoOptions | None,
    demo_run: DemoRun | None,
    quiet: bool,
    on_database: OnDatabase,
    upgrade: bool,
) -> None:
    """Start the parts (each stopped by `stack`) and supervise them."""
    feed = demo_run.items if demo_run is not None else {}
    started = time.monotonic()
    started_at = datetime.now(UTC)
    bootstrap, broker_text = stack.enter_context(broker(settings))
    from services.broker import BrokerError, ensure_topics, pipeline_topics

    try:
        ensure_topics(bootstrap, pipeline_topics(settings), timeout=settings.kafka.kafka_timeout_seconds)
    except BrokerError as exc:
        raise RunError(str(exc)) from None
    from services.embedded.scored_tail import ScoredTail
    from services.embedded.service_process import ServiceProcess

    env = {
        "FINSENT_KAFKA_BOOTSTRAP": bootstrap,
        "FINSENT_DATABASE_URL": settings.database.database_url,
        "FINSENT_HOME": str(settings.home),
    }
    uncompiled = uncompiled_reason(
        compile_set="compile" in settings.inference.model_fields_set,
        demo=demo is not None,
        has_compiler=compiler_available(),
    )
    if uncompiled is not None:
        env["FINSENT_COMPILE"] = "false"
        if uncompiled == "no compiler":
            warn(
                "no C++ compiler or Python headers here: the worker serves uncompiled, 7-15 % fewer "
                "headlines/s (install g++ and python3-dev to compile; FINSENT_COMPILE=false hides this)"
            )
    services = [
        ServiceProcess(
            name,
            env=env | ({"FINSENT_MODEL": str(model_dir.resolve())} if name == "worker" and pinned else {}),
            log_path=settings.logs_dir / f"{name}.log",
        )
        for name in SERVICES
    ]
    stack.callback(stop_services, services)
    for service in services:
        service.start()
    headlines = {event_id: str(item["headline"]) for event_id, item in feed.items()}
    printer = StreamPrinter(headlines, quiet=quiet)
    tail = ScoredTail(
        bootstrap,
        settings.kafka.topic_news_scored,
        on_item=printer,
        from_beginning=settings.kafka.kafka_bootstrap is None,
    )
    alert_tail = ScoredTail(
        bootstrap,
        settings.kafka.topic_alerts,
        on_item=print_alert,
        from_beginning=settings.kafka.kafka_bootstrap is None,
    )
    tails = [tail, alert_tail]
    for each in tails:
        try:
            each.start()
        except Exception as exc:
            raise RunError(f"cannot follow {each.topic} on {bootstrap}: {exc}") from None
        stack.callback(each.stop)

    say(f"model     {model_dir} ({summary_line(model_dir)})")
    say(f"broker    {broker_text}")
    say(f"database  {_redacted(settings.database.database_url)}")
    for service in services:
        say(
            f"{service.command:<9} pid {service.pid}, log {service.log_path}; "
            f"{metrics_text(settings, service.command)}"
        )
    background = _start_upgrade(
        stack, settings, env, requested=upgrade, pinned=pinned, on_database=on_database
    )
    say(
        f"send news FINSENT_KAFKA_BOOTSTRAP={bootstrap} finsent ingest FILE (or POST to `finsent serve-http`)"
    )
    stop_demo = threading.Event()
    demo_errors: list[str] = []
    sender: threading.Thread | None = None
    if demo_run is not None and demo is not None:
        describe_demo(demo_run, demo.rate)
        sender = threading.Thread(
            target=send_demo,
            args=(
                bootstrap,
                settings.kafka.topic_news_raw,
                list(feed.values()),
                demo.rate,
                stop_demo,
                demo_errors,
                settings.ingest.ingest_linger_ms,
            ),
            name="demo-feed",
            daemon=True,
        )
        sender.start()
        stack.callback(sender.join, timeout=10)
        stack.callback(stop_demo.set)  # runs first: callbacks unwind in reverse
    say("Ctrl-C stops. Scored stream (sentiment, score, topic, tickers, headline):")
    watch = DemoWatch(demo_run, printer, settings, started_at, on_database) if demo_run is not None else None
    exit_when_done = demo is not None and demo.exit_when_done
    supervise(services, printer, tails, watch, sender, demo_errors, exit_when_done, started, background)


def _start_upgrade(
    stack: ExitStack,
    settings: Settings,
    env: dict[str, str],
    *,
    requested: bool,
    pinned: bool,
    on_database: OnDatabase,
) -> BackgroundUpgrade | None:
    """The background training of the full model, if it is due (stopped first by `stack`:
    registered after the services, so unwound before them)."""
    from services.embedded.upgrade_run import BackgroundUpgrade, plan_upgrade

    decision = plan_upgrade(settings, requested=requested, pinned=pinned, on_database=on_database)
    if not decision.start:
        say(f"upgrade   none: {decision.reason}")
        return None
    background = BackgroundUpgrade(settings, env)
    stack.callback(background.stop)
    background.start()
    return background


def _redacted(url: str) -> str:
    from services.storage import redact

    return redact(url)


@contextmanager
def broker(settings: Settings) -> Iterator[tuple[str, str]]:
    """(bootstrap, description): the configured cluster, or an embedded broker for the block."""
    if settings.kafka.kafka_bootstrap is not None:
        yield (
            settings.kafka.kafka_bootstrap,
            f"Kafka at {settings.kafka.kafka_bootstrap} (FINSENT_KAFKA_BOOTSTRAP)",
        )
        return
    from services.broker import BrokerError, EmbeddedBroker

    try:
        embedded = EmbeddedBroker(log_dir=settings.logs_dir).start()
    except BrokerError as exc:
        raise RunError(str(exc)) from None
    try:
        yield (
            embedded.bootstrap,
            f"embedded broker at {embedded.bootstrap} (in memory; log {embedded.log_path})",
        )
    finally:
        embedded.stop()


def summary_line(model_dir: Path) -> str:
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


def metrics_text(settings: Settings, command: str) -> str:
    """Where a service serves /metrics and /health."""
    host, port = {
        "worker": (settings.scorer.scorer_metrics_host, settings.scorer.scorer_metrics_port),
        "alerter": (settings.alerts.alerter_metrics_host, settings.alerts.alerter_metrics_port),
        "dispatcher": (settings.delivery.dispatcher_metrics_host, settings.delivery.dispatcher_metrics_port),
        "scheduler": (settings.learning.scheduler_metrics_host, settings.learning.scheduler_metrics_port),
    }[command]
    if not port:
        return "its log names its metrics port"
    return f"metrics http://{host}:{port}/metrics, health http://{host}:{port}/health"


def send_demo(
    bootstrap: str,
    topic: str,
    feed: list[dict[str, Any]],
    rate: float,
    stop: threading.Event,
    errors: list[str],
    linger_ms: int,
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
        with NewsProducer(bootstrap, topic=topic, linger_ms=linger_ms) as producer:
            records = (FileRecord(line=i + 1, item=item) for i, item in enumerate(feed))
            replay(records, producer, rate=rate, sleep=sleep)
    except InterruptedError:
        pass
    except BrokerError as exc:
        errors.append(str(exc))


def stop_services(services: list[Any]) -> None:
    """Stop each in turn (SIGTERM, then kill after a timeout); an unclean exit is reported."""
    for service in services:
        already_exited = service.exit_code() is not None  # reported by the supervisor
        code = service.stop()
        if code not in (None, 0) and not already_exited:
            warn(
                f"finsent: warning: `finsent {service.command}` exited with code {code} when stopped; "
                f"see {service.log_path}"
            )


def supervise(
    services: list[Any],
    printer: StreamPrinter,
    tails: list[Any],
    watch: DemoWatch | None,
    sender: threading.Thread | None,
    demo_errors: list[str],
    exit_when_done: bool,
    started: float,
    background: BackgroundUpgrade | None = None,
) -> None:
    """Watch the parts until Ctrl-C, a failure, or (with --exit-when-done) the end of the demo:
    every item scored and stored, and the demo's alert delivered. The background upgrade is
    only reported on: its end, whatever it is, never ends the run."""
    next_status = time.monotonic() + STATUS_EVERY_S
    reported_first = False
    demo_ids = set(watch.run.items) if watch is not None else set()
    scored_at: float | None = None
    try:
        while True:
            for service in services:
                code = service.exit_code()
                if code is not None:
                    raise RunError(
                        f"`finsent {service.command}` exited unexpectedly with code {code}; "
                        f"its log ({service.log_path}) ends:\n{service.log_tail()}"
                    )
            if demo_errors:
                raise RunError(f"the demo feed stopped: {demo_errors[0]}")
            for tail in tails:
                if tail.error is not None:
                    raise RunError(f"lost the stream of {tail.topic}: {tail.error}")
            if not reported_first and printer.first_at is not None:
                reported_first = True
                warn(f"  (first item scored {printer.first_at - started:.1f} s after start)")
            if watch is not None:
                watch.poll()
                demo_sent = sender is not None and not sender.is_alive()
                if scored_at is None and demo_sent and printer.count(demo_ids) >= len(demo_ids):
                    scored_at = time.monotonic()
                    say(f"demo      {len(demo_ids)} items scored and stored ({scored_at - started:.1f} s)")
                if exit_when_done and scored_at is not None:
                    if watch.delivered:
                        say(
                            f"demo done: {len(demo_ids)} items scored and stored, the demo alert delivered "
                            f"({time.monotonic() - started:.1f} s)"
                        )
                        return
                    demo_failure(watch, time.monotonic() - scored_at)
                elif scored_at is not None and not watch.delivered:
                    watch.note_absence(time.monotonic() - scored_at)
            if background is not None:
                background.poll()
            if time.monotonic() >= next_status:
                next_status += STATUS_EVERY_S
                warn(f"  ({printer.count()} items scored so far)")
            time.sleep(0.2)
    except KeyboardInterrupt:
        say(
            "\nstopping: the worker, the alerter and the dispatcher finish what they have in flight, "
            "then the broker stops"
        )
