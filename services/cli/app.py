"""The `finsent` command: the one entry point to every service."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

# typer vendors click; its usage errors are only importable from here.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from bert_core import BertCoreError
from services.cli import (
    alerter,
    alerts,
    config,
    dashboard,
    db,
    dispatcher,
    doctor,
    encoders,
    ingest,
    labels,
    models,
    prune,
    retrain,
    run,
    subscriptions,
    teacher_targets,
    tokens,
    topics,
    train,
    upgrade_model,
    worker,
)
from services.cli.common import quiet_alembic
from services.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, fail, settings_error_line, usage_error_line
from services.logging_setup import configure_logging
from services.settings import get_settings

app = typer.Typer(
    help="finsent: real-time financial news topic + sentiment monitor.\n\n"
    "Exit codes: 0 success; 1 the command ran and found a problem (a failed delivery, a rejected "
    "import, a doctor check); 2 bad input (argument, option, FINSENT_* setting, unreachable or "
    "unsupported service); 130 interrupted. `finsent doctor` checks an installation; `finsent "
    "config` shows the effective settings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), not a copy kept in the code."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("finsent")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed: pip install -e .)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"finsent {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print finsent's version and exit",
        ),
    ] = False,
) -> None:
    """Options of `finsent` itself (the help text is the app's)."""


app.command()(train.train)
app.command()(train.evaluate)
app.command()(train.predict)
app.command("pretrain-mlm")(train.pretrain_mlm)
app.command("teacher-targets")(teacher_targets.teacher_targets)
app.command()(run.run)
app.command()(ingest.init)
app.add_typer(topics.topics_app, name="topics")
app.command()(ingest.ingest)
app.command("serve-http")(ingest.serve_http)
app.command("poll-feed")(ingest.poll_feed)
app.add_typer(tokens.tokens_app, name="tokens")
app.command()(worker.worker)
app.command()(alerter.alerter)
app.add_typer(alerts.alerts_app, name="alerts")
app.command()(config.config)
app.command()(doctor.doctor)
app.add_typer(db.db_app, name="db")
app.command()(prune.prune)
app.add_typer(subscriptions.subscriptions_app, name="subscriptions")
app.add_typer(labels.labels_app, name="labels")
app.add_typer(models.models_app, name="models")
app.add_typer(encoders.encoders_app, name="encoders")
app.command()(dispatcher.dispatcher)
app.command()(retrain.retrain)
app.command()(retrain.scheduler)
app.command("upgrade-model")(upgrade_model.upgrade_model)
app.add_typer(dashboard.dashboard_app, name="dashboard")


def main() -> None:
    from pydantic_settings import SettingsError

    # Help, the version and shell completion work even with a bad setting.
    asks_help = {"--help", "-h"} & set(sys.argv[1:]) or sys.argv[1:2] == ["--version"]
    if not asks_help and "_FINSENT_COMPLETE" not in os.environ:
        try:
            settings = get_settings()
        except (ValidationError, SettingsError) as exc:  # a bad FINSENT_* variable
            if sys.argv[1:2] != ["doctor"]:  # the doctor reports it among its checks
                fail(settings_error_line(exc))
        else:
            configure_logging(settings.runtime.log_level, settings.runtime.log_format)
    quiet_alembic()  # alembic's plugins log at INFO as they load; the commands say what matters
    try:
        # Not standalone: click's usage errors come here and leave as one line, not a box.
        result = app(prog_name="finsent", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(EXIT_USAGE)
    except ClickException as exc:
        fail(usage_error_line(exc), code=exc.exit_code)
    except typer.Abort:
        fail("aborted", code=EXIT_INTERRUPTED)
    except BertCoreError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=EXIT_INTERRUPTED)
    sys.exit(result if isinstance(result, int) else 0)
