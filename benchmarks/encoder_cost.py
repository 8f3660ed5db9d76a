"""What an encoder costs on this machine before any training: headlines/s of the Predictor on
it, and the seconds of a training step of the default recipe, extrapolated to one epoch.

Usage: python benchmarks/encoder_cost.py ENCODER [--threads 2] [--texts 1024] [--train-steps 50]
       [--precision auto]

ENCODER is a catalogue name (`finsent encoders list`: minilm, mpnet-base) or an encoder
directory. The classifier's heads are untrained (throughput does not depend on them); the
headlines are the packaged seed data's. Inference: best of 3 calls of all `--texts` headlines
after a warm-up, through the Predictor as the worker builds it (its fast paths where the
encoder supports them, else length-sorted padded passes). Training: `fine_tune` on the first
`--train-steps` batches' worth of the seed training rows (both tasks, one epoch, one tiny dev
evaluation), and the seconds per step times the steps of a full epoch of the default split.
Writes the figures as JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from bert_core import DEFAULT_LABELS, ModelConfig, MultiTaskClassifier, Predictor, save_model_dir
from bert_core.config import TrainConfig
from bert_core.cpu import cpu_has_bf16
from bert_core.encoder import load_encoder
from bert_core.encoders import encoder_path
from bert_core.recipes import load_task_files, split_sets
from bert_core.seed_data import packaged_seed_data
from bert_core.training import fine_tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder")
    parser.add_argument("--store", type=Path, default=Path("~/.finsent/models/encoders").expanduser())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--train-steps", type=int, default=50)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = encoder_path(args.encoder, args.store)
    seed = packaged_seed_data()
    sets = load_task_files(dict(seed))
    split = split_sets(sets, dev_fraction=0.1, seed=42)
    out: dict[str, object] = {
        "encoder": args.encoder,
        "cpu": platform.processor() or platform.machine(),
        "cpu_has_bf16": cpu_has_bf16(),
        "threads": args.threads,
        "load_average_at_start": os.getloadavg(),
    }

    encoder, tokenizer, name = load_encoder(base)
    labels = {t: list(n) for t, n in DEFAULT_LABELS.items()}
    model = MultiTaskClassifier(encoder, labels).eval()
    with tempfile.TemporaryDirectory() as tmp:
        config = ModelConfig(labels=labels, base_model=name, max_length=64, pooling="mean")
        save_model_dir(Path(tmp) / "m", model, tokenizer, config, metrics={}, data_hash="none")
        del model, encoder
        predictor = Predictor.load(Path(tmp) / "m", precision=args.precision, threads=args.threads)
    texts = split.dev["sentiment"].texts[: args.texts]
    predictor.predict(texts[:64])
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        predictor.predict(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    out["inference"] = {
        "precision": predictor.precision,
        "unpadded": predictor.unpadded,
        "texts": len(texts),
        "headlines_per_s": [round(r, 1) for r in rates],
        "best_headlines_per_s": round(max(rates), 1),
    }
    del predictor

    train_config = TrainConfig(base_model=base, epochs=1, evals_per_epoch=1, progress=False)
    rows = args.train_steps * train_config.batch_size // 2  # per task: half the steps each
    train = {t: d.subset(list(range(min(rows, len(d))))) for t, d in split.train.items()}
    dev = {t: d.subset(list(range(16))) for t, d in split.dev.items()}
    result = fine_tune(train, dev, {t: labels[t] for t in train}, train_config)
    steps = int(result.model_config.training["steps"])
    seconds_per_step = result.seconds / steps
    epoch_steps = sum(math.ceil(len(d) / train_config.batch_size) for d in split.train.values())
    out["training"] = {
        "precision": result.model_config.training["precision"],
        "steps_timed": steps,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(seconds_per_step, 3),
        "steps_per_epoch": epoch_steps,
        "epoch_minutes_extrapolated": round(seconds_per_step * epoch_steps / 60, 1),
    }
    out["load_average_at_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
