"""The dashboard's reads and writes: plain typed functions over a SQLAlchemy `Session`.

No Streamlit here (pages call these through `dashboards.context.cached_query`), and SQL only
through `select()`/`update()` with bound parameters. Each query is shaped for a year of news
(about a million stories): indices come from `sentiment_buckets` and are re-aggregated to
coarser widths inside the database; story lists walk the `published_at` indexes with a
LIMIT (keyset pagination), never a full scan sorted in Python.
"""
