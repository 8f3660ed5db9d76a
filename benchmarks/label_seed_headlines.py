"""Label every seed headline (sentiment_train.csv) once with a trained finsent model, so the
alert benchmark runs on what the alerter will see (the model's labels) without a model.

Usage: python benchmarks/label_seed_headlines.py (--model models/DIR | --probe)
       [--data bert_core/seed_data/sentiment_train.csv]
       [--out benchmarks/results/seed_sentiment_predictions.csv]

`--model` labels with a `finsent train` model directory. Such a model has seen most of the
seed headlines in training, so its labels are kinder than on new news. `--probe` gives
labels with realistic errors without training a model end to end: the packaged encoder
(MiniLM-L6, frozen, mean-pooled) with a logistic-regression head, cross-fitted in 5 folds
so every headline is labelled by a head that never saw it.

Writes one row per headline of the data file, in file order: `row` (0-based index among the
file's rows), the true `label` name, the model's `predicted` sentiment and `p_bearish`,
`p_bullish` (rounded to 4 decimals). `benchmarks/alert_calibration.py --labels` reads it and
checks that the rows still match the data file.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from bert_core import Predictor, normalize_text, packaged_seed_data

DATA = packaged_seed_data()["sentiment"]
OUT = Path("benchmarks/results/seed_sentiment_predictions.csv")
NAMES = {0: "bearish", 1: "bullish", 2: "neutral"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="finsent model directory")
    which.add_argument("--probe", action="store_true", help="cross-fitted probe on the packaged encoder")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    with args.data.open(newline="", encoding="utf-8") as f:
        rows = [(r["text"], NAMES[int(r["label"])]) for r in csv.DictReader(f)]
    started = time.perf_counter()
    out: list[tuple[int, str, str, float, float]] = []
    out = probe_labels(rows, args.batch) if args.probe else model_labels(rows, args.model, args.batch)
    elapsed = time.perf_counter() - started
    write(args.out, out)
    agree = sum(1 for _, label, predicted, _, _ in out if label == predicted) / len(out)
    bearish = sum(1 for r in out if r[2] == "bearish") / len(out)
    print(f"{len(out)} headlines in {elapsed:.0f} s; agreement {agree:.3f}; labelled bearish {bearish:.3f}")


def model_labels(
    rows: list[tuple[str, str]], model: Path, batch: int
) -> list[tuple[int, str, str, float, float]]:
    predictor = Predictor.load(model, precision="fp32")
    out: list[tuple[int, str, str, float, float]] = []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        # texts empty once normalised (a few link-only rows of the seed file) cannot be scored:
        # a placeholder stands in for them
        texts = [t if normalize_text(t).strip() else "-" for t, _ in chunk]
        for j, (p, (_, label)) in enumerate(zip(predictor.predict(texts), chunk, strict=True)):
            probs = p.sentiment_probs
            out.append((i + j, label, p.sentiment, probs.get("bearish", 0.0), probs.get("bullish", 0.0)))
    return out


def probe_labels(rows: list[tuple[str, str]], batch: int) -> list[tuple[int, str, str, float, float]]:
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from bert_core import load_encoder

    encoder, tokenizer, _ = load_encoder(None)
    encoder.eval()
    vectors = []
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            texts = [t if t.strip() else "-" for t, _ in rows[i : i + batch]]
            enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vectors.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    x = np.concatenate(vectors)
    names = sorted(set(NAMES.values()))
    y = np.array([names.index(label) for _, label in rows])
    probs = np.zeros((len(rows), len(names)))
    for train, test in StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(x, y):
        head = LogisticRegression(max_iter=2000, C=1.0).fit(x[train], y[train])
        probs[test] = head.predict_proba(x[test])
    return [
        (i, label, names[int(p.argmax())], float(p[names.index("bearish")]), float(p[names.index("bullish")]))
        for i, ((_, label), p) in enumerate(zip(rows, probs, strict=True))
    ]


def write(path: Path, out: list[tuple[int, str, str, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row", "label", "predicted", "p_bearish", "p_bullish"])
        for row, label, predicted, pb, pu in out:
            w.writerow([row, label, predicted, f"{pb:.4f}", f"{pu:.4f}"])


if __name__ == "__main__":
    main()
