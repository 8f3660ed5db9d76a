"""Inference throughput and accuracy of the Predictor's precision paths and layouts.

Usage: python benchmarks/inference_throughput.py MODEL_DIR [--texts N] [--threads T]
       [--paths fp32,bf16,int8] [--layouts unpadded,padded] [--calls 0,256,64,16]
       [--tokens-per-pass 2048]

Throughput (and the process's CPU milliseconds per text) is measured on headlines from the
model's own dev split (end to end: normalise, tokenise, sort, forward, softmax, result
objects), best of 3 after a warm-up.
`--calls`: texts per `predict` call (0 = all at once), because a live stream hands the model
small batches and padding costs most there. Layouts: `unpadded` packs each forward pass's
real tokens (`bert_core.inference.unpadded`, the default for BERT encoders); `padded` pads each pass of
--batch-size texts to its longest (the Hugging Face forward). Accuracy is measured on the
same dev split for each path and layout, so the quantised paths are compared to fp32 on
equal terms. `batching_changed_labels`: the share of dev texts whose sentiment or topic
differs between one call of all of them and calls of 16 (a text's result should not depend
on what shares its call). With `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` set, a
VNNI CPU runs the int8 path as an AVX2-only one would (7-bit activations included: they are
chosen by trying oneDNN, `bert_core.inference.linear_layers.activation_levels`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from result_file import finish, machine, result_path, write_json

from bert_core import TOKENS_PER_PASS, Predictor, evaluate_sets, load_task_files, split_sets
from bert_core.inference.linear_layers import (  # internal to the inference stack
    activation_levels,
    int8_available,
)


def texts_per_second(predictor: Predictor, texts: list[str], call: int) -> list[tuple[float, float]]:
    """Three timed runs: (texts per second, milliseconds of this process's CPU per text). The
    CPU time tells a pass that is fast because it keeps both cores busy from one that is fast
    and leaves a core free, which matters once the model shares the machine."""
    size = call or len(texts)
    runs = []
    for _ in range(3):
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), size):
            predictor.predict(texts[i : i + size])
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        runs.append((len(texts) / wall, 1000 * cpu / len(texts)))
    return runs


ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # env vars that emulate an older CPU


def changed_by_batching(predictor: Predictor, texts: list[str], call: int = 16) -> float:
    """Share of `texts` whose sentiment or topic differs between one call and calls of `call`."""
    whole = predictor.predict(texts)
    parts = [p for i in range(0, len(texts), call) for p in predictor.predict(texts[i : i + call])]
    changed = sum((a.sentiment, a.topic) != (b.sentiment, b.topic) for a, b in zip(whole, parts, strict=True))
    return changed / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="texts per padded forward pass")
    parser.add_argument("--tokens-per-pass", type=int, default=TOKENS_PER_PASS)
    parser.add_argument("--paths", default="fp32,bf16,int8")
    parser.add_argument("--layouts", default="unpadded,padded")
    parser.add_argument("--calls", default="0", help="texts per predict call, comma-separated; 0 = all")
    parser.add_argument(
        "--parallel-passes",
        default="1,2",
        help="Predictor parallel_passes values to compare, comma-separated (passes side by side, "
        "sharing --threads)",
    )
    parser.add_argument("--no-accuracy", action="store_true", help="throughput only")
    parser.add_argument("--out", type=Path, default=result_path("inference_throughput"))
    args = parser.parse_args()
    info = machine()
    torch.set_num_threads(args.threads)
    calls = [int(c) for c in args.calls.split(",")]

    base = Predictor.load(args.model, precision="fp32")
    training = base.loaded.config.training
    sets = split_sets(
        load_task_files(training["data_files"]),
        dev_fraction=float(training.get("dev_fraction", 0.1)),
        seed=int(training.get("seed", 42)),
    ).dev
    dev_texts = [t for d in sets.values() for t in d.texts]
    texts = dev_texts[: args.texts]
    results = []
    combos = [
        (precision, layout, int(parallel))
        for precision in args.paths.split(",")
        for layout in args.layouts.split(",")
        for parallel in args.parallel_passes.split(",")
    ]
    for precision, layout, parallel in combos:
        predictor = Predictor.load(
            args.model,
            precision=precision,  # type: ignore[arg-type]
            threads=args.threads,
            batch_size=args.batch_size,
            tokens_per_pass=args.tokens_per_pass,
            _unpadded=layout == "unpadded",  # a comparison switch, private to the Predictor
            parallel_passes=parallel,
        )
        unpadded = predictor.unpadded
        predictor.predict(texts[:128])  # warm-up: first-call kernels and allocator
        row: dict[str, object] = {"precision": precision, "layout": layout, "parallel_passes": parallel}
        for call in calls:
            runs = texts_per_second(predictor, texts, call)
            rate, cpu_ms = max(runs)
            row[f"texts_per_s_call_{call or 'all'}"] = round(rate, 1)
            row[f"cpu_ms_per_text_call_{call or 'all'}"] = round(cpu_ms, 2)
            row[f"runs_call_{call or 'all'}"] = [round(r, 1) for r, _ in runs]
        if not args.no_accuracy:
            reports = evaluate_sets(
                predictor.model,  # type: ignore[arg-type]
                predictor.tokenizer,
                sets,
                max_length=predictor.max_length,
                batch_size=args.batch_size,
                bf16=predictor.precision == "bf16",
                unpadded=unpadded,
                memories=predictor.memories,  # as served
            )
            row.update({f"{t}_accuracy": round(r["accuracy"], 4) for t, r in reports.items()})
            row.update({f"{t}_macro_f1": round(r["macro_f1"], 4) for t, r in reports.items()})
            row["batching_changed_labels"] = round(changed_by_batching(predictor, dev_texts), 4)
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "model": str(args.model),
        "model_version": base.version,
        "texts": len(texts),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "tokens_per_pass": args.tokens_per_pass,
        "calls": calls,
        "machine": finish({**info, "torch": torch.__version__}),
        "int8_levels": activation_levels() if int8_available() else None,
        "isa_limits": {k: os.environ[k] for k in ISA_LIMITS if k in os.environ},
        "results": results,
    }
    header = "".join(f"{'call ' + str(c or 'all'):>17}" for c in calls)
    print(
        f"\n{'path':<6}{'layout':<10}{'passes':>7}{header}"
        f"{'sent acc':>10}{'sent F1':>10}{'topic acc':>11}{'topic F1':>10}"
    )
    for r in results:
        names = [str(c or "all") for c in calls]
        speeds = "".join(
            f"{r['texts_per_s_call_' + n]:>9}/s {r['cpu_ms_per_text_call_' + n]:>5}ms" for n in names
        )
        print(
            f"{r['precision']:<6}{r['layout']:<10}{r['parallel_passes']:>7}{speeds}"
            f"{r.get('sentiment_accuracy', '-'):>10}"
            f"{r.get('sentiment_macro_f1', '-'):>10}{r.get('topic_accuracy', '-'):>11}"
            f"{r.get('topic_macro_f1', '-'):>10}"
        )
    write_json(args.out, summary)


if __name__ == "__main__":
    main()
