"""Turning user errors into one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer


def fail(message: str, *, code: int = 2) -> NoReturn:
    typer.echo(f"finsent: error: {message}", err=True)
    sys.exit(code)
