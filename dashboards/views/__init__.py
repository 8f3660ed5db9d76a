"""The dashboard's pages: scripts Streamlit runs (`st.Page` in dashboards/app.py), never imported.

This file makes them a package only so that `lint-imports` sees their imports: a page reads
through `dashboards.data` (via `dashboards.context.cached_query`) and writes through
`dashboards.actions`, never with SQLAlchemy itself ([tool.importlinter] in pyproject.toml).
"""
