"""`finsent doctor`: is this installation ready to run, and if not, what to do."""

from __future__ import annotations

import logging

import typer

from services.cli.common import BootstrapServerOption, DatabaseUrlOption, JsonOption, echo_json
from services.cli.doctor_checks import Check, run_checks
from services.cli.errors import EXIT_PROBLEM


def format_check(check: Check) -> str:
    line = f"{'OK' if check.ok else 'PROBLEM':<8} {check.name:<10} {check.detail}"
    if not check.ok and check.fix:
        line += f"\n{'':<19} fix: {check.fix}"
    return line


def doctor(
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check this installation: each part OK, or PROBLEM with a one-line fix.

    Checks the settings, the broker (3 s timeout) and its topics, the database and its
    migrations, the model directory and its hashes, the seed data, the files named by
    FINSENT_WATCHLIST, FINSENT_HOLDOUT_SENTIMENT_DATA, FINSENT_HOLDOUT_TOPIC_DATA and
    FINSENT_SMTP_PASSWORD_FILE (where set), the CPU's features and the free disk in
    FINSENT_HOME. Secrets are masked; nothing is created or changed.

    Exit codes: 0 every check is OK; 1 at least one PROBLEM; 2 a bad option.

    --json: {ok, checks: [{name, ok, detail, fix}]}.
    """
    # kafka-python logs every refused connection; the broker check reports it once.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    checks = run_checks()
    problems = sum(not c.ok for c in checks)
    if as_json:
        echo_json({"ok": problems == 0, "checks": [c.to_dict() for c in checks]})
    else:
        for check in checks:
            typer.echo(format_check(check))
        typer.echo("all checks OK" if not problems else f"{problems} problem(s) found")
    if problems:
        raise typer.Exit(EXIT_PROBLEM)
