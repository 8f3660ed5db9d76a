"""The finsent command line."""

from services.cli.app import app, main

__all__ = ["app", "main"]
