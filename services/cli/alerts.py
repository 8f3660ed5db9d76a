"""`finsent alerts list | show | ack | resolve`: the product's main output, from a terminal.

Reads and the analyst actions go through services.alerting.analyst, the same functions the
dashboard calls, so both show and change alerts the same way: acknowledging keeps the first
acknowledger, resolving (an analyst's close) never touches the alerter's own `status`, so a
replay cannot undo it. Like the other database commands, these migrate the database first.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli.choices import AlertFilter, Scope
from services.cli.common import DatabaseUrlOption, JsonOption, echo_json, in_transaction
from services.cli.errors import fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.storage.alert_models import AlertRow

alerts_app = typer.Typer(
    help="Alerts: list, show, acknowledge and resolve (what the dashboard's alert page does).",
    no_args_is_help=True,
)

# The keys of `alerts list --json` (and of `alerts show --json`, which adds evidence and event_ids).
ALERT_KEYS = (
    "id",
    "alert_key",
    "rule",
    "scope",
    "key",
    "severity",
    "status",
    "window_start",
    "opened_at",
    "last_detected_at",
    "resolved_at",
    "detections",
    "acknowledged_by",
    "acknowledged_at",
    "closed_by",
    "closed_at",
    "muted_until",
    "muted_by",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, *, now: datetime) -> datetime:
    """`30m`, `6h`, `2d`, `1w` before `now`, or an ISO 8601 time (UTC unless it says)."""
    match = _DURATION.match(value)
    if match:
        try:
            return now - timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        except OverflowError:  # before year 1, or more seconds than a timedelta holds
            raise ValueError(f"{value!r} reaches back before the year 1: give a shorter duration") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration (30m, 6h, 2d, 1w) nor an ISO 8601 time (2026-01-31T09:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _since(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_since(value, now=datetime.now(UTC))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


# Alert ids are 64-bit integers in the database; a larger one cannot even be looked up.
MAX_ALERT_ID = 2**63 - 1
AlertIdArgument = Annotated[
    int,
    typer.Argument(metavar="ID", min=1, max=MAX_ALERT_ID, help="Alert id (see `finsent alerts list`)"),
]


def alert_record(row: AlertRow, *, details: bool = False) -> dict[str, Any]:
    record = {key: getattr(row, key) for key in ALERT_KEYS}
    if details:
        record["evidence"] = dict(row.evidence or {})
        record["event_ids"] = list(row.event_ids or ())
    return record


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _analyst_state(row: AlertRow) -> str:
    if row.closed_at is not None:
        return f"resolved by {row.closed_by}"
    if row.acknowledged_at is not None:
        return f"acked by {row.acknowledged_by}"
    return "-"


@alerts_app.command("list")
def list_alerts(
    status: Annotated[
        AlertFilter,
        typer.Option(
            help="open/resolved/superseded: the alerter's status; attention: open and not resolved by "
            "an analyst; acknowledged: acknowledged, not resolved; closed: resolved by an analyst"
        ),
    ] = AlertFilter.open,
    scope: Annotated[Scope | None, typer.Option(help="Only alerts of this scope")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            callback=_since,
            metavar="DURATION|TIME",
            help="Only alerts opened since: 30m, 6h, 2d, 1w ago, or an ISO 8601 time",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest N alerts")] = 50,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Alerts, newest first (opened time is event time, UTC).

    --json: an array of {id, alert_key, rule, scope, key, severity, status, window_start,
    opened_at, last_detected_at, resolved_at, detections, acknowledged_by, acknowledged_at,
    closed_by, closed_at, muted_until, muted_by} (times ISO 8601; absent: null).
    """
    from services.alerting.analyst import find_alerts
    from services.cli.subscriptions import format_table

    since_at = parse_since(since, now=datetime.now(UTC)) if since is not None else None

    def read(session: Session) -> list[dict[str, Any]]:
        rows = find_alerts(
            session,
            status=status.value,
            scope=scope.value if scope is not None else None,
            since=since_at,
            limit=limit,
        )
        return [alert_record(r) for r in rows] if as_json else [_table_row(r) for r in rows]

    records = in_transaction(read, read_only=True)
    if as_json:
        echo_json(records)
        return
    if not records:
        typer.echo(f"no alerts ({status.value}); `finsent alerts list --status all` shows every alert")
        return
    header = ("ID", "SEVERITY", "STATUS", "SCOPE", "KEY", "OPENED", "LAST", "DETECTIONS", "ANALYST")
    typer.echo(format_table(header, [tuple(r.values()) for r in records]))


def _table_row(row: AlertRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "severity": row.severity,
        "status": row.status,
        "scope": row.scope,
        "key": row.key,
        "opened": _when(row.opened_at),
        "last": _when(row.last_detected_at),
        "detections": str(row.detections),
        "analyst": _analyst_state(row),
    }


@alerts_app.command()
def show(
    alert_id: AlertIdArgument,
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """One alert: its state, the analyst actions and the detection's evidence.

    --json: the keys of `alerts list --json`, plus evidence (the latest detection: window,
    counts, baseline, z score, p value) and event_ids (the stories that drove it).
    """
    from services.storage.alert_models import AlertRow

    def read(session: Session) -> dict[str, Any] | None:
        row = session.get(AlertRow, alert_id)
        return alert_record(row, details=True) if row is not None else None

    record = in_transaction(read, read_only=True)
    if record is None:
        fail(f"no alert #{alert_id} (see `finsent alerts list --status all`)")
    if as_json:
        echo_json(record)
        return
    for key in ALERT_KEYS:
        value = record[key]
        shown = _when(value) if isinstance(value, datetime) else ("-" if value is None else value)
        typer.echo(f"{key + ':':<18}{shown}")
    typer.echo("evidence:")
    for key, value in sorted(record["evidence"].items()):
        if key != "event_ids":
            typer.echo(f"  {key}: {value}")
    typer.echo(f"stories: {len(record['event_ids'])} (event ids: {', '.join(record['event_ids'][:10])})")


ByOption = Annotated[str | None, typer.Option("--by", help="Who (default: your login name)")]


@alerts_app.command("ack")
def acknowledge(
    alert_id: AlertIdArgument,
    by: ByOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Acknowledge an alert (seen); the first acknowledgement stands."""
    from services.alerting.analyst import acknowledge_alert
    from services.storage.alert_models import AlertRow

    who = by or _user()

    def act(session: Session) -> tuple[bool, str | None] | None:
        row = session.get(AlertRow, alert_id)
        if row is None:
            return None
        done = acknowledge_alert(session, alert_id=alert_id, by=who, now=datetime.now(UTC))
        return done, row.acknowledged_by

    outcome = in_transaction(act)
    if outcome is None:
        fail(f"no alert #{alert_id} (see `finsent alerts list --status all`)")
    done, earlier = outcome
    typer.echo(
        f"alert #{alert_id} acknowledged by {who}"
        if done
        else f"alert #{alert_id} was already acknowledged by {earlier}"
    )


@alerts_app.command("resolve")
def resolve(
    alert_id: AlertIdArgument,
    by: ByOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Resolve an alert as an analyst (the dashboard's "close"); acknowledges it too.

    The alerter's own status (open/resolved by the detector) is left as it is, so a replay
    of the news cannot reopen what an analyst resolved.
    """
    from services.alerting.analyst import close_alert

    who = by or _user()
    if not in_transaction(
        lambda session: close_alert(session, alert_id=alert_id, by=who, now=datetime.now(UTC))
    ):
        fail(f"no alert #{alert_id} (see `finsent alerts list --status all`)")
    typer.echo(f"alert #{alert_id} resolved by {who}")
