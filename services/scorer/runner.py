"""Start a scoring worker from settings: what `finsent worker` runs once its options are read.

The order is chosen so that the likelier mistakes fail first and fast, each as a
`WorkerStartError` whose message is one line for the operator: the watchlist, the metrics
port (bound before the model loads), the database (migrated by the caller's `migrate`,
which owns how its errors are told), the model (a missing one before the broker is asked),
the topics; then the model is loaded and warmed up while `/health` answers `starting`, and
the faust worker runs until SIGTERM or Ctrl-C. Unless FINSENT_MODEL pins the model, a
`ModelWatcher` follows the registry's champion meanwhile.

torch and faust are imported inside the functions, so that importing this module (and
`services.scorer`, which exports it) stays light.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

    from bert_core import Predictor, VerifiedModelDir
    from services.scorer.metrics import ScorerMetrics
    from services.scorer.model_reload import ModelSlot, ModelWatcher
    from services.settings import Settings

log = logging.getLogger(__name__)


class WorkerStartError(Exception):
    """The worker cannot start as configured; the message says why and what to do instead."""


def run_worker(
    settings: Settings,
    *,
    bootstrap: str,
    migrate: Callable[[], str],
    announce: Callable[[str], None],
) -> None:
    """Score news.raw into the database, news.scored and news.dlq until stopped.

    `migrate` upgrades the database at FINSENT_DATABASE_URL and returns it as it may be
    shown (password hidden); `announce` is told the one line saying the worker is serving.
    """
    watchlist = _watchlist(settings)
    metrics_socket = bind_metrics_socket(settings)
    try:
        _run(settings, bootstrap, migrate, announce, watchlist, metrics_socket)
    finally:
        metrics_socket.close()


def _run(
    settings: Settings,
    bootstrap: str,
    migrate: Callable[[], str],
    announce: Callable[[str], None],
    watchlist: dict[str, str] | None,
    metrics_socket: socket.socket,
) -> None:
    from services.storage import make_engine, session_factory

    shown = migrate()
    engine = make_engine(settings.database.database_url)
    try:
        sessions = session_factory(engine)
        from services.learning.serving import ServingError, load_initial, worker_model

        try:  # before the broker: a missing model is the likelier mistake
            choice = worker_model(settings, sessions)
        except ServingError as exc:
            raise WorkerStartError(str(exc)) from None
        _require_topics(settings, bootstrap)

        from services.probes import ProbeServer
        from services.scorer.health import health_report
        from services.scorer.metrics import ScorerMetrics
        from services.scorer.probe_server import ObservabilityServer

        metrics = ScorerMetrics()
        # Loading can take a minute (FINSENT_COMPILE): /health answers 503 `starting` meanwhile,
        # as it does while the group is joined, instead of leaving a probe's connection unanswered.
        with ProbeServer(
            metrics_socket,
            metrics.registry,
            lambda: health_report(metrics.health_snapshot()),
            name="finsent-loading-probe",
            close_socket=False,
        ):
            try:
                predictor = load_initial(
                    settings, sessions, choice, lambda source: load_predictor(settings, source)
                )
            except ServingError as exc:
                raise WorkerStartError(str(exc)) from None
        apply_gil_switch_interval(settings)

        from faust import Worker

        from services.scorer.app import build_app
        from services.scorer.model_reload import ModelSlot

        metrics.set_model_version(predictor.version)
        server = ObservabilityServer(metrics, metrics_socket)
        slot = ModelSlot(predictor, predictor.version)
        watcher = model_watcher(settings, bootstrap, slot, sessions, metrics)
        app = build_app(
            settings,
            bootstrap=bootstrap,
            predictor=slot,
            session_factory=sessions,
            watchlist=watchlist,
            metrics=metrics,
        )
        announce(
            f"scoring {settings.kafka.topic_news_raw} on {bootstrap} (group {settings.scorer.scorer_group}) "
            f"into {shown} "
            f"with model {predictor.version}; metrics {server.url}/metrics, health {server.url}/health; "
            "Ctrl-C stops"
        )
        if watcher is not None:
            watcher.start()
        try:
            # the server starts before the app and stops after it (see ObservabilityServer)
            Worker(
                app, server, loglevel=settings.runtime.log_level, override_logging=False
            ).execute_from_commandline()
        finally:
            if watcher is not None:
                watcher.stop()
    finally:
        engine.dispose()


def _watchlist(settings: Settings) -> dict[str, str] | None:
    """FINSENT_WATCHLIST read and checked (None: the packaged default)."""
    if settings.ingest.watchlist is None:
        return None
    from services.schemas import WatchlistError, load_watchlist

    try:
        return load_watchlist(settings.ingest.watchlist)
    except WatchlistError as exc:
        raise WorkerStartError(f"FINSENT_WATCHLIST: {exc}") from None


def _require_topics(settings: Settings, bootstrap: str) -> None:
    """The topics the worker reads and writes exist (it never creates them: `finsent init` does)."""
    from services.broker.errors import BrokerError
    from services.broker.topics import describe_topics
    from services.learning.serving import follows_registry

    names = [settings.kafka.topic_news_raw, settings.kafka.topic_news_scored, settings.kafka.topic_news_dlq]
    if follows_registry(settings):
        names.append(settings.kafka.topic_model_events)
    try:
        partitions = describe_topics(bootstrap, names, timeout=settings.kafka.kafka_timeout_seconds)
    except BrokerError as exc:
        raise WorkerStartError(str(exc)) from None
    missing = [name for name, count in partitions.items() if count is None]
    if missing:
        raise WorkerStartError(
            f"topics {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`"
        )


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


def load_predictor(settings: Settings, source: Path | VerifiedModelDir) -> Predictor:
    """A ready-to-serve predictor: loaded with the serving settings and warmed up. A
    `VerifiedModelDir` (a registry entry `load_verified` checked) is not hashed again."""
    from bert_core import Predictor

    started = time.perf_counter()
    predictor = Predictor.load(
        source,
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
        predictor.loaded.path,
        " and its encoder pass compiled" if predictor.compiled else "",
        loaded - started,
        time.perf_counter() - loaded,
    )
    return predictor


def model_watcher(
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
        load=lambda source: load_predictor(settings, source),
        localize=lambda ref: localize(sessions, ref, cache_dir=settings.model_cache_dir),
        poll_seconds=settings.inference.model_poll_seconds,
        events=lambda _stop: KafkaModelEvents(
            bootstrap, settings.kafka.topic_model_events, timeout_seconds=settings.kafka.kafka_timeout_seconds
        ),
        on_switch=metrics.model_switched,
        on_refuse=lambda ref, reason: metrics.model_refused(ref.version, reason),
    )


def bind_metrics_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before the model loads."""
    from services.probes import bind_socket

    host, port = settings.scorer.scorer_metrics_host, settings.scorer.scorer_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        raise WorkerStartError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set FINSENT_SCORER_METRICS_PORT "
            "to a free port (0 picks one) or FINSENT_SCORER_METRICS_HOST to an address of this machine"
        ) from None
