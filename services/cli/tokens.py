"""`finsent tokens add|list|revoke`: the bearer tokens `finsent serve-http` accepts.

The tokens file (FINSENT_INGEST_TOKENS_FILE) holds only SHA-256 hashes; `add` prints the
token once and it cannot be shown again. `list` never shows a hash or a token. A revoked
token stays in the file (its name stays taken, old access-log lines stay readable) and a
running `serve-http` refuses it within a second.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli.common import YesOption, confirm_destructive
from services.cli.errors import fail
from services.settings import get_settings

tokens_app = typer.Typer(
    help="Bearer tokens for POST /news (`finsent serve-http`).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@tokens_app.command("add")
def tokens_add(
    name: Annotated[
        str, typer.Argument(help="Who the token is for, e.g. wire-feed (shown in the access log)")
    ],
    hash_only: Annotated[
        bool,
        typer.Option(
            "--hash-only",
            help="Write nothing: print the token and its NAME:SHA256 entry for FINSENT_INGEST_TOKEN_HASHES",
        ),
    ] = False,
) -> None:
    """Make a token for NAME and print it once (only its hash is kept)."""
    from services.ingest.token_file import add_token
    from services.ingest.tokens import TokenConfigError, check_name, hash_token, new_token

    path = get_settings().ingest.ingest_tokens_file
    try:
        check_name(name)
        if hash_only:
            token = new_token()
            typer.echo(f"token: {token}")
            typer.echo(f"FINSENT_INGEST_TOKEN_HASHES entry: {name}:{hash_token(token)}")
            return
        token = add_token(path, name)
    except TokenConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    typer.echo(f"token: {token}")
    typer.echo(
        f"stored the hash of {name!r} in {path}; the token is not shown again. "
        "Send it as `Authorization: Bearer <token>`."
    )


@tokens_app.command("list")
def tokens_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON list (name, created, revoked, source)")
    ] = False,
) -> None:
    """Names of the tokens, when they were made and revoked (never a hash or a token)."""
    from services.ingest.token_file import load_tokens
    from services.ingest.tokens import TokenConfigError, parse_hash_list

    settings = get_settings()
    try:
        from_file = load_tokens(settings.ingest.ingest_tokens_file)
        from_env = parse_hash_list(settings.ingest.ingest_token_hashes)
    except TokenConfigError as exc:
        fail(str(exc))
    rows = [
        {
            "name": record.name,
            "created": record.created.isoformat() if record.created else None,
            "revoked": record.revoked.isoformat() if record.revoked else None,
            "source": source,
        }
        for source, records in (("file", from_file), ("env", from_env))
        for record in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no tokens in {settings.ingest.ingest_tokens_file}; `finsent tokens add NAME` makes one")
        return
    typer.echo(f"{'NAME':<24} {'CREATED':<26} {'REVOKED':<26} SOURCE")
    for row in rows:
        typer.echo(
            f"{row['name']:<24} {row['created'] or '-':<26} {row['revoked'] or '-':<26} "
            + (
                "FINSENT_INGEST_TOKEN_HASHES"
                if row["source"] == "env"
                else str(settings.ingest.ingest_tokens_file)
            )
        )


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="Name of the token to revoke")],
    yes: YesOption = False,
) -> None:
    """Revoke a token: a running serve-http refuses it within a second; cannot be undone.

    Exit codes: 0 revoked (or revoked already); 1 not confirmed; 2 no such token, or no
    terminal to ask on and no --yes.
    """
    from services.ingest.token_file import load_tokens, revoke_token
    from services.ingest.tokens import TokenConfigError, parse_hash_list

    settings = get_settings()
    path = settings.ingest.ingest_tokens_file
    try:
        in_file = {r.name: r for r in load_tokens(path)}
        if name not in in_file:
            if any(r.name == name for r in parse_hash_list(settings.ingest.ingest_token_hashes)):
                fail(
                    f"{name!r} comes from FINSENT_INGEST_TOKEN_HASHES: remove its entry there and restart "
                    "serve-http"
                )
            fail(f"no token named {name!r} in {path} (tokens: {', '.join(in_file) or 'none'})")
        revoked = in_file[name].revoked
        if revoked is not None:
            typer.echo(f"{name!r} was revoked already, at {revoked.isoformat()}")
            return
        confirm_destructive(f"Revoke token {name!r} (clients using it get 401)?", yes=yes)
        record = revoke_token(path, name)
    except TokenConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    assert record.revoked is not None
    typer.echo(f"revoked {name!r}; a running serve-http refuses it within a second")
