"""`finsent labels ...` and `finsent models ...`: analyst labels and the model registry.

Like the other database commands these migrate the database first, so they work on a fresh
installation, and every error ends as one line. `labels import` stores the good rows, lists
every rejected one with its row number and exits 1 when there is any; with `--strict` it
stores nothing unless every row is good. `models promote` / `rollback` ask before changing what the workers
serve (unless `--yes`) and announce the change on `model.events` when a broker is
configured; without one, workers find the new champion by polling the registry.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from services.cli.choices import ModelStatus, Task
from services.cli.common import BootstrapServerOption, DatabaseUrlOption, JsonOption, confirm, echo_json
from services.cli.errors import fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.storage.learning_models import ModelVersionRow

T = TypeVar("T")

labels_app = typer.Typer(
    help="Analyst labels: import files, list them, see counts and disagreements.", no_args_is_help=True
)
models_app = typer.Typer(
    help="The model registry: versions, the champion the workers serve, promotion and rollback.",
    no_args_is_help=True,
)


@labels_app.callback()
@models_app.callback()
def _quiet() -> None:
    # Importing services.learning imports services.storage and so alembic, whose plugins log
    # at INFO when they load: silence them before any command imports anything.
    from services.cli.common import quiet_alembic

    quiet_alembic()


def _in_session(action: Callable[[Session], T]) -> T:
    """`action` in one transaction on the migrated database; known errors become `fail`."""
    from services.cli.common import in_transaction
    from services.learning.holdout import HoldoutError
    from services.learning.registry import RegistryError

    try:
        return in_transaction(action)
    except (RegistryError, HoldoutError) as exc:
        fail(str(exc))


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


def _now() -> datetime:
    return datetime.now(UTC)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- labels


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
        report = _in_session(
            lambda session: import_labels(
                session,
                content,
                name=file.name,
                default_labeller=labeller or _user(),
                source=source or f"import:{file.name}",
                now=_now(),
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
    limit: Annotated[int, typer.Option(min=1, help="Newest N labels")] = 20,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """The newest labels as a table.

    --json: an array of {id, task, label, labeller, split, source, event_id, text,
    created_at, updated_at} (times in ISO 8601, UTC).
    """
    from services.cli.subscription_commands import format_table
    from services.learning.label_store import list_labels

    task_name = task.value if task is not None else None
    rows = _in_session(lambda session: list_labels(session, task=task_name, labeller=labeller, limit=limit))
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
        (str(r.id), r.task, r.label, r.labeller, r.split, _when(r.updated_at), _short(r.text, 60))
        for r in rows
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
    from services.cli.subscription_commands import format_table
    from services.learning.label_store import label_stats

    result = _in_session(label_stats)
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
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Texts whose labellers disagree (for the same task), newest first.

    --json: an array of {task, text, labels: {labeller: label}, last_updated}.
    """
    from services.learning.label_store import disagreements

    task_name = task.value if task is not None else None
    found = _in_session(lambda session: disagreements(session, task=task_name, limit=limit))
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
        typer.echo(f"{d.task:<9} {_short(d.text, 70)}\n          {given}")


# --------------------------------------------------------------------------- models


def _dev_f1(row: ModelVersionRow, task: str) -> str:
    report = row.metrics.get("dev", {}).get(task) if isinstance(row.metrics, dict) else None
    if isinstance(report, dict) and "macro_f1" in report:
        return f"{float(report['macro_f1']):.3f}"
    return "-"


@models_app.command("list")
def list_models(
    status: Annotated[ModelStatus | None, typer.Option(help="Only versions with this status")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Registered versions, newest first, with their dev macro-F1.

    --json: an array of what `models show --json` prints per version: {version, status,
    parent, created_at, status_changed_at, path, sha256, data_hash, dev: {task: {accuracy,
    macro_f1, n}}, history: [line]}.
    """
    from services.cli.subscription_commands import format_table
    from services.learning.registry import list_versions

    status_name = status.value if status is not None else None
    rows = _in_session(lambda session: list_versions(session, status=status_name, limit=limit))
    if as_json:
        echo_json([_describe(r) for r in rows])
        return
    if not rows:
        typer.echo("no model versions; add one with `finsent models register DIR`")
        return
    header = ("VERSION", "STATUS", "CREATED", "PARENT", "SENTIMENT F1", "TOPIC F1", "CHANGED")
    table = [
        (
            r.version,
            r.status,
            _when(r.created_at),
            r.parent or "-",
            _dev_f1(r, "sentiment"),
            _dev_f1(r, "topic"),
            _when(r.status_changed_at),
        )
        for r in rows
    ]
    typer.echo(format_table(header, table))


def _describe(row: ModelVersionRow) -> dict[str, Any]:
    return {
        "version": row.version,
        "status": row.status,
        "parent": row.parent,
        "created_at": row.created_at.isoformat(),
        "status_changed_at": row.status_changed_at.isoformat(),
        "path": row.path,
        "sha256": row.sha256,
        "data_hash": row.data_hash,
        "dev": {
            task: {k: rep.get(k) for k in ("accuracy", "macro_f1", "n")}
            for task, rep in (row.metrics.get("dev", {}) if isinstance(row.metrics, dict) else {}).items()
            if isinstance(rep, dict)
        },
        "history": (row.note or "").splitlines(),
    }


@models_app.command()
def show(
    version: Annotated[str, typer.Argument(help="Version (see `finsent models list`)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """One version: lineage, hashes, path, dev metrics and its status history."""
    from services.learning.registry import get_version

    row = _in_session(lambda session: get_version(session, version))
    if row is None:
        fail(f"no model version {version!r} (see `finsent models list`)")
    info = _describe(row)
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key in (
        "version",
        "status",
        "parent",
        "created_at",
        "status_changed_at",
        "path",
        "sha256",
        "data_hash",
    ):
        typer.echo(f"{key + ':':<19}{info[key] if info[key] is not None else '-'}")
    for task, rep in info["dev"].items():
        acc, f1 = rep.get("accuracy"), rep.get("macro_f1")
        if acc is not None and f1 is not None:
            typer.echo(f"{'dev ' + task + ':':<19}accuracy {acc:.4f}, macro-F1 {f1:.4f}, n={rep.get('n')}")
    typer.echo("history:")
    for line in info["history"]:
        typer.echo(f"  {line}")


def _announce(row: ModelVersionRow, kind: str) -> None:
    """Publish the change; an unreachable broker fails the command (the change itself stands)."""
    from services.broker.errors import BrokerError
    from services.learning.events import announce_champion
    from services.settings import get_settings

    settings = get_settings()
    try:
        sent = announce_champion(settings, row, kind=kind)  # type: ignore[arg-type]
    except BrokerError as exc:
        fail(
            f"{row.version} is the champion, but announcing it on "
            f"{settings.kafka.topic_model_events} failed: "
            f"{exc}; workers switch when they next poll the registry (re-run to announce again)",
            code=1,
        )
    if sent:
        typer.echo(f"announced on {settings.kafka.topic_model_events} ({settings.kafka.kafka_bootstrap})")
    else:
        typer.echo(
            "no broker configured (FINSENT_KAFKA_BOOTSTRAP): workers pick it up by polling the registry"
        )


@models_app.command()
def register(
    model_dir: Annotated[Path, typer.Argument(help="Model directory made by `finsent train` (or a retrain)")],
    champion: Annotated[
        bool, typer.Option("--champion", help="Also make it the champion (adopt it as the model to serve)")
    ] = False,
    note: Annotated[str | None, typer.Option(help="Why it is registered")] = None,
    by: Annotated[str | None, typer.Option(help="Who registers it (default: your login name)")] = None,
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Register a verified model directory (its manifest hashes are checked first)."""
    from services.learning.registry import champion as current_champion
    from services.learning.registry import promote, register_model

    who = by or _user()

    def store(session: Session) -> tuple[ModelVersionRow, str | None, bool]:
        now = _now()
        row = register_model(session, model_dir, note=note, now=now)
        before = current_champion(session)
        if not champion or row.status == "champion":
            return row, before.version if before else None, False
        promote(
            session, row.version, by=who, reason=note or "adopted with `models register --champion`", now=now
        )
        return row, before.version if before else None, True

    row, before, promoted = _in_session(store)
    typer.echo(f"registered {row.version}" + ("" if promoted else f" ({row.status})") + f" from {row.path}")
    if promoted:
        typer.echo(f"{row.version} is the champion" + (f" (was {before})" if before else ""))
        _announce(row, "promoted")


@models_app.command("promote")
def promote_cmd(
    version: Annotated[str, typer.Argument(help="Version to serve")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    force: Annotated[
        bool, typer.Option(help="Promote even a version the gate (or a rollback) rejected")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the version's history)")] = "manual promotion",
    by: Annotated[str | None, typer.Option(help="Who promotes (default: your login name)")] = None,
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Make VERSION the champion; the previous champion is retired (a rollback target)."""
    from services.learning.registry import champion, get_version, promote

    def look(session: Session) -> tuple[ModelVersionRow | None, ModelVersionRow | None]:
        return get_version(session, version), champion(session)

    target, current = _in_session(look)
    if target is None:
        fail(f"no model version {version!r} (see `finsent models list`)")
    if current is not None and current.version == version:
        typer.echo(f"{version} is already the champion")
        _announce(current, "promoted")
        return
    confirm(f"Serve {version} instead of {current.version if current else 'no model'}?", yes=yes)
    row = _in_session(
        lambda session: promote(session, version, by=by or _user(), reason=reason, now=_now(), force=force)
    )
    typer.echo(f"{row.version} is the champion" + (f" (was {current.version})" if current else ""))
    _announce(row, "promoted")


@models_app.command("rollback")
def rollback_cmd(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the history)")] = "manual rollback",
    by: Annotated[str | None, typer.Option(help="Who rolls back (default: your login name)")] = None,
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Serve the previous champion again (the current one is marked rejected).

    The previous champion is the most recently retired version; because the rolled-back
    one is rejected, a second rollback goes one step further back.
    """
    from services.learning.registry import champion, previous_champion, rollback

    def look(session: Session) -> tuple[ModelVersionRow | None, ModelVersionRow | None]:
        return champion(session), previous_champion(session)

    current, previous = _in_session(look)
    if previous is None:
        fail("no previous champion to roll back to (no version is retired)")
    confirm(
        f"Roll back from {current.version if current else 'no champion'} to {previous.version}"
        + (f" (and mark {current.version} rejected)" if current else "")
        + "?",
        yes=yes,
    )
    # The champion named in the question: if another promotion lands before the answer, the
    # registry refuses instead of rejecting a model nobody confirmed.
    expected = current.version if current else None
    row = _in_session(
        lambda session: rollback(
            session, by=by or _user(), now=_now(), reason=reason, expected_champion=expected
        )
    )
    typer.echo(f"{row.version} is the champion again" + (f"; {current.version} rejected" if current else ""))
    _announce(row, "rollback")
