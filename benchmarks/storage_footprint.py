"""Bytes on disk per stored headline in PostgreSQL: news_items, news_tickers, predictions,
with their indexes, as the scorer writes them. The capacity model (docs/operations.md)
multiplies it by the rate and the retention.

Usage:
    .venv/bin/python benchmarks/storage_footprint.py [--items 50000] [--versions 1] [--out FILE]

Real headlines (the packaged seed data, repeated with fresh event ids), tickers extracted as
the worker does (cashtags + the default watchlist), one prediction per model version, stored
through `upsert_scored_batch` in slices of 256 (the worker's slice) into a fresh database
migrated to head; then VACUUM ANALYZE and `pg_total_relation_size` per table (heap, TOAST
and indexes). Prints bytes per headline and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_common import (
    database_engine,
    finish_machine_info,
    fresh_database,
    load_headlines,
    machine_info,
    now_iso,
)
from result_file import result_path, write_json
from sqlalchemy import text

from services.schemas.tickers import extract_tickers
from services.storage import ScoredItem, session_factory, upsert_scored_batch

SLICE = 256
TABLES = ("news_items", "news_tickers", "predictions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--versions", type=int, default=1, help="Model versions scoring every story")
    parser.add_argument("--out", type=Path, default=result_path("storage_footprint"))
    args = parser.parse_args()
    info = machine_info()
    headlines = load_headlines(args.items)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    with fresh_database() as url, database_engine(url) as engine:
        sessions = session_factory(engine)
        for start in range(0, len(headlines), SLICE):
            items = []
            for i, headline in enumerate(headlines[start : start + SLICE], start):
                at = t0 + timedelta(milliseconds=250 * i)
                for v in range(args.versions):
                    items.append(
                        ScoredItem(
                            event_id=f"bench-{uuid.uuid4().hex}" if v == 0 else items[-1].event_id,
                            headline=headline,
                            published_at=at,
                            received_at=at + timedelta(milliseconds=20),
                            model_version=f"2026010{v + 1}-000000",
                            topic="Earnings",
                            topic_score=0.91,
                            sentiment="bearish",
                            p_bearish=0.81,
                            p_neutral=0.12,
                            p_bullish=0.07,
                            sentiment_score=-0.74,
                            scored_at=at + timedelta(milliseconds=120),
                            source="bench",
                            tickers=tuple(extract_tickers(headline)),
                            kafka_partition=i % 4,
                            kafka_offset=i,
                        )
                    )
            with sessions.begin() as session:
                upsert_scored_batch(session, items=items)
        store_seconds = time.perf_counter() - started
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        with engine.connect() as conn:
            sizes = {
                table: {
                    "rows": conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one(),  # noqa: S608
                    "total_bytes": conn.execute(
                        text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
                    ).scalar_one(),
                    "index_bytes": conn.execute(
                        text("SELECT pg_indexes_size(CAST(:t AS regclass))"), {"t": table}
                    ).scalar_one(),
                }
                for table in TABLES
            }
    finish_machine_info(info)
    total = sum(s["total_bytes"] for s in sizes.values())
    per_item = total / args.items
    result: dict[str, Any] = {
        "benchmark": "storage_footprint",
        "started_at": now_iso(),
        "settings": {"items": args.items, "versions": args.versions, "slice": SLICE},
        "machine": info,
        "tables": sizes,
        "bytes_per_headline": round(per_item, 1),
        "bytes_per_headline_by_table": {t: round(s["total_bytes"] / args.items, 1) for t, s in sizes.items()},
        "mean_headline_chars": round(sum(map(len, headlines)) / len(headlines), 1),
        "store_seconds": round(store_seconds, 2),
    }
    for table, size in sizes.items():
        mb, index_mb = size["total_bytes"] / 1e6, size["index_bytes"] / 1e6
        per = size["total_bytes"] / args.items
        print(
            f"{table:13s} {size['rows']:>8d} rows {mb:8.1f} MB ({index_mb:.1f} MB indexes) "
            f"= {per:.0f} B/headline"
        )
    print(f"total {per_item:.0f} bytes per headline ({args.versions} prediction(s) each)")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
