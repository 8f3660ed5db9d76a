"""A weight soup: the uniform mean of the weights of several finsent model directories.

Usage: python benchmarks/weight_soup.py --out SOUP MODEL_DIR MODEL_DIR [...]
then:  finsent evaluate --model SOUP --model MODEL_DIR --model MODEL_DIR --split dev

Why: the mean of several runs' probabilities lifts topic accuracy a few tenths, at the cost of
running every model. Averaging the weights instead costs nothing at inference, and works when
the runs stay in one basin of the loss (fine-tuned from the same start). The runs of
`finsent train --init-seed N` share the encoder's start but not their heads', so this measures
whether that is near enough.

The answer (docs/performance.md#model-quality, benchmarks/results/training_runs.md#weight-soup):
no. The soup of the seed-42 and seed-43 defaults scores under both runs on both tasks.
Kept so the figure reproduces; not a product command. The models must have the same encoder,
labels and config; the soup takes the first one's config and tokenizer and is saved as a
verified model directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bert_core import load_model_dir, save_model_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model directories (at least two)")
    parser.add_argument("--out", type=Path, required=True, help="the soup's model directory")
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give at least two model directories")
    loaded = [load_model_dir(path) for path in args.models]
    first = loaded[0]
    if any(
        m.config.labels != first.config.labels or m.config.base_model != first.config.base_model
        for m in loaded
    ):
        parser.error("the models differ in labels or encoder: their weights cannot be averaged")
    states = [m.model.state_dict() for m in loaded]
    averaged = {
        name: sum(state[name].float() for state in states) / len(states)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in states[0].items()
    }
    first.model.load_state_dict(averaged)
    save_model_dir(
        args.out,
        first.model,
        first.tokenizer,
        first.config,
        metrics={},
        data_hash=first.manifest.data_hash,
        parent=first.manifest.version,
    )
    print(f"soup of {len(loaded)} models saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
