"""`finsent upgrade-model`: train the full-quality model and let the gate replace the bootstrap one.

`finsent run` starts it in the background (services/embedded/upgrade_run.py); it can also
be run by hand, e.g. after `finsent run --no-upgrade`. It lowers its own priority first
(FINSENT_UPGRADE_NICE, default 19: the pipeline's processes get the CPU whenever they want
it, the training gets what is left) and trains on FINSENT_UPGRADE_TORCH_THREADS threads
(default half the cores, so a core stays free for the scorer). SIGTERM stops it cleanly:
the state file says `stopped`, and the next run starts the training again from the beginning.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import typer

from services.cli.common import BootstrapServerOption, DatabaseUrlOption
from services.settings import get_settings

log = logging.getLogger(__name__)


class StopRequested(BaseException):
    """SIGTERM: stop training now (a BaseException, so no `except Exception` swallows it)."""


def _stop(*_: Any) -> None:
    raise StopRequested


def upgrade_model(
    bootstrap_server: BootstrapServerOption = None, database_url: DatabaseUrlOption = None
) -> None:
    """Train the full model on the seed data (the `finsent train` recipe, low priority) and
    promote it through the gate if it beats the bootstrap model; exit 0 also when there is
    nothing to do (the reason is printed), 3 when the gate refused it, 1 when it failed.

    A promotion is announced on model.events at FINSENT_KAFKA_BOOTSTRAP (`--bootstrap-server`);
    without a broker the workers find it by polling the registry.
    """
    from services.cli.common import guarded_database, quiet_alembic
    from services.cli.retrain import EXIT_REJECTED

    quiet_alembic()
    settings = get_settings()
    from services.learning.upgrade import run_upgrade, upgrade_threads
    from services.learning.upgrade_plan import progress_line
    from services.storage import make_engine, upgrade_database

    niceness = os.nice(settings.training.upgrade_nice)
    threads = upgrade_threads(settings, os.cpu_count())
    import torch

    torch.set_num_threads(threads)
    log.info(
        "background upgrade process", extra={"nice": niceness, "torch_threads": threads, "pid": os.getpid()}
    )
    shown, _revision = guarded_database(upgrade_database)
    previous = signal.signal(signal.SIGTERM, _stop)
    engine = make_engine(settings.database.database_url)
    try:
        outcome = guarded_database(lambda _url: run_upgrade(settings, engine))[1]
    except StopRequested:
        typer.echo("stopped; the next `finsent run` (or `finsent upgrade-model`) starts it again")
        return
    except Exception as exc:
        from services.cli.errors import EXIT_PROBLEM, fail

        fail(f"the background training failed: {' '.join(str(exc).split())[:500]}", code=EXIT_PROBLEM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.dispose()
    if outcome.state is None or not outcome.decision.start:
        typer.echo(f"nothing to do on {shown}: {outcome.decision.reason}")
        return
    typer.echo(progress_line(outcome.state))
    if outcome.state.status == "rejected":
        raise typer.Exit(EXIT_REJECTED)
