"""`finsent worker`: one scorer worker (faust) in the consumer group FINSENT_SCORER_GROUP.

Needs FINSENT_KAFKA_BOOTSTRAP (the topics must exist: `finsent init`) and a model:
FINSENT_MODEL (pinned), else the registry's champion, else the bootstrap model that
`finsent run` trains. Unless pinned, the worker follows the champion: a promotion or a
rollback (`model.events`, and a registry poll every FINSENT_MODEL_POLL_SECONDS) switches
the model between two batches, and a champion that fails verification is refused while
the old model keeps serving. Migrates the database at FINSENT_DATABASE_URL first.
SIGTERM or Ctrl-C stops it after the batch in flight is stored. Serves Prometheus metrics
and a health check on FINSENT_SCORER_METRICS_HOST:FINSENT_SCORER_METRICS_PORT.

The start-up itself lives in `services.scorer.runner`; this command reads the options and
turns what stops the start into one line and exit code 2.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from services.cli.common import BootstrapServerOption, DatabaseUrlOption
from services.cli.errors import fail
from services.settings import get_settings


def worker(
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Score news.raw into the database, news.scored and news.dlq until stopped."""
    from services.cli.common import (
        SERVICE_DATABASE_WAIT_SECONDS,
        configured_bootstrap,
        guarded_database,
        quiet_alembic,
    )

    quiet_alembic()  # before anything imports services.storage (and with it alembic)
    settings = get_settings()
    bootstrap = configured_bootstrap()
    from services.scorer import WorkerStartError, run_worker

    def migrate() -> str:
        from services.storage import upgrade_database

        shown, _revision = guarded_database(upgrade_database, wait_seconds=SERVICE_DATABASE_WAIT_SECONDS)
        return shown

    code: int | str | None = 0
    try:
        run_worker(
            settings, bootstrap=bootstrap, migrate=migrate, announce=lambda line: print(line, flush=True)
        )
    except WorkerStartError as exc:
        fail(str(exc))
    except SystemExit as exc:  # how faust ends a worker: 0 after a clean stop
        code = exc.code
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
