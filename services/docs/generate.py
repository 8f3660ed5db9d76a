"""Regenerate (or `--check`) the generated reference documents: `python -m services.docs`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from services.docs.commands_table import replace_commands_table
from services.docs.news_schema import render_news_schema
from services.docs.settings_page import REGENERATE_COMMAND, render_settings_page

ROOT = Path(__file__).resolve().parents[2]


def generated_files(root: Path = ROOT) -> dict[Path, Callable[[str], str]]:
    """Each generated file and how its new text follows from its current text."""
    return {
        root / "docs" / "settings.md": lambda _current: render_settings_page(),
        root / "docs" / "news_raw.schema.json": lambda _current: render_news_schema(),
        root / "README.md": replace_commands_table,
    }


def stale_files(root: Path = ROOT) -> list[Path]:
    """The generated files whose committed text differs from what the code renders now."""
    stale = []
    for path, render in generated_files(root).items():
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if render(current) != current:
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE_COMMAND,
        description="Regenerate docs/settings.md, docs/news_raw.schema.json and the README's command table.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is out of date"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        for path in stale:
            print(f"{path} is out of date; run: {REGENERATE_COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for path, render in generated_files(args.root).items():
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        try:
            text = render(current)
        except ValueError as exc:
            print(f"{REGENERATE_COMMAND}: {exc}", file=sys.stderr)
            return 2
        if text != current:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0
