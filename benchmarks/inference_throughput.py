"""Inference throughput and accuracy of the Predictor's precision paths.

Usage: python benchmarks/inference_throughput.py MODEL_DIR [--texts N] [--threads T]

Throughput is measured on headlines from the model's own dev split (end to end:
normalise, tokenise, sort, forward, softmax, result objects); accuracy on the same
dev split for each path, so the quantised paths are compared to fp32 on equal terms.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from bert_core import Predictor, evaluate_sets
from bert_core.recipes import load_task_files, split_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--paths", default="fp32,bf16,int8")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inference.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = Predictor.load(args.model, precision="fp32", batch_size=args.batch_size)
    training = base.loaded.config.training
    sets = split_sets(
        load_task_files(training["data_files"]),
        dev_fraction=float(training.get("dev_fraction", 0.1)),
        seed=int(training.get("seed", 42)),
    ).dev
    texts = [t for d in sets.values() for t in d.texts][: args.texts]
    results = []
    for precision in args.paths.split(","):
        predictor = Predictor.load(args.model, precision=precision, batch_size=args.batch_size)  # type: ignore[arg-type]
        predictor.predict(texts[:128])  # warm-up: first-call kernels and allocator
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            predictor.predict(texts)
            runs.append(len(texts) / (time.perf_counter() - start))
        reports = evaluate_sets(
            predictor.model,  # type: ignore[arg-type]
            predictor.tokenizer,
            sets,
            max_length=predictor.max_length,
            bf16=predictor.precision == "bf16",
        )
        row = {
            "precision": precision,
            "texts_per_s": round(max(runs), 1),
            "texts_per_s_runs": [round(r, 1) for r in runs],
            **{f"{t}_accuracy": round(r["accuracy"], 4) for t, r in reports.items()},
            **{f"{t}_macro_f1": round(r["macro_f1"], 4) for t, r in reports.items()},
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "model": str(args.model),
        "model_version": base.version,
        "texts": len(texts),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"\n{'path':<6}{'texts/s':>10}{'sent acc':>10}{'sent F1':>10}{'topic acc':>11}{'topic F1':>10}")
    for r in results:
        print(
            f"{r['precision']:<6}{r['texts_per_s']:>10.1f}{r.get('sentiment_accuracy', 0):>10.4f}"
            f"{r.get('sentiment_macro_f1', 0):>10.4f}{r.get('topic_accuracy', 0):>11.4f}"
            f"{r.get('topic_macro_f1', 0):>10.4f}"
        )
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
