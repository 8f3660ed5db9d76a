"""Dev metrics of each model and of the mean of their probabilities, on their shared dev split.

Usage: python benchmarks/ensemble_dev.py MODEL_DIR MODEL_DIR [...]

The models must come from the same files, seed and dev fraction (e.g. `finsent train
--init-seed N`): the dev split is re-created from the first model's recorded settings, and a
model whose training rows differ is refused, since it may have trained on these dev texts.
An upper bound for what distilling the ensemble into one model (`--teacher ... --own-task-weight`)
can reach.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bert_core import (
    classification_report,
    combined_hash,
    load_model_dir,
    load_task_files,
    predict_proba,
    split_sets,
    tokenize,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    loaded = [load_model_dir(d) for d in args.models]
    training = loaded[0].config.training
    split = split_sets(
        load_task_files(training["data_files"]),
        dev_fraction=float(training.get("dev_fraction", 0.1)),
        seed=int(training["seed"]),
    )
    for path, model in zip(args.models, loaded, strict=True):
        if model.manifest.data_hash != combined_hash(split.train):
            print(f"{path}: trained on other rows than {args.models[0]}'s split; refused", file=sys.stderr)
            return 2
    print(f"{'model':50s} {'task':10s} {'accuracy':>8s} {'macro-F1':>8s}")
    for task, data in split.dev.items():
        probs = []
        for path, model in zip(args.models, loaded, strict=True):
            tokens = tokenize(model.tokenizer, data.texts, model.config.max_length)
            p = predict_proba(model.model, tokens, int(model.tokenizer.pad_token_id or 0), tasks=[task])[task]
            probs.append(p)
            report = classification_report(data.labels, p.argmax(1).tolist(), model.model.label_names[task])
            print(f"{path[-50:]:50s} {task:10s} {report['accuracy']:8.4f} {report['macro_f1']:8.4f}")
        mean = np.mean(probs, axis=0)
        names = loaded[0].model.label_names[task]
        report = classification_report(data.labels, mean.argmax(1).tolist(), names)
        name = f"mean of {len(probs)}"
        print(f"{name:50s} {task:10s} {report['accuracy']:8.4f} {report['macro_f1']:8.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
