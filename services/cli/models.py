"""`finsent models ...`: the model registry.

Like the other database commands these migrate the database first, so they work on a fresh
installation, and every error ends as one line; `list` and `show` only read, and on a SQLite
file that does not exist say so rather than create it. `models promote` / `rollback` ask
before changing what the workers serve (`--yes` to skip; without a terminal to ask on they
refuse unless given `--yes`) and announce the change on `model.events` when a broker is
configured; without one, workers find the new champion by polling the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli.choices import ModelStatus
from services.cli.common import (
    BootstrapServerOption,
    DatabaseUrlOption,
    JsonOption,
    YesOption,
    confirm_destructive,
    echo_json,
)
from services.cli.errors import fail
from services.cli.learning_common import in_session, login_name, quiet_on_load, utc_now, when

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.storage.learning_models import ModelVersionRow

models_app = typer.Typer(
    help="The model registry: versions, the champion the workers serve, promotion and rollback.",
    no_args_is_help=True,
)


models_app.callback()(quiet_on_load)


def _dev_f1(row: ModelVersionRow, task: str) -> str:
    report = row.metrics.get("dev", {}).get(task) if isinstance(row.metrics, dict) else None
    if isinstance(report, dict) and "macro_f1" in report:
        return f"{float(report['macro_f1']):.3f}"
    return "-"


@models_app.command("list")
def list_models(
    status: Annotated[ModelStatus | None, typer.Option(help="Only versions with this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest N versions")] = 50,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Registered versions, newest first, with their dev macro-F1.

    --json: an array of what `models show --json` prints per version: {version, status,
    parent, created_at, status_changed_at, path, sha256, data_hash, dev: {task: {accuracy,
    macro_f1, n}}, history: [line]}.
    """
    from services.cli.subscriptions import format_table
    from services.learning.registry import list_versions

    status_name = status.value if status is not None else None
    _require_database()
    rows = in_session(lambda session: list_versions(session, status=status_name, limit=limit))
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
            when(r.created_at),
            r.parent or "-",
            _dev_f1(r, "sentiment"),
            _dev_f1(r, "topic"),
            when(r.status_changed_at),
        )
        for r in rows
    ]
    typer.echo(format_table(header, table))


def _require_database() -> None:
    """For the commands that only read: a SQLite file that is not there is one line saying
    so (a typo in the URL must not leave an empty database behind), not created."""
    from services.cli.common import guarded_database
    from services.storage import require_database

    guarded_database(require_database)


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

    _require_database()
    row = in_session(lambda session: get_version(session, version))
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
    model_dir: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="Model directory made by `finsent train` (or a retrain)"),
    ],
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

    who = by or login_name()

    def store(session: Session) -> tuple[ModelVersionRow, str | None, bool]:
        now = utc_now()
        row = register_model(session, model_dir, note=note, now=now)
        before = current_champion(session)
        if not champion or row.status == "champion":
            return row, before.version if before else None, False
        promote(
            session, row.version, by=who, reason=note or "adopted with `models register --champion`", now=now
        )
        return row, before.version if before else None, True

    row, before, promoted = in_session(store)
    typer.echo(f"registered {row.version}" + ("" if promoted else f" ({row.status})") + f" from {row.path}")
    if promoted:
        typer.echo(f"{row.version} is the champion" + (f" (was {before})" if before else ""))
        _announce(row, "promoted")


@models_app.command("promote")
def promote_cmd(
    version: Annotated[str, typer.Argument(help="Version to serve")],
    yes: YesOption = False,
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

    target, current = in_session(look)
    if target is None:
        fail(f"no model version {version!r} (see `finsent models list`)")
    if current is not None and current.version == version:
        typer.echo(f"{version} is already the champion")
        _announce(current, "promoted")
        return
    confirm_destructive(f"Serve {version} instead of {current.version if current else 'no model'}?", yes=yes)
    row = in_session(
        lambda session: promote(
            session, version, by=by or login_name(), reason=reason, now=utc_now(), force=force
        )
    )
    typer.echo(f"{row.version} is the champion" + (f" (was {current.version})" if current else ""))
    _announce(row, "promoted")


@models_app.command("rollback")
def rollback_cmd(
    yes: YesOption = False,
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

    current, previous = in_session(look)
    if previous is None:
        fail("no previous champion to roll back to (no version is retired)")
    confirm_destructive(
        f"Roll back from {current.version if current else 'no champion'} to {previous.version}"
        + (f" (and mark {current.version} rejected)" if current else "")
        + "?",
        yes=yes,
    )
    # The champion named in the question: if another promotion lands before the answer, the
    # registry refuses instead of rejecting a model nobody confirmed.
    expected = current.version if current else None
    row = in_session(
        lambda session: rollback(
            session, by=by or login_name(), now=utc_now(), reason=reason, expected_champion=expected
        )
    )
    typer.echo(f"{row.version} is the champion again" + (f"; {current.version} rejected" if current else ""))
    _announce(row, "rollback")
