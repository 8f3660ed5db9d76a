"""`finsent worker`: one scorer worker (faust) in the consumer group FINSENT_SCORER_GROUP.

Needs FINSENT_KAFKA_BOOTSTRAP (the topics must exist: `finsent init`) and FINSENT_MODEL (a
model directory; the registry and the bootstrap model come later). Migrates the database at
FINSENT_DATABASE_URL first. SIGTERM or Ctrl-C stops it after the batch in flight is stored.
"""

from __future__ import annotations

from services.cli.errors import fail
from services.settings import get_settings


def worker() -> None:
    """Score news.raw into the database, news.scored and news.dlq until stopped."""
    from services.cli.common import broker_errors, configured_bootstrap, guarded_database, quiet_alembic

    settings = get_settings()
    bootstrap = configured_bootstrap()
    if settings.model is None:
        fail("no model configured: set FINSENT_MODEL to a model directory")
    if not settings.model.is_dir():
        fail(f"FINSENT_MODEL={settings.model}: no such directory")
    from services.broker.topics import describe_topics

    names = [settings.topic_news_raw, settings.topic_news_scored, settings.topic_news_dlq]
    with broker_errors():
        partitions = describe_topics(bootstrap, names, timeout=settings.kafka_timeout_seconds)
    missing = [name for name, count in partitions.items() if count is None]
    if missing:
        fail(f"topics {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`")

    quiet_alembic()
    from services.storage import make_engine, session_factory, upgrade_database

    shown, _revision = guarded_database(upgrade_database)

    from bert_core import Predictor

    predictor = Predictor.load(settings.model, precision=settings.precision, threads=settings.torch_threads)

    from faust import Worker

    from services.scorer.app import build_app

    engine = make_engine(settings.database_url)
    app = build_app(
        settings, bootstrap=bootstrap, predictor=predictor, session_factory=session_factory(engine)
    )
    print(
        f"scoring {settings.topic_news_raw} on {bootstrap} (group {settings.scorer_group}) into {shown} "
        f"with model {predictor.version}; Ctrl-C stops",
        flush=True,
    )
    try:
        Worker(app, loglevel=settings.log_level, override_logging=False).execute_from_commandline()
    finally:
        engine.dispose()
