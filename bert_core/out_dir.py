"""The rule for an output directory (`--out`), in one place and torch-free: the CLI checks it
before a model loads, so a run that could not save fails at once rather than after the whole
training, and the library checks it again before it writes, for callers with no CLI in front."""

from __future__ import annotations

from pathlib import Path


def new_dir_problem(out: Path, *, overwrite: bool | None = None) -> str | None:
    """Why `out` cannot become a new directory, or None when it can: it may not exist yet or be
    empty, and must not be a file or lie under one. An existing, non-empty directory is refused
    unless `overwrite` (the caller replaces it when the new one is complete); with `overwrite`
    False the message offers it, with None (the caller has no such option) it does not."""
    if out.exists():
        if not out.is_dir():
            return f"{out} is a file; give a directory to create"
        if not overwrite and any(out.iterdir()):
            offer = "" if overwrite is None else " or pass --overwrite to replace it"
            return f"{out} exists and is not empty; choose a new directory{offer}"
        return None
    nearest = next((p for p in out.absolute().parents if p.exists()), None)
    if nearest is not None and not nearest.is_dir():
        return f"{out}: {nearest} is a file, not a directory"
    return None
