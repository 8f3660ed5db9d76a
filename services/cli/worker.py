"""`finsent worker`: one scorer worker (faust) in the consumer group FINSENT_SCORER_GROUP.

Needs FINSENT_KAFKA_BOOTSTRAP (the topics must exist: `finsent init`) and a model:
FINSENT_MODEL (pinned), else the registry's champion, else the bootstrap model that
`finsent run` trains. Unless pinned, the worker follows the champion: a promotion or a
rollback (`model.events`, and a registry poll every FINSENT_MODEL_POLL_SECONDS) switches
the model between two batches, and a champion that fails verification is refused while
the old model keeps serving. Migrates the database at FINSENT_DATABASE_URL first.
SIGTERM or Ctrl-C stops it after the batch in flight is stored. Serves Prometheus metrics
and a health check on FINSENT_SCORER_METRICS_HOST:FINSENT_SCORER_METRICS_PORT.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from services.cli.common import BootstrapServerOption, DatabaseUrlOption
from services.cli.errors import fail
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bert_core import Predictor
    from services.scorer import ScorerMetrics
    from services.scorer.model_reload import ModelSlot, ModelWatcher

log = logging.getLogger(__name__)


def worker(
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Score news.raw into the database, news.scored and news.dlq until stopped."""
    from services.cli.common import (
        SERVICE_DATABASE_WAIT_SECONDS,
        broker_errors,
        configured_bootstrap,
        guarded_database,
        quiet_alembic,
    )

    quiet_alembic()  # before anything imports services.storage (and with it alembic)
    settings = get_settings()
    bootstrap = configured_bootstrap()
    watchlist = None
    if settings.ingest.watchlist is not None:
        from services.schemas import WatchlistError, load_watchlist

        try:
            watchlist = load_watchlist(settings.ingest.watchlist)
        except WatchlistError as exc:
            fail(f"FINSENT_WATCHLIST: {exc}")
    metrics_socket = _metrics_socket(settings)
    from services.storage import make_engine, session_factory, upgrade_database

    shown, _revision = guarded_database(upgrade_database, wait_seconds=SERVICE_DATABASE_WAIT_SECONDS)
    engine = make_engine(settings.database.database_url)
    sessions = session_factory(engine)
    from services.learning.serving import ServingError, follows_registry, load_initial, worker_model

    try:  # before the broker: a missing model is the likelier mistake
        choice = worker_model(settings, sessions)
    except ServingError as exc:
        fail(str(exc))
    from services.broker.topics import describe_topics

    names = [settings.kafka.topic_news_raw, settings.kafka.topic_news_scored, settings.kafka.topic_news_dlq]
    if follows_registry(settings):
        names.append(settings.kafka.topic_model_events)
    with broker_errors():
        partitions = describe_topics(bootstrap, names, timeout=settings.kafka.kafka_timeout_seconds)
    missing = [name for name, count in partitions.items() if count is None]
    if missing:
        fail(f"topics {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`")

    from services.probes import ProbeServer
    from services.scorer import ScorerMetrics, health_report
    from services.scorer.probe_server import ObservabilityServer

    metrics = ScorerMetrics()
    # Loading can take a minute (FINSENT_COMPILE): /health answers 503 `starting` meanwhile, as
    # it does while the group is joined, instead of leaving a probe's connection unanswered.
    with ProbeServer(
        metrics_socket,
        metrics.registry,
        lambda: health_report(metrics.health_snapshot()),
        name="finsent-loading-probe",
        close_socket=False,
    ):
        try:
            predictor = load_initial(settings, sessions, choice, lambda path: _load_predictor(settings, path))
        except ServingError as exc:
            fail(str(exc))
    apply_gil_switch_interval(settings)

    from faust import Worker

    from services.scorer.app import build_app
    from services.scorer.model_reload import ModelSlot

    metrics.set_model_version(predictor.version)
    server = ObservabilityServer(metrics, metrics_socket)
    slot = ModelSlot(predictor, predictor.version)
    watcher = _model_watcher(settings, bootstrap, slot, sessions, metrics)
    app = build_app(
        settings,
        bootstrap=bootstrap,
        predictor=slot,
        session_factory=sessions,
        watchlist=watchlist,
        metrics=metrics,
    )
    print(
        f"scoring {settings.kafka.topic_news_raw} on {bootstrap} (group {settings.scorer.scorer_group}) "
        f"into {shown} "
        f"with model {predictor.version}; metrics {server.url}/metrics, health {server.url}/health; "
        "Ctrl-C stops",
        flush=True,
    )
    if watcher is not None:
        watcher.start()
    code: int | str | None = 0
    try:
        # the server starts before the app and stops after it (see ObservabilityServer)
        Worker(
            app, server, loglevel=settings.runtime.log_level, override_logging=False
        ).execute_from_commandline()
    except SystemExit as exc:  # how faust ends a worker: 0 after a clean stop
        code = exc.code
    finally:
        if watcher is not None:
            watcher.stop()
        engine.dispose()
        metrics_socket.close()
    exit_at_once(code)


def exit_at_once(code: int | str | None) -> NoReturn:
    """End the process without the interpreter's teardown, once faust has stopped (offsets
    committed, producer flushed) and the database is closed: nothing is left to do, and the
    teardown of torch and thousands of modules took 15-30 s on a loaded machine (the chaos
    run, docs/reliability.md), enough to miss a 30 s termination grace period."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def apply_gil_switch_interval(settings: Settings) -> None:
    """Shorten this process's GIL switch interval to FINSENT_SCORER_GIL_SWITCH_MS.

    The model's pass threads release the GIL inside every torch op and need it back between
    ops (about a hundred per pass); with Python's 5 ms interval each such hand-back can wait
    most of an interval behind the event loop, the parser or the database thread. Measured in
    a backlog: the pass threads ran 66-71 % of the time at 5 ms, and the worker reached 0.82 of
    the model alone at 0.5 ms against 0.75 at 5 ms (means of 4 and 5 runs;
    docs/performance.md#gil-switch-interval).
    """
    sys.setswitchinterval(settings.scorer.scorer_gil_switch_ms / 1000)


def _load_predictor(settings: Settings, path: Path) -> Predictor:
    """A ready-to-serve predictor: loaded with the serving settings and warmed up."""
    from bert_core import Predictor

    started = time.perf_counter()
    predictor = Predictor.load(
        path,
        precision=settings.inference.precision,
        threads=settings.inference.torch_threads,
        parallel_passes=settings.inference.parallel_passes,
        compiled=settings.inference.compile,
        batch_size=settings.scorer.scorer_inference_batch,
        tokens_per_pass=settings.scorer.scorer_tokens_per_pass,
    )
    loaded = time.perf_counter()
    predictor.warm_up()  # before consuming: the first real news must not pay for it
    log.info(  # what a start or a hot reload costs (docs/learning.md)
        "model %s: loaded%s in %.1f s, warmed up in %.1f s",
        path,
        " and its encoder pass compiled" if predictor.compiled else "",
        loaded - started,
        time.perf_counter() - loaded,
    )
    return predictor


def _model_watcher(
    settings: Settings,
    bootstrap: str,
    slot: ModelSlot,
    sessions: Callable[[], Session],
    metrics: ScorerMetrics,
) -> ModelWatcher | None:
    """Follows the registry's champion, unless FINSENT_MODEL pins the model."""
    from services.learning.serving import follows_registry, localize, registry_champion
    from services.scorer.model_reload import KafkaModelEvents, ModelWatcher

    if not follows_registry(settings):
        return None
    return ModelWatcher(
        slot,
        fetch_champion=lambda: registry_champion(sessions),
        load=lambda path: _load_predictor(settings, path),
        localize=lambda ref: localize(sessions, ref, cache_dir=settings.model_cache_dir),
        poll_seconds=settings.inference.model_poll_seconds,
        events=lambda _stop: KafkaModelEvents(
            bootstrap, settings.kafka.topic_model_events, timeout_seconds=settings.kafka.kafka_timeout_seconds
        ),
        on_switch=metrics.model_switched,
        on_refuse=lambda ref, reason: metrics.model_refused(ref.version, reason),
    )


def _metrics_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before the model loads."""
    from services.probes import bind_socket

    host, port = settings.scorer.scorer_metrics_host, settings.scorer.scorer_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set FINSENT_SCORER_METRICS_PORT "
            "to a free port (0 picks one) or FINSENT_SCORER_METRICS_HOST to an address of this machine"
        )
