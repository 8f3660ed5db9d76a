"""What story clustering costs the scorer, against what the model costs, interleaved.

Per round, one slice of real headlines (a share of them re-published by 1-10 feeds, re-titled)
is scored by the model, then stored twice with the scorer's own `store_batch`: into one
database with story clustering on and into another with it off, the order of the two
alternating between rounds so that the shared machine's load falls on both alike. The cost
of clustering is the difference of the two storing times; it is reported as a share of the
model's time for the same slice (the scorer's throughput is bounded by the model).

    .venv/bin/python benchmarks/story_clustering.py                       # SQLite, bootstrap model
    .venv/bin/python benchmarks/story_clustering.py --database-url postgresql+psycopg://…/db
    .venv/bin/python benchmarks/story_clustering.py --no-model --rounds 8   # the storing step alone

Each database must be empty (SQLite: fresh files in a temporary folder by default); a
PostgreSQL URL is used for both runs, once with the suffix `_on` and once `_off`, which
must exist and be empty. `--no-model` stores fixed predictions instead of the model's (no
torch): the storing step alone, less sensitive to the shared machine's load than the model.
Results: benchmarks/results/story_clustering.json, one entry per database and mode (with the
model, or the storing step alone); a run replaces its own entry.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from pipeline_common import load_headlines
from result_file import machine, result_path, write_entry
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from services.retry import RetryPolicy
from services.scorer.sink import store_batch
from services.storage import ScoredItem, make_engine, upgrade_database
from services.stories import StoryClustering, to_headlines

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PREFIXES = ("UPDATE 1-", "BREAKING: ", "RPT-", "", "EXCLUSIVE-")
SUFFIXES = (" - Reuters", " | Bloomberg", " https://t.co/x1Y2z3", " (AP)", "")


def stream(n: int, syndicated_share: float, seed: int) -> list[tuple[str, str, datetime]]:
    """`n` items at 2 a second: real headlines, `syndicated_share` of them wire stories each
    followed by 1-10 re-titled copies over the next half hour."""
    rng = random.Random(seed)
    texts = load_headlines(n, seed=seed)
    out: list[tuple[str, str, datetime]] = []
    i = 0
    while len(out) < n:
        at = T0 + timedelta(seconds=len(out) / 2)
        text = texts[i % len(texts)]
        out.append((f"item-{i}", text, at))
        if rng.random() < syndicated_share:
            for c in range(rng.randint(1, 10)):
                copy = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
                out.append((f"item-{i}-copy-{c}", copy, at + timedelta(minutes=rng.uniform(0, 30))))
        i += 1
    return out[:n]


class _Fixed(NamedTuple):
    model_version: str = "fixed"
    topic: str = "Macro"
    topic_score: float = 0.9
    sentiment: str = "neutral"
    sentiment_probs: dict[str, float] = {"bearish": 0.1, "neutral": 0.8, "bullish": 0.1}  # noqa: RUF012
    sentiment_score: float = 0.0


def fixed_predictions(texts: Sequence[str]) -> list[Any]:
    """What `--no-model` stores: the same prediction for every headline."""
    return [_Fixed() for _ in texts]


def load_predictor(model: Path) -> Callable[[Sequence[str]], list[Any]]:
    from bert_core import Predictor
    from services.settings import get_settings

    serving = get_settings()
    predictor = Predictor.load(  # as the worker loads it: its precision, passes, compile, batching
        model,
        precision=serving.inference.precision,
        threads=serving.inference.torch_threads,
        parallel_passes=serving.inference.parallel_passes,
        compiled=serving.inference.compile,
        batch_size=serving.scorer.scorer_inference_batch,
        tokens_per_pass=serving.scorer.scorer_tokens_per_pass,
    )
    predictor.warm_up()
    return predictor.predict


def count_backend_cpu(engine: Engine, into: dict[str, float], key: str) -> None:
    """Add the CPU time of each PostgreSQL backend the engine's connections ran on to
    `into[key]` when the connection closes (NullPool: one backend per storing step), read
    from /proc (the server on this host): with the client thread's CPU time, the storing
    step's CPU, which a loaded machine inflates far less than its wall time."""

    def schedstat(pid: int) -> float:
        try:
            return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            return float("nan")  # server elsewhere: the CPU figures are not available

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        record.info["backend"] = (pid, schedstat(pid))

    @event.listens_for(engine, "close")
    def _close(dbapi_connection: Any, record: Any) -> None:
        pid, start = record.info.pop("backend", (None, 0.0))
        if pid is not None:
            into[key] = into.get(key, 0.0) + schedstat(pid) - start


def _compiled() -> bool:
    from services.settings import get_settings

    return get_settings().inference.compile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    home = Path(os.environ.get("FINSENT_HOME", Path.home() / ".finsent"))
    parser.add_argument("--model", type=Path, default=home / "models" / "bootstrap")
    parser.add_argument("--database-url", default=None, help="PostgreSQL base URL (default: SQLite files)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--slice", type=int, default=256, help="items per slice (FINSENT_SCORER_SLICE_ITEMS)")
    parser.add_argument("--syndicated", type=float, default=0.2, help="share of stories re-published")
    parser.add_argument("--no-model", action="store_true", help="time the storing step alone")
    parser.add_argument("--out", type=Path, default=result_path("story_clustering"), help="the result file")
    args = parser.parse_args()
    info = machine()

    predict = fixed_predictions if args.no_model else load_predictor(args.model)
    compiled = _compiled()
    tmp = Path(tempfile.mkdtemp(prefix="finsent-stories-"))
    if args.database_url:
        urls = {"on": args.database_url + "_on", "off": args.database_url + "_off"}
    else:
        urls = {"on": f"sqlite:///{tmp / 'on.db'}", "off": f"sqlite:///{tmp / 'off.db'}"}
    engines = {}
    server: dict[str, float] = {}
    for key, url in urls.items():
        upgrade_database(url)
        engines[key] = make_engine(url, poolclass=NullPool)
        if args.database_url:
            count_backend_cpu(engines[key], server, key)
    clustering = StoryClustering(threshold=0.5, window=timedelta(hours=24))
    retry = RetryPolicy()
    items = stream(args.rounds * args.slice, args.syndicated, seed=11)

    rows = []
    for r in range(args.rounds):
        part = items[r * args.slice : (r + 1) * args.slice]
        t0 = time.perf_counter()
        predictions = predict([t for _, t, _ in part])
        model_s = time.perf_counter() - t0
        scored = [
            ScoredItem(
                event_id=e, headline=t, published_at=at, received_at=at, model_version=p.model_version,
                topic=p.topic, topic_score=p.topic_score, sentiment=p.sentiment,
                p_bearish=p.sentiment_probs.get("bearish", 0.0),
                p_neutral=p.sentiment_probs.get("neutral", 0.0),
                p_bullish=p.sentiment_probs.get("bullish", 0.0), sentiment_score=p.sentiment_score,
                scored_at=at, source="bench",
            )
            for (e, t, at), p in zip(part, predictions, strict=True)
        ]  # fmt: skip
        t0 = time.perf_counter()
        to_headlines(scored)
        signature_s = time.perf_counter() - t0
        store: dict[str, float] = {}
        cpu: dict[str, float] = {}
        client: dict[str, float] = {}
        for key in ("on", "off") if r % 2 == 0 else ("off", "on"):
            engine = engines[key]
            server[key] = 0.0
            t0, c0 = time.perf_counter(), time.thread_time()
            store_batch(
                lambda engine=engine: Session(engine),
                scored,
                retry=retry,
                stories=clustering if key == "on" else None,
            )
            store[key] = time.perf_counter() - t0
            client[key] = time.thread_time() - c0
            cpu[key] = client[key] + server[key]
        rows.append(
            {
                "model_s": model_s,
                "store_on_s": store["on"],
                "store_off_s": store["off"],
                "store_on_cpu_s": cpu["on"],
                "store_off_cpu_s": cpu["off"],
                "store_on_server_cpu_s": server["on"],
                "store_off_server_cpu_s": server["off"],
                "signature_s": signature_s,
            }
        )
        print(
            f"round {r}: model {model_s:.3f} s, store on {store['on']:.3f} s / off {store['off']:.3f} s, "
            f"signatures {signature_s * 1000:.1f} ms"
        )

    measured = rows[1:]  # the first round fills caches
    model = statistics.median(x["model_s"] for x in measured)
    cost = statistics.median(x["store_on_s"] - x["store_off_s"] for x in measured)
    sig = statistics.median(x["signature_s"] for x in measured)
    cost_cpu = statistics.median(x["store_on_cpu_s"] - x["store_off_cpu_s"] for x in measured)
    cost_server = statistics.median(
        x["store_on_server_cpu_s"] - x["store_off_server_cpu_s"] for x in measured
    )
    with Session(engines["on"]) as session:
        from services.storage.story_queries import story_count

        stories = story_count(session)
    summary = {
        "slice": args.slice,
        "rounds": args.rounds,
        "items": len(items),
        "stories": stories,
        "database": "postgresql" if args.database_url else "sqlite",
        "model": None if args.no_model else str(args.model),
        "compiled": None if args.no_model else compiled,
        "median_model_s_per_slice": model,
        "median_clustering_cost_s_per_slice": cost,
        "median_signature_s_per_slice": sig,
        # CPU time of the storing step (client thread + PostgreSQL backend), on minus off
        "median_clustering_cpu_s_per_slice": cost_cpu,
        "median_clustering_server_cpu_s_per_slice": cost_server,  # of which the PostgreSQL backend's
        "median_store_off_s_per_slice": statistics.median(x["store_off_s"] for x in measured),
        "median_store_on_s_per_slice": statistics.median(x["store_on_s"] for x in measured),
        "cost_share_of_model": None if args.no_model else cost / model,
        "model_items_per_s": None if args.no_model else args.slice / model,
        "load_average": os.getloadavg(),
        "rounds_detail": rows,
    }
    print(
        f"{len(items)} items, {stories} stories; per {args.slice}-item slice (median of {len(measured)}): "
        f"model {model:.3f} s, clustering {cost * 1000:.1f} ms "
        f"({'no model' if args.no_model else f'{cost / model:.1%} of the model'}; "
        f"signatures {sig * 1000:.1f} ms; CPU {cost_cpu * 1000:.1f} ms, server {cost_server * 1000:.1f} ms); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    entry = f"{summary['database']}, {'storing step alone' if args.no_model else 'with the model'}"
    write_entry("story_clustering", entry, summary, info, path=args.out)


if __name__ == "__main__":
    main()
