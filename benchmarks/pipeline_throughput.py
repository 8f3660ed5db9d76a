"""End-to-end throughput of the scorer pipeline, against the model alone and a naive consumer.

Usage: python benchmarks/pipeline_throughput.py --model MODEL_DIR [--items 4000] [--naive-items 300]

Three numbers on the same real headlines (tfn sentiment_train.csv), same torch threads:

1. model only: `Predictor.predict` over all the texts at once, with the worker's precision
   (best of 3 after a warm-up): the ceiling of the pipeline.
2. finsent: the real `finsent worker` subprocess, on a fresh 4-partition news.raw on the
   embedded broker and a fresh PostgreSQL database, first scores --warmup-items other
   headlines (not timed: as warm as the reference), then N headlines produced at once.
   Rate = items committed after the first micro-batch / (last batch's commit - first
   batch's commit): steady state, without model load and group join (reported apart).
   Target: ≥ 0.8 x model only.
3. naive: what a user might write instead: a kafka-python KafkaConsumer loop, one message
   at a time, fp32 `predict([text])`, and an ORM add + commit per message into the same
   tables. Rate = (n - 1) / (last commit - first commit). Target: finsent ≥ 10 x naive.
   It does less than the worker (no validation, ticker extraction, DLQ, news.scored, or
   idempotent upserts), so the comparison flatters it.

Prints a table and writes JSON (with machine info and settings) to
benchmarks/results/pipeline_throughput.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pipeline_common import (
    SESSION_TIMEOUT_S,
    Broker,
    add_common_arguments,
    database_engine,
    finish_machine_info,
    fresh_database,
    load_headlines,
    machine_info,
    now_iso,
    preload,
    print_table,
    run_pipeline_throughput,
    stop_on_sigterm,
    work_directory,
)
from result_file import result_path, write_json

from bert_core import Predictor, resolve_precision

WORKER_MAX_BATCH = 256  # FINSENT_SCORER_MAX_BATCH default


class Reference:
    """Model-only throughput on the benchmark's texts, with the worker's precision and threads.

    Measured before and after the pipeline run (other work on a shared machine comes and goes);
    the reference is the best run of all, which makes the pipeline's ratio conservative.
    """

    def __init__(
        self,
        model: Path,
        texts: list[str],
        *,
        precision: str,
        threads: int,
        parallel_passes: int,
        compiled: bool = False,
    ) -> None:
        self.texts = texts
        self.predictor = Predictor.load(
            model,
            precision=precision,  # type: ignore[arg-type]
            threads=threads,
            parallel_passes=parallel_passes,
            compiled=compiled,
        )
        self.predictor.predict(texts[:128])  # warm-up: first-call kernels and allocator
        self.whole: list[float] = []
        self.chunked: list[float] = []

    def _timed(self, chunk: int) -> float:
        start = time.perf_counter()
        for i in range(0, len(self.texts), chunk):
            self.predictor.predict(self.texts[i : i + chunk])
        return len(self.texts) / (time.perf_counter() - start)

    def measure(self, repeats: int = 3) -> None:
        """`repeats` runs over all texts in one call, and one in chunks of the worker's max batch."""
        self.whole += [self._timed(len(self.texts)) for _ in range(repeats)]
        self.chunked.append(self._timed(WORKER_MAX_BATCH))

    @property
    def texts_per_s(self) -> float:
        return round(max(self.whole), 1)

    def summary(self) -> dict[str, Any]:
        return {
            "precision": self.predictor.precision,
            "compiled": self.predictor.compiled,
            "model_version": self.predictor.version,
            "texts": len(self.texts),
            "texts_per_s": self.texts_per_s,
            "texts_per_s_runs": [round(r, 1) for r in self.whole],
            "texts_per_s_in_chunks_of_256": round(max(self.chunked), 1),
            "texts_per_s_in_chunks_of_256_runs": [round(r, 1) for r in self.chunked],
        }


def run_naive(
    broker: Broker, *, model: Path, headlines: list[str], threads: int, timeout: float = 1800.0
) -> dict[str, Any]:
    """The naive design: per message poll → fp32 predict([text]) → ORM add + commit."""
    from sqlalchemy.orm import Session

    from services.broker import PLAINTEXT, kafka_consumer
    from services.storage import NewsItemRow, PredictionRow

    n = len(headlines)
    topic = broker.topic("naive.raw")
    run = uuid.uuid4().hex[:8]
    preload(
        broker.bootstrap,
        topic,
        [(f"naive-{run}-{i:06d}", h) for i, h in enumerate(headlines)],
        desc="pre-load",
    )
    predictor = Predictor.load(model, precision="fp32", threads=threads)
    commits: list[float] = []
    predict_s = store_s = 0.0
    with fresh_database() as url, database_engine(url, pooled=True) as engine:
        consumer = kafka_consumer(
            topic,
            bootstrap=broker.bootstrap,
            security=PLAINTEXT,  # the embedded broker speaks PLAINTEXT
            group_id=f"naive-{run}",
            auto_offset_reset="earliest",
            session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
            heartbeat_interval_ms=1000,
            consumer_timeout_ms=int(timeout * 1000),
        )
        started = time.time()
        try:
            with Session(engine) as session:
                for message in consumer:
                    item = json.loads(message.value)
                    t0 = time.perf_counter()
                    prediction = predictor.predict([item["headline"]])[0]
                    t1 = time.perf_counter()
                    predict_s += t1 - t0
                    now = datetime.now(UTC)
                    session.add(
                        NewsItemRow(
                            event_id=item["id"],
                            headline=item["headline"],
                            source=item.get("source"),
                            published_at=now,
                            received_at=now,
                            tickers=[],
                            extra={},
                            kafka_partition=message.partition,
                            kafka_offset=message.offset,
                        )
                    )
                    probs = prediction.sentiment_probs
                    session.add(
                        PredictionRow(
                            event_id=item["id"],
                            model_version=prediction.model_version,
                            topic=prediction.topic,
                            topic_score=prediction.topic_score,
                            sentiment=prediction.sentiment,
                            p_bearish=probs["bearish"],
                            p_neutral=probs["neutral"],
                            p_bullish=probs["bullish"],
                            sentiment_score=prediction.sentiment_score,
                            published_at=now,
                            scored_at=now,
                        )
                    )
                    session.commit()
                    store_s += time.perf_counter() - t1
                    commits.append(time.time())
                    if len(commits) % 50 == 0:
                        print(f"  naive: {len(commits)}/{n} committed", file=sys.stderr, flush=True)
                    if len(commits) >= n:
                        break
        finally:
            consumer.close()
    if len(commits) < n:
        raise RuntimeError(f"naive consumer stored {len(commits)}/{n} items")
    steady_s = commits[-1] - commits[0]
    gaps = [b - a for a, b in itertools.pairwise(commits)]
    return {
        "items": n,
        "precision": "fp32",
        "items_per_s": round((n - 1) / steady_s, 1),
        "items_per_s_from_start": round(n / (commits[-1] - started), 1),
        "first_to_last_commit_s": round(steady_s, 2),
        "median_ms_per_item": round(1000 * statistics.median(gaps), 1),
        "mean_ms_predict": round(1000 * predict_s / n, 1),
        "mean_ms_add_commit": round(1000 * store_s / n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    add_common_arguments(parser)
    parser.add_argument("--items", type=int, default=4000, help="headlines through the pipeline (4000)")
    parser.add_argument("--naive-items", type=int, default=300, help="headlines through the naive loop (300)")
    parser.add_argument(
        "--warmup-items",
        type=int,
        default=1000,
        help="other headlines the worker scores first, not timed, so it is as warm as the reference (1000)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="only the model and the pipeline")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        help="FINSENT_SCORER_BATCH_SECONDS of the worker (its default)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=None, help="FINSENT_SCORER_MAX_BATCH of the worker (its default)"
    )
    parser.add_argument("--out", type=Path, default=result_path("pipeline_throughput"))
    args = parser.parse_args()
    stop_on_sigterm()
    machine = machine_info()
    torch.set_num_threads(args.threads)
    loaded = load_headlines(args.items + args.warmup_items, args.headlines)
    texts, warmup = loaded[: args.items], loaded[args.items :]
    result: dict[str, Any] = {
        "benchmark": "pipeline_throughput",
        "started_at": now_iso(),
        "settings": {
            "model": str(args.model),
            "threads": args.threads,
            "parallel_passes": args.parallel_passes,
            "precision": args.precision,
            "precision_resolved": resolve_precision(args.precision),
            "compiled": args.compile,
            "items": args.items,
            "warmup_items": args.warmup_items,
            "naive_items": 0 if args.skip_naive else args.naive_items,
            "partitions": 4,
            "worker_batch_seconds": args.batch_seconds,
            "worker_max_batch": args.max_batch,
            "headlines": str(args.headlines),
        },
        "machine": machine,
    }
    print(
        f"model only: Predictor on {len(texts)} headlines ({args.precision}, {args.threads} threads, "
        f"{args.parallel_passes} parallel passes)",
        file=sys.stderr,
    )
    ref = Reference(
        args.model,
        texts,
        precision=args.precision,
        threads=args.threads,
        parallel_passes=args.parallel_passes,
        compiled=args.compile,
    )
    ref.measure()
    print(f"  {json.dumps(ref.summary())}", file=sys.stderr)
    with work_directory(args.keep_logs) as work, Broker(work) as broker:
        print(f"finsent worker: {len(texts)} pre-loaded headlines", file=sys.stderr)
        finsent = run_pipeline_throughput(
            broker,
            model=args.model,
            headlines=texts,
            threads=args.threads,
            precision=args.precision,
            work_dir=work,
            parallel_passes=args.parallel_passes,
            compiled=args.compile,
            batch_seconds=args.batch_seconds,
            max_batch=args.max_batch,
            warmup=warmup,
        )
        result["finsent"] = finsent
        print(f"  {json.dumps(finsent)}", file=sys.stderr)
        print("model only again", file=sys.stderr)
        ref.measure()
        result["predictor"] = reference = ref.summary()
        print(f"  {json.dumps(reference)}", file=sys.stderr)
        del ref
        if not args.skip_naive:
            print(f"naive consumer: {args.naive_items} headlines, one at a time, fp32", file=sys.stderr)
            naive = run_naive(
                broker, model=args.model, headlines=texts[: args.naive_items], threads=args.threads
            )
            result["naive"] = naive
            print(f"  {json.dumps(naive)}", file=sys.stderr)
    finish_machine_info(machine)
    ratio = finsent["items_per_s"] / reference["texts_per_s"]
    result["finsent_vs_predictor"] = {"ratio": round(ratio, 3), "target": 0.8, "met": ratio >= 0.8}
    rows: list[list[Any]] = [
        [f"model only (Predictor, {reference['precision']})", reference["texts_per_s"], "1.00", ""],
        [
            f"model only, chunks of {WORKER_MAX_BATCH}",
            reference["texts_per_s_in_chunks_of_256"],
            f"{reference['texts_per_s_in_chunks_of_256'] / reference['texts_per_s']:.2f}",
            "",
        ],
        [f"finsent worker, {finsent['items']} items", finsent["items_per_s"], f"{ratio:.2f}", ">= 0.80"],
    ]
    if "naive" in result:
        speedup = finsent["items_per_s"] / result["naive"]["items_per_s"]
        result["finsent_vs_naive"] = {"speedup": round(speedup, 2), "target": 10.0, "met": speedup >= 10.0}
        rows.append(
            [
                f"naive loop (fp32, commit per row), {result['naive']['items']} items",
                result["naive"]["items_per_s"],
                f"{result['naive']['items_per_s'] / reference['texts_per_s']:.3f}",
                "",
            ]
        )
    write_json(args.out, result)
    print()
    print_table(["", "items/s", "vs model", "target"], rows)
    if "finsent_vs_naive" in result:
        print(f"\nfinsent / naive = {result['finsent_vs_naive']['speedup']:.1f}x (target >= 10x)")
    phases = finsent["phase_s"]
    print(
        f"worker: start-up {finsent['startup_s']} s, {finsent['batches']} batches of {finsent['mean_batch']} "
        f"on average; first batch start → last commit {finsent['first_start_to_last_commit_s']} s = "
        f"parse+inference {phases['parse_and_inference']} s + store+publish {phases['store_and_publish']} s "
        f"+ between batches {phases['between_batches']} s"
    )
    if "naive" in result:
        naive = result["naive"]
        print(
            f"naive: {naive['median_ms_per_item']} ms per item (median); means: predict "
            f"{naive['mean_ms_predict']} ms, add+commit {naive['mean_ms_add_commit']} ms, the rest poll/parse"
        )
    print(f"load average {machine['loadavg_start']} → {machine['loadavg_end']}")


if __name__ == "__main__":
    main()
