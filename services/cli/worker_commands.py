"""`finsent worker`: one scorer worker (faust) in the consumer group FINSENT_SCORER_GROUP.

Needs FINSENT_KAFKA_BOOTSTRAP (the topics must exist: `finsent init`) and a model:
FINSENT_MODEL, else the bootstrap model that `finsent run` trains (the model registry of a
later issue slots in between). Migrates the database at FINSENT_DATABASE_URL first.
SIGTERM or Ctrl-C stops it after the batch in flight is stored. Serves Prometheus metrics
and a health check on FINSENT_SCORER_METRICS_HOST:FINSENT_SCORER_METRICS_PORT.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from services.cli.errors import fail
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.scorer.batch import PredictorLike


def worker() -> None:
    """Score news.raw into the database, news.scored and news.dlq until stopped."""
    from services.cli.common import broker_errors, configured_bootstrap, guarded_database, quiet_alembic

    quiet_alembic()  # before anything imports services.storage (and with it alembic)
    settings = get_settings()
    bootstrap = configured_bootstrap()
    from services.model_source import resolve_model_dir

    model_dir = resolve_model_dir(settings)
    if model_dir is None:
        fail(
            f"no model: set FINSENT_MODEL to a model directory, or run `finsent run` once to "
            f"bootstrap one into {settings.default_model_dir}"
        )
    if not model_dir.is_dir():
        fail(f"FINSENT_MODEL={model_dir}: no such directory")
    watchlist = None
    if settings.watchlist is not None:
        from services.schemas import WatchlistError, load_watchlist

        try:
            watchlist = load_watchlist(settings.watchlist)
        except WatchlistError as exc:
            fail(f"FINSENT_WATCHLIST: {exc}")
    metrics_socket = _metrics_socket(settings)
    from services.broker.topics import describe_topics

    names = [settings.topic_news_raw, settings.topic_news_scored, settings.topic_news_dlq]
    with broker_errors():
        partitions = describe_topics(bootstrap, names, timeout=settings.kafka_timeout_seconds)
    missing = [name for name, count in partitions.items() if count is None]
    if missing:
        fail(f"topics {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`")

    from services.storage import make_engine, session_factory, upgrade_database

    shown, _revision = guarded_database(upgrade_database)

    from bert_core import Predictor

    predictor = Predictor.load(
        model_dir,
        precision=settings.precision,
        threads=settings.torch_threads,
        batch_size=settings.scorer_inference_batch,
    )
    warm_up(predictor)

    from faust import Worker

    from services.observability import ObservabilityServer, ScorerMetrics
    from services.scorer.app import build_app

    metrics = ScorerMetrics()
    metrics.set_model_version(predictor.version)
    server = ObservabilityServer(metrics, metrics_socket)
    engine = make_engine(settings.database_url)
    app = build_app(
        settings,
        bootstrap=bootstrap,
        predictor=predictor,
        session_factory=session_factory(engine),
        watchlist=watchlist,
        metrics=metrics,
    )
    print(
        f"scoring {settings.topic_news_raw} on {bootstrap} (group {settings.scorer_group}) into {shown} "
        f"with model {predictor.version}; metrics {server.url}/metrics, health {server.url}/health; "
        "Ctrl-C stops",
        flush=True,
    )
    try:
        # the server starts before the app and stops after it (see ObservabilityServer)
        Worker(app, server, loglevel=settings.log_level, override_logging=False).execute_from_commandline()
    finally:
        engine.dispose()
        metrics_socket.close()


def _metrics_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before the model loads."""
    from services.observability import bind_socket

    host, port = settings.scorer_metrics_host, settings.scorer_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set FINSENT_SCORER_METRICS_PORT "
            "to a free port (0 picks one) or FINSENT_SCORER_METRICS_HOST to an address of this machine"
        )


WARM_UP_TEXTS = tuple(" ".join(["markets"] * n) for n in (4, 8, 12, 16, 24, 32, 48, 64) for _ in range(8))


def warm_up(predictor: PredictorLike) -> None:
    """Score a throw-away batch of every common length once before consuming: the first
    batches of a cold process run about 2x slower (kernel selection, allocator growth), which
    would otherwise land on the first real news after a start or a rebalance."""
    predictor.predict(list(WARM_UP_TEXTS))
