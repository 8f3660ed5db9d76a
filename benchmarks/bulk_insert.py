"""Client CPU of storing one scored slice in PostgreSQL: the JSON document path against arrays.

Usage:
    .venv/bin/python benchmarks/bulk_insert.py [--slice 256] [--slices 60] [--out FILE]

Why client CPU: the scorer's database thread runs beside the model's pass threads in one
process, and every microsecond it spends in Python holds the GIL those threads need between
torch operations (docs/performance.md#gil-switch-interval). So what matters is the thread
CPU time (`time.thread_time`) of `upsert_scored_batch` + commit, not only its wall time.

Two paths store the same rows through `upsert_scored_batch` into a fresh database migrated
to head (FINSENT_BENCH_POSTGRES_URL, default the local trust-auth server):

- `json`: the project's `services.storage.bulk.insert_ignoring_conflicts` (one JSON document
  expanded by `json_to_recordset`);
- `unnest`: the previous implementation, kept here as the reference: one array parameter per
  column, `INSERT … SELECT * FROM unnest(CAST(:a AS type[]), …)`.

The paths alternate slice by slice (fresh event ids every slice, so every row is new), so a
machine that slows down mid-run slows both alike. Prints median and p90 per slice, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
    print_table,
    write_json,
)
from sqlalchemy import Table, text
from sqlalchemy.orm import Session

import services.storage.repository as repository
from services.schemas import NewsItem
from services.storage import ScoredItem, upsert_scored_batch
from services.storage.bulk import _postgres_type, bound_values

InsertFunction = Callable[..., list[Any]]


def unnest_insert_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    returning: str,
) -> list[Any]:
    """The array-per-column statement the project used before the JSON document (reference)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    columns = tuple(rows[0])
    arrays = ", ".join(f"CAST(:{name} AS {_postgres_type(table, name)}[])" for name in columns)
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {returning}"
    )
    params = {name: bound_values(table, name, rows, dialect) for name in columns}
    for name in columns:
        if _postgres_type(table, name) == "JSON":  # None too, as JSON null
            params[name] = [json.dumps(v) for v in params[name]]
    return list(session.scalars(statement, params))


PATHS: dict[str, InsertFunction] = {
    "json": repository.insert_ignoring_conflicts,
    "unnest": unnest_insert_ignoring_conflicts,
}


def make_slice(headlines: Sequence[str], size: int, start: int) -> list[ScoredItem]:
    """A slice shaped like the scorer's: real headlines, one or two tickers, an `extra` dict."""
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:12]
    items = []
    for k in range(size):
        i = start + k
        news = NewsItem(
            event_id=f"bench-{run}-{i}",
            headline=headlines[i % len(headlines)],
            source="benchmark",
            url=f"https://example.com/news/{i}",
            published_at=now - timedelta(seconds=i),
            received_at=now,
            tickers=("AAPL",) if i % 2 else ("AAPL", "MSFT"),
            extra={"feed": "bench", "rank": i},
        )
        p = (0.1 + (i % 7) / 100, 0.6, 0.3 - (i % 7) / 100)
        items.append(
            ScoredItem.from_news(
                news,
                model_version="bench-v1",
                topic="Earnings",
                topic_score=0.87,
                sentiment="neutral",
                p_bearish=p[0],
                p_neutral=p[1],
                p_bullish=p[2],
                sentiment_score=p[2] - p[0],
                scored_at=now,
                kafka_partition=i % 4,
                kafka_offset=i,
            )
        )
    return items


def store_timed(engine: Any, items: Sequence[ScoredItem], insert: InsertFunction) -> tuple[float, float]:
    """(wall, thread CPU) seconds of one slice's upsert + commit through `insert`."""
    repository.insert_ignoring_conflicts = insert  # upsert_scored_batch looks it up at call time
    wall, cpu = time.perf_counter(), time.thread_time()
    with Session(engine) as session:
        counts = upsert_scored_batch(session, items=items)
        session.commit()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    if counts.news_items != len(items) or counts.predictions != len(items):
        raise SystemExit(f"expected {len(items)} new rows, stored {counts}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slice", type=int, default=256, help="items per slice (the scorer's default slice)")
    parser.add_argument("--slices", type=int, default=60, help="slices per path")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bulk_insert.json"))
    args = parser.parse_args()
    if args.slice < 1 or args.slices < 2:
        parser.error("--slice must be at least 1 and --slices at least 2")
    info = machine_info()
    headlines = load_headlines(4000)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in PATHS}
    original = repository.insert_ignoring_conflicts
    try:
        with fresh_database() as url, database_engine(url, pooled=True) as engine:
            for insert in PATHS.values():  # warm up: connection, statement caches
                store_timed(engine, make_slice(headlines, args.slice, 0), insert)
            for k in range(args.slices):
                for name, insert in PATHS.items():
                    items = make_slice(headlines, args.slice, (k + 1) * args.slice)
                    samples[name].append(store_timed(engine, items, insert))
    finally:
        repository.insert_ignoring_conflicts = original
    finish_machine_info(info)
    summary = {
        name: {
            f"{what}_ms": {
                "median": round(statistics.median(vals) * 1000, 2),
                "p90": round(statistics.quantiles(vals, n=10)[-1] * 1000, 2),
            }
            for what, vals in (("wall", [w for w, _ in rows]), ("cpu", [c for _, c in rows]))
        }
        for name, rows in samples.items()
    }
    print_table(
        ["path", "client CPU median ms", "p90", "wall median ms", "p90", "CPU µs per item"],
        [
            (
                name,
                s["cpu_ms"]["median"],
                s["cpu_ms"]["p90"],
                s["wall_ms"]["median"],
                s["wall_ms"]["p90"],
                round(s["cpu_ms"]["median"] * 1000 / args.slice, 1),
            )
            for name, s in summary.items()
        ],
    )
    write_json(
        args.out,
        {
            "benchmark": "bulk_insert",
            "started_at": now_iso(),
            "measured": "per slice: upsert_scored_batch + commit (news_items, news_tickers, predictions), "
            "wall time and the calling thread's CPU time; paths alternate slice by slice",
            "settings": {"slice": args.slice, "slices": args.slices},
            "machine": info,
            "paths": summary,
        },
    )


if __name__ == "__main__":
    main()
