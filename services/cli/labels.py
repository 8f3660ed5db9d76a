"""`finsent labels ...`: analyst labels.

Like the other database commands these migrate the database first, so they work on a fresh
installation, and every error ends as one line. `labels import` stores the good rows, lists
every rejected one with its row number and exits 1 when there is any; with `--strict` it
stores nothing unless every row is good.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli.choices import Task
from services.cli.common import DatabaseUrlOption, JsonOption, echo_json
from services.cli.errors import fail
from services.cli.learning_common import in_session, login_name, quiet_on_load, short, utc_now, when

if TYPE_CHECKING:
    pass

labels_app = typer.Typer(
    help="Analyst labels: import files, list them, see counts and disagreements.", no_args_is_help=True
)
labels_app.callback()(quiet_on_load)


@labels_app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(help="CSV, TSV or JSONL: text or event_id, task, label[, labeller]")
    ],
    labeller: Annotated[
        str | None,
        typer.Option(help="Labeller of rows without a labeller column (default: your login name)"),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Where the labels come from (default: import:<file name>)")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(help="Store nothing if any row is bad, instead of the good rows (exit 1 either way)"),
    ] = False,
    show_errors: Annotated[int, typer.Option(min=0, help="Bad rows to print (all are counted)")] = 20,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Import labels; a relabel by the same labeller replaces their earlier label.

    `label` is a class id or name (e.g. 0, bearish, "Energy / Oil"); rows given by `event_id`
    take the stored story's headline as their text.

    Every row that cannot be read or is invalid is rejected and listed with its row number (a
    CSV row is the line it starts on, the header being row 1), including a quote that is
    never closed or that takes in the rows after it: rows are never merged. The good rows are
    stored (with --strict: none). Exit codes: 0 every row imported; 1 some row rejected;
    2 the file cannot be imported at all (missing, not UTF-8, no rows, a missing column).
    Importing the same file again changes nothing already stored, so fix the rejected rows
    and import it again.
    """
    from services.learning.label_import import (
        LabelFileError,
        StrictImportError,
        import_labels,
        read_label_file,
    )
    from services.settings import get_settings

    try:
        content = read_label_file(file)
    except LabelFileError as exc:
        fail(str(exc))
    settings = get_settings()
    try:
        report = in_session(
            lambda session: import_labels(
                session,
                content,
                name=file.name,
                default_labeller=labeller or login_name(),
                source=source or f"import:{file.name}",
                now=utc_now(),
                recent_share=settings.learning.label_recent_share,
                strict=strict,
            )
        )
    except StrictImportError as exc:
        _print_row_errors(exc.report.errors, show_errors)
        fail(
            f"{file}: {len(exc.report.errors)} of {exc.report.rows} row(s) are bad; "
            "nothing imported (--strict)",
            code=1,
        )
    counts = report.counts
    typer.echo(
        f"{file}: {report.rows} row(s): {counts.inserted} imported, {counts.updated} updated, "
        f"{counts.unchanged} unchanged, {len(report.errors)} rejected"
        + (f", {counts.duplicates} superseded by a later row for the same text" if counts.duplicates else "")
    )
    if report.ignored_columns:
        typer.echo(f"note: ignored column(s): {', '.join(report.ignored_columns)}", err=True)
    _print_row_errors(report.errors, show_errors)
    if report.errors:
        fail(
            f"{file}: {len(report.errors)} of {report.rows} row(s) rejected, the others stored; fix them "
            "and import the file again (stored rows stay unchanged), or use --strict to store none",
            code=1,
        )


def _print_row_errors(errors: list[Any], limit: int) -> None:
    for error in errors[:limit]:
        typer.echo(f"  {error}", err=True)
    if len(errors) > limit:
        typer.echo(f"  … and {len(errors) - limit} more bad row(s)", err=True)


@labels_app.command("list")
def list_labels_cmd(
    task: Annotated[Task | None, typer.Option(help="Only this task's labels")] = None,
    labeller: Annotated[str | None, typer.Option(help="Only this labeller's labels")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest N labels")] = 20,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """The newest labels as a table.

    --json: an array of {id, task, label, labeller, split, source, event_id, text,
    created_at, updated_at} (times in ISO 8601, UTC).
    """
    from services.cli.subscriptions import format_table
    from services.learning.label_store import list_labels

    task_name = task.value if task is not None else None
    rows = in_session(
        lambda session: list_labels(session, task=task_name, labeller=labeller, limit=limit), read_only=True
    )
    if as_json:
        keys = ("id", "task", "label", "labeller", "split", "source", "event_id", "text")
        echo_json(
            [
                {**{k: getattr(r, k) for k in keys}, "created_at": r.created_at, "updated_at": r.updated_at}
                for r in rows
            ]
        )
        return
    if not rows:
        typer.echo("no labels; import some with `finsent labels import FILE`")
        return
    header = ("ID", "TASK", "LABEL", "LABELLER", "SPLIT", "UPDATED", "TEXT")
    table = [
        (str(r.id), r.task, r.label, r.labeller, r.split, when(r.updated_at), short(r.text, 60)) for r in rows
    ]
    typer.echo(format_table(header, table))


@labels_app.command()
def stats(
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Labels per task and split, labellers, disagreements, and the newest label id.

    --json: {labels, texts: {task: n}, labellers, disagreements, newest_label_id,
    by_task_split: [{task, split, labels}]}.
    """
    from services.cli.subscriptions import format_table
    from services.learning.label_store import label_stats

    result = in_session(label_stats, read_only=True)
    total = sum(result.by_task_split.values())
    if as_json:
        echo_json(
            {
                "labels": total,
                "texts": result.texts,
                "labellers": result.labellers,
                "disagreements": result.disagreements,
                "newest_label_id": result.watermark,
                "by_task_split": [
                    {"task": t, "split": s, "labels": n} for (t, s), n in sorted(result.by_task_split.items())
                ],
            }
        )
        return
    typer.echo(
        f"{total} label(s) on {sum(result.texts.values())} text(s) by {result.labellers} labeller(s); "
        f"{result.disagreements} disagreement(s); newest label id {result.watermark}"
    )
    if total:
        header = ("TASK", "SPLIT", "LABELS")
        rows = [(t, s, str(n)) for (t, s), n in sorted(result.by_task_split.items())]
        typer.echo(format_table(header, rows))


@labels_app.command("disagreements")
def disagreements_cmd(
    task: Annotated[Task | None, typer.Option(help="Only this task's labels")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest N texts")] = 20,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Texts whose labellers disagree (for the same task), newest first.

    --json: an array of {task, text, labels: {labeller: label}, last_updated}.
    """
    from services.learning.label_store import disagreements

    task_name = task.value if task is not None else None
    found = in_session(lambda session: disagreements(session, task=task_name, limit=limit), read_only=True)
    if as_json:
        echo_json(
            [
                {"task": d.task, "text": d.text, "labels": d.labels, "last_updated": d.last_updated}
                for d in found
            ]
        )
        return
    if not found:
        typer.echo("no disagreements")
        return
    for d in found:
        given = "; ".join(f"{who}: {label}" for who, label in sorted(d.labels.items()))
        typer.echo(f"{d.task:<9} {short(d.text, 70)}\n          {given}")
