"""`finsent prune --older-than DAYS`: delete stories (with their tickers and predictions)
published more than DAYS days ago, in bounded batches (services/storage/retention.py).

It says what it would delete and asks first, unless `--yes`; without a terminal to ask on it
refuses rather than guess. Labels, alerts, sentiment buckets and the model registry stay
(docs/operations.md, "Backups and retention").
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from services.cli.common import DatabaseUrlOption, guarded_database, quiet_alembic
from services.cli.errors import fail

# A day at least: the alerter re-judges late stories from stored predictions for
# FINSENT_ALERTER_CHECKPOINT_HOURS (6 h by default) of event time.
MIN_DAYS = 1.0
# A hundred years: enough for any retention, and far from the calendar's end (year 1).
MAX_DAYS = 36_500.0


def prune(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            min=MIN_DAYS,
            max=MAX_DAYS,
            metavar="DAYS",
            help="Delete stories published more than DAYS days ago (1 to 36500)",
        ),
    ],
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Stories deleted per transaction")
    ] = 5_000,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking")] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Delete old news (stories, their tickers and predictions) from the database, in batches."""
    quiet_alembic()
    from services.storage import (
        PruneCounts,
        count_older,
        current_revision,
        make_engine,
        prune_older,
        retention_cutoff,
    )

    shown, revision = guarded_database(current_revision)
    if revision is None:
        fail(f"database {shown} has no schema yet: nothing to prune (`finsent db upgrade` creates it)")

    cutoff = retention_cutoff(datetime.now(UTC), older_than)
    when = cutoff.isoformat(timespec="seconds")

    def count(url: str) -> PruneCounts:
        engine = make_engine(url)
        try:
            return count_older(engine, cutoff)
        finally:
            engine.dispose()

    _, found = guarded_database(count)
    if found.news_items == 0:
        typer.echo(f"database {shown}: no story published before {when}; nothing to delete")
        return
    typer.echo(
        f"database {shown}: {found.news_items} stories published before {when}, with "
        f"{found.predictions} predictions and {found.news_tickers} ticker rows, will be deleted"
    )
    if not yes:
        if not sys.stdin.isatty():
            fail("not deleting without confirmation: run it in a terminal or pass --yes")
        if not typer.confirm("delete them?", default=False):
            fail("nothing deleted", code=1)

    def report(batch: PruneCounts) -> None:
        typer.echo(f"  deleted {batch.news_items} stories ({batch.predictions} predictions)")

    def run(url: str) -> PruneCounts:
        engine = make_engine(url)
        try:
            return prune_older(engine, cutoff, batch_size=batch_size, on_batch=report)
        finally:
            engine.dispose()

    _, done = guarded_database(run)
    typer.echo(
        f"deleted {done.news_items} stories, {done.predictions} predictions and "
        f"{done.news_tickers} ticker rows published before {when} in {done.batches} batches"
    )
