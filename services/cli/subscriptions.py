"""`finsent subscriptions add | list | remove | test`: who hears about which alerts, and how.

Every input is validated by `services.delivery.build_subscription` before anything is
stored, so a typo ends as one line (with the nearest topic name when it looks like one),
not as a subscription that silently never fires. Secrets are given by reference only
(`--secret-ref env:NAME` or `file:/path`); the database never sees them. The database is
migrated first, like `finsent worker`, so these work on a fresh installation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from services.cli.choices import Channel, Scope, Severity
from services.cli.common import DatabaseUrlOption, JsonOption, YesOption, confirm_destructive, echo_json
from services.cli.errors import fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.delivery.model import Subscription

T = TypeVar("T")

subscriptions_app = typer.Typer(
    help="Alert subscriptions: filters (scope, topics/tickers, severity) and channels.", no_args_is_help=True
)


def _in_session(action: Callable[[Session], T], *, read_only: bool = False) -> T:
    from services.cli.common import in_transaction

    return in_transaction(action, read_only=read_only)


@subscriptions_app.command()
def add(
    name: Annotated[str, typer.Option("--name", help="Unique name (letters, digits, . _ -)")],
    channel: Annotated[Channel, typer.Option("--channel", help="How the alerts are sent")],
    target: Annotated[
        str | None,
        typer.Option(help="URL (webhook, slack), e-mail address, or logger name / 'stdout' (log)"),
    ] = None,
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", help="Alert scope (repeatable; default: all)")
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            help="Topic (exact name, e.g. 'Energy / Oil') or ticker (AAPL, $aapl) (repeatable; default: all)",
        ),
    ] = None,
    min_severity: Annotated[Severity, typer.Option(help="Lowest severity delivered")] = Severity.warning,
    secret_ref: Annotated[
        str | None,
        typer.Option(help="env:NAME or file:/path of the webhook HMAC key or SMTP password (not the value)"),
    ] = None,
    digest_minutes: Annotated[
        int | None, typer.Option(help="Send one digest every N minutes instead of each alert at once")
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Add a subscription (validated; nothing is stored if anything is wrong)."""
    from services.delivery.repository import SubscriptionExists, add_subscription
    from services.delivery.secrets import SecretError, resolve_secret
    from services.delivery.subscriptions import SubscriptionError, build_subscription, display_target
    from services.settings import get_settings

    try:
        sub = build_subscription(
            name=name,
            channel=channel.value,
            target=target,
            scopes=[s.value for s in scope or ()],
            keys=key or (),
            min_severity=min_severity.value,
            secret_ref=secret_ref,
            digest_minutes=digest_minutes,
            policy=get_settings().runtime.outbound_policy,
        )
    except SubscriptionError as exc:
        fail(str(exc))

    def store(session: Session) -> Subscription:
        return add_subscription(session, subscription=sub, now=datetime.now(UTC))

    try:
        stored = _in_session(store)
    except SubscriptionExists as exc:
        fail(f"{exc}; remove it first with `finsent subscriptions remove {sub.name}`")
    typer.echo(f"added subscription {stored.name}: {_describe(stored, display_target(stored))}")
    if stored.secret_ref is not None:
        try:
            resolve_secret(stored.secret_ref)
        except SecretError as exc:
            typer.echo(f"note: {exc} here; the dispatcher's environment must provide it", err=True)
    if stored.channel == "email" and not get_settings().delivery.smtp_host:
        typer.echo("note: FINSENT_SMTP_HOST is not set; the dispatcher needs it to send e-mail", err=True)


def _describe(sub: Subscription, target: str) -> str:
    scopes = ", ".join(sub.scopes) or "all scopes"
    keys = ", ".join(sub.keys) or "all topics and tickers"
    when = f"digest every {sub.digest_minutes} min" if sub.digest_minutes else "immediate"
    return f"{sub.channel} {target}; {scopes}; {keys}; severity >= {sub.min_severity}; {when}"


@subscriptions_app.command("list")
def list_(
    as_json: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List subscriptions as a table.

    --json: an array of {name, channel, target (secrets cut), scopes, keys, min_severity,
    digest_minutes (null: immediate), enabled}.
    """
    from services.delivery.repository import list_subscriptions
    from services.delivery.subscriptions import display_target

    subs = _in_session(list_subscriptions, read_only=True)
    if as_json:
        echo_json(
            [
                {
                    "name": s.name,
                    "channel": s.channel,
                    "target": display_target(s),
                    "scopes": list(s.scopes),
                    "keys": list(s.keys),
                    "min_severity": s.min_severity,
                    "digest_minutes": s.digest_minutes,
                    "enabled": s.enabled,
                }
                for s in subs
            ]
        )
        return
    if not subs:
        typer.echo("no subscriptions; add one with `finsent subscriptions add`")
        return
    header = ("NAME", "CHANNEL", "TARGET", "SCOPES", "KEYS", "MIN SEVERITY", "DELIVERY", "ENABLED")
    rows = [
        (
            s.name,
            s.channel,
            display_target(s),
            ",".join(s.scopes) or "all",
            ", ".join(s.keys) or "all",
            s.min_severity,
            f"digest {s.digest_minutes} min" if s.digest_minutes else "immediate",
            "yes" if s.enabled else "no",
        )
        for s in subs
    ]
    typer.echo(format_table(header, rows))


def format_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in (header, *rows))
    return "\n".join(line.rstrip() for line in lines)


@subscriptions_app.command()
def remove(
    name: Annotated[str, typer.Argument(help="Name of the subscription")],
    yes: YesOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Remove a subscription, with its pending deliveries and delivery history (asks first).

    Exit codes: 0 removed; 1 not confirmed; 2 no such subscription, or no terminal to ask
    on and no --yes.
    """
    from services.delivery.repository import count_deliveries, get_subscription, remove_subscription

    def look(session: Session) -> int | None:
        if get_subscription(session, name=name) is None:
            return None
        return count_deliveries(session, name=name)

    deliveries = _in_session(look)
    if deliveries is None:
        fail(f"no subscription named {name!r} (see `finsent subscriptions list`)")
    confirm_destructive(
        f"Remove subscription {name} and delete its {deliveries} deliveries (pending and history)?", yes=yes
    )
    if not _in_session(lambda session: remove_subscription(session, name=name)):
        fail(f"no subscription named {name!r} (removed meanwhile?)")
    typer.echo(f"removed subscription {name} and {deliveries} deliveries")


@subscriptions_app.command()
def test(
    name: Annotated[str, typer.Argument(help="Name of the subscription")],
    database_url: DatabaseUrlOption = None,
) -> None:
    """Send a clearly marked test notification through the subscription's real channel."""
    from services.delivery.repository import get_subscription
    from services.delivery.trial import send_test
    from services.settings import get_settings

    sub = _in_session(lambda session: get_subscription(session, name=name))
    if sub is None:
        fail(f"no subscription named {name!r} (see `finsent subscriptions list`)")
    outcome = send_test(sub, get_settings(), now=datetime.now(UTC))
    if not outcome.ok:
        fail(f"test notification to {outcome.description}: {outcome.detail}", code=1)
    typer.echo(f"test notification to {outcome.description}: {outcome.detail} in {outcome.seconds:.2f} s")
