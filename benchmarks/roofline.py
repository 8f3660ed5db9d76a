"""What this CPU can do at best for the issue #2 speed targets: a compute bound, measured.

Usage: python benchmarks/roofline.py [--threads 2] [--base-model DIR] [--out results/roofline.json]

Why it exists: the training-time (≤ 30 min) and inference (≥ 600 headlines/s) targets are met
on CPUs with bf16 units and missed on AVX2-only ones. This script says whether a miss is the
code's or the machine's. It counts the matrix-multiply work the default recipe needs (from
the encoder's shape and the seed data's real token counts, with the length-bucketed padding
the trainer uses) and divides it by the rate this machine's torch multiplies matrices of
exactly those shapes, with nothing else in the way (no Python, no attention, no softmax,
no optimizer). The results are bounds: no implementation of the same model and recipe on
the same torch kernels can train faster or infer faster than they say.

Work per token, per encoder layer of hidden size h, feed-forward width f and padded sequence
length s: forward 2·(4h² + 2hf) multiply-adds x2 for the dense layers plus 4·s·h for the two
attention products; a training step costs 3x its forward (the backward computes a gradient
for both the input and the weight of every product).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from inference_throughput import texts_per_second
from transformers import AutoConfig, AutoTokenizer

from bert_core import Predictor
from bert_core.batching import bucketed_batches, collate, tokenize
from bert_core.config import TrainConfig
from bert_core.encoder import resolve_base_model
from bert_core.inference_core import TOKENS_PER_PASS
from bert_core.int8 import Int8Linear
from bert_core.labels import DEFAULT_LABELS
from bert_core.recipes import SplitData, load_task_files, split_sets
from bert_core.training import _build_model, _param_groups
from services.settings import Settings

FlopsOf = Callable[[int, int], float]  # (texts, padded length) -> forward FLOPs of a pass


def gemm_rate(
    m: int, k: int, n: int, *, int8: bool, threads: int, side_by_side: int, seconds: float = 3.0
) -> float:
    """Best-of-10 multiply rate in GFLOP/s (2·m·k·n per product) for (mxk)·(kxn) products,
    `side_by_side` of them at once on their own Python threads with threads // side_by_side
    torch threads each (the Predictor's parallel passes), or one on all threads (side_by_side
    1). int8: the Predictor's `bert_core.int8.Int8Linear` (a scale per input row and per
    output channel; before it, torch's dynamic quantisation)."""
    torch.set_num_threads(max(1, threads // side_by_side))
    x = torch.randn(m, k)
    linear: torch.nn.Module = torch.nn.Linear(k, n, bias=False)
    if int8:
        linear = Int8Linear(linear)

    def work(calls: int) -> None:
        with torch.inference_mode():
            for _ in range(calls):
                linear(x)

    work(3)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 10:
        work(1)
        calls += 1
    rates = []
    with ThreadPoolExecutor(side_by_side) as pool:
        for _ in range(10):
            t0 = time.perf_counter()
            list(pool.map(work, [calls] * side_by_side))
            rates.append(2 * m * k * n * calls * side_by_side / (time.perf_counter() - t0) / 1e9)
    return max(rates)


def dense_flops_per_token(h: int, f: int, layers: int) -> float:
    return layers * 2 * (4 * h * h + 2 * h * f)


def measured_training_rate(
    split: SplitData, recipe: TrainConfig, steps: int, flops_of: FlopsOf
) -> dict[str, float]:
    """Steps of the default recipe exactly as `fine_tune` runs them (model, AdamW groups,
    dropout, clipping), on topic batches from the bucketed order: the achieved rate of the
    products that `flops_of` counts."""
    labels = {t: list(DEFAULT_LABELS[t]) for t in split.train}  # type: ignore[index]
    model, tokenizer, _, _ = _build_model(recipe, labels)
    optimizer = torch.optim.AdamW(_param_groups(model, recipe))
    data = split.train["topic"]
    ids = tokenize(tokenizer, data.texts, recipe.max_length)
    lengths = [len(i) for i in ids]
    batches = bucketed_batches(lengths, recipe.batch_size, np.random.default_rng(recipe.seed))[: steps + 5]
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    def step(idx: list[int]) -> None:
        batch = collate(ids, idx, int(tokenizer.pad_token_id or 0), data.labels)
        assert batch.labels is not None
        loss = loss_fn(model(batch.input_ids, batch.attention_mask, tasks=["topic"])["topic"], batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for idx in batches[:5]:
        step(idx)
    start = time.perf_counter()
    flops = 0.0
    for idx in batches[5:]:
        step(idx)
        flops += 3 * flops_of(len(idx), max(lengths[i] for i in idx))
    seconds = time.perf_counter() - start
    return {
        "steps": len(batches) - 5,
        "seconds_per_step": round(seconds / (len(batches) - 5), 3),
        "gflops": round(flops / seconds / 1e9, 1),
    }


def measured_inference_rate(model_dir: Path, texts: list[str], threads: int) -> dict[str, float]:
    """Headlines/s of the real Predictor (parallel passes on every thread, one call of all
    texts, best of 3)."""
    result = {}
    for precision in ("fp32", "int8"):
        predictor = Predictor.load(model_dir, precision=precision, threads=threads, parallel_passes=threads)
        predictor.predict(texts[:256])
        result[precision] = round(max(rate for rate, _ in texts_per_second(predictor, texts, 0)), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-model", default=None, help="encoder directory (default: packaged MiniLM)")
    settings = Settings()
    parser.add_argument("--sentiment-data", type=Path, default=settings.training.sentiment_data)
    parser.add_argument("--topic-data", type=Path, default=settings.training.topic_data)
    parser.add_argument(
        "--training-minutes",
        type=float,
        default=None,
        help="a measured training time to compare with the bound",
    )
    parser.add_argument("--train-steps", type=int, default=20, help="training steps timed (0: skip)")
    parser.add_argument("--model", type=Path, default=None, help="a model directory: also time its Predictor")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "roofline.json")
    args = parser.parse_args()
    for path in (args.sentiment_data, args.topic_data):
        if not path.is_file():
            sys.exit(f"roofline: error: {path} not found; pass --sentiment-data/--topic-data")
    if args.model is not None and not (args.model / "config.json").is_file():
        sys.exit(f"roofline: error: {args.model} is not a model directory (no config.json)")

    torch.set_num_threads(args.threads)
    name = resolve_base_model(args.base_model)
    enc = AutoConfig.from_pretrained(name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    h, f, layers = enc.hidden_size, enc.intermediate_size, enc.num_hidden_layers
    recipe = TrainConfig()

    split = split_sets(
        load_task_files({"sentiment": args.sentiment_data, "topic": args.topic_data}),
        dev_fraction=settings.training.dev_fraction,
        seed=recipe.seed,
    )
    dense = dense_flops_per_token(h, f, layers)

    def forward_flops(texts: int, width: int) -> float:
        """Dense layers on every padded position; attention: each position against width keys."""
        return texts * width * (dense + layers * 4 * width * h)

    rng = np.random.default_rng(recipe.seed)
    train_flops, real_tokens, padded_tokens, rows = 0.0, 0, 0, 0
    for data in split.train.values():
        lengths = [len(ids) for ids in tokenize(tokenizer, data.texts, recipe.max_length)]
        real_tokens += sum(lengths)
        for batch in bucketed_batches(lengths, recipe.batch_size, rng):
            width = max(lengths[i] for i in batch)
            padded_tokens += width * len(batch)
            train_flops += 3 * forward_flops(len(batch), width)
        rows = max(rows, recipe.batch_size * int(statistics.mean(lengths)))
    train_flops *= recipe.epochs
    texts = sum(len(d) for d in split.train.values())
    # inference: the dev texts of both tasks, unpadded (dense layers on real tokens,
    # attention inside each text only)
    dev_texts = [t for d in split.dev.values() for t in d.texts]
    dev_lengths = [len(ids) for ids in tokenize(tokenizer, dev_texts, recipe.max_length)]
    mean_tokens = statistics.mean(dev_lengths)
    infer_flops = sum(forward_flops(1, n) for n in dev_lengths) / len(dev_texts)

    def shapes(m: int) -> dict[str, tuple[int, int, int]]:
        return {"qkv/out": (m, h, h), "ffn in": (m, h, f), "ffn out": (m, f, h)}

    weights = {"qkv/out": 4 * h * h, "ffn in": h * f, "ffn out": f * h}
    # training products: one batch of real tokens; inference: one pass of the token budget
    cases = {"train": (rows, ["fp32"]), "infer": (TOKENS_PER_PASS, ["fp32", "int8"])}
    layouts = sorted({1, args.threads})
    measured: dict[str, dict[str, float]] = {}
    for case, (m, paths) in cases.items():
        for path in paths:
            for side in layouts:
                key = f"{case}/{path}/{side}x{args.threads // side}t"
                measured[key] = {}
                for label, (mm, k, n) in shapes(m).items():
                    rate = gemm_rate(mm, k, n, int8=path == "int8", threads=args.threads, side_by_side=side)
                    measured[key][label] = round(rate, 1)
                print(
                    f"{key:<18} m={m}: "
                    + ", ".join(f"{lbl} {r:.1f}" for lbl, r in measured[key].items())
                    + " GFLOP/s",
                    flush=True,
                )
    big_fp32 = gemm_rate(2048, 2048, 2048, int8=False, threads=args.threads, side_by_side=1)

    def layer_rate(prefix: str) -> float:
        """Best layout's rate for the dense layers' mix of shapes (time-weighted harmonic mean)."""
        total = sum(weights.values())
        return max(
            total / sum(w / measured[key][layer] for layer, w in weights.items())
            for key in measured
            if key.startswith(prefix)
        )

    fp32_rate = layer_rate("train/fp32")
    infer_fp32, int8_rate = layer_rate("infer/fp32"), layer_rate("infer/int8")
    min_train_minutes = train_flops / (fp32_rate * 1e9) / 60
    max_fp32_rate = infer_fp32 * 1e9 / infer_flops
    max_int8_rate = int8_rate * 1e9 / infer_flops
    result = {
        "benchmark": "roofline",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "encoder": {"name": name, "hidden": h, "ffn": f, "layers": layers},
        "data": {
            "train_texts": texts,
            "real_tokens": real_tokens,
            "padded_tokens": padded_tokens,
            "dev_texts": len(dev_texts),
            "mean_tokens_per_dev_text": round(mean_tokens, 2),
            "epochs": recipe.epochs,
            "batch_size": recipe.batch_size,
        },
        "gemm_gflops": {
            **measured,
            "fp32_2048_cube": round(big_fp32, 1),
            "train_fp32_layer_mix": round(fp32_rate, 1),
            "infer_fp32_layer_mix": round(infer_fp32, 1),
            "infer_int8_layer_mix": round(int8_rate, 1),
        },
        "training": {
            "tflop": round(train_flops / 1e12, 1),
            "min_minutes_at_fp32_gemm_rate": round(min_train_minutes, 1),
            "target_minutes": 30,
        },
        "inference": {
            "mflop_per_headline": round(infer_flops / 1e6, 1),
            "max_headlines_per_s_fp32": round(max_fp32_rate),
            "max_headlines_per_s_int8": round(max_int8_rate),
            "target_headlines_per_s": 600,
        },
    }
    padding = padded_tokens / real_tokens
    print(
        f"best GEMM rates at the layers' shapes: training fp32 {fp32_rate:.1f} GFLOP/s, inference fp32 "
        f"{infer_fp32:.1f}, int8 {int8_rate:.1f} (fp32 2048³ on all threads: {big_fp32:.1f})"
    )
    print(
        f"training the default recipe: {train_flops / 1e12:.1f} TFLOP of products ({padding:.2f}x padding)"
        f" → at least {min_train_minutes:.1f} min in fp32 (target 30)"
    )
    print(
        f"inference: {infer_flops / 1e6:.0f} MFLOP per headline (dev texts: {mean_tokens:.1f} tokens)"
        f" → at most {max_fp32_rate:.0f}/s fp32, {max_int8_rate:.0f}/s int8 (target 600)"
    )
    if args.training_minutes:
        result["training"]["measured_minutes"] = args.training_minutes
        result["training"]["bound_share_of_measured"] = round(min_train_minutes / args.training_minutes, 2)
    if args.train_steps:
        achieved = measured_training_rate(split, recipe, args.train_steps, forward_flops)
        result["training"]["measured_steps"] = achieved
        share = achieved["gflops"] / fp32_rate
        print(
            f"training steps measured: {achieved['seconds_per_step']} s/step, "
            f"{achieved['gflops']} GFLOP/s of products ({share:.0%} of the GEMM rate)"
        )
    if args.model:
        per_s = measured_inference_rate(args.model, dev_texts, args.threads)
        result["inference"]["measured_headlines_per_s"] = per_s
        bounds = {"fp32": max_fp32_rate, "int8": max_int8_rate}
        print(
            "Predictor on the same dev texts: "
            + ", ".join(f"{p} {r}/s ({r / bounds[p]:.0%} of its bound)" for p, r in per_s.items())
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
