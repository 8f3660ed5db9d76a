"""The `finsent` command: the one entry point to every service."""

from __future__ import annotations

import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
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
from services.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_PROBLEM,
    EXIT_USAGE,
    fail,
    settings_error_line,
    usage_error_line,
)
from services.logging_setup import configure_logging
from services.settings import get_settings

app = typer.Typer(
    help="finsent: real-time financial news topic + sentiment monitor.\n\n"
    "Exit codes: 0 success; 1 the command ran and found a problem (a failed delivery, a rejected "
    "import, a doctor check) or hit a bug (its traceback goes to FINSENT_HOME/logs/crash-*.txt); 2 bad "
    "input (argument, option, FINSENT_* setting, unreachable or unsupported service); 130 "
    "interrupted. `finsent doctor` checks an installation; `finsent "
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

    # Help (asked for, or a group's for a group named without a subcommand), the version and
    # shell completion work even with a bad setting.
    args = sys.argv[1:]
    asks_help = bool({"--help", "-h"} & set(args)) or args[:1] == ["--version"] or names_bare_group(args)
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
        fail(usage_error_line(exc, command_path=command_path(sys.argv[1:])), code=exc.exit_code)
    except typer.Abort:
        fail("aborted", code=EXIT_INTERRUPTED)
    except BertCoreError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=EXIT_INTERRUPTED)
    except Exception as exc:  # the last resort: a bug, said in one line; its traceback kept in a file
        if debugging():
            raise
        kept = keep_traceback()
        where = f"its traceback is in {kept}" if kept is not None else f"{DEBUG_SWITCH} shows the traceback"
        fail(
            f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())} (this is a bug: please report "
            f"it; {where})",
            code=EXIT_PROBLEM,
        )
    sys.exit(result if isinstance(result, int) else 0)


# What shows the traceback of an unexpected error instead of its one line: the log level
# that shows everything else too.
DEBUG_SWITCH = "FINSENT_LOG_LEVEL=DEBUG"


def debugging() -> bool:
    """Whether FINSENT_LOG_LEVEL is DEBUG (from the environment or .env; the environment
    alone when the settings are invalid, as `doctor` runs with them)."""
    try:
        return get_settings().runtime.log_level == "DEBUG"
    except Exception:  # invalid settings: fall back to the variable itself
        return os.environ.get("FINSENT_LOG_LEVEL", "").strip().upper() == "DEBUG"


def keep_traceback() -> Path | None:
    """Write the exception being handled to FINSENT_HOME/logs/crash-<time>-<pid>.txt, so a
    service that died of a bug leaves its traceback for the report while its log and the
    terminal get one line; None where that directory cannot be written."""
    try:
        logs = get_settings().logs_dir
    except Exception:  # invalid settings: nowhere agreed to write
        return None
    path = logs / f"crash-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.txt"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
    except OSError:
        return None
    return path


def names_bare_group(args: list[str]) -> bool:
    """Whether the arguments name a command group and nothing after it (`finsent alerts`,
    `finsent dashboard users`, `finsent` alone): click answers that with the group's help
    (exit 2), which needs no settings. Read from the Typer objects, not click's tree, which
    takes a tenth of a second to build."""
    from typer.main import solve_typer_info_defaults
    from typer.models import TyperInfo

    group = TyperInfo(app)
    for arg in args:
        groups = group.typer_instance.registered_groups if group.typer_instance is not None else []
        found = next((g for g in groups if g.name == arg), None)
        if found is None:  # a command, an option or a typo: not a bare group
            return False
        group = found
    return bool(solve_typer_info_defaults(group).no_args_is_help)


def command_path(args: list[str]) -> str:
    """The command the arguments name, for a usage error click raised without its context:
    `finsent db current` for ["db", "current", "--database-url"]."""
    import typer.main

    command = typer.main.get_command(app)
    path = ["finsent"]
    for arg in args:
        commands = getattr(command, "commands", None)
        if not commands or arg not in commands:
            break
        command = commands[arg]
        path.append(arg)
    return " ".join(path)
