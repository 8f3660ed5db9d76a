"""What an encoder costs on this machine before any training: headlines/s of the Predictor on
it, and the seconds of a training step of the default recipe, extrapolated to one epoch.

Usage: python benchmarks/encoder_cost.py ENCODER [--threads 2] [--texts 512] [--train-steps 30]
       [--precision bf16] [--store ~/.finsent/models/encoders]

ENCODER is a catalogue name (`finsent encoders list`: minilm, mpnet-base) or an encoder
directory. The classifier's heads are untrained (throughput does not depend on them); the
headlines are the packaged seed data's dev split. Inference: best of 2 calls of all `--texts`
headlines after a warm-up, through the Predictor as the worker builds it (its fast paths where
the encoder supports them, else length-sorted padded passes). Training: `fine_tune` on the
seed training rows for `--train-steps` steps and for 4 steps (both tasks, one epoch, one tiny
dev evaluation); the difference divided by the difference in steps is the cost of a step
without the loading, tokenising and evaluating both runs share, times the steps of a full epoch
of the default split. Wall seconds and this process's CPU seconds are both reported: on a
machine shared with other work the wall figures measure the sharing, while CPU seconds per
headline or step (divided by the threads, for a dedicated machine's wall time) do not, as long
as the threads scale. Writes JSON to stdout and to benchmarks/results/encoder_cost.json, one
entry per variant (encoder, precision, threads; `--entry` names a repeat), a run replacing its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from result_file import machine, result_path, write_entry

from bert_core import (
    DEFAULT_LABELS,
    ModelConfig,
    MultiTaskClassifier,
    Predictor,
    TrainConfig,
    cpu_has_bf16,
    fine_tune,
    load_encoder,
    load_task_files,
    packaged_seed_data,
    save_model_dir,
    split_sets,
)
from bert_core.encoders import encoder_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder")
    parser.add_argument("--store", type=Path, default=Path("~/.finsent/models/encoders").expanduser())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--out", type=Path, default=result_path("encoder_cost"))
    parser.add_argument(
        "--entry", help="the variant's name in the result file (default: 'ENCODER, PRECISION, N threads')"
    )
    args = parser.parse_args()
    info = machine()
    torch.set_num_threads(args.threads)
    base = encoder_path(args.encoder, args.store)
    seed = packaged_seed_data()
    sets = load_task_files({str(task): path for task, path in seed.items()})
    split = split_sets(sets, dev_fraction=0.1, seed=42)
    out: dict[str, object] = {
        "encoder": args.encoder,
        "cpu_has_bf16": cpu_has_bf16(),
        "threads": args.threads,
    }

    encoder, tokenizer, name = load_encoder(base)
    labels: dict[str, list[str]] = {str(t): list(n) for t, n in DEFAULT_LABELS.items()}
    model = MultiTaskClassifier(encoder, labels).eval()
    with tempfile.TemporaryDirectory() as tmp:
        config = ModelConfig(labels=labels, base_model=name, max_length=64, pooling="mean")
        save_model_dir(Path(tmp) / "m", model, tokenizer, config, metrics={}, data_hash="none")
        del model, encoder
        predictor = Predictor.load(Path(tmp) / "m", precision=args.precision, threads=args.threads)
    texts = split.dev["sentiment"].texts[: args.texts]
    predictor.predict(texts[:64])
    runs = []
    for _ in range(2):
        start, cpu = time.perf_counter(), time.process_time()
        predictor.predict(texts)
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, cpu_s = min(runs)
    out["inference"] = {
        "precision": predictor.precision,
        "unpadded": predictor.unpadded,
        "texts": len(texts),
        "headlines_per_s_wall": round(len(texts) / wall, 1),
        "cpu_ms_per_headline": round(1000 * cpu_s / len(texts), 2),
        "headlines_per_s_if_dedicated": round(len(texts) / (cpu_s / args.threads), 1),
    }
    del predictor

    def timed_run(steps: int) -> tuple[float, float, int, str]:
        config = TrainConfig(base_model=base, epochs=1, evals_per_epoch=1, progress=False)
        rows = steps * config.batch_size // 2  # per task: half the steps each
        train = {t: d.subset(list(range(min(rows, len(d))))) for t, d in split.train.items()}
        dev = {t: d.subset(list(range(16))) for t, d in split.dev.items()}
        start, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(sys.stderr):  # its evaluation lines: stdout is the JSON
            result = fine_tune(train, dev, {t: labels[t] for t in train}, config)
        training = result.model_config.training
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        return wall, cpu, int(training["steps"]), training["precision"]

    short_wall, short_cpu, short_steps, _ = timed_run(4)
    long_wall, long_cpu, long_steps, precision = timed_run(args.train_steps)
    steps = long_steps - short_steps
    wall_per_step, cpu_per_step = (long_wall - short_wall) / steps, (long_cpu - short_cpu) / steps
    epoch_steps = sum(math.ceil(len(d) / TrainConfig.batch_size) for d in split.train.values())
    out["training"] = {
        "precision": precision,
        "steps_timed": steps,
        "wall_s_per_step": round(wall_per_step, 2),
        "cpu_s_per_step": round(cpu_per_step, 2),
        "steps_per_epoch": epoch_steps,
        "epoch_minutes_wall_extrapolated": round(wall_per_step * epoch_steps / 60, 1),
        "epoch_minutes_if_dedicated": round(cpu_per_step / args.threads * epoch_steps / 60, 1),
    }
    info["torch"] = torch.__version__
    entry = args.entry or f"{args.encoder}, {args.precision}, {args.threads} thread{'s' * (args.threads > 1)}"
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON
        entries = write_entry("encoder_cost", entry, out, info, path=args.out)
    print(json.dumps(entries[entry], indent=2))


if __name__ == "__main__":
    main()
