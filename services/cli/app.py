"""The `finsent` command: the one entry point to every service."""

from __future__ import annotations

import typer

from bert_core.errors import BertCoreError
from services.cli import (
    alerter_command,
    dashboard_command,
    db_commands,
    dispatcher_command,
    encoder_commands,
    ingest_commands,
    learning_commands,
    model_commands,
    retrain_commands,
    run_command,
    subscription_commands,
    worker_commands,
)
from services.cli.common import quiet_alembic
from services.cli.errors import fail
from services.logging_setup import configure_logging
from services.settings import get_settings

app = typer.Typer(
    help="finsent: real-time financial news topic + sentiment monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(model_commands.train)
app.command()(model_commands.evaluate)
app.command()(model_commands.predict)
app.command("pretrain-mlm")(model_commands.pretrain_mlm)
app.command()(run_command.run)
app.command()(ingest_commands.init)
app.command()(ingest_commands.ingest)
app.command("serve-http")(ingest_commands.serve_http)
app.command("poll-feed")(ingest_commands.poll_feed)
app.command()(worker_commands.worker)
app.command()(alerter_command.alerter)
app.add_typer(db_commands.db_app, name="db")
app.add_typer(subscription_commands.subscriptions_app, name="subscriptions")
app.add_typer(learning_commands.labels_app, name="labels")
app.add_typer(learning_commands.models_app, name="models")
app.add_typer(encoder_commands.encoders_app, name="encoders")
app.command()(dispatcher_command.dispatcher)
app.command()(retrain_commands.retrain)
app.command()(retrain_commands.scheduler)
app.add_typer(dashboard_command.dashboard_app, name="dashboard")


def main() -> None:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: a bad FINSENT_* variable
        fail(f"invalid setting: {' '.join(str(exc).split())}")
    configure_logging(settings.log_level, settings.log_format)
    quiet_alembic()  # alembic's plugins log at INFO as they load; the commands say what matters
    try:
        app()
    except BertCoreError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
