"""Print the dev metrics and training cost of model directories side by side.

Usage: python benchmarks/compare_models.py DIR [DIR ...] [--markdown]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(path: Path) -> dict[str, object]:
    cfg = json.loads((path / "finsent.json").read_text())
    metrics = json.loads((path / "metrics.json").read_text())
    training = cfg["training"]
    dev = metrics.get("dev", {})
    out: dict[str, object] = {
        "model": path.name,
        "pooling": cfg["pooling"],
        "mlm": "yes" if "mlm" in training else "no",
        "epochs_run": round(metrics["history"][-1]["epoch"], 2) if metrics.get("history") else 0,
        "train_min": round(float(training.get("seconds", 0)) / 60, 1),
    }
    if "mlm" in training:
        out["train_min"] = f"{out['train_min']} (+{training['mlm']['seconds'] / 60:.1f} MLM)"
    for task in ("sentiment", "topic"):
        if task in dev:
            out[f"{task}_acc"] = round(dev[task]["accuracy"], 4)
            out[f"{task}_f1"] = round(dev[task]["macro_f1"], 4)
            out[f"{task}_ece"] = round(dev[task].get("ece", float("nan")), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = [row(d) for d in args.dirs]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    else:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
