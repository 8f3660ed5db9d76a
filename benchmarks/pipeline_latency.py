"""Ingest-to-commit latency of the scorer pipeline at half its maximum throughput.

Usage: python benchmarks/pipeline_latency.py --model MODEL_DIR [--rate R | --max-rate M |
       --max-rate-from benchmarks/results/pipeline_throughput.json] [--duration 60] [--batch-seconds 0.2,0.05]

The rate: --rate items/s as given; else half of --max-rate; else half of the finsent rate in
a pipeline_throughput.py result file (--max-rate-from); else half of a throughput run made
here first with the same worker (pre-loaded --calibrate-items headlines, steady-state rate).

For each FINSENT_SCORER_BATCH_SECONDS value: a fresh database, fresh topics and the real
`finsent worker` subprocess; 500 warm-up items (not counted) until the worker has joined and
stored them; then a producer thread sends real headlines at the rate with steady pacing
(item i is due at start + i/rate) for --duration seconds through `NewsProducer`, each with its
send time (`sent_at`, epoch seconds) in the payload.

Per item, latency = committed - sent, where `sent` is taken just before `send_raw` and
`committed` is the CreateTime of the item's news.scored message, which the worker produces
only after the batch's database transaction committed (an upper bound of the commit time
by a few ms; PostgreSQL's commit timestamps are off). The breakdown comes from the worker's
own stamps in the database: wait = received_at (batch start) - sent (in Kafka and in the
micro-batch buffer), inference = scored_at - received_at (parse and model), store =
committed - scored_at (upsert transaction, then hand-off to the producer). Target: p99 < 250 ms.

Prints a table and writes JSON (with machine info and settings) to benchmarks/results/pipeline_latency.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from pipeline_common import (
    Broker,
    CpuShares,
    Worker,
    WorkerFailed,
    add_common_arguments,
    committed_times,
    count_predictions,
    database_engine,
    finish_machine_info,
    fresh_database,
    load_headlines,
    machine_info,
    now_iso,
    payload,
    preload,
    print_table,
    run_pipeline_throughput,
    stop_on_sigterm,
    stored_rows,
    wait_stored,
    work_directory,
)
from result_file import result_path, write_json

from bert_core import resolve_precision
from services.broker import PLAINTEXT
from services.ingest.producer import NewsProducer

TARGET_P99_MS = 250.0
WARMUP_ITEMS = 500
STORE_TIMEOUT_S = 300.0


class PacedProducer(threading.Thread):
    """Sends (event_id, headline) pairs at `rate` per second, item i due at start + i/rate.

    A late item (the thread was not scheduled in time) is sent at once, with its real send
    time, so a stall shows up as latency rather than being hidden by the schedule.
    """

    def __init__(self, bootstrap: str, topic: str, items: list[tuple[str, str]], rate: float) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap, self.topic, self.items, self.rate = bootstrap, topic, items, rate
        self.sent = 0
        self.elapsed = 0.0
        self.max_behind_s = 0.0
        self.error: BaseException | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            with NewsProducer(
                self.bootstrap, topic=self.topic, client_id="finsent-bench-paced", security=PLAINTEXT
            ) as producer:
                start = time.perf_counter()
                for i, (event_id, headline) in enumerate(self.items):
                    if self.stop_event.is_set():
                        break
                    delay = start + i / self.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        self.max_behind_s = max(self.max_behind_s, -delay)
                    producer.send_raw(payload(event_id, headline, sent_at=time.time()), event_id)
                    self.sent = i + 1
                self.elapsed = time.perf_counter() - start
                producer.flush()
        except BaseException as exc:
            self.error = exc


def percentiles(values_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(values_ms)
    return {
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "p99": round(float(np.percentile(arr, 99)), 1),
        "max": round(float(arr.max()), 1),
        "mean": round(float(arr.mean()), 1),
    }


def run_latency(
    broker: Broker,
    *,
    args: argparse.Namespace,
    headlines: list[str],
    rate: float,
    batch_seconds: float,
    fetch_max_wait_ms: int | None,
    work: Path,
) -> dict[str, Any]:
    topics = broker.pipeline_topics()
    run = uuid.uuid4().hex[:8]
    n = math.ceil(rate * args.duration)
    warmup = [(f"warm-{run}-{i:05d}", headlines[i % len(headlines)]) for i in range(WARMUP_ITEMS)]
    items = [(f"lat-{run}-{i:06d}", headlines[(WARMUP_ITEMS + i) % len(headlines)]) for i in range(n)]
    with (
        fresh_database() as url,
        database_engine(url) as engine,
        Worker(
            bootstrap=broker.bootstrap,
            database_url=url,
            topics=topics,
            model=args.model,
            threads=args.threads,
            precision=args.precision,
            work_dir=work,
            parallel_passes=args.parallel_passes,
            compiled=args.compile,
            batch_seconds=batch_seconds,
            fetch_max_wait_ms=fetch_max_wait_ms,
        ) as worker,
    ):
        preload(broker.bootstrap, topics.raw, warmup, desc="warm-up")
        wait_stored(engine, WARMUP_ITEMS, worker=worker, timeout=STORE_TIMEOUT_S, desc="warm-up stored")
        time.sleep(1.0)
        producer = PacedProducer(broker.bootstrap, topics.raw, items, rate)
        print(f"  producing {n} items at {rate:.1f}/s for {args.duration:g} s", file=sys.stderr)
        shares = CpuShares({"worker": worker.pid, "broker": broker.pid, "benchmark": os.getpid()})
        shares.start()
        producer.start()
        try:
            last_report = time.monotonic()
            while producer.is_alive():
                producer.join(timeout=1.0)
                worker.check()
                if time.monotonic() - last_report >= 10.0:
                    stored = count_predictions(engine) - WARMUP_ITEMS
                    print(f"  sent {producer.sent}/{n}, stored {stored}", file=sys.stderr, flush=True)
                    last_report = time.monotonic()
        finally:
            producer.stop_event.set()
            producer.join(timeout=30.0)
            cpu = shares.stop()
        if producer.error is not None:
            raise RuntimeError(f"the paced producer failed: {producer.error}") from producer.error
        wait_stored(engine, WARMUP_ITEMS + n, worker=worker, timeout=STORE_TIMEOUT_S, desc="stored")
        rows = [r for r in stored_rows(engine) if r.sent_at is not None]
        committed = committed_times(broker.bootstrap, topics.scored, WARMUP_ITEMS + n)
    total, wait, infer, store = [], [], [], []
    for r in rows:
        done = committed[r.event_id]
        total.append((done - r.sent_at) * 1000)  # type: ignore[operator]
        wait.append((r.received_at - r.sent_at) * 1000)  # type: ignore[operator]
        infer.append((r.scored_at - r.received_at) * 1000)
        store.append((done - r.scored_at) * 1000)
    batch_sizes: dict[float, int] = {}
    for r in rows:
        batch_sizes[r.received_at] = batch_sizes.get(r.received_at, 0) + 1
    latency = percentiles(total)
    return {
        "batch_seconds": batch_seconds,
        "fetch_max_wait_ms": fetch_max_wait_ms if fetch_max_wait_ms is not None else "default",
        "rate_target": round(rate, 1),
        "rate_achieved": round(producer.sent / producer.elapsed, 1) if producer.elapsed else None,
        "producer_max_behind_ms": round(producer.max_behind_s * 1000, 1),
        "items": len(rows),
        "batches": len(batch_sizes),
        "mean_batch": round(len(rows) / len(batch_sizes), 1),
        "latency_ms": latency,
        "wait_ms": percentiles(wait),
        "inference_ms": percentiles(infer),
        "store_ms": percentiles(store),
        "cpu_while_producing": cpu,
        "p99_target_ms": TARGET_P99_MS,
        "met": latency["p99"] < TARGET_P99_MS,
    }


def decide_rate(args: argparse.Namespace, broker: Broker, headlines: list[str], work: Path) -> dict[str, Any]:
    """The produce rate, and where it came from."""
    if args.rate is not None:
        return {"rate": args.rate, "source": "--rate"}
    if args.max_rate is not None:
        return {"rate": args.max_rate / 2, "max_rate": args.max_rate, "source": "--max-rate"}
    if args.max_rate_from is not None:
        saved = json.loads(args.max_rate_from.read_text())
        max_rate = float(saved["finsent"]["items_per_s"])
        keys = ("model", "threads", "precision", "parallel_passes", "compiled")
        defaults: dict[str, Any] = {"parallel_passes": 1, "compiled": False}
        same = {k: saved["settings"].get(k, defaults.get(k)) for k in keys}
        # `auto` has meant different paths over time (bf16 on AVX512-BF16 CPUs until session
        # 15), so compare the path that ran where the file says it.
        same["precision"] = saved["settings"].get("precision_resolved", same["precision"])
        ours = {
            "model": str(args.model),
            "threads": args.threads,
            "precision": resolve_precision(args.precision),
            "parallel_passes": args.parallel_passes,
            "compiled": args.compile,
        }
        if same != ours:
            print(f"warning: {args.max_rate_from} was measured with {same}, not {ours}", file=sys.stderr)
        return {"rate": max_rate / 2, "max_rate": max_rate, "source": str(args.max_rate_from)}
    print(f"max rate: throughput run with {args.calibrate_items} pre-loaded headlines", file=sys.stderr)
    measured = run_pipeline_throughput(
        broker,
        model=args.model,
        headlines=headlines[: args.calibrate_items],
        warmup=headlines[args.calibrate_items : args.calibrate_items + 1000],
        threads=args.threads,
        precision=args.precision,
        work_dir=work,
        parallel_passes=args.parallel_passes,
        compiled=args.compile,
    )
    print(f"  {json.dumps(measured)}", file=sys.stderr)
    return {
        "rate": measured["items_per_s"] / 2,
        "max_rate": measured["items_per_s"],
        "source": "measured",
        "throughput_run": measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    add_common_arguments(parser)
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, help="produce rate, items/s")
    rate.add_argument("--max-rate", type=float, help="maximum pipeline throughput, items/s (rate = half)")
    rate.add_argument("--max-rate-from", type=Path, help="a pipeline.json whose finsent rate is the maximum")
    parser.add_argument("--calibrate-items", type=int, default=2000, help="items of the max-rate run (2000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of paced producing (60)")
    parser.add_argument(
        "--batch-seconds",
        default="0.2,0.05",
        help="comma-separated FINSENT_SCORER_BATCH_SECONDS values, one worker run each (0.2,0.05)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms",
        default="default",
        help="comma-separated consumer fetch_max_wait_ms values for the worker: `default` = the shipped "
        "FINSENT_SCORER_FETCH_MAX_WAIT_MS (100 ms; faust alone would use 1500) (default)",
    )
    parser.add_argument("--out", type=Path, default=result_path("pipeline_latency"))
    args = parser.parse_args()
    stop_on_sigterm()
    machine = machine_info()
    batch_values = [float(v) for v in args.batch_seconds.split(",") if v.strip()]
    fetch_values = [
        None if v.strip() == "default" else int(v) for v in args.fetch_max_wait_ms.split(",") if v.strip()
    ]
    result: dict[str, Any] = {
        "benchmark": "pipeline_latency",
        "started_at": now_iso(),
        "measured": "committed - sent per item: sent = just before NewsProducer.send_raw; committed = "
        "CreateTime of the item's news.scored message, produced by the worker after the batch's "
        "transaction committed (upper bound of the commit time by a few ms)",
        "settings": {
            "model": str(args.model),
            "threads": args.threads,
            "parallel_passes": args.parallel_passes,
            "precision": args.precision,
            "precision_resolved": resolve_precision(args.precision),
            "compiled": args.compile,
            "duration_s": args.duration,
            "batch_seconds": batch_values,
            "fetch_max_wait_ms": [v if v is not None else "default" for v in fetch_values],
            "warmup_items": WARMUP_ITEMS,
            "partitions": 4,
            "headlines": str(args.headlines),
        },
        "machine": machine,
    }
    headlines = load_headlines(max(args.calibrate_items, 10_000), args.headlines)
    runs = []
    with work_directory(args.keep_logs) as work, Broker(work) as broker:
        decided = decide_rate(args, broker, headlines, work)
        result["rate"] = decided
        for fetch_wait in fetch_values:
            for batch_seconds in batch_values:
                label = f"batch_seconds={batch_seconds:g}, fetch_max_wait_ms={fetch_wait or 'default'}"
                print(f"latency run: {label}", file=sys.stderr)
                try:
                    run = run_latency(
                        broker,
                        args=args,
                        headlines=headlines,
                        rate=decided["rate"],
                        batch_seconds=batch_seconds,
                        fetch_max_wait_ms=fetch_wait,
                        work=work,
                    )
                except WorkerFailed as exc:
                    raise SystemExit(f"{label}: {exc}") from None
                print(f"  {json.dumps(run)}", file=sys.stderr)
                runs.append(run)
    finish_machine_info(machine)
    result["runs"] = runs
    write_json(args.out, result)
    print(f"\nrate {decided['rate']:.1f} items/s ({decided['source']}); latency = committed - sent, ms")
    print_table(
        [
            "batch s",
            "fetch ms",
            "rate",
            "batches",
            "avg batch",
            "p50",
            "p95",
            "p99",
            "max",
            "<250",
            "p99 w/i/s",
            "busy",
            "cores w/b/p/bench",
        ],
        [
            [
                f"{r['batch_seconds']:g}",
                r["fetch_max_wait_ms"],
                r["rate_achieved"],
                r["batches"],
                r["mean_batch"],
                r["latency_ms"]["p50"],
                r["latency_ms"]["p95"],
                r["latency_ms"]["p99"],
                r["latency_ms"]["max"],
                "yes" if r["met"] else "no",
                f"{r['wait_ms']['p99']:.0f}/{r['inference_ms']['p99']:.0f}/{r['store_ms']['p99']:.0f}",
                f"{r['cpu_while_producing']['machine_busy_share']:.0%}",
                "/".join(
                    f"{r['cpu_while_producing'].get(k + '_cores', 0):.2f}"
                    for k in ("worker", "broker", "postgres", "benchmark")
                ),
            ]
            for r in runs
        ],
    )
    print(
        "fetch ms: the worker consumer's fetch_max_wait_ms; `default` = the shipped setting (100 ms), "
        "a number = FINSENT_SCORER_FETCH_MAX_WAIT_MS. p99 w/i/s = p99 of wait (sent -> batch start), "
        "inference, store+publish. busy: share of the machine's CPU time in use while the producer "
        "ran; cores: CPU of the worker, the broker, PostgreSQL and this benchmark (its paced producer)"
    )
    print(f"load average {machine['loadavg_start']} → {machine['loadavg_end']}")


if __name__ == "__main__":
    main()
