"""`finsent run`: the whole pipeline on one machine, with nothing installed but finsent.

With no FINSENT_KAFKA_BOOTSTRAP it starts the embedded Kafka-protocol broker; with no
FINSENT_DATABASE_URL it uses SQLite under FINSENT_HOME; with no model it bootstraps one from
the seed data (time-boxed by FINSENT_BOOTSTRAP_MINUTES), then trains the full model in the
background to replace it (services/embedded/upgrade_run.py). Which model it serves is decided in
services/learning/serving.py; the supervisor that starts and watches the services, the demo
feed and the printed streams is services/embedded/supervisor.py. This module parses the
options, calls them, and turns what they raise into one line and an exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from services.cli.common import (
    BootstrapServerOption,
    DatabaseUrlOption,
    guarded_database,
    quiet_alembic,
)
from services.cli.errors import EXIT_PROBLEM, EXIT_USAGE, fail
from services.embedded.demo_feed import MIN_ITEMS as DEMO_MIN_ITEMS
from services.embedded.demo_run import DEMO_ALERT_WAIT_S, DEMO_ITEMS, DEMO_RATE
from services.embedded.errors import DemoFailed, RunError
from services.settings import get_settings

T = TypeVar("T")


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
    upgrade: Annotated[
        bool,
        typer.Option(
            help="While the bootstrap model serves, train the full model in the background (low priority) "
            "and let the promotion gate replace the bootstrap model with it (env FINSENT_UPGRADE_BOOTSTRAP)"
        ),
    ] = True,
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
    from services.embedded.supervisor import DemoOptions, run_pipeline
    from services.learning.serving import ServingError, check_pinned, run_model

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    pinned = model or settings.inference.model
    try:
        check_pinned(pinned)
    except ServingError as exc:
        fail(str(exc))

    quiet_alembic()
    from services.storage import upgrade_database

    shown_db, _ = guarded_database(upgrade_database)
    try:
        # Pinned: the worker serves that directory. Otherwise it follows the registry's champion
        # (adopting the bootstrap model as the first one), so a retraining promoted by the
        # scheduler or `finsent retrain --now` reaches it without a restart.
        model_dir = run_model(
            settings,
            pinned=pinned,
            on_database=_on_database,
            announce=typer.echo,
            warn=lambda line: typer.echo(line, err=True),
        )
    except ServingError as exc:
        fail(str(exc))
    run_pipeline(
        settings,
        model_dir,
        pinned=pinned is not None,
        demo=DemoOptions(demo_items, demo_rate, exit_when_done) if demo else None,
        quiet=quiet,
        on_database=_on_database,
        on_error=_stopped_by,
        upgrade=upgrade,
    )
    typer.echo(f"stopped; results are in {shown_db}")


def _on_database(action: Callable[[str], T]) -> T:
    """`action(url)` on the configured database; its errors end the command in one line."""
    return guarded_database(action)[1]


def _stopped_by(exc: RunError) -> NoReturn:
    """The run stops early: exit 1 when the demo did not end as it should, 2 otherwise."""
    fail(str(exc), code=EXIT_PROBLEM if isinstance(exc, DemoFailed) else EXIT_USAGE)
