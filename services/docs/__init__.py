"""Reference documents generated from the code, so they cannot drift from it.

- docs/settings.md from `services.settings.Settings` (`settings_page`),
- docs/news_raw.schema.json from `services.schemas.RawNews` (`news_schema`),
- the README's table of commands from the `finsent` CLI (`commands_table`).

`python -m services.docs` rewrites all three; `--check` exits 1 naming the stale ones.
`tests/unit/test_docs_generate.py` runs the same comparison. Pure rendering: the files are
read and written only by `__main__`.
"""

from services.docs.commands_table import render_commands_table, replace_commands_table
from services.docs.news_schema import news_raw_json_schema, render_news_schema
from services.docs.settings_page import render_settings_page

__all__ = [
    "news_raw_json_schema",
    "render_commands_table",
    "render_news_schema",
    "render_settings_page",
    "replace_commands_table",
]
